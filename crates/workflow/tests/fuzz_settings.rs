//! Hostile `agents.toml` layers and `STAGECOACH__…` environment overrides for `Settings::load`.
//!
//! Generators: the bundled `agents.toml` with one value changed to a wrong type or an extreme
//! value (or deleted, or a key added), the bundled text mutated byte-wise, and environment maps of
//! real and misspelt keys with hostile values. Properties: nothing panics; every error names its
//! source (the layer, or the configuration with the environment); an error about a value names
//! its key; accepted settings are usable (durations fit the calendar, windows can be checked).
//!
//! `PROPTEST_CASES=10000 cargo test -p workflow --test fuzz_settings` runs more cases.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use proptest::prelude::*;
use proptest::test_runner::Config as ProptestConfig;
use toml::Value;

#[path = "../../../tests/support/toml_paths.rs"]
mod toml_paths;
use toml_paths::{at_path, paths, steps};
use workflow::settings::{minutes, Layer, Settings, BUILTIN_AGENTS_TOML, MAX_MINUTES};
use workflow::windows::Calendar;

fn config(cases: u32) -> ProptestConfig {
    let mut config = ProptestConfig::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = cases;
    }
    config.failure_persistence = None;
    config
}

fn load(text: &str, env: &BTreeMap<String, String>) -> Result<Settings, String> {
    Settings::load(
        &[Layer {
            name: "my.toml",
            toml: text,
        }],
        env,
    )
    .map_err(|e| e.to_string())
}

/// Accepted settings can be used: every duration lands inside the calendar, the windows can be
/// asked about any instant, and the bounded counts are bounded.
fn check_usable(s: &Settings) -> Result<(), TestCaseError> {
    let far: DateTime<Utc> = "9000-01-01T00:00:00Z".parse().expect("a date");
    let durations = [
        s.monitoring.sample_interval_minutes,
        s.strategies.canary.analysis_minutes,
        s.agents.manager.approval_timeout_minutes,
        s.agents.security.approval_timeout_minutes,
        s.agents.devops.approval_timeout_minutes,
        s.agents.qa.approval_timeout_minutes,
        s.types.standard.monitoring_minutes,
        s.types.hotfix.monitoring_minutes,
        s.types.rollback.monitoring_minutes,
        s.types.scheduled.monitoring_minutes,
    ]
    .into_iter()
    .chain(s.monitoring.checkpoints.iter().map(|c| c.minute));
    for m in durations {
        prop_assert!(
            m.is_finite() && (0.0..=MAX_MINUTES).contains(&m),
            "{m} minutes accepted"
        );
        prop_assert!(far.checked_add_signed(minutes(m)).is_some());
    }
    let calendar = Calendar::new(&s.windows);
    for at in ["2026-12-31T23:30:00Z", "2027-02-28T12:00:00Z", "2026-12-04T10:00:00Z"] {
        let _ = calendar.check(at.parse().expect("a date"));
    }
    prop_assert!(s.strategies.blue_green.pre_switch_health_checks <= workflow::settings::MAX_HEALTH_CHECKS);
    Ok(())
}

// ---- structure-aware edits of the bundled agents.toml -----------------------------------------

fn wrong_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Boolean(false)),
        Just(Value::Integer(-1)),
        Just(Value::Integer(0)),
        Just(Value::Integer(1)),
        Just(Value::Integer(101)),
        Just(Value::Integer(256)),
        Just(Value::Integer(i64::MAX)),
        Just(Value::Integer(u32::MAX as i64)),
        Just(Value::Integer(u32::MAX as i64 + 1)),
        Just(Value::Float(f64::NAN)),
        Just(Value::Float(f64::INFINITY)),
        Just(Value::Float(-f64::INFINITY)),
        Just(Value::Float(1e300)),
        Just(Value::Float(1e-300)),
        Just(Value::Float(-0.0)),
        Just(Value::String(String::new())),
        Just(Value::String("25:61".into())),
        Just(Value::String("24:00".into())),
        Just(Value::String("../../etc/passwd".into())),
        Just(Value::String("$(id)".into())),
        Just(Value::String("\u{0}\n".into())),
        Just(Value::String("Mars/Base".into())),
        Just(Value::Datetime("1979-05-27T07:32:00Z".parse().expect("datetime"))),
        Just(Value::Array(vec![])),
        Just(Value::Array(vec![Value::Integer(100), Value::Integer(5)])),
        Just(Value::Array(vec![Value::String("fri".into()), Value::Integer(1)])),
        Just(Value::Table(toml::Table::new())),
        "\\PC{0,12}".prop_map(Value::String),
    ]
}

#[derive(Debug, Clone)]
enum TomlEdit {
    Replace(usize, Value),
    Remove(usize),
    AddUnknown(usize),
}

fn toml_edit() -> impl Strategy<Value = TomlEdit> {
    prop_oneof![
        5 => (any::<usize>(), wrong_value()).prop_map(|(i, v)| TomlEdit::Replace(i, v)),
        1 => any::<usize>().prop_map(TomlEdit::Remove),
        1 => any::<usize>().prop_map(TomlEdit::AddUnknown),
    ]
}

/// A layer: the bundled file with one edit; returns its text and the key path edited.
fn apply(edit: &TomlEdit) -> Option<(String, String)> {
    let mut root = Value::Table(
        BUILTIN_AGENTS_TOML
            .parse::<toml::Table>()
            .expect("bundled file is TOML"),
    );
    let mut all = Vec::new();
    paths(&root, "", &mut all);
    let pick = |i: usize| all[i % all.len()].clone();
    let path = match edit {
        TomlEdit::Replace(i, new) => {
            let path = pick(*i);
            *at_path(&mut root, &path)? = new.clone();
            path
        }
        TomlEdit::Remove(i) | TomlEdit::AddUnknown(i) => {
            let path = pick(*i);
            let steps = steps(&path);
            let (last, parent) = steps.split_last()?;
            let parent_path = parent.join(".").replace(".[", "[");
            let parent_value = if parent_path.is_empty() {
                &mut root
            } else {
                at_path(&mut root, &parent_path)?
            };
            match (edit, parent_value, last.strip_prefix('[')) {
                (TomlEdit::Remove(_), Value::Array(items), Some(index)) => {
                    items.remove(index.trim_end_matches(']').parse::<usize>().ok()?);
                }
                (TomlEdit::Remove(_), Value::Table(map), None) => {
                    map.remove(last.as_str());
                }
                (TomlEdit::AddUnknown(_), Value::Table(map), None) => {
                    map.insert("colour".into(), Value::String("red".into()));
                    return Some((toml::to_string(&root).ok()?, format!("{parent_path}.colour")));
                }
                _ => return None,
            }
            parent_path
        }
    };
    Some((toml::to_string(&root).ok()?, path))
}

/// Names used in the message for a key path: `windows.allowed[0].start` may be reported as
/// itself, as `windows.allowed[0]`, as `windows.allowed` or by its last key `start`.
fn names_for(path: &str) -> Vec<String> {
    let mut out = vec![];
    let mut acc = String::new();
    for step in steps(path) {
        if !acc.is_empty() && !step.starts_with('[') {
            acc.push('.');
        }
        acc.push_str(&step);
        out.push(acc.clone());
        if !step.starts_with('[') {
            out.push(format!("`{step}`"));
            out.push(format!("\"{step}\""));
        }
    }
    out
}

// ---- byte-wise mutations ---------------------------------------------------------------------

#[derive(Debug, Clone)]
enum Edit {
    Truncate(usize),
    FlipByte(usize, u8),
    Insert(usize, &'static str),
    Duplicate(usize, usize),
}

const NASTY: &[&str] = &[
    "\"",
    "[",
    "]]",
    "=",
    "\n",
    "\u{0}",
    "nan",
    "1e999",
    "[types.standard]\n",
    "{",
    "é",
    "'''",
];

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        any::<usize>().prop_map(Edit::Truncate),
        (any::<usize>(), any::<u8>()).prop_map(|(at, b)| Edit::FlipByte(at, b)),
        (any::<usize>(), proptest::sample::select(NASTY)).prop_map(|(at, s)| Edit::Insert(at, s)),
        (any::<usize>(), 0..200usize).prop_map(|(at, n)| Edit::Duplicate(at, n)),
    ]
}

fn mutate(text: &str, edits: &[Edit]) -> String {
    let mut bytes = text.as_bytes().to_vec();
    for e in edits {
        match *e {
            Edit::Truncate(at) => bytes.truncate(at % (bytes.len() + 1)),
            Edit::FlipByte(at, b) => {
                let i = at % bytes.len().max(1);
                if let Some(byte) = bytes.get_mut(i) {
                    *byte ^= b;
                }
            }
            Edit::Insert(at, s) => {
                let i = at % (bytes.len() + 1);
                bytes.splice(i..i, s.bytes());
            }
            Edit::Duplicate(at, n) => {
                let i = at % (bytes.len() + 1);
                let end = (i + n).min(bytes.len());
                let copy = bytes[i..end].to_vec();
                bytes.splice(end..end, copy);
            }
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

// ---- environment -----------------------------------------------------------------------------

const ENV_KEYS: &[&str] = &[
    "STAGECOACH__THRESHOLDS__ERROR_RATE_ROLLBACK",
    "STAGECOACH__THRESHOLDS__CPU_SCALE",
    "STAGECOACH__WINDOWS__TIME_ZONE",
    "STAGECOACH__WINDOWS__NEVER_DAYS",
    "STAGECOACH__WINDOWS__HOLIDAYS",
    "STAGECOACH__WINDOWS__END_OF_MONTH_DAYS",
    "STAGECOACH__STRATEGIES__CANARY__STEPS",
    "STAGECOACH__STRATEGIES__CANARY__ANALYSIS_MINUTES",
    "STAGECOACH__STRATEGIES__BLUE_GREEN__PRE_SWITCH_HEALTH_CHECKS",
    "STAGECOACH__AGENTS__MANAGER__MODE",
    "STAGECOACH__AGENTS__QA__APPROVAL_TIMEOUT_MINUTES",
    "STAGECOACH__TYPES__HOTFIX__STAGES",
    "STAGECOACH__TYPES__HOTFIX__APPROVERS",
    "STAGECOACH__TYPES__STANDARD__MONITORING_MINUTES",
    "STAGECOACH__DEFAULTS__STRATEGY",
    "STAGECOACH__MONITORING__CHECKPOINTS",
    "STAGECOACH__CHECKLIST__REQUIRED",
    "STAGECOACH__NOTIFICATIONS__CONTACT",
    "STAGECOACH__THRESHOLDS__ERROR_RATE_ROLLBAK",
    "STAGECOACH__NOSUCH",
    "STAGECOACH__",
    "STAGECOACH____",
    "STAGECOACH__THRESHOLDS",
    "STAGECOACH__THRESHOLDS__CPU_SCALE__X",
    "stagecoach__thresholds__cpu_scale",
    "HOME",
];

fn env_value() -> impl Strategy<Value = String> {
    prop_oneof![
        proptest::sample::select(
            &[
                "",
                "0",
                "-1",
                "1e300",
                "NaN",
                "inf",
                "-inf",
                "0.5",
                "100",
                "4294967296",
                "true",
                "rolling",
                "human",
                "fri,mon",
                "10,50,100",
                "100,5",
                ",,,",
                "approve",
                "Europe/Berlin",
                "../../etc",
                "$(id)",
                "a\nb",
                "2026-12-24",
                "24:00",
                "[1,2]",
                "{a=1}",
            ][..]
        )
        .prop_map(str::to_owned),
        "\\PC{0,12}",
    ]
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn wrong_values_are_named_by_key(edit in toml_edit()) {
        let Some((text, edited)) = apply(&edit) else { return Ok(()) };
        match load(&text, &BTreeMap::new()) {
            Ok(s) => check_usable(&s)?,
            Err(message) => {
                prop_assert!(
                    message.starts_with("my.toml: ") || message.starts_with("configuration: "),
                    "error names no source: {message}"
                );
                let names = names_for(&edited);
                // A rule across keys names their common table (`thresholds:`) or both keys.
                prop_assert!(
                    names.iter().any(|n| message.contains(n.as_str())),
                    "edited {edited}, error: {message}"
                );
            }
        }
    }

    #[test]
    fn mutated_text_never_panics(edits in proptest::collection::vec(edit(), 1..5)) {
        let text = mutate(BUILTIN_AGENTS_TOML, &edits);
        match load(&text, &BTreeMap::new()) {
            Ok(s) => check_usable(&s)?,
            Err(message) => prop_assert!(
                message.starts_with("my.toml: ") || message.starts_with("configuration: "),
                "error names no source: {message}"
            ),
        }
    }

    #[test]
    fn environment_overrides_never_panic(
        env in proptest::collection::btree_map(proptest::sample::select(ENV_KEYS).prop_map(str::to_owned), env_value(), 0..4),
    ) {
        match Settings::load(&[], &env) {
            Ok(s) => check_usable(&s)?,
            Err(e) => {
                let message = e.to_string();
                prop_assert!(
                    message.starts_with("configuration (with STAGECOACH__ environment overrides): ")
                        || message.starts_with("configuration: "),
                    "error names no source: {message}"
                );
            }
        }
    }
}

// ---- fixed corpus ----------------------------------------------------------------------------

#[test]
fn nasty_layers_corpus() {
    let deep = format!("[qa]\ncritical_suites = {}{}\n", "[".repeat(5_000), "]".repeat(5_000));
    let many = format!("[qa]\ncritical_suites = [{}]\n", vec!["\"unit\""; 100_000].join(","));
    let cases: Vec<(String, &str)> = vec![
        (
            "[agents.qa]\napproval_timeout_minutes = 1e300\n".into(),
            "agents.qa.approval_timeout_minutes",
        ),
        (
            "[agents.qa]\napproval_timeout_minutes = nan\n".into(),
            "agents.qa.approval_timeout_minutes",
        ),
        (
            "[types.standard]\nmonitoring_minutes = 1e12\n".into(),
            "types.standard.monitoring_minutes",
        ),
        (
            "[types.standard]\nmonitoring_minutes = inf\n".into(),
            "types.standard.monitoring_minutes",
        ),
        (
            "[monitoring]\ncheckpoints = [{ minute = 1e300, check = \"error_rate\" }]\n".into(),
            "monitoring.checkpoints[0].minute",
        ),
        (
            "[windows]\nend_of_month_days = 4294967295\n".into(),
            "windows.end_of_month_days",
        ),
        (
            "[windows]\nend_of_month_days = 32\n".into(),
            "windows.end_of_month_days",
        ),
        ("[windows]\nend_of_month_days = -1\n".into(), "end_of_month_days"),
        (
            "[strategies.blue_green]\npre_switch_health_checks = 4294967295\n".into(),
            "strategies.blue_green.pre_switch_health_checks",
        ),
        ("[strategies.canary]\nsteps = [5, 300]\n".into(), "steps"),
        ("[strategies.canary]\nsteps = []\n".into(), "strategies.canary.steps"),
        (
            "[windows]\ntime_zone = \"../../etc/localtime\"\n".into(),
            "windows.time_zone",
        ),
        (
            "[[windows.allowed]]\ndays = [\"mon\"]\nstart = \"25:00\"\nend = \"26:00\"\n".into(),
            "is not HH:MM (24-hour clock; \"24:00\" ends the day) for key `windows.allowed[0].",
        ),
        (
            "[thresholds]\nerror_rate_rollback = \"high\"\n".into(),
            "error_rate_rollback",
        ),
        (
            "[thresholds]\nerror_rate_rollback = -0.0\nerror_rate_investigate = 0.0\n".into(),
            "",
        ),
        ("[thresholds\n".into(), "my.toml"),
        ("\u{0}".into(), "my.toml"),
        (deep, "my.toml"),
        (many, ""),
    ];
    for (text, expected) in &cases {
        match load(text, &BTreeMap::new()) {
            Ok(_) => assert!(expected.is_empty(), "{:.60}: accepted, expected {expected:?}", text),
            Err(message) => {
                assert!(!expected.is_empty(), "{:.60}: {message}", text);
                assert!(
                    message.contains(expected),
                    "{:.60}: {message}, expected {expected:?}",
                    text
                );
            }
        }
    }
}
