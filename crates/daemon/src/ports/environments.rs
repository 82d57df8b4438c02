//! DevOps' environments: what runs in production (the daemon's production
//! state, checked by the service's `current_version` command when it has
//! one), the staging deployment, the production steps, health checks and
//! the rollback, by commands or the local process target; the simulated
//! world answers whatever has neither.

use std::sync::Arc;

use agents::ports::{self, Reported, Target};
use agents::simulated;
use async_trait::async_trait;
use workflow::machine::{Production, ProductionReading, RollbackOutcome, RollbackPlan};
use workflow::record::StagingReport;
use workflow::strategy::DeployStep;
use workflow::types::{ServiceName, Version};

use super::command::{last_line, Call, Environment, Ran, Stage};
use super::Context;

/// The action that says which version runs in production.
pub const CURRENT_VERSION: &str = "current_version";

/// The version a `current_version` command printed: the last non-blank
/// line of its stdout, `None` when it printed nothing (nothing runs).
pub fn parse_current_version(stdout: &str) -> Result<Option<Version>, String> {
    let Some(line) = last_line(stdout) else {
        return Ok(None);
    };
    Version::parse(&line).map(Some).map_err(|e| {
        format!(
            "{CURRENT_VERSION} printed no version as its last line: {e}; print the version that runs (e.g. 2.3.1) \
             as the last line of stdout, or nothing when no version runs"
        )
    })
}

/// [`ports::Environments`] by the service's commands or local process target.
pub struct EnvironmentsAdapter {
    ctx: Arc<Context>,
}

impl EnvironmentsAdapter {
    pub(super) fn new(ctx: Arc<Context>) -> EnvironmentsAdapter {
        EnvironmentsAdapter { ctx }
    }

    /// What the daemon's production state says runs in `service`'s production.
    pub fn journaled(&self, service: &ServiceName) -> Production {
        self.ctx.production.production(service)
    }

    /// What the service's `current_version` command says runs in its
    /// production; `None` when it has no such command.
    pub async fn current_version(&self, service: &ServiceName) -> Option<ProductionReading> {
        let spec = self.ctx.command(service, CURRENT_VERSION)?;
        let env = [
            ("STAGECOACH_SERVICE", service.to_string()),
            ("STAGECOACH_ENVIRONMENT", "production".to_string()),
            ("STAGECOACH_ACTION", CURRENT_VERSION.to_string()),
        ]
        .map(|(k, v)| (k.to_string(), v));
        let version = match hooks::run(spec, &env).await {
            Ok(outcome) if outcome.success => parse_current_version(&outcome.stdout_tail),
            Ok(outcome) => Err(format!("{CURRENT_VERSION} failed: {}", outcome.summary())),
            Err(e) => Err(format!("{CURRENT_VERSION} could not be run: {e}")),
        };
        match &version {
            Ok(v) => tracing::info!(
                %service,
                version = v.as_ref().map(|v| v.as_str()).unwrap_or(""),
                "{CURRENT_VERSION} read"
            ),
            Err(e) => tracing::warn!(%service, error = %e, "{CURRENT_VERSION} gave no version"),
        }
        Some(ProductionReading {
            source: CURRENT_VERSION.into(),
            version,
        })
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

impl EnvironmentsAdapter {
    /// The staging deployment on the local process target: one instance of the new version.
    async fn process_staging(&self, target: &Target, version: &Version) -> StagingReport {
        let p = self.ctx.process(&target.service).expect("a process target");
        let ok = match p.staging(version).await {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(deployment = %target.id, error = %e, "staging instance failed");
                false
            }
        };
        StagingReport {
            deployed: ok,
            application_started: ok,
            health_endpoints: ok,
            migrations_complete: ok,
            external_services: ok,
            smoke_tests: ok,
            simulated: vec![],
        }
    }

    /// The rollback on the local process target: all traffic back to the version restored.
    async fn process_rollback(&self, target: &Target, plan: &RollbackPlan) -> RollbackOutcome {
        let p = self.ctx.process(&target.service).expect("a process target");
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
            self.ctx
                .production
                .rolled_back(&target.service, plan.restore_version.clone());
        }
        let detail = result.err().unwrap_or_default();
        RollbackOutcome {
            steps: vec![
                (
                    format!("Initiate rollback to previous version ({shown}): all traffic sent back"),
                    ok,
                    detail,
                ),
                (simulated::MIGRATIONS_SKIPPED.into(), true, String::new()),
                ("Verify rollback successful".into(), ok, String::new()),
            ],
            simulated_steps: vec![],
            restored: ok,
            migrations_reverted: false,
            caches_cleared: false,
            verified: ok,
        }
    }

    /// A step of the rollback after the restore: its command, or the simulated
    /// world's answer (it passes); not tried when nothing was restored.
    /// Returns (ok, detail, simulated).
    async fn after_restore(&self, target: &Target, call: &Call, restored: bool) -> (bool, String, bool) {
        if !restored {
            return (false, simulated::NOT_RESTORED.into(), false);
        }
        match self.ctx.invoke(target, call).await {
            None => (true, String::new(), true),
            Some(ran) => {
                let (ok, detail) = ran.step(call);
                (ok, detail, false)
            }
        }
    }
}

#[async_trait]
impl ports::Environments for EnvironmentsAdapter {
    async fn production(&self, service: &ServiceName) -> Result<Production, String> {
        let mut production = self.journaled(service);
        production.observed = self.current_version(service).await.map(Box::new);
        Ok(production)
    }

    /// The daemon's own production state: `current_version` is asked only
    /// when a deployment gets the slot, not at every submission.
    async fn known_production(&self, service: &ServiceName) -> Result<Production, String> {
        Ok(self.journaled(service))
    }

    async fn deploy_staging(&self, target: &Target) -> Result<StagingReport, String> {
        if let (Some(_), Some(v)) = (self.ctx.process(&target.service), target.version.as_ref()) {
            return Ok(self.process_staging(target, v).await);
        }
        let sim = simulated::Staging::default().report();
        let staging = |action| Call::new(action, Environment::Staging, target);
        let ctx = &self.ctx;
        let mut stopped = false;
        let deploy = ctx.stage(target, staging("deploy"), &mut stopped).await?;
        let migrate = ctx.stage(target, staging("migrate"), &mut stopped).await?;
        let health = ctx.stage(target, staging("health"), &mut stopped).await?;
        let smoke = ctx.stage(target, staging("smoke"), &mut stopped).await?;
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
        if let (Some(p), Some(v), true) = (self.ctx.process(&target.service), target.version.as_ref(), process_step) {
            if let Err(e) = p.step(v, target.previous_version.as_ref(), step).await {
                tracing::warn!(deployment = %target.id, error = %e, "production step failed");
                return Reported::observed(Err(e));
            }
            self.ctx.production.step_succeeded(target, step);
            return Reported::observed(Ok(()));
        }
        let mut configured = false;
        for call in step_calls(target, step) {
            if let Some(ran) = self.ctx.invoke(target, &call).await {
                configured = true;
                if let Err(e) = ran.result() {
                    return Reported::observed(Err(e));
                }
            }
        }
        self.ctx.production.step_succeeded(target, step);
        if configured {
            Reported::observed(Ok(()))
        } else {
            Reported::simulated(Ok(()))
        }
    }

    async fn health(&self, target: &Target, _minute: u32) -> Reported<Result<bool, String>> {
        if let (Some(p), Some(v)) = (self.ctx.process(&target.service), target.version.as_ref()) {
            return Reported::observed(Ok(match p.health(v).await {
                Ok(()) => true,
                Err(e) => {
                    tracing::warn!(deployment = %target.id, error = %e, "health check failed");
                    false
                }
            }));
        }
        match self
            .ctx
            .invoke(target, &Call::new("health", Environment::Production, target))
            .await
        {
            None => Reported::simulated(Ok(true)),
            Some(Ran::Succeeded(_)) => Reported::observed(Ok(true)),
            Some(Ran::Failed(..)) => Reported::observed(Ok(false)),
            Some(Ran::Error(message)) => Reported::observed(Err(message)),
        }
    }

    async fn rollback(&self, target: &Target, plan: &RollbackPlan) -> RollbackOutcome {
        if self.ctx.process(&target.service).is_some() {
            return self.process_rollback(target, plan).await;
        }
        let call = |action| {
            Call::of(
                action,
                Environment::Production,
                plan.restore_version.clone(),
                plan.from_version.clone(),
                plan.strategy,
            )
        };
        let rollback = call("rollback")
            .weight(plan.traffic_percent)
            .with("STAGECOACH_REVERT_MIGRATIONS", plan.revert_migrations.to_string());
        let Some(ran) = self.ctx.invoke(target, &rollback).await else {
            self.ctx
                .production
                .rolled_back(&target.service, plan.restore_version.clone());
            return simulated::rollback(plan, true);
        };
        let (restored, detail) = ran.step(&rollback);
        let mut steps = vec![(simulated::restore_step(plan.restore_version.as_ref()), restored, detail)];
        // Per step: answered by the simulated world (no command configured).
        let mut simulated_steps = vec![false];
        if restored {
            self.ctx
                .production
                .rolled_back(&target.service, plan.restore_version.clone());
        }
        if plan.revert_migrations {
            let detail = if restored {
                "by the rollback command".into()
            } else {
                simulated::NOT_RESTORED.into()
            };
            steps.push(("Revert database migrations".into(), restored, detail));
        } else {
            steps.push((simulated::MIGRATIONS_SKIPPED.into(), true, String::new()));
        }
        simulated_steps.push(false);
        let mut caches_cleared = false;
        if plan.clear_caches {
            let (ok, detail, simulated) = self.after_restore(target, &call("clear_cache"), restored).await;
            caches_cleared = ok;
            steps.push(("Clear caches".into(), ok, detail));
            simulated_steps.push(simulated);
        }
        let (verified, detail, simulated) = self.after_restore(target, &call("health"), restored).await;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_version_is_the_last_non_blank_line() {
        assert_eq!(
            parse_current_version("2.3.1\n"),
            Ok(Some(Version::parse("2.3.1").unwrap()))
        );
        assert_eq!(
            parse_current_version("reading the deployment\n  2.3.1-rc.1+build.7  \n\n"),
            Ok(Some(Version::parse("2.3.1-rc.1+build.7").unwrap()))
        );
    }

    #[test]
    fn no_output_means_nothing_runs() {
        assert_eq!(parse_current_version(""), Ok(None));
        assert_eq!(parse_current_version("\n  \n"), Ok(None));
    }

    #[test]
    fn a_last_line_that_is_no_version_is_an_error_saying_what_to_print() {
        let e = parse_current_version("2.3.1\nimage: web 2.3.1").unwrap_err();
        assert!(
            e.starts_with(
                "current_version printed no version as its last line: version \"image: web 2.3.1\" is invalid"
            ),
            "{e}"
        );
        assert!(e.contains("print the version that runs (e.g. 2.3.1)"), "{e}");
        assert!(parse_current_version("../etc/passwd").is_err());
    }
}
