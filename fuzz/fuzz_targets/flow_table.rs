//! Flow table: arbitrary frames on any link type, at arbitrary (also backwards) times, through
//! `packet::decode` and `FlowTable::process`, interleaved with update polls, expiry, eviction (tiny
//! tables) and a final flush, never panic. Oracles: every flow created is, at all times, either in the
//! table or counted as expired/evicted/flushed; no more flows than `max_flows`; after the final flush
//! the table is empty and, when no eviction event was dropped, the reported flows account for every
//! decoded packet and frame byte exactly once.
//!
//! Input: one configuration byte, then records of `[control][length][frame bytes]`.
#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use topotap_targets::flow::{FlowEvent, FlowEventKind, FlowTable, FlowTableConfig, LayerKeyMode};
use topotap_targets::packet::{decode, LinkType, Timestamp};

const LINK_TYPES: [LinkType; 9] = [
    LinkType::Ethernet,
    LinkType::Raw,
    LinkType::Null,
    LinkType::Loop,
    LinkType::LinuxSll,
    LinkType::LinuxSll2,
    LinkType::Ipv4,
    LinkType::Ipv6,
    LinkType::Other(147),
];

#[derive(Default)]
struct Totals {
    packets: u64,
    bytes: u64,
    evicted_events: u64,
}

impl Totals {
    fn removed(&mut self, events: impl Iterator<Item = FlowEvent>) {
        for e in events {
            let _ = e.flow.to_json();
            let m = e.flow.metric();
            if e.kind == FlowEventKind::Update {
                let _ = e.flow.last_update_metric();
                continue;
            }
            if e.kind == FlowEventKind::Evicted {
                self.evicted_events += 1;
            }
            self.packets += m.ab_packets + m.ba_packets;
            self.bytes += m.ab_bytes + m.ba_bytes;
        }
    }
}

fn check(table: &FlowTable, max_flows: usize) {
    let s = table.stats();
    assert_eq!(s.flows, table.len());
    assert!(table.len() <= max_flows);
    assert_eq!(table.flows().count(), table.len());
    assert_eq!(
        s.created,
        s.expired + s.evicted + s.flushed + s.flows as u64
    );
}

fuzz_target!(|input: &[u8]| {
    let Some((&cfg, mut rest)) = input.split_first() else {
        return;
    };
    let max_flows = 1 + usize::from(cfg & 7);
    let config = FlowTableConfig {
        max_flows,
        layer_key_mode: if cfg & 8 == 0 {
            LayerKeyMode::L2
        } else {
            LayerKeyMode::L3
        },
        max_pending_events: if cfg & 16 == 0 { 65_536 } else { 1 },
        capture_id: "fuzz".into(),
        node_tid: "node".into(),
        ..FlowTableConfig::default()
    };
    let mut table = FlowTable::new(config);
    let mut now = if cfg & 32 == 0 {
        Timestamp::from_secs(1_700_000_000)
    } else {
        Timestamp::ZERO
    };
    let mut totals = Totals::default();
    let (mut decoded_packets, mut decoded_bytes, mut packets) = (0u64, 0u64, 0u64);

    while let [ctl, len, tail @ ..] = rest {
        let len = usize::from(*len).min(tail.len());
        let (frame, next) = tail.split_at(len);
        rest = next;
        now = match (ctl >> 4) & 3 {
            0 => now,
            1 => now + Duration::from_millis(1),
            2 => now + Duration::from_secs(11),
            _ if ctl & 0x40 != 0 => now - Duration::from_secs(30),
            _ => now + Duration::from_secs(601),
        };
        let link_type = LINK_TYPES[usize::from(ctl & 0x0f) % LINK_TYPES.len()];
        let packet = decode(link_type, frame);
        // The original length may exceed what was captured.
        let frame_len = frame.len() as u32 + u32::from(ctl & 0x0f);
        let undecoded = table.stats().undecoded;
        table.process(now, &packet, frame_len);
        packets += 1;
        if table.stats().undecoded == undecoded {
            decoded_packets += 1;
            decoded_bytes += u64::from(frame_len);
        }
        check(&table, max_flows);
        let _ = table.poll_timeout();
        if ctl & 0x80 != 0 {
            totals.removed(table.poll_updates(now));
            totals.removed(table.drain_expired(now));
            check(&table, max_flows);
        }
        let _ = table.memory_footprint();
    }
    totals.removed(table.flush_all());
    check(&table, max_flows);
    assert!(table.is_empty());
    assert!(table.poll_timeout().is_none());
    let s = table.stats();
    assert_eq!(s.packets, packets);
    assert_eq!(totals.evicted_events + s.events_dropped, s.evicted);
    if s.events_dropped == 0 {
        assert_eq!(totals.packets, decoded_packets);
        assert_eq!(totals.bytes, decoded_bytes);
    }
});
