//! The command-line client of the daemon's HTTP API: `submit`, `list`,
//! `status`, `watch`, `approve`, `reject`, `rollback`, `cancel`, `ack`,
//! `record`, `verify` and `report dora`. Glue: the arguments become a typed
//! request of the `client` crate, its answer becomes text (`render`) or
//! JSON, and the outcome an exit code. `report dora` lists every record and
//! hands them to `workflow::dora::dora`, which computes the figures.
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
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use chrono::{DateTime, Utc};
use client::wire::{AckRequest, ApprovalRequest, Decision, ReasonRequest, Record, SubmitRequest, Verification};
use client::ApiError;
use serde::Serialize;
use serde_json::Value;
use workflow::dora::{parse_bound, Bound, Period};
use workflow::types::{DeploymentId, ServiceName, Version};

use crate::render::{render_dora, render_status, render_table, render_verification, submitted_line};
use crate::watch::watch;

/// Environment variable holding the API token.
pub const TOKEN_ENV: &str = "STAGECOACH_TOKEN";
/// File in the state directory where the daemon writes the admin token.
pub const TOKEN_FILE: &str = "admin.token";

/// Options shared by every client command.
#[derive(clap::Args, Clone, Default)]
pub struct ClientOpts {
    /// URL of the daemon [default: `[server] url` of the configuration, else http://<[server] listen>].
    #[arg(long, value_name = "URL", global = true)]
    pub server: Option<String>,
    /// API token [default: $STAGECOACH_TOKEN, else the daemon's STATE_DIR/admin.token].
    #[arg(long, value_name = "TOKEN", global = true)]
    pub token: Option<String>,
    /// Print the daemon's JSON answer instead of text (`watch`: one journal entry per line; `report dora`: the
    /// figures as JSON).
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
    /// Let a rolled-back version of a service go out again (manager role).
    ///
    /// A version that was rolled back is refused for its service until a
    /// manager unblocks it; the reason is recorded in the Deployment Record
    /// of the deployment whose rollback blocked it.
    Unblock {
        /// The service, e.g. web.
        service: String,
        /// The blocked version, e.g. 1.2.0.
        version: String,
        /// Why it may go out again.
        #[arg(long, value_name = "TEXT")]
        reason: String,
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
    /// Figures computed from the deployment records.
    #[command(subcommand)]
    Report(ReportCommand),
}

/// The reports of `stagecoach report`.
#[derive(clap::Subcommand, Debug, Clone)]
pub enum ReportCommand {
    /// The four DORA metrics of a period, from the deployment records: deployment frequency, lead
    /// time for changes, change failure rate and time to restore (defined in docs/operations.md).
    Dora {
        /// Only deployments of this service.
        #[arg(long, value_name = "SERVICE")]
        service: Option<String>,
        /// Start of the period: a date YYYY-MM-DD (from 00:00 UTC) or an RFC 3339 time [default: 30 days before
        /// --until].
        #[arg(long, value_name = "DATE")]
        since: Option<String>,
        /// End of the period: a date YYYY-MM-DD (that day included, to 24:00 UTC) or an RFC 3339 time (excluded)
        /// [default: now].
        #[arg(long, value_name = "DATE")]
        until: Option<String>,
    },
}

/// The days `report dora` covers when no `--since` is given.
pub const DORA_DEFAULT_DAYS: u32 = 30;

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
pub(crate) enum Failure {
    /// Bad arguments, no token: exit 2.
    Usage(String),
    /// What the client met: no answer, an answer not understood (exit 2),
    /// or an error answer (exit by its status).
    Client(client::Error),
}

impl From<client::Error> for Failure {
    fn from(e: client::Error) -> Self {
        Failure::Client(e)
    }
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
    /// No answer to act on, with what was tried.
    pub(crate) fn unreachable(message: String) -> Failure {
        Failure::Client(client::Error::Unreachable(message))
    }

    fn exit_code(&self) -> u8 {
        match self {
            Failure::Client(client::Error::Api(e)) => exit_code_for_status(e.status),
            Failure::Usage(_) | Failure::Client(_) => 2,
        }
    }

    /// Whether `watch` should keep trying: the daemon may be restarting.
    pub(crate) fn retryable(&self) -> bool {
        matches!(self, Failure::Client(e) if e.retryable())
    }

    pub(crate) fn message(&self) -> String {
        match self {
            Failure::Usage(m) => m.clone(),
            Failure::Client(e) => e.to_string(),
        }
    }

    fn report(&self, json: bool) {
        if json {
            if let Failure::Client(client::Error::Api(ApiError { body: Some(body), .. })) = self {
                emit(&pretty(body));
            }
        }
        eprintln!("error: {}", self.message());
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
        let Failure::Client(client::Error::Api(refusal)) = failure else {
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
        Failure::Client(client::Error::Api(ApiError {
            message: format!(
                "the daemon at {base} did not accept the token from {from}: {}; {advice}",
                refusal.message
            ),
            ..refusal
        }))
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
    client::base_url(raw).map_err(|_| {
        Failure::Usage(format!(
            "server URL {raw:?} is invalid: expected http://HOST:PORT (pass --server or set [server] url)"
        ))
    })
}

/// The client of the daemon, and where its token came from (for the message of a 401).
pub(crate) struct Api {
    client: client::Client,
    source: TokenSource,
}

impl Api {
    fn connect(server: &str, (token, source): (String, TokenSource)) -> Result<Api, Failure> {
        let client = client::Client::new(server, &token)?;
        Ok(Api { client, source })
    }

    /// Calls the daemon; a refused token (401) says where it came from and what to do.
    pub(crate) fn call<T>(&self, f: impl FnOnce(&client::Client) -> Result<T, client::Error>) -> Result<T, Failure> {
        f(&self.client).map_err(|e| match e {
            client::Error::Api(refusal) if refusal.status == 401 => self
                .source
                .explain(self.client.base_url(), Failure::Client(client::Error::Api(refusal))),
            e => Failure::Client(e),
        })
    }
}

// ---------------------------------------------------------------------------
// Commands

/// The deployment or escalation id a command names, checked before looking
/// for a token, so that a typo is reported as such.
fn target_id(cmd: &ClientCommand) -> Result<String, Failure> {
    Ok(match cmd {
        ClientCommand::Submit { .. } | ClientCommand::List { .. } | ClientCommand::Report(_) => String::new(),
        ClientCommand::Ack { escalation_id: e, .. } => escalation_id(e)?,
        ClientCommand::Unblock { service, version, .. } => {
            ServiceName::parse(service).map_err(|e| Failure::Usage(format!("SERVICE: {e}")))?;
            Version::parse(version).map_err(|e| Failure::Usage(format!("VERSION: {e}")))?;
            String::new()
        }
        ClientCommand::Status { id }
        | ClientCommand::Watch { id }
        | ClientCommand::Approve { id, .. }
        | ClientCommand::Reject { id, .. }
        | ClientCommand::Rollback { id, .. }
        | ClientCommand::Cancel { id, .. }
        | ClientCommand::Record { id }
        | ClientCommand::Verify { id, .. } => deployment_id(id)?,
    })
}

/// Checks the arguments, finds the token, sends the command's request and
/// prints the answer; the exit code of a command that got its answer.
fn execute(cmd: ClientCommand, opts: &ClientOpts, defaults: ClientDefaults) -> Result<u8, Failure> {
    let json = opts.json;
    let server = base_url(opts.server.as_deref().unwrap_or(&defaults.server_url))?;
    let id = target_id(&cmd)?;
    let report = match &cmd {
        ClientCommand::Report(ReportCommand::Dora { service, since, until }) => Some(dora_arguments(
            service.as_deref(),
            since.as_deref(),
            until.as_deref(),
            Utc::now(),
        )?),
        _ => None,
    };
    let state_dir = opts.state_dir.clone().unwrap_or(defaults.state_dir);
    if let ClientCommand::Verify { offline: true, .. } = cmd {
        return verify_offline(&id, &state_dir, json);
    }
    let env = std::env::var(TOKEN_ENV).ok();
    let api = Api::connect(
        &server,
        resolve_token(opts.token.as_deref(), env.as_deref(), &state_dir)?,
    )?;
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
            let scheduled_for = scheduled_for
                .map(|t| t.parse::<DateTime<Utc>>())
                .transpose()
                .map_err(|e| Failure::Usage(format!("--scheduled-for: {e}")))?;
            let request = SubmitRequest {
                service,
                version,
                kind: Some(kind),
                strategy,
                changes,
                scheduled_for,
                target_version,
                override_window_reason: override_window,
                attest,
            };
            let record = api.call(|c| c.submit(&request))?;
            submitted(&api, &record, json, watch)
        }
        ClientCommand::List { service, status } => {
            let records = api.call(|c| c.list_all(service.as_deref(), status.as_deref()))?;
            if json {
                emit(&pretty(
                    &serde_json::json!({ "deployments": records, "next_cursor": null }),
                ));
            } else {
                emit(render_table(&records).trim_end());
            }
            Ok(0)
        }
        ClientCommand::Status { .. } => {
            let record = api.call(|c| c.deployment(&id))?;
            show(&record, json, |r| render_status(r).trim_end().to_string());
            Ok(0)
        }
        ClientCommand::Watch { .. } => watch(&api, &api.call(|c| c.deployment(&id))?, json),
        ClientCommand::Approve { role, reason, .. } => decide(&api, &id, role, Decision::Approve, reason, json),
        ClientCommand::Reject { role, reason, .. } => decide(&api, &id, role, Decision::Reject, Some(reason), json),
        ClientCommand::Rollback { reason, .. } => {
            let request = ReasonRequest { reason: Some(reason) };
            let record = api.call(|c| c.rollback(&id, &request))?;
            changed(&record, json, &format!("{id}: rollback requested"))
        }
        ClientCommand::Cancel { reason, .. } => {
            let record = api.call(|c| c.cancel(&id, &ReasonRequest { reason }))?;
            changed(&record, json, &format!("{id}: cancel requested"))
        }
        ClientCommand::Unblock {
            service,
            version,
            reason,
        } => {
            let request = ReasonRequest { reason: Some(reason) };
            let record = api.call(|c| c.unblock(&service, &version, &request))?;
            changed(
                &record,
                json,
                &format!("{service} {version}: unblocked (it was blocked by {})", record.id),
            )
        }
        ClientCommand::Ack { note, .. } => {
            let record = api.call(|c| c.acknowledge(&id, &AckRequest { note }))?;
            changed(&record, json, &format!("{id}: acknowledged"))
        }
        ClientCommand::Record { .. } if json => {
            emit(&pretty(&api.call(|c| c.deployment(&id))?));
            Ok(0)
        }
        ClientCommand::Record { .. } => {
            emit(api.call(|c| c.record_markdown(&id))?.trim_end());
            Ok(0)
        }
        ClientCommand::Verify { .. } => {
            let report = api.call(|c| c.verify(&id))?;
            show(&report, json, |v| render_verification(&id, v).trim_end().to_string());
            Ok(if report.intact { 0 } else { 1 })
        }
        ClientCommand::Report(ReportCommand::Dora { .. }) => {
            // Read with the other arguments, before the token was looked for.
            let Some((period, service)) = report else {
                return Err(Failure::Usage("report dora: the period was not read".into()));
            };
            // Every record of the service (or all): a failed change's restoration may lie after the period.
            let records = api.call(|c| c.list_all(service.as_ref().map(ServiceName::as_str), None))?;
            let figures = workflow::dora::dora(&records, period, service.as_ref());
            show(&figures, json, |d| render_dora(d).trim_end().to_string());
            Ok(0)
        }
    }
}

/// The period and service of `report dora`, checked before anything is
/// asked of the daemon; `now` is the default end.
fn dora_arguments(
    service: Option<&str>,
    since: Option<&str>,
    until: Option<&str>,
    now: DateTime<Utc>,
) -> Result<(Period, Option<ServiceName>), Failure> {
    let service = service
        .map(|s| {
            ServiceName::parse(s.trim()).map_err(|e| {
                Failure::Usage(format!(
                    "--service: {e}; pass a service name as `stagecoach list` shows it"
                ))
            })
        })
        .transpose()?;
    let bound = |flag: &str, raw: Option<&str>, bound: Bound| {
        raw.map(|raw| {
            parse_bound(raw, bound).map_err(|e| Failure::Usage(format!("{flag}: {e}; e.g. {flag} 2026-12-01")))
        })
        .transpose()
    };
    let until_at = bound("--until", until, Bound::Until)?.unwrap_or(now);
    let period = match bound("--since", since, Bound::Since)? {
        None => Period::days_before(until_at, DORA_DEFAULT_DAYS),
        Some(since_at) => Period::new(since_at, until_at).map_err(|_| {
            let at = |t: DateTime<Utc>| t.format("%Y-%m-%dT%H:%M:%SZ");
            let until_text = match until {
                Some(raw) => format!("--until {raw} (the period ends at {})", at(until_at)),
                None => format!("now ({}, the default of --until)", at(until_at)),
            };
            Failure::Usage(format!(
                "--since {} (the period starts at {}) is not before {until_text}: pass an earlier --since or a \
                 later --until",
                since.unwrap_or_default(),
                at(since_at)
            ))
        })?,
    };
    Ok((period, service))
}

/// Prints an answer: its JSON, or its text.
fn show<T: Serialize>(answer: &T, json: bool, text: impl FnOnce(&T) -> String) {
    if json {
        emit(&pretty(answer));
    } else {
        emit(&text(answer));
    }
}

/// `approve` and `reject`.
fn decide(
    api: &Api,
    id: &str,
    role: String,
    decision: Decision,
    reason: Option<String>,
    json: bool,
) -> Result<u8, Failure> {
    let request = ApprovalRequest {
        role: role.clone(),
        decision,
        reason,
    };
    let record = api.call(|c| c.decide(id, &request))?;
    let done = match decision {
        Decision::Approve => "approved",
        Decision::Reject => "rejected",
    };
    changed(&record, json, &format!("{id}: {done} as {role}"))
}

/// Prints the answer of a command that changed a deployment.
fn changed(record: &Record, json: bool, what: &str) -> Result<u8, Failure> {
    show(record, json, |r| format!("{what} — status {}", r.status));
    Ok(0)
}

/// Prints what `submit` did, and follows the deployment with `--watch`.
fn submitted(api: &Api, record: &Record, json: bool, watch_it: bool) -> Result<u8, Failure> {
    match (json, watch_it) {
        (true, false) => {
            emit(&pretty(record));
            return Ok(0);
        }
        // One JSON document per line, like the entries that follow.
        (true, true) => emit(&to_json(record).to_string()),
        (false, _) => {
            emit(&submitted_line(record));
            if !watch_it {
                emit(&format!("watch it with: stagecoach watch {}", record.id));
            }
        }
    }
    if watch_it {
        watch(api, record, json)
    } else {
        Ok(0)
    }
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
        return Err(Failure::Client(client::Error::Api(ApiError {
            status: 404,
            code: Some("not_found".into()),
            message: format!("no deployment {id} in the journal {}", path.display()),
            body: None,
        })));
    }
    let answer = daemon::api::verification_json(workflow::types::DeploymentId(number), &v);
    if json {
        emit(&pretty(&answer));
    } else {
        let report: Verification = serde_json::from_value(answer)
            .map_err(|e| client::Error::Protocol(format!("not a verification report: {e}")))?;
        emit(render_verification(id, &report).trim_end());
    }
    Ok(if v.intact { 0 } else { 1 })
}

// ---------------------------------------------------------------------------
// Output

/// Writes one line to stdout; a closed pipe is not an error worth a panic.
pub(crate) fn emit(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{text}");
    let _ = out.flush();
}

/// An answer as the JSON the daemon sent.
fn to_json<T: Serialize>(answer: &T) -> Value {
    serde_json::to_value(answer).unwrap_or(Value::Null)
}

fn pretty<T: Serialize>(answer: &T) -> String {
    let v = to_json(answer);
    serde_json::to_string_pretty(&v).unwrap_or_else(|_| v.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The failure for an error answer with `status` and `body`.
    fn api_failure(status: u16, body: &str) -> Failure {
        Failure::Client(client::Error::Api(ApiError::from_answer(status, body)))
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
        assert_eq!(Failure::unreachable("x".into()).exit_code(), 2);
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
        assert_eq!(
            parse_rfc3339("2026-03-03T23:00:00+01:00").unwrap(),
            "2026-03-03T22:00:00+00:00"
        );
        assert!(parse_rfc3339("tomorrow").is_err());
    }

    #[test]
    fn report_dora_checks_its_flags_before_asking_the_daemon() {
        let now = "2026-12-08T12:00:00Z".parse::<DateTime<Utc>>().unwrap();
        let args = |service, since, until| dora_arguments(service, since, until, now);
        let (period, service) = args(None, None, None).unwrap();
        assert_eq!(
            (period.since().to_rfc3339(), period.until()),
            ("2026-11-08T12:00:00+00:00".into(), now)
        );
        assert_eq!(service, None);
        let (period, service) = args(Some("web"), Some("2026-11-01"), Some("2026-11-30")).unwrap();
        assert_eq!(period.days(), 30.0, "both days included");
        assert_eq!(service.map(|s| s.to_string()).as_deref(), Some("web"));
        let (period, _) = args(None, None, Some("2026-12-01T10:00:00+01:00")).unwrap();
        assert_eq!(period.since().to_rfc3339(), "2026-11-01T09:00:00+00:00");

        let usage = |r: Result<(Period, Option<ServiceName>), Failure>| {
            let f = r.unwrap_err();
            assert_eq!(f.exit_code(), 2);
            f.message()
        };
        let m = usage(args(None, Some("2026-13-01"), None));
        assert!(
            m.starts_with("--since: \"2026-13-01\" is neither a date YYYY-MM-DD nor an RFC 3339 time"),
            "{m}"
        );
        let m = usage(args(None, None, Some("yesterday")));
        assert!(m.starts_with("--until: \"yesterday\""), "{m}");
        assert_eq!(
            usage(args(None, Some("2026-12-05"), Some("2026-12-01"))),
            "--since 2026-12-05 (the period starts at 2026-12-05T00:00:00Z) is not before --until 2026-12-01 \
             (the period ends at 2026-12-02T00:00:00Z): pass an earlier --since or a later --until"
        );
        let m = usage(args(None, Some("2027-01-01"), None));
        assert!(
            m.contains("is not before now (2026-12-08T12:00:00Z, the default of --until)"),
            "{m}"
        );
        let m = usage(args(Some("a b"), None, None));
        assert!(m.starts_with("--service: service name \"a b\" is invalid"), "{m}");
        assert!(m.ends_with("pass a service name as `stagecoach list` shows it"), "{m}");
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
