//! Fixtures of the NetFlow/IPFIX export tests: `nfcapd` running in a namespace and its files read
//! back with `nfdump`, the ground truth of a packet capture as tshark decodes it, and capture
//! lifecycle helpers. Missing tools fail the test with an install hint.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::collector::{in_netns, require};
use super::net::sh;
use super::Topotap;

/// `nfcapd` listening on `ip:port` inside a namespace, writing into its own directory; stopped
/// (SIGTERM, which makes it write out the file in progress) by [`Nfcapd::stop`] or on drop.
pub struct Nfcapd {
    child: Option<Child>,
    pub dir: PathBuf,
}

impl Nfcapd {
    pub fn start(ns: &str, ip: &str, port: u16, dir: &Path) -> Self {
        require("nfcapd", "nfdump");
        require("nfdump", "nfdump");
        let dir = dir.join("nfcapd");
        std::fs::create_dir_all(&dir).expect("nfcapd directory");
        // `ip netns exec` execs nfcapd, so the child's pid is nfcapd's. -B: a 4 MiB receive buffer
        // (net.core.rmem_max) so a flush of many datagrams at once is not dropped by the kernel.
        let child = Command::new("ip")
            .args(["netns", "exec", ns, "nfcapd", "-b", ip, "-p"])
            .arg(port.to_string())
            .arg("-w")
            .arg(&dir)
            .args(["-t", "3600", "-B", "4194304"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn nfcapd");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let ss = sh(&format!("ip netns exec {ns} ss -uln"));
            if ss.contains(&format!("{ip}:{port}")) {
                break;
            }
            assert!(Instant::now() < deadline, "nfcapd does not listen: {ss}");
            std::thread::sleep(Duration::from_millis(50));
        }
        Nfcapd {
            child: Some(child),
            dir,
        }
    }

    /// Stops nfcapd and waits until it has written its file.
    pub fn stop(&mut self) {
        super::stop_child(&mut self.child, "-TERM", Duration::from_secs(10));
    }

    /// Every flow record received, in the order stored. Stops nfcapd first.
    pub fn flows(&mut self) -> Vec<NfFlow> {
        self.stop();
        let out = nfdump(
            &self.dir,
            &[
                "-q",
                "-N",
                "-o",
                "fmt:%pr|%sa|%da|%sp|%dp|%pkt|%byt|%flg|%in|%out|%ts|%te",
            ],
        );
        out.lines()
            .filter(|l| !l.trim().is_empty())
            .map(NfFlow::parse)
            .collect()
    }

    /// `nfdump -I`: totals and sequence failures of what was received, as key -> value.
    pub fn summary(&mut self) -> std::collections::BTreeMap<String, String> {
        self.stop();
        nfdump(&self.dir, &["-I"])
            .lines()
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
            .collect()
    }
}

impl Drop for Nfcapd {
    fn drop(&mut self) {
        self.stop();
    }
}

fn nfdump(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("nfdump")
        .arg("-R")
        .arg(dir)
        .args(args)
        .output()
        .expect("run nfdump");
    assert!(
        out.status.success(),
        "nfdump failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// One record as nfdump prints it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NfFlow {
    pub protocol: u8,
    pub src: String,
    pub dst: String,
    pub src_port: u16,
    /// For ICMP nfdump prints `type.code`; this is then `type * 256 + code`.
    pub dst_port: u16,
    pub packets: u64,
    pub bytes: u64,
    /// TCP flags as a bit mask (FIN 0x01 ... CWR 0x80).
    pub tcp_flags: u8,
    pub input: u32,
    pub output: u32,
    pub first: String,
    pub last: String,
}

impl NfFlow {
    fn parse(line: &str) -> NfFlow {
        let f: Vec<&str> = line.split('|').map(str::trim).collect();
        assert!(f.len() >= 12, "unexpected nfdump line {line:?}");
        let num = |s: &str| -> u64 {
            s.parse()
                .unwrap_or_else(|_| panic!("not a number {s:?} in {line:?}"))
        };
        let dst_port = match f[4].split_once('.') {
            Some((t, c)) => (num(t) << 8 | num(c)) as u16,
            None => num(f[4]) as u16,
        };
        NfFlow {
            protocol: protocol_number(f[0]),
            src: f[1].to_owned(),
            dst: f[2].to_owned(),
            src_port: num(f[3]) as u16,
            dst_port,
            packets: num(f[5]),
            bytes: num(f[6]),
            tcp_flags: tcp_flags(f[7]),
            input: num(f[8]) as u32,
            output: num(f[9]) as u32,
            first: f[10].to_owned(),
            last: f[11].to_owned(),
        }
    }
}

fn protocol_number(s: &str) -> u8 {
    match s {
        "ICMP" => 1,
        "TCP" => 6,
        "UDP" => 17,
        "ICMP6" => 58,
        other => other
            .parse()
            .unwrap_or_else(|_| panic!("unknown protocol {other:?}")),
    }
}

/// nfdump prints flags as `CEUAPRSF` with `.` for unset bits.
fn tcp_flags(s: &str) -> u8 {
    if let Some(hex) = s.strip_prefix("0x") {
        return u8::from_str_radix(hex, 16).unwrap_or(0);
    }
    let mut v = 0u8;
    for (i, c) in s.chars().rev().enumerate() {
        if c != '.' && i < 8 {
            v |= 1 << i;
        }
    }
    v
}

/// A unidirectional flow key: protocol, source, destination, source port, destination port (for
/// ICMP `type * 256 + code`).
pub type FlowKey = (u8, String, String, u16, u16);

/// Packets, Layer-3 bytes and OR-ed TCP flags of a unidirectional flow.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub packets: u64,
    pub bytes: u64,
    pub tcp_flags: u8,
}

/// Sums nfdump records per key (a flow may be exported in several records).
pub fn aggregate(flows: &[NfFlow]) -> std::collections::BTreeMap<FlowKey, Counts> {
    let mut out = std::collections::BTreeMap::<FlowKey, Counts>::new();
    for f in flows {
        let c = out
            .entry((
                f.protocol,
                f.src.clone(),
                f.dst.clone(),
                f.src_port,
                f.dst_port,
            ))
            .or_default();
        c.packets += f.packets;
        c.bytes += f.bytes;
        c.tcp_flags |= f.tcp_flags;
    }
    out
}

/// What really went over the wire, from a packet capture: IP packets per unidirectional flow, with
/// their IP total lengths summed (Layer-3 bytes) and TCP flags OR-ed, as tshark decodes them.
pub fn ground_truth(pcap: &Path) -> std::collections::BTreeMap<FlowKey, Counts> {
    let rows = super::collector::tshark_fields(
        pcap,
        &["-E", "occurrence=f", "-Y", "ip || ipv6"],
        &[
            "ip.proto",
            "ipv6.nxt",
            "ip.src",
            "ipv6.src",
            "ip.dst",
            "ipv6.dst",
            "ip.len",
            "ipv6.plen",
            "tcp.srcport",
            "tcp.dstport",
            "udp.srcport",
            "udp.dstport",
            "icmp.type",
            "icmp.code",
            "icmpv6.type",
            "icmpv6.code",
            "tcp.flags",
        ],
    );
    let mut out = std::collections::BTreeMap::<FlowKey, Counts>::new();
    for r in rows {
        let get = |i: usize| r.get(i).map(String::as_str).unwrap_or("");
        let either = |a: usize, b: usize| {
            if get(a).is_empty() {
                get(b).to_owned()
            } else {
                get(a).to_owned()
            }
        };
        let n = |s: &str| s.parse::<u64>().unwrap_or(0);
        let proto = n(&either(0, 1)) as u8;
        let v6 = get(2).is_empty();
        let bytes = if v6 { n(get(7)) + 40 } else { n(get(6)) };
        let (sp, dp) = match proto {
            6 => (n(get(8)), n(get(9))),
            17 => (n(get(10)), n(get(11))),
            1 => (0, n(get(12)) << 8 | n(get(13))),
            58 => (0, n(get(14)) << 8 | n(get(15))),
            _ => (0, 0),
        };
        let flags = u8::from_str_radix(get(16).trim_start_matches("0x"), 16).unwrap_or(0);
        let c = out
            .entry((proto, either(2, 3), either(4, 5), sp as u16, dp as u16))
            .or_default();
        c.packets += 1;
        c.bytes += bytes;
        c.tcp_flags |= flags;
    }
    out
}

// ---- packet captures ----

// ---- captures and traffic ----

pub const WAIT: Duration = Duration::from_secs(10);

pub async fn create_capture(t: &Topotap, body: Value) -> String {
    let (s, cap) = t
        .request("POST", "/api/capture", Some(&body.to_string()))
        .await;
    assert_eq!(s, 201, "{cap}");
    cap["UUID"].as_str().unwrap().to_owned()
}

/// The capture's entry in its node's `Captures`, once it has `State` `state`.
pub async fn wait_state(t: &Topotap, uuid: &str, state: &str) -> Value {
    let q = format!("G.V().Has('Captures.ID', '{uuid}', 'Captures.State', '{state}')");
    let (v, ok) = t
        .wait_for(&q, WAIT, |v| v.as_array().is_some_and(|a| a.len() == 1))
        .await;
    assert!(ok, "capture {uuid} not {state}: {v}");
    entry(&v, uuid)
}

pub fn entry(nodes: &Value, uuid: &str) -> Value {
    nodes[0]["Metadata"]["Captures"]
        .as_array()
        .and_then(|l| l.iter().find(|c| c["ID"] == uuid))
        .cloned()
        .unwrap_or(Value::Null)
}

/// Deletes the capture and waits until its capture thread is gone (its sink has flushed).
pub async fn delete_capture(t: &Topotap, uuid: &str) {
    let (s, _) = t
        .request("DELETE", &format!("/api/capture/{uuid}"), None)
        .await;
    assert_eq!(s, 200);
    let (v, ok) = t
        .wait_for(&format!("G.V().Has('Captures.ID', '{uuid}')"), WAIT, |v| {
            v == &json!([])
        })
        .await;
    assert!(ok, "capture {uuid} still placed: {v}");
}

/// A TCP exchange from namespace `client_ns` to `server`: `bytes` up, the same back, clean close.
pub fn tcp_exchange(client_ns: &str, server_ns: &str, server: SocketAddr, bytes: usize) {
    let listener = in_netns(server_ns, move || {
        TcpListener::bind(server).expect("listen")
    });
    let echo = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().expect("accept");
        let mut got = Vec::new();
        s.read_to_end(&mut got).expect("read");
        s.write_all(&got).expect("write back");
        s.shutdown(Shutdown::Write).expect("shutdown");
        let _ = s.read(&mut [0u8; 1]);
        got.len()
    });
    let back = in_netns(client_ns, move || {
        let mut c = TcpStream::connect(server).expect("connect");
        c.write_all(&vec![0x5a; bytes]).expect("write");
        c.shutdown(Shutdown::Write).expect("shutdown");
        let mut back = Vec::new();
        c.read_to_end(&mut back).expect("read back");
        back.len()
    });
    assert_eq!(echo.join().unwrap(), bytes);
    assert_eq!(back, bytes);
}
