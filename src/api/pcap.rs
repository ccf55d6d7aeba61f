//! `POST /api/pcap`: a pcap (or pcapng) file fed through the same flow table and
//! targets as a live capture, as fast as it can be read.
//!
//! Capture parameters come as query parameters with the capture's field names
//! (`?TargetType=netflowv5&Target=10.0.0.9:2055`, `LayerKeyMode`, `SamplingRate`,
//! `HeaderSize`, `Name`). With the local target (the default) the flows stay queryable
//! with `G.Flows().Has('CaptureID', <CaptureID>)` for the last few uploads. The answer
//! (202, as Skydive) says what was read; a body that is not a capture file is a 400, a
//! file truncated part-way is read up to the damage and the reason given in `Error`.

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use serde_json::{json, Map, Value};
use topotap_targets::packet::Timestamp;
use topotap_targets::pcapfile::PcapReader;
use topotap_topology::Identifier;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::{Filter, Rejection};

use super::{
    limited_body, reply_json, respond, with_state, ApiError, ApiResult, AppState, BodyDeadline,
};
use crate::capture::placer::Target;
use crate::capture::{self, Capture};

/// Largest capture file accepted in one upload.
pub const MAX_PCAP_BODY: u64 = 1024 * 1024 * 1024;

/// Exporters' timers advance with the packets' own timestamps, at this granularity.
const TICK: Duration = Duration::from_millis(100);

const NUMERIC: &[&str] = &["SamplingRate", "PollingInterval", "HeaderSize"];

pub fn routes(state: AppState) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    let body = limited_body(
        MAX_PCAP_BODY,
        BodyDeadline::Idle(state.limits.body_read_timeout),
    );
    warp::path!("api" / "pcap")
        .and(warp::post())
        .and(with_state(state))
        .and(warp::query::<HashMap<String, String>>())
        .and(body)
        .and_then(
            |s: AppState, q: HashMap<String, String>, body: Bytes| async move {
                respond(upload(s, q, body).await)
            },
        )
}

/// The capture parameters of an upload, validated like a capture's.
fn parameters(query: &HashMap<String, String>) -> Result<Capture, ApiError> {
    let mut obj = Map::new();
    for (k, v) in query {
        let value = if NUMERIC.contains(&k.as_str()) {
            let n: u64 = v
                .parse()
                .map_err(|_| ApiError::bad_request(format!("{k}: not a number: {v:?}")))?;
            json!(n)
        } else {
            json!(v)
        };
        obj.insert(k.clone(), value);
    }
    let mut capture: Capture = serde_json::from_value(Value::Object(obj))
        .map_err(|e| ApiError::bad_request(format!("invalid capture parameters: {e}")))?;
    capture
        .validate_parameters()
        .map_err(ApiError::bad_request)?;
    capture.apply_defaults();
    capture.uuid = Identifier::random().to_string();
    Ok(capture)
}

async fn upload(s: AppState, query: HashMap<String, String>, body: Bytes) -> ApiResult {
    let capture = parameters(&query)?;
    // Reject what is not a capture file before building any sink.
    PcapReader::new(&body).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let ctx = s.sinks.clone();
    let result = tokio::task::spawn_blocking(move || feed(&capture, &ctx, &body))
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))??;
    Ok(reply_json(StatusCode::ACCEPTED, &result))
}

fn feed(capture: &Capture, ctx: &capture::SinkContext, body: &[u8]) -> Result<Value, ApiError> {
    let target = Target {
        node: Identifier::from(format!("pcap:{}", capture.uuid).as_str()),
        tid: String::new(),
        ifname: String::new(),
        if_index: 0,
        netns: None,
    };
    let mut sink = match capture.target_type.as_str() {
        "" | "local" => capture::local_sink(capture, &target, ctx, true),
        // A socket that cannot be opened is not the client's mistake: 503, not 400.
        _ => capture::sink_for(capture, &target, ctx)?,
    };
    let reader = PcapReader::new(body).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let (mut packets, mut bytes) = (0u64, 0u64);
    let mut error = None;
    let mut last_tick: Option<Timestamp> = None;
    let mut last = Timestamp::ZERO;
    for record in reader {
        match record {
            Ok(r) => {
                packets += 1;
                bytes += u64::from(r.orig_len);
                last = last.max(r.timestamp);
                sink.packet(r.link_type, r.timestamp, r.orig_len, r.data);
                match last_tick {
                    Some(t) if r.timestamp.saturating_since(t) < TICK => {}
                    _ => {
                        sink.tick(r.timestamp);
                        last_tick = Some(r.timestamp);
                    }
                }
            }
            Err(e) => {
                error = Some(format!("{e} ({packets} packets read before it)"));
                break;
            }
        }
    }
    sink.finish(last);
    let mut out = json!({
        "CaptureID": capture.uuid,
        "Packets": packets,
        "Bytes": bytes,
    });
    if matches!(capture.target_type.as_str(), "" | "local") {
        out["Flows"] = ctx.flows.flow_count(&capture.uuid).into();
    }
    if let Some(stats) = sink.export_stats() {
        out["Export"] = stats.to_json();
    }
    if let Some(e) = error {
        out["Error"] = e.into();
    }
    Ok(out)
}
