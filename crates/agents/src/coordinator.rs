//! The Coordinator: owns one [`Machine`] per deployment, feeds it the
//! agents' answers, carries out the effects it returns, and enforces the
//! rules that span deployments (repeated failures, manual rollbacks, one
//! deployment per service past APPROVE).
//!
//! It is the only actor that changes a deployment's stage, and it does so
//! only through the machine, which refuses illegal transitions.
//!
//! Every input is journaled before anything acts on it: the submission
//! (with the settings and production it was judged against) and every event
//! with the facts it produced. Because the machine is a pure function of
//! those inputs and their times, [`Coordinator::new`] rebuilds every
//! deployment by replaying the journal, and [`Actor::started`] re-runs the
//! work a crash interrupted (as a retry) and re-arms the timers at their
//! original times.
//!
//! Journal writes use group commit. An input is applied to its machine at
//! once, its entry joins the current batch, and everything it implies (the
//! effects to carry out, the reply to the caller) waits until the batch is
//! durable. A batch is written in one transaction, so one fsync, once the
//! actor has handled the messages and answers already waiting: under load
//! many deployments share each commit, alone a deployment pays one commit
//! per input as before. If a batch cannot be written, nothing it implied is
//! carried out, its callers get `Unavailable`, and the in-memory state is
//! rebuilt from the journal, which still holds exactly what was durable.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use workflow::machine::{Event, Machine, Observation, Production};
use workflow::record::{Fact, Request};
use workflow::types::{DeploymentId, DeploymentType, EscalationReason, ServiceName, Stage, Status};
use workflow::{Effect, Output, Settings};

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

/// The body of one journal entry.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum JournalEntry {
    /// A request was accepted, judged against these settings and this production state.
    Submitted {
        request: Request,
        production: Production,
        held: Option<String>,
        settings: Box<Settings>,
        facts: Vec<Fact>,
    },
    /// An input to the deployment's machine and the facts it produced.
    Event { event: Event, facts: Vec<Fact> },
    /// The daemon restarted and re-runs these interrupted effects.
    Resumed { effects: Vec<Effect> },
}

impl JournalEntry {
    fn kind(&self) -> &'static str {
        match self {
            JournalEntry::Submitted { .. } => "submitted",
            JournalEntry::Event { .. } => "event",
            JournalEntry::Resumed { .. } => "resumed",
        }
    }
}

/// Per-service memory across deployments.
#[derive(Debug, Default)]
struct ServiceHistory {
    consecutive_failures: BTreeMap<ServiceName, u32>,
    /// Services held after repeated failures: the reason and the deployment that escalated.
    held: BTreeMap<ServiceName, (String, DeploymentId)>,
    counted: BTreeSet<DeploymentId>,
}

/// An effect asked for and not answered yet, with how often it was tried.
#[derive(Debug, Clone)]
struct Pending {
    effect: Effect,
    attempt: u32,
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

/// The journal form of [`JournalEntry::Event`], serialised without copying the event.
#[derive(Serialize)]
struct EventEntry<'a> {
    kind: &'static str,
    event: &'a Event,
    facts: &'a [Fact],
}

/// An agent's answer or a timer, delivered to the coordinator's mailbox by
/// the task that awaited it. Awaiting in separate tasks rather than in the
/// coordinator's context matters at scale: actix polls every future held by
/// a context each time the context wakes, so thousands of in-flight
/// deployments would make every message cost thousands of polls.
#[derive(Message)]
#[rtype(result = "()")]
struct Answer {
    id: DeploymentId,
    event: Event,
}

/// A submission whose production state was read, to be accepted.
#[derive(Message)]
#[rtype(result = "Result<DeploymentId, CommandError>")]
struct Accept {
    request: Request,
    production: Production,
}

/// The journal form of [`JournalEntry::Submitted`], serialised without copying the settings.
#[derive(Serialize)]
struct SubmittedEntry<'a> {
    kind: &'static str,
    request: &'a Request,
    production: &'a Production,
    held: &'a Option<String>,
    settings: &'a Settings,
    facts: &'a [Fact],
}

/// Work that waits until the batch holding its cause is durable.
struct Deferred {
    id: DeploymentId,
    effects: Vec<Effect>,
    attempt: u32,
}

/// Entries not yet durable and everything waiting for them.
#[derive(Default)]
struct Batch {
    entries: Vec<journal::NewEntry>,
    deferred: Vec<Deferred>,
    waiters: Vec<tokio::sync::oneshot::Sender<Result<(), String>>>,
    flush_scheduled: bool,
}

pub struct Coordinator {
    settings: Arc<Settings>,
    clock: Arc<dyn Clock>,
    people: Arc<dyn People>,
    agents: Agents,
    journal: Box<dyn journal::Store>,
    entries: tokio::sync::broadcast::Sender<journal::Entry>,
    machines: BTreeMap<DeploymentId, Machine>,
    next_id: u64,
    history: ServiceHistory,
    subscribers: Vec<Recipient<Finished>>,
    /// Rollback-type deployments that already stopped in-flight releases.
    superseded: BTreeSet<DeploymentId>,
    pending: BTreeMap<DeploymentId, Vec<Pending>>,
    /// The deployment of each service that is past APPROVE.
    slots: BTreeMap<ServiceName, DeploymentId>,
    /// Approved deployments waiting for their service's slot.
    waiting: BTreeMap<ServiceName, BTreeSet<DeploymentId>>,
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
        let mut c = Coordinator {
            settings,
            clock,
            people,
            agents,
            journal,
            entries,
            machines: BTreeMap::new(),
            next_id: 1,
            history: ServiceHistory::default(),
            subscribers: vec![],
            superseded: BTreeSet::new(),
            pending: BTreeMap::new(),
            slots: BTreeMap::new(),
            waiting: BTreeMap::new(),
            writes: WriteStats {
                buckets: vec![0; WRITE_BUCKETS.len()],
                ..WriteStats::default()
            },
            broken: vec![],
            batch: Batch::default(),
            write_retry: WRITE_RETRY_FIRST,
            retry_scheduled: false,
            in_flight: BTreeMap::new(),
        };
        c.replay()?;
        Ok(c)
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

    // ---- journal ------------------------------------------------------------

    /// Adds an entry to the current batch; nothing may act on it before the
    /// batch is durable (see [`Coordinator::defer`] and [`Coordinator::durably`]).
    fn stage<T: Serialize>(
        &mut self,
        id: DeploymentId,
        at: DateTime<Utc>,
        kind: &str,
        entry: &T,
        ctx: &mut Context<Self>,
    ) -> Result<(), CommandError> {
        let body = serde_json::to_string(entry)
            .map_err(|e| CommandError::Unavailable(format!("cannot encode a journal entry: {e}")))?;
        self.batch.entries.push(journal::NewEntry {
            deployment: id.0,
            at,
            kind: kind.to_string(),
            body,
        });
        if !self.batch.flush_scheduled {
            self.batch.flush_scheduled = true;
            // Runs after the messages and answers already waiting were handled, so they share the commit.
            ctx.spawn(actix::fut::ready(()).map(|_, act: &mut Self, ctx| act.flush(ctx)));
        }
        Ok(())
    }

    /// Carries out `effects` once everything staged so far is durable.
    fn defer(&mut self, id: DeploymentId, effects: Vec<Effect>, attempt: u32, ctx: &mut Context<Self>) {
        if self.batch.entries.is_empty() {
            self.run(id, effects, attempt, ctx);
        } else {
            self.batch.deferred.push(Deferred { id, effects, attempt });
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
    /// carried out and the state is rebuilt from the journal.
    fn flush(&mut self, ctx: &mut Context<Self>) {
        let batch = std::mem::take(&mut self.batch);
        if batch.entries.is_empty() {
            for d in batch.deferred {
                self.run(d.id, d.effects, d.attempt, ctx);
            }
            return;
        }
        let n = batch.entries.len();
        let started = Instant::now();
        match self.journal.append_batch(batch.entries) {
            Ok(written) => {
                let secs = started.elapsed().as_secs_f64();
                self.writes.count += n as u64;
                self.writes.sum += secs * n as f64;
                self.writes.max = self.writes.max.max(secs);
                for (i, bound) in WRITE_BUCKETS.iter().enumerate() {
                    if secs <= *bound {
                        self.writes.buckets[i] += n as u64;
                    }
                }
                for entry in written {
                    // Nobody listening is fine.
                    let _ = self.entries.send(entry);
                }
                for w in batch.waiters {
                    let _ = w.send(Ok(()));
                }
                for d in batch.deferred {
                    self.run(d.id, d.effects, d.attempt, ctx);
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

    /// Forgets the in-memory state and replays the journal, after a batch
    /// that could not be written: the journal holds what is true.
    fn rebuild(&mut self, ctx: &mut Context<Self>) {
        self.machines.clear();
        self.next_id = 1;
        self.history = ServiceHistory::default();
        self.superseded.clear();
        self.pending.clear();
        self.slots.clear();
        self.waiting.clear();
        self.broken.clear();
        if let Err(e) = self.replay() {
            tracing::error!(error = %e, "cannot replay the journal after a failed write");
        }
        let services: Vec<ServiceName> = self.waiting.keys().cloned().collect();
        for s in services {
            self.grant_slot(&s, ctx);
        }
    }

    /// Rebuilds one deployment's machine from its journal entries, durable
    /// and staged, after the machine refused an event (a refused event may
    /// have changed part of it).
    fn reload(&mut self, id: DeploymentId) -> Result<(), String> {
        let mut inputs: Vec<(DateTime<Utc>, String)> = self
            .journal
            .deployment(id.0)
            .map_err(|e| e.to_string())?
            .into_iter()
            .map(|e| (e.at, e.body))
            .collect();
        inputs.extend(
            self.batch
                .entries
                .iter()
                .filter(|e| e.deployment == id.0)
                .map(|e| (e.at, e.body.clone())),
        );
        let mut machine = None;
        for (at, body) in inputs {
            match serde_json::from_str::<JournalEntry>(&body).map_err(|e| e.to_string())? {
                JournalEntry::Submitted {
                    request,
                    production,
                    held,
                    settings,
                    ..
                } => {
                    let (m, _) = Machine::submit(id, at, request, production, Arc::new(*settings), held)
                        .map_err(|e| e.to_string())?;
                    machine = Some(m);
                }
                JournalEntry::Event { event, .. } => {
                    if let Some(m) = machine.as_mut() {
                        let _ = m.handle(at, event);
                    }
                }
                JournalEntry::Resumed { .. } => {}
            }
        }
        let machine = machine.ok_or_else(|| format!("{id} has no submission in the journal"))?;
        self.machines.insert(id, machine);
        Ok(())
    }

    /// Rebuilds every deployment from the journal, in the order it was written.
    fn replay(&mut self) -> Result<(), String> {
        let entries = self.journal.all().map_err(|e| e.to_string())?;
        // Check every chain on the entries already read.
        let mut chains: BTreeMap<u64, Vec<journal::Entry>> = BTreeMap::new();
        for e in &entries {
            chains.entry(e.deployment).or_default().push(e.clone());
        }
        for (d, mut chain) in chains {
            chain.sort_by_key(|e| e.index);
            let v = journal::verify_chain(d, &chain);
            if !v.intact {
                self.broken.push(format!(
                    "journal chain of {} is broken: {}",
                    DeploymentId(d),
                    v.problems.join("; ")
                ));
            }
        }
        // Deployments submitted under the same settings share one copy.
        let mut shared: Arc<Settings> = self.settings.clone();
        for e in entries {
            let id = DeploymentId(e.deployment);
            let body: JournalEntry = serde_json::from_str(&e.body).map_err(|err| {
                format!(
                    "journal entry {} (seq {}) of {id} cannot be read: {err}",
                    e.index, e.seq
                )
            })?;
            self.next_id = self.next_id.max(id.0 + 1);
            match body {
                JournalEntry::Submitted {
                    request,
                    production,
                    held,
                    settings,
                    ..
                } => {
                    if *shared != *settings {
                        shared = Arc::new(*settings);
                    }
                    let (machine, out) =
                        Machine::submit(id, e.at, request, production, shared.clone(), held).map_err(|err| {
                            format!(
                                "journal entry {} of {id}: the submission no longer opens: {err}",
                                e.index
                            )
                        })?;
                    self.machines.insert(id, machine);
                    self.track(id, &out);
                }
                JournalEntry::Event { event, facts } => {
                    let Some(machine) = self.machines.get_mut(&id) else {
                        return Err(format!(
                            "journal entry {} of {id}: an event before the submission",
                            e.index
                        ));
                    };
                    let out = match machine.handle(e.at, event.clone()) {
                        Ok(out) => out,
                        Err(illegal) => {
                            tracing::error!(deployment = %id, error = %illegal, "replay: the journaled event is refused now");
                            continue;
                        }
                    };
                    if out.facts != facts {
                        tracing::warn!(deployment = %id, index = e.index, "replay: the event produced other facts than journaled");
                    }
                    self.answered(id, &event);
                    self.after_event(id, &event, &out);
                    self.track(id, &out);
                    if out.effects.contains(&Effect::Finished) {
                        self.count_finished(id);
                        self.release_slot(id);
                    }
                    if out.facts.is_empty() && out.effects.is_empty() {
                        continue;
                    }
                    if let Some(m) = self.machines.get(&id) {
                        if m.record().kind == DeploymentType::Rollback && m.stage() == Some(Stage::Rollback) {
                            self.superseded.insert(id);
                        }
                    }
                }
                JournalEntry::Resumed { .. } => {
                    for p in self.pending.get_mut(&id).into_iter().flatten() {
                        p.attempt += 1;
                    }
                }
            }
        }
        let live = self.machines.values().filter(|m| !m.is_finished()).count();
        if !self.machines.is_empty() {
            tracing::info!(deployments = self.machines.len(), in_flight = live, "journal replayed");
        }
        Ok(())
    }

    /// Remembers the effects of `out` that await an answer. A deployment
    /// that finished awaits nothing (its timers were cancelled).
    fn track(&mut self, id: DeploymentId, out: &Output) {
        if out.effects.contains(&Effect::Finished) {
            self.pending.remove(&id);
            return;
        }
        let pending = self.pending.entry(id).or_default();
        for effect in &out.effects {
            match effect {
                Effect::Finished | Effect::AwaitDecision { .. } => {}
                Effect::AcquireSlot => {
                    let service = self.machines[&id].record().service.clone();
                    self.waiting.entry(service).or_default().insert(id);
                    pending.push(Pending {
                        effect: effect.clone(),
                        attempt: 1,
                    });
                }
                _ => pending.push(Pending {
                    effect: effect.clone(),
                    attempt: 1,
                }),
            }
        }
    }

    fn answered(&mut self, id: DeploymentId, event: &Event) {
        if let Some(pending) = self.pending.get_mut(&id) {
            if let Some(i) = pending.iter().position(|p| p.effect.answered_by(event)) {
                pending.remove(i);
            }
        }
    }

    /// Bookkeeping outside the machine that an event implies, live and on replay.
    fn after_event(&mut self, id: DeploymentId, event: &Event, out: &Output) {
        let Some(m) = self.machines.get(&id) else {
            return;
        };
        let service = m.record().service.clone();
        match event {
            Event::SlotGranted { .. } => {
                self.slots.insert(service.clone(), id);
                if let Some(w) = self.waiting.get_mut(&service) {
                    w.remove(&id);
                }
            }
            Event::Acknowledge { index, .. } if out.refusal.is_none() => {
                let repeated = index
                    .checked_sub(1)
                    .and_then(|i| m.record().escalations.get(i))
                    .is_some_and(|e| e.reason == EscalationReason::RepeatedFailures);
                if repeated {
                    self.history.held.remove(&service);
                    self.history.consecutive_failures.insert(service, 0);
                }
            }
            _ => {}
        }
    }

    /// Journals one event, feeds it to a deployment's machine and carries out
    /// the result. If the journal cannot record it, the machine is left as it
    /// was and nothing is carried out.
    fn feed(&mut self, id: DeploymentId, event: Event, ctx: &mut Context<Self>) -> Result<(), CommandError> {
        let now = self.clock.now();
        let machine = self.machines.get_mut(&id).ok_or(CommandError::NotFound(id))?;
        if let Event::Timer(token) = event {
            if !machine.timer_pending(token) {
                // A wait that already ended: nothing to record.
                self.answered(id, &event);
                return Ok(());
            }
        }
        let out = match machine.handle(now, event.clone()) {
            Ok(out) => out,
            Err(illegal) => {
                tracing::error!(deployment = %id, error = %illegal, "refused an illegal stage transition");
                // The machine may have changed before it refused: rebuild it from its inputs.
                if let Err(e) = self.reload(id) {
                    tracing::error!(deployment = %id, error = %e, "cannot rebuild the deployment after a refused transition");
                }
                return Err(CommandError::Refused(illegal.to_string()));
            }
        };
        let entry = EventEntry {
            kind: "event",
            event: &event,
            facts: &out.facts,
        };
        if let Err(e) = self.stage(id, now, "event", &entry, ctx) {
            // Nothing was staged: take the machine back to its journaled inputs.
            if let Err(e) = self.reload(id) {
                tracing::error!(deployment = %id, error = %e, "cannot rebuild the deployment after a failed journal write");
            }
            return Err(e);
        }
        let refusal = out.refusal.clone();
        self.answered(id, &event);
        self.after_event(id, &event, &out);
        self.track(id, &out);
        self.defer(id, out.effects, 1, ctx);
        match refusal {
            Some(r) => Err(CommandError::Refused(r)),
            None => Ok(()),
        }
    }

    /// Feeds an agent's answer; a failure is logged (the effect stays
    /// pending and is re-run after a restart).
    fn feed_answer(&mut self, id: DeploymentId, event: Event, ctx: &mut Context<Self>) {
        if let Err(CommandError::Unavailable(e)) = self.feed(id, event, ctx) {
            tracing::error!(deployment = %id, error = %e, "an agent's answer could not be journaled");
        }
    }

    fn call<A, M, F>(&self, ctx: &mut Context<Self>, id: DeploymentId, addr: &Addr<A>, msg: M, to_event: F)
    where
        A: Actor + Handler<M>,
        A::Context: actix::dev::ToEnvelope<A, M>,
        M: Message + Send + 'static,
        M::Result: Send,
        F: FnOnce(Result<M::Result, MailboxError>) -> Event + 'static,
    {
        let request = addr.send(msg);
        let me = ctx.address();
        actix::spawn(async move {
            let event = to_event(request.await);
            me.do_send(Answer { id, event });
        });
    }

    /// Carries out effects; `attempt` is passed on to the agents.
    fn run(&mut self, id: DeploymentId, effects: Vec<Effect>, attempt: u32, ctx: &mut Context<Self>) {
        let Some(machine) = self.machines.get(&id) else {
            return;
        };
        let target = Self::target(machine, attempt);
        let agents = self.agents.clone();
        let lost = |e: MailboxError| format!("agent unavailable: {e}");
        for effect in effects {
            let t = target.clone();
            if !matches!(
                effect,
                Effect::Timer { .. } | Effect::AwaitDecision { .. } | Effect::AcquireSlot | Effect::Finished
            ) {
                self.in_flight.entry(id).or_default().push(effect.clone());
            }
            match effect {
                Effect::Prepare => self.call(ctx, id, &agents.devops, Prepare(t), move |r| {
                    Event::Prepared(r.map_err(lost).and_then(|x| x))
                }),
                Effect::Scan => self.call(ctx, id, &agents.security, Scan(t), move |r| {
                    Event::Scanned(r.map_err(lost).and_then(|x| x))
                }),
                Effect::DeployStaging => self.call(ctx, id, &agents.devops, DeployStaging(t), move |r| {
                    Event::Staged(r.map_err(lost).and_then(|x| x))
                }),
                Effect::Validate { suites } => self.call(ctx, id, &agents.qa, Validate(t, suites), move |r| {
                    Event::Validated(r.map_err(lost).and_then(|x| x))
                }),
                Effect::Notify(entry) => {
                    let nid = entry.id.clone();
                    self.call(ctx, id, &agents.manager, Notify(t, entry), move |r| Event::Notified {
                        id: nid,
                        result: r.map_err(lost).and_then(|x| x),
                    })
                }
                Effect::Review { role, criteria } => {
                    let msg = Review {
                        target: t,
                        role,
                        criteria,
                    };
                    let to_event = move |r: Result<workflow::approval::Advice, MailboxError>| Event::Reviewed {
                        role,
                        advice: r.unwrap_or_else(|e| workflow::approval::Advice::Deny {
                            by: "coordinator".into(),
                            reason: format!("agent unavailable: {e}"),
                        }),
                    };
                    match role {
                        workflow::types::Role::Manager => self.call(ctx, id, &agents.manager, msg, to_event),
                        workflow::types::Role::Security => self.call(ctx, id, &agents.security, msg, to_event),
                        workflow::types::Role::Devops => self.call(ctx, id, &agents.devops, msg, to_event),
                        workflow::types::Role::Qa => self.call(ctx, id, &agents.qa, msg, to_event),
                    }
                }
                Effect::AwaitDecision { role, .. } => {
                    let now = self.clock.now();
                    self.people.approval_requested(&t, role, now, ctx.address().recipient());
                }
                Effect::MeasureBaseline => self.call(ctx, id, &agents.devops, MeasureBaseline(t), move |r| {
                    Event::BaselineMeasured(r.map_err(lost).and_then(|x| x))
                }),
                Effect::Step { index, step } => {
                    self.call(ctx, id, &agents.devops, RunStep(t, step), move |r| Event::StepDone {
                        index,
                        result: r.map_err(lost).and_then(|x| x),
                    })
                }
                Effect::Observe {
                    minute,
                    traffic_percent,
                } => {
                    let devops = agents.devops.send(Observe {
                        target: t.clone(),
                        minute,
                        traffic_percent,
                    });
                    let security = agents.security.send(CheckIncidents(t, minute));
                    let me = ctx.address();
                    actix::spawn(async move {
                        let (metrics, healthy) = devops.await.unwrap_or_else(|e| {
                            (
                                Err(format!("agent unavailable: {e}")),
                                Err(format!("agent unavailable: {e}")),
                            )
                        });
                        let incidents = security.await.unwrap_or_default();
                        let event = Event::Observed(Observation {
                            metrics,
                            healthy,
                            incidents,
                        });
                        me.do_send(Answer { id, event });
                    });
                }
                Effect::Rollback(plan) => self.call(ctx, id, &agents.devops, Rollback(t, plan), move |r| {
                    Event::RolledBack(r.unwrap_or_else(|e| workflow::machine::RollbackOutcome {
                        steps: vec![("Initiate rollback".into(), false, format!("agent unavailable: {e}"))],
                        restored: false,
                        migrations_reverted: false,
                        caches_cleared: false,
                        verified: false,
                    }))
                }),
                Effect::Timer { at, token } => {
                    let delay = (at - self.clock.now()).to_std().unwrap_or_default();
                    let me = ctx.address();
                    actix::spawn(async move {
                        tokio::time::sleep(delay).await;
                        me.do_send(Answer {
                            id,
                            event: Event::Timer(token),
                        });
                    });
                }
                Effect::AcquireSlot => {
                    let service = target.service.clone();
                    self.grant_slot(&service, ctx);
                }
                Effect::Finished => self.finished(id, ctx),
            }
        }
        self.supersede(id, ctx);
    }

    // ---- the production slot of each service ----------------------------------

    fn release_slot(&mut self, id: DeploymentId) {
        let Some(m) = self.machines.get(&id) else {
            return;
        };
        let service = m.record().service.clone();
        if self.slots.get(&service) == Some(&id) {
            self.slots.remove(&service);
        }
        if let Some(w) = self.waiting.get_mut(&service) {
            w.remove(&id);
        }
    }

    /// Gives a free slot to the earliest submitted deployment waiting for it.
    fn grant_slot(&mut self, service: &ServiceName, ctx: &mut Context<Self>) {
        if self.slots.contains_key(service) {
            return;
        }
        let Some(next) = self.waiting.get(service).and_then(|w| w.first().copied()) else {
            return;
        };
        // Reserve it now; the grant is journaled once production is read.
        self.slots.insert(service.clone(), next);
        let name = service.clone();
        self.agents
            .devops
            .send(Inspect(service.clone()))
            .into_actor(self)
            .map(move |production, act, ctx| {
                let why = match production {
                    Ok(Ok(production)) => return act.feed_answer(next, Event::SlotGranted { production }, ctx),
                    Ok(Err(e)) => e,
                    Err(e) => e.to_string(),
                };
                tracing::error!(service = %name, deployment = %next, error = %why, "cannot read production to start the next deployment; retrying in 30 s");
                act.slots.remove(&name);
                ctx.run_later(std::time::Duration::from_secs(30), move |act, ctx| act.grant_slot(&name, ctx));
            })
            .spawn(ctx);
    }

    /// A rollback-type deployment that reached ROLLBACK stops every release
    /// of its service still in production: they roll back (trigger manual).
    fn supersede(&mut self, id: DeploymentId, ctx: &mut Context<Self>) {
        let Some(m) = self.machines.get(&id) else {
            return;
        };
        if m.record().kind != DeploymentType::Rollback
            || m.stage() != Some(Stage::Rollback)
            || self.superseded.contains(&id)
        {
            return;
        }
        self.superseded.insert(id);
        let service = m.record().service.clone();
        let by = m.record().submitted_by.clone();
        let in_flight: Vec<DeploymentId> = self
            .machines
            .values()
            .filter(|o| o.id() != id && o.record().service == service && o.in_production())
            .map(|o| o.id())
            .collect();
        for other in in_flight {
            let _ = self.feed(
                other,
                Event::ManualRollback {
                    by: by.clone(),
                    reason: format!("rollback {id} requested"),
                },
                ctx,
            );
        }
    }

    /// Counts a finished deployment in its service's failure streak. Returns
    /// the streak when this failure puts the service on hold.
    fn count_finished(&mut self, id: DeploymentId) -> Option<u32> {
        let m = self.machines.get(&id)?;
        let service = m.record().service.clone();
        let status = m.status();
        // A deployment held after it reached production (rollback failed,
        // metrics inconclusive, irreversible migration) failed as well.
        let failed = matches!(status, Status::Failed | Status::RolledBack)
            || (status == Status::Escalated && m.record().deploy_log.is_some());
        if !self.history.counted.insert(id) {
            return None;
        }
        if failed {
            let n = self.history.consecutive_failures.entry(service.clone()).or_insert(0);
            *n += 1;
            let n = *n;
            if n >= self.settings.escalation.repeated_failures && !self.history.held.contains_key(&service) {
                let why = format!(
                    "{service} is held after {n} consecutive failed deployments (last: {id}); acknowledge escalation 1 of {id} to release"
                );
                self.history.held.insert(service, (why, id));
                return Some(n);
            }
        } else if status == Status::Succeeded {
            self.history.consecutive_failures.insert(service, 0);
        }
        None
    }

    fn finished(&mut self, id: DeploymentId, ctx: &mut Context<Self>) {
        if let Some(count) = self.count_finished(id) {
            let _ = self.feed(id, Event::RepeatedFailures { count }, ctx);
            return;
        }
        if let Some(m) = self.machines.get(&id) {
            let service = m.record().service.clone();
            self.release_slot(id);
            self.grant_slot(&service, ctx);
        }
        for s in &self.subscribers {
            s.do_send(Finished(id));
        }
    }

    /// After a restart: re-run what was interrupted, re-arm timers at their
    /// original times, and hand out free slots.
    fn resume(&mut self, ctx: &mut Context<Self>) {
        let ids: Vec<DeploymentId> = self.pending.keys().copied().collect();
        for id in ids {
            let pending = std::mem::take(self.pending.get_mut(&id).expect("key from the map"));
            if pending.is_empty() {
                continue;
            }
            let Some(machine) = self.machines.get(&id) else {
                continue;
            };
            let pending: Vec<Pending> = pending
                .into_iter()
                .filter(|p| match p.effect {
                    Effect::Timer { token, .. } => machine.timer_pending(token),
                    _ => true,
                })
                .collect();
            // A call still running (after a failed write, not a restart) is not run again.
            let mut running: Vec<&Effect> = self.in_flight.get(&id).into_iter().flatten().collect();
            let rerun: Vec<Effect> = pending
                .iter()
                .filter(|p| !matches!(p.effect, Effect::Timer { .. } | Effect::AcquireSlot))
                .filter(|p| match running.iter().position(|e| **e == p.effect) {
                    Some(i) => {
                        running.remove(i);
                        false
                    }
                    None => true,
                })
                .map(|p| p.effect.clone())
                .collect();
            let mut kept = pending.clone();
            if !rerun.is_empty() {
                let now = self.clock.now();
                let entry = JournalEntry::Resumed { effects: rerun.clone() };
                if let Err(e) = self.stage(id, now, entry.kind(), &entry, ctx) {
                    tracing::error!(deployment = %id, error = %e, "cannot journal the resumption; the deployment stays paused");
                    self.pending.insert(id, pending);
                    continue;
                }
                for p in kept.iter_mut().filter(|p| rerun.contains(&p.effect)) {
                    p.attempt += 1;
                }
                tracing::info!(deployment = %id, effects = rerun.len(), "resuming interrupted work");
            }
            self.pending.insert(id, kept.clone());
            let mut to_run = rerun;
            for p in kept {
                match p.effect {
                    Effect::AcquireSlot => {}
                    Effect::Timer { .. } => self.defer(id, vec![p.effect], p.attempt, ctx),
                    effect => {
                        // Only what was interrupted; a call still running answers by itself.
                        if let Some(i) = to_run.iter().position(|e| *e == effect) {
                            to_run.remove(i);
                            self.defer(id, vec![effect], p.attempt, ctx);
                        }
                    }
                }
            }
        }
        // A submission journaled just before a crash, whose start was not.
        let unstarted: Vec<DeploymentId> = self
            .machines
            .iter()
            .filter(|(_, m)| !m.is_started() && !m.is_finished())
            .map(|(id, _)| *id)
            .collect();
        for id in unstarted {
            tracing::info!(deployment = %id, "starting a deployment accepted before the restart");
            if let Err(e) = self.feed(id, Event::Start, ctx) {
                tracing::error!(deployment = %id, error = %e, "deployment accepted but not started");
            }
        }
        let services: Vec<ServiceName> = self.waiting.keys().cloned().collect();
        for s in services {
            self.grant_slot(&s, ctx);
        }
    }

    /// One line per deployment whose journal chain is broken.
    pub fn broken_chains(&self) -> &[String] {
        &self.broken
    }

    /// Every deployment's record (Markdown not rendered), in submission order.
    pub fn records(&self) -> Vec<workflow::Record> {
        self.machines.values().map(|m| m.record().clone()).collect()
    }

    /// One deployment's record, with its Markdown rendered.
    pub fn record(&self, id: DeploymentId) -> Option<workflow::Record> {
        self.machines.get(&id).map(|m| m.rendered_record())
    }

    fn stats(&self) -> Stats {
        let mut s = Stats::default();
        for m in self.machines.values() {
            *s.by_status.entry(m.status().as_str().to_string()).or_insert(0) += 1;
            for st in &m.record().stages {
                if let Some(end) = st.finished_at {
                    let secs = (end - st.started_at).num_milliseconds() as f64 / 1000.0;
                    s.stage_seconds.push((st.stage.as_str().to_string(), secs));
                }
            }
        }
        s.queue_depth = self.waiting.values().map(|w| w.len() as u64).sum();
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
        let result = self.accept(msg, ctx);
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
        self.feed_answer(msg.id, msg.event, ctx);
    }
}

impl Coordinator {
    fn accept(&mut self, msg: Accept, ctx: &mut Context<Self>) -> Result<DeploymentId, CommandError> {
        let Accept { request, production } = msg;
        // The id is taken only once the request is known to be valid.
        let id = DeploymentId(self.next_id);
        let held = self.history.held.get(&request.service).map(|(why, _)| why.clone());
        let now = self.clock.now();
        let (machine, out) = Machine::submit(
            id,
            now,
            request.clone(),
            production.clone(),
            self.settings.clone(),
            held.clone(),
        )
        .map_err(|e| CommandError::Invalid(e.to_string()))?;
        let settings = self.settings.clone();
        let entry = SubmittedEntry {
            kind: "submitted",
            request: &request,
            production: &production,
            held: &held,
            settings: &settings,
            facts: &out.facts,
        };
        self.stage(id, now, "submitted", &entry, ctx)?;
        self.next_id += 1;
        self.machines.insert(id, machine);
        self.track(id, &out);
        self.defer(id, out.effects, 1, ctx);
        if let Err(e) = self.feed(id, Event::Start, ctx) {
            // The submission is journaled; the start is retried on the next restart.
            tracing::error!(deployment = %id, error = %e, "deployment accepted but not started");
        }
        Ok(id)
    }
}

impl Handler<Decide> for Coordinator {
    type Result = ResponseFuture<Result<(), CommandError>>;
    fn handle(&mut self, msg: Decide, ctx: &mut Context<Self>) -> Self::Result {
        let result = self.decide(msg, ctx);
        self.durably(result)
    }
}

impl Coordinator {
    fn decide(&mut self, msg: Decide, ctx: &mut Context<Self>) -> Result<(), CommandError> {
        let d = msg.0;
        let m = self.machines.get(&d.id).ok_or(CommandError::NotFound(d.id))?;
        let forbidden = workflow::approval::may_decide(m.record(), d.role, &d.by).err();
        let event = Event::HumanDecision {
            role: d.role,
            approve: d.approve,
            by: d.by,
            reason: d.reason,
        };
        match (self.feed(d.id, event, ctx), forbidden) {
            (Err(CommandError::Refused(r)), Some(why)) if r == why => Err(CommandError::Forbidden(r)),
            (result, _) => result,
        }
    }
}

impl Handler<Cancel> for Coordinator {
    type Result = ResponseFuture<Result<(), CommandError>>;
    fn handle(&mut self, msg: Cancel, ctx: &mut Context<Self>) -> Self::Result {
        let result = self.cancel(msg, ctx);
        self.durably(result)
    }
}

impl Coordinator {
    fn cancel(&mut self, msg: Cancel, ctx: &mut Context<Self>) -> Result<(), CommandError> {
        let event = Event::Cancel {
            by: msg.by,
            reason: msg.reason,
        };
        self.feed(msg.id, event, ctx)
    }
}

impl Handler<RequestRollback> for Coordinator {
    type Result = ResponseFuture<Result<(), CommandError>>;
    fn handle(&mut self, msg: RequestRollback, ctx: &mut Context<Self>) -> Self::Result {
        let result = self.request_rollback(msg, ctx);
        self.durably(result)
    }
}

impl Coordinator {
    fn request_rollback(&mut self, msg: RequestRollback, ctx: &mut Context<Self>) -> Result<(), CommandError> {
        let m = self.machines.get(&msg.id).ok_or(CommandError::NotFound(msg.id))?;
        if m.status() == Status::Succeeded {
            let service = m.record().service.clone();
            let later = self
                .machines
                .values()
                .find(|o| o.id() > msg.id && o.record().service == service && o.record().deploy_log.is_some());
            if let Some(later) = later {
                return Err(CommandError::Refused(format!(
                    "{} has gone out since {}; roll back {} instead, or submit a rollback deployment",
                    later.id(),
                    msg.id,
                    later.id()
                )));
            }
        }
        let event = Event::ManualRollback {
            by: msg.by,
            reason: msg.reason,
        };
        self.feed(msg.id, event, ctx)
    }
}

impl Handler<Acknowledge> for Coordinator {
    type Result = ResponseFuture<Result<(), CommandError>>;
    fn handle(&mut self, msg: Acknowledge, ctx: &mut Context<Self>) -> Self::Result {
        let result = self.acknowledge(msg, ctx);
        self.durably(result)
    }
}

impl Coordinator {
    fn acknowledge(&mut self, msg: Acknowledge, ctx: &mut Context<Self>) -> Result<(), CommandError> {
        let event = Event::Acknowledge {
            index: msg.index,
            by: msg.by,
        };
        self.feed(msg.id, event, ctx)
    }
}

impl Handler<Refuse> for Coordinator {
    type Result = ResponseFuture<Result<(), CommandError>>;
    fn handle(&mut self, msg: Refuse, ctx: &mut Context<Self>) -> Self::Result {
        let result = self.refuse(msg, ctx);
        self.durably(result)
    }
}

impl Coordinator {
    fn refuse(&mut self, msg: Refuse, ctx: &mut Context<Self>) -> Result<(), CommandError> {
        let event = Event::Refused {
            by: msg.by,
            role: msg.role,
            what: msg.what,
            reason: msg.reason,
        };
        self.feed(msg.id, event, ctx)
    }
}

impl Handler<GetRecord> for Coordinator {
    type Result = ResponseFuture<Option<workflow::Record>>;
    fn handle(&mut self, msg: GetRecord, _: &mut Context<Self>) -> Self::Result {
        let Some(machine) = self.machines.get(&msg.0).cloned() else {
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
        use std::ops::Bound;
        let from = msg.after.map_or(Bound::Unbounded, Bound::Excluded);
        let mut records: Vec<workflow::record::Record> = self
            .machines
            .range((from, Bound::Unbounded))
            .map(|(_, m)| m)
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
        if !self.machines.contains_key(&msg.0) {
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
                if !self.machines.contains_key(&id) {
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
