//! The senders over loopback: a real UDP socket receives what [`UdpExporter`] sends, and a raw GRE socket
//! receives what [`GreSender`] sends (raw sockets need root or CAP_NET_RAW, as the exporter itself does).

use std::io::Read;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, UdpSocket};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use socket2::{Domain, Protocol, Socket, Type};
use topotap_targets::send::{GreSender, UdpExporter, MAX_BATCH};
use topotap_targets::wire::erspan::{Mirrored, Repr, Session, TypeII, TypeIII};
use topotap_targets::wire::netflow5::{self, DatagramBuilder, HeaderRepr, RecordRepr};

fn netflow_datagram(sequence: u32) -> Vec<u8> {
    let mut buf = [0u8; netflow5::MAX_DATAGRAM_LEN];
    let mut b = DatagramBuilder::new(
        &mut buf,
        HeaderRepr {
            flow_sequence: sequence,
            ..Default::default()
        },
    )
    .unwrap();
    b.push(&RecordRepr {
        protocol: 17,
        packets: 1,
        ..Default::default()
    })
    .unwrap();
    b.finish().to_vec()
}

fn udp_round_trip(collector: &str) {
    let rx = UdpSocket::bind(collector).unwrap();
    rx.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let target = rx.local_addr().unwrap().to_string();
    let exporter = UdpExporter::connect(&target).unwrap();
    assert_eq!(exporter.peer(), rx.local_addr().unwrap());
    let mut buf = [0u8; 2048];
    for seq in [0u32, 1, 2] {
        let datagram = netflow_datagram(seq);
        assert!(exporter.send(&datagram));
        let (n, from) = rx.recv_from(&mut buf).unwrap();
        assert_eq!(from, exporter.local_addr().unwrap());
        let parsed = netflow5::Repr::parse(&buf[..n]).unwrap();
        assert_eq!(parsed.header.flow_sequence, seq);
        assert_eq!(parsed.records.len(), 1);
    }
    let stats = exporter.stats();
    assert_eq!((stats.sent, stats.errors), (3, 0));
    assert_eq!(stats.bytes, 3 * 72);
    assert_eq!(exporter.counters().snapshot(), stats);
}

#[test]
fn udp_exporter_ipv4_loopback() {
    udp_round_trip("127.0.0.1:0");
}

#[test]
fn udp_exporter_ipv6_loopback() {
    udp_round_trip("[::1]:0");
}

#[test]
fn udp_exporter_rejects_unresolvable_target() {
    assert!(UdpExporter::connect("not a target").is_err());
}

/// A frame nobody else on the machine sends: the test's pid and the current time.
fn marker_frame() -> Vec<u8> {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let mut f = b"topotap-gre-test".to_vec();
    f.extend_from_slice(&std::process::id().to_be_bytes());
    f.extend_from_slice(&nanos.to_be_bytes());
    f
}

/// Receives on `rx` until a GRE packet carrying `frame` arrives; IPv4 raw sockets deliver the IP header,
/// IPv6 ones do not.
fn receive_mirrored(rx: &Socket, ipv4: bool, frame: &[u8]) -> Vec<u8> {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        let n = match (&*rx).read(&mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) => panic!("raw receive: {e}"),
        };
        let packet = if ipv4 {
            let ihl = usize::from(buf[0] & 0x0f) * 4;
            assert_eq!(buf[9], 47, "IPv4 protocol");
            &buf[ihl..n]
        } else {
            &buf[..n]
        };
        if let Ok(m) = Mirrored::parse(packet) {
            if m.frame == frame {
                return packet.to_vec();
            }
        }
    }
    panic!("mirrored packet not received within 5 s");
}

fn gre_round_trip(peer: IpAddr, header: Repr) {
    let (domain, ipv4) = match peer {
        IpAddr::V4(_) => (Domain::IPV4, true),
        IpAddr::V6(_) => (Domain::IPV6, false),
    };
    let rx = Socket::new(domain, Type::RAW, Some(Protocol::from(47))).unwrap();
    rx.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let sender = GreSender::connect(&SocketAddrLike(peer).to_string()).unwrap();
    assert_eq!(sender.peer(), peer);
    let mut session = Session::new(header).unwrap();
    let mut buf = [0u8; 2048];
    for expected_seq in 0..3u32 {
        let frame = marker_frame();
        let n = session.encode(&frame, &mut buf).unwrap();
        assert!(sender.send(&buf[..n]));
        let got = receive_mirrored(&rx, ipv4, &frame);
        assert_eq!(got, &buf[..n]);
        let m = Mirrored::parse(&got).unwrap();
        assert_eq!(m.sequence, expected_seq);
        assert_eq!(m.header, header);
    }
    let stats = sender.stats();
    assert_eq!((stats.sent, stats.errors), (3, 0));
}

/// Skydive's `host:port` target form, with the port GRE ignores.
struct SocketAddrLike(IpAddr);

impl std::fmt::Display for SocketAddrLike {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            IpAddr::V4(a) => write!(f, "{a}:0"),
            IpAddr::V6(a) => write!(f, "[{a}]:0"),
        }
    }
}

#[test]
fn gre_sender_ipv4_loopback() {
    gre_round_trip(
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        Repr::TypeII(TypeII {
            vlan: 10,
            session_id: (std::process::id() & 0x3ff) as u16,
            index: 4,
            ..Default::default()
        }),
    );
}

#[test]
fn gre_sender_ipv6_loopback() {
    gre_round_trip(
        IpAddr::V6(Ipv6Addr::LOCALHOST),
        Repr::TypeIII(TypeIII {
            session_id: 5,
            timestamp: 99,
            hw_id: 1,
            ..Default::default()
        }),
    );
}

#[test]
fn udp_exporter_send_batch_ipv4_loopback() {
    let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
    rx.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let exporter = UdpExporter::connect(&rx.local_addr().unwrap().to_string()).unwrap();
    // More than one `sendmmsg` worth.
    let n = MAX_BATCH as u32 + 7;
    let datagrams: Vec<Vec<u8>> = (0..n).map(netflow_datagram).collect();
    let slices: Vec<&[u8]> = datagrams.iter().map(Vec::as_slice).collect();
    assert_eq!(exporter.send_batch(&slices), n as usize);
    let mut buf = [0u8; 2048];
    for seq in 0..n {
        let n = rx.recv(&mut buf).unwrap();
        let parsed = netflow5::Repr::parse(&buf[..n]).unwrap();
        assert_eq!(parsed.header.flow_sequence, seq);
    }
    let stats = exporter.stats();
    assert_eq!((stats.sent, stats.errors), (u64::from(n), 0));
    assert_eq!(stats.bytes, u64::from(n) * 72);
    assert!(exporter.counters().last_error().is_none());
}

/// A raw GRE receive socket with room for a few hundred small packets.
fn gre_receiver(domain: Domain) -> Socket {
    let rx = Socket::new(domain, Type::RAW, Some(Protocol::from(47))).unwrap();
    rx.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    rx.set_recv_buffer_size(4 << 20).unwrap();
    rx
}

/// Encodes `count` marker frames (the marker plus their index) in one session, as a batch.
fn encoded_batch(session: &mut Session, marker: &[u8], count: u16) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    let mut buf = [0u8; 2048];
    (0..count)
        .map(|i| {
            let mut frame = marker.to_vec();
            frame.extend_from_slice(&i.to_be_bytes());
            let n = session.encode(&frame, &mut buf).unwrap();
            (frame, buf[..n].to_vec())
        })
        .unzip()
}

/// Receives on `rx` the GRE packets carrying frames that start with `marker`, until `count` of them
/// arrived (5 s at most).
fn receive_marked(rx: &Socket, ipv4: bool, marker: &[u8], count: usize) -> Vec<Vec<u8>> {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut buf = [0u8; 4096];
    let mut got = Vec::new();
    while got.len() < count && Instant::now() < deadline {
        let n = match (&*rx).read(&mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) => panic!("raw receive: {e}"),
        };
        let packet = if ipv4 {
            &buf[usize::from(buf[0] & 0x0f) * 4..n]
        } else {
            &buf[..n]
        };
        if matches!(Mirrored::parse(packet), Ok(m) if m.frame.starts_with(marker)) {
            got.push(packet.to_vec());
        }
    }
    got
}

fn gre_batch_round_trip(peer: IpAddr, header: Repr) {
    let (domain, ipv4) = match peer {
        IpAddr::V4(_) => (Domain::IPV4, true),
        IpAddr::V6(_) => (Domain::IPV6, false),
    };
    let rx = gre_receiver(domain);
    let sender = GreSender::open(peer).unwrap();
    let mut session = Session::new(header).unwrap();
    let marker = marker_frame();
    // Two full `sendmmsg` calls and a partial one.
    let count = 2 * MAX_BATCH as u16 + 9;
    let (frames, packets) = encoded_batch(&mut session, &marker, count);
    let slices: Vec<&[u8]> = packets.iter().map(Vec::as_slice).collect();
    assert_eq!(sender.send_batch(&slices), usize::from(count));
    let got = receive_marked(&rx, ipv4, &marker, usize::from(count));
    assert_eq!(got.len(), usize::from(count), "packets received");
    for (i, packet) in got.iter().enumerate() {
        assert_eq!(packet, &packets[i], "packet {i} byte for byte, in order");
        let m = Mirrored::parse(packet).unwrap();
        assert_eq!(m.sequence, i as u32);
        assert_eq!(m.header, header);
        assert_eq!(m.frame, frames[i].as_slice());
    }
    let stats = sender.stats();
    assert_eq!((stats.sent, stats.errors), (u64::from(count), 0));
    assert_eq!(
        stats.bytes,
        packets.iter().map(|p| p.len() as u64).sum::<u64>()
    );
}

#[test]
fn gre_sender_batch_ipv4_loopback_in_order() {
    gre_batch_round_trip(
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        Repr::TypeII(TypeII {
            session_id: (std::process::id() & 0x3ff) as u16,
            index: 7,
            ..Default::default()
        }),
    );
}

#[test]
fn gre_sender_batch_ipv6_loopback_in_order() {
    gre_batch_round_trip(
        IpAddr::V6(Ipv6Addr::LOCALHOST),
        Repr::TypeIII(TypeIII {
            session_id: 9,
            hw_id: 1,
            ..Default::default()
        }),
    );
}

/// A packet the kernel refuses in the middle of a batch is counted as one error; the packets after it
/// are still sent, in order.
#[test]
fn gre_sender_batch_counts_a_refused_packet_and_sends_the_rest() {
    let rx = gre_receiver(Domain::IPV4);
    let sender = GreSender::open(IpAddr::V4(Ipv4Addr::LOCALHOST)).unwrap();
    let mut session = Session::new(Repr::TypeII(TypeII {
        session_id: 11,
        ..Default::default()
    }))
    .unwrap();
    let marker = marker_frame();
    let (_, packets) = encoded_batch(&mut session, &marker, 6);
    // Larger than any IPv4 packet: EMSGSIZE.
    let oversized = vec![0u8; 70_000];
    let mut slices: Vec<&[u8]> = packets.iter().map(Vec::as_slice).collect();
    slices.insert(3, &oversized);
    assert_eq!(sender.send_batch(&slices), 6);
    let stats = sender.stats();
    assert_eq!((stats.sent, stats.errors), (6, 1));
    let err = sender.last_error().expect("the refused send's error");
    assert_eq!(err.raw_os_error(), Some(90), "EMSGSIZE: {err}");
    let got = receive_marked(&rx, true, &marker, 6);
    assert_eq!(got, packets);
}

/// The UDP datagrams (IPv4 or IPv6) to `port` that a raw socket (a sniffer: the port itself is not
/// bound) sees until `count` arrived or 5 s passed, as their flow sequence numbers.
fn sniff_netflow(rx: &Socket, ipv4: bool, port: u16, count: usize) -> Vec<u32> {
    rx.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut seen = Vec::new();
    let mut buf = [0u8; 2048];
    while seen.len() < count && Instant::now() < deadline {
        let Ok(n) = (&*rx).read(&mut buf) else {
            continue;
        };
        // An IPv4 raw socket gets the IP header, an IPv6 one does not.
        let udp = if ipv4 {
            &buf[usize::from(buf[0] & 0x0f) * 4..n]
        } else {
            &buf[..n]
        };
        if udp.len() < 8 || u16::from_be_bytes([udp[2], udp[3]]) != port {
            continue;
        }
        if let Ok(r) = netflow5::Repr::parse(&udp[8..]) {
            seen.push(r.header.flow_sequence);
        }
    }
    seen
}

/// A collector that only sniffs: nothing is bound on the port, so each datagram draws an ICMP port
/// unreachable, which the connected socket reports on the next send. Every datagram still arrives,
/// singly or in batches, and the refusals are counted apart from errors.
fn unbound_collector_gets_every_datagram(loopback: IpAddr) {
    let ipv4 = loopback.is_ipv4();
    let (domain, any) = if ipv4 {
        (Domain::IPV4, "127.0.0.1:0")
    } else {
        (Domain::IPV6, "[::1]:0")
    };
    let rx = Socket::new(domain, Type::RAW, Some(Protocol::UDP)).unwrap();
    let closed = UdpSocket::bind(any).unwrap();
    let peer = closed.local_addr().unwrap();
    drop(closed);
    let exporter = UdpExporter::connect_addr(peer).unwrap();
    for seq in 0..20u32 {
        assert!(exporter.send(&netflow_datagram(seq)));
    }
    let batch: Vec<Vec<u8>> = (20..40u32).map(netflow_datagram).collect();
    let slices: Vec<&[u8]> = batch.iter().map(Vec::as_slice).collect();
    assert_eq!(exporter.send_batch(&slices), 20);
    let seen = sniff_netflow(&rx, ipv4, peer.port(), 40);
    assert_eq!(seen, (0..40).collect::<Vec<u32>>());
    let stats = exporter.stats();
    assert_eq!((stats.sent, stats.errors), (40, 0), "{stats:?}");
    assert!(stats.refused >= 1, "no ICMP error was reported: {stats:?}");
}

#[test]
fn udp_exporter_to_an_unbound_ipv4_port_loses_nothing() {
    unbound_collector_gets_every_datagram(IpAddr::V4(Ipv4Addr::LOCALHOST));
}

#[test]
fn udp_exporter_to_an_unbound_ipv6_port_loses_nothing() {
    unbound_collector_gets_every_datagram(IpAddr::V6(Ipv6Addr::LOCALHOST));
}
