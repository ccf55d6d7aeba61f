//! sFlow v5 as an input (the `sflow` and `ovssflow` captures): any datagram is either
//! refused by `Datagram::parse` (the collector counts and drops it) or yields sampled
//! frames that a flow table takes. Never a panic; every frame's length on the wire is at
//! least its sampled bytes, and after a flush the flows account for every decoded frame
//! and its length exactly once.
#![no_main]

use libfuzzer_sys::fuzz_target;
use topotap_targets::flow::{FlowEventKind, FlowTable, FlowTableConfig};
use topotap_targets::packet::{decode, LinkType, Timestamp};
use topotap_targets::wire::sflow5::Datagram;

fuzz_target!(|data: &[u8]| {
    let Ok(datagram) = Datagram::parse(data) else {
        return;
    };
    let mut table = FlowTable::new(FlowTableConfig {
        capture_id: "fuzz".into(),
        node_tid: "node".into(),
        ..FlowTableConfig::default()
    });
    let now = Timestamp::from_secs(1_700_000_000);
    let (mut decoded_packets, mut decoded_bytes) = (0u64, 0u64);
    for frame in datagram.sampled_frames() {
        assert!(frame.frame_length as usize >= frame.header.len());
        let packet = decode(LinkType::Ethernet, frame.header);
        let undecoded = table.stats().undecoded;
        table.process(now, &packet, frame.frame_length);
        if table.stats().undecoded == undecoded {
            decoded_packets += 1;
            decoded_bytes += u64::from(frame.frame_length);
        }
    }
    let (mut packets, mut bytes) = (0u64, 0u64);
    for e in table.flush_all() {
        if e.kind == FlowEventKind::Update {
            continue;
        }
        let m = e.flow.metric();
        packets += m.ab_packets + m.ba_packets;
        bytes += m.ab_bytes + m.ba_bytes;
    }
    if table.stats().evicted == 0 {
        assert_eq!((packets, bytes), (decoded_packets, decoded_bytes));
    }
});
