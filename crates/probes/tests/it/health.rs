//! Health checks against the real example service.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use probes::{check, HealthCheck};

use crate::common::{client, free_port, vars, Service};

#[tokio::test]
async fn a_healthy_service_passes_on_the_first_try() {
    let service = Service::start("1.2.0", &[]);
    let outcome = check(
        &client(),
        &HealthCheck::new(format!("{}/health", service.base)),
        &BTreeMap::new(),
    )
    .await;
    assert!(outcome.ok, "{outcome:?}");
    assert_eq!(outcome.attempts, 1);
    assert!(
        outcome.detail.starts_with("200 OK in ") && outcome.detail.ends_with(" ms"),
        "{outcome:?}"
    );
}

#[tokio::test]
async fn an_unhealthy_service_fails_after_every_retry() {
    let service = Service::start("1.2.0", &[]);
    service.post("/admin/health?ok=false").await;
    let hc = HealthCheck {
        retries: 2,
        backoff_seconds: 0.1,
        ..HealthCheck::new(format!("{}/health", service.base))
    };
    let started = Instant::now();
    let outcome = check(&client(), &hc, &BTreeMap::new()).await;
    assert!(!outcome.ok, "{outcome:?}");
    assert_eq!(outcome.attempts, 3);
    assert_eq!(
        outcome.detail,
        format!(
            "GET {}/health: expected 200, got 503 Service Unavailable (3 attempts)",
            service.base
        )
    );
    // Two waits: 0.1 s, then 0.2 s.
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_service_that_recovers_between_tries_passes() {
    let service = Service::start("1.2.0", &[]);
    service.post("/admin/health?ok=false").await;
    let hc = HealthCheck {
        retries: 6,
        backoff_seconds: 0.2,
        ..HealthCheck::new(format!("{}/health", service.base))
    };
    let (http, no_vars) = (client(), BTreeMap::new());
    let (outcome, ()) = tokio::join!(check(&http, &hc, &no_vars), async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        service.post("/admin/health?ok=true").await;
    });
    assert!(outcome.ok, "{outcome:?}");
    assert!(outcome.attempts >= 2, "{outcome:?}");
    assert!(
        outcome.detail.ends_with(&format!("(attempt {})", outcome.attempts)),
        "{outcome:?}"
    );
}

#[tokio::test]
async fn a_closed_port_is_connection_refused() {
    let port = free_port().to_string();
    let hc = HealthCheck {
        retries: 1,
        backoff_seconds: 0.0,
        ..HealthCheck::new("http://127.0.0.1:{port}/health")
    };
    let outcome = check(&client(), &hc, &vars(&[("port", &port)])).await;
    assert!(!outcome.ok);
    assert_eq!(outcome.attempts, 2);
    assert_eq!(
        outcome.detail,
        format!("GET http://127.0.0.1:{port}/health: connection refused (2 attempts)")
    );
}

#[tokio::test]
async fn the_body_must_contain_the_expected_text() {
    let service = Service::start("1.2.0", &[]);
    let good = HealthCheck {
        body_contains: Some("\"status\":\"ok\"".into()),
        ..HealthCheck::new(format!("{}/health", service.base))
    };
    let outcome = check(&client(), &good, &BTreeMap::new()).await;
    assert!(outcome.ok, "{outcome:?}");

    let bad = HealthCheck {
        body_contains: Some("all systems go".into()),
        retries: 0,
        ..good
    };
    let outcome = check(&client(), &bad, &BTreeMap::new()).await;
    assert!(!outcome.ok);
    assert_eq!(outcome.attempts, 1);
    assert_eq!(
        outcome.detail,
        format!(
            "GET {}/health: body does not contain \"all systems go\" (1 attempt)",
            service.base
        )
    );
}

#[tokio::test]
async fn placeholders_are_filled_in() {
    let service = Service::start("3.1.4", &[]);
    let hc = HealthCheck {
        body_contains: Some("\"version\":\"{version}\"".into()),
        ..HealthCheck::new("http://127.0.0.1:{port}/health?service={service}")
    };
    hc.validate("services.web.health.production").unwrap();
    let port = service.port.to_string();
    let values = vars(&[("port", &port), ("service", "web"), ("version", "3.1.4")]);
    let outcome = check(&client(), &hc, &values).await;
    assert!(outcome.ok, "{outcome:?}");
    // The version in the body must be the expected one.
    let once = HealthCheck { retries: 0, ..hc };
    let outcome = check(
        &client(),
        &once,
        &vars(&[("port", &port), ("service", "web"), ("version", "3.1.5")]),
    )
    .await;
    assert!(!outcome.ok, "{outcome:?}");
    assert!(
        outcome.detail.starts_with(&format!(
            "GET http://127.0.0.1:{port}/health?service=web: body does not contain \"\\\"version\\\":\\\"3.1.5\\\"\""
        )),
        "{outcome:?}"
    );
}

#[tokio::test]
async fn a_slow_answer_times_out() {
    let service = Service::start("1.2.0", &["--latency-ms", "3000"]);
    let hc = HealthCheck {
        timeout_seconds: 0.3,
        retries: 0,
        ..HealthCheck::new(format!("{}/", service.base))
    };
    let started = Instant::now();
    let outcome = check(&client(), &hc, &BTreeMap::new()).await;
    assert_eq!(
        outcome.detail,
        format!("GET {}/: timed out after 300 ms (1 attempt)", service.base)
    );
    assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
}
