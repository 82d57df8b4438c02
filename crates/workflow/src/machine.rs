//! The deployment state machine: one deployment's whole workflow as a pure
//! function of `now` and an [`Event`], returning the [`Fact`]s to record and
//! the [`Effect`]s to carry out.
//!
//! The Coordinator actor owns one machine per deployment; agents' results
//! come back as events. Only this machine changes a deployment's stage, and
//! every stage change goes through [`transitions::check`].

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use crate::approval::{self, Advice};
use crate::checklist::{self, PrepareReport, ScanReport};
use crate::record::{fmt_minutes, pct};
use crate::record::{
    Alert, Approval, CheckpointEntry, Decision, Escalation, Fact, NotificationEntry, Record, Request, SampleEntry,
    StagingReport, StepEntry, SuiteResult, ValidationReport,
};
use crate::report;
use crate::settings::{CheckpointCheck, IrreversiblePolicy, Settings, SuiteSelection, TypePolicy, WindowRule};
use crate::strategy::{self, Colour, DeployStep};
use crate::thresholds::{self, AlertAction, Finding, Metric, MetricSample};
use crate::transitions::{self, IllegalTransition};
use crate::types::{
    DeploymentId, DeploymentType, EscalationReason, MigrationKind, NotificationKind, Outcome, Role, RollbackTrigger,
    ServiceName, Stage, Status, Strategy, Version,
};
use crate::windows::Calendar;

/// The `Effect::Step` index of the blue-green decommission step, which runs
/// after monitoring rather than as part of the plan.
pub const DECOMMISSION: usize = usize::MAX;

/// What production looks like when a deployment is submitted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Production {
    pub current_version: Option<Version>,
    pub previous_version: Option<Version>,
    pub active_colour: Colour,
    /// What the service itself said runs, when something asked it (the
    /// daemon's `current_version` action): a deployment given the slot is
    /// held unless it agrees with `current_version`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed: Option<Box<ProductionReading>>,
}

/// What a service said runs in its production, read with the production state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProductionReading {
    /// What answered, as named in messages (e.g. `current_version`).
    pub source: String,
    /// The version it says runs (`None`: nothing runs), or why it could not say.
    pub version: Result<Option<Version>, String>,
}

impl Production {
    /// Why `service`'s production cannot be taken to run what the journal
    /// says (`current_version`): the reading names another version, or it
    /// could not be had. `None` when it agrees or nothing was read.
    pub fn disagreement(&self, service: &ServiceName) -> Option<String> {
        let reading = self.observed.as_ref()?;
        let shown = |v: &Option<Version>| v.as_ref().map_or_else(|| "nothing".to_string(), |v| v.to_string());
        match &reading.version {
            Ok(seen) if *seen == self.current_version => None,
            Ok(seen) => Some(format!(
                "production of {service} runs {} by `{}`, but the journal says {}; not deploying over a version \
                 the journal does not know: bring production back to {}, or record what runs with a rollback \
                 deployment, then submit again",
                shown(seen),
                reading.source,
                shown(&self.current_version),
                shown(&self.current_version),
            )),
            Err(e) => Some(format!(
                "`{}` could not say what runs in production of {service} (the journal says {}): {e}; not deploying \
                 blind: fix the command, then submit again",
                reading.source,
                shown(&self.current_version),
            )),
        }
    }
}

/// An incident reported while a release is watched.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Incident {
    pub kind: IncidentKind,
    pub detail: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IncidentKind {
    SecurityVulnerability,
    CriticalFunctionalityBroken,
}

/// One observation of the new version in production.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Observation {
    /// `Err` when the metrics source failed or returned nothing.
    pub metrics: Result<MetricSample, String>,
    /// Health/smoke check of critical functionality; `Err` when it could not run.
    pub healthy: Result<bool, String>,
    /// The health check was answered by the simulated world.
    #[serde(default)]
    pub health_simulated: bool,
    pub incidents: Vec<Incident>,
}

/// What DevOps did to roll back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RollbackOutcome {
    pub steps: Vec<(String, bool, String)>,
    /// Per step of `steps`: whether the simulated world answered it (no
    /// command ran). Missing entries (journals from before) are `false`.
    #[serde(default)]
    pub simulated_steps: Vec<bool>,
    pub restored: bool,
    pub migrations_reverted: bool,
    pub caches_cleared: bool,
    pub verified: bool,
}

/// What DevOps must do to roll back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RollbackPlan {
    pub restore_version: Option<Version>,
    pub from_version: Option<Version>,
    pub strategy: Strategy,
    pub traffic_percent: u8,
    pub revert_migrations: bool,
    pub clear_caches: bool,
}

/// Work the machine asks for. Each effect's result comes back as an event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Effect {
    /// DevOps: verify tests, build, prepare migrations, update configuration, verify backup.
    Prepare,
    /// Security: scan the release.
    Scan,
    /// DevOps: deploy to staging, migrate, verify, smoke-test.
    DeployStaging,
    /// QA: run the selected suites in staging.
    Validate { suites: SuiteSelection },
    /// Send a notification (through the Manager agent).
    Notify(NotificationEntry),
    /// The agent of `role` reviews the approval criteria.
    Review {
        role: Role,
        criteria: Vec<crate::record::CriterionCheck>,
    },
    /// A person holding `role` is asked to decide before `deadline`.
    AwaitDecision { role: Role, deadline: DateTime<Utc> },
    /// DevOps: read the metrics of the current production version.
    MeasureBaseline,
    /// DevOps: carry out one production step.
    Step { index: usize, step: DeployStep },
    /// DevOps and Security: observe the new version.
    Observe { minute: u32, traffic_percent: u8 },
    /// DevOps: roll back.
    Rollback(RollbackPlan),
    /// Wake the machine with `Event::Timer(token)` at `at`.
    Timer { at: DateTime<Utc>, token: u64 },
    /// Ask for the service's production slot: at most one deployment per
    /// service is past APPROVE. Answered by `Event::SlotGranted`.
    AcquireSlot,
    /// The deployment reached a terminal status and nothing is pending.
    Finished,
}

/// Inputs to the machine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Event {
    Start,
    Prepared(Result<PrepareReport, String>),
    Scanned(Result<ScanReport, String>),
    Staged(Result<StagingReport, String>),
    Validated(Result<Vec<SuiteResult>, String>),
    Notified {
        id: String,
        result: Result<(), String>,
    },
    Reviewed {
        role: Role,
        advice: Advice,
    },
    HumanDecision {
        role: Role,
        approve: bool,
        by: String,
        reason: String,
    },
    BaselineMeasured(Result<MetricSample, String>),
    StepDone {
        index: usize,
        result: Result<(), String>,
        /// The simulated world answered the step: no command ran.
        #[serde(default)]
        simulated: bool,
    },
    Observed(Observation),
    RolledBack(RollbackOutcome),
    Timer(u64),
    ManualRollback {
        by: String,
        reason: String,
    },
    Cancel {
        by: String,
        reason: String,
    },
    /// The coordinator found this was the Nth consecutive failure of the service.
    RepeatedFailures {
        count: u32,
    },
    /// The service's production slot is this deployment's; `production` is
    /// what runs in production now (the deployment ahead may have changed it).
    SlotGranted {
        production: Production,
    },
    /// A person acknowledged escalation number `index` (from 1) of this
    /// deployment, with what they noted (journals before the note read as none).
    Acknowledge {
        index: usize,
        by: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        note: Option<String>,
    },
    /// A manager lifts the block this deployment's rollback put on its version.
    Unblock {
        by: String,
        reason: String,
    },
    /// Someone tried a command they may not give (for `role`'s approval when set).
    Refused {
        by: String,
        role: Option<Role>,
        what: String,
        reason: String,
    },
}

impl Event {
    /// Whether the journal stores this input alone, its facts derived on
    /// replay: an observation carries its own evidence (the metric sample,
    /// the health check, the incidents), so its facts would store it twice.
    pub fn facts_derived(&self) -> bool {
        matches!(self, Event::Observed(_))
    }
}

impl Effect {
    /// Whether `event` is the answer to this effect. A journal replay uses
    /// it to find the effects that were still outstanding when it stopped.
    pub fn answered_by(&self, event: &Event) -> bool {
        match (self, event) {
            (Effect::Prepare, Event::Prepared(_))
            | (Effect::Scan, Event::Scanned(_))
            | (Effect::DeployStaging, Event::Staged(_))
            | (Effect::Validate { .. }, Event::Validated(_))
            | (Effect::MeasureBaseline, Event::BaselineMeasured(_))
            | (Effect::Observe { .. }, Event::Observed(_))
            | (Effect::Rollback(_), Event::RolledBack(_))
            | (Effect::AcquireSlot, Event::SlotGranted { .. }) => true,
            (Effect::Notify(n), Event::Notified { id, .. }) => n.id == *id,
            (Effect::Review { role, .. }, Event::Reviewed { role: r, .. }) => role == r,
            (Effect::Step { index, .. }, Event::StepDone { index: i, .. }) => index == i,
            (Effect::Timer { token, .. }, Event::Timer(t)) => token == t,
            _ => false,
        }
    }
}

/// Result of handling one event.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct Output {
    pub facts: Vec<Fact>,
    pub effects: Vec<Effect>,
    /// Set when a command (decision, cancel, manual rollback) was refused.
    pub refusal: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum RoleState {
    Reviewing,
    AwaitingHuman {
        deadline: DateTime<Utc>,
    },
    Granted,
    /// Denied, rejected by a person, or timed out: `why` is the rejection's reason.
    Denied {
        why: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
enum TimerPurpose {
    ApprovalDeadline(Role),
    Window,
    Observe,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Phase {
    New,
    Preparing {
        prepare: Option<PrepareReport>,
        scan: Option<ScanReport>,
    },
    Staging,
    Validating,
    Approving {
        notified: bool,
        roles: BTreeMap<Role, RoleState>,
    },
    WaitingForWindow,
    /// Approved, waiting for the service's production slot.
    AwaitingSlot,
    Baseline,
    Deploying {
        steps: Vec<DeployStep>,
        index: usize,
    },
    /// Canary analysis after step `index`, started at `since`.
    Analysing {
        steps: Vec<DeployStep>,
        index: usize,
        since: DateTime<Utc>,
    },
    Monitoring {
        since: DateTime<Utc>,
    },
    /// Blue-green: monitoring passed, the old colour is being removed.
    Decommissioning,
    RollingBack,
    Done,
}

/// Running state of metric watching, shared by canary analysis and MONITOR.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
struct Watch {
    inconclusive: u32,
    breaches: BTreeMap<Metric, u32>,
    levels: BTreeMap<Metric, AlertAction>,
    escalated: BTreeSet<EscalationReason>,
    last: Option<MetricSample>,
    last_healthy: Option<bool>,
    #[serde(default)]
    last_health_simulated: bool,
    checkpoints_done: usize,
    observing: bool,
}

/// One deployment's workflow.
#[derive(Debug, Clone)]
pub struct Machine {
    settings: std::sync::Arc<Settings>,
    policy: TypePolicy,
    record: Record,
    stage: Option<Stage>,
    phase: Phase,
    production: Production,
    prepare: Option<PrepareReport>,
    deploy_started: Option<DateTime<Utc>>,
    traffic: u8,
    migrations_applied: Option<MigrationKind>,
    baseline: Option<MetricSample>,
    watch: Watch,
    timers: BTreeMap<u64, TimerPurpose>,
    next_token: u64,
    pending_notifications: BTreeMap<String, NotificationEntry>,
    notification_seq: u32,
    finished_sent: bool,
    held: Option<String>,
    attest: Vec<checklist::ItemKey>,
    /// Whether this deployment holds its service's production slot.
    slot: bool,
    window_override: Option<crate::record::WindowOverride>,
}

/// Why a request cannot be submitted at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubmitError {
    #[error("scheduled_for is required for a scheduled deployment")]
    MissingSchedule,
    #[error("scheduled_for is only allowed for a scheduled deployment")]
    UnexpectedSchedule,
    #[error("version is required for a {0} deployment")]
    MissingVersion(DeploymentType),
    #[error("a rollback needs a version to restore and no previous version of {0} is known")]
    NothingToRestore(ServiceName),
}

impl Machine {
    /// Validates a request against `production` and opens its record.
    /// A scheduled request outside every allowed window opens as `rejected`.
    pub fn submit(
        id: DeploymentId,
        now: DateTime<Utc>,
        request: Request,
        production: Production,
        settings: std::sync::Arc<Settings>,
        held: Option<String>,
    ) -> Result<(Machine, Output), SubmitError> {
        let policy = settings.types.get(request.kind).clone();
        match (request.kind, request.scheduled_for) {
            (DeploymentType::Scheduled, None) => return Err(SubmitError::MissingSchedule),
            (DeploymentType::Scheduled, Some(_)) => {}
            (_, Some(_)) => return Err(SubmitError::UnexpectedSchedule),
            _ => {}
        }
        let target = match request.kind {
            DeploymentType::Rollback => match request.version.clone().or_else(|| production.previous_version.clone()) {
                Some(v) => Some(v),
                None => return Err(SubmitError::NothingToRestore(request.service.clone())),
            },
            kind => match request.version.clone() {
                Some(v) => Some(v),
                None => return Err(SubmitError::MissingVersion(kind)),
            },
        };
        let strategy = request.strategy.unwrap_or(settings.defaults.strategy);
        let attest = request.attest.clone();
        let window_override = request.window_override.clone();
        let submitted = Fact::Submitted {
            id,
            at: now,
            request,
            strategy,
            previous_version: production.current_version.clone(),
            production_version: production.current_version.clone(),
            target_version: target,
        };
        let record = Record::open(&submitted).expect("a Submitted fact opens a record");
        let mut m = Machine {
            settings,
            policy,
            record,
            stage: None,
            phase: Phase::New,
            production,
            prepare: None,
            deploy_started: None,
            traffic: 0,
            migrations_applied: None,
            baseline: None,
            watch: Watch::default(),
            timers: BTreeMap::new(),
            next_token: 1,
            pending_notifications: BTreeMap::new(),
            notification_seq: 0,
            finished_sent: false,
            held,
            attest,
            slot: false,
            window_override: None,
        };
        let mut out = Output {
            facts: vec![submitted],
            ..Output::default()
        };
        m.emit(
            &mut out,
            Fact::Status {
                at: now,
                status: Status::Queued,
                note: String::new(),
            },
        );
        if let Some(o) = window_override {
            m.window_override = Some(o.clone());
            m.emit(
                &mut out,
                Fact::Approval(Approval {
                    role: Role::Manager,
                    decision: Decision::WindowOverride,
                    by: o.by,
                    at: now,
                    reason: o.reason,
                    criteria: vec![],
                }),
            );
        }
        Ok((m, out))
    }

    pub fn id(&self) -> DeploymentId {
        self.record.id
    }
    pub fn record(&self) -> &Record {
        &self.record
    }
    pub fn stage(&self) -> Option<Stage> {
        self.stage
    }
    pub fn status(&self) -> Status {
        self.record.status
    }
    pub fn is_finished(&self) -> bool {
        self.finished_sent
    }
    /// Whether [`Event::Start`] has been handled.
    pub fn is_started(&self) -> bool {
        !matches!(self.phase, Phase::New)
    }
    /// Whether timer `token` still means something to the machine (a timer
    /// of a wait that ended meanwhile does not).
    pub fn timer_pending(&self, token: u64) -> bool {
        self.timers.contains_key(&token)
    }

    /// Whether the deployment has started changing production.
    pub fn in_production(&self) -> bool {
        matches!(self.stage, Some(Stage::Deploy) | Some(Stage::Monitor)) && !self.record.status.is_terminal()
    }

    /// The record with its Markdown rendered.
    pub fn rendered_record(&self) -> Record {
        let mut r = self.record.clone();
        r.markdown = report::deployment_record(&r, &self.settings);
        r
    }

    fn emit(&mut self, out: &mut Output, fact: Fact) {
        self.record.apply(&fact);
        out.facts.push(fact);
    }

    fn timer(&mut self, out: &mut Output, at: DateTime<Utc>, purpose: TimerPurpose) {
        let token = self.next_token;
        self.next_token += 1;
        self.timers.insert(token, purpose);
        out.effects.push(Effect::Timer { at, token });
    }

    fn enter(&mut self, out: &mut Output, now: DateTime<Utc>, stage: Stage) -> Result<(), IllegalTransition> {
        transitions::check(&self.policy.stages, self.stage, stage)?;
        self.stage = Some(stage);
        self.emit(out, Fact::StageStarted { at: now, stage });
        Ok(())
    }

    fn finish_stage(&mut self, out: &mut Output, now: DateTime<Utc>, outcome: Outcome, note: impl Into<String>) {
        if let Some(stage) = self.stage {
            let open = self
                .record
                .stages
                .iter()
                .any(|e| e.stage == stage && e.outcome.is_none());
            if open {
                self.emit(
                    out,
                    Fact::StageFinished {
                        at: now,
                        stage,
                        outcome,
                        note: note.into(),
                    },
                );
            }
        }
    }

    /// The stage after the current one in this type's list.
    fn next_stage(&self) -> Option<Stage> {
        let stages = &self.policy.stages;
        match self.stage {
            None => stages.first().copied(),
            Some(s) => stages
                .iter()
                .position(|x| *x == s)
                .and_then(|p| stages.get(p + 1))
                .copied(),
        }
    }

    fn set_status(&mut self, out: &mut Output, now: DateTime<Utc>, status: Status, note: impl Into<String>) {
        if self.record.status != status {
            self.emit(
                out,
                Fact::Status {
                    at: now,
                    status,
                    note: note.into(),
                },
            );
        }
    }

    fn end(&mut self, out: &mut Output, now: DateTime<Utc>, status: Status, note: impl Into<String>) {
        self.timers.clear();
        self.phase = Phase::Done;
        self.set_status(out, now, status, note);
        self.maybe_finished(out);
    }

    fn maybe_finished(&mut self, out: &mut Output) {
        if self.record.status.is_terminal() && self.pending_notifications.is_empty() && !self.finished_sent {
            self.finished_sent = true;
            out.effects.push(Effect::Finished);
        }
    }

    fn notify(&mut self, out: &mut Output, now: DateTime<Utc>, kind: NotificationKind, subject: String, body: String) {
        self.notification_seq += 1;
        let id = format!("{}-n{}", self.record.id, self.notification_seq);
        let simulated = self.record.rests_on_simulation();
        let body = if simulated {
            format!("{body}\n{}\n", crate::record::SIMULATED_NOTICE)
        } else {
            body
        };
        let entry = NotificationEntry {
            id: id.clone(),
            kind,
            at: now,
            subject,
            body,
            delivered: false,
            error: None,
            simulated,
        };
        self.pending_notifications.insert(id, entry.clone());
        out.effects.push(Effect::Notify(entry));
    }

    /// Records an approval decision with the criteria as they stand now.
    fn approval(
        &mut self,
        out: &mut Output,
        now: DateTime<Utc>,
        role: Role,
        decision: Decision,
        by: String,
        reason: String,
    ) {
        let criteria = approval::criteria(&self.record, &self.policy.approvers);
        self.emit(
            out,
            Fact::Approval(Approval {
                role,
                decision,
                by,
                at: now,
                reason,
                criteria,
            }),
        );
    }

    fn escalate(&mut self, out: &mut Output, now: DateTime<Utc>, reason: EscalationReason, detail: String) {
        self.emit(
            out,
            Fact::Escalation(Escalation {
                at: now,
                reason,
                detail: detail.clone(),
                acknowledged_by: None,
                acknowledged_at: None,
                acknowledgement_note: None,
            }),
        );
        let (subject, body) = report::escalation_message(&self.record, reason, &detail, now, &self.settings);
        self.notify(out, now, NotificationKind::Escalation, subject, body);
    }

    /// Handles one event at `now`.
    pub fn handle(&mut self, now: DateTime<Utc>, event: Event) -> Result<Output, IllegalTransition> {
        let mut out = Output::default();
        self.step(&mut out, now, event)?;
        Ok(out)
    }

    /// Routes one event to the handler that decides it. The events that
    /// span the stages (deliveries, people's commands, timers) have a
    /// handler each; every other event answers something a stage asked for,
    /// and the handler of the stage the deployment is in decides it.
    fn step(&mut self, out: &mut Output, now: DateTime<Utc>, event: Event) -> Result<(), IllegalTransition> {
        match event {
            Event::Notified { id, result } => self.on_notified(out, now, id, result),
            Event::RepeatedFailures { count } => self.on_repeated_failures(out, now, count),
            Event::Cancel { by, reason } => self.on_cancel(out, now, by, reason),
            Event::Acknowledge { index, by, note } => self.on_acknowledge(out, now, index, by, note),
            Event::Unblock { by, reason } => {
                match self.record.blocked_version() {
                    Some(_) => self.emit(out, Fact::Unblocked { at: now, by, reason }),
                    None => {
                        out.refusal = Some(format!("deployment {} blocks no version", self.record.id));
                    }
                }
                Ok(())
            }
            Event::Refused { by, role, what, reason } => self.on_refused(out, now, by, role, what, reason),
            Event::ManualRollback { by, reason } => self.on_manual_rollback(out, now, by, reason),
            Event::Timer(token) => match self.timers.remove(&token) {
                Some(purpose) => self.on_timer(out, now, purpose),
                None => Ok(()),
            },
            event => {
                // The stage handler sets the phase that follows.
                let phase = std::mem::replace(&mut self.phase, Phase::Done);
                match phase {
                    Phase::New => self.on_start(out, now, event),
                    Phase::Preparing { prepare, scan } => self.prepare_stage(out, now, prepare, scan, event),
                    Phase::Staging => self.staging_stage(out, now, event),
                    Phase::Validating => self.validate_stage(out, now, event),
                    Phase::Approving { notified, roles } => self.approve_stage(out, now, notified, roles, event),
                    phase @ (Phase::WaitingForWindow
                    | Phase::AwaitingSlot
                    | Phase::Baseline
                    | Phase::Deploying { .. }
                    | Phase::Analysing { .. }) => self.deploy_stage(out, now, phase, event),
                    phase @ (Phase::Monitoring { .. } | Phase::Decommissioning) => {
                        self.monitor_stage(out, now, phase, event)
                    }
                    Phase::RollingBack => self.rollback_stage(out, now, event),
                    Phase::Done => self.not_awaited(out, Phase::Done, event),
                }
            }
        }
    }

    /// An event the phase does not wait for: a late or duplicate result
    /// (e.g. an agent answering after the deployment ended) changes
    /// nothing; a person's decision that nothing awaits is refused so the
    /// caller knows.
    fn not_awaited(&mut self, out: &mut Output, phase: Phase, event: Event) -> Result<(), IllegalTransition> {
        if let Event::HumanDecision { role, .. } = event {
            out.refusal = Some(self.no_decision_pending(role));
        }
        self.phase = phase;
        Ok(())
    }

    fn no_decision_pending(&self, role: Role) -> String {
        format!("no {role} decision is pending for deployment {}", self.record.id)
    }

    // ---- Events across the stages ----

    /// A notification was delivered or failed; the approvals start once
    /// stakeholders have had the pre-deployment notice.
    fn on_notified(
        &mut self,
        out: &mut Output,
        now: DateTime<Utc>,
        id: String,
        result: Result<(), String>,
    ) -> Result<(), IllegalTransition> {
        if let Some(mut entry) = self.pending_notifications.remove(&id) {
            entry.delivered = result.is_ok();
            entry.error = result.err();
            let kind = entry.kind;
            self.emit(out, Fact::Notification(entry));
            if kind == NotificationKind::PreDeployment {
                if let Phase::Approving { notified, .. } = &mut self.phase {
                    *notified = true;
                    return self.request_reviews(out, now);
                }
            }
        }
        self.maybe_finished(out);
        Ok(())
    }

    /// The coordinator found this was the service's `count`th failure in a
    /// row: an ended deployment escalates it.
    fn on_repeated_failures(
        &mut self,
        out: &mut Output,
        now: DateTime<Utc>,
        count: u32,
    ) -> Result<(), IllegalTransition> {
        if self.record.status.is_terminal() {
            self.finished_sent = false;
            self.escalate(
                out,
                now,
                EscalationReason::RepeatedFailures,
                format!(
                    "{count} consecutive deployments of {} failed; further standard deployments are held until acknowledged",
                    self.record.service
                ),
            );
            self.maybe_finished(out);
        }
        Ok(())
    }

    /// A cancel ends the deployment until production is being changed.
    fn on_cancel(
        &mut self,
        out: &mut Output,
        now: DateTime<Utc>,
        by: String,
        reason: String,
    ) -> Result<(), IllegalTransition> {
        if self.record.status.is_terminal()
            || matches!(self.stage, Some(Stage::Deploy | Stage::Monitor | Stage::Rollback))
        {
            out.refusal = Some(format!(
                "deployment {} cannot be cancelled once production is being changed or it has ended; request a rollback instead",
                self.record.id
            ));
            return Ok(());
        }
        self.finish_stage(out, now, Outcome::Skipped, format!("cancelled by {by}"));
        self.end(out, now, Status::Cancelled, format!("Cancelled by {by}: {reason}"));
        Ok(())
    }

    fn on_acknowledge(
        &mut self,
        out: &mut Output,
        now: DateTime<Utc>,
        index: usize,
        by: String,
        note: Option<String>,
    ) -> Result<(), IllegalTransition> {
        match index.checked_sub(1).and_then(|i| self.record.escalations.get(i)) {
            None => {
                out.refusal = Some(format!(
                    "deployment {} has no escalation {index} (it has {})",
                    self.record.id,
                    self.record.escalations.len()
                ))
            }
            Some(e) if e.acknowledged_by.is_some() => {
                out.refusal = Some(format!(
                    "escalation {index} of {} was already acknowledged by {}",
                    self.record.id,
                    e.acknowledged_by.clone().unwrap_or_default()
                ))
            }
            Some(_) => {
                // A note of only white space says nothing: none is kept.
                let note = note.filter(|n| !n.trim().is_empty());
                self.emit(
                    out,
                    Fact::Acknowledged {
                        at: now,
                        index,
                        by,
                        note,
                    },
                )
            }
        }
        Ok(())
    }

    /// A command someone may not give is recorded: as a refused approval
    /// of `role` when it was one, as a note otherwise.
    fn on_refused(
        &mut self,
        out: &mut Output,
        now: DateTime<Utc>,
        by: String,
        role: Option<Role>,
        what: String,
        reason: String,
    ) -> Result<(), IllegalTransition> {
        match role {
            Some(role) => self.approval(out, now, role, Decision::Refused, by, reason),
            None => self.emit(
                out,
                Fact::Note {
                    at: now,
                    event: format!("Refused: {by} may not {what}: {reason}"),
                },
            ),
        }
        Ok(())
    }

    /// A person's rollback: of a release in production, or of one that
    /// succeeded (production runs it, so what ran before is restored).
    fn on_manual_rollback(
        &mut self,
        out: &mut Output,
        now: DateTime<Utc>,
        by: String,
        reason: String,
    ) -> Result<(), IllegalTransition> {
        if self.record.status == Status::Succeeded
            && self.record.kind != DeploymentType::Rollback
            && self.record.deploy_log.is_some()
        {
            self.finished_sent = false;
            self.phase = Phase::Monitoring { since: now };
            self.set_status(
                out,
                now,
                Status::InProgress,
                format!("Rollback after success requested by {by}"),
            );
            return self.trigger_rollback(
                out,
                now,
                RollbackTrigger::Manual,
                format!("requested by {by} after the deployment succeeded: {reason}"),
            );
        }
        if !self.in_production() {
            out.refusal = Some(format!(
                "deployment {} is not in production; nothing to roll back",
                self.record.id
            ));
            return Ok(());
        }
        self.trigger_rollback(
            out,
            now,
            RollbackTrigger::Manual,
            format!("requested by {by}: {reason}"),
        )
    }

    // ---- One handler per stage, for the results of what it asked for ----

    /// The start: a service held for repeated failures escalates at once
    /// (rollbacks and hotfixes excepted), a scheduled time outside every
    /// window is refused, and otherwise the first stage begins.
    fn on_start(&mut self, out: &mut Output, now: DateTime<Utc>, event: Event) -> Result<(), IllegalTransition> {
        if event != Event::Start {
            return self.not_awaited(out, Phase::New, event);
        }
        if let Some(detail) = self.held.take() {
            if matches!(self.record.kind, DeploymentType::Standard | DeploymentType::Scheduled) {
                self.escalate(out, now, EscalationReason::RepeatedFailures, detail);
                self.end(
                    out,
                    now,
                    Status::Escalated,
                    "Held: the service has repeated failures awaiting acknowledgement",
                );
                return Ok(());
            }
        }
        if self.policy.windows == WindowRule::Scheduled && self.window_override.is_none() {
            let at = self.record.scheduled_for.expect("checked at submission");
            if let Err(why) = Calendar::new(&self.settings.windows).check(at) {
                self.emit(
                    out,
                    Fact::Issue {
                        at: now,
                        issue: format!("scheduled_for {at} refused: {why}"),
                    },
                );
                self.end(
                    out,
                    now,
                    Status::Rejected,
                    "Submission refused: scheduled time is outside the allowed windows",
                );
                return Ok(());
            }
        }
        self.set_status(out, now, Status::InProgress, "");
        self.advance(out, now)
    }

    /// PREPARE: DevOps's preparation and Security's scan arrive in either
    /// order; once both are in, the checklist is built and the stage passes
    /// if the preparation did.
    fn prepare_stage(
        &mut self,
        out: &mut Output,
        now: DateTime<Utc>,
        prepare: Option<PrepareReport>,
        scan: Option<ScanReport>,
        event: Event,
    ) -> Result<(), IllegalTransition> {
        match event {
            Event::Prepared(Ok(report)) => {
                self.emit(
                    out,
                    Fact::Prepared {
                        at: now,
                        report: report.clone(),
                    },
                );
                self.prepare = Some(report.clone());
                self.after_prepare_part(out, now, Some(report), scan)
            }
            Event::Prepared(Err(e)) => {
                self.stage_failed(out, now, format!("DevOps could not prepare the release: {e}"))
            }
            Event::Scanned(Ok(report)) => {
                self.emit(
                    out,
                    Fact::Scanned {
                        at: now,
                        report: report.clone(),
                    },
                );
                self.after_prepare_part(out, now, prepare, Some(report))
            }
            Event::Scanned(Err(e)) => self.stage_failed(out, now, format!("Security scan could not run: {e}")),
            event => self.not_awaited(out, Phase::Preparing { prepare, scan }, event),
        }
    }

    /// STAGING: DevOps deployed to staging and verified it.
    fn staging_stage(&mut self, out: &mut Output, now: DateTime<Utc>, event: Event) -> Result<(), IllegalTransition> {
        match event {
            Event::Staged(Ok(report)) => {
                let ok = report.ok();
                self.emit(
                    out,
                    Fact::Staged {
                        at: now,
                        report: report.clone(),
                    },
                );
                if ok {
                    self.finish_stage(out, now, Outcome::Passed, "staging deployed and verified");
                    self.advance(out, now)
                } else {
                    self.stage_failed(out, now, staging_failure(&report))
                }
            }
            Event::Staged(Err(e)) => self.stage_failed(out, now, format!("staging deployment failed: {e}")),
            event => self.not_awaited(out, Phase::Staging, event),
        }
    }

    /// VALIDATE: QA's suites make a validation report; the stage passes if
    /// it recommends production.
    fn validate_stage(&mut self, out: &mut Output, now: DateTime<Utc>, event: Event) -> Result<(), IllegalTransition> {
        match event {
            Event::Validated(Ok(suites)) => {
                let report = ValidationReport::from_suites(suites, &self.record.changes);
                let ready = report.recommendation == crate::record::Recommendation::Ready;
                let issues = report.issues.join("; ");
                self.emit(out, Fact::Validated { at: now, report });
                if ready {
                    self.finish_stage(out, now, Outcome::Passed, "ready for production");
                    self.advance(out, now)
                } else {
                    self.stage_failed(out, now, format!("needs fixes before production: {issues}"))
                }
            }
            Event::Validated(Err(e)) => self.stage_failed(out, now, format!("QA could not run the suites: {e}")),
            event => self.not_awaited(out, Phase::Validating, event),
        }
    }

    /// APPROVE: every approver's agent is asked at once and grants, denies
    /// or asks a person; a person's decision counts only from someone who
    /// may give it. The stage passes once every role granted; one denial
    /// rejects, once every agent asked has answered, so each role's decision
    /// is recorded with its criteria.
    fn approve_stage(
        &mut self,
        out: &mut Output,
        now: DateTime<Utc>,
        notified: bool,
        mut roles: BTreeMap<Role, RoleState>,
        event: Event,
    ) -> Result<(), IllegalTransition> {
        match event {
            Event::Reviewed { role, advice } if roles.get(&role) == Some(&RoleState::Reviewing) => {
                match advice {
                    Advice::Grant { by, reason } => {
                        self.approval(out, now, role, Decision::Granted, by, reason);
                        roles.insert(role, RoleState::Granted);
                    }
                    Advice::Deny { by, reason } => {
                        self.approval(out, now, role, Decision::Denied, by, reason.clone());
                        let why = format!("{} denied: {reason}", approval::role_title(role));
                        roles.insert(role, RoleState::Denied { why });
                    }
                    Advice::AskHuman => {
                        let deadline = self.ask_person(out, now, role);
                        roles.insert(role, RoleState::AwaitingHuman { deadline });
                    }
                }
                self.phase = Phase::Approving { notified, roles };
                self.after_review(out, now)
            }
            Event::HumanDecision {
                role,
                approve,
                by,
                reason,
            } if matches!(roles.get(&role), Some(RoleState::AwaitingHuman { .. })) => {
                if let Err(why) = approval::may_decide(&self.record, role, &by) {
                    self.approval(out, now, role, Decision::Refused, by, why.clone());
                    out.refusal = Some(why);
                    self.phase = Phase::Approving { notified, roles };
                    return Ok(());
                }
                self.timers.retain(|_, p| *p != TimerPurpose::ApprovalDeadline(role));
                if approve {
                    self.approval(out, now, role, Decision::Granted, by, reason);
                    roles.insert(role, RoleState::Granted);
                } else {
                    self.approval(out, now, role, Decision::Denied, by.clone(), reason.clone());
                    let why = format!("{by} ({role}) rejected: {reason}");
                    roles.insert(role, RoleState::Denied { why });
                }
                self.phase = Phase::Approving { notified, roles };
                self.after_review(out, now)
            }
            // A review already answered, or a decision for a role no person is asked for.
            event => self.not_awaited(out, Phase::Approving { notified, roles }, event),
        }
    }

    /// Asks a person holding `role` to decide, and returns the deadline.
    fn ask_person(&mut self, out: &mut Output, now: DateTime<Utc>, role: Role) -> DateTime<Utc> {
        let minutes = self.settings.agents.get(role).approval_timeout_minutes;
        let deadline = now + crate::settings::minutes(minutes);
        self.emit(
            out,
            Fact::ApprovalRequested {
                at: now,
                role,
                deadline,
            },
        );
        out.effects.push(Effect::AwaitDecision { role, deadline });
        self.timer(out, deadline, TimerPurpose::ApprovalDeadline(role));
        self.set_status(out, now, Status::AwaitingApproval, "");
        deadline
    }

    /// DEPLOY: with the window open and the service's production slot
    /// granted, the baseline is measured, then the strategy's steps run one
    /// at a time, each canary step followed by its analysis.
    fn deploy_stage(
        &mut self,
        out: &mut Output,
        now: DateTime<Utc>,
        phase: Phase,
        event: Event,
    ) -> Result<(), IllegalTransition> {
        match (phase, event) {
            (Phase::AwaitingSlot, Event::SlotGranted { production }) => self.slot_granted(out, now, production),
            (Phase::Baseline, Event::BaselineMeasured(result)) => self.baseline_measured(out, now, result),
            (
                Phase::Deploying { steps, index },
                Event::StepDone {
                    index: done,
                    result,
                    simulated,
                },
            ) if done == index => self.step_done(out, now, steps, index, result, simulated),
            (phase @ Phase::Analysing { .. }, Event::Observed(obs)) => self.on_observation(out, now, phase, obs),
            (phase, event) => self.not_awaited(out, phase, event),
        }
    }

    /// The production slot is this deployment's; production may have
    /// changed while it was queued.
    fn slot_granted(
        &mut self,
        out: &mut Output,
        now: DateTime<Utc>,
        production: Production,
    ) -> Result<(), IllegalTransition> {
        self.slot = true;
        if let Some(detail) = production.disagreement(&self.record.service) {
            return self.hold_for_production(out, now, detail);
        }
        if production.current_version != self.production.current_version {
            self.emit(
                out,
                Fact::ProductionSeen {
                    at: now,
                    previous_version: production.current_version.clone(),
                    note: format!(
                        "Production changed while queued: {} now runs {}",
                        self.record.service,
                        production
                            .current_version
                            .as_ref()
                            .map(|v| v.to_string())
                            .unwrap_or_else(|| "nothing".into())
                    ),
                },
            );
        }
        self.production = production;
        self.start_deploy(out, now)
    }

    /// The baseline starts the plan; a failed read is retried.
    fn baseline_measured(
        &mut self,
        out: &mut Output,
        now: DateTime<Utc>,
        result: Result<MetricSample, String>,
    ) -> Result<(), IllegalTransition> {
        match result {
            Ok(sample) => {
                self.emit(
                    out,
                    Fact::Baseline {
                        at: now,
                        sample: Some(sample),
                        error: None,
                    },
                );
                self.baseline = Some(sample);
                self.watch.inconclusive = 0;
                self.run_plan(out, now)
            }
            Err(e) => {
                self.emit(
                    out,
                    Fact::Baseline {
                        at: now,
                        sample: None,
                        error: Some(e.clone()),
                    },
                );
                self.phase = Phase::Baseline;
                self.inconclusive(out, now, e, true)
            }
        }
    }

    /// Production step `index` of the plan is done: the next one runs, a
    /// canary step below 100 % is analysed first, and a failed step rolls
    /// back.
    fn step_done(
        &mut self,
        out: &mut Output,
        now: DateTime<Utc>,
        steps: Vec<DeployStep>,
        index: usize,
        result: Result<(), String>,
        simulated: bool,
    ) -> Result<(), IllegalTransition> {
        let step = steps[index].clone();
        match result {
            Ok(()) => {
                self.emit(
                    out,
                    Fact::DeployStep(StepEntry {
                        at: now,
                        step: step.describe(),
                        ok: true,
                        detail: String::new(),
                        simulated,
                    }),
                );
                if let DeployStep::RunMigrations { kind } = step {
                    self.migrations_applied = Some(kind);
                }
                if let Some(p) = step.traffic_after() {
                    self.traffic = p;
                }
                if matches!(step, DeployStep::CanaryWeight { percent } if percent < 100) {
                    self.phase = Phase::Analysing {
                        steps,
                        index,
                        since: now,
                    };
                    self.emit(
                        out,
                        Fact::Note {
                            at: now,
                            event: format!(
                                "Canary analysis at {}% for {}",
                                self.traffic,
                                fmt_minutes(self.settings.strategies.canary.analysis_minutes)
                            ),
                        },
                    );
                    let at = now + self.interval();
                    self.timer(out, at, TimerPurpose::Observe);
                    return Ok(());
                }
                self.run_step(out, now, steps, index + 1)
            }
            Err(e) => {
                self.emit(
                    out,
                    Fact::DeployStep(StepEntry {
                        at: now,
                        step: step.title(),
                        ok: false,
                        detail: e.clone(),
                        simulated,
                    }),
                );
                let trigger = match step {
                    DeployStep::HealthCheckColour { .. }
                    | DeployStep::CanaryWeight { .. }
                    | DeployStep::UpdateInstances { .. } => RollbackTrigger::CriticalFunctionalityBroken,
                    _ => RollbackTrigger::DeploymentFailed,
                };
                self.phase = Phase::Deploying { steps, index };
                self.trigger_rollback(out, now, trigger, format!("{} failed: {e}", step.title()))
            }
        }
    }

    /// An observation during canary analysis or MONITOR.
    fn on_observation(
        &mut self,
        out: &mut Output,
        now: DateTime<Utc>,
        phase: Phase,
        obs: Observation,
    ) -> Result<(), IllegalTransition> {
        self.phase = phase;
        self.watch.observing = false;
        self.observed(out, now, obs)
    }

    /// MONITOR: observations until the type's monitoring time has passed,
    /// then, for blue-green, the decommission of the old colour.
    fn monitor_stage(
        &mut self,
        out: &mut Output,
        now: DateTime<Utc>,
        phase: Phase,
        event: Event,
    ) -> Result<(), IllegalTransition> {
        match (phase, event) {
            (phase @ Phase::Monitoring { .. }, Event::Observed(obs)) => self.on_observation(out, now, phase, obs),
            (
                Phase::Decommissioning,
                Event::StepDone {
                    index: DECOMMISSION,
                    result,
                    simulated,
                },
            ) => self.decommissioned(out, now, result, simulated),
            (phase, event) => self.not_awaited(out, phase, event),
        }
    }

    /// The decommission step of blue-green, after monitoring passed: the
    /// deployment succeeds even if it failed, with the failure an issue.
    fn decommissioned(
        &mut self,
        out: &mut Output,
        now: DateTime<Utc>,
        result: Result<(), String>,
        simulated: bool,
    ) -> Result<(), IllegalTransition> {
        let colour = self.production.active_colour;
        let step = DeployStep::Decommission { colour };
        let (ok, detail) = match &result {
            Ok(()) => (true, String::new()),
            Err(e) => (false, e.clone()),
        };
        self.emit(
            out,
            Fact::DeployStep(StepEntry {
                at: now,
                step: if ok { step.describe() } else { step.title() },
                ok,
                detail: detail.clone(),
                simulated,
            }),
        );
        if !ok {
            self.emit(
                out,
                Fact::Issue {
                    at: now,
                    issue: format!("old environment not decommissioned: {detail}"),
                },
            );
        }
        self.complete(out, now)
    }

    /// ROLLBACK: DevOps's account of the rollback.
    fn rollback_stage(&mut self, out: &mut Output, now: DateTime<Utc>, event: Event) -> Result<(), IllegalTransition> {
        match event {
            Event::RolledBack(outcome) => self.rolled_back(out, now, outcome),
            event => self.not_awaited(out, Phase::RollingBack, event),
        }
    }
}

impl Machine {
    fn interval(&self) -> Duration {
        crate::settings::minutes(self.settings.monitoring.sample_interval_minutes)
    }

    fn minute(&self, now: DateTime<Utc>) -> u32 {
        self.deploy_started
            .map(|s| (now - s).num_minutes().max(0) as u32)
            .unwrap_or(0)
    }

    /// Moves to the next stage of this type, or completes.
    fn advance(&mut self, out: &mut Output, now: DateTime<Utc>) -> Result<(), IllegalTransition> {
        let Some(next) = self.next_stage() else {
            return self.complete(out, now);
        };
        match next {
            Stage::Prepare => {
                self.enter(out, now, Stage::Prepare)?;
                self.phase = Phase::Preparing {
                    prepare: None,
                    scan: None,
                };
                out.effects.push(Effect::Prepare);
                out.effects.push(Effect::Scan);
            }
            Stage::Staging => {
                self.enter(out, now, Stage::Staging)?;
                self.phase = Phase::Staging;
                out.effects.push(Effect::DeployStaging);
            }
            Stage::Validate => {
                self.enter(out, now, Stage::Validate)?;
                self.phase = Phase::Validating;
                out.effects.push(Effect::Validate {
                    suites: self.policy.qa_suites,
                });
            }
            Stage::Approve => {
                self.enter(out, now, Stage::Approve)?;
                let roles = self
                    .policy
                    .approvers
                    .iter()
                    .map(|r| (*r, RoleState::Reviewing))
                    .collect();
                if self.record.kind == DeploymentType::Rollback {
                    // An immediate rollback does not wait for stakeholder notice.
                    self.phase = Phase::Approving { notified: true, roles };
                    return self.request_reviews(out, now);
                }
                self.phase = Phase::Approving { notified: false, roles };
                let planned = self.planned_deploy_time(now);
                let (subject, body) = report::pre_deployment_message(&self.record, planned, &self.settings);
                self.notify(out, now, NotificationKind::PreDeployment, subject, body);
            }
            Stage::Deploy => return self.wait_for_window(out, now),
            Stage::Monitor => {
                self.enter(out, now, Stage::Monitor)?;
                self.phase = Phase::Monitoring { since: now };
                self.watch.checkpoints_done = 0;
                let at = now + self.interval();
                self.timer(out, at, TimerPurpose::Observe);
            }
            Stage::Rollback => {
                // A rollback-type deployment: restore the target version.
                self.enter(out, now, Stage::Rollback)?;
                let reason = format!(
                    "rollback of {} requested by {}",
                    self.record.service, self.record.submitted_by
                );
                self.emit(
                    out,
                    Fact::RollbackStarted {
                        at: now,
                        trigger: RollbackTrigger::Manual,
                        reason,
                    },
                );
                self.phase = Phase::RollingBack;
                out.effects.push(Effect::Rollback(RollbackPlan {
                    restore_version: self.record.version.clone(),
                    from_version: self.production.current_version.clone(),
                    strategy: self.record.strategy,
                    traffic_percent: 100,
                    revert_migrations: false,
                    clear_caches: self.settings.rollback.clear_caches,
                }));
            }
        }
        Ok(())
    }

    /// The window rule that applies: a manager's override lifts the calendar.
    fn window_rule(&self) -> WindowRule {
        match (self.policy.windows, &self.window_override) {
            (WindowRule::Wait, Some(_)) => WindowRule::Bypass,
            (rule, _) => rule,
        }
    }

    fn planned_deploy_time(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        match self.window_rule() {
            WindowRule::Bypass => now,
            WindowRule::Scheduled => self.record.scheduled_for.unwrap_or(now).max(now),
            WindowRule::Wait => Calendar::new(&self.settings.windows).next_allowed(now).unwrap_or(now),
        }
    }

    fn after_prepare_part(
        &mut self,
        out: &mut Output,
        now: DateTime<Utc>,
        prepare: Option<PrepareReport>,
        scan: Option<ScanReport>,
    ) -> Result<(), IllegalTransition> {
        match (prepare, scan) {
            (Some(p), Some(s)) => {
                let items = checklist::build(
                    Some(&p),
                    Some(&s),
                    &self.attest,
                    &self.settings.checklist.attested,
                    &self.settings.checklist.required,
                );
                self.emit(out, Fact::Checklist { items });
                if !p.ok() {
                    let mut why = vec![];
                    if !p.tests_passed {
                        why.push("tests failed");
                    }
                    if !p.build_succeeded {
                        why.push("build failed");
                    }
                    if p.migrations != MigrationKind::None && !p.migrations_tested {
                        why.push("migration dry run failed");
                    }
                    return self.stage_failed(out, now, why.join(", "));
                }
                self.finish_stage(out, now, Outcome::Passed, "artifacts ready, checklist created");
                self.advance(out, now)
            }
            (prepare, scan) => {
                self.phase = Phase::Preparing { prepare, scan };
                Ok(())
            }
        }
    }

    fn stage_failed(&mut self, out: &mut Output, now: DateTime<Utc>, why: String) -> Result<(), IllegalTransition> {
        self.emit(
            out,
            Fact::Issue {
                at: now,
                issue: why.clone(),
            },
        );
        self.finish_stage(out, now, Outcome::Failed, why);
        self.end(out, now, Status::Failed, "Deployment failed");
        Ok(())
    }

    fn rejected(&mut self, out: &mut Output, now: DateTime<Utc>, why: String) -> Result<(), IllegalTransition> {
        self.emit(
            out,
            Fact::Issue {
                at: now,
                issue: why.clone(),
            },
        );
        self.finish_stage(out, now, Outcome::Failed, why);
        self.end(out, now, Status::Rejected, "Deployment rejected");
        Ok(())
    }

    fn request_reviews(&mut self, out: &mut Output, _now: DateTime<Utc>) -> Result<(), IllegalTransition> {
        let Phase::Approving { roles, .. } = &self.phase else {
            return Ok(());
        };
        let criteria = approval::criteria(&self.record, &self.policy.approvers);
        for role in roles.keys() {
            out.effects.push(Effect::Review {
                role: *role,
                criteria: criteria.clone(),
            });
        }
        Ok(())
    }

    /// After a decision: a denial rejects once no agent's review is still on
    /// its way (a person still asked is not waited for: the release is
    /// rejected whatever they decide); all granted passes.
    fn after_review(&mut self, out: &mut Output, now: DateTime<Utc>) -> Result<(), IllegalTransition> {
        let Phase::Approving { roles, .. } = &self.phase else {
            return Ok(());
        };
        let denials: Vec<String> = roles
            .values()
            .filter_map(|s| match s {
                RoleState::Denied { why } => Some(why.clone()),
                _ => None,
            })
            .collect();
        if !denials.is_empty() {
            if roles.values().any(|s| *s == RoleState::Reviewing) {
                return Ok(());
            }
            self.timers
                .retain(|_, p| !matches!(p, TimerPurpose::ApprovalDeadline(_)));
            return self.rejected(out, now, denials.join("; "));
        }
        if roles.values().all(|s| *s == RoleState::Granted) {
            self.finish_stage(out, now, Outcome::Passed, "approval granted");
            self.set_status(out, now, Status::InProgress, "");
            return self.advance(out, now);
        }
        Ok(())
    }

    fn wait_for_window(&mut self, out: &mut Output, now: DateTime<Utc>) -> Result<(), IllegalTransition> {
        let settings = self.settings.clone();
        let calendar = Calendar::new(&settings.windows);
        let overridden = self.window_override.is_some();
        let start_at = match self.window_rule() {
            WindowRule::Bypass => Some(now),
            WindowRule::Scheduled => {
                let at = self.record.scheduled_for.unwrap_or(now);
                if at >= now {
                    Some(at)
                } else if overridden || calendar.check(now).is_ok() {
                    Some(now)
                } else {
                    self.emit(
                        out,
                        Fact::Note {
                            at: now,
                            event: format!(
                                "Scheduled time {} passed before approval; waiting for the next window",
                                at.to_rfc3339()
                            ),
                        },
                    );
                    calendar.next_allowed(now)
                }
            }
            WindowRule::Wait => calendar.next_allowed(now),
        };
        let Some(at) = start_at else {
            return self.stage_failed(out, now, "no allowed deployment window in the next 400 days".into());
        };
        if at <= now {
            return self.start_deploy(out, now);
        }
        let why = match calendar.check(now) {
            Err(b) if self.policy.windows == WindowRule::Wait => b.to_string(),
            _ => "scheduled".to_string(),
        };
        self.emit(
            out,
            Fact::Note {
                at: now,
                event: format!("Waiting for deployment window until {} ({why})", at.to_rfc3339()),
            },
        );
        self.set_status(out, now, Status::WaitingForWindow, "");
        self.phase = Phase::WaitingForWindow;
        self.timer(out, at, TimerPurpose::Window);
        Ok(())
    }

    /// Production does not run what the journal says (or nobody could say
    /// what it runs): escalate, and hold the deployment before DEPLOY
    /// changes anything.
    fn hold_for_production(
        &mut self,
        out: &mut Output,
        now: DateTime<Utc>,
        detail: String,
    ) -> Result<(), IllegalTransition> {
        self.escalate(out, now, EscalationReason::ProductionMismatch, detail);
        self.end(
            out,
            now,
            Status::Escalated,
            "Held before DEPLOY: production is not known to run what the journal says",
        );
        Ok(())
    }

    fn start_deploy(&mut self, out: &mut Output, now: DateTime<Utc>) -> Result<(), IllegalTransition> {
        if self.window_rule() == WindowRule::Wait {
            // A freeze or holiday added while waiting still applies.
            if let Err(b) = Calendar::new(&self.settings.windows).check(now) {
                self.emit(
                    out,
                    Fact::Note {
                        at: now,
                        event: format!("Window closed again: {b}"),
                    },
                );
                return self.wait_for_window(out, now);
            }
        }
        if !self.slot {
            self.phase = Phase::AwaitingSlot;
            self.set_status(
                out,
                now,
                Status::Queued,
                format!("Approved; waiting for the production slot of {}", self.record.service),
            );
            out.effects.push(Effect::AcquireSlot);
            return Ok(());
        }
        self.enter(out, now, Stage::Deploy)?;
        self.set_status(out, now, Status::InProgress, "");
        self.deploy_started = Some(now);
        self.emit(
            out,
            Fact::DeployStarted {
                at: now,
                strategy: self.record.strategy,
            },
        );
        if self.production.current_version.is_none() {
            // A first deployment: nothing runs to measure a baseline from.
            // Error rate, CPU and memory are judged by their absolute
            // thresholds; p99 latency, which is relative, is not judged.
            self.emit(
                out,
                Fact::Baseline {
                    at: now,
                    sample: None,
                    error: Some(format!(
                        "first deployment of {}: no version in production to measure a baseline from; latency is not compared",
                        self.record.service
                    )),
                },
            );
            return self.run_plan(out, now);
        }
        self.phase = Phase::Baseline;
        out.effects.push(Effect::MeasureBaseline);
        Ok(())
    }

    /// The production plan of the strategy, from its first step.
    fn run_plan(&mut self, out: &mut Output, now: DateTime<Utc>) -> Result<(), IllegalTransition> {
        let steps = strategy::plan(
            self.record.strategy,
            &self.settings.strategies,
            self.prepare.as_ref().map(|p| p.instances).unwrap_or(1),
            self.prepare
                .as_ref()
                .map(|p| p.migrations)
                .unwrap_or(MigrationKind::None),
            self.production.active_colour,
        );
        self.run_step(out, now, steps, 0)
    }

    fn run_step(
        &mut self,
        out: &mut Output,
        now: DateTime<Utc>,
        steps: Vec<DeployStep>,
        index: usize,
    ) -> Result<(), IllegalTransition> {
        if index >= steps.len() {
            self.emit(out, Fact::DeployFinished { at: now });
            let v = self.record.version.clone();
            self.emit(
                out,
                Fact::ProductionVersion {
                    at: now,
                    version: v.clone(),
                    note: format!(
                        "Production deployed: v{}",
                        v.as_ref().map(|v| v.as_str()).unwrap_or("?")
                    ),
                },
            );
            self.finish_stage(out, now, Outcome::Passed, "all steps completed");
            return self.advance(out, now);
        }
        out.effects.push(Effect::Step {
            index,
            step: steps[index].clone(),
        });
        self.phase = Phase::Deploying { steps, index };
        Ok(())
    }

    fn on_timer(
        &mut self,
        out: &mut Output,
        now: DateTime<Utc>,
        purpose: TimerPurpose,
    ) -> Result<(), IllegalTransition> {
        match purpose {
            TimerPurpose::Window => {
                if self.phase == Phase::WaitingForWindow {
                    return self.start_deploy(out, now);
                }
                Ok(())
            }
            TimerPurpose::ApprovalDeadline(role) => {
                let Phase::Approving { roles, .. } = &mut self.phase else {
                    return Ok(());
                };
                if !matches!(roles.get(&role), Some(RoleState::AwaitingHuman { .. })) {
                    return Ok(());
                }
                let minutes = fmt_minutes(self.settings.agents.get(role).approval_timeout_minutes);
                let why = format!("{role} approval timed out after {minutes}");
                roles.insert(role, RoleState::Denied { why });
                let by = format!("{} agent", approval::role_title(role));
                let reason = format!("no decision within {minutes}");
                self.approval(out, now, role, Decision::TimedOut, by, reason);
                self.after_review(out, now)
            }
            TimerPurpose::Observe => {
                if self.watch.observing {
                    return Ok(());
                }
                match &self.phase {
                    Phase::Analysing { .. } | Phase::Monitoring { .. } => {
                        self.watch.observing = true;
                        out.effects.push(Effect::Observe {
                            minute: self.minute(now),
                            traffic_percent: self.traffic,
                        });
                    }
                    Phase::Baseline => out.effects.push(Effect::MeasureBaseline),
                    _ => {}
                }
                Ok(())
            }
        }
    }

    /// A read that gave no usable data: hold, and escalate after too many in a row.
    fn inconclusive(
        &mut self,
        out: &mut Output,
        now: DateTime<Utc>,
        error: String,
        retry: bool,
    ) -> Result<(), IllegalTransition> {
        self.watch.inconclusive += 1;
        let limit = self.settings.monitoring.inconclusive_escalate_after;
        if self.watch.inconclusive >= limit {
            let stage = self.stage.map(|s| s.title()).unwrap_or("");
            self.escalate(
                out,
                now,
                EscalationReason::MetricsInconclusive,
                format!(
                    "{limit} consecutive metric reads failed during {stage} (last: {error}); holding traffic at {}%",
                    self.traffic
                ),
            );
            self.finish_stage(out, now, Outcome::Failed, "metrics inconclusive");
            self.end(
                out,
                now,
                Status::Escalated,
                "Held: metrics inconclusive, waiting for a person",
            );
            return Ok(());
        }
        if retry {
            let at = now + self.interval();
            self.timer(out, at, TimerPurpose::Observe);
        }
        Ok(())
    }

    fn observed(&mut self, out: &mut Output, now: DateTime<Utc>, obs: Observation) -> Result<(), IllegalTransition> {
        let stage = self.stage.unwrap_or(Stage::Monitor);
        let minute = self.minute(now);
        self.emit(
            out,
            Fact::Sample(SampleEntry {
                at: now,
                stage,
                minute,
                traffic_percent: self.traffic,
                sample: obs.metrics.as_ref().ok().copied(),
                error: obs.metrics.as_ref().err().cloned(),
            }),
        );
        if let Some((trigger, reason)) = self.urgent_rollback(out, now, &obs) {
            return self.trigger_rollback(out, now, trigger, reason);
        }
        // A health check that could not run is as inconclusive as a failed metrics read.
        let metrics = match (obs.metrics, obs.healthy) {
            (Ok(_), Err(e)) => Err(format!("health check could not run: {e}")),
            (m, _) => m,
        };
        let sample = match metrics {
            Ok(s) => s,
            Err(e) => {
                self.inconclusive(out, now, e, false)?;
                if self.phase == Phase::Done {
                    return Ok(());
                }
                return self.after_observation(out, now, false);
            }
        };
        self.watch.inconclusive = 0;
        self.watch.last = Some(sample);
        if let Some((trigger, reason)) = self.judge(out, now, stage, sample) {
            return self.trigger_rollback(out, now, trigger, reason);
        }
        self.after_observation(out, now, true)
    }

    /// Incidents and broken functionality call for a rollback at once (a
    /// security incident is escalated too): returns its trigger and reason.
    /// Otherwise notes how the health check went.
    fn urgent_rollback(
        &mut self,
        out: &mut Output,
        now: DateTime<Utc>,
        obs: &Observation,
    ) -> Option<(RollbackTrigger, String)> {
        let security = obs
            .incidents
            .iter()
            .find(|i| i.kind == IncidentKind::SecurityVulnerability);
        if let Some(incident) = security {
            self.escalate(out, now, EscalationReason::SecurityIncident, incident.detail.clone());
            return Some((RollbackTrigger::SecurityVulnerability, incident.detail.clone()));
        }
        if let Some(incident) = obs
            .incidents
            .iter()
            .find(|i| i.kind == IncidentKind::CriticalFunctionalityBroken)
        {
            return Some((RollbackTrigger::CriticalFunctionalityBroken, incident.detail.clone()));
        }
        self.watch.last_healthy = obs.healthy.as_ref().ok().copied();
        self.watch.last_health_simulated = obs.health_simulated;
        matches!(obs.healthy, Ok(false)).then(|| {
            (
                RollbackTrigger::CriticalFunctionalityBroken,
                "production health check failing".to_string(),
            )
        })
    }

    /// Judges a sample against the thresholds: a metric that reaches a new
    /// alert level is recorded (errors and slow responses escalate, once
    /// each), and one over its rollback threshold for enough samples in a
    /// row calls for a rollback: returns the first such trigger and reason.
    fn judge(
        &mut self,
        out: &mut Output,
        now: DateTime<Utc>,
        stage: Stage,
        sample: MetricSample,
    ) -> Option<(RollbackTrigger, String)> {
        let baseline = self.baseline.unwrap_or(sample);
        let findings = thresholds::evaluate(&sample, &baseline, &self.settings.thresholds);
        let mut rollback: Option<(RollbackTrigger, String)> = None;
        for metric in [Metric::ErrorRate, Metric::LatencyP99, Metric::Cpu, Metric::Memory] {
            let Some(f) = findings.iter().find(|f| f.metric == metric) else {
                self.watch.levels.remove(&metric);
                self.watch.breaches.remove(&metric);
                continue;
            };
            let previous = self.watch.levels.insert(metric, f.action);
            if previous != Some(f.action) {
                self.emit(
                    out,
                    Fact::Alert(Alert {
                        at: now,
                        stage,
                        metric,
                        value: f.value,
                        threshold: f.threshold,
                        action: f.action,
                    }),
                );
                if let Some((reason, detail)) = alert_escalation(f, &baseline) {
                    if self.watch.escalated.insert(reason) {
                        self.escalate(out, now, reason, detail);
                    }
                }
            }
            if f.action == AlertAction::Rollback {
                let n = self.watch.breaches.entry(metric).or_insert(0);
                *n += 1;
                if *n >= self.settings.monitoring.breaches_to_rollback && rollback.is_none() {
                    rollback = Some(breach_rollback(f));
                }
            } else {
                self.watch.breaches.remove(&metric);
            }
        }
        rollback
    }

    /// Checkpoints, then the end of canary analysis or monitoring, or the next sample.
    fn after_observation(
        &mut self,
        out: &mut Output,
        now: DateTime<Utc>,
        conclusive: bool,
    ) -> Result<(), IllegalTransition> {
        match self.phase.clone() {
            Phase::Analysing { steps, index, since } => {
                let length = crate::settings::minutes(self.settings.strategies.canary.analysis_minutes);
                if conclusive && self.watch.breaches.is_empty() && now - since >= length {
                    self.emit(
                        out,
                        Fact::Note {
                            at: now,
                            event: format!("Canary analysis at {}% passed", self.traffic),
                        },
                    );
                    return self.run_step(out, now, steps, index + 1);
                }
            }
            Phase::Monitoring { since } => {
                let elapsed = (now - since).num_milliseconds().max(0) as f64 / 60_000.0;
                let due: Vec<_> = self
                    .settings
                    .monitoring
                    .checkpoints
                    .iter()
                    .filter(|c| c.minute <= self.policy.monitoring_minutes)
                    .cloned()
                    .collect();
                while self.watch.checkpoints_done < due.len() && due[self.watch.checkpoints_done].minute <= elapsed {
                    let c = due[self.watch.checkpoints_done].clone();
                    self.watch.checkpoints_done += 1;
                    let (passed, detail) = self.checkpoint(c.check, conclusive);
                    let simulated = match c.check {
                        CheckpointCheck::InitialHealth => self.watch.last_health_simulated,
                        CheckpointCheck::AllSystemsNormal => {
                            self.watch.last_health_simulated || self.watch.last.is_some_and(|s| s.simulated)
                        }
                        _ => self.watch.last.is_some_and(|s| s.simulated),
                    };
                    self.emit(
                        out,
                        Fact::Checkpoint(CheckpointEntry {
                            minute: c.minute,
                            check: c.check,
                            at: now,
                            passed,
                            detail,
                            simulated,
                        }),
                    );
                }
                if conclusive && elapsed >= self.policy.monitoring_minutes {
                    self.finish_stage(
                        out,
                        now,
                        Outcome::Passed,
                        format!("{} monitoring complete", fmt_minutes(self.policy.monitoring_minutes)),
                    );
                    if self.record.strategy == Strategy::BlueGreen {
                        let colour = self.production.active_colour;
                        self.phase = Phase::Decommissioning;
                        out.effects.push(Effect::Step {
                            index: DECOMMISSION,
                            step: DeployStep::Decommission { colour },
                        });
                        return Ok(());
                    }
                    return self.complete(out, now);
                }
                if !conclusive && elapsed >= self.policy.monitoring_minutes {
                    self.emit(
                        out,
                        Fact::Note {
                            at: now,
                            event: "Monitoring extended: the last metric read was inconclusive".into(),
                        },
                    );
                }
            }
            _ => return Ok(()),
        }
        let at = now + self.interval();
        self.timer(out, at, TimerPurpose::Observe);
        Ok(())
    }

    fn checkpoint(&self, check: CheckpointCheck, conclusive: bool) -> (bool, String) {
        let t = &self.settings.thresholds;
        let Some(s) = self.watch.last.filter(|_| conclusive) else {
            return (false, "metrics unavailable".into());
        };
        let base = self.baseline.unwrap_or(s);
        match check {
            CheckpointCheck::InitialHealth => match self.watch.last_healthy {
                Some(true) => (true, "health checks passing".into()),
                Some(false) => (false, "health checks failing".into()),
                None => (false, "health not checked".into()),
            },
            CheckpointCheck::ErrorRate => (
                s.error_rate <= t.error_rate_investigate,
                format!(
                    "error rate {} (threshold {})",
                    pct(s.error_rate),
                    pct(t.error_rate_investigate)
                ),
            ),
            CheckpointCheck::Performance => (
                s.latency_p99_ms <= base.latency_p99_ms * t.latency_p99_investigate_factor
                    && s.cpu.is_none_or(|cpu| cpu <= t.cpu_scale)
                    && s.memory.is_none_or(|memory| memory <= t.memory_scale),
                format!(
                    "p99 {} ms ({}), CPU {}, memory {}",
                    crate::record::fmt_num(s.latency_p99_ms),
                    match self.baseline {
                        // A first deployment: nothing to compare latency with.
                        None => "no baseline to compare with".to_string(),
                        Some(b) => format!("baseline {} ms", crate::record::fmt_num(b.latency_p99_ms)),
                    },
                    crate::record::pct_or_not_measured(s.cpu),
                    crate::record::pct_or_not_measured(s.memory)
                ),
            ),
            CheckpointCheck::AllSystemsNormal => {
                let ok = thresholds::evaluate(&s, &base, t).is_empty() && self.watch.last_healthy == Some(true);
                (
                    ok,
                    if ok {
                        "all metrics within thresholds".into()
                    } else {
                        "metrics over thresholds".into()
                    },
                )
            }
        }
    }

    fn complete(&mut self, out: &mut Output, now: DateTime<Utc>) -> Result<(), IllegalTransition> {
        if self.record.kind != DeploymentType::Rollback {
            let (subject, body) = report::post_deployment_message(&self.record, now, &self.settings);
            self.notify(out, now, NotificationKind::PostDeployment, subject, body);
        }
        self.end(out, now, Status::Succeeded, "Deployment succeeded");
        Ok(())
    }

    fn trigger_rollback(
        &mut self,
        out: &mut Output,
        now: DateTime<Utc>,
        trigger: RollbackTrigger,
        reason: String,
    ) -> Result<(), IllegalTransition> {
        if matches!(self.phase, Phase::RollingBack | Phase::Done) {
            return Ok(());
        }
        self.timers.clear();
        self.watch.observing = false;
        if self.record.deploy_log.as_ref().is_some_and(|d| d.finished_at.is_none()) {
            self.emit(out, Fact::DeployFinished { at: now });
        }
        let irreversible = self.migrations_applied == Some(MigrationKind::Irreversible);
        if irreversible && self.settings.rollback.on_irreversible_migration == IrreversiblePolicy::Freeze {
            self.emit(
                out,
                Fact::Issue {
                    at: now,
                    issue: format!("rollback triggered ({trigger}): {reason}"),
                },
            );
            self.escalate(
                out,
                now,
                EscalationReason::IrreversibleMigration,
                format!(
                    "rollback triggered ({trigger}: {reason}) but the release ran an irreversible migration; traffic held at {}% for a person to decide",
                    self.traffic
                ),
            );
            self.finish_stage(
                out,
                now,
                Outcome::Failed,
                "rollback needed but held: irreversible migration",
            );
            self.end(
                out,
                now,
                Status::Escalated,
                "Held: irreversible migration, waiting for a person",
            );
            return Ok(());
        }
        // Check the transition before recording anything, so a refused one changes nothing.
        transitions::check(&self.policy.stages, self.stage, Stage::Rollback)?;
        self.emit(
            out,
            Fact::Issue {
                at: now,
                issue: format!("rollback triggered ({trigger}): {reason}"),
            },
        );
        self.finish_stage(out, now, Outcome::Failed, format!("rollback triggered: {trigger}"));
        self.enter(out, now, Stage::Rollback)?;
        self.emit(
            out,
            Fact::RollbackStarted {
                at: now,
                trigger,
                reason,
            },
        );
        self.phase = Phase::RollingBack;
        out.effects.push(Effect::Rollback(RollbackPlan {
            restore_version: self.production.current_version.clone(),
            from_version: self.record.version.clone(),
            strategy: self.record.strategy,
            traffic_percent: self.traffic,
            revert_migrations: self.migrations_applied == Some(MigrationKind::Reversible),
            clear_caches: self.settings.rollback.clear_caches,
        }));
        Ok(())
    }

    fn rolled_back(
        &mut self,
        out: &mut Output,
        now: DateTime<Utc>,
        outcome: RollbackOutcome,
    ) -> Result<(), IllegalTransition> {
        for (i, (step, ok, detail)) in outcome.steps.iter().enumerate() {
            self.emit(
                out,
                Fact::RollbackStep(StepEntry {
                    at: now,
                    step: step.clone(),
                    ok: *ok,
                    detail: detail.clone(),
                    simulated: outcome.simulated_steps.get(i).copied().unwrap_or(false),
                }),
            );
        }
        let rollback_type = self.record.kind == DeploymentType::Rollback;
        let restored = if rollback_type {
            self.record.version.clone()
        } else {
            self.production.current_version.clone()
        };
        let success = outcome.restored && outcome.verified;
        let trigger = self
            .record
            .rollback
            .as_ref()
            .map(|r| r.trigger)
            .unwrap_or(RollbackTrigger::Manual);
        let reason = self
            .record
            .rollback
            .as_ref()
            .map(|r| r.reason.clone())
            .unwrap_or_default();
        let incident = report::incident_note(&self.record, trigger, &reason, success, now);
        self.emit(
            out,
            Fact::RollbackFinished {
                at: now,
                restored_version: if outcome.restored { restored.clone() } else { None },
                migrations_reverted: outcome.migrations_reverted,
                caches_cleared: outcome.caches_cleared,
                verified: outcome.verified,
                incident,
            },
        );
        if success {
            self.rollback_verified(out, now, restored, rollback_type);
        } else {
            self.rollback_failed(out, now, &outcome);
        }
        Ok(())
    }

    /// The rollback restored `restored` and verified it: production runs it
    /// again, stakeholders hear of it, and the deployment ends.
    fn rollback_verified(
        &mut self,
        out: &mut Output,
        now: DateTime<Utc>,
        restored: Option<Version>,
        rollback_type: bool,
    ) {
        let note = format!(
            "Production restored to v{}",
            restored.as_ref().map(|v| v.as_str()).unwrap_or("?")
        );
        self.emit(
            out,
            Fact::ProductionVersion {
                at: now,
                version: restored,
                note,
            },
        );
        self.finish_stage(out, now, Outcome::Passed, "rollback verified");
        let (subject, body) = report::rollback_message(&self.record, now, &self.settings);
        self.notify(out, now, NotificationKind::Rollback, subject, body);
        let status = if rollback_type {
            Status::Succeeded
        } else {
            Status::RolledBack
        };
        self.end(
            out,
            now,
            status,
            if rollback_type {
                "Rollback completed"
            } else {
                "Deployment rolled back"
            },
        );
    }

    /// The rollback did not restore or verify production: a person has to
    /// take over, told which steps failed.
    fn rollback_failed(&mut self, out: &mut Output, now: DateTime<Utc>, outcome: &RollbackOutcome) {
        let failed: Vec<String> = outcome
            .steps
            .iter()
            .filter(|s| !s.1)
            .map(|s| format!("{}: {}", s.0, s.2))
            .collect();
        let detail = format!(
            "rollback failed ({}); production state needs a person",
            failed.join("; ")
        );
        self.emit(
            out,
            Fact::Issue {
                at: now,
                issue: detail.clone(),
            },
        );
        self.finish_stage(out, now, Outcome::Failed, "rollback failed");
        self.escalate(out, now, EscalationReason::UnableToRollback, detail);
        self.end(out, now, Status::Escalated, "Unable to roll back: escalated");
    }
}

/// The escalation a new alert raises: unexpected errors and degraded
/// performance are for a person to know of; CPU and memory are not.
fn alert_escalation(f: &Finding, baseline: &MetricSample) -> Option<(EscalationReason, String)> {
    match f.metric {
        Metric::ErrorRate => Some((
            EscalationReason::UnexpectedProductionErrors,
            format!("error rate {} over {}", pct(f.value), pct(f.threshold)),
        )),
        Metric::LatencyP99 => Some((
            EscalationReason::PerformanceDegradation,
            format!(
                "p99 latency {} ms over {} ms ({}x baseline {} ms)",
                crate::record::fmt_num(f.value),
                crate::record::fmt_num(f.threshold),
                crate::record::fmt_num(f.value / baseline.latency_p99_ms),
                crate::record::fmt_num(baseline.latency_p99_ms)
            ),
        )),
        _ => None,
    }
}

/// The trigger and reason of the rollback a metric over its rollback
/// threshold calls for.
fn breach_rollback(f: &Finding) -> (RollbackTrigger, String) {
    match f.metric {
        Metric::ErrorRate => (
            RollbackTrigger::ErrorRate,
            format!("error rate {} exceeds {}", pct(f.value), pct(f.threshold)),
        ),
        _ => (
            RollbackTrigger::SeverePerformanceDegradation,
            format!(
                "p99 latency {} ms exceeds {} ms",
                crate::record::fmt_num(f.value),
                crate::record::fmt_num(f.threshold)
            ),
        ),
    }
}

fn staging_failure(r: &StagingReport) -> String {
    let mut why = vec![];
    let checks = [
        (r.deployed, "deployment to staging failed"),
        (r.application_started, "application did not start"),
        (r.health_endpoints, "health endpoints not responding"),
        (r.migrations_complete, "database migrations did not complete"),
        (r.external_services, "external services not connected"),
        (r.smoke_tests, "smoke tests failed"),
    ];
    for (ok, msg) in checks {
        if !ok {
            why.push(msg);
        }
    }
    why.join(", ")
}
