//! The API's types as they travel: request bodies, answers and the payload
//! of the event stream. The daemon serialises these same types (the
//! `/v1/events` entries) or the workflow types they name (a record is a
//! [`workflow::record::Record`]), so the two ends cannot drift apart.
//!
//! Request bodies carry text as the caller wrote it: the daemon is the one
//! that validates names, versions, types and roles, and its 422 names the
//! field that was wrong.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize};
use workflow::record::{Fact, Request};
use workflow::strategy::Colour;
use workflow::types::{DeploymentId, Version};

pub use workflow::record::Record;

/// `POST /v1/deployments`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubmitRequest {
    /// The service to deploy.
    pub service: String,
    /// The version to deploy; a rollback without it restores the previous version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// `standard`, `hotfix`, `rollback` or `scheduled`; the daemon's default is `standard`.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// `canary`, `blue-green` or `rolling`; the daemon's default is the service's strategy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strategy: Option<String>,
    /// The changes the release carries; QA validates each.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<String>,
    /// When a scheduled deployment may start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduled_for: Option<DateTime<Utc>>,
    /// For a rollback: the version to restore.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_version: Option<String>,
    /// Deploy outside the allowed windows, for this reason (needs the manager role).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub override_window_reason: Option<String>,
    /// Checklist items the submitter attests, e.g. `changelog_updated`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attest: Vec<String>,
}

/// A person's decision on an approval.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    Approve,
    Reject,
}

/// `POST /v1/deployments/{id}/approvals`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApprovalRequest {
    /// The role decided: `manager`, `security`, `devops` or `qa`.
    pub role: String,
    pub decision: Decision,
    /// Why; required to reject.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// `POST /v1/deployments/{id}/rollback` (a reason is required) and `POST /v1/deployments/{id}/cancel`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReasonRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// `POST /v1/escalations/{id}/ack`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AckRequest {
    /// A note for the record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// The query of `GET /v1/deployments`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListQuery {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// A status such as `in_progress` or `awaiting_approval`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// Records per page, 1 to 1000 (the daemon's default is 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
}

/// One page of `GET /v1/deployments`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ListPage {
    pub deployments: Vec<Record>,
    /// Where the next page starts; `None` on the last page.
    pub next_cursor: Option<String>,
}

/// `GET /v1/deployments/{id}/verify`: the journal's hash chain of one deployment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verification {
    pub deployment: String,
    #[serde(default)]
    pub entries: u64,
    pub intact: bool,
    /// What is wrong, first problem first.
    #[serde(default)]
    pub problems: Vec<String>,
    /// The hash of the last entry.
    #[serde(default)]
    pub head: Option<String>,
}

/// Every error answer: `{"error": {"code", "message"}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorDetail {
    /// `bad_request`, `unauthorized`, `forbidden`, `not_found`, `conflict`, `too_large`, `invalid`, `unavailable`.
    pub code: String,
    /// What was wrong and what to do.
    pub message: String,
}

/// The query of `GET /v1/events`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventsQuery {
    /// Only this deployment's entries, from its first one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment: Option<String>,
    /// Only entries after this journal sequence number (also sent as `Last-Event-ID`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<u64>,
}

// ---- the event stream ---------------------------------------------------------------

/// One journal entry as `GET /v1/events` sends it (`event: entry`, `id: SEQ`).
///
/// This is the documented wire form, built by the daemon from the stored
/// entry: the journal's own format stays private and may change. It leaves
/// out what the journal keeps only to replay (the settings snapshot a
/// submission was judged against, the machine's raw inputs); what happened
/// is in `facts`, the same facts that make the Deployment Record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventEntry {
    /// Position in the whole journal, strictly increasing from 1.
    pub seq: u64,
    /// `d-000001`; `d-000000` holds entries of the daemon itself.
    pub deployment: DeploymentId,
    /// Position in the deployment's hash chain, from 1.
    pub index: u64,
    pub at: DateTime<Utc>,
    pub kind: EntryKind,
    /// SHA-256 of this entry as stored (see `stagecoach verify`).
    pub hash: String,
    /// `hash` of the deployment's previous entry.
    pub prev_hash: String,
    pub body: EntryBody,
}

/// What an entry records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryKind {
    Submitted,
    Event,
    Resumed,
    /// A kind this client does not know (sent by a newer daemon).
    #[serde(other)]
    Unknown,
}

/// The body of an [`EventEntry`], by its `kind`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EntryBody {
    /// A request was accepted.
    Submitted {
        request: Box<Request>,
        /// Production as the request found it.
        production: ProductionState,
        /// Why the service was held when the request came, if it was.
        held: Option<String>,
        #[serde(deserialize_with = "known_facts")]
        facts: Vec<Fact>,
    },
    /// An input to the deployment's state machine and the facts it produced.
    Event {
        /// What came in, named as the journal names it: `Prepared`,
        /// `StepDone`, `Observed`, `HumanDecision`, `Timer`, `Cancel`, …
        input: String,
        #[serde(deserialize_with = "known_facts")]
        facts: Vec<Fact>,
    },
    /// The daemon restarted and runs interrupted work again.
    Resumed {
        /// The work run again, named as the journal names it: `Prepare`, `Step`, `Observe`, …
        effects: Vec<String>,
    },
    /// A body this client does not know (from a newer daemon), or one the
    /// daemon could not read from its journal.
    #[serde(other)]
    Unknown,
}

impl EntryBody {
    /// The facts the entry added to the record (none for `resumed`).
    pub fn facts(&self) -> &[Fact] {
        match self {
            EntryBody::Submitted { facts, .. } | EntryBody::Event { facts, .. } => facts,
            EntryBody::Resumed { .. } | EntryBody::Unknown => &[],
        }
    }
}

/// What ran in production when a request was accepted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProductionState {
    pub current_version: Option<Version>,
    pub previous_version: Option<Version>,
    /// The colour live in a blue-green deployment.
    pub active_colour: Colour,
}

/// The facts of a list that this client knows; a fact of a kind added by a
/// newer daemon is left out rather than failing the whole entry.
fn known_facts<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<Fact>, D::Error> {
    let values = Vec::<serde_json::Value>::deserialize(deserializer)?;
    Ok(values
        .into_iter()
        .filter_map(|v| serde_json::from_value(v).ok())
        .collect())
}

/// When a fact happened; `None` for the checklist, which has no time of its own.
pub fn fact_time(fact: &Fact) -> Option<DateTime<Utc>> {
    Some(match fact {
        Fact::Checklist { .. } => return None,
        Fact::Approval(a) => a.at,
        Fact::Notification(n) => n.at,
        Fact::DeployStep(s) | Fact::RollbackStep(s) => s.at,
        Fact::Sample(s) => s.at,
        Fact::Checkpoint(c) => c.at,
        Fact::Alert(a) => a.at,
        Fact::Escalation(e) => e.at,
        Fact::Submitted { at, .. }
        | Fact::Status { at, .. }
        | Fact::StageStarted { at, .. }
        | Fact::StageFinished { at, .. }
        | Fact::Prepared { at, .. }
        | Fact::Scanned { at, .. }
        | Fact::Staged { at, .. }
        | Fact::Validated { at, .. }
        | Fact::DeployStarted { at, .. }
        | Fact::DeployFinished { at }
        | Fact::Baseline { at, .. }
        | Fact::RollbackStarted { at, .. }
        | Fact::RollbackFinished { at, .. }
        | Fact::ProductionVersion { at, .. }
        | Fact::Acknowledged { at, .. }
        | Fact::Unblocked { at, .. }
        | Fact::ProductionSeen { at, .. }
        | Fact::Issue { at, .. }
        | Fact::Note { at, .. }
        | Fact::ApprovalRequested { at, .. } => *at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(body: serde_json::Value) -> serde_json::Value {
        serde_json::json!({
            "seq": 7, "deployment": "d-000001", "index": 3, "at": "2026-03-03T10:20:00.123Z",
            "kind": body["kind"], "hash": "ab12", "prev_hash": "cd34", "body": body,
        })
    }

    #[test]
    fn an_event_entry_reads_and_writes_back_the_same() {
        let json = entry(serde_json::json!({
            "kind": "event", "input": "StepDone",
            "facts": [{"fact": "deploy_step", "at": "2026-03-03T10:20:00Z",
                       "step": "Canary at 10% of traffic", "ok": true, "detail": "", "simulated": false}],
        }));
        let e: EventEntry = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(
            (e.seq, e.deployment, e.index, e.kind),
            (7, DeploymentId(1), 3, EntryKind::Event)
        );
        assert_eq!(e.body.facts().len(), 1);
        assert_eq!(
            fact_time(&e.body.facts()[0]),
            Some("2026-03-03T10:20:00Z".parse().unwrap())
        );
        assert_eq!(serde_json::to_value(&e).unwrap(), json);
    }

    #[test]
    fn unknown_facts_and_kinds_are_left_out_not_fatal() {
        let json = entry(serde_json::json!({
            "kind": "event", "input": "Observed",
            "facts": [
                {"fact": "stage_started", "at": "2026-03-03T10:20:00Z", "stage": "deploy"},
                {"fact": "from_the_future", "at": "2026-03-03T10:20:00Z"},
                {"fact": "alert", "broken": 1},
            ],
        }));
        let e: EventEntry = serde_json::from_value(json).unwrap();
        assert_eq!(e.body.facts().len(), 1);

        let mut json = entry(serde_json::json!({"kind": "merged", "whatever": [1, 2]}));
        json["kind"] = "merged".into();
        let e: EventEntry = serde_json::from_value(json).unwrap();
        assert_eq!((e.kind, e.body), (EntryKind::Unknown, EntryBody::Unknown));
    }

    #[test]
    fn a_resumed_entry_names_its_effects() {
        let e: EventEntry = serde_json::from_value(entry(
            serde_json::json!({"kind": "resumed", "effects": ["Prepare", "Timer"]}),
        ))
        .unwrap();
        assert_eq!(
            e.body,
            EntryBody::Resumed {
                effects: vec!["Prepare".into(), "Timer".into()]
            }
        );
        assert!(e.body.facts().is_empty());
    }

    #[test]
    fn requests_leave_out_what_is_not_set() {
        let submit = SubmitRequest {
            service: "web".into(),
            kind: Some("standard".into()),
            ..SubmitRequest::default()
        };
        assert_eq!(
            serde_json::to_value(&submit).unwrap(),
            serde_json::json!({"service": "web", "type": "standard"})
        );
        let approve = ApprovalRequest {
            role: "manager".into(),
            decision: Decision::Reject,
            reason: Some("no".into()),
        };
        assert_eq!(
            serde_json::to_value(&approve).unwrap(),
            serde_json::json!({"role": "manager", "decision": "reject", "reason": "no"})
        );
        assert_eq!(
            serde_json::to_value(ReasonRequest::default()).unwrap(),
            serde_json::json!({})
        );
        assert!(
            serde_json::from_value::<SubmitRequest>(serde_json::json!({"service": "web", "colour": "blue"})).is_err()
        );
    }
}
