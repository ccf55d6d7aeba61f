//! The capture engine: libpcap on one interface, inside the interface's namespace, on a
//! dedicated OS thread that feeds a [`PacketSink`].
//!
//! The thread enters the namespace with `setns` and exits when the capture stops, so no
//! other work ever runs in that namespace. Whatever the sink sends (export sockets) was
//! opened before, in topotap's own namespace.

use std::fs::File;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use topotap_targets::packet::{LinkType, Timestamp};

/// Receives captured frames, on the capture's thread.
pub trait PacketSink: Send {
    /// One frame: its link type, capture time, length on the wire, the captured bytes.
    fn packet(&mut self, link: LinkType, ts: Timestamp, orig_len: u32, data: &[u8]);
    /// The capture has no more frames ready: send whatever [`packet`](Self::packet)
    /// buffered (a batch of mirrored frames). Also called before every `tick` and
    /// before `finish`, so nothing waits longer than the ring's [`BLOCK_TIMEOUT`] or a
    /// [`TICK`].
    fn flush(&mut self) {}
    /// Called at least every [`TICK`] with the current time, for periodic exports.
    fn tick(&mut self, now: Timestamp);
    /// The capture is ending: export or publish everything still pending.
    fn finish(&mut self, now: Timestamp);
    /// Counters of what this sink sends out, shown in the node's `Captures` entry
    /// under `Export`; `None` for sinks that send nothing (the local flow table).
    fn export_stats(&self) -> Option<Arc<ExportStats>> {
        None
    }
    /// The capture's kernel drops so far (frames the sink never saw), given whenever the
    /// capture statistics are refreshed.
    fn capture_drops(&mut self, _dropped: u64) {}
}

/// What an exporting sink has sent, shared with the API.
#[derive(Debug, Default)]
pub struct ExportStats {
    /// Datagrams (NetFlow, IPFIX, sFlow) or mirrored packets (ERSPAN) sent.
    pub messages: AtomicU64,
    /// Flow records or samples they carried.
    pub records: AtomicU64,
    /// Bytes sent (payload of the UDP or GRE packets).
    pub bytes: AtomicU64,
    /// Sends that failed (collector unreachable, refused, buffer full).
    pub send_errors: AtomicU64,
    /// The last send failure.
    pub last_error: Mutex<Option<String>>,
    /// Flows the format cannot carry and that were not sent (IPv6 flows in NetFlow v5).
    pub skipped: AtomicU64,
}

impl ExportStats {
    /// The JSON shown in `Metadata.Captures[].Export`.
    pub fn to_json(&self) -> serde_json::Value {
        let mut v = serde_json::json!({
            "Messages": self.messages.load(Ordering::Relaxed),
            "Records": self.records.load(Ordering::Relaxed),
            "Bytes": self.bytes.load(Ordering::Relaxed),
            "SendErrors": self.send_errors.load(Ordering::Relaxed),
        });
        if let Some(e) = &*self.last_error.lock() {
            v["LastError"] = e.clone().into();
        }
        let skipped = self.skipped.load(Ordering::Relaxed);
        if skipped > 0 {
            v["Skipped"] = skipped.into();
        }
        v
    }
}

/// Longest wait for packets before the sink is ticked and the stop flag checked.
pub const TICK: Duration = Duration::from_millis(100);

/// While frames keep coming, timers are checked once per this many frames (a frame
/// takes well under a microsecond, so ticks stay on time).
const CLOCK_EVERY: u64 = 64;

/// Longest a captured frame waits in a partly filled kernel block.
pub const BLOCK_TIMEOUT: Duration = Duration::from_millis(20);

/// Kernel ring size per capture: large enough that a burst at line rate on a veth is
/// not dropped while the thread is descheduled.
pub const BUFFER_BYTES: i32 = 16 * 1024 * 1024;

/// What to capture.
#[derive(Debug, Clone)]
pub struct CaptureSpec {
    pub ifname: String,
    /// Namespace to enter (`/var/run/netns/x`, `/proc/<pid>/ns/net`); `None` = topotap's.
    pub netns: Option<PathBuf>,
    /// The complete filter: the user's BPF and the exclusion of topotap's own exports.
    pub bpf: String,
    pub snaplen: u32,
}

/// Capture state as shown in `Metadata.Captures[].State`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WorkerState {
    Starting,
    Active,
    Error(String),
    Stopped,
}

/// Counters and state shared between the capture thread and the API.
#[derive(Debug)]
pub struct WorkerShared {
    pub stop: AtomicBool,
    pub received: AtomicU64,
    pub dropped: AtomicU64,
    pub if_dropped: AtomicU64,
    pub state: Mutex<WorkerState>,
}

impl Default for WorkerShared {
    fn default() -> Self {
        WorkerShared {
            stop: AtomicBool::new(false),
            received: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            if_dropped: AtomicU64::new(0),
            state: Mutex::new(WorkerState::Starting),
        }
    }
}

/// A running capture thread.
pub struct Worker {
    pub shared: Arc<WorkerShared>,
    pub export: Option<Arc<ExportStats>>,
    thread: Option<JoinHandle<()>>,
}

impl Worker {
    /// Starts capturing; failures to start end up in `shared.state` as `Error`.
    pub fn spawn(spec: CaptureSpec, sink: Box<dyn PacketSink>) -> Worker {
        let shared = Arc::new(WorkerShared::default());
        let export = sink.export_stats();
        let sh = shared.clone();
        let name = format!("cap-{}", spec.ifname);
        let thread = std::thread::Builder::new().name(name).spawn(move || {
            let mut sink = sink;
            let result = run(&spec, sink.as_mut(), &sh);
            sink.flush();
            sink.finish(now());
            *sh.state.lock() = match result {
                Ok(()) => WorkerState::Stopped,
                Err(e) => WorkerState::Error(e),
            };
        });
        match thread {
            Ok(t) => Worker {
                shared,
                export,
                thread: Some(t),
            },
            Err(e) => {
                *shared.state.lock() = WorkerState::Error(format!("cannot start thread: {e}"));
                Worker {
                    shared,
                    export,
                    thread: None,
                }
            }
        }
    }

    /// Asks the thread to stop and waits for it (at most one [`TICK`] plus the sink's
    /// final export).
    pub fn stop(mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
    }
}

/// The wall clock as a capture timestamp.
pub fn now() -> Timestamp {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    Timestamp::from_nanos(d.as_nanos() as u64)
}

fn enter_netns(path: &PathBuf) -> Result<(), String> {
    let f =
        File::open(path).map_err(|e| format!("cannot open namespace {}: {e}", path.display()))?;
    nix::sched::setns(f, nix::sched::CloneFlags::CLONE_NEWNET)
        .map_err(|e| format!("cannot enter namespace {}: {e}", path.display()))
}

fn run(spec: &CaptureSpec, sink: &mut dyn PacketSink, shared: &WorkerShared) -> Result<(), String> {
    if let Some(ns) = &spec.netns {
        enter_netns(ns)?;
    }
    let mut cap = pcap::Capture::from_device(spec.ifname.as_str())
        .and_then(|c| {
            c.snaplen(spec.snaplen as i32)
                .promisc(true)
                // Not immediate mode: libpcap would fall back to TPACKET_V2, whose ring
                // has one snaplen-sized slot per frame (256 slots of 64 KiB in 16 MiB),
                // and drop bursts. TPACKET_V3 packs frames into blocks, handed over
                // when full or after BLOCK_TIMEOUT.
                .timeout(BLOCK_TIMEOUT.as_millis() as i32)
                .buffer_size(BUFFER_BYTES)
                .open()
        })
        .and_then(|c| c.setnonblock())
        .map_err(|e| format!("cannot capture on {}: {e}", spec.ifname))?;
    cap.filter(&spec.bpf, true)
        .map_err(|e| format!("cannot apply filter {:?}: {e}", spec.bpf))?;
    *shared.state.lock() = WorkerState::Active;
    let link = LinkType::from_u32(cap.get_datalink().0 as u32);

    let mut last_tick = Instant::now();
    let mut last_stats = Instant::now();
    // Packets handed to the sink. libpcap's own `ps_recv` lags behind on TPACKET_V3
    // (frames in a block not yet retired are not counted), so it is not used.
    let mut received: u64 = 0;
    while !shared.stop.load(Ordering::Relaxed) {
        match cap.next_packet() {
            Ok(p) => {
                received += 1;
                let ts = Timestamp::from_micros(
                    (p.header.ts.tv_sec as u64).saturating_mul(1_000_000)
                        + p.header.ts.tv_usec as u64,
                );
                sink.packet(link, ts, p.header.len, p.data);
                // Under load, look at the clock only every so many packets.
                if received % CLOCK_EVERY != 0 {
                    continue;
                }
            }
            Err(pcap::Error::TimeoutExpired) => {
                // Nothing buffered: send what the sink batched, then sleep until the
                // kernel has frames or a tick is due.
                sink.flush();
                super::wait::readable(&cap, TICK);
            }
            Err(e) => return Err(format!("capture on {} failed: {e}", spec.ifname)),
        }
        if last_tick.elapsed() >= TICK {
            sink.flush();
            sink.tick(now());
            last_tick = Instant::now();
        }
        if last_stats.elapsed() >= Duration::from_millis(500) {
            publish_stats(&mut cap, received, shared);
            sink.capture_drops(shared.dropped.load(Ordering::Relaxed));
            last_stats = Instant::now();
        }
    }
    publish_stats(&mut cap, received, shared);
    Ok(())
}

fn publish_stats(cap: &mut pcap::Capture<pcap::Active>, received: u64, shared: &WorkerShared) {
    shared.received.store(received, Ordering::Relaxed);
    if let Ok(s) = cap.stats() {
        shared
            .dropped
            .store(u64::from(s.dropped), Ordering::Relaxed);
        shared
            .if_dropped
            .store(u64::from(s.if_dropped), Ordering::Relaxed);
    }
}

/// Where one of topotap's exports goes, to keep it out of every capture.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ExportFlow {
    Udp(IpAddr, u16),
    Gre(IpAddr),
}

/// The filter actually applied: the user's, minus topotap's own export traffic (IPv4
/// and IPv6), so exported packets are never captured again.
pub fn effective_filter(user: &str, exports: &[ExportFlow]) -> String {
    let mut exclusions: Vec<String> = exports
        .iter()
        .map(|e| match e {
            ExportFlow::Udp(ip, port) => format!("(udp and dst host {ip} and dst port {port})"),
            ExportFlow::Gre(ip @ IpAddr::V4(_)) => format!("(ip proto 47 and dst host {ip})"),
            ExportFlow::Gre(ip @ IpAddr::V6(_)) => format!("(ip6 proto 47 and dst host {ip})"),
        })
        .collect();
    exclusions.sort();
    exclusions.dedup();
    let excl = exclusions.join(" or ");
    match (user.trim().is_empty(), excl.is_empty()) {
        (true, true) => String::new(),
        (false, true) => user.to_owned(),
        (true, false) => format!("not ({excl})"),
        (false, false) => format!("({user}) and not ({excl})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exports_are_excluded_for_both_families() {
        let v4: IpAddr = "10.0.0.9".parse().unwrap();
        let v6: IpAddr = "fd00::9".parse().unwrap();
        assert_eq!(effective_filter("", &[]), "");
        assert_eq!(effective_filter("icmp", &[]), "icmp");
        let f = effective_filter(
            "icmp or udp",
            &[
                ExportFlow::Udp(v4, 2055),
                ExportFlow::Gre(v6),
                ExportFlow::Gre(v4),
            ],
        );
        assert_eq!(
            f,
            "(icmp or udp) and not ((ip proto 47 and dst host 10.0.0.9) or (ip6 proto 47 and dst host fd00::9) or (udp and dst host 10.0.0.9 and dst port 2055))"
        );
        crate::capture::resource::validate_bpf(&f).unwrap();
        crate::capture::resource::validate_bpf(&effective_filter("", &[ExportFlow::Udp(v6, 6343)]))
            .unwrap();
    }
}
