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

#[derive(Message)]
#[rtype(result = "Result<Production, String>")]
pub struct Inspect(pub ServiceName);

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
#[rtype(result = "Result<(), String>")]
pub struct RunStep(pub Target, pub DeployStep);

/// Read the new version's metrics and health.
#[derive(Message)]
#[rtype(result = "(Result<MetricSample, String>, Result<bool, String>)")]
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
