//! The capture resource (`/api/capture`, Skydive §1.4): its JSON, defaults and
//! validation.

use std::net::{IpAddr, SocketAddr};

use serde::{Deserialize, Serialize};
use topotap_topology::gremlin::{compile, CompileError, Compiled, Extensions};

use crate::error::Error;

/// Capture types (Skydive's `Type`). `pcap` and `afpacket` are both served by libpcap,
/// which uses AF_PACKET with a memory-mapped ring on Linux; `sflow` is an sFlow v5
/// collector socket, `pcapsocket` a TCP socket taking pcap streams; `ovssflow` (the
/// default on OVS bridges) has Open vSwitch sample the bridge, `ovsmirror` mirrors an
/// OVS port to a port topotap captures.
pub const CAPTURE_TYPES: &[&str] = &[
    "pcap",
    "afpacket",
    "sflow",
    "pcapsocket",
    "ovssflow",
    "ovsmirror",
];

/// The OpenAPI schema of `Type`: one of [`CAPTURE_TYPES`], or empty for the node's
/// default.
fn capture_type_schema() -> utoipa::openapi::Object {
    use utoipa::openapi::schema::{ObjectBuilder, SchemaType, Type};
    let names = CAPTURE_TYPES.iter().map(|n| serde_json::Value::from(*n));
    ObjectBuilder::new()
        .schema_type(SchemaType::new(Type::String))
        .enum_values(Some(names.chain([serde_json::Value::from("")])))
        .description(Some(
            "Capture type; empty: ovssflow on an OVS bridge, pcap elsewhere",
        ))
        .build()
}

/// Where captured traffic goes; the wire strings are Skydive's. `local` (or no
/// `TargetType`) is the flow table queried with `Flows()`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum TargetType {
    #[default]
    Local,
    Sflow,
    ErspanV1,
    ErspanV2,
    NetflowV5,
    Ipfix,
}

impl TargetType {
    /// Every target type, in the order they are listed to users.
    pub const ALL: [TargetType; 6] = [
        TargetType::Local,
        TargetType::Sflow,
        TargetType::ErspanV1,
        TargetType::ErspanV2,
        TargetType::NetflowV5,
        TargetType::Ipfix,
    ];
    /// The wire names of [`TargetType::ALL`] (the CLI's accepted values).
    pub const NAMES: [&'static str; 6] = [
        "local",
        "sflow",
        "erspanv1",
        "erspanv2",
        "netflowv5",
        "ipfix",
    ];

    pub fn as_str(self) -> &'static str {
        Self::NAMES[Self::ALL.iter().position(|t| *t == self).unwrap_or(0)]
    }

    /// A `TargetType` field as clients send it: empty is no type (`local`).
    pub fn from_field(s: &str) -> Result<Option<TargetType>, UnknownTargetType> {
        if s.is_empty() {
            return Ok(None);
        }
        s.parse().map(Some)
    }

    /// Whether packets leave topotap (and the destination must be excluded from every
    /// capture).
    pub fn is_export(self) -> bool {
        self != TargetType::Local
    }

    /// Whether it mirrors packets over GRE to a host (no port).
    pub fn is_erspan(self) -> bool {
        matches!(self, TargetType::ErspanV1 | TargetType::ErspanV2)
    }

    /// The collector port usually listened on (`None`: GRE, no port).
    pub fn usual_port(self) -> Option<u16> {
        match self {
            TargetType::Local | TargetType::ErspanV1 | TargetType::ErspanV2 => None,
            TargetType::Sflow => Some(6343),
            TargetType::NetflowV5 => Some(2055),
            TargetType::Ipfix => Some(4739),
        }
    }
}

impl std::fmt::Display for TargetType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A `TargetType` that is none of ours; the message is Skydive's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "Not a valid target type: {0}, available types: [{names}]",
    names = TargetType::NAMES.join(" ")
)]
pub struct UnknownTargetType(pub String);

impl std::str::FromStr for TargetType {
    type Err = UnknownTargetType;

    /// One of [`TargetType::NAMES`], exactly.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::NAMES
            .iter()
            .position(|n| *n == s)
            .map(|i| Self::ALL[i])
            .ok_or_else(|| UnknownTargetType(s.to_owned()))
    }
}

impl Serialize for TargetType {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for TargetType {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = std::borrow::Cow::<'de, str>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// `TargetType` as clients send it: absent, `null` or `""` is none.
fn target_type_field<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<TargetType>, D::Error> {
    let s = Option::<std::borrow::Cow<'de, str>>::deserialize(d)?;
    match s {
        None => Ok(None),
        Some(s) => TargetType::from_field(&s).map_err(serde::de::Error::custom),
    }
}

/// The OpenAPI schema of a `TargetType` field: a name, empty or `null` for `local`.
fn target_type_schema() -> utoipa::openapi::Object {
    use utoipa::openapi::schema::{ObjectBuilder, SchemaType, Type};
    let names = TargetType::NAMES
        .iter()
        .map(|n| serde_json::Value::from(*n));
    ObjectBuilder::new()
        .schema_type(SchemaType::from_iter([Type::String, Type::Null]))
        .enum_values(Some(
            names.chain([serde_json::Value::from(""), serde_json::Value::Null]),
        ))
        .build()
}

pub const LAYER_KEY_MODES: &[&str] = &["L2", "L3"];

/// Default snapshot length when `HeaderSize` is 0: whole frames.
pub const DEFAULT_SNAPLEN: u32 = 65_535;

/// A capture as clients send and receive it. Field order and `omitempty` rules are
/// Skydive's; extra keys that clients send are accepted and ignored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default, utoipa::ToSchema)]
#[serde(default)]
pub struct Capture {
    #[serde(rename = "UUID")]
    pub uuid: String,
    #[serde(rename = "GremlinQuery", skip_serializing_if = "String::is_empty")]
    pub gremlin_query: String,
    #[serde(rename = "BPFFilter", skip_serializing_if = "String::is_empty")]
    pub bpf_filter: String,
    #[serde(rename = "Name", skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(rename = "Description", skip_serializing_if = "String::is_empty")]
    pub description: String,
    #[serde(rename = "Type", skip_serializing_if = "String::is_empty")]
    #[schema(schema_with = capture_type_schema)]
    pub capture_type: String,
    /// Output only: interfaces where this capture is active, computed at read time.
    #[serde(rename = "Count")]
    #[schema(read_only)]
    pub count: u64,
    #[serde(rename = "Port", skip_serializing_if = "is_zero_i64")]
    pub port: i64,
    #[serde(rename = "SamplingRate")]
    pub sampling_rate: u32,
    #[serde(rename = "PollingInterval")]
    pub polling_interval: u32,
    /// Local target: how many frames of each flow to keep for `RawPackets()` (0: none;
    /// at most 64 KiB per flow and 8 MiB per interface are kept).
    #[serde(rename = "RawPacketLimit", skip_serializing_if = "is_zero_i64")]
    #[schema(minimum = 0, maximum = 10)]
    pub raw_packet_limit: i64,
    #[serde(rename = "HeaderSize", skip_serializing_if = "is_zero_i64")]
    pub header_size: i64,
    #[serde(rename = "ExtraTCPMetric")]
    pub extra_tcp_metric: bool,
    #[serde(rename = "IPDefrag")]
    pub ip_defrag: bool,
    #[serde(rename = "ReassembleTCP")]
    pub reassemble_tcp: bool,
    #[serde(rename = "LayerKeyMode", skip_serializing_if = "String::is_empty")]
    pub layer_key_mode: String,
    #[serde(rename = "ExtraLayers", skip_serializing_if = "is_zero_i64")]
    pub extra_layers: i64,
    #[serde(rename = "Target", skip_serializing_if = "String::is_empty")]
    pub target: String,
    /// As the client gave it: `None` when it gave none (served as `local`), so that a
    /// capture is echoed as it was sent.
    #[serde(
        rename = "TargetType",
        skip_serializing_if = "Option::is_none",
        deserialize_with = "target_type_field"
    )]
    #[schema(schema_with = target_type_schema)]
    pub target_type: Option<TargetType>,
    /// Output only: why the capture runs nowhere (its query ran out of its budget), as
    /// the placer last found it.
    #[serde(rename = "Error", skip_serializing_if = "String::is_empty")]
    #[schema(read_only)]
    pub error: String,
    /// Output only, in the answer to its creation: why it may capture nothing (its
    /// query matches no capturable interface now), one line each. Not stored.
    #[serde(rename = "Warnings", skip_serializing_if = "Vec::is_empty")]
    #[schema(read_only)]
    pub warnings: Vec<String>,
    /// Interfaces where it is active now, kept by the placer; shared by every copy.
    #[serde(skip)]
    pub active: Live,
    /// The query compiled with the server's extensions, once; shared by every copy.
    #[serde(skip)]
    pub query: StoredQuery,
}

/// A capture's Gremlin query, compiled the first time the placer needs it and kept
/// with the capture (every copy of the resource shares it), so placement evaluates it
/// without parsing it again. Not part of what a capture is: it follows `GremlinQuery`.
#[derive(Clone, Default)]
pub struct StoredQuery(std::sync::Arc<std::sync::OnceLock<Result<Compiled, InvalidQuery>>>);

/// A stored query that does not compile with the server's extensions.
#[derive(Debug, thiserror::Error)]
#[error("Not a valid Gremlin expression: {0}")]
pub struct InvalidQuery(#[from] CompileError);

impl StoredQuery {
    /// The compiled query, compiling `text` with `ext` on first use.
    pub fn get(&self, text: &str, ext: &Extensions) -> Result<&Compiled, &InvalidQuery> {
        self.0.get_or_init(|| Ok(compile(text, ext)?)).as_ref()
    }
}

impl PartialEq for StoredQuery {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl std::fmt::Debug for StoredQuery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StoredQuery")
    }
}

/// The placer's live count of a capture, shared by every copy of the resource. It is
/// not part of what a capture is: two captures compare equal whatever their counts.
#[derive(Debug, Clone, Default)]
pub struct Live(std::sync::Arc<super::placer::ActiveOn>);

impl PartialEq for Live {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl std::ops::Deref for Live {
    type Target = super::placer::ActiveOn;

    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

fn is_zero_i64(v: &i64) -> bool {
    *v == 0
}

impl Capture {
    /// Checks every field; the error is Skydive's `"<Field>: <reason>"`.
    pub fn validate(&self) -> Result<(), Error> {
        super::flows::compile_query(&self.gremlin_query).map_err(|e| {
            Error::invalid(format!("GremlinQuery: Not a valid Gremlin expression: {e}"))
        })?;
        self.validate_parameters()
    }

    /// Checks every field but the Gremlin query (also used for pcap uploads, which have
    /// none).
    pub fn validate_parameters(&self) -> Result<(), Error> {
        if !self.bpf_filter.is_empty() {
            validate_bpf(&self.bpf_filter).map_err(|e| {
                Error::invalid(format!("BPFFilter: Not a valid BPF expression: {e}"))
            })?;
        }
        if !self.capture_type.is_empty() && !CAPTURE_TYPES.contains(&self.capture_type.as_str()) {
            return Err(Error::invalid(format!(
                "Type: Not a valid capture type: {}, available types: [{}]",
                self.capture_type,
                CAPTURE_TYPES.join(" ")
            )));
        }
        if !(0..=65_535).contains(&self.port) {
            return Err(Error::invalid("Port: A valid port is >= 0 && <= 65535"));
        }
        if self.header_size != 0 && !(14..=4096).contains(&self.header_size) {
            return Err(Error::invalid(
                "HeaderSize: A valid header size is >= 14 && <= 4096",
            ));
        }
        if !(0..=10).contains(&self.raw_packet_limit) {
            return Err(Error::invalid(
                "RawPacketLimit: A valid raw packet limit size is >= 0 && <= 10",
            ));
        }
        if !self.layer_key_mode.is_empty()
            && !LAYER_KEY_MODES.contains(&self.layer_key_mode.as_str())
        {
            return Err(Error::invalid(format!(
                "LayerKeyMode: Not a valid layer key mode: {}, available modes: [L2 L3]",
                self.layer_key_mode
            )));
        }
        let kind = self.target_kind();
        if !self.target.is_empty() {
            parse_target(&self.target)
                .map_err(|e| Error::invalid(format!("Target: Not a valid address: {e}")))?;
        }
        if kind.is_export() && self.target.is_empty() {
            return Err(Error::invalid(format!(
                "Target: a {kind} target needs an address (host:port; port 0 for ERSPAN)"
            )));
        }
        if !kind.is_export() && !self.target.is_empty() {
            return Err(Error::invalid("TargetType: a Target needs a TargetType"));
        }
        if let (Some(usual), Ok((_, 0))) = (kind.usual_port(), parse_target(&self.target)) {
            return Err(Error::invalid(format!(
                "Target: a {kind} target needs a port ({usual} is usual)"
            )));
        }
        if kind == TargetType::Ipfix && self.sampling_rate > 1 {
            return Err(Error::invalid(format!(
                "SamplingRate: the ipfix target does not sample (SamplingRate {}: use 1, or the \
                 sflow or netflowv5 target)",
                self.sampling_rate
            )));
        }
        Ok(())
    }

    /// Fills the defaults Skydive applies (`New()`), after validation.
    pub fn apply_defaults(&mut self) {
        if self.layer_key_mode.is_empty() {
            self.layer_key_mode = "L2".into();
        }
        if self.sampling_rate == 0 {
            self.sampling_rate = 1;
        }
    }

    /// Where its traffic goes.
    pub fn target_kind(&self) -> TargetType {
        self.target_type.unwrap_or_default()
    }

    /// The engine that serves this capture.
    pub fn engine(&self) -> &str {
        if self.capture_type.is_empty() {
            "pcap"
        } else {
            &self.capture_type
        }
    }

    /// The engine that serves this capture on a node of type `node_type`: its `Type`, or
    /// by default (Skydive's) `ovssflow` on an OVS bridge, `ovsmirror` on an OVS port
    /// and `pcap` elsewhere.
    pub fn engine_on(&self, node_type: Option<&str>) -> &str {
        use topotap_topology::schema::node_type::{OVSBRIDGE, OVSPORT};
        match (self.capture_type.as_str(), node_type) {
            ("", Some(OVSBRIDGE)) => "ovssflow",
            ("", Some(OVSPORT)) => "ovsmirror",
            ("", _) => "pcap",
            (t, _) => t,
        }
    }

    /// The UDP or TCP port a socket input listens on: `Port`, or for `sflow` 6343 when
    /// it is 0 (an ephemeral port for `pcapsocket`).
    pub fn listen_port(&self) -> u16 {
        match (self.engine(), u16::try_from(self.port).unwrap_or(0)) {
            ("sflow", 0) => topotap_targets::wire::sflow5::DEFAULT_PORT,
            (_, p) => p,
        }
    }

    /// Bytes of each frame captured.
    pub fn snaplen(&self) -> u32 {
        if self.header_size == 0 {
            DEFAULT_SNAPLEN
        } else {
            self.header_size as u32
        }
    }

    /// Two captures are duplicates when they would capture the same traffic to the same
    /// place.
    pub fn duplicates(&self, other: &Capture) -> bool {
        self.gremlin_query == other.gremlin_query
            && self.engine() == other.engine()
            && self.bpf_filter == other.bpf_filter
            && self.port == other.port
            && self.target == other.target
            && self.target_type == other.target_type
    }
}

/// Compiles a filter for Ethernet frames with libpcap, without any interface.
pub fn validate_bpf(filter: &str) -> Result<(), pcap::Error> {
    pcap::Capture::dead(pcap::Linktype::ETHERNET)?
        .compile(filter, true)
        .map(|_| ())
}

/// Why a capture's `Target` is not an address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadTarget {
    #[error("{0}: missing port (host:port)")]
    MissingPort(String),
    #[error("{target}: invalid port {port:?}")]
    InvalidPort { target: String, port: String },
    #[error("{0}: missing host")]
    MissingHost(String),
    #[error("{0}: IPv6 addresses go in brackets ([::1]:2055)")]
    BareIpv6(String),
    #[error("{target}: invalid host name {host:?}")]
    InvalidHost { target: String, host: String },
}

/// A capture target address: `host:port` with an IPv4/IPv6 literal (`[::1]:2055`) or a
/// host name; a bare port means localhost. Returns host and port, unresolved.
pub fn parse_target(target: &str) -> Result<(String, u16), BadTarget> {
    if let Ok(port) = target.parse::<u16>() {
        return Ok(("localhost".into(), port));
    }
    if let Ok(sa) = target.parse::<SocketAddr>() {
        return Ok((sa.ip().to_string(), sa.port()));
    }
    let (host, port) = target
        .rsplit_once(':')
        .ok_or_else(|| BadTarget::MissingPort(target.to_owned()))?;
    let port: u16 = port.parse().map_err(|_| BadTarget::InvalidPort {
        target: target.to_owned(),
        port: port.to_owned(),
    })?;
    if host.is_empty() {
        return Err(BadTarget::MissingHost(target.to_owned()));
    }
    if host.contains(':') && host.parse::<IpAddr>().is_err() {
        return Err(BadTarget::BareIpv6(target.to_owned()));
    }
    let valid = host
        .split('.')
        .all(|l| !l.is_empty() && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'));
    if !valid {
        return Err(BadTarget::InvalidHost {
            target: target.to_owned(),
            host: host.to_owned(),
        });
    }
    Ok((host.to_owned(), port))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn capture(q: &str) -> Capture {
        Capture {
            gremlin_query: q.into(),
            ..Default::default()
        }
    }

    #[test]
    fn python_client_body_is_accepted() {
        let body = r#"{"GremlinQuery":"G.V().Has('Name','eth0')","LayerKeyMode":"L2","PollingInterval":10,
            "SamplingRate":1,"BPFFilter":"icmp","Name":"","Type":"","HeaderSize":0,"RawPacketLimit":0,
            "ExtraTCPMetric":false,"IPDefrag":false,"ReassembleTCP":false,"ExtraLayers":0,"Port":0,"Unknown":1}"#;
        let c: Capture = serde_json::from_str(body).unwrap();
        c.validate().unwrap();
        let json = serde_json::to_value(&c).unwrap();
        assert!(json.get("Name").is_none(), "omitempty: {json}");
        assert_eq!(json["Count"], 0);
        assert_eq!(json["SamplingRate"], 1);
    }

    #[test]
    fn validation_names_the_field() {
        let cases = [
            (capture(""), "GremlinQuery: Not a valid Gremlin expression"),
            (capture("G.V().Has("), "GremlinQuery:"),
            (
                Capture {
                    bpf_filter: "tcp portt 80".into(),
                    ..capture("G.V()")
                },
                "BPFFilter: Not a valid BPF expression",
            ),
            (
                Capture {
                    capture_type: "ebpf".into(),
                    ..capture("G.V()")
                },
                "Type: Not a valid capture type: ebpf, available types: [pcap afpacket sflow pcapsocket ovssflow ovsmirror]",
            ),
            (
                Capture {
                    header_size: 10,
                    ..capture("G.V()")
                },
                "HeaderSize",
            ),
            (
                Capture {
                    raw_packet_limit: -1,
                    ..capture("G.V()")
                },
                "RawPacketLimit",
            ),
            (
                Capture {
                    layer_key_mode: "L4".into(),
                    ..capture("G.V()")
                },
                "LayerKeyMode",
            ),
            (
                Capture {
                    target: "1.2.3.4".into(),
                    target_type: Some(TargetType::Local),
                    ..capture("G.V()")
                },
                "Target: Not a valid address",
            ),
        ];
        let unknown_step = capture("G.V().Nope()");
        assert_eq!(
            unknown_step.validate().unwrap_err(),
            Error::invalid(
                "GremlinQuery: Not a valid Gremlin expression: line 1, column 7: unknown step 'Nope'"
            )
        );
        assert!(capture("G.V().Has('Name', NOPE('x'))").validate().is_err());
        // Extension steps and the steps of their values compile.
        capture("G.Flows().Has('Network', '127.0.0.1').CaptureNode()")
            .validate()
            .unwrap();
        for (c, want) in cases {
            let Err(Error::Invalid(err)) = c.validate() else {
                panic!("{c:?} should be invalid");
            };
            assert!(err.starts_with(want), "{err:?} should start with {want:?}");
        }
    }

    #[test]
    fn target_types_round_trip_and_match_the_ui() {
        for (t, name) in TargetType::ALL.iter().zip(TargetType::NAMES) {
            assert_eq!(name.parse::<TargetType>(), Ok(*t));
            assert_eq!(TargetType::from_field(name), Ok(Some(*t)));
            assert_eq!(t.as_str(), name);
            assert_eq!(serde_json::to_value(t).unwrap(), name);
        }
        assert_eq!(TargetType::from_field(""), Ok(None));
        assert_eq!(
            "Local".parse::<TargetType>(),
            Err(UnknownTargetType("Local".into()))
        );
        // The web UI offers the same list.
        let js = include_str!("../../web/ui/js/panels/captures.js");
        let line = js
            .lines()
            .find(|l| l.contains("export const TARGET_TYPES"))
            .expect("TARGET_TYPES in captures.js");
        let mut ui: Vec<&str> = line.split('\'').skip(1).step_by(2).collect();
        let mut ours = TargetType::NAMES.to_vec();
        ui.sort_unstable();
        ours.sort_unstable();
        assert_eq!(ui, ours, "web/ui/js/panels/captures.js: {line}");
        // And the same capture types.
        let line = js
            .lines()
            .find(|l| l.contains("export const CAPTURE_TYPES"))
            .expect("CAPTURE_TYPES in captures.js");
        let ui: Vec<&str> = line.split('\'').skip(1).step_by(2).collect();
        assert_eq!(ui, CAPTURE_TYPES, "web/ui/js/panels/captures.js: {line}");
    }

    #[test]
    fn target_types_are_parsed_with_the_capture_and_echoed_as_sent() {
        let parse = |body: Value| serde_json::from_value::<Capture>(body);
        for (sent, typed) in [
            (json!({"GremlinQuery": "G.V()"}), None),
            (json!({"GremlinQuery": "G.V()", "TargetType": ""}), None),
            (json!({"GremlinQuery": "G.V()", "TargetType": null}), None),
            (
                json!({"GremlinQuery": "G.V()", "TargetType": "local"}),
                Some(TargetType::Local),
            ),
            (
                json!({"GremlinQuery": "G.V()", "TargetType": "sflow", "Target": "127.0.0.1:6343"}),
                Some(TargetType::Sflow),
            ),
        ] {
            let c = parse(sent.clone()).unwrap();
            assert_eq!(c.target_type, typed, "{sent}");
            c.validate().unwrap();
            let echoed = serde_json::to_value(&c).unwrap();
            let given = sent
                .get("TargetType")
                .filter(|t| !matches!(t.as_str(), None | Some("")));
            assert_eq!(echoed.get("TargetType"), given, "{sent} -> {echoed}");
        }
        // An unknown type is refused with the field named (the API prefixes the path)
        // and the list of the known ones.
        let e = parse(json!({"GremlinQuery": "G.V()", "TargetType": "carrier-pigeon"}))
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "Not a valid target type: carrier-pigeon, available types: \
             [local sflow erspanv1 erspanv2 netflowv5 ipfix]"
        );
    }

    /// Lines of `captures.log` as the version before `TargetType` was typed wrote them
    /// (`Store` framing: CRC32 then the JSON record).
    #[tokio::test]
    async fn captures_stored_with_string_target_types_still_load() {
        let records = [
            r#"{"Put":{"resource":{"UUID":"9b0c6a52-7a4c-4d3f-8a39-1b6f1c3e2a10","GremlinQuery":"G.V().Has('Name', 'eth0')","Count":0,"SamplingRate":1,"PollingInterval":0,"ExtraTCPMetric":false,"IPDefrag":false,"ReassembleTCP":false,"LayerKeyMode":"L2","Target":"127.0.0.1:2055","TargetType":"netflowv5"}}}"#,
            r#"{"Put":{"resource":{"UUID":"3f1e2d4c-5b6a-4978-8c1d-2e3f4a5b6c7d","GremlinQuery":"G.V().Has('Type', 'veth')","Count":0,"SamplingRate":1,"PollingInterval":0,"ExtraTCPMetric":false,"IPDefrag":false,"ReassembleTCP":false,"LayerKeyMode":"L2"}}}"#,
        ];
        let dir = tempfile::tempdir().unwrap();
        let mut log = Vec::new();
        for r in records {
            log.extend_from_slice(
                format!("{:08x} {r}\n", crc32fast::hash(r.as_bytes())).as_bytes(),
            );
        }
        std::fs::write(dir.path().join("captures.log"), log).unwrap();
        let store = crate::resources::Store::<Capture>::open(Some(dir.path()));
        assert_eq!(store.persist_error(), None);
        let nf = store
            .get("9b0c6a52-7a4c-4d3f-8a39-1b6f1c3e2a10")
            .expect("loaded");
        assert_eq!(nf.target_type, Some(TargetType::NetflowV5));
        assert_eq!(nf.target_kind(), TargetType::NetflowV5);
        assert_eq!(nf.target, "127.0.0.1:2055");
        let local = store
            .get("3f1e2d4c-5b6a-4978-8c1d-2e3f4a5b6c7d")
            .expect("loaded");
        assert_eq!(local.target_type, None);
        assert_eq!(local.target_kind(), TargetType::Local);
        // And written back the same way.
        let line = serde_json::to_string(&nf).unwrap();
        assert!(line.contains(r#""TargetType":"netflowv5""#), "{line}");
    }

    #[test]
    fn targets_parse_like_skydive() {
        assert_eq!(parse_target("2055").unwrap(), ("localhost".into(), 2055));
        assert_eq!(parse_target("[::1]:2055").unwrap(), ("::1".into(), 2055));
        assert_eq!(parse_target("10.0.0.9:0").unwrap(), ("10.0.0.9".into(), 0));
        assert_eq!(
            parse_target("collector.lab:6343").unwrap(),
            ("collector.lab".into(), 6343)
        );
        for bad in ["", "host", "host:", ":80", "::1:2055", "a b:1", "h:99999"] {
            assert!(parse_target(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn bpf_compiles_without_an_interface() {
        validate_bpf("icmp or (udp and port 53)").unwrap();
        assert!(validate_bpf("icmp and").is_err());
    }
}
