//! The Coordinator: the actor around [`Fleet`], the pure core that holds
//! every deployment's machine and the rules between them. The fleet decides;
//! the Coordinator gives it inputs (submissions, agents' answers, timers,
//! people's commands) and carries out what it returns: journal entries,
//! agent calls, timers and replies.
//!
//! Every input is journaled before anything acts on it. Journal writes use
//! group commit: the entries of an input join the current batch, and what
//! they imply (the calls to carry out, the reply to the caller) waits until
//! the batch is durable. A batch is written in one transaction, so one
//! fsync, once the actor has handled the messages and answers already
//! waiting: under load many deployments share each commit. If a batch
//! cannot be written, nothing it implied is carried out, its callers get
//! `Unavailable`, and the fleet is replayed from the journal, which still
//! holds exactly what was durable; the deployments in flight stay paused
//! until a retry (1 s, doubling to 30 s) resumes them.
//!
//! [`Coordinator::new`] replays the journal into a fleet (a fold of
//! [`Fleet::apply`]); [`Actor::started`] resumes: interrupted calls run
//! again with the next attempt number, timers are re-armed at their
//! original times.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use workflow::fleet::{Decision, Fleet, Input, Refusal, Reply, Staged, Work};
use workflow::machine::{Machine, Production};
use workflow::record::Request;
use workflow::types::DeploymentId;
use workflow::{Effect, Settings};

pub use workflow::fleet::JournalEntry;

use crate::dispatch::{dispatch, is_agent_call, Answer};
use crate::messages::*;
use crate::ports::{Clock, People, Target};
use crate::roles::{DevOps, Manager, Qa, Security};

/// Addresses of the four agents.
#[derive(Clone)]
pub struct Agents {
    pub devops: Addr<DevOps>,
    pub qa: Addr<Qa>,
    pub security: Addr<Security>,
    pub manager: Addr<Manager>,
}

/// Journal write latency, for /metrics.
#[derive(Debug, Default)]
struct WriteStats {
    count: u64,
    sum: f64,
    max: f64,
    buckets: Vec<u64>,
}

const WRITE_BUCKETS: [f64; 8] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5];

/// A submission whose production state was read, to be accepted.
#[derive(Message)]
#[rtype(result = "Result<DeploymentId, CommandError>")]
struct Accept {
    request: Request,
    production: Production,
}

/// Entries not yet durable and everything waiting for them.
#[derive(Default)]
struct Batch {
    entries: Vec<journal::NewEntry>,
    deferred: Vec<Work>,
    waiters: Vec<tokio::sync::oneshot::Sender<Result<(), String>>>,
    flush_scheduled: bool,
}

pub struct Coordinator {
    clock: Arc<dyn Clock>,
    people: Arc<dyn People>,
    agents: Agents,
    journal: Box<dyn journal::Store>,
    entries: tokio::sync::broadcast::Sender<journal::Entry>,
    fleet: Fleet,
    subscribers: Vec<Recipient<Finished>>,
    writes: WriteStats,
    /// Deployments whose journal chain was broken when it was replayed.
    broken: Vec<String>,
    batch: Batch,
    /// After a journal write failed: the wait before trying again to resume
    /// the paused deployments, and whether that retry is already scheduled.
    write_retry: Duration,
    retry_scheduled: bool,
    /// Agent calls whose answer has not come back yet. Resuming after a
    /// failed write leaves them alone: their answers are still coming.
    in_flight: BTreeMap<DeploymentId, Vec<Effect>>,
}

/// First and longest wait before retrying after a failed journal write.
const WRITE_RETRY_FIRST: Duration = Duration::from_secs(1);
const WRITE_RETRY_MAX: Duration = Duration::from_secs(30);
/// The wait before reading production again for a slot, after a failed read.
const SLOT_RETRY: Duration = Duration::from_secs(30);

fn command_error(refusal: Refusal) -> CommandError {
    match refusal {
        Refusal::NotFound(id) => CommandError::NotFound(id),
        Refusal::Invalid(why) => CommandError::Invalid(why),
        Refusal::Forbidden(why) => CommandError::Forbidden(why),
        Refusal::Refused(why) => CommandError::Refused(why),
    }
}

/// The fleet the journal holds, and one line per deployment whose chain is broken.
fn replay(settings: Arc<Settings>, journal: &dyn journal::Store) -> Result<(Fleet, Vec<String>), String> {
    let entries = journal.all().map_err(|e| e.to_string())?;
    // Check every chain on the entries already read.
    let mut chains: BTreeMap<u64, Vec<journal::Entry>> = BTreeMap::new();
    for e in &entries {
        chains.entry(e.deployment).or_default().push(e.clone());
    }
    let mut broken = vec![];
    for (d, mut chain) in chains {
        chain.sort_by_key(|e| e.index);
        let v = journal::verify_chain(d, &chain);
        if !v.intact {
            broken.push(format!(
                "journal chain of {} is broken: {}",
                DeploymentId(d),
                v.problems.join("; ")
            ));
        }
    }
    let mut inputs = Vec::with_capacity(entries.len());
    for e in entries {
        let id = DeploymentId(e.deployment);
        let body: JournalEntry = serde_json::from_str(&e.body).map_err(|err| {
            format!(
                "journal entry {} (seq {}) of {id} cannot be read: {err}",
                e.index, e.seq
            )
        })?;
        inputs.push((id, e.at, body));
    }
    let (fleet, warnings) = Fleet::replay(settings, inputs)?;
    for w in warnings {
        tracing::warn!("replay: {w}");
    }
    let live = fleet.machines().filter(|m| !m.is_finished()).count();
    if fleet.machines().next().is_some() {
        tracing::info!(
            deployments = fleet.machines().count(),
            in_flight = live,
            "journal replayed"
        );
    }
    Ok((fleet, broken))
}

impl Coordinator {
    /// A coordinator with the state the journal holds: every deployment in
    /// it is rebuilt by replaying its entries.
    pub fn new(
        settings: Arc<Settings>,
        clock: Arc<dyn Clock>,
        people: Arc<dyn People>,
        agents: Agents,
        journal: Box<dyn journal::Store>,
    ) -> Result<Self, String> {
        let (entries, _) = tokio::sync::broadcast::channel(1024);
        let (fleet, broken) = replay(settings, journal.as_ref())?;
        Ok(Coordinator {
            clock,
            people,
            agents,
            journal,
            entries,
            fleet,
            subscribers: vec![],
            writes: WriteStats {
                buckets: vec![0; WRITE_BUCKETS.len()],
                ..WriteStats::default()
            },
            broken,
            batch: Batch::default(),
            write_retry: WRITE_RETRY_FIRST,
            retry_scheduled: false,
            in_flight: BTreeMap::new(),
        })
    }

    fn target(m: &Machine, attempt: u32) -> Target {
        let r = m.record();
        Target {
            id: r.id,
            service: r.service.clone(),
            version: r.version.clone(),
            previous_version: r.previous_version.clone(),
            kind: r.kind,
            strategy: r.strategy,
            submitted_by: r.submitted_by.clone(),
            attempt,
        }
    }

    /// Gives the fleet one input: stages the entries it returns, carries out
    /// its work once they are durable, and returns its reply (which the
    /// caller gives only once they are durable, see [`Coordinator::durably`]).
    fn input(&mut self, input: Input, ctx: &mut Context<Self>) -> Result<Reply, CommandError> {
        let out = self.fleet.handle(self.clock.now(), input);
        for w in &out.warnings {
            tracing::error!("{w}");
        }
        self.stage(out.entries, ctx)?;
        for id in out.reload {
            if let Err(e) = self.reload(id) {
                tracing::error!(deployment = %id, error = %e, "cannot rebuild the deployment after a refused transition");
            }
        }
        for work in out.work {
            self.defer(work, ctx);
        }
        out.reply.map_err(command_error)
    }

    // ---- journal ------------------------------------------------------------

    /// Adds entries to the current batch; nothing may act on them before the
    /// batch is durable (see [`Coordinator::defer`] and [`Coordinator::durably`]).
    fn stage(&mut self, staged: Vec<Staged>, ctx: &mut Context<Self>) -> Result<(), CommandError> {
        let mut encoded = Vec::with_capacity(staged.len());
        for s in staged {
            match serde_json::to_string(&s.entry) {
                Ok(body) => encoded.push(journal::NewEntry {
                    deployment: s.id.0,
                    at: s.at,
                    kind: s.entry.kind().to_string(),
                    body,
                }),
                Err(e) => {
                    // The fleet took an input the journal cannot hold: back to what the journal holds.
                    self.rebuild(ctx);
                    return Err(CommandError::Unavailable(format!("cannot encode a journal entry: {e}")));
                }
            }
        }
        if encoded.is_empty() {
            return Ok(());
        }
        self.batch.entries.extend(encoded);
        if !self.batch.flush_scheduled {
            self.batch.flush_scheduled = true;
            // Runs after the messages and answers already waiting were handled, so they share the commit.
            ctx.spawn(actix::fut::ready(()).map(|_, act: &mut Self, ctx| act.flush(ctx)));
        }
        Ok(())
    }

    /// Carries out `work` once everything staged so far is durable.
    fn defer(&mut self, work: Work, ctx: &mut Context<Self>) {
        if self.batch.entries.is_empty() {
            self.run(work, ctx);
        } else {
            self.batch.deferred.push(work);
        }
    }

    /// Answers `result` once everything staged so far is durable, or
    /// `Unavailable` if it could not be written.
    fn durably<T: 'static>(&mut self, result: Result<T, CommandError>) -> ResponseFuture<Result<T, CommandError>> {
        if self.batch.entries.is_empty() {
            return Box::pin(std::future::ready(result));
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.batch.waiters.push(tx);
        Box::pin(async move {
            match rx.await {
                Ok(Ok(())) => result,
                Ok(Err(e)) => Err(CommandError::Unavailable(format!(
                    "journal write failed, nothing was changed: {e}"
                ))),
                Err(_) => Err(CommandError::Unavailable(
                    "the coordinator stopped before the journal write".into(),
                )),
            }
        })
    }

    /// Writes the current batch in one durable transaction, then answers its
    /// callers and carries out what it implied. On failure nothing of it is
    /// carried out and the fleet is replayed from the journal.
    fn flush(&mut self, ctx: &mut Context<Self>) {
        let batch = std::mem::take(&mut self.batch);
        if batch.entries.is_empty() {
            for work in batch.deferred {
                self.run(work, ctx);
            }
            return;
        }
        let n = batch.entries.len();
        let started = Instant::now();
        match self.journal.append_batch(batch.entries) {
            Ok(written) => {
                self.count_write(n, started.elapsed().as_secs_f64());
                for entry in written {
                    // Nobody listening is fine.
                    let _ = self.entries.send(entry);
                }
                for w in batch.waiters {
                    let _ = w.send(Ok(()));
                }
                for work in batch.deferred {
                    self.run(work, ctx);
                }
                self.write_retry = WRITE_RETRY_FIRST;
            }
            Err(e) => {
                tracing::error!(entries = n, error = %e, "journal write failed; nothing of it was carried out, rebuilding the state from the journal");
                for w in batch.waiters {
                    let _ = w.send(Err(e.to_string()));
                }
                self.rebuild(ctx);
                self.schedule_write_retry(ctx);
            }
        }
    }

    fn count_write(&mut self, n: usize, secs: f64) {
        self.writes.count += n as u64;
        self.writes.sum += secs * n as f64;
        self.writes.max = self.writes.max.max(secs);
        for (i, bound) in WRITE_BUCKETS.iter().enumerate() {
            if secs <= *bound {
                self.writes.buckets[i] += n as u64;
            }
        }
    }

    /// In-flight deployments are paused while the journal cannot be written
    /// (what they would do next cannot be recorded). Tries again later: the
    /// work whose answers were lost is resumed as after a restart, each
    /// re-run journaled first, so nothing runs unless writing works again.
    fn schedule_write_retry(&mut self, ctx: &mut Context<Self>) {
        if self.retry_scheduled {
            return;
        }
        self.retry_scheduled = true;
        let wait = self.write_retry;
        self.write_retry = (wait * 2).min(WRITE_RETRY_MAX);
        tracing::warn!(
            retry_in_seconds = wait.as_secs_f64(),
            "deployments paused until the journal can be written"
        );
        ctx.run_later(wait, |act, ctx| {
            act.retry_scheduled = false;
            act.resume(ctx);
        });
    }

    /// Replays the fleet from the journal after a batch that could not be
    /// written: the journal holds what is true.
    fn rebuild(&mut self, ctx: &mut Context<Self>) {
        match replay(self.fleet.settings().clone(), self.journal.as_ref()) {
            Ok((fleet, broken)) => {
                self.fleet = fleet;
                self.broken = broken;
            }
            Err(e) => tracing::error!(error = %e, "cannot replay the journal after a failed write"),
        }
        let _ = self.input(Input::GrantSlots, ctx);
    }

    /// Rebuilds one deployment's machine from its journal entries, durable
    /// and staged, after the machine refused an event (a refused event may
    /// have changed part of it).
    fn reload(&mut self, id: DeploymentId) -> Result<(), String> {
        let durable = self.journal.deployment(id.0).map_err(|e| e.to_string())?;
        let staged = self.batch.entries.iter().filter(|e| e.deployment == id.0);
        let mut inputs = vec![];
        for (at, body) in durable
            .iter()
            .map(|e| (e.at, &e.body))
            .chain(staged.map(|e| (e.at, &e.body)))
        {
            inputs.push((
                at,
                serde_json::from_str::<JournalEntry>(body).map_err(|e| e.to_string())?,
            ));
        }
        self.fleet.restore_machine(id, inputs)
    }

    /// Carries out one piece of work of the fleet.
    fn run(&mut self, work: Work, ctx: &mut Context<Self>) {
        match work {
            Work::Call(call) => {
                let Some(machine) = self.fleet.machine(call.id) else {
                    return;
                };
                let target = Self::target(machine, call.attempt);
                if is_agent_call(&call.effect) {
                    self.in_flight.entry(call.id).or_default().push(call.effect.clone());
                }
                dispatch(&self.agents, &self.people, &self.clock, &ctx.address(), call, target);
            }
            Work::ReadProduction { id, service } => {
                self.agents
                    .devops
                    .send(Inspect(service.clone()))
                    .into_actor(self)
                    .map(move |production, act, ctx| {
                        let why = match production {
                            Ok(Ok(production)) => {
                                if let Err(CommandError::Unavailable(e)) = act.input(Input::SlotGranted { id, production }, ctx) {
                                    tracing::error!(deployment = %id, error = %e, "the production slot could not be journaled");
                                }
                                return;
                            }
                            Ok(Err(e)) => e,
                            Err(e) => e.to_string(),
                        };
                        tracing::error!(%service, deployment = %id, error = %why, "cannot read production to start the next deployment; retrying in 30 s");
                        let _ = act.input(Input::SlotUnavailable { service }, ctx);
                        ctx.run_later(SLOT_RETRY, |act, ctx| {
                            let _ = act.input(Input::GrantSlots, ctx);
                        });
                    })
                    .spawn(ctx);
            }
            Work::Finished(id) => {
                for s in &self.subscribers {
                    s.do_send(Finished(id));
                }
            }
        }
    }

    /// After a restart or a failed write: re-run what was interrupted,
    /// re-arm timers at their original times, and hand out free slots.
    fn resume(&mut self, ctx: &mut Context<Self>) {
        let running = self.in_flight.clone();
        if let Err(e) = self.input(Input::Resume { running }, ctx) {
            tracing::error!(error = %e, "cannot resume the deployments in flight");
        }
    }

    /// One line per deployment whose journal chain is broken.
    pub fn broken_chains(&self) -> &[String] {
        &self.broken
    }

    /// Every deployment's record (Markdown not rendered), in submission order.
    pub fn records(&self) -> Vec<workflow::Record> {
        self.fleet.machines().map(|m| m.record().clone()).collect()
    }

    /// One deployment's record, with its Markdown rendered.
    pub fn record(&self, id: DeploymentId) -> Option<workflow::Record> {
        self.fleet.machine(id).map(|m| m.rendered_record())
    }

    fn stats(&self) -> Stats {
        let mut s = Stats::default();
        for m in self.fleet.machines() {
            *s.by_status.entry(m.status().as_str().to_string()).or_insert(0) += 1;
            for st in &m.record().stages {
                if let Some(end) = st.finished_at {
                    let secs = (end - st.started_at).num_milliseconds() as f64 / 1000.0;
                    s.stage_seconds.push((st.stage.as_str().to_string(), secs));
                }
            }
        }
        s.queue_depth = self.fleet.queue_depth();
        s.journal_writes = self.writes.count;
        s.journal_write_seconds_sum = self.writes.sum;
        s.journal_write_seconds_max = self.writes.max;
        s.journal_write_buckets = WRITE_BUCKETS
            .iter()
            .copied()
            .zip(self.writes.buckets.iter().copied())
            .collect();
        s
    }

    /// Handles a person's command: its reply once it is durable.
    fn command(&mut self, input: Input, ctx: &mut Context<Self>) -> ResponseFuture<Result<(), CommandError>> {
        let result = self.input(input, ctx).map(|_| ());
        self.durably(result)
    }
}

impl Actor for Coordinator {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.resume(ctx);
    }
}

impl Handler<Submit> for Coordinator {
    type Result = ResponseFuture<Result<DeploymentId, CommandError>>;

    fn handle(&mut self, msg: Submit, ctx: &mut Context<Self>) -> Self::Result {
        let request = msg.0;
        let inspect = self.agents.devops.send(Inspect(request.service.clone()));
        let me = ctx.address();
        Box::pin(async move {
            let production = inspect
                .await
                .map_err(|e| CommandError::Refused(format!("DevOps agent unavailable: {e}")))?
                .map_err(|e| {
                    CommandError::Refused(format!("cannot read production state of {}: {e}", request.service))
                })?;
            me.send(Accept { request, production })
                .await
                .map_err(|e| CommandError::Unavailable(format!("the coordinator stopped: {e}")))?
        })
    }
}

impl Handler<Accept> for Coordinator {
    type Result = ResponseFuture<Result<DeploymentId, CommandError>>;

    fn handle(&mut self, msg: Accept, ctx: &mut Context<Self>) -> Self::Result {
        let input = Input::Submit {
            request: msg.request,
            production: msg.production,
        };
        let result = self.input(input, ctx).and_then(|reply| match reply {
            Reply::Submitted(id) => Ok(id),
            Reply::Done => Err(CommandError::Unavailable("the submission got no id".into())),
        });
        // The id is given out only once the submission is durable.
        self.durably(result)
    }
}

impl Handler<Answer> for Coordinator {
    type Result = ();

    fn handle(&mut self, msg: Answer, ctx: &mut Context<Self>) {
        if let Some(calls) = self.in_flight.get_mut(&msg.id) {
            if let Some(i) = calls.iter().position(|e| e.answered_by(&msg.event)) {
                calls.remove(i);
            }
            if calls.is_empty() {
                self.in_flight.remove(&msg.id);
            }
        }
        let id = msg.id;
        if let Err(CommandError::Unavailable(e)) = self.input(Input::Answer { id, event: msg.event }, ctx) {
            tracing::error!(deployment = %id, error = %e, "an agent's answer could not be journaled");
        }
    }
}

impl Handler<Decide> for Coordinator {
    type Result = ResponseFuture<Result<(), CommandError>>;
    fn handle(&mut self, msg: Decide, ctx: &mut Context<Self>) -> Self::Result {
        let d = msg.0;
        let decision = Decision {
            id: d.id,
            role: d.role,
            approve: d.approve,
            by: d.by,
            reason: d.reason,
        };
        self.command(Input::Decide(decision), ctx)
    }
}

impl Handler<Cancel> for Coordinator {
    type Result = ResponseFuture<Result<(), CommandError>>;
    fn handle(&mut self, msg: Cancel, ctx: &mut Context<Self>) -> Self::Result {
        let input = Input::Cancel {
            id: msg.id,
            by: msg.by,
            reason: msg.reason,
        };
        self.command(input, ctx)
    }
}

impl Handler<RequestRollback> for Coordinator {
    type Result = ResponseFuture<Result<(), CommandError>>;
    fn handle(&mut self, msg: RequestRollback, ctx: &mut Context<Self>) -> Self::Result {
        let input = Input::RequestRollback {
            id: msg.id,
            by: msg.by,
            reason: msg.reason,
        };
        self.command(input, ctx)
    }
}

impl Handler<Acknowledge> for Coordinator {
    type Result = ResponseFuture<Result<(), CommandError>>;
    fn handle(&mut self, msg: Acknowledge, ctx: &mut Context<Self>) -> Self::Result {
        let input = Input::Acknowledge {
            id: msg.id,
            index: msg.index,
            by: msg.by,
        };
        self.command(input, ctx)
    }
}

impl Handler<Refuse> for Coordinator {
    type Result = ResponseFuture<Result<(), CommandError>>;
    fn handle(&mut self, msg: Refuse, ctx: &mut Context<Self>) -> Self::Result {
        let input = Input::Refuse {
            id: msg.id,
            by: msg.by,
            role: msg.role,
            what: msg.what,
            reason: msg.reason,
        };
        self.command(input, ctx)
    }
}

impl Handler<GetRecord> for Coordinator {
    type Result = ResponseFuture<Option<workflow::Record>>;
    fn handle(&mut self, msg: GetRecord, _: &mut Context<Self>) -> Self::Result {
        let Some(machine) = self.fleet.machine(msg.0).cloned() else {
            return Box::pin(std::future::ready(None));
        };
        // Rendering the Markdown (templates compiled on every render) is the
        // costliest part of answering a submission: do it off the actor.
        Box::pin(async move {
            tokio::task::spawn_blocking(move || machine.rendered_record())
                .await
                .ok()
        })
    }
}

impl Handler<List> for Coordinator {
    type Result = MessageResult<List>;
    fn handle(&mut self, msg: List, _: &mut Context<Self>) -> Self::Result {
        let mut records: Vec<workflow::record::Record> = self
            .fleet
            .machines_after(msg.after)
            .filter(|m| msg.service.as_ref().is_none_or(|s| *s == m.record().service))
            .filter(|m| msg.status.is_none_or(|s| s == m.status()))
            .take(msg.limit.saturating_add(1))
            .map(|m| m.record().clone())
            .collect();
        let mut next = None;
        if records.len() > msg.limit {
            records.truncate(msg.limit);
            next = records.last().map(|r| r.id);
        }
        MessageResult(ListPage { records, next })
    }
}

impl Handler<Verify> for Coordinator {
    type Result = Result<journal::Verification, CommandError>;
    fn handle(&mut self, msg: Verify, _: &mut Context<Self>) -> Self::Result {
        if self.fleet.machine(msg.0).is_none() {
            return Err(CommandError::NotFound(msg.0));
        }
        self.journal
            .verify(msg.0 .0)
            .map_err(|e| CommandError::Unavailable(e.to_string()))
    }
}

impl Handler<WatchJournal> for Coordinator {
    type Result = Result<(Vec<journal::Entry>, tokio::sync::broadcast::Receiver<journal::Entry>), CommandError>;
    fn handle(&mut self, msg: WatchJournal, _: &mut Context<Self>) -> Self::Result {
        let rx = self.entries.subscribe();
        let backlog = match (msg.deployment, msg.after) {
            (Some(id), after) => {
                if self.fleet.machine(id).is_none() {
                    return Err(CommandError::NotFound(id));
                }
                let mut all = self.journal.deployment(id.0);
                if let (Ok(v), Some(after)) = (&mut all, after) {
                    v.retain(|e| e.seq > after);
                }
                all
            }
            (None, Some(after)) => self.journal.since(after),
            (None, None) => Ok(vec![]),
        }
        .map_err(|e| CommandError::Unavailable(e.to_string()))?;
        Ok((backlog, rx))
    }
}

impl Handler<GetStats> for Coordinator {
    type Result = MessageResult<GetStats>;
    fn handle(&mut self, _: GetStats, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.stats())
    }
}

impl Handler<Subscribe> for Coordinator {
    type Result = ();
    fn handle(&mut self, msg: Subscribe, _: &mut Context<Self>) {
        self.subscribers.push(msg.0);
    }
}
