//! A fleet of deployments run by the real agents in virtual time, the way
//! `sim::simulate` runs a scenario, but against a journal of the caller's
//! choice and with wall time and journal volume measured.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::{Actor, Context, Handler};
use agents::messages::{Finished, GetStats, Submit, Subscribe};
use workflow::record::Request;

/// What one fleet run did and how long it took.
#[derive(Debug, Clone)]
pub struct FleetRun {
    pub deployments: usize,
    /// From the first submission until the last deployment finished.
    pub wall: Duration,
    /// Journal entries appended.
    pub events: u64,
    /// Deployments by final status.
    pub by_status: BTreeMap<String, u64>,
}

/// The scenario text of `n` deployments on `n` services: all four types and
/// all three strategies in turn, one in ten rolled back by an error spike
/// during its canary/rollout, every one watched through 60 minutes of
/// monitoring with a sample a minute.
pub fn scenario_text(n: usize) -> String {
    let kinds = ["standard", "hotfix", "rollback", "scheduled"];
    let strategies = ["canary", "blue-green", "rolling"];
    let mut s = String::from("start = \"2026-12-01T10:05:00Z\"\n");
    for i in 0..n {
        let kind = kinds[i % 4];
        let _ = writeln!(
            s,
            "[[requests]]\nservice = \"svc-{i:05}\"\ntype = \"{kind}\"\nsubmitted_by = \"dana\""
        );
        let _ = writeln!(
            s,
            "attest = [\"code_review_approved\", \"changelog_updated\", \"release_notes_prepared\"]"
        );
        if kind != "rollback" {
            let version = if i % 10 == 9 { "2.0.9" } else { "2.0.1" };
            let _ = writeln!(s, "version = \"{version}\"\nstrategy = \"{}\"", strategies[(i / 4) % 3]);
        }
        if kind == "scheduled" {
            let _ = writeln!(s, "scheduled_for = \"2026-12-01T10:30:00Z\"");
        }
    }
    s.push_str(
        "[world]\ncurrent_version = \"2.0.0\"\nprevious_version = \"1.9.9\"\ninstances = 4\n\
         baseline = { error_rate = 0.001, latency_p99_ms = 120.0, cpu = 0.40, memory = 0.50 }\n\
         [world.prepare]\nmigrations = \"reversible\"\n\
         [[world.metrics]]\nminute = 12\nversion = \"2.0.9\"\nerror_rate = 0.07\n",
    );
    s
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

/// Runs `n` deployments of [`scenario_text`] to the end with `store` as the journal.
pub fn run(n: usize, store: Box<dyn journal::Store>) -> Result<FleetRun, String> {
    let text = scenario_text(n);
    let scenario = sim::Scenario::parse("bench-fleet", &text).map_err(|e| e.to_string())?;
    let settings = sim::settings_for(None, "bench-fleet", &scenario, &BTreeMap::new()).map_err(|e| e.to_string())?;
    let system = actix::System::with_tokio_rt(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .expect("a current-thread runtime can be built")
    });
    let result = system.block_on(fleet(&scenario, Arc::new(settings), store));
    actix::System::current().stop();
    result
}

async fn fleet(
    scenario: &sim::Scenario,
    settings: Arc<workflow::Settings>,
    store: Box<dyn journal::Store>,
) -> Result<FleetRun, String> {
    let world = sim::world::World::new(scenario);
    let clock = Arc::new(sim::world::VirtualClock::new(scenario.start));
    let ports = agents::Ports {
        clock,
        build: world.clone(),
        environments: world.clone(),
        metrics: world.clone(),
        suites: world.clone(),
        security: world.clone(),
        notifier: world.clone(),
        people: world.clone(),
    };
    let started = Instant::now();
    let coordinator = agents::start(settings, ports, store)?;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    coordinator.do_send(Subscribe(Collector(tx).start().recipient()));
    let mut submissions = Vec::with_capacity(scenario.requests.len());
    for r in &scenario.requests {
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
        submissions.push(coordinator.send(Submit(request)));
    }
    let mut left = 0usize;
    for (i, s) in submissions.into_iter().enumerate() {
        let id = s
            .await
            .map_err(|e| format!("request {i}: {e}"))?
            .map_err(|e| format!("request {i}: {e}"))?;
        world.bind(id, i);
        left += 1;
    }
    let limit = Duration::from_secs(3600 * 24 * 30);
    tokio::time::timeout(limit, async {
        while left > 0 {
            match rx.recv().await {
                Some(_) => left -= 1,
                None => break,
            }
        }
    })
    .await
    .map_err(|_| format!("{left} deployments did not finish within 30 virtual days"))?;
    let wall = started.elapsed();
    let stats = coordinator.send(GetStats).await.map_err(|e| e.to_string())?;
    Ok(FleetRun {
        deployments: scenario.requests.len(),
        wall,
        events: stats.journal_writes,
        by_status: stats.by_status,
    })
}
