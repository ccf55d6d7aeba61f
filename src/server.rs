//! `topotap allinone`: the graph, its probes and the API in one process; and the two
//! fleet roles built from the same parts: `topotap agent` (probes, a local API, links
//! to analyzers) and `topotap analyzer` (no probes, the merged graph, the API).

use std::path::PathBuf;
use std::sync::Arc;

use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use topotap_probes::ProbesConfig;
use topotap_targets::export::pipeline::FlowTimeouts;
use topotap_targets::flow::FlowTableConfig;
use topotap_topology::{Graph, SharedGraph};
use tracing::info;
use warp::Filter as _;

use crate::api::{self, AppState, RequestLimits};
use crate::cli::{AgentArgs, AnalyzerArgs, LogFormat, ServerArgs};
use crate::fleet::link::{self, Credentials, Endpoint};
use crate::http::ServeLimits;
use crate::services::{self, Services};
use topotap_topology::gremlin::Budget;

/// What a server process is.
enum Role {
    Allinone,
    /// Pushes its graph to these analyzers.
    Agent {
        analyzers: Vec<Endpoint>,
        credentials: Credentials,
    },
    /// Merges agents' graphs and replicates to these peers.
    Analyzer {
        peers: Vec<Endpoint>,
        credentials: Credentials,
        max_message_bytes: usize,
        /// Where the shared state is (etcd endpoints).
        etcd: Vec<String>,
    },
}

pub async fn run(args: ServerArgs) -> anyhow::Result<()> {
    run_as(args, Role::Allinone).await
}

/// `topotap agent`: checks the fleet flags, then runs the probes, the local API and a
/// link to each analyzer. The agent's `--tls-cert`/`--tls-key` are its client
/// certificate towards analyzers; its local API is plain HTTP (loopback by default).
pub async fn run_agent(args: AgentArgs) -> anyhow::Result<()> {
    let t = &args.server.trust;
    if t.tls_client_ca.is_some() {
        anyhow::bail!(
            "--tls-client-ca is an analyzer flag: an agent's --tls-cert/--tls-key are its client certificate towards analyzers"
        );
    }
    let tls = args.cacert.is_some() || t.tls_cert.is_some();
    let analyzers = args
        .analyzers
        .iter()
        .filter(|a| !a.trim().is_empty())
        .map(|a| Endpoint::parse(a, tls).map_err(|e| anyhow::anyhow!("--analyzer {e}")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    if analyzers.is_empty() {
        anyhow::bail!(
            "--analyzer HOST:PORT is required: the analyzers to push this host's subgraph to"
        );
    }
    let mut credentials = Credentials::default();
    if let Some(path) = &args.analyzer_token_file {
        credentials.authorization = Some(link::read_token(path)?);
    }
    if analyzers.iter().any(|a| a.tls) {
        credentials.tls = Some(link::client_tls(
            args.cacert.as_deref(),
            t.tls_cert.as_deref(),
            t.tls_key.as_deref(),
        )?);
    }
    run_as(
        args.server,
        Role::Agent {
            analyzers,
            credentials,
        },
    )
    .await
}

/// Checks the `--etcd` endpoints: each `http[s]://HOST:PORT`, at least one.
fn etcd_endpoints(urls: &[String]) -> anyhow::Result<Vec<String>> {
    let urls: Vec<&str> = urls
        .iter()
        .map(|u| u.trim())
        .filter(|u| !u.is_empty())
        .collect();
    if urls.is_empty() {
        anyhow::bail!(
            "the analyzer needs --etcd URL[,URL...] (etcd v3 endpoints, e.g. http://127.0.0.1:2379): analyzers keep their shared state there; `topotap allinone` runs without it"
        );
    }
    urls.iter()
        .map(|u| {
            let parsed = reqwest::Url::parse(u)
                .map_err(|e| anyhow::anyhow!("--etcd {u:?}: {e} (expected http://HOST:PORT)"))?;
            if !matches!(parsed.scheme(), "http" | "https")
                || parsed.host_str().is_none_or(str::is_empty)
                || parsed.port_or_known_default().is_none()
                || !matches!(parsed.path(), "" | "/")
            {
                anyhow::bail!("--etcd {u:?}: expected http://HOST:PORT or https://HOST:PORT");
            }
            Ok(u.to_string())
        })
        .collect()
}

/// `topotap analyzer`: checks the fleet flags, then serves the merged graph.
pub async fn run_analyzer(args: AnalyzerArgs) -> anyhow::Result<()> {
    let etcd = etcd_endpoints(&args.etcd)?;
    let tls = args.peer_cacert.is_some();
    let peers = args
        .peers
        .iter()
        .filter(|a| !a.trim().is_empty())
        .map(|a| Endpoint::parse(a, tls).map_err(|e| anyhow::anyhow!("--peer {e}")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut credentials = Credentials::default();
    if let Some(path) = &args.peer_token_file {
        credentials.authorization = Some(link::read_token(path)?);
    }
    if peers.iter().any(|p| p.tls) {
        credentials.tls = Some(link::client_tls(args.peer_cacert.as_deref(), None, None)?);
    }
    let etcd = crate::etcd::parse_endpoints(&etcd.join(",")).map_err(anyhow::Error::msg)?;
    run_as(
        args.server,
        Role::Analyzer {
            peers,
            credentials,
            max_message_bytes: args.max_agent_message_bytes as usize,
            etcd,
        },
    )
    .await
}

/// Opens the history store `--history` names (allinone: the embedded one by default).
/// When it cannot be opened, allinone goes on with the live graph only, with a
/// warning; agents and analyzers refuse to start.
async fn open_history(
    args: &ServerArgs,
    allinone: bool,
) -> anyhow::Result<Option<crate::history::History>> {
    use crate::history::{Backend, History, HistoryStore, Retention};
    let backend = match args.history.as_deref() {
        Some(s) => Backend::parse(s).map_err(anyhow::Error::msg)?,
        None if allinone => Backend::Embedded,
        None => Backend::Off,
    };
    let retention = Retention {
        keep: args.history_retention,
        max_bytes: args.history_max_bytes,
    };
    let opened: Result<Arc<dyn HistoryStore>, String> = match &backend {
        Backend::Off => return Ok(None),
        Backend::Embedded => {
            let path = args.state_dir.join("history.redb");
            tokio::task::spawn_blocking(move || {
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir)
                        .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
                }
                crate::history::redb_store::RedbStore::open(&path)
                    .map(|s| Arc::new(s) as Arc<dyn HistoryStore>)
                    .map_err(|e| e.to_string())
            })
            .await
            .map_err(|e| e.to_string())
            .and_then(|r| r)
        }
        Backend::Postgres(url) => {
            let url = url.clone();
            tokio::task::spawn_blocking(move || {
                crate::history::postgres::PostgresStore::connect(&url)
                    .map(|s| Arc::new(s) as Arc<dyn HistoryStore>)
                    .map_err(|e| e.to_string())
            })
            .await
            .map_err(|e| e.to_string())
            .and_then(|r| r)
        }
    };
    match opened {
        Ok(store) => {
            info!(backend = store.backend(), "history on");
            let history = History::new(store, retention);
            Ok(Some(if args.history_memory > 0 {
                history.with_timeline(args.history_memory)
            } else {
                history
            }))
        }
        Err(e) if allinone => {
            tracing::warn!(error = %e, "history store unavailable: serving the live graph only (G.At and G.Context answer 400)");
            Ok(None)
        }
        Err(e) => anyhow::bail!("cannot open the history store (--history): {e}"),
    }
}

async fn run_as(args: ServerArgs, role: Role) -> anyhow::Result<()> {
    init_logging(args.log_format);
    // An agent's certificate is its client identity; its local API stays plain.
    let tls = match role {
        Role::Agent { .. } => None,
        _ => tls_acceptor(&args).map_err(anyhow::Error::msg)?,
    };
    let mut trust_opts = trust_options(&args);
    if matches!(role, Role::Agent { .. }) {
        trust_opts.tls = false;
    }
    let trust = Arc::new(crate::auth::Trust::new(&trust_opts).map_err(anyhow::Error::msg)?);
    let host_id = match args.host_id.clone() {
        Some(h) if !h.is_empty() => h,
        _ => hostname(),
    };
    let graph = SharedGraph::new(Graph::new(), &host_id);
    let analyzer = matches!(role, Role::Analyzer { .. });
    let config = services::Config {
        // An analyzer keeps its definitions in etcd, not in the state dir.
        state_dir: (!analyzer).then(|| args.state_dir.clone()),
        flow_defaults: FlowTableConfig {
            max_flows: args.flow_max_entries as usize,
            active_timeout: Duration::from_secs(args.flow_update),
            idle_timeout: Duration::from_secs(args.flow_expire),
            ..FlowTableConfig::default()
        },
        export_timeouts: FlowTimeouts {
            active: Duration::from_secs(args.flow_export_active_timeout),
            inactive: Duration::from_secs(args.flow_export_inactive_timeout),
        },
        sflow_agent: args.sflow_agent_address,
        targets: trust.targets.clone(),
        namespaces: Default::default(),
        alert_script_dir: args.alert_script_dir.clone(),
    };
    // Opening the stores reads files: not on an async worker.
    let (g, h) = (graph.clone(), host_id.clone());
    let mut services = tokio::task::spawn_blocking(move || Services::new(g, &h, config))
        .await
        .context("cannot open the stores")?;
    services.query_budget = Budget {
        max_elements: usize::try_from(args.max_result_elements).unwrap_or(usize::MAX),
        max_bytes: usize::try_from(args.max_result_bytes).unwrap_or(usize::MAX),
        timeout: args.query_timeout,
    };
    services.history = open_history(&args, matches!(role, Role::Allinone)).await?;
    if !analyzer {
        services.record_flows();
    }

    let probes = if args.no_probes || matches!(role, Role::Analyzer { .. }) {
        None
    } else {
        let config = ProbesConfig {
            host_id: host_id.clone(),
            netns_paths: args.netns_paths.iter().map(PathBuf::from).collect(),
            ovsdb: match args.ovsdb.as_str() {
                "" | "none" => None,
                addr => Some(addr.to_owned()),
            },
            host_metadata: host_metadata(&args.metadata),
            runc_roots: args
                .runc_roots
                .iter()
                .filter(|r| !matches!(r.as_str(), "" | "none"))
                .map(PathBuf::from)
                .collect(),
            docker_socket: match args.docker_socket.as_str() {
                "" | "none" => None,
                s => Some(PathBuf::from(s)),
            },
            metrics_interval: Duration::from_secs(args.metric_interval),
            ..ProbesConfig::default()
        };
        let probes = topotap_probes::start(graph.clone(), config)
            .await
            .context("cannot start the topology probes")?;
        Some(Arc::new(probes))
    };
    if probes.is_some() && !matches!(args.ovsdb.as_str(), "" | "none") {
        services.sinks.ovsdb = Some(crate::capture::ovs::Ovsdb::new(&args.ovsdb, &host_id));
    }
    if let Some(p) = &probes {
        services.sinks.namespaces = crate::auth::netns::KnownNamespaces::new(p.namespace_check());
    }
    let fleet = match &role {
        Role::Analyzer {
            max_message_bytes, ..
        } => {
            crate::fleet::tunnels::follow(graph.clone(), &host_id);
            Some(crate::fleet::analyzer::Fleet::new(
                graph.clone(),
                &host_id,
                *max_message_bytes,
            ))
        }
        _ => None,
    };
    if let Some(f) = &fleet {
        // `Flows()` asks the agents' flow tables; `G.At(t).Flows()` their flow history.
        let (f, p) = (f.clone(), f.clone());
        let fetch: crate::capture::flows::FetchFlows = Arc::new(move || {
            Box::pin(crate::fleet::dispatch::fetch_flows(
                f.clone(),
                crate::fleet::dispatch::FLOW_QUERY_TIMEOUT,
            ))
        });
        let fetch_past: crate::capture::flows::FetchPastFlows = Arc::new(move |from, at| {
            Box::pin(crate::fleet::dispatch::fetch_past_flows(
                p.clone(),
                crate::fleet::protocol::FlowTime { from, at },
                crate::fleet::dispatch::FLOW_QUERY_TIMEOUT,
            ))
        });
        services =
            services.with_remote_flows(crate::capture::flows::RemoteFlows::new(fetch, fetch_past));
    }
    // An analyzer's definitions, agent leases and dispatcher election are in etcd.
    let shared = match &role {
        Role::Analyzer { etcd, .. } => {
            let shared = crate::etcd::join(etcd, &host_id)
                .await
                .map_err(anyhow::Error::msg)?;
            services = services
                .with_definitions(shared.captures.clone(), shared.injections.clone())
                .with_rules(shared.node_rules.clone(), shared.edge_rules.clone())
                .with_alerts(shared.alerts.clone());
            services.leadership = Some(shared.leadership.clone());
            services.alert_states = Some(shared.alert_states.clone());
            services.etcd_durations = Some(shared.durations.clone());
            if let Some(f) = &fleet {
                let _ = f.liveness.set(shared.liveness.clone());
                tokio::spawn(crate::fleet::analyzer::follow_leases(
                    f.clone(),
                    shared.liveness.clone(),
                ));
            }
            Some(shared)
        }
        _ => None,
    };
    if let Some(f) = &fleet {
        let f = f.clone();
        services.fleet_connections = Arc::new(move || f.connection_counts());
    }
    let fleet_status = fleet.clone();
    // What the dispatcher of an analyzer sends and what fails (`Fleet.Dispatch`).
    let dispatch_board = analyzer.then(|| Arc::new(crate::fleet::dispatch::Board::default()));
    let board_status = dispatch_board.clone();
    services.status_sections = Arc::new(move || {
        let mut sections = serde_json::Map::new();
        if let Some(p) = &probes {
            sections.insert("Probes".into(), p.status());
        }
        if let Some(f) = &fleet_status {
            sections.extend(f.status());
        }
        if let (Some(b), Some(serde_json::Value::Object(f))) =
            (&board_status, sections.get_mut("Fleet"))
        {
            f.insert("Dispatch".into(), b.status());
        }
        sections
    });
    // Captures, packet injections and resource expiry.
    let (stop_background, stopped) = tokio::sync::watch::channel(false);
    let mut links = Vec::new();
    let background = match &role {
        Role::Allinone => services.start(stopped),
        Role::Agent {
            analyzers,
            credentials,
        } => {
            links = crate::fleet::agent::start(
                graph.clone(),
                &host_id,
                analyzers,
                credentials.clone(),
                Arc::new(crate::fleet::ondemand::OnDemand(services.clone())),
                stopped.clone(),
            );
            services.start(stopped)
        }
        Role::Analyzer {
            peers, credentials, ..
        } => {
            if let Some(f) = &fleet {
                let s = services.clone();
                links = crate::fleet::replication::start(
                    f.clone(),
                    peers,
                    credentials.clone(),
                    Arc::new(move || s.dispatches()),
                    stopped.clone(),
                );
                links.push(tokio::spawn(crate::fleet::dispatch::run(
                    services.clone(),
                    f.clone(),
                    dispatch_board.clone().unwrap_or_default(),
                    stopped.clone(),
                )));
            }
            services.start_without_placement(stopped)
        }
    };

    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let local = listener.local_addr()?;
    info!(%local, host = %host_id, "topotap API listening");
    // Scripts wait for this line to know the API is up.
    let scheme = if tls.is_some() { "https" } else { "http" };
    println!("listening on {scheme}://{local}");

    let mut state = AppState::new(services);
    state.limits = RequestLimits {
        body_read_timeout: Duration::from_secs(args.body_read_timeout),
        max_metadata_bytes: args.max_metadata_bytes as usize,
    };
    let limits = ServeLimits {
        max_connections: args.max_connections as usize,
        header_read_timeout: Duration::from_secs(args.header_read_timeout),
        ..ServeLimits::default()
    };
    if let Some(addr) = args.metrics_listen {
        // /metrics on a listener of its own; the API no longer serves it.
        state.metrics_on_api = false;
        let metrics = TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr} (--metrics-listen)"))?;
        info!(local = %metrics.local_addr()?, "metrics listening");
        // Behind the same gate as the API (Host, Origin, authentication, the reader
        // role) and with the same TLS: what the API would not show a stranger, the
        // metrics do not either.
        let route = crate::auth::secure(
            trust.clone(),
            api::metrics_only_routes(state.metrics.clone()),
        );
        tokio::spawn(crate::http::serve(
            metrics,
            route,
            limits,
            tls.clone(),
            shutdown_signal(),
        ));
    }
    if args.trust.insecure_no_auth && !trust.auth_enabled() {
        if !local.ip().is_loopback() {
            tokio::spawn(crate::auth::warn_open(local, "the API"));
        }
        if let Some(m) = args.metrics_listen.filter(|m| !m.ip().is_loopback()) {
            tokio::spawn(crate::auth::warn_open(m, "/metrics"));
        }
    }
    state.trust = trust.clone();
    match fleet {
        Some(f) => {
            // Boxed: the combined filter's future would otherwise be large enough to
            // leave query parsing short of stack on a worker thread.
            let routes = crate::fleet::analyzer::routes(f)
                .or(api::routes(state).boxed())
                .unify()
                .boxed()
                // The API's routes answer every request; this only sets the type.
                .recover(|r: warp::Rejection| async move {
                    Ok::<_, std::convert::Infallible>(crate::http::reply_error(
                        crate::http::ApiError::bad_request(format!("{r:?}")),
                    ))
                })
                .unify();
            let routes = crate::auth::secure(trust, routes);
            crate::http::serve(listener, routes, limits, tls, shutdown_signal()).await;
        }
        None => {
            let routes = api::secured(state);
            crate::http::serve(listener, routes, limits, tls, shutdown_signal()).await;
        }
    }
    // Another analyzer may dispatch at once.
    if let Some(shared) = &shared {
        shared.leadership.resign().await;
    }
    // Stop the captures cleanly: exporters send what they still hold.
    let _ = stop_background.send(true);
    background.join().await;
    for l in links {
        let _ = l.await;
    }
    info!("topotap stopped");
    Ok(())
}

fn trust_options(args: &ServerArgs) -> crate::auth::TrustOptions {
    let t = &args.trust;
    crate::auth::TrustOptions {
        listen: Some(args.listen),
        metrics_listen: args.metrics_listen,
        htpasswd: t.auth_htpasswd.clone(),
        roles: t.auth_roles.clone(),
        token_ttl: Duration::from_secs(t.auth_token_ttl),
        allowed_hosts: t.allowed_hosts.clone(),
        cors_origins: t.cors_origins.clone(),
        allow_targets: t.allow_targets.clone(),
        insecure_no_auth: t.insecure_no_auth,
        audit_log: t.audit_log.clone(),
        tls: t.tls_cert.is_some(),
        client_certs: t.tls_client_ca.is_some(),
    }
}

/// The TLS acceptor of `--tls-cert`/`--tls-key` (and `--tls-client-ca`), if given.
fn tls_acceptor(
    args: &ServerArgs,
) -> Result<Option<tokio_rustls::TlsAcceptor>, crate::tls::TlsError> {
    use crate::tls::TlsError;
    let t = &args.trust;
    let (cert, key) = match (&t.tls_cert, &t.tls_key) {
        (None, None) => {
            if t.tls_client_ca.is_some() {
                return Err(TlsError::CaWithoutCert);
            }
            return Ok(None);
        }
        (Some(c), Some(k)) => (c, k),
        (Some(_), None) => return Err(TlsError::CertWithoutKey),
        (None, Some(_)) => return Err(TlsError::KeyWithoutCert),
    };
    let config = crate::tls::server_config(&crate::tls::TlsFiles {
        cert,
        key,
        client_ca: t.tls_client_ca.as_deref(),
        require_client_cert: t.auth_htpasswd.is_none(),
    })?;
    Ok(Some(tokio_rustls::TlsAcceptor::from(config)))
}

/// Logs on stderr, as text (coloured only when stderr is a terminal and `NO_COLOR` is
/// unset) or one JSON object per line.
fn init_logging(format: LogFormat) {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_env("TOPOTAP_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder
            .with_ansi(std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none())
            .try_init(),
        // No colour codes inside JSON strings, whatever stderr is.
        LogFormat::Json => builder.with_ansi(false).json().try_init(),
    };
}

/// The host node's keys from `--metadata KEY=VALUE`: a dotted key nests, a later value
/// of a key replaces an earlier one.
fn host_metadata(pairs: &[(String, String)]) -> topotap_topology::Metadata {
    use serde_json::Value;
    let mut out = topotap_topology::Metadata::new();
    for (key, value) in pairs {
        let mut parts: Vec<&str> = key.split('.').collect();
        let Some(last) = parts.pop() else { continue };
        let mut map = &mut out;
        for p in parts {
            let slot = map
                .entry(p.to_owned())
                .or_insert_with(|| Value::Object(Default::default()));
            if !slot.is_object() {
                *slot = Value::Object(Default::default());
            }
            let Value::Object(inner) = slot else {
                unreachable!("made an object above")
            };
            map = inner;
        }
        map.insert(last.to_owned(), Value::from(value.as_str()));
    }
    out
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
    info!("shutting down");
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    #[test]
    fn host_metadata_nests_dotted_keys_and_keeps_the_last_value() {
        let pairs: Vec<(String, String)> = [
            ("Rack", "r1"),
            ("Site.Room", "b2"),
            ("Site.Floor", "3"),
            ("Rack", "r12"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(
            serde_json::Value::Object(super::host_metadata(&pairs)),
            json!({"Rack": "r12", "Site": {"Room": "b2", "Floor": "3"}})
        );
    }
}
