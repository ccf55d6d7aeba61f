//! NetFlow v5 exporting process, and the metering side it shares with IPFIX.
//!
//! ```text
//! packet ─▶ Sampler (1-in-N) ─▶ decode ─▶ FlowTable ─▶ FlowEvent ─▶ exporter queue ─▶ datagram
//!           └──────────────── FlowMeter ─────────────┘             └─ NetflowV5Exporter / IpfixExporter
//! ```
//!
//! [`ExportPipeline`] strings them together; the capture sinks and the offline benchmark both drive one.
//!
//! # Semantics (deliberately unlike Skydive's `netflow_v5.go`, see `skydive-behaviour.md` §5.3)
//!
//! - **Unidirectional records.** A table flow is bidirectional; each export emits one record for A→B
//!   and one for B→A, and a direction that saw no packet since the previous export emits none.
//! - **Deltas.** A record carries the packets and Layer-3 bytes (IP total length: no link header, no
//!   Ethernet padding) seen since that flow's previous export, so a collector summing records never
//!   double counts. `First` is the first packet of the direction, or the start of the export interval
//!   when the direction was already exported before (the table keeps no per-interval first timestamp);
//!   `Last` is the direction's last packet.
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
//!   directions, `output` = 0 (unknown: a capture point does not see the forwarding decision). An
//!   ifindex above 65535 does not fit v5's 16 bits and is sent as 0.
//! - **SysUptime** is milliseconds since the exporter started ([`NetflowV5Config::boot`]: the capture's
//!   start, not the host's boot); `First`/`Last` are on the same clock; all three wrap modulo 2^32 like
//!   a router's after 49.7 days.
//! - **`flow_sequence`** = records exported before this datagram (first datagram: 0), at most
//!   [`netflow5::MAX_RECORDS`] (30) records per datagram.
//! - **Sampling**: with a 1-in-N interval N > 1 the meter accounts only every N-th packet and the
//!   header says so (mode 01 = deterministic, interval N, N ≤ 16383). Counters are not renormalised.
//! - **IPv6** flows cannot be carried by v5: they are counted in [`ExporterStats::skipped_ipv6`] (use
//!   IPFIX for them). Non-IP flows (ARP, LLDP) are counted in [`ExporterStats::skipped_non_ip`].
//! - Counters wider than v5's 32 bits are split over several records rather than truncated.

use std::collections::VecDeque;
use std::net::IpAddr;
use std::time::Duration;

use crate::flow::{Direction, Flow, FlowEvent, FlowTable, FlowTableConfig, LayerKeyMode};
use crate::packet::{decode, LinkType, Timestamp};
use crate::wire::netflow5::{self, DatagramBuilder, HeaderRepr, RecordRepr, Sampling};

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
fn has_delta(flow: &Flow) -> bool {
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

/// Settings of a NetFlow v5 exporter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NetflowV5Config {
    /// SysUptime 0: when the exporter started.
    pub boot: Timestamp,
    pub engine_type: u8,
    pub engine_id: u8,
    /// 1-in-N sampling applied by the meter (0 or 1: unsampled). At most 16383.
    pub sampling_interval: u32,
    /// ifIndex of the captured interface, sent as `input`.
    pub input_if_index: u32,
}

impl Default for NetflowV5Config {
    fn default() -> Self {
        NetflowV5Config {
            boot: Timestamp::ZERO,
            engine_type: 0,
            engine_id: 0,
            sampling_interval: 1,
            input_if_index: 0,
        }
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

/// The NetFlow v5 exporting process. See the [module docs](self) for the semantics.
#[derive(Debug)]
pub struct NetflowV5Exporter {
    config: NetflowV5Config,
    sampling: Sampling,
    input: u16,
    queue: VecDeque<RecordRepr>,
    flow_sequence: u32,
    stats: ExporterStats,
}

impl NetflowV5Exporter {
    pub fn new(config: NetflowV5Config) -> Result<Self, ConfigError> {
        let sampling = match config.sampling_interval {
            0 | 1 => Sampling::NONE,
            n => Sampling::deterministic(
                u16::try_from(n)
                    .ok()
                    .filter(|n| *n <= Sampling::MAX_INTERVAL)
                    .ok_or(ConfigError::SamplingInterval(n))?,
            ),
        };
        Ok(NetflowV5Exporter {
            config,
            sampling,
            input: u16::try_from(config.input_if_index).unwrap_or(0),
            queue: VecDeque::new(),
            flow_sequence: 0,
            stats: ExporterStats::default(),
        })
    }

    pub fn config(&self) -> &NetflowV5Config {
        &self.config
    }

    /// The `flow_sequence` of the next datagram: records exported so far, modulo 2^32.
    pub fn flow_sequence(&self) -> u32 {
        self.flow_sequence
    }

    /// SysUptime at `t`, in ms since [`NetflowV5Config::boot`], wrapping at 2^32.
    pub fn uptime_ms(&self, t: Timestamp) -> u32 {
        t.as_millis().saturating_sub(self.config.boot.as_millis()) as u32
    }

    fn queue_record(&mut self, u: &UniFlow) {
        let (IpAddr::V4(src), IpAddr::V4(dst)) = (u.src, u.dst) else {
            return;
        };
        let max = u64::from(u32::MAX);
        let parts = u.packets.div_ceil(max).max(u.octets.div_ceil(max)).max(1);
        for i in 0..parts {
            let share = |total: u64| total / parts + u64::from(i < total % parts);
            self.queue.push_back(RecordRepr {
                src_addr: src,
                dst_addr: dst,
                input: self.input,
                output: 0,
                packets: share(u.packets) as u32,
                octets: share(u.octets) as u32,
                first_ms: self.uptime_ms(u.first),
                last_ms: self.uptime_ms(u.last),
                src_port: u.src_port,
                dst_port: u.dst_port,
                tcp_flags: u.tcp_flags,
                protocol: u.protocol,
                tos: u.tos,
                ..RecordRepr::default()
            });
        }
    }
}

impl FlowExporter for NetflowV5Exporter {
    const MAX_DATAGRAM_LEN: usize = netflow5::MAX_DATAGRAM_LEN;

    fn push(&mut self, event: &FlowEvent) {
        let flow = &event.flow;
        match flow.network() {
            None => {
                if has_delta(flow) {
                    self.stats.skipped_non_ip += 1;
                }
            }
            Some(net) if net.a.is_ipv6() => {
                if has_delta(flow) {
                    self.stats.skipped_ipv6 += 1;
                }
            }
            Some(_) => {
                for u in UniFlow::from_flow(flow).iter().flatten() {
                    self.queue_record(u);
                }
            }
        }
    }

    fn poll_datagram(&mut self, now: Timestamp, buf: &mut [u8]) -> Option<Datagram> {
        if self.queue.is_empty() || buf.len() < netflow5::HEADER_LEN + netflow5::RECORD_LEN {
            return None;
        }
        let header = HeaderRepr {
            sys_uptime_ms: self.uptime_ms(now),
            unix_secs: now.as_secs() as u32,
            unix_nsecs: now.subsec_nanos(),
            flow_sequence: self.flow_sequence,
            engine_type: self.config.engine_type,
            engine_id: self.config.engine_id,
            sampling: self.sampling,
        };
        // The sampling word was validated in `new`, and the buffer holds a header.
        let mut b = DatagramBuilder::new(buf, header).ok()?;
        while !b.is_full() {
            let Some(r) = self.queue.pop_front() else {
                break;
            };
            if b.push(&r).is_err() {
                self.queue.push_front(r);
                break;
            }
        }
        let records = b.len() as u32;
        let len = b.finish().len();
        self.flow_sequence = self.flow_sequence.wrapping_add(records);
        self.stats.datagrams += 1;
        self.stats.records += u64::from(records);
        Some(Datagram { len, records })
    }

    fn queued(&self) -> usize {
        self.queue.len()
    }

    fn stats(&self) -> ExporterStats {
        self.stats
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use super::*;
    use crate::packet::tcp_flags;
    use crate::wire::netflow5::Repr;

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

    fn feed(m: &mut FlowMeter, ms: u64, frame: &[u8]) {
        m.packet(LinkType::Ethernet, t(ms), frame.len() as u32, frame);
    }

    fn exporter() -> NetflowV5Exporter {
        NetflowV5Exporter::new(NetflowV5Config {
            boot: t(0),
            engine_type: 1,
            engine_id: 2,
            sampling_interval: 1,
            input_if_index: 7,
        })
        .unwrap()
    }

    /// Runs the pipeline's tick and decodes every datagram.
    fn tick(p: &mut ExportPipeline<NetflowV5Exporter>, ms: u64) -> Vec<Repr> {
        let mut out = Vec::new();
        p.tick(t(ms), |d, n| {
            let r = Repr::parse(d).unwrap();
            assert_eq!(r.records.len(), n as usize);
            out.push(r);
        });
        out
    }

    fn finish(p: &mut ExportPipeline<NetflowV5Exporter>, ms: u64) -> Vec<Repr> {
        let mut out = Vec::new();
        p.finish(t(ms), |d, _| out.push(Repr::parse(d).unwrap()));
        out
    }

    fn records(reprs: &[Repr]) -> Vec<RecordRepr> {
        reprs.iter().flat_map(|r| r.records.clone()).collect()
    }

    fn pipeline(timeouts: FlowTimeouts) -> ExportPipeline<NetflowV5Exporter> {
        ExportPipeline::new(meter(timeouts, 1), exporter())
    }

    #[test]
    fn a_ping_is_two_records_with_l3_bytes_and_icmp_types() {
        let mut p = pipeline(FlowTimeouts::default());
        for i in 0..5u64 {
            let f = ipv4(A, B, 1, 0, &icmp(8, 56));
            p.packet(LinkType::Ethernet, t(1000 + i * 1000), 98, &f);
            let f = ipv4(B, A, 1, 0, &icmp(0, 56));
            p.packet(LinkType::Ethernet, t(1001 + i * 1000), 98, &f);
        }
        assert!(
            tick(&mut p, 10_000).is_empty(),
            "nothing due before a timeout"
        );
        let out = finish(&mut p, 10_000);
        assert_eq!(out.len(), 1);
        let h = out[0].header;
        assert_eq!(h.flow_sequence, 0);
        assert_eq!(h.sys_uptime_ms, 10_000);
        assert_eq!(u64::from(h.unix_secs), t(10_000).as_secs());
        assert_eq!((h.engine_type, h.engine_id), (1, 2));
        assert_eq!(h.sampling, Sampling::NONE);
        let r = &out[0].records;
        assert_eq!(r.len(), 2);
        let (ab, ba) = (r[0], r[1]);
        assert_eq!(ab.src_addr, Ipv4Addr::from(A));
        assert_eq!(ab.dst_addr, Ipv4Addr::from(B));
        assert_eq!(ba.src_addr, Ipv4Addr::from(B));
        assert_eq!((ab.packets, ab.octets), (5, 5 * 84));
        assert_eq!((ba.packets, ba.octets), (5, 5 * 84));
        assert_eq!((ab.protocol, ba.protocol), (1, 1));
        assert_eq!((ab.src_port, ab.dst_port), (0, 8 << 8));
        assert_eq!((ba.src_port, ba.dst_port), (0, 0));
        assert_eq!((ab.first_ms, ab.last_ms), (1000, 5000));
        assert_eq!((ba.first_ms, ba.last_ms), (1001, 5001));
        assert_eq!((ab.input, ab.output, ba.input), (7, 0, 7));
        assert_eq!((ab.src_mask, ab.next_hop), (0, Ipv4Addr::UNSPECIFIED));
    }

    #[test]
    fn tcp_flags_tos_and_padding() {
        let mut p = pipeline(FlowTimeouts::default());
        let syn = padded(ipv4(A, B, 6, 0x28, &tcp(40000, 80, tcp_flags::SYN, 0)));
        let synack = padded(ipv4(
            B,
            A,
            6,
            0,
            &tcp(80, 40000, tcp_flags::SYN | tcp_flags::ACK, 0),
        ));
        let data = ipv4(
            A,
            B,
            6,
            0x28,
            &tcp(40000, 80, tcp_flags::PSH | tcp_flags::ACK, 100),
        );
        let fin = padded(ipv4(
            A,
            B,
            6,
            0x28,
            &tcp(40000, 80, tcp_flags::FIN | tcp_flags::ACK, 0),
        ));
        for (ms, f) in [(1, &syn), (2, &synack), (3, &data), (4, &fin)] {
            feed(&mut p.meter, ms, f);
        }
        let r = records(&finish(&mut p, 5));
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].protocol, 6);
        assert_eq!((r[0].src_port, r[0].dst_port), (40000, 80));
        assert_eq!(r[0].tcp_flags, 0x1b, "SYN|PSH|ACK|FIN");
        assert_eq!(r[1].tcp_flags, 0x12, "SYN|ACK");
        assert_eq!(r[0].tos, 0x28);
        // 40 + 140 + 40 IP bytes; the 60-byte padded frames count 40.
        assert_eq!((r[0].packets, r[0].octets), (3, 220));
        assert_eq!((r[1].packets, r[1].octets), (1, 40));
    }

    #[test]
    fn active_timeout_exports_deltas_that_never_double_count() {
        let timeouts = FlowTimeouts {
            active: Duration::from_secs(10),
            inactive: Duration::from_secs(30),
        };
        let mut p = pipeline(timeouts);
        let f = ipv4(A, B, 17, 0, &udp(5000, 6000, 100)); // 128 IP bytes
        let back = ipv4(B, A, 17, 0, &udp(6000, 5000, 10)); // 38 IP bytes
        for s in 0..4u64 {
            feed(&mut p.meter, s * 1000, &f);
        }
        feed(&mut p.meter, 500, &back);
        // First update tick at 10 s (window opened by the first packet).
        let out = tick(&mut p, 10_000);
        let r = records(&out);
        assert_eq!(r.len(), 2);
        assert_eq!((r[0].packets, r[0].octets), (4, 512));
        assert_eq!((r[1].packets, r[1].octets), (1, 38));
        assert_eq!(out[0].header.flow_sequence, 0);
        // Second interval: only A→B traffic; B→A produces no record.
        for s in 11..14u64 {
            feed(&mut p.meter, s * 1000, &f);
        }
        let out = tick(&mut p, 20_000);
        let r = records(&out);
        assert_eq!(r.len(), 1, "{r:?}");
        assert_eq!((r[0].packets, r[0].octets), (3, 384));
        // The direction was exported before: First is the start of this interval.
        assert_eq!(r[0].first_ms, 10_000);
        assert_eq!(r[0].last_ms, 13_000);
        assert_eq!(out[0].header.flow_sequence, 2);
        // A quiet interval: nothing at all.
        assert!(tick(&mut p, 30_000).is_empty());
        // Inactive timeout: 30 s after the last packet, with nothing new to report, no record.
        assert!(tick(&mut p, 43_000).is_empty());
        assert_eq!(p.meter.table().len(), 0, "expired");
        // Totals at the collector equal what was sent.
        assert_eq!(p.exporter.stats().records, 3);
    }

    #[test]
    fn inactive_timeout_exports_the_rest_then_forgets() {
        let mut p = pipeline(FlowTimeouts::default());
        let f = ipv4(A, B, 17, 0, &udp(5000, 6000, 100));
        feed(&mut p.meter, 0, &f);
        feed(&mut p.meter, 1000, &f);
        assert!(tick(&mut p, 15_999).is_empty());
        let out = tick(&mut p, 16_000);
        let r = records(&out);
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].packets, 2);
        assert!(finish(&mut p, 17_000).is_empty(), "nothing left to flush");
    }

    #[test]
    fn sequence_counts_records_and_datagrams_hold_at_most_thirty() {
        let mut p = pipeline(FlowTimeouts::default());
        // 40 bidirectional flows = 80 records = 30 + 30 + 20.
        for i in 0..40u8 {
            let src = [10, 2, 0, i];
            feed(&mut p.meter, 1, &ipv4(src, B, 17, 0, &udp(1000, 2000, 1)));
            feed(&mut p.meter, 2, &ipv4(B, src, 17, 0, &udp(2000, 1000, 1)));
        }
        let out = finish(&mut p, 100);
        let counts: Vec<usize> = out.iter().map(|r| r.records.len()).collect();
        assert_eq!(counts, [30, 30, 20]);
        let seqs: Vec<u32> = out.iter().map(|r| r.header.flow_sequence).collect();
        assert_eq!(seqs, [0, 30, 60]);
        assert_eq!(p.exporter.flow_sequence(), 80);
        for r in &out {
            let mut buf = vec![0; r.buffer_len()];
            assert!(r.buffer_len() <= netflow5::MAX_DATAGRAM_LEN);
            r.emit(&mut buf).unwrap();
        }
        assert_eq!(
            p.exporter.stats(),
            ExporterStats {
                datagrams: 3,
                records: 80,
                ..Default::default()
            }
        );
    }

    #[test]
    fn ipv6_and_non_ip_flows_are_skipped_and_counted() {
        let mut p = pipeline(FlowTimeouts::default());
        let a6: Ipv6Addr = "fd00::1".parse().unwrap();
        let b6: Ipv6Addr = "fd00::2".parse().unwrap();
        feed(&mut p.meter, 1, &ipv6(a6, b6, 17, &udp(1, 2, 10)));
        feed(&mut p.meter, 2, &ipv6(b6, a6, 17, &udp(2, 1, 10)));
        let mut arp = vec![0xff; 6];
        arp.extend_from_slice(&[2, 0, 0, 0, 0, 1, 0x08, 0x06]);
        arp.extend_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1, 2, 0, 0, 0, 0, 1]);
        arp.extend_from_slice(&A);
        arp.extend_from_slice(&[0; 6]);
        arp.extend_from_slice(&B);
        feed(&mut p.meter, 3, &arp);
        feed(&mut p.meter, 4, &ipv4(A, B, 17, 0, &udp(1, 2, 10)));
        let r = records(&finish(&mut p, 10));
        assert_eq!(r.len(), 1);
        let s = p.exporter.stats();
        assert_eq!((s.skipped_ipv6, s.skipped_non_ip), (1, 1));
    }

    #[test]
    fn sampling_takes_one_in_n_and_says_so() {
        let mut p = ExportPipeline::new(
            meter(FlowTimeouts::default(), 4),
            NetflowV5Exporter::new(NetflowV5Config {
                sampling_interval: 4,
                boot: t(0),
                ..Default::default()
            })
            .unwrap(),
        );
        let f = ipv4(A, B, 17, 0, &udp(5000, 6000, 100));
        for i in 0..40 {
            feed(&mut p.meter, i, &f);
        }
        let out = finish(&mut p, 100);
        assert_eq!(out[0].header.sampling, Sampling::deterministic(4));
        assert_eq!(out[0].records[0].packets, 10);
        assert_eq!(p.meter.observed(), 40);
        assert_eq!(
            NetflowV5Exporter::new(NetflowV5Config {
                sampling_interval: 20_000,
                ..Default::default()
            })
            .unwrap_err(),
            ConfigError::SamplingInterval(20_000)
        );
        let mut s = Sampler::new(3);
        let taken: Vec<bool> = (0..7).map(|_| s.sample()).collect();
        assert_eq!(taken, [true, false, false, true, false, false, true]);
    }

    #[test]
    fn wide_counters_are_split_not_truncated() {
        let mut e = exporter();
        let u = UniFlow {
            src: IpAddr::V4(A.into()),
            dst: IpAddr::V4(B.into()),
            src_port: 1,
            dst_port: 2,
            protocol: 17,
            tos: 0,
            tcp_flags: 0,
            packets: 5_000_000_000,
            octets: 9_000_000_001,
            first: t(0),
            last: t(1),
        };
        e.queue_record(&u);
        let mut buf = [0u8; netflow5::MAX_DATAGRAM_LEN];
        let d = e.poll_datagram(t(2), &mut buf).unwrap();
        let r = Repr::parse(&buf[..d.len]).unwrap().records;
        assert_eq!(r.len(), 3);
        assert_eq!(
            r.iter().map(|r| u64::from(r.packets)).sum::<u64>(),
            5_000_000_000
        );
        assert_eq!(
            r.iter().map(|r| u64::from(r.octets)).sum::<u64>(),
            9_000_000_001
        );
    }

    #[test]
    fn uptime_wraps_like_a_router() {
        let e = NetflowV5Exporter::new(NetflowV5Config {
            boot: Timestamp::from_millis(1000),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(e.uptime_ms(Timestamp::from_millis(500)), 0);
        assert_eq!(e.uptime_ms(Timestamp::from_millis(1000 + (1 << 32) + 5)), 5);
    }

    #[test]
    fn evicted_flows_are_exported() {
        let config = FlowTableConfig {
            max_flows: 2,
            ..FlowTimeouts::default().table_config(FlowTableConfig::default())
        };
        let mut p = ExportPipeline::new(FlowMeter::new(config, 1), exporter());
        for i in 0..3u8 {
            feed(
                &mut p.meter,
                u64::from(i),
                &ipv4([10, 3, 0, i], B, 17, 0, &udp(1, 2, 1)),
            );
        }
        // The oldest flow made room for the third one and goes out at the next tick.
        let r = records(&tick(&mut p, 5));
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].src_addr, Ipv4Addr::new(10, 3, 0, 0));
        assert_eq!(p.meter.table().stats().evicted, 1);
        let r = records(&finish(&mut p, 6));
        assert_eq!(r.len(), 2);
    }
}
