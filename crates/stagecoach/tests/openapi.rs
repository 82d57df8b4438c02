//! The OpenAPI document against the real daemon, judged by an outside API
//! tester rather than by our own reading of it: schemathesis (pinned in
//! `crates/xtask`, installed by `cargo xtask setup` into `target/tools/`)
//! generates requests from `/v1/openapi.json` and sends them to a daemon on
//! its bundled defaults with the admin token, in every phase (the document's
//! examples, coverage of every constraint's edges, random fuzzing, and
//! stateful sequences that follow the document's links from
//! `POST /v1/deployments` to the routes that take its id), with every check
//! (no server error; status codes, content types, headers and bodies as
//! documented; invalid requests refused and valid ones accepted; `405` with
//! `Allow` for an undeclared method; authentication enforced). The event
//! stream is included: schemathesis reads `text/event-stream` answers
//! until `max-stream-events` events or its request timeout
//! (`crates/stagecoach/tests/schemathesis.toml`).
//!
//! The seed is fixed, so a run is repeatable; `docs/api.md` says how to run
//! it with other seeds. The test fails on any failure schemathesis reports,
//! and also when it did not reach the routes that take a deployment's id.

mod common;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use common::{run_within, Harness};

/// Where `cargo xtask setup` installs the pinned schemathesis.
fn schemathesis() -> PathBuf {
    let installed = std::env::var_os("STAGECOACH_SCHEMATHESIS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/tools/schemathesis-4.32.5/bin/schemathesis")
        });
    assert!(
        installed.is_file(),
        "schemathesis is not installed at {}, and this test needs it to check the OpenAPI document against \
         the daemon: run `cargo xtask setup` (it installs the pinned version from PyPI into target/tools/)",
        installed.display()
    );
    installed
}

/// `METHOD /path` of every operation of the document, but `GET /v1/openapi.json`.
fn documented_operations() -> BTreeSet<String> {
    let doc: serde_json::Value = serde_json::from_str(daemon::api::OPENAPI).expect("the document is JSON");
    let methods = ["get", "put", "post", "delete", "options", "head", "patch", "trace"];
    let mut operations = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("a path item").keys() {
            if methods.contains(&method.as_str()) && path != "/v1/openapi.json" {
                operations.insert(format!("{} {path}", method.to_uppercase()));
            }
        }
    }
    operations
}

#[test]
fn schemathesis_finds_no_disagreement_between_the_document_and_the_daemon() {
    let tool = schemathesis();
    let mut h = Harness::bare();
    let daemon = h.start();
    let token_file = h.state().join("admin.token");
    let token = std::fs::read_to_string(&token_file).expect("the daemon wrote its admin token");
    let token = token.trim();

    let config = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/schemathesis.toml");
    let junit = h.path("schemathesis-junit.xml");
    let mut cmd = Command::new(&tool);
    cmd.arg("--config-file")
        .arg(&config)
        .arg("run")
        .arg(format!("{}/v1/openapi.json", daemon.url))
        .args(["--url", &daemon.url])
        .args(["-H", &format!("Authorization: Bearer {token}")])
        .args(["--checks", "all"])
        .args(["--phases", "examples,coverage,fuzzing,stateful"])
        .args(["--max-examples", "30"])
        .args(["--seed", "20261208"])
        .args(["--workers", "1"])
        .args(["--generation-database", "none"])
        .args(["--no-color"])
        .args(["--report", "junit", "--report-junit-path"])
        .arg(&junit)
        // No Hypothesis database or report left behind in the source tree.
        .current_dir(h.dir.path())
        .env("SCHEMATHESIS_HOOKS", "")
        .env_remove("SCHEMATHESIS_BASE_URL");
    let out = run_within(cmd, "schemathesis run", Duration::from_secs(900));
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "schemathesis found disagreements between /v1/openapi.json and the daemon ({}):\n{said}",
        out.status
    );
    // Every operation of the document was tested (but the one serving the document, which
    // schemathesis leaves out) and so were sequences of them, and none failed or errored: its
    // JUnit report has a test case per operation and one for the stateful phase.
    let report = std::fs::read_to_string(&junit).expect("schemathesis wrote its JUnit report");
    let tested: BTreeSet<String> = report
        .split("<testcase name=\"")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .map(|name| name.replace("&#123;", "{").replace("&#125;", "}"))
        .collect();
    let mut expected = documented_operations();
    // The stateful phase reports as one test case of its own.
    expected.insert("Stateful tests".to_string());
    assert_eq!(tested, expected, "what schemathesis tested:\n{said}");
    assert!(
        !report.contains("<failure") && !report.contains("<error"),
        "schemathesis reported failures or errors:\n{report}\n{said}"
    );

    // The stateful phase followed links (the document's, from a submission to the routes that
    // take its id, and those schemathesis infers), and valid submissions were accepted. Whether
    // a followed cancel could still cancel depends on the time of day (inside a deployment
    // window a release is past DEPLOY at once), so it is not asked for.
    let covered: usize = said
        .lines()
        .find_map(|l| l.trim().strip_prefix("API Links:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no `API Links: N covered` line:\n{said}"));
    assert!(covered > 0, "the stateful phase followed no link:\n{said}");
    let listed = daemon.list(token, None, None);
    let accepted = listed["deployments"].as_array().map_or(0, Vec::len);
    assert!(
        accepted > 0,
        "no deployment was accepted during the run, so the document's valid submissions were never valid:\n{said}"
    );
}
