//! Faulty agents, through the real daemon binary: hooks that die by a
//! signal, flood their output or are not installed; metrics sources that
//! answer garbage, too slowly or not at all; a webhook receiver that is
//! down during a rollback. Each ends on the documented path (rollback,
//! failure, escalation) with a record that says why, never stuck.

mod common;

use common::{is_fact, token, Config, Daemon, Harness};
use serde_json::{json, Value};

fn submit(d: &Daemon) -> String {
    let record = d.submit(
        &token("alice"),
        &json!({"service": "web", "version": "2.0.0", "type": "standard", "strategy": "canary"}),
    );
    record["id"].as_str().expect("id").to_string()
}

/// A harness for service `web` with `extra` TOML.
fn harness(extra: String) -> Harness {
    let mut h = Harness::bare();
    h.configure(
        &Config {
            extra,
            ..Config::default()
        }
        .principal("alice", &["deployer"]),
    );
    h
}

fn failed_steps(record: &Value) -> Vec<String> {
    record["deploy_log"]["steps"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|s| s["ok"] == false)
        .map(|s| s["detail"].as_str().unwrap_or_default().to_string())
        .collect()
}

fn action(name: &str, argv: &str) -> String {
    format!("[services.web.actions.{name}]\nargv = {argv}\ntimeout_seconds = 20\n\n")
}

#[test]
fn a_production_hook_killed_by_a_signal_rolls_back_and_says_which() {
    let script = "if [ \\\"$STAGECOACH_ENVIRONMENT\\\" = production ]; then kill -SEGV $$; fi";
    let mut h = harness(action("deploy", &format!("[\"sh\", \"-c\", \"{script}\"]")));
    let d = h.start();
    let id = submit(&d);
    assert_eq!(d.events(&id, &token("alice")).wait_finished(), "rolled_back");
    let record = d.record(&id, &token("alice"));
    let failed = failed_steps(&record);
    assert_eq!(failed.len(), 1, "{}", record["deploy_log"]);
    assert!(failed[0].contains("signal"), "the step names the signal: {failed:?}");
}

#[test]
fn a_hook_printing_a_gibibyte_keeps_memory_bounded() {
    // 1 GiB of output from the staging deploy; the command then succeeds.
    let flood = "[\"sh\", \"-c\", \"head -c 1073741824 /dev/zero | tr '\\\\000' x; echo; echo done\"]";
    let mut h = harness(action("deploy", flood));
    let d = h.start();
    let id = submit(&d);
    let mut events = d.events(&id, &token("alice"));
    events.wait_fact("staging to pass", |f| {
        is_fact(f, "stage_finished") && f["stage"] == "staging"
    });
    let status = std::fs::read_to_string(format!("/proc/{}/status", d.pid)).expect("the daemon's /proc status");
    let peak_kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM");
    println!("daemon peak RSS after 1 GiB of hook output: {} MiB", peak_kb / 1024);
    assert!(
        peak_kb < 200 * 1024,
        "peak RSS {peak_kb} kB: output must not be kept whole"
    );
    assert_eq!(events.wait_finished(), "succeeded", "{}", events.summary());
    let record = d.record(&id, &token("alice"));
    assert!(
        record.to_string().len() < 512 * 1024,
        "the record keeps a bounded tail, not the output"
    );
}

#[test]
fn a_hook_missing_from_path_fails_naming_service_action_and_program() {
    let mut h = harness(action("deploy", "[\"no-such-deploy-tool\", \"--now\"]"));
    let d = h.start();
    let id = submit(&d);
    assert_eq!(d.events(&id, &token("alice")).wait_finished(), "failed");
    let record = d.record(&id, &token("alice"));
    let text = record.to_string();
    assert!(text.contains("no-such-deploy-tool"), "{text}");
    let staging = common::stage(&record, "staging");
    assert_eq!(staging["outcome"], "failed", "{record:#}");
    let detail = record["timeline"]
        .as_array()
        .expect("timeline")
        .iter()
        .filter_map(|t| t["event"].as_str())
        .find(|e| e.contains("no-such-deploy-tool"))
        .unwrap_or_else(|| panic!("no timeline entry names the program: {record:#}"))
        .to_string();
    for needle in ["deploy", "not found"] {
        assert!(detail.contains(needle), "{needle:?} missing from {detail:?}");
    }
}

/// A deployment whose metrics cannot be read is held and escalated, with the reason.
fn metrics_fault(metrics: &str, expect_in_detail: &str) {
    let mut h = harness(format!("[services.web.metrics]\n{metrics}\n"));
    let d = h.start();
    let id = submit(&d);
    let mut events = d.events(&id, &token("alice"));
    assert_eq!(events.wait_finished(), "escalated", "{}", events.summary());
    let record = d.record(&id, &token("alice"));
    let escalation = &record["escalations"][0];
    assert_eq!(escalation["reason"], "metrics_inconclusive", "{record:#}");
    let text = record.to_string();
    assert!(text.contains(expect_in_detail), "{expect_in_detail:?} not in {text}");
    assert!(
        record["alerts"].as_array().is_none_or(|a| a.is_empty()),
        "no pass, no alert: {record:#}"
    );
}

#[test]
fn garbage_metrics_are_inconclusive() {
    metrics_fault(
        "provider = \"command\"\nargv = [\"sh\", \"-c\", \"echo 'error_rate: low'\"]\ntimeout_seconds = 5",
        "cannot read its output",
    );
}

#[test]
fn slow_metrics_are_inconclusive() {
    metrics_fault(
        "provider = \"command\"\nargv = [\"sleep\", \"30\"]\ntimeout_seconds = 1",
        "timed out",
    );
}

#[test]
fn an_unreachable_metrics_endpoint_is_inconclusive() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
    let port = closed.local_addr().expect("address").port();
    drop(closed);
    metrics_fault(
        &format!("provider = \"scrape\"\ntargets = [\"http://127.0.0.1:{port}/metrics\"]\ninterval_seconds = 1\ntimeout_seconds = 1"),
        &format!("127.0.0.1:{port}"),
    );
}

#[test]
fn a_webhook_receiver_that_is_down_does_not_block_a_rollback() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
    let port = closed.local_addr().expect("address").port();
    drop(closed);
    // The pre-deployment notice goes to the log (an undelivered one would,
    // rightly, stop the approval); what fails to arrive is the rollback notice.
    let mut h = Harness::bare();
    let hook = h.script(
        "deploy.sh",
        "if [ \"$STAGECOACH_ENVIRONMENT\" = production ]; then exit 3; fi\n",
    );
    let extra = format!(
        "{}[notify.channels.ops]\nkind = \"webhook\"\nurl = \"http://127.0.0.1:{port}/hook\"\ntimeout_seconds = 1\n\
         retries = 2\nbackoff_seconds = 0.1\n\n[notify.routes]\nrollback = [\"ops\"]\n\
         escalation = [\"ops\"]\npost_deployment = [\"ops\"]\n",
        action("deploy", &format!("[\"sh\", {:?}]", hook.display().to_string()))
    );
    h.configure(
        &Config {
            extra,
            ..Config::default()
        }
        .principal("alice", &["deployer"]),
    );
    let d = h.start();
    let id = submit(&d);
    let mut events = d.events(&id, &token("alice"));
    assert_eq!(events.wait_finished(), "rolled_back", "{}", events.summary());
    let notice = events.wait_fact("the rollback notice", |f| {
        is_fact(f, "notification") && f["kind"] == "rollback"
    });
    let record = d.record(&id, &token("alice"));
    assert_eq!(record["rollback"]["verified"], true, "{record:#}");
    assert!(record["rollback"]["completed_at"].is_string(), "{record:#}");
    let notification = common::facts(&notice)
        .into_iter()
        .find(|f| is_fact(f, "notification") && f["kind"] == "rollback")
        .expect("the notification fact")
        .clone();
    assert_eq!(notification["delivered"], false, "{notification:#}");
    assert!(
        notification["error"]
            .as_str()
            .is_some_and(|e| e.contains(&format!("127.0.0.1:{port}"))),
        "{notification:#}"
    );
}
