//! The embedded history store: one redb file (`history.redb` in the state dir).
//!
//! Tables:
//! - `revisions`: `(to, seq)` -> `from` (8 bytes, little-endian), kind (`n`/`e`, with
//!   the high bit set when the revision ended by a deletion), the element's JSON. An
//!   open revision has `to = i64::MAX`. Keyed by end time, so "valid at t" reads only
//!   the revisions that ended after `t` (recent ones and the open ones), and retention
//!   removes a prefix.
//! - `revisions_by_start`: the same revisions by begin time, bucketed by length
//!   ([`super::redb_index`]): "valid at t" and "valid during a window" read about as
//!   many entries as they return, then each revision by its key. A file written before
//!   this table was kept gets it when opened.
//! - `open`: kind + element ID -> `seq` of its open revision.
//! - `meta`: `seq` (next sequence number), `horizon`, `bytes` and `count` of stored
//!   revisions; `version` (one more at every write), `latest` (the latest change time
//!   written) and `rewrites` (writes with a change before `latest`), the [`Stamp`].
//!
//! Every `apply` is one write transaction, committed durably before it returns.
//!
//! Removing revisions frees pages that redb reuses for later writes but does not give
//! back to the file system: [`HistoryStore::compact`] does (`Database::compact`), with
//! every read and write waiting for it.

use std::path::{Path, PathBuf};

use parking_lot::RwLock;
use redb::{Database, ReadableTable, TableDefinition};

use super::redb_index::{self as index, OPEN_END};
use super::{Change, HistoryError, HistoryStore, Kind, PointRead, Revision, Stamp};

const REVISIONS: TableDefinition<(i64, u64), &[u8]> = TableDefinition::new("revisions");
const BY_START: TableDefinition<index::Key, i64> = TableDefinition::new("revisions_by_start");
const OPEN: TableDefinition<&str, u64> = TableDefinition::new("open");
const META: TableDefinition<&str, i64> = TableDefinition::new("meta");

/// A redb file of revisions.
pub struct RedbStore {
    /// Written only to compact it (no transaction may be open then).
    pub(super) db: RwLock<Database>,
    path: PathBuf,
}

fn e(err: impl std::fmt::Display) -> HistoryError {
    HistoryError::new(err)
}

fn open_key(kind: Kind, id: &str) -> String {
    let mut k = String::with_capacity(id.len() + 1);
    k.push(kind.code() as char);
    k.push_str(id);
    k
}

fn encode(kind: Kind, from: i64, doc: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(9 + doc.len());
    v.extend_from_slice(&from.to_le_bytes());
    v.push(kind.code());
    v.extend_from_slice(doc);
    v
}

/// Set on the kind byte of a revision that ended by a deletion.
const DELETED: u8 = 0x80;

/// A stored value's begin time and kind, without its document.
fn head(v: &[u8]) -> Option<(i64, Kind)> {
    let from = i64::from_le_bytes(v.get(..8)?.try_into().ok()?);
    Some((from, Kind::from_code(*v.get(8)? & !DELETED)?))
}

fn decode(v: &[u8], to: i64) -> Option<Revision> {
    let (from, kind) = head(v)?;
    Some(Revision {
        kind,
        from,
        to: (to != OPEN_END).then_some(to),
        deleted: v[8] & DELETED != 0,
        doc: v[9..].to_vec(),
    })
}

fn get(
    meta: &impl ReadableTable<&'static str, i64>,
    key: &str,
) -> Result<Option<i64>, HistoryError> {
    Ok(meta.get(key).map_err(e)?.map(|v| v.value()))
}

fn stamp_of(meta: &impl ReadableTable<&'static str, i64>) -> Result<Stamp, HistoryError> {
    Ok(Stamp {
        version: get(meta, "version")?.unwrap_or(0) as u64,
        rewrites: get(meta, "rewrites")?.unwrap_or(0) as u64,
        horizon: get(meta, "horizon")?.unwrap_or(0),
    })
}

/// The latest change time of the revisions stored: the latest end, or the latest
/// begin of an open revision.
fn latest_of(revs: &impl ReadableTable<(i64, u64), &'static [u8]>) -> Result<i64, HistoryError> {
    let mut latest = i64::MIN;
    if let Some(item) = revs.range(..(OPEN_END, 0u64)).map_err(e)?.next_back() {
        latest = item.map_err(e)?.0.value().0;
    }
    for item in revs.range((OPEN_END, 0u64)..).map_err(e)? {
        let (_, v) = item.map_err(e)?;
        if let Some((from, _)) = head(v.value()) {
            latest = latest.max(from);
        }
    }
    Ok(latest)
}

/// The revisions at these keys of the revision table (from [`index::valid`]).
fn read(
    revs: &impl ReadableTable<(i64, u64), &'static [u8]>,
    keys: Vec<index::Found>,
) -> Result<Vec<Revision>, HistoryError> {
    let mut out = Vec::with_capacity(keys.len());
    for (_, (to, seq)) in keys {
        if let Some(v) = revs.get((to, seq)).map_err(e)? {
            out.extend(decode(v.value(), to));
        }
    }
    Ok(out)
}

impl RedbStore {
    /// Opens (or creates) the file; a new file's history begins now.
    pub fn open(path: &Path) -> Result<RedbStore, HistoryError> {
        let db = Database::create(path)
            .map_err(|err| HistoryError(format!("cannot open {}: {err}", path.display())))?;
        let tx = db.begin_write().map_err(e)?;
        {
            let revs = tx.open_table(REVISIONS).map_err(e)?;
            tx.open_table(OPEN).map_err(e)?;
            let mut meta = tx.open_table(META).map_err(e)?;
            if meta.get("horizon").map_err(e)?.is_none() {
                meta.insert("horizon", topotap_topology::now_ms())
                    .map_err(e)?;
            }
            // A file written before `latest` was kept.
            if meta.get("latest").map_err(e)?.is_none() {
                meta.insert("latest", latest_of(&revs)?).map_err(e)?;
            }
            // A file written before the index by begin time was kept.
            let mut by_start = tx.open_table(BY_START).map_err(e)?;
            if meta.get("by_start").map_err(e)?.is_none() {
                by_start.retain(|_, _| false).map_err(e)?;
                index::build(&revs, &mut by_start)?;
                meta.insert("by_start", 1).map_err(e)?;
            }
        }
        super::redb_flows::index_if_needed(&tx)?;
        tx.commit().map_err(e)?;
        Ok(RedbStore {
            db: RwLock::new(db),
            path: path.to_owned(),
        })
    }

    fn meta(&self, key: &str) -> Result<i64, HistoryError> {
        let db = self.db.read();
        let tx = db.begin_read().map_err(e)?;
        let meta = tx.open_table(META).map_err(e)?;
        let v = meta.get(key).map_err(e)?.map(|v| v.value());
        Ok(v.unwrap_or(0))
    }
}

/// Adds `d` to a counter of the `meta` table.
fn bump(meta: &mut redb::Table<&str, i64>, key: &str, d: i64) -> Result<(), HistoryError> {
    let v = meta.get(key).map_err(e)?.map(|v| v.value()).unwrap_or(0);
    meta.insert(key, v + d).map_err(e)?;
    Ok(())
}

impl HistoryStore for RedbStore {
    fn backend(&self) -> &'static str {
        "redb"
    }

    fn apply(&self, changes: &[Change]) -> Result<(), HistoryError> {
        if changes.is_empty() {
            return Ok(());
        }
        let db = self.db.read();
        let tx = db.begin_write().map_err(e)?;
        {
            let mut revs = tx.open_table(REVISIONS).map_err(e)?;
            let mut open = tx.open_table(OPEN).map_err(e)?;
            let mut by_start = tx.open_table(BY_START).map_err(e)?;
            let mut meta = tx.open_table(META).map_err(e)?;
            let mut seq = meta.get("seq").map_err(e)?.map(|v| v.value()).unwrap_or(0) as u64;
            let before = get(&meta, "latest")?.unwrap_or(i64::MIN);
            let mut latest = before;
            let (mut bytes, mut count) = (0i64, 0i64);
            for change in changes {
                let (kind, id, at) = match change {
                    Change::Open { kind, id, at, .. } | Change::Close { kind, id, at } => {
                        (*kind, id, *at)
                    }
                };
                latest = latest.max(at);
                let key = open_key(kind, id);
                // Close the open revision, if any.
                let prev = open.remove(key.as_str()).map_err(e)?.map(|v| v.value());
                if let Some(s) = prev {
                    let value = revs
                        .remove((OPEN_END, s))
                        .map_err(e)?
                        .map(|v| v.value().to_vec());
                    if let Some(mut value) = value {
                        if matches!(change, Change::Close { .. }) && value.len() > 8 {
                            value[8] |= DELETED;
                        }
                        let from = head(&value).map_or(at, |(from, _)| from);
                        // Never an interval that ends before it begins.
                        let to = at.max(from);
                        revs.insert((to, s), value.as_slice()).map_err(e)?;
                        index::close(&mut by_start, from, to, s)?;
                    }
                }
                if let Change::Open { doc, .. } = change {
                    let value = encode(kind, at, doc);
                    revs.insert((OPEN_END, seq), value.as_slice()).map_err(e)?;
                    index::insert(&mut by_start, at, OPEN_END, seq)?;
                    open.insert(key.as_str(), seq).map_err(e)?;
                    bytes += value.len() as i64;
                    count += 1;
                    seq += 1;
                }
            }
            meta.insert("seq", seq as i64).map_err(e)?;
            bump(&mut meta, "bytes", bytes)?;
            bump(&mut meta, "count", count)?;
            bump(&mut meta, "version", 1)?;
            meta.insert("latest", latest).map_err(e)?;
            let earliest = changes.iter().map(|c| match c {
                Change::Open { at, .. } | Change::Close { at, .. } => *at,
            });
            if earliest.min().is_some_and(|at| at < before) {
                bump(&mut meta, "rewrites", 1)?;
            }
        }
        tx.commit().map_err(e)
    }

    fn open_revisions(&self) -> Result<Vec<(Kind, String, Vec<u8>)>, HistoryError> {
        let db = self.db.read();
        let tx = db.begin_read().map_err(e)?;
        let revs = tx.open_table(REVISIONS).map_err(e)?;
        let open = tx.open_table(OPEN).map_err(e)?;
        let mut out = Vec::new();
        for item in open.iter().map_err(e)? {
            let (k, s) = item.map_err(e)?;
            let key = k.value();
            let Some(kind) = key.bytes().next().and_then(Kind::from_code) else {
                continue;
            };
            if let Some(v) = revs.get((OPEN_END, s.value())).map_err(e)? {
                if let Some(r) = decode(v.value(), OPEN_END) {
                    out.push((kind, key[1..].to_owned(), r.doc));
                }
            }
        }
        Ok(out)
    }

    fn between(&self, from: i64, at: i64) -> Result<Vec<Revision>, HistoryError> {
        let db = self.db.read();
        let tx = db.begin_read().map_err(e)?;
        let revs = tx.open_table(REVISIONS).map_err(e)?;
        let by_start = tx.open_table(BY_START).map_err(e)?;
        read(&revs, index::valid(&by_start, from, at)?)
    }

    fn stamp(&self) -> Result<Option<Stamp>, HistoryError> {
        let db = self.db.read();
        let tx = db.begin_read().map_err(e)?;
        let meta = tx.open_table(META).map_err(e)?;
        stamp_of(&meta).map(Some)
    }

    fn at_point(&self, at: i64) -> Result<Option<PointRead>, HistoryError> {
        let db = self.db.read();
        let tx = db.begin_read().map_err(e)?;
        let revs = tx.open_table(REVISIONS).map_err(e)?;
        let meta = tx.open_table(META).map_err(e)?;
        let stamp = stamp_of(&meta)?;
        let by_start = tx.open_table(BY_START).map_err(e)?;
        let revisions = read(&revs, index::valid(&by_start, at, at)?)?;
        // The last change at or before `at`: the last end, or the latest begin of a
        // revision valid at `at` (one that ended by then began before its end).
        let after = at.saturating_add(1);
        let mut lo = revisions.iter().map(|r| r.from).max().unwrap_or(i64::MIN);
        if let Some(item) = revs.range(..(after, 0u64)).map_err(e)?.next_back() {
            lo = lo.max(item.map_err(e)?.0.value().0);
        }
        // The first change after `at`: the first end, or the first begin.
        let mut hi = index::first_begin_after(&by_start, at)?;
        if let Some(item) = revs
            .range((after, 0u64)..(OPEN_END, 0u64))
            .map_err(e)?
            .next()
        {
            let to = item.map_err(e)?.0.value().0;
            hi = Some(hi.map_or(to, |h| h.min(to)));
        }
        Ok(Some(PointRead {
            revisions,
            lo,
            hi,
            stamp,
        }))
    }

    fn horizon(&self) -> Result<i64, HistoryError> {
        self.meta("horizon")
    }

    fn purge_before(&self, cutoff: i64) -> Result<u64, HistoryError> {
        let db = self.db.read();
        let tx = db.begin_write().map_err(e)?;
        let removed;
        {
            let mut revs = tx.open_table(REVISIONS).map_err(e)?;
            let mut by_start = tx.open_table(BY_START).map_err(e)?;
            let mut meta = tx.open_table(META).map_err(e)?;
            let (mut n, mut bytes) = (0i64, 0i64);
            let mut gone = Vec::new();
            revs.retain_in((i64::MIN, 0u64)..(cutoff, 0u64), |(to, seq), v| {
                n += 1;
                bytes += v.len() as i64;
                gone.extend(head(v).map(|(from, _)| (from, to, seq)));
                false
            })
            .map_err(e)?;
            for (from, to, seq) in gone {
                index::remove(&mut by_start, from, to, seq)?;
            }
            bump(&mut meta, "bytes", -bytes)?;
            bump(&mut meta, "count", -n)?;
            let h = meta
                .get("horizon")
                .map_err(e)?
                .map(|v| v.value())
                .unwrap_or(0);
            meta.insert("horizon", h.max(cutoff)).map_err(e)?;
            removed = n as u64;
        }
        tx.commit().map_err(e)?;
        Ok(removed)
    }

    fn enforce_size(&self, max_bytes: u64) -> Result<u64, HistoryError> {
        let (bytes, _) = self.usage()?;
        if bytes <= max_bytes {
            return Ok(0);
        }
        // Down to 90% of the cap, oldest ends first: find the end time to cut at.
        let target = bytes - max_bytes + max_bytes / 10;
        let cutoff = {
            let db = self.db.read();
            let tx = db.begin_read().map_err(e)?;
            let revs = tx.open_table(REVISIONS).map_err(e)?;
            let mut freed = 0u64;
            let mut cutoff = None;
            for item in revs.range(..(OPEN_END, 0u64)).map_err(e)? {
                let (k, v) = item.map_err(e)?;
                freed += v.value().len() as u64;
                if freed >= target {
                    cutoff = Some(k.value().0.saturating_add(1));
                    break;
                }
                cutoff = Some(k.value().0.saturating_add(1));
            }
            cutoff
        };
        match cutoff {
            Some(c) => self.purge_before(c),
            None => Ok(0),
        }
    }

    fn usage(&self) -> Result<(u64, u64), HistoryError> {
        Ok((
            self.meta("bytes")?.max(0) as u64,
            self.meta("count")?.max(0) as u64,
        ))
    }

    fn apply_flows(&self, changes: &[super::flows::FlowChange]) -> Result<(), HistoryError> {
        super::redb_flows::apply(&self.db.read(), changes)
    }

    fn flows_between(
        &self,
        from: i64,
        at: i64,
    ) -> Result<Vec<super::flows::FlowRevision>, HistoryError> {
        super::redb_flows::between(&self.db.read(), from, at)
    }

    fn close_open_flows(&self, prefix: &str, at: i64) -> Result<u64, HistoryError> {
        super::redb_flows::close_open(&self.db.read(), prefix, at)
    }

    fn purge_flows_before(&self, cutoff: i64) -> Result<u64, HistoryError> {
        super::redb_flows::purge_before(&self.db.read(), cutoff)
    }

    fn enforce_flow_size(&self, max_bytes: u64) -> Result<u64, HistoryError> {
        super::redb_flows::enforce_size(&self.db.read(), max_bytes)
    }

    fn flow_usage(&self) -> Result<(u64, u64), HistoryError> {
        super::redb_flows::usage(&self.db.read())
    }

    fn disk_bytes(&self) -> Result<Option<u64>, HistoryError> {
        let meta = std::fs::metadata(&self.path)
            .map_err(|err| HistoryError(format!("{}: {err}", self.path.display())))?;
        Ok(Some(meta.len()))
    }

    fn compact(&self) -> Result<bool, HistoryError> {
        // No transaction is open while the lock is held for writing. Each pass moves
        // what it can towards the start of the file; a few more may free more.
        let mut db = self.db.write();
        let mut compacted = false;
        for _ in 0..8 {
            if !db.compact().map_err(e)? {
                break;
            }
            compacted = true;
        }
        Ok(compacted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(id: &str, at: i64, doc: &str) -> Change {
        Change::Open {
            kind: Kind::Node,
            id: id.into(),
            at,
            doc: doc.as_bytes().to_vec(),
        }
    }

    fn docs(r: Vec<Revision>) -> Vec<String> {
        let mut v: Vec<String> = r
            .into_iter()
            .map(|r| String::from_utf8(r.doc).unwrap())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn intervals_points_windows_retention_and_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h.redb");
        {
            let s = RedbStore::open(&path).unwrap();
            s.apply(&[open("a", 100, "a1"), open("b", 100, "b1")])
                .unwrap();
            s.apply(&[open("a", 200, "a2")]).unwrap();
            s.apply(&[Change::Close {
                kind: Kind::Node,
                id: "b".into(),
                at: 300,
            }])
            .unwrap();
            assert_eq!(docs(s.between(150, 150).unwrap()), ["a1", "b1"]);
            assert_eq!(docs(s.between(250, 250).unwrap()), ["a2", "b1"]);
            assert_eq!(docs(s.between(300, 300).unwrap()), ["a2"]);
            assert_eq!(docs(s.between(99, 99).unwrap()), Vec::<String>::new());
            assert_eq!(docs(s.between(0, 1000).unwrap()), ["a1", "a2", "b1"]);
            assert_eq!(s.usage().unwrap().1, 3);
        }
        // Reopened: everything is still there.
        let s = RedbStore::open(&path).unwrap();
        assert_eq!(docs(s.between(250, 250).unwrap()), ["a2", "b1"]);
        let mut open_now: Vec<String> = s
            .open_revisions()
            .unwrap()
            .into_iter()
            .map(|(_, id, _)| id)
            .collect();
        open_now.sort();
        assert_eq!(open_now, ["a"]);
        // Retention removes what ended before the cutoff, never an open revision, and
        // the horizon never goes back.
        let began = s.horizon().unwrap();
        assert_eq!(s.purge_before(250).unwrap(), 1);
        assert_eq!(s.horizon().unwrap(), began.max(250));
        assert_eq!(docs(s.between(0, 1000).unwrap()), ["a2", "b1"]);
        assert_eq!(s.purge_before(10_000).unwrap(), 1);
        assert_eq!(docs(s.between(0, 20_000).unwrap()), ["a2"]);
        assert_eq!(s.usage().unwrap().1, 1);
        let later = began + 60_000;
        s.purge_before(later).unwrap();
        assert_eq!(s.horizon().unwrap(), later);
    }

    #[test]
    fn size_cap_removes_oldest_ended_first() {
        let dir = tempfile::tempdir().unwrap();
        let s = RedbStore::open(&dir.path().join("h.redb")).unwrap();
        let doc = "x".repeat(1000);
        for t in 0..100 {
            s.apply(&[open("a", 1000 + t, &doc)]).unwrap();
        }
        let (bytes, count) = s.usage().unwrap();
        assert_eq!(count, 100);
        let removed = s.enforce_size(bytes / 2).unwrap();
        assert!(removed >= 50, "{removed}");
        let (after, left) = s.usage().unwrap();
        assert!(after <= bytes / 2, "{after}");
        // The open revision is kept, and the oldest went first.
        assert_eq!(s.between(5000, 5000).unwrap().len(), 1);
        assert!(s.between(1000, 1000).unwrap().is_empty());
        assert_eq!(s.between(0, 10_000).unwrap().len() as u64, left);
    }

    #[test]
    fn a_point_read_is_the_valid_revisions_and_the_span_they_stay_valid() {
        let dir = tempfile::tempdir().unwrap();
        let s = RedbStore::open(&dir.path().join("h.redb")).unwrap();
        let v0 = s.stamp().unwrap().unwrap();
        s.apply(&[open("a", 100, "a1"), open("b", 100, "b1")])
            .unwrap();
        s.apply(&[open("a", 200, "a2"), open("c", 250, "c1")])
            .unwrap();
        s.apply(&[Change::Close {
            kind: Kind::Node,
            id: "b".into(),
            at: 300,
        }])
        .unwrap();
        // Deleted and created again at the same time.
        s.apply(&[
            Change::Close {
                kind: Kind::Node,
                id: "c".into(),
                at: 400,
            },
            open("c", 400, "c2"),
        ])
        .unwrap();
        let changes = [100, 200, 250, 300, 400];
        for t in 0..500 {
            let read = s.at_point(t).unwrap().unwrap();
            assert_eq!(
                docs(read.revisions),
                docs(s.between(t, t).unwrap()),
                "t={t}"
            );
            let lo = changes.iter().rev().find(|&&c| c <= t).copied();
            let hi = changes.iter().find(|&&c| c > t).copied();
            assert_eq!(read.lo, lo.unwrap_or(i64::MIN), "t={t}");
            assert_eq!(read.hi, hi, "t={t}");
        }
        let v = s.stamp().unwrap().unwrap();
        assert_eq!(v.version, v0.version + 4);
        assert_eq!(v.rewrites, 0);
        // A change before the latest one is a rewrite, one per write.
        s.apply(&[open("d", 350, "d1"), open("e", 120, "e1")])
            .unwrap();
        let after = s.stamp().unwrap().unwrap();
        assert_eq!((after.version, after.rewrites), (v.version + 1, 1));
        assert_eq!(s.at_point(360).unwrap().unwrap().lo, 350);
        // The latest change time survives a reopening.
        drop(s);
        let s = RedbStore::open(&dir.path().join("h.redb")).unwrap();
        s.apply(&[open("f", 390, "f1")]).unwrap();
        assert_eq!(s.stamp().unwrap().unwrap().rewrites, 2);
        s.apply(&[open("f", 500, "f2")]).unwrap();
        assert_eq!(s.stamp().unwrap().unwrap().rewrites, 2);
    }

    #[test]
    fn a_file_without_the_index_by_begin_gets_it_when_opened() {
        use super::super::flows::FlowChange;
        use redb::ReadableTableMetadata;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h.redb");
        let flow = |id: &str, at: i64| FlowChange::Open {
            id: id.into(),
            node: "n1".into(),
            at,
            start: at - 50,
            doc: format!("f{id}{at}").into_bytes(),
            raw: Vec::new(),
        };
        let (points, windows, flows) = {
            let s = RedbStore::open(&path).unwrap();
            for t in 0..200 {
                let id = ["a", "b", "c", "d"][t as usize % 4];
                s.apply(&[open(id, 100 + t * 10, &format!("{id}{t}"))])
                    .unwrap();
                if t % 7 == 0 {
                    s.apply(&[Change::Close {
                        kind: Kind::Node,
                        id: "c".into(),
                        at: 105 + t * 10,
                    }])
                    .unwrap();
                }
                s.apply_flows(&[flow(id, 100 + t * 10)]).unwrap();
            }
            let points: Vec<_> = (0..2200)
                .step_by(5)
                .map(|t| docs(s.between(t, t).unwrap()))
                .collect();
            let windows = docs(s.between(500, 900).unwrap());
            let flows: Vec<_> = (0..2200)
                .step_by(5)
                .map(|t| s.flows_between(t, t).unwrap().len())
                .collect();
            // As a file written before the index was kept: no index, no mark.
            let db = s.db.into_inner();
            let tx = db.begin_write().unwrap();
            assert!(tx.delete_table(BY_START).unwrap());
            assert!(tx
                .delete_table(TableDefinition::<index::Key, i64>::new(
                    "flow_revisions_by_start"
                ))
                .unwrap());
            tx.open_table(META).unwrap().remove("by_start").unwrap();
            let flow_meta: TableDefinition<&str, i64> = TableDefinition::new("flow_meta");
            tx.open_table(flow_meta)
                .unwrap()
                .remove("by_start")
                .unwrap();
            tx.commit().unwrap();
            (points, windows, flows)
        };
        let s = RedbStore::open(&path).unwrap();
        let again: Vec<_> = (0..2200)
            .step_by(5)
            .map(|t| docs(s.between(t, t).unwrap()))
            .collect();
        assert_eq!(again, points);
        assert!(points.iter().any(|p| p.len() == 4));
        assert_eq!(docs(s.between(500, 900).unwrap()), windows);
        let flows_again: Vec<_> = (0..2200)
            .step_by(5)
            .map(|t| s.flows_between(t, t).unwrap().len())
            .collect();
        assert_eq!(flows_again, flows);
        assert!(flows.contains(&4));
        // Retention removes index entries with their revisions.
        s.purge_before(1000).unwrap();
        s.purge_flows_before(1000).unwrap();
        assert!(s.between(600, 600).unwrap().is_empty());
        assert!(s.flows_between(600, 600).unwrap().is_empty());
        assert_eq!(docs(s.between(1500, 1500).unwrap()), points[300]);
        let db = s.db.read();
        let tx = db.begin_read().unwrap();
        let revs = tx.open_table(REVISIONS).unwrap().len().unwrap();
        assert_eq!(tx.open_table(BY_START).unwrap().len().unwrap(), revs);
    }
}
