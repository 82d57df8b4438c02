//! The daemon's ports: one adapter per agent port, each carrying out its
//! actions by the commands configured per service
//! (`[services.NAME.actions.ACTION]` in `agents.toml`), its suites, scanner,
//! health checks, metrics source or local process target, and answering
//! every action that has nothing configured as the simulated world does
//! (`agents::simulated`, with no simulated time). Whatever the simulated
//! world answers is marked simulated (the report's `simulated` flag or
//! list, [`agents::ports::Reported::simulated`]), so the record labels it;
//! [`crate::config::ServiceConfig::simulated_actions`] lists, per service,
//! the actions that have no command, for the daemon's start-up log.
//!
//! What runs in production is the daemon's own: an
//! [`agents::production::ProductionState`], seeded from the journal at
//! start ([`Adapters::set_production`]) and told what every production step
//! and rollback did. A service may configure `current_version`, a command
//! printing the version that runs; the production state read for a
//! deployment's slot then carries what it said, and a deployment is held
//! before DEPLOY when it disagrees with the journal.
//!
//! The adapters share one [`Context`] (the service configurations, the
//! local process targets, the probe client and the production state),
//! which runs the commands ([`command`]).
//!
//! Every command gets the deployment in its environment (added after the
//! inherited environment and the command's own `env`, so these values win):
//!
//! | variable | value |
//! |---|---|
//! | `STAGECOACH_SERVICE` | the service |
//! | `STAGECOACH_VERSION` | the version being deployed; for `rollback` (and the `clear_cache`/`health` that follow it): the version restored |
//! | `STAGECOACH_PREVIOUS_VERSION` | what production ran before (for `rollback`: the version rolled back from); empty when none |
//! | `STAGECOACH_ENVIRONMENT` | `production` for `backup` and every production step, health check and rollback; `staging` for everything else (`tests`, `build`, `scan`, `validate` and the staging deployment) |
//! | `STAGECOACH_STRATEGY` | `blue-green`, `canary` or `rolling` |
//! | `STAGECOACH_WEIGHT` | percent of traffic for the step (canary steps, `set_traffic` = 100, `rollback` = traffic on the new version); empty when n/a |
//! | `STAGECOACH_INSTANCE` | 1-based instance number of a rolling update; empty when n/a |
//! | `STAGECOACH_COLOUR` | `blue` or `green` for blue-green steps; empty when n/a |
//! | `STAGECOACH_ATTEMPT` | 1 for the first try of an action, more when the daemon re-runs it after a crash |
//! | `STAGECOACH_DEPLOYMENT_ID` | e.g. `d-000001` |
//! | `STAGECOACH_ACTION` | the action name |
//! | `STAGECOACH_REVERT_MIGRATIONS` | `rollback` only: `true` when the rollback must revert the release's (reversible) migrations |
//! | `STAGECOACH_SUITES` | `validate` only: `all` or `critical` |
//!
//! `current_version` asks about a service, not a deployment: it gets only
//! `STAGECOACH_SERVICE`, `STAGECOACH_ENVIRONMENT` (`production`) and
//! `STAGECOACH_ACTION`.
//!
//! A sequence of commands (prepare: `tests`, `build`, `backup`; staging:
//! `deploy`, `migrate`, `health`, `smoke`; a production step) stops at the
//! first command that fails.

mod build;
pub mod command;
mod environments;
mod metrics;
mod notifier;
mod people;
mod security;
mod suites;

use std::collections::BTreeMap;
use std::sync::Arc;

use agents::ports::SystemClock;
use agents::production::ProductionState;
use workflow::types::{ServiceName, Version};

use crate::config::ServiceConfig;
use crate::process::ProcessTarget;

pub use build::BuildAdapter;
pub use environments::{parse_current_version, EnvironmentsAdapter, CURRENT_VERSION};
pub use metrics::MetricsAdapter;
pub use notifier::NotifierAdapter;
pub use people::PeopleAdapter;
pub use security::SecurityAdapter;
pub use suites::TestSuitesAdapter;

/// What the adapters share.
pub struct Context {
    services: BTreeMap<String, ServiceConfig>,
    /// Services run by the local process target.
    processes: BTreeMap<String, ProcessTarget>,
    /// Probes talk to the services directly, never through a proxy, on a fresh connection each time.
    http: reqwest::Client,
    /// What runs in production, per service.
    production: ProductionState,
}

impl Context {
    fn new(services: BTreeMap<String, ServiceConfig>) -> Context {
        let mut services = services;
        let mut processes = BTreeMap::new();
        for (name, service) in services.iter_mut() {
            if let Some(p) = &service.process {
                // Without a metrics source of its own, a local service is measured at its proxy.
                if service.metrics.is_none() {
                    service.metrics = Some(crate::process::proxy_metrics(&p.listen));
                }
                processes.insert(name.clone(), ProcessTarget::new(name, p.clone()));
            }
        }
        Context {
            services,
            processes,
            http: probes::probe_client(None),
            production: ProductionState::default(),
        }
    }

    fn service(&self, service: &ServiceName) -> Option<&ServiceConfig> {
        self.services.get(service.as_str())
    }

    /// The local process target of `service`, when it has one.
    fn process(&self, service: &ServiceName) -> Option<&ProcessTarget> {
        self.processes.get(service.as_str())
    }

    fn command(&self, service: &ServiceName, action: &str) -> Option<&hooks::CommandSpec> {
        self.service(service)?.actions.get(action)
    }
}

/// Every adapter of the daemon, sharing one [`Context`].
#[derive(Clone)]
pub struct Adapters {
    pub build: Arc<BuildAdapter>,
    pub environments: Arc<EnvironmentsAdapter>,
    pub metrics: Arc<MetricsAdapter>,
    pub suites: Arc<TestSuitesAdapter>,
    pub security: Arc<SecurityAdapter>,
    pub notifier: Arc<NotifierAdapter>,
    pub people: Arc<PeopleAdapter>,
    context: Arc<Context>,
}

impl Adapters {
    /// Adapters running the commands of `services` (keyed by service name),
    /// whose notifications go to the log only.
    pub fn new(services: BTreeMap<String, ServiceConfig>) -> Adapters {
        Adapters::with_notifications(services, notify::NotifyConfig::default())
    }

    /// Adapters whose notifications go to the channels of `[notify]`.
    pub fn with_notifications(services: BTreeMap<String, ServiceConfig>, notify: notify::NotifyConfig) -> Adapters {
        let context = Arc::new(Context::new(services));
        Adapters {
            build: Arc::new(BuildAdapter::new(context.clone())),
            environments: Arc::new(EnvironmentsAdapter::new(context.clone())),
            metrics: Arc::new(MetricsAdapter::new(context.clone())),
            suites: Arc::new(TestSuitesAdapter::new(context.clone())),
            security: Arc::new(SecurityAdapter::new(context.clone())),
            notifier: Arc::new(NotifierAdapter::new(notify)),
            people: Arc::new(PeopleAdapter),
            context,
        }
    }

    /// Seeds what production runs (the daemon derives it from the journal at start-up).
    pub fn set_production(&self, service: &ServiceName, current: Option<Version>, previous: Option<Version>) {
        self.context.production.set(service, current, previous);
    }

    /// Stops what the local process target started: every instance and proxy.
    pub async fn shutdown(&self) {
        for p in self.context.processes.values() {
            p.shutdown().await;
        }
    }

    /// All ports, with `clock` = [`SystemClock`].
    pub fn ports(&self) -> agents::Ports {
        agents::Ports {
            clock: Arc::new(SystemClock),
            build: self.build.clone(),
            environments: self.environments.clone(),
            metrics: self.metrics.clone(),
            suites: self.suites.clone(),
            security: self.security.clone(),
            notifier: self.notifier.clone(),
            people: self.people.clone(),
        }
    }
}
