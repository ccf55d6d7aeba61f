//! API resources stored by topotap itself (captures, packet injections): Skydive's
//! generic CRUD semantics (§1.3) over a store that survives restarts.
//!
//! Lists are JSON objects keyed by UUID; create validates, refuses duplicates with 409,
//! assigns the UUID and answers 201 with the stored object; `X-Resource-TTL` (a Go
//! duration such as `5s` or `1m30s`) makes a resource expire; DELETE answers 200 with an
//! empty body.
//!
//! A change is acknowledged only once it is durable: it is appended to `<name>s.log` (see
//! [`log`]) and synced, and only then applied to what readers see. If it cannot be made
//! durable the caller gets [`StoreError::Storage`] and nothing changed. A store written
//! by an older topotap as one JSON list (`<name>s.json`) is read once and moved to the
//! log.

mod log;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use parking_lot::Mutex;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::sync::{oneshot, watch};
use tracing::{error, warn};

use crate::error::Error;

pub use log::PersistError;

/// A kind of stored resource.
pub trait Resource: Serialize + DeserializeOwned + Clone + Send + Sync + 'static {
    /// URL segment and file name: `capture`.
    const NAME: &'static str;
    /// In messages: `Capture`.
    const TITLE: &'static str;

    fn uuid(&self) -> &str;
    fn set_uuid(&mut self, uuid: String);
    /// Validates a new resource and fills its defaults.
    fn prepare(&mut self) -> Result<(), crate::error::Error>;
    /// Whether `other` already does what `self` asks for (answered with 409).
    fn duplicates(&self, other: &Self) -> bool;
    /// Output-only keys that are not fields of the type: accepted (and ignored) when a
    /// client sends a resource back.
    const OUTPUT_ONLY: &'static [&'static str] = &[];
    /// Where this resource sends traffic (a capture's export target), checked against
    /// `--allow-target` at create.
    fn export_target(&self) -> Option<&str> {
        None
    }
    /// Fills output-only fields computed at read time (a capture's `Count`).
    fn decorate(&mut self, _graph: &topotap_topology::Graph) {}
    /// Fills output-only fields only the answer to its creation carries (a capture's
    /// `Warnings`). Called on a blocking thread: it may evaluate queries.
    fn annotate_created(&mut self, _services: &crate::services::Services) {}
}

/// Declares a resource struct that starts with the header Skydive's node rules, edge
/// rules and alerts share: `UUID` (set by the server), `Name` and `Description` (left
/// out of the JSON when empty). The body is the struct's own fields.
macro_rules! headed_resource {
    ($(#[$meta:meta])* $vis:vis struct $name:ident { $($fields:tt)* }) => {
        $(#[$meta])*
        $vis struct $name {
            #[serde(rename = "UUID", default)]
            pub uuid: String,
            #[serde(rename = "Name", default, skip_serializing_if = "String::is_empty")]
            pub name: String,
            #[serde(
                rename = "Description",
                default,
                skip_serializing_if = "String::is_empty"
            )]
            pub description: String,
            $($fields)*
        }
    };
}
pub(crate) use headed_resource;

/// A stored definition: the resource and when it expires. The etcd store keeps the
/// same JSON as a key's value.
#[derive(Clone, Serialize, Deserialize)]
pub(crate) struct Entry<T> {
    pub(crate) resource: T,
    /// Expiry in ms since the epoch, from `X-Resource-TTL`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) expires_at: Option<i64>,
}

/// A log record as written.
#[derive(Serialize)]
enum RecordRef<'a, T> {
    Put(&'a Entry<T>),
    Delete(&'a str),
}

/// A log record as read back.
#[derive(Deserialize)]
enum Record<T> {
    Put(Entry<T>),
    Delete(String),
}

/// Where the definitions of one kind live: the local log of `allinone` ([`Store`]) or
/// etcd, shared by the analyzers of a fleet (`crate::etcd::EtcdStore`).
///
/// Reads answer from memory and never wait for a disk or a network. A change is
/// acknowledged only once it is durable (synced to the log, acknowledged by etcd);
/// otherwise it fails with [`StoreError::Storage`] and nothing changed.
pub trait DefinitionStore<T: Resource>: Send + Sync {
    /// The live definitions.
    fn list(&self) -> Vec<T>;
    fn get(&self, uuid: &str) -> Option<T>;
    /// Bumped on every change that readers can see; the capture placer and the
    /// injection runner react to it.
    fn watch(&self) -> watch::Receiver<u64>;
    /// Why the store cannot be written now or could not be loaded; shown in
    /// `/api/status`.
    fn persist_error(&self) -> Option<String>;
    /// Validates and stores a new definition under a fresh UUID.
    fn create(&self, resource: T, ttl: Option<Duration>) -> BoxFuture<'_, Result<T, StoreError>>;
    /// Deletes a definition; returns what it was.
    fn delete<'a>(&'a self, uuid: &'a str) -> BoxFuture<'a, Result<T, StoreError>>;
    /// Deletes the definitions whose TTL has passed; returns how many.
    fn expire(&self, now_ms: i64) -> BoxFuture<'_, usize>;
}

/// A store as the services share it.
pub type Definitions<T> = Arc<dyn DefinitionStore<T>>;

impl<T: Resource> DefinitionStore<T> for Store<T> {
    fn list(&self) -> Vec<T> {
        Store::list(self)
    }

    fn get(&self, uuid: &str) -> Option<T> {
        Store::get(self, uuid)
    }

    fn watch(&self) -> watch::Receiver<u64> {
        Store::watch(self)
    }

    fn persist_error(&self) -> Option<String> {
        Store::persist_error(self)
    }

    fn create(&self, resource: T, ttl: Option<Duration>) -> BoxFuture<'_, Result<T, StoreError>> {
        Box::pin(Store::create(self, resource, ttl))
    }

    fn delete<'a>(&'a self, uuid: &'a str) -> BoxFuture<'a, Result<T, StoreError>> {
        Box::pin(Store::delete(self, uuid))
    }

    fn expire(&self, now_ms: i64) -> BoxFuture<'_, usize> {
        Box::pin(Store::expire(self, now_ms))
    }
}

/// Why a store operation failed.
#[derive(Debug, PartialEq, Eq)]
pub enum StoreError {
    /// `Resource::prepare` refused it.
    Rejected(crate::error::Error),
    Duplicate,
    NotFound,
    /// The change could not be made durable and was not made.
    Storage(PersistError),
}

/// Resources of one kind, in memory and on disk.
pub struct Store<T: Resource> {
    mem: Arc<Mem<T>>,
    log: Option<log::Log>,
    /// Why the stored resources could not be (fully) loaded.
    load_error: Option<String>,
}

struct Mem<T> {
    state: Mutex<State<T>>,
    /// Bumped on every change; watchers (the capture placer) react to it.
    version: watch::Sender<u64>,
}

struct State<T> {
    /// What readers see: durable resources only.
    entries: BTreeMap<String, Entry<T>>,
    /// Created, not yet durable: invisible, but a duplicate of one of them is refused.
    creating: BTreeMap<String, T>,
    /// Deletions not yet durable, by UUID, so that expiry does not ask twice.
    deleting: HashMap<String, usize>,
}

impl<T> Mem<T> {
    fn changed(&self) {
        self.version.send_modify(|v| *v += 1);
    }
}

impl<T: Resource> Store<T> {
    /// Keeps `resource` under its own UUID, in memory (definitions received from an
    /// analyzer); false when that UUID is already there.
    pub fn adopt(&self, resource: T) -> bool {
        let mut st = self.mem.state.lock();
        if st.entries.contains_key(resource.uuid()) {
            return false;
        }
        let uuid = resource.uuid().to_owned();
        st.entries.insert(
            uuid,
            Entry {
                resource,
                expires_at: None,
            },
        );
        drop(st);
        self.mem.changed();
        true
    }

    /// Drops what [`Store::adopt`] kept; false when it was not there.
    pub fn forget(&self, uuid: &str) -> bool {
        let gone = self.mem.state.lock().entries.remove(uuid).is_some();
        if gone {
            self.mem.changed();
        }
        gone
    }

    /// Opens the store kept in `dir` (created if needed), loading what a previous run
    /// left; `None` keeps it in memory only. Reads files: call it where blocking is
    /// allowed.
    pub fn open(dir: Option<&Path>) -> Arc<Self> {
        let mut entries = BTreeMap::new();
        let mut load_error = None;
        let log = dir.and_then(|dir| {
            topotap_topology::blocking::section("state store load");
            let (startup, error) = load(dir, &mut entries);
            load_error = error;
            let path = dir.join(format!("{}s.log", T::NAME));
            match log::Log::start(path, startup) {
                Ok(log) => Some(log),
                Err(e) => {
                    let msg = format!("cannot start the {} store writer: {e}", T::NAME);
                    error!("{msg}");
                    load_error = Some(msg);
                    None
                }
            }
        });
        let (version, _) = watch::channel(0);
        Arc::new(Store {
            mem: Arc::new(Mem {
                state: Mutex::new(State {
                    entries,
                    creating: BTreeMap::new(),
                    deleting: HashMap::new(),
                }),
                version,
            }),
            log,
            load_error,
        })
    }

    pub fn watch(&self) -> watch::Receiver<u64> {
        self.mem.version.subscribe()
    }

    pub fn list(&self) -> Vec<T> {
        self.mem
            .state
            .lock()
            .entries
            .values()
            .map(|e| e.resource.clone())
            .collect()
    }

    pub fn get(&self, uuid: &str) -> Option<T> {
        self.mem
            .state
            .lock()
            .entries
            .get(uuid)
            .map(|e| e.resource.clone())
    }

    /// The last persistence failure (cleared by the next successful write), or why
    /// loading failed; shown in `/api/status`.
    pub fn persist_error(&self) -> Option<String> {
        self.log
            .as_ref()
            .and_then(log::Log::status)
            .or_else(|| self.load_error.clone())
    }

    /// Validates and stores a new resource under a fresh UUID; returns once it is
    /// durable.
    pub async fn create(&self, mut resource: T, ttl: Option<Duration>) -> Result<T, StoreError> {
        resource.prepare().map_err(StoreError::Rejected)?;
        let done = {
            let mut st = self.mem.state.lock();
            if st
                .entries
                .values()
                .any(|e| resource.duplicates(&e.resource))
                || st.creating.values().any(|c| resource.duplicates(c))
            {
                return Err(StoreError::Duplicate);
            }
            resource.set_uuid(topotap_topology::Identifier::random().to_string());
            let uuid = resource.uuid().to_owned();
            let entry = Entry {
                resource: resource.clone(),
                expires_at: ttl
                    .map(|d| topotap_topology::now_ms().saturating_add(d.as_millis() as i64)),
            };
            let Some(log) = &self.log else {
                st.entries.insert(uuid, entry);
                drop(st);
                self.mem.changed();
                return Ok(resource);
            };
            let line = encode(&RecordRef::Put(&entry))?;
            st.creating.insert(uuid.clone(), resource.clone());
            let mem = self.mem.clone();
            let (tx, rx) = oneshot::channel();
            let key = uuid.clone();
            // Runs on the writer thread even if the caller has gone away.
            let apply = move |result: Result<(), PersistError>| {
                let mut st = mem.state.lock();
                st.creating.remove(&uuid);
                if result.is_ok() {
                    st.entries.insert(uuid, entry);
                    drop(st);
                    mem.changed();
                }
                let _ = tx.send(result);
            };
            log.submit(key, log::Op::Put, line, Box::new(apply));
            rx
        };
        wait(done).await.map(|()| resource)
    }

    /// Deletes a resource; returns once the deletion is durable.
    pub async fn delete(&self, uuid: &str) -> Result<T, StoreError> {
        let (removed, done) = {
            let mut st = self.mem.state.lock();
            let Some(entry) = st.entries.get(uuid) else {
                return Err(StoreError::NotFound);
            };
            let removed = entry.resource.clone();
            let Some(log) = &self.log else {
                st.entries.remove(uuid);
                drop(st);
                self.mem.changed();
                return Ok(removed);
            };
            let line = encode::<T>(&RecordRef::Delete(uuid))?;
            *st.deleting.entry(uuid.to_owned()).or_default() += 1;
            let mem = self.mem.clone();
            let (tx, rx) = oneshot::channel();
            let key = uuid.to_owned();
            let apply = move |result: Result<(), PersistError>| {
                let mut st = mem.state.lock();
                if let Some(n) = st.deleting.get_mut(&key) {
                    *n -= 1;
                    if *n == 0 {
                        st.deleting.remove(&key);
                    }
                }
                if result.is_ok() && st.entries.remove(&key).is_some() {
                    drop(st);
                    mem.changed();
                }
                let _ = tx.send(result);
            };
            log.submit(uuid.to_owned(), log::Op::Delete, line, Box::new(apply));
            (removed, rx)
        };
        wait(done).await.map(|()| removed)
    }

    /// Deletes, durably, the resources whose TTL has passed; returns how many.
    pub async fn expire(&self, now_ms: i64) -> usize {
        let due: Vec<String> = {
            let st = self.mem.state.lock();
            st.entries
                .iter()
                .filter(|(uuid, e)| {
                    e.expires_at.is_some_and(|t| t <= now_ms) && !st.deleting.contains_key(*uuid)
                })
                .map(|(uuid, _)| uuid.clone())
                .collect()
        };
        let results =
            futures_util::future::join_all(due.iter().map(|uuid| self.delete(uuid))).await;
        results.iter().filter(|r| r.is_ok()).count()
    }
}

fn encode<T: Serialize>(record: &RecordRef<'_, T>) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(record)
        .map(|payload| log::encode(&payload))
        .map_err(|e| StoreError::Storage(PersistError::unavailable(format!("cannot encode: {e}"))))
}

async fn wait(done: oneshot::Receiver<Result<(), PersistError>>) -> Result<(), StoreError> {
    match done.await {
        Ok(result) => result.map_err(StoreError::Storage),
        Err(_) => Err(StoreError::Storage(PersistError::unavailable(
            "the store writer has stopped",
        ))),
    }
}

/// Loads the log of `dir` (or the legacy JSON list) into `entries`; returns how the
/// writer starts and, if something could not be read, why.
fn load<T: Resource>(
    dir: &Path,
    entries: &mut BTreeMap<String, Entry<T>>,
) -> (log::Startup, Option<String>) {
    let path = dir.join(format!("{}s.log", T::NAME));
    let legacy = dir.join(format!("{}s.json", T::NAME));
    let mut startup = log::Startup::default();
    let mut load_error = None;
    match log::read(&path) {
        Ok(Some(replay)) => {
            for w in &replay.warnings {
                warn!("{w}");
            }
            for payload in &replay.payloads {
                match serde_json::from_slice::<Record<T>>(payload) {
                    Ok(Record::Put(e)) => {
                        entries.insert(e.resource.uuid().to_owned(), e);
                    }
                    Ok(Record::Delete(uuid)) => {
                        entries.remove(&uuid);
                    }
                    Err(e) => {
                        let msg = format!("{}: a record is unreadable ({e})", path.display());
                        warn!("{msg}");
                        load_error = Some(msg);
                    }
                }
            }
            startup.truncate_to = replay.truncate_to;
            startup.compact |= replay.corrupt_inside;
            // Left over from a move to the log that was cut short.
            if legacy.exists() {
                startup.compact = true;
                startup.legacy = Some(legacy);
            }
        }
        Ok(None) => {
            startup.compact = true;
            match std::fs::read(&legacy) {
                Ok(bytes) => match serde_json::from_slice::<Vec<Entry<T>>>(&bytes) {
                    Ok(list) => {
                        for e in list {
                            entries.insert(e.resource.uuid().to_owned(), e);
                        }
                        startup.legacy = Some(legacy);
                    }
                    Err(e) => {
                        // Kept as it is: the log takes over, the file stays for a person.
                        let msg =
                            format!("{} is unreadable ({e}); starting empty", legacy.display());
                        error!("{msg}");
                        load_error = Some(msg);
                    }
                },
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    let msg = format!("cannot read {}: {e}", legacy.display());
                    error!("{msg}");
                    startup.refuse = Some(msg.clone());
                    load_error = Some(msg);
                }
            }
        }
        Err(e) => {
            // Never overwrite a log that could not be read.
            let msg = format!("cannot read {}: {e}", path.display());
            error!("{msg}");
            startup.refuse = Some(msg.clone());
            load_error = Some(msg);
        }
    }
    for (uuid, e) in entries.iter() {
        if let Ok(line) = encode(&RecordRef::Put(e)) {
            startup.live.insert(uuid.clone(), line);
        }
    }
    (startup, load_error)
}

/// A time to live that is not a Go duration (Skydive's wording).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid ttl: time: invalid duration \"{0}\"")]
pub struct InvalidDuration(pub String);

/// A TTL the client sent is the client's mistake.
impl From<InvalidDuration> for Error {
    fn from(e: InvalidDuration) -> Self {
        Error::invalid(e)
    }
}

/// Parses a Go duration (`300ms`, `5s`, `1m30s`, `1.5h`) as `X-Resource-TTL` carries it.
pub fn parse_go_duration(s: &str) -> Result<Duration, InvalidDuration> {
    let bad = || InvalidDuration(s.to_owned());
    let mut rest = s.trim();
    if rest.is_empty() {
        return Err(bad());
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        if num_len == 0 {
            return Err(bad());
        }
        let value: f64 = rest[..num_len].parse().map_err(|_| bad())?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(bad()),
        };
        total += value * scale;
        rest = &rest[unit_len..];
    }
    if !total.is_finite() || total > 10.0 * 365.0 * 86400.0 {
        return Err(bad());
    }
    Ok(Duration::from_secs_f64(total))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    #[derive(Clone, Serialize, Deserialize, PartialEq, Debug)]
    struct Thing {
        #[serde(rename = "UUID", default)]
        uuid: String,
        #[serde(rename = "Name")]
        name: String,
    }

    impl Resource for Thing {
        const NAME: &'static str = "thing";
        const TITLE: &'static str = "Thing";
        fn uuid(&self) -> &str {
            &self.uuid
        }
        fn set_uuid(&mut self, uuid: String) {
            self.uuid = uuid;
        }
        fn prepare(&mut self) -> Result<(), crate::error::Error> {
            if self.name.is_empty() {
                return Err(crate::error::Error::invalid("Name: required"));
            }
            Ok(())
        }
        fn duplicates(&self, other: &Self) -> bool {
            self.name == other.name
        }
    }

    fn thing(name: &str) -> Thing {
        Thing {
            uuid: "client-chosen".into(),
            name: name.into(),
        }
    }

    fn names(s: &Store<Thing>) -> Vec<String> {
        let mut v: Vec<String> = s.list().into_iter().map(|t| t.name).collect();
        v.sort();
        v
    }

    fn log_path(dir: &Path) -> PathBuf {
        dir.join("things.log")
    }

    #[tokio::test]
    async fn create_validates_assigns_uuid_and_refuses_duplicates() {
        let s = Store::<Thing>::open(None);
        assert_eq!(
            s.create(thing(""), None).await,
            Err(StoreError::Rejected(crate::error::Error::invalid(
                "Name: required"
            )))
        );
        let a = s.create(thing("a"), None).await.unwrap();
        assert_ne!(a.uuid, "client-chosen");
        assert_eq!(s.create(thing("a"), None).await, Err(StoreError::Duplicate));
        assert_eq!(s.delete(&a.uuid).await.unwrap(), a);
        assert_eq!(s.delete(&a.uuid).await, Err(StoreError::NotFound));
    }

    #[tokio::test]
    async fn survives_reopen_and_expires() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::<Thing>::open(Some(dir.path()));
        let a = s.create(thing("a"), None).await.unwrap();
        let b = s
            .create(thing("b"), Some(Duration::from_secs(5)))
            .await
            .unwrap();
        assert_eq!(s.create(thing("b"), None).await, Err(StoreError::Duplicate));
        drop(s);
        let s = Store::<Thing>::open(Some(dir.path()));
        assert_eq!(s.list().len(), 2);
        let w = s.watch();
        assert_eq!(s.expire(topotap_topology::now_ms() + 6000).await, 1);
        assert!(w.has_changed().unwrap());
        assert!(s.get(&b.uuid).is_none());
        assert_eq!(s.get(&a.uuid), Some(a));
        drop(s);
        let s = Store::<Thing>::open(Some(dir.path()));
        assert_eq!(names(&s), ["a"]);
    }

    #[tokio::test]
    async fn unreadable_file_is_reported_not_fatal() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("things.json"), b"{garbage").unwrap();
        let s = Store::<Thing>::open(Some(dir.path()));
        assert!(s.list().is_empty());
        assert!(s.persist_error().unwrap().contains("unreadable"));
        s.create(thing("a"), None).await.unwrap();
        drop(s);
        // The unreadable file is left for a person to look at; the log wins.
        assert!(dir.path().join("things.json").exists());
        assert_eq!(names(&Store::<Thing>::open(Some(dir.path()))), ["a"]);
    }

    #[tokio::test]
    async fn the_old_whole_file_format_is_read_once_and_moved_to_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let legacy = dir.path().join("things.json");
        let old = serde_json::json!([
            {"resource": {"UUID": "u1", "Name": "one"}},
            {"resource": {"UUID": "u2", "Name": "two"}, "expires_at": 4102444800000i64},
        ]);
        std::fs::write(&legacy, serde_json::to_vec_pretty(&old).unwrap()).unwrap();
        let s = Store::<Thing>::open(Some(dir.path()));
        assert_eq!(names(&s), ["one", "two"]);
        s.create(thing("three"), None).await.unwrap();
        drop(s);
        assert!(!legacy.exists(), "moved to the log");
        assert!(log_path(dir.path()).exists());
        let s = Store::<Thing>::open(Some(dir.path()));
        assert_eq!(names(&s), ["one", "three", "two"]);
        assert_eq!(s.get("u1").unwrap().name, "one");
        // The TTL came along.
        assert_eq!(s.expire(4102444800001).await, 1);
        assert_eq!(names(&s), ["one", "three"]);
    }

    #[tokio::test]
    async fn replay_applies_puts_and_deletes_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::<Thing>::open(Some(dir.path()));
        let mut made = Vec::new();
        for n in ["a", "b", "c", "d"] {
            made.push(s.create(thing(n), None).await.unwrap());
        }
        s.delete(&made[1].uuid).await.unwrap();
        s.delete(&made[3].uuid).await.unwrap();
        s.create(thing("b"), None).await.unwrap();
        drop(s);
        let text = std::fs::read_to_string(log_path(dir.path())).unwrap();
        assert_eq!(text.lines().count(), 7, "appended, not rewritten:\n{text}");
        let s = Store::<Thing>::open(Some(dir.path()));
        assert_eq!(names(&s), ["a", "b", "c"]);
        assert!(s.get(&made[1].uuid).is_none(), "a new UUID for the new b");
        assert!(s.persist_error().is_none());
    }

    #[tokio::test]
    async fn a_torn_last_record_is_ignored_and_cut_off() {
        let dir = tempfile::tempdir().unwrap();
        let path = log_path(dir.path());
        let s = Store::<Thing>::open(Some(dir.path()));
        for n in ["a", "b", "c"] {
            s.create(thing(n), None).await.unwrap();
        }
        drop(s);
        let whole = std::fs::read(&path).unwrap();
        let last_start = whole[..whole.len() - 1]
            .iter()
            .rposition(|&b| b == b'\n')
            .unwrap()
            + 1;
        // The last record cut anywhere: the earlier two survive.
        for cut in [
            last_start + 1,
            last_start + 9,
            whole.len() - 2,
            whole.len() - 1,
        ] {
            std::fs::write(&path, &whole[..cut]).unwrap();
            let s = Store::<Thing>::open(Some(dir.path()));
            assert_eq!(names(&s), ["a", "b"], "cut at {cut}");
        }
        // Appending after a torn tail does not bury the new record behind it.
        std::fs::write(&path, &whole[..whole.len() - 5]).unwrap();
        let s = Store::<Thing>::open(Some(dir.path()));
        s.create(thing("d"), None).await.unwrap();
        drop(s);
        assert_eq!(
            names(&Store::<Thing>::open(Some(dir.path()))),
            ["a", "b", "d"]
        );
        // Garbage in the middle (a damaged sector) loses only what it covers.
        let mut text = std::fs::read(&path).unwrap();
        let first_end = text.iter().position(|&b| b == b'\n').unwrap();
        text[first_end - 3] ^= 0x20;
        std::fs::write(&path, &text).unwrap();
        let s = Store::<Thing>::open(Some(dir.path()));
        assert_eq!(s.list().len(), 2);
    }

    #[tokio::test]
    async fn compaction_keeps_the_log_proportional_to_what_lives() {
        let dir = tempfile::tempdir().unwrap();
        let path = log_path(dir.path());
        let s = Store::<Thing>::open(Some(dir.path()));
        let n = 1500;
        let made: Vec<Thing> =
            futures_util::future::join_all((0..n).map(|i| s.create(thing(&format!("t{i}")), None)))
                .await
                .into_iter()
                .map(Result::unwrap)
                .collect();
        let syncs = s.log.as_ref().unwrap().hooks.lock().syncs;
        assert!(
            syncs < n / 4,
            "concurrent writers share syncs: {syncs} for {n}"
        );
        futures_util::future::join_all(made[10..].iter().map(|t| s.delete(&t.uuid)))
            .await
            .into_iter()
            .for_each(|r| {
                r.unwrap();
            });
        // Closing waits for the writer, which compacts after answering.
        drop(s);
        // 2,990 records appended for 10 live ones: compacted along the way.
        let lines = std::fs::read_to_string(&path).unwrap().lines().count();
        assert!(lines < 1100, "{lines} lines for 10 live records");
        assert!(!path.with_extension("log.tmp").exists());
        let s = Store::<Thing>::open(Some(dir.path()));
        let mut want: Vec<String> = made[..10].iter().map(|t| t.name.clone()).collect();
        want.sort();
        assert_eq!(names(&s), want);
    }

    #[tokio::test]
    async fn a_change_whose_caller_went_away_is_still_applied_once_durable() {
        use futures_util::FutureExt;
        let dir = tempfile::tempdir().unwrap();
        let s = Store::<Thing>::open(Some(dir.path()));
        let mut w = s.watch();
        // Polled once (the record is queued), then dropped, as when a client disconnects.
        assert!(s.create(thing("a"), None).now_or_never().is_none());
        tokio::time::timeout(Duration::from_secs(10), w.changed())
            .await
            .expect("applied")
            .unwrap();
        assert_eq!(names(&s), ["a"]);
        drop(s);
        assert_eq!(names(&Store::<Thing>::open(Some(dir.path()))), ["a"]);
    }

    #[tokio::test]
    async fn a_failed_write_changes_nothing_and_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::<Thing>::open(Some(dir.path()));
        let a = s.create(thing("a"), None).await.unwrap();
        let w = s.watch();
        let hooks = s.log.as_ref().unwrap().hooks.clone();
        hooks.lock().fail_with = Some(nix::errno::Errno::ENOSPC as i32);
        let Err(StoreError::Storage(e)) = s.create(thing("b"), None).await else {
            panic!("create succeeded on a full disk");
        };
        assert!(e.no_space && e.message.contains("No space left"), "{e:?}");
        assert_eq!(names(&s), ["a"]);
        assert!(matches!(
            s.delete(&a.uuid).await,
            Err(StoreError::Storage(PersistError { no_space: true, .. }))
        ));
        assert_eq!(s.get(&a.uuid), Some(a.clone()));
        assert!(s.persist_error().unwrap().contains("No space left"));
        hooks.lock().fail_with = Some(nix::errno::Errno::EIO as i32);
        let Err(StoreError::Storage(e)) = s.create(thing("b"), None).await else {
            panic!("create succeeded on a failing disk");
        };
        assert!(!e.no_space, "{e:?}");
        assert!(!w.has_changed().unwrap(), "watchers saw no change");

        // Once the disk is back, the same resource is not a duplicate of a failed one.
        hooks.lock().fail_with = None;
        let b = s.create(thing("b"), None).await.unwrap();
        assert!(s.persist_error().is_none());
        drop(s);
        let s = Store::<Thing>::open(Some(dir.path()));
        assert_eq!(names(&s), ["a", "b"]);
        assert_eq!(s.get(&b.uuid), Some(b));
    }

    #[test]
    fn go_durations() {
        assert_eq!(parse_go_duration("5s").unwrap(), Duration::from_secs(5));
        assert_eq!(parse_go_duration("5000ms").unwrap(), Duration::from_secs(5));
        assert_eq!(parse_go_duration("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(
            parse_go_duration("1.5h").unwrap(),
            Duration::from_secs(5400)
        );
        for bad in ["", "5", "s", "5x", "-1s", "1e3s"] {
            assert_eq!(
                Error::from(parse_go_duration(bad).unwrap_err()),
                Error::Invalid(format!("invalid ttl: time: invalid duration \"{bad}\"")),
            );
        }
    }
}
