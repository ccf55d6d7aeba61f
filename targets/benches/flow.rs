//! Offline packet path on one core: read a pcap held in memory, decode each frame once, feed the flow
//! table. 1,000,000 minimum-size (64-byte) UDP frames over 10,000 interleaved flows.
//!
//! Run with `cargo bench -p topotap-targets --bench flow` (`-- PACKETS FLOWS ROUNDS` to change sizes).
//! Prints the best and median packets/s of the rounds, and the same for decode only and read only.

use std::hint::black_box;
use std::time::{Duration, Instant};

use topotap_targets::flow::synth::udp_pcap;
use topotap_targets::flow::{FlowTable, FlowTableConfig};
use topotap_targets::packet::decode;
use topotap_targets::pcapfile::PcapReader;

fn arg(args: &[String], i: usize, default: u64) -> u64 {
    args.get(i).and_then(|a| a.parse().ok()).unwrap_or(default)
}

fn report(name: &str, packets: u64, mut times: Vec<Duration>) {
    times.sort();
    let best = times[0];
    let median = times[times.len() / 2];
    let mpps = |d: Duration| packets as f64 / d.as_secs_f64() / 1e6;
    println!(
        "{name:<28} best {:>7.2} Mpps ({:>6.1} ns/pkt)   median {:>7.2} Mpps",
        mpps(best),
        best.as_nanos() as f64 / packets as f64,
        mpps(median)
    );
}

fn main() {
    // `cargo bench` passes `--bench`; positional numbers override the sizes.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let packets = arg(&args, 0, 1_000_000);
    let flows = arg(&args, 1, 10_000) as u32;
    let rounds = arg(&args, 2, 7).max(1) as usize;
    let pcap = udp_pcap(packets, flows);
    println!(
        "pcap: {packets} packets, {flows} flows, {} bytes in memory",
        pcap.len()
    );

    let mut read = Vec::new();
    let mut decode_only = Vec::new();
    let mut full = Vec::new();
    let mut last_stats = None;
    for _ in 0..rounds {
        let t = Instant::now();
        let mut n = 0u64;
        for rec in PcapReader::new(&pcap).expect("pcap") {
            let rec = rec.expect("record");
            n += u64::from(rec.orig_len);
        }
        black_box(n);
        read.push(t.elapsed());

        let t = Instant::now();
        let mut n = 0u64;
        for rec in PcapReader::new(&pcap).expect("pcap") {
            let rec = rec.expect("record");
            let p = decode(rec.link_type, rec.data);
            n += u64::from(p.l2_len) + u64::from(p.tcp_flags());
            black_box(&p);
        }
        black_box(n);
        decode_only.push(t.elapsed());

        // Table construction (index pre-sized for the default 500,000 flows) is outside the timing.
        let mut table = FlowTable::new(FlowTableConfig::default());
        let t = Instant::now();
        for rec in PcapReader::new(&pcap).expect("pcap") {
            let rec = rec.expect("record");
            let p = decode(rec.link_type, rec.data);
            table.process(rec.timestamp, &p, rec.orig_len);
        }
        full.push(t.elapsed());
        last_stats = Some(table.stats());
        black_box(&table);
    }
    report("read", packets, read);
    report("read+decode", packets, decode_only);
    report("read+decode+flow table", packets, full);
    if let Some(s) = last_stats {
        println!(
            "table: {} flows, {} packets, {} bytes",
            s.flows, s.packets, s.bytes
        );
    }
}
