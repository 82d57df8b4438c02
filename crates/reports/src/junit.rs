//! JUnit XML test reports.
//!
//! There is no single JUnit XML standard; this reader accepts what the common producers write
//! (cargo-nextest, pytest, Maven Surefire, Jest's and Go's JUnit reporters):
//!
//! - the root is `<testsuites>` with `<testsuite>` children, or a single `<testsuite>`;
//! - nested `<testsuite>`s are flattened: every suite that holds `<testcase>`s becomes one
//!   [`SuiteReport`]. A suite that only groups other suites (no `<testcase>` of its own) is not
//!   reported itself: its attributes would count its children's tests a second time;
//! - counts come from the `<testcase>` elements: a testcase with a `<failure>` is a failure, one
//!   with an `<error>` (and no `<failure>`) an error, one with `<skipped>` (and neither) skipped.
//!   Each testcase counts once. The suite's own `tests`/`failures`/`errors`/`skipped` attributes
//!   are used only when it has no testcases at all (some runners omit them, some get them wrong);
//! - `<testcase>`s placed directly under `<testsuites>` go into a suite named after the
//!   `<testsuites>` element (or the source name);
//! - Unknown elements and attributes (`<properties>`, `<system-out>`, `<flakyFailure>`, …) are
//!   ignored. Entities, character references and CDATA are decoded.
//!
//! Note that cargo-nextest leaves ignored tests out of its JUnit report altogether.

use quick_xml::escape::resolve_predefined_entity;
use quick_xml::events::attributes::AttrError;
use quick_xml::events::{BytesStart, Event};
use quick_xml::{Reader, XmlVersion};
use serde::Serialize;

use crate::error::{line_column, Format, ReportError};

/// One suite's result from a JUnit XML report.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SuiteReport {
    /// The suite's `name` attribute (empty when it has none).
    pub name: String,
    /// Number of tests in the suite.
    pub tests: u32,
    /// Tests that failed (a `<failure>`: an assertion or panic).
    pub failures: u32,
    /// Tests that errored (an `<error>`: the test could not run properly, e.g. a fixture failed).
    pub errors: u32,
    /// Tests that were skipped.
    pub skipped: u32,
    /// One line per failed or errored test, in document order:
    /// `"classname::name: first line of message"`.
    ///
    /// The message is the `message` attribute of the `<failure>`/`<error>`, or the first
    /// non-empty line of its text when the attribute is missing or empty, else its `type`
    /// attribute. A Rust panic header (`thread 'x' panicked at src/lib.rs:33:9`), which says
    /// nothing about what went wrong, is replaced by the panic message from the element's text
    /// followed by `(panicked at src/lib.rs:33:9)`.
    pub failed_tests: Vec<String>,
}

impl SuiteReport {
    /// Tests that neither failed, errored nor were skipped.
    pub fn passed(&self) -> u32 {
        self.tests
            .saturating_sub(self.failures)
            .saturating_sub(self.errors)
            .saturating_sub(self.skipped)
    }
}

/// Parses a JUnit XML document: a `<testsuites>` root with `<testsuite>` children, or a single
/// `<testsuite>` root. See the [module documentation](self) for how counts are taken.
///
/// `source_name` names the report in errors (usually its file name).
pub fn parse_junit(source_name: &str, xml: &str) -> Result<Vec<SuiteReport>, ReportError> {
    Parser::new(source_name, xml).run()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Passed,
    Skipped,
    Error,
    Failure,
}

/// A `<testsuite>` being read.
#[derive(Default)]
struct OpenSuite {
    report: SuiteReport,
    /// The counts from the element's attributes, used when it has no testcases.
    attribute_counts: [u32; 4],
    testcases: u32,
    child_suites: u32,
    /// Depth of the element in the element stack.
    depth: usize,
    /// Position of the suite's start among all suites, to report them in document order.
    order: usize,
}

/// A `<testcase>` being read.
struct OpenCase {
    id: String,
    outcome: Outcome,
    /// `message` attribute of the first `<failure>`/`<error>` (empty when it has none): set
    /// once the first one is seen.
    message: Option<String>,
    /// `type` attribute of the first `<failure>`/`<error>`.
    kind: String,
    /// Text of the first `<failure>`/`<error>`.
    text: String,
    /// Whether the text of the current child element is being collected.
    collecting: bool,
    depth: usize,
}

struct Parser<'a> {
    source_name: &'a str,
    xml: &'a str,
    reader: Reader<&'a [u8]>,
    version: XmlVersion,
    /// Names of the open elements.
    stack: Vec<String>,
    suites: Vec<OpenSuite>,
    case: Option<OpenCase>,
    done: Vec<(usize, SuiteReport)>,
    /// Suites started so far.
    started: usize,
    /// Suite collecting testcases placed directly under `<testsuites>`.
    loose: Option<OpenSuite>,
    root_name: String,
    /// Byte offset where the event being handled starts.
    event_start: usize,
}

impl<'a> Parser<'a> {
    fn new(source_name: &'a str, xml: &'a str) -> Self {
        let mut reader = Reader::from_str(xml);
        reader.config_mut().check_end_names = true;
        Parser {
            source_name,
            xml,
            reader,
            version: XmlVersion::Implicit1_0,
            stack: Vec::new(),
            suites: Vec::new(),
            case: None,
            done: Vec::new(),
            started: 0,
            loose: None,
            root_name: String::new(),
            event_start: 0,
        }
    }

    fn run(mut self) -> Result<Vec<SuiteReport>, ReportError> {
        let mut saw_root = false;
        loop {
            self.event_start = usize::try_from(self.reader.buffer_position()).unwrap_or(usize::MAX);
            let event = match self.reader.read_event() {
                Ok(event) => event,
                Err(err) => {
                    let at = usize::try_from(self.reader.error_position()).unwrap_or(usize::MAX);
                    return Err(self.malformed(at, err.to_string()));
                }
            };
            match event {
                Event::Decl(decl) => {
                    if let Ok(version) = decl.version() {
                        if version.as_ref() == b"1.1" {
                            self.version = XmlVersion::Explicit1_1;
                        }
                    }
                }
                Event::Start(start) => {
                    if self.stack.is_empty() {
                        self.check_root(&start, saw_root)?;
                        saw_root = true;
                    }
                    self.open(&start)?;
                    self.stack.push(local_name(&start));
                }
                Event::Empty(start) => {
                    if self.stack.is_empty() {
                        self.check_root(&start, saw_root)?;
                        saw_root = true;
                    }
                    self.open(&start)?;
                    self.stack.push(local_name(&start));
                    self.close()?;
                }
                Event::End(_) => self.close()?,
                Event::Text(text) => {
                    let text = text
                        .xml_content(self.version)
                        .map_err(|e| self.malformed_here(e.to_string()))?;
                    if self.stack.is_empty() && !text.trim().is_empty() {
                        return Err(self.malformed_here("text outside the root element".to_owned()));
                    }
                    self.push_text(&text);
                }
                Event::CData(data) => {
                    let text = data
                        .xml_content(self.version)
                        .map_err(|e| self.malformed_here(e.to_string()))?;
                    self.push_text(&text);
                }
                Event::GeneralRef(reference) => {
                    let resolved = match reference.resolve_char_ref() {
                        Ok(Some(ch)) => ch.to_string(),
                        Ok(None) => {
                            let name = reference.decode().map_err(|e| self.malformed_here(e.to_string()))?;
                            match resolve_predefined_entity(&name) {
                                Some(text) => text.to_owned(),
                                None => return Err(self.malformed_here(format!("unknown entity `&{name};`"))),
                            }
                        }
                        Err(err) => return Err(self.malformed_here(err.to_string())),
                    };
                    self.push_text(&resolved);
                }
                Event::Comment(_) | Event::PI(_) | Event::DocType(_) => {}
                Event::Eof => break,
            }
        }
        if let Some(open) = self.stack.last() {
            let message = format!("unexpected end of document: <{open}> is not closed");
            return Err(self.malformed(self.xml.len(), message));
        }
        if !saw_root {
            return Err(self.malformed(self.xml.len(), "no root element".to_owned()));
        }
        if let Some(loose) = self.loose.take() {
            self.done.push((loose.order, loose.report));
        }
        self.done.sort_by_key(|(order, _)| *order);
        Ok(self.done.into_iter().map(|(_, report)| report).collect())
    }

    fn check_root(&mut self, start: &BytesStart<'_>, saw_root: bool) -> Result<(), ReportError> {
        if saw_root {
            return Err(self.malformed_here("a second root element".to_owned()));
        }
        let name = local_name(start);
        if name != "testsuites" && name != "testsuite" {
            return Err(ReportError::invalid(
                self.source_name,
                format!("/{name}"),
                Some(self.line()),
                format!("not a JUnit report: the root element is <{name}>, expected <testsuites> or <testsuite>"),
            ));
        }
        self.root_name = self.attribute(start, "name")?.unwrap_or_default();
        Ok(())
    }

    /// Handles an element's start; the element is not yet on the stack.
    fn open(&mut self, start: &BytesStart<'_>) -> Result<(), ReportError> {
        let name = local_name(start);
        let depth = self.stack.len();
        if let Some(case) = &mut self.case {
            // Only direct children of the testcase matter.
            if depth == case.depth + 1 {
                let outcome = match name.as_str() {
                    "failure" => Outcome::Failure,
                    "error" => Outcome::Error,
                    "skipped" => Outcome::Skipped,
                    _ => return Ok(()),
                };
                let first_problem = case.message.is_none() && matches!(outcome, Outcome::Failure | Outcome::Error);
                if outcome_rank(outcome) > outcome_rank(case.outcome) {
                    case.outcome = outcome;
                }
                if first_problem {
                    let message = self.attribute(start, "message")?;
                    let kind = self.attribute(start, "type")?;
                    let case = self.case.as_mut().expect("testcase is open");
                    case.message = Some(message.unwrap_or_default());
                    case.kind = kind.unwrap_or_default();
                    case.collecting = true;
                }
            }
            return Ok(());
        }
        match name.as_str() {
            "testsuite" => {
                if let Some(parent) = self.suites.last_mut() {
                    parent.child_suites += 1;
                }
                let mut suite = OpenSuite {
                    depth,
                    order: self.started,
                    ..OpenSuite::default()
                };
                self.started += 1;
                suite.report.name = self.attribute(start, "name")?.unwrap_or_default();
                for (slot, attribute) in ["tests", "failures", "errors", "skipped"].into_iter().enumerate() {
                    suite.attribute_counts[slot] = self.count(start, attribute)?;
                }
                self.suites.push(suite);
            }
            "testcase" => {
                let case_name = self.attribute(start, "name")?.unwrap_or_default();
                let class = self.attribute(start, "classname")?.unwrap_or_default();
                let id = match (class.is_empty(), case_name.is_empty()) {
                    (false, false) => format!("{class}::{case_name}"),
                    (true, _) => case_name,
                    (false, true) => class,
                };
                self.case = Some(OpenCase {
                    id,
                    outcome: Outcome::Passed,
                    message: None,
                    kind: String::new(),
                    text: String::new(),
                    collecting: false,
                    depth,
                });
            }
            _ => {}
        }
        Ok(())
    }

    /// Handles the end of the element on top of the stack.
    fn close(&mut self) -> Result<(), ReportError> {
        let Some(depth) = self.stack.len().checked_sub(1) else {
            return Err(self.malformed_here("end tag without a start tag".to_owned()));
        };
        self.stack.pop();
        if let Some(case) = &mut self.case {
            if depth == case.depth + 1 {
                case.collecting = false;
            }
            if depth != case.depth {
                return Ok(());
            }
            let case = self.case.take().expect("testcase is open");
            let suite = match self.suites.last_mut() {
                Some(suite) => suite,
                None => self.loose.get_or_insert_with(|| OpenSuite {
                    report: SuiteReport {
                        name: if self.root_name.is_empty() {
                            self.source_name.to_owned()
                        } else {
                            self.root_name.clone()
                        },
                        ..SuiteReport::default()
                    },
                    order: self.started,
                    ..OpenSuite::default()
                }),
            };
            suite.testcases += 1;
            let report = &mut suite.report;
            report.tests += 1;
            match case.outcome {
                Outcome::Passed => {}
                Outcome::Skipped => report.skipped += 1,
                Outcome::Error => report.errors += 1,
                Outcome::Failure => report.failures += 1,
            }
            if matches!(case.outcome, Outcome::Failure | Outcome::Error) {
                let message = summarize(case.message.as_deref().unwrap_or_default(), &case.text, &case.kind);
                report.failed_tests.push(format!("{}: {message}", case.id));
            }
            return Ok(());
        }
        if self.suites.last().is_some_and(|suite| suite.depth == depth) {
            let mut suite = self.suites.pop().expect("suite is open");
            if suite.testcases == 0 {
                if suite.child_suites > 0 {
                    // A suite that only groups other suites: they are reported instead.
                    return Ok(());
                }
                let [tests, failures, errors, skipped] = suite.attribute_counts;
                suite.report.tests = tests;
                suite.report.failures = failures;
                suite.report.errors = errors;
                suite.report.skipped = skipped;
            }
            self.done.push((suite.order, suite.report));
        }
        Ok(())
    }

    fn push_text(&mut self, text: &str) {
        if let Some(case) = &mut self.case {
            if case.collecting {
                case.text.push_str(text);
            }
        }
    }

    fn attribute(&self, start: &BytesStart<'_>, name: &str) -> Result<Option<String>, ReportError> {
        for attribute in start.attributes() {
            let attribute = attribute.map_err(|err| self.attribute_error(&err))?;
            if attribute.key.local_name().as_ref() == name.as_bytes() {
                let value = attribute
                    .decoded_and_normalized_value(self.version, self.reader.decoder())
                    .map_err(|err| self.malformed_here(err.to_string()))?;
                return Ok(Some(value.into_owned()));
            }
        }
        Ok(None)
    }

    /// quick-xml counts the position of an attribute error from the start of the tag's name.
    fn attribute_error(&self, err: &AttrError) -> ReportError {
        let tag = self.event_start + 1;
        let (at, message) = match *err {
            AttrError::ExpectedEq(at) => (at, "attribute name must be followed by `=`".to_owned()),
            AttrError::ExpectedValue(at) => (at, "`=` must be followed by an attribute value".to_owned()),
            AttrError::UnquotedValue(at) => (at, "attribute value must be enclosed in `\"` or `'`".to_owned()),
            AttrError::ExpectedQuote(at, quote) => (at, format!("missing closing quote `{}`", char::from(quote))),
            AttrError::Duplicated(at, first) => {
                let (line, column) = line_column(self.xml, tag + first);
                (at, format!("duplicated attribute (first given at {line}:{column})"))
            }
        };
        self.malformed(tag + at, message)
    }

    fn count(&self, start: &BytesStart<'_>, name: &str) -> Result<u32, ReportError> {
        let Some(value) = self.attribute(start, name)? else {
            return Ok(0);
        };
        let trimmed = value.trim();
        if trimmed.is_empty() {
            return Ok(0);
        }
        trimmed.parse().map_err(|_| {
            ReportError::invalid(
                self.source_name,
                self.element_path(&local_name(start)),
                Some(self.line()),
                format!("attribute {name}=\"{value}\" is not a count"),
            )
        })
    }

    fn element_path(&self, name: &str) -> String {
        let mut path = String::new();
        for open in self.stack.iter().map(String::as_str).chain([name]) {
            path.push('/');
            path.push_str(open);
        }
        path
    }

    fn line(&self) -> usize {
        line_column(self.xml, self.event_start).0
    }

    fn malformed_here(&self, message: String) -> ReportError {
        self.malformed(self.event_start, message)
    }

    fn malformed(&self, offset: usize, message: String) -> ReportError {
        let (line, column) = line_column(self.xml, offset);
        ReportError::Malformed {
            source_name: self.source_name.to_owned(),
            format: Format::Xml,
            line,
            column,
            message,
        }
    }
}

fn outcome_rank(outcome: Outcome) -> u8 {
    match outcome {
        Outcome::Passed => 0,
        Outcome::Skipped => 1,
        Outcome::Error => 2,
        Outcome::Failure => 3,
    }
}

fn local_name(start: &BytesStart<'_>) -> String {
    String::from_utf8_lossy(start.local_name().as_ref()).into_owned()
}

/// The one-line message of a failure: the first non-empty line of the `message` attribute, else
/// of the element's text, else its `type`; a Rust panic header is replaced by the panic message.
fn summarize(message: &str, text: &str, kind: &str) -> String {
    let first = first_line(message)
        .or_else(|| first_line(text))
        .or_else(|| first_line(kind))
        .unwrap_or("(no message)");
    match rust_panic(first, text) {
        Some(summary) => summary,
        None => first.to_owned(),
    }
}

fn first_line(text: &str) -> Option<&str> {
    text.lines().map(str::trim).find(|line| !line.is_empty())
}

/// `thread 'name' (123) panicked at src/lib.rs:33:9` (Rust 1.73 and later; the message follows
/// on the next line of the text) or `thread 'name' panicked at 'message', src/lib.rs:33:9`
/// (older Rust).
fn rust_panic(header: &str, text: &str) -> Option<String> {
    let rest = header.strip_prefix("thread '")?;
    let (_, after) = rest.split_once(" panicked at ")?;
    if let Some(old) = after.strip_prefix('\'') {
        let (message, location) = old.rsplit_once("', ")?;
        return Some(format!("{message} (panicked at {location})"));
    }
    let location = after.trim_end_matches(':').trim();
    let mut lines = text.lines().map(str::trim);
    lines
        .by_ref()
        .find(|line| line.starts_with("thread '") && line.contains(" panicked at "))?;
    let message = lines.find(|line| !line.is_empty())?;
    if message.starts_with("note: run with `RUST_BACKTRACE") || message.starts_with("stack backtrace:") {
        return None;
    }
    Some(format!("{message} (panicked at {location})"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_style_panic_header_takes_the_message_from_the_text() {
        let header = "thread 'tests::x' (20856) panicked at src/lib.rs:33:9";
        let text = "thread 'tests::x' (20856) panicked at src/lib.rs:33:9:\nexpected 1 < 2\nnote: run with";
        assert_eq!(
            summarize(header, text, ""),
            "expected 1 < 2 (panicked at src/lib.rs:33:9)"
        );
    }

    #[test]
    fn old_style_panic_header_carries_the_message() {
        let header = "thread 'tests::x' panicked at 'boom, really', src/lib.rs:3:5";
        assert_eq!(summarize(header, "", ""), "boom, really (panicked at src/lib.rs:3:5)");
    }

    #[test]
    fn panic_header_without_a_message_line_is_kept() {
        let header = "thread 'tests::x' panicked at src/lib.rs:3:5";
        assert_eq!(summarize(header, "", ""), header);
    }

    #[test]
    fn plain_messages_keep_their_first_line() {
        assert_eq!(summarize("AssertionError: a\nassert b", "", ""), "AssertionError: a");
        assert_eq!(summarize("", "\n  body line\nmore", "T"), "body line");
        assert_eq!(
            summarize(" ", "", "java.lang.AssertionError"),
            "java.lang.AssertionError"
        );
        assert_eq!(summarize("", "", ""), "(no message)");
    }
}
