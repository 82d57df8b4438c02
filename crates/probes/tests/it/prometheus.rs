//! The Prometheus provider against a real Prometheus server scraping the real example service.
//!
//! Needs the `prometheus` binary (Debian: `apt-get install prometheus`); the test starts it itself on a
//! loopback port with a temporary storage directory, and fails (never skips) when it is missing.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use probes::{MetricsConfig, MetricsReader, PrometheusConfig};
use tempfile::TempDir;

use crate::common::{client, free_port, vars, Service};

/// How long the server may take to start, find its target up, and have enough data.
const PATIENCE: Duration = Duration::from_secs(90);

fn prometheus_binary() -> PathBuf {
    let on_path = std::env::var_os("PATH")
        .map(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join("prometheus"))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    on_path
        .into_iter()
        .chain([PathBuf::from("/usr/bin/prometheus")])
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| {
            panic!(
                "the Prometheus server is not installed, and this test needs it: install Debian's package with \
                 `apt-get install prometheus`, or run `cargo xtask test`, which installs it (the test starts \
                 /usr/bin/prometheus itself; no systemd needed)"
            )
        })
}

/// A Prometheus server on a loopback port, storing into a temporary directory; killed on drop.
struct Prometheus {
    child: Child,
    dir: TempDir,
    base: String,
}

impl Prometheus {
    fn start(target: &str) -> Prometheus {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
                 scrape_configs:\n  - job_name: example\n    scrape_interval: 1s\n    scrape_timeout: 1s\n    \
                 static_configs:\n      - targets: ['{target}']\n"
            ),
        )
        .unwrap();
        let listen = format!("127.0.0.1:{}", free_port());
        let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
        let child = Command::new(prometheus_binary())
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
            .arg(format!("--web.listen-address={listen}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start prometheus");
        Prometheus {
            child,
            dir,
            base: format!("http://{listen}"),
        }
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// Panics with the server's log when it has exited or `deadline` has passed.
    fn check_alive(&mut self, deadline: Instant, waiting_for: &str) {
        if let Some(status) = self.child.try_wait().unwrap() {
            panic!(
                "prometheus exited ({status}) while waiting for {waiting_for}:\n{}",
                self.log_tail()
            );
        }
        assert!(
            Instant::now() < deadline,
            "gave up waiting for {waiting_for} after {PATIENCE:?}; prometheus log:\n{}",
            self.log_tail()
        );
    }

    /// An instant query's JSON answer, if the server answers.
    async fn query(&self, http: &reqwest::Client, expr: &str) -> Option<serde_json::Value> {
        let response = http
            .get(format!("{}/api/v1/query", self.base))
            .query(&[("query", expr)])
            .send()
            .await
            .ok()?;
        response.json().await.ok()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn first_value(answer: &serde_json::Value) -> Option<f64> {
    answer["data"]["result"][0]["value"][1].as_str()?.parse().ok()
}

#[tokio::test]
async fn reads_a_real_prometheus_server() {
    let service = Arc::new(Service::start("2.0.0", &["--fail-ratio", "0.08", "--latency-ms", "20"]));
    let target = service.base.trim_start_matches("http://").to_string();
    let mut prometheus = Prometheus::start(&target);
    let http = client();
    let deadline = Instant::now() + PATIENCE;

    // Wait until the server scrapes the service.
    loop {
        prometheus.check_alive(deadline, "the example service's target to be up");
        let up = prometheus.query(&http, "up{job=\"example\"}").await;
        if up.as_ref().and_then(first_value) == Some(1.0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    // Steady traffic from four clients until the test is done (or PATIENCE has passed).
    let stop = Arc::new(AtomicBool::new(false));
    let mut traffic = tokio::task::JoinSet::new();
    for _ in 0..4 {
        let (service, stop) = (service.clone(), stop.clone());
        traffic.spawn(async move {
            let until = Instant::now() + PATIENCE;
            while !stop.load(Ordering::Relaxed) && Instant::now() < until {
                service.traffic(1).await;
            }
        });
    }

    let window = "15s";
    let cfg = MetricsConfig::Prometheus(PrometheusConfig {
        url: prometheus.base.clone(),
        error_rate: format!(
            "sum(rate(example_http_requests_total{{version=\"{{version}}\",code=~\"5..\"}}[{window}])) \
             / sum(rate(example_http_requests_total{{version=\"{{version}}\"}}[{window}]))"
        ),
        latency_p99_ms: format!(
            "histogram_quantile(0.99, sum by (le) \
             (rate(example_http_request_duration_seconds_bucket{{version=\"{{version}}\"}}[{window}]))) * 1000"
        ),
        // The example service exports no resource gauges: a scalar and a vector stand in for them.
        cpu: Some("scalar(sum(example_up)) * 0.25".into()),
        memory: Some("sum(example_up{job=\"example\"}) * 0.5".into()),
        timeout_seconds: 5.0,
    });
    cfg.validate("services.web.metrics").unwrap();
    let values = vars(&[("version", "2.0.0")]);
    let reader = MetricsReader::new();

    // Poll until the window holds a few hundred requests, then judge that reading.
    let (sample, requests) = loop {
        prometheus.check_alive(deadline, "enough requests in Prometheus' window");
        let requests = prometheus
            .query(&http, &format!("sum(increase(example_http_requests_total[{window}]))"))
            .await
            .as_ref()
            .and_then(first_value)
            .unwrap_or(0.0);
        if requests >= 300.0 {
            if let Ok(sample) = reader.read(&cfg, &values).await {
                break (sample, requests);
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert!(
        (sample.error_rate - 0.08).abs() <= 0.01,
        "error rate {} (≈{requests} requests in the window)",
        sample.error_rate
    );
    // 20 ms per request: the (0.01, 0.025] bucket, a slower one if the machine is busy.
    assert!(
        sample.latency_p99_ms > 10.0 && sample.latency_p99_ms <= 100.0,
        "{sample:?}"
    );
    assert_eq!((sample.cpu, sample.memory), (Some(0.25), Some(0.5)));

    // What cannot give one number is an error saying so.
    let query = |error_rate: &str| {
        let MetricsConfig::Prometheus(p) = &cfg else {
            unreachable!()
        };
        MetricsConfig::Prometheus(PrometheusConfig {
            error_rate: error_rate.into(),
            ..p.clone()
        })
    };
    let none = "sum(rate(example_http_requests_total{version=\"0.0.0\"}[15s]))";
    assert_eq!(
        reader.read(&query(none), &values).await.unwrap_err(),
        format!("no data for error_rate: {none}")
    );
    let err = reader
        .read(&query("sum(rate(example_http_requests_total[15s]"), &values)
        .await
        .unwrap_err();
    assert!(err.starts_with("error_rate: Prometheus refused `sum(rate("), "{err}");
    let err = reader
        .read(&query("example_http_requests_total"), &values)
        .await
        .unwrap_err();
    assert!(err.contains("gives 2 series"), "{err}");
    let err = reader.read(&query("0 / 0"), &values).await.unwrap_err();
    assert!(err.contains("is NaN"), "{err}");

    stop.store(true, Ordering::Relaxed);
    while let Some(done) = traffic.join_next().await {
        done.unwrap();
    }

    // A server that is not there.
    let MetricsConfig::Prometheus(p) = &cfg else {
        unreachable!()
    };
    let gone = MetricsConfig::Prometheus(PrometheusConfig {
        url: format!("http://127.0.0.1:{}", free_port()),
        ..p.clone()
    });
    let err = reader.read(&gone, &values).await.unwrap_err();
    assert!(
        err.starts_with("error_rate: GET http://127.0.0.1:") && err.ends_with(": connection refused"),
        "{err}"
    );
}
