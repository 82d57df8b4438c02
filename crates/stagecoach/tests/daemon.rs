//! Integration tests of `stagecoach daemon`: the real binary, started on
//! 127.0.0.1 with its own state dir and port, driven only over HTTP (and the
//! CLI where noted). Waits follow the deployment's event stream or a hook's
//! FIFO; every wait has an overall timeout. Crash tests `kill -9` the daemon
//! and restart it on the same state dir.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use client::wire::{Decision, ListQuery, ReasonRequest, SubmitRequest};
use common::*;
use serde_json::{json, Value};

const STANDARD_STAGES: &[&str] = &["prepare", "staging", "validate", "approve", "deploy", "monitor"];

fn alice() -> String {
    token("alice")
}

fn bob() -> String {
    token("bob")
}

/// The id (`d-000001`) of a record.
fn id_of(record: &Value) -> String {
    record["id"].as_str().expect("record id").to_string()
}

/// Asserts `GET /verify` reports the chain intact.
fn assert_intact(d: &Daemon, id: &str) {
    let v = d.verify(id, &alice());
    assert_eq!(v["intact"], true, "journal of {id} is not intact: {v}");
    assert!(v["problems"].as_array().is_some_and(|p| p.is_empty()), "{v}");
    assert!(v["entries"].as_u64().unwrap_or(0) > 5, "{v}");
}

/// Production weights 10, 50 and 100, each deployed exactly once.
fn assert_each_weight_once(log: &std::path::Path) {
    assert_eq!(
        production_weights(log),
        ["10", "50", "100"],
        "production deploy runs (environment weight attempt version): {:?}",
        deploy_runs(log)
    );
}

#[test]
fn standard_deployment_with_human_manager_approval_end_to_end() {
    let mut h = Harness::bare();
    let log = h.path("deploy.log");
    let hook = deploy_hook(&h, &log);
    h.configure(
        &Config {
            manager_human: true,
            ..Config::default()
        }
        .principal("alice", &["deployer"])
        .principal("bob", &["manager"])
        .action("deploy", &hook),
    );
    let d = h.start();

    let submitted = d.submit(
        &alice(),
        &json!({"service": "web", "version": "1.2.0", "strategy": "canary", "changes": ["faster pages"]}),
    );
    let id = id_of(&submitted);
    assert_eq!(id, "d-000001");
    assert_eq!(submitted["submitted_by"], "alice");
    assert_eq!(submitted["type"], "standard");
    assert_eq!(submitted["strategy"], "canary");

    let mut events = d.events(&id, &alice());
    events.wait_status("awaiting_approval");
    let approved = ok(
        d.decide(&id, &bob(), &approval("manager", Decision::Approve, Some("looks good"))),
        "bob approves",
    );
    assert!(
        approvals(&approved).contains(&("manager".into(), "granted".into(), "bob".into())),
        "{}",
        approved["approvals"]
    );
    let status = events.wait_finished();
    assert_eq!(status, "succeeded", "entries:\n{}", events.summary());
    // The record changes no more once the post-deployment notice is recorded.
    events.wait_fact("the post-deployment notice recorded", |f| {
        is_fact(f, "notification") && f["kind"] == "post_deployment"
    });

    let record = d.record(&id, &alice());
    assert_eq!(record["status"], "succeeded");
    assert_eq!(record["production_version"], "1.2.0");
    assert_eq!(
        approvals(&record),
        [("manager".to_string(), "granted".to_string(), "bob".to_string())]
    );
    assert_stages_passed(&record, STANDARD_STAGES);
    assert_eq!(staging_runs(&log), 1, "staging deploy runs: {:?}", deploy_runs(&log));
    assert_each_weight_once(&log);
    assert!(
        deploy_runs(&log)
            .iter()
            .all(|r| r.attempt == "1" && r.version == "1.2.0"),
        "{:?}",
        deploy_runs(&log)
    );
    let steps: Vec<&str> = record["deploy_log"]["steps"]
        .as_array()
        .expect("deploy_log.steps")
        .iter()
        .filter_map(|s| s["step"].as_str())
        .collect();
    assert!(
        steps.iter().any(|s| s.starts_with("Canary at 100%")),
        "deploy steps: {steps:?}"
    );

    let md = ok(d.api(&alice()).record_markdown(&id), "GET record.md");
    assert!(md.contains("bob"), "record.md does not name the approver:\n{md}");
    assert!(md.contains("1.2.0") && md.contains("web"), "{md}");
    assert!(md.trim_start().starts_with('#'), "not Markdown:\n{md}");
    assert_eq!(md, record["markdown"].as_str().unwrap_or_default());
    assert_intact(&d, &id);
}

#[test]
fn every_error_code() {
    let mut h = Harness::new(
        &Config::default()
            .principal("alice", &["deployer"])
            .principal("bob", &["manager"])
            .principal("quinn", &["qa"]),
    );
    let d = h.start();
    let valid = SubmitRequest {
        service: "web".into(),
        version: Some("1.0.0".into()),
        ..SubmitRequest::default()
    };

    // 401: no header, unknown token, not a bearer token.
    expect_error(
        d.anonymous().submit(&valid),
        401,
        "unauthorized",
        "no Authorization header",
    );
    let unknown_token = d.api("not-a-known-token");
    expect_error(
        unknown_token.list_page(&ListQuery::default()),
        401,
        "unauthorized",
        "unknown token",
    );
    expect_error(
        unknown_token.submit(&valid),
        401,
        "unauthorized",
        "unknown token on submit",
    );
    // 403: a principal without the deployer role submits.
    expect_error(
        d.api(&token("quinn")).submit(&valid),
        403,
        "forbidden",
        "qa-only principal submits",
    );
    // 404: unknown deployment, unknown route.
    let api = d.api(&alice());
    expect_error(api.deployment("d-000099"), 404, "not_found", "unknown id");
    expect_error(api.verify("99"), 404, "not_found", "verify of an unknown id");
    d.get("/v1/no-such-route", &alice())
        .expect_error(404, "not_found", "unknown route");
    // 400: malformed JSON, unknown field (raw: the typed client sends neither).
    d.request(
        "POST",
        "/v1/deployments",
        Some(&alice()),
        Some(b"{\"service\": \"web\",".to_vec()),
    )
    .expect_error(400, "bad_request", "malformed JSON");
    d.request("POST", "/v1/deployments", Some(&alice()), Some(b"{bad".to_vec()))
        .expect_error(400, "bad_request", "malformed JSON");
    let unknown = json!({"service": "web", "version": "1.0.0", "colour": "red"});
    let message = d
        .post("/v1/deployments", &alice(), &unknown)
        .expect_error(400, "bad_request", "unknown field");
    assert!(message.contains("colour"), "the message names the field: {message}");
    // 413: a 2 MiB body.
    let mut big = b"{\"service\": \"web\", \"version\": \"1.0.0\", \"changes\": [\"".to_vec();
    big.extend(std::iter::repeat_n(b'a', 2 << 20));
    big.extend_from_slice(b"\"]}");
    d.request("POST", "/v1/deployments", Some(&alice()), Some(big))
        .expect_error(413, "too_large", "2 MiB body");
    // 422: bad service name, unknown type.
    let bad_service = SubmitRequest {
        service: "../etc".into(),
        ..valid.clone()
    };
    let message = expect_error(api.submit(&bad_service), 422, "invalid", "service ../etc");
    assert!(message.contains("service"), "{message}");
    let bad_type = SubmitRequest {
        kind: Some("hotfx".into()),
        ..valid.clone()
    };
    let message = expect_error(api.submit(&bad_type), 422, "invalid", "type hotfx");
    assert!(message.contains("hotfx"), "{message}");
    // Nothing so far created a deployment.
    let list = d.list(&alice(), None, None);
    assert_eq!(list["deployments"].as_array().map(Vec::len), Some(0), "{list}");

    // One real deployment (manager agent decides automatically).
    let record = d.submit(&alice(), &json!({"service": "web", "version": "1.0.0"}));
    let id = id_of(&record);
    let mut events = d.events(&id, &alice());
    // 422: reject without a reason, a decision that is neither approve nor reject (raw).
    expect_error(
        d.decide(&id, &bob(), &approval("manager", Decision::Reject, None)),
        422,
        "invalid",
        "reject without reason",
    );
    d.post(
        &format!("/v1/deployments/{id}/approvals"),
        &bob(),
        &json!({"role": "manager", "decision": "maybe", "reason": "x"}),
    )
    .expect_error(422, "invalid", "unknown decision");
    d.request(
        "POST",
        &format!("/v1/deployments/{id}/approvals"),
        Some(&bob()),
        Some(b"[1, 2".to_vec()),
    )
    .expect_error(400, "bad_request", "malformed approval body");
    assert_eq!(events.wait_finished(), "succeeded", "entries:\n{}", events.summary());
    // 409: cancel after the deployment succeeded; approve when nothing is pending.
    let too_late = ReasonRequest {
        reason: Some("too late".into()),
    };
    expect_error(api.cancel(&id, &too_late), 409, "conflict", "cancel after success");
    expect_error(
        d.decide(&id, &bob(), &approval("manager", Decision::Approve, None)),
        409,
        "conflict",
        "approve with nothing pending",
    );

    // After all the bad requests: still exactly one deployment, unchanged.
    let list = d.list(&alice(), None, None);
    let all = list["deployments"].as_array().expect("deployments");
    assert_eq!(all.len(), 1, "{list}");
    let record = d.record(&id, &alice());
    assert_eq!(record["status"], "succeeded");
    assert!(
        approvals(&record).iter().all(|(_, decision, _)| decision == "granted"),
        "a bad request changed the approvals: {}",
        record["approvals"]
    );
    assert_intact(&d, &id);
}

/// Every error answer is `{"error": {"code", "message"}}`, including a
/// query string that does not parse (`after` must be a sequence number).
#[test]
fn a_malformed_query_string_gets_a_json_error() {
    let mut h = Harness::new(&Config::default().principal("alice", &["deployer"]));
    let d = h.start();
    let bogus = ListQuery {
        status: Some("bogus".into()),
        ..ListQuery::default()
    };
    expect_error(
        d.api(&alice()).list_page(&bogus),
        422,
        "invalid",
        "unknown status filter",
    );
    // Raw: the typed client sends `after` only as a number.
    let resp = d.get("/v1/events?after=abc", &alice());
    assert_eq!(resp.status, 400, "{}", resp.text);
    assert!(
        serde_json::from_str::<Value>(&resp.text).is_ok_and(|v| v["error"]["code"] == "bad_request"),
        "GET /v1/events?after=abc answers 400 without the JSON error body: {:?}",
        resp.text
    );
}

#[test]
fn wrong_role_and_self_approval_are_refused_and_journaled() {
    let mut h = Harness::new(
        &Config {
            manager_human: true,
            ..Config::default()
        }
        .principal("alice", &["deployer"])
        .principal("bob", &["manager"])
        .principal("dave", &["deployer", "manager"]),
    );
    let d = h.start();
    let dave = token("dave");
    let record = d.submit(&dave, &json!({"service": "web", "version": "2.0.0"}));
    let id = id_of(&record);
    assert_eq!(record["submitted_by"], "dave");
    let mut events = d.events(&id, &dave);
    events.wait_status("awaiting_approval");

    let approve = approval("manager", Decision::Approve, None);
    expect_error(
        d.decide(&id, &alice(), &approve),
        403,
        "forbidden",
        "alice (deployer only) approves as manager",
    );
    expect_error(
        d.decide(&id, &dave, &approve),
        403,
        "forbidden",
        "dave approves his own deployment",
    );

    let record = d.record(&id, &dave);
    let refused: Vec<(String, String, String)> = approvals(&record)
        .into_iter()
        .filter(|(_, decision, _)| decision == "refused")
        .collect();
    assert_eq!(
        refused,
        [
            ("manager".to_string(), "refused".to_string(), "alice".to_string()),
            ("manager".to_string(), "refused".to_string(), "dave".to_string()),
        ],
        "approvals: {}",
        record["approvals"]
    );
    assert_eq!(record["status"], "awaiting_approval");
    assert_eq!(record["pending_approvals"][0]["role"], "manager", "{record}");

    // The record and `status` show the approval pending, the refusals under it.
    let md = ok(d.api(&dave).record_markdown(&id), "GET record.md");
    assert!(md.contains("### Approval: PENDING\n"), "{md}");
    assert!(!md.contains("REFUSED"), "{md}");
    assert!(
        md.contains("### Refused Attempts\n- ") && md.contains(" dave: dave submitted this deployment"),
        "{md}"
    );
    let out = cli(&h, &d, &dave, &["status", &id]);
    let status = text(&out.stdout);
    assert!(
        status.contains(&format!(
            "waiting for approval by manager: stagecoach approve {id} --role manager"
        )),
        "{status}"
    );
    assert!(status.contains("    refused: dave at "), "{status}");

    ok(d.decide(&id, &bob(), &approve), "bob approves");
    assert_eq!(events.wait_finished(), "succeeded", "entries:\n{}", events.summary());
    let record = d.record(&id, &dave);
    assert_eq!(
        approvals(&record),
        [
            ("manager".to_string(), "refused".to_string(), "alice".to_string()),
            ("manager".to_string(), "refused".to_string(), "dave".to_string()),
            ("manager".to_string(), "granted".to_string(), "bob".to_string()),
        ]
    );
    assert_intact(&d, &id);
}

/// A harness for the queue tests: manager auto, 12 s of monitoring, a deploy hook.
fn queue_harness() -> (Harness, std::path::PathBuf) {
    let mut h = Harness::bare();
    let log = h.path("deploy.log");
    let hook = deploy_hook(&h, &log);
    h.configure(
        &Config {
            standard_monitoring_minutes: 0.2,
            ..Config::default()
        }
        .principal("alice", &["deployer"])
        .action("deploy", &hook),
    );
    (h, log)
}

/// Submits web 1.1.0, waits until it is in DEPLOY (canary at 10%), submits web 1.2.0 and
/// waits until that is queued behind it. Returns both ids and their streams.
fn submit_two_and_wait_queued(d: &Daemon) -> (String, String, Events, Events) {
    let first = id_of(&d.submit(&alice(), &json!({"service": "web", "version": "1.1.0"})));
    let mut first_events = d.events(&first, &alice());
    // In the canary analysis at 10%: no production command is running (a crash
    // test kills the daemon now, and a command interrupted mid-run is re-run).
    first_events.wait_fact("1.1.0's canary step at 10%", |f| {
        is_fact(f, "deploy_step") && f["step"].as_str().is_some_and(|s| s.starts_with("Canary at 10%"))
    });
    let second = id_of(&d.submit(&alice(), &json!({"service": "web", "version": "1.2.0"})));
    let mut second_events = d.events(&second, &alice());
    // The submission itself is journaled with status queued; wait for the one after APPROVE.
    second_events.wait_for("1.2.0 queued after APPROVE", |e| {
        let approved = facts(e)
            .iter()
            .any(|f| is_fact(f, "stage_finished") && f["stage"] == "approve");
        let ended = statuses(e).into_iter().find(|s| TERMINAL.contains(&s.as_str()));
        assert!(ended.is_none(), "1.2.0 ended with {ended:?} instead of waiting");
        (approved && statuses(e).last().map(String::as_str) == Some("queued")).then_some(())
    });
    (first, second, first_events, second_events)
}

/// 1.1.0 is in DEPLOY or MONITOR and 1.2.0 is listed as queued.
fn assert_second_is_queued(d: &Daemon, first: &str, second: &str) {
    let running = d.record(first, &alice());
    assert_eq!(running["status"], "in_progress", "{}", running["status"]);
    let current = running["stages"].as_array().and_then(|s| s.last()).expect("a stage");
    assert!(
        (current["stage"] == "deploy" || current["stage"] == "monitor") && current["finished_at"].is_null(),
        "1.1.0 should be in DEPLOY or MONITOR while 1.2.0 is queued: {}",
        running["stages"]
    );
    let queued = d.list(&alice(), Some("web"), Some("queued"));
    let ids: Vec<&str> = queued["deployments"]
        .as_array()
        .expect("deployments")
        .iter()
        .filter_map(|r| r["id"].as_str())
        .collect();
    assert_eq!(ids, [second], "deployments listed as queued");
    let metrics = ok(d.anonymous().metrics(), "GET /metrics");
    assert!(metrics.lines().any(|l| l == "stagecoach_queue_depth 1"), "{metrics}");
}

/// Both succeeded, 1.2.0 saw 1.1.0 in production and changed production only after 1.1.0 finished.
fn assert_ran_one_after_the_other(d: &Daemon, first: &str, second: &str, log: &std::path::Path) {
    let r1 = d.record(first, &alice());
    let r2 = d.record(second, &alice());
    assert_eq!(r1["status"], "succeeded");
    assert_eq!(r2["status"], "succeeded");
    assert_eq!(
        r2["previous_version"], "1.1.0",
        "1.2.0 should see production as it was when its turn came; timeline: {}",
        r2["timeline"]
    );
    assert_eq!(r2["production_version"], "1.2.0");
    let first_done = time(&r1["finished_at"]);
    let second_deploy = time(&stage(&r2, "deploy")["started_at"]);
    assert!(
        second_deploy >= first_done,
        "1.2.0's DEPLOY started at {second_deploy}, before 1.1.0 finished at {first_done}"
    );
    assert!(second_deploy >= time(&stage(&r1, "monitor")["finished_at"]));
    // Every production run of 1.1.0 came before any of 1.2.0, and none ran twice.
    let production: Vec<String> = deploy_runs(log)
        .into_iter()
        .filter(|r| r.environment == "production")
        .map(|r| format!("{}@{}", r.version, r.weight))
        .collect();
    assert_eq!(
        production,
        ["1.1.0@10", "1.1.0@50", "1.1.0@100", "1.2.0@10", "1.2.0@50", "1.2.0@100"]
    );
    assert_intact(d, first);
    assert_intact(d, second);
}

#[test]
fn second_deployment_of_a_service_waits_queued() {
    let (mut h, log) = queue_harness();
    let d = h.start();
    let (first, second, mut first_events, mut second_events) = submit_two_and_wait_queued(&d);
    assert_second_is_queued(&d, &first, &second);
    assert_eq!(first_events.wait_finished(), "succeeded", "{}", first_events.summary());
    assert_eq!(
        second_events.wait_finished(),
        "succeeded",
        "{}",
        second_events.summary()
    );
    assert_ran_one_after_the_other(&d, &first, &second, &log);
}

#[test]
fn crash_while_queued_keeps_the_queue() {
    let (mut h, log) = queue_harness();
    let mut d = h.start();
    let (first, second, first_events, second_events) = submit_two_and_wait_queued(&d);
    drop((first_events, second_events));
    d.kill9();

    let d = h.start();
    assert_second_is_queued(&d, &first, &second);
    let mut first_events = d.events(&first, &alice());
    let mut second_events = d.events(&second, &alice());
    assert_eq!(first_events.wait_finished(), "succeeded", "{}", first_events.summary());
    assert_eq!(
        second_events.wait_finished(),
        "succeeded",
        "{}",
        second_events.summary()
    );
    assert_ran_one_after_the_other(&d, &first, &second, &log);
}

#[test]
fn crash_during_prepare_reruns_the_interrupted_command() {
    let mut h = Harness::bare();
    let fifo = h.path("tests.fifo");
    mkfifo(&fifo);
    let tests_log = h.path("tests.log");
    let script = h.script(
        "tests.sh",
        &format!(
            "echo \"$STAGECOACH_ACTION $STAGECOACH_ATTEMPT\" >> '{log}'\n\
             if [ \"$STAGECOACH_ATTEMPT\" = 1 ]; then\n\
             \techo \"started $$\" > '{fifo}'\n\
             \texec sleep 30\n\
             fi\n",
            log = tests_log.display(),
            fifo = fifo.display()
        ),
    );
    h.configure(
        &Config::default()
            .principal("alice", &["deployer"])
            .action("tests", &script),
    );
    let mut d = h.start();
    let id = id_of(&d.submit(&alice(), &json!({"service": "web", "version": "1.2.0"})));

    // The tests command of attempt 1 is running: crash now.
    let hello = read_fifo(&fifo);
    let hook_pid: i32 = hello
        .trim()
        .strip_prefix("started ")
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("unexpected FIFO message {hello:?}"));
    d.kill9();
    kill_pid(hook_pid);

    let d = h.start();
    let mut events = d.events(&id, &alice());
    assert_eq!(events.wait_finished(), "succeeded", "entries:\n{}", events.summary());
    let resumed: Vec<&Value> = events.seen.iter().filter(|e| e["kind"] == "resumed").collect();
    assert_eq!(resumed.len(), 1, "entries:\n{}", events.summary());
    assert!(
        resumed[0]["body"]["effects"].to_string().contains("Prepare"),
        "the resumed entry re-runs PREPARE: {}",
        resumed[0]
    );
    let record = d.record(&id, &alice());
    assert_eq!(stage(&record, "prepare")["outcome"], "passed");
    assert_stages_passed(&record, STANDARD_STAGES);
    let runs = std::fs::read_to_string(&tests_log).unwrap();
    assert_eq!(
        runs.lines().collect::<Vec<_>>(),
        ["tests 1", "tests 2"],
        "the tests hook ran once before the crash and once, as attempt 2, after it"
    );
    assert_intact(&d, &id);
}

#[test]
fn crash_while_awaiting_approval_keeps_given_approvals() {
    let mut h = Harness::new(
        &Config {
            manager_human: true,
            security_human: true,
            ..Config::default()
        }
        .principal("alice", &["deployer"])
        .principal("bob", &["manager"])
        .principal("carol", &["security"]),
    );
    let mut d = h.start();
    let carol = token("carol");
    let id = id_of(&d.submit(
        &alice(),
        &json!({"service": "web", "version": "1.2.1", "type": "hotfix", "strategy": "canary"}),
    ));
    let mut events = d.events(&id, &alice());
    let mut asked = std::collections::BTreeSet::new();
    events.wait_for("both approvals requested from a person", |e| {
        for f in facts(e) {
            if is_fact(f, "approval_requested") {
                if let Some(role) = f["role"].as_str() {
                    asked.insert(role.to_string());
                }
            }
        }
        (asked.len() == 2).then_some(())
    });
    ok(
        d.decide(
            &id,
            &carol,
            &approval("security", Decision::Approve, Some("scan clean")),
        ),
        "carol approves security",
    );
    let before = d.record(&id, &alice());
    let deadline_notes = timeline_with(&before, "Approval (manager) requested from a person; deadline");
    assert_eq!(deadline_notes.len(), 1, "{}", before["timeline"]);
    let carol_approval = ("security".to_string(), "granted".to_string(), "carol".to_string());
    assert!(approvals(&before).contains(&carol_approval));
    drop(events);

    d.kill9();
    let d = h.start();
    let after = d.record(&id, &alice());
    assert_eq!(after["status"], "awaiting_approval", "{}", after["status"]);
    assert_eq!(
        approvals(&after).iter().filter(|a| **a == carol_approval).count(),
        1,
        "carol's approval after the restart: {}",
        after["approvals"]
    );
    assert_eq!(
        after["approvals"], before["approvals"],
        "the approvals changed across the restart"
    );
    assert_eq!(
        timeline_with(&after, "Approval (manager) requested from a person; deadline"),
        deadline_notes,
        "the manager's deadline changed across the restart"
    );
    assert_eq!(after["pending_approvals"], before["pending_approvals"]);
    assert_eq!(
        after["pending_approvals"][0]["role"], "manager",
        "{}",
        after["pending_approvals"]
    );

    let mut events = d.events(&id, &alice());
    ok(
        d.decide(&id, &bob(), &approval("manager", Decision::Approve, None)),
        "bob approves manager after the restart",
    );
    assert_eq!(events.wait_finished(), "succeeded", "entries:\n{}", events.summary());
    let done = d.record(&id, &alice());
    let all = approvals(&done);
    assert_eq!(all.iter().filter(|a| **a == carol_approval).count(), 1, "{all:?}");
    assert_eq!(
        all.iter()
            .filter(|a| a.0 == "manager" && a.1 == "granted" && a.2 == "bob")
            .count(),
        1,
        "{all:?}"
    );
    assert_eq!(
        timeline_with(&done, "Approval (manager) requested from a person; deadline"),
        deadline_notes,
        "{}",
        done["timeline"]
    );
    assert_eq!(
        timeline_with(&done, "Approval (security) requested from a person; deadline").len(),
        1
    );
    assert_stages_passed(&done, STANDARD_STAGES);
    assert_intact(&d, &id);
}

#[test]
fn crash_between_canary_steps_does_not_repeat_production_steps() {
    let mut h = Harness::bare();
    let log = h.path("deploy.log");
    let hook = deploy_hook(&h, &log);
    h.configure(
        &Config {
            analysis_minutes: 0.1,
            ..Config::default()
        }
        .principal("alice", &["deployer"])
        .action("deploy", &hook),
    );
    let mut d = h.start();
    let id = id_of(&d.submit(
        &alice(),
        &json!({"service": "web", "version": "1.2.0", "strategy": "canary"}),
    ));
    let mut events = d.events(&id, &alice());
    events.wait_fact("the canary step at 10%", |f| {
        is_fact(f, "deploy_step") && f["step"].as_str().is_some_and(|s| s.starts_with("Canary at 10%"))
    });
    d.kill9();
    drop(events);
    assert_eq!(
        production_weights(&log),
        ["10"],
        "the crash should come during the analysis at 10% (test timing)"
    );

    let d = h.start();
    let mut events = d.events(&id, &alice());
    assert_eq!(events.wait_finished(), "succeeded", "entries:\n{}", events.summary());
    assert_each_weight_once(&log);
    assert_eq!(staging_runs(&log), 1, "{:?}", deploy_runs(&log));
    let record = d.record(&id, &alice());
    assert_stages_passed(&record, STANDARD_STAGES);
    let canary_steps: Vec<String> = record["deploy_log"]["steps"]
        .as_array()
        .expect("deploy_log.steps")
        .iter()
        .filter_map(|s| s["step"].as_str())
        .filter(|s| s.starts_with("Canary at"))
        .map(str::to_string)
        .collect();
    assert_eq!(canary_steps.len(), 3, "{canary_steps:?}");
    for percent in [10, 50] {
        let passed = timeline_with(&record, &format!("Canary analysis at {percent}% passed"));
        assert_eq!(passed.len(), 1, "{}", record["timeline"]);
    }
    assert_intact(&d, &id);
}

#[test]
fn crash_during_monitor_resumes_the_monitoring_period() {
    const MONITOR_MINUTES: f64 = 0.15;
    let mut h = Harness::bare();
    let log = h.path("deploy.log");
    let hook = deploy_hook(&h, &log);
    h.configure(
        &Config {
            standard_monitoring_minutes: MONITOR_MINUTES,
            checkpoint_minute: 0.075,
            ..Config::default()
        }
        .principal("alice", &["deployer"])
        .action("deploy", &hook),
    );
    let mut d = h.start();
    let id = id_of(&d.submit(&alice(), &json!({"service": "web", "version": "1.2.0"})));
    let mut events = d.events(&id, &alice());
    let started = events.wait_fact("MONITOR to start", |f| {
        is_fact(f, "stage_started") && f["stage"] == "monitor"
    });
    // Let part of the period pass (the first checkpoint), then crash.
    let checkpoint = events.wait_fact("the first monitoring checkpoint", |f| is_fact(f, "checkpoint"));
    d.kill9();
    drop(events);
    let weights_before = production_weights(&log);
    assert_each_weight_once(&log);

    let d = h.start();
    let mut events = d.events(&id, &alice());
    assert_eq!(events.wait_finished(), "succeeded", "entries:\n{}", events.summary());
    assert_eq!(production_weights(&log), weights_before, "{:?}", deploy_runs(&log));
    let record = d.record(&id, &alice());
    assert_stages_passed(&record, STANDARD_STAGES);
    let monitor = stage(&record, "monitor");
    let began = time(&monitor["started_at"]);
    assert_eq!(began, time(&started["at"]));
    let took = (time(&monitor["finished_at"]) - began)
        .to_std()
        .expect("positive duration");
    let period = std::time::Duration::from_secs_f64(MONITOR_MINUTES * 60.0);
    let before_crash = (time(&checkpoint["at"]) - began).to_std().expect("positive");
    eprintln!("MONITOR took {took:?} (period {period:?}; crash {before_crash:?} into it)");
    assert!(
        took < 2 * period,
        "MONITOR took {took:?}, at least twice the period of {period:?}"
    );
    assert!(
        took < before_crash + period,
        "MONITOR took {took:?}: the period of {period:?} restarted after the crash ({before_crash:?} in)"
    );
    assert!(took >= period, "MONITOR took {took:?}, shorter than {period:?}");
    // Nothing of the monitoring was recorded twice.
    let checkpoints = record["monitoring"]["checkpoints"].as_array().expect("checkpoints");
    assert_eq!(checkpoints.len(), 1, "{}", record["monitoring"]["checkpoints"]);
    let samples: Vec<_> = record["monitoring"]["samples"]
        .as_array()
        .expect("samples")
        .iter()
        .filter(|s| s["stage"] == "monitor")
        .map(|s| time(&s["at"]))
        .collect();
    assert!(samples.windows(2).all(|w| w[0] < w[1]), "{samples:?}");
    let most = (MONITOR_MINUTES / 0.02).ceil() as usize + 1;
    assert!(
        samples.len() <= most,
        "{} MONITOR samples in a period of {period:?} sampled every 1.2 s",
        samples.len()
    );
    assert_intact(&d, &id);
}

#[test]
fn verify_detects_an_entry_edited_by_hand() {
    let mut h = Harness::new(&Config::default().principal("alice", &["deployer"]));
    let mut d = h.start();
    let id = id_of(&d.submit(&alice(), &json!({"service": "web", "version": "1.2.0"})));
    assert_eq!(id, "d-000001");
    let mut events = d.events(&id, &alice());
    assert_eq!(events.wait_finished(), "succeeded", "entries:\n{}", events.summary());
    drop(events);
    assert_intact(&d, &id);
    let status = d.terminate();
    assert!(
        status.success(),
        "SIGTERM should stop the daemon with exit 0, got {status}"
    );

    let journal = h.state().join("journal.sqlite");
    let db = rusqlite::Connection::open(&journal).expect("open the journal");
    let changed = db
        .execute(
            "UPDATE entries SET body = replace(body, '1.2.0', '6.6.6') WHERE deployment = 1 AND idx = 1",
            [],
        )
        .expect("edit the journal");
    assert_eq!(changed, 1);
    drop(db);

    // With the daemon stopped, the journal is checked in place.
    let state = h.state().display().to_string();
    let out = cli(&h, &d, &alice(), &["verify", &id, "--offline", "--state-dir", &state]);
    assert_eq!(out.status.code(), Some(1), "verify --offline: {}", text(&out.stderr));
    assert!(text(&out.stdout).contains("entry 1"), "{}", text(&out.stdout));

    let d = h.start();
    let v = d.verify(&id, &alice());
    assert_eq!(v["intact"], false, "{v}");
    let problems: Vec<String> = v["problems"]
        .as_array()
        .expect("problems")
        .iter()
        .filter_map(|p| p.as_str().map(str::to_string))
        .collect();
    assert!(
        problems.iter().any(|p| p.starts_with("entry 1 ")),
        "a problem names entry 1: {problems:?}"
    );

    // The CLI says so too, with exit code 1.
    let out = cli(&h, &d, &alice(), &["verify", &id]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(1),
        "stagecoach verify of an edited journal: stdout:\n{stdout}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("entry 1"),
        "stagecoach verify names the entry:\n{stdout}"
    );
}

/// Runs the CLI against `d` as the holder of `token`.
fn cli(h: &Harness, d: &Daemon, token: &str, args: &[&str]) -> std::process::Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_stagecoach"));
    c.args(args)
        .args(["--server", &d.url, "--token", token])
        .current_dir(h.dir.path())
        .env("NO_COLOR", "1")
        .env_remove("STAGECOACH_TOKEN");
    run_with_timeout(c, &format!("stagecoach {}", args.join(" ")))
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).to_string()
}

#[test]
fn the_cli_submits_approves_watches_and_reads_a_deployment() {
    let mut h = Harness::bare();
    let log = h.path("deploy.log");
    let hook = deploy_hook(&h, &log);
    h.configure(
        &Config {
            manager_human: true,
            ..Config::default()
        }
        .principal("alice", &["deployer"])
        .principal("bob", &["manager"])
        .action("deploy", &hook),
    );
    let d = h.start();

    let out = cli(
        &h,
        &d,
        &alice(),
        &["submit", "web", "1.3.0", "--change", "from the CLI", "--json"],
    );
    assert_eq!(out.status.code(), Some(0), "submit: {}", text(&out.stderr));
    let submitted: Value = serde_json::from_slice(&out.stdout).expect("submit --json prints the record");
    let id = id_of(&submitted);
    assert_eq!(submitted["submitted_by"], "alice");

    let mut events = d.events(&id, &alice());
    events.wait_status("awaiting_approval");

    // alice has no manager role: refused, exit 1, and nothing changes.
    let out = cli(&h, &d, &alice(), &["approve", &id, "--role", "manager"]);
    assert_eq!(out.status.code(), Some(1), "approve by alice: {}", text(&out.stdout));
    assert!(text(&out.stderr).contains("manager role"), "{}", text(&out.stderr));

    let out = cli(
        &h,
        &d,
        &bob(),
        &["approve", &id, "--role", "manager", "--reason", "release notes read"],
    );
    assert_eq!(out.status.code(), Some(0), "approve by bob: {}", text(&out.stderr));

    let out = cli(&h, &d, &alice(), &["watch", &id]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "watch: {}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let watched = text(&out.stdout) + &text(&out.stderr);
    assert!(watched.contains("succeeded"), "{watched}");
    assert!(
        watched.contains("Canary at 50%"),
        "watch shows the canary steps: {watched}"
    );

    let out = cli(&h, &d, &alice(), &["status", &id, "--json"]);
    let status: Value = serde_json::from_slice(&out.stdout).expect("status --json");
    assert_eq!(status["status"], "succeeded");
    assert_eq!(
        approvals(&status),
        [
            ("manager".to_string(), "refused".to_string(), "alice".to_string()),
            ("manager".to_string(), "granted".to_string(), "bob".to_string())
        ]
    );

    let out = cli(&h, &d, &alice(), &["list", "--service", "web"]);
    assert!(text(&out.stdout).contains(&id), "{}", text(&out.stdout));
    let out = cli(&h, &d, &alice(), &["record", &id]);
    assert!(text(&out.stdout).contains("bob"), "{}", text(&out.stdout));
    let out = cli(&h, &d, &alice(), &["verify", &id]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    assert!(text(&out.stdout).contains("intact"), "{}", text(&out.stdout));

    // Too late to cancel: the daemon refuses (409) and the CLI exits 1.
    let out = cli(&h, &d, &alice(), &["cancel", &id]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert_each_weight_once(&log);
}

#[test]
fn first_start_without_configuration() {
    let mut h = Harness::bare();
    let mut d = h.start();
    let token_file = h.path(".stagecoach").join("admin.token");
    let meta = std::fs::metadata(&token_file).expect(".stagecoach/admin.token exists");
    assert_eq!(meta.permissions().mode() & 0o777, 0o600, "mode of admin.token");
    assert!(h.path(".stagecoach").join("journal.sqlite").exists());
    let admin = std::fs::read_to_string(&token_file).unwrap().trim().to_string();
    assert!(admin.len() >= 32, "token too short: {admin:?}");

    ok(d.anonymous().healthz(), "GET /healthz");
    let record = d.submit(&admin, &json!({"service": "web", "version": "1.0.0"}));
    assert_eq!(record["submitted_by"], "admin");
    assert_eq!(record["type"], "standard");
    let status = record["status"].as_str().unwrap_or_default();
    assert!(
        ["in_progress", "waiting_for_window", "awaiting_approval", "queued"].contains(&status),
        "status {status}"
    );
    expect_error(
        d.api("wrong").list_page(&ListQuery::default()),
        401,
        "unauthorized",
        "wrong token",
    );
    let metrics = ok(d.anonymous().metrics(), "GET /metrics");
    assert!(metrics.contains("stagecoach_deployments"), "{metrics}");
    assert!(metrics.contains("stagecoach_queue_depth"), "{metrics}");
    assert!(metrics.contains("stagecoach_journal_write_seconds_bucket"), "{metrics}");

    let status = d.terminate();
    assert!(
        status.success(),
        "SIGTERM should stop the daemon with exit 0, got {status}"
    );
}

#[test]
fn a_second_daemon_on_the_same_state_dir_is_refused() {
    let mut h = Harness::new(&Config::default().principal("alice", &["deployer"]));
    let mut d = h.start();
    let out = run_with_timeout(h.command(), "a second daemon");
    let stderr = strip_ansi(&String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(2), "stderr:\n{stderr}");
    assert!(stderr.contains("in use"), "stderr:\n{stderr}");
    // The first one is unaffected.
    let list = d.list(&alice(), None, None);
    assert!(list["deployments"].is_array());
    let status = d.terminate();
    assert!(status.success(), "{status}");
}

/// A webhook receiver on 127.0.0.1: records each POST body in order and
/// answers 200.
fn webhook_receiver() -> (String, std::sync::mpsc::Receiver<Value>) {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    let url = format!("http://{}/hook", listener.local_addr().expect("local address"));
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().expect("clone the stream"));
            let mut length = 0usize;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some((name, value)) = line.split_once(':') {
                    if name.eq_ignore_ascii_case("content-length") {
                        length = value.trim().parse().unwrap_or(0);
                    }
                }
            }
            let mut body = vec![0u8; length];
            if reader.read_exact(&mut body).is_err() {
                continue;
            }
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            if let Ok(v) = serde_json::from_slice::<Value>(&body) {
                if tx.send(v).is_err() {
                    return;
                }
            }
        }
    });
    (url, rx)
}

#[test]
fn notifications_reach_a_webhook_and_an_outbox_in_order() {
    let (url, received) = webhook_receiver();
    let mut h = Harness::bare();
    let outbox = h.path("outbox");
    h.configure(
        &Config {
            extra: format!(
                "[notify.channels.ops]\nkind = \"webhook\"\nurl = {url:?}\n\n\
             [notify.channels.files]\nkind = \"outbox\"\ndir = {:?}\n\n\
             [notify.routes]\npre_deployment = [\"ops\", \"files\"]\npost_deployment = [\"ops\", \"files\"]\n",
                outbox.display().to_string()
            ),
            ..Config::default()
        }
        .principal("alice", &["deployer"]),
    );
    let d = h.start();
    let id = id_of(&d.submit(&alice(), &json!({"service": "web", "version": "1.4.0"})));
    let mut events = d.events(&id, &alice());
    assert_eq!(events.wait_finished(), "succeeded", "entries:\n{}", events.summary());

    let wait = std::time::Duration::from_secs(30);
    let first = received.recv_timeout(wait).expect("the pre-deployment notice arrives");
    let second = received.recv_timeout(wait).expect("the post-deployment notice arrives");
    assert_eq!(first["kind"], "pre_deployment", "{first}");
    assert_eq!(second["kind"], "post_deployment", "{second}");
    for n in [&first, &second] {
        assert_eq!(n["deployment"], id.as_str());
        assert_eq!(n["service"], "web");
        assert_eq!(n["version"], "1.4.0");
        assert!(n["subject"].as_str().is_some_and(|s| s.contains("web")), "{n}");
    }
    // The post-deployment notice is sent after the status turns succeeded;
    // its delivery is recorded once every channel answered.
    events.wait_fact("the post-deployment notice recorded", |f| {
        is_fact(f, "notification") && f["kind"] == "post_deployment"
    });
    let record = d.record(&id, &alice());
    let delivered: Vec<bool> = record["notifications"]
        .as_array()
        .expect("notifications")
        .iter()
        .map(|n| n["delivered"].as_bool().unwrap_or(false))
        .collect();
    assert_eq!(delivered, [true, true], "{}", record["notifications"]);
    let files = std::fs::read_dir(&outbox).expect("the outbox exists").count();
    assert_eq!(files, 2, "one Markdown file per notification");
}

#[test]
fn a_hanging_production_hook_is_killed_at_its_timeout_and_rolled_back() {
    let mut h = Harness::bare();
    // Staging deploys at once; the first production step hangs.
    let hook = h.script(
        "hang.sh",
        "if [ \"$STAGECOACH_ENVIRONMENT\" = production ]; then sleep 600; fi\n",
    );
    h.configure(
        &Config {
            extra: format!(
                "[services.web.actions.deploy]\nargv = [\"sh\", {:?}]\ntimeout_seconds = 1\n",
                hook.display().to_string()
            ),
            ..Config::default()
        }
        .principal("alice", &["deployer"]),
    );
    let d = h.start();
    let id = id_of(&d.submit(
        &alice(),
        &json!({"service": "web", "version": "1.5.0", "strategy": "canary"}),
    ));
    let mut events = d.events(&id, &alice());
    assert_eq!(events.wait_finished(), "rolled_back", "entries:\n{}", events.summary());
    let record = d.record(&id, &alice());
    let failed: Vec<String> = record["deploy_log"]["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .filter(|s| s["ok"] == false)
        .map(|s| s["detail"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(failed.len(), 1, "{}", record["deploy_log"]);
    assert!(
        failed[0].contains("timed out"),
        "the step says it timed out: {failed:?}"
    );
    assert_eq!(
        record["rollback"]["trigger"], "critical_functionality_broken",
        "{}",
        record["rollback"]
    );
}

/// A release rolled back by hand blocks its version: submitting it again
/// (as a release or a hotfix) is refused at once with the rollback that
/// blocked it, until a manager unblocks it with a reason, which the
/// blocking deployment's record keeps, also across a restart.
#[test]
fn a_rolled_back_version_is_refused_until_a_manager_unblocks_it() {
    let mut h = Harness::new(
        &Config::default()
            .principal("alice", &["deployer"])
            .principal("bob", &["manager"]),
    );
    let mut d = h.start();
    let body = json!({"service": "web", "version": "1.0.0", "strategy": "canary"});
    let first = d.submit(&alice(), &body);
    let id = id_of(&first);
    let mut events = d.events(&id, &alice());
    assert_eq!(events.wait_finished(), "succeeded", "{}", events.summary());
    ok(
        d.api(&alice()).rollback(
            &id,
            &ReasonRequest {
                reason: Some("checkout errors after the release".into()),
            },
        ),
        "roll back by hand",
    );
    assert_eq!(events.wait_finished(), "rolled_back", "{}", events.summary());

    for kind in ["standard", "hotfix"] {
        let again = d.post(
            "/v1/deployments",
            &alice(),
            &json!({"service": "web", "version": "1.0.0", "type": kind}),
        );
        let message = again.expect_error(409, "conflict", &format!("a {kind} of the blocked version"));
        assert!(
            message.starts_with(&format!("web 1.0.0 is blocked: deployment {id} was rolled back at "))
                && message.contains("`stagecoach unblock web 1.0.0 --reason TEXT`"),
            "{message}"
        );
    }

    // Only a manager unblocks, with a reason; the deployer's attempt is refused and journaled.
    let path = "/v1/services/web/versions/1.0.0/unblock";
    let denied = d.post(path, &alice(), &json!({"reason": "I fixed it"}));
    let why = denied.expect_error(403, "forbidden", "a deployer unblocks");
    assert!(why.contains("needs the manager role"), "{why}");
    d.post(path, &token("bob"), &json!({}))
        .expect_error(422, "invalid", "an unblock without reason");
    d.post(
        "/v1/services/web/versions/9.9.9/unblock",
        &token("bob"),
        &json!({"reason": "x"}),
    )
    .expect_error(409, "conflict", "a version that is not blocked");

    let out = cli(
        &h,
        &d,
        &token("bob"),
        &[
            "unblock",
            "web",
            "1.0.0",
            "--reason",
            "the errors came from a config flag, now fixed",
        ],
    );
    assert!(out.status.success(), "{}{}", text(&out.stdout), text(&out.stderr));
    assert!(
        text(&out.stdout).contains(&format!("web 1.0.0: unblocked (it was blocked by {id})")),
        "{}",
        text(&out.stdout)
    );
    d.terminate();
    let d = h.start();
    let record = d.record(&id, &alice());
    assert_eq!(record["unblocked"]["by"], "bob", "{record}");
    assert_eq!(
        record["unblocked"]["reason"],
        "the errors came from a config flag, now fixed"
    );
    assert!(
        !timeline_with(&record, "web v1.0.0 unblocked by bob").is_empty(),
        "{}",
        record["timeline"]
    );
    assert!(
        !timeline_with(&record, "Refused: alice may not unblock versions").is_empty(),
        "the refused unblock is journaled: {}",
        record["timeline"]
    );
    // The version may go out again.
    let resubmitted = d.submit(&alice(), &body);
    assert_ne!(id_of(&resubmitted), id);
}
