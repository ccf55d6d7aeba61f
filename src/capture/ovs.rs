//! Captures that Open vSwitch performs itself, configured through OVSDB transactions
//! (RFC 7047 `transact`) on the address of the OVSDB probe (`--ovsdb`):
//!
//! - `ovssflow`: an `sFlow` row set as the bridge's `sflow`, sending to topotap's own
//!   collector (a UDP socket on loopback, in the namespace where vswitchd's devices
//!   live) or to the capture's sFlow target;
//! - `ovsmirror`: an internal port and a `Mirror` selecting the captured port, whose
//!   output port topotap captures with libpcap.
//!
//! Every row topotap adds carries `external_ids` `topotap-capture` (the capture's UUID)
//! and `topotap-host` (this host's ID). What a capture added is removed when it stops
//! ([`OvsGuard`]'s drop); what a previous run left (a crash) is removed before the first
//! change of this run ([`Ovsdb::clean_up`]). A bridge that already has an sFlow
//! configuration of someone else's is left alone: the capture fails with OVSDB's reason.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use topotap_probes::ovsdb::jsonrpc::JsonStream;
use topotap_probes::ovsdb::Address;
use tracing::{info, warn};

use super::Capture;
use crate::error::Error;

/// The most one transaction may take, connection included.
pub const TIMEOUT: Duration = Duration::from_secs(5);
/// `external_ids` key naming the capture a row belongs to.
pub const CAPTURE_KEY: &str = "topotap-capture";
/// `external_ids` key naming the host (topotap) that added a row.
pub const HOST_KEY: &str = "topotap-host";
/// Sampled header bytes when the capture gives no `HeaderSize`.
pub const DEFAULT_HEADER: i64 = 128;

const DB: &str = "Open_vSwitch";
const TX_ID: &str = "topotap-transact";

/// Why a transaction did not go through.
#[derive(Debug, thiserror::Error)]
pub enum OvsError {
    /// ovsdb-server could not be reached or stopped answering.
    #[error("OVSDB at {address}: {reason}")]
    Unreachable { address: String, reason: String },
    /// ovsdb-server refused the change: its own error and details.
    #[error("OVSDB refused the change: {0}")]
    Refused(String),
}

impl From<OvsError> for Error {
    fn from(e: OvsError) -> Self {
        Error::unavailable(e.to_string())
    }
}

/// A client of one ovsdb-server for capture configurations.
#[derive(Debug)]
pub struct Ovsdb {
    address: String,
    host: String,
    /// Whether what a previous run left was removed.
    cleaned: parking_lot::Mutex<bool>,
}

impl Ovsdb {
    pub fn new(address: &str, host: &str) -> Arc<Self> {
        Arc::new(Ovsdb {
            address: address.to_owned(),
            host: host.to_owned(),
            cleaned: parking_lot::Mutex::new(false),
        })
    }

    /// Runs one transaction; returns the operations' results. Blocking.
    pub fn transact(&self, ops: &[Value]) -> Result<Vec<Value>, OvsError> {
        let unreachable = |reason: String| OvsError::Unreachable {
            address: self.address.clone(),
            reason,
        };
        let addr: Address = self
            .address
            .parse()
            .map_err(|e: topotap_probes::ovsdb::BadAddress| unreachable(e.to_string()))?;
        let mut params = vec![json!(DB)];
        params.extend(ops.iter().cloned());
        let request = json!({"method": "transact", "params": params, "id": TX_ID});
        let reply = match addr {
            Address::Unix(path) => {
                let s = UnixStream::connect(&path).map_err(|e| unreachable(e.to_string()))?;
                exchange(s, &request)
            }
            Address::Tcp(hp) => {
                let sa = std::net::ToSocketAddrs::to_socket_addrs(&hp)
                    .map_err(|e| unreachable(e.to_string()))?
                    .next()
                    .ok_or_else(|| unreachable(format!("{hp}: no address")))?;
                let s = std::net::TcpStream::connect_timeout(&sa, TIMEOUT)
                    .map_err(|e| unreachable(e.to_string()))?;
                exchange(s, &request)
            }
        }
        .map_err(unreachable)?;
        if let Some(e) = reply.get("error").filter(|e| !e.is_null()) {
            return Err(OvsError::Refused(describe(e)));
        }
        let results = match reply.get("result") {
            Some(Value::Array(r)) => r.clone(),
            other => {
                return Err(OvsError::Refused(format!(
                    "unexpected transact result {}",
                    other.cloned().unwrap_or(Value::Null)
                )))
            }
        };
        if let Some(e) = results.iter().find_map(|r| r.get("error")) {
            return Err(OvsError::Refused(describe_with(
                e,
                results.iter().find(|r| r.get("error").is_some()),
            )));
        }
        Ok(results)
    }

    /// Removes every row this host added (a previous run's, after a crash): the
    /// bridges' references to them, which makes OVSDB delete the rows themselves.
    pub fn clean_up(&self) -> Result<usize, OvsError> {
        let mine = json!([[
            "external_ids",
            "includes",
            ["map", [[HOST_KEY, &self.host]]]
        ]]);
        let select = |table: &str| json!({"op": "select", "table": table, "where": mine, "columns": ["_uuid"]});
        let found = self.transact(&[select("sFlow"), select("Mirror"), select("Port")])?;
        let uuids = |i: usize| -> Vec<Value> {
            found
                .get(i)
                .and_then(|r| r["rows"].as_array())
                .into_iter()
                .flatten()
                .filter_map(|row| row.get("_uuid").cloned())
                .collect()
        };
        let (sflows, mirrors, ports) = (uuids(0), uuids(1), uuids(2));
        let n = sflows.len() + mirrors.len() + ports.len();
        if n > 0 {
            self.transact(&[json!({
                "op": "mutate", "table": "Bridge", "where": [],
                "mutations": [
                    ["sflow", "delete", ["set", sflows]],
                    ["mirrors", "delete", ["set", mirrors]],
                    ["ports", "delete", ["set", ports]],
                ],
            })])?;
            info!("removed {n} OVSDB rows a previous run of this host left");
        }
        Ok(n)
    }

    /// [`clean_up`](Self::clean_up), once per run, before the first change.
    pub fn ensure_clean(&self) -> Result<(), OvsError> {
        let mut cleaned = self.cleaned.lock();
        if !*cleaned {
            self.clean_up()?;
            *cleaned = true;
        }
        Ok(())
    }

    fn tags(&self, capture: &Capture) -> Value {
        json!([
            "map",
            [[CAPTURE_KEY, &capture.uuid], [HOST_KEY, &self.host]]
        ])
    }

    /// Sets an sFlow configuration on `bridge`, sending to `target` (`ip:port`), with the
    /// capture's sampling rate, polling interval and header size. Refused when the bridge
    /// has an sFlow configuration already.
    pub fn add_sflow(
        self: &Arc<Self>,
        capture: &Capture,
        bridge: &str,
        target: &str,
    ) -> Result<OvsGuard, OvsError> {
        self.ensure_clean()?;
        let header = if capture.header_size == 0 {
            DEFAULT_HEADER
        } else {
            capture.header_size
        };
        let on_bridge = json!([["name", "==", bridge]]);
        let mut row = json!({
            "targets": ["set", [target]],
            "sampling": capture.sampling_rate.max(1),
            "header": header,
            "external_ids": self.tags(capture),
        });
        if capture.polling_interval > 0 {
            row["polling"] = capture.polling_interval.into();
        }
        let ops = [
            json!({"op": "select", "table": "Bridge", "where": on_bridge, "columns": ["sflow"]}),
            json!({"op": "wait", "table": "Bridge", "where": on_bridge, "columns": ["sflow"],
                   "until": "==", "rows": [{"sflow": ["set", []]}], "timeout": 0}),
            json!({"op": "insert", "table": "sFlow", "row": row, "uuid-name": "topotap_sflow"}),
            json!({"op": "update", "table": "Bridge", "where": on_bridge,
                   "row": {"sflow": ["named-uuid", "topotap_sflow"]}}),
        ];
        let results = self.transact(&ops).map_err(|e| {
            // Say which precondition failed: the first results come back with the error.
            match &e {
                OvsError::Refused(reason) if reason.starts_with("timed out") => OvsError::Refused(
                    format!("bridge {bridge} already has an sFlow configuration ({reason})"),
                ),
                _ => e,
            }
        })?;
        if results[0]["rows"].as_array().is_none_or(|r| r.is_empty()) {
            return Err(OvsError::Refused(format!("no bridge {bridge}")));
        }
        let uuid = results[2]["uuid"].clone();
        Ok(OvsGuard {
            ovsdb: self.clone(),
            what: format!("sFlow on {bridge}"),
            undo: vec![json!({"op": "mutate", "table": "Bridge", "where": [],
                       "mutations": [["sflow", "delete", ["set", [uuid]]]]})],
        })
    }

    /// Adds an internal port `mirror_port` to `bridge` and a Mirror of everything `port`
    /// sends and receives onto it.
    pub fn add_mirror(
        self: &Arc<Self>,
        capture: &Capture,
        bridge: &str,
        port: &str,
        mirror_port: &str,
    ) -> Result<OvsGuard, OvsError> {
        self.ensure_clean()?;
        let found = self.transact(&[json!({
            "op": "select", "table": "Port", "where": [["name", "==", port]], "columns": ["_uuid"]
        })])?;
        let selected = found[0]["rows"]
            .as_array()
            .and_then(|r| r.first())
            .and_then(|r| r.get("_uuid").cloned())
            .ok_or_else(|| OvsError::Refused(format!("no port {port}")))?;
        let tags = self.tags(capture);
        let mut mirror = json!({
            "name": mirror_port,
            "select_src_port": selected,
            "select_dst_port": selected,
            "output_port": ["named-uuid", "topotap_mport"],
            "external_ids": tags,
        });
        if capture.header_size > 0 {
            mirror["snaplen"] = capture.header_size.into();
        }
        let ops = [
            json!({"op": "insert", "table": "Interface", "uuid-name": "topotap_miface",
                   "row": {"name": mirror_port, "type": "internal", "external_ids": tags}}),
            json!({"op": "insert", "table": "Port", "uuid-name": "topotap_mport",
                   "row": {"name": mirror_port, "interfaces": ["named-uuid", "topotap_miface"],
                           "external_ids": tags}}),
            json!({"op": "insert", "table": "Mirror", "uuid-name": "topotap_mirror", "row": mirror}),
            json!({"op": "mutate", "table": "Bridge", "where": [["name", "==", bridge]],
                   "mutations": [["ports", "insert", ["set", [["named-uuid", "topotap_mport"]]]],
                                 ["mirrors", "insert", ["set", [["named-uuid", "topotap_mirror"]]]]]}),
        ];
        let results = self.transact(&ops)?;
        if results[3]["count"] != json!(1) {
            // Nothing references the new rows: OVSDB has dropped them already.
            return Err(OvsError::Refused(format!("no bridge {bridge}")));
        }
        let (mport, mirror) = (results[1]["uuid"].clone(), results[2]["uuid"].clone());
        Ok(OvsGuard {
            ovsdb: self.clone(),
            what: format!("mirror of {port} on {bridge}"),
            undo: vec![json!({"op": "mutate", "table": "Bridge", "where": [],
                "mutations": [["ports", "delete", ["set", [mport]]],
                              ["mirrors", "delete", ["set", [mirror]]]]})],
        })
    }
}

/// What a capture configured in OVSDB; undone when dropped (blocking, within
/// [`TIMEOUT`]). What cannot be undone then (ovsdb-server away) is removed at the next
/// start.
pub struct OvsGuard {
    ovsdb: Arc<Ovsdb>,
    what: String,
    undo: Vec<Value>,
}

impl Drop for OvsGuard {
    fn drop(&mut self) {
        if let Err(e) = self.ovsdb.transact(&self.undo) {
            warn!("cannot remove the {} a capture added: {e}", self.what);
        }
    }
}

/// Sends `request` and waits for its reply, answering echo requests, within [`TIMEOUT`].
fn exchange<S: Read + Write + SetTimeout>(mut s: S, request: &Value) -> Result<Value, String> {
    let deadline = Instant::now() + TIMEOUT;
    s.timeout(Some(TIMEOUT)).map_err(|e| e.to_string())?;
    let bytes = serde_json::to_vec(request).map_err(|e| e.to_string())?;
    s.write_all(&bytes).map_err(|e| e.to_string())?;
    let mut input = JsonStream::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(format!("no reply within {TIMEOUT:?}"));
        }
        s.timeout(Some(left)).map_err(|e| e.to_string())?;
        let n = match s.read(&mut buf) {
            Ok(0) => return Err("connection closed before the reply".into()),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.to_string()),
        };
        input.push(&buf[..n]);
        while let Some(msg) = input.next_value().map_err(|e| e.to_string())? {
            if msg.get("id") == Some(&json!(TX_ID)) && msg.get("method").is_none() {
                return Ok(msg);
            }
            if msg.get("method") == Some(&json!("echo")) {
                let reply = json!({"result": msg["params"], "error": null, "id": msg["id"]});
                let bytes = serde_json::to_vec(&reply).map_err(|e| e.to_string())?;
                s.write_all(&bytes).map_err(|e| e.to_string())?;
            }
        }
    }
}

trait SetTimeout {
    fn timeout(&self, t: Option<Duration>) -> std::io::Result<()>;
}

impl SetTimeout for UnixStream {
    fn timeout(&self, t: Option<Duration>) -> std::io::Result<()> {
        self.set_read_timeout(t)?;
        self.set_write_timeout(t)
    }
}

impl SetTimeout for std::net::TcpStream {
    fn timeout(&self, t: Option<Duration>) -> std::io::Result<()> {
        self.set_read_timeout(t)?;
        self.set_write_timeout(t)
    }
}

/// An OVSDB error object as one line: `error: details`.
fn describe(e: &Value) -> String {
    match e {
        Value::String(s) => s.clone(),
        Value::Object(_) => {
            let error = e.get("error").and_then(Value::as_str).unwrap_or("error");
            match e.get("details").and_then(Value::as_str) {
                Some(d) => format!("{error}: {d}"),
                None => error.to_owned(),
            }
        }
        other => other.to_string(),
    }
}

fn describe_with(error: &Value, result: Option<&Value>) -> String {
    match result {
        Some(r) => describe(r),
        None => describe(error),
    }
}

/// The name of the internal port a mirror of `port` by `capture` outputs to: at most 15
/// bytes (an interface name), the same for the same capture and port.
pub fn mirror_port_name(capture: &str, port: &str) -> String {
    let h = crc32fast::hash(format!("{capture}/{port}").as_bytes());
    format!("tmir{h:08x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_read_as_one_line() {
        assert_eq!(
            describe(&json!({"error": "timed out", "details": "\"wait\" timed out after 0 ms"})),
            "timed out: \"wait\" timed out after 0 ms"
        );
        assert_eq!(
            describe(&json!({"error": "constraint violation"})),
            "constraint violation"
        );
        let n = mirror_port_name("c", "p");
        assert!(n.len() <= 15 && n == mirror_port_name("c", "p"), "{n}");
        assert_ne!(n, mirror_port_name("c", "q"));
    }
}
