//! Property tests of the fleet: random sequences of submissions over several
//! services, agents' answers in any order, timers, people's commands and
//! crashes (modelled as "replay the journal written so far, resume, and go
//! on"), checked after every step against the fleet's invariants:
//!
//! - never two deployments of one service past APPROVE (rollback-type
//!   deployments excepted: they never wait, and stop the others);
//! - a free slot goes to the earliest submitted deployment waiting for it;
//! - the fleet rebuilt from the journal written so far equals the live one;
//! - a call is issued once per attempt, and an effect whose answer was
//!   journaled is never asked again;
//! - a version that was rolled back is refused for its service, and only
//!   while no manager has unblocked it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use proptest::prelude::{any, prop, prop_oneof, proptest, ProptestConfig, TestCaseError};
use proptest::strategy::Strategy as _;
use proptest::{prop_assert, prop_assert_eq};

use workflow::approval;
use workflow::checklist::{PrepareReport, ScanReport};
use workflow::fleet::{Call, Fleet, FleetOutput, Input, JournalEntry, Refusal, Reply, Work};
use workflow::machine::{Effect, Event, Observation, Production, ProductionReading, RollbackOutcome};
use workflow::record::{Request, StagingReport, SuiteResult};
use workflow::settings::Settings;
use workflow::strategy::Colour;
use workflow::thresholds::MetricSample;
use workflow::types::{DeploymentId, DeploymentType, MigrationKind, ServiceName, Stage, Status, Strategy, Version};

const SERVICES: [&str; 3] = ["checkout", "search", "cart"];

fn start() -> DateTime<Utc> {
    // Tuesday 2026-12-01 10:05 UTC: inside the default Tue-Thu 10:00-12:00 window.
    "2026-12-01T10:05:00Z".parse().expect("a timestamp")
}

fn production() -> Production {
    Production {
        current_version: Some(Version::parse("2.4.0").expect("a version")),
        previous_version: Some(Version::parse("2.3.9").expect("a version")),
        active_colour: Colour::Blue,
        observed: None,
    }
}

/// Production as [`production`] has it, while the service says it runs another version.
fn disagreeing() -> Production {
    Production {
        observed: Some(Box::new(ProductionReading {
            source: "current_version".into(),
            version: Ok(Some(Version::parse("2.3.1").expect("a version"))),
        })),
        ..production()
    }
}

fn request(service: usize, kind: DeploymentType, strategy: Strategy, n: usize) -> Request {
    Request {
        service: ServiceName::parse(SERVICES[service % SERVICES.len()]).expect("a service"),
        version: (kind != DeploymentType::Rollback).then(|| Version::parse(&format!("2.5.{n}")).expect("a version")),
        kind,
        strategy: Some(strategy),
        submitted_by: "alice".into(),
        changes: vec!["A change".into()],
        scheduled_for: None,
        attest: vec![],
        window_override: None,
    }
}

/// The world's answer to one effect; `ok` decides between success and failure where an agent can fail.
fn answer(effect: &Effect, ok: bool, settings: &Settings) -> Option<Event> {
    let fail = |what: &str| format!("{what} failed");
    Some(match effect {
        Effect::Prepare => Event::Prepared(if ok {
            Ok(PrepareReport {
                tests_passed: true,
                build_succeeded: true,
                artifact: "app.tar.gz".into(),
                migrations: MigrationKind::None,
                migrations_tested: true,
                environment_updated: true,
                backup_verified: true,
                instances: 3,
                simulated: vec![],
            })
        } else {
            Err(fail("prepare"))
        }),
        Effect::Scan => Event::Scanned(Ok(ScanReport {
            critical_vulnerabilities: 0,
            findings: vec![],
            simulated: false,
        })),
        Effect::DeployStaging => Event::Staged(Ok(StagingReport {
            deployed: true,
            application_started: true,
            health_endpoints: true,
            migrations_complete: true,
            external_services: true,
            smoke_tests: ok,
            simulated: vec![],
        })),
        Effect::Validate { .. } => Event::Validated(Ok(vec![SuiteResult {
            name: "unit".into(),
            passed: 10,
            failed: 0,
            skipped: 0,
            failing_tests: vec![],
            simulated: false,
        }])),
        Effect::Notify(entry) => Event::Notified {
            id: entry.id.clone(),
            result: Ok(()),
        },
        Effect::Review { role, criteria } => Event::Reviewed {
            role: *role,
            advice: approval::advise(*role, settings.agents.get(*role).mode, criteria),
        },
        Effect::MeasureBaseline => Event::BaselineMeasured(Ok(MetricSample {
            error_rate: 0.002,
            latency_p99_ms: 100.0,
            cpu: Some(0.4),
            memory: Some(0.5),
            simulated: false,
        })),
        Effect::Step { index, .. } => Event::StepDone {
            index: *index,
            result: if ok { Ok(()) } else { Err(fail("step")) },
            simulated: false,
        },
        Effect::Observe { .. } => Event::Observed(Observation {
            metrics: Ok(MetricSample {
                error_rate: if ok { 0.002 } else { 0.09 },
                latency_p99_ms: 100.0,
                cpu: Some(0.4),
                memory: Some(0.5),
                simulated: false,
            }),
            healthy: Ok(true),
            health_simulated: false,
            incidents: vec![],
        }),
        Effect::Rollback(_) => Event::RolledBack(RollbackOutcome {
            steps: vec![("Initiate rollback".into(), ok, String::new())],
            simulated_steps: vec![],
            restored: ok,
            migrations_reverted: false,
            caches_cleared: false,
            verified: ok,
        }),
        Effect::AwaitDecision { .. } | Effect::Timer { .. } | Effect::AcquireSlot | Effect::Finished => return None,
    })
}

/// One step of a run, interpreted against the state at that point.
#[derive(Debug, Clone)]
enum Step {
    Submit {
        service: usize,
        kind: u8,
        strategy: u8,
    },
    /// Answer the outstanding call at this index (modulo), well or badly.
    Answer {
        index: usize,
        ok: bool,
    },
    /// Read production for a slot at this index (modulo), or fail to; the
    /// service itself says it runs what the journal says, or another version.
    Slot {
        index: usize,
        ok: bool,
        agrees: bool,
    },
    /// The clock moves to the earliest timer, which fires.
    Timer,
    Cancel {
        index: usize,
    },
    Rollback {
        index: usize,
    },
    Acknowledge {
        index: usize,
    },
    /// Submit again the version of the deployment at this index (modulo), as a standard release.
    Resubmit {
        index: usize,
    },
    /// A manager unblocks the blocked version at this index (modulo).
    Unblock {
        index: usize,
    },
    /// The process dies: calls in flight are lost; the fleet is rebuilt from the journal and resumes.
    Crash,
}

fn steps() -> impl proptest::strategy::Strategy<Value = Vec<Step>> {
    let step = prop_oneof![
        3 => (0usize..3, 0u8..12, 0u8..3).prop_map(|(service, kind, strategy)| Step::Submit { service, kind, strategy }),
        30 => (any::<usize>(), proptest::bool::weighted(0.985)).prop_map(|(index, ok)| Step::Answer { index, ok }),
        4 => (any::<usize>(), proptest::bool::weighted(0.9), proptest::bool::weighted(0.9))
            .prop_map(|(index, ok, agrees)| Step::Slot { index, ok, agrees }),
        12 => proptest::strategy::Just(Step::Timer),
        1 => any::<usize>().prop_map(|index| Step::Cancel { index }),
        1 => any::<usize>().prop_map(|index| Step::Rollback { index }),
        1 => any::<usize>().prop_map(|index| Step::Acknowledge { index }),
        1 => any::<usize>().prop_map(|index| Step::Resubmit { index }),
        1 => any::<usize>().prop_map(|index| Step::Unblock { index }),
        1 => proptest::strategy::Just(Step::Crash),
    ];
    prop::collection::vec(step, 50..400)
}

/// Every entry reads back from the body stored for it, in this format and
/// in the first one, and the quick path of `decode` reads what serde's
/// general reading of the tagged body reads.
fn stored_bodies_read_back(entry: &JournalEntry) -> Result<(), TestCaseError> {
    let body = entry.encode().map_err(TestCaseError::fail)?;
    let general: JournalEntry = serde_json::from_str(&body).map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(JournalEntry::decode(&body), Ok(general));
    let first_format = serde_json::to_string(entry).map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(JournalEntry::decode(&first_format), Ok(entry.clone()));
    Ok(())
}

/// A fleet with its journal and the work it handed out, as a shell keeps them.
struct Run {
    settings: Arc<Settings>,
    fleet: Fleet,
    now: DateTime<Utc>,
    journal: Vec<(DeploymentId, DateTime<Utc>, JournalEntry)>,
    calls: Vec<Call>,
    timers: Vec<Call>,
    reads: Vec<(DeploymentId, ServiceName)>,
    /// Every (deployment, effect, attempt) issued.
    issued: BTreeSet<(DeploymentId, String, u32)>,
    /// Every (deployment, effect) whose answer is journaled.
    answered: BTreeSet<(DeploymentId, String)>,
    submitted: usize,
}

impl Run {
    fn new() -> Run {
        let mut settings = Settings::builtin();
        settings.escalation.repeated_failures = 2;
        // Short waits, so that many deployments get to the end of MONITOR within a run.
        settings.types.standard.monitoring_minutes = 10.0;
        settings.types.hotfix.monitoring_minutes = 10.0;
        settings.strategies.canary.analysis_minutes = 2.0;
        let settings = Arc::new(settings);
        Run {
            fleet: Fleet::new(settings.clone()),
            settings,
            now: start(),
            journal: vec![],
            calls: vec![],
            timers: vec![],
            reads: vec![],
            issued: BTreeSet::new(),
            answered: BTreeSet::new(),
            submitted: 0,
        }
    }

    fn handle(&mut self, input: Input) -> Result<bool, TestCaseError> {
        let out = self.fleet.handle(self.now, input);
        let journaled = !out.entries.is_empty();
        self.absorb(out)?;
        Ok(journaled)
    }

    /// Gives the fleet the answer to `call`, and remembers it once it is journaled.
    fn answer(&mut self, call: Call, event: Event) -> Result<(), TestCaseError> {
        let key = (call.id, format!("{:?}", call.effect));
        if self.handle(Input::Answer { id: call.id, event })? {
            self.answered.insert(key);
        }
        Ok(())
    }

    fn absorb(&mut self, out: FleetOutput) -> Result<(), TestCaseError> {
        for s in out.entries {
            stored_bodies_read_back(&s.entry)?;
            self.journal.push((s.id, s.at, s.entry));
        }
        prop_assert!(out.reload.is_empty(), "an illegal transition: {:?}", out.warnings);
        for work in out.work {
            match work {
                Work::Call(call) => {
                    let key = (call.id, format!("{:?}", call.effect), call.attempt);
                    // A timer is armed again after a crash, at its original time; a call runs again only
                    // as a new attempt.
                    let timer = matches!(call.effect, Effect::Timer { .. });
                    prop_assert!(self.issued.insert(key.clone()) || timer, "issued twice: {key:?}");
                    prop_assert!(
                        !self.answered.contains(&(key.0, key.1.clone())),
                        "asked again after its answer was journaled: {key:?}"
                    );
                    match call.effect {
                        Effect::Timer { .. } => self.timers.push(call),
                        Effect::AwaitDecision { .. } => {}
                        _ => self.calls.push(call),
                    }
                }
                Work::ReadProduction { id, service } => {
                    // A free slot goes to the earliest submitted deployment waiting for it.
                    let earliest = self.fleet.waiting(&service).into_iter().min();
                    prop_assert!(
                        earliest.is_none_or(|e| e >= id),
                        "{service}'s slot offered to {id} while {earliest:?} waits"
                    );
                    self.reads.push((id, service));
                }
                Work::Finished(_) => {}
            }
        }
        Ok(())
    }

    fn do_step(&mut self, step: &Step) -> Result<(), TestCaseError> {
        match *step {
            Step::Submit {
                service,
                kind,
                strategy,
            } => {
                let kind = match kind {
                    0..=7 => DeploymentType::Standard,
                    8..=10 => DeploymentType::Hotfix,
                    _ => DeploymentType::Rollback,
                };
                let strategy = Strategy::ALL[strategy as usize % Strategy::ALL.len()];
                self.submitted += 1;
                let request = request(service, kind, strategy, self.submitted);
                self.handle(Input::Submit {
                    request,
                    production: production(),
                })?;
            }
            Step::Answer { index, ok } => {
                if self.calls.is_empty() {
                    return Ok(());
                }
                let call = self.calls.remove(index % self.calls.len());
                if let Some(event) = answer(&call.effect, ok, &self.settings) {
                    self.now += Duration::seconds(5);
                    self.answer(call, event)?;
                }
            }
            Step::Slot { index, ok, agrees } => {
                if self.reads.is_empty() {
                    return Ok(());
                }
                let (id, service) = self.reads.remove(index % self.reads.len());
                if ok {
                    let production = if agrees { production() } else { disagreeing() };
                    self.handle(Input::SlotGranted { id, production })?;
                } else {
                    self.handle(Input::SlotUnavailable { service })?;
                    self.handle(Input::GrantSlots)?;
                }
            }
            Step::Timer => {
                let Some(i) = (0..self.timers.len()).min_by_key(|&i| match self.timers[i].effect {
                    Effect::Timer { at, token } => (at, token),
                    _ => unreachable!("only timers"),
                }) else {
                    return Ok(());
                };
                let call = self.timers.remove(i);
                let Effect::Timer { at, token } = call.effect else {
                    unreachable!("only timers")
                };
                self.now = self.now.max(at);
                self.answer(call, Event::Timer(token))?;
            }
            Step::Cancel { index } | Step::Rollback { index } | Step::Acknowledge { index } => {
                if self.submitted == 0 {
                    return Ok(());
                }
                let id = DeploymentId(1 + (index % self.submitted) as u64);
                let (by, reason) = ("bob".to_string(), "a person's command".to_string());
                let input = match step {
                    Step::Cancel { .. } => Input::Cancel { id, by, reason },
                    Step::Rollback { .. } => Input::RequestRollback { id, by, reason },
                    _ => Input::Acknowledge {
                        id,
                        index: 1,
                        by,
                        note: (index % 2 == 0).then(|| reason.clone()),
                    },
                };
                // Refusals are fine: only what the fleet does with them is checked.
                self.handle(input)?;
            }
            Step::Resubmit { index } => {
                if self.submitted == 0 {
                    return Ok(());
                }
                let id = DeploymentId(1 + (index % self.submitted) as u64);
                let Some(record) = self.fleet.machine(id).map(|m| m.record().clone()) else {
                    return Ok(());
                };
                let Some(version) = record.version.clone() else {
                    return Ok(());
                };
                let blocked = self.fleet.blocked_by(&record.service, &version);
                let out = self.fleet.handle(
                    self.now,
                    Input::Submit {
                        request: Request {
                            service: record.service.clone(),
                            version: Some(version.clone()),
                            kind: DeploymentType::Standard,
                            strategy: Some(Strategy::Canary),
                            submitted_by: "alice".into(),
                            changes: vec![],
                            scheduled_for: None,
                            attest: vec![],
                            window_override: None,
                        },
                        production: production(),
                    },
                );
                match (&out.reply, blocked) {
                    (Ok(Reply::Submitted(_)), None) => self.submitted += 1,
                    (Err(Refusal::Refused(why)), Some(by)) => {
                        prop_assert!(
                            why.contains(&format!("{} {version} is blocked: deployment {by}", record.service)),
                            "{why}"
                        );
                    }
                    (reply, blocked) => {
                        return Err(TestCaseError::fail(format!(
                            "{} {version} (blocked by {blocked:?}) was answered {reply:?}",
                            record.service
                        )))
                    }
                }
                self.absorb(out)?;
            }
            Step::Unblock { index } => {
                let blocked: Vec<(ServiceName, Version)> =
                    self.fleet.blocked().map(|(s, v, _)| (s.clone(), v.clone())).collect();
                if blocked.is_empty() {
                    return Ok(());
                }
                let (service, version) = blocked[index % blocked.len()].clone();
                self.handle(Input::Unblock {
                    service: service.clone(),
                    version: version.clone(),
                    by: "mia".into(),
                    reason: "fixed in the config, not the code".into(),
                })?;
                prop_assert!(
                    self.fleet.blocked_by(&service, &version).is_none(),
                    "{service} {version} is still blocked after its unblock"
                );
            }
            Step::Crash => {
                let (fleet, _) = Fleet::replay(self.settings.clone(), self.journal.clone())
                    .map_err(|e| TestCaseError::fail(format!("replay after a crash: {e}")))?;
                self.fleet = fleet;
                self.calls.clear();
                self.timers.clear();
                self.reads.clear();
                self.handle(Input::Resume {
                    running: BTreeMap::new(),
                })?;
            }
        }
        Ok(())
    }

    fn check(&self) -> Result<(), TestCaseError> {
        // Never two deployments of one service past APPROVE.
        let mut past_approve: BTreeMap<&ServiceName, Vec<DeploymentId>> = BTreeMap::new();
        for m in self.fleet.machines() {
            let past = matches!(m.stage(), Some(Stage::Deploy | Stage::Monitor | Stage::Rollback));
            if past && !m.status().is_terminal() && m.record().kind != DeploymentType::Rollback {
                past_approve.entry(&m.record().service).or_default().push(m.id());
            }
        }
        for (service, ids) in &past_approve {
            prop_assert!(ids.len() <= 1, "{service}: {ids:?} are past APPROVE together");
            prop_assert!(
                self.fleet.slots().get(*service) == ids.first(),
                "{service}: {ids:?} past APPROVE, slot held by {:?}; {:?}",
                self.fleet.slots().get(*service),
                self.fleet
                    .machines()
                    .filter(|m| m.record().service == **service)
                    .map(|m| (
                        m.id(),
                        m.record().kind,
                        m.stage(),
                        m.status(),
                        m.record()
                            .timeline
                            .iter()
                            .rev()
                            .take(6)
                            .map(|t| t.event.clone())
                            .collect::<Vec<_>>()
                    ))
                    .collect::<Vec<_>>()
            );
        }
        // The fleet rebuilt from the journal equals the live one.
        let (replayed, warnings) = Fleet::replay(self.settings.clone(), self.journal.clone())
            .map_err(|e| TestCaseError::fail(format!("replay: {e}")))?;
        prop_assert!(warnings.is_empty(), "replay warnings: {warnings:?}");
        let live = format!("{:#?}", self.fleet.journaled());
        let rebuilt = format!("{replayed:#?}");
        if live != rebuilt {
            let first = live.lines().zip(rebuilt.lines()).position(|(a, b)| a != b).unwrap_or(0);
            let context = |text: &str| {
                text.lines()
                    .skip(first.saturating_sub(30))
                    .take(40)
                    .collect::<Vec<_>>()
                    .join("\n")
            };
            return Err(TestCaseError::fail(format!(
                "the replayed fleet differs from the live one at line {first}:\nlive:\n{}\nreplayed:\n{}",
                context(&live),
                context(&rebuilt)
            )));
        }
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn the_fleet_keeps_its_invariants_through_any_inputs_and_crashes(steps in steps()) {
        let mut run = Run::new();
        for step in &steps {
            run.do_step(step)?;
            run.check()?;
        }
    }
}

/// A standard deployment submitted while another of its service is in
/// production waits as queued, then goes out once the first has finished,
/// and a crash in between changes nothing of that.
#[test]
fn a_second_deployment_waits_for_the_slot_and_a_crash_keeps_the_queue() {
    let mut run = Run::new();
    let submit = |run: &mut Run, n| {
        run.submitted += 1;
        run.handle(Input::Submit {
            request: request(0, DeploymentType::Standard, Strategy::Canary, n),
            production: production(),
        })
        .expect("submitted");
    };
    submit(&mut run, 1);
    submit(&mut run, 2);
    // Answer everything well until both have asked for the slot.
    for _ in 0..200 {
        if run.fleet.waiting(&ServiceName::parse("checkout").unwrap()).len() >= 2 {
            break;
        }
        if run.calls.is_empty() {
            run.do_step(&Step::Timer).expect("a timer");
        } else {
            run.do_step(&Step::Answer { index: 0, ok: true }).expect("an answer");
        }
    }
    let checkout = ServiceName::parse("checkout").unwrap();
    assert_eq!(run.reads.len(), 1, "one production read for the one free slot");
    assert_eq!(run.reads[0].0, DeploymentId(1));
    assert_eq!(run.fleet.waiting(&checkout), [DeploymentId(1), DeploymentId(2)]);
    run.do_step(&Step::Crash).expect("a crash");
    run.check().expect("invariants after the crash");
    assert_eq!(
        run.reads,
        [(DeploymentId(1), checkout.clone())],
        "the resume offers the slot again to d-1"
    );
    run.do_step(&Step::Slot {
        index: 0,
        ok: true,
        agrees: true,
    })
    .expect("slot granted");
    assert_eq!(run.fleet.slots().get(&checkout), Some(&DeploymentId(1)));
    assert_eq!(run.fleet.waiting(&checkout), [DeploymentId(2)]);
    run.check().expect("invariants");
}

/// A deployment given the slot while production runs another version than
/// the journal says is held before DEPLOY; the slot goes on to the next
/// deployment waiting, which reads production again.
#[test]
fn a_deployment_held_for_a_production_mismatch_hands_the_slot_on() {
    let mut run = Run::new();
    let checkout = ServiceName::parse("checkout").unwrap();
    for n in 1..=2 {
        run.submitted += 1;
        run.handle(Input::Submit {
            request: request(0, DeploymentType::Standard, Strategy::Canary, n),
            production: production(),
        })
        .expect("submitted");
    }
    for _ in 0..200 {
        if run.fleet.waiting(&checkout).len() >= 2 {
            break;
        }
        if run.calls.is_empty() {
            run.do_step(&Step::Timer).expect("a timer");
        } else {
            run.do_step(&Step::Answer { index: 0, ok: true }).expect("an answer");
        }
    }
    assert_eq!(run.reads, [(DeploymentId(1), checkout.clone())]);
    run.do_step(&Step::Slot {
        index: 0,
        ok: true,
        agrees: false,
    })
    .expect("slot granted");
    let held = run.fleet.machine(DeploymentId(1)).expect("d-1");
    assert_eq!(held.status(), Status::Escalated);
    // It finishes once its escalation notice is sent.
    assert_eq!(run.fleet.slots().get(&checkout), Some(&DeploymentId(1)));
    while !run.calls.is_empty() {
        run.do_step(&Step::Answer { index: 0, ok: true }).expect("an answer");
    }
    let held = run.fleet.machine(DeploymentId(1)).expect("d-1");
    assert!(held.is_finished());
    assert!(held.record().deploy_log.is_none(), "nothing of d-1 deployed");
    assert!(
        held.record().escalations[0]
            .detail
            .starts_with("production of checkout runs 2.3.1 by `current_version`, but the journal says 2.4.0"),
        "{:?}",
        held.record().escalations
    );
    assert_eq!(
        run.fleet.slots().get(&checkout),
        None,
        "the held deployment gave the slot back"
    );
    assert_eq!(
        run.reads,
        [(DeploymentId(2), checkout.clone())],
        "production is read again for d-2"
    );
    run.check().expect("invariants");
    run.do_step(&Step::Crash).expect("a crash");
    run.check().expect("invariants after the crash");
    assert_eq!(
        run.fleet.machine(DeploymentId(1)).map(|m| m.status()),
        Some(Status::Escalated)
    );
    assert_eq!(run.reads, [(DeploymentId(2), checkout)]);
}

/// A release rolled back blocks its version for its service: submitting it
/// again, even as a hotfix, is refused naming the rollback, until a manager
/// unblocks it (journaled on the deployment that blocked it, and kept
/// through a crash).
#[test]
fn a_rolled_back_version_is_refused_until_a_manager_unblocks_it() {
    let mut run = Run::new();
    let checkout = ServiceName::parse("checkout").unwrap();
    let version = Version::parse("2.5.1").unwrap();
    run.submitted += 1;
    run.handle(Input::Submit {
        request: request(0, DeploymentType::Standard, Strategy::Canary, 1),
        production: production(),
    })
    .expect("submitted");
    let finished = |run: &Run| run.fleet.machine(DeploymentId(1)).is_some_and(|m| m.is_finished());
    let drive = |run: &mut Run| {
        for _ in 0..2000 {
            if finished(run) && run.calls.is_empty() {
                break;
            }
            if !run.reads.is_empty() {
                run.do_step(&Step::Slot {
                    index: 0,
                    ok: true,
                    agrees: true,
                })
                .expect("a slot");
            } else if run.calls.is_empty() {
                run.do_step(&Step::Timer).expect("a timer");
            } else {
                run.do_step(&Step::Answer { index: 0, ok: true }).expect("an answer");
            }
        }
    };
    drive(&mut run);
    assert_eq!(run.fleet.machine(DeploymentId(1)).unwrap().status(), Status::Succeeded);
    assert_eq!(
        run.fleet.blocked_by(&checkout, &version),
        None,
        "a success blocks nothing"
    );

    // Rolled back by hand after it succeeded: its version is blocked.
    run.handle(Input::RequestRollback {
        id: DeploymentId(1),
        by: "bob".into(),
        reason: "refunds fail".into(),
    })
    .expect("rollback requested");
    drive(&mut run);
    assert_eq!(run.fleet.machine(DeploymentId(1)).unwrap().status(), Status::RolledBack);
    assert_eq!(run.fleet.blocked_by(&checkout, &version), Some(DeploymentId(1)));

    let again = |run: &mut Run, kind| {
        run.fleet.handle(
            run.now,
            Input::Submit {
                request: Request {
                    version: Some(version.clone()),
                    ..request(0, kind, Strategy::Canary, 1)
                },
                production: production(),
            },
        )
    };
    for kind in [DeploymentType::Standard, DeploymentType::Hotfix] {
        let out = again(&mut run, kind);
        match &out.reply {
            Err(Refusal::Refused(why)) => assert!(
                why.starts_with("checkout 2.5.1 is blocked: deployment d-000001 was rolled back at ")
                    && why.contains("`stagecoach unblock checkout 2.5.1 --reason TEXT`"),
                "{why}"
            ),
            other => panic!("a {kind} of a blocked version was answered {other:?}"),
        }
        assert!(out.entries.is_empty(), "a refused submission journals nothing");
    }

    // Unblocking a version that is not blocked is refused; a crash keeps the block.
    let out = run.fleet.handle(
        run.now,
        Input::Unblock {
            service: checkout.clone(),
            version: Version::parse("9.9.9").unwrap(),
            by: "mia".into(),
            reason: "-".into(),
        },
    );
    assert_eq!(out.reply, Err(Refusal::Refused("checkout 9.9.9 is not blocked".into())));
    run.do_step(&Step::Crash).expect("a crash");
    assert_eq!(run.fleet.blocked_by(&checkout, &version), Some(DeploymentId(1)));

    run.handle(Input::Unblock {
        service: checkout.clone(),
        version: version.clone(),
        by: "mia".into(),
        reason: "the refund failure was a config error, fixed".into(),
    })
    .expect("unblocked");
    assert_eq!(run.fleet.blocked_by(&checkout, &version), None);
    let record = run.fleet.machine(DeploymentId(1)).unwrap().record().clone();
    let unblocked = record.unblocked.as_ref().expect("the unblock is in the record");
    assert_eq!(unblocked.by, "mia");
    assert!(record
        .timeline
        .iter()
        .any(|t| t.event == "checkout v2.5.1 unblocked by mia: the refund failure was a config error, fixed"));
    run.check().expect("invariants");
    let out = again(&mut run, DeploymentType::Standard);
    assert!(matches!(out.reply, Ok(Reply::Submitted(_))), "{:?}", out.reply);
}
