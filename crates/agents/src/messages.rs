//! The typed messages agents and the coordinator exchange.

use actix::Message;
use workflow::approval::Advice;
use workflow::checklist::{PrepareReport, ScanReport};
use workflow::machine::{Incident, Production, RollbackOutcome, RollbackPlan};
use workflow::record::{CriterionCheck, NotificationEntry, Record, Request, StagingReport, SuiteResult};
use workflow::settings::SuiteSelection;
use workflow::strategy::DeployStep;
use workflow::thresholds::MetricSample;
use workflow::types::{DeploymentId, Role, ServiceName};

use crate::ports::Target;

// ---- Coordinator -> DevOps -------------------------------------------------

/// What runs in production of a service. `ask_service`: also ask the
/// service itself (its `current_version`), as before DEPLOY; a submission
/// takes what is known without running anything.
#[derive(Message)]
#[rtype(result = "Result<Production, String>")]
pub struct Inspect {
    pub service: ServiceName,
    pub ask_service: bool,
}

#[derive(Message)]
#[rtype(result = "Result<PrepareReport, String>")]
pub struct Prepare(pub Target);

#[derive(Message)]
#[rtype(result = "Result<StagingReport, String>")]
pub struct DeployStaging(pub Target);

#[derive(Message)]
#[rtype(result = "Result<MetricSample, String>")]
pub struct MeasureBaseline(pub Target);

#[derive(Message)]
#[rtype(result = "crate::ports::Reported<Result<(), String>>")]
pub struct RunStep(pub Target, pub DeployStep);

/// Read the new version's metrics and health.
#[derive(Message)]
#[rtype(result = "(Result<MetricSample, String>, crate::ports::Reported<Result<bool, String>>)")]
pub struct Observe {
    pub target: Target,
    pub minute: u32,
    pub traffic_percent: u8,
}

#[derive(Message)]
#[rtype(result = "RollbackOutcome")]
pub struct Rollback(pub Target, pub RollbackPlan);

// ---- Coordinator -> QA -----------------------------------------------------

#[derive(Message)]
#[rtype(result = "Result<Vec<SuiteResult>, String>")]
pub struct Validate(pub Target, pub SuiteSelection);

// ---- Coordinator -> Security -----------------------------------------------

#[derive(Message)]
#[rtype(result = "Result<ScanReport, String>")]
pub struct Scan(pub Target);

#[derive(Message)]
#[rtype(result = "Vec<Incident>")]
pub struct CheckIncidents(pub Target, pub u32);

// ---- Coordinator -> Manager ------------------------------------------------

#[derive(Message)]
#[rtype(result = "Result<(), String>")]
pub struct Notify(pub Target, pub NotificationEntry);

// ---- Coordinator -> any approving agent ------------------------------------

/// Review the approval criteria for `role`.
#[derive(Message)]
#[rtype(result = "Advice")]
pub struct Review {
    pub target: Target,
    pub role: Role,
    pub criteria: Vec<CriterionCheck>,
}

// ---- To the Coordinator ----------------------------------------------------

/// Why the coordinator refused a command.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    #[error("{0}")]
    Invalid(String),
    #[error("no deployment {0}")]
    NotFound(DeploymentId),
    #[error("{0}")]
    Refused(String),
    /// The person may not do this (separation of duties).
    #[error("{0}")]
    Forbidden(String),
    /// The journal could not record the command, so nothing was done.
    #[error("{0}")]
    Unavailable(String),
}

/// Submit a deployment request; returns its id.
#[derive(Message)]
#[rtype(result = "Result<DeploymentId, CommandError>")]
pub struct Submit(pub Request);

/// A person's approval decision.
#[derive(Message, Debug, Clone)]
#[rtype(result = "Result<(), CommandError>")]
pub struct Decide(pub crate::ports::HumanDecision);

#[derive(Message)]
#[rtype(result = "Result<(), CommandError>")]
pub struct Cancel {
    pub id: DeploymentId,
    pub by: String,
    pub reason: String,
}

/// Roll back a deployment in production, or one that succeeded while no
/// later deployment of its service has gone out.
#[derive(Message)]
#[rtype(result = "Result<(), CommandError>")]
pub struct RequestRollback {
    pub id: DeploymentId,
    pub by: String,
    pub reason: String,
}

/// Acknowledge escalation `index` (from 1) of a deployment.
#[derive(Message)]
#[rtype(result = "Result<(), CommandError>")]
pub struct Acknowledge {
    pub id: DeploymentId,
    pub index: usize,
    pub by: String,
    /// What the person noted, kept in the journal and the record.
    pub note: Option<String>,
}

/// Lift the block a rollback put on `version` of `service` (a manager's command).
#[derive(Message)]
#[rtype(result = "Result<(), CommandError>")]
pub struct Unblock {
    pub service: ServiceName,
    pub version: workflow::types::Version,
    pub by: String,
    pub reason: String,
}

/// Journal a command someone was not allowed to give.
#[derive(Message)]
#[rtype(result = "Result<(), CommandError>")]
pub struct Refuse {
    pub id: DeploymentId,
    pub by: String,
    /// The approval role, when the command was an approval decision.
    pub role: Option<Role>,
    pub what: String,
    pub reason: String,
}

/// One page of the records matching the filters, in submission order:
/// at most `limit` of those submitted after `after`.
#[derive(Message)]
#[rtype(result = "ListPage")]
pub struct List {
    pub service: Option<ServiceName>,
    pub status: Option<workflow::types::Status>,
    /// Only deployments after this one (the last of the previous page).
    pub after: Option<DeploymentId>,
    pub limit: usize,
}

/// The answer to [`List`].
#[derive(Debug, Clone)]
pub struct ListPage {
    pub records: Vec<Record>,
    /// The last deployment of this page, when more match after it.
    pub next: Option<DeploymentId>,
}

/// Check a deployment's journal chain.
#[derive(Message)]
#[rtype(result = "Result<journal::Verification, CommandError>")]
pub struct Verify(pub DeploymentId);

/// Journal entries as they are written: the backlog (a deployment's whole
/// chain, or every entry after `after`) and a receiver for what follows.
#[derive(Message)]
#[rtype(result = "Result<(Vec<Streamed>, tokio::sync::broadcast::Receiver<Streamed>), CommandError>")]
pub struct WatchJournal {
    pub deployment: Option<DeploymentId>,
    pub after: Option<u64>,
}

/// A durable journal entry and every fact it produced: those stored in its
/// body and those a replay derives from its input (an observation's), so a
/// reader of the event stream sees what happened without replaying.
#[derive(Debug, Clone, PartialEq)]
pub struct Streamed {
    pub entry: journal::Entry,
    pub facts: Vec<workflow::Fact>,
}

/// Counters for the daemon's /metrics.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    pub by_status: std::collections::BTreeMap<String, u64>,
    /// (stage, seconds) of every finished stage.
    pub stage_seconds: Vec<(String, f64)>,
    pub queue_depth: u64,
    pub journal_writes: u64,
    pub journal_write_seconds_sum: f64,
    pub journal_write_seconds_max: f64,
    /// Journal write latency histogram: (upper bound in seconds, cumulative count).
    pub journal_write_buckets: Vec<(f64, u64)>,
}

#[derive(Message)]
#[rtype(result = "Stats")]
pub struct GetStats;

/// The deployment whose rollback blocks `.1` of service `.0`, if one does.
#[derive(Message)]
#[rtype(result = "Option<DeploymentId>")]
pub struct BlockedBy(pub ServiceName, pub workflow::types::Version);

/// The record of one deployment, with its Markdown rendered.
#[derive(Message)]
#[rtype(result = "Option<Record>")]
pub struct GetRecord(pub DeploymentId);

/// Sent to subscribers when a deployment reaches a terminal status.
#[derive(Message, Debug, Clone)]
#[rtype(result = "()")]
pub struct Finished(pub DeploymentId);

#[derive(Message)]
#[rtype(result = "()")]
pub struct Subscribe(pub actix::Recipient<Finished>);

/// Each person's command as the fleet's input.
impl From<Decide> for workflow::fleet::Input {
    fn from(msg: Decide) -> Self {
        let d = msg.0;
        workflow::fleet::Input::Decide(workflow::fleet::Decision {
            id: d.id,
            role: d.role,
            approve: d.approve,
            by: d.by,
            reason: d.reason,
        })
    }
}

impl From<Cancel> for workflow::fleet::Input {
    fn from(msg: Cancel) -> Self {
        workflow::fleet::Input::Cancel {
            id: msg.id,
            by: msg.by,
            reason: msg.reason,
        }
    }
}

impl From<RequestRollback> for workflow::fleet::Input {
    fn from(msg: RequestRollback) -> Self {
        workflow::fleet::Input::RequestRollback {
            id: msg.id,
            by: msg.by,
            reason: msg.reason,
        }
    }
}

impl From<Acknowledge> for workflow::fleet::Input {
    fn from(msg: Acknowledge) -> Self {
        workflow::fleet::Input::Acknowledge {
            id: msg.id,
            index: msg.index,
            by: msg.by,
            note: msg.note,
        }
    }
}

impl From<Unblock> for workflow::fleet::Input {
    fn from(msg: Unblock) -> Self {
        workflow::fleet::Input::Unblock {
            service: msg.service,
            version: msg.version,
            by: msg.by,
            reason: msg.reason,
        }
    }
}

impl From<Refuse> for workflow::fleet::Input {
    fn from(msg: Refuse) -> Self {
        workflow::fleet::Input::Refuse {
            id: msg.id,
            by: msg.by,
            role: msg.role,
            what: msg.what,
            reason: msg.reason,
        }
    }
}
