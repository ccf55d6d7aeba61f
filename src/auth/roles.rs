//! Roles and the roles file (`--auth-roles`, TOML):
//!
//! ```toml
//! [users]
//! alice = "admin"      # + injections, node and edge writes
//! bob = "operator"     # + captures and pcap uploads
//! carol = "reader"     # queries, WebSocket, GETs
//! ```
//!
//! Each role includes the ones before it. Users not listed have no role: they can log
//! in, and every API call answers 403.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use serde::Deserialize;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Reader,
    Operator,
    Admin,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::Reader => "reader",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }

    /// What a user with this role may do, Skydive's `Permissions` in the login answer.
    pub fn permissions(self) -> Vec<&'static str> {
        let mut p = vec!["topology:read", "websocket:read"];
        if self >= Role::Operator {
            p.extend(["capture:write", "pcap:write"]);
        }
        if self >= Role::Admin {
            p.extend(["injectpacket:write", "topology:write"]);
        }
        p
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RolesFile {
    #[serde(default)]
    users: BTreeMap<String, Role>,
}

/// What is wrong with a roles file's text, on one line.
#[derive(Debug, thiserror::Error)]
#[error("{}", .0.to_string().lines().collect::<Vec<_>>().join(" "))]
pub struct SyntaxError(toml::de::Error);

/// A roles file that cannot be used: the path and the reason.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read the roles file {}: {error}", path.display())]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("roles file {}: {error}", path.display())]
    Syntax { path: PathBuf, error: SyntaxError },
}

/// Every user's role.
#[derive(Debug, Default)]
pub struct Roles {
    users: HashMap<String, Role>,
}

impl Roles {
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
        let file: RolesFile = toml::from_str(text).map_err(SyntaxError)?;
        Ok(Roles {
            users: file.users.into_iter().collect(),
        })
    }

    pub fn role_of(&self, user: &str) -> Option<Role> {
        self.users.get(user).copied()
    }

    pub fn users(&self) -> impl Iterator<Item = &str> {
        self.users.keys().map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_users_and_refuses_unknown_roles() {
        let r = Roles::parse("[users]\nalice = \"admin\"\nbob = \"reader\"\n").unwrap();
        assert_eq!(r.role_of("alice"), Some(Role::Admin));
        assert_eq!(r.role_of("bob"), Some(Role::Reader));
        assert_eq!(r.role_of("carol"), None);
        assert!(Role::Admin > Role::Operator && Role::Operator > Role::Reader);

        let err = Roles::parse("[users]\nalice = \"root\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown variant `root`"), "{err}");
        assert!(!err.contains('\n'));
        assert!(Roles::parse("[groups]\n").is_err());
        assert!(Roles::parse("[users\n").is_err());
    }
}
