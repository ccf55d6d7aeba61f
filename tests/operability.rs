//! The operator's side of the binary, run as an operator would: a configuration file with
//! environment variables and flags over it, a malformed file refused at start, `config
//! print`, `--version` with the source revision, log formats, completions and manual
//! pages.

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn topotap() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_topotap"));
    // The tests decide which TOPOTAP_* variables are set.
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("TOPOTAP_") {
            c.env_remove(k);
        }
    }
    c
}

fn run(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null()).output().expect("run topotap")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn environment_overrides_the_file_and_flags_override_both() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("topotap.toml");
    std::fs::write(
        &file,
        "listen = \"127.0.0.1:7001\"\nflow-update = 5\nflow-expire = 50\nhost-id = \"file\"\n",
    )
    .unwrap();
    let out = run(topotap()
        .args(["config", "print", "--config"])
        .arg(&file)
        .args(["--flow-expire", "70"])
        .env("TOPOTAP_FLOW_UPDATE", "6")
        .env("TOPOTAP_FLOW_EXPIRE", "60"));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let printed = text(&out.stdout);
    let line = |key: &str| {
        printed
            .lines()
            .find(|l| l.starts_with(&format!("{key} = ")))
            .unwrap_or_else(|| panic!("no {key} in {printed}"))
            .to_owned()
    };
    assert!(
        line("listen").starts_with("listen = \"127.0.0.1:7001\"  # "),
        "{printed}"
    );
    assert!(line("listen").ends_with("topotap.toml:1"), "{printed}");
    assert_eq!(
        line("flow-update"),
        "flow-update = 6  # environment TOPOTAP_FLOW_UPDATE"
    );
    assert_eq!(line("flow-expire"), "flow-expire = 70  # command line");
    assert!(
        line("host-id").starts_with("host-id = \"file\""),
        "{printed}"
    );
    assert!(line("flow-max-entries").ends_with("# default"), "{printed}");

    // The file through TOPOTAP_CONFIG.
    let out = run(topotap()
        .args(["config", "print"])
        .env("TOPOTAP_CONFIG", &file));
    assert!(
        text(&out.stdout).contains("flow-update = 5  # "),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn a_malformed_file_is_refused_at_start_with_the_key_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.toml");
    for (toml, want) in [
        (
            "no-probes = true\nlisten = \"nowhere\"\n",
            ":2: key 'listen': invalid value 'nowhere'",
        ),
        (
            "\n\nflow-expire = -1\n",
            ":3: key 'flow-expire': invalid value '-1'",
        ),
        (
            "no-probes = true\nlisen = \"127.0.0.1:1\"\n",
            ":2: unknown key 'lisen'",
        ),
        ("no-probes = yes\n", ":1: invalid TOML"),
    ] {
        std::fs::write(&file, toml).unwrap();
        let started = Instant::now();
        let out = run(topotap()
            .args(["allinone", "--listen", "127.0.0.1:0", "--config"])
            .arg(&file));
        assert!(started.elapsed() < Duration::from_secs(10));
        assert_eq!(out.status.code(), Some(2), "{toml}: {}", text(&out.stderr));
        let stderr = text(&out.stderr);
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(
            stderr.starts_with("error: ") && stderr.contains("bad.toml"),
            "{stderr}"
        );
        assert!(stderr.contains(want), "{toml}: {stderr}");
        assert!(out.stdout.is_empty(), "{}", text(&out.stdout));
    }
    let out = run(topotap()
        .args(["allinone", "--config"])
        .arg(dir.path().join("missing.toml")));
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("cannot read"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn version_names_the_source_revision() {
    let out = run(topotap().arg("--version"));
    let v = text(&out.stdout);
    let expected = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| text(&o.stdout).trim().to_owned());
    match expected {
        Some(rev) => assert_eq!(
            v.trim(),
            format!("topotap {} ({rev})", env!("CARGO_PKG_VERSION"))
        ),
        // Built outside a clone: a revision from .revision, or "unknown", still shown.
        None => assert!(v.starts_with(&format!("topotap {} (", env!("CARGO_PKG_VERSION")))),
    }
}

/// Starts a server with `args`, waits for it to listen, stops it and returns its stderr.
fn server_stderr(args: &[&str]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let mut child = topotap()
        .args([
            "allinone",
            "--no-probes",
            "--listen",
            "127.0.0.1:0",
            "--state-dir",
        ])
        .arg(dir.path())
        .args(args)
        .env("TOPOTAP_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn topotap");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.starts_with("listening on "), "{line:?}");
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    let _ = child.wait();
    stderr
}

#[test]
fn text_logs_carry_no_colour_on_a_pipe_and_json_logs_are_json() {
    let text_logs = server_stderr(&[]);
    assert!(text_logs.contains("topotap API listening"), "{text_logs}");
    assert!(
        !text_logs.contains('\u{1b}'),
        "ANSI escape in {text_logs:?}"
    );

    let json_logs = server_stderr(&["--log-format", "json"]);
    let mut messages = Vec::new();
    for l in json_logs.lines() {
        let v: serde_json::Value =
            serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"));
        assert!(v["level"].is_string() && v["timestamp"].is_string(), "{l}");
        messages.push(
            v["fields"]["message"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        );
    }
    assert!(
        messages.iter().any(|m| m == "topotap API listening"),
        "{json_logs}"
    );
}

#[test]
fn completions_and_manual_pages() {
    for (shell, marker) in [
        ("bash", "complete -F _topotap"),
        ("zsh", "#compdef topotap"),
        ("fish", "complete -c topotap"),
    ] {
        let out = run(topotap().args(["completions", shell]));
        assert!(out.status.success());
        let script = text(&out.stdout);
        assert!(script.contains(marker), "{shell}: {script}");
        assert!(script.contains("flow-max-entries"), "{shell}");
    }
    let out = run(topotap().args(["completions", "tcsh"]));
    assert_eq!(out.status.code(), Some(2));

    let dir = tempfile::tempdir().unwrap();
    let out = run(topotap().args(["man", "--dir"]).arg(dir.path()));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let page = std::fs::read_to_string(dir.path().join("topotap-allinone.1")).unwrap();
    assert!(page.starts_with(".ie"), "{page}");
    assert!(page.contains("flow\\-max\\-entries"), "{page}");
    assert!(dir.path().join("topotap.1").exists());
}

/// Logs written to a file (not a terminal) carry no colour codes, in either format, even
/// with a colour terminal declared in the environment.
#[test]
fn logs_to_a_file_have_no_escape_codes() {
    for format in ["text", "json"] {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("topotap.log");
        let mut child = topotap()
            .args(["allinone", "--no-probes", "--listen", "127.0.0.1:0"])
            .args(["--log-format", format, "--state-dir"])
            .arg(dir.path())
            .env("TOPOTAP_LOG", "debug")
            .env("TERM", "xterm-256color")
            .env("CLICOLOR_FORCE", "1")
            .env_remove("NO_COLOR")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("spawn topotap");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert!(line.starts_with("listening on "), "{line:?}");
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let _ = child.wait();
        let bytes = std::fs::read(&log).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        assert!(text.contains("topotap API listening"), "{format}: {text}");
        assert!(
            !bytes.contains(&0x1b),
            "{format}: ESC byte in the log file: {text:?}"
        );
    }
    // A command-line error written to a file: no colour either.
    let dir = tempfile::tempdir().unwrap();
    let err = dir.path().join("err");
    let status = topotap()
        .args(["client", "--no-such-flag"])
        .env("TERM", "xterm-256color")
        .stderr(std::fs::File::create(&err).unwrap())
        .status()
        .unwrap();
    assert!(!status.success());
    let bytes = std::fs::read(&err).unwrap();
    assert!(!bytes.is_empty() && !bytes.contains(&0x1b), "{bytes:?}");
}
