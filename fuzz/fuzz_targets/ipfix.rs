//! IPFIX: `Message::parse` on arbitrary bytes never panics. Two round trips:
//!
//! - the whole decoded message (templates, data records field by field, raw sets) is written back by a
//!   reference encoder here (the crate builds messages only through `MessageBuilder`), and re-parsing it
//!   with a fresh template cache gives the same message; the bytes equal the input whenever the input had
//!   no set padding and no over-long variable-length prefix (i.e. when the lengths agree);
//! - every data record that reads as a standard `FlowRecord`, and every template, is encoded again with
//!   `MessageBuilder` (split over several messages when the 64 KiB limit is reached) and decodes back to
//!   the same values.
#![no_main]

use libfuzzer_sys::fuzz_target;
use topotap_targets::wire::ipfix::{
    FieldSpecifier, FlowRecord, Message, MessageBuilder, Set, TemplateCache, MAX_MESSAGE_LEN,
    TEMPLATE_SET_ID, VARIABLE_LENGTH, VERSION,
};
use topotap_targets::wire::Error;

fn put16(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(&v.to_be_bytes());
}

fn put32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_be_bytes());
}

fn put_field(out: &mut Vec<u8>, f: &FieldSpecifier) {
    match f.enterprise {
        Some(pen) => {
            put16(out, f.id | 0x8000);
            put16(out, f.length);
            put32(out, pen);
        }
        None => {
            put16(out, f.id);
            put16(out, f.length);
        }
    }
}

/// Reference encoder: RFC 7011 framing of a decoded message, shortest variable-length prefixes.
fn encode(msg: &Message<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    put16(&mut out, VERSION);
    put16(&mut out, 0);
    put32(&mut out, msg.header.export_time);
    put32(&mut out, msg.header.sequence);
    put32(&mut out, msg.header.observation_domain_id);
    for set in &msg.sets {
        let start = out.len();
        match set {
            Set::Templates(templates) => {
                put16(&mut out, TEMPLATE_SET_ID);
                put16(&mut out, 0);
                for t in templates {
                    put16(&mut out, t.id);
                    put16(&mut out, t.fields.len() as u16);
                    for f in &t.fields {
                        put_field(&mut out, f);
                    }
                }
            }
            Set::Data {
                template_id,
                records,
            } => {
                put16(&mut out, *template_id);
                put16(&mut out, 0);
                for r in records {
                    for (f, value) in &r.fields {
                        if f.length == VARIABLE_LENGTH {
                            if value.len() < 255 {
                                out.push(value.len() as u8);
                            } else {
                                out.push(0xff);
                                put16(&mut out, value.len() as u16);
                            }
                        } else {
                            assert_eq!(value.len(), usize::from(f.length));
                        }
                        out.extend_from_slice(value);
                    }
                }
            }
            Set::Other { set_id, data } => {
                assert_ne!(*set_id, TEMPLATE_SET_ID);
                put16(&mut out, *set_id);
                put16(&mut out, 0);
                out.extend_from_slice(data);
            }
        }
        let len = u16::try_from(out.len() - start).expect("a set no longer than its input");
        out[start + 2..start + 4].copy_from_slice(&len.to_be_bytes());
    }
    let len = u16::try_from(out.len()).expect("a message no longer than its input");
    out[2..4].copy_from_slice(&len.to_be_bytes());
    out
}

fn parse_fresh(bytes: &[u8]) -> Message<'_> {
    Message::parse(bytes, &mut TemplateCache::new()).expect("an encoded message parses")
}

fuzz_target!(|data: &[u8]| {
    let mut cache = TemplateCache::new();
    let Ok(first) = Message::parse(data, &mut cache) else {
        return;
    };

    // 1. Whole-message round trip through the reference encoder.
    let bytes = encode(&first);
    assert!(bytes.len() <= data.len());
    let second = parse_fresh(&bytes);
    assert_eq!(first, second);
    if bytes.len() == data.len() {
        assert_eq!(&bytes[..], data);
    }

    // 2. Templates through MessageBuilder::push_template_set.
    let header = first.header;
    let mut buf = vec![0u8; MAX_MESSAGE_LEN];
    for set in &first.sets {
        let Set::Templates(templates) = set else {
            continue;
        };
        let list: Vec<(u16, &[FieldSpecifier])> =
            templates.iter().map(|t| (t.id, &t.fields[..])).collect();
        let mut b = MessageBuilder::new(&mut buf, header, MAX_MESSAGE_LEN).expect("room");
        b.push_template_set(&list)
            .expect("a parsed template set fits a message");
        let built = b.finish().to_vec();
        let msg = parse_fresh(&built);
        assert_eq!(msg.header, header);
        assert_eq!(msg.sets, vec![set.clone()]);
    }

    // 3. Standard flow records through MessageBuilder::push_record.
    let records: Vec<FlowRecord> = first
        .data_records()
        .filter_map(|(_, r)| FlowRecord::from_data_record(r).ok())
        .collect();
    if records.is_empty() {
        return;
    }
    let mut decoded = Vec::new();
    let mut i = 0;
    while i < records.len() {
        let mut b = MessageBuilder::new(&mut buf, header, MAX_MESSAGE_LEN).expect("room");
        b.push_templates().expect("room for the templates");
        let mut pushed = 0;
        while i < records.len() {
            match b.push_record(&records[i]) {
                Ok(()) => {
                    i += 1;
                    pushed += 1;
                }
                Err(Error::NoRoom { .. }) if pushed > 0 => break,
                Err(e) => panic!("push_record({:?}): {e:?}", records[i]),
            }
        }
        assert_eq!(b.data_records(), pushed);
        let built = b.finish().to_vec();
        let msg = parse_fresh(&built);
        assert_eq!(msg.header, header);
        for (_, r) in msg.data_records() {
            decoded.push(FlowRecord::from_data_record(r).expect("a standard record reads back"));
        }
    }
    assert_eq!(decoded, records);
});
