//! `cargo audit --json`.
//!
//! The fixture is real cargo-audit 0.22.2 output. The live RustSec advisory database could not
//! be fetched (this machine cannot reach GitHub), so cargo-audit was pointed with
//! `--db … --no-fetch` at a local database of five advisory files written by hand in RustSec's
//! format, modelled on real advisories; the lock file, the matching, the yanked check (against
//! crates.io) and the JSON are cargo-audit's own. See tests/fixtures/README.md.

use reports::{parse_cargo_audit, Finding, ReportError};

const AUDIT: &str = include_str!("fixtures/cargo-audit.json");

fn summary(findings: &[Finding]) -> Vec<(&str, &str, Option<f64>, bool)> {
    findings
        .iter()
        .map(|f| (f.rule_id.as_str(), f.level.as_str(), f.security_severity, f.critical))
        .collect()
}

#[test]
fn cargo_audit_fixture_scores_vulnerabilities_from_their_cvss_vectors() {
    let scan = parse_cargo_audit("cargo-audit.json", AUDIT).unwrap();
    assert_eq!(scan.tool, "cargo-audit");
    assert_eq!(
        summary(&scan.findings),
        [
            // No CVSS vector: informational.
            ("RUSTSEC-2023-0018", "note", None, false),
            // CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H
            ("RUSTSEC-2021-0003", "error", Some(9.8), true),
            // CVSS:3.1/AV:N/AC:H/PR:N/UI:N/S:U/C:N/I:N/A:H
            ("RUSTSEC-2020-0071", "warning", Some(5.9), false),
            // Warnings: unmaintained, unsound, yanked.
            ("RUSTSEC-2024-0375", "warning", None, false),
            ("RUSTSEC-2021-0145", "warning", None, false),
            ("yanked", "warning", None, false),
        ]
    );
    assert_eq!(scan.critical(), 1);
    let messages: Vec<&str> = scan.findings.iter().map(|f| f.message.as_str()).collect();
    assert_eq!(
        messages,
        [
            "remove_dir_all 0.5.3: Race Condition Enabling Link Following and Time-of-check Time-of-use (TOCTOU) (no CVSS vector)",
            "smallvec 1.4.0: Buffer overflow in SmallVec::insert_many (CVSS 9.8, critical)",
            "time 0.1.43: Potential segfault in the time crate (CVSS 5.9, medium)",
            "atty 0.2.14 is unmaintained: `atty` is unmaintained",
            "atty 0.2.14 is unsound: Potential unaligned read",
            "smallvec 1.4.0 is yanked",
        ]
    );
    assert!(scan.findings.iter().all(|f| f.location.is_none()));
}

/// A cargo audit report with one vulnerability whose advisory has the given `cvss` (JSON).
fn report(cvss: &str) -> String {
    format!(
        r#"{{"database": {{"advisory-count": 1}}, "lockfile": {{"dependency-count": 1}}, "settings": {{}},
  "vulnerabilities": {{"found": true, "count": 1, "list": [
    {{"advisory": {{"id": "RUSTSEC-2099-0001", "package": "demo", "title": "Demo", "cvss": {cvss}}},
     "versions": {{"patched": []}}, "affected": null,
     "package": {{"name": "demo", "version": "1.0.0"}}}}
  ]}},
  "warnings": {{}}}}"#
    )
}

#[test]
fn critical_means_a_cvss_v3_base_score_of_nine_or_more() {
    let cases = [
        (
            "\"CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:C/C:H/I:H/A:H\"",
            "error",
            Some(10.0),
            true,
        ),
        (
            "\"CVSS:3.0/AV:N/AC:L/PR:L/UI:N/S:U/C:H/I:H/A:H\"",
            "warning",
            Some(8.8),
            false,
        ),
        (
            "\"CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:N\"",
            "warning",
            Some(0.0),
            false,
        ),
        ("null", "note", None, false),
        // CVSS 4.0 vectors (RustSec carries some) are not scored here: not critical, and said so.
        (
            "\"CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N\"",
            "warning",
            None,
            false,
        ),
    ];
    for (cvss, level, score, critical) in cases {
        let scan = parse_cargo_audit("audit.json", &report(cvss)).unwrap();
        assert_eq!(
            summary(&scan.findings),
            [("RUSTSEC-2099-0001", level, score, critical)],
            "{cvss}"
        );
    }
    let v4 = parse_cargo_audit(
        "audit.json",
        &report("\"CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N\""),
    )
    .unwrap();
    assert!(v4.findings[0]
        .message
        .ends_with("(CVSS vector not scored: CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N)"));
}

#[test]
fn a_malformed_cvss_vector_is_an_error_naming_the_advisory() {
    let err = parse_cargo_audit("audit.json", &report("\"CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H\"")).unwrap_err();
    assert_eq!(
        err.to_string(),
        "audit.json: vulnerabilities.list[0].advisory.cvss: CVSS base metric A is missing in \
         `CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H` (advisory RUSTSEC-2099-0001)"
    );
}

#[test]
fn a_clean_audit_has_no_findings() {
    let json = r#"{"database":{"advisory-count":900,"last-commit":"abc","last-updated":"2026-01-01T00:00:00Z"},
      "lockfile":{"dependency-count":120},"settings":{"target_arch":[],"target_os":[],"severity":null,"ignore":[],"informational_warnings":["unmaintained"]},
      "vulnerabilities":{"found":false,"count":0,"list":[]},"warnings":{}}"#;
    let scan = parse_cargo_audit("clean.json", json).unwrap();
    assert!(scan.findings.is_empty());
    assert_eq!(scan.critical(), 0);
}

#[test]
fn broken_reports_name_the_file_and_where() {
    let err = parse_cargo_audit("audit.json", "{\"vulnerabilities\": {\"list\": [}\n").unwrap_err();
    assert!(matches!(err, ReportError::Malformed { line: 1, .. }), "{err:?}");
    assert!(err.to_string().starts_with("audit.json:1:"), "{err}");

    let err = parse_cargo_audit(
        "audit.json",
        "{\"vulnerabilities\": {\"list\": [\n  {\"package\": {\"name\": \"x\", \"version\": \"1\"}}\n]}}",
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "audit.json:2: vulnerabilities.list[0]: missing field `advisory`"
    );

    let err = parse_cargo_audit("audit.json", "{\"warnings\": {}}").unwrap_err();
    assert_eq!(err.to_string(), "audit.json:1: .: missing field `vulnerabilities`");
}
