//! Flow snapshots in PostgreSQL, in a table of their own (the node and edge revisions'
//! are in `postgres`): `topotap_flow_revisions (seq, id, node, valid int8range, doc
//! jsonb, raw bytea)` (`raw`: the flow's raw frames, NULL when none; added to tables
//! made before it), with a GiST index on `valid` ("as of t" is `valid @> t`, a window
//! `valid && [t1, t2]`), a partial unique index on the open revision of each flow, and
//! a B-tree index on the end (retention).

use std::collections::{HashMap, HashSet};

use postgres::Client;

use super::flows::{FlowChange, FlowRevision};

pub const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS topotap_flow_revisions (
    seq bigserial PRIMARY KEY,
    id text NOT NULL,
    node text NOT NULL,
    valid int8range NOT NULL,
    doc jsonb NOT NULL
);
CREATE INDEX IF NOT EXISTS topotap_flow_revisions_valid ON topotap_flow_revisions USING gist (valid);
CREATE UNIQUE INDEX IF NOT EXISTS topotap_flow_revisions_open
    ON topotap_flow_revisions (id) WHERE upper_inf(valid);
CREATE INDEX IF NOT EXISTS topotap_flow_revisions_to ON topotap_flow_revisions (upper(valid));
ALTER TABLE topotap_flow_revisions ADD COLUMN IF NOT EXISTS raw bytea;
";

/// Bytes a revision takes, its raw frames included.
const SIZE: &str = "(pg_column_size(doc) + coalesce(pg_column_size(raw), 0))";

/// Closes the open revisions of the flows `$1` at `$2` (never before they began),
/// returning each one's ID and begin.
const CLOSE: &str = "WITH c AS (SELECT * FROM unnest($1::text[], $2::int8[]) AS c(id, at)),
    old AS (
        SELECT r.seq, r.id, lower(r.valid) AS f, c.at FROM topotap_flow_revisions r
        JOIN c ON r.id = c.id WHERE upper_inf(r.valid)
    )
    UPDATE topotap_flow_revisions r SET valid = int8range(old.f, greatest(old.f, old.at))
    FROM old WHERE r.seq = old.seq RETURNING old.id, old.f";

/// Applies flow changes in one transaction of two statements: the closes of the
/// revisions stored open (each flow's first change in the batch closes its open one),
/// then every revision the batch opens, those it closes again already ended.
pub fn apply(c: &mut Client, changes: &[FlowChange]) -> Result<(), postgres::Error> {
    if changes.is_empty() {
        return Ok(());
    }
    let mut tx = c.transaction()?;
    // The first change of each flow, in the order met.
    let mut first: HashSet<&str> = HashSet::new();
    let (mut ids, mut ats) = (Vec::new(), Vec::new());
    for change in changes {
        let (FlowChange::Open { id, at, .. } | FlowChange::Close { id, at }) = change;
        if first.insert(id.as_str()) {
            ids.push(id.as_str());
            ats.push(*at);
        }
    }
    // Begin of each flow's revision stored open, closed now.
    let stored: HashMap<String, i64> = tx
        .query(CLOSE, &[&ids, &ats])?
        .into_iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    // Per flow: the index of its revision opened in this batch and still open; absent
    // before its first change.
    let mut open: HashMap<&str, Option<usize>> = HashMap::new();
    let (mut id, mut node, mut from, mut to, mut doc, mut raw) = (
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
    );
    for change in changes {
        let (FlowChange::Open { id: fid, at, .. } | FlowChange::Close { id: fid, at }) = change;
        // The begin of the revision this change closes, if any.
        let prev = match open.get_mut(fid.as_str()) {
            None => stored.get(fid.as_str()).copied(),
            Some(slot) => slot.take().map(|i: usize| {
                to[i] = Some((*at).max(from[i]));
                from[i]
            }),
        };
        let slot = open.entry(fid.as_str()).or_default();
        if let FlowChange::Open {
            node: n,
            start,
            doc: d,
            raw: r,
            ..
        } = change
        {
            // A snapshot never begins before the one it follows; a first one begins at
            // the flow's first packet.
            let f = match prev {
                Some(p) => (*at).max(p),
                None => (*start).min(*at),
            };
            *slot = Some(from.len());
            id.push(fid.as_str());
            node.push(n.as_str());
            from.push(f);
            to.push(None);
            doc.push(String::from_utf8_lossy(d));
            raw.push((!r.is_empty()).then_some(r.as_slice()));
        }
    }
    if !id.is_empty() {
        tx.execute(
            "INSERT INTO topotap_flow_revisions (id, node, valid, doc, raw)
             SELECT id, node, int8range(f, t), doc::jsonb, raw
             FROM unnest($1::text[], $2::text[], $3::int8[], $4::int8[], $5::text[], $6::bytea[])
                 WITH ORDINALITY AS c(id, node, f, t, doc, raw, n)
             ORDER BY n",
            &[&id, &node, &from, &to, &doc, &raw],
        )?;
    }
    tx.commit()
}

pub fn between(c: &mut Client, from: i64, at: i64) -> Result<Vec<FlowRevision>, postgres::Error> {
    let rows = c.query(
        "SELECT id, node, lower(valid), upper(valid), doc::text, raw FROM topotap_flow_revisions
         WHERE valid && int8range($1, $2, '[]')",
        &[&from, &at],
    )?;
    Ok(rows
        .into_iter()
        .map(|r| FlowRevision {
            id: r.get(0),
            node: r.get(1),
            from: r.get(2),
            to: r.get(3),
            doc: r.get::<_, String>(4).into_bytes(),
            raw: r.get::<_, Option<Vec<u8>>>(5).unwrap_or_default(),
        })
        .collect())
}

pub fn close_open(c: &mut Client, prefix: &str, at: i64) -> Result<u64, postgres::Error> {
    c.execute(
        "UPDATE topotap_flow_revisions
         SET valid = int8range(lower(valid), greatest(lower(valid), $2))
         WHERE upper_inf(valid) AND starts_with(id, $1)",
        &[&prefix, &at],
    )
}

pub fn purge_before(c: &mut Client, cutoff: i64) -> Result<u64, postgres::Error> {
    c.execute(
        "DELETE FROM topotap_flow_revisions WHERE NOT upper_inf(valid) AND upper(valid) < $1",
        &[&cutoff],
    )
}

pub fn usage(c: &mut Client) -> Result<(u64, u64), postgres::Error> {
    c.query_one(
        &format!("SELECT coalesce(sum({SIZE}), 0)::int8, count(*) FROM topotap_flow_revisions"),
        &[],
    )
    .map(|r| {
        (
            r.get::<_, i64>(0).max(0) as u64,
            r.get::<_, i64>(1).max(0) as u64,
        )
    })
}

/// Removes the oldest ended flow revisions until they take at most `max_bytes` (down
/// to 90% of it).
pub fn enforce_size(c: &mut Client, max_bytes: u64) -> Result<u64, postgres::Error> {
    let (bytes, _) = usage(c)?;
    if bytes <= max_bytes {
        return Ok(0);
    }
    let target = (bytes - max_bytes + max_bytes / 10) as i64;
    let cutoff: Option<i64> = c
        .query_opt(
            &format!(
                "SELECT u FROM (
                     SELECT upper(valid) AS u,
                            sum({SIZE}) OVER (ORDER BY upper(valid), seq) AS cum
                     FROM topotap_flow_revisions WHERE NOT upper_inf(valid)) s
                 WHERE cum >= $1 ORDER BY u LIMIT 1"
            ),
            &[&target],
        )?
        .map(|r| r.get(0));
    purge_before(c, cutoff.unwrap_or(i64::MAX).saturating_add(1))
}
