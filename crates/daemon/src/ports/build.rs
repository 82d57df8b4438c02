//! DevOps' build side: PREPARE runs `tests`, `build` and `backup`, and the
//! simulated world answers whatever has no command.

use std::sync::Arc;

use agents::ports::{self, Target};
use agents::simulated;
use async_trait::async_trait;
use workflow::checklist::PrepareReport;

use super::command::{last_line, Call, Environment, Stage};
use super::Context;

/// [`ports::Build`] by the service's commands.
pub struct BuildAdapter {
    ctx: Arc<Context>,
}

impl BuildAdapter {
    pub(super) fn new(ctx: Arc<Context>) -> BuildAdapter {
        BuildAdapter { ctx }
    }
}

#[async_trait]
impl ports::Build for BuildAdapter {
    async fn prepare(&self, target: &Target) -> Result<PrepareReport, String> {
        let sim = simulated::Prepare::default().report();
        let ctx = &self.ctx;
        let mut stopped = false;
        let tests = ctx
            .stage(target, Call::new("tests", Environment::Staging, target), &mut stopped)
            .await?;
        let build = ctx
            .stage(target, Call::new("build", Environment::Staging, target), &mut stopped)
            .await?;
        let backup = ctx
            .stage(
                target,
                Call::new("backup", Environment::Production, target),
                &mut stopped,
            )
            .await?;
        let artifact = match &build {
            Stage::Simulated => sim.artifact.clone(),
            Stage::Passed(outcome) => last_line(&outcome.output_tail).unwrap_or_else(|| {
                let program = ctx
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
