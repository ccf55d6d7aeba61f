//! ERSPAN II/III over GRE: `Mirrored::parse` and `erspan::Repr::parse` on arbitrary bytes never panic;
//! what parses emits, re-parses to the same value, and is byte-identical to the input when the input
//! carried nothing the repr drops (GRE key/checksum/obsolete bits, Type II reserved bits).
#![no_main]

use libfuzzer_sys::fuzz_target;
use topotap_targets::wire::erspan::{Mirrored, Packet, Repr, Session};
use topotap_targets::wire::gre::{self, FLAG_S};

fn type_ii_reserved_clear(header: &[u8]) -> bool {
    // Word 1 of Type II: 12 reserved bits, then the 20-bit index.
    header[4] == 0 && header[5] & 0xf0 == 0
}

fuzz_target!(|data: &[u8]| {
    // The bare ERSPAN header.
    if let Ok(first) = Repr::parse(&Packet::new_unchecked(data)) {
        let checked = Packet::new_checked(data).expect("parse implies a complete header");
        let hlen = checked.header_len();
        assert_eq!(first.buffer_len(), hlen);
        let _ = checked.payload();
        let mut buf = vec![0xa5u8; hlen];
        first
            .emit(&mut Packet::new_unchecked(&mut buf[..]))
            .expect("a parsed header validates");
        assert_eq!(Repr::parse(&Packet::new_unchecked(&buf[..])), Ok(first));
        let canonical = match first {
            Repr::TypeII(_) => type_ii_reserved_clear(data),
            Repr::TypeIII(_) => true,
        };
        if canonical {
            assert_eq!(&buf[..], &data[..hlen]);
        }
    }

    // GRE + ERSPAN + mirrored frame.
    let Ok(first) = Mirrored::parse(data) else {
        return;
    };
    let mut buf = vec![0xa5u8; first.buffer_len()];
    let n = first.emit(&mut buf).expect("a parsed packet emits");
    assert_eq!(n, buf.len());
    let second = Mirrored::parse(&buf).expect("an emitted packet parses");
    assert_eq!(first, second);

    let gre_packet = gre::Packet::new_checked(data).expect("parse implies a GRE header");
    let glen = gre_packet.header_len();
    let canonical = gre_packet.flags_version() == FLAG_S
        && match first.header {
            Repr::TypeII(_) => type_ii_reserved_clear(&data[glen..]),
            Repr::TypeIII(_) => true,
        };
    if canonical {
        assert_eq!(&buf[..], data);
    } else {
        assert!(n <= data.len());
    }

    // A session started from the parsed header encodes the same frame with sequence 0.
    let mut session = Session::new(first.header).expect("a parsed header validates");
    let mut out = vec![0u8; n];
    let len = session
        .encode(first.frame, &mut out)
        .expect("room for the frame");
    let encoded = Mirrored::parse(&out[..len]).expect("an encoded packet parses");
    assert_eq!(
        (encoded.sequence, encoded.header, encoded.frame),
        (0, first.header, first.frame)
    );
    assert_eq!(session.next_sequence(), 1);
    // One byte short: refused, and the sequence does not move.
    assert!(session.encode(first.frame, &mut out[..len - 1]).is_err());
    assert_eq!(session.next_sequence(), 1);
});
