//! Flow snapshots in PostgreSQL, in a table of their own (the node and edge revisions'
//! are in `postgres`): `topotap_flow_revisions (seq, id, node, valid int8range, doc
//! jsonb)`, with a GiST index on `valid` ("as of t" is `valid @> t`, a window
//! `valid && [t1, t2]`), a partial unique index on the open revision of each flow, and
//! a B-tree index on the end (retention).

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
";

/// Closes the open revision of `$1` at `$2` (never before it began), returning its
/// begin.
const CLOSE: &str = "UPDATE topotap_flow_revisions
    SET valid = int8range(lower(valid), greatest(lower(valid), $2))
    WHERE id = $1 AND upper_inf(valid) RETURNING lower(valid)";

pub fn apply(c: &mut Client, changes: &[FlowChange]) -> Result<(), postgres::Error> {
    if changes.is_empty() {
        return Ok(());
    }
    let mut tx = c.transaction()?;
    let close = tx.prepare(CLOSE)?;
    let open = tx.prepare(
        "INSERT INTO topotap_flow_revisions (id, node, valid, doc)
         VALUES ($1, $2, int8range($3, NULL), $4::text::jsonb)",
    )?;
    for change in changes {
        match change {
            FlowChange::Open {
                id,
                node,
                at,
                start,
                doc,
            } => {
                let prev: Option<i64> = tx.query_opt(&close, &[id, at])?.map(|r| r.get(0));
                // A snapshot never begins before the one it follows; a first one
                // begins at the flow's first packet.
                let from = match prev {
                    Some(p) => (*at).max(p),
                    None => (*start).min(*at),
                };
                let doc = String::from_utf8_lossy(doc);
                tx.execute(&open, &[id, node, &from, &doc.as_ref()])?;
            }
            FlowChange::Close { id, at } => {
                tx.execute(&close, &[id, at])?;
            }
        }
    }
    tx.commit()
}

pub fn between(c: &mut Client, from: i64, at: i64) -> Result<Vec<FlowRevision>, postgres::Error> {
    let rows = c.query(
        "SELECT id, node, lower(valid), upper(valid), doc::text FROM topotap_flow_revisions
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
        "SELECT coalesce(sum(pg_column_size(doc)), 0)::int8, count(*) FROM topotap_flow_revisions",
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
            "SELECT u FROM (
                 SELECT upper(valid) AS u,
                        sum(pg_column_size(doc)) OVER (ORDER BY upper(valid), seq) AS cum
                 FROM topotap_flow_revisions WHERE NOT upper_inf(valid)) s
             WHERE cum >= $1 ORDER BY u LIMIT 1",
            &[&target],
        )?
        .map(|r| r.get(0));
    purge_before(c, cutoff.unwrap_or(i64::MAX).saturating_add(1))
}
