//! The sending side of a fleet link: an agent pushing its graph to an analyzer, or an
//! analyzer replicating its local hosts to a peer.
//!
//! A link connects (TLS when asked), sends a full `Sync` of what it shares, then one
//! message per graph change. The graph's change channel is the send queue: it is
//! bounded and shared, so a receiver that reads too slowly makes this side lag and
//! send a full `Sync` again instead of buffering without bound; a write that does not
//! finish within [`WRITE_TIMEOUT`] drops the connection. Lost connections are retried
//! with jittered exponential backoff, and every new connection starts with a `Sync`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;
use topotap_topology::{Edge, GraphEvent, Node};
use tracing::{info, warn};

use super::protocol::{self, GraphMessage};

/// Interval between pings.
const PING_INTERVAL: Duration = Duration::from_secs(2);
/// A link that heard nothing (not even a pong) for this long is dropped.
const SILENCE_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait for one batch of writes.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait to connect and upgrade.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Changes sent before a flush.
const BATCH: usize = 256;
/// First and longest delay between connection attempts.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// Most bytes tungstenite buffers for writing before `send` fails.
const MAX_WRITE_BUFFER: usize = 64 << 20;

/// Where a link goes: `HOST:PORT`, or a `ws://`, `wss://`, `http://` or `https://` URL
/// without a path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub tls: bool,
    pub authority: String,
}

impl Endpoint {
    /// Parses one `--analyzer` / `--peer` entry; a bare `HOST:PORT` uses TLS when
    /// `tls_default` (a CA or a client certificate was given).
    pub fn parse(s: &str, tls_default: bool) -> Result<Endpoint, String> {
        let s = s.trim();
        let (tls, rest) = match s.split_once("://") {
            Some(("ws" | "http", r)) => (false, r),
            Some(("wss" | "https", r)) => (true, r),
            Some((scheme, _)) => {
                return Err(format!(
                    "{s:?}: unknown scheme {scheme:?} (use HOST:PORT, ws://, wss://, http:// or https://)"
                ))
            }
            None => (tls_default, s),
        };
        let authority = rest.trim_end_matches('/');
        if authority.is_empty() || authority.contains('/') {
            return Err(format!("{s:?}: expected HOST:PORT"));
        }
        let port = authority
            .rsplit_once(':')
            .map(|(_, p)| p)
            .filter(|p| !p.contains(']'));
        match port.map(str::parse::<u16>) {
            Some(Ok(p)) if p > 0 => {}
            _ => return Err(format!("{s:?}: expected HOST:PORT with a port")),
        }
        Ok(Endpoint {
            tls,
            authority: authority.to_owned(),
        })
    }

    fn host(&self) -> &str {
        let h = self
            .authority
            .rsplit_once(':')
            .map_or(self.authority.as_str(), |(h, _)| h);
        h.trim_start_matches('[').trim_end_matches(']')
    }
}

/// How a link authenticates: an `Authorization` header from a token file, a client
/// certificate, and the CA that signed the server's certificate.
#[derive(Clone, Default)]
pub struct Credentials {
    pub authorization: Option<String>,
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

/// Why credentials cannot be set up from the flags.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    #[error("cannot read the token file {}: {reason}", path.display())]
    Token { path: PathBuf, reason: String },
    #[error("the token file {} is empty", .0.display())]
    EmptyToken(PathBuf),
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    #[error("{0}")]
    Other(String),
}

/// Reads a token file: `USER:PASSWORD` (sent as HTTP Basic, checked against the
/// analyzer's --auth-htpasswd) or a token from the analyzer's `POST /login` (sent as
/// `Bearer`).
pub fn read_token(path: &Path) -> Result<String, CredentialError> {
    use base64::Engine;
    let text = std::fs::read_to_string(path).map_err(|e| CredentialError::Token {
        path: path.to_owned(),
        reason: e.to_string(),
    })?;
    let token = text.trim();
    if token.is_empty() {
        return Err(CredentialError::EmptyToken(path.to_owned()));
    }
    Ok(if token.contains(':') {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(token)
        )
    } else {
        format!("Bearer {token}")
    })
}

/// The TLS client configuration: trust `cacert` (else the system's roots), present
/// `cert`/`key` when given.
pub fn client_tls(
    cacert: Option<&Path>,
    cert: Option<&Path>,
    key: Option<&Path>,
) -> Result<Arc<rustls::ClientConfig>, CredentialError> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    match cacert {
        Some(ca) => {
            for c in crate::tls::read_certs(ca, "the CA (--cacert)")? {
                roots.add(c).map_err(|e| {
                    CredentialError::Other(format!("--cacert {}: {e}", ca.display()))
                })?;
            }
        }
        None => {
            let found = rustls_native_certs_fallback();
            for c in found {
                let _ = roots.add(c);
            }
        }
    }
    let builder = rustls::ClientConfig::builder_with_provider(crate::tls::provider())
        .with_safe_default_protocol_versions()
        .map_err(crate::tls::TlsError::Protocols)?
        .with_root_certificates(roots);
    let config = match (cert, key) {
        (Some(c), Some(k)) => {
            let certs = crate::tls::read_certs(c, "the client certificate (--tls-cert)")?;
            let key = rustls::pki_types::PrivateKeyDer::from_pem_file(k).map_err(|e| {
                CredentialError::Other(format!(
                    "cannot read the key (--tls-key) {}: {e:?}",
                    k.display()
                ))
            })?;
            builder
                .with_client_auth_cert(certs, key)
                .map_err(|e| CredentialError::Other(format!("--tls-cert/--tls-key: {e}")))?
        }
        (None, None) => builder.with_no_client_auth(),
        (Some(_), None) => return Err(crate::tls::TlsError::CertWithoutKey.into()),
        (None, Some(_)) => return Err(crate::tls::TlsError::KeyWithoutCert.into()),
    };
    Ok(Arc::new(config))
}

/// The system's CA certificates (Debian's bundle), for servers with public
/// certificates; empty when there is none.
fn rustls_native_certs_fallback() -> Vec<rustls::pki_types::CertificateDer<'static>> {
    crate::tls::read_certs(
        Path::new("/etc/ssl/certs/ca-certificates.crt"),
        "system CAs",
    )
    .unwrap_or_default()
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

type Socket = WebSocketStream<Box<dyn Io>>;

/// What one link sends and how it introduces itself.
pub struct LinkSpec {
    pub endpoint: Endpoint,
    pub path: &'static str,
    /// `X-Host-ID` of this side.
    pub host_id: String,
    /// `X-Client-Type`.
    pub client_type: &'static str,
    pub credentials: Credentials,
    /// What to share: the elements of a snapshot and the changes to forward.
    pub share: Arc<dyn Share>,
    /// Who answers the server's requests (an agent's on-demand captures, injections
    /// and flow queries; on a replication link, orders relayed to this analyzer's
    /// agents); `None`: requests are ignored.
    pub requests: Option<Arc<dyn Requests>>,
}

/// Answers the requests an analyzer sends on an agent's link. Called on a blocking
/// thread; never panics on bad input (a reply with a 4xx status instead).
pub trait Requests: Send + Sync {
    fn handle(&self, request: protocol::Request) -> protocol::Reply;
}

/// Requests answered at once on one connection; more wait for a slot.
const CONCURRENT_REQUESTS: usize = 8;

/// The part of the graph a link shares.
/// The elements of a `Sync` and the changes that follow them.
pub type Snapshot = (
    Vec<Node>,
    Vec<Edge>,
    tokio::sync::broadcast::Receiver<Arc<GraphEvent>>,
);

pub trait Share: Send + Sync {
    /// Whether a change is sent (an analyzer sends only what its own agents wrote).
    fn forwards(&self, event: &GraphEvent) -> bool;
    /// The elements of a `Sync`, and a receiver of the changes made after it (taken
    /// under the same read lock).
    fn snapshot(&self) -> Snapshot;
}

/// Why a connection ended.
#[derive(Debug)]
enum Ended {
    /// The server refused the connection (HTTP status and reason): retried later.
    Refused(u16, String),
    Lost(String),
    Shutdown,
}

/// Runs one link until `shutdown`: connect, sync, forward, reconnect.
pub async fn run(spec: LinkSpec, mut shutdown: watch::Receiver<bool>) {
    let mut failures: u32 = 0;
    let target = format!(
        "{}://{}{}",
        if spec.endpoint.tls { "wss" } else { "ws" },
        spec.endpoint.authority,
        spec.path
    );
    loop {
        let started = Instant::now();
        let ended = tokio::select! {
            e = session(&spec, &target) => e,
            _ = shutdown.changed() => Ended::Shutdown,
        };
        match &ended {
            Ended::Shutdown => return,
            Ended::Refused(status, reason) => {
                warn!(%target, status, reason = %reason, "refused by the server")
            }
            Ended::Lost(reason) => warn!(%target, reason = %reason, "connection lost"),
        }
        if *shutdown.borrow() {
            return;
        }
        // A connection that lived a while starts the backoff over.
        if started.elapsed() > BACKOFF_MAX * 2 {
            failures = 0;
        }
        let delay = backoff(failures);
        failures = failures.saturating_add(1);
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// Delay before attempt `n + 1`: doubling from [`BACKOFF_MIN`] up to [`BACKOFF_MAX`],
/// each a random 50-100% of it so that many agents do not retry in step.
pub fn backoff(n: u32) -> Duration {
    let base = BACKOFF_MIN
        .saturating_mul(1u32 << n.min(16))
        .min(BACKOFF_MAX);
    let r = (uuid::Uuid::new_v4().as_u128() % 1000) as u32;
    base / 2 + base / 2 * r / 1000
}

async fn connect(spec: &LinkSpec, target: &str) -> Result<Socket, Ended> {
    let tcp = TcpStream::connect(spec.endpoint.authority.as_str())
        .await
        .map_err(|e| Ended::Lost(format!("cannot connect: {e}")))?;
    let _ = tcp.set_nodelay(true);
    let io: Box<dyn Io> = if spec.endpoint.tls {
        let config = match &spec.credentials.tls {
            Some(c) => c.clone(),
            None => client_tls(None, None, None).map_err(|e| Ended::Lost(e.to_string()))?,
        };
        let name = rustls::pki_types::ServerName::try_from(spec.endpoint.host().to_owned())
            .map_err(|e| Ended::Lost(format!("{}: {e}", spec.endpoint.host())))?;
        let tls = tokio_rustls::TlsConnector::from(config)
            .connect(name, tcp)
            .await
            .map_err(|e| Ended::Lost(format!("TLS: {e}")))?;
        Box::new(tls)
    } else {
        Box::new(tcp)
    };
    let mut request = target
        .into_client_request()
        .map_err(|e| Ended::Lost(e.to_string()))?;
    let h = request.headers_mut();
    let value = |v: &str| HeaderValue::from_str(v).map_err(|e| Ended::Lost(e.to_string()));
    h.insert(protocol::HOST_ID, value(&spec.host_id)?);
    h.insert(protocol::CLIENT_TYPE, value(spec.client_type)?);
    h.insert(
        protocol::PERSISTENCE_POLICY,
        value(protocol::DELETE_ON_DISCONNECT)?,
    );
    h.insert("X-Client-Protocol", value("json")?);
    if let Some(a) = &spec.credentials.authorization {
        h.insert("Authorization", value(a)?);
    }
    let config = WebSocketConfig::default().max_write_buffer_size(MAX_WRITE_BUFFER);
    match tokio_tungstenite::client_async_with_config(request, io, Some(config)).await {
        Ok((socket, _)) => Ok(socket),
        Err(WsError::Http(resp)) => {
            let reason = resp
                .body()
                .as_deref()
                .map(|b| String::from_utf8_lossy(b).trim().to_owned())
                .unwrap_or_default();
            Err(Ended::Refused(resp.status().as_u16(), reason))
        }
        Err(e) => Err(Ended::Lost(format!("WebSocket handshake: {e}"))),
    }
}

/// Serialises a `Sync` of what the link shares and subscribes to the changes after it.
async fn sync(
    share: &Arc<dyn Share>,
) -> (String, tokio::sync::broadcast::Receiver<Arc<GraphEvent>>) {
    let share = share.clone();
    tokio::task::spawn_blocking(move || {
        topotap_topology::blocking::section("fleet sync");
        let (nodes, edges, rx) = share.snapshot();
        (protocol::sync_message(&nodes, &edges), rx)
    })
    .await
    .expect("the sync task does not panic")
}

async fn write_all(socket: &mut Socket, msgs: Vec<String>) -> Result<(), Ended> {
    let send = async {
        for m in msgs {
            socket.feed(Message::text(m)).await?;
        }
        socket.flush().await
    };
    match tokio::time::timeout(WRITE_TIMEOUT, send).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(Ended::Lost(format!("write: {e}"))),
        Err(_) => Err(Ended::Lost(format!(
            "the server did not read for {} s: reconnecting to resync",
            WRITE_TIMEOUT.as_secs()
        ))),
    }
}

async fn session(spec: &LinkSpec, target: &str) -> Ended {
    let mut socket = match tokio::time::timeout(CONNECT_TIMEOUT, connect(spec, target)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return e,
        Err(_) => return Ended::Lost("connection timed out".into()),
    };
    let (text, mut events) = sync(&spec.share).await;
    if let Err(e) = write_all(&mut socket, vec![text]).await {
        return e;
    }
    info!(%target, "connected, subgraph sent");
    let (reply_tx, mut replies) = tokio::sync::mpsc::channel::<String>(CONCURRENT_REQUESTS);
    let slots = Arc::new(tokio::sync::Semaphore::new(CONCURRENT_REQUESTS));
    let mut ping = tokio::time::interval(PING_INTERVAL);
    let mut heard = Instant::now();
    loop {
        tokio::select! {
            ev = events.recv() => {
                let mut batch = Vec::new();
                let mut resync = false;
                let mut next = Some(ev);
                while let Some(ev) = next.take() {
                    match ev {
                        Ok(e) => {
                            if spec.share.forwards(&e) {
                                batch.push(protocol::event_message(&e));
                            }
                        }
                        Err(RecvError::Lagged(n)) => {
                            warn!(%target, missed = n, "fell behind the graph's changes: sending a full Sync");
                            resync = true;
                            break;
                        }
                        Err(RecvError::Closed) => return Ended::Shutdown,
                    }
                    if batch.len() < BATCH {
                        next = match events.try_recv() {
                            Ok(e) => Some(Ok(e)),
                            Err(tokio::sync::broadcast::error::TryRecvError::Lagged(n)) => Some(Err(RecvError::Lagged(n))),
                            Err(_) => None,
                        };
                    }
                }
                if resync {
                    let (text, rx) = sync(&spec.share).await;
                    events = rx;
                    batch = vec![text];
                }
                if !batch.is_empty() {
                    if let Err(e) = write_all(&mut socket, batch).await {
                        return e;
                    }
                }
            }
            msg = socket.next() => {
                heard = Instant::now();
                match msg {
                    Some(Ok(Message::Text(t))) => {
                        let request = match (&spec.requests, protocol::parse_other::<protocol::Request>(t.as_str())) {
                            (Some(h), Ok(Some(r))) => Some((h.clone(), r)),
                            (Some(_), Err(e)) => {
                                warn!(%target, reason = %e, "request ignored");
                                None
                            }
                            _ => None,
                        };
                        if let Some((handler, request)) = request {
                            let (tx, slots) = (reply_tx.clone(), slots.clone());
                            tokio::spawn(async move {
                                let Ok(_slot) = slots.acquire_owned().await else { return };
                                let reply = tokio::task::spawn_blocking(move || handler.handle(request)).await;
                                if let Ok(reply) = reply {
                                    let _ = tx.send(reply.to_text()).await;
                                }
                            });
                        } else if let Ok(Some(GraphMessage::SyncRequest)) = protocol::parse(t.as_str()) {
                            let (text, rx) = sync(&spec.share).await;
                            events = rx;
                            if let Err(e) = write_all(&mut socket, vec![text]).await {
                                return e;
                            }
                        }
                    }
                    Some(Ok(Message::Close(frame))) => {
                        let reason = frame.map(|f| format!("{} {}", u16::from(f.code), f.reason)).unwrap_or_default();
                        return Ended::Lost(format!("closed by the server: {reason}"));
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => return Ended::Lost(e.to_string()),
                    None => return Ended::Lost("closed by the server".into()),
                }
            }
            Some(reply) = replies.recv() => {
                if let Err(e) = write_all(&mut socket, vec![reply]).await {
                    return e;
                }
            }
            _ = ping.tick() => {
                if heard.elapsed() > SILENCE_TIMEOUT {
                    return Ended::Lost(format!("no answer for {} s", SILENCE_TIMEOUT.as_secs()));
                }
                let ping = async {
                    socket.send(Message::Ping(Default::default())).await
                };
                match tokio::time::timeout(WRITE_TIMEOUT, ping).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => return Ended::Lost(format!("ping: {e}")),
                    Err(_) => return Ended::Lost("ping not written in time".into()),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_parse() {
        assert_eq!(
            Endpoint::parse("10.0.0.1:8082", false).unwrap(),
            Endpoint {
                tls: false,
                authority: "10.0.0.1:8082".into()
            }
        );
        assert!(Endpoint::parse("an:8082", true).unwrap().tls);
        assert!(!Endpoint::parse("ws://an:8082/", true).unwrap().tls);
        assert!(Endpoint::parse("https://[::1]:443", false).unwrap().tls);
        assert_eq!(Endpoint::parse("[::1]:443", false).unwrap().host(), "::1");
        for bad in ["", "an", "an:0", "an:x", "ftp://an:1", "an:1/path"] {
            assert!(Endpoint::parse(bad, false).is_err(), "{bad}");
        }
    }

    #[test]
    fn backoff_grows_with_jitter_and_is_capped() {
        for n in 0..40 {
            let d = backoff(n);
            let base = BACKOFF_MIN.saturating_mul(1 << n.min(16)).min(BACKOFF_MAX);
            assert!(d >= base / 2 && d <= base, "{n}: {d:?}");
        }
        assert!(backoff(30) <= BACKOFF_MAX);
    }
}
