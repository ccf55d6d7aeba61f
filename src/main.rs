//! topotap: live network topology, Gremlin queries and packet capture.
#![deny(unsafe_code)]

mod alert;
mod api;
mod auth;
mod capture;
mod cli;
mod client;
mod config;
mod error;
mod etcd;
mod fleet;
mod history;
mod http;
mod injection;
#[cfg(all(target_os = "linux", target_env = "gnu"))]
mod malloc;
mod metrics;
mod netns;
mod pcap;
mod resources;
mod rules;
#[cfg(test)]
mod runtime_tests;
mod series;
mod server;
mod services;
mod tls;
mod ui;

use std::process::ExitCode;

use clap::CommandFactory;

fn main() -> ExitCode {
    // Before any thread exists, so every arena obeys it.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    malloc::tune();
    let invocation = match config::parse(std::env::args_os()) {
        Ok(inv) => inv,
        Err(config::ParseError::Clap(e)) => e.exit(),
        Err(config::ParseError::Config(e)) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let cli = match invocation.cli.command {
        cli::Command::Config {
            command: cli::ConfigCommand::Print(_),
        } => {
            print!("{}", config::print(&invocation));
            return ExitCode::SUCCESS;
        }
        cli::Command::Completions { shell } => {
            let shell = match shell {
                cli::Shell::Bash => clap_complete::Shell::Bash,
                cli::Shell::Zsh => clap_complete::Shell::Zsh,
                cli::Shell::Fish => clap_complete::Shell::Fish,
            };
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut cli::Cli::command(), "topotap", &mut script);
            return match std::io::Write::write_all(&mut std::io::stdout(), &script) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: cannot write the completion script: {e}");
                    ExitCode::FAILURE
                }
            };
        }
        cli::Command::Man { dir } => {
            return match clap_mangen::generate_to(cli::Cli::command(), &dir) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!(
                        "error: cannot write the manual pages to {}: {e}",
                        dir.display()
                    );
                    ExitCode::FAILURE
                }
            };
        }
        // No server, no async runtime: one thread reads the file and sends.
        cli::Command::Pcap(args) => return pcap::run(&args),
        _ => invocation.cli,
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            cli::Command::Allinone(args) => server::run(args).await,
            cli::Command::Agent(args) => server::run_agent(args).await,
            cli::Command::Analyzer(args) => server::run_analyzer(args).await,
            cli::Command::Client(args) => client::run(args).await,
            cli::Command::Config { .. }
            | cli::Command::Completions { .. }
            | cli::Command::Man { .. }
            | cli::Command::Pcap(_) => {
                unreachable!("handled before the runtime starts")
            }
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
