//! A real PostgreSQL server of the test's own (Debian's postgresql-15): initdb and pg_ctl
//! in a temp dir owned by `postgres`, listening only on a unix socket there.

use std::path::PathBuf;
use std::process::Command;

use super::net::sh;

/// A PostgreSQL tool of the installed server version.
pub fn pg_bin(tool: &str) -> PathBuf {
    let dir = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL server binaries (scripts/deps.sh installs postgresql-15)")
        .filter_map(|e| e.ok())
        .map(|e| e.path().join("bin"))
        .find(|p| p.join("initdb").exists())
        .expect("initdb under /usr/lib/postgresql/*/bin");
    dir.join(tool)
}

/// A PostgreSQL server of its own, stopped and removed on drop.
pub struct Postgres {
    dir: tempfile::TempDir,
    port: u16,
}

fn as_postgres(cmd: &mut Command) {
    let out = cmd.output().expect("run a PostgreSQL tool");
    assert!(
        out.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Postgres {
    /// initdb and pg_ctl in a temp dir, listening only on a unix socket there.
    pub fn start() -> Postgres {
        let dir = tempfile::Builder::new()
            .prefix("topotap-pg-")
            .tempdir()
            .unwrap();
        // The server refuses to run as root: the directory belongs to `postgres`.
        sh(&format!(
            "chown postgres: {0} && chmod 700 {0}",
            dir.path().display()
        ));
        let data = dir.path().join("data");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        as_postgres(
            Command::new("runuser")
                .args(["-u", "postgres", "--"])
                .arg(pg_bin("initdb"))
                .args(["-A", "trust", "-U", "topotap", "-D"])
                .arg(&data),
        );
        as_postgres(
            Command::new("runuser")
                .args(["-u", "postgres", "--"])
                .arg(pg_bin("pg_ctl"))
                .arg("-D")
                .arg(&data)
                .arg("-l")
                .arg(dir.path().join("log"))
                .arg("-o")
                .arg(format!(
                    "-c listen_addresses='' -k {} -p {port}",
                    dir.path().display()
                ))
                .args(["-w", "start"]),
        );
        Postgres { dir, port }
    }

    /// The connection string `--history` takes.
    pub fn url(&self) -> String {
        format!(
            "host={} port={} user=topotap dbname=postgres",
            self.dir.path().display(),
            self.port
        )
    }

    pub fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Runs one SQL statement with psql; the rows, one a line, columns split by `|`.
    pub fn sql(&self, statement: &str) -> String {
        let out = Command::new(pg_bin("psql"))
            .arg("-h")
            .arg(self.dir.path())
            .args([
                "-p",
                &self.port.to_string(),
                "-U",
                "topotap",
                "-d",
                "postgres",
            ])
            .args(["-v", "ON_ERROR_STOP=1", "-Atc", statement])
            .output()
            .expect("run psql");
        assert!(
            out.status.success(),
            "{statement}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(pg_bin("pg_ctl"))
            .arg("-D")
            .arg(self.data())
            .args(["-m", "immediate", "-w", "stop"])
            .output();
    }
}
