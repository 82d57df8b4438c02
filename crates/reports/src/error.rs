//! The one error type of this crate.

use std::fmt;

/// The text format a report is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// JUnit XML.
    Xml,
    /// SARIF or `cargo audit --json`.
    Json,
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::Xml => "XML",
            Format::Json => "JSON",
        })
    }
}

/// Why a report could not be read.
///
/// Every variant names the report by the `source_name` the caller passed in (usually a file
/// name), and says where in it the problem is, as precisely as the format allows.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ReportError {
    /// The text is not well-formed XML or JSON.
    #[error("{source_name}:{line}:{column}: malformed {format}: {message}")]
    Malformed {
        /// The name the caller gave the report.
        source_name: String,
        /// The format the text was read as.
        format: Format,
        /// 1-based line of the problem.
        line: usize,
        /// 1-based column (in characters) of the problem.
        column: usize,
        /// What the parser found wrong.
        message: String,
    },
    /// The text is well-formed but is not the report it should be: a missing or mistyped field,
    /// an unexpected root element, a count that is not a number, an unparsable CVSS vector.
    #[error("{source_name}{}: {path}: {message}", line.map(|l| format!(":{l}")).unwrap_or_default())]
    Invalid {
        /// The name the caller gave the report.
        source_name: String,
        /// Where in the document: an element path (`/testsuites/testsuite`) or a JSON path
        /// (`runs[0].tool.driver`).
        path: String,
        /// 1-based line, when known.
        line: Option<usize>,
        /// What is wrong there.
        message: String,
    },
    /// [`parse_scan`](crate::parse_scan) could not tell which kind of report the text is.
    #[error("{source_name}: {message}")]
    UnknownFormat {
        /// The name the caller gave the report.
        source_name: String,
        /// What was looked for and not found.
        message: String,
    },
}

impl ReportError {
    /// The name the caller gave the report this error is about.
    pub fn source_name(&self) -> &str {
        match self {
            ReportError::Malformed { source_name, .. }
            | ReportError::Invalid { source_name, .. }
            | ReportError::UnknownFormat { source_name, .. } => source_name,
        }
    }

    /// The 1-based line of the problem, when known.
    pub fn line(&self) -> Option<usize> {
        match self {
            ReportError::Malformed { line, .. } => Some(*line),
            ReportError::Invalid { line, .. } => *line,
            ReportError::UnknownFormat { .. } => None,
        }
    }

    pub(crate) fn invalid(
        source_name: &str,
        path: impl Into<String>,
        line: Option<usize>,
        message: impl Into<String>,
    ) -> Self {
        ReportError::Invalid {
            source_name: source_name.to_owned(),
            path: path.into(),
            line,
            message: message.into(),
        }
    }
}

/// Deserializes JSON text into `T`, turning syntax errors into [`ReportError::Malformed`] and
/// shape errors into [`ReportError::Invalid`] with the JSON path of the offending value.
pub(crate) fn from_json<T: serde::de::DeserializeOwned>(source_name: &str, json: &str) -> Result<T, ReportError> {
    let mut de = serde_json::Deserializer::from_str(json);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        json_error(source_name, &path, &inner)
    })?;
    de.end().map_err(|err| json_error(source_name, ".", &err))?;
    Ok(value)
}

pub(crate) fn json_error(source_name: &str, path: &str, err: &serde_json::Error) -> ReportError {
    use serde_json::error::Category;
    // serde_json appends " at line L column C" to its messages; the position is reported apart.
    let message = strip_position(&err.to_string());
    match err.classify() {
        Category::Syntax | Category::Eof | Category::Io => ReportError::Malformed {
            source_name: source_name.to_owned(),
            format: Format::Json,
            line: err.line().max(1),
            column: err.column().max(1),
            message,
        },
        Category::Data => ReportError::invalid(source_name, path, (err.line() > 0).then_some(err.line()), message),
    }
}

fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(at) if message[at..].contains(" column ") => message[..at].to_owned(),
        _ => message.to_owned(),
    }
}

/// 1-based line and column (in characters) of a byte offset into `text`.
pub(crate) fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_column_counts_from_one() {
        let text = "ab\ncdé\nf";
        assert_eq!(line_column(text, 0), (1, 1));
        assert_eq!(line_column(text, 3), (2, 1));
        assert_eq!(line_column(text, 7), (2, 4));
        assert_eq!(line_column(text, 8), (3, 1));
        assert_eq!(line_column(text, 99), (3, 2));
    }

    #[test]
    fn serde_json_position_suffix_is_stripped() {
        assert_eq!(strip_position("expected value at line 3 column 7"), "expected value");
        assert_eq!(strip_position("no position here"), "no position here");
    }
}
