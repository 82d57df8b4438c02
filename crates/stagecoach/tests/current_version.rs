//! `current_version`: the real daemon asks a service's own command what
//! runs in production, at start and when a deployment gets its production
//! slot. While it agrees with the journal, releases go out; when production
//! runs something the journal does not know, the next deployment is held
//! before DEPLOY and escalated, naming both versions.

mod common;

use std::path::Path;

use common::*;
use serde_json::{json, Value};

fn alice() -> String {
    token("alice")
}

/// Submits a canary release of `web` and waits until it ends; returns its record.
fn release(d: &Daemon, version: &str) -> Value {
    let submitted = d.submit(
        &alice(),
        &json!({"service": "web", "version": version, "strategy": "canary"}),
    );
    let id = submitted["id"].as_str().expect("an id").to_string();
    let mut events = d.events(&id, &alice());
    events.wait_finished();
    // The record changes no more once its last notice is recorded.
    events.wait_fact("a notification recorded", |f| is_fact(f, "notification"));
    d.record(&id, &alice())
}

/// The versions the deploy hook put into production, in order.
fn production_versions(log: &Path) -> Vec<String> {
    deploy_runs(log)
        .into_iter()
        .filter(|r| r.environment == "production" && r.weight == "100")
        .map(|r| r.version)
        .collect()
}

#[test]
fn releases_go_out_while_current_version_agrees_and_are_held_when_it_does_not() {
    let mut h = Harness::bare();
    let log = h.path("deploy.log");
    let running = h.path("running");
    // The service's own record of what runs: what the last canary at 100 % installed.
    let deploy = h.script(
        "deploy.sh",
        &format!(
            "echo \"$STAGECOACH_ENVIRONMENT $STAGECOACH_WEIGHT $STAGECOACH_ATTEMPT $STAGECOACH_VERSION\" >> '{log}'\n\
             if [ \"$STAGECOACH_ENVIRONMENT\" = production ] && [ \"$STAGECOACH_WEIGHT\" = 100 ]; then\n\
             echo \"$STAGECOACH_VERSION\" > '{running}'\n\
             fi\n",
            log = log.display(),
            running = running.display()
        ),
    );
    let asked = h.path("asked.log");
    let current_version = h.script(
        "current-version.sh",
        &format!(
            "echo \"asked about $STAGECOACH_SERVICE in $STAGECOACH_ENVIRONMENT\" >&2\n\
             echo asked >> '{asked}'\n\
             if [ -f '{running}' ]; then cat '{running}'; fi\n",
            running = running.display(),
            asked = asked.display()
        ),
    );
    let times_asked = || std::fs::read_to_string(&asked).map_or(0, |t| t.lines().count());
    h.configure(
        &Config::default()
            .principal("alice", &["deployer"])
            .action("deploy", &deploy)
            .action("current_version", &current_version),
    );
    let mut d = h.start();
    // At start: nothing runs, and the journal knows of nothing either.
    h.logs.wait_for(
        "service web: `current_version` says nothing runs in production; the journal agrees",
        1,
    );

    assert_eq!(times_asked(), 1, "asked once at start");

    // (a) It agrees: the first release, then the next one over it.
    let first = release(&d, "1.2.0");
    assert_eq!(first["status"], "succeeded", "{first}");
    // Asked when the release got its slot, before DEPLOY; not at its submission.
    assert_eq!(times_asked(), 2, "asked at start and at the slot only");
    let second = release(&d, "1.3.0");
    assert_eq!(second["status"], "succeeded", "{second}");
    assert_eq!(second["previous_version"], "1.2.0");
    assert!(
        second["escalations"].as_array().is_some_and(|e| e.is_empty()),
        "{second}"
    );
    assert_eq!(production_versions(&log), ["1.2.0", "1.3.0"]);

    // Someone changes production behind the daemon's back; a restarted daemon sees it at once.
    d.terminate();
    std::fs::write(&running, "1.3.1\n").expect("change production by hand");
    let d = h.start();
    h.logs.wait_for(
        "service web: at start, production of web runs 1.3.1 by `current_version`, but the journal says 1.3.0",
        1,
    );

    // (b) It disagrees: the release is held before DEPLOY and escalated, naming both versions.
    let held = release(&d, "1.4.0");
    assert_eq!(held["status"], "escalated", "{held}");
    assert!(held["deploy_log"].is_null(), "nothing deployed: {}", held["deploy_log"]);
    let stages: Vec<&str> = held["stages"]
        .as_array()
        .expect("stages")
        .iter()
        .filter_map(|s| s["stage"].as_str())
        .collect();
    assert_eq!(stages, ["prepare", "staging", "validate", "approve"], "{held}");
    let escalations = held["escalations"].as_array().expect("escalations");
    assert_eq!(escalations.len(), 1, "{held}");
    assert_eq!(escalations[0]["reason"], "production_mismatch");
    let detail = escalations[0]["detail"].as_str().expect("a detail");
    assert!(
        detail.starts_with("production of web runs 1.3.1 by `current_version`, but the journal says 1.3.0;"),
        "{detail}"
    );
    let markdown = held["markdown"].as_str().expect("the Markdown record");
    assert!(
        markdown.contains("runs 1.3.1 by `current_version`, but the journal says 1.3.0"),
        "{markdown}"
    );
    assert!(
        !timeline_with(&held, "Held before DEPLOY").is_empty(),
        "{}",
        held["timeline"]
    );
    assert_eq!(
        production_versions(&log),
        ["1.2.0", "1.3.0"],
        "1.4.0 never reached production: {:?}",
        deploy_runs(&log)
    );

    // Production brought back to what the journal says: the next release goes out.
    std::fs::write(&running, "1.3.0\n").expect("restore production");
    let after = release(&d, "1.4.0");
    assert_eq!(after["status"], "succeeded", "{after}");
    assert_eq!(after["previous_version"], "1.3.0");
    assert_eq!(production_versions(&log), ["1.2.0", "1.3.0", "1.4.0"]);
}

#[test]
fn a_current_version_that_fails_holds_the_release_with_its_reason() {
    let mut h = Harness::bare();
    let broken = h.script(
        "current-version.sh",
        "echo 'cannot reach the cluster: connection refused' >&2\nexit 3\n",
    );
    h.configure(
        &Config::default()
            .principal("alice", &["deployer"])
            .principal("oncall", &["devops"])
            .action("current_version", &broken),
    );
    let mut d = h.start();
    h.logs
        .wait_for("service web: at start, `current_version` could not say what runs", 1);

    let held = release(&d, "1.0.0");
    assert_eq!(held["status"], "escalated", "{held}");
    assert!(held["deploy_log"].is_null(), "nothing deployed: {}", held["deploy_log"]);
    let detail = held["escalations"][0]["detail"].as_str().expect("a detail");
    assert!(
        detail.starts_with(
            "`current_version` could not say what runs in production of web (the journal says nothing): \
             current_version failed: exit 3"
        ),
        "{detail}"
    );
    assert!(detail.contains("connection refused"), "{detail}");
    assert!(detail.contains("not deploying blind"), "{detail}");

    // The one on call acknowledges it with a note, which the journal keeps: the record shows it
    // after a restart, in its JSON, its Markdown and its timeline.
    let id = held["id"].as_str().expect("an id").to_string();
    let note = "cluster API restored by the platform team; resubmitting";
    let acked = ok(
        d.api(&token("oncall")).acknowledge(
            &format!("{id}-e1"),
            &client::wire::AckRequest {
                note: Some(note.to_string()),
            },
        ),
        "acknowledge with a note",
    );
    let acked = json_of(&acked);
    assert_eq!(acked["escalations"][0]["acknowledged_by"], "oncall", "{acked}");
    assert_eq!(acked["escalations"][0]["acknowledgement_note"], note, "{acked}");
    d.terminate();
    let d = h.start();
    let after = d.record(&id, &alice());
    assert_eq!(after["escalations"][0]["acknowledgement_note"], note, "{after}");
    let markdown = after["markdown"].as_str().expect("the Markdown record");
    assert!(markdown.contains(&format!(": {note})")), "{markdown}");
    assert!(
        !timeline_with(&after, &format!("acknowledged by oncall: {note}")).is_empty(),
        "{}",
        after["timeline"]
    );
}
