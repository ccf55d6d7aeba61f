//! Skydive's flow JSON (`flow/flow.go` marshalers, §6.1 of the behaviour notes) and field lookup by
//! Skydive key for the Gremlin `Flows()` step. Built on demand from the compact [`Flow`].

use serde::ser::{Serialize, SerializeStruct, Serializer};
use serde_json::{json, Value};

use super::record::{hex_id, Flow, Metric};

#[derive(serde::Serialize)]
struct LayerJson {
    #[serde(rename = "Protocol")]
    protocol: &'static str,
    #[serde(rename = "A", skip_serializing_if = "String::is_empty")]
    a: String,
    #[serde(rename = "B", skip_serializing_if = "String::is_empty")]
    b: String,
    #[serde(rename = "ID")]
    id: i64,
}

#[derive(serde::Serialize)]
struct TransportJson {
    #[serde(rename = "Protocol")]
    protocol: &'static str,
    #[serde(rename = "A")]
    a: u16,
    #[serde(rename = "B")]
    b: u16,
    #[serde(rename = "ID")]
    id: i64,
}

#[derive(serde::Serialize)]
struct IcmpJson {
    #[serde(rename = "Type")]
    icmp_type: &'static str,
    #[serde(rename = "Code", skip_serializing_if = "is_zero")]
    code: u32,
    #[serde(rename = "ID", skip_serializing_if = "is_zero")]
    id: u32,
}

fn is_zero(v: &u32) -> bool {
    *v == 0
}

impl Flow {
    fn link_json(&self) -> Option<LayerJson> {
        self.link().map(|l| LayerJson {
            protocol: "ETHERNET",
            a: l.a.to_string(),
            b: l.b.to_string(),
            id: i64::from(l.id),
        })
    }
    fn network_json(&self) -> Option<LayerJson> {
        self.network().map(|n| LayerJson {
            protocol: n.protocol(),
            a: n.a.to_string(),
            b: n.b.to_string(),
            id: 0,
        })
    }
    fn transport_json(&self) -> Option<TransportJson> {
        self.transport().map(|t| TransportJson {
            protocol: t.protocol_name(),
            a: t.a,
            b: t.b,
            id: 0,
        })
    }
    fn icmp_json(&self) -> Option<IcmpJson> {
        self.icmp().map(|i| IcmpJson {
            icmp_type: i.kind.name(),
            code: u32::from(i.code),
            id: u32::from(i.id),
        })
    }

    /// The flow as Skydive's JSON object.
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }

    /// Resolve a Skydive flow key (`Network.A`, `Transport.B`, `Metric.ABBytes`, `Link.ID`, `ICMP.Type`,
    /// `TrackingID`, `NodeTID`, `LayersPath`, ...) to its JSON value, as the `Flows()` step filters see
    /// it. Aliases: `ETHERNET.` for `Link.`, `IPV4.`/`IPV6.` for `Network.`, `TCP.`/`UDP.`/`SCTP.` for
    /// `Transport.` (the alias only resolves when the flow's protocol is that one). A bare layer name
    /// (`Network`, `Metric`, ...) gives the whole object. `FinishType` is the number, as in the JSON.
    /// `None` when the flow has no such field.
    pub fn field(&self, key: &str) -> Option<Value> {
        let (head, rest) = match key.split_once('.') {
            Some((h, r)) => (h, Some(r)),
            None => (key, None),
        };
        match (head, rest) {
            ("UUID", None) => Some(Value::String(hex_id(self.uuid()))),
            ("LayersPath", None) => non_empty(self.layers_path().to_string()),
            ("Application", None) => non_empty(self.application().to_string()),
            ("TrackingID", None) => Some(Value::String(hex_id(self.tracking_id()))),
            ("L3TrackingID", None) => self.l3_tracking_id().map(|v| Value::String(hex_id(v))),
            ("ParentUUID", None) => Some(Value::String(String::new())),
            ("NodeTID", None) => non_empty(self.node_tid().to_string()),
            ("CaptureID", None) => non_empty(self.capture_id().to_string()),
            ("Start", None) => Some(json!(self.start_ms())),
            ("Last", None) => Some(json!(self.last_ms())),
            ("RawPacketsCaptured", None) => Some(json!(self.raw_packets_captured())),
            ("FinishType", None) => self.finish_type().map(|f| json!(f as u8)),
            ("Metric", _) => metric_field(&self.metric(), rest),
            ("LastUpdateMetric", _) => metric_field(&self.last_update_metric(), rest),
            ("Link" | "ETHERNET", _) => {
                sub_field(serde_json::to_value(self.link_json()?).ok()?, rest)
            }
            ("Network", _) => sub_field(serde_json::to_value(self.network_json()?).ok()?, rest),
            ("IPV4" | "IPV6", _) => {
                let n = self.network_json()?;
                if n.protocol != head {
                    return None;
                }
                sub_field(serde_json::to_value(n).ok()?, rest)
            }
            ("Transport", _) => sub_field(serde_json::to_value(self.transport_json()?).ok()?, rest),
            ("TCP" | "UDP" | "SCTP", _) => {
                let t = self.transport_json()?;
                if t.protocol != head {
                    return None;
                }
                sub_field(serde_json::to_value(t).ok()?, rest)
            }
            ("ICMP", _) => {
                let i = self.icmp_json()?;
                match rest {
                    // Code and ID are omitted from JSON when zero, but a filter on them must still match 0.
                    Some("Type") => Some(json!(i.icmp_type)),
                    Some("Code") => Some(json!(i.code)),
                    Some("ID") => Some(json!(i.id)),
                    None => serde_json::to_value(i).ok(),
                    Some(_) => None,
                }
            }
            _ => None,
        }
    }
}

fn non_empty(s: String) -> Option<Value> {
    (!s.is_empty()).then_some(Value::String(s))
}

fn sub_field(v: Value, rest: Option<&str>) -> Option<Value> {
    match rest {
        None => Some(v),
        Some(k) => v.get(k).cloned(),
    }
}

fn metric_field(m: &Metric, rest: Option<&str>) -> Option<Value> {
    let v = match rest {
        None => return serde_json::to_value(m).ok(),
        Some("ABPackets") => m.ab_packets,
        Some("ABBytes") => m.ab_bytes,
        Some("BAPackets") => m.ba_packets,
        Some("BABytes") => m.ba_bytes,
        Some("Start") => m.start,
        Some("Last") => m.last,
        Some("RTT") => m.rtt,
        Some(_) => return None,
    };
    Some(json!(v))
}

impl Serialize for Flow {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut s = serializer.serialize_struct("Flow", 20)?;
        s.serialize_field("UUID", &hex_id(self.uuid()))?;
        let path = self.layers_path().to_string();
        if !path.is_empty() {
            s.serialize_field("LayersPath", &path)?;
            s.serialize_field("Application", self.application())?;
        }
        if let Some(l) = self.link_json() {
            s.serialize_field("Link", &l)?;
        }
        if let Some(n) = self.network_json() {
            s.serialize_field("Network", &n)?;
        }
        if let Some(t) = self.transport_json() {
            s.serialize_field("Transport", &t)?;
        }
        if let Some(i) = self.icmp_json() {
            s.serialize_field("ICMP", &i)?;
        }
        s.serialize_field("LastUpdateMetric", &self.last_update_metric())?;
        s.serialize_field("Metric", &self.metric())?;
        s.serialize_field("Start", &self.start_ms())?;
        s.serialize_field("Last", &self.last_ms())?;
        s.serialize_field("TrackingID", &hex_id(self.tracking_id()))?;
        if let Some(l3) = self.l3_tracking_id() {
            s.serialize_field("L3TrackingID", &hex_id(l3))?;
        }
        s.serialize_field("ParentUUID", "")?;
        if !self.node_tid().is_empty() {
            s.serialize_field("NodeTID", self.node_tid())?;
        }
        if !self.capture_id().is_empty() {
            s.serialize_field("CaptureID", self.capture_id())?;
        }
        s.serialize_field("RawPacketsCaptured", &self.raw_packets_captured())?;
        if let Some(f) = self.finish_type() {
            s.serialize_field("FinishType", &(f as u8))?;
        }
        s.end()
    }
}
