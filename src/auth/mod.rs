//! The trust boundary in front of the API: who may call it, from which page, under
//! which name, and what they may do.
//!
//! Every request passes [`secure`]'s gate before any route sees it:
//! 1. **Host**: the `Host` header must name this server: an IP literal it listens on (any
//!    IP when it listens on all addresses), a loopback address, `localhost`, or a name
//!    given with `--allowed-host`. A page on an attacker's domain re-pointed at this
//!    address (DNS rebinding) sends its own name and is refused.
//! 2. **Origin**: a request that carries `Origin` (browsers add it to every cross-origin
//!    request, to same-origin POSTs and to WebSocket upgrades) must come from this
//!    server's own origin or one listed with `--cors-origin`. Only listed origins get
//!    CORS headers; preflights from others are refused.
//! 3. **Content type**: POST, PUT and PATCH must say what they send, with a type no HTML
//!    form can produce: `application/json` (PATCH: also `application/json-patch+json`;
//!    `/api/pcap`: also `application/octet-stream`, `application/vnd.tcpdump.pcap`);
//!    `/login` is the exception, an HTML-form POST as in Skydive (and `/logout`, which has
//!    no body and only expires the caller's cookie). DELETE carries no body
//!    and always needs a CORS preflight, which step 2 refuses.
//! 4. **Authentication** (with `--auth-htpasswd`): a token from `POST /login`, as the
//!    `authtoken` cookie, `X-Auth-Token` or `Authorization: Bearer`, or HTTP Basic. With
//!    `--tls-client-ca`, a client certificate the TLS handshake verified authenticates
//!    its connection as the certificate's subject common name. The web UI's files,
//!    `/login` and `/logout` are open; everything else answers 401 without one.
//! 5. **Role**: reader for reads, queries and WebSocket; operator for captures and pcap
//!    uploads; admin for everything else that writes. 403 names the missing role.
//!
//! Captures, injections, pcap uploads and node/edge writes are then written to the
//! audit log with the user and source address, whether they succeeded or not.

pub mod audit;
pub mod htpasswd;
pub mod netns;
pub mod roles;
pub mod targets;
pub mod token;

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use serde_json::{json, Value};
use warp::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use warp::reply::Response;
use warp::{Filter, Rejection, Reply};

use crate::http::{reply_error, reply_json, ApiError};
use crate::tls::ClientCert;
pub use audit::AuditLog;
use htpasswd::Htpasswd;
pub use roles::{Role, Roles};
pub use targets::AllowTargets;
use token::TokenKey;

/// Failed logins allowed from one address within [`FAILURE_WINDOW`].
pub const MAX_FAILURES: u32 = 5;
pub const FAILURE_WINDOW: Duration = Duration::from_secs(60);
/// The answer header naming the authenticated user.
pub const USER_HEADER: &str = "x-topotap-user";
/// Largest `POST /login` form.
const LOGIN_FORM_LIMIT: u64 = 16 * 1024;
/// How long a verified HTTP Basic password is remembered (bcrypt costs milliseconds).
const BASIC_CACHE: Duration = Duration::from_secs(300);

/// Why the gate cannot be built from the options: a start-up error naming the flag or
/// file and the reason.
#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    #[error(transparent)]
    Htpasswd(#[from] htpasswd::LoadError),
    #[error(transparent)]
    Roles(#[from] roles::LoadError),
    #[error("--auth-roles needs --auth-htpasswd or --tls-client-ca (roles are given to users)")]
    RolesWithoutUsers,
    #[error(
        "refusing to serve the API on {listen} without authentication: anyone who reaches \
         it could capture and inject traffic. Give --auth-htpasswd FILE (and --tls-cert/--tls-key) or --tls-client-ca FILE, \
         listen on 127.0.0.1, or pass --insecure-no-auth to run it open anyway"
    )]
    OpenApi { listen: String },
    #[error(
        "refusing to serve /metrics on {listen} (--metrics-listen) without authentication: \
         anyone who reaches it could read the host's interfaces, captures and flows. \
         Give --auth-htpasswd FILE (Prometheus then scrapes with basic_auth) or --tls-client-ca FILE, \
         listen on 127.0.0.1, or pass --insecure-no-auth to serve it open anyway"
    )]
    OpenMetrics { listen: SocketAddr },
    #[error(transparent)]
    AllowTarget(#[from] targets::BadCidr),
    #[error("--cors-origin {0:?}: expected scheme://host[:port], e.g. https://ui.example.org")]
    CorsOrigin(String),
    #[error(transparent)]
    Audit(#[from] audit::AuditError),
    #[error(transparent)]
    Random(#[from] token::NoRandom),
}

/// What the gate needs to know, from the command line.
#[derive(Clone, Debug, Default)]
pub struct TrustOptions {
    pub listen: Option<SocketAddr>,
    /// `--metrics-listen`: `/metrics` on a listener of its own, behind the same gate.
    pub metrics_listen: Option<SocketAddr>,
    pub htpasswd: Option<PathBuf>,
    pub roles: Option<PathBuf>,
    pub token_ttl: Duration,
    pub allowed_hosts: Vec<String>,
    pub cors_origins: Vec<String>,
    pub allow_targets: Vec<String>,
    pub insecure_no_auth: bool,
    pub audit_log: Option<PathBuf>,
    pub tls: bool,
    /// Verified TLS client certificates authenticate (`--tls-client-ca`).
    pub client_certs: bool,
}

/// The gate's configuration and state.
pub struct Trust {
    listen: Option<SocketAddr>,
    metrics_listen: Option<SocketAddr>,
    allowed_hosts: Vec<String>,
    cors_origins: Vec<String>,
    users: Option<Htpasswd>,
    roles: Option<Roles>,
    tokens: TokenKey,
    token_ttl: Duration,
    /// Where captures may export and injections may send.
    pub targets: AllowTargets,
    pub audit: AuditLog,
    tls: bool,
    client_certs: bool,
    failures: Mutex<HashMap<IpAddr, (u32, Instant)>>,
    basic_cache: Mutex<HashMap<[u8; 32], (String, Instant)>>,
}

/// Who is calling, once the gate let the request in.
#[derive(Clone, Debug)]
pub struct Identity {
    /// `None` when authentication is off.
    pub user: Option<String>,
    pub peer: Option<SocketAddr>,
}

impl Trust {
    /// Builds the gate from the options, with the start-up checks: readable htpasswd and
    /// roles files, no open API beyond loopback unless asked for.
    pub fn new(opts: &TrustOptions) -> Result<Self, TrustError> {
        let users = match &opts.htpasswd {
            Some(p) => Some(Htpasswd::load(p)?),
            None => None,
        };
        let roles = match (&opts.roles, users.is_some() || opts.client_certs) {
            (Some(_), false) => return Err(TrustError::RolesWithoutUsers),
            (Some(p), true) => Some(Roles::load(p)?),
            (None, _) => None,
        };
        if let (Some(r), Some(u), false) = (&roles, &users, opts.client_certs) {
            for name in r.users() {
                if !u.contains(name) {
                    tracing::warn!(
                        user = name,
                        "the roles file names a user the htpasswd file does not have"
                    );
                }
            }
        }
        if let Some(u) = &users {
            tracing::info!(users = u.len(), "authentication on");
        }
        let loopback = opts.listen.is_none_or(|a| a.ip().is_loopback());
        let authenticated = users.is_some() || opts.client_certs;
        if !authenticated && !loopback && !opts.insecure_no_auth {
            let listen = opts.listen.map(|a| a.to_string()).unwrap_or_default();
            return Err(TrustError::OpenApi { listen });
        }
        if let Some(m) = opts.metrics_listen {
            if !authenticated && !m.ip().is_loopback() && !opts.insecure_no_auth {
                return Err(TrustError::OpenMetrics { listen: m });
            }
        }
        let targets = if opts.allow_targets.is_empty() && !authenticated && loopback {
            AllowTargets::Everything
        } else {
            AllowTargets::Only(AllowTargets::parse(&opts.allow_targets)?)
        };
        let cors_origins = opts
            .cors_origins
            .iter()
            .map(|o| normalize_origin(o).ok_or_else(|| TrustError::CorsOrigin(o.clone())))
            .collect::<Result<_, _>>()?;
        let audit = match &opts.audit_log {
            Some(p) => AuditLog::open(p)?,
            None => AuditLog::to_log(),
        };
        Ok(Trust {
            listen: opts.listen,
            metrics_listen: opts.metrics_listen,
            allowed_hosts: opts
                .allowed_hosts
                .iter()
                .map(|h| h.trim().to_ascii_lowercase())
                .collect(),
            cors_origins,
            users,
            roles,
            tokens: TokenKey::random()?,
            token_ttl: if opts.token_ttl.is_zero() {
                Duration::from_secs(86_400)
            } else {
                opts.token_ttl
            },
            targets,
            audit,
            tls: opts.tls,
            client_certs: opts.client_certs,
            failures: Mutex::default(),
            basic_cache: Mutex::default(),
        })
    }

    /// No authentication, loopback only, everything allowed: unit tests' gate.
    pub fn open_loopback() -> Self {
        Self::new(&TrustOptions::default()).expect("the default options are valid")
    }

    /// Whether requests must authenticate (passwords, tokens or client certificates).
    pub fn auth_enabled(&self) -> bool {
        self.users.is_some() || self.client_certs
    }

    fn role_of(&self, user: &str) -> Option<Role> {
        match &self.roles {
            Some(r) => r.role_of(user),
            None => Some(Role::Admin),
        }
    }

    /// Whether `host` (the `Host` header) names this server.
    fn host_allowed(&self, host: &str) -> bool {
        let name = host_part(host).to_ascii_lowercase();
        if name == "localhost" || self.allowed_hosts.contains(&name) {
            return true;
        }
        match name
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
        {
            Ok(ip) => {
                ip.is_loopback()
                    || [self.listen, self.metrics_listen]
                        .into_iter()
                        .flatten()
                        .any(|l| l.ip().is_unspecified() || l.ip() == ip)
            }
            Err(_) => false,
        }
    }

    /// Counts a failed login from `ip`.
    fn failed(&self, ip: Option<IpAddr>) {
        if let Some(ip) = ip {
            let mut f = self.failures.lock();
            let now = Instant::now();
            let e = f.entry(ip).or_insert((0, now));
            if now.duration_since(e.1) > FAILURE_WINDOW {
                *e = (0, now);
            }
            e.0 += 1;
            if f.len() > 10_000 {
                f.retain(|_, (_, t)| now.duration_since(*t) <= FAILURE_WINDOW);
            }
        }
    }

    /// Seconds to wait when `ip` failed too often.
    fn throttled(&self, ip: Option<IpAddr>) -> Option<u64> {
        let ip = ip?;
        let f = self.failures.lock();
        let (n, since) = f.get(&ip)?;
        let elapsed = since.elapsed();
        if *n >= MAX_FAILURES && elapsed <= FAILURE_WINDOW {
            Some((FAILURE_WINDOW - elapsed).as_secs().max(1))
        } else {
            None
        }
    }

    fn too_many(&self, ip: Option<IpAddr>, wait: u64) -> Denied {
        let who = ip.map(|i| i.to_string()).unwrap_or_default();
        Denied::new(
            StatusCode::TOO_MANY_REQUESTS,
            format!("too many failed logins from {who}; retry in {wait} s"),
        )
        .header(header::RETRY_AFTER, &wait.to_string())
    }

    /// Checks a user name and password, off the async workers.
    async fn verify_password(
        self: &Arc<Self>,
        user: String,
        password: String,
        peer: Option<IpAddr>,
    ) -> Result<String, Denied> {
        if self.users.is_none() {
            return Err(Denied::unauthorized(
                "password logins are off (no --auth-htpasswd): present a client certificate",
            ));
        }
        if let Some(wait) = self.throttled(peer) {
            return Err(self.too_many(peer, wait));
        }
        let digest = self.tokens.digest(format!("{user}\0{password}").as_bytes());
        if let Some((u, at)) = self.basic_cache.lock().get(&digest) {
            if at.elapsed() < BASIC_CACHE {
                return Ok(u.clone());
            }
        }
        let this = self.clone();
        let (u, ok) = tokio::task::spawn_blocking(move || {
            let ok = this
                .users
                .as_ref()
                .is_some_and(|f| f.verify(&user, &password));
            (user, ok)
        })
        .await
        .map_err(|_| Denied::new(StatusCode::INTERNAL_SERVER_ERROR, "password check failed"))?;
        if ok {
            let mut cache = self.basic_cache.lock();
            if cache.len() > 10_000 {
                cache.retain(|_, (_, t)| t.elapsed() < BASIC_CACHE);
            }
            cache.insert(digest, (u.clone(), Instant::now()));
            self.failures
                .lock()
                .remove(&peer.unwrap_or(IpAddr::from([0, 0, 0, 0])));
            Ok(u)
        } else {
            self.failed(peer);
            Err(Denied::unauthorized("wrong user name or password"))
        }
    }

    /// The user a request authenticates as, from a token or HTTP Basic credentials.
    async fn authenticate(
        self: &Arc<Self>,
        headers: &HeaderMap,
        peer: Option<IpAddr>,
    ) -> Result<String, Denied> {
        let auth = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .map(str::trim);
        let token = headers
            .get("x-auth-token")
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .or_else(|| auth.and_then(|a| strip_scheme(a, "bearer")).map(str::trim))
            .or_else(|| cookie(headers, "authtoken"));
        if let Some(t) = token {
            let user = self
                .tokens
                .check(t, unix_now())
                .map_err(|e| Denied::unauthorized(e.to_string()))?;
            if !self.users.as_ref().is_some_and(|u| u.contains(&user)) {
                return Err(Denied::unauthorized(format!(
                    "user {user:?} no longer exists"
                )));
            }
            return Ok(user);
        }
        if let Some(basic) = auth.and_then(|a| strip_scheme(a, "basic")) {
            use base64::Engine;
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(basic.trim())
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| Denied::unauthorized("malformed Basic credentials"))?;
            let (user, password) = decoded
                .split_once(':')
                .ok_or_else(|| Denied::unauthorized("malformed Basic credentials"))?;
            return self
                .verify_password(user.to_owned(), password.to_owned(), peer)
                .await;
        }
        if auth.is_some() {
            return Err(Denied::unauthorized(
                "unsupported Authorization scheme: use Basic or Bearer",
            ));
        }
        Err(Denied::unauthorized(
            "authentication required: log in with POST /login, or send HTTP Basic credentials",
        ))
    }
}

/// A request the gate refused: the response it gets, and what the audit log says.
#[derive(Debug)]
struct Denied {
    error: ApiError,
    headers: Vec<(header::HeaderName, String)>,
}

impl Denied {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Denied {
            error: ApiError::new(status, message),
            headers: Vec::new(),
        }
    }

    fn unauthorized(message: impl Into<String>) -> Self {
        Denied::new(StatusCode::UNAUTHORIZED, message)
            .header(header::WWW_AUTHENTICATE, "Bearer realm=\"topotap\"")
    }

    fn header(mut self, name: header::HeaderName, value: &str) -> Self {
        self.headers.push((name, value.to_owned()));
        self
    }

    fn into_response(self) -> Response {
        let mut resp = reply_error(self.error);
        for (k, v) in self.headers {
            if let Ok(v) = HeaderValue::from_str(&v) {
                resp.headers_mut().insert(k, v);
            }
        }
        resp
    }
}

/// The gate's rejection, turned back into its response by [`secure`].
#[derive(Debug)]
struct Refused(Mutex<Option<Response>>);
impl warp::reject::Reject for Refused {}

fn refuse(resp: Response) -> Rejection {
    warp::reject::custom(Refused(Mutex::new(Some(resp))))
}

/// What a request that passed the gate carries to the response side.
struct Passed {
    identity: Identity,
    method: Method,
    path: String,
    cors: Option<HeaderValue>,
}

/// The role a request needs; `None` for what is open to all (the UI's files, `/login`).
pub fn required_role(method: &Method, path: &str) -> Option<Role> {
    let first = path.trim_start_matches('/').split('/').next().unwrap_or("");
    if !matches!(first, "api" | "ws" | "metrics") {
        return None;
    }
    // Agents and peer analyzers write the graph: admins only (Skydive's cluster role).
    let trimmed = path.trim_end_matches('/');
    if trimmed.starts_with("/ws/agent/") || trimmed == "/ws/replication" {
        return Some(Role::Admin);
    }
    if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
        || (*method == Method::POST && path.trim_end_matches('/') == "/api/topology")
    {
        return Some(Role::Reader);
    }
    let second = path.trim_start_matches('/').split('/').nth(1).unwrap_or("");
    if first == "api" && matches!(second, "capture" | "pcap") {
        return Some(Role::Operator);
    }
    Some(Role::Admin)
}

/// The content types a state-changing request may carry; `None` when any will do.
fn accepted_types(method: &Method, path: &str) -> Option<&'static [&'static str]> {
    if !matches!(*method, Method::POST | Method::PUT | Method::PATCH) {
        return None;
    }
    let path = path.trim_end_matches('/');
    if path == "/logout" {
        // No body; it only expires the caller's own cookie.
        return None;
    }
    Some(if path == "/login" {
        &["application/x-www-form-urlencoded"]
    } else if path == "/api/pcap" {
        &[
            "application/octet-stream",
            "application/vnd.tcpdump.pcap",
            "application/json",
        ]
    } else if *method == Method::PATCH {
        &["application/json", "application/json-patch+json"]
    } else {
        &["application/json"]
    })
}

/// Wraps the API's routes in the gate; see the module documentation.
pub fn secure<F>(
    trust: Arc<Trust>,
    routes: F,
) -> impl Filter<Extract = (Response,), Error = Infallible> + Clone
where
    F: Filter<Extract = (Response,), Error = Infallible> + Clone + Send + Sync + 'static,
{
    let t = trust.clone();
    let gate = warp::method()
        .and(warp::path::full())
        .and(warp::header::headers_cloned())
        .and(crate::http::remote())
        .and(warp::ext::optional::<ClientCert>())
        .and_then(
            move |method: Method,
                  path: warp::path::FullPath,
                  headers: HeaderMap,
                  peer,
                  client: Option<ClientCert>| {
                let t = t.clone();
                async move {
                    check(&t, method, path.as_str(), &headers, peer, client)
                        .await
                        .map_err(refuse)
                }
            },
        );
    let login = login_routes(trust.clone());
    let t = trust.clone();
    gate.and(warp::any().map(move || t.clone()))
        .and(login.or(routes).unify())
        .then(|passed: Passed, trust: Arc<Trust>, resp: Response| finish(trust, passed, resp))
        .recover(|r: Rejection| async move {
            if let Some(Refused(resp)) = r.find::<Refused>() {
                if let Some(resp) = resp.lock().take() {
                    return Ok::<_, Infallible>(resp);
                }
            }
            Ok(reply_error(ApiError::bad_request(format!("{r:?}"))))
        })
        .unify()
}

/// A refused request's answer, recorded in the audit log first when it is an audited action.
fn refused(
    trust: &Trust,
    action: Option<&str>,
    user: Option<&str>,
    source: Option<SocketAddr>,
    path: &str,
    d: Denied,
) -> Response {
    if let Some(action) = action {
        trust.audit.record(audit::Entry {
            user,
            source,
            action,
            resource: json!({ "Path": path }),
            status: d.error.status.as_u16(),
        });
    }
    d.into_response()
}

/// The gate itself: `Ok` lets the request through, `Err` is its answer.
async fn check(
    trust: &Arc<Trust>,
    method: Method,
    path: &str,
    headers: &HeaderMap,
    peer: Option<SocketAddr>,
    client: Option<ClientCert>,
) -> Result<Passed, Response> {
    let action = audit::action(method.as_str(), path);
    let audited =
        |user: Option<&str>, d: Denied| refused(trust, action.as_deref(), user, peer, path, d);

    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    if let Some(h) = host {
        if !trust.host_allowed(h) {
            return Err(audited(
                None,
                Denied::new(
                    StatusCode::FORBIDDEN,
                    format!(
                        "Host {:?} is not this server's name; give --allowed-host {} to serve it under that name",
                        h,
                        host_part(h)
                    ),
                ),
            ));
        }
    }

    let mut cors = None;
    if let Some(origin) = headers.get(header::ORIGIN) {
        let o = origin.to_str().unwrap_or("");
        let same = host.is_some_and(|h| same_origin(o, h, trust.tls));
        if !same {
            match normalize_origin(o).filter(|n| trust.cors_origins.contains(n)) {
                Some(_) => cors = Some(origin.clone()),
                None => {
                    return Err(audited(
                        None,
                        Denied::new(
                            StatusCode::FORBIDDEN,
                            format!(
                                "cross-origin request from {o:?} refused: only origins given with --cors-origin may call this API"
                            ),
                        ),
                    ))
                }
            }
        }
        if method == Method::OPTIONS && headers.contains_key("access-control-request-method") {
            return Err(preflight(cors.as_ref()));
        }
    }

    // From here on a listed origin may read why it was refused (a 401 that asks for a
    // login, a 415, a 403 naming the role), as it may read the answers that succeed.
    check_request(trust, method, path, headers, peer, client, cors.clone())
        .await
        .map_err(|mut resp| {
            if let Some(o) = cors {
                let h = resp.headers_mut();
                h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, o);
                h.insert(
                    header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                    HeaderValue::from_static("true"),
                );
                h.append(header::VARY, HeaderValue::from_static("Origin"));
            }
            resp
        })
}

/// The rest of the gate, once Host and Origin passed: content type, authentication, role.
async fn check_request(
    trust: &Arc<Trust>,
    method: Method,
    path: &str,
    headers: &HeaderMap,
    peer: Option<SocketAddr>,
    client: Option<ClientCert>,
    cors: Option<HeaderValue>,
) -> Result<Passed, Response> {
    let action = audit::action(method.as_str(), path);
    let audited =
        |user: Option<&str>, d: Denied| refused(trust, action.as_deref(), user, peer, path, d);
    if let Some(types) = accepted_types(&method, path) {
        let got = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| {
                v.split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_ascii_lowercase()
            });
        if !got.as_deref().is_some_and(|g| types.contains(&g)) {
            let got = got.map_or("none".to_owned(), |g| format!("{g:?}"));
            return Err(audited(
                None,
                Denied::new(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    format!(
                        "{method} {path} needs Content-Type {} (got {got})",
                        types.join(" or ")
                    ),
                ),
            ));
        }
    }

    let required = required_role(&method, path);
    let peer_ip = peer.map(|p| p.ip());
    let user = match (trust.auth_enabled(), required) {
        (false, _) | (true, None) => None,
        (true, Some(need)) => {
            let user = match client {
                // A certificate the TLS handshake verified against --tls-client-ca.
                Some(ClientCert(name)) => name,
                None => trust
                    .authenticate(headers, peer_ip)
                    .await
                    .map_err(|d| audited(None, d))?,
            };
            let Some(role) = trust.role_of(&user) else {
                return Err(audited(
                    Some(&user),
                    Denied::new(
                        StatusCode::FORBIDDEN,
                        format!("user {user:?} has no role; {method} {path} needs role {need}"),
                    ),
                ));
            };
            if role < need {
                return Err(audited(
                    Some(&user),
                    Denied::new(
                        StatusCode::FORBIDDEN,
                        format!("user {user:?} has role {role}; {method} {path} needs role {need}"),
                    ),
                ));
            }
            Some(user)
        }
    };
    Ok(Passed {
        identity: Identity { user, peer },
        method,
        path: path.to_owned(),
        cors,
    })
}

/// The answer to a CORS preflight from a listed origin.
fn preflight(origin: Option<&HeaderValue>) -> Response {
    let mut resp = warp::reply().into_response();
    *resp.status_mut() = StatusCode::NO_CONTENT;
    let h = resp.headers_mut();
    if let Some(o) = origin {
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, o.clone());
        h.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("GET, HEAD, POST, PUT, PATCH, DELETE"),
        );
        h.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static(
                "Content-Type, Authorization, X-Auth-Token, X-Resource-TTL, X-Requested-With",
            ),
        );
        h.insert(
            header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
            HeaderValue::from_static("true"),
        );
        h.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static("600"),
        );
        h.insert(header::VARY, HeaderValue::from_static("Origin"));
    }
    resp
}

/// After the route answered: CORS headers for listed origins, and the audit line.
async fn finish(trust: Arc<Trust>, passed: Passed, mut resp: Response) -> Response {
    if let Some(o) = passed.cors {
        let h = resp.headers_mut();
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, o);
        h.insert(
            header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
            HeaderValue::from_static("true"),
        );
        h.append(header::VARY, HeaderValue::from_static("Origin"));
    }
    if let Some(user) = &passed.identity.user {
        // Who the caller is logged in as: the web UI shows it next to "Log out".
        if let Ok(v) = HeaderValue::from_str(user) {
            resp.headers_mut().insert(USER_HEADER, v);
        }
    }
    let Some(action) = audit::action(passed.method.as_str(), &passed.path) else {
        return resp;
    };
    let status = resp.status();
    let mut resource = json!({ "Path": passed.path });
    if status.is_success() && passed.method == Method::POST {
        // What was created, from the answer (small JSON documents).
        let (parts, body) = resp.into_parts();
        let bytes = http_body_util::BodyExt::collect(body)
            .await
            .map(|c| c.to_bytes())
            .unwrap_or_default();
        if let Ok(Value::Object(created)) = serde_json::from_slice::<Value>(&bytes) {
            for key in [
                "UUID",
                "ID",
                "GremlinQuery",
                "Target",
                "TargetType",
                "Src",
                "DstIP",
                "Type",
                "Parent",
                "Child",
            ] {
                if let Some(v) = created.get(key).filter(|v| !v.is_null() && *v != "") {
                    resource[key] = v.clone();
                }
            }
        }
        resp = Response::from_parts(parts, bytes.into());
    }
    trust.audit.record(audit::Entry {
        user: passed.identity.user.as_deref(),
        source: passed.identity.peer,
        action: &action,
        resource,
        status: status.as_u16(),
    });
    resp
}

/// `POST /login` (form fields `username`, `password`) → 200 `{"Token", "Permissions"}`
/// and the `authtoken` cookie; `GET /login` → 302 to `/`; `POST /logout` → 204 and the
/// cookie expired (the web UI's cookie is HttpOnly: its scripts cannot drop it).
fn login_routes(
    trust: Arc<Trust>,
) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    let t = trust.clone();
    // The form's own errors are answered here: past this route the API's routes would
    // answer a POST /login with "method not allowed".
    let form = warp::body::content_length_limit(LOGIN_FORM_LIMIT)
        .and(warp::body::form::<HashMap<String, String>>())
        .and(crate::http::remote())
        .then(
            move |form: HashMap<String, String>, peer: Option<SocketAddr>| {
                let t = t.clone();
                async move { login(t, form, peer).await }
            },
        )
        .recover(|r: Rejection| async move {
            let error = if r.find::<warp::reject::PayloadTooLarge>().is_some() {
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("login form larger than {LOGIN_FORM_LIMIT} bytes"),
                )
            } else if r.find::<warp::reject::LengthRequired>().is_some() {
                ApiError::new(
                    StatusCode::LENGTH_REQUIRED,
                    "the login form needs a Content-Length",
                )
            } else {
                ApiError::bad_request("malformed login form: expected username=...&password=...")
            };
            Ok::<_, Infallible>(reply_error(error))
        })
        .unify();
    let post = warp::path!("login").and(warp::post()).and(form);
    let logout = warp::path!("logout").and(warp::post()).map(move || {
        let mut resp = warp::reply().into_response();
        *resp.status_mut() = StatusCode::NO_CONTENT;
        let secure = if trust.tls { "; Secure" } else { "" };
        let cookie = format!("authtoken=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict{secure}");
        if let Ok(v) = HeaderValue::from_str(&cookie) {
            resp.headers_mut().insert(header::SET_COOKIE, v);
        }
        resp
    });
    let get = warp::path!("login").and(warp::get()).map(|| {
        let mut resp = warp::reply().into_response();
        *resp.status_mut() = StatusCode::FOUND;
        resp.headers_mut()
            .insert(header::LOCATION, HeaderValue::from_static("/"));
        resp
    });
    post.or(get).unify().or(logout).unify()
}

async fn login(
    trust: Arc<Trust>,
    form: HashMap<String, String>,
    peer: Option<SocketAddr>,
) -> Response {
    let user = form.get("username").cloned().unwrap_or_default();
    let password = form.get("password").cloned().unwrap_or_default();
    if !trust.auth_enabled() {
        // Authentication is off: nothing to log in to; say so, as a success.
        return reply_json(
            StatusCode::OK,
            &login_reply(String::new(), Some(Role::Admin)),
        );
    }
    if user.is_empty() {
        return Denied::unauthorized("username and password form fields are required")
            .into_response();
    }
    let user = match trust
        .verify_password(user, password, peer.map(|p| p.ip()))
        .await
    {
        Ok(u) => u,
        Err(d) => return d.into_response(),
    };
    let ttl = trust.token_ttl.as_secs();
    let token = trust.tokens.issue(&user, unix_now() + ttl);
    let mut resp = reply_json(
        StatusCode::OK,
        &login_reply(token.clone(), trust.role_of(&user)),
    );
    let secure = if trust.tls { "; Secure" } else { "" };
    let cookie =
        format!("authtoken={token}; Path=/; Max-Age={ttl}; HttpOnly; SameSite=Strict{secure}");
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    resp
}

/// The answer to a login: the token and what the user's role may do.
fn login_reply(token: String, role: Option<Role>) -> crate::api::openapi::LoginReply {
    crate::api::openapi::LoginReply {
        token,
        permissions: role
            .map(Role::permissions)
            .unwrap_or_default()
            .into_iter()
            .map(str::to_owned)
            .collect(),
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// `Basic xyz` → `xyz` (scheme names are case-insensitive).
fn strip_scheme<'a>(value: &'a str, scheme: &str) -> Option<&'a str> {
    let (s, rest) = value.split_once(' ').unwrap_or((value, ""));
    s.eq_ignore_ascii_case(scheme).then_some(rest)
}

/// A cookie's value from the `Cookie` headers.
fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim_matches('"'))
}

/// The host of a `Host` header or authority: `[::1]:80` → `[::1]`, `a.b:80` → `a.b`.
fn host_part(host: &str) -> &str {
    let host = host.trim();
    if host.starts_with('[') {
        return host.split_inclusive(']').next().unwrap_or(host);
    }
    match host.rsplit_once(':') {
        Some((h, p)) if p.chars().all(|c| c.is_ascii_digit()) => h,
        _ => host,
    }
}

/// `https://Example.org:443/` → `https://example.org`; `None` if not an origin.
fn normalize_origin(origin: &str) -> Option<String> {
    let (scheme, rest) = origin.trim().split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    let authority = rest.trim_end_matches('/').to_ascii_lowercase();
    if authority.is_empty() || authority.contains(['/', '?', '#', '@', ' ']) {
        return None;
    }
    let default_port = match scheme.as_str() {
        "http" => ":80",
        "https" => ":443",
        _ => return None,
    };
    let authority = authority
        .strip_suffix(default_port)
        .map(str::to_owned)
        .unwrap_or(authority);
    Some(format!("{scheme}://{authority}"))
}

/// Whether `origin` is this server as reached through `host` (its `Host` header).
fn same_origin(origin: &str, host: &str, tls: bool) -> bool {
    let scheme = if tls { "https" } else { "http" };
    match (
        normalize_origin(origin),
        normalize_origin(&format!("{scheme}://{host}")),
    ) {
        (Some(a), Some(b)) => a == b,
        _ => false,
    }
}

/// Warns every minute that `what` (the API, /metrics) is open to anyone who reaches it.
pub async fn warn_open(listen: SocketAddr, what: &'static str) {
    let mut tick = tokio::time::interval(Duration::from_secs(60));
    let risk = if what == "the API" {
        "they can capture and inject traffic"
    } else {
        "they can read the host's interfaces, captures and flows"
    };
    loop {
        tick.tick().await;
        tracing::warn!(
            %listen,
            "--insecure-no-auth: {what} is open to anyone who reaches {listen}: {risk}"
        );
    }
}

#[cfg(test)]
mod tests;
