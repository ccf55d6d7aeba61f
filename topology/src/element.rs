//! Owned graph elements with Skydive's JSON shape (§1.6).
//!
//! These are what the API returns, what events carry and what REST clients send. The
//! graph stores a more compact form and hands these out as snapshots.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::Identifier;

/// Metadata of a node or edge: a JSON object, keys sorted, nested objects allowed.
pub type Metadata = serde_json::Map<String, Value>;

/// Milliseconds since the Unix epoch, the unit of every timestamp in the API.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A node as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Node {
    #[serde(rename = "ID")]
    #[schema(value_type = String, min_length = 1)]
    pub id: Identifier,
    #[serde(rename = "Metadata", default, deserialize_with = "metadata_or_empty")]
    #[schema(schema_with = node_metadata_schema, required = true)]
    pub metadata: Metadata,
    #[serde(rename = "Host", default)]
    pub host: String,
    #[serde(rename = "Origin", default)]
    pub origin: String,
    #[serde(rename = "CreatedAt", default)]
    /// Milliseconds since the Unix epoch; `null` or absent in a request: now.
    #[schema(nullable)]
    pub created_at: i64,
    #[serde(rename = "UpdatedAt", default)]
    /// Milliseconds since the Unix epoch; `null` or absent in a request: now.
    #[schema(nullable)]
    pub updated_at: i64,
    /// Always `null` for live elements.
    #[serde(rename = "DeletedAt", default)]
    pub deleted_at: Option<i64>,
    #[serde(rename = "Revision", default)]
    pub revision: i64,
}

/// An edge as the API shows it: a node's fields plus `Parent` and `Child`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Edge {
    #[serde(rename = "ID")]
    #[schema(value_type = String, min_length = 1)]
    pub id: Identifier,
    #[serde(rename = "Metadata", default, deserialize_with = "metadata_or_empty")]
    #[schema(schema_with = edge_metadata_schema, required = true)]
    pub metadata: Metadata,
    #[serde(rename = "Host", default)]
    pub host: String,
    #[serde(rename = "Origin", default)]
    pub origin: String,
    #[serde(rename = "CreatedAt", default)]
    /// Milliseconds since the Unix epoch; `null` or absent in a request: now.
    #[schema(nullable)]
    pub created_at: i64,
    #[serde(rename = "UpdatedAt", default)]
    /// Milliseconds since the Unix epoch; `null` or absent in a request: now.
    #[schema(nullable)]
    pub updated_at: i64,
    #[serde(rename = "DeletedAt", default)]
    pub deleted_at: Option<i64>,
    #[serde(rename = "Revision", default)]
    pub revision: i64,
    #[serde(rename = "Parent")]
    #[schema(value_type = String, min_length = 1)]
    pub parent: Identifier,
    #[serde(rename = "Child")]
    #[schema(value_type = String, min_length = 1)]
    pub child: Identifier,
}

/// A node's metadata as the API requires it: any keys, with non-empty `Type` and `Name`.
fn node_metadata_schema() -> utoipa::openapi::Object {
    metadata_schema(
        "A node's properties: any keys, with non-empty Type and Name.",
        &["Type", "Name"],
    )
}

/// An edge's metadata as the API requires it: any keys, with a non-empty `RelationType`.
fn edge_metadata_schema() -> utoipa::openapi::Object {
    metadata_schema(
        "An edge's properties: any keys, with a non-empty RelationType.",
        &["RelationType"],
    )
}

fn metadata_schema(description: &str, required: &[&str]) -> utoipa::openapi::Object {
    use utoipa::openapi::schema::{AdditionalProperties, ObjectBuilder, Type};
    let mut b = ObjectBuilder::new()
        .schema_type(Type::Object)
        .description(Some(description))
        .additional_properties(Some(AdditionalProperties::FreeForm(true)));
    for key in required {
        b = b
            .property(
                *key,
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .min_length(Some(1)),
            )
            .required(*key);
    }
    b.build()
}

fn metadata_or_empty<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Metadata, D::Error> {
    Ok(Option::<Metadata>::deserialize(d)?.unwrap_or_default())
}

impl Node {
    /// A new node created now, revision 1.
    pub fn new(id: Identifier, metadata: Metadata, host: &str, origin: &str) -> Self {
        let now = now_ms();
        Node {
            id,
            metadata,
            host: host.to_owned(),
            origin: origin.to_owned(),
            created_at: now,
            updated_at: now,
            deleted_at: None,
            revision: 1,
        }
    }
}

impl Edge {
    /// A new edge created now, revision 1, with Skydive's derived ID
    /// (`v5(parent + child + RelationType)`).
    pub fn new(
        parent: Identifier,
        child: Identifier,
        metadata: Metadata,
        host: &str,
        origin: &str,
    ) -> Self {
        let relation =
            crate::schema::str_of(&metadata, crate::schema::key::RELATION_TYPE).unwrap_or("");
        let id = Identifier::for_edge(&parent, &child, relation);
        let now = now_ms();
        Edge {
            id,
            metadata,
            host: host.to_owned(),
            origin: origin.to_owned(),
            created_at: now,
            updated_at: now,
            deleted_at: None,
            revision: 1,
            parent,
            child,
        }
    }
}

/// Looks a dotted key up in nested metadata (`ExtID.attached-mac`, `Ovs.OtherConfig.x`);
/// a leading `Metadata.` is ignored. Through a list of objects, the sub-key of every
/// object that has it is collected into a list.
pub fn lookup<'a>(metadata: &'a Metadata, key: &str) -> Option<Lookup<'a>> {
    let key = key.strip_prefix("Metadata.").unwrap_or(key);
    if let Some(v) = metadata.get(key) {
        return Some(Lookup::One(v));
    }
    let mut parts = key.split('.');
    let first = parts.next()?;
    let mut current = metadata.get(first)?;
    let rest: Vec<&str> = parts.collect();
    for (i, part) in rest.iter().enumerate() {
        match current {
            Value::Object(map) => current = map.get(*part)?,
            Value::Array(items) => {
                let sub = rest[i..].join(".");
                let collected: Vec<&'a Value> = items
                    .iter()
                    .filter_map(|item| match item {
                        Value::Object(m) => lookup(m, &sub),
                        _ => None,
                    })
                    .flat_map(|l| l.into_values())
                    .collect();
                return if collected.is_empty() {
                    None
                } else {
                    Some(Lookup::Many(collected))
                };
            }
            _ => return None,
        }
    }
    Some(Lookup::One(current))
}

/// The result of a metadata [`lookup`]: one value, or values collected through a list.
#[derive(Debug, Clone, PartialEq)]
pub enum Lookup<'a> {
    One(&'a Value),
    Many(Vec<&'a Value>),
}

impl<'a> Lookup<'a> {
    /// The found values, flattening collected ones.
    pub fn into_values(self) -> Vec<&'a Value> {
        match self {
            Lookup::One(v) => vec![v],
            Lookup::Many(v) => v,
        }
    }

    /// As one JSON value (collected values become an array).
    pub fn to_value(&self) -> Value {
        match self {
            Lookup::One(v) => (*v).clone(),
            Lookup::Many(v) => Value::Array(v.iter().map(|x| (*x).clone()).collect()),
        }
    }
}

/// Sets a dotted key, creating intermediate objects (`SetField("a.b", v)` in Skydive).
/// Returns whether the metadata changed.
pub fn set_field(metadata: &mut Metadata, key: &str, value: Value) -> bool {
    match key.split_once('.') {
        None => {
            if metadata.get(key) == Some(&value) {
                false
            } else {
                metadata.insert(key.to_owned(), value);
                true
            }
        }
        Some((head, rest)) => {
            let entry = metadata
                .entry(head.to_owned())
                .or_insert_with(|| Value::Object(Metadata::new()));
            if !entry.is_object() {
                *entry = Value::Object(Metadata::new());
            }
            match entry {
                Value::Object(map) => set_field(map, rest, value),
                _ => unreachable!("entry was just made an object"),
            }
        }
    }
}

/// Removes a dotted key; returns whether it was present.
pub fn remove_field(metadata: &mut Metadata, key: &str) -> bool {
    match key.split_once('.') {
        None => metadata.remove(key).is_some(),
        Some((head, rest)) => match metadata.get_mut(head) {
            Some(Value::Object(map)) => remove_field(map, rest),
            _ => false,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn md(v: Value) -> Metadata {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn node_json_has_skydive_field_order_and_null_deleted_at() {
        let n = Node {
            id: Identifier::from("n1"),
            metadata: md(json!({"Name": "eth0"})),
            host: "h".into(),
            origin: "agent.h".into(),
            created_at: 1,
            updated_at: 2,
            deleted_at: None,
            revision: 1,
        };
        assert_eq!(
            serde_json::to_string(&n).unwrap(),
            r#"{"ID":"n1","Metadata":{"Name":"eth0"},"Host":"h","Origin":"agent.h","CreatedAt":1,"UpdatedAt":2,"DeletedAt":null,"Revision":1}"#
        );
    }

    #[test]
    fn nested_and_listed_lookup() {
        let m = md(json!({
            "ExtID": {"attached-mac": "aa"},
            "Captures": [{"ID": "c1", "State": "active"}, {"ID": "c2"}],
            "a.b": 1
        }));
        assert_eq!(
            lookup(&m, "ExtID.attached-mac").unwrap().to_value(),
            json!("aa")
        );
        assert_eq!(
            lookup(&m, "Metadata.ExtID.attached-mac")
                .unwrap()
                .to_value(),
            json!("aa")
        );
        assert_eq!(
            lookup(&m, "Captures.ID").unwrap().to_value(),
            json!(["c1", "c2"])
        );
        assert_eq!(
            lookup(&m, "Captures.State").unwrap().to_value(),
            json!(["active"])
        );
        assert_eq!(lookup(&m, "a.b").unwrap().to_value(), json!(1));
        assert!(lookup(&m, "Captures.Nope").is_none());
        assert!(lookup(&m, "ExtID.x").is_none());
    }

    #[test]
    fn set_and_remove_nested_fields() {
        let mut m = Metadata::new();
        assert!(set_field(&mut m, "ExtID.k", json!("v")));
        assert!(!set_field(&mut m, "ExtID.k", json!("v")));
        assert_eq!(Value::Object(m.clone()), json!({"ExtID": {"k": "v"}}));
        assert!(remove_field(&mut m, "ExtID.k"));
        assert!(!remove_field(&mut m, "ExtID.k"));
    }

    #[test]
    fn rest_node_without_optional_fields_deserializes() {
        let n: Node = serde_json::from_str(r#"{"ID":"x","Metadata":null}"#).unwrap();
        assert!(n.metadata.is_empty());
        assert!(serde_json::from_str::<Node>(r#"{"Metadata":{}}"#).is_err());
        assert!(serde_json::from_str::<Edge>(r#"{"ID":"e","Parent":"a"}"#).is_err());
    }
}
