//! A parser of the Prometheus text exposition format (version 0.0.4), as served on `/metrics`.
//!
//! # Why our own parser
//!
//! The crates.io candidate, `prometheus-parse` 0.2.5, splits label sets on `,` and `=` with regular
//! expressions and does not unescape label values, so a value holding a comma, a brace or an escaped quote
//! is misread; it also brings `regex`, `itertools`, `once_cell` and `chrono` into the tree. OpenMetrics
//! parsers on crates.io are under LGPL or heavier still. The 0.0.4 format is small, so this module parses it
//! directly (about 250 lines, no dependency) and is fuzzed with proptest: random label values round-trip
//! through [`escape_label_value`] and [`parse`], and arbitrary input never panics.
//!
//! # What is accepted
//!
//! One item per line (`\n`, optionally `\r\n`), leading blanks allowed:
//!
//! - blank lines;
//! - `# HELP name docstring` (docstring escapes `\\` and `\n`) and `# TYPE name counter|gauge|histogram|summary|untyped`;
//!   any other line starting with `#` is a comment;
//! - samples: `name{label="value",…} value [timestamp]` where the name matches `[a-zA-Z_:][a-zA-Z0-9_:]*`, label
//!   names match `[a-zA-Z_][a-zA-Z0-9_]*` and appear at most once, label values use the escapes `\\`, `\"` and
//!   `\n`, the label set may be empty or end with a comma, the value is a float (`NaN`, `+Inf` and `-Inf`
//!   included) and the optional timestamp is an integer number of milliseconds.
//!
//! Anything else makes the whole exposition invalid, like a Prometheus server failing a scrape: the
//! [`ParseError`] names the line.

use std::collections::BTreeMap;
use std::fmt;

/// The type a `# TYPE` line gives a metric family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricType {
    Counter,
    Gauge,
    Histogram,
    Summary,
    Untyped,
}

impl MetricType {
    fn parse(text: &str) -> Option<MetricType> {
        Some(match text {
            "counter" => MetricType::Counter,
            "gauge" => MetricType::Gauge,
            "histogram" => MetricType::Histogram,
            "summary" => MetricType::Summary,
            "untyped" => MetricType::Untyped,
            _ => return None,
        })
    }
}

/// One sample line.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The sample's name, suffix included (`x_bucket`, `x_sum`, `x_count` for a histogram `x`).
    pub name: String,
    /// Label names to unescaped values.
    pub labels: BTreeMap<String, String>,
    pub value: f64,
    /// Milliseconds since the epoch, when the exposition gives one.
    pub timestamp_ms: Option<i64>,
}

impl fmt::Display for Sample {
    /// The sample as an exposition line (without the line feed): `name{a="1",b="x\"y"} 3 1700000000000`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}",
            series_name(&self.name, &self.labels),
            format_value(self.value)
        )?;
        if let Some(ts) = self.timestamp_ms {
            write!(f, " {ts}")?;
        }
        Ok(())
    }
}

/// A parsed exposition: its samples in order, and the `# TYPE` and `# HELP` of its metric families.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Exposition {
    pub samples: Vec<Sample>,
    pub types: BTreeMap<String, MetricType>,
    pub help: BTreeMap<String, String>,
}

/// Why an exposition could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// 1-based line number.
    pub line: usize,
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

impl std::error::Error for ParseError {}

/// Escapes a label value for the text format: backslash, double quote and line feed.
pub fn escape_label_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// A float as the text format writes it: `NaN`, `+Inf`, `-Inf`, or the shortest decimal that reads back
/// exactly.
pub fn format_value(value: f64) -> String {
    if value.is_nan() {
        "NaN".to_owned()
    } else if value == f64::INFINITY {
        "+Inf".to_owned()
    } else if value == f64::NEG_INFINITY {
        "-Inf".to_owned()
    } else {
        value.to_string()
    }
}

/// `name{a="1",b="2"}` (or just `name` without labels), values escaped.
pub fn series_name(name: &str, labels: &BTreeMap<String, String>) -> String {
    if labels.is_empty() {
        return name.to_owned();
    }
    let inner: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", escape_label_value(v)))
        .collect();
    format!("{name}{{{}}}", inner.join(","))
}

/// Parses a float value: decimal or exponent notation, `NaN`, `+Inf`, `-Inf` (any case, `Inf` and
/// `Infinity` with an optional sign, as Go's `strconv.ParseFloat` reads them).
pub fn parse_value(text: &str) -> Option<f64> {
    let ok_chars = text
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'));
    if text.is_empty() || !ok_chars {
        return None;
    }
    text.parse::<f64>().ok()
}

/// Parses a whole exposition.
pub fn parse(text: &str) -> Result<Exposition, ParseError> {
    let mut out = Exposition::default();
    for (index, raw) in text.split('\n').enumerate() {
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        let fail = |message: String| ParseError {
            line: index + 1,
            message,
        };
        let line = line.trim_start_matches([' ', '\t']);
        if line.trim_end_matches([' ', '\t']).is_empty() {
            continue;
        }
        if let Some(comment) = line.strip_prefix('#') {
            parse_comment(comment, &mut out).map_err(fail)?;
        } else {
            out.samples.push(parse_sample(line).map_err(fail)?);
        }
    }
    Ok(out)
}

fn is_blank(c: char) -> bool {
    c == ' ' || c == '\t'
}

/// `# HELP …`, `# TYPE …` or any other comment.
fn parse_comment(comment: &str, out: &mut Exposition) -> Result<(), String> {
    let rest = comment.trim_start_matches(is_blank);
    let (keyword, rest) = rest.split_once(is_blank).unwrap_or((rest, ""));
    if keyword != "HELP" && keyword != "TYPE" {
        return Ok(());
    }
    let rest = rest.trim_start_matches(is_blank);
    let (name, rest) = rest.split_once(is_blank).unwrap_or((rest, ""));
    if !is_metric_name(name) {
        return Err(format!("# {keyword} line without a valid metric name (got {name:?})"));
    }
    if keyword == "HELP" {
        let doc = unescape_help(rest.trim_start_matches(is_blank));
        if out.help.insert(name.to_owned(), doc).is_some() {
            return Err(format!("second # HELP line for {name}"));
        }
    } else {
        let kind = rest.trim_matches(is_blank);
        let kind = MetricType::parse(kind).ok_or_else(|| {
            format!("# TYPE {name}: unknown type {kind:?} (expected counter, gauge, histogram, summary or untyped)")
        })?;
        if out.types.insert(name.to_owned(), kind).is_some() {
            return Err(format!("second # TYPE line for {name}"));
        }
    }
    Ok(())
}

fn unescape_help(doc: &str) -> String {
    let mut out = String::with_capacity(doc.len());
    let mut chars = doc.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('\\') => out.push('\\'),
            Some('n') => out.push('\n'),
            // Older exporters write other backslashes verbatim; keep them as they are.
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
            None => out.push('\\'),
        }
    }
    out
}

/// Whether `name` is a valid metric name: `[a-zA-Z_:][a-zA-Z0-9_:]*`.
pub fn is_metric_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_' || b == b':')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':')
}

/// Whether `name` is a valid label name: `[a-zA-Z_][a-zA-Z0-9_]*`.
pub fn is_label_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Splits off the longest prefix whose characters satisfy `pred`.
fn take_while(text: &str, pred: impl Fn(char) -> bool) -> (&str, &str) {
    let end = text.find(|c: char| !pred(c)).unwrap_or(text.len());
    text.split_at(end)
}

fn parse_sample(line: &str) -> Result<Sample, String> {
    let (name, mut rest) = take_while(line, |c| c.is_ascii_alphanumeric() || c == '_' || c == ':');
    if !is_metric_name(name) {
        let shown: String = line.chars().take(40).collect();
        return Err(format!("expected a metric name at the start of {shown:?}"));
    }
    let mut labels = BTreeMap::new();
    if let Some(after) = rest.trim_start_matches(is_blank).strip_prefix('{') {
        rest = parse_labels(after, name, &mut labels)?;
    }
    if rest.starts_with(|c: char| !is_blank(c)) {
        return Err(format!(
            "{name}: unexpected {:?} (expected labels or a blank before the value)",
            first_chars(rest)
        ));
    }
    let (value_text, rest) = split_token(rest);
    if value_text.is_empty() {
        return Err(format!("{name}: no value"));
    }
    let value = parse_value(value_text).ok_or_else(|| format!("{name}: invalid value {value_text:?}"))?;
    let (ts_text, rest) = split_token(rest);
    let timestamp_ms = if ts_text.is_empty() {
        None
    } else {
        Some(
            ts_text
                .parse::<i64>()
                .map_err(|_| format!("{name}: invalid timestamp {ts_text:?} (expected integer milliseconds)"))?,
        )
    };
    if !rest.trim_matches(is_blank).is_empty() {
        return Err(format!("{name}: unexpected text after the sample: {:?}", rest.trim()));
    }
    Ok(Sample {
        name: name.to_owned(),
        labels,
        value,
        timestamp_ms,
    })
}

/// Skips blanks, then returns the next run of non-blank characters and what follows it.
fn split_token(text: &str) -> (&str, &str) {
    let text = text.trim_start_matches(is_blank);
    take_while(text, |c| !is_blank(c))
}

/// Parses `a="1",b="2"}` (the opening brace already consumed) and returns what follows the closing brace.
fn parse_labels<'a>(mut rest: &'a str, metric: &str, labels: &mut BTreeMap<String, String>) -> Result<&'a str, String> {
    loop {
        rest = rest.trim_start_matches(is_blank);
        if let Some(after) = rest.strip_prefix('}') {
            return Ok(after);
        }
        let (label, after) = take_while(rest, |c| c.is_ascii_alphanumeric() || c == '_');
        if !is_label_name(label) {
            return Err(format!(
                "{metric}: expected a label name or '}}', got {:?}",
                first_chars(rest)
            ));
        }
        rest = after.trim_start_matches(is_blank);
        rest = rest
            .strip_prefix('=')
            .ok_or_else(|| format!("{metric}: expected '=' after label {label}"))?
            .trim_start_matches(is_blank);
        rest = rest
            .strip_prefix('"')
            .ok_or_else(|| format!("{metric}: expected '\"' to open the value of label {label}"))?;
        let (value, after) = parse_label_value(rest).map_err(|e| format!("{metric}: label {label}: {e}"))?;
        if labels.insert(label.to_owned(), value).is_some() {
            return Err(format!("{metric}: label {label} appears twice"));
        }
        rest = after.trim_start_matches(is_blank);
        if let Some(after) = rest.strip_prefix(',') {
            rest = after;
        } else if !rest.starts_with('}') {
            return Err(format!("{metric}: expected ',' or '}}' after label {label}"));
        }
    }
}

/// Reads an escaped label value up to its closing quote; returns it and what follows the quote.
fn parse_label_value(text: &str) -> Result<(String, &str), String> {
    let mut out = String::new();
    let mut chars = text.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Ok((out, &text[i + 1..])),
            '\\' => match chars.next() {
                Some((_, '\\')) => out.push('\\'),
                Some((_, '"')) => out.push('"'),
                Some((_, 'n')) => out.push('\n'),
                Some((_, other)) => return Err(format!("invalid escape sequence \\{other}")),
                None => break,
            },
            c => out.push(c),
        }
    }
    Err("unterminated value (missing closing '\"')".to_owned())
}

fn first_chars(text: &str) -> String {
    text.chars().take(20).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    const EXAMPLE: &str = "# HELP example_http_requests_total Requests to / answered, by HTTP status code.\n\
# TYPE example_http_requests_total counter\n\
example_http_requests_total{version=\"1.2.0\",instance=\"1\",code=\"200\"} 2\n\
# TYPE example_http_request_duration_seconds histogram\n\
example_http_request_duration_seconds_bucket{version=\"1.2.0\",instance=\"1\",le=\"0.005\"} 1\n\
example_http_request_duration_seconds_bucket{version=\"1.2.0\",instance=\"1\",le=\"+Inf\"} 3 1700000000000\n\
example_http_request_duration_seconds_sum{version=\"1.2.0\",instance=\"1\"} 3.203\n\
\n\
example_up 1\n";

    #[test]
    fn parses_the_example_services_exposition() {
        let text = "# HELP example_http_requests_total Requests to / answered, by HTTP status code.\n\
# TYPE example_http_requests_total counter\n\
example_http_requests_total{version=\"1.2.0\",instance=\"1\",code=\"200\"} 2\n\
example_http_requests_total{version=\"1.2.0\",instance=\"1\",code=\"500\"} 1\n\
# TYPE example_http_request_duration_seconds histogram\n\
example_http_request_duration_seconds_bucket{version=\"1.2.0\",instance=\"1\",le=\"0.005\"} 1\n\
example_http_request_duration_seconds_bucket{version=\"1.2.0\",instance=\"1\",le=\"+Inf\"} 3\n\
example_http_request_duration_seconds_sum{version=\"1.2.0\",instance=\"1\"} 3.203\n\
\n\
example_up 1\n";
        let exp = parse(text).unwrap();
        assert_eq!(exp.samples.len(), 6);
        assert_eq!(exp.types["example_http_requests_total"], MetricType::Counter);
        assert_eq!(
            exp.types["example_http_request_duration_seconds"],
            MetricType::Histogram
        );
        assert_eq!(
            exp.help["example_http_requests_total"],
            "Requests to / answered, by HTTP status code."
        );
        assert_eq!(
            exp.samples[1],
            Sample {
                name: "example_http_requests_total".into(),
                labels: labels(&[("version", "1.2.0"), ("instance", "1"), ("code", "500")]),
                value: 1.0,
                timestamp_ms: None,
            }
        );
        assert_eq!(exp.samples[3].labels["le"], "+Inf");
        assert_eq!(exp.samples[5].name, "example_up");
        assert!(exp.samples[5].labels.is_empty());
    }

    #[test]
    fn values_timestamps_escapes_and_blanks() {
        let text = "  a NaN\r\nb{} +Inf 1700000000000\nc{x=\"q\\\"\\\\\\n,}{=\" , } -Inf -5\n\
                    d{ x = \"1\" , y=\"2\", }\t1e-3  \n# a comment\n#TYPE e gauge\ne:f 0x10\n";
        // `0x10` is not a value Prometheus reads.
        assert!(parse(text).is_err());
        let exp = parse(&text.replace("0x10", "-0.5")).unwrap();
        let s = &exp.samples;
        assert!(s[0].value.is_nan());
        assert_eq!(
            (s[1].value, s[1].timestamp_ms),
            (f64::INFINITY, Some(1_700_000_000_000))
        );
        assert_eq!(s[2].labels["x"], "q\"\\\n,}{=");
        assert_eq!((s[2].value, s[2].timestamp_ms), (f64::NEG_INFINITY, Some(-5)));
        assert_eq!(s[3].labels, labels(&[("x", "1"), ("y", "2")]));
        assert_eq!(s[3].value, 0.001);
        assert_eq!(exp.types["e"], MetricType::Gauge);
        assert_eq!((s[4].name.as_str(), s[4].value), ("e:f", -0.5));
    }

    #[test]
    fn errors_name_the_line() {
        let cases = [
            ("ok 1\nbad{x=\"1\" 2\n", 2, "expected ',' or '}' after label x"),
            ("x{a=\"\\t\"} 1", 1, "invalid escape sequence \\t"),
            ("x{a=\"open} 1", 1, "unterminated value"),
            ("x{a=\"1\",a=\"2\"} 1", 1, "label a appears twice"),
            ("x", 1, "x: no value"),
            ("x one", 1, "invalid value \"one\""),
            ("x 1 2.5", 1, "invalid timestamp"),
            ("x 1 2 3", 1, "unexpected text"),
            ("\n\n9x 1", 3, "expected a metric name"),
            ("# TYPE x countr", 1, "unknown type \"countr\""),
            ("# TYPE x counter\n# TYPE x gauge", 2, "second # TYPE line for x"),
            ("x{1a=\"1\"} 1", 1, "expected a label name"),
            ("x{a \"1\"} 1", 1, "expected '=' after label a"),
            ("x-1 2", 1, "x: unexpected \"-1 2\""),
            ("x{a=\"1\"}2", 1, "x: unexpected \"2\""),
        ];
        for (text, line, message) in cases {
            let err = parse(text).unwrap_err();
            assert_eq!(err.line, line, "{text:?}: {err}");
            assert!(err.message.contains(message), "{text:?}: {err}");
        }
    }

    #[test]
    fn display_writes_an_exposition_line() {
        let sample = Sample {
            name: "m".into(),
            labels: labels(&[("b", "x\"y"), ("a", "1")]),
            value: f64::INFINITY,
            timestamp_ms: Some(7),
        };
        assert_eq!(sample.to_string(), "m{a=\"1\",b=\"x\\\"y\"} +Inf 7");
    }

    fn label_name() -> impl Strategy<Value = String> {
        "[a-zA-Z_][a-zA-Z0-9_]{0,8}"
    }

    /// Arbitrary text, and text dense in the characters that need escaping or end a label set.
    fn label_value() -> impl Strategy<Value = String> {
        prop_oneof![any::<String>(), r#"[a-z"\\\n\r\t,{}= #]{0,12}"#]
    }

    proptest! {
        #[test]
        fn label_values_round_trip(
            name in "[a-zA-Z_:][a-zA-Z0-9_:]{0,12}",
            pairs in proptest::collection::btree_map(label_name(), label_value(), 0..5),
            value in any::<f64>(),
            timestamp_ms in proptest::option::of(any::<i64>()),
        ) {
            let sample = Sample { name, labels: pairs, value, timestamp_ms };
            let text = format!("# TYPE {} untyped\n{sample}\n", sample.name);
            let exp = parse(&text).map_err(|e| TestCaseError::fail(format!("{e} in {text:?}")))?;
            prop_assert_eq!(exp.samples.len(), 1);
            let got = &exp.samples[0];
            prop_assert_eq!(&got.name, &sample.name);
            prop_assert_eq!(&got.labels, &sample.labels);
            prop_assert_eq!(got.timestamp_ms, sample.timestamp_ms);
            prop_assert!(got.value == sample.value || (got.value.is_nan() && sample.value.is_nan()));
        }

        #[test]
        fn arbitrary_input_never_panics(text in any::<String>()) {
            let _ = parse(&text);
        }

        /// Structure-aware: a real exposition with spans cut, flipped, doubled or spliced with
        /// fragments that end label sets, escape, or overflow numbers.
        #[test]
        fn mutated_expositions_never_panic(
            edits in proptest::collection::vec(
                (any::<usize>(), 0usize..40, proptest::sample::select(&[
                    "", "{", "}", "\"", "\\", "=", ",", "\n", "\r\n", " ", "#", "# TYPE ", "# HELP x \\",
                    "NaN", "+Inf", "-Inf", "1e999", "99999999999999999999", "\u{0}", "é", "le=\"",
                ][..])),
                1..6,
            ),
        ) {
            let mut text = EXAMPLE.to_string();
            for (at, len, insert) in edits {
                let mut start = at % (text.len() + 1);
                while !text.is_char_boundary(start) {
                    start -= 1;
                }
                let mut end = (start + len).min(text.len());
                while !text.is_char_boundary(end) {
                    end -= 1;
                }
                let doubled = if len % 3 == 0 { text[start..end].to_string() } else { String::new() };
                text.replace_range(start..end, &format!("{insert}{doubled}"));
            }
            if let Err(e) = parse(&text) {
                prop_assert!(e.line >= 1 && e.line <= text.lines().count() + 1, "{e} in {text:?}");
                prop_assert!(!e.message.is_empty());
            }
        }

        #[test]
        fn exposition_like_input_never_panics(text in r#"[a-z_:{}=",\\# \t\n\r+\-.0-9eINfaé]{0,80}"#) {
            let _ = parse(&text);
        }
    }
}
