//! `cargo audit --json` reports.
//!
//! The report (rustsec's `Report`) has `vulnerabilities.list[]`, each with an `advisory`
//! (`id`, `title`, `cvss`: a vector string or `null`, …) and the affected `package`
//! (`name`, `version`), and `warnings`: a map from a kind (`unmaintained`, `unsound`, `yanked`,
//! `notice`) to a list of `{kind, package, advisory}` (the advisory is `null` for yanked crates).
//!
//! Each vulnerability and each warning becomes a [`Finding`] whose `rule_id` is the advisory id
//! (or the warning kind when there is no advisory) and whose `location` is `None`.
//!
//! - A vulnerability with a CVSS v3.x vector is scored with [`crate::cvss::base_score`]; the
//!   score is the finding's `security_severity`. It is **critical** when the score is >= 9.0,
//!   with level `"error"`; otherwise its level is `"warning"`.
//! - A vulnerability without a vector is informational: level `"note"`, not critical.
//! - A vulnerability with a vector of another CVSS version (RustSec also carries CVSS 4.0
//!   vectors) is not scored here: level `"warning"`, no `security_severity`, not critical, and
//!   the message says the vector was not scored. A malformed CVSS v3 vector is an error.
//! - Warnings are never critical: level `"warning"`.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::cvss::{self, CvssError, Severity};
use crate::error::{from_json, ReportError};
use crate::sarif::{Finding, ScanFindings, CRITICAL_SECURITY_SEVERITY};

/// Parses the output of `cargo audit --json`. See the [module documentation](self).
///
/// `source_name` names the report in errors (usually its file name).
pub fn parse_cargo_audit(source_name: &str, json: &str) -> Result<ScanFindings, ReportError> {
    let report: Report = from_json(source_name, json)?;
    let mut findings = Vec::new();
    for (i, vulnerability) in report.vulnerabilities.list.iter().enumerate() {
        let advisory = &vulnerability.advisory;
        let package = &vulnerability.package;
        let subject = format!("{} {}: {}", package.name, package.version, advisory.title);
        let vector = advisory.cvss.as_deref().map(str::trim).filter(|v| !v.is_empty());
        let finding = match vector.map(|v| (v, cvss::base_score(v))) {
            None => Finding {
                rule_id: advisory.id.clone(),
                level: "note".to_owned(),
                security_severity: None,
                message: format!("{subject} (no CVSS vector)"),
                location: None,
                critical: false,
            },
            Some((_, Ok(score))) => {
                let critical = score >= CRITICAL_SECURITY_SEVERITY;
                Finding {
                    rule_id: advisory.id.clone(),
                    level: if critical { "error" } else { "warning" }.to_owned(),
                    security_severity: Some(score),
                    message: format!("{subject} (CVSS {score:.1}, {})", Severity::of(score)),
                    location: None,
                    critical,
                }
            }
            Some((vector, Err(CvssError::UnsupportedVersion(_)))) => Finding {
                rule_id: advisory.id.clone(),
                level: "warning".to_owned(),
                security_severity: None,
                message: format!("{subject} (CVSS vector not scored: {vector})"),
                location: None,
                critical: false,
            },
            Some((vector, Err(err))) => {
                return Err(ReportError::invalid(
                    source_name,
                    format!("vulnerabilities.list[{i}].advisory.cvss"),
                    None,
                    format!("{err} in `{vector}` (advisory {})", advisory.id),
                ))
            }
        };
        findings.push(finding);
    }
    for (kind, warnings) in &report.warnings {
        for warning in warnings.iter().flatten() {
            let kind = warning.kind.as_deref().unwrap_or(kind);
            let package = &warning.package;
            let (rule_id, message) = match &warning.advisory {
                Some(advisory) if !advisory.title.is_empty() => (
                    advisory.id.clone(),
                    format!("{} {} is {kind}: {}", package.name, package.version, advisory.title),
                ),
                Some(advisory) => (
                    advisory.id.clone(),
                    format!("{} {} is {kind}", package.name, package.version),
                ),
                None => (
                    kind.to_owned(),
                    format!("{} {} is {kind}", package.name, package.version),
                ),
            };
            findings.push(Finding {
                rule_id,
                level: "warning".to_owned(),
                security_severity: None,
                message,
                location: None,
                critical: false,
            });
        }
    }
    Ok(ScanFindings {
        tool: "cargo-audit".to_owned(),
        findings,
    })
}

#[derive(Deserialize)]
struct Report {
    vulnerabilities: Vulnerabilities,
    #[serde(default)]
    warnings: BTreeMap<String, Option<Vec<Warning>>>,
}

#[derive(Deserialize)]
struct Vulnerabilities {
    #[serde(default)]
    list: Vec<Vulnerability>,
}

#[derive(Deserialize)]
struct Vulnerability {
    advisory: Advisory,
    package: Package,
}

#[derive(Deserialize)]
struct Advisory {
    id: String,
    #[serde(default)]
    title: String,
    #[serde(default)]
    cvss: Option<String>,
}

#[derive(Deserialize)]
struct Package {
    name: String,
    version: String,
}

#[derive(Deserialize)]
struct Warning {
    #[serde(default)]
    kind: Option<String>,
    package: Package,
    #[serde(default)]
    advisory: Option<Advisory>,
}
