//! Pure translation of OVSDB rows into node metadata (Skydive §3.8).

use serde_json::{Map, Value};
use topotap_topology::{schema, tid, Identifier, Metadata};

use super::rows::{BridgeRow, InterfaceRow, OpenVswitchRow, PortRow};

/// Metadata keys of an `ovsbridge` node that the probe owns (set or removed from the
/// row); any other key (`Captures`, ...) belongs to someone else and is left alone.
pub const BRIDGE_KEYS: &[&str] = &["Name", "UUID", "Type", "ExtID", "Ovs", "TID"];

/// Metadata keys of an `ovsport` node that the probe owns.
pub const PORT_KEYS: &[&str] = &[
    "Name", "UUID", "Type", "ExtID", "Ovs", "TID", "Vlans", "BondMode", "LACP",
];

/// Interface keys that always come from OVS: set from the row, removed when the row
/// no longer has them or disappears. `Type`, `MAC`, `IfIndex`, `Driver`, `Name` and
/// `TID` are shared with netlink and handled by the merge rules in `sync`.
pub const INTERFACE_KEYS: &[&str] = &[
    "UUID",
    "OfPort",
    "ExtID",
    "Ovs",
    "LocalIP",
    "RemoteIP",
    "TunEgressIface",
    "TunEgressIfaceCarrier",
];

/// `ovsbridge` node metadata:
/// `{Name, UUID, Type: ovsbridge, ExtID?, Ovs{OtherConfig, Protocols, DatapathType?}, TID}`.
pub fn bridge_metadata(row: &BridgeRow, host_tid: &Identifier) -> Metadata {
    let mut md = Metadata::new();
    md.insert("Name".into(), row.name.clone().into());
    md.insert("UUID".into(), row.uuid.clone().into());
    md.insert("Type".into(), schema::node_type::OVSBRIDGE.into());
    if !row.external_ids.is_empty() {
        md.insert("ExtID".into(), Value::Object(row.external_ids.clone()));
    }
    let mut ovs = Map::new();
    ovs.insert(
        "OtherConfig".into(),
        Value::Object(row.other_config.clone()),
    );
    ovs.insert("Protocols".into(), row.protocols.clone().into());
    if !row.datapath_type.is_empty() {
        ovs.insert("DatapathType".into(), row.datapath_type.clone().into());
    }
    md.insert("Ovs".into(), Value::Object(ovs));
    md.insert(
        "TID".into(),
        tid::ovs(host_tid, &row.uuid, schema::node_type::OVSBRIDGE)
            .to_string()
            .into(),
    );
    md
}

/// `ovsport` node metadata: `{Name, UUID, Type: ovsport, Vlans?, BondMode?, LACP?,
/// ExtID?, Ovs{OtherConfig}, TID}`. `Vlans` is the access `tag` as an integer (as
/// Skydive does), or the `trunks` list for a trunk port.
pub fn port_metadata(row: &PortRow, host_tid: &Identifier) -> Metadata {
    let mut md = Metadata::new();
    md.insert("Name".into(), row.name.clone().into());
    md.insert("UUID".into(), row.uuid.clone().into());
    md.insert("Type".into(), "ovsport".into());
    if let Some(tag) = row.tag {
        md.insert("Vlans".into(), tag.into());
    } else if !row.trunks.is_empty() {
        md.insert("Vlans".into(), row.trunks.clone().into());
    }
    if let Some(mode) = &row.bond_mode {
        md.insert("BondMode".into(), mode.clone().into());
    }
    if let Some(lacp) = &row.lacp {
        md.insert("LACP".into(), lacp.clone().into());
    }
    if !row.external_ids.is_empty() {
        md.insert("ExtID".into(), Value::Object(row.external_ids.clone()));
    }
    let mut ovs = Map::new();
    ovs.insert(
        "OtherConfig".into(),
        Value::Object(row.other_config.clone()),
    );
    md.insert("Ovs".into(), Value::Object(ovs));
    md.insert(
        "TID".into(),
        tid::ovs(host_tid, &row.uuid, "ovsport").to_string().into(),
    );
    md
}

/// What an `Interface` row contributes to its interface node.
#[derive(Debug, Clone, PartialEq)]
pub struct InterfaceFacts {
    /// Values of [`INTERFACE_KEYS`] the row has (absent ones are removed from the node).
    pub owned: Metadata,
    /// The OVS type when not empty (`internal`, `patch`, `vxlan`, ...); it wins over
    /// the netlink type.
    pub kind: Option<String>,
    /// `mac_in_use`: set when netlink has no MAC (or the node is OVS's own).
    pub mac: Option<String>,
    /// The kernel ifindex (> 0): set when netlink has none (or the node is OVS's own).
    pub ifindex: Option<i64>,
    /// `status:driver_name`, default `openvswitch`: set only when the node has none.
    pub driver: String,
}

/// Translates an `Interface` row: `UUID`, `OfPort` (when assigned), `ExtID.*`,
/// `Ovs{Options, OtherConfig, Error?}`, and for tunnels `LocalIP`, `RemoteIP`,
/// `TunEgressIface`, `TunEgressIfaceCarrier`.
pub fn interface_facts(row: &InterfaceRow) -> InterfaceFacts {
    let mut owned = Metadata::new();
    owned.insert("UUID".into(), row.uuid.clone().into());
    if let Some(ofport) = row.ofport {
        owned.insert("OfPort".into(), ofport.into());
    }
    if !row.external_ids.is_empty() {
        owned.insert("ExtID".into(), Value::Object(row.external_ids.clone()));
    }
    let mut ovs = Map::new();
    ovs.insert("Options".into(), Value::Object(row.options.clone()));
    ovs.insert(
        "OtherConfig".into(),
        Value::Object(row.other_config.clone()),
    );
    if let Some(err) = &row.error {
        ovs.insert("Error".into(), err.clone().into());
    }
    owned.insert("Ovs".into(), Value::Object(ovs));
    if schema::is_ovs_tunnel(&row.kind) {
        for (key, source, column) in [
            ("LocalIP", &row.options, "local_ip"),
            ("RemoteIP", &row.options, "remote_ip"),
            ("TunEgressIface", &row.status, "tunnel_egress_iface"),
            (
                "TunEgressIfaceCarrier",
                &row.status,
                "tunnel_egress_iface_carrier",
            ),
        ] {
            if let Some(v) = source.get(column).filter(|v| v.as_str() != Some("")) {
                owned.insert(key.into(), v.clone());
            }
        }
    }
    InterfaceFacts {
        owned,
        kind: Some(row.kind.clone()).filter(|k| !k.is_empty()),
        mac: row.mac_in_use.clone(),
        ifindex: row.kernel_ifindex(),
        driver: row
            .status
            .get("driver_name")
            .and_then(Value::as_str)
            .filter(|d| !d.is_empty())
            .unwrap_or("openvswitch")
            .to_owned(),
    }
}

/// The `Ovs` object the root row puts on the host node:
/// `{Version?, DBVersion?, OtherConfig, ExtID?}` (the userspace datapath has no
/// `ovs-system` device to carry it).
pub fn host_ovs_metadata(row: &OpenVswitchRow) -> Value {
    let mut ovs = Map::new();
    if let Some(v) = &row.ovs_version {
        ovs.insert("Version".into(), v.clone().into());
    }
    if let Some(v) = &row.db_version {
        ovs.insert("DBVersion".into(), v.clone().into());
    }
    ovs.insert(
        "OtherConfig".into(),
        Value::Object(row.other_config.clone()),
    );
    if !row.external_ids.is_empty() {
        ovs.insert("ExtID".into(), Value::Object(row.external_ids.clone()));
    }
    Value::Object(ovs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ovsdb::rows::tests::db_after;
    use serde_json::json;

    fn host_tid() -> Identifier {
        tid::host("h1")
    }

    #[test]
    fn bridge_row_to_metadata() {
        let db = db_after(0);
        let br = db.bridges().next().unwrap();
        let md = bridge_metadata(&br, &host_tid());
        let tid = tid::ovs(
            &host_tid(),
            "3cc3395f-8d9e-49ef-ae0e-0d14534856b5",
            schema::node_type::OVSBRIDGE,
        );
        assert_eq!(
            Value::Object(md),
            json!({
                "Name": "capbr0",
                "UUID": "3cc3395f-8d9e-49ef-ae0e-0d14534856b5",
                "Type": schema::node_type::OVSBRIDGE,
                "ExtID": {"owner": "topotap"},
                "Ovs": {"OtherConfig": {}, "Protocols": ["OpenFlow10", "OpenFlow13"], "DatapathType": "netdev"},
                "TID": tid.to_string(),
            })
        );
    }

    #[test]
    fn port_row_to_metadata_access_then_trunk() {
        let db = db_after(0);
        let p = db.ports().find(|p| p.name == "capv1h").unwrap();
        let md = port_metadata(&p, &host_tid());
        assert_eq!(md["Type"], "ovsport");
        assert_eq!(md["Vlans"], 42);
        assert!(!md.contains_key("BondMode"));
        assert_eq!(md["Ovs"], json!({"OtherConfig": {}}));
        assert_eq!(
            md["TID"],
            tid::ovs(&host_tid(), &p.uuid, "ovsport").to_string()
        );

        let db = db_after(7);
        let mut p = db.ports().find(|p| p.name == "capv1h").unwrap();
        assert_eq!(
            port_metadata(&p, &host_tid())["Ovs"],
            json!({"OtherConfig": {"foo": "bar"}})
        );
        p.tag = None;
        assert_eq!(port_metadata(&p, &host_tid())["Vlans"], json!([10, 20]));
    }

    #[test]
    fn interface_rows_to_facts() {
        let db = db_after(0);
        let veth = db.interfaces().find(|i| i.name == "capv1h").unwrap();
        let f = interface_facts(&veth);
        assert_eq!(f.kind, None);
        assert_eq!(f.driver, "veth");
        assert_eq!(f.ifindex, Some(8));
        assert_eq!(f.mac.as_deref(), Some("b6:16:98:2f:34:6a"));
        assert_eq!(
            Value::Object(f.owned),
            json!({"UUID": veth.uuid, "OfPort": 1, "Ovs": {"Options": {}, "OtherConfig": {}}})
        );

        // Just added: vswitchd has not opened it yet.
        let db = db_after(1);
        let int0 = db.interfaces().find(|i| i.name == "capint0").unwrap();
        let f = interface_facts(&int0);
        assert_eq!(f.kind.as_deref(), Some("internal"));
        assert_eq!(f.driver, "openvswitch");
        assert_eq!((f.ifindex, f.mac), (None, None));
        assert!(!f.owned.contains_key("OfPort"));

        let db = db_after(10);
        let pa = db.interfaces().find(|i| i.name == "cappa").unwrap();
        let f = interface_facts(&pa);
        assert_eq!(f.kind.as_deref(), Some("patch"));
        assert_eq!(f.ifindex, None, "patch ports report ifindex 0");
        assert_eq!(
            f.owned["Ovs"],
            json!({"Options": {"peer": "cappb"}, "OtherConfig": {},
                   "Error": "No usable peer 'cappb' exists in 'netdev' datapath."})
        );
    }

    #[test]
    fn tunnel_interfaces_carry_endpoints() {
        let row = InterfaceRow::decode(
            "u",
            json!({"name": "vx0", "type": "vxlan",
                   "options": ["map", [["remote_ip", "192.0.2.2"], ["local_ip", "192.0.2.1"]]],
                   "status": ["map", [["tunnel_egress_iface", "eth0"], ["tunnel_egress_iface_carrier", "up"]]]})
            .as_object()
            .unwrap(),
        );
        let f = interface_facts(&row);
        assert_eq!(f.owned["RemoteIP"], "192.0.2.2");
        assert_eq!(f.owned["LocalIP"], "192.0.2.1");
        assert_eq!(f.owned["TunEgressIface"], "eth0");
        assert_eq!(f.owned["TunEgressIfaceCarrier"], "up");
    }

    #[test]
    fn root_row_to_host_metadata() {
        let row = OpenVswitchRow::decode(
            "u",
            json!({"ovs_version": "3.1.0", "db_version": "8.3.1",
                   "external_ids": ["map", [["system-id", "abc"]]], "other_config": ["map", []]})
            .as_object()
            .unwrap(),
        );
        assert_eq!(
            host_ovs_metadata(&row),
            json!({"Version": "3.1.0", "DBVersion": "8.3.1", "OtherConfig": {}, "ExtID": {"system-id": "abc"}})
        );
        let empty = db_after(0).open_vswitch().unwrap();
        assert_eq!(host_ovs_metadata(&empty), json!({"OtherConfig": {}}));
    }
}
