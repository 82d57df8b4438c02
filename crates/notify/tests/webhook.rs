//! Webhook delivery against a real HTTP receiver on 127.0.0.1.

mod common;

use std::time::{Duration, Instant};

use common::{closed_port_url, ctx, entry, files, silent_url, Receiver};
use notify::{DeliveryContext, Notifier, NotifyConfig};
use workflow::types::NotificationKind;

fn config(toml: &str) -> NotifyConfig {
    NotifyConfig::from_agents_toml(toml).unwrap_or_else(|e| panic!("config refused: {e}"))
}

/// A webhook channel `ops` for every kind; a fast backoff unless `extra` sets one.
fn webhook_config(url: &str, extra: &str) -> NotifyConfig {
    let backoff = if extra.contains("backoff_seconds") {
        ""
    } else {
        "backoff_seconds = 0.01"
    };
    config(&format!(
        r#"
[notify.channels.ops]
kind = "webhook"
url = "{url}"
{backoff}
{extra}

[notify.routes]
pre_deployment = ["ops"]
post_deployment = ["ops"]
rollback = ["ops"]
escalation = ["ops"]
approval_requested = ["ops"]
"#
    ))
}

#[tokio::test]
async fn notifications_arrive_in_order_with_their_fields() {
    let receiver = Receiver::start(0);
    let notifier = Notifier::new(webhook_config(&receiver.url, r#"headers = { "X-Token" = "s3cret" }"#));
    let sent = [
        entry("n-1", NotificationKind::PreDeployment, 1),
        entry("n-2", NotificationKind::PostDeployment, 2),
        entry("n-3", NotificationKind::Rollback, 3),
    ];
    for e in &sent {
        notifier.send(&ctx(), e).await.unwrap();
    }
    let got = receiver.requests();
    assert_eq!(got.len(), 3);
    for (request, e) in got.iter().zip(&sent) {
        assert_eq!(request.method, "POST");
        assert_eq!(request.path, "/hook");
        assert_eq!(request.header("content-type"), Some("application/json"));
        assert_eq!(request.header("x-token"), Some("s3cret"));
        assert_eq!(request.header("idempotency-key"), Some(e.id.as_str()));
        let body = request.json();
        let object = body.as_object().unwrap();
        let mut keys: Vec<&str> = object.keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "at",
                "body",
                "deployment",
                "id",
                "kind",
                "service",
                "simulated",
                "subject",
                "version"
            ]
        );
        assert_eq!(body["id"], e.id.as_str());
        assert_eq!(body["kind"], e.kind.as_str());
        assert_eq!(
            body["at"],
            e.at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true).as_str()
        );
        assert_eq!(body["subject"], e.subject.as_str());
        assert_eq!(body["body"], e.body.as_str());
        assert_eq!(body["deployment"], "d-000042");
        assert_eq!(body["service"], "web");
        assert_eq!(body["version"], "2.4.1");
        assert_eq!(body["simulated"], false);
    }
    assert_eq!(got[0].json()["at"], "2025-03-04T10:01:05Z");
}

#[tokio::test]
async fn a_missing_version_is_null() {
    let receiver = Receiver::start(0);
    let notifier = Notifier::new(webhook_config(&receiver.url, ""));
    let ctx = DeliveryContext {
        deployment_id: "d-000007".into(),
        service: "api".into(),
        version: None,
    };
    notifier
        .send(&ctx, &entry("n-9", NotificationKind::Rollback, 0))
        .await
        .unwrap();
    let body = receiver.requests()[0].json();
    assert!(body["version"].is_null());
    assert_eq!(body["deployment"], "d-000007");
}

#[tokio::test]
async fn slack_format_sends_text_only() {
    let receiver = Receiver::start(0);
    let notifier = Notifier::new(webhook_config(&receiver.url, r#"format = "slack""#));
    let e = entry("n-1", NotificationKind::Escalation, 0);
    notifier.send(&ctx(), &e).await.unwrap();
    let body = receiver.requests()[0].json();
    assert_eq!(
        body,
        serde_json::json!({ "text": format!("*Subject of n-1*\n{}", e.body) })
    );
}

#[tokio::test]
async fn delivered_on_the_third_attempt() {
    let receiver = Receiver::start(2);
    let notifier = Notifier::new(webhook_config(&receiver.url, "retries = 3"));
    notifier
        .send(&ctx(), &entry("n-1", NotificationKind::Rollback, 0))
        .await
        .unwrap();
    let got = receiver.requests();
    let statuses: Vec<u16> = got.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [500, 500, 200]);
    assert!(
        got.iter().all(|r| r.json()["id"] == "n-1"),
        "every attempt carries the same id"
    );
}

#[tokio::test]
async fn failing_channel_is_named_and_the_others_still_deliver() {
    let receiver = Receiver::start(usize::MAX);
    let dir = tempfile::tempdir().unwrap();
    let outbox = dir.path().join("outbox");
    let notifier = Notifier::new(config(&format!(
        r#"
[notify.channels.ops]
kind = "webhook"
url = "{}"
retries = 3
backoff_seconds = 0.01

[notify.channels.files]
kind = "outbox"
dir = "{}"

[notify.routes]
rollback = ["ops", "files"]
"#,
        receiver.url,
        outbox.display()
    )));
    let err = notifier
        .send(&ctx(), &entry("n-1", NotificationKind::Rollback, 0))
        .await
        .unwrap_err();
    assert_eq!(
        err,
        format!(
            "ops: webhook {}: 500 Internal Server Error after 4 attempts",
            receiver.url
        )
    );
    assert_eq!(receiver.requests().len(), 4);
    let written = files(&outbox);
    assert_eq!(written, ["20250304T100005-n-1-rollback.md"]);
}

#[tokio::test]
async fn backoff_doubles_between_attempts() {
    let receiver = Receiver::start(usize::MAX);
    let notifier = Notifier::new(webhook_config(&receiver.url, "retries = 2\nbackoff_seconds = 0.2"));
    let started = Instant::now();
    let err = notifier
        .send(&ctx(), &entry("n-1", NotificationKind::Rollback, 0))
        .await
        .unwrap_err();
    // 0.2 s, then 0.4 s.
    assert!(
        started.elapsed() >= Duration::from_millis(600),
        "{:?}",
        started.elapsed()
    );
    assert!(err.ends_with("after 3 attempts"), "{err}");
}

#[tokio::test]
async fn closed_port_fails_fast_with_connection_refused() {
    let url = closed_port_url();
    let notifier = Notifier::new(webhook_config(&url, "retries = 0\ntimeout_seconds = 30"));
    let started = Instant::now();
    let err = notifier
        .send(&ctx(), &entry("n-1", NotificationKind::Escalation, 0))
        .await
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(10), "{:?}", started.elapsed());
    assert_eq!(err, format!("ops: webhook {url}: connection refused after 1 attempt"));

    let notifier = Notifier::new(webhook_config(&url, "retries = 2"));
    let err = notifier
        .send(&ctx(), &entry("n-1", NotificationKind::Escalation, 0))
        .await
        .unwrap_err();
    assert_eq!(err, format!("ops: webhook {url}: connection refused after 3 attempts"));
}

#[tokio::test]
async fn secrets_in_the_url_stay_out_of_errors() {
    let url = closed_port_url();
    let with_secret = url.replace("http://", "http://user:pw@") + "?token=abc";
    let notifier = Notifier::new(webhook_config(&with_secret, "retries = 0"));
    let err = notifier
        .send(&ctx(), &entry("n-1", NotificationKind::Escalation, 0))
        .await
        .unwrap_err();
    assert!(!err.contains("abc") && !err.contains("pw"), "{err}");
    assert!(err.contains("?…"), "{err}");
}

#[tokio::test]
async fn channels_are_delivered_concurrently() {
    // Two channels, each failing with backoff, routed b first: delivered one
    // after the other, a's first attempt would come after all of b's;
    // concurrently it comes before b's last one (after 0.3 + 0.6 s of backoff).
    let a = Receiver::start(usize::MAX);
    let b = Receiver::start(usize::MAX);
    let notifier = Notifier::new(config(&format!(
        r#"
[notify.channels.a]
kind = "webhook"
url = "{}"
retries = 2
backoff_seconds = 0.3

[notify.channels.b]
kind = "webhook"
url = "{}"
retries = 2
backoff_seconds = 0.3

[notify.routes]
escalation = ["b", "a"]
"#,
        a.url, b.url
    )));
    let started = Instant::now();
    let err = notifier
        .send(&ctx(), &entry("n-1", NotificationKind::Escalation, 0))
        .await
        .unwrap_err();
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_millis(900), "{elapsed:?}");
    let a_first = a.requests().first().expect("a was tried").received;
    let b_last = b.requests().last().expect("b was tried").received;
    assert!(a_first < b_last, "a started only after b gave up: not concurrent");
    assert_eq!(
        err,
        format!(
            "b: webhook {}: 500 Internal Server Error after 3 attempts; a: webhook {}: 500 Internal Server Error after 3 attempts",
            b.url, a.url
        )
    );
}

#[tokio::test]
async fn a_silent_receiver_times_out() {
    let (url, _server) = silent_url();
    let notifier = Notifier::new(webhook_config(&url, "retries = 1\ntimeout_seconds = 0.3"));
    let started = Instant::now();
    let err = notifier
        .send(&ctx(), &entry("n-1", NotificationKind::Escalation, 0))
        .await
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(10), "{:?}", started.elapsed());
    assert_eq!(
        err,
        format!("ops: webhook {url}: no answer within 0.3 s after 2 attempts")
    );
}

#[tokio::test]
async fn client_errors_are_not_retried_but_429_is() {
    let receiver = Receiver::start_failing_with(usize::MAX, 404);
    let notifier = Notifier::new(webhook_config(&receiver.url, "retries = 3"));
    let err = notifier
        .send(&ctx(), &entry("n-1", NotificationKind::Rollback, 0))
        .await
        .unwrap_err();
    assert_eq!(
        err,
        format!(
            "ops: webhook {}: 404 Not Found after 1 attempt (not retried)",
            receiver.url
        )
    );
    assert_eq!(receiver.requests().len(), 1);

    let receiver = Receiver::start_failing_with(1, 429);
    let notifier = Notifier::new(webhook_config(&receiver.url, "retries = 3"));
    notifier
        .send(&ctx(), &entry("n-1", NotificationKind::Rollback, 0))
        .await
        .unwrap();
    let statuses: Vec<u16> = receiver.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, [429, 200]);
}
