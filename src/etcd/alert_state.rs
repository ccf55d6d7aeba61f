//! What the fleet's alert engine last found about each alert, in etcd, so that every
//! analyzer shows it and a new leader carries on from it.
//!
//! Only the leading analyzer evaluates alerts ([`crate::alert`]); after each evaluation
//! that changed an alert's state it writes `/topotap/alertstates/<alert UUID>`
//! (`{"State", "Error", "ActionError", "LastFired", "FireCount", "Fingerprint"}`, the
//! fingerprint being a digest of the last result that fired). Every analyzer mirrors
//! the prefix (a watch, reloaded after any break) and shows it on its alerts; an
//! analyzer that takes office reads the prefix afresh first and starts from it, so a
//! condition that already fired does not fire again.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use etcd_client::{EventType, GetOptions};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;
use tracing::warn;

use super::{backoff, describe, Etcd, EtcdError, ROOT};

/// One alert's state as the leader wrote it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SharedState {
    #[serde(rename = "State", default)]
    pub state: String,
    #[serde(rename = "Error", default)]
    pub error: String,
    #[serde(rename = "ActionError", default)]
    pub action_error: String,
    #[serde(rename = "LastFired", default)]
    pub last_fired: i64,
    #[serde(rename = "FireCount", default)]
    pub fire_count: u64,
    /// Digest of the last result that fired; empty: armed.
    #[serde(rename = "Fingerprint", default)]
    pub fingerprint: String,
}

/// The alert states in etcd, mirrored in memory.
pub struct AlertStates {
    etcd: Etcd,
    prefix: String,
    mirror: Arc<Mutex<HashMap<String, SharedState>>>,
    watcher: JoinHandle<()>,
}

fn decode(prefix: &str, key: &[u8], value: &[u8]) -> Option<(String, SharedState)> {
    let uuid = std::str::from_utf8(key).ok()?.strip_prefix(prefix)?;
    if uuid.is_empty() || uuid.contains('/') {
        return None;
    }
    match serde_json::from_slice(value) {
        Ok(s) => Some((uuid.to_owned(), s)),
        Err(e) => {
            warn!("etcd key {prefix}{uuid}: unreadable alert state ({e}); ignored");
            None
        }
    }
}

impl AlertStates {
    /// The alert states of the cluster `etcd`, loaded (waiting up to the call timeout)
    /// and kept current.
    pub async fn open(etcd: &Etcd) -> Arc<Self> {
        let prefix = format!("{ROOT}alertstates/");
        let mirror: Arc<Mutex<HashMap<String, SharedState>>> = Arc::default();
        let (loaded_tx, mut loaded) = tokio::sync::watch::channel(false);
        let watcher = tokio::spawn(follow(
            etcd.clone(),
            prefix.clone(),
            mirror.clone(),
            loaded_tx,
        ));
        let _ = tokio::time::timeout(etcd.timeout, loaded.wait_for(|l| *l)).await;
        Arc::new(AlertStates {
            etcd: etcd.clone(),
            prefix,
            mirror,
            watcher,
        })
    }

    /// The state of one alert, as last seen.
    pub fn get(&self, uuid: &str) -> Option<SharedState> {
        self.mirror.lock().get(uuid).cloned()
    }

    /// Reads every state from etcd (not the mirror, which may lag): what a new leader
    /// starts from.
    pub async fn read(&self) -> Result<HashMap<String, SharedState>, EtcdError> {
        let mut kv = self.etcd.client().kv_client();
        let resp = self
            .etcd
            .call(
                "read alert states",
                kv.get(self.prefix.clone(), Some(GetOptions::new().with_prefix())),
            )
            .await?;
        let states: HashMap<String, SharedState> = resp
            .kvs()
            .iter()
            .filter_map(|kv| decode(&self.prefix, kv.key(), kv.value()))
            .collect();
        Ok(states)
    }

    /// Writes the state of one alert.
    pub async fn put(&self, uuid: &str, state: &SharedState) -> Result<(), EtcdError> {
        let value = serde_json::to_vec(state).map_err(|e| EtcdError(e.to_string()))?;
        let mut kv = self.etcd.client().kv_client();
        self.etcd
            .call(
                "write an alert state",
                kv.put(format!("{}{uuid}", self.prefix), value, None),
            )
            .await?;
        self.mirror.lock().insert(uuid.to_owned(), state.clone());
        Ok(())
    }

    /// Removes the state of an alert that is gone.
    pub async fn delete(&self, uuid: &str) -> Result<(), EtcdError> {
        let mut kv = self.etcd.client().kv_client();
        self.etcd
            .call(
                "delete an alert state",
                kv.delete(format!("{}{uuid}", self.prefix), None),
            )
            .await?;
        self.mirror.lock().remove(uuid);
        Ok(())
    }
}

impl Drop for AlertStates {
    fn drop(&mut self) {
        self.watcher.abort();
    }
}

/// Keeps the mirror current: load, watch, and again after any break.
async fn follow(
    etcd: Etcd,
    prefix: String,
    mirror: Arc<Mutex<HashMap<String, SharedState>>>,
    loaded: tokio::sync::watch::Sender<bool>,
) {
    const FIRST: Duration = Duration::from_millis(200);
    let mut delay = FIRST;
    loop {
        match load_and_watch(&etcd, &prefix, &mirror, &loaded).await {
            Ok(()) => delay = FIRST,
            Err(e) => {
                warn!("alert states: {e}");
                backoff(&mut delay, Duration::from_secs(5)).await;
            }
        }
    }
}

async fn load_and_watch(
    etcd: &Etcd,
    prefix: &str,
    mirror: &Mutex<HashMap<String, SharedState>>,
    loaded: &tokio::sync::watch::Sender<bool>,
) -> Result<(), EtcdError> {
    let (read, mut stream) = etcd.read_and_watch(prefix, "alert states").await?;
    *mirror.lock() = read
        .kvs()
        .iter()
        .filter_map(|kv| decode(prefix, kv.key(), kv.value()))
        .collect();
    loaded.send_replace(true);
    loop {
        let resp = stream
            .message()
            .await
            .map_err(|e| etcd.error("watch alert states", describe(&e)))?
            .ok_or_else(|| etcd.error("watch alert states", "the stream ended"))?;
        if resp.compact_revision() > 0 {
            return Ok(());
        }
        if resp.canceled() {
            return Err(etcd.error(
                "watch alert states",
                format!("cancelled: {}", resp.cancel_reason()),
            ));
        }
        let mut m = mirror.lock();
        for ev in resp.events() {
            let Some(kv) = ev.kv() else { continue };
            match ev.event_type() {
                EventType::Put => {
                    if let Some((uuid, s)) = decode(prefix, kv.key(), kv.value()) {
                        m.insert(uuid, s);
                    }
                }
                EventType::Delete => {
                    if let Some(uuid) = std::str::from_utf8(kv.key())
                        .ok()
                        .and_then(|k| k.strip_prefix(prefix))
                    {
                        m.remove(uuid);
                    }
                }
            }
        }
    }
}
