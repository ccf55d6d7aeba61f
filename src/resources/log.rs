//! The append-only file behind a [`Store`](super::Store): one record per line, written
//! by one thread with group commit, and compacted into a fresh file now and then.
//!
//! A line is `CRC32 PAYLOAD\n`: eight hex digits of the CRC-32 of the payload, a space,
//! and the payload (compact JSON, so it never contains a newline). A record counts only
//! when its whole line, newline included, is on disk with a matching CRC, so a write
//! torn by a crash or a full filesystem is recognised and ignored on load.
//!
//! Requests queue up on a channel while the writer is busy; the writer takes all that
//! are waiting, appends them with one write, syncs once and then runs each request's
//! completion: concurrent writers share one fsync. A failed write or sync is undone
//! (the file is truncated back) and reported to every request of the batch; nothing of
//! the batch counts as written. After a failed sync the file's state is unknown, so the
//! next batch first compacts, which replaces the file with what is known to be durable.
//!
//! Compaction writes every live record to a temporary file, syncs it, renames it over
//! the log and syncs the directory: a crash leaves either the old or the new log.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;

use parking_lot::Mutex;
use tracing::{info, warn};

/// Largest number of requests written with one sync.
const MAX_BATCH: usize = 4096;
/// Appended records tolerated beyond twice the live ones before compacting.
const COMPACTION_SLACK: usize = 1024;

/// Why a record could not be made durable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PersistError {
    /// The filesystem is full (`ENOSPC`, `EDQUOT`): answered with 507.
    pub no_space: bool,
    /// One line: what failed and the system's reason.
    pub message: String,
}

impl PersistError {
    fn io(what: &str, path: &Path, e: &io::Error) -> Self {
        let no_space = matches!(
            e.raw_os_error(),
            Some(code) if code == nix::errno::Errno::ENOSPC as i32
                || code == nix::errno::Errno::EDQUOT as i32
        );
        PersistError {
            no_space,
            message: format!("cannot {what} {}: {e}", path.display()),
        }
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        PersistError {
            no_space: false,
            message: message.into(),
        }
    }
}

/// Called on the writer thread once the record is durable, or failed.
pub type Completion = Box<dyn FnOnce(Result<(), PersistError>) + Send>;

/// What a record does to the live set, keyed by resource UUID.
pub enum Op {
    /// The line replaces any earlier record of the key.
    Put,
    /// The key leaves the live set.
    Delete,
}

struct Request {
    key: String,
    op: Op,
    line: Vec<u8>,
    done: Completion,
}

/// What [`read`] found in a log file.
#[derive(Debug, Default)]
pub struct Replay {
    /// Payloads of the valid records, in order.
    pub payloads: Vec<Vec<u8>>,
    /// One line for each stretch of the file that was ignored.
    pub warnings: Vec<String>,
    /// Length of the file up to the last valid record, when bytes follow it.
    pub truncate_to: Option<u64>,
    /// Invalid bytes were followed by valid records: rewrite the file.
    pub corrupt_inside: bool,
}

/// Frames a payload as a log line.
pub fn encode(payload: &[u8]) -> Vec<u8> {
    let mut line = Vec::with_capacity(payload.len() + 10);
    line.extend_from_slice(format!("{:08x} ", crc32fast::hash(payload)).as_bytes());
    line.extend_from_slice(payload);
    line.push(b'\n');
    line
}

/// Reads a log file; `None` when it does not exist.
pub fn read(path: &Path) -> io::Result<Option<Replay>> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    Ok(Some(parse(&bytes, path)))
}

fn parse(bytes: &[u8], path: &Path) -> Replay {
    let mut replay = Replay::default();
    let mut offset = 0usize;
    // End of the last valid record, and where the current run of bad bytes started.
    let mut good_end = 0usize;
    let mut bad_from: Option<usize> = None;
    while offset < bytes.len() {
        let rest = &bytes[offset..];
        let (line, next) = match rest.iter().position(|&b| b == b'\n') {
            Some(i) => (Some(&rest[..i]), offset + i + 1),
            None => (None, bytes.len()),
        };
        match line.and_then(decode) {
            Some(payload) => {
                if let Some(from) = bad_from.take() {
                    replay.warnings.push(format!(
                        "{}: skipped {} corrupt bytes at offset {from}",
                        path.display(),
                        offset - from
                    ));
                    replay.corrupt_inside = true;
                }
                replay.payloads.push(payload.to_vec());
                good_end = next;
            }
            None => {
                bad_from.get_or_insert(offset);
            }
        }
        offset = next;
    }
    if let Some(from) = bad_from {
        replay.warnings.push(format!(
            "{}: ignored a torn last record ({} bytes at offset {from})",
            path.display(),
            bytes.len() - from
        ));
        replay.truncate_to = Some(good_end as u64);
    }
    replay
}

/// The payload of a line (without its newline) whose CRC matches.
fn decode(line: &[u8]) -> Option<&[u8]> {
    if line.len() < 9 || line[8] != b' ' {
        return None;
    }
    let crc = u32::from_str_radix(std::str::from_utf8(&line[..8]).ok()?, 16).ok()?;
    let payload = &line[9..];
    (crc32fast::hash(payload) == crc).then_some(payload)
}

/// How the writer starts.
#[derive(Default)]
pub struct Startup {
    /// The live records, by key, as encoded lines.
    pub live: HashMap<String, Vec<u8>>,
    /// Cut a torn tail off the log first.
    pub truncate_to: Option<u64>,
    /// Rewrite the log first (it is missing, corrupt, or replaces a legacy file).
    pub compact: bool,
    /// A file the first compaction replaces and removes (the old whole-file format).
    pub legacy: Option<PathBuf>,
    /// The log could not be read: refuse every write rather than overwrite it.
    pub refuse: Option<String>,
}

/// The handle on the writer thread.
pub struct Log {
    tx: Option<mpsc::Sender<Request>>,
    thread: Option<JoinHandle<()>>,
    status: Arc<Mutex<Option<String>>>,
    #[cfg(test)]
    pub(crate) hooks: Arc<Mutex<Hooks>>,
}

/// Failures injected by unit tests, and what they observe.
#[cfg(test)]
#[derive(Default)]
pub(crate) struct Hooks {
    /// Every write fails with this errno.
    pub fail_with: Option<i32>,
    /// Successful appends (one per batch).
    pub syncs: usize,
}

impl Log {
    /// Starts the writer thread for the log at `path`.
    pub fn start(path: PathBuf, startup: Startup) -> io::Result<Log> {
        let (tx, rx) = mpsc::channel();
        let status = Arc::new(Mutex::new(None));
        #[cfg(test)]
        let hooks = Arc::new(Mutex::new(Hooks::default()));
        let mut writer = Writer {
            tmp: path.with_extension("log.tmp"),
            dir: path.parent().unwrap_or(Path::new(".")).to_path_buf(),
            path,
            file: None,
            len: 0,
            live: startup.live,
            records: 0,
            must_compact: startup.compact,
            retry_compaction_at: 0,
            legacy: startup.legacy,
            refuse: startup.refuse,
            status: status.clone(),
            #[cfg(test)]
            hooks: hooks.clone(),
        };
        let truncate_to = startup.truncate_to;
        let thread = std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || {
                writer.open(truncate_to);
                while let Ok(first) = rx.recv() {
                    let mut batch = vec![first];
                    while batch.len() < MAX_BATCH {
                        match rx.try_recv() {
                            Ok(r) => batch.push(r),
                            Err(_) => break,
                        }
                    }
                    writer.commit(batch);
                }
            })?;
        Ok(Log {
            tx: Some(tx),
            thread: Some(thread),
            status,
            #[cfg(test)]
            hooks,
        })
    }

    /// Queues a record; `done` runs on the writer thread once it is durable or failed.
    pub fn submit(&self, key: String, op: Op, line: Vec<u8>, done: Completion) {
        let req = Request {
            key,
            op,
            line,
            done,
        };
        let Some(tx) = &self.tx else {
            (req.done)(Err(PersistError::unavailable("the store is closed")));
            return;
        };
        if let Err(mpsc::SendError(req)) = tx.send(req) {
            (req.done)(Err(PersistError::unavailable(
                "the store writer has stopped",
            )));
        }
    }

    /// The last failure, cleared by the next successful write.
    pub fn status(&self) -> Option<String> {
        self.status.lock().clone()
    }
}

impl Drop for Log {
    /// Lets the writer finish what is queued, then waits for it.
    fn drop(&mut self) {
        self.tx.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct Writer {
    path: PathBuf,
    tmp: PathBuf,
    dir: PathBuf,
    /// The log, open for writing at `len`; `None` until opened or after a failure.
    file: Option<File>,
    len: u64,
    /// Encoded line of every live key: what a compaction writes.
    live: HashMap<String, Vec<u8>>,
    /// Records in the current file.
    records: usize,
    must_compact: bool,
    /// After a failed compaction, the number of records before the next try.
    retry_compaction_at: usize,
    legacy: Option<PathBuf>,
    refuse: Option<String>,
    status: Arc<Mutex<Option<String>>>,
    #[cfg(test)]
    hooks: Arc<Mutex<Hooks>>,
}

impl Writer {
    /// Opens the log for appending, after cutting a torn tail or compacting.
    fn open(&mut self, truncate_to: Option<u64>) {
        if self.refuse.is_some() {
            return;
        }
        if !self.must_compact {
            match self.open_existing(truncate_to) {
                Ok(()) => return,
                Err(e) => {
                    warn!("{}; rewriting it", e.message);
                    self.must_compact = true;
                }
            }
        }
        if let Err(e) = self.compact() {
            warn!("{}", e.message);
            *self.status.lock() = Some(e.message);
        }
    }

    fn open_existing(&mut self, truncate_to: Option<u64>) -> Result<(), PersistError> {
        let err = |what: &str, e: io::Error| PersistError::io(what, &self.path, &e);
        let file = OpenOptions::new()
            .write(true)
            .open(&self.path)
            .map_err(|e| err("open", e))?;
        if let Some(len) = truncate_to {
            file.set_len(len).map_err(|e| err("truncate", e))?;
            file.sync_all().map_err(|e| err("sync", e))?;
        }
        self.len = file.metadata().map_err(|e| err("stat", e))?.len();
        self.records = self.live.len();
        self.file = Some(file);
        Ok(())
    }

    fn threshold(&self) -> usize {
        2 * self.live.len() + COMPACTION_SLACK
    }

    fn commit(&mut self, batch: Vec<Request>) {
        let result = self.write(&batch);
        match &result {
            Ok(()) => {
                for r in &batch {
                    match r.op {
                        Op::Put => {
                            self.live.insert(r.key.clone(), r.line.clone());
                        }
                        Op::Delete => {
                            self.live.remove(&r.key);
                        }
                    }
                }
                self.records += batch.len();
                *self.status.lock() = None;
            }
            Err(e) => {
                let mut status = self.status.lock();
                // Once per distinct failure: expiry retries every few hundred ms.
                if status.as_deref() != Some(e.message.as_str()) {
                    warn!("{}", e.message);
                }
                *status = Some(e.message.clone());
            }
        }
        for r in batch {
            (r.done)(result.clone());
        }
        if result.is_ok() && self.records >= self.threshold().max(self.retry_compaction_at) {
            if let Err(e) = self.compact() {
                // The log is still whole: try again after as many records again.
                warn!("{} (compaction postponed)", e.message);
                self.must_compact = false;
                self.retry_compaction_at = self.records + self.threshold();
            }
        }
    }

    /// Appends the batch and syncs it, or leaves the file as it was.
    fn write(&mut self, batch: &[Request]) -> Result<(), PersistError> {
        if let Some(reason) = &self.refuse {
            return Err(PersistError::unavailable(reason.clone()));
        }
        if self.must_compact || self.file.is_none() {
            self.compact()?;
        }
        let mut buf = Vec::with_capacity(batch.iter().map(|r| r.line.len()).sum());
        for r in batch {
            buf.extend_from_slice(&r.line);
        }
        topotap_topology::blocking::section("state store write and sync");
        let file = self.file.as_ref().expect("opened by compact");
        let start = self.len;
        let written = self
            .injected_fault()
            .map_or_else(|| file.write_all_at(&buf, start), Err)
            .map_err(|e| PersistError::io("write", &self.path, &e));
        if let Err(e) = written {
            if file.set_len(start).is_err() {
                self.must_compact = true;
            }
            return Err(e);
        }
        if let Err(e) = file.sync_data() {
            // What reached the disk is unknown: drop the tail and rewrite before the
            // next append.
            let _ = file.set_len(start);
            self.must_compact = true;
            return Err(PersistError::io("sync", &self.path, &e));
        }
        self.len = start + buf.len() as u64;
        self.synced();
        Ok(())
    }

    #[cfg(test)]
    fn injected_fault(&self) -> Option<io::Error> {
        self.hooks
            .lock()
            .fail_with
            .map(io::Error::from_raw_os_error)
    }

    #[cfg(not(test))]
    fn injected_fault(&self) -> Option<io::Error> {
        None
    }

    #[cfg(test)]
    fn synced(&self) {
        self.hooks.lock().syncs += 1;
    }

    #[cfg(not(test))]
    fn synced(&self) {}

    /// Replaces the log with the live records: temporary file, sync, rename, sync dir.
    fn compact(&mut self) -> Result<(), PersistError> {
        let result = self.write_snapshot();
        if result.is_err() {
            let _ = std::fs::remove_file(&self.tmp);
            return result;
        }
        if let Some(legacy) = self.legacy.take() {
            match std::fs::remove_file(&legacy) {
                Ok(()) => {
                    info!(
                        "moved {} to {}",
                        legacy.display(),
                        self.path.file_name().unwrap_or_default().to_string_lossy()
                    );
                    let _ = sync_dir(&self.dir);
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => warn!("cannot remove {}: {e}", legacy.display()),
            }
        }
        Ok(())
    }

    fn write_snapshot(&mut self) -> Result<(), PersistError> {
        let tmp_err = |what: &str, e: io::Error| PersistError::io(what, &self.tmp, &e);
        std::fs::create_dir_all(&self.dir)
            .map_err(|e| PersistError::io("create", &self.dir, &e))?;
        topotap_topology::blocking::section("state store compaction");
        let file = File::create(&self.tmp).map_err(|e| tmp_err("create", e))?;
        let mut out = io::BufWriter::new(file);
        let mut len = 0u64;
        for line in self.live.values() {
            out.write_all(line).map_err(|e| tmp_err("write", e))?;
            len += line.len() as u64;
        }
        let file = out
            .into_inner()
            .map_err(|e| tmp_err("write", e.into_error()))?;
        if let Some(e) = self.injected_fault() {
            return Err(tmp_err("write", e));
        }
        file.sync_all().map_err(|e| tmp_err("sync", e))?;
        std::fs::rename(&self.tmp, &self.path)
            .map_err(|e| PersistError::io("rename", &self.path, &e))?;
        // From here on the new file is the log, whether or not its name is durable yet
        // (the old one held the same records).
        self.file = Some(file);
        self.len = len;
        self.records = self.live.len();
        self.retry_compaction_at = 0;
        sync_dir(&self.dir).map_err(|e| PersistError::io("sync", &self.dir, &e))?;
        self.must_compact = false;
        Ok(())
    }
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_round_trip_and_damage_is_found() {
        let p = Path::new("x.log");
        let mut bytes = encode(b"{\"a\":1}");
        bytes.extend(encode(b"{\"b\":2}"));
        let r = parse(&bytes, p);
        assert_eq!(
            r.payloads,
            vec![b"{\"a\":1}".to_vec(), b"{\"b\":2}".to_vec()]
        );
        assert!(r.warnings.is_empty() && r.truncate_to.is_none() && !r.corrupt_inside);

        // Every cut inside the second record keeps the first and cuts the rest off.
        let first = encode(b"{\"a\":1}").len();
        for cut in first + 1..bytes.len() {
            let r = parse(&bytes[..cut], p);
            assert_eq!(r.payloads.len(), 1, "cut at {cut}");
            assert_eq!(r.truncate_to, Some(first as u64));
            assert_eq!(r.warnings.len(), 1);
        }

        // A flipped bit inside the first record: skipped, the second one kept.
        let mut flipped = bytes.clone();
        flipped[12] ^= 0x01;
        let r = parse(&flipped, p);
        assert_eq!(r.payloads, vec![b"{\"b\":2}".to_vec()]);
        assert!(r.corrupt_inside && r.truncate_to.is_none());

        // Zeros after the end (a file extended but not written before a crash).
        let mut zeros = bytes.clone();
        zeros.extend([0u8; 100]);
        let r = parse(&zeros, p);
        assert_eq!(r.payloads.len(), 2);
        assert_eq!(r.truncate_to, Some(bytes.len() as u64));
    }
}
