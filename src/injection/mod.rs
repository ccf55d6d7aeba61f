//! Packet injection (`/api/injectpacket`, Skydive §7): forged ICMP echo requests, TCP
//! SYNs and UDP datagrams, or the frames of a pcap file, sent from an interface of the
//! topology inside its namespace.
//!
//! - [`resource`]: the API resource, its validation and the resolution of addresses
//!   against the graph at create.
//! - [`forge`]: the frames, byte for byte (pure).
//! - [`sender`]: the thread that enters the namespace and sends.
//! - [`runner`]: follows the store, starts and stops senders, publishes
//!   `Metadata.PacketInjections`.
//!
//! Injections are one-shot actions, so they are kept in memory only: after a restart
//! topotap neither replays them (packets nobody asked for again) nor lists them with
//! an outcome it cannot know.

pub mod forge;
pub mod resource;
pub mod runner;
pub mod sender;

use std::sync::atomic::Ordering;

pub use resource::Injection;
pub use runner::run;

use crate::error::Error;
use crate::resources::Resource;

impl Resource for Injection {
    const NAME: &'static str = "injectpacket";
    const TITLE: &'static str = "Injectpacket";
    const OUTPUT_ONLY: &'static [&'static str] = &["State", "PacketCount", "Error"];

    fn uuid(&self) -> &str {
        &self.uuid
    }

    fn set_uuid(&mut self, uuid: String) {
        self.uuid = uuid;
    }

    /// Validates; the addresses must have been resolved against the graph before
    /// (the create route does it).
    fn prepare(&mut self) -> Result<(), Error> {
        self.validate()?;
        if self.progress.plan.lock().is_none() {
            return Err(Error::invalid(format!(
                "Src: no interface matches {:?}",
                self.src
            )));
        }
        self.state.clear();
        self.error.clear();
        self.packet_count = 0;
        Ok(())
    }

    /// Two injections are never duplicates: sending the same packets twice is a
    /// legitimate request.
    fn duplicates(&self, _other: &Self) -> bool {
        false
    }

    /// `State`, `PacketCount` and `Error` from the sending thread.
    fn decorate(&mut self, _graph: &topotap_topology::Graph) {
        let state = self.progress.state.lock().clone();
        self.state = state.name().to_owned();
        self.error = match state {
            resource::JobState::Error(e) => e,
            _ => String::new(),
        };
        self.packet_count = self.progress.packets.load(Ordering::Relaxed);
    }
}
