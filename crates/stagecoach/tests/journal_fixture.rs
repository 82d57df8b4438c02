//! A journal written by an earlier release opens and replays identically.
//!
//! `tests/fixtures/journal-v1/` holds a journal that a real daemon wrote
//! (five deployments: a canary approved by a second person after a refused
//! self-approval, a blue-green, a rejected rolling release, a cancelled one,
//! and a hotfix rolled back after it succeeded), and what that daemon
//! answered for each deployment: its JSON record and its Markdown Deployment
//! Record. `make.sh` beside them says how they were made. Today's daemon,
//! started on a copy of that journal, must answer exactly the same and find
//! every chain intact.

mod common;

use common::{token, Config, Harness};
use serde_json::Value;

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/journal-v1");
const DEPLOYMENTS: [&str; 5] = ["d-000001", "d-000002", "d-000003", "d-000004", "d-000005"];

fn fixture(name: &str) -> String {
    let path = format!("{FIXTURE}/{name}");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {path}: {e}"))
}

#[test]
fn a_journal_of_the_first_format_replays_to_the_same_records() {
    let mut h = Harness::new(&Config::default().principal("admin", &["admin"]));
    std::fs::create_dir_all(h.state()).expect("create the state dir");
    std::fs::copy(format!("{FIXTURE}/journal.sqlite"), h.state().join("journal.sqlite"))
        .expect("copy the fixture journal");
    let daemon = h.start();
    let admin = token("admin");

    for id in DEPLOYMENTS {
        let then: Value = serde_json::from_str(&fixture(&format!("{id}.json"))).expect("fixture JSON");
        let now = daemon.record(id, &admin);
        assert_eq!(
            now, then,
            "{id}: the record differs from what the release that wrote it answered"
        );

        let markdown = common::ok(daemon.api(&admin).record_markdown(id), &format!("{id}: record.md"));
        assert_eq!(
            markdown,
            fixture(&format!("{id}.md")),
            "{id}: the Deployment Record differs"
        );

        let verified = daemon.verify(id, &admin);
        assert_eq!(verified["intact"], Value::Bool(true), "{id}: chain: {verified}");
    }
    let statuses: Vec<String> = DEPLOYMENTS
        .iter()
        .map(|id| {
            daemon.record(id, &admin)["status"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    assert_eq!(
        statuses,
        ["succeeded", "succeeded", "rejected", "cancelled", "rolled_back"],
        "the fixture covers what it says"
    );
    let log = daemon.logs.text();
    assert!(!log.contains("replay: "), "the journal replayed with warnings:\n{log}");
}
