//! `topotap client` against a real topotap: captures, injections, node and edge rules, alerts
//! created, listed, shown and deleted through the binary, table output, and errors with the server's
//! reason and a non-zero exit.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::net::{bridged_pair, sh};
use common::webhook::receiver;
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

/// Node and edge rules created, listed, shown and deleted through the client; what
/// they do shows in the graph and is undone when they are deleted.
#[tokio::test]
async fn rules_through_the_client() {
    let t = Topotap::start_api_only();
    let p = format!("cr{}", rand_tag());
    let (a, b) = (format!("{p}a"), format!("{p}b"));
    let mut rules = Vec::new();
    for n in [&a, &b] {
        let r = ok(
            &t,
            &[
                "noderule",
                "create",
                "--action",
                "create",
                "--node-name",
                n,
                "--node-type",
                "fabric",
                "--metadata",
                "Owner=ops,Rack.Row=3",
                "--name",
                "fabric node",
            ],
        )
        .json();
        assert_eq!(r["Metadata"]["Rack"]["Row"], 3, "{r}");
        rules.push(r["UUID"].as_str().unwrap().to_owned());
    }
    let update = ok(
        &t,
        &[
            "node-rule",
            "create",
            "--action",
            "update",
            "--query",
            &format!("G.V().Has('Name', '{a}')"),
            "-m",
            "Team=blue",
            "-m",
            "Weight=2",
        ],
    )
    .json();
    let edge = ok(
        &t,
        &[
            "edgerule",
            "create",
            "--src",
            &format!("G.V().Has('Name', '{a}')"),
            "--dst",
            &format!("G.V().Has('Name', '{b}')"),
            "--relationtype",
            "layer2",
            "--metadata",
            "Vlan=10",
            "--description",
            "uplink",
        ],
    )
    .json();
    let edge_id = edge["UUID"].as_str().unwrap().to_owned();
    assert_eq!(edge["Metadata"]["RelationType"], "layer2", "{edge}");

    let q = format!(
        "G.V().Has('Name', '{a}', 'Type', 'fabric', 'Owner', 'ops', 'Rack.Row', 3, 'Team', 'blue')\
         .OutE().Has('RelationType', 'layer2', 'Vlan', 10).OutV().Has('Name', '{b}')"
    );
    let (v, applied) = t
        .wait_for(&q, WAIT, |v| v.as_array().is_some_and(|a| a.len() == 1))
        .await;
    assert!(applied, "{q}: {v}\n{}", t.dump_named(&p).await);

    let list = ok(&t, &["noderule", "list"]).json();
    assert_eq!(list.as_object().map(|m| m.len()), Some(3), "{list}");
    assert_eq!(list[update["UUID"].as_str().unwrap()]["Action"], "update");
    let table = ok(&t, &["edgerule", "list", "--format", "table"]).stdout;
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(
        lines[0].split_whitespace().collect::<Vec<_>>(),
        ["UUID", "Name", "Src", "Dst", "Metadata", "Error"]
    );
    assert!(lines[1].starts_with(&edge_id), "{table}");
    let got = ok(&t, &["edge-rule", "get", &edge_id]).json();
    assert_eq!(got["Description"], "uplink");

    fails(
        &t,
        &[
            "noderule",
            "create",
            "--action",
            "create",
            "--node-name",
            "x",
        ],
        "error: 400 Bad Request: Metadata: a create rule needs",
    );
    fails(
        &t,
        &[
            "noderule", "create", "--action", "update", "--query", "G.V()", "-m", "Team",
        ],
        "error: --metadata \"Team\": expected KEY=VALUE",
    );
    fails(
        &t,
        &[
            "edgerule",
            "create",
            "--src",
            "G.V().Nope()",
            "--dst",
            "G.V()",
            "--relationtype",
            "x",
        ],
        "error: 400 Bad Request: Src: Not a valid Gremlin expression",
    );

    rules.push(update["UUID"].as_str().unwrap().to_owned());
    let mut args = vec!["noderule", "delete"];
    args.extend(rules.iter().map(String::as_str));
    assert_eq!(ok(&t, &args).stdout, "");
    ok(&t, &["edgerule", "delete", &edge_id]);
    fails(
        &t,
        &["edgerule", "delete", &edge_id],
        "error: 404 Not Found:",
    );
    let q = format!("G.V().Has('Name', Within('{a}', '{b}'))");
    let (v, gone) = t.wait_for(&q, WAIT, |v| v == &serde_json::json!([])).await;
    assert!(gone, "{q}: {v}");
    assert_eq!(ok(&t, &["noderule", "list"]).json(), serde_json::json!({}));
}

/// Alerts created, listed, shown and deleted through the client; one made by the
/// client fires its webhook on a real receiver when a matching node appears.
#[tokio::test(flavor = "multi_thread")]
async fn alerts_through_the_client() {
    let (hook, mut hooks) = receiver().await;
    let t = Topotap::start(&["--no-probes", "--allow-target", "127.0.0.1/32"]);
    let p = format!("ca{}", rand_tag());
    let expression = format!("G.V().Has('Name', '{p}')");
    let action = format!("http://{hook}/cli");
    let created = ok(
        &t,
        &[
            "alert",
            "create",
            "--expression",
            &expression,
            "--action",
            &action,
            "--name",
            &format!("{p}-hook"),
            "--description",
            "from the CLI",
        ],
    )
    .json();
    let uuid = created["UUID"].as_str().unwrap().to_owned();
    assert_eq!(created["Expression"], expression.as_str(), "{created}");
    assert_eq!(created["Trigger"], "graph", "{created}");
    assert_eq!(created["Action"], action.as_str(), "{created}");
    assert_eq!(created["Description"], "from the CLI", "{created}");
    assert!(created["CreateTime"].is_string(), "{created}");

    let timed = ok(
        &t,
        &[
            "alert",
            "create",
            "--expression",
            "G.V().Count()",
            "--period",
            "2s",
        ],
    )
    .json();
    let timed_id = timed["UUID"].as_str().unwrap().to_owned();
    assert_eq!(timed["Trigger"], "duration:2s", "{timed}");

    // The node appears: the webhook gets the alert, once.
    let (s, v) = t
        .request(
            "POST",
            "/api/node",
            Some(
                &serde_json::json!({"ID": format!("{p}-id"),
                    "Metadata": {"Name": p, "Type": "device"}})
                .to_string(),
            ),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let (line, body) = tokio::time::timeout(WAIT, hooks.recv())
        .await
        .expect("no webhook POST")
        .unwrap();
    assert_eq!(line, "POST /cli HTTP/1.1");
    assert_eq!(body["UUID"], uuid.as_str(), "{body}");
    assert_eq!(body["ReasonData"][0]["ID"], format!("{p}-id"), "{body}");

    let deadline = Instant::now() + WAIT;
    let got = loop {
        let got = ok(&t, &["alert", "get", &uuid]).json();
        if got["FireCount"] == 1 || Instant::now() > deadline {
            break got;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(got["State"], "firing", "{got}");
    assert_eq!(got["FireCount"], 1, "{got}");
    let list = ok(&t, &["alert", "list"]).json();
    assert_eq!(list.as_object().map(|m| m.len()), Some(2), "{list}");
    assert_eq!(list[&timed_id]["Trigger"], "duration:2s", "{list}");
    let table = ok(&t, &["alert", "list", "-o", "table"]).stdout;
    let rows = cells(&table);
    assert_eq!(
        rows[0],
        [
            "UUID",
            "Name",
            "Expression",
            "Trigger",
            "Action",
            "State",
            "FireCount"
        ]
    );
    let wide = ok(&t, &["alert", "get", &uuid, "-o", "wide"]).stdout;
    assert!(
        wide.lines()
            .next()
            .unwrap_or_default()
            .ends_with("ActionError"),
        "{wide}"
    );
    assert!(wide.contains("from the CLI"), "{wide}");

    // Bad input: the server's one-line reason or the flag's, and a non-zero exit.
    fails(
        &t,
        &["alert", "create", "--expression", "G.V().Has("],
        "error: 400 Bad Request: Expression: Not a valid Gremlin expression",
    );
    fails(
        &t,
        &["alert", "create", "--expression", " "],
        "error: --expression: a Gremlin expression is required",
    );
    fails(
        &t,
        &[
            "alert",
            "create",
            "--expression",
            "G.V()",
            "--trigger",
            "sometimes",
        ],
        "error: 400 Bad Request: Trigger: ",
    );
    fails(
        &t,
        &[
            "alert",
            "create",
            "--expression",
            "G.V()",
            "--period",
            "soon",
        ],
        "error: --period \"soon\": ",
    );
    fails(
        &t,
        &[
            "alert",
            "create",
            "--expression",
            "G.V()",
            "--period",
            "5ms",
        ],
        "error: --period \"5ms\": the period must be between",
    );
    fails(
        &t,
        &[
            "alert",
            "create",
            "--expression",
            "G.V()",
            "--action",
            "http://192.0.2.1/hook",
        ],
        "error: 403 Forbidden: ",
    );
    for args in [
        &["alert", "create"][..],
        &[
            "alert",
            "create",
            "--expression",
            "G.V()",
            "--trigger",
            "graph",
            "--period",
            "1s",
        ],
        &["alert", "get"],
        &["alert", "delete"],
    ] {
        let r = client(&t, args);
        assert!(!r.ok, "{args:?} should fail: {}", r.stdout);
        assert!(r.stderr.starts_with("error: "), "{args:?}: {}", r.stderr);
    }
    fails(
        &t,
        &["alert", "get", "nope"],
        "error: 404 Not Found: Alert 'nope' not found",
    );

    assert_eq!(ok(&t, &["alert", "delete", &uuid, &timed_id]).stdout, "");
    fails(&t, &["alert", "delete", &uuid], "error: 404 Not Found:");
    assert_eq!(ok(&t, &["alert", "list"]).json(), serde_json::json!({}));
    // Nothing more came: the alert fired once.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(hooks.try_recv().is_err());
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
        err.starts_with("error: cannot reach topotap at http://127.0.0.1:1")
            && err.contains("--analyzer")
            && err.contains("TOPOTAP_ANALYZER"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");

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

/// Splits a table into rows of cells (cells are separated by two spaces or more).
fn cells(table: &str) -> Vec<Vec<String>> {
    table
        .lines()
        .map(|l| {
            l.split("  ")
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .collect()
}

/// `42s` or `5m12s`, as ages are shown.
fn is_age(s: &str) -> bool {
    let (m, rest) = s.split_once('m').unwrap_or(("0", s));
    let secs = rest.strip_suffix('s').unwrap_or("x");
    !m.is_empty()
        && m.bytes().all(|b| b.is_ascii_digit())
        && !secs.is_empty()
        && secs.bytes().all(|b| b.is_ascii_digit())
}

/// The row of `table` whose cells include all of `wanted`.
fn row_with<'a>(table: &'a [Vec<String>], wanted: &[&str]) -> &'a [String] {
    table
        .iter()
        .find(|r| wanted.iter().all(|w| r.iter().any(|c| c == w)))
        .unwrap_or_else(|| panic!("no row with {wanted:?} in {table:?}"))
}

#[tokio::test]
async fn tables_are_chosen_per_element_kind() {
    let p = format!("o{}", rand_tag());
    let _net = bridged_pair(&p, 71);
    sh(&format!("ip -n {p}a addr add 10.77.71.11/24 dev eth0"));
    let t = Topotap::start(&["--ovsdb", "none"]);
    let a_eth0 = format!("G.V().Has('Name', '{p}a').Out().Has('Name', 'eth0')");
    let (v, ready) = t
        .wait_for(
            &format!("{a_eth0}.Has('IPV4', '10.77.71.11/24').Has('MAC')"),
            WAIT,
            |v| v.as_array().is_some_and(|a| a.len() == 1),
        )
        .await;
    assert!(ready, "{v}");
    let node = &v[0];
    let id = node["ID"].as_str().unwrap();
    let mac = node["Metadata"]["MAC"].as_str().unwrap();

    // Interfaces: namespace, name, type, state, MAC, every address.
    let q = format!("G.V().Has('Name', '{p}a').Out()");
    let table = cells(&ok(&t, &["-o", "table", "topology", "query", "--gremlin", &q]).stdout);
    assert_eq!(
        table[0],
        ["NAMESPACE", "NAME", "TYPE", "STATE", "MAC", "ADDRESSES"]
    );
    let pa = format!("{p}a");
    let eth0 = row_with(&table, &[&pa, "eth0"]);
    assert_eq!(eth0[2..5], ["veth", "UP", mac]);
    assert!(
        eth0[5].starts_with("10.77.71.1/24,10.77.71.11/24"),
        "{eth0:?}"
    );
    row_with(&table, &[&pa, "lo", "device"]);
    // --format is the old name of -o.
    assert_eq!(
        cells(
            &ok(
                &t,
                &["--format", "table", "topology", "query", "--gremlin", &q]
            )
            .stdout
        ),
        table
    );
    // Wide adds MTU, driver, host and ID.
    let wide = cells(
        &ok(
            &t,
            &["-o", "wide", "topology", "query", "--gremlin", &a_eth0],
        )
        .stdout,
    );
    assert_eq!(
        wide[0][6..],
        ["MTU", "DRIVER", "HOST", "ID"].map(String::from)
    );
    assert_eq!(
        wide[1][6..],
        ["1500", "veth", &t.host_id, id].map(String::from)
    );
    // An interface of the root namespace, and another kind of node in the same answer.
    let q = format!("G.V().Has('Name', WITHIN('{p}a0', '{p}b'))");
    let mixed = ok(&t, &["-o", "table", "topology", "query", "--gremlin", &q]).stdout;
    let parts: Vec<&str> = mixed.split("\n\n").collect();
    assert_eq!(parts.len(), 2, "{mixed}");
    let (first, second) = (cells(parts[0]), cells(parts[1]));
    let (ifaces, others) = if first[0][0] == "NAMESPACE" {
        (first, second)
    } else {
        (second, first)
    };
    row_with(&ifaces, &["(root)", &format!("{p}a0"), "veth"]);
    assert_eq!(others[0], ["NAME", "TYPE", "HOST"]);
    assert_eq!(
        others[1],
        [format!("{p}b"), "netns".into(), t.host_id.clone()]
    );

    // Edges: parent, child (named with its namespace) and relation; wide adds IDs.
    let q = format!("G.V().Has('Name', '{p}a').OutE()");
    let edges = cells(&ok(&t, &["-o", "table", "topology", "query", "--gremlin", &q]).stdout);
    assert_eq!(edges[0], ["PARENT", "CHILD", "RELATION"]);
    row_with(&edges, &[&pa, &format!("{p}a/eth0"), "ownership"]);
    let q = format!("{a_eth0}.BothE().Has('RelationType', 'layer2')");
    let edges = cells(&ok(&t, &["-o", "wide", "topology", "query", "--gremlin", &q]).stdout);
    let peer = row_with(
        &edges,
        &[&format!("{p}a/eth0"), &format!("{p}a0"), "layer2"],
    );
    assert!(peer.iter().any(|c| c == id), "{peer:?}");

    // ValueMap and Values keep list values.
    let q = format!("{a_eth0}.ValueMap('Name', 'IPV4')");
    let maps = cells(&ok(&t, &["-o", "table", "topology", "query", "--gremlin", &q]).stdout);
    let col = maps[0].iter().position(|c| c == "IPV4").unwrap();
    assert_eq!(maps[1][col], "10.77.71.1/24,10.77.71.11/24", "{maps:?}");
    let q = format!("{a_eth0}.Values('IPV4')");
    let values = ok(&t, &["-o", "table", "topology", "query", "--gremlin", &q]).stdout;
    assert_eq!(values, "10.77.71.1/24,10.77.71.11/24\n");

    // Flows: protocol, ends, packets and bytes each way, ages, capture interface.
    let capture = ok(
        &t,
        &["capture", "create", "--gremlin", &a_eth0, "--bpf", "icmp"],
    );
    assert_eq!(
        capture.stderr, "",
        "no warning for a capture on an interface"
    );
    let capture = capture.json();
    assert!(capture.get("Warnings").is_none(), "{capture}");
    let uuid = capture["UUID"].as_str().unwrap().to_owned();
    let q = format!("G.V().Has('Captures.ID', '{uuid}', 'Captures.State', 'active')");
    let (v, active) = t
        .wait_for(&q, WAIT, |v| v.as_array().is_some_and(|a| a.len() == 1))
        .await;
    assert!(active, "{v}");
    sh(&format!(
        "ip netns exec {p}a ping -c 3 -i 0.2 -s 56 -W 1 10.77.71.2"
    ));
    let q = format!("G.Flows().Has('CaptureID', '{uuid}')");
    let (v, seen) = t
        .wait_for(&q, WAIT, |v| {
            v.as_array()
                .is_some_and(|a| a.len() == 1 && a[0]["Metric"]["BAPackets"] == 3)
        })
        .await;
    assert!(seen, "{v}");
    let flows = cells(&ok(&t, &["-o", "table", "topology", "query", "--gremlin", &q]).stdout);
    assert_eq!(
        flows[0],
        [
            "PROTOCOL",
            "A",
            "B",
            "A→B PACKETS",
            "A→B BYTES",
            "B→A PACKETS",
            "B→A BYTES",
            "AGE",
            "LAST SEEN",
            "INTERFACE"
        ]
    );
    // 3 echo requests and 3 replies of 98 bytes each (Ethernet + IPv4 + ICMP + 56).
    assert_eq!(
        flows[1][..7],
        ["ICMPv4", "10.77.71.1", "10.77.71.2", "3", "294", "3", "294"].map(String::from)
    );
    assert!(is_age(&flows[1][7]) && is_age(&flows[1][8]), "{flows:?}");
    assert_eq!(flows[1][9], format!("{p}a/eth0"));
    let wide = cells(&ok(&t, &["-o", "wide", "topology", "query", "--gremlin", &q]).stdout);
    assert_eq!(
        wide[0][10..],
        ["UUID", "TRACKING ID", "CAPTURE ID", "NODE TID"].map(String::from)
    );
    assert_eq!(wide[1][10], v[0]["UUID"].as_str().unwrap());
    assert_eq!(wide[1][12], uuid);
    assert!(ok(
        &t,
        &[
            "-o",
            "table",
            "topology",
            "query",
            "--gremlin",
            "G.V().Has('Name', 'none-such')"
        ]
    )
    .stdout
    .is_empty());

    // status: a readable summary; -o json: /api/status as it is.
    let summary = ok(&t, &["status"]).stdout;
    let lines: Vec<(&str, &str)> = summary
        .lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim(), v.trim()))
        .collect();
    let field = |k: &str| {
        lines
            .iter()
            .find(|(key, _)| *key == k)
            .map(|(_, v)| *v)
            .unwrap_or_else(|| panic!("no {k} in {summary}"))
    };
    assert_eq!(field("Version"), env!("CARGO_PKG_VERSION"));
    assert_eq!(field("Host"), t.host_id);
    assert!(is_age(field("Uptime")), "{summary}");
    let topology: Vec<&str> = field("Topology").split_whitespace().collect();
    assert!(
        topology[0].parse::<u64>().unwrap() > 5 && topology[1] == "nodes,",
        "{summary}"
    );
    assert_eq!(
        field("Captures"),
        "1 (1 active, 0 on no interface, 0 with an error)"
    );
    assert_eq!(field("Injections"), "none");
    assert!(
        field("Query budget").starts_with("5000000 elements"),
        "{summary}"
    );
    assert!(summary.contains("netlink Running"), "{summary}");
    let raw = ok(&t, &["-o", "json", "status"]).json();
    assert_eq!(raw["Host"], t.host_id.as_str());
    assert_eq!(raw["QueryBudget"]["QueryTimeoutMs"], 10_000);
    assert!(raw["Topology"]["Nodes"].as_u64().unwrap() > 5, "{raw}");
}

#[tokio::test]
async fn captures_that_match_no_interface_warn() {
    let p = format!("w{}", rand_tag());
    let _net = bridged_pair(&p, 72);
    let t = Topotap::start(&["--ovsdb", "none"]);
    let ns = format!("G.V().Has('Type', 'netns', 'Name', '{p}a')");
    let (v, ready) = t
        .wait_for(&format!("{ns}.Out().Has('Name', 'eth0')"), WAIT, |v| {
            v.as_array().is_some_and(|a| a.len() == 1)
        })
        .await;
    assert!(ready, "{v}");

    // Only a namespace: created, with a warning on stderr and in the answer.
    let r = ok(&t, &["capture", "create", "--gremlin", &ns]);
    let created = r.json();
    let warnings = created["Warnings"].as_array().expect("Warnings");
    assert_eq!(warnings.len(), 1, "{created}");
    let w = warnings[0].as_str().unwrap();
    assert!(
        w.starts_with(&format!(
            "GremlinQuery matches 1 node but no capturable interface (netns {p}a)"
        )) && w.contains(".Out()"),
        "{w}"
    );
    assert_eq!(r.stderr, format!("warning: {w}\n"));
    // Not stored: the capture as listed has no warnings.
    let uuid = created["UUID"].as_str().unwrap();
    let got = ok(&t, &["capture", "get", uuid]).json();
    assert!(got.get("Warnings").is_none(), "{got}");

    // Nothing at all.
    let r = ok(
        &t,
        &[
            "capture",
            "create",
            "--gremlin",
            &format!("G.V().Has('Name', '{p}-none')"),
        ],
    );
    assert_eq!(
        r.stderr,
        "warning: GremlinQuery matches no node now: nothing is captured until it matches an interface\n"
    );
    // The host and a bridge-less namespace together: every node named, none capturable.
    let q = format!(
        "G.V().Has('Type', WITHIN('host', 'netns'), 'Name', WITHIN('{}', '{p}b'))",
        t.host_id
    );
    let r = ok(&t, &["capture", "create", "--gremlin", &q]);
    assert!(
        r.stderr
            .starts_with("warning: GremlinQuery matches 2 nodes but no capturable interface (")
            && r.stderr.contains(&format!("host {}", t.host_id))
            && r.stderr.contains(&format!("netns {p}b")),
        "{}",
        r.stderr
    );
    // The same through the API: 201 with the warnings, and a Skydive-shaped body.
    let (s, v) = t
        .request(
            "POST",
            "/api/capture",
            Some(
                &serde_json::json!({"GremlinQuery": format!("{ns}.Has('Name', 'x')")}).to_string(),
            ),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["Warnings"].as_array().map(Vec::len), Some(1), "{v}");
    // A namespace's interfaces: no warning.
    let r = ok(
        &t,
        &["capture", "create", "--gremlin", &format!("{ns}.Out()")],
    );
    assert_eq!(r.stderr, "");
    assert!(r.json().get("Warnings").is_none());
}
