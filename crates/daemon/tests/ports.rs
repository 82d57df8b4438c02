//! The daemon's adapters against real child processes: `sh -c` scripts that
//! record their `STAGECOACH_*` environment in a temporary directory.

use std::collections::BTreeMap;
use std::path::Path;

use agents::ports::{Build, Environments, Security, Target, TestSuites};
use daemon::config::ServiceConfig;
use daemon::ports::Adapters;
use hooks::CommandSpec;
use workflow::machine::RollbackPlan;
use workflow::settings::SuiteSelection;
use workflow::strategy::{Colour, DeployStep};
use workflow::types::{DeploymentId, DeploymentType, ServiceName, Strategy, Version};

/// Records the action's environment in `$OUT/<action>.env` and appends
/// "<action> <instance>" to `$OUT/order`.
const RECORD: &str = r#"env | grep '^STAGECOACH_' | sort > "$OUT/$STAGECOACH_ACTION.env"
echo "$STAGECOACH_ACTION $STAGECOACH_INSTANCE" >> "$OUT/order""#;

fn version(v: &str) -> Version {
    Version::parse(v).unwrap()
}

fn service(name: &str) -> ServiceName {
    ServiceName::parse(name).unwrap()
}

fn target(name: &str, strategy: Strategy, attempt: u32) -> Target {
    Target {
        id: DeploymentId(7),
        service: service(name),
        version: Some(version("2.0.0")),
        previous_version: Some(version("1.9.0")),
        kind: DeploymentType::Standard,
        strategy,
        submitted_by: "alice".into(),
        attempt,
    }
}

/// `sh -c SCRIPT` with `$OUT` = `out`; `SCRIPT` runs after `RECORD`.
fn sh(out: &Path, script: &str) -> CommandSpec {
    let mut spec = CommandSpec::new(["sh", "-c", &format!("{RECORD}\n{script}")]);
    spec.env.insert("OUT".into(), out.display().to_string());
    spec.timeout_seconds = 30.0;
    spec
}

fn world(name: &str, actions: Vec<(&str, CommandSpec)>) -> Adapters {
    let config = ServiceConfig {
        actions: actions.into_iter().map(|(a, spec)| (a.to_string(), spec)).collect(),
        ..ServiceConfig::default()
    };
    Adapters::new(BTreeMap::from([(name.to_string(), config)]))
}

fn recorded_env(out: &Path, action: &str) -> BTreeMap<String, String> {
    let text = std::fs::read_to_string(out.join(format!("{action}.env")))
        .unwrap_or_else(|e| panic!("{action} did not record its environment: {e}"));
    text.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn order(out: &Path) -> Vec<String> {
    std::fs::read_to_string(out.join("order"))
        .unwrap_or_default()
        .lines()
        .map(|l| l.trim().to_string())
        .collect()
}

fn plan(clear_caches: bool) -> RollbackPlan {
    RollbackPlan {
        restore_version: Some(version("1.9.0")),
        from_version: Some(version("2.0.0")),
        strategy: Strategy::Canary,
        traffic_percent: 25,
        revert_migrations: false,
        clear_caches,
    }
}

#[tokio::test]
async fn canary_step_runs_deploy_then_health_with_the_deployment_in_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path();
    let world = world("web", vec![("deploy", sh(out, "")), ("health", sh(out, ""))]);
    let ports = world.ports();

    ports
        .environments
        .step(
            &target("web", Strategy::Canary, 2),
            &DeployStep::CanaryWeight { percent: 25 },
        )
        .await
        .value
        .unwrap();

    assert_eq!(order(out), ["deploy", "health"]);
    for action in ["deploy", "health"] {
        let env = recorded_env(out, action);
        let get = |k: &str| env.get(k).map(String::as_str);
        assert_eq!(get("STAGECOACH_ACTION"), Some(action));
        assert_eq!(get("STAGECOACH_SERVICE"), Some("web"));
        assert_eq!(get("STAGECOACH_VERSION"), Some("2.0.0"));
        assert_eq!(get("STAGECOACH_PREVIOUS_VERSION"), Some("1.9.0"));
        assert_eq!(get("STAGECOACH_ENVIRONMENT"), Some("production"));
        assert_eq!(get("STAGECOACH_STRATEGY"), Some("canary"));
        assert_eq!(get("STAGECOACH_WEIGHT"), Some("25"));
        assert_eq!(get("STAGECOACH_INSTANCE"), Some(""));
        assert_eq!(get("STAGECOACH_COLOUR"), Some(""));
        assert_eq!(get("STAGECOACH_ATTEMPT"), Some("2"));
        assert_eq!(get("STAGECOACH_DEPLOYMENT_ID"), Some("d-000007"));
    }
}

#[tokio::test]
async fn a_failing_deploy_command_fails_the_step_with_its_output_and_stops_it() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path();
    let world = world(
        "web",
        vec![
            (
                "deploy",
                sh(out, "echo 'pulling image'\necho 'no space left on device' >&2\nexit 3"),
            ),
            ("health", sh(out, "")),
        ],
    );

    let err = world
        .environments
        .step(
            &target("web", Strategy::Canary, 1),
            &DeployStep::CanaryWeight { percent: 5 },
        )
        .await
        .value
        .unwrap_err();

    assert!(err.starts_with("deploy failed: exit 3"), "{err}");
    assert!(err.contains("pulling image"), "{err}");
    assert!(err.contains("no space left on device"), "{err}");
    assert_eq!(order(out), ["deploy"], "health must not run after a failed deploy");
}

#[tokio::test]
async fn a_command_that_cannot_start_fails_the_step_naming_the_action() {
    let world = world(
        "web",
        vec![("deploy", CommandSpec::new(["/nonexistent/stagecoach-deploy"]))],
    );
    let err = world
        .environments
        .step(
            &target("web", Strategy::BlueGreen, 1),
            &DeployStep::DeployInactive { colour: Colour::Green },
        )
        .await
        .value
        .unwrap_err();
    assert!(err.starts_with("deploy could not be run"), "{err}");
    assert!(err.contains("/nonexistent/stagecoach-deploy"), "{err}");
}

#[tokio::test]
async fn a_service_without_commands_uses_the_simulated_world() {
    let world = Adapters::new(BTreeMap::new());
    let t = target("api", Strategy::Canary, 1);

    let prepared = world.build.prepare(&t).await.unwrap();
    assert!(prepared.ok(), "{prepared:?}");
    // Everything the simulated world answers says so.
    assert_eq!(prepared.simulated, agents::simulated::SIMULATED_PREPARE);
    let staging = world.environments.deploy_staging(&t).await.unwrap();
    assert!(staging.ok());
    assert_eq!(staging.simulated, agents::simulated::SIMULATED_STAGING);
    let suites = world.suites.run(&t, SuiteSelection::All, &[]).await.unwrap();
    assert!(!suites.is_empty() && suites.iter().all(|s| s.simulated), "{suites:?}");
    let scan = world.security.scan(&t).await.unwrap();
    assert_eq!((scan.critical_vulnerabilities, scan.simulated), (0, true));
    assert!(world.environments.step(&t, &DeployStep::Backup).await.simulated);
    assert!(world.environments.health(&t, 1).await.simulated);
    world
        .environments
        .step(&t, &DeployStep::CanaryWeight { percent: 5 })
        .await
        .value
        .unwrap();
    assert_eq!(
        world.environments.production(&t.service).await.unwrap().current_version,
        None
    );
    world
        .environments
        .step(&t, &DeployStep::CanaryWeight { percent: 100 })
        .await
        .value
        .unwrap();
    assert!(world.environments.health(&t, 10).await.value.unwrap());

    let production = world.environments.production(&t.service).await.unwrap();
    assert_eq!(production.current_version, Some(version("2.0.0")));

    let outcome = world.environments.rollback(&t, &plan(true)).await;
    assert_eq!(outcome.simulated_steps, vec![true; outcome.steps.len()]);
}

#[tokio::test]
async fn set_production_seeds_production_and_configured_steps_still_promote() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path();
    let world = world("web", vec![("deploy", sh(out, "")), ("health", sh(out, ""))]);
    world.set_production(&service("web"), Some(version("1.9.0")), Some(version("1.8.0")));

    let production = world.environments.production(&service("web")).await.unwrap();
    assert_eq!(production.current_version, Some(version("1.9.0")));
    assert_eq!(production.previous_version, Some(version("1.8.0")));

    world
        .environments
        .step(
            &target("web", Strategy::Canary, 1),
            &DeployStep::CanaryWeight { percent: 100 },
        )
        .await
        .value
        .unwrap();
    let production = world.environments.production(&service("web")).await.unwrap();
    assert_eq!(production.current_version, Some(version("2.0.0")));
    assert_eq!(production.previous_version, Some(version("1.9.0")));
}

#[tokio::test]
async fn rolling_steps_deploy_and_check_each_instance_in_turn() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path();
    let world = world(
        "web",
        vec![
            ("deploy", sh(out, "")),
            (
                "health",
                sh(
                    out,
                    r#"[ "$STAGECOACH_INSTANCE" != 4 ] || { echo 'instance 4 unhealthy'; exit 1; }"#,
                ),
            ),
        ],
    );
    let err = world
        .environments
        .step(
            &target("web", Strategy::Rolling, 1),
            &DeployStep::UpdateInstances {
                first: 2,
                count: 2,
                total: 4,
            },
        )
        .await
        .value
        .unwrap_err();
    assert_eq!(order(out), ["deploy 3", "health 3", "deploy 4", "health 4"]);
    assert!(err.starts_with("health for instance 4 failed"), "{err}");
    assert!(err.contains("instance 4 unhealthy"), "{err}");
    // The last batch failed: production was not promoted.
    assert_eq!(
        world
            .environments
            .production(&service("web"))
            .await
            .unwrap()
            .current_version,
        None
    );
}

#[tokio::test]
async fn staging_stops_at_the_first_failing_command() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path();
    let world = world(
        "web",
        vec![
            ("deploy", sh(out, "")),
            ("migrate", sh(out, "echo 'migration 0042 failed'; exit 1")),
            ("health", sh(out, "")),
        ],
    );
    let report = world
        .environments
        .deploy_staging(&target("web", Strategy::Canary, 1))
        .await
        .unwrap();
    assert!(report.deployed && report.application_started);
    assert!(!report.migrations_complete);
    assert!(!report.health_endpoints && !report.smoke_tests);
    assert_eq!(order(out), ["deploy", "migrate"]);
    // The checks after the failed command were not run: failed, not simulated.
    assert!(report.simulated.is_empty(), "{report:?}");
    assert_eq!(recorded_env(out, "deploy")["STAGECOACH_ENVIRONMENT"], "staging");
}

#[tokio::test]
async fn prepare_reports_tests_build_and_the_artifact() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path();
    let world = world(
        "web",
        vec![
            ("tests", sh(out, "echo 'all 120 tests passed'")),
            ("build", sh(out, "echo compiling\necho 'web-2.0.0.tar.gz'\necho")),
        ],
    );
    let report = world.build.prepare(&target("web", Strategy::Canary, 1)).await.unwrap();
    assert!(report.tests_passed && report.build_succeeded, "{report:?}");
    assert_eq!(report.artifact, "web-2.0.0.tar.gz");
    assert_eq!(order(out), ["tests", "build"]);
    // The commands' findings are observed; the rest come from the simulated world.
    assert_eq!(
        report.simulated,
        [
            "migrations",
            "migrations_tested",
            "environment_updated",
            "backup_verified"
        ]
        .map(String::from)
    );

    let failing = self::world("web", vec![("tests", sh(out, "exit 1")), ("build", sh(out, ""))]);
    let report = failing
        .build
        .prepare(&target("web", Strategy::Canary, 1))
        .await
        .unwrap();
    assert!(!report.tests_passed && !report.build_succeeded, "{report:?}");
    assert!(!report.ok());
}

#[tokio::test]
async fn a_failing_rollback_command_is_not_restored_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path();
    let world = world(
        "web",
        vec![
            ("rollback", sh(out, "echo 'load balancer unreachable' >&2; exit 4")),
            ("clear_cache", sh(out, "")),
            ("health", sh(out, "")),
        ],
    );
    world.set_production(&service("web"), Some(version("2.0.0")), Some(version("1.9.0")));

    let outcome = world
        .environments
        .rollback(&target("web", Strategy::Canary, 1), &plan(true))
        .await;

    assert!(!outcome.restored && !outcome.verified && !outcome.caches_cleared);
    let (step, ok, detail) = &outcome.steps[0];
    assert_eq!(step, "Initiate rollback to previous version (v1.9.0)");
    assert!(!ok);
    assert!(detail.starts_with("rollback failed: exit 4"), "{detail}");
    assert!(detail.contains("load balancer unreachable"), "{detail}");
    assert!(outcome
        .steps
        .iter()
        .skip(1)
        .any(|(s, ok, _)| s == "Clear caches" && !ok));
    assert_eq!(order(out), ["rollback"], "nothing runs after a failed rollback");
    assert!(outcome.simulated_steps.iter().all(|s| !s), "{outcome:?}");
    let production = world.environments.production(&service("web")).await.unwrap();
    assert_eq!(production.current_version, Some(version("2.0.0")));
}

#[tokio::test]
async fn a_successful_rollback_restores_clears_caches_verifies_and_updates_production() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path();
    let world = world(
        "web",
        vec![
            ("rollback", sh(out, "")),
            ("clear_cache", sh(out, "")),
            ("health", sh(out, "")),
        ],
    );
    world.set_production(&service("web"), Some(version("2.0.0")), Some(version("1.9.0")));

    let outcome = world
        .environments
        .rollback(&target("web", Strategy::Canary, 3), &plan(true))
        .await;

    assert!(
        outcome.restored && outcome.caches_cleared && outcome.verified,
        "{outcome:?}"
    );
    let names: Vec<&str> = outcome.steps.iter().map(|(s, _, _)| s.as_str()).collect();
    assert_eq!(
        names,
        [
            "Initiate rollback to previous version (v1.9.0)",
            "Revert database migrations: not needed or not safe, skipped",
            "Clear caches",
            "Verify rollback successful",
        ]
    );
    assert_eq!(order(out), ["rollback", "clear_cache", "health"]);
    let env = recorded_env(out, "rollback");
    assert_eq!(env["STAGECOACH_VERSION"], "1.9.0");
    assert_eq!(env["STAGECOACH_PREVIOUS_VERSION"], "2.0.0");
    assert_eq!(env["STAGECOACH_WEIGHT"], "25");
    assert_eq!(env["STAGECOACH_ATTEMPT"], "3");
    assert_eq!(env["STAGECOACH_REVERT_MIGRATIONS"], "false");
    assert_eq!(recorded_env(out, "health")["STAGECOACH_VERSION"], "1.9.0");
    let production = world.environments.production(&service("web")).await.unwrap();
    assert_eq!(production.current_version, Some(version("1.9.0")));
}

#[tokio::test]
async fn a_failing_scan_reports_a_critical_vulnerability_with_the_finding() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path();
    let world = world(
        "web",
        vec![(
            "scan",
            sh(
                out,
                "echo 'scanning 214 packages'\necho 'CVE-2026-0001 in openssl: critical'\nexit 2",
            ),
        )],
    );
    let report = world.security.scan(&target("web", Strategy::Canary, 1)).await.unwrap();
    assert_eq!(report.critical_vulnerabilities, 1);
    assert_eq!(report.findings, ["CVE-2026-0001 in openssl: critical"]);

    let clean = self::world("web", vec![("scan", sh(out, "echo 'no findings'"))]);
    let report = clean.security.scan(&target("web", Strategy::Canary, 1)).await.unwrap();
    assert_eq!(report.critical_vulnerabilities, 0);
    assert!(report.findings.is_empty());
}

#[tokio::test]
async fn validate_is_one_suite() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path();
    let world = world("web", vec![("validate", sh(out, "exit 1"))]);
    let suites = world
        .suites
        .run(&target("web", Strategy::Canary, 1), SuiteSelection::Critical, &[])
        .await
        .unwrap();
    assert_eq!(suites.len(), 1);
    assert_eq!(
        (suites[0].name.as_str(), suites[0].passed, suites[0].failed),
        ("validate", 0, 1)
    );
    assert_eq!(recorded_env(out, "validate")["STAGECOACH_SUITES"], "critical");
}

// ---- suites that leave JUnit XML, scanners that leave SARIF ----------------------

/// A report written by a real tool, kept in the reports crate's fixtures.
fn fixture(name: &str) -> String {
    format!("{}/../reports/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn suite(dir: &Path, script: &str, critical: bool) -> daemon::config::SuiteCommand {
    daemon::config::SuiteCommand {
        argv: vec!["sh".into(), "-c".into(), script.into()],
        cwd: Some(dir.to_path_buf()),
        env: BTreeMap::new(),
        env_passthrough: vec![],
        timeout_seconds: 30.0,
        junit: "junit.xml".into(),
        critical,
    }
}

fn with_suites(suites: Vec<(&str, daemon::config::SuiteCommand)>) -> Adapters {
    let config = ServiceConfig {
        suites: suites.into_iter().map(|(n, s)| (n.to_string(), s)).collect(),
        ..ServiceConfig::default()
    };
    Adapters::new(BTreeMap::from([("web".to_string(), config)]))
}

#[tokio::test]
async fn a_junit_report_with_failures_names_the_failing_tests() {
    let dir = tempfile::tempdir().unwrap();
    // cargo nextest exits 100 when tests fail; the report is what counts.
    let script = format!("cp {} junit.xml; exit 100", fixture("nextest-junit.xml"));
    let world = with_suites(vec![("unit", suite(dir.path(), &script, true))]);
    let results = world
        .suites
        .run(&target("web", Strategy::Canary, 1), SuiteSelection::All, &[])
        .await
        .unwrap();
    assert_eq!(results.len(), 1);
    let unit = &results[0];
    assert_eq!(unit.name, "unit");
    assert_eq!(unit.failed, 2, "{unit:?}");
    assert!(unit.passed >= 3, "{unit:?}");
    assert_eq!(unit.failing_tests.len(), 2, "{unit:?}");
    let report = workflow::record::ValidationReport::from_suites(results.clone(), &[]);
    assert_eq!(report.recommendation, workflow::record::Recommendation::NeedsFixes);
    for t in &unit.failing_tests {
        assert!(
            report.issues.iter().any(|i| i.contains(t.as_str())),
            "{t} not in {:?}",
            report.issues
        );
    }
}

#[tokio::test]
async fn a_suite_without_a_report_fails_and_says_where_it_looked() {
    let dir = tempfile::tempdir().unwrap();
    // A report left over from an earlier run must not count.
    std::fs::copy(fixture("nextest-junit.xml"), dir.path().join("junit.xml")).unwrap();
    let world = with_suites(vec![("unit", suite(dir.path(), "exit 3", true))]);
    let results = world
        .suites
        .run(&target("web", Strategy::Canary, 1), SuiteSelection::All, &[])
        .await
        .unwrap();
    assert_eq!(results[0].failed, 1);
    assert!(
        results[0].failing_tests[0].contains("no JUnit report at"),
        "{:?}",
        results[0]
    );
}

#[tokio::test]
async fn a_hotfix_runs_only_the_critical_suites() {
    let dir = tempfile::tempdir().unwrap();
    let ok = format!("cp {} junit.xml", fixture("pytest-junit.xml"));
    let world = with_suites(vec![
        ("smoke", suite(dir.path(), &ok, true)),
        ("e2e", suite(dir.path(), "exit 1", false)),
    ]);
    let results = world
        .suites
        .run(&target("web", Strategy::Canary, 1), SuiteSelection::Critical, &[])
        .await
        .unwrap();
    let names: Vec<&str> = results.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["smoke"]);
}

fn with_scanner(dir: &Path, script: &str) -> Adapters {
    let config = ServiceConfig {
        scanner: Some(daemon::config::ScannerCommand {
            argv: vec!["sh".into(), "-c".into(), script.into()],
            cwd: Some(dir.to_path_buf()),
            env: BTreeMap::new(),
            env_passthrough: vec![],
            timeout_seconds: 30.0,
            report: "scan.sarif".into(),
        }),
        ..ServiceConfig::default()
    };
    Adapters::new(BTreeMap::from([("web".to_string(), config)]))
}

#[tokio::test]
async fn a_sarif_error_finding_is_a_critical_vulnerability() {
    let dir = tempfile::tempdir().unwrap();
    // semgrep exits 1 with --error when it finds something.
    let script = format!("cp {} scan.sarif; exit 1", fixture("semgrep.sarif"));
    let world = with_scanner(dir.path(), &script);
    let report = world.security.scan(&target("web", Strategy::Canary, 1)).await.unwrap();
    assert!(report.critical_vulnerabilities >= 1, "{report:?}");
    assert_eq!(report.findings.len() as u32, report.critical_vulnerabilities);
    assert!(
        report.findings.iter().all(|f| f.contains("[Semgrep")),
        "{:?}",
        report.findings
    );
}

#[tokio::test]
async fn a_scanner_that_writes_no_report_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(fixture("semgrep.sarif"), dir.path().join("scan.sarif")).unwrap();
    let world = with_scanner(dir.path(), "exit 2");
    let err = world
        .security
        .scan(&target("web", Strategy::Canary, 1))
        .await
        .unwrap_err();
    assert!(err.contains("wrote no report"), "{err}");
}

#[tokio::test]
async fn a_rollback_step_without_a_command_is_simulated() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path();
    let world = world("web", vec![("rollback", sh(out, ""))]);
    world.set_production(&service("web"), Some(version("2.0.0")), Some(version("1.9.0")));

    let outcome = world
        .environments
        .rollback(&target("web", Strategy::Canary, 1), &plan(true))
        .await;

    let steps: Vec<(&str, bool)> = outcome
        .steps
        .iter()
        .zip(&outcome.simulated_steps)
        .map(|((s, _, _), sim)| (s.as_str(), *sim))
        .collect();
    assert_eq!(
        steps,
        [
            ("Initiate rollback to previous version (v1.9.0)", false),
            ("Revert database migrations: not needed or not safe, skipped", false),
            ("Clear caches", true),
            ("Verify rollback successful", true),
        ]
    );
}

// ---- current_version: what production runs, by the service itself ----------------

#[tokio::test]
async fn production_carries_what_current_version_prints_with_its_own_environment() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path();
    let world = world(
        "web",
        vec![(
            "current_version",
            sh(out, "echo 'asking the cluster' >&2\necho 'looking up web'\necho 1.9.0"),
        )],
    );
    world.set_production(&service("web"), Some(version("1.9.0")), Some(version("1.8.0")));

    let production = world.environments.production(&service("web")).await.unwrap();
    assert_eq!(production.current_version, Some(version("1.9.0")));
    assert_eq!(production.previous_version, Some(version("1.8.0")));
    let reading = production.observed.clone().expect("current_version was asked");
    assert_eq!(reading.source, "current_version");
    assert_eq!(reading.version, Ok(Some(version("1.9.0"))));
    assert_eq!(production.disagreement(&service("web")), None);
    let env = recorded_env(out, "current_version");
    assert_eq!(
        env.into_iter().collect::<Vec<_>>(),
        [
            ("STAGECOACH_ACTION".to_string(), "current_version".to_string()),
            ("STAGECOACH_ENVIRONMENT".to_string(), "production".to_string()),
            ("STAGECOACH_SERVICE".to_string(), "web".to_string()),
        ]
    );
}

#[tokio::test]
async fn current_version_naming_another_version_disagrees_with_the_journal() {
    let dir = tempfile::tempdir().unwrap();
    let world = world("web", vec![("current_version", sh(dir.path(), "echo 2.3.1"))]);
    world.set_production(&service("web"), Some(version("2.3.0")), None);

    let production = world.environments.production(&service("web")).await.unwrap();
    let why = production.disagreement(&service("web")).expect("a disagreement");
    assert!(
        why.starts_with("production of web runs 2.3.1 by `current_version`, but the journal says 2.3.0"),
        "{why}"
    );
}

#[tokio::test]
async fn a_failing_or_unreadable_current_version_is_a_reading_that_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let failing = world(
        "web",
        vec![(
            "current_version",
            sh(dir.path(), "echo 'kubectl: connection refused' >&2; exit 2"),
        )],
    );
    let reading = failing.environments.production(&service("web")).await.unwrap().observed;
    let e = reading.expect("asked").version.unwrap_err();
    assert!(e.starts_with("current_version failed: exit 2"), "{e}");
    assert!(e.contains("connection refused"), "{e}");

    let garbled = world(
        "web",
        vec![("current_version", sh(dir.path(), "echo 'web is at 2.3.1'"))],
    );
    let production = garbled.environments.production(&service("web")).await.unwrap();
    let e = production.observed.clone().expect("asked").version.unwrap_err();
    assert!(e.contains("printed no version as its last line"), "{e}");
    let why = production.disagreement(&service("web")).expect("held");
    assert!(why.contains("not deploying blind"), "{why}");

    let missing = world(
        "web",
        vec![("current_version", CommandSpec::new(["/nonexistent/current-version"]))],
    );
    let e = missing
        .environments
        .production(&service("web"))
        .await
        .unwrap()
        .observed
        .expect("asked");
    assert!(
        e.version
            .as_ref()
            .unwrap_err()
            .starts_with("current_version could not be run"),
        "{e:?}"
    );
}

#[tokio::test]
async fn without_current_version_production_is_what_the_journal_says() {
    let dir = tempfile::tempdir().unwrap();
    let world = world("web", vec![("deploy", sh(dir.path(), ""))]);
    world.set_production(&service("web"), Some(version("1.9.0")), None);
    let production = world.environments.production(&service("web")).await.unwrap();
    assert_eq!(production.observed, None);
    assert_eq!(production.current_version, Some(version("1.9.0")));
    assert!(order(dir.path()).is_empty(), "no command ran: {:?}", order(dir.path()));
}
