//! sFlow v5: `Datagram::parse` on arbitrary bytes never panics; a parsed datagram emits to the same
//! length and the same bytes except XDR padding (written as zero), and re-parses to the same value.
//! The same samples pushed through a `DatagramBuilder` with a small budget (so that pushes fail with
//! `NoRoom` and datagrams are split) come back in order.
#![no_main]

use libfuzzer_sys::fuzz_target;
use topotap_targets::wire::sflow5::{Datagram, DatagramBuilder, Sample};
use topotap_targets::wire::Error;

fn push(b: &mut DatagramBuilder<'_>, sample: &Sample<'_>) -> Result<(), Error> {
    match sample {
        Sample::Flow(s) => b.push_flow_sample(&s.header, &s.records),
        Sample::Counters(s) => b.push_counters_sample(s.sequence, s.source_id, &s.records),
        Sample::Other { format, data } => b.push_raw_sample(*format, data),
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(first) = Datagram::parse(data) else {
        return;
    };
    assert_eq!(first.buffer_len(), data.len());
    let mut buf = vec![0xa5u8; first.buffer_len()];
    let n = first.emit(&mut buf).expect("a parsed datagram emits");
    assert_eq!(n, data.len());
    let second = Datagram::parse(&buf[..n]).expect("an emitted datagram parses");
    assert_eq!(first, second);
    for (i, (&out, &inp)) in buf.iter().zip(data).enumerate() {
        assert!(
            out == inp || out == 0,
            "byte {i}: emitted {out:#04x}, input {inp:#04x} (only padding may differ)"
        );
    }
    if n > 0 {
        assert!(first.emit(&mut buf[..n - 1]).is_err());
    }

    // Split across datagrams of a small budget chosen by the input.
    let hlen = first.header.buffer_len();
    let budget = hlen + 4 * usize::from(*data.last().unwrap_or(&0));
    let mut out = vec![0u8; budget];
    let mut b = DatagramBuilder::new(&mut out, first.header, budget).expect("room for the header");
    let mut copies: Vec<Vec<u8>> = Vec::new();
    let mut pushed = 0;
    for sample in &first.samples {
        match push(&mut b, sample) {
            Ok(()) => pushed += 1,
            Err(Error::NoRoom { .. }) => {
                assert_eq!(b.num_samples(), pushed, "a failed push writes nothing");
                copies.push(b.finish().to_vec());
                b.reset(0, 0);
                pushed = 0;
                if push(&mut b, sample).is_err() {
                    // Does not fit even an empty datagram: stop here.
                    break;
                }
                pushed += 1;
            }
            Err(e) => panic!("unexpected push error {e:?}"),
        }
    }
    copies.push(b.finish().to_vec());
    let mut next = 0;
    for copy in &copies {
        assert!(copy.len() <= budget);
        let d = Datagram::parse(copy).expect("a built datagram parses");
        assert_eq!(d.header.agent, first.header.agent);
        let k = d.samples.len();
        assert_eq!(&d.samples[..], &first.samples[next..next + k]);
        next += k;
    }
});
