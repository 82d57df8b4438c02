//! The scripted world: simulated implementations of every port, driven by a
//! scenario's `[world]` table and `[[decisions]]`, in virtual time.
//!
//! This is a product feature (the `simulate` command), not a test double:
//! each action takes the virtual minutes of `[world.durations]`, production
//! state changes as deployments and rollbacks happen, and metrics follow the
//! script minute by minute. Every answer it gives is marked simulated, so
//! the records say so wherever its results appear; the answers themselves
//! are built by `agents::simulated` from the script, as the daemon builds
//! its answers for actions without a command.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agents::messages::Decide;
use agents::ports::{self, DecisionSink, HumanDecision, Reported, Target};
use agents::production::ProductionState;
use agents::simulated;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use workflow::checklist::{PrepareReport, ScanReport};
use workflow::machine::{Incident, IncidentKind, Production, RollbackOutcome, RollbackPlan};
use workflow::record::{NotificationEntry, StagingReport, SuiteResult};
use workflow::settings::SuiteSelection;
use workflow::strategy::DeployStep;
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

/// Everything the simulated world knows and has done.
pub struct World {
    spec: WorldSpec,
    production: ProductionState,
    reported: Mutex<BTreeSet<(DeploymentId, usize)>>,
    /// Deployment id -> index of the request in the scenario.
    request_of: Mutex<BTreeMap<DeploymentId, usize>>,
    decisions: Vec<crate::scenario::ScriptedDecision>,
    /// Every notification the world received, in order.
    pub sent: Mutex<Vec<NotificationEntry>>,
}

pub use agents::simulated::{SIMULATED_PREPARE, SIMULATED_STAGING};

fn minutes(m: u32) -> Duration {
    Duration::from_secs(m as u64 * 60)
}

impl World {
    pub fn new(scenario: &Scenario) -> Arc<World> {
        Arc::new(World {
            spec: scenario.world.clone(),
            production: ProductionState::new(
                scenario.world.current_version.clone(),
                scenario.world.previous_version.clone(),
            ),
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
        self.production.set(service, current, previous);
    }

    fn applies(version: &Option<Version>, target: &Target) -> bool {
        version.is_none() || version == &target.version
    }

    /// The new version's metrics at `minute` after DEPLOY started.
    fn metrics_at(&self, target: &Target, minute: u32) -> Result<MetricSample, String> {
        let mut s = self.baseline().sample();
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
        Ok(simulated::Prepare {
            tests_pass: p.tests_pass,
            build: p.build,
            migrations: p.migrations,
            migrations_tested: p.migrations_tested,
            environment_updated: p.environment_updated,
            backup: p.backup,
            instances: self.spec.instances,
        }
        .report())
    }
}

#[async_trait]
impl ports::Environments for World {
    async fn production(&self, service: &ServiceName) -> Result<Production, String> {
        Ok(self.production.production(service))
    }

    async fn deploy_staging(&self, _target: &Target) -> Result<StagingReport, String> {
        tokio::time::sleep(minutes(self.spec.durations.staging)).await;
        let s = &self.spec.staging;
        Ok(simulated::Staging {
            deploy: s.deploy,
            migrations: s.migrations,
            health: s.health,
            smoke: s.smoke,
            external_services: s.external_services,
        }
        .report())
    }

    async fn step(&self, target: &Target, step: &DeployStep) -> Reported<Result<(), String>> {
        Reported::simulated(self.scripted_step(target, step).await)
    }

    async fn health(&self, _target: &Target, _minute: u32) -> Reported<Result<bool, String>> {
        Reported::simulated(Ok(self.spec.production.health))
    }

    async fn rollback(&self, target: &Target, plan: &RollbackPlan) -> RollbackOutcome {
        tokio::time::sleep(minutes(self.spec.durations.rollback)).await;
        let ok = self.spec.production.rollback;
        if ok {
            self.production
                .rolled_back(&target.service, plan.restore_version.clone());
        }
        simulated::rollback(plan, ok)
    }
}

impl World {
    /// What the world's metrics are before a release.
    fn baseline(&self) -> simulated::Metrics {
        let b = self.spec.baseline;
        simulated::Metrics {
            error_rate: b.error_rate,
            latency_p99_ms: b.latency_p99_ms,
            cpu: b.cpu,
            memory: b.memory,
        }
    }

    async fn scripted_step(&self, target: &Target, step: &DeployStep) -> Result<(), String> {
        tokio::time::sleep(minutes(self.spec.durations.deploy_step)).await;
        let p = &self.spec.production;
        let result = match step {
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
            DeployStep::UpdateInstances { first, count, .. } => {
                let failing = p.fail_at_instance.or(if p.health { None } else { Some(1) });
                match failing {
                    Some(n) if n > *first && n <= first + count => Err(format!("instance {n} failed its health check")),
                    _ => Ok(()),
                }
            }
            _ => Ok(()),
        };
        if result.is_ok() {
            // Production changes as the new version takes the traffic.
            self.production.step_succeeded(target, step);
        }
        result
    }
}

#[async_trait]
impl ports::Metrics for World {
    async fn baseline(&self, target: &Target) -> Result<MetricSample, String> {
        self.metrics_at(target, 0).map(|_| self.baseline().sample())
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
        let suites = simulated::suites(&self.spec.qa.suites, selection, critical);
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
        Ok(simulated::scan(s.critical_vulnerabilities, &s.findings))
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
