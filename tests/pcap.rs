//! `POST /api/pcap`: offline captures through the same flow table, against a real
//! topotap process.

mod common;

use std::io::{Read, Write};
use std::net::UdpSocket;
use std::time::Duration;

use common::Topotap;
use serde_json::{json, Value};
use topotap_targets::flow::synth::{udp_frame, udp_pcap};
use topotap_targets::packet::{LinkType, Timestamp};
use topotap_targets::pcapfile::PcapWriter;
use topotap_targets::wire::netflow5;

async fn upload(t: &Topotap, query: &str, body: Vec<u8>) -> (u16, Value) {
    let resp = reqwest::Client::new()
        .post(t.url(&format!("/api/pcap{query}")))
        .header("Content-Type", "application/vnd.tcpdump.pcap")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

#[tokio::test]
async fn pcap_upload_builds_queryable_flows() {
    let t = Topotap::start_api_only();
    // 4,000 packets over 100 flows; every fourth round goes B to A.
    let (s, v) = upload(&t, "", udp_pcap(4_000, 100)).await;
    assert_eq!(s, 202, "{v}");
    assert_eq!(v["Packets"], 4_000);
    assert_eq!(v["Flows"], 100);
    let id = v["CaptureID"].as_str().unwrap();

    let q = format!("G.Flows().Has('CaptureID', '{id}').Count()");
    assert_eq!(t.query(&q).await, json!(100));
    let q = format!("G.Flows().Has('CaptureID', '{id}').Sum('Metric.ABPackets')");
    assert_eq!(t.query(&q).await.as_f64(), Some(3_000.0));
    let q = format!("G.Flows().Has('CaptureID', '{id}').Sum('Metric.BAPackets')");
    assert_eq!(t.query(&q).await.as_f64(), Some(1_000.0));
    let q = format!("G.Flows().Has('CaptureID', '{id}', 'LayersPath', 'Ethernet/IPv4/UDP').Sort(DESC, 'Metric.ABPackets').Limit(2).Values('Transport.Protocol')");
    assert_eq!(t.query(&q).await, json!(["UDP", "UDP"]));

    // L3 key mode is accepted as a parameter.
    let (s, v) = upload(&t, "?LayerKeyMode=L3&Name=offline", udp_pcap(10, 2)).await;
    assert_eq!(s, 202, "{v}");
    assert_eq!(v["Flows"], 2);
}

#[tokio::test]
async fn bad_pcap_bodies_get_clear_answers() {
    let t = Topotap::start_api_only();
    let (s, v) = upload(&t, "", b"\x7fELF not a capture at all".to_vec()).await;
    assert_eq!(s, 400);
    assert!(
        v.as_str()
            .unwrap()
            .starts_with("not a pcap file: bad magic 0x"),
        "{v}"
    );
    let (s, _) = upload(&t, "", Vec::new()).await;
    assert_eq!(s, 400);

    // Cut in the middle of a record: what came before is used, the damage reported.
    let mut body = udp_pcap(100, 10);
    body.truncate(body.len() - 20);
    let (s, v) = upload(&t, "", body).await;
    assert_eq!(s, 202, "{v}");
    assert_eq!(v["Packets"], 99);
    assert!(v["Error"].as_str().unwrap().contains("truncated"), "{v}");

    let (s, v) = upload(&t, "?TargetType=bogus&Target=127.0.0.1:9", udp_pcap(1, 1)).await;
    assert_eq!(s, 400);
    assert!(
        v.as_str()
            .unwrap()
            .starts_with("TargetType: Not a valid target type"),
        "{v}"
    );
    let (s, v) = upload(&t, "?SamplingRate=lots", udp_pcap(1, 1)).await;
    assert_eq!(s, 400);
    assert!(
        v.as_str()
            .unwrap()
            .starts_with("SamplingRate: not a number"),
        "{v}"
    );

    // The server is still fine.
    assert_eq!(t.query("G.V().Count()").await, json!(0));
}

#[tokio::test]
async fn cli_uploads_a_capture_file() {
    let t = Topotap::start_api_only();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("trace.pcap");
    std::fs::write(&file, udp_pcap(40, 4)).unwrap();
    let bin = env!("CARGO_BIN_EXE_topotap");
    let out = std::process::Command::new(bin)
        .args(["client", "--analyzer", &t.addr, "pcap"])
        .arg(&file)
        .args(["--layer-key-mode", "L3", "--name", "a trace"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (v["Packets"].as_u64(), v["Flows"].as_u64()),
        (Some(40), Some(4))
    );

    let bad = dir.path().join("notes.txt");
    std::fs::write(&bad, "not a capture").unwrap();
    let out = std::process::Command::new(bin)
        .args(["client", "--analyzer", &t.addr, "pcap"])
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("400 Bad Request: not a pcap file"), "{err}");
    let out = std::process::Command::new(bin)
        .args(["client", "--analyzer", &t.addr, "pcap", "/nonexistent.pcap"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8(out.stderr)
        .unwrap()
        .contains("cannot read /nonexistent.pcap"));
}

/// A classic pcap of one UDP conversation, A→B at 0, 0.3 and 0.8 s and B→A at 0.5 s, recorded
/// long ago (2021).
fn conversation_pcap() -> Vec<u8> {
    let mut w = PcapWriter::new(Vec::new(), LinkType::Ethernet, 65_535).unwrap();
    let t0 = 1_610_000_000_000u64;
    for (ms, reverse) in [(0, false), (300, false), (500, true), (800, false)] {
        let f = udp_frame(7, reverse);
        w.write_packet(Timestamp::from_millis(t0 + ms), f.len() as u32, &f)
            .unwrap();
    }
    w.into_inner()
}

/// Receives NetFlow v5 datagrams on `rx` until `records` records arrived (or 5 s passed).
fn collect_netflow(rx: &UdpSocket, records: usize) -> Vec<netflow5::Repr> {
    rx.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let mut got = Vec::new();
    let mut buf = [0u8; 2048];
    while got
        .iter()
        .map(|r: &netflow5::Repr| r.records.len())
        .sum::<usize>()
        < records
        && std::time::Instant::now() < deadline
    {
        if let Ok(n) = rx.recv(&mut buf) {
            got.push(netflow5::Repr::parse(&buf[..n]).unwrap());
        }
    }
    got
}

/// The records of the conversation keep the durations the file recorded, on an uptime clock that
/// starts at its first packet.
fn assert_recorded_durations(got: &[netflow5::Repr]) {
    let records: Vec<_> = got.iter().flat_map(|r| r.records.clone()).collect();
    assert_eq!(records.len(), 2, "{got:?}");
    let ab = records.iter().find(|r| r.packets == 3).expect("A→B record");
    let ba = records.iter().find(|r| r.packets == 1).expect("B→A record");
    assert_eq!((ab.first_ms, ab.last_ms), (0, 800), "{ab:?}");
    assert_eq!((ba.first_ms, ba.last_ms), (500, 500), "{ba:?}");
    assert_eq!(got.last().unwrap().header.sys_uptime_ms, 800);
}

#[tokio::test]
async fn uploaded_flows_keep_their_recorded_durations() {
    let t = Topotap::start_api_only();
    let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
    let target = rx.local_addr().unwrap();
    let (s, v) = upload(
        &t,
        &format!("?TargetType=netflowv5&Target={target}"),
        conversation_pcap(),
    )
    .await;
    assert_eq!(s, 202, "{v}");
    assert_eq!(v["Export"]["Records"], 2, "{v}");
    assert_recorded_durations(&collect_netflow(&rx, 2));
}

#[tokio::test]
async fn a_collector_that_cannot_be_resolved_is_unavailable_not_a_bad_request() {
    let t = Topotap::start_api_only();
    let (s, v) = upload(
        &t,
        "?TargetType=netflowv5&Target=no-such-collector.invalid:2055",
        udp_pcap(10, 1),
    )
    .await;
    assert_eq!(s, 503, "{v}");
    assert!(v.as_str().unwrap().contains("cannot resolve"), "{v}");
}

/// A collector address the kernel refuses a socket for (connecting a UDP socket to the
/// broadcast address without `SO_BROADCAST` fails with EACCES; nothing is sent): the
/// upload was fine, the server cannot serve it, so 503, not 400.
#[tokio::test]
async fn a_socket_that_cannot_be_opened_is_unavailable_not_a_bad_request() {
    let t = Topotap::start_api_only();
    let (s, v) = upload(
        &t,
        "?TargetType=netflowv5&Target=255.255.255.255:2055",
        udp_pcap(10, 1),
    )
    .await;
    assert_eq!(s, 503, "{v}");
    let reason = v.as_str().unwrap();
    assert!(
        reason.contains("cannot open a UDP socket to 255.255.255.255:2055"),
        "{v}"
    );
}

/// Virtual memory of a process, in bytes.
fn vm_size(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmSize:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kb * 1024
}

/// An upload far larger than the address space left to topotap goes through: the body is read
/// as it arrives, not held.
#[tokio::test]
async fn uploads_stream_in_bounded_memory() {
    const MIB: u64 = 1 << 20;
    let t = Topotap::start_api_only();
    // Everything topotap has mapped now, plus 384 MiB: room for new threads and their malloc
    // arenas, not for the 768 MiB body.
    let cap = vm_size(t.pid()) + 384 * MIB;
    let out = std::process::Command::new("prlimit")
        .arg(format!("--pid={}", t.pid()))
        .arg(format!("--as={cap}:{cap}"))
        .output()
        .expect("prlimit (util-linux)");
    assert!(out.status.success(), "{out:?}");

    // 1,400-byte frames over 8 flows, 64 per chunk, timestamps 1 ms apart.
    let mut chunk = Vec::new();
    for i in 0..64u32 {
        let mut frame = udp_frame(i % 8, false).to_vec();
        frame.resize(1400, 0);
        chunk.extend_from_slice(&(1_700_000_000 + i / 1000).to_le_bytes());
        chunk.extend_from_slice(&((i % 1000) * 1000).to_le_bytes());
        chunk.extend_from_slice(&1400u32.to_le_bytes());
        chunk.extend_from_slice(&1400u32.to_le_bytes());
        chunk.extend_from_slice(&frame);
    }
    let chunks = (768 * MIB) as usize / chunk.len();
    let header = udp_pcap(0, 1)[..24].to_vec();
    let len = header.len() + chunks * chunk.len();
    assert!(len as u64 > 700 * MIB);

    let addr = t.addr.clone();
    let (status, body) = tokio::task::spawn_blocking(move || {
        let mut conn = std::net::TcpStream::connect(&addr).unwrap();
        write!(
            conn,
            "POST /api/pcap?LayerKeyMode=L3 HTTP/1.1\r\nHost: {addr}\r\n\
             Content-Type: application/json\r\nContent-Length: {len}\r\n\
             Connection: close\r\n\r\n"
        )
        .unwrap();
        conn.write_all(&header).unwrap();
        for _ in 0..chunks {
            conn.write_all(&chunk).unwrap();
        }
        let mut answer = String::new();
        conn.read_to_string(&mut answer).unwrap();
        let status: u16 = answer[9..12].parse().unwrap();
        let body = answer.split("\r\n\r\n").nth(1).unwrap_or("").to_owned();
        (status, body)
    })
    .await
    .unwrap();
    assert_eq!(status, 202, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["Packets"], chunks as u64 * 64, "{v}");
    assert_eq!(v["Flows"], 8, "{v}");
    // Still alive and answering.
    assert_eq!(t.query("G.V().Count()").await, json!(0));
}

fn topotap_pcap(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_topotap"))
        .arg("pcap")
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn the_pcap_command_exports_without_a_server() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("conversation.pcap");
    std::fs::write(&file, conversation_pcap()).unwrap();
    let file = file.to_str().unwrap();
    let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
    let target = rx.local_addr().unwrap().to_string();
    let out = topotap_pcap(&[file, "--target-type", "netflowv5", "--target", &target]);
    assert!(out.status.success(), "{out:?}");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["Packets"], 4, "{v}");
    assert_eq!(v["Export"]["Records"], 2, "{v}");
    assert_eq!(v["Export"]["SendErrors"], 0, "{v}");
    assert_recorded_durations(&collect_netflow(&rx, 2));

    // Standard input, IPFIX.
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_topotap"))
        .args(["pcap", "-", "--target-type", "ipfix", "--target", &target])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(&conversation_pcap())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["Export"]["Records"], 2, "{v}");
}

#[test]
fn the_pcap_command_refuses_bad_input_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let notes = dir.path().join("notes.txt");
    std::fs::write(&notes, "not a capture").unwrap();
    let notes = notes.to_str().unwrap();
    let good = dir.path().join("good.pcap");
    std::fs::write(&good, udp_pcap(10, 2)).unwrap();
    let good = good.to_str().unwrap();
    let cut = dir.path().join("cut.pcap");
    let mut bytes = udp_pcap(10, 2);
    bytes.truncate(bytes.len() - 10);
    std::fs::write(&cut, bytes).unwrap();
    let cut = cut.to_str().unwrap();
    let nf = ["--target-type", "netflowv5", "--target", "127.0.0.1:9"];
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["/nonexistent.pcap"], "/nonexistent.pcap: No such file"),
        (vec![notes], "not a pcap file: bad magic"),
        (
            vec![good, "--target-type", "bogus", "--target", "127.0.0.1:9"],
            "TargetType",
        ),
        (
            vec![good, "--target-type", "netflowv5", "--target", "127.0.0.1"],
            "Target",
        ),
        (
            vec![good, "--target-type", "local", "--target", "127.0.0.1:9"],
            "/api/pcap",
        ),
        (
            vec![
                good,
                "--target-type",
                "netflowv5",
                "--target",
                "no-such-collector.invalid:9",
            ],
            "cannot resolve",
        ),
    ];
    for (mut args, want) in cases {
        if args.len() == 1 {
            args.extend(nf);
        }
        let out = topotap_pcap(&args);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {out:?}");
        let err = String::from_utf8(out.stderr).unwrap();
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(
            err.starts_with("topotap pcap: ") && err.contains(want),
            "{args:?}: {err}"
        );
        assert!(out.stdout.is_empty(), "{args:?}");
    }
    // A damaged file: what could be read is sent, the damage said, exit 2.
    let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
    let target = rx.local_addr().unwrap().to_string();
    let out = topotap_pcap(&[cut, "--target-type", "netflowv5", "--target", &target]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["Packets"], 9, "{v}");
    assert!(String::from_utf8(out.stderr).unwrap().contains("truncated"));
    // No arguments at all: clap's usage, exit 2.
    assert_eq!(topotap_pcap(&[]).status.code(), Some(2));
}

/// An upload that stops arriving is answered 408 after the body read timeout; what was read
/// before is not lost (and the server carries on).
#[test]
fn a_stalled_upload_times_out() {
    let t = Topotap::start(&["--no-probes", "--body-read-timeout", "1"]);
    let mut conn = std::net::TcpStream::connect(&t.addr).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let body = udp_pcap(10, 2);
    write!(
        conn,
        "POST /api/pcap HTTP/1.1\r\nHost: {}\r\nContent-Type: application/vnd.tcpdump.pcap\r\n\
         Content-Length: {}\r\n\r\n",
        t.addr,
        body.len() * 100
    )
    .unwrap();
    conn.write_all(&body).unwrap();
    let started = std::time::Instant::now();
    let mut answer = vec![0u8; 4096];
    let n = conn.read(&mut answer).unwrap();
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(
        answer.contains("request body not received within 1 s"),
        "{answer}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
}
