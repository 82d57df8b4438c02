//! Runs the real `stagecoach-example` binary on a free loopback port and talks HTTP to it.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use reqwest::blocking::Client;
use reqwest::StatusCode;

/// A running service; killed on drop if a test ends without stopping it.
struct Service {
    child: Child,
    base: String,
    http: Client,
}

impl Service {
    fn start(args: &[&str]) -> Service {
        let mut child = Command::new(env!("CARGO_BIN_EXE_stagecoach-example"))
            .args(["--listen", "127.0.0.1:0", "--version", "1.2.0", "--instance", "3"])
            .args(args)
            .env_remove("EXAMPLE_FAIL_RATIO")
            .env_remove("EXAMPLE_LATENCY_MS")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start stagecoach-example");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let base = line
            .trim_end()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_string();
        assert!(base.starts_with("http://127.0.0.1:"), "{base}");
        let http = Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap();
        Service { child, base, http }
    }

    fn get(&self, path: &str) -> (StatusCode, String) {
        let response = self.http.get(format!("{}{path}", self.base)).send().unwrap();
        (response.status(), response.text().unwrap())
    }

    fn post(&self, path: &str) -> (StatusCode, String) {
        let response = self.http.post(format!("{}{path}", self.base)).send().unwrap();
        (response.status(), response.text().unwrap())
    }

    fn signal(&mut self, signal: Signal) -> ExitStatus {
        kill(Pid::from_raw(i32::try_from(self.child.id()).unwrap()), signal).unwrap();
        self.child.wait().unwrap()
    }

    /// The value of the sample whose name and labels are exactly `series`.
    fn metric(&self, series: &str) -> f64 {
        let (status, text) = self.get("/metrics");
        assert_eq!(status, StatusCode::OK);
        text.lines()
            .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
            .unwrap_or_else(|| panic!("no {series} in\n{text}"))
            .parse()
            .unwrap()
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const LABELS: &str = "version=\"1.2.0\",replica=\"3\"";

#[test]
fn fails_exactly_the_configured_share_and_counts_it() {
    let service = Service::start(&["--fail-ratio", "0.08"]);
    let mut ok = 0;
    let mut failed = 0;
    for _ in 0..100 {
        match service.get("/") {
            (StatusCode::OK, body) => {
                assert_eq!(body, "hello from example 1.2.0 (instance 3)");
                ok += 1;
            }
            (StatusCode::INTERNAL_SERVER_ERROR, _) => failed += 1,
            (status, body) => panic!("unexpected {status}: {body}"),
        }
    }
    assert_eq!((ok, failed), (92, 8));

    // Other endpoints do not count as requests to /.
    assert_eq!(service.get("/health").0, StatusCode::OK);
    let (status, text) = service.get("/metrics");
    assert_eq!(status, StatusCode::OK);
    assert!(text.contains("# TYPE example_http_requests_total counter\n"), "{text}");
    assert!(
        text.contains("# TYPE example_http_request_duration_seconds histogram\n"),
        "{text}"
    );
    assert!(text.contains("\nexample_up 1\n"), "{text}");
    assert!(text.contains("\nexample_build_info{version=\"1.2.0\"} 1\n"), "{text}");
    assert_eq!(
        service.metric(&format!("example_http_requests_total{{{LABELS},code=\"200\"}}")),
        92.0
    );
    assert_eq!(
        service.metric(&format!("example_http_requests_total{{{LABELS},code=\"500\"}}")),
        8.0
    );
    assert_eq!(
        service.metric(&format!("example_http_request_duration_seconds_count{{{LABELS}}}")),
        100.0
    );
    assert_eq!(
        service.metric(&format!(
            "example_http_request_duration_seconds_bucket{{{LABELS},le=\"+Inf\"}}"
        )),
        100.0
    );

    // The share can be changed at run time, and holds exactly from then on.
    let (status, body) = service.post("/admin/fail?ratio=0.5");
    assert_eq!(status, StatusCode::OK);
    let settings: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(settings["fail_ratio"], 0.5);
    let failed = (0..10)
        .filter(|_| service.get("/").0 == StatusCode::INTERNAL_SERVER_ERROR)
        .count();
    assert_eq!(failed, 5);
}

#[test]
fn added_latency_shows_in_answers_and_histogram() {
    let service = Service::start(&[]);
    let (status, body) = service.post("/admin/latency?ms=120");
    assert_eq!(status, StatusCode::OK);
    let settings: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(settings["latency_ms"], 120);
    assert_eq!(settings["version"], "1.2.0");
    for _ in 0..3 {
        let started = Instant::now();
        assert_eq!(service.get("/").0, StatusCode::OK);
        assert!(
            started.elapsed() >= Duration::from_millis(120),
            "{:?}",
            started.elapsed()
        );
    }
    let sum = service.metric(&format!("example_http_request_duration_seconds_sum{{{LABELS}}}"));
    assert!((0.36..10.0).contains(&sum), "sum {sum}");
    let bucket = |le: &str| {
        service.metric(&format!(
            "example_http_request_duration_seconds_bucket{{{LABELS},le=\"{le}\"}}"
        ))
    };
    assert_eq!(bucket("0.1"), 0.0);
    assert_eq!(bucket("+Inf"), 3.0);
}

#[test]
fn can_be_made_unhealthy_and_healthy_again() {
    let service = Service::start(&[]);
    let (status, body) = service.get("/health");
    assert_eq!(status, StatusCode::OK);
    let health: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(health["status"], "ok");
    assert_eq!(health["version"], "1.2.0");

    let (status, body) = service.post("/admin/health?ok=false");
    assert_eq!(status, StatusCode::OK);
    let settings: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(settings["healthy"], false);
    let (status, body) = service.get("/health");
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    let health: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(health["status"], "unhealthy");

    assert_eq!(service.post("/admin/health?ok=true").0, StatusCode::OK);
    assert_eq!(service.get("/health").0, StatusCode::OK);
}

#[test]
fn bad_admin_values_are_refused() {
    let service = Service::start(&[]);
    for path in [
        "/admin/fail",
        "/admin/fail?ratio=abc",
        "/admin/fail?ratio=1.5",
        "/admin/fail?ratio=-0.1",
        "/admin/fail?ratio=NaN",
        "/admin/latency?ms=-5",
        "/admin/latency?ms=fast",
        "/admin/latency?ms=600001",
        "/admin/health?ok=maybe",
        "/admin/health?ms=200",
    ] {
        let (status, body) = service.post(path);
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {body}");
        assert!(!body.trim().is_empty(), "{path} gives no message");
    }
    // Nothing changed.
    let (status, body) = service.post("/admin/latency?ms=0");
    assert_eq!(status, StatusCode::OK);
    let settings: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(settings["fail_ratio"], 0.0);
    assert_eq!(settings["healthy"], true);
}

#[test]
fn sigterm_stops_it_cleanly() {
    let mut service = Service::start(&[]);
    assert_eq!(service.get("/").0, StatusCode::OK);
    let status = service.signal(Signal::SIGTERM);
    assert_eq!(status.code(), Some(0), "{status}");
}

#[test]
fn sigint_stops_it_cleanly() {
    let mut service = Service::start(&[]);
    let status = service.signal(Signal::SIGINT);
    assert_eq!(status.code(), Some(0), "{status}");
}

#[test]
fn refuses_non_loopback_addresses() {
    let output = Command::new(env!("CARGO_BIN_EXE_stagecoach-example"))
        .args(["--listen", "0.0.0.0:0", "--version", "1.2.0"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(output.stdout.is_empty());
    assert!(String::from_utf8_lossy(&output.stderr).contains("not a loopback address"));
}
