//! Who may do what: every endpoint of the real daemon binary × every caller
//! (no token, a wrong token, each role, admin). Only the allowed callers get
//! past authentication and authorisation; the others get 401 or 403, and a
//! refused command on a deployment is journaled naming the caller. Tokens
//! never appear in the daemon's output or in records.

mod common;

use client::wire::{AckRequest, Decision, EventsQuery, ListQuery, ReasonRequest};
use common::{approval, token, Config, Daemon, Harness};
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

/// A call of one endpoint through the typed client.
type Call = Box<dyn Fn(&client::Client) -> Result<(), client::Error>>;

/// One row: what is called, and who may call it.
struct Row {
    method: &'static str,
    path: String,
    call: Call,
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

/// The client of a caller: its token, or none.
fn client_of(d: &Daemon, bearer: Option<&str>) -> client::Client {
    match bearer {
        Some(t) => d.api(t),
        None => d.anonymous(),
    }
}

/// The status of the answer: any success counts as 200 (the rule only tells 2xx apart from errors).
fn status_of(result: Result<(), client::Error>, what: &str) -> u16 {
    match result {
        Ok(()) => 200,
        Err(client::Error::Api(e)) => e.status,
        Err(e) => panic!("{what}: the daemon did not answer: {e}"),
    }
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
        let id = id.to_string();
        let on = |f: fn(&client::Client, &str) -> Result<(), client::Error>| -> Call {
            let id = id.clone();
            Box::new(move |c| f(c, &id))
        };
        let reason = |r: &str| ReasonRequest { reason: Some(r.into()) };
        vec![
            Row {
                method: "GET",
                path: "/v1/openapi.json".into(),
                call: Box::new(|c| c.openapi().map(drop)),
                allowed: EVERYONE,
                fresh: false,
            },
            Row {
                method: "GET",
                path: "/v1/deployments".into(),
                call: Box::new(|c| c.list_page(&ListQuery::default()).map(drop)),
                allowed: EVERYONE,
                fresh: false,
            },
            Row {
                method: "GET",
                path: format!("/v1/deployments/{id}"),
                call: on(|c, id| c.deployment(id).map(drop)),
                allowed: EVERYONE,
                fresh: false,
            },
            Row {
                method: "GET",
                path: format!("/v1/deployments/{id}/record.md"),
                call: on(|c, id| c.record_markdown(id).map(drop)),
                allowed: EVERYONE,
                fresh: false,
            },
            Row {
                method: "GET",
                path: format!("/v1/deployments/{id}/verify"),
                call: on(|c, id| c.verify(id).map(drop)),
                allowed: EVERYONE,
                fresh: false,
            },
            Row {
                method: "GET",
                path: format!("/v1/events?deployment={id}"),
                // Only the status matters; the stream is closed once it is open.
                call: on(|c, id| {
                    c.events(&EventsQuery {
                        deployment: Some(id.into()),
                        after: None,
                    })
                    .map(drop)
                }),
                allowed: EVERYONE,
                fresh: false,
            },
            Row {
                method: "POST",
                path: "/v1/deployments".into(),
                call: Box::new(|c| {
                    let request = serde_json::from_value(submit_body()).expect("a submission");
                    c.submit(&request).map(drop)
                }),
                allowed: &["dana", "root"],
                fresh: false,
            },
            Row {
                method: "POST",
                path: format!("/v1/deployments/{id}/approvals"),
                call: on(|c, id| c.decide(id, &approval("manager", Decision::Approve, None)).map(drop)),
                allowed: &["maria", "root"],
                fresh: true,
            },
            Row {
                method: "POST",
                path: format!("/v1/deployments/{id}/approvals"),
                call: on(|c, id| {
                    c.decide(id, &approval("security", Decision::Reject, Some("no")))
                        .map(drop)
                }),
                allowed: &["sam", "root"],
                fresh: true,
            },
            Row {
                method: "POST",
                path: format!("/v1/deployments/{id}/cancel"),
                call: {
                    let (id, body) = (id.clone(), reason("not today"));
                    Box::new(move |c| c.cancel(&id, &body).map(drop))
                },
                allowed: &["dana", "maria", "root"],
                fresh: true,
            },
            Row {
                method: "POST",
                path: format!("/v1/deployments/{id}/rollback"),
                call: {
                    let (id, body) = (id.clone(), reason("broken"));
                    Box::new(move |c| c.rollback(&id, &body).map(drop))
                },
                allowed: &["dana", "maria", "dev", "root"],
                fresh: true,
            },
            Row {
                method: "POST",
                path: format!("/v1/escalations/{id}-e1/ack"),
                call: on(|c, id| c.acknowledge(&format!("{id}-e1"), &AckRequest::default()).map(drop)),
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
            let what = format!("{} {} by {caller}", row.method, row.path);
            let status = status_of((row.call)(&client_of(&d, bearer.as_deref())), &what);
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
        let api = client_of(&d, bearer.as_deref());
        assert_eq!(status_of(api.healthz(), "healthz"), 200, "healthz by {caller}");
        assert_eq!(
            status_of(api.metrics().map(drop), "metrics"),
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
    let everything = format!("{}\n{}", h.logs.text(), d.list(&token("root"), None, None));
    for (caller, bearer) in callers() {
        if let Some(t) = bearer {
            assert!(!everything.contains(&t), "the token of {caller} leaked");
        }
    }
}
