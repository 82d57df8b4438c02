use std::path::{Path, PathBuf};

use chrono::{DateTime, TimeZone, Utc};
use journal::{entry_hash, verify_chain, Entry, MemoryStore, NewEntry, SqliteStore, Store, StoreError, GENESIS_HASH};

fn at(second: u32, nanos: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 5, 1, 12, 0, second).unwrap() + chrono::Duration::nanoseconds(nanos.into())
}

fn new(deployment: u64, kind: &str, body: &str) -> NewEntry {
    NewEntry {
        deployment,
        at: at(0, 123_456_789),
        kind: kind.to_owned(),
        body: body.to_owned(),
    }
}

fn journal_path(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join("state").join("nested").join("journal.db")
}

/// Appends three entries to deployment 1 and two to deployment 2, interleaved.
fn fill(store: &mut dyn Store) -> Vec<Entry> {
    [
        (1, "submitted"),
        (2, "submitted"),
        (1, "event"),
        (2, "event"),
        (1, "event"),
    ]
    .into_iter()
    .enumerate()
    .map(|(i, (deployment, kind))| {
        let entry = NewEntry {
            deployment,
            at: at(i as u32, 1 + i as u32 * 111_111_111),
            kind: kind.to_owned(),
            body: format!(r#"{{"step": {i}, "note": "ünïcode"}}"#),
        };
        store.append(entry).unwrap()
    })
    .collect()
}

fn check_fill(store: &dyn Store, appended: &[Entry]) {
    assert_eq!(appended.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 2, 3, 4, 5]);
    assert_eq!(
        appended.iter().map(|e| (e.deployment, e.index)).collect::<Vec<_>>(),
        [(1, 1), (2, 1), (1, 2), (2, 2), (1, 3)]
    );
    assert_eq!(appended[0].prev_hash, GENESIS_HASH);
    assert_eq!(appended[1].prev_hash, GENESIS_HASH);
    assert_eq!(appended[2].prev_hash, appended[0].hash);
    assert_eq!(appended[4].prev_hash, appended[2].hash);
    assert_eq!(appended[3].prev_hash, appended[1].hash);
    for e in appended {
        assert_eq!(
            e.hash,
            entry_hash(&e.prev_hash, e.deployment, e.index, &e.at, &e.kind, &e.body)
        );
        assert_eq!(e.hash.len(), 64);
    }
    assert_eq!(appended[4].at, at(4, 444_444_445));
    assert_eq!(appended[4].body, r#"{"step": 4, "note": "ünïcode"}"#);

    assert_eq!(store.all().unwrap(), appended);
    assert_eq!(store.since(3).unwrap(), &appended[3..]);
    assert_eq!(store.since(5).unwrap(), []);
    let one = store.deployment(1).unwrap();
    assert_eq!(one, [appended[0].clone(), appended[2].clone(), appended[4].clone()]);
    assert_eq!(store.deployment(7).unwrap(), []);
    assert_eq!(store.max_deployment().unwrap(), 2);
    let verification = store.verify(1).unwrap();
    assert!(verification.intact, "{verification:?}");
    assert_eq!(verification.entries, 3);
    assert_eq!(verification.head.as_deref(), Some(appended[4].hash.as_str()));
}

#[test]
fn memory_round_trip() {
    let mut store = MemoryStore::new();
    assert_eq!(store.max_deployment().unwrap(), 0);
    let appended = fill(&mut store);
    check_fill(&store, &appended);
}

#[test]
fn sqlite_round_trip_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = journal_path(&dir);
    let appended = {
        let mut store = SqliteStore::open_exclusive(&path).unwrap();
        assert_eq!(store.path(), path);
        assert_eq!(store.max_deployment().unwrap(), 0);
        let appended = fill(&mut store);
        check_fill(&store, &appended);
        appended
    };
    let mut store = SqliteStore::open(&path).unwrap();
    check_fill(&store, &appended);
    let next = store.append(new(1, "resumed", "{}")).unwrap();
    assert_eq!(
        (next.seq, next.index, next.prev_hash.as_str()),
        (6, 4, appended[4].hash.as_str())
    );
    let daemon = store.append(new(0, "started", "null")).unwrap();
    assert_eq!(
        (daemon.seq, daemon.index, daemon.prev_hash.as_str()),
        (7, 1, GENESIS_HASH)
    );
    assert!(store.verify(1).unwrap().intact);
    assert!(store.verify(0).unwrap().intact);
}

#[test]
fn timestamps_round_trip_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let path = journal_path(&dir);
    let times = [
        at(0, 0),
        at(1, 1),
        at(2, 999_999_999),
        Utc.timestamp_opt(0, 0).unwrap(),
        Utc::now(),
    ];
    {
        let mut store = SqliteStore::open(&path).unwrap();
        for time in times {
            store
                .append(NewEntry {
                    at: time,
                    ..new(3, "event", "{}")
                })
                .unwrap();
        }
    }
    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(
        store.deployment(3).unwrap().iter().map(|e| e.at).collect::<Vec<_>>(),
        times
    );
    let stored: String = rusqlite::Connection::open(&path)
        .unwrap()
        .query_row("SELECT at FROM entries WHERE seq = 2", [], |row| row.get(0))
        .unwrap();
    assert_eq!(stored, "2024-05-01T12:00:01.000000001Z");
}

#[test]
fn rejects_invalid_entries() {
    let dir = tempfile::tempdir().unwrap();
    let mut sqlite = SqliteStore::open(&journal_path(&dir)).unwrap();
    let mut memory = MemoryStore::new();
    for store in [&mut sqlite as &mut dyn Store, &mut memory] {
        let err = store.append(new(1, "event", "not json")).unwrap_err();
        assert!(matches!(err, StoreError::InvalidEntry { deployment: 1, .. }), "{err}");
        assert!(err.to_string().contains("not JSON"), "{err}");
        let err = store.append(new(u64::MAX, "event", "{}")).unwrap_err();
        assert!(matches!(err, StoreError::InvalidEntry { .. }), "{err}");
        assert_eq!(store.all().unwrap(), []);
        assert_eq!(store.append(new(1, "event", "{}")).unwrap().seq, 1);
    }
}

fn tamper(path: &Path, sql: &str) {
    let conn = rusqlite::Connection::open(path).unwrap();
    assert_eq!(conn.execute(sql, []).unwrap(), 1, "{sql}");
}

/// A journal with deployment 1 at entries 1..=6 (seqs 1, 3, 5, …) and deployment 2 interleaved.
fn chain_of_six(path: &Path) -> Vec<Entry> {
    let mut store = SqliteStore::open(path).unwrap();
    for i in 0..6 {
        store.append(new(2, "event", &format!("{{\"i\": {i}}}"))).unwrap();
        store.append(new(1, "event", &format!("{{\"i\": {i}}}"))).unwrap();
    }
    store.deployment(1).unwrap()
}

#[test]
fn verify_detects_edited_body() {
    let dir = tempfile::tempdir().unwrap();
    let path = journal_path(&dir);
    let entries = chain_of_six(&path);
    assert_eq!(entries[2].seq, 6);
    tamper(
        &path,
        r#"UPDATE entries SET body = '{"i": 99}' WHERE deployment = 1 AND idx = 3"#,
    );
    let store = SqliteStore::open(&path).unwrap();
    let verification = store.verify(1).unwrap();
    assert!(!verification.intact);
    assert_eq!(verification.entries, 6);
    assert_eq!(
        verification.problems,
        ["entry 3 (seq 6): hash does not match its content (edited?)"]
    );
    assert_eq!(verification.head.as_deref(), Some(entries[5].hash.as_str()));
    assert!(store.verify(2).unwrap().intact);
}

#[test]
fn verify_detects_edit_with_recomputed_hash() {
    let dir = tempfile::tempdir().unwrap();
    let path = journal_path(&dir);
    let entries = chain_of_six(&path);
    let e = &entries[2];
    let forged = entry_hash(&e.prev_hash, e.deployment, e.index, &e.at, &e.kind, r#"{"i": 99}"#);
    tamper(
        &path,
        &format!(r#"UPDATE entries SET body = '{{"i": 99}}', hash = '{forged}' WHERE seq = 6"#),
    );
    let verification = SqliteStore::open(&path).unwrap().verify(1).unwrap();
    assert_eq!(
        verification.problems,
        ["entry 4 (seq 8): prev_hash does not match entry 3"]
    );
}

#[test]
fn verify_detects_deleted_entry() {
    let dir = tempfile::tempdir().unwrap();
    let path = journal_path(&dir);
    chain_of_six(&path);
    tamper(&path, "DELETE FROM entries WHERE deployment = 1 AND idx = 5");
    let verification = SqliteStore::open(&path).unwrap().verify(1).unwrap();
    assert!(!verification.intact);
    assert_eq!(verification.entries, 5);
    assert_eq!(verification.problems, ["entry 5 missing (entries 4 and 6 present)"]);

    tamper(&path, "DELETE FROM entries WHERE deployment = 1 AND idx = 1");
    let verification = SqliteStore::open(&path).unwrap().verify(1).unwrap();
    assert_eq!(
        verification.problems,
        [
            "entry 1 missing (first present is entry 2)",
            "entry 5 missing (entries 4 and 6 present)"
        ]
    );
}

#[test]
fn verify_detects_swapped_prev_hash() {
    let dir = tempfile::tempdir().unwrap();
    let path = journal_path(&dir);
    let entries = chain_of_six(&path);
    // Entry 4 now claims to follow entry 2.
    tamper(
        &path,
        &format!("UPDATE entries SET prev_hash = '{}' WHERE seq = 8", entries[1].hash),
    );
    let verification = SqliteStore::open(&path).unwrap().verify(1).unwrap();
    assert!(!verification.intact);
    assert_eq!(
        verification.problems,
        [
            "entry 4 (seq 8): hash does not match its content (edited?)",
            "entry 4 (seq 8): prev_hash does not match entry 3",
        ]
    );
}

#[test]
fn verify_empty_deployment() {
    let dir = tempfile::tempdir().unwrap();
    let path = journal_path(&dir);
    chain_of_six(&path);
    let verification = SqliteStore::open(&path).unwrap().verify(9).unwrap();
    assert_eq!(verification.deployment, 9);
    assert_eq!(verification.entries, 0);
    assert!(!verification.intact);
    assert_eq!(verification.problems, ["no entries"]);
    assert_eq!(verification.head, None);
}

#[test]
fn verify_chain_checks_genesis_order_and_ownership() {
    let mut store = MemoryStore::new();
    let mut entries = fill(&mut store);
    entries.retain(|e| e.deployment == 1);

    let mut wrong_genesis = entries.clone();
    wrong_genesis[0].prev_hash = entries[1].hash.clone();
    assert_eq!(
        verify_chain(1, &wrong_genesis).problems,
        [
            "entry 1 (seq 1): hash does not match its content (edited?)",
            "entry 1 (seq 1): prev_hash is not the genesis hash (64 zeros)",
        ]
    );

    let mut swapped = entries.clone();
    swapped.swap(1, 2);
    assert_eq!(
        verify_chain(1, &swapped).problems,
        [
            "entry 2 missing (entries 1 and 3 present)",
            "entry 2 (seq 3): out of order (follows entry 3)",
            "entry 2 (seq 3): seq is not after that of entry 3 (seq 5)",
        ]
    );

    assert_eq!(
        verify_chain(2, &entries[..1]).problems,
        ["entry 1 (seq 1): belongs to deployment 1"]
    );
}

#[test]
fn second_exclusive_open_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = journal_path(&dir);
    let mut daemon = SqliteStore::open_exclusive(&path).unwrap();
    let err = SqliteStore::open_exclusive(&path).unwrap_err();
    assert!(matches!(err, StoreError::InUse { .. }), "{err:?}");
    let message = err.to_string();
    assert!(message.contains(&path.display().to_string()), "{message}");
    assert!(
        message.contains("in use by another stagecoach daemon; stop it or use another --state-dir"),
        "{message}"
    );
    // Offline tools are refused too while the daemon runs.
    assert!(matches!(
        SqliteStore::open(&path).unwrap_err(),
        StoreError::InUse { .. }
    ));
    // The daemon itself is unaffected.
    daemon.append(new(1, "submitted", "{}")).unwrap();
    drop(daemon);
    let store = SqliteStore::open_exclusive(&path).unwrap();
    assert_eq!(store.all().unwrap().len(), 1);
}

#[test]
fn garbage_file_is_not_a_journal() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal.db");
    let garbage =
        b"this is certainly not a SQLite database, just some text that happens to be long enough\n".repeat(20);
    std::fs::write(&path, &garbage).unwrap();
    for result in [SqliteStore::open(&path), SqliteStore::open_exclusive(&path)] {
        let err = result.unwrap_err();
        assert!(matches!(err, StoreError::NotAJournal { .. }), "{err:?}");
        let message = err.to_string();
        assert!(
            message.contains(&path.display().to_string()) && message.contains("is not a Stagecoach journal"),
            "{message}"
        );
    }
    assert_eq!(std::fs::read(&path).unwrap(), garbage, "the file was modified");
}

#[test]
fn other_sqlite_database_is_not_a_journal() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("other.db");
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute_batch("CREATE TABLE notes (text TEXT)")
        .unwrap();
    let err = SqliteStore::open(&path).unwrap_err();
    assert!(matches!(err, StoreError::NotAJournal { .. }), "{err:?}");
}

#[test]
fn newer_schema_asks_for_upgrade() {
    let dir = tempfile::tempdir().unwrap();
    let path = journal_path(&dir);
    drop(SqliteStore::open(&path).unwrap());
    rusqlite::Connection::open(&path)
        .unwrap()
        .pragma_update(None, "user_version", 2)
        .unwrap();
    for result in [SqliteStore::open(&path), SqliteStore::open_exclusive(&path)] {
        let err = result.unwrap_err();
        assert!(matches!(err, StoreError::TooNew { found: 2, known: 1, .. }), "{err:?}");
        assert_eq!(
            err.to_string(),
            format!(
                "{}: journal schema version 2 is newer than this stagecoach (knows 1); upgrade stagecoach",
                path.display()
            )
        );
    }
}

#[test]
fn uncreatable_directory_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("file");
    std::fs::write(&blocker, "").unwrap();
    let err = SqliteStore::open(&blocker.join("sub").join("journal.db")).unwrap_err();
    assert!(matches!(err, StoreError::CreateDir { .. }), "{err:?}");
    assert!(
        err.to_string().contains(&blocker.join("sub").display().to_string()),
        "{err}"
    );
}

/// A batch extends each deployment's chain like single appends would, and
/// an invalid entry anywhere in a batch keeps all of it out.
#[test]
fn batches_chain_like_single_appends_and_are_all_or_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut sqlite = SqliteStore::open(&journal_path(&dir)).unwrap();
    let mut memory = MemoryStore::default();
    for store in [&mut sqlite as &mut dyn Store, &mut memory] {
        store.append(new(1, "submitted", "{}")).unwrap();
        let written = store
            .append_batch(vec![
                new(2, "submitted", "{}"),
                new(1, "event", r#"{"n":1}"#),
                new(2, "event", r#"{"n":2}"#),
                new(1, "event", r#"{"n":3}"#),
            ])
            .unwrap();
        assert_eq!(written.iter().map(|e| e.seq).collect::<Vec<_>>(), [2, 3, 4, 5]);
        assert_eq!(written.iter().map(|e| e.index).collect::<Vec<_>>(), [1, 2, 2, 3]);
        for d in [1, 2] {
            let v = store.verify(d).unwrap();
            assert!(v.intact, "deployment {d}: {:?}", v.problems);
        }
        let refused = store.append_batch(vec![new(1, "event", "{}"), new(2, "event", "not json")]);
        assert!(
            matches!(refused, Err(StoreError::InvalidEntry { deployment: 2, .. })),
            "{refused:?}"
        );
        assert_eq!(
            store.all().unwrap().len(),
            5,
            "nothing of the refused batch was written"
        );
        assert_eq!(store.deployment(1).unwrap().len(), 3);
        assert!(store.append_batch(vec![]).unwrap().is_empty());
    }
}
