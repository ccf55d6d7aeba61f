//! Open vSwitch probe: mirrors the Open_vSwitch database into the topology graph
//! (Skydive §3.8/§3.9).
//!
//! A hand-written RFC 7047 client ([`jsonrpc`]) monitors the Bridge, Port, Interface
//! and Open_vSwitch tables; each message updates a local mirror ([`rows::Database`]) and
//! the graph is reconciled with the mirror ([`sync::Reconciler`]). Interface nodes are
//! shared with the netlink probe under the contract of [`merge`].
//!
//! Connection: `unix:/path` (also `unix:///path`) or `tcp:host:port`. When the server
//! is absent or goes away the probe retries with exponential backoff (100 ms doubling
//! to 5 s, ±25 % jitter) and, once connected again, reconciles the graph with the fresh
//! monitor reply; the graph keeps the last known OVS state meanwhile. Invalid input
//! drops the connection; an error reply to `monitor` is retried the same way.

pub mod datum;
pub mod jsonrpc;
pub mod mapping;
pub mod merge;
pub mod rows;
pub mod sync;

use std::hash::{BuildHasher, Hasher};
use std::io;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use serde::Serialize;
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::broadcast;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use topotap_topology::{now_ms, GraphEvent, Identifier, SharedGraph};
use tracing::{debug, info, warn};

use jsonrpc::{Incoming, JsonStream};
use rows::Database;
use sync::Reconciler;

pub use merge::{find_adoptable_interface_node, find_interface_node, is_ovs_driven};

/// Where the binary looks for ovsdb-server by default.
pub const DEFAULT_ADDRESS: &str = "unix:/var/run/openvswitch/db.sock";

const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// After this long without a byte from the server we send our own `echo`; after twice
/// this long the connection is considered dead (a silent TCP peer).
const IDLE_PROBE: Duration = Duration::from_secs(15);

/// Connection state of the probe, for `/api/status`.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct OvsdbStatus {
    #[serde(rename = "Address")]
    pub address: String,
    /// Connected and the monitor reply applied.
    #[serde(rename = "Connected")]
    pub connected: bool,
    /// The last connection or protocol error, kept after a reconnect.
    #[serde(rename = "LastError")]
    pub last_error: Option<String>,
    /// When `connected` last changed (ms since the epoch).
    #[serde(rename = "Since")]
    pub since: i64,
    /// How many monitor sessions were established.
    #[serde(rename = "Sessions")]
    pub sessions: u64,
}

/// Starts the probe for the host node `host` against `address`.
pub fn spawn(graph: SharedGraph, host: Identifier, address: String) -> JoinHandle<()> {
    spawn_with_status(graph, host, address).0
}

/// Like [`spawn`], also returning the live connection status.
pub fn spawn_with_status(
    graph: SharedGraph,
    host: Identifier,
    address: String,
) -> (JoinHandle<()>, Arc<Mutex<OvsdbStatus>>) {
    let status = Arc::new(Mutex::new(OvsdbStatus {
        address: address.clone(),
        since: now_ms(),
        ..OvsdbStatus::default()
    }));
    let events = graph.subscribe();
    let probe = Probe {
        reconciler: Reconciler::new(host, graph.host()),
        graph,
        db: Database::default(),
        events,
        status: status.clone(),
    };
    let handle = tokio::spawn(probe.run(address));
    (handle, status)
}

/// A parsed `unix:` / `tcp:` address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Address {
    Unix(String),
    Tcp(String),
}

/// Why an OVSDB address does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadAddress {
    #[error("empty socket path in '{0}'")]
    EmptyPath(String),
    #[error("'{0}' needs host:port")]
    NoPort(String),
    #[error("unsupported OVSDB address '{0}' (expected unix:PATH or tcp:HOST:PORT)")]
    Unsupported(String),
}

impl std::str::FromStr for Address {
    type Err = BadAddress;

    fn from_str(s: &str) -> Result<Self, BadAddress> {
        if let Some(path) = s.strip_prefix("unix:") {
            let path = path.strip_prefix("//").unwrap_or(path);
            if path.is_empty() {
                return Err(BadAddress::EmptyPath(s.to_owned()));
            }
            Ok(Address::Unix(path.to_owned()))
        } else if let Some(hostport) = s.strip_prefix("tcp:") {
            let hostport = hostport.strip_prefix("//").unwrap_or(hostport);
            if !hostport.contains(':') {
                return Err(BadAddress::NoPort(s.to_owned()));
            }
            Ok(Address::Tcp(hostport.to_owned()))
        } else {
            Err(BadAddress::Unsupported(s.to_owned()))
        }
    }
}

/// Why a session ended.
#[derive(Debug, thiserror::Error)]
enum SessionEnd {
    #[error("connection closed by ovsdb-server")]
    Closed,
    #[error("i/o error: {0}")]
    Io(#[from] io::Error),
    #[error(transparent)]
    Stream(#[from] jsonrpc::StreamError),
    #[error("monitor request rejected: {0}")]
    Rejected(Value),
    #[error("malformed monitor data: {0}")]
    Malformed(#[from] rows::MalformedUpdate),
    #[error("no data from ovsdb-server for {0:?}")]
    Silent(Duration),
}

struct Probe {
    graph: SharedGraph,
    reconciler: Reconciler,
    db: Database,
    events: broadcast::Receiver<Arc<GraphEvent>>,
    status: Arc<Mutex<OvsdbStatus>>,
}

impl Probe {
    async fn run(mut self, address: String) {
        let addr: Address = match address.parse() {
            Ok(a) => a,
            Err(e) => {
                warn!("OVSDB probe disabled: {e}");
                self.status.lock().last_error = Some(e.to_string());
                return;
            }
        };
        let mut backoff = BACKOFF_MIN;
        // Whether "not reachable" was already reported since the last session.
        let mut absent_reported = false;
        let mut last_warning = String::new();
        loop {
            let outcome = match &addr {
                Address::Unix(path) => match tokio::net::UnixStream::connect(path).await {
                    Ok(s) => Ok(self.session(s, &address).await),
                    Err(e) => Err(e),
                },
                Address::Tcp(hp) => match tokio::net::TcpStream::connect(hp).await {
                    Ok(s) => {
                        let _ = s.set_nodelay(true);
                        Ok(self.session(s, &address).await)
                    }
                    Err(e) => Err(e),
                },
            };
            match outcome {
                Err(e) => {
                    if !absent_reported {
                        info!("no ovsdb-server at {address} ({e}); will keep retrying quietly");
                        absent_reported = true;
                    } else {
                        debug!("ovsdb-server at {address} still unreachable: {e}");
                    }
                    self.set_disconnected(format!("connect: {e}"));
                }
                Ok((established, end)) => {
                    if established {
                        backoff = BACKOFF_MIN;
                        absent_reported = false;
                    }
                    let msg = end.to_string();
                    match end {
                        SessionEnd::Closed if established => {
                            info!("ovsdb-server at {address} closed the connection; reconnecting")
                        }
                        _ if msg != last_warning => {
                            warn!("OVSDB session with {address} ended: {msg}")
                        }
                        _ => debug!("OVSDB session with {address} ended: {msg}"),
                    }
                    last_warning = msg.clone();
                    self.set_disconnected(msg);
                }
            }
            self.idle(jitter(backoff)).await;
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }

    fn set_disconnected(&self, error: String) {
        let mut st = self.status.lock();
        if st.connected {
            st.connected = false;
            st.since = now_ms();
        }
        st.last_error = Some(error);
    }

    /// Waits `delay` while still answering graph changes that concern OVS nodes.
    async fn idle(&mut self, delay: Duration) {
        let deadline = Instant::now() + delay;
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => return,
                ev = self.events.recv() => self.on_graph_event(ev),
            }
        }
    }

    fn on_graph_event(&mut self, ev: Result<Arc<GraphEvent>, broadcast::error::RecvError>) {
        let relevant = match ev {
            Ok(ev) => self.reconciler.concerns(&ev),
            Err(broadcast::error::RecvError::Lagged(_)) => true,
            // The graph is gone: nothing to keep in sync, but keep the session alive.
            Err(broadcast::error::RecvError::Closed) => false,
        };
        if relevant {
            self.reconcile();
        }
    }

    /// Reconciles the graph with the mirror. Events produced by our own writes are
    /// drained while the lock is held: only we can have published them.
    fn reconcile(&mut self) {
        let mut g = self.graph.write();
        while !matches!(
            self.events.try_recv(),
            Err(broadcast::error::TryRecvError::Empty | broadcast::error::TryRecvError::Closed)
        ) {}
        self.reconciler.reconcile(&mut g, &self.db);
        while !matches!(
            self.events.try_recv(),
            Err(broadcast::error::TryRecvError::Empty | broadcast::error::TryRecvError::Closed)
        ) {}
    }

    /// One connection: send `monitor`, then apply what comes. Returns whether the
    /// monitor reply was received, and why the session ended.
    async fn session<S>(&mut self, stream: S, address: &str) -> (bool, SessionEnd)
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let mut established = false;
        let end = self.converse(stream, address, &mut established).await;
        (established, end)
    }

    async fn converse<S>(&mut self, stream: S, address: &str, established: &mut bool) -> SessionEnd
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let (mut rd, mut wr) = tokio::io::split(stream);
        if let Err(e) = send(&mut wr, &jsonrpc::monitor_request()).await {
            return e;
        }
        let mut input = JsonStream::new();
        let mut buf = vec![0u8; 64 * 1024];
        let mut last_rx = Instant::now();
        let mut probed = false;
        loop {
            let idle_deadline = last_rx + if probed { IDLE_PROBE * 2 } else { IDLE_PROBE };
            tokio::select! {
                n = rd.read(&mut buf) => {
                    let n = match n {
                        Ok(0) => return SessionEnd::Closed,
                        Ok(n) => n,
                        Err(e) => return e.into(),
                    };
                    last_rx = Instant::now();
                    probed = false;
                    input.push(&buf[..n]);
                    loop {
                        let msg = match input.next_value() {
                            Ok(Some(m)) => m,
                            Ok(None) => break,
                            Err(e) => return e.into(),
                        };
                        match Incoming::classify(msg) {
                            Incoming::Echo { id, params } => {
                                if let Err(e) = send(&mut wr, &jsonrpc::echo_reply(id, params)).await {
                                    return e;
                                }
                            }
                            Incoming::MonitorReply(Ok(result)) => {
                                match Database::from_monitor_reply(&result) {
                                    Ok(db) => self.db = db,
                                    Err(e) => return e.into(),
                                }
                                self.reconcile();
                                *established = true;
                                let mut st = self.status.lock();
                                st.connected = true;
                                st.since = now_ms();
                                st.sessions += 1;
                                drop(st);
                                info!("monitoring ovsdb-server at {address} ({} rows)", self.db.len());
                            }
                            Incoming::MonitorReply(Err(err)) => return SessionEnd::Rejected(err),
                            Incoming::Update(updates) => {
                                if let Err(e) = self.db.apply(&updates) {
                                    return e.into();
                                }
                                self.reconcile();
                            }
                            Incoming::Other => {}
                        }
                    }
                }
                ev = self.events.recv() => self.on_graph_event(ev),
                _ = tokio::time::sleep_until(idle_deadline) => {
                    if probed {
                        return SessionEnd::Silent(IDLE_PROBE * 2);
                    }
                    probed = true;
                    if let Err(e) = send(&mut wr, &jsonrpc::echo_request()).await {
                        return e;
                    }
                }
            }
        }
    }
}

async fn send<W: AsyncWrite + Unpin>(wr: &mut W, msg: &Value) -> Result<(), SessionEnd> {
    let bytes = serde_json::to_vec(msg).map_err(|e| SessionEnd::Io(io::Error::other(e)))?;
    wr.write_all(&bytes).await?;
    wr.flush().await?;
    Ok(())
}

/// `d` scaled by a random factor in [0.75, 1.25), so that probes restarted together do
/// not reconnect in lockstep.
fn jitter(d: Duration) -> Duration {
    let r = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    let factor = 0.75 + (r % 1000) as f64 / 2000.0;
    d.mul_f64(factor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_parse() {
        assert_eq!(
            "unix:/var/run/openvswitch/db.sock".parse(),
            Ok(Address::Unix("/var/run/openvswitch/db.sock".into()))
        );
        assert_eq!(
            "unix:///var/run/openvswitch/db.sock".parse(),
            Ok(Address::Unix("/var/run/openvswitch/db.sock".into()))
        );
        assert_eq!(
            "tcp:127.0.0.1:6640".parse(),
            Ok(Address::Tcp("127.0.0.1:6640".into()))
        );
        assert_eq!(
            "ssl:1.2.3.4:6640".parse::<Address>(),
            Err(BadAddress::Unsupported("ssl:1.2.3.4:6640".into()))
        );
        assert_eq!(
            "tcp:localhost".parse::<Address>().unwrap_err().to_string(),
            "'tcp:localhost' needs host:port"
        );
        assert_eq!(
            "unix:".parse::<Address>(),
            Err(BadAddress::EmptyPath("unix:".into()))
        );
    }

    #[test]
    fn jitter_stays_within_a_quarter() {
        for _ in 0..100 {
            let d = jitter(Duration::from_millis(1000));
            assert!(d >= Duration::from_millis(750) && d < Duration::from_millis(1250));
        }
    }
}
