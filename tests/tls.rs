//! The API over TLS (`--tls-cert`/`--tls-key`, `--tls-client-ca`), with a CA the test
//! makes: curl, the topotap client and a WebSocket client as peers.

mod common;

use std::process::{Command, Output};
use std::sync::Arc;

use common::certs::TestCa;
use common::Topotap;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

fn curl(args: &[&str]) -> Output {
    Command::new("curl")
        .args(["-sS", "--max-time", "10"])
        .args(args)
        .output()
        .expect("run curl")
}

fn client(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_topotap"))
        .arg("client")
        .args(args)
        .env_remove("TOPOTAP_USERNAME")
        .env_remove("TOPOTAP_PASSWORD")
        .output()
        .expect("run topotap client")
}

fn text(out: &[u8]) -> String {
    String::from_utf8_lossy(out).into_owned()
}

fn start_tls(ca: &TestCa, extra: &[&str]) -> Topotap {
    let (cert, key) = (ca.server_cert(), ca.server_key());
    let mut args = vec!["--no-probes", "--tls-cert", &cert, "--tls-key", &key];
    args.extend_from_slice(extra);
    let t = Topotap::start(&args);
    assert_eq!(t.scheme, "https");
    t
}

#[tokio::test]
async fn curl_and_the_client_over_tls_with_the_test_ca() {
    let ca = TestCa::new("topotap test CA");
    let t = start_tls(&ca, &[]);
    let url = t.url("/api");
    assert!(url.starts_with("https://127.0.0.1:"), "{url}");

    // curl trusting the test's CA.
    let out = curl(&["--cacert", &ca.ca(), "-w", "\n%{http_code}", &url]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let body = text(&out.stdout);
    let (json_text, code) = body.rsplit_once('\n').unwrap();
    assert_eq!(code, "200", "{body}");
    let v: Value = serde_json::from_str(json_text).unwrap();
    assert_eq!(v["Service"], "analyzer");
    // Not trusting it: the handshake fails (curl exit 60, certificate problem).
    let out = curl(&[&url]);
    assert_eq!(out.status.code(), Some(60), "{}", text(&out.stderr));
    // Plain HTTP on the TLS port gets no API answer.
    let plain = format!("http://{}/api", t.addr);
    let out = curl(&["-w", "%{http_code}", &plain]);
    assert!(
        !text(&out.stdout).contains("analyzer"),
        "{}",
        text(&out.stdout)
    );

    // A JSON write over TLS, as any client sends it.
    let out = curl(&[
        "--cacert",
        &ca.ca(),
        "-X",
        "POST",
        "-H",
        "Content-Type: application/json",
        "-d",
        r#"{"ID":"tls-n1","Metadata":{"Name":"tls-n1","Type":"device"}}"#,
        "-w",
        "\n%{http_code}",
        &t.url("/api/node"),
    ]);
    assert!(
        text(&out.stdout).ends_with("\n201"),
        "{}",
        text(&out.stdout)
    );
    // The harness's own client with the CA sees it.
    let t = t.trust_ca(&ca.ca());
    let (s, v) = t.request("GET", "/api/node/tls-n1", None).await;
    assert_eq!((s, v["ID"].as_str()), (200, Some("tls-n1")), "{v}");

    // topotap client: --cacert, --insecure, and neither.
    let analyzer = format!("https://{}", t.addr);
    let out = client(&["--analyzer", &analyzer, "--cacert", &ca.ca(), "status"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).starts_with("Version:"),
        "{}",
        text(&out.stdout)
    );
    // A bare address with --cacert means https.
    let out = client(&["--analyzer", &t.addr, "--cacert", &ca.ca(), "status"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = client(&["--analyzer", &analyzer, "--insecure", "status"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = client(&["--analyzer", &analyzer, "status"]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("cannot reach topotap at https://"), "{err}");
    assert!(err.to_lowercase().contains("certificate"), "{err}");
    // A --cacert that is not a certificate is a clear error.
    let out = client(&[
        "--analyzer",
        &analyzer,
        "--cacert",
        &ca.server_key(),
        "status",
    ]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("no PEM certificate"), "{err}");
}

/// A WebSocket client over TLS with a rustls config trusting only the test's CA.
#[allow(deprecated)] // the ring provider, as the server's
async fn ws_over_tls(
    ca: &TestCa,
    addr: &str,
) -> tokio_tungstenite::WebSocketStream<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    let mut roots = rustls::RootCertStore::empty();
    let pem = std::fs::read(ca.ca()).unwrap();
    use rustls::pki_types::pem::PemObject;
    for c in rustls::pki_types::CertificateDer::pem_slice_iter(&pem) {
        roots.add(c.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .expect("TLS handshake");
    let port = addr.rsplit_once(':').unwrap().1;
    let url = format!("wss://localhost:{port}/ws/subscriber?x-client-type=test");
    let (ws, resp) = tokio_tungstenite::client_async(url, tls)
        .await
        .expect("WebSocket upgrade over TLS");
    assert_eq!(resp.status().as_u16(), 101);
    ws
}

#[tokio::test]
async fn websocket_over_tls() {
    let ca = TestCa::new("topotap ws CA");
    let t = start_tls(&ca, &[]).trust_ca(&ca.ca());
    let body = json!({"ID": "wss-a", "Metadata": {"Name": "wss-a", "Type": "veth"}}).to_string();
    assert_eq!(t.request("POST", "/api/node", Some(&body)).await.0, 201);
    let mut ws = ws_over_tls(&ca, &t.addr).await;
    let req = json!({"Namespace": "Graph", "Type": "SyncRequest", "UUID": "r1",
        "Obj": {"GremlinFilter": "G.V().Has('Name','wss-a').SubGraph()"}});
    ws.send(Message::Text(req.to_string().into()))
        .await
        .unwrap();
    let reply = loop {
        let msg = tokio::time::timeout(std::time::Duration::from_secs(5), ws.next())
            .await
            .expect("a reply within 5 s")
            .expect("open")
            .expect("no error");
        if let Message::Text(t) = msg {
            break serde_json::from_str::<Value>(&t).unwrap();
        }
    };
    assert_eq!(reply["Type"], "SyncReply", "{reply}");
    assert_eq!(reply["Obj"]["Nodes"][0]["ID"], "wss-a", "{reply}");
}

#[tokio::test]
async fn client_certificates_authenticate_machines() {
    let ca = TestCa::new("topotap machines CA");
    let (cert, key) = ca.client("agent-1");
    // A certificate from another CA is not accepted.
    let other = TestCa::new("another CA");
    let (other_cert, other_key) = other.client("agent-1");

    // Certificates only (no passwords): every client must present one.
    let client_ca = ca.ca();
    let t = start_tls(&ca, &["--tls-client-ca", &client_ca]);
    let url = t.url("/api");
    let out = curl(&["--cacert", &ca.ca(), "-w", "%{http_code}", &url]);
    assert!(!text(&out.stdout).ends_with("200"), "{}", text(&out.stdout));
    assert!(!out.status.success());
    let out = curl(&[
        "--cacert",
        &ca.ca(),
        "--cert",
        &other_cert,
        "--key",
        &other_key,
        &url,
    ]);
    assert!(!out.status.success(), "{}", text(&out.stdout));
    let out = curl(&[
        "--cacert",
        &ca.ca(),
        "--cert",
        &cert,
        "--key",
        &key,
        "-w",
        "\n%{http_code}",
        &url,
    ]);
    assert!(
        text(&out.stdout).ends_with("\n200"),
        "{}",
        text(&out.stderr)
    );
    drop(t);

    // With passwords too: a certificate is optional; without one a login is needed,
    // and the certificate's name gets its role from --auth-roles.
    let hash = bcrypt::hash("pw", 4).unwrap();
    std::fs::write(ca.file("htpasswd"), format!("ann:{hash}\n")).unwrap();
    std::fs::write(
        ca.file("roles.toml"),
        "[users]\nann = \"admin\"\n\"agent-1\" = \"reader\"\n",
    )
    .unwrap();
    let (htpasswd, roles) = (ca.path("htpasswd"), ca.path("roles.toml"));
    let t = start_tls(
        &ca,
        &[
            "--tls-client-ca",
            &client_ca,
            "--auth-htpasswd",
            &htpasswd,
            "--auth-roles",
            &roles,
        ],
    );
    let url = t.url("/api");
    let out = curl(&["--cacert", &ca.ca(), "-w", "\n%{http_code}", &url]);
    assert!(
        text(&out.stdout).ends_with("\n401"),
        "{}",
        text(&out.stdout)
    );
    let with_cert = |extra: &[&str]| {
        let mut args = vec!["--cacert", &client_ca, "--cert", &cert, "--key", &key];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["-w", "\n%{http_code}"]);
        let out = curl(&args);
        assert!(out.stderr.is_empty(), "curl: {}", text(&out.stderr));
        text(&out.stdout)
    };
    assert!(with_cert(&[&url]).ends_with("\n200"));
    let node_url = t.url("/api/node");
    let answer = with_cert(&[
        "-X",
        "POST",
        "-H",
        "Content-Type: application/json",
        "-d",
        r#"{"ID":"m1","Metadata":{"Name":"m1","Type":"device"}}"#,
        &node_url,
    ]);
    assert!(answer.ends_with("\n403"), "{answer}");
    assert!(
        answer.contains("user \"agent-1\" has role reader") && answer.contains("needs role admin"),
        "{answer}"
    );
    let out = curl(&[
        "--cacert",
        &client_ca,
        "-u",
        "ann:pw",
        "-w",
        "\n%{http_code}",
        &url,
    ]);
    assert!(
        text(&out.stdout).ends_with("\n200"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn tls_flags_are_checked_at_start() {
    let ca = TestCa::new("topotap flags CA");
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_topotap"))
            .args(["allinone", "--no-probes", "--listen", "127.0.0.1:0"])
            .args(args)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?} started");
        text(&out.stderr)
    };
    let cert = ca.server_cert();
    let key = ca.server_key();
    assert!(run(&["--tls-cert", &cert]).contains("--tls-cert needs --tls-key"));
    let err = run(&["--tls-cert", &cert, "--tls-key", "/nonexistent/k.pem"]);
    assert!(
        err.contains("cannot read the private key (--tls-key) /nonexistent/k.pem"),
        "{err}"
    );
    let err = run(&["--tls-cert", &key, "--tls-key", &key]);
    assert!(err.contains("no PEM certificate"), "{err}");
    let err = run(&["--tls-cert", &cert, "--tls-key", &cert]);
    assert!(err.contains("--tls-key"), "{err}");
    // A key that does not belong to the certificate.
    let (_, other_key) = ca.client("x");
    let err = run(&["--tls-cert", &cert, "--tls-key", &other_key]);
    assert!(err.contains("do not make a TLS identity"), "{err}");
}

/// HTTP/2 over TLS (ALPN `h2`), with curl: answers that come before the request body
/// was read (401, 415) close their stream cleanly, so curl, which stops uploading when
/// an error answer arrives early, gets them every time and not a stream error.
#[tokio::test]
async fn http2_over_tls_answers_refusals_cleanly() {
    let ca = TestCa::new("topotap h2 CA");
    let dir = tempfile::tempdir().unwrap();
    let htpasswd = dir.path().join("htpasswd");
    std::fs::write(
        &htpasswd,
        format!("h2user:{}\n", bcrypt::hash("h2-pw", 4).unwrap()),
    )
    .unwrap();
    let t = start_tls(&ca, &["--auth-htpasswd", htpasswd.to_str().unwrap()]);
    let cacert = ca.ca();
    let h2 = |extra: &[&str], path: &str| {
        let mut args = vec!["--http2", "--cacert", &cacert, "-o", "/dev/null"];
        args.extend_from_slice(&["-w", "%{http_version} %{http_code}"]);
        args.extend_from_slice(extra);
        let url = t.url(path);
        args.push(&url);
        let out = curl(&args);
        assert!(
            out.status.success(),
            "curl {args:?}: exit {:?}: {}",
            out.status.code(),
            text(&out.stderr)
        );
        text(&out.stdout)
    };
    assert_eq!(h2(&["-u", "h2user:h2-pw"], "/api"), "2 200");

    let body = dir.path().join("body.txt");
    std::fs::write(&body, "x".repeat(256 * 1024)).unwrap();
    let body_arg = format!("@{}", body.display());
    // A slow upload: the refusal is decided long before the body is in, every time.
    for (auth, content_type, path, want) in [
        ("", "application/json", "/api/topology", "2 401"),
        ("h2user:h2-pw", "text/plain", "/api/node", "2 415"),
    ] {
        let header = format!("Content-Type: {content_type}");
        let mut args = vec!["--limit-rate", "400K", "-X", "POST", "-H", &header];
        args.extend_from_slice(&["--data-binary", &body_arg]);
        if !auth.is_empty() {
            args.extend_from_slice(&["-u", auth]);
        }
        assert_eq!(h2(&args, path), want);
    }
    for i in 0..20 {
        // No credentials: 401 before the body is read.
        let json = r#"{"GremlinQuery":"G.V()"}"#;
        let no_auth = [
            "-X",
            "POST",
            "-H",
            "Content-Type: application/json",
            "--data",
            json,
        ];
        assert_eq!(h2(&no_auth, "/api/topology"), "2 401", "round {i}");
        // Not JSON: 415 before the (larger) body is read.
        let text_plain = [
            "-u",
            "h2user:h2-pw",
            "-X",
            "POST",
            "-H",
            "Content-Type: text/plain",
            "--data-binary",
            &body_arg,
        ];
        assert_eq!(h2(&text_plain, "/api/node"), "2 415", "round {i}");
    }
    let node = r#"{"ID":"h2-n1","Metadata":{"Name":"h2-n1","Type":"device"}}"#;
    let create = [
        "-u",
        "h2user:h2-pw",
        "-X",
        "POST",
        "-H",
        "Content-Type: application/json",
        "--data",
        node,
    ];
    assert_eq!(h2(&create, "/api/node"), "2 201");
}
