//! OVSDB datum decoding (RFC 7047 §5.1).
//!
//! On the wire an atom is plain JSON (string, integer, real, boolean) or a reference
//! `["uuid", "..."]`; a set is `["set", [atom, ...]]` except that a set of exactly one
//! element is sent as the bare atom; a map is `["map", [[key, value], ...]]`. These
//! functions accept both forms of a set and never panic on malformed input: anything
//! that does not decode is treated as absent.

use serde_json::{Map, Value};

/// The elements of a set column, whichever form it came in (`["set", [..]]` or a bare
/// atom for a one-element set). An absent column is an empty set.
pub fn set_elements(datum: Option<&Value>) -> Vec<&Value> {
    match datum {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(pair)) if pair.len() == 2 && pair[0] == "set" => match &pair[1] {
            Value::Array(items) => items.iter().collect(),
            _ => Vec::new(),
        },
        Some(atom) => vec![atom],
    }
}

/// A reference atom `["uuid", "<uuid>"]`.
pub fn uuid(atom: &Value) -> Option<&str> {
    match atom {
        Value::Array(pair) if pair.len() == 2 && pair[0] == "uuid" => pair[1].as_str(),
        _ => None,
    }
}

/// The UUIDs of a set-of-references column (`ports`, `interfaces`).
pub fn uuids(datum: Option<&Value>) -> Vec<String> {
    set_elements(datum)
        .into_iter()
        .filter_map(uuid)
        .map(str::to_owned)
        .collect()
}

/// A string column, or a string set of at most one element (`error`, `bond_mode`,
/// `ovs_version`). An empty set is `None`; so is an empty string when `keep_empty` is
/// false.
pub fn optional_string(datum: Option<&Value>, keep_empty: bool) -> Option<String> {
    let first = set_elements(datum).into_iter().next()?;
    let s = first.as_str()?;
    if s.is_empty() && !keep_empty {
        None
    } else {
        Some(s.to_owned())
    }
}

/// An integer column or an integer set of at most one element (`tag`, `ofport`,
/// `ifindex`).
pub fn optional_integer(datum: Option<&Value>) -> Option<i64> {
    set_elements(datum).into_iter().next().and_then(integer)
}

/// The integers of an integer set (`trunks`).
pub fn integers(datum: Option<&Value>) -> Vec<i64> {
    set_elements(datum)
        .into_iter()
        .filter_map(integer)
        .collect()
}

/// The strings of a string set (`protocols`).
pub fn strings(datum: Option<&Value>) -> Vec<String> {
    set_elements(datum)
        .into_iter()
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect()
}

/// A `map` column as a JSON object. Keys are rendered as strings (every map in the
/// Open_vSwitch schema has string keys); values keep their JSON type, references
/// become their UUID string. An absent or malformed column is an empty map.
pub fn map(datum: Option<&Value>) -> Map<String, Value> {
    let mut out = Map::new();
    let Some(Value::Array(pair)) = datum else {
        return out;
    };
    if pair.len() != 2 || pair[0] != "map" {
        return out;
    }
    let Value::Array(entries) = &pair[1] else {
        return out;
    };
    for entry in entries {
        let Value::Array(kv) = entry else { continue };
        let [k, v] = kv.as_slice() else { continue };
        let key = match k {
            Value::String(s) => s.clone(),
            other => match uuid(other) {
                Some(u) => u.to_owned(),
                None => other.to_string(),
            },
        };
        let value = match uuid(v) {
            Some(u) => Value::from(u),
            None => v.clone(),
        };
        out.insert(key, value);
    }
    out
}

fn integer(atom: &Value) -> Option<i64> {
    atom.as_i64()
        .or_else(|| atom.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn one_element_sets_arrive_as_bare_atoms() {
        let bare = json!(["uuid", "7453cc1a-ac59-40d5-b516-e432a2f019c3"]);
        let wrapped = json!(["set", [["uuid", "a"], ["uuid", "b"]]]);
        assert_eq!(
            uuids(Some(&bare)),
            vec!["7453cc1a-ac59-40d5-b516-e432a2f019c3"]
        );
        assert_eq!(uuids(Some(&wrapped)), vec!["a", "b"]);
        assert!(uuids(Some(&json!(["set", []]))).is_empty());
        assert!(uuids(None).is_empty());
    }

    #[test]
    fn optional_scalars_decode_from_atom_or_empty_set() {
        assert_eq!(optional_integer(Some(&json!(42))), Some(42));
        assert_eq!(optional_integer(Some(&json!(["set", []]))), None);
        assert_eq!(optional_integer(Some(&json!(["set", [7]]))), Some(7));
        assert_eq!(
            optional_string(Some(&json!("No usable peer")), false).as_deref(),
            Some("No usable peer")
        );
        assert_eq!(optional_string(Some(&json!(["set", []])), false), None);
        assert_eq!(optional_string(Some(&json!("")), false), None);
        assert_eq!(optional_string(Some(&json!("")), true).as_deref(), Some(""));
        assert_eq!(integers(Some(&json!(["set", [10, 20]]))), vec![10, 20]);
        assert_eq!(integers(Some(&json!(10))), vec![10]);
        assert_eq!(
            strings(Some(&json!(["set", ["OpenFlow10", "OpenFlow13"]]))),
            vec!["OpenFlow10", "OpenFlow13"]
        );
    }

    #[test]
    fn maps_decode_to_objects_and_tolerate_garbage() {
        let m = map(Some(&json!(["map", [["driver_name", "veth"], ["n", 3]]])));
        assert_eq!(Value::Object(m), json!({"driver_name": "veth", "n": 3}));
        assert!(map(Some(&json!(["map", []]))).is_empty());
        assert!(map(Some(&json!("nonsense"))).is_empty());
        assert!(map(Some(&json!(["map", [["only-key"]]]))).is_empty());
        let refs = map(Some(&json!(["map", [[1, ["uuid", "u1"]]]])));
        assert_eq!(Value::Object(refs), json!({"1": "u1"}));
    }
}
