//! JUnit XML: the fixtures written by real tools (see tests/fixtures/README.md), then the shapes
//! other producers write, then broken documents.

use reports::{parse_junit, ReportError, SuiteReport};

const NEXTEST: &str = include_str!("fixtures/nextest-junit.xml");
const PYTEST: &str = include_str!("fixtures/pytest-junit.xml");

#[test]
fn nextest_fixture_has_one_suite_per_test_binary_with_counts_from_the_testcases() {
    let suites = parse_junit("nextest-junit.xml", NEXTEST).unwrap();
    assert_eq!(suites.len(), 2);

    // The library's unit tests: 3 pass, 2 fail. The sixth test is #[ignore]d, and nextest
    // leaves ignored tests out of the JUnit report altogether.
    let lib = &suites[0];
    assert_eq!(lib.name, "junit-fixture");
    assert_eq!((lib.tests, lib.failures, lib.errors, lib.skipped), (5, 2, 0, 0));
    assert_eq!(lib.passed(), 3);
    // Escaping decoded: the panic messages contain `<`, `>`, `&` and `"`, written as entities.
    assert_eq!(
        lib.failed_tests,
        [
            "junit-fixture::tests::compares_with_markup: expected <b>1 < 2</b> & got 2 > 1 \
             (panicked at src/lib.rs:33:9)",
            "junit-fixture::tests::overflow_is_reported: assertion `left == right` failed: \
             arithmetic & \"quotes\" are broken (panicked at src/lib.rs:38:9)",
        ]
    );

    // The integration test binary tests/smoke.rs: 2 pass.
    let smoke = &suites[1];
    assert_eq!(smoke.name, "junit-fixture::smoke");
    assert_eq!((smoke.tests, smoke.failures, smoke.errors, smoke.skipped), (2, 0, 0, 0));
    assert!(smoke.failed_tests.is_empty());
}

#[test]
fn pytest_fixture_counts_failures_errors_and_skips_apart() {
    let suites = parse_junit("pytest-junit.xml", PYTEST).unwrap();
    assert_eq!(suites.len(), 1);
    let suite = &suites[0];
    assert_eq!(suite.name, "pytest");
    assert_eq!((suite.tests, suite.failures, suite.errors, suite.skipped), (5, 1, 1, 1));
    assert_eq!(suite.passed(), 2);
    // The failure's message attribute spans lines (`&#10;`): only its first line is kept.
    assert_eq!(
        suite.failed_tests,
        [
            "test_sample::test_markup: AssertionError: markup <b> & entities differ",
            "test_sample::test_uses_db: failed on setup with \"ConnectionError: db at <localhost:5432> & replica unreachable\"",
        ]
    );
}

#[test]
fn single_testsuite_root_as_surefire_writes_it() {
    let xml = r#"<?xml version="1.0" encoding="UTF-8"?>
<testsuite xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" name="com.example.CheckoutTest" time="0.31" tests="4" errors="0" skipped="1" failures="1">
  <properties>
    <property name="java.version" value="21"/>
  </properties>
  <testcase name="addsItem" classname="com.example.CheckoutTest" time="0.01"/>
  <testcase name="totals" classname="com.example.CheckoutTest" time="0.02">
    <failure type="org.opentest4j.AssertionFailedError"><![CDATA[expected: <10> but was: <12>
	at com.example.CheckoutTest.totals(CheckoutTest.java:42)]]></failure>
    <system-out><![CDATA[computing <totals> & taxes]]></system-out>
  </testcase>
  <testcase name="refunds" classname="com.example.CheckoutTest">
    <skipped message="not implemented"/>
  </testcase>
  <testcase name="emptyCart" classname="com.example.CheckoutTest"></testcase>
</testsuite>
"#;
    let suites = parse_junit("TEST-com.example.CheckoutTest.xml", xml).unwrap();
    assert_eq!(
        suites,
        [SuiteReport {
            name: "com.example.CheckoutTest".into(),
            tests: 4,
            failures: 1,
            errors: 0,
            skipped: 1,
            // No message attribute: the first line of the CDATA text is the message.
            failed_tests: vec!["com.example.CheckoutTest::totals: expected: <10> but was: <12>".into()],
        }]
    );
}

#[test]
fn suite_without_testcases_takes_its_counts_from_its_attributes() {
    let xml = r#"<testsuites>
  <testsuite name="summary-only" tests="12" failures="2" errors="1" skipped="3" time="1.5"/>
  <testsuite name="counts-missing"></testsuite>
</testsuites>"#;
    let suites = parse_junit("summary.xml", xml).unwrap();
    assert_eq!(suites.len(), 2);
    let summary = &suites[0];
    assert_eq!(summary.name, "summary-only");
    assert_eq!(
        (summary.tests, summary.failures, summary.errors, summary.skipped),
        (12, 2, 1, 3)
    );
    assert!(summary.failed_tests.is_empty());
    assert_eq!(
        suites[1],
        SuiteReport {
            name: "counts-missing".into(),
            ..SuiteReport::default()
        }
    );
}

#[test]
fn testcases_win_over_wrong_attributes() {
    let xml = r#"<testsuite name="liar" tests="1" failures="0" errors="0">
  <testcase classname="a" name="one"/>
  <testcase classname="a" name="two"><failure message="boom"/></testcase>
  <testcase classname="a" name="three"><error message="no database"/></testcase>
</testsuite>"#;
    let suite = &parse_junit("liar.xml", xml).unwrap()[0];
    assert_eq!((suite.tests, suite.failures, suite.errors, suite.skipped), (3, 1, 1, 0));
    assert_eq!(suite.failed_tests, ["a::two: boom", "a::three: no database"]);
}

#[test]
fn a_testcase_counts_once_and_flaky_reruns_are_not_failures() {
    let xml = r#"<testsuite name="s">
  <testcase classname="c" name="both"><error message="first"/><failure message="second"/><failure message="third"/></testcase>
  <testcase classname="c" name="flaky"><flakyFailure message="passed on retry"/></testcase>
  <testcase classname="c" name="skipped-with-output"><skipped/><system-err>failure text</system-err></testcase>
</testsuite>"#;
    let suite = &parse_junit("s.xml", xml).unwrap()[0];
    assert_eq!((suite.tests, suite.failures, suite.errors, suite.skipped), (3, 1, 0, 1));
    // The message is the first problem's; the outcome is the worst one.
    assert_eq!(suite.failed_tests, ["c::both: first"]);
}

#[test]
fn nested_testsuites_are_flattened() {
    let xml = r#"<testsuites name="all">
  <testsuite name="outer" tests="3" failures="1">
    <testsuite name="inner-a">
      <testcase classname="x" name="t1"/>
      <testcase classname="x" name="t2"><failure message="bad"/></testcase>
    </testsuite>
    <testsuite name="inner-b">
      <testsuite name="deep"><testcase classname="y" name="t3"/></testsuite>
    </testsuite>
  </testsuite>
  <testsuite name="mixed">
    <testcase classname="z" name="own"/>
    <testsuite name="mixed-child"><testcase classname="z" name="child"><skipped/></testcase></testsuite>
  </testsuite>
</testsuites>"#;
    let suites = parse_junit("nested.xml", xml).unwrap();
    let summary: Vec<(&str, u32, u32, u32)> = suites
        .iter()
        .map(|s| (s.name.as_str(), s.tests, s.failures, s.skipped))
        .collect();
    // "outer" and "inner-b" only group other suites and are not reported (their attributes
    // would count the children's tests twice); "mixed" has a testcase of its own. Suites come
    // in the order they start in the document.
    assert_eq!(
        summary,
        [
            ("inner-a", 2, 1, 0),
            ("deep", 1, 0, 0),
            ("mixed", 1, 0, 0),
            ("mixed-child", 1, 0, 1)
        ]
    );
    assert_eq!(suites[0].failed_tests, ["x::t2: bad"]);
}

#[test]
fn testcases_directly_under_testsuites_form_a_suite_named_after_it() {
    let xml = r#"<testsuites name="jest tests"><testcase classname="App" name="renders"/></testsuites>"#;
    let suites = parse_junit("jest.xml", xml).unwrap();
    assert_eq!(suites.len(), 1);
    assert_eq!((suites[0].name.as_str(), suites[0].tests), ("jest tests", 1));
}

#[test]
fn a_byte_order_mark_and_prolog_are_accepted() {
    let xml = "\u{feff}<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<!-- by hand -->\n<?pi x?>\n\
               <testsuite name=\"bom\" tests=\"2\"/>\n";
    let suites = parse_junit("bom.xml", xml).unwrap();
    assert_eq!((suites[0].name.as_str(), suites[0].tests), ("bom", 2));
}

#[test]
fn empty_testsuites_root_has_no_suites() {
    assert!(parse_junit("empty.xml", "<?xml version=\"1.0\"?>\n<testsuites/>\n")
        .unwrap()
        .is_empty());
}

#[test]
fn entities_and_character_references_are_decoded_in_text_and_attributes() {
    let xml = "<testsuite name=\"caf&#xE9; &amp; bar\">\n<testcase classname=\"m\" name=\"n&lt;1&gt;\">\
               <failure>\n\n  &quot;x&quot; &#60; &apos;y&apos; &#x26; z\nsecond line</failure></testcase></testsuite>";
    let suite = &parse_junit("entities.xml", xml).unwrap()[0];
    assert_eq!(suite.name, "café & bar");
    assert_eq!(suite.failed_tests, ["m::n<1>: \"x\" < 'y' & z"]);
}

#[test]
fn malformed_xml_names_the_file_and_position() {
    // A mismatched end tag on line 3.
    let xml = "<testsuites>\n  <testsuite name=\"a\">\n  </testsuites>\n";
    let err = parse_junit("reports/junit.xml", xml).unwrap_err();
    let ReportError::Malformed {
        source_name,
        line,
        column,
        ..
    } = &err
    else {
        panic!("expected a Malformed error, got {err:?}");
    };
    assert_eq!((source_name.as_str(), *line), ("reports/junit.xml", 3));
    assert!(*column >= 1);
    let text = err.to_string();
    assert!(text.starts_with("reports/junit.xml:3:"), "{text}");
    assert!(text.contains("malformed XML"), "{text}");
}

#[test]
fn truncated_xml_is_an_error_at_the_end() {
    let xml = "<testsuites>\n<testsuite name=\"a\">\n<testcase name=\"t\"/>\n";
    let err = parse_junit("cut.xml", xml).unwrap_err();
    assert!(matches!(err, ReportError::Malformed { line: 4, .. }), "{err:?}");
    assert!(err.to_string().starts_with("cut.xml:4:"), "{err}");
    assert!(err.to_string().contains("not closed"), "{err}");

    let err = parse_junit("half-tag.xml", "<testsuites>\n<testsuite name=\"a").unwrap_err();
    assert!(matches!(err, ReportError::Malformed { line: 2, .. }), "{err:?}");
}

#[test]
fn other_broken_documents_are_errors() {
    let cases = [
        ("", "no root element"),
        ("<testsuite/><testsuite/>", "a second root element"),
        ("<testsuite/></testsuite>", ""),
        ("<testsuite><testcase name=\"&nope;\"/></testsuite>", ""),
        ("<testsuite>&nope;</testsuite>", "unknown entity `&nope;`"),
        (
            "<testsuite name='a' name='b'/>",
            "bad.xml:1:21: malformed XML: duplicated attribute (first given at 1:12)",
        ),
        (
            "<testsuite\n  name=a/>",
            "bad.xml:2:8: malformed XML: attribute value must be enclosed",
        ),
    ];
    for (xml, needle) in cases {
        let err = parse_junit("bad.xml", xml).unwrap_err();
        assert!(matches!(err, ReportError::Malformed { .. }), "{xml}: {err:?}");
        assert_eq!(err.source_name(), "bad.xml");
        assert!(err.to_string().contains(needle), "{xml}: {err}");
    }
}

#[test]
fn a_document_that_is_not_junit_says_what_it_found() {
    let err = parse_junit("coverage.xml", "<?xml version=\"1.0\"?>\n<coverage line-rate=\"0.9\"/>").unwrap_err();
    assert_eq!(
        err.to_string(),
        "coverage.xml:2: /coverage: not a JUnit report: the root element is <coverage>, expected <testsuites> or <testsuite>"
    );
}

#[test]
fn a_count_that_is_not_a_number_names_the_element_and_line() {
    let xml = "<testsuites>\n  <testsuite name=\"a\" tests=\"many\"/>\n</testsuites>";
    let err = parse_junit("counts.xml", xml).unwrap_err();
    assert_eq!(
        err.to_string(),
        "counts.xml:2: /testsuites/testsuite: attribute tests=\"many\" is not a count"
    );
}
