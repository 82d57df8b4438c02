//! Tests of the pure deployment state machine, driven by a small
//! deterministic simulation: a queue of pending effects, a virtual clock that
//! jumps to the earliest pending timer when nothing else is pending, and a
//! configurable "world" that answers every effect the way an agent would.

use std::collections::VecDeque;
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use proptest::prelude::{
    any, prop, prop_assert, prop_assert_eq, prop_oneof, proptest, BoxedStrategy, Just, ProptestConfig, TestCaseError,
};
use proptest::strategy::Strategy as Gen;

use workflow::approval;
use workflow::checklist::{PrepareReport, ScanReport};
use workflow::machine::{
    Effect, Event, Incident, IncidentKind, Machine, Observation, Output, Production, ProductionReading,
    RollbackOutcome, RollbackPlan, SubmitError,
};
use workflow::record::{Decision, Fact, NotificationEntry, Record, Request, StagingReport, SuiteResult};
use workflow::settings::{ApprovalMode, CheckpointCheck, IrreversiblePolicy, Settings, SuiteSelection};
use workflow::strategy::{Colour, DeployStep};
use workflow::thresholds::{AlertAction, Metric, MetricSample};
use workflow::transitions::IllegalTransition;
use workflow::types::{
    DeploymentId, DeploymentType, EscalationReason, MigrationKind, NotificationKind, Outcome, Role, RollbackTrigger,
    ServiceName, Stage, Status, Strategy, Version,
};

// ---------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------

fn t(s: &str) -> DateTime<Utc> {
    s.parse().expect("an RFC 3339 timestamp")
}

fn v(s: &str) -> Version {
    Version::parse(s).unwrap()
}

/// Tuesday 2026-12-01 10:05 UTC: inside the default Tue-Thu 10:00-12:00 window.
const TUESDAY_IN_WINDOW: &str = "2026-12-01T10:05:00Z";

fn request(kind: DeploymentType, strategy: Option<Strategy>) -> Request {
    Request {
        service: ServiceName::parse("checkout").unwrap(),
        version: if kind == DeploymentType::Rollback {
            None
        } else {
            Some(v("2.4.1"))
        },
        kind,
        strategy,
        submitted_by: "alice".into(),
        changes: vec!["New payment provider".into(), "Faster cart".into()],
        scheduled_for: None,
        attest: vec![],
        window_override: None,
    }
}

fn production() -> Production {
    Production {
        current_version: Some(v("2.4.0")),
        previous_version: Some(v("2.3.9")),
        active_colour: Colour::Blue,
        observed: None,
    }
}

fn normal() -> MetricSample {
    MetricSample {
        error_rate: 0.002,
        latency_p99_ms: 100.0,
        cpu: Some(0.4),
        memory: Some(0.5),
        simulated: false,
    }
}

fn prepare_report() -> PrepareReport {
    PrepareReport {
        tests_passed: true,
        build_succeeded: true,
        artifact: "checkout-2.4.1.tar.gz".into(),
        migrations: MigrationKind::None,
        migrations_tested: true,
        environment_updated: true,
        backup_verified: true,
        instances: 3,
        simulated: vec![],
    }
}

fn staging_ok() -> StagingReport {
    StagingReport {
        deployed: true,
        application_started: true,
        health_endpoints: true,
        migrations_complete: true,
        external_services: true,
        smoke_tests: true,
        simulated: vec![],
    }
}

fn suite(name: &str, passed: u32, failed: u32, skipped: u32) -> SuiteResult {
    SuiteResult {
        failing_tests: vec![],
        name: name.into(),
        passed,
        failed,
        skipped,
        simulated: false,
    }
}

fn all_suites() -> Vec<SuiteResult> {
    vec![
        suite("unit", 150, 0, 2),
        suite("integration", 45, 0, 0),
        suite("e2e", 20, 0, 1),
        suite("smoke", 12, 0, 0),
    ]
}

/// An answer that depends on the minute since DEPLOY started.
type Answer<T> = Box<dyn FnMut(u32) -> T>;
type StepAnswer = Box<dyn FnMut(usize, &DeployStep) -> Result<(), String>>;
type NotifyAnswer = Box<dyn FnMut(&NotificationEntry) -> Result<(), String>>;

/// A human decision the world gives when a person is asked for `role`.
#[derive(Debug, Clone)]
struct HumanAnswer {
    role: Role,
    approve: bool,
    by: String,
    after_minutes: i64,
}

fn human(role: Role, approve: bool, by: &str) -> HumanAnswer {
    HumanAnswer {
        role,
        approve,
        by: by.into(),
        after_minutes: 0,
    }
}

/// How the agents and production answer.
struct World {
    prepare: Result<PrepareReport, String>,
    scan: Result<ScanReport, String>,
    staging: Result<StagingReport, String>,
    /// Suites QA runs for `all`; `critical` runs the configured critical ones.
    suites: Result<Vec<SuiteResult>, String>,
    baseline: Box<dyn FnMut() -> Result<MetricSample, String>>,
    /// Metrics by minute since DEPLOY started.
    metrics: Answer<Result<MetricSample, String>>,
    health: Answer<Result<bool, String>>,
    incidents: Answer<Vec<Incident>>,
    step: StepAnswer,
    notify: NotifyAnswer,
    rollback_restored: bool,
    rollback_verified: bool,
    decisions: Vec<HumanAnswer>,
    /// The production steps and health checks come from the simulated world.
    simulated: bool,
}

impl World {
    /// Everything works and the new version behaves like the old one.
    fn good() -> World {
        World {
            prepare: Ok(prepare_report()),
            scan: Ok(ScanReport {
                critical_vulnerabilities: 0,
                findings: vec![],
                simulated: false,
            }),
            staging: Ok(staging_ok()),
            suites: Ok(all_suites()),
            baseline: Box::new(|| Ok(normal())),
            metrics: Box::new(|_| Ok(normal())),
            health: Box::new(|_| Ok(true)),
            incidents: Box::new(|_| vec![]),
            step: Box::new(|_, _| Ok(())),
            notify: Box::new(|_| Ok(())),
            rollback_restored: true,
            rollback_verified: true,
            decisions: vec![],
            simulated: false,
        }
    }

    fn suites_for(&self, selection: SuiteSelection, settings: &Settings) -> Result<Vec<SuiteResult>, String> {
        let suites = self.suites.clone()?;
        Ok(match selection {
            SuiteSelection::All => suites,
            SuiteSelection::Critical => suites
                .into_iter()
                .filter(|s| settings.qa.critical_suites.contains(&s.name))
                .collect(),
        })
    }

    fn rollback_outcome(&self, plan: &RollbackPlan) -> RollbackOutcome {
        let restore = plan
            .restore_version
            .as_ref()
            .map(|v| v.to_string())
            .unwrap_or_else(|| "-".into());
        let restored = self.rollback_restored;
        let verified = self.rollback_verified;
        RollbackOutcome {
            steps: vec![
                (
                    format!("Restore v{restore}"),
                    restored,
                    if restored {
                        String::new()
                    } else {
                        "orchestrator timed out".into()
                    },
                ),
                ("Clear caches".into(), true, String::new()),
                (
                    "Verify rollback".into(),
                    verified,
                    if verified {
                        String::new()
                    } else {
                        "health checks failing".into()
                    },
                ),
            ],
            simulated_steps: vec![],
            restored,
            migrations_reverted: plan.revert_migrations && restored,
            caches_cleared: plan.clear_caches,
            verified,
        }
    }
}

// ---------------------------------------------------------------------------
// The driver
// ---------------------------------------------------------------------------

/// Safety bound on the events of one run.
const EVENT_LIMIT: usize = 20_000;

#[derive(Debug, Clone)]
enum Due {
    Timer(u64),
    Event(Event),
}

struct Run {
    machine: Machine,
    settings: Arc<Settings>,
    now: DateTime<Utc>,
    queue: VecDeque<Effect>,
    due: Vec<(DateTime<Utc>, u64, Due)>,
    seq: u64,
    /// Every fact, in order, from the submission on.
    facts: Vec<Fact>,
    /// Every effect, with the time it was asked for.
    log: Vec<(DateTime<Utc>, Effect)>,
    refusals: Vec<String>,
    finished: usize,
    events: usize,
    /// Commands sent once the run has handled that many events.
    commands: VecDeque<(usize, Event)>,
    /// Production as submitted; nothing else deploys the service meanwhile.
    production: Production,
}

impl Run {
    fn submit(settings: Settings, now: DateTime<Utc>, request: Request, production: Production) -> Run {
        Run::try_submit(settings, now, request, production, None).expect("the request is valid")
    }

    fn try_submit(
        settings: Settings,
        now: DateTime<Utc>,
        request: Request,
        production: Production,
        held: Option<String>,
    ) -> Result<Run, SubmitError> {
        let settings = Arc::new(settings);
        let (machine, out) = Machine::submit(
            DeploymentId(1),
            now,
            request,
            production.clone(),
            settings.clone(),
            held,
        )?;
        let mut run = Run {
            machine,
            settings,
            now,
            queue: VecDeque::new(),
            due: vec![],
            seq: 0,
            facts: vec![],
            log: vec![],
            refusals: vec![],
            finished: 0,
            events: 0,
            commands: VecDeque::new(),
            production,
        };
        run.absorb(out);
        Ok(run)
    }

    fn schedule(&mut self, at: DateTime<Utc>, due: Due) {
        self.seq += 1;
        self.due.push((at, self.seq, due));
    }

    fn absorb(&mut self, out: Output) {
        self.facts.extend(out.facts);
        if let Some(r) = out.refusal {
            self.refusals.push(r);
        }
        for e in out.effects {
            self.log.push((self.now, e.clone()));
            match e {
                Effect::Timer { at, token } => self.schedule(at, Due::Timer(token)),
                Effect::Finished => self.finished += 1,
                other => self.queue.push_back(other),
            }
        }
    }

    fn send(&mut self, event: Event) -> Result<(), String> {
        self.events += 1;
        let out = self
            .machine
            .handle(self.now, event.clone())
            .map_err(|e: IllegalTransition| format!("{e} on {event:?} at {}", self.now))?;
        self.absorb(out);
        Ok(())
    }

    /// Answers one effect the way the world does.
    fn answer(&mut self, world: &mut World, effect: Effect) -> Result<(), String> {
        let event = match effect {
            Effect::Prepare => Event::Prepared(world.prepare.clone()),
            Effect::Scan => Event::Scanned(world.scan.clone()),
            Effect::DeployStaging => Event::Staged(world.staging.clone()),
            Effect::Validate { suites } => Event::Validated(world.suites_for(suites, &self.settings)),
            Effect::Notify(entry) => Event::Notified {
                id: entry.id.clone(),
                result: (world.notify)(&entry),
            },
            Effect::Review { role, criteria } => Event::Reviewed {
                role,
                advice: approval::advise(role, self.settings.agents.get(role).mode, &criteria),
            },
            Effect::AwaitDecision { role, .. } => {
                let (mine, rest): (Vec<_>, Vec<_>) = world.decisions.drain(..).partition(|d| d.role == role);
                world.decisions = rest;
                for d in mine {
                    let event = Event::HumanDecision {
                        role,
                        approve: d.approve,
                        by: d.by,
                        reason: if d.approve {
                            "looks good".into()
                        } else {
                            "not this week".into()
                        },
                    };
                    self.schedule(self.now + Duration::minutes(d.after_minutes), Due::Event(event));
                }
                return Ok(());
            }
            Effect::MeasureBaseline => Event::BaselineMeasured((world.baseline)()),
            Effect::Step { index, step } => Event::StepDone {
                index,
                result: (world.step)(index, &step),
                simulated: world.simulated,
            },
            Effect::Observe { minute, .. } => Event::Observed(Observation {
                metrics: (world.metrics)(minute),
                healthy: (world.health)(minute),
                health_simulated: world.simulated,
                incidents: (world.incidents)(minute),
            }),
            Effect::Rollback(plan) => Event::RolledBack(world.rollback_outcome(&plan)),
            // A single deployment has its service to itself.
            Effect::AcquireSlot => Event::SlotGranted {
                production: self.production.clone(),
            },
            Effect::Timer { .. } | Effect::Finished => unreachable!("never queued"),
        };
        self.send(event)
    }

    /// Processes one pending effect or, when none is pending, the earliest
    /// timer or delayed event. Returns false when nothing is pending at all.
    fn step_once(&mut self, world: &mut World) -> Result<bool, String> {
        if let Some(effect) = self.queue.pop_front() {
            self.answer(world, effect)?;
            return Ok(true);
        }
        let Some(i) = (0..self.due.len()).min_by_key(|&i| (self.due[i].0, self.due[i].1)) else {
            return Ok(false);
        };
        let (at, _, due) = self.due.remove(i);
        self.now = self.now.max(at);
        match due {
            Due::Timer(token) => self.send(Event::Timer(token))?,
            Due::Event(e) => self.send(e)?,
        }
        Ok(true)
    }

    /// Starts the deployment (if not started) and runs it until
    /// `Effect::Finished` or `stop` holds.
    fn run_until(&mut self, world: &mut World, stop: impl Fn(&Machine) -> bool) -> Result<(), String> {
        if self.events == 0 {
            self.send(Event::Start)?;
        }
        while self.finished == 0 && !stop(&self.machine) {
            if self.events > EVENT_LIMIT {
                return Err(format!(
                    "no Finished after {EVENT_LIMIT} events (status {})",
                    self.machine.status()
                ));
            }
            if self.commands.front().is_some_and(|(n, _)| *n <= self.events) {
                let (_, command) = self.commands.pop_front().expect("checked");
                self.send(command)?;
                continue;
            }
            if !self.step_once(world)? {
                return Err(format!(
                    "stuck: nothing pending, status {}, stage {:?}",
                    self.machine.status(),
                    self.machine.stage()
                ));
            }
        }
        Ok(())
    }

    fn try_run(&mut self, world: &mut World) -> Result<Record, String> {
        self.run_until(world, |_| false)?;
        Ok(self.machine.rendered_record())
    }

    fn run(&mut self, world: &mut World) -> Record {
        self.try_run(world).unwrap_or_else(|e| panic!("{e}"))
    }

    fn effects(&self) -> impl Iterator<Item = &Effect> {
        self.log.iter().map(|(_, e)| e)
    }

    fn rollback_plans(&self) -> Vec<RollbackPlan> {
        self.effects()
            .filter_map(|e| match e {
                Effect::Rollback(p) => Some(p.clone()),
                _ => None,
            })
            .collect()
    }
}

/// Submits and runs a deployment to its end.
fn deploy(settings: Settings, at: &str, request: Request, world: &mut World) -> (Run, Record) {
    let mut run = Run::submit(settings, t(at), request, production());
    let record = run.run(world);
    (run, record)
}

fn stages(r: &Record) -> Vec<(Stage, Option<Outcome>)> {
    r.stages.iter().map(|e| (e.stage, e.outcome)).collect()
}

fn started(r: &Record, stage: Stage) -> DateTime<Utc> {
    r.stages
        .iter()
        .find(|e| e.stage == stage)
        .unwrap_or_else(|| panic!("{stage} never started"))
        .started_at
}

fn finished(r: &Record, stage: Stage) -> Option<DateTime<Utc>> {
    r.stages.iter().find(|e| e.stage == stage).and_then(|e| e.finished_at)
}

fn notification_kinds(r: &Record) -> Vec<NotificationKind> {
    r.notifications.iter().map(|n| n.kind).collect()
}

fn escalation_reasons(r: &Record) -> Vec<EscalationReason> {
    r.escalations.iter().map(|e| e.reason).collect()
}

fn approvals(r: &Record) -> Vec<(Role, Decision, String)> {
    r.approvals.iter().map(|a| (a.role, a.decision, a.by.clone())).collect()
}

fn deploy_steps(r: &Record) -> Vec<(String, bool)> {
    r.deploy_log
        .as_ref()
        .map(|l| l.steps.iter().map(|s| (s.step.clone(), s.ok)).collect())
        .unwrap_or_default()
}

fn checkpoints(r: &Record) -> Vec<(u32, CheckpointCheck, bool)> {
    r.monitoring
        .checkpoints
        .iter()
        .map(|c| (c.minute as u32, c.check, c.passed))
        .collect()
}

use Outcome::{Failed, Passed};

const FULL_PASSED: [(Stage, Option<Outcome>); 6] = [
    (Stage::Prepare, Some(Passed)),
    (Stage::Staging, Some(Passed)),
    (Stage::Validate, Some(Passed)),
    (Stage::Approve, Some(Passed)),
    (Stage::Deploy, Some(Passed)),
    (Stage::Monitor, Some(Passed)),
];

const UP_TO_APPROVE: [(Stage, Option<Outcome>); 4] = [
    (Stage::Prepare, Some(Passed)),
    (Stage::Staging, Some(Passed)),
    (Stage::Validate, Some(Passed)),
    (Stage::Approve, Some(Passed)),
];

fn with(prefix: &[(Stage, Option<Outcome>)], rest: &[(Stage, Option<Outcome>)]) -> Vec<(Stage, Option<Outcome>)> {
    prefix.iter().chain(rest).copied().collect()
}

fn canary_steps() -> Vec<(String, bool)> {
    vec![
        ("Backup created".into(), true),
        ("Canary at 5% of traffic, health checks passed".into(), true),
        ("Canary at 25% of traffic, health checks passed".into(), true),
        ("Canary at 50% of traffic, health checks passed".into(), true),
        ("Canary at 100% of traffic, health checks passed".into(), true),
    ]
}

/// Metrics that are normal except for `bad` during minutes `from..to` since DEPLOY started.
fn spike(from: u32, to: u32, bad: MetricSample) -> Answer<Result<MetricSample, String>> {
    Box::new(move |m| Ok(if (from..to).contains(&m) { bad } else { normal() }))
}

// ---------------------------------------------------------------------------
// 1-5: the deployment types and windows
// ---------------------------------------------------------------------------

#[test]
fn standard_canary_happy_path() {
    let (run, r) = deploy(
        Settings::builtin(),
        TUESDAY_IN_WINDOW,
        request(DeploymentType::Standard, None),
        &mut World::good(),
    );

    assert_eq!(r.status, Status::Succeeded);
    assert_eq!(r.strategy, Strategy::Canary, "the default strategy");
    assert_eq!(stages(&r), FULL_PASSED.to_vec());
    assert_eq!(
        approvals(&r),
        vec![(Role::Manager, Decision::Granted, "Manager agent".to_string())]
    );
    assert!(
        r.approvals[0].criteria.iter().all(|c| c.met),
        "{:?}",
        r.approvals[0].criteria
    );
    assert_eq!(
        notification_kinds(&r),
        vec![NotificationKind::PreDeployment, NotificationKind::PostDeployment]
    );
    assert!(r.notifications.iter().all(|n| n.delivered));
    assert_eq!(
        checkpoints(&r),
        vec![
            (5, CheckpointCheck::InitialHealth, true),
            (15, CheckpointCheck::ErrorRate, true),
            (30, CheckpointCheck::Performance, true),
            (60, CheckpointCheck::AllSystemsNormal, true),
        ]
    );
    assert_eq!(r.production_version, Some(v("2.4.1")));
    assert_eq!(r.previous_version, Some(v("2.4.0")));
    assert!(r.alerts.is_empty() && r.escalations.is_empty() && r.issues.is_empty());
    assert!(r.rollback.is_none());
    assert_eq!(deploy_steps(&r), canary_steps());

    // Timing: DEPLOY at once (inside the window), 3 canary analyses of 5
    // minutes, then 60 minutes of monitoring.
    assert_eq!(started(&r, Stage::Deploy), t(TUESDAY_IN_WINDOW));
    assert_eq!(started(&r, Stage::Monitor), t("2026-12-01T10:20:00Z"));
    assert_eq!(finished(&r, Stage::Monitor), Some(t("2026-12-01T11:20:00Z")));
    assert_eq!(r.finished_at, Some(t("2026-12-01T11:20:00Z")));
    assert_eq!(r.monitoring.baseline, Some(normal()));

    assert!(r.markdown.contains("### Status: SUCCESS"), "{}", r.markdown);
    assert!(r.markdown.contains("## Deployment Checklist"));
    assert!(r.markdown.contains("## Production Deployment"));
    assert_eq!(run.finished, 1);
    assert!(run.refusals.is_empty());
}

#[test]
fn standard_outside_the_window_waits_for_tuesday_ten() {
    // 2026-11-30 is a Monday.
    let (run, r) = deploy(
        Settings::builtin(),
        "2026-11-30T14:00:00Z",
        request(DeploymentType::Standard, None),
        &mut World::good(),
    );

    assert_eq!(r.status, Status::Succeeded);
    assert_eq!(stages(&r), FULL_PASSED.to_vec());
    assert_eq!(finished(&r, Stage::Approve), Some(t("2026-11-30T14:00:00Z")));
    assert_eq!(started(&r, Stage::Deploy), t("2026-12-01T10:00:00Z"));
    assert!(run.facts.iter().any(
        |f| matches!(f, Fact::Status { status: Status::WaitingForWindow, at, .. } if *at == t("2026-11-30T14:00:00Z"))
    ));
    assert!(
        r.timeline.iter().any(|e| e
            .event
            .contains("Waiting for deployment window until 2026-12-01T10:00:00")),
        "{:#?}",
        r.timeline
    );
    // The stakeholders were told the planned time.
    assert!(
        r.notifications[0].subject.contains("2026-12-01 10:00"),
        "{}",
        r.notifications[0].subject
    );
}

#[test]
fn hotfix_needs_manager_and_security_runs_critical_suites_and_bypasses_windows() {
    // 2026-12-04 is a Friday, outside every window.
    let at = "2026-12-04T16:30:00Z";
    let (run, r) = deploy(
        Settings::builtin(),
        at,
        request(DeploymentType::Hotfix, None),
        &mut World::good(),
    );

    assert_eq!(r.status, Status::Succeeded);
    assert_eq!(stages(&r), FULL_PASSED.to_vec());
    assert_eq!(
        approvals(&r),
        vec![
            (Role::Manager, Decision::Granted, "Manager agent".to_string()),
            (Role::Security, Decision::Granted, "Security agent".to_string()),
        ]
    );
    assert!(r.approvals[1]
        .criteria
        .iter()
        .any(|c| c.criterion == "Security review passed" && c.met));
    let selections: Vec<SuiteSelection> = run
        .effects()
        .filter_map(|e| match e {
            Effect::Validate { suites } => Some(*suites),
            _ => None,
        })
        .collect();
    assert_eq!(selections, vec![SuiteSelection::Critical]);
    let suites: Vec<&str> = r
        .validation
        .as_ref()
        .unwrap()
        .suites
        .iter()
        .map(|s| s.name.as_str())
        .collect();
    assert_eq!(suites, vec!["unit", "smoke"]);
    assert_eq!(
        checkpoints(&r),
        vec![
            (5, CheckpointCheck::InitialHealth, true),
            (15, CheckpointCheck::ErrorRate, true),
            (30, CheckpointCheck::Performance, true),
        ]
    );
    assert_eq!(
        started(&r, Stage::Deploy),
        t(at),
        "a hotfix deploys at once, even on a Friday"
    );
    let monitor = r.stages.iter().find(|e| e.stage == Stage::Monitor).unwrap();
    assert_eq!(monitor.finished_at.unwrap() - monitor.started_at, Duration::minutes(30));
    assert!(!run.facts.iter().any(|f| matches!(
        f,
        Fact::Status {
            status: Status::WaitingForWindow,
            ..
        }
    )));
    assert!(
        r.notifications[0].subject.starts_with("[Hotfix]"),
        "{}",
        r.notifications[0].subject
    );
    assert_eq!(r.production_version, Some(v("2.4.1")));
}

#[test]
fn rollback_type_approves_then_restores_the_previous_version() {
    let prod = Production {
        current_version: Some(v("2.4.1")),
        previous_version: Some(v("2.4.0")),
        active_colour: Colour::Green,
        observed: None,
    };
    let mut run = Run::submit(
        Settings::builtin(),
        t("2026-12-05T03:00:00Z"),
        request(DeploymentType::Rollback, None),
        prod,
    );
    let r = run.run(&mut World::good());

    assert_eq!(r.status, Status::Succeeded);
    assert_eq!(
        stages(&r),
        vec![(Stage::Approve, Some(Passed)), (Stage::Rollback, Some(Passed))]
    );
    assert_eq!(
        approvals(&r),
        vec![(Role::Devops, Decision::Granted, "DevOps agent".to_string())]
    );
    assert_eq!(r.version, Some(v("2.4.0")));
    assert_eq!(
        r.production_version,
        Some(v("2.4.0")),
        "production = the restored version"
    );
    let rb = r.rollback.as_ref().unwrap();
    assert_eq!(rb.trigger, RollbackTrigger::Manual);
    assert_eq!(rb.restored_version, Some(v("2.4.0")));
    assert!(rb.verified);
    let plans = run.rollback_plans();
    assert_eq!(plans.len(), 1);
    assert_eq!(plans[0].restore_version, Some(v("2.4.0")));
    assert_eq!(plans[0].from_version, Some(v("2.4.1")));
    assert_eq!(notification_kinds(&r), vec![NotificationKind::Rollback]);
    assert!(r.deploy_log.is_none());
    assert_eq!(r.finished_at, Some(t("2026-12-05T03:00:00Z")), "immediate, no window");
}

#[test]
fn scheduled_outside_a_window_is_rejected_at_start() {
    let mut req = request(DeploymentType::Scheduled, None);
    req.scheduled_for = Some(t("2026-12-04T10:30:00Z")); // a Friday
    let (run, r) = deploy(Settings::builtin(), "2026-12-01T09:00:00Z", req, &mut World::good());
    assert_eq!(r.status, Status::Rejected);
    assert!(r.stages.is_empty(), "{:?}", r.stages);
    assert_eq!(r.issues.len(), 1);
    assert!(
        r.issues[0].contains("deployments are not allowed on Fridays"),
        "{}",
        r.issues[0]
    );
    assert_eq!(run.finished, 1);

    let mut req = request(DeploymentType::Scheduled, None);
    req.scheduled_for = Some(t("2026-12-02T14:00:00Z")); // Wednesday afternoon
    let (_, r) = deploy(Settings::builtin(), "2026-12-01T09:00:00Z", req, &mut World::good());
    assert_eq!(r.status, Status::Rejected);
    assert!(
        r.issues[0].contains("outside every allowed deployment window"),
        "{}",
        r.issues[0]
    );
}

#[test]
fn scheduled_inside_a_window_deploys_exactly_at_scheduled_for() {
    let mut req = request(DeploymentType::Scheduled, None);
    req.scheduled_for = Some(t("2026-12-02T10:30:00Z"));
    let (_, r) = deploy(Settings::builtin(), "2026-12-01T09:00:00Z", req, &mut World::good());
    assert_eq!(r.status, Status::Succeeded);
    assert_eq!(stages(&r), FULL_PASSED.to_vec());
    assert_eq!(started(&r, Stage::Deploy), t("2026-12-02T10:30:00Z"));
    assert!(r.notifications[0].subject.starts_with("[Scheduled]"));
    assert!(
        r.notifications[0].subject.contains("2026-12-02 10:30"),
        "{}",
        r.notifications[0].subject
    );
}

#[test]
fn submission_checks_the_schedule_and_the_version() {
    let s = || Settings::builtin();
    let now = t(TUESDAY_IN_WINDOW);
    let err = |req, prod| Run::try_submit(s(), now, req, prod, None).err();
    assert_eq!(
        err(request(DeploymentType::Scheduled, None), production()),
        Some(SubmitError::MissingSchedule)
    );
    let mut req = request(DeploymentType::Standard, None);
    req.scheduled_for = Some(now);
    assert_eq!(err(req, production()), Some(SubmitError::UnexpectedSchedule));
    let mut req = request(DeploymentType::Standard, None);
    req.version = None;
    assert_eq!(
        err(req, production()),
        Some(SubmitError::MissingVersion(DeploymentType::Standard))
    );
    let first = Production {
        current_version: Some(v("1.0.0")),
        previous_version: None,
        active_colour: Colour::Blue,
        observed: None,
    };
    assert!(matches!(
        err(request(DeploymentType::Rollback, None), first),
        Some(SubmitError::NothingToRestore(_))
    ));
}

// ---------------------------------------------------------------------------
// 6-10: monitoring, rollback and escalation
// ---------------------------------------------------------------------------

#[test]
fn error_rate_over_five_percent_rolls_back() {
    let mut world = World::good();
    world.metrics = spike(
        12,
        13,
        MetricSample {
            error_rate: 0.07,
            ..normal()
        },
    );
    let (run, r) = deploy(
        Settings::builtin(),
        TUESDAY_IN_WINDOW,
        request(DeploymentType::Standard, None),
        &mut world,
    );

    assert_eq!(r.status, Status::RolledBack);
    assert_eq!(
        stages(&r),
        with(
            &UP_TO_APPROVE,
            &[(Stage::Deploy, Some(Failed)), (Stage::Rollback, Some(Passed))]
        )
    );
    let rb = r.rollback.as_ref().unwrap();
    assert_eq!(rb.trigger, RollbackTrigger::ErrorRate);
    assert_eq!(
        rb.initiated_at,
        t("2026-12-01T10:17:00Z"),
        "minute 12 after DEPLOY started"
    );
    assert_eq!(rb.restored_version, Some(v("2.4.0")));
    assert_eq!(r.alerts.len(), 1, "{:?}", r.alerts);
    let a = &r.alerts[0];
    assert_eq!(
        (a.metric, a.action, a.value, a.threshold),
        (Metric::ErrorRate, AlertAction::Rollback, 0.07, 0.05)
    );
    assert_eq!(a.stage, Stage::Deploy);
    assert_eq!(
        escalation_reasons(&r),
        vec![EscalationReason::UnexpectedProductionErrors]
    );
    assert_eq!(r.production_version, Some(v("2.4.0")));
    assert_eq!(
        notification_kinds(&r),
        vec![
            NotificationKind::PreDeployment,
            NotificationKind::Escalation,
            NotificationKind::Rollback
        ]
    );
    let plans = run.rollback_plans();
    assert_eq!(plans.len(), 1);
    assert_eq!(plans[0].traffic_percent, 50, "minute 12 is in the 50% canary analysis");
    assert_eq!(plans[0].restore_version, Some(v("2.4.0")));
    assert!(!plans[0].revert_migrations);
    assert!(r.markdown.contains("### Status: ROLLBACK"));
}

#[test]
fn p99_latency_over_three_times_baseline_rolls_back() {
    let mut world = World::good();
    world.metrics = spike(
        20,
        100,
        MetricSample {
            latency_p99_ms: 350.0,
            ..normal()
        },
    );
    let (_, r) = deploy(
        Settings::builtin(),
        TUESDAY_IN_WINDOW,
        request(DeploymentType::Standard, None),
        &mut world,
    );

    assert_eq!(r.status, Status::RolledBack);
    assert_eq!(
        stages(&r),
        with(
            &UP_TO_APPROVE,
            &[
                (Stage::Deploy, Some(Passed)),
                (Stage::Monitor, Some(Failed)),
                (Stage::Rollback, Some(Passed))
            ]
        )
    );
    assert_eq!(
        r.rollback.as_ref().unwrap().trigger,
        RollbackTrigger::SeverePerformanceDegradation
    );
    assert_eq!(r.alerts.len(), 1);
    assert_eq!(
        (
            r.alerts[0].metric,
            r.alerts[0].action,
            r.alerts[0].value,
            r.alerts[0].threshold
        ),
        (Metric::LatencyP99, AlertAction::Rollback, 350.0, 300.0)
    );
    assert_eq!(r.production_version, Some(v("2.4.0")));
}

#[test]
fn p99_latency_between_two_and_three_times_baseline_only_investigates() {
    let mut world = World::good();
    world.metrics = spike(
        20,
        26,
        MetricSample {
            latency_p99_ms: 250.0,
            ..normal()
        },
    );
    let (_, r) = deploy(
        Settings::builtin(),
        TUESDAY_IN_WINDOW,
        request(DeploymentType::Standard, None),
        &mut world,
    );

    assert_eq!(r.status, Status::Succeeded);
    assert_eq!(stages(&r), FULL_PASSED.to_vec());
    assert!(r.rollback.is_none());
    assert_eq!(r.alerts.len(), 1, "{:?}", r.alerts);
    assert_eq!(
        (
            r.alerts[0].metric,
            r.alerts[0].action,
            r.alerts[0].value,
            r.alerts[0].threshold
        ),
        (Metric::LatencyP99, AlertAction::Investigate, 250.0, 200.0)
    );
    assert_eq!(r.alerts[0].stage, Stage::Monitor);
    assert_eq!(escalation_reasons(&r), vec![EscalationReason::PerformanceDegradation]);
    assert_eq!(r.production_version, Some(v("2.4.1")));
    assert_eq!(
        notification_kinds(&r),
        vec![
            NotificationKind::PreDeployment,
            NotificationKind::Escalation,
            NotificationKind::PostDeployment
        ]
    );
}

#[test]
fn four_unavailable_metric_reads_escalate_without_rollback_or_promotion() {
    let mut world = World::good();
    world.metrics = Box::new(|_| Err("metrics backend timed out".into()));
    let (run, r) = deploy(
        Settings::builtin(),
        TUESDAY_IN_WINDOW,
        request(DeploymentType::Standard, None),
        &mut world,
    );

    assert_eq!(r.status, Status::Escalated);
    assert_eq!(escalation_reasons(&r), vec![EscalationReason::MetricsInconclusive]);
    assert!(r.rollback.is_none());
    assert!(run.rollback_plans().is_empty());
    assert_eq!(stages(&r), with(&UP_TO_APPROVE, &[(Stage::Deploy, Some(Failed))]));
    // Held at the first canary step: never promoted.
    assert_eq!(deploy_steps(&r), canary_steps()[..2].to_vec());
    assert_eq!(r.production_version, Some(v("2.4.0")));
    assert_eq!(r.monitoring.samples.len(), 4);
    assert!(r
        .monitoring
        .samples
        .iter()
        .all(|s| s.sample.is_none() && s.error.is_some() && s.traffic_percent == 5));
    assert_eq!(r.finished_at, Some(t("2026-12-01T10:09:00Z")));
    assert!(
        r.escalations[0].detail.contains("holding traffic at 5%"),
        "{}",
        r.escalations[0].detail
    );
}

#[test]
fn three_unavailable_reads_then_a_good_one_do_not_escalate() {
    let mut world = World::good();
    world.metrics = Box::new(|m| {
        if (1..4).contains(&m) {
            Err("no data".into())
        } else {
            Ok(normal())
        }
    });
    let (_, r) = deploy(
        Settings::builtin(),
        TUESDAY_IN_WINDOW,
        request(DeploymentType::Standard, None),
        &mut world,
    );
    assert_eq!(r.status, Status::Succeeded);
    assert!(r.escalations.is_empty());
}

fn irreversible_world() -> World {
    let mut world = World::good();
    world.prepare = Ok(PrepareReport {
        migrations: MigrationKind::Irreversible,
        ..prepare_report()
    });
    world.metrics = spike(
        12,
        100,
        MetricSample {
            error_rate: 0.09,
            ..normal()
        },
    );
    world
}

#[test]
fn irreversible_migration_freezes_instead_of_rolling_back() {
    let (run, r) = deploy(
        Settings::builtin(),
        TUESDAY_IN_WINDOW,
        request(DeploymentType::Standard, None),
        &mut irreversible_world(),
    );

    assert_eq!(r.status, Status::Escalated);
    assert!(
        escalation_reasons(&r).contains(&EscalationReason::IrreversibleMigration),
        "{:?}",
        r.escalations
    );
    assert!(!r.stages.iter().any(|e| e.stage == Stage::Rollback));
    assert_eq!(stages(&r), with(&UP_TO_APPROVE, &[(Stage::Deploy, Some(Failed))]));
    assert!(r.rollback.is_none());
    assert!(run.rollback_plans().is_empty());
    assert!(deploy_steps(&r).contains(&("Database migrations run (irreversible)".to_string(), true)));
    assert!(
        r.issues.iter().any(|i| i.contains("rollback triggered (error_rate)")),
        "{:?}",
        r.issues
    );
}

#[test]
fn irreversible_migration_rolls_back_when_configured_to() {
    let mut settings = Settings::builtin();
    settings.rollback.on_irreversible_migration = IrreversiblePolicy::Rollback;
    let (run, r) = deploy(
        settings,
        TUESDAY_IN_WINDOW,
        request(DeploymentType::Standard, None),
        &mut irreversible_world(),
    );

    assert_eq!(r.status, Status::RolledBack);
    assert_eq!(
        stages(&r),
        with(
            &UP_TO_APPROVE,
            &[(Stage::Deploy, Some(Failed)), (Stage::Rollback, Some(Passed))]
        )
    );
    assert_eq!(r.rollback.as_ref().unwrap().trigger, RollbackTrigger::ErrorRate);
    let plans = run.rollback_plans();
    assert_eq!(plans.len(), 1);
    assert!(
        !plans[0].revert_migrations,
        "an irreversible migration is never reverted"
    );
    assert!(!r.rollback.as_ref().unwrap().migrations_reverted);
    assert!(!escalation_reasons(&r).contains(&EscalationReason::IrreversibleMigration));
}

#[test]
fn reversible_migrations_are_reverted_by_the_rollback() {
    let mut world = irreversible_world();
    world.prepare = Ok(PrepareReport {
        migrations: MigrationKind::Reversible,
        ..prepare_report()
    });
    let (run, r) = deploy(
        Settings::builtin(),
        TUESDAY_IN_WINDOW,
        request(DeploymentType::Standard, None),
        &mut world,
    );
    assert_eq!(r.status, Status::RolledBack);
    assert!(run.rollback_plans()[0].revert_migrations);
    assert!(r.rollback.as_ref().unwrap().migrations_reverted);
}

#[test]
fn a_failed_rollback_escalates() {
    let mut world = World::good();
    world.metrics = spike(
        12,
        100,
        MetricSample {
            error_rate: 0.2,
            ..normal()
        },
    );
    world.rollback_restored = false;
    world.rollback_verified = false;
    let (_, r) = deploy(
        Settings::builtin(),
        TUESDAY_IN_WINDOW,
        request(DeploymentType::Standard, None),
        &mut world,
    );

    assert_eq!(r.status, Status::Escalated);
    assert_eq!(
        escalation_reasons(&r),
        vec![
            EscalationReason::UnexpectedProductionErrors,
            EscalationReason::UnableToRollback
        ]
    );
    assert_eq!(
        stages(&r),
        with(
            &UP_TO_APPROVE,
            &[(Stage::Deploy, Some(Failed)), (Stage::Rollback, Some(Failed))]
        )
    );
    let rb = r.rollback.as_ref().unwrap();
    assert_eq!(rb.restored_version, None);
    assert!(!rb.verified);
    assert!(rb.completed_at.is_some());
    assert!(
        r.issues
            .iter()
            .any(|i| i.contains("rollback failed") && i.contains("orchestrator timed out")),
        "{:?}",
        r.issues
    );
    // No rollback notice claims success; the escalations went out.
    assert!(!notification_kinds(&r).contains(&NotificationKind::Rollback));
}

// ---------------------------------------------------------------------------
// 11: human approval
// ---------------------------------------------------------------------------

fn manager_human() -> Settings {
    let mut s = Settings::builtin();
    s.agents.manager.mode = ApprovalMode::Human;
    s
}

#[test]
fn a_submitter_cannot_approve_their_own_deployment() {
    let mut world = World::good();
    world.decisions = vec![human(Role::Manager, true, "alice"), human(Role::Manager, true, "bob")];
    let (run, r) = deploy(
        manager_human(),
        TUESDAY_IN_WINDOW,
        request(DeploymentType::Standard, None),
        &mut world,
    );

    assert_eq!(
        approvals(&r),
        vec![
            (Role::Manager, Decision::Refused, "alice".to_string()),
            (Role::Manager, Decision::Granted, "bob".to_string())
        ]
    );
    assert_eq!(run.refusals.len(), 1);
    assert!(run.refusals[0].contains("separation of duties"), "{}", run.refusals[0]);
    assert_eq!(r.status, Status::Succeeded);
    assert_eq!(stages(&r), FULL_PASSED.to_vec());
    assert!(run.facts.iter().any(|f| matches!(
        f,
        Fact::Status {
            status: Status::AwaitingApproval,
            ..
        }
    )));
    let deadlines: Vec<_> = run
        .effects()
        .filter_map(|e| match e {
            Effect::AwaitDecision { role, deadline } => Some((*role, *deadline)),
            _ => None,
        })
        .collect();
    assert_eq!(
        deadlines,
        vec![(Role::Manager, t(TUESDAY_IN_WINDOW) + Duration::minutes(1440))]
    );
}

#[test]
fn no_human_decision_times_out_and_rejects() {
    let (run, r) = deploy(
        manager_human(),
        TUESDAY_IN_WINDOW,
        request(DeploymentType::Standard, None),
        &mut World::good(),
    );

    assert_eq!(r.status, Status::Rejected);
    assert_eq!(
        approvals(&r),
        vec![(Role::Manager, Decision::TimedOut, "Manager agent".to_string())]
    );
    let deadline = t(TUESDAY_IN_WINDOW) + Duration::minutes(1440);
    assert_eq!(r.approvals[0].at, deadline);
    assert_eq!(r.finished_at, Some(deadline));
    assert_eq!(with(&UP_TO_APPROVE[..3], &[(Stage::Approve, Some(Failed))]), stages(&r));
    assert!(
        r.issues.iter().any(|i| i.contains("timed out after 24 h")),
        "{:?}",
        r.issues
    );
    assert!(r.deploy_log.is_none());
    assert_eq!(run.finished, 1);
}

#[test]
fn a_human_rejection_rejects() {
    let mut world = World::good();
    world.decisions = vec![HumanAnswer {
        after_minutes: 30,
        ..human(Role::Manager, false, "bob")
    }];
    let (_, r) = deploy(
        manager_human(),
        TUESDAY_IN_WINDOW,
        request(DeploymentType::Standard, None),
        &mut world,
    );

    assert_eq!(r.status, Status::Rejected);
    assert_eq!(
        approvals(&r),
        vec![(Role::Manager, Decision::Denied, "bob".to_string())]
    );
    assert_eq!(r.finished_at, Some(t("2026-12-01T10:35:00Z")));
    assert_eq!(with(&UP_TO_APPROVE[..3], &[(Stage::Approve, Some(Failed))]), stages(&r));
    assert!(r.deploy_log.is_none());
}

#[test]
fn one_person_cannot_grant_two_roles_of_a_hotfix() {
    let mut s = Settings::builtin();
    s.agents.manager.mode = ApprovalMode::Human;
    s.agents.security.mode = ApprovalMode::Human;
    let mut world = World::good();
    world.decisions = vec![
        human(Role::Manager, true, "carol"),
        human(Role::Security, true, "carol"),
        HumanAnswer {
            after_minutes: 10,
            ..human(Role::Security, true, "dave")
        },
    ];
    let (run, r) = deploy(s, TUESDAY_IN_WINDOW, request(DeploymentType::Hotfix, None), &mut world);

    assert_eq!(
        approvals(&r),
        vec![
            (Role::Manager, Decision::Granted, "carol".to_string()),
            (Role::Security, Decision::Refused, "carol".to_string()),
            (Role::Security, Decision::Granted, "dave".to_string()),
        ]
    );
    assert_eq!(run.refusals.len(), 1);
    assert!(
        run.refusals[0].contains("already approved as manager"),
        "{}",
        run.refusals[0]
    );
    assert_eq!(r.status, Status::Succeeded);
    assert_eq!(started(&r, Stage::Deploy), t("2026-12-01T10:15:00Z"));
}

fn decide(run: &mut Run, role: Role, by: &str) -> Output {
    let event = Event::HumanDecision {
        role,
        approve: true,
        by: by.into(),
        reason: "ok".into(),
    };
    run.machine.handle(run.now, event).unwrap()
}

#[test]
fn a_pending_approval_is_in_the_record_until_a_person_decides() {
    let mut s = Settings::builtin();
    s.agents.manager.mode = ApprovalMode::Human;
    s.agents.security.mode = ApprovalMode::Human;
    let mut run = Run::submit(
        s,
        t(TUESDAY_IN_WINDOW),
        request(DeploymentType::Hotfix, None),
        production(),
    );
    let mut world = World::good();
    run.run_until(&mut world, |m| m.record().pending_approvals.len() == 2)
        .unwrap();
    let roles = |run: &Run| -> Vec<Role> { run.machine.record().pending_approvals.iter().map(|p| p.role).collect() };
    assert_eq!(roles(&run), vec![Role::Manager, Role::Security]);
    let p = &run.machine.record().pending_approvals[0];
    assert_eq!(p.deadline - p.requested_at, Duration::minutes(1440));

    // The submitter's own attempt is refused and changes nothing pending.
    let out = decide(&mut run, Role::Manager, "alice");
    assert!(out.refusal.is_some(), "{out:?}");
    run.absorb(out);
    assert_eq!(roles(&run), vec![Role::Manager, Role::Security]);
    let md = run.machine.rendered_record().markdown;
    assert!(!md.contains("REFUSED"), "{md}");
    assert_eq!(md.matches("### Approval: PENDING").count(), 2, "{md}");
    assert!(md.contains("### Refused Attempts\n- "), "{md}");

    let out = decide(&mut run, Role::Manager, "bob");
    run.absorb(out);
    assert_eq!(roles(&run), vec![Role::Security]);
    let out = decide(&mut run, Role::Security, "carol");
    run.absorb(out);
    assert!(run.machine.record().pending_approvals.is_empty());
    // The record rebuilt from its facts agrees.
    let replayed = Record::replay(&run.facts).expect("a record");
    assert_eq!(replayed.pending_approvals, run.machine.record().pending_approvals);
}

#[test]
fn a_decision_for_a_role_not_awaiting_one_is_refused() {
    let mut run = Run::submit(
        manager_human(),
        t(TUESDAY_IN_WINDOW),
        request(DeploymentType::Standard, None),
        production(),
    );
    let mut world = World::good();
    run.run_until(&mut world, |m| m.status() == Status::AwaitingApproval)
        .unwrap();
    // Standard deployments need no security approval.
    let out = decide(&mut run, Role::Security, "bob");
    assert!(
        out.refusal
            .as_deref()
            .is_some_and(|r| r.contains("no security decision is pending")),
        "{out:?}"
    );
    assert!(out.facts.is_empty());
}

/// A decision sent when no decision is pending at all (before APPROVE, or
/// after the deployment ended) must be refused like any other command the
/// machine cannot take; it is silently dropped instead (see the report).
#[test]
fn a_decision_outside_the_approval_stage_is_refused() {
    let mut run = Run::submit(
        manager_human(),
        t(TUESDAY_IN_WINDOW),
        request(DeploymentType::Standard, None),
        production(),
    );
    let mut world = World::good();
    world.decisions = vec![human(Role::Manager, true, "bob")];
    run.run_until(&mut world, |m| m.stage() == Some(Stage::Validate))
        .unwrap();
    let early = decide(&mut run, Role::Manager, "carol");
    assert!(early.facts.is_empty());
    run.absorb(early.clone());
    let r = run.run(&mut world);
    assert_eq!(r.status, Status::Succeeded);
    let late = decide(&mut run, Role::Manager, "dave");
    assert!(late.facts.is_empty());
    assert!(
        early.refusal.is_some(),
        "a decision during VALIDATE was silently accepted: {early:?}"
    );
    assert!(
        late.refusal.is_some(),
        "a decision after the deployment ended was silently accepted: {late:?}"
    );
}

// ---------------------------------------------------------------------------
// 12: failing stages
// ---------------------------------------------------------------------------

#[test]
fn failing_prepare_fails_the_deployment() {
    let mut world = World::good();
    world.prepare = Ok(PrepareReport {
        tests_passed: false,
        ..prepare_report()
    });
    let (run, r) = deploy(
        Settings::builtin(),
        TUESDAY_IN_WINDOW,
        request(DeploymentType::Standard, None),
        &mut world,
    );
    assert_eq!(r.status, Status::Failed);
    assert_eq!(stages(&r), vec![(Stage::Prepare, Some(Failed))]);
    assert_eq!(r.issues, vec!["tests failed".to_string()]);
    assert!(!r.checklist.is_empty(), "the checklist is still recorded");
    assert_eq!(run.finished, 1);
    assert!(r.markdown.contains("### Status: FAILED"));

    let mut world = World::good();
    world.prepare = Err("artifact registry unreachable".into());
    let (_, r) = deploy(
        Settings::builtin(),
        TUESDAY_IN_WINDOW,
        request(DeploymentType::Standard, None),
        &mut world,
    );
    assert_eq!(r.status, Status::Failed);
    assert_eq!(stages(&r), vec![(Stage::Prepare, Some(Failed))]);
    assert!(r.issues[0].contains("artifact registry unreachable"));
}

#[test]
fn failing_staging_fails_the_deployment() {
    let mut world = World::good();
    world.staging = Ok(StagingReport {
        smoke_tests: false,
        ..staging_ok()
    });
    let (_, r) = deploy(
        Settings::builtin(),
        TUESDAY_IN_WINDOW,
        request(DeploymentType::Standard, None),
        &mut world,
    );
    assert_eq!(r.status, Status::Failed);
    assert_eq!(
        stages(&r),
        vec![(Stage::Prepare, Some(Passed)), (Stage::Staging, Some(Failed))]
    );
    assert_eq!(r.issues, vec!["smoke tests failed".to_string()]);
    assert!(r.validation.is_none() && r.approvals.is_empty() && r.deploy_log.is_none());
}

#[test]
fn failing_validation_fails_the_deployment() {
    let mut world = World::good();
    world.suites = Ok(vec![suite("unit", 150, 0, 2), suite("e2e", 18, 2, 1)]);
    let (_, r) = deploy(
        Settings::builtin(),
        TUESDAY_IN_WINDOW,
        request(DeploymentType::Standard, None),
        &mut world,
    );
    assert_eq!(r.status, Status::Failed);
    assert_eq!(
        stages(&r),
        vec![
            (Stage::Prepare, Some(Passed)),
            (Stage::Staging, Some(Passed)),
            (Stage::Validate, Some(Failed))
        ]
    );
    assert!(r.issues[0].contains("e2e: 2 failed"), "{:?}", r.issues);
    assert!(r.approvals.is_empty() && r.notifications.is_empty());
}

/// A world whose security scan finds `n` critical vulnerabilities.
fn with_critical_vulnerabilities(n: u32) -> World {
    let mut world = World::good();
    world.scan = Ok(ScanReport {
        critical_vulnerabilities: n,
        findings: vec![format!("CVE-2026-000{n}")],
        simulated: false,
    });
    world
}

#[test]
fn critical_vulnerabilities_deny_approval() {
    let mut world = with_critical_vulnerabilities(2);
    let (_, r) = deploy(
        Settings::builtin(),
        TUESDAY_IN_WINDOW,
        request(DeploymentType::Standard, None),
        &mut world,
    );
    assert_eq!(r.status, Status::Rejected);
    assert_eq!(
        approvals(&r),
        vec![(Role::Manager, Decision::Denied, "Manager agent".to_string())]
    );
    assert!(
        r.approvals[0].reason.contains("No blocking issues"),
        "{}",
        r.approvals[0].reason
    );
    assert_eq!(with(&UP_TO_APPROVE[..3], &[(Stage::Approve, Some(Failed))]), stages(&r));
}

#[test]
fn every_approver_of_a_hotfix_records_its_decision_before_a_denial_rejects() {
    let mut world = with_critical_vulnerabilities(1);
    let (run, r) = deploy(
        Settings::builtin(),
        TUESDAY_IN_WINDOW,
        request(DeploymentType::Hotfix, None),
        &mut world,
    );
    assert_eq!(r.status, Status::Rejected);
    // Both roles were asked at once, and both decisions are in the record with their criteria.
    let asked: Vec<Role> = run
        .log
        .iter()
        .filter_map(|(_, e)| match e {
            Effect::Review { role, .. } => Some(*role),
            _ => None,
        })
        .collect();
    assert_eq!(asked, vec![Role::Manager, Role::Security]);
    assert_eq!(
        approvals(&r),
        vec![
            (Role::Manager, Decision::Denied, "Manager agent".to_string()),
            (Role::Security, Decision::Denied, "Security agent".to_string()),
        ]
    );
    let security = &r.approvals[1];
    assert!(
        security.reason.contains("Security review passed"),
        "{}",
        security.reason
    );
    let owned = security
        .criteria
        .iter()
        .find(|c| c.criterion == "Security review passed")
        .expect("the Security review's own criterion is recorded with its decision");
    assert!(!owned.met && owned.detail.contains("1 critical"), "{owned:?}");
    // The rejection names every denial.
    let approve = r
        .stages
        .iter()
        .find(|s| s.stage == Stage::Approve)
        .expect("APPROVE ran");
    assert_eq!(approve.outcome, Some(Failed));
    let why = r.issues.join("\n");
    assert!(
        why.contains("Manager denied") && why.contains("Security denied"),
        "{why}"
    );
}

#[test]
fn a_denial_does_not_wait_for_a_person_still_asked() {
    let mut s = Settings::builtin();
    s.agents.manager.mode = ApprovalMode::Human;
    // Every criterion holds, so the Manager's agent asks a person; then the Security agent
    // denies (as its own review would on a finding the scan missed), and the release is
    // rejected at once, without waiting for the person.
    let mut world = World::good();
    let mut run = Run::submit(
        s,
        t(TUESDAY_IN_WINDOW),
        request(DeploymentType::Hotfix, None),
        production(),
    );
    run.run_until(&mut world, |m| m.record().pending_approvals.len() == 1)
        .unwrap();
    let started = run.now;
    let out = run
        .machine
        .handle(
            run.now,
            Event::Reviewed {
                role: Role::Security,
                advice: approval::Advice::Deny {
                    by: "Security agent".into(),
                    reason: "criteria not met: Security review passed".into(),
                },
            },
        )
        .unwrap();
    run.absorb(out);
    let r = run.machine.record().clone();
    assert_eq!(r.status, Status::Rejected, "{:?}", r.issues);
    assert_eq!(run.now, started, "rejected at once, not at the person's deadline");
    // The person's deadline no longer fires: no timed-out decision is recorded later.
    run.run(&mut world);
    assert_eq!(
        approvals(run.machine.record()),
        vec![(Role::Security, Decision::Denied, "Security agent".to_string())]
    );
}

#[test]
fn an_undelivered_pre_deployment_notice_denies_approval() {
    let mut world = World::good();
    world.notify = Box::new(|n| {
        if n.kind == NotificationKind::PreDeployment {
            Err("chat is down".into())
        } else {
            Ok(())
        }
    });
    let (_, r) = deploy(
        Settings::builtin(),
        TUESDAY_IN_WINDOW,
        request(DeploymentType::Standard, None),
        &mut world,
    );
    assert_eq!(r.status, Status::Rejected);
    assert!(
        r.approvals[0].reason.contains("Stakeholder notification sent"),
        "{}",
        r.approvals[0].reason
    );
    assert!(!r.notifications[0].delivered);
    assert_eq!(r.notifications[0].error.as_deref(), Some("chat is down"));
}

// ---------------------------------------------------------------------------
// 13: strategies
// ---------------------------------------------------------------------------

#[test]
fn blue_green_switches_then_decommissions_after_monitoring() {
    let (run, r) = deploy(
        Settings::builtin(),
        TUESDAY_IN_WINDOW,
        request(DeploymentType::Standard, Some(Strategy::BlueGreen)),
        &mut World::good(),
    );
    assert_eq!(r.status, Status::Succeeded);
    assert_eq!(stages(&r), FULL_PASSED.to_vec());
    assert_eq!(
        deploy_steps(&r),
        vec![
            ("Backup created".to_string(), true),
            ("Deployment initiated on inactive environment (green)".to_string(), true),
            ("Health checks passed on green".to_string(), true),
            ("Traffic switched to green".to_string(), true),
            ("Old environment (blue) decommissioned".to_string(), true),
        ]
    );
    let decommission: Vec<_> = run
        .effects()
        .filter_map(|e| match e {
            Effect::Step {
                index,
                step: DeployStep::Decommission { colour },
            } => Some((*index, *colour)),
            _ => None,
        })
        .collect();
    assert_eq!(decommission, vec![(usize::MAX, Colour::Blue)]);
    // No canary analysis: MONITOR starts with DEPLOY.
    assert_eq!(started(&r, Stage::Monitor), t(TUESDAY_IN_WINDOW));
    assert_eq!(checkpoints(&r).len(), 4);
}

#[test]
fn rolling_updates_one_instance_at_a_time() {
    let (_, r) = deploy(
        Settings::builtin(),
        TUESDAY_IN_WINDOW,
        request(DeploymentType::Standard, Some(Strategy::Rolling)),
        &mut World::good(),
    );
    assert_eq!(r.status, Status::Succeeded);
    assert_eq!(
        deploy_steps(&r),
        vec![
            ("Backup created".to_string(), true),
            (
                "Instance 1/3 drained, updated, health-checked and restored".to_string(),
                true
            ),
            (
                "Instance 2/3 drained, updated, health-checked and restored".to_string(),
                true
            ),
            (
                "Instance 3/3 drained, updated, health-checked and restored".to_string(),
                true
            ),
        ]
    );
}

#[test]
fn a_rolling_health_check_failure_rolls_back() {
    let mut world = World::good();
    world.step = Box::new(|_, step| match step {
        DeployStep::UpdateInstances { first: 1, .. } => Err("instance 2 failed its health check".into()),
        _ => Ok(()),
    });
    let (run, r) = deploy(
        Settings::builtin(),
        TUESDAY_IN_WINDOW,
        request(DeploymentType::Standard, Some(Strategy::Rolling)),
        &mut world,
    );
    assert_eq!(r.status, Status::RolledBack);
    assert_eq!(
        stages(&r),
        with(
            &UP_TO_APPROVE,
            &[(Stage::Deploy, Some(Failed)), (Stage::Rollback, Some(Passed))]
        )
    );
    assert_eq!(
        r.rollback.as_ref().unwrap().trigger,
        RollbackTrigger::CriticalFunctionalityBroken
    );
    // A failed step is logged under its title, not as done.
    let instance = |first| DeployStep::UpdateInstances {
        first,
        count: 1,
        total: 3,
    };
    assert_eq!(
        deploy_steps(&r),
        vec![
            (DeployStep::Backup.describe(), true),
            (instance(0).describe(), true),
            (instance(1).title(), false),
        ]
    );
    assert_eq!(
        instance(0).describe(),
        "Instance 1/3 drained, updated, health-checked and restored"
    );
    assert_eq!(run.rollback_plans()[0].traffic_percent, 33);
    assert_eq!(run.rollback_plans()[0].strategy, Strategy::Rolling);
    assert_eq!(r.production_version, Some(v("2.4.0")));
}

#[test]
fn a_failing_production_health_check_rolls_back() {
    let mut world = World::good();
    world.health = Box::new(|m| Ok(m != 30));
    let (_, r) = deploy(
        Settings::builtin(),
        TUESDAY_IN_WINDOW,
        request(DeploymentType::Standard, None),
        &mut world,
    );
    assert_eq!(r.status, Status::RolledBack);
    assert_eq!(
        r.rollback.as_ref().unwrap().trigger,
        RollbackTrigger::CriticalFunctionalityBroken
    );
    assert_eq!(
        r.rollback.as_ref().unwrap().initiated_at,
        t(TUESDAY_IN_WINDOW) + Duration::minutes(30)
    );
}

// ---------------------------------------------------------------------------
// 14: incidents
// ---------------------------------------------------------------------------

#[test]
fn a_security_incident_during_monitoring_escalates_and_rolls_back() {
    let mut world = World::good();
    world.incidents = Box::new(|m| {
        if m == 40 {
            vec![Incident {
                kind: IncidentKind::SecurityVulnerability,
                detail: "token leak in logs".into(),
            }]
        } else {
            vec![]
        }
    });
    let (_, r) = deploy(
        Settings::builtin(),
        TUESDAY_IN_WINDOW,
        request(DeploymentType::Standard, None),
        &mut world,
    );

    assert_eq!(r.status, Status::RolledBack);
    assert_eq!(escalation_reasons(&r), vec![EscalationReason::SecurityIncident]);
    assert_eq!(r.escalations[0].detail, "token leak in logs");
    let rb = r.rollback.as_ref().unwrap();
    assert_eq!(rb.trigger, RollbackTrigger::SecurityVulnerability);
    assert_eq!(rb.initiated_at, t(TUESDAY_IN_WINDOW) + Duration::minutes(40));
    assert_eq!(
        stages(&r),
        with(
            &UP_TO_APPROVE,
            &[
                (Stage::Deploy, Some(Passed)),
                (Stage::Monitor, Some(Failed)),
                (Stage::Rollback, Some(Passed))
            ]
        )
    );
    assert_eq!(
        r.production_version,
        Some(v("2.4.0")),
        "restored after the release had been promoted"
    );
    assert_eq!(
        notification_kinds(&r),
        vec![
            NotificationKind::PreDeployment,
            NotificationKind::Escalation,
            NotificationKind::Rollback
        ]
    );
}

// ---------------------------------------------------------------------------
// Commands and robustness
// ---------------------------------------------------------------------------

#[test]
fn cancel_is_refused_once_production_changes() {
    let mut run = Run::submit(
        Settings::builtin(),
        t(TUESDAY_IN_WINDOW),
        request(DeploymentType::Standard, None),
        production(),
    );
    let mut world = World::good();
    run.run_until(&mut world, |m| m.stage() == Some(Stage::Monitor))
        .unwrap();
    let out = run
        .machine
        .handle(
            run.now,
            Event::Cancel {
                by: "bob".into(),
                reason: "changed my mind".into(),
            },
        )
        .unwrap();
    assert!(out.refusal.is_some());
    assert!(out.facts.is_empty());
    run.absorb(out);
    let r = run.run(&mut world);
    assert_eq!(r.status, Status::Succeeded);
}

#[test]
fn manual_rollback_during_monitoring() {
    let mut run = Run::submit(
        Settings::builtin(),
        t(TUESDAY_IN_WINDOW),
        request(DeploymentType::Standard, None),
        production(),
    );
    let mut world = World::good();
    run.run_until(&mut world, |m| m.stage() == Some(Stage::Monitor))
        .unwrap();
    run.send(Event::ManualRollback {
        by: "bob".into(),
        reason: "customer reports".into(),
    })
    .unwrap();
    let r = run.run(&mut world);
    assert_eq!(r.status, Status::RolledBack);
    assert_eq!(r.rollback.as_ref().unwrap().trigger, RollbackTrigger::Manual);
    assert_eq!(r.production_version, Some(v("2.4.0")));
}

/// A late or duplicate agent answer must change nothing. A duplicate
/// `StepDone` arriving during MONITOR instead ends the deployment at once
/// (see the report: machine.rs, the `(Phase::Monitoring { .. }, Event::StepDone { .. })` arm).
#[test]
fn a_duplicate_step_result_during_monitoring_changes_nothing() {
    // The DevOps agent re-sends its answer to the last step that moved
    // traffic: canary 100% (index 4), blue-green switch (index 3).
    for (strategy, last) in [(Strategy::Canary, 4), (Strategy::BlueGreen, 3)] {
        let mut run = Run::submit(
            Settings::builtin(),
            t(TUESDAY_IN_WINDOW),
            request(DeploymentType::Standard, Some(strategy)),
            production(),
        );
        let mut world = World::good();
        run.run_until(&mut world, |m| m.stage() == Some(Stage::Monitor))
            .unwrap();
        let out = run
            .machine
            .handle(
                run.now,
                Event::StepDone {
                    index: last,
                    result: Ok(()),
                    simulated: false,
                },
            )
            .unwrap();
        let facts = out.facts.clone();
        run.absorb(out);
        let r = run.run(&mut world);
        assert!(
            facts.is_empty(),
            "{strategy}: a duplicate step result recorded {facts:#?}"
        );
        assert_eq!(r.status, Status::Succeeded);
        assert_eq!(
            stages(&r),
            FULL_PASSED.to_vec(),
            "{strategy}: MONITOR must run its 60 minutes"
        );
        assert_eq!(checkpoints(&r).len(), 4);
    }
}

/// With `breaches_to_rollback = 2`, one sample over a rollback threshold is
/// not yet a rollback, but it is not a clean canary analysis either: the
/// canary must not be promoted on it (see the report: machine.rs,
/// `after_observation`, `Phase::Analysing`).
#[test]
fn a_canary_is_not_promoted_on_a_sample_over_a_rollback_threshold() {
    let mut settings = Settings::builtin();
    settings.monitoring.breaches_to_rollback = 2;
    let mut world = World::good();
    // The 5th (last) read of the 5% analysis is over 5%; the next one is clean.
    world.metrics = spike(
        5,
        6,
        MetricSample {
            error_rate: 0.07,
            ..normal()
        },
    );
    let (run, r) = deploy(
        settings,
        TUESDAY_IN_WINDOW,
        request(DeploymentType::Standard, None),
        &mut world,
    );
    assert_eq!(r.status, Status::Succeeded, "a single breach is not a rollback");
    let promoted_at = run
        .log
        .iter()
        .find(|(_, e)| {
            matches!(
                e,
                Effect::Step {
                    step: DeployStep::CanaryWeight { percent: 25 },
                    ..
                }
            )
        })
        .map(|(at, _)| *at)
        .unwrap();
    assert!(
        promoted_at > t("2026-12-01T10:10:00Z"),
        "promoted to 25% at {promoted_at}, on the sample with a 7% error rate"
    );
}

#[test]
fn a_held_service_escalates_standard_deployments_but_not_hotfixes() {
    let held = Some("3 consecutive deployments failed".to_string());
    let mut run = Run::try_submit(
        Settings::builtin(),
        t(TUESDAY_IN_WINDOW),
        request(DeploymentType::Standard, None),
        production(),
        held.clone(),
    )
    .unwrap();
    let r = run.run(&mut World::good());
    assert_eq!(r.status, Status::Escalated);
    assert_eq!(escalation_reasons(&r), vec![EscalationReason::RepeatedFailures]);
    assert!(r.stages.is_empty());

    let mut run = Run::try_submit(
        Settings::builtin(),
        t(TUESDAY_IN_WINDOW),
        request(DeploymentType::Hotfix, None),
        production(),
        held,
    )
    .unwrap();
    assert_eq!(run.run(&mut World::good()).status, Status::Succeeded);
}

// ---------------------------------------------------------------------------
// 15: replay
// ---------------------------------------------------------------------------

fn assert_replays(run: &Run) {
    let replayed = Record::replay(&run.facts).expect("the first fact opens the record");
    let mut rendered = run.machine.rendered_record();
    rendered.markdown.clear();
    assert_eq!(&replayed, run.machine.record());
    assert_eq!(replayed, rendered);
}

#[test]
fn the_facts_replay_to_the_same_record() {
    let (run, _) = deploy(
        Settings::builtin(),
        TUESDAY_IN_WINDOW,
        request(DeploymentType::Standard, None),
        &mut World::good(),
    );
    assert!(matches!(run.facts.first(), Some(Fact::Submitted { .. })));
    assert_replays(&run);

    let mut world = World::good();
    world.metrics = spike(
        12,
        13,
        MetricSample {
            error_rate: 0.07,
            ..normal()
        },
    );
    let (run, _) = deploy(
        Settings::builtin(),
        TUESDAY_IN_WINDOW,
        request(DeploymentType::Standard, None),
        &mut world,
    );
    assert_replays(&run);

    let mut world = World::good();
    world.decisions = vec![human(Role::Manager, true, "alice"), human(Role::Manager, true, "bob")];
    let (run, _) = deploy(
        manager_human(),
        "2026-11-30T14:00:00Z",
        request(DeploymentType::Standard, Some(Strategy::BlueGreen)),
        &mut world,
    );
    assert_replays(&run);

    let (run, _) = deploy(
        Settings::builtin(),
        TUESDAY_IN_WINDOW,
        request(DeploymentType::Standard, None),
        &mut irreversible_world(),
    );
    assert_replays(&run);
}

// ---------------------------------------------------------------------------
// 16: property: any sequence of agent results ends well-formed
// ---------------------------------------------------------------------------

const PEOPLE: [&str; 4] = ["alice", "bob", "carol", "dave"];

#[derive(Debug, Clone)]
struct Scenario {
    kind: DeploymentType,
    strategy: Strategy,
    submit_minute: i64,
    schedule_minute: i64,
    prepare: Option<(bool, bool, MigrationKind, bool, bool, u32)>,
    scan: Option<u32>,
    staging: Option<[bool; 6]>,
    suite_failures: Option<u32>,
    notify: Vec<bool>,
    human: [bool; 3],
    decisions: Vec<(usize, bool, usize, i64)>,
    baseline: Vec<bool>,
    metrics: Vec<Option<(f64, f64, f64, f64)>>,
    health: Vec<Option<bool>>,
    incidents: Vec<Option<IncidentKind>>,
    steps: Vec<bool>,
    rollback: (bool, bool),
    irreversible_rollback: bool,
    breaches: u32,
    held: bool,
    /// sample interval, canary analysis minutes, rolling batch size, blue-green pre-switch checks
    tuning: (u32, u32, u32, u32),
    /// After that many events: `true` cancels, `false` asks for a manual rollback.
    command: Option<(usize, bool)>,
}

/// `None` (an agent error) once in `1 + ok` times.
fn sometimes<T: std::fmt::Debug + Clone + 'static>(
    ok: u32,
    s: impl Gen<Value = T> + 'static,
) -> BoxedStrategy<Option<T>> {
    prop_oneof![1 => Just(None), ok => s.prop_map(Some)].boxed()
}

fn mostly(p: f64) -> BoxedStrategy<bool> {
    proptest::bool::weighted(p).boxed()
}

/// `usual` most of the time, otherwise one of `unusual`.
fn usually<T: std::fmt::Debug + Clone + 'static>(usual: T, weight: u32, unusual: Vec<T>) -> BoxedStrategy<T> {
    prop_oneof![weight => Just(usual), 1 => prop::sample::select(unusual)].boxed()
}

// The weights keep every single failure source rare, so that a good share of
// the cases reach DEPLOY, MONITOR and ROLLBACK.
fn scenario() -> impl Gen<Value = Scenario> {
    let kinds = prop::sample::select(DeploymentType::ALL.to_vec());
    let strategies = prop::sample::select(Strategy::ALL.to_vec());
    let migrations = prop::sample::select(vec![
        MigrationKind::None,
        MigrationKind::Reversible,
        MigrationKind::Irreversible,
    ]);
    let prepare = sometimes(
        30,
        (
            mostly(0.97),
            mostly(0.98),
            migrations,
            mostly(0.95),
            mostly(0.97),
            1u32..6,
        ),
    );
    let scan = sometimes(30, usually(0u32, 20, vec![1, 2]));
    let staging = sometimes(30, prop::array::uniform6(mostly(0.99)));
    let suites = sometimes(30, usually(0u32, 20, vec![1, 3]));
    let metric = sometimes(
        12,
        (
            usually(0.002, 40, vec![0.02, 0.07]),
            usually(100.0, 40, vec![250.0, 350.0]),
            usually(0.3, 20, vec![0.9]),
            usually(0.4, 20, vec![0.85]),
        ),
    );
    let incident = usually(
        None,
        150,
        vec![
            Some(IncidentKind::SecurityVulnerability),
            Some(IncidentKind::CriticalFunctionalityBroken),
        ],
    );
    // Scheduled: 10:00 + 0..150 minutes on one of the next days (some fall outside every window).
    let schedule = (0i64..9, 0i64..150).prop_map(|(day, minute)| day * 1440 + 600 + minute);
    let part1 = (
        kinds,
        strategies,
        0i64..(7 * 24 * 60),
        schedule,
        prepare,
        scan,
        staging,
        suites,
        prop::collection::vec(mostly(0.97), 1..5),
        prop::array::uniform3(mostly(0.3)),
    );
    let part2 = (
        prop::collection::vec((0usize..3, mostly(0.8), 0usize..4, 0i64..2000), 0..5),
        prop::collection::vec(mostly(0.9), 1..4),
        prop::collection::vec(metric, 1..30),
        prop::collection::vec(
            prop_oneof![100 => Just(Some(true)), 1 => Just(Some(false)), 3 => Just(None)],
            1..30,
        ),
        prop::collection::vec(incident, 1..30),
        prop::collection::vec(mostly(0.98), 1..10),
        (mostly(0.85), mostly(0.9)),
        any::<bool>(),
        1u32..3,
        mostly(0.1),
    );
    let part3 = (
        (1u32..4, 1u32..7, 1u32..4, 1u32..3),
        prop_oneof![4 => Just(None), 1 => (0usize..200, any::<bool>()).prop_map(Some)],
    );
    (part1, part2, part3).prop_map(
        |(
            (kind, strategy, submit_minute, schedule_minute, prepare, scan, staging, suite_failures, notify, human),
            (decisions, baseline, metrics, health, incidents, steps, rollback, irreversible_rollback, breaches, held),
            (tuning, command),
        )| Scenario {
            kind,
            strategy,
            submit_minute,
            schedule_minute,
            prepare,
            scan,
            staging,
            suite_failures,
            notify,
            human,
            decisions,
            baseline,
            metrics,
            health,
            incidents,
            steps,
            rollback,
            irreversible_rollback,
            breaches,
            held,
            tuning,
            command,
        },
    )
}

fn cycle<T: Clone + 'static>(values: Vec<T>) -> impl FnMut() -> T {
    let mut i = 0;
    move || {
        let v = values[i % values.len()].clone();
        i += 1;
        v
    }
}

impl Scenario {
    fn settings(&self) -> Settings {
        let mut s = Settings::builtin();
        let mode = |h: bool| if h { ApprovalMode::Human } else { ApprovalMode::Auto };
        s.agents.manager.mode = mode(self.human[0]);
        s.agents.security.mode = mode(self.human[1]);
        s.agents.devops.mode = mode(self.human[2]);
        s.monitoring.breaches_to_rollback = self.breaches;
        let (interval, analysis, batch, checks) = self.tuning;
        s.monitoring.sample_interval_minutes = interval as f64;
        s.strategies.canary.analysis_minutes = analysis as f64;
        s.strategies.rolling.batch_size = batch;
        s.strategies.blue_green.pre_switch_health_checks = checks;
        if self.irreversible_rollback {
            s.rollback.on_irreversible_migration = IrreversiblePolicy::Rollback;
        }
        s
    }

    fn submitted_at(&self) -> DateTime<Utc> {
        t("2026-11-30T00:00:00Z") + Duration::minutes(self.submit_minute)
    }

    fn request(&self) -> Request {
        let mut r = request(self.kind, Some(self.strategy));
        if self.kind == DeploymentType::Scheduled {
            let midnight = t("2026-11-30T00:00:00Z") + Duration::days(self.submit_minute / 1440);
            r.scheduled_for = Some(midnight + Duration::minutes(self.schedule_minute));
        }
        r
    }

    fn world(&self) -> World {
        let mut w = World::good();
        w.prepare = match self.prepare {
            None => Err("DevOps agent crashed".into()),
            Some((tests_passed, build_succeeded, migrations, migrations_tested, backup_verified, instances)) => {
                Ok(PrepareReport {
                    tests_passed,
                    build_succeeded,
                    migrations,
                    migrations_tested,
                    backup_verified,
                    instances,
                    ..prepare_report()
                })
            }
        };
        w.scan = self
            .scan
            .map(|n| ScanReport {
                critical_vulnerabilities: n,
                findings: vec![],
                simulated: false,
            })
            .ok_or_else(|| "scanner offline".to_string());
        w.staging = self
            .staging
            .map(|b| StagingReport {
                deployed: b[0],
                application_started: b[1],
                health_endpoints: b[2],
                migrations_complete: b[3],
                external_services: b[4],
                smoke_tests: b[5],
                simulated: vec![],
            })
            .ok_or_else(|| "staging cluster down".to_string());
        w.suites = self
            .suite_failures
            .map(|f| {
                vec![
                    suite("unit", 100, f, 0),
                    suite("smoke", 10, 0, 0),
                    suite("e2e", 20, 0, 1),
                ]
            })
            .ok_or_else(|| "QA runner crashed".to_string());
        let mut notify = cycle(self.notify.clone());
        w.notify = Box::new(move |_| {
            if notify() {
                Ok(())
            } else {
                Err("mail server down".into())
            }
        });
        let roles = [Role::Manager, Role::Security, Role::Devops];
        w.decisions = self
            .decisions
            .iter()
            .map(|&(role, approve, who, after_minutes)| HumanAnswer {
                role: roles[role],
                approve,
                by: PEOPLE[who].to_string(),
                after_minutes,
            })
            .collect();
        let mut baseline = cycle(self.baseline.clone());
        w.baseline = Box::new(move || {
            if baseline() {
                Ok(normal())
            } else {
                Err("no baseline data".into())
            }
        });
        let mut metrics = cycle(self.metrics.clone());
        w.metrics = Box::new(move |_| match metrics() {
            Some((error_rate, latency_p99_ms, cpu, memory)) => Ok(MetricSample {
                error_rate,
                latency_p99_ms,
                cpu: Some(cpu),
                memory: Some(memory),
                simulated: false,
            }),
            None => Err("metrics unavailable".into()),
        });
        let mut health = cycle(self.health.clone());
        w.health = Box::new(move |_| health().ok_or_else(|| "health endpoint timed out".to_string()));
        let mut incidents = cycle(self.incidents.clone());
        w.incidents = Box::new(move |_| {
            incidents()
                .map(|kind| {
                    vec![Incident {
                        kind,
                        detail: "reported by on-call".into(),
                    }]
                })
                .unwrap_or_default()
        });
        let mut steps = cycle(self.steps.clone());
        w.step = Box::new(move |_, _| if steps() { Ok(()) } else { Err("step failed".into()) });
        (w.rollback_restored, w.rollback_verified) = self.rollback;
        w
    }
}

/// Checks that the stages follow the type's order, with ROLLBACK only after DEPLOY or MONITOR.
fn stage_order_violation(order: &[Stage], r: &Record) -> Option<String> {
    let seen: Vec<Stage> = r.stages.iter().map(|e| e.stage).collect();
    let first = seen.first()?;
    if Some(first) != order.first() {
        return Some(format!("first stage {first} is not {:?}", order.first()));
    }
    for w in seen.windows(2) {
        let (a, b) = (w[0], w[1]);
        let pa = order.iter().position(|s| *s == a);
        let pb = order.iter().position(|s| *s == b);
        let next = matches!((pa, pb), (Some(x), Some(y)) if y == x + 1);
        let rollback = b == Stage::Rollback && matches!(a, Stage::Deploy | Stage::Monitor) && pa.is_some();
        if !(next || rollback) {
            return Some(format!("{a} followed by {b} in {seen:?} (order {order:?})"));
        }
    }
    None
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn any_agent_results_end_in_a_terminal_well_formed_record(sc in scenario()) {
        let settings = sc.settings();
        let order = settings.types.get(sc.kind).stages.clone();
        let held = if sc.held { Some("3 consecutive deployments failed".to_string()) } else { None };
        let mut run = Run::try_submit(settings, sc.submitted_at(), sc.request(), production(), held)
            .map_err(|e| TestCaseError::fail(format!("submit: {e}")))?;
        if let Some((after, cancel)) = sc.command {
            let (by, reason) = ("bob".to_string(), "operator command".to_string());
            let command = if cancel { Event::Cancel { by, reason } } else { Event::ManualRollback { by, reason } };
            run.commands.push_back((after, command));
        }
        let mut world = sc.world();
        let r = run.try_run(&mut world).map_err(TestCaseError::fail)?;

        prop_assert_eq!(run.finished, 1);
        prop_assert!(r.status.is_terminal(), "status {}", r.status);
        prop_assert!(run.events <= EVENT_LIMIT);
        prop_assert!(r.finished_at.is_some());
        if let Some(why) = stage_order_violation(&order, &r) {
            prop_assert!(false, "{}", why);
        }
        let open: Vec<Stage> = r.stages.iter().filter(|e| e.outcome.is_none()).map(|e| e.stage).collect();
        prop_assert!(open.is_empty(), "stages left open at {}: {:?}", r.status, open);
        match (r.status, sc.kind) {
            (Status::Succeeded, DeploymentType::Rollback) => prop_assert_eq!(&r.production_version, &r.version),
            (Status::Succeeded, _) => prop_assert_eq!(&r.production_version, &Some(v("2.4.1"))),
            (Status::RolledBack, _) => prop_assert_eq!(&r.production_version, &Some(v("2.4.0"))),
            _ => {}
        }
        if r.status == Status::RolledBack {
            prop_assert!(r.rollback.as_ref().is_some_and(|rb| rb.verified));
        }
        let replayed = Record::replay(&run.facts).expect("a record");
        prop_assert_eq!(&replayed, run.machine.record());
    }
}

// ---- production slot, window override, rollback after success, acknowledgement, refusals ----

#[test]
fn an_approved_deployment_waits_queued_for_its_slot_and_sees_production_as_it_is_then() {
    let mut run = Run::submit(
        Settings::builtin(),
        t(TUESDAY_IN_WINDOW),
        request(DeploymentType::Standard, None),
        production(),
    );
    let mut world = World::good();
    // Answer everything except the slot request, which stays pending.
    run.run_until(&mut world, |m| {
        m.status() == Status::Queued && m.stage() == Some(Stage::Approve)
    })
    .unwrap();
    assert_eq!(run.queue.back(), Some(&Effect::AcquireSlot));
    let r = run.machine.record();
    assert!(
        r.stages.iter().all(|s| s.stage != Stage::Deploy),
        "nothing deployed before the slot"
    );
    assert!(
        r.timeline
            .iter()
            .any(|e| e.event.contains("waiting for the production slot of checkout")),
        "{:#?}",
        r.timeline
    );
    // The deployment ahead put 2.4.5 into production meanwhile.
    run.queue.clear();
    let ahead = Production {
        current_version: Some(v("2.4.5")),
        previous_version: Some(v("2.4.0")),
        active_colour: Colour::Blue,
        observed: None,
    };
    run.production = ahead.clone();
    run.send(Event::SlotGranted { production: ahead }).unwrap();
    let r = run.run(&mut world);
    assert_eq!(r.status, Status::Succeeded);
    assert_eq!(
        r.previous_version,
        Some(v("2.4.5")),
        "rollback target is what ran when the slot came"
    );
    assert_eq!(r.production_version, Some(v("2.4.1")));
    let plans_restore: Vec<_> = run
        .log
        .iter()
        .filter(|(_, e)| matches!(e, Effect::AcquireSlot))
        .collect();
    assert_eq!(plans_restore.len(), 1, "the slot is asked for once");
}

/// Production as the journal has it (2.4.0), with what `current_version` said.
fn production_read(version: Result<Option<&str>, &str>) -> Production {
    Production {
        observed: Some(Box::new(ProductionReading {
            source: "current_version".into(),
            version: version.map(|v| v.map(self::v)).map_err(String::from),
        })),
        ..production()
    }
}

/// A standard deployment whose slot comes with `production`, run to its end.
fn deploy_with_slot(production: Production) -> (Run, Record) {
    let mut run = Run::submit(
        Settings::builtin(),
        t(TUESDAY_IN_WINDOW),
        request(DeploymentType::Standard, None),
        production.clone(),
    );
    run.production = production;
    let record = run.run(&mut World::good());
    (run, record)
}

#[test]
fn production_read_as_the_journal_says_deploys() {
    let (_, r) = deploy_with_slot(production_read(Ok(Some("2.4.0"))));
    assert_eq!(r.status, Status::Succeeded);
    assert!(r.escalations.is_empty(), "{:?}", r.escalations);
}

#[test]
fn production_running_another_version_than_the_journal_says_holds_the_deployment_before_deploy() {
    let (run, r) = deploy_with_slot(production_read(Ok(Some("2.3.7"))));
    assert_eq!(r.status, Status::Escalated);
    assert!(r.deploy_log.is_none(), "nothing deployed: {:?}", r.deploy_log);
    assert!(r.stages.iter().all(|s| s.stage != Stage::Deploy), "{:?}", stages(&r));
    assert!(
        !run.effects()
            .any(|e| matches!(e, Effect::MeasureBaseline | Effect::Step { .. })),
        "nothing of DEPLOY was asked for"
    );
    assert_eq!(escalation_reasons(&r), [EscalationReason::ProductionMismatch]);
    let detail = &r.escalations[0].detail;
    assert!(
        detail.starts_with("production of checkout runs 2.3.7 by `current_version`, but the journal says 2.4.0;"),
        "{detail}"
    );
    assert!(detail.contains("bring production back to 2.4.0"), "{detail}");
    assert!(
        r.timeline.iter().any(|e| e.event.contains("Held before DEPLOY")),
        "{:#?}",
        r.timeline
    );
    // The escalation is sent like every other one.
    assert!(notification_kinds(&r).contains(&NotificationKind::Escalation));
    assert_eq!(run.finished, 1);

    // Nothing running where the journal knows a version is a disagreement too, and the other way round.
    let (_, r) = deploy_with_slot(production_read(Ok(None)));
    assert_eq!(r.status, Status::Escalated);
    assert!(r.escalations[0]
        .detail
        .starts_with("production of checkout runs nothing by"));
    let (_, r) = deploy_with_slot(Production {
        current_version: None,
        previous_version: None,
        ..production_read(Ok(Some("2.4.0")))
    });
    assert_eq!(r.status, Status::Escalated);
    assert!(
        r.escalations[0].detail.contains("but the journal says nothing;"),
        "{}",
        r.escalations[0].detail
    );
}

#[test]
fn production_nobody_could_read_holds_the_deployment_with_the_reason() {
    let (_, r) = deploy_with_slot(production_read(Err(
        "current_version failed: exit 2 in 0.0 s: connection refused",
    )));
    assert_eq!(r.status, Status::Escalated);
    assert!(r.deploy_log.is_none());
    assert_eq!(escalation_reasons(&r), [EscalationReason::ProductionMismatch]);
    let detail = &r.escalations[0].detail;
    assert!(
        detail.starts_with(
            "`current_version` could not say what runs in production of checkout (the journal says 2.4.0): \
             current_version failed: exit 2 in 0.0 s: connection refused; not deploying blind"
        ),
        "{detail}"
    );
}

#[test]
fn production_without_a_reading_keeps_its_journal_form() {
    // Journals written before readings existed have no `observed`, and a
    // production without a reading is written as before.
    let old = r#"{"current_version":"2.4.0","previous_version":"2.3.9","active_colour":"blue"}"#;
    let p: Production = serde_json::from_str(old).unwrap();
    assert_eq!(p, production());
    assert_eq!(serde_json::to_string(&p).unwrap(), old);
    let read = production_read(Ok(Some("2.4.0")));
    let back: Production = serde_json::from_str(&serde_json::to_string(&read).unwrap()).unwrap();
    assert_eq!(back, read);
}

#[test]
fn a_rollback_type_deployment_never_waits_for_a_slot() {
    let (run, r) = deploy(
        Settings::builtin(),
        TUESDAY_IN_WINDOW,
        request(DeploymentType::Rollback, None),
        &mut World::good(),
    );
    assert_eq!(r.status, Status::Succeeded, "the restore succeeded");
    assert!(!run.effects().any(|e| matches!(e, Effect::AcquireSlot)));
}

#[test]
fn a_managers_window_override_deploys_at_once_and_is_in_the_approval_record() {
    // 2026-12-04 is a Friday, outside every window.
    let mut req = request(DeploymentType::Standard, None);
    req.window_override = Some(workflow::record::WindowOverride {
        by: "mia".into(),
        reason: "payment outage fix cannot wait for Tuesday".into(),
    });
    let (_, r) = deploy(Settings::builtin(), "2026-12-04T15:00:00Z", req, &mut World::good());
    assert_eq!(r.status, Status::Succeeded);
    assert_eq!(started(&r, Stage::Deploy), t("2026-12-04T15:00:00Z"));
    assert_eq!(
        approvals(&r)[0],
        (Role::Manager, Decision::WindowOverride, "mia".to_string())
    );
    assert!(r.approvals[0].reason.contains("payment outage"));
    assert!(r.markdown.contains("WINDOW OVERRIDE"), "{}", r.markdown);
}

#[test]
fn a_succeeded_deployment_can_still_be_rolled_back_by_hand() {
    let (mut run, r) = deploy(
        Settings::builtin(),
        TUESDAY_IN_WINDOW,
        request(DeploymentType::Standard, None),
        &mut World::good(),
    );
    assert_eq!(r.status, Status::Succeeded);
    run.send(Event::ManualRollback {
        by: "oscar".into(),
        reason: "customers report broken receipts".into(),
    })
    .unwrap();
    run.finished = 0;
    let r = run.run(&mut World::good());
    assert_eq!(r.status, Status::RolledBack);
    assert_eq!(run.rollback_plans()[0].restore_version, Some(v("2.4.0")));
    assert_eq!(r.production_version, Some(v("2.4.0")));
    assert_eq!(run.finished, 1, "finished again after the rollback");
    assert!(r.issues.iter().any(|i| i.contains("oscar")), "{:?}", r.issues);
}

#[test]
fn an_escalation_is_acknowledged_once() {
    let (mut run, r) = deploy(
        Settings::builtin(),
        TUESDAY_IN_WINDOW,
        request(DeploymentType::Standard, None),
        &mut irreversible_world(),
    );
    let count = r.escalations.len();
    assert!(count >= 1);
    let out = run
        .machine
        .handle(
            run.now,
            Event::Acknowledge {
                index: 1,
                by: "mia".into(),
                note: Some("schema restored from the 02:00 backup".into()),
            },
        )
        .unwrap();
    assert!(out.refusal.is_none());
    let e = &run.machine.record().escalations[0];
    assert_eq!(e.acknowledged_by.as_deref(), Some("mia"));
    // The note is kept: in the record, its Markdown and its timeline.
    assert_eq!(
        e.acknowledgement_note.as_deref(),
        Some("schema restored from the 02:00 backup")
    );
    let md = run.machine.rendered_record().markdown;
    assert!(
        md.contains("acknowledged by mia at") && md.contains(": schema restored from the 02:00 backup)"),
        "{md}"
    );
    let again = run
        .machine
        .handle(
            run.now,
            Event::Acknowledge {
                index: 1,
                by: "noah".into(),
                note: None,
            },
        )
        .unwrap();
    assert!(again.refusal.unwrap().contains("already acknowledged by mia"));
    let missing = run
        .machine
        .handle(
            run.now,
            Event::Acknowledge {
                index: count + 1,
                by: "mia".into(),
                note: None,
            },
        )
        .unwrap();
    assert!(missing
        .refusal
        .unwrap()
        .contains(&format!("no escalation {}", count + 1)));
}

#[test]
fn an_acknowledgement_journaled_before_notes_reads_without_one() {
    // The input as journals before the note stored it, and a fact likewise.
    let event: Event = serde_json::from_str(r#"{"Acknowledge":{"index":1,"by":"mia"}}"#).expect("old event");
    assert_eq!(
        event,
        Event::Acknowledge {
            index: 1,
            by: "mia".into(),
            note: None
        }
    );
    // Without a note, the stored form is what it was.
    assert_eq!(
        serde_json::to_string(&event).unwrap(),
        r#"{"Acknowledge":{"index":1,"by":"mia"}}"#
    );
    let fact: Fact =
        serde_json::from_str(r#"{"fact":"acknowledged","at":"2026-12-01T10:00:00Z","index":1,"by":"mia"}"#)
            .expect("old fact");
    assert!(matches!(fact, Fact::Acknowledged { note: None, .. }), "{fact:?}");
}

#[test]
fn a_refused_command_is_recorded_with_who_tried() {
    let mut run = Run::submit(
        manager_human(),
        t(TUESDAY_IN_WINDOW),
        request(DeploymentType::Standard, None),
        production(),
    );
    let out = run
        .machine
        .handle(
            run.now,
            Event::Refused {
                by: "eve".into(),
                role: Some(Role::Manager),
                what: "decide the manager approval".into(),
                reason: "eve may not decide the manager approval: it needs the manager role".into(),
            },
        )
        .unwrap();
    assert!(out.effects.is_empty(), "a refusal changes nothing but the record");
    assert_eq!(
        approvals(run.machine.record()),
        vec![(Role::Manager, Decision::Refused, "eve".to_string())]
    );
}

#[test]
fn every_effect_is_answered_by_its_own_event_only() {
    let step = Effect::Step {
        index: 2,
        step: DeployStep::CanaryWeight { percent: 25 },
    };
    assert!(step.answered_by(&Event::StepDone {
        index: 2,
        result: Ok(()),
        simulated: false,
    }));
    assert!(!step.answered_by(&Event::StepDone {
        index: 3,
        result: Ok(()),
        simulated: false,
    }));
    let timer = Effect::Timer {
        at: t(TUESDAY_IN_WINDOW),
        token: 7,
    };
    assert!(timer.answered_by(&Event::Timer(7)));
    assert!(!timer.answered_by(&Event::Timer(8)));
    assert!(Effect::Prepare.answered_by(&Event::Prepared(Err("x".into()))));
    assert!(!Effect::Prepare.answered_by(&Event::Scanned(Err("x".into()))));
    let review = Effect::Review {
        role: Role::Security,
        criteria: vec![],
    };
    assert!(!review.answered_by(&Event::Reviewed {
        role: Role::Manager,
        advice: approval::Advice::AskHuman
    }));
}

fn first_production() -> Production {
    Production {
        current_version: None,
        previous_version: None,
        active_colour: Colour::Blue,
        observed: None,
    }
}

#[test]
fn a_first_deployment_measures_no_baseline_and_still_judges_the_error_rate() {
    // Slow but healthy: with no baseline, latency is not compared.
    let mut world = World::good();
    world.metrics = Box::new(|_| {
        Ok(MetricSample {
            latency_p99_ms: 900.0,
            ..normal()
        })
    });
    let mut run = Run::submit(
        Settings::builtin(),
        t(TUESDAY_IN_WINDOW),
        request(DeploymentType::Standard, None),
        first_production(),
    );
    let r = run.run(&mut world);
    assert_eq!(r.status, Status::Succeeded, "{:#?}", r.timeline);
    assert!(!run.effects().any(|e| matches!(e, Effect::MeasureBaseline)));
    assert_eq!(r.monitoring.baseline, None);
    assert!(
        r.timeline.iter().any(|e| e.event.contains("no version in production")),
        "{:#?}",
        r.timeline
    );
    // No baseline value is made up: the performance checkpoint says there is none.
    let performance = r
        .monitoring
        .checkpoints
        .iter()
        .find(|c| c.check == CheckpointCheck::Performance)
        .expect("a performance checkpoint");
    assert_eq!(
        performance.detail,
        "p99 900 ms (no baseline to compare with), CPU 40%, memory 50%"
    );
    assert!(!r.markdown.contains("baseline 900"), "{}", r.markdown);

    // An error rate over its absolute threshold still rolls back.
    let mut world = World::good();
    world.metrics = spike(
        0,
        1000,
        MetricSample {
            error_rate: 0.08,
            ..normal()
        },
    );
    let mut run = Run::submit(
        Settings::builtin(),
        t(TUESDAY_IN_WINDOW),
        request(DeploymentType::Standard, None),
        first_production(),
    );
    let r = run.run(&mut world);
    assert_eq!(r.status, Status::RolledBack, "{:#?}", r.timeline);
}

#[test]
fn simulated_evidence_is_labelled_and_unmeasured_metrics_are_not_judged() {
    let mut world = World::good();
    let mut prepare = prepare_report();
    prepare.simulated = vec!["backup_verified".into()];
    world.prepare = Ok(prepare);
    world.scan = Ok(ScanReport {
        critical_vulnerabilities: 0,
        findings: vec![],
        simulated: true,
    });
    let mut staging = staging_ok();
    staging.simulated = vec!["smoke_tests".into()];
    world.staging = Ok(staging);
    let mut suites = all_suites();
    suites[0].simulated = true;
    world.suites = Ok(suites);
    world.simulated = true;
    let unmeasured = MetricSample {
        cpu: None,
        memory: None,
        simulated: true,
        ..normal()
    };
    world.baseline = Box::new(move || Ok(unmeasured));
    // CPU over its threshold would call for scaling; without a value it is not judged.
    world.metrics = Box::new(move |_| Ok(unmeasured));
    let (_, r) = deploy(
        Settings::builtin(),
        TUESDAY_IN_WINDOW,
        request(DeploymentType::Standard, None),
        &mut world,
    );
    assert_eq!(r.status, Status::Succeeded, "{:#?}", r.timeline);
    assert!(r.alerts.is_empty(), "{:?}", r.alerts);
    assert!(r.rests_on_simulation());
    let md = &r.markdown;
    for line in [
        "- [x] Backup verified (required) - verified by DevOps: backup restore test (simulated)",
        "- [x] No critical vulnerabilities (required) - verified by Security: vulnerability scan (simulated)",
        "- Critical vulnerabilities: 0 (simulated)",
        "- [x] Smoke tests pass (simulated)",
        "| unit (simulated) | 150 | 0 | 2 |",
        "- CPU: not measured — threshold not judged",
        "- Memory: not measured — threshold not judged",
        "- Error rate: 0.2% (simulated)",
    ] {
        assert!(md.contains(line), "{line:?} missing from\n{md}");
    }
    // Observed evidence is not labelled.
    for line in [
        "- [x] All tests passing (required) - verified by DevOps: test run\n",
        "- [x] Health endpoints responding\n",
        "| integration | 45 | 0 | 0 |",
    ] {
        assert!(md.contains(line), "{line:?} missing from\n{md}");
    }
    let steps = &r.deploy_log.as_ref().unwrap().steps;
    assert!(steps.iter().all(|s| s.simulated), "{steps:?}");
    let step_lines: Vec<&str> = md.lines().filter(|l| l.starts_with("- [x] 2026-")).collect();
    assert!(
        !step_lines.is_empty() && step_lines.iter().all(|l| l.ends_with(" (simulated)")),
        "{md}"
    );
    assert!(r.monitoring.checkpoints.iter().all(|c| c.simulated));
    assert!(md.contains("CPU not measured (threshold not judged)"), "{md}");
    // Every notification says that it tells of simulated evidence.
    assert!(!r.notifications.is_empty());
    for n in &r.notifications {
        assert!(
            n.simulated && n.body.contains(workflow::record::SIMULATED_NOTICE),
            "{n:?}"
        );
    }
}

#[test]
fn a_deployment_on_observed_evidence_has_no_label() {
    let mut world = World::good();
    let (_, r) = deploy(
        Settings::builtin(),
        TUESDAY_IN_WINDOW,
        request(DeploymentType::Standard, None),
        &mut world,
    );
    assert_eq!(r.status, Status::Succeeded);
    assert!(!r.rests_on_simulation());
    assert!(!r.markdown.contains("simulated"), "{}", r.markdown);
    assert!(!r.markdown.contains("not judged"), "{}", r.markdown);
    assert!(r
        .notifications
        .iter()
        .all(|n| !n.simulated && !n.body.contains("Simulated")));
}

#[test]
fn facts_journaled_before_the_simulated_flags_replay_identically() {
    // A step and a sample as an earlier version wrote them: no flags, numbers for CPU and memory.
    let step: Fact = serde_json::from_str(
        r#"{"fact":"deploy_step","at":"2026-12-01T10:05:00Z","step":"Backup created","ok":true,"detail":""}"#,
    )
    .unwrap();
    let Fact::DeployStep(step) = step else { panic!() };
    assert!(!step.simulated);
    let event: Event = serde_json::from_str(r#"{"StepDone":{"index":0,"result":{"Ok":null}}}"#).unwrap();
    assert_eq!(
        event,
        Event::StepDone {
            index: 0,
            result: Ok(()),
            simulated: false
        }
    );
    let sample: Fact = serde_json::from_str(
        r#"{"fact":"sample","at":"2026-12-01T10:05:00Z","stage":"monitor","minute":1,"traffic_percent":100,"sample":{"error_rate":0.001,"latency_p99_ms":120.0,"cpu":0.4,"memory":0.5},"error":null}"#,
    )
    .unwrap();
    let Fact::Sample(sample) = sample else { panic!() };
    let m = sample.sample.unwrap();
    assert_eq!((m.cpu, m.memory, m.simulated), (Some(0.4), Some(0.5), false));
}

// ---------------------------------------------------------------------------
// The DORA figures of records the machine made
// ---------------------------------------------------------------------------

/// Runs a deployment until its rollback is asked for, answers the rollback
/// `minutes` later, and runs it to its end.
fn rollback_takes(mut run: Run, world: &mut World, minutes: i64) -> Record {
    run.run_until(world, |m| m.stage() == Some(Stage::Rollback)).unwrap();
    assert!(
        run.queue.iter().any(|e| matches!(e, Effect::Rollback(_))),
        "the rollback waits for its answer"
    );
    run.now += Duration::minutes(minutes);
    run.run(world)
}

#[test]
fn dora_figures_of_deployments_run_through_the_machine() {
    use workflow::dora::{dora, Period};

    let standard = || request(DeploymentType::Standard, None);
    let error_spike = |to: u32, error_rate: f64| spike(12, to, MetricSample { error_rate, ..normal() });
    // Tue 1 Dec: succeeds; DEPLOY 10:05-10:20.
    let (_, a) = deploy(Settings::builtin(), TUESDAY_IN_WINDOW, standard(), &mut World::good());
    // Wed 2 Dec: an error rate at 10:17 rolls it back during DEPLOY; the rollback takes 6 minutes.
    let mut world = World::good();
    world.metrics = error_spike(13, 0.07);
    let run = Run::submit(Settings::builtin(), t("2026-12-02T10:05:00Z"), standard(), production());
    let b = rollback_takes(run, &mut world, 6);
    // Thu 3 Dec: rolled back by hand as MONITOR starts (10:20); 2 minutes.
    let mut world = World::good();
    let mut run = Run::submit(Settings::builtin(), t("2026-12-03T10:05:00Z"), standard(), production());
    run.run_until(&mut world, |m| m.stage() == Some(Stage::Monitor))
        .unwrap();
    run.send(Event::ManualRollback {
        by: "bob".into(),
        reason: "customer reports".into(),
    })
    .unwrap();
    let c = rollback_takes(run, &mut world, 2);
    // Tue 8 Dec: its rollback fails at 10:17 (escalated); a rollback-type
    // deployment submitted at 11:00 restores 2.4.0 at once.
    let mut world = World::good();
    world.metrics = error_spike(100, 0.2);
    world.rollback_restored = false;
    world.rollback_verified = false;
    let (_, d) = deploy(Settings::builtin(), "2026-12-08T10:05:00Z", standard(), &mut world);
    let after = Production {
        current_version: Some(v("2.4.1")),
        previous_version: Some(v("2.4.0")),
        active_colour: Colour::Green,
        observed: None,
    };
    let e = Run::submit(
        Settings::builtin(),
        t("2026-12-08T11:00:00Z"),
        request(DeploymentType::Rollback, None),
        after,
    )
    .run(&mut World::good());
    let mut records = vec![a, b, c, d, e];
    assert_eq!(
        records.iter().map(|r| r.status).collect::<Vec<_>>(),
        [
            Status::Succeeded,
            Status::RolledBack,
            Status::RolledBack,
            Status::Escalated,
            Status::Succeeded
        ]
    );
    // Each run numbers its deployment 1: number them as one daemon would.
    for (n, r) in records.iter_mut().enumerate() {
        r.id = DeploymentId(n as u64 + 1);
    }

    let two_weeks = Period::new(t("2026-12-01T00:00:00Z"), t("2026-12-15T00:00:00Z")).unwrap();
    let figures = dora(&records, two_weeks, None);
    const MIN: f64 = 60.0;
    // Deployment frequency: only the 1st succeeded (the rollback-type 5th is no change).
    assert_eq!(figures.deployment_frequency.deployments, 1);
    assert_eq!(figures.deployment_frequency.per_day, 1.0 / 14.0);
    // Lead time: the 1st and 3rd passed DEPLOY, each 15 minutes after submission.
    assert_eq!(figures.lead_time.deployments, 2);
    assert_eq!(figures.lead_time.median_seconds, Some(15.0 * MIN));
    assert_eq!(figures.lead_time.p90_seconds, Some(15.0 * MIN));
    // Change failure rate: 3 of the 4 changes.
    let cfr = &figures.change_failure_rate;
    assert_eq!((cfr.reached_production, cfr.succeeded, cfr.failed), (4, 1, 3));
    assert_eq!(cfr.rate, Some(0.75));
    // Time to restore: 6 and 2 minutes by their own rollbacks; 43 minutes
    // (10:17 to 11:00) by the rollback-type deployment.
    let ttr = &figures.time_to_restore;
    let restored: Vec<(u64, Option<f64>, Option<DeploymentId>)> =
        ttr.changes.iter().map(|c| (c.id.0, c.seconds, c.restored_by)).collect();
    assert_eq!(
        restored,
        [
            (2, Some(6.0 * MIN), None),
            (3, Some(2.0 * MIN), None),
            (4, Some(43.0 * MIN), Some(DeploymentId(5)))
        ]
    );
    assert_eq!(ttr.median_seconds, Some(6.0 * MIN));
    assert_eq!(ttr.max_seconds, Some(43.0 * MIN));

    // The first week only: the 4th and 5th are the next week's.
    let first_week = Period::new(t("2026-12-01T00:00:00Z"), t("2026-12-08T00:00:00Z")).unwrap();
    let week = dora(&records, first_week, None);
    assert_eq!(week.change_failure_rate.rate, Some(2.0 / 3.0));
    assert_eq!(week.time_to_restore.median_seconds, Some(4.0 * MIN));
    assert_eq!(week.time_to_restore.max_seconds, Some(6.0 * MIN));
}
