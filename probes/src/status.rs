//! Per-probe state and errors, as `/api/status` shows them.

use std::collections::BTreeMap;

use parking_lot::Mutex;
use serde::Serialize;
use serde_json::Value;
use topotap_topology::now_ms;

/// Lifecycle of one probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum ProbeState {
    Starting,
    Running,
    Error,
    Stopped,
}

/// What one probe reports.
#[derive(Debug, Clone, Serialize)]
pub struct ProbeStatus {
    #[serde(rename = "State")]
    pub state: ProbeState,
    /// The last error, if any (kept after recovery, with its time).
    #[serde(rename = "LastError", skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    #[serde(rename = "LastErrorAt", skip_serializing_if = "Option::is_none")]
    pub last_error_at: Option<i64>,
    #[serde(rename = "Errors")]
    pub errors: u64,
    /// Probe-specific counters (namespaces, interfaces, overruns, ...).
    #[serde(rename = "Counters")]
    pub counters: BTreeMap<String, u64>,
}

impl ProbeStatus {
    fn new() -> Self {
        ProbeStatus {
            state: ProbeState::Starting,
            last_error: None,
            last_error_at: None,
            errors: 0,
            counters: BTreeMap::new(),
        }
    }
}

/// The status of every probe, by name.
#[derive(Default)]
pub struct StatusBoard {
    probes: Mutex<BTreeMap<String, ProbeStatus>>,
}

impl StatusBoard {
    pub fn set_state(&self, probe: &str, state: ProbeState) {
        self.probes
            .lock()
            .entry(probe.to_owned())
            .or_insert_with(ProbeStatus::new)
            .state = state;
    }

    pub fn error(&self, probe: &str, error: impl std::fmt::Display) {
        let mut probes = self.probes.lock();
        let p = probes
            .entry(probe.to_owned())
            .or_insert_with(ProbeStatus::new);
        p.errors += 1;
        p.last_error = Some(error.to_string());
        p.last_error_at = Some(now_ms());
    }

    pub fn set_counter(&self, probe: &str, counter: &str, value: u64) {
        self.probes
            .lock()
            .entry(probe.to_owned())
            .or_insert_with(ProbeStatus::new)
            .counters
            .insert(counter.to_owned(), value);
    }

    pub fn add_counter(&self, probe: &str, counter: &str, delta: u64) {
        *self
            .probes
            .lock()
            .entry(probe.to_owned())
            .or_insert_with(ProbeStatus::new)
            .counters
            .entry(counter.to_owned())
            .or_default() += delta;
    }

    pub fn get(&self, probe: &str) -> Option<ProbeStatus> {
        self.probes.lock().get(probe).cloned()
    }

    pub fn to_json(&self) -> Value {
        serde_json::to_value(&*self.probes.lock()).unwrap_or(Value::Null)
    }
}
