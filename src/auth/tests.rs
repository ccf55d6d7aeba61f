//! The gate against the API's own routes, without a socket.

use super::*;
use crate::api::test_support::state;

fn trust_with(opts: TrustOptions) -> Arc<Trust> {
    Arc::new(Trust::new(&opts).unwrap())
}

async fn send(
    api: &(impl Filter<Extract = (Response,), Error = Infallible> + Clone + 'static),
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String, HeaderMap) {
    let mut req = warp::test::request()
        .method(method)
        .path(path)
        .extension(crate::http::PeerAddr("127.0.0.1:40000".parse().unwrap()))
        .body(body);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.reply(api).await;
    (
        resp.status().as_u16(),
        String::from_utf8_lossy(resp.body()).into_owned(),
        resp.headers().clone(),
    )
}

const JSON: (&str, &str) = ("content-type", "application/json");
const HOST: (&str, &str) = ("host", "127.0.0.1:8082");

fn node(id: &str) -> String {
    json!({"ID": id, "Metadata": {"Name": id, "Type": "device"}}).to_string()
}

#[tokio::test]
async fn host_origin_and_content_type_defaults() {
    let mut s = state();
    s.trust = trust_with(TrustOptions {
        listen: Some("127.0.0.1:8082".parse().unwrap()),
        allowed_hosts: vec!["topo.example.org".into()],
        ..Default::default()
    });
    let api = crate::api::secured(s.clone());

    // DNS rebinding: a name this server was not given.
    let (st, body, _) = send(&api, "GET", "/api", &[("host", "evil.example:8082")], "").await;
    assert_eq!(st, 403, "{body}");
    assert!(body.contains("--allowed-host evil.example"), "{body}");
    for host in [
        "localhost:8082",
        "127.0.0.1",
        "[::1]:8082",
        "TOPO.example.org",
    ] {
        let (st, body, _) = send(&api, "GET", "/api", &[("host", host)], "").await;
        assert_eq!(st, 200, "{host}: {body}");
    }

    // A cross-origin form POST (text/plain, no preflight) creates nothing.
    let (st, body, _) = send(
        &api,
        "POST",
        "/api/node",
        &[
            HOST,
            ("origin", "http://evil.example"),
            ("content-type", "text/plain"),
        ],
        &node("n1"),
    )
    .await;
    assert_eq!(st, 403, "{body}");
    assert!(body.contains("cross-origin request from \"http://evil.example\""));
    // Without Origin (curl), text/plain is still refused: 415 naming the type.
    let (st, body, _) = send(
        &api,
        "POST",
        "/api/node",
        &[HOST, ("content-type", "text/plain")],
        &node("n1"),
    )
    .await;
    assert_eq!(st, 415, "{body}");
    assert!(
        body.contains("needs Content-Type application/json (got \"text/plain\")"),
        "{body}"
    );
    let (st, _, _) = send(&api, "POST", "/api/node", &[HOST], &node("n1")).await;
    assert_eq!(st, 415);
    assert!(s.graph.read().node_count() == 0);

    // Same-origin (the bundled UI) and charset parameters are fine.
    let (st, body, _) = send(
        &api,
        "POST",
        "/api/node",
        &[
            HOST,
            ("origin", "http://127.0.0.1:8082"),
            ("content-type", "application/json; charset=utf-8"),
        ],
        &node("n1"),
    )
    .await;
    assert_eq!(st, 201, "{body}");
    // PATCH takes json-patch+json; pcap takes the Go client's application/json.
    let patch = r#"[{"op":"add","path":"/Metadata/x","value":1}]"#;
    let (st, body, _) = send(
        &api,
        "PATCH",
        "/api/node/n1",
        &[HOST, ("content-type", "application/json-patch+json")],
        patch,
    )
    .await;
    assert_eq!(st, 200, "{body}");
    let (st, body, _) = send(
        &api,
        "POST",
        "/api/pcap",
        &[HOST, ("content-type", "text/plain")],
        "",
    )
    .await;
    assert_eq!(st, 415, "{body}");

    // Preflights: refused from unlisted origins, no CORS headers anywhere.
    let (st, _, h) = send(
        &api,
        "OPTIONS",
        "/api/topology",
        &[
            HOST,
            ("origin", "http://evil.example"),
            ("access-control-request-method", "POST"),
        ],
        "",
    )
    .await;
    assert_eq!(st, 403);
    assert!(!h.contains_key("access-control-allow-origin"));
    let (st, _, h) = send(
        &api,
        "GET",
        "/api/topology",
        &[HOST, ("origin", "http://evil.example")],
        "",
    )
    .await;
    assert_eq!(st, 403);
    assert!(!h.contains_key("access-control-allow-origin"));
}

#[tokio::test]
async fn listed_cors_origins_get_headers() {
    let mut s = state();
    s.trust = trust_with(TrustOptions {
        cors_origins: vec!["https://ui.example.org:443/".into()],
        ..Default::default()
    });
    let api = crate::api::secured(s);
    let (st, _, h) = send(
        &api,
        "OPTIONS",
        "/api/topology",
        &[
            HOST,
            ("origin", "https://ui.example.org"),
            ("access-control-request-method", "POST"),
        ],
        "",
    )
    .await;
    assert_eq!(st, 204);
    assert_eq!(h["access-control-allow-origin"], "https://ui.example.org");
    let (st, _, h) = send(
        &api,
        "GET",
        "/api",
        &[HOST, ("origin", "https://ui.example.org")],
        "",
    )
    .await;
    assert_eq!(st, 200);
    assert_eq!(h["access-control-allow-origin"], "https://ui.example.org");
    assert!(Trust::new(&TrustOptions {
        cors_origins: vec!["*".into()],
        ..Default::default()
    })
    .is_err());
}

fn htpasswd_file(dir: &std::path::Path, users: &[(&str, &str)]) -> PathBuf {
    let mut text = String::new();
    for (u, p) in users {
        let h = bcrypt::hash_with_result(p, 4)
            .unwrap()
            .format_for_version(bcrypt::Version::TwoY);
        text += &format!("{u}:{h}\n");
    }
    let path = dir.join("htpasswd");
    std::fs::write(&path, text).unwrap();
    path
}

#[tokio::test]
async fn logins_tokens_basic_roles_and_rate_limit() {
    let dir = tempfile::tempdir().unwrap();
    let users = [
        ("ann", "a-pass"),
        ("otto", "o-pass"),
        ("rita", "r-pass"),
        ("nobody", "n-pass"),
    ];
    let htpasswd = htpasswd_file(dir.path(), &users);
    let roles = dir.path().join("roles.toml");
    std::fs::write(
        &roles,
        "[users]\nann = \"admin\"\notto = \"operator\"\nrita = \"reader\"\n",
    )
    .unwrap();
    let mut s = state();
    s.trust = trust_with(TrustOptions {
        htpasswd: Some(htpasswd),
        roles: Some(roles),
        ..Default::default()
    });
    let api = crate::api::secured(s.clone());

    // The UI's files are open; the API is not.
    let (st, _, _) = send(&api, "GET", "/", &[HOST], "").await;
    assert_eq!(st, 200);
    let (st, body, h) = send(&api, "GET", "/api/topology", &[HOST], "").await;
    assert_eq!((st, body.lines().count()), (401, 1), "{body}");
    assert!(h.contains_key("www-authenticate"));

    let form = ("content-type", "application/x-www-form-urlencoded");
    let (st, body, h) = send(
        &api,
        "POST",
        "/login",
        &[HOST, form],
        "username=rita&password=r-pass",
    )
    .await;
    assert_eq!(st, 200, "{body}");
    let token = serde_json::from_str::<Value>(&body).unwrap()["Token"]
        .as_str()
        .unwrap()
        .to_owned();
    let cookie = h["set-cookie"].to_str().unwrap();
    assert!(cookie.starts_with(&format!("authtoken={token};")) && cookie.contains("HttpOnly"));
    // JSON is not a login form.
    let (st, _, _) = send(
        &api,
        "POST",
        "/login",
        &[HOST, JSON],
        r#"{"username":"rita"}"#,
    )
    .await;
    assert_eq!(st, 415);

    let cookie_h = format!("authtoken={token}");
    let bearer = format!("Bearer {token}");
    for h in [
        ("cookie", cookie_h.as_str()),
        ("x-auth-token", token.as_str()),
        ("authorization", bearer.as_str()),
    ] {
        let (st, body, _) = send(&api, "GET", "/api/topology", &[HOST, h], "").await;
        assert_eq!(st, 200, "{h:?}: {body}");
    }
    // A reader may query but not write: 403 naming the role.
    let (st, _, _) = send(
        &api,
        "POST",
        "/api/topology",
        &[HOST, JSON, ("x-auth-token", &token)],
        r#"{"GremlinQuery":"G.V()"}"#,
    )
    .await;
    assert_eq!(st, 200);
    let (st, body, _) = send(
        &api,
        "POST",
        "/api/capture",
        &[HOST, JSON, ("x-auth-token", &token)],
        r#"{"GremlinQuery":"G.V()"}"#,
    )
    .await;
    assert_eq!(st, 403);
    assert_eq!(
        body,
        "user \"rita\" has role reader; POST /api/capture needs role operator\n"
    );

    // Each role: what it may not do is a 403 naming the role it lacks.
    use base64::Engine;
    let basic = |u: &str, p: &str| {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))
        )
    };
    let cases = [
        (
            "otto",
            "o-pass",
            "POST",
            "/api/capture",
            r#"{"GremlinQuery":"G.V()"}"#,
            201,
            "",
        ),
        (
            "otto",
            "o-pass",
            "POST",
            "/api/node",
            &node("x") as &str,
            403,
            "needs role admin",
        ),
        ("ann", "a-pass", "POST", "/api/node", &node("y"), 201, ""),
        (
            "nobody",
            "n-pass",
            "GET",
            "/api",
            "",
            403,
            "user \"nobody\" has no role; GET /api needs role reader",
        ),
        (
            "ann",
            "wrong",
            "GET",
            "/api",
            "",
            401,
            "wrong user name or password",
        ),
    ];
    for (u, p, m, path, body, want, reason) in cases {
        let auth = basic(u, p);
        let (st, got, _) = send(&api, m, path, &[HOST, JSON, ("authorization", &auth)], body).await;
        assert_eq!(st, want, "{u} {m} {path}: {got}");
        assert!(got.contains(reason), "{got}");
    }

    // Broken tokens: one-line 401s.
    for (t, reason) in [
        ("garbage", "malformed token"),
        ("v1.cml0YQ.99999999999.AAAA", "invalid token"),
    ] {
        let (st, body, _) = send(&api, "GET", "/api", &[HOST, ("x-auth-token", t)], "").await;
        assert_eq!((st, body.lines().count()), (401, 1));
        assert!(body.contains(reason), "{body}");
    }
    let expired = s.trust.tokens.issue("rita", 1);
    let (st, body, _) = send(&api, "GET", "/api", &[HOST, ("x-auth-token", &expired)], "").await;
    assert_eq!(st, 401);
    assert!(body.starts_with("token expired at 1 "), "{body}");

    // Failed logins from one address are throttled (one failure above already).
    for _ in 1..MAX_FAILURES {
        let (st, _, _) = send(
            &api,
            "POST",
            "/login",
            &[HOST, form],
            "username=ann&password=x",
        )
        .await;
        assert_eq!(st, 401);
    }
    let (st, body, h) = send(
        &api,
        "POST",
        "/login",
        &[HOST, form],
        "username=ann&password=a-pass",
    )
    .await;
    assert_eq!(st, 429, "{body}");
    assert!(
        body.starts_with("too many failed logins from 127.0.0.1"),
        "{body}"
    );
    assert!(h.contains_key("retry-after"));
}

#[test]
fn startup_checks() {
    let open = |listen: &str, insecure: bool| {
        Trust::new(&TrustOptions {
            listen: Some(listen.parse().unwrap()),
            insecure_no_auth: insecure,
            ..Default::default()
        })
    };
    let err = open("0.0.0.0:8082", false).err().unwrap().to_string();
    assert!(
        err.starts_with("refusing to serve the API on 0.0.0.0:8082 without authentication"),
        "{err}"
    );
    assert!(open("0.0.0.0:8082", true).is_ok());
    assert!(matches!(
        open("127.0.0.1:8082", false).unwrap().targets,
        AllowTargets::Everything
    ));
    // Open beyond loopback: exports and injections go nowhere unless listed.
    assert!(
        matches!(open("0.0.0.0:8082", true).unwrap().targets, AllowTargets::Only(ref v) if v.is_empty())
    );

    let err = Trust::new(&TrustOptions {
        htpasswd: Some("/nonexistent/htpasswd".into()),
        ..Default::default()
    })
    .err()
    .unwrap()
    .to_string();
    assert!(
        err.starts_with("cannot read the htpasswd file /nonexistent/htpasswd: "),
        "{err}"
    );
    let err = Trust::new(&TrustOptions {
        roles: Some("/nonexistent/roles".into()),
        ..Default::default()
    })
    .err()
    .unwrap()
    .to_string();
    assert!(err.contains("--auth-roles needs --auth-htpasswd"), "{err}");
}

#[test]
fn header_helpers() {
    assert_eq!(host_part("[::1]:8082"), "[::1]");
    assert_eq!(host_part("a.b:80"), "a.b");
    assert_eq!(host_part("a.b"), "a.b");
    assert_eq!(normalize_origin("HTTP://A.b:80"), Some("http://a.b".into()));
    assert_eq!(normalize_origin("null"), None);
    assert_eq!(normalize_origin("file://"), None);
    assert!(same_origin(
        "http://127.0.0.1:8082",
        "127.0.0.1:8082",
        false
    ));
    assert!(!same_origin(
        "https://127.0.0.1:8082",
        "127.0.0.1:8082",
        false
    ));
    assert!(!same_origin(
        "http://127.0.0.1:9000",
        "127.0.0.1:8082",
        false
    ));
    assert_eq!(required_role(&Method::GET, "/"), None);
    assert_eq!(required_role(&Method::POST, "/login"), None);
    assert_eq!(
        required_role(&Method::GET, "/ws/subscriber"),
        Some(Role::Reader)
    );
    assert_eq!(
        required_role(&Method::POST, "/api/topology"),
        Some(Role::Reader)
    );
    assert_eq!(
        required_role(&Method::DELETE, "/api/capture/x"),
        Some(Role::Operator)
    );
    assert_eq!(
        required_role(&Method::POST, "/api/injectpacket"),
        Some(Role::Admin)
    );
    assert_eq!(required_role(&Method::GET, "/metrics"), Some(Role::Reader));
    assert_eq!(
        required_role(&Method::GET, "/ws/agent/topology"),
        Some(Role::Admin)
    );
    assert_eq!(
        required_role(&Method::GET, "/ws/replication"),
        Some(Role::Admin)
    );
}
