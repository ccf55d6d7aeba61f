//! The audit log: one JSON line per capture, injection, pcap upload and node/edge write
//! (attempts refused included), with the user, the source address, the action, the
//! resource and the HTTP status. Written to `--audit-log FILE`, else to the normal log
//! (target `audit`).

use std::io::Write;
use std::path::{Path, PathBuf};

use parking_lot::Mutex;
use serde_json::{json, Value};

/// The audit log file cannot be opened.
#[derive(Debug, thiserror::Error)]
#[error("cannot open the audit log {}: {error}", path.display())]
pub struct AuditError {
    pub path: PathBuf,
    pub error: std::io::Error,
}

pub struct AuditLog {
    file: Option<Mutex<std::fs::File>>,
}

/// One audited request.
pub struct Entry<'a> {
    pub user: Option<&'a str>,
    pub source: Option<std::net::SocketAddr>,
    pub action: &'a str,
    pub resource: Value,
    pub status: u16,
}

impl AuditLog {
    pub fn to_log() -> Self {
        AuditLog { file: None }
    }

    pub fn open(path: &Path) -> Result<Self, AuditError> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|error| AuditError {
                path: path.to_owned(),
                error,
            })?;
        Ok(AuditLog {
            file: Some(Mutex::new(file)),
        })
    }

    pub fn record(&self, e: Entry<'_>) {
        let line = json!({
            "Time": crate::injection::resource::rfc3339_now(),
            "User": e.user,
            "Source": e.source.map(|a| a.to_string()),
            "Action": e.action,
            "Resource": e.resource,
            "Status": e.status,
        })
        .to_string();
        match &self.file {
            Some(f) => {
                let mut f = f.lock();
                if let Err(err) = writeln!(f, "{line}") {
                    tracing::error!(target: "audit", error = %err, "{line}");
                }
            }
            None => tracing::info!(target: "audit", "{line}"),
        }
    }
}

/// The audited action of a request, or `None` for what is not audited.
pub fn action(method: &str, path: &str) -> Option<String> {
    let mut segs = path.trim_matches('/').split('/');
    if segs.next() != Some("api") {
        return None;
    }
    let kind = match segs.next()? {
        "capture" => "capture",
        "injectpacket" => "injection",
        "pcap" => return (method == "POST").then(|| "pcap.upload".to_owned()),
        "node" => "node",
        "edge" => "edge",
        "noderule" => "noderule",
        "edgerule" => "edgerule",
        "alert" => "alert",
        _ => return None,
    };
    let verb = match method {
        "POST" => "create",
        "PATCH" | "PUT" => "update",
        "DELETE" => "delete",
        _ => return None,
    };
    Some(format!("{kind}.{verb}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_and_lines() {
        assert_eq!(
            action("POST", "/api/capture").as_deref(),
            Some("capture.create")
        );
        assert_eq!(
            action("DELETE", "/api/injectpacket/x").as_deref(),
            Some("injection.delete")
        );
        assert_eq!(
            action("PATCH", "/api/node/n").as_deref(),
            Some("node.update")
        );
        assert_eq!(action("POST", "/api/pcap").as_deref(), Some("pcap.upload"));
        assert_eq!(action("GET", "/api/capture"), None);
        assert_eq!(action("POST", "/api/topology"), None);

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let log = AuditLog::open(&path).unwrap();
        log.record(Entry {
            user: Some("alice"),
            source: Some("127.0.0.1:5000".parse().unwrap()),
            action: "capture.create",
            resource: json!({"UUID": "u1"}),
            status: 201,
        });
        let text = std::fs::read_to_string(&path).unwrap();
        let v: Value = serde_json::from_str(text.trim()).unwrap();
        assert_eq!(v["User"], "alice");
        assert_eq!(v["Source"], "127.0.0.1:5000");
        assert_eq!(v["Resource"]["UUID"], "u1");
        assert_eq!(text.lines().count(), 1);
    }
}
