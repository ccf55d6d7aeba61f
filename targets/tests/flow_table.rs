//! Flow table behaviour driven by a virtual clock: Skydive's flow schema, identity, metrics, timeouts
//! and eviction.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use serde_json::{json, Value};
use topotap_targets::flow::{
    Direction, FinishType, Flow, FlowEventKind, FlowTable, FlowTableConfig, LayerKeyMode,
};
use topotap_targets::packet::{decode, tcp_flags, LinkType, Timestamp};

const MAC_A: [u8; 6] = [0x5e, 0xcf, 0x13, 0x0a, 0x9b, 0x01];
const MAC_B: [u8; 6] = [0x9a, 0x11, 0x4f, 0x02, 0x33, 0x10];
const MAC_R: [u8; 6] = [0x02, 0, 0, 0, 0, 0xfe];
const IP_A: [u8; 4] = [169, 254, 66, 66];
const IP_B: [u8; 4] = [169, 254, 66, 67];

fn eth(src: [u8; 6], dst: [u8; 6], vlans: &[u16], ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = dst.to_vec();
    f.extend_from_slice(&src);
    for v in vlans {
        f.extend_from_slice(&0x8100u16.to_be_bytes());
        f.extend_from_slice(&v.to_be_bytes());
    }
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

fn ipv4(src: [u8; 4], dst: [u8; 4], proto: u8, tos: u8, l4: &[u8]) -> Vec<u8> {
    let mut h = vec![0x45, tos];
    h.extend_from_slice(&((20 + l4.len()) as u16).to_be_bytes());
    h.extend_from_slice(&[0, 1, 0x40, 0, 64, proto, 0, 0]);
    h.extend_from_slice(&src);
    h.extend_from_slice(&dst);
    h.extend_from_slice(l4);
    h
}

fn ipv6(src: Ipv6Addr, dst: Ipv6Addr, next: u8, l4: &[u8]) -> Vec<u8> {
    let mut h = vec![0x60, 0, 0, 0];
    h.extend_from_slice(&(l4.len() as u16).to_be_bytes());
    h.extend_from_slice(&[next, 64]);
    h.extend_from_slice(&src.octets());
    h.extend_from_slice(&dst.octets());
    h.extend_from_slice(l4);
    h
}

fn icmp(icmp_type: u8, id: u16, seq: u16, payload: usize) -> Vec<u8> {
    let mut h = vec![icmp_type, 0, 0, 0];
    h.extend_from_slice(&id.to_be_bytes());
    h.extend_from_slice(&seq.to_be_bytes());
    h.resize(8 + payload, 0xab);
    h
}

fn tcp(sport: u16, dport: u16, flags: u8, payload: usize) -> Vec<u8> {
    let mut h = sport.to_be_bytes().to_vec();
    h.extend_from_slice(&dport.to_be_bytes());
    h.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
    h.resize(20 + payload, 0x11);
    h
}

fn udp(sport: u16, dport: u16, payload: usize) -> Vec<u8> {
    let mut h = sport.to_be_bytes().to_vec();
    h.extend_from_slice(&dport.to_be_bytes());
    h.extend_from_slice(&((8 + payload) as u16).to_be_bytes());
    h.extend_from_slice(&[0, 0]);
    h.resize(8 + payload, 0x22);
    h
}

fn v4_frame(src: [u8; 4], dst: [u8; 4], proto: u8, l4: &[u8], forward: bool) -> Vec<u8> {
    let (sm, dm) = if forward {
        (MAC_A, MAC_B)
    } else {
        (MAC_B, MAC_A)
    };
    eth(sm, dm, &[], 0x0800, &ipv4(src, dst, proto, 0, l4))
}

fn config() -> FlowTableConfig {
    FlowTableConfig {
        active_timeout: Duration::from_secs(10),
        idle_timeout: Duration::from_secs(60),
        node_tid: "b6f0c1d2".into(),
        capture_id: "8e1f0a0b-capture".into(),
        ..Default::default()
    }
}

fn t(ms: u64) -> Timestamp {
    Timestamp::from_millis(1_700_000_000_000 + ms)
}

fn feed(table: &mut FlowTable, now: Timestamp, frame: &[u8]) {
    let p = decode(LinkType::Ethernet, frame);
    table.process(now, &p, frame.len() as u32);
}

fn only_flow(table: &FlowTable) -> &Flow {
    let flows: Vec<_> = table.flows().collect();
    assert_eq!(flows.len(), 1, "expected one flow");
    flows[0]
}

fn ping_table(mode: LayerKeyMode) -> (FlowTable, usize) {
    let mut table = FlowTable::new(FlowTableConfig {
        layer_key_mode: mode,
        ..config()
    });
    let mut len = 0;
    for seq in 0..5u16 {
        let req = v4_frame(IP_A, IP_B, 1, &icmp(8, 123, seq, 56), true);
        let rep = v4_frame(IP_B, IP_A, 1, &icmp(0, 123, seq, 56), false);
        len = req.len();
        feed(&mut table, t(u64::from(seq) * 1000), &req);
        feed(&mut table, t(u64::from(seq) * 1000 + 2), &rep);
    }
    (table, len)
}

#[test]
fn five_pings_make_one_flow_with_exact_counters() {
    let (table, len) = ping_table(LayerKeyMode::L2);
    assert_eq!(len, 98);
    let f = only_flow(&table);
    let m = f.metric();
    assert_eq!((m.ab_packets, m.ba_packets), (5, 5));
    assert_eq!((m.ab_bytes, m.ba_bytes), (5 * 98, 5 * 98));
    assert_eq!(m.start, t(0).as_millis());
    assert_eq!(m.last, t(4002).as_millis());
    assert_eq!(m.rtt, 2_000_000, "echo request -> reply, in ns");
    assert_eq!(f.layers_path().to_string(), "Ethernet/IPv4/ICMPv4");
    assert_eq!(f.application(), "ICMPv4");
    let net = f.network().unwrap();
    assert_eq!(net.a, IpAddr::V4(Ipv4Addr::from(IP_A)));
    assert_eq!(f.field("ICMP.Type"), Some(json!("ECHO")));
    assert_eq!(f.field("ICMP.ID"), Some(json!(123)));
    assert_eq!(f.field("Metric.ABPackets"), Some(json!(5)));
    assert_eq!(f.field("Metric.BABytes"), Some(json!(490)));
    let ab = f.direction(Direction::AB);
    assert_eq!(
        ab.delta_ip_bytes,
        5 * 84,
        "IP bytes exclude the Ethernet header"
    );
    assert_eq!(f.direction(Direction::BA).first, t(2));
    assert_eq!(table.stats().packets, 10);
}

/// Keys of a JSON object in document order (serde_json's `Value` sorts them).
fn top_level_keys(text: &str) -> Vec<String> {
    let (mut depth, mut in_str, mut esc) = (0, false, false);
    let (mut cur, mut keys, mut expect_key) = (String::new(), Vec::new(), false);
    for c in text.chars() {
        if in_str {
            if esc {
                esc = false;
            } else if c == '\\' {
                esc = true;
            } else if c == '"' {
                in_str = false;
                if depth == 1 && expect_key {
                    keys.push(std::mem::take(&mut cur));
                    expect_key = false;
                }
            } else if depth == 1 && expect_key {
                cur.push(c);
            }
            continue;
        }
        match c {
            '"' => in_str = true,
            '{' | '[' => {
                depth += 1;
                expect_key = depth == 1;
            }
            '}' | ']' => depth -= 1,
            ',' if depth == 1 => expect_key = true,
            _ => {}
        }
    }
    keys
}

#[test]
fn json_has_skydive_field_names() {
    let (table, _) = ping_table(LayerKeyMode::L2);
    let text = serde_json::to_string(only_flow(&table)).unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    let keys = top_level_keys(&text);
    assert_eq!(
        keys,
        [
            "UUID",
            "LayersPath",
            "Application",
            "Link",
            "Network",
            "ICMP",
            "LastUpdateMetric",
            "Metric",
            "Start",
            "Last",
            "TrackingID",
            "L3TrackingID",
            "ParentUUID",
            "NodeTID",
            "CaptureID",
            "RawPacketsCaptured"
        ]
    );
    assert_eq!(
        v["Link"],
        json!({"Protocol":"ETHERNET","A":"5e:cf:13:0a:9b:01","B":"9a:11:4f:02:33:10","ID":0})
    );
    assert_eq!(
        v["Network"],
        json!({"Protocol":"IPV4","A":"169.254.66.66","B":"169.254.66.67","ID":0})
    );
    assert_eq!(v["ICMP"], json!({"Type":"ECHO","ID":123}));
    let m = &v["Metric"];
    assert_eq!(m["ABPackets"], 5);
    assert_eq!(m["RTT"], 2_000_000);
    assert!(text.contains(
        r#""Metric":{"ABPackets":5,"ABBytes":490,"BAPackets":5,"BABytes":490,"Start":1700000000000,"Last":1700000004002,"RTT":2000000}"#
    ));
    assert_eq!(v["NodeTID"], "b6f0c1d2");
    assert_eq!(v["ParentUUID"], "");
    assert_eq!(v["UUID"].as_str().unwrap().len(), 16);
    assert!(v.get("FinishType").is_none());
}

#[test]
fn tcp_handshake_data_and_fin() {
    let mut table = FlowTable::new(config());
    use tcp_flags::*;
    let c = |flags, len| v4_frame(IP_A, IP_B, 6, &tcp(40000, 80, flags, len), true);
    let s = |flags, len| v4_frame(IP_B, IP_A, 6, &tcp(80, 40000, flags, len), false);
    feed(&mut table, t(0), &c(SYN, 0));
    feed(&mut table, t(1), &s(SYN | ACK, 0));
    feed(&mut table, t(2), &c(ACK, 0));
    feed(&mut table, t(3), &c(PSH | ACK, 100));
    feed(&mut table, t(4), &s(PSH | ACK, 1000));
    assert_eq!(only_flow(&table).finish_type(), None);
    feed(&mut table, t(5), &c(FIN | ACK, 0));
    feed(&mut table, t(6), &s(FIN | ACK, 0));
    feed(&mut table, t(7), &c(ACK, 0));
    let f = only_flow(&table);
    assert_eq!(f.finish_type(), Some(FinishType::TcpFin));
    assert_eq!(f.finish_type().unwrap().name(), "TCP_FIN");
    assert_eq!(f.to_json()["FinishType"], 2);
    assert_eq!(f.layers_path().to_string(), "Ethernet/IPv4/TCP");
    let tr = f.transport().unwrap();
    assert_eq!((tr.a, tr.b, tr.protocol_name()), (40000, 80, "TCP"));
    assert_eq!(f.field("Transport.A"), Some(json!(40000)));
    assert_eq!(f.field("TCP.B"), Some(json!(80)));
    assert_eq!(f.field("UDP.B"), None);
    assert_eq!(f.direction(Direction::AB).tcp_flags, SYN | ACK | PSH | FIN);
    assert_eq!(f.direction(Direction::BA).tcp_flags, SYN | ACK | PSH | FIN);
    assert_eq!(f.metric().rtt, 1_000_000);
    let m = f.metric();
    assert_eq!((m.ab_packets, m.ba_packets), (5, 3));
    assert_eq!(m.ab_bytes, 4 * 54 + 154);
    assert_eq!(f.direction(Direction::AB).delta_ip_bytes, 4 * 40 + 140);

    // Finished flows leave 15 s after their last packet, well before the idle timeout.
    assert_eq!(table.drain_expired(t(7 + 14_999)).count(), 0);
    assert_eq!(
        table.poll_timeout(),
        Some(t(10_000)),
        "next update tick first"
    );
    let ev: Vec<_> = table.drain_expired(t(7 + 15_000)).collect();
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0].kind, FlowEventKind::Expired);
    assert_eq!(ev[0].flow.finish_type(), Some(FinishType::TcpFin));
    assert!(table.is_empty());
}

#[test]
fn tcp_rst_finishes_with_rst() {
    let mut table = FlowTable::new(config());
    feed(
        &mut table,
        t(0),
        &v4_frame(IP_A, IP_B, 6, &tcp(12345, 54321, tcp_flags::SYN, 0), true),
    );
    feed(
        &mut table,
        t(1),
        &v4_frame(
            IP_B,
            IP_A,
            6,
            &tcp(54321, 12345, tcp_flags::RST | tcp_flags::ACK, 0),
            false,
        ),
    );
    let f = only_flow(&table);
    assert_eq!(f.finish_type(), Some(FinishType::TcpRst));
    assert_eq!(f.field("FinishType"), Some(json!(3)));
    assert_eq!(f.metric().rtt, 0, "RST is no SYN/ACK");
}

#[test]
fn opposite_tcp_connections_are_distinct_flows() {
    // Skydive's TestFlowsHashCnx: 12345->54321 and 54321->12345 with RST replies are two flows.
    let mut table = FlowTable::new(config());
    for i in 0..10 {
        for (sp, dp) in [(12345, 54321), (54321, 12345)] {
            let syn = v4_frame(IP_A, IP_B, 6, &tcp(sp, dp, tcp_flags::SYN, 0), true);
            let rst = v4_frame(IP_B, IP_A, 6, &tcp(dp, sp, tcp_flags::RST, 0), false);
            feed(&mut table, t(i * 10), &syn);
            feed(&mut table, t(i * 10 + 1), &rst);
        }
    }
    let mut flows: Vec<_> = table.flows().collect();
    flows.sort_by_key(|f| f.transport().unwrap().a);
    assert_eq!(flows.len(), 2);
    for f in &flows {
        let m = f.metric();
        assert_eq!((m.ab_packets, m.ba_packets), (10, 10));
    }
    assert_eq!(flows[0].transport().unwrap().b, 54321);
    assert_eq!(flows[1].transport().unwrap().b, 12345);
}

#[test]
fn udp_both_directions_and_dns_timeout() {
    let mut table = FlowTable::new(config());
    feed(
        &mut table,
        t(0),
        &v4_frame(IP_A, IP_B, 17, &udp(33000, 53, 30), true),
    );
    feed(
        &mut table,
        t(3),
        &v4_frame(IP_B, IP_A, 17, &udp(53, 33000, 90), false),
    );
    feed(
        &mut table,
        t(5),
        &v4_frame(IP_A, IP_B, 17, &udp(33000, 53, 30), true),
    );
    let f = only_flow(&table);
    assert_eq!(f.layers_path().to_string(), "Ethernet/IPv4/UDP/DNS");
    assert_eq!(f.application(), "DNS");
    let m = f.metric();
    assert_eq!((m.ab_packets, m.ba_packets), (2, 1));
    assert_eq!((m.ab_bytes, m.ba_bytes), (2 * 72, 132));
    assert_eq!(f.transport().unwrap().a, 33000);
    // DNS flows use the 10 s application timeout.
    assert_eq!(table.drain_expired(t(5 + 9_999)).count(), 0);
    assert_eq!(table.drain_expired(t(5 + 10_000)).count(), 1);
}

/// A node's TID can change while it is captured (its namespace gets its name): the
/// flows already in the table and those after carry the new one, in one flow.
#[test]
fn retag_moves_held_and_new_flows_to_the_new_tid() {
    let mut table = FlowTable::new(config());
    let req = |seq| v4_frame(IP_A, IP_B, 1, &icmp(8, 123, seq, 56), true);
    feed(&mut table, t(0), &req(0));
    table.retag("b6f0c1d2");
    assert_eq!(
        only_flow(&table).node_tid(),
        "b6f0c1d2",
        "same TID: nothing to do"
    );
    table.retag("new-tid");
    assert_eq!(only_flow(&table).node_tid(), "new-tid");
    feed(&mut table, t(200), &req(1));
    let f = only_flow(&table);
    assert_eq!((f.node_tid(), f.metric().ab_packets), ("new-tid", 2));
    assert_eq!(table.identity().node_tid, "new-tid");
    assert_eq!(table.identity().capture_id, "8e1f0a0b-capture");
}

#[test]
fn vlan_tagged_frames() {
    let mut tagged = FlowTable::new(config());
    let mut untagged = FlowTable::new(FlowTableConfig {
        node_tid: "other-node".into(),
        ..config()
    });
    let ping = ipv4(IP_A, IP_B, 1, 0, &icmp(8, 7, 1, 56));
    let pong = ipv4(IP_B, IP_A, 1, 0, &icmp(0, 7, 1, 56));
    for vlan in [8u16, 9] {
        feed(
            &mut tagged,
            t(0),
            &eth(MAC_A, MAC_B, &[vlan], 0x0800, &ping),
        );
        feed(
            &mut tagged,
            t(1),
            &eth(MAC_B, MAC_A, &[vlan], 0x0800, &pong),
        );
    }
    feed(&mut untagged, t(0), &eth(MAC_A, MAC_B, &[], 0x0800, &ping));
    let mut flows: Vec<_> = tagged.flows().collect();
    flows.sort_by_key(|f| f.link().unwrap().id);
    assert_eq!(flows.len(), 2, "VLANs separate flows");
    let f = flows[0];
    assert_eq!(f.layers_path().to_string(), "Ethernet/Dot1Q/IPv4/ICMPv4");
    assert_eq!(f.field("Link.ID"), Some(json!(8)));
    assert_eq!(f.field("ETHERNET.ID"), Some(json!(8)));
    assert_eq!(f.metric().ab_bytes, 102);
    assert_eq!(f.direction(Direction::AB).delta_ip_bytes, 84);
    let plain = only_flow(&untagged);
    assert_eq!(plain.layers_path().to_string(), "Ethernet/IPv4/ICMPv4");
    assert_eq!(f.l3_tracking_id(), plain.l3_tracking_id());
    assert_eq!(f.tracking_id(), plain.tracking_id());
    assert_ne!(f.uuid(), plain.uuid());
    assert_ne!(flows[0].uuid(), flows[1].uuid());
}

#[test]
fn qinq_link_id_stacks_tags() {
    let mut table = FlowTable::new(config());
    let ping = ipv4(IP_A, IP_B, 1, 0, &icmp(8, 7, 1, 56));
    feed(
        &mut table,
        t(0),
        &eth(MAC_A, MAC_B, &[5, 20], 0x0800, &ping),
    );
    let f = only_flow(&table);
    assert_eq!(
        f.layers_path().to_string(),
        "Ethernet/Dot1Q/Dot1Q/IPv4/ICMPv4"
    );
    assert_eq!(f.link().unwrap().id, (5 << 12) | 20);
}

#[test]
fn ipv6_icmp_and_tcp() {
    let a: Ipv6Addr = "fd00::1".parse().unwrap();
    let b: Ipv6Addr = "fd00::2".parse().unwrap();
    let mut table = FlowTable::new(config());
    let req = eth(
        MAC_A,
        MAC_B,
        &[],
        0x86dd,
        &ipv6(a, b, 58, &icmp(128, 456, 1, 56)),
    );
    let rep = eth(
        MAC_B,
        MAC_A,
        &[],
        0x86dd,
        &ipv6(b, a, 58, &icmp(129, 456, 1, 56)),
    );
    feed(&mut table, t(0), &req);
    feed(&mut table, t(1), &rep);
    let f = only_flow(&table);
    assert_eq!(
        f.layers_path().to_string(),
        "Ethernet/IPv6/ICMPv6/ICMPv6Echo"
    );
    assert_eq!(f.application(), "ICMPv6Echo");
    assert_eq!(f.field("ICMP.Type"), Some(json!("ECHO")));
    assert_eq!(f.field("ICMP.ID"), Some(json!(456)));
    assert_eq!(f.field("Network.Protocol"), Some(json!("IPV6")));
    assert_eq!(f.field("IPV6.A"), Some(json!("fd00::1")));
    assert_eq!(f.field("IPV4.A"), None);
    assert_eq!(f.metric().ba_packets, 1);
    assert_eq!(f.metric().rtt, 1_000_000);

    let syn = eth(
        MAC_A,
        MAC_B,
        &[],
        0x86dd,
        &ipv6(a, b, 6, &tcp(5000, 443, tcp_flags::SYN, 0)),
    );
    feed(&mut table, t(2), &syn);
    let tcp_flow = table
        .flows()
        .find(|f| f.transport().is_some())
        .expect("tcp flow");
    assert_eq!(tcp_flow.layers_path().to_string(), "Ethernet/IPv6/TCP");
    assert_eq!(tcp_flow.direction(Direction::AB).delta_ip_bytes, 60);
}

#[test]
fn layer_key_mode_l2_vs_l3() {
    // A routed conversation: the request leaves A for the router, the reply comes from another router
    // MAC. L2 keys on the MAC pair (two flows), L3 only on addresses and ports (one).
    let req = eth(
        MAC_A,
        MAC_R,
        &[],
        0x0800,
        &ipv4(IP_A, IP_B, 17, 0, &udp(1000, 2000, 10)),
    );
    let rep = eth(
        MAC_B,
        MAC_A,
        &[],
        0x0800,
        &ipv4(IP_B, IP_A, 17, 0, &udp(2000, 1000, 10)),
    );
    for (mode, expected) in [(LayerKeyMode::L2, 2), (LayerKeyMode::L3, 1)] {
        let mut table = FlowTable::new(FlowTableConfig {
            layer_key_mode: mode,
            ..config()
        });
        feed(&mut table, t(0), &req);
        feed(&mut table, t(1), &rep);
        assert_eq!(table.len(), expected, "{mode:?}");
        if mode == LayerKeyMode::L3 {
            let f = only_flow(&table);
            let m = f.metric();
            assert_eq!((m.ab_packets, m.ba_packets), (1, 1));
            // Link shows the first packet's MACs.
            assert_eq!(f.field("Link.B"), Some(json!("02:00:00:00:00:fe")));
        }
    }
    // Same L3 identity, different MAC pairs: same L3TrackingID, different TrackingID.
    let mut table = FlowTable::new(config());
    feed(&mut table, t(0), &req);
    feed(&mut table, t(1), &rep);
    let flows: Vec<_> = table.flows().collect();
    assert_eq!(flows[0].l3_tracking_id(), flows[1].l3_tracking_id());
    assert_ne!(flows[0].tracking_id(), flows[1].tracking_id());
}

#[test]
fn two_capture_points_share_tracking_id_not_uuid() {
    let (a, _) = ping_table(LayerKeyMode::L2);
    let mut other = FlowTable::new(FlowTableConfig {
        node_tid: "bridge-2".into(),
        capture_id: "capture-2".into(),
        ..config()
    });
    for seq in 0..5u16 {
        feed(
            &mut other,
            t(u64::from(seq) * 1000 + 1),
            &v4_frame(IP_A, IP_B, 1, &icmp(8, 123, seq, 56), true),
        );
    }
    let (fa, fb) = (only_flow(&a), only_flow(&other));
    assert_eq!(fa.tracking_id(), fb.tracking_id());
    assert_eq!(fa.l3_tracking_id(), fb.l3_tracking_id());
    assert_ne!(fa.uuid(), fb.uuid());
    assert_eq!(fa.field("TrackingID"), fb.field("TrackingID"));
    assert_ne!(fa.field("UUID"), fb.field("UUID"));
    assert_eq!(fb.field("NodeTID"), Some(json!("bridge-2")));
    assert_eq!(fb.field("CaptureID"), Some(json!("capture-2")));
}

#[test]
fn updates_and_idle_expiry_follow_the_virtual_clock() {
    let mut table = FlowTable::new(config());
    let pkt = v4_frame(IP_A, IP_B, 17, &udp(1000, 2000, 10), true);
    feed(&mut table, t(0), &pkt);
    feed(&mut table, t(5_000), &pkt);
    assert_eq!(table.poll_timeout(), Some(t(10_000)));
    assert_eq!(table.poll_updates(t(9_999)).count(), 0);
    let ev: Vec<_> = table.poll_updates(t(10_000)).collect();
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0].kind, FlowEventKind::Update);
    let lu = ev[0].flow.last_update_metric();
    assert_eq!((lu.ab_packets, lu.ab_bytes), (2, 2 * 52));
    assert_eq!(
        (lu.start, lu.last),
        (t(0).as_millis(), t(5_000).as_millis())
    );
    assert_eq!(ev[0].flow.direction(Direction::AB).delta_ip_bytes, 2 * 38);

    feed(&mut table, t(12_000), &pkt);
    // Untouched intervals report nothing; touched ones report only their delta.
    let ev: Vec<_> = table.poll_updates(t(20_000)).collect();
    assert_eq!(ev.len(), 1);
    let f = &ev[0].flow;
    let lu = f.last_update_metric();
    assert_eq!(lu.ab_packets, 1);
    assert_eq!(lu.start, t(10_000).as_millis());
    assert_eq!(f.metric().ab_packets, 3);
    assert_eq!(f.to_json()["LastUpdateMetric"]["ABPackets"], 1);
    assert_eq!(table.poll_updates(t(30_000)).count(), 0);
    let live = only_flow(&table);
    assert_eq!(live.last_update_metric().ab_packets, 0);

    // Idle timeout: 60 s after the last packet.
    assert_eq!(table.drain_expired(t(12_000 + 59_999)).count(), 0);
    let ev: Vec<_> = table.drain_expired(t(12_000 + 60_000)).collect();
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0].kind, FlowEventKind::Expired);
    assert_eq!(ev[0].flow.finish_type(), Some(FinishType::Timeout));
    assert_eq!(ev[0].flow.to_json()["FinishType"], 1);
    assert_eq!(table.stats().expired, 1);
    assert_eq!(table.stats().updates, 2);
    assert!(table.is_empty());
}

#[test]
fn full_table_evicts_least_recently_seen_with_bounded_memory() {
    let mut table = FlowTable::new(FlowTableConfig {
        max_flows: 100,
        max_pending_events: 1_000,
        ..config()
    });
    let frame = |i: u32| {
        v4_frame(
            IP_A,
            [10, 0, (i >> 8) as u8, i as u8],
            17,
            &udp(1000, 2000, 10),
            true,
        )
    };
    for i in 0..150u32 {
        feed(&mut table, t(u64::from(i)), &frame(i));
        // Keep flow 0 fresh: it must survive.
        feed(&mut table, t(u64::from(i)), &frame(0));
    }
    let st = table.stats();
    assert_eq!((st.flows, st.evicted, st.created), (100, 50, 150));
    let ev: Vec<_> = table.drain_expired(t(200)).collect();
    assert_eq!(ev.len(), 50);
    assert!(ev
        .iter()
        .all(|e| e.kind == FlowEventKind::Evicted
            && e.flow.finish_type() == Some(FinishType::Timeout)));
    let evicted: Vec<_> = ev
        .iter()
        .map(|e| e.flow.network().unwrap().b.to_string())
        .collect();
    assert_eq!(evicted.first().map(String::as_str), Some("10.0.0.1"));
    assert_eq!(evicted.last().map(String::as_str), Some("10.0.0.50"));
    assert!(table
        .flows()
        .any(|f| f.field("Network.B") == Some(json!("10.0.0.0"))));

    let footprint = table.memory_footprint();
    for i in 150..20_000u32 {
        feed(&mut table, t(u64::from(i)), &frame(i));
        if i % 40 == 0 {
            table.drain_expired(t(u64::from(i))).for_each(drop);
        }
    }
    table.drain_expired(t(20_000)).for_each(drop);
    assert_eq!(table.len(), 100);
    assert_eq!(table.memory_footprint(), footprint, "memory stays bounded");
}

#[test]
fn pending_evictions_are_capped() {
    let mut table = FlowTable::new(FlowTableConfig {
        max_flows: 10,
        max_pending_events: 5,
        ..config()
    });
    for i in 0..30u8 {
        feed(
            &mut table,
            t(u64::from(i)),
            &v4_frame(IP_A, [10, 0, 0, i], 17, &udp(1, 2, 0), true),
        );
    }
    let st = table.stats();
    assert_eq!((st.evicted, st.events_dropped), (20, 15));
    assert_eq!(table.drain_expired(t(31)).count(), 5);
}

#[test]
fn flush_all_reports_everything() {
    let (mut table, _) = ping_table(LayerKeyMode::L2);
    feed(
        &mut table,
        t(1),
        &v4_frame(IP_A, IP_B, 17, &udp(1, 2, 0), true),
    );
    let ev: Vec<_> = table.flush_all().collect();
    assert_eq!(ev.len(), 2);
    assert!(ev.iter().all(|e| e.kind == FlowEventKind::Flushed));
    assert!(table.is_empty());
    assert_eq!(table.stats().flushed, 2);
    assert_eq!(table.poll_timeout(), None);
}

#[test]
fn arp_fragments_and_raw_ip() {
    let mut table = FlowTable::new(config());
    let mut arp = vec![0, 1, 8, 0, 6, 4, 0, 1];
    arp.extend_from_slice(&MAC_A);
    arp.extend_from_slice(&IP_A);
    arp.extend_from_slice(&[0; 6]);
    arp.extend_from_slice(&IP_B);
    feed(&mut table, t(0), &eth(MAC_A, [0xff; 6], &[], 0x0806, &arp));
    let f = only_flow(&table);
    assert_eq!(f.layers_path().to_string(), "Ethernet/ARP");
    assert!(f.network().is_none());
    assert_eq!(f.field("L3TrackingID"), None);
    assert_eq!(f.field("Link.B"), Some(json!("ff:ff:ff:ff:ff:ff")));
    assert_eq!(table.drain_expired(t(10_000)).count(), 1, "ARP app timeout");

    // A non-first fragment has no ports: its own Ethernet/IPv4/Fragment flow.
    let mut frag = ipv4(IP_A, IP_B, 17, 0, &[0; 40]);
    frag[6] = 0x00;
    frag[7] = 0xb9;
    feed(&mut table, t(1), &eth(MAC_A, MAC_B, &[], 0x0800, &frag));
    let f = only_flow(&table);
    assert_eq!(f.layers_path().to_string(), "Ethernet/IPv4/Fragment");
    assert!(f.transport().is_none());
    table.flush_all().for_each(drop);

    // Raw IP (tun device): no Link layer; bytes are the IP lengths.
    let ip = ipv4(IP_A, IP_B, 17, 0xb8, &udp(5000, 6000, 12));
    let p = decode(LinkType::Raw, &ip);
    table.process(t(2), &p, ip.len() as u32);
    let f = only_flow(&table);
    assert_eq!(f.layers_path().to_string(), "IPv4/UDP");
    assert!(f.link().is_none());
    assert_eq!(f.tos(), 0xb8);
    assert_eq!(f.metric().ab_bytes, 40);
    assert_eq!(f.direction(Direction::AB).delta_ip_bytes, 40);
    assert!(f.to_json().get("Link").is_none());

    // Frames with no usable layer are counted, not keyed.
    table.process(t(3), &decode(LinkType::Raw, &[0x11, 0x22]), 2);
    assert_eq!(table.stats().undecoded, 1);
}

#[test]
fn field_lookup_covers_skydive_keys() {
    let (table, _) = ping_table(LayerKeyMode::L2);
    let f = only_flow(&table);
    let v = f.to_json();
    for key in [
        "UUID",
        "LayersPath",
        "Application",
        "TrackingID",
        "L3TrackingID",
        "NodeTID",
        "CaptureID",
        "Start",
        "Last",
        "ParentUUID",
        "RawPacketsCaptured",
    ] {
        assert_eq!(f.field(key).as_ref(), Some(&v[key]), "{key}");
    }
    for (key, obj, sub) in [
        ("Network.A", "Network", "A"),
        ("IPV4.B", "Network", "B"),
        ("Link.A", "Link", "A"),
        ("Metric.ABBytes", "Metric", "ABBytes"),
        ("Metric.RTT", "Metric", "RTT"),
        (
            "LastUpdateMetric.BAPackets",
            "LastUpdateMetric",
            "BAPackets",
        ),
    ] {
        assert_eq!(f.field(key).as_ref(), Some(&v[obj][sub]), "{key}");
    }
    assert_eq!(f.field("Network"), Some(v["Network"].clone()));
    assert_eq!(f.field("ICMP.Code"), Some(json!(0)));
    assert_eq!(f.field("Transport.A"), None);
    assert_eq!(f.field("FinishType"), None);
    assert_eq!(f.field("Nope"), None);
    assert_eq!(f.field("Metric.Nope"), None);
    assert_eq!(
        f.field("LayersPath"),
        Some(Value::from("Ethernet/IPv4/ICMPv4"))
    );
}

#[test]
fn slot_is_compact() {
    // Per-flow memory = slot + ~5-11 B of index; the target is < 200 B.
    let slot = std::hint::black_box(FlowTable::SLOT_SIZE);
    assert!(slot <= 184, "slot is {slot} bytes");
    assert!(std::mem::size_of::<Flow>() <= 176);
}

#[test]
fn a_shrunk_table_keeps_its_flows_and_gives_back_the_index() {
    let mut table = FlowTable::new(FlowTableConfig {
        max_flows: 500_000,
        ..config()
    });
    for sport in 0..100u16 {
        let f = v4_frame(IP_A, IP_B, 17, &udp(10_000 + sport, 53, 10), true);
        feed(&mut table, t(u64::from(sport)), &f);
    }
    let sized = table.memory_footprint();
    table.shrink_to_fit();
    let shrunk = table.memory_footprint();
    assert!(
        shrunk * 20 < sized,
        "{sized} bytes sized for 500,000 flows, {shrunk} shrunk to 100"
    );
    assert_eq!(table.len(), 100);
    // Known flows are still found (no new flow for their packets), new ones still fit.
    for sport in 0..200u16 {
        let f = v4_frame(IP_A, IP_B, 17, &udp(10_000 + sport, 53, 10), true);
        feed(&mut table, t(1_000 + u64::from(sport)), &f);
    }
    assert_eq!(table.len(), 200);
    let packets: u64 = table.flows().map(|f| f.metric().ab_packets).sum();
    assert_eq!(packets, 300);
}

#[test]
fn raw_packets_are_offered_up_to_the_limit_and_counted_when_kept() {
    let mut table = FlowTable::new(config());
    let mut offered = Vec::new();
    for seq in 0..4u16 {
        let req = v4_frame(IP_A, IP_B, 1, &icmp(8, 123, seq, 56), true);
        let p = decode(LinkType::Ethernet, &req);
        // The caller refuses the second frame (its budget is spent): not counted.
        table.process_keeping(t(u64::from(seq)), &p, req.len() as u32, 3, |f| {
            offered.push((seq, f.raw_packets_captured(), f.metric().ab_packets));
            seq != 1
        });
    }
    // Offered while fewer than 3 were kept, with the flow already updated.
    assert_eq!(offered, [(0, 0, 1), (1, 1, 2), (2, 1, 3), (3, 2, 4)]);
    let f = only_flow(&table);
    assert_eq!(f.raw_packets_captured(), 3);
    assert_eq!(f.to_json()["RawPacketsCaptured"], 3);
    assert_eq!(f.field("RawPacketsCaptured"), Some(json!(3)));
    // Without a limit nothing is offered.
    let (table, _) = ping_table(LayerKeyMode::L2);
    assert_eq!(only_flow(&table).raw_packets_captured(), 0);
}

/// A packet sampled 1-in-N stands for N packets of its length: the flow's totals and
/// its update window are scaled, the table's own statistics count the samples.
#[test]
fn sampled_packets_are_scaled_by_their_sampling_rate() {
    let mut table = FlowTable::new(config());
    let req = v4_frame(IP_A, IP_B, 17, &udp(4000, 53, 100), true);
    let rep = v4_frame(IP_B, IP_A, 17, &udp(53, 4000, 20), false);
    let (rq, rp) = (
        decode(LinkType::Ethernet, &req),
        decode(LinkType::Ethernet, &rep),
    );
    table.process_sampled(t(0), &rq, req.len() as u32, 400);
    table.process_sampled(t(10), &rq, req.len() as u32, 400);
    table.process_sampled(t(20), &rp, rep.len() as u32, 1000);
    // A rate of 0 (not sampled, by a careless agent) counts once.
    table.process_sampled(t(30), &rp, rep.len() as u32, 0);
    let m = only_flow(&table).metric();
    assert_eq!((m.ab_packets, m.ab_bytes), (800, 800 * req.len() as u64));
    assert_eq!((m.ba_packets, m.ba_bytes), (1001, 1001 * rep.len() as u64));
    let u = only_flow(&table).last_update_metric();
    assert_eq!((u.ab_packets, u.ba_packets), (800, 1001));
    assert_eq!(table.stats().packets, 4);
}
