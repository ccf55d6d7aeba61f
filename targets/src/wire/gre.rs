//! GRE (RFC 2784) with the key and sequence number extensions of RFC 2890.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! |C| |K|S| Reserved0       | Ver |         Protocol Type         |
//! |      Checksum (optional)      |       Reserved1 (optional)    |
//! |                         Key (optional)                        |
//! |                  Sequence Number (optional)                   |
//! ```
//!
//! ERSPAN II/III set only S (flags word `0x1000`): an 8-byte header whose sequence number starts at 0
//! and counts packets per session modulo 2^32 (RFC 2890 §2.2).
//!
//! Checksums are parsed past but neither verified nor emitted (ERSPAN does not use them). After
//! [`Packet::new_checked`] no accessor panics.

use super::Error;

/// IP protocol number of GRE.
pub const IP_PROTOCOL: u8 = 0x2f;
/// GRE protocol type of ERSPAN Type I and II.
pub const PROTO_ERSPAN_II: u16 = 0x88be;
/// GRE protocol type of ERSPAN Type III.
pub const PROTO_ERSPAN_III: u16 = 0x22eb;
/// Length of the fixed part (flags/version + protocol type).
pub const BASE_LEN: usize = 4;

/// Checksum present.
pub const FLAG_C: u16 = 0x8000;
/// Routing present (RFC 1701, deprecated; refused).
pub const FLAG_R: u16 = 0x4000;
/// Key present.
pub const FLAG_K: u16 = 0x2000;
/// Sequence number present.
pub const FLAG_S: u16 = 0x1000;
const VERSION_MASK: u16 = 0x0007;

mod field {
    pub type Field = core::ops::Range<usize>;

    pub const FLAGS_VERSION: Field = 0..2;
    pub const PROTOCOL: Field = 2..4;
    /// Start of the optional words (checksum, key, sequence, in this order).
    pub const OPTIONS: usize = 4;
}

/// A read/write view of a GRE header and its payload.
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

    /// Checks that the fixed part and every optional word the flags announce are present.
    pub fn check_len(&self) -> Result<(), Error> {
        let available = self.buffer.as_ref().len();
        if available < BASE_LEN {
            return Err(Error::Truncated {
                field: "gre header",
                needed: BASE_LEN,
                available,
            });
        }
        let needed = self.header_len();
        if available < needed {
            return Err(Error::Truncated {
                field: "gre optional fields",
                needed,
                available,
            });
        }
        Ok(())
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    pub fn flags_version(&self) -> u16 {
        let b = &self.buffer.as_ref()[field::FLAGS_VERSION];
        u16::from_be_bytes([b[0], b[1]])
    }

    pub fn checksum_present(&self) -> bool {
        self.flags_version() & FLAG_C != 0
    }

    pub fn key_present(&self) -> bool {
        self.flags_version() & FLAG_K != 0
    }

    pub fn sequence_present(&self) -> bool {
        self.flags_version() & FLAG_S != 0
    }

    pub fn version(&self) -> u8 {
        (self.flags_version() & VERSION_MASK) as u8
    }

    pub fn protocol(&self) -> u16 {
        let b = &self.buffer.as_ref()[field::PROTOCOL];
        u16::from_be_bytes([b[0], b[1]])
    }

    /// Header length implied by the C, K and S flags.
    pub fn header_len(&self) -> usize {
        let f = self.flags_version();
        BASE_LEN
            + 4 * (usize::from(f & FLAG_C != 0)
                + usize::from(f & FLAG_K != 0)
                + usize::from(f & FLAG_S != 0))
    }

    fn key_offset(&self) -> usize {
        field::OPTIONS + 4 * usize::from(self.checksum_present())
    }

    fn sequence_offset(&self) -> usize {
        self.key_offset() + 4 * usize::from(self.key_present())
    }

    fn word(&self, at: usize) -> u32 {
        let b = &self.buffer.as_ref()[at..at + 4];
        u32::from_be_bytes([b[0], b[1], b[2], b[3]])
    }

    /// The checksum field, when C is set.
    pub fn checksum(&self) -> Option<u16> {
        self.checksum_present()
            .then(|| (self.word(field::OPTIONS) >> 16) as u16)
    }

    pub fn key(&self) -> Option<u32> {
        self.key_present().then(|| self.word(self.key_offset()))
    }

    pub fn sequence(&self) -> Option<u32> {
        self.sequence_present()
            .then(|| self.word(self.sequence_offset()))
    }

    /// The bytes after the header.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets the flags and version word; set it before the optional fields, which it positions.
    pub fn set_flags_version(&mut self, v: u16) {
        self.buffer.as_mut()[field::FLAGS_VERSION].copy_from_slice(&v.to_be_bytes());
    }

    pub fn set_protocol(&mut self, v: u16) {
        self.buffer.as_mut()[field::PROTOCOL].copy_from_slice(&v.to_be_bytes());
    }

    /// Writes the key word (K must be set).
    pub fn set_key(&mut self, v: u32) {
        let at = self.key_offset();
        self.buffer.as_mut()[at..at + 4].copy_from_slice(&v.to_be_bytes());
    }

    /// Writes the sequence word (S must be set).
    pub fn set_sequence(&mut self, v: u32) {
        let at = self.sequence_offset();
        self.buffer.as_mut()[at..at + 4].copy_from_slice(&v.to_be_bytes());
    }

    pub fn payload_mut(&mut self) -> &mut [u8] {
        let start = self.header_len();
        &mut self.buffer.as_mut()[start..]
    }
}

/// A GRE header as a value.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Repr {
    /// EtherType of the payload (`0x88be`, `0x22eb`, ...).
    pub protocol: u16,
    pub key: Option<u32>,
    pub sequence: Option<u32>,
}

impl Repr {
    /// The header of an ERSPAN Type II packet with sequence number `sequence`.
    pub const fn erspan_ii(sequence: u32) -> Self {
        Self {
            protocol: PROTO_ERSPAN_II,
            key: None,
            sequence: Some(sequence),
        }
    }

    /// The header of an ERSPAN Type III packet with sequence number `sequence`.
    pub const fn erspan_iii(sequence: u32) -> Self {
        Self {
            protocol: PROTO_ERSPAN_III,
            key: None,
            sequence: Some(sequence),
        }
    }

    /// Parses a checked packet; refuses GRE versions other than 0 and the RFC 1701 routing bit.
    pub fn parse<T: AsRef<[u8]>>(packet: &Packet<T>) -> Result<Self, Error> {
        packet.check_len()?;
        if packet.version() != 0 {
            return Err(Error::invalid("gre version", packet.version()));
        }
        if packet.flags_version() & FLAG_R != 0 {
            return Err(Error::invalid("gre flags", packet.flags_version()));
        }
        Ok(Self {
            protocol: packet.protocol(),
            key: packet.key(),
            sequence: packet.sequence(),
        })
    }

    pub const fn buffer_len(&self) -> usize {
        BASE_LEN + 4 * (self.key.is_some() as usize + self.sequence.is_some() as usize)
    }

    /// Writes the header; the packet must hold [`Repr::buffer_len`] bytes.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Packet<T>) {
        let mut flags = 0;
        if self.key.is_some() {
            flags |= FLAG_K;
        }
        if self.sequence.is_some() {
            flags |= FLAG_S;
        }
        packet.set_flags_version(flags);
        packet.set_protocol(self.protocol);
        if let Some(key) = self.key {
            packet.set_key(key);
        }
        if let Some(seq) = self.sequence {
            packet.set_sequence(seq);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    // S bit, ERSPAN II, sequence 7, then two payload bytes.
    static PACKET: [u8; 10] = [0x10, 0x00, 0x88, 0xbe, 0x00, 0x00, 0x00, 0x07, 0xaa, 0xbb];
    // K and S: key 0x01020304 precedes sequence 0xfffffffe.
    static KEYED: [u8; 12] = [
        0x30, 0x00, 0x22, 0xeb, 0x01, 0x02, 0x03, 0x04, 0xff, 0xff, 0xff, 0xfe,
    ];

    #[test]
    fn test_deconstruct() {
        let p = Packet::new_checked(&PACKET[..]).unwrap();
        assert_eq!(p.flags_version(), 0x1000);
        assert!(p.sequence_present() && !p.key_present() && !p.checksum_present());
        assert_eq!(p.version(), 0);
        assert_eq!(p.protocol(), PROTO_ERSPAN_II);
        assert_eq!(p.header_len(), 8);
        assert_eq!(p.sequence(), Some(7));
        assert_eq!(p.key(), None);
        assert_eq!(p.payload(), &[0xaa, 0xbb]);
        let k = Packet::new_checked(&KEYED[..]).unwrap();
        assert_eq!(k.key(), Some(0x0102_0304));
        assert_eq!(k.sequence(), Some(0xffff_fffe));
    }

    #[test]
    fn test_construct() {
        let mut bytes = [0u8; 10];
        let mut p = Packet::new_unchecked(&mut bytes[..]);
        p.set_flags_version(FLAG_S);
        p.set_protocol(PROTO_ERSPAN_II);
        p.set_sequence(7);
        p.payload_mut().copy_from_slice(&[0xaa, 0xbb]);
        assert_eq!(bytes, PACKET);
    }

    #[test]
    fn test_parse() {
        let p = Packet::new_checked(&PACKET[..]).unwrap();
        assert_eq!(Repr::parse(&p), Ok(Repr::erspan_ii(7)));
        let k = Packet::new_checked(&KEYED[..]).unwrap();
        assert_eq!(
            Repr::parse(&k),
            Ok(Repr {
                protocol: PROTO_ERSPAN_III,
                key: Some(0x0102_0304),
                sequence: Some(0xffff_fffe)
            })
        );
    }

    #[test]
    fn test_emit() {
        let repr = Repr::erspan_ii(7);
        assert_eq!(repr.buffer_len(), 8);
        let mut bytes = [0xffu8; 10];
        repr.emit(&mut Packet::new_unchecked(&mut bytes[..]));
        bytes[8..].copy_from_slice(&[0xaa, 0xbb]);
        assert_eq!(bytes, PACKET);
    }

    #[test]
    fn checksum_is_skipped() {
        let bytes = [
            0x90, 0x00, 0x88, 0xbe, 0x12, 0x34, 0x00, 0x00, 0x00, 0x00, 0x00, 0x09,
        ];
        let p = Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(p.checksum(), Some(0x1234));
        assert_eq!(p.sequence(), Some(9));
        assert_eq!(Repr::parse(&p), Ok(Repr::erspan_ii(9)));
    }

    #[test]
    fn rejects() {
        assert!(Packet::new_checked(&PACKET[..3]).is_err());
        assert!(matches!(
            Packet::new_checked(&PACKET[..6]),
            Err(Error::Truncated {
                field: "gre optional fields",
                ..
            })
        ));
        let pptp = [0x30, 0x81, 0x88, 0x0b, 0, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(
            Repr::parse(&Packet::new_unchecked(&pptp[..])),
            Err(Error::invalid("gre version", 1u8))
        );
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..32)) {
            if let Ok(p) = Packet::new_checked(&bytes[..]) {
                let _ = Repr::parse(&p);
                let _ = (p.checksum(), p.key(), p.sequence(), p.payload());
            }
            let _ = Repr::parse(&Packet::new_unchecked(&bytes[..]));
        }

        #[test]
        fn round_trip(protocol: u16, key: Option<u32>, sequence: Option<u32>) {
            let repr = Repr { protocol, key, sequence };
            let mut buf = vec![0u8; repr.buffer_len()];
            repr.emit(&mut Packet::new_unchecked(&mut buf[..]));
            let p = Packet::new_checked(&buf[..]).unwrap();
            prop_assert_eq!(Repr::parse(&p), Ok(repr));
        }
    }
}
