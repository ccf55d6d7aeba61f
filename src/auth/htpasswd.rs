//! Users and their bcrypt password hashes, from an htpasswd file as `htpasswd -B` writes
//! it (`name:$2y$05$...`, one user a line; blank lines and `#` comments skipped).
//!
//! Other hash schemes (`$apr1$` MD5, `{SHA}`, crypt) are refused when the file is
//! loaded, with the line number: a user who could never log in is a mistake to report,
//! not to discover later.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// What is wrong with an htpasswd file's text.
#[derive(Debug, thiserror::Error)]
pub enum SyntaxError {
    #[error("line {0}: expected `user:hash`")]
    NoColon(usize),
    #[error("line {0}: empty user name")]
    EmptyName(usize),
    #[error("line {line} (user {user:?}): not a bcrypt hash; make the file with `htpasswd -B`")]
    NotBcrypt { line: usize, user: String },
    #[error("line {line}: user {user:?} appears twice")]
    Duplicate { line: usize, user: String },
    #[error("no users in the file")]
    NoUsers,
}

/// An htpasswd file that cannot be used: the path and the reason.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read the htpasswd file {}: {error}", path.display())]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("htpasswd file {}: {error}", path.display())]
    Syntax { path: PathBuf, error: SyntaxError },
}

/// The users of an htpasswd file.
#[derive(Debug, Default)]
pub struct Htpasswd {
    users: HashMap<String, String>,
}

impl Htpasswd {
    /// Reads and checks `path`. The error names the file and, for a bad line, its number
    /// and what is wrong with it.
    pub fn load(path: &Path) -> Result<Self, LoadError> {
        let text = std::fs::read_to_string(path).map_err(|error| LoadError::Read {
            path: path.to_owned(),
            error,
        })?;
        Self::parse(&text).map_err(|error| LoadError::Syntax {
            path: path.to_owned(),
            error,
        })
    }

    pub fn parse(text: &str) -> Result<Self, SyntaxError> {
        let mut users = HashMap::new();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim_end_matches('\r');
            if line.trim().is_empty() || line.trim_start().starts_with('#') {
                continue;
            }
            let n = i + 1;
            let (name, hash) = line.split_once(':').ok_or(SyntaxError::NoColon(n))?;
            if name.is_empty() {
                return Err(SyntaxError::EmptyName(n));
            }
            if !is_bcrypt(hash) {
                return Err(SyntaxError::NotBcrypt {
                    line: n,
                    user: name.to_owned(),
                });
            }
            if users.insert(name.to_owned(), hash.to_owned()).is_some() {
                return Err(SyntaxError::Duplicate {
                    line: n,
                    user: name.to_owned(),
                });
            }
        }
        if users.is_empty() {
            return Err(SyntaxError::NoUsers);
        }
        Ok(Htpasswd { users })
    }

    pub fn contains(&self, user: &str) -> bool {
        self.users.contains_key(user)
    }

    pub fn len(&self) -> usize {
        self.users.len()
    }

    /// Whether `password` is `user`'s. Costs a bcrypt hash (milliseconds): call it off
    /// the async workers. An unknown user costs the same as a known one.
    pub fn verify(&self, user: &str, password: &str) -> bool {
        // A hash at `htpasswd -B`'s cost, so that unknown users take as long as known ones.
        static DECOY: std::sync::LazyLock<String> =
            std::sync::LazyLock::new(|| bcrypt::hash("decoy", 5).unwrap_or_default());
        match self.users.get(user) {
            Some(hash) => bcrypt::verify(password, hash).unwrap_or(false),
            None => {
                let _ = bcrypt::verify(password, &DECOY);
                false
            }
        }
    }
}

/// `$2a$`, `$2b$`, `$2x$` or `$2y$`, a two-digit cost, `$`, and 53 characters of salt
/// and hash.
fn is_bcrypt(hash: &str) -> bool {
    let b = hash.as_bytes();
    b.len() == 60
        && b.starts_with(b"$2")
        && matches!(b[2], b'a' | b'b' | b'x' | b'y')
        && b[3] == b'$'
        && b[4].is_ascii_digit()
        && b[5].is_ascii_digit()
        && b[6] == b'$'
        && b[7..]
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || *c == b'.' || *c == b'/')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verifies_htpasswd_b_hashes_and_refuses_other_schemes() {
        let hash = bcrypt::hash_with_result("s3cret", 5)
            .unwrap()
            .format_for_version(bcrypt::Version::TwoY);
        let file = Htpasswd::parse(&format!("# users\n\nalice:{hash}\n")).unwrap();
        assert!(file.verify("alice", "s3cret"));
        assert!(!file.verify("alice", "wrong"));
        assert!(!file.verify("bob", "s3cret"));
        assert_eq!(file.len(), 1);

        for (text, reason) in [
            ("alice", "line 1: expected `user:hash`"),
            (":$2y$05$abc", "line 1: empty user name"),
            (
                "bob:$apr1$xyz$abc",
                "line 1 (user \"bob\"): not a bcrypt hash",
            ),
            ("bob:{SHA}abc=", "not a bcrypt hash"),
            ("bob:$2y$05$short", "not a bcrypt hash"),
            ("", "no users"),
        ] {
            let err = Htpasswd::parse(text).unwrap_err().to_string();
            assert!(err.contains(reason), "{text:?}: {err}");
        }
        let dup = format!("a:{hash}\na:{hash}\n");
        assert!(Htpasswd::parse(&dup)
            .unwrap_err()
            .to_string()
            .contains("line 2: user \"a\" appears twice"));
    }

    #[test]
    fn unreadable_file_error_names_the_path_and_reason() {
        let err = Htpasswd::load(Path::new("/nonexistent/dir/users.htpasswd"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("/nonexistent/dir/users.htpasswd"), "{err}");
        assert!(err.contains("No such file"), "{err}");
    }
}
