//! Stagecoach's simulator: runs the real agents against a scripted world in
//! virtual time.
//!
//! [`simulate`] builds a single-threaded actix system on a paused tokio
//! clock: every wait (approval timeouts, deployment windows, canary
//! analysis, monitoring) jumps straight to the next timer, so a day runs in
//! milliseconds and the same scenario always gives the same records.

pub mod scenario;
pub mod world;

use std::collections::BTreeMap;
use std::sync::Arc;

use actix::{Actor, Context, Handler};
use agents::messages::{Finished, GetRecord, Submit, Subscribe, Unblock};
use scenario::CommandKind;
use workflow::record::{Record, Request};
use workflow::settings::{Layer, Settings, SettingsError};

pub use scenario::{Scenario, ScenarioError};

/// The outcome of one simulation.
#[derive(Debug)]
pub struct Outcome {
    /// One record per request, in submission order.
    pub records: Vec<Record>,
    /// Expectations that did not hold, one line each.
    pub failed_expectations: Vec<String>,
}

/// Why a simulation could not run.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error(transparent)]
    Scenario(#[from] ScenarioError),
    #[error(transparent)]
    Settings(#[from] SettingsError),
    #[error("{file}: requests[{index}]: {message}")]
    Refused {
        file: String,
        index: usize,
        message: String,
    },
    #[error("{file}: commands[{index}]: {message}")]
    CommandRefused {
        file: String,
        index: usize,
        message: String,
    },
    #[error("simulation stalled: {0}")]
    Stalled(String),
    #[error("replaying the journal gave a different result: {0}")]
    Replay(String),
}

/// Loads the configuration for a scenario: bundled defaults, then the
/// `--config` file, then the scenario's `[config]` table, then `STAGECOACH__`
/// environment overrides.
pub fn settings_for(
    config_file: Option<(&str, &str)>,
    scenario_file: &str,
    scenario: &Scenario,
    env: &BTreeMap<String, String>,
) -> Result<Settings, SettingsError> {
    let mut layers = vec![];
    if let Some((name, text)) = config_file {
        layers.push(Layer { name, toml: text });
    }
    let name = format!("{scenario_file} [config]");
    let table_text = match scenario.config.as_ref().map(toml::to_string).transpose() {
        Ok(t) => t,
        Err(e) => {
            return Err(SettingsError::Load {
                source_name: name,
                message: e.to_string(),
            })
        }
    };
    if let Some(text) = &table_text {
        layers.push(Layer {
            name: &name,
            toml: text,
        });
    }
    // A configuration file shared with the daemon may carry its tables too.
    Settings::load_with::<serde::de::IgnoredAny>(&layers, env, workflow::settings::DAEMON_TABLES).map(|(s, _)| s)
}

struct Collector(tokio::sync::mpsc::UnboundedSender<workflow::types::DeploymentId>);

impl Actor for Collector {
    type Context = Context<Self>;
}

impl Handler<Finished> for Collector {
    type Result = ();
    fn handle(&mut self, msg: Finished, _: &mut Context<Self>) {
        let _ = self.0.send(msg.0);
    }
}

/// Runs `scenario` with `settings` and returns the records.
pub fn simulate(file: &str, scenario: &Scenario, settings: Settings) -> Result<Outcome, SimError> {
    let settings = Arc::new(settings);
    let system = actix::System::with_tokio_rt(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .expect("a current-thread runtime can be built")
    });
    let result = system.block_on(run(file, scenario, settings));
    // Stop the system so no actor outlives the run.
    actix::System::current().stop();
    result
}

async fn run(file: &str, scenario: &Scenario, settings: Arc<Settings>) -> Result<Outcome, SimError> {
    let world = world::World::new(scenario);
    let clock = Arc::new(world::VirtualClock::new(scenario.start));
    let ports = agents::Ports {
        clock: clock.clone(),
        build: world.clone(),
        environments: world.clone(),
        metrics: world.clone(),
        suites: world.clone(),
        security: world.clone(),
        notifier: world.clone(),
        people: world.clone(),
    };
    // Kept in memory and shared, so the run can be replayed from it afterwards.
    let store = journal::SharedStore::new(Box::new(journal::MemoryStore::default()));
    let coordinator =
        agents::start(settings.clone(), ports.clone(), Box::new(store.clone())).map_err(SimError::Replay)?;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    coordinator.do_send(Subscribe(Collector(tx).start().recipient()));

    let origin = tokio::time::Instant::now();
    // Requests and commands in time order; a minute's commands come before its requests.
    enum Item {
        Command(usize),
        Request(usize),
    }
    let mut order: Vec<(u32, u8, usize, Item)> = scenario
        .commands
        .iter()
        .enumerate()
        .map(|(i, c)| (c.at_minute, 0, i, Item::Command(i)))
        .chain(
            scenario
                .requests
                .iter()
                .enumerate()
                .map(|(i, r)| (r.at_minute, 1, i, Item::Request(i))),
        )
        .collect();
    order.sort_by_key(|(minute, kind, i, _)| (*minute, *kind, *i));
    let mut ids = BTreeMap::new();
    let mut failed_expectations = vec![];
    for (minute, _, _, item) in order {
        tokio::time::sleep_until(origin + std::time::Duration::from_secs(minute as u64 * 60)).await;
        let i = match item {
            Item::Request(i) => i,
            Item::Command(i) => {
                let c = &scenario.commands[i];
                let refused = |message: String| SimError::CommandRefused {
                    file: file.to_string(),
                    index: i,
                    message,
                };
                match c.command {
                    CommandKind::Unblock => coordinator
                        .send(Unblock {
                            service: c.service.clone(),
                            version: c.version.clone(),
                            by: c.by.clone(),
                            reason: c.reason.clone(),
                        })
                        .await
                        .map_err(|e| refused(e.to_string()))?
                        .map_err(|e| refused(e.to_string()))?,
                }
                continue;
            }
        };
        let r = &scenario.requests[i];
        let request = Request {
            service: r.service.clone(),
            version: r.version.clone(),
            kind: r.kind,
            strategy: r.strategy,
            submitted_by: r.submitted_by.clone(),
            changes: r.changes.clone(),
            scheduled_for: r.scheduled_for,
            attest: r.attest.clone(),
            window_override: None,
        };
        let refused = |message: String| SimError::Refused {
            file: file.to_string(),
            index: i,
            message,
        };
        let answer = coordinator
            .send(Submit(request))
            .await
            .map_err(|e| refused(e.to_string()))?;
        let id = match (answer, &r.expect_refused) {
            (Ok(id), None) => id,
            (Err(e), None) => return Err(refused(e.to_string())),
            (Err(e), Some(expected)) => {
                let message = e.to_string();
                if !message.contains(expected.as_str()) {
                    failed_expectations.push(format!(
                        "requests[{i}] ({} {}): expected a refusal containing {expected:?}, got: {message}",
                        r.service,
                        r.version.as_ref().map(|v| v.as_str()).unwrap_or("-"),
                    ));
                }
                continue;
            }
            (Ok(id), Some(expected)) => {
                failed_expectations.push(format!(
                    "requests[{i}] ({id}, {} {}): expected a refusal containing {expected:?}, but it was accepted",
                    r.service,
                    r.version.as_ref().map(|v| v.as_str()).unwrap_or("-"),
                ));
                id
            }
        };
        world.bind(id, i);
        ids.insert(id, i);
    }
    // Wait for every deployment to end. Virtual time makes even a year pass
    // instantly, so the limit only catches a deployment that can never end.
    let mut pending: std::collections::BTreeSet<_> = ids.keys().copied().collect();
    let limit = std::time::Duration::from_secs(3600 * 24 * 800);
    let waited = tokio::time::timeout(limit, async {
        while !pending.is_empty() {
            match rx.recv().await {
                Some(id) => {
                    pending.remove(&id);
                }
                None => break,
            }
        }
        pending
    })
    .await;
    match waited {
        Ok(p) if p.is_empty() => {}
        Ok(p) => return Err(SimError::Stalled(format!("deployments {p:?} did not finish"))),
        Err(_) => return Err(SimError::Stalled("deployments did not reach a terminal status".into())),
    }
    let mut records = vec![];
    for (id, i) in &ids {
        let record = coordinator
            .send(GetRecord(*id))
            .await
            .ok()
            .flatten()
            .ok_or_else(|| SimError::Stalled(format!("record {id} missing")))?;
        if let Some(expected) = scenario.requests[*i].expect_status {
            if record.status != expected {
                failed_expectations.push(format!(
                    "requests[{i}] ({id}, {} {}): expected status {expected}, got {}",
                    record.service,
                    record.version.as_ref().map(|v| v.as_str()).unwrap_or("-"),
                    record.status
                ));
            }
        }
        records.push(record);
    }
    // Every record must come back identical from the journal alone.
    let replayed = agents::replay(settings, ports, Box::new(store)).map_err(SimError::Replay)?;
    for r in &records {
        if replayed.record(r.id).as_ref() != Some(r) {
            return Err(SimError::Replay(format!(
                "{} differs after replaying its journal",
                r.id
            )));
        }
    }
    // Everything in a simulation is simulated: each record says so first.
    for r in &mut records {
        r.markdown = format!("{SIMULATED_RUN}\n\n{}", r.markdown);
    }
    Ok(Outcome {
        records,
        failed_expectations,
    })
}

/// The note at the top of every record of a simulation.
pub const SIMULATED_RUN: &str =
    "> Simulated run: every action below was simulated (scripted world, virtual time); nothing was deployed.";
