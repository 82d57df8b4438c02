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
use std::time::Duration;

use actix::prelude::*;
use workflow::fleet::{Fleet, Input, Refusal, Reply, Staged, Work};
use workflow::machine::Production;
use workflow::record::Request;
use workflow::types::DeploymentId;
use workflow::{Effect, Settings};

pub use workflow::fleet::JournalEntry;

use crate::dispatch::{dispatch, is_agent_call, Answer};
use crate::journaling::{self, GroupCommit};
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

/// A submission whose production state was read, to be accepted.
#[derive(Message)]
#[rtype(result = "Result<DeploymentId, CommandError>")]
struct Accept {
    request: Request,
    production: Production,
}

pub struct Coordinator {
    clock: Arc<dyn Clock>,
    people: Arc<dyn People>,
    agents: Agents,
    commit: GroupCommit,
    fleet: Fleet,
    subscribers: Vec<Recipient<Finished>>,
    /// Deployments whose journal chain was broken when it was replayed.
    broken: Vec<String>,
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
/// How many times the Coordinator lets the other tasks of its thread run
/// before it writes a batch. Each turn lets the agents answer what they
/// were asked and the HTTP workers hand over new requests, and all of it
/// joins the batch: under 32 clients submitting, the daemon commits several
/// times less often per submission than when it writes right after its
/// mailbox is drained (docs/PERFORMANCE.md, row 5a). A turn adds no time of
/// its own, virtual or real, beyond the work the other tasks do in it.
const FLUSH_TURNS: usize = 2;

fn command_error(refusal: Refusal) -> CommandError {
    match refusal {
        Refusal::NotFound(id) => CommandError::NotFound(id),
        Refusal::Invalid(why) => CommandError::Invalid(why),
        Refusal::Forbidden(why) => CommandError::Forbidden(why),
        Refusal::Refused(why) => CommandError::Refused(why),
    }
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
        let (fleet, broken) = journaling::replay(settings, journal.as_ref())?;
        Ok(Coordinator {
            clock,
            people,
            agents,
            commit: GroupCommit::new(journal),
            fleet,
            subscribers: vec![],
            broken,
            write_retry: WRITE_RETRY_FIRST,
            retry_scheduled: false,
            in_flight: BTreeMap::new(),
        })
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
    /// batch is durable (see [`GroupCommit::defer`] and [`GroupCommit::durably`]).
    fn stage(&mut self, staged: Vec<Staged>, ctx: &mut Context<Self>) -> Result<(), CommandError> {
        match self.commit.stage(staged) {
            // Runs once the messages already waiting were handled and the
            // tasks woken meanwhile (agents answering, requests arriving)
            // had their turns, so that what they bring shares the commit.
            Ok(true) => {
                let turns = async {
                    for _ in 0..FLUSH_TURNS {
                        tokio::task::yield_now().await;
                    }
                };
                ctx.spawn(turns.into_actor(self).map(|_, act: &mut Self, ctx| act.flush(ctx)));
            }
            Ok(false) => {}
            Err(e) => {
                // The fleet took an input the journal cannot hold: back to what the journal holds.
                self.rebuild(ctx);
                return Err(CommandError::Unavailable(e));
            }
        }
        Ok(())
    }

    /// Carries out `work` once everything staged so far is durable.
    fn defer(&mut self, work: Work, ctx: &mut Context<Self>) {
        if let Some(work) = self.commit.defer(work) {
            self.run(work, ctx);
        }
    }

    /// Writes the current batch, then carries out what it implied. On
    /// failure nothing of it is carried out and the fleet is replayed from
    /// the journal.
    fn flush(&mut self, ctx: &mut Context<Self>) {
        match self.commit.flush() {
            Ok(work) => {
                for work in work {
                    self.run(work, ctx);
                }
                self.write_retry = WRITE_RETRY_FIRST;
            }
            Err(_) => {
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

    /// Replays the fleet from the journal after a batch that could not be
    /// written: the journal holds what is true.
    fn rebuild(&mut self, ctx: &mut Context<Self>) {
        match journaling::replay(self.fleet.settings().clone(), self.commit.journal()) {
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
        let inputs = self.commit.inputs(id)?;
        self.fleet.restore_machine(id, inputs)
    }

    /// Carries out one piece of work of the fleet.
    fn run(&mut self, work: Work, ctx: &mut Context<Self>) {
        match work {
            Work::Call(call) => {
                let Some(machine) = self.fleet.machine(call.id) else {
                    return;
                };
                let target = Target::of(machine.record(), call.attempt);
                if is_agent_call(&call.effect) {
                    self.in_flight.entry(call.id).or_default().push(call.effect.clone());
                }
                dispatch(&self.agents, &self.people, &self.clock, &ctx.address(), call, target);
            }
            Work::ReadProduction { id, service } => {
                self.agents
                    .devops
                    .send(Inspect {
                        service: service.clone(),
                        ask_service: true,
                    })
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

    /// Handles a person's command: its reply once it is durable.
    fn command(&mut self, input: Input, ctx: &mut Context<Self>) -> ResponseFuture<Result<(), CommandError>> {
        let result = self.input(input, ctx).map(|_| ());
        self.commit.durably(result)
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
        let inspect = self.agents.devops.send(Inspect {
            service: request.service.clone(),
            ask_service: false,
        });
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
        self.commit.durably(result)
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

/// A person's command: given to the fleet, answered once it is durable.
macro_rules! person_command {
    ($($message:ty),*) => {$(
        impl Handler<$message> for Coordinator {
            type Result = ResponseFuture<Result<(), CommandError>>;
            fn handle(&mut self, msg: $message, ctx: &mut Context<Self>) -> Self::Result {
                self.command(msg.into(), ctx)
            }
        }
    )*};
}

person_command!(Decide, Cancel, RequestRollback, Acknowledge, Unblock, Refuse);

impl Handler<BlockedBy> for Coordinator {
    type Result = Option<DeploymentId>;
    fn handle(&mut self, msg: BlockedBy, _: &mut Context<Self>) -> Self::Result {
        self.fleet.blocked_by(&msg.0, &msg.1)
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
        let (records, next) = self.fleet.page(msg.after, msg.service.as_ref(), msg.status, msg.limit);
        MessageResult(ListPage { records, next })
    }
}

impl Handler<Verify> for Coordinator {
    type Result = Result<journal::Verification, CommandError>;
    fn handle(&mut self, msg: Verify, _: &mut Context<Self>) -> Self::Result {
        if self.fleet.machine(msg.0).is_none() {
            return Err(CommandError::NotFound(msg.0));
        }
        self.commit
            .journal()
            .verify(msg.0 .0)
            .map_err(|e| CommandError::Unavailable(e.to_string()))
    }
}

impl Handler<WatchJournal> for Coordinator {
    type Result = Result<(Vec<Streamed>, tokio::sync::broadcast::Receiver<Streamed>), CommandError>;
    fn handle(&mut self, msg: WatchJournal, _: &mut Context<Self>) -> Self::Result {
        let rx = self.commit.subscribe();
        let journal = self.commit.journal();
        let backlog = match (msg.deployment, msg.after) {
            (Some(id), after) => {
                if self.fleet.machine(id).is_none() {
                    return Err(CommandError::NotFound(id));
                }
                let mut all = journal.deployment(id.0);
                if let (Ok(v), Some(after)) = (&mut all, after) {
                    v.retain(|e| e.seq > after);
                }
                all
            }
            (None, Some(after)) => journal.since(after),
            (None, None) => Ok(vec![]),
        }
        .map_err(|e| CommandError::Unavailable(e.to_string()))?;
        let backlog = journaling::with_facts(journal, backlog).map_err(CommandError::Unavailable)?;
        Ok((backlog, rx))
    }
}

impl Handler<GetStats> for Coordinator {
    type Result = MessageResult<GetStats>;
    fn handle(&mut self, _: GetStats, _: &mut Context<Self>) -> Self::Result {
        MessageResult(journaling::stats(&self.fleet, self.commit.writes()))
    }
}

impl Handler<Subscribe> for Coordinator {
    type Result = ();
    fn handle(&mut self, msg: Subscribe, _: &mut Context<Self>) {
        self.subscribers.push(msg.0);
    }
}
