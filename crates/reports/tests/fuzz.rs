//! Hostile input for every reader of this crate: JUnit XML, SARIF 2.1.0, `cargo audit --json`,
//! CVSS vectors and the format sniffing of `parse_scan`.
//!
//! Generators are structure-aware: they start from the real fixtures (tests/fixtures) and
//! truncate them, flip bytes, splice in nasty fragments, or change one JSON value to a wrong
//! type or delete it. Properties: nothing panics; every error names the report; a well-formed
//! document of the wrong shape is `Invalid` with the path of the offending value; memory stays
//! proportional to the input (no amplification).
//!
//! Cases per run default to a few hundred per property (seconds in a debug build);
//! `PROPTEST_CASES=10000 cargo test -p reports --test fuzz` runs more.

use proptest::prelude::*;
use proptest::test_runner::Config as ProptestConfig;
use reports::{parse_cargo_audit, parse_junit, parse_sarif, parse_scan, ReportError};
use serde_json::Value;

const NEXTEST: &str = include_str!("fixtures/nextest-junit.xml");
const PYTEST: &str = include_str!("fixtures/pytest-junit.xml");
const SEMGREP: &str = include_str!("fixtures/semgrep.sarif");
const AUDIT_SARIF: &str = include_str!("fixtures/cargo-audit.sarif");
const AUDIT: &str = include_str!("fixtures/cargo-audit.json");

/// `cases` per property unless `PROPTEST_CASES` says otherwise.
fn config(cases: u32) -> ProptestConfig {
    let mut config = ProptestConfig::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = cases;
    }
    config.failure_persistence = None;
    config
}

// ---- mutations of text -----------------------------------------------------------------------

/// Fragments that break parsers: markup, escapes, huge numbers, control characters, unicode.
const NASTY: &[&str] = &[
    "<",
    ">",
    "&",
    "&amp",
    "&#0;",
    "&#xD800;",
    "&#99999999999;",
    "&unknown;",
    "<![CDATA[",
    "]]>",
    "<!DOCTYPE x [<!ENTITY a \"aaaaaaaaaa\"><!ENTITY b \"&a;&a;&a;&a;&a;\">]>",
    "&b;",
    "<?xml version=\"1.1\"?>",
    "<testsuite tests=\"99999999999999999999\">",
    "<testsuite tests=\"-1\">",
    "<testcase>",
    "</testcase>",
    "<failure message=\"",
    "=\"x\" a=\"y\" a=\"z\"",
    "\"",
    "'",
    "{",
    "}",
    "[",
    "]",
    ",",
    ":",
    "null",
    "1e999999",
    "-0",
    "NaN",
    "Infinity",
    "18446744073709551616",
    "\"\\ud800\"",
    "\\u0000",
    "\u{0}",
    "\u{1b}[31m",
    "\r\n",
    "\u{feff}",
    "é",
    "𝄞",
    "\u{202e}",
    "../../etc/passwd",
    "$(id)",
    "`id`",
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
        (any::<usize>(), 0..64usize).prop_map(|(at, n)| Edit::Duplicate(at, n)),
    ]
}

/// Applies edits to the bytes of `text`; the result is made UTF-8 lossily (the parsers take `&str`).
fn mutate(text: &str, edits: &[Edit]) -> String {
    let mut bytes = text.as_bytes().to_vec();
    for e in edits {
        let len = bytes.len().max(1);
        match *e {
            Edit::Truncate(at) => bytes.truncate(at % len),
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
                let i = at % len.min(bytes.len() + 1);
                let end = (i + n).min(bytes.len());
                bytes.drain(i.min(end)..end);
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

/// Every error names the report and has a line inside the text (or one past its end).
fn check_error(name: &str, text: &str, err: &ReportError) -> Result<(), TestCaseError> {
    let shown = err.to_string();
    prop_assert!(shown.starts_with(name), "error does not name the report: {shown}");
    prop_assert_eq!(err.source_name(), name);
    if let Some(line) = err.line() {
        prop_assert!(
            line >= 1 && line <= text.lines().count() + 1,
            "line {line} out of range: {shown}"
        );
    }
    if let ReportError::Invalid { path, message, .. } = err {
        prop_assert!(
            !path.is_empty() && !message.is_empty(),
            "Invalid without path or message: {shown}"
        );
    }
    Ok(())
}

// ---- mutations of JSON values ----------------------------------------------------------------

/// One step into a JSON value.
#[derive(Debug, Clone)]
enum Seg {
    Key(String),
    Index(usize),
}

/// A path as serde_path_to_error writes it: `runs[0].tool` (keys may themselves hold dots).
fn show(path: &[Seg]) -> String {
    let mut out = String::new();
    for seg in path {
        match seg {
            Seg::Key(k) if out.is_empty() => out.push_str(k),
            Seg::Key(k) => {
                out.push('.');
                out.push_str(k);
            }
            Seg::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

/// Paths to every value of `v`.
fn paths(v: &Value, prefix: &[Seg], out: &mut Vec<Vec<Seg>>) {
    let mut push = |seg: Seg, child: &Value| {
        let mut p = prefix.to_vec();
        p.push(seg);
        out.push(p.clone());
        paths(child, &p, out);
    };
    match v {
        Value::Object(map) => map.iter().for_each(|(k, c)| push(Seg::Key(k.clone()), c)),
        Value::Array(items) => items.iter().enumerate().for_each(|(i, c)| push(Seg::Index(i), c)),
        _ => {}
    }
}

fn at_path<'a>(v: &'a mut Value, path: &[Seg]) -> Option<&'a mut Value> {
    let mut cur = v;
    for seg in path {
        cur = match seg {
            Seg::Index(i) => cur.get_mut(*i)?,
            Seg::Key(k) => cur.get_mut(k.as_str())?,
        };
    }
    Some(cur)
}

/// A value of a type that is wrong almost everywhere, or an extreme one.
fn wrong_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        Just(Value::Bool(true)),
        Just(serde_json::json!(-1)),
        Just(serde_json::json!(u64::MAX)),
        Just(serde_json::json!(i64::MIN)),
        Just(serde_json::json!(1e308)),
        Just(serde_json::json!("")),
        Just(serde_json::json!("\u{0}\u{1b}[2J")),
        Just(serde_json::json!("{0}{0}{0}{1}")),
        Just(serde_json::json!("CVSS:3.1/AV:X")),
        Just(serde_json::json!([])),
        Just(serde_json::json!([[[[[[]]]]]])),
        Just(serde_json::json!({})),
        Just(serde_json::json!({"text": 5})),
        "\\PC{0,16}".prop_map(Value::String),
    ]
}

#[derive(Debug, Clone)]
enum JsonEdit {
    Replace(usize, Value),
    Remove(usize),
}

fn json_edit() -> impl Strategy<Value = JsonEdit> {
    prop_oneof![
        3 => (any::<usize>(), wrong_value()).prop_map(|(i, v)| JsonEdit::Replace(i, v)),
        1 => any::<usize>().prop_map(JsonEdit::Remove),
    ]
}

/// Applies one edit to the document; returns it and the path edited.
fn apply(doc: &str, edit: &JsonEdit) -> (String, String) {
    let mut value: Value = serde_json::from_str(doc).expect("fixture is JSON");
    let mut all = Vec::new();
    paths(&value, &[], &mut all);
    let pick = |i: usize| all[i % all.len()].clone();
    let path = match edit {
        JsonEdit::Replace(i, new) => {
            let path = pick(*i);
            *at_path(&mut value, &path).expect("path exists") = new.clone();
            path
        }
        JsonEdit::Remove(i) => {
            let path = pick(*i);
            let (last, parent) = path.split_last().expect("non-empty path");
            match (at_path(&mut value, parent).expect("parent exists"), last) {
                (Value::Array(items), Seg::Index(i)) => {
                    items.remove(*i);
                }
                (Value::Object(map), Seg::Key(k)) => {
                    map.remove(k.as_str());
                }
                _ => unreachable!("paths() only yields object keys and array indexes"),
            }
            parent.to_vec()
        }
    };
    let shown = if path.is_empty() { ".".to_owned() } else { show(&path) };
    (value.to_string(), shown)
}

/// A structurally valid JSON document of the wrong shape fails with `Invalid` at the edited
/// value, above it or inside the new value, never elsewhere.
fn check_json_error(name: &str, text: &str, edited: &str, err: &ReportError) -> Result<(), TestCaseError> {
    check_error(name, text, err)?;
    match err {
        ReportError::Invalid { path, .. } => {
            // A missing field is reported at its parent, a bad value nested in the new value
            // below the edit: either way on the edited branch.
            let on_branch =
                |a: &str, b: &str| a == b || b.starts_with(&format!("{a}.")) || b.starts_with(&format!("{a}["));
            let points_at_edit = path == "." || on_branch(path, edited) || on_branch(edited, path);
            prop_assert!(points_at_edit, "edited {edited}, error at {path}: {err}");
        }
        other => prop_assert!(false, "well-formed JSON reported as {other}"),
    }
    Ok(())
}

/// Arbitrary JSON, nested a few levels.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| serde_json::json!(n)),
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        "\\PC{0,12}".prop_map(Value::String),
        proptest::sample::select(&["runs", "version", "2.1.0", "$schema", "vulnerabilities", "list", "tool"][..])
            .prop_map(|s| Value::String(s.to_owned())),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::btree_map(
                proptest::sample::select(
                    &[
                        "runs",
                        "version",
                        "$schema",
                        "tool",
                        "driver",
                        "name",
                        "results",
                        "vulnerabilities",
                        "list",
                        "advisory",
                        "package",
                        "id",
                        "cvss",
                        "warnings",
                        "message",
                        "text",
                        "x"
                    ][..]
                ),
                inner,
                0..6
            )
            .prop_map(|m| Value::Object(m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())),
        ]
    })
}

// ---- JUnit -----------------------------------------------------------------------------------

/// A JUnit document built from parts: suites with counts (numbers or junk), testcases with
/// outcomes, and names full of markup-significant characters (escaped as XML requires).
fn junit_doc() -> impl Strategy<Value = (String, Vec<String>)> {
    let count = prop_oneof![
        4 => (0u32..1000).prop_map(|n| n.to_string()),
        1 => prop_oneof![
            Just("".to_owned()),
            Just("-1".to_owned()),
            Just("4294967296".to_owned()),
            Just("1.5".to_owned()),
            Just(" 7 ".to_owned()),
            "\\PC{1,6}",
        ],
    ];
    let case = (
        "\\PC{0,10}",
        proptest::sample::select(
            &[
                "",
                "<failure message=\"m\"/>",
                "<error/>",
                "<skipped/>",
                "<failure>thread 'x' panicked at a.rs:1:1:\nboom</failure>",
            ][..],
        ),
    );
    let suite = (
        "\\PC{0,10}",
        proptest::collection::vec(count, 4),
        proptest::collection::vec(case, 0..4),
    );
    proptest::collection::vec(suite, 1..4).prop_map(|suites| {
        let esc = |s: &str| {
            s.replace('&', "&amp;")
                .replace('<', "&lt;")
                .replace('"', "&quot;")
                .chars()
                .filter(|c| !c.is_control() || matches!(c, '\t' | '\n' | '\r'))
                .filter(|c| !matches!(c, '\u{FFFE}' | '\u{FFFF}'))
                .collect::<String>()
        };
        let mut junk = Vec::new();
        let mut xml = String::from("<?xml version=\"1.0\"?>\n<testsuites>\n");
        for (name, counts, cases) in suites {
            for (attr, c) in ["tests", "failures", "errors", "skipped"].iter().zip(&counts) {
                if c.trim().parse::<u32>().is_err() && !c.trim().is_empty() {
                    junk.push(format!("{attr}=\"{}\"", esc(c)));
                }
            }
            xml.push_str(&format!(
                "<testsuite name=\"{}\" tests=\"{}\" failures=\"{}\" errors=\"{}\" skipped=\"{}\">\n",
                esc(&name),
                esc(&counts[0]),
                esc(&counts[1]),
                esc(&counts[2]),
                esc(&counts[3])
            ));
            for (case, body) in cases {
                xml.push_str(&format!("<testcase name=\"{}\">{body}</testcase>\n", esc(&case)));
            }
            xml.push_str("</testsuite>\n");
        }
        xml.push_str("</testsuites>\n");
        (xml, junk)
    })
}

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn junit_arbitrary_text_never_panics(text in "\\PC{0,200}") {
        if let Err(e) = parse_junit("r.xml", &text) {
            check_error("r.xml", &text, &e)?;
        }
    }

    #[test]
    fn junit_mutated_fixtures_never_panic(
        fixture in proptest::sample::select(&[NEXTEST, PYTEST][..]),
        edits in proptest::collection::vec(edit(), 1..6),
    ) {
        let text = mutate(fixture, &edits);
        match parse_junit("r.xml", &text) {
            Ok(suites) => {
                for s in &suites {
                    prop_assert!(s.failures + s.errors <= s.tests || s.tests == 0 || s.failed_tests.len() as u32 <= s.tests);
                }
            }
            Err(e) => check_error("r.xml", &text, &e)?,
        }
    }

    #[test]
    fn junit_generated_documents_parse_or_name_the_bad_count((xml, junk) in junit_doc()) {
        match parse_junit("r.xml", &xml) {
            Ok(_) => {}
            Err(e) => {
                check_error("r.xml", &xml, &e)?;
                let ReportError::Invalid { path, message, .. } = &e else {
                    return Err(TestCaseError::fail(format!("well-formed XML reported as {e}\n{xml}")));
                };
                prop_assert_eq!(path, "/testsuites/testsuite");
                prop_assert!(message.contains("is not a count"), "{}", e);
                prop_assert!(junk.iter().any(|j| message.contains(j.split('=').next().unwrap_or(""))), "{} not in {:?}", e, junk);
            }
        }
    }
}

// ---- SARIF and cargo audit -------------------------------------------------------------------

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn sarif_mutated_text_never_panics(
        fixture in proptest::sample::select(&[SEMGREP, AUDIT_SARIF][..]),
        edits in proptest::collection::vec(edit(), 1..6),
    ) {
        let text = mutate(fixture, &edits);
        if let Err(e) = parse_sarif("s.sarif", &text) {
            check_error("s.sarif", &text, &e)?;
        }
        if let Err(e) = parse_scan("s.sarif", &text) {
            check_error("s.sarif", &text, &e)?;
        }
    }

    #[test]
    fn sarif_wrong_values_are_named_by_path(
        fixture in proptest::sample::select(&[SEMGREP, AUDIT_SARIF][..]),
        edit in json_edit(),
    ) {
        let (text, edited) = apply(fixture, &edit);
        if let Err(e) = parse_sarif("s.sarif", &text) {
            check_json_error("s.sarif", &text, &edited, &e)?;
        }
    }

    #[test]
    fn audit_mutated_text_never_panics(edits in proptest::collection::vec(edit(), 1..6)) {
        let text = mutate(AUDIT, &edits);
        if let Err(e) = parse_cargo_audit("a.json", &text) {
            check_error("a.json", &text, &e)?;
        }
        if let Err(e) = parse_scan("a.json", &text) {
            check_error("a.json", &text, &e)?;
        }
    }

    #[test]
    fn audit_wrong_values_are_named_by_path(edit in json_edit()) {
        let (text, edited) = apply(AUDIT, &edit);
        if let Err(e) = parse_cargo_audit("a.json", &text) {
            check_json_error("a.json", &text, &edited, &e)?;
        }
    }

    #[test]
    fn scan_arbitrary_json_never_panics(value in any_json()) {
        let text = value.to_string();
        for result in [parse_scan("x.json", &text), parse_sarif("x.json", &text), parse_cargo_audit("x.json", &text)] {
            if let Err(e) = result {
                check_error("x.json", &text, &e)?;
            }
        }
    }

    #[test]
    fn cvss_vectors_never_panic(
        parts in proptest::collection::vec(
            (
                proptest::sample::select(&["AV", "AC", "PR", "UI", "S", "C", "I", "A", "E", "MAV", "X", ""][..]),
                proptest::sample::select(&["N", "L", "H", "A", "P", "R", "U", "C", "X", "", "NN"][..]),
            ),
            0..12,
        ),
        prefix in proptest::sample::select(&["CVSS:3.1", "CVSS:3.0", "CVSS:4.0", "", "cvss:3.1"][..]),
    ) {
        let mut vector = prefix.to_owned();
        for (m, v) in parts {
            vector.push_str(&format!("/{m}:{v}"));
        }
        if let Ok(score) = reports::cvss::base_score(&vector) {
            prop_assert!((0.0..=10.0).contains(&score), "{vector}: {score}");
        }
    }
}

// ---- fixed corpus ----------------------------------------------------------------------------

#[test]
fn nasty_junit_corpus() {
    let deep = format!("{}{}", "<testsuite>".repeat(20_000), "</testsuite>".repeat(20_000));
    let wide = format!(
        "<testsuites>{}</testsuites>",
        "<testcase name=\"t\"><failure/></testcase>".repeat(50_000)
    );
    let laughs = "<?xml version=\"1.0\"?><!DOCTYPE lolz [<!ENTITY lol \"lol\"><!ENTITY lol2 \"&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;\"><!ENTITY lol3 \"&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;\">]><testsuite name=\"&lol3;\"/>";
    let external =
        "<?xml version=\"1.0\"?><!DOCTYPE x [<!ENTITY e SYSTEM \"file:///etc/passwd\">]><testsuite name=\"&e;\"/>";
    let cases: &[(&str, &str)] = &[
        ("", "no root element"),
        ("   ", "no root element"),
        ("<html/>", "not a JUnit report"),
        ("<testsuite/><testsuite/>", "a second root element"),
        ("<testsuite>", "is not closed"),
        ("</testsuite>", ""),
        (
            "<testsuite tests=\"4294967296\"/>",
            "attribute tests=\"4294967296\" is not a count",
        ),
        (
            "<testsuite failures=\"NaN\"/>",
            "attribute failures=\"NaN\" is not a count",
        ),
        ("<testsuite name=\"a\" name=\"b\"/>", "duplicated attribute"),
        ("<testsuite name=\"&#0;\"/>", ""),
        ("<testsuite name=\"&#xD800;\"/>", ""),
        ("<testsuite>&#99999999999;</testsuite>", ""),
        ("<testsuite>x</testsuite>trailing", "text outside the root element"),
        (laughs, "entity `lol3`"),
        (external, "entity `e`"),
        ("\u{feff}<testsuite/>", ""),
        (
            "<testsuite><testcase><failure message=\"\u{0}\u{1b}[2J\"/></testcase></testsuite>",
            "",
        ),
    ];
    for (text, expected) in cases {
        match parse_junit("r.xml", text) {
            Ok(_) => assert!(expected.is_empty(), "{text:?} accepted, expected {expected:?}"),
            Err(e) => {
                let shown = e.to_string();
                assert!(shown.starts_with("r.xml"), "{shown}");
                assert!(shown.contains(expected), "{text:?}: {shown}, expected {expected:?}");
            }
        }
    }
    // Deep nesting is walked without recursion, and a wide document stays linear.
    let suites = parse_junit("deep.xml", &deep).unwrap();
    assert_eq!(suites.len(), 1, "only the innermost suite holds no child suites");
    let suites = parse_junit("wide.xml", &wide).unwrap();
    assert_eq!((suites[0].tests, suites[0].failures), (50_000, 50_000));
}

#[test]
fn nasty_json_corpus() {
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let deep_in_field = format!(
        "{{\"version\":\"2.1.0\",\"runs\":[{{\"tool\":{{\"driver\":{{\"name\":\"t\"}}}},\"results\":[{{\"properties\":{{\"x\":{}{}}}}}]}}]}}",
        "[".repeat(10_000),
        "]".repeat(10_000)
    );
    let cases: &[(&str, &str)] = &[
        ("", "malformed JSON"),
        ("{", "malformed JSON"),
        ("[]", "not a scan report"),
        ("null", "not a scan report"),
        ("\"runs\"", "not a scan report"),
        ("<xml/>", "looks like XML"),
        ("{\"runs\": [], \"version\": \"2.0.0\"}", "unsupported SARIF version"),
        ("{\"runs\": {}, \"version\": \"2.1.0\"}", "runs"),
        ("{\"runs\": [{}], \"version\": \"2.1.0\"}", "runs[0]: missing field `tool`"),
        ("{\"runs\": [{\"tool\":{\"driver\":{\"name\":1}}}], \"version\": \"2.1.0\"}", "runs[0].tool.driver.name"),
        ("{\"runs\": [], \"version\": \"2.1.0\"} trailing", "malformed JSON"),
        ("{\"runs\": [], \"version\": \"2.1.0\", \"runs\": []}", "duplicate field"),
        ("{\"vulnerabilities\": {\"list\": [{\"advisory\": {\"id\": \"X\", \"cvss\": \"CVSS:3.1/AV:Q\"}, \"package\": {\"name\": \"p\", \"version\": \"1\"}}]}}", "vulnerabilities.list[0].advisory.cvss"),
        ("{\"vulnerabilities\": {\"list\": [{\"advisory\": {\"id\": \"X\", \"cvss\": \"CVSS:4.0/AV:N\"}, \"package\": {\"name\": \"p\", \"version\": \"1\"}}]}}", ""),
        ("{\"vulnerabilities\": {\"list\": [{\"advisory\": {\"id\": 1e999}}]}}", "malformed JSON"),
        ("{\"vulnerabilities\": \"\\ud800\"}", "malformed JSON"),
        (&deep, "recursion limit"),
        (&deep_in_field, "recursion limit"),
    ];
    for (text, expected) in cases {
        match parse_scan("s.json", text) {
            Ok(_) => assert!(expected.is_empty(), "{:.80}: accepted, expected {expected:?}", text),
            Err(e) => {
                let shown = e.to_string();
                assert!(shown.starts_with("s.json"), "{shown}");
                assert!(shown.contains(expected), "{:.80}: {shown}, expected {expected:?}", text);
            }
        }
    }
}

/// A SARIF message is a template with `{0}`, `{1}`, … placeholders: a small document with many
/// placeholders and a long argument must not render into gigabytes.
#[test]
fn message_placeholders_do_not_amplify_memory() {
    let template = "{0}".repeat(100_000);
    let argument = "x".repeat(100_000);
    let doc = serde_json::json!({
        "version": "2.1.0",
        "runs": [{"tool": {"driver": {"name": "t"}}, "results": [
            {"message": {"text": template, "arguments": [argument, "{0}"]}},
            {"message": {"text": "{0} and {1} and {2}", "arguments": ["{1}", "b"]}},
        ]}]
    })
    .to_string();
    let scan = parse_sarif("amp.sarif", &doc).unwrap();
    let message = &scan.findings[0].message;
    assert!(
        message.len() <= reports::sarif::MAX_MESSAGE_BYTES + 4,
        "{} bytes rendered from a {} byte document",
        message.len(),
        doc.len()
    );
    assert!(message.ends_with('…'), "a cut message says so");
    // Arguments are inserted as they are: a placeholder inside an argument is not expanded,
    // and a placeholder without an argument stays.
    assert_eq!(scan.findings[1].message, "{1} and b and {2}");
}
