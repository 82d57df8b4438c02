//! Real reports through the real daemon: a JUnit file with failures stops
//! VALIDATE and the record names the failing tests; a SARIF file with an
//! error-level finding fails the security review and the hotfix is denied. The reports are the
//! fixtures written by the real tools (cargo nextest, semgrep), copied into
//! place by the configured commands.

mod common;

use common::{token, Config, Harness};
use serde_json::json;

fn fixture(name: &str) -> String {
    format!("{}/../reports/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn markdown(d: &common::Daemon, id: &str) -> String {
    common::ok(d.api(&token("alice")).record_markdown(id), "the Markdown record")
}

#[test]
fn a_junit_report_with_failures_stops_validate_and_names_the_failing_tests() {
    let mut config = Config::default().principal("alice", &["deployer"]);
    let mut h = Harness::new(&config);
    let work = h.path("src");
    std::fs::create_dir_all(&work).expect("work dir");
    // cargo nextest exits 100 when tests fail; the report is what counts.
    config.extra = format!(
        "[services.web.suites.unit]\nargv = [\"sh\", \"-c\", \"cp {} junit.xml; exit 100\"]\ncwd = {:?}\n\
         junit = \"junit.xml\"\ncritical = true\ntimeout_seconds = 30\n",
        fixture("nextest-junit.xml"),
        work.display().to_string(),
    );
    h.configure(&config);
    let d = h.start();
    let record = d.submit(
        &token("alice"),
        &json!({"service": "web", "version": "1.4.0", "type": "standard", "strategy": "canary"}),
    );
    let id = record["id"].as_str().expect("id").to_string();
    let status = d.events(&id, &token("alice")).wait_finished();
    assert_eq!(status, "failed");
    let record = d.record(&id, &token("alice"));
    assert_eq!(common::stage(&record, "validate")["outcome"], "failed", "{record:#}");
    assert!(record["deploy_log"].is_null(), "nothing reached production: {record:#}");

    let text = markdown(&d, &id);
    for failing in ["tests::compares_with_markup", "tests::overflow_is_reported"] {
        assert!(text.contains(failing), "{failing} is not named in the record:\n{text}");
    }
    // The suite's row carries the real counts of the report.
    let report = &record["validation"];
    let unit = report["suites"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["name"] == "unit"))
        .unwrap_or_else(|| panic!("no unit suite in {report:#}"));
    assert_eq!(unit["failed"], 2, "{unit:#}");
}

#[test]
fn a_sarif_error_finding_fails_the_security_review_and_denies_approval() {
    let mut config = Config::default().principal("alice", &["deployer"]);
    let mut h = Harness::new(&config);
    let work = h.path("src");
    std::fs::create_dir_all(&work).expect("work dir");
    // semgrep exits 1 with --error when it finds something.
    config.extra = format!(
        "[services.web.scanner]\nargv = [\"sh\", \"-c\", \"cp {} scan.sarif; exit 1\"]\ncwd = {:?}\n\
         report = \"scan.sarif\"\n",
        fixture("semgrep.sarif"),
        work.display().to_string(),
    );
    h.configure(&config);
    let d = h.start();
    // A hotfix needs the security role's approval.
    let record = d.submit(
        &token("alice"),
        &json!({"service": "web", "version": "1.4.1", "type": "hotfix", "strategy": "canary",
                "changes": ["Patch the calculator"]}),
    );
    let id = record["id"].as_str().expect("id").to_string();
    let status = d.events(&id, &token("alice")).wait_finished();
    let record = d.record(&id, &token("alice"));
    assert_eq!(status, "rejected", "{record:#}");
    // Reviews run side by side and the first denial rejects: whichever role
    // decided, it denied on the failed security review.
    let approvals = record["approvals"].as_array().expect("approvals");
    let denial = approvals
        .iter()
        .find(|a| a["decision"] == "denied")
        .unwrap_or_else(|| panic!("no denial in {record:#}"));
    let security_review = denial["criteria"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["criterion"] == "Security review passed"))
        .unwrap_or_else(|| panic!("no security criterion in {denial:#}"));
    assert_eq!(security_review["met"], false, "{denial:#}");
    assert_eq!(security_review["detail"], "2 critical vulnerabilities", "{denial:#}");
    assert!(
        approvals.iter().all(|a| a["decision"] != "granted"),
        "nobody granted: {record:#}"
    );
    assert!(record["deploy_log"].is_null(), "nothing reached production: {record:#}");
    // Both critical findings (level error; security-severity 9.3) are listed, the others are not.
    let text = markdown(&d, &id);
    for rule in ["python-eval-call", "python-pickle-load"] {
        assert!(text.contains(rule), "{rule} is not listed:\n{text}");
    }
    assert!(
        !text.contains("python-print-call"),
        "a note-level finding is not critical:\n{text}"
    );
}
