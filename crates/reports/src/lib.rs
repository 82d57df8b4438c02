//! Readers of the artifacts real tools leave behind, for the QA and Security agents.
//!
//! Test suites leave JUnit XML ([`parse_junit`]); scanners emit SARIF 2.1.0 ([`parse_sarif`]);
//! `cargo audit --json` writes RustSec's report ([`parse_cargo_audit`]); [`parse_scan`] picks
//! the scan parser by content. Everything here is pure parsing: callers read the files and pass
//! the text in with a name for it, which every [`ReportError`] repeats together with where in
//! the text the problem is.
//!
//! The rules that decide what counts as a failed test or a critical finding are documented in
//! the modules: [`junit`], [`sarif`] (the severity rule), [`audit`] and [`cvss`].

pub mod audit;
pub mod cvss;
mod error;
pub mod junit;
pub mod sarif;

pub use audit::parse_cargo_audit;
pub use error::{Format, ReportError};
pub use junit::{parse_junit, SuiteReport};
pub use sarif::{parse_sarif, Finding, ScanFindings};

/// Parses a scan report, picking the parser by content: a JSON object with `"runs"` and a
/// `"$schema"` or `"version"` is SARIF ([`parse_sarif`]); one with `"vulnerabilities"` is
/// `cargo audit --json` output ([`parse_cargo_audit`]). Anything else is
/// [`ReportError::UnknownFormat`] (or [`ReportError::Malformed`] when it is not JSON at all).
pub fn parse_scan(source_name: &str, text: &str) -> Result<ScanFindings, ReportError> {
    let unknown = |message: &str| ReportError::UnknownFormat {
        source_name: source_name.to_owned(),
        message: message.to_owned(),
    };
    if text.trim_start().starts_with('<') {
        return Err(unknown(
            "looks like XML; scan reports are JSON (SARIF 2.1.0 or cargo audit --json)",
        ));
    }
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|err| error::json_error(source_name, ".", &err))?;
    let Some(object) = value.as_object() else {
        return Err(unknown("not a scan report: the JSON is not an object"));
    };
    if object.contains_key("runs") && (object.contains_key("$schema") || object.contains_key("version")) {
        parse_sarif(source_name, text)
    } else if object.contains_key("vulnerabilities") {
        parse_cargo_audit(source_name, text)
    } else {
        Err(unknown(
            "not a scan report: neither SARIF (\"$schema\"/\"version\" and \"runs\") nor cargo audit JSON (\"vulnerabilities\")",
        ))
    }
}
