//! A throw-away certificate authority made with the `openssl` command: a CA, a server
//! certificate for `localhost`/`127.0.0.1`, and client certificates, in a temp dir
//! deleted on drop.

use std::path::{Path, PathBuf};
use std::process::Command;

pub struct TestCa {
    pub dir: tempfile::TempDir,
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("run openssl (scripts/deps.sh installs it)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl TestCa {
    /// A CA named `name`, and a server certificate signed by it.
    pub fn new(name: &str) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let subject = format!("/CN={name}");
        openssl(
            dir.path(),
            &[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-days",
                "2",
                "-subj",
                &subject,
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
            ],
        );
        let ca = TestCa { dir };
        ca.issue(
            "server",
            "localhost",
            "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
        );
        ca
    }

    /// Issues `<file>.pem`/`<file>.key` for `cn` with the given extensions.
    fn issue(&self, file: &str, cn: &str, extensions: &str) {
        let dir = self.dir.path();
        let ext = format!("{file}.ext");
        std::fs::write(
            dir.join(&ext),
            format!("basicConstraints=CA:FALSE\n{extensions}"),
        )
        .unwrap();
        let (key, csr, pem) = (
            format!("{file}.key"),
            format!("{file}.csr"),
            format!("{file}.pem"),
        );
        let subject = format!("/CN={cn}");
        openssl(
            dir,
            &[
                "req",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-keyout",
                &key,
                "-out",
                &csr,
                "-subj",
                &subject,
            ],
        );
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-set_serial",
                "0x1234",
                "-days",
                "2",
                "-out",
                &pem,
                "-extfile",
                &ext,
            ],
        );
    }

    /// A server certificate for the address `ip`: `(cert, key)` paths.
    pub fn server_for_ip(&self, ip: &str) -> (String, String) {
        let file = format!("server-{ip}");
        self.issue(
            &file,
            ip,
            &format!("subjectAltName=IP:{ip}\nextendedKeyUsage=serverAuth\n"),
        );
        (
            self.path(&format!("{file}.pem")),
            self.path(&format!("{file}.key")),
        )
    }

    /// A client certificate whose subject common name is `cn`: `(cert, key)` paths.
    pub fn client(&self, cn: &str) -> (String, String) {
        let file = format!("client-{cn}");
        self.issue(&file, cn, "extendedKeyUsage=clientAuth\n");
        (
            self.path(&format!("{file}.pem")),
            self.path(&format!("{file}.key")),
        )
    }

    pub fn path(&self, file: &str) -> String {
        self.dir.path().join(file).to_string_lossy().into_owned()
    }

    pub fn ca(&self) -> String {
        self.path("ca.pem")
    }

    pub fn server_cert(&self) -> String {
        self.path("server.pem")
    }

    pub fn server_key(&self) -> String {
        self.path("server.key")
    }

    pub fn file(&self, file: &str) -> PathBuf {
        self.dir.path().join(file)
    }
}
