//! The decoder and the flow table never panic on arbitrary frames.

use proptest::prelude::*;
use topotap_targets::flow::synth::udp_frame;
use topotap_targets::flow::{FlowTable, FlowTableConfig, LayerKeyMode};
use topotap_targets::packet::{decode, LinkType, Timestamp};

const LINK_TYPES: [u32; 9] = [0, 1, 101, 108, 113, 228, 229, 276, 147];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4000))]

    #[test]
    fn garbage_frames_never_panic(
        lt in 0usize..LINK_TYPES.len(),
        data in proptest::collection::vec(any::<u8>(), 0..200),
        l3 in any::<bool>(),
    ) {
        let p = decode(LinkType::from_u32(LINK_TYPES[lt]), &data);
        prop_assert!(usize::from(p.l2_len) <= data.len() || p.payload.is_empty());
        let mut table = FlowTable::new(FlowTableConfig {
            max_flows: 2,
            layer_key_mode: if l3 { LayerKeyMode::L3 } else { LayerKeyMode::L2 },
            ..Default::default()
        });
        table.process(Timestamp::from_secs(1), &p, data.len() as u32);
        table.process(Timestamp::from_secs(2), &p, data.len() as u32);
        for f in table.flows() {
            let _ = serde_json::to_string(f).unwrap();
            let _ = f.field("Network.A");
        }
    }

    /// Mutations of a valid frame reach deeper layers than pure noise.
    #[test]
    fn mutated_frames_never_panic(
        flips in proptest::collection::vec((0usize..64, any::<u8>()), 1..6),
        cut in 0usize..=64,
        vlan in any::<bool>(),
    ) {
        let mut f = udp_frame(7, false).to_vec();
        if vlan {
            f.splice(12..12, [0x81, 0x00, 0x00, 0x08]);
        }
        for (at, v) in flips {
            if let Some(b) = f.get_mut(at) {
                *b = v;
            }
        }
        f.truncate(cut);
        let p = decode(LinkType::Ethernet, &f);
        let mut table = FlowTable::new(FlowTableConfig::default());
        table.process(Timestamp::from_secs(1), &p, 64);
        for ev in table.flush_all() {
            let _ = ev.flow.to_json();
        }
    }
}
