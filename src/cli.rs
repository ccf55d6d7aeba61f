//! Command-line interface.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// The version with the source revision it was built from (`build.rs`).
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("TOPOTAP_REVISION"),
    ")"
);

/// topotap: live network topology of this host (namespaces, veth pairs, bridges, Open
/// vSwitch), queried with Gremlin over a Skydive-compatible HTTP/WebSocket API.
#[derive(Debug, Parser)]
#[command(name = "topotap", version = VERSION, about, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the probes and the API server in one process (Skydive's "allinone").
    Allinone(ServerArgs),
    /// Fleet mode: run the probes of this host and push its subgraph to analyzers
    /// (`--analyzer`); a local API stays on loopback for debugging.
    Agent(AgentArgs),
    /// Fleet mode: merge the subgraphs agents push into one graph, replicate it with
    /// peer analyzers (`--peer`), and serve the whole API over it. No local probes.
    Analyzer(AnalyzerArgs),
    /// Talk to a running topotap.
    Client(ClientArgs),
    /// The configuration file.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Print a shell completion script (e.g. `topotap completions bash >
    /// /usr/share/bash-completion/completions/topotap`).
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: Shell,
    },
    /// Write the manual pages (topotap.1, topotap-allinone.1, ...) into a directory.
    Man {
        /// Where to write them.
        #[arg(long, default_value = ".")]
        dir: PathBuf,
    },
    /// Export the flows (or samples, or mirrored frames) of a capture file to a collector,
    /// with the pipeline of a capture's target, without a server (like `softflowd -r`).
    Pcap(OfflineArgs),
}

/// `topotap pcap` (`topotap client pcap` uploads to a server instead).
#[derive(Debug, Args)]
pub struct OfflineArgs {
    /// The capture file (pcap or pcapng); `-` reads standard input.
    pub file: PathBuf,
    /// Target type: netflowv5, ipfix, sflow, erspanv1 or erspanv2.
    #[arg(long)]
    pub target_type: String,
    /// Where to send: host:port of the NetFlow/IPFIX/sFlow collector, or the ERSPAN
    /// receiver's address.
    #[arg(long)]
    pub target: String,
    /// Sampling rate: 1 packet out of N (netflowv5 and sflow; 0 or 1 = every packet).
    #[arg(long, default_value_t = 1)]
    pub sampling_rate: u32,
    /// Bytes of each sampled frame sent in sFlow samples (default 128).
    #[arg(long, default_value_t = 0)]
    pub header_size: i64,
    /// sFlow interface counter polling interval in seconds (0 = none).
    #[arg(long, default_value_t = 0)]
    pub polling_interval: u32,
    /// NetFlow v5 / IPFIX active timeout in seconds (capture time).
    #[arg(long, default_value_t = 60,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub active_timeout: u64,
    /// NetFlow v5 / IPFIX inactive timeout in seconds (capture time).
    #[arg(long, default_value_t = 15,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub inactive_timeout: u64,
    /// sFlow agent address (default: the source address of the default route).
    #[arg(long)]
    pub sflow_agent_address: Option<std::net::IpAddr>,
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print the effective configuration of `topotap allinone` (the file given with
    /// --config, environment variables and flags applied) as a configuration file.
    Print(ServerArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// One line of text per event.
    Text,
    /// One JSON object per line.
    Json,
}

#[derive(Debug, Args)]
pub struct ServerArgs {
    /// Configuration file (TOML): its keys are these flags' long names
    /// (`listen = "127.0.0.1:8082"`, `no-probes = true`); flags and TOPOTAP_*
    /// environment variables override it.
    #[arg(long, env = "TOPOTAP_CONFIG")]
    pub config: Option<PathBuf>,

    /// Log format on stderr (the level is set with TOPOTAP_LOG, e.g. "debug").
    #[arg(long, env = "TOPOTAP_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Address the HTTP/WebSocket API listens on.
    #[arg(long, env = "TOPOTAP_LISTEN", default_value = "127.0.0.1:8082")]
    pub listen: SocketAddr,

    /// Identity of this host: the host node's Name and every element's Host
    /// (default: the hostname).
    #[arg(long, env = "TOPOTAP_HOST_ID")]
    pub host_id: Option<String>,

    /// Metadata of the host node, `KEY=VALUE` (repeatable; a dotted key nests:
    /// `Rack.Row=3` is `{"Rack": {"Row": "3"}}`), as Skydive's agent metadata. In the
    /// configuration file: `metadata = ["Rack=r12", "Role=compute"]`.
    #[arg(long = "metadata", value_name = "KEY=VALUE", value_parser = parse_metadata)]
    pub metadata: Vec<(String, String)>,

    /// Do not start the topology probes (netlink, namespaces, OVSDB): the graph then
    /// holds only what is created through the API.
    #[arg(long)]
    pub no_probes: bool,

    /// OVSDB server to monitor: `unix:PATH` or `tcp:HOST:PORT`; `none` disables it.
    #[arg(
        long,
        env = "TOPOTAP_OVSDB",
        default_value = "unix:/var/run/openvswitch/db.sock"
    )]
    pub ovsdb: String,

    /// Directory watched for named network namespaces (repeatable).
    #[arg(long = "netns-path", env = "TOPOTAP_NETNS_PATHS", value_delimiter = ',',
          default_values_t = [String::from("/var/run/netns"), String::from("/run/docker/netns")])]
    pub netns_paths: Vec<String>,

    /// runc state directory whose containers name their network namespaces
    /// (repeatable; `<root>/<id>/state.json`, or `<root>/<namespace>/<id>/state.json`
    /// for containerd). `none` watches none.
    #[arg(long = "runc-root", env = "TOPOTAP_RUNC_ROOTS", value_delimiter = ',',
          default_values_t = topotap_probes::DEFAULT_RUNC_ROOTS.iter().map(|s| s.to_string()))]
    pub runc_roots: Vec<String>,

    /// Docker Engine API socket giving container names, images and labels, read when
    /// it exists; `none` disables it.
    #[arg(long, env = "TOPOTAP_DOCKER_SOCKET", default_value = topotap_probes::DEFAULT_DOCKER_SOCKET)]
    pub docker_socket: String,

    /// Most flows one capture point's flow table holds (local target); the least
    /// recently seen flow is evicted beyond it, and counted.
    #[arg(long, env = "TOPOTAP_FLOW_MAX_ENTRIES", default_value_t = 500_000,
          value_parser = clap::value_parser!(u64).range(1..=100_000_000))]
    pub flow_max_entries: u64,

    /// Flow table update interval in seconds: how often a flow's LastUpdateMetric window
    /// closes (Skydive's flow.update).
    #[arg(long, env = "TOPOTAP_FLOW_UPDATE", default_value_t = 60,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub flow_update: u64,

    /// Seconds between samples of interface counters (`Metric`, `LastUpdateMetric`;
    /// Skydive's agent.topology.netlink.metrics_update). A node is rewritten only when
    /// its counters changed.
    #[arg(long, env = "TOPOTAP_METRIC_INTERVAL", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub metric_interval: u64,

    /// Seconds without packets after which a flow leaves the flow table (Skydive's
    /// flow.expire).
    #[arg(long, env = "TOPOTAP_FLOW_EXPIRE", default_value_t = 600,
          value_parser = clap::value_parser!(u64).range(1..=604_800))]
    pub flow_expire: u64,

    /// NetFlow v5 / IPFIX: seconds between exports of a flow that keeps seeing packets
    /// (each export carries the packets and bytes since the previous one).
    #[arg(long, env = "TOPOTAP_FLOW_EXPORT_ACTIVE_TIMEOUT", default_value_t = 60,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub flow_export_active_timeout: u64,

    /// NetFlow v5 / IPFIX: seconds without packets after which a flow is exported a last
    /// time and forgotten.
    #[arg(long, env = "TOPOTAP_FLOW_EXPORT_INACTIVE_TIMEOUT", default_value_t = 15,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub flow_export_inactive_timeout: u64,

    /// sFlow agent address carried in every datagram (default: the source address of
    /// the host's default route, else the address used to reach the collector).
    #[arg(long, env = "TOPOTAP_SFLOW_AGENT_ADDRESS")]
    pub sflow_agent_address: Option<std::net::IpAddr>,

    /// Serve `/metrics` on this address instead of the API's (e.g. 127.0.0.1:9182);
    /// the API then does not serve it.
    #[arg(long, env = "TOPOTAP_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,

    /// Directory of the scripts alerts may run (`file://NAME` actions name a file in
    /// it; without it such actions are refused).
    #[arg(long, env = "TOPOTAP_ALERT_SCRIPT_DIR", value_name = "DIR")]
    pub alert_script_dir: Option<PathBuf>,

    /// Directory where state (capture definitions) is kept.
    #[arg(long, env = "TOPOTAP_STATE_DIR", default_value = "/var/lib/topotap")]
    pub state_dir: PathBuf,

    /// Where past revisions of the graph are kept, for `G.At(t)` and `G.Context(t, d)`:
    /// `embedded` (history.redb in --state-dir; the default of allinone), a PostgreSQL
    /// URL `postgres://USER@HOST/DB` (an analyzer writes it; it refuses to start when
    /// unreachable), or `off` (the default of agents and analyzers).
    #[arg(long, env = "TOPOTAP_HISTORY", value_name = "embedded|off|URL")]
    pub history: Option<String>,

    /// How long past revisions are kept (`24h`, `7d`, `90m`, `30s`).
    #[arg(long, env = "TOPOTAP_HISTORY_RETENTION", default_value = "24h",
          value_parser = parse_retention)]
    pub history_retention: std::time::Duration,

    /// Most bytes of revisions the history keeps; the oldest go first beyond it.
    #[arg(long, env = "TOPOTAP_HISTORY_MAX_BYTES", default_value_t = 1 << 30,
          value_parser = clap::value_parser!(u64).range(1024..=(1 << 50)))]
    pub history_max_bytes: u64,

    /// Most bytes (estimated) of the in-memory timeline that answers `G.At(t)` for the
    /// recent past without reading the store; beyond it, its oldest revisions go and
    /// older times are read from the store. 0 turns it off.
    #[arg(long, env = "TOPOTAP_HISTORY_MEMORY", default_value_t = 128 << 20,
          value_parser = clap::value_parser!(u64).range(0..=(1 << 50)))]
    pub history_memory: u64,

    /// Most HTTP connections served at once (WebSocket sessions included); beyond it new
    /// connections wait until one closes.
    #[arg(long, env = "TOPOTAP_MAX_CONNECTIONS", default_value_t = 1024,
          value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub max_connections: u64,

    /// Seconds a client has to send a request's headers (and to start its next request
    /// on a kept-alive connection) before the connection is closed.
    #[arg(long, env = "TOPOTAP_HEADER_READ_TIMEOUT", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(1..=3_600))]
    pub header_read_timeout: u64,

    /// Seconds a request body may take to arrive: a JSON body must be complete within
    /// it, and a pcap upload may not pause longer than it between two pieces.
    #[arg(long, env = "TOPOTAP_BODY_READ_TIMEOUT", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(1..=3_600))]
    pub body_read_timeout: u64,

    /// Largest answer of a Gremlin query, in bytes; a larger one is refused with 413.
    #[arg(long, env = "TOPOTAP_MAX_RESULT_BYTES", default_value_t = 64 * 1024 * 1024,
          value_parser = clap::value_parser!(u64).range(1..=(1 << 40)))]
    pub max_result_bytes: u64,

    /// Largest node, edge or value set any step of a Gremlin query may produce; a
    /// larger one is refused with 413.
    #[arg(long, env = "TOPOTAP_MAX_RESULT_ELEMENTS", default_value_t = 5_000_000,
          value_parser = clap::value_parser!(u64).range(1..=1_000_000_000))]
    pub max_result_elements: u64,

    /// Longest evaluation of a Gremlin query (`10s`, `500ms`, `2m`; a bare number is
    /// seconds); a longer one is stopped and answered 503.
    #[arg(long, env = "TOPOTAP_QUERY_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub query_timeout: std::time::Duration,

    /// Largest metadata of one node or edge, in bytes of JSON: a create or a PATCH
    /// that would make it larger is refused with 413.
    #[arg(long, env = "TOPOTAP_MAX_METADATA_BYTES", default_value_t = 1024 * 1024,
          value_parser = clap::value_parser!(u64).range(1024..=1024 * 1024 * 1024))]
    pub max_metadata_bytes: u64,
    #[command(flatten)]
    pub trust: TrustArgs,
}

/// `topotap agent`.
#[derive(Debug, Args)]
pub struct AgentArgs {
    /// An analyzer to push this host's subgraph to: HOST:PORT (or ws://, wss://,
    /// https:// HOST:PORT); comma-separated or repeated. The agent connects to each.
    #[arg(
        long = "analyzer",
        env = "TOPOTAP_ANALYZERS",
        value_delimiter = ',',
        required = true
    )]
    pub analyzers: Vec<String>,

    /// File with the credentials sent to analyzers: `USER:PASSWORD` (HTTP Basic,
    /// checked against the analyzer's --auth-htpasswd) or a token of its `POST /login`.
    #[arg(long, env = "TOPOTAP_ANALYZER_TOKEN_FILE", value_name = "FILE")]
    pub analyzer_token_file: Option<PathBuf>,

    /// Trust analyzers whose certificate this CA (PEM) signed; HOST:PORT analyzers are
    /// then reached over TLS. With --tls-cert/--tls-key the agent presents that client
    /// certificate (the analyzer's --tls-client-ca authenticates it).
    #[arg(long, env = "TOPOTAP_CACERT", value_name = "FILE")]
    pub cacert: Option<PathBuf>,

    #[command(flatten)]
    pub server: ServerArgs,
}

/// `topotap analyzer`.
#[derive(Debug, Args)]
pub struct AnalyzerArgs {
    /// etcd v3 endpoints (http://HOST:PORT, comma-separated or repeated), where
    /// analyzers keep their shared state; required.
    #[arg(long = "etcd", env = "TOPOTAP_ETCD", value_delimiter = ',')]
    pub etcd: Vec<String>,

    /// A peer analyzer to replicate this analyzer's hosts to: HOST:PORT (or ws://,
    /// wss://, https:// HOST:PORT); comma-separated or repeated.
    #[arg(long = "peer", env = "TOPOTAP_PEERS", value_delimiter = ',')]
    pub peers: Vec<String>,

    /// File with the credentials sent to peers (as --analyzer-token-file of agents).
    #[arg(long, env = "TOPOTAP_PEER_TOKEN_FILE", value_name = "FILE")]
    pub peer_token_file: Option<PathBuf>,

    /// Trust peers whose certificate this CA (PEM) signed; HOST:PORT peers are then
    /// reached over TLS.
    #[arg(long, env = "TOPOTAP_PEER_CACERT", value_name = "FILE")]
    pub peer_cacert: Option<PathBuf>,

    /// Largest message an agent or a peer may send, in bytes (a `Sync` carries a whole
    /// host); a larger one is refused and the connection closed.
    #[arg(long, env = "TOPOTAP_MAX_AGENT_MESSAGE_BYTES", default_value_t = 32 * 1024 * 1024,
          value_parser = clap::value_parser!(u64).range(1024..=1024 * 1024 * 1024))]
    pub max_agent_message_bytes: u64,

    #[command(flatten)]
    pub server: ServerArgs,
}

/// Host node keys topotap sets itself: `--metadata` may not change them.
pub const RESERVED_HOST_KEYS: &[&str] = &["Name", "Type", "TID"];

/// Why a `--metadata` value does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadMetadata {
    #[error("invalid metadata {0:?}: expected KEY=VALUE, e.g. Rack=r12")]
    Syntax(String),
    #[error("invalid metadata key {0:?}: keys are letters, digits, '_', '-' and '.' between non-empty parts")]
    Key(String),
    #[error("metadata key {0:?} is set by topotap itself")]
    Reserved(String),
}

/// `KEY=VALUE` of `--metadata`: the key is one or more dot-separated parts of letters,
/// digits, `_` and `-`; the value is any text (it may be empty or hold `=`).
pub fn parse_metadata(s: &str) -> Result<(String, String), BadMetadata> {
    let (key, value) = s
        .split_once('=')
        .ok_or_else(|| BadMetadata::Syntax(s.to_owned()))?;
    let key = key.trim();
    let part_ok = |p: &str| {
        !p.is_empty()
            && p.chars()
                .all(|c| c.is_alphanumeric() || c == '_' || c == '-')
    };
    if key.is_empty() {
        return Err(BadMetadata::Syntax(s.to_owned()));
    }
    if !key.split('.').all(part_ok) {
        return Err(BadMetadata::Key(key.to_owned()));
    }
    let top = key.split('.').next().unwrap_or(key);
    if RESERVED_HOST_KEYS.contains(&top) {
        return Err(BadMetadata::Reserved(top.to_owned()));
    }
    Ok((key.to_owned(), value.to_owned()))
}

/// Why a duration option does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadDuration {
    #[error("invalid duration {0:?}: use e.g. 500ms, 10s or 2m")]
    Syntax(String),
    #[error("invalid duration {0:?}: must be more than 0 and at most a day")]
    OutOfRange(String),
}

/// `500ms`, `10s`, `2m`, or a number of seconds (`1.5`); zero is refused.
/// `--history-retention`: a duration like `24h`, `7d`, `90m` or `30s`, at least a second.
pub fn parse_retention(s: &str) -> Result<std::time::Duration, String> {
    let t = s.trim();
    let ms = match t.strip_suffix('d') {
        Some(days) => days.parse::<u32>().ok().map(|d| i64::from(d) * 86_400_000),
        None => topotap_grammar::time::parse_duration_ms(t),
    };
    match ms {
        Some(ms) if ms >= 1000 => Ok(std::time::Duration::from_millis(ms as u64)),
        _ => Err(format!(
            "invalid retention {s:?}: expected a duration of at least 1s like 24h, 7d, 90m or 30s"
        )),
    }
}

pub fn parse_duration(s: &str) -> Result<std::time::Duration, BadDuration> {
    let s = s.trim();
    let (num, scale) = if let Some(n) = s.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60.0)
    } else {
        (s, 1.0)
    };
    let x: f64 = num
        .trim()
        .parse()
        .map_err(|_| BadDuration::Syntax(s.to_owned()))?;
    let secs = x * scale;
    if !secs.is_finite() || secs <= 0.0 || secs > 86_400.0 {
        return Err(BadDuration::OutOfRange(s.to_owned()));
    }
    Ok(std::time::Duration::from_secs_f64(secs))
}

/// Who may use the API, and from where.
#[derive(Debug, Args)]
pub struct TrustArgs {
    /// Require a login: users and bcrypt password hashes, as made by `htpasswd -B`.
    #[arg(long, env = "TOPOTAP_AUTH_HTPASSWD", value_name = "FILE")]
    pub auth_htpasswd: Option<PathBuf>,

    /// Each user's role, TOML: `[users]` then `name = "reader"|"operator"|"admin"`
    /// (default without it: every user is admin).
    #[arg(long, env = "TOPOTAP_AUTH_ROLES", value_name = "FILE")]
    pub auth_roles: Option<PathBuf>,

    /// Seconds a login token stays valid.
    #[arg(long, env = "TOPOTAP_AUTH_TOKEN_TTL", default_value_t = 86_400,
          value_parser = clap::value_parser!(u64).range(1..=31_536_000))]
    pub auth_token_ttl: u64,

    /// Serve the API without authentication on a non-loopback address (a warning is
    /// logged every minute).
    #[arg(long)]
    pub insecure_no_auth: bool,

    /// A host name clients reach this server by (the Host header must be one of these,
    /// an address it listens on, or localhost; repeatable).
    #[arg(
        long = "allowed-host",
        env = "TOPOTAP_ALLOWED_HOSTS",
        value_delimiter = ','
    )]
    pub allowed_hosts: Vec<String>,

    /// An origin (scheme://host[:port]) whose web pages may call the API (CORS;
    /// repeatable; none by default: the bundled UI needs none).
    #[arg(
        long = "cors-origin",
        env = "TOPOTAP_CORS_ORIGINS",
        value_delimiter = ','
    )]
    pub cors_origins: Vec<String>,

    /// A network (CIDR) captures may export to and injections may send to (repeatable;
    /// default: anywhere only when authentication is off and the API listens on
    /// loopback, else nowhere).
    #[arg(
        long = "allow-target",
        env = "TOPOTAP_ALLOW_TARGETS",
        value_delimiter = ','
    )]
    pub allow_targets: Vec<String>,

    /// Write the audit log (JSON lines: captures, injections, pcap uploads, node and
    /// edge writes) to this file instead of the normal log.
    #[arg(long, env = "TOPOTAP_AUDIT_LOG", value_name = "FILE")]
    pub audit_log: Option<PathBuf>,

    /// Serve the API over TLS with this certificate chain (PEM; needs --tls-key).
    #[arg(long, env = "TOPOTAP_TLS_CERT", value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,

    /// The private key of --tls-cert (PEM: PKCS#8, PKCS#1 or SEC1).
    #[arg(long, env = "TOPOTAP_TLS_KEY", value_name = "FILE")]
    pub tls_key: Option<PathBuf>,

    /// Client certificates signed by this CA (PEM) authenticate machines as their
    /// subject common name (needs --tls-cert). With --auth-htpasswd a certificate is
    /// optional; without it, every client must present one.
    #[arg(long, env = "TOPOTAP_TLS_CLIENT_CA", value_name = "FILE")]
    pub tls_client_ca: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ClientArgs {
    /// Address of the topotap API.
    #[arg(
        long,
        env = "TOPOTAP_ANALYZER",
        default_value = "127.0.0.1:8082",
        global = true
    )]
    pub analyzer: String,

    /// Output format: json (as the API answers; the default, but for `status`, a
    /// summary), table (columns chosen per kind of element: interfaces, flows, edges,
    /// resources...) or wide (a table with more columns).
    #[arg(
        short = 'o',
        long = "output",
        visible_alias = "format",
        value_enum,
        global = true
    )]
    pub format: Option<Format>,

    /// Log in as this user (POST /login) and send the token with the command.
    #[arg(long, env = "TOPOTAP_USERNAME", global = true)]
    pub username: Option<String>,

    /// The password of --username.
    #[arg(long, env = "TOPOTAP_PASSWORD", global = true, hide_env_values = true)]
    pub password: Option<String>,

    /// Trust the server's certificate when this CA (PEM) signed it (https:// analyzers).
    #[arg(long, env = "TOPOTAP_CACERT", value_name = "FILE", global = true)]
    pub cacert: Option<PathBuf>,

    /// Do not check the server's TLS certificate (testing only).
    #[arg(long, global = true)]
    pub insecure: bool,

    #[command(subcommand)]
    pub command: ClientCommand,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Pretty-printed JSON, as the API returns it.
    Json,
    /// A readable table (lists of elements or resources).
    Table,
    /// A table with more columns (IDs, MTU, driver, host, UUIDs...).
    Wide,
}

#[derive(Debug, Subcommand)]
pub enum ClientCommand {
    /// The topology graph.
    Topology {
        #[command(subcommand)]
        command: TopologyCommand,
    },
    /// Captures: packet capture on every interface a Gremlin query selects.
    Capture {
        #[command(subcommand)]
        command: ResourceCommand<CaptureCreateArgs>,
    },
    /// Packet injections: forged packets (or a pcap file) sent from an interface.
    #[command(alias = "inject-packet")]
    Injection {
        #[command(subcommand)]
        command: ResourceCommand<InjectionCreateArgs>,
    },
    /// Node rules: create a node, or add metadata to the nodes a Gremlin query selects.
    #[command(alias = "node-rule")]
    Noderule {
        #[command(subcommand)]
        command: ResourceCommand<NodeRuleCreateArgs>,
    },
    /// Edge rules: link the first nodes of two Gremlin queries.
    #[command(alias = "edge-rule")]
    Edgerule {
        #[command(subcommand)]
        command: ResourceCommand<EdgeRuleCreateArgs>,
    },
    /// Alerts: a Gremlin expression watched on graph changes or on a period, with a
    /// webhook or a script run when it fires.
    Alert {
        #[command(subcommand)]
        command: ResourceCommand<AlertCreateArgs>,
    },
    /// Feed a pcap or pcapng file through the flow table, or to a target, as a capture
    /// would (POST /api/pcap).
    Pcap(PcapArgs),
    /// API status.
    Status,
}

/// `create`, `list`, `get` and `delete` of a stored resource kind (`/api/<kind>`).
#[derive(Debug, Subcommand)]
pub enum ResourceCommand<C: ResourceArgs> {
    #[command(about = format!("Create {}", C::ONE))]
    Create(Box<C>),
    #[command(about = format!(
        "List the {} (table columns: {})",
        C::MANY,
        C::TABLE.join(", ")
    ))]
    List,
    #[command(about = format!("Show one {}", C::SHORT))]
    Get {
        #[arg(help = format!("The {}'s UUID", C::SHORT))]
        id: String,
    },
    #[command(about = format!("Delete {}{}", C::MANY, C::DELETE_NOTE))]
    Delete {
        #[arg(required = true, help = format!("UUIDs of the {}", C::MANY))]
        ids: Vec<String>,
    },
}

/// A resource kind's `create` flags, and what its other commands say and show.
pub trait ResourceArgs: Args {
    /// The API path: `/api/capture`.
    const PATH: &'static str;
    /// One of them, with its article: `a capture`.
    const ONE: &'static str;
    /// One of them, without: `capture`.
    const SHORT: &'static str;
    /// Several: `captures`.
    const MANY: &'static str;
    /// What a deletion also does: ` (their edges are removed)`.
    const DELETE_NOTE: &'static str = "";
    /// Columns of `list -o table`.
    const TABLE: &'static [&'static str];
    /// Columns `-o wide` adds.
    const WIDE: &'static [&'static str];
}

impl ResourceArgs for CaptureCreateArgs {
    const PATH: &'static str = "/api/capture";
    const ONE: &'static str = "a capture";
    const SHORT: &'static str = "capture";
    const MANY: &'static str = "captures";
    const TABLE: &'static [&'static str] = &[
        "UUID",
        "Name",
        "GremlinQuery",
        "TargetType",
        "Target",
        "Count",
    ];
    const WIDE: &'static [&'static str] = &[
        "BPFFilter",
        "Type",
        "HeaderSize",
        "SamplingRate",
        "LayerKeyMode",
        "Error",
    ];
}

impl ResourceArgs for InjectionCreateArgs {
    const PATH: &'static str = "/api/injectpacket";
    const ONE: &'static str = "a packet injection";
    const SHORT: &'static str = "injection";
    const MANY: &'static str = "injections";
    const DELETE_NOTE: &'static str = " (stops those still sending)";
    const TABLE: &'static [&'static str] = &[
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
    const WIDE: &'static [&'static str] =
        &["SrcMAC", "DstMAC", "SrcPort", "DstPort", "Mode", "Error"];
}

impl ResourceArgs for NodeRuleCreateArgs {
    const PATH: &'static str = "/api/noderule";
    const ONE: &'static str = "a node rule";
    const SHORT: &'static str = "node rule";
    const MANY: &'static str = "node rules";
    const DELETE_NOTE: &'static str = " (what they did is undone)";
    const TABLE: &'static [&'static str] =
        &["UUID", "Name", "Action", "Query", "Metadata", "Error"];
    const WIDE: &'static [&'static str] = &["Description"];
}

impl ResourceArgs for EdgeRuleCreateArgs {
    const PATH: &'static str = "/api/edgerule";
    const ONE: &'static str = "an edge rule";
    const SHORT: &'static str = "edge rule";
    const MANY: &'static str = "edge rules";
    const DELETE_NOTE: &'static str = " (their edges are removed)";
    const TABLE: &'static [&'static str] = &["UUID", "Name", "Src", "Dst", "Metadata", "Error"];
    const WIDE: &'static [&'static str] = &["Description"];
}

impl ResourceArgs for AlertCreateArgs {
    const PATH: &'static str = "/api/alert";
    const ONE: &'static str = "an alert";
    const SHORT: &'static str = "alert";
    const MANY: &'static str = "alerts";
    const TABLE: &'static [&'static str] = &[
        "UUID",
        "Name",
        "Expression",
        "Trigger",
        "Action",
        "State",
        "FireCount",
    ];
    const WIDE: &'static [&'static str] = &[
        "Description",
        "CreateTime",
        "LastFired",
        "Error",
        "ActionError",
    ];
}

/// `topotap client alert create` (Skydive's flags).
#[derive(Debug, Args)]
pub struct AlertCreateArgs {
    /// Gremlin expression; the alert fires when its result turns truthy (non-empty,
    /// true, non-zero) or changes while truthy, e.g. "G.V().Has('Name', 'eth0', 'State', 'DOWN')".
    #[arg(long)]
    pub expression: String,
    /// What firing does besides the WebSocket `Alert` message: an http:// or https://
    /// URL (a POST of the alert, within the server's --allow-target), file://NAME (a
    /// script in the server's --alert-script-dir, the alert on its standard input), or
    /// empty.
    #[arg(long, default_value = "")]
    pub action: String,
    /// When the expression is evaluated: graph (on every graph change) or
    /// duration:PERIOD (every PERIOD, e.g. duration:10s).
    #[arg(long, default_value = "graph", conflicts_with = "period")]
    pub trigger: String,
    /// Evaluate every PERIOD (e.g. 10s, 1m30s) instead of on graph changes: the same as
    /// --trigger duration:PERIOD.
    #[arg(long)]
    pub period: Option<String>,
    /// Alert name.
    #[arg(long)]
    pub name: Option<String>,
    /// Alert description.
    #[arg(long)]
    pub description: Option<String>,
}

#[derive(Debug, Args)]
pub struct PcapArgs {
    /// The capture file.
    pub file: std::path::PathBuf,
    /// Where to send the packets or flows: host:port (port 0 for ERSPAN).
    #[arg(long)]
    pub target: Option<String>,
    /// local (flow table, the default), netflowv5, ipfix, sflow, erspanv1, erspanv2.
    #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(crate::capture::TargetType::NAMES))]
    pub target_type: Option<String>,
    /// Flow key: L2 (MAC addresses included, the default) or L3.
    #[arg(long)]
    pub layer_key_mode: Option<String>,
    /// sFlow: sample 1 packet in N.
    #[arg(long)]
    pub sampling_rate: Option<u32>,
    /// Bytes of each packet kept (sFlow header, ERSPAN truncation).
    #[arg(long)]
    pub header_size: Option<u32>,
    /// A name for this upload.
    #[arg(long)]
    pub name: Option<String>,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("what").required(true).args(["gremlin", "node"])))]
pub struct CaptureCreateArgs {
    /// Gremlin query of the interfaces to capture on, e.g. "G.V().Has('Name', 'eth0')".
    #[arg(long)]
    pub gremlin: Option<String>,
    /// Capture on the node with this TID (same as --gremlin "G.V().Has('TID', '<TID>')").
    #[arg(long)]
    pub node: Option<String>,
    /// BPF filter, e.g. "icmp or udp port 53".
    #[arg(long)]
    pub bpf: Option<String>,
    /// Capture type: pcap, afpacket, sflow (an sFlow collector socket), pcapsocket (a TCP
    /// socket taking pcap streams), ovssflow (Open vSwitch samples a bridge), ovsmirror
    /// (an OVS mirror of a port); default: ovssflow on OVS bridges, pcap elsewhere.
    #[arg(long = "type", value_parser = clap::builder::PossibleValuesParser::new(crate::capture::resource::CAPTURE_TYPES))]
    pub capture_type: Option<String>,
    /// Port the sflow (default 6343) or pcapsocket (default: any free port) capture
    /// listens on, on loopback.
    #[arg(long)]
    pub port: Option<u16>,
    /// Where flows go: host:port of a NetFlow/sFlow/IPFIX collector or an ERSPAN
    /// receiver (port 0); empty = the local flow table, queried with Flows().
    #[arg(long)]
    pub target: Option<String>,
    /// Target type: local, or the exporter the server offers (netflowv5, erspanv1, ...);
    /// required with --target.
    #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(crate::capture::TargetType::NAMES))]
    pub target_type: Option<String>,
    /// Bytes captured of each packet (14..4096; default: whole packets).
    #[arg(long)]
    pub header_size: Option<i64>,
    /// Sampling rate: 1 packet out of N (sFlow targets).
    #[arg(long, alias = "samplingrate")]
    pub sampling_rate: Option<u32>,
    /// Interface counter polling interval in seconds (sFlow targets; 0 = none).
    #[arg(long, alias = "pollinginterval")]
    pub polling_interval: Option<u32>,
    /// Capture name.
    #[arg(long)]
    pub name: Option<String>,
    /// Capture description.
    #[arg(long)]
    pub description: Option<String>,
    /// Flow key: L2 (Ethernet addresses count) or L3 (IP addresses only).
    #[arg(long, value_parser = ["L2", "L3"])]
    pub layer_key_mode: Option<String>,
    /// Raw packets kept per flow (0..10).
    #[arg(long, alias = "rawpacket-limit")]
    pub raw_packet_limit: Option<i64>,
    /// Add TCP metrics to flows.
    #[arg(long)]
    pub extra_tcp_metric: bool,
    /// Defragment IPv4 packets.
    #[arg(long)]
    pub ip_defrag: bool,
    /// Reassemble TCP streams.
    #[arg(long, alias = "reassamble-tcp")]
    pub reassemble_tcp: bool,
    /// Delete the capture after this long: a duration such as 30s, 5m, 1h30m, or
    /// milliseconds (sent as X-Resource-TTL).
    #[arg(long)]
    pub ttl: Option<String>,
}

#[derive(Debug, Args)]
pub struct InjectionCreateArgs {
    /// Gremlin query of the source interface; packets leave from the first interface
    /// it returns, inside that interface's namespace.
    #[arg(long)]
    pub src: String,
    /// Gremlin query of the destination node, whose address and MAC are used when
    /// --dst-ip / --dst-mac are not given.
    #[arg(long)]
    pub dst: Option<String>,
    /// Packet type.
    #[arg(long = "type", default_value = "icmp4",
          value_parser = ["icmp4", "icmp6", "tcp4", "tcp6", "udp4", "udp6"])]
    pub packet_type: String,
    /// Number of packets.
    #[arg(long, default_value_t = 1)]
    pub count: u64,
    /// Milliseconds between two packets.
    #[arg(long, default_value_t = 0)]
    pub interval: u64,
    /// Source IP (default: the source interface's first address of the type's family).
    #[arg(long)]
    pub src_ip: Option<String>,
    /// Destination IP (default: the destination node's address).
    #[arg(long)]
    pub dst_ip: Option<String>,
    /// Source MAC (default: the source interface's).
    #[arg(long)]
    pub src_mac: Option<String>,
    /// Destination MAC (default: the next hop's from the source interface's routes and
    /// neighbors, else the destination node's).
    #[arg(long)]
    pub dst_mac: Option<String>,
    /// TCP/UDP source port (default: random).
    #[arg(long)]
    pub src_port: Option<u16>,
    /// TCP/UDP destination port (default: random).
    #[arg(long)]
    pub dst_port: Option<u16>,
    /// ICMP identifier (default: random).
    #[arg(long)]
    pub id: Option<u16>,
    /// unique: one ICMP id / source port for all packets (one flow); random: a new one
    /// for every packet.
    #[arg(long, default_value = "unique", value_parser = ["unique", "random"])]
    pub mode: String,
    /// Payload of each packet (default: 56 random letters for ICMP and UDP, none for a
    /// TCP SYN).
    #[arg(long)]
    pub payload: Option<String>,
    /// Bytes appended to the payload after each packet (1 when given without a value).
    #[arg(long, alias = "inc-payload", num_args = 0..=1, default_missing_value = "1")]
    pub increment: Option<u64>,
    /// IPv4 TTL / IPv6 hop limit.
    #[arg(long, default_value_t = 64)]
    pub ttl: u8,
    /// Replay the packets of this pcap file instead of forging them (--count packets,
    /// looping over the file).
    #[arg(long)]
    pub pcap: Option<PathBuf>,
    /// Delete the injection after this long (30s, 5m, or milliseconds); default: the
    /// time it takes plus 5 s, as Skydive's client; 0 keeps it until deleted.
    #[arg(long)]
    pub resource_ttl: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum TopologyCommand {
    /// Run a Gremlin query, e.g. "G.V().Has('Type','veth')".
    Query {
        /// The query.
        #[arg(long)]
        gremlin: String,
    },
    /// Print the whole graph.
    Export,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn metadata_is_key_equals_value() {
        assert_eq!(
            parse_metadata("Rack=r12"),
            Ok(("Rack".into(), "r12".into()))
        );
        assert_eq!(
            parse_metadata("Site.Room=a=b"),
            Ok(("Site.Room".into(), "a=b".into()))
        );
        assert_eq!(parse_metadata("Note="), Ok(("Note".into(), String::new())));
        assert_eq!(
            parse_metadata("rack").unwrap_err().to_string(),
            "invalid metadata \"rack\": expected KEY=VALUE, e.g. Rack=r12"
        );
        assert!(matches!(parse_metadata("=x"), Err(BadMetadata::Syntax(_))));
        assert!(matches!(parse_metadata("a..b=x"), Err(BadMetadata::Key(_))));
        assert!(matches!(parse_metadata("a b=x"), Err(BadMetadata::Key(_))));
        assert_eq!(
            parse_metadata("Type=router"),
            Err(BadMetadata::Reserved("Type".into()))
        );
    }

    #[test]
    fn durations_parse_or_say_why_not() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration(" 2m "), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert_eq!(
            parse_duration("soon").unwrap_err().to_string(),
            "invalid duration \"soon\": use e.g. 500ms, 10s or 2m"
        );
        assert_eq!(
            parse_duration("0s"),
            Err(BadDuration::OutOfRange("0s".into()))
        );
        assert!(matches!(parse_duration("2d"), Err(BadDuration::Syntax(_))));
    }
}

#[derive(Debug, Args)]
pub struct NodeRuleCreateArgs {
    /// `create` a node (needs --node-name and --node-type) or `update` the nodes
    /// --query selects (adds --metadata to them).
    #[arg(long, value_parser = ["create", "update"])]
    pub action: String,
    /// Gremlin query of the nodes an `update` rule changes.
    #[arg(long)]
    pub query: Option<String>,
    /// `Name` of the node a `create` rule makes.
    #[arg(long)]
    pub node_name: Option<String>,
    /// `Type` of the node a `create` rule makes.
    #[arg(long)]
    pub node_type: Option<String>,
    /// Metadata: KEY=VALUE (repeatable, or comma-separated); a dotted key nests, a
    /// value that is JSON (number, true, [..]) is taken as such, anything else as a string.
    #[arg(long, short = 'm', value_delimiter = ',')]
    pub metadata: Vec<String>,
    /// Rule name.
    #[arg(long)]
    pub name: Option<String>,
    /// Rule description.
    #[arg(long)]
    pub description: Option<String>,
}

#[derive(Debug, Args)]
pub struct EdgeRuleCreateArgs {
    /// Gremlin query of the parent node (its first node).
    #[arg(long)]
    pub src: String,
    /// Gremlin query of the child node (its first node).
    #[arg(long)]
    pub dst: String,
    /// `RelationType` of the edge.
    #[arg(long)]
    pub relationtype: String,
    /// More edge metadata: KEY=VALUE, as for node rules.
    #[arg(long, short = 'm', value_delimiter = ',')]
    pub metadata: Vec<String>,
    /// Rule name.
    #[arg(long)]
    pub name: Option<String>,
    /// Rule description.
    #[arg(long)]
    pub description: Option<String>,
}
