//! Harness for the daemon's integration tests: starts the real `stagecoach
//! daemon` binary on 127.0.0.1 with its own state dir and an OS-chosen port,
//! collects its stderr, and drives it through the API's typed client (the
//! `client` crate: requests, answers and the event stream, which closes
//! when dropped). [`Daemon::request`] sends raw HTTP, for the requests a
//! typed client cannot send: malformed or oversized bodies, unknown fields,
//! values outside the API's enums, unknown routes.
//!
//! Every wait has an overall timeout ([`WAIT`]); when a test fails, the
//! [`Harness`] prints everything every daemon it started wrote to stderr.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use client::wire::{ApprovalRequest, Decision, EventsQuery, ListQuery, SubmitRequest};
use client::{EventStream, StreamError};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// Longest any single wait may take before the test fails.
pub const WAIT: Duration = Duration::from_secs(90);

/// Statuses after which a deployment does nothing more on its own.
pub const TERMINAL: &[&str] = &[
    "succeeded",
    "rolled_back",
    "failed",
    "rejected",
    "escalated",
    "cancelled",
];

/// The bearer token of a principal of the test configuration.
pub fn token(name: &str) -> String {
    format!("{name}-token-0123456789")
}

fn sha256_hex(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A test configuration, rendered as TOML layered over the bundled defaults:
/// windows open around the clock and every wait cut down to seconds.
#[derive(Debug, Clone)]
pub struct Config {
    pub manager_human: bool,
    pub security_human: bool,
    pub standard_monitoring_minutes: f64,
    pub hotfix_monitoring_minutes: f64,
    pub analysis_minutes: f64,
    pub checkpoint_minute: f64,
    /// (name, roles)
    pub principals: Vec<(String, Vec<String>)>,
    /// Commands of service `web`: (action, script run with `sh`).
    pub actions: Vec<(String, PathBuf)>,
    /// More TOML, appended as is.
    pub extra: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            manager_human: false,
            security_human: false,
            standard_monitoring_minutes: 0.1,
            hotfix_monitoring_minutes: 0.1,
            analysis_minutes: 0.05,
            checkpoint_minute: 0.05,
            principals: vec![],
            actions: vec![],
            extra: String::new(),
        }
    }
}

impl Config {
    pub fn principal(mut self, name: &str, roles: &[&str]) -> Self {
        self.principals
            .push((name.to_string(), roles.iter().map(|r| r.to_string()).collect()));
        self
    }

    pub fn action(mut self, action: &str, script: &Path) -> Self {
        self.actions.push((action.to_string(), script.to_path_buf()));
        self
    }

    pub fn render(&self) -> String {
        let mut t = String::new();
        t.push_str("[windows]\nnever_days = []\n\n");
        t.push_str("[[windows.allowed]]\n");
        t.push_str("days = [\"mon\", \"tue\", \"wed\", \"thu\", \"fri\", \"sat\", \"sun\"]\n");
        t.push_str("start = \"00:00\"\nend = \"24:00\"\n\n");
        t.push_str(&format!(
            "[types.standard]\nmonitoring_minutes = {}\n\n",
            self.standard_monitoring_minutes
        ));
        t.push_str(&format!(
            "[types.hotfix]\nmonitoring_minutes = {}\n\n",
            self.hotfix_monitoring_minutes
        ));
        t.push_str(&format!(
            "[strategies.canary]\nsteps = [10, 50, 100]\nanalysis_minutes = {}\n\n",
            self.analysis_minutes
        ));
        t.push_str("[monitoring]\nsample_interval_minutes = 0.02\n\n");
        t.push_str(&format!(
            "[[monitoring.checkpoints]]\nminute = {}\ncheck = \"initial_health\"\n\n",
            self.checkpoint_minute
        ));
        for (role, human) in [("manager", self.manager_human), ("security", self.security_human)] {
            if human {
                t.push_str(&format!(
                    "[agents.{role}]\nmode = \"human\"\napproval_timeout_minutes = 10\n\n"
                ));
            }
        }
        for (name, roles) in &self.principals {
            let roles: Vec<String> = roles.iter().map(|r| format!("{r:?}")).collect();
            t.push_str(&format!(
                "[[principals]]\nname = {name:?}\nroles = [{}]\ntoken_sha256 = {:?}\n\n",
                roles.join(", "),
                sha256_hex(&token(name))
            ));
        }
        for (action, script) in &self.actions {
            let script = script.to_str().expect("temp paths are UTF-8");
            t.push_str(&format!(
                "[services.web.actions.{action}]\nargv = [\"sh\", {script:?}]\ntimeout_seconds = 30\n\n"
            ));
        }
        t.push_str(&self.extra);
        t
    }
}

/// Everything the daemons of one test wrote to stderr/stdout.
#[derive(Clone, Default)]
pub struct Logs(Arc<(Mutex<String>, std::sync::Condvar)>);

impl Logs {
    fn push(&self, line: &str) {
        let mut logs = self.0 .0.lock().unwrap_or_else(|e| e.into_inner());
        logs.push_str(line);
        logs.push('\n');
        self.0 .1.notify_all();
    }

    pub fn text(&self) -> String {
        self.0 .0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Waits (at most [`WAIT`]) until `needle` has appeared `times` times in the output.
    pub fn wait_for(&self, needle: &str, times: usize) {
        let deadline = Instant::now() + WAIT;
        let mut logs = self.0 .0.lock().unwrap_or_else(|e| e.into_inner());
        while logs.matches(needle).count() < times {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "{needle:?} did not appear {times} times in the daemon's output"
            );
            logs = self.0 .1.wait_timeout(logs, left).unwrap_or_else(|e| e.into_inner()).0;
        }
    }
}

/// Removes ANSI escape sequences (colours) from a log line.
pub fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            if chars.peek() == Some(&'[') {
                chars.next();
                // Parameters and intermediates up to the final byte (@ to ~).
                for c in chars.by_ref() {
                    if ('@'..='~').contains(&c) {
                        break;
                    }
                }
            }
            continue;
        }
        out.push(c);
    }
    out
}

/// The URL in a line such as `… stagecoach daemon listening on http://127.0.0.1:4711 state_dir=…`.
pub fn listening_url(line: &str) -> Option<String> {
    let line = strip_ansi(line);
    if !line.contains("stagecoach daemon listening on ") {
        return None;
    }
    let (_, rest) = line.split_once("listening on ")?;
    rest.split_whitespace().next().map(|u| u.to_string())
}

/// One test's world: a temp dir with the state dir, the configuration and
/// the hook scripts, and the logs of every daemon started in it.
pub struct Harness {
    pub dir: tempfile::TempDir,
    /// `Some`: passed as `--state-dir`; `None`: the default (`.stagecoach` in the working directory).
    pub state_dir: Option<PathBuf>,
    pub config: Option<PathBuf>,
    pub logs: Logs,
    /// Extra environment of the daemons this harness starts.
    pub env: Vec<(String, String)>,
    starts: usize,
}

impl Harness {
    /// A harness with `config` written to `DIR/config.toml` and state in `DIR/state`.
    pub fn new(config: &Config) -> Harness {
        let mut h = Harness::bare();
        h.configure(config);
        h
    }

    /// Writes `config` to `DIR/config.toml` and uses it, with state in `DIR/state`.
    pub fn configure(&mut self, config: &Config) {
        let path = self.path("config.toml");
        std::fs::write(&path, config.render()).expect("write the config");
        self.config = Some(path);
        self.state_dir = Some(self.path("state"));
    }

    /// A harness without configuration file and without `--state-dir`.
    pub fn bare() -> Harness {
        Harness {
            dir: tempfile::tempdir().expect("temp dir"),
            state_dir: None,
            config: None,
            logs: Logs::default(),
            env: vec![],
            starts: 0,
        }
    }

    /// A path inside the temp dir.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Writes a shell script into the temp dir and returns its path.
    pub fn script(&self, name: &str, body: &str) -> PathBuf {
        let path = self.path(name);
        std::fs::write(&path, body).expect("write a hook script");
        path
    }

    /// The state dir the daemon uses.
    pub fn state(&self) -> PathBuf {
        self.state_dir.clone().unwrap_or_else(|| self.path(".stagecoach"))
    }

    /// The daemon command for this harness (not started).
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_stagecoach"));
        cmd.arg("daemon").args(["--listen", "127.0.0.1:0"]);
        if let Some(c) = &self.config {
            cmd.arg("--config").arg(c);
        }
        if let Some(s) = &self.state_dir {
            cmd.arg("--state-dir").arg(s);
        }
        cmd.current_dir(self.dir.path())
            .env("NO_COLOR", "1")
            .env_remove("RUST_LOG")
            .env_remove("STAGECOACH_TOKEN")
            .stdin(Stdio::null());
        for (key, _) in std::env::vars() {
            if key.starts_with("STAGECOACH__") || key.starts_with("STAGECOACH_FAULT_") {
                cmd.env_remove(key);
            }
        }
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        cmd
    }

    /// Starts a daemon and waits until it reports the address it listens on.
    pub fn start(&mut self) -> Daemon {
        let cmd = self.command();
        self.start_command(cmd)
    }

    /// Starts `cmd` (a `stagecoach daemon` command) and waits until it reports its address.
    pub fn start_command(&mut self, mut cmd: Command) -> Daemon {
        self.starts += 1;
        let n = self.starts;
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the stagecoach daemon");
        let (tx, rx) = mpsc::channel();
        let stderr = child.stderr.take().expect("piped stderr");
        let stdout = child.stdout.take().expect("piped stdout");
        let logs = self.logs.clone();
        logs.push(&format!("----- daemon #{n} (pid {}) -----", child.id()));
        drain(stderr, format!("daemon#{n}"), logs.clone(), Some(tx));
        drain(stdout, format!("daemon#{n} stdout"), logs.clone(), None);
        let url = match rx.recv_timeout(WAIT) {
            Ok(url) => url,
            Err(_) => {
                let _ = child.kill();
                let status = child.wait().ok();
                panic!("daemon #{n} did not report `stagecoach daemon listening on …` (exit status: {status:?})");
            }
        };
        Daemon {
            pid: child.id(),
            child: Some(child),
            url,
            logs,
            raw: reqwest::blocking::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("http client"),
        }
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "===== daemon output ({}) =====\n{}===== end of daemon output =====",
                self.dir.path().display(),
                self.logs.text()
            );
        }
    }
}

/// Copies lines of `from` into `logs` (ANSI stripped); sends the listening URL once seen.
fn drain(from: impl Read + Send + 'static, label: String, logs: Logs, url: Option<Sender<String>>) {
    std::thread::spawn(move || {
        let mut reader = BufReader::new(from);
        let mut url = url;
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match reader.read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            let line = strip_ansi(String::from_utf8_lossy(&buf).trim_end());
            logs.push(&format!("[{label}] {line}"));
            if let Some(found) = listening_url(&line) {
                if let Some(tx) = url.take() {
                    let _ = tx.send(found);
                }
            }
        }
    });
}

/// A process's exit status, stdout and stderr, waiting at most [`WAIT`].
pub fn run_with_timeout(cmd: Command, what: &str) -> Output {
    run_within(cmd, what, WAIT)
}

/// A process's exit status, stdout and stderr, waiting at most `limit`.
pub fn run_within(mut cmd: Command, what: &str, limit: Duration) -> Output {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{what}: cannot start: {e}"));
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(limit) {
        Ok(Ok(out)) => out,
        Ok(Err(e)) => panic!("{what}: cannot wait for it: {e}"),
        Err(_) => {
            let _ = nix::sys::signal::kill(pid_of(pid), nix::sys::signal::Signal::SIGKILL);
            panic!("{what}: did not exit within {limit:?}");
        }
    }
}

fn pid_of(pid: u32) -> nix::unistd::Pid {
    nix::unistd::Pid::from_raw(i32::try_from(pid).expect("pid fits in i32"))
}

/// Kills a process the test (or a hook it configured) started, ignoring "no such process".
pub fn kill_pid(pid: i32) {
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
}

/// A raw HTTP answer (of [`Daemon::request`]).
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub text: String,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text)
            .unwrap_or_else(|e| panic!("response is not JSON ({e}): {} {}", self.status, self.text))
    }

    /// The JSON body, after checking the status.
    pub fn expect(&self, status: u16, what: &str) -> Value {
        assert_eq!(self.status, status, "{what}: unexpected status; body: {}", self.text);
        self.json()
    }

    /// Checks an error answer: the status and a `{"error": {"code", "message"}}` body.
    pub fn expect_error(&self, status: u16, code: &str, what: &str) -> String {
        let body = self.expect(status, what);
        let error = &body["error"];
        assert_eq!(error["code"].as_str(), Some(code), "{what}: error.code; body: {body}");
        let message = error["message"].as_str().unwrap_or_default();
        assert!(
            !message.trim().is_empty(),
            "{what}: error.message is empty; body: {body}"
        );
        message.to_string()
    }
}

/// One running daemon.
pub struct Daemon {
    child: Option<Child>,
    pub pid: u32,
    /// `http://127.0.0.1:PORT`
    pub url: String,
    pub logs: Logs,
    raw: reqwest::blocking::Client,
}

/// Checks an error of the typed client: the daemon answered `status` with
/// the API's `{"error": {"code", "message"}}` body; returns the message.
pub fn expect_error<T: std::fmt::Debug>(
    result: Result<T, client::Error>,
    status: u16,
    code: &str,
    what: &str,
) -> String {
    let error = match result {
        Ok(answer) => panic!("{what}: expected {status} {code}, got an answer: {answer:?}"),
        Err(client::Error::Api(e)) => e,
        Err(e) => panic!("{what}: expected {status} {code}, got no answer: {e}"),
    };
    assert_eq!(
        error.status, status,
        "{what}: unexpected status; body: {:?}",
        error.body
    );
    assert_eq!(
        error.code.as_deref(),
        Some(code),
        "{what}: error.code; body: {:?}",
        error.body
    );
    assert!(
        !error.message.trim().is_empty(),
        "{what}: error.message is empty; body: {:?}",
        error.body
    );
    error.message
}

/// An approval request: `role`, approve or reject, and the reason.
pub fn approval(role: &str, decision: Decision, reason: Option<&str>) -> ApprovalRequest {
    ApprovalRequest {
        role: role.to_string(),
        decision,
        reason: reason.map(str::to_string),
    }
}

/// The answer of the typed client, or a failed test naming `what`.
pub fn ok<T>(result: Result<T, client::Error>, what: &str) -> T {
    result.unwrap_or_else(|e| panic!("{what}: {e}"))
}

/// A typed answer as JSON, for assertions over its fields.
pub fn json_of<T: serde::Serialize>(answer: &T) -> Value {
    serde_json::to_value(answer).expect("an answer serialises")
}

impl Daemon {
    /// The `127.0.0.1:PORT` part of the URL.
    pub fn addr(&self) -> &str {
        self.url.trim_start_matches("http://")
    }

    /// The API's client, sending `token`.
    pub fn api(&self, token: &str) -> client::Client {
        client::Client::new(&self.url, token).expect("a client of the daemon")
    }

    /// The API's client without a token (`/healthz`, `/metrics`, and the 401 of every other route).
    pub fn anonymous(&self) -> client::Client {
        client::Client::builder(&self.url)
            .and_then(|b| b.build())
            .expect("a client of the daemon")
    }

    /// Raw HTTP, for what the typed client cannot send (see the module's documentation).
    pub fn request(&self, method: &str, path: &str, token: Option<&str>, body: Option<Vec<u8>>) -> Resp {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("HTTP method");
        let mut req = self.raw.request(method.clone(), format!("{}{path}", self.url));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.header("content-type", "application/json").body(b);
        }
        let resp = req
            .send()
            .unwrap_or_else(|e| panic!("{method} {path}: request failed: {e}"));
        let status = resp.status().as_u16();
        let text = resp
            .text()
            .unwrap_or_else(|e| panic!("{method} {path}: cannot read the body: {e}"));
        Resp { status, text }
    }

    /// Raw `GET`.
    pub fn get(&self, path: &str, token: &str) -> Resp {
        self.request("GET", path, Some(token), None)
    }

    /// Raw `POST` of a JSON body.
    pub fn post(&self, path: &str, token: &str, body: &Value) -> Resp {
        self.request("POST", path, Some(token), Some(body.to_string().into_bytes()))
    }

    /// Submits a deployment (a body of `SubmitRequest`'s fields) and returns the record.
    pub fn submit(&self, token: &str, body: &Value) -> Value {
        let request: SubmitRequest = serde_json::from_value(body.clone())
            .unwrap_or_else(|e| panic!("not a submission the client can send ({e}): {body}"));
        json_of(&ok(self.api(token).submit(&request), "submit a deployment"))
    }

    /// The record of a deployment.
    pub fn record(&self, id: &str, token: &str) -> Value {
        json_of(&ok(self.api(token).deployment(id), "get a deployment"))
    }

    /// `GET /v1/deployments/{id}/verify`.
    pub fn verify(&self, id: &str, token: &str) -> Value {
        json_of(&ok(self.api(token).verify(id), "verify a deployment"))
    }

    /// The first page of `GET /v1/deployments` with these filters.
    pub fn list(&self, token: &str, service: Option<&str>, status: Option<&str>) -> Value {
        let query = ListQuery {
            service: service.map(str::to_string),
            status: status.map(str::to_string),
            ..ListQuery::default()
        };
        json_of(&ok(self.api(token).list_page(&query), "list deployments"))
    }

    /// `POST /v1/deployments/{id}/approvals` as the principal of `token`.
    pub fn decide(&self, id: &str, token: &str, request: &ApprovalRequest) -> Result<Value, client::Error> {
        self.api(token).decide(id, request).map(|r| json_of(&r))
    }

    /// Follows `GET /v1/events?after=SEQ` (every deployment) from the entry after `after`.
    pub fn all_events(&self, after: u64, token: &str) -> Events {
        let query = EventsQuery {
            deployment: None,
            after: Some(after),
        };
        Events::open(&self.api(token), &query, "events of every deployment".into())
    }

    /// Follows `GET /v1/events?deployment=ID` from the first entry.
    pub fn events(&self, deployment: &str, token: &str) -> Events {
        let query = EventsQuery {
            deployment: Some(deployment.to_string()),
            after: None,
        };
        Events::open(&self.api(token), &query, format!("events of {deployment}"))
    }

    /// SIGKILL, and reaps the process.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().expect("SIGKILL the daemon");
            child.wait().expect("reap the daemon");
        }
    }

    /// Waits (at most [`WAIT`]) for the daemon to exit by itself.
    pub fn wait_exit(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("the daemon is running");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(child.wait());
        });
        match rx.recv_timeout(WAIT) {
            Ok(status) => status.expect("wait for the daemon"),
            Err(_) => {
                kill_pid(pid_of(self.pid).as_raw());
                panic!("the daemon did not exit by itself within {WAIT:?}");
            }
        }
    }

    /// SIGTERM, and waits (at most [`WAIT`]) for the exit status.
    pub fn terminate(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("the daemon is running");
        nix::sys::signal::kill(pid_of(self.pid), nix::sys::signal::Signal::SIGTERM).expect("SIGTERM the daemon");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(child.wait());
        });
        match rx.recv_timeout(WAIT) {
            Ok(status) => status.expect("wait for the daemon"),
            Err(_) => {
                kill_pid(pid_of(self.pid).as_raw());
                panic!("the daemon did not exit within {WAIT:?} of SIGTERM");
            }
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

// ---- the event stream --------------------------------------------------------------

/// A server-sent event stream of journal entries, read through the typed
/// client; dropping it closes the connection.
pub struct Events {
    label: String,
    stream: EventStream,
    ended: bool,
    /// Every entry received so far, in order, as the daemon sent it.
    pub seen: Vec<Value>,
}

/// Why no entry came.
enum NoEntry {
    TimedOut,
    Ended,
}

impl Events {
    fn open(api: &client::Client, query: &EventsQuery, label: String) -> Events {
        let stream = api
            .events(query)
            .unwrap_or_else(|e| panic!("{label}: cannot open the event stream: {e}"));
        Events {
            label,
            stream,
            ended: false,
            seen: vec![],
        }
    }

    /// The next entry as JSON, checked to be one the typed client reads whole.
    fn next(&mut self, deadline: Instant) -> Result<Value, NoEntry> {
        if self.ended {
            return Err(NoEntry::Ended);
        }
        match self.stream.next_entry_before(deadline) {
            Ok(Some(received)) => {
                let sent = received.json["body"]["facts"].as_array().map_or(0, Vec::len);
                assert_eq!(
                    received.entry.body.facts().len(),
                    sent,
                    "{}: the client could not read every fact of {}",
                    self.label,
                    received.json
                );
                Ok(received.json)
            }
            Ok(None) | Err(StreamError::Broken(_)) => {
                self.ended = true;
                Err(NoEntry::Ended)
            }
            Err(StreamError::TimedOut) => Err(NoEntry::TimedOut),
            Err(e @ StreamError::Undecodable { .. }) => panic!("{}: {e}", self.label),
        }
    }

    /// The next entry, or `None` when the stream ended or nothing came before `deadline`.
    pub fn next_before(&mut self, deadline: Instant) -> Option<Value> {
        let entry = self.next(deadline).ok()?;
        self.seen.push(entry.clone());
        Some(entry)
    }

    /// Waits (at most [`WAIT`]) for the first new entry for which `check` returns `Some`.
    pub fn wait_for<T>(&mut self, what: &str, check: impl FnMut(&Value) -> Option<T>) -> T {
        self.wait_for_within(WAIT, what, check)
    }

    /// [`Events::wait_for`] with another limit than [`WAIT`].
    pub fn wait_for_within<T>(&mut self, limit: Duration, what: &str, mut check: impl FnMut(&Value) -> Option<T>) -> T {
        let deadline = Instant::now() + limit;
        loop {
            match self.next(deadline) {
                Ok(entry) => {
                    let found = check(&entry);
                    self.seen.push(entry);
                    if let Some(t) = found {
                        return t;
                    }
                }
                Err(NoEntry::TimedOut) => panic!(
                    "{}: timed out after {limit:?} waiting for {what}; entries so far:\n{}",
                    self.label,
                    self.summary()
                ),
                Err(NoEntry::Ended) => panic!(
                    "{}: the stream ended while waiting for {what}; entries so far:\n{}",
                    self.label,
                    self.summary()
                ),
            }
        }
    }

    /// Waits until the deployment's status becomes `status`; fails early when
    /// it ends with another one.
    pub fn wait_status(&mut self, status: &str) {
        let what = format!("status {status}");
        let ended = self.wait_for(&what, |e| {
            statuses(e)
                .into_iter()
                .find(|s| s == status || TERMINAL.contains(&s.as_str()))
        });
        assert_eq!(
            ended,
            status,
            "{}: the deployment ended with {ended} while waiting for {status}; entries:\n{}",
            self.label,
            self.summary()
        );
    }

    /// Waits until the deployment ends; returns its final status.
    pub fn wait_finished(&mut self) -> String {
        self.wait_for("the deployment to end", |e| {
            statuses(e).into_iter().find(|s| TERMINAL.contains(&s.as_str()))
        })
    }

    /// Waits for a fact for which `check` holds; returns the whole entry.
    pub fn wait_fact(&mut self, what: &str, check: impl Fn(&Value) -> bool) -> Value {
        self.wait_for(what, |e| facts(e).into_iter().any(&check).then(|| e.clone()))
    }

    /// A compact listing of the entries seen, for failure messages.
    pub fn summary(&self) -> String {
        let start = self.seen.len().saturating_sub(40);
        self.seen[start..]
            .iter()
            .map(|e| {
                let facts: Vec<String> = facts(e)
                    .iter()
                    .map(|f| {
                        let name = f["fact"].as_str().unwrap_or("?");
                        let detail = ["status", "stage", "step", "event"]
                            .iter()
                            .find_map(|k| f[*k].as_str())
                            .unwrap_or("");
                        format!("{name}({detail})")
                    })
                    .collect();
                format!(
                    "  #{} seq {} {} {}",
                    e["index"],
                    e["seq"],
                    e["kind"].as_str().unwrap_or("?"),
                    facts.join(" ")
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

// ---- reading entries and records ---------------------------------------------------

/// The facts of a journal entry (empty for `resumed` entries).
pub fn facts(entry: &Value) -> Vec<&Value> {
    entry["body"]["facts"]
        .as_array()
        .map(|a| a.iter().collect())
        .unwrap_or_default()
}

/// The statuses an entry sets, in order.
pub fn statuses(entry: &Value) -> Vec<String> {
    facts(entry)
        .into_iter()
        .filter(|f| f["fact"] == "status")
        .filter_map(|f| f["status"].as_str().map(str::to_string))
        .collect()
}

pub fn is_fact(f: &Value, name: &str) -> bool {
    f["fact"].as_str() == Some(name)
}

/// A stage entry of a record.
pub fn stage<'a>(record: &'a Value, name: &str) -> &'a Value {
    record["stages"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["stage"] == name))
        .unwrap_or_else(|| panic!("record has no {name} stage: {}", record["stages"]))
}

/// A timestamp of a record.
pub fn time(v: &Value) -> chrono::DateTime<chrono::Utc> {
    v.as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an RFC 3339 timestamp: {v}"))
}

/// The approvals of a record as (role, decision, by).
pub fn approvals(record: &Value) -> Vec<(String, String, String)> {
    record["approvals"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|x| {
                    let s = |k: &str| x[k].as_str().unwrap_or_default().to_string();
                    (s("role"), s("decision"), s("by"))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Timeline events of a record that contain `needle`.
pub fn timeline_with(record: &Value, needle: &str) -> Vec<String> {
    record["timeline"]
        .as_array()
        .map(|t| {
            t.iter()
                .filter_map(|x| x["event"].as_str())
                .filter(|e| e.contains(needle))
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// Asserts every stage of a record passed and the stages are `expected`.
pub fn assert_stages_passed(record: &Value, expected: &[&str]) {
    let stages = record["stages"].as_array().expect("stages");
    let names: Vec<&str> = stages.iter().filter_map(|s| s["stage"].as_str()).collect();
    assert_eq!(names, expected, "stages of {}", record["id"]);
    for s in stages {
        assert_eq!(s["outcome"], "passed", "stage {} did not pass: {s}", s["stage"]);
        assert!(s["finished_at"].is_string(), "stage {} never finished: {s}", s["stage"]);
    }
}

// ---- hooks -------------------------------------------------------------------------

/// A deploy hook: appends `ENVIRONMENT WEIGHT ATTEMPT VERSION` to `log`.
pub fn deploy_hook(h: &Harness, log: &Path) -> PathBuf {
    h.script(
        "deploy.sh",
        &format!(
            "echo \"$STAGECOACH_ENVIRONMENT $STAGECOACH_WEIGHT $STAGECOACH_ATTEMPT $STAGECOACH_VERSION\" >> '{}'\n",
            log.display()
        ),
    )
}

/// One line of the deploy hook's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeployRun {
    pub environment: String,
    pub weight: String,
    pub attempt: String,
    pub version: String,
}

pub fn deploy_runs(log: &Path) -> Vec<DeployRun> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    text.lines()
        .map(|l| {
            let mut f = l.split(' ');
            let mut next = || f.next().unwrap_or_default().to_string();
            DeployRun {
                environment: next(),
                weight: next(),
                attempt: next(),
                version: next(),
            }
        })
        .collect()
}

/// The weights of the production runs in the deploy log, in order.
pub fn production_weights(log: &Path) -> Vec<String> {
    deploy_runs(log)
        .into_iter()
        .filter(|r| r.environment == "production")
        .map(|r| r.weight)
        .collect()
}

pub fn staging_runs(log: &Path) -> usize {
    deploy_runs(log)
        .into_iter()
        .filter(|r| r.environment == "staging")
        .count()
}

/// Creates a FIFO with `mkfifo`.
pub fn mkfifo(path: &Path) {
    let out = run_with_timeout(
        {
            let mut c = Command::new("mkfifo");
            c.arg(path);
            c
        },
        "mkfifo",
    );
    assert!(out.status.success(), "mkfifo {} failed: {out:?}", path.display());
}

/// Opens `fifo` for reading (blocking until a writer opens it) and returns
/// what the writer wrote; fails after [`WAIT`].
pub fn read_fifo(fifo: &Path) -> String {
    let (tx, rx) = mpsc::channel();
    let path = fifo.to_path_buf();
    std::thread::spawn(move || {
        let _ = tx.send(std::fs::read_to_string(&path));
    });
    match rx.recv_timeout(WAIT) {
        Ok(Ok(text)) => text,
        Ok(Err(e)) => panic!("cannot read the FIFO {}: {e}", fifo.display()),
        Err(_) => panic!(
            "timed out after {WAIT:?} waiting for the hook to write to {}",
            fifo.display()
        ),
    }
}
