//! Encode cost per record / sample / packet of each export format, into a reused buffer (the way the
//! capture pipeline calls them). Run with `cargo bench -p topotap-targets --bench encode`.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use topotap_targets::wire::erspan::{Repr as ErspanRepr, Session, TypeII, TypeIII};
use topotap_targets::wire::ipfix::{FlowRecord, MessageBuilder, MessageHeader};
use topotap_targets::wire::netflow5::{self, DatagramBuilder, HeaderRepr, RecordRepr, Sampling};
use topotap_targets::wire::sflow5::{
    self, DatagramHeader, FlowRecord as SflowRecord, FlowSampleHeader, SampledHeader, SourceId,
};

fn netflow5_record(i: u32) -> RecordRepr {
    RecordRepr {
        src_addr: Ipv4Addr::from(0x0a00_0000 | i),
        dst_addr: Ipv4Addr::new(10, 1, 0, 1),
        packets: i,
        octets: i * 100,
        first_ms: i,
        last_ms: i + 10,
        src_port: i as u16,
        dst_port: 443,
        protocol: 6,
        tcp_flags: 0x1b,
        src_mask: 24,
        dst_mask: 24,
        ..Default::default()
    }
}

fn bench_netflow5(c: &mut Criterion) {
    let records: Vec<_> = (0..netflow5::MAX_RECORDS as u32)
        .map(netflow5_record)
        .collect();
    let header = HeaderRepr {
        sampling: Sampling::deterministic(1),
        ..Default::default()
    };
    let mut buf = [0u8; netflow5::MAX_DATAGRAM_LEN];
    let mut g = c.benchmark_group("netflow5");
    g.throughput(Throughput::Elements(records.len() as u64));
    g.bench_function("datagram_30_records", |b| {
        b.iter(|| {
            let mut d = DatagramBuilder::new(&mut buf, header).unwrap();
            for r in &records {
                d.push(black_box(r)).unwrap();
            }
            black_box(d.finish().len())
        })
    });
    g.finish();
}

fn bench_ipfix(c: &mut Criterion) {
    let records: Vec<_> = (0..20u32)
        .map(|i| FlowRecord {
            src: IpAddr::V4(Ipv4Addr::from(0x0a00_0000 | i)),
            dst: IpAddr::V4(Ipv4Addr::new(10, 1, 0, 1)),
            src_port: i as u16,
            dst_port: 443,
            protocol: 6,
            tos: 0,
            tcp_flags: 0x1b,
            ingress: 1,
            egress: 2,
            packets: u64::from(i),
            octets: u64::from(i) * 100,
            start_ms: 1_700_000_000_000,
            end_ms: 1_700_000_001_000,
            end_reason: 1,
        })
        .collect();
    let mut buf = [0u8; 1500];
    let mut g = c.benchmark_group("ipfix");
    g.throughput(Throughput::Elements(records.len() as u64));
    g.bench_function("message_20_ipv4_records", |b| {
        b.iter(|| {
            let mut m = MessageBuilder::new(&mut buf, MessageHeader::default(), 1472).unwrap();
            for r in &records {
                m.push_record(black_box(r)).unwrap();
            }
            black_box(m.finish().len())
        })
    });
    g.finish();
}

fn bench_sflow5(c: &mut Criterion) {
    let frame = [0x5au8; 128];
    let header = DatagramHeader {
        agent: IpAddr::V4(Ipv4Addr::LOCALHOST),
        sub_agent_id: 0,
        sequence: 0,
        uptime_ms: 0,
    };
    let sample = FlowSampleHeader {
        sequence: 1,
        source_id: SourceId::if_index(2),
        sampling_rate: 400,
        sample_pool: 400,
        drops: 0,
        input: 2,
        output: sflow5::INTERFACE_UNKNOWN,
    };
    let record = [SflowRecord::SampledHeader(SampledHeader {
        protocol: sflow5::HEADER_PROTOCOL_ETHERNET,
        frame_length: 1518,
        stripped: 4,
        header: &frame,
    })];
    let mut buf = [0u8; 1500];
    let budget = sflow5::udp_payload_budget(1500, false);
    // 8 + 32 + 8 + 16 + 128 = 192 bytes per sample: 7 fit in 1472 - 28.
    let per_datagram = (budget - sflow5::HEADER_LEN_V4) / 192;
    let mut g = c.benchmark_group("sflow5");
    g.throughput(Throughput::Elements(per_datagram as u64));
    g.bench_function("datagram_flow_samples_128B_header", |b| {
        b.iter(|| {
            let mut d = sflow5::DatagramBuilder::new(&mut buf, header, budget).unwrap();
            while d.push_flow_sample(black_box(&sample), &record).is_ok() {}
            black_box(d.finish().len())
        })
    });
    g.finish();
}

fn bench_erspan(c: &mut Criterion) {
    let frame = [0xa5u8; 256];
    let mut buf = [0u8; 2048];
    let mut g = c.benchmark_group("erspan");
    g.throughput(Throughput::Elements(1));
    let mut ii = Session::new(ErspanRepr::TypeII(TypeII {
        session_id: 1,
        index: 3,
        ..Default::default()
    }))
    .unwrap();
    g.bench_function("type_ii_packet_256B", |b| {
        b.iter(|| black_box(ii.encode(black_box(&frame), &mut buf).unwrap()))
    });
    let mut iii = Session::new(ErspanRepr::TypeIII(TypeIII {
        session_id: 1,
        granularity: 1,
        ..Default::default()
    }))
    .unwrap();
    g.bench_function("type_iii_packet_256B", |b| {
        b.iter(|| black_box(iii.encode(black_box(&frame), &mut buf).unwrap()))
    });
    g.finish();
}

criterion_group!(
    benches,
    bench_netflow5,
    bench_ipfix,
    bench_sflow5,
    bench_erspan
);
criterion_main!(benches);
