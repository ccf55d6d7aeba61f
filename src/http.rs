//! The HTTP server loop: accepts TCP connections and serves the API's warp filter on
//! each through hyper-util, with the limits warp's own server does not offer.
//!
//! - At most [`ServeLimits::max_connections`] connections are served at once (WebSocket
//!   sessions included); beyond that the listener stops accepting and new clients wait
//!   in the kernel's backlog until a connection ends.
//! - A client has [`ServeLimits::header_read_timeout`] to send a request's headers, and
//!   the same to start the next request on a kept-alive connection; then the connection
//!   is closed. Request bodies have their own deadline (see `api::limited_body`).
//! - Shutdown stops accepting, lets requests in flight finish for up to
//!   [`ServeLimits::shutdown_grace`], then drops what is left.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tower_service::Service;
use tracing::{debug, warn};
use warp::http::{header, HeaderValue, StatusCode};
use warp::reply::Response;
use warp::{Filter, Reply};

use crate::error::Error;

use crate::tls::ClientCert;

/// What one server accepts from its clients.
#[derive(Clone, Copy, Debug)]
pub struct ServeLimits {
    /// Most connections served at once.
    pub max_connections: usize,
    /// Longest wait for a request's headers, the first or the next on a kept-alive
    /// connection.
    pub header_read_timeout: Duration,
    /// How long requests in flight may run on after shutdown starts.
    pub shutdown_grace: Duration,
}

impl Default for ServeLimits {
    fn default() -> Self {
        ServeLimits {
            max_connections: 1024,
            header_read_timeout: Duration::from_secs(30),
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

/// The peer of the connection a request came on, as a request extension.
#[derive(Clone, Copy, Debug)]
pub struct PeerAddr(pub SocketAddr);

/// The remote address of the connection (this server's counterpart of
/// `warp::addr::remote`, which only warp's own server fills in).
pub fn remote() -> impl Filter<Extract = (Option<SocketAddr>,), Error = Infallible> + Clone {
    warp::ext::optional::<PeerAddr>().map(|p: Option<PeerAddr>| p.map(|PeerAddr(a)| a))
}

/// An API failure: an HTTP status and a one-line reason.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
        }
    }

    pub fn bad_request(message: impl std::fmt::Display) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message.to_string())
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }
}

/// The one mapping from application errors to HTTP statuses.
impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        let status = match &e {
            Error::Invalid(_) => StatusCode::BAD_REQUEST,
            Error::NotFound(_) => StatusCode::NOT_FOUND,
            Error::Conflict(_) => StatusCode::CONFLICT,
            Error::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Error::InsufficientStorage(_) => StatusCode::INSUFFICIENT_STORAGE,
            Error::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Error::Forbidden(_) => StatusCode::FORBIDDEN,
            Error::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError::new(status, e.reason())
    }
}

/// Renders an error as Skydive did (`http.Error`): plain text, the reason and a newline.
/// Reasons are folded onto one line.
pub fn reply_error(err: ApiError) -> Response {
    let line = err.message.replace(['\n', '\r'], " ");
    let mut resp = format!("{line}\n").into_response();
    *resp.status_mut() = err.status;
    let headers = resp.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.insert(
        "X-Content-Type-Options",
        HeaderValue::from_static("nosniff"),
    );
    resp
}

/// Skydive's answer to a successful DELETE: 200, `text/plain`, no body.
pub fn reply_deleted() -> Response {
    let mut resp = "".into_response();
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    resp
}

/// A JSON reply with Skydive's content type.
pub fn reply_json(status: StatusCode, body: &impl serde::Serialize) -> Response {
    match serde_json::to_vec(body) {
        Ok(bytes) => reply_json_bytes(status, bytes),
        Err(e) => reply_error(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("Error while encoding response: {e}"),
        )),
    }
}

pub fn reply_json_bytes(status: StatusCode, bytes: Vec<u8>) -> Response {
    let mut resp = Response::new(bytes.into_response().into_body());
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=UTF-8"),
    );
    resp
}

/// Serves `filter` on `listener` until `shutdown` completes; over TLS when `tls` is
/// given (the handshake has [`ServeLimits::header_read_timeout`] to finish).
pub async fn serve<F>(
    listener: TcpListener,
    filter: F,
    limits: ServeLimits,
    tls: Option<TlsAcceptor>,
    shutdown: impl Future<Output = ()>,
) where
    F: Filter<Extract = (Response,), Error = Infallible> + Clone + Send + Sync + 'static,
{
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    let builder = Arc::new(builder(&limits));
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        // Take a connection slot first: at the cap, connections wait in the backlog.
        let permit = tokio::select! {
            permit = slots.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        if slots.available_permits() == 0 {
            debug!(
                max = limits.max_connections,
                "connection limit reached; new connections wait"
            );
        }
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    accept_error(e).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let watcher = graceful.watcher();
        let builder = builder.clone();
        let filter = filter.clone();
        let tls = tls.clone();
        let handshake_timeout = limits.header_read_timeout;
        tokio::spawn(async move {
            match tls {
                None => serve_connection(stream, peer, None, filter, &builder, watcher).await,
                Some(acceptor) => {
                    match tokio::time::timeout(handshake_timeout, acceptor.accept(stream)).await {
                        Ok(Ok(stream)) => {
                            let client = stream
                                .get_ref()
                                .1
                                .peer_certificates()
                                .and_then(|c| c.first())
                                .and_then(crate::tls::common_name)
                                .map(ClientCert);
                            serve_connection(stream, peer, client, filter, &builder, watcher).await
                        }
                        Ok(Err(e)) => debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => debug!(%peer, "TLS handshake timed out"),
                    }
                }
            }
            drop(permit);
        });
    }
    drop(listener);
    if tokio::time::timeout(limits.shutdown_grace, graceful.shutdown())
        .await
        .is_err()
    {
        warn!(
            grace = ?limits.shutdown_grace,
            "requests still running at shutdown were dropped"
        );
    }
}

/// The hyper-util connection builder for these limits: HTTP/1.1 (with upgrades, for
/// WebSocket) and HTTP/2 with prior knowledge, as warp's server.
fn builder(limits: &ServeLimits) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(64)
        .keep_alive_interval(limits.header_read_timeout)
        .keep_alive_timeout(limits.header_read_timeout);
    builder
}

/// Serves one connection (any byte stream: plain TCP, or TLS on top of it); `client` is
/// the verified client certificate's name, given to each request as an extension.
pub async fn serve_connection<I, F>(
    io: I,
    peer: SocketAddr,
    client: Option<ClientCert>,
    filter: F,
    builder: &auto::Builder<TokioExecutor>,
    watcher: Watcher,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    F: Filter<Extract = (Response,), Error = Infallible> + Clone + Send + Sync + 'static,
{
    let service = warp::service(filter);
    let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
        // HTTP/2: a body the application left unread comes back here (see DrainOnDrop).
        let (unread_tx, mut unread) = tokio::sync::oneshot::channel();
        let unread_tx = (req.version() == hyper::Version::HTTP_2).then_some(unread_tx);
        let mut req = req.map(|body| DrainOnDrop {
            inner: Some(body),
            unread: unread_tx,
        });
        req.extensions_mut().insert(PeerAddr(peer));
        if let Some(c) = &client {
            req.extensions_mut().insert(c.clone());
        }
        let mut service = service.clone();
        let answer = service.call(req);
        async move {
            let resp = answer.await;
            if let Ok(body) = unread.try_recv() {
                finish_upload(body).await;
            }
            resp
        }
    });
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
    if let Err(e) = watcher.watch(conn.into_owned()).await {
        debug!(%peer, error = %e, "connection ended with an error");
    }
}

/// Most of a request body an HTTP/2 stream reads before its early answer, and for how
/// long. A body announced as larger (`Content-Length`, e.g. a 413) is not read at all.
const DRAIN_BYTES: usize = 16 << 20;
const DRAIN_TIME: Duration = Duration::from_secs(5);

/// A request body that, over HTTP/2, goes back to [`serve_connection`] when the
/// application drops it unread, so the rest of the upload is read before the answer is
/// sent. An answer that comes first (a refusal before the body was looked at: 401, 403,
/// 415) otherwise races the client's upload: the stream ends with `RST_STREAM(NO_ERROR)`,
/// and clients still sending (curl 7.88: "HTTP error before end of send, stop sending")
/// fail the request with a stream error although RFC 9113 §8.1 allows it. HTTP/1.1 keeps
/// hyper's own handling.
struct DrainOnDrop {
    inner: Option<Incoming>,
    unread: Option<tokio::sync::oneshot::Sender<Incoming>>,
}

impl hyper::body::Body for DrainOnDrop {
    type Data = bytes::Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        match self.get_mut().inner.as_mut() {
            Some(b) => std::pin::Pin::new(b).poll_frame(cx),
            None => std::task::Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(|b| b.is_end_stream())
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner
            .as_ref()
            .map(|b| b.size_hint())
            .unwrap_or_else(|| hyper::body::SizeHint::with_exact(0))
    }
}

impl Drop for DrainOnDrop {
    fn drop(&mut self) {
        if let (Some(body), Some(tx)) = (self.inner.take(), self.unread.take()) {
            let size = hyper::body::Body::size_hint(&body).lower();
            if !hyper::body::Body::is_end_stream(&body) && size <= DRAIN_BYTES as u64 {
                let _ = tx.send(body);
            }
        }
    }
}

/// Reads what is left of an HTTP/2 request body (at most [`DRAIN_BYTES`], for at most
/// [`DRAIN_TIME`]; beyond that the stream is reset, as an early answer always was) and
/// drops it.
async fn finish_upload(mut body: Incoming) {
    use http_body_util::BodyExt;
    let mut left = DRAIN_BYTES;
    let _ = tokio::time::timeout(DRAIN_TIME, async {
        while let Some(Ok(frame)) = body.frame().await {
            let n = frame.data_ref().map_or(0, |d| d.len());
            left = left.saturating_sub(n);
            if left == 0 {
                break;
            }
        }
    })
    .await;
}

/// Accept errors are the listener's, not a client's: a full file table (EMFILE) clears
/// when connections close, so wait a little rather than spin.
async fn accept_error(e: std::io::Error) {
    use std::io::ErrorKind::*;
    if matches!(
        e.kind(),
        ConnectionAborted | ConnectionReset | ConnectionRefused | Interrupted
    ) {
        return;
    }
    warn!(error = %e, "accept failed; retrying shortly");
    tokio::time::sleep(Duration::from_millis(100)).await;
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;
    use tokio::sync::oneshot;

    use super::*;
    use crate::api;

    /// A server on a loopback port with these limits; dropping the sender stops it.
    async fn start(
        limits: ServeLimits,
        body_timeout: Duration,
    ) -> (SocketAddr, oneshot::Sender<()>, tokio::task::JoinHandle<()>) {
        let mut state = api::test_support::state();
        state.limits.body_read_timeout = body_timeout;
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(serve(
            listener,
            api::routes(state),
            limits,
            None,
            async move {
                let _ = stopped.await;
            },
        ));
        (addr, stop, task)
    }

    /// Reads until the peer closes (or `within` passes): what was read, and whether the
    /// connection was closed.
    async fn read_to_close(s: &mut TcpStream, within: Duration) -> (String, bool) {
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        let deadline = tokio::time::Instant::now() + within;
        loop {
            match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return (String::from_utf8_lossy(&out).into(), true),
                Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
                Err(_) => return (String::from_utf8_lossy(&out).into(), false),
            }
        }
    }

    fn limits(max_connections: usize, header: Duration) -> ServeLimits {
        ServeLimits {
            max_connections,
            header_read_timeout: header,
            shutdown_grace: Duration::from_secs(2),
        }
    }

    #[tokio::test]
    async fn a_client_that_never_finishes_its_headers_is_disconnected() {
        let (addr, _stop, _task) = start(
            limits(16, Duration::from_millis(500)),
            Duration::from_secs(30),
        )
        .await;
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /api HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        let started = Instant::now();
        let (_, closed) = read_to_close(&mut s, Duration::from_secs(5)).await;
        assert!(closed, "connection still open after 5 s");
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{:?}",
            started.elapsed()
        );
    }

    #[tokio::test]
    async fn a_chunked_body_that_never_arrives_is_a_408_and_the_connection_closes() {
        let (addr, _stop, _task) = start(
            limits(16, Duration::from_secs(30)),
            Duration::from_millis(500),
        )
        .await;
        for path in ["/api/topology", "/api/node", "/api/pcap"] {
            let mut s = TcpStream::connect(addr).await.unwrap();
            // One chunk that announces 2^64-1 bytes, then silence.
            let req = format!(
                "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
                 Transfer-Encoding: chunked\r\n\r\nffffffffffffffff\r\n{{"
            );
            s.write_all(req.as_bytes()).await.unwrap();
            let (answer, closed) = read_to_close(&mut s, Duration::from_secs(5)).await;
            assert!(
                closed,
                "{path}: connection still open after 5 s: {answer:?}"
            );
            assert!(answer.starts_with("HTTP/1.1 408"), "{path}: {answer:?}");
        }
    }

    #[tokio::test]
    async fn a_body_that_stalls_part_way_is_a_408() {
        let (addr, _stop, _task) = start(
            limits(16, Duration::from_secs(30)),
            Duration::from_millis(500),
        )
        .await;
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(
            b"POST /api/topology HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"Gremlin",
        )
        .await
        .unwrap();
        let (answer, closed) = read_to_close(&mut s, Duration::from_secs(5)).await;
        assert!(closed, "{answer:?}");
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer:?}");
        assert!(
            answer.contains("request body not received within"),
            "{answer:?}"
        );
    }

    #[tokio::test]
    async fn connections_beyond_the_cap_wait_for_a_free_slot() {
        let (addr, _stop, _task) =
            start(limits(2, Duration::from_secs(30)), Duration::from_secs(30)).await;
        let get = b"GET /api HTTP/1.1\r\nHost: x\r\n\r\n";
        // Two kept-alive connections take both slots.
        let mut held = Vec::new();
        for _ in 0..2 {
            let mut s = TcpStream::connect(addr).await.unwrap();
            s.write_all(get).await.unwrap();
            let mut buf = [0u8; 1024];
            let n = s.read(&mut buf).await.unwrap();
            assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
            held.push(s);
        }
        // A third is not served while they stay open...
        let mut third = TcpStream::connect(addr).await.unwrap();
        third.write_all(get).await.unwrap();
        let mut buf = [0u8; 1024];
        assert!(
            tokio::time::timeout(Duration::from_millis(700), third.read(&mut buf))
                .await
                .is_err(),
            "third connection served beyond the cap"
        );
        // ...and is as soon as one closes.
        drop(held.pop());
        let n = tokio::time::timeout(Duration::from_secs(5), third.read(&mut buf))
            .await
            .expect("third connection never served")
            .unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"), "{:?}", &buf[..n]);
    }

    #[tokio::test]
    async fn shutdown_stops_accepting_and_returns() {
        let (addr, stop, task) =
            start(limits(16, Duration::from_secs(30)), Duration::from_secs(30)).await;
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /api HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let (answer, _) = read_to_close(&mut s, Duration::from_secs(5)).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer:?}");
        let _ = stop.send(());
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("server did not stop")
            .unwrap();
        assert!(TcpStream::connect(addr).await.is_err());
    }
}
