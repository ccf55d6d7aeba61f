//! The election of the analyzer that dispatches captures and injections, with etcd's
//! election API (campaign, leader, observe, resign).
//!
//! Each candidate takes a lease of `ttl` and campaigns with it; etcd makes leader the
//! candidate whose key is oldest. The candidate renews its lease every quarter of the
//! TTL, and counts itself leader only until two thirds of the TTL after it *sent* the
//! last renewal etcd acknowledged. etcd cannot expire the lease before a full TTL after
//! receiving that renewal, so a leader cut off from etcd stops leading at least a third
//! of the TTL before another candidate can be elected: two analyzers never dispatch at
//! the same time. [`Leadership::is_leader`] checks that deadline itself, so even a
//! stalled task cannot extend a lapsed term.

use std::sync::Arc;
use std::time::Duration;

use etcd_client::{LeaderKey, ResignOptions};
use parking_lot::Mutex;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{info, warn};

use super::{backoff, describe, Etcd, EtcdError, ROOT};

/// The election of the dispatcher of captures and injections.
pub fn dispatcher_election() -> String {
    format!("{ROOT}elections/dispatcher")
}

/// Default lease TTL of a candidate.
pub const ELECTION_TTL: Duration = Duration::from_secs(6);

/// An election to campaign in.
pub struct Election {
    etcd: Etcd,
    name: String,
    ttl: Duration,
}

/// This analyzer's standing in an election: campaigns until [`Leadership::resign`] (or
/// drop, after which its lease expires).
pub struct Leadership {
    /// While leading: until when (see the module's notes), and the term's token.
    term: Arc<Mutex<Option<(Instant, i64)>>>,
    leading: watch::Receiver<bool>,
    leader: watch::Receiver<Option<String>>,
    stop: watch::Sender<bool>,
    campaign: Mutex<Option<JoinHandle<()>>>,
    observer: JoinHandle<()>,
}

impl Election {
    /// The election `name` (a key prefix) in `etcd`, with candidate leases of `ttl`
    /// (at least 3 s: etcd rounds shorter ones up to its minimum).
    pub fn new(etcd: &Etcd, name: &str, ttl: Duration) -> Self {
        Election {
            etcd: etcd.clone(),
            name: name.to_owned(),
            ttl: ttl.max(Duration::from_secs(3)),
        }
    }

    /// Starts campaigning as `candidate` (shown to observers as the leader's value).
    pub fn campaign(&self, candidate: &str) -> Leadership {
        let term = Arc::new(Mutex::new(None));
        let (leading_tx, leading) = watch::channel(false);
        let (leader_tx, leader) = watch::channel(None);
        let (stop, stop_rx) = watch::channel(false);
        let campaign = tokio::spawn(run(
            self.etcd.clone(),
            self.name.clone(),
            candidate.to_owned(),
            self.ttl,
            Office {
                term: term.clone(),
                leading: leading_tx,
            },
            stop_rx,
        ));
        let observer = tokio::spawn(observe(self.etcd.clone(), self.name.clone(), leader_tx));
        Leadership {
            term,
            leading,
            leader,
            stop,
            campaign: Mutex::new(Some(campaign)),
            observer,
        }
    }
}

impl Leadership {
    /// Whether this analyzer leads now. Check it right before each dispatch.
    pub fn is_leader(&self) -> bool {
        self.token().is_some()
    }

    /// While this analyzer leads: its term's token, the creation revision of its
    /// leader key in etcd. Each term has a greater token than the terms before it, so
    /// a shared store can refuse the writes of a former leader (a fencing token).
    pub fn token(&self) -> Option<i64> {
        self.term
            .lock()
            .and_then(|(until, token)| (Instant::now() < until).then_some(token))
    }

    /// Turns true when this analyzer takes office and false when it leaves it.
    pub fn changes(&self) -> watch::Receiver<bool> {
        self.leading.clone()
    }

    /// The leader's candidate name as last observed (`None` before any was seen).
    pub fn leader(&self) -> Option<String> {
        self.leader.borrow().clone()
    }

    /// Leaves office (or the queue of candidates) and stops campaigning.
    pub async fn resign(&self) {
        self.stop.send_replace(true);
        let task = self.campaign.lock().take();
        if let Some(task) = task {
            let _ = task.await;
        }
    }
}

impl crate::history::writer::Leadership for Leadership {
    fn token(&self) -> Option<i64> {
        Leadership::token(self)
    }

    fn changes(&self) -> watch::Receiver<bool> {
        Leadership::changes(self)
    }
}

impl Drop for Leadership {
    fn drop(&mut self) {
        *self.term.lock() = None;
        if let Some(task) = self.campaign.lock().take() {
            task.abort();
        }
        self.observer.abort();
    }
}

/// What a candidate publishes about its term.
struct Office {
    term: Arc<Mutex<Option<(Instant, i64)>>>,
    leading: watch::Sender<bool>,
}

impl Office {
    fn take(&self, until: Instant, token: i64) {
        *self.term.lock() = Some((until, token));
        if !self.leading.send_replace(true) {
            info!("leading: this analyzer dispatches captures and injections");
        }
    }

    fn extend(&self, until: Instant) {
        let mut term = self.term.lock();
        if let Some((_, token)) = *term {
            *term = Some((until, token));
        }
    }

    fn leave(&self, why: &str) {
        *self.term.lock() = None;
        if self.leading.send_replace(false) {
            warn!("no longer leading: {why}");
        }
    }
}

/// How a campaign ended.
enum End {
    Stopped,
    Lost(EtcdError),
}

async fn run(
    etcd: Etcd,
    name: String,
    candidate: String,
    ttl: Duration,
    office: Office,
    mut stop: watch::Receiver<bool>,
) {
    const FIRST: Duration = Duration::from_millis(200);
    let mut delay = FIRST;
    let mut reported: Option<String> = None;
    loop {
        match term(&etcd, &name, &candidate, ttl, &office, &mut stop).await {
            End::Stopped => {
                office.leave("resigned");
                return;
            }
            End::Lost(e) => {
                office.leave(&e.0);
                if reported.as_deref() != Some(e.0.as_str()) {
                    warn!("election {name}: {e}");
                    reported = Some(e.0.clone());
                }
                tokio::select! {
                    _ = backoff(&mut delay, ttl / 2) => {}
                    _ = stop.changed() => return,
                }
            }
        }
    }
}

/// A lease's renewals: sends one and waits for etcd's answer.
struct Renewal {
    keeper: etcd_client::LeaseKeeper,
    stream: etcd_client::LeaseKeepAliveStream,
}

impl Renewal {
    /// Renews once; returns when it was sent.
    async fn once(&mut self, etcd: &Etcd) -> Result<Instant, EtcdError> {
        let sent = Instant::now();
        let renewed = etcd
            .call("renew the candidate's lease", async {
                self.keeper.keep_alive().await?;
                self.stream.message().await
            })
            .await?;
        match renewed {
            Some(r) if r.ttl() > 0 => Ok(sent),
            Some(_) => Err(etcd.error("renew the candidate's lease", "the lease expired")),
            None => Err(etcd.error("renew the candidate's lease", "the stream ended")),
        }
    }
}

/// One lease's campaign and term.
async fn term(
    etcd: &Etcd,
    name: &str,
    candidate: &str,
    ttl: Duration,
    office: &Office,
    stop: &mut watch::Receiver<bool>,
) -> End {
    let mut lease_client = etcd.client().lease_client();
    let sent = Instant::now();
    let granted = match etcd
        .call(
            "grant the candidate's lease",
            lease_client.grant(ttl.as_secs() as i64, None),
        )
        .await
    {
        Ok(g) => g,
        Err(e) => return End::Lost(e),
    };
    let lease = granted.id();
    let granted_ttl = Duration::from_secs(granted.ttl().max(1) as u64);
    // Counted from when the renewal was sent: etcd's clock started later.
    let valid = granted_ttl * 2 / 3;
    let period = granted_ttl / 4;
    let mut until = sent + valid;
    let end = async {
        let (keeper, stream) = etcd
            .call(
                "renew the candidate's lease",
                lease_client.keep_alive(lease),
            )
            .await?;
        let mut renewal = Renewal { keeper, stream };
        let mut election = etcd.client().election_client();
        let campaign = election.campaign(name, candidate, lease);
        tokio::pin!(campaign);
        let mut next = Instant::now() + period;
        // Campaign (waits for the candidates before) while renewing the lease.
        let key: LeaderKey = loop {
            tokio::select! {
                won = &mut campaign => {
                    let mut won = won.map_err(|e| etcd.error("campaign", describe(&e)))?;
                    break won
                        .take_leader()
                        .ok_or_else(|| etcd.error("campaign", "no leader key in the answer"))?;
                }
                _ = tokio::time::sleep_until(next) => {
                    until = renewal.once(etcd).await? + valid;
                    next = Instant::now() + period;
                }
                _ = stop.changed() => return Ok(None),
            }
        };
        // etcd answers a campaign once the older keys are gone; check that ours still
        // is the leader's and that the lease is still ours to count on.
        let mut check = etcd.client().election_client();
        let leader = etcd.call("read the leader", check.leader(name)).await?;
        if leader.kv().map(|kv| kv.key()) != Some(key.key()) {
            return Err(etcd.error("campaign", "elected with a key that is gone"));
        }
        until = renewal.once(etcd).await? + valid;
        office.take(until, key.rev());
        next = Instant::now() + period;
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(next) => {
                    // Bounded by the term: an answer after it is too late anyway.
                    let renewed = tokio::time::timeout_at(until, renewal.once(etcd))
                        .await
                        .unwrap_or_else(|_| {
                            Err(etcd.error("renew the candidate's lease", "not renewed in time"))
                        });
                    match renewed {
                        Ok(sent) => {
                            until = sent + valid;
                            office.extend(until);
                            next = Instant::now() + period;
                        }
                        Err(e) => {
                            office.leave(&e.0);
                            return Err(e);
                        }
                    }
                }
                _ = tokio::time::sleep_until(until) => {
                    office.leave("the lease was not renewed in time");
                    return Err(etcd.error("renew the candidate's lease", "not renewed in time"));
                }
                _ = stop.changed() => return Ok(Some(key)),
            }
        }
    };
    // Out of office before anything else: a slow resign must not extend the term.
    let outcome: Result<Option<LeaderKey>, EtcdError> = end.await;
    office.leave("the term ended");
    match outcome {
        Ok(key) => {
            if let Some(key) = key {
                let mut election = etcd.client().election_client();
                let _ = etcd
                    .call(
                        "resign",
                        election.resign(Some(ResignOptions::new().with_leader(key))),
                    )
                    .await;
            }
            let _ = etcd
                .call("revoke the candidate's lease", lease_client.revoke(lease))
                .await;
            End::Stopped
        }
        Err(e) => {
            // Frees the queue at once if etcd can be reached; else the lease expires.
            let mut revoker = etcd.client().lease_client();
            let _ = etcd
                .call("revoke the candidate's lease", revoker.revoke(lease))
                .await;
            End::Lost(e)
        }
    }
}

/// Follows who leads (`observe`), starting over after any break.
async fn observe(etcd: Etcd, name: String, leader: watch::Sender<Option<String>>) {
    const FIRST: Duration = Duration::from_millis(200);
    let mut delay = FIRST;
    loop {
        let mut election = etcd.client().election_client();
        if let Ok(mut stream) = etcd.call("observe", election.observe(name.clone())).await {
            delay = FIRST;
            while let Ok(Some(resp)) = stream.message().await {
                if let Some(kv) = resp.kv() {
                    let value = String::from_utf8_lossy(kv.value()).into_owned();
                    leader.send_replace(Some(value));
                }
            }
        }
        backoff(&mut delay, Duration::from_secs(5)).await;
    }
}
