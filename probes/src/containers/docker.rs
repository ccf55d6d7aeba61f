//! The Docker Engine API over its unix socket: `GET /containers/json` lists the
//! running containers, `GET /containers/<id>/json` gives each one's name, image,
//! labels and process. HTTP/1.1 with hyper on a `UnixStream`, one connection a
//! request, each within a deadline and a size limit.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::rt::TokioIo;
use serde::Deserialize;

/// Deadline of one request, connection included.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(3);
/// Largest answer read.
const MAX_BODY_BYTES: usize = 16 << 20;
/// Most containers inspected in one pass (the others wait for the next).
const MAX_INSPECTS: usize = 256;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Listed {
    id: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Inspected {
    id: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    config: InspectedConfig,
    #[serde(default)]
    state: InspectedState,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct InspectedConfig {
    #[serde(default)]
    image: String,
    #[serde(default)]
    labels: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct InspectedState {
    #[serde(default)]
    pid: u32,
    #[serde(default)]
    status: String,
}

/// What Docker says about one container.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct DockerContainer {
    pub id: String,
    /// Without Docker's leading `/`.
    pub name: String,
    pub image: String,
    pub labels: BTreeMap<String, String>,
    pub pid: u32,
    pub status: String,
}

/// `GET path` on the socket, its JSON answer decoded.
async fn get<T: serde::de::DeserializeOwned>(socket: &Path, path: &str) -> anyhow::Result<T> {
    let request = async {
        let stream = tokio::net::UnixStream::connect(socket)
            .await
            .with_context(|| format!("connecting to {}", socket.display()))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .context("HTTP handshake")?;
        let conn = tokio::spawn(conn);
        let req = hyper::Request::get(path)
            .header(hyper::header::HOST, "docker")
            .body(Empty::<Bytes>::new())?;
        let result = async {
            let resp = sender.send_request(req).await?;
            let status = resp.status();
            let body = Limited::new(resp.into_body(), MAX_BODY_BYTES)
                .collect()
                .await
                .map_err(|e| anyhow::anyhow!("reading the answer: {e}"))?
                .to_bytes();
            anyhow::ensure!(
                status.is_success(),
                "{status}: {}",
                String::from_utf8_lossy(&body[..body.len().min(200)]).trim()
            );
            serde_json::from_slice::<T>(&body).context("decoding the answer")
        }
        .await;
        conn.abort();
        result
    };
    tokio::time::timeout(REQUEST_TIMEOUT, request)
        .await
        .map_err(|_| anyhow::anyhow!("no answer within {REQUEST_TIMEOUT:?}"))?
        .with_context(|| format!("GET {path}"))
}

/// Running containers, inspected. `cache` keeps what was inspected by ID: a container
/// is inspected again only when new, or when the caller removed it (its process was
/// gone: restarted).
pub(crate) async fn containers(
    socket: &Path,
    cache: &mut HashMap<String, DockerContainer>,
) -> anyhow::Result<Vec<DockerContainer>> {
    let listed: Vec<Listed> = get(socket, "/containers/json").await?;
    cache.retain(|id, _| listed.iter().any(|l| &l.id == id));
    let mut inspected = 0;
    for l in &listed {
        if cache.contains_key(&l.id) || inspected >= MAX_INSPECTS {
            continue;
        }
        inspected += 1;
        // A container may stop between the two requests.
        let i: Inspected = match get(socket, &format!("/containers/{}/json", l.id)).await {
            Ok(i) => i,
            Err(e) => {
                tracing::debug!(container = %l.id, error = %format!("{e:#}"), "inspecting");
                continue;
            }
        };
        cache.insert(
            l.id.clone(),
            DockerContainer {
                id: i.id,
                name: i.name.trim_start_matches('/').to_owned(),
                image: i.config.image,
                labels: i.config.labels.unwrap_or_default(),
                pid: i.state.pid,
                status: i.state.status,
            },
        );
    }
    Ok(listed
        .iter()
        .filter_map(|l| cache.get(&l.id).cloned())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inspect_answers_decode() {
        let i: Inspected = serde_json::from_str(
            r#"{"Id":"abc","Name":"/web","Config":{"Image":"busybox","Labels":null},
                "State":{"Pid":42,"Status":"running"},"Other":1}"#,
        )
        .unwrap();
        assert_eq!(i.name, "/web");
        assert_eq!(i.state.pid, 42);
        assert!(i.config.labels.is_none());
    }

    #[tokio::test]
    async fn a_missing_socket_is_a_one_line_error() {
        let mut cache = HashMap::new();
        let e = containers(Path::new("/nonexistent/docker.sock"), &mut cache)
            .await
            .unwrap_err();
        let s = format!("{e:#}");
        assert!(s.contains("/nonexistent/docker.sock"), "{s}");
        assert!(!s.contains('\n'), "{s}");
    }
}
