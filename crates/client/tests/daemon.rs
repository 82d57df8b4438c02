//! The client against the real daemon, run in this process on a loopback
//! port with a temporary state dir (`daemon::run_with`, as `stagecoach
//! demo` runs it): every route the client has, its errors, and the event
//! stream with deadlines.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use client::wire::{
    AckRequest, ApprovalRequest, Decision, EntryBody, EntryKind, EventsQuery, ListQuery, ReasonRequest, SubmitRequest,
};
use client::{Client, Error, StreamError};
use workflow::record::Fact;
use workflow::types::Status;

/// Windows open around the clock, every wait cut to seconds.
const CONFIG: &str = r#"
[windows]
never_days = []
[[windows.allowed]]
days = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
start = "00:00"
end = "24:00"
[types.standard]
monitoring_minutes = 0.05
[strategies.canary]
steps = [10, 50, 100]
analysis_minutes = 0.02
[monitoring]
sample_interval_minutes = 0.02
"#;

/// A daemon serving on 127.0.0.1 until dropped.
struct Daemon {
    url: String,
    token: String,
    ready: daemon::Ready,
    thread: Option<std::thread::JoinHandle<Result<(), String>>>,
    _state: tempfile::TempDir,
}

impl Daemon {
    fn start() -> Daemon {
        let state = tempfile::tempdir().expect("a state dir");
        let (settings, mut config) =
            daemon::config::load(Some(("test.toml", CONFIG)), &BTreeMap::new()).expect("the test configuration");
        config.server.listen = "127.0.0.1:0".into();
        config.storage.path = state.path().to_path_buf();
        let (tx, rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            daemon::run_with(daemon::Options { settings, config }, move |ready| {
                let _ = tx.send(ready);
            })
        });
        let ready = rx.recv().expect("the daemon serves");
        let token = std::fs::read_to_string(state.path().join("admin.token")).expect("the admin token");
        Daemon {
            url: format!("http://{}", ready.addrs[0]),
            token: token.trim().to_string(),
            ready,
            thread: Some(thread),
            _state: state,
        }
    }

    fn api(&self) -> Client {
        Client::new(&self.url, &self.token).expect("a client")
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        drop(self.ready.server.stop(true));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn submission(service: &str, version: &str) -> SubmitRequest {
    SubmitRequest {
        service: service.into(),
        version: Some(version.into()),
        strategy: Some("canary".into()),
        changes: vec!["faster pages".into()],
        ..SubmitRequest::default()
    }
}

/// The API's error answer of `result`.
fn refusal<T: std::fmt::Debug>(result: Result<T, Error>) -> client::ApiError {
    match result {
        Err(Error::Api(e)) => e,
        other => panic!("expected an error answer, got {other:?}"),
    }
}

#[test]
fn every_route_answers_typed() {
    let d = Daemon::start();
    let api = d.api();
    api.healthz().expect("healthz");
    assert!(api.openapi().expect("the OpenAPI document")["paths"]["/v1/events"].is_object());
    assert!(api.metrics().expect("metrics").contains("stagecoach_deployments"));

    let record = api.submit(&submission("web", "1.2.0")).expect("a submission");
    let id = record.id.to_string();
    assert_eq!(
        (record.service.as_str(), record.submitted_by.as_str()),
        ("web", "admin")
    );
    assert_eq!(api.deployment(&id).expect("the record").id, record.id);
    assert!(api.record_markdown(&id).expect("the Markdown record").starts_with('#'));
    let all = api.list_all(Some("web"), None).expect("the list");
    assert_eq!(all.iter().map(|r| r.id).collect::<Vec<_>>(), [record.id]);
    let page = api
        .list_page(&ListQuery {
            limit: Some(1),
            ..ListQuery::default()
        })
        .expect("a page");
    assert_eq!((page.deployments.len(), page.next_cursor), (1, None));

    // The deployment ends; its chain checks out.
    let mut events = api
        .events(&EventsQuery {
            deployment: Some(id.clone()),
            after: None,
        })
        .expect("the event stream");
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut first = None;
    let status = loop {
        let received = events
            .next_entry_before(deadline)
            .expect("entries until the deployment ends")
            .expect("the stream stays open");
        let sent = received.json["body"]["facts"].as_array().map_or(0, Vec::len);
        assert_eq!(
            received.entry.body.facts().len(),
            sent,
            "every fact read: {}",
            received.json
        );
        assert!(received.json["body"].get("settings").is_none(), "{}", received.json);
        first.get_or_insert(received.entry.clone());
        let ended = received.entry.body.facts().iter().find_map(|f| match f {
            Fact::Status { status, .. } if status.is_terminal() => Some(*status),
            _ => None,
        });
        if let Some(status) = ended {
            break status;
        }
    };
    assert_eq!(status, Status::Succeeded);
    let first = first.expect("a first entry");
    assert_eq!((first.index, first.kind), (1, EntryKind::Submitted));
    assert!(matches!(first.body, EntryBody::Submitted { .. }), "{:?}", first.body);
    let verified = api.verify(&id).expect("the chain check");
    assert!(verified.intact && verified.entries > 5, "{verified:?}");

    // Commands that the state refuses come back as the API's errors.
    let cancel = refusal(api.cancel(&id, &ReasonRequest::default()));
    assert_eq!((cancel.status, cancel.code.as_deref()), (409, Some("conflict")));
    let approve = ApprovalRequest {
        role: "manager".into(),
        decision: Decision::Approve,
        reason: None,
    };
    assert_eq!(refusal(api.decide(&id, &approve)).status, 409);
    let ack = refusal(api.acknowledge(&format!("{id}-e1"), &AckRequest::default()));
    assert_eq!((ack.status, ack.code.as_deref()), (404, Some("not_found")));
    let rollback = ReasonRequest {
        reason: Some("checkout errors".into()),
    };
    assert_eq!(
        api.rollback(&id, &rollback).expect("a rollback after success").id,
        record.id
    );
}

#[test]
fn errors_keep_status_and_body_and_no_answer_is_its_own() {
    let d = Daemon::start();
    let wrong = Client::new(&d.url, "not-a-token")
        .expect("a client")
        .list_page(&ListQuery::default());
    let e = refusal(wrong);
    assert_eq!((e.status, e.code.as_deref()), (401, Some("unauthorized")));
    assert_eq!(e.body.as_ref().expect("the JSON body")["error"]["code"], "unauthorized");
    let anonymous = Client::builder(&d.url).and_then(|b| b.build()).expect("a client");
    assert_eq!(refusal(anonymous.submit(&submission("web", "1.0.0"))).status, 401);
    let invalid = refusal(d.api().submit(&submission("../etc", "1.0.0")));
    assert_eq!((invalid.status, invalid.code.as_deref()), (422, Some("invalid")));
    assert!(invalid.message.starts_with("service:"), "{}", invalid.message);

    // A port nobody listens on: no answer, and trying again may help.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let gone = Client::new(&format!("127.0.0.1:{port}"), "t")
        .expect("a client")
        .healthz();
    match gone {
        Err(e @ Error::Unreachable(_)) => {
            assert!(e.retryable());
            assert!(
                e.to_string()
                    .starts_with(&format!("cannot reach the daemon at http://127.0.0.1:{port}:")),
                "{e}"
            );
        }
        other => panic!("expected no answer, got {other:?}"),
    }
}

#[test]
fn a_stream_waits_with_a_deadline_and_stays_open_after_it() {
    let d = Daemon::start();
    let api = d.api();
    let mut events = api.events(&EventsQuery::default()).expect("the event stream");
    // Nothing happens yet: the wait ends at its deadline, the stream stays open.
    let started = Instant::now();
    let waited = events.next_entry_before(started + Duration::from_millis(200));
    assert_eq!(waited, Err(StreamError::TimedOut));
    assert!(started.elapsed() >= Duration::from_millis(200));
    let record = api.submit(&submission("api", "2.0.0")).expect("a submission");
    let received = events
        .next_entry_before(Instant::now() + Duration::from_secs(30))
        .expect("the submission's entry")
        .expect("the stream stays open");
    assert_eq!(
        (received.entry.deployment, received.entry.kind),
        (record.id, EntryKind::Submitted)
    );
    // Resuming after an entry starts after it.
    let mut resumed = api
        .events(&EventsQuery {
            deployment: Some(record.id.to_string()),
            after: Some(received.entry.seq),
        })
        .expect("the event stream");
    let next = resumed
        .next_entry_before(Instant::now() + Duration::from_secs(30))
        .expect("the next entry")
        .expect("the stream stays open");
    assert!(next.entry.seq > received.entry.seq);
}
