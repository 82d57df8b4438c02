//! The scripted world: simulated implementations of every port, driven by a
//! scenario's `[world]` table and `[[decisions]]`, in virtual time.
//!
//! This is a product feature (the `simulate` command), not a test double:
//! each action takes the virtual minutes of `[world.durations]`, production
//! state changes as deployments and rollbacks happen, and metrics follow the
//! script minute by minute. Every answer it gives is marked simulated, so
//! the records say so wherever its results appear.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agents::messages::Decide;
use agents::ports::{self, DecisionSink, HumanDecision, Reported, Target};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use workflow::checklist::{PrepareReport, ScanReport};
use workflow::machine::{Incident, IncidentKind, Production, RollbackOutcome, RollbackPlan};
use workflow::record::{NotificationEntry, StagingReport, SuiteResult};
use workflow::settings::SuiteSelection;
use workflow::strategy::{Colour, DeployStep};
use workflow::thresholds::MetricSample;
use workflow::types::{DeploymentId, Role, ServiceName, Version};

use crate::scenario::{DecisionWord, IncidentKindWorld, Scenario, World as WorldSpec};

/// Virtual time: the scenario's start plus tokio's (paused) elapsed time.
pub struct VirtualClock {
    start: DateTime<Utc>,
    origin: tokio::time::Instant,
}

impl VirtualClock {
    pub fn new(start: DateTime<Utc>) -> Self {
        VirtualClock {
            start,
            origin: tokio::time::Instant::now(),
        }
    }
}

impl ports::Clock for VirtualClock {
    fn now(&self) -> DateTime<Utc> {
        let elapsed = tokio::time::Instant::now() - self.origin;
        self.start + chrono::Duration::from_std(elapsed).unwrap_or_default()
    }
}

#[derive(Debug, Clone)]
struct ServiceState {
    current: Option<Version>,
    previous: Option<Version>,
    colour: Colour,
}

/// Everything the simulated world knows and has done.
pub struct World {
    spec: WorldSpec,
    services: Mutex<BTreeMap<ServiceName, ServiceState>>,
    reported: Mutex<BTreeSet<(DeploymentId, usize)>>,
    /// Deployment id -> index of the request in the scenario.
    request_of: Mutex<BTreeMap<DeploymentId, usize>>,
    decisions: Vec<crate::scenario::ScriptedDecision>,
    /// Every notification the world received, in order.
    pub sent: Mutex<Vec<NotificationEntry>>,
}

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

fn minutes(m: u32) -> Duration {
    Duration::from_secs(m as u64 * 60)
}

impl World {
    pub fn new(scenario: &Scenario) -> Arc<World> {
        Arc::new(World {
            spec: scenario.world.clone(),
            services: Mutex::new(BTreeMap::new()),
            reported: Mutex::new(BTreeSet::new()),
            request_of: Mutex::new(BTreeMap::new()),
            decisions: scenario.decisions.clone(),
            sent: Mutex::new(vec![]),
        })
    }

    /// Remembers which scenario request a deployment came from.
    pub fn bind(&self, id: DeploymentId, request: usize) {
        self.request_of.lock().expect("world lock").insert(id, request);
    }

    /// Sets what production runs for `service`: its current and previous
    /// versions (the daemon seeds them from its journal at start-up).
    pub fn set_production(&self, service: &ServiceName, current: Option<Version>, previous: Option<Version>) {
        self.update(service, |s| {
            s.current = current;
            s.previous = previous;
        });
    }

    fn state(&self, service: &ServiceName) -> ServiceState {
        self.services
            .lock()
            .expect("world lock")
            .entry(service.clone())
            .or_insert_with(|| ServiceState {
                current: self.spec.current_version.clone(),
                previous: self.spec.previous_version.clone(),
                colour: Colour::Blue,
            })
            .clone()
    }

    fn update(&self, service: &ServiceName, f: impl FnOnce(&mut ServiceState)) {
        self.state(service);
        let mut all = self.services.lock().expect("world lock");
        if let Some(s) = all.get_mut(service) {
            f(s);
        }
    }

    /// The new version now serves all traffic: it becomes current.
    fn promote(&self, target: &Target) {
        let version = target.version.clone();
        self.update(&target.service, |s| {
            s.previous = s.current.take();
            s.current = version;
        });
    }

    fn applies(version: &Option<Version>, target: &Target) -> bool {
        version.is_none() || version == &target.version
    }

    /// The new version's metrics at `minute` after DEPLOY started.
    fn metrics_at(&self, target: &Target, minute: u32) -> Result<MetricSample, String> {
        let b = self.spec.baseline;
        let mut s = MetricSample {
            error_rate: b.error_rate,
            latency_p99_ms: b.latency_p99_ms,
            cpu: Some(b.cpu),
            memory: Some(b.memory),
            simulated: true,
        };
        let mut unavailable = false;
        for m in self
            .spec
            .metrics
            .iter()
            .filter(|m| m.minute <= minute && Self::applies(&m.version, target))
        {
            s.error_rate = m.error_rate.unwrap_or(s.error_rate);
            s.latency_p99_ms = m.latency_p99_ms.unwrap_or(s.latency_p99_ms);
            s.cpu = m.cpu.or(s.cpu);
            s.memory = m.memory.or(s.memory);
            unavailable = m.unavailable;
        }
        if unavailable {
            Err(format!(
                "metrics source returned no data at minute {minute} (simulated outage)"
            ))
        } else {
            Ok(s)
        }
    }
}

#[async_trait]
impl ports::Build for World {
    async fn prepare(&self, _target: &Target) -> Result<PrepareReport, String> {
        tokio::time::sleep(minutes(self.spec.durations.prepare)).await;
        let p = &self.spec.prepare;
        Ok(PrepareReport {
            tests_passed: p.tests_pass,
            build_succeeded: p.build,
            artifact: if p.build {
                "simulated artifact".into()
            } else {
                "none".into()
            },
            migrations: p.migrations,
            migrations_tested: p.migrations_tested,
            environment_updated: p.environment_updated,
            backup_verified: p.backup,
            instances: self.spec.instances,
            simulated: SIMULATED_PREPARE.iter().map(|f| f.to_string()).collect(),
        })
    }
}

#[async_trait]
impl ports::Environments for World {
    async fn production(&self, service: &ServiceName) -> Result<Production, String> {
        let s = self.state(service);
        Ok(Production {
            current_version: s.current,
            previous_version: s.previous,
            active_colour: s.colour,
        })
    }

    async fn deploy_staging(&self, _target: &Target) -> Result<StagingReport, String> {
        tokio::time::sleep(minutes(self.spec.durations.staging)).await;
        let s = &self.spec.staging;
        Ok(StagingReport {
            deployed: s.deploy,
            application_started: s.deploy,
            health_endpoints: s.deploy && s.health,
            migrations_complete: s.deploy && s.migrations,
            external_services: s.deploy && s.external_services,
            smoke_tests: s.deploy && s.smoke,
            simulated: SIMULATED_STAGING.iter().map(|f| f.to_string()).collect(),
        })
    }

    async fn step(&self, target: &Target, step: &DeployStep) -> Reported<Result<(), String>> {
        Reported::simulated(self.scripted_step(target, step).await)
    }

    async fn health(&self, _target: &Target, _minute: u32) -> Reported<Result<bool, String>> {
        Reported::simulated(Ok(self.spec.production.health))
    }

    async fn rollback(&self, target: &Target, plan: &RollbackPlan) -> RollbackOutcome {
        let mut outcome = self.scripted_rollback(target, plan).await;
        outcome.simulated_steps = vec![true; outcome.steps.len()];
        outcome
    }
}

impl World {
    async fn scripted_step(&self, target: &Target, step: &DeployStep) -> Result<(), String> {
        tokio::time::sleep(minutes(self.spec.durations.deploy_step)).await;
        let p = &self.spec.production;
        match step {
            DeployStep::Backup | DeployStep::RunMigrations { .. } => Ok(()),
            DeployStep::DeployInactive { .. } if !p.deploy => Err("installation of the new version failed".into()),
            DeployStep::CanaryWeight { .. } if !p.deploy => Err("installation of canary instances failed".into()),
            DeployStep::UpdateInstances { first, .. } if !p.deploy => {
                Err(format!("instance {} failed to install", first + 1))
            }
            DeployStep::HealthCheckColour { colour } if !p.health => {
                Err(format!("{colour:?} health check failed").to_lowercase())
            }
            DeployStep::CanaryWeight { .. } if !p.health => Err("canary instances fail their health checks".into()),
            DeployStep::UpdateInstances { first, count, total } => {
                let failing = p.fail_at_instance.or(if p.health { None } else { Some(1) });
                if let Some(n) = failing {
                    if n > *first && n <= first + count {
                        return Err(format!("instance {n} failed its health check"));
                    }
                }
                if first + count >= *total {
                    self.promote(target);
                }
                Ok(())
            }
            DeployStep::SwitchTraffic { colour } => {
                let colour = *colour;
                self.update(&target.service, |s| s.colour = colour);
                self.promote(target);
                Ok(())
            }
            DeployStep::CanaryWeight { percent: 100 } => {
                self.promote(target);
                Ok(())
            }
            _ => Ok(()),
        }
    }

    async fn scripted_rollback(&self, target: &Target, plan: &RollbackPlan) -> RollbackOutcome {
        tokio::time::sleep(minutes(self.spec.durations.rollback)).await;
        let ok = self.spec.production.rollback;
        let restore = plan.restore_version.clone();
        let shown = restore
            .as_ref()
            .map(|v| format!("v{v}"))
            .unwrap_or_else(|| "no previous version (new version removed)".into());
        let mut steps = vec![(
            format!("Initiate rollback to previous version ({shown})"),
            ok,
            if ok {
                String::new()
            } else {
                "restoring the previous version failed (simulated)".into()
            },
        )];
        if ok {
            self.update(&target.service, |s| {
                if s.current != restore {
                    s.current = restore.clone();
                }
            });
        }
        if plan.revert_migrations {
            let detail = if ok {
                String::new()
            } else {
                "not attempted: the previous version was not restored".into()
            };
            steps.push(("Revert database migrations".into(), ok, detail));
        } else {
            steps.push((
                "Revert database migrations: not needed or not safe, skipped".into(),
                true,
                String::new(),
            ));
        }
        if plan.clear_caches {
            let detail = if ok {
                String::new()
            } else {
                "not attempted: the previous version was not restored".into()
            };
            steps.push(("Clear caches".into(), ok, detail));
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
            steps,
            simulated_steps: vec![],
            restored: ok,
            migrations_reverted: ok && plan.revert_migrations,
            caches_cleared: ok && plan.clear_caches,
            verified: ok,
        }
    }
}

#[async_trait]
impl ports::Metrics for World {
    async fn baseline(&self, target: &Target) -> Result<MetricSample, String> {
        let b = self.spec.baseline;
        match self.metrics_at(target, 0) {
            Err(e) => Err(e),
            Ok(_) => Ok(MetricSample {
                error_rate: b.error_rate,
                latency_p99_ms: b.latency_p99_ms,
                cpu: Some(b.cpu),
                memory: Some(b.memory),
                simulated: true,
            }),
        }
    }

    async fn sample(&self, target: &Target, minute: u32, _traffic_percent: u8) -> Result<MetricSample, String> {
        self.metrics_at(target, minute)
    }
}

#[async_trait]
impl ports::TestSuites for World {
    async fn run(
        &self,
        _target: &Target,
        selection: SuiteSelection,
        critical: &[String],
    ) -> Result<Vec<SuiteResult>, String> {
        let suites: Vec<SuiteResult> = self
            .spec
            .qa
            .suites
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
            .collect();
        let minutes_taken = if selection == SuiteSelection::All {
            self.spec.durations.validate
        } else {
            self.spec.durations.validate.div_ceil(3)
        };
        tokio::time::sleep(minutes(minutes_taken)).await;
        Ok(suites)
    }
}

#[async_trait]
impl ports::Security for World {
    async fn scan(&self, _target: &Target) -> Result<ScanReport, String> {
        tokio::time::sleep(minutes(self.spec.durations.scan)).await;
        let s = &self.spec.security;
        let mut findings = s.findings.clone();
        if findings.is_empty() && s.critical_vulnerabilities > 0 {
            findings = (1..=s.critical_vulnerabilities)
                .map(|i| format!("critical finding #{i} (simulated)"))
                .collect();
        }
        Ok(ScanReport {
            critical_vulnerabilities: s.critical_vulnerabilities,
            findings,
            simulated: true,
        })
    }

    async fn incidents(&self, target: &Target, minute: u32) -> Vec<Incident> {
        let mut reported = self.reported.lock().expect("world lock");
        let mut out = vec![];
        for (i, inc) in self.spec.incidents.iter().enumerate() {
            if inc.minute <= minute && Self::applies(&inc.version, target) && reported.insert((target.id, i)) {
                out.push(Incident {
                    kind: match inc.kind {
                        IncidentKindWorld::SecurityVulnerability => IncidentKind::SecurityVulnerability,
                        IncidentKindWorld::CriticalFunctionalityBroken => IncidentKind::CriticalFunctionalityBroken,
                    },
                    detail: inc.detail.clone(),
                });
            }
        }
        out
    }
}

#[async_trait]
impl ports::Notifier for World {
    async fn send(&self, _target: &Target, notification: &NotificationEntry) -> Result<(), String> {
        self.sent.lock().expect("world lock").push(notification.clone());
        if self.spec.notifications.fail {
            Err("notification channel unavailable (simulated)".into())
        } else {
            Ok(())
        }
    }
}

impl ports::People for World {
    fn approval_requested(&self, target: &Target, role: Role, _at: DateTime<Utc>, sink: DecisionSink) {
        let request = self.request_of.lock().expect("world lock").get(&target.id).copied();
        for d in self
            .decisions
            .iter()
            .filter(|d| d.role == role && (d.request.is_none() || d.request == request))
        {
            let decision = HumanDecision {
                id: target.id,
                role,
                approve: d.decision == DecisionWord::Approve,
                by: d.by.clone(),
                reason: d.reason.clone().unwrap_or_else(|| match d.decision {
                    DecisionWord::Approve => "approved".into(),
                    DecisionWord::Reject => "rejected".into(),
                }),
            };
            let delay = minutes(d.after_minutes);
            let sink = sink.clone();
            actix::spawn(async move {
                tokio::time::sleep(delay).await;
                // A refused decision is recorded by the coordinator; nothing to do here.
                let _ = sink.send(Decide(decision)).await;
            });
        }
    }
}
