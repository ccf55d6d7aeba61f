//! The `erspanv1` (ERSPAN Type II) and `erspanv2` (Type III) targets: every captured frame is mirrored
//! to the target host in GRE over a raw IPv4 or IPv6 socket opened in topotap's namespace.
//!
//! The session id is a stable hash of the capture's UUID into 1..=1023 (Skydive has no field for it and
//! hard-codes 1): the same capture always mirrors under the same id, and captures rarely share one.
//! Each interface a capture runs on is its own session state (GRE sequence from 0); Type II tells them
//! apart by `Index`, the interface's ifIndex. The target's port is ignored (`host:0`). Frames of
//! non-Ethernet links (tun devices) are not mirrored: ERSPAN carries Ethernet frames.

use std::io;
use std::net::ToSocketAddrs;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use topotap_targets::export::erspan::{ErspanConfig, ErspanSession, ErspanVersion};
use topotap_targets::packet::{LinkType, Timestamp};
use topotap_targets::send::GreSender;

use crate::capture::engine::{ExportStats, PacketSink};
use crate::capture::placer::Target;
use crate::capture::{parse_target, Capture};

/// Mirrors one capture point's frames to an ERSPAN collector.
pub struct ErspanSink {
    session: ErspanSession,
    sender: GreSender,
    stats: Arc<ExportStats>,
    skipped_link: bool,
}

impl ErspanSink {
    /// Resolves the target host and opens the raw GRE socket (needs CAP_NET_RAW); the error says why
    /// not, for the capture's `Error`.
    pub fn open(
        capture: &Capture,
        target: &Target,
        version: ErspanVersion,
    ) -> Result<Self, String> {
        let (host, _port) = parse_target(&capture.target)?;
        let peer = (host.as_str(), 0)
            .to_socket_addrs()
            .map_err(|e| format!("cannot resolve ERSPAN target {host}: {e}"))?
            .next()
            .ok_or_else(|| format!("ERSPAN target {host} has no address"))?
            .ip();
        let sender = GreSender::open(peer)
            .map_err(|e| format!("cannot open a raw GRE socket to {peer}: {e}"))?;
        // Never stall the capture thread on a full socket buffer: such sends fail and are counted.
        sender
            .set_nonblocking(true)
            .map_err(|e| format!("cannot configure the GRE socket: {e}"))?;
        let session = ErspanSession::new(ErspanConfig {
            version,
            session_id: session_id(&capture.uuid),
            if_index: u32::try_from(target.if_index).unwrap_or(0),
        })
        .map_err(|e| e.to_string())?;
        Ok(Self {
            session,
            sender,
            stats: Arc::default(),
            skipped_link: false,
        })
    }
}

impl PacketSink for ErspanSink {
    fn packet(&mut self, link: LinkType, ts: Timestamp, orig_len: u32, data: &[u8]) {
        if link != LinkType::Ethernet {
            if !self.skipped_link {
                self.skipped_link = true;
                *self.stats.last_error.lock() = Some(format!(
                    "link type {} is not Ethernet: frames are not mirrored",
                    link.to_u32()
                ));
            }
            return;
        }
        let packet = match self.session.encode(ts, orig_len, data) {
            Ok(p) => p,
            Err(e) => {
                self.stats.send_errors.fetch_add(1, Ordering::Relaxed);
                *self.stats.last_error.lock() = Some(e.to_string());
                return;
            }
        };
        if self.sender.send(packet) {
            self.stats.messages.fetch_add(1, Ordering::Relaxed);
            self.stats.records.fetch_add(1, Ordering::Relaxed);
            self.stats
                .bytes
                .fetch_add(packet.len() as u64, Ordering::Relaxed);
        } else {
            // `send` just failed in a syscall on this thread: errno is still its error.
            let e = io::Error::last_os_error();
            self.stats.send_errors.fetch_add(1, Ordering::Relaxed);
            *self.stats.last_error.lock() = Some(format!("send to {}: {e}", self.sender.peer()));
        }
    }

    fn tick(&mut self, _now: Timestamp) {}

    fn finish(&mut self, _now: Timestamp) {}

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
