//! Capture inputs that are sockets: an sFlow v5 collector (`sflow` and `ovssflow`
//! captures) and a TCP socket taking pcap streams (`pcapsocket`, Skydive's replay path).
//! Both run on the capture's thread and feed its sink like a live capture; malformed
//! input is counted (`Malformed`) and dropped.

use std::io::{self, Read};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use topotap_targets::packet::LinkType;
use topotap_targets::pcapfile::PcapStream;
use topotap_targets::wire::sflow5::{CounterRecord, Datagram, IfCounters, Sample};

use super::counters::CounterWriter;
use super::engine::{now, Clock, Feeder, PacketSink, WorkerShared, WorkerState, TICK};
use crate::netns::InterfaceError;

/// Largest sFlow datagram read (a UDP payload).
const MAX_DATAGRAM: usize = 65_535;

/// `bpf` compiled for frames of `link` (`None`: no filter).
fn compile(bpf: &str, link: LinkType) -> Result<Option<pcap::BpfProgram>, InterfaceError> {
    if bpf.trim().is_empty() {
        return Ok(None);
    }
    pcap::Capture::dead(pcap::Linktype(link.to_u32() as i32))
        .and_then(|c| c.compile(bpf, true))
        .map(Some)
        .map_err(|source| InterfaceError::Filter {
            filter: bpf.to_owned(),
            source,
        })
}

/// Budgets of a pcap socket: a connection that sends nothing for this long is closed.
pub const PCAP_IDLE: Duration = Duration::from_secs(30);
/// The largest record taken from a pcap stream (the stream reader itself buffers at
/// most `pcapfile::MAX_RECORD_LEN` for one record).
pub const PCAP_MAX_SNAPLEN: u32 = 262_144;
/// The most bytes one connection may send; beyond, it is closed.
pub const PCAP_MAX_BYTES: u64 = 4 << 30;

fn socket_error(what: &'static str) -> impl FnOnce(io::Error) -> InterfaceError {
    move |source| InterfaceError::Socket { what, source }
}

/// Receives sFlow datagrams until the capture stops; every sampled Ethernet frame goes
/// to the sink with its length on the wire and its sampling rate, at the time it was
/// received. Interface counter samples go to `counters`.
pub fn sflow(
    socket: &UdpSocket,
    bpf: &str,
    counters: Option<&CounterWriter>,
    sink: &mut dyn PacketSink,
    shared: &WorkerShared,
) -> Result<(), InterfaceError> {
    let filter = compile(bpf, LinkType::Ethernet)?;
    socket
        .set_read_timeout(Some(TICK))
        .map_err(socket_error("sFlow socket"))?;
    *shared.state.lock() = WorkerState::Active;
    let mut feeder = Feeder::new(sink, Clock::Wall);
    let mut buf = vec![0u8; MAX_DATAGRAM];
    while !shared.stop.load(Ordering::Relaxed) {
        if let Some(tid) = shared.take_retag() {
            feeder.sink.retag(&tid);
        }
        let n = match socket.recv(&mut buf) {
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                feeder.sink.flush();
                feeder.poll_clock();
                continue;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            // ICMP errors reported on the socket: not fatal to a collector.
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => continue,
            Err(e) => return Err(socket_error("sFlow receive")(e)),
        };
        let Ok(datagram) = Datagram::parse(&buf[..n]) else {
            shared.malformed.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        let ts = now();
        if let Some(w) = counters {
            let polled: Vec<IfCounters> = datagram
                .samples
                .iter()
                .filter_map(|s| match s {
                    Sample::Counters(c) => Some(c),
                    _ => None,
                })
                .flat_map(|c| &c.records)
                .filter_map(|r| match r {
                    CounterRecord::Interface(i) => Some(*i),
                    _ => None,
                })
                .collect();
            w.write(&polled, topotap_topology::now_ms());
        }
        for frame in datagram.sampled_frames() {
            if filter.as_ref().is_none_or(|f| f.filter(frame.header)) {
                feeder.sampled(
                    LinkType::Ethernet,
                    ts,
                    frame.frame_length,
                    frame.header,
                    frame.sampling_rate,
                );
            }
        }
        shared.received.store(feeder.fed, Ordering::Relaxed);
        feeder.poll_clock();
    }
    shared.received.store(feeder.fed, Ordering::Relaxed);
    Ok(())
}

/// Accepts pcap streams one connection at a time until the capture stops; their frames
/// go to the sink on their own clock, as a capture file would. A stream that is not
/// pcap, carries a record larger than [`PCAP_MAX_SNAPLEN`], breaks off mid-record,
/// stays silent for [`PCAP_IDLE`] or exceeds [`PCAP_MAX_BYTES`] is closed and counted
/// as malformed (its frames read until then are kept).
pub fn pcap_socket(
    listener: &TcpListener,
    bpf: &str,
    sink: &mut dyn PacketSink,
    shared: &WorkerShared,
) -> Result<(), InterfaceError> {
    // Checked once, for the usual link type; each stream compiles it for its own.
    compile(bpf, LinkType::Ethernet)?;
    listener
        .set_nonblocking(true)
        .map_err(socket_error("pcap socket"))?;
    *shared.state.lock() = WorkerState::Active;
    let mut feeder = Feeder::new(sink, Clock::Packets);
    while !shared.stop.load(Ordering::Relaxed) {
        if let Some(tid) = shared.take_retag() {
            feeder.sink.retag(&tid);
        }
        match listener.accept() {
            Ok((stream, _)) => {
                if !read_stream(stream, bpf, &mut feeder, shared) {
                    shared.malformed.fetch_add(1, Ordering::Relaxed);
                }
                shared.received.store(feeder.fed, Ordering::Relaxed);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                super::wait::readable(listener, TICK);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                // Out of descriptors and such: try again later rather than end.
                tracing::debug!("pcap socket accept: {e}");
                std::thread::sleep(TICK);
            }
        }
    }
    feeder.finish();
    Ok(())
}

/// Reads one connection to its end; returns whether it was a well-formed pcap stream.
fn read_stream(
    stream: TcpStream,
    bpf: &str,
    feeder: &mut Feeder<'_>,
    shared: &WorkerShared,
) -> bool {
    if stream.set_nonblocking(false).is_err() || stream.set_read_timeout(Some(TICK)).is_err() {
        return false;
    }
    let reader = Budgeted {
        stream,
        shared,
        last_data: Instant::now(),
        total: 0,
    };
    let mut pcap = match PcapStream::new(reader) {
        Ok(p) => p,
        Err(_) => return false,
    };
    let link = pcap.link_type().unwrap_or(LinkType::Ethernet);
    let Ok(filter) = compile(bpf, link) else {
        return false;
    };
    while let Some(record) = pcap.next_record() {
        match record {
            Ok(r) => {
                if r.data.len() > PCAP_MAX_SNAPLEN as usize {
                    return false;
                }
                let keep = match &filter {
                    Some(f) if r.link_type == link => f.filter(r.data),
                    _ => true,
                };
                if keep {
                    feeder.packet(r.link_type, r.timestamp, r.orig_len, r.data);
                }
                if feeder.fed % 64 == 0 {
                    shared.received.store(feeder.fed, Ordering::Relaxed);
                }
            }
            Err(_) => return false,
        }
    }
    feeder.sink.flush();
    true
}

/// A connection read with the pcap socket's budgets; ends (as end of stream) when the
/// capture stops.
struct Budgeted<'a> {
    stream: TcpStream,
    shared: &'a WorkerShared,
    last_data: Instant,
    total: u64,
}

impl Read for Budgeted<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if self.shared.stop.load(Ordering::Relaxed) {
                return Ok(0);
            }
            match self.stream.read(buf) {
                Ok(n) => {
                    self.total += n as u64;
                    if self.total > PCAP_MAX_BYTES {
                        return Err(io::Error::other("pcap stream over its byte budget"));
                    }
                    self.last_data = Instant::now();
                    return Ok(n);
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    if self.last_data.elapsed() >= PCAP_IDLE {
                        return Err(io::Error::new(io::ErrorKind::TimedOut, "pcap stream idle"));
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
}
