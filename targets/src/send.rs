//! Thin senders for encoded datagrams: a connected UDP socket for NetFlow/IPFIX/sFlow collectors and a
//! raw GRE socket for ERSPAN.
//!
//! Both are given their target already resolved ([`resolve_socket_addr`], [`resolve_host`]: blocking
//! name lookups, for the caller to run off any async worker) and never fail on a send: errors
//! (collector down, no route, full socket buffer) are counted in [`SendCounters`], the one record of
//! what an export sent, and the caller carries on. Open them in the namespace the collector is
//! reachable from (the root namespace), not on a capture thread that entered the captured
//! interface's namespace.
//!
//! # ICMP errors never cost a datagram
//!
//! A connected UDP socket learns of an ICMP port unreachable for datagram N (the collector's port is
//! not bound: a collector that sniffs with libpcap, or one restarting) and reports it as
//! `ECONNREFUSED` on the *next* send, which then did not send datagram N+1. The [`UdpExporter`] sends
//! that datagram again at once (the error was consumed by reporting it), so every datagram leaves;
//! the refusals are counted apart ([`SendStats::refused`]), they are not send errors.

use std::cell::RefCell;
use std::io::{self, IoSlice};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs, UdpSocket};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use nix::errno::Errno;
use nix::sys::socket::{sendmmsg, ControlMessage, MsgFlags, MultiHeaders, SockaddrStorage};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use crate::wire::gre;

/// Sends of one datagram after `ECONNREFUSED` (each refusal reports an earlier datagram's ICMP error,
/// so a second one in a row means another ICMP error arrived in between).
pub const REFUSED_RETRIES: u32 = 3;

/// What an export sent, shared between its sender, the exporter feeding it and whoever reports its
/// statistics.
#[derive(Debug, Default)]
pub struct SendCounters {
    sent: AtomicU64,
    records: AtomicU64,
    bytes: AtomicU64,
    errors: AtomicU64,
    refused: AtomicU64,
    skipped: AtomicU64,
    /// The OS error code of the last failed send, 0 if none failed yet.
    last_errno: AtomicI32,
    /// The last problem that was not a failed send (a frame the format cannot carry).
    note: Mutex<Option<String>>,
}

/// A snapshot of [`SendCounters`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SendStats {
    /// Datagrams handed to the kernel.
    pub sent: u64,
    /// Records (flow records, samples, mirrored frames) those datagrams carried.
    pub records: u64,
    /// Bytes in those datagrams.
    pub bytes: u64,
    /// Sends that failed (and were dropped).
    pub errors: u64,
    /// `ECONNREFUSED` answers: ICMP port unreachable from the collector's host for an earlier datagram
    /// (nothing listens on the port). The datagram the error came back on was sent again.
    pub refused: u64,
    /// Records the format could not carry and that were not sent (IPv6 flows in NetFlow v5).
    pub skipped: u64,
}

impl SendCounters {
    pub fn snapshot(&self) -> SendStats {
        SendStats {
            sent: self.sent.load(Ordering::Relaxed),
            records: self.records.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            refused: self.refused.load(Ordering::Relaxed),
            skipped: self.skipped.load(Ordering::Relaxed),
        }
    }

    fn record(&self, result: io::Result<usize>, records: u64) -> bool {
        match result {
            Ok(n) => {
                self.record_sent(1, n as u64, records);
                true
            }
            Err(e) => {
                self.record_error(e.raw_os_error().unwrap_or(0));
                false
            }
        }
    }

    fn record_sent(&self, datagrams: u64, bytes: u64, records: u64) {
        self.sent.fetch_add(datagrams, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
        self.records.fetch_add(records, Ordering::Relaxed);
    }

    fn record_error(&self, errno: i32) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        if errno != 0 {
            self.last_errno.store(errno, Ordering::Relaxed);
        }
    }

    fn record_refused(&self) {
        self.refused.fetch_add(1, Ordering::Relaxed);
    }

    /// Sets the number of records the format could not carry so far.
    pub fn set_skipped(&self, skipped: u64) {
        self.skipped.store(skipped, Ordering::Relaxed);
    }

    /// Counts a record that could not be encoded and was not sent, with the reason.
    pub fn record_unsent(&self, reason: impl Into<String>) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        self.set_note(reason);
    }

    /// Remembers a problem that is not a failed send, shown until a later one replaces it.
    pub fn set_note(&self, note: impl Into<String>) {
        if let Ok(mut n) = self.note.lock() {
            *n = Some(note.into());
        }
    }

    /// The last problem that was not a failed send.
    pub fn note(&self) -> Option<String> {
        self.note.lock().ok().and_then(|n| n.clone())
    }

    /// The error of the last failed send, if any failed.
    pub fn last_error(&self) -> Option<io::Error> {
        match self.last_errno.load(Ordering::Relaxed) {
            0 => None,
            errno => Some(io::Error::from_raw_os_error(errno)),
        }
    }
}

/// Most datagrams handed to the kernel in one `sendmmsg`; longer batches take several calls.
pub const MAX_BATCH: usize = 64;

thread_local! {
    /// The `mmsghdr` array `sendmmsg` fills, allocated once per sending thread (nix's headers hold raw
    /// pointers, so they cannot live in a sender shared across threads).
    static SEND_HEADERS: RefCell<Option<MultiHeaders<SockaddrStorage>>> = const { RefCell::new(None) };
}

/// Sends `packets` in order on `fd` with as few `sendmmsg` calls as possible, each datagram to the
/// matching entry of `dests` (at least [`MAX_BATCH`] long; `None` = the connected peer), each counted
/// as one record. A datagram that comes back with an earlier datagram's `ECONNREFUSED` is sent again
/// (see the [module docs](self)); one the kernel refuses otherwise is counted as an error and
/// skipped, and the rest are still sent. Returns how many were handed to the kernel.
fn send_all(
    fd: RawFd,
    dests: &[Option<SockaddrStorage>],
    packets: &[&[u8]],
    counters: &SendCounters,
) -> usize {
    SEND_HEADERS.with(|cell| {
        let mut cell = cell.borrow_mut();
        let headers = cell.get_or_insert_with(|| MultiHeaders::preallocate(MAX_BATCH, None));
        let mut sent = 0;
        let mut rest = packets;
        let mut refused = 0;
        while !rest.is_empty() {
            let n = rest.len().min(MAX_BATCH);
            let iovs: [[IoSlice<'_>; 1]; MAX_BATCH] =
                std::array::from_fn(|i| [IoSlice::new(rest.get(i).copied().unwrap_or_default())]);
            let no_cmsgs: [ControlMessage<'_>; 0] = [];
            match sendmmsg(
                fd,
                headers,
                &iovs[..n],
                &dests[..n],
                no_cmsgs,
                MsgFlags::empty(),
            ) {
                Ok(results) => {
                    let (mut count, mut bytes) = (0usize, 0u64);
                    for r in results {
                        count += 1;
                        bytes += r.bytes as u64;
                    }
                    counters.record_sent(count as u64, bytes, count as u64);
                    sent += count;
                    refused = 0;
                    // The kernel sends at least one or fails; never loop on a call that did neither.
                    if count == 0 {
                        counters.record_error(0);
                    }
                    rest = &rest[count.max(1)..];
                }
                // An earlier datagram's ICMP error: this one was not sent, send it again.
                Err(Errno::ECONNREFUSED) if refused < REFUSED_RETRIES => {
                    counters.record_refused();
                    refused += 1;
                }
                // The first datagram of the call failed (a later one would only end the call early):
                // drop it and carry on with the next.
                Err(errno) => {
                    counters.record_error(errno as i32);
                    rest = &rest[1..];
                    refused = 0;
                }
            }
        }
        sent
    })
}

/// Resolves `host:port` (hostname, IPv4, or `[IPv6]`) to its first address.
pub fn resolve_socket_addr(target: &str) -> io::Result<SocketAddr> {
    target.to_socket_addrs()?.next().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::NotFound,
            format!("{target}: no address found"),
        )
    })
}

/// Resolves an ERSPAN destination. Accepts a bare address or hostname, or Skydive's `host:port` form
/// (`169.254.67.2:0`, `[fd00::2]:0`) whose port is ignored since GRE has none.
pub fn resolve_host(target: &str) -> io::Result<IpAddr> {
    if let Ok(ip) = target.parse::<IpAddr>() {
        return Ok(ip);
    }
    if let Ok(sa) = target.parse::<SocketAddr>() {
        return Ok(sa.ip());
    }
    let host = target.trim_start_matches('[').trim_end_matches(']');
    match (host, 0u16).to_socket_addrs() {
        Ok(mut addrs) => addrs.next().map(|a| a.ip()).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("{target}: no address found"),
            )
        }),
        // Maybe `hostname:port`.
        Err(e) => resolve_socket_addr(target).map(|a| a.ip()).map_err(|_| e),
    }
}

/// A UDP socket connected to one collector. Connected rather than sending to an address each time:
/// routing is looked up once, and `ECONNREFUSED` tells that nothing listens on the collector's port
/// (counted in [`SendStats::refused`], without losing a datagram).
#[derive(Debug)]
pub struct UdpExporter {
    socket: UdpSocket,
    peer: SocketAddr,
    counters: Arc<SendCounters>,
}

fn libc_econnrefused() -> i32 {
    Errno::ECONNREFUSED as i32
}

/// `sendmmsg` destinations for a connected socket: none.
const CONNECTED: [Option<SockaddrStorage>; MAX_BATCH] = [None; MAX_BATCH];

impl UdpExporter {
    /// Resolves `target` (`host:port`, IPv4 or IPv6) once and connects to it. Blocks on a name
    /// lookup: not for an async worker.
    pub fn connect(target: &str) -> io::Result<Self> {
        Self::connect_addr(resolve_socket_addr(target)?)
    }

    /// Connects to `peer` from an ephemeral port of the same address family.
    pub fn connect_addr(peer: SocketAddr) -> io::Result<Self> {
        let local: SocketAddr = match peer {
            SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
            SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
        };
        let socket = UdpSocket::bind(local)?;
        socket.connect(peer)?;
        Ok(Self {
            socket,
            peer,
            counters: Arc::default(),
        })
    }

    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    /// Makes sends fail (and count as errors) instead of blocking when the socket buffer is full.
    pub fn set_nonblocking(&self, nonblocking: bool) -> io::Result<()> {
        self.socket.set_nonblocking(nonblocking)
    }

    /// Sends one datagram (counted as one record); returns whether it was handed to the kernel.
    /// Failures are counted, not raised.
    pub fn send(&self, datagram: &[u8]) -> bool {
        self.send_records(datagram, 1)
    }

    /// Sends one datagram carrying `records` records; returns whether it was handed to the kernel.
    /// An `ECONNREFUSED` left by an earlier datagram is counted and the datagram sent again; other
    /// failures are counted, not raised.
    pub fn send_records(&self, datagram: &[u8], records: u64) -> bool {
        let mut result = self.socket.send(datagram);
        for _ in 0..REFUSED_RETRIES {
            match &result {
                Err(e) if e.raw_os_error() == Some(libc_econnrefused()) => {
                    self.counters.record_refused();
                    result = self.socket.send(datagram);
                }
                _ => break,
            }
        }
        self.counters.record(result, records)
    }

    /// Sends `datagrams` in order with as few `sendmmsg` calls as possible (up to [`MAX_BATCH`] each),
    /// one record each; returns how many were handed to the kernel. Failures are counted, not raised.
    pub fn send_batch(&self, datagrams: &[&[u8]]) -> usize {
        send_all(
            self.socket.as_raw_fd(),
            &CONNECTED,
            datagrams,
            &self.counters,
        )
    }

    pub fn counters(&self) -> Arc<SendCounters> {
        Arc::clone(&self.counters)
    }

    pub fn stats(&self) -> SendStats {
        self.counters.snapshot()
    }
}

/// A raw IP socket of protocol GRE (47) aimed at one ERSPAN destination; the kernel writes the outer
/// IPv4/IPv6 header and routing picks source and interface.
#[derive(Debug)]
pub struct GreSender {
    socket: Socket,
    dest: SockAddr,
    peer: IpAddr,
    /// `dest` once per datagram of a `sendmmsg` batch.
    dests: Box<[Option<SockaddrStorage>]>,
    counters: Arc<SendCounters>,
}

impl GreSender {
    /// Opens `socket(AF_INET or AF_INET6, SOCK_RAW, IPPROTO_GRE)` for `peer` (needs CAP_NET_RAW).
    pub fn open(peer: IpAddr) -> io::Result<Self> {
        let domain = match peer {
            IpAddr::V4(_) => Domain::IPV4,
            IpAddr::V6(_) => Domain::IPV6,
        };
        let socket = Socket::new(
            domain,
            Type::RAW,
            Some(Protocol::from(i32::from(gre::IP_PROTOCOL))),
        )?;
        Ok(Self {
            socket,
            dest: SockAddr::from(SocketAddr::new(peer, 0)),
            peer,
            dests: vec![Some(SockaddrStorage::from(SocketAddr::new(peer, 0))); MAX_BATCH]
                .into_boxed_slice(),
            counters: Arc::default(),
        })
    }

    /// Resolves `target` with [`resolve_host`] and opens the socket.
    pub fn connect(target: &str) -> io::Result<Self> {
        Self::open(resolve_host(target)?)
    }

    pub fn peer(&self) -> IpAddr {
        self.peer
    }

    pub fn set_nonblocking(&self, nonblocking: bool) -> io::Result<()> {
        self.socket.set_nonblocking(nonblocking)
    }

    /// Sends one GRE packet (GRE header onwards, e.g. from [`crate::wire::erspan::Session::encode`]).
    /// Returns whether it was handed to the kernel; failures are counted, not raised.
    pub fn send(&self, gre_packet: &[u8]) -> bool {
        self.counters
            .record(self.socket.send_to(gre_packet, &self.dest), 1)
    }

    /// Sends `gre_packets` in order with as few `sendmmsg` calls as possible (up to [`MAX_BATCH`] each);
    /// returns how many were handed to the kernel. Failures are counted (one per packet dropped), not
    /// raised.
    pub fn send_batch(&self, gre_packets: &[&[u8]]) -> usize {
        send_all(
            self.socket.as_raw_fd(),
            &self.dests,
            gre_packets,
            &self.counters,
        )
    }

    /// The error of the last failed send, if any failed.
    pub fn last_error(&self) -> Option<io::Error> {
        self.counters.last_error()
    }

    pub fn counters(&self) -> Arc<SendCounters> {
        Arc::clone(&self.counters)
    }

    pub fn stats(&self) -> SendStats {
        self.counters.snapshot()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_targets() {
        assert_eq!(
            resolve_host("169.254.67.2:0").unwrap(),
            IpAddr::V4(Ipv4Addr::new(169, 254, 67, 2))
        );
        assert_eq!(
            resolve_host("[::1]:0").unwrap(),
            IpAddr::V6(Ipv6Addr::LOCALHOST)
        );
        assert_eq!(
            resolve_host("::1").unwrap(),
            IpAddr::V6(Ipv6Addr::LOCALHOST)
        );
        assert_eq!(
            resolve_host("[::1]").unwrap(),
            IpAddr::V6(Ipv6Addr::LOCALHOST)
        );
        assert!(resolve_host("localhost").unwrap().is_loopback());
        assert!(resolve_host("localhost:0").unwrap().is_loopback());
        assert_eq!(
            resolve_socket_addr("[::1]:2055").unwrap(),
            "[::1]:2055".parse().unwrap()
        );
        assert!(resolve_socket_addr("no-port").is_err());
    }

    #[test]
    fn a_refusal_costs_no_datagram_and_is_counted_apart() {
        // A connected UDP socket to a closed port hears of each datagram's ICMP port unreachable on
        // the next send.
        let closed = UdpSocket::bind("127.0.0.1:0").unwrap();
        let peer = closed.local_addr().unwrap();
        drop(closed);
        let exporter = UdpExporter::connect_addr(peer).unwrap();
        for _ in 0..5 {
            assert!(exporter.send_records(b"x", 3));
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let sent = exporter.send_batch(&[b"y", b"z"]);
        assert_eq!(sent, 2);
        let stats = exporter.stats();
        assert_eq!(
            (stats.sent, stats.errors, stats.records),
            (7, 0, 17),
            "{stats:?}"
        );
        assert!(stats.refused >= 4, "{stats:?}");
        assert!(exporter.counters().last_error().is_none());
    }
}
