//! `topotap client`: the API from the command line.
//!
//! Prints the API's JSON (pretty) or a table; a 4xx/5xx answer or an unreachable server
//! is an error with the server's one-line reason and a non-zero exit.

use anyhow::{anyhow, bail, Context};
use reqwest::{Method, StatusCode};
use std::collections::{BTreeSet, HashMap};

use serde_json::{json, Map, Value};

use crate::cli::{
    AlertCreateArgs, CaptureCreateArgs, ClientArgs, ClientCommand, EdgeRuleCreateArgs, Format,
    InjectionCreateArgs, NodeRuleCreateArgs, PcapArgs, ResourceArgs, ResourceCommand,
    TopologyCommand,
};
use crate::injection::forge::base64_encode;
use crate::resources::parse_go_duration;

mod output;

use output::{Detail, Namespace, TableContext};

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
    let format = args.format.unwrap_or(Format::Json);
    let (value, columns): (Value, Option<Columns>) = match &args.command {
        ClientCommand::Status => {
            let status = api.call(Method::GET, "/api/status", None).await?;
            if args.format.is_none() {
                print!("{}", status_summary(&api, &status).await);
                return Ok(());
            }
            (status, None)
        }
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
        ClientCommand::Capture { command } => resource(&api, command).await?,
        ClientCommand::Injection { command } => resource(&api, command).await?,
        ClientCommand::Noderule { command } => resource(&api, command).await?,
        ClientCommand::Edgerule { command } => resource(&api, command).await?,
        ClientCommand::Alert { command } => resource(&api, command).await?,
        ClientCommand::Pcap(a) => {
            let body = std::fs::read(&a.file)
                .with_context(|| format!("cannot read {}", a.file.display()))?;
            (api.post_bytes(&pcap_path(a), body).await?, None)
        }
    };
    if value.is_null() {
        return Ok(());
    }
    let detail = match format {
        Format::Json => {
            print_json(&value);
            return Ok(());
        }
        Format::Table => Detail::Table,
        Format::Wide => Detail::Wide,
    };
    match columns {
        Some(cols) => {
            let cols: Vec<&str> = match detail {
                Detail::Table => cols.table.to_vec(),
                Detail::Wide => cols.table.iter().chain(cols.wide).copied().collect(),
            };
            print!("{}", table_columns(&value, &cols));
        }
        None if value.as_array().is_some_and(Vec::is_empty) => eprintln!("No results."),
        None => {
            let ctx = api.context(&value).await;
            print!("{}", output::render(&value, detail, &ctx));
        }
    }
    Ok(())
}

/// The columns of a resource kind's table, and those `-o wide` adds.
struct Columns {
    table: &'static [&'static str],
    wide: &'static [&'static str],
}

/// A resource kind's `create` flags as the body (and `X-Resource-TTL`) of its POST.
trait Creates: ResourceArgs {
    fn body(&self) -> anyhow::Result<(Value, Option<String>)>;
}

/// Runs `create`, `list`, `get` or `delete` of a resource kind: the answer and the
/// kind's table columns.
async fn resource<C: Creates>(
    api: &Api,
    command: &ResourceCommand<C>,
) -> anyhow::Result<(Value, Option<Columns>)> {
    let base = C::PATH;
    let v = match command {
        ResourceCommand::Create(a) => {
            let (body, ttl) = a.body()?;
            let created = api.create(base, body, ttl).await?;
            for w in created["Warnings"].as_array().into_iter().flatten() {
                eprintln!("warning: {}", w.as_str().unwrap_or_default());
            }
            created
        }
        ResourceCommand::List => api.call(Method::GET, base, None).await?,
        ResourceCommand::Get { id } => {
            api.call(Method::GET, &format!("{base}/{}", percent_encode(id)), None)
                .await?
        }
        ResourceCommand::Delete { ids } => api.delete_all(base, ids).await?,
    };
    Ok((
        v,
        Some(Columns {
            table: C::TABLE,
            wide: C::WIDE,
        }),
    ))
}

impl Creates for CaptureCreateArgs {
    fn body(&self) -> anyhow::Result<(Value, Option<String>)> {
        let ttl = self.ttl.as_deref().map(ttl_header).transpose()?.flatten();
        Ok((capture_body(self), ttl))
    }
}

impl Creates for InjectionCreateArgs {
    fn body(&self) -> anyhow::Result<(Value, Option<String>)> {
        injection_body(self)
    }
}

impl Creates for NodeRuleCreateArgs {
    fn body(&self) -> anyhow::Result<(Value, Option<String>)> {
        Ok((node_rule_body(self)?, None))
    }
}

impl Creates for EdgeRuleCreateArgs {
    fn body(&self) -> anyhow::Result<(Value, Option<String>)> {
        Ok((edge_rule_body(self)?, None))
    }
}

impl Creates for AlertCreateArgs {
    fn body(&self) -> anyhow::Result<(Value, Option<String>)> {
        Ok((alert_body(self)?, None))
    }
}

/// The alert to create. The server checks the expression, the trigger and the action
/// too; a bad `--period` is refused here, named by its flag.
fn alert_body(a: &AlertCreateArgs) -> anyhow::Result<Value> {
    if a.expression.trim().is_empty() {
        bail!("--expression: a Gremlin expression is required");
    }
    let trigger = match &a.period {
        Some(p) => {
            let t = format!("duration:{}", p.trim());
            crate::alert::Trigger::parse(&t).map_err(|e| {
                anyhow!(
                    "--period {p:?}: {}",
                    e.to_string().trim_start_matches("Trigger: ")
                )
            })?;
            t
        }
        None => a.trigger.clone(),
    };
    let mut m = Map::new();
    m.insert("Expression".into(), a.expression.clone().into());
    m.insert("Action".into(), a.action.clone().into());
    m.insert("Trigger".into(), trigger.into());
    named(&mut m, &a.name, &a.description);
    Ok(Value::Object(m))
}

/// `KEY=VALUE` pairs as metadata: a dotted key nests (`a.b=1` is `{"a": {"b": 1}}`), a
/// value that parses as JSON is that JSON, any other is a string.
fn metadata_of(pairs: &[String]) -> anyhow::Result<Map<String, Value>> {
    let mut m = Map::new();
    for pair in pairs.iter().filter(|p| !p.trim().is_empty()) {
        let (key, value) = pair
            .split_once('=')
            .filter(|(k, _)| !k.trim().is_empty())
            .ok_or_else(|| anyhow!("--metadata {pair:?}: expected KEY=VALUE"))?;
        let value = serde_json::from_str(value).unwrap_or_else(|_| Value::from(value));
        let mut parts: Vec<&str> = key.trim().split('.').collect();
        let last = parts.pop().unwrap_or_default();
        let mut at = &mut m;
        for p in parts {
            let slot = at
                .entry(p.to_owned())
                .or_insert_with(|| Value::Object(Map::new()));
            at = slot
                .as_object_mut()
                .ok_or_else(|| anyhow!("--metadata {pair:?}: {p} is already a value"))?;
        }
        at.insert(last.to_owned(), value);
    }
    Ok(m)
}

/// Adds `Name` and `Description` when given.
fn named(m: &mut Map<String, Value>, name: &Option<String>, description: &Option<String>) {
    for (key, v) in [("Name", name), ("Description", description)] {
        if let Some(v) = v {
            m.insert(key.into(), v.clone().into());
        }
    }
}

/// The node rule to create; the server checks it (a create rule needs a name and a
/// type, an update rule a query).
fn node_rule_body(a: &NodeRuleCreateArgs) -> anyhow::Result<Value> {
    let mut metadata = metadata_of(&a.metadata)?;
    for (key, v) in [("Name", &a.node_name), ("Type", &a.node_type)] {
        if let Some(v) = v {
            metadata.insert(key.into(), v.clone().into());
        }
    }
    let mut m = Map::new();
    m.insert("Action".into(), a.action.clone().into());
    m.insert("Metadata".into(), Value::Object(metadata));
    if let Some(q) = &a.query {
        m.insert("Query".into(), q.clone().into());
    }
    named(&mut m, &a.name, &a.description);
    Ok(Value::Object(m))
}

/// The edge rule to create.
fn edge_rule_body(a: &EdgeRuleCreateArgs) -> anyhow::Result<Value> {
    let mut metadata = metadata_of(&a.metadata)?;
    metadata.insert("RelationType".into(), a.relationtype.clone().into());
    let mut m = Map::new();
    m.insert("Src".into(), a.src.clone().into());
    m.insert("Dst".into(), a.dst.clone().into());
    m.insert("Metadata".into(), Value::Object(metadata));
    named(&mut m, &a.name, &a.description);
    Ok(Value::Object(m))
}

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
    if let Some(v) = a.port {
        m.insert("Port".into(), v.into());
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
                .call(
                    Method::DELETE,
                    &format!("{base}/{}", percent_encode(id)),
                    None,
                )
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
        let resp = req.send().await.map_err(|e| {
            anyhow!(
                "cannot reach topotap at {} (the address is set with --analyzer or \
                     TOPOTAP_ANALYZER): {}",
                self.base,
                root_cause(&e)
            )
        })?;
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

impl Api {
    /// Runs a Gremlin query for a table's context; `None` (and a note on stderr) when
    /// it fails, so the table is still printed, with fewer names.
    async fn context_query(&self, gremlin: String) -> Option<Vec<Value>> {
        match self
            .call(
                Method::POST,
                "/api/topology",
                Some(json!({ "GremlinQuery": gremlin })),
            )
            .await
        {
            Ok(Value::Array(items)) => Some(items),
            Ok(Value::Null) => Some(Vec::new()),
            Ok(other) => {
                eprintln!("warning: unexpected answer while naming the table's nodes: {other}");
                None
            }
            Err(e) => {
                eprintln!("warning: cannot name the table's nodes: {e:#}");
                None
            }
        }
    }

    /// Nodes whose `key` is one of `values`, asked for in slices of a few hundred.
    async fn nodes_where(&self, key: &str, values: &BTreeSet<String>) -> Vec<Value> {
        let mut out = Vec::new();
        let values: Vec<&String> = values.iter().collect();
        for chunk in values.chunks(500) {
            let query = format!("G.V().Has('{key}', Within({}))", gremlin_strings(chunk));
            out.extend(self.context_query(query).await.unwrap_or_default());
        }
        out
    }

    /// What a table of `answer` needs besides the answer: the nodes its edges and flows
    /// refer to, and the namespace of every interface among them (the parent of its
    /// ownership edge).
    async fn context(&self, answer: &Value) -> TableContext {
        let mut ctx = TableContext {
            now_ms: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as i64)
                .unwrap_or(0),
            ..TableContext::default()
        };
        let rows = output::rows(answer);
        for r in &rows {
            if output::kind_of(r) == output::Kind::Interface {
                if let Some(id) = r["ID"].as_str() {
                    ctx.nodes.insert(id.to_owned(), (*r).clone());
                }
            }
        }
        let (mut ids, tids) = output::references(&rows);
        ids.retain(|id| !ctx.nodes.contains_key(id));
        let mut fetched = Vec::new();
        if !ids.is_empty() {
            fetched.extend(self.nodes_where("@ID", &ids).await);
        }
        if !tids.is_empty() {
            fetched.extend(self.nodes_where("TID", &tids).await);
        }
        for n in fetched {
            let (Some(id), tid) = (n["ID"].as_str(), n["Metadata"]["TID"].as_str()) else {
                continue;
            };
            if let Some(tid) = tid.filter(|t| tids.contains(*t)) {
                ctx.tids.insert(tid.to_owned(), id.to_owned());
            }
            ctx.nodes.insert(id.to_owned(), n);
        }
        let interfaces: Vec<&String> = ctx
            .nodes
            .iter()
            .filter(|(_, n)| output::is_interface(n))
            .map(|(id, _)| id)
            .collect();
        let mut owner_of: HashMap<String, String> = HashMap::new();
        for chunk in interfaces.chunks(500) {
            let query = format!(
                "G.E().Has('RelationType', 'ownership', 'Child', Within({}))",
                gremlin_strings(chunk)
            );
            for e in self.context_query(query).await.unwrap_or_default() {
                if let (Some(p), Some(c)) = (e["Parent"].as_str(), e["Child"].as_str()) {
                    owner_of.insert(c.to_owned(), p.to_owned());
                }
            }
        }
        let owners: BTreeSet<String> = owner_of.values().cloned().collect();
        let owners: HashMap<String, Namespace> = if owners.is_empty() {
            HashMap::new()
        } else {
            self.nodes_where("@ID", &owners)
                .await
                .into_iter()
                .filter_map(|n| {
                    let id = n["ID"].as_str()?.to_owned();
                    Some((id, output::namespace_of_owner(&n)))
                })
                .collect()
        };
        for (child, parent) in owner_of {
            if let Some(ns) = owners.get(&parent) {
                ctx.namespaces.insert(child, ns.clone());
            }
        }
        ctx
    }
}

/// Strings as Gremlin parameters: `'a', 'b'`.
fn gremlin_strings<S: AsRef<str>>(items: &[S]) -> String {
    items
        .iter()
        .map(|s| {
            format!(
                "'{}'",
                s.as_ref().replace('\\', "\\\\").replace('\'', "\\'")
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// `topotap client status` without `-o`: the status as a few readable lines, with the
/// captures and injections counted by state.
async fn status_summary(api: &Api, status: &Value) -> String {
    let captures = api.call(Method::GET, "/api/capture", None).await.ok();
    let injections = api.call(Method::GET, "/api/injectpacket", None).await.ok();
    output::status(status, captures.as_ref(), injections.as_ref())
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

fn print_json(value: &Value) {
    match serde_json::to_string_pretty(value) {
        Ok(s) => println!("{s}"),
        Err(_) => println!("{value}"),
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
    output::aligned(columns, &cells)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_tables_have_fixed_columns() {
        let v = json!({"u1": {"UUID": "u1", "Name": "n", "GremlinQuery": "G.V()", "Count": 2, "BPFFilter": "icmp"}});
        assert_eq!(
            table_columns(&v, CaptureCreateArgs::TABLE),
            "UUID  Name  GremlinQuery  TargetType  Target  Count\nu1    n     G.V()                             2\n"
        );
        let one = json!({"UUID": "u2", "Type": "icmp4", "State": "done"});
        let t = table_columns(&one, &["UUID", "Type", "State"]);
        assert_eq!(t, "UUID  Type   State\nu2    icmp4  done\n");
        assert_eq!(table_columns(&json!({}), &["UUID"]), "UUID\n");
    }

    #[test]
    fn rule_metadata_pairs() {
        let m = metadata_of(&[
            "Team=blue".into(),
            "Weight=3".into(),
            "Net.Vlan=10".into(),
            "Net.Tagged=true".into(),
            "".into(),
        ])
        .unwrap();
        assert_eq!(
            Value::Object(m),
            json!({"Team": "blue", "Weight": 3, "Net": {"Vlan": 10, "Tagged": true}})
        );
        for bad in ["Team", "=x"] {
            let e = metadata_of(&[bad.into()]).unwrap_err().to_string();
            assert!(e.contains("expected KEY=VALUE"), "{e}");
        }
        let e = metadata_of(&["a=1".into(), "a.b=2".into()]).unwrap_err();
        assert!(e.to_string().contains("a is already a value"), "{e}");
    }

    #[test]
    fn ttl_options() {
        assert_eq!(ttl_header("5000").unwrap(), Some("5000ms".into()));
        assert_eq!(ttl_header("0").unwrap(), None);
        assert_eq!(ttl_header("1m30s").unwrap(), Some("1m30s".into()));
        assert!(ttl_header("soon").is_err());
    }

    #[test]
    fn gremlin_strings_are_quoted_and_escaped() {
        assert_eq!(
            gremlin_strings(&["a", "it's", "b\\c"]),
            r"'a', 'it\'s', 'b\\c'"
        );
    }
}
