//! The fleet's shared state in etcd v3: definitions written through any analyzer
//! ([`EtcdStore`]), one lease per connected agent ([`liveness`]) and the election of
//! the analyzer that dispatches captures and injections ([`election`]).
//!
//! Key layout (one root, `/topotap/`):
//!
//! | Key | Value | Lease |
//! |---|---|---|
//! | `/topotap/captures/<UUID>`, `/topotap/injectpackets/<UUID>` | `{"resource": {...}, "expires_at": ms}` | none: the TTL is the expiry time in the value |
//! | `/topotap/agents/<host id>/<analyzer id>` | `{"Analyzer": id, "Since": ms}` | one per agent connection, kept alive by the analyzer holding it |
//! | `/topotap/elections/dispatcher/<lease>` | the candidate analyzer's id | the candidate's |
//! | `/topotap/alertstates/<UUID>` | what the leader last found about the alert ([`alert_state`]) | none |
//!
//! Every call to etcd is bounded by [`Etcd::timeout`]: when etcd is down or cut off,
//! a write fails within that time with an [`EtcdError`] (HTTP 503, one line) and the
//! graph, queries and reads of definitions go on from memory.

pub mod alert_state;
pub mod election;
pub mod liveness;
pub mod store;
#[cfg(test)]
pub(crate) mod testing;
#[cfg(test)]
mod tests;

use std::future::Future;
use std::time::Duration;

pub use election::{Election, Leadership};
pub use liveness::{AgentLease, Liveness, LivenessEvent};
pub use store::EtcdStore;

/// What an analyzer keeps in etcd.
pub struct Shared {
    pub captures: std::sync::Arc<EtcdStore<crate::capture::Capture>>,
    pub injections: std::sync::Arc<EtcdStore<crate::injection::Injection>>,
    pub node_rules: std::sync::Arc<EtcdStore<crate::rules::NodeRule>>,
    pub edge_rules: std::sync::Arc<EtcdStore<crate::rules::EdgeRule>>,
    pub alerts: std::sync::Arc<EtcdStore<crate::alert::Alert>>,
    /// What the leader last found about each alert.
    pub alert_states: std::sync::Arc<alert_state::AlertStates>,
    /// Leases of the agents connected to this analyzer.
    pub liveness: Liveness,
    /// This analyzer's standing in the dispatcher election.
    pub leadership: std::sync::Arc<Leadership>,
    /// How long its calls to etcd take (`/metrics`).
    pub durations: crate::metrics::EtcdDurations,
}

/// Joins the fleet's shared state as the analyzer `analyzer`: loads the definitions
/// (starting empty if etcd does not answer yet: they come once it does), and starts
/// campaigning to dispatch.
pub async fn join(endpoints: &[String], analyzer: &str) -> Result<Shared, EtcdError> {
    let etcd = Etcd::connect(endpoints).await?;
    let liveness = Liveness::new(&etcd, analyzer, liveness::AGENT_TTL)?;
    let (captures, injections, node_rules, edge_rules, alerts, alert_states) = tokio::join!(
        EtcdStore::open(&etcd),
        EtcdStore::open(&etcd),
        EtcdStore::open(&etcd),
        EtcdStore::open(&etcd),
        EtcdStore::open(&etcd),
        alert_state::AlertStates::open(&etcd)
    );
    let leadership = Election::new(
        &etcd,
        &election::dispatcher_election(),
        election::ELECTION_TTL,
    )
    .campaign(analyzer);
    Ok(Shared {
        captures,
        injections,
        node_rules,
        edge_rules,
        alerts,
        alert_states,
        liveness,
        leadership: std::sync::Arc::new(leadership),
        durations: etcd.durations.clone(),
    })
}

/// Root of every key topotap writes.
pub const ROOT: &str = "/topotap/";

/// How long one call to etcd may take before it counts as failed.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(3);

/// A failed call to etcd, as one line naming the endpoints and what was attempted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct EtcdError(pub String);

impl EtcdError {
    fn new(endpoints: &str, what: &str, detail: impl std::fmt::Display) -> Self {
        let line = format!("etcd at {endpoints} unavailable: {what}: {detail}");
        EtcdError(line.split_whitespace().collect::<Vec<_>>().join(" "))
    }
}

/// A store write that etcd did not acknowledge did not happen: 503 with the reason.
impl From<EtcdError> for crate::resources::StoreError {
    fn from(e: EtcdError) -> Self {
        crate::resources::StoreError::Storage(crate::resources::PersistError::unavailable(e.0))
    }
}

/// A client of one etcd cluster, cheap to clone.
#[derive(Clone)]
pub struct Etcd {
    client: etcd_client::Client,
    /// `http://127.0.0.1:2379,...` for messages.
    endpoints: String,
    /// Bound on each call.
    pub timeout: Duration,
    /// How long calls took, by outcome (`/metrics`).
    durations: crate::metrics::EtcdDurations,
}

/// Why `--etcd` cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("--etcd: {0}")]
pub struct BadEndpoints(String);

/// Checks a `--etcd URL[,URL...]` value: `http://HOST:PORT` each (a bare `HOST:PORT`
/// means `http://`).
pub fn parse_endpoints(value: &str) -> Result<Vec<String>, BadEndpoints> {
    let mut out = Vec::new();
    for part in value.split(',').map(str::trim) {
        if part.is_empty() {
            return Err(BadEndpoints(format!("empty endpoint in '{value}'")));
        }
        let url = if part.contains("://") {
            part.to_owned()
        } else {
            format!("http://{part}")
        };
        let Some(rest) = url.strip_prefix("http://") else {
            return Err(BadEndpoints(format!(
                "'{part}': only http:// endpoints are supported"
            )));
        };
        let hostport = rest.trim_end_matches('/');
        let port_ok = hostport.rsplit_once(':').is_some_and(|(host, port)| {
            !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0)
        });
        if !port_ok || hostport.contains('/') {
            return Err(BadEndpoints(format!("'{part}' is not http://HOST:PORT")));
        }
        out.push(format!("http://{hostport}"));
    }
    Ok(out)
}

impl Etcd {
    /// A client of the cluster at `endpoints` (`http://HOST:PORT`). Connections are
    /// made when needed, so this succeeds while etcd is down; calls fail until it is up.
    pub async fn connect(endpoints: &[String]) -> Result<Etcd, EtcdError> {
        let joined = endpoints.join(",");
        let options = etcd_client::ConnectOptions::new()
            .with_connect_timeout(DEFAULT_TIMEOUT)
            // Finds a dead connection (a partition, not only a refused one) within
            // a few seconds, so that watches and keep-alives fail and start over.
            .with_keep_alive(Duration::from_secs(2), Duration::from_secs(2))
            .with_keep_alive_while_idle(true)
            .with_tcp_keepalive(Duration::from_secs(5));
        let client = tokio::time::timeout(
            DEFAULT_TIMEOUT,
            etcd_client::Client::connect(endpoints, Some(options)),
        )
        .await
        .map_err(|_| EtcdError::new(&joined, "connect", "timed out"))?
        .map_err(|e| EtcdError::new(&joined, "connect", describe(&e)))?;
        Ok(Etcd {
            client,
            endpoints: joined,
            timeout: DEFAULT_TIMEOUT,
            durations: crate::metrics::EtcdDurations::default(),
        })
    }

    /// The endpoints, comma-separated.
    pub fn endpoints(&self) -> &str {
        &self.endpoints
    }

    /// A clone of the underlying client.
    pub(crate) fn client(&self) -> etcd_client::Client {
        self.client.clone()
    }

    /// Runs one call within [`Etcd::timeout`], naming `what` in its error.
    pub(crate) async fn call<R>(
        &self,
        what: &str,
        f: impl Future<Output = Result<R, etcd_client::Error>>,
    ) -> Result<R, EtcdError> {
        let started = std::time::Instant::now();
        let answer = tokio::time::timeout(self.timeout, f).await;
        let outcome = match &answer {
            Ok(Ok(_)) => "ok",
            Ok(Err(_)) => "error",
            Err(_) => "timeout",
        };
        self.durations.observe(outcome, started.elapsed());
        match answer {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(e)) => Err(self.error(what, describe(&e))),
            Err(_) => Err(self.error(
                what,
                format!("no answer within {} ms", self.timeout.as_millis()),
            )),
        }
    }

    /// Reads every key under `prefix` and watches it from just after that read, so that
    /// the read plus the watch's events are the prefix with nothing missed; `what` names
    /// the keys in errors ("definitions", "alert states").
    pub(crate) async fn read_and_watch(
        &self,
        prefix: &str,
        what: &str,
    ) -> Result<(etcd_client::GetResponse, etcd_client::WatchStream), EtcdError> {
        let mut kv = self.client.kv_client();
        let read = self
            .call(
                &format!("read {what}"),
                kv.get(prefix, Some(etcd_client::GetOptions::new().with_prefix())),
            )
            .await?;
        let rev = read.header().map_or(0, |h| h.revision());
        let mut watch_client = self.client.watch_client();
        let stream = self
            .call(
                &format!("watch {what}"),
                watch_client.watch(
                    prefix,
                    Some(
                        etcd_client::WatchOptions::new()
                            .with_prefix()
                            .with_start_revision(rev + 1)
                            .with_progress_notify(),
                    ),
                ),
            )
            .await?;
        Ok((read, stream))
    }

    pub(crate) fn error(&self, what: &str, detail: impl std::fmt::Display) -> EtcdError {
        EtcdError::new(&self.endpoints, what, detail)
    }
}

/// The reason of a client error without tonic's debug dump.
fn describe(e: &etcd_client::Error) -> String {
    match e {
        etcd_client::Error::GRpcStatus(s) if !s.message().is_empty() => {
            format!("{:?}: {}", s.code(), s.message())
        }
        etcd_client::Error::GRpcStatus(s) => format!("{:?}", s.code()),
        e => e.to_string(),
    }
}

/// Waits `delay`, then doubles it up to `max`: the pause between two attempts to
/// reach etcd again.
pub(crate) async fn backoff(delay: &mut Duration, max: Duration) {
    tokio::time::sleep(*delay).await;
    *delay = (*delay * 2).min(max);
}
