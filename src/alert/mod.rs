//! Alerts (`/api/alert`, Skydive §1.9): a Gremlin expression watched on graph changes
//! (`Trigger` `graph`, the default) or on a period (`duration:10s`), and what to do when
//! it holds.
//!
//! - An expression *holds* when its result is truthy: a non-empty list, object or
//!   string, `true`, a non-zero number.
//! - It *fires* when it holds with a result that differs from the previous
//!   evaluation's (Skydive compares the whole result). Elements compare by ID, so a
//!   matched node whose counters change does not fire again; a node joining or leaving
//!   the matched set, or a changed value (`Values('State')` going from UP to DOWN)
//!   does. A result that no longer holds re-arms it.
//! - Firing publishes `{"UUID","Name","Timestamp","ReasonData"}` on the WebSocket
//!   `Alert` namespace to every subscriber, and runs the `Action`: a webhook (POST of
//!   that JSON to an `http(s)://` URL within `--allow-target`) or a script
//!   (`file://NAME`, inside `--alert-script-dir`, the JSON on its standard input); see
//!   [`action`].
//!
//! [`run`] evaluates every graph alert after changes (debounced like the capture
//! placer) and every periodic alert when due, each within the server's query budget.
//! An expression that fails records its error on its alert (`Error`, `State: error`)
//! and the others go on. In a fleet only the elected dispatcher evaluates, so an alert
//! fires once for the fleet; it writes each alert's state (with a digest of the result
//! that last fired) to etcd ([`crate::etcd::alert_state`]): every analyzer shows it,
//! and the next leader starts from it, so a condition that already fired does not
//! fire again when the leader changes.

pub mod action;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tokio::sync::broadcast;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::watch;
use topotap_topology::gremlin::{compile, Budget, Extensions};
use topotap_topology::SharedGraph;
use tracing::debug;

use crate::capture::placer::Debounce;
use crate::error::Error;
use crate::resources::{headed_resource, Definitions, Resource};

pub use action::Actions;

/// Shortest period of a `duration:` trigger.
pub const MIN_PERIOD: Duration = Duration::from_secs(1);
/// Longest period of a `duration:` trigger.
pub const MAX_PERIOD: Duration = Duration::from_secs(86_400);
/// Longest expression.
pub const MAX_EXPRESSION: usize = 64 * 1024;
/// Alert messages waiting for the WebSocket sessions; a session further behind misses
/// the oldest.
pub const MESSAGE_BACKLOG: usize = 1024;

/// What the engine last found about an alert, shared by every copy of it.
#[derive(Debug, Clone, Default)]
pub struct AlertStatus(Arc<Mutex<Shown>>);

impl AlertStatus {
    fn get(&self) -> Shown {
        self.0.lock().clone()
    }

    fn set(&self, shown: Shown) {
        *self.0.lock() = shown;
    }
}

impl PartialEq for AlertStatus {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

/// The output-only fields of an alert.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Shown {
    pub state: &'static str,
    pub error: Option<String>,
    pub action_error: Option<String>,
    pub last_fired: i64,
    pub fire_count: u64,
}

headed_resource! {
/// An alert as clients send and receive it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Alert {
    /// Gremlin, evaluated on the live graph; the alert fires when its result turns
    /// truthy (non-empty, `true`, non-zero) or changes while truthy.
    #[serde(rename = "Expression", default)]
    pub expression: String,
    /// Empty (publish on the WebSocket only), `http://...` / `https://...` (a POST of
    /// the alert message; the host must be within `--allow-target`), or `file://NAME`
    /// (an executable inside `--alert-script-dir`, run with the message on stdin).
    #[serde(rename = "Action", default)]
    pub action: String,
    /// `graph` (or empty): on graph changes; `duration:10s`: every 10 seconds.
    #[serde(rename = "Trigger", default)]
    pub trigger: String,
    /// Set by the server (RFC 3339).
    #[serde(
        rename = "CreateTime",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    #[schema(read_only)]
    pub create_time: String,
    /// Output only: `ok` (does not hold), `firing` (holds), `error` (the expression
    /// failed), `pending` (not evaluated yet).
    #[serde(rename = "State", default, skip_serializing_if = "String::is_empty")]
    #[schema(read_only)]
    pub state: String,
    /// Output only: why the expression failed at its last evaluation.
    #[serde(rename = "Error", default, skip_serializing_if = "String::is_empty")]
    #[schema(read_only)]
    pub error: String,
    /// Output only: why the action failed the last time it ran.
    #[serde(
        rename = "ActionError",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    #[schema(read_only)]
    pub action_error: String,
    /// Output only: when it last fired, ms since the epoch (0: never).
    #[serde(rename = "LastFired", default, skip_serializing_if = "is_zero")]
    #[schema(read_only)]
    pub last_fired: i64,
    /// Output only: how many times it fired since the server started (in a fleet: since
    /// it was created, whichever analyzer led).
    #[serde(rename = "FireCount", default, skip_serializing_if = "is_zero_u64")]
    #[schema(read_only)]
    pub fire_count: u64,
    #[serde(skip)]
    pub status: AlertStatus,
}
}

fn is_zero(v: &i64) -> bool {
    *v == 0
}

fn is_zero_u64(v: &u64) -> bool {
    *v == 0
}

/// When an alert is evaluated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    Graph,
    Every(Duration),
}

impl Trigger {
    pub fn parse(text: &str) -> Result<Trigger, Error> {
        match text.trim() {
            "" | "graph" => Ok(Trigger::Graph),
            t => {
                let Some(d) = t.strip_prefix("duration:") else {
                    return Err(Error::invalid(format!(
                        "Trigger: {t:?} is neither graph nor duration:PERIOD (duration:10s)"
                    )));
                };
                let d = d.trim();
                let period = crate::resources::parse_go_duration(d.strip_prefix('+').unwrap_or(d))
                    .map_err(|_| {
                        Error::invalid(format!(
                            "Trigger: {d:?} is not a duration such as 10s, 1m30s"
                        ))
                    })?;
                if !(MIN_PERIOD..=MAX_PERIOD).contains(&period) {
                    return Err(Error::invalid(format!(
                        "Trigger: the period must be between {}s and {}s",
                        MIN_PERIOD.as_secs(),
                        MAX_PERIOD.as_secs()
                    )));
                }
                Ok(Trigger::Every(period))
            }
        }
    }
}

impl Alert {
    /// Checks the expression with the server's extensions, the trigger and the action
    /// (a webhook's host against `--allow-target`: 403; a script within the script
    /// directory). Blocking: a webhook's host name is resolved.
    pub fn validate(&self, ext: &Extensions, actions: &Actions) -> Result<(), Error> {
        let text = self.expression.trim();
        if text.is_empty() {
            return Err(Error::invalid(
                "Expression: a Gremlin expression is required",
            ));
        }
        if text.len() > MAX_EXPRESSION {
            return Err(Error::invalid(format!(
                "Expression: longer than {MAX_EXPRESSION} bytes"
            )));
        }
        let q = compile(text, ext).map_err(|e| {
            Error::invalid(format!("Expression: Not a valid Gremlin expression: {e}"))
        })?;
        if q.time_context().is_some() {
            return Err(Error::invalid(
                "Expression: alerts watch the live graph: G.At and G.Context are not allowed",
            ));
        }
        Trigger::parse(&self.trigger)?;
        actions.check(&self.action)?;
        Ok(())
    }

    fn show(&mut self, shown: Shown) {
        self.state = if shown.state.is_empty() {
            "pending".into()
        } else {
            shown.state.into()
        };
        self.error = shown.error.unwrap_or_default();
        self.action_error = shown.action_error.unwrap_or_default();
        self.last_fired = shown.last_fired;
        self.fire_count = shown.fire_count;
    }
}

impl Resource for Alert {
    const NAME: &'static str = "alert";
    const TITLE: &'static str = "Alert";

    fn uuid(&self) -> &str {
        &self.uuid
    }

    fn set_uuid(&mut self, uuid: String) {
        self.uuid = uuid;
    }

    fn prepare(&mut self) -> Result<(), Error> {
        // Expression, trigger and action were checked by the route with the server's
        // extensions and egress policy.
        self.expression = self.expression.trim().to_owned();
        self.create_time = crate::injection::resource::rfc3339_now();
        self.show(Shown::default());
        self.state.clear();
        Ok(())
    }

    fn duplicates(&self, other: &Self) -> bool {
        self.name == other.name
            && self.expression == other.expression
            && self.action == other.action
            && self.trigger == other.trigger
    }

    fn decorate(&mut self, _graph: &topotap_topology::Graph) {
        let shown = self.status.get();
        self.show(shown);
    }
}

// ---------------------------------------------------------------------------------
// Evaluation.

/// Whether a result holds: Skydive's truthiness of a Gremlin answer.
pub fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|x| x != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

/// What two results are compared by: nodes and edges (objects with `ID` and
/// `Metadata`) by their ID, everything else as it is.
pub fn fingerprint(v: &Value) -> Value {
    match v {
        Value::Object(o) if o.contains_key("ID") && o.contains_key("Metadata") => {
            o.get("ID").cloned().unwrap_or(Value::Null)
        }
        Value::Object(o) => Value::Object(
            o.iter()
                .map(|(k, v)| (k.clone(), fingerprint(v)))
                .collect::<Map<_, _>>(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(fingerprint).collect()),
        other => other.clone(),
    }
}

/// Evaluates an expression on the live graph within `budget`: its JSON answer.
/// Blocking.
pub fn evaluate(
    graph: &SharedGraph,
    expression: &str,
    ext: &Extensions,
    budget: &Budget,
) -> Result<Value, String> {
    let q = compile(expression, ext).map_err(|e| e.to_string())?;
    let answer = topotap_topology::gremlin::answer(graph, &q, budget).map_err(|e| e.to_string())?;
    let mut bytes = Vec::with_capacity(answer.len());
    for chunk in answer.into_chunks(64 * 1024) {
        bytes.extend_from_slice(&chunk);
    }
    serde_json::from_slice(&bytes).map_err(|e| format!("cannot read the answer: {e}"))
}

/// A digest of a result's fingerprint ([`fingerprint`]), object keys in order, the
/// same on every analyzer.
pub fn digest(v: &Value) -> String {
    fn canonical(v: &Value, out: &mut String) {
        match v {
            Value::Object(o) => {
                let mut keys: Vec<&String> = o.keys().collect();
                keys.sort();
                out.push('{');
                for k in keys {
                    out.push_str(&Value::String(k.clone()).to_string());
                    out.push(':');
                    canonical(&o[k], out);
                    out.push(',');
                }
                out.push('}');
            }
            Value::Array(a) => {
                out.push('[');
                for x in a {
                    canonical(x, out);
                    out.push(',');
                }
                out.push(']');
            }
            other => out.push_str(&other.to_string()),
        }
    }
    let mut text = String::new();
    canonical(&fingerprint(v), &mut text);
    let d = ring::digest::digest(&ring::digest::SHA256, text.as_bytes());
    d.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// The engine's memory of one alert.
#[derive(Default)]
struct Track {
    /// Digest of the last result that held; `None`: armed.
    last: Option<String>,
    /// Periodic alerts: when next due.
    due: Option<Instant>,
    /// The trigger the alert had when `due` was set.
    trigger: Option<Trigger>,
}

/// The alert message (`Obj` of the WebSocket message, body of a webhook, a script's
/// standard input).
#[derive(Debug, Clone, Serialize)]
pub struct AlertMessage {
    #[serde(rename = "UUID")]
    pub uuid: String,
    #[serde(rename = "Name")]
    pub name: String,
    #[serde(rename = "Timestamp")]
    pub timestamp: String,
    #[serde(rename = "ReasonData")]
    pub reason_data: Value,
}

/// The WebSocket text of an alert message.
fn ws_text(msg: &AlertMessage) -> Arc<str> {
    let env = serde_json::json!({
        "Namespace": "Alert",
        "Type": "Alert",
        "UUID": uuid::Uuid::new_v4().to_string(),
        "Obj": msg,
    });
    env.to_string().into()
}

/// What the engine needs.
#[derive(Clone)]
pub struct Inputs {
    pub graph: SharedGraph,
    pub alerts: Definitions<Alert>,
    pub extensions: Arc<Extensions>,
    pub budget: Budget,
    pub actions: Arc<Actions>,
    /// Where fired alerts are published (the WebSocket sessions read it).
    pub messages: broadcast::Sender<Arc<str>>,
    /// Whether this process evaluates now (always alone; the elected dispatcher in a
    /// fleet).
    pub evaluates: Arc<dyn Fn() -> bool + Send + Sync>,
    /// In a fleet: the alert states in etcd, written by the leader, shown by all.
    pub shared: Option<Arc<crate::etcd::alert_state::AlertStates>>,
}

/// The engine's state, kept across passes.
#[derive(Default)]
pub struct Engine {
    tracks: HashMap<String, Track>,
    /// Output fields by alert UUID (action tasks write `action_error` here too).
    shown: Arc<Mutex<HashMap<String, Shown>>>,
    /// In a fleet: the states as last written to etcd (or read from it when this
    /// analyzer took office); `None` until then.
    written: Option<HashMap<String, SharedState>>,
}

use crate::etcd::alert_state::SharedState;

fn state_name(s: &str) -> &'static str {
    match s {
        "ok" => "ok",
        "firing" => "firing",
        "error" => "error",
        _ => "",
    }
}

fn shown_of(s: &SharedState) -> Shown {
    Shown {
        state: state_name(&s.state),
        error: (!s.error.is_empty()).then(|| s.error.clone()),
        action_error: (!s.action_error.is_empty()).then(|| s.action_error.clone()),
        last_fired: s.last_fired,
        fire_count: s.fire_count,
    }
}

impl Engine {
    /// Evaluates the graph alerts (when `graph` is true) and the periodic alerts that
    /// are due at `now`; fires those whose result turned or changed while true.
    /// Blocking. Returns when the next periodic alert is due.
    pub fn pass(&mut self, inputs: &Inputs, graph: bool, now: Instant) -> Option<Instant> {
        topotap_topology::blocking::section("alerts");
        let alerts = inputs.alerts.list();
        let live: std::collections::HashSet<&str> =
            alerts.iter().map(|a| a.uuid.as_str()).collect();
        self.tracks.retain(|u, _| live.contains(u.as_str()));
        self.shown.lock().retain(|u, _| live.contains(u.as_str()));
        let mut next: Option<Instant> = None;
        for alert in &alerts {
            let trigger = match Trigger::parse(&alert.trigger) {
                Ok(t) => t,
                Err(e) => {
                    self.record(inputs, alert, Err(e.to_string()));
                    continue;
                }
            };
            let track = self.tracks.entry(alert.uuid.clone()).or_default();
            if track.trigger != Some(trigger) {
                track.trigger = Some(trigger);
                track.due = match trigger {
                    Trigger::Graph => None,
                    Trigger::Every(_) => Some(now),
                };
            }
            let run = match (trigger, track.due) {
                (Trigger::Graph, _) => graph,
                (Trigger::Every(period), Some(due)) if due <= now => {
                    track.due = Some(now + period);
                    true
                }
                (Trigger::Every(_), _) => false,
            };
            if let Some(d) = track.due {
                next = Some(next.map_or(d, |n| n.min(d)));
            }
            if !run {
                continue;
            }
            let result = evaluate(
                &inputs.graph,
                &alert.expression,
                &inputs.extensions,
                &inputs.budget,
            );
            self.record(inputs, alert, result);
        }
        next
    }

    /// Records an evaluation: its error, or whether it holds and fires.
    fn record(&mut self, inputs: &Inputs, alert: &Alert, result: Result<Value, String>) {
        let mut shown = self.shown.lock();
        let s = shown.entry(alert.uuid.clone()).or_default();
        match result {
            Err(e) => {
                debug!(alert = %alert.uuid, "alert expression failed: {e}");
                s.state = "error";
                s.error = Some(e);
            }
            Ok(value) => {
                s.error = None;
                let track = self.tracks.entry(alert.uuid.clone()).or_default();
                if truthy(&value) {
                    s.state = "firing";
                    let print = digest(&value);
                    if track.last.as_ref() != Some(&print) {
                        track.last = Some(print);
                        s.last_fired = topotap_topology::now_ms();
                        s.fire_count += 1;
                        let msg = AlertMessage {
                            uuid: alert.uuid.clone(),
                            name: alert.name.clone(),
                            timestamp: crate::injection::resource::rfc3339_now(),
                            reason_data: value,
                        };
                        let _ = inputs.messages.send(ws_text(&msg));
                        inputs.actions.spawn(alert.clone(), msg, self.shown.clone());
                    }
                } else {
                    s.state = "ok";
                    track.last = None;
                }
            }
        }
        alert.status.set(s.clone());
    }
}

impl Engine {
    /// Starts from the states the previous leader left (taking office).
    fn adopt(&mut self, states: HashMap<String, SharedState>) {
        self.tracks.clear();
        let mut shown = self.shown.lock();
        shown.clear();
        for (uuid, st) in &states {
            self.tracks.entry(uuid.clone()).or_default().last =
                (!st.fingerprint.is_empty()).then(|| st.fingerprint.clone());
            shown.insert(uuid.clone(), shown_of(st));
        }
        drop(shown);
        self.written = Some(states);
    }

    /// The states that differ from what was last written, and the alerts gone.
    fn changes(&self) -> (Vec<(String, SharedState)>, Vec<String>) {
        let Some(written) = &self.written else {
            return (Vec::new(), Vec::new());
        };
        let shown = self.shown.lock();
        let mut put = Vec::new();
        for (uuid, s) in shown.iter() {
            let st = SharedState {
                state: s.state.to_owned(),
                error: s.error.clone().unwrap_or_default(),
                action_error: s.action_error.clone().unwrap_or_default(),
                last_fired: s.last_fired,
                fire_count: s.fire_count,
                fingerprint: self
                    .tracks
                    .get(uuid)
                    .and_then(|t| t.last.clone())
                    .unwrap_or_default(),
            };
            if written.get(uuid) != Some(&st) {
                put.push((uuid.clone(), st));
            }
        }
        let gone = written
            .keys()
            .filter(|u| !shown.contains_key(*u))
            .cloned()
            .collect();
        (put, gone)
    }
}

/// In a fleet, after a pass of the leader: writes the states that changed to etcd
/// (while it still leads) and removes those of deleted alerts.
async fn sync(inputs: &Inputs, engine: &Mutex<Engine>) {
    let Some(shared) = &inputs.shared else { return };
    let (put, gone) = engine.lock().changes();
    for (uuid, st) in put {
        if !(inputs.evaluates)() {
            return;
        }
        match shared.put(&uuid, &st).await {
            Ok(()) => {
                if let Some(w) = engine.lock().written.as_mut() {
                    w.insert(uuid, st);
                }
            }
            Err(e) => {
                tracing::warn!(alert = %uuid, "cannot write the alert state: {e}");
                return;
            }
        }
    }
    for uuid in gone {
        if !(inputs.evaluates)() || shared.delete(&uuid).await.is_err() {
            return;
        }
        if let Some(w) = engine.lock().written.as_mut() {
            w.remove(&uuid);
        }
    }
}

/// A follower shows the states the leader wrote.
fn show_shared(inputs: &Inputs) {
    let Some(shared) = &inputs.shared else { return };
    for alert in inputs.alerts.list() {
        if let Some(st) = shared.get(&alert.uuid) {
            alert.status.set(shown_of(&st));
        }
    }
}

/// Shows `shown` on the alert `uuid` (every copy of it shares the status).
pub(crate) fn publish_shown(alert: &Alert, shown: &Mutex<HashMap<String, Shown>>) {
    if let Some(s) = shown.lock().get(&alert.uuid) {
        alert.status.set(s.clone());
    }
}

/// Evaluates the alerts until `shutdown` turns true.
pub async fn run(inputs: Inputs, mut shutdown: watch::Receiver<bool>) {
    let mut store = inputs.alerts.watch();
    let mut events = inputs.graph.subscribe();
    let mut debounce = Debounce::default();
    debounce.changed(Instant::now());
    let engine = Arc::new(Mutex::new(Engine::default()));
    let mut next_periodic: Option<Instant> = None;
    loop {
        let due = Debounce::sleep_until(debounce.deadline());
        let periodic = Debounce::sleep_until(next_periodic);
        let graph_due = tokio::select! {
            _ = shutdown.changed() => break,
            c = store.changed() => {
                if c.is_err() { break; }
                debounce.changed(Instant::now());
                continue;
            }
            ev = events.recv() => {
                match ev {
                    Ok(_) => debounce.changed(Instant::now()),
                    Err(RecvError::Lagged(_)) => {
                        events = inputs.graph.subscribe();
                        debounce.changed(Instant::now());
                    }
                    Err(RecvError::Closed) => break,
                }
                continue;
            }
            _ = due => debounce.take_due(Instant::now()),
            _ = periodic => false,
        };
        if !(inputs.evaluates)() {
            // Not the dispatcher: show the leader's states, and look again in a while
            // (the store and the graph wake it too).
            engine.lock().written = None;
            show_shared(&inputs);
            next_periodic = Some(Instant::now() + MIN_PERIOD);
            continue;
        }
        if let Some(shared) = &inputs.shared {
            if engine.lock().written.is_none() {
                // Taking office: from the states the previous leader left, read afresh;
                // nothing is evaluated before they are known.
                match shared.read().await {
                    Ok(states) => engine.lock().adopt(states),
                    Err(e) => {
                        tracing::warn!("alerts wait for their states in etcd: {e}");
                        next_periodic = Some(Instant::now() + MIN_PERIOD);
                        continue;
                    }
                }
                debounce.changed(Instant::now());
            }
        }
        let (i, e) = (inputs.clone(), engine.clone());
        match tokio::task::spawn_blocking(move || e.lock().pass(&i, graph_due, Instant::now()))
            .await
        {
            Ok(n) => next_periodic = n,
            Err(e) => {
                tracing::error!("alert evaluation failed: {e}");
                next_periodic = Some(Instant::now() + MIN_PERIOD);
            }
        }
        if inputs.shared.is_some() {
            sync(&inputs, &engine).await;
            // Action errors come later: written at the next look.
            let soon = Instant::now() + MIN_PERIOD;
            next_periodic = Some(next_periodic.map_or(soon, |n| n.min(soon)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn triggers() {
        assert_eq!(Trigger::parse("").unwrap(), Trigger::Graph);
        assert_eq!(Trigger::parse("graph").unwrap(), Trigger::Graph);
        assert_eq!(
            Trigger::parse("duration:+1s").unwrap(),
            Trigger::Every(Duration::from_secs(1))
        );
        assert_eq!(
            Trigger::parse("duration:1m30s").unwrap(),
            Trigger::Every(Duration::from_secs(90))
        );
        for bad in [
            "sometimes",
            "duration:",
            "duration:10",
            "duration:10ms",
            "duration:48h",
        ] {
            let e = Trigger::parse(bad).unwrap_err().to_string();
            assert!(e.starts_with("Trigger: "), "{bad}: {e}");
        }
    }

    #[test]
    fn truthiness_and_fingerprints() {
        for v in [
            json!(null),
            json!(false),
            json!(0),
            json!(""),
            json!([]),
            json!({}),
        ] {
            assert!(!truthy(&v), "{v}");
        }
        for v in [
            json!(true),
            json!(2),
            json!("x"),
            json!([0]),
            json!({"a": 1}),
        ] {
            assert!(truthy(&v), "{v}");
        }
        let a = json!([{"ID": "n1", "Metadata": {"RxBytes": 1}}]);
        let b = json!([{"ID": "n1", "Metadata": {"RxBytes": 2}}]);
        let c = json!([{"ID": "n1", "Metadata": {}}, {"ID": "n2", "Metadata": {}}]);
        assert_eq!(fingerprint(&a), fingerprint(&b));
        assert_ne!(fingerprint(&a), fingerprint(&c));
        assert_ne!(fingerprint(&json!(["UP"])), fingerprint(&json!(["DOWN"])));
    }

    #[test]
    fn digests_ignore_key_order_and_counters() {
        let mut a = Map::new();
        a.insert("b".into(), json!(1));
        a.insert(
            "a".into(),
            json!([{"ID": "n1", "Metadata": {"RxBytes": 1}}]),
        );
        let mut b = Map::new();
        b.insert(
            "a".into(),
            json!([{"ID": "n1", "Metadata": {"RxBytes": 2}}]),
        );
        b.insert("b".into(), json!(1));
        assert_eq!(digest(&Value::Object(a)), digest(&Value::Object(b)));
        assert_ne!(digest(&json!(["UP"])), digest(&json!(["DOWN"])));
        assert_eq!(digest(&json!(1)).len(), 64);
    }
}
