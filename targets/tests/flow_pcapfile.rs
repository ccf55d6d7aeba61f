//! pcap reader/writer round trips, clear errors on bad input, no panics on arbitrary bytes.

use proptest::prelude::*;
use topotap_targets::flow::synth::{udp_frame, udp_pcap, FRAME_LEN};
use topotap_targets::flow::{FlowTable, FlowTableConfig};
use topotap_targets::packet::{decode, LinkType, Timestamp};
use topotap_targets::pcapfile::{PcapError, PcapReader, PcapStream, PcapWriter};

#[test]
fn writer_round_trip_micro_and_nano() {
    for nanos in [false, true] {
        let mut w = PcapWriter::with_resolution(Vec::new(), LinkType::Ethernet, 64, nanos).unwrap();
        let big = vec![7u8; 100];
        w.write_packet(
            Timestamp::from_nanos(1_700_000_000_123_456_789),
            60,
            &[1, 2, 3],
        )
        .unwrap();
        w.write_packet(Timestamp::from_secs(5), 1500, &big).unwrap();
        let bytes = w.into_inner();
        let mut r = PcapReader::new(&bytes).unwrap();
        assert_eq!(r.link_type(), Some(LinkType::Ethernet));
        let a = r.next().unwrap().unwrap();
        let expect = if nanos {
            Timestamp::from_nanos(1_700_000_000_123_456_789)
        } else {
            Timestamp::from_micros(1_700_000_000_123_456)
        };
        assert_eq!(
            (a.timestamp, a.orig_len, a.data),
            (expect, 60, &[1u8, 2, 3][..])
        );
        let b = r.next().unwrap().unwrap();
        assert_eq!((b.orig_len, b.data.len()), (1500, 64), "cut to the snaplen");
        assert!(r.next().is_none());
    }
}

#[test]
fn synthetic_pcap_feeds_the_flow_table() {
    let bytes = udp_pcap(10_000, 100);
    let mut table = FlowTable::new(FlowTableConfig::default());
    let mut n = 0;
    for rec in PcapReader::new(&bytes).unwrap() {
        let rec = rec.unwrap();
        assert_eq!(rec.data.len(), FRAME_LEN);
        table.process(
            rec.timestamp,
            &decode(rec.link_type, rec.data),
            rec.orig_len,
        );
        n += 1;
    }
    assert_eq!(n, 10_000);
    assert_eq!(table.len(), 100);
    for f in table.flows() {
        let m = f.metric();
        assert_eq!(m.ab_packets + m.ba_packets, 100);
        assert_eq!(m.ba_packets, 25, "every fourth round goes B->A");
        assert_eq!(f.layers_path().to_string(), "Ethernet/IPv4/UDP");
    }
    assert_eq!(udp_frame(3, false).len(), 64);
}

#[test]
fn truncated_and_foreign_files_are_clear_errors() {
    let bytes = udp_pcap(3, 1);
    let cut = &bytes[..bytes.len() - 10];
    let results: Vec<_> = PcapReader::new(cut).unwrap().collect();
    assert_eq!(results.len(), 3);
    let err = results[2].clone().unwrap_err();
    let offset = 24 + 2 * (16 + FRAME_LEN);
    assert_eq!(err, PcapError::TruncatedRecord(offset));
    assert_eq!(
        err.to_string(),
        format!("truncated packet record at offset {offset}")
    );
    // A record header cut in the middle.
    let results: Vec<_> = PcapReader::new(&bytes[..24 + 8]).unwrap().collect();
    assert_eq!(results, vec![Err(PcapError::TruncatedRecord(24))]);

    let err = PcapReader::new(b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0")
        .err()
        .unwrap();
    assert_eq!(err.to_string(), "not a pcap file: bad magic 0x7f454c46");
    assert_eq!(
        PcapReader::new(&bytes[..10]).err(),
        Some(PcapError::TruncatedHeader(10))
    );
    assert!(PcapReader::new(&[]).is_err());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..512)) {
        if let Ok(r) = PcapReader::new(&data) {
            for rec in r.take(1000) {
                let _ = rec;
            }
        }
    }

    #[test]
    fn corrupted_pcap_never_panics(
        flips in proptest::collection::vec((0usize..700, any::<u8>()), 1..8),
        cut in 0usize..700,
        ng in any::<bool>(),
    ) {
        let mut data = if ng { pcapng_sample() } else { udp_pcap(8, 3) };
        for (at, v) in flips {
            if let Some(b) = data.get_mut(at) {
                *b = v;
            }
        }
        data.truncate(cut.max(4));
        let mut table = FlowTable::new(FlowTableConfig { max_flows: 4, ..Default::default() });
        if let Ok(r) = PcapReader::new(&data) {
            for rec in r.take(1000).flatten() {
                table.process(rec.timestamp, &decode(rec.link_type, rec.data), rec.orig_len);
            }
        }
        let _ = table.flush_all().count();
    }
}

fn block(block_type: u32, body: &[u8]) -> Vec<u8> {
    let mut body = body.to_vec();
    body.resize(body.len().next_multiple_of(4), 0);
    let total = (body.len() + 12) as u32;
    let mut b = block_type.to_le_bytes().to_vec();
    b.extend_from_slice(&total.to_le_bytes());
    b.extend_from_slice(&body);
    b.extend_from_slice(&total.to_le_bytes());
    b
}

fn pcapng_sample() -> Vec<u8> {
    let mut shb = 0x1A2B_3C4Du32.to_le_bytes().to_vec();
    shb.extend_from_slice(&[1, 0, 0, 0]);
    shb.extend_from_slice(&(-1i64).to_le_bytes());
    let mut f = block(0x0A0D_0D0A, &shb);
    f.extend(block(1, &[1, 0, 0, 0, 0, 0, 4, 0, 9, 0, 1, 0, 9, 0, 0, 0]));
    for i in 0..4u32 {
        let frame = udp_frame(i, false);
        let mut epb = 0u32.to_le_bytes().to_vec();
        epb.extend_from_slice(&0u32.to_le_bytes());
        epb.extend_from_slice(&(i * 1000).to_le_bytes());
        epb.extend_from_slice(&(frame.len() as u32).to_le_bytes());
        epb.extend_from_slice(&(frame.len() as u32).to_le_bytes());
        epb.extend_from_slice(&frame);
        f.extend(block(6, &epb));
    }
    f
}

#[test]
fn pcapng_sample_reads() {
    let data = pcapng_sample();
    let recs: Vec<_> = PcapReader::new(&data)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(recs.len(), 4);
    assert_eq!(recs[3].timestamp, Timestamp::from_nanos(3000));
    assert_eq!(recs[0].data, &udp_frame(0, false)[..]);
}

/// A source that hands out at most `step` bytes per read, as a request body arriving in pieces does.
struct Trickle<'a> {
    data: &'a [u8],
    step: usize,
}

impl std::io::Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.step.min(buf.len()).min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

/// What a stream yields: (timestamp, orig_len, data, link type) per record, then its error if any.
type Yielded = (Vec<(Timestamp, u32, Vec<u8>, LinkType)>, Option<String>);

fn streamed(data: &[u8], step: usize) -> Result<Yielded, PcapError> {
    let mut s = PcapStream::new(Trickle { data, step })?;
    let mut out = Vec::new();
    while let Some(r) = s.next_record() {
        match r {
            Ok(r) => out.push((r.timestamp, r.orig_len, r.data.to_vec(), r.link_type)),
            Err(e) => return Ok((out, Some(e.to_string()))),
        }
    }
    Ok((out, None))
}

fn in_memory(data: &[u8]) -> Result<Yielded, PcapError> {
    let mut out = Vec::new();
    for r in PcapReader::new(data)? {
        match r {
            Ok(r) => out.push((r.timestamp, r.orig_len, r.data.to_vec(), r.link_type)),
            Err(e) => return Ok((out, Some(e.to_string()))),
        }
    }
    Ok((out, None))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    /// Read as it arrives, in pieces of any size, a capture (intact, truncated or corrupted) yields
    /// exactly what it yields read whole, errors and their offsets included.
    #[test]
    fn streaming_reads_what_the_whole_file_reads(
        flips in proptest::collection::vec((0usize..900, any::<u8>()), 0..4),
        cut in 0usize..900,
        ng in any::<bool>(),
        step in 1usize..100,
    ) {
        let mut data = if ng { pcapng_sample() } else { udp_pcap(12, 3) };
        for (at, v) in flips {
            if let Some(b) = data.get_mut(at) {
                *b = v;
            }
        }
        data.truncate(cut.max(4));
        let whole = in_memory(&data).map_err(|e| e.to_string());
        let stream = streamed(&data, step).map_err(|e| e.to_string());
        match (&whole, &stream) {
            // A corrupted length beyond the streaming limit: refused there, truncated when read whole.
            (Ok((w, Some(_))), Ok((s, Some(e)))) if e.contains("bytes long, more than") => {
                prop_assert_eq!(w, s);
            }
            _ => prop_assert_eq!(whole, stream),
        }
    }
}

#[test]
fn streaming_holds_one_buffer_whatever_the_length() {
    // 200,000 frames (about 18 MB) read through a 1 MiB buffer.
    let data = udp_pcap(200_000, 100);
    let mut s = PcapStream::new(Trickle {
        data: &data,
        step: 65_536,
    })
    .unwrap();
    let mut n = 0;
    while let Some(r) = s.next_record() {
        assert_eq!(r.unwrap().data.len(), FRAME_LEN);
        n += 1;
    }
    assert_eq!(n, 200_000);
    assert_eq!(s.offset(), data.len());
}

#[test]
fn streaming_refuses_a_record_longer_than_the_limit() {
    let mut data = udp_pcap(1, 1);
    // The first record claims 64 MiB.
    data[24 + 8..24 + 12].copy_from_slice(&(64u32 << 20).to_le_bytes());
    let mut s = PcapStream::new(&data[..]).unwrap();
    let err = s.next_record().unwrap().unwrap_err();
    assert_eq!(
        err,
        PcapError::RecordTooLarge {
            offset: 24,
            len: 16 + (64 << 20)
        }
    );
    assert!(s.next_record().is_none());
    assert!(matches!(
        PcapStream::new(&b"not a pcap file at all, no"[..]),
        Err(PcapError::BadMagic(_))
    ));
}
