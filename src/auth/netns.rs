//! Which namespace files topotap may open and enter: only those its own probes found.
//!
//! A capture or an injection enters the namespace named by the `Path` of its
//! interface's netns owner node. That metadata can be written through the API (a node
//! created or patched with `Path: "/etc/passwd"`), so the path itself is never trusted:
//! it must be a namespace file that the probes registered (same inode on nsfs).

use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A namespace path the probes did not find (a 403).
#[derive(Debug, thiserror::Error)]
#[error("namespace path {} was not found by topotap's probes: not entered", .0.display())]
pub struct UnknownNamespace(pub PathBuf);

type Check = Arc<dyn Fn(&Path) -> bool + Send + Sync>;

/// The namespaces topotap may enter. The default (no probes) enters none.
#[derive(Clone, Default)]
pub struct KnownNamespaces(Option<Check>);

impl KnownNamespaces {
    pub fn new(check: impl Fn(&Path) -> bool + Send + Sync + 'static) -> Self {
        KnownNamespaces(Some(Arc::new(check)))
    }

    /// `Ok` if `path` may be entered, else the one-line reason.
    pub fn check(&self, path: &Path) -> Result<(), UnknownNamespace> {
        match &self.0 {
            Some(known) if known(path) => Ok(()),
            _ => Err(UnknownNamespace(path.to_owned())),
        }
    }
}

impl std::fmt::Debug for KnownNamespaces {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "KnownNamespaces(probes)"
        } else {
            "KnownNamespaces(none)"
        })
    }
}
