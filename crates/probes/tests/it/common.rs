//! Shared test helpers: the real `stagecoach-example` service, built once per test binary and run on
//! loopback ports.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use reqwest::StatusCode;

/// An HTTP client that ignores proxy settings (every test server is on loopback).
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

pub fn vars(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A running `stagecoach-example`; killed on drop.
pub struct Service {
    child: Child,
    pub base: String,
    pub port: u16,
    http: reqwest::Client,
}

impl Service {
    /// Starts version `version` on a free port, with extra arguments such as `--fail-ratio 0.1`.
    pub fn start(version: &str, args: &[&str]) -> Service {
        Service::start_on("127.0.0.1:0", version, args)
    }

    /// Starts it on `listen` (e.g. the port of a service that was just stopped).
    pub fn start_on(listen: &str, version: &str, args: &[&str]) -> Service {
        let mut child = Command::new(example_service::built_binary())
            .args(["--listen", listen, "--version", version])
            .args(args)
            .env_remove("EXAMPLE_FAIL_RATIO")
            .env_remove("EXAMPLE_LATENCY_MS")
            .env_remove("EXAMPLE_INSTANCE")
            .stdin(Stdio::null())
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
            .unwrap_or_else(|| panic!("stagecoach-example did not start: first line {line:?}"))
            .to_string();
        let port = base.rsplit(':').next().unwrap().parse().unwrap();
        Service {
            child,
            base,
            port,
            http: client(),
        }
    }

    pub async fn get(&self, path: &str) -> (StatusCode, String) {
        let response = self.http.get(format!("{}{path}", self.base)).send().await.unwrap();
        (response.status(), response.text().await.unwrap())
    }

    pub async fn post(&self, path: &str) {
        let response = self.http.post(format!("{}{path}", self.base)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "POST {path}");
    }

    /// `n` requests to `/`, one after the other.
    pub async fn traffic(&self, n: usize) {
        for _ in 0..n {
            let (status, _) = self.get("/").await;
            assert!(
                status == StatusCode::OK || status == StatusCode::INTERNAL_SERVER_ERROR,
                "{status}"
            );
        }
    }

    /// `n` requests to `/`, all at once.
    pub async fn concurrent_traffic(&self, n: usize) {
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..n {
            let request = self.http.get(format!("{}/", self.base)).send();
            tasks.spawn(async move { request.await.map(|r| r.status()) });
        }
        while let Some(status) = tasks.join_next().await {
            status.unwrap().unwrap();
        }
    }

    /// Kills the process and waits for it.
    pub fn stop(mut self) {
        self.kill();
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.kill();
    }
}
