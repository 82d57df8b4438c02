//! Running one configured command for an action: its `STAGECOACH_*`
//! environment ([`Call`]), what became of it ([`Ran`]), sequences that stop
//! at the first failure ([`Stage`]), HTTP health checks standing in for a
//! `health` command, and commands that leave a report file.

use std::collections::BTreeMap;

use agents::ports::Target;
use hooks::Outcome;
use workflow::strategy::Colour;
use workflow::types::{Strategy, Version};

use super::Context;

/// Where a command acts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Environment {
    Staging,
    Production,
}

impl Environment {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Environment::Staging => "staging",
            Environment::Production => "production",
        }
    }
}

fn colour_name(colour: Colour) -> &'static str {
    match colour {
        Colour::Blue => "blue",
        Colour::Green => "green",
    }
}

/// One command invocation: its action and the `STAGECOACH_*` values that vary from call to call.
#[derive(Debug, Clone)]
pub(super) struct Call {
    pub(super) action: &'static str,
    pub(super) environment: Environment,
    pub(super) version: Option<Version>,
    pub(super) previous: Option<Version>,
    pub(super) strategy: Strategy,
    weight: Option<u8>,
    pub(super) instance: Option<u32>,
    colour: Option<Colour>,
    extra: Vec<(&'static str, String)>,
}

impl Call {
    pub(super) fn new(action: &'static str, environment: Environment, target: &Target) -> Call {
        Call::of(
            action,
            environment,
            target.version.clone(),
            target.previous_version.clone(),
            target.strategy,
        )
    }

    /// A call about `version` (after `previous`) rather than the target's own versions.
    pub(super) fn of(
        action: &'static str,
        environment: Environment,
        version: Option<Version>,
        previous: Option<Version>,
        strategy: Strategy,
    ) -> Call {
        Call {
            action,
            environment,
            version,
            previous,
            strategy,
            weight: None,
            instance: None,
            colour: None,
            extra: vec![],
        }
    }

    pub(super) fn weight(mut self, percent: u8) -> Call {
        self.weight = Some(percent);
        self
    }

    pub(super) fn instance(mut self, number: u32) -> Call {
        self.instance = Some(number);
        self
    }

    pub(super) fn colour(mut self, colour: Colour) -> Call {
        self.colour = Some(colour);
        self
    }

    pub(super) fn with(mut self, name: &'static str, value: impl Into<String>) -> Call {
        self.extra.push((name, value.into()));
        self
    }

    /// The action as named in messages, e.g. `deploy` or `deploy for instance 3`.
    pub(super) fn label(&self) -> String {
        match self.instance {
            Some(n) => format!("{} for instance {n}", self.action),
            None => self.action.to_string(),
        }
    }

    pub(super) fn env(&self, target: &Target) -> Vec<(String, String)> {
        let text = |v: &Option<Version>| v.as_ref().map(|v| v.to_string()).unwrap_or_default();
        let mut env = vec![
            ("STAGECOACH_SERVICE", target.service.to_string()),
            ("STAGECOACH_VERSION", text(&self.version)),
            ("STAGECOACH_PREVIOUS_VERSION", text(&self.previous)),
            ("STAGECOACH_ENVIRONMENT", self.environment.as_str().to_string()),
            ("STAGECOACH_STRATEGY", self.strategy.as_str().to_string()),
            (
                "STAGECOACH_WEIGHT",
                self.weight.map(|w| w.to_string()).unwrap_or_default(),
            ),
            (
                "STAGECOACH_INSTANCE",
                self.instance.map(|i| i.to_string()).unwrap_or_default(),
            ),
            (
                "STAGECOACH_COLOUR",
                self.colour.map(colour_name).unwrap_or_default().to_string(),
            ),
            ("STAGECOACH_ATTEMPT", target.attempt.to_string()),
            ("STAGECOACH_DEPLOYMENT_ID", target.id.to_string()),
            ("STAGECOACH_ACTION", self.action.to_string()),
        ];
        env.extend(self.extra.iter().cloned());
        env.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
    }
}

/// What became of one configured command.
#[derive(Debug)]
pub(super) enum Ran {
    /// Exit code 0 within its timeout.
    Succeeded(Outcome),
    /// Started, but exited non-zero, was killed or timed out; the message
    /// names the action and quotes the output.
    Failed(Outcome, String),
    /// Could not be started; the message names the action and why.
    Error(String),
}

impl Ran {
    /// `Ok` when the command succeeded; otherwise the message of its failure.
    pub(super) fn result(self) -> Result<Outcome, String> {
        match self {
            Ran::Succeeded(outcome) => Ok(outcome),
            Ran::Failed(_, message) | Ran::Error(message) => Err(message),
        }
    }

    /// Success and a one-line detail (empty on success) for a rollback step.
    pub(super) fn step(self, call: &Call) -> (bool, String) {
        match self {
            Ran::Succeeded(_) => (true, String::new()),
            Ran::Failed(outcome, _) => (false, failure_line(call, &outcome)),
            Ran::Error(message) => (false, message),
        }
    }
}

/// `deploy failed: exit 3 in 0.1 s: <last line>`.
pub(super) fn failure_line(call: &Call, outcome: &Outcome) -> String {
    format!("{} failed: {}", call.label(), outcome.summary())
}

/// The failure line, followed by the output tail unless the summary already quotes all of it.
fn failure(call: &Call, outcome: &Outcome) -> String {
    let line = failure_line(call, outcome);
    let tail = outcome.output_tail.trim();
    if tail.is_empty() || line.ends_with(tail) {
        line
    } else {
        format!("{line}\n{tail}")
    }
}

/// The last non-blank line of a command's output.
pub(super) fn last_line(output: &str) -> Option<String> {
    output
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .map(str::to_string)
}

/// One command of a sequence that stops at the first failure.
#[derive(Debug)]
pub(super) enum Stage {
    /// No command is configured: the simulated world's value stands.
    Simulated,
    /// An earlier command of the sequence failed; this one did not run.
    Skipped,
    Passed(Outcome),
    Failed(Outcome),
}

impl Stage {
    /// Whether the stage's checks hold, given the simulated world's value.
    pub(super) fn ok(&self, simulated: bool) -> bool {
        match self {
            Stage::Simulated => simulated,
            Stage::Passed(_) => true,
            Stage::Skipped | Stage::Failed(_) => false,
        }
    }
}

impl Context {
    /// The values a probe's placeholders take for a call about `version`.
    pub(super) fn probe_vars(
        target: &Target,
        environment: Environment,
        version: Option<&Version>,
        instance: Option<u32>,
    ) -> BTreeMap<String, String> {
        let mut vars = BTreeMap::from([
            ("service".to_string(), target.service.to_string()),
            ("environment".to_string(), environment.as_str().to_string()),
            (
                "version".to_string(),
                version.map(|v| v.to_string()).unwrap_or_default(),
            ),
        ]);
        if let Some(n) = instance {
            vars.insert("instance".into(), n.to_string());
        }
        vars
    }

    /// The HTTP health check configured for the call's environment, run;
    /// `None` when there is none.
    async fn http_health(&self, target: &Target, call: &Call) -> Option<Ran> {
        let hc = self.service(&target.service)?.health.get(call.environment.as_str())?;
        let vars = Self::probe_vars(target, call.environment, call.version.as_ref(), call.instance);
        let started = std::time::Instant::now();
        let checked = probes::check(&self.http, hc, &vars).await;
        tracing::info!(
            deployment = %target.id,
            service = %target.service,
            environment = call.environment.as_str(),
            ok = checked.ok,
            detail = %checked.detail,
            "health check"
        );
        let outcome = Outcome {
            exit_code: Some(if checked.ok { 0 } else { 1 }),
            signal: None,
            success: checked.ok,
            timed_out: false,
            elapsed_ms: started.elapsed().as_millis() as u64,
            output_tail: checked.detail.clone(),
            stdout_tail: String::new(),
        };
        Some(if checked.ok {
            Ran::Succeeded(outcome)
        } else {
            Ran::Failed(outcome, format!("{} failed: {}", call.label(), checked.detail))
        })
    }

    /// Runs the command configured for `call.action`; `None` when there is none.
    pub(super) async fn invoke(&self, target: &Target, call: &Call) -> Option<Ran> {
        let Some(spec) = self.command(&target.service, call.action) else {
            // Without a health command, an HTTP health check may answer.
            if call.action == "health" {
                return self.http_health(target, call).await;
            }
            return None;
        };
        tracing::debug!(
            deployment = %target.id,
            service = %target.service,
            action = call.action,
            attempt = target.attempt,
            argv = ?spec.argv,
            "running action command"
        );
        let ran = match hooks::run(spec, &call.env(target)).await {
            Ok(outcome) if outcome.success => {
                tracing::info!(
                    deployment = %target.id,
                    service = %target.service,
                    action = call.action,
                    attempt = target.attempt,
                    outcome = %outcome.summary(),
                    "action command succeeded"
                );
                Ran::Succeeded(outcome)
            }
            Ok(outcome) => {
                tracing::warn!(
                    deployment = %target.id,
                    service = %target.service,
                    action = call.action,
                    attempt = target.attempt,
                    outcome = %outcome.summary(),
                    output = %outcome.output_tail,
                    "action command failed"
                );
                let message = failure(call, &outcome);
                Ran::Failed(outcome, message)
            }
            Err(e) => {
                tracing::error!(
                    deployment = %target.id,
                    service = %target.service,
                    action = call.action,
                    attempt = target.attempt,
                    error = %e,
                    "action command could not be run"
                );
                Ran::Error(format!("{} could not be run: {e}", call.label()))
            }
        };
        Some(ran)
    }

    /// Runs `call` as part of a sequence: not at all once `stopped` (an
    /// earlier command failed), and sets `stopped` when it fails. `Err` when
    /// the command could not be started.
    pub(super) async fn stage(&self, target: &Target, call: Call, stopped: &mut bool) -> Result<Stage, String> {
        if *stopped {
            return Ok(Stage::Skipped);
        }
        match self.invoke(target, &call).await {
            None => Ok(Stage::Simulated),
            Some(Ran::Succeeded(outcome)) => Ok(Stage::Passed(outcome)),
            Some(Ran::Failed(outcome, _)) => {
                *stopped = true;
                Ok(Stage::Failed(outcome))
            }
            Some(Ran::Error(message)) => Err(message),
        }
    }

    /// Runs a command that writes a report file; returns the report's text
    /// (a stale report is removed first, so an old one is never read) and
    /// the command's outcome.
    pub(super) async fn run_for_report(
        &self,
        target: &Target,
        what: &str,
        spec: &hooks::CommandSpec,
        report: &std::path::Path,
        env: Vec<(String, String)>,
    ) -> Result<(Option<String>, Outcome), String> {
        if let Err(e) = std::fs::remove_file(report) {
            if e.kind() != std::io::ErrorKind::NotFound {
                return Err(format!(
                    "{what}: cannot remove the old report {}: {e}",
                    report.display()
                ));
            }
        }
        let outcome = hooks::run(spec, &env)
            .await
            .map_err(|e| format!("{what} could not be run: {e}"))?;
        tracing::info!(
            deployment = %target.id,
            service = %target.service,
            what,
            attempt = target.attempt,
            outcome = %outcome.summary(),
            "report command finished"
        );
        let text = match std::fs::read_to_string(report) {
            Ok(t) => Some(t),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(format!("{what}: cannot read {}: {e}", report.display())),
        };
        Ok((text, outcome))
    }
}
