//! The compact per-flow record and its identity (key, direction, tracking IDs, UUID).

use std::fmt;
use std::hash::BuildHasher;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use super::xxh64::xxh64;
use super::LayerKeyMode;
use crate::packet::{
    ethertype, ipproto, tcp_flags, MacAddr, Network, Packet, Timestamp, Transport,
};

/// Who captured a flow: Skydive's `NodeTID` (topology ID of the captured interface) and `CaptureID`
/// (the capture's UUID). Shared by every flow of a table.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CaptureIdentity {
    pub node_tid: String,
    pub capture_id: String,
}

/// Which way a packet went relative to the flow's A→B (A = sender of the first packet).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    AB,
    BA,
}

/// Why a flow ended (Skydive's `FinishType`; JSON carries the number).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum FinishType {
    /// Idle/expire timeout, eviction, or capture stop.
    Timeout = 1,
    /// A TCP FIN was seen (either direction).
    TcpFin = 2,
    /// A TCP RST was seen (either direction).
    TcpRst = 3,
}

impl FinishType {
    /// Skydive's enum name: `TIMEOUT`, `TCP_FIN`, `TCP_RST`.
    pub fn name(self) -> &'static str {
        match self {
            FinishType::Timeout => "TIMEOUT",
            FinishType::TcpFin => "TCP_FIN",
            FinishType::TcpRst => "TCP_RST",
        }
    }
    fn from_u8(v: u8) -> Option<Self> {
        match v {
            1 => Some(FinishType::Timeout),
            2 => Some(FinishType::TcpFin),
            3 => Some(FinishType::TcpRst),
            _ => None,
        }
    }
}

/// Skydive's `ICMP.Type` (request and reply of one exchange share a kind, hence a flow).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IcmpKind {
    Echo,
    DestinationUnreachable,
    Neighbor,
    AddressMask,
    Info,
    ParameterProblem,
    Redirect,
    Router,
    SourceQuench,
    TimeExceeded,
    Timestamp,
    PacketTooBig,
    Unknown,
}

impl IcmpKind {
    pub fn from_type(v6: bool, icmp_type: u8) -> Self {
        use IcmpKind::*;
        if v6 {
            match icmp_type {
                128 | 129 => Echo,
                1 => DestinationUnreachable,
                2 => PacketTooBig,
                3 => TimeExceeded,
                4 => ParameterProblem,
                133 | 134 => Router,
                135 | 136 => Neighbor,
                137 => Redirect,
                _ => Unknown,
            }
        } else {
            match icmp_type {
                0 | 8 => Echo,
                3 => DestinationUnreachable,
                4 => SourceQuench,
                5 => Redirect,
                9 | 10 => Router,
                11 => TimeExceeded,
                12 => ParameterProblem,
                13 | 14 => Timestamp,
                15 | 16 => Info,
                17 | 18 => AddressMask,
                _ => Unknown,
            }
        }
    }

    /// Skydive's enum name (`ECHO`, `DESTINATION_UNREACHABLE`, ...).
    pub fn name(self) -> &'static str {
        use IcmpKind::*;
        match self {
            Echo => "ECHO",
            DestinationUnreachable => "DESTINATION_UNREACHABLE",
            Neighbor => "NEIGHBOR",
            AddressMask => "ADDRESS_MASK",
            Info => "INFO",
            ParameterProblem => "PARAMETER_PROBLEM",
            Redirect => "REDIRECT",
            Router => "ROUTER",
            SourceQuench => "SOURCE_QUENCH",
            TimeExceeded => "TIME_EXCEEDED",
            Timestamp => "TIMESTAMP",
            PacketTooBig => "PACKET_TOO_BIG",
            Unknown => "UNKNOWN",
        }
    }
}

/// Application protocols recognised by well-known port (as gopacket's UDP/TCP port decoders do).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum App {
    None = 0,
    Dns,
    DhcpV4,
    DhcpV6,
    Ntp,
    Vxlan,
    Geneve,
    SFlow,
}

impl App {
    fn from_ports(proto: u8, a: u16, b: u16) -> App {
        let by_port = |p: u16| match (proto, p) {
            (ipproto::UDP | ipproto::TCP, 53) | (ipproto::UDP, 5353) => App::Dns,
            (ipproto::UDP, 67 | 68) => App::DhcpV4,
            (ipproto::UDP, 546 | 547) => App::DhcpV6,
            (ipproto::UDP, 123) => App::Ntp,
            (ipproto::UDP, 4789) => App::Vxlan,
            (ipproto::UDP, 6081) => App::Geneve,
            (ipproto::UDP, 6343) => App::SFlow,
            _ => App::None,
        };
        // gopacket tries the destination port first, then the source port.
        match by_port(b) {
            App::None => by_port(a),
            app => app,
        }
    }
    fn from_u8(v: u8) -> App {
        match v {
            1 => App::Dns,
            2 => App::DhcpV4,
            3 => App::DhcpV6,
            4 => App::Ntp,
            5 => App::Vxlan,
            6 => App::Geneve,
            7 => App::SFlow,
            _ => App::None,
        }
    }
    fn name(self) -> Option<&'static str> {
        match self {
            App::None => None,
            App::Dns => Some("DNS"),
            App::DhcpV4 => Some("DHCPv4"),
            App::DhcpV6 => Some("DHCPv6"),
            App::Ntp => Some("NTP"),
            App::Vxlan => Some("VXLAN"),
            App::Geneve => Some("Geneve"),
            App::SFlow => Some("SFlow"),
        }
    }
}

// `FlowKey::layers` bits.
const L_ETHERNET: u8 = 0x01;
const L_VLAN_SHIFT: u8 = 1; // 3 bits: tag count, saturating at 7
const L_VLAN_MASK: u8 = 0x0e;
const L_FRAGMENT: u8 = 0x10;
const L_TRANSPORT: u8 = 0x20; // ports / ICMP fields are meaningful
const L_NETWORK: u8 = 0x40; // an IP (or ARP) header was decoded

/// One side of a packet, as the key sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Endpoint {
    pub mac: [u8; 6],
    pub ip: [u8; 16],
    pub port: u16,
}

/// The identity of a packet's flow, in the packet's own direction (src → dst).
#[derive(Clone, Copy, Debug)]
pub(crate) struct PacketKey {
    pub src: Endpoint,
    pub dst: Endpoint,
    /// ICMP: `type << 8 | code` of this packet; otherwise 0.
    pub icmp_type_code: u16,
    pub icmp_id: u16,
    pub link_id: u32,
    pub ethertype: u16,
    pub ip_proto: u8,
    pub layers: u8,
    pub app: u8,
    /// Whether MAC addresses take part in the key (L2 mode, or no network layer).
    pub use_mac: bool,
}

fn v4_mapped(a: Ipv4Addr) -> [u8; 16] {
    a.to_ipv6_mapped().octets()
}

impl PacketKey {
    /// `None` for frames with neither a link nor a network layer the table can key on.
    pub fn from_packet(p: &Packet<'_>, mode: LayerKeyMode) -> Option<PacketKey> {
        let mut layers = 0u8;
        let (mut src, mut dst) = (
            Endpoint {
                mac: [0; 6],
                ip: [0; 16],
                port: 0,
            },
            Endpoint {
                mac: [0; 6],
                ip: [0; 16],
                port: 0,
            },
        );
        if let Some(eth) = p.ethernet {
            layers |= L_ETHERNET | (p.vlan_count.min(7) << L_VLAN_SHIFT);
            src.mac = eth.src.0;
            dst.mac = eth.dst.0;
        }
        let mut has_ip = false;
        let mut ip_proto = 0u8;
        match p.network {
            Network::Ipv4(ip) => {
                layers |= L_NETWORK;
                has_ip = true;
                ip_proto = ip.protocol;
                src.ip = v4_mapped(ip.src);
                dst.ip = v4_mapped(ip.dst);
            }
            Network::Ipv6(ip) => {
                layers |= L_NETWORK;
                has_ip = true;
                ip_proto = ip.next_header;
                src.ip = ip.src.octets();
                dst.ip = ip.dst.octets();
            }
            Network::Arp(_) => layers |= L_NETWORK,
            Network::None => {}
        }
        if p.ethernet.is_none() && !has_ip {
            return None;
        }
        let (mut icmp_type_code, mut icmp_id) = (0u16, 0u16);
        match p.transport {
            Transport::Tcp(t) => {
                layers |= L_TRANSPORT;
                src.port = t.src_port;
                dst.port = t.dst_port;
            }
            Transport::Udp(u) | Transport::Sctp(u) => {
                layers |= L_TRANSPORT;
                src.port = u.src_port;
                dst.port = u.dst_port;
            }
            Transport::Icmpv4(i) | Transport::Icmpv6(i) => {
                layers |= L_TRANSPORT;
                icmp_type_code = u16::from(i.icmp_type) << 8 | u16::from(i.code);
                icmp_id = i.id;
            }
            Transport::Fragment => layers |= L_FRAGMENT,
            Transport::Other(_) | Transport::None => {}
        }
        let app = if layers & L_TRANSPORT != 0 {
            App::from_ports(ip_proto, src.port, dst.port) as u8
        } else {
            App::None as u8
        };
        Some(PacketKey {
            src,
            dst,
            icmp_type_code,
            icmp_id,
            link_id: p.vlan_id,
            ethertype: p.ethertype,
            ip_proto,
            layers,
            app,
            use_mac: mode == LayerKeyMode::L2 || !has_ip,
        })
    }

    fn is_icmp(&self) -> bool {
        self.layers & L_TRANSPORT != 0 && matches!(self.ip_proto, ipproto::ICMP | ipproto::ICMPV6)
    }

    /// The ICMP fields that identify a flow: kind (not raw type, so echo request and reply match), code,
    /// identifier.
    fn icmp_identity(&self) -> u32 {
        if !self.is_icmp() {
            return 0;
        }
        let kind = IcmpKind::from_type(
            self.ip_proto == ipproto::ICMPV6,
            (self.icmp_type_code >> 8) as u8,
        );
        (kind as u32) << 24 | u32::from(self.icmp_type_code & 0xff) << 16 | u32::from(self.icmp_id)
    }

    fn endpoint_words(&self, e: &Endpoint) -> (u64, u64, u64) {
        let hi = u64::from_be_bytes(e.ip[..8].try_into().unwrap_or([0; 8]));
        let lo = u64::from_be_bytes(e.ip[8..].try_into().unwrap_or([0; 8]));
        let mut mp = u64::from(e.port);
        if self.use_mac {
            let m = e.mac;
            mp |= u64::from_be_bytes([0, 0, m[0], m[1], m[2], m[3], m[4], m[5]]) << 16;
        }
        (hi, lo, mp)
    }

    /// Direction-independent hash for the table index.
    pub fn table_hash<S: BuildHasher>(&self, hasher: &S) -> u64 {
        let a = self.endpoint_words(&self.src);
        let b = self.endpoint_words(&self.dst);
        let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
        let common = u64::from(self.link_id) << 32
            | u64::from(self.ethertype) << 16
            | u64::from(self.ip_proto) << 8
            | u64::from(self.layers);
        hasher.hash_one((lo, hi, common, self.icmp_identity()))
    }

    /// Whether this packet belongs to `key`'s flow, and in which direction.
    pub fn direction_in(&self, key: &FlowKey) -> Option<Direction> {
        if key.link_id != self.link_id
            || key.ethertype != self.ethertype
            || key.ip_proto != self.ip_proto
            || key.layers != self.layers
        {
            return None;
        }
        let flow = key.as_packet_key(self.use_mac);
        if flow.icmp_identity() != self.icmp_identity() {
            return None;
        }
        let same = |x: &Endpoint, y: &Endpoint| {
            x.ip == y.ip && x.port == y.port && (!self.use_mac || x.mac == y.mac)
        };
        if same(&self.src, &flow.src) && same(&self.dst, &flow.dst) {
            Some(Direction::AB)
        } else if same(&self.src, &flow.dst) && same(&self.dst, &flow.src) {
            Some(Direction::BA)
        } else {
            None
        }
    }
}

/// The stored key: endpoints in A→B order plus the layer summary. 57 bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct FlowKey {
    pub mac_a: [u8; 6],
    pub mac_b: [u8; 6],
    pub ip_a: [u8; 16],
    pub ip_b: [u8; 16],
    /// Transport ports, or for ICMP: A = `type << 8 | code` of the first packet, B = identifier.
    pub port_a: u16,
    pub port_b: u16,
    pub link_id: u32,
    pub ethertype: u16,
    pub ip_proto: u8,
    pub layers: u8,
    pub app: u8,
}

impl FlowKey {
    fn from_packet_key(k: &PacketKey) -> FlowKey {
        let icmp = k.is_icmp();
        FlowKey {
            mac_a: k.src.mac,
            mac_b: k.dst.mac,
            ip_a: k.src.ip,
            ip_b: k.dst.ip,
            port_a: if icmp { k.icmp_type_code } else { k.src.port },
            port_b: if icmp { k.icmp_id } else { k.dst.port },
            link_id: k.link_id,
            ethertype: k.ethertype,
            ip_proto: k.ip_proto,
            layers: k.layers,
            app: k.app,
        }
    }

    pub fn as_packet_key(&self, use_mac: bool) -> PacketKey {
        let icmp = self.layers & L_TRANSPORT != 0
            && matches!(self.ip_proto, ipproto::ICMP | ipproto::ICMPV6);
        let (pa, pb, tc, id) = if icmp {
            (0, 0, self.port_a, self.port_b)
        } else {
            (self.port_a, self.port_b, 0, 0)
        };
        PacketKey {
            src: Endpoint {
                mac: self.mac_a,
                ip: self.ip_a,
                port: pa,
            },
            dst: Endpoint {
                mac: self.mac_b,
                ip: self.ip_b,
                port: pb,
            },
            icmp_type_code: tc,
            icmp_id: id,
            link_id: self.link_id,
            ethertype: self.ethertype,
            ip_proto: self.ip_proto,
            layers: self.layers,
            app: self.app,
            use_mac,
        }
    }

    fn has_ethernet(&self) -> bool {
        self.layers & L_ETHERNET != 0
    }
    fn has_ip(&self) -> bool {
        self.layers & L_NETWORK != 0 && matches!(self.ethertype, ethertype::IPV4 | ethertype::IPV6)
    }
    fn is_icmp(&self) -> bool {
        self.layers & L_TRANSPORT != 0 && matches!(self.ip_proto, ipproto::ICMP | ipproto::ICMPV6)
    }

    /// Canonical (direction-independent) bytes of the L3+ identity; returns the used length.
    fn l3_bytes(&self, out: &mut [u8; 64]) -> usize {
        let k = self.as_packet_key(false);
        let a = (k.src.ip, k.src.port);
        let b = (k.dst.ip, k.dst.port);
        let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
        out[0..16].copy_from_slice(&lo.0);
        out[16..18].copy_from_slice(&lo.1.to_be_bytes());
        out[18..34].copy_from_slice(&hi.0);
        out[34..36].copy_from_slice(&hi.1.to_be_bytes());
        out[36] = self.ip_proto;
        out[37..41].copy_from_slice(&k.icmp_identity().to_be_bytes());
        out[41..43].copy_from_slice(&self.ethertype.to_be_bytes());
        out[43] = self.layers & (L_FRAGMENT | L_TRANSPORT | L_NETWORK);
        44
    }
}

const NIL: u32 = u32::MAX;

// `Flow::state` bits.
const S_RTT_PENDING: u8 = 0x01;
const S_KEY_L2: u8 = 0x02;
pub(crate) const S_LIST_SHIFT: u8 = 2; // 2 bits: which expiry list the flow is on

/// One flow: a compact, allocation-free record (strings are produced on demand by the accessors, the
/// JSON serializer and [`Flow::field`]). About 176 bytes.
#[derive(Clone, Debug)]
pub struct Flow {
    pub(crate) key: FlowKey,
    identity: Arc<CaptureIdentity>,
    /// First packet, ns since the epoch.
    start_ns: u64,
    // Milliseconds after `start_ms()`.
    ab_last: u32,
    ba_first: u32,
    ba_last: u32,
    /// Start of the current update window (LastUpdateMetric), ms after `start_ms()`.
    window_start: u32,
    ab_packets: u64,
    ab_bytes: u64,
    ba_packets: u64,
    ba_bytes: u64,
    // Since the last update (LastUpdateMetric + exporter deltas).
    w_ab_packets: u32,
    w_ba_packets: u32,
    w_ab_bytes: u64,
    w_ba_bytes: u64,
    w_ab_ip_bytes: u64,
    w_ba_ip_bytes: u64,
    rtt_us: u32,
    ab_tcp_flags: u8,
    ba_tcp_flags: u8,
    tos: u8,
    finish: u8,
    /// Frames of this flow the caller kept raw (`RawPacketsCaptured`).
    raw_captured: u8,
    pub(crate) state: u8,
}

/// Skydive's `Metric`/`LastUpdateMetric`: per-direction packets and frame bytes, `Start`/`Last` in ms,
/// `RTT` in ns (0 = unknown).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Metric {
    #[serde(rename = "ABPackets")]
    pub ab_packets: u64,
    #[serde(rename = "ABBytes")]
    pub ab_bytes: u64,
    #[serde(rename = "BAPackets")]
    pub ba_packets: u64,
    #[serde(rename = "BABytes")]
    pub ba_bytes: u64,
    pub start: u64,
    pub last: u64,
    #[serde(rename = "RTT", skip_serializing_if = "is_zero")]
    pub rtt: u64,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

/// Per-direction counters for exporters (NetFlow/IPFIX records are unidirectional).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DirectionStats {
    /// Totals since the flow started.
    pub packets: u64,
    /// Frame bytes (original wire length) since the flow started.
    pub bytes: u64,
    /// Packets since the last update ([`FlowTable::poll_updates`](super::FlowTable::poll_updates)).
    pub delta_packets: u64,
    /// Frame bytes since the last update.
    pub delta_bytes: u64,
    /// IP-layer bytes (IP total length: no link header, no Ethernet padding) since the last update.
    pub delta_ip_bytes: u64,
    /// First and last packet in this direction (meaningless when `packets == 0`).
    pub first: Timestamp,
    pub last: Timestamp,
    /// OR of the TCP flags of every packet in this direction.
    pub tcp_flags: u8,
}

/// Skydive's `Link`: MACs of the first packet's sender (A) and receiver (B), `ID` = VLAN stack.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinkLayer {
    pub a: MacAddr,
    pub b: MacAddr,
    pub id: u32,
}

/// Skydive's `Network` (`Protocol` IPV4 or IPV6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NetworkLayer {
    pub a: IpAddr,
    pub b: IpAddr,
}

impl NetworkLayer {
    pub fn protocol(&self) -> &'static str {
        if self.a.is_ipv4() {
            "IPV4"
        } else {
            "IPV6"
        }
    }
}

/// Skydive's `Transport`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TransportLayer {
    /// IP protocol number (6, 17 or 132).
    pub protocol: u8,
    pub a: u16,
    pub b: u16,
}

impl TransportLayer {
    /// `TCP`, `UDP` or `SCTP`.
    pub fn protocol_name(&self) -> &'static str {
        match self.protocol {
            ipproto::TCP => "TCP",
            ipproto::UDP => "UDP",
            _ => "SCTP",
        }
    }
}

/// Skydive's `ICMP`, plus the raw type of the first packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IcmpLayer {
    pub v6: bool,
    pub kind: IcmpKind,
    pub first_type: u8,
    pub code: u8,
    pub id: u16,
}

fn ip_from(bytes: [u8; 16], v4: bool) -> IpAddr {
    let v6 = Ipv6Addr::from(bytes);
    match (v4, v6.to_ipv4_mapped()) {
        (true, Some(a)) => IpAddr::V4(a),
        _ => IpAddr::V6(v6),
    }
}

fn ms_offset(now: Timestamp, start_ms: u64) -> u32 {
    u32::try_from(now.as_millis().saturating_sub(start_ms)).unwrap_or(u32::MAX)
}

impl Flow {
    pub(crate) fn new(
        now: Timestamp,
        pk: &PacketKey,
        mode: LayerKeyMode,
        identity: Arc<CaptureIdentity>,
        p: &Packet<'_>,
    ) -> Flow {
        let mut state = 0u8;
        if mode == LayerKeyMode::L2 {
            state |= S_KEY_L2;
        }
        let rtt_start = match p.transport {
            Transport::Tcp(t) => t.flags & (tcp_flags::SYN | tcp_flags::ACK) == tcp_flags::SYN,
            Transport::Icmpv4(i) => i.icmp_type == 8,
            Transport::Icmpv6(i) => i.icmp_type == 128,
            _ => false,
        };
        if rtt_start {
            state |= S_RTT_PENDING;
        }
        let tos = match p.network {
            Network::Ipv4(ip) => ip.tos,
            Network::Ipv6(ip) => ip.traffic_class,
            _ => 0,
        };
        Flow {
            key: FlowKey::from_packet_key(pk),
            identity,
            start_ns: now.as_nanos(),
            ab_last: 0,
            ba_first: 0,
            ba_last: 0,
            window_start: 0,
            ab_packets: 0,
            ab_bytes: 0,
            ba_packets: 0,
            ba_bytes: 0,
            w_ab_packets: 0,
            w_ba_packets: 0,
            w_ab_bytes: 0,
            w_ba_bytes: 0,
            w_ab_ip_bytes: 0,
            w_ba_ip_bytes: 0,
            rtt_us: 0,
            ab_tcp_flags: 0,
            ba_tcp_flags: 0,
            tos,
            finish: 0,
            raw_captured: 0,
            state,
        }
    }

    /// Account one packet standing for `weight` packets of its size (1 for a captured
    /// packet, the sampling rate for a sampled one). Returns true if this packet finished the
    /// flow (first FIN/RST).
    pub(crate) fn update(
        &mut self,
        now: Timestamp,
        dir: Direction,
        p: &Packet<'_>,
        frame_len: u32,
        weight: u32,
    ) -> bool {
        let off = ms_offset(now, self.start_ms());
        let n = u64::from(weight);
        let bytes = u64::from(frame_len) * n;
        let l2_room = frame_len.saturating_sub(u32::from(p.l2_len));
        let ip_bytes = u64::from(p.ip_len().map_or(l2_room, |l| l.min(l2_room))) * n;
        let flags = p.tcp_flags();
        match dir {
            Direction::AB => {
                self.ab_packets += n;
                self.ab_bytes += bytes;
                self.w_ab_packets = self.w_ab_packets.saturating_add(weight);
                self.w_ab_bytes += bytes;
                self.w_ab_ip_bytes += ip_bytes;
                self.ab_last = self.ab_last.max(off);
                self.ab_tcp_flags |= flags;
            }
            Direction::BA => {
                if self.ba_packets == 0 {
                    self.ba_first = off;
                }
                self.ba_packets += n;
                self.ba_bytes += bytes;
                self.w_ba_packets = self.w_ba_packets.saturating_add(weight);
                self.w_ba_bytes += bytes;
                self.w_ba_ip_bytes += ip_bytes;
                self.ba_last = self.ba_last.max(off);
                self.ba_tcp_flags |= flags;
                if self.state & S_RTT_PENDING != 0 {
                    let reply = match p.transport {
                        Transport::Tcp(t) => {
                            t.flags & (tcp_flags::SYN | tcp_flags::ACK)
                                == tcp_flags::SYN | tcp_flags::ACK
                        }
                        Transport::Icmpv4(i) => i.icmp_type == 0,
                        Transport::Icmpv6(i) => i.icmp_type == 129,
                        _ => false,
                    };
                    if reply {
                        self.state &= !S_RTT_PENDING;
                        let us = now.as_nanos().saturating_sub(self.start_ns) / 1_000;
                        self.rtt_us = u32::try_from(us).unwrap_or(u32::MAX).max(1);
                    }
                }
            }
        }
        if flags & tcp_flags::RST != 0 && self.finish != FinishType::TcpRst as u8 {
            let was = self.finish;
            self.finish = FinishType::TcpRst as u8;
            return was == 0;
        }
        if flags & tcp_flags::FIN != 0 && self.finish == 0 {
            self.finish = FinishType::TcpFin as u8;
            return true;
        }
        false
    }

    /// Close the current update window at `now`.
    pub(crate) fn reset_window(&mut self, now: Timestamp) {
        self.w_ab_packets = 0;
        self.w_ba_packets = 0;
        self.w_ab_bytes = 0;
        self.w_ba_bytes = 0;
        self.w_ab_ip_bytes = 0;
        self.w_ba_ip_bytes = 0;
        self.window_start = ms_offset(now, self.start_ms());
    }

    pub(crate) fn window_packets(&self) -> u64 {
        u64::from(self.w_ab_packets) + u64::from(self.w_ba_packets)
    }

    pub(crate) fn mark_timeout(&mut self) {
        if self.finish == 0 {
            self.finish = FinishType::Timeout as u8;
        }
    }

    /// Whether ARP/DNS-style short application timeout applies.
    pub(crate) fn is_short_lived(&self) -> bool {
        App::from_u8(self.key.app) == App::Dns
            || (self.key.ethertype == ethertype::ARP && self.key.layers & L_NETWORK != 0)
    }

    // ---- identity ----

    /// First packet time.
    pub fn start(&self) -> Timestamp {
        Timestamp::from_nanos(self.start_ns)
    }
    /// Skydive's `Start` (ms since the epoch).
    pub fn start_ms(&self) -> u64 {
        self.start_ns / 1_000_000
    }
    /// Skydive's `Last` (ms since the epoch): the latest packet in either direction.
    pub fn last_ms(&self) -> u64 {
        self.start_ms() + u64::from(self.ab_last.max(self.ba_last))
    }
    /// The latest packet, at millisecond resolution.
    pub fn last(&self) -> Timestamp {
        Timestamp::from_millis(self.last_ms()).max(self.start())
    }

    /// `TrackingID` as a number: the same on every capture point that sees this traffic (hash of the
    /// MAC pair, when the frames have one, and the L3+ identity; neither capture identity nor VLAN).
    pub fn tracking_id(&self) -> u64 {
        let mut buf = [0u8; 64];
        let n = self.key.l3_bytes(&mut buf);
        if !self.key.has_ethernet() {
            return xxh64(&buf[..n], 0);
        }
        let mut l2 = [0u8; 76];
        let (a, b) = (self.key.mac_a, self.key.mac_b);
        let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
        l2[0..6].copy_from_slice(&lo);
        l2[6..12].copy_from_slice(&hi);
        l2[12..12 + n].copy_from_slice(&buf[..n]);
        xxh64(&l2[..12 + n], 0)
    }

    /// `L3TrackingID` as a number (IP flows only): hash of the addresses, ports/ICMP identity and
    /// protocol, so it also matches across routed hops and tagged/untagged capture points.
    pub fn l3_tracking_id(&self) -> Option<u64> {
        if !self.key.has_ip() {
            return None;
        }
        let mut buf = [0u8; 64];
        let n = self.key.l3_bytes(&mut buf);
        Some(xxh64(&buf[..n], 0))
    }

    /// `UUID` as a number: unique per capture point (hash of the key, the VLAN stack, the start time,
    /// `NodeTID` and `CaptureID`).
    pub fn uuid(&self) -> u64 {
        let seed = if self.state & S_KEY_L2 != 0 || !self.key.has_ip() {
            self.tracking_id()
        } else {
            self.l3_tracking_id().unwrap_or(0)
        };
        let mut buf = [0u8; 12];
        buf[..8].copy_from_slice(&self.start_ns.to_be_bytes());
        buf[8..].copy_from_slice(&self.key.link_id.to_be_bytes());
        let id = &self.identity;
        let h = xxh64(&buf, seed);
        let h = xxh64(id.node_tid.as_bytes(), h);
        xxh64(id.capture_id.as_bytes(), h)
    }

    pub fn node_tid(&self) -> &str {
        &self.identity.node_tid
    }

    pub(crate) fn set_identity(&mut self, identity: Arc<CaptureIdentity>) {
        self.identity = identity;
    }
    pub fn capture_id(&self) -> &str {
        &self.identity.capture_id
    }

    // ---- layers ----

    pub fn link(&self) -> Option<LinkLayer> {
        self.key.has_ethernet().then_some(LinkLayer {
            a: MacAddr(self.key.mac_a),
            b: MacAddr(self.key.mac_b),
            id: self.key.link_id,
        })
    }

    pub fn network(&self) -> Option<NetworkLayer> {
        let v4 = self.key.ethertype == ethertype::IPV4;
        self.key.has_ip().then(|| NetworkLayer {
            a: ip_from(self.key.ip_a, v4),
            b: ip_from(self.key.ip_b, v4),
        })
    }

    pub fn transport(&self) -> Option<TransportLayer> {
        let decoded = self.key.layers & L_TRANSPORT != 0;
        (decoded
            && matches!(
                self.key.ip_proto,
                ipproto::TCP | ipproto::UDP | ipproto::SCTP
            ))
        .then_some(TransportLayer {
            protocol: self.key.ip_proto,
            a: self.key.port_a,
            b: self.key.port_b,
        })
    }

    pub fn icmp(&self) -> Option<IcmpLayer> {
        self.key.is_icmp().then(|| {
            let v6 = self.key.ip_proto == ipproto::ICMPV6;
            let first_type = (self.key.port_a >> 8) as u8;
            IcmpLayer {
                v6,
                kind: IcmpKind::from_type(v6, first_type),
                first_type,
                code: self.key.port_a as u8,
                id: self.key.port_b,
            }
        })
    }

    /// IP protocol number (0 for non-IP flows).
    pub fn ip_protocol(&self) -> u8 {
        self.key.ip_proto
    }

    /// IPv4 TOS / IPv6 traffic class of the first packet.
    pub fn tos(&self) -> u8 {
        self.tos
    }

    /// `LayersPath`, e.g. `Ethernet/Dot1Q/IPv4/TCP` (gopacket layer names; cooked/NULL link headers are
    /// left out as Skydive does).
    pub fn layers_path(&self) -> LayersPath<'_> {
        LayersPath(self)
    }

    /// `Application`: the last element of `LayersPath`.
    pub fn application(&self) -> &'static str {
        let mut last = "";
        self.for_each_layer(|l| last = l);
        last
    }

    fn for_each_layer(&self, mut f: impl FnMut(&'static str)) {
        let k = &self.key;
        if k.has_ethernet() {
            f("Ethernet");
            for _ in 0..((k.layers & L_VLAN_MASK) >> L_VLAN_SHIFT) {
                f("Dot1Q");
            }
        }
        let net = k.layers & L_NETWORK != 0;
        match k.ethertype {
            ethertype::IPV4 if net => f("IPv4"),
            ethertype::IPV6 if net => f("IPv6"),
            ethertype::ARP if net => {
                f("ARP");
                return;
            }
            ethertype::LLDP => {
                f("LinkLayerDiscovery");
                return;
            }
            _ => return,
        }
        if k.layers & L_FRAGMENT != 0 {
            f("Fragment");
            return;
        }
        let decoded = k.layers & L_TRANSPORT != 0;
        let name = match k.ip_proto {
            ipproto::TCP if decoded => "TCP",
            ipproto::UDP if decoded => "UDP",
            ipproto::SCTP if decoded => "SCTP",
            ipproto::ICMP if decoded => "ICMPv4",
            ipproto::ICMPV6 if decoded => {
                f("ICMPv6");
                match k.port_a >> 8 {
                    128 | 129 => f("ICMPv6Echo"),
                    133 => f("ICMPv6RouterSolicitation"),
                    134 => f("ICMPv6RouterAdvertisement"),
                    135 => f("ICMPv6NeighborSolicitation"),
                    136 => f("ICMPv6NeighborAdvertisement"),
                    137 => f("ICMPv6Redirect"),
                    _ => {}
                }
                return;
            }
            ipproto::IGMP => "IGMP",
            ipproto::GRE => "GRE",
            ipproto::ESP => "IPSecESP",
            ipproto::AH => "IPSecAH",
            ipproto::OSPF => "OSPF",
            ipproto::VRRP => "VRRPv2",
            _ => return,
        };
        f(name);
        if let Some(app) = App::from_u8(k.app).name() {
            f(app);
        }
    }

    // ---- metrics ----

    /// Skydive's `Metric`: totals since the flow started.
    pub fn metric(&self) -> Metric {
        Metric {
            ab_packets: self.ab_packets,
            ab_bytes: self.ab_bytes,
            ba_packets: self.ba_packets,
            ba_bytes: self.ba_bytes,
            start: self.start_ms(),
            last: self.last_ms(),
            rtt: u64::from(self.rtt_us) * 1_000,
        }
    }

    /// Skydive's `LastUpdateMetric`: the counters of the current update window (in an update event: of
    /// the window that just closed). `Start` = window start (or flow start), `Last` = last packet in the
    /// window (window start if none).
    pub fn last_update_metric(&self) -> Metric {
        let window_start = self.start_ms() + u64::from(self.window_start);
        Metric {
            ab_packets: u64::from(self.w_ab_packets),
            ab_bytes: self.w_ab_bytes,
            ba_packets: u64::from(self.w_ba_packets),
            ba_bytes: self.w_ba_bytes,
            start: window_start,
            last: self.last_ms().max(window_start),
            rtt: 0,
        }
    }

    /// Per-direction counters, timestamps and TCP flags.
    pub fn direction(&self, dir: Direction) -> DirectionStats {
        let at =
            |off: u32| Timestamp::from_millis(self.start_ms() + u64::from(off)).max(self.start());
        match dir {
            Direction::AB => DirectionStats {
                packets: self.ab_packets,
                bytes: self.ab_bytes,
                delta_packets: u64::from(self.w_ab_packets),
                delta_bytes: self.w_ab_bytes,
                delta_ip_bytes: self.w_ab_ip_bytes,
                first: self.start(),
                last: at(self.ab_last),
                tcp_flags: self.ab_tcp_flags,
            },
            Direction::BA => DirectionStats {
                packets: self.ba_packets,
                bytes: self.ba_bytes,
                delta_packets: u64::from(self.w_ba_packets),
                delta_bytes: self.w_ba_bytes,
                delta_ip_bytes: self.w_ba_ip_bytes,
                first: at(self.ba_first),
                last: at(self.ba_last),
                tcp_flags: self.ba_tcp_flags,
            },
        }
    }

    pub fn finish_type(&self) -> Option<FinishType> {
        FinishType::from_u8(self.finish)
    }

    /// Skydive's `RawPacketsCaptured`: frames of this flow kept raw
    /// ([`FlowTable::process_keeping`](super::FlowTable::process_keeping)).
    pub fn raw_packets_captured(&self) -> u8 {
        self.raw_captured
    }

    pub(crate) fn count_raw_packet(&mut self) {
        self.raw_captured = self.raw_captured.saturating_add(1);
    }
}

/// `Display`s a flow's `LayersPath` without allocating.
pub struct LayersPath<'a>(&'a Flow);

impl fmt::Display for LayersPath<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut res = Ok(());
        let mut first = true;
        self.0.for_each_layer(|l| {
            if res.is_ok() {
                res = if first {
                    f.write_str(l)
                } else {
                    f.write_str("/").and_then(|()| f.write_str(l))
                };
                first = false;
            }
        });
        res
    }
}

/// Hex form of Skydive's 64-bit identifiers (`UUID`, `TrackingID`, `L3TrackingID`).
pub(crate) fn hex_id(v: u64) -> String {
    format!("{v:016x}")
}

pub(crate) const NIL_INDEX: u32 = NIL;
