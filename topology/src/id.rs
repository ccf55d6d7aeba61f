//! Element identifiers.
//!
//! Skydive IDs are strings; almost all of them are canonical UUIDs (random v4 for nodes,
//! v5 for edges). Those are stored as 16 bytes; any other string (REST clients may pick
//! their own IDs) is kept as a shared string. Both forms print back exactly as given.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use uuid::Uuid;

/// The ID of a node or an edge.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Identifier(Repr);

#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Repr {
    /// A canonical (lower-case, hyphenated) UUID, as bytes (not `u128`, whose 16-byte
    /// alignment would make every identifier 32 bytes instead of 24).
    Uuid([u8; 16]),
    Other(Arc<str>),
}

impl Identifier {
    /// A fresh random (v4) identifier.
    pub fn random() -> Self {
        Identifier(Repr::Uuid(Uuid::new_v4().into_bytes()))
    }

    /// A name-based (v5, OID namespace) identifier, as Skydive derives edge IDs and TIDs.
    pub fn v5(name: &str) -> Self {
        Identifier(Repr::Uuid(
            Uuid::new_v5(&Uuid::NAMESPACE_OID, name.as_bytes()).into_bytes(),
        ))
    }

    /// The ID of the edge `parent -> child` with the given relation type (Skydive's `NewLink`).
    pub fn for_edge(parent: &Identifier, child: &Identifier, relation: &str) -> Self {
        Self::v5(&format!("{parent}{child}{relation}"))
    }
}

impl From<&str> for Identifier {
    fn from(s: &str) -> Self {
        if s.len() == 36 {
            if let Ok(u) = Uuid::try_parse(s) {
                let mut buf = Uuid::encode_buffer();
                if u.hyphenated().encode_lower(&mut buf) == s {
                    return Identifier(Repr::Uuid(u.into_bytes()));
                }
            }
        }
        Identifier(Repr::Other(Arc::from(s)))
    }
}

impl From<String> for Identifier {
    fn from(s: String) -> Self {
        Identifier::from(s.as_str())
    }
}

impl FromStr for Identifier {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Identifier::from(s))
    }
}

impl fmt::Display for Identifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Repr::Uuid(u) => {
                let mut buf = Uuid::encode_buffer();
                f.write_str(Uuid::from_bytes(*u).hyphenated().encode_lower(&mut buf))
            }
            Repr::Other(s) => f.write_str(s),
        }
    }
}

impl fmt::Debug for Identifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

impl Serialize for Identifier {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Identifier {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Ok(Identifier::from(s.as_ref()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_24_bytes() {
        assert_eq!(std::mem::size_of::<Identifier>(), 24);
    }

    #[test]
    fn canonical_uuid_is_compact_and_prints_back() {
        let s = "3b9ff2c1-1a2b-4c3d-8e4f-0123456789ab";
        let id = Identifier::from(s);
        assert!(matches!(id.0, Repr::Uuid(_)));
        assert_eq!(id.to_string(), s);
    }

    #[test]
    fn other_strings_print_back_verbatim() {
        for s in [
            "node-1",
            "3B9FF2C1-1A2B-4C3D-8E4F-0123456789AB",
            "",
            "3b9ff2c11a2b4c3d8e4f0123456789ab",
        ] {
            let id = Identifier::from(s);
            assert!(matches!(id.0, Repr::Other(_)), "{s}");
            assert_eq!(id.to_string(), s);
        }
    }

    #[test]
    fn edge_ids_are_stable() {
        let a = Identifier::from("a");
        let b = Identifier::from("b");
        assert_eq!(
            Identifier::for_edge(&a, &b, "ownership"),
            Identifier::v5("abownership")
        );
        assert_ne!(
            Identifier::for_edge(&a, &b, "ownership"),
            Identifier::for_edge(&a, &b, "layer2")
        );
    }
}
