//! API resources stored by topotap itself (captures, packet injections): Skydive's
//! generic CRUD semantics (§1.3) over a store that survives restarts.
//!
//! Lists are JSON objects keyed by UUID; create validates, refuses duplicates with 409,
//! assigns the UUID and answers 201 with the stored object; `X-Resource-TTL` (a Go
//! duration such as `5s` or `1m30s`) makes a resource expire; DELETE answers 200 with an
//! empty body. The store is written atomically (temporary file, fsync, rename) after
//! every change, so a crash leaves either the old or the new list.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tracing::{error, warn};

/// A kind of stored resource.
pub trait Resource: Serialize + DeserializeOwned + Clone + Send + Sync + 'static {
    /// URL segment and file name: `capture`.
    const NAME: &'static str;
    /// In messages: `Capture`.
    const TITLE: &'static str;

    fn uuid(&self) -> &str;
    fn set_uuid(&mut self, uuid: String);
    /// Validates a new resource and fills its defaults; the error is a one-line reason.
    fn prepare(&mut self) -> Result<(), String>;
    /// Whether `other` already does what `self` asks for (answered with 409).
    fn duplicates(&self, other: &Self) -> bool;
    /// Fills output-only fields computed at read time (a capture's `Count`).
    fn decorate(&mut self, _graph: &topotap_topology::Graph) {}
}

#[derive(Clone, Serialize, Deserialize)]
struct Entry<T> {
    resource: T,
    /// Expiry in ms since the epoch, from `X-Resource-TTL`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    expires_at: Option<i64>,
}

/// Why a store operation failed.
#[derive(Debug, PartialEq, Eq)]
pub enum StoreError {
    Invalid(String),
    Duplicate,
    NotFound,
}

/// Resources of one kind, in memory and on disk.
pub struct Store<T: Resource> {
    entries: Mutex<BTreeMap<String, Entry<T>>>,
    path: Option<PathBuf>,
    /// Bumped on every change; watchers (the capture placer) react to it.
    version: watch::Sender<u64>,
    /// The last persistence failure, shown in `/api/status`.
    persist_error: Mutex<Option<String>>,
}

impl<T: Resource> Store<T> {
    /// Opens the store kept in `dir` (created if needed), loading what a previous run
    /// left; `None` keeps it in memory only.
    pub fn open(dir: Option<&Path>) -> Arc<Self> {
        let path = dir.map(|d| d.join(format!("{}s.json", T::NAME)));
        let mut entries = BTreeMap::new();
        let mut persist_error = None;
        if let Some(p) = &path {
            match std::fs::read(p) {
                Ok(bytes) => match serde_json::from_slice::<Vec<Entry<T>>>(&bytes) {
                    Ok(list) => {
                        for e in list {
                            entries.insert(e.resource.uuid().to_owned(), e);
                        }
                    }
                    Err(e) => {
                        let msg = format!("{} is unreadable ({e}); starting empty", p.display());
                        error!("{msg}");
                        persist_error = Some(msg);
                    }
                },
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    let msg = format!("cannot read {}: {e}", p.display());
                    error!("{msg}");
                    persist_error = Some(msg);
                }
            }
        }
        let (version, _) = watch::channel(0);
        Arc::new(Store {
            entries: Mutex::new(entries),
            path,
            version,
            persist_error: Mutex::new(persist_error),
        })
    }

    pub fn watch(&self) -> watch::Receiver<u64> {
        self.version.subscribe()
    }

    pub fn list(&self) -> Vec<T> {
        self.entries
            .lock()
            .values()
            .map(|e| e.resource.clone())
            .collect()
    }

    pub fn get(&self, uuid: &str) -> Option<T> {
        self.entries.lock().get(uuid).map(|e| e.resource.clone())
    }

    pub fn persist_error(&self) -> Option<String> {
        self.persist_error.lock().clone()
    }

    /// Validates and stores a new resource under a fresh UUID.
    pub fn create(&self, mut resource: T, ttl: Option<Duration>) -> Result<T, StoreError> {
        resource.prepare().map_err(StoreError::Invalid)?;
        let mut entries = self.entries.lock();
        if entries.values().any(|e| resource.duplicates(&e.resource)) {
            return Err(StoreError::Duplicate);
        }
        resource.set_uuid(topotap_topology::Identifier::random().to_string());
        let expires_at =
            ttl.map(|d| topotap_topology::now_ms().saturating_add(d.as_millis() as i64));
        entries.insert(
            resource.uuid().to_owned(),
            Entry {
                resource: resource.clone(),
                expires_at,
            },
        );
        self.persist(&entries);
        drop(entries);
        self.version.send_modify(|v| *v += 1);
        Ok(resource)
    }

    pub fn delete(&self, uuid: &str) -> Result<T, StoreError> {
        let mut entries = self.entries.lock();
        let removed = entries.remove(uuid).ok_or(StoreError::NotFound)?;
        self.persist(&entries);
        drop(entries);
        self.version.send_modify(|v| *v += 1);
        Ok(removed.resource)
    }

    /// Deletes the resources whose TTL has passed; returns how many.
    pub fn expire(&self, now_ms: i64) -> usize {
        let mut entries = self.entries.lock();
        let before = entries.len();
        entries.retain(|_, e| e.expires_at.is_none_or(|t| t > now_ms));
        let removed = before - entries.len();
        if removed > 0 {
            self.persist(&entries);
            drop(entries);
            self.version.send_modify(|v| *v += 1);
        }
        removed
    }

    fn persist(&self, entries: &BTreeMap<String, Entry<T>>) {
        let Some(path) = &self.path else { return };
        let list: Vec<&Entry<T>> = entries.values().collect();
        let result = serde_json::to_vec_pretty(&list)
            .map_err(std::io::Error::other)
            .and_then(|bytes| write_atomically(path, &bytes));
        let mut err = self.persist_error.lock();
        match result {
            Ok(()) => *err = None,
            Err(e) => {
                let msg = format!("cannot save {}: {e}", path.display());
                warn!("{msg}");
                *err = Some(msg);
            }
        }
    }
}

/// Writes `bytes` to `path` so that readers see the old or the new content, never a mix.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = path.with_extension("json.tmp");
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Parses a Go duration (`300ms`, `5s`, `1m30s`, `1.5h`) as `X-Resource-TTL` carries it.
pub fn parse_go_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("invalid ttl: time: invalid duration \"{s}\"");
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
        fn prepare(&mut self) -> Result<(), String> {
            if self.name.is_empty() {
                return Err("Name: required".into());
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

    #[test]
    fn create_validates_assigns_uuid_and_refuses_duplicates() {
        let s = Store::<Thing>::open(None);
        assert_eq!(
            s.create(thing(""), None),
            Err(StoreError::Invalid("Name: required".into()))
        );
        let a = s.create(thing("a"), None).unwrap();
        assert_ne!(a.uuid, "client-chosen");
        assert_eq!(s.create(thing("a"), None), Err(StoreError::Duplicate));
        assert_eq!(s.delete(&a.uuid).unwrap(), a);
        assert_eq!(s.delete(&a.uuid), Err(StoreError::NotFound));
    }

    #[test]
    fn survives_reopen_and_expires() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::<Thing>::open(Some(dir.path()));
        let a = s.create(thing("a"), None).unwrap();
        let b = s.create(thing("b"), Some(Duration::from_secs(5))).unwrap();
        drop(s);
        let s = Store::<Thing>::open(Some(dir.path()));
        assert_eq!(s.list().len(), 2);
        let w = s.watch();
        assert_eq!(s.expire(topotap_topology::now_ms() + 6000), 1);
        assert!(w.has_changed().unwrap());
        assert!(s.get(&b.uuid).is_none());
        assert_eq!(s.get(&a.uuid), Some(a));
        let s = Store::<Thing>::open(Some(dir.path()));
        assert_eq!(s.list().len(), 1);
    }

    #[test]
    fn unreadable_file_is_reported_not_fatal() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("things.json"), b"{garbage").unwrap();
        let s = Store::<Thing>::open(Some(dir.path()));
        assert!(s.list().is_empty());
        assert!(s.persist_error().unwrap().contains("unreadable"));
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
            assert!(parse_go_duration(bad).is_err(), "{bad}");
        }
    }
}
