//! A local mirror of the monitored Open_vSwitch tables and typed views of their rows.
//!
//! The mirror is fed the `monitor` reply and every `update` notification
//! ([`Database::apply`]); the graph is then derived from it as a whole (see `sync`).
//! Typed rows are decoded on demand from the raw columns with [`datum`] helpers, so a
//! column the server did not send simply reads as empty.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::datum;

/// Columns monitored per table. Interface `statistics` is deliberately left out: it
/// changes every few seconds on every interface and would turn each refresh into a
/// graph update.
pub const MONITORED: &[(&str, &[&str])] = &[
    (
        "Bridge",
        &[
            "name",
            "ports",
            "external_ids",
            "other_config",
            "protocols",
            "datapath_type",
        ],
    ),
    (
        "Port",
        &[
            "name",
            "interfaces",
            "external_ids",
            "other_config",
            "tag",
            "trunks",
            "bond_mode",
            "lacp",
        ],
    ),
    (
        "Interface",
        &[
            "name",
            "type",
            "ofport",
            "mac_in_use",
            "ifindex",
            "external_ids",
            "options",
            "other_config",
            "error",
            "status",
        ],
    ),
    (
        "Open_vSwitch",
        &["ovs_version", "db_version", "external_ids", "other_config"],
    ),
];

/// Raw columns of one row, as sent by the server.
pub type RawRow = Map<String, Value>;

/// The mirrored tables: table name -> row UUID -> columns. Ordered maps keep every
/// derivation deterministic.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Database {
    tables: BTreeMap<String, BTreeMap<String, RawRow>>,
}

/// A `<table-updates>` object that is not shaped as RFC 7047 §4.1.6 says.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed table-updates: {0}")]
pub struct MalformedUpdate(pub String);

impl Database {
    /// A mirror built from a `monitor` reply (`<table-updates>` with only `new`).
    pub fn from_monitor_reply(result: &Value) -> Result<Self, MalformedUpdate> {
        let mut db = Database::default();
        db.apply(result)?;
        Ok(db)
    }

    /// Applies a `<table-updates>` object: a row with `new` is inserted or replaced
    /// (in monitor v1 `new` carries every monitored column, `old` only the changed
    /// ones, so `old` is not needed), a row with only `old` is deleted. The update is
    /// checked before anything is applied.
    pub fn apply(&mut self, updates: &Value) -> Result<(), MalformedUpdate> {
        let tables = updates
            .as_object()
            .ok_or_else(|| MalformedUpdate("not an object".into()))?;
        for (table, rows) in tables {
            let rows = rows
                .as_object()
                .ok_or_else(|| MalformedUpdate(format!("{table}: rows not an object")))?;
            for (uuid, update) in rows {
                let ok = update.as_object().is_some_and(|u| {
                    u.get("new").is_none_or(Value::is_object)
                        && u.get("old").is_none_or(Value::is_object)
                });
                if !ok {
                    return Err(MalformedUpdate(format!("{table} {uuid}: bad row update")));
                }
            }
        }
        for (table, rows) in tables {
            let mirror = self.tables.entry(table.clone()).or_default();
            for (uuid, update) in rows.as_object().into_iter().flatten() {
                match update.get("new") {
                    Some(Value::Object(new)) => {
                        let row = mirror.entry(uuid.clone()).or_default();
                        for (col, v) in new {
                            row.insert(col.clone(), v.clone());
                        }
                    }
                    _ => {
                        mirror.remove(uuid);
                    }
                }
            }
        }
        Ok(())
    }

    fn rows(&self, table: &str) -> impl Iterator<Item = (&String, &RawRow)> {
        self.tables.get(table).into_iter().flatten()
    }

    pub fn bridges(&self) -> impl Iterator<Item = BridgeRow> + '_ {
        self.rows("Bridge").map(|(u, r)| BridgeRow::decode(u, r))
    }

    pub fn ports(&self) -> impl Iterator<Item = PortRow> + '_ {
        self.rows("Port").map(|(u, r)| PortRow::decode(u, r))
    }

    pub fn interfaces(&self) -> impl Iterator<Item = InterfaceRow> + '_ {
        self.rows("Interface")
            .map(|(u, r)| InterfaceRow::decode(u, r))
    }

    /// The single `Open_vSwitch` row, if the server has one.
    pub fn open_vswitch(&self) -> Option<OpenVswitchRow> {
        self.rows("Open_vSwitch")
            .next()
            .map(|(u, r)| OpenVswitchRow::decode(u, r))
    }

    /// The raw columns of one row.
    pub fn raw(&self, table: &str, uuid: &str) -> Option<&RawRow> {
        self.tables.get(table)?.get(uuid)
    }

    /// Number of rows over all tables.
    pub fn len(&self) -> usize {
        self.tables.values().map(BTreeMap::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A `Bridge` row.
#[derive(Debug, Clone, PartialEq)]
pub struct BridgeRow {
    pub uuid: String,
    pub name: String,
    pub ports: Vec<String>,
    pub external_ids: Map<String, Value>,
    pub other_config: Map<String, Value>,
    pub protocols: Vec<String>,
    pub datapath_type: String,
}

impl BridgeRow {
    pub fn decode(uuid: &str, row: &RawRow) -> Self {
        BridgeRow {
            uuid: uuid.to_owned(),
            name: datum::optional_string(row.get("name"), true).unwrap_or_default(),
            ports: datum::uuids(row.get("ports")),
            external_ids: datum::map(row.get("external_ids")),
            other_config: datum::map(row.get("other_config")),
            protocols: datum::strings(row.get("protocols")),
            datapath_type: datum::optional_string(row.get("datapath_type"), true)
                .unwrap_or_default(),
        }
    }
}

/// A `Port` row.
#[derive(Debug, Clone, PartialEq)]
pub struct PortRow {
    pub uuid: String,
    pub name: String,
    pub interfaces: Vec<String>,
    pub external_ids: Map<String, Value>,
    pub other_config: Map<String, Value>,
    pub tag: Option<i64>,
    pub trunks: Vec<i64>,
    pub bond_mode: Option<String>,
    pub lacp: Option<String>,
}

impl PortRow {
    pub fn decode(uuid: &str, row: &RawRow) -> Self {
        PortRow {
            uuid: uuid.to_owned(),
            name: datum::optional_string(row.get("name"), true).unwrap_or_default(),
            interfaces: datum::uuids(row.get("interfaces")),
            external_ids: datum::map(row.get("external_ids")),
            other_config: datum::map(row.get("other_config")),
            tag: datum::optional_integer(row.get("tag")),
            trunks: datum::integers(row.get("trunks")),
            bond_mode: datum::optional_string(row.get("bond_mode"), false),
            lacp: datum::optional_string(row.get("lacp"), false),
        }
    }
}

/// An `Interface` row.
#[derive(Debug, Clone, PartialEq)]
pub struct InterfaceRow {
    pub uuid: String,
    pub name: String,
    /// OVS interface type; empty for a system (netdev) interface.
    pub kind: String,
    pub ofport: Option<i64>,
    pub mac_in_use: Option<String>,
    pub ifindex: Option<i64>,
    pub external_ids: Map<String, Value>,
    pub options: Map<String, Value>,
    pub other_config: Map<String, Value>,
    pub error: Option<String>,
    pub status: Map<String, Value>,
}

impl InterfaceRow {
    pub fn decode(uuid: &str, row: &RawRow) -> Self {
        InterfaceRow {
            uuid: uuid.to_owned(),
            name: datum::optional_string(row.get("name"), true).unwrap_or_default(),
            kind: datum::optional_string(row.get("type"), true).unwrap_or_default(),
            ofport: datum::optional_integer(row.get("ofport")),
            mac_in_use: datum::optional_string(row.get("mac_in_use"), false),
            ifindex: datum::optional_integer(row.get("ifindex")),
            external_ids: datum::map(row.get("external_ids")),
            options: datum::map(row.get("options")),
            other_config: datum::map(row.get("other_config")),
            error: datum::optional_string(row.get("error"), false),
            status: datum::map(row.get("status")),
        }
    }

    /// The MAC to match a netlink node with: `mac_in_use`, else the
    /// `external_ids:attached-mac` a hypervisor recorded.
    pub fn mac(&self) -> Option<&str> {
        self.mac_in_use.as_deref().or_else(|| {
            self.external_ids
                .get("attached-mac")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
        })
    }

    /// The kernel ifindex OVS reports, when it reports a real one (> 0).
    pub fn kernel_ifindex(&self) -> Option<i64> {
        self.ifindex.filter(|i| *i > 0)
    }

    /// Name of the peer of a patch interface (`options:peer`).
    pub fn patch_peer(&self) -> Option<&str> {
        if self.kind != "patch" {
            return None;
        }
        self.options.get("peer").and_then(Value::as_str)
    }
}

/// The `Open_vSwitch` (root) row.
#[derive(Debug, Clone, PartialEq)]
pub struct OpenVswitchRow {
    pub uuid: String,
    pub ovs_version: Option<String>,
    pub db_version: Option<String>,
    pub external_ids: Map<String, Value>,
    pub other_config: Map<String, Value>,
}

impl OpenVswitchRow {
    pub fn decode(uuid: &str, row: &RawRow) -> Self {
        OpenVswitchRow {
            uuid: uuid.to_owned(),
            ovs_version: datum::optional_string(row.get("ovs_version"), false),
            db_version: datum::optional_string(row.get("db_version"), false),
            external_ids: datum::map(row.get("external_ids")),
            other_config: datum::map(row.get("other_config")),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::json;

    /// The messages of a real session with ovsdb-server 3.1 (`testdata/`): the monitor
    /// reply (bridge capbr0 with its internal port and veth port capv1h, tag 42), then
    /// updates 1: add internal port capint0, 2: its ifindex/ofport, 3: add bridge
    /// capbr1, 4: its ifindex, 5: its MAC change, 6: patch ports cappa<->cappb,
    /// 7: trunks/other_config on capv1h, 8: delete capint0, 9: delete capbr1 (with
    /// cappb), 10: error on cappa.
    pub(crate) fn session() -> Vec<Value> {
        include_str!("testdata/monitor-session.jsonl")
            .lines()
            .map(|l| serde_json::from_str(l).expect("fixture is JSON"))
            .collect()
    }

    /// The mirror after the monitor reply and the first `n` updates.
    pub(crate) fn db_after(n: usize) -> Database {
        let s = session();
        let mut db = Database::from_monitor_reply(&s[0]["result"]).unwrap();
        for m in &s[1..=n] {
            assert_eq!(m["method"], "update");
            db.apply(&m["params"][1]).unwrap();
        }
        db
    }

    #[test]
    fn monitor_reply_decodes_into_typed_rows() {
        let db = db_after(0);
        let bridges: Vec<_> = db.bridges().collect();
        assert_eq!(bridges.len(), 1);
        let br = &bridges[0];
        assert_eq!(br.name, "capbr0");
        assert_eq!(br.datapath_type, "netdev");
        assert_eq!(br.protocols, vec!["OpenFlow10", "OpenFlow13"]);
        assert_eq!(br.ports.len(), 2);
        assert_eq!(br.external_ids["owner"], "topotap");

        let port = db.ports().find(|p| p.name == "capv1h").unwrap();
        assert_eq!(port.tag, Some(42));
        assert!(port.trunks.is_empty());
        assert_eq!(port.bond_mode, None);
        assert_eq!(
            port.interfaces,
            vec!["7453cc1a-ac59-40d5-b516-e432a2f019c3"]
        );

        let veth = db.interfaces().find(|i| i.name == "capv1h").unwrap();
        assert_eq!(veth.kind, "");
        assert_eq!(veth.ifindex, Some(8));
        assert_eq!(veth.ofport, Some(1));
        assert_eq!(veth.mac(), Some("b6:16:98:2f:34:6a"));
        assert_eq!(veth.error, None);
        assert_eq!(veth.status["driver_name"], "veth");

        let ovs = db.open_vswitch().unwrap();
        assert_eq!(ovs.ovs_version, None);
    }

    #[test]
    fn modifications_replace_rows_and_deletions_remove_them() {
        let db = db_after(1);
        let int0 = db.interfaces().find(|i| i.name == "capint0").unwrap();
        assert_eq!(int0.kind, "internal");
        assert_eq!(int0.ifindex, None);
        let db = db_after(2);
        let int0 = db.interfaces().find(|i| i.name == "capint0").unwrap();
        assert_eq!(int0.ifindex, Some(9));
        assert_eq!(int0.ofport, Some(2));

        let db = db_after(7);
        let pa = db.interfaces().find(|i| i.name == "cappa").unwrap();
        assert_eq!(pa.patch_peer(), Some("cappb"));
        let v1 = db.ports().find(|p| p.name == "capv1h").unwrap();
        assert_eq!(v1.trunks, vec![10, 20]);
        assert_eq!(v1.other_config["foo"], "bar");

        let db = db_after(10);
        assert!(db.interfaces().all(|i| i.name != "capint0"));
        assert!(db.bridges().all(|b| b.name != "capbr1"));
        let pa = db.interfaces().find(|i| i.name == "cappa").unwrap();
        assert_eq!(
            pa.error.as_deref(),
            Some("No usable peer 'cappb' exists in 'netdev' datapath.")
        );
    }

    #[test]
    fn malformed_updates_are_rejected_whole() {
        let mut db = db_after(0);
        let before = db.clone();
        let bad = json!({"Port": {"x": {"new": {"name": "p"}}}, "Bridge": {"y": 3}});
        assert!(db.apply(&bad).is_err());
        assert_eq!(db, before);
        assert!(db.apply(&json!([1])).is_err());
    }
}
