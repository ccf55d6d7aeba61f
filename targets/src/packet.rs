//! Decode-once, zero-copy dissection of a captured frame.
//!
//! [`decode`] walks a frame once — link layer (Ethernet with any number of 802.1Q / 802.1ad tags,
//! Linux cooked SLL/SLL2, BSD NULL/LOOP, or none for raw-IP links such as tun devices), then ARP, IPv4 or
//! IPv6 (extension headers skipped), then TCP, UDP, SCTP, ICMPv4 or ICMPv6 — and returns a [`Packet`]: a
//! small `Copy` value of the header fields the flow table, the samplers and the encoders need, plus
//! slices into the original bytes. Nothing is allocated.
//!
//! Contract: decoding never panics, whatever the input. A layer that is truncated or malformed is
//! reported as absent (or as [`Transport::Other`] with the IP protocol number) and decoding stops there,
//! the way gopacket stops at a `DecodeFailure` layer. Only the first IPv4/IPv6 fragment carries a
//! transport header; later fragments decode as [`Transport::Fragment`].

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::ops::{Add, Sub};
use std::time::Duration;

/// A capture timestamp: nanoseconds since the Unix epoch. The flow table never reads a clock; callers
/// pass packet timestamps (or a virtual clock in tests).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(u64);

impl Timestamp {
    /// The Unix epoch.
    pub const ZERO: Timestamp = Timestamp(0);

    pub const fn from_nanos(nanos: u64) -> Self {
        Timestamp(nanos)
    }
    pub const fn from_micros(micros: u64) -> Self {
        Timestamp(micros.saturating_mul(1_000))
    }
    pub const fn from_millis(millis: u64) -> Self {
        Timestamp(millis.saturating_mul(1_000_000))
    }
    pub const fn from_secs(secs: u64) -> Self {
        Timestamp(secs.saturating_mul(1_000_000_000))
    }
    pub const fn as_nanos(self) -> u64 {
        self.0
    }
    pub const fn as_micros(self) -> u64 {
        self.0 / 1_000
    }
    /// Milliseconds since the epoch, the unit of Skydive's `Start`/`Last`.
    pub const fn as_millis(self) -> u64 {
        self.0 / 1_000_000
    }
    pub const fn as_secs(self) -> u64 {
        self.0 / 1_000_000_000
    }
    /// Sub-second part in nanoseconds.
    pub const fn subsec_nanos(self) -> u32 {
        (self.0 % 1_000_000_000) as u32
    }
    /// `self - earlier`, or zero if `earlier` is later.
    pub fn saturating_since(self, earlier: Timestamp) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }
}

impl Add<Duration> for Timestamp {
    type Output = Timestamp;
    fn add(self, rhs: Duration) -> Timestamp {
        Timestamp(
            self.0
                .saturating_add(u64::try_from(rhs.as_nanos()).unwrap_or(u64::MAX)),
        )
    }
}

impl Sub<Duration> for Timestamp {
    type Output = Timestamp;
    fn sub(self, rhs: Duration) -> Timestamp {
        Timestamp(
            self.0
                .saturating_sub(u64::try_from(rhs.as_nanos()).unwrap_or(u64::MAX)),
        )
    }
}

/// The link-layer header type of a capture (tcpdump.org `LINKTYPE_*` values).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LinkType {
    /// `LINKTYPE_NULL` (0): BSD loopback, 4-byte address family in the capturing host's byte order.
    Null,
    /// `LINKTYPE_ETHERNET` (1).
    Ethernet,
    /// `LINKTYPE_RAW` (101; also DLT 12/14 on some systems): the frame starts at the IP header.
    Raw,
    /// `LINKTYPE_LOOP` (108): OpenBSD loopback, 4-byte address family in network byte order.
    Loop,
    /// `LINKTYPE_LINUX_SLL` (113): Linux cooked capture v1 (16-byte header).
    LinuxSll,
    /// `LINKTYPE_IPV4` (228).
    Ipv4,
    /// `LINKTYPE_IPV6` (229).
    Ipv6,
    /// `LINKTYPE_LINUX_SLL2` (276): Linux cooked capture v2 (20-byte header).
    LinuxSll2,
    /// Anything else; frames of such links decode to an empty [`Packet`].
    Other(u32),
}

impl LinkType {
    pub fn from_u32(value: u32) -> Self {
        match value {
            0 => LinkType::Null,
            1 => LinkType::Ethernet,
            101 | 12 | 14 => LinkType::Raw,
            108 => LinkType::Loop,
            113 => LinkType::LinuxSll,
            228 => LinkType::Ipv4,
            229 => LinkType::Ipv6,
            276 => LinkType::LinuxSll2,
            other => LinkType::Other(other),
        }
    }

    pub fn to_u32(self) -> u32 {
        match self {
            LinkType::Null => 0,
            LinkType::Ethernet => 1,
            LinkType::Raw => 101,
            LinkType::Loop => 108,
            LinkType::LinuxSll => 113,
            LinkType::Ipv4 => 228,
            LinkType::Ipv6 => 229,
            LinkType::LinuxSll2 => 276,
            LinkType::Other(v) => v,
        }
    }
}

/// EtherType values the decoder knows.
pub mod ethertype {
    pub const IPV4: u16 = 0x0800;
    pub const ARP: u16 = 0x0806;
    pub const VLAN: u16 = 0x8100;
    pub const IPV6: u16 = 0x86dd;
    pub const QINQ: u16 = 0x88a8;
    pub const QINQ_OLD: u16 = 0x9100;
    pub const LLDP: u16 = 0x88cc;
}

/// IP protocol numbers the decoder knows.
pub mod ipproto {
    pub const HOPOPT: u8 = 0;
    pub const ICMP: u8 = 1;
    pub const IGMP: u8 = 2;
    pub const TCP: u8 = 6;
    pub const UDP: u8 = 17;
    pub const IPV6_ROUTE: u8 = 43;
    pub const IPV6_FRAG: u8 = 44;
    pub const GRE: u8 = 47;
    pub const ESP: u8 = 50;
    pub const AH: u8 = 51;
    pub const ICMPV6: u8 = 58;
    pub const IPV6_NONXT: u8 = 59;
    pub const IPV6_OPTS: u8 = 60;
    pub const OSPF: u8 = 89;
    pub const VRRP: u8 = 112;
    pub const SCTP: u8 = 132;
    pub const MOBILITY: u8 = 135;
}

/// TCP header flag bits (byte 13 of the header).
pub mod tcp_flags {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const PSH: u8 = 0x08;
    pub const ACK: u8 = 0x10;
    pub const URG: u8 = 0x20;
    pub const ECE: u8 = 0x40;
    pub const CWR: u8 = 0x80;
}

/// A 48-bit MAC address.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MacAddr(pub [u8; 6]);

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}

/// The Ethernet header (the outer one; VLAN tags are summarised in [`Packet::vlan_count`] and
/// [`Packet::vlan_id`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ethernet {
    pub src: MacAddr,
    pub dst: MacAddr,
}

/// An ARP packet for IPv4 over Ethernet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Arp {
    pub operation: u16,
    pub sender_mac: MacAddr,
    pub sender_ip: Ipv4Addr,
    pub target_mac: MacAddr,
    pub target_ip: Ipv4Addr,
}

/// The IPv4 header fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipv4 {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub protocol: u8,
    /// The whole TOS byte (DSCP + ECN).
    pub tos: u8,
    pub ttl: u8,
    /// Total length from the header (header + payload), as sent.
    pub total_len: u16,
    pub ident: u16,
    /// Fragment offset in 8-byte units.
    pub fragment_offset: u16,
    pub more_fragments: bool,
    pub dont_fragment: bool,
    pub header_len: u8,
}

/// The IPv6 header fields; `next_header` is the upper-layer protocol after any extension headers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipv6 {
    pub src: Ipv6Addr,
    pub dst: Ipv6Addr,
    pub next_header: u8,
    pub traffic_class: u8,
    pub hop_limit: u8,
    pub flow_label: u32,
    pub payload_len: u16,
    /// Offset (8-byte units) from a Fragment extension header, if there was one.
    pub fragment_offset: Option<u16>,
}

/// The network layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Network {
    None,
    Arp(Arp),
    Ipv4(Ipv4),
    Ipv6(Ipv6),
}

/// The TCP header fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tcp {
    pub src_port: u16,
    pub dst_port: u16,
    pub seq: u32,
    pub ack: u32,
    /// Byte 13 of the header; see [`tcp_flags`].
    pub flags: u8,
    pub window: u16,
    pub header_len: u8,
}

/// Ports of UDP or SCTP.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ports {
    pub src_port: u16,
    pub dst_port: u16,
}

/// ICMPv4 or ICMPv6 header. `id`/`seq` are those of echo (and, for v4, timestamp/info/mask) messages,
/// zero for the others.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Icmp {
    pub icmp_type: u8,
    pub code: u8,
    pub id: u16,
    pub seq: u16,
}

/// The transport layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    None,
    Tcp(Tcp),
    Udp(Ports),
    Sctp(Ports),
    Icmpv4(Icmp),
    Icmpv6(Icmp),
    /// A non-first IP fragment: no transport header.
    Fragment,
    /// A protocol this decoder does not dissect, or a truncated transport header.
    Other(u8),
}

/// One decoded frame. All slices borrow the captured bytes.
#[derive(Clone, Copy, Debug)]
pub struct Packet<'a> {
    /// The captured bytes as given to [`decode`].
    pub data: &'a [u8],
    pub link_type: LinkType,
    /// The Ethernet header, if the frame has one.
    pub ethernet: Option<Ethernet>,
    /// Number of 802.1Q/802.1ad tags.
    pub vlan_count: u8,
    /// The VLAN stack, 12 bits per tag, outermost first (Skydive's `Link.ID`); innermost tags kept on
    /// overflow.
    pub vlan_id: u32,
    /// The EtherType of the network layer (after tags; from the cooked/NULL header or the IP version for
    /// links without one); 0 for 802.3 length frames.
    pub ethertype: u16,
    /// Bytes before the network header.
    pub l2_len: u16,
    pub network: Network,
    pub transport: Transport,
    /// Bytes after the last decoded header (application data, possibly truncated by the snaplen).
    pub payload: &'a [u8],
}

impl<'a> Packet<'a> {
    fn empty(data: &'a [u8], link_type: LinkType) -> Self {
        Packet {
            data,
            link_type,
            ethernet: None,
            vlan_count: 0,
            vlan_id: 0,
            ethertype: 0,
            l2_len: 0,
            network: Network::None,
            transport: Transport::None,
            payload: &[],
        }
    }

    /// Length of the IP packet (header + payload) as sent, from the IP header; `None` if there is no IP
    /// layer or the length field is 0 (IPv6 jumbogram).
    pub fn ip_len(&self) -> Option<u32> {
        match self.network {
            Network::Ipv4(ip) if ip.total_len > 0 => Some(u32::from(ip.total_len)),
            Network::Ipv6(ip) if ip.payload_len > 0 => Some(u32::from(ip.payload_len) + 40),
            _ => None,
        }
    }

    /// The TCP flags byte, or 0 for non-TCP packets.
    pub fn tcp_flags(&self) -> u8 {
        match self.transport {
            Transport::Tcp(t) => t.flags,
            _ => 0,
        }
    }
}

/// Decode a frame captured on a link of type `link_type`. Never panics.
pub fn decode(link_type: LinkType, data: &[u8]) -> Packet<'_> {
    let mut p = Packet::empty(data, link_type);
    let (ethertype, offset) = match link_type {
        LinkType::Ethernet => match decode_ethernet(&mut p, data) {
            Some(v) => v,
            None => return p,
        },
        LinkType::Raw | LinkType::Ipv4 | LinkType::Ipv6 => match ip_version(data) {
            Some(et) => (et, 0),
            None => return p,
        },
        LinkType::Null | LinkType::Loop => match data.get(4..).and_then(ip_version) {
            Some(et) => (et, 4),
            None => return p,
        },
        LinkType::LinuxSll => match be16(data, 14) {
            Some(et) if data.len() >= 16 => (et, 16),
            _ => return p,
        },
        LinkType::LinuxSll2 => match be16(data, 0) {
            Some(et) if data.len() >= 20 => (et, 20),
            _ => return p,
        },
        LinkType::Other(_) => return p,
    };
    p.ethertype = ethertype;
    p.l2_len = u16::try_from(offset).unwrap_or(u16::MAX);
    let rest = data.get(offset..).unwrap_or(&[]);
    p.payload = rest;
    match ethertype {
        ethertype::IPV4 => decode_ipv4(&mut p, rest),
        ethertype::IPV6 => decode_ipv6(&mut p, rest),
        ethertype::ARP => decode_arp(&mut p, rest),
        _ => {}
    }
    p
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    let s = b.get(at..at.checked_add(2)?)?;
    Some(u16::from_be_bytes([s[0], s[1]]))
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at.checked_add(4)?)?;
    Some(u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
}

fn array<const N: usize>(b: &[u8], at: usize) -> Option<[u8; N]> {
    b.get(at..at.checked_add(N)?)?.try_into().ok()
}

fn ip_version(data: &[u8]) -> Option<u16> {
    match data.first()? >> 4 {
        4 => Some(ethertype::IPV4),
        6 => Some(ethertype::IPV6),
        _ => None,
    }
}

/// Returns the network EtherType and its offset.
fn decode_ethernet(p: &mut Packet<'_>, data: &[u8]) -> Option<(u16, usize)> {
    let dst = MacAddr(array(data, 0)?);
    let src = MacAddr(array(data, 6)?);
    let mut ethertype = be16(data, 12)?;
    p.ethernet = Some(Ethernet { src, dst });
    let mut offset = 14;
    while matches!(
        ethertype,
        ethertype::VLAN | ethertype::QINQ | ethertype::QINQ_OLD
    ) {
        let (Some(tci), Some(inner)) = (be16(data, offset), be16(data, offset + 2)) else {
            p.l2_len = u16::try_from(offset).unwrap_or(u16::MAX);
            return None;
        };
        p.vlan_count = p.vlan_count.saturating_add(1);
        p.vlan_id = (p.vlan_id << 12) | u32::from(tci & 0x0fff);
        ethertype = inner;
        offset += 4;
    }
    if ethertype < 0x0600 {
        // 802.3 length field: LLC follows; no network layer the flow table understands.
        ethertype = 0;
    }
    Some((ethertype, offset))
}

fn decode_arp<'a>(p: &mut Packet<'a>, b: &'a [u8]) {
    // Ethernet/IPv4 ARP only: htype 1, ptype 0x0800, hlen 6, plen 4.
    if be16(b, 0) != Some(1) || be16(b, 2) != Some(ethertype::IPV4) || b.get(4..6) != Some(&[6, 4])
    {
        return;
    }
    let (Some(op), Some(sha), Some(spa), Some(tha), Some(tpa)) = (
        be16(b, 6),
        array::<6>(b, 8),
        array::<4>(b, 14),
        array::<6>(b, 18),
        array::<4>(b, 24),
    ) else {
        return;
    };
    p.network = Network::Arp(Arp {
        operation: op,
        sender_mac: MacAddr(sha),
        sender_ip: Ipv4Addr::from(spa),
        target_mac: MacAddr(tha),
        target_ip: Ipv4Addr::from(tpa),
    });
    p.payload = b.get(28..).unwrap_or(&[]);
}

fn decode_ipv4<'a>(p: &mut Packet<'a>, b: &'a [u8]) {
    let Some(&vihl) = b.first() else { return };
    let ihl = usize::from(vihl & 0x0f) * 4;
    if vihl >> 4 != 4 || ihl < 20 || b.len() < ihl {
        return;
    }
    let (Some(total_len), Some(ident), Some(frag), Some(src), Some(dst)) = (
        be16(b, 2),
        be16(b, 4),
        be16(b, 6),
        array::<4>(b, 12),
        array::<4>(b, 16),
    ) else {
        return;
    };
    let ip = Ipv4 {
        src: Ipv4Addr::from(src),
        dst: Ipv4Addr::from(dst),
        protocol: b[9],
        tos: b[1],
        ttl: b[8],
        total_len,
        ident,
        fragment_offset: frag & 0x1fff,
        more_fragments: frag & 0x2000 != 0,
        dont_fragment: frag & 0x4000 != 0,
        header_len: ihl as u8,
    };
    p.network = Network::Ipv4(ip);
    // Stop at the IP total length (drops Ethernet padding) when it is consistent.
    let end = if usize::from(total_len) >= ihl {
        b.len().min(usize::from(total_len))
    } else {
        b.len()
    };
    let l4 = b.get(ihl..end).unwrap_or(&[]);
    p.payload = l4;
    if ip.fragment_offset != 0 {
        p.transport = Transport::Fragment;
        return;
    }
    decode_transport(p, ip.protocol, l4, false);
}

fn decode_ipv6<'a>(p: &mut Packet<'a>, b: &'a [u8]) {
    let (Some(vtcfl), Some(payload_len), Some(src), Some(dst)) = (
        be32(b, 0),
        be16(b, 4),
        array::<16>(b, 8),
        array::<16>(b, 24),
    ) else {
        return;
    };
    if vtcfl >> 28 != 6 {
        return;
    }
    let mut ip = Ipv6 {
        src: Ipv6Addr::from(src),
        dst: Ipv6Addr::from(dst),
        next_header: b[6],
        traffic_class: ((vtcfl >> 20) & 0xff) as u8,
        hop_limit: b[7],
        flow_label: vtcfl & 0x000f_ffff,
        payload_len,
        fragment_offset: None,
    };
    let end = if payload_len > 0 {
        b.len().min(40 + usize::from(payload_len))
    } else {
        b.len()
    };
    let mut rest = b.get(40..end).unwrap_or(&[]);
    // Skip extension headers; every step consumes at least 8 bytes, so this terminates.
    loop {
        match ip.next_header {
            ipproto::HOPOPT | ipproto::IPV6_ROUTE | ipproto::IPV6_OPTS | ipproto::MOBILITY => {
                let (Some(&nh), Some(&len)) = (rest.first(), rest.get(1)) else {
                    ip.next_header = ipproto::IPV6_NONXT;
                    break;
                };
                let ext_len = (usize::from(len) + 1) * 8;
                ip.next_header = nh;
                rest = rest.get(ext_len..).unwrap_or(&[]);
            }
            ipproto::IPV6_FRAG => {
                let (Some(&nh), Some(off)) = (rest.first(), be16(rest, 2)) else {
                    ip.next_header = ipproto::IPV6_NONXT;
                    break;
                };
                ip.next_header = nh;
                ip.fragment_offset = Some(off >> 3);
                rest = rest.get(8..).unwrap_or(&[]);
            }
            _ => break,
        }
    }
    p.network = Network::Ipv6(ip);
    p.payload = rest;
    if matches!(ip.fragment_offset, Some(off) if off != 0) {
        p.transport = Transport::Fragment;
        return;
    }
    if ip.next_header == ipproto::IPV6_NONXT {
        return;
    }
    decode_transport(p, ip.next_header, rest, true);
}

fn decode_transport<'a>(p: &mut Packet<'a>, proto: u8, b: &'a [u8], v6: bool) {
    let ports = |b: &[u8]| -> Option<Ports> {
        Some(Ports {
            src_port: be16(b, 0)?,
            dst_port: be16(b, 2)?,
        })
    };
    let (transport, header_len) = match proto {
        ipproto::TCP => {
            let (Some(pt), Some(seq), Some(ack), Some(&off), Some(&flags), Some(window)) = (
                ports(b),
                be32(b, 4),
                be32(b, 8),
                b.get(12),
                b.get(13),
                be16(b, 14),
            ) else {
                p.transport = Transport::Other(proto);
                return;
            };
            let hl = usize::from(off >> 4) * 4;
            let t = Tcp {
                src_port: pt.src_port,
                dst_port: pt.dst_port,
                seq,
                ack,
                flags,
                window,
                header_len: hl as u8,
            };
            (Transport::Tcp(t), hl.max(20))
        }
        ipproto::UDP if b.len() >= 8 => match ports(b) {
            Some(pt) => (Transport::Udp(pt), 8),
            None => (Transport::Other(proto), 0),
        },
        ipproto::SCTP if b.len() >= 12 => match ports(b) {
            Some(pt) => (Transport::Sctp(pt), 12),
            None => (Transport::Other(proto), 0),
        },
        ipproto::ICMP | ipproto::ICMPV6 if (proto == ipproto::ICMPV6) == v6 && b.len() >= 4 => {
            let icmp_type = b[0];
            let code = b[1];
            let has_id = if v6 {
                matches!(icmp_type, 128 | 129)
            } else {
                matches!(icmp_type, 0 | 8 | 13 | 14 | 15 | 16 | 17 | 18)
            };
            let (id, seq) = if has_id {
                (be16(b, 4).unwrap_or(0), be16(b, 6).unwrap_or(0))
            } else {
                (0, 0)
            };
            let icmp = Icmp {
                icmp_type,
                code,
                id,
                seq,
            };
            let t = if v6 {
                Transport::Icmpv6(icmp)
            } else {
                Transport::Icmpv4(icmp)
            };
            (t, 8)
        }
        other => (Transport::Other(other), 0),
    };
    p.transport = transport;
    p.payload = b.get(header_len..).unwrap_or(&[]);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eth(ethertype: u16, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1];
        f.extend_from_slice(&ethertype.to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    fn ipv4(proto: u8, l4: &[u8]) -> Vec<u8> {
        let total = (20 + l4.len()) as u16;
        let mut h = vec![0x45, 0x10];
        h.extend_from_slice(&total.to_be_bytes());
        h.extend_from_slice(&[0x12, 0x34, 0x40, 0x00, 64, proto, 0, 0]);
        h.extend_from_slice(&[10, 0, 0, 1, 10, 0, 0, 2]);
        h.extend_from_slice(l4);
        h
    }

    #[test]
    fn tcp_over_vlan() {
        let mut tcp = vec![0u8; 20];
        tcp[0..2].copy_from_slice(&1234u16.to_be_bytes());
        tcp[2..4].copy_from_slice(&80u16.to_be_bytes());
        tcp[4..8].copy_from_slice(&7u32.to_be_bytes());
        tcp[12] = 0x50;
        tcp[13] = tcp_flags::SYN;
        let mut tagged = 8u16.to_be_bytes().to_vec();
        tagged.extend_from_slice(&ethertype::IPV4.to_be_bytes());
        tagged.extend_from_slice(&ipv4(ipproto::TCP, &tcp));
        let f = eth(ethertype::VLAN, &tagged);
        let p = decode(LinkType::Ethernet, &f);
        assert_eq!(p.vlan_count, 1);
        assert_eq!(p.vlan_id, 8);
        assert_eq!(p.l2_len, 18);
        assert_eq!(p.ethertype, ethertype::IPV4);
        let Network::Ipv4(ip) = p.network else {
            panic!("{:?}", p.network)
        };
        assert_eq!(ip.src, Ipv4Addr::new(10, 0, 0, 1));
        assert_eq!(ip.tos, 0x10);
        assert!(ip.dont_fragment);
        let Transport::Tcp(t) = p.transport else {
            panic!("{:?}", p.transport)
        };
        assert_eq!((t.src_port, t.dst_port, t.seq, t.flags), (1234, 80, 7, 2));
        assert_eq!(p.ip_len(), Some(40));
    }

    #[test]
    fn non_first_fragment_has_no_transport() {
        let mut ip = ipv4(ipproto::UDP, &[0, 53, 0, 53, 0, 8, 0, 0]);
        ip[6] = 0x00;
        ip[7] = 0x10;
        let p = decode(LinkType::Raw, &ip);
        assert_eq!(p.transport, Transport::Fragment);
        ip[6] = 0x20; // MF, offset 0: first fragment keeps its ports
        ip[7] = 0;
        let p = decode(LinkType::Raw, &ip);
        assert_eq!(
            p.transport,
            Transport::Udp(Ports {
                src_port: 53,
                dst_port: 53
            })
        );
    }

    #[test]
    fn ipv6_skips_extension_headers() {
        let mut h = vec![0x60, 0x00, 0x00, 0x00];
        let icmp = [128u8, 0, 0, 0, 0x01, 0xc8, 0, 1];
        let hbh = [ipproto::ICMPV6, 0, 1, 4, 0, 0, 0, 0];
        h.extend_from_slice(&((hbh.len() + icmp.len()) as u16).to_be_bytes());
        h.extend_from_slice(&[ipproto::HOPOPT, 1]);
        h.extend_from_slice(&[0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        h.extend_from_slice(&[0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
        h.extend_from_slice(&hbh);
        h.extend_from_slice(&icmp);
        let frame = eth(ethertype::IPV6, &h);
        let p = decode(LinkType::Ethernet, &frame);
        let Network::Ipv6(ip) = p.network else {
            panic!()
        };
        assert_eq!(ip.next_header, ipproto::ICMPV6);
        assert_eq!(
            p.transport,
            Transport::Icmpv6(Icmp {
                icmp_type: 128,
                code: 0,
                id: 456,
                seq: 1
            })
        );
        assert_eq!(p.ip_len(), Some(56));
    }

    #[test]
    fn arp_and_cooked_and_null() {
        let mut arp = vec![0, 1, 8, 0, 6, 4, 0, 1];
        arp.extend_from_slice(&[2, 0, 0, 0, 0, 1, 10, 0, 0, 1]);
        arp.extend_from_slice(&[0, 0, 0, 0, 0, 0, 10, 0, 0, 2]);
        let frame = eth(ethertype::ARP, &arp);
        let p = decode(LinkType::Ethernet, &frame);
        let Network::Arp(a) = p.network else { panic!() };
        assert_eq!(a.operation, 1);
        assert_eq!(a.target_ip, Ipv4Addr::new(10, 0, 0, 2));

        let ip = ipv4(ipproto::UDP, &[0, 1, 0, 2, 0, 8, 0, 0]);
        let mut sll = vec![0u8; 14];
        sll.extend_from_slice(&ethertype::IPV4.to_be_bytes());
        sll.extend_from_slice(&ip);
        let p = decode(LinkType::LinuxSll, &sll);
        assert!(p.ethernet.is_none());
        assert_eq!(p.l2_len, 16);
        assert!(matches!(p.transport, Transport::Udp(_)));

        let mut null = 2u32.to_le_bytes().to_vec();
        null.extend_from_slice(&ip);
        let p = decode(LinkType::Null, &null);
        assert_eq!(p.l2_len, 4);
        assert!(matches!(p.transport, Transport::Udp(_)));
    }

    #[test]
    fn truncated_layers_stop_decoding() {
        let ip = ipv4(ipproto::TCP, &[0, 1, 0, 2]);
        let p = decode(LinkType::Raw, &ip);
        assert!(matches!(p.network, Network::Ipv4(_)));
        assert_eq!(p.transport, Transport::Other(ipproto::TCP));
        let p = decode(LinkType::Ethernet, &[1, 2, 3]);
        assert!(p.ethernet.is_none());
        assert_eq!(p.network, Network::None);
    }

    #[test]
    fn qinq_stacks_vlan_ids() {
        let mut inner = 20u16.to_be_bytes().to_vec();
        inner.extend_from_slice(&ethertype::IPV4.to_be_bytes());
        inner.extend_from_slice(&ipv4(ipproto::ICMP, &[8, 0, 0, 0, 0, 1, 0, 1]));
        let mut outer = 0x2005u16.to_be_bytes().to_vec(); // PCP 1, VID 5
        outer.extend_from_slice(&ethertype::VLAN.to_be_bytes());
        outer.extend_from_slice(&inner);
        let frame = eth(ethertype::QINQ, &outer);
        let p = decode(LinkType::Ethernet, &frame);
        assert_eq!(p.vlan_count, 2);
        assert_eq!(p.vlan_id, (5 << 12) | 20);
        assert!(matches!(p.transport, Transport::Icmpv4(Icmp { id: 1, .. })));
    }
}
