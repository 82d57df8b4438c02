//! The quick benchmark run, as CI runs it: every row that can run without
//! the daemon binary, failing only on gross regressions (a journal event
//! costing more than `bench::GROSS_ROW3_RATIO` × an actix round trip — 120×
//! in this debug build, 40× optimised — or a row that broke) so that a
//! slow or busy machine never makes it flaky.

#[test]
fn quick_run_has_no_gross_regression() {
    let started = std::time::Instant::now();
    let report = bench::run(&bench::BenchOptions {
        quick: true,
        ..Default::default()
    })
    .expect("the quick suite runs");
    println!("{}", report.render_text());
    let regressions = report.gross_regressions();
    assert!(regressions.is_empty(), "gross regressions:\n{}", regressions.join("\n"));
    for id in ["1a", "1b", "2", "3", "4"] {
        let row = report
            .rows
            .iter()
            .find(|r| r.id == id)
            .unwrap_or_else(|| panic!("row {id} missing"));
        assert!(row.value.is_some(), "row {id} has no value: {}", row.note);
    }
    assert!(
        started.elapsed().as_secs() < 120,
        "the quick run took {:?}",
        started.elapsed()
    );
}
