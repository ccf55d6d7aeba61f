//! Command-line interface.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// topotap: live network topology of this host (namespaces, veth pairs, bridges, Open
/// vSwitch), queried with Gremlin over a Skydive-compatible HTTP/WebSocket API.
#[derive(Debug, Parser)]
#[command(name = "topotap", version, about, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the probes and the API server in one process (Skydive's "allinone").
    Allinone(ServerArgs),
    /// Talk to a running topotap.
    Client(ClientArgs),
}

#[derive(Debug, Args)]
pub struct ServerArgs {
    /// Address the HTTP/WebSocket API listens on.
    #[arg(long, env = "TOPOTAP_LISTEN", default_value = "127.0.0.1:8082")]
    pub listen: SocketAddr,

    /// Identity of this host: the host node's Name and every element's Host
    /// (default: the hostname).
    #[arg(long, env = "TOPOTAP_HOST_ID")]
    pub host_id: Option<String>,

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

    /// Directory where state (capture definitions) is kept.
    #[arg(long, env = "TOPOTAP_STATE_DIR", default_value = "/var/lib/topotap")]
    pub state_dir: PathBuf,
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

    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Json, global = true)]
    pub format: Format,

    #[command(subcommand)]
    pub command: ClientCommand,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Pretty-printed JSON, as the API returns it.
    Json,
    /// A readable table (lists of elements or resources).
    Table,
}

#[derive(Debug, Subcommand)]
pub enum ClientCommand {
    /// The topology graph.
    Topology {
        #[command(subcommand)]
        command: TopologyCommand,
    },
    /// API status.
    Status,
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
