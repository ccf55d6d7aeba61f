//! The senders over loopback: a real UDP socket receives what [`UdpExporter`] sends, and a raw GRE socket
//! receives what [`GreSender`] sends (raw sockets need root or CAP_NET_RAW, as the exporter itself does).

use std::io::Read;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, UdpSocket};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use socket2::{Domain, Protocol, Socket, Type};
use topotap_targets::send::{GreSender, UdpExporter};
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
