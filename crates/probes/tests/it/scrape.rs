//! The scrape provider against the real example service's `/metrics`.

use std::collections::BTreeMap;
use std::time::Duration;

use probes::{MetricsConfig, MetricsReader, ScrapeConfig};

use crate::common::{vars, Service};

/// Scrapes `http://127.0.0.1:{port}/metrics`, counting only `version="{version}"`, one second apart.
fn config() -> ScrapeConfig {
    let mut cfg = ScrapeConfig::new(["http://127.0.0.1:{port}/metrics"]);
    cfg.match_labels.insert("version".into(), "{version}".into());
    cfg.interval_seconds = 1.0;
    cfg
}

fn service_vars(service: &Service, version: &str) -> BTreeMap<String, String> {
    vars(&[("port", &service.port.to_string()), ("version", version)])
}

#[tokio::test]
async fn the_error_rate_is_exact_and_no_traffic_is_inconclusive() {
    let service = Service::start("2.0.0", &[]);
    let cfg = MetricsConfig::Scrape(config());
    cfg.validate("services.web.metrics").unwrap();
    let values = service_vars(&service, "2.0.0");
    let reader = MetricsReader::new();

    // No request between the two scrapes: no error rate can be computed.
    let err = reader.read(&cfg, &values).await.unwrap_err();
    assert!(
        err.starts_with(&format!(
            "no requests counted by example_http_requests_total{{version=\"2.0.0\"}} on {}/metrics in the last 1",
            service.base
        )),
        "{err}"
    );

    // The reader remembers that read's last scrape: the next read counts everything since then.
    service.post("/admin/fail?ratio=0.08").await;
    service.traffic(200).await;
    let sample = reader.read(&cfg, &values).await.unwrap();
    assert_eq!(sample.error_rate, 0.08, "{sample:?}");
    assert!(
        sample.latency_p99_ms > 0.0 && sample.latency_p99_ms < 100.0,
        "{sample:?}"
    );
    // No CPU or memory gauge is configured: they are not measured, not zero.
    assert_eq!((sample.cpu, sample.memory), (None, None));

    // Another version's series do not count.
    let err = reader.read(&cfg, &service_vars(&service, "9.9.9")).await.unwrap_err();
    assert!(
        err.starts_with("no data for error_rate: no series example_http_requests_total{version=\"9.9.9\"} on"),
        "{err}"
    );
}

#[tokio::test]
async fn the_p99_latency_comes_from_the_histogram() {
    let service = Service::start("2.0.0", &["--latency-ms", "120"]);
    let mut cfg = config();
    cfg.interval_seconds = 2.0;
    let cfg = MetricsConfig::Scrape(cfg);
    let values = service_vars(&service, "2.0.0");
    // A fresh reader scrapes twice, two seconds apart; the traffic happens in between.
    let reader = MetricsReader::new();
    let (sample, ()) = tokio::join!(reader.read(&cfg, &values), async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        service.concurrent_traffic(10).await;
    });
    let sample = sample.unwrap();
    assert!(
        sample.latency_p99_ms > 100.0 && sample.latency_p99_ms <= 250.0,
        "{sample:?}"
    );
    assert_eq!(sample.error_rate, 0.0);
}

#[tokio::test]
async fn targets_are_summed_and_filtered_by_labels() {
    let old = Service::start("1.0.0", &[]);
    let new = Service::start("2.0.0", &["--fail-ratio", "0.5"]);
    let targets = [old.base.clone() + "/metrics", new.base.clone() + "/metrics"];
    let mut all = ScrapeConfig::new(targets.clone());
    all.interval_seconds = 0.5;
    let all = MetricsConfig::Scrape(all);
    let mut only_new = ScrapeConfig::new(targets);
    only_new.interval_seconds = 0.5;
    only_new.match_labels.insert("version".into(), "{version}".into());
    let only_new = MetricsConfig::Scrape(only_new);
    let values = vars(&[("version", "2.0.0")]);

    let (reader_all, reader_new) = (MetricsReader::new(), MetricsReader::new());
    assert!(reader_all.read(&all, &values).await.is_err());
    assert!(reader_new.read(&only_new, &values).await.is_err());
    old.traffic(100).await;
    new.traffic(100).await;
    assert_eq!(reader_all.read(&all, &values).await.unwrap().error_rate, 0.25);
    assert_eq!(reader_new.read(&only_new, &values).await.unwrap().error_rate, 0.5);
}

#[tokio::test]
async fn a_restarted_service_is_inconclusive_once() {
    let service = Service::start("2.0.0", &[]);
    let port = service.port;
    let cfg = MetricsConfig::Scrape(config());
    let values = service_vars(&service, "2.0.0");
    let reader = MetricsReader::new();
    assert!(reader.read(&cfg, &values).await.is_err());
    service.traffic(30).await;
    assert_eq!(reader.read(&cfg, &values).await.unwrap().error_rate, 0.0);

    // Same address, new process: its counters start again from zero.
    service.stop();
    let service = Service::start_on(&format!("127.0.0.1:{port}"), "2.0.0", &["--fail-ratio", "0.1"]);
    service.traffic(10).await;
    let err = reader.read(&cfg, &values).await.unwrap_err();
    assert!(
        err.contains(&format!("on http://127.0.0.1:{port}/metrics went backwards"))
            && err.contains("the process restarted"),
        "{err}"
    );

    // That read measured from the new process' counters: the next one is conclusive again.
    service.traffic(20).await;
    assert_eq!(reader.read(&cfg, &values).await.unwrap().error_rate, 0.1);
}

#[tokio::test]
async fn an_unreachable_target_is_an_error() {
    let port = crate::common::free_port().to_string();
    let reader = MetricsReader::new();
    let err = reader
        .read(
            &MetricsConfig::Scrape(config()),
            &vars(&[("port", &port), ("version", "1")]),
        )
        .await
        .unwrap_err();
    assert_eq!(err, format!("GET http://127.0.0.1:{port}/metrics: connection refused"));
}
