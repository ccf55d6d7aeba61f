//! The ERSPAN encoder of one capture point: each captured Ethernet frame becomes one GRE packet (S bit,
//! per-session sequence from 0) carrying an ERSPAN Type II or Type III header and the frame.
//!
//! [`ErspanSession`] is pure: it is handed frames with their capture time and returns the GRE packet to
//! send (the kernel writes the outer IPv4/IPv6 header). It fixes Skydive's `erspanv1` defects (§5.4 of
//! the behaviour notes):
//! - GRE carries the S bit and a sequence number (0, 1, 2… per session, modulo 2^32, RFC 2890 §2.2);
//! - the session id is the caller's, 10 bits;
//! - VLAN, COS and `En` describe the frame truthfully: a frame with an 802.1Q tag is mirrored with the
//!   tag, so `En` = 0b11 ("VLAN tag preserved in frame", Linux `ERSPAN_ENCAP_INFRAME`), VLAN = its VID and
//!   COS = its PCP; an untagged frame has `En` = 0, VLAN 0, COS 0;
//! - `T` is set only when the frame was truncated (captured shorter than on the wire because of the
//!   capture's `HeaderSize`, or cut to fit the largest IP packet);
//! - no FCS is appended.
//!
//! Type II carries `index` = the captured interface's ifIndex (20 bits). Type III has no index field;
//! it carries the capture timestamp in units of 100 ns (granularity 0b01, modulo 2^32: it wraps every
//! 429 s) and `P` = 1, `FT` = 0 (an Ethernet frame, as Linux sends), `Hw ID` 0, `SGT` 0, no platform
//! subheader. Its direction bit `D` is 0 (ingress): libpcap on an Ethernet link does not say which
//! way a frame went, so the bit cannot be set truthfully and is left at its default.

use crate::packet::Timestamp;
use crate::wire::erspan::{encap, granularity, Mirrored, Repr, TypeII, TypeIII, TYPE_III_LEN};
use crate::wire::Error;

/// Largest mirrored frame: what fits in a 65,535-byte IPv6 packet after GRE (8) and ERSPAN III (12).
pub const MAX_FRAME: usize = 65_535 - 40 - 8 - TYPE_III_LEN;

/// ERSPAN header type, by Skydive's target type names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErspanVersion {
    /// Type II (ERSPAN version 1, `erspanv1`).
    TypeII,
    /// Type III (ERSPAN version 2, `erspanv2`).
    TypeIII,
}

/// One session's fixed fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ErspanConfig {
    pub version: ErspanVersion,
    /// Session id, 10 bits.
    pub session_id: u16,
    /// ifIndex of the captured interface (Type II `Index`, 20 bits; larger values are masked).
    pub if_index: u32,
}

/// How a frame was described, for tests and statistics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Described {
    pub vlan: u16,
    pub cos: u8,
    pub encap: u8,
    pub truncated: bool,
}

/// An ERSPAN session for one capture point (see the module documentation).
#[derive(Debug, Clone)]
pub struct ErspanSession {
    config: ErspanConfig,
    next_sequence: u32,
    buf: Vec<u8>,
}

impl ErspanSession {
    /// Refuses a session id above 1023.
    pub fn new(config: ErspanConfig) -> Result<Self, Error> {
        if config.session_id > 0x3ff {
            return Err(Error::Invalid {
                field: "erspan session id",
                value: config.session_id.into(),
            });
        }
        Ok(Self {
            config,
            next_sequence: 0,
            buf: Vec::with_capacity(2048),
        })
    }

    pub fn config(&self) -> &ErspanConfig {
        &self.config
    }

    /// The GRE sequence number of the next packet.
    pub fn next_sequence(&self) -> u32 {
        self.next_sequence
    }

    /// Encodes a frame captured at `ts` (`orig_len` bytes on the wire, `frame` captured) as a GRE
    /// packet and advances the sequence.
    pub fn encode(&mut self, ts: Timestamp, orig_len: u32, frame: &[u8]) -> Result<&[u8], Error> {
        let frame = &frame[..frame.len().min(MAX_FRAME)];
        let d = describe(orig_len, frame);
        let header = match self.config.version {
            ErspanVersion::TypeII => Repr::TypeII(TypeII {
                vlan: d.vlan,
                cos: d.cos,
                encap: d.encap,
                truncated: d.truncated,
                session_id: self.config.session_id,
                index: self.config.if_index & 0x000f_ffff,
            }),
            ErspanVersion::TypeIII => Repr::TypeIII(TypeIII {
                vlan: d.vlan,
                cos: d.cos,
                bso: 0,
                truncated: d.truncated,
                session_id: self.config.session_id,
                timestamp: timestamp_100ns(ts),
                sgt: 0,
                pdu_frame: true,
                frame_type: 0,
                hw_id: 0,
                egress: false,
                granularity: granularity::NANOS_100,
                platform: None,
            }),
        };
        let mirrored = Mirrored {
            sequence: self.next_sequence,
            header,
            frame,
        };
        self.buf.resize(mirrored.buffer_len(), 0);
        let len = mirrored.emit(&mut self.buf)?;
        self.next_sequence = self.next_sequence.wrapping_add(1);
        Ok(&self.buf[..len])
    }
}

/// The Type III timestamp of a capture time: 100 ns units since the epoch, modulo 2^32.
pub fn timestamp_100ns(ts: Timestamp) -> u32 {
    (ts.as_nanos() / 100) as u32
}

/// VLAN, COS, `En` and `T` for a frame of `orig_len` bytes of which `frame` was captured.
pub fn describe(orig_len: u32, frame: &[u8]) -> Described {
    let truncated = (frame.len() as u64) < u64::from(orig_len);
    match frame.get(12..16) {
        Some(&[0x81, 0x00, hi, lo]) => {
            let tci = u16::from_be_bytes([hi, lo]);
            Described {
                vlan: tci & 0x0fff,
                cos: (tci >> 13) as u8,
                encap: encap::PRESERVED,
                truncated,
            }
        }
        _ => Described {
            vlan: 0,
            cos: 0,
            encap: encap::NONE,
            truncated,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::erspan::{Packet, VERSION_II, VERSION_III};
    use crate::wire::gre;

    fn untagged(len: usize) -> Vec<u8> {
        let mut f = vec![0u8; len];
        f[..6].copy_from_slice(&[0xff; 6]);
        f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        for (i, b) in f.iter_mut().enumerate().skip(14) {
            *b = i as u8;
        }
        f
    }

    fn tagged(vid: u16, pcp: u8) -> Vec<u8> {
        let mut f = untagged(64);
        let tci = u16::from(pcp) << 13 | vid;
        f.splice(12..12, [0x81, 0x00, (tci >> 8) as u8, tci as u8]);
        f
    }

    fn session(version: ErspanVersion) -> ErspanSession {
        ErspanSession::new(ErspanConfig {
            version,
            session_id: 777,
            if_index: 0x1_2345,
        })
        .unwrap()
    }

    #[test]
    fn type_ii_bytes() {
        let mut s = session(ErspanVersion::TypeII);
        let f = untagged(60);
        let out = s.encode(Timestamp::ZERO, 60, &f).unwrap().to_vec();
        assert_eq!(out.len(), 8 + 8 + 60);
        // GRE: S bit only, protocol 0x88be, sequence 0.
        assert_eq!(&out[..8], &[0x10, 0x00, 0x88, 0xbe, 0, 0, 0, 0]);
        // Ver 1, VLAN 0, COS 0, En 0, T 0, session 777 (0x309); index 0x12345.
        assert_eq!(
            &out[8..16],
            &[0x10, 0x00, 0x03, 0x09, 0x00, 0x01, 0x23, 0x45]
        );
        assert_eq!(&out[16..], &f[..], "the frame, untouched, no FCS");
        let m = Mirrored::parse(&out).unwrap();
        assert_eq!(m.sequence, 0);
        assert_eq!(
            m.header,
            Repr::TypeII(TypeII {
                vlan: 0,
                cos: 0,
                encap: encap::NONE,
                truncated: false,
                session_id: 777,
                index: 0x1_2345,
            })
        );
    }

    #[test]
    fn sequence_starts_at_zero_and_counts_per_session() {
        let mut a = session(ErspanVersion::TypeII);
        let mut b = session(ErspanVersion::TypeIII);
        let f = untagged(64);
        for i in 0..5u32 {
            let seq = Mirrored::parse(a.encode(Timestamp::ZERO, 64, &f).unwrap())
                .unwrap()
                .sequence;
            assert_eq!(seq, i);
        }
        assert_eq!(
            Mirrored::parse(b.encode(Timestamp::ZERO, 64, &f).unwrap())
                .unwrap()
                .sequence,
            0
        );
        assert_eq!((a.next_sequence(), b.next_sequence()), (5, 1));
        let mut wrap = session(ErspanVersion::TypeII);
        wrap.next_sequence = u32::MAX;
        wrap.encode(Timestamp::ZERO, 64, &f).unwrap();
        assert_eq!(wrap.next_sequence(), 0);
    }

    #[test]
    fn vlan_cos_and_encapsulation_come_from_the_tag() {
        let mut s = session(ErspanVersion::TypeII);
        let f = tagged(100, 5);
        let out = s.encode(Timestamp::ZERO, 68, &f).unwrap();
        let p = Packet::new_checked(&out[8..]).unwrap();
        assert_eq!(p.version(), VERSION_II);
        assert_eq!((p.vlan(), p.cos(), p.en_bso()), (100, 5, encap::PRESERVED));
        assert!(!p.truncated());
        assert_eq!(p.payload(), &f[..], "the tag stays in the frame");
        // An 802.1ad outer tag is not an 802.1Q tag.
        let mut qinq = tagged(100, 5);
        qinq[12..14].copy_from_slice(&[0x88, 0xa8]);
        let d = describe(68, &qinq);
        assert_eq!((d.vlan, d.encap), (0, encap::NONE));
    }

    #[test]
    fn truncation_flag_only_when_truncated() {
        let mut s = session(ErspanVersion::TypeII);
        let f = untagged(1514);
        // Captured with HeaderSize 128: 128 of 1514 bytes.
        let out = s.encode(Timestamp::ZERO, 1514, &f[..128]).unwrap();
        let p = Packet::new_checked(&out[8..]).unwrap();
        assert!(p.truncated());
        assert_eq!(p.payload().len(), 128);
        let out = s.encode(Timestamp::ZERO, 1514, &f).unwrap();
        assert!(!Packet::new_checked(&out[8..]).unwrap().truncated());
        // Frames larger than an IP packet can carry are cut and flagged.
        let huge = untagged(70_000);
        let out = s.encode(Timestamp::ZERO, 70_000, &huge).unwrap();
        assert_eq!(out.len(), 16 + MAX_FRAME);
        assert!(Packet::new_checked(&out[8..]).unwrap().truncated());
    }

    #[test]
    fn type_iii_fields() {
        let mut s = session(ErspanVersion::TypeIII);
        let f = tagged(42, 3);
        let ts = Timestamp::from_nanos(1_700_000_000_123_456_789);
        let out = s.encode(ts, 200, &f).unwrap();
        let g = gre::Packet::new_checked(out).unwrap();
        assert_eq!(g.flags_version(), gre::FLAG_S);
        assert_eq!(g.protocol(), gre::PROTO_ERSPAN_III);
        let p = Packet::new_checked(g.payload()).unwrap();
        assert_eq!(p.version(), VERSION_III);
        assert_eq!(
            (p.vlan(), p.cos(), p.en_bso()),
            (42, 3, 0),
            "BSO 0: good frame"
        );
        assert!(p.truncated(), "68 of 200 bytes");
        assert_eq!(p.session_id(), 777);
        assert_eq!(
            p.timestamp(),
            (17_000_000_001_234_567u64 % (1 << 32)) as u32
        );
        assert_eq!(p.granularity(), granularity::NANOS_100);
        assert!(p.pdu_frame());
        assert_eq!((p.frame_type(), p.hw_id(), p.egress()), (0, 0, false));
        assert_eq!(p.platform(), None);
        assert_eq!(p.payload(), &f[..]);
    }

    #[test]
    fn session_id_must_fit_ten_bits() {
        let config = ErspanConfig {
            version: ErspanVersion::TypeII,
            session_id: 1024,
            if_index: 1,
        };
        assert!(ErspanSession::new(config).is_err());
        assert!(ErspanSession::new(ErspanConfig {
            session_id: 1023,
            ..config
        })
        .is_ok());
    }
}
