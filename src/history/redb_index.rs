//! An index of revisions by begin time for the embedded store, so that the revisions
//! valid at an instant (or during a window) are found by reading about as many entries
//! as there are revisions returned, whatever the number of revisions stored.
//!
//! The revision tables are keyed by end time (`(to, seq)`): retention removes a prefix,
//! but "valid at t" would have to read every revision that ended after `t` to find
//! those that began by then. This index keys each revision by `(level, from, seq)` and
//! holds its end. The level buckets revisions by length: level `k` holds those lasting
//! at least `2^(k-1)` and less than `2^k` ms (level 0 the empty ones, which are never
//! valid), [`OPEN`] the open ones. A level-`k` revision valid at `t` began in
//! `(t - 2^k, t]`, so each level is one range read, and at least half of that range's
//! length holds only revisions that are valid at `t` (those that began less than
//! `2^(k-1)` before it): the entries read and not returned are about as many as those
//! returned. 65 levels of closed revisions and the open ones: 66 range reads for a
//! point, however many revisions are stored.

use redb::{ReadableTable, Table};

use super::HistoryError;

/// `(level, from, seq)` -> `to` (`i64::MAX` while open).
pub type Key = (u8, i64, u64);

/// A revision found: its begin, and its key in the revision table, `(to, seq)`.
pub type Found = (i64, (i64, u64));

/// The level of the open revisions.
pub const OPEN: u8 = u8::MAX;

/// The end of an open revision in the revision tables.
pub const OPEN_END: i64 = i64::MAX;

/// The highest level of a closed revision: a length needs at most 64 bits.
const TOP: u8 = 64;

fn e(err: impl std::fmt::Display) -> HistoryError {
    HistoryError::new(err)
}

/// The level of a revision `[from, to)`.
pub fn level(from: i64, to: i64) -> u8 {
    if to == OPEN_END {
        return OPEN;
    }
    let len = (to as i128 - from as i128).max(0) as u64;
    (64 - len.leading_zeros()) as u8
}

fn levels() -> impl Iterator<Item = u8> {
    (0..=TOP).chain([OPEN])
}

/// Adds a revision.
pub fn insert(idx: &mut Table<Key, i64>, from: i64, to: i64, seq: u64) -> Result<(), HistoryError> {
    idx.insert((level(from, to), from, seq), to).map_err(e)?;
    Ok(())
}

/// Removes a revision.
pub fn remove(idx: &mut Table<Key, i64>, from: i64, to: i64, seq: u64) -> Result<(), HistoryError> {
    idx.remove((level(from, to), from, seq)).map_err(e)?;
    Ok(())
}

/// Moves the open revision `seq` that began at `from` to its end `to`.
pub fn close(idx: &mut Table<Key, i64>, from: i64, to: i64, seq: u64) -> Result<(), HistoryError> {
    remove(idx, from, OPEN_END, seq)?;
    insert(idx, from, to, seq)
}

/// The revisions valid at some instant of `[from, at]` (begun at or before `at`, ended
/// after `from` and after their begin).
pub fn valid(
    idx: &impl ReadableTable<Key, i64>,
    from: i64,
    at: i64,
) -> Result<Vec<Found>, HistoryError> {
    let mut out = Vec::new();
    for k in levels() {
        // Level 0: empty, never valid.
        if k == 0 {
            continue;
        }
        // A revision of this level that ends after `from` began after `from - 2^k`.
        let lo = if k == OPEN {
            i64::MIN
        } else {
            (from as i128 - (1i128 << k) + 1).max(i64::MIN as i128) as i64
        };
        if lo > at {
            continue;
        }
        for item in idx.range((k, lo, 0u64)..=(k, at, u64::MAX)).map_err(e)? {
            let (key, to) = item.map_err(e)?;
            let (_, begin, seq) = key.value();
            let to = to.value();
            if to > from && to > begin {
                out.push((begin, (to, seq)));
            }
        }
    }
    Ok(out)
}

/// The earliest begin of a revision after `t`.
pub fn first_begin_after(
    idx: &impl ReadableTable<Key, i64>,
    t: i64,
) -> Result<Option<i64>, HistoryError> {
    let Some(start) = t.checked_add(1) else {
        return Ok(None);
    };
    let mut first: Option<i64> = None;
    for k in levels() {
        if let Some(item) = idx
            .range((k, start, 0u64)..=(k, i64::MAX, u64::MAX))
            .map_err(e)?
            .next()
        {
            let begin = item.map_err(e)?.0.value().1;
            first = Some(first.map_or(begin, |f| f.min(begin)));
        }
    }
    Ok(first)
}

/// Builds the index of a revision table whose values begin with the revision's begin
/// (8 bytes, little-endian): a file written before the index was kept.
pub fn build(
    revs: &impl ReadableTable<(i64, u64), &'static [u8]>,
    idx: &mut Table<Key, i64>,
) -> Result<u64, HistoryError> {
    let mut n = 0;
    for item in revs.iter().map_err(e)? {
        let (k, v) = item.map_err(e)?;
        let (to, seq) = k.value();
        let Some(from) = v
            .value()
            .get(..8)
            .and_then(|b| b.try_into().ok())
            .map(i64::from_le_bytes)
        else {
            continue;
        };
        insert(idx, from, to, seq)?;
        n += 1;
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use redb::{Database, TableDefinition};

    const IDX: TableDefinition<Key, i64> = TableDefinition::new("idx");

    #[test]
    fn levels_bucket_lengths_by_powers_of_two() {
        assert_eq!(level(5, 5), 0);
        assert_eq!(level(5, 6), 1);
        assert_eq!(level(5, 7), 2);
        assert_eq!(level(5, 8), 2);
        assert_eq!(level(5, 9), 3);
        assert_eq!(level(0, 1 << 40), 41);
        assert_eq!(level(i64::MIN, i64::MAX - 1), 64);
        assert_eq!(level(7, OPEN_END), OPEN);
    }

    /// Every interval of a brute-force set, against every point and some windows.
    #[test]
    fn valid_revisions_are_exactly_those_intersecting_the_window() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::create(dir.path().join("i.redb")).unwrap();
        let mut all = Vec::new();
        let mut x = 3u64;
        for seq in 0..2000u64 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let from = ((x >> 33) % 1000) as i64;
            let to = match (x >> 20) % 10 {
                0 => OPEN_END,
                1 => from,
                _ => from + ((x >> 40) % (1 << ((x >> 12) % 12))) as i64,
            };
            all.push((from, to, seq));
        }
        let tx = db.begin_write().unwrap();
        {
            let mut idx = tx.open_table(IDX).unwrap();
            for &(from, to, seq) in &all {
                insert(&mut idx, from, to, seq).unwrap();
            }
        }
        tx.commit().unwrap();
        let tx = db.begin_read().unwrap();
        let idx = tx.open_table(IDX).unwrap();
        for (a, b) in (-5..1100)
            .map(|t| (t, t))
            .chain([(10, 50), (400, 900), (-10, 5000)])
        {
            let mut got = valid(&idx, a, b).unwrap();
            got.sort();
            let mut want: Vec<_> = all
                .iter()
                .filter(|&&(from, to, _)| from <= b && to > a && to > from)
                .map(|&(from, to, seq)| (from, (to, seq)))
                .collect();
            want.sort();
            assert_eq!(got, want, "[{a}, {b}]");
            let first = all.iter().map(|r| r.0).filter(|&f| f > a).min();
            assert_eq!(first_begin_after(&idx, a).unwrap(), first, "{a}");
        }
    }
}
