//! The capture engine: libpcap on one interface, inside the interface's namespace, on a
//! dedicated OS thread that feeds a [`PacketSink`].
//!
//! The thread enters the namespace with `setns` and exits when the capture stops, so no
//! other work ever runs in that namespace. Whatever the sink sends (export sockets) was
//! opened before, in topotap's own namespace.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::netns::InterfaceError;
use topotap_targets::packet::{LinkType, Timestamp};
use topotap_targets::pcapfile::PcapStream;
use topotap_targets::send::SendCounters;

/// Receives captured frames, on the capture's thread.
pub trait PacketSink: Send {
    /// One frame: its link type, capture time, length on the wire, the captured bytes.
    fn packet(&mut self, link: LinkType, ts: Timestamp, orig_len: u32, data: &[u8]);
    /// One frame an sFlow agent sampled 1-in-`sampling_rate`. Sinks that count (flow
    /// tables) count it as `sampling_rate` frames of its length, as sFlow collectors
    /// estimate totals; sinks that forward frames forward it once.
    fn sampled(
        &mut self,
        link: LinkType,
        ts: Timestamp,
        orig_len: u32,
        data: &[u8],
        sampling_rate: u32,
    ) {
        let _ = sampling_rate;
        self.packet(link, ts, orig_len, data);
    }
    /// The capture has no more frames ready: send whatever [`packet`](Self::packet)
    /// buffered (a batch of mirrored frames). Also called before every `tick` and
    /// before `finish`, so nothing waits longer than the ring's [`BLOCK_TIMEOUT`] or a
    /// [`TICK`].
    fn flush(&mut self) {}
    /// Called at least every [`TICK`] with the current time, for periodic exports.
    fn tick(&mut self, now: Timestamp);
    /// The frames come from a capture file: the sink's clock (uptimes, polling schedules)
    /// starts at `first`, the first frame's timestamp, rather than when the sink was built.
    fn start_clock(&mut self, _first: Timestamp) {}
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
    /// The captured node's `TID` changed: flows from now on (and those held) carry it.
    fn retag(&mut self, _node_tid: &str) {}
}

/// What an exporting sink has sent, shared with the API: its sender's [`SendCounters`] (the one
/// record of it) and where it sends.
#[derive(Debug)]
pub struct ExportStats {
    counters: Arc<SendCounters>,
    peer: String,
}

impl ExportStats {
    pub fn new(counters: Arc<SendCounters>, peer: impl std::fmt::Display) -> Arc<Self> {
        Arc::new(ExportStats {
            counters,
            peer: peer.to_string(),
        })
    }

    pub fn counters(&self) -> &SendCounters {
        &self.counters
    }

    /// The JSON shown in `Metadata.Captures[].Export`: `Messages` (datagrams or mirrored packets
    /// sent), `Records` (flow records, samples or frames they carried), `Bytes`, `SendErrors` (sends
    /// that failed: lost), `Refused` (ICMP port unreachable from the collector's host: nothing
    /// listens on its port, though everything was sent), `LastError` and `Skipped` (flows the format
    /// cannot carry) when there are any.
    pub fn to_json(&self) -> serde_json::Value {
        let s = self.counters.snapshot();
        let mut v = serde_json::json!({
            "Messages": s.sent,
            "Records": s.records,
            "Bytes": s.bytes,
            "SendErrors": s.errors,
            "Refused": s.refused,
        });
        let last = match (self.counters.last_error(), self.counters.note()) {
            (Some(e), _) => Some(format!("send to {}: {e}", self.peer)),
            (None, note) => note,
        };
        if let Some(e) = last {
            v["LastError"] = e.into();
        }
        if s.skipped > 0 {
            v["Skipped"] = s.skipped.into();
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
    /// The interface is the output port of an OVS mirror that topotap made: wait for
    /// vswitchd to create it, bring it up, and capture only what OVS sends into it.
    pub mirror: bool,
}

/// Where a capture's frames come from.
pub enum Input {
    /// libpcap on an interface.
    Interface(CaptureSpec),
    /// sFlow v5 datagrams on a UDP socket: the sampled frames, and the counter samples
    /// written into the graph when there is a writer.
    Sflow(std::net::UdpSocket, Option<super::counters::CounterWriter>),
    /// pcap streams accepted on a TCP socket, one connection at a time.
    PcapSocket(std::net::TcpListener),
    /// Nothing to read here (Open vSwitch sends to the capture's target itself): the
    /// worker only keeps what was configured for it.
    Nothing,
}

/// An opened input and what must live as long as the capture: a configuration in Open
/// vSwitch, undone when it is dropped (at the end of the capture thread).
pub struct Opened {
    pub input: Input,
    pub guard: Option<Box<dyn Send>>,
    /// The filter a socket input applies to the frames it gets.
    pub bpf: String,
}

impl Opened {
    pub fn new(input: Input) -> Self {
        Opened {
            input,
            guard: None,
            bpf: String::new(),
        }
    }

    /// The same, keeping `guard` for as long as the capture runs.
    pub fn guarded(mut self, guard: impl Send + 'static) -> Self {
        self.guard = Some(Box::new(guard));
        self
    }

    /// The local address of its socket, shown in the capture's entry.
    pub fn listen(&self) -> Option<String> {
        match &self.input {
            Input::Sflow(s, _) => s.local_addr().ok().map(|a| a.to_string()),
            Input::PcapSocket(l) => l.local_addr().ok().map(|a| a.to_string()),
            _ => None,
        }
    }
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
    /// Input refused as malformed (sFlow datagrams, pcap streams), dropped.
    pub malformed: AtomicU64,
    pub state: Mutex<WorkerState>,
    /// A new `TID` for the sink, taken by the capture thread (see [`Worker::retag`]).
    retag: Mutex<Option<String>>,
    retag_pending: AtomicBool,
}

impl WorkerShared {
    /// The new `TID` the placer asked the sink to take, once.
    pub fn take_retag(&self) -> Option<String> {
        if self.retag_pending.load(Ordering::Relaxed)
            && self.retag_pending.swap(false, Ordering::Acquire)
        {
            self.retag.lock().take()
        } else {
            None
        }
    }
}

impl Default for WorkerShared {
    fn default() -> Self {
        WorkerShared {
            stop: AtomicBool::new(false),
            received: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            if_dropped: AtomicU64::new(0),
            malformed: AtomicU64::new(0),
            state: Mutex::new(WorkerState::Starting),
            retag: Mutex::new(None),
            retag_pending: AtomicBool::new(false),
        }
    }
}

/// A running capture thread.
pub struct Worker {
    pub shared: Arc<WorkerShared>,
    pub export: Option<Arc<ExportStats>>,
    /// The socket it listens on (sFlow, pcap socket).
    pub listen: Option<String>,
    thread: Option<JoinHandle<()>>,
}

impl Worker {
    /// Starts reading `opened` into `sink`; failures to start end up in `shared.state`
    /// as `Error`; its guard is dropped when the thread ends.
    pub fn spawn_input(opened: Opened, sink: Box<dyn PacketSink>) -> Worker {
        let shared = Arc::new(WorkerShared::default());
        let export = sink.export_stats();
        let listen = opened.listen();
        let sh = shared.clone();
        let name = match &opened.input {
            Input::Interface(spec) => format!("cap-{}", spec.ifname),
            Input::Sflow(..) => "cap-sflow".to_owned(),
            Input::PcapSocket(_) => "cap-pcapsocket".to_owned(),
            Input::Nothing => "cap-ovs".to_owned(),
        };
        let thread = std::thread::Builder::new().name(name).spawn(move || {
            let mut sink = sink;
            let Opened { input, guard, bpf } = opened;
            let result = match input {
                Input::Interface(spec) => run(&spec, sink.as_mut(), &sh),
                Input::Sflow(socket, counters) => {
                    super::input::sflow(&socket, &bpf, counters.as_ref(), sink.as_mut(), &sh)
                }
                Input::PcapSocket(listener) => {
                    super::input::pcap_socket(&listener, &bpf, sink.as_mut(), &sh)
                }
                Input::Nothing => {
                    *sh.state.lock() = WorkerState::Active;
                    while !sh.stop.load(Ordering::Relaxed) {
                        std::thread::sleep(TICK);
                    }
                    Ok(())
                }
            };
            drop(guard);
            sink.flush();
            sink.finish(now());
            *sh.state.lock() = match result {
                Ok(()) => WorkerState::Stopped,
                Err(e) => WorkerState::Error(e.to_string()),
            };
        });
        match thread {
            Ok(t) => Worker {
                shared,
                export,
                listen,
                thread: Some(t),
            },
            Err(e) => {
                *shared.state.lock() = WorkerState::Error(InterfaceError::Thread(e).to_string());
                Worker {
                    shared,
                    export,
                    listen,
                    thread: None,
                }
            }
        }
    }

    /// Asks the thread to stop and waits for it (at most one [`TICK`] plus the sink's
    /// final export).
    /// The node's `TID` changed: the capture goes on (a restart would lose the frames
    /// in between) and its sink tags flows with the new one.
    pub fn retag(&self, node_tid: &str) {
        *self.shared.retag.lock() = Some(node_tid.to_owned());
        self.shared.retag_pending.store(true, Ordering::Release);
    }

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

fn run(
    spec: &CaptureSpec,
    sink: &mut dyn PacketSink,
    shared: &WorkerShared,
) -> Result<(), InterfaceError> {
    if let Some(ns) = &spec.netns {
        crate::netns::enter(ns)?;
    }
    if spec.mirror {
        mirror_port_up(&spec.ifname, shared)?;
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
        .map_err(|source| InterfaceError::Open {
            to: "capture on",
            ifname: spec.ifname.clone(),
            suffix: "",
            source,
        })?;
    if spec.mirror {
        // The kernel's own packets out of the port (IPv6 router solicitations) are not
        // mirrored traffic.
        cap.direction(pcap::Direction::In)
            .map_err(|source| InterfaceError::Open {
                to: "capture inbound on",
                ifname: spec.ifname.clone(),
                suffix: "",
                source,
            })?;
    }
    cap.filter(&spec.bpf, true)
        .map_err(|source| InterfaceError::Filter {
            filter: spec.bpf.clone(),
            source,
        })?;
    *shared.state.lock() = WorkerState::Active;
    let link = LinkType::from_u32(cap.get_datalink().0 as u32);

    let mut feeder = Feeder::new(sink, Clock::Wall);
    let mut last_stats = Instant::now();
    while !shared.stop.load(Ordering::Relaxed) {
        if let Some(tid) = shared.take_retag() {
            feeder.sink.retag(&tid);
        }
        match cap.next_packet() {
            Ok(p) => {
                let ts = Timestamp::from_micros(
                    (p.header.ts.tv_sec as u64).saturating_mul(1_000_000)
                        + p.header.ts.tv_usec as u64,
                );
                // Under load, the feeder looks at the clock only every so many packets.
                if !feeder.packet(link, ts, p.header.len, p.data) {
                    continue;
                }
            }
            Err(pcap::Error::TimeoutExpired) => {
                // Nothing buffered: send what the sink batched, then sleep until the
                // kernel has frames or a tick is due.
                feeder.sink.flush();
                super::wait::readable(&cap, TICK);
                feeder.poll_clock();
            }
            Err(source) => {
                return Err(InterfaceError::Failed {
                    what: "capture",
                    ifname: spec.ifname.clone(),
                    source,
                })
            }
        }
        if last_stats.elapsed() >= Duration::from_millis(500) {
            // libpcap's own `ps_recv` lags behind on TPACKET_V3 (frames in a block not yet
            // retired are not counted): the frames handed to the sink are counted instead.
            publish_stats(&mut cap, feeder.fed, shared);
            feeder
                .sink
                .capture_drops(shared.dropped.load(Ordering::Relaxed));
            last_stats = Instant::now();
        }
    }
    publish_stats(&mut cap, feeder.fed, shared);
    Ok(())
}

/// How long vswitchd may take to create a mirror's output port.
pub const MIRROR_PORT_WAIT: Duration = Duration::from_secs(10);

/// Waits (in the port's namespace) until vswitchd has created the mirror's output port,
/// and brings it up: a tap that is down takes no frames from OVS.
fn mirror_port_up(ifname: &str, shared: &WorkerShared) -> Result<(), InterfaceError> {
    let deadline = Instant::now() + MIRROR_PORT_WAIT;
    loop {
        let out = std::process::Command::new("ip")
            .args(["link", "set", "dev", ifname, "up"])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .output();
        let why = match out {
            Ok(o) if o.status.success() => return Ok(()),
            Ok(o) => String::from_utf8_lossy(&o.stderr).trim().to_owned(),
            Err(e) => format!("cannot run ip: {e}"),
        };
        if Instant::now() >= deadline || shared.stop.load(Ordering::Relaxed) {
            return Err(InterfaceError::MirrorPort {
                ifname: ifname.to_owned(),
                reason: why,
            });
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Whose time drives a sink's timers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Clock {
    /// Live capture: the wall clock, looked at once per [`CLOCK_EVERY`] frames under load
    /// and whenever the capture is idle.
    Wall,
    /// Capture file: the frames' own timestamps, as fast as they can be read.
    Packets,
}

/// Feeds a [`PacketSink`] from a source of frames and ticks it on time: the one loop
/// behind live captures and capture files (`/api/pcap`, `topotap pcap`).
pub struct Feeder<'a> {
    pub sink: &'a mut dyn PacketSink,
    clock: Clock,
    /// Frames fed.
    pub fed: u64,
    /// Wall clock: when the sink was last ticked.
    last_tick: Instant,
    /// Packet clock: the next tick is due at the first frame at or after this time.
    next_tick: Option<Timestamp>,
    /// Packet clock: the latest frame timestamp.
    last: Timestamp,
}

impl<'a> Feeder<'a> {
    pub fn new(sink: &'a mut dyn PacketSink, clock: Clock) -> Self {
        Feeder {
            sink,
            clock,
            fed: 0,
            last_tick: Instant::now(),
            next_tick: None,
            last: Timestamp::ZERO,
        }
    }

    /// Feeds one frame, then ticks the sink if due. Returns whether the clock was looked
    /// at (always with the packet clock; every [`CLOCK_EVERY`] frames with the wall clock).
    #[inline]
    pub fn packet(&mut self, link: LinkType, ts: Timestamp, orig_len: u32, data: &[u8]) -> bool {
        self.fed += 1;
        match self.clock {
            Clock::Wall => {
                self.sink.packet(link, ts, orig_len, data);
                if self.fed % CLOCK_EVERY != 0 {
                    return false;
                }
                self.poll_clock();
            }
            Clock::Packets => {
                if self.next_tick.is_none() {
                    self.sink.start_clock(ts);
                }
                self.last = self.last.max(ts);
                self.sink.packet(link, ts, orig_len, data);
                if self.next_tick.is_none_or(|t| ts >= t) {
                    self.sink.flush();
                    self.sink.tick(ts);
                    self.next_tick = Some(ts + TICK);
                }
            }
        }
        true
    }

    /// Feeds one frame sampled 1-in-`sampling_rate` (see [`PacketSink::sampled`]),
    /// with the wall clock.
    pub fn sampled(
        &mut self,
        link: LinkType,
        ts: Timestamp,
        orig_len: u32,
        data: &[u8],
        sampling_rate: u32,
    ) {
        self.fed += 1;
        self.sink.sampled(link, ts, orig_len, data, sampling_rate);
        if self.fed % CLOCK_EVERY == 0 {
            self.poll_clock();
        }
    }

    /// With the wall clock: ticks the sink if a [`TICK`] has passed since the last tick.
    pub fn poll_clock(&mut self) {
        if self.clock == Clock::Wall && self.last_tick.elapsed() >= TICK {
            self.sink.flush();
            self.sink.tick(now());
            self.last_tick = Instant::now();
        }
    }

    /// The source is exhausted: the sink sends everything it still holds, at the latest
    /// frame's time (packet clock) or now (wall clock).
    pub fn finish(self) {
        let at = match self.clock {
            Clock::Wall => now(),
            Clock::Packets => self.last,
        };
        self.sink.flush();
        self.sink.finish(at);
    }
}

/// What feeding a capture file to a sink read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Replayed {
    pub packets: u64,
    /// Bytes on the wire of those packets.
    pub bytes: u64,
    /// Why the file could not be read to its end (it was read up to the damage).
    pub error: Option<String>,
}

/// Feeds every packet of a capture file to `sink` on the packets' own clock, as fast as
/// the file can be read, and ends with the sink's final export. Memory stays bounded by
/// the stream's buffer, however long the file.
pub fn replay<R: std::io::Read>(stream: &mut PcapStream<R>, sink: &mut dyn PacketSink) -> Replayed {
    let mut feeder = Feeder::new(sink, Clock::Packets);
    let mut out = Replayed::default();
    while let Some(record) = stream.next_record() {
        match record {
            Ok(r) => {
                out.packets += 1;
                out.bytes += u64::from(r.orig_len);
                feeder.packet(r.link_type, r.timestamp, r.orig_len, r.data);
            }
            Err(e) => {
                out.error = Some(format!("{e} ({} packets read before it)", out.packets));
                break;
            }
        }
    }
    feeder.finish();
    out
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

    /// What a sink was told, in order.
    #[derive(Default)]
    struct Recorder(Vec<String>);

    impl PacketSink for Recorder {
        fn packet(&mut self, _: LinkType, ts: Timestamp, _: u32, _: &[u8]) {
            self.0.push(format!("packet {}", ts.as_millis()));
        }
        fn flush(&mut self) {
            self.0.push("flush".into());
        }
        fn tick(&mut self, now: Timestamp) {
            self.0.push(format!("tick {}", now.as_millis()));
        }
        fn start_clock(&mut self, first: Timestamp) {
            self.0.push(format!("start {}", first.as_millis()));
        }
        fn finish(&mut self, now: Timestamp) {
            self.0.push(format!("finish {}", now.as_millis()));
        }
    }

    #[test]
    fn a_capture_file_drives_the_sink_on_its_own_clock() {
        let mut file =
            topotap_targets::pcapfile::PcapWriter::new(Vec::new(), LinkType::Ethernet, 64).unwrap();
        for ms in [1000, 1050, 1100, 1120, 1400] {
            file.write_packet(Timestamp::from_millis(ms), 3, &[1, 2, 3])
                .unwrap();
        }
        let bytes = file.into_inner();
        let mut stream = PcapStream::new(&bytes[..bytes.len() - 1]).unwrap();
        let mut sink = Recorder::default();
        let read = replay(&mut stream, &mut sink);
        assert_eq!((read.packets, read.bytes), (4, 12));
        assert!(read.error.unwrap().contains("truncated"));
        assert_eq!(
            sink.0,
            [
                "start 1000",
                "packet 1000",
                "flush",
                "tick 1000",
                "packet 1050",
                "packet 1100",
                "flush",
                "tick 1100",
                "packet 1120",
                "flush",
                "finish 1120",
            ]
        );
    }

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
