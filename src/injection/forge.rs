//! Forged frames: Ethernet + IPv4/IPv6 + ICMP echo request, TCP SYN or UDP, with every
//! length and checksum filled in, and the per-packet plan of an injection (§7.3).
//!
//! Pure: no socket, no clock. [`PacketPlan::frame`] gives packet `i` of an injection,
//! so tests check the bytes of any packet without sending anything.

use std::net::IpAddr;

/// Default payload length when none is given, as `ping` sends.
pub const DEFAULT_PAYLOAD_LEN: usize = 56;
/// Largest payload of a forged packet: the IP packet stays within 65 535 bytes.
/// `IncrementPayload` stops growing the payload there.
pub const MAX_PAYLOAD_LEN: usize = 65_000;

const ETH_LEN: usize = 14;
const IPV4_LEN: usize = 20;
const IPV6_LEN: usize = 40;
const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_IPV6: u16 = 0x86dd;
const PROTO_ICMP: u8 = 1;
const PROTO_TCP: u8 = 6;
const PROTO_UDP: u8 = 17;
const PROTO_ICMPV6: u8 = 58;
const ICMPV4_ECHO_REQUEST: u8 = 8;
const ICMPV6_ECHO_REQUEST: u8 = 128;
const TCP_SYN: u8 = 0x02;
const TCP_WINDOW: u16 = 64_240;

/// The transport of a forged packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    IcmpEcho,
    TcpSyn,
    Udp,
}

impl Transport {
    /// From an injection `Type` (`icmp4`, `tcp6`, ...): the transport and whether it is IPv6.
    pub fn from_type(t: &str) -> Option<(Transport, bool)> {
        Some(match t {
            "icmp4" => (Transport::IcmpEcho, false),
            "icmp6" => (Transport::IcmpEcho, true),
            "tcp4" => (Transport::TcpSyn, false),
            "tcp6" => (Transport::TcpSyn, true),
            "udp4" => (Transport::Udp, false),
            "udp6" => (Transport::Udp, true),
            _ => return None,
        })
    }
}

/// The fixed part of every forged packet of an injection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Headers {
    pub transport: Transport,
    pub src_mac: [u8; 6],
    pub dst_mac: [u8; 6],
    /// Both of the same family.
    pub src_ip: IpAddr,
    pub dst_ip: IpAddr,
    /// IPv4 TTL or IPv6 hop limit.
    pub ttl: u8,
    pub dst_port: u16,
}

/// What changes from packet to packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PerPacket {
    /// ICMP identifier (ICMP) or source port (TCP, UDP).
    pub id_or_port: u16,
    /// ICMP sequence number.
    pub seq: u16,
    /// TCP initial sequence number.
    pub tcp_seq: u32,
}

impl Headers {
    /// Appends one frame with `payload` to `out` (cleared first).
    pub fn emit(&self, v: PerPacket, payload: &[u8], out: &mut Vec<u8>) {
        out.clear();
        let l4_len = match self.transport {
            Transport::IcmpEcho | Transport::Udp => 8,
            Transport::TcpSyn => 20,
        } + payload.len();
        let (ethertype, proto) = match (self.src_ip, self.transport) {
            (IpAddr::V4(_), Transport::IcmpEcho) => (ETHERTYPE_IPV4, PROTO_ICMP),
            (IpAddr::V6(_), Transport::IcmpEcho) => (ETHERTYPE_IPV6, PROTO_ICMPV6),
            (IpAddr::V4(_), Transport::TcpSyn) => (ETHERTYPE_IPV4, PROTO_TCP),
            (IpAddr::V6(_), Transport::TcpSyn) => (ETHERTYPE_IPV6, PROTO_TCP),
            (IpAddr::V4(_), Transport::Udp) => (ETHERTYPE_IPV4, PROTO_UDP),
            (IpAddr::V6(_), Transport::Udp) => (ETHERTYPE_IPV6, PROTO_UDP),
        };
        out.extend_from_slice(&self.dst_mac);
        out.extend_from_slice(&self.src_mac);
        out.extend_from_slice(&ethertype.to_be_bytes());

        // The pseudo-header sum for TCP, UDP and ICMPv6 checksums.
        let pseudo = match (self.src_ip, self.dst_ip) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                let total = (IPV4_LEN + l4_len) as u16;
                out.extend_from_slice(&[0x45, 0]);
                out.extend_from_slice(&total.to_be_bytes());
                // Identification 0, no flags, fragment offset 0 (as Skydive sends).
                out.extend_from_slice(&[0, 0, 0, 0, self.ttl, proto, 0, 0]);
                out.extend_from_slice(&s.octets());
                out.extend_from_slice(&d.octets());
                let csum = checksum(&out[ETH_LEN..ETH_LEN + IPV4_LEN], 0);
                out[ETH_LEN + 10..ETH_LEN + 12].copy_from_slice(&csum.to_be_bytes());
                let mut p = sum(&s.octets(), 0);
                p = sum(&d.octets(), p);
                p + u32::from(proto) + l4_len as u32
            }
            (s, d) => {
                let s = to_v6(s);
                let d = to_v6(d);
                out.extend_from_slice(&[0x60, 0, 0, 0]);
                out.extend_from_slice(&(l4_len as u16).to_be_bytes());
                out.extend_from_slice(&[proto, self.ttl]);
                out.extend_from_slice(&s.octets());
                out.extend_from_slice(&d.octets());
                debug_assert_eq!(out.len(), ETH_LEN + IPV6_LEN);
                let mut p = sum(&s.octets(), 0);
                p = sum(&d.octets(), p);
                p + u32::from(proto) + l4_len as u32
            }
        };
        let l4 = out.len();
        let csum_at = match self.transport {
            Transport::IcmpEcho => {
                let kind = if proto == PROTO_ICMP {
                    ICMPV4_ECHO_REQUEST
                } else {
                    ICMPV6_ECHO_REQUEST
                };
                out.extend_from_slice(&[kind, 0, 0, 0]);
                out.extend_from_slice(&v.id_or_port.to_be_bytes());
                out.extend_from_slice(&v.seq.to_be_bytes());
                l4 + 2
            }
            Transport::TcpSyn => {
                out.extend_from_slice(&v.id_or_port.to_be_bytes());
                out.extend_from_slice(&self.dst_port.to_be_bytes());
                out.extend_from_slice(&v.tcp_seq.to_be_bytes());
                out.extend_from_slice(&[0, 0, 0, 0, 5 << 4, TCP_SYN]);
                out.extend_from_slice(&TCP_WINDOW.to_be_bytes());
                out.extend_from_slice(&[0, 0, 0, 0]);
                l4 + 16
            }
            Transport::Udp => {
                out.extend_from_slice(&v.id_or_port.to_be_bytes());
                out.extend_from_slice(&self.dst_port.to_be_bytes());
                out.extend_from_slice(&(l4_len as u16).to_be_bytes());
                out.extend_from_slice(&[0, 0]);
                l4 + 6
            }
        };
        out.extend_from_slice(payload);
        // ICMPv4 has no pseudo-header.
        let initial = if proto == PROTO_ICMP { 0 } else { pseudo };
        let mut csum = checksum(&out[l4..], initial);
        if proto == PROTO_UDP && csum == 0 {
            csum = 0xffff;
        }
        out[csum_at..csum_at + 2].copy_from_slice(&csum.to_be_bytes());
    }
}

fn to_v6(ip: IpAddr) -> std::net::Ipv6Addr {
    match ip {
        IpAddr::V6(a) => a,
        IpAddr::V4(a) => a.to_ipv6_mapped(),
    }
}

/// Adds `data` as big-endian 16-bit words to `acc`.
fn sum(data: &[u8], mut acc: u32) -> u32 {
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        acc += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = chunks.remainder() {
        acc += u32::from(*last) << 8;
    }
    // Fold now and then so very long payloads cannot overflow.
    while acc > 0xffff_0000 {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc
}

/// The Internet checksum (RFC 1071) of `data`, starting from the partial sum `initial`.
pub fn checksum(data: &[u8], initial: u32) -> u16 {
    let mut acc = sum(data, initial) as u64;
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    !(acc as u16)
}

/// A small non-cryptographic generator (SplitMix64): random letters, ports, ICMP ids
/// and TCP sequence numbers.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    /// Seeded from the process's hash keys and the clock.
    pub fn from_entropy() -> Self {
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0),
        );
        Rng::new(h.finish())
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..=hi`.
    pub fn range_u16(&mut self, lo: u16, hi: u16) -> u16 {
        let span = u64::from(hi - lo) + 1;
        lo + (self.next_u64() % span) as u16
    }

    /// `n` random letters `[a-zA-Z]` appended to `out`.
    pub fn letters(&mut self, n: usize, out: &mut Vec<u8>) {
        const LETTERS: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
        out.extend((0..n).map(|_| LETTERS[(self.next_u64() % LETTERS.len() as u64) as usize]));
    }
}

/// How each packet of a forged injection varies.
#[derive(Debug, Clone)]
pub struct PacketPlan {
    pub headers: Headers,
    /// ICMP identifier or source port of every packet in `unique` mode, of the first in
    /// `random` mode.
    pub base_id: u16,
    /// `Mode: random`: a new ICMP id / source port (1..=65534) for every packet.
    pub random: bool,
    /// Bytes appended to the payload after each packet (`IncrementPayload`).
    pub increment: usize,
    /// The first packet's payload.
    pub payload: Vec<u8>,
}

/// Forges the packets of one injection in order.
#[derive(Debug)]
pub struct Forger {
    plan: PacketPlan,
    rng: Rng,
    payload: Vec<u8>,
    index: u64,
}

impl Forger {
    pub fn new(plan: PacketPlan, rng: Rng) -> Self {
        let payload = plan.payload.clone();
        Forger {
            plan,
            rng,
            payload,
            index: 0,
        }
    }

    /// Writes the next packet into `out`.
    pub fn next_frame(&mut self, out: &mut Vec<u8>) {
        let id_or_port = if self.plan.random && self.index > 0 {
            self.rng.range_u16(1, 65534)
        } else {
            self.plan.base_id
        };
        let v = PerPacket {
            id_or_port,
            // ICMP sequence numbers start at 1, as ping's do.
            seq: (self.index.wrapping_add(1) & 0xffff) as u16,
            tcp_seq: self.rng.next_u64() as u32,
        };
        self.plan.headers.emit(v, &self.payload, out);
        self.index += 1;
        let room = MAX_PAYLOAD_LEN.saturating_sub(self.payload.len());
        let grow = self.plan.increment.min(room);
        self.rng.letters(grow, &mut self.payload);
    }
}

/// Standard base64, padding optional when decoding, as Go reads and writes `[]byte` in
/// JSON (it does not insist on zero trailing bits either).
const BASE64: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    base64::engine::GeneralPurposeConfig::new()
        .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

/// Standard base64 (RFC 4648, with padding), as Go encodes `[]byte` in JSON.
pub fn base64_encode(data: &[u8]) -> String {
    use base64::Engine;
    BASE64.encode(data)
}

/// Decodes standard base64; padding is optional and whitespace (line breaks) ignored.
pub fn base64_decode(text: &str) -> Result<Vec<u8>, base64::DecodeError> {
    use base64::Engine;
    if text.bytes().any(|c| c.is_ascii_whitespace()) {
        let packed: Vec<u8> = text.bytes().filter(|c| !c.is_ascii_whitespace()).collect();
        BASE64.decode(packed)
    } else {
        BASE64.decode(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use topotap_targets::packet::{decode, LinkType, Transport as Transport4};

    fn headers(t: &str) -> Headers {
        let (transport, v6) = Transport::from_type(t).unwrap();
        let (src_ip, dst_ip): (IpAddr, IpAddr) = if v6 {
            ("fd00::1".parse().unwrap(), "fd00::2".parse().unwrap())
        } else {
            ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap())
        };
        Headers {
            transport,
            src_mac: [2, 0, 0, 0, 0, 1],
            dst_mac: [2, 0, 0, 0, 0, 2],
            src_ip,
            dst_ip,
            ttl: 64,
            dst_port: 53,
        }
    }

    fn per(id: u16, seq: u16) -> PerPacket {
        PerPacket {
            id_or_port: id,
            seq,
            tcp_seq: 0x0102_0304,
        }
    }

    /// The transport checksum recomputed over the pseudo-header is zero.
    fn transport_checksum_ok(frame: &[u8]) -> bool {
        let v6 = frame[12..14] == [0x86, 0xdd];
        let (l4, proto, pseudo) = if v6 {
            let l4 = ETH_LEN + IPV6_LEN;
            let mut p = sum(&frame[ETH_LEN + 8..ETH_LEN + 40], 0);
            p += u32::from(frame[ETH_LEN + 6]) + (frame.len() - l4) as u32;
            (l4, frame[ETH_LEN + 6], p)
        } else {
            let l4 = ETH_LEN + IPV4_LEN;
            let mut p = sum(&frame[ETH_LEN + 12..ETH_LEN + 20], 0);
            p += u32::from(frame[ETH_LEN + 9]) + (frame.len() - l4) as u32;
            (l4, frame[ETH_LEN + 9], p)
        };
        let initial = if proto == PROTO_ICMP { 0 } else { pseudo };
        checksum(&frame[l4..], initial) == 0
    }

    #[test]
    fn icmp4_echo_request_bytes() {
        let mut f = Vec::new();
        headers("icmp4").emit(per(0x1234, 1), b"abcd", &mut f);
        let expected: Vec<u8> = [
            &[2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00][..],
            &[0x45, 0, 0, 32, 0, 0, 0, 0, 64, 1][..],
            &checksum(
                &[
                    0x45, 0, 0, 32, 0, 0, 0, 0, 64, 1, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
                ],
                0,
            )
            .to_be_bytes()[..],
            &[10, 0, 0, 1, 10, 0, 0, 2][..],
            &[8, 0][..],
            &checksum(&[8, 0, 0, 0, 0x12, 0x34, 0, 1, b'a', b'b', b'c', b'd'], 0).to_be_bytes()[..],
            &[0x12, 0x34, 0, 1, b'a', b'b', b'c', b'd'][..],
        ]
        .concat();
        assert_eq!(f, expected);
        // The IPv4 header checksums to zero.
        assert_eq!(checksum(&f[ETH_LEN..ETH_LEN + IPV4_LEN], 0), 0);
    }

    #[test]
    fn every_type_decodes_with_valid_checksums() {
        for t in ["icmp4", "icmp6", "tcp4", "tcp6", "udp4", "udp6"] {
            let mut f = Vec::new();
            let h = headers(t);
            h.emit(per(4242, 7), b"payload!", &mut f);
            assert!(transport_checksum_ok(&f), "{t}");
            let p = decode(LinkType::Ethernet, &f);
            match p.transport {
                Transport4::Icmpv4(i) | Transport4::Icmpv6(i) => {
                    assert_eq!((i.id, i.seq), (4242, 7), "{t}");
                    assert_eq!(i.icmp_type, if t == "icmp4" { 8 } else { 128 });
                }
                Transport4::Tcp(tcp) => {
                    assert_eq!((tcp.src_port, tcp.dst_port, tcp.flags), (4242, 53, TCP_SYN));
                    assert_eq!(tcp.seq, 0x0102_0304);
                }
                Transport4::Udp(u) => assert_eq!((u.src_port, u.dst_port), (4242, 53)),
                other => panic!("{t}: {other:?}"),
            }
            assert_eq!(p.payload, b"payload!", "{t}");
            assert_eq!(p.ip_len(), Some((f.len() - ETH_LEN) as u32), "{t}");
            if t.ends_with('6') {
                assert_eq!(f[ETH_LEN + 7], 64, "hop limit");
            } else {
                assert_eq!(f[ETH_LEN + 8], 64, "ttl");
            }
        }
        // Odd payload lengths too.
        let mut f = Vec::new();
        headers("udp6").emit(per(1, 1), b"odd", &mut f);
        assert!(transport_checksum_ok(&f));
        headers("tcp4").emit(per(1, 1), b"", &mut f);
        assert!(transport_checksum_ok(&f));
        assert_eq!(f[ETH_LEN + IPV4_LEN + 13], TCP_SYN);
    }

    #[test]
    fn forger_sequences_modes_and_growing_payload() {
        let plan = PacketPlan {
            headers: headers("icmp4"),
            base_id: 77,
            random: false,
            increment: 1,
            payload: b"xy".to_vec(),
        };
        let mut forger = Forger::new(plan.clone(), Rng::new(1));
        let mut f = Vec::new();
        let icmp = ETH_LEN + IPV4_LEN;
        for i in 0..4u16 {
            forger.next_frame(&mut f);
            assert_eq!(&f[icmp + 4..icmp + 6], &77u16.to_be_bytes());
            assert_eq!(&f[icmp + 6..icmp + 8], &(i + 1).to_be_bytes());
            assert_eq!(f.len(), icmp + 8 + 2 + usize::from(i));
            assert!(f[icmp + 8..].iter().all(u8::is_ascii_alphabetic));
            assert!(transport_checksum_ok(&f));
        }
        let mut random = Forger::new(
            PacketPlan {
                random: true,
                increment: 0,
                headers: headers("udp4"),
                ..plan
            },
            Rng::new(2),
        );
        let udp = ETH_LEN + IPV4_LEN;
        let mut ports = std::collections::BTreeSet::new();
        for _ in 0..20 {
            random.next_frame(&mut f);
            ports.insert(u16::from_be_bytes([f[udp], f[udp + 1]]));
            assert_eq!(f.len(), udp + 8 + 2);
        }
        assert!(ports.len() > 10, "{ports:?}");
        assert!(ports.contains(&77), "the first packet uses the base port");
    }

    #[test]
    fn base64_round_trips() {
        for data in [&b""[..], b"f", b"fo", b"foo", b"foob", b"fooba", b"foobar"] {
            let e = base64_encode(data);
            assert_eq!(base64_decode(&e).unwrap(), data);
        }
        assert_eq!(base64_encode(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64_encode(b"fo"), "Zm8=");
        assert_eq!(base64_decode("Zm8").unwrap(), b"fo");
        assert_eq!(base64_decode("Zm9v\nYmFy").unwrap(), b"foobar");
        assert!(base64_decode("Zm8=x").is_err());
        assert!(base64_decode("Z").is_err());
        assert!(base64_decode("Zm*v").is_err());
    }
}
