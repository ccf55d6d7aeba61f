//! GRE: `Repr::parse` on arbitrary bytes never panics; a parsed header emits, re-parses to the same
//! value, and is byte-identical to the input header when the input used no flag the repr drops (C, the
//! obsolete s/Recur/flags bits).
#![no_main]

use libfuzzer_sys::fuzz_target;
use topotap_targets::wire::gre::{Packet, Repr, FLAG_K, FLAG_S};

fuzz_target!(|data: &[u8]| {
    // `Repr::parse` checks the length itself, so an unchecked view must be safe to hand it.
    let unchecked = Repr::parse(&Packet::new_unchecked(data));
    let Ok(packet) = Packet::new_checked(data) else {
        assert!(unchecked.is_err());
        return;
    };
    let _ = (packet.checksum(), packet.payload());
    let Ok(first) = Repr::parse(&packet) else {
        return;
    };
    assert_eq!(unchecked, Ok(first));

    let mut buf = vec![0xa5u8; first.buffer_len()];
    first.emit(&mut Packet::new_unchecked(&mut buf[..]));
    let reparsed = Packet::new_checked(&buf[..]).expect("an emitted header is complete");
    assert_eq!(reparsed.header_len(), buf.len());
    assert_eq!(Repr::parse(&reparsed), Ok(first));

    if packet.flags_version() & !(FLAG_K | FLAG_S) == 0 {
        assert_eq!(&buf[..], &data[..packet.header_len()]);
    }
});
