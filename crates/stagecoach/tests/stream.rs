//! The event stream shows every fact, also those the journal does not
//! store: an observation is journaled once, as its input, and the daemon
//! derives its facts (the metric sample, what it set off) for the stream,
//! live and when a reader catches up from the journal.

mod common;

use common::{facts, token, Config, Harness};
use serde_json::{json, Value};

/// The `sample` facts of the entries seen, without their `fact` tag.
fn samples(entries: &[Value]) -> Vec<Value> {
    entries
        .iter()
        .flat_map(|e| facts(e))
        .filter(|f| f["fact"] == "sample")
        .map(|f| {
            let mut f = f.clone();
            f.as_object_mut().expect("a fact is an object").remove("fact");
            f
        })
        .collect()
}

#[test]
fn the_stream_carries_every_sample_of_the_record_live_and_from_the_journal() {
    let mut h = Harness::new(&Config::default().principal("alice", &["deployer"]));
    let d = h.start();
    let alice = token("alice");
    let id = d.submit(&alice, &json!({"service": "web", "version": "1.2.0"}))["id"]
        .as_str()
        .expect("id")
        .to_string();

    // Live: entries as they are appended.
    let mut live = d.events(&id, &alice);
    assert_eq!(live.wait_finished(), "succeeded", "{}", live.summary());
    let record = d.record(&id, &alice);
    let recorded = record["monitoring"]["samples"].as_array().expect("samples").clone();
    assert!(recorded.len() >= 2, "a monitored deployment has samples: {record:#}");
    assert_eq!(samples(&live.seen), recorded, "live stream against the record");

    // Caught up: the whole deployment read back from the journal.
    let mut again = d.events(&id, &alice);
    again.wait_finished();
    assert_eq!(
        samples(&again.seen),
        recorded,
        "stream from the journal against the record"
    );

    // Every deployment from the first entry: the same samples for this one.
    let mut all = d.all_events(0, &alice);
    all.wait_for("the deployment to end in the stream of every deployment", |e| {
        (e["deployment"] == id.as_str() && common::statuses(e).iter().any(|s| s == "succeeded")).then_some(())
    });
    let of_this: Vec<Value> = all
        .seen
        .iter()
        .filter(|e| e["deployment"] == id.as_str())
        .cloned()
        .collect();
    assert_eq!(
        samples(&of_this),
        recorded,
        "stream of every deployment against the record"
    );
}
