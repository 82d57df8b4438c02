//! The daemon's world: every agent port, carried out by the commands
//! configured per service (`[services.NAME.actions.ACTION]` in
//! `agents.toml`), and by the simulated world (`sim::world::World`, with
//! zero durations) for every action that has no command. Whatever the
//! simulated world answers is marked simulated (the report's `simulated`
//! flag or list, [`ports::Reported::simulated`]), so the record labels it;
//! [`HookWorld::simulated_actions`] lists, per service, the actions that
//! have no command, for the daemon's start-up log.
//!
//! Every command gets the deployment in its environment (added after the
//! inherited environment and the command's own `env`, so these values win):
//!
//! | variable | value |
//! |---|---|
//! | `STAGECOACH_SERVICE` | the service |
//! | `STAGECOACH_VERSION` | the version being deployed; for `rollback` (and the `clear_cache`/`health` that follow it): the version restored |
//! | `STAGECOACH_PREVIOUS_VERSION` | what production ran before (for `rollback`: the version rolled back from); empty when none |
//! | `STAGECOACH_ENVIRONMENT` | `production` for `backup` and every production step, health check and rollback; `staging` for everything else (`tests`, `build`, `scan`, `validate` and the staging deployment) |
//! | `STAGECOACH_STRATEGY` | `blue-green`, `canary` or `rolling` |
//! | `STAGECOACH_WEIGHT` | percent of traffic for the step (canary steps, `set_traffic` = 100, `rollback` = traffic on the new version); empty when n/a |
//! | `STAGECOACH_INSTANCE` | 1-based instance number of a rolling update; empty when n/a |
//! | `STAGECOACH_COLOUR` | `blue` or `green` for blue-green steps; empty when n/a |
//! | `STAGECOACH_ATTEMPT` | 1 for the first try of an action, more when the daemon re-runs it after a crash |
//! | `STAGECOACH_DEPLOYMENT_ID` | e.g. `d-000001` |
//! | `STAGECOACH_ACTION` | the action name |
//! | `STAGECOACH_REVERT_MIGRATIONS` | `rollback` only: `true` when the rollback must revert the release's (reversible) migrations |
//! | `STAGECOACH_SUITES` | `validate` only: `all` or `critical` |
//!
//! A sequence of commands (prepare: `tests`, `build`, `backup`; staging:
//! `deploy`, `migrate`, `health`, `smoke`; a production step) stops at the
//! first command that fails.

use std::collections::BTreeMap;
use std::sync::Arc;

use agents::ports::{self, DecisionSink, Reported, SystemClock, Target};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use hooks::Outcome;
use sim::scenario::{Durations, Scenario, World as WorldSpec};
use sim::world::World;
use workflow::checklist::{PrepareReport, ScanReport};
use workflow::machine::{Incident, Production, RollbackOutcome, RollbackPlan};
use workflow::record::{NotificationEntry, StagingReport, SuiteResult};
use workflow::settings::SuiteSelection;
use workflow::strategy::{Colour, DeployStep};
use workflow::thresholds::MetricSample;
use workflow::types::{Role, ServiceName, Strategy, Version};

use crate::config::ServiceConfig;

/// Detail of a rollback step that was not tried because the restore failed.
const NOT_RESTORED: &str = "not attempted: the previous version was not restored";

/// Every port of the daemon: configured commands first, the simulated world otherwise.
pub struct HookWorld {
    services: BTreeMap<String, ServiceConfig>,
    sim: Arc<World>,
    notifier: notify::Notifier,
    http: reqwest::Client,
    metrics: probes::MetricsReader,
    /// Services run by the local process target.
    processes: BTreeMap<String, crate::process::ProcessTarget>,
}

/// Where a command acts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Environment {
    Staging,
    Production,
}

impl Environment {
    fn as_str(self) -> &'static str {
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
struct Call {
    action: &'static str,
    environment: Environment,
    version: Option<Version>,
    previous: Option<Version>,
    strategy: Strategy,
    weight: Option<u8>,
    instance: Option<u32>,
    colour: Option<Colour>,
    extra: Vec<(&'static str, String)>,
}

impl Call {
    fn new(action: &'static str, environment: Environment, target: &Target) -> Call {
        Call {
            action,
            environment,
            version: target.version.clone(),
            previous: target.previous_version.clone(),
            strategy: target.strategy,
            weight: None,
            instance: None,
            colour: None,
            extra: vec![],
        }
    }

    fn weight(mut self, percent: u8) -> Call {
        self.weight = Some(percent);
        self
    }

    fn instance(mut self, number: u32) -> Call {
        self.instance = Some(number);
        self
    }

    fn colour(mut self, colour: Colour) -> Call {
        self.colour = Some(colour);
        self
    }

    fn with(mut self, name: &'static str, value: impl Into<String>) -> Call {
        self.extra.push((name, value.into()));
        self
    }

    /// The action as named in messages, e.g. `deploy` or `deploy for instance 3`.
    fn label(&self) -> String {
        match self.instance {
            Some(n) => format!("{} for instance {n}", self.action),
            None => self.action.to_string(),
        }
    }

    fn env(&self, target: &Target) -> Vec<(String, String)> {
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
enum Ran {
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
    fn result(self) -> Result<Outcome, String> {
        match self {
            Ran::Succeeded(outcome) => Ok(outcome),
            Ran::Failed(_, message) | Ran::Error(message) => Err(message),
        }
    }

    /// Success and a one-line detail (empty on success) for a rollback step.
    fn step(self, call: &Call) -> (bool, String) {
        match self {
            Ran::Succeeded(_) => (true, String::new()),
            Ran::Failed(outcome, _) => (false, failure_line(call, &outcome)),
            Ran::Error(message) => (false, message),
        }
    }
}

/// `deploy failed: exit 3 in 0.1 s: <last line>`.
fn failure_line(call: &Call, outcome: &Outcome) -> String {
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
fn last_line(output: &str) -> Option<String> {
    output
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .map(str::to_string)
}

/// One command of a sequence that stops at the first failure.
#[derive(Debug)]
enum Stage {
    /// No command is configured: the simulated world's value stands.
    Simulated,
    /// An earlier command of the sequence failed; this one did not run.
    Skipped,
    Passed(Outcome),
    Failed(Outcome),
}

impl Stage {
    /// Whether the stage's checks hold, given the simulated world's value.
    fn ok(&self, simulated: bool) -> bool {
        match self {
            Stage::Simulated => simulated,
            Stage::Passed(_) => true,
            Stage::Skipped | Stage::Failed(_) => false,
        }
    }
}

/// The simulated world behind every action without a command: default
/// scripted values (everything succeeds) and no simulated time.
fn simulated_world() -> Arc<World> {
    let world = WorldSpec {
        durations: Durations {
            prepare: 0,
            scan: 0,
            staging: 0,
            validate: 0,
            deploy_step: 0,
            rollback: 0,
        },
        ..WorldSpec::default()
    };
    let scenario = Scenario {
        start: "2026-01-01T00:00:00Z".parse().unwrap_or_default(),
        description: Some("built-in daemon world".into()),
        requests: vec![],
        world,
        decisions: vec![],
        config: None,
    };
    World::new(&scenario)
}

impl HookWorld {
    /// A world running the commands of `services` (keyed by service name).
    /// A world whose notifications go to the log only.
    pub fn new(services: BTreeMap<String, ServiceConfig>) -> Arc<HookWorld> {
        HookWorld::with_notifications(services, notify::NotifyConfig::default())
    }

    /// A world whose notifications go to the channels of `[notify]`.
    pub fn with_notifications(
        services: BTreeMap<String, ServiceConfig>,
        notify: notify::NotifyConfig,
    ) -> Arc<HookWorld> {
        let mut services = services;
        let mut processes = BTreeMap::new();
        for (name, service) in services.iter_mut() {
            if let Some(p) = &service.process {
                // Without a metrics source of its own, a local service is measured at its proxy.
                if service.metrics.is_none() {
                    service.metrics = Some(crate::process::proxy_metrics(&p.listen));
                }
                processes.insert(name.clone(), crate::process::ProcessTarget::new(name, p.clone()));
            }
        }
        Arc::new(HookWorld {
            processes,
            services,
            sim: simulated_world(),
            notifier: notify::Notifier::new(notify),
            // Probes talk to the services directly, never through a proxy, on a fresh connection each time.
            http: probes::probe_client(None),
            metrics: probes::MetricsReader::new(),
        })
    }

    /// Stops what the local process target started: every instance and proxy.
    pub async fn shutdown(&self) {
        for p in self.processes.values() {
            p.shutdown().await;
        }
    }

    /// Seeds what production runs (the daemon derives it from the journal at start-up).
    pub fn set_production(&self, service: &ServiceName, current: Option<Version>, previous: Option<Version>) {
        self.sim.set_production(service, current, previous);
    }

    /// All ports, with `clock` = [`SystemClock`].
    pub fn ports(self: &Arc<Self>) -> agents::Ports {
        agents::Ports {
            clock: Arc::new(SystemClock),
            build: self.clone(),
            environments: self.clone(),
            metrics: self.clone(),
            suites: self.clone(),
            security: self.clone(),
            notifier: self.clone(),
            people: self.clone(),
        }
    }

    /// The values a probe's placeholders take for `call`.
    fn probe_vars(
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
        let hc = self
            .services
            .get(target.service.as_str())?
            .health
            .get(call.environment.as_str())?;
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

    /// Runs a command that writes a report file; returns the report's text
    /// (a stale report is removed first, so an old one is never read) and
    /// the command's outcome.
    async fn run_for_report(
        &self,
        target: &Target,
        what: &str,
        spec: &hooks::CommandSpec,
        report: &std::path::Path,
        env: Vec<(String, String)>,
    ) -> Result<(Option<String>, hooks::Outcome), String> {
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

    /// One QA suite: its command, then its JUnit report.
    async fn run_suite(
        &self,
        target: &Target,
        name: &str,
        suite: &crate::config::SuiteCommand,
    ) -> Result<SuiteResult, String> {
        use crate::config::ReportCommand;
        let call = Call::new("validate", Environment::Staging, target).with("STAGECOACH_SUITE", name);
        let path = suite.report_path();
        let what = format!("suite {name}");
        let (text, outcome) = self
            .run_for_report(target, &what, &suite.spec(), &path, call.env(target))
            .await?;
        let Some(text) = text else {
            // No report: the suite did not run to the end.
            return Ok(SuiteResult {
                failing_tests: vec![format!("no JUnit report at {} ({})", path.display(), outcome.summary())],
                name: name.to_string(),
                passed: 0,
                failed: 1,
                skipped: 0,
                simulated: false,
            });
        };
        let reports = reports::parse_junit(&path.display().to_string(), &text).map_err(|e| e.to_string())?;
        let mut result = SuiteResult {
            failing_tests: vec![],
            name: name.to_string(),
            passed: 0,
            failed: 0,
            skipped: 0,
            simulated: false,
        };
        for r in reports {
            result.passed += r.passed();
            result.failed += r.failures + r.errors;
            result.skipped += r.skipped;
            result.failing_tests.extend(r.failed_tests);
        }
        if result.failed == 0 && !outcome.success {
            // The runner failed although its report shows no failure.
            result.failed = 1;
            result
                .failing_tests
                .push(format!("the suite command failed: {}", outcome.summary()));
        }
        Ok(result)
    }

    /// Security's scanner: its command, then its SARIF or cargo-audit report.
    async fn run_scanner(
        &self,
        target: &Target,
        scanner: &crate::config::ScannerCommand,
    ) -> Result<ScanReport, String> {
        use crate::config::ReportCommand;
        let call = Call::new("scan", Environment::Staging, target);
        let path = scanner.report_path();
        // Scanners exit non-zero when they find something; the report decides.
        let (text, outcome) = self
            .run_for_report(target, "scanner", &scanner.spec(), &path, call.env(target))
            .await?;
        let text = text.ok_or_else(|| {
            format!(
                "the scanner wrote no report at {} ({})",
                path.display(),
                outcome.summary()
            )
        })?;
        let scan = reports::parse_scan(&path.display().to_string(), &text).map_err(|e| e.to_string())?;
        let findings = scan
            .findings
            .iter()
            .filter(|f| f.critical)
            .map(|f| {
                let at = f.location.as_deref().map(|l| format!(" ({l})")).unwrap_or_default();
                format!("{}: {}{at} [{}]", f.rule_id, f.message, scan.tool)
            })
            .collect();
        Ok(ScanReport {
            critical_vulnerabilities: scan.critical() as u32,
            findings,
            simulated: false,
        })
    }

    fn metrics_config(&self, target: &Target) -> Option<&probes::MetricsConfig> {
        self.services.get(target.service.as_str())?.metrics.as_ref()
    }

    fn command(&self, service: &ServiceName, action: &str) -> Option<&hooks::CommandSpec> {
        self.services.get(service.as_str())?.actions.get(action)
    }

    /// Runs the command configured for `call.action`; `None` when there is none.
    async fn invoke(&self, target: &Target, call: &Call) -> Option<Ran> {
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
    async fn stage(&self, target: &Target, call: Call, stopped: &mut bool) -> Result<Stage, String> {
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
}

/// The commands of one production step, in order.
fn step_calls(target: &Target, step: &DeployStep) -> Vec<Call> {
    let production = |action| Call::new(action, Environment::Production, target);
    match step {
        DeployStep::Backup => vec![production("backup")],
        DeployStep::RunMigrations { .. } => vec![production("migrate")],
        DeployStep::DeployInactive { colour } => vec![production("deploy").colour(*colour)],
        DeployStep::HealthCheckColour { colour } => vec![production("health").colour(*colour)],
        DeployStep::SwitchTraffic { colour } => vec![production("set_traffic").weight(100).colour(*colour)],
        DeployStep::Decommission { colour } => vec![production("decommission").colour(*colour)],
        DeployStep::CanaryWeight { percent } => vec![
            production("deploy").weight(*percent),
            production("health").weight(*percent),
        ],
        DeployStep::UpdateInstances { first, count, .. } => (*first..first.saturating_add(*count))
            .flat_map(|i| {
                [
                    production("deploy").instance(i + 1),
                    production("health").instance(i + 1),
                ]
            })
            .collect(),
    }
}

#[async_trait]
impl ports::Build for HookWorld {
    async fn prepare(&self, target: &Target) -> Result<PrepareReport, String> {
        let sim = self.sim.prepare(target).await?;
        let mut stopped = false;
        let tests = self
            .stage(target, Call::new("tests", Environment::Staging, target), &mut stopped)
            .await?;
        let build = self
            .stage(target, Call::new("build", Environment::Staging, target), &mut stopped)
            .await?;
        let backup = self
            .stage(
                target,
                Call::new("backup", Environment::Production, target),
                &mut stopped,
            )
            .await?;
        let artifact = match &build {
            Stage::Simulated => sim.artifact.clone(),
            Stage::Passed(outcome) => last_line(&outcome.output_tail).unwrap_or_else(|| {
                let program = self
                    .command(&target.service, "build")
                    .and_then(|spec| spec.argv.first())
                    .map(String::as_str)
                    .unwrap_or("the build command");
                format!("built by {program}")
            }),
            Stage::Failed(outcome) => format!("none (build failed: {})", outcome.summary()),
            Stage::Skipped => "none (not built: the tests failed)".into(),
        };
        // What a command answered is observed; the rest stays simulated.
        let mut simulated = sim.simulated.clone();
        for (field, stage) in [
            ("tests_passed", &tests),
            ("build_succeeded", &build),
            ("backup_verified", &backup),
        ] {
            if !matches!(stage, Stage::Simulated) {
                simulated.retain(|f| f != field);
            }
        }
        Ok(PrepareReport {
            tests_passed: tests.ok(sim.tests_passed),
            build_succeeded: build.ok(sim.build_succeeded),
            artifact,
            backup_verified: backup.ok(sim.backup_verified),
            simulated,
            ..sim
        })
    }
}

#[async_trait]
impl ports::Environments for HookWorld {
    async fn production(&self, service: &ServiceName) -> Result<Production, String> {
        self.sim.production(service).await
    }

    async fn deploy_staging(&self, target: &Target) -> Result<StagingReport, String> {
        if let (Some(p), Some(v)) = (self.processes.get(target.service.as_str()), target.version.as_ref()) {
            let ok = match p.staging(v).await {
                Ok(()) => true,
                Err(e) => {
                    tracing::warn!(deployment = %target.id, error = %e, "staging instance failed");
                    false
                }
            };
            return Ok(StagingReport {
                deployed: ok,
                application_started: ok,
                health_endpoints: ok,
                migrations_complete: ok,
                external_services: ok,
                smoke_tests: ok,
                simulated: vec![],
            });
        }
        let sim = self.sim.deploy_staging(target).await?;
        let staging = |action| Call::new(action, Environment::Staging, target);
        let mut stopped = false;
        let deploy = self.stage(target, staging("deploy"), &mut stopped).await?;
        let migrate = self.stage(target, staging("migrate"), &mut stopped).await?;
        let health = self.stage(target, staging("health"), &mut stopped).await?;
        let smoke = self.stage(target, staging("smoke"), &mut stopped).await?;
        // What a command answered is observed; the rest stays simulated.
        let mut simulated = sim.simulated.clone();
        for (field, stage) in [
            ("deployed", &deploy),
            ("application_started", &deploy),
            ("migrations_complete", &migrate),
            ("health_endpoints", &health),
            ("external_services", &health),
            ("smoke_tests", &smoke),
        ] {
            let still_simulated = match field {
                // No command checks external services: only a skipped health check decides them.
                "external_services" => !matches!(stage, Stage::Skipped),
                _ => matches!(stage, Stage::Simulated),
            };
            if !still_simulated {
                simulated.retain(|f| f != field);
            }
        }
        Ok(StagingReport {
            deployed: deploy.ok(sim.deployed),
            application_started: deploy.ok(sim.application_started),
            migrations_complete: migrate.ok(sim.migrations_complete),
            health_endpoints: health.ok(sim.health_endpoints),
            external_services: sim.external_services && !matches!(health, Stage::Skipped),
            smoke_tests: smoke.ok(sim.smoke_tests),
            simulated,
        })
    }

    async fn step(&self, target: &Target, step: &DeployStep) -> Reported<Result<(), String>> {
        // The local process target neither backs up nor migrates: those steps
        // run their commands, or the simulated world answers them.
        let process_step = !matches!(step, DeployStep::Backup | DeployStep::RunMigrations { .. });
        if let (Some(p), Some(v), true) = (
            self.processes.get(target.service.as_str()),
            target.version.as_ref(),
            process_step,
        ) {
            if let Err(e) = p.step(v, target.previous_version.as_ref(), step).await {
                tracing::warn!(deployment = %target.id, error = %e, "production step failed");
                return Reported::observed(Err(e));
            }
            // The simulated world keeps track of what production runs.
            let _ = self.sim.step(target, step).await;
            return Reported::observed(Ok(()));
        }
        let mut configured = false;
        for call in step_calls(target, step) {
            if let Some(ran) = self.invoke(target, &call).await {
                configured = true;
                if let Err(e) = ran.result() {
                    return Reported::observed(Err(e));
                }
            }
        }
        // The simulated world tracks what production runs (promotion, active colour).
        let simulated = self.sim.step(target, step).await;
        if configured {
            Reported::observed(Ok(()))
        } else {
            simulated
        }
    }

    async fn health(&self, target: &Target, minute: u32) -> Reported<Result<bool, String>> {
        if let (Some(p), Some(v)) = (self.processes.get(target.service.as_str()), target.version.as_ref()) {
            return Reported::observed(Ok(match p.health(v).await {
                Ok(()) => true,
                Err(e) => {
                    tracing::warn!(deployment = %target.id, error = %e, "health check failed");
                    false
                }
            }));
        }
        match self
            .invoke(target, &Call::new("health", Environment::Production, target))
            .await
        {
            None => self.sim.health(target, minute).await,
            Some(Ran::Succeeded(_)) => Reported::observed(Ok(true)),
            Some(Ran::Failed(..)) => Reported::observed(Ok(false)),
            Some(Ran::Error(message)) => Reported::observed(Err(message)),
        }
    }

    async fn rollback(&self, target: &Target, plan: &RollbackPlan) -> RollbackOutcome {
        if let Some(p) = self.processes.get(target.service.as_str()) {
            let shown = plan
                .restore_version
                .as_ref()
                .map(|v| format!("v{v}"))
                .unwrap_or_else(|| "nothing".into());
            let result = p
                .rollback(plan.restore_version.as_ref(), plan.from_version.as_ref())
                .await;
            let ok = result.is_ok();
            if ok {
                // Keep the simulated record of production in step.
                let _ = self.sim.rollback(target, plan).await;
            }
            let detail = result.err().unwrap_or_default();
            return RollbackOutcome {
                steps: vec![
                    (
                        format!("Initiate rollback to previous version ({shown}): all traffic sent back"),
                        ok,
                        detail,
                    ),
                    (
                        "Revert database migrations: not needed or not safe, skipped".into(),
                        true,
                        String::new(),
                    ),
                    ("Verify rollback successful".into(), ok, String::new()),
                ],
                simulated_steps: vec![],
                restored: ok,
                migrations_reverted: false,
                caches_cleared: false,
                verified: ok,
            };
        }
        let call = |action| Call {
            action,
            environment: Environment::Production,
            version: plan.restore_version.clone(),
            previous: plan.from_version.clone(),
            strategy: plan.strategy,
            weight: None,
            instance: None,
            colour: None,
            extra: vec![],
        };
        let rollback = call("rollback")
            .weight(plan.traffic_percent)
            .with("STAGECOACH_REVERT_MIGRATIONS", plan.revert_migrations.to_string());
        let Some(ran) = self.invoke(target, &rollback).await else {
            return self.sim.rollback(target, plan).await;
        };
        let shown = plan
            .restore_version
            .as_ref()
            .map(|v| format!("v{v}"))
            .unwrap_or_else(|| "no previous version (new version removed)".into());
        let (restored, detail) = ran.step(&rollback);
        let mut steps = vec![(
            format!("Initiate rollback to previous version ({shown})"),
            restored,
            detail,
        )];
        // Per step: answered by the simulated world (no command configured).
        let mut simulated_steps = vec![false];
        if restored {
            // The simulated world tracks what production runs; its own rollback always succeeds.
            self.sim.rollback(target, plan).await;
        }
        if plan.revert_migrations {
            let detail = if restored {
                "by the rollback command".into()
            } else {
                NOT_RESTORED.into()
            };
            steps.push(("Revert database migrations".into(), restored, detail));
        } else {
            steps.push((
                "Revert database migrations: not needed or not safe, skipped".into(),
                true,
                String::new(),
            ));
        }
        simulated_steps.push(false);
        let mut caches_cleared = false;
        if plan.clear_caches {
            let clear = call("clear_cache");
            let (ok, detail, simulated) = if !restored {
                (false, NOT_RESTORED.into(), false)
            } else {
                match self.invoke(target, &clear).await {
                    None => (true, String::new(), true),
                    Some(ran) => {
                        let (ok, detail) = ran.step(&clear);
                        (ok, detail, false)
                    }
                }
            };
            caches_cleared = ok;
            steps.push(("Clear caches".into(), ok, detail));
            simulated_steps.push(simulated);
        }
        let verify = call("health");
        let (verified, detail, simulated) = if !restored {
            (false, NOT_RESTORED.into(), false)
        } else {
            match self.invoke(target, &verify).await {
                None => match self.sim.health(target, 0).await.value {
                    Ok(true) => (true, String::new(), true),
                    Ok(false) => (false, "verification failed".into(), true),
                    Err(e) => (false, e, true),
                },
                Some(ran) => {
                    let (ok, detail) = ran.step(&verify);
                    (ok, detail, false)
                }
            }
        };
        steps.push(("Verify rollback successful".into(), verified, detail));
        simulated_steps.push(simulated);
        RollbackOutcome {
            steps,
            simulated_steps,
            restored,
            migrations_reverted: restored && plan.revert_migrations,
            caches_cleared,
            verified,
        }
    }
}

#[async_trait]
impl ports::Metrics for HookWorld {
    async fn baseline(&self, target: &Target) -> Result<MetricSample, String> {
        if let Some(p) = self.processes.get(target.service.as_str()) {
            // The baseline is read from what production runs: start it if this daemon has not yet.
            p.ensure_running(target.previous_version.as_ref()).await?;
        }
        match self.metrics_config(target) {
            // What production runs before the new version: the previous one.
            Some(cfg) => {
                let vars = Self::probe_vars(target, Environment::Production, target.previous_version.as_ref(), None);
                self.metrics.read(cfg, &vars).await
            }
            None => self.sim.baseline(target).await,
        }
    }

    async fn sample(&self, target: &Target, minute: u32, traffic_percent: u8) -> Result<MetricSample, String> {
        match self.metrics_config(target) {
            Some(cfg) => {
                let vars = Self::probe_vars(target, Environment::Production, target.version.as_ref(), None);
                self.metrics.read(cfg, &vars).await
            }
            None => self.sim.sample(target, minute, traffic_percent).await,
        }
    }
}

#[async_trait]
impl ports::TestSuites for HookWorld {
    async fn run(
        &self,
        target: &Target,
        selection: SuiteSelection,
        critical: &[String],
    ) -> Result<Vec<SuiteResult>, String> {
        if let Some(config) = self
            .services
            .get(target.service.as_str())
            .filter(|s| !s.suites.is_empty())
        {
            let chosen: Vec<(&String, &crate::config::SuiteCommand)> = config
                .suites
                .iter()
                .filter(|(name, s)| selection == SuiteSelection::All || s.critical || critical.contains(name))
                .collect();
            let mut results = vec![];
            for (name, suite) in chosen {
                results.push(self.run_suite(target, name, suite).await?);
            }
            return Ok(results);
        }
        let suites = match selection {
            SuiteSelection::All => "all",
            SuiteSelection::Critical => "critical",
        };
        let call = Call::new("validate", Environment::Staging, target).with("STAGECOACH_SUITES", suites);
        let (passed, failed) = match self.invoke(target, &call).await {
            None => return self.sim.run(target, selection, critical).await,
            Some(Ran::Succeeded(_)) => (1, 0),
            Some(Ran::Failed(..)) => (0, 1),
            Some(Ran::Error(message)) => return Err(message),
        };
        Ok(vec![SuiteResult {
            failing_tests: vec![],
            name: "validate".into(),
            passed,
            failed,
            skipped: 0,
            simulated: false,
        }])
    }
}

#[async_trait]
impl ports::Security for HookWorld {
    async fn scan(&self, target: &Target) -> Result<ScanReport, String> {
        if let Some(scanner) = self
            .services
            .get(target.service.as_str())
            .and_then(|s| s.scanner.as_ref())
        {
            return self.run_scanner(target, scanner).await;
        }
        let call = Call::new("scan", Environment::Staging, target);
        match self.invoke(target, &call).await {
            None => self.sim.scan(target).await,
            Some(Ran::Succeeded(_)) => Ok(ScanReport {
                critical_vulnerabilities: 0,
                findings: vec![],
                simulated: false,
            }),
            Some(Ran::Failed(outcome, _)) => {
                // A scanner that exited with a code reports its finding last; one
                // that was killed or timed out reports nothing useful.
                let finding = outcome
                    .exit_code
                    .and_then(|_| last_line(&outcome.output_tail))
                    .unwrap_or_else(|| failure_line(&call, &outcome));
                Ok(ScanReport {
                    critical_vulnerabilities: 1,
                    findings: vec![finding],
                    simulated: false,
                })
            }
            Some(Ran::Error(message)) => Err(message),
        }
    }

    async fn incidents(&self, target: &Target, minute: u32) -> Vec<Incident> {
        self.sim.incidents(target, minute).await
    }
}

#[async_trait]
impl ports::Notifier for HookWorld {
    async fn send(&self, target: &Target, notification: &NotificationEntry) -> Result<(), String> {
        let ctx = notify::DeliveryContext {
            deployment_id: target.id.to_string(),
            service: target.service.to_string(),
            version: target.version.as_ref().map(|v| v.to_string()),
        };
        self.notifier.send(&ctx, notification).await
    }
}

impl ports::People for HookWorld {
    fn approval_requested(&self, target: &Target, role: Role, at: DateTime<Utc>, _sink: DecisionSink) {
        tracing::info!(
            deployment = %target.id,
            service = %target.service,
            role = %role,
            requested_at = %at,
            "approval awaited: a person decides through the API (`stagecoach approve`)"
        );
    }
}
