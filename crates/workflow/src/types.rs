//! Validated value types shared by every part of Stagecoach.
//!
//! Names and versions are parsed once at the edge ([`ServiceName::parse`],
//! [`Version::parse`]) so the rest of the core never re-checks strings.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Why a value given from outside was refused.
///
/// The message quotes the value escaped (control characters show as `\n`, `\u{1b}`, …) and,
/// past [`QUOTED_CHARS`] characters, only its start and its length.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} {} is invalid: {why}", quoted(value))]
pub struct InvalidValue {
    pub what: &'static str,
    pub value: String,
    pub why: &'static str,
}

/// Longest value an [`InvalidValue`] message quotes whole, in characters.
pub const QUOTED_CHARS: usize = 64;

fn quoted(value: &str) -> String {
    let count = value.chars().count();
    if count <= QUOTED_CHARS {
        return format!("{value:?}");
    }
    let start: String = value.chars().take(QUOTED_CHARS).collect();
    format!("{start:?}… ({count} characters)")
}

fn check_token(what: &'static str, value: &str, max: usize) -> Result<(), InvalidValue> {
    let bad = |why| {
        Err(InvalidValue {
            what,
            value: value.to_string(),
            why,
        })
    };
    if value.is_empty() {
        return bad("it is empty");
    }
    if value.len() > max {
        return bad(if max == SERVICE_NAME_MAX {
            "it is longer than 64 characters"
        } else {
            "it is longer than 128 characters"
        });
    }
    if value.starts_with(['.', '-']) {
        return bad("it must not start with . or -");
    }
    if !value
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '+'))
    {
        return bad("only ASCII letters, digits and - _ . + are allowed");
    }
    Ok(())
}

/// Longest service name, in bytes (all of them ASCII).
pub const SERVICE_NAME_MAX: usize = 64;
/// Longest version, in bytes (all of them ASCII).
pub const VERSION_MAX: usize = 128;

/// The name of a deployable service: `[A-Za-z0-9_+][A-Za-z0-9._+-]{0,63}`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ServiceName(String);

impl ServiceName {
    pub fn parse(value: &str) -> Result<Self, InvalidValue> {
        check_token("service name", value, SERVICE_NAME_MAX)?;
        Ok(Self(value.to_string()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A release version: `[A-Za-z0-9_+][A-Za-z0-9._+-]{0,127}`; never a path or shell text.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Version(String);

impl Version {
    pub fn parse(value: &str) -> Result<Self, InvalidValue> {
        check_token("version", value, VERSION_MAX)?;
        Ok(Self(value.to_string()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

macro_rules! string_newtype {
    ($t:ident) => {
        impl TryFrom<String> for $t {
            type Error = InvalidValue;
            fn try_from(value: String) -> Result<Self, Self::Error> {
                Self::parse(&value)
            }
        }
        impl From<$t> for String {
            fn from(value: $t) -> String {
                value.0
            }
        }
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}
string_newtype!(ServiceName);
string_newtype!(Version);

/// Identifier of one deployment, unique within a coordinator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub struct DeploymentId(pub u64);

impl fmt::Display for DeploymentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "d-{:06}", self.0)
    }
}
impl From<DeploymentId> for String {
    fn from(value: DeploymentId) -> String {
        value.to_string()
    }
}
impl TryFrom<String> for DeploymentId {
    type Error = InvalidValue;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        value
            .strip_prefix("d-")
            .and_then(|n| n.parse().ok())
            .map(DeploymentId)
            .ok_or(InvalidValue {
                what: "deployment id",
                value,
                why: "expected d-NNNNNN",
            })
    }
}

macro_rules! snake_enum {
    ($(#[$m:meta])* $t:ident { $($v:ident = $s:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        pub enum $t { $(#[serde(rename = $s)] $v),+ }
        impl $t {
            pub const ALL: &'static [$t] = &[$($t::$v),+];
            pub fn as_str(self) -> &'static str { match self { $($t::$v => $s),+ } }
        }
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result { f.write_str(self.as_str()) }
        }
    };
}

snake_enum!(
    /// The four deployment types of the workflow.
    DeploymentType { Standard = "standard", Hotfix = "hotfix", Rollback = "rollback", Scheduled = "scheduled" }
);
snake_enum!(
    /// How a new version reaches production.
    Strategy { BlueGreen = "blue-green", Canary = "canary", Rolling = "rolling" }
);
snake_enum!(
    /// The stages of the workflow, in their normal order.
    Stage { Prepare = "prepare", Staging = "staging", Validate = "validate", Approve = "approve", Deploy = "deploy", Monitor = "monitor", Rollback = "rollback" }
);
snake_enum!(
    /// Where a deployment stands. The last six are terminal.
    Status {
        Queued = "queued",
        InProgress = "in_progress",
        AwaitingApproval = "awaiting_approval",
        WaitingForWindow = "waiting_for_window",
        Succeeded = "succeeded",
        RolledBack = "rolled_back",
        Failed = "failed",
        Rejected = "rejected",
        Escalated = "escalated",
        Cancelled = "cancelled",
    }
);
snake_enum!(
    /// The roles that can approve a deployment.
    Role { Manager = "manager", Security = "security", Devops = "devops", Qa = "qa" }
);
snake_enum!(
    /// How a stage ended.
    Outcome { Passed = "passed", Failed = "failed", Skipped = "skipped" }
);
snake_enum!(
    /// Database migrations that a release carries.
    MigrationKind { None = "none", Reversible = "reversible", Irreversible = "irreversible" }
);
snake_enum!(
    /// What caused a rollback.
    RollbackTrigger {
        ErrorRate = "error_rate",
        CriticalFunctionalityBroken = "critical_functionality_broken",
        SecurityVulnerability = "security_vulnerability",
        SeverePerformanceDegradation = "severe_performance_degradation",
        DeploymentFailed = "deployment_failed",
        Manual = "manual",
    }
);
snake_enum!(
    /// Kinds of notification sent to stakeholders.
    NotificationKind { PreDeployment = "pre_deployment", PostDeployment = "post_deployment", Rollback = "rollback", Escalation = "escalation", ApprovalRequested = "approval_requested" }
);
snake_enum!(
    /// Conditions that raise an escalation.
    EscalationReason {
        RepeatedFailures = "deployment_fails_repeatedly",
        UnexpectedProductionErrors = "unexpected_errors_in_production",
        PerformanceDegradation = "performance_degradation",
        SecurityIncident = "security_incident",
        UnableToRollback = "unable_to_rollback",
        MetricsInconclusive = "metrics_inconclusive",
        IrreversibleMigration = "irreversible_migration",
        ProductionMismatch = "production_mismatch",
    }
);

impl Status {
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            Status::Succeeded
                | Status::RolledBack
                | Status::Failed
                | Status::Rejected
                | Status::Escalated
                | Status::Cancelled
        )
    }
}

impl Stage {
    /// Human title used in reports.
    pub fn title(self) -> &'static str {
        match self {
            Stage::Prepare => "PREPARE",
            Stage::Staging => "STAGING",
            Stage::Validate => "VALIDATE",
            Stage::Approve => "APPROVE",
            Stage::Deploy => "DEPLOY",
            Stage::Monitor => "MONITOR",
            Stage::Rollback => "ROLLBACK",
        }
    }
}

impl Strategy {
    pub fn title(self) -> &'static str {
        match self {
            Strategy::BlueGreen => "Blue-Green",
            Strategy::Canary => "Canary",
            Strategy::Rolling => "Rolling",
        }
    }
}

impl DeploymentType {
    pub fn title(self) -> &'static str {
        match self {
            DeploymentType::Standard => "Standard",
            DeploymentType::Hotfix => "Hotfix",
            DeploymentType::Rollback => "Rollback",
            DeploymentType::Scheduled => "Scheduled",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_versions_refuse_paths_and_shell_text() {
        assert!(ServiceName::parse("checkout").is_ok());
        assert!(Version::parse("2.4.1+build.7").is_ok());
        for bad in ["", "../etc", "a b", "x;rm -rf", "$(id)", "-rf", "a/b"] {
            assert!(Version::parse(bad).is_err(), "{bad:?} accepted");
            assert!(ServiceName::parse(bad).is_err(), "{bad:?} accepted");
        }
        assert!(ServiceName::parse(&"a".repeat(65)).is_err());
        let long = Version::parse(&"1".repeat(100_000)).unwrap_err().to_string();
        assert_eq!(
            long,
            format!(
                "version \"{}\"… (100000 characters) is invalid: it is longer than 128 characters",
                "1".repeat(64)
            )
        );
        let newline = Version::parse("1.0\nX=1").unwrap_err().to_string();
        assert_eq!(
            newline,
            "version \"1.0\\nX=1\" is invalid: only ASCII letters, digits and - _ . + are allowed"
        );
    }

    #[test]
    fn deployment_ids_round_trip() {
        let id = DeploymentId(42);
        assert_eq!(id.to_string(), "d-000042");
        assert_eq!(DeploymentId::try_from("d-000042".to_string()).unwrap(), id);
        assert!(DeploymentId::try_from("42".to_string()).is_err());
    }

    #[test]
    fn terminal_statuses() {
        let terminal: Vec<_> = Status::ALL.iter().filter(|s| s.is_terminal()).collect();
        assert_eq!(terminal.len(), 6);
        assert!(!Status::WaitingForWindow.is_terminal());
    }
}
