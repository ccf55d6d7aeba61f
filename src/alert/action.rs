//! What a fired alert does: a webhook or a script.
//!
//! - **Webhook** (`http://...`, `https://...`): a POST of the alert message as JSON.
//!   The host must be within `--allow-target`, as a capture's export target: checked at
//!   create (403) and again at every send, on the addresses the name resolves to then
//!   (the client's resolver drops the others, so a name that moved elsewhere reaches
//!   nothing). No proxy from the environment, no redirects, a timeout.
//! - **Script** (`file://NAME`): an executable inside `--alert-script-dir` (none:
//!   scripts are refused). `NAME` is relative to that directory, or an absolute path
//!   within it; `..` is refused, and the path is resolved (symbolic links included)
//!   and must stay inside the directory, at create and again before each run. It runs
//!   directly, never through a shell, with the alert message on its standard input, a
//!   clean environment (`PATH` only), the directory as its working directory, and a
//!   timeout after which it is killed.
//!
//! At most [`MAX_RUNNING`] actions run at once; a fire beyond that is not acted on and
//! says so in the alert's `ActionError`.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Semaphore;
use tracing::{debug, warn};

use super::{publish_shown, Alert, AlertMessage, Shown};
use crate::auth::AllowTargets;
use crate::error::Error;

/// Longest a webhook may take (connection, request and answer).
pub const WEBHOOK_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest a script may run before it is killed.
pub const SCRIPT_TIMEOUT: Duration = Duration::from_secs(30);
/// Most actions running at once.
pub const MAX_RUNNING: usize = 32;
/// Bytes of a script's standard error kept for `ActionError`.
const STDERR_KEPT: usize = 4096;

/// What an action is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    None,
    Webhook(reqwest::Url),
    /// The name as written after `file://`.
    Script(String),
}

/// Parses an `Action` (syntax only).
pub fn parse(action: &str) -> Result<Kind, Error> {
    let action = action.trim();
    if action.is_empty() {
        return Ok(Kind::None);
    }
    if let Some(name) = action.strip_prefix("file://") {
        if name.is_empty() {
            return Err(Error::invalid("Action: file:// names no script"));
        }
        return Ok(Kind::Script(name.to_owned()));
    }
    if action.starts_with("http://") || action.starts_with("https://") {
        let url = reqwest::Url::parse(action)
            .map_err(|e| Error::invalid(format!("Action: {action:?} is not a URL: {e}")))?;
        if url.host_str().is_none_or(str::is_empty) {
            return Err(Error::invalid(format!("Action: {action:?} names no host")));
        }
        return Ok(Kind::Webhook(url));
    }
    Err(Error::invalid(format!(
        "Action: {action:?} is neither empty, an http(s):// URL nor file://SCRIPT"
    )))
}

/// The webhook client's resolver: only addresses within `--allow-target`.
struct AllowedResolver {
    targets: AllowTargets,
}

impl reqwest::dns::Resolve for AllowedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let targets = self.targets.clone();
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let allowed: Vec<SocketAddr> = found
                .iter()
                .copied()
                .filter(|a| targets.allows(a.ip()))
                .collect();
            if allowed.is_empty() {
                let first = found
                    .first()
                    .map(|a| a.ip().to_string())
                    .unwrap_or_default();
                let reason = targets
                    .check_ip(found.first().map_or(IpAddr::from([0, 0, 0, 0]), |a| a.ip()))
                    .err()
                    .map(|e| e.to_string())
                    .unwrap_or_else(|| format!("{host} resolves to nothing ({first})"));
                return Err(reason.into());
            }
            let addrs: reqwest::dns::Addrs = Box::new(allowed.into_iter());
            Ok(addrs)
        })
    }
}

/// Runs actions: the egress policy, the script directory, the webhook client.
pub struct Actions {
    targets: AllowTargets,
    script_dir: Option<PathBuf>,
    /// `None` if it could not be built (then webhooks fail, never bypassing the
    /// policy with a default client).
    client: Option<reqwest::Client>,
    running: Arc<Semaphore>,
}

impl std::fmt::Debug for Actions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Actions")
            .field("script_dir", &self.script_dir)
            .finish()
    }
}

impl Actions {
    pub fn new(targets: AllowTargets, script_dir: Option<PathBuf>) -> Self {
        let client = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(WEBHOOK_TIMEOUT)
            .connect_timeout(WEBHOOK_TIMEOUT)
            .dns_resolver(Arc::new(AllowedResolver {
                targets: targets.clone(),
            }))
            .user_agent(concat!("topotap/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| warn!("webhook client: {e}"))
            .ok();
        Actions {
            targets,
            script_dir,
            client,
            running: Arc::new(Semaphore::new(MAX_RUNNING)),
        }
    }

    /// Checks an action at create: 400 for its syntax or a script that is not there,
    /// 403 for a webhook outside `--allow-target`. Blocking (resolves a host name).
    pub fn check(&self, action: &str) -> Result<(), Error> {
        match parse(action)? {
            Kind::None => Ok(()),
            Kind::Webhook(url) => {
                let host = url.host_str().unwrap_or_default();
                let host = host.trim_start_matches('[').trim_end_matches(']');
                let port = url.port_or_known_default().unwrap_or(80);
                let target = match host.parse::<IpAddr>() {
                    Ok(ip) => SocketAddr::new(ip, port).to_string(),
                    Err(_) => format!("{host}:{port}"),
                };
                self.targets
                    .check_target(&target)
                    .map_err(|e| Error::forbidden(format!("Action: {e}")))
            }
            Kind::Script(name) => self.script(&name).map(|_| ()).map_err(Error::invalid),
        }
    }

    /// The script `file://NAME` runs: its real path inside the script directory.
    pub fn script(&self, name: &str) -> Result<PathBuf, String> {
        let Some(dir) = &self.script_dir else {
            return Err(format!(
                "Action: file://{name}: scripts are off (start the server with --alert-script-dir DIR)"
            ));
        };
        resolve_script(dir, name).map_err(|e| format!("Action: file://{name}: {e}"))
    }

    /// Runs the alert's action for `msg` on a task of its own; its outcome goes to
    /// `ActionError` in `shown`.
    pub fn spawn(
        self: &Arc<Self>,
        alert: Alert,
        msg: AlertMessage,
        shown: Arc<Mutex<HashMap<String, Shown>>>,
    ) {
        let kind = match parse(&alert.action) {
            Ok(Kind::None) => return,
            Ok(k) => k,
            Err(e) => {
                finish(&alert, &shown, Err(e.to_string()));
                return;
            }
        };
        let Ok(permit) = self.running.clone().try_acquire_owned() else {
            finish(
                &alert,
                &shown,
                Err(format!("not run: {MAX_RUNNING} actions already running")),
            );
            return;
        };
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let this = self.clone();
        rt.spawn(async move {
            let body = serde_json::to_vec(&msg).unwrap_or_default();
            let outcome = match kind {
                Kind::Webhook(url) => this.post(url, body).await,
                Kind::Script(name) => this.run_script(&name, body).await,
                Kind::None => Ok(()),
            };
            drop(permit);
            if let Err(e) = &outcome {
                warn!(alert = %alert.uuid, "alert action failed: {e}");
            }
            finish(&alert, &shown, outcome);
        });
    }

    async fn post(&self, url: reqwest::Url, body: Vec<u8>) -> Result<(), String> {
        // An address in the URL is not resolved: check it here.
        if let Some(host) = url.host_str() {
            let host = host.trim_start_matches('[').trim_end_matches(']');
            if let Ok(ip) = host.parse::<IpAddr>() {
                self.targets.check_ip(ip).map_err(|e| e.to_string())?;
            }
        }
        let client = self
            .client
            .as_ref()
            .ok_or_else(|| format!("webhook {url}: no HTTP client"))?;
        let resp = client
            .post(url.clone())
            .header("Content-Type", "application/json")
            .body(body)
            .send()
            .await
            .map_err(|e| format!("webhook {url}: {}", root_cause(&e)))?;
        let status = resp.status();
        if status.is_success() {
            debug!("webhook {url}: {status}");
            Ok(())
        } else {
            Err(format!("webhook {url} answered {status}"))
        }
    }

    async fn run_script(&self, name: &str, stdin: Vec<u8>) -> Result<(), String> {
        let path = self.script(name)?;
        let dir = self.script_dir.clone().unwrap_or_default();
        let mut child = tokio::process::Command::new(&path)
            .current_dir(&dir)
            .env_clear()
            .env(
                "PATH",
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            )
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("script {}: {e}", path.display()))?;
        let mut input = child.stdin.take();
        let mut stderr = child.stderr.take();
        let work = async {
            if let Some(mut i) = input.take() {
                // A script that does not read its input may exit first: not an error.
                let _ = i.write_all(&stdin).await;
                drop(i);
            }
            let mut kept = Vec::new();
            if let Some(e) = stderr.as_mut() {
                let mut buf = [0u8; 4096];
                loop {
                    match e.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            let room = STDERR_KEPT.saturating_sub(kept.len());
                            kept.extend_from_slice(&buf[..n.min(room)]);
                        }
                    }
                }
            }
            (child.wait().await, kept)
        };
        match tokio::time::timeout(SCRIPT_TIMEOUT, work).await {
            Err(_) => Err(format!(
                "script {} killed after {}s",
                path.display(),
                SCRIPT_TIMEOUT.as_secs()
            )),
            Ok((Err(e), _)) => Err(format!("script {}: {e}", path.display())),
            Ok((Ok(status), _)) if status.success() => Ok(()),
            Ok((Ok(status), kept)) => {
                let text = String::from_utf8_lossy(&kept);
                let line = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
                Err(format!("script {} {status}: {line}", path.display())
                    .trim_end_matches([' ', ':'])
                    .to_owned())
            }
        }
    }
}

/// Records an action's outcome on the alert.
fn finish(alert: &Alert, shown: &Mutex<HashMap<String, Shown>>, outcome: Result<(), String>) {
    {
        let mut map = shown.lock();
        let Some(s) = map.get_mut(&alert.uuid) else {
            // Deleted meanwhile.
            return;
        };
        s.action_error = outcome.err().map(|e| one_line(&e));
    }
    publish_shown(alert, shown);
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    let mut text = e.to_string();
    while let Some(next) = cur.source() {
        text = format!("{text}: {next}");
        cur = next;
    }
    text
}

/// Resolves `name` inside `dir`: no `..`, the real path (links resolved) inside the
/// directory's real path, a regular executable file.
pub fn resolve_script(dir: &Path, name: &str) -> Result<PathBuf, String> {
    use std::os::unix::fs::PermissionsExt;
    let p = Path::new(name);
    if p.components().any(|c| matches!(c, Component::ParentDir)) {
        return Err("\"..\" is not allowed in a script name".into());
    }
    let root = dir
        .canonicalize()
        .map_err(|e| format!("--alert-script-dir {}: {e}", dir.display()))?;
    let joined = if p.is_absolute() {
        p.to_path_buf()
    } else {
        dir.join(p)
    };
    let real = joined
        .canonicalize()
        .map_err(|e| format!("{}: {e}", joined.display()))?;
    if !real.starts_with(&root) || real == root {
        return Err(format!(
            "{} is outside --alert-script-dir {}",
            real.display(),
            root.display()
        ));
    }
    let md = std::fs::metadata(&real).map_err(|e| format!("{}: {e}", real.display()))?;
    if !md.is_file() {
        return Err(format!("{} is not a regular file", real.display()));
    }
    if md.permissions().mode() & 0o111 == 0 {
        return Err(format!("{} is not executable", real.display()));
    }
    Ok(real)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn executable(path: &Path) {
        std::fs::write(path, "#!/bin/sh\nexit 0\n").unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    #[test]
    fn scripts_stay_inside_their_directory() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("scripts");
        std::fs::create_dir(&dir).unwrap();
        std::fs::create_dir(dir.join("sub")).unwrap();
        executable(&dir.join("ok.sh"));
        executable(&dir.join("sub/deep.sh"));
        executable(&root.path().join("outside.sh"));
        std::fs::write(dir.join("plain.txt"), "x").unwrap();
        std::os::unix::fs::symlink(root.path().join("outside.sh"), dir.join("escape.sh")).unwrap();
        std::os::unix::fs::symlink(dir.join("ok.sh"), dir.join("inside-link.sh")).unwrap();

        assert!(resolve_script(&dir, "ok.sh").is_ok());
        assert!(resolve_script(&dir, "sub/deep.sh").is_ok());
        assert!(resolve_script(&dir, "inside-link.sh").is_ok());
        let abs = dir.join("ok.sh");
        assert!(resolve_script(&dir, abs.to_str().unwrap()).is_ok());

        for (name, needle) in [
            ("../outside.sh", "\"..\" is not allowed"),
            ("sub/../../outside.sh", "\"..\" is not allowed"),
            ("escape.sh", "is outside --alert-script-dir"),
            (
                root.path().join("outside.sh").to_str().unwrap(),
                "is outside",
            ),
            ("/bin/sh", "is outside"),
            ("plain.txt", "is not executable"),
            ("sub", "is not a regular file"),
            ("missing.sh", "No such file"),
        ] {
            let e = resolve_script(&dir, name).unwrap_err();
            assert!(e.contains(needle), "{name}: {e}");
        }
        let off = Actions::new(AllowTargets::Everything, None);
        assert!(off
            .check("file://ok.sh")
            .unwrap_err()
            .to_string()
            .contains("scripts are off"));
    }

    #[test]
    fn actions_parse_and_webhooks_obey_allow_target() {
        let only = Actions::new(
            AllowTargets::Only(AllowTargets::parse(&["127.0.0.0/8".into()]).unwrap()),
            None,
        );
        assert!(only.check("").is_ok());
        assert!(only.check("http://127.0.0.1:9/hook").is_ok());
        let e = only.check("https://192.0.2.7/hook").unwrap_err();
        assert!(matches!(e, Error::Forbidden(_)), "{e:?}");
        assert!(e.to_string().contains("outside --allow-target"), "{e}");
        let e = only.check("http://[::1]:9/").unwrap_err();
        assert!(matches!(e, Error::Forbidden(_)), "{e:?}");
        for bad in ["ftp://x", "http://", "mailto:a@b", "file://"] {
            let e = only.check(bad).unwrap_err();
            assert!(matches!(e, Error::Invalid(_)), "{bad}: {e:?}");
        }
    }
}
