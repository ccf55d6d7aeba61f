//! Collector-side fixtures for the export tests: a collector namespace reached from the root
//! namespace over a veth, packet captures with tcpdump, decoding with tshark, sfacctd, and
//! traffic sent from inside a namespace. Missing tools fail the test with an install hint.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::net::{sh, Cleanup};

/// Fails the test unless `tool` is on the PATH, naming the Debian package to install.
pub fn require(tool: &str, package: &str) {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        found,
        "{tool} is needed by this test: apt-get install -y --no-install-recommends {package}"
    );
}

/// A namespace `<p>c` whose `eth0` (10.213.`n`.2/24, fd00:213:`n`::2/64) is the peer of
/// `<p>cv` in the root namespace (10.213.`n`.1/24, fd00:213:`n`::1/64).
pub struct CollectorNet {
    pub ns: String,
    pub root_link: String,
    pub v4: String,
    pub v6: String,
}

impl CollectorNet {
    pub fn new(p: &str, n: u8, cleanup: &mut Cleanup) -> Self {
        let ns = format!("{p}c");
        let root_link = format!("{p}cv");
        cleanup.netns(&ns);
        sh(&format!(
            "ip link add {root_link} type veth peer name eth0 netns {ns} && \
             ip addr add 10.213.{n}.1/24 dev {root_link} && \
             ip addr add fd00:213:{n}::1/64 dev {root_link} nodad && \
             ip link set {root_link} up && \
             ip -n {ns} addr add 10.213.{n}.2/24 dev eth0 && \
             ip -n {ns} addr add fd00:213:{n}::2/64 dev eth0 nodad && \
             ip -n {ns} link set eth0 up"
        ));
        cleanup.link(&root_link);
        CollectorNet {
            ns,
            root_link,
            v4: format!("10.213.{n}.2"),
            v6: format!("fd00:213:{n}::2"),
        }
    }
}

/// Runs `f` on a fresh OS thread that entered namespace `ns` (setns affects only that thread,
/// which exits afterwards). Sockets opened there stay in `ns`.
pub fn in_netns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = format!("/var/run/netns/{ns}");
    std::thread::spawn(move || {
        let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
        nix::sched::setns(file, nix::sched::CloneFlags::CLONE_NEWNET)
            .unwrap_or_else(|e| panic!("setns {path}: {e}"));
        f()
    })
    .join()
    .expect("namespace thread")
}

/// Sends `count` UDP datagrams of `payload` bytes to `dst` from inside `ns`, pausing every
/// `burst` datagrams so that no queue on the way overflows.
pub fn send_udp(ns: &str, dst: std::net::SocketAddr, count: usize, payload: usize, burst: usize) {
    in_netns(ns, move || {
        let any: std::net::SocketAddr = if dst.is_ipv4() {
            "0.0.0.0:0".parse().unwrap()
        } else {
            "[::]:0".parse().unwrap()
        };
        let s = std::net::UdpSocket::bind(any).expect("bind");
        let mut buf = vec![0u8; payload];
        for i in 0..count {
            for (j, b) in buf.iter_mut().enumerate() {
                *b = (i + j) as u8;
            }
            s.send_to(&buf, dst).expect("send");
            if burst > 0 && (i + 1) % burst == 0 {
                std::thread::sleep(Duration::from_millis(2));
            }
        }
    });
}

/// The ifindex of `ifname` in namespace `ns`.
pub fn ifindex(ns: &str, ifname: &str) -> u32 {
    sh(&format!(
        "ip netns exec {ns} cat /sys/class/net/{ifname}/ifindex"
    ))
    .trim()
    .parse()
    .expect("ifindex")
}

/// The host's primary IPv4 address: the source of its default route (no packet is sent).
pub fn primary_ipv4() -> Option<String> {
    let out = Command::new("ip")
        .args(["-4", "route", "get", "198.51.100.1"])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut words = text.split_whitespace();
    while let Some(w) = words.next() {
        if w == "src" {
            return words.next().map(str::to_owned);
        }
    }
    None
}

/// `tcpdump -w` running (in a namespace or the root one) until [`Tcpdump::stop`] or drop.
pub struct Tcpdump {
    child: Option<Child>,
    pub path: PathBuf,
}

impl Tcpdump {
    /// Starts capturing whole frames on `iface` with `filter`, returning once tcpdump listens.
    pub fn start(ns: Option<&str>, iface: &str, filter: &str, path: &Path) -> Self {
        require("tcpdump", "tcpdump");
        let mut cmd = match ns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, "tcpdump"]);
                c
            }
            None => Command::new("tcpdump"),
        };
        // `ip netns exec` execs tcpdump: the child's pid is tcpdump's.
        let mut child = cmd
            // Immediate mode: frames are not held in a kernel block that a stop would
            // lose. It uses TPACKET_V2, one snaplen-sized slot per frame: a 2048-byte
            // snaplen (whole frames on these 1500-byte links) keeps the ring from
            // running out of slots in a burst, as -s 0 would.
            .args([
                "-i",
                iface,
                "--immediate-mode",
                "-U",
                "-s",
                "2048",
                "-B",
                "16384",
                "-n",
                "-w",
            ])
            .arg(path)
            .arg(filter)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn tcpdump");
        let stderr = child.stderr.take().expect("stderr");
        let mut lines = BufReader::new(stderr).lines();
        let mut seen = String::new();
        let ready = loop {
            match lines.next() {
                Some(Ok(l)) => {
                    let ok = l.contains("listening on");
                    seen.push_str(&l);
                    seen.push('\n');
                    if ok {
                        break true;
                    }
                }
                _ => break false,
            }
        };
        assert!(ready, "tcpdump did not start: {seen}");
        // Keep draining stderr so tcpdump never blocks on it.
        std::thread::spawn(move || for _ in lines {});
        Tcpdump {
            child: Some(child),
            path: path.to_owned(),
        }
    }

    /// Stops tcpdump (SIGINT: it flushes the file) and waits for it.
    pub fn stop(&mut self) {
        super::stop_child(&mut self.child, "-INT", Duration::from_secs(5));
    }
}

impl Drop for Tcpdump {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Runs `tshark -r path [extra] -T fields -e f...` with `|` between fields and `,` between
/// occurrences; returns one row per packet. Panics on a tshark failure.
pub fn tshark_fields(path: &Path, extra: &[&str], fields: &[&str]) -> Vec<Vec<String>> {
    require("tshark", "tshark");
    let mut cmd = Command::new("tshark");
    cmd.arg("-r").arg(path).args(extra).args([
        "-T",
        "fields",
        "-E",
        "separator=|",
        "-E",
        "aggregator=,",
    ]);
    for f in fields {
        cmd.args(["-e", f]);
    }
    let out = cmd.output().expect("run tshark");
    assert!(
        out.status.success(),
        "tshark failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.split('|').map(str::to_owned).collect())
        .collect()
}

/// Number of packets tshark flags as malformed (`_ws.malformed` or expert errors).
pub fn tshark_malformed(path: &Path, extra: &[&str]) -> usize {
    let mut args = extra.to_vec();
    args.extend(["-Y", "_ws.malformed || _ws.expert.severity == error"]);
    tshark_fields(path, &args, &["frame.number"]).len()
}

/// sfacctd in a namespace, printing CSV aggregates to stdout every second.
pub struct Sfacctd {
    child: Option<Child>,
    out: Option<std::thread::JoinHandle<String>>,
}

impl Sfacctd {
    /// Listens on `ip`:`port` inside `ns`, aggregating by `aggregate` with renormalisation by the
    /// sampling rate. `dir` holds the configuration.
    pub fn start(ns: &str, ip: &str, port: u16, aggregate: &str, dir: &Path) -> Self {
        require("sfacctd", "pmacct");
        let conf = dir.join("sfacctd.conf");
        std::fs::write(
            &conf,
            format!(
                "daemonize: false\n\
                 sfacctd_ip: {ip}\n\
                 sfacctd_port: {port}\n\
                 sfacctd_renormalize: true\n\
                 sfacctd_pipe_size: 16777216\n\
                 plugins: print[x]\n\
                 aggregate[x]: {aggregate}\n\
                 print_output[x]: csv\n\
                 print_refresh_time[x]: 1\n\
                 logfile: {}\n",
                dir.join("sfacctd.log").display()
            ),
        )
        .unwrap();
        let mut child = Command::new("ip")
            .args(["netns", "exec", ns, "sfacctd", "-f"])
            .arg(&conf)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn sfacctd");
        let mut stdout = child.stdout.take().expect("stdout");
        let out = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = stdout.read_to_string(&mut s);
            s
        });
        // Wait until it listens on the UDP port.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let ss = sh(&format!("ip netns exec {ns} ss -uln"));
            if ss.contains(&format!("{ip}:{port}")) {
                break;
            }
            assert!(Instant::now() < deadline, "sfacctd does not listen: {ss}");
            std::thread::sleep(Duration::from_millis(50));
        }
        Sfacctd {
            child: Some(child),
            out: Some(out),
        }
    }

    /// Stops it with SIGINT (it ignores SIGTERM), which prints what it still holds, and returns
    /// everything it printed.
    pub fn stop(&mut self) -> String {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-INT", &c.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
        self.out
            .take()
            .map(|h| h.join().unwrap_or_default())
            .unwrap_or_default()
    }
}

impl Drop for Sfacctd {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Sums column `value` of the CSV rows (several header lines may be interleaved) whose
/// `key` column equals `want`.
pub fn csv_sum(csv: &str, key: &str, want: &str, value: &str) -> u64 {
    let mut header: Vec<String> = Vec::new();
    let mut total = 0;
    for line in csv.lines() {
        let cols: Vec<&str> = line.split(',').map(str::trim).collect();
        if cols.iter().any(|c| c.eq_ignore_ascii_case(value)) {
            header = cols.iter().map(|c| c.to_ascii_uppercase()).collect();
            continue;
        }
        let (Some(k), Some(v)) = (
            header.iter().position(|h| h.eq_ignore_ascii_case(key)),
            header.iter().position(|h| h.eq_ignore_ascii_case(value)),
        ) else {
            continue;
        };
        if cols.get(k) == Some(&want) {
            total += cols.get(v).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        }
    }
    total
}
