//! The scenario file: requests, the scripted world, people's decisions and
//! configuration overrides. Parsed strictly: unknown fields are errors, and
//! every error names the file and the field.

use chrono::{DateTime, Utc};
use serde::Deserialize;
use workflow::checklist::ItemKey;
use workflow::types::{DeploymentType, MigrationKind, Role, ServiceName, Status, Strategy, Version};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Virtual clock start.
    pub start: DateTime<Utc>,
    /// Free text shown in reports.
    #[serde(default)]
    pub description: Option<String>,
    pub requests: Vec<ScenarioRequest>,
    #[serde(default)]
    pub world: World,
    #[serde(default)]
    pub decisions: Vec<ScriptedDecision>,
    /// People's commands at given minutes (today: unblocking a rolled-back version).
    #[serde(default)]
    pub commands: Vec<ScenarioCommand>,
    #[serde(default)]
    pub config: Option<toml::Table>,
}

/// A person's command at a minute of the run (commands of a minute come
/// before the requests of that minute).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScenarioCommand {
    #[serde(default)]
    pub at_minute: u32,
    pub command: CommandKind,
    pub service: ServiceName,
    pub version: Version,
    /// Who gives it (a manager).
    pub by: String,
    pub reason: String,
}

/// What a scenario's command does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CommandKind {
    /// Lift the block a rollback put on `version` of `service`.
    Unblock,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScenarioRequest {
    pub service: ServiceName,
    #[serde(default)]
    pub version: Option<Version>,
    #[serde(rename = "type")]
    pub kind: DeploymentType,
    #[serde(default)]
    pub strategy: Option<Strategy>,
    pub submitted_by: String,
    #[serde(default)]
    pub changes: Vec<String>,
    #[serde(default)]
    pub at_minute: u32,
    #[serde(default)]
    pub scheduled_for: Option<DateTime<Utc>>,
    /// Checklist items the submitter attests (e.g. "code_review_approved").
    #[serde(default)]
    pub attest: Vec<ItemKey>,
    #[serde(default)]
    pub expect_status: Option<Status>,
    /// The request must be refused at submission, with a message containing this text.
    #[serde(default)]
    pub expect_refused: Option<String>,
}

/// The state of every service before the first request.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct World {
    #[serde(default)]
    pub current_version: Option<Version>,
    #[serde(default)]
    pub previous_version: Option<Version>,
    #[serde(default = "default_instances")]
    pub instances: u32,
    #[serde(default = "default_baseline")]
    pub baseline: Sample,
    #[serde(default)]
    pub prepare: PrepareWorld,
    #[serde(default)]
    pub staging: StagingWorld,
    #[serde(default)]
    pub qa: QaWorld,
    #[serde(default)]
    pub security: SecurityWorld,
    #[serde(default)]
    pub production: ProductionWorld,
    #[serde(default)]
    pub metrics: Vec<MetricsEntry>,
    #[serde(default)]
    pub incidents: Vec<IncidentEntry>,
    #[serde(default)]
    pub durations: Durations,
    #[serde(default)]
    pub notifications: NotificationWorld,
}

impl Default for World {
    fn default() -> Self {
        toml::from_str("").expect("an empty world is valid")
    }
}

fn default_instances() -> u32 {
    agents::simulated::INSTANCES
}
fn yes() -> bool {
    true
}
fn default_baseline() -> Sample {
    let b = agents::simulated::BASELINE;
    Sample {
        error_rate: b.error_rate,
        latency_p99_ms: b.latency_p99_ms,
        cpu: b.cpu,
        memory: b.memory,
    }
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sample {
    pub error_rate: f64,
    pub latency_p99_ms: f64,
    pub cpu: f64,
    pub memory: f64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrepareWorld {
    #[serde(default = "yes")]
    pub tests_pass: bool,
    #[serde(default = "yes")]
    pub build: bool,
    #[serde(default = "no_migrations")]
    pub migrations: MigrationKind,
    #[serde(default = "yes")]
    pub migrations_tested: bool,
    #[serde(default = "yes")]
    pub backup: bool,
    #[serde(default = "yes")]
    pub environment_updated: bool,
}
fn no_migrations() -> MigrationKind {
    MigrationKind::None
}
impl Default for PrepareWorld {
    fn default() -> Self {
        toml::from_str("").expect("valid")
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StagingWorld {
    #[serde(default = "yes")]
    pub deploy: bool,
    #[serde(default = "yes")]
    pub migrations: bool,
    #[serde(default = "yes")]
    pub health: bool,
    #[serde(default = "yes")]
    pub smoke: bool,
    #[serde(default = "yes")]
    pub external_services: bool,
}
impl Default for StagingWorld {
    fn default() -> Self {
        toml::from_str("").expect("valid")
    }
}

pub use agents::simulated::Suite;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QaWorld {
    #[serde(default = "default_suites")]
    pub suites: Vec<Suite>,
}
fn default_suites() -> Vec<Suite> {
    agents::simulated::default_suites()
}
impl Default for QaWorld {
    fn default() -> Self {
        QaWorld {
            suites: default_suites(),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecurityWorld {
    #[serde(default)]
    pub critical_vulnerabilities: u32,
    #[serde(default)]
    pub findings: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProductionWorld {
    #[serde(default = "yes")]
    pub deploy: bool,
    #[serde(default = "yes")]
    pub health: bool,
    #[serde(default = "yes")]
    pub rollback: bool,
    /// Rolling: the first instance (1-based) whose health check fails.
    #[serde(default)]
    pub fail_at_instance: Option<u32>,
}
impl Default for ProductionWorld {
    fn default() -> Self {
        toml::from_str("").expect("valid")
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsEntry {
    pub minute: u32,
    #[serde(default)]
    pub error_rate: Option<f64>,
    #[serde(default)]
    pub latency_p99_ms: Option<f64>,
    #[serde(default)]
    pub cpu: Option<f64>,
    #[serde(default)]
    pub memory: Option<f64>,
    #[serde(default)]
    pub unavailable: bool,
    /// Applies only to deployments of this version (default: all).
    #[serde(default)]
    pub version: Option<Version>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IncidentKindWorld {
    SecurityVulnerability,
    CriticalFunctionalityBroken,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IncidentEntry {
    pub minute: u32,
    pub kind: IncidentKindWorld,
    pub detail: String,
    #[serde(default)]
    pub version: Option<Version>,
}

/// Virtual minutes each simulated action takes.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Durations {
    #[serde(default = "five")]
    pub prepare: u32,
    #[serde(default = "two")]
    pub scan: u32,
    #[serde(default = "five")]
    pub staging: u32,
    #[serde(default = "ten")]
    pub validate: u32,
    #[serde(default = "one")]
    pub deploy_step: u32,
    #[serde(default = "two")]
    pub rollback: u32,
}
fn one() -> u32 {
    1
}
fn two() -> u32 {
    2
}
fn five() -> u32 {
    5
}
fn ten() -> u32 {
    10
}
impl Default for Durations {
    fn default() -> Self {
        toml::from_str("").expect("valid")
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotificationWorld {
    /// Every notification fails to be delivered.
    #[serde(default)]
    pub fail: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DecisionWord {
    Approve,
    Reject,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScriptedDecision {
    pub role: Role,
    pub decision: DecisionWord,
    pub by: String,
    /// Minutes after the approval was requested.
    #[serde(default)]
    pub after_minutes: u32,
    /// Index into `requests` this decision answers (default: every request
    /// that asks this role).
    #[serde(default)]
    pub request: Option<usize>,
    #[serde(default)]
    pub reason: Option<String>,
}

/// Most instances a scenario's world may run per service (`world.instances`).
pub const MAX_INSTANCES: u32 = 1000;

/// A scenario that could not be read; the message names the file and field.
#[derive(Debug, thiserror::Error)]
#[error("{file}: {message}")]
pub struct ScenarioError {
    pub file: String,
    pub message: String,
}

/// Rewrites serde's backquoted names into the plain form used in messages.
fn plain(message: &str) -> String {
    match message.split_once("expected") {
        Some((head, tail)) => format!("{}expected{}", head.replace('`', "\""), tail.replace('`', "")),
        None => message.replace('`', "\""),
    }
}

impl Scenario {
    /// Parses and checks a scenario; `file` names it in errors.
    pub fn parse(file: &str, text: &str) -> Result<Scenario, ScenarioError> {
        let err = |message: String| ScenarioError {
            file: file.to_string(),
            message,
        };
        let de = toml::Deserializer::new(text);
        let scenario: Scenario = serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.inner();
            let start = inner.span().map(|s| {
                let mut start = s.start.min(text.len());
                while !text.is_char_boundary(start) {
                    start -= 1;
                }
                start
            });
            let line = start.map(|s| text[..s].lines().count().max(1));
            let at = line.map(|l| format!(" (line {l})")).unwrap_or_default();
            if path == "." || path.is_empty() {
                // A syntax error (a number out of range, say) has no field path: name the key
                // written on its line instead.
                let key = start
                    .and_then(|s| text[..s].rsplit('\n').next().zip(text[s..].split('\n').next()))
                    .map(|(before, after)| format!("{before}{after}"))
                    .and_then(|line| line.split_once('=').map(|(k, _)| k.trim().to_string()))
                    .filter(|k| !k.is_empty() && k.len() <= 64 && !k.starts_with(['#', '[']));
                match (key, line) {
                    (Some(key), Some(l)) => err(format!("{} (line {l}, key {key})", plain(inner.message()))),
                    _ => err(format!("{}{at}", plain(inner.message()))),
                }
            } else {
                err(format!("{path}: {}{at}", plain(inner.message())))
            }
        })?;
        if scenario.requests.is_empty() {
            return Err(err("requests: at least one [[requests]] entry is required".into()));
        }
        for (i, r) in scenario.requests.iter().enumerate() {
            let field = |f: &str| format!("requests[{i}].{f}");
            if r.kind == DeploymentType::Scheduled && r.scheduled_for.is_none() {
                return Err(err(format!(
                    "{}: required for a scheduled deployment",
                    field("scheduled_for")
                )));
            }
            if r.kind != DeploymentType::Scheduled && r.scheduled_for.is_some() {
                return Err(err(format!(
                    "{}: only allowed when type = \"scheduled\"",
                    field("scheduled_for")
                )));
            }
            if r.kind != DeploymentType::Rollback && r.version.is_none() {
                return Err(err(format!(
                    "{}: required for a {} deployment",
                    field("version"),
                    r.kind
                )));
            }
            if r.submitted_by.trim().is_empty() {
                return Err(err(format!("{}: must name a person", field("submitted_by"))));
            }
            if r.expect_refused.is_some() && r.expect_status.is_some() {
                return Err(err(format!(
                    "{}: a request expected to be refused has no status; give expect_status or expect_refused",
                    field("expect_refused")
                )));
            }
        }
        for (i, d) in scenario.decisions.iter().enumerate() {
            if let Some(r) = d.request {
                if r >= scenario.requests.len() {
                    return Err(err(format!(
                        "decisions[{i}].request: {r} is not an index of requests (0..{})",
                        scenario.requests.len()
                    )));
                }
            }
        }
        for (i, c) in scenario.commands.iter().enumerate() {
            for (name, text) in [("by", &c.by), ("reason", &c.reason)] {
                if text.trim().is_empty() {
                    return Err(err(format!("commands[{i}].{name}: must not be empty")));
                }
            }
        }
        let instances = scenario.world.instances;
        if !(1..=MAX_INSTANCES).contains(&instances) {
            return Err(err(format!(
                "world.instances: {instances} is not between 1 and {MAX_INSTANCES}"
            )));
        }
        let b = &scenario.world.baseline;
        let samples = std::iter::once((
            "world.baseline".to_string(),
            Some(b.error_rate),
            Some(b.latency_p99_ms),
            Some(b.cpu),
            Some(b.memory),
        ))
        .chain(scenario.world.metrics.iter().enumerate().map(|(i, m)| {
            (
                format!("world.metrics[{i}]"),
                m.error_rate,
                m.latency_p99_ms,
                m.cpu,
                m.memory,
            )
        }));
        for (at, error_rate, latency, cpu, memory) in samples {
            for (name, v) in [("error_rate", error_rate), ("cpu", cpu), ("memory", memory)] {
                if let Some(v) = v {
                    if !(0.0..=1.0).contains(&v) {
                        return Err(err(format!("{at}.{name}: {v} is not a fraction between 0 and 1")));
                    }
                }
            }
            if let Some(v) = latency {
                if !v.is_finite() || v < 0.0 {
                    return Err(err(format!(
                        "{at}.latency_p99_ms: {v} is not a non-negative number of milliseconds"
                    )));
                }
            }
        }
        Ok(scenario)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = "start = \"2026-12-01T10:05:00Z\"\n[[requests]]\nservice = \"checkout\"\nversion = \"2.4.1\"\ntype = \"standard\"\nsubmitted_by = \"dana\"\n";

    #[test]
    fn a_minimal_scenario_parses_with_defaults() {
        let s = Scenario::parse("s.toml", MINIMAL).unwrap();
        assert_eq!(s.requests.len(), 1);
        assert_eq!(s.world.instances, 4);
        assert_eq!(s.world.qa.suites.len(), 4);
        assert!(s.world.production.rollback);
    }

    #[test]
    fn a_typo_in_a_variant_names_the_field() {
        let text = MINIMAL.replace("\"standard\"", "\"hotfx\"");
        let e = Scenario::parse("s.toml", &text).unwrap_err().to_string();
        assert!(
            e.starts_with("s.toml: requests[0].type: unknown variant \"hotfx\", expected one of standard, hotfix, rollback, scheduled"),
            "{e}"
        );
    }

    #[test]
    fn unknown_fields_and_missing_fields_are_errors() {
        let e = Scenario::parse("s.toml", &format!("{MINIMAL}colour = \"red\"\n"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("requests[0]") && e.contains("colour"), "{e}");
        let e = Scenario::parse("s.toml", &MINIMAL.replace("start = \"2026-12-01T10:05:00Z\"\n", ""))
            .unwrap_err()
            .to_string();
        assert!(e.contains("missing field \"start\""), "{e}");
        let e = Scenario::parse("s.toml", &MINIMAL.replace("version = \"2.4.1\"\n", ""))
            .unwrap_err()
            .to_string();
        assert!(e.contains("requests[0].version"), "{e}");
        let e = Scenario::parse("s.toml", &MINIMAL.replace("2.4.1", "../../etc"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("requests[0].version"), "{e}");
    }
}
