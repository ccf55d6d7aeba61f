//! The offline flow-export path, timed: read a pcap, meter it (decode + flow table with the export
//! timeouts) and export NetFlow v5 or IPFIX to a collector over UDP, exactly as a `netflowv5`/`ipfix`
//! capture sink does (the sink is this pipeline plus its counters), ticking every 100 ms of capture
//! time as the capture engine does and flushing at the end as a stopped capture does.
//!
//! `cargo run --release -p topotap-targets --example flow_export_pcap -- FILE.pcap HOST:PORT [netflow|ipfix]`
//!
//! Prints one line: packets, flows, records, datagrams, send errors, elapsed time and packets/s.

use std::fs::File;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use topotap_targets::export::ipfix::{IpfixConfig, IpfixExporter};
use topotap_targets::export::netflow::{NetflowV5Config, NetflowV5Exporter};
use topotap_targets::export::pipeline::{ExportPipeline, FlowExporter, FlowMeter, FlowTimeouts};
use topotap_targets::flow::FlowTableConfig;
use topotap_targets::packet::Timestamp;
use topotap_targets::pcapfile::{PcapRecord, PcapStream};
use topotap_targets::send::UdpExporter;

const TICK: Duration = Duration::from_millis(100);

/// Streams the records of a pcap or pcapng file through `each`, in 1 MiB reads (as libpcap does)
/// rather than holding the whole file.
fn for_each_record(path: &str, mut each: impl FnMut(&PcapRecord<'_>)) -> Result<(), String> {
    let file = File::open(path).map_err(|e| format!("{path}: {e}"))?;
    let mut stream = PcapStream::new(file).map_err(|e| format!("{path}: {e}"))?;
    while let Some(rec) = stream.next_record() {
        each(&rec.map_err(|e| format!("{path}: {e}"))?);
    }
    Ok(())
}

fn run<E: FlowExporter>(path: &str, exporter: E, sender: &UdpExporter) -> Result<(), String> {
    let meter = FlowMeter::new(
        FlowTimeouts::default().table_config(FlowTableConfig::default()),
        1,
    );
    let mut pipeline = ExportPipeline::new(meter, exporter);
    let mut records = 0u64;
    let mut send = |d: &[u8], n: u32| {
        sender.send(d);
        records += u64::from(n);
    };
    let started = Instant::now();
    let mut next_tick: Option<Timestamp> = None;
    let mut last = Timestamp::ZERO;
    for_each_record(path, |rec| {
        if next_tick.is_none() {
            // SysUptime 0 = the first packet, as for a capture started just before it.
            pipeline.exporter.start_clock(rec.timestamp);
        }
        pipeline.packet(rec.link_type, rec.timestamp, rec.orig_len, rec.data);
        last = rec.timestamp;
        match next_tick {
            Some(t) if rec.timestamp >= t => {
                pipeline.tick(rec.timestamp, &mut send);
                next_tick = Some(rec.timestamp + TICK);
            }
            None => next_tick = Some(rec.timestamp + TICK),
            _ => {}
        }
    })?;
    let flows = pipeline.meter.table().stats().created;
    pipeline.finish(last, &mut send);
    let elapsed = started.elapsed();
    let packets = pipeline.meter.observed();
    let s = sender.stats();
    println!(
        "packets {packets} flows {flows} records {records} datagrams {} send_errors {} elapsed {:.3} s pps {:.0}",
        s.sent,
        s.errors,
        elapsed.as_secs_f64(),
        packets as f64 / elapsed.as_secs_f64()
    );
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(file), Some(target)) = (args.first(), args.get(1)) else {
        eprintln!("usage: flow_export_pcap FILE.pcap HOST:PORT [netflow|ipfix]");
        return ExitCode::from(2);
    };
    let format = args.get(2).map_or("netflow", String::as_str);
    let sender = match UdpExporter::connect(target) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{target}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = match format {
        "netflow" => NetflowV5Exporter::new(NetflowV5Config::default())
            .map_err(|e| e.to_string())
            .and_then(|e| run(file, e, &sender)),
        "ipfix" => IpfixExporter::new(IpfixConfig::default())
            .map_err(|e| e.to_string())
            .and_then(|e| run(file, e, &sender)),
        other => Err(format!("unknown format {other} (netflow or ipfix)")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}
