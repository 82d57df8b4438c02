//! The Deployment Record and the facts it is built from.
//!
//! Every change to a record is a [`Fact`]; [`Record::apply`] is the only
//! way a record changes. The state machine emits facts, so anything that
//! stores the facts (the journal) can rebuild the record exactly.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::checklist::{Item, ItemKey, PrepareReport, ScanReport};
use crate::settings::CheckpointCheck;
use crate::thresholds::{AlertAction, Metric, MetricSample};
use crate::types::{
    DeploymentId, DeploymentType, EscalationReason, NotificationKind, Outcome, Role, RollbackTrigger, ServiceName,
    Stage, Status, Strategy, Version,
};

/// A validated deployment request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Request {
    pub service: ServiceName,
    /// For a rollback: the version to restore (`None`: the previous one).
    pub version: Option<Version>,
    #[serde(rename = "type")]
    pub kind: DeploymentType,
    pub strategy: Option<Strategy>,
    pub submitted_by: String,
    pub changes: Vec<String>,
    pub scheduled_for: Option<DateTime<Utc>>,
    /// Checklist items the submitter attests.
    pub attest: Vec<ItemKey>,
    /// A manager's permission to deploy outside the allowed windows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_override: Option<WindowOverride>,
}

/// Permission to deploy outside the allowed windows, given by a manager.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowOverride {
    pub by: String,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageEntry {
    pub stage: Stage,
    pub outcome: Option<Outcome>,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

/// A lifted block on a rolled-back version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unblocked {
    pub by: String,
    pub at: DateTime<Utc>,
    pub reason: String,
}

/// What DevOps observed after deploying to staging.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StagingReport {
    pub deployed: bool,
    pub application_started: bool,
    pub health_endpoints: bool,
    pub migrations_complete: bool,
    pub external_services: bool,
    pub smoke_tests: bool,
    /// The checks (named by their field, e.g. `"smoke_tests"`) whose result
    /// came from the simulated world, not from a command or probe.
    #[serde(default)]
    pub simulated: Vec<String>,
}

impl StagingReport {
    /// Whether the check named by its field came from the simulated world.
    pub fn is_simulated(&self, field: &str) -> bool {
        self.simulated.iter().any(|f| f == field)
    }

    pub fn ok(&self) -> bool {
        self.deployed
            && self.application_started
            && self.health_endpoints
            && self.migrations_complete
            && self.external_services
            && self.smoke_tests
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SuiteResult {
    pub name: String,
    pub passed: u32,
    pub failed: u32,
    pub skipped: u32,
    /// Names (and first message line) of the failed tests, when the suite's
    /// report gives them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failing_tests: Vec<String>,
    /// The counts came from the simulated world, not from a test run.
    #[serde(default)]
    pub simulated: bool,
}

/// Failing tests listed per suite in "Issues Found"; the rest are counted.
const FAILING_TESTS_LISTED: usize = 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Recommendation {
    Ready,
    NeedsFixes,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeatureCheck {
    pub feature: String,
    pub validated: bool,
}

/// QA's staging validation report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ValidationReport {
    pub suites: Vec<SuiteResult>,
    pub features: Vec<FeatureCheck>,
    pub issues: Vec<String>,
    pub recommendation: Recommendation,
}

impl ValidationReport {
    /// Builds the report from suite results: ready only when suites ran and none failed.
    pub fn from_suites(suites: Vec<SuiteResult>, changes: &[String]) -> Self {
        let mut issues: Vec<String> = vec![];
        for s in suites.iter().filter(|s| s.failed > 0) {
            issues.push(format!("{}: {} failed", s.name, s.failed));
            for t in s.failing_tests.iter().take(FAILING_TESTS_LISTED) {
                issues.push(format!("{}: {t}", s.name));
            }
            if s.failing_tests.len() > FAILING_TESTS_LISTED {
                issues.push(format!(
                    "{}: and {} more failed tests",
                    s.name,
                    s.failing_tests.len() - FAILING_TESTS_LISTED
                ));
            }
        }
        if suites.is_empty() {
            issues.push("no test suite ran".to_string());
        }
        let ok = issues.is_empty();
        ValidationReport {
            features: changes
                .iter()
                .map(|c| FeatureCheck {
                    feature: c.clone(),
                    validated: ok,
                })
                .collect(),
            suites,
            issues,
            recommendation: if ok {
                Recommendation::Ready
            } else {
                Recommendation::NeedsFixes
            },
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    Granted,
    Denied,
    Refused,
    TimedOut,
    /// A manager allowed a deployment outside the allowed windows.
    WindowOverride,
}

/// One approval criterion and whether it held.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CriterionCheck {
    pub criterion: String,
    pub met: bool,
    pub detail: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Approval {
    pub role: Role,
    pub decision: Decision,
    pub by: String,
    pub at: DateTime<Utc>,
    pub reason: String,
    pub criteria: Vec<CriterionCheck>,
}

/// An approval asked of a person and not decided yet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingApproval {
    pub role: Role,
    pub requested_at: DateTime<Utc>,
    /// When the request times out (and the deployment is rejected).
    pub deadline: DateTime<Utc>,
}

/// The approval of one role as a report shows it: its decision, or that it
/// is pending, with the refused attempts listed under it.
#[derive(Debug, Clone, PartialEq)]
pub struct ApprovalSection<'a> {
    pub role: Role,
    /// The decision (granted, denied, timed out or a window override).
    pub decision: Option<&'a Approval>,
    pub pending: Option<&'a PendingApproval>,
    /// Attempts refused (e.g. a self-approval), in the order they came.
    pub refused: Vec<&'a Approval>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    pub at: DateTime<Utc>,
    pub stage: Stage,
    pub metric: Metric,
    pub value: f64,
    pub threshold: f64,
    pub action: AlertAction,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Escalation {
    pub at: DateTime<Utc>,
    pub reason: EscalationReason,
    pub detail: String,
    /// Who acknowledged it, and when.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acknowledged_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acknowledged_at: Option<DateTime<Utc>>,
    /// What the person who acknowledged it noted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acknowledgement_note: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotificationEntry {
    /// Stable id: a receiver can drop duplicates.
    pub id: String,
    pub kind: NotificationKind,
    pub at: DateTime<Utc>,
    pub subject: String,
    pub body: String,
    pub delivered: bool,
    pub error: Option<String>,
    /// The deployment it tells of rests on simulated evidence (its text says so).
    #[serde(default)]
    pub simulated: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimelineEntry {
    pub at: DateTime<Utc>,
    pub event: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepEntry {
    pub at: DateTime<Utc>,
    pub step: String,
    pub ok: bool,
    pub detail: String,
    /// The simulated world answered the step: no command ran.
    #[serde(default)]
    pub simulated: bool,
}

/// The production deployment log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeployLog {
    pub strategy: Strategy,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub steps: Vec<StepEntry>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SampleEntry {
    pub at: DateTime<Utc>,
    pub stage: Stage,
    /// Minutes since DEPLOY started.
    pub minute: u32,
    /// Share of traffic on the new version when sampled.
    pub traffic_percent: u8,
    pub sample: Option<MetricSample>,
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckpointEntry {
    pub minute: f64,
    pub check: CheckpointCheck,
    pub at: DateTime<Utc>,
    pub passed: bool,
    pub detail: String,
    /// Judged on a simulated sample or health check.
    #[serde(default)]
    pub simulated: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Monitoring {
    pub baseline: Option<MetricSample>,
    pub samples: Vec<SampleEntry>,
    pub checkpoints: Vec<CheckpointEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RollbackLog {
    pub trigger: RollbackTrigger,
    pub reason: String,
    pub initiated_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
    pub restored_version: Option<Version>,
    pub migrations_reverted: bool,
    pub caches_cleared: bool,
    pub verified: bool,
    pub steps: Vec<StepEntry>,
    pub incident: String,
}

/// The complete record of one deployment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub id: DeploymentId,
    pub service: ServiceName,
    pub version: Option<Version>,
    pub previous_version: Option<Version>,
    #[serde(rename = "type")]
    pub kind: DeploymentType,
    pub strategy: Strategy,
    pub submitted_by: String,
    pub submitted_at: DateTime<Utc>,
    pub scheduled_for: Option<DateTime<Utc>>,
    pub changes: Vec<String>,
    pub status: Status,
    pub production_version: Option<Version>,
    pub stages: Vec<StageEntry>,
    pub checklist: Vec<Item>,
    pub prepare: Option<PrepareReport>,
    pub security: Option<ScanReport>,
    pub staging: Option<StagingReport>,
    pub validation: Option<ValidationReport>,
    pub approvals: Vec<Approval>,
    /// Approvals asked of people and not decided yet (empty once decided or finished).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pending_approvals: Vec<PendingApproval>,
    pub deploy_log: Option<DeployLog>,
    pub monitoring: Monitoring,
    pub alerts: Vec<Alert>,
    pub rollback: Option<RollbackLog>,
    pub escalations: Vec<Escalation>,
    pub notifications: Vec<NotificationEntry>,
    pub issues: Vec<String>,
    pub timeline: Vec<TimelineEntry>,
    pub finished_at: Option<DateTime<Utc>>,
    /// Who lifted the block this deployment's rollback put on its version
    /// ([`Record::blocked_version`]), when and why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unblocked: Option<Unblocked>,
    pub markdown: String,
}

/// One change to a record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "fact", rename_all = "snake_case")]
pub enum Fact {
    Submitted {
        id: DeploymentId,
        at: DateTime<Utc>,
        request: Request,
        strategy: Strategy,
        previous_version: Option<Version>,
        production_version: Option<Version>,
        target_version: Option<Version>,
    },
    Status {
        at: DateTime<Utc>,
        status: Status,
        note: String,
    },
    StageStarted {
        at: DateTime<Utc>,
        stage: Stage,
    },
    StageFinished {
        at: DateTime<Utc>,
        stage: Stage,
        outcome: Outcome,
        note: String,
    },
    Prepared {
        at: DateTime<Utc>,
        report: PrepareReport,
    },
    Scanned {
        at: DateTime<Utc>,
        report: ScanReport,
    },
    Checklist {
        items: Vec<Item>,
    },
    Staged {
        at: DateTime<Utc>,
        report: StagingReport,
    },
    Validated {
        at: DateTime<Utc>,
        report: ValidationReport,
    },
    Approval(Approval),
    Notification(NotificationEntry),
    DeployStarted {
        at: DateTime<Utc>,
        strategy: Strategy,
    },
    DeployStep(StepEntry),
    DeployFinished {
        at: DateTime<Utc>,
    },
    Baseline {
        at: DateTime<Utc>,
        sample: Option<MetricSample>,
        error: Option<String>,
    },
    Sample(SampleEntry),
    Checkpoint(CheckpointEntry),
    Alert(Alert),
    Escalation(Escalation),
    RollbackStarted {
        at: DateTime<Utc>,
        trigger: RollbackTrigger,
        reason: String,
    },
    RollbackStep(StepEntry),
    RollbackFinished {
        at: DateTime<Utc>,
        restored_version: Option<Version>,
        migrations_reverted: bool,
        caches_cleared: bool,
        verified: bool,
        incident: String,
    },
    ProductionVersion {
        at: DateTime<Utc>,
        version: Option<Version>,
        note: String,
    },
    /// A manager lifted the block on the version this deployment rolled back.
    Unblocked {
        at: DateTime<Utc>,
        by: String,
        reason: String,
    },
    /// A person acknowledged escalation number `index` (from 1), with their note.
    Acknowledged {
        at: DateTime<Utc>,
        index: usize,
        by: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        note: Option<String>,
    },
    /// Production changed while the deployment waited in the queue.
    ProductionSeen {
        at: DateTime<Utc>,
        previous_version: Option<Version>,
        note: String,
    },
    Issue {
        at: DateTime<Utc>,
        issue: String,
    },
    Note {
        at: DateTime<Utc>,
        event: String,
    },
    /// An approval was asked of a person; it is pending until decided,
    /// timed out, or the deployment ends.
    ApprovalRequested {
        at: DateTime<Utc>,
        role: Role,
        deadline: DateTime<Utc>,
    },
}

impl Record {
    /// The version this deployment's rollback blocks for its service, until
    /// a manager unblocks it: a release that ended rolled back blocks its own
    /// version; a rollback-type deployment that succeeded blocks the version
    /// it replaced.
    pub fn blocked_version(&self) -> Option<&Version> {
        if self.unblocked.is_some() {
            return None;
        }
        let blocked = match (self.kind, self.status) {
            (DeploymentType::Rollback, Status::Succeeded) => self.previous_version.as_ref(),
            (DeploymentType::Rollback, _) => None,
            (_, Status::RolledBack) => self.version.as_ref(),
            _ => None,
        };
        blocked.filter(|v| self.kind != DeploymentType::Rollback || Some(*v) != self.version.as_ref())
    }

    /// The record a `Submitted` fact opens.
    pub fn open(fact: &Fact) -> Option<Record> {
        let Fact::Submitted {
            id,
            at,
            request,
            strategy,
            previous_version,
            production_version,
            target_version,
        } = fact
        else {
            return None;
        };
        let mut r = Record {
            id: *id,
            service: request.service.clone(),
            version: target_version.clone(),
            previous_version: previous_version.clone(),
            kind: request.kind,
            strategy: *strategy,
            submitted_by: request.submitted_by.clone(),
            submitted_at: *at,
            scheduled_for: request.scheduled_for,
            changes: request.changes.clone(),
            status: Status::Queued,
            production_version: production_version.clone(),
            stages: vec![],
            checklist: vec![],
            prepare: None,
            security: None,
            staging: None,
            validation: None,
            approvals: vec![],
            pending_approvals: vec![],
            deploy_log: None,
            monitoring: Monitoring {
                baseline: None,
                samples: vec![],
                checkpoints: vec![],
            },
            alerts: vec![],
            rollback: None,
            escalations: vec![],
            notifications: vec![],
            issues: vec![],
            timeline: vec![],
            finished_at: None,
            unblocked: None,
            markdown: String::new(),
        };
        let what = match &r.version {
            Some(v) => format!("{} v{}", r.service, v),
            None => format!("{} (previous version)", r.service),
        };
        r.note(
            *at,
            format!(
                "{} deployment of {what} submitted by {}",
                r.kind.title(),
                r.submitted_by
            ),
        );
        Some(r)
    }

    fn note(&mut self, at: DateTime<Utc>, event: String) {
        self.timeline.push(TimelineEntry { at, event });
    }

    /// Applies one fact. Facts other than `Submitted` are applied in order.
    pub fn apply(&mut self, fact: &Fact) {
        match fact.clone() {
            Fact::Submitted { .. } => {}
            // How the deployment moves through its stages.
            Fact::Status { at, status, note } => self.apply_status(at, status, note),
            Fact::StageStarted { at, stage } => self.apply_stage_started(at, stage),
            Fact::StageFinished {
                at,
                stage,
                outcome,
                note,
            } => self.apply_stage_finished(at, stage, outcome, note),
            Fact::Issue { at, issue } => {
                self.note(at, format!("Issue: {issue}"));
                self.issues.push(issue);
            }
            Fact::Note { at, event } => self.note(at, event),
            // The reports of the stages before production.
            Fact::Prepared { report, .. } => self.prepare = Some(report),
            Fact::Scanned { at, report } => self.apply_scan(at, report),
            Fact::Checklist { items } => self.checklist = items,
            Fact::Staged { report, .. } => self.staging = Some(report),
            Fact::Validated { at, report } => {
                self.note(at, "QA validation complete".to_string());
                self.validation = Some(report);
            }
            // People: approvals, notices, escalations.
            Fact::Approval(a) => self.apply_approval(a),
            Fact::ApprovalRequested { at, role, deadline } => self.apply_approval_requested(at, role, deadline),
            Fact::Notification(n) => {
                let state = if n.delivered { "sent" } else { "failed" };
                self.note(n.at, format!("Notification {state}: {}", n.subject));
                self.notifications.push(n);
            }
            Fact::Escalation(e) => {
                self.note(e.at, format!("Escalation ({}): {}", e.reason, e.detail));
                self.escalations.push(e);
            }
            Fact::Acknowledged { at, index, by, note } => self.apply_acknowledged(at, index, by, note),
            Fact::Unblocked { at, by, reason } => {
                if let Some(v) = self.blocked_version().cloned() {
                    self.note(at, format!("{} v{v} unblocked by {by}: {reason}", self.service));
                }
                self.unblocked = Some(Unblocked { by, at, reason });
            }
            // Production: what DEPLOY did and what runs there.
            Fact::DeployStarted { at, strategy } => self.apply_deploy_started(at, strategy),
            Fact::DeployStep(step) => self.apply_deploy_step(step),
            Fact::DeployFinished { at } => {
                if let Some(log) = &mut self.deploy_log {
                    log.finished_at = Some(at);
                }
            }
            Fact::ProductionVersion { at, version, note } => {
                self.production_version = version;
                if !note.is_empty() {
                    self.note(at, note);
                }
            }
            Fact::ProductionSeen {
                at,
                previous_version,
                note,
            } => {
                self.production_version = previous_version.clone();
                self.previous_version = previous_version;
                self.note(at, note);
            }
            // What canary analysis and MONITOR saw.
            Fact::Baseline { at, sample, error } => {
                self.monitoring.baseline = sample;
                if let Some(e) = error {
                    self.note(at, format!("Baseline unavailable: {e}"));
                }
            }
            Fact::Sample(s) => self.monitoring.samples.push(s),
            Fact::Checkpoint(c) => self.apply_checkpoint(c),
            Fact::Alert(a) => self.apply_alert(a),
            // ROLLBACK.
            Fact::RollbackStarted { at, trigger, reason } => self.apply_rollback_started(at, trigger, reason),
            Fact::RollbackStep(step) => self.apply_rollback_step(step),
            Fact::RollbackFinished {
                at,
                restored_version,
                migrations_reverted,
                caches_cleared,
                verified,
                incident,
            } => {
                if let Some(r) = &mut self.rollback {
                    r.completed_at = Some(at);
                    r.restored_version = restored_version;
                    r.migrations_reverted = migrations_reverted;
                    r.caches_cleared = caches_cleared;
                    r.verified = verified;
                    r.incident = incident;
                }
            }
        }
    }

    // ---- Progress through the stages ----

    fn apply_status(&mut self, at: DateTime<Utc>, status: Status, note: String) {
        self.status = status;
        if status.is_terminal() {
            self.finished_at = Some(at);
            self.pending_approvals.clear();
        }
        if !note.is_empty() {
            self.note(at, note);
        }
    }

    fn apply_stage_started(&mut self, at: DateTime<Utc>, stage: Stage) {
        self.stages.push(StageEntry {
            stage,
            outcome: None,
            started_at: at,
            finished_at: None,
        });
        self.note(at, format!("{} started", stage.title()));
    }

    /// Closes the latest open entry of `stage`.
    fn apply_stage_finished(&mut self, at: DateTime<Utc>, stage: Stage, outcome: Outcome, note: String) {
        if let Some(e) = self
            .stages
            .iter_mut()
            .rev()
            .find(|e| e.stage == stage && e.outcome.is_none())
        {
            e.outcome = Some(outcome);
            e.finished_at = Some(at);
        }
        let mut event = format!("{} {}", stage.title(), outcome.as_str());
        if !note.is_empty() {
            event = format!("{event}: {note}");
        }
        self.note(at, event);
    }

    // ---- The reports of the stages before production ----

    fn apply_scan(&mut self, at: DateTime<Utc>, report: ScanReport) {
        self.note(
            at,
            format!(
                "Security scan: {} critical vulnerabilities{}",
                report.critical_vulnerabilities,
                simulated(report.simulated)
            ),
        );
        self.security = Some(report);
    }

    // ---- People: approvals, notices, escalations ----

    /// A decision (or a refused attempt, which leaves the role pending).
    fn apply_approval(&mut self, a: Approval) {
        let decision = match a.decision {
            Decision::Granted => "granted",
            Decision::Denied => "denied",
            Decision::Refused => "refused",
            Decision::TimedOut => "timed out",
            Decision::WindowOverride => "window override granted",
        };
        self.note(
            a.at,
            format!("Approval ({}) {decision} by {}: {}", a.role, a.by, a.reason),
        );
        if a.decision != Decision::Refused {
            self.pending_approvals.retain(|p| p.role != a.role);
        }
        self.approvals.push(a);
    }

    fn apply_approval_requested(&mut self, at: DateTime<Utc>, role: Role, deadline: DateTime<Utc>) {
        self.note(
            at,
            format!(
                "Approval ({role}) requested from a person; deadline {}",
                deadline.to_rfc3339()
            ),
        );
        self.pending_approvals.retain(|p| p.role != role);
        self.pending_approvals.push(PendingApproval {
            role,
            requested_at: at,
            deadline,
        });
    }

    fn apply_acknowledged(&mut self, at: DateTime<Utc>, index: usize, by: String, note: Option<String>) {
        if let Some(e) = index.checked_sub(1).and_then(|i| self.escalations.get_mut(i)) {
            e.acknowledged_by = Some(by.clone());
            e.acknowledged_at = Some(at);
            e.acknowledgement_note = note.clone();
            let reason = e.reason;
            let said = note.map(|n| format!(": {n}")).unwrap_or_default();
            self.note(at, format!("Escalation {index} ({reason}) acknowledged by {by}{said}"));
        }
    }

    // ---- Production ----

    fn apply_deploy_started(&mut self, at: DateTime<Utc>, strategy: Strategy) {
        self.deploy_log = Some(DeployLog {
            strategy,
            started_at: at,
            finished_at: None,
            steps: vec![],
        });
    }

    fn apply_deploy_step(&mut self, step: StepEntry) {
        self.note(step.at, step_event("", &step));
        if let Some(log) = &mut self.deploy_log {
            log.steps.push(step);
        }
    }

    // ---- What canary analysis and MONITOR saw ----

    fn apply_checkpoint(&mut self, c: CheckpointEntry) {
        self.note(
            c.at,
            format!(
                "Checkpoint {} ({}): {}{}",
                fmt_minutes(c.minute),
                c.check.title(),
                if c.passed { "ok" } else { "NOT OK" },
                simulated(c.simulated)
            ),
        );
        self.monitoring.checkpoints.push(c);
    }

    fn apply_alert(&mut self, a: Alert) {
        let (metric, value, threshold) = match a.metric {
            Metric::ErrorRate => ("error rate", pct(a.value), pct(a.threshold)),
            Metric::LatencyP99 => (
                "p99 latency",
                format!("{} ms", fmt_num(a.value)),
                format!("{} ms", fmt_num(a.threshold)),
            ),
            Metric::Cpu => ("CPU", pct(a.value), pct(a.threshold)),
            Metric::Memory => ("memory", pct(a.value), pct(a.threshold)),
        };
        let action = match a.action {
            AlertAction::Scale => "scale",
            AlertAction::Investigate => "investigate",
            AlertAction::Rollback => "rollback",
        };
        self.note(a.at, format!("Alert: {metric} {value} over {threshold} -> {action}"));
        self.alerts.push(a);
    }

    // ---- ROLLBACK ----

    fn apply_rollback_started(&mut self, at: DateTime<Utc>, trigger: RollbackTrigger, reason: String) {
        self.note(at, format!("Rollback initiated ({trigger}): {reason}"));
        self.rollback = Some(RollbackLog {
            trigger,
            reason,
            initiated_at: at,
            completed_at: None,
            restored_version: None,
            migrations_reverted: false,
            caches_cleared: false,
            verified: false,
            steps: vec![],
            incident: String::new(),
        });
    }

    fn apply_rollback_step(&mut self, step: StepEntry) {
        self.note(step.at, step_event("Rollback: ", &step));
        if let Some(r) = &mut self.rollback {
            r.steps.push(step);
        }
    }

    /// Whether any evidence in the record (a checklist item, the scan, a
    /// staging check, a suite, a step, the baseline, a sample or a
    /// checkpoint) came from the simulated world.
    pub fn rests_on_simulation(&self) -> bool {
        let steps = self
            .deploy_log
            .iter()
            .flat_map(|d| &d.steps)
            .chain(self.rollback.iter().flat_map(|r| &r.steps));
        self.checklist.iter().any(|i| i.simulated)
            || self.prepare.as_ref().is_some_and(|p| !p.simulated.is_empty())
            || self.security.as_ref().is_some_and(|s| s.simulated)
            || self.staging.as_ref().is_some_and(|s| !s.simulated.is_empty())
            || self
                .validation
                .as_ref()
                .is_some_and(|v| v.suites.iter().any(|s| s.simulated))
            || steps.into_iter().any(|s| s.simulated)
            || self.monitoring.baseline.is_some_and(|b| b.simulated)
            || self
                .monitoring
                .samples
                .iter()
                .any(|s| s.sample.is_some_and(|m| m.simulated))
            || self.monitoring.checkpoints.iter().any(|c| c.simulated)
    }

    /// The approvals as reports show them: each decision in its own
    /// section, in the order they were made, then each pending role; the
    /// refused attempts of a role are listed under its last section, and a
    /// role with nothing but refused attempts gets a section of its own.
    pub fn approval_sections(&self) -> Vec<ApprovalSection<'_>> {
        let mut sections: Vec<ApprovalSection<'_>> = vec![];
        let mut refused: Vec<&Approval> = vec![];
        for a in &self.approvals {
            match a.decision {
                Decision::Refused => refused.push(a),
                _ => sections.push(ApprovalSection {
                    role: a.role,
                    decision: Some(a),
                    pending: None,
                    refused: vec![],
                }),
            }
        }
        for p in &self.pending_approvals {
            sections.push(ApprovalSection {
                role: p.role,
                decision: None,
                pending: Some(p),
                refused: vec![],
            });
        }
        for a in refused {
            let own = sections
                .iter_mut()
                .rev()
                .find(|s| s.role == a.role && s.decision.is_none_or(|d| d.decision != Decision::WindowOverride));
            match own {
                Some(s) => s.refused.push(a),
                None => sections.push(ApprovalSection {
                    role: a.role,
                    decision: None,
                    pending: None,
                    refused: vec![a],
                }),
            }
        }
        sections
    }

    /// Rebuilds a record from its facts, in order.
    pub fn replay<'a>(facts: impl IntoIterator<Item = &'a Fact>) -> Option<Record> {
        let mut iter = facts.into_iter();
        let mut record = Record::open(iter.next()?)?;
        for f in iter {
            record.apply(f);
        }
        Some(record)
    }
}

/// The line added to every notification about a deployment whose record
/// holds simulated evidence.
pub const SIMULATED_NOTICE: &str = "Simulated: some results of this deployment came from the simulated world (no command or probe configured); the Deployment Record marks each of them \"(simulated)\".";

/// A fraction as a percentage, or "not measured (threshold not judged)" when
/// the source gave no value.
pub fn pct_or_not_measured(v: Option<f64>) -> String {
    v.map(pct)
        .unwrap_or_else(|| "not measured (threshold not judged)".into())
}

/// The timeline's words for a production or rollback step: `prefix`, the
/// step, whether it failed, and whether the simulated world answered it.
fn step_event(prefix: &str, step: &StepEntry) -> String {
    format!(
        "{prefix}{}{}{}",
        step.step,
        if step.ok { "" } else { " FAILED" },
        simulated(step.simulated)
    )
}

/// `" (simulated)"` for evidence from the simulated world, else nothing: the
/// label every rendering of the record appends to such an item.
pub fn simulated(flag: bool) -> &'static str {
    if flag {
        " (simulated)"
    } else {
        ""
    }
}

/// Formats a number without trailing zeros, for reports: four decimals
/// below 1, two from 1 on.
pub fn fmt_num(v: f64) -> String {
    let s = if v.abs() < 1.0 {
        format!("{v:.4}")
    } else {
        format!("{v:.2}")
    };
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" {
        "0".to_string()
    } else {
        s.to_string()
    }
}

/// A fraction as a percentage, for reports.
pub fn pct(v: f64) -> String {
    format!("{}%", fmt_num(v * 100.0))
}

/// A duration for reports: seconds under a minute (`42 s`, `1.5 s`),
/// minutes and seconds up to an hour (`5 min`, `5 min 30 s`, `60 min`, as
/// the seed's checkpoints count), hours and minutes beyond (`1 h 41 min`).
/// Never `0 min`.
pub fn fmt_duration(d: chrono::Duration) -> String {
    let secs = d.num_milliseconds().max(0) as f64 / 1000.0;
    if secs < 59.5 {
        return format!("{} s", fmt_num(secs));
    }
    let total = secs.round() as i64;
    if total <= 3600 {
        return match (total / 60, total % 60) {
            (m, 0) => format!("{m} min"),
            (m, s) => format!("{m} min {s} s"),
        };
    }
    match (total / 3600, total % 3600 / 60) {
        (h, 0) => format!("{h} h"),
        (h, m) => format!("{h} h {m} min"),
    }
}

/// A number of minutes (as the settings give them) as [`fmt_duration`] writes it.
pub fn fmt_minutes(minutes: f64) -> String {
    fmt_duration(crate::settings::minutes(minutes))
}
