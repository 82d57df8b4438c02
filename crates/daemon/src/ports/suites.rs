//! QA's test suites: the service's suites (commands that leave a JUnit
//! report), or its `validate` command as one suite; the simulated world's
//! suites without either.

use std::sync::Arc;

use agents::ports::{self, Target};
use agents::simulated;
use async_trait::async_trait;
use workflow::record::SuiteResult;
use workflow::settings::SuiteSelection;

use super::command::{Call, Environment, Ran};
use super::Context;
use crate::config::{ReportCommand, SuiteCommand};

/// [`ports::TestSuites`] by the service's suites or `validate` command.
pub struct TestSuitesAdapter {
    ctx: Arc<Context>,
}

impl TestSuitesAdapter {
    pub(super) fn new(ctx: Arc<Context>) -> TestSuitesAdapter {
        TestSuitesAdapter { ctx }
    }

    /// One QA suite: its command, then its JUnit report.
    async fn run_suite(&self, target: &Target, name: &str, suite: &SuiteCommand) -> Result<SuiteResult, String> {
        let call = Call::new("validate", Environment::Staging, target).with("STAGECOACH_SUITE", name);
        let path = suite.report_path();
        let what = format!("suite {name}");
        let (text, outcome) = self
            .ctx
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
}

#[async_trait]
impl ports::TestSuites for TestSuitesAdapter {
    async fn run(
        &self,
        target: &Target,
        selection: SuiteSelection,
        critical: &[String],
    ) -> Result<Vec<SuiteResult>, String> {
        if let Some(config) = self.ctx.service(&target.service).filter(|s| !s.suites.is_empty()) {
            let chosen: Vec<(&String, &SuiteCommand)> = config
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
        let (passed, failed) = match self.ctx.invoke(target, &call).await {
            None => return Ok(simulated::suites(&simulated::default_suites(), selection, critical)),
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
