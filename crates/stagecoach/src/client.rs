//! The command-line client of the daemon's HTTP API: `submit`, `list`,
//! `status`, `watch`, `approve`, `reject`, `rollback`, `cancel`, `ack`,
//! `record` and `verify`.
//!
//! Exit codes, one rule: 0 success; 1 the daemon answered and said no (any
//! 4xx: 400 malformed, 401 unknown token, 403 not allowed, 404, 409 wrong
//! state, 413, 422 invalid value, …), or the watched deployment ended in
//! anything but `succeeded`, or a journal chain is broken; 2 no answer to
//! act on: bad arguments or configuration, no token, the daemon unreachable
//! or failing (5xx), or an answer this client does not understand.
//!
//! With `--json` stdout carries only the daemon's JSON (pretty printed;
//! `watch` prints one journal entry per line, NDJSON); messages go to
//! stderr. The API token is never printed.

use std::fmt;
use std::io::{BufRead, BufReader, IsTerminal, Read, Write};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Map, Value};
use workflow::record::{
    fmt_duration, fmt_minutes, fmt_num, pct, simulated, Decision, Fact, Record, Request, SampleEntry,
};
use workflow::thresholds::{AlertAction, Metric, MetricSample};
use workflow::types::{DeploymentId, NotificationKind, Stage, Status};

/// Environment variable holding the API token.
pub const TOKEN_ENV: &str = "STAGECOACH_TOKEN";
/// File in the state directory where the daemon writes the admin token.
pub const TOKEN_FILE: &str = "admin.token";

/// Timeout of an ordinary request (the event stream has none).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long `watch` keeps trying to reconnect to a daemon that went away.
const RECONNECT_WINDOW: Duration = Duration::from_secs(30);
const RECONNECT_FIRST_DELAY: Duration = Duration::from_millis(250);
const RECONNECT_MAX_DELAY: Duration = Duration::from_secs(4);
/// A stream connection that lasted this long counts as working even without entries.
const HEALTHY_CONNECTION: Duration = Duration::from_secs(5);
/// Longest event-stream line accepted; longer lines are dropped.
const MAX_LINE: u64 = 16 * 1024 * 1024;

/// Options shared by every client command.
#[derive(clap::Args, Clone, Default)]
pub struct ClientOpts {
    /// URL of the daemon [default: `[server] url` of the configuration, else http://<[server] listen>].
    #[arg(long, value_name = "URL", global = true)]
    pub server: Option<String>,
    /// API token [default: $STAGECOACH_TOKEN, else the daemon's STATE_DIR/admin.token].
    #[arg(long, value_name = "TOKEN", global = true)]
    pub token: Option<String>,
    /// Print the daemon's JSON answer instead of text (`watch`: one journal entry per line).
    #[arg(long, global = true)]
    pub json: bool,
    /// The daemon's state directory, where it writes admin.token [default: `[storage] path`].
    #[arg(long, value_name = "DIR", global = true)]
    pub state_dir: Option<PathBuf>,
    /// Configuration file layered over the bundled defaults (for the server URL and state directory).
    #[arg(long, value_name = "FILE", global = true)]
    pub config: Option<PathBuf>,
}

impl fmt::Debug for ClientOpts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientOpts")
            .field("server", &self.server)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("json", &self.json)
            .field("state_dir", &self.state_dir)
            .field("config", &self.config)
            .finish()
    }
}

/// Where the client looks when no flag says otherwise; filled from the configuration.
#[derive(Debug, Clone)]
pub struct ClientDefaults {
    /// `[server] url`, else `http://` + `[server] listen`.
    pub server_url: String,
    /// `[storage] path`.
    pub state_dir: PathBuf,
}

const TYPES: [&str; 4] = ["standard", "hotfix", "rollback", "scheduled"];
const STRATEGIES: [&str; 4] = ["canary", "blue-green", "blue_green", "rolling"];
const ROLES: [&str; 4] = ["manager", "security", "devops", "qa"];

/// The commands that talk to a running daemon.
#[derive(clap::Subcommand, Debug, Clone)]
pub enum ClientCommand {
    /// Submit a deployment to the daemon.
    Submit {
        /// The service to deploy.
        service: String,
        /// The version to deploy (a rollback restores the previous version when omitted).
        version: Option<String>,
        /// Deployment type.
        #[arg(long = "type", value_name = "TYPE", default_value = "standard", value_parser = TYPES)]
        kind: String,
        /// Rollout strategy [default: the service's configured strategy].
        #[arg(long, value_name = "STRATEGY", value_parser = STRATEGIES)]
        strategy: Option<String>,
        /// A change the release carries (repeatable); QA validates each.
        #[arg(long = "change", value_name = "TEXT")]
        changes: Vec<String>,
        /// When a scheduled deployment may start (RFC 3339, e.g. 2026-03-03T22:00:00Z).
        #[arg(long, value_name = "TIME", value_parser = parse_rfc3339)]
        scheduled_for: Option<String>,
        /// For a rollback: the version to restore.
        #[arg(long, value_name = "VERSION")]
        target_version: Option<String>,
        /// Deploy outside the allowed windows, with this reason (needs a manager's token).
        #[arg(long = "override-window", value_name = "REASON")]
        override_window: Option<String>,
        /// A checklist item the submitter attests (repeatable), e.g. changelog_updated.
        #[arg(long = "attest", value_name = "ITEM")]
        attest: Vec<String>,
        /// Follow the deployment until it ends, like `watch`.
        #[arg(long)]
        watch: bool,
    },
    /// List deployments (all of them: the CLI follows the API's pages).
    List {
        /// Only deployments of this service.
        #[arg(long, value_name = "SERVICE")]
        service: Option<String>,
        /// Only deployments with this status (e.g. in_progress, awaiting_approval, succeeded).
        #[arg(long, value_name = "STATUS")]
        status: Option<String>,
    },
    /// Show where a deployment stands.
    Status {
        /// Deployment id (d-000001, or 1).
        id: String,
    },
    /// Follow a deployment live until it ends; exit 0 when it succeeded, 1 otherwise.
    Watch {
        /// Deployment id (d-000001, or 1).
        id: String,
    },
    /// Approve a deployment that awaits approval.
    Approve {
        /// Deployment id (d-000001, or 1).
        id: String,
        /// The role you approve as.
        #[arg(long, value_name = "ROLE", default_value = "manager", value_parser = ROLES)]
        role: String,
        /// Why (recorded in the Deployment Record).
        #[arg(long, value_name = "TEXT")]
        reason: Option<String>,
    },
    /// Reject a deployment that awaits approval.
    Reject {
        /// Deployment id (d-000001, or 1).
        id: String,
        /// The role you reject as.
        #[arg(long, value_name = "ROLE", default_value = "manager", value_parser = ROLES)]
        role: String,
        /// Why (recorded in the Deployment Record).
        #[arg(long, value_name = "TEXT")]
        reason: String,
    },
    /// Roll a deployment back by hand.
    Rollback {
        /// Deployment id (d-000001, or 1).
        id: String,
        /// Why (recorded in the Deployment Record and the incident report).
        #[arg(long, value_name = "TEXT")]
        reason: String,
    },
    /// Cancel a deployment that has not reached production.
    Cancel {
        /// Deployment id (d-000001, or 1).
        id: String,
        /// Why (recorded in the Deployment Record).
        #[arg(long, value_name = "TEXT")]
        reason: Option<String>,
    },
    /// Acknowledge an escalation.
    Ack {
        /// Escalation id, as `status` shows it (d-000001-e1).
        escalation_id: String,
        /// A note for the record.
        #[arg(long, value_name = "TEXT")]
        note: Option<String>,
    },
    /// Print a deployment's Deployment Record (Markdown).
    Record {
        /// Deployment id (d-000001, or 1).
        id: String,
    },
    /// Check a deployment's journal hash chain; exit 1 when it is broken.
    Verify {
        /// Deployment id (d-000001, or 1).
        id: String,
        /// Read the journal in the state dir directly instead of asking the
        /// daemon (which must be stopped: it holds the journal exclusively).
        #[arg(long)]
        offline: bool,
    },
}

/// Runs one client command against the daemon and prints its answer.
pub fn run(cmd: ClientCommand, opts: &ClientOpts, defaults: ClientDefaults) -> ExitCode {
    ExitCode::from(run_code(cmd, opts, defaults))
}

/// [`run`], giving the exit code as a number.
pub fn run_code(cmd: ClientCommand, opts: &ClientOpts, defaults: ClientDefaults) -> u8 {
    match execute(cmd, opts, defaults) {
        Ok(code) => code,
        Err(failure) => {
            failure.report(opts.json);
            failure.exit_code()
        }
    }
}

// ---------------------------------------------------------------------------
// Failures and exit codes

/// Why a command did not succeed.
#[derive(Debug)]
enum Failure {
    /// Bad arguments, no token: exit 2.
    Usage(String),
    /// The daemon could not be reached (the message says so in full): exit 2.
    Unreachable(String),
    /// The daemon answered with an error status.
    Api {
        status: u16,
        code: Option<String>,
        message: String,
        body: Option<Value>,
    },
    /// The daemon's answer was not what this client understands: exit 2.
    Protocol(String),
}

/// Exit code for an error status of the daemon: every 4xx is a refusal of
/// the request (1); anything else (5xx: the daemon failed or cannot serve
/// now) is like no answer (2).
fn exit_code_for_status(status: u16) -> u8 {
    match status {
        400..=499 => 1,
        _ => 2,
    }
}

impl Failure {
    fn exit_code(&self) -> u8 {
        match self {
            Failure::Usage(_) | Failure::Unreachable(_) | Failure::Protocol(_) => 2,
            Failure::Api { status, .. } => exit_code_for_status(*status),
        }
    }

    /// Whether `watch` should keep trying: the daemon may be restarting.
    fn retryable(&self) -> bool {
        match self {
            Failure::Unreachable(_) => true,
            Failure::Api { status, .. } => (502..=504).contains(status),
            Failure::Usage(_) | Failure::Protocol(_) => false,
        }
    }

    fn message(&self) -> String {
        match self {
            Failure::Usage(m) | Failure::Unreachable(m) => m.clone(),
            Failure::Protocol(m) => format!("unexpected answer from the daemon: {m}"),
            Failure::Api {
                status, code, message, ..
            } => match code {
                Some(code) => format!("{message} ({status} {code})"),
                None => format!("{message} ({status})"),
            },
        }
    }

    fn report(&self, json: bool) {
        if json {
            if let Failure::Api { body: Some(body), .. } = self {
                emit(&pretty(body));
            }
        }
        eprintln!("error: {}", self.message());
    }
}

/// The failure for an error answer: the message of the API's
/// `{"error": {"code", "message"}}` body, else the body text or the reason phrase.
fn api_failure(status: u16, body: &str) -> Failure {
    let value: Option<Value> = serde_json::from_str(body).ok();
    let error = value.as_ref().and_then(|v| v.get("error"));
    let code = error
        .and_then(|e| e.get("code"))
        .and_then(Value::as_str)
        .map(str::to_string);
    let message = error
        .and_then(|e| e.get("message"))
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| {
            let text = body.trim();
            if text.is_empty() || value.is_some() {
                reqwest::StatusCode::from_u16(status)
                    .ok()
                    .and_then(|s| s.canonical_reason())
                    .unwrap_or("request failed")
                    .to_string()
            } else {
                text.chars().take(500).collect()
            }
        });
    Failure::Api {
        status,
        code,
        message,
        body: value,
    }
}

// ---------------------------------------------------------------------------
// Arguments

/// Where the token of a request came from, for the message of a 401.
#[derive(Debug, Clone, PartialEq, Eq)]
enum TokenSource {
    Flag,
    Env,
    AdminFile(PathBuf),
}

impl TokenSource {
    /// A refused token (401): the daemon's answer, which token was sent, and what to do.
    fn explain(&self, base: &str, failure: Failure) -> Failure {
        let Failure::Api {
            status,
            code,
            message,
            body,
        } = failure
        else {
            return failure;
        };
        let new_one = "`stagecoach principal add NAME --role ROLE` creates a principal and prints its token";
        let (from, advice) = match self {
            TokenSource::Flag => (
                "--token".to_string(),
                format!("check the token you passed; {new_one}"),
            ),
            TokenSource::Env => (
                TOKEN_ENV.to_string(),
                format!(
                    "check the token in {TOKEN_ENV} (or `unset {TOKEN_ENV}` to use the state dir's {TOKEN_FILE}); {new_one}"
                ),
            ),
            TokenSource::AdminFile(path) => (
                format!("{} (the generated admin's token)", path.display()),
                format!(
                    "the daemon accepts that file's token only while no [[principals]] are configured and only for \
                     its own state dir: if [[principals]] are configured, pass your principal's token with --token \
                     or {TOKEN_ENV} (and delete the stale {}); otherwise point --state-dir at the daemon's state dir",
                    path.display()
                ),
            ),
        };
        Failure::Api {
            status,
            code,
            message: format!("the daemon at {base} did not accept the token from {from}: {message}; {advice}"),
            body,
        }
    }
}

/// Token order: `--token`, `$STAGECOACH_TOKEN`, `STATE_DIR/admin.token`; blank values count as absent.
fn resolve_token(flag: Option<&str>, env: Option<&str>, state_dir: &Path) -> Result<(String, TokenSource), Failure> {
    for (t, source) in [(flag, TokenSource::Flag), (env, TokenSource::Env)] {
        let Some(t) = t.map(str::trim) else {
            continue;
        };
        if !t.is_empty() {
            return Ok((t.to_string(), source));
        }
    }
    let path = state_dir.join(TOKEN_FILE);
    let missing = || {
        Failure::Usage(format!(
            "no API token: pass --token, set {TOKEN_ENV}, or run the daemon once so it writes {}",
            path.display()
        ))
    };
    match std::fs::read_to_string(&path) {
        Ok(text) if !text.trim().is_empty() => Ok((text.trim().to_string(), TokenSource::AdminFile(path.clone()))),
        Ok(_) => Err(missing()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(missing()),
        Err(e) => Err(Failure::Usage(format!(
            "no API token: cannot read {}: {e}; pass --token or set {TOKEN_ENV}",
            path.display()
        ))),
    }
}

/// A deployment id as the API names it: `7` becomes `d-000007`.
fn deployment_id(raw: &str) -> Result<String, Failure> {
    let t = raw.trim();
    if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) {
        if let Ok(n) = t.parse::<u64>() {
            return Ok(DeploymentId(n).to_string());
        }
    }
    if !t.is_empty() && t.len() <= 64 && t.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        return Ok(t.to_string());
    }
    Err(Failure::Usage(format!(
        "deployment id {raw:?} is invalid: expected d-NNNNNN or a number (see `stagecoach list`)"
    )))
}

/// An escalation id `d-000001-e1` (`1-e1` is accepted too).
fn escalation_id(raw: &str) -> Result<String, Failure> {
    let bad = || {
        Failure::Usage(format!(
            "escalation id {raw:?} is invalid: expected d-NNNNNN-eN, as `stagecoach status ID` shows it"
        ))
    };
    let (dep, n) = raw.trim().rsplit_once("-e").ok_or_else(bad)?;
    if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let dep = deployment_id(dep).map_err(|_| bad())?;
    Ok(format!("{dep}-e{n}"))
}

/// Checks an RFC 3339 time and writes it in UTC.
fn parse_rfc3339(raw: &str) -> Result<String, String> {
    DateTime::parse_from_rfc3339(raw.trim())
        .map(|t| t.with_timezone(&Utc).to_rfc3339())
        .map_err(|e| format!("{e}; expected RFC 3339, e.g. 2026-03-03T22:00:00Z"))
}

/// The daemon's base URL without a trailing slash; `host:port` gets `http://`.
fn base_url(raw: &str) -> Result<String, Failure> {
    let t = raw.trim().trim_end_matches('/');
    let url = if t.contains("://") {
        t.to_string()
    } else {
        format!("http://{t}")
    };
    match reqwest::Url::parse(&url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => Ok(url),
        _ => Err(Failure::Usage(format!(
            "server URL {raw:?} is invalid: expected http://HOST:PORT (pass --server or set [server] url)"
        ))),
    }
}

fn is_loopback(url: &str) -> bool {
    let Some(host) = reqwest::Url::parse(url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_string))
    else {
        return false;
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost") || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

// ---------------------------------------------------------------------------
// HTTP

/// A connection to the daemon: base URL, token and two HTTP clients.
struct Api {
    base: String,
    token: String,
    source: TokenSource,
    http: reqwest::blocking::Client,
    stream: reqwest::blocking::Client,
}

impl Api {
    fn new(base: String, (token, source): (String, TokenSource)) -> Result<Api, Failure> {
        let builder = || {
            let b = reqwest::blocking::Client::builder()
                .connect_timeout(CONNECT_TIMEOUT)
                .user_agent(concat!("stagecoach/", env!("CARGO_PKG_VERSION")));
            // Never hand the token to a proxy for a daemon on this machine.
            if is_loopback(&base) {
                b.no_proxy()
            } else {
                b
            }
        };
        let build = |b: reqwest::blocking::ClientBuilder| {
            b.build()
                .map_err(|e| Failure::Usage(format!("cannot set up the HTTP client: {}", chain(&e))))
        };
        let http = build(builder().timeout(REQUEST_TIMEOUT))?;
        let stream = build(builder().timeout(None::<Duration>))?;
        Ok(Api {
            base,
            token,
            source,
            http,
            stream,
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn unreachable(&self, e: &reqwest::Error) -> Failure {
        if e.is_timeout() {
            return Failure::Unreachable(format!(
                "the daemon at {} did not answer within {} s: {}",
                self.base,
                REQUEST_TIMEOUT.as_secs(),
                chain(e)
            ));
        }
        Failure::Unreachable(format!(
            "cannot reach the daemon at {}: {}; is `stagecoach daemon` running? (start it with `stagecoach daemon`)",
            self.base,
            root_cause(e)
        ))
    }

    /// Sends a request with the token; error statuses become [`Failure::Api`].
    fn send(&self, req: reqwest::blocking::RequestBuilder) -> Result<reqwest::blocking::Response, Failure> {
        let resp = req.bearer_auth(&self.token).send().map_err(|e| self.unreachable(&e))?;
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let body = resp.text().unwrap_or_default();
        let failure = api_failure(status.as_u16(), &body);
        if status == reqwest::StatusCode::UNAUTHORIZED {
            return Err(self.source.explain(&self.base, failure));
        }
        Err(failure)
    }

    fn text(&self, resp: reqwest::blocking::Response) -> Result<String, Failure> {
        resp.text().map_err(|e| self.unreachable(&e))
    }

    fn json(&self, resp: reqwest::blocking::Response) -> Result<Value, Failure> {
        let text = self.text(resp)?;
        serde_json::from_str(&text).map_err(|e| Failure::Protocol(format!("not JSON: {e}")))
    }

    fn get(&self, path: &str, query: &[(&str, &str)]) -> Result<Value, Failure> {
        let resp = self.send(
            self.http
                .get(self.url(path))
                .query(query)
                .header(reqwest::header::ACCEPT, "application/json"),
        )?;
        self.json(resp)
    }

    fn post(&self, path: &str, body: &Value) -> Result<Value, Failure> {
        let resp = self.send(
            self.http
                .post(self.url(path))
                .header(reqwest::header::ACCEPT, "application/json")
                .json(body),
        )?;
        self.json(resp)
    }

    /// Opens the event stream of one deployment, after journal sequence `after`.
    fn events(&self, deployment: &str, after: Option<u64>) -> Result<reqwest::blocking::Response, Failure> {
        let mut req = self
            .stream
            .get(self.url("/v1/events"))
            .query(&[("deployment", deployment)])
            .header(reqwest::header::ACCEPT, "text/event-stream");
        if let Some(seq) = after {
            req = req
                .query(&[("after", seq.to_string())])
                .header("Last-Event-ID", seq.to_string());
        }
        self.send(req)
    }
}

/// The innermost source of an error: "Connection refused (os error 111)" rather than the request it failed.
fn root_cause(e: &dyn std::error::Error) -> String {
    let mut cause = e;
    while let Some(s) = cause.source() {
        cause = s;
    }
    cause.to_string()
}

/// An error and its sources, joined with ": ".
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

// ---------------------------------------------------------------------------
// Commands

fn execute(cmd: ClientCommand, opts: &ClientOpts, defaults: ClientDefaults) -> Result<u8, Failure> {
    let json = opts.json;
    let server = base_url(opts.server.as_deref().unwrap_or(&defaults.server_url))?;
    // Check the ids before looking for a token: a typo is reported as such.
    let target = match &cmd {
        ClientCommand::Submit { .. } | ClientCommand::List { .. } => None,
        ClientCommand::Ack { escalation_id: e, .. } => Some(escalation_id(e)?),
        ClientCommand::Status { id }
        | ClientCommand::Watch { id }
        | ClientCommand::Approve { id, .. }
        | ClientCommand::Reject { id, .. }
        | ClientCommand::Rollback { id, .. }
        | ClientCommand::Cancel { id, .. }
        | ClientCommand::Record { id }
        | ClientCommand::Verify { id, .. } => Some(deployment_id(id)?),
    };
    let id = target.unwrap_or_default();
    let state_dir = opts.state_dir.clone().unwrap_or(defaults.state_dir);
    if let ClientCommand::Verify { offline: true, .. } = cmd {
        return verify_offline(&id, &state_dir, json);
    }
    let env = std::env::var(TOKEN_ENV).ok();
    let token = resolve_token(opts.token.as_deref(), env.as_deref(), &state_dir)?;
    let api = Api::new(server, token)?;
    match cmd {
        ClientCommand::Submit {
            service,
            version,
            kind,
            strategy,
            changes,
            scheduled_for,
            target_version,
            override_window,
            attest,
            watch,
        } => {
            let mut body = Map::new();
            body.insert("service".into(), service.into());
            body.insert("type".into(), kind.into());
            let optional = [
                ("version", version),
                ("strategy", strategy),
                ("scheduled_for", scheduled_for),
                ("target_version", target_version),
                ("override_window_reason", override_window),
            ];
            for (key, value) in optional {
                if let Some(v) = value {
                    body.insert(key.into(), v.into());
                }
            }
            if !changes.is_empty() {
                body.insert("changes".into(), changes.into());
            }
            if !attest.is_empty() {
                body.insert("attest".into(), attest.into());
            }
            let answer = api.post("/v1/deployments", &Value::Object(body))?;
            submit_done(&api, &answer, json, watch)
        }
        ClientCommand::List { service, status } => {
            let mut query = vec![];
            if let Some(s) = &service {
                query.push(("service", s.as_str()));
            }
            if let Some(s) = &status {
                query.push(("status", s.as_str()));
            }
            // Every page, following the cursor: pages never shift, as new
            // deployments only ever come after the last one listed.
            let mut all: Vec<Value> = vec![];
            let mut cursor: Option<String> = None;
            loop {
                let mut page_query = query.clone();
                if let Some(c) = &cursor {
                    page_query.push(("cursor", c.as_str()));
                }
                let answer = api.get("/v1/deployments", &page_query)?;
                let Some(Value::Array(page)) = answer.get("deployments").cloned() else {
                    return Err(Failure::Protocol("no \"deployments\" in the list".into()));
                };
                all.extend(page);
                match answer.get("next_cursor").and_then(Value::as_str) {
                    Some(next) if cursor.as_deref() != Some(next) => cursor = Some(next.to_string()),
                    _ => break,
                }
            }
            if json {
                emit(&pretty(&serde_json::json!({ "deployments": all, "next_cursor": null })));
                return Ok(0);
            }
            let records: Vec<Record> = serde_json::from_value(Value::Array(all))
                .map_err(|e| Failure::Protocol(format!("not a list of deployment records: {e}")))?;
            emit(render_table(&records).trim_end());
            Ok(0)
        }
        ClientCommand::Status { .. } => {
            let answer = api.get(&format!("/v1/deployments/{id}"), &[])?;
            if json {
                emit(&pretty(&answer));
            } else {
                emit(render_status(&record(&answer)?).trim_end());
            }
            Ok(0)
        }
        ClientCommand::Watch { .. } => {
            let answer = api.get(&format!("/v1/deployments/{id}"), &[])?;
            let record = record(&answer)?;
            watch(&api, &record, json)
        }
        ClientCommand::Approve { role, reason, .. } => {
            let mut body = serde_json::json!({ "role": role, "decision": "approve" });
            if let Some(r) = reason {
                body["reason"] = r.into();
            }
            let answer = api.post(&format!("/v1/deployments/{id}/approvals"), &body)?;
            changed(&answer, json, &format!("{id}: approved as {role}"))
        }
        ClientCommand::Reject { role, reason, .. } => {
            let body = serde_json::json!({ "role": role, "decision": "reject", "reason": reason });
            let answer = api.post(&format!("/v1/deployments/{id}/approvals"), &body)?;
            changed(&answer, json, &format!("{id}: rejected as {role}"))
        }
        ClientCommand::Rollback { reason, .. } => {
            let body = serde_json::json!({ "reason": reason });
            let answer = api.post(&format!("/v1/deployments/{id}/rollback"), &body)?;
            changed(&answer, json, &format!("{id}: rollback requested"))
        }
        ClientCommand::Cancel { reason, .. } => {
            let mut body = serde_json::json!({});
            if let Some(r) = reason {
                body["reason"] = r.into();
            }
            let answer = api.post(&format!("/v1/deployments/{id}/cancel"), &body)?;
            changed(&answer, json, &format!("{id}: cancel requested"))
        }
        ClientCommand::Ack { note, .. } => {
            let mut body = serde_json::json!({});
            if let Some(n) = note {
                body["note"] = n.into();
            }
            let answer = api.post(&format!("/v1/escalations/{id}/ack"), &body)?;
            changed(&answer, json, &format!("{id}: acknowledged"))
        }
        ClientCommand::Record { .. } => {
            if json {
                let answer = api.get(&format!("/v1/deployments/{id}"), &[])?;
                emit(&pretty(&answer));
            } else {
                let resp = api.send(
                    api.http
                        .get(api.url(&format!("/v1/deployments/{id}/record.md")))
                        .header(reqwest::header::ACCEPT, "text/markdown"),
                )?;
                emit(api.text(resp)?.trim_end());
            }
            Ok(0)
        }
        ClientCommand::Verify { .. } => {
            let answer = api.get(&format!("/v1/deployments/{id}/verify"), &[])?;
            let report: Verification = serde_json::from_value(answer.clone())
                .map_err(|e| Failure::Protocol(format!("not a verification report: {e}")))?;
            if json {
                emit(&pretty(&answer));
            } else {
                emit(render_verification(&id, &report).trim_end());
            }
            Ok(if report.intact { 0 } else { 1 })
        }
    }
}

fn record(answer: &Value) -> Result<Record, Failure> {
    serde_json::from_value(answer.clone()).map_err(|e| Failure::Protocol(format!("not a deployment record: {e}")))
}

/// Prints the answer of a command that changed a deployment.
fn changed(answer: &Value, json: bool, what: &str) -> Result<u8, Failure> {
    if json {
        emit(&pretty(answer));
    } else {
        let r = record(answer)?;
        emit(&format!("{what} — status {}", r.status));
    }
    Ok(0)
}

fn submit_done(api: &Api, answer: &Value, json: bool, watch_it: bool) -> Result<u8, Failure> {
    if json && !watch_it {
        emit(&pretty(answer));
        return Ok(0);
    }
    let r = record(answer)?;
    if json {
        // One JSON document per line, like the entries that follow.
        emit(&answer.to_string());
    } else {
        emit(&submitted_line(&r));
        if !watch_it {
            emit(&format!("watch it with: stagecoach watch {}", r.id));
        }
    }
    if watch_it {
        watch(api, &r, json)
    } else {
        Ok(0)
    }
}

fn submitted_line(r: &Record) -> String {
    format!(
        "submitted {}: {} ({}, {}) — status {}",
        r.id,
        title(r),
        r.kind,
        r.strategy,
        r.status
    )
}

/// `web 1.2.3`, or `web (previous version)` for a rollback without a target.
fn title(r: &Record) -> String {
    match &r.version {
        Some(v) => format!("{} {v}", r.service),
        None => format!("{} (previous version)", r.service),
    }
}

/// The daemon's answer to `verify`.
#[derive(Debug, Deserialize)]
struct Verification {
    #[serde(default)]
    entries: u64,
    intact: bool,
    #[serde(default)]
    problems: Vec<String>,
    #[serde(default)]
    head: Option<String>,
}

/// `verify --offline`: checks the chain in the state dir's journal file.
fn verify_offline(id: &str, state_dir: &std::path::Path, json: bool) -> Result<u8, Failure> {
    let path = daemon::journal_path(state_dir);
    if !path.exists() {
        return Err(Failure::Usage(format!(
            "no journal at {}; pass the daemon's --state-dir",
            path.display()
        )));
    }
    let number = id
        .strip_prefix("d-")
        .and_then(|n| n.parse::<u64>().ok())
        .ok_or_else(|| Failure::Usage(format!("{id:?} is not a deployment id")))?;
    // A running daemon holds the journal exclusively: then it is the one to ask.
    let store_failure = |e: journal::StoreError| match e {
        journal::StoreError::InUse { .. } => Failure::Usage(format!(
            "the journal {} is held by a running daemon; drop --offline to verify through it: \
             stagecoach verify {id} (--offline is for when the daemon is stopped)",
            path.display()
        )),
        e => Failure::Usage(e.to_string()),
    };
    let store = journal::SqliteStore::open(&path).map_err(store_failure)?;
    let v = journal::Store::verify(&store, number).map_err(store_failure)?;
    if v.entries == 0 {
        return Err(Failure::Api {
            status: 404,
            code: Some("not_found".into()),
            message: format!("no deployment {id} in the journal {}", path.display()),
            body: None,
        });
    }
    let answer = daemon::api::verification_json(workflow::types::DeploymentId(number), &v);
    if json {
        emit(&pretty(&answer));
    } else {
        let report: Verification =
            serde_json::from_value(answer).map_err(|e| Failure::Protocol(format!("not a verification report: {e}")))?;
        emit(render_verification(id, &report).trim_end());
    }
    Ok(if v.intact { 0 } else { 1 })
}

fn render_verification(id: &str, v: &Verification) -> String {
    if v.intact {
        format!(
            "chain of {id} intact ({} entries, head {})",
            v.entries,
            v.head.as_deref().unwrap_or("-")
        )
    } else {
        let mut out = format!("chain of {id} BROKEN:\n");
        for p in &v.problems {
            out.push_str(&format!("  - {p}\n"));
        }
        out
    }
}

// ---------------------------------------------------------------------------
// Rendering

/// Writes one line to stdout; a closed pipe is not an error worth a panic.
fn emit(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{text}");
    let _ = out.flush();
}

fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string())
}

fn time(t: &DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// A fraction as a whole percentage, or "not measured".
fn whole_pct(v: Option<f64>) -> String {
    v.map(|v| format!("{:.0}%", v * 100.0))
        .unwrap_or_else(|| "not measured".into())
}

/// `error 0.10% p99 120 ms cpu 40% memory 55%`, with " (simulated)" when the simulated world gave it.
fn describe_metrics(s: &MetricSample) -> String {
    format!(
        "error {:.2}% p99 {} ms cpu {} memory {}{}",
        s.error_rate * 100.0,
        fmt_num(s.latency_p99_ms.round()),
        whole_pct(s.cpu),
        whole_pct(s.memory),
        simulated(s.simulated)
    )
}

/// `25% traffic: error 0.10% p99 120 ms cpu 40% memory 55% (12 min 30 s into DEPLOY)`;
/// without the start of DEPLOY, the whole minute the sample carries.
fn describe_sample(s: &SampleEntry, deploy_started: Option<DateTime<Utc>>) -> String {
    let metrics = match (&s.sample, &s.error) {
        (Some(m), _) => describe_metrics(m),
        (None, Some(e)) => format!("no metrics: {e}"),
        (None, None) => "no metrics".to_string(),
    };
    let when = match deploy_started {
        Some(start) => format!("{} into DEPLOY", fmt_duration(s.at - start)),
        None => format!("minute {}", s.minute),
    };
    format!("{}% traffic: {metrics} ({when})", s.traffic_percent)
}

fn metric_values(metric: Metric, value: f64, threshold: f64) -> (&'static str, String, String) {
    match metric {
        Metric::ErrorRate => ("error rate", pct(value), pct(threshold)),
        Metric::LatencyP99 => (
            "p99 latency",
            format!("{} ms", fmt_num(value)),
            format!("{} ms", fmt_num(threshold)),
        ),
        Metric::Cpu => ("cpu", pct(value), pct(threshold)),
        Metric::Memory => ("memory", pct(value), pct(threshold)),
    }
}

fn action_name(a: AlertAction) -> &'static str {
    match a {
        AlertAction::Scale => "scale",
        AlertAction::Investigate => "investigate",
        AlertAction::Rollback => "rollback",
    }
}

fn decision_name(d: Decision) -> &'static str {
    match d {
        Decision::Granted => "granted",
        Decision::Denied => "denied",
        Decision::Refused => "refused",
        Decision::TimedOut => "timed out",
        Decision::WindowOverride => "window override",
    }
}

/// One fact as a line of `watch` output (without time and id); `None` for facts not worth a line.
/// `deploy_started` (when DEPLOY started, if it has) dates the samples.
fn describe_fact(fact: &Fact, deploy_started: Option<DateTime<Utc>>) -> Option<String> {
    let with_note = |head: String, note: &str| {
        if note.is_empty() {
            head
        } else {
            format!("{head}: {note}")
        }
    };
    let step = |prefix: &str, s: &workflow::record::StepEntry| {
        let head = format!("{prefix}{}{}", s.step, if s.ok { "" } else { " FAILED" });
        let line = if s.detail.is_empty() || s.detail == s.step {
            head
        } else {
            format!("{head}: {}", s.detail)
        };
        format!("{line}{}", simulated(s.simulated))
    };
    Some(match fact {
        Fact::Submitted { request, strategy, .. } => {
            format!("submitted {} ({}, {strategy})", request_title(request), request.kind)
        }
        Fact::Status { status, note, .. } => with_note(format!("status {status}"), note),
        Fact::StageStarted { stage, .. } => format!("stage {stage} started"),
        Fact::StageFinished {
            stage, outcome, note, ..
        } => with_note(format!("stage {stage} {outcome}"), note),
        Fact::Prepared { report, .. } => format!(
            "prepared {}: tests {}, build {}{}",
            report.artifact,
            if report.tests_passed { "passed" } else { "FAILED" },
            if report.build_succeeded { "ok" } else { "FAILED" },
            if report.simulated.is_empty() {
                String::new()
            } else {
                format!(" (simulated: {})", report.simulated.join(", "))
            }
        ),
        Fact::Scanned { report, .. } => {
            format!(
                "security scan: {} critical vulnerabilities{}",
                report.critical_vulnerabilities,
                simulated(report.simulated)
            )
        }
        Fact::Checklist { .. } => return None,
        Fact::Staged { report, .. } => format!(
            "staging {}{}",
            if report.ok() { "healthy" } else { "NOT healthy" },
            if report.simulated.is_empty() {
                String::new()
            } else {
                format!(" (simulated: {})", report.simulated.join(", "))
            }
        ),
        Fact::Validated { report, .. } => {
            let verdict = match report.recommendation {
                workflow::record::Recommendation::Ready => "ready".to_string(),
                workflow::record::Recommendation::NeedsFixes => format!("needs fixes: {}", report.issues.join("; ")),
            };
            let simulated: Vec<&str> = report
                .suites
                .iter()
                .filter(|s| s.simulated)
                .map(|s| s.name.as_str())
                .collect();
            if simulated.is_empty() {
                format!("validation {verdict}")
            } else {
                format!("validation {verdict} (simulated suites: {})", simulated.join(", "))
            }
        }
        Fact::Approval(a) => with_note(
            format!("approval {} {} by {}", a.role, decision_name(a.decision), a.by),
            &a.reason,
        ),
        Fact::Notification(n) => format!(
            "notification {}: {}{}",
            if n.delivered { "sent" } else { "FAILED" },
            n.subject,
            simulated(n.simulated)
        ),
        Fact::DeployStarted { strategy, .. } => format!("deploy started ({strategy})"),
        Fact::DeployStep(s) => step("step ", s),
        Fact::DeployFinished { .. } => "deploy finished".to_string(),
        Fact::Baseline { sample, error, .. } => match (sample, error) {
            (Some(m), _) => format!("baseline: {}", describe_metrics(m)),
            (None, Some(e)) => format!("baseline unavailable: {e}"),
            (None, None) => "baseline unavailable".to_string(),
        },
        Fact::Sample(s) => format!("sample {}", describe_sample(s, deploy_started)),
        Fact::Checkpoint(c) => format!(
            "{}{}",
            with_note(
                format!(
                    "checkpoint {} ({}) {}",
                    fmt_minutes(c.minute),
                    c.check.title(),
                    if c.passed { "ok" } else { "NOT OK" }
                ),
                &c.detail,
            ),
            simulated(c.simulated)
        ),
        Fact::Alert(a) => {
            let (metric, value, threshold) = metric_values(a.metric, a.value, a.threshold);
            format!("alert {metric} {value} over {threshold} -> {}", action_name(a.action))
        }
        Fact::Escalation(e) => with_note(format!("escalation ({})", e.reason), &e.detail),
        Fact::RollbackStarted { trigger, reason, .. } => with_note(format!("rollback started ({trigger})"), reason),
        Fact::RollbackStep(s) => step("rollback step ", s),
        Fact::RollbackFinished {
            restored_version,
            verified,
            ..
        } => format!(
            "rollback finished: restored {}, {}",
            restored_version.as_ref().map(|v| v.as_str()).unwrap_or("nothing"),
            if *verified { "verified" } else { "NOT verified" }
        ),
        Fact::ProductionVersion { version, .. } => format!(
            "production now runs {}",
            version.as_ref().map(|v| v.as_str()).unwrap_or("no known version")
        ),
        Fact::Acknowledged { index, by, .. } => format!("escalation e{index} acknowledged by {by}"),
        Fact::ProductionSeen { note, .. } => note.clone(),
        Fact::Issue { issue, .. } => format!("issue: {issue}"),
        Fact::Note { event, .. } => event.clone(),
        Fact::ApprovalRequested { role, deadline, .. } => format!(
            "approval {role} pending: waiting for a person with the {role} role until {}",
            time(deadline)
        ),
    })
}

fn request_title(r: &Request) -> String {
    match &r.version {
        Some(v) => format!("{} {v}", r.service),
        None => format!("{} (previous version)", r.service),
    }
}

/// Share of traffic on the new version after a successful deploy step, from its text.
fn traffic_from_step(step: &str) -> Option<u8> {
    let lower = step.to_ascii_lowercase();
    if lower.starts_with("traffic switched") {
        return Some(100);
    }
    if let Some(rest) = lower.strip_prefix("canary at ") {
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        return digits.parse::<u8>().ok().filter(|p| *p <= 100);
    }
    // "Instances 3-4/10 drained, …" or "Instance 1/10 drained, …"
    let rest = lower
        .strip_prefix("instances ")
        .or_else(|| lower.strip_prefix("instance "))?;
    let range = rest.split_whitespace().next()?;
    let (span, total) = range.split_once('/')?;
    let last = span.rsplit('-').next()?;
    let (last, total): (u64, u64) = (last.parse().ok()?, total.parse().ok()?);
    (total > 0).then(|| ((last * 100) / total).min(100) as u8)
}

fn cell(v: Option<&str>) -> String {
    v.filter(|s| !s.is_empty()).unwrap_or("-").to_string()
}

/// The table of `list`.
fn render_table(records: &[Record]) -> String {
    if records.is_empty() {
        return "no deployments\n".to_string();
    }
    let header = [
        "ID",
        "SERVICE",
        "VERSION",
        "TYPE",
        "STRATEGY",
        "STATUS",
        "STAGE",
        "SUBMITTED BY",
        "SUBMITTED AT",
    ];
    let rows: Vec<Vec<String>> = records
        .iter()
        .map(|r| {
            vec![
                r.id.to_string(),
                r.service.to_string(),
                cell(r.version.as_ref().map(|v| v.as_str())),
                r.kind.to_string(),
                r.strategy.to_string(),
                r.status.to_string(),
                cell(r.stages.last().map(|s| s.stage.as_str())),
                cell(Some(&r.submitted_by)),
                time(&r.submitted_at),
            ]
        })
        .collect();
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let mut s = String::new();
        for (i, (c, w)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<w$}  "));
            }
        }
        s.trim_end().to_string() + "\n"
    };
    let mut out = line(header.iter().map(|h| h.to_string()).collect());
    for row in rows {
        out.push_str(&line(row));
    }
    out
}

/// The summary of `status`.
fn render_status(r: &Record) -> String {
    let mut out = String::new();
    let mut put = |s: String| {
        out.push_str(&s);
        out.push('\n');
    };
    put(format!("{}  {}  ({}, {})", r.id, title(r), r.kind, r.strategy));
    put(format!("status:     {}", r.status));
    put(format!("submitted:  {} by {}", time(&r.submitted_at), r.submitted_by));
    if let Some(t) = &r.scheduled_for {
        put(format!("scheduled:  {}", time(t)));
    }
    put(format!(
        "production: {}",
        r.production_version.as_ref().map(|v| v.as_str()).unwrap_or("-")
    ));
    if let Some(t) = &r.finished_at {
        put(format!("finished:   {}", time(t)));
    }
    if r.rests_on_simulation() {
        put(
            "evidence:   partly simulated (no command configured); the record marks each such result \"(simulated)\""
                .into(),
        );
    }
    if !r.stages.is_empty() {
        put("stages:".into());
        for s in &r.stages {
            let outcome = s.outcome.map(|o| o.as_str()).unwrap_or("running");
            let when = match &s.finished_at {
                Some(f) => format!("{} → {}", time(&s.started_at), time(f)),
                None => format!("since {}", time(&s.started_at)),
            };
            put(format!("  {:<9} {outcome:<8} {when}", s.stage.as_str()));
        }
    }
    let sections = r.approval_sections();
    if !sections.is_empty() {
        put("approvals:".into());
        for section in &sections {
            let role = section.role.as_str();
            let mut line = match (section.decision, section.pending) {
                (Some(a), _) => format!(
                    "  {role:<9} {:<15} by {} at {}",
                    decision_name(a.decision),
                    a.by,
                    time(&a.at)
                ),
                (None, Some(p)) => format!(
                    "  {role:<9} {:<15} since {}, deadline {}",
                    "pending",
                    time(&p.requested_at),
                    time(&p.deadline)
                ),
                (None, None) => format!("  {role:<9} {:<15}", "not decided"),
            };
            if let Some(a) = section.decision.filter(|a| !a.reason.is_empty()) {
                line.push_str(&format!(": {}", a.reason));
            }
            put(line);
            for a in &section.refused {
                put(format!("    refused: {} at {}: {}", a.by, time(&a.at), a.reason));
            }
        }
    }
    if r.status == Status::AwaitingApproval {
        let asked: Vec<&str> = r
            .notifications
            .iter()
            .filter(|n| n.kind == NotificationKind::ApprovalRequested)
            .map(|n| n.subject.as_str())
            .collect();
        let pending: Vec<&str> = r.pending_approvals.iter().map(|p| p.role.as_str()).collect();
        let role = pending.first().copied().unwrap_or("ROLE");
        let waiting = if pending.is_empty() {
            "waiting for approval".to_string()
        } else {
            format!("waiting for approval by {}", pending.join(", "))
        };
        put(format!(
            "{waiting}: stagecoach approve {} --role {role} [--reason …], or stagecoach reject {} --role {role} --reason …",
            r.id, r.id
        ));
        for s in asked {
            put(format!("  requested: {s}"));
        }
    }
    if let Some(log) = &r.deploy_log {
        if let Some(traffic) = log
            .steps
            .iter()
            .filter(|s| s.ok)
            .filter_map(|s| traffic_from_step(&s.step))
            .next_back()
        {
            put(format!("traffic:    {traffic}% on the new version"));
        }
    }
    if let Some(s) = r.monitoring.samples.last() {
        let started = r.deploy_log.as_ref().map(|d| d.started_at);
        put(format!(
            "last sample: {} at {}",
            describe_sample(s, started),
            time(&s.at)
        ));
    }
    if !r.alerts.is_empty() {
        put("alerts:".into());
        for a in &r.alerts {
            let (metric, value, threshold) = metric_values(a.metric, a.value, a.threshold);
            put(format!(
                "  {} {} {metric} {value} over {threshold} -> {}",
                time(&a.at),
                a.stage,
                action_name(a.action)
            ));
        }
    }
    if let Some(rb) = &r.rollback {
        let state = match (&rb.completed_at, rb.verified) {
            (None, _) => "in progress".to_string(),
            (Some(_), true) => format!(
                "done, restored {}",
                rb.restored_version.as_ref().map(|v| v.as_str()).unwrap_or("-")
            ),
            (Some(_), false) => "finished but NOT verified".to_string(),
        };
        put(format!(
            "rollback:   {} ({}): {} — {state}",
            time(&rb.initiated_at),
            rb.trigger,
            rb.reason
        ));
    }
    if !r.issues.is_empty() {
        put("issues:".into());
        for i in &r.issues {
            put(format!("  - {i}"));
        }
    }
    if !r.escalations.is_empty() {
        put("escalations:".into());
        for (i, e) in r.escalations.iter().enumerate() {
            let ack = match (&e.acknowledged_by, &e.acknowledged_at) {
                (Some(by), Some(at)) => format!("acknowledged by {by} at {}", time(at)),
                (Some(by), None) => format!("acknowledged by {by}"),
                _ => format!("NOT acknowledged: `stagecoach ack {}-e{}`", r.id, i + 1),
            };
            put(format!(
                "  {}-e{}  {}  {}: {} ({ack})",
                r.id,
                i + 1,
                time(&e.at),
                e.reason,
                e.detail
            ));
        }
    }
    out
}

// ---------------------------------------------------------------------------
// The event stream

/// One server-sent event.
#[derive(Debug, Clone, PartialEq, Eq)]
struct SseEvent {
    id: Option<String>,
    event: String,
    data: String,
}

/// Turns event-stream lines into events (the WHATWG rules that matter here).
#[derive(Debug, Default)]
struct SseParser {
    id: Option<String>,
    event: Option<String>,
    data: Vec<String>,
}

impl SseParser {
    /// Feeds one line (with or without its line ending); returns the event a blank line completes.
    fn feed(&mut self, line: &str) -> Option<SseEvent> {
        let line = line.strip_suffix('\n').unwrap_or(line);
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.is_empty() {
            let event = self.event.take();
            let data = std::mem::take(&mut self.data);
            if data.is_empty() {
                return None;
            }
            return Some(SseEvent {
                id: self.id.clone(),
                event: event.unwrap_or_else(|| "message".to_string()),
                data: data.join("\n"),
            });
        }
        if line.starts_with(':') {
            return None;
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        match field {
            "data" => self.data.push(value.to_string()),
            "event" => self.event = Some(value.to_string()),
            "id" if !value.contains('\0') => self.id = Some(value.to_string()),
            _ => {}
        }
        None
    }
}

/// One journal entry as the event stream carries it.
#[derive(Debug, Clone, Deserialize)]
struct StreamEntry {
    seq: u64,
    #[serde(default)]
    deployment: String,
    #[serde(default)]
    at: Option<String>,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    body: Value,
    /// The entry as received, for `--json`.
    #[serde(skip)]
    raw: Value,
}

/// The journal entry an `entry` event carries, if it is one.
fn parse_entry(ev: &SseEvent) -> Option<StreamEntry> {
    if ev.event != "entry" && ev.event != "message" {
        return None;
    }
    let raw: Value = serde_json::from_str(&ev.data).ok()?;
    let mut entry: StreamEntry = serde_json::from_value(raw.clone()).ok()?;
    entry.raw = raw;
    Some(entry)
}

/// The facts of an entry that this client understands, with their times; others are skipped.
fn entry_facts(entry: &StreamEntry) -> Vec<(Option<String>, Fact)> {
    entry
        .body
        .get("facts")
        .and_then(Value::as_array)
        .map(|facts| {
            facts
                .iter()
                .filter_map(|v| {
                    let fact = serde_json::from_value::<Fact>(v.clone()).ok()?;
                    let at = v.get("at").and_then(Value::as_str).map(str::to_string);
                    Some((at, fact))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// `2026-03-03T10:00:00Z` from an RFC 3339 text; other text as it is.
fn short_time(at: &str) -> String {
    DateTime::parse_from_rfc3339(at)
        .map(|t| time(&t.with_timezone(&Utc)))
        .unwrap_or_else(|_| at.to_string())
}

/// What `watch` knows about the deployment so far.
#[derive(Debug)]
struct Watcher {
    deployment: String,
    title: String,
    stage: Option<Stage>,
    status: Option<Status>,
    traffic: Option<u8>,
    sample: Option<MetricSample>,
    /// When DEPLOY started, to date the samples.
    deploy_started: Option<DateTime<Utc>>,
    /// Roles whose approval is asked of a person and not decided yet.
    pending: Vec<workflow::types::Role>,
    last_seq: Option<u64>,
}

/// What one entry changed: lines to print, and the final status once it is there.
#[derive(Debug, Default, PartialEq)]
struct Handled {
    lines: Vec<String>,
    finished: Option<Status>,
}

impl Watcher {
    fn new(deployment: &str, title: &str) -> Watcher {
        Watcher {
            deployment: deployment.to_string(),
            title: title.to_string(),
            stage: None,
            status: None,
            traffic: None,
            sample: None,
            deploy_started: None,
            pending: vec![],
            last_seq: None,
        }
    }

    /// Takes one entry; `None` when it was seen before or belongs to another deployment.
    fn handle(&mut self, entry: &StreamEntry) -> Option<Handled> {
        if self.last_seq.is_some_and(|last| entry.seq <= last) {
            return None;
        }
        self.last_seq = Some(entry.seq);
        if !entry.deployment.is_empty() && entry.deployment != self.deployment {
            return None;
        }
        let mut out = Handled::default();
        let entry_at = entry.at.as_deref().map(short_time).unwrap_or_default();
        if entry.kind == "resumed" {
            out.lines
                .push(format!("{entry_at} {} resumed by the daemon", self.deployment));
        }
        for (at, fact) in entry_facts(entry) {
            self.apply(&fact);
            if let Fact::Status { status, .. } = &fact {
                if status.is_terminal() {
                    out.finished = Some(*status);
                }
            }
            if let Some(text) = describe_fact(&fact, self.deploy_started) {
                let at = at.as_deref().map(short_time).unwrap_or_else(|| entry_at.clone());
                out.lines.push(format!("{at} {} {text}", self.deployment));
            }
        }
        Some(out)
    }

    fn apply(&mut self, fact: &Fact) {
        match fact {
            Fact::Submitted { request, .. } => self.title = request_title(request),
            Fact::Status { status, .. } => {
                self.status = Some(*status);
                if status.is_terminal() {
                    self.pending.clear();
                }
            }
            Fact::StageStarted { stage, .. } => self.stage = Some(*stage),
            Fact::DeployStarted { at, .. } => self.deploy_started = Some(*at),
            Fact::ApprovalRequested { role, .. } => {
                self.pending.retain(|r| r != role);
                self.pending.push(*role);
            }
            Fact::Approval(a) if a.decision != Decision::Refused => self.pending.retain(|r| *r != a.role),
            Fact::DeployStep(s) if s.ok => {
                if let Some(t) = traffic_from_step(&s.step) {
                    self.traffic = Some(t);
                }
            }
            Fact::Sample(s) => {
                self.traffic = Some(s.traffic_percent);
                if let Some(m) = &s.sample {
                    self.sample = Some(*m);
                }
            }
            _ => {}
        }
    }

    /// The live line of the spinner.
    fn summary(&self) -> String {
        let mut parts = vec![self.deployment.clone()];
        if let Some(stage) = self.stage {
            parts.push(stage.to_string());
        }
        if let Some(status) = self.status {
            parts.push(status.to_string());
        }
        if !self.pending.is_empty() {
            let roles: Vec<&str> = self.pending.iter().map(|r| r.as_str()).collect();
            parts.push(format!("waiting for approval by {}", roles.join(", ")));
        }
        if let Some(t) = self.traffic {
            parts.push(format!("{t}% traffic"));
        }
        if let Some(m) = &self.sample {
            parts.push(format!(
                "err {:.2}% p99 {}ms cpu {} mem {}{}",
                m.error_rate * 100.0,
                fmt_num(m.latency_p99_ms.round()),
                whole_pct(m.cpu),
                whole_pct(m.memory),
                simulated(m.simulated)
            ));
        }
        parts.join(" · ")
    }
}

/// Where `watch` writes: plain lines, a spinner on a terminal, or NDJSON.
enum Display {
    Plain,
    Spinner(indicatif::ProgressBar),
    Json,
}

impl Display {
    fn new(json: bool, watcher: &Watcher) -> Display {
        if json {
            return Display::Json;
        }
        if !std::io::stderr().is_terminal() {
            return Display::Plain;
        }
        let bar = indicatif::ProgressBar::new_spinner();
        if let Ok(style) = indicatif::ProgressStyle::with_template("{spinner} {wide_msg}") {
            bar.set_style(style);
        }
        bar.set_message(watcher.summary());
        bar.enable_steady_tick(Duration::from_millis(120));
        Display::Spinner(bar)
    }

    fn entry(&self, entry: &StreamEntry, handled: &Handled, watcher: &Watcher) {
        match self {
            Display::Json => emit(&entry.raw.to_string()),
            Display::Plain => handled.lines.iter().for_each(|l| emit(l)),
            Display::Spinner(bar) => {
                if !handled.lines.is_empty() {
                    bar.suspend(|| handled.lines.iter().for_each(|l| emit(l)));
                }
                bar.set_message(watcher.summary());
            }
        }
    }

    /// A message about the watching itself, on stderr.
    fn notice(&self, text: &str) {
        match self {
            Display::Spinner(bar) => bar.suspend(|| eprintln!("{text}")),
            Display::Plain | Display::Json => eprintln!("{text}"),
        }
    }

    fn finish(&self) {
        if let Display::Spinner(bar) = self {
            bar.finish_and_clear();
        }
    }
}

/// How one connection to the event stream ended.
enum StreamEnd {
    /// The deployment reached this terminal status.
    Finished(Status),
    /// The stream ended or broke.
    Dropped { why: String },
}

/// Reads events from `source` line by line and hands the entries to `on_entry`.
fn read_stream(source: impl Read, mut on_entry: impl FnMut(&StreamEntry) -> ControlFlow<Status>) -> StreamEnd {
    let mut reader = BufReader::new(source);
    let mut parser = SseParser::default();
    let mut buf = Vec::new();
    loop {
        buf.clear();
        let read = (&mut reader).take(MAX_LINE).read_until(b'\n', &mut buf);
        match read {
            Ok(0) => {
                return StreamEnd::Dropped {
                    why: "the daemon closed the event stream".into(),
                }
            }
            Ok(_) => {}
            Err(e) => {
                return StreamEnd::Dropped {
                    why: format!("the event stream broke: {}", chain(&e)),
                }
            }
        }
        if buf.len() as u64 >= MAX_LINE && !buf.ends_with(b"\n") {
            // An overlong line: drop it and the rest of it, a piece at a time.
            loop {
                buf.clear();
                match (&mut reader).take(MAX_LINE).read_until(b'\n', &mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(_) if buf.ends_with(b"\n") => break,
                    Ok(_) => {}
                }
            }
            continue;
        }
        let line = String::from_utf8_lossy(&buf);
        let Some(event) = parser.feed(&line) else {
            continue;
        };
        let Some(entry) = parse_entry(&event) else {
            continue;
        };
        if let ControlFlow::Break(status) = on_entry(&entry) {
            return StreamEnd::Finished(status);
        }
    }
}

/// Exit code of a watched deployment that ended with `status`.
fn exit_code_for_final(status: Status) -> u8 {
    if status == Status::Succeeded {
        0
    } else {
        1
    }
}

/// Follows the deployment's event stream until a terminal status, reconnecting for up to 30 s.
fn watch(api: &Api, record: &Record, json: bool) -> Result<u8, Failure> {
    let id = record.id.to_string();
    let mut watcher = Watcher::new(&id, &title(record));
    watcher.status = Some(record.status);
    let display = Display::new(json, &watcher);
    if !json {
        display.notice(&format!(
            "watching {id} ({}); Ctrl-C stops watching, not the deployment",
            watcher.title
        ));
    }
    let mut outage: Option<Instant> = None;
    let mut delay = RECONNECT_FIRST_DELAY;
    let mut told = false;
    loop {
        let seen = watcher.last_seq;
        let opened = Instant::now();
        let why = match api.events(&id, watcher.last_seq) {
            Ok(resp) => {
                let end = read_stream(resp, |entry| {
                    let Some(handled) = watcher.handle(entry) else {
                        return ControlFlow::Continue(());
                    };
                    display.entry(entry, &handled, &watcher);
                    match handled.finished {
                        Some(status) => ControlFlow::Break(status),
                        None => ControlFlow::Continue(()),
                    }
                });
                match end {
                    StreamEnd::Finished(status) => {
                        display.finish();
                        if !json {
                            eprintln!("{id} ended: {status}");
                        }
                        return Ok(exit_code_for_final(status));
                    }
                    StreamEnd::Dropped { why } => {
                        // A connection that brought new entries, or stayed up, was no outage.
                        if watcher.last_seq != seen || opened.elapsed() >= HEALTHY_CONNECTION {
                            outage = None;
                            delay = RECONNECT_FIRST_DELAY;
                            told = false;
                        }
                        why
                    }
                }
            }
            Err(f) if f.retryable() => f.message(),
            Err(f) => {
                display.finish();
                return Err(f);
            }
        };
        let since = *outage.get_or_insert_with(Instant::now);
        if since.elapsed() >= RECONNECT_WINDOW {
            display.finish();
            return Err(Failure::Unreachable(format!(
                "lost the event stream of {id} for {} s: {why}",
                RECONNECT_WINDOW.as_secs()
            )));
        }
        if !told {
            display.notice(&format!("{why}; reconnecting…"));
            told = true;
        }
        std::thread::sleep(delay);
        delay = (delay * 2).min(RECONNECT_MAX_DELAY);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn sse_lines_become_events() {
        let mut p = SseParser::default();
        let lines = [
            ": keep-alive\n",
            "id: 7\n",
            "event: entry\n",
            "data: {\"seq\":7,\n",
            "data:\"x\":1}\r\n",
            "\n",
        ];
        let mut events = vec![];
        for l in lines {
            events.extend(p.feed(l));
        }
        assert_eq!(
            events,
            vec![SseEvent {
                id: Some("7".into()),
                event: "entry".into(),
                data: "{\"seq\":7,\n\"x\":1}".into(),
            }]
        );
        // A blank line without data dispatches nothing; the id is kept.
        assert_eq!(p.feed("\n"), None);
        assert_eq!(p.feed("event: entry"), None);
        assert_eq!(p.feed("data"), None);
        let ev = p.feed("").unwrap();
        assert_eq!((ev.id.as_deref(), ev.data.as_str()), (Some("7"), ""));
    }

    fn entry_json(seq: u64, deployment: &str, facts: Value) -> String {
        serde_json::json!({
            "seq": seq,
            "deployment": deployment,
            "index": 3,
            "at": "2026-03-03T10:20:00.123Z",
            "kind": "event",
            "hash": "ab12",
            "body": {"kind": "event", "event": {"whatever": true}, "facts": facts},
        })
        .to_string()
    }

    fn stream_of(entries: &[String]) -> String {
        let mut s = String::from(": hello\n\n");
        for (i, e) in entries.iter().enumerate() {
            s.push_str(&format!("id: {i}\nevent: entry\ndata: {e}\n\n"));
        }
        s
    }

    #[test]
    fn entries_are_read_from_a_stream_and_unknown_facts_skipped() {
        let facts = serde_json::json!([
            {"fact": "stage_started", "at": "2026-03-03T10:20:00Z", "stage": "deploy"},
            {"fact": "from_the_future", "at": "2026-03-03T10:20:00Z"},
            {"fact": "sample", "at": "2026-03-03T10:25:00Z", "stage": "deploy", "minute": 5,
             "traffic_percent": 25,
             "sample": {"error_rate": 0.001, "latency_p99_ms": 120.0, "cpu": 0.4, "memory": 0.55},
             "error": null},
            {"fact": "alert", "broken": 1},
        ]);
        let text = stream_of(&[
            entry_json(10, "d-000001", facts),
            entry_json(11, "d-000002", serde_json::json!([])),
            "not json".to_string(),
        ]);
        let mut seen = vec![];
        let end = read_stream(text.as_bytes(), |e| {
            seen.push(e.clone());
            ControlFlow::Continue(())
        });
        assert!(matches!(end, StreamEnd::Dropped { .. }));
        assert_eq!(seen.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![10, 11]);
        assert_eq!(seen[0].raw["hash"], "ab12");
        let facts = entry_facts(&seen[0]);
        assert_eq!(facts.len(), 2);

        let mut w = Watcher::new("d-000001", "web 1.2.3");
        let h = w.handle(&seen[0]).unwrap();
        assert_eq!(
            h.lines,
            vec![
                "2026-03-03T10:20:00Z d-000001 stage deploy started",
                "2026-03-03T10:25:00Z d-000001 sample 25% traffic: error 0.10% p99 120 ms cpu 40% memory 55% (minute 5)",
            ]
        );
        assert_eq!(h.finished, None);
        assert_eq!(
            w.summary(),
            "d-000001 · deploy · 25% traffic · err 0.10% p99 120ms cpu 40% mem 55%"
        );
        // Another deployment's entry and a replayed entry are skipped.
        assert_eq!(w.handle(&seen[1]), None);
        assert_eq!(w.handle(&seen[0]), None);
        assert_eq!(w.last_seq, Some(11));
    }

    #[test]
    fn simulated_and_unmeasured_values_are_shown_as_such() {
        let sample: SampleEntry = serde_json::from_value(serde_json::json!({
            "at": "2026-03-03T10:25:00Z", "stage": "monitor", "minute": 5, "traffic_percent": 100,
            "sample": {"error_rate": 0.001, "latency_p99_ms": 120.0, "cpu": null, "memory": 0.5, "simulated": true},
            "error": null,
        }))
        .unwrap();
        assert_eq!(
            describe_sample(&sample, None),
            "100% traffic: error 0.10% p99 120 ms cpu not measured memory 50% (simulated) (minute 5)"
        );
        let step: Fact = serde_json::from_value(serde_json::json!({
            "fact": "deploy_step", "at": "2026-03-03T10:25:00Z", "step": "Backup created", "ok": true,
            "detail": "", "simulated": true,
        }))
        .unwrap();
        assert_eq!(describe_fact(&step, None).unwrap(), "step Backup created (simulated)");
        let observed: Fact = serde_json::from_value(serde_json::json!({
            "fact": "deploy_step", "at": "2026-03-03T10:25:00Z", "step": "Backup created", "ok": true, "detail": "",
        }))
        .unwrap();
        assert_eq!(describe_fact(&observed, None).unwrap(), "step Backup created");
    }

    #[test]
    fn a_terminal_status_ends_the_watch() {
        let facts = serde_json::json!([
            {"fact": "stage_finished", "at": "2026-03-03T11:00:00Z", "stage": "monitor", "outcome": "passed", "note": ""},
            {"fact": "status", "at": "2026-03-03T11:00:00Z", "status": "succeeded", "note": "all checks passed"},
        ]);
        let text = stream_of(&[
            entry_json(3, "d-000001", facts),
            entry_json(4, "d-000001", serde_json::json!([])),
        ]);
        let mut w = Watcher::new("d-000001", "web 1.2.3");
        let mut lines = vec![];
        let end = read_stream(text.as_bytes(), |e| {
            let h = w.handle(e).unwrap();
            lines.extend(h.lines);
            match h.finished {
                Some(s) => ControlFlow::Break(s),
                None => ControlFlow::Continue(()),
            }
        });
        assert!(matches!(end, StreamEnd::Finished(Status::Succeeded)));
        assert_eq!(
            lines,
            vec![
                "2026-03-03T11:00:00Z d-000001 stage monitor passed",
                "2026-03-03T11:00:00Z d-000001 status succeeded: all checks passed",
            ]
        );
        assert_eq!(exit_code_for_final(Status::Succeeded), 0);
        assert_eq!(exit_code_for_final(Status::RolledBack), 1);
        assert_eq!(exit_code_for_final(Status::Cancelled), 1);
        // A non-terminal status does not end it.
        let mut w = Watcher::new("d-000001", "web");
        let e = parse_entry(&SseEvent {
            id: None,
            event: "entry".into(),
            data: entry_json(
                1,
                "d-000001",
                serde_json::json!([{"fact": "status", "at": "2026-03-03T10:00:00Z", "status": "awaiting_approval", "note": ""}]),
            ),
        })
        .unwrap();
        assert_eq!(w.handle(&e).unwrap().finished, None);
        assert_eq!(w.status, Some(Status::AwaitingApproval));
    }

    #[test]
    fn token_comes_from_flag_then_env_then_state_dir() {
        let dir = tempfile::tempdir().unwrap();
        let token = |flag, env| match resolve_token(flag, env, dir.path()) {
            Ok((t, _)) => t,
            Err(f) => format!("ERR {}", f.message()),
        };
        let missing = token(None, None);
        assert!(missing.starts_with("ERR no API token: pass --token, set STAGECOACH_TOKEN, or run the daemon once"));
        assert!(missing.contains("admin.token"), "{missing}");
        assert!(resolve_token(None, None, dir.path()).unwrap_err().exit_code() == 2);
        std::fs::write(dir.path().join("admin.token"), "  from-file\n").unwrap();
        assert_eq!(token(None, None), "from-file");
        assert_eq!(token(None, Some("from-env")), "from-env");
        assert_eq!(token(Some("from-flag"), Some("from-env")), "from-flag");
        assert_eq!(token(Some("  "), Some("")), "from-file");
        std::fs::write(dir.path().join("admin.token"), "\n").unwrap();
        assert!(token(None, None).starts_with("ERR no API token"));
    }

    #[test]
    fn a_refused_token_names_its_source_and_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("admin.token"), "stale\n").unwrap();
        let source = |flag, env| resolve_token(flag, env, dir.path()).unwrap().1;
        assert_eq!(source(Some("t"), Some("e")), TokenSource::Flag);
        assert_eq!(source(None, Some("e")), TokenSource::Env);
        let file = source(None, None);
        assert_eq!(file, TokenSource::AdminFile(dir.path().join("admin.token")));
        let refused = || {
            api_failure(
                401,
                r#"{"error": {"code": "unauthorized", "message": "unknown token"}}"#,
            )
        };
        let text = file.explain("http://127.0.0.1:7400", refused()).message();
        assert!(
            text.starts_with("the daemon at http://127.0.0.1:7400 did not accept the token from "),
            "{text}"
        );
        assert!(
            text.contains("admin.token (the generated admin's token): unknown token;"),
            "{text}"
        );
        assert!(
            text.contains("[[principals]]") && text.contains("delete the stale"),
            "{text}"
        );
        assert!(text.ends_with("(401 unauthorized)"), "{text}");
        let text = TokenSource::Env.explain("http://x", refused()).message();
        assert!(text.contains("token from STAGECOACH_TOKEN: unknown token;"), "{text}");
        assert!(text.contains("`stagecoach principal add NAME --role ROLE`"), "{text}");
        let text = TokenSource::Flag.explain("http://x", refused()).message();
        assert!(text.contains("token from --token: unknown token;"), "{text}");
        assert_eq!(TokenSource::Flag.explain("http://x", refused()).exit_code(), 1);
    }

    #[test]
    fn exit_codes_follow_the_status() {
        for (status, code) in [
            (400, 1),
            (401, 1),
            (403, 1),
            (404, 1),
            (409, 1),
            (413, 1),
            (422, 1),
            (500, 2),
            (502, 2),
            (503, 2),
        ] {
            assert_eq!(exit_code_for_status(status), code, "{status}");
        }
        let f = api_failure(
            409,
            r#"{"error": {"code": "not_awaiting_approval", "message": "d-000001 is not awaiting approval"}}"#,
        );
        assert_eq!(
            f.message(),
            "d-000001 is not awaiting approval (409 not_awaiting_approval)"
        );
        assert_eq!(f.exit_code(), 1);
        assert!(!f.retryable());
        let f = api_failure(503, "");
        assert_eq!(f.message(), "Service Unavailable (503)");
        assert!(f.retryable());
        assert_eq!(
            api_failure(502, "bad gateway from proxy").message(),
            "bad gateway from proxy (502)"
        );
        assert_eq!(Failure::Unreachable("x".into()).exit_code(), 2);
        assert_eq!(Failure::Usage("x".into()).exit_code(), 2);
    }

    #[test]
    fn ids_and_urls_are_checked() {
        assert_eq!(deployment_id("7").unwrap(), "d-000007");
        assert_eq!(deployment_id("d-000042").unwrap(), "d-000042");
        assert!(deployment_id("../x").is_err());
        assert!(deployment_id("d-1?x=1").is_err());
        assert!(deployment_id("").is_err());
        assert_eq!(escalation_id("d-000001-e2").unwrap(), "d-000001-e2");
        assert_eq!(escalation_id("1-e1").unwrap(), "d-000001-e1");
        assert!(escalation_id("d-000001").is_err());
        assert!(escalation_id("d-000001-ex").is_err());
        assert_eq!(base_url("127.0.0.1:7400").unwrap(), "http://127.0.0.1:7400");
        assert_eq!(base_url("http://h:1/").unwrap(), "http://h:1");
        assert!(base_url("ftp://h").is_err());
        assert!(is_loopback("http://127.0.0.1:7400"));
        assert!(is_loopback("http://localhost:7400"));
        assert!(is_loopback("http://[::1]:7400"));
        assert!(!is_loopback("http://deploy.example:7400"));
        assert_eq!(
            parse_rfc3339("2026-03-03T23:00:00+01:00").unwrap(),
            "2026-03-03T22:00:00+00:00"
        );
        assert!(parse_rfc3339("tomorrow").is_err());
    }

    #[test]
    fn facts_read_as_lines() {
        let sample = SampleEntry {
            at: ts("2026-03-03T10:25:00Z"),
            stage: Stage::Monitor,
            minute: 12,
            traffic_percent: 100,
            sample: None,
            error: Some("metrics endpoint timed out".into()),
        };
        assert_eq!(
            describe_sample(&sample, None),
            "100% traffic: no metrics: metrics endpoint timed out (minute 12)"
        );
        assert_eq!(
            describe_sample(&sample, Some(ts("2026-03-03T10:24:18Z"))),
            "100% traffic: no metrics: metrics endpoint timed out (42 s into DEPLOY)"
        );
        let alert: Fact = serde_json::from_value(serde_json::json!({
            "fact": "alert", "at": "2026-03-03T10:26:00Z", "stage": "deploy", "metric": "error_rate",
            "value": 0.06, "threshold": 0.05, "action": "rollback"
        }))
        .unwrap();
        assert_eq!(
            describe_fact(&alert, None).unwrap(),
            "alert error rate 6% over 5% -> rollback"
        );
        let step: Fact = serde_json::from_value(serde_json::json!({
            "fact": "deploy_step", "at": "2026-03-03T10:26:00Z",
            "step": "Canary at 25% of traffic, health checks passed", "ok": true, "detail": ""
        }))
        .unwrap();
        assert_eq!(
            describe_fact(&step, None).unwrap(),
            "step Canary at 25% of traffic, health checks passed"
        );
        let mut w = Watcher::new("d-000001", "web");
        w.apply(&step);
        assert_eq!(w.traffic, Some(25));
        assert_eq!(traffic_from_step("Traffic switched to green"), Some(100));
        assert_eq!(
            traffic_from_step("Instances 3-4/10 drained, updated, health-checked and restored"),
            Some(40)
        );
        assert_eq!(traffic_from_step("Instance 1/4 drained"), Some(25));
        assert_eq!(traffic_from_step("Backup created"), None);
        let status: Fact = serde_json::from_value(serde_json::json!({
            "fact": "status", "at": "2026-03-03T10:26:00Z", "status": "rolled_back", "note": ""
        }))
        .unwrap();
        assert_eq!(describe_fact(&status, None).unwrap(), "status rolled_back");
    }

    fn sample_record() -> Record {
        let request: Request = serde_json::from_value(serde_json::json!({
            "service": "web", "version": "1.2.3", "type": "standard", "strategy": "canary",
            "submitted_by": "alice", "changes": ["login page"], "scheduled_for": null, "attest": []
        }))
        .unwrap();
        let submitted = Fact::Submitted {
            id: DeploymentId(1),
            at: ts("2026-03-03T10:00:00Z"),
            request,
            strategy: workflow::types::Strategy::Canary,
            previous_version: None,
            production_version: None,
            target_version: Some(workflow::types::Version::parse("1.2.3").unwrap()),
        };
        let mut r = Record::open(&submitted).unwrap();
        let facts = serde_json::json!([
            {"fact": "stage_started", "at": "2026-03-03T10:00:01Z", "stage": "prepare"},
            {"fact": "stage_finished", "at": "2026-03-03T10:02:00Z", "stage": "prepare", "outcome": "passed", "note": ""},
            {"fact": "stage_started", "at": "2026-03-03T10:20:00Z", "stage": "deploy"},
            {"fact": "status", "at": "2026-03-03T10:20:00Z", "status": "escalated", "note": ""},
            {"fact": "escalation", "at": "2026-03-03T10:30:00Z", "reason": "unable_to_rollback", "detail": "restore failed"},
            {"fact": "issue", "at": "2026-03-03T10:30:00Z", "issue": "cache not cleared"},
        ]);
        for f in facts.as_array().unwrap() {
            r.apply(&serde_json::from_value(f.clone()).unwrap());
        }
        r
    }

    #[test]
    fn status_and_list_render() {
        let r = sample_record();
        let text = render_status(&r);
        assert!(
            text.starts_with("d-000001  web 1.2.3  (standard, canary)\nstatus:     escalated\n"),
            "{text}"
        );
        assert!(
            text.contains("  prepare   passed   2026-03-03T10:00:01Z → 2026-03-03T10:02:00Z\n"),
            "{text}"
        );
        assert!(
            text.contains("  deploy    running  since 2026-03-03T10:20:00Z\n"),
            "{text}"
        );
        assert!(text.contains("  - cache not cleared\n"), "{text}");
        assert!(
            text.contains("  d-000001-e1  2026-03-03T10:30:00Z  unable_to_rollback: restore failed (NOT acknowledged: `stagecoach ack d-000001-e1`)"),
            "{text}"
        );
        let table = render_table(std::slice::from_ref(&r));
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(lines[0].starts_with("ID        SERVICE  VERSION  TYPE      STRATEGY  STATUS     STAGE   SUBMITTED BY"));
        assert_eq!(
            lines[1],
            "d-000001  web      1.2.3    standard  canary    escalated  deploy  alice         2026-03-03T10:00:00Z"
        );
        assert_eq!(render_table(&[]), "no deployments\n");
        assert_eq!(
            submitted_line(&r),
            "submitted d-000001: web 1.2.3 (standard, canary) — status escalated"
        );
        // The record survives a JSON round trip, as the daemon sends it.
        let back = record(&serde_json::to_value(&r).unwrap()).unwrap();
        assert_eq!(back, r);
    }

    #[test]
    fn status_names_the_pending_roles_and_lists_refused_attempts_under_them() {
        let mut r = sample_record();
        let facts = serde_json::json!([
            {"fact": "status", "at": "2026-03-03T10:25:00Z", "status": "awaiting_approval", "note": ""},
            {"fact": "approval_requested", "at": "2026-03-03T10:25:00Z", "role": "manager", "deadline": "2026-03-04T10:25:00Z"},
            {"fact": "approval_requested", "at": "2026-03-03T10:25:00Z", "role": "security", "deadline": "2026-03-04T10:25:00Z"},
            {"fact": "approval", "role": "manager", "decision": "refused", "by": "alice", "at": "2026-03-03T10:26:07Z",
             "reason": "alice submitted this deployment and cannot approve it (separation of duties)", "criteria": []},
        ]);
        for f in facts.as_array().unwrap() {
            r.apply(&serde_json::from_value(f.clone()).unwrap());
        }
        let text = render_status(&r);
        assert!(
            text.contains(
                "approvals:\n  manager   pending         since 2026-03-03T10:25:00Z, deadline 2026-03-04T10:25:00Z\n    refused: alice at 2026-03-03T10:26:07Z: alice submitted this deployment and cannot approve it (separation of duties)\n  security  pending         since 2026-03-03T10:25:00Z, deadline 2026-03-04T10:25:00Z\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("waiting for approval by manager, security: stagecoach approve d-000001 --role manager [--reason …], or stagecoach reject d-000001 --role manager --reason …\n"),
            "{text}"
        );
        assert!(!text.contains("refused  "), "{text}");

        // The watch summary names them too, until they are decided.
        let mut w = Watcher::new("d-000001", "web 1.2.3");
        for f in facts.as_array().unwrap() {
            w.apply(&serde_json::from_value(f.clone()).unwrap());
        }
        assert!(
            w.summary().contains("waiting for approval by manager, security"),
            "{}",
            w.summary()
        );
        let granted: Fact = serde_json::from_value(serde_json::json!({"fact": "approval", "role": "manager",
            "decision": "granted", "by": "bob", "at": "2026-03-03T10:30:00Z", "reason": "ok", "criteria": []}))
        .unwrap();
        w.apply(&granted);
        assert!(
            w.summary().contains("waiting for approval by security"),
            "{}",
            w.summary()
        );
        let requested: Fact = serde_json::from_value(facts[1].clone()).unwrap();
        assert_eq!(
            describe_fact(&requested, None).unwrap(),
            "approval manager pending: waiting for a person with the manager role until 2026-03-04T10:25:00Z"
        );

        // Samples are dated from the start of DEPLOY, in seconds under a minute.
        let mut r = sample_record();
        for f in [
            serde_json::json!({"fact": "deploy_started", "at": "2026-03-03T10:20:00Z", "strategy": "canary"}),
            serde_json::json!({"fact": "sample", "at": "2026-03-03T10:20:42Z", "stage": "deploy", "minute": 0,
                "traffic_percent": 10, "sample": {"error_rate": 0.0, "latency_p99_ms": 25.0, "cpu": 0.0, "memory": 0.0}, "error": null}),
        ] {
            r.apply(&serde_json::from_value(f).unwrap());
        }
        let text = render_status(&r);
        assert!(
            text.contains("last sample: 10% traffic: error 0.00% p99 25 ms cpu 0% memory 0% (42 s into DEPLOY) at 2026-03-03T10:20:42Z\n"),
            "{text}"
        );
    }

    #[test]
    fn verification_renders() {
        let ok: Verification = serde_json::from_value(serde_json::json!({
            "deployment": "d-000001", "entries": 12, "intact": true, "problems": [], "head": "9f2c"
        }))
        .unwrap();
        assert_eq!(
            render_verification("d-000001", &ok),
            "chain of d-000001 intact (12 entries, head 9f2c)"
        );
        let bad: Verification = serde_json::from_value(serde_json::json!({
            "deployment": "d-000001", "entries": 12, "intact": false,
            "problems": ["entry 3: hash mismatch"], "head": "9f2c"
        }))
        .unwrap();
        assert_eq!(
            render_verification("d-000001", &bad),
            "chain of d-000001 BROKEN:\n  - entry 3: hash mismatch\n"
        );
    }

    #[test]
    fn options_parse_in_a_cli_like_main() {
        use clap::{CommandFactory, Parser, Subcommand};
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            opts: ClientOpts,
            #[command(subcommand)]
            command: Cmd,
        }
        #[derive(Subcommand)]
        enum Cmd {
            Simulate {
                scenario: PathBuf,
            },
            #[command(flatten)]
            Client(ClientCommand),
        }
        Cli::command().debug_assert();
        let cli = Cli::try_parse_from([
            "stagecoach",
            "submit",
            "web",
            "1.2.3",
            "--strategy",
            "canary",
            "--change",
            "a",
            "--change",
            "b",
            "--json",
            "--server",
            "http://x:1",
        ])
        .unwrap();
        assert!(cli.opts.json);
        assert_eq!(cli.opts.server.as_deref(), Some("http://x:1"));
        match cli.command {
            Cmd::Client(ClientCommand::Submit {
                kind, changes, watch, ..
            }) => {
                assert_eq!(kind, "standard");
                assert_eq!(changes, ["a", "b"]);
                assert!(!watch);
            }
            _ => panic!("not submit"),
        }
        assert!(Cli::try_parse_from(["stagecoach", "reject", "d-000001"]).is_err());
        assert!(Cli::try_parse_from(["stagecoach", "approve", "1", "--role", "ceo"]).is_err());
        let cli = Cli::try_parse_from(["stagecoach", "--token", "secret", "approve", "1"]).unwrap();
        assert!(!format!("{:?}", cli.opts).contains("secret"));
        assert!(matches!(cli.command, Cmd::Client(ClientCommand::Approve { ref role, .. }) if role == "manager"));
        assert!(Cli::try_parse_from(["stagecoach", "simulate", "x.toml"]).is_ok());
    }
}
