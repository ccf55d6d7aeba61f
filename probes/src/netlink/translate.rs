//! Pure translation of rtnetlink messages into node metadata (Skydive §3.4).
//!
//! Nothing here does I/O or reads a clock: the caller passes `now` where a timestamp is
//! needed. The async probe reads sockets and feeds these functions; the registry applies
//! their output to the graph.

use std::collections::BTreeMap;
use std::net::IpAddr;

use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{
    InfoData, InfoGeneve, InfoGre, InfoGre6, InfoIpTunnel, InfoKind, InfoVlan, InfoVxlan,
    LinkAttribute, LinkFlags, LinkInfo, LinkLayerType, LinkMessage, State, Stats64,
};
use netlink_packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState,
};
use netlink_packet_route::route::{RouteAddress, RouteAttribute, RouteMessage};
use netlink_packet_route::AddressFamily;
use serde_json::{json, Map, Value};

/// Metadata keys set or removed by one source; `None` removes the key.
pub type Fields = Vec<(&'static str, Option<Value>)>;

/// What a link message says, split into node metadata and the facts edges are built from.
#[derive(Debug, Clone, PartialEq)]
pub struct LinkView {
    pub index: u32,
    pub name: String,
    /// Skydive `Type`: netlink kind, `device` without one.
    pub kind: String,
    /// For veths: the peer's ifindex, in the peer's namespace.
    pub peer_index: Option<u32>,
    /// `IFLA_LINK_NETNSID`: the namespace of the peer/parent, as an id local to this namespace.
    pub link_netnsid: Option<i32>,
    /// `IFLA_MASTER`.
    pub master: Option<u32>,
    /// `IFLA_LINK` for non-veth links (vlan parent, ...).
    pub parent: Option<u32>,
    /// Every netlink-owned key, in a fixed order; absent ones as `None`.
    pub fields: Fields,
    /// Interface counters, when the message carried them.
    pub stats: Option<Stats64>,
}

impl LinkView {
    /// The value the message gave one of [`LINK_KEYS`], if any.
    pub fn field(&self, key: &str) -> Option<&Value> {
        self.fields
            .iter()
            .find(|(k, _)| *k == key)
            .and_then(|(_, v)| v.as_ref())
    }

    /// The link's hardware address, `aa:bb:cc:dd:ee:ff`.
    pub fn mac(&self) -> Option<&str> {
        self.field("MAC").and_then(Value::as_str)
    }
}

/// Keys the address, neighbour and route messages own on an interface node (removed
/// when empty).
pub const DERIVED_KEYS: &[&str] = &["IPV4", "IPV6", "Neighbors", "FDB", "RoutingTables"];

/// Keys a link message owns on an interface node (set or removed on every update).
pub const LINK_KEYS: &[&str] = &[
    "Name",
    "Type",
    "IfIndex",
    "MAC",
    "MTU",
    "State",
    "LinkFlags",
    "Driver",
    "EncapType",
    "MasterIndex",
    "ParentIndex",
    "Vlan",
    "PeerIfIndex",
    "LinkNetNsID",
    "LocalIP",
    "RemoteIP",
    "VNI",
    "TunnelPort",
    "Group",
];

/// Whether a link message is about a network device (not a bridge-port `AF_BRIDGE`
/// notification, which must not create or delete interface nodes).
pub fn is_device_message(msg: &LinkMessage) -> bool {
    !matches!(msg.header.interface_family, AddressFamily::Bridge)
}

/// Translates a `RTM_NEWLINK` into a [`LinkView`].
pub fn link_view(msg: &LinkMessage) -> LinkView {
    let index = msg.header.index;
    let mut name = String::new();
    let mut kind: Option<String> = None;
    let mut mac = None;
    let mut mtu = None;
    let mut state = None;
    let mut link = None;
    let mut link_netnsid = None;
    let mut master = None;
    let mut vlan = None;
    let mut tunnel = Tunnel::default();
    let mut stats = None;
    for attr in &msg.attributes {
        match attr {
            LinkAttribute::IfName(n) => name = n.clone(),
            LinkAttribute::Address(a) if !a.is_empty() => mac = Some(format_mac(a)),
            LinkAttribute::Mtu(m) if *m != 0 => mtu = Some(*m),
            LinkAttribute::OperState(s) => state = Some(oper_state(s)),
            LinkAttribute::Link(l) => link = Some(*l),
            LinkAttribute::LinkNetNsId(id) => link_netnsid = Some(*id),
            LinkAttribute::Controller(m) if *m != 0 => master = Some(*m),
            LinkAttribute::Stats64(s) => stats = Some(*s),
            LinkAttribute::LinkInfo(infos) => {
                for info in infos {
                    match info {
                        LinkInfo::Kind(k) => kind = Some(kind_name(k)),
                        LinkInfo::Data(InfoData::Vlan(v)) => {
                            vlan = v.iter().find_map(|x| match x {
                                InfoVlan::Id(id) => Some(*id),
                                _ => None,
                            })
                        }
                        LinkInfo::Data(data) => tunnel = Tunnel::of(data),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    let kind = kind.unwrap_or_else(|| "device".to_owned());
    let is_veth = kind == "veth";
    let peer_index = link.filter(|l| is_veth && *l != 0);
    let parent = link.filter(|l| !is_veth && *l != 0 && *l != index);
    let driver = driver_for_kind(&kind);
    let fields: Fields = vec![
        ("Name", Some(Value::from(name.clone()))),
        ("Type", Some(Value::from(kind.clone()))),
        ("IfIndex", Some(Value::from(index))),
        ("MAC", mac.map(Value::from)),
        ("MTU", mtu.map(Value::from)),
        ("State", state.map(Value::from)),
        ("LinkFlags", Some(link_flags(msg.header.flags))),
        ("Driver", driver.map(Value::from)),
        (
            "EncapType",
            Some(Value::from(encap_type(msg.header.link_layer_type))),
        ),
        ("MasterIndex", master.map(Value::from)),
        ("ParentIndex", parent.map(Value::from)),
        ("Vlan", vlan.map(Value::from)),
        ("PeerIfIndex", peer_index.map(Value::from)),
        ("LinkNetNsID", link_netnsid.map(Value::from)),
        ("LocalIP", tunnel.local.map(|a| Value::from(a.to_string()))),
        (
            "RemoteIP",
            tunnel.remote.map(|a| Value::from(a.to_string())),
        ),
        ("VNI", tunnel.vni.map(Value::from)),
        ("TunnelPort", tunnel.port.map(Value::from)),
        ("Group", tunnel.group.map(|a| Value::from(a.to_string()))),
    ];
    LinkView {
        index,
        name,
        kind,
        peer_index,
        link_netnsid,
        master,
        parent,
        fields,
        stats,
    }
}

/// The endpoints of a VXLAN, GENEVE, GRE or IP-in-IP link (`IFLA_INFO_DATA`), as
/// Skydive's OVS probe names them on tunnel interfaces (`LocalIP`, `RemoteIP`), with
/// the VNI and UDP port of VXLAN and GENEVE and the multicast group of a VXLAN.
#[derive(Debug, Default, Clone, PartialEq)]
struct Tunnel {
    local: Option<IpAddr>,
    remote: Option<IpAddr>,
    vni: Option<u32>,
    port: Option<u16>,
    group: Option<IpAddr>,
}

impl Tunnel {
    fn of(data: &InfoData) -> Tunnel {
        let mut t = Tunnel::default();
        let set = |slot: &mut Option<IpAddr>, a: IpAddr| {
            if !a.is_unspecified() {
                *slot = Some(a);
            }
        };
        match data {
            InfoData::Vxlan(v) => {
                for x in v {
                    match x {
                        InfoVxlan::Id(id) => t.vni = Some(*id),
                        InfoVxlan::Port(p) => t.port = Some(*p),
                        InfoVxlan::Local(a) => set(&mut t.local, (*a).into()),
                        InfoVxlan::Local6(a) => set(&mut t.local, (*a).into()),
                        // IFLA_VXLAN_GROUP is the remote end, or a multicast group.
                        InfoVxlan::Group(a) => set(&mut t.remote, (*a).into()),
                        InfoVxlan::Group6(a) => set(&mut t.remote, (*a).into()),
                        _ => {}
                    }
                }
                if t.remote.is_some_and(|a| a.is_multicast()) {
                    t.group = t.remote.take();
                }
            }
            InfoData::Geneve(v) => {
                for x in v {
                    match x {
                        InfoGeneve::Id(id) => t.vni = Some(*id),
                        InfoGeneve::Port(p) => t.port = Some(*p),
                        InfoGeneve::Local(a) => set(&mut t.local, (*a).into()),
                        InfoGeneve::Local6(a) => set(&mut t.local, (*a).into()),
                        InfoGeneve::Remote(a) => set(&mut t.remote, (*a).into()),
                        InfoGeneve::Remote6(a) => set(&mut t.remote, (*a).into()),
                        _ => {}
                    }
                }
            }
            InfoData::GreTap(v) | InfoData::GreTun(v) | InfoData::ErSpan(v) => {
                for x in v {
                    match x {
                        InfoGre::Local(a) => set(&mut t.local, (*a).into()),
                        InfoGre::Remote(a) => set(&mut t.remote, (*a).into()),
                        _ => {}
                    }
                }
            }
            InfoData::GreTap6(v) | InfoData::GreTun6(v) | InfoData::Ip6ErSpan(v) => {
                for x in v {
                    match x {
                        InfoGre6::Local(a) => set(&mut t.local, (*a).into()),
                        InfoGre6::Remote(a) => set(&mut t.remote, (*a).into()),
                        _ => {}
                    }
                }
            }
            InfoData::IpTunnel(v) => {
                for x in v {
                    match x {
                        InfoIpTunnel::Local(a) => set(&mut t.local, *a),
                        InfoIpTunnel::Remote(a) => set(&mut t.remote, *a),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
        t
    }
}

/// Skydive's type name for a netlink kind (vishvananda/netlink `Type()`).
fn kind_name(kind: &InfoKind) -> String {
    match kind {
        InfoKind::Tun => "tuntap".to_owned(),
        other => other.to_string(),
    }
}

/// The ethtool driver name an interface of this kind reports (no ioctl needed for the
/// virtual kinds; `None` for physical devices, whose driver only ethtool knows).
pub fn driver_for_kind(kind: &str) -> Option<&'static str> {
    Some(match kind {
        "veth" => "veth",
        "bridge" => "bridge",
        "vlan" => "802.1Q VLAN Support",
        "vxlan" => "vxlan",
        "dummy" => "dummy",
        "bond" => "bonding",
        "tuntap" => "tun",
        "macvlan" => "macvlan",
        "ipvlan" => "ipvlan",
        "vrf" => "vrf",
        "geneve" => "geneve",
        "openvswitch" => "openvswitch",
        _ => return None,
    })
}

/// `aa:bb:cc:dd:ee:ff`.
pub fn format_mac(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 3);
    for (i, b) in bytes.iter().enumerate() {
        if i > 0 {
            s.push(':');
        }
        s.push_str(&format!("{b:02x}"));
    }
    s
}

fn oper_state(state: &State) -> String {
    match state {
        State::Unknown => "UNKNOWN".to_owned(),
        State::NotPresent => "NOTPRESENT".to_owned(),
        State::Down => "DOWN".to_owned(),
        State::LowerLayerDown => "LOWERLAYERDOWN".to_owned(),
        State::Testing => "TESTING".to_owned(),
        State::Dormant => "DORMANT".to_owned(),
        State::Up => "UP".to_owned(),
        other => format!("{other:?}").to_uppercase(),
    }
}

/// The subset of `IFF_*` flags Skydive reports, in its order.
fn link_flags(flags: LinkFlags) -> Value {
    let mut out = Vec::new();
    for (flag, name) in [
        (LinkFlags::Up, "UP"),
        (LinkFlags::Broadcast, "BROADCAST"),
        (LinkFlags::Loopback, "LOOPBACK"),
        (LinkFlags::Pointopoint, "POINTTOPOINT"),
        (LinkFlags::Multicast, "MULTICAST"),
    ] {
        if flags.contains(flag) {
            out.push(Value::from(name));
        }
    }
    Value::Array(out)
}

/// `EncapType` from the `ARPHRD_*` link type.
fn encap_type(t: LinkLayerType) -> String {
    match t {
        LinkLayerType::Ether => "ether".to_owned(),
        LinkLayerType::Loopback => "loopback".to_owned(),
        LinkLayerType::None => "none".to_owned(),
        LinkLayerType::Ipgre => "gre".to_owned(),
        LinkLayerType::Tunnel => "ipip".to_owned(),
        LinkLayerType::Tunnel6 => "tunnel6".to_owned(),
        LinkLayerType::Sit => "sit".to_owned(),
        LinkLayerType::Ip6gre => "ip6gre".to_owned(),
        LinkLayerType::Void => "void".to_owned(),
        other => format!("{other:?}").to_lowercase(),
    }
}

/// The counters of `Metric` (Skydive `InterfaceMetric`, zero values omitted), without
/// `Start`/`Last`.
pub fn metric_counters(s: &Stats64) -> Map<String, Value> {
    let mut m = Map::new();
    for (k, v) in [
        ("Collisions", s.collisions),
        ("Multicast", s.multicast),
        ("RxBytes", s.rx_bytes),
        ("RxCompressed", s.rx_compressed),
        ("RxCrcErrors", s.rx_crc_errors),
        ("RxDropped", s.rx_dropped),
        ("RxErrors", s.rx_errors),
        ("RxFifoErrors", s.rx_fifo_errors),
        ("RxFrameErrors", s.rx_frame_errors),
        ("RxLengthErrors", s.rx_length_errors),
        ("RxMissedErrors", s.rx_missed_errors),
        ("RxOverErrors", s.rx_over_errors),
        ("RxPackets", s.rx_packets),
        ("TxAbortedErrors", s.tx_aborted_errors),
        ("TxBytes", s.tx_bytes),
        ("TxCarrierErrors", s.tx_carrier_errors),
        ("TxCompressed", s.tx_compressed),
        ("TxDropped", s.tx_dropped),
        ("TxErrors", s.tx_errors),
        ("TxFifoErrors", s.tx_fifo_errors),
        ("TxHeartbeatErrors", s.tx_heartbeat_errors),
        ("TxPackets", s.tx_packets),
        ("TxWindowErrors", s.tx_window_errors),
    ] {
        if v != 0 {
            m.insert(k.to_owned(), Value::from(v));
        }
    }
    m
}

/// The next `Metric` and `LastUpdateMetric` given the previous `Metric` value of a node,
/// or `None` when the counters did not change (so an idle link's revision stays put).
pub fn next_metric(
    previous: Option<&Value>,
    stats: &Stats64,
    now_ms: i64,
) -> Option<(Value, Option<Value>)> {
    next_metric_of(previous, metric_counters(stats), now_ms)
}

/// [`next_metric`] from counters given by name (non-zero ones only, as
/// [`metric_counters`] gives them): the same `Metric`/`LastUpdateMetric` for counters
/// that come from elsewhere (sFlow counter samples).
pub fn next_metric_of(
    previous: Option<&Value>,
    counters: Map<String, Value>,
    now_ms: i64,
) -> Option<(Value, Option<Value>)> {
    let prev = previous.and_then(Value::as_object);
    let prev_counters: Map<String, Value> = prev
        .map(|p| {
            p.iter()
                .filter(|(k, _)| *k != "Start" && *k != "Last")
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        })
        .unwrap_or_default();
    if prev.is_some() && prev_counters == counters {
        return None;
    }
    let start = prev
        .and_then(|p| p.get("Start"))
        .and_then(Value::as_i64)
        .unwrap_or(now_ms);
    let mut metric = counters.clone();
    metric.insert("Start".into(), Value::from(start));
    metric.insert("Last".into(), Value::from(now_ms));
    let last_update = prev.map(|p| {
        let mut delta = Map::new();
        for (k, v) in &counters {
            let before = prev_counters.get(k).and_then(Value::as_u64).unwrap_or(0);
            let d = v.as_u64().unwrap_or(0).saturating_sub(before);
            if d != 0 {
                delta.insert(k.clone(), Value::from(d));
            }
        }
        let prev_last = p.get("Last").and_then(Value::as_i64).unwrap_or(start);
        delta.insert("Start".into(), Value::from(prev_last));
        delta.insert("Last".into(), Value::from(now_ms));
        Value::Object(delta)
    });
    Some((Value::Object(metric), last_update))
}

/// An interface address: `(ifindex, is_ipv6, "10.0.0.1/24")`.
pub fn address_cidr(msg: &AddressMessage) -> Option<(u32, bool, String)> {
    let mut address = None;
    let mut local = None;
    for attr in &msg.attributes {
        match attr {
            AddressAttribute::Address(a) => address = Some(*a),
            AddressAttribute::Local(a) => local = Some(*a),
            _ => {}
        }
    }
    // For IPv4 IFA_LOCAL is the interface's own address (IFA_ADDRESS is the peer on
    // point-to-point links); IPv6 only has IFA_ADDRESS.
    let ip: IpAddr = local.or(address)?;
    Some((
        msg.header.index,
        ip.is_ipv6(),
        format!("{ip}/{}", msg.header.prefix_len),
    ))
}

/// A neighbour entry (AF_INET/AF_INET6 only): `(ifindex, key, value)`; the key identifies
/// the entry for later deletion.
pub fn neighbour_entry(msg: &NeighbourMessage) -> Option<(u32, String, Value)> {
    if !matches!(
        msg.header.family,
        AddressFamily::Inet | AddressFamily::Inet6
    ) {
        return None;
    }
    let mut ip = None;
    let mut mac = None;
    let mut vlan = None;
    let mut vni = None;
    for attr in &msg.attributes {
        match attr {
            NeighbourAttribute::Destination(NeighbourAddress::Inet(a)) => ip = Some(a.to_string()),
            NeighbourAttribute::Destination(NeighbourAddress::Inet6(a)) => ip = Some(a.to_string()),
            NeighbourAttribute::LinkLayerAddress(a) => mac = Some(format_mac(a)),
            NeighbourAttribute::Vlan(v) => vlan = Some(*v),
            NeighbourAttribute::Vni(v) => vni = Some(*v),
            _ => {}
        }
    }
    let ip = ip?;
    let mut v = Map::new();
    v.insert("Flags".into(), neighbour_flags(msg.header.flags));
    if let Some(mac) = mac {
        v.insert("MAC".into(), Value::from(mac));
    }
    v.insert("IP".into(), Value::from(ip.clone()));
    v.insert("State".into(), neighbour_state(msg.header.state));
    if let Some(vlan) = vlan {
        v.insert("Vlan".into(), Value::from(vlan));
    }
    if let Some(vni) = vni {
        v.insert("VNI".into(), Value::from(vni));
    }
    v.insert("IfIndex".into(), Value::from(msg.header.ifindex));
    Some((msg.header.ifindex, ip, Value::Object(v)))
}

/// A bridge forwarding entry (`AF_BRIDGE` neighbour, as `bridge fdb show` lists them):
/// `(ifindex, key, value)` with the value shaped like a `Neighbors` entry without `IP`;
/// the key (MAC, VLAN, entry of the bridge or of the port itself) identifies it for
/// later deletion.
pub fn fdb_entry(msg: &NeighbourMessage) -> Option<(u32, String, Value)> {
    if msg.header.family != AddressFamily::Bridge {
        return None;
    }
    let mut mac = None;
    let mut vlan = None;
    let mut vni = None;
    let mut dst = None;
    let mut master = false;
    for attr in &msg.attributes {
        match attr {
            NeighbourAttribute::LinkLayerAddress(a) => mac = Some(format_mac(a)),
            NeighbourAttribute::Vlan(v) => vlan = Some(*v),
            NeighbourAttribute::Vni(v) => vni = Some(*v),
            NeighbourAttribute::Destination(NeighbourAddress::Inet(a)) => dst = Some(a.to_string()),
            NeighbourAttribute::Destination(NeighbourAddress::Inet6(a)) => {
                dst = Some(a.to_string())
            }
            NeighbourAttribute::Controller(_) => master = true,
            _ => {}
        }
    }
    let mac = mac?;
    // The bridge's own entries carry NDA_MASTER; the port's address lists NTF_SELF.
    let master = master || msg.header.flags.contains(NeighbourFlags::Controller);
    let key = format!(
        "{mac}/{}/{}/{}",
        vlan.unwrap_or(0),
        if master { "master" } else { "self" },
        dst.as_deref().unwrap_or("")
    );
    let mut flags = msg.header.flags;
    if master {
        flags |= NeighbourFlags::Controller;
    }
    let mut v = Map::new();
    v.insert("Flags".into(), neighbour_flags(flags));
    v.insert("MAC".into(), Value::from(mac));
    if let Some(dst) = dst {
        v.insert("IP".into(), Value::from(dst));
    }
    v.insert("State".into(), neighbour_state(msg.header.state));
    if let Some(vlan) = vlan {
        v.insert("Vlan".into(), Value::from(vlan));
    }
    if let Some(vni) = vni {
        v.insert("VNI".into(), Value::from(vni));
    }
    v.insert("IfIndex".into(), Value::from(msg.header.ifindex));
    Some((msg.header.ifindex, key, Value::Object(v)))
}

fn neighbour_flags(flags: NeighbourFlags) -> Value {
    let mut out = Vec::new();
    for (flag, name) in [
        (NeighbourFlags::Use, "NTF_USE"),
        (NeighbourFlags::Own, "NTF_SELF"),
        (NeighbourFlags::Controller, "NTF_MASTER"),
        (NeighbourFlags::Proxy, "NTF_PROXY"),
        (NeighbourFlags::ExtLearned, "NTF_EXT_LEARNED"),
        (NeighbourFlags::Offloaded, "NTF_OFFLOADED"),
        (NeighbourFlags::Sticky, "NTF_STICKY"),
        (NeighbourFlags::Router, "NTF_ROUTER"),
    ] {
        if flags.contains(flag) {
            out.push(Value::from(name));
        }
    }
    Value::Array(out)
}

fn neighbour_state(state: NeighbourState) -> Value {
    let name = match state {
        NeighbourState::Incomplete => "NUD_INCOMPLETE".to_owned(),
        NeighbourState::Reachable => "NUD_REACHABLE".to_owned(),
        NeighbourState::Stale => "NUD_STALE".to_owned(),
        NeighbourState::Delay => "NUD_DELAY".to_owned(),
        NeighbourState::Probe => "NUD_PROBE".to_owned(),
        NeighbourState::Failed => "NUD_FAILED".to_owned(),
        NeighbourState::Noarp => "NUD_NOARP".to_owned(),
        NeighbourState::Permanent => "NUD_PERMANENT".to_owned(),
        NeighbourState::None => "NUD_NONE".to_owned(),
        other => format!("NUD_{:#x}", u16::from(other)),
    };
    json!([name])
}

/// One route as Skydive lists it under `RoutingTables[].Routes`, attached to every
/// interface it leaves through.
#[derive(Debug, Clone, PartialEq)]
pub struct RouteView {
    pub table: u32,
    /// Identity of the route inside its table (prefix, metric, tos).
    pub key: String,
    pub src: Option<String>,
    /// Output interfaces (the `Oif` or every multipath next hop's).
    pub ifindexes: Vec<u32>,
    /// `{Protocol, Prefix, NextHops}`.
    pub value: Value,
}

pub fn route_view(msg: &RouteMessage) -> Option<RouteView> {
    let family = msg.header.address_family;
    if !matches!(family, AddressFamily::Inet | AddressFamily::Inet6) {
        return None;
    }
    let mut table = u32::from(msg.header.table);
    let mut dst = None;
    let mut gateway = None;
    let mut oif = None;
    let mut priority = 0u32;
    let mut src = None;
    let mut multipath = Vec::new();
    for attr in &msg.attributes {
        match attr {
            RouteAttribute::Table(t) => table = *t,
            RouteAttribute::Destination(a) => dst = route_address(a),
            RouteAttribute::Gateway(a) => gateway = route_address(a),
            RouteAttribute::Oif(i) => oif = Some(*i),
            RouteAttribute::Priority(p) => priority = *p,
            RouteAttribute::PrefSource(a) => src = route_address(a),
            RouteAttribute::MultiPath(hops) => {
                for hop in hops {
                    let gw = hop.attributes.iter().find_map(|a| match a {
                        RouteAttribute::Gateway(g) => route_address(g),
                        _ => None,
                    });
                    multipath.push((hop.interface_index, gw));
                }
            }
            _ => {}
        }
    }
    let unspecified = if family == AddressFamily::Inet6 {
        "::"
    } else {
        "0.0.0.0"
    };
    let prefix = format!(
        "{}/{}",
        dst.unwrap_or_else(|| unspecified.to_owned()),
        msg.header.destination_prefix_length
    );
    let hops: Vec<(u32, Option<String>)> = if multipath.is_empty() {
        vec![(oif.unwrap_or(0), gateway)]
    } else {
        multipath
    };
    let next_hops: Vec<Value> = hops
        .iter()
        .map(|(ifindex, ip)| {
            let mut h = Map::new();
            h.insert("Priority".into(), Value::from(priority));
            if let Some(ip) = ip {
                h.insert("IP".into(), Value::from(ip.clone()));
            }
            h.insert("IfIndex".into(), Value::from(*ifindex));
            Value::Object(h)
        })
        .collect();
    let ifindexes: Vec<u32> = hops.iter().map(|(i, _)| *i).filter(|i| *i != 0).collect();
    if ifindexes.is_empty() {
        return None;
    }
    Some(RouteView {
        table,
        key: format!("{prefix} {priority} {}", msg.header.tos),
        src,
        ifindexes,
        value: json!({
            "Protocol": u8::from(msg.header.protocol),
            "Prefix": prefix,
            "NextHops": next_hops,
        }),
    })
}

fn route_address(a: &RouteAddress) -> Option<String> {
    match a {
        RouteAddress::Inet(a) => Some(a.to_string()),
        RouteAddress::Inet6(a) => Some(a.to_string()),
        _ => None,
    }
}

/// An interface's routes: `(table, route key)` -> `(preferred source, route)`.
pub type InterfaceRoutes = BTreeMap<(u32, String), (Option<String>, Value)>;

/// `RoutingTables` for one interface from its routes.
pub fn routing_tables(routes: &InterfaceRoutes) -> Value {
    let mut tables: BTreeMap<u32, (Option<String>, Vec<Value>)> = BTreeMap::new();
    for ((table, _), (src, value)) in routes {
        let t = tables.entry(*table).or_default();
        if t.0.is_none() {
            t.0 = src.clone();
        }
        t.1.push(value.clone());
    }
    Value::Array(
        tables
            .into_iter()
            .map(|(id, (src, routes))| {
                let mut m = Map::new();
                m.insert("ID".into(), Value::from(id));
                if let Some(src) = src {
                    m.insert("Src".into(), Value::from(src));
                }
                m.insert("Routes".into(), Value::Array(routes));
                Value::Object(m)
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_packet_core::{NetlinkMessage, NetlinkPayload};
    use netlink_packet_route::link::InfoVeth;
    use netlink_packet_route::route::RouteProtocol;
    use netlink_packet_route::RouteNetlinkMessage;
    use std::net::Ipv4Addr;

    /// Serializes a message as the kernel sends it and parses it back, so the tests run
    /// on parsed messages.
    fn reparse(m: RouteNetlinkMessage) -> RouteNetlinkMessage {
        let mut nl = NetlinkMessage::from(m);
        nl.finalize();
        let mut buf = vec![0u8; nl.header.length as usize];
        nl.serialize(&mut buf);
        match NetlinkMessage::<RouteNetlinkMessage>::deserialize(&buf)
            .unwrap()
            .payload
        {
            NetlinkPayload::InnerMessage(m) => m,
            other => panic!("unexpected payload {other:?}"),
        }
    }

    fn reparse_link(msg: &LinkMessage) -> LinkMessage {
        match reparse(RouteNetlinkMessage::NewLink(msg.clone())) {
            RouteNetlinkMessage::NewLink(l) => l,
            other => panic!("{other:?}"),
        }
    }

    fn field<'a>(v: &'a LinkView, key: &str) -> Option<&'a Value> {
        v.fields.iter().find(|(k, _)| *k == key).unwrap().1.as_ref()
    }

    fn veth_message() -> LinkMessage {
        let mut msg = LinkMessage::default();
        msg.header.index = 7;
        msg.header.link_layer_type = LinkLayerType::Ether;
        msg.header.flags = LinkFlags::Up | LinkFlags::Broadcast | LinkFlags::Multicast;
        msg.attributes = vec![
            LinkAttribute::IfName("vm1-veth0".into()),
            LinkAttribute::Address(vec![0x5e, 0xcf, 0x13, 0x0a, 0x9b, 0x01]),
            LinkAttribute::Mtu(1500),
            LinkAttribute::OperState(State::Up),
            LinkAttribute::Link(2),
            LinkAttribute::LinkNetNsId(3),
            LinkAttribute::LinkInfo(vec![
                LinkInfo::Kind(InfoKind::Veth),
                LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(LinkMessage::default()))),
            ]),
        ];
        reparse_link(&msg)
    }

    #[test]
    fn veth_link_translates_to_skydive_keys() {
        let v = link_view(&veth_message());
        assert_eq!(v.index, 7);
        assert_eq!(v.kind, "veth");
        assert_eq!(v.peer_index, Some(2));
        assert_eq!(v.parent, None);
        assert_eq!(v.link_netnsid, Some(3));
        assert_eq!(field(&v, "Name"), Some(&json!("vm1-veth0")));
        assert_eq!(field(&v, "MAC"), Some(&json!("5e:cf:13:0a:9b:01")));
        assert_eq!(field(&v, "MTU"), Some(&json!(1500)));
        assert_eq!(field(&v, "State"), Some(&json!("UP")));
        assert_eq!(
            field(&v, "LinkFlags"),
            Some(&json!(["UP", "BROADCAST", "MULTICAST"]))
        );
        assert_eq!(field(&v, "Driver"), Some(&json!("veth")));
        assert_eq!(field(&v, "EncapType"), Some(&json!("ether")));
        assert_eq!(field(&v, "PeerIfIndex"), Some(&json!(2)));
        assert_eq!(field(&v, "LinkNetNsID"), Some(&json!(3)));
        assert_eq!(field(&v, "MasterIndex"), None);
        let keys: Vec<&str> = v.fields.iter().map(|(k, _)| *k).collect();
        assert_eq!(keys, LINK_KEYS);
    }

    #[test]
    fn tunnel_links_record_their_endpoints() {
        let link = |kind: InfoKind, data: InfoData| {
            let mut msg = LinkMessage::default();
            msg.header.index = 12;
            msg.attributes = vec![
                LinkAttribute::IfName("tun0".into()),
                LinkAttribute::LinkInfo(vec![LinkInfo::Kind(kind), LinkInfo::Data(data)]),
            ];
            link_view(&reparse_link(&msg))
        };
        let v = link(
            InfoKind::Vxlan,
            InfoData::Vxlan(vec![
                InfoVxlan::Id(42),
                InfoVxlan::Group(Ipv4Addr::new(10, 0, 0, 2)),
                InfoVxlan::Local(Ipv4Addr::new(10, 0, 0, 1)),
                InfoVxlan::Port(4789),
            ]),
        );
        assert_eq!(v.kind, "vxlan");
        assert_eq!(field(&v, "LocalIP"), Some(&json!("10.0.0.1")));
        assert_eq!(field(&v, "RemoteIP"), Some(&json!("10.0.0.2")));
        assert_eq!(field(&v, "VNI"), Some(&json!(42)));
        assert_eq!(field(&v, "TunnelPort"), Some(&json!(4789)));
        assert_eq!(field(&v, "Group"), None);

        // A multicast VXLAN has a group, no remote end.
        let v = link(
            InfoKind::Vxlan,
            InfoData::Vxlan(vec![
                InfoVxlan::Id(7),
                InfoVxlan::Group(Ipv4Addr::new(239, 1, 1, 1)),
            ]),
        );
        assert_eq!(field(&v, "RemoteIP"), None);
        assert_eq!(field(&v, "Group"), Some(&json!("239.1.1.1")));

        let v = link(
            InfoKind::Geneve,
            InfoData::Geneve(vec![
                InfoGeneve::Id(9),
                InfoGeneve::Remote(Ipv4Addr::new(192, 0, 2, 9)),
            ]),
        );
        assert_eq!(v.kind, "geneve");
        assert_eq!(field(&v, "RemoteIP"), Some(&json!("192.0.2.9")));
        assert_eq!(field(&v, "VNI"), Some(&json!(9)));

        let v = link(
            InfoKind::GreTap,
            InfoData::GreTap(vec![
                InfoGre::Local(Ipv4Addr::new(192, 0, 2, 1)),
                InfoGre::Remote(Ipv4Addr::new(192, 0, 2, 2)),
            ]),
        );
        assert_eq!(field(&v, "LocalIP"), Some(&json!("192.0.2.1")));
        assert_eq!(field(&v, "RemoteIP"), Some(&json!("192.0.2.2")));
        assert_eq!(field(&v, "VNI"), None);

        // Any-address endpoints (an unbound local end) are not recorded.
        let v = link(
            InfoKind::GreTun,
            InfoData::GreTun(vec![
                InfoGre::Local(Ipv4Addr::UNSPECIFIED),
                InfoGre::Remote(Ipv4Addr::new(192, 0, 2, 2)),
            ]),
        );
        assert_eq!(field(&v, "LocalIP"), None);
        assert_eq!(field(&v, "RemoteIP"), Some(&json!("192.0.2.2")));
    }

    #[test]
    fn vlan_and_bridge_member_and_loopback() {
        let mut msg = LinkMessage::default();
        msg.header.index = 9;
        msg.header.link_layer_type = LinkLayerType::Ether;
        msg.attributes = vec![
            LinkAttribute::IfName("v.10".into()),
            LinkAttribute::Link(4),
            LinkAttribute::Controller(5),
            LinkAttribute::LinkInfo(vec![
                LinkInfo::Kind(InfoKind::Vlan),
                LinkInfo::Data(InfoData::Vlan(vec![InfoVlan::Id(10)])),
            ]),
        ];
        let v = link_view(&reparse_link(&msg));
        assert_eq!(v.kind, "vlan");
        assert_eq!(v.parent, Some(4));
        assert_eq!(v.peer_index, None);
        assert_eq!(v.master, Some(5));
        assert_eq!(field(&v, "Vlan"), Some(&json!(10)));
        assert_eq!(field(&v, "ParentIndex"), Some(&json!(4)));
        assert_eq!(field(&v, "MasterIndex"), Some(&json!(5)));

        let mut lo = LinkMessage::default();
        lo.header.index = 1;
        lo.header.link_layer_type = LinkLayerType::Loopback;
        lo.header.flags = LinkFlags::Up | LinkFlags::Loopback;
        lo.attributes = vec![
            LinkAttribute::IfName("lo".into()),
            LinkAttribute::Address(vec![0; 6]),
            LinkAttribute::Link(1),
            LinkAttribute::OperState(State::Unknown),
        ];
        let v = link_view(&reparse_link(&lo));
        assert_eq!(v.kind, "device");
        assert_eq!(v.parent, None, "IFLA_LINK to itself is no parent");
        assert_eq!(field(&v, "EncapType"), Some(&json!("loopback")));
        assert_eq!(field(&v, "LinkFlags"), Some(&json!(["UP", "LOOPBACK"])));
        assert_eq!(field(&v, "Driver"), None);
        assert_eq!(field(&v, "State"), Some(&json!("UNKNOWN")));
    }

    #[test]
    fn bridge_port_notifications_are_not_device_messages() {
        let mut msg = veth_message();
        assert!(is_device_message(&msg));
        msg.header.interface_family = AddressFamily::Bridge;
        assert!(!is_device_message(&msg));
    }

    #[test]
    fn metric_only_changes_with_counters() {
        let mut s = Stats64::default();
        s.rx_packets = 3;
        s.tx_bytes = 100;
        let (m1, last1) = next_metric(None, &s, 1000).unwrap();
        assert_eq!(
            m1,
            json!({"RxPackets": 3, "TxBytes": 100, "Start": 1000, "Last": 1000})
        );
        assert_eq!(last1, None);
        assert_eq!(next_metric(Some(&m1), &s, 2000), None);
        s.rx_packets = 5;
        let (m2, last2) = next_metric(Some(&m1), &s, 3000).unwrap();
        assert_eq!(
            m2,
            json!({"RxPackets": 5, "TxBytes": 100, "Start": 1000, "Last": 3000})
        );
        assert_eq!(
            last2,
            Some(json!({"RxPackets": 2, "Start": 1000, "Last": 3000}))
        );
    }

    #[test]
    fn address_to_cidr() {
        let mut msg = AddressMessage::default();
        msg.header.family = AddressFamily::Inet;
        msg.header.prefix_len = 24;
        msg.header.index = 4;
        msg.attributes = vec![
            AddressAttribute::Address(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1))),
            AddressAttribute::Local(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1))),
        ];
        let RouteNetlinkMessage::NewAddress(parsed) = reparse(RouteNetlinkMessage::NewAddress(msg))
        else {
            panic!()
        };
        assert_eq!(
            address_cidr(&parsed),
            Some((4, false, "10.0.0.1/24".into()))
        );
        let mut v6 = AddressMessage::default();
        v6.header.family = AddressFamily::Inet6;
        v6.header.prefix_len = 64;
        v6.header.index = 4;
        v6.attributes = vec![AddressAttribute::Address("fe80::1".parse().unwrap())];
        assert_eq!(address_cidr(&v6), Some((4, true, "fe80::1/64".into())));
    }

    #[test]
    fn neighbour_translation() {
        let mut msg = NeighbourMessage::default();
        msg.header.family = AddressFamily::Inet;
        msg.header.ifindex = 3;
        msg.header.state = NeighbourState::Permanent;
        msg.attributes = vec![
            NeighbourAttribute::Destination(NeighbourAddress::Inet(Ipv4Addr::new(10, 0, 0, 2))),
            NeighbourAttribute::LinkLayerAddress(vec![0xa6, 0xd1, 0xa0, 0x51, 0x03, 0x49]),
        ];
        let RouteNetlinkMessage::NewNeighbour(parsed) =
            reparse(RouteNetlinkMessage::NewNeighbour(msg.clone()))
        else {
            panic!()
        };
        let (ifindex, key, v) = neighbour_entry(&parsed).unwrap();
        assert_eq!((ifindex, key.as_str()), (3, "10.0.0.2"));
        assert_eq!(
            v,
            json!({"Flags": [], "MAC": "a6:d1:a0:51:03:49", "IP": "10.0.0.2",
                   "State": ["NUD_PERMANENT"], "IfIndex": 3})
        );
        msg.header.family = AddressFamily::Bridge;
        assert_eq!(neighbour_entry(&msg), None);
    }

    #[test]
    fn route_translation_and_tables() {
        let mut msg = RouteMessage::default();
        msg.header.address_family = AddressFamily::Inet;
        msg.header.destination_prefix_length = 24;
        msg.header.table = 254;
        msg.header.protocol = RouteProtocol::Kernel;
        msg.attributes = vec![
            RouteAttribute::Table(2),
            RouteAttribute::Destination(RouteAddress::Inet(Ipv4Addr::new(124, 65, 91, 0))),
            RouteAttribute::PrefSource(RouteAddress::Inet(Ipv4Addr::new(124, 65, 91, 42))),
            RouteAttribute::Oif(6),
        ];
        let RouteNetlinkMessage::NewRoute(parsed) = reparse(RouteNetlinkMessage::NewRoute(msg))
        else {
            panic!()
        };
        let r = route_view(&parsed).unwrap();
        assert_eq!(r.table, 2);
        assert_eq!(r.ifindexes, vec![6]);
        assert_eq!(
            r.value,
            json!({"Protocol": 2, "Prefix": "124.65.91.0/24",
                   "NextHops": [{"Priority": 0, "IfIndex": 6}]})
        );
        let mut routes = BTreeMap::new();
        routes.insert((r.table, r.key.clone()), (r.src.clone(), r.value.clone()));
        assert_eq!(
            routing_tables(&routes),
            json!([{"ID": 2, "Src": "124.65.91.42", "Routes": [r.value]}])
        );
    }
}
