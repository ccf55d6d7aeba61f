//! Thin senders for encoded datagrams: a connected UDP socket for NetFlow/IPFIX/sFlow collectors and a
//! raw GRE socket for ERSPAN.
//!
//! Both resolve their target once, at construction, and never fail on a send: errors (collector down,
//! no route, full socket buffer) are counted in [`SendCounters`] and the caller carries on. Open them in
//! the namespace the collector is reachable from (the root namespace), not on a capture thread that
//! entered the captured interface's namespace.

use std::cell::RefCell;
use std::io::{self, IoSlice};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs, UdpSocket};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::sync::Arc;

use nix::sys::socket::{sendmmsg, ControlMessage, MsgFlags, MultiHeaders, SockaddrStorage};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use crate::wire::gre;

/// Counters shared between a sender and whoever reports its statistics.
#[derive(Debug, Default)]
pub struct SendCounters {
    sent: AtomicU64,
    bytes: AtomicU64,
    errors: AtomicU64,
    /// The OS error code of the last failed send, 0 if none failed yet.
    last_errno: AtomicI32,
}

/// A snapshot of [`SendCounters`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SendStats {
    /// Datagrams handed to the kernel.
    pub sent: u64,
    /// Bytes in those datagrams.
    pub bytes: u64,
    /// Sends that failed (and were dropped).
    pub errors: u64,
}

impl SendCounters {
    pub fn snapshot(&self) -> SendStats {
        SendStats {
            sent: self.sent.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
        }
    }

    fn record(&self, result: io::Result<usize>) -> bool {
        match result {
            Ok(n) => {
                self.sent.fetch_add(1, Ordering::Relaxed);
                self.bytes.fetch_add(n as u64, Ordering::Relaxed);
                true
            }
            Err(e) => {
                self.record_error(e.raw_os_error().unwrap_or(0));
                false
            }
        }
    }

    fn record_sent(&self, datagrams: u64, bytes: u64) {
        self.sent.fetch_add(datagrams, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    fn record_error(&self, errno: i32) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        if errno != 0 {
            self.last_errno.store(errno, Ordering::Relaxed);
        }
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
/// matching entry of `dests` (at least [`MAX_BATCH`] long; `None` = the connected peer). A datagram the
/// kernel refuses is counted as an error and skipped; the rest are still sent. Returns how many were
/// handed to the kernel.
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
                    counters.record_sent(count as u64, bytes);
                    sent += count;
                    // The kernel sends at least one or fails; never loop on a call that did neither.
                    if count == 0 {
                        counters.record_error(0);
                    }
                    rest = &rest[count.max(1)..];
                }
                // The first datagram of the call failed (a later one would only end the call early):
                // drop it and carry on with the next.
                Err(errno) => {
                    counters.record_error(errno as i32);
                    rest = &rest[1..];
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

/// A UDP socket connected to one collector.
#[derive(Debug)]
pub struct UdpExporter {
    socket: UdpSocket,
    peer: SocketAddr,
    counters: Arc<SendCounters>,
}

/// `sendmmsg` destinations for a connected socket: none.
const CONNECTED: [Option<SockaddrStorage>; MAX_BATCH] = [None; MAX_BATCH];

impl UdpExporter {
    /// Resolves `target` (`host:port`, IPv4 or IPv6) once and connects to it.
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

    /// Sends one datagram; returns whether it was handed to the kernel. Failures are counted, not raised.
    pub fn send(&self, datagram: &[u8]) -> bool {
        self.counters.record(self.socket.send(datagram))
    }

    /// Sends `datagrams` in order with as few `sendmmsg` calls as possible (up to [`MAX_BATCH`] each);
    /// returns how many were handed to the kernel. Failures are counted, not raised.
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
            .record(self.socket.send_to(gre_packet, &self.dest))
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
    fn send_errors_are_counted() {
        // A connected UDP socket to a closed port gets ECONNREFUSED on a later send.
        let closed = UdpSocket::bind("127.0.0.1:0").unwrap();
        let peer = closed.local_addr().unwrap();
        drop(closed);
        let exporter = UdpExporter::connect_addr(peer).unwrap();
        for _ in 0..5 {
            exporter.send(b"x");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let stats = exporter.stats();
        assert_eq!(stats.sent + stats.errors, 5);
        assert!(stats.errors >= 1, "{stats:?}");
    }
}
