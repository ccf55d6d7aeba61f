//! ERSPAN Type II and Type III headers (draft-foschiano-erspan-03; Linux `include/net/erspan.h`) and the
//! whole mirrored packet as carried in GRE.
//!
//! Type II (ERSPAN version 1), 8 bytes, GRE protocol `0x88be` with the S bit:
//! ```text
//! | Ver=1 (4) | VLAN (12) | COS (3) | En (2) | T (1) | Session ID (10) |
//! | Reserved (12)                   | Index (20)                        |
//! ```
//! Type III (ERSPAN version 2), 12 bytes (+8 with O), GRE protocol `0x22eb` with the S bit:
//! ```text
//! | Ver=2 (4) | VLAN (12) | COS (3) | BSO (2) | T (1) | Session ID (10) |
//! | Timestamp (32)                                                      |
//! | SGT (16) | P (1) | FT (5) | Hw ID (6) | D (1) | Gra (2) | O (1)     |
//! | Platform specific subheader (64), present when O = 1                |
//! ```
//! Unlike Skydive's `erspanv1` target, [`Mirrored`] always sets the GRE S bit with a per-session sequence
//! number (without it decoders treat `0x88be` as Type I), masks the session id to 10 bits, takes `T`, `En`,
//! VLAN and COS from the caller, and appends no FCS. After [`Packet::new_checked`] no accessor panics
//! (accessors of the other type's fields read meaningless bits, or 0 beyond the buffer).

use super::gre;
use super::{Error, Reader, Writer};

/// ERSPAN version field of Type II.
pub const VERSION_II: u8 = 1;
/// ERSPAN version field of Type III.
pub const VERSION_III: u8 = 2;
/// Type II header length.
pub const TYPE_II_LEN: usize = 8;
/// Type III header length without the platform subheader.
pub const TYPE_III_LEN: usize = 12;
/// Length of the optional Type III platform subheader.
pub const PLATFORM_LEN: usize = 8;
/// GRE (with S) + ERSPAN II overhead in front of the mirrored frame.
pub const TYPE_II_OVERHEAD: usize = 8 + TYPE_II_LEN;

const MAX_VLAN: u16 = 0x0fff;
const MAX_SESSION_ID: u16 = 0x03ff;
const MAX_INDEX: u32 = 0x000f_ffff;

mod field {
    pub type Field = core::ops::Range<usize>;

    /// Ver, VLAN, COS, En/BSO, T, session id: common to both types.
    pub const WORD0: Field = 0..4;
    /// Type II: reserved + index. Type III: timestamp.
    pub const WORD1: Field = 4..8;
    /// Type III: SGT, P, FT, Hw ID, D, Gra, O.
    pub const WORD2: Field = 8..12;
    /// Type III platform subheader.
    pub const PLATFORM: Field = 12..20;
}

/// A read/write view of an ERSPAN Type II or Type III header followed by the mirrored frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    pub const fn new_unchecked(buffer: T) -> Self {
        Self { buffer }
    }

    pub fn new_checked(buffer: T) -> Result<Self, Error> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Checks that the header its version (and O bit) announce is present; refuses other versions.
    pub fn check_len(&self) -> Result<(), Error> {
        let available = self.buffer.as_ref().len();
        if available < 4 {
            return Err(Error::Truncated {
                field: "erspan header",
                needed: 4,
                available,
            });
        }
        let needed = match self.version() {
            VERSION_II => TYPE_II_LEN,
            VERSION_III if available < TYPE_III_LEN => TYPE_III_LEN,
            VERSION_III => TYPE_III_LEN + PLATFORM_LEN * usize::from(self.platform_present()),
            v => return Err(Error::invalid("erspan version", v)),
        };
        if available < needed {
            return Err(Error::Truncated {
                field: "erspan header",
                needed,
                available,
            });
        }
        Ok(())
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// A header word, or 0 when it lies beyond the buffer (a Type III word read on a short Type II).
    fn word(&self, range: core::ops::Range<usize>) -> u32 {
        match self.buffer.as_ref().get(range) {
            Some(&[a, b, c, d]) => u32::from_be_bytes([a, b, c, d]),
            _ => 0,
        }
    }

    pub fn version(&self) -> u8 {
        (self.word(field::WORD0) >> 28) as u8
    }

    pub fn vlan(&self) -> u16 {
        (self.word(field::WORD0) >> 16) as u16 & MAX_VLAN
    }

    pub fn cos(&self) -> u8 {
        (self.word(field::WORD0) >> 13) as u8 & 0x7
    }

    /// Type II `En` (trunk encapsulation) or Type III `BSO` (bad/short/oversized): the same two bits.
    pub fn en_bso(&self) -> u8 {
        (self.word(field::WORD0) >> 11) as u8 & 0x3
    }

    pub fn truncated(&self) -> bool {
        self.word(field::WORD0) & 0x0400 != 0
    }

    pub fn session_id(&self) -> u16 {
        self.word(field::WORD0) as u16 & MAX_SESSION_ID
    }

    /// Type II: port/ifindex of the capture point.
    pub fn index(&self) -> u32 {
        self.word(field::WORD1) & MAX_INDEX
    }

    /// Type III: timestamp in units of [`Packet::granularity`].
    pub fn timestamp(&self) -> u32 {
        self.word(field::WORD1)
    }

    /// Type III fields below need [`TYPE_III_LEN`] bytes, which `check_len` guarantees for version 2.
    pub fn sgt(&self) -> u16 {
        (self.word(field::WORD2) >> 16) as u16
    }

    pub fn pdu_frame(&self) -> bool {
        self.word(field::WORD2) & 0x8000 != 0
    }

    pub fn frame_type(&self) -> u8 {
        (self.word(field::WORD2) >> 10) as u8 & 0x1f
    }

    pub fn hw_id(&self) -> u8 {
        (self.word(field::WORD2) >> 4) as u8 & 0x3f
    }

    /// D bit: `false` ingress, `true` egress.
    pub fn egress(&self) -> bool {
        self.word(field::WORD2) & 0x8 != 0
    }

    pub fn granularity(&self) -> u8 {
        (self.word(field::WORD2) >> 1) as u8 & 0x3
    }

    pub fn platform_present(&self) -> bool {
        self.word(field::WORD2) & 0x1 != 0
    }

    /// The platform subheader, when O is set.
    pub fn platform(&self) -> Option<u64> {
        if !self.platform_present() {
            return None;
        }
        let b = self.buffer.as_ref().get(field::PLATFORM)?;
        let mut raw = [0u8; 8];
        raw.copy_from_slice(b);
        Some(u64::from_be_bytes(raw))
    }

    pub fn header_len(&self) -> usize {
        match self.version() {
            VERSION_II => TYPE_II_LEN,
            _ => TYPE_III_LEN + PLATFORM_LEN * usize::from(self.platform_present()),
        }
    }

    /// The mirrored frame.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    fn set_word(&mut self, range: core::ops::Range<usize>, v: u32) {
        self.buffer.as_mut()[range].copy_from_slice(&v.to_be_bytes());
    }

    /// Writes word 0 (the fields common to both types).
    pub fn set_word0(
        &mut self,
        version: u8,
        vlan: u16,
        cos: u8,
        en_bso: u8,
        truncated: bool,
        session_id: u16,
    ) {
        let w = u32::from(version & 0xf) << 28
            | u32::from(vlan & MAX_VLAN) << 16
            | u32::from(cos & 0x7) << 13
            | u32::from(en_bso & 0x3) << 11
            | u32::from(truncated) << 10
            | u32::from(session_id & MAX_SESSION_ID);
        self.set_word(field::WORD0, w);
    }

    /// Type II: reserved bits zero, index in the low 20 bits.
    pub fn set_index(&mut self, index: u32) {
        self.set_word(field::WORD1, index & MAX_INDEX);
    }

    /// Type III timestamp.
    pub fn set_timestamp(&mut self, ts: u32) {
        self.set_word(field::WORD1, ts);
    }

    /// Type III word 2.
    #[allow(clippy::too_many_arguments)]
    pub fn set_word2(
        &mut self,
        sgt: u16,
        pdu_frame: bool,
        frame_type: u8,
        hw_id: u8,
        egress: bool,
        granularity: u8,
        platform_present: bool,
    ) {
        let w = u32::from(sgt) << 16
            | u32::from(pdu_frame) << 15
            | u32::from(frame_type & 0x1f) << 10
            | u32::from(hw_id & 0x3f) << 4
            | u32::from(egress) << 3
            | u32::from(granularity & 0x3) << 1
            | u32::from(platform_present);
        self.set_word(field::WORD2, w);
    }

    /// Type III platform subheader (O must be set and the buffer hold 20 bytes).
    pub fn set_platform(&mut self, v: u64) {
        self.buffer.as_mut()[field::PLATFORM].copy_from_slice(&v.to_be_bytes());
    }

    pub fn payload_mut(&mut self) -> &mut [u8] {
        let start = self.header_len();
        &mut self.buffer.as_mut()[start..]
    }
}

/// Type II `En` values: how the original frame's VLAN was encapsulated.
pub mod encap {
    /// Originally without VLAN tag.
    pub const NONE: u8 = 0b00;
    pub const ISL: u8 = 0b01;
    pub const DOT1Q: u8 = 0b10;
    /// VLAN tag preserved in the mirrored frame.
    pub const PRESERVED: u8 = 0b11;
}

/// Type III timestamp granularity (`Gra`).
pub mod granularity {
    pub const MICROS_100: u8 = 0b00;
    pub const NANOS_100: u8 = 0b01;
    pub const IEEE_1588: u8 = 0b10;
    pub const PLATFORM: u8 = 0b11;
}

/// An ERSPAN Type II header.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct TypeII {
    /// Original VLAN (12 bits).
    pub vlan: u16,
    /// Class of service (3 bits).
    pub cos: u8,
    /// Trunk encapsulation, see [`encap`] (2 bits).
    pub encap: u8,
    /// The mirrored frame was truncated.
    pub truncated: bool,
    /// Session id (10 bits).
    pub session_id: u16,
    /// Port/ifindex of the capture point (20 bits).
    pub index: u32,
}

/// An ERSPAN Type III header.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct TypeIII {
    pub vlan: u16,
    pub cos: u8,
    /// Bad/short/oversized (2 bits).
    pub bso: u8,
    pub truncated: bool,
    pub session_id: u16,
    /// Timestamp in units of `granularity`.
    pub timestamp: u32,
    /// Security group tag.
    pub sgt: u16,
    /// P: the payload is an Ethernet PDU.
    pub pdu_frame: bool,
    /// Frame type (5 bits); 0 = Ethernet.
    pub frame_type: u8,
    /// Hardware id (6 bits).
    pub hw_id: u8,
    /// D: `false` ingress, `true` egress.
    pub egress: bool,
    /// Timestamp granularity, see [`granularity`] (2 bits).
    pub granularity: u8,
    /// Optional platform subheader (sets O).
    pub platform: Option<u64>,
}

/// Either header type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Repr {
    TypeII(TypeII),
    TypeIII(TypeIII),
}

fn check_bits(field: &'static str, value: u64, max: u64) -> Result<(), Error> {
    if value > max {
        return Err(Error::invalid(field, value));
    }
    Ok(())
}

impl Repr {
    /// Parses a checked header.
    pub fn parse<T: AsRef<[u8]>>(packet: &Packet<T>) -> Result<Self, Error> {
        packet.check_len()?;
        Ok(match packet.version() {
            VERSION_II => Self::TypeII(TypeII {
                vlan: packet.vlan(),
                cos: packet.cos(),
                encap: packet.en_bso(),
                truncated: packet.truncated(),
                session_id: packet.session_id(),
                index: packet.index(),
            }),
            _ => Self::TypeIII(TypeIII {
                vlan: packet.vlan(),
                cos: packet.cos(),
                bso: packet.en_bso(),
                truncated: packet.truncated(),
                session_id: packet.session_id(),
                timestamp: packet.timestamp(),
                sgt: packet.sgt(),
                pdu_frame: packet.pdu_frame(),
                frame_type: packet.frame_type(),
                hw_id: packet.hw_id(),
                egress: packet.egress(),
                granularity: packet.granularity(),
                platform: packet.platform(),
            }),
        })
    }

    /// The GRE protocol type that carries this header.
    pub const fn gre_protocol(&self) -> u16 {
        match self {
            Self::TypeII(_) => gre::PROTO_ERSPAN_II,
            Self::TypeIII(_) => gre::PROTO_ERSPAN_III,
        }
    }

    pub const fn buffer_len(&self) -> usize {
        match self {
            Self::TypeII(_) => TYPE_II_LEN,
            Self::TypeIII(h) if h.platform.is_some() => TYPE_III_LEN + PLATFORM_LEN,
            Self::TypeIII(_) => TYPE_III_LEN,
        }
    }

    /// Checks every field fits its bit width.
    pub fn validate(&self) -> Result<(), Error> {
        let (vlan, cos, two, session) = match self {
            Self::TypeII(h) => (h.vlan, h.cos, h.encap, h.session_id),
            Self::TypeIII(h) => (h.vlan, h.cos, h.bso, h.session_id),
        };
        check_bits("erspan vlan", vlan.into(), MAX_VLAN.into())?;
        check_bits("erspan cos", cos.into(), 7)?;
        check_bits("erspan en/bso", two.into(), 3)?;
        check_bits("erspan session id", session.into(), MAX_SESSION_ID.into())?;
        match self {
            Self::TypeII(h) => check_bits("erspan index", h.index.into(), MAX_INDEX.into()),
            Self::TypeIII(h) => {
                check_bits("erspan frame type", h.frame_type.into(), 0x1f)?;
                check_bits("erspan hw id", h.hw_id.into(), 0x3f)?;
                check_bits("erspan granularity", h.granularity.into(), 3)
            }
        }
    }

    /// Writes the header after validating it; the packet must hold [`Repr::buffer_len`] bytes.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Packet<T>) -> Result<(), Error> {
        self.validate()?;
        match self {
            Self::TypeII(h) => {
                packet.set_word0(
                    VERSION_II,
                    h.vlan,
                    h.cos,
                    h.encap,
                    h.truncated,
                    h.session_id,
                );
                packet.set_index(h.index);
            }
            Self::TypeIII(h) => {
                packet.set_word0(VERSION_III, h.vlan, h.cos, h.bso, h.truncated, h.session_id);
                packet.set_timestamp(h.timestamp);
                packet.set_word2(
                    h.sgt,
                    h.pdu_frame,
                    h.frame_type,
                    h.hw_id,
                    h.egress,
                    h.granularity,
                    h.platform.is_some(),
                );
                if let Some(p) = h.platform {
                    packet.set_platform(p);
                }
            }
        }
        Ok(())
    }
}

/// A mirrored frame as carried after the outer IP header: GRE (S bit, sequence) + ERSPAN + frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mirrored<'a> {
    /// GRE sequence number: packets sent before this one in the session, modulo 2^32.
    pub sequence: u32,
    pub header: Repr,
    /// The mirrored Ethernet frame (possibly truncated; no FCS).
    pub frame: &'a [u8],
}

impl<'a> Mirrored<'a> {
    /// Parses a GRE packet (starting at the GRE header). Requires the S bit (Type I is refused), and the
    /// ERSPAN version to match the GRE protocol type.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, Error> {
        let gre_packet = gre::Packet::new_checked(bytes)?;
        let gre = gre::Repr::parse(&gre_packet)?;
        let sequence = gre.sequence.ok_or(Error::invalid(
            "gre sequence bit",
            gre_packet.flags_version(),
        ))?;
        let erspan = Packet::new_checked(gre_packet.payload())?;
        let header = Repr::parse(&erspan)?;
        if header.gre_protocol() != gre.protocol {
            return Err(Error::invalid("gre protocol", gre.protocol));
        }
        let mut r = Reader::new(bytes);
        r.take(
            gre_packet.header_len() + erspan.header_len(),
            "erspan header",
        )?;
        Ok(Self {
            sequence,
            header,
            frame: r.rest(),
        })
    }

    pub fn buffer_len(&self) -> usize {
        8 + self.header.buffer_len() + self.frame.len()
    }

    /// Encodes into `buf`, returning the length.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, Error> {
        let len = self.buffer_len();
        self.header.validate()?;
        let mut w = Writer::with_room(buf, len)?;
        let gre = gre::Repr {
            protocol: self.header.gre_protocol(),
            key: None,
            sequence: Some(self.sequence),
        };
        let mut head = [0u8; 8 + TYPE_III_LEN + PLATFORM_LEN];
        gre.emit(&mut gre::Packet::new_unchecked(&mut head[..8]));
        let hlen = self.header.buffer_len();
        self.header
            .emit(&mut Packet::new_unchecked(&mut head[8..8 + hlen]))?;
        w.put(&head[..8 + hlen]);
        w.put(self.frame);
        Ok(w.used())
    }
}

/// One ERSPAN session: a header template and the GRE sequence counter (first packet 0, wraps at 2^32).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// Header written into every packet; update Type III `timestamp` per packet as needed.
    pub header: Repr,
    next_sequence: u32,
}

impl Session {
    /// Starts a session; refuses headers whose fields do not fit.
    pub fn new(header: Repr) -> Result<Self, Error> {
        header.validate()?;
        Ok(Self {
            header,
            next_sequence: 0,
        })
    }

    /// Sequence number the next packet will carry.
    pub fn next_sequence(&self) -> u32 {
        self.next_sequence
    }

    /// Encodes `frame` into `buf` and advances the sequence; on error the sequence does not move.
    pub fn encode(&mut self, frame: &[u8], buf: &mut [u8]) -> Result<usize, Error> {
        let len = Mirrored {
            sequence: self.next_sequence,
            header: self.header,
            frame,
        }
        .emit(buf)?;
        self.next_sequence = self.next_sequence.wrapping_add(1);
        Ok(len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    // Ver 1, VLAN 100, COS 5, En 3 (preserved), T 1, session 1023, index 0xabcde.
    static TYPE_II: [u8; 8] = [0x10, 0x64, 0xbf, 0xff, 0x00, 0x0a, 0xbc, 0xde];
    // Ver 2, VLAN 0xfff, COS 1, BSO 2, T 0, session 5; ts 0x01020304;
    // SGT 0xbeef, P 1, FT 0, HwID 0x2a, D 1, Gra 1, O 0.
    static TYPE_III: [u8; 12] = [
        0x2f, 0xff, 0x30, 0x05, 0x01, 0x02, 0x03, 0x04, 0xbe, 0xef, 0x82, 0xaa,
    ];

    fn type_ii() -> Repr {
        Repr::TypeII(TypeII {
            vlan: 100,
            cos: 5,
            encap: encap::PRESERVED,
            truncated: true,
            session_id: 1023,
            index: 0xabcde,
        })
    }

    fn type_iii() -> Repr {
        Repr::TypeIII(TypeIII {
            vlan: 0xfff,
            cos: 1,
            bso: 2,
            truncated: false,
            session_id: 5,
            timestamp: 0x0102_0304,
            sgt: 0xbeef,
            pdu_frame: true,
            frame_type: 0,
            hw_id: 0x2a,
            egress: true,
            granularity: granularity::NANOS_100,
            platform: None,
        })
    }

    #[test]
    fn test_deconstruct() {
        let p = Packet::new_checked(&TYPE_II[..]).unwrap();
        assert_eq!(p.version(), 1);
        assert_eq!(p.vlan(), 100);
        assert_eq!(p.cos(), 5);
        assert_eq!(p.en_bso(), 3);
        assert!(p.truncated());
        assert_eq!(p.session_id(), 1023);
        assert_eq!(p.index(), 0xabcde);
        assert_eq!(p.header_len(), 8);
        let p = Packet::new_checked(&TYPE_III[..]).unwrap();
        assert_eq!(p.version(), 2);
        assert_eq!(p.vlan(), 0xfff);
        assert_eq!(p.cos(), 1);
        assert_eq!(p.en_bso(), 2);
        assert!(!p.truncated());
        assert_eq!(p.session_id(), 5);
        assert_eq!(p.timestamp(), 0x0102_0304);
        assert_eq!(p.sgt(), 0xbeef);
        assert!(p.pdu_frame());
        assert_eq!(p.frame_type(), 0);
        assert_eq!(p.hw_id(), 0x2a);
        assert!(p.egress());
        assert_eq!(p.granularity(), 1);
        assert!(!p.platform_present());
        assert_eq!(p.platform(), None);
    }

    #[test]
    fn test_construct() {
        let mut b = [0u8; 8];
        let mut p = Packet::new_unchecked(&mut b[..]);
        p.set_word0(1, 100, 5, 3, true, 1023);
        p.set_index(0xabcde);
        assert_eq!(b, TYPE_II);
        let mut b = [0u8; 12];
        let mut p = Packet::new_unchecked(&mut b[..]);
        p.set_word0(2, 0xfff, 1, 2, false, 5);
        p.set_timestamp(0x0102_0304);
        p.set_word2(0xbeef, true, 0, 0x2a, true, 1, false);
        assert_eq!(b, TYPE_III);
    }

    #[test]
    fn test_parse() {
        assert_eq!(
            Repr::parse(&Packet::new_checked(&TYPE_II[..]).unwrap()),
            Ok(type_ii())
        );
        assert_eq!(
            Repr::parse(&Packet::new_checked(&TYPE_III[..]).unwrap()),
            Ok(type_iii())
        );
    }

    #[test]
    fn test_emit() {
        let mut b = [0xffu8; 8];
        type_ii()
            .emit(&mut Packet::new_unchecked(&mut b[..]))
            .unwrap();
        assert_eq!(b, TYPE_II);
        let mut b = [0xffu8; 12];
        type_iii()
            .emit(&mut Packet::new_unchecked(&mut b[..]))
            .unwrap();
        assert_eq!(b, TYPE_III);
    }

    #[test]
    fn mirrored_round_trip_and_bytes() {
        let frame = [0xde, 0xad, 0xbe, 0xef];
        let mut session = Session::new(type_ii()).unwrap();
        let mut buf = [0u8; 64];
        let n = session.encode(&frame, &mut buf).unwrap();
        assert_eq!(n, TYPE_II_OVERHEAD + 4);
        assert_eq!(&buf[..8], &[0x10, 0x00, 0x88, 0xbe, 0, 0, 0, 0]);
        assert_eq!(&buf[8..16], &TYPE_II);
        assert_eq!(&buf[16..n], &frame);
        let n2 = session.encode(&frame, &mut buf).unwrap();
        let parsed = Mirrored::parse(&buf[..n2]).unwrap();
        assert_eq!(parsed.sequence, 1);
        assert_eq!(parsed.header, type_ii());
        assert_eq!(parsed.frame, &frame);
        assert_eq!(session.next_sequence(), 2);
        // A buffer too small leaves the sequence alone.
        assert!(session.encode(&frame, &mut buf[..10]).is_err());
        assert_eq!(session.next_sequence(), 2);
    }

    #[test]
    fn platform_subheader() {
        let mut h = type_iii();
        if let Repr::TypeIII(t) = &mut h {
            t.platform = Some(0x1122_3344_5566_7788);
        }
        let m = Mirrored {
            sequence: u32::MAX,
            header: h,
            frame: &[1, 2, 3],
        };
        let mut buf = vec![0u8; m.buffer_len()];
        assert_eq!(m.emit(&mut buf), Ok(8 + 20 + 3));
        assert_eq!(Mirrored::parse(&buf), Ok(m));
    }

    #[test]
    fn rejects() {
        // Type I: 0x88be without S.
        let type_i = [0x00, 0x00, 0x88, 0xbe, 0x10, 0x00, 0x00, 0x01, 0, 0, 0, 1];
        assert!(matches!(
            Mirrored::parse(&type_i),
            Err(Error::Invalid {
                field: "gre sequence bit",
                ..
            })
        ));
        // Type III header under the Type II protocol number.
        let mut mixed = vec![0x10, 0x00, 0x88, 0xbe, 0, 0, 0, 0];
        mixed.extend_from_slice(&TYPE_III);
        assert!(matches!(
            Mirrored::parse(&mixed),
            Err(Error::Invalid {
                field: "gre protocol",
                ..
            })
        ));
        assert!(matches!(
            Packet::new_checked(&TYPE_III[..10]),
            Err(Error::Truncated { .. })
        ));
        let bad = Repr::TypeII(TypeII {
            session_id: 1024,
            ..Default::default()
        });
        assert!(Session::new(bad).is_err());
        let mut v3 = [0u8; 12];
        v3[0] = 0x30;
        assert!(Packet::new_checked(&v3[..]).is_err());
    }

    prop_compose! {
        fn arb_repr()(kind: bool, vlan in 0u16..=0xfff, cos in 0u8..8, two in 0u8..4, t: bool,
                      session in 0u16..=0x3ff, index in 0u32..=0xfffff, ts: u32, sgt: u16, p: bool,
                      ft in 0u8..32, hw in 0u8..64, d: bool, gra in 0u8..4, platform: Option<u64>) -> Repr {
            if kind {
                Repr::TypeII(TypeII { vlan, cos, encap: two, truncated: t, session_id: session, index })
            } else {
                Repr::TypeIII(TypeIII { vlan, cos, bso: two, truncated: t, session_id: session,
                    timestamp: ts, sgt, pdu_frame: p, frame_type: ft, hw_id: hw, egress: d,
                    granularity: gra, platform })
            }
        }
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..48)) {
            let _ = Mirrored::parse(&bytes);
            if let Ok(p) = Packet::new_checked(&bytes[..]) {
                let _ = Repr::parse(&p);
                let _ = (p.payload(), p.platform(), p.sgt(), p.index());
            }
        }

        #[test]
        fn round_trip(header in arb_repr(), sequence: u32,
                      frame in proptest::collection::vec(any::<u8>(), 0..64)) {
            let m = Mirrored { sequence, header, frame: &frame };
            let mut buf = vec![0u8; m.buffer_len()];
            prop_assert_eq!(m.emit(&mut buf), Ok(m.buffer_len()));
            prop_assert_eq!(Mirrored::parse(&buf), Ok(m));
        }
    }
}
