//! Captures: Gremlin-selected packet capture on every matching interface.

mod resource;

pub use resource::Capture;

use serde_json::Value;
use topotap_topology::Graph;

use crate::resources::Resource;

impl Resource for Capture {
    const NAME: &'static str = "capture";
    const TITLE: &'static str = "Capture";

    fn uuid(&self) -> &str {
        &self.uuid
    }

    fn set_uuid(&mut self, uuid: String) {
        self.uuid = uuid;
    }

    fn prepare(&mut self) -> Result<(), String> {
        self.validate()?;
        self.apply_defaults();
        self.count = 0;
        Ok(())
    }

    fn duplicates(&self, other: &Self) -> bool {
        Capture::duplicates(self, other)
    }

    /// `Count`: interfaces where this capture is active now.
    fn decorate(&mut self, graph: &Graph) {
        let mut count = 0;
        for n in graph.nodes() {
            if let Some(Value::Array(list)) = graph.node(n).metadata().get("Captures") {
                count += list
                    .iter()
                    .filter(|c| {
                        c.get("ID").and_then(Value::as_str) == Some(self.uuid.as_str())
                            && c.get("State").and_then(Value::as_str) == Some("active")
                    })
                    .count() as u64;
            }
        }
        self.count = count;
    }
}
