//! Carrying out one effect of a deployment: the typed message to the agent
//! that does it, awaited in a task of its own, whose answer comes back to
//! the Coordinator as the machine's next event ([`Answer`]).
//!
//! Awaiting in separate tasks rather than in the Coordinator's context
//! matters at scale: actix polls every future held by a context each time
//! the context wakes, so thousands of in-flight deployments would make
//! every message cost thousands of polls.

use std::sync::Arc;

use actix::prelude::*;
use workflow::fleet::Call;
use workflow::machine::{Event, Observation, RollbackOutcome};
use workflow::types::{DeploymentId, Role};
use workflow::Effect;

use crate::coordinator::{Agents, Coordinator};
use crate::messages::*;
use crate::ports::{Clock, People, Target};

/// An agent's answer or a timer, for the Coordinator's mailbox.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Answer {
    pub id: DeploymentId,
    pub event: Event,
}

/// Sends `msg` to `addr` and delivers what comes back, made into an event, to `me`.
fn call<A, M, F>(me: &Addr<Coordinator>, id: DeploymentId, addr: &Addr<A>, msg: M, to_event: F)
where
    A: Actor + Handler<M>,
    A::Context: actix::dev::ToEnvelope<A, M>,
    M: Message + Send + 'static,
    M::Result: Send,
    F: FnOnce(Result<M::Result, MailboxError>) -> Event + 'static,
{
    let request = addr.send(msg);
    let me = me.clone();
    actix::spawn(async move {
        let event = to_event(request.await);
        me.do_send(Answer { id, event });
    });
}

/// Carries out `call` for the deployment described by `target`.
pub(crate) fn dispatch(
    agents: &Agents,
    people: &Arc<dyn People>,
    clock: &Arc<dyn Clock>,
    me: &Addr<Coordinator>,
    call: Call,
    target: Target,
) {
    let id = call.id;
    let t = target;
    let lost = |e: MailboxError| format!("agent unavailable: {e}");
    match call.effect {
        Effect::Prepare => self::call(me, id, &agents.devops, Prepare(t), move |r| {
            Event::Prepared(r.map_err(lost).and_then(|x| x))
        }),
        Effect::Scan => self::call(me, id, &agents.security, Scan(t), move |r| {
            Event::Scanned(r.map_err(lost).and_then(|x| x))
        }),
        Effect::DeployStaging => self::call(me, id, &agents.devops, DeployStaging(t), move |r| {
            Event::Staged(r.map_err(lost).and_then(|x| x))
        }),
        Effect::Validate { suites } => self::call(me, id, &agents.qa, Validate(t, suites), move |r| {
            Event::Validated(r.map_err(lost).and_then(|x| x))
        }),
        Effect::Notify(entry) => {
            let nid = entry.id.clone();
            self::call(me, id, &agents.manager, Notify(t, entry), move |r| Event::Notified {
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
                Role::Manager => self::call(me, id, &agents.manager, msg, to_event),
                Role::Security => self::call(me, id, &agents.security, msg, to_event),
                Role::Devops => self::call(me, id, &agents.devops, msg, to_event),
                Role::Qa => self::call(me, id, &agents.qa, msg, to_event),
            }
        }
        Effect::AwaitDecision { role, .. } => {
            people.approval_requested(&t, role, clock.now(), me.clone().recipient());
        }
        Effect::MeasureBaseline => self::call(me, id, &agents.devops, MeasureBaseline(t), move |r| {
            Event::BaselineMeasured(r.map_err(lost).and_then(|x| x))
        }),
        Effect::Step { index, step } => self::call(me, id, &agents.devops, RunStep(t, step), move |r| {
            let (result, simulated) = match r {
                Ok(reported) => (reported.value, reported.simulated),
                Err(e) => (Err(lost(e)), false),
            };
            Event::StepDone {
                index,
                result,
                simulated,
            }
        }),
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
            let me = me.clone();
            actix::spawn(async move {
                let (metrics, healthy) = devops.await.unwrap_or_else(|e| {
                    (
                        Err(format!("agent unavailable: {e}")),
                        crate::ports::Reported::observed(Err(format!("agent unavailable: {e}"))),
                    )
                });
                let incidents = security.await.unwrap_or_default();
                let event = Event::Observed(Observation {
                    metrics,
                    healthy: healthy.value,
                    health_simulated: healthy.simulated,
                    incidents,
                });
                me.do_send(Answer { id, event });
            });
        }
        Effect::Rollback(plan) => self::call(me, id, &agents.devops, Rollback(t, plan), move |r| {
            Event::RolledBack(r.unwrap_or_else(|e| RollbackOutcome {
                steps: vec![("Initiate rollback".into(), false, format!("agent unavailable: {e}"))],
                simulated_steps: vec![],
                restored: false,
                migrations_reverted: false,
                caches_cleared: false,
                verified: false,
            }))
        }),
        Effect::Timer { at, token } => {
            let delay = (at - clock.now()).to_std().unwrap_or_default();
            let me = me.clone();
            actix::spawn(async move {
                tokio::time::sleep(delay).await;
                me.do_send(Answer {
                    id,
                    event: Event::Timer(token),
                });
            });
        }
        // The fleet handles these itself; they never reach the shell as calls.
        Effect::AcquireSlot | Effect::Finished => {}
    }
}

/// Whether carrying out `effect` is a call to an agent whose answer is
/// awaited (as opposed to a timer, a request to a person, or bookkeeping).
pub(crate) fn is_agent_call(effect: &Effect) -> bool {
    !matches!(
        effect,
        Effect::Timer { .. } | Effect::AwaitDecision { .. } | Effect::AcquireSlot | Effect::Finished
    )
}
