//! The core of a running topotap: the graph and everything that works on it (stores of
//! captures and injections, flow tables, the capture placer, the injection runner),
//! owned by the server and used by the HTTP layer as a client.
//!
//! Dependencies point one way: `server` builds [`Services`] and starts its background
//! tasks; `api` holds a `Services` and calls into it; the capture placer and the
//! injection runner are given what they need from it and never see the HTTP layer.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Map, Value};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use topotap_targets::export::pipeline::FlowTimeouts;
use topotap_targets::flow::FlowTableConfig;
use topotap_topology::gremlin::{Budget, Extensions};
use topotap_topology::SharedGraph;

use crate::alert::Alert;
use crate::capture::flows::FlowsStep;
use crate::capture::placer::{InputFactory, SinkFactory, Target};
use crate::capture::{self, Capture, SinkContext};
use crate::injection::Injection;
use crate::resources::{Definitions, Store};
use crate::rules::{EdgeRule, NodeRule};

/// Extra sections of `/api/status` (probe states and such), computed at read time.
pub type StatusSections = Arc<dyn Fn() -> Map<String, Value> + Send + Sync>;
/// Connections by kind (`agent`, `peer`), read at scrape time.
pub type FleetConnections = Arc<dyn Fn() -> Vec<(&'static str, usize)> + Send + Sync>;

/// How the services are set up (server flags).
#[derive(Clone, Default)]
pub struct Config {
    /// Where captures are kept across restarts; `None`: in memory only.
    pub state_dir: Option<PathBuf>,
    /// Size and timers of the local target's flow tables.
    pub flow_defaults: FlowTableConfig,
    /// Active and inactive timeouts of the NetFlow v5 and IPFIX exporters.
    pub export_timeouts: FlowTimeouts,
    /// sFlow agent address; `None`: the source address of the default route.
    pub sflow_agent: Option<std::net::IpAddr>,
    /// Where captures may export and injections may send (`--allow-target`).
    pub targets: crate::auth::AllowTargets,
    /// The namespaces captures and injections may enter (those the probes found).
    pub namespaces: crate::auth::netns::KnownNamespaces,
    /// Where alert scripts (`file://NAME` actions) live; `None`: scripts are refused.
    pub alert_script_dir: Option<PathBuf>,
}

/// Everything the server runs, cheap to clone.
#[derive(Clone)]
pub struct Services {
    pub graph: SharedGraph,
    pub host_id: String,
    /// Gremlin steps beyond the core ones (`Flows()`).
    pub extensions: Arc<Extensions>,
    /// Limits of every Gremlin evaluation: REST queries, subscriber filters, the
    /// queries of captures and injections (`--max-result-bytes`,
    /// `--max-result-elements`, `--query-timeout`).
    pub query_budget: Budget,
    pub started: Instant,
    pub captures: Definitions<Capture>,
    pub injections: Definitions<Injection>,
    /// Node rules and edge rules (`/api/noderule`, `/api/edgerule`), applied to the
    /// graph by `rules::run`.
    pub node_rules: Definitions<NodeRule>,
    pub edge_rules: Definitions<EdgeRule>,
    /// Alerts (`/api/alert`), evaluated by `alert::run`.
    pub alerts: Definitions<Alert>,
    /// What fired alerts do (webhooks, scripts) and the egress policy they obey.
    pub alert_actions: Arc<crate::alert::Actions>,
    /// Fired alerts as WebSocket messages of the `Alert` namespace.
    pub alert_messages: tokio::sync::broadcast::Sender<Arc<str>>,
    /// Flow tables and what capture sinks need (shared with the capture placer and
    /// pcap uploads).
    pub sinks: SinkContext,
    /// Sections of `/api/status` added by the server (probes).
    pub status_sections: StatusSections,
    /// The running capture points and their counters, for `/metrics`.
    pub capture_board: Arc<crate::metrics::CaptureBoard>,
    /// WebSocket connections the server holds besides subscribers (an analyzer's agents
    /// and replication peers), by kind, for `/metrics`.
    pub fleet_connections: FleetConnections,
    /// An analyzer's etcd call times, for `/metrics`.
    pub etcd_durations: Option<crate::metrics::EtcdDurations>,
    /// In a fleet, whether this analyzer is the elected dispatcher of captures and
    /// injections; `None`: it is alone (allinone) and always dispatches.
    pub leadership: Option<Arc<crate::etcd::Leadership>>,
    /// An analyzer's: the alert states the leader writes to etcd.
    pub alert_states: Option<Arc<crate::etcd::alert_state::AlertStates>>,
    /// Where past revisions of the graph are kept (`G.At`, `G.Context`); `None`:
    /// live graph only.
    pub history: Option<crate::history::History>,
    /// An analyzer's view of its agents' flow tables (`Flows()`).
    pub remote_flows: Option<Arc<crate::capture::flows::RemoteFlows>>,
    /// Captures analyzers dispatched to this agent, placed besides the stored ones.
    pub assigned: Arc<capture::placer::Assigned>,
    /// Injections analyzers dispatched to this agent, run besides the stored ones.
    pub dispatched_injections: Arc<Store<Injection>>,
    /// The queue of flow snapshots, until [`Services::start`] starts its writer.
    flow_queue: Arc<parking_lot::Mutex<Option<crate::history::flows::FlowQueue>>>,
}

impl Services {
    pub fn new(graph: SharedGraph, host_id: &str, config: Config) -> Self {
        let alert_actions = Arc::new(crate::alert::Actions::new(
            config.targets.clone(),
            config.alert_script_dir.clone(),
        ));
        let sinks = SinkContext {
            flows: Arc::default(),
            graph: graph.clone(),
            flow_defaults: config.flow_defaults,
            export_timeouts: config.export_timeouts,
            sflow_agent: config.sflow_agent,
            targets: config.targets,
            namespaces: config.namespaces,
            ovsdb: None,
            flow_history: None,
        };
        let mut extensions = Extensions::new();
        extensions.register(Arc::new(FlowsStep {
            registry: sinks.flows.clone(),
            remote: None,
            past: None,
        }));
        extensions.register(Arc::new(crate::series::MetricsStep));
        extensions.register(Arc::new(crate::capture::raw::RawPacketsStep {
            registry: sinks.flows.clone(),
        }));
        Services {
            graph,
            host_id: host_id.to_owned(),
            extensions: Arc::new(extensions),
            query_budget: Budget::default(),
            started: Instant::now(),
            captures: Store::open(config.state_dir.as_deref()),
            injections: Store::open(None),
            node_rules: Store::open(config.state_dir.as_deref()),
            edge_rules: Store::open(config.state_dir.as_deref()),
            alerts: Store::open(config.state_dir.as_deref()),
            alert_actions,
            alert_messages: tokio::sync::broadcast::channel(crate::alert::MESSAGE_BACKLOG).0,
            sinks,
            status_sections: Arc::new(Map::new),
            fleet_connections: Arc::new(Vec::new),
            etcd_durations: None,
            capture_board: Arc::default(),
            leadership: None,
            alert_states: None,
            history: None,
            remote_flows: None,
            assigned: Arc::default(),
            dispatched_injections: Store::open(None),
            flow_queue: Arc::default(),
        }
    }

    /// Keeps captures and injections in these stores (etcd, for analyzers) instead of
    /// the state dir.
    pub fn with_definitions(
        mut self,
        captures: Definitions<Capture>,
        injections: Definitions<Injection>,
    ) -> Self {
        self.captures = captures;
        self.injections = injections;
        self
    }

    /// `Flows()` also answers with `remote`'s flows (an analyzer's agents'), fetched
    /// before each query that uses it.
    pub fn with_remote_flows(mut self, remote: Arc<crate::capture::flows::RemoteFlows>) -> Self {
        let mut extensions = Extensions::new();
        extensions.register(Arc::new(FlowsStep {
            registry: self.sinks.flows.clone(),
            remote: Some(remote.clone()),
            past: None,
        }));
        extensions.register(Arc::new(crate::series::MetricsStep));
        extensions.register(Arc::new(crate::capture::raw::RawPacketsStep {
            registry: self.sinks.flows.clone(),
        }));
        self.extensions = Arc::new(extensions);
        self.remote_flows = Some(remote);
        self
    }

    /// Keeps the flows of this server's `local` capture targets in the history too
    /// (when the history is on): their snapshots are queued from the capture threads
    /// and written by [`Services::start`]'s flow writer.
    pub fn record_flows(&mut self) {
        let Some(history) = &self.history else {
            return;
        };
        let (recorder, queue) = crate::history::flows::FlowRecorder::new(
            &self.host_id,
            crate::history::flows::QUEUE,
            history.flow_stats.clone(),
        );
        self.sinks.flow_history = Some(recorder);
        *self.flow_queue.lock() = Some(queue);
    }

    /// Keeps node and edge rules in these stores (etcd, for analyzers).
    pub fn with_rules(
        mut self,
        node_rules: Definitions<NodeRule>,
        edge_rules: Definitions<EdgeRule>,
    ) -> Self {
        self.node_rules = node_rules;
        self.edge_rules = edge_rules;
        self
    }

    /// Keeps alerts in this store (etcd, for analyzers).
    pub fn with_alerts(mut self, alerts: Definitions<Alert>) -> Self {
        self.alerts = alerts;
        self
    }

    fn alert_inputs(&self) -> crate::alert::Inputs {
        let leadership = self.leadership.clone();
        crate::alert::Inputs {
            graph: self.graph.clone(),
            alerts: self.alerts.clone(),
            extensions: self.extensions.clone(),
            budget: self.query_budget,
            actions: self.alert_actions.clone(),
            messages: self.alert_messages.clone(),
            evaluates: Arc::new(move || leadership.as_ref().is_none_or(|l| l.is_leader())),
            shared: self.alert_states.clone(),
        }
    }

    fn rules_inputs(&self) -> crate::rules::Inputs {
        crate::rules::Inputs {
            graph: self.graph.clone(),
            node_rules: self.node_rules.clone(),
            edge_rules: self.edge_rules.clone(),
            extensions: self.extensions.clone(),
            budget: self.query_budget,
            host: self.host_id.clone(),
            origin: self.api_origin(),
        }
    }

    /// Whether this process dispatches captures and injections now: always when
    /// alone, only while elected in a fleet.
    pub fn dispatches(&self) -> bool {
        self.leadership.as_ref().is_none_or(|l| l.is_leader())
    }

    /// `Origin` of elements created through the API.
    pub fn api_origin(&self) -> String {
        format!("api.{}", self.host_id)
    }

    /// The sections of `/api/status` the services know about: `Captures` (with the
    /// store's last persistence failure and, by capture, why a query runs nowhere)
    /// and whatever the server added.
    pub fn status_sections(&self) -> Map<String, Value> {
        let mut sections = Map::new();
        let mut store = Map::new();
        if let Some(e) = self.captures.persist_error() {
            store.insert("Error".into(), e.into());
        }
        store.insert("IsMaster".into(), self.dispatches().into());
        if let Some(leader) = self.leadership.as_ref().and_then(|l| l.leader()) {
            store.insert("Leader".into(), leader.into());
        }
        let errors: Map<String, Value> = self
            .captures
            .list()
            .into_iter()
            .filter_map(|c| Some((c.uuid.clone(), c.active.error()?.into())))
            .collect();
        if !errors.is_empty() {
            store.insert("QueryErrors".into(), Value::Object(errors));
        }
        sections.insert("Captures".into(), Value::Object(store));
        let mut alerts = Map::new();
        if let Some(e) = self.alerts.persist_error() {
            alerts.insert("Error".into(), e.into());
        }
        alerts.insert("IsMaster".into(), self.dispatches().into());
        sections.insert("Alerts".into(), Value::Object(alerts));
        if let Some(h) = &self.history {
            sections.insert("History".into(), h.status());
        }
        sections.extend((self.status_sections)());
        sections
    }

    /// Starts the background work: resource expiry, the capture placer and the
    /// injection runner. They run until `shutdown` turns true; then captures stop
    /// cleanly (exporters send what they still hold).
    pub fn start(&self, shutdown: watch::Receiver<bool>) -> Background {
        let expiry = tokio::spawn(expire_resources(self.captures.clone()));
        let ctx = self.sinks.clone();
        let sinks: SinkFactory = Arc::new(move |capture: &Capture, target: &Target| {
            capture::sink_for(capture, target, &ctx)
        });
        let ctx = self.sinks.clone();
        let open: InputFactory = Arc::new(move |capture: &Capture, target: &Target| {
            capture::open_input(capture, target, &ctx)
        });
        if let Some(ovsdb) = self.sinks.ovsdb.clone() {
            // What a previous run left in OVSDB goes now, not at the first capture.
            tokio::task::spawn_blocking(move || {
                if let Err(e) = ovsdb.ensure_clean() {
                    tracing::debug!("OVSDB clean-up deferred to the first OVS capture: {e}");
                }
            });
        }
        let inputs = capture::placer::Inputs {
            graph: self.graph.clone(),
            captures: self.captures.clone(),
            extensions: self.extensions.clone(),
            budget: self.query_budget,
            flows: self.sinks.flows.clone(),
            sinks,
            inputs: open,
            board: self.capture_board.clone(),
            assigned: self.assigned.clone(),
        };
        let placer = tokio::spawn(capture::placer::run(inputs, shutdown.clone()));
        let injections = tokio::spawn(crate::injection::run(
            self.graph.clone(),
            self.injections.clone(),
            self.dispatched_injections.clone(),
            shutdown.clone(),
        ));
        let rules = tokio::spawn(crate::rules::run(self.rules_inputs(), shutdown.clone()));
        let alerts = tokio::spawn(crate::alert::run(self.alert_inputs(), shutdown.clone()));
        let mut tasks = vec![placer, injections, rules, alerts];
        if let (Some(history), Some(queue)) = (&self.history, self.flow_queue.lock().take()) {
            tasks.push(tokio::spawn(crate::history::flows::run(
                history.store.clone(),
                history.flow_stats.clone(),
                history.retention,
                queue,
                shutdown.clone(),
            )));
        }
        tasks.extend(self.start_history(shutdown));
        Background { expiry, tasks }
    }
}

impl Services {
    /// The background work of an analyzer: resource expiry, the history, and node
    /// and edge rules applied to its merged graph (an edge rule may link the nodes of
    /// two hosts). Captures and injections run on agents, never on the analyzer's
    /// merged graph.
    pub fn start_without_placement(&self, shutdown: watch::Receiver<bool>) -> Background {
        let mut tasks = vec![
            tokio::spawn(crate::rules::run(self.rules_inputs(), shutdown.clone())),
            // Alerts watch the merged graph; only the elected dispatcher evaluates.
            tokio::spawn(crate::alert::run(self.alert_inputs(), shutdown.clone())),
        ];
        tasks.extend(self.start_history(shutdown));
        Background {
            expiry: tokio::spawn(expire_resources(self.captures.clone())),
            tasks,
        }
    }

    /// The history writer and the timeline's feed, when the history is on.
    fn start_history(&self, shutdown: watch::Receiver<bool>) -> Vec<JoinHandle<()>> {
        let Some(history) = self.history.clone() else {
            return Vec::new();
        };
        let mut tasks = Vec::new();
        if history.timeline().is_some() {
            tasks.push(tokio::spawn(crate::history::timeline::feed(
                self.graph.clone(),
                history.clone(),
                shutdown.clone(),
            )));
        }
        // A store the fleet's analyzers share is written by the leader only.
        let gate = match &self.leadership {
            Some(l) if history.store.shared() => crate::history::writer::Gate::Leader(
                l.clone() as Arc<dyn crate::history::writer::Leadership>
            ),
            _ => crate::history::writer::Gate::Alone,
        };
        tasks.push(tokio::spawn(crate::history::writer::run(
            self.graph.clone(),
            history,
            gate,
            shutdown,
        )));
        tasks
    }
}

/// The background tasks of [`Services::start`].
pub struct Background {
    expiry: JoinHandle<()>,
    tasks: Vec<JoinHandle<()>>,
}

impl Background {
    /// Waits for the tasks to end (after the shutdown signal).
    pub async fn join(self) {
        for t in self.tasks {
            let _ = t.await;
        }
        self.expiry.abort();
    }
}

/// Deletes captures whose `X-Resource-TTL` has passed.
async fn expire_resources(captures: Definitions<Capture>) {
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    loop {
        tick.tick().await;
        captures.expire(topotap_topology::now_ms()).await;
    }
}
