//! The Coordinator: owns one [`Machine`] per deployment, feeds it the
//! agents' answers, carries out the effects it returns, and enforces the
//! rules that span deployments (repeated failures, manual rollbacks).
//!
//! It is the only actor that changes a deployment's stage, and it does so
//! only through the machine, which refuses illegal transitions.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use actix::prelude::*;
use workflow::machine::{Event, Machine, Observation};
use workflow::types::{DeploymentId, DeploymentType, ServiceName, Stage, Status};
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

/// Per-service memory across deployments.
#[derive(Debug, Default)]
struct ServiceHistory {
    consecutive_failures: BTreeMap<ServiceName, u32>,
    /// Services held after repeated failures, with the reason.
    held: BTreeMap<ServiceName, String>,
    counted: BTreeSet<DeploymentId>,
}

pub struct Coordinator {
    settings: Arc<Settings>,
    clock: Arc<dyn Clock>,
    people: Arc<dyn People>,
    agents: Agents,
    machines: BTreeMap<DeploymentId, Machine>,
    next_id: u64,
    history: ServiceHistory,
    subscribers: Vec<Recipient<Finished>>,
    /// Rollback-type deployments that already stopped in-flight releases.
    superseded: BTreeSet<DeploymentId>,
}

impl Coordinator {
    pub fn new(settings: Arc<Settings>, clock: Arc<dyn Clock>, people: Arc<dyn People>, agents: Agents) -> Self {
        Coordinator {
            settings,
            clock,
            people,
            agents,
            machines: BTreeMap::new(),
            next_id: 1,
            history: ServiceHistory::default(),
            subscribers: vec![],
            superseded: BTreeSet::new(),
        }
    }

    fn target(m: &Machine) -> Target {
        let r = m.record();
        Target {
            id: r.id,
            service: r.service.clone(),
            version: r.version.clone(),
            kind: r.kind,
            strategy: r.strategy,
            submitted_by: r.submitted_by.clone(),
        }
    }

    /// Feeds one event to a deployment's machine and carries out the result.
    fn feed(&mut self, id: DeploymentId, event: Event, ctx: &mut Context<Self>) -> Option<String> {
        let now = self.clock.now();
        let machine = self.machines.get_mut(&id)?;
        match machine.handle(now, event) {
            Ok(out) => {
                let refusal = out.refusal.clone();
                self.run(id, out, ctx);
                refusal
            }
            Err(illegal) => {
                tracing::error!(deployment = %id, error = %illegal, "refused an illegal stage transition");
                Some(illegal.to_string())
            }
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
        addr.send(msg)
            .into_actor(self)
            .map(move |res, act, ctx| {
                act.feed(id, to_event(res), ctx);
            })
            .spawn(ctx);
    }

    fn run(&mut self, id: DeploymentId, out: Output, ctx: &mut Context<Self>) {
        let Some(machine) = self.machines.get(&id) else {
            return;
        };
        let target = Self::target(machine);
        let agents = self.agents.clone();
        let lost = |e: MailboxError| format!("agent unavailable: {e}");
        for effect in out.effects {
            let t = target.clone();
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
                    async move {
                        let (metrics, healthy) = devops.await.unwrap_or_else(|e| {
                            (
                                Err(format!("agent unavailable: {e}")),
                                Err(format!("agent unavailable: {e}")),
                            )
                        });
                        let incidents = security.await.unwrap_or_default();
                        Observation {
                            metrics,
                            healthy,
                            incidents,
                        }
                    }
                    .into_actor(self)
                    .map(move |obs, act, ctx| {
                        act.feed(id, Event::Observed(obs), ctx);
                    })
                    .spawn(ctx);
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
                    ctx.run_later(delay, move |act, ctx| {
                        act.feed(id, Event::Timer(token), ctx);
                    });
                }
                Effect::Finished => self.finished(id, ctx),
            }
        }
        self.supersede(id, ctx);
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
            self.feed(
                other,
                Event::ManualRollback {
                    by: by.clone(),
                    reason: format!("rollback {id} requested"),
                },
                ctx,
            );
        }
    }

    fn finished(&mut self, id: DeploymentId, ctx: &mut Context<Self>) {
        let Some(m) = self.machines.get(&id) else {
            return;
        };
        let service = m.record().service.clone();
        let status = m.status();
        // A deployment held after it reached production (rollback failed,
        // metrics inconclusive, irreversible migration) failed as well.
        let failed = matches!(status, Status::Failed | Status::RolledBack)
            || (status == Status::Escalated && m.record().deploy_log.is_some());
        if self.history.counted.insert(id) {
            match status {
                _ if failed => {
                    let n = self.history.consecutive_failures.entry(service.clone()).or_insert(0);
                    *n += 1;
                    let n = *n;
                    if n >= self.settings.escalation.repeated_failures && !self.history.held.contains_key(&service) {
                        self.history.held.insert(
                            service.clone(),
                            format!("{service} is held after {n} consecutive failed deployments (last: {id}); acknowledge to release"),
                        );
                        self.feed(id, Event::RepeatedFailures { count: n }, ctx);
                        return;
                    }
                }
                Status::Succeeded => {
                    self.history.consecutive_failures.insert(service, 0);
                }
                _ => {}
            }
        }
        for s in &self.subscribers {
            s.do_send(Finished(id));
        }
    }
}

impl Actor for Coordinator {
    type Context = Context<Self>;
}

impl Handler<Submit> for Coordinator {
    type Result = ResponseActFuture<Self, Result<DeploymentId, CommandError>>;

    fn handle(&mut self, msg: Submit, _ctx: &mut Context<Self>) -> Self::Result {
        let id = DeploymentId(self.next_id);
        self.next_id += 1;
        let request = msg.0;
        let inspect = self.agents.devops.send(Inspect(request.service.clone()));
        Box::pin(inspect.into_actor(self).map(move |production, act, ctx| {
            let production = production
                .map_err(|e| CommandError::Refused(format!("DevOps agent unavailable: {e}")))?
                .map_err(|e| {
                    CommandError::Refused(format!("cannot read production state of {}: {e}", request.service))
                })?;
            let held = act.history.held.get(&request.service).cloned();
            let now = act.clock.now();
            let (machine, out) = Machine::submit(id, now, request, production, act.settings.clone(), held)
                .map_err(|e| CommandError::Invalid(e.to_string()))?;
            act.machines.insert(id, machine);
            act.run(id, out, ctx);
            act.feed(id, Event::Start, ctx);
            Ok(id)
        }))
    }
}

impl Handler<Decide> for Coordinator {
    type Result = Result<(), CommandError>;
    fn handle(&mut self, msg: Decide, ctx: &mut Context<Self>) -> Self::Result {
        let d = msg.0;
        if !self.machines.contains_key(&d.id) {
            return Err(CommandError::NotFound(d.id));
        }
        let event = Event::HumanDecision {
            role: d.role,
            approve: d.approve,
            by: d.by,
            reason: d.reason,
        };
        match self.feed(d.id, event, ctx) {
            Some(refusal) => Err(CommandError::Refused(refusal)),
            None => Ok(()),
        }
    }
}

impl Handler<Cancel> for Coordinator {
    type Result = Result<(), CommandError>;
    fn handle(&mut self, msg: Cancel, ctx: &mut Context<Self>) -> Self::Result {
        if !self.machines.contains_key(&msg.id) {
            return Err(CommandError::NotFound(msg.id));
        }
        match self.feed(
            msg.id,
            Event::Cancel {
                by: msg.by,
                reason: msg.reason,
            },
            ctx,
        ) {
            Some(refusal) => Err(CommandError::Refused(refusal)),
            None => Ok(()),
        }
    }
}

impl Handler<GetRecord> for Coordinator {
    type Result = Option<workflow::Record>;
    fn handle(&mut self, msg: GetRecord, _: &mut Context<Self>) -> Self::Result {
        self.machines.get(&msg.0).map(|m| m.rendered_record())
    }
}

impl Handler<Subscribe> for Coordinator {
    type Result = ();
    fn handle(&mut self, msg: Subscribe, _: &mut Context<Self>) {
        self.subscribers.push(msg.0);
    }
}
