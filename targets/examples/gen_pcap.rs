//! Write the synthetic benchmark capture: minimum-size UDP frames over interleaved flows.
//!
//! `cargo run -p topotap-targets --example gen_pcap -- OUT.pcap 1000000 10000`

use std::fs::File;
use std::io::BufWriter;
use std::process::ExitCode;

use topotap_targets::flow::synth::write_udp_pcap;
use topotap_targets::packet::Timestamp;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(out), packets, flows) = (
        args.first(),
        args.get(1).map(|a| a.parse::<u64>()),
        args.get(2).map(|a| a.parse::<u32>()),
    ) else {
        eprintln!("usage: gen_pcap OUT.pcap [PACKETS=1000000] [FLOWS=10000]");
        return ExitCode::from(2);
    };
    let (Ok(packets), Ok(flows)) = (
        packets.unwrap_or(Ok(1_000_000)),
        flows.unwrap_or(Ok(10_000)),
    ) else {
        eprintln!("PACKETS and FLOWS must be positive integers");
        return ExitCode::from(2);
    };
    let file = match File::create(out) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("{out}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let start = Timestamp::from_secs(1_700_000_000);
    match write_udp_pcap(BufWriter::new(file), packets, flows, start) {
        Ok(_) => {
            println!("{out}: {packets} packets over {flows} flows");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{out}: {e}");
            ExitCode::FAILURE
        }
    }
}
