//! `topotap client` against a real topotap: captures and injections created, listed,
//! shown and deleted through the binary, table output, and errors with the server's
//! reason and a non-zero exit.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::net::{bridged_pair, sh};
use common::{rand_tag, Topotap};
use serde_json::Value;
use topotap_targets::packet::{LinkType, Timestamp};
use topotap_targets::pcapfile::PcapWriter;

const WAIT: Duration = Duration::from_secs(10);

struct Run {
    ok: bool,
    stdout: String,
    stderr: String,
}

impl Run {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.stdout))
    }
}

/// Runs `topotap client <args>` against `t` (through TOPOTAP_ANALYZER).
fn client(t: &Topotap, args: &[&str]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_topotap"))
        .arg("client")
        .args(args)
        .env("TOPOTAP_ANALYZER", &t.addr)
        .output()
        .expect("run topotap client");
    Run {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn ok(t: &Topotap, args: &[&str]) -> Run {
    let r = client(t, args);
    assert!(r.ok, "{args:?} failed: {}", r.stderr);
    r
}

fn fails(t: &Topotap, args: &[&str], stderr_start: &str) {
    let r = client(t, args);
    assert!(!r.ok, "{args:?} should fail: {}", r.stdout);
    assert!(
        r.stderr.starts_with(stderr_start) && r.stderr.lines().count() == 1,
        "{args:?}: {:?}",
        r.stderr
    );
}

#[tokio::test]
async fn captures_through_the_client() {
    let t = Topotap::start_api_only();
    let query = "G.V().Has('Name', 'cli-eth0')";
    let created = ok(
        &t,
        &[
            "capture",
            "create",
            "--gremlin",
            query,
            "--bpf",
            "icmp",
            "--name",
            "web",
            "--description",
            "from the CLI",
            "--header-size",
            "128",
            "--layer-key-mode",
            "L3",
            "--ttl",
            "1m",
        ],
    )
    .json();
    let uuid = created["UUID"].as_str().unwrap().to_owned();
    assert_eq!(created["Name"], "web");
    assert_eq!(created["HeaderSize"], 128);
    assert_eq!(created["LayerKeyMode"], "L3");

    let list = ok(&t, &["capture", "list"]).json();
    assert_eq!(list[&uuid]["GremlinQuery"], query);
    let got = ok(&t, &["capture", "get", &uuid]).json();
    assert_eq!(got["BPFFilter"], "icmp");
    assert_eq!(got["Count"], 0);

    let table = ok(&t, &["capture", "list", "--format", "table"]).stdout;
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(
        lines[0].split_whitespace().collect::<Vec<_>>(),
        [
            "UUID",
            "Name",
            "GremlinQuery",
            "TargetType",
            "Target",
            "Count"
        ]
    );
    assert!(
        lines[1].starts_with(&uuid) && lines[1].contains("web"),
        "{table}"
    );
    assert!(lines[1].ends_with(" 0"), "{table}");
    let one = ok(&t, &["--format", "table", "capture", "get", &uuid]).stdout;
    assert_eq!(one.lines().count(), 2, "{one}");

    // --node builds the TID query.
    let by_tid = ok(&t, &["capture", "create", "--node", "abc-123"]).json();
    assert_eq!(by_tid["GremlinQuery"], "G.V().Has('TID', 'abc-123')");

    fails(
        &t,
        &["capture", "create", "--gremlin", query, "--bpf", "icmp"],
        "error: 409 Conflict: duplicated resource",
    );
    fails(
        &t,
        &["capture", "create", "--gremlin", "G.V().Has("],
        "error: 400 Bad Request: GremlinQuery: Not a valid Gremlin expression",
    );
    // An unknown step is refused when the capture is created, with its position.
    fails(
        &t,
        &["capture", "create", "--gremlin", "G.V().Bogus()"],
        "error: 400 Bad Request: GremlinQuery: Not a valid Gremlin expression: line 1, column 7: unknown step 'Bogus'",
    );
    fails(
        &t,
        &[
            "capture",
            "create",
            "--gremlin",
            "G.V()",
            "--bpf",
            "tcp portt 80",
        ],
        "error: 400 Bad Request: BPFFilter: Not a valid BPF expression",
    );
    fails(
        &t,
        &["capture", "create", "--gremlin", "G.V()", "--ttl", "soon"],
        "error: invalid --ttl",
    );

    let deleted = ok(
        &t,
        &["capture", "delete", &uuid, by_tid["UUID"].as_str().unwrap()],
    );
    assert_eq!(deleted.stdout, "");
    fails(
        &t,
        &["capture", "delete", &uuid],
        &format!("error: 404 Not Found: Capture '{uuid}' not found"),
    );
    fails(
        &t,
        &["capture", "get", &uuid],
        &format!("error: 404 Not Found: Capture '{uuid}' not found"),
    );
    assert_eq!(ok(&t, &["capture", "list"]).json(), serde_json::json!({}));
    assert_eq!(
        ok(&t, &["capture", "list", "--format", "table"])
            .stdout
            .lines()
            .count(),
        1
    );
}

#[tokio::test]
async fn injections_through_the_client() {
    let p = format!("k{}", rand_tag());
    let _net = bridged_pair(&p, 31);
    let t = Topotap::start(&["--ovsdb", "none"]);
    let src = format!("G.V().Has('Name', '{p}a').Out().Has('Name', 'eth0')");
    let dst = format!("G.V().Has('Name', '{p}b').Out().Has('Name', 'eth0')");
    for q in [&src, &dst] {
        let (v, ready) = t
            .wait_for(&format!("{q}.Has('IPV4').Has('MAC')"), WAIT, |v| {
                v.as_array().is_some_and(|a| a.len() == 1)
            })
            .await;
        assert!(ready, "{v}");
    }
    let capture = ok(
        &t,
        &["capture", "create", "--gremlin", &dst, "--bpf", "udp"],
    )
    .json();
    let capture = capture["UUID"].as_str().unwrap().to_owned();
    let q = format!("G.V().Has('Captures.ID', '{capture}', 'Captures.State', 'active')");
    let (v, active) = t
        .wait_for(&q, WAIT, |v| v.as_array().is_some_and(|a| a.len() == 1))
        .await;
    assert!(active, "{v}");

    let created = ok(
        &t,
        &[
            "injection",
            "create",
            "--src",
            &src,
            "--dst",
            &dst,
            "--type",
            "udp4",
            "--count",
            "3",
            "--interval",
            "10",
            "--src-port",
            "41000",
            "--dst-port",
            "6000",
            "--payload",
            "hi",
            "--increment",
        ],
    )
    .json();
    let uuid = created["UUID"].as_str().unwrap().to_owned();
    assert_eq!(created["DstIP"], "10.77.31.2");
    assert_eq!(created["IncrementPayload"], 1);
    let deadline = Instant::now() + WAIT;
    loop {
        let got = ok(&t, &["injection", "get", &uuid]).json();
        if got["State"] == "done" {
            assert_eq!(got["PacketCount"], 3);
            break;
        }
        assert!(Instant::now() < deadline, "{got}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let table = ok(&t, &["injection", "list", "--format", "table"]).stdout;
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(
        lines[0].split_whitespace().collect::<Vec<_>>(),
        [
            "UUID",
            "Type",
            "Src",
            "Dst",
            "SrcIP",
            "DstIP",
            "Count",
            "Interval",
            "State",
            "PacketCount"
        ]
    );
    assert!(lines[1].starts_with(&uuid), "{table}");
    assert!(
        lines[1].contains("udp4") && lines[1].contains(" done "),
        "{table}"
    );
    assert!(ok(&t, &["injection", "list"]).json()[&uuid].is_object());

    // A pcap file, replayed in a loop: 2 frames, 4 packets.
    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("two.pcap");
    let a_mac = mac_of(&format!("{p}a"));
    let b_mac = mac_of(&format!("{p}b"));
    write_pcap(
        &pcap,
        &[
            udp_frame(&a_mac, &b_mac, 31, 7000),
            udp_frame(&a_mac, &b_mac, 31, 7001),
        ],
    );
    let replay = ok(
        &t,
        &[
            "injection",
            "create",
            "--src",
            &src,
            "--count",
            "4",
            "--pcap",
            pcap.to_str().unwrap(),
            "--resource-ttl",
            "0",
        ],
    )
    .json();
    assert!(replay["Pcap"].as_str().is_some_and(|s| !s.is_empty()));
    let q = format!("G.Flows().Has('CaptureID', '{capture}', 'Transport.A', 5000)");
    let (flows, seen) = t
        .wait_for(&q, WAIT, |v| {
            v.as_array()
                .is_some_and(|a| a.len() == 2 && a.iter().all(|f| f["Metric"]["ABPackets"] == 2))
        })
        .await;
    assert!(seen, "{flows}");
    // The forged injection's 3 packets with 2, 3 and 4 bytes of payload.
    let q = format!("G.Flows().Has('CaptureID', '{capture}', 'Transport.A', 41000)");
    let flows = t.query(&q).await;
    assert_eq!(flows[0]["Metric"]["ABPackets"], 3, "{flows}");
    assert_eq!(flows[0]["Metric"]["ABBytes"], 44 + 45 + 46, "{flows}");

    fails(
        &t,
        &[
            "injection",
            "create",
            "--src",
            &src,
            "--dst",
            &dst,
            "--count",
            "0",
        ],
        "error: 400 Bad Request: Count: ",
    );
    fails(
        &t,
        &[
            "injection",
            "create",
            "--src",
            "G.V().Has('Name', 'nope')",
            "--dst-ip",
            "10.0.0.1",
        ],
        "error: 400 Bad Request: Src: no interface matches",
    );
    fails(
        &t,
        &[
            "injection",
            "create",
            "--src",
            &src,
            "--dst",
            &dst,
            "--dst-mac",
            "01:02",
        ],
        "error: 400 Bad Request: DstMAC: not a valid MAC address",
    );
    fails(
        &t,
        &[
            "injection",
            "create",
            "--src",
            &src,
            "--pcap",
            "/nonexistent.pcap",
        ],
        "error: cannot read the pcap file /nonexistent.pcap",
    );

    let deleted = ok(
        &t,
        &[
            "injection",
            "delete",
            &uuid,
            replay["UUID"].as_str().unwrap(),
        ],
    );
    assert_eq!(deleted.stdout, "");
    fails(
        &t,
        &["injection", "delete", &uuid],
        &format!("error: 404 Not Found: Injectpacket '{uuid}' not found"),
    );
}

#[test]
fn unreachable_server_and_help() {
    let out = Command::new(env!("CARGO_BIN_EXE_topotap"))
        .args(["client", "--analyzer", "127.0.0.1:1", "capture", "list"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("error: cannot reach topotap at http://127.0.0.1:1"),
        "{err}"
    );

    let help = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_topotap"))
            .arg("client")
            .args(args)
            .arg("--help")
            .output()
            .unwrap();
        assert!(out.status.success());
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let h = help(&["capture", "create"]);
    for opt in [
        "--gremlin",
        "--node",
        "--bpf",
        "--type",
        "--target",
        "--target-type",
        "--header-size",
        "--sampling-rate",
        "--polling-interval",
        "--name",
        "--description",
        "--layer-key-mode",
        "--ttl",
    ] {
        assert!(h.contains(opt), "capture create --help lacks {opt}");
    }
    let h = help(&["injection", "create"]);
    for opt in [
        "--src",
        "--dst",
        "--type",
        "--count",
        "--interval",
        "--src-ip",
        "--dst-ip",
        "--src-mac",
        "--dst-mac",
        "--src-port",
        "--dst-port",
        "--id",
        "--mode",
        "--payload",
        "--increment",
        "--ttl",
        "--pcap",
        "--resource-ttl",
        "icmp6",
        "random",
    ] {
        assert!(h.contains(opt), "injection create --help lacks {opt}");
    }
    assert!(help(&["inject-packet"]).contains("list"));
}

fn mac_of(ns: &str) -> [u8; 6] {
    let text = sh(&format!("ip -n {ns} -br link show eth0"));
    let mac = text.split_whitespace().nth(2).unwrap();
    let mut out = [0u8; 6];
    for (b, part) in out.iter_mut().zip(mac.split(':')) {
        *b = u8::from_str_radix(part, 16).unwrap();
    }
    out
}

/// A UDP datagram 10.77.<subnet>.1:5000 -> .2:<dport> with 4 bytes of payload and no
/// UDP checksum (valid for IPv4).
fn udp_frame(src: &[u8; 6], dst: &[u8; 6], subnet: u8, dport: u16) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(dst);
    f.extend_from_slice(src);
    f.extend_from_slice(&[0x08, 0x00]);
    let mut ip = vec![
        0x45, 0, 0, 32, 0, 0, 0, 0, 64, 17, 0, 0, 10, 77, subnet, 1, 10, 77, subnet, 2,
    ];
    let mut sum: u32 = ip
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    ip[10..12].copy_from_slice(&(!(sum as u16)).to_be_bytes());
    f.extend_from_slice(&ip);
    f.extend_from_slice(&5000u16.to_be_bytes());
    f.extend_from_slice(&dport.to_be_bytes());
    f.extend_from_slice(&[0, 12, 0, 0]);
    f.extend_from_slice(b"ping");
    f
}

fn write_pcap(path: &std::path::Path, frames: &[Vec<u8>]) {
    let file = std::fs::File::create(path).unwrap();
    let mut w = PcapWriter::new(file, LinkType::Ethernet, 65535).unwrap();
    for f in frames {
        w.write_packet(Timestamp::ZERO, f.len() as u32, f).unwrap();
    }
    w.flush().unwrap();
}
