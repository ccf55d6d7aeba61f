//! `topotap client`: the API from the command line.
//!
//! Prints the API's JSON (pretty) or a table; a 4xx/5xx answer or an unreachable server
//! is an error with the server's one-line reason and a non-zero exit.

use anyhow::{anyhow, bail, Context};
use reqwest::{Method, StatusCode};
use serde_json::{json, Map, Value};

use crate::cli::{
    CaptureCommand, CaptureCreateArgs, ClientArgs, ClientCommand, Format, InjectionCommand,
    InjectionCreateArgs, PcapArgs, TopologyCommand,
};
use crate::injection::forge::base64_encode;
use crate::resources::parse_go_duration;

pub async fn run(args: ClientArgs) -> anyhow::Result<()> {
    let mut api = Api::new(
        &args.analyzer,
        &TlsOptions {
            cacert: args.cacert.clone(),
            insecure: args.insecure,
        },
    )?;
    match (&args.username, &args.password) {
        (Some(user), Some(password)) => api.login(user, password).await?,
        (Some(_), None) => bail!("--username needs --password (or TOPOTAP_PASSWORD)"),
        (None, Some(_)) => bail!("--password needs --username (or TOPOTAP_USERNAME)"),
        (None, None) => {}
    }
    let (value, columns): (Value, Option<&[&str]>) = match &args.command {
        ClientCommand::Status => (api.call(Method::GET, "/api/status", None).await?, None),
        ClientCommand::Topology { command } => match command {
            TopologyCommand::Query { gremlin } => (
                api.call(
                    Method::POST,
                    "/api/topology",
                    Some(json!({ "GremlinQuery": gremlin })),
                )
                .await?,
                None,
            ),
            TopologyCommand::Export => (api.call(Method::GET, "/api/topology", None).await?, None),
        },
        ClientCommand::Capture { command } => {
            let v = match command {
                CaptureCommand::Create(a) => {
                    let ttl = a.ttl.as_deref().map(ttl_header).transpose()?.flatten();
                    api.create("/api/capture", capture_body(a), ttl).await?
                }
                CaptureCommand::List => api.call(Method::GET, "/api/capture", None).await?,
                CaptureCommand::Get { id } => {
                    api.call(Method::GET, &format!("/api/capture/{id}"), None)
                        .await?
                }
                CaptureCommand::Delete { ids } => api.delete_all("/api/capture", ids).await?,
            };
            (v, Some(CAPTURE_COLUMNS))
        }
        ClientCommand::Pcap(a) => {
            let body = std::fs::read(&a.file)
                .with_context(|| format!("cannot read {}", a.file.display()))?;
            (api.post_bytes(&pcap_path(a), body).await?, None)
        }
        ClientCommand::Injection { command } => {
            let v = match command {
                InjectionCommand::Create(a) => {
                    let (body, ttl) = injection_body(a)?;
                    api.create("/api/injectpacket", body, ttl).await?
                }
                InjectionCommand::List => api.call(Method::GET, "/api/injectpacket", None).await?,
                InjectionCommand::Get { id } => {
                    api.call(Method::GET, &format!("/api/injectpacket/{id}"), None)
                        .await?
                }
                InjectionCommand::Delete { ids } => {
                    api.delete_all("/api/injectpacket", ids).await?
                }
            };
            (v, Some(INJECTION_COLUMNS))
        }
    };
    match (args.format, columns) {
        (_, _) if value.is_null() => {}
        (Format::Table, Some(cols)) => print!("{}", table_columns(&value, cols)),
        (format, _) => print(&value, format),
    }
    Ok(())
}

/// Columns of `capture list --format table`.
const CAPTURE_COLUMNS: &[&str] = &[
    "UUID",
    "Name",
    "GremlinQuery",
    "TargetType",
    "Target",
    "Count",
];

/// Columns of `injection list --format table`.
const INJECTION_COLUMNS: &[&str] = &[
    "UUID",
    "Type",
    "Src",
    "Dst",
    "SrcIP",
    "DstIP",
    "Count",
    "Interval",
    "State",
    "PacketCount",
];

/// The capture to create: only the options given, the server fills the rest.
fn capture_body(a: &CaptureCreateArgs) -> Value {
    let mut m = Map::new();
    let gremlin = match (&a.gremlin, &a.node) {
        (Some(g), _) => g.clone(),
        (None, Some(tid)) => format!("G.V().Has('TID', '{tid}')"),
        (None, None) => String::new(),
    };
    m.insert("GremlinQuery".into(), gremlin.into());
    let strings = [
        ("BPFFilter", &a.bpf),
        ("Type", &a.capture_type),
        ("Target", &a.target),
        ("TargetType", &a.target_type),
        ("Name", &a.name),
        ("Description", &a.description),
        ("LayerKeyMode", &a.layer_key_mode),
    ];
    for (key, v) in strings {
        if let Some(v) = v {
            m.insert(key.into(), v.clone().into());
        }
    }
    if let Some(v) = a.header_size {
        m.insert("HeaderSize".into(), v.into());
    }
    if let Some(v) = a.sampling_rate {
        m.insert("SamplingRate".into(), v.into());
    }
    if let Some(v) = a.polling_interval {
        m.insert("PollingInterval".into(), v.into());
    }
    if let Some(v) = a.raw_packet_limit {
        m.insert("RawPacketLimit".into(), v.into());
    }
    for (key, set) in [
        ("ExtraTCPMetric", a.extra_tcp_metric),
        ("IPDefrag", a.ip_defrag),
        ("ReassembleTCP", a.reassemble_tcp),
    ] {
        if set {
            m.insert(key.into(), true.into());
        }
    }
    Value::Object(m)
}

/// The injection to create and its `X-Resource-TTL`.
fn injection_body(a: &InjectionCreateArgs) -> anyhow::Result<(Value, Option<String>)> {
    let mut m = Map::new();
    m.insert("Src".into(), a.src.clone().into());
    let strings = [
        ("Dst", &a.dst),
        ("SrcIP", &a.src_ip),
        ("DstIP", &a.dst_ip),
        ("SrcMAC", &a.src_mac),
        ("DstMAC", &a.dst_mac),
        ("Payload", &a.payload),
    ];
    for (key, v) in strings {
        if let Some(v) = v {
            m.insert(key.into(), v.clone().into());
        }
    }
    m.insert("Type".into(), a.packet_type.clone().into());
    m.insert("Count".into(), a.count.into());
    m.insert("Interval".into(), a.interval.into());
    m.insert("Mode".into(), a.mode.clone().into());
    m.insert("TTL".into(), a.ttl.into());
    for (key, v) in [
        ("SrcPort", a.src_port),
        ("DstPort", a.dst_port),
        ("ICMPID", a.id),
    ] {
        if let Some(v) = v {
            m.insert(key.into(), v.into());
        }
    }
    if let Some(n) = a.increment {
        m.insert("IncrementPayload".into(), n.into());
    }
    if let Some(path) = &a.pcap {
        let bytes = std::fs::read(path)
            .with_context(|| format!("cannot read the pcap file {}", path.display()))?;
        m.insert("Pcap".into(), base64_encode(&bytes).into());
    }
    let ttl = match &a.resource_ttl {
        Some(t) => ttl_header(t)?,
        // As Skydive's client: as long as the injection takes, plus 5 s.
        None => Some(format!(
            "{}ms",
            a.interval.saturating_mul(a.count).saturating_add(5000)
        )),
    };
    Ok((Value::Object(m), ttl))
}

/// `X-Resource-TTL` from a `--ttl` option: a Go duration (`30s`, `1h30m`) or plain
/// milliseconds; `0` = no TTL.
fn ttl_header(s: &str) -> anyhow::Result<Option<String>> {
    let s = s.trim();
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        let ms: u64 = s.parse().context("invalid --ttl")?;
        return Ok((ms > 0).then(|| format!("{ms}ms")));
    }
    parse_go_duration(s).map_err(|e| anyhow!("invalid --ttl {s:?}: {e}"))?;
    Ok(Some(s.to_owned()))
}

/// How the client checks the server's TLS certificate.
#[derive(Clone, Debug, Default)]
pub struct TlsOptions {
    /// A CA (PEM) trusted on top of the system's.
    pub cacert: Option<std::path::PathBuf>,
    /// Accept any certificate.
    pub insecure: bool,
}

/// A client of one topotap API.
pub struct Api {
    base: String,
    http: reqwest::Client,
    /// The token of `login`, sent as `X-Auth-Token`.
    token: Option<String>,
}

impl Api {
    pub fn new(analyzer: &str, tls: &TlsOptions) -> anyhow::Result<Self> {
        let base = if analyzer.starts_with("http://") || analyzer.starts_with("https://") {
            analyzer.trim_end_matches('/').to_owned()
        } else if tls.cacert.is_some() || tls.insecure {
            format!("https://{}", analyzer.trim_end_matches('/'))
        } else {
            format!("http://{}", analyzer.trim_end_matches('/'))
        };
        let mut builder =
            reqwest::Client::builder().connect_timeout(std::time::Duration::from_secs(5));
        if let Some(path) = &tls.cacert {
            let certs =
                crate::tls::read_certs(path, "the CA (--cacert)").map_err(anyhow::Error::msg)?;
            for c in certs {
                let cert = reqwest::Certificate::from_der(c.as_ref())
                    .with_context(|| format!("the CA (--cacert) {}", path.display()))?;
                builder = builder.add_root_certificate(cert);
            }
        }
        if tls.insecure {
            builder = builder.danger_accept_invalid_certs(true);
        }
        let http = builder.build().context("cannot build the HTTP client")?;
        Ok(Api {
            base,
            http,
            token: None,
        })
    }

    /// Logs in (`POST /login`) and keeps the token for the next requests.
    pub async fn login(&mut self, user: &str, password: &str) -> anyhow::Result<()> {
        let url = format!("{}/login", self.base);
        let req = self
            .http
            .post(&url)
            .form(&[("username", user), ("password", password)]);
        let answer = self
            .send(req, &url)
            .await
            .with_context(|| format!("cannot log in as {user:?}"))?;
        let token = answer
            .get("Token")
            .and_then(Value::as_str)
            .ok_or_else(|| anyhow!("cannot log in as {user:?}: the answer has no Token"))?;
        // An empty token: the server has authentication off.
        self.token = (!token.is_empty()).then(|| token.to_owned());
        Ok(())
    }

    fn request(&self, method: Method, url: &str) -> reqwest::RequestBuilder {
        let req = self.http.request(method, url);
        match &self.token {
            Some(t) => req.header("X-Auth-Token", t),
            None => req,
        }
    }

    /// Sends a request; returns the JSON answer (`null` for an empty body).
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        self.call_with_ttl(method, path, body, None).await
    }

    /// Creates a resource, with an `X-Resource-TTL` header when `ttl` is given.
    pub async fn create(
        &self,
        path: &str,
        body: Value,
        ttl: Option<String>,
    ) -> anyhow::Result<Value> {
        self.call_with_ttl(Method::POST, path, Some(body), ttl)
            .await
    }

    /// Deletes every resource in `ids` under `base`; the error lists each failure.
    pub async fn delete_all(&self, base: &str, ids: &[String]) -> anyhow::Result<Value> {
        let mut failures = Vec::new();
        for id in ids {
            if let Err(e) = self
                .call(Method::DELETE, &format!("{base}/{id}"), None)
                .await
            {
                failures.push(format!("{e:#}"));
            }
        }
        if !failures.is_empty() {
            bail!("{}", failures.join("; "));
        }
        Ok(Value::Null)
    }

    async fn call_with_ttl(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        ttl: Option<String>,
    ) -> anyhow::Result<Value> {
        let url = format!("{}{}", self.base, path);
        let mut req = self.request(method, &url);
        if let Some(t) = ttl {
            req = req.header("X-Resource-TTL", t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        self.send(req, &url).await
    }

    /// Posts raw bytes (a capture file) and returns the JSON answer.
    pub async fn post_bytes(&self, path_and_query: &str, body: Vec<u8>) -> anyhow::Result<Value> {
        let url = format!("{}{}", self.base, path_and_query);
        let req = self
            .request(Method::POST, &url)
            .header("Content-Type", "application/vnd.tcpdump.pcap")
            .body(body);
        self.send(req, &url).await
    }

    async fn send(&self, req: reqwest::RequestBuilder, url: &str) -> anyhow::Result<Value> {
        let resp = req
            .send()
            .await
            .map_err(|e| anyhow!("cannot reach topotap at {}: {}", self.base, root_cause(&e)))?;
        let status = resp.status();
        let text = resp.text().await.context("reading the answer")?;
        if !status.is_success() {
            let reason = text.trim();
            if reason.is_empty() {
                bail!("{status}");
            }
            bail!("{status}: {reason}");
        }
        if status == StatusCode::NO_CONTENT || text.trim().is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(&text).with_context(|| format!("answer from {url} is not JSON"))
    }
}

/// `/api/pcap` with the capture parameters given on the command line.
fn pcap_path(a: &PcapArgs) -> String {
    let mut params: Vec<(&str, String)> = Vec::new();
    if let Some(t) = &a.target {
        params.push(("Target", t.clone()));
    }
    if let Some(t) = &a.target_type {
        params.push(("TargetType", t.clone()));
    }
    if let Some(m) = &a.layer_key_mode {
        params.push(("LayerKeyMode", m.clone()));
    }
    if let Some(n) = a.sampling_rate {
        params.push(("SamplingRate", n.to_string()));
    }
    if let Some(n) = a.header_size {
        params.push(("HeaderSize", n.to_string()));
    }
    if let Some(n) = &a.name {
        params.push(("Name", n.clone()));
    }
    if params.is_empty() {
        return "/api/pcap".to_owned();
    }
    let query: Vec<String> = params
        .iter()
        .map(|(k, v)| format!("{k}={}", percent_encode(v)))
        .collect();
    format!("/api/pcap?{}", query.join("&"))
}

/// Percent-encodes everything but unreserved characters (RFC 3986).
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

fn print(value: &Value, format: Format) {
    match format {
        Format::Json => match serde_json::to_string_pretty(value) {
            Ok(s) => println!("{s}"),
            Err(_) => println!("{value}"),
        },
        Format::Table => print!("{}", table(value)),
    }
}

/// Renders resources (a list, an object keyed by UUID, or one resource) with the given
/// columns, in that order.
pub fn table_columns(value: &Value, columns: &[&str]) -> String {
    let rows: Vec<&Map<String, Value>> = match value {
        Value::Array(items) => items.iter().filter_map(Value::as_object).collect(),
        Value::Object(map) if map.contains_key("UUID") => vec![map],
        Value::Object(map) => map.values().filter_map(Value::as_object).collect(),
        _ => return format!("{value}\n"),
    };
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            columns
                .iter()
                .map(|c| match r.get(*c) {
                    None | Some(Value::Null) => String::new(),
                    Some(Value::String(s)) => s.clone(),
                    Some(other) => other.to_string(),
                })
                .collect()
        })
        .collect();
    let header: Vec<String> = columns.iter().map(|c| c.to_string()).collect();
    aligned(&header, &cells)
}

/// Columns padded to their widest cell, two spaces apart, without trailing blanks.
fn aligned(header: &[String], cells: &[Vec<String>]) -> String {
    let widths: Vec<usize> = (0..header.len())
        .map(|i| {
            cells
                .iter()
                .map(|r| r[i].chars().count())
                .chain([header[i].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in std::iter::once(header).chain(cells.iter().map(Vec::as_slice)) {
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

/// Renders a list of objects (or an object of objects keyed by ID) as aligned columns;
/// anything else is printed as JSON.
pub fn table(value: &Value) -> String {
    let rows: Vec<&serde_json::Map<String, Value>> = match value {
        Value::Array(items) => items.iter().filter_map(Value::as_object).collect(),
        Value::Object(map) if map.values().all(Value::is_object) => {
            map.values().filter_map(Value::as_object).collect()
        }
        _ => Vec::new(),
    };
    if rows.is_empty() {
        return format!("{value}\n");
    }
    // Graph elements: show the useful metadata, not the whole map.
    let is_element = rows
        .iter()
        .all(|r| r.contains_key("ID") && r.contains_key("Metadata"));
    let columns: Vec<String> = if is_element {
        ["ID", "Name", "Type", "Host"]
            .iter()
            .map(|s| s.to_string())
            .collect()
    } else {
        let mut cols: Vec<String> = Vec::new();
        for r in &rows {
            for (k, v) in r.iter() {
                if !v.is_object() && !v.is_array() && !cols.contains(k) {
                    cols.push(k.clone());
                }
            }
        }
        // The resource's key first, whatever the JSON key order.
        if let Some(i) = cols.iter().position(|c| c == "UUID") {
            let key = cols.remove(i);
            cols.insert(0, key);
        }
        cols
    };
    let cell = |r: &serde_json::Map<String, Value>, c: &str| -> String {
        let v = if is_element && (c == "Name" || c == "Type") {
            r.get("Metadata").and_then(|m| m.get(c))
        } else {
            r.get(c)
        };
        match v {
            None | Some(Value::Null) => String::new(),
            Some(Value::String(s)) => s.clone(),
            Some(other) => other.to_string(),
        }
    };
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| columns.iter().map(|c| cell(r, c)).collect())
        .collect();
    aligned(&columns, &cells)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_of_elements_shows_name_and_type() {
        let v = json!([{"ID": "a", "Metadata": {"Name": "eth0", "Type": "veth"}, "Host": "h"}]);
        let t = table(&v);
        assert_eq!(t, "ID  Name  Type  Host\na   eth0  veth  h\n");
    }

    #[test]
    fn table_of_resources_keyed_by_id() {
        let v = json!({"u1": {"UUID": "u1", "Count": 2}});
        assert_eq!(table(&v), "UUID  Count\nu1    2\n");
    }

    #[test]
    fn resource_tables_have_fixed_columns() {
        let v = json!({"u1": {"UUID": "u1", "Name": "n", "GremlinQuery": "G.V()", "Count": 2, "BPFFilter": "icmp"}});
        assert_eq!(
            table_columns(&v, CAPTURE_COLUMNS),
            "UUID  Name  GremlinQuery  TargetType  Target  Count\nu1    n     G.V()                             2\n"
        );
        let one = json!({"UUID": "u2", "Type": "icmp4", "State": "done"});
        let t = table_columns(&one, &["UUID", "Type", "State"]);
        assert_eq!(t, "UUID  Type   State\nu2    icmp4  done\n");
        assert_eq!(table_columns(&json!({}), &["UUID"]), "UUID\n");
    }

    #[test]
    fn ttl_options() {
        assert_eq!(ttl_header("5000").unwrap(), Some("5000ms".into()));
        assert_eq!(ttl_header("0").unwrap(), None);
        assert_eq!(ttl_header("1m30s").unwrap(), Some("1m30s".into()));
        assert!(ttl_header("soon").is_err());
    }

    #[test]
    fn scalars_print_as_json() {
        assert_eq!(table(&json!(3)), "3\n");
    }
}
