//! Skydive's official Python client, `skydive-client` from PyPI, in a virtual
//! environment kept under `target/` (made once, reused by later runs). Needs Debian's
//! `python3-venv` and PyPI. A test file takes it with
//! `#[path = "common/skydive_venv.rs"] mod skydive_venv;`.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// The version the test was written against; its source shows what it sends.
pub const CLIENT: &str = "skydive-client==0.10.0";

/// The virtual environment with skydive-client, made once and reused.
pub fn venv() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("skydive-client-venv");
    let python = dir.join("bin/python");
    let stamp = dir.join(".installed");
    if std::fs::read_to_string(&stamp).is_ok_and(|s| s == CLIENT) {
        return python;
    }
    let _ = std::fs::remove_dir_all(&dir);
    let out = Command::new("python3")
        .args(["-m", "venv"])
        .arg(&dir)
        .output()
        .expect("python3 (apt-get install python3 python3-venv; see scripts/deps.sh)");
    assert!(
        out.status.success(),
        "python3 -m venv {} failed (apt-get install python3-venv):\n{}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new(&python)
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
        ])
        .arg(CLIENT)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "pip install {CLIENT} failed (is PyPI reachable?):\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::write(&stamp, CLIENT).unwrap();
    python
}
