//! Records the source revision the binary is built from, for `--version` and the
//! `topotap_build_info` metric: `TOPOTAP_REVISION` from the environment if set (for
//! packagers), else `git rev-parse` in a clone, else the `.revision` file that
//! `git archive` fills in (`export-subst`, see `.gitattributes`), else "unknown".

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=TOPOTAP_REVISION");
    println!("cargo:rerun-if-changed=.revision");
    let dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let revision = std::env::var("TOPOTAP_REVISION")
        .ok()
        .filter(|r| !r.trim().is_empty())
        .or_else(|| from_git(&dir))
        .or_else(|| from_archive(&dir))
        .unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=TOPOTAP_REVISION={}", revision.trim());
}

fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let s = String::from_utf8(out.stdout).ok()?.trim().to_owned();
    (!s.is_empty()).then_some(s)
}

fn from_git(dir: &Path) -> Option<String> {
    let rev = git(dir, &["rev-parse", "--short=12", "HEAD"])?;
    // Rebuild when HEAD moves: HEAD itself, the branch it points to, packed refs.
    let mut watched = vec![git(dir, &["rev-parse", "--git-path", "HEAD"])];
    if let Some(branch) = git(dir, &["symbolic-ref", "-q", "HEAD"]) {
        watched.push(git(dir, &["rev-parse", "--git-path", &branch]));
    }
    watched.push(git(dir, &["rev-parse", "--git-path", "packed-refs"]));
    for path in watched.into_iter().flatten() {
        let path = dir.join(path);
        if path.exists() {
            println!("cargo:rerun-if-changed={}", path.display());
        }
    }
    Some(rev)
}

fn from_archive(dir: &Path) -> Option<String> {
    let text = std::fs::read_to_string(dir.join(".revision")).ok()?;
    let rev = text.trim();
    // Still the placeholder: not made by `git archive`.
    if rev.is_empty() || rev.contains('$') {
        return None;
    }
    Some(rev.chars().take(12).collect())
}
