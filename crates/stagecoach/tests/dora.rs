//! `stagecoach report dora` through the real binaries: deployments run to
//! their end on a real daemon, then the CLI lists every record through the
//! API and prints the four DORA figures, as JSON and as text; bad flags are
//! refused before the daemon is asked.

mod common;

use std::process::{Command, Output};

use chrono::{DateTime, Utc};
use client::wire::ReasonRequest;
use common::*;
use serde_json::{json, Value};

fn report(h: &Harness, d: &Daemon, args: &[&str]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_stagecoach"));
    c.args(["report", "dora"])
        .args(args)
        .args(["--server", &d.url, "--token", &token("alice")])
        .current_dir(h.dir.path())
        .env("NO_COLOR", "1")
        .env_remove("STAGECOACH_TOKEN");
    run_with_timeout(c, &format!("stagecoach report dora {}", args.join(" ")))
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).to_string()
}

/// `report dora --json ARGS`, which must succeed.
fn figures(h: &Harness, d: &Daemon, args: &[&str]) -> Value {
    let out = report(h, d, &[&["--json"][..], args].concat());
    assert_eq!(out.status.code(), Some(0), "{args:?}: {}", text(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{args:?}: not JSON ({e}): {}", text(&out.stdout)))
}

/// Seconds from `from` to `to`, with the milliseconds the figures keep.
fn seconds(from: &Value, to: &Value) -> f64 {
    (time(to) - time(from)).num_milliseconds() as f64 / 1000.0
}

/// Submitted to the end of the passed DEPLOY stage, in seconds.
fn lead_time(record: &Value) -> f64 {
    let deploy = stage(record, "deploy");
    assert_eq!(deploy["outcome"], "passed", "{deploy}");
    seconds(&record["submitted_at"], &deploy["finished_at"])
}

#[test]
fn report_dora_gives_the_figures_of_the_daemons_records() {
    let mut h = Harness::new(
        &Config {
            analysis_minutes: 0.02,
            checkpoint_minute: 0.02,
            standard_monitoring_minutes: 0.04,
            ..Config::default()
        }
        .principal("alice", &["deployer"]),
    );
    let d = h.start();
    let alice = token("alice");
    let submit = |service: &str, version: &str| {
        let record = d.submit(&alice, &json!({"service": service, "version": version}));
        record["id"].as_str().expect("an id").to_string()
    };
    // web 1.0.0 and api 2.0.0 side by side; web 1.1.0 waits for web's slot.
    let web1 = submit("web", "1.0.0");
    let api = submit("api", "2.0.0");
    let web2 = submit("web", "1.1.0");
    for id in [&web1, &api] {
        let mut events = d.events(id, &alice);
        assert_eq!(events.wait_finished(), "succeeded", "{id}:\n{}", events.summary());
    }
    // web 1.1.0 succeeds, then is rolled back by hand: a failed change, restored by its rollback.
    let mut events = d.events(&web2, &alice);
    assert_eq!(events.wait_finished(), "succeeded", "{}", events.summary());
    let reason = ReasonRequest {
        reason: Some("customers report errors".into()),
    };
    ok(d.api(&alice).rollback(&web2, &reason), "rollback after success");
    assert_eq!(events.wait_finished(), "rolled_back", "{}", events.summary());

    let records: Vec<Value> = [&web1, &api, &web2].iter().map(|id| d.record(id, &alice)).collect();
    let mut leads: Vec<f64> = records.iter().map(lead_time).collect();
    leads.sort_by(f64::total_cmp);
    let rollback = &records[2]["rollback"];
    let restore = seconds(&rollback["initiated_at"], &rollback["completed_at"]);

    // The default period: the last 30 days up to now.
    let before = Utc::now();
    let all = figures(&h, &d, &[]);
    let since: DateTime<Utc> = serde_json::from_value(all["period"]["since"].clone()).expect("since");
    let until: DateTime<Utc> = serde_json::from_value(all["period"]["until"].clone()).expect("until");
    assert!(until >= before && until <= Utc::now(), "{until}");
    assert_eq!(until - since, chrono::Duration::days(30));
    assert_eq!(all["service"], Value::Null);
    assert_eq!(
        all["deployment_frequency"],
        json!({"deployments": 2, "days": 30.0, "per_day": 2.0 / 30.0})
    );
    assert_eq!(
        all["lead_time"],
        json!({"deployments": 3, "median_seconds": leads[1], "p90_seconds": leads[2]})
    );
    assert_eq!(
        all["change_failure_rate"],
        json!({"reached_production": 3, "succeeded": 2, "failed": 1, "in_progress": 0, "rate": 1.0 / 3.0})
    );
    let ttr = &all["time_to_restore"];
    assert_eq!(
        (&ttr["failed_changes"], &ttr["restored"], &ttr["not_restored"]),
        (&json!(1), &json!(1), &json!(0))
    );
    assert_eq!(ttr["median_seconds"], json!(restore));
    assert_eq!(ttr["max_seconds"], json!(restore));
    assert_eq!(ttr["changes"][0]["id"], web2.as_str());
    assert_eq!(ttr["changes"][0]["restored_by"], Value::Null);

    // One service.
    let web = figures(&h, &d, &["--service", "web"]);
    assert_eq!(web["service"], "web");
    assert_eq!(web["deployment_frequency"]["deployments"], 1);
    assert_eq!(web["change_failure_rate"]["rate"], 0.5);
    assert_eq!(web["lead_time"]["deployments"], 2);
    let api_only = figures(&h, &d, &["--service", "api"]);
    assert_eq!(api_only["change_failure_rate"]["rate"], 0.0);
    assert_eq!(api_only["time_to_restore"]["failed_changes"], 0);
    assert_eq!(api_only["time_to_restore"]["median_seconds"], Value::Null);

    // A period without deployments: no figures, not NaN.
    let empty = figures(&h, &d, &["--since", "2020-01-01", "--until", "2020-01-30"]);
    assert_eq!(
        empty["period"],
        json!({"since": "2020-01-01T00:00:00Z", "until": "2020-01-31T00:00:00Z"})
    );
    assert_eq!(empty["deployment_frequency"]["deployments"], 0);
    assert_eq!(empty["deployment_frequency"]["per_day"], 0.0);
    assert_eq!(empty["lead_time"]["median_seconds"], Value::Null);
    assert_eq!(empty["change_failure_rate"]["rate"], Value::Null);
    assert_eq!(empty["time_to_restore"]["max_seconds"], Value::Null);

    // The text: one line per figure, with what it is based on.
    let out = report(&h, &d, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let table = text(&out.stdout);
    assert!(table.starts_with("DORA figures of all services from "), "{table}");
    for line in [
        "deployment frequency   2 (0.0667 per day)",
        "2 changes that reached production and succeeded",
        "3 changes whose DEPLOY passed, from submission (not commit) to the end of DEPLOY",
        "change failure rate    33.33% (1 of 3)",
        "1 of 1 failed change restored (0 not restored)",
    ] {
        assert!(table.contains(line), "{line:?} missing:\n{table}");
    }
    let out = report(&h, &d, &["--since", "2020-01-01", "--until", "2020-01-30"]);
    assert!(
        text(&out.stdout).contains("lead time for changes  no deployments"),
        "{}",
        text(&out.stdout)
    );

    // Bad flags: exit 2, the flag named, nothing asked of the daemon.
    for (args, message) in [
        (
            &["--since", "2026-02-30"][..],
            "error: --since: \"2026-02-30\" is neither a date YYYY-MM-DD nor an RFC 3339 time",
        ),
        (&["--until", "last week"][..], "error: --until: \"last week\""),
        (
            &["--since", "2026-03-02", "--until", "2026-03-01"][..],
            "error: --since 2026-03-02 (the period starts at 2026-03-02T00:00:00Z) is not before --until 2026-03-01",
        ),
        (
            &["--service", "web/../x"][..],
            "error: --service: service name \"web/../x\" is invalid",
        ),
    ] {
        let out = report(&h, &d, args);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.starts_with(message), "{args:?}: {stderr}");
        assert!(out.stdout.is_empty(), "{args:?}: {}", text(&out.stdout));
    }
}
