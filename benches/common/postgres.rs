//! A PostgreSQL server of the bench's own (Debian's postgresql-15), for the history
//! benches that measure the PostgreSQL store next to the embedded one.

use std::path::PathBuf;
use std::process::Command;

pub fn pg_bin(tool: &str) -> Option<PathBuf> {
    std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok())
        .map(|e| e.path().join("bin"))
        .find(|p| p.join("initdb").exists())
        .map(|d| d.join(tool))
}

/// A PostgreSQL server of its own, stopped on drop.
pub struct Postgres {
    dir: tempfile::TempDir,
    port: u16,
}

fn as_postgres(args: &[&std::ffi::OsStr]) -> Result<(), String> {
    let out = Command::new("runuser")
        .args(["-u", "postgres", "--"])
        .args(args)
        .output()
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

impl Postgres {
    /// initdb and pg_ctl in a temp dir, on a unix socket there; an error (no server
    /// binaries, not root) lets the bench skip PostgreSQL.
    pub fn start() -> Result<Postgres, String> {
        let initdb = pg_bin("initdb").ok_or("no PostgreSQL server binaries")?;
        let pg_ctl = pg_bin("pg_ctl").ok_or("no PostgreSQL server binaries")?;
        let dir = tempfile::Builder::new()
            .prefix("topotap-pg-bench-")
            .tempdir()
            .map_err(|e| e.to_string())?;
        let st = Command::new("chown")
            .arg("postgres:")
            .arg(dir.path())
            .status()
            .map_err(|e| e.to_string())?;
        if !st.success() {
            return Err("cannot give the data dir to the postgres user (run as root)".into());
        }
        let data = dir.path().join("data");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        as_postgres(&[
            initdb.as_os_str(),
            "-A".as_ref(),
            "trust".as_ref(),
            "-U".as_ref(),
            "topotap".as_ref(),
            "-D".as_ref(),
            data.as_os_str(),
        ])?;
        let opts = format!(
            "-c listen_addresses='' -k {} -p {port}",
            dir.path().display()
        );
        let log = dir.path().join("log");
        as_postgres(&[
            pg_ctl.as_os_str(),
            "-D".as_ref(),
            data.as_os_str(),
            "-l".as_ref(),
            log.as_os_str(),
            "-o".as_ref(),
            opts.as_ref(),
            "-w".as_ref(),
            "start".as_ref(),
        ])?;
        Ok(Postgres { dir, port })
    }

    /// The connection string `PostgresStore::connect` takes.
    pub fn url(&self) -> String {
        format!(
            "host={} port={} user=topotap dbname=postgres",
            self.dir.path().display(),
            self.port
        )
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if let Some(pg_ctl) = pg_bin("pg_ctl") {
            let data = self.dir.path().join("data");
            let _ = as_postgres(&[
                pg_ctl.as_os_str(),
                "-D".as_ref(),
                data.as_os_str(),
                "-m".as_ref(),
                "immediate".as_ref(),
                "-w".as_ref(),
                "stop".as_ref(),
            ]);
        }
    }
}
