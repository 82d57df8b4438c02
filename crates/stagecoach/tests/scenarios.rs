//! Runs every scenario in `tests/scenarios/` through the real `stagecoach
//! simulate` binary, the same code path a user runs, and checks the CLI's
//! contract: exit codes, error messages naming the field, JSON shape and
//! byte-for-byte reproducibility.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("workspace root")
}

fn stagecoach(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_stagecoach"))
        .args(args)
        .current_dir(workspace())
        .env_remove("STAGECOACH__THRESHOLDS__ERROR_RATE_ROLLBACK")
        .output()
        .expect("stagecoach runs")
}

fn scenarios() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(workspace().join("tests/scenarios"))
        .expect("tests/scenarios exists")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    files
}

#[test]
fn every_scenario_meets_its_expectations() {
    let files = scenarios();
    assert!(
        files.len() >= 25,
        "expected at least 25 scenarios, found {}",
        files.len()
    );
    let mut failures = vec![];
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        assert!(
            text.contains("expect_status"),
            "{} has no expect_status",
            file.display()
        );
        let out = stagecoach(&["simulate", file.to_str().unwrap(), "--json"]);
        if out.status.code() != Some(0) {
            failures.push(format!(
                "{}: exit {:?}\n{}",
                file.display(),
                out.status.code(),
                String::from_utf8_lossy(&out.stderr)
            ));
            continue;
        }
        let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("valid JSON");
        let records = doc["records"].as_array().expect("records array");
        assert!(!records.is_empty(), "{}: no records", file.display());
        for r in records {
            check_record_shape(file, r);
        }
    }
    assert!(
        failures.is_empty(),
        "{} scenario(s) failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn every_approver_of_a_hotfix_records_its_decision_when_one_denies() {
    let file = workspace().join("tests/scenarios/hotfix-critical-vulnerabilities-both-deny.toml");
    let out = stagecoach(&["simulate", file.to_str().unwrap(), "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("valid JSON");
    let record = &doc["records"][0];
    assert_eq!(record["status"], "rejected");
    let decisions: Vec<(String, String)> = record["approvals"]
        .as_array()
        .expect("approvals")
        .iter()
        .map(|a| {
            (
                a["role"].as_str().unwrap().to_string(),
                a["decision"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        decisions,
        [
            ("manager".to_string(), "denied".to_string()),
            ("security".to_string(), "denied".to_string())
        ],
        "{record}"
    );
    let security = &record["approvals"][1];
    let owned = security["criteria"]
        .as_array()
        .expect("criteria")
        .iter()
        .find(|c| c["criterion"] == "Security review passed")
        .expect("the Security review's criterion is recorded with its decision");
    assert_eq!(owned["met"], false, "{owned}");
}

#[test]
fn simulation_is_reproducible_byte_for_byte() {
    for file in &scenarios() {
        let a = stagecoach(&["simulate", file.to_str().unwrap(), "--json"]);
        let b = stagecoach(&["simulate", file.to_str().unwrap(), "--json"]);
        assert_eq!(a.stdout, b.stdout, "{} differs between runs", file.display());
    }
}

#[test]
fn a_typo_exits_2_naming_the_file_and_field() {
    let dir = std::env::temp_dir().join(format!("stagecoach-typo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("typo.toml");
    std::fs::write(
        &file,
        "start = \"2026-12-01T10:05:00Z\"\n[[requests]]\nservice = \"checkout\"\nversion = \"2.4.1\"\ntype = \"hotfx\"\nsubmitted_by = \"dana\"\n",
    )
    .unwrap();
    let out = stagecoach(&["simulate", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("typo.toml: requests[0].type: unknown variant \"hotfx\", expected one of standard, hotfix, rollback, scheduled"),
        "{err}"
    );
    assert!(out.stdout.is_empty());
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_failed_expectation_exits_1_and_says_which() {
    let dir = std::env::temp_dir().join(format!("stagecoach-expect-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("expect.toml");
    std::fs::write(
        &file,
        "start = \"2026-12-01T10:05:00Z\"\n[[requests]]\nservice = \"checkout\"\nversion = \"2.4.1\"\ntype = \"standard\"\nsubmitted_by = \"dana\"\nexpect_status = \"rolled_back\"\n[world]\ncurrent_version = \"2.4.0\"\n",
    )
    .unwrap();
    let out = stagecoach(&["simulate", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("requests[0]") && err.contains("expected status rolled_back, got succeeded"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn bad_configuration_exits_2_naming_the_key() {
    let dir = std::env::temp_dir().join(format!("stagecoach-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("bad.toml");
    std::fs::write(&config, "[thresholds]\nerror_rate_rollback = \"high\"\n").unwrap();
    let scenario = workspace().join("tests/scenarios/standard-canary-success.toml");
    let out = stagecoach(&[
        "simulate",
        scenario.to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.toml") && err.contains("error_rate_rollback"), "{err}");
    let out = stagecoach(&["simulate", "does-not-exist.toml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("does-not-exist.toml: cannot read"));
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn environment_overrides_reach_the_simulation() {
    // With the rollback threshold raised over the scripted 7 % error rate,
    // the release that would roll back succeeds instead.
    let dir = std::env::temp_dir().join(format!("stagecoach-env-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("spike.toml");
    std::fs::write(
        &file,
        "start = \"2026-12-01T10:05:00Z\"\n[[requests]]\nservice = \"checkout\"\nversion = \"2.4.1\"\ntype = \"standard\"\nsubmitted_by = \"dana\"\n[world]\ncurrent_version = \"2.4.0\"\n[[world.metrics]]\nminute = 12\nerror_rate = 0.07\n",
    )
    .unwrap();
    let run = |env: Option<&str>| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_stagecoach"));
        c.args(["simulate", file.to_str().unwrap(), "--json"]);
        if let Some(v) = env {
            c.env("STAGECOACH__THRESHOLDS__ERROR_RATE_ROLLBACK", v);
        }
        let out = c.output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
        let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        doc["records"][0]["status"].as_str().unwrap().to_string()
    };
    assert_eq!(run(None), "rolled_back");
    assert_eq!(run(Some("0.10")), "succeeded");
    std::fs::remove_dir_all(&dir).ok();
}

fn one_of(file: &Path, what: &str, v: &serde_json::Value, allowed: &[&str]) {
    let s = v
        .as_str()
        .unwrap_or_else(|| panic!("{}: {what} is not a string: {v}", file.display()));
    assert!(
        allowed.contains(&s),
        "{}: {what} = {s:?} is not one of {allowed:?}",
        file.display()
    );
}

/// `YYYY-MM-DDTHH:MM:SS` followed by `Z` or an offset.
fn timestamp(file: &Path, what: &str, v: &serde_json::Value) {
    let s = v
        .as_str()
        .unwrap_or_else(|| panic!("{}: {what} is not a string: {v}", file.display()));
    let b = s.as_bytes();
    let ok = b.len() >= 20
        && b[4] == b'-'
        && b[7] == b'-'
        && b[10] == b'T'
        && b[13] == b':'
        && b[16] == b':'
        && (s.ends_with('Z') || s[19..].contains('+') || s[19..].contains('-'));
    assert!(ok, "{}: {what} = {s:?} is not an RFC 3339 timestamp", file.display());
}

/// The RECORD contract of `simulate --json`: field names, value sets, timestamps.
fn check_record_shape(file: &Path, r: &serde_json::Value) {
    for key in [
        "id",
        "service",
        "type",
        "strategy",
        "submitted_by",
        "status",
        "markdown",
    ] {
        assert!(r[key].is_string(), "{}: record.{key} is not a string", file.display());
    }
    for key in ["version", "previous_version", "production_version"] {
        assert!(
            r[key].is_string() || r[key].is_null(),
            "{}: record.{key}",
            file.display()
        );
    }
    one_of(
        file,
        "type",
        &r["type"],
        &["standard", "hotfix", "rollback", "scheduled"],
    );
    one_of(file, "strategy", &r["strategy"], &["blue-green", "canary", "rolling"]);
    let statuses = [
        "succeeded",
        "rolled_back",
        "failed",
        "rejected",
        "escalated",
        "cancelled",
    ];
    one_of(file, "status", &r["status"], &statuses);
    let stages = [
        "prepare", "staging", "validate", "approve", "deploy", "monitor", "rollback",
    ];
    for s in r["stages"].as_array().expect("stages array") {
        one_of(file, "stages[].stage", &s["stage"], &stages);
        one_of(
            file,
            "stages[].outcome",
            &s["outcome"],
            &["passed", "failed", "skipped"],
        );
        timestamp(file, "stages[].started_at", &s["started_at"]);
        timestamp(file, "stages[].finished_at", &s["finished_at"]);
    }
    for a in r["approvals"].as_array().expect("approvals array") {
        one_of(
            file,
            "approvals[].role",
            &a["role"],
            &["manager", "security", "devops", "qa"],
        );
        one_of(
            file,
            "approvals[].decision",
            &a["decision"],
            &["granted", "denied", "refused", "timed_out"],
        );
        assert!(
            a["by"].is_string() && a["reason"].is_string(),
            "{}: approval by/reason",
            file.display()
        );
        timestamp(file, "approvals[].at", &a["at"]);
    }
    if !r["validation"].is_null() {
        for s in r["validation"]["suites"].as_array().expect("suites array") {
            assert!(s["name"].is_string(), "{}: validation.suites[].name", file.display());
            for k in ["passed", "failed", "skipped"] {
                assert!(s[k].is_u64(), "{}: validation.suites[].{k}", file.display());
            }
        }
        let rec = &r["validation"]["recommendation"];
        one_of(file, "validation.recommendation", rec, &["ready", "needs_fixes"]);
    }
    for a in r["alerts"].as_array().expect("alerts array") {
        one_of(
            file,
            "alerts[].action",
            &a["action"],
            &["investigate", "rollback", "scale"],
        );
        one_of(
            file,
            "alerts[].metric",
            &a["metric"],
            &["error_rate", "latency_p99", "cpu", "memory"],
        );
        assert!(
            a["value"].is_f64() && a["threshold"].is_f64(),
            "{}: alert value/threshold",
            file.display()
        );
        timestamp(file, "alerts[].at", &a["at"]);
    }
    if !r["rollback"].is_null() {
        let rb = &r["rollback"];
        let triggers = [
            "error_rate",
            "critical_functionality_broken",
            "security_vulnerability",
            "severe_performance_degradation",
            "deployment_failed",
            "manual",
        ];
        one_of(file, "rollback.trigger", &rb["trigger"], &triggers);
        assert!(rb["reason"].is_string(), "{}: rollback.reason", file.display());
        assert!(
            rb["migrations_reverted"].is_boolean(),
            "{}: rollback.migrations_reverted",
            file.display()
        );
        assert!(rb["restored_version"].is_string() || rb["restored_version"].is_null());
        timestamp(file, "rollback.initiated_at", &rb["initiated_at"]);
        timestamp(file, "rollback.completed_at", &rb["completed_at"]);
    }
    for e in r["escalations"].as_array().expect("escalations array") {
        assert!(
            e["reason"].is_string() && e["detail"].is_string(),
            "{}: escalation",
            file.display()
        );
        timestamp(file, "escalations[].at", &e["at"]);
    }
    let kinds = ["pre_deployment", "post_deployment", "rollback", "escalation"];
    for n in r["notifications"].as_array().expect("notifications array") {
        one_of(file, "notifications[].kind", &n["kind"], &kinds);
        assert!(n["subject"].is_string(), "{}: notification subject", file.display());
        timestamp(file, "notifications[].at", &n["at"]);
    }
    let timeline = r["timeline"].as_array().expect("timeline array");
    assert!(!timeline.is_empty(), "{}: empty timeline", file.display());
    for t in timeline {
        timestamp(file, "timeline[].at", &t["at"]);
        assert!(t["event"].is_string(), "{}: timeline[].event", file.display());
    }
    let markdown = r["markdown"].as_str().unwrap();
    assert!(markdown.contains("## Deployment Record"));
    // A simulation is labelled as one, and so is every result in it.
    assert!(
        markdown.starts_with("> Simulated run: every action below was simulated"),
        "{}: {markdown}",
        file.display()
    );
    let steps = r["deploy_log"]["steps"].as_array().into_iter().flatten();
    let rollback_steps = r["rollback"]["steps"].as_array().into_iter().flatten();
    for s in steps.chain(rollback_steps) {
        assert_eq!(s["simulated"], true, "{}: step {s}", file.display());
    }
    for s in r["monitoring"]["samples"].as_array().expect("samples array") {
        assert!(
            s["sample"].is_null() || s["sample"]["simulated"] == true,
            "{}: sample {s}",
            file.display()
        );
    }
    for s in r["validation"]["suites"].as_array().into_iter().flatten() {
        assert_eq!(s["simulated"], true, "{}: suite {s}", file.display());
    }
    if !r["security"].is_null() {
        assert_eq!(r["security"]["simulated"], true, "{}: security", file.display());
    }
    for i in r["checklist"].as_array().expect("checklist array") {
        let from_agents = i["source"]["by"]
            .as_str()
            .is_some_and(|by| by.starts_with("DevOps") || by.starts_with("Security"));
        if from_agents {
            assert_eq!(i["simulated"], true, "{}: checklist item {i}", file.display());
        }
    }
}

/// The complete real configuration in docs/configuration.md is one the
/// daemon accepts (its elided token hashes filled in).
#[test]
fn the_documented_real_configuration_is_valid() {
    let doc = std::fs::read_to_string(format!("{}/../../docs/configuration.md", env!("CARGO_MANIFEST_DIR")))
        .expect("docs/configuration.md");
    let section = doc
        .split("## A complete configuration for a real service")
        .nth(1)
        .expect("the section exists");
    let toml = section
        .split("```toml\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("a TOML block")
        .replace(
            "token_sha256 = \"…\"",
            &format!("token_sha256 = \"{}\"", "a".repeat(64)),
        );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("real.toml");
    std::fs::write(&path, toml).unwrap();
    let out = stagecoach(&["config", "--config", path.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "stagecoach config rejected the documented configuration: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let effective: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        effective["services"]["checkout"]["suites"]["unit"]["junit"],
        "target/nextest/ci/junit.xml"
    );
    assert_eq!(effective["services"]["checkout"]["metrics"]["provider"], "prometheus");
}
