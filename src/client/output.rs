//! `-o table` and `-o wide`: API answers as columns chosen by what they hold, as
//! kubectl prints them.
//!
//! A Gremlin answer is a list that may mix kinds: interfaces, other nodes, edges, flows,
//! maps (`ValueMap`) and values (`Values`). Each kind gets its own table, in the order it
//! first appears, one blank line apart. Names that need the graph around the answer (an
//! interface's namespace, an edge's ends, a flow's capture interface) come from a
//! [`TableContext`], gathered by the client with a few narrow queries before printing.

use std::collections::{BTreeSet, HashMap};

use serde_json::{Map, Value};
use topotap_topology::schema::{self, key, node_type};

/// How much to show.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Detail {
    Table,
    Wide,
}

/// What an empty cell shows.
const NONE: &str = "-";

/// Where an interface lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Namespace {
    /// The named network namespace.
    Named(String),
    /// The host's own (root) namespace.
    Root,
}

/// The graph around an answer: nodes it refers to, by ID, and the namespace of each
/// interface among them.
#[derive(Clone, Debug, Default)]
pub struct TableContext {
    /// Nodes by ID (the answer's own and those its edges and flows refer to).
    pub nodes: HashMap<String, Value>,
    /// Interface node ID -> its namespace.
    pub namespaces: HashMap<String, Namespace>,
    /// Capture point TID -> node ID.
    pub tids: HashMap<String, String>,
    /// Now, in ms since the epoch (flow ages).
    pub now_ms: i64,
}

impl TableContext {
    /// How a node is named in a table: `ns/eth0` for an interface inside a named
    /// namespace, its name otherwise, its ID when it is not known.
    pub fn label(&self, id: &str) -> String {
        let Some(node) = self.nodes.get(id) else {
            return id.to_owned();
        };
        let name = meta_str(node, key::NAME).unwrap_or(id);
        match self.namespaces.get(id) {
            Some(Namespace::Named(ns)) => format!("{ns}/{name}"),
            _ => name.to_owned(),
        }
    }
}

/// The kinds of rows an answer holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    Interface,
    Node,
    Edge,
    Flow,
    /// Any other object (`ValueMap`, resources): a column per key.
    Map,
    /// A value (`Values`, `Count`): one per line.
    Value,
}

/// Whether a node is a kernel network interface (not a host, namespace or OVS object).
pub fn is_interface(node: &Value) -> bool {
    let md = &node["Metadata"];
    let ty = md[key::TYPE].as_str().unwrap_or_default();
    md.get(key::IF_INDEX).is_some_and(Value::is_i64) && !schema::NOT_INTERFACES.contains(&ty)
}

fn is_node(v: &Map<String, Value>) -> bool {
    v.contains_key("ID") && v.contains_key("Metadata") && !v.contains_key("Parent")
}

fn is_edge(v: &Map<String, Value>) -> bool {
    v.contains_key("ID") && v.contains_key("Parent") && v.contains_key("Child")
}

fn is_flow(v: &Map<String, Value>) -> bool {
    v.contains_key("UUID") && v.contains_key("Metric") && v.contains_key("TrackingID")
}

/// A graph (`SubGraph()`, `GET /api/topology`): its nodes and edges.
fn as_graph(v: &Map<String, Value>) -> Option<(&[Value], &[Value])> {
    if v.len() > 2 || !(v.contains_key("Nodes") || v.contains_key("Edges")) {
        return None;
    }
    let list = |k: &str| match v.get(k) {
        Some(Value::Array(a)) => Some(a.as_slice()),
        None | Some(Value::Null) => Some(&[][..]),
        Some(_) => None,
    };
    Some((list("Nodes")?, list("Edges")?))
}

pub fn kind_of(v: &Value) -> Kind {
    match v {
        Value::Object(m) if is_edge(m) => Kind::Edge,
        Value::Object(m) if is_node(m) && is_interface(v) => Kind::Interface,
        Value::Object(m) if is_node(m) => Kind::Node,
        Value::Object(m) if is_flow(m) => Kind::Flow,
        Value::Object(_) => Kind::Map,
        _ => Kind::Value,
    }
}

/// The rows of an answer: a list's items, a graph's nodes then edges (also inside a
/// list), or the answer itself.
pub fn rows(answer: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    fn add<'a>(v: &'a Value, out: &mut Vec<&'a Value>) {
        if let Some((nodes, edges)) = v.as_object().and_then(as_graph) {
            out.extend(nodes.iter().chain(edges));
        } else {
            out.push(v);
        }
    }
    match answer {
        Value::Array(items) => items.iter().for_each(|v| add(v, &mut out)),
        other => add(other, &mut out),
    }
    out
}

/// The IDs of the nodes an answer refers to without holding them (edge ends), and the
/// TIDs of its flows' capture points.
pub fn references(rows: &[&Value]) -> (BTreeSet<String>, BTreeSet<String>) {
    let mut ids = BTreeSet::new();
    let mut tids = BTreeSet::new();
    for r in rows {
        match kind_of(r) {
            Kind::Edge => {
                for end in ["Parent", "Child"] {
                    if let Some(id) = r[end].as_str() {
                        ids.insert(id.to_owned());
                    }
                }
            }
            Kind::Flow => {
                if let Some(t) = r["NodeTID"].as_str().filter(|t| !t.is_empty()) {
                    tids.insert(t.to_owned());
                }
            }
            _ => {}
        }
    }
    (ids, tids)
}

/// Renders an answer as tables, one per kind of row.
pub fn render(answer: &Value, detail: Detail, ctx: &TableContext) -> String {
    let rows = rows(answer);
    let mut order: Vec<Kind> = Vec::new();
    let mut groups: HashMap<Kind, Vec<&Value>> = HashMap::new();
    for r in rows {
        let k = kind_of(r);
        if !order.contains(&k) {
            order.push(k);
        }
        groups.entry(k).or_default().push(r);
    }
    let tables: Vec<String> = order
        .iter()
        .map(|k| {
            let rows = &groups[k];
            match k {
                Kind::Interface => interfaces(rows, detail, ctx),
                Kind::Node => nodes(rows, detail),
                Kind::Edge => edges(rows, detail, ctx),
                Kind::Flow => flows(rows, detail, ctx),
                Kind::Map => maps(rows),
                Kind::Value => rows.iter().map(|v| cell(v) + "\n").collect(),
            }
        })
        .collect();
    tables.join("\n")
}

fn meta_str<'a>(node: &'a Value, k: &str) -> Option<&'a str> {
    node["Metadata"][k].as_str()
}

/// A cell: strings as they are, lists joined with commas, nothing as `-`.
pub fn cell(v: &Value) -> String {
    match v {
        Value::Null => NONE.to_owned(),
        Value::String(s) if s.is_empty() => NONE.to_owned(),
        Value::String(s) => s.clone(),
        Value::Array(items) if items.is_empty() => NONE.to_owned(),
        Value::Array(items) => items.iter().map(cell).collect::<Vec<_>>().join(","),
        other => other.to_string(),
    }
}

fn interfaces(rows: &[&Value], detail: Detail, ctx: &TableContext) -> String {
    let mut header = vec!["NAMESPACE", "NAME", "TYPE", "STATE", "MAC", "ADDRESSES"];
    if detail == Detail::Wide {
        header.extend(["MTU", "DRIVER", "HOST", "ID"]);
    }
    let cells = rows
        .iter()
        .map(|n| {
            let md = &n["Metadata"];
            let id = n["ID"].as_str().unwrap_or_default();
            let ns = match ctx.namespaces.get(id) {
                Some(Namespace::Named(ns)) => ns.clone(),
                Some(Namespace::Root) => "(root)".to_owned(),
                None => NONE.to_owned(),
            };
            let addresses: Vec<Value> = [&md["IPV4"], &md["IPV6"]]
                .into_iter()
                .filter_map(Value::as_array)
                .flatten()
                .cloned()
                .collect();
            let mut row = vec![
                ns,
                cell(&md[key::NAME]),
                cell(&md[key::TYPE]),
                cell(&md["State"]),
                cell(&md[key::MAC]),
                cell(&Value::Array(addresses)),
            ];
            if detail == Detail::Wide {
                row.extend([
                    cell(&md["MTU"]),
                    cell(&md[key::DRIVER]),
                    cell(&n["Host"]),
                    id.to_owned(),
                ]);
            }
            row
        })
        .collect::<Vec<_>>();
    aligned(&header, &cells)
}

fn nodes(rows: &[&Value], detail: Detail) -> String {
    let mut header = vec!["NAME", "TYPE", "HOST"];
    if detail == Detail::Wide {
        header.extend(["PATH", "ID"]);
    }
    let cells = rows
        .iter()
        .map(|n| {
            let md = &n["Metadata"];
            let mut row = vec![cell(&md[key::NAME]), cell(&md[key::TYPE]), cell(&n["Host"])];
            if detail == Detail::Wide {
                row.extend([cell(&md[key::PATH]), cell(&n["ID"])]);
            }
            row
        })
        .collect::<Vec<_>>();
    aligned(&header, &cells)
}

fn edges(rows: &[&Value], detail: Detail, ctx: &TableContext) -> String {
    let mut header = vec!["PARENT", "CHILD", "RELATION"];
    if detail == Detail::Wide {
        header.extend([
            "PARENT TYPE",
            "CHILD TYPE",
            "HOST",
            "ID",
            "PARENT ID",
            "CHILD ID",
        ]);
    }
    let type_of = |id: &str| {
        ctx.nodes
            .get(id)
            .and_then(|n| meta_str(n, key::TYPE))
            .unwrap_or(NONE)
            .to_owned()
    };
    let cells = rows
        .iter()
        .map(|e| {
            let parent = e["Parent"].as_str().unwrap_or_default();
            let child = e["Child"].as_str().unwrap_or_default();
            let mut row = vec![
                ctx.label(parent),
                ctx.label(child),
                cell(&e["Metadata"][key::RELATION_TYPE]),
            ];
            if detail == Detail::Wide {
                row.extend([
                    type_of(parent),
                    type_of(child),
                    cell(&e["Host"]),
                    cell(&e["ID"]),
                    parent.to_owned(),
                    child.to_owned(),
                ]);
            }
            row
        })
        .collect::<Vec<_>>();
    aligned(&header, &cells)
}

/// One end of a flow: `10.0.0.1:5000`, `[fd00::1]:53`, `10.0.0.1`, or the MAC address
/// of a flow with no IP layer.
fn endpoint(flow: &Value, side: &str) -> String {
    let ip = flow["Network"][side].as_str().filter(|s| !s.is_empty());
    let port = &flow["Transport"][side];
    match ip {
        Some(ip) => {
            let port = match port {
                Value::Number(n) => Some(n.to_string()),
                Value::String(s) if !s.is_empty() => Some(s.clone()),
                _ => None,
            };
            match port {
                Some(p) if ip.contains(':') => format!("[{ip}]:{p}"),
                Some(p) => format!("{ip}:{p}"),
                None => ip.to_owned(),
            }
        }
        None => cell(&flow["Link"][side]),
    }
}

/// A duration as kubectl shows ages: `42s`, `5m12s`, `3h4m`, `2d3h`.
pub fn age(ms: i64) -> String {
    let s = ms.max(0) / 1000;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{}s", s / 60, s % 60),
        3600..=86_399 => format!("{}h{}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d{}h", s / 86_400, s % 86_400 / 3600),
    }
}

fn flows(rows: &[&Value], detail: Detail, ctx: &TableContext) -> String {
    let mut header = vec![
        "PROTOCOL",
        "A",
        "B",
        "A→B PACKETS",
        "A→B BYTES",
        "B→A PACKETS",
        "B→A BYTES",
        "AGE",
        "LAST SEEN",
        "INTERFACE",
    ];
    if detail == Detail::Wide {
        header.extend(["UUID", "TRACKING ID", "CAPTURE ID", "NODE TID"]);
    }
    let when = |v: &Value| match v.as_i64() {
        Some(ms) if ms > 0 => age(ctx.now_ms - ms),
        _ => NONE.to_owned(),
    };
    let cells = rows
        .iter()
        .map(|f| {
            let m = &f["Metric"];
            let protocol = [
                &f["Application"],
                &f["Transport"]["Protocol"],
                &f["Network"]["Protocol"],
                &f["Link"]["Protocol"],
            ]
            .into_iter()
            .find_map(|v| v.as_str().filter(|s| !s.is_empty()))
            .unwrap_or(NONE);
            let tid = f["NodeTID"].as_str().unwrap_or_default();
            let interface = match ctx.tids.get(tid) {
                Some(id) => ctx.label(id),
                None if tid.is_empty() => NONE.to_owned(),
                None => tid.to_owned(),
            };
            let count = |k: &str| match &m[k] {
                Value::Number(n) => n.to_string(),
                _ => "0".to_owned(),
            };
            let mut row = vec![
                protocol.to_owned(),
                endpoint(f, "A"),
                endpoint(f, "B"),
                count("ABPackets"),
                count("ABBytes"),
                count("BAPackets"),
                count("BABytes"),
                when(&f["Start"]),
                when(&f["Last"]),
                interface,
            ];
            if detail == Detail::Wide {
                row.extend([
                    cell(&f["UUID"]),
                    cell(&f["TrackingID"]),
                    cell(&f["CaptureID"]),
                    cell(&f["NodeTID"]),
                ]);
            }
            row
        })
        .collect::<Vec<_>>();
    aligned(&header, &cells)
}

/// Objects with a column per key (in order of first appearance); lists are joined.
fn maps(rows: &[&Value]) -> String {
    let mut columns: Vec<&str> = Vec::new();
    for r in rows {
        for k in r.as_object().into_iter().flat_map(Map::keys) {
            if !columns.contains(&k.as_str()) {
                columns.push(k);
            }
        }
    }
    // A resource's key first, whatever the JSON key order.
    if let Some(i) = columns.iter().position(|c| *c == "UUID") {
        let k = columns.remove(i);
        columns.insert(0, k);
    }
    let cells = rows
        .iter()
        .map(|r| columns.iter().map(|c| cell(&r[*c])).collect())
        .collect::<Vec<Vec<String>>>();
    aligned(&columns, &cells)
}

/// Columns padded to their widest cell, two spaces apart, without trailing blanks.
pub fn aligned<H: AsRef<str>>(header: &[H], cells: &[Vec<String>]) -> String {
    let widths: Vec<usize> = (0..header.len())
        .map(|i| {
            cells
                .iter()
                .map(|r| r[i].chars().count())
                .chain([header[i].as_ref().chars().count()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    let header: Vec<String> = header.iter().map(|h| h.as_ref().to_owned()).collect();
    for row in std::iter::once(header.as_slice()).chain(cells.iter().map(Vec::as_slice)) {
        let parts: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(v, w)| format!("{v:<w$}"))
            .collect();
        out.push_str(parts.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// The namespace of an interface, from the parent of its ownership edge.
pub fn namespace_of_owner(owner: &Value) -> Namespace {
    match meta_str(owner, key::TYPE) {
        Some(node_type::NETNS) => {
            Namespace::Named(meta_str(owner, key::NAME).unwrap_or(NONE).to_owned())
        }
        _ => Namespace::Root,
    }
}

/// `topotap client status`: the status as aligned `Key: value` lines, with the captures
/// and injections (when they could be listed) counted by state.
pub fn status(status: &Value, captures: Option<&Value>, injections: Option<&Value>) -> String {
    let mut lines: Vec<(String, String)> = Vec::new();
    let mut line = |k: &str, v: String| lines.push((k.to_owned(), v));
    line("Version", cell(&status["Version"]));
    if let Some(host) = status["Host"].as_str() {
        line("Host", host.to_owned());
    }
    if let Some(up) = status["UptimeSeconds"].as_i64() {
        line("Uptime", age(up.saturating_mul(1000)));
    }
    let topo = &status["Topology"];
    if let (Some(nodes), Some(edges)) = (topo["Nodes"].as_u64(), topo["Edges"].as_u64()) {
        let mut topology = format!("{nodes} nodes, {edges} edges");
        let summary = &status["Probes"]["Summary"];
        if let (Some(ns), Some(ifs)) = (
            summary["Namespaces"].as_u64(),
            summary["Interfaces"].as_u64(),
        ) {
            topology += &format!(" ({ns} namespaces, {ifs} interfaces seen by the probes)");
        }
        line("Topology", topology);
    }

    if let Some(Value::Object(all)) = captures {
        let (mut active, mut idle, mut failing) = (0, 0, 0);
        for c in all.values() {
            if c["Error"].as_str().is_some_and(|e| !e.is_empty()) {
                failing += 1;
            } else if c["Count"].as_u64().unwrap_or(0) > 0 {
                active += 1;
            } else {
                idle += 1;
            }
        }
        line(
            "Captures",
            if all.is_empty() {
                "none".to_owned()
            } else {
                format!(
                    "{} ({active} active, {idle} on no interface, {failing} with an error)",
                    all.len()
                )
            },
        );
    }
    if let Some(e) = status["Captures"]["Error"].as_str() {
        line("Capture store", format!("error: {e}"));
    }
    if let Some(Value::Object(all)) = injections {
        let mut states: std::collections::BTreeMap<String, usize> = Default::default();
        for i in all.values() {
            *states.entry(cell(&i["State"])).or_default() += 1;
        }
        let by_state: Vec<String> = states.iter().map(|(s, n)| format!("{n} {s}")).collect();
        let text = if by_state.is_empty() {
            "none".to_owned()
        } else {
            format!("{} ({})", all.len(), by_state.join(", "))
        };
        line("Injections", text);
    }
    let subscribers = match &status["Subscribers"] {
        Value::Object(m) => m.values().map(|v| v.as_array().map_or(1, Vec::len)).sum(),
        _ => 0,
    };
    line("Subscribers", format!("{subscribers} WebSocket"));
    let budget = &status["QueryBudget"];
    if let (Some(elements), Some(bytes), Some(ms)) = (
        budget["MaxResultElements"].as_u64(),
        budget["MaxResultBytes"].as_u64(),
        budget["QueryTimeoutMs"].as_u64(),
    ) {
        line(
            "Query budget",
            format!(
                "{elements} elements and {} per answer, {} per query",
                human_bytes(bytes),
                duration_ms(ms)
            ),
        );
    }
    let mut probes: Vec<String> = Vec::new();
    if let Value::Object(m) = &status["Probes"] {
        for (name, p) in m.iter().filter(|(k, _)| *k != "Summary") {
            let mut text = format!("{name} {}", cell(&p["State"]));
            let errors = p["Errors"].as_u64().unwrap_or(0);
            if errors > 0 {
                text += &format!(
                    " ({errors} error{}, last: {})",
                    if errors == 1 { "" } else { "s" },
                    cell(&p["LastError"])
                );
            } else if p["State"] == "Error" {
                if let Some(e) = p["LastError"].as_str() {
                    text += &format!(" ({e})");
                }
            }
            probes.push(text);
        }
    }
    if probes.is_empty() {
        probes.push("none (started with --no-probes)".to_owned());
    }
    let width = lines
        .iter()
        .map(|(k, _)| k.len())
        .chain(["Probes".len()])
        .max()
        .unwrap_or(0)
        + 1;
    let mut out = String::new();
    for (k, v) in &lines {
        out += &format!("{:<width$} {v}\n", format!("{k}:"));
    }
    for (i, p) in probes.iter().enumerate() {
        let k = if i == 0 { "Probes:" } else { "" };
        out += &format!("{k:<width$} {p}\n");
    }
    out
}

/// `64 MiB`, `512 KiB`, `100 bytes`: exact when it is a whole number of the unit.
fn human_bytes(b: u64) -> String {
    for (unit, size) in [("GiB", 1u64 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)] {
        if b >= size && b % size == 0 {
            return format!("{} {unit}", b / size);
        }
    }
    if b == u64::MAX || b >= (1 << 62) {
        return "unlimited".to_owned();
    }
    format!("{b} bytes")
}

/// `10s`, `500ms`, `2m`.
fn duration_ms(ms: u64) -> String {
    if ms % 60_000 == 0 && ms > 0 {
        format!("{}m", ms / 60_000)
    } else if ms % 1000 == 0 {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn veth(id: &str, name: &str) -> Value {
        json!({"ID": id, "Host": "h1", "Metadata": {
            "Name": name, "Type": "veth", "IfIndex": 4, "State": "UP", "MTU": 1500,
            "MAC": "02:00:00:00:00:01", "IPV4": ["10.0.0.1/24"], "IPV6": ["fd00::1/64"],
            "Driver": "veth"}})
    }

    fn ctx() -> TableContext {
        let mut c = TableContext {
            now_ms: 1_000_000,
            ..TableContext::default()
        };
        c.nodes.insert("i1".into(), veth("i1", "eth0"));
        c.nodes.insert(
            "ns1".into(),
            json!({"ID": "ns1", "Metadata": {"Name": "vm1", "Type": "netns"}}),
        );
        c.namespaces
            .insert("i1".into(), Namespace::Named("vm1".into()));
        c.tids.insert("t1".into(), "i1".into());
        c
    }

    #[test]
    fn interfaces_show_namespace_state_and_every_address() {
        let answer = json!([veth("i1", "eth0"), veth("i2", "lo")]);
        let mut c = ctx();
        c.namespaces.insert("i2".into(), Namespace::Root);
        assert_eq!(
            render(&answer, Detail::Table, &c),
            "NAMESPACE  NAME  TYPE  STATE  MAC                ADDRESSES\n\
             vm1        eth0  veth  UP     02:00:00:00:00:01  10.0.0.1/24,fd00::1/64\n\
             (root)     lo    veth  UP     02:00:00:00:00:01  10.0.0.1/24,fd00::1/64\n"
        );
        let wide = render(&answer, Detail::Wide, &c);
        let header: Vec<&str> = wide.lines().next().unwrap().split_whitespace().collect();
        assert_eq!(
            header,
            [
                "NAMESPACE",
                "NAME",
                "TYPE",
                "STATE",
                "MAC",
                "ADDRESSES",
                "MTU",
                "DRIVER",
                "HOST",
                "ID"
            ]
        );
        assert_eq!(
            wide.lines()
                .nth(1)
                .unwrap()
                .split_whitespace()
                .collect::<Vec<_>>()[6..],
            ["1500", "veth", "h1", "i1"]
        );
    }

    #[test]
    fn each_kind_gets_its_own_table() {
        let answer = json!([
            {"ID": "ns1", "Host": "h1", "Metadata": {"Name": "vm1", "Type": "netns"}},
            veth("i1", "eth0"),
            {"ID": "e1", "Parent": "ns1", "Child": "i1", "Host": "h1",
             "Metadata": {"RelationType": "ownership"}},
        ]);
        let out = render(&answer, Detail::Table, &ctx());
        let tables: Vec<&str> = out.split("\n\n").collect();
        assert_eq!(tables.len(), 3, "{out}");
        assert_eq!(tables[0], "NAME  TYPE   HOST\nvm1   netns  h1");
        assert!(tables[1].starts_with("NAMESPACE"), "{out}");
        assert_eq!(
            tables[2],
            "PARENT  CHILD     RELATION\nvm1     vm1/eth0  ownership\n"
        );
    }

    #[test]
    fn edges_name_their_ends_and_wide_adds_ids() {
        let answer = json!([{"ID": "e1", "Parent": "ns1", "Child": "gone", "Host": "h1",
                             "Metadata": {"RelationType": "ownership"}}]);
        let out = render(&answer, Detail::Wide, &ctx());
        assert_eq!(
            out.lines()
                .nth(1)
                .unwrap()
                .split_whitespace()
                .collect::<Vec<_>>(),
            [
                "vm1",
                "gone",
                "ownership",
                "netns",
                "-",
                "h1",
                "e1",
                "ns1",
                "gone"
            ]
        );
    }

    #[test]
    fn flows_show_endpoints_counters_ages_and_interface() {
        let flow = json!({
            "UUID": "f1", "TrackingID": "tr1", "CaptureID": "c1", "NodeTID": "t1",
            "LayersPath": "Ethernet/IPv4/UDP", "Application": "UDP",
            "Link": {"Protocol": "ETHERNET", "A": "02:00:00:00:00:01", "B": "02:00:00:00:00:02"},
            "Network": {"Protocol": "IPV4", "A": "10.0.0.1", "B": "10.0.0.2"},
            "Transport": {"Protocol": "UDP", "A": 5000, "B": 53},
            "Metric": {"ABPackets": 3, "ABBytes": 300, "BAPackets": 1, "BABytes": 80},
            "Start": 1_000_000 - 125_000, "Last": 1_000_000 - 2_000,
        });
        let v6 = json!({
            "UUID": "f2", "TrackingID": "tr2", "Application": "ICMPv6",
            "Network": {"Protocol": "IPV6", "A": "fd00::1", "B": "fd00::2"},
            "Metric": {"ABPackets": 1, "ABBytes": 70},
            "Start": 0, "Last": 0,
        });
        let out = render(&json!([flow, v6]), Detail::Table, &ctx());
        let lines: Vec<Vec<&str>> = out
            .lines()
            .map(|l| {
                l.split("  ")
                    .filter(|c| !c.is_empty())
                    .map(str::trim)
                    .collect()
            })
            .collect();
        assert_eq!(
            lines[0],
            [
                "PROTOCOL",
                "A",
                "B",
                "A→B PACKETS",
                "A→B BYTES",
                "B→A PACKETS",
                "B→A BYTES",
                "AGE",
                "LAST SEEN",
                "INTERFACE"
            ]
        );
        assert_eq!(
            lines[1],
            [
                "UDP",
                "10.0.0.1:5000",
                "10.0.0.2:53",
                "3",
                "300",
                "1",
                "80",
                "2m5s",
                "2s",
                "vm1/eth0"
            ]
        );
        assert_eq!(
            lines[2],
            ["ICMPv6", "fd00::1", "fd00::2", "1", "70", "0", "0", "-", "-", "-"]
        );
        let wide = render(&json!([flow]), Detail::Wide, &ctx());
        assert!(
            wide.lines()
                .nth(1)
                .unwrap()
                .ends_with("f1    tr1          c1          t1"),
            "{wide}"
        );
        let mut v6port = v6.clone();
        v6port["Transport"] = json!({"A": 1, "B": 2});
        assert_eq!(endpoint(&v6port, "A"), "[fd00::1]:1");
    }

    #[test]
    fn value_maps_and_values_keep_lists() {
        let answer = json!([{"Name": ["eth0"], "IPV4": ["10.0.0.1/24", "10.0.1.1/24"]},
                            {"Name": ["lo"]}]);
        // A column per key, whatever order the keys come in.
        let out = render(&answer, Detail::Table, &ctx());
        let rows: Vec<Vec<&str>> = out
            .lines()
            .map(|l| l.split_whitespace().collect())
            .collect();
        let ipv4 = rows[0].iter().position(|c| *c == "IPV4").unwrap();
        let name = rows[0].iter().position(|c| *c == "Name").unwrap();
        assert_eq!(
            (rows[1][name], rows[1][ipv4]),
            ("eth0", "10.0.0.1/24,10.0.1.1/24")
        );
        assert_eq!((rows[2][name], rows[2][ipv4]), ("lo", "-"));
        let values = json!(["eth0", ["10.0.0.1/24", "10.0.1.1/24"], 3]);
        assert_eq!(
            render(&values, Detail::Table, &ctx()),
            "eth0\n10.0.0.1/24,10.0.1.1/24\n3\n"
        );
        assert_eq!(render(&json!(7), Detail::Table, &ctx()), "7\n");
    }

    #[test]
    fn graphs_are_their_nodes_then_their_edges() {
        let answer = json!([{"Nodes": [veth("i1", "eth0")], "Edges": []}]);
        let out = render(&answer, Detail::Table, &ctx());
        assert!(
            out.starts_with("NAMESPACE") && out.lines().count() == 2,
            "{out}"
        );
    }

    #[test]
    fn ages_read_like_kubectl() {
        assert_eq!(age(-5), "0s");
        assert_eq!(age(59_999), "59s");
        assert_eq!(age(61_000), "1m1s");
        assert_eq!(age(3_600_000 * 5 + 60_000 * 7), "5h7m");
        assert_eq!(age(86_400_000 * 2 + 3_600_000), "2d1h");
    }

    #[test]
    fn status_is_a_summary() {
        let status = json!({
            "Version": "0.1.0", "Host": "h1", "UptimeSeconds": 3725,
            "Topology": {"Nodes": 12, "Edges": 11},
            "Captures": {"IsMaster": true},
            "Subscribers": {"ui": ["a", "b"]},
            "QueryBudget": {"MaxResultElements": 5000000, "MaxResultBytes": 67108864,
                            "QueryTimeoutMs": 10000},
            "Probes": {"netlink": {"State": "Running", "Errors": 0},
                       "ovsdb": {"State": "Error", "Errors": 2, "LastError": "refused"},
                       "Summary": {"Namespaces": 3, "Interfaces": 9}},
        });
        let captures = json!({"c1": {"Count": 2}, "c2": {"Count": 0}, "c3": {"Error": "x"}});
        let injections = json!({"i1": {"State": "done"}, "i2": {"State": "done"},
                                "i3": {"State": "running"}});
        assert_eq!(
            super::status(&status, Some(&captures), Some(&injections)),
            "Version:      0.1.0\n\
             Host:         h1\n\
             Uptime:       1h2m\n\
             Topology:     12 nodes, 11 edges (3 namespaces, 9 interfaces seen by the probes)\n\
             Captures:     3 (1 active, 1 on no interface, 1 with an error)\n\
             Injections:   3 (2 done, 1 running)\n\
             Subscribers:  2 WebSocket\n\
             Query budget: 5000000 elements and 64 MiB per answer, 10s per query\n\
             Probes:       netlink Running\n\
             \x20             ovsdb Error (2 errors, last: refused)\n"
        );
        let bare = super::status(&json!({"Version": "0.1.0"}), None, None);
        assert_eq!(
            bare,
            "Version:     0.1.0\nSubscribers: 0 WebSocket\nProbes:      none (started with --no-probes)\n"
        );
    }
}
