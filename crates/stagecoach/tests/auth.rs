//! Who may do what: every endpoint of the real daemon binary × every caller
//! (no token, a wrong token, each role, admin). Only the allowed callers get
//! past authentication and authorisation; the others get 401 or 403, and a
//! refused command on a deployment is journaled naming the caller. Tokens
//! never appear in the daemon's output or in records.

mod common;

use common::{token, Config, Daemon, Harness};
use serde_json::{json, Value};

/// Callers: (name, token). `None` sends no Authorization header.
fn callers() -> Vec<(&'static str, Option<String>)> {
    vec![
        ("none", None),
        ("wrong", Some("not-a-token-of-anyone".to_string())),
        ("dana", Some(token("dana"))),   // deployer
        ("maria", Some(token("maria"))), // manager
        ("sam", Some(token("sam"))),     // security
        ("dev", Some(token("dev"))),     // devops
        ("quinn", Some(token("quinn"))), // qa
        ("root", Some(token("root"))),   // admin
    ]
}

const EVERYONE: &[&str] = &["dana", "maria", "sam", "dev", "quinn", "root"];

/// One row: what is called, and who may call it.
struct Row {
    method: &'static str,
    path: String,
    body: Option<Value>,
    allowed: &'static [&'static str],
    /// Whether each call needs a deployment of its own (state-changing commands).
    fresh: bool,
}

fn submit_body() -> Value {
    json!({"service": "web", "version": "1.2.0", "type": "standard", "strategy": "canary"})
}

/// A deployment by dana, waiting for the manager's approval.
fn awaiting(d: &Daemon) -> String {
    let record = d.submit(&token("dana"), &submit_body());
    let id = record["id"].as_str().expect("id").to_string();
    d.events(&id, &token("dana")).wait_status("awaiting_approval");
    id
}

fn call(d: &Daemon, method: &str, path: &str, bearer: Option<&str>, body: Option<&Value>) -> u16 {
    let http = reqwest::blocking::Client::new();
    let url = format!("{}{path}", d.url);
    let mut req = match method {
        "GET" => http.get(url),
        _ => http.post(url),
    };
    if let Some(t) = bearer {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(b);
    }
    // Only the status matters; an event stream is dropped after its headers.
    req.send().expect("the daemon answers").status().as_u16()
}

#[test]
fn every_endpoint_by_every_caller() {
    let config = Config {
        manager_human: true,
        security_human: true,
        ..Config::default()
    }
    .principal("dana", &["deployer"])
    .principal("maria", &["manager"])
    .principal("sam", &["security"])
    .principal("dev", &["devops"])
    .principal("quinn", &["qa"])
    .principal("root", &["admin"]);
    let mut h = Harness::new(&config);
    let d = h.start();
    let shared = awaiting(&d);

    let rows = |id: &str| -> Vec<Row> {
        vec![
            Row {
                method: "GET",
                path: "/v1/openapi.json".into(),
                body: None,
                allowed: EVERYONE,
                fresh: false,
            },
            Row {
                method: "GET",
                path: "/v1/deployments".into(),
                body: None,
                allowed: EVERYONE,
                fresh: false,
            },
            Row {
                method: "GET",
                path: format!("/v1/deployments/{id}"),
                body: None,
                allowed: EVERYONE,
                fresh: false,
            },
            Row {
                method: "GET",
                path: format!("/v1/deployments/{id}/record.md"),
                body: None,
                allowed: EVERYONE,
                fresh: false,
            },
            Row {
                method: "GET",
                path: format!("/v1/deployments/{id}/verify"),
                body: None,
                allowed: EVERYONE,
                fresh: false,
            },
            Row {
                method: "GET",
                path: format!("/v1/events?deployment={id}"),
                body: None,
                allowed: EVERYONE,
                fresh: false,
            },
            Row {
                method: "POST",
                path: "/v1/deployments".into(),
                body: Some(submit_body()),
                allowed: &["dana", "root"],
                fresh: false,
            },
            Row {
                method: "POST",
                path: format!("/v1/deployments/{id}/approvals"),
                body: Some(json!({"role": "manager", "decision": "approve"})),
                allowed: &["maria", "root"],
                fresh: true,
            },
            Row {
                method: "POST",
                path: format!("/v1/deployments/{id}/approvals"),
                body: Some(json!({"role": "security", "decision": "reject", "reason": "no"})),
                allowed: &["sam", "root"],
                fresh: true,
            },
            Row {
                method: "POST",
                path: format!("/v1/deployments/{id}/cancel"),
                body: Some(json!({"reason": "not today"})),
                allowed: &["dana", "maria", "root"],
                fresh: true,
            },
            Row {
                method: "POST",
                path: format!("/v1/deployments/{id}/rollback"),
                body: Some(json!({"reason": "broken"})),
                allowed: &["dana", "maria", "dev", "root"],
                fresh: true,
            },
            Row {
                method: "POST",
                path: format!("/v1/escalations/{id}-e1/ack"),
                body: Some(json!({})),
                allowed: &["maria", "dev", "root"],
                fresh: false,
            },
        ]
    };

    let mut checked = 0;
    let mut refused_on: Vec<(String, String)> = vec![];
    let template = rows(&shared);
    for (i, row) in template.iter().enumerate() {
        for (caller, bearer) in callers() {
            let allowed = row.allowed.contains(&caller);
            // A state-changing command that is allowed gets a deployment of its own.
            let id = if row.fresh && allowed {
                awaiting(&d)
            } else {
                shared.clone()
            };
            let row = &rows(&id)[i];
            let status = call(&d, row.method, &row.path, bearer.as_deref(), row.body.as_ref());
            let what = format!("{} {} by {caller}", row.method, row.path);
            match (caller, allowed) {
                ("none" | "wrong", _) => assert_eq!(status, 401, "{what}"),
                (_, true) => assert!(
                    (200..300).contains(&status) || status == 404 || status == 409,
                    "{what}: allowed, got {status}"
                ),
                (_, false) => {
                    assert_eq!(status, 403, "{what}");
                    if row.path.contains("/deployments/d-") || row.path.contains("/escalations/") {
                        refused_on.push((shared.clone(), caller.to_string()));
                    }
                }
            }
            checked += 1;
        }
    }
    // /healthz and /metrics are open (load balancers and Prometheus call them).
    for (caller, bearer) in callers() {
        assert_eq!(
            call(&d, "GET", "/healthz", bearer.as_deref(), None),
            200,
            "healthz by {caller}"
        );
        assert_eq!(
            call(&d, "GET", "/metrics", bearer.as_deref(), None),
            200,
            "metrics by {caller}"
        );
        checked += 2;
    }
    println!("auth cases checked: {checked}");

    // Every refused command on the shared deployment is in its record, naming the caller.
    let record = d.record(&shared, &token("root"));
    let notes: Vec<String> = record["timeline"]
        .as_array()
        .expect("timeline")
        .iter()
        .filter_map(|t| t["event"].as_str().map(str::to_string))
        .collect();
    let refused_approvals: Vec<String> = record["approvals"]
        .as_array()
        .expect("approvals")
        .iter()
        .filter(|a| a["decision"] == "refused")
        .filter_map(|a| a["by"].as_str().map(str::to_string))
        .collect();
    for (_, caller) in &refused_on {
        assert!(
            notes
                .iter()
                .any(|n| n.starts_with(&format!("Refused: {caller} may not")))
                || refused_approvals.contains(caller),
            "the refusal of {caller} is not in the record:\n{notes:#?}\n{refused_approvals:?}"
        );
    }

    // Tokens are nowhere: not in the daemon's output, not in any record.
    let everything = format!("{}\n{}", h.logs.text(), d.get("/v1/deployments", &token("root")).text);
    for (caller, bearer) in callers() {
        if let Some(t) = bearer {
            assert!(!everything.contains(&t), "the token of {caller} leaked");
        }
    }
}
