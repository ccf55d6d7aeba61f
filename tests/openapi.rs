//! The OpenAPI document at `/api/openapi.json` against real tools from PyPI (installed by
//! `scripts/pytools.sh` into a virtual environment under the target directory):
//! `openapi-spec-validator` checks the document, and `schemathesis` fuzzes a live
//! topotap from it. The fuzzer and the server run in a network namespace that has only
//! loopback, with the probes off, so nothing it makes up can reach anything else.

mod common;

use std::path::PathBuf;
use std::process::{Command, Output};

use common::net::Cleanup;
use common::{rand_tag, Topotap};

/// The checks the fuzzer applies to every answer.
const CHECKS: &str = "not_a_server_error,status_code_conformance,content_type_conformance,\
                      response_schema_conformance,negative_data_rejection";

/// The virtual environment with the tools; fails the test when PyPI cannot be reached.
fn pytools() -> PathBuf {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/pytools.sh");
    let out = Command::new("bash")
        .arg(script)
        .output()
        .expect("run scripts/pytools.sh");
    assert!(
        out.status.success(),
        "scripts/pytools.sh could not install schemathesis and openapi-spec-validator \
         (is PyPI reachable? is python3-venv installed? see scripts/deps.sh):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[tokio::test]
async fn the_served_document_is_valid_openapi() {
    let venv = pytools();
    let t = Topotap::start_api_only();
    let resp = reqwest::get(t.url("/api/openapi.json")).await.unwrap();
    assert_eq!(resp.status(), 200);
    let doc = resp.bytes().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("openapi.json");
    std::fs::write(&file, &doc).unwrap();
    let out = Command::new(venv.join("bin/openapi-spec-validator"))
        .arg(&file)
        .output()
        .expect("run openapi-spec-validator");
    assert!(
        out.status.success(),
        "openapi-spec-validator: {}",
        text(&out)
    );
    assert!(text(&out).contains("OK"), "{}", text(&out));
}

/// Every operation of the document, positive and negative data, in every phase
/// (examples, coverage, fuzzing, stateful), a bounded number of cases each (under a
/// minute on two cores).
#[test]
fn schemathesis_finds_no_failure_against_a_live_server() {
    let venv = pytools();
    let ns = format!("oapi{}", rand_tag());
    let mut cleanup = Cleanup::new();
    cleanup.netns(&ns);
    let t = Topotap::start_wrapped(&["ip", "netns", "exec", &ns], &["--no-probes"]);
    let report = tempfile::tempdir().unwrap();
    let schemathesis = venv.join("bin/schemathesis");
    let out = Command::new("timeout")
        .args(["-k", "10", "300", "ip", "netns", "exec", &ns])
        .arg(&schemathesis)
        .args(["run", &t.url("/api/openapi.json"), "--checks", CHECKS])
        .args(["--mode", "all", "--max-examples", "25", "--workers", "2"])
        .args(["--request-timeout", "20", "--suppress-health-check", "all"])
        .arg("--report-dir")
        .arg(report.path())
        // Its cache of crashes goes where it runs.
        .current_dir(report.path())
        .env("NO_COLOR", "1")
        .env("SCHEMATHESIS_TELEMETRY", "false")
        .output()
        .expect("run schemathesis");
    let output = text(&out);
    assert!(
        out.status.success(),
        "schemathesis found failures (exit {:?}):\n{output}",
        out.status.code()
    );
    // It did run, every operation, with many cases.
    let selected = output
        .lines()
        .find_map(|l| l.trim().strip_prefix("Operations:"))
        .unwrap_or_else(|| panic!("no operation count in:\n{output}"));
    let (picked, total) = selected
        .split_once("selected /")
        .expect("N selected / M total");
    assert_eq!(
        picked.trim(),
        total.trim_end_matches("total").trim(),
        "{output}"
    );
    // "663 generated, 663 passed"
    let generated: u64 = output
        .lines()
        .find_map(|l| l.trim().split_once(" generated, ")?.0.parse().ok())
        .unwrap_or_else(|| panic!("no test case count in:\n{output}"));
    assert!(generated >= 1000, "only {generated} test cases:\n{output}");
    drop(t);
}
