//! The daemon's `/metrics`, as Prometheus itself reads it: the real daemon
//! binary's exposition, idle and after a deployment, piped into
//! `promtool check metrics`, which must accept it without a complaint (no
//! parse error, no lint problem).
//!
//! Needs `promtool` (Debian: `apt-get install prometheus`, which ships it);
//! without it the test fails and says how to install it.

mod common;

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use common::{ok, token, Config, Harness};
use serde_json::json;

fn promtool() -> PathBuf {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join("promtool"))
        .chain([PathBuf::from("/usr/bin/promtool")])
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "promtool is not installed, and this test needs it to validate /metrics: install Debian's \
                 package with `apt-get install prometheus` (it ships /usr/bin/promtool)"
            )
        })
}

/// Runs `promtool check metrics` on `text`; fails on any complaint.
fn promtool_accepts(promtool: &PathBuf, text: &str, what: &str) {
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start promtool");
    child
        .stdin
        .take()
        .expect("promtool's stdin")
        .write_all(text.as_bytes())
        .expect("write /metrics to promtool");
    let out = child.wait_with_output().expect("promtool runs");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.trim().is_empty(),
        "promtool check metrics complains about /metrics of {what} ({}):\n{said}\n--- /metrics:\n{text}",
        out.status
    );
}

/// No sample value reads `-0` (or any other negative number: every metric here counts or sums durations).
fn assert_no_negative_values(text: &str) {
    for line in text.lines().filter(|l| !l.starts_with('#') && !l.is_empty()) {
        let value = line.rsplit(' ').next().unwrap_or_default();
        assert!(!value.starts_with('-'), "negative value in `{line}`:\n{text}");
    }
}

#[test]
fn promtool_accepts_the_daemons_metrics() {
    let promtool = promtool();
    let mut h = Harness::new(&Config::default().principal("alice", &["deployer"]));
    let d = h.start();

    let idle = ok(d.anonymous().metrics(), "GET /metrics");
    assert_no_negative_values(&idle);
    assert!(
        idle.contains("stagecoach_stage_duration_seconds_sum{stage=\"prepare\"} 0\n"),
        "{idle}"
    );
    promtool_accepts(&promtool, &idle, "an idle daemon");

    let alice = token("alice");
    let record = d.submit(&alice, &json!({"service": "web", "version": "1.0.0"}));
    let id = record["id"].as_str().expect("an id").to_string();
    let mut events = d.events(&id, &alice);
    assert_eq!(events.wait_finished(), "succeeded", "{}", events.summary());

    let busy = ok(d.anonymous().metrics(), "GET /metrics");
    assert_no_negative_values(&busy);
    assert!(
        busy.contains("stagecoach_stage_duration_seconds_count{stage=\"monitor\"} 1\n"),
        "{busy}"
    );
    assert!(
        busy.contains("stagecoach_deployments{status=\"succeeded\"} 1\n"),
        "{busy}"
    );
    promtool_accepts(&promtool, &busy, "a daemon after a deployment");
}
