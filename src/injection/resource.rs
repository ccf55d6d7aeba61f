//! The packet injection resource (`/api/injectpacket`, Skydive §7.1): its JSON,
//! validation, and the resolution of what the user left out against the topology.
//!
//! Decisions (where Skydive differs, §7):
//! - Packets leave from the **first** interface node that `Src` returns (graph order);
//!   Skydive injected from every matching node. `Src` matching no interface is a 400.
//! - Addresses left out are resolved **at create** and stored, so the 201 answer and
//!   every GET show what is sent: `SrcIP`/`SrcMAC` from the source node (`IPV4`/`IPV6`,
//!   `MAC`); `DstIP` from the first node of `Dst`; `DstMAC` from the source node's routes
//!   (`RoutingTables`, longest prefix) and `Neighbors` when the next hop is a gateway,
//!   else from the destination node's `MAC`, else from `Neighbors`.
//! - `SrcPort`, `DstPort` (TCP/UDP) and `ICMPID` left at 0 are drawn at random once, at
//!   create (Skydive forced source port 1, which made every injection the same flow).
//! - `Count` 0 is refused (Skydive accepted it and sent nothing); an absent `Count` is 1.
//! - `TTL` absent or 0 is 64, for IPv4 and as the IPv6 hop limit (Skydive sent hop
//!   limit 0, and TTL 0 when the key was absent).
//! - `Increment` (sent by Skydive's Python client; `true` or a number) is accepted as
//!   `IncrementPayload` (`true` = one byte more per packet).
//! - Output-only fields `State` (`pending`, `running`, `done`, `stopped`, `error`),
//!   `PacketCount` and `Error` are filled at read time; `StartTime` is the creation time.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;
use topotap_topology::gremlin::{
    compile, Budget, Compiled, ErrorKind, EvalError, Extensions, Output,
};
use topotap_topology::{schema, Graph, Identifier, NodeIx};

use crate::error::Error;

use super::forge::{
    base64_decode, Headers, PacketPlan, Rng, Transport, DEFAULT_PAYLOAD_LEN, MAX_PAYLOAD_LEN,
};

/// Packet types that can be forged.
pub const TYPES: &[&str] = &["icmp4", "icmp6", "tcp4", "tcp6", "udp4", "udp6"];
/// `unique`: one ICMP id / source port for the whole injection; `random`: a new one
/// for every packet.
pub const MODES: &[&str] = &["unique", "random"];
/// IPv4 TTL and IPv6 hop limit when none is given.
pub const DEFAULT_TTL: u8 = 64;

/// A packet injection as clients send and receive it; field names and order are
/// Skydive's. Keys clients send as `null` take their default.
#[derive(Debug, Clone, Serialize, Deserialize, Default, utoipa::ToSchema)]
#[serde(default)]
pub struct Injection {
    #[serde(rename = "UUID", deserialize_with = "nullable")]
    #[schema(nullable)]
    pub uuid: String,
    /// Gremlin query of the source interface.
    #[serde(rename = "Src", deserialize_with = "nullable")]
    #[schema(nullable)]
    pub src: String,
    /// Gremlin query of the destination node (optional with `DstIP` and `DstMAC`).
    #[serde(rename = "Dst", deserialize_with = "nullable")]
    #[schema(nullable)]
    pub dst: String,
    #[serde(rename = "SrcIP", deserialize_with = "nullable")]
    #[schema(nullable)]
    pub src_ip: String,
    #[serde(rename = "DstIP", deserialize_with = "nullable")]
    #[schema(nullable)]
    pub dst_ip: String,
    #[serde(rename = "SrcMAC", deserialize_with = "nullable")]
    #[schema(nullable)]
    pub src_mac: String,
    #[serde(rename = "DstMAC", deserialize_with = "nullable")]
    #[schema(nullable)]
    pub dst_mac: String,
    #[serde(rename = "SrcPort", deserialize_with = "nullable")]
    #[schema(nullable)]
    pub src_port: u16,
    #[serde(rename = "DstPort", deserialize_with = "nullable")]
    #[schema(nullable)]
    pub dst_port: u16,
    #[serde(rename = "Type", deserialize_with = "nullable")]
    #[schema(nullable)]
    pub kind: String,
    /// Payload of every packet; empty = 56 random letters for ICMP and UDP, none for a
    /// TCP SYN.
    #[serde(rename = "Payload", deserialize_with = "nullable")]
    #[schema(nullable)]
    pub payload: String,
    #[serde(rename = "ICMPID", deserialize_with = "nullable")]
    #[schema(nullable)]
    pub icmp_id: u16,
    #[serde(rename = "Count", default = "one", deserialize_with = "nullable")]
    #[schema(nullable)]
    pub count: u64,
    /// Milliseconds between packets.
    #[serde(rename = "Interval", deserialize_with = "nullable")]
    #[schema(nullable)]
    pub interval: u64,
    #[serde(rename = "Mode", deserialize_with = "nullable")]
    #[schema(nullable)]
    pub mode: String,
    /// Bytes appended to the payload after each packet.
    #[serde(rename = "IncrementPayload", deserialize_with = "nullable")]
    #[schema(nullable)]
    pub increment_payload: i64,
    /// Skydive's Python client name for payload growth: `true` or a byte count.
    #[serde(rename = "Increment", skip_serializing)]
    #[schema(write_only, value_type = Option<serde_json::Value>)]
    pub increment: Option<Value>,
    #[serde(rename = "StartTime", deserialize_with = "nullable")]
    #[schema(nullable)]
    pub start_time: String,
    /// A base64 pcap file whose frames are replayed instead of forged packets.
    #[serde(
        rename = "Pcap",
        skip_serializing_if = "String::is_empty",
        deserialize_with = "nullable"
    )]
    #[schema(nullable)]
    pub pcap: String,
    #[serde(rename = "TTL", default = "default_ttl", deserialize_with = "nullable")]
    #[schema(nullable)]
    pub ttl: u8,
    /// Output only.
    #[serde(
        rename = "State",
        skip_serializing_if = "String::is_empty",
        skip_deserializing
    )]
    #[schema(read_only)]
    pub state: String,
    /// Output only: packets sent so far.
    #[serde(rename = "PacketCount", skip_deserializing)]
    #[schema(read_only)]
    pub packet_count: u64,
    /// Output only: why the injection failed.
    #[serde(
        rename = "Error",
        skip_serializing_if = "String::is_empty",
        skip_deserializing
    )]
    #[schema(read_only)]
    pub error: String,
    /// Where it runs and how far it got, shared by every copy of this resource.
    #[serde(skip)]
    pub progress: Arc<Progress>,
    /// The addresses and frames as parsed at validation and resolution, so they are
    /// parsed once.
    #[serde(skip)]
    pub parsed: Parsed,
}

/// What [`Injection::validate`] and [`Injection::resolve`] parsed or found.
#[derive(Debug, Clone, Default)]
pub struct Parsed {
    pub src_ip: Option<IpAddr>,
    pub dst_ip: Option<IpAddr>,
    pub src_mac: Option<[u8; 6]>,
    pub dst_mac: Option<[u8; 6]>,
    /// The frames of `Pcap`, decoded once.
    pub replay: Option<Arc<Vec<Vec<u8>>>>,
    /// `Src` and `Dst` compiled with the server's extensions at resolution.
    pub src_query: Option<Compiled>,
    pub dst_query: Option<Compiled>,
}

/// What an injection sends, from where, ready for the sending thread: built once at
/// create from the validated and resolved fields.
#[derive(Debug, Clone)]
pub struct InjectionPlan {
    pub source: SourceInterface,
    pub frames: PlannedFrames,
    pub count: u64,
    pub interval: std::time::Duration,
}

/// Forged packets (their plan) or the frames of a pcap file.
#[derive(Debug, Clone)]
pub enum PlannedFrames {
    Forged(PacketPlan),
    Replay(Arc<Vec<Vec<u8>>>),
}

fn one() -> u64 {
    1
}

fn default_ttl() -> u8 {
    DEFAULT_TTL
}

/// `null` as the type's default (the Python client sends `null` for unset options).
fn nullable<'de, D: Deserializer<'de>, T: Deserialize<'de> + Default>(d: D) -> Result<T, D::Error> {
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// The interface packets leave through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceInterface {
    pub node: Identifier,
    pub ifname: String,
    /// Namespace of the interface (`None` = topotap's).
    pub netns: Option<PathBuf>,
}

/// How an injection is doing.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum JobState {
    #[default]
    Pending,
    Running,
    Done,
    /// Deleted, or topotap stopping, before the last packet.
    Stopped,
    Error(String),
}

impl JobState {
    pub fn name(&self) -> &'static str {
        match self {
            JobState::Pending => "pending",
            JobState::Running => "running",
            JobState::Done => "done",
            JobState::Stopped => "stopped",
            JobState::Error(_) => "error",
        }
    }

    pub fn is_over(&self) -> bool {
        matches!(
            self,
            JobState::Done | JobState::Stopped | JobState::Error(_)
        )
    }

    /// The state a `Metadata.PacketInjections` entry shows (`State`, and `Error` for
    /// a failed one); `None` for a state name topotap does not write.
    pub fn from_entry(state: &str, error: Option<&str>) -> Option<JobState> {
        Some(match state {
            "pending" => JobState::Pending,
            "running" => JobState::Running,
            "done" => JobState::Done,
            "stopped" => JobState::Stopped,
            "error" => JobState::Error(error.unwrap_or("failed").to_owned()),
            _ => return None,
        })
    }
}

/// Shared between the stored resource, the runner and the sending thread.
#[derive(Debug, Default)]
pub struct Progress {
    pub source: Mutex<Option<SourceInterface>>,
    /// Set at create, once the injection is resolved.
    pub plan: Mutex<Option<Arc<InjectionPlan>>>,
    pub state: Mutex<JobState>,
    pub packets: AtomicU64,
    pub stop: AtomicBool,
}

impl Progress {
    /// Ends the injection with `state` unless it already ended, and stops the thread.
    pub fn finish(&self, state: JobState) {
        let mut s = self.state.lock();
        if !s.is_over() {
            *s = state;
        }
        self.stop.store(true, Ordering::Relaxed);
    }

    /// The state and count of an injection run elsewhere (an analyzer's copy of one
    /// an agent runs), as last seen.
    pub fn observe(&self, state: JobState, packets: u64) {
        *self.state.lock() = state;
        self.packets.store(packets, Ordering::Relaxed);
    }
}

impl Injection {
    /// Checks every field on its own and fills the defaults; errors are
    /// `"<Field>: <reason>"`. Needs no graph.
    pub fn validate(&mut self) -> Result<(), Error> {
        if self.src.trim().is_empty() {
            return Err(Error::invalid(
                "Src: a Gremlin query of the source interface is required",
            ));
        }
        crate::capture::flows::compile_query(&self.src)
            .map_err(|e| Error::invalid(format!("Src: Not a valid Gremlin expression: {e}")))?;
        if !self.dst.is_empty() {
            crate::capture::flows::compile_query(&self.dst)
                .map_err(|e| Error::invalid(format!("Dst: Not a valid Gremlin expression: {e}")))?;
        }
        let replay = !self.pcap.is_empty();
        let type_ok = TYPES.contains(&self.kind.as_str()) || (replay && self.kind.is_empty());
        if !type_ok {
            return Err(Error::invalid(format!(
                "Type: given type is not supported: {:?}, available types: [{}]",
                self.kind,
                TYPES.join(" ")
            )));
        }
        if self.mode.is_empty() {
            self.mode = "unique".into();
        }
        if !MODES.contains(&self.mode.as_str()) {
            return Err(Error::invalid(format!(
                "Mode: given mode is not supported: {:?}, available modes: [unique random]",
                self.mode
            )));
        }
        if self.count == 0 {
            return Err(Error::invalid("Count: must be at least 1"));
        }
        if self.increment_payload < 0 {
            return Err(Error::invalid("IncrementPayload: must not be negative"));
        }
        match self.increment.take() {
            None | Some(Value::Null) | Some(Value::Bool(false)) => {}
            Some(Value::Bool(true)) if self.increment_payload == 0 => self.increment_payload = 1,
            Some(Value::Number(n)) if self.increment_payload == 0 => {
                self.increment_payload = n
                    .as_u64()
                    .and_then(|n| i64::try_from(n).ok())
                    .ok_or_else(|| {
                        Error::invalid("Increment: must be a boolean or a positive number")
                    })?;
            }
            Some(Value::Bool(true)) | Some(Value::Number(_)) => {}
            Some(_) => {
                return Err(Error::invalid(
                    "Increment: must be a boolean or a positive number",
                ))
            }
        }
        if self.ttl == 0 {
            self.ttl = DEFAULT_TTL;
        }
        if self.payload.len() > MAX_PAYLOAD_LEN {
            return Err(Error::invalid(format!(
                "Payload: at most {MAX_PAYLOAD_LEN} bytes, got {}",
                self.payload.len()
            )));
        }
        let v6 = self.kind.ends_with('6');
        for (field, value, typed) in [
            ("SrcIP", &mut self.src_ip, &mut self.parsed.src_ip),
            ("DstIP", &mut self.dst_ip, &mut self.parsed.dst_ip),
        ] {
            if value.is_empty() {
                continue;
            }
            let ip = parse_ip_or_cidr(value).ok_or_else(|| {
                Error::invalid(format!("{field}: not a valid IP address: {value:?}"))
            })?;
            if !replay && ip.is_ipv6() != v6 {
                return Err(Error::invalid(format!(
                    "{field}: {ip} is not an IPv{} address (Type {})",
                    if v6 { 6 } else { 4 },
                    self.kind
                )));
            }
            *value = ip.to_string();
            *typed = Some(ip);
        }
        for (field, value, typed) in [
            ("SrcMAC", &mut self.src_mac, &mut self.parsed.src_mac),
            ("DstMAC", &mut self.dst_mac, &mut self.parsed.dst_mac),
        ] {
            if value.is_empty() {
                continue;
            }
            let mac = parse_mac(value).ok_or_else(|| {
                Error::invalid(format!("{field}: not a valid MAC address: {value:?}"))
            })?;
            *value = format_mac(&mac);
            *typed = Some(mac);
        }
        if replay {
            let frames =
                replay_frames(&self.pcap).map_err(|e| Error::invalid(format!("Pcap: {e}")))?;
            self.parsed.replay = Some(Arc::new(frames));
        }
        Ok(())
    }

    /// Finds the source interface and fills the addresses, ports and ids left out, from
    /// the topology (see the module doc). `Src` and `Dst` are compiled with `ext` and
    /// kept, and evaluated within `budget`: a query that runs out of it is
    /// [`Error::TooLarge`] or [`Error::Unavailable`], anything else that does not
    /// resolve is [`Error::Invalid`]. Call after [`Injection::validate`]; blocking
    /// (evaluates queries).
    pub fn resolve(
        &mut self,
        g: &Graph,
        ext: &Extensions,
        budget: &Budget,
        rng: &mut Rng,
    ) -> Result<(), Error> {
        let src_query = compile(&self.src, ext)
            .map_err(|e| Error::invalid(format!("Src: Not a valid Gremlin expression: {e}")))?;
        let src_nodes = query_nodes(&src_query, g, budget).map_err(|e| query_error("Src", e))?;
        self.parsed.src_query = Some(src_query);
        let (src_ix, source) = src_nodes
            .iter()
            .find_map(|ix| interface(g, *ix).map(|s| (*ix, s)))
            .ok_or_else(|| Error::invalid(format!("Src: no interface matches {:?}", self.src)))?;
        let dst_ix = if self.dst.is_empty() {
            None
        } else {
            let dst_query = compile(&self.dst, ext)
                .map_err(|e| Error::invalid(format!("Dst: Not a valid Gremlin expression: {e}")))?;
            let nodes = query_nodes(&dst_query, g, budget).map_err(|e| query_error("Dst", e))?;
            self.parsed.dst_query = Some(dst_query);
            Some(
                *nodes.first().ok_or_else(|| {
                    Error::invalid(format!("Dst: no node matches {:?}", self.dst))
                })?,
            )
        };
        self.start_time = rfc3339_now();
        let replay = !self.pcap.is_empty();
        if !replay {
            self.resolve_addresses(g, src_ix, dst_ix, &source.ifname)?;
            let (transport, _) = Transport::from_type(&self.kind).ok_or_else(|| {
                Error::invalid(format!(
                    "Type: given type is not supported: {:?}",
                    self.kind
                ))
            })?;
            match transport {
                Transport::IcmpEcho => {
                    if self.icmp_id == 0 {
                        self.icmp_id = rng.range_u16(1, 65535);
                    }
                }
                Transport::TcpSyn | Transport::Udp => {
                    if self.src_port == 0 {
                        self.src_port = rng.range_u16(1024, 65534);
                    }
                    if self.dst_port == 0 {
                        self.dst_port = rng.range_u16(1024, 65534);
                    }
                }
            }
        }
        let plan = self.plan(source.clone(), rng)?;
        *self.progress.source.lock() = Some(source);
        *self.progress.plan.lock() = Some(Arc::new(plan));
        Ok(())
    }

    /// What to send, from the fields as validated and resolved.
    fn plan(&self, source: SourceInterface, rng: &mut Rng) -> Result<InjectionPlan, Error> {
        let frames = match &self.parsed.replay {
            Some(frames) => PlannedFrames::Replay(frames.clone()),
            None => {
                let (transport, _) = Transport::from_type(&self.kind).ok_or_else(|| {
                    Error::invalid(format!(
                        "Type: given type is not supported: {:?}",
                        self.kind
                    ))
                })?;
                let p = &self.parsed;
                let missing = |field: &str| Error::invalid(format!("{field}: not resolved"));
                let headers = Headers {
                    transport,
                    src_mac: p.src_mac.ok_or_else(|| missing("SrcMAC"))?,
                    dst_mac: p.dst_mac.ok_or_else(|| missing("DstMAC"))?,
                    src_ip: p.src_ip.ok_or_else(|| missing("SrcIP"))?,
                    dst_ip: p.dst_ip.ok_or_else(|| missing("DstIP"))?,
                    ttl: self.ttl,
                    dst_port: self.dst_port,
                };
                let payload = if !self.payload.is_empty() {
                    self.payload.as_bytes().to_vec()
                } else if transport == Transport::TcpSyn {
                    Vec::new()
                } else {
                    let mut p = Vec::new();
                    rng.letters(DEFAULT_PAYLOAD_LEN, &mut p);
                    p
                };
                PlannedFrames::Forged(PacketPlan {
                    headers,
                    base_id: if transport == Transport::IcmpEcho {
                        self.icmp_id
                    } else {
                        self.src_port
                    },
                    random: self.mode == "random",
                    increment: usize::try_from(self.increment_payload).unwrap_or(0),
                    payload,
                })
            }
        };
        Ok(InjectionPlan {
            source,
            frames,
            count: self.count,
            interval: std::time::Duration::from_millis(self.interval),
        })
    }

    fn resolve_addresses(
        &mut self,
        g: &Graph,
        src_ix: NodeIx,
        dst_ix: Option<NodeIx>,
        ifname: &str,
    ) -> Result<(), Error> {
        let v6 = self.kind.ends_with('6');
        let family = if v6 { "IPv6" } else { "IPv4" };
        let src = g.node(src_ix).metadata();
        let dst_node = dst_ix.map(|ix| g.node(ix).metadata());
        if self.parsed.src_ip.is_none() {
            let ip = first_address(src, v6).ok_or_else(|| {
                Error::invalid(format!(
                    "SrcIP: the source interface {ifname} has no {family} address; give SrcIP"
                ))
            })?;
            self.src_ip = ip.to_string();
            self.parsed.src_ip = Some(ip);
        }
        let dst_ip = match self.parsed.dst_ip {
            Some(ip) => ip,
            None => {
                let node = dst_node.ok_or_else(|| {
                    Error::invalid(
                        "DstIP: no destination: give Dst (a Gremlin query) or DstIP and DstMAC",
                    )
                })?;
                let ip = first_address(node, v6).ok_or_else(|| {
                    Error::invalid(format!(
                        "DstIP: the destination node has no {family} address; give DstIP"
                    ))
                })?;
                self.dst_ip = ip.to_string();
                self.parsed.dst_ip = Some(ip);
                ip
            }
        };
        if self.parsed.src_mac.is_none() {
            let mac = node_mac(src).ok_or_else(|| {
                Error::invalid(format!(
                    "SrcMAC: the source interface {ifname} has no MAC; give SrcMAC"
                ))
            })?;
            self.src_mac = format_mac(&mac);
            self.parsed.src_mac = Some(mac);
        }
        if self.parsed.dst_mac.is_none() {
            let mac = match next_hop(src, dst_ip) {
                Some(gateway) if gateway != dst_ip => neighbor_mac(src, gateway).ok_or_else(|| {
                    Error::invalid(format!(
                        "DstMAC: {dst_ip} is routed through {gateway}, whose MAC is not in the \
                         neighbors of {ifname}; give DstMAC"
                    ))
                })?,
                _ => dst_node
                    .and_then(node_mac)
                    .or_else(|| neighbor_mac(src, dst_ip))
                    .ok_or_else(|| {
                        Error::invalid(format!("DstMAC: cannot find the MAC of {dst_ip}: no destination node MAC and no neighbor entry on {ifname}; give DstMAC"))
                    })?,
            };
            self.dst_mac = format_mac(&mac);
            self.parsed.dst_mac = Some(mac);
        }
        Ok(())
    }
}

/// Why a base64 pcap file cannot be replayed.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("not valid base64: {0}")]
    Base64(#[from] base64::DecodeError),
    #[error(transparent)]
    Pcap(#[from] topotap_targets::pcapfile::PcapError),
    #[error("link type {0} cannot be replayed on an interface: only Ethernet captures")]
    LinkType(u32),
    #[error("the capture holds no packet")]
    Empty,
}

/// The frames of a base64 pcap file: Ethernet only, at least one.
pub fn replay_frames(pcap_b64: &str) -> Result<Vec<Vec<u8>>, ReplayError> {
    use topotap_targets::packet::LinkType;
    let bytes = base64_decode(pcap_b64)?;
    let reader = topotap_targets::pcapfile::PcapReader::new(&bytes)?;
    let mut frames = Vec::new();
    for record in reader {
        let r = record?;
        if r.link_type != LinkType::Ethernet {
            return Err(ReplayError::LinkType(r.link_type.to_u32()));
        }
        frames.push(r.data.to_vec());
    }
    if frames.is_empty() {
        return Err(ReplayError::Empty);
    }
    Ok(frames)
}

/// `field: reason` of a query that could not be evaluated, as the kind of error its
/// failure is (a budget that ran out is not the client's syntax).
fn query_error(field: &str, e: EvalError) -> Error {
    let reason = format!("{field}: {e}");
    match e.kind {
        ErrorKind::Invalid => Error::Invalid(reason),
        ErrorKind::TooLarge => Error::TooLarge(reason),
        ErrorKind::Timeout => Error::Unavailable(reason),
    }
}

/// The nodes a query selects within `budget`, whatever the shape of its result.
/// The first node of `src` (an injection's `Src`) that packets can be sent from, if
/// the query compiles and runs within `budget`.
pub fn source_node(src: &str, g: &Graph, ext: &Extensions, budget: &Budget) -> Option<Identifier> {
    let query = compile(src, ext).ok()?;
    query_nodes(&query, g, budget)
        .ok()?
        .into_iter()
        .find_map(|ix| interface(g, ix).map(|s| s.node))
}

fn query_nodes(query: &Compiled, g: &Graph, budget: &Budget) -> Result<Vec<NodeIx>, EvalError> {
    let out = query.evaluate(g, budget)?;
    Ok(match out {
        Output::Nodes(n) => n,
        Output::Graph { nodes, .. } => nodes,
        Output::Paths(paths) => paths.into_iter().flatten().collect(),
        _ => Vec::new(),
    })
}

/// The interface behind a node, if packets can be sent there: a kernel interface in the
/// namespace of its netns owner.
pub fn interface(g: &Graph, ix: NodeIx) -> Option<SourceInterface> {
    let iface = schema::kernel_interface(g, ix)?;
    Some(SourceInterface {
        node: g.node(ix).id().clone(),
        ifname: iface.name.to_owned(),
        netns: iface.netns.map(PathBuf::from),
    })
}

/// `10.0.0.1` or `10.0.0.1/24` (the address part).
pub fn parse_ip_or_cidr(s: &str) -> Option<IpAddr> {
    let addr = s.split_once('/').map_or(s, |(a, _)| a);
    addr.trim().parse().ok()
}

/// `aa:bb:cc:dd:ee:ff` or `aa-bb-cc-dd-ee-ff`.
pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let parts: Vec<&str> = s.split([':', '-']).collect();
    if parts.len() != 6 {
        return None;
    }
    let mut mac = [0u8; 6];
    for (byte, part) in mac.iter_mut().zip(parts) {
        if part.len() != 2 {
            return None;
        }
        *byte = u8::from_str_radix(part, 16).ok()?;
    }
    Some(mac)
}

pub fn format_mac(m: &[u8; 6]) -> String {
    format!(
        "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        m[0], m[1], m[2], m[3], m[4], m[5]
    )
}

/// The node's first address of the family (`IPV4` / `IPV6`, CIDR stripped); for IPv6 a
/// global address before a link-local one.
fn first_address(md: &topotap_topology::Metadata, v6: bool) -> Option<IpAddr> {
    let key = if v6 { "IPV6" } else { "IPV4" };
    let addrs: Vec<IpAddr> = match md.get(key)? {
        Value::Array(list) => list
            .iter()
            .filter_map(Value::as_str)
            .filter_map(parse_ip_or_cidr)
            .collect(),
        Value::String(s) => parse_ip_or_cidr(s).into_iter().collect(),
        _ => Vec::new(),
    };
    let link_local =
        |ip: &IpAddr| matches!(ip, IpAddr::V6(a) if a.segments()[0] & 0xffc0 == 0xfe80);
    addrs
        .iter()
        .find(|ip| !link_local(ip))
        .or(addrs.first())
        .copied()
}

/// `ExtID.attached-mac` (an OpenStack port's VM side) or `MAC`.
fn node_mac(md: &topotap_topology::Metadata) -> Option<[u8; 6]> {
    md.get("ExtID")
        .and_then(|e| e.get("attached-mac"))
        .and_then(Value::as_str)
        .or_else(|| md.get("MAC").and_then(Value::as_str))
        .and_then(parse_mac)
}

/// The MAC of `ip` in the node's `Neighbors`.
fn neighbor_mac(md: &topotap_topology::Metadata, ip: IpAddr) -> Option<[u8; 6]> {
    md.get("Neighbors")?.as_array()?.iter().find_map(|n| {
        let nip = n
            .get("IP")
            .and_then(Value::as_str)
            .and_then(parse_ip_or_cidr)?;
        if nip != ip {
            return None;
        }
        let mac = n.get("MAC").and_then(Value::as_str).and_then(parse_mac)?;
        (mac != [0; 6]).then_some(mac)
    })
}

/// Where a packet to `dst` goes first according to the node's `RoutingTables`: the
/// gateway of the longest matching prefix (the main table winning ties), or `dst`
/// itself when that route is on-link. `None` without a matching route.
fn next_hop(md: &topotap_topology::Metadata, dst: IpAddr) -> Option<IpAddr> {
    let mut best: Option<((u8, bool), IpAddr)> = None;
    for table in md.get("RoutingTables")?.as_array()? {
        let main = table.get("ID").and_then(Value::as_u64) == Some(254);
        for route in table
            .get("Routes")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let Some(prefix) = route.get("Prefix").and_then(Value::as_str) else {
                continue;
            };
            let Some(len) = prefix_match(prefix, dst) else {
                continue;
            };
            let gateway = route
                .get("NextHops")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .find_map(|h| {
                    h.get("IP")
                        .and_then(Value::as_str)
                        .and_then(parse_ip_or_cidr)
                })
                .unwrap_or(dst);
            let rank = (len, main);
            if best.is_none_or(|(r, _)| rank > r) {
                best = Some((rank, gateway));
            }
        }
    }
    best.map(|(_, hop)| hop)
}

/// The prefix length if `prefix` (`a.b.c.d/n`) contains `ip`.
fn prefix_match(prefix: &str, ip: IpAddr) -> Option<u8> {
    let (net, len) = prefix.split_once('/')?;
    let net: IpAddr = net.parse().ok()?;
    let len: u8 = len.parse().ok()?;
    let (a, b, bits) = match (net, ip) {
        (IpAddr::V4(n), IpAddr::V4(i)) => (
            u128::from(u32::from(n)) << 96,
            u128::from(u32::from(i)) << 96,
            32,
        ),
        (IpAddr::V6(n), IpAddr::V6(i)) => (u128::from(n), u128::from(i), 128),
        _ => return None,
    };
    if len > bits {
        return None;
    }
    let mask = if len == 0 {
        0
    } else {
        u128::MAX << (128 - u32::from(len))
    };
    (a & mask == b & mask).then_some(len)
}

/// Now as RFC 3339 in UTC with milliseconds (`2024-05-01T12:00:00.123Z`).
pub fn rfc3339_now() -> String {
    let ms = topotap_topology::now_ms().max(0);
    let (secs, millis) = (ms / 1000, ms % 1000);
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use topotap_topology::{Edge, Node};

    fn parse(v: Value) -> Injection {
        serde_json::from_value(v).unwrap()
    }

    /// The injection validated, or the reason it is invalid (never another kind).
    fn validated(v: Value) -> Result<Injection, String> {
        let mut i = parse(v);
        match i.validate() {
            Ok(()) => Ok(i),
            Err(Error::Invalid(reason)) => Err(reason),
            Err(e) => panic!("not a client error: {e:?}"),
        }
    }

    #[test]
    fn unknown_steps_are_refused_at_create_time() {
        let e = validated(json!({"Src": "G.V().Nope()", "Type": "icmp4"})).unwrap_err();
        assert_eq!(
            e,
            "Src: Not a valid Gremlin expression: line 1, column 7: unknown step 'Nope'"
        );
        let e =
            validated(json!({"Src": "G.V()", "Dst": "G.V().Has('a', NOPE(1))", "Type": "icmp4"}))
                .unwrap_err();
        assert!(
            e.starts_with("Dst: Not a valid Gremlin expression: line 1, column 16"),
            "{e}"
        );
    }

    #[test]
    fn defaults_and_python_client_keys() {
        let i = validated(json!({
            "Src": "G.V()", "Dst": "", "SrcIP": "", "DstIP": "", "SrcMAC": "", "DstMAC": "",
            "SrcPort": 0, "DstPort": 0, "Type": "icmp4", "Count": 1, "ICMPID": null,
            "Interval": 1000, "Payload": "", "Increment": true, "TTL": 64
        }))
        .unwrap();
        assert_eq!(
            (i.mode.as_str(), i.increment_payload, i.ttl),
            ("unique", 1, 64)
        );
        let i = validated(json!({"Src": "G.V()", "Type": "udp6"})).unwrap();
        assert_eq!((i.count, i.ttl, i.increment_payload), (1, 64, 0));
        let i =
            validated(json!({"Src": "G.V()", "Type": "udp6", "TTL": 0, "Increment": 3})).unwrap();
        assert_eq!((i.ttl, i.increment_payload), (64, 3));
        let i = validated(
            json!({"Src": "G.V()", "Type": "icmp4", "SrcIP": "10.0.0.1/24", "DstMAC": "AA-BB-CC-DD-EE-FF"}),
        )
        .unwrap();
        assert_eq!(
            (i.src_ip.as_str(), i.dst_mac.as_str()),
            ("10.0.0.1", "aa:bb:cc:dd:ee:ff")
        );
        let out = serde_json::to_value(&i).unwrap();
        assert!(out.get("Increment").is_none() && out.get("Pcap").is_none());
        let text = serde_json::to_string(&i).unwrap();
        assert!(
            text.starts_with(r#"{"UUID":"","Src":"G.V()","Dst":"","SrcIP":"#),
            "{text}"
        );
    }

    #[test]
    fn errors_name_the_field() {
        for (v, field) in [
            (
                json!({"Src": "G.V()", "Type": "icmp4", "Count": 0}),
                "Count: ",
            ),
            (json!({"Src": "G.V()", "Type": "icmp5"}), "Type: "),
            (json!({"Src": "G.V()"}), "Type: "),
            (
                json!({"Src": "G.V()", "Type": "icmp4", "Mode": "burst"}),
                "Mode: ",
            ),
            (
                json!({"Src": "G.V()", "Type": "icmp4", "SrcMAC": "00:11:22"}),
                "SrcMAC: ",
            ),
            (
                json!({"Src": "G.V()", "Type": "icmp4", "DstMAC": "zz:11:22:33:44:55"}),
                "DstMAC: ",
            ),
            (
                json!({"Src": "G.V()", "Type": "icmp4", "DstIP": "10.0.0"}),
                "DstIP: ",
            ),
            (
                json!({"Src": "G.V()", "Type": "icmp4", "DstIP": "fd00::1"}),
                "DstIP: ",
            ),
            (json!({"Src": "G.V(", "Type": "icmp4"}), "Src: "),
            (json!({"Type": "icmp4"}), "Src: "),
            (
                json!({"Src": "G.V()", "Type": "icmp4", "Dst": "G.X"}),
                "Dst: ",
            ),
            (
                json!({"Src": "G.V()", "Type": "icmp4", "IncrementPayload": -1}),
                "IncrementPayload: ",
            ),
            (
                json!({"Src": "G.V()", "Type": "icmp4", "Increment": "yes"}),
                "Increment: ",
            ),
            (json!({"Src": "G.V()", "Pcap": "not base64!"}), "Pcap: "),
            (json!({"Src": "G.V()", "Pcap": "AAAA"}), "Pcap: "),
        ] {
            let err = validated(v.clone()).unwrap_err();
            assert!(err.starts_with(field), "{v} -> {err}");
        }
    }

    #[test]
    fn pcap_replay_needs_no_type() {
        let mut file = Vec::new();
        {
            let mut w = topotap_targets::pcapfile::PcapWriter::new(
                &mut file,
                topotap_targets::packet::LinkType::Ethernet,
                65535,
            )
            .unwrap();
            w.write_packet(topotap_targets::packet::Timestamp::ZERO, 14, &[1; 14])
                .unwrap();
            w.flush().unwrap();
        }
        let b64 = super::super::forge::base64_encode(&file);
        validated(json!({"Src": "G.V()", "Pcap": b64})).unwrap();
        assert_eq!(replay_frames(&b64).unwrap(), vec![vec![1u8; 14]]);
    }

    #[test]
    fn pcaps_that_cannot_be_replayed_say_why_and_are_client_errors() {
        use topotap_targets::packet::{LinkType, Timestamp};
        let file = |link: LinkType, packets: usize| {
            let mut file = Vec::new();
            let mut w = topotap_targets::pcapfile::PcapWriter::new(&mut file, link, 65535).unwrap();
            for _ in 0..packets {
                w.write_packet(Timestamp::ZERO, 20, &[0x45; 20]).unwrap();
            }
            w.flush().unwrap();
            super::super::forge::base64_encode(&file)
        };
        let e = replay_frames("not*base64").unwrap_err();
        assert!(matches!(e, ReplayError::Base64(_)), "{e:?}");
        assert!(e.to_string().starts_with("not valid base64: "), "{e}");
        let e = replay_frames(&file(LinkType::Raw, 1)).unwrap_err();
        assert_eq!(
            e.to_string(),
            "link type 101 cannot be replayed on an interface: only Ethernet captures"
        );
        let e = replay_frames(&file(LinkType::Ethernet, 0)).unwrap_err();
        assert!(matches!(e, ReplayError::Empty), "{e:?}");
        let e = replay_frames("AAAA").unwrap_err();
        assert!(matches!(e, ReplayError::Pcap(_)), "{e:?}");
        // At create, any of them is a 400 naming the field.
        let Err(reason) = validated(json!({"Src": "G.V()", "Pcap": file(LinkType::Raw, 1)})) else {
            panic!("a raw-IP capture was accepted for replay");
        };
        assert!(reason.starts_with("Pcap: link type 101"), "{reason}");
    }

    /// ns `a` holding `eth0` (10.0.0.1/24 + a default route via 10.0.0.254) and a
    /// destination node `peer`.
    fn graph() -> Graph {
        let mut g = Graph::new();
        let md = |v: Value| v.as_object().unwrap().clone();
        let ns = Node::new(
            Identifier::v5("ns"),
            md(json!({"Type": "netns", "Name": "a", "Path": "/var/run/netns/a"})),
            "h",
            "test",
        );
        let eth = Node::new(
            Identifier::v5("eth0"),
            md(json!({
                "Type": "veth", "Name": "eth0", "IfIndex": 2, "MAC": "02:00:00:00:00:01",
                "IPV4": ["10.0.0.1/24"], "IPV6": ["fe80::1/64", "fd00::1/64"],
                "Neighbors": [
                    {"IP": "10.0.0.254", "MAC": "02:00:00:00:00:fe", "IfIndex": 2},
                    {"IP": "10.0.0.3", "MAC": "02:00:00:00:00:03", "IfIndex": 2}
                ],
                "RoutingTables": [
                    {"ID": 254, "Routes": [
                        {"Protocol": 3, "Prefix": "0.0.0.0/0", "NextHops": [{"IP": "10.0.0.254", "IfIndex": 2}]},
                        {"Protocol": 2, "Prefix": "10.0.0.0/24", "NextHops": [{"IfIndex": 2}]}
                    ]},
                    {"ID": 255, "Routes": [
                        {"Protocol": 2, "Prefix": "10.0.0.1/32", "NextHops": [{"IfIndex": 2}]}
                    ]}
                ]
            })),
            "h",
            "test",
        );
        let peer = Node::new(
            Identifier::v5("peer"),
            md(
                json!({"Type": "veth", "Name": "peer", "IfIndex": 3, "MAC": "02:00:00:00:00:02", "IPV4": ["10.0.0.2/24"]}),
            ),
            "h",
            "test",
        );
        g.add_node(ns.clone()).unwrap();
        g.add_node(eth.clone()).unwrap();
        g.add_node(peer).unwrap();
        g.add_edge(Edge::new(
            ns.id.clone(),
            eth.id.clone(),
            md(json!({"RelationType": "ownership"})),
            "h",
            "test",
        ))
        .unwrap();
        g
    }

    fn resolved(v: Value) -> Result<Injection, String> {
        resolved_within(v, &Budget::default()).map_err(|e| e.to_string())
    }

    fn resolved_within(v: Value, budget: &Budget) -> Result<Injection, Error> {
        let mut i = validated(v).map_err(Error::Invalid)?;
        i.resolve(&graph(), &Extensions::default(), budget, &mut Rng::new(1))?;
        Ok(i)
    }

    #[test]
    fn queries_are_kept_compiled_and_evaluated_within_the_budget() {
        let v = json!({"Src": "G.V().Has('Type', 'veth')", "Dst": "G.V().Has('Name', 'peer')", "Type": "icmp4"});
        let i = resolved_within(v.clone(), &Budget::default()).unwrap();
        let canonical = compile("G.V().Has('Type', 'veth')", &Extensions::default())
            .unwrap()
            .to_string();
        assert_eq!(
            i.parsed.src_query.as_ref().map(ToString::to_string),
            Some(canonical)
        );
        assert!(i.parsed.dst_query.is_some());
        let tight = Budget {
            max_elements: 1,
            ..Budget::default()
        };
        // A walk is what grows a result.
        let v = json!({"Src": "G.V().Both().Both().Has('Type', 'veth')", "Dst": "G.V().Has('Name', 'peer')", "Type": "icmp4"});
        resolved_within(v.clone(), &Budget::default()).unwrap();
        match resolved_within(v.clone(), &tight) {
            Err(Error::TooLarge(r)) => {
                assert!(
                    r.starts_with("Src: ") && r.contains("result exceeds 1 elements"),
                    "{r}"
                )
            }
            other => panic!("{other:?}"),
        }
        let slow = Budget {
            timeout: std::time::Duration::ZERO,
            ..Budget::default()
        };
        match resolved_within(v, &slow) {
            Err(Error::Unavailable(r)) => {
                assert!(r.starts_with("Src: ") && r.contains("time budget"), "{r}")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn resolution_from_nodes_routes_and_neighbors() {
        let i = resolved(json!({"Src": "G.V().Has('Type', 'veth')", "Dst": "G.V().Has('Name', 'peer')", "Type": "icmp4"})).unwrap();
        assert_eq!(
            (
                i.src_ip.as_str(),
                i.src_mac.as_str(),
                i.dst_ip.as_str(),
                i.dst_mac.as_str()
            ),
            (
                "10.0.0.1",
                "02:00:00:00:00:01",
                "10.0.0.2",
                "02:00:00:00:00:02"
            )
        );
        assert_ne!(i.icmp_id, 0);
        let src = i.progress.source.lock().clone().unwrap();
        assert_eq!(src.ifname, "eth0");
        assert_eq!(src.netns, Some(PathBuf::from("/var/run/netns/a")));
        assert!(i.start_time.ends_with('Z'), "{}", i.start_time);

        // On-link without a node: the neighbor table; off-link: the gateway's MAC.
        let i = resolved(
            json!({"Src": "G.V().Has('Name', 'eth0')", "DstIP": "10.0.0.3", "Type": "udp4"}),
        )
        .unwrap();
        assert_eq!(i.dst_mac, "02:00:00:00:00:03");
        assert!(i.src_port >= 1024 && i.dst_port >= 1024);
        let i = resolved(json!({"Src": "G.V().Has('Name', 'eth0')", "DstIP": "8.8.8.8", "Type": "tcp4", "DstPort": 53})).unwrap();
        assert_eq!((i.dst_mac.as_str(), i.dst_port), ("02:00:00:00:00:fe", 53));
        // IPv6: the global source address.
        let i = resolved(json!({"Src": "G.V().Has('Name', 'eth0')", "DstIP": "fd00::2", "DstMAC": "02:00:00:00:00:09", "Type": "icmp6"})).unwrap();
        assert_eq!(i.src_ip, "fd00::1");
    }

    #[test]
    fn resolution_errors_name_the_field() {
        for (v, field) in [
            (
                json!({"Src": "G.V().Has('Name', 'nothing')", "DstIP": "10.0.0.2", "Type": "icmp4"}),
                "Src: no interface",
            ),
            (
                json!({"Src": "G.V().Has('Type', 'netns')", "DstIP": "10.0.0.2", "Type": "icmp4"}),
                "Src: no interface",
            ),
            (
                json!({"Src": "G.V().Has('Name', 'eth0')", "Type": "icmp4"}),
                "DstIP: ",
            ),
            (
                json!({"Src": "G.V().Has('Name', 'eth0')", "Dst": "G.V().Has('Name', 'x')", "Type": "icmp4"}),
                "Dst: no node",
            ),
            (
                json!({"Src": "G.V().Has('Name', 'eth0')", "DstIP": "10.0.0.9", "Type": "icmp4"}),
                "DstMAC: ",
            ),
            (
                json!({"Src": "G.V().Has('Name', 'peer')", "DstIP": "fd00::2", "Type": "icmp6"}),
                "SrcIP: ",
            ),
        ] {
            let err = resolved(v.clone()).unwrap_err();
            assert!(err.starts_with(field), "{v} -> {err}");
        }
    }

    #[test]
    fn prefixes_and_dates() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(prefix_match("10.0.0.0/8", ip("10.1.2.3")), Some(8));
        assert_eq!(prefix_match("0.0.0.0/0", ip("10.1.2.3")), Some(0));
        assert_eq!(prefix_match("10.0.0.0/24", ip("10.0.1.3")), None);
        assert_eq!(prefix_match("fd00::/64", ip("fd00::5")), Some(64));
        assert_eq!(prefix_match("fd00::/64", ip("10.0.0.1")), None);
        let t = rfc3339_now();
        assert_eq!(t.len(), "2024-05-01T12:00:00.123Z".len(), "{t}");
        assert!(t.starts_with("20"), "{t}");
    }
}
