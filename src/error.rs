//! The application's error: what went wrong, in terms a client can act on, with a
//! one-line reason.
//!
//! Every fallible operation of the services (stores, queries, captures, injections,
//! uploads) returns [`Error`]; the HTTP layer maps it to a status in one place
//! (`impl From<Error> for http::ApiError`), the CLI prints the reason. The reason is
//! the text clients see: Skydive's wording where it had one
//! (`GremlinQuery: Not a valid Gremlin expression: ...`).

use std::fmt;

/// What went wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The request itself is wrong: a field, a query, a body (400).
    #[error("{0}")]
    Invalid(String),
    /// What the request names does not exist (404).
    #[error("{0}")]
    NotFound(String),
    /// The request clashes with what exists: a duplicate (409).
    #[error("{0}")]
    Conflict(String),
    /// The request is fine but cannot be served now: a socket that cannot be opened, a
    /// name that does not resolve, a disk that fails (503).
    #[error("{0}")]
    Unavailable(String),
    /// The change could not be made durable because the disk is full; it was not
    /// made (507).
    #[error("{0}")]
    InsufficientStorage(String),
    /// The request or its answer is larger than allowed (413).
    #[error("{0}")]
    TooLarge(String),
    /// The client may not do this (403).
    #[error("{0}")]
    Forbidden(String),
    /// A bug or an unexpected failure of topotap itself (500).
    #[error("{0}")]
    Internal(String),
}

impl Error {
    pub fn invalid(reason: impl fmt::Display) -> Self {
        Error::Invalid(reason.to_string())
    }

    pub fn not_found(reason: impl fmt::Display) -> Self {
        Error::NotFound(reason.to_string())
    }

    pub fn conflict(reason: impl fmt::Display) -> Self {
        Error::Conflict(reason.to_string())
    }

    pub fn unavailable(reason: impl fmt::Display) -> Self {
        Error::Unavailable(reason.to_string())
    }

    pub fn too_large(reason: impl fmt::Display) -> Self {
        Error::TooLarge(reason.to_string())
    }

    pub fn forbidden(reason: impl fmt::Display) -> Self {
        Error::Forbidden(reason.to_string())
    }

    pub fn internal(reason: impl fmt::Display) -> Self {
        Error::Internal(reason.to_string())
    }

    /// The one-line reason.
    pub fn reason(&self) -> &str {
        match self {
            Error::Invalid(r)
            | Error::NotFound(r)
            | Error::Conflict(r)
            | Error::Unavailable(r)
            | Error::InsufficientStorage(r)
            | Error::TooLarge(r)
            | Error::Forbidden(r)
            | Error::Internal(r) => r,
        }
    }
}

/// A query that does not parse is the client's mistake.
impl From<topotap_grammar::ParseError> for Error {
    fn from(e: topotap_grammar::ParseError) -> Self {
        Error::Invalid(e.to_string())
    }
}

/// A query that cannot be evaluated on this graph is the client's mistake too
/// (`Node 'abc' does not exist`, a step that cannot follow another); one that runs out
/// of its element or byte budget is too large, one that runs out of time cannot be
/// served now.
impl From<topotap_topology::gremlin::EvalError> for Error {
    fn from(e: topotap_topology::gremlin::EvalError) -> Self {
        use topotap_topology::gremlin::ErrorKind;
        match e.kind {
            ErrorKind::Invalid => Error::Invalid(e.to_string()),
            ErrorKind::TooLarge => Error::TooLarge(e.to_string()),
            ErrorKind::Timeout => Error::Unavailable(e.to_string()),
        }
    }
}

impl From<crate::resources::StoreError> for Error {
    fn from(e: crate::resources::StoreError) -> Self {
        use crate::resources::StoreError;
        match e {
            StoreError::Rejected(e) => e,
            StoreError::Duplicate => Error::conflict("duplicated resource"),
            StoreError::NotFound => Error::NotFound("not found".into()),
            StoreError::Storage(e) if e.no_space => Error::InsufficientStorage(e.message),
            StoreError::Storage(e) => Error::Unavailable(e.message),
        }
    }
}

/// A blocking task that panicked or was cancelled.
impl From<tokio::task::JoinError> for Error {
    fn from(e: tokio::task::JoinError) -> Self {
        Error::internal(e)
    }
}

/// Encoding an answer failed: a bug, not the client's doing.
impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Self {
        Error::Internal(format!("Error while encoding response: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_and_conversions() {
        let e = Error::invalid("Src: no interface matches");
        assert_eq!(e.to_string(), "Src: no interface matches");
        assert_eq!(e.reason(), "Src: no interface matches");
        let e: Error = topotap_grammar::parse("G.V(").unwrap_err().into();
        assert!(matches!(e, Error::Invalid(_)), "{e:?}");
        use topotap_topology::gremlin::{ErrorKind, EvalError};
        let e: Error = EvalError::with_kind(ErrorKind::TooLarge, "answer exceeds 10 bytes").into();
        assert_eq!(e, Error::TooLarge("answer exceeds 10 bytes".into()));
        let e: Error = EvalError::with_kind(ErrorKind::Timeout, "over 5 ms").into();
        assert!(matches!(e, Error::Unavailable(_)), "{e:?}");
        let e: Error = crate::resources::StoreError::Duplicate.into();
        assert_eq!(e, Error::Conflict("duplicated resource".into()));
    }
}
