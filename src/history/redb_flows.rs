//! Flow snapshots in the embedded store, in tables of their own (the node and edge
//! revisions' are in `redb_store`):
//! - `flow_revisions`: `(to, seq)` -> `from` (8 bytes, little-endian), the flow ID and
//!   the node ID (each a 4-byte length and the bytes), then, when the flow held raw
//!   frames, a zero byte and the frames (a 4-byte length and the bytes), and the flow's
//!   JSON (which never begins with a zero byte: revisions written before frames were
//!   kept read as they are); an open revision has `to = i64::MAX`. As for nodes and edges, "valid at t" reads only what ended
//!   after `t`, and retention removes a prefix.
//! - `flow_revisions_by_start`: the same by begin time, bucketed by length
//!   ([`super::redb_index`]), so that a point or a window reads about what it returns.
//! - `flow_open`: flow ID -> `seq` of its open revision.
//! - `flow_meta`: `seq`, `bytes` and `count` of stored flow revisions; `by_start` once
//!   the index covers them (a file written before it was kept gets it when opened).

use redb::{Database, ReadableTable, TableDefinition, WriteTransaction};

use super::flows::{FlowChange, FlowRevision};
use super::redb_index::{self as index, OPEN_END};
use super::HistoryError;

const REVISIONS: TableDefinition<(i64, u64), &[u8]> = TableDefinition::new("flow_revisions");
const BY_START: TableDefinition<index::Key, i64> = TableDefinition::new("flow_revisions_by_start");
const OPEN: TableDefinition<&str, u64> = TableDefinition::new("flow_open");
const META: TableDefinition<&str, i64> = TableDefinition::new("flow_meta");

fn e(err: impl std::fmt::Display) -> HistoryError {
    HistoryError::new(err)
}

fn put_str(v: &mut Vec<u8>, s: &str) {
    v.extend_from_slice(&(s.len() as u32).to_le_bytes());
    v.extend_from_slice(s.as_bytes());
}

/// Marks the raw frames before the JSON.
const RAW: u8 = 0;

fn encode(from: i64, id: &str, node: &str, doc: &[u8], raw: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(21 + id.len() + node.len() + doc.len() + raw.len());
    v.extend_from_slice(&from.to_le_bytes());
    put_str(&mut v, id);
    put_str(&mut v, node);
    if !raw.is_empty() {
        v.push(RAW);
        v.extend_from_slice(&(raw.len() as u32).to_le_bytes());
        v.extend_from_slice(raw);
    }
    v.extend_from_slice(doc);
    v
}

fn from_of(v: &[u8]) -> Option<i64> {
    Some(i64::from_le_bytes(v.get(..8)?.try_into().ok()?))
}

fn take_str<'a>(v: &'a [u8], at: &mut usize) -> Option<&'a str> {
    let len = u32::from_le_bytes(v.get(*at..*at + 4)?.try_into().ok()?) as usize;
    let s = std::str::from_utf8(v.get(*at + 4..*at + 4 + len)?).ok()?;
    *at += 4 + len;
    Some(s)
}

fn decode(v: &[u8], to: i64) -> Option<FlowRevision> {
    let from = from_of(v)?;
    let mut at = 8;
    let id = take_str(v, &mut at)?.to_owned();
    let node = take_str(v, &mut at)?.to_owned();
    let mut raw = Vec::new();
    if v.get(at) == Some(&RAW) {
        at += 1;
        let len = u32::from_le_bytes(v.get(at..at + 4)?.try_into().ok()?) as usize;
        raw = v.get(at + 4..at + 4 + len)?.to_vec();
        at += 4 + len;
    }
    Some(FlowRevision {
        id,
        node,
        from,
        to: (to != OPEN_END).then_some(to),
        doc: v.get(at..)?.to_vec(),
        raw,
    })
}

fn get(meta: &impl ReadableTable<&'static str, i64>, key: &str) -> Result<i64, HistoryError> {
    Ok(meta.get(key).map_err(e)?.map(|v| v.value()).unwrap_or(0))
}

fn bump(meta: &mut redb::Table<&str, i64>, key: &str, d: i64) -> Result<(), HistoryError> {
    let v = get(meta, key)?;
    meta.insert(key, v + d).map_err(e)?;
    Ok(())
}

/// Indexes the flow revisions by begin time if they are not yet (a file written before
/// the index was kept).
pub fn index_if_needed(tx: &WriteTransaction) -> Result<(), HistoryError> {
    let mut meta = tx.open_table(META).map_err(e)?;
    if meta.get("by_start").map_err(e)?.is_some() {
        return Ok(());
    }
    let revs = tx.open_table(REVISIONS).map_err(e)?;
    let mut by_start = tx.open_table(BY_START).map_err(e)?;
    by_start.retain(|_, _| false).map_err(e)?;
    index::build(&revs, &mut by_start)?;
    meta.insert("by_start", 1).map_err(e)?;
    Ok(())
}

/// Moves the open revision of `id`, if any, to its end `at` (never before its begin);
/// returns its begin.
fn close(
    revs: &mut redb::Table<(i64, u64), &[u8]>,
    by_start: &mut redb::Table<index::Key, i64>,
    open: &mut redb::Table<&str, u64>,
    id: &str,
    at: i64,
) -> Result<Option<i64>, HistoryError> {
    let Some(s) = open.remove(id).map_err(e)?.map(|v| v.value()) else {
        return Ok(None);
    };
    let value = revs
        .remove((OPEN_END, s))
        .map_err(e)?
        .map(|v| v.value().to_vec());
    let Some(value) = value else {
        return Ok(None);
    };
    let from = from_of(&value).unwrap_or(at);
    let to = at.max(from);
    revs.insert((to, s), value.as_slice()).map_err(e)?;
    index::close(by_start, from, to, s)?;
    Ok(Some(from))
}

pub fn apply(db: &Database, changes: &[FlowChange]) -> Result<(), HistoryError> {
    if changes.is_empty() {
        return Ok(());
    }
    let tx = db.begin_write().map_err(e)?;
    {
        let mut revs = tx.open_table(REVISIONS).map_err(e)?;
        let mut open = tx.open_table(OPEN).map_err(e)?;
        let mut by_start = tx.open_table(BY_START).map_err(e)?;
        let mut meta = tx.open_table(META).map_err(e)?;
        let mut seq = get(&meta, "seq")? as u64;
        let (mut bytes, mut count) = (0i64, 0i64);
        for change in changes {
            match change {
                FlowChange::Open {
                    id,
                    node,
                    at,
                    start,
                    doc,
                    raw,
                } => {
                    // A snapshot never begins before the one it follows.
                    let from = match close(&mut revs, &mut by_start, &mut open, id, *at)? {
                        Some(prev) => (*at).max(prev),
                        None => (*start).min(*at),
                    };
                    let value = encode(from, id, node, doc, raw);
                    revs.insert((OPEN_END, seq), value.as_slice()).map_err(e)?;
                    index::insert(&mut by_start, from, OPEN_END, seq)?;
                    open.insert(id.as_str(), seq).map_err(e)?;
                    bytes += value.len() as i64;
                    count += 1;
                    seq += 1;
                }
                FlowChange::Close { id, at } => {
                    close(&mut revs, &mut by_start, &mut open, id, *at)?;
                }
            }
        }
        meta.insert("seq", seq as i64).map_err(e)?;
        bump(&mut meta, "bytes", bytes)?;
        bump(&mut meta, "count", count)?;
    }
    tx.commit().map_err(e)
}

pub fn between(db: &Database, from: i64, at: i64) -> Result<Vec<FlowRevision>, HistoryError> {
    let tx = db.begin_read().map_err(e)?;
    let revs = match tx.open_table(REVISIONS) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
        Err(err) => return Err(e(err)),
    };
    let by_start = match tx.open_table(BY_START) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
        Err(err) => return Err(e(err)),
    };
    let mut out = Vec::new();
    for (_, (to, seq)) in index::valid(&by_start, from, at)? {
        if let Some(v) = revs.get((to, seq)).map_err(e)? {
            out.extend(decode(v.value(), to));
        }
    }
    Ok(out)
}

pub fn close_open(db: &Database, prefix: &str, at: i64) -> Result<u64, HistoryError> {
    let tx = db.begin_write().map_err(e)?;
    let mut n = 0;
    {
        let mut revs = tx.open_table(REVISIONS).map_err(e)?;
        let mut by_start = tx.open_table(BY_START).map_err(e)?;
        let mut open = tx.open_table(OPEN).map_err(e)?;
        let ids: Vec<String> = open
            .range(prefix..)
            .map_err(e)?
            .map_while(|item| {
                let (k, _) = item.ok()?;
                let k = k.value();
                k.starts_with(prefix).then(|| k.to_owned())
            })
            .collect();
        for id in ids {
            if close(&mut revs, &mut by_start, &mut open, &id, at)?.is_some() {
                n += 1;
            }
        }
    }
    tx.commit().map_err(e)?;
    Ok(n)
}

pub fn purge_before(db: &Database, cutoff: i64) -> Result<u64, HistoryError> {
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
            gone.extend(from_of(v).map(|from| (from, to, seq)));
            false
        })
        .map_err(e)?;
        for (from, to, seq) in gone {
            index::remove(&mut by_start, from, to, seq)?;
        }
        bump(&mut meta, "bytes", -bytes)?;
        bump(&mut meta, "count", -n)?;
        removed = n as u64;
    }
    tx.commit().map_err(e)?;
    Ok(removed)
}

pub fn usage(db: &Database) -> Result<(u64, u64), HistoryError> {
    let tx = db.begin_read().map_err(e)?;
    let meta = match tx.open_table(META) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok((0, 0)),
        Err(err) => return Err(e(err)),
    };
    Ok((
        get(&meta, "bytes")?.max(0) as u64,
        get(&meta, "count")?.max(0) as u64,
    ))
}

pub fn enforce_size(db: &Database, max_bytes: u64) -> Result<u64, HistoryError> {
    let (bytes, _) = usage(db)?;
    if bytes <= max_bytes {
        return Ok(0);
    }
    // Down to 90% of the cap, oldest ends first.
    let target = bytes - max_bytes + max_bytes / 10;
    let cutoff = {
        let tx = db.begin_read().map_err(e)?;
        let revs = tx.open_table(REVISIONS).map_err(e)?;
        let mut freed = 0u64;
        let mut cutoff = None;
        for item in revs.range(..(OPEN_END, 0u64)).map_err(e)? {
            let (k, v) = item.map_err(e)?;
            freed += v.value().len() as u64;
            cutoff = Some(k.value().0.saturating_add(1));
            if freed >= target {
                break;
            }
        }
        cutoff
    };
    match cutoff {
        Some(c) => purge_before(db, c),
        None => Ok(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(id: &str, at: i64, start: i64, doc: &str) -> FlowChange {
        FlowChange::Open {
            id: id.into(),
            node: "n1".into(),
            at,
            start,
            doc: doc.as_bytes().to_vec(),
            raw: Vec::new(),
        }
    }

    fn docs(r: Vec<FlowRevision>) -> Vec<String> {
        let mut v: Vec<String> = r
            .into_iter()
            .map(|r| String::from_utf8(r.doc).unwrap())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn flow_snapshots_have_intervals_and_go_with_retention() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::create(dir.path().join("h.redb")).unwrap();
        assert!(between(&db, 0, 10).unwrap().is_empty());
        assert_eq!(usage(&db).unwrap(), (0, 0));
        // First snapshot at 200 of a flow that began at 100: valid from 100.
        apply(&db, &[open("h/c/n1/1", 200, 100, "f1a")]).unwrap();
        apply(
            &db,
            &[
                open("h/c/n1/1", 300, 100, "f1b"),
                open("h/c/n1/2", 300, 250, "f2a"),
                open("x/c/n1/3", 300, 250, "f3a"),
            ],
        )
        .unwrap();
        apply(
            &db,
            &[FlowChange::Close {
                id: "h/c/n1/1".into(),
                at: 400,
            }],
        )
        .unwrap();
        assert!(docs(between(&db, 99, 99).unwrap()).is_empty());
        assert_eq!(docs(between(&db, 150, 150).unwrap()), ["f1a"]);
        assert_eq!(docs(between(&db, 350, 350).unwrap()), ["f1b", "f2a", "f3a"]);
        assert_eq!(docs(between(&db, 400, 400).unwrap()), ["f2a", "f3a"]);
        assert_eq!(
            docs(between(&db, 0, 1000).unwrap()),
            ["f1a", "f1b", "f2a", "f3a"]
        );
        // A restart closes this server's open flows only.
        assert_eq!(close_open(&db, "h/", 500).unwrap(), 1);
        assert_eq!(docs(between(&db, 600, 600).unwrap()), ["f3a"]);
        assert_eq!(usage(&db).unwrap().1, 4);
        assert_eq!(purge_before(&db, 450).unwrap(), 2);
        assert_eq!(docs(between(&db, 0, 1000).unwrap()), ["f2a", "f3a"]);
        let (bytes, count) = usage(&db).unwrap();
        assert_eq!(count, 2);
        // The size cap removes ended revisions, never the open one.
        assert_eq!(enforce_size(&db, bytes / 2).unwrap(), 1);
        assert_eq!(docs(between(&db, 0, 1000).unwrap()), ["f3a"]);
    }

    #[test]
    fn raw_frames_go_with_their_snapshot_and_old_revisions_still_read() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::create(dir.path().join("h.redb")).unwrap();
        // A revision as written before frames were kept.
        let old = encode(100, "h/c/n1/1", "n1", b"{\"a\":1}", &[]);
        let r = decode(&old, 200).unwrap();
        assert_eq!((r.doc.as_slice(), r.raw.len()), (&b"{\"a\":1}"[..], 0));
        let change = |at, raw: &[u8]| FlowChange::Open {
            id: "h/c/n1/2".into(),
            node: "n1".into(),
            at,
            start: at,
            doc: b"{}".to_vec(),
            raw: raw.to_vec(),
        };
        apply(&db, &[change(100, &[1, 2, 3])]).unwrap();
        let (bytes_one, _) = usage(&db).unwrap();
        apply(&db, &[change(200, &[1, 2, 3, 4, 5])]).unwrap();
        let revs = between(&db, 150, 150).unwrap();
        assert_eq!(revs.len(), 1);
        assert_eq!(
            (revs[0].doc.as_slice(), revs[0].raw.as_slice()),
            (&b"{}"[..], &[1u8, 2, 3][..])
        );
        let revs = between(&db, 250, 250).unwrap();
        assert_eq!(revs[0].raw, [1, 2, 3, 4, 5]);
        // The frames count in the store's size.
        let (bytes, _) = usage(&db).unwrap();
        assert_eq!(bytes, bytes_one * 2 + 2);
    }
}
