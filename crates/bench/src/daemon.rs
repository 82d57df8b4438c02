//! Rows 5 to 8: the real daemon binary on a loopback port.

use std::path::Path;

use crate::{BenchOptions, Row, RowBuilder};

/// Rows 5 to 8.
pub fn rows(opts: &BenchOptions, _dir: &Path, _single_commit_us: Option<f64>) -> Vec<Row> {
    let why = "needs the stagecoach binary (run `stagecoach bench`)";
    if opts.daemon_binary.is_none() {
        return vec![RowBuilder::new("5", "API submissions", "req/s", "≥ 5,000/s").not_measured(why)];
    }
    vec![]
}
