//! Definitions (captures, injections) kept in etcd and mirrored in memory by every
//! analyzer.
//!
//! Each definition is one key, `/topotap/<name>s/<UUID>`, whose value is the same
//! JSON the local log keeps (`{"resource": ..., "expires_at": ...}`).
//!
//! - **Writes** go to etcd and answer only once etcd acknowledged them. A create reads
//!   the prefix, checks for a duplicate, and writes in a transaction that fails if any
//!   definition of the prefix changed since that read, so two analyzers cannot both
//!   accept the same capture. Then the write is applied to the local mirror, so the
//!   analyzer that took it reads it back at once.
//! - **Reads** answer from the mirror, which a watch on the prefix keeps current. When
//!   the watch breaks (etcd restarted, cut off) or etcd compacted the history it needs,
//!   the mirror reloads the whole prefix and watches again from there.
//! - **Revisions** order what the mirror applies: each key remembers the revision of
//!   its last change (deletions too, until the watch has passed them), so a watch
//!   event older than a write already applied locally is ignored.
//! - **TTL**: the value carries the expiry time. Expired definitions are hidden from
//!   readers at once and deleted from etcd by `expire` (any analyzer; a deletion is
//!   conditional on the revision it saw, so several analyzers may race harmlessly).
//!   Nothing of a deleted definition stays in etcd.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use etcd_client::{Compare, CompareOp, DeleteOptions, EventType, GetOptions, KeyValue, Txn, TxnOp};
use futures_util::future::BoxFuture;
use parking_lot::Mutex;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use super::{backoff, describe, Etcd, EtcdError, ROOT};
use crate::resources::{DefinitionStore, Entry, Resource, StoreError};

/// How many times a create re-reads the prefix when other writes keep slipping in
/// between its read and its write.
const CREATE_ATTEMPTS: usize = 8;

/// Definitions of one kind, in etcd.
pub struct EtcdStore<T: Resource> {
    etcd: Etcd,
    /// `/topotap/captures/`.
    prefix: String,
    mirror: Arc<Mirror<T>>,
    watcher: JoinHandle<()>,
}

struct Mirror<T> {
    state: Mutex<State<T>>,
    /// Bumped on every change readers can see.
    version: watch::Sender<u64>,
    /// Why etcd cannot be reached, from the last failed call or watch; cleared by the
    /// next success.
    status: Mutex<Option<String>>,
    /// Turns true once the prefix has been loaded.
    loaded: watch::Sender<bool>,
}

struct Item<T> {
    entry: Entry<T>,
    /// Revision of the key's last change.
    rev: i64,
}

struct State<T> {
    items: BTreeMap<String, Item<T>>,
    /// Revision of recent deletions, until the watch has passed them.
    tombstones: HashMap<String, i64>,
    /// Revision up to which etcd's history has been applied.
    rev: i64,
    /// Being created here, not yet acknowledged: a duplicate of one of them is refused.
    creating: BTreeMap<String, T>,
    /// Expired ones readers were told about (hidden, not yet deleted from etcd).
    expired: HashSet<String>,
}

impl<T> State<T> {
    /// Applies a change of `uuid` made at `rev`, unless a newer one is known; returns
    /// whether it changed anything.
    fn apply(&mut self, uuid: &str, rev: i64, entry: Option<Entry<T>>) -> bool {
        let known = self
            .items
            .get(uuid)
            .map(|i| i.rev)
            .or_else(|| self.tombstones.get(uuid).copied());
        if known.is_some_and(|k| k >= rev) {
            return false;
        }
        match entry {
            Some(entry) => {
                self.tombstones.remove(uuid);
                self.items.insert(uuid.to_owned(), Item { entry, rev });
                true
            }
            None => {
                self.tombstones.insert(uuid.to_owned(), rev);
                self.expired.remove(uuid);
                self.items.remove(uuid).is_some()
            }
        }
    }

    /// The history up to `rev` is applied.
    fn passed(&mut self, rev: i64) {
        self.rev = self.rev.max(rev);
        let upto = self.rev;
        self.tombstones.retain(|_, r| *r > upto);
    }
}

fn visible<T>(entry: &Entry<T>, now_ms: i64) -> bool {
    entry.expires_at.is_none_or(|t| t > now_ms)
}

impl<T: Resource> Mirror<T> {
    fn changed(&self) {
        self.version.send_modify(|v| *v += 1);
    }

    fn set_status(&self, status: Option<String>) {
        let mut current = self.status.lock();
        if let Some(s) = &status {
            if current.as_deref() != Some(s.as_str()) {
                warn!("{s}");
            }
        } else if current.is_some() {
            info!("etcd reachable again ({} store)", T::NAME);
        }
        *current = status;
    }

    /// Replaces the mirror with the prefix as read at `rev`.
    fn reset(&self, prefix: &str, kvs: &[KeyValue], rev: i64) {
        let mut fresh = HashMap::new();
        for kv in kvs {
            if let Some((uuid, entry)) = decode::<T>(prefix, kv) {
                fresh.insert(uuid, (kv.mod_revision(), entry));
            }
        }
        let mut changed = false;
        {
            let mut st = self.state.lock();
            // Gone at `rev`: unless changed after it (a local write the watch will
            // bring again).
            let gone: Vec<String> = st
                .items
                .iter()
                .filter(|(uuid, item)| item.rev <= rev && !fresh.contains_key(*uuid))
                .map(|(uuid, _)| uuid.clone())
                .collect();
            for uuid in gone {
                st.items.remove(&uuid);
                st.expired.remove(&uuid);
                changed = true;
            }
            for (uuid, (mod_rev, entry)) in fresh {
                changed |= st.apply(&uuid, mod_rev, Some(entry));
            }
            st.passed(rev);
        }
        if changed {
            self.changed();
        }
        self.loaded.send_replace(true);
    }
}

/// The UUID and definition of a key of the prefix; `None` (logged) for anything else.
fn decode<T: Resource>(prefix: &str, kv: &KeyValue) -> Option<(String, Entry<T>)> {
    let key = String::from_utf8_lossy(kv.key());
    let uuid = key.strip_prefix(prefix)?;
    if uuid.is_empty() || uuid.contains('/') {
        return None;
    }
    match serde_json::from_slice::<Entry<T>>(kv.value()) {
        Ok(entry) if entry.resource.uuid() == uuid => Some((uuid.to_owned(), entry)),
        Ok(_) => {
            warn!("etcd key {key}: the definition's UUID is not the key's; ignored");
            None
        }
        Err(e) => {
            warn!("etcd key {key}: unreadable definition ({e}); ignored");
            None
        }
    }
}

/// The UUID a key of the prefix names.
fn uuid_of<'a>(prefix: &str, key: &'a [u8]) -> Option<&'a str> {
    std::str::from_utf8(key)
        .ok()?
        .strip_prefix(prefix)
        .filter(|u| !u.is_empty() && !u.contains('/'))
}

/// Removes a UUID from the set being created when the create ends, however it ends.
struct Creating<'a, T> {
    mirror: &'a Mirror<T>,
    uuid: String,
}

impl<T> Drop for Creating<'_, T> {
    fn drop(&mut self) {
        self.mirror.state.lock().creating.remove(&self.uuid);
    }
}

impl<T: Resource> EtcdStore<T> {
    /// The store of `T` in the cluster `etcd`: loads what etcd holds (waiting up to the
    /// call timeout; if etcd is down it starts empty and fills in once etcd answers)
    /// and keeps watching it.
    pub async fn open(etcd: &Etcd) -> Arc<Self> {
        let prefix = format!("{ROOT}{}s/", T::NAME);
        let (version, _) = watch::channel(0);
        let (loaded, mut is_loaded) = watch::channel(false);
        let mirror = Arc::new(Mirror {
            state: Mutex::new(State {
                items: BTreeMap::new(),
                tombstones: HashMap::new(),
                rev: 0,
                creating: BTreeMap::new(),
                expired: HashSet::new(),
            }),
            version,
            status: Mutex::new(None),
            loaded,
        });
        let watcher = tokio::spawn(follow(etcd.clone(), prefix.clone(), mirror.clone()));
        let _ = tokio::time::timeout(etcd.timeout, is_loaded.wait_for(|l| *l)).await;
        Arc::new(EtcdStore {
            etcd: etcd.clone(),
            prefix,
            mirror,
            watcher,
        })
    }

    /// Whether the prefix has been loaded from etcd at least once.
    #[cfg_attr(not(test), allow(dead_code))]
    pub fn loaded(&self) -> bool {
        *self.mirror.loaded.borrow()
    }

    /// Revision of etcd's history the mirror has applied (for tests and status).
    #[cfg_attr(not(test), allow(dead_code))]
    pub fn revision(&self) -> i64 {
        self.mirror.state.lock().rev
    }

    fn key(&self, uuid: &str) -> String {
        format!("{}{uuid}", self.prefix)
    }

    /// Records a failed call for `/api/status` (the watch clears it once it has
    /// reloaded: a write alone does not prove the mirror is current).
    fn noted<R>(&self, result: Result<R, EtcdError>) -> Result<R, EtcdError> {
        if let Err(e) = &result {
            self.mirror.set_status(Some(e.0.clone()));
        }
        result
    }

    async fn create_now(&self, mut resource: T, ttl: Option<Duration>) -> Result<T, StoreError> {
        resource.prepare().map_err(StoreError::Rejected)?;
        let now = topotap_topology::now_ms();
        {
            let st = self.mirror.state.lock();
            let seen = st
                .items
                .values()
                .filter(|i| visible(&i.entry, now))
                .map(|i| &i.entry.resource)
                .chain(st.creating.values());
            if seen.into_iter().any(|other| resource.duplicates(other)) {
                return Err(StoreError::Duplicate);
            }
        }
        let uuid = topotap_topology::Identifier::random().to_string();
        resource.set_uuid(uuid.clone());
        let entry = Entry {
            resource: resource.clone(),
            expires_at: ttl.map(|d| now.saturating_add(d.as_millis() as i64)),
        };
        let value = serde_json::to_vec(&entry).map_err(|e| {
            StoreError::Storage(crate::resources::PersistError::unavailable(format!(
                "cannot encode: {e}"
            )))
        })?;
        self.mirror
            .state
            .lock()
            .creating
            .insert(uuid.clone(), resource.clone());
        let _creating = Creating {
            mirror: &self.mirror,
            uuid: uuid.clone(),
        };
        let key = self.key(&uuid);
        let mut kv = self.etcd.client().kv_client();
        for _ in 0..CREATE_ATTEMPTS {
            let read = self.noted(
                self.etcd
                    .call(
                        "read definitions",
                        kv.get(self.prefix.clone(), Some(GetOptions::new().with_prefix())),
                    )
                    .await,
            )?;
            let read_rev = read.header().map_or(0, |h| h.revision());
            let now = topotap_topology::now_ms();
            for other in read.kvs() {
                if let Some((other_uuid, e)) = decode::<T>(&self.prefix, other) {
                    if other_uuid != uuid && visible(&e, now) && resource.duplicates(&e.resource) {
                        return Err(StoreError::Duplicate);
                    }
                }
            }
            // Written only if no definition of the prefix changed since the read.
            let txn = Txn::new()
                .when([
                    Compare::mod_revision(self.prefix.clone(), CompareOp::Less, read_rev + 1)
                        .with_prefix(),
                ])
                .and_then([TxnOp::put(key.clone(), value.clone(), None)]);
            let written = self.noted(self.etcd.call("write a definition", kv.txn(txn)).await)?;
            if written.succeeded() {
                let rev = written.header().map_or(0, |h| h.revision());
                let changed = self.mirror.state.lock().apply(&uuid, rev, Some(entry));
                if changed {
                    self.mirror.changed();
                }
                return Ok(resource);
            }
        }
        Err(EtcdError(format!(
            "etcd at {}: definitions kept changing while checking for a duplicate; try again",
            self.etcd.endpoints()
        ))
        .into())
    }

    async fn delete_now(&self, uuid: &str) -> Result<T, StoreError> {
        if uuid.is_empty() || uuid.contains('/') {
            return Err(StoreError::NotFound);
        }
        let mut kv = self.etcd.client().kv_client();
        let known = self
            .mirror
            .state
            .lock()
            .items
            .get(uuid)
            .map(|i| i.entry.resource.clone());
        let resp = self.noted(
            self.etcd
                .call(
                    "delete a definition",
                    kv.delete(self.key(uuid), Some(DeleteOptions::new().with_prev_key())),
                )
                .await,
        )?;
        let rev = resp.header().map_or(0, |h| h.revision());
        let removed = resp
            .prev_kvs()
            .first()
            .and_then(|kv| decode::<T>(&self.prefix, kv))
            .map(|(_, e)| e.resource)
            .or(known);
        if resp.deleted() == 0 {
            return Err(StoreError::NotFound);
        }
        if self.mirror.state.lock().apply(uuid, rev, None) {
            self.mirror.changed();
        }
        removed.ok_or(StoreError::NotFound)
    }

    async fn expire_now(&self, now_ms: i64) -> usize {
        let due: Vec<(String, i64)> = {
            let mut st = self.mirror.state.lock();
            let due: Vec<(String, i64)> = st
                .items
                .iter()
                .filter(|(_, i)| !visible(&i.entry, now_ms))
                .map(|(uuid, i)| (uuid.clone(), i.rev))
                .collect();
            let newly_hidden = due
                .iter()
                .filter(|(uuid, _)| st.expired.insert(uuid.clone()))
                .count();
            drop(st);
            if newly_hidden > 0 {
                self.mirror.changed();
            }
            due
        };
        let mut kv = self.etcd.client().kv_client();
        let mut deleted = 0;
        for (uuid, rev) in due {
            let key = self.key(&uuid);
            let txn = Txn::new()
                .when([Compare::mod_revision(key.clone(), CompareOp::Equal, rev)])
                .and_then([TxnOp::delete(key, None)]);
            match self.noted(
                self.etcd
                    .call("delete an expired definition", kv.txn(txn))
                    .await,
            ) {
                Ok(resp) => {
                    if resp.succeeded() {
                        let at = resp.header().map_or(0, |h| h.revision());
                        self.mirror.state.lock().apply(&uuid, at, None);
                        deleted += 1;
                    }
                }
                // Hidden already; deleted once etcd answers again.
                Err(_) => break,
            }
        }
        deleted
    }
}

impl<T: Resource> Drop for EtcdStore<T> {
    fn drop(&mut self) {
        self.watcher.abort();
    }
}

impl<T: Resource> DefinitionStore<T> for EtcdStore<T> {
    fn list(&self) -> Vec<T> {
        let now = topotap_topology::now_ms();
        self.mirror
            .state
            .lock()
            .items
            .values()
            .filter(|i| visible(&i.entry, now))
            .map(|i| i.entry.resource.clone())
            .collect()
    }

    fn get(&self, uuid: &str) -> Option<T> {
        let now = topotap_topology::now_ms();
        self.mirror
            .state
            .lock()
            .items
            .get(uuid)
            .filter(|i| visible(&i.entry, now))
            .map(|i| i.entry.resource.clone())
    }

    fn watch(&self) -> watch::Receiver<u64> {
        self.mirror.version.subscribe()
    }

    fn persist_error(&self) -> Option<String> {
        self.mirror.status.lock().clone()
    }

    fn create(&self, resource: T, ttl: Option<Duration>) -> BoxFuture<'_, Result<T, StoreError>> {
        Box::pin(self.create_now(resource, ttl))
    }

    fn delete<'a>(&'a self, uuid: &'a str) -> BoxFuture<'a, Result<T, StoreError>> {
        Box::pin(self.delete_now(uuid))
    }

    fn expire(&self, now_ms: i64) -> BoxFuture<'_, usize> {
        Box::pin(self.expire_now(now_ms))
    }
}

/// Keeps the mirror current: load, watch, and again after any break.
async fn follow<T: Resource>(etcd: Etcd, prefix: String, mirror: Arc<Mirror<T>>) {
    const FIRST: Duration = Duration::from_millis(200);
    let mut delay = FIRST;
    loop {
        match load_and_watch(&etcd, &prefix, &mirror).await {
            // Compacted past what the watch needed: reload at once.
            Ok(()) => delay = FIRST,
            Err(e) => {
                mirror.set_status(Some(e.0));
                backoff(&mut delay, Duration::from_secs(5)).await;
            }
        }
    }
}

async fn load_and_watch<T: Resource>(
    etcd: &Etcd,
    prefix: &str,
    mirror: &Mirror<T>,
) -> Result<(), EtcdError> {
    let (read, mut stream) = etcd.read_and_watch(prefix, "definitions").await?;
    let rev = read.header().map_or(0, |h| h.revision());
    mirror.reset(prefix, read.kvs(), rev);
    mirror.set_status(None);
    loop {
        let resp = stream
            .message()
            .await
            .map_err(|e| etcd.error("watch definitions", describe(&e)))?
            .ok_or_else(|| etcd.error("watch definitions", "the stream ended"))?;
        if resp.compact_revision() > 0 {
            info!(
                "{prefix}: etcd compacted its history up to {}; reloading",
                resp.compact_revision()
            );
            return Ok(());
        }
        if resp.canceled() {
            return Err(etcd.error(
                "watch definitions",
                format!("cancelled: {}", resp.cancel_reason()),
            ));
        }
        let mut changed = false;
        {
            let mut st = mirror.state.lock();
            for ev in resp.events() {
                let Some(kv) = ev.kv() else { continue };
                let Some(uuid) = uuid_of(prefix, kv.key()) else {
                    continue;
                };
                let entry = match ev.event_type() {
                    EventType::Put => match decode::<T>(prefix, kv) {
                        Some((_, e)) => Some(e),
                        None => continue,
                    },
                    EventType::Delete => None,
                };
                changed |= st.apply(uuid, kv.mod_revision(), entry);
            }
            if let Some(h) = resp.header() {
                st.passed(h.revision());
            }
        }
        if changed {
            mirror.changed();
        }
    }
}
