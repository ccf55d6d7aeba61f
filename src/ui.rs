//! The bundled web UI: the files under `web/`, compiled into the binary.
//!
//! `GET /` (and Skydive's `/topology`) answer `web/index.html`; `GET /ui/<path>` answers
//! `web/ui/<path>`. Every asset is an `include_bytes!` in [`ASSETS`], so the binary serves
//! the UI with nothing read from disk or the network at run time, and cargo rebuilds when
//! an asset changes. A unit test checks that every file under `web/` is listed.

use warp::http::{header, HeaderValue, StatusCode};
use warp::reply::Response;
use warp::{Filter, Rejection};

/// One embedded file: its path relative to `web/` and its bytes.
struct Asset {
    path: &'static str,
    body: &'static [u8],
}

macro_rules! assets {
    ($($path:literal),* $(,)?) => {
        &[$(Asset { path: $path, body: include_bytes!(concat!("../web/", $path)) }),*]
    };
}

/// Every file of the UI. Third-party code lives in `web/ui/vendor/` with its license.
const ASSETS: &[Asset] = assets![
    "index.html",
    "ui/favicon.svg",
    "ui/app.css",
    "ui/js/main.js",
    "ui/js/api.js",
    "ui/js/dom.js",
    "ui/js/login.js",
    "ui/js/graph.js",
    "ui/js/layout.js",
    "ui/js/render.js",
    "ui/js/styles.js",
    "ui/js/subscriber.js",
    "ui/js/topology.js",
    "ui/js/panels/node.js",
    "ui/js/panels/console.js",
    "ui/js/panels/captures.js",
    "ui/js/panels/injections.js",
    "ui/js/panels/alerts.js",
    "ui/js/panels/flows.js",
    "ui/js/panels/chart.js",
    "ui/js/timetravel.js",
    "ui/vendor/uplot/uPlot.esm.js",
    "ui/vendor/uplot/uPlot.min.css",
    "ui/vendor/uplot/LICENSE",
    "ui/vendor/uplot/README.md",
];

fn find(path: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|a| a.path == path)
}

/// `Content-Type` by file extension.
fn content_type(path: &str) -> &'static str {
    if path.ends_with("/LICENSE") {
        return "text/plain; charset=utf-8";
    }
    match path.rsplit_once('.').map(|(_, ext)| ext) {
        Some("html") => "text/html; charset=utf-8",
        Some("js") | Some("mjs") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("json") => "application/json",
        Some("png") => "image/png",
        Some("ico") => "image/x-icon",
        Some("txt") | Some("md") => "text/plain; charset=utf-8",
        Some("woff2") => "font/woff2",
        _ => "application/octet-stream",
    }
}

fn serve(asset: &'static Asset) -> Response {
    let mut resp = Response::new(asset.body.into());
    let headers = resp.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(content_type(asset.path)),
    );
    // Assets change with the binary; revalidate rather than serve a stale UI after an upgrade.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        "X-Content-Type-Options",
        HeaderValue::from_static("nosniff"),
    );
    resp
}

fn not_found() -> Response {
    let mut resp = Response::new("404 page not found\n".into());
    *resp.status_mut() = StatusCode::NOT_FOUND;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

fn index() -> Response {
    find("index.html").map_or_else(not_found, serve)
}

/// `GET /`, `GET /topology` and `GET /ui/<path>`.
pub fn routes() -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    // The path first, then the method: a POST to a path no route has is a 404.
    let root = warp::path::end().and(warp::get()).map(index);
    let topology = warp::path!("topology").and(warp::get()).map(index);
    let files = warp::path("ui")
        .and(warp::get())
        .and(warp::path::tail())
        .map(|tail: warp::path::Tail| match tail.as_str() {
            "" => index(),
            rest => find(&format!("ui/{rest}")).map_or_else(not_found, serve),
        });
    root.or(topology).unify().or(files).unify()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn walk(dir: &Path, base: &Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).expect("read web/") {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                walk(&path, base, out);
            } else {
                let rel = path.strip_prefix(base).expect("under web/");
                out.push(rel.to_string_lossy().replace('\\', "/"));
            }
        }
    }

    #[test]
    fn every_file_under_web_is_embedded() {
        let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("web");
        let mut files = Vec::new();
        walk(&base, &base, &mut files);
        let missing: Vec<_> = files.iter().filter(|f| find(f).is_none()).collect();
        assert!(missing.is_empty(), "not listed in ui::ASSETS: {missing:?}");
    }

    /// Quoted words in `js` that follow `marker` on the same line.
    fn quoted_after<'a>(js: &'a str, marker: &str) -> Vec<&'a str> {
        js.lines()
            .filter_map(|l| l.split_once(marker).map(|(_, rest)| rest))
            .filter_map(|rest| rest.split('\'').nth(1))
            .collect()
    }

    #[test]
    fn the_ui_knows_the_graph_schema() {
        use topotap_topology::schema::{relation, NOT_INTERFACES};
        let styles = include_str!("../web/ui/js/styles.js");
        let graph = include_str!("../web/ui/js/graph.js");
        // Relation types the UI tells apart are the ones the probes write.
        let mut ui = quoted_after(styles, "relationType === ");
        ui.extend(quoted_after(graph, "rel === "));
        ui.sort_unstable();
        ui.dedup();
        let mut ours = relation::ALL.to_vec();
        ours.sort_unstable();
        assert_eq!(ui, ours, "relation types in web/ui/js/{{styles,graph}}.js");
        // Every structural node type has its own style (they are drawn as groups).
        for t in NOT_INTERFACES {
            assert!(
                styles.contains(&format!("\n  {t}: {{")),
                "web/ui/js/styles.js has no style for node type {t}"
            );
        }
    }

    #[tokio::test]
    async fn serves_index_and_assets_with_their_types() {
        let r = routes();
        let resp = warp::test::request().path("/").reply(&r).await;
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["content-type"], "text/html; charset=utf-8");
        assert!(std::str::from_utf8(resp.body())
            .unwrap()
            .contains("<title>topotap</title>"));

        let resp = warp::test::request().path("/ui/js/main.js").reply(&r).await;
        assert_eq!(resp.status(), 200);
        assert_eq!(
            resp.headers()["content-type"],
            "text/javascript; charset=utf-8"
        );

        let resp = warp::test::request().path("/ui/app.css").reply(&r).await;
        assert_eq!(resp.headers()["content-type"], "text/css; charset=utf-8");

        let resp = warp::test::request().path("/ui/nope.js").reply(&r).await;
        assert_eq!(resp.status(), 404);

        let resp = warp::test::request()
            .method("POST")
            .path("/")
            .reply(&r)
            .await;
        assert_ne!(resp.status(), 200);
    }

    /// Whether the line holding byte `i` of `text` is a comment line (`//`, `/*`, `*`),
    /// as the vendored code's references to where its algorithms come from are.
    fn in_comment_line(text: &str, i: usize) -> bool {
        let start = text[..i].rfind('\n').map_or(0, |n| n + 1);
        let line = text[start..i].trim_start();
        line.starts_with("//") || line.starts_with("/*") || line.starts_with('*')
    }

    #[test]
    fn index_loads_nothing_from_the_network() {
        for a in ASSETS {
            if let Ok(text) = std::str::from_utf8(a.body) {
                for scheme in ["http://", "https://", "//cdn", "//fonts."] {
                    let hit = text.match_indices(scheme).any(|(i, _)| {
                        !text[..i].ends_with("xmlns=\"")
                            && !text[..i].ends_with("xmlns='")
                            && !in_comment_line(text, i)
                    });
                    assert!(!hit, "{} references {scheme}", a.path);
                }
            }
        }
    }
}
