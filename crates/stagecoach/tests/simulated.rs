//! Simulation is always labelled: the real daemon, a service without
//! commands and a service with some, their records (JSON and Markdown), the
//! `watch` output, the start-up log, and the refusal of a service that is
//! not configured.

mod common;

use std::process::Command;

use client::wire::SubmitRequest;
use common::{expect_error, run_with_timeout, token, Config, Daemon, Harness};
use serde_json::{json, Value};

fn alice() -> String {
    token("alice")
}

/// Runs the CLI against `d` as alice.
fn cli(h: &Harness, d: &Daemon, args: &[&str]) -> std::process::Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_stagecoach"));
    c.args(args)
        .args(["--server", &d.url, "--token", &alice()])
        .current_dir(h.dir.path())
        .env("NO_COLOR", "1")
        .env_remove("STAGECOACH_TOKEN");
    run_with_timeout(c, &format!("stagecoach {}", args.join(" ")))
}

fn items(v: &Value) -> Vec<Value> {
    v.as_array().cloned().unwrap_or_default()
}

/// The checklist item `key` of a record.
fn checklist_item(record: &Value, key: &str) -> Value {
    items(&record["checklist"])
        .into_iter()
        .find(|i| i["key"] == key)
        .unwrap_or_else(|| panic!("no checklist item {key} in {}", record["checklist"]))
}

fn deploy(d: &Daemon, service: &str) -> String {
    let submitted = d.submit(
        &alice(),
        &json!({"service": service, "version": "1.0.0", "strategy": "canary"}),
    );
    let id = submitted["id"].as_str().expect("id").to_string();
    let status = d.events(&id, &alice()).wait_finished();
    assert_eq!(status, "succeeded", "{service} ({id}) ended {status}");
    id
}

#[test]
fn simulated_results_are_labelled_and_commands_results_are_not() {
    let mut h = Harness::bare();
    let ok = h.script("ok.sh", "exit 0\n");
    // `web` runs real commands for its tests, deploy and health checks;
    // `shop` has none; `wbe` is not configured at all.
    h.configure(
        &Config {
            extra: "[services.shop]\n".into(),
            ..Config::default()
        }
        .principal("alice", &["deployer"])
        .action("tests", &ok)
        .action("deploy", &ok)
        .action("health", &ok),
    );
    let d = h.start();

    // At start, one line per service names what it simulates.
    h.logs.wait_for(
        "service shop: simulated (no command configured): tests, build, backup, migrate, deploy, health, smoke, \
         set_traffic, decommission, rollback, clear_cache, scan, validate, metrics",
        1,
    );
    h.logs.wait_for(
        "service web: simulated (no command configured): build, backup, migrate, smoke, set_traffic, \
         decommission, rollback, clear_cache, scan, validate, metrics",
        1,
    );

    // A service nobody configured is refused, with the closest name suggested.
    let unknown = SubmitRequest {
        service: "wbe".into(),
        version: Some("1.6.0".into()),
        ..SubmitRequest::default()
    };
    let message = expect_error(
        d.api(&alice()).submit(&unknown),
        422,
        "invalid",
        "a submission for an unknown service",
    );
    assert_eq!(
        message,
        "unknown service \"wbe\": configured services are shop, web; did you mean \"web\"?"
    );
    let out = cli(&h, &d, &["submit", "wbe", "1.6.0"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // The exit code of a refused request is item 6 of the same issue; here only that it fails.
    assert!(!out.status.success(), "submit wbe: {stderr}");
    assert!(stderr.contains("did you mean \"web\"?"), "{stderr}");

    let shop = deploy(&d, "shop");
    let web = deploy(&d, "web");

    // shop: every result came from the simulated world, and says so.
    let r = d.record(&shop, &alice());
    for key in ["all_tests_passing", "backup_verified", "no_critical_vulnerabilities"] {
        assert_eq!(checklist_item(&r, key)["simulated"], true, "{key}");
    }
    assert_eq!(r["security"]["simulated"], true);
    let suites = items(&r["validation"]["suites"]);
    assert!(
        !suites.is_empty() && suites.iter().all(|s| s["simulated"] == true),
        "{suites:?}"
    );
    let steps = items(&r["deploy_log"]["steps"]);
    assert!(
        !steps.is_empty() && steps.iter().all(|s| s["simulated"] == true),
        "{steps:?}"
    );
    let samples = items(&r["monitoring"]["samples"]);
    assert!(!samples.is_empty());
    assert!(samples.iter().all(|s| s["sample"]["simulated"] == true), "{samples:?}");
    // A first deployment has no version in production, so no baseline to label.
    assert!(r["monitoring"]["baseline"].is_null());
    let notifications = items(&r["notifications"]);
    assert!(!notifications.is_empty() && notifications.iter().all(|n| n["simulated"] == true));
    let md = r["markdown"].as_str().unwrap();
    for line in [
        "- [x] Backup verified (required) - verified by DevOps: backup restore test (simulated)\n",
        "- [x] All tests passing (required) - verified by DevOps: test run (simulated)\n",
        "- Critical vulnerabilities: 0 (simulated)\n",
        "- [x] Smoke tests pass (simulated)\n",
        "| unit (simulated) | 150 | 0 | 2 |\n",
        "- Error rate: 0.1% (simulated)\n",
    ] {
        assert!(md.contains(line), "{line:?} missing from the record of shop:\n{md}");
    }

    // web: what its commands answered is observed; the rest is simulated.
    let r = d.record(&web, &alice());
    assert_eq!(checklist_item(&r, "all_tests_passing")["simulated"], false);
    assert_eq!(checklist_item(&r, "backup_verified")["simulated"], true);
    let steps = items(&r["deploy_log"]["steps"]);
    let canary: Vec<&Value> = steps
        .iter()
        .filter(|s| s["step"].as_str().is_some_and(|s| s.starts_with("Canary at")))
        .collect();
    assert_eq!(canary.len(), 3, "{steps:?}");
    assert!(canary.iter().all(|s| s["simulated"] == false), "{steps:?}");
    assert!(r["staging"]["simulated"]
        .as_array()
        .is_some_and(|f| !f.iter().any(|f| f == "deployed" || f == "health_endpoints")));
    let md = r["markdown"].as_str().unwrap();
    for line in [
        "- [x] All tests passing (required) - verified by DevOps: test run\n",
        "- [x] Backup verified (required) - verified by DevOps: backup restore test (simulated)\n",
        "- [x] Application starts successfully\n",
        "- [x] Smoke tests pass (simulated)\n",
    ] {
        assert!(md.contains(line), "{line:?} missing from the record of web:\n{md}");
    }
    for line in md.lines().filter(|l| l.contains(" Canary at ")) {
        assert!(!line.contains("(simulated)"), "{line}");
    }

    // `watch` labels the simulated facts and samples too.
    let out = cli(&h, &d, &["watch", &shop]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "watch: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout
            .lines()
            .any(|l| l.contains("security scan: 0 critical vulnerabilities (simulated)")),
        "{stdout}"
    );
    assert!(
        stdout
            .lines()
            .any(|l| l.contains("sample ") && l.contains("(simulated) (")),
        "{stdout}"
    );
    let out = cli(&h, &d, &["watch", &web]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let canary_lines: Vec<&str> = stdout.lines().filter(|l| l.contains("step Canary at")).collect();
    assert!(!canary_lines.is_empty(), "{stdout}");
    assert!(canary_lines.iter().all(|l| !l.contains("(simulated)")), "{stdout}");
}

#[test]
fn without_services_every_service_is_accepted_and_the_log_says_it_is_simulated() {
    let mut h = Harness::new(&Config::default().principal("alice", &["deployer"]));
    let d = h.start();
    h.logs.wait_for(
        "services without [services.NAME] are accepted and simulated end to end (server.unknown_services = \"simulate\")",
        1,
    );
    let submitted = d.submit(&alice(), &json!({"service": "anything", "version": "1.0.0"}));
    assert_eq!(submitted["service"], "anything");
}
