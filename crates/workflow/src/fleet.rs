//! The rules that span deployments, as a pure function: [`Fleet::handle`]
//! takes `now` and an [`Input`] and returns what to journal, what to carry
//! out and what to answer ([`FleetOutput`]), touching nothing.
//!
//! A [`Machine`] is one deployment's workflow; the fleet owns every machine
//! and what lies between them:
//!
//! - the production slot of each service: at most one deployment per service
//!   is past APPROVE; the others wait in submission order and get production
//!   as it is when their turn comes;
//! - failure holds: after `escalation.repeated_failures` failed deployments
//!   in a row a service is held until the escalation is acknowledged;
//! - rollback supersession: a rollback-type deployment that reaches
//!   ROLLBACK stops every release of its service still in production;
//! - blocked versions: a version that was rolled back (a release that ended
//!   rolled back, or the version a rollback-type deployment replaced) is
//!   refused for its service until a manager unblocks it;
//! - the calls asked of the agents and not answered yet, with their attempt
//!   numbers, and the timers.
//!
//! **Replay is a fold.** Every state change goes through [`Fleet::apply`],
//! which takes one journal entry. The live path builds the entry for an
//! input (running the machine to learn its facts) and applies it with the
//! same code; what an entry sets off live (another deployment's rollback, a
//! repeated-failures escalation, the next slot grant) is journaled as
//! entries of its own, so a replay, which folds `apply` over the journal
//! and sets off nothing, reaches the same state. The live path and replay
//! cannot drift: they are the same code.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::approval;
use crate::machine::{Effect, Event, Machine, Production};
use crate::record::{Fact, Record, Request};
use crate::settings::Settings;
use crate::types::{DeploymentId, DeploymentType, EscalationReason, Role, ServiceName, Stage, Status, Version};

/// One deployment's machine, rebuilt from its entries; `each` gets every
/// entry's facts in turn (stored, or derived where the entry has none).
fn replay_one(
    id: DeploymentId,
    inputs: impl IntoIterator<Item = (DateTime<Utc>, JournalEntry)>,
    mut each: impl FnMut(Vec<Fact>),
) -> Result<Machine, String> {
    let mut machine: Option<Machine> = None;
    for (at, entry) in inputs {
        match entry {
            JournalEntry::Submitted {
                request,
                production,
                held,
                settings,
                ..
            } => {
                let (m, out) =
                    Machine::submit(id, at, request, production, settings, held).map_err(|e| e.to_string())?;
                machine = Some(m);
                each(out.facts);
            }
            JournalEntry::Event { event, facts } => {
                let derived = machine.as_mut().and_then(|m| m.handle(at, event).ok());
                each(if facts.is_empty() {
                    derived.map(|out| out.facts).unwrap_or_default()
                } else {
                    facts
                });
            }
            JournalEntry::Resumed { .. } => each(vec![]),
        }
    }
    machine.ok_or_else(|| format!("{id} has no submission in the journal"))
}

/// The body of one journal entry: an input and what it produced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum JournalEntry {
    /// A request was accepted, judged against these settings and this production state.
    Submitted {
        request: Request,
        production: Production,
        held: Option<String>,
        settings: Arc<Settings>,
        facts: Vec<Fact>,
    },
    /// An input to the deployment's machine and the facts it produced. The
    /// facts of an input that carries its own evidence (an observation: see
    /// [`Event::facts_derived`]) are not stored: a replay derives them.
    Event {
        event: Event,
        #[serde(default)]
        facts: Vec<Fact>,
    },
    /// The daemon restarted and re-runs these interrupted effects.
    Resumed { effects: Vec<Effect> },
}

/// The fields of each kind of entry, read by [`JournalEntry::decode`]
/// once the kind is known (the `format` and `kind` keys are ignored).
#[derive(Deserialize)]
struct SubmittedFields {
    request: Request,
    production: Production,
    held: Option<String>,
    settings: Arc<Settings>,
    facts: Vec<Fact>,
}

#[derive(Deserialize)]
struct EventFields {
    event: Event,
    #[serde(default)]
    facts: Vec<Fact>,
}

#[derive(Deserialize)]
struct ResumedFields {
    effects: Vec<Effect>,
}

/// How an event whose facts are derived is stored: the input alone.
#[derive(Serialize)]
#[serde(tag = "kind", rename = "event")]
struct DerivedEvent<'a> {
    event: &'a Event,
}

/// The journal format this release writes. Format 1 (every entry written
/// before the format was recorded) has no `format` key and stores every
/// event's facts; format 2 puts `"format": 2` first in every body and stores
/// an observation once, as the input it is, its facts derived on replay.
/// [`JournalEntry::decode`] reads both.
pub const JOURNAL_FORMAT: u32 = 2;

/// A stored body that this release cannot read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("it was written in journal format {found}, newer than this release reads (formats 1 to {JOURNAL_FORMAT}): upgrade Stagecoach to read this journal")]
    Newer { found: u32 },
    #[error("{0}")]
    Invalid(String),
}

impl JournalEntry {
    /// The body to store: the entry's JSON with `"format"` first, without
    /// the facts a replay derives.
    pub fn encode(&self) -> Result<String, String> {
        let json = match self {
            JournalEntry::Event { event, .. } if event.facts_derived() => {
                serde_json::to_string(&DerivedEvent { event })
            }
            entry => serde_json::to_string(entry),
        }
        .map_err(|e| e.to_string())?;
        // An internally tagged enum always serialises as an object with its tag.
        let fields = json
            .strip_prefix('{')
            .ok_or_else(|| format!("a journal entry serialised as {json:.20}, not as an object"))?;
        Ok(format!("{{\"format\":{JOURNAL_FORMAT},{fields}"))
    }

    /// The format a stored body was written in: the `format` this release
    /// writes first in the body, else 1 (bodies from before formats).
    pub fn format_of(body: &str) -> u32 {
        body.strip_prefix("{\"format\":")
            .map(|rest| rest.bytes().take_while(u8::is_ascii_digit).collect::<Vec<u8>>())
            .and_then(|digits| std::str::from_utf8(&digits).ok()?.parse().ok())
            .unwrap_or(1)
    }

    /// Reads a stored body of any format this release knows.
    pub fn decode(body: &str) -> Result<JournalEntry, DecodeError> {
        let found = Self::format_of(body);
        if found > JOURNAL_FORMAT {
            return Err(DecodeError::Newer { found });
        }
        // Formats 1 and 2 differ only in the `format` key, which the fields ignore.
        let invalid = |e: serde_json::Error| DecodeError::Invalid(e.to_string());
        // Every body this project writes names its kind first (after the
        // format): read the variant's fields straight from the text, without
        // serde buffering the whole body to find the tag. Any other shape
        // takes the general path, which also gives the errors.
        match Self::kind_of(body) {
            Some("submitted") => {
                if let Ok(f) = serde_json::from_str::<SubmittedFields>(body) {
                    return Ok(JournalEntry::Submitted {
                        request: f.request,
                        production: f.production,
                        held: f.held,
                        settings: f.settings,
                        facts: f.facts,
                    });
                }
            }
            Some("event") => {
                if let Ok(f) = serde_json::from_str::<EventFields>(body) {
                    return Ok(JournalEntry::Event {
                        event: f.event,
                        facts: f.facts,
                    });
                }
            }
            Some("resumed") => {
                if let Ok(f) = serde_json::from_str::<ResumedFields>(body) {
                    return Ok(JournalEntry::Resumed { effects: f.effects });
                }
            }
            _ => {}
        }
        serde_json::from_str(body).map_err(invalid)
    }

    /// The `kind` a body names first (after its `format`, if any), as
    /// [`JournalEntry::encode`] writes it.
    fn kind_of(body: &str) -> Option<&str> {
        let rest = match body.strip_prefix("{\"format\":") {
            Some(rest) => rest
                .trim_start_matches(|c: char| c.is_ascii_digit())
                .strip_prefix(',')?,
            None => body.strip_prefix('{')?,
        };
        let name = rest.strip_prefix("\"kind\":\"")?;
        name.split_once('"').map(|(kind, _)| kind)
    }

    /// The entry's `kind`, as the journal stores it beside the body.
    pub fn kind(&self) -> &'static str {
        match self {
            JournalEntry::Submitted { .. } => "submitted",
            JournalEntry::Event { .. } => "event",
            JournalEntry::Resumed { .. } => "resumed",
        }
    }
}

/// One effect to carry out for a deployment, with its attempt number (1 for
/// the first try; more when it is run again after a restart).
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    pub id: DeploymentId,
    pub effect: Effect,
    pub attempt: u32,
}

/// What the shell carries out once the entries of the same output are durable.
#[derive(Debug, Clone, PartialEq)]
pub enum Work {
    /// An effect of a machine: an agent call, a timer, a request for a decision.
    Call(Call),
    /// Read `service`'s production state, then give deployment `id` its slot
    /// ([`Input::SlotGranted`]) or give the reservation back ([`Input::SlotUnavailable`]).
    ReadProduction { id: DeploymentId, service: ServiceName },
    /// The deployment ended: tell whoever waits for it.
    Finished(DeploymentId),
}

/// An entry to append to deployment `id`'s journal.
#[derive(Debug, Clone, PartialEq)]
pub struct Staged {
    pub id: DeploymentId,
    pub at: DateTime<Utc>,
    pub entry: JournalEntry,
}

/// Why an input was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    NotFound(DeploymentId),
    /// The request is invalid (e.g. a submission the machine does not accept).
    Invalid(String),
    /// The person may not do this (separation of duties, one person per role).
    Forbidden(String),
    /// Not possible in the deployment's state.
    Refused(String),
}

/// What the fleet's answer to an input is.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    Done,
    Submitted(DeploymentId),
}

/// Everything one input leads to. Nothing in `work` may be carried out, and
/// `reply` may not be given, before every entry of `entries` is durable.
#[derive(Debug, Clone, PartialEq)]
pub struct FleetOutput {
    pub entries: Vec<Staged>,
    pub work: Vec<Work>,
    pub reply: Result<Reply, Refusal>,
    /// Things an operator should know (a refused transition, a deployment
    /// accepted but not started): the shell logs them.
    pub warnings: Vec<String>,
    /// Deployments whose machine refused an illegal transition and may have
    /// changed part of itself before: rebuild each from its journaled and
    /// staged entries ([`Fleet::restore_machine`]).
    pub reload: Vec<DeploymentId>,
}

impl Default for FleetOutput {
    fn default() -> Self {
        FleetOutput {
            entries: vec![],
            work: vec![],
            reply: Ok(Reply::Done),
            warnings: vec![],
            reload: vec![],
        }
    }
}

/// A person's decision on an approval.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub id: DeploymentId,
    pub role: Role,
    pub approve: bool,
    pub by: String,
    pub reason: String,
}

/// The inputs of the fleet.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    /// A new request, with the production state it is judged against.
    Submit {
        request: Request,
        production: Production,
    },
    /// An agent's answer or a timer of deployment `id`.
    Answer {
        id: DeploymentId,
        event: Event,
    },
    Decide(Decision),
    Cancel {
        id: DeploymentId,
        by: String,
        reason: String,
    },
    RequestRollback {
        id: DeploymentId,
        by: String,
        reason: String,
    },
    Acknowledge {
        id: DeploymentId,
        index: usize,
        by: String,
        note: Option<String>,
    },
    /// A manager lifts the block on a rolled-back version of a service.
    Unblock {
        service: ServiceName,
        version: Version,
        by: String,
        reason: String,
    },
    /// Someone tried a command they may not give; journaled with who it was.
    Refuse {
        id: DeploymentId,
        by: String,
        role: Option<Role>,
        what: String,
        reason: String,
    },
    /// Production was read for the slot reserved for `id`.
    SlotGranted {
        id: DeploymentId,
        production: Production,
    },
    /// Production could not be read: the reservation is given back.
    SlotUnavailable {
        service: ServiceName,
    },
    /// Hand out the free slots of every service with deployments waiting.
    GrantSlots,
    /// After a restart, or once the journal can be written again: re-run the
    /// interrupted calls (those not in `running`, which are still under way
    /// and answer by themselves), re-arm timers, start accepted deployments
    /// and hand out free slots.
    Resume {
        running: BTreeMap<DeploymentId, Vec<Effect>>,
    },
}

/// An effect asked for and not answered yet, with how often it was tried.
#[derive(Debug, Clone, PartialEq)]
struct Pending {
    effect: Effect,
    attempt: u32,
}

/// What applying an entry sets off when it happens live (a replay finds
/// these as entries of their own).
#[derive(Debug, Default)]
struct FollowUps {
    /// The deployment is a rollback that just reached ROLLBACK.
    supersede: bool,
    /// The deployment finished as the Nth consecutive failure of its service, which is now held.
    repeated_failures: Option<u32>,
    /// The deployment finished.
    finished: bool,
    /// The deployment asked for its service's slot.
    wants_slot: bool,
}

/// Every deployment and the rules between them.
#[derive(Debug, Clone)]
pub struct Fleet {
    settings: Arc<Settings>,
    machines: BTreeMap<DeploymentId, Machine>,
    next_id: u64,
    consecutive_failures: BTreeMap<ServiceName, u32>,
    /// Services held after repeated failures: the reason.
    held: BTreeMap<ServiceName, String>,
    counted: BTreeSet<DeploymentId>,
    /// Rollback-type deployments that already stopped in-flight releases.
    superseded: BTreeSet<DeploymentId>,
    pending: BTreeMap<DeploymentId, Vec<Pending>>,
    /// The deployment of each service that is past APPROVE.
    slots: BTreeMap<ServiceName, DeploymentId>,
    /// Slots promised to a deployment while production is read for it; not
    /// journaled (a resume promises them again).
    reserved: BTreeMap<ServiceName, DeploymentId>,
    /// Approved deployments waiting for their service's slot, in submission order.
    waiting: BTreeMap<ServiceName, BTreeSet<DeploymentId>>,
    /// Versions refused for their service: the deployment whose rollback blocked each.
    blocked: BTreeMap<(ServiceName, Version), DeploymentId>,
    /// The same, by deployment: what each deployment's record blocks.
    blocks: BTreeMap<DeploymentId, (ServiceName, Version)>,
}

impl Fleet {
    /// An empty fleet; new submissions are judged against `settings`.
    pub fn new(settings: Arc<Settings>) -> Fleet {
        Fleet {
            settings,
            machines: BTreeMap::new(),
            next_id: 1,
            consecutive_failures: BTreeMap::new(),
            held: BTreeMap::new(),
            counted: BTreeSet::new(),
            superseded: BTreeSet::new(),
            pending: BTreeMap::new(),
            slots: BTreeMap::new(),
            reserved: BTreeMap::new(),
            waiting: BTreeMap::new(),
            blocked: BTreeMap::new(),
            blocks: BTreeMap::new(),
        }
    }

    /// The fleet a journal describes: [`Fleet::apply`] folded over its
    /// entries, in the order they were written. Also returns what did not
    /// replay as journaled (an event the machine refuses now, other facts).
    pub fn replay(
        settings: Arc<Settings>,
        entries: impl IntoIterator<Item = (DeploymentId, DateTime<Utc>, JournalEntry)>,
    ) -> Result<(Fleet, Vec<String>), String> {
        let mut fleet = Fleet::new(settings);
        let mut warnings = vec![];
        for (id, at, entry) in entries {
            if let Some(w) = fleet.apply(id, at, entry)? {
                warnings.push(w);
            }
        }
        Ok((fleet, warnings))
    }

    /// Rebuilds one deployment's machine from its entries, after it refused
    /// an illegal transition (see [`FleetOutput::reload`]). The bookkeeping
    /// around it is unchanged: a refused input changes none of it.
    pub fn restore_machine(
        &mut self,
        id: DeploymentId,
        inputs: impl IntoIterator<Item = (DateTime<Utc>, JournalEntry)>,
    ) -> Result<(), String> {
        let machine = replay_one(id, inputs, |_| {})?;
        self.machines.insert(id, machine);
        Ok(())
    }

    /// Every fact each of one deployment's entries produced, in order:
    /// stored in the entry, or derived from its input by replaying the
    /// deployment's machine (see [`Event::facts_derived`]). For the event
    /// stream, which shows what happened, entry by entry.
    pub fn facts_by_entry(
        id: DeploymentId,
        inputs: impl IntoIterator<Item = (DateTime<Utc>, JournalEntry)>,
    ) -> Result<Vec<Vec<Fact>>, String> {
        let mut facts = vec![];
        replay_one(id, inputs, |f| facts.push(f))?;
        Ok(facts)
    }

    pub fn settings(&self) -> &Arc<Settings> {
        &self.settings
    }

    pub fn machine(&self, id: DeploymentId) -> Option<&Machine> {
        self.machines.get(&id)
    }

    /// Every deployment, in submission order.
    pub fn machines(&self) -> impl Iterator<Item = &Machine> {
        self.machines.values()
    }

    /// The deployments submitted after `after` (all of them for `None`), in submission order.
    pub fn machines_after(&self, after: Option<DeploymentId>) -> impl Iterator<Item = &Machine> {
        use std::ops::Bound;
        let from = after.map_or(Bound::Unbounded, Bound::Excluded);
        self.machines.range((from, Bound::Unbounded)).map(|(_, m)| m)
    }

    /// At most `limit` records of the deployments after `after` (in
    /// submission order) of `service` and in `status` where given, and the
    /// last of them when more match after it.
    pub fn page(
        &self,
        after: Option<DeploymentId>,
        service: Option<&ServiceName>,
        status: Option<Status>,
        limit: usize,
    ) -> (Vec<Record>, Option<DeploymentId>) {
        let mut records: Vec<Record> = self
            .machines_after(after)
            .filter(|m| service.is_none_or(|s| *s == m.record().service))
            .filter(|m| status.is_none_or(|s| s == m.status()))
            .take(limit.saturating_add(1))
            .map(|m| m.record().clone())
            .collect();
        let mut next = None;
        if records.len() > limit {
            records.truncate(limit);
            next = records.last().map(|r| r.id);
        }
        (records, next)
    }

    /// Deployments approved and waiting for their service's slot.
    pub fn queue_depth(&self) -> u64 {
        self.waiting.values().map(|w| w.len() as u64).sum()
    }

    /// The deployment holding each service's slot.
    pub fn slots(&self) -> &BTreeMap<ServiceName, DeploymentId> {
        &self.slots
    }

    /// The deployments of `service` approved and waiting for its slot, in submission order.
    pub fn waiting(&self, service: &ServiceName) -> Vec<DeploymentId> {
        self.waiting.get(service).into_iter().flatten().copied().collect()
    }

    /// What a replay of the journal written so far gives: this fleet without
    /// the slot reservations waiting for a production read.
    pub fn journaled(&self) -> Fleet {
        Fleet {
            reserved: BTreeMap::new(),
            ..self.clone()
        }
    }

    /// The effects of `id` asked for and not answered yet, with their attempts.
    pub fn pending(&self, id: DeploymentId) -> Vec<(Effect, u32)> {
        self.pending
            .get(&id)
            .into_iter()
            .flatten()
            .map(|p| (p.effect.clone(), p.attempt))
            .collect()
    }

    /// Why new standard deployments of `service` are held, if they are.
    pub fn held(&self, service: &ServiceName) -> Option<&str> {
        self.held.get(service).map(String::as_str)
    }

    // ---- applying entries: the one way the state changes ---------------------

    /// Applies one journal entry of deployment `id`, as a replay does.
    /// Returns a warning when the entry does not replay as it was journaled.
    pub fn apply(
        &mut self,
        id: DeploymentId,
        at: DateTime<Utc>,
        entry: JournalEntry,
    ) -> Result<Option<String>, String> {
        self.next_id = self.next_id.max(id.0 + 1);
        match entry {
            JournalEntry::Submitted {
                request,
                production,
                held,
                settings,
                ..
            } => {
                // Deployments submitted under the same settings share one copy.
                let settings = if *settings == *self.settings {
                    self.settings.clone()
                } else {
                    settings
                };
                let (machine, out) = Machine::submit(id, at, request, production, settings, held)
                    .map_err(|e| format!("the submission of {id} no longer opens: {e}"))?;
                self.machines.insert(id, machine);
                self.bookkeep(id, None, &out.effects, false);
                Ok(None)
            }
            JournalEntry::Event { event, facts } => {
                let machine = self
                    .machines
                    .get_mut(&id)
                    .ok_or_else(|| format!("{id}: an event before the submission"))?;
                match machine.handle(at, event.clone()) {
                    Ok(out) => {
                        self.bookkeep(id, Some(&event), &out.effects, out.refusal.is_some());
                        let derived = facts.is_empty() && event.facts_derived();
                        Ok((!derived && out.facts != facts)
                            .then(|| format!("{id}: the event produced other facts than journaled")))
                    }
                    // A journaled event the machine refuses now changes nothing.
                    Err(illegal) => Ok(Some(format!("{id}: the journaled event is refused now: {illegal}"))),
                }
            }
            JournalEntry::Resumed { effects } => {
                self.resumed(id, &effects);
                Ok(None)
            }
        }
    }

    /// The deployment whose rollback blocks `version` of `service`, if one does.
    pub fn blocked_by(&self, service: &ServiceName, version: &Version) -> Option<DeploymentId> {
        self.blocked.get(&(service.clone(), version.clone())).copied()
    }

    /// Every blocked version: (service, version, the deployment that blocked it).
    pub fn blocked(&self) -> impl Iterator<Item = (&ServiceName, &Version, DeploymentId)> {
        self.blocked.iter().map(|((s, v), id)| (s, v, *id))
    }

    /// Keeps the blocked versions in step with deployment `id`'s record
    /// (after each of its entries: a lookup unless what it blocks changed).
    fn track_block(&mut self, id: DeploymentId) {
        let Some(m) = self.machines.get(&id) else {
            return;
        };
        let now = m.record().blocked_version();
        let before = self.blocks.get(&id).map(|(_, v)| v);
        if now == before {
            return;
        }
        let now = now.map(|v| (m.record().service.clone(), v.clone()));
        if let Some(old) = self.blocks.remove(&id) {
            if self.blocked.get(&old) == Some(&id) {
                self.blocked.remove(&old);
            }
        }
        if let Some(key) = now {
            // A later rollback of the same version blocks it in its own name.
            if let Some(previous) = self.blocked.insert(key.clone(), id) {
                self.blocks.remove(&previous);
            }
            self.blocks.insert(id, key);
        }
    }

    /// Counts another attempt of each effect that is run again.
    fn resumed(&mut self, id: DeploymentId, effects: &[Effect]) {
        for p in self.pending.get_mut(&id).into_iter().flatten() {
            if effects.contains(&p.effect) {
                p.attempt += 1;
            }
        }
    }

    /// The bookkeeping outside the machine that one input implies, given the
    /// effects the machine asked for and whether it refused a command.
    fn bookkeep(&mut self, id: DeploymentId, event: Option<&Event>, effects: &[Effect], refused: bool) -> FollowUps {
        let mut follow = FollowUps::default();
        self.track_block(id);
        let Some(m) = self.machines.get(&id) else {
            return follow;
        };
        let service = m.record().service.clone();
        // The answer to a pending effect.
        if let Some(event) = event {
            let mut answered = false;
            if let Some(pending) = self.pending.get_mut(&id) {
                if let Some(i) = pending.iter().position(|p| p.effect.answered_by(event)) {
                    pending.remove(i);
                    answered = true;
                }
            }
            match event {
                // Only a deployment waiting for the slot takes it.
                Event::SlotGranted { .. } if answered => {
                    self.reserved.remove(&service);
                    self.slots.insert(service.clone(), id);
                    if let Some(w) = self.waiting.get_mut(&service) {
                        w.remove(&id);
                    }
                }
                Event::Acknowledge { index, .. } if !refused => {
                    let repeated = index
                        .checked_sub(1)
                        .and_then(|i| m.record().escalations.get(i))
                        .is_some_and(|e| e.reason == EscalationReason::RepeatedFailures);
                    if repeated {
                        self.held.remove(&service);
                        self.consecutive_failures.insert(service.clone(), 0);
                    }
                }
                _ => {}
            }
        }
        // The effects that await an answer; a finished deployment awaits nothing.
        if effects.contains(&Effect::Finished) {
            self.pending.remove(&id);
            follow.finished = true;
            follow.repeated_failures = self.count_finished(id);
            self.release_slot(id);
        } else {
            let pending = self.pending.entry(id).or_default();
            for effect in effects {
                match effect {
                    Effect::Finished | Effect::AwaitDecision { .. } => {}
                    Effect::AcquireSlot => {
                        self.waiting.entry(service.clone()).or_default().insert(id);
                        follow.wants_slot = true;
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
        if let Some(m) = self.machines.get(&id) {
            // A wait the machine gave up (its phase moved on) is no longer awaited.
            if let Some(pending) = self.pending.get_mut(&id) {
                pending.retain(|p| match p.effect {
                    Effect::Timer { token, .. } => m.timer_pending(token),
                    _ => true,
                });
            }
            if m.record().kind == DeploymentType::Rollback && m.stage() == Some(Stage::Rollback) {
                follow.supersede = self.superseded.insert(id);
            }
            // A release rolled back after it succeeded (and gave up the slot) takes the slot again
            // for the rollback, so nothing else of its service goes out meanwhile.
            if m.record().kind != DeploymentType::Rollback
                && m.stage() == Some(Stage::Rollback)
                && !m.status().is_terminal()
                && !self.slots.contains_key(&service)
            {
                self.slots.insert(service.clone(), id);
            }
        }
        follow
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
        if !self.counted.insert(id) {
            return None;
        }
        if failed {
            let n = self.consecutive_failures.entry(service.clone()).or_insert(0);
            *n += 1;
            let n = *n;
            if n >= self.settings.escalation.repeated_failures && !self.held.contains_key(&service) {
                let why = format!(
                    "{service} is held after {n} consecutive failed deployments (last: {id}); acknowledge escalation 1 of {id} to release"
                );
                self.held.insert(service, why);
                return Some(n);
            }
        } else if status == Status::Succeeded {
            self.consecutive_failures.insert(service, 0);
        }
        None
    }

    fn release_slot(&mut self, id: DeploymentId) {
        let Some(m) = self.machines.get(&id) else {
            return;
        };
        let service = m.record().service.clone();
        if self.slots.get(&service) == Some(&id) {
            self.slots.remove(&service);
        }
        if self.reserved.get(&service) == Some(&id) {
            self.reserved.remove(&service);
        }
        if let Some(w) = self.waiting.get_mut(&service) {
            w.remove(&id);
        }
    }

    // ---- the live path ---------------------------------------------------------

    /// Handles one input at `now`.
    pub fn handle(&mut self, now: DateTime<Utc>, input: Input) -> FleetOutput {
        let mut out = FleetOutput::default();
        out.reply = match input {
            Input::Submit { request, production } => self.submit(now, request, production, &mut out),
            Input::Answer { id, event } => self.feed(now, id, event, &mut out).map(|_| Reply::Done),
            Input::Decide(d) => self.decide(now, d, &mut out).map(|_| Reply::Done),
            Input::Cancel { id, by, reason } => self
                .feed(now, id, Event::Cancel { by, reason }, &mut out)
                .map(|_| Reply::Done),
            Input::RequestRollback { id, by, reason } => self
                .request_rollback(now, id, by, reason, &mut out)
                .map(|_| Reply::Done),
            Input::Acknowledge { id, index, by, note } => self
                .feed(now, id, Event::Acknowledge { index, by, note }, &mut out)
                .map(|_| Reply::Done),
            Input::Unblock {
                service,
                version,
                by,
                reason,
            } => self
                .unblock(now, service, version, by, reason, &mut out)
                .map(|_| Reply::Done),
            Input::Refuse {
                id,
                by,
                role,
                what,
                reason,
            } => self
                .feed(now, id, Event::Refused { by, role, what, reason }, &mut out)
                .map(|_| Reply::Done),
            Input::SlotGranted { id, production } => {
                let service = self.machines.get(&id).map(|m| m.record().service.clone());
                if service.is_none_or(|s| self.reserved.get(&s) != Some(&id)) {
                    // A read for a reservation given up since (the deployment was cancelled, the
                    // fleet was rebuilt): nothing to record.
                    return out;
                }
                let result = self.feed(now, id, Event::SlotGranted { production }, &mut out);
                if let Err(e) = &result {
                    out.warnings
                        .push(format!("{id}: the production slot could not be given: {e:?}"));
                }
                result.map(|_| Reply::Done)
            }
            Input::SlotUnavailable { service } => {
                self.reserved.remove(&service);
                Ok(Reply::Done)
            }
            Input::GrantSlots => {
                self.grant_waiting(&mut out);
                Ok(Reply::Done)
            }
            Input::Resume { running } => {
                self.resume(now, running, &mut out);
                Ok(Reply::Done)
            }
        };
        out
    }

    /// Stages an input the machine already took (to learn its facts), does
    /// the bookkeeping it implies, and carries out what it sets off.
    fn commit(
        &mut self,
        now: DateTime<Utc>,
        id: DeploymentId,
        entry: JournalEntry,
        effects: Vec<Effect>,
        refused: bool,
        out: &mut FleetOutput,
    ) {
        let follow = match &entry {
            JournalEntry::Event { event, .. } => self.bookkeep(id, Some(event), &effects, refused),
            JournalEntry::Submitted { .. } => self.bookkeep(id, None, &effects, false),
            JournalEntry::Resumed { effects } => {
                self.resumed(id, effects);
                FollowUps::default()
            }
        };
        out.entries.push(Staged { id, at: now, entry });
        for effect in effects {
            match effect {
                Effect::AcquireSlot | Effect::Finished => {}
                effect => out.work.push(Work::Call(Call { id, effect, attempt: 1 })),
            }
        }
        self.follow_up(now, id, follow, out);
    }

    /// What an entry sets off live: another deployment's rollback, the
    /// repeated-failures escalation, the next slot grant, the news that a
    /// deployment ended.
    fn follow_up(&mut self, now: DateTime<Utc>, id: DeploymentId, follow: FollowUps, out: &mut FleetOutput) {
        if follow.supersede {
            self.supersede(now, id, out);
        }
        let service = self.machines.get(&id).map(|m| m.record().service.clone());
        if let Some(count) = follow.repeated_failures {
            // Its own output finishes the deployment again and tells whoever waits.
            if let Err(e) = self.feed(now, id, Event::RepeatedFailures { count }, out) {
                out.warnings
                    .push(format!("{id}: the repeated-failures escalation was refused: {e:?}"));
            }
            return;
        }
        if follow.finished {
            out.work.push(Work::Finished(id));
        }
        if follow.finished || follow.wants_slot {
            if let Some(service) = service {
                self.grant_slot(&service, out);
            }
        }
    }

    /// Why a blocked version is refused, and what to do.
    fn blocked_message(&self, service: &ServiceName, version: &Version, by: DeploymentId) -> String {
        let when = self
            .machines
            .get(&by)
            .and_then(|m| m.record().finished_at)
            .map(|at| format!(" at {}", at.to_rfc3339()))
            .unwrap_or_default();
        let how = match self.machines.get(&by).map(|m| m.record().kind) {
            Some(DeploymentType::Rollback) => "replaced it in production",
            _ => "was rolled back",
        };
        format!(
            "{service} {version} is blocked: deployment {by} {how}{when}; a manager unblocks it with \
             `stagecoach unblock {service} {version} --reason TEXT`, or submit a fixed version"
        )
    }

    /// Lifts the block on `version` of `service`, journaled on the deployment that blocked it.
    fn unblock(
        &mut self,
        now: DateTime<Utc>,
        service: ServiceName,
        version: Version,
        by: String,
        reason: String,
        out: &mut FleetOutput,
    ) -> Result<(), Refusal> {
        let Some(id) = self.blocked_by(&service, &version) else {
            return Err(Refusal::Refused(format!("{service} {version} is not blocked")));
        };
        self.feed(now, id, Event::Unblock { by, reason }, out)
    }

    fn submit(
        &mut self,
        now: DateTime<Utc>,
        request: Request,
        production: Production,
        out: &mut FleetOutput,
    ) -> Result<Reply, Refusal> {
        // The id is taken only once the request is known to be valid.
        let id = DeploymentId(self.next_id);
        let held = self.held.get(&request.service).cloned();
        let (machine, produced) = Machine::submit(
            id,
            now,
            request.clone(),
            production.clone(),
            self.settings.clone(),
            held.clone(),
        )
        .map_err(|e| match e {
            // The request is well formed; what production holds cannot serve it.
            crate::machine::SubmitError::NothingToRestore(_) => Refusal::Refused(e.to_string()),
            _ => Refusal::Invalid(e.to_string()),
        })?;
        if let Some(version) = machine.record().version.clone() {
            if let Some(by) = self.blocked_by(&request.service, &version) {
                return Err(Refusal::Refused(self.blocked_message(&request.service, &version, by)));
            }
        }
        self.next_id += 1;
        self.machines.insert(id, machine);
        let entry = JournalEntry::Submitted {
            request,
            production,
            held,
            settings: self.settings.clone(),
            facts: produced.facts,
        };
        self.commit(now, id, entry, produced.effects, false, out);
        if let Err(e) = self.feed(now, id, Event::Start, out) {
            // The submission is journaled; the start is retried on the next resume.
            out.warnings
                .push(format!("{id}: deployment accepted but not started: {e:?}"));
        }
        Ok(Reply::Submitted(id))
    }

    /// Feeds one event to a deployment's machine, stages it with its facts and
    /// carries out what it sets off.
    fn feed(
        &mut self,
        now: DateTime<Utc>,
        id: DeploymentId,
        event: Event,
        out: &mut FleetOutput,
    ) -> Result<(), Refusal> {
        let machine = self.machines.get_mut(&id).ok_or(Refusal::NotFound(id))?;
        if let Event::Timer(token) = event {
            if !machine.timer_pending(token) {
                // A wait that already ended (and left `pending` then): nothing to record.
                return Ok(());
            }
        }
        let produced = match machine.handle(now, event.clone()) {
            Ok(produced) => produced,
            Err(illegal) => {
                // The machine may have changed before it refused: the shell rebuilds it.
                out.warnings
                    .push(format!("{id}: refused an illegal stage transition: {illegal}"));
                out.reload.push(id);
                return Err(Refusal::Refused(illegal.to_string()));
            }
        };
        let entry = JournalEntry::Event {
            event,
            facts: produced.facts,
        };
        let refused = produced.refusal.is_some();
        self.commit(now, id, entry, produced.effects, refused, out);
        match produced.refusal {
            Some(r) => Err(Refusal::Refused(r)),
            None => Ok(()),
        }
    }

    fn decide(&mut self, now: DateTime<Utc>, d: Decision, out: &mut FleetOutput) -> Result<(), Refusal> {
        let m = self.machines.get(&d.id).ok_or(Refusal::NotFound(d.id))?;
        let forbidden = approval::may_decide(m.record(), d.role, &d.by).err();
        let event = Event::HumanDecision {
            role: d.role,
            approve: d.approve,
            by: d.by,
            reason: d.reason,
        };
        match (self.feed(now, d.id, event, out), forbidden) {
            (Err(Refusal::Refused(r)), Some(why)) if r == why => Err(Refusal::Forbidden(r)),
            (result, _) => result,
        }
    }

    fn request_rollback(
        &mut self,
        now: DateTime<Utc>,
        id: DeploymentId,
        by: String,
        reason: String,
        out: &mut FleetOutput,
    ) -> Result<(), Refusal> {
        let m = self.machines.get(&id).ok_or(Refusal::NotFound(id))?;
        if m.status() == Status::Succeeded {
            let service = m.record().service.clone();
            let later = self
                .machines
                .values()
                .find(|o| o.id() > id && o.record().service == service && o.record().deploy_log.is_some());
            if let Some(later) = later {
                return Err(Refusal::Refused(format!(
                    "{} has gone out since {id}; roll back {} instead, or submit a rollback deployment",
                    later.id(),
                    later.id()
                )));
            }
            let going_out = [self.slots.get(&service), self.reserved.get(&service)]
                .into_iter()
                .flatten()
                .find(|other| **other != id)
                .copied();
            if let Some(other) = going_out {
                return Err(Refusal::Refused(format!(
                    "{other} holds the production slot of {service}; roll {id} back once {other} has finished, \
                     or submit a rollback deployment"
                )));
            }
        }
        self.feed(now, id, Event::ManualRollback { by, reason }, out)
    }

    /// A rollback-type deployment that reached ROLLBACK stops every release
    /// of its service still in production: they roll back (trigger manual).
    fn supersede(&mut self, now: DateTime<Utc>, id: DeploymentId, out: &mut FleetOutput) {
        let Some(m) = self.machines.get(&id) else {
            return;
        };
        let service = m.record().service.clone();
        let by = m.record().submitted_by.clone();
        let in_production: Vec<DeploymentId> = self
            .machines
            .values()
            .filter(|o| o.id() != id && o.record().service == service && o.in_production())
            .map(|o| o.id())
            .collect();
        for other in in_production {
            let event = Event::ManualRollback {
                by: by.clone(),
                reason: format!("rollback {id} requested"),
            };
            if let Err(e) = self.feed(now, other, event, out) {
                out.warnings
                    .push(format!("{other}: the rollback requested by {id} was refused: {e:?}"));
            }
        }
    }

    /// Reserves a free slot for the earliest submitted deployment waiting for
    /// it; the grant is journaled once production is read.
    fn grant_slot(&mut self, service: &ServiceName, out: &mut FleetOutput) {
        if self.slots.contains_key(service) || self.reserved.contains_key(service) {
            return;
        }
        let Some(next) = self.waiting.get(service).and_then(|w| w.first().copied()) else {
            return;
        };
        self.reserved.insert(service.clone(), next);
        out.work.push(Work::ReadProduction {
            id: next,
            service: service.clone(),
        });
    }

    fn grant_waiting(&mut self, out: &mut FleetOutput) {
        let services: Vec<ServiceName> = self.waiting.keys().cloned().collect();
        for s in services {
            self.grant_slot(&s, out);
        }
    }

    /// Re-runs what was interrupted, re-arms timers at their original times,
    /// starts deployments accepted but not started, and hands out free slots.
    fn resume(&mut self, now: DateTime<Utc>, running: BTreeMap<DeploymentId, Vec<Effect>>, out: &mut FleetOutput) {
        let ids: Vec<DeploymentId> = self.pending.keys().copied().collect();
        for id in ids {
            let Some(machine) = self.machines.get(&id) else {
                continue;
            };
            let pending: Vec<Pending> = self.pending[&id]
                .iter()
                .filter(|p| match p.effect {
                    Effect::Timer { token, .. } => machine.timer_pending(token),
                    _ => true,
                })
                .cloned()
                .collect();
            if pending.is_empty() {
                self.pending.insert(id, pending);
                continue;
            }
            // A call still running (after a failed write, not a restart) is not run again.
            let mut still_running: Vec<&Effect> = running.get(&id).into_iter().flatten().collect();
            let rerun: Vec<Effect> = pending
                .iter()
                .filter(|p| !matches!(p.effect, Effect::Timer { .. } | Effect::AcquireSlot))
                .filter(|p| match still_running.iter().position(|e| **e == p.effect) {
                    Some(i) => {
                        still_running.remove(i);
                        false
                    }
                    None => true,
                })
                .map(|p| p.effect.clone())
                .collect();
            self.pending.insert(id, pending);
            if !rerun.is_empty() {
                // Counts the attempts, as a replay of the entry does.
                self.resumed(id, &rerun);
                out.entries.push(Staged {
                    id,
                    at: now,
                    entry: JournalEntry::Resumed { effects: rerun.clone() },
                });
            }
            let mut to_run = rerun;
            for p in &self.pending[&id] {
                match &p.effect {
                    Effect::AcquireSlot => {}
                    Effect::Timer { .. } => out.work.push(Work::Call(Call {
                        id,
                        effect: p.effect.clone(),
                        attempt: p.attempt,
                    })),
                    effect => {
                        // Only what was interrupted; a call still running answers by itself.
                        if let Some(i) = to_run.iter().position(|e| e == effect) {
                            to_run.remove(i);
                            out.work.push(Work::Call(Call {
                                id,
                                effect: effect.clone(),
                                attempt: p.attempt,
                            }));
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
            if let Err(e) = self.feed(now, id, Event::Start, out) {
                out.warnings
                    .push(format!("{id}: deployment accepted but not started: {e:?}"));
            }
        }
        self.grant_waiting(out);
    }
}

#[cfg(test)]
mod format_tests {
    use super::*;
    use crate::machine::Effect;

    fn resumed() -> JournalEntry {
        JournalEntry::Resumed {
            effects: vec![Effect::Prepare],
        }
    }

    #[test]
    fn a_body_starts_with_its_format_and_reads_back() {
        let body = resumed().encode().expect("encode");
        assert!(body.starts_with("{\"format\":2,\"kind\":\"resumed\""), "{body}");
        assert_eq!(JournalEntry::format_of(&body), JOURNAL_FORMAT);
        assert_eq!(JournalEntry::decode(&body), Ok(resumed()));
    }

    #[test]
    fn a_body_of_the_first_format_has_no_format_key_and_still_reads() {
        let body = serde_json::to_string(&resumed()).expect("encode as format 1 did");
        assert!(body.starts_with("{\"kind\":"), "{body}");
        assert_eq!(JournalEntry::format_of(&body), 1);
        assert_eq!(JournalEntry::decode(&body), Ok(resumed()));
    }

    #[test]
    fn a_newer_format_is_refused_with_what_to_do() {
        let body = resumed()
            .encode()
            .expect("encode")
            .replacen("\"format\":2", "\"format\":17", 1);
        let err = JournalEntry::decode(&body).expect_err("format 17 is newer");
        assert_eq!(err, DecodeError::Newer { found: 17 });
        let text = err.to_string();
        assert!(
            text.contains("journal format 17") && text.contains("formats 1 to 2") && text.contains("upgrade"),
            "{text}"
        );
    }

    #[test]
    fn a_body_of_a_known_kind_with_wrong_fields_says_what_is_wrong() {
        let err =
            JournalEntry::decode("{\"format\":2,\"kind\":\"resumed\",\"effects\":7}").expect_err("effects is no list");
        assert!(
            matches!(&err, DecodeError::Invalid(text) if text.contains("expected a sequence")),
            "{err}"
        );
        let err = JournalEntry::decode("{\"kind\":\"event\"}").expect_err("no event");
        assert!(
            matches!(&err, DecodeError::Invalid(text) if text.contains("missing field `event`")),
            "{err}"
        );
    }

    #[test]
    fn a_body_that_is_no_entry_is_invalid() {
        assert!(matches!(
            JournalEntry::decode("{\"format\":2,\"kind\":\"nonsense\"}"),
            Err(DecodeError::Invalid(_))
        ));
    }
}

#[cfg(test)]
mod derived_facts_tests {
    use super::*;
    use crate::machine::Observation;
    use crate::thresholds::MetricSample;

    fn issue(text: &str) -> Fact {
        Fact::Issue {
            at: "2026-03-03T10:00:00Z".parse().expect("time"),
            issue: text.into(),
        }
    }

    fn observed() -> Event {
        Event::Observed(Observation {
            metrics: Ok(MetricSample {
                error_rate: 0.001,
                latency_p99_ms: 120.0,
                cpu: Some(0.4),
                memory: None,
                simulated: false,
            }),
            healthy: Ok(true),
            health_simulated: false,
            incidents: vec![],
        })
    }

    #[test]
    fn an_observation_is_stored_as_its_input_alone() {
        let live = JournalEntry::Event {
            event: observed(),
            facts: vec![issue("a fact the replay derives")],
        };
        let body = live.encode().expect("encode");
        assert!(!body.contains("\"facts\""), "{body}");
        assert_eq!(body.matches("120.0").count(), 1, "the sample is stored once: {body}");
        assert_eq!(
            JournalEntry::decode(&body),
            Ok(JournalEntry::Event {
                event: observed(),
                facts: vec![]
            })
        );
    }

    #[test]
    fn other_events_keep_their_facts() {
        let entry = JournalEntry::Event {
            event: Event::Timer(3),
            facts: vec![issue("kept")],
        };
        let body = entry.encode().expect("encode");
        assert!(body.contains("\"facts\""), "{body}");
        assert_eq!(JournalEntry::decode(&body), Ok(entry));
    }
}
