//! Stagecoach's agents as actix actors.
//!
//! The Coordinator and the four agents (DevOps, QA, Security, Manager) each
//! run as an actor with its own mailbox and exchange the typed messages of
//! [`messages`]. Every side effect goes through a port ([`ports`]); the
//! decisions themselves live in the pure `workflow` crate.

pub mod coordinator;
mod dispatch;
mod journaling;
pub mod messages;
pub mod ports;
pub mod roles;

use std::sync::Arc;

use actix::Actor;
use workflow::Settings;

pub use coordinator::{Agents, Coordinator, JournalEntry};

/// The ports one set of agents works through.
#[derive(Clone)]
pub struct Ports {
    pub clock: Arc<dyn ports::Clock>,
    pub build: Arc<dyn ports::Build>,
    pub environments: Arc<dyn ports::Environments>,
    pub metrics: Arc<dyn ports::Metrics>,
    pub suites: Arc<dyn ports::TestSuites>,
    pub security: Arc<dyn ports::Security>,
    pub notifier: Arc<dyn ports::Notifier>,
    pub people: Arc<dyn ports::People>,
}

/// A coordinator rebuilt from `journal`, not started: for inspecting what
/// the journal holds (and for checking that a replay reproduces a run).
pub fn replay(settings: Arc<Settings>, ports: Ports, journal: Box<dyn journal::Store>) -> Result<Coordinator, String> {
    Coordinator::new(
        settings.clone(),
        ports.clock.clone(),
        ports.people.clone(),
        agents(&settings, ports),
        journal,
    )
}

fn agents(settings: &Settings, ports: Ports) -> Agents {
    Agents {
        devops: roles::DevOps {
            build: ports.build,
            environments: ports.environments,
            metrics: ports.metrics,
            settings: settings.agents.devops.clone(),
        }
        .start(),
        qa: roles::Qa {
            suites: ports.suites,
            critical_suites: settings.qa.critical_suites.clone(),
            settings: settings.agents.qa.clone(),
        }
        .start(),
        security: roles::Security {
            port: ports.security,
            settings: settings.agents.security.clone(),
        }
        .start(),
        manager: roles::Manager {
            notifier: ports.notifier,
            settings: settings.agents.manager.clone(),
        }
        .start(),
    }
}

/// Starts the four agents and the coordinator on the current arbiter. The
/// coordinator first rebuilds every deployment the journal holds and then
/// resumes the ones still in flight; a journal it cannot read is an error.
pub fn start(
    settings: Arc<Settings>,
    ports: Ports,
    journal: Box<dyn journal::Store>,
) -> Result<actix::Addr<Coordinator>, String> {
    let agents = agents(&settings, ports.clone());
    Ok(Coordinator::new(settings, ports.clock, ports.people, agents, journal)?.start())
}
