//! The `erspanv1` (ERSPAN Type II) and `erspanv2` (Type III) targets: every captured frame is mirrored
//! to the target host in GRE over a raw IPv4 or IPv6 socket opened in topotap's namespace.
//!
//! The session id is a stable hash of the capture's UUID into 1..=1023 (Skydive has no field for it and
//! hard-codes 1): the same capture always mirrors under the same id, and captures rarely share one.
//! Each interface a capture runs on is its own session state (GRE sequence from 0); Type II tells them
//! apart by `Index`, the interface's ifIndex. The target's port is ignored (`host:0`). Frames of
//! non-Ethernet links (tun devices) are not mirrored: ERSPAN carries Ethernet frames.
//!
//! Encoded packets wait in a preallocated arena and leave in one `sendmmsg` when it holds
//! [`MAX_BATCH`] packets or [`ARENA_BYTES`], or when the capture thread has no more frames ready
//! ([`PacketSink::flush`], at the latest after the ring's block timeout), before every tick and at the
//! end: one syscall per batch instead of one per frame, in capture (= sequence) order.

use std::sync::Arc;

use topotap_targets::export::erspan::{ErspanConfig, ErspanSession, ErspanVersion};
use topotap_targets::packet::{LinkType, Timestamp};
use topotap_targets::send::{GreSender, MAX_BATCH};

use super::{resolve_collector, Collector, OpenError};
use crate::capture::engine::{ExportStats, PacketSink};
use crate::capture::placer::Target;
use crate::capture::Capture;

/// Bytes of encoded packets buffered before a send (a larger packet is sent alone).
pub const ARENA_BYTES: usize = 64 * 1024;

/// Mirrors one capture point's frames to an ERSPAN collector.
pub struct ErspanSink {
    session: ErspanSession,
    sender: GreSender,
    stats: Arc<ExportStats>,
    skipped_link: bool,
    pending: Pending,
}

impl ErspanSink {
    /// Resolves the target host and opens the raw GRE socket (needs CAP_NET_RAW); the error says why
    /// not, for the capture's `Error`.
    pub fn open(
        capture: &Capture,
        target: &Target,
        version: ErspanVersion,
    ) -> Result<Self, OpenError> {
        let kind = capture.target_kind();
        let Collector::Gre(peer) = resolve_collector(kind, &capture.target)? else {
            return Err(OpenError::Target(format!("{kind} is not an ERSPAN target")));
        };
        let sender = GreSender::open(peer).map_err(OpenError::socket("raw GRE", peer))?;
        // Never stall the capture thread on a full socket buffer: such sends fail and are counted.
        sender
            .set_nonblocking(true)
            .map_err(OpenError::socket("raw GRE", peer))?;
        let session = ErspanSession::new(ErspanConfig {
            version,
            session_id: session_id(&capture.uuid),
            if_index: u32::try_from(target.if_index).unwrap_or(0),
        })
        .map_err(|e| OpenError::Config(e.to_string()))?;
        Ok(Self {
            session,
            stats: ExportStats::new(sender.counters(), peer),
            sender,
            skipped_link: false,
            pending: Pending::new(),
        })
    }

    fn send_pending(&mut self) {
        self.pending.send(&self.sender);
    }
}

/// Encoded GRE packets not sent yet, back to back in a buffer allocated once.
struct Pending {
    arena: Vec<u8>,
    /// Where each packet in `arena` ends.
    ends: Vec<usize>,
}

impl Pending {
    fn new() -> Self {
        Self {
            // Never grows: a batch holds at most ARENA_BYTES, or one larger packet alone, and
            // no GRE packet reaches 64 KiB.
            arena: Vec::with_capacity(ARENA_BYTES),
            ends: Vec::with_capacity(MAX_BATCH),
        }
    }

    /// Whether `len` more bytes go in the same batch.
    fn has_room(&self, len: usize) -> bool {
        self.ends.is_empty()
            || (self.ends.len() < MAX_BATCH && self.arena.len() + len <= ARENA_BYTES)
    }

    fn push(&mut self, packet: &[u8]) {
        self.arena.extend_from_slice(packet);
        self.ends.push(self.arena.len());
    }

    /// Sends the buffered packets, in order, with one `sendmmsg` (the sender counts the outcome).
    fn send(&mut self, sender: &GreSender) {
        if self.ends.is_empty() {
            return;
        }
        let mut start = 0;
        let packets: [&[u8]; MAX_BATCH] = std::array::from_fn(|i| match self.ends.get(i) {
            Some(&end) => {
                let p = &self.arena[start..end];
                start = end;
                p
            }
            None => &[],
        });
        sender.send_batch(&packets[..self.ends.len()]);
        self.arena.clear();
        self.ends.clear();
    }
}

impl PacketSink for ErspanSink {
    fn packet(&mut self, link: LinkType, ts: Timestamp, orig_len: u32, data: &[u8]) {
        if link != LinkType::Ethernet {
            if !self.skipped_link {
                self.skipped_link = true;
                self.stats.counters().set_note(format!(
                    "link type {} is not Ethernet: frames are not mirrored",
                    link.to_u32()
                ));
            }
            return;
        }
        let packet = match self.session.encode(ts, orig_len, data) {
            Ok(p) => p,
            Err(e) => {
                self.stats.counters().record_unsent(e.to_string());
                return;
            }
        };
        if !self.pending.has_room(packet.len()) {
            self.pending.send(&self.sender);
        }
        self.pending.push(packet);
        if self.pending.ends.len() == MAX_BATCH {
            self.pending.send(&self.sender);
        }
    }

    fn flush(&mut self) {
        self.send_pending();
    }

    fn tick(&mut self, _now: Timestamp) {
        self.send_pending();
    }

    fn finish(&mut self, _now: Timestamp) {
        self.send_pending();
    }

    fn export_stats(&self) -> Option<Arc<ExportStats>> {
        Some(self.stats.clone())
    }
}

/// A capture's ERSPAN session id: FNV-1a of its UUID mapped onto 1..=1023.
pub fn session_id(capture_uuid: &str) -> u16 {
    (1 + fnv1a(capture_uuid.as_bytes()) % 1023) as u16
}

/// 64-bit FNV-1a: a stable hash (unlike `DefaultHasher`, the same across runs and builds).
pub(crate) fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_ids_are_stable_and_in_range() {
        let a = session_id("8e1f2a4c-0000-4000-8000-000000000001");
        assert_eq!(a, session_id("8e1f2a4c-0000-4000-8000-000000000001"));
        assert_ne!(a, session_id("8e1f2a4c-0000-4000-8000-000000000002"));
        for i in 0..5000 {
            assert!((1..=1023).contains(&session_id(&format!("uuid-{i}"))));
        }
        // FNV-1a test vector.
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    }
}
