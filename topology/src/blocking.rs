//! Work that blocks a thread (disk syncs, `/proc` scans, query evaluation, lock-heavy
//! status reports) must never run on an async worker: one such call stalls every task
//! of that worker, and all of them on a current-thread runtime.
//!
//! Such work calls [`section`] first. A thread that runs async tasks can declare it
//! with [`forbid_here`]; a [`section`] reached on that thread is then recorded (see
//! [`violations`]: a panic inside a spawned task would go unseen) and panics, naming
//! the work. Tests do this on a current-thread runtime to prove the services keep their
//! blocking work on blocking threads; elsewhere nothing is declared and [`section`]
//! costs one thread-local read.

use std::cell::Cell;
use std::sync::Mutex;

static VIOLATIONS: Mutex<Vec<String>> = Mutex::new(Vec::new());

thread_local! {
    static FORBIDDEN: Cell<bool> = const { Cell::new(false) };
}

/// Declares that the calling thread runs async tasks: blocking work on it is a bug.
pub fn forbid_here() {
    FORBIDDEN.with(|f| f.set(true));
}

/// Marks the start of blocking work (`what` names it in the panic message).
///
/// # Panics
/// On a thread declared with [`forbid_here`].
#[inline]
pub fn section(what: &str) {
    if FORBIDDEN.with(Cell::get) {
        let msg = format!("blocking work on an async worker thread: {what}");
        VIOLATIONS
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(msg.clone());
        panic!("{msg}");
    }
}

/// Every [`section`] reached on a declared thread so far, in this process.
pub fn violations() -> Vec<String> {
    VIOLATIONS.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_declared_threads_refuse_blocking_work() {
        section("anywhere");
        let refused = std::thread::spawn(|| {
            forbid_here();
            section("a disk sync");
        })
        .join()
        .expect_err("panics on a declared thread");
        let msg = refused.downcast_ref::<String>().expect("a message");
        assert!(msg.ends_with("a disk sync"), "{msg}");
        assert!(violations().contains(msg));
        section("still fine on this thread");
    }
}
