//! Capture files through a capture's target: the one path behind `POST /api/pcap` and
//! `topotap pcap FILE --target-type T --target ADDR` (a local replay without a server,
//! like `softflowd -r`).
//!
//! The file is read as it arrives (a request body, a file, standard input) in bounded
//! memory ([`PcapStream`]), each packet fed to the target's sink on the packets' own
//! clock ([`engine::replay`]): flows keep the durations the file recorded, and exporters
//! time out and send as they would have live, only faster.

use std::fs::File;
use std::io::{self, Read};
use std::process::ExitCode;

use serde_json::{json, Value};
use topotap_targets::export::pipeline::FlowTimeouts;
use topotap_targets::pcapfile::{PcapError, PcapStream};
use topotap_topology::Identifier;

use crate::capture::placer::Target;
use crate::capture::{self, engine, Capture, SinkContext, TargetType};
use crate::cli::OfflineArgs;
use crate::error::Error;

/// Feeds the capture file read from `source` to `capture`'s target and says what was read
/// and sent: `CaptureID`, `Packets`, `Bytes`, `Flows` (local target), `Export` (the
/// exporter's counters) and `Error` when the file is damaged part-way (it is read up to
/// the damage). Blocks: run it on a blocking thread.
///
/// Something that is not a capture file is [`Error::Invalid`], checked before any socket
/// is opened; a collector that cannot be resolved or a socket that cannot be opened is
/// [`Error::Unavailable`].
pub fn replay(capture: &Capture, ctx: &SinkContext, source: impl Read) -> Result<Value, Error> {
    let mut stream = PcapStream::new(source).map_err(|e| match e {
        PcapError::Read(reason) => Error::invalid(format!("cannot read the capture: {reason}")),
        e => Error::invalid(e),
    })?;
    let target = Target {
        node: Identifier::from(format!("pcap:{}", capture.uuid).as_str()),
        tid: String::new(),
        ifname: String::new(),
        if_index: 0,
        netns: None,
        via: capture::placer::Via::Interface,
    };
    let local = capture.target_kind() == TargetType::Local;
    let mut sink = if local {
        capture::local_sink(capture, &target, ctx, true)
    } else {
        capture::sink_for(capture, &target, ctx)?
    };
    let read = engine::replay(&mut stream, sink.as_mut());
    let mut out = json!({
        "CaptureID": capture.uuid,
        "Packets": read.packets,
        "Bytes": read.bytes,
    });
    if local {
        out["Flows"] = ctx.flows.flow_count(&capture.uuid).into();
    }
    if let Some(stats) = sink.export_stats() {
        out["Export"] = stats.to_json();
    }
    if let Some(e) = read.error {
        out["Error"] = e.into();
    }
    Ok(out)
}

/// `topotap pcap`: prints the summary as one JSON line and exits 0, or prints one line
/// saying what is wrong and exits 1 (2 for a damaged file: what could be read was sent).
pub fn run(args: &OfflineArgs) -> ExitCode {
    match run_inner(args) {
        Ok(summary) => {
            println!("{summary}");
            if let Some(e) = summary.get("Error").and_then(Value::as_str) {
                eprintln!("topotap pcap: {}: {e}", args.file.display());
                return ExitCode::from(2);
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("topotap pcap: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run_inner(args: &OfflineArgs) -> Result<Value, Error> {
    let target_type = TargetType::from_field(&args.target_type)
        .map_err(|e| Error::invalid(format!("TargetType: {e}")))?;
    if target_type.unwrap_or_default() == TargetType::Local {
        let exporters: Vec<&str> = TargetType::ALL
            .iter()
            .filter(|t| t.is_export())
            .map(|t| t.as_str())
            .collect();
        return Err(Error::invalid(format!(
            "--target-type local keeps flows in a server's flow table: upload the file to \
             /api/pcap instead, or name an exporter ({})",
            exporters.join(", ")
        )));
    }
    let mut capture = Capture {
        target_type,
        target: args.target.clone(),
        sampling_rate: args.sampling_rate,
        header_size: args.header_size,
        polling_interval: args.polling_interval,
        ..Capture::default()
    };
    capture.validate_parameters()?;
    capture.apply_defaults();
    capture.uuid = Identifier::random().to_string();
    let ctx = SinkContext {
        export_timeouts: FlowTimeouts {
            active: std::time::Duration::from_secs(args.active_timeout),
            inactive: std::time::Duration::from_secs(args.inactive_timeout),
        },
        sflow_agent: args.sflow_agent_address,
        ..SinkContext::default()
    };
    let name = args.file.display();
    let result = if args.file.as_os_str() == "-" {
        replay(&capture, &ctx, io::stdin().lock())
    } else {
        let file = File::open(&args.file).map_err(|e| Error::invalid(format!("{name}: {e}")))?;
        replay(&capture, &ctx, file)
    };
    // Past the parameters (validated above), only the file itself is invalid.
    result.map_err(|e| match e {
        Error::Invalid(reason) => Error::Invalid(format!("{name}: {reason}")),
        e => e,
    })
}
