use std::collections::BTreeSet;

use serde_json::Value;
use warp::http::StatusCode;

use super::ApiDoc;
use crate::api::secured;
use crate::api::test_support::state;

const METHODS: &[&str] = &["GET", "POST", "PUT", "PATCH", "DELETE"];

/// Every (method, path template) of the document.
fn documented() -> BTreeSet<(String, String)> {
    let doc: Value = serde_json::from_slice(ApiDoc::json()).unwrap();
    let mut out = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for m in METHODS {
            if item.get(m.to_ascii_lowercase()).is_some() {
                out.insert((m.to_string(), path.clone()));
            }
        }
    }
    out
}

/// The content type a request to this path is sent with, so that it passes the gate.
fn content_type(path: &str) -> &'static str {
    match path {
        "/login" => "application/x-www-form-urlencoded",
        "/api/pcap" => "application/octet-stream",
        _ => "application/json",
    }
}

/// The router's own 404, for a path no route takes.
fn unrouted(status: StatusCode, body: &[u8]) -> bool {
    status == StatusCode::METHOD_NOT_ALLOWED
        || (status == StatusCode::NOT_FOUND && body == b"404 page not found\n")
}

#[tokio::test]
async fn every_method_of_every_documented_path_is_served_exactly_when_documented() {
    let api = secured(state());
    let documented = documented();
    let paths: BTreeSet<&String> = documented.iter().map(|(_, p)| p).collect();
    assert!(paths.len() >= 15, "{paths:?}");
    for path in paths {
        let concrete = path
            .replace("{id}", "no-such-id")
            .replace("{file}", "no-such-file");
        for method in METHODS {
            let resp = warp::test::request()
                .method(method)
                .path(&concrete)
                .header("content-type", content_type(path))
                .body("")
                .reply(&api)
                .await;
            let served = !unrouted(resp.status(), resp.body());
            let listed = documented.contains(&(method.to_string(), path.clone()));
            // The UI's file route answers a missing file with the router's own words.
            if path == "/ui/{file}" && *method == "GET" {
                continue;
            }
            // Served by analyzers only (tests/fleet.rs); documented as 404 elsewhere.
            if path == "/ws/agent/topology" || path == "/ws/replication" {
                assert!(!served, "{method} {concrete} served outside an analyzer");
                continue;
            }
            assert_eq!(
                served,
                listed,
                "{method} {concrete}: answered {} {:?}; documented: {listed}",
                resp.status(),
                String::from_utf8_lossy(resp.body())
            );
        }
    }
}

/// Every literal path segment of the routing code (`warp::path!("a" / "b")`,
/// `warp::path("a")`, resource names) appears in a documented path, so a route added
/// under a new name fails here until it is documented.
#[test]
fn every_path_segment_of_the_routing_code_is_documented() {
    let documented: BTreeSet<String> = documented()
        .into_iter()
        .flat_map(|(_, p)| {
            p.split('/')
                .filter(|s| !s.is_empty() && !s.starts_with('{'))
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .collect();
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = vec![src.join("ui.rs"), src.join("auth/mod.rs")];
    for entry in std::fs::read_dir(src.join("api")).unwrap() {
        let p = entry.unwrap().path();
        if p.extension().is_some_and(|e| e == "rs") {
            files.push(p);
        }
    }
    files.push(src.join("capture/mod.rs"));
    files.push(src.join("injection/mod.rs"));
    let mut found = BTreeSet::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        for (i, _) in text.match_indices("warp::path!(") {
            let rest = &text[i + "warp::path!(".len()..];
            let args = &rest[..rest.find(')').unwrap()];
            for part in args.split('/') {
                if let Some(seg) = part
                    .trim()
                    .strip_prefix('"')
                    .and_then(|s| s.strip_suffix('"'))
                {
                    found.insert((file.clone(), seg.to_owned()));
                }
            }
        }
        for (i, _) in text.match_indices("warp::path(\"") {
            let rest = &text[i + "warp::path(\"".len()..];
            found.insert((file.clone(), rest[..rest.find('"').unwrap()].to_owned()));
        }
        for (i, _) in text.match_indices("const NAME: &'static str = \"") {
            let rest = &text[i + "const NAME: &'static str = \"".len()..];
            found.insert((file.clone(), rest[..rest.find('"').unwrap()].to_owned()));
        }
    }
    assert!(found.len() > 10, "{found:?}");
    for (file, seg) in found {
        assert!(
            documented.contains(&seg),
            "{}: route segment {seg:?} is not in any documented path",
            file.display()
        );
    }
}

#[tokio::test]
async fn the_document_is_served_as_json() {
    let api = secured(state());
    let resp = warp::test::request()
        .method("GET")
        .path("/api/openapi.json")
        .reply(&api)
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        resp.headers()["content-type"],
        "application/json; charset=UTF-8"
    );
    let doc: Value = serde_json::from_slice(resp.body()).unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."), "{doc}");
    // Derived from the handlers' types.
    let node = &doc["components"]["schemas"]["Node"];
    assert_eq!(node["required"], serde_json::json!(["ID", "Metadata"]));
    assert_eq!(
        doc["components"]["schemas"]["Capture"]["properties"]["SamplingRate"]["format"],
        "int32"
    );
    // Every error has the plain-text body; every route answers 403 from the gate.
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let responses = op["responses"].as_object().unwrap();
            assert!(responses.contains_key("403"), "{method} {path}");
            for (code, r) in responses {
                if code.starts_with('4') || code.starts_with('5') {
                    assert!(
                        r["content"]["text/plain"]["schema"]["$ref"]
                            .as_str()
                            .is_some_and(|s| s.ends_with("/ErrorReason")),
                        "{method} {path} {code}: {r}"
                    );
                }
            }
        }
    }
    for scheme in ["basic", "bearer", "token", "cookie"] {
        assert!(
            doc["components"]["securitySchemes"][scheme].is_object(),
            "{scheme}"
        );
    }
}
