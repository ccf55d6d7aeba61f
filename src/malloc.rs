//! glibc malloc settings that keep a busy server's resident set flat.
//!
//! Queries are evaluated on tokio's blocking threads. With glibc's defaults every such
//! thread gets its own arena (up to 8 per core), the large short-lived answers are freed
//! into those arenas instead of back to the system, and every free of an mmapped block
//! raises the mmap threshold (up to 32 MiB) so later large answers are served from the
//! arenas too: the resident set creeps up with every new peak although nothing leaks
//! (BENCHMARKS.md, "Resident memory under a Gremlin-only fuzz"). Two arenas and a fixed
//! 128 KiB threshold keep it flat.
//!
//! The settings are applied with `mallopt` at start, before any thread exists, so they
//! hold however the binary is started. A setting given explicitly in the environment
//! (`GLIBC_TUNABLES=glibc.malloc.arena_max=...`, or the older `MALLOC_ARENA_MAX` /
//! `MALLOC_MMAP_THRESHOLD_`) wins: glibc applies those when it initialises, and a later
//! `mallopt` would override them, so the matching call is skipped.
#![allow(unsafe_code)]

/// Arenas glibc may create (the main one included).
pub const ARENA_MAX: i32 = 2;
/// Allocations of at least this size are mmapped and returned to the system on free.
pub const MMAP_THRESHOLD: i32 = 128 * 1024;

/// Applies [`ARENA_MAX`] and [`MMAP_THRESHOLD`] unless the environment sets them.
/// Call first thing in `main`, before any thread is spawned.
pub fn tune() {
    let tunables = std::env::var("GLIBC_TUNABLES").unwrap_or_default();
    let set_by_env = |tunable: &str, alias: &str| {
        std::env::var_os(alias).is_some()
            || tunables
                .split(':')
                .any(|kv| kv.split_once('=').is_some_and(|(k, _)| k == tunable))
    };
    if !set_by_env("glibc.malloc.arena_max", "MALLOC_ARENA_MAX") {
        set(libc::M_ARENA_MAX, ARENA_MAX);
    }
    if !set_by_env("glibc.malloc.mmap_threshold", "MALLOC_MMAP_THRESHOLD_") {
        // Also turns off glibc's dynamic threshold adjustment.
        set(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
    }
}

fn set(param: libc::c_int, value: libc::c_int) {
    // SAFETY: mallopt only changes malloc's parameters; it takes malloc's own lock and
    // has no memory-safety preconditions.
    let ok = unsafe { libc::mallopt(param, value) };
    if ok != 1 {
        // Not fatal: only the memory footprint depends on it.
        eprintln!("warning: mallopt({param}, {value}) was refused");
    }
}

#[cfg(test)]
mod tests {
    use std::process::Command;
    use std::sync::{Arc, Barrier};

    /// Set in the re-executed test process, which must start with no arena but the
    /// main one and the test thread's.
    const CHILD: &str = "TOPOTAP_MALLOC_TEST_CHILD";
    const TEST: &str = "malloc::tests::arenas_are_capped_unless_the_environment_says_otherwise";

    /// Child side: applies the settings, has 8 threads allocate at the same time and
    /// prints glibc's per-arena statistics (one "Arena N:" line each) on stderr.
    fn child() {
        super::tune();
        let threads = 8;
        let barrier = Arc::new(Barrier::new(threads));
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                let barrier = Arc::clone(&barrier);
                std::thread::spawn(move || {
                    let block = std::hint::black_box(vec![1u8; 4096]);
                    barrier.wait();
                    drop(block);
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        // SAFETY: malloc_stats only reads malloc's state (under its locks) and writes
        // to stderr.
        unsafe { libc::malloc_stats() };
    }

    /// Runs this test again in a fresh process (so that arenas created by other tests
    /// do not count) and returns how many arenas glibc reported there.
    fn arenas_in_child(env: &[(&str, &str)]) -> usize {
        let mut cmd = Command::new(std::env::current_exe().unwrap());
        cmd.args([TEST, "--exact", "--test-threads=1", "--nocapture"])
            .env(CHILD, "1")
            .env_remove("GLIBC_TUNABLES")
            .env_remove("MALLOC_ARENA_MAX");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "child failed: {stderr}");
        stderr.lines().filter(|l| l.starts_with("Arena ")).count()
    }

    #[test]
    fn arenas_are_capped_unless_the_environment_says_otherwise() {
        if std::env::var_os(CHILD).is_some() {
            child();
            return;
        }
        let capped = arenas_in_child(&[]);
        assert!(
            (1..=super::ARENA_MAX as usize).contains(&capped),
            "{capped} arenas with the settings applied"
        );
        // An explicit tunable wins over the built-in setting.
        let from_env = arenas_in_child(&[("GLIBC_TUNABLES", "glibc.malloc.arena_max=5")]);
        assert_eq!(from_env, 5, "arena_max=5 from GLIBC_TUNABLES");
    }
}
