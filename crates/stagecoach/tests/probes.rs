//! The daemon watching a real service: `stagecoach-example` on 127.0.0.1
//! with steady traffic, its `/health` as the production health check and
//! its Prometheus `/metrics` scraped for the error rate. Turning the service
//! bad in the middle of a canary must roll the release back.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use common::*;
use serde_json::{json, Value};

/// A running example service with a client thread sending it requests
/// until dropped.
struct Service {
    child: Child,
    base: String,
    stop: Arc<AtomicBool>,
}

impl Service {
    fn start(version: &str) -> Service {
        let mut child = Command::new(example_service::built_binary())
            .args(["--listen", "127.0.0.1:0", "--version", version])
            .env_remove("EXAMPLE_FAIL_RATIO")
            .env_remove("EXAMPLE_LATENCY_MS")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start stagecoach-example");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("read the listening line");
        let base = line
            .trim_end()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("stagecoach-example did not start: {line:?}"))
            .to_string();
        let stop = Arc::new(AtomicBool::new(false));
        let (url, flag) = (format!("{base}/"), stop.clone());
        std::thread::spawn(move || {
            let client = reqwest::blocking::Client::builder().no_proxy().build().expect("client");
            while !flag.load(Ordering::Relaxed) {
                let _ = client.get(&url).send();
            }
        });
        Service { child, base, stop }
    }

    fn admin(&self, path: &str) {
        let client = reqwest::blocking::Client::builder().no_proxy().build().expect("client");
        let r = client
            .post(format!("{}{path}", self.base))
            .send()
            .expect("admin request");
        assert!(r.status().is_success(), "POST {path}: {}", r.status());
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn config(service: &Service) -> Config {
    Config {
        // Long enough for the canary to see the change.
        analysis_minutes: 0.1,
        extra: format!(
            "[services.web.health.production]\nurl = \"{0}/health\"\nretries = 1\nbackoff_seconds = 0.1\ntimeout_seconds = 2\n\n\
             [services.web.metrics]\nprovider = \"scrape\"\ntargets = [\"{0}/metrics\"]\ninterval_seconds = 0.5\ntimeout_seconds = 2\n",
            service.base
        ),
        ..Config::default()
    }
    .principal("alice", &["deployer"])
}

/// The harness (owning the state dir), the daemon, the deployment and its events.
fn deploy_until_first_canary_step(service: &Service) -> (Harness, Daemon, String, Events) {
    let mut h = Harness::new(&config(service));
    let d = h.start();
    let id = id_of_record(&d.submit(
        &alice(),
        &json!({"service": "web", "version": "2.0.0", "strategy": "canary"}),
    ));
    let mut events = d.events(&id, &alice());
    events.wait_fact("the first canary step", |f| {
        is_fact(f, "deploy_step") && f["step"].as_str().is_some_and(|s| s.starts_with("Canary at 10%"))
    });
    (h, d, id, events)
}

fn alice() -> String {
    token("alice")
}

fn id_of_record(record: &Value) -> String {
    record["id"].as_str().expect("record id").to_string()
}

#[test]
fn an_error_rate_rising_on_the_real_metrics_endpoint_rolls_back() {
    let service = Service::start("2.0.0");
    let (_h, d, id, mut events) = deploy_until_first_canary_step(&service);
    // 8 % of requests now fail; the scrape provider sees the counter rise.
    service.admin("/admin/fail?ratio=0.08");
    assert_eq!(events.wait_finished(), "rolled_back", "entries:\n{}", events.summary());
    let record = d.record(&id, &alice());
    let trigger = record["rollback"]["trigger"].as_str().unwrap_or_default().to_string();
    assert!(trigger.contains("error_rate"), "rollback trigger: {trigger}");
    let seen: Vec<f64> = record["monitoring"]["samples"]
        .as_array()
        .expect("samples")
        .iter()
        .filter_map(|s| s["sample"]["error_rate"].as_f64())
        .collect();
    assert!(
        seen.iter().any(|e| *e > 0.05),
        "an error rate over 5 % was recorded: {seen:?}"
    );
}

#[test]
fn a_health_endpoint_going_down_mid_rollout_rolls_back() {
    let service = Service::start("2.0.0");
    let (_h, d, id, mut events) = deploy_until_first_canary_step(&service);
    service.admin("/admin/health?ok=false");
    assert_eq!(events.wait_finished(), "rolled_back", "entries:\n{}", events.summary());
    let record = d.record(&id, &alice());
    assert_eq!(
        record["rollback"]["trigger"], "critical_functionality_broken",
        "{}",
        record["rollback"]
    );
}
