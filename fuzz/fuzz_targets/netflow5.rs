//! NetFlow v5: `Repr::parse` on arbitrary bytes never panics, and a parsed datagram re-emits to the
//! same bytes (pad fields zeroed) and re-parses to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use topotap_targets::wire::netflow5::{Repr, HEADER_LEN, RECORD_LEN};

fuzz_target!(|data: &[u8]| {
    let Ok(first) = Repr::parse(data) else {
        return;
    };
    // The decoder accepts exactly `24 + count * 48` bytes, so no shorter prefix parses.
    assert_eq!(first.buffer_len(), data.len());
    assert!(Repr::parse(&data[..data.len() - 1]).is_err());

    let mut buf = vec![0xa5u8; first.buffer_len()];
    let n = first.emit(&mut buf).expect("a parsed datagram emits");
    assert_eq!(n, data.len());
    let second = Repr::parse(&buf[..n]).expect("an emitted datagram parses");
    assert_eq!(first, second);

    // Canonical apart from the two pad fields of each record, which emit writes as zero.
    let mut expected = data.to_vec();
    for i in 0..first.records.len() {
        let r = HEADER_LEN + i * RECORD_LEN;
        expected[r + 36] = 0;
        expected[r + 46..r + 48].fill(0);
    }
    assert_eq!(&buf[..n], &expected[..]);

    // A buffer one byte short is refused, not overrun.
    let mut short = vec![0u8; n - 1];
    assert!(first.emit(&mut short).is_err());
});
