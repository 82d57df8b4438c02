//! Storage faults, through the real daemon binary.
//!
//! A full disk: with `STAGECOACH_FAULT_JOURNAL_FULL_FILE`, every journal
//! write fails with SQLite's "database or disk is full" error while a flag
//! file exists. The daemon must refuse new work with a clear 503, keep
//! serving reads, pause the deployment in flight instead of acting without
//! recording, and carry on by itself once writing works again.
//!
//! A damaged journal file at start is reported, with what to do, and never
//! makes the daemon panic.

mod common;

use client::wire::{ListQuery, SubmitRequest};
use common::{expect_error, is_fact, ok, run_with_timeout, token, Config, Harness};
use serde_json::json;

#[test]
fn a_full_disk_pauses_the_daemon_and_it_resumes_by_itself() {
    let mut h = Harness::bare();
    let log = h.path("deploy.log");
    let hook = common::deploy_hook(&h, &log);
    let flag = h.path("disk-full");
    h.configure(
        &Config {
            analysis_minutes: 0.05,
            // The second service, `api`, has no [services.api]: simulated, not refused.
            extra: "[server]\nunknown_services = \"simulate\"\n".into(),
            ..Config::default()
        }
        .principal("alice", &["deployer"])
        .action("deploy", &hook),
    );
    h.env = vec![("STAGECOACH_FAULT_JOURNAL_FULL_FILE".into(), flag.display().to_string())];
    let d = h.start();
    let first = d.submit(
        &token("alice"),
        &json!({"service": "web", "version": "1.2.0", "strategy": "canary"}),
    );
    let id = first["id"].as_str().expect("id").to_string();
    let mut events = d.events(&id, &token("alice"));
    events.wait_fact("the canary step at 10%", |f| {
        is_fact(f, "deploy_step") && f["step"].as_str().is_some_and(|s| s.starts_with("Canary at 10%"))
    });

    // The disk fills up during the canary analysis.
    std::fs::write(&flag, "").expect("fill the disk");
    let api = d.api(&token("alice"));
    let refused = api.submit(&SubmitRequest {
        service: "api".into(),
        version: Some("3.0.0".into()),
        ..SubmitRequest::default()
    });
    let message = expect_error(refused, 503, "unavailable", "a submission while the disk is full");
    assert!(message.contains("disk is full"), "{message}");
    // Reads go on.
    ok(api.list_page(&ListQuery::default()), "list while the disk is full");
    ok(api.deployment(&id), "a record while the disk is full");

    // The deployment's next write (a sample) fails: it is paused, retried after
    // 1 s and then 2 s, and still paused; no production step runs meanwhile.
    d.logs
        .wait_for("deployments paused until the journal can be written", 2);
    let weights_while_full = common::production_weights(&log);
    assert_eq!(
        weights_while_full,
        ["10"],
        "nothing new reached production while the disk was full"
    );

    // Space again: the daemon carries on without help.
    std::fs::remove_file(&flag).expect("free the disk");
    assert_eq!(events.wait_finished(), "succeeded", "{}", events.summary());
    let record = d.record(&id, &token("alice"));
    common::assert_stages_passed(
        &record,
        &["prepare", "staging", "validate", "approve", "deploy", "monitor"],
    );
    let v = d.verify(&id, &token("alice"));
    assert_eq!(v["intact"], true, "{v}");
    // Each production weight exactly once: nothing that was running when the
    // writes failed is run again (only work whose answer was lost would be).
    let runs = common::deploy_runs(&log);
    let production: Vec<_> = runs.iter().filter(|r| r.environment == "production").collect();
    assert_eq!(production.len(), 3, "{runs:?}");
    for weight in ["10", "50", "100"] {
        let first_attempts = runs
            .iter()
            .filter(|r| r.environment == "production" && r.weight == weight && r.attempt == "1")
            .count();
        assert_eq!(first_attempts, 1, "weight {weight}: {runs:?}");
    }
    // New work is accepted again.
    let again = d.submit(&token("alice"), &json!({"service": "api", "version": "3.0.0"}));
    assert!(again["id"].is_string());
}

#[test]
fn a_damaged_journal_is_reported_without_a_panic() {
    for (name, damage) in [
        ("truncated", Damage::Truncate),
        ("overwritten with garbage", Damage::Garbage),
    ] {
        let mut h = Harness::new(&Config::default().principal("alice", &["deployer"]));
        let mut d = h.start();
        let record = d.submit(&token("alice"), &json!({"service": "web", "version": "1.0.0"}));
        let id = record["id"].as_str().expect("id").to_string();
        d.events(&id, &token("alice")).wait_finished();
        d.terminate();

        let journal = daemon::journal_path(&h.state());
        let bytes = std::fs::read(&journal).expect("the journal file");
        match damage {
            Damage::Truncate => std::fs::write(&journal, &bytes[..bytes.len() / 3]).expect("truncate"),
            Damage::Garbage => {
                let mut b = bytes.clone();
                for x in b.iter_mut().skip(100).step_by(7) {
                    *x ^= 0x5a;
                }
                std::fs::write(&journal, b).expect("scribble")
            }
        }
        let out = run_with_timeout(h.command(), "stagecoach daemon on a damaged journal");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "{name}: {stderr}");
        assert_eq!(out.status.code(), Some(2), "{name}: {stderr}");
        assert!(
            stderr.contains(&journal.display().to_string()),
            "{name}: the error names the file: {stderr}"
        );
        assert!(
            stderr.contains("restore it from a backup") || stderr.contains("move it aside"),
            "{name}: the error says what to do: {stderr}"
        );
    }
}

enum Damage {
    Truncate,
    Garbage,
}
