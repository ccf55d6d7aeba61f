//! Authentication, roles, start-up refusals and `--allow-target` on the real binary.

mod common;

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::Topotap;
use serde_json::{json, Value};

/// A directory with an htpasswd file (bcrypt, as `htpasswd -B`), a roles file and the
/// audit log, deleted on drop.
struct Users {
    dir: tempfile::TempDir,
}

const USERS: [(&str, &str, Option<&str>); 4] = [
    ("rita", "rita-pw", Some("reader")),
    ("otto", "otto-pw", Some("operator")),
    ("ada", "ada-pw", Some("admin")),
    ("nemo", "nemo-pw", None),
];

impl Users {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut htpasswd = String::from("# made for the test\n");
        let mut roles = String::from("[users]\n");
        for (user, pw, role) in USERS {
            htpasswd += &format!("{user}:{}\n", bcrypt::hash(pw, 5).unwrap());
            if let Some(r) = role {
                roles += &format!("{user} = \"{r}\"\n");
            }
        }
        std::fs::write(dir.path().join("htpasswd"), htpasswd).unwrap();
        std::fs::write(dir.path().join("roles.toml"), roles).unwrap();
        Users { dir }
    }

    fn path(&self, file: &str) -> String {
        self.dir.path().join(file).to_string_lossy().into_owned()
    }

    /// Starts topotap with these users, their roles and the audit log.
    fn start(&self, extra: &[&str]) -> Topotap {
        let (h, r, a) = (
            self.path("htpasswd"),
            self.path("roles.toml"),
            self.path("audit.jsonl"),
        );
        let mut args = vec![
            "--no-probes",
            "--auth-htpasswd",
            &h,
            "--auth-roles",
            &r,
            "--audit-log",
            &a,
        ];
        args.extend_from_slice(extra);
        Topotap::start(&args)
    }
}

fn basic(user: &str, pw: &str) -> String {
    use base64::Engine;
    let b = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pw}"));
    format!("Basic {b}")
}

/// `POST /login` as a form: the status, the JSON answer and the `Set-Cookie` header.
async fn login(t: &Topotap, user: &str, pw: &str) -> (u16, Value, String) {
    let resp = reqwest::Client::new()
        .post(t.url("/login"))
        .form(&[("username", user), ("password", pw)])
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let cookie = resp
        .headers()
        .get("set-cookie")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let text = resp.text().await.unwrap();
    let v = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, v, cookie)
}

/// The reason of an error answer: one line of text.
fn one_line(v: &Value) -> &str {
    let s = v
        .as_str()
        .unwrap_or_else(|| panic!("not a text answer: {v}"));
    let s = s.trim_end();
    assert_eq!(s.lines().count(), 1, "{s:?}");
    s
}

fn capture(target_type: &str, target: &str) -> String {
    json!({"GremlinQuery": "G.V().Has('Name','nothing-here')", "TargetType": target_type,
        "Target": target})
    .to_string()
}

#[tokio::test]
async fn a_401_and_a_403_for_each_role() {
    let users = Users::new();
    let t = users.start(&["--allow-target", "127.0.0.0/8"]);

    // No credentials at all.
    let (s, v) = t.request("GET", "/api/topology", None).await;
    assert_eq!(s, 401);
    assert!(one_line(&v).starts_with("authentication required"), "{v}");

    let node = json!({"ID": "n-ada", "Metadata": {"Name": "n-ada", "Type": "device"}}).to_string();
    for (user, pw, role) in USERS {
        // 401: a wrong password, and the one-line reason.
        let wrong = basic(user, "not-the-password");
        let (s, v) = t
            .request_with("GET", "/api", None, &[("authorization", &wrong)])
            .await;
        assert_eq!(s, 401, "{user}");
        assert_eq!(one_line(&v), "wrong user name or password");

        // The right password logs in; the token works as a header, a Bearer and the
        // cookie.
        let (s, v, cookie) = login(&t, user, pw).await;
        assert_eq!(s, 200, "{user}: {v}");
        let token = v["Token"].as_str().unwrap().to_owned();
        assert!(
            cookie.starts_with(&format!("authtoken={token};")),
            "{cookie}"
        );
        assert!(cookie.contains("HttpOnly"), "{cookie}");
        let bearer = format!("Bearer {token}");
        let cookie_header = format!("authtoken={token}");
        let ways: [(&str, &str); 3] = [
            ("x-auth-token", &token),
            ("authorization", &bearer),
            ("cookie", &cookie_header),
        ];
        let h = [("x-auth-token", token.as_str())];
        match role {
            None => {
                let (s, v) = t.request_with("GET", "/api/topology", None, &h).await;
                assert_eq!(s, 403);
                assert_eq!(
                    one_line(&v),
                    "user \"nemo\" has no role; GET /api/topology needs role reader"
                );
                continue;
            }
            Some("reader") => {
                for way in ways {
                    let (s, v) = t.request_with("GET", "/api/topology", None, &[way]).await;
                    assert_eq!(s, 200, "{way:?}: {v}");
                }
                let (s, v) = t
                    .request_with("POST", "/api/capture", Some(&capture("local", "")), &h)
                    .await;
                assert_eq!(s, 403);
                assert_eq!(
                    one_line(&v),
                    "user \"rita\" has role reader; POST /api/capture needs role operator"
                );
            }
            Some("operator") => {
                let (s, v) = t
                    .request_with("POST", "/api/capture", Some(&capture("local", "")), &h)
                    .await;
                assert_eq!(s, 201, "{v}");
                let (s, v) = t.request_with("POST", "/api/node", Some(&node), &h).await;
                assert_eq!(s, 403);
                assert_eq!(
                    one_line(&v),
                    "user \"otto\" has role operator; POST /api/node needs role admin"
                );
            }
            Some(_) => {
                let (s, v) = t.request_with("POST", "/api/node", Some(&node), &h).await;
                assert_eq!(s, 201, "{v}");
                // An admin is still held to --allow-target: 403 naming the list.
                let (s, v) = t
                    .request_with(
                        "POST",
                        "/api/capture",
                        Some(&capture("netflowv5", "10.11.12.13:2055")),
                        &h,
                    )
                    .await;
                assert_eq!(s, 403);
                assert_eq!(
                    one_line(&v),
                    "target 10.11.12.13:2055 (10.11.12.13) is outside --allow-target 127.0.0.0/8"
                );
            }
        }
    }

    // /metrics is behind the same login.
    let (s, _) = t.request("GET", "/metrics", None).await;
    assert_eq!(s, 401);
    let reader = basic("rita", "rita-pw");
    let (s, v) = t
        .request_with("GET", "/metrics", None, &[("authorization", &reader)])
        .await;
    assert_eq!(s, 200);
    assert!(v.as_str().unwrap().contains("topotap_graph_nodes"), "{v}");

    // Every write was audited with the user and the source address.
    let audit = std::fs::read_to_string(users.path("audit.jsonl")).unwrap();
    let lines: Vec<Value> = audit
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
        .collect();
    let refused = lines
        .iter()
        .find(|l| l["User"] == "ada" && l["Status"] == 403)
        .unwrap_or_else(|| panic!("no refused capture by ada in {audit}"));
    assert!(refused["Source"]
        .as_str()
        .unwrap()
        .starts_with("127.0.0.1:"));
    assert!(
        lines
            .iter()
            .any(|l| l["User"] == "otto" && l["Status"] == 201),
        "{audit}"
    );
}

#[tokio::test]
async fn malformed_and_expired_tokens_are_401_with_a_reason() {
    let users = Users::new();
    let t = users.start(&["--auth-token-ttl", "1"]);
    let (s, v, _) = login(&t, "rita", "rita-pw").await;
    assert_eq!(s, 200, "{v}");
    let token = v["Token"].as_str().unwrap().to_owned();
    let mut forged = token.clone();
    // The signature's last base64 character carries 4 bits and two zero pad bits: change a
    // carried bit ('A' = 0, 'E' = 4), or the forgery is a malformed token, not a wrong one.
    let last = forged.pop().unwrap();
    forged.push(if last == 'A' { 'E' } else { 'A' });
    for (bad, reason) in [
        ("garbage", "malformed token"),
        ("v1.%%%.1.x", "malformed token"),
        (forged.as_str(), "invalid token"),
    ] {
        let (s, v) = t
            .request_with("GET", "/api", None, &[("x-auth-token", bad)])
            .await;
        assert_eq!(s, 401, "{bad}");
        assert!(one_line(&v).contains(reason), "{bad}: {v}");
    }
    let (s, v) = t
        .request_with("GET", "/api", None, &[("authorization", "Basic !!!")])
        .await;
    assert_eq!((s, one_line(&v)), (401, "malformed Basic credentials"));
    let (s, v) = t
        .request_with("GET", "/api", None, &[("authorization", "Digest x=1")])
        .await;
    assert_eq!(s, 401);
    assert!(one_line(&v).starts_with("unsupported Authorization scheme"));
    // Empty and oversized credentials, and the token as a cookie.
    let huge = "a".repeat(60_000);
    for (name, value, reason) in [
        ("authorization", "Bearer", "malformed token"),
        ("authorization", "Bearer ", "malformed token"),
        ("authorization", "Basic", "malformed Basic credentials"),
        ("x-auth-token", huge.as_str(), "malformed token"),
        ("cookie", "authtoken=garbage", "malformed token"),
        ("cookie", "authtoken=", "malformed token"),
    ] {
        let (s, v) = t.request_with("GET", "/api", None, &[(name, value)]).await;
        assert_eq!((s, one_line(&v)), (401, reason), "{name}: {value:.40}");
    }
    // Broken login forms: a one-line reason, never the API's "method not allowed".
    let post_login = |body: Vec<u8>| {
        let url = t.url("/login");
        async move {
            let r = reqwest::Client::new()
                .post(url)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(body)
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    let (s, body) = post_login(format!("username=rita&password={huge}").into_bytes()).await;
    assert_eq!(
        (s, body.trim()),
        (413, "login form larger than 16384 bytes")
    );
    let (s, body) = post_login(b"%ZZ=\xff&&==&username".to_vec()).await;
    assert_eq!(
        (s, body.trim()),
        (401, "username and password form fields are required")
    );

    // The one-second token runs out.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let (s, v) = t
        .request_with("GET", "/api", None, &[("x-auth-token", &token)])
        .await;
    assert_eq!(s, 401);
    assert!(one_line(&v).starts_with("token expired at "), "{v}");
}

#[tokio::test]
async fn captures_and_injections_outside_allow_target_are_refused() {
    let users = Users::new();
    let t = users.start(&["--allow-target", "127.0.0.0/8,::1/128"]);
    let (_, v, _) = login(&t, "ada", "ada-pw").await;
    let token = v["Token"].as_str().unwrap().to_owned();
    let h = &[("x-auth-token", token.as_str())][..];

    // An interface node for the injections' source.
    let iface = json!({"ID": "if1", "Metadata": {"Name": "allow-if1", "Type": "veth",
        "IfIndex": 7, "MAC": "02:00:00:00:00:01", "IPV4": ["127.0.0.2/8"]}})
    .to_string();
    assert_eq!(
        t.request_with("POST", "/api/node", Some(&iface), h).await.0,
        201
    );

    for (kind, target) in [
        ("sflow", "10.20.30.40:6343"),
        ("netflowv5", "10.20.30.40:2055"),
        ("ipfix", "[fd00::1]:4739"),
        ("erspanv1", "10.20.30.40"),
    ] {
        let (s, v) = t
            .request_with("POST", "/api/capture", Some(&capture(kind, target)), h)
            .await;
        assert_eq!(s, 403, "{kind} {target}: {v}");
        let reason = one_line(&v);
        assert!(
            reason.contains("is outside --allow-target 127.0.0.0/8, ::1/128"),
            "{reason}"
        );
    }
    let injection = json!({"Src": "G.V().Has('Name','allow-if1')", "Type": "icmp4",
        "SrcIP": "127.0.0.2", "DstIP": "10.20.30.40", "SrcMAC": "02:00:00:00:00:01",
        "DstMAC": "02:00:00:00:00:02", "Count": 1})
    .to_string();
    let (s, v) = t
        .request_with("POST", "/api/injectpacket", Some(&injection), h)
        .await;
    assert_eq!(s, 403, "{v}");
    assert_eq!(
        one_line(&v),
        "10.20.30.40 is outside --allow-target 127.0.0.0/8, ::1/128"
    );
    // Nothing was created.
    for path in ["/api/capture", "/api/injectpacket"] {
        let (s, v) = t.request_with("GET", path, None, h).await;
        assert_eq!((s, v), (200, json!({})), "{path}");
    }

    // A namespace node made through the API is never entered.
    let ns = json!({"ID": "ns1", "Metadata": {"Name": "evil", "Type": "netns",
        "Path": "/etc/passwd"}})
    .to_string();
    let inside = json!({"ID": "if2", "Metadata": {"Name": "allow-if2", "Type": "veth",
        "IfIndex": 8, "MAC": "02:00:00:00:00:03"}})
    .to_string();
    let own = json!({"ID": "e1", "Parent": "ns1", "Child": "if2",
        "Metadata": {"RelationType": "ownership"}})
    .to_string();
    for (path, body) in [
        ("/api/node", &ns),
        ("/api/node", &inside),
        ("/api/edge", &own),
    ] {
        let (s, v) = t.request_with("POST", path, Some(body), h).await;
        assert_eq!(s, 201, "{path}: {v}");
    }
    let injection = json!({"Src": "G.V().Has('Name','allow-if2')", "Type": "icmp4",
        "SrcIP": "127.0.0.3", "DstIP": "127.0.0.4", "SrcMAC": "02:00:00:00:00:03",
        "DstMAC": "02:00:00:00:00:04", "Count": 1})
    .to_string();
    let (s, v) = t
        .request_with("POST", "/api/injectpacket", Some(&injection), h)
        .await;
    assert_eq!(s, 403, "{v}");
    assert!(one_line(&v).contains("/etc/passwd"), "{v}");
}

/// Runs `topotap allinone` expecting it to stop by itself; its exit and stderr.
fn start_fails(args: &[&str]) -> (Option<i32>, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_topotap"))
        .args(["allinone", "--no-probes"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("topotap {args:?} did not stop");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out: Output = child.wait_with_output().unwrap();
    assert!(
        out.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn start_is_refused_with_a_clear_message() {
    // Every address, no authentication.
    let (code, err) = start_fails(&["--listen", "0.0.0.0:0"]);
    assert_ne!(code, Some(0));
    assert!(
        err.contains("refusing to serve the API on 0.0.0.0:0 without authentication"),
        "{err}"
    );
    assert!(err.contains("--auth-htpasswd"), "{err}");
    assert!(!err.contains("panicked"), "{err}");

    // An htpasswd file that cannot be read: its path and the reason.
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing");
    let (code, err) = start_fails(&["--auth-htpasswd", missing.to_str().unwrap()]);
    assert_ne!(code, Some(0));
    assert!(
        err.contains(&format!(
            "cannot read the htpasswd file {}: No such file or directory",
            missing.display()
        )),
        "{err}"
    );
    let (code, err) = start_fails(&["--auth-htpasswd", dir.path().to_str().unwrap()]);
    assert_ne!(code, Some(0));
    assert!(
        err.contains(&format!(
            "cannot read the htpasswd file {}: Is a directory",
            dir.path().display()
        )),
        "{err}"
    );

    // Broken lines: the line, the user and what is wrong.
    let hash = bcrypt::hash("pw", 4).unwrap();
    for (text, reason) in [
        (
            format!("ann:{hash}\nbob:$apr1$abc$def\n"),
            "line 2 (user \"bob\"): not a bcrypt hash; make the file with `htpasswd -B`",
        ),
        (
            format!("ann:{hash}\njust-a-name\n"),
            "line 2: expected `user:hash`",
        ),
        (
            format!("ann:{hash}\nann:{hash}\n"),
            "line 2: user \"ann\" appears twice",
        ),
        ("# nobody\n\n".to_owned(), "no users in the file"),
    ] {
        let file = dir.path().join("htpasswd");
        std::fs::write(&file, text).unwrap();
        let (code, err) = start_fails(&["--auth-htpasswd", file.to_str().unwrap()]);
        assert_ne!(code, Some(0));
        assert!(
            err.contains(&format!("htpasswd file {}: {reason}", file.display())),
            "{err}"
        );
    }
}

fn client(t: &Topotap, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_topotap"));
    cmd.args(["client", "--analyzer", &t.addr])
        .args(args)
        .env_remove("TOPOTAP_USERNAME")
        .env_remove("TOPOTAP_PASSWORD");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

#[tokio::test]
async fn the_client_logs_in_with_flags_or_the_environment() {
    let users = Users::new();
    let t = users.start(&[]);
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();

    let out = client(&t, &["capture", "list"], &[]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("401") && err.contains("authentication required"),
        "{err}"
    );

    let out = client(
        &t,
        &[
            "--username",
            "otto",
            "--password",
            "otto-pw",
            "capture",
            "create",
            "--gremlin",
            "G.V().Has('Name','nothing-here')",
        ],
        &[],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let created: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(created["UUID"].is_string(), "{created}");

    let env = [
        ("TOPOTAP_USERNAME", "rita"),
        ("TOPOTAP_PASSWORD", "rita-pw"),
    ];
    let out = client(&t, &["capture", "list"], &env);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let list: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        list.get(created["UUID"].as_str().unwrap()).is_some(),
        "{list}"
    );
    // The reader may not create one: the server's 403 reason.
    let out = client(&t, &["capture", "create", "--gremlin", "G.V()"], &env);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("403") && err.contains("needs role operator"),
        "{err}"
    );

    let out = client(
        &t,
        &["--username", "rita", "--password", "wrong", "status"],
        &[],
    );
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("cannot log in as \"rita\"") && err.contains("wrong user name or password"),
        "{err}"
    );
    let out = client(&t, &["--username", "rita", "status"], &[]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("--username needs --password"));
}

fn free_port() -> u16 {
    let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    probe.local_addr().unwrap().port()
}

/// `GET /metrics` on the metrics listener through loopback: status and body.
async fn scrape(port: u16, authorization: Option<&str>) -> (u16, String) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut req = reqwest::Client::new().get(format!("http://127.0.0.1:{port}/metrics"));
        if let Some(a) = authorization {
            req = req.header("authorization", a);
        }
        match req.send().await {
            Ok(r) => {
                let s = r.status().as_u16();
                return (s, r.text().await.unwrap());
            }
            Err(e) if Instant::now() > deadline => panic!("metrics listener: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

#[tokio::test]
async fn metrics_beyond_loopback_need_authentication_like_the_api() {
    // Every address, no authentication: refused at start, as the API would be.
    let (code, err) = start_fails(&["--metrics-listen", "0.0.0.0:0"]);
    assert_ne!(code, Some(0));
    assert!(
        err.contains(
            "refusing to serve /metrics on 0.0.0.0:0 (--metrics-listen) without authentication"
        ),
        "{err}"
    );
    assert!(
        err.contains("--auth-htpasswd") && err.contains("--insecure-no-auth"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");

    // With authentication the metrics listener asks for it, as the API does: the
    // reader role is enough.
    let users = Users::new();
    let port = free_port();
    let metrics = format!("0.0.0.0:{port}");
    let t = users.start(&["--metrics-listen", &metrics]);
    let (s, body) = scrape(port, None).await;
    assert_eq!(s, 401, "{body}");
    assert!(body.starts_with("authentication required"), "{body}");
    let (s, body) = scrape(port, Some(&basic("rita", "wrong"))).await;
    assert_eq!((s, body.trim()), (401, "wrong user name or password"));
    let (s, body) = scrape(port, Some(&basic("nemo", "nemo-pw"))).await;
    assert_eq!(s, 403, "{body}");
    let (s, body) = scrape(port, Some(&basic("rita", "rita-pw"))).await;
    assert_eq!(s, 200, "{body}");
    assert!(body.contains("topotap_graph_nodes"), "{body}");
    // A token from the API's /login works there too.
    let (_, v, _) = login(&t, "rita", "rita-pw").await;
    let bearer = format!("Bearer {}", v["Token"].as_str().unwrap());
    assert_eq!(scrape(port, Some(&bearer)).await.0, 200);
    drop(t);

    // --insecure-no-auth serves it open on purpose.
    let port = free_port();
    let metrics = format!("0.0.0.0:{port}");
    let dir = tempfile::tempdir().unwrap();
    let t = Topotap::start(&[
        "--no-probes",
        "--state-dir",
        dir.path().to_str().unwrap(),
        "--metrics-listen",
        &metrics,
        "--insecure-no-auth",
    ]);
    let (s, body) = scrape(port, None).await;
    assert_eq!(s, 200, "{body}");
    assert!(body.contains("topotap_graph_nodes 0"), "{body}");
    drop(t);
}
