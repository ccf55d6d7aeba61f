//! The history in PostgreSQL (`--history postgres://...`), for a fleet: the analyzer
//! writes it, any analyzer reads it.
//!
//! One table, `topotap_revisions (seq, kind, id, valid int8range, doc jsonb, deleted)`:
//! `valid` is `[from, to)` in milliseconds, open-ended while the revision is current
//! (`deleted` when it ended by the element's deletion), with a
//! GiST index, so "as of t" is `valid @> t` and "between t1 and t2" is
//! `valid && [t1, t2]`; a partial unique index keeps one open revision per element.
//! B-tree indexes on both ends find the changes just before and after a time (the span
//! of a past graph, [`PointRead`]). `topotap_history_meta` holds the horizon and the
//! [`Stamp`]: `version` (one more at every write), `latest` (the latest change time
//! written) and `rewrites` (writes with a change before `latest`). The synchronous
//! client is used on blocking threads, one connection, opened again after it broke.

use parking_lot::Mutex;
use postgres::{Client, NoTls};

use super::{Change, HistoryError, HistoryStore, Kind, PointRead, Revision, Stamp};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS topotap_revisions (
    seq bigserial PRIMARY KEY,
    kind text NOT NULL,
    id text NOT NULL,
    valid int8range NOT NULL,
    doc jsonb NOT NULL
);
CREATE INDEX IF NOT EXISTS topotap_revisions_valid ON topotap_revisions USING gist (valid);
CREATE UNIQUE INDEX IF NOT EXISTS topotap_revisions_open
    ON topotap_revisions (kind, id) WHERE upper_inf(valid);
CREATE INDEX IF NOT EXISTS topotap_revisions_from ON topotap_revisions (lower(valid));
CREATE INDEX IF NOT EXISTS topotap_revisions_to ON topotap_revisions (upper(valid));
CREATE TABLE IF NOT EXISTS topotap_history_meta (key text PRIMARY KEY, value int8 NOT NULL);
ALTER TABLE topotap_revisions ADD COLUMN IF NOT EXISTS deleted boolean NOT NULL DEFAULT false;
INSERT INTO topotap_history_meta VALUES ('version', 0), ('rewrites', 0) ON CONFLICT DO NOTHING;
INSERT INTO topotap_history_meta
    SELECT 'latest', coalesce(max(coalesce(upper(valid), lower(valid))), -9223372036854775808)
    FROM topotap_revisions
    WHERE NOT EXISTS (SELECT 1 FROM topotap_history_meta WHERE key = 'latest')
ON CONFLICT DO NOTHING;
";

const STAMP: &str = "SELECT
    (SELECT value FROM topotap_history_meta WHERE key = 'version'),
    (SELECT value FROM topotap_history_meta WHERE key = 'rewrites'),
    (SELECT value FROM topotap_history_meta WHERE key = 'horizon')";

fn stamp_of(row: &postgres::Row) -> Stamp {
    let get = |i| row.get::<_, Option<i64>>(i).unwrap_or(0);
    Stamp {
        version: get(0) as u64,
        rewrites: get(1) as u64,
        horizon: get(2),
    }
}

/// A PostgreSQL database of revisions.
pub struct PostgresStore {
    url: String,
    client: Mutex<Option<Client>>,
}

fn e(err: impl std::fmt::Display) -> HistoryError {
    HistoryError::new(err)
}

/// PostgreSQL's own message when the server gave one ("db error" says nothing).
fn db_error(err: postgres::Error) -> HistoryError {
    match err.as_db_error() {
        Some(db) => HistoryError::new(format!("{}: {}", db.severity(), db.message())),
        None => HistoryError::new(err),
    }
}

fn kind_str(k: Kind) -> &'static str {
    match k {
        Kind::Node => "n",
        Kind::Edge => "e",
    }
}

fn kind_of(s: &str) -> Option<Kind> {
    Kind::from_code(*s.as_bytes().first()?)
}

fn connect(url: &str) -> Result<Client, HistoryError> {
    let mut config: postgres::Config = url.parse().map_err(e)?;
    config.connect_timeout(std::time::Duration::from_secs(3));
    let mut client = config.connect(NoTls).map_err(e)?;
    client.batch_execute(SCHEMA).map_err(e)?;
    client
        .batch_execute(super::postgres_flows::SCHEMA)
        .map_err(e)?;
    client
        .execute(
            "INSERT INTO topotap_history_meta VALUES ('horizon', $1) ON CONFLICT DO NOTHING",
            &[&topotap_topology::now_ms()],
        )
        .map_err(e)?;
    Ok(client)
}

impl PostgresStore {
    /// Connects (within 3 s) and creates the tables if needed. Blocking.
    pub fn connect(url: &str) -> Result<PostgresStore, HistoryError> {
        let client = connect(url)?;
        Ok(PostgresStore {
            url: url.to_owned(),
            client: Mutex::new(Some(client)),
        })
    }

    /// Runs `f` on the connection, connecting again first if it broke.
    fn with<T>(
        &self,
        f: impl FnOnce(&mut Client) -> Result<T, postgres::Error>,
    ) -> Result<T, HistoryError> {
        let mut guard = self.client.lock();
        if guard.as_ref().is_none_or(Client::is_closed) {
            *guard = Some(connect(&self.url)?);
        }
        let client = guard.as_mut().expect("connected above");
        let result = f(client);
        if result.is_err() && client.is_closed() {
            *guard = None;
        }
        result.map_err(db_error)
    }
}

/// A batch of changes as two statements: the closes of the revisions stored open (one
/// per element, at its first change in the batch) and the revisions the batch opens,
/// those it closes again already ended. The same rows as applying the changes one by
/// one, in two round trips instead of one or two per change.
#[derive(Default)]
struct Batch<'a> {
    close_kind: Vec<&'static str>,
    close_id: Vec<&'a str>,
    close_at: Vec<i64>,
    close_deleted: Vec<bool>,
    kind: Vec<&'static str>,
    id: Vec<&'a str>,
    from: Vec<i64>,
    to: Vec<Option<i64>>,
    doc: Vec<std::borrow::Cow<'a, str>>,
    deleted: Vec<bool>,
}

impl<'a> Batch<'a> {
    fn of(changes: &'a [Change]) -> Batch<'a> {
        let mut b = Batch::default();
        // Per element: the index of its revision opened in this batch and still open.
        let mut open: std::collections::HashMap<(Kind, &str), Option<usize>> =
            std::collections::HashMap::new();
        for change in changes {
            let (kind, id, at) = match change {
                Change::Open { kind, id, at, .. } | Change::Close { kind, id, at } => {
                    (*kind, id.as_str(), *at)
                }
            };
            let deleted = matches!(change, Change::Close { .. });
            match open.get_mut(&(kind, id)) {
                // First change of the element in the batch: closes what is stored.
                None => {
                    b.close_kind.push(kind_str(kind));
                    b.close_id.push(id);
                    b.close_at.push(at);
                    b.close_deleted.push(deleted);
                }
                Some(slot) => {
                    if let Some(i) = slot.take() {
                        // Never an interval that ends before it begins.
                        b.to[i] = Some(at.max(b.from[i]));
                        b.deleted[i] = deleted;
                    }
                }
            }
            let slot = open.entry((kind, id)).or_default();
            if let Change::Open { doc, .. } = change {
                *slot = Some(b.from.len());
                b.kind.push(kind_str(kind));
                b.id.push(id);
                b.from.push(at);
                b.to.push(None);
                b.doc.push(String::from_utf8_lossy(doc));
                b.deleted.push(false);
            }
        }
        b
    }
}

impl PostgresStore {
    /// Applies `changes` in one transaction; with a token, only while it holds the
    /// `writer` row (shared-locked until the commit, so a take-over waits for it).
    fn write(&self, token: Option<i64>, changes: &[Change]) -> Result<(), HistoryError> {
        if changes.is_empty() {
            return Ok(());
        }
        let mut fenced = None;
        self.with(|c| {
            let mut tx = c.transaction()?;
            if let Some(token) = token {
                let holder: Option<i64> = tx
                    .query_opt(
                        "SELECT value FROM topotap_history_meta WHERE key = 'writer' FOR SHARE",
                        &[],
                    )?
                    .map(|r| r.get(0));
                if holder != Some(token) {
                    fenced = Some(holder);
                    return tx.rollback();
                }
            }
            let batch = Batch::of(changes);
            if !batch.close_id.is_empty() {
                tx.execute(
                    "UPDATE topotap_revisions r
                     SET valid = int8range(lower(r.valid), greatest(lower(r.valid), c.at)),
                         deleted = c.deleted
                     FROM unnest($1::text[], $2::text[], $3::int8[], $4::bool[])
                         AS c(kind, id, at, deleted)
                     WHERE r.kind = c.kind AND r.id = c.id AND upper_inf(r.valid)",
                    &[
                        &batch.close_kind,
                        &batch.close_id,
                        &batch.close_at,
                        &batch.close_deleted,
                    ],
                )?;
            }
            if !batch.from.is_empty() {
                tx.execute(
                    "INSERT INTO topotap_revisions (kind, id, valid, doc, deleted)
                     SELECT kind, id, int8range(f, t), doc::jsonb, deleted
                     FROM unnest($1::text[], $2::text[], $3::int8[], $4::int8[], $5::text[],
                                 $6::bool[])
                         WITH ORDINALITY AS c(kind, id, f, t, doc, deleted, n)
                     ORDER BY n",
                    &[
                        &batch.kind,
                        &batch.id,
                        &batch.from,
                        &batch.to,
                        &batch.doc,
                        &batch.deleted,
                    ],
                )?;
            }
            let times = changes.iter().map(|c| match c {
                Change::Open { at, .. } | Change::Close { at, .. } => *at,
            });
            let (first, last) = (times.clone().min(), times.max());
            tx.execute(
                "UPDATE topotap_history_meta SET value = value + 1 WHERE key = 'rewrites'
                 AND $1 < (SELECT value FROM topotap_history_meta WHERE key = 'latest')",
                &[&first],
            )?;
            tx.execute(
                "UPDATE topotap_history_meta
                 SET value = CASE key WHEN 'version' THEN value + 1 ELSE greatest(value, $1) END
                 WHERE key IN ('version', 'latest')",
                &[&last],
            )?;
            tx.commit()
        })?;
        match fenced {
            None => Ok(()),
            Some(holder) => Err(HistoryError(format!(
                "not written: this analyzer's term {} no longer holds the history (writer: {})",
                token.unwrap_or_default(),
                holder.map_or("none".to_owned(), |h| format!("term {h}"))
            ))),
        }
    }
}

impl HistoryStore for PostgresStore {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    fn apply(&self, changes: &[Change]) -> Result<(), HistoryError> {
        self.write(None, changes)
    }

    fn shared(&self) -> bool {
        true
    }

    fn take_over(&self, token: i64) -> Result<(), HistoryError> {
        // Waits for a former writer's transaction in flight (it holds the row).
        let holder: i64 = self.with(|c| {
            c.query_one(
                "INSERT INTO topotap_history_meta VALUES ('writer', $1)
                 ON CONFLICT (key) DO UPDATE
                     SET value = greatest(topotap_history_meta.value, EXCLUDED.value)
                 RETURNING value",
                &[&token],
            )
            .map(|r| r.get(0))
        })?;
        if holder != token {
            return Err(HistoryError(format!(
                "a newer leader (term {holder}) writes the history, not term {token}"
            )));
        }
        Ok(())
    }

    fn apply_as(&self, token: i64, changes: &[Change]) -> Result<(), HistoryError> {
        self.write(Some(token), changes)
    }

    fn open_revisions(&self) -> Result<Vec<(Kind, String, Vec<u8>)>, HistoryError> {
        let rows = self.with(|c| {
            c.query(
                "SELECT kind, id, doc::text FROM topotap_revisions WHERE upper_inf(valid)",
                &[],
            )
        })?;
        Ok(rows
            .into_iter()
            .filter_map(|r| {
                let kind = kind_of(r.get::<_, &str>(0))?;
                Some((kind, r.get(1), r.get::<_, String>(2).into_bytes()))
            })
            .collect())
    }

    fn between(&self, from: i64, at: i64) -> Result<Vec<Revision>, HistoryError> {
        let rows = self.with(|c| {
            c.query(
                "SELECT kind, lower(valid), upper(valid), deleted, doc::text FROM topotap_revisions
                 WHERE valid && int8range($1, $2, '[]')",
                &[&from, &at],
            )
        })?;
        Ok(rows
            .into_iter()
            .filter_map(|r| {
                Some(Revision {
                    kind: kind_of(r.get::<_, &str>(0))?,
                    from: r.get(1),
                    to: r.get(2),
                    deleted: r.get(3),
                    doc: r.get::<_, String>(4).into_bytes(),
                })
            })
            .collect())
    }

    fn stamp(&self) -> Result<Option<Stamp>, HistoryError> {
        self.with(|c| c.query_one(STAMP, &[]).map(|r| Some(stamp_of(&r))))
    }

    fn at_point(&self, at: i64) -> Result<Option<PointRead>, HistoryError> {
        let (stamp, rows, around) = self.with(|c| {
            // One snapshot for the stamp, the revisions and the span.
            let mut tx = c
                .build_transaction()
                .isolation_level(postgres::IsolationLevel::RepeatableRead)
                .read_only(true)
                .start()?;
            let stamp = stamp_of(&tx.query_one(STAMP, &[])?);
            let rows = tx.query(
                "SELECT kind, lower(valid), upper(valid), deleted, doc::text FROM topotap_revisions
                 WHERE valid @> $1::int8",
                &[&at],
            )?;
            let around = tx.query_one(
                "SELECT
                    (SELECT max(upper(valid)) FROM topotap_revisions WHERE upper(valid) <= $1),
                    (SELECT min(lower(valid)) FROM topotap_revisions WHERE lower(valid) > $1),
                    (SELECT min(upper(valid)) FROM topotap_revisions WHERE upper(valid) > $1)",
                &[&at],
            )?;
            tx.commit()?;
            Ok((stamp, rows, around))
        })?;
        let revisions: Vec<Revision> = rows
            .into_iter()
            .filter_map(|r| {
                Some(Revision {
                    kind: kind_of(r.get::<_, &str>(0))?,
                    from: r.get(1),
                    to: r.get(2),
                    deleted: r.get(3),
                    doc: r.get::<_, String>(4).into_bytes(),
                })
            })
            .collect();
        // The last change at or before `at`: an end, or the begin of a revision valid
        // at `at` (one that ended by then began before its end).
        let last_end = around.get::<_, Option<i64>>(0);
        let lo = revisions
            .iter()
            .map(|r| r.from)
            .chain(last_end)
            .max()
            .unwrap_or(i64::MIN);
        let hi = [around.get::<_, Option<i64>>(1), around.get(2)]
            .into_iter()
            .flatten()
            .min();
        Ok(Some(PointRead {
            revisions,
            lo,
            hi,
            stamp,
        }))
    }

    fn horizon(&self) -> Result<i64, HistoryError> {
        self.with(|c| {
            c.query_one(
                "SELECT value FROM topotap_history_meta WHERE key = 'horizon'",
                &[],
            )
            .map(|r| r.get(0))
        })
    }

    fn purge_before(&self, cutoff: i64) -> Result<u64, HistoryError> {
        self.with(|c| {
            let mut tx = c.transaction()?;
            let n = tx.execute(
                "DELETE FROM topotap_revisions WHERE NOT upper_inf(valid) AND upper(valid) < $1",
                &[&cutoff],
            )?;
            tx.execute(
                "UPDATE topotap_history_meta SET value = greatest(value, $1) WHERE key = 'horizon'",
                &[&cutoff],
            )?;
            tx.commit()?;
            Ok(n)
        })
    }

    fn enforce_size(&self, max_bytes: u64) -> Result<u64, HistoryError> {
        let (bytes, _) = self.usage()?;
        if bytes <= max_bytes {
            return Ok(0);
        }
        let target = (bytes - max_bytes + max_bytes / 10) as i64;
        let cutoff: Option<i64> = self.with(|c| {
            c.query_opt(
                "SELECT u FROM (
                     SELECT upper(valid) AS u,
                            sum(pg_column_size(doc)) OVER (ORDER BY upper(valid), seq) AS cum
                     FROM topotap_revisions WHERE NOT upper_inf(valid)) s
                 WHERE cum >= $1 ORDER BY u LIMIT 1",
                &[&target],
            )
            .map(|r| r.map(|r| r.get(0)))
        })?;
        // Not enough ended revisions to free that much: all of them go.
        let cutoff = cutoff.unwrap_or(i64::MAX);
        self.purge_before(cutoff.saturating_add(1))
    }

    fn disk_bytes(&self) -> Result<Option<u64>, HistoryError> {
        self.with(|c| {
            c.query_one(
                "SELECT pg_total_relation_size('topotap_revisions')::int8",
                &[],
            )
            .map(|r| Some(r.get::<_, i64>(0).max(0) as u64))
        })
    }

    fn usage(&self) -> Result<(u64, u64), HistoryError> {
        self.with(|c| {
            c.query_one(
                "SELECT coalesce(sum(pg_column_size(doc)), 0)::int8, count(*) FROM topotap_revisions",
                &[],
            )
            .map(|r| (r.get::<_, i64>(0).max(0) as u64, r.get::<_, i64>(1).max(0) as u64))
        })
    }

    fn apply_flows(&self, changes: &[super::flows::FlowChange]) -> Result<(), HistoryError> {
        self.with(|c| super::postgres_flows::apply(c, changes))
    }

    fn flows_between(
        &self,
        from: i64,
        at: i64,
    ) -> Result<Vec<super::flows::FlowRevision>, HistoryError> {
        self.with(|c| super::postgres_flows::between(c, from, at))
    }

    fn close_open_flows(&self, prefix: &str, at: i64) -> Result<u64, HistoryError> {
        self.with(|c| super::postgres_flows::close_open(c, prefix, at))
    }

    fn purge_flows_before(&self, cutoff: i64) -> Result<u64, HistoryError> {
        self.with(|c| super::postgres_flows::purge_before(c, cutoff))
    }

    fn enforce_flow_size(&self, max_bytes: u64) -> Result<u64, HistoryError> {
        self.with(|c| super::postgres_flows::enforce_size(c, max_bytes))
    }

    fn flow_usage(&self) -> Result<(u64, u64), HistoryError> {
        self.with(super::postgres_flows::usage)
    }
}

/// The benches' PostgreSQL server of its own (the history benches also load it, next to
/// this module, when clippy checks them with `cfg(test)`).
#[cfg(test)]
#[allow(clippy::duplicate_mod)]
#[path = "../../benches/common/postgres.rs"]
mod test_server;

#[cfg(test)]
mod tests {
    use super::super::flows::{FlowChange, FlowRevision};
    use super::super::redb_store::RedbStore;
    use super::*;

    /// A revision comparable across stores: PostgreSQL gives its `jsonb` back
    /// reformatted, so documents are compared parsed.
    type Row = (Kind, i64, Option<i64>, bool, serde_json::Value);
    type FlowRow = (String, String, i64, Option<i64>, serde_json::Value);

    fn rows(revs: Vec<Revision>) -> Vec<Row> {
        let mut v: Vec<_> = revs
            .into_iter()
            .map(|r| {
                let doc = serde_json::from_slice(&r.doc).unwrap();
                (r.kind, r.from, r.to, r.deleted, doc)
            })
            .collect();
        v.sort_by(|a, b| format!("{a:?}").cmp(&format!("{b:?}")));
        v
    }

    fn flow_rows(revs: Vec<FlowRevision>) -> Vec<FlowRow> {
        let mut v: Vec<_> = revs
            .into_iter()
            .map(|r| {
                let doc = serde_json::from_slice(&r.doc).unwrap();
                (r.id, r.node, r.from, r.to, doc)
            })
            .collect();
        v.sort_by(|a, b| format!("{a:?}").cmp(&format!("{b:?}")));
        v
    }

    fn open(kind: Kind, id: &str, at: i64, v: u64) -> Change {
        Change::Open {
            kind,
            id: id.into(),
            at,
            doc: format!(r#"{{"ID":"{id}","V":{v}}}"#).into_bytes(),
        }
    }

    fn close(kind: Kind, id: &str, at: i64) -> Change {
        Change::Close {
            kind,
            id: id.into(),
            at,
        }
    }

    /// Pseudo-random changes of a few IDs, times mostly going forward but sometimes
    /// back (a change before the revision it closes began) or repeated.
    fn random_changes(seed: u64, n: usize, base: i64) -> Vec<Change> {
        let mut x = seed;
        let mut t = base;
        (0..n)
            .map(|k| {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let id = ["a", "b", "c"][(x >> 33) as usize % 3];
                let kind = if (x >> 36) % 4 == 0 {
                    Kind::Edge
                } else {
                    Kind::Node
                };
                t += ((x >> 40) % 7) as i64 - 1;
                if (x >> 44) % 3 == 0 {
                    close(kind, id, t)
                } else {
                    open(kind, id, t, k as u64)
                }
            })
            .collect()
    }

    #[test]
    fn a_batch_that_reopens_the_same_ids_ends_as_in_the_embedded_store() {
        let server = test_server::Postgres::start().expect("PostgreSQL 15 (run as root)");
        let pg = PostgresStore::connect(&server.url()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let redb = RedbStore::open(&dir.path().join("h.redb")).unwrap();
        let (n, e) = (Kind::Node, Kind::Edge);
        let batches = vec![
            // Stored open before the batch that changes them many times.
            vec![
                open(n, "a", 100, 1),
                open(n, "b", 100, 1),
                open(e, "a", 100, 1),
            ],
            vec![
                open(n, "a", 110, 2),
                open(n, "a", 120, 3),
                close(n, "a", 130),
                close(n, "a", 135),
                open(n, "a", 130, 4),
                // Before the begin of the revision it closes: it ends where it began.
                open(n, "a", 125, 5),
                open(n, "a", 140, 6),
                close(n, "b", 140),
                open(n, "b", 150, 2),
                close(n, "b", 160),
                open(e, "a", 150, 2),
                close(n, "c", 150),
                open(n, "c", 150, 1),
                open(n, "c", 150, 2),
                close(n, "a", 170),
                open(n, "a", 170, 7),
            ],
            // The first change of an ID is a close of what is stored, then reopened.
            vec![
                close(n, "a", 200),
                open(n, "a", 210, 8),
                open(e, "a", 190, 3),
            ],
            random_changes(7, 300, 300),
            random_changes(11, 50, 1000),
            random_changes(13, 5, 1200),
        ];
        for batch in &batches {
            pg.apply(batch).unwrap();
            redb.apply(batch).unwrap();
            assert_eq!(
                rows(pg.between(i64::MIN + 1, i64::MAX - 1).unwrap()),
                rows(redb.between(i64::MIN + 1, i64::MAX - 1).unwrap())
            );
        }
        for t in 90..1300 {
            assert_eq!(
                rows(pg.between(t, t).unwrap()),
                rows(redb.between(t, t).unwrap()),
                "t={t}"
            );
        }
        let opened = |s: &dyn HistoryStore| {
            let mut v: Vec<(Kind, String, serde_json::Value)> = s
                .open_revisions()
                .unwrap()
                .into_iter()
                .map(|(k, id, doc)| (k, id, serde_json::from_slice(&doc).unwrap()))
                .collect();
            v.sort_by(|a, b| format!("{a:?}").cmp(&format!("{b:?}")));
            v
        };
        assert_eq!(opened(&pg), opened(&redb));
        assert!(!opened(&pg).is_empty());
        let (_, count) = pg.usage().unwrap();
        assert_eq!(count, redb.usage().unwrap().1);

        // The same for flows: reopened, closed, reopened at the time of its begin.
        let fopen = |id: &str, at, start, v: u64| FlowChange::Open {
            id: id.into(),
            node: "n1".into(),
            at,
            start,
            doc: format!(r#"{{"UUID":"{id}","V":{v}}}"#).into_bytes(),
            raw: Vec::new(),
        };
        let fclose = |id: &str, at| FlowChange::Close { id: id.into(), at };
        let flow_batches = vec![
            vec![fopen("h/c/1", 200, 100, 1), fopen("h/c/2", 200, 150, 1)],
            vec![
                fopen("h/c/1", 300, 100, 2),
                fopen("h/c/1", 300, 100, 3),
                fclose("h/c/1", 310),
                fopen("h/c/1", 320, 305, 4),
                fopen("h/c/1", 330, 305, 5),
                fclose("h/c/2", 250),
                fclose("h/c/2", 260),
                fopen("h/c/3", 300, 400, 1),
                fopen("h/c/3", 290, 400, 2),
            ],
            vec![fopen("h/c/2", 400, 100, 2), fclose("h/c/1", 400)],
        ];
        for batch in &flow_batches {
            pg.apply_flows(batch).unwrap();
            redb.apply_flows(batch).unwrap();
        }
        for t in 90..500 {
            assert_eq!(
                flow_rows(pg.flows_between(t, t).unwrap()),
                flow_rows(redb.flows_between(t, t).unwrap()),
                "t={t}"
            );
        }
        assert_eq!(
            flow_rows(pg.flows_between(0, 1000).unwrap()),
            flow_rows(redb.flows_between(0, 1000).unwrap())
        );
        assert_eq!(pg.flow_usage().unwrap().1, redb.flow_usage().unwrap().1);
    }
}
