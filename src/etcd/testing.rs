//! A real etcd for tests: one member on loopback with a temporary data directory and
//! free ports, killed when dropped (a failing test included); and a TCP proxy in front
//! of it that a test can cut, as a network partition would.

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tokio::task::JoinHandle;

use super::Etcd;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind a free port")
        .local_addr()
        .unwrap()
        .port()
}

/// One etcd member on loopback.
pub struct EtcdServer {
    dir: tempfile::TempDir,
    client_port: u16,
    peer_port: u16,
    child: Option<Child>,
}

impl EtcdServer {
    /// Starts etcd and waits until it answers.
    pub async fn start() -> EtcdServer {
        let mut server = EtcdServer {
            dir: tempfile::tempdir().expect("temp dir"),
            client_port: free_port(),
            peer_port: free_port(),
            child: None,
        };
        server.resume().await;
        server
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.client_port))
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Starts the member again on the same data and ports.
    pub async fn resume(&mut self) {
        assert!(self.child.is_none(), "etcd already runs");
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let log = std::fs::File::create(self.dir.path().join("etcd.log")).expect("etcd log");
        let child = Command::new("etcd")
            .args(["--name", "t"])
            .arg("--data-dir")
            .arg(self.data_dir())
            .args(["--listen-client-urls", &self.url()])
            .args(["--advertise-client-urls", &self.url()])
            .args(["--listen-peer-urls", &peer])
            .args(["--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &format!("t={peer}")])
            .args(["--logger", "zap", "--log-outputs", "stderr"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("etcd runs (Debian package etcd-server, scripts/deps.sh)");
        self.child = Some(child);
        let etcd = Etcd::connect(&[self.url()]).await.expect("client");
        let mut kv = etcd.client().kv_client();
        for _ in 0..200 {
            if etcd.call("probe", kv.get("/probe", None)).await.is_ok() {
                return;
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("etcd exited ({status}): {}", self.log());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("etcd did not answer within 10 s: {}", self.log());
    }

    /// Kills the member (as a crash would; its data stays).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("etcd.log")).unwrap_or_default()
    }
}

impl Drop for EtcdServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A TCP relay to an address that can be cut as a partition would: while cut, bytes
/// stop flowing both ways (sockets stay open, nothing is refused or reset), so only
/// timeouts and keep-alives notice.
pub struct Proxy {
    port: u16,
    cut: tokio::sync::watch::Sender<bool>,
    acceptor: JoinHandle<()>,
}

impl Proxy {
    pub async fn start(to: SocketAddr) -> Proxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (cut, cut_rx) = tokio::sync::watch::channel(false);
        let acceptor = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let mut cut = cut_rx.clone();
                tokio::spawn(async move {
                    // Held, silent, until healed; then dropped.
                    until(&mut cut, false).await;
                    let Ok(mut outbound) = tokio::net::TcpStream::connect(to).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = until(&mut cut, true) => until(&mut cut, false).await,
                    }
                });
            }
        });
        Proxy {
            port,
            cut,
            acceptor,
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Stops all traffic through the proxy.
    pub fn cut(&self) {
        self.cut.send_replace(true);
    }

    /// Lets traffic flow again (connections held during the cut are closed).
    pub fn heal(&self) {
        self.cut.send_replace(false);
    }
}

/// Waits until the proxy is (or is no longer) cut.
async fn until(cut: &mut tokio::sync::watch::Receiver<bool>, state: bool) {
    let _ = cut.wait_for(|c| *c == state).await.is_ok();
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.acceptor.abort();
        self.cut.send_replace(false);
    }
}
