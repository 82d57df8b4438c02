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
            for key in [
                "id",
                "service",
                "version",
                "previous_version",
                "type",
                "strategy",
                "submitted_by",
                "status",
                "production_version",
                "stages",
                "approvals",
                "validation",
                "alerts",
                "rollback",
                "escalations",
                "notifications",
                "timeline",
                "markdown",
            ] {
                assert!(r.get(key).is_some(), "{}: record lacks {key}", file.display());
            }
            assert!(r["markdown"].as_str().unwrap().contains("## Deployment Record"));
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
fn simulation_is_reproducible_byte_for_byte() {
    for file in scenarios().iter().take(6) {
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
    assert!(err.contains("error_rate_rollback"), "{err}");
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
