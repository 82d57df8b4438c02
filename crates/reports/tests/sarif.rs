//! SARIF 2.1.0: the Semgrep fixture (a real scan, see tests/fixtures/README.md), then the parts
//! of the format Semgrep does not write, then broken documents.

use reports::{parse_sarif, Finding, ReportError};

const SEMGREP: &str = include_str!("fixtures/semgrep.sarif");

fn by_rule<'a>(findings: &'a [Finding], rule_id: &str) -> &'a Finding {
    findings
        .iter()
        .find(|f| f.rule_id == rule_id)
        .unwrap_or_else(|| panic!("no finding for {rule_id}"))
}

#[test]
fn semgrep_fixture_findings_levels_and_criticality() {
    let scan = parse_sarif("semgrep.sarif", SEMGREP).unwrap();
    assert_eq!(scan.tool, "Semgrep OSS");
    assert_eq!(scan.findings.len(), 4);

    // Semgrep writes no `level` on results: every level below is inherited from the rule's
    // defaultConfiguration.level, which Semgrep derives from the rule's severity.

    // severity: ERROR -> "error" -> critical.
    let eval = by_rule(&scan.findings, "python-eval-call");
    assert_eq!(eval.level, "error");
    assert!(eval.critical);
    assert_eq!(eval.security_severity, None);
    assert_eq!(eval.location.as_deref(), Some("app/calc.py:6"));
    assert_eq!(
        eval.message,
        "Call to eval() with data that may come from the user; this allows code injection."
    );

    // severity: WARNING -> "warning" -> not critical.
    let assert_used = by_rule(&scan.findings, "python-assert-used");
    assert_eq!(assert_used.level, "warning");
    assert!(!assert_used.critical);
    assert_eq!(assert_used.location.as_deref(), Some("app/calc.py:5"));

    // severity: WARNING, but the rule's security-severity "9.3" (a string, as Semgrep and
    // GitHub write it) makes it critical.
    let pickle = by_rule(&scan.findings, "python-pickle-load");
    assert_eq!(pickle.level, "warning");
    assert_eq!(pickle.security_severity, Some(9.3));
    assert!(pickle.critical);
    assert_eq!(pickle.location.as_deref(), Some("app/calc.py:10"));

    // severity: INFO -> "note".
    let print = by_rule(&scan.findings, "python-print-call");
    assert_eq!(print.level, "note");
    assert!(!print.critical);

    assert_eq!(scan.critical(), 2);
    let critical: Vec<&str> = scan.critical_findings().map(|f| f.rule_id.as_str()).collect();
    assert_eq!(critical, ["python-eval-call", "python-pickle-load"]);
}

/// A SARIF log with one run of a tool whose rules are given, and the given results.
fn log(rules: &str, results: &str) -> String {
    format!(
        r#"{{"$schema": "https://json.schemastore.org/sarif-2.1.0.json", "version": "2.1.0",
  "runs": [{{"tool": {{"driver": {{"name": "scanner", "rules": [{rules}]}}}}, "results": [{results}]}}]}}"#
    )
}

const RULES: &str = r#"
  {"id": "R-error", "defaultConfiguration": {"level": "error"}},
  {"id": "R-warning", "defaultConfiguration": {"level": "warning"}, "properties": {"security-severity": "8.9"}},
  {"id": "R-bare"},
  {"id": "R-severe", "properties": {"security-severity": 9.0}}
"#;

fn findings(results: &str) -> Vec<Finding> {
    parse_sarif("inline.sarif", &log(RULES, results)).unwrap().findings
}

#[test]
fn level_comes_from_the_result_then_the_rule_then_defaults_to_warning() {
    let found = findings(
        r#"
        {"ruleId": "R-bare", "level": "error", "message": {"text": "explicit error"}},
        {"ruleId": "R-error", "message": {"text": "inherits error"}},
        {"ruleId": "R-error", "level": "note", "message": {"text": "result overrides rule"}},
        {"ruleId": "R-bare", "message": {"text": "no level anywhere"}},
        {"ruleId": "not-a-declared-rule", "message": {"text": "unknown rule"}}
    "#,
    );
    let summary: Vec<(&str, bool)> = found.iter().map(|f| (f.level.as_str(), f.critical)).collect();
    assert_eq!(
        summary,
        [
            ("error", true),
            ("error", true),
            ("note", false),
            ("warning", false),
            ("warning", false)
        ]
    );
}

#[test]
fn security_severity_of_nine_or_more_makes_a_finding_critical() {
    let found = findings(
        r#"
        {"ruleId": "R-warning", "message": {"text": "rule says 8.9"}},
        {"ruleId": "R-severe", "message": {"text": "rule says 9.0 as a number"}},
        {"ruleId": "R-warning", "message": {"text": "result overrides"}, "properties": {"security-severity": "9.8"}},
        {"ruleId": "R-severe", "message": {"text": "result lowers"}, "properties": {"security-severity": 4}},
        {"ruleId": "R-bare", "message": {"text": "unparsable"}, "properties": {"security-severity": "high"}},
        {"ruleId": "R-warning", "message": {"text": "unparsable, rule's"}, "properties": {"security-severity": null}}
    "#,
    );
    let summary: Vec<(&str, Option<f64>, bool)> = found
        .iter()
        .map(|f| (f.level.as_str(), f.security_severity, f.critical))
        .collect();
    assert_eq!(
        summary,
        [
            ("warning", Some(8.9), false),
            ("warning", Some(9.0), true),
            ("warning", Some(9.8), true),
            ("warning", Some(4.0), false),
            ("warning", None, false),
            ("warning", Some(8.9), false),
        ]
    );
}

#[test]
fn rules_are_found_by_index_and_in_extensions() {
    let json = r#"{"version": "2.1.0", "runs": [{
      "tool": {
        "driver": {"name": "CodeQL", "rules": [{"id": "js/a", "defaultConfiguration": {"level": "note"}}]},
        "extensions": [{"name": "codeql/javascript-queries", "rules": [
          {"id": "js/sql-injection", "defaultConfiguration": {"level": "error"}}
        ]}]
      },
      "results": [
        {"ruleIndex": 0, "message": {"text": "by index"}},
        {"rule": {"id": "js/sql-injection", "index": 0, "toolComponent": {"index": 0}},
         "message": {"text": "in an extension"}},
        {"ruleId": "js/sql-injection", "message": {"text": "by id, searched everywhere"}},
        {"ruleId": "js/a", "ruleIndex": -1, "message": {"text": "-1 is the default: look up by id"}}
      ]}]}"#;
    let found = parse_sarif("codeql.sarif", json).unwrap().findings;
    let summary: Vec<(&str, &str)> = found.iter().map(|f| (f.rule_id.as_str(), f.level.as_str())).collect();
    assert_eq!(
        summary,
        [
            ("js/a", "note"),
            ("js/sql-injection", "error"),
            ("js/sql-injection", "error"),
            ("js/a", "note"),
        ]
    );
}

#[test]
fn locations_and_messages() {
    let json = r#"{"version": "2.1.0", "runs": [{
      "tool": {"driver": {"name": "t", "rules": [{"id": "r",
         "shortDescription": {"text": "short description"},
         "messageStrings": {"default": {"text": "'{0}' is used {1} times"}}}]}},
      "results": [
        {"ruleId": "r", "message": {"text": "line"},
         "locations": [{"physicalLocation": {"artifactLocation": {"uri": "src/main.rs"}, "region": {"startLine": 12, "startColumn": 3}}}]},
        {"ruleId": "r", "message": {"text": "file only"},
         "locations": [{"physicalLocation": {"artifactLocation": {"uri": "Cargo.toml"}}}]},
        {"ruleId": "r", "message": {"text": "logical"},
         "locations": [{"logicalLocations": [{"name": "f", "fullyQualifiedName": "crate::m::f"}]}]},
        {"ruleId": "r", "message": {"id": "default", "arguments": ["x", "3"]}},
        {"ruleId": "r", "message": {}}
      ]}]}"#;
    let found = parse_sarif("t.sarif", json).unwrap().findings;
    let locations: Vec<Option<&str>> = found.iter().map(|f| f.location.as_deref()).collect();
    assert_eq!(
        locations,
        [
            Some("src/main.rs:12"),
            Some("Cargo.toml"),
            Some("crate::m::f"),
            None,
            None
        ]
    );
    assert_eq!(found[3].message, "'x' is used 3 times");
    assert_eq!(found[4].message, "short description");
}

#[test]
fn passes_are_never_critical_and_suppressed_results_are_left_out() {
    let found = findings(
        r#"
        {"ruleId": "R-error", "kind": "pass", "message": {"text": "check passed"}},
        {"ruleId": "R-severe", "kind": "informational", "message": {"text": "fyi"}},
        {"ruleId": "R-error", "message": {"text": "suppressed in source"}, "suppressions": [{"kind": "inSource"}]},
        {"ruleId": "R-error", "message": {"text": "accepted"}, "suppressions": [{"kind": "external", "status": "accepted"}]},
        {"ruleId": "R-error", "message": {"text": "suppression under review"}, "suppressions": [{"kind": "external", "status": "underReview"}]}
    "#,
    );
    let summary: Vec<(&str, &str, bool)> = found
        .iter()
        .map(|f| (f.message.as_str(), f.level.as_str(), f.critical))
        .collect();
    assert_eq!(
        summary,
        [
            ("check passed", "none", false),
            ("fyi", "none", false),
            ("suppression under review", "error", true)
        ]
    );
}

#[test]
fn all_runs_are_read_and_their_tools_joined() {
    let json = r#"{"version": "2.1.0", "runs": [
      {"tool": {"driver": {"name": "clippy"}}, "results": [{"ruleId": "a", "level": "warning", "message": {"text": "1"}}]},
      {"tool": {"driver": {"name": "Semgrep OSS"}}, "results": null},
      {"tool": {"driver": {"name": "clippy"}}},
      {"tool": {"driver": {"name": "Trivy"}}, "results": [{"ruleId": "b", "level": "error", "message": {"text": "2"}}]}
    ]}"#;
    let scan = parse_sarif("multi.sarif", json).unwrap();
    assert_eq!(scan.tool, "clippy, Semgrep OSS, Trivy");
    assert_eq!(scan.findings.len(), 2);
    assert_eq!(scan.critical(), 1);
}

#[test]
fn malformed_json_names_the_file_and_line() {
    // A missing comma after line 3's value.
    let json = "{\n  \"version\": \"2.1.0\",\n  \"runs\": []\n  \"extra\": 1\n}";
    let err = parse_sarif("scan/semgrep.sarif", json).unwrap_err();
    assert!(matches!(err, ReportError::Malformed { line: 4, .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.starts_with("scan/semgrep.sarif:4:3: malformed JSON: "), "{text}");

    let err = parse_sarif("cut.sarif", &SEMGREP[..SEMGREP.len() / 2]).unwrap_err();
    assert!(matches!(err, ReportError::Malformed { line: 1, .. }), "{err:?}");
    assert!(err.to_string().contains("EOF"), "{err}");

    let err = parse_sarif("trailing.sarif", "{\"version\": \"2.1.0\", \"runs\": []} {}").unwrap_err();
    assert!(matches!(err, ReportError::Malformed { line: 1, .. }), "{err:?}");
}

#[test]
fn a_wrong_shape_names_the_json_path() {
    let json = "{\"version\": \"2.1.0\", \"runs\": [\n  {\"tool\": {\"driver\": {\"rules\": []}}}\n]}";
    let err = parse_sarif("shape.sarif", json).unwrap_err();
    assert_eq!(
        err.to_string(),
        "shape.sarif:2: runs[0].tool.driver: missing field `name`"
    );

    let json = "{\"version\": \"2.1.0\", \"runs\": [{\"tool\": {\"driver\": {\"name\": \"t\"}},\n \"results\": [{\"message\": {\"text\": 7}}]}]}";
    let err = parse_sarif("shape.sarif", json).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("shape.sarif:2: runs[0].results[0].message.text: invalid type: integer `7`"),
        "{err}"
    );

    let err = parse_sarif("no-runs.sarif", "{\"version\": \"2.1.0\"}").unwrap_err();
    assert_eq!(err.to_string(), "no-runs.sarif:1: .: missing field `runs`");
}

#[test]
fn other_sarif_versions_are_refused() {
    let err = parse_sarif("old.sarif", r#"{"version": "1.0.0", "runs": []}"#).unwrap_err();
    assert_eq!(
        err.to_string(),
        "old.sarif: version: unsupported SARIF version \"1.0.0\" (expected \"2.1.0\")"
    );
}
