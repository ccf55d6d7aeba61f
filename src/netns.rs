//! What capture and injection threads do on an interface before their work: enter the
//! interface's namespace and open it with libpcap, and why that fails.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

/// Why a capture or injection thread stopped: it ends up, as text, in the capture's or
/// injection's `Error`.
#[derive(Debug, thiserror::Error)]
pub enum InterfaceError {
    #[error("cannot open namespace {}: {source}", path.display())]
    OpenNetns { path: PathBuf, source: io::Error },
    #[error("cannot enter namespace {}: {source}", path.display())]
    EnterNetns { path: PathBuf, source: nix::Error },
    /// libpcap could not open the interface (`to` says what for: `capture on`, `open`).
    #[error("cannot {to} {ifname}{suffix}: {source}")]
    Open {
        to: &'static str,
        ifname: String,
        suffix: &'static str,
        source: pcap::Error,
    },
    #[error("cannot apply filter {filter:?}: {source}")]
    Filter { filter: String, source: pcap::Error },
    /// Capturing or sending failed part-way (`what`: `capture`, `sending`).
    #[error("{what} on {ifname} failed: {source}")]
    Failed {
        what: &'static str,
        ifname: String,
        source: pcap::Error,
    },
    /// The output port of an OVS mirror never came up.
    #[error("mirror port {ifname} did not come up: {reason}")]
    MirrorPort { ifname: String, reason: String },
    /// A socket input (sFlow, pcap socket) failed.
    #[error("{what} failed: {source}")]
    Socket {
        what: &'static str,
        source: io::Error,
    },
    #[error("cannot start a thread: {0}")]
    Thread(io::Error),
}

/// Moves the calling thread into the network namespace bound at `path`.
pub fn enter(path: &Path) -> Result<(), InterfaceError> {
    let f = File::open(path).map_err(|source| InterfaceError::OpenNetns {
        path: path.to_owned(),
        source,
    })?;
    nix::sched::setns(f, nix::sched::CloneFlags::CLONE_NEWNET).map_err(|source| {
        InterfaceError::EnterNetns {
            path: path.to_owned(),
            source,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_namespace_says_which() {
        let e = enter(Path::new("/nonexistent/netns/x")).unwrap_err();
        assert!(matches!(e, InterfaceError::OpenNetns { .. }));
        assert!(
            e.to_string()
                .starts_with("cannot open namespace /nonexistent/netns/x: "),
            "{e}"
        );
    }
}
