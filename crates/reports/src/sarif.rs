//! SARIF 2.1.0 scan results.
//!
//! Every result of every run becomes a [`Finding`]; the tool names of all runs are joined.
//!
//! # Level
//!
//! A result's level is, per SARIF §3.27.10: its own `level`; else, when its `kind` is present
//! and not `"fail"` (`"pass"`, `"open"`, `"informational"`, …), `"none"`; else the
//! `defaultConfiguration.level` of its rule (found by `ruleId`, `rule.id`, `ruleIndex` or
//! `rule.index`, in the driver's rules or an extension's); else `"warning"`.
//!
//! # Severity rule
//!
//! A finding is **critical** when
//!
//! - its level is `"error"`, given on the result itself or inherited from its rule's
//!   `defaultConfiguration.level`; or
//! - its `security-severity` property parses to a number **>= 9.0**. The result's own
//!   `properties["security-severity"]` is used when present, else the rule's (GitHub's
//!   convention; the value may be a string such as `"9.3"` or a number). A value that does not
//!   parse as a number is ignored (the rule's is used instead).
//!
//! A result whose `kind` is present and not `"fail"` (a passed check, say) is never critical.
//! Results with a `suppressions` entry whose `status` is absent or `"accepted"` (suppressed in
//! source, e.g. `nosemgrep`, or accepted in a triage tool) are not findings and are left out.
//!
//! A message's `{0}`, `{1}`, … placeholders are filled in one pass, and the message is cut at
//! [`MAX_MESSAGE_BYTES`] bytes (ending with `…`).
//!
//! The location is the first `physicalLocation` as `"uri:startLine"` (just the `uri` when there
//! is no region), else the first logical location's `fullyQualifiedName` or `name`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{from_json, ReportError};

/// Longest finding message, in bytes, once the placeholders of a SARIF message are filled in;
/// a longer one is cut and ends with `…`.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;

/// Security severity from which a finding is critical.
pub const CRITICAL_SECURITY_SEVERITY: f64 = 9.0;

/// One finding of a scanner.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Finding {
    /// The rule (or advisory) that produced it.
    pub rule_id: String,
    /// The effective SARIF level: `"error"`, `"warning"`, `"note"` or `"none"`.
    pub level: String,
    /// The `security-severity` (SARIF) or CVSS base score (cargo audit), when known.
    pub security_severity: Option<f64>,
    /// What the scanner said.
    pub message: String,
    /// `"path:line"`, `"path"`, or `None` when the finding has no location.
    pub location: Option<String>,
    /// Whether the finding is critical (see the [module documentation](self)).
    pub critical: bool,
}

/// The findings of one scan report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScanFindings {
    /// The scanner's name (the names of all runs' tools, joined with `", "`).
    pub tool: String,
    /// Every finding, in document order.
    pub findings: Vec<Finding>,
}

impl ScanFindings {
    /// How many findings are critical.
    pub fn critical(&self) -> usize {
        self.findings.iter().filter(|f| f.critical).count()
    }

    /// The critical findings.
    pub fn critical_findings(&self) -> impl Iterator<Item = &Finding> {
        self.findings.iter().filter(|f| f.critical)
    }
}

/// Parses a SARIF 2.1.0 log: all results of all runs. See the [module documentation](self) for
/// the level and severity rules.
///
/// `source_name` names the report in errors (usually its file name).
pub fn parse_sarif(source_name: &str, json: &str) -> Result<ScanFindings, ReportError> {
    let log: Log = from_json(source_name, json)?;
    if let Some(version) = &log.version {
        if version != "2.1.0" {
            return Err(ReportError::invalid(
                source_name,
                "version",
                None,
                format!("unsupported SARIF version \"{version}\" (expected \"2.1.0\")"),
            ));
        }
    }
    let mut tools: Vec<&str> = Vec::new();
    let mut findings = Vec::new();
    for run in &log.runs {
        let name = run.tool.driver.name.as_str();
        if !tools.contains(&name) {
            tools.push(name);
        }
        for result in run.results.iter().flatten() {
            if result.is_suppressed() {
                continue;
            }
            findings.push(finding(run, result));
        }
    }
    Ok(ScanFindings {
        tool: tools.join(", "),
        findings,
    })
}

fn finding(run: &Run, result: &SarifResult) -> Finding {
    let rule = run.rule_for(result);
    let rule_id = result
        .rule_id
        .clone()
        .or_else(|| result.rule.as_ref().and_then(|r| r.id.clone()))
        .or_else(|| rule.map(|r| r.id.clone()))
        .unwrap_or_default();
    let is_fail = matches!(result.kind.as_deref(), None | Some("fail"));
    let level = match (&result.level, is_fail) {
        (Some(level), _) => level.clone(),
        (None, false) => "none".to_owned(),
        (None, true) => rule
            .and_then(|r| r.default_configuration.as_ref())
            .and_then(|c| c.level.clone())
            .unwrap_or_else(|| "warning".to_owned()),
    };
    let security_severity = result
        .properties
        .get("security-severity")
        .and_then(parse_severity)
        .or_else(|| {
            rule.and_then(|r| r.properties.get("security-severity"))
                .and_then(parse_severity)
        });
    let critical = is_fail && (level == "error" || security_severity.is_some_and(|s| s >= CRITICAL_SECURITY_SEVERITY));
    Finding {
        rule_id,
        level,
        security_severity,
        message: result.message.render(rule),
        location: result.location(),
        critical,
    }
}

fn parse_severity(value: &serde_json::Value) -> Option<f64> {
    match value {
        serde_json::Value::Number(n) => n.as_f64(),
        serde_json::Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
    .filter(|s: &f64| s.is_finite())
}

// The subset of the SARIF 2.1.0 object model that is read. Everything else is ignored.

#[derive(Deserialize)]
struct Log {
    #[serde(default)]
    version: Option<String>,
    runs: Vec<Run>,
}

#[derive(Deserialize)]
struct Run {
    tool: Tool,
    /// `null` or absent means the tool did not compute results.
    #[serde(default)]
    results: Option<Vec<SarifResult>>,
}

impl Run {
    fn rule_for(&self, result: &SarifResult) -> Option<&Rule> {
        let reference = result.rule.as_ref();
        let component = match reference.and_then(|r| r.tool_component.as_ref()) {
            Some(ToolComponentReference { index: Some(i), .. }) if *i >= 0 => {
                usize::try_from(*i).ok().and_then(|i| self.tool.extensions.get(i))
            }
            Some(ToolComponentReference { name: Some(name), .. }) if *name != self.tool.driver.name => {
                self.tool.extensions.iter().find(|e| e.name == *name)
            }
            _ => None,
        }
        .unwrap_or(&self.tool.driver);
        let index = result.rule_index.or_else(|| reference.and_then(|r| r.index));
        if let Some(rule) = index
            .and_then(|i| usize::try_from(i).ok())
            .and_then(|i| component.rules.get(i))
        {
            return Some(rule);
        }
        let id = result
            .rule_id
            .as_ref()
            .or_else(|| reference.and_then(|r| r.id.as_ref()))?;
        find_rule(component, id)
            .or_else(|| find_rule(&self.tool.driver, id))
            .or_else(|| self.tool.extensions.iter().find_map(|c| find_rule(c, id)))
    }
}

fn find_rule<'a>(component: &'a ToolComponent, id: &str) -> Option<&'a Rule> {
    component.rules.iter().find(|r| r.id == id)
}

#[derive(Deserialize)]
struct Tool {
    driver: ToolComponent,
    #[serde(default)]
    extensions: Vec<ToolComponent>,
}

#[derive(Deserialize)]
struct ToolComponent {
    name: String,
    #[serde(default)]
    rules: Vec<Rule>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Rule {
    id: String,
    #[serde(default)]
    default_configuration: Option<Configuration>,
    #[serde(default)]
    short_description: Option<Message>,
    #[serde(default)]
    message_strings: BTreeMap<String, Message>,
    #[serde(default)]
    properties: BTreeMap<String, serde_json::Value>,
}

#[derive(Deserialize)]
struct Configuration {
    #[serde(default)]
    level: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SarifResult {
    #[serde(default)]
    rule_id: Option<String>,
    /// -1 (the specification's default) or absent when not given.
    #[serde(default)]
    rule_index: Option<i64>,
    #[serde(default)]
    rule: Option<RuleReference>,
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    level: Option<String>,
    #[serde(default)]
    message: Message,
    #[serde(default)]
    locations: Vec<Location>,
    #[serde(default)]
    suppressions: Vec<Suppression>,
    #[serde(default)]
    properties: BTreeMap<String, serde_json::Value>,
}

impl SarifResult {
    fn is_suppressed(&self) -> bool {
        self.suppressions
            .iter()
            .any(|s| matches!(s.status.as_deref(), None | Some("accepted")))
    }

    fn location(&self) -> Option<String> {
        let physical = self.locations.iter().find_map(|l| l.physical_location.as_ref());
        if let Some(uri) = physical
            .and_then(|p| p.artifact_location.as_ref())
            .and_then(|a| a.uri.as_ref())
        {
            let line = physical.and_then(|p| p.region.as_ref()).and_then(|r| r.start_line);
            return Some(match line {
                Some(line) => format!("{uri}:{line}"),
                None => uri.clone(),
            });
        }
        self.locations
            .iter()
            .flat_map(|l| &l.logical_locations)
            .find_map(|l| l.fully_qualified_name.clone().or_else(|| l.name.clone()))
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RuleReference {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    index: Option<i64>,
    #[serde(default)]
    tool_component: Option<ToolComponentReference>,
}

#[derive(Deserialize)]
struct ToolComponentReference {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    index: Option<i64>,
}

#[derive(Deserialize, Default)]
struct Message {
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    markdown: Option<String>,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    arguments: Vec<String>,
}

impl Message {
    /// The message text: `text`, else `markdown`, else the rule's message string `id`, with the
    /// `{0}`, `{1}`, … placeholders replaced by the arguments; else the rule's short description.
    fn render(&self, rule: Option<&Rule>) -> String {
        let template = self
            .text
            .as_deref()
            .or(self.markdown.as_deref())
            .or_else(|| {
                let id = self.id.as_ref()?;
                let string = rule?.message_strings.get(id)?;
                string.text.as_deref().or(string.markdown.as_deref())
            })
            .or_else(|| rule?.short_description.as_ref()?.text.as_deref());
        let Some(template) = template else {
            return String::new();
        };
        render_template(template, &self.arguments)
    }
}

/// Replaces `{0}`, `{1}`, … in one pass (an argument's own text is not searched for placeholders;
/// a placeholder without an argument stays as written). The result is cut at
/// [`MAX_MESSAGE_BYTES`], with `…` appended: a short template repeating a placeholder with a long
/// argument would otherwise grow without bound.
fn render_template(template: &str, arguments: &[String]) -> String {
    let mut out = String::new();
    let mut rest = template;
    let push = |out: &mut String, piece: &str| -> bool {
        if out.len() + piece.len() <= MAX_MESSAGE_BYTES {
            out.push_str(piece);
            return true;
        }
        let mut end = MAX_MESSAGE_BYTES - out.len();
        while !piece.is_char_boundary(end) {
            end -= 1;
        }
        out.push_str(&piece[..end]);
        out.push('…');
        false
    };
    while let Some(open) = rest.find('{') {
        if !push(&mut out, &rest[..open]) {
            return out;
        }
        let after = &rest[open + 1..];
        let digits = after.bytes().take_while(u8::is_ascii_digit).count();
        let argument = (digits > 0 && after[digits..].starts_with('}'))
            .then(|| after[..digits].parse::<usize>().ok())
            .flatten()
            .and_then(|i| arguments.get(i));
        match argument {
            Some(argument) => {
                if !push(&mut out, argument) {
                    return out;
                }
                rest = &after[digits + 1..];
            }
            None => {
                if !push(&mut out, "{") {
                    return out;
                }
                rest = after;
            }
        }
    }
    push(&mut out, rest);
    out
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Location {
    #[serde(default)]
    physical_location: Option<PhysicalLocation>,
    #[serde(default)]
    logical_locations: Vec<LogicalLocation>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PhysicalLocation {
    #[serde(default)]
    artifact_location: Option<ArtifactLocation>,
    #[serde(default)]
    region: Option<Region>,
}

#[derive(Deserialize)]
struct ArtifactLocation {
    #[serde(default)]
    uri: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Region {
    #[serde(default)]
    start_line: Option<u64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct LogicalLocation {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    fully_qualified_name: Option<String>,
}

#[derive(Deserialize)]
struct Suppression {
    #[serde(default)]
    status: Option<String>,
}
