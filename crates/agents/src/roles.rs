//! The four agents: DevOps, QA, Security and Manager. Each is an actor with
//! its own mailbox; each handler calls its ports and answers with a typed
//! result. Long work runs as a future so a mailbox is never blocked.

use std::sync::Arc;

use actix::{Actor, Context, Handler, MessageResult, ResponseFuture};
use workflow::approval::{self, Advice};
use workflow::settings::AgentSettings;
use workflow::types::Role;

use crate::messages::*;
use crate::ports::{Build, Environments, Metrics, Notifier, Reported, Security as SecurityPort, TestSuites};

fn review(role: Role, settings: &AgentSettings, msg: &Review) -> Advice {
    debug_assert_eq!(role, msg.role);
    approval::advise(role, settings.mode, &msg.criteria)
}

/// DevOps: prepares, deploys, watches and rolls back.
pub struct DevOps {
    pub build: Arc<dyn Build>,
    pub environments: Arc<dyn Environments>,
    pub metrics: Arc<dyn Metrics>,
    pub settings: AgentSettings,
}

impl Actor for DevOps {
    type Context = Context<Self>;
}

impl Handler<Inspect> for DevOps {
    type Result = ResponseFuture<Result<workflow::machine::Production, String>>;
    fn handle(&mut self, msg: Inspect, _: &mut Context<Self>) -> Self::Result {
        let env = self.environments.clone();
        Box::pin(async move {
            if msg.ask_service {
                env.production(&msg.service).await
            } else {
                env.known_production(&msg.service).await
            }
        })
    }
}

impl Handler<Prepare> for DevOps {
    type Result = ResponseFuture<Result<workflow::checklist::PrepareReport, String>>;
    fn handle(&mut self, msg: Prepare, _: &mut Context<Self>) -> Self::Result {
        let build = self.build.clone();
        Box::pin(async move { build.prepare(&msg.0).await })
    }
}

impl Handler<DeployStaging> for DevOps {
    type Result = ResponseFuture<Result<workflow::record::StagingReport, String>>;
    fn handle(&mut self, msg: DeployStaging, _: &mut Context<Self>) -> Self::Result {
        let env = self.environments.clone();
        Box::pin(async move { env.deploy_staging(&msg.0).await })
    }
}

impl Handler<MeasureBaseline> for DevOps {
    type Result = ResponseFuture<Result<workflow::thresholds::MetricSample, String>>;
    fn handle(&mut self, msg: MeasureBaseline, _: &mut Context<Self>) -> Self::Result {
        let metrics = self.metrics.clone();
        Box::pin(async move { metrics.baseline(&msg.0).await })
    }
}

impl Handler<RunStep> for DevOps {
    type Result = ResponseFuture<Reported<Result<(), String>>>;
    fn handle(&mut self, msg: RunStep, _: &mut Context<Self>) -> Self::Result {
        let env = self.environments.clone();
        Box::pin(async move { env.step(&msg.0, &msg.1).await })
    }
}

impl Handler<Observe> for DevOps {
    type Result = ResponseFuture<(
        Result<workflow::thresholds::MetricSample, String>,
        Reported<Result<bool, String>>,
    )>;
    fn handle(&mut self, msg: Observe, _: &mut Context<Self>) -> Self::Result {
        let metrics = self.metrics.clone();
        let env = self.environments.clone();
        Box::pin(async move {
            let sample = metrics.sample(&msg.target, msg.minute, msg.traffic_percent).await;
            let health = env.health(&msg.target, msg.minute).await;
            (sample, health)
        })
    }
}

impl Handler<Rollback> for DevOps {
    type Result = ResponseFuture<workflow::machine::RollbackOutcome>;
    fn handle(&mut self, msg: Rollback, _: &mut Context<Self>) -> Self::Result {
        let env = self.environments.clone();
        Box::pin(async move { env.rollback(&msg.0, &msg.1).await })
    }
}

impl Handler<Review> for DevOps {
    type Result = MessageResult<Review>;
    fn handle(&mut self, msg: Review, _: &mut Context<Self>) -> Self::Result {
        MessageResult(review(Role::Devops, &self.settings, &msg))
    }
}

/// QA: validates releases in staging.
pub struct Qa {
    pub suites: Arc<dyn TestSuites>,
    pub critical_suites: Vec<String>,
    pub settings: AgentSettings,
}

impl Actor for Qa {
    type Context = Context<Self>;
}

impl Handler<Validate> for Qa {
    type Result = ResponseFuture<Result<Vec<workflow::record::SuiteResult>, String>>;
    fn handle(&mut self, msg: Validate, _: &mut Context<Self>) -> Self::Result {
        let suites = self.suites.clone();
        let critical = self.critical_suites.clone();
        Box::pin(async move { suites.run(&msg.0, msg.1, &critical).await })
    }
}

impl Handler<Review> for Qa {
    type Result = MessageResult<Review>;
    fn handle(&mut self, msg: Review, _: &mut Context<Self>) -> Self::Result {
        MessageResult(review(Role::Qa, &self.settings, &msg))
    }
}

/// Security: scans releases, reports incidents, reviews hotfixes.
pub struct Security {
    pub port: Arc<dyn SecurityPort>,
    pub settings: AgentSettings,
}

impl Actor for Security {
    type Context = Context<Self>;
}

impl Handler<Scan> for Security {
    type Result = ResponseFuture<Result<workflow::checklist::ScanReport, String>>;
    fn handle(&mut self, msg: Scan, _: &mut Context<Self>) -> Self::Result {
        let port = self.port.clone();
        Box::pin(async move { port.scan(&msg.0).await })
    }
}

impl Handler<CheckIncidents> for Security {
    type Result = ResponseFuture<Vec<workflow::machine::Incident>>;
    fn handle(&mut self, msg: CheckIncidents, _: &mut Context<Self>) -> Self::Result {
        let port = self.port.clone();
        Box::pin(async move { port.incidents(&msg.0, msg.1).await })
    }
}

impl Handler<Review> for Security {
    type Result = MessageResult<Review>;
    fn handle(&mut self, msg: Review, _: &mut Context<Self>) -> Self::Result {
        MessageResult(review(Role::Security, &self.settings, &msg))
    }
}

/// Manager: approves releases and keeps stakeholders informed.
pub struct Manager {
    pub notifier: Arc<dyn Notifier>,
    pub settings: AgentSettings,
}

impl Actor for Manager {
    type Context = Context<Self>;
}

impl Handler<Notify> for Manager {
    type Result = ResponseFuture<Result<(), String>>;
    fn handle(&mut self, msg: Notify, _: &mut Context<Self>) -> Self::Result {
        let notifier = self.notifier.clone();
        Box::pin(async move { notifier.send(&msg.0, &msg.1).await })
    }
}

impl Handler<Review> for Manager {
    type Result = MessageResult<Review>;
    fn handle(&mut self, msg: Review, _: &mut Context<Self>) -> Self::Result {
        MessageResult(review(Role::Manager, &self.settings, &msg))
    }
}
