//! The offline flow-export path, timed: read a pcap, meter it (decode + flow table with the export
//! timeouts) and export NetFlow v5 or IPFIX to a collector over UDP, exactly as a `netflowv5`/`ipfix`
//! capture sink does (the sink is this pipeline plus its counters), ticking every 100 ms of capture
//! time as the capture engine does and flushing at the end as a stopped capture does.
//!
//! `cargo run --release -p topotap-targets --example flow_export_pcap -- FILE.pcap HOST:PORT [netflow|ipfix]`
//!
//! Prints one line: packets, flows, records, datagrams, send errors, elapsed time and packets/s.

use std::fs::File;
use std::io::Read;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use topotap_targets::export::ipfix::{IpfixConfig, IpfixExporter};
use topotap_targets::export::netflow::{NetflowV5Config, NetflowV5Exporter};
use topotap_targets::export::pipeline::{ExportPipeline, FlowExporter, FlowMeter, FlowTimeouts};
use topotap_targets::flow::FlowTableConfig;
use topotap_targets::packet::Timestamp;
use topotap_targets::pcapfile::{PcapError, PcapReader, PcapRecord};
use topotap_targets::send::UdpExporter;

const TICK: Duration = Duration::from_millis(100);

/// Streams the records of a classic pcap file through `each`, reading it in 1 MiB chunks (as
/// libpcap does) rather than holding the whole file; pcapng files are read whole.
fn for_each_record(path: &str, mut each: impl FnMut(&PcapRecord<'_>)) -> Result<(), String> {
    let mut file = File::open(path).map_err(|e| format!("{path}: {e}"))?;
    let mut head = [0u8; 24];
    file.read_exact(&mut head)
        .map_err(|e| format!("{path}: {e}"))?;
    if head[..4] == [0x0a, 0x0d, 0x0d, 0x0a] {
        let mut all = head.to_vec();
        file.read_to_end(&mut all)
            .map_err(|e| format!("{path}: {e}"))?;
        for rec in PcapReader::new(&all).map_err(|e| e.to_string())? {
            each(&rec.map_err(|e| e.to_string())?);
        }
        return Ok(());
    }
    const CHUNK: usize = 1 << 20;
    let mut buf = vec![0u8; head.len() + CHUNK];
    buf[..head.len()].copy_from_slice(&head);
    let mut len = head.len();
    loop {
        if len == buf.len() {
            // A record larger than the chunk.
            buf.resize(buf.len() * 2, 0);
        }
        let n = file
            .read(&mut buf[len..])
            .map_err(|e| format!("{path}: {e}"))?;
        len += n;
        let mut reader = PcapReader::new(&buf[..len]).map_err(|e| e.to_string())?;
        let consumed = loop {
            match reader.next() {
                Some(Ok(rec)) => each(&rec),
                Some(Err(PcapError::TruncatedRecord(at))) if n > 0 => break at,
                Some(Err(e)) => return Err(e.to_string()),
                None => break len,
            }
        };
        if n == 0 {
            return Ok(());
        }
        buf.copy_within(consumed..len, head.len());
        len = head.len() + (len - consumed);
    }
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
    // SysUptime 0 = the first packet, as for a capture started just before it.
    let mut boot = None;
    let _ = for_each_first(file, &mut boot);
    let boot = boot.unwrap_or(Timestamp::ZERO);
    let result = match format {
        "netflow" => NetflowV5Exporter::new(NetflowV5Config {
            boot,
            ..Default::default()
        })
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

/// The timestamp of the first packet of `path`.
fn for_each_first(path: &str, first: &mut Option<Timestamp>) -> Result<(), String> {
    let mut file = File::open(path).map_err(|e| format!("{path}: {e}"))?;
    let mut head = vec![0u8; 64 * 1024];
    let n = file.read(&mut head).map_err(|e| format!("{path}: {e}"))?;
    if let Some(Ok(rec)) = PcapReader::new(&head[..n])
        .map_err(|e| e.to_string())?
        .next()
    {
        *first = Some(rec.timestamp);
    }
    Ok(())
}
