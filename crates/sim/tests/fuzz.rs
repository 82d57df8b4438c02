//! Hostile scenario files: `Scenario::parse` and the `[config]` layer it hands to the settings.
//!
//! The generators start from every scenario of tests/scenarios and either mutate the text
//! (truncation, byte flips, spliced fragments, deleted or duplicated spans) or change one value
//! of the parsed document (a wrong type, an extreme number, NaN/inf, a hostile string, a deleted
//! key) and write it back as TOML. Properties: nothing panics; every error starts with the file
//! name; an error about a document that is valid TOML names the changed key or one above it.
//!
//! `PROPTEST_CASES=10000 cargo test -p sim --test fuzz` runs more cases.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::OnceLock;

use proptest::prelude::*;
use proptest::test_runner::Config as ProptestConfig;
use sim::scenario::Scenario;
use toml::Value;

#[path = "../../../tests/support/toml_paths.rs"]
mod toml_paths;
use toml_paths::{at_path, paths, steps};

fn config(cases: u32) -> ProptestConfig {
    let mut config = ProptestConfig::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = cases;
    }
    config.failure_persistence = None;
    config
}

/// Every scenario of tests/scenarios (the seed corpus), read once.
fn corpus() -> &'static [String] {
    static CORPUS: OnceLock<Vec<String>> = OnceLock::new();
    CORPUS.get_or_init(|| {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/scenarios");
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.expect("dir entry").path())
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect();
        files.sort();
        let texts: Vec<String> = files
            .iter()
            .map(|p| std::fs::read_to_string(p).expect("readable"))
            .collect();
        assert!(texts.len() >= 10, "the scenario corpus is missing");
        texts
    })
}

fn seed() -> impl Strategy<Value = &'static str> {
    (0..corpus().len()).prop_map(|i| corpus()[i].as_str())
}

const NASTY: &[&str] = &[
    "\"",
    "'",
    "'''",
    "\"\"\"",
    "[",
    "]",
    "[[requests]]\n",
    "[world]\n",
    "[config.thresholds]\n",
    "=",
    "\n",
    "\r",
    "#",
    "\\",
    "\\u0000",
    "\\UFFFFFFFF",
    "\u{0}",
    "\u{1b}",
    "é",
    "𝄞",
    "\u{feff}",
    "nan",
    "-inf",
    "1e400",
    "99999999999999999999",
    "-9223372036854775808",
    "0x7fffffffffffffff",
    "9999-12-31T23:59:59Z",
    "0000-01-01T00:00:00Z",
    "1979-05-27T07:32:00-08:00",
    "{ a = 1 }",
    "[[[[[[[[",
    "../../etc/passwd",
    "$(id)",
    "`id`",
    "1.0;rm -rf /",
];

#[derive(Debug, Clone)]
enum Edit {
    Truncate(usize),
    FlipByte(usize, u8),
    Insert(usize, &'static str),
    Delete(usize, usize),
    Duplicate(usize, usize),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        any::<usize>().prop_map(Edit::Truncate),
        (any::<usize>(), any::<u8>()).prop_map(|(at, b)| Edit::FlipByte(at, b)),
        (any::<usize>(), proptest::sample::select(NASTY)).prop_map(|(at, s)| Edit::Insert(at, s)),
        (any::<usize>(), 0..64usize).prop_map(|(at, n)| Edit::Delete(at, n)),
        (any::<usize>(), 0..200usize).prop_map(|(at, n)| Edit::Duplicate(at, n)),
    ]
}

fn mutate(text: &str, edits: &[Edit]) -> String {
    let mut bytes = text.as_bytes().to_vec();
    for e in edits {
        match *e {
            Edit::Truncate(at) => bytes.truncate(at % (bytes.len() + 1)),
            Edit::FlipByte(at, b) => {
                if !bytes.is_empty() {
                    let i = at % bytes.len();
                    bytes[i] ^= b;
                }
            }
            Edit::Insert(at, s) => {
                let i = at % (bytes.len() + 1);
                bytes.splice(i..i, s.bytes());
            }
            Edit::Delete(at, n) => {
                let i = at % (bytes.len() + 1);
                let end = (i + n).min(bytes.len());
                bytes.drain(i..end);
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

/// A parse error starts with the file name, and a line it quotes is inside the text.
fn check_error(text: &str, message: &str) -> Result<(), TestCaseError> {
    prop_assert!(
        message.starts_with("s.toml: "),
        "error does not name the file: {message}"
    );
    prop_assert!(message.len() > "s.toml: ".len(), "empty error");
    if let Some((_, tail)) = message.rsplit_once("(line ") {
        if let Some(n) = tail.strip_suffix(')').and_then(|n| n.parse::<usize>().ok()) {
            prop_assert!(
                n >= 1 && n <= text.lines().count() + 1,
                "line {n} out of range: {message}"
            );
        }
    }
    Ok(())
}

/// Parses; on success also merges the `[config]` table into the settings, which must not panic
/// either and must name the scenario's `[config]` layer (or the merged configuration) on error.
fn parse_and_load(text: &str) -> Result<Option<Scenario>, TestCaseError> {
    match Scenario::parse("s.toml", text) {
        Ok(scenario) => {
            if let Err(e) = sim::settings_for(None, "s.toml", &scenario, &BTreeMap::new()) {
                let shown = e.to_string();
                prop_assert!(
                    shown.starts_with("s.toml [config]: ") || shown.starts_with("configuration"),
                    "settings error names no source: {shown}"
                );
            }
            Ok(Some(scenario))
        }
        Err(e) => {
            check_error(text, &e.to_string())?;
            Ok(None)
        }
    }
}

// ---- structure-aware edits ---------------------------------------------------------------------

/// Paths to every value, written as serde_path_to_error writes them (`requests[0].version`).
fn wrong_value() -> impl Strategy<Value = Value> {
    let datetime = |s: &str| Value::Datetime(s.parse().expect("a TOML datetime"));
    prop_oneof![
        Just(Value::Boolean(true)),
        Just(Value::Integer(-1)),
        Just(Value::Integer(0)),
        Just(Value::Integer(i64::MAX)),
        Just(Value::Integer(i64::MIN)),
        Just(Value::Integer(u32::MAX as i64 + 1)),
        Just(Value::Float(f64::NAN)),
        Just(Value::Float(f64::INFINITY)),
        Just(Value::Float(f64::NEG_INFINITY)),
        Just(Value::Float(1e300)),
        Just(Value::Float(-0.5)),
        Just(Value::String(String::new())),
        Just(Value::String("../../etc/passwd".into())),
        Just(Value::String("1.0;rm -rf /".into())),
        Just(Value::String("$(id)".into())),
        Just(Value::String("a\nb\u{0}\u{1b}[2J".into())),
        Just(Value::String("x".repeat(10_000))),
        Just(datetime("9999-12-31T23:59:59Z")),
        Just(datetime("1970-01-01")),
        Just(datetime("07:32:00")),
        Just(Value::Array(vec![])),
        Just(Value::Array(vec![Value::Integer(1), Value::String("a".into())])),
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
        4 => (any::<usize>(), wrong_value()).prop_map(|(i, v)| TomlEdit::Replace(i, v)),
        1 => any::<usize>().prop_map(TomlEdit::Remove),
        1 => any::<usize>().prop_map(TomlEdit::AddUnknown),
    ]
}

/// Applies `edit` to the parsed document; returns the new text and the edited path (`None` when
/// the document has nothing to edit or the edit cannot be written back as TOML).
fn apply(text: &str, edit: &TomlEdit) -> Option<(String, String)> {
    let mut root = Value::Table(text.parse::<toml::Table>().expect("corpus is TOML"));
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
                }
                _ => return None,
            }
            parent_path
        }
    };
    let Value::Table(table) = root else { unreachable!() };
    Some((toml::to_string(&table).ok()?, path))
}

proptest! {
    #![proptest_config(config(1000))]

    #[test]
    fn arbitrary_text_never_panics(text in "\\PC{0,300}") {
        parse_and_load(&text)?;
    }

    #[test]
    fn mutated_scenarios_never_panic(text in seed(), edits in proptest::collection::vec(edit(), 1..6)) {
        let text = mutate(text, &edits);
        parse_and_load(&text)?;
    }

    #[test]
    fn wrong_values_are_named_by_path(text in seed(), edit in toml_edit()) {
        let Some((text, edited)) = apply(text, &edit) else { return Ok(()) };
        if let Some(scenario) = parse_and_load(&text)? {
            // Accepted: the numbers the simulator reads are usable.
            for m in &scenario.world.metrics {
                for v in [m.error_rate, m.cpu, m.memory].into_iter().flatten() {
                    prop_assert!((0.0..=1.0).contains(&v), "fraction {v} accepted");
                }
                if let Some(v) = m.latency_p99_ms {
                    prop_assert!(v.is_finite() && v >= 0.0, "latency {v} accepted");
                }
            }
            let b = scenario.world.baseline;
            prop_assert!([b.error_rate, b.cpu, b.memory].iter().all(|v| (0.0..=1.0).contains(v)), "baseline {b:?} accepted");
            prop_assert!(b.latency_p99_ms.is_finite() && b.latency_p99_ms >= 0.0, "baseline {b:?} accepted");
            prop_assert!(scenario.world.instances >= 1 && scenario.world.instances <= sim::scenario::MAX_INSTANCES);
            return Ok(());
        }
        let message = Scenario::parse("s.toml", &text).unwrap_err().message;
        // The error names the edited key, a key above it, or (for a value that breaks a rule
        // across keys) a key of the same request, decision or metrics entry.
        let named = steps(&edited)
            .iter()
            .scan(String::new(), |acc, step| {
                if !acc.is_empty() && !step.starts_with('[') {
                    acc.push('.');
                }
                acc.push_str(step);
                Some(acc.clone())
            })
            .any(|prefix| message.contains(&prefix));
        let top = steps(&edited).first().cloned().unwrap_or_default();
        let whole = message.starts_with("missing field") || message.starts_with("requests: at least one");
        prop_assert!(named || whole || message.contains(&format!("\"{top}\"")) , "edited {edited}: {message}");
    }
}

// ---- fixed corpus ----------------------------------------------------------------------------

const MINIMAL: &str = "start = \"2026-12-01T10:05:00Z\"\n[[requests]]\nservice = \"checkout\"\nversion = \"2.4.1\"\ntype = \"standard\"\nsubmitted_by = \"dana\"\n";

#[test]
fn nasty_scenarios_corpus() {
    let with = |extra: &str| format!("{MINIMAL}{extra}");
    let deep_array = format!("{MINIMAL}[config]\nx = {}{}\n", "[".repeat(10_000), "]".repeat(10_000));
    let deep_inline = format!(
        "{MINIMAL}[config]\nx = {}1{}\n",
        "{a=".repeat(10_000),
        "}".repeat(10_000)
    );
    let long_name = MINIMAL.replace("checkout", &"a".repeat(65));
    let long_version = MINIMAL.replace("2.4.1", &"1".repeat(129));
    let cases: Vec<(String, &str)> = vec![
        (String::new(), "missing field \"start\""),
        ("\u{feff}".into(), "missing field \"start\""),
        ("start = \"2026-12-01T10:05:00Z\"\nrequests = []\n".into(), "requests: at least one"),
        (MINIMAL.replace("2.4.1", "../../etc/passwd"), "requests[0].version"),
        (MINIMAL.replace("2.4.1", "1.0;rm -rf /"), "requests[0].version"),
        (MINIMAL.replace("2.4.1", "$(id)"), "requests[0].version"),
        (MINIMAL.replace("2.4.1", "`id`"), "requests[0].version"),
        (MINIMAL.replace("\"2.4.1\"", "\"1.0\\nX=1\""), "requests[0].version"),
        (MINIMAL.replace("checkout", "web/../../x"), "requests[0].service"),
        (long_name, "requests[0].service"),
        (long_version, "requests[0].version"),
        (MINIMAL.replace("\"dana\"", "\"  \""), "requests[0].submitted_by"),
        (with("at_minute = -1\n"), "requests[0].at_minute"),
        (with("at_minute = 99999999999\n"), "requests[0].at_minute"),
        (with("at_minute = nan\n"), "requests[0].at_minute"),
        (with("[world]\ninstances = 0\n"), "world.instances"),
        (with("[world]\ninstances = 4000000000\n"), "world.instances"),
        (with("[world.baseline]\nerror_rate = nan\nlatency_p99_ms = 1\ncpu = 0.1\nmemory = 0.1\n"), "world.baseline.error_rate"),
        (with("[world.baseline]\nerror_rate = 0.1\nlatency_p99_ms = inf\ncpu = 0.1\nmemory = 0.1\n"), "world.baseline.latency_p99_ms"),
        (with("[[world.metrics]]\nminute = 1\ncpu = nan\n"), "world.metrics[0].cpu"),
        (with("[[world.metrics]]\nminute = 1\nlatency_p99_ms = -5.0\n"), "world.metrics[0].latency_p99_ms"),
        (with("[[world.metrics]]\nminute = 1\nlatency_p99_ms = nan\n"), "world.metrics[0].latency_p99_ms"),
        (with("[[decisions]]\nrole = \"manager\"\ndecision = \"approve\"\nby = \"x\"\nrequest = 18446744073709551615\n"), "(line 11, key request)"),
        (with("[[requests]]\n"), "requests[1]"),
        (with("[world]\n[world]\n"), "duplicate"),
        (deep_array, "recursion limit exceeded (line 8, key x)"),
        (deep_inline, "recursion limit exceeded"),
        (with("[config]\nthresholds = 5\n"), ""),
    ];
    for (text, expected) in &cases {
        match Scenario::parse("s.toml", text) {
            Ok(scenario) => {
                if let Err(e) = sim::settings_for(None, "s.toml", &scenario, &BTreeMap::new()) {
                    assert!(expected.is_empty() || e.to_string().contains(expected), "{e}");
                    continue;
                }
                assert!(expected.is_empty(), "{:.60}: accepted, expected {expected:?}", text)
            }
            Err(e) => {
                let shown = e.to_string();
                assert!(shown.starts_with("s.toml: "), "{shown}");
                assert!(!expected.is_empty(), "{:.60}: {shown}", text);
                assert!(shown.contains(expected), "{:.60}: {shown}, expected {expected:?}", text);
            }
        }
    }
}
