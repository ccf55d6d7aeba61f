//! `POST /api/pcap`: a pcap (or pcapng) file fed through the same flow table and
//! targets as a live capture, as fast as it can be read.
//!
//! Capture parameters come as query parameters with the capture's field names
//! (`?TargetType=netflowv5&Target=10.0.0.9:2055`, `LayerKeyMode`, `SamplingRate`,
//! `HeaderSize`, `RawPacketLimit`, `Name`). With the local target (the default) the
//! flows stay queryable with `G.Flows().Has('CaptureID', <CaptureID>)` for the last few
//! uploads, and with the history on they are recorded on the file's clock:
//! `G.At(<a time in the file>).Flows()` finds them (and their raw packets) later. The answer
//! (202, as Skydive) says what was read; a body that is not a capture file is a 400, a
//! file truncated part-way is read up to the damage and the reason given in `Error`, and
//! a collector that cannot be resolved or reached is a 503.
//!
//! The body is read as it arrives, packet by packet ([`crate::pcap::replay`]), in bounded
//! memory whatever its size.

use std::collections::HashMap;
use std::io::{self, Read};
use std::pin::pin;

use bytes::{Buf, Bytes};
use futures_util::{Stream, StreamExt};
use serde_json::{json, Map, Value};
use tokio::sync::mpsc;
use topotap_topology::Identifier;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::{Filter, Rejection};

use super::{reply_json, respond, with_state, ApiError, ApiResult, AppState};
use crate::capture::Capture;
use crate::error::Error;

/// Body chunks waiting for the reader: with hyper's chunks of at most a few tens of KiB,
/// an upload holds well under a MiB in flight, however large the file.
const PENDING_CHUNKS: usize = 8;

const NUMERIC: &[&str] = &[
    "SamplingRate",
    "PollingInterval",
    "HeaderSize",
    "RawPacketLimit",
];

pub fn routes(state: AppState) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    warp::path!("api" / "pcap")
        .and(warp::post())
        .and(with_state(state))
        .and(warp::query::<HashMap<String, String>>())
        .and(warp::body::stream())
        .and_then(|s: AppState, q: HashMap<String, String>, body| async move {
            respond(upload(s, q, body).await)
        })
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
    let mut capture: Capture =
        serde_path_to_error::deserialize(Value::Object(obj)).map_err(|e| {
            let path = e.path().to_string();
            if path.is_empty() || path == "." {
                ApiError::bad_request(format!("invalid capture parameters: {}", e.into_inner()))
            } else {
                ApiError::bad_request(format!("{path}: {}", e.into_inner()))
            }
        })?;
    capture.validate_parameters()?;
    capture.apply_defaults();
    capture.uuid = Identifier::random().to_string();
    Ok(capture)
}

/// Streams the body to [`crate::pcap::replay`] on a blocking thread as it arrives.
async fn upload<B: Buf>(
    s: AppState,
    query: HashMap<String, String>,
    body: impl Stream<Item = Result<B, warp::Error>>,
) -> ApiResult {
    let capture = parameters(&query)?;
    // No pause longer than this between two pieces of the body.
    let idle = s.limits.body_read_timeout;
    let (tx, rx) = mpsc::channel(PENDING_CHUNKS);
    let ctx = s.sinks.clone();
    let replay = tokio::task::spawn_blocking(move || {
        crate::pcap::replay(&capture, &ctx, BodyReader::new(rx))
    });
    let mut body = pin!(body);
    let mut timed_out = false;
    loop {
        let chunk = match tokio::time::timeout(idle, body.next()).await {
            Ok(Some(chunk)) => chunk
                .map(|mut b| b.copy_to_bytes(b.remaining()))
                .map_err(io::Error::other),
            Ok(None) => break,
            Err(_) => {
                timed_out = true;
                Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the request body stopped arriving",
                ))
            }
        };
        let failed = chunk.is_err();
        // The reader stopped (not a capture file): the rest of the body is not needed.
        if tx.send(chunk).await.is_err() || failed {
            break;
        }
    }
    drop(tx);
    // What was read before a failure has been exported either way.
    let summary = replay.await.map_err(Error::from)?;
    if timed_out {
        return Err(ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            format!("request body not received within {} s", idle.as_secs()),
        ));
    }
    Ok(reply_json(StatusCode::ACCEPTED, &summary?))
}

/// The request body as a blocking [`Read`], fed chunk by chunk by the async side; a
/// body that fails to arrive is the reader's I/O error.
struct BodyReader {
    rx: mpsc::Receiver<io::Result<Bytes>>,
    chunk: Bytes,
}

impl BodyReader {
    fn new(rx: mpsc::Receiver<io::Result<Bytes>>) -> Self {
        BodyReader {
            rx,
            chunk: Bytes::new(),
        }
    }
}

impl Read for BodyReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.chunk.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(chunk)) => self.chunk = chunk,
                Some(Err(e)) => return Err(e),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.chunk.len());
        self.chunk.copy_to_slice(&mut buf[..n]);
        Ok(n)
    }
}
