//! The `/v1/events` payload: its own documented type, built from the stored
//! journal entry and the facts it produced. `fixtures/journal-0.1.0.jsonl`
//! is a journal written by the 0.1.0 daemon (journal format 1; every entry
//! of one deployment: a submission, a restart that re-ran PREPARE, a
//! refused and a granted approval, a canary, monitoring and a rollback by
//! hand), so an old journal must keep streaming as it is; the same entries
//! written in today's format stream the same.

use agents::messages::Streamed;
use agents::JournalEntry;
use client::wire::{EntryBody, EntryKind, EventEntry};
use serde_json::Value;
use workflow::fleet::Fleet;
use workflow::types::DeploymentId;

fn fixture() -> Vec<journal::Entry> {
    include_str!("fixtures/journal-0.1.0.jsonl")
        .lines()
        .map(|l| serde_json::from_str(l).expect("a journal entry"))
        .collect()
}

/// The entries of deployment 1 with the facts each produced, as the
/// Coordinator hands them to the event stream (derived by replay).
fn streamed(entries: &[journal::Entry]) -> Vec<Streamed> {
    let inputs = entries
        .iter()
        .map(|e| (e.at, JournalEntry::decode(&e.body).expect("a stored body")));
    let facts = Fleet::facts_by_entry(DeploymentId(1), inputs).expect("the journal replays");
    entries
        .iter()
        .cloned()
        .zip(facts)
        .map(|(entry, facts)| Streamed { entry, facts })
        .collect()
}

/// One entry as the stream sends it.
fn wire(streamed: &Streamed) -> EventEntry {
    daemon::api::stream_entry(streamed)
}

#[test]
fn every_stored_entry_streams_as_the_wire_type() {
    let entries = fixture();
    assert!(
        journal::verify_chain(1, &entries).intact,
        "the fixture's chain is intact"
    );
    for s in streamed(&entries) {
        let stored = &s.entry;
        let wire = wire(&s);
        let body: Value = serde_json::from_str(&stored.body).expect("stored JSON");
        let what = format!("entry {} ({})", stored.seq, stored.kind);
        assert_eq!(
            (wire.seq, wire.deployment.0, wire.index, wire.at),
            (stored.seq, stored.deployment, stored.index, stored.at),
            "{what}"
        );
        assert_eq!(
            (&wire.hash, &wire.prev_hash),
            (&stored.hash, &stored.prev_hash),
            "{what}"
        );
        assert_ne!(wire.kind, EntryKind::Unknown, "{what}");
        assert_eq!(serde_json::to_value(wire.kind).unwrap(), stored.kind.as_str(), "{what}");
        // Every stored fact is on the wire, as the record's facts are written.
        let stored_facts = body["facts"].as_array().cloned().unwrap_or_default();
        let sent = serde_json::to_value(&wire).unwrap();
        assert_eq!(
            sent["body"]["facts"].as_array().cloned().unwrap_or_default(),
            stored_facts,
            "{what}"
        );
        // What the journal keeps only to replay stays there.
        assert!(sent["body"].get("settings").is_none(), "{what}: {sent}");
        assert!(sent["body"].get("event").is_none(), "{what}: {sent}");
        // A client reads back exactly what was sent.
        let read: EventEntry = serde_json::from_value(sent.clone()).expect("the client reads the entry");
        assert_eq!(read, wire, "{what}");
    }
}

#[test]
fn inputs_and_re_run_work_are_named_as_the_journal_names_them() {
    let names: Vec<String> = streamed(&fixture())
        .iter()
        .map(|e| match wire(e).body {
            EntryBody::Submitted {
                request, production, ..
            } => {
                assert_eq!(request.service.as_str(), "web");
                assert_eq!(production.current_version, None);
                "submitted".into()
            }
            EntryBody::Event { input, .. } => input,
            EntryBody::Resumed { effects } => format!("resumed {}", effects.join(" ")),
            EntryBody::Unknown => "unknown".into(),
        })
        .collect();
    assert_eq!(
        names[..12],
        [
            "submitted",
            "Start",
            "Scanned",
            "resumed Prepare",
            "Prepared",
            "Staged",
            "Validated",
            "Notified",
            "Reviewed",
            "HumanDecision",
            "HumanDecision",
            "SlotGranted"
        ]
    );
    assert!(names.contains(&"ManualRollback".to_string()), "{names:?}");
    assert!(names.contains(&"RolledBack".to_string()), "{names:?}");
}

/// What 0.1.0 sent for an entry: the stored body as it is, in the same envelope.
fn as_0_1_0_sent_it(e: &journal::Entry) -> String {
    serde_json::json!({
        "seq": e.seq,
        "deployment": format!("d-{:06}", e.deployment),
        "index": e.index,
        "at": e.at,
        "kind": e.kind,
        "hash": e.hash,
        "prev_hash": e.prev_hash,
        "body": serde_json::from_str::<Value>(&e.body).unwrap(),
    })
    .to_string()
}

#[test]
fn no_entry_streams_larger_than_before_and_a_submission_sheds_its_settings() {
    let entries = streamed(&fixture());
    let sent = |e: &Streamed| serde_json::to_string(&wire(e)).unwrap();
    let as_0_1_0_sent_it = |e: &Streamed| as_0_1_0_sent_it(&e.entry);
    for e in &entries {
        assert!(
            sent(e).len() <= as_0_1_0_sent_it(e).len(),
            "entry {}: {} bytes now, {} before",
            e.entry.seq,
            sent(e).len(),
            as_0_1_0_sent_it(e).len()
        );
    }
    let submitted = &entries[0];
    assert!(
        sent(submitted).len() * 2 < as_0_1_0_sent_it(submitted).len(),
        "{} bytes sent for a submission, {} before",
        sent(submitted).len(),
        as_0_1_0_sent_it(submitted).len()
    );
    let now: usize = entries.iter().map(|e| sent(e).len()).sum();
    let before: usize = entries.iter().map(|e| as_0_1_0_sent_it(e).len()).sum();
    assert!(now < before, "{now} bytes for the whole journal, {before} before");
}

#[test]
fn an_unreadable_stored_body_streams_as_unknown() {
    let mut entry = fixture().remove(1);
    entry.body = r#"{"kind":"event","event":"NoSuchInput","facts":[]}"#.into();
    let wire = wire(&Streamed { entry, facts: vec![] });
    assert_eq!((wire.kind, wire.body), (EntryKind::Unknown, EntryBody::Unknown));
}

#[test]
fn the_openapi_document_describes_the_entry_as_sent() {
    let doc: Value = serde_json::from_str(daemon::api::OPENAPI).expect("openapi.json is JSON");
    let schema = &doc["components"]["schemas"]["EventEntry"];
    let mut documented: Vec<&str> = schema["properties"]
        .as_object()
        .expect("EventEntry properties")
        .keys()
        .map(String::as_str)
        .collect();
    documented.sort_unstable();
    for s in streamed(&fixture()) {
        let stored = &s.entry;
        let sent = serde_json::to_value(wire(&s)).unwrap();
        let mut keys: Vec<&str> = sent.as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(keys, documented, "entry {}", stored.seq);
        let kind = sent["body"]["kind"].as_str().unwrap();
        let variant = schema["properties"]["body"]["oneOf"]
            .as_array()
            .expect("the body's variants")
            .iter()
            .find(|v| v["properties"]["kind"]["const"] == kind)
            .unwrap_or_else(|| panic!("no documented body of kind {kind}"));
        let mut body_keys: Vec<&str> = sent["body"].as_object().unwrap().keys().map(String::as_str).collect();
        body_keys.sort_unstable();
        let mut documented_body: Vec<&str> = variant["properties"]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        documented_body.sort_unstable();
        assert_eq!(body_keys, documented_body, "body of kind {kind}");
    }
    // Each event's `data` is an EventEntry, as JSON.
    let event = &doc["paths"]["/v1/events"]["get"]["responses"]["200"]["content"]["text/event-stream"]["schema"];
    assert_eq!(event["properties"]["data"]["contentMediaType"], "application/json");
    assert_eq!(
        event["properties"]["data"]["contentSchema"]["$ref"],
        "#/components/schemas/EventEntry"
    );
    assert_eq!(event["properties"]["event"]["const"], "entry");
}

#[test]
fn the_same_entries_stored_in_todays_format_stream_the_same() {
    let old = fixture();
    let mut today = old.clone();
    for e in &mut today {
        e.body = JournalEntry::decode(&e.body)
            .and_then(|entry| entry.encode().map_err(workflow::fleet::DecodeError::Invalid))
            .expect("an entry written again");
    }
    assert!(
        today
            .iter()
            .any(|e| e.body.len() < old[(e.seq - 1) as usize].body.len() / 2),
        "an observation is stored without its facts today"
    );
    let sent = |entries: &[journal::Entry]| -> Vec<Value> {
        streamed(entries)
            .iter()
            .map(|s| {
                let mut v = serde_json::to_value(wire(s)).unwrap();
                // The hash covers the stored body, which differs; everything else is the same.
                v["hash"] = Value::Null;
                v["prev_hash"] = Value::Null;
                v
            })
            .collect()
    };
    assert_eq!(sent(&today), sent(&old));
}
