//! Crash anywhere: a deployment runs through the real daemon binary, which
//! aborts (SIGABRT, as abrupt as `kill -9`) right after its N-th journal
//! append (`STAGECOACH_FAULT_ABORT_AFTER_APPENDS`); a new daemon is started
//! on the same state dir, and the deployment must still end well:
//!
//! - it reaches its terminal status, with every stage in its record;
//! - the journal written before the crash is a prefix of the final one,
//!   entry for entry and hash for hash (no approval, alert or notification
//!   recorded before the crash is lost or changed), and the chain verifies;
//! - each production deploy call (one per canary weight, blue-green switch
//!   or rolling instance) ran at most once: attempt 1, or a re-run marked
//!   with a higher `STAGECOACH_ATTEMPT` only when the first was cut short;
//! - every notification reached the outbox, and a notification that went
//!   out twice went out under the same id (one file per id).
//!
//! By default every 6th position of each kind is tried. With
//! `STAGECOACH_SLOW_TESTS=1` (set by `.ci/run`) every position of a
//! standard canary deployment is tried, and every 3rd of the other kinds.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use client::wire::SubmitRequest;
use common::{is_fact, token, Config, Harness};
use serde_json::{json, Value};

const SLOW: &str = "STAGECOACH_SLOW_TESTS";
const ABORT: &str = "STAGECOACH_FAULT_ABORT_AFTER_APPENDS";
/// Kill points run side by side (each with its own daemon and state dir).
const PARALLEL: usize = 4;

fn slow() -> bool {
    std::env::var(SLOW).is_ok_and(|v| v == "1")
}

/// A kind of deployment to crash.
#[derive(Clone, Copy)]
struct Kind {
    name: &'static str,
    kind: &'static str,
    strategy: &'static str,
    stages: &'static [&'static str],
}

const ALL_STAGES: &[&str] = &["prepare", "staging", "validate", "approve", "deploy", "monitor"];

const STANDARD_CANARY: Kind = Kind {
    name: "standard canary",
    kind: "standard",
    strategy: "canary",
    stages: ALL_STAGES,
};
const OTHERS: &[Kind] = &[
    Kind {
        name: "standard blue-green",
        kind: "standard",
        strategy: "blue-green",
        stages: ALL_STAGES,
    },
    Kind {
        name: "standard rolling",
        kind: "standard",
        strategy: "rolling",
        stages: ALL_STAGES,
    },
    Kind {
        name: "hotfix canary",
        kind: "hotfix",
        strategy: "canary",
        stages: ALL_STAGES,
    },
];

/// A harness whose daemon runs `web` with a logging deploy hook and an outbox.
fn harness() -> Harness {
    let mut h = Harness::bare();
    let log = h.path("deploy.log");
    let hook = h.script(
        "deploy.sh",
        &format!(
            "echo \"$STAGECOACH_ENVIRONMENT w=$STAGECOACH_WEIGHT i=$STAGECOACH_INSTANCE c=$STAGECOACH_COLOUR \
             $STAGECOACH_VERSION $STAGECOACH_ATTEMPT\" >> '{}'\n",
            log.display()
        ),
    );
    let outbox = h.path("outbox");
    let mut config = Config {
        analysis_minutes: 0.02,
        checkpoint_minute: 0.02,
        standard_monitoring_minutes: 0.04,
        hotfix_monitoring_minutes: 0.04,
        ..Config::default()
    }
    .principal("alice", &["deployer"])
    .action("deploy", &hook);
    config.extra = format!(
        "[notify.channels.files]\nkind = \"outbox\"\ndir = {:?}\n\n[notify.routes]\n\
         pre_deployment = [\"files\"]\npost_deployment = [\"files\"]\nrollback = [\"files\"]\n\
         escalation = [\"files\"]\napproval_requested = [\"files\"]\n",
        outbox.display().to_string()
    );
    h.configure(&config);
    h
}

fn submit_body(kind: Kind) -> Value {
    json!({
        "service": "web",
        "version": "1.2.0",
        "type": kind.kind,
        "strategy": kind.strategy,
        "changes": ["Faster checkout"],
    })
}

fn journal(state: &Path) -> Vec<journal::Entry> {
    use journal::Store;
    journal::SqliteStore::open(&daemon::journal_path(state))
        .and_then(|s| s.all())
        .expect("read the journal")
}

/// How many journal entries a deployment of `kind` writes when nothing crashes.
fn clean_length(kind: Kind) -> usize {
    let mut h = harness();
    let mut d = h.start();
    let record = d.submit(&token("alice"), &submit_body(kind));
    let id = record["id"].as_str().expect("id").to_string();
    assert_eq!(d.events(&id, &token("alice")).wait_finished(), "succeeded");
    // Post-deployment notices are delivered after the status: wait until recorded.
    d.events(&id, &token("alice"))
        .wait_fact("the post-deployment notice", |f| {
            is_fact(f, "notification") && f["kind"] == "post_deployment"
        });
    d.terminate();
    journal(&h.state()).len()
}

/// One crash at `position`; returns a description of what was checked.
fn crash_at(kind: Kind, position: usize) -> String {
    let mut h = harness();
    h.env = vec![(ABORT.into(), position.to_string())];
    let mut d = h.start();
    // The abort may come before the answer (position 1 is the submission itself).
    let request: SubmitRequest = serde_json::from_value(submit_body(kind)).expect("a submission");
    let _ = d.api(&token("alice")).submit(&request);
    let status = d.wait_exit();
    assert!(
        !status.success(),
        "{} @{position}: the daemon should have aborted",
        kind.name
    );
    let before = journal(&h.state());
    assert_eq!(
        before.len(),
        position,
        "{} @{position}: entries when it aborted",
        kind.name
    );

    h.env.clear();
    let mut d = h.start();
    let id = "d-000001";
    let mut events = d.events(id, &token("alice"));
    let end = events.wait_finished();
    assert_eq!(
        end,
        "succeeded",
        "{} @{position}: entries:\n{}",
        kind.name,
        events.summary()
    );
    events.wait_fact("the post-deployment notice", |f| {
        is_fact(f, "notification") && f["kind"] == "post_deployment"
    });
    let record = d.record(id, &token("alice"));
    common::assert_stages_passed(&record, kind.stages);
    let verified = d.verify(id, &token("alice"));
    assert_eq!(verified["intact"], true, "{} @{position}: {verified}", kind.name);
    d.terminate();

    // Nothing written before the crash was lost or changed.
    let after = journal(&h.state());
    // (A crash after the last entry leaves nothing more to write.)
    assert!(after.len() >= before.len(), "{} @{position}", kind.name);
    for (b, a) in before.iter().zip(&after) {
        assert_eq!(
            (b.seq, &b.hash, &b.body),
            (a.seq, &a.hash, &a.body),
            "{} @{position}: entry {} changed",
            kind.name,
            b.seq
        );
    }

    // Each production deploy call ran once, or was re-run only as a later attempt.
    let log = std::fs::read_to_string(h.path("deploy.log")).unwrap_or_default();
    let mut runs: BTreeMap<String, Vec<u32>> = BTreeMap::new();
    for line in log.lines().filter(|l| l.starts_with("production ")) {
        let (call, attempt) = line.rsplit_once(' ').expect("a log line");
        runs.entry(call.to_string())
            .or_default()
            .push(attempt.parse().expect("an attempt number"));
    }
    assert!(!runs.is_empty(), "{} @{position}: no production deploy ran", kind.name);
    for (call, attempts) in &runs {
        let firsts = attempts.iter().filter(|a| **a == 1).count();
        assert!(
            firsts <= 1 && attempts.len() <= 2,
            "{} @{position}: {call} ran {attempts:?}",
            kind.name
        );
    }

    // Notifications: every recorded one is in the outbox, once per id.
    let recorded: BTreeSet<String> = record["notifications"]
        .as_array()
        .expect("notifications")
        .iter()
        .filter(|n| n["delivered"] == true)
        .filter_map(|n| n["id"].as_str().map(str::to_string))
        .collect();
    let mut files: BTreeMap<String, usize> = BTreeMap::new();
    for f in std::fs::read_dir(h.path("outbox")).expect("the outbox").flatten() {
        let text = std::fs::read_to_string(f.path()).expect("an outbox file");
        let id = text
            .lines()
            .find_map(|l| l.strip_prefix("- Notification: "))
            .and_then(|l| l.split(' ').next())
            .expect("the notification id")
            .to_string();
        *files.entry(id).or_default() += 1;
    }
    for id in &recorded {
        assert!(
            files.contains_key(id),
            "{} @{position}: {id} is not in the outbox",
            kind.name
        );
    }
    assert!(
        files.values().all(|n| *n == 1),
        "{} @{position}: one file per notification id: {files:?}",
        kind.name
    );
    format!("{} @{position}", kind.name)
}

/// Runs the crash points of every kind, `PARALLEL` at a time; returns how many survived.
fn run(points: Vec<(Kind, usize)>) -> usize {
    let next = AtomicUsize::new(0);
    let survived = Mutex::new(vec![]);
    std::thread::scope(|s| {
        for _ in 0..PARALLEL {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some((kind, position)) = points.get(i).copied() else {
                    return;
                };
                let done = crash_at(kind, position);
                survived.lock().unwrap_or_else(|e| e.into_inner()).push(done);
            });
        }
    });
    let survived = survived.into_inner().unwrap_or_else(|e| e.into_inner());
    survived.len()
}

#[test]
fn a_crash_at_any_journal_position_loses_nothing() {
    let every_canary = if slow() { 1 } else { 6 };
    let every_other = if slow() { 3 } else { 6 };
    let mut points = vec![];
    let canary_length = clean_length(STANDARD_CANARY);
    points.extend((1..=canary_length).step_by(every_canary).map(|p| (STANDARD_CANARY, p)));
    let mut lengths = vec![(STANDARD_CANARY.name, canary_length)];
    for kind in OTHERS {
        let length = clean_length(*kind);
        lengths.push((kind.name, length));
        // Start at 2: position 1 (the submission) is the same for every kind.
        points.extend((2..=length).step_by(every_other).map(|p| (*kind, p)));
    }
    let tried = points.len();
    let survived = run(points);
    println!("journal lengths: {lengths:?}; kill points tried: {tried}, survived: {survived}");
    assert_eq!(survived, tried);
    if slow() {
        assert!(tried >= 30, "at least 30 kill points in the full run, got {tried}");
    }
}
