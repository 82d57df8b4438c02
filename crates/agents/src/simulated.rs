//! The simulated world's answers: what an action that nobody carries out
//! answers, labelled simulated. The simulator (`sim`) answers every action
//! this way, from its scenario's script; the daemon answers this way (with
//! the defaults: everything passes) every action of a service that has no
//! command for it. Both build their answers here, so a simulated answer
//! reads the same wherever it comes from.
//!
//! Every answer says it is simulated (the report's `simulated` flag or list
//! of fields, [`RollbackOutcome::simulated_steps`]); nothing here waits or
//! keeps state: the simulator adds its virtual durations, and what runs in
//! production is kept by [`crate::production::ProductionState`].

use serde::Deserialize;
use workflow::checklist::{PrepareReport, ScanReport};
use workflow::machine::{RollbackOutcome, RollbackPlan};
use workflow::record::{StagingReport, SuiteResult};
use workflow::settings::SuiteSelection;
use workflow::thresholds::MetricSample;
use workflow::types::{MigrationKind, Version};

/// Every finding of a prepare report, by field: all simulated here.
pub const SIMULATED_PREPARE: [&str; 6] = [
    "tests_passed",
    "build_succeeded",
    "migrations",
    "migrations_tested",
    "environment_updated",
    "backup_verified",
];

/// Every check of a staging report, by field: all simulated here.
pub const SIMULATED_STAGING: [&str; 6] = [
    "deployed",
    "application_started",
    "health_endpoints",
    "migrations_complete",
    "external_services",
    "smoke_tests",
];

/// Production instances of a service of the default simulated world.
pub const INSTANCES: u32 = 4;

/// The readings of a simulated service's metrics.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Metrics {
    pub error_rate: f64,
    pub latency_p99_ms: f64,
    pub cpu: f64,
    pub memory: f64,
}

/// What the default simulated world measures, before and after a release.
pub const BASELINE: Metrics = Metrics {
    error_rate: 0.001,
    latency_p99_ms: 120.0,
    cpu: 0.40,
    memory: 0.50,
};

impl Metrics {
    /// The readings as a sample, labelled simulated.
    pub fn sample(&self) -> MetricSample {
        MetricSample {
            error_rate: self.error_rate,
            latency_p99_ms: self.latency_p99_ms,
            cpu: Some(self.cpu),
            memory: Some(self.memory),
            simulated: true,
        }
    }
}

/// What PREPARE finds in a simulated world; by default everything passes
/// and the release has no migrations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prepare {
    pub tests_pass: bool,
    pub build: bool,
    pub migrations: MigrationKind,
    pub migrations_tested: bool,
    pub environment_updated: bool,
    pub backup: bool,
    pub instances: u32,
}

impl Default for Prepare {
    fn default() -> Self {
        Prepare {
            tests_pass: true,
            build: true,
            migrations: MigrationKind::None,
            migrations_tested: true,
            environment_updated: true,
            backup: true,
            instances: INSTANCES,
        }
    }
}

impl Prepare {
    /// The prepare report, every finding labelled simulated.
    pub fn report(&self) -> PrepareReport {
        PrepareReport {
            tests_passed: self.tests_pass,
            build_succeeded: self.build,
            artifact: if self.build {
                "simulated artifact".into()
            } else {
                "none".into()
            },
            migrations: self.migrations,
            migrations_tested: self.migrations_tested,
            environment_updated: self.environment_updated,
            backup_verified: self.backup,
            instances: self.instances,
            simulated: SIMULATED_PREPARE.iter().map(|f| f.to_string()).collect(),
        }
    }
}

/// What the staging deployment finds in a simulated world; by default
/// everything passes. Nothing after a failed deploy passes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Staging {
    pub deploy: bool,
    pub migrations: bool,
    pub health: bool,
    pub smoke: bool,
    pub external_services: bool,
}

impl Default for Staging {
    fn default() -> Self {
        Staging {
            deploy: true,
            migrations: true,
            health: true,
            smoke: true,
            external_services: true,
        }
    }
}

impl Staging {
    /// The staging report, every check labelled simulated.
    pub fn report(&self) -> StagingReport {
        StagingReport {
            deployed: self.deploy,
            application_started: self.deploy,
            health_endpoints: self.deploy && self.health,
            migrations_complete: self.deploy && self.migrations,
            external_services: self.deploy && self.external_services,
            smoke_tests: self.deploy && self.smoke,
            simulated: SIMULATED_STAGING.iter().map(|f| f.to_string()).collect(),
        }
    }
}

/// One test suite of a simulated world (a scenario's `[[world.qa.suites]]`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Suite {
    pub name: String,
    pub passed: u32,
    #[serde(default)]
    pub failed: u32,
    #[serde(default)]
    pub skipped: u32,
    /// Overrides `[qa] critical_suites` of the configuration for this suite.
    #[serde(default)]
    pub critical: Option<bool>,
}

/// The suites of the default simulated world, all passing.
pub fn default_suites() -> Vec<Suite> {
    let s = |name: &str, passed, skipped| Suite {
        name: name.into(),
        passed,
        failed: 0,
        skipped,
        critical: None,
    };
    vec![
        s("unit", 150, 2),
        s("integration", 45, 0),
        s("e2e", 20, 1),
        s("smoke", 12, 0),
    ]
}

/// The results of the `selection` of `suites`: all of them, or the
/// critical ones (a suite's own `critical`, else the `critical` names).
pub fn suites(suites: &[Suite], selection: SuiteSelection, critical: &[String]) -> Vec<SuiteResult> {
    suites
        .iter()
        .filter(|s| selection == SuiteSelection::All || s.critical.unwrap_or_else(|| critical.contains(&s.name)))
        .map(|s| SuiteResult {
            failing_tests: vec![],
            name: s.name.clone(),
            passed: s.passed,
            failed: s.failed,
            skipped: s.skipped,
            simulated: true,
        })
        .collect()
}

/// A scan that finds `critical_vulnerabilities`, described by `findings`
/// (numbered ones when none are given).
pub fn scan(critical_vulnerabilities: u32, findings: &[String]) -> ScanReport {
    let mut findings = findings.to_vec();
    if findings.is_empty() && critical_vulnerabilities > 0 {
        findings = (1..=critical_vulnerabilities)
            .map(|i| format!("critical finding #{i} (simulated)"))
            .collect();
    }
    ScanReport {
        critical_vulnerabilities,
        findings,
        simulated: true,
    }
}

/// Detail of a rollback step that was not tried because the restore failed.
pub const NOT_RESTORED: &str = "not attempted: the previous version was not restored";

/// The rollback step of a plan that does not revert migrations.
pub const MIGRATIONS_SKIPPED: &str = "Revert database migrations: not needed or not safe, skipped";

/// The first rollback step: restoring `restore` (or removing the new
/// version when nothing ran before it).
pub fn restore_step(restore: Option<&Version>) -> String {
    let shown = restore
        .map(|v| format!("v{v}"))
        .unwrap_or_else(|| "no previous version (new version removed)".into());
    format!("Initiate rollback to previous version ({shown})")
}

/// A rollback of `plan` that succeeds (`ok`) or fails to restore the
/// previous version, every step labelled simulated.
pub fn rollback(plan: &RollbackPlan, ok: bool) -> RollbackOutcome {
    let not_attempted = |ok: bool| if ok { String::new() } else { NOT_RESTORED.into() };
    let mut steps = vec![(
        restore_step(plan.restore_version.as_ref()),
        ok,
        if ok {
            String::new()
        } else {
            "restoring the previous version failed (simulated)".into()
        },
    )];
    if plan.revert_migrations {
        steps.push(("Revert database migrations".into(), ok, not_attempted(ok)));
    } else {
        steps.push((MIGRATIONS_SKIPPED.into(), true, String::new()));
    }
    if plan.clear_caches {
        steps.push(("Clear caches".into(), ok, not_attempted(ok)));
    }
    steps.push((
        "Verify rollback successful".into(),
        ok,
        if ok {
            String::new()
        } else {
            "verification failed".into()
        },
    ));
    RollbackOutcome {
        simulated_steps: vec![true; steps.len()],
        steps,
        restored: ok,
        migrations_reverted: ok && plan.revert_migrations,
        caches_cleared: ok && plan.clear_caches,
        verified: ok,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use workflow::types::Strategy;

    fn plan(revert_migrations: bool, clear_caches: bool) -> RollbackPlan {
        RollbackPlan {
            restore_version: Some(Version::parse("1.9.0").unwrap()),
            from_version: Some(Version::parse("2.0.0").unwrap()),
            strategy: Strategy::Canary,
            traffic_percent: 25,
            revert_migrations,
            clear_caches,
        }
    }

    #[test]
    fn the_default_world_passes_everything_and_says_it_is_simulated() {
        let prepare = Prepare::default().report();
        assert!(prepare.ok());
        assert_eq!(prepare.artifact, "simulated artifact");
        assert_eq!(prepare.simulated, SIMULATED_PREPARE);
        let staging = Staging::default().report();
        assert!(staging.ok());
        assert_eq!(staging.simulated, SIMULATED_STAGING);
        let scan = scan(0, &[]);
        assert_eq!((scan.critical_vulnerabilities, scan.simulated), (0, true));
        assert!(scan.findings.is_empty());
        let sample = BASELINE.sample();
        assert!(sample.simulated);
        assert_eq!(sample.cpu, Some(0.40));
    }

    #[test]
    fn a_failed_staging_deploy_fails_every_check_after_it() {
        let report = Staging {
            deploy: false,
            ..Staging::default()
        }
        .report();
        assert!(!report.deployed && !report.health_endpoints && !report.smoke_tests);
        assert!(!report.migrations_complete && !report.external_services);
    }

    #[test]
    fn critical_suites_are_chosen_by_their_own_flag_before_the_configured_names() {
        let mut all = default_suites();
        all[2].critical = Some(true);
        all[3].critical = Some(false);
        let chosen = suites(&all, SuiteSelection::Critical, &["unit".into(), "smoke".into()]);
        let names: Vec<&str> = chosen.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["unit", "e2e"]);
        assert!(chosen.iter().all(|s| s.simulated));
        assert_eq!(suites(&all, SuiteSelection::All, &[]).len(), 4);
    }

    #[test]
    fn critical_vulnerabilities_without_findings_are_numbered() {
        assert_eq!(
            scan(2, &[]).findings,
            ["critical finding #1 (simulated)", "critical finding #2 (simulated)"]
        );
        assert_eq!(scan(1, &["CVE-1".into()]).findings, ["CVE-1"]);
    }

    #[test]
    fn a_rollback_lists_its_steps_all_simulated() {
        let ok = rollback(&plan(false, true), true);
        let names: Vec<&str> = ok.steps.iter().map(|(s, _, _)| s.as_str()).collect();
        assert_eq!(
            names,
            [
                "Initiate rollback to previous version (v1.9.0)",
                MIGRATIONS_SKIPPED,
                "Clear caches",
                "Verify rollback successful"
            ]
        );
        assert_eq!(ok.simulated_steps, [true; 4]);
        assert!(ok.restored && ok.caches_cleared && ok.verified && !ok.migrations_reverted);

        let failed = rollback(&plan(true, false), false);
        assert!(!failed.restored && !failed.verified && !failed.migrations_reverted);
        assert_eq!(
            failed.steps[1],
            ("Revert database migrations".into(), false, NOT_RESTORED.into())
        );
        assert_eq!(failed.simulated_steps, [true; 3]);
        let nothing = RollbackPlan {
            restore_version: None,
            ..plan(false, false)
        };
        assert_eq!(
            rollback(&nothing, true).steps[0].0,
            "Initiate rollback to previous version (no previous version (new version removed))"
        );
    }
}
