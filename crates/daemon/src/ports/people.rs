//! People decide through the API: an approval request is only logged.

use agents::ports::{self, DecisionSink, Target};
use chrono::{DateTime, Utc};
use workflow::types::Role;

/// [`ports::People`]: people answer through the API (`stagecoach approve`).
pub struct PeopleAdapter;

impl ports::People for PeopleAdapter {
    fn approval_requested(&self, target: &Target, role: Role, at: DateTime<Utc>, _sink: DecisionSink) {
        tracing::info!(
            deployment = %target.id,
            service = %target.service,
            role = %role,
            requested_at = %at,
            "approval awaited: a person decides through the API (`stagecoach approve`)"
        );
    }
}
