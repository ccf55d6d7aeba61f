//! NetFlow v5 exporting process: flow events of the [`pipeline`](super::pipeline) as v5 datagrams.
//!
//! The record semantics (unidirectional deltas, timeouts, protocol, TCP flags, ToS, interfaces) are
//! the pipeline's; what is particular to v5:
//!
//! - An ifindex above 65535 does not fit v5's 16-bit `input` and is sent as 0.
//! - **SysUptime** is milliseconds since the exporter started ([`NetflowV5Config::boot`]: the capture's
//!   start, or the first packet of a capture file, not the host's boot); `First`/`Last` are on the
//!   same clock; all three wrap modulo 2^32 like a router's after 49.7 days.
//! - **`flow_sequence`** = records exported before this datagram (first datagram: 0), at most
//!   [`netflow5::MAX_RECORDS`] (30) records per datagram.
//! - **Sampling**: with a 1-in-N interval N > 1 the header says so (mode 01 = deterministic,
//!   interval N, N ≤ 16383).
//! - **IPv6** flows cannot be carried by v5: they are counted in [`ExporterStats::skipped_ipv6`] (use
//!   IPFIX for them). Non-IP flows (ARP, LLDP) are counted in [`ExporterStats::skipped_non_ip`].
//! - Counters wider than v5's 32 bits are split over several records rather than truncated.

use std::collections::VecDeque;
use std::net::IpAddr;

use super::pipeline::{has_delta, ConfigError, Datagram, ExporterStats, FlowExporter, UniFlow};
use crate::flow::FlowEvent;
use crate::packet::Timestamp;
use crate::wire::netflow5::{self, DatagramBuilder, HeaderRepr, RecordRepr, Sampling};

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

    /// SysUptime 0 is `at` (kept as is once a datagram went out: the uptime never goes back).
    fn start_clock(&mut self, at: Timestamp) {
        if self.stats.datagrams == 0 {
            self.config.boot = at;
        }
    }

    fn stats(&self) -> ExporterStats {
        self.stats
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};
    use std::time::Duration;

    use super::*;
    use crate::export::pipeline::tests::{icmp, ipv4, ipv6, meter, padded, t, tcp, udp, A, B};
    use crate::export::pipeline::{ExportPipeline, FlowMeter, FlowTimeouts};
    use crate::flow::FlowTableConfig;
    use crate::packet::tcp_flags;
    use crate::packet::LinkType;
    use crate::wire::netflow5::Repr;

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
    fn a_capture_file_exports_the_durations_it_recorded() {
        // Exporter built now, packets from a file recorded long before.
        let mut e = NetflowV5Exporter::new(NetflowV5Config {
            boot: t(3_600_000),
            ..Default::default()
        })
        .unwrap();
        e.start_clock(t(0));
        let mut p = ExportPipeline::new(meter(FlowTimeouts::default(), 1), e);
        feed(&mut p.meter, 100, &ipv4(A, B, 17, 0, &udp(1, 2, 3)));
        feed(&mut p.meter, 900, &ipv4(A, B, 17, 0, &udp(1, 2, 3)));
        let out = finish(&mut p, 900);
        let r = &out[0].records[0];
        assert_eq!((r.first_ms, r.last_ms), (100, 900));
        assert_eq!(out[0].header.sys_uptime_ms, 900);
        p.exporter.start_clock(t(500));
        assert_eq!(
            p.exporter.uptime_ms(t(900)),
            900,
            "a late start moves nothing"
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
