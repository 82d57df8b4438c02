//! `parse_scan` picks the parser by content.

use reports::{parse_cargo_audit, parse_sarif, parse_scan, ReportError};

const SEMGREP: &str = include_str!("fixtures/semgrep.sarif");
const AUDIT_JSON: &str = include_str!("fixtures/cargo-audit.json");
const AUDIT_SARIF: &str = include_str!("fixtures/cargo-audit.sarif");

#[test]
fn sarif_and_cargo_audit_are_told_apart() {
    assert_eq!(
        parse_scan("semgrep.sarif", SEMGREP),
        parse_sarif("semgrep.sarif", SEMGREP)
    );
    assert_eq!(parse_scan("semgrep.sarif", SEMGREP).unwrap().tool, "Semgrep OSS");

    assert_eq!(
        parse_scan("audit.json", AUDIT_JSON),
        parse_cargo_audit("audit.json", AUDIT_JSON)
    );
    assert_eq!(parse_scan("audit.json", AUDIT_JSON).unwrap().tool, "cargo-audit");

    // `cargo audit --format sarif` is SARIF, whatever the tool.
    assert_eq!(
        parse_scan("audit.sarif", AUDIT_SARIF),
        parse_sarif("audit.sarif", AUDIT_SARIF)
    );

    // Either SARIF marker will do.
    let minimal = r#"{"$schema": "https://json.schemastore.org/sarif-2.1.0.json", "runs": []}"#;
    assert_eq!(parse_scan("m.sarif", minimal).unwrap().findings, []);
}

#[test]
fn cargo_audit_sarif_marks_every_vulnerability_as_an_error() {
    // The same audit as cargo-audit.json, written by `cargo audit --format sarif`. cargo-audit
    // gives every vulnerability level "error" whatever its CVSS score (it keeps the score in
    // the rule's security-severity), so by the SARIF severity rule all three are critical,
    // where the JSON report, scored by CVSS, has one. Prefer `--json` for cargo audit.
    let sarif = parse_scan("audit.sarif", AUDIT_SARIF).unwrap();
    assert_eq!(sarif.tool, "cargo-audit");
    let summary: Vec<_> = sarif
        .findings
        .iter()
        .map(|f| {
            (
                f.rule_id.as_str(),
                f.level.as_str(),
                f.security_severity,
                f.critical,
                f.location.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("RUSTSEC-2023-0018", "error", None, true, Some("Cargo.lock:1")),
            ("RUSTSEC-2021-0003", "error", Some(9.8), true, Some("Cargo.lock:1")),
            ("RUSTSEC-2020-0071", "error", Some(5.9), true, Some("Cargo.lock:1")),
            ("RUSTSEC-2024-0375", "warning", None, false, Some("Cargo.lock:1")),
            ("RUSTSEC-2021-0145", "warning", None, false, Some("Cargo.lock:1")),
            ("yanked", "warning", None, false, Some("Cargo.lock:1")),
        ]
    );
    assert_eq!(sarif.critical(), 3);
    assert_eq!(parse_scan("audit.json", AUDIT_JSON).unwrap().critical(), 1);
}

#[test]
fn anything_else_is_refused_with_a_reason() {
    let unknown = [
        ("coverage.json", r#"{"coverage": 0.93}"#, "neither SARIF"),
        ("runs-only.json", r#"{"runs": []}"#, "neither SARIF"),
        ("list.json", "[1, 2]", "not an object"),
        ("junit.xml", "<?xml version=\"1.0\"?><testsuites/>", "looks like XML"),
    ];
    for (name, text, needle) in unknown {
        let err = parse_scan(name, text).unwrap_err();
        assert!(matches!(err, ReportError::UnknownFormat { .. }), "{name}: {err:?}");
        assert_eq!(err.source_name(), name);
        assert!(err.to_string().contains(needle), "{name}: {err}");
    }

    let err = parse_scan("scan.json", "{\n  \"runs\": [\n").unwrap_err();
    assert!(matches!(err, ReportError::Malformed { line: 3, .. }), "{err:?}");
    assert!(err.to_string().starts_with("scan.json:3:"), "{err}");
}
