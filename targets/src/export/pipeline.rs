//! The flow export pipeline shared by NetFlow v5 and IPFIX: the metering process and the exporter
//! interface.
//!
//! ```text
//! packet ─▶ Sampler (1-in-N) ─▶ decode ─▶ FlowTable ─▶ FlowEvent ─▶ exporter queue ─▶ datagram
//!           └──────────────── FlowMeter ─────────────┘             └─ FlowExporter: NetflowV5Exporter
//!                                                                                   or IpfixExporter
//! ```
//!
//! [`ExportPipeline`] strings them together; the capture sinks, `topotap pcap` and the offline
//! benchmark all drive one. No sockets and no clock reads: the caller gives every timestamp.
//!
//! # Semantics (deliberately unlike Skydive's `netflow_v5.go`, see `skydive-behaviour.md` §5.3)
//!
//! - **Unidirectional records.** A table flow is bidirectional; each export emits one record for A→B
//!   and one for B→A, and a direction that saw no packet since the previous export emits none.
//! - **Deltas.** A record carries the packets and Layer-3 bytes (IP total length: no link header, no
//!   Ethernet padding) seen since that flow's previous export, so a collector summing records never
//!   double counts. `First` is the first packet of the direction, or the start of the export interval
//!   when the direction was already exported before (the table keeps no per-interval first timestamp);
//!   `Last` is the direction's last packet. Both are packet timestamps: a capture file replayed
//!   offline exports the durations it recorded.
//! - **Timeouts** ([`FlowTimeouts`]): every `active` interval (default 60 s) each flow that saw packets
//!   is exported (and stays in the table); a flow idle for `inactive` (default 15 s) is exported one
//!   last time and removed; TCP flows that saw FIN/RST are removed `min(15 s, inactive)` after their
//!   last packet. The active interval is a table-wide tick (the flow table's update window), not a
//!   per-flow timer: a flow is exported at most `active` after its previous export.
//! - **Protocol** is the real IP protocol number; **TCP flags** the OR of every packet of the direction
//!   since the flow started (cumulative); **ToS** the first packet's (the table keeps one per flow).
//!   ICMP records carry `type * 256 + code` in the destination port (the v5 convention); the B→A
//!   record of a request/reply exchange carries the reply type (echo request 8 → echo reply 0).
//! - **Interfaces**: `input` = the ifindex of the captured interface (in its own namespace) for both
//!   directions, `output` = 0 (unknown: a capture point does not see the forwarding decision).
//! - **Sampling**: with a 1-in-N interval N > 1 the meter accounts only every N-th packet
//!   ([`Sampler`]). Counters are not renormalised.

use std::net::IpAddr;
use std::time::Duration;

use crate::flow::{Direction, Flow, FlowEvent, FlowTable, FlowTableConfig, LayerKeyMode};
use crate::packet::{decode, LinkType, Timestamp};

/// Default active timeout: a long-lived flow is exported at least this often.
pub const DEFAULT_ACTIVE_TIMEOUT: Duration = Duration::from_secs(60);
/// Default inactive timeout: a flow idle this long is exported and forgotten.
pub const DEFAULT_INACTIVE_TIMEOUT: Duration = Duration::from_secs(15);

/// Most flows an exporter's table holds (per capture point): twice softflowd's default of 8,192.
/// When full, the least recently seen flow is exported (as evicted, its deltas intact) to make room,
/// so a busier capture point sends more records but loses nothing. The table pre-sizes its index for
/// this many flows: at 16,384 the index (160 KiB) stays in the CPU caches, which makes the per-packet
/// lookup about 25 % cheaper than at 65,536 and far cheaper than at Skydive's 500,000.
pub const EXPORT_MAX_FLOWS: usize = 16_384;

/// Active and inactive timeouts of a flow exporter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowTimeouts {
    pub active: Duration,
    pub inactive: Duration,
}

impl Default for FlowTimeouts {
    fn default() -> Self {
        FlowTimeouts {
            active: DEFAULT_ACTIVE_TIMEOUT,
            inactive: DEFAULT_INACTIVE_TIMEOUT,
        }
    }
}

impl FlowTimeouts {
    /// `base` adapted for export: the update window is the active timeout, idle expiry the inactive
    /// one (finished TCP and ARP/DNS flows never wait longer than that), flows are keyed on L3+
    /// only, since flow records carry no MAC addresses, and the table holds at most
    /// [`EXPORT_MAX_FLOWS`].
    pub fn table_config(&self, base: FlowTableConfig) -> FlowTableConfig {
        FlowTableConfig {
            max_flows: base.max_flows.min(EXPORT_MAX_FLOWS),
            active_timeout: self.active,
            idle_timeout: self.inactive,
            finished_timeout: base.finished_timeout.min(self.inactive),
            app_timeout: base.app_timeout.min(self.inactive),
            layer_key_mode: LayerKeyMode::L3,
            ..base
        }
    }
}

/// Deterministic 1-in-N packet sampling: the first packet of every N is taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sampler {
    interval: u32,
    skip: u32,
}

impl Sampler {
    /// 1-in-`interval`; 0 and 1 mean every packet.
    pub fn new(interval: u32) -> Self {
        Sampler {
            interval: interval.max(1),
            skip: 0,
        }
    }

    pub fn interval(&self) -> u32 {
        self.interval
    }

    /// Whether the next packet is sampled.
    pub fn sample(&mut self) -> bool {
        if self.skip == 0 {
            self.skip = self.interval - 1;
            true
        } else {
            self.skip -= 1;
            false
        }
    }
}

/// The metering process: samples packets, decodes them once and keeps the flow table.
pub struct FlowMeter {
    sampler: Sampler,
    table: FlowTable,
    observed: u64,
}

impl FlowMeter {
    /// A meter over a table built from `config` (see [`FlowTimeouts::table_config`]), sampling
    /// 1-in-`sampling_interval` packets.
    pub fn new(config: FlowTableConfig, sampling_interval: u32) -> Self {
        FlowMeter {
            sampler: Sampler::new(sampling_interval),
            table: FlowTable::new(config),
            observed: 0,
        }
    }

    /// One captured frame (`orig_len`: its length on the wire).
    pub fn packet(&mut self, link: LinkType, ts: Timestamp, orig_len: u32, data: &[u8]) {
        self.observed += 1;
        if self.sampler.sample() {
            let packet = decode(link, data);
            self.table.process(ts, &packet, orig_len);
        }
    }

    /// One frame sampled 1-in-`sampling_rate` by someone else (an sFlow agent): it
    /// counts as that many frames, and goes through this meter's own sampler as one.
    pub fn sampled(
        &mut self,
        link: LinkType,
        ts: Timestamp,
        orig_len: u32,
        data: &[u8],
        sampling_rate: u32,
    ) {
        self.observed += u64::from(sampling_rate.max(1));
        if self.sampler.sample() {
            let packet = decode(link, data);
            self.table
                .process_sampled(ts, &packet, orig_len, sampling_rate);
        }
    }

    /// Reports the flows due at `now`: expired (idle, finished) and evicted ones first, then the
    /// periodic (active timeout) updates of the others.
    pub fn poll(&mut self, now: Timestamp, mut f: impl FnMut(&FlowEvent)) {
        self.table.drain_expired(now).for_each(|e| f(&e));
        self.table.poll_updates(now).for_each(|e| f(&e));
    }

    /// Removes and reports every flow (capture stopped).
    pub fn flush(&mut self, mut f: impl FnMut(&FlowEvent)) {
        self.table.flush_all().for_each(|e| f(&e));
    }

    pub fn table(&self) -> &FlowTable {
        &self.table
    }

    /// See [`FlowTable::retag`].
    pub fn retag(&mut self, node_tid: &str) {
        self.table.retag(node_tid);
    }

    /// Packets offered to the meter, sampled or not.
    pub fn observed(&self) -> u64 {
        self.observed
    }

    pub fn sampling_interval(&self) -> u32 {
        self.sampler.interval()
    }
}

/// One encoded datagram in the caller's buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Datagram {
    /// Bytes written at the start of the buffer.
    pub len: usize,
    /// Flow records it carries.
    pub records: u32,
}

/// What an exporter produced and what it could not carry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExporterStats {
    pub datagrams: u64,
    pub records: u64,
    /// Flow exports dropped because the format has no room for IPv6 (NetFlow v5).
    pub skipped_ipv6: u64,
    /// Flow exports dropped because the flow has no IP layer (ARP, LLDP...).
    pub skipped_non_ip: u64,
}

/// An exporting process: queues the records of flow events and writes them out as datagrams.
pub trait FlowExporter {
    /// A buffer this long always holds the largest datagram.
    const MAX_DATAGRAM_LEN: usize;

    /// Queues the records of one flow event (none, one or two).
    fn push(&mut self, event: &FlowEvent);

    /// Writes the next datagram due at `now` into `buf` (at least [`Self::MAX_DATAGRAM_LEN`] bytes),
    /// or `None` when nothing is due.
    fn poll_datagram(&mut self, now: Timestamp, buf: &mut [u8]) -> Option<Datagram>;

    /// Records queued and not yet written.
    fn queued(&self) -> usize;

    /// Starts the exporter's clock at `at`, before any datagram: the first packet of a capture file
    /// read offline, whose timestamps are in the past. Exporters with absolute timestamps ignore it.
    fn start_clock(&mut self, _at: Timestamp) {}

    fn stats(&self) -> ExporterStats;
}

/// Meter + exporter + datagram buffer: the whole packet-to-datagram path minus the socket.
pub struct ExportPipeline<E> {
    pub meter: FlowMeter,
    pub exporter: E,
    buf: Vec<u8>,
}

impl<E: FlowExporter> ExportPipeline<E> {
    pub fn new(meter: FlowMeter, exporter: E) -> Self {
        ExportPipeline {
            meter,
            exporter,
            buf: vec![0; E::MAX_DATAGRAM_LEN],
        }
    }

    pub fn packet(&mut self, link: LinkType, ts: Timestamp, orig_len: u32, data: &[u8]) {
        self.meter.packet(link, ts, orig_len, data);
    }

    /// See [`FlowMeter::sampled`].
    pub fn sampled(
        &mut self,
        link: LinkType,
        ts: Timestamp,
        orig_len: u32,
        data: &[u8],
        sampling_rate: u32,
    ) {
        self.meter.sampled(link, ts, orig_len, data, sampling_rate);
    }

    /// Exports what is due at `now`, handing each datagram and its record count to `send`.
    pub fn tick(&mut self, now: Timestamp, send: impl FnMut(&[u8], u32)) {
        let exporter = &mut self.exporter;
        self.meter.poll(now, |e| exporter.push(e));
        self.drain(now, send);
    }

    /// Exports every flow still held (capture stopped or deleted).
    pub fn finish(&mut self, now: Timestamp, send: impl FnMut(&[u8], u32)) {
        let exporter = &mut self.exporter;
        self.meter.flush(|e| exporter.push(e));
        self.drain(now, send);
    }

    fn drain(&mut self, now: Timestamp, mut send: impl FnMut(&[u8], u32)) {
        while let Some(d) = self.exporter.poll_datagram(now, &mut self.buf) {
            send(&self.buf[..d.len], d.records);
        }
    }
}

/// One direction of a flow, as the unidirectional record NetFlow v5 and IPFIX export.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UniFlow {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub src_port: u16,
    /// Destination port; for ICMP `type * 256 + code`.
    pub dst_port: u16,
    pub protocol: u8,
    pub tos: u8,
    /// OR of the TCP flags of every packet in this direction since the flow started.
    pub tcp_flags: u8,
    /// Packets since the flow's previous export.
    pub packets: u64,
    /// Layer-3 bytes of those packets.
    pub octets: u64,
    pub first: Timestamp,
    pub last: Timestamp,
}

impl UniFlow {
    /// The records of `flow`'s not yet exported traffic: A→B then B→A, each present only if that
    /// direction saw packets since the previous export. Both absent for non-IP flows.
    pub fn from_flow(flow: &Flow) -> [Option<UniFlow>; 2] {
        let Some(net) = flow.network() else {
            return [None, None];
        };
        let window_start = Timestamp::from_millis(flow.last_update_metric().start);
        let (port_a, port_b, icmp) = match (flow.transport(), flow.icmp()) {
            (Some(t), _) => (t.a, t.b, None),
            (None, Some(i)) => (0, 0, Some(i)),
            (None, None) => (0, 0, None),
        };
        let one = |dir: Direction| {
            let d = flow.direction(dir);
            if d.delta_packets == 0 {
                return None;
            }
            let (src, dst, src_port, mut dst_port) = match dir {
                Direction::AB => (net.a, net.b, port_a, port_b),
                Direction::BA => (net.b, net.a, port_b, port_a),
            };
            if let Some(i) = icmp {
                let ty = match dir {
                    Direction::AB => i.first_type,
                    Direction::BA => icmp_answer(i.v6, i.first_type),
                };
                dst_port = u16::from(ty) << 8 | u16::from(i.code);
            }
            Some(UniFlow {
                src,
                dst,
                src_port,
                dst_port,
                protocol: flow.ip_protocol(),
                tos: flow.tos(),
                tcp_flags: d.tcp_flags,
                packets: d.delta_packets,
                octets: d.delta_ip_bytes,
                first: d.first.max(window_start),
                last: d.last,
            })
        };
        [one(Direction::AB), one(Direction::BA)]
    }
}

/// Whether `flow` has traffic not exported yet.
pub(crate) fn has_delta(flow: &Flow) -> bool {
    flow.direction(Direction::AB).delta_packets + flow.direction(Direction::BA).delta_packets > 0
}

/// The ICMP type the other side of an exchange answers with (request ↔ reply); other types as is.
fn icmp_answer(v6: bool, ty: u8) -> u8 {
    match (v6, ty) {
        (false, 8) => 0,
        (false, 0) => 8,
        (false, 13) => 14,
        (false, 14) => 13,
        (false, 15) => 16,
        (false, 16) => 15,
        (false, 17) => 18,
        (false, 18) => 17,
        (true, 128) => 129,
        (true, 129) => 128,
        (true, 133) => 134,
        (true, 134) => 133,
        (true, 135) => 136,
        (true, 136) => 135,
        (_, t) => t,
    }
}

/// Why an exporter cannot be built with the given settings.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("NetFlow v5 cannot announce a sampling interval of {0} (at most 16383)")]
    SamplingInterval(u32),
    #[error("an IPFIX message of at most {given} bytes cannot hold templates and a record (need {needed})")]
    MessageTooSmall { given: usize, needed: usize },
}

#[cfg(test)]
pub(crate) mod tests {
    use std::net::Ipv6Addr;

    use super::*;

    // ---- frames ----

    pub fn ipv4(src: [u8; 4], dst: [u8; 4], proto: u8, tos: u8, l4: &[u8]) -> Vec<u8> {
        let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00];
        f.extend_from_slice(&[0x45, tos]);
        f.extend_from_slice(&((20 + l4.len()) as u16).to_be_bytes());
        f.extend_from_slice(&[0, 1, 0x40, 0, 64, proto, 0, 0]);
        f.extend_from_slice(&src);
        f.extend_from_slice(&dst);
        f.extend_from_slice(l4);
        f
    }

    pub fn ipv6(src: Ipv6Addr, dst: Ipv6Addr, next: u8, l4: &[u8]) -> Vec<u8> {
        let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x86, 0xdd];
        f.extend_from_slice(&[0x60, 0, 0, 0]);
        f.extend_from_slice(&(l4.len() as u16).to_be_bytes());
        f.extend_from_slice(&[next, 64]);
        f.extend_from_slice(&src.octets());
        f.extend_from_slice(&dst.octets());
        f.extend_from_slice(l4);
        f
    }

    pub fn udp(sport: u16, dport: u16, payload: usize) -> Vec<u8> {
        let mut h = sport.to_be_bytes().to_vec();
        h.extend_from_slice(&dport.to_be_bytes());
        h.extend_from_slice(&((8 + payload) as u16).to_be_bytes());
        h.extend_from_slice(&[0, 0]);
        h.resize(8 + payload, 0x22);
        h
    }

    pub fn tcp(sport: u16, dport: u16, flags: u8, payload: usize) -> Vec<u8> {
        let mut h = sport.to_be_bytes().to_vec();
        h.extend_from_slice(&dport.to_be_bytes());
        h.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
        h.resize(20 + payload, 0x11);
        h
    }

    pub fn icmp(ty: u8, payload: usize) -> Vec<u8> {
        let mut h = vec![ty, 0, 0, 0, 0x12, 0x34, 0, 1];
        h.resize(8 + payload, 0xab);
        h
    }

    pub const A: [u8; 4] = [10, 1, 0, 1];
    pub const B: [u8; 4] = [10, 1, 0, 2];
    pub const BOOT_MS: u64 = 1_700_000_000_000;

    pub fn t(ms: u64) -> Timestamp {
        Timestamp::from_millis(BOOT_MS + ms)
    }

    /// Ethernet padding to 60 bytes must not count in L3 bytes.
    pub fn padded(mut f: Vec<u8>) -> Vec<u8> {
        if f.len() < 60 {
            f.resize(60, 0);
        }
        f
    }

    pub fn meter(timeouts: FlowTimeouts, sampling: u32) -> FlowMeter {
        FlowMeter::new(timeouts.table_config(FlowTableConfig::default()), sampling)
    }

    #[test]
    fn sampler_takes_the_first_of_every_n() {
        let mut s = Sampler::new(3);
        let taken: Vec<bool> = (0..7).map(|_| s.sample()).collect();
        assert_eq!(taken, [true, false, false, true, false, false, true]);
        let mut every = Sampler::new(0);
        assert!((0..5).all(|_| every.sample()));
        assert_eq!(every.interval(), 1);
    }

    #[test]
    fn the_meter_counts_every_packet_and_tables_the_sampled_ones() {
        let mut m = meter(FlowTimeouts::default(), 2);
        let f = ipv4(A, B, 17, 0, &udp(1, 2, 10));
        for i in 0..6 {
            m.packet(LinkType::Ethernet, t(i), f.len() as u32, &f);
        }
        assert_eq!(m.observed(), 6);
        let mut events = Vec::new();
        m.flush(|e| events.push(e.flow.direction(Direction::AB).delta_packets));
        assert_eq!(events, [3]);
    }
}
