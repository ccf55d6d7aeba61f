//! The `erspanv1` (Type II) and `erspanv2` (Type III) capture targets against a real receiver:
//! traffic between two namespaces, topotap mirroring one interface, the GRE packets captured
//! by tcpdump in a third namespace reached over a veth, checked with tshark and compared
//! byte for byte with a tcpdump capture of the same interface.

mod common;

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use common::collector::{
    ifindex, in_netns, require, send_udp, tshark_fields, tshark_malformed, CollectorNet, Tcpdump,
};
use common::net::{bridged_pair, sh};
use common::{rand_tag, Topotap};
use serde_json::{json, Value};
use topotap_targets::packet::{LinkType, Timestamp};
use topotap_targets::pcapfile::{PcapReader, PcapWriter};
use topotap_targets::send::GreSender;
use topotap_targets::wire::erspan::{Mirrored, Repr};

const WAIT: Duration = Duration::from_secs(10);
const FILTER: &str = "udp dst port 9999 or (vlan and udp dst port 9999)";

/// The session id topotap derives from a capture UUID: FNV-1a onto 1..=1023.
fn session_id(uuid: &str) -> u16 {
    let h = uuid.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    (1 + h % 1023) as u16
}

struct Case {
    /// Test subnet number (unique per test).
    n: u8,
    target_type: &'static str,
    ipv6: bool,
    header_size: u32,
}

/// What the receiver got: the mirrored packets (reassembled when the outer IP fragmented them)
/// and the frames the reference capture saw.
struct Outcome {
    mirrored: Vec<(u32, Repr, Vec<u8>)>,
    reference: Vec<Vec<u8>>,
    collector_pcap: std::path::PathBuf,
    uuid: String,
    if_index: u32,
    stats: Value,
    _dir: tempfile::TempDir,
    _net: common::net::Cleanup,
}

async fn mirror(case: Case) -> Outcome {
    require("tcpdump", "tcpdump");
    require("tshark", "tshark");
    require("tcpreplay", "tcpreplay");
    let p = format!("e{}", rand_tag());
    let n = case.n;
    let mut net = bridged_pair(&p, n);
    let collector = CollectorNet::new(&p, n, &mut net);
    let a = format!("{p}a");
    sh(&format!("ip netns exec {a} ping -c 1 -W 2 10.77.{n}.2"));
    let dest: IpAddr = if case.ipv6 {
        collector.v6.parse().unwrap()
    } else {
        collector.v4.parse().unwrap()
    };
    // A raw GRE socket in the collector namespace: with a listener the kernel does not answer
    // the mirrored packets with ICMP "unreachable" (which would fail later sends).
    let _listener = in_netns(&collector.ns, move || {
        GreSender::open(dest).expect("raw socket")
    });
    let dir = tempfile::tempdir().unwrap();
    let collector_pcap = dir.path().join("erspan.pcap");
    let gre = if case.ipv6 {
        "ip6 proto 47"
    } else {
        "ip proto 47"
    };
    let mut rx = Tcpdump::start(Some(&collector.ns), "eth0", gre, &collector_pcap);
    let reference_pcap = dir.path().join("reference.pcap");
    let mut reference = Tcpdump::start(Some(&a), "eth0", FILTER, &reference_pcap);

    let t = Topotap::start(&["--ovsdb", "none"]);
    let target = if case.ipv6 {
        format!("[{dest}]:0")
    } else {
        format!("{dest}:0")
    };
    let mut body = json!({
        "GremlinQuery": format!("G.V().Has('Name', '{a}').Out().Has('Name', 'eth0')"),
        "BPFFilter": FILTER,
        "Target": target,
        "TargetType": case.target_type,
    });
    if case.header_size > 0 {
        body["HeaderSize"] = case.header_size.into();
    }
    let (s, cap) = t
        .request("POST", "/api/capture", Some(&body.to_string()))
        .await;
    assert_eq!(s, 201, "{cap}");
    let uuid = cap["UUID"].as_str().unwrap().to_owned();
    let q = format!("G.V().Has('Captures.ID', '{uuid}', 'Captures.State', 'active')");
    let (v, ok) = t
        .wait_for(&q, WAIT, |v| v.as_array().is_some_and(|a| a.len() == 1))
        .await;
    assert!(ok, "capture not active: {v}");

    // Small and full-size frames (1,514 bytes: the outer packet exceeds the 1,500-byte MTU and
    // is fragmented), then tagged ones.
    send_udp(
        &a,
        format!("10.77.{n}.2:9999").parse().unwrap(),
        20,
        100,
        10,
    );
    send_udp(&a, format!("10.77.{n}.2:9999").parse().unwrap(), 5, 1472, 5);
    // This kernel has no VLAN devices: tagged frames are replayed onto the interface.
    let tagged = dir.path().join("tagged.pcap");
    write_tagged(&tagged, n, 10);
    sh(&format!(
        "ip netns exec {a} tcpreplay -q -i eth0 {}",
        tagged.display()
    ));
    let expected = 35;
    let q = format!("G.V().Has('Captures.ID', '{uuid}')");
    let deadline = std::time::Instant::now() + WAIT;
    let stats = loop {
        let v = t.query(&q).await;
        let export = v[0]["Metadata"]["Captures"][0]["Export"].clone();
        if export["Messages"].as_u64() == Some(expected) || std::time::Instant::now() > deadline {
            break export;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    rx.stop();
    reference.stop();
    drop(t);

    Outcome {
        mirrored: mirrored_packets(&collector_pcap),
        reference: frames(&reference_pcap),
        collector_pcap,
        uuid,
        if_index: ifindex(&a, "eth0"),
        stats,
        _dir: dir,
        _net: net,
    }
}

/// Writes `count` 346-byte UDP frames to port 9999 with an 802.1Q tag (VID 100, PCP 5).
fn write_tagged(path: &Path, n: u8, count: u16) {
    let file = std::fs::File::create(path).unwrap();
    let mut w = PcapWriter::new(file, LinkType::Ethernet, 65_535).unwrap();
    for i in 0..count {
        let payload = 300u16;
        let mut f = vec![0xff; 6];
        f.extend([0x02, 0, 0, 0, n, 1]);
        f.extend([0x81, 0x00, 0xa0, 0x64, 0x08, 0x00]);
        let total = 20 + 8 + payload;
        let mut ip = vec![
            0x45,
            0,
            (total >> 8) as u8,
            total as u8,
            0,
            i as u8,
            0x40,
            0,
            64,
            17,
            0,
            0,
        ];
        ip.extend([10, 79, n, 1, 10, 79, n, 2]);
        let sum = ip
            .chunks(2)
            .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]])))
            .sum::<u32>();
        let sum = !(((sum & 0xffff) + (sum >> 16)) as u16);
        ip[10..12].copy_from_slice(&sum.to_be_bytes());
        f.extend(ip);
        let ulen = 8 + payload;
        f.extend([0x9c, 0x40, 0x27, 0x0f, (ulen >> 8) as u8, ulen as u8, 0, 0]);
        f.extend((0..payload).map(|j| (j as u8).wrapping_add(i as u8)));
        w.write_packet(Timestamp::from_secs(u64::from(i)), f.len() as u32, &f)
            .unwrap();
    }
    w.flush().unwrap();
}

fn frames(path: &Path) -> Vec<Vec<u8>> {
    let bytes = std::fs::read(path).unwrap();
    PcapReader::new(&bytes)
        .unwrap()
        .map(|r| r.unwrap().data.to_vec())
        .collect()
}

/// The GRE payloads of the IPv4/IPv6 packets in an Ethernet capture, fragments reassembled, parsed
/// as ERSPAN.
fn mirrored_packets(path: &Path) -> Vec<(u32, Repr, Vec<u8>)> {
    let mut pending: HashMap<u32, Vec<(usize, bool, Vec<u8>)>> = HashMap::new();
    let mut out = Vec::new();
    for f in frames(path) {
        let ip = &f[14..];
        // (fragment id, offset, more fragments, payload) or a whole packet.
        let (frag, payload) = match u16::from_be_bytes([f[12], f[13]]) {
            0x0800 => {
                let ihl = usize::from(ip[0] & 0xf) * 4;
                let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
                assert_eq!(ip[9], 47, "not GRE");
                let ff = u16::from_be_bytes([ip[6], ip[7]]);
                let id = u32::from(u16::from_be_bytes([ip[4], ip[5]]));
                let frag = (ff & 0x3fff != 0)
                    .then(|| (id, usize::from(ff & 0x1fff) * 8, ff & 0x2000 != 0));
                (frag, ip[ihl..total].to_vec())
            }
            0x86dd => {
                let len = usize::from(u16::from_be_bytes([ip[4], ip[5]]));
                let body = &ip[40..40 + len];
                if ip[6] == 44 {
                    assert_eq!(body[0], 47, "not GRE");
                    let off = u16::from_be_bytes([body[2], body[3]]);
                    let id = u32::from_be_bytes([body[4], body[5], body[6], body[7]]);
                    (
                        Some((id, usize::from(off & 0xfff8), off & 1 != 0)),
                        body[8..].to_vec(),
                    )
                } else {
                    assert_eq!(ip[6], 47, "not GRE");
                    (None, body.to_vec())
                }
            }
            other => panic!("ethertype {other:#x}"),
        };
        let whole = match frag {
            None => Some(payload),
            Some((id, offset, more)) => {
                let parts = pending.entry(id).or_default();
                parts.push((offset, more, payload));
                parts.sort_by_key(|p| p.0);
                let mut next = 0;
                let mut done = false;
                for (off, more, data) in parts.iter() {
                    if *off != next {
                        break;
                    }
                    next += data.len();
                    done = !more;
                }
                done.then(|| {
                    pending
                        .remove(&id)
                        .unwrap()
                        .into_iter()
                        .flat_map(|p| p.2)
                        .collect()
                })
            }
        };
        if let Some(gre) = whole {
            let m = Mirrored::parse(&gre).unwrap_or_else(|e| panic!("{e}: {gre:02x?}"));
            out.push((m.sequence, m.header, m.frame.to_vec()));
        }
    }
    assert!(pending.is_empty(), "incomplete fragments");
    out
}

fn check_sequences_and_frames(o: &Outcome, header_size: usize) {
    assert_eq!(
        o.reference.len(),
        35,
        "reference capture; export counters {}",
        o.stats
    );
    assert_eq!(
        o.mirrored.len(),
        o.reference.len(),
        "mirrored packets received; export counters {}",
        o.stats
    );
    assert_eq!(o.stats["SendErrors"], 0, "{}", o.stats);
    let seqs: Vec<u32> = o.mirrored.iter().map(|m| m.0).collect();
    assert_eq!(seqs, (0..35).collect::<Vec<u32>>(), "GRE sequence numbers");
    for (i, ((_, _, mirrored), original)) in o.mirrored.iter().zip(&o.reference).enumerate() {
        let want = if header_size > 0 {
            &original[..original.len().min(header_size)]
        } else {
            &original[..]
        };
        assert!(
            mirrored[..] == want[..],
            "frame {i} differs:\n{mirrored:02x?}\n{want:02x?}"
        );
    }
}

/// Runs tshark over the collector capture: one row per mirrored packet. Whole frames must decode
/// cleanly; truncated ones are flagged by tshark (their IP length exceeds what was mirrored).
fn tshark_erspan(o: &Outcome, whole: bool, extra: &[&str]) -> Vec<Vec<String>> {
    if whole {
        assert_eq!(
            tshark_malformed(&o.collector_pcap, &[]),
            0,
            "malformed packets"
        );
    }
    let mut fields = vec![
        "gre.flags.sequence_number",
        "gre.sequence_number",
        "erspan.version",
        "erspan.spanid",
        "erspan.truncated",
        "erspan.vlan",
        "erspan.cos",
    ];
    fields.extend(extra);
    tshark_fields(&o.collector_pcap, &["-Y", "erspan"], &fields)
}

#[tokio::test]
async fn type_ii_mirrors_frames_byte_for_byte_over_ipv4() {
    let o = mirror(Case {
        n: 41,
        target_type: "erspanv1",
        ipv6: false,
        header_size: 0,
    })
    .await;
    check_sequences_and_frames(&o, 0);
    let rows = tshark_erspan(&o, true, &["erspan.encap", "erspan.index"]);
    assert_eq!(rows.len(), 35);
    let span = session_id(&o.uuid).to_string();
    for (i, r) in rows.iter().enumerate() {
        assert_eq!(r[0], "1", "S bit: {r:?}");
        assert_eq!(r[1], i.to_string(), "sequence: {r:?}");
        assert_eq!(r[2], "1", "Type II is ERSPAN version 1: {r:?}");
        assert_eq!(r[3], span, "{r:?}");
        assert_eq!(r[4], "0", "not truncated: {r:?}");
        let tagged = i >= 25;
        let (vlan, cos, en) = if tagged {
            ("100", "5", "3")
        } else {
            ("0", "0", "0")
        };
        assert_eq!((&r[5][..], &r[6][..], &r[7][..]), (vlan, cos, en), "{r:?}");
        assert_eq!(r[8], o.if_index.to_string(), "index: {r:?}");
    }
}

#[tokio::test]
async fn type_iii_mirrors_frames_byte_for_byte_over_ipv6() {
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    let o = mirror(Case {
        n: 42,
        target_type: "erspanv2",
        ipv6: true,
        header_size: 0,
    })
    .await;
    let after = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    check_sequences_and_frames(&o, 0);
    let rows = tshark_erspan(
        &o,
        true,
        &["ipv6.dst", "erspan.timestamp", "erspan.gra", "erspan.p"],
    );
    assert_eq!(rows.len(), 35);
    let span = session_id(&o.uuid).to_string();
    // Timestamps in 100 ns units, modulo 2^32, between the start and the end of the test.
    let lo = (before.as_nanos() / 100) as u64;
    let hi = (after.as_nanos() / 100) as u64;
    for (i, r) in rows.iter().enumerate() {
        assert_eq!(r[0], "1", "S bit: {r:?}");
        assert_eq!(r[1], i.to_string(), "sequence: {r:?}");
        assert_eq!(r[2], "2", "Type III is ERSPAN version 2: {r:?}");
        assert_eq!(r[3], span, "{r:?}");
        assert_eq!(r[4], "0", "not truncated: {r:?}");
        let tagged = i >= 25;
        let (vlan, cos) = if tagged { ("100", "5") } else { ("0", "0") };
        assert_eq!((&r[5][..], &r[6][..]), (vlan, cos), "{r:?}");
        assert!(r[7].starts_with("fd00:213:42::2"), "outer IPv6: {r:?}");
        let ts: u64 = r[8].parse().unwrap();
        let (lo32, hi32) = (lo % (1 << 32), hi % (1 << 32));
        let ok = if lo32 <= hi32 {
            (lo32..=hi32).contains(&ts)
        } else {
            ts >= lo32 || ts <= hi32
        };
        assert!(ok, "timestamp {ts} outside {lo}..{hi} (mod 2^32)");
        assert_eq!(r[9], "1", "100 ns granularity: {r:?}");
        assert_eq!(r[10], "1", "Ethernet PDU: {r:?}");
    }
    for (_, h, _) in &o.mirrored {
        assert!(matches!(h, Repr::TypeIII(_)), "{h:?}");
    }
}

#[tokio::test]
async fn header_size_truncates_and_sets_the_t_bit() {
    let o = mirror(Case {
        n: 43,
        target_type: "erspanv1",
        ipv6: false,
        header_size: 128,
    })
    .await;
    check_sequences_and_frames(&o, 128);
    let rows = tshark_erspan(&o, false, &[]);
    assert_eq!(rows.len(), 35);
    for (i, r) in rows.iter().enumerate() {
        // 142-byte frames, 1,514-byte frames, 346-byte tagged frames: all longer than 128.
        assert_eq!(r[4], "1", "frame {i} truncated: {r:?}");
    }
    for (_, h, frame) in &o.mirrored {
        let Repr::TypeII(h) = h else { panic!("{h:?}") };
        assert!(h.truncated);
        assert_eq!(frame.len(), 128);
    }
}
