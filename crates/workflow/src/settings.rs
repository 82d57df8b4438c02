//! The configuration schema (`agents.toml`) and its layered loading.
//!
//! The bundled `agents.toml` at the repository root is the only place where
//! defaults live: it is compiled in as the first layer, so every key exists
//! and every rule of the seed is a value a user can override. Layers are
//! merged by the `config` crate from strings and a map of environment
//! variables handed in by the caller; this module reads no files and no
//! process environment itself.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, NaiveTime, Utc, Weekday};
use serde::{Deserialize, Serialize};

use crate::types::{DeploymentType, Role, Stage, Strategy};

/// The bundled defaults, compiled in.
pub const BUILTIN_AGENTS_TOML: &str = include_str!("../../../agents.toml");

/// The shortest duration a setting in minutes may have: one second.
pub const MIN_MINUTES: f64 = 1.0 / 60.0;

/// The longest duration a setting in minutes may have: 366 days. Longer ones would not fit the
/// calendar arithmetic of deadlines (and no deployment waits a year).
pub const MAX_MINUTES: f64 = 366.0 * 24.0 * 60.0;

/// Most health checks of the inactive colour before a blue-green switch.
pub const MAX_HEALTH_CHECKS: u32 = 100;

/// A duration given in (possibly fractional) minutes, to the millisecond.
pub fn minutes(m: f64) -> chrono::Duration {
    chrono::Duration::milliseconds((m * 60_000.0).round() as i64)
}

/// Prefix of environment overrides: `STAGECOACH__SECTION__KEY`.
pub const ENV_PREFIX: &str = "STAGECOACH";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub defaults: Defaults,
    pub types: Types,
    pub agents: Agents,
    pub qa: QaSettings,
    pub windows: WindowSettings,
    pub strategies: Strategies,
    pub monitoring: MonitoringSettings,
    pub thresholds: Thresholds,
    pub rollback: RollbackSettings,
    pub escalation: EscalationSettings,
    pub checklist: ChecklistSettings,
    pub notifications: NotificationSettings,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Defaults {
    pub strategy: Strategy,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Types {
    pub standard: TypePolicy,
    pub hotfix: TypePolicy,
    pub rollback: TypePolicy,
    pub scheduled: TypePolicy,
}

impl Types {
    pub fn get(&self, t: DeploymentType) -> &TypePolicy {
        match t {
            DeploymentType::Standard => &self.standard,
            DeploymentType::Hotfix => &self.hotfix,
            DeploymentType::Rollback => &self.rollback,
            DeploymentType::Scheduled => &self.scheduled,
        }
    }
}

/// How windows apply to a deployment type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WindowRule {
    Wait,
    Bypass,
    Scheduled,
}

/// Which QA suites a deployment type runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SuiteSelection {
    All,
    Critical,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TypePolicy {
    pub stages: Vec<Stage>,
    pub approvers: Vec<Role>,
    pub windows: WindowRule,
    pub qa_suites: SuiteSelection,
    pub monitoring_minutes: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Agents {
    pub manager: AgentSettings,
    pub security: AgentSettings,
    pub devops: AgentSettings,
    pub qa: AgentSettings,
}

impl Agents {
    pub fn get(&self, role: Role) -> &AgentSettings {
        match role {
            Role::Manager => &self.manager,
            Role::Security => &self.security,
            Role::Devops => &self.devops,
            Role::Qa => &self.qa,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApprovalMode {
    Auto,
    Human,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentSettings {
    pub mode: ApprovalMode,
    pub approval_timeout_minutes: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QaSettings {
    pub critical_suites: Vec<String>,
}

/// A day of the week as written in configuration (`mon` … `sun`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Day {
    Mon,
    Tue,
    Wed,
    Thu,
    Fri,
    Sat,
    Sun,
}

impl Day {
    pub fn weekday(self) -> Weekday {
        match self {
            Day::Mon => Weekday::Mon,
            Day::Tue => Weekday::Tue,
            Day::Wed => Weekday::Wed,
            Day::Thu => Weekday::Thu,
            Day::Fri => Weekday::Fri,
            Day::Sat => Weekday::Sat,
            Day::Sun => Weekday::Sun,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowSettings {
    /// IANA time zone name, e.g. `Europe/Berlin`.
    pub time_zone: String,
    pub never_days: Vec<Day>,
    pub holidays: Vec<NaiveDate>,
    pub end_of_month_days: u32,
    pub allowed: Vec<AllowedWindow>,
    #[serde(default)]
    pub freezes: Vec<Freeze>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AllowedWindow {
    pub days: Vec<Day>,
    #[serde(with = "hhmm")]
    pub start: NaiveTime,
    #[serde(with = "hhmm")]
    pub end: NaiveTime,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Freeze {
    pub name: String,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

mod hhmm {
    use chrono::NaiveTime;
    use serde::{Deserialize, Deserializer, Serializer};

    /// "24:00", the end of the day: the last instant of it.
    fn end_of_day() -> NaiveTime {
        NaiveTime::from_hms_nano_opt(23, 59, 59, 999_999_999).expect("a valid time")
    }

    pub fn serialize<S: Serializer>(t: &NaiveTime, s: S) -> Result<S::Ok, S::Error> {
        if *t == end_of_day() {
            return s.serialize_str("24:00");
        }
        s.serialize_str(&t.format("%H:%M").to_string())
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<NaiveTime, D::Error> {
        let s = String::deserialize(d)?;
        if s == "24:00" {
            return Ok(end_of_day());
        }
        NaiveTime::parse_from_str(&s, "%H:%M").map_err(|_| {
            serde::de::Error::custom(format!(
                "time {s:?} is not HH:MM (24-hour clock; \"24:00\" ends the day)"
            ))
        })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Strategies {
    pub canary: CanarySettings,
    pub blue_green: BlueGreenSettings,
    pub rolling: RollingSettings,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CanarySettings {
    pub steps: Vec<u8>,
    pub analysis_minutes: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlueGreenSettings {
    pub pre_switch_health_checks: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RollingSettings {
    pub batch_size: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckpointCheck {
    InitialHealth,
    ErrorRate,
    Performance,
    AllSystemsNormal,
}

impl CheckpointCheck {
    pub fn title(self) -> &'static str {
        match self {
            CheckpointCheck::InitialHealth => "Initial health check",
            CheckpointCheck::ErrorRate => "Error rate check",
            CheckpointCheck::Performance => "Performance check",
            CheckpointCheck::AllSystemsNormal => "All systems normal",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Checkpoint {
    pub minute: f64,
    pub check: CheckpointCheck,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MonitoringSettings {
    pub sample_interval_minutes: f64,
    pub breaches_to_rollback: u32,
    pub inconclusive_escalate_after: u32,
    pub checkpoints: Vec<Checkpoint>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Thresholds {
    pub error_rate_investigate: f64,
    pub error_rate_rollback: f64,
    pub latency_p99_investigate_factor: f64,
    pub latency_p99_rollback_factor: f64,
    pub cpu_scale: f64,
    pub memory_scale: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IrreversiblePolicy {
    Freeze,
    Rollback,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RollbackSettings {
    pub on_irreversible_migration: IrreversiblePolicy,
    pub clear_caches: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EscalationSettings {
    pub repeated_failures: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChecklistSettings {
    pub attested: Vec<crate::checklist::ItemKey>,
    pub required: Vec<crate::checklist::ItemKey>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotificationSettings {
    pub contact: String,
}

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("{source_name}: {message}")]
    Load { source_name: String, message: String },
    #[error("configuration: {0}")]
    Invalid(String),
}

/// Keys whose environment values are comma-separated lists.
const LIST_KEYS: &[&str] = &[
    "types.standard.stages",
    "types.hotfix.stages",
    "types.rollback.stages",
    "types.scheduled.stages",
    "types.standard.approvers",
    "types.hotfix.approvers",
    "types.rollback.approvers",
    "types.scheduled.approvers",
    "qa.critical_suites",
    "windows.never_days",
    "windows.holidays",
    "strategies.canary.steps",
    "checklist.attested",
    "checklist.required",
];

/// Merges `base`, then `layers` in order, then the `STAGECOACH__…` entries
/// of `env` into a `T`, naming the layer (or the environment) at fault.
fn load_layers<T: serde::de::DeserializeOwned>(
    base: Option<&str>,
    layers: &[(&str, String)],
    env: &BTreeMap<String, String>,
    list_keys: &[&str],
) -> Result<T, SettingsError> {
    use config::{Config, Environment, File, FileFormat};
    let start = || {
        let b = Config::builder();
        match base {
            Some(text) => b.add_source(File::from_str(text, FileFormat::Toml)),
            None => b,
        }
    };
    let mut builder = start();
    for (name, text) in layers {
        // Check each layer over the defaults on its own first, so that a
        // syntax error, an unknown key or a wrong type names its source.
        let alone = start()
            .add_source(File::from_str(text, FileFormat::Toml))
            .build()
            .and_then(|c| c.try_deserialize::<T>());
        if let Err(e) = alone {
            return Err(SettingsError::Load {
                source_name: name.to_string(),
                message: tidy_key(&e.to_string()),
            });
        }
        builder = builder.add_source(File::from_str(text, FileFormat::Toml));
    }
    let env_map: config::Map<String, String> = env
        .iter()
        .filter(|(k, _)| k.starts_with(&format!("{ENV_PREFIX}__")))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let has_env = !env_map.is_empty();
    let mut source = Environment::with_prefix(ENV_PREFIX)
        .prefix_separator("__")
        .separator("__")
        .list_separator(",")
        .try_parsing(true);
    for key in list_keys {
        source = source.with_list_parse_key(key);
    }
    builder = builder.add_source(source.source(Some(env_map)));
    let name = if has_env {
        "configuration (with STAGECOACH__ environment overrides)"
    } else {
        "configuration"
    };
    builder
        .build()
        .and_then(|c| c.try_deserialize::<T>())
        .map_err(|e| SettingsError::Load {
            source_name: name.to_string(),
            message: tidy_key(&e.to_string()),
        })
}

/// The `config` crate writes the key of an array element's field without its dot
/// (`` for key `windows.allowed[0]end` ``); this puts the dot back.
fn tidy_key(message: &str) -> String {
    const MARK: &str = "for key `";
    let mut out = String::with_capacity(message.len() + 4);
    let mut rest = message;
    while let Some(at) = rest.find(MARK) {
        let (head, tail) = rest.split_at(at + MARK.len());
        out.push_str(head);
        let end = tail.find('`').unwrap_or(tail.len());
        let mut prev = None;
        for c in tail[..end].chars() {
            if prev == Some(']') && (c.is_alphanumeric() || c == '_') {
                out.push('.');
            }
            out.push(c);
            prev = Some(c);
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

/// The top-level tables of `agents.toml` that configure the daemon rather
/// than the workflow (read by the `daemon` crate; ignored by the simulator).
pub const DAEMON_TABLES: &[&str] = &["server", "storage", "principals", "services", "notify"];

/// No tables beyond the workflow's.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct NoExtra {}

/// One layer of configuration text, named for error messages.
#[derive(Debug, Clone)]
pub struct Layer<'a> {
    pub name: &'a str,
    pub toml: &'a str,
}

impl Settings {
    /// The bundled defaults alone.
    pub fn builtin() -> Settings {
        Settings::load(&[], &BTreeMap::new()).expect("the bundled agents.toml is valid")
    }

    /// Merges the bundled defaults, then `layers` in order, then the
    /// `STAGECOACH__…` entries of `env`, and validates the result.
    pub fn load(layers: &[Layer<'_>], env: &BTreeMap<String, String>) -> Result<Settings, SettingsError> {
        Settings::load_with::<NoExtra>(layers, env, &[]).map(|(s, _)| s)
    }

    /// Like [`Settings::load`], for a file that also has the top-level
    /// tables `extra` (the daemon's `[server]`, `[[principals]]`, …): those
    /// are read into `X` from the same layers and environment.
    pub fn load_with<X: serde::de::DeserializeOwned>(
        layers: &[Layer<'_>],
        env: &BTreeMap<String, String>,
        extra: &[&str],
    ) -> Result<(Settings, X), SettingsError> {
        // Each layer is split in two: the workflow's tables and the `extra` ones.
        let mut mine = vec![];
        let mut theirs = vec![];
        for layer in layers {
            let load = |message: String| SettingsError::Load {
                source_name: layer.name.to_string(),
                message,
            };
            let table: toml::Table = layer.toml.parse().map_err(|e: toml::de::Error| load(e.to_string()))?;
            let (x, w): (toml::Table, toml::Table) = table.into_iter().partition(|(k, _)| extra.contains(&k.as_str()));
            mine.push((layer.name, toml::to_string(&w).map_err(|e| load(e.to_string()))?));
            theirs.push((layer.name, toml::to_string(&x).map_err(|e| load(e.to_string()))?));
        }
        let is_extra = |key: &str| {
            let section = key
                .strip_prefix(&format!("{ENV_PREFIX}__"))
                .and_then(|rest| rest.split("__").next())
                .unwrap_or("")
                .to_ascii_lowercase();
            extra.contains(&section.as_str())
        };
        let env_mine: BTreeMap<String, String> = env
            .iter()
            .filter(|(k, _)| !is_extra(k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let env_theirs: BTreeMap<String, String> = env
            .iter()
            .filter(|(k, _)| is_extra(k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let settings: Settings = load_layers(Some(BUILTIN_AGENTS_TOML), &mine, &env_mine, LIST_KEYS)?;
        settings.validate()?;
        let x: X = load_layers(None, &theirs, &env_theirs, &[])?;
        Ok((settings, x))
    }

    /// Checks the rules that the schema alone cannot express.
    pub fn validate(&self) -> Result<(), SettingsError> {
        let bad = |m: String| Err(SettingsError::Invalid(m));
        if self.windows.time_zone.parse::<chrono_tz::Tz>().is_err() {
            return bad(format!(
                "windows.time_zone: unknown time zone {:?}; use an IANA name such as \"UTC\" or \"Europe/Berlin\"",
                self.windows.time_zone
            ));
        }
        for (i, w) in self.windows.allowed.iter().enumerate() {
            if w.start >= w.end {
                return bad(format!(
                    "windows.allowed[{i}]: start {} is not before end {}",
                    w.start, w.end
                ));
            }
        }
        for (i, f) in self.windows.freezes.iter().enumerate() {
            if f.start >= f.end {
                return bad(format!("windows.freezes[{i}] ({}): start is not before end", f.name));
            }
        }
        let steps = &self.strategies.canary.steps;
        if steps.is_empty() || steps.last() != Some(&100) || steps.windows(2).any(|w| w[0] >= w[1]) || steps[0] == 0 {
            return bad(format!(
                "strategies.canary.steps: {steps:?} must be increasing percentages between 1 and 100 ending at 100"
            ));
        }
        let durations = [
            (
                "monitoring.sample_interval_minutes",
                self.monitoring.sample_interval_minutes,
            ),
            (
                "strategies.canary.analysis_minutes",
                self.strategies.canary.analysis_minutes,
            ),
            (
                "agents.manager.approval_timeout_minutes",
                self.agents.manager.approval_timeout_minutes,
            ),
            (
                "agents.security.approval_timeout_minutes",
                self.agents.security.approval_timeout_minutes,
            ),
            (
                "agents.devops.approval_timeout_minutes",
                self.agents.devops.approval_timeout_minutes,
            ),
            (
                "agents.qa.approval_timeout_minutes",
                self.agents.qa.approval_timeout_minutes,
            ),
        ];
        if let Some((name, v)) = durations
            .iter()
            .find(|(_, v)| !v.is_finite() || *v < MIN_MINUTES || *v > MAX_MINUTES)
        {
            return bad(format!(
                "{name}: {v} must be a number of minutes of at least {MIN_MINUTES} and at most {MAX_MINUTES} (fractions such as 0.25 = 15 s are allowed)"
            ));
        }
        for (i, c) in self.monitoring.checkpoints.iter().enumerate() {
            if !c.minute.is_finite() || c.minute < 0.0 || c.minute > MAX_MINUTES {
                return bad(format!(
                    "monitoring.checkpoints[{i}].minute: {} must be a non-negative number of minutes of at most {MAX_MINUTES}",
                    c.minute
                ));
            }
        }
        if self.windows.end_of_month_days > 31 {
            return bad(format!(
                "windows.end_of_month_days: {} must be a number of days between 0 and 31",
                self.windows.end_of_month_days
            ));
        }
        if self.strategies.blue_green.pre_switch_health_checks > MAX_HEALTH_CHECKS {
            return bad(format!(
                "strategies.blue_green.pre_switch_health_checks: {} must be at most {MAX_HEALTH_CHECKS}",
                self.strategies.blue_green.pre_switch_health_checks
            ));
        }
        if self.monitoring.breaches_to_rollback == 0 || self.monitoring.inconclusive_escalate_after == 0 {
            return bad(
                "monitoring.breaches_to_rollback and monitoring.inconclusive_escalate_after must be at least 1".into(),
            );
        }
        if self.strategies.rolling.batch_size == 0 {
            return bad("strategies.rolling.batch_size: must be at least 1".into());
        }
        let t = &self.thresholds;
        let values = [
            ("error_rate_investigate", t.error_rate_investigate),
            ("error_rate_rollback", t.error_rate_rollback),
            ("latency_p99_investigate_factor", t.latency_p99_investigate_factor),
            ("latency_p99_rollback_factor", t.latency_p99_rollback_factor),
            ("cpu_scale", t.cpu_scale),
            ("memory_scale", t.memory_scale),
        ];
        if let Some((name, v)) = values.iter().find(|(_, v)| !v.is_finite() || *v < 0.0) {
            return bad(format!("thresholds.{name}: {v} must be a non-negative number"));
        }
        if t.error_rate_investigate > t.error_rate_rollback
            || t.latency_p99_investigate_factor > t.latency_p99_rollback_factor
        {
            return bad("thresholds: an investigate threshold must not exceed its rollback threshold".into());
        }
        if self.escalation.repeated_failures == 0 {
            return bad("escalation.repeated_failures: must be at least 1".into());
        }
        for t in DeploymentType::ALL {
            let p = self.types.get(*t);
            let name = t.as_str();
            if p.approvers.is_empty() {
                return bad(format!("types.{name}.approvers: at least one role must approve"));
            }
            if !p.stages.contains(&Stage::Approve) {
                return bad(format!("types.{name}.stages: must include \"approve\""));
            }
            let order = |s: &Stage| Stage::ALL.iter().position(|x| x == s).unwrap_or(0);
            if p.stages.windows(2).any(|w| order(&w[0]) >= order(&w[1])) {
                return bad(format!("types.{name}.stages: {:?} must follow the workflow order prepare, staging, validate, approve, deploy, monitor, rollback", p.stages));
            }
            let deploys = p.stages.contains(&Stage::Deploy);
            let rolls_back = p.stages.contains(&Stage::Rollback);
            if deploys == rolls_back {
                return bad(format!(
                    "types.{name}.stages: must contain exactly one of \"deploy\" or \"rollback\""
                ));
            }
            if !p.monitoring_minutes.is_finite() || p.monitoring_minutes < 0.0 || p.monitoring_minutes > MAX_MINUTES {
                return bad(format!(
                    "types.{name}.monitoring_minutes: {} must be a non-negative number of minutes of at most {MAX_MINUTES}",
                    p.monitoring_minutes
                ));
            }
            if p.stages.contains(&Stage::Monitor) && p.monitoring_minutes < MIN_MINUTES {
                return bad(format!(
                    "types.{name}.monitoring_minutes: must be at least {MIN_MINUTES} when the type runs \"monitor\""
                ));
            }
        }
        Ok(())
    }

    pub fn time_zone(&self) -> chrono_tz::Tz {
        self.windows.time_zone.parse().unwrap_or(chrono_tz::UTC)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_of_array_elements_get_their_dot() {
        assert_eq!(
            tidy_key("bad for key `windows.allowed[0]end`, and [1]x stays"),
            "bad for key `windows.allowed[0].end`, and [1]x stays"
        );
        assert_eq!(tidy_key("for key `a[0][1]`"), "for key `a[0][1]`");
    }

    #[test]
    fn builtin_carries_the_seed_rules() {
        let s = Settings::builtin();
        assert_eq!(s.types.standard.approvers, vec![Role::Manager]);
        assert_eq!(s.types.hotfix.approvers, vec![Role::Manager, Role::Security]);
        assert_eq!(s.types.rollback.approvers, vec![Role::Devops]);
        assert_eq!(s.types.hotfix.monitoring_minutes, 30.0);
        assert_eq!(s.types.standard.monitoring_minutes, 60.0);
        assert_eq!(s.strategies.canary.steps, vec![5, 25, 50, 100]);
        assert_eq!(s.thresholds.error_rate_investigate, 0.01);
        assert_eq!(s.thresholds.error_rate_rollback, 0.05);
        assert_eq!(s.thresholds.cpu_scale, 0.80);
        assert_eq!(s.monitoring.inconclusive_escalate_after, 4);
        assert_eq!(s.escalation.repeated_failures, 3);
        assert_eq!(s.rollback.on_irreversible_migration, IrreversiblePolicy::Freeze);
        let minutes: Vec<f64> = s.monitoring.checkpoints.iter().map(|c| c.minute).collect();
        assert_eq!(minutes, vec![5.0, 15.0, 30.0, 60.0]);
        assert_eq!(s.qa.critical_suites, vec!["unit", "smoke"]);
    }

    #[test]
    fn layers_and_environment_override_in_order() {
        let layer = Layer {
            name: "custom.toml",
            toml: "[thresholds]\nerror_rate_rollback = 0.04\n[strategies.canary]\nsteps = [10, 100]\n",
        };
        let mut env = BTreeMap::new();
        env.insert(
            "STAGECOACH__THRESHOLDS__ERROR_RATE_ROLLBACK".to_string(),
            "0.03".to_string(),
        );
        env.insert("HOME".to_string(), "/root".to_string());
        let s = Settings::load(std::slice::from_ref(&layer), &env).unwrap();
        assert_eq!(s.thresholds.error_rate_rollback, 0.03);
        assert_eq!(s.strategies.canary.steps, vec![10, 100]);
        let s = Settings::load(&[layer], &BTreeMap::new()).unwrap();
        assert_eq!(s.thresholds.error_rate_rollback, 0.04);
    }

    #[test]
    fn environment_overrides_strings_enums_and_lists() {
        let mut env = BTreeMap::new();
        env.insert(
            "STAGECOACH__WINDOWS__TIME_ZONE".to_string(),
            "Europe/Berlin".to_string(),
        );
        env.insert("STAGECOACH__DEFAULTS__STRATEGY".to_string(), "rolling".to_string());
        env.insert(
            "STAGECOACH__STRATEGIES__CANARY__STEPS".to_string(),
            "10,50,100".to_string(),
        );
        env.insert("STAGECOACH__WINDOWS__NEVER_DAYS".to_string(), "fri,mon".to_string());
        let s = Settings::load(&[], &env).unwrap();
        assert_eq!(s.windows.time_zone, "Europe/Berlin");
        assert_eq!(s.defaults.strategy, Strategy::Rolling);
        assert_eq!(s.strategies.canary.steps, vec![10, 50, 100]);
        assert_eq!(s.windows.never_days, vec![Day::Fri, Day::Mon]);
    }

    #[test]
    fn errors_name_the_source_and_field() {
        let err = Settings::load(
            &[Layer {
                name: "my.toml",
                toml: "[thresholds\n",
            }],
            &BTreeMap::new(),
        )
        .unwrap_err();
        assert!(err.to_string().starts_with("my.toml:"), "{err}");
        let err = Settings::load(
            &[Layer {
                name: "my.toml",
                toml: "[windows]\ntime_zone = \"Mars/Base\"\n",
            }],
            &BTreeMap::new(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("windows.time_zone"), "{err}");
        let err = Settings::load(
            &[Layer {
                name: "my.toml",
                toml: "[strategies.canary]\nsteps = [50, 25, 100]\n",
            }],
            &BTreeMap::new(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("strategies.canary.steps"), "{err}");
        let err = Settings::load(
            &[Layer {
                name: "my.toml",
                toml: "[thresholds]\nerror_rate_rollbak = 0.1\n",
            }],
            &BTreeMap::new(),
        )
        .unwrap_err();
        assert!(
            err.to_string().starts_with("my.toml:") && err.to_string().contains("error_rate_rollbak"),
            "{err}"
        );
        let err = Settings::load(
            &[Layer {
                name: "my.toml",
                toml: "[thresholds]\nerror_rate_rollback = \"high\"\n",
            }],
            &BTreeMap::new(),
        )
        .unwrap_err();
        assert!(
            err.to_string().starts_with("my.toml:") && err.to_string().contains("error_rate_rollback"),
            "{err}"
        );
    }
}
