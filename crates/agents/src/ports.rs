//! Ports: the traits behind every side effect an agent has, and the clock.
//!
//! Agents call these and nothing else to touch the world. The simulator
//! (`sim`) implements them against a scripted world in virtual time; real
//! adapters implement them against commands, HTTP endpoints and files.
//!
//! Every answer says whether the simulated world gave it: the reports carry
//! a `simulated` flag (or the list of their simulated findings), and the
//! answers without a report of their own come as [`Reported`]. A port
//! cannot answer without saying which, so the record never shows invented
//! evidence as observed.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use workflow::checklist::{PrepareReport, ScanReport};
use workflow::machine::{Incident, Production, RollbackOutcome, RollbackPlan};
use workflow::record::{NotificationEntry, StagingReport, SuiteResult};
use workflow::settings::SuiteSelection;
use workflow::strategy::DeployStep;
use workflow::thresholds::MetricSample;
use workflow::types::{DeploymentId, DeploymentType, Role, ServiceName, Strategy, Version};

/// The deployment an action is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub id: DeploymentId,
    pub service: ServiceName,
    pub version: Option<Version>,
    /// What production ran before this deployment.
    pub previous_version: Option<Version>,
    pub kind: DeploymentType,
    pub strategy: Strategy,
    pub submitted_by: String,
    /// 1 for the first try of an action; more when the daemon re-runs an
    /// action that a crash interrupted.
    pub attempt: u32,
}

impl Target {
    /// The target of `record`'s deployment, for try number `attempt`.
    pub fn of(record: &workflow::Record, attempt: u32) -> Target {
        Target {
            id: record.id,
            service: record.service.clone(),
            version: record.version.clone(),
            previous_version: record.previous_version.clone(),
            kind: record.kind,
            strategy: record.strategy,
            submitted_by: record.submitted_by.clone(),
            attempt,
        }
    }
}

/// A port's answer and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reported<T> {
    pub value: T,
    /// The simulated world answered: no command, probe or source ran.
    pub simulated: bool,
}

impl<T> Reported<T> {
    /// An answer from a command, probe or source of the real world.
    pub fn observed(value: T) -> Self {
        Reported {
            value,
            simulated: false,
        }
    }

    /// An answer the simulated world made up.
    pub fn simulated(value: T) -> Self {
        Reported { value, simulated: true }
    }
}

/// Where the current time comes from. Only `SystemClock` reads the system clock.
pub trait Clock: Send + Sync {
    fn now(&self) -> DateTime<Utc>;
}

/// The real wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// DevOps' build side: tests, artifacts, migrations, configuration, backups.
#[async_trait]
pub trait Build: Send + Sync {
    async fn prepare(&self, target: &Target) -> Result<PrepareReport, String>;
}

/// DevOps' environments: staging and production.
#[async_trait]
pub trait Environments: Send + Sync {
    /// What runs in production now, asking the service itself where it can
    /// say (read when a deployment gets its production slot).
    async fn production(&self, service: &ServiceName) -> Result<Production, String>;
    /// What is known to run in production, without asking the service (read
    /// at submission, which should not wait for a command). By default the
    /// same as [`Environments::production`].
    async fn known_production(&self, service: &ServiceName) -> Result<Production, String> {
        self.production(service).await
    }
    async fn deploy_staging(&self, target: &Target) -> Result<StagingReport, String>;
    async fn step(&self, target: &Target, step: &DeployStep) -> Reported<Result<(), String>>;
    /// Health/smoke check of critical functionality in production.
    async fn health(&self, target: &Target, minute: u32) -> Reported<Result<bool, String>>;
    async fn rollback(&self, target: &Target, plan: &RollbackPlan) -> RollbackOutcome;
}

/// Metrics of a service in production.
#[async_trait]
pub trait Metrics: Send + Sync {
    /// The current production version's metrics, before DEPLOY.
    async fn baseline(&self, target: &Target) -> Result<MetricSample, String>;
    /// The new version's metrics, `minute` minutes after DEPLOY started,
    /// with `traffic_percent` of traffic on it. `Err` for a failed or empty read.
    async fn sample(&self, target: &Target, minute: u32, traffic_percent: u8) -> Result<MetricSample, String>;
}

/// QA's test suites, run against staging.
#[async_trait]
pub trait TestSuites: Send + Sync {
    async fn run(
        &self,
        target: &Target,
        selection: SuiteSelection,
        critical: &[String],
    ) -> Result<Vec<SuiteResult>, String>;
}

/// Security's scanner and incident feed.
#[async_trait]
pub trait Security: Send + Sync {
    async fn scan(&self, target: &Target) -> Result<ScanReport, String>;
    /// Incidents opened since the previous call for this deployment.
    async fn incidents(&self, target: &Target, minute: u32) -> Vec<Incident>;
}

/// Stakeholder notifications.
#[async_trait]
pub trait Notifier: Send + Sync {
    async fn send(&self, target: &Target, notification: &NotificationEntry) -> Result<(), String>;
}

/// A person's answer to an approval request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HumanDecision {
    pub id: DeploymentId,
    pub role: Role,
    pub approve: bool,
    pub by: String,
    pub reason: String,
}

/// Where decisions are delivered once a person has made them.
pub type DecisionSink = actix::Recipient<crate::messages::Decide>;

/// Asks people for decisions. The daemon's API answers through the
/// coordinator directly; the simulator schedules its scripted decisions.
pub trait People: Send + Sync {
    fn approval_requested(&self, target: &Target, role: Role, at: DateTime<Utc>, sink: DecisionSink);
}
