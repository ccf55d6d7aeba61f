//! Raw packets kept per flow (a capture's `RawPacketLimit`, Skydive §4.4) and the
//! `RawPackets()` and `BPF('expr')` Gremlin steps over them.
//!
//! The first `RawPacketLimit` (1 to 10) frames of each flow are kept, as captured (at
//! most the capture's `HeaderSize`), numbered from 1 (`Index`), and counted in the
//! flow's `RawPacketsCaptured`; they go when the flow leaves the table. Memory is
//! bounded twice: a flow keeps at most [`MAX_FLOW_BYTES`], a capture point at most
//! [`MAX_CAPTURE_BYTES`]; frames beyond are not kept (and not counted).
//!
//! `G.Flows()...RawPackets()` answers `[{"<flow UUID>": [{"Timestamp", "Index",
//! "Data" (base64), "LinkType"}, ...]}]` (`[]` when no flow kept any), or a pcap file
//! of every packet when asked with `Accept: application/vnd.tcpdump.pcap`
//! ([`RawPacketSet::write_pcap`]). `BPF('expr')` keeps the packets a libpcap filter
//! accepts.
//!
//! The history keeps the frames a flow held with each of its snapshots
//! ([`encode_packets`]), so `G.At(t).Flows().RawPackets()` (and over a window, the
//! frames of each flow's latest snapshot in it) answers from the history, as JSON or
//! as a pcap file.

use std::any::Any;
use std::collections::HashMap;
use std::sync::Arc;

use base64::Engine as _;
use serde_json::{json, Map, Value};
use topotap_grammar::ast::{Param, Step, StepKind};
use topotap_targets::packet::{LinkType, Timestamp};
use topotap_targets::pcapfile::PcapWriter;
use topotap_topology::gremlin::{EvalError, ExtOutput, Output, StepExtension};
use topotap_topology::View;

use super::flows::{FlowItem, FlowRegistry, FlowSet};

/// Bytes of raw packets one flow may keep.
pub const MAX_FLOW_BYTES: usize = 64 * 1024;
/// Bytes of raw packets one capture point may keep, over all its flows.
pub const MAX_CAPTURE_BYTES: usize = 8 * 1024 * 1024;
/// Largest `RawPacketLimit` (Skydive's `flow.MaxRawPacketLimit`).
pub const MAX_RAW_PACKET_LIMIT: i64 = 10;

/// One kept frame.
#[derive(Clone, Debug)]
pub struct RawPacket {
    pub ts: Timestamp,
    /// 1 for the flow's first kept frame.
    pub index: u8,
    pub link: LinkType,
    /// Length on the wire.
    pub orig_len: u32,
    pub data: Arc<[u8]>,
}

impl RawPacket {
    fn to_json(&self) -> Value {
        json!({
            "Timestamp": self.ts.as_millis(),
            "Index": self.index,
            "Data": base64::engine::general_purpose::STANDARD.encode(&self.data),
            "LinkType": self.link.to_u32(),
        })
    }
}

/// Version of the encoding of [`encode_packets`].
const ENCODING: u8 = 1;

/// A flow's frames as the history keeps them: a version byte, then per frame its time
/// (ns), index, link type, length on the wire and captured length (little-endian) and
/// the bytes.
pub fn encode_packets(packets: &[RawPacket]) -> Vec<u8> {
    let size: usize = packets.iter().map(|p| 21 + p.data.len()).sum();
    let mut v = Vec::with_capacity(1 + size);
    v.push(ENCODING);
    for p in packets {
        v.extend_from_slice(&p.ts.as_nanos().to_le_bytes());
        v.push(p.index);
        v.extend_from_slice(&p.link.to_u32().to_le_bytes());
        v.extend_from_slice(&p.orig_len.to_le_bytes());
        v.extend_from_slice(&(p.data.len() as u32).to_le_bytes());
        v.extend_from_slice(&p.data);
    }
    v
}

/// The frames [`encode_packets`] wrote, up to the first damaged one (none for an
/// unknown version).
pub fn decode_packets(bytes: &[u8]) -> Vec<RawPacket> {
    fn u32_at(b: &[u8], at: usize) -> Option<u32> {
        Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
    }
    let mut out = Vec::new();
    let Some((&ENCODING, mut rest)) = bytes.split_first() else {
        return out;
    };
    while !rest.is_empty() {
        let Some(ts) = rest.get(..8).and_then(|b| b.try_into().ok()) else {
            break;
        };
        let (Some(&index), Some(link), Some(orig_len), Some(len)) = (
            rest.get(8),
            u32_at(rest, 9),
            u32_at(rest, 13),
            u32_at(rest, 17),
        ) else {
            break;
        };
        let Some(data) = rest.get(21..21 + len as usize) else {
            break;
        };
        out.push(RawPacket {
            ts: Timestamp::from_nanos(u64::from_le_bytes(ts)),
            index,
            link: LinkType::from_u32(link),
            orig_len,
            data: data.into(),
        });
        rest = &rest[21 + len as usize..];
    }
    out
}

/// The raw packets of one capture point, by flow UUID.
#[derive(Default)]
pub struct RawStore {
    by_flow: HashMap<u64, (usize, Vec<RawPacket>)>,
    bytes: usize,
    /// Frames not kept because a budget was spent.
    pub refused: u64,
}

impl RawStore {
    /// Keeps a frame of flow `uuid` if the budgets allow; `index` is its number in the
    /// flow. Returns whether it was kept.
    pub fn keep(&mut self, uuid: u64, index: u8, packet: RawPacket) -> bool {
        let len = packet.data.len();
        let entry = self.by_flow.entry(uuid).or_default();
        if entry.0 + len > MAX_FLOW_BYTES || self.bytes + len > MAX_CAPTURE_BYTES {
            self.refused += 1;
            if entry.1.is_empty() {
                self.by_flow.remove(&uuid);
            }
            return false;
        }
        entry.0 += len;
        entry.1.push(RawPacket { index, ..packet });
        self.bytes += len;
        true
    }

    /// Forgets a flow that left the table.
    pub fn forget(&mut self, uuid: u64) {
        if let Some((bytes, _)) = self.by_flow.remove(&uuid) {
            self.bytes -= bytes;
        }
    }

    pub fn packets_of(&self, uuid: u64) -> &[RawPacket] {
        self.by_flow.get(&uuid).map_or(&[], |(_, p)| p.as_slice())
    }
}

/// The `RawPackets()` step.
pub struct RawPacketsStep {
    pub registry: Arc<FlowRegistry>,
}

impl StepExtension for RawPacketsStep {
    fn name(&self) -> &str {
        "RawPackets"
    }

    fn check(&self, step: &Step) -> Result<(), EvalError> {
        if step.params.is_empty() {
            Ok(())
        } else {
            Err(EvalError::new("RawPackets takes no parameters"))
        }
    }

    fn value_steps(&self) -> &[&str] {
        &["BPF"]
    }

    fn apply(&self, input: Output, step: &Step, _: View<'_>) -> Result<Output, EvalError> {
        let Output::Ext(e) = input else {
            return Err(EvalError::cannot_follow(step, input.kind()));
        };
        let Some(flows) = e.as_any().downcast_ref::<FlowSet>() else {
            return Err(EvalError::cannot_follow(step, e.name()));
        };
        let mut flows_out = Vec::new();
        // Only this process' tables keep raw packets (not an analyzer's agents'); a
        // flow of the past has those of its snapshot.
        for f in &flows.0 {
            let (uuid, packets) = match f {
                FlowItem::Table(f) => (
                    format!("{:016x}", f.uuid()),
                    self.registry.raw_packets(f.capture_id(), f.uuid()),
                ),
                FlowItem::Past(p) => (
                    p.doc
                        .get("UUID")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_owned(),
                    decode_packets(&p.raw),
                ),
                FlowItem::Remote(_) => continue,
            };
            if !packets.is_empty() {
                flows_out.push((uuid, packets));
            }
        }
        Ok(Output::Ext(Box::new(RawPacketSet { flows: flows_out })))
    }
}

/// Raw packets by flow UUID, in the order of the flows.
pub struct RawPacketSet {
    pub flows: Vec<(String, Vec<RawPacket>)>,
}

impl RawPacketSet {
    /// Every packet as a pcap file, in time order. Frames of another link type than the
    /// first one's are left out (a pcap file has one).
    pub fn write_pcap(&self) -> std::io::Result<Vec<u8>> {
        let mut all: Vec<&RawPacket> = self.flows.iter().flat_map(|(_, p)| p.iter()).collect();
        all.sort_by_key(|p| p.ts);
        let link = all.first().map_or(LinkType::Ethernet, |p| p.link);
        let snaplen = all
            .iter()
            .map(|p| p.data.len())
            .max()
            .unwrap_or(0)
            .max(65_535);
        let mut w = PcapWriter::new(Vec::new(), link, snaplen as u32)?;
        for p in all.iter().filter(|p| p.link == link) {
            w.write_packet(p.ts, p.orig_len, &p.data)?;
        }
        w.flush()?;
        Ok(w.into_inner())
    }
}

impl ExtOutput for RawPacketSet {
    fn name(&self) -> &str {
        "RawPackets"
    }

    fn to_json(&self, _: View<'_>) -> Value {
        if self.flows.is_empty() {
            return Value::Array(Vec::new());
        }
        let map: Map<String, Value> = self
            .flows
            .iter()
            .map(|(k, p)| (k.clone(), p.iter().map(RawPacket::to_json).collect()))
            .collect();
        Value::Array(vec![Value::Object(map)])
    }

    fn apply_step(mut self: Box<Self>, step: &Step, _: View<'_>) -> Result<Output, EvalError> {
        match &step.kind {
            StepKind::Extension(n) if n.eq_ignore_ascii_case("BPF") => {
                let [Param::Str(expr)] = step.params.as_slice() else {
                    return Err(EvalError::new("BPF takes one filter expression"));
                };
                let mut programs: HashMap<u32, pcap::BpfProgram> = HashMap::new();
                for (_, packets) in &mut self.flows {
                    let mut kept = Vec::with_capacity(packets.len());
                    for p in packets.drain(..) {
                        let code = p.link.to_u32();
                        let program = match programs.entry(code) {
                            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                            std::collections::hash_map::Entry::Vacant(e) => e.insert(
                                pcap::Capture::dead(pcap::Linktype(code as i32))
                                    .and_then(|c| c.compile(expr, true))
                                    .map_err(|e| {
                                        EvalError::new(format!("Not a valid BPF expression: {e}"))
                                    })?,
                            ),
                        };
                        if program.filter(&p.data) {
                            kept.push(p);
                        }
                    }
                    *packets = kept;
                }
                self.flows.retain(|(_, p)| !p.is_empty());
                Ok(Output::Ext(self))
            }
            StepKind::Count => Ok(Output::Value(Value::from(
                self.flows.iter().map(|(_, p)| p.len()).sum::<usize>(),
            ))),
            _ => Err(EvalError::cannot_follow(step, "RawPackets")),
        }
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kept_frames_read_back_as_written_and_damage_stops_the_reading() {
        let frame = |i: u8, data: &[u8]| RawPacket {
            ts: Timestamp::from_nanos(1_700_000_000_123_456_789 + u64::from(i)),
            index: i,
            link: LinkType::Ethernet,
            orig_len: 1500,
            data: data.into(),
        };
        let frames = [frame(1, &[1, 2, 3]), frame(2, &[]), frame(3, &[9; 300])];
        let bytes = encode_packets(&frames);
        let back = decode_packets(&bytes);
        assert_eq!(back.len(), 3);
        for (a, b) in frames.iter().zip(&back) {
            assert_eq!(
                (a.ts, a.index, a.link, a.orig_len, &a.data),
                (b.ts, b.index, b.link, b.orig_len, &b.data)
            );
        }
        // Cut in the last frame: the whole ones before it.
        assert_eq!(decode_packets(&bytes[..bytes.len() - 1]).len(), 2);
        assert!(decode_packets(&[]).is_empty());
        assert!(decode_packets(&[99, 1, 2]).is_empty());
        assert_eq!(encode_packets(&[]), [ENCODING]);
    }
}
