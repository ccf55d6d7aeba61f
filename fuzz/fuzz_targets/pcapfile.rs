//! Capture files: `PcapReader` on arbitrary bytes never panics and stops after the first error. The
//! records it yields are written back with `PcapWriter` (classic, nanosecond) and read again: same
//! data, timestamps and lengths. A classic little-endian nanosecond file that `PcapWriter` could have
//! written (header and every record) comes back byte for byte.
#![no_main]

use libfuzzer_sys::fuzz_target;
use topotap_targets::packet::Timestamp;
use topotap_targets::pcapfile::{PcapReader, PcapRecord, PcapWriter};

/// Largest timestamp a classic file holds: u32 seconds.
fn representable(ts: Timestamp) -> bool {
    ts.as_secs() <= u64::from(u32::MAX)
}

fuzz_target!(|data: &[u8]| {
    let Ok(mut reader) = PcapReader::new(data) else {
        return;
    };
    let mut records: Vec<PcapRecord<'_>> = Vec::new();
    let mut error = None;
    for item in reader.by_ref() {
        assert!(error.is_none(), "a record after an error");
        match item {
            Ok(r) => {
                assert!(r.data.len() <= data.len());
                records.push(r);
            }
            Err(e) => {
                let _ = e.to_string();
                error = Some(e);
            }
        }
    }
    assert!(reader.next().is_none(), "the reader stays finished");
    assert!(reader.offset() <= data.len());
    let Some(link_type) = records.first().map(|r| r.link_type) else {
        return;
    };

    let mut writer = PcapWriter::with_resolution(Vec::new(), link_type, u32::MAX, true)
        .expect("writes to a Vec");
    for r in &records {
        writer
            .write_packet(r.timestamp, r.orig_len, r.data)
            .expect("writes to a Vec");
    }
    let out = writer.into_inner();
    let again: Vec<PcapRecord<'_>> = PcapReader::new(&out)
        .expect("a written file opens")
        .collect::<Result<_, _>>()
        .expect("a written file reads without error");
    assert_eq!(again.len(), records.len());
    for (a, r) in again.iter().zip(&records) {
        assert_eq!(a.data, r.data);
        assert_eq!(a.orig_len, r.orig_len.max(r.data.len() as u32));
        assert_eq!(a.link_type, link_type);
        assert_eq!(a.interface, 0);
        if representable(r.timestamp) {
            assert_eq!(a.timestamp, r.timestamp);
        } else {
            assert_eq!(a.timestamp.as_secs(), u64::from(u32::MAX));
        }
    }

    // Byte-exact for what PcapWriter itself produces.
    if error.is_none() && data.len() >= 24 && data[..4] == 0xa1b2_3c4du32.to_le_bytes() {
        let snaplen = u32::from_le_bytes([data[16], data[17], data[18], data[19]]);
        let writer = PcapWriter::with_resolution(Vec::new(), link_type, snaplen, true)
            .expect("writes to a Vec");
        let header = writer.into_inner();
        let mut pos = 24;
        let mut canonical = data[..24] == header[..];
        for r in &records {
            let frac =
                u32::from_le_bytes([data[pos + 4], data[pos + 5], data[pos + 6], data[pos + 7]]);
            let incl = r.data.len() as u32;
            canonical &= frac < 1_000_000_000 && r.orig_len >= incl && incl <= snaplen;
            pos += 16 + r.data.len();
        }
        if canonical {
            let mut writer = PcapWriter::with_resolution(Vec::new(), link_type, snaplen, true)
                .expect("writes to a Vec");
            for r in &records {
                writer
                    .write_packet(r.timestamp, r.orig_len, r.data)
                    .expect("writes to a Vec");
            }
            assert_eq!(&writer.into_inner()[..], data);
        }
    }
});
