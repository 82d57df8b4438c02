//! Runs one configured action command for Stagecoach's agents.
//!
//! Every agent action (`tests`, `build`, `migrate`, `deploy`, `health`, `smoke`, `set_traffic`, `rollback`,
//! `clear_cache`, `scan`, …) can be configured per service in `agents.toml` as a [`CommandSpec`]:
//!
//! ```toml
//! [services.web.actions.deploy]
//! argv = ["./scripts/deploy.sh", "--env", "prod"]
//! cwd = "/srv/web"
//! env = { RUST_LOG = "info" }
//! timeout_seconds = 120
//! ```
//!
//! [`run`] executes such a command safely and reports an [`Outcome`]:
//!
//! - the program is executed directly, **never through a shell** (write `["sh", "-c", "…"]` to get one);
//! - the environment is inherited, then `spec.env` is added, then the daemon's own values (`STAGECOACH_*`), so
//!   the daemon's values win;
//! - stdin is `/dev/null`; stdout and stderr are both piped, read concurrently, and only the last
//!   [`TAIL_LINES`] lines / [`TAIL_BYTES`] bytes are kept in memory;
//! - the command runs in **its own process group**. On timeout the whole group gets `SIGTERM`, then, after
//!   at most [`KILL_GRACE`], `SIGKILL`; the direct child is always reaped. If the future returned by [`run`] is
//!   dropped (e.g. the calling actor stops) while the command is still running, the whole group is killed too;
//! - a background process that keeps stdout/stderr open after the direct child has exited (e.g.
//!   `sh -c "server & echo started"`) does not block [`run`]: output is read for at most [`DRAIN_GRACE`]
//!   after the direct child exits. Such processes are left running when the command itself succeeded or
//!   failed in time; they are only killed on timeout or drop.
//!
//! A relative program path (`./deploy.sh`) combined with `cwd` is resolved in a platform-specific way; prefer
//! absolute paths or `["sh", "-c", "./deploy.sh"]`.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::io;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::{ChildStderr, ChildStdout, Command};
use tokio::time::Instant;

/// How many lines of combined output [`Outcome::output_tail`] keeps.
pub const TAIL_LINES: usize = 20;
/// At most this many trailing bytes of combined output are kept to build [`Outcome::output_tail`].
pub const TAIL_BYTES: usize = 4096;
/// Timeout used when `timeout_seconds` is not configured.
pub const DEFAULT_TIMEOUT_SECONDS: f64 = 300.0;
/// After a timeout's `SIGTERM`, how long the process group gets to exit before `SIGKILL`.
pub const KILL_GRACE: Duration = Duration::from_secs(2);
/// Once the direct child has exited (or the group was killed), how long output is still read from processes
/// that inherited stdout/stderr before [`run`] stops waiting for end-of-file.
pub const DRAIN_GRACE: Duration = Duration::from_millis(200);

/// How often the process group is probed while it is being terminated.
const GROUP_POLL: Duration = Duration::from_millis(50);
/// Longest output line quoted by [`Outcome::summary`], in characters.
const SUMMARY_LINE_CHARS: usize = 200;

fn default_timeout() -> f64 {
    DEFAULT_TIMEOUT_SECONDS
}

/// One configured command, as written in agents.toml under `[services.NAME.actions.ACTION]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandSpec {
    /// Program and arguments; never passed through a shell (a user who wants one writes `["sh", "-c", "…"]`).
    pub argv: Vec<String>,
    /// Working directory; `None` = the daemon's working directory.
    #[serde(default)]
    pub cwd: Option<PathBuf>,
    /// Extra environment for this command.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Variables of the daemon's own environment this command also gets, besides [`BASE_ENV`]
    /// (e.g. `["KUBECONFIG", "AWS_PROFILE"]`). Nothing else of the daemon's environment is passed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env_passthrough: Vec<String>,
    /// Seconds before the whole process group is killed. Default 300.
    #[serde(default = "default_timeout")]
    pub timeout_seconds: f64,
}

/// The variables of the daemon's environment every command gets (when set): enough to find
/// programs and run them in the right locale. Anything else must be named in `env_passthrough`.
pub const BASE_ENV: &[&str] = &["PATH", "HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "TZ", "TMPDIR"];

/// The part of this process's environment a child gets: [`BASE_ENV`] plus `passthrough`, where set.
pub fn inherited_env(passthrough: &[String]) -> Vec<(String, std::ffi::OsString)> {
    BASE_ENV
        .iter()
        .map(|n| n.to_string())
        .chain(passthrough.iter().cloned())
        .filter_map(|name| std::env::var_os(&name).map(|v| (name, v)))
        .collect()
}

/// Checks the names of `env_passthrough`; errors start with `path`.
pub fn validate_passthrough(names: &[String], path: &str) -> Result<(), String> {
    for name in names {
        if name.is_empty() || name.contains('=') || name.contains('\0') {
            return Err(format!(
                "{path}: env_passthrough name {name:?} is invalid (it must be non-empty, without '=' or NUL)"
            ));
        }
    }
    Ok(())
}

impl CommandSpec {
    /// A spec running `argv` with no cwd, no extra environment and the default timeout.
    pub fn new<I, S>(argv: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        CommandSpec {
            argv: argv.into_iter().map(Into::into).collect(),
            cwd: None,
            env: BTreeMap::new(),
            env_passthrough: Vec::new(),
            timeout_seconds: DEFAULT_TIMEOUT_SECONDS,
        }
    }

    /// Checks what can be checked without running anything: a non-empty program name, no NUL bytes,
    /// well-formed environment names, and a finite positive timeout.
    ///
    /// `path` is where the spec lives in the configuration (e.g. `services.web.actions.deploy`); every error
    /// message starts with it.
    pub fn validate(&self, path: &str) -> Result<(), String> {
        match self.argv.first() {
            None => return Err(format!("{path}: argv must name a program (it is empty)")),
            Some(program) if program.trim().is_empty() => {
                return Err(format!("{path}: argv must name a program (argv[0] is empty)"))
            }
            Some(_) => {}
        }
        if let Some(i) = self.argv.iter().position(|a| a.contains('\0')) {
            return Err(format!("{path}: argv[{i}] contains a NUL byte"));
        }
        if let Some(cwd) = &self.cwd {
            if cwd.as_os_str().is_empty() {
                return Err(format!(
                    "{path}: cwd is empty (omit it to use the daemon's working directory)"
                ));
            }
        }
        for (name, value) in &self.env {
            if name.is_empty() || name.contains('=') || name.contains('\0') {
                return Err(format!(
                    "{path}: env name {name:?} is invalid (it must be non-empty, without '=' or NUL)"
                ));
            }
            if value.contains('\0') {
                return Err(format!("{path}: env value of {name} contains a NUL byte"));
            }
        }
        validate_passthrough(&self.env_passthrough, path)?;
        if !self.timeout_seconds.is_finite() || self.timeout_seconds <= 0.0 {
            return Err(format!(
                "{path}: timeout_seconds must be a positive number of seconds (got {})",
                self.timeout_seconds
            ));
        }
        Ok(())
    }

    fn program(&self) -> &str {
        self.argv.first().map(String::as_str).unwrap_or("")
    }

    fn cwd_display(&self) -> String {
        match &self.cwd {
            Some(cwd) => cwd.display().to_string(),
            None => match std::env::current_dir() {
                Ok(dir) => format!("{} (the daemon's working directory)", dir.display()),
                Err(_) => "the daemon's working directory".to_owned(),
            },
        }
    }

    fn timeout(&self) -> Duration {
        // `validate` guarantees a finite positive number; only absurdly large values fail to convert.
        Duration::try_from_secs_f64(self.timeout_seconds).unwrap_or(Duration::MAX)
    }
}

/// What happened to a command that could be started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    /// The exit code; `None` when the process was killed by a signal or timed out.
    pub exit_code: Option<i32>,
    /// The signal that terminated the direct child, if any.
    pub signal: Option<i32>,
    /// Exit code 0 and not timed out.
    pub success: bool,
    /// The timeout expired and the process group was terminated.
    pub timed_out: bool,
    /// Wall-clock time from spawn until the direct child was reaped and output collected.
    pub elapsed_ms: u64,
    /// The last [`TAIL_LINES`] (=20) lines / at most [`TAIL_BYTES`] (4 KiB) of combined stdout+stderr, in the
    /// order written as closely as practical, lossy UTF-8.
    pub output_tail: String,
    /// The same tail of stdout alone, for a command whose answer is what it prints.
    pub stdout_tail: String,
}

impl Outcome {
    /// One line for records/logs, e.g. `"exit 0 in 1.2 s"`, `"exit 3 in 0.4 s: <last line of output>"`,
    /// `"timed out after 30 s (process group killed)"`, `"killed by signal 9"`.
    ///
    /// Failures quote the last non-blank line of output (shortened to 200 characters) when there is one.
    pub fn summary(&self) -> String {
        let head = if self.timed_out {
            format!(
                "timed out after {} (process group killed)",
                format_elapsed(self.elapsed_ms)
            )
        } else if let Some(code) = self.exit_code {
            format!("exit {code} in {}", format_elapsed(self.elapsed_ms))
        } else if let Some(signal) = self.signal {
            format!("killed by signal {signal}")
        } else {
            format!(
                "ended without exit code or signal in {}",
                format_elapsed(self.elapsed_ms)
            )
        };
        if self.success {
            return head;
        }
        match self.output_tail.lines().rev().map(str::trim).find(|l| !l.is_empty()) {
            Some(line) => format!("{head}: {}", shorten(line, SUMMARY_LINE_CHARS)),
            None => head,
        }
    }
}

fn format_elapsed(ms: u64) -> String {
    if ms < 100 {
        format!("{ms} ms")
    } else if ms < 10_000 {
        format!("{:.1} s", ms as f64 / 1000.0)
    } else {
        format!("{} s", (ms + 500) / 1000)
    }
}

fn shorten(line: &str, max_chars: usize) -> String {
    match line.char_indices().nth(max_chars) {
        Some((cut, _)) => format!("{}…", &line[..cut]),
        None => line.to_owned(),
    }
}

/// Why a command could not be run at all. Each message names the program and the working directory and says
/// what to check.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The spec failed [`CommandSpec::validate`].
    #[error("{0}")]
    InvalidSpec(String),
    /// The program does not exist (or, for a script, its `#!` interpreter does not).
    #[error(
        "cannot run `{program}` (cwd: {cwd}): program not found; check that it is installed and on the daemon's \
         PATH (or give an absolute path), and for a script that its #! interpreter exists"
    )]
    ProgramNotFound {
        /// `argv[0]`.
        program: String,
        /// The working directory used for the attempt.
        cwd: String,
    },
    /// The program exists but cannot be executed.
    #[error(
        "cannot run `{program}` (cwd: {cwd}): not executable; check its execute permission (chmod +x) and, for a \
         script, its #! line"
    )]
    NotExecutable {
        /// `argv[0]`.
        program: String,
        /// The working directory used for the attempt.
        cwd: String,
    },
    /// The configured working directory is missing or not a directory.
    #[error(
        "cannot run `{program}`: working directory {cwd} does not exist or is not a directory; check the \
         action's cwd setting"
    )]
    CwdMissing {
        /// `argv[0]`.
        program: String,
        /// The configured working directory.
        cwd: String,
    },
    /// Any other failure to start the process.
    #[error("cannot run `{program}` (cwd: {cwd}): {source}")]
    Spawn {
        /// `argv[0]`.
        program: String,
        /// The working directory used for the attempt.
        cwd: String,
        /// The underlying error.
        source: io::Error,
    },
    /// Waiting for the started process failed (its process group was killed).
    #[error("lost track of `{program}` (cwd: {cwd}) while waiting for it: {source}")]
    Wait {
        /// `argv[0]`.
        program: String,
        /// The working directory used.
        cwd: String,
        /// The underlying error.
        source: io::Error,
    },
}

fn spawn_error(spec: &CommandSpec, err: io::Error) -> RunError {
    let program = spec.program().to_owned();
    let cwd = spec.cwd_display();
    if let Some(dir) = &spec.cwd {
        if !dir.is_dir() {
            return RunError::CwdMissing { program, cwd };
        }
    }
    if err.kind() == io::ErrorKind::NotFound {
        RunError::ProgramNotFound { program, cwd }
    } else if err.kind() == io::ErrorKind::PermissionDenied || err.raw_os_error() == Some(Errno::ENOEXEC as i32) {
        RunError::NotExecutable { program, cwd }
    } else {
        RunError::Spawn {
            program,
            cwd,
            source: err,
        }
    }
}

/// Runs `spec` with `extra_env` added (after `spec.env`, so `STAGECOACH_*` values set by the daemon win).
///
/// See the [module documentation](crate) for how output, timeouts and process groups are handled. Returns an
/// [`Outcome`] whenever the process could be started (a non-zero exit or a timeout is an `Outcome`, not an
/// error), and a [`RunError`] when it could not.
///
/// Cancel-safe in the sense that dropping the returned future kills the command's whole process group.
pub async fn run(spec: &CommandSpec, extra_env: &[(String, String)]) -> Result<Outcome, RunError> {
    spec.validate("command spec").map_err(RunError::InvalidSpec)?;
    let program = spec.program();
    if let Some(dir) = &spec.cwd {
        if !dir.is_dir() {
            return Err(RunError::CwdMissing {
                program: program.to_owned(),
                cwd: spec.cwd_display(),
            });
        }
    }

    let mut cmd = Command::new(program);
    cmd.args(&spec.argv[1..])
        .env_clear()
        .envs(inherited_env(&spec.env_passthrough))
        .envs(&spec.env)
        .envs(extra_env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    if let Some(dir) = &spec.cwd {
        cmd.current_dir(dir);
    }

    let timeout = spec.timeout();
    tracing::debug!(program, cwd = ?spec.cwd, timeout_seconds = spec.timeout_seconds, "running command");
    let started = Instant::now();
    let mut child = cmd.spawn().map_err(|e| spawn_error(spec, e))?;
    // The child is the leader of its own group, so the group id is its pid.
    let pgid = child.id().and_then(|id| i32::try_from(id).ok()).map(Pid::from_raw);
    let mut guard = GroupGuard { pgid };
    let mut capture = Capture {
        stdout: child.stdout.take(),
        stderr: child.stderr.take(),
        tail: Tail::default(),
        stdout_tail: Tail::default(),
    };
    let wait_error = |source| RunError::Wait {
        program: program.to_owned(),
        cwd: spec.cwd_display(),
        source,
    };

    let deadline = started.checked_add(timeout);
    let first = tokio::select! {
        status = child.wait() => Some(status),
        never = capture.pump() => match never {},
        () = sleep_until_opt(deadline) => None,
    };

    let (status, timed_out) = match first {
        Some(status) => {
            // Reaped: the pid (= group id) may be reused from now on, so never signal the group again.
            guard.disarm();
            (status.map_err(wait_error)?, false)
        }
        None => {
            tracing::warn!(
                program,
                timeout_seconds = spec.timeout_seconds,
                "command timed out; terminating its process group"
            );
            let status = terminate_group(&mut child, &mut capture, pgid).await;
            guard.disarm();
            (status.map_err(wait_error)?, true)
        }
    };

    // Processes that inherited stdout/stderr may keep the pipes open; do not wait for them for long.
    let _ = tokio::time::timeout(DRAIN_GRACE, capture.read_until_closed()).await;

    let elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    let exit_code = if timed_out { None } else { status.code() };
    let outcome = Outcome {
        exit_code,
        signal: status.signal(),
        success: exit_code == Some(0),
        timed_out,
        elapsed_ms,
        output_tail: capture.tail.finish(),
        stdout_tail: capture.stdout_tail.finish(),
    };
    tracing::debug!(program, summary = %outcome.summary(), "command finished");
    Ok(outcome)
}

/// `SIGTERM` to the group; wait (still reading output) until the direct child has exited and the group is
/// empty, for at most [`KILL_GRACE`]; then `SIGKILL` to the group if anything may be left; finally reap the
/// child.
async fn terminate_group(
    child: &mut tokio::process::Child,
    capture: &mut Capture,
    pgid: Option<Pid>,
) -> io::Result<ExitStatus> {
    signal_group(pgid, Signal::SIGTERM);
    let kill_at = Instant::now() + KILL_GRACE;

    let mut status = tokio::select! {
        status = child.wait() => Some(status?),
        never = capture.pump() => match never {},
        () = tokio::time::sleep_until(kill_at) => None,
    };

    let mut group_gone = false;
    if status.is_some() {
        // The direct child is gone; give the rest of the group the remaining grace.
        while Instant::now() < kill_at {
            if !group_alive(pgid) {
                group_gone = true;
                break;
            }
            tokio::select! {
                never = capture.pump() => match never {},
                () = tokio::time::sleep(GROUP_POLL) => {}
            }
        }
    }
    if !group_gone {
        signal_group(pgid, Signal::SIGKILL);
    }
    if status.is_none() {
        status = Some(tokio::select! {
            status = child.wait() => status?,
            never = capture.pump() => match never {},
        });
    }
    Ok(status.unwrap_or_else(|| ExitStatus::from_raw(Signal::SIGKILL as i32)))
}

/// Stops a long-running child started in its own process group (e.g. a service instance) as [`run`] stops
/// a command that timed out: `SIGTERM` to the group, up to `grace` for the child to exit, then `SIGKILL`
/// to the group; reaps the child. For a child whose output is not captured (nothing to keep reading).
pub async fn terminate(child: &mut tokio::process::Child, grace: Duration) -> io::Result<ExitStatus> {
    let pgid = child.id().and_then(|id| i32::try_from(id).ok()).map(Pid::from_raw);
    signal_group(pgid, Signal::SIGTERM);
    if let Ok(status) = tokio::time::timeout(grace, child.wait()).await {
        let status = status?;
        if !group_alive(pgid) {
            return Ok(status);
        }
    }
    signal_group(pgid, Signal::SIGKILL);
    child.wait().await
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

fn signal_group(pgid: Option<Pid>, signal: Signal) {
    let Some(pgid) = pgid else { return };
    match killpg(pgid, signal) {
        Ok(()) | Err(Errno::ESRCH) => {}
        Err(err) => tracing::warn!(pgid = pgid.as_raw(), ?signal, %err, "could not signal process group"),
    }
}

fn group_alive(pgid: Option<Pid>) -> bool {
    match pgid {
        Some(pgid) => killpg(pgid, None) != Err(Errno::ESRCH),
        None => false,
    }
}

/// Kills the command's whole process group if [`run`] is dropped before the direct child was reaped.
struct GroupGuard {
    pgid: Option<Pid>,
}

impl GroupGuard {
    fn disarm(&mut self) {
        self.pgid = None;
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if let Some(pgid) = self.pgid.take() {
            tracing::warn!(
                pgid = pgid.as_raw(),
                "command abandoned while running; killing its process group"
            );
            signal_group(Some(pgid), Signal::SIGKILL);
        }
    }
}

/// The two output pipes and the tails they feed.
struct Capture {
    stdout: Option<ChildStdout>,
    stderr: Option<ChildStderr>,
    tail: Tail,
    stdout_tail: Tail,
}

enum Stream {
    Stdout,
    Stderr,
}

impl Capture {
    /// Reads both pipes until both reach end-of-file (or fail).
    ///
    /// Cancel-safe: every chunk read is appended to the tail before the next await point.
    async fn read_until_closed(&mut self) {
        let mut out_buf = [0u8; 4096];
        let mut err_buf = [0u8; 4096];
        loop {
            if self.stdout.is_none() && self.stderr.is_none() {
                return;
            }
            // `biased`: when both pipes are readable, take stdout first (deterministic, and usually the
            // order in which a script wrote them); exact interleaving across two pipes is not recoverable.
            let (stream, result) = tokio::select! {
                biased;
                r = read_opt(&mut self.stdout, &mut out_buf) => (Stream::Stdout, r),
                r = read_opt(&mut self.stderr, &mut err_buf) => (Stream::Stderr, r),
            };
            let buf: &[u8] = match stream {
                Stream::Stdout => &out_buf,
                Stream::Stderr => &err_buf,
            };
            match result {
                Ok(n) if n > 0 => {
                    self.tail.push(&buf[..n]);
                    if let Stream::Stdout = stream {
                        self.stdout_tail.push(&buf[..n]);
                    }
                }
                _ => match stream {
                    Stream::Stdout => self.stdout = None,
                    Stream::Stderr => self.stderr = None,
                },
            }
        }
    }

    /// Like [`Capture::read_until_closed`], then waits forever; for use as a `select!` branch.
    async fn pump(&mut self) -> Infallible {
        self.read_until_closed().await;
        std::future::pending().await
    }
}

async fn read_opt<R: AsyncRead + Unpin>(reader: &mut Option<R>, buf: &mut [u8]) -> io::Result<usize> {
    match reader {
        Some(reader) => reader.read(buf).await,
        None => std::future::pending().await,
    }
}

/// The trailing bytes of combined output.
#[derive(Default)]
struct Tail {
    buf: Vec<u8>,
}

impl Tail {
    fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
        // Trim in batches so that long outputs cost amortised O(1) per byte.
        if self.buf.len() > 2 * TAIL_BYTES {
            let cut = self.buf.len() - TAIL_BYTES;
            self.buf.drain(..cut);
        }
    }

    fn finish(&self) -> String {
        let start = self.buf.len().saturating_sub(TAIL_BYTES);
        let mut bytes = &self.buf[start..];
        if start > 0 {
            // Do not start in the middle of a UTF-8 sequence (at most 3 continuation bytes).
            let skip = bytes.iter().take(3).take_while(|b| (**b & 0xC0) == 0x80).count();
            bytes = &bytes[skip..];
        }
        let text = String::from_utf8_lossy(bytes);
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(TAIL_LINES)..].join("\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(exit_code: Option<i32>, signal: Option<i32>, timed_out: bool, ms: u64, tail: &str) -> Outcome {
        Outcome {
            exit_code,
            signal,
            success: exit_code == Some(0) && !timed_out,
            timed_out,
            elapsed_ms: ms,
            output_tail: tail.to_owned(),
            stdout_tail: String::new(),
        }
    }

    #[test]
    fn summaries() {
        assert_eq!(
            outcome(Some(0), None, false, 1234, "all good").summary(),
            "exit 0 in 1.2 s"
        );
        assert_eq!(
            outcome(Some(3), None, false, 400, "a\nboom\n\n").summary(),
            "exit 3 in 0.4 s: boom"
        );
        assert_eq!(outcome(Some(1), None, false, 12, "").summary(), "exit 1 in 12 ms");
        assert_eq!(
            outcome(None, Some(15), true, 30_400, "").summary(),
            "timed out after 30 s (process group killed)"
        );
        assert_eq!(outcome(None, Some(9), false, 10, "").summary(), "killed by signal 9");
        let long = "x".repeat(500);
        let s = outcome(Some(2), None, false, 100, &long).summary();
        assert!(s.ends_with('…') && s.chars().count() < 230, "{s}");
    }

    #[test]
    fn tail_keeps_last_lines_and_bytes() {
        let mut tail = Tail::default();
        for i in 1..=1000 {
            tail.push(format!("line {i}\n").as_bytes());
        }
        let expected: Vec<String> = (981..=1000).map(|i| format!("line {i}")).collect();
        assert_eq!(tail.finish(), expected.join("\n"));

        let mut tail = Tail::default();
        tail.push("é".repeat(5000).as_bytes());
        let text = tail.finish();
        assert!(text.len() <= TAIL_BYTES && !text.contains('\u{FFFD}'), "{}", text.len());
    }

    #[test]
    fn validate_reports_path() {
        let mut spec = CommandSpec::new(["true"]);
        assert_eq!(spec.validate("p"), Ok(()));
        spec.env.insert("A=B".into(), "x".into());
        assert!(spec
            .validate("services.web.actions.deploy")
            .unwrap_err()
            .starts_with("services.web.actions.deploy: "));
    }
}
