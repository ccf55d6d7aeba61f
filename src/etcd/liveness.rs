//! Agent liveness: one etcd lease per agent connection, kept alive by the analyzer
//! holding that connection, instead of writing each pong to etcd.
//!
//! An analyzer that accepts an agent's connection [`Liveness::register`]s it: a lease
//! of [`AGENT_TTL`] and the key `/topotap/agents/<host id>/<analyzer id>` on it. A
//! task renews the lease every third of its TTL (one small message per agent every few
//! seconds, no write to the store); if etcd lost the lease meanwhile (the analyzer was
//! cut off longer than the TTL) it takes a new one and writes the key again.
//!
//! When the connection ends, the analyzer drops the [`AgentLease`] (the lease expires
//! after its TTL, giving the agent that long to come back) or revokes it. If the
//! analyzer dies, its leases expire the same way.
//!
//! [`Liveness::watch`] reports a host [`LivenessEvent::Gone`] once no analyzer holds a
//! key for it any more, so every analyzer can remove that host's subgraph. An etcd
//! outage reports nothing: leases do not expire while etcd is down, and the watch
//! compares what it finds when it reloads with what it knew.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use etcd_client::{EventType, GetOptions, PutOptions, WatchOptions};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use super::{backoff, describe, Etcd, EtcdError, ROOT};

/// A lease id etcd never grants: not registered yet.
const NO_LEASE: i64 = 0;

/// Time to live of an agent's lease.
pub const AGENT_TTL: Duration = Duration::from_secs(10);

/// Where agents' keys live.
pub fn prefix() -> String {
    format!("{ROOT}agents/")
}

/// A change of the set of live hosts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LivenessEvent {
    /// The first analyzer registered this host.
    Up(String),
    /// No analyzer holds a lease for this host any more: remove its subgraph.
    Gone(String),
}

/// Registers agents' connections and watches the live hosts, for one analyzer.
#[derive(Clone)]
pub struct Liveness {
    etcd: Etcd,
    analyzer: String,
    ttl: Duration,
    /// Leases being taken at once: a thousand agents connecting together (or coming
    /// back after an etcd outage) queue here instead of all waiting on etcd at the same
    /// time and all timing out together.
    grants: Arc<tokio::sync::Semaphore>,
}

/// Most leases taken at once by one analyzer.
const GRANTS_IN_FLIGHT: usize = 32;

/// A registered agent connection; dropping it stops the renewals (the lease expires
/// after its TTL).
#[cfg_attr(not(test), allow(dead_code))]
pub struct AgentLease {
    etcd: Etcd,
    host: String,
    lease: Arc<AtomicI64>,
    keeper: JoinHandle<()>,
}

/// A host id or analyzer id that cannot be a path segment of a key.
fn check_segment(what: &str, id: &str) -> Result<(), EtcdError> {
    if id.is_empty() || id.contains('/') || id.len() > 256 || id.chars().any(char::is_control) {
        return Err(EtcdError(format!(
            "{what} '{}' cannot name an etcd key: empty, over 256 bytes, or contains '/' or a control character",
            id.escape_debug()
        )));
    }
    Ok(())
}

impl Liveness {
    /// Liveness of the agents connected to the analyzer `analyzer`, with leases of `ttl`
    /// (whole seconds, at least one).
    pub fn new(etcd: &Etcd, analyzer: &str, ttl: Duration) -> Result<Self, EtcdError> {
        check_segment("analyzer id", analyzer)?;
        Ok(Liveness {
            etcd: etcd.clone(),
            analyzer: analyzer.to_owned(),
            ttl: ttl.max(Duration::from_secs(1)),
            grants: Arc::new(tokio::sync::Semaphore::new(GRANTS_IN_FLIGHT)),
        })
    }

    fn key(&self, host: &str) -> String {
        format!("{}{host}/{}", prefix(), self.analyzer)
    }

    /// Marks `host` alive through this analyzer until the returned lease is dropped or
    /// revoked; fails (etcd unreachable) within the call timeout.
    #[cfg_attr(not(test), allow(dead_code))]
    pub async fn register(&self, host: &str) -> Result<AgentLease, EtcdError> {
        check_segment("host id", host)?;
        let id = grant_and_put(&self.etcd, &self.key(host), &self.analyzer, self.ttl).await?;
        Ok(self.keep_alive(host, id))
    }

    /// Marks `host` alive through this analyzer, like [`Liveness::register`], but
    /// returns at once: the lease is taken in the background, retried while etcd
    /// cannot be reached (an agent's connection does not wait for etcd).
    pub fn hold(&self, host: &str) -> Result<AgentLease, EtcdError> {
        check_segment("host id", host)?;
        Ok(self.keep_alive(host, NO_LEASE))
    }

    /// The lease of `host` (`lease`: granted already, or [`NO_LEASE`] yet), renewed,
    /// and taken again if lost, by a background task until it is dropped.
    fn keep_alive(&self, host: &str, lease: i64) -> AgentLease {
        let lease = Arc::new(AtomicI64::new(lease));
        let keeper = tokio::spawn(keep(
            self.etcd.clone(),
            self.key(host),
            self.analyzer.clone(),
            self.ttl,
            lease.clone(),
            self.grants.clone(),
        ));
        AgentLease {
            etcd: self.etcd.clone(),
            host: host.to_owned(),
            lease,
            keeper,
        }
    }

    /// The hosts some analyzer holds a lease for.
    #[cfg_attr(not(test), allow(dead_code))]
    pub async fn hosts(&self) -> Result<BTreeSet<String>, EtcdError> {
        let (hosts, _) = read_hosts(&self.etcd).await?;
        Ok(hosts.into_keys().collect())
    }

    /// Reports hosts coming and going, from the hosts alive now on (the first events
    /// are an `Up` for each of them). Ends when the receiver is dropped.
    pub fn watch(&self) -> mpsc::Receiver<LivenessEvent> {
        let (tx, rx) = mpsc::channel(1024);
        tokio::spawn(follow(self.etcd.clone(), tx));
        rx
    }
}

#[cfg_attr(not(test), allow(dead_code))]
impl AgentLease {
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The current lease id (it changes if etcd lost the lease and it was taken again).
    pub fn id(&self) -> i64 {
        self.lease.load(Ordering::Relaxed)
    }

    /// Stops the renewals and deletes the host's key now.
    pub async fn revoke(self) -> Result<(), EtcdError> {
        self.keeper.abort();
        let id = self.id();
        if id == NO_LEASE {
            return Ok(());
        }
        let mut lease = self.etcd.client().lease_client();
        self.etcd
            .call("revoke an agent's lease", lease.revoke(id))
            .await
            .map(|_| ())
    }
}

impl Drop for AgentLease {
    fn drop(&mut self) {
        self.keeper.abort();
    }
}

/// Grants a lease and writes `key` on it; returns the lease id.
async fn grant_and_put(
    etcd: &Etcd,
    key: &str,
    analyzer: &str,
    ttl: Duration,
) -> Result<i64, EtcdError> {
    let mut lease = etcd.client().lease_client();
    let granted = etcd
        .call(
            "grant an agent's lease",
            lease.grant(ttl.as_secs().max(1) as i64, None),
        )
        .await?;
    let id = granted.id();
    let value = serde_json::json!({"Analyzer": analyzer, "Since": topotap_topology::now_ms()});
    let mut kv = etcd.client().kv_client();
    let put = etcd
        .call(
            "write an agent's key",
            kv.put(
                key,
                value.to_string(),
                Some(PutOptions::new().with_lease(id)),
            ),
        )
        .await;
    if let Err(e) = put {
        let _ = etcd.call("revoke a lease", lease.revoke(id)).await;
        return Err(e);
    }
    Ok(id)
}

/// How renewing a lease ended.
enum Lapse {
    /// etcd no longer has the lease: take a new one.
    Expired,
    /// etcd did not answer: try the same lease again.
    Unreachable(EtcdError),
}

/// Renews the lease until aborted, taking a new one whenever etcd lost it.
async fn keep(
    etcd: Etcd,
    key: String,
    analyzer: String,
    ttl: Duration,
    lease: Arc<AtomicI64>,
    grants: Arc<tokio::sync::Semaphore>,
) {
    const FIRST: Duration = Duration::from_millis(200);
    let mut delay = FIRST;
    loop {
        if lease.load(Ordering::Relaxed) == NO_LEASE {
            let granted = match grants.acquire().await {
                Ok(_permit) => grant_and_put(&etcd, &key, &analyzer, ttl).await,
                Err(_) => return,
            };
            match granted {
                Ok(id) => {
                    lease.store(id, Ordering::Relaxed);
                    delay = FIRST;
                }
                Err(e) => {
                    warn!("{key}: {e}");
                    backoff(&mut delay, ttl / 3).await;
                    continue;
                }
            }
        }
        match renew(&etcd, lease.load(Ordering::Relaxed), ttl).await {
            Lapse::Expired => {
                info!("{key}: the lease expired; taking a new one");
                lease.store(NO_LEASE, Ordering::Relaxed);
            }
            Lapse::Unreachable(e) => {
                warn!("{key}: {e}");
                backoff(&mut delay, ttl / 3).await;
            }
        }
    }
}

/// Renews `id` every third of `ttl` until that fails.
async fn renew(etcd: &Etcd, id: i64, ttl: Duration) -> Lapse {
    let mut lease = etcd.client().lease_client();
    let (mut keeper, mut stream) = match etcd
        .call("renew an agent's lease", lease.keep_alive(id))
        .await
    {
        Ok(k) => k,
        Err(e) if e.0.contains("lease not found") => return Lapse::Expired,
        Err(e) => return Lapse::Unreachable(e),
    };
    loop {
        tokio::time::sleep(ttl / 3).await;
        if let Err(e) = keeper.keep_alive().await {
            return Lapse::Unreachable(etcd.error("renew an agent's lease", e));
        }
        match etcd.call("renew an agent's lease", stream.message()).await {
            Ok(Some(resp)) if resp.ttl() > 0 => {}
            Ok(Some(_)) => return Lapse::Expired,
            Ok(None) => {
                return Lapse::Unreachable(etcd.error("renew an agent's lease", "stream ended"))
            }
            Err(e) => return Lapse::Unreachable(e),
        }
    }
}

/// Live hosts -> analyzers holding a key for them; and the revision read.
type Hosts = BTreeMap<String, BTreeSet<String>>;

/// Host and analyzer of an agent key.
fn split_key(key: &[u8]) -> Option<(String, String)> {
    let key = std::str::from_utf8(key).ok()?;
    let rest = key.strip_prefix(prefix().as_str())?;
    let (host, analyzer) = rest.split_once('/')?;
    (!host.is_empty() && !analyzer.is_empty() && !analyzer.contains('/'))
        .then(|| (host.to_owned(), analyzer.to_owned()))
}

async fn read_hosts(etcd: &Etcd) -> Result<(Hosts, i64), EtcdError> {
    let mut kv = etcd.client().kv_client();
    let read = etcd
        .call(
            "read agents",
            kv.get(
                prefix(),
                Some(GetOptions::new().with_prefix().with_keys_only()),
            ),
        )
        .await?;
    let mut hosts = Hosts::new();
    for kv in read.kvs() {
        if let Some((host, analyzer)) = split_key(kv.key()) {
            hosts.entry(host).or_default().insert(analyzer);
        }
    }
    Ok((hosts, read.header().map_or(0, |h| h.revision())))
}

/// Watches agents' keys, reloading after any break, and reports the differences.
async fn follow(etcd: Etcd, tx: mpsc::Sender<LivenessEvent>) {
    const FIRST: Duration = Duration::from_millis(200);
    let mut known = Hosts::new();
    let mut delay = FIRST;
    let mut reported: Option<String> = None;
    loop {
        match watch_hosts(&etcd, &tx, &mut known).await {
            Ok(true) => delay = FIRST,
            // The receiver is gone.
            Ok(false) => return,
            Err(e) => {
                if reported.as_deref() != Some(e.0.as_str()) {
                    warn!("{e}");
                    reported = Some(e.0.clone());
                }
                backoff(&mut delay, Duration::from_secs(5)).await;
            }
        }
    }
}

/// One load and watch; `Ok(true)`: reload, `Ok(false)`: nobody listens any more.
async fn watch_hosts(
    etcd: &Etcd,
    tx: &mpsc::Sender<LivenessEvent>,
    known: &mut Hosts,
) -> Result<bool, EtcdError> {
    let (hosts, rev) = read_hosts(etcd).await?;
    let mut watch_client = etcd.client().watch_client();
    let mut stream = etcd
        .call(
            "watch agents",
            watch_client.watch(
                prefix(),
                Some(
                    WatchOptions::new()
                        .with_prefix()
                        .with_start_revision(rev + 1),
                ),
            ),
        )
        .await?;
    let mut events = Vec::new();
    for host in known.keys().filter(|h| !hosts.contains_key(*h)) {
        events.push(LivenessEvent::Gone(host.clone()));
    }
    for host in hosts.keys().filter(|h| !known.contains_key(*h)) {
        events.push(LivenessEvent::Up(host.clone()));
    }
    *known = hosts;
    for ev in events {
        if tx.send(ev).await.is_err() {
            return Ok(false);
        }
    }
    loop {
        let resp = tokio::select! {
            m = stream.message() => m
                .map_err(|e| etcd.error("watch agents", describe(&e)))?
                .ok_or_else(|| etcd.error("watch agents", "the stream ended"))?,
            _ = tx.closed() => return Ok(false),
        };
        if resp.compact_revision() > 0 {
            info!("etcd compacted the agents' history; reloading");
            return Ok(true);
        }
        if resp.canceled() {
            return Err(etcd.error(
                "watch agents",
                format!("cancelled: {}", resp.cancel_reason()),
            ));
        }
        for ev in resp.events() {
            let Some((host, analyzer)) = ev.kv().and_then(|kv| split_key(kv.key())) else {
                continue;
            };
            let event = match ev.event_type() {
                EventType::Put => {
                    let holders = known.entry(host.clone()).or_default();
                    let first = holders.is_empty();
                    holders.insert(analyzer);
                    first.then_some(LivenessEvent::Up(host))
                }
                EventType::Delete => match known.get_mut(&host) {
                    Some(holders) => {
                        holders.remove(&analyzer);
                        if holders.is_empty() {
                            known.remove(&host);
                            Some(LivenessEvent::Gone(host))
                        } else {
                            None
                        }
                    }
                    None => None,
                },
            };
            if let Some(event) = event {
                if tx.send(event).await.is_err() {
                    return Ok(false);
                }
            }
        }
    }
}
