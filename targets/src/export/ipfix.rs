//! IPFIX (RFC 7011) exporting process over UDP.
//!
//! Records use the two standard templates of [`crate::wire::ipfix`] (256 IPv4, 257 IPv6) and the same
//! flow semantics as the NetFlow v5 exporter (see [`super::pipeline`]): one record per direction that saw
//! packets since the previous export, packet and Layer-3 octet *deltas*, cumulative TCP flags per
//! direction, the real protocol number, ingressInterface = the captured interface's ifindex and
//! egressInterface = 0. Unlike v5, IPv6 flows are exported, timestamps are absolute
//! (flowStart/EndMilliseconds since the epoch) and each record says why it was exported:
//!
//! | flow event | flowEndReason |
//! |---|---|
//! | periodic export of a live flow (active timeout) | 2 activeTimeout |
//! | idle flow removed (inactive timeout) | 1 idleTimeout |
//! | flow that saw TCP FIN or RST, removed | 3 endOfFlowDetected |
//! | capture stopped or deleted | 4 forcedEnd |
//! | evicted from a full table | 5 lackOfResources |
//!
//! Message rules (RFC 7011 §3.1, §8.1 for UDP):
//! - the sequence number is the number of data records sent before the message (templates do not
//!   count), modulo 2^32;
//! - both templates go out in the first message (a template-only message if there is no data yet) and
//!   again every [`IpfixConfig::template_refresh`] (default 60 s) or every
//!   [`IpfixConfig::template_refresh_messages`] messages (default 20), whichever comes first, so a
//!   collector that starts late or loses a packet learns them soon;
//! - messages stay within [`IpfixConfig::max_message_len`] bytes (default 1400: one unfragmented UDP
//!   datagram over a 1500-byte MTU, IPv4 or IPv6).
//!
//! IPFIX has no sampling field in these templates, so the IPFIX sink does not sample.

use std::collections::VecDeque;
use std::time::Duration;

use super::pipeline::{ConfigError, Datagram, ExporterStats, FlowExporter, UniFlow};
use crate::flow::{FinishType, FlowEvent, FlowEventKind};
use crate::packet::Timestamp;
use crate::wire::ipfix::{
    end_reason, standard_template_set_len, FlowRecord, MessageBuilder, MessageHeader, HEADER_LEN,
    MAX_MESSAGE_LEN, RECORD_LEN_IPV6, SET_HEADER_LEN,
};
use crate::wire::Error;

/// Default template resend interval.
pub const DEFAULT_TEMPLATE_REFRESH: Duration = Duration::from_secs(60);
/// Default number of messages after which the templates are resent anyway.
pub const DEFAULT_TEMPLATE_REFRESH_MESSAGES: u32 = 20;
/// Default largest message.
pub const DEFAULT_MAX_MESSAGE_LEN: usize = 1400;

/// Settings of an IPFIX exporter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IpfixConfig {
    pub observation_domain_id: u32,
    /// ifIndex of the captured interface, sent as ingressInterface.
    pub ingress_if_index: u32,
    pub template_refresh: Duration,
    /// Resend the templates after this many messages without them (0: only by time).
    pub template_refresh_messages: u32,
    pub max_message_len: usize,
}

impl Default for IpfixConfig {
    fn default() -> Self {
        IpfixConfig {
            observation_domain_id: 0,
            ingress_if_index: 0,
            template_refresh: DEFAULT_TEMPLATE_REFRESH,
            template_refresh_messages: DEFAULT_TEMPLATE_REFRESH_MESSAGES,
            max_message_len: DEFAULT_MAX_MESSAGE_LEN,
        }
    }
}

/// The flowEndReason of the records of `event`.
pub fn end_reason_of(event: &FlowEvent) -> u8 {
    match event.kind {
        FlowEventKind::Update => end_reason::ACTIVE_TIMEOUT,
        FlowEventKind::Evicted => end_reason::LACK_OF_RESOURCES,
        FlowEventKind::Flushed => end_reason::FORCED_END,
        FlowEventKind::Expired => match event.flow.finish_type() {
            Some(FinishType::TcpFin | FinishType::TcpRst) => end_reason::END_OF_FLOW,
            _ => end_reason::IDLE_TIMEOUT,
        },
    }
}

/// The IPFIX exporting process. See the [module docs](self).
#[derive(Debug)]
pub struct IpfixExporter {
    config: IpfixConfig,
    queue: VecDeque<FlowRecord>,
    sequence: u32,
    templates_sent: Option<Timestamp>,
    messages_since_templates: u32,
    stats: ExporterStats,
}

impl IpfixExporter {
    pub fn new(config: IpfixConfig) -> Result<Self, ConfigError> {
        let needed = HEADER_LEN + standard_template_set_len() + SET_HEADER_LEN + RECORD_LEN_IPV6;
        if config.max_message_len < needed || config.max_message_len > MAX_MESSAGE_LEN {
            return Err(ConfigError::MessageTooSmall {
                given: config.max_message_len,
                needed,
            });
        }
        Ok(IpfixExporter {
            config,
            queue: VecDeque::new(),
            sequence: 0,
            templates_sent: None,
            messages_since_templates: 0,
            stats: ExporterStats::default(),
        })
    }

    pub fn config(&self) -> &IpfixConfig {
        &self.config
    }

    /// The sequence number of the next message: data records sent so far, modulo 2^32.
    pub fn sequence(&self) -> u32 {
        self.sequence
    }

    fn templates_due(&self, now: Timestamp) -> bool {
        match self.templates_sent {
            None => true,
            Some(at) => {
                now >= at + self.config.template_refresh
                    || (self.config.template_refresh_messages > 0
                        && self.messages_since_templates >= self.config.template_refresh_messages)
            }
        }
    }
}

impl FlowExporter for IpfixExporter {
    const MAX_DATAGRAM_LEN: usize = MAX_MESSAGE_LEN;

    fn push(&mut self, event: &FlowEvent) {
        let flow = &event.flow;
        if flow.network().is_none() {
            if flow.last_update_metric().ab_packets + flow.last_update_metric().ba_packets > 0 {
                self.stats.skipped_non_ip += 1;
            }
            return;
        }
        let reason = end_reason_of(event);
        for u in UniFlow::from_flow(flow).iter().flatten() {
            self.queue.push_back(FlowRecord {
                src: u.src,
                dst: u.dst,
                src_port: u.src_port,
                dst_port: u.dst_port,
                protocol: u.protocol,
                tos: u.tos,
                tcp_flags: u16::from(u.tcp_flags),
                ingress: self.config.ingress_if_index,
                egress: 0,
                packets: u.packets,
                octets: u.octets,
                start_ms: u.first.as_millis(),
                end_ms: u.last.as_millis(),
                end_reason: reason,
            });
        }
    }

    fn poll_datagram(&mut self, now: Timestamp, buf: &mut [u8]) -> Option<Datagram> {
        let templates = self.templates_due(now);
        if self.queue.is_empty() && !templates {
            return None;
        }
        let header = MessageHeader {
            export_time: now.as_secs() as u32,
            sequence: self.sequence,
            observation_domain_id: self.config.observation_domain_id,
        };
        let mut b = MessageBuilder::new(buf, header, self.config.max_message_len).ok()?;
        if templates && b.push_templates().is_err() {
            return None;
        }
        while let Some(r) = self.queue.front() {
            match b.push_record(r) {
                Ok(()) => {
                    self.queue.pop_front();
                }
                Err(Error::NoRoom { .. }) => break,
                // Mixed address families cannot come from a flow; drop such a record rather than
                // wedge the queue.
                Err(_) => {
                    self.queue.pop_front();
                }
            }
        }
        let records = b.data_records();
        if records == 0 && !templates {
            // The buffer is too small for one record: `new` validated the budget, so only a short
            // caller buffer gets here.
            return None;
        }
        let len = b.finish().len();
        self.sequence = self.sequence.wrapping_add(records);
        if templates {
            self.templates_sent = Some(now);
            self.messages_since_templates = 0;
        } else {
            self.messages_since_templates += 1;
        }
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
mod tests {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

    use super::*;
    use crate::export::pipeline::tests::{icmp, ipv4, ipv6, meter, padded, t, tcp, udp, A, B};
    use crate::export::pipeline::{ExportPipeline, FlowTimeouts};
    use crate::packet::{tcp_flags, LinkType};
    use crate::wire::ipfix::{Message, Set, TemplateCache, TEMPLATE_ID_IPV4, TEMPLATE_ID_IPV6};

    struct Collected {
        bytes: Vec<u8>,
    }

    impl Collected {
        fn parse(&self, cache: &mut TemplateCache) -> (MessageHeader, bool, Vec<FlowRecord>) {
            let m = Message::parse(&self.bytes, cache).unwrap();
            let has_templates = m.sets.iter().any(|s| matches!(s, Set::Templates(_)));
            assert!(
                m.sets.iter().all(|s| !matches!(s, Set::Other { .. })),
                "data set without template"
            );
            let recs = m
                .data_records()
                .map(|(_, r)| FlowRecord::from_data_record(r).unwrap())
                .collect();
            (m.header, has_templates, recs)
        }
    }

    fn pipeline(timeouts: FlowTimeouts, config: IpfixConfig) -> ExportPipeline<IpfixExporter> {
        ExportPipeline::new(meter(timeouts, 1), IpfixExporter::new(config).unwrap())
    }

    fn tick(p: &mut ExportPipeline<IpfixExporter>, ms: u64) -> Vec<Collected> {
        let mut out = Vec::new();
        p.tick(t(ms), |d, _| out.push(Collected { bytes: d.to_vec() }));
        out
    }

    fn finish(p: &mut ExportPipeline<IpfixExporter>, ms: u64) -> Vec<Collected> {
        let mut out = Vec::new();
        p.finish(t(ms), |d, _| out.push(Collected { bytes: d.to_vec() }));
        out
    }

    fn feed(p: &mut ExportPipeline<IpfixExporter>, ms: u64, f: &[u8]) {
        p.packet(LinkType::Ethernet, t(ms), f.len() as u32, f);
    }

    fn config() -> IpfixConfig {
        IpfixConfig {
            observation_domain_id: 42,
            ingress_if_index: 9,
            ..Default::default()
        }
    }

    #[test]
    fn templates_first_then_per_direction_deltas_with_end_reasons() {
        let mut p = pipeline(
            FlowTimeouts {
                active: Duration::from_secs(10),
                inactive: Duration::from_secs(15),
            },
            config(),
        );
        let mut cache = TemplateCache::new();
        // The very first tick announces the templates, with no data yet.
        feed(&mut p, 0, &ipv4(A, B, 1, 0, &icmp(8, 56)));
        feed(&mut p, 1, &ipv4(B, A, 1, 0, &icmp(0, 56)));
        let out = tick(&mut p, 100);
        assert_eq!(out.len(), 1);
        let (h, templates, recs) = out[0].parse(&mut cache);
        assert!(templates && recs.is_empty());
        assert_eq!((h.sequence, h.observation_domain_id), (0, 42));
        assert_eq!(cache.len(), 2);
        assert!(
            cache.get(42, TEMPLATE_ID_IPV4).is_some() && cache.get(42, TEMPLATE_ID_IPV6).is_some()
        );

        // Active timeout at 10 s.
        let out = tick(&mut p, 10_000);
        let (h, templates, recs) = out[0].parse(&mut cache);
        assert!(!templates);
        assert_eq!(h.sequence, 0);
        assert_eq!(u64::from(h.export_time), t(10_000).as_secs());
        assert_eq!(recs.len(), 2);
        let ab = recs[0];
        assert_eq!(ab.src, IpAddr::V4(Ipv4Addr::from(A)));
        assert_eq!((ab.packets, ab.octets, ab.protocol), (1, 84, 1));
        assert_eq!(ab.dst_port, 8 << 8);
        assert_eq!(recs[1].dst_port, 0);
        assert_eq!((ab.ingress, ab.egress), (9, 0));
        assert_eq!(ab.start_ms, t(0).as_millis());
        assert_eq!(recs[1].start_ms, t(1).as_millis());
        assert_eq!(ab.end_reason, end_reason::ACTIVE_TIMEOUT);

        // More pings, then idle: the rest goes out at the inactive timeout, sequence advanced by 2.
        feed(&mut p, 11_000, &ipv4(A, B, 1, 0, &icmp(8, 56)));
        assert!(tick(&mut p, 20_000 - 1).is_empty());
        let out = tick(&mut p, 26_000);
        let (h, _, recs) = out[0].parse(&mut cache);
        assert_eq!(h.sequence, 2);
        assert_eq!(recs.len(), 1);
        assert_eq!(recs[0].packets, 1);
        assert_eq!(recs[0].end_reason, end_reason::IDLE_TIMEOUT);
        assert_eq!(p.exporter.sequence(), 3);
    }

    #[test]
    fn tcp_end_ipv6_and_forced_end() {
        let mut p = pipeline(FlowTimeouts::default(), config());
        let mut cache = TemplateCache::new();
        let a6: Ipv6Addr = "fd00::1".parse().unwrap();
        let b6: Ipv6Addr = "fd00::2".parse().unwrap();
        feed(&mut p, 0, &ipv6(a6, b6, 17, &udp(1000, 2000, 12)));
        feed(
            &mut p,
            1,
            &padded(ipv4(A, B, 6, 0, &tcp(4000, 80, tcp_flags::SYN, 0))),
        );
        feed(
            &mut p,
            2,
            &padded(ipv4(
                B,
                A,
                6,
                0,
                &tcp(80, 4000, tcp_flags::RST | tcp_flags::ACK, 0),
            )),
        );
        // The reset flow ends 15 s (min(finished, inactive)) after its last packet.
        let out = tick(&mut p, 15_002);
        let mut recs = Vec::new();
        for c in &out {
            recs.extend(c.parse(&mut cache).2);
        }
        assert_eq!(recs.len(), 3, "{recs:?}");
        let tcp_recs: Vec<_> = recs.iter().filter(|r| r.protocol == 6).collect();
        assert_eq!(tcp_recs.len(), 2);
        assert!(tcp_recs
            .iter()
            .all(|r| r.end_reason == end_reason::END_OF_FLOW));
        assert_eq!(tcp_recs[0].tcp_flags, 0x02);
        assert_eq!(tcp_recs[1].tcp_flags, 0x14);
        assert_eq!(tcp_recs[0].octets, 40);
        let v6 = recs.iter().find(|r| r.src.is_ipv6()).unwrap();
        assert_eq!((v6.packets, v6.octets), (1, 60));
        assert_eq!(v6.end_reason, end_reason::IDLE_TIMEOUT);

        feed(&mut p, 20_000, &ipv4(A, B, 17, 0, &udp(1, 2, 3)));
        let out = finish(&mut p, 20_001);
        let (h, _, recs) = out[0].parse(&mut cache);
        assert_eq!(h.sequence, 3);
        assert_eq!(recs[0].end_reason, end_reason::FORCED_END);
        assert_eq!(p.exporter.stats().skipped_ipv6, 0);
    }

    #[test]
    fn messages_respect_the_size_budget_and_templates_come_back() {
        let mut p = pipeline(
            FlowTimeouts::default(),
            IpfixConfig {
                template_refresh_messages: 3,
                ..config()
            },
        );
        for i in 0..200u8 {
            feed(&mut p, 1, &ipv4([10, 4, 0, i], B, 17, 0, &udp(1, 2, 3)));
        }
        let out = finish(&mut p, 2);
        let mut cache = TemplateCache::new();
        let mut seen = 0u32;
        let mut with_templates = Vec::new();
        for c in &out {
            assert!(c.bytes.len() <= DEFAULT_MAX_MESSAGE_LEN);
            let (h, templates, recs) = c.parse(&mut cache);
            assert_eq!(h.sequence, seen);
            seen += recs.len() as u32;
            with_templates.push(templates);
        }
        assert_eq!(seen, 200);
        // Templates in message 0, then every 4th message (after 3 without).
        for (i, w) in with_templates.iter().enumerate() {
            assert_eq!(*w, i % 4 == 0, "message {i}");
        }
        // And by time: a template-only message 60 s later.
        assert!(tick(&mut p, 30_000).is_empty());
        let out = tick(&mut p, 62_000);
        let (_, templates, recs) = out[0].parse(&mut cache);
        assert!(templates && recs.is_empty());
    }

    #[test]
    fn budget_is_validated() {
        assert!(matches!(
            IpfixExporter::new(IpfixConfig {
                max_message_len: 100,
                ..Default::default()
            }),
            Err(ConfigError::MessageTooSmall { .. })
        ));
    }
}
