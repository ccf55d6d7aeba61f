//! The HTTP API over a real socket, against a real topotap process.

mod common;

use common::Topotap;
use serde_json::{json, Value};

fn node(id: &str, name: &str, kind: &str) -> String {
    json!({"ID": id, "Metadata": {"Name": name, "Type": kind}}).to_string()
}

fn edge(id: &str, parent: &str, child: &str, rel: &str) -> String {
    json!({"ID": id, "Parent": parent, "Child": child, "Metadata": {"RelationType": rel}})
        .to_string()
}

#[tokio::test]
async fn root_status_and_empty_topology() {
    let t = Topotap::start_api_only();
    let (s, v) = t.request("GET", "/api", None).await;
    assert_eq!(s, 200);
    assert_eq!(v["Service"], "analyzer");
    assert_eq!(v["Host"], t.host_id.as_str());
    let (s, v) = t.request("GET", "/api/status", None).await;
    assert_eq!(s, 200);
    assert!(v["Subscribers"].is_object(), "{v}");
    let (s, v) = t.request("GET", "/api/topology", None).await;
    assert_eq!(s, 200);
    assert_eq!(v, json!({"Nodes": [], "Edges": []}));
}

#[tokio::test]
async fn node_and_edge_crud_then_query() {
    let t = Topotap::start_api_only();
    let (s, created) = t
        .request("POST", "/api/node", Some(&node("n1", "br0", "bridge")))
        .await;
    assert_eq!(s, 201, "{created}");
    assert_eq!(created["Origin"], format!("api.{}", t.host_id));
    assert!(created["CreatedAt"].as_i64().unwrap() > 0);
    let (s, _) = t
        .request("POST", "/api/node", Some(&node("n2", "eth0", "veth")))
        .await;
    assert_eq!(s, 201);
    let (s, v) = t
        .request("POST", "/api/node", Some(&node("n2", "eth0", "veth")))
        .await;
    assert_eq!(s, 400, "duplicate ID: {v}");
    let (s, v) = t
        .request("POST", "/api/edge", Some(&edge("e1", "n1", "n2", "layer2")))
        .await;
    assert_eq!(s, 201, "{v}");
    let (s, v) = t
        .request(
            "POST",
            "/api/edge",
            Some(&edge("e2", "n1", "nope", "layer2")),
        )
        .await;
    assert_eq!(
        (s, v),
        (400, Value::String("Child node not found\n".into()))
    );

    let (s, v) = t.request("GET", "/api/node", None).await;
    assert_eq!(s, 200);
    assert_eq!(
        v.as_object().unwrap().keys().collect::<Vec<_>>(),
        ["n1", "n2"]
    );
    let (s, v) = t.request("GET", "/api/edge/e1", None).await;
    assert_eq!(s, 200);
    assert_eq!(
        (v["Parent"].as_str(), v["Child"].as_str()),
        (Some("n1"), Some("n2"))
    );

    let out = t.query("G.V().Has('Name','br0').Out()").await;
    assert_eq!(out[0]["ID"], "n2");
    assert_eq!(t.query("G.V().Count()").await, json!(2));

    // PATCH: metadata changes apply, identity keys stay.
    let patch = json!([
        {"op": "add", "path": "/Metadata/MTU", "value": 9000},
        {"op": "replace", "path": "/Metadata/Name", "value": "renamed"}
    ])
    .to_string();
    let (s, v) = t.request("PATCH", "/api/node/n2", Some(&patch)).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["Metadata"]["MTU"], 9000);
    assert_eq!(v["Metadata"]["Name"], "eth0");
    assert_eq!(v["Revision"], 1);
    let (s, _) = t.request("PATCH", "/api/node/n2", Some(&patch)).await;
    assert_eq!(s, 304);
    let (s, _) = t.request("PATCH", "/api/node/zz", Some(&patch)).await;
    assert_eq!(s, 404);
    let (s, v) = t.request("PATCH", "/api/node/n2", Some("{\"op\":1}")).await;
    assert_eq!(s, 400);
    assert!(
        v.as_str().unwrap().starts_with("incorrect JSON patch"),
        "{v}"
    );

    let (s, v) = t.request("DELETE", "/api/node/n1", None).await;
    assert_eq!((s, v), (200, Value::Null));
    let (s, v) = t.request("GET", "/api/edge/e1", None).await;
    assert_eq!((s, v), (404, Value::String("Edge 'e1' not found\n".into())));
    let (s, _) = t.request("DELETE", "/api/node/n1", None).await;
    assert_eq!(s, 404);
}

#[tokio::test]
async fn bad_input_gets_one_line_4xx() {
    let t = Topotap::start_api_only();
    let cases: Vec<(&str, &str, Option<String>, u16, &str)> = vec![
        ("POST", "/api/topology", Some("{".into()), 400, "EOF"),
        (
            "POST",
            "/api/topology",
            Some(json!({"GremlinQuery": "G.V().Foo()"}).to_string()),
            400,
            "Foo",
        ),
        (
            "POST",
            "/api/topology",
            Some(json!({"GremlinQuery": "G.V().Has('a'"}).to_string()),
            400,
            "column",
        ),
        (
            "POST",
            "/api/topology",
            Some(json!({"GremlinQuery": "x"}).to_string()),
            400,
            "column 1",
        ),
        (
            "POST",
            "/api/topology",
            Some(json!({"GremlinQuery": "G.V('nope')"}).to_string()),
            400,
            "Node 'nope' does not exist",
        ),
        (
            "POST",
            "/api/topology",
            Some(json!({"GremlinQuery": "G.V().Has(".repeat(5000)}).to_string()),
            400,
            "",
        ),
        (
            "POST",
            "/api/node",
            Some(json!({"ID": "x", "Metadata": {"Name": "a"}}).to_string()),
            400,
            "Type is required",
        ),
        (
            "POST",
            "/api/node",
            Some(json!({"Metadata": {"Name": "a", "Type": "b"}}).to_string()),
            400,
            "ID is required",
        ),
        ("POST", "/api/node", Some("[1,2".into()), 400, ""),
        (
            "POST",
            "/api/edge",
            Some(json!({"ID": "e", "Parent": "a", "Child": "b", "Metadata": {}}).to_string()),
            400,
            "RelationType",
        ),
        (
            "GET",
            "/api/node/unknown",
            None,
            404,
            "Node 'unknown' not found",
        ),
        ("GET", "/api/nothing", None, 404, "not found"),
        ("PUT", "/api/topology", Some("{}".into()), 405, "method"),
    ];
    for (method, path, body, status, needle) in cases {
        let (s, v) = t.request(method, path, body.as_deref()).await;
        let text = v.as_str().unwrap_or_default();
        assert_eq!(s, status, "{method} {path} {body:?} -> {v}");
        assert!(
            text.contains(needle),
            "{method} {path}: {text:?} lacks {needle:?}"
        );
        assert_eq!(text.trim_end().lines().count(), 1, "one line: {text:?}");
    }
    // Empty query: 204, no body.
    let (s, v) = t
        .request("POST", "/api/topology", Some(r#"{"GremlinQuery":""}"#))
        .await;
    assert_eq!((s, v), (204, Value::Null));
    // No body at all is the client's mistake: a 400 naming what is missing.
    let (s, v) = t.request("POST", "/api/topology", Some("")).await;
    assert_eq!(s, 400);
    assert!(
        v.as_str().unwrap_or_default().contains("GremlinQuery"),
        "{v}"
    );
    // A body over the limit is refused without reading it all.
    // (The server answers 413 without reading the body and closes the connection, so
    // the client may instead see its write fail.)
    let huge = format!("{{\"GremlinQuery\":\"{}\"}}", "a".repeat(5 * 1024 * 1024));
    let sent = reqwest::Client::new()
        .post(t.url("/api/topology"))
        .header("Content-Type", "application/json")
        .body(huge)
        .send()
        .await;
    match sent {
        Ok(resp) => assert_eq!(resp.status(), 413),
        Err(e) => assert!(e.is_request(), "{e:?}"),
    }
    // The server still answers afterwards.
    let (s, _) = t.request("GET", "/api", None).await;
    assert_eq!(s, 200);
}

#[tokio::test]
async fn cors_only_for_listed_origins() {
    let t = Topotap::start(&["--no-probes", "--cors-origin", "http://ui.example.com"]);
    let preflight = |origin: &'static str| {
        reqwest::Client::new()
            .request(reqwest::Method::OPTIONS, t.url("/api/topology"))
            .header("Origin", origin)
            .header("Access-Control-Request-Method", "POST")
            .header("Access-Control-Request-Headers", "content-type")
            .send()
    };
    let resp = preflight("http://example.com").await.unwrap();
    assert_eq!(resp.status(), 403);
    assert!(!resp.headers().contains_key("access-control-allow-origin"));
    let resp = preflight("http://ui.example.com").await.unwrap();
    assert_eq!(resp.status(), 204);
    assert_eq!(
        resp.headers()["access-control-allow-origin"],
        "http://ui.example.com"
    );
}

#[tokio::test]
async fn cli_queries_and_reports_errors() {
    let t = Topotap::start_api_only();
    t.request("POST", "/api/node", Some(&node("n1", "eth0", "veth")))
        .await;
    let bin = env!("CARGO_BIN_EXE_topotap");
    let out = std::process::Command::new(bin)
        .args([
            "client",
            "--analyzer",
            &t.addr,
            "topology",
            "query",
            "--gremlin",
            "G.V().Values('Name')",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v, json!(["eth0"]));

    let out = std::process::Command::new(bin)
        .args([
            "client",
            "--analyzer",
            &t.addr,
            "--format",
            "table",
            "topology",
            "query",
            "--gremlin",
            "G.V()",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.starts_with("NAME") && text.contains("eth0  veth"),
        "{text}"
    );

    let out = std::process::Command::new(bin)
        .args([
            "client",
            "--analyzer",
            &t.addr,
            "topology",
            "query",
            "--gremlin",
            "G.V().Nope()",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.starts_with("error: 400 Bad Request: "), "{err}");

    let out = std::process::Command::new(bin)
        .args([
            "client",
            "--analyzer",
            "127.0.0.1:1",
            "topology",
            "query",
            "--gremlin",
            "G.V()",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("cannot reach topotap at http://127.0.0.1:1"),
        "{err}"
    );
}

#[tokio::test]
async fn busy_port_is_an_error_not_a_panic() {
    let t = Topotap::start_api_only();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_topotap"))
        .args(["allinone", "--no-probes", "--listen", &t.addr])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains(&format!("cannot listen on {}", t.addr)),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}
