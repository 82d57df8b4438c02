//! The durable, tamper-evident journal of the Stagecoach daemon.
//!
//! Every deployment's history is a chain of [`Entry`]s. The daemon appends an
//! entry *before* it acts on it and, after a crash, rebuilds all of its state
//! by reading the journal back. Storage sits behind the [`Store`] trait:
//! [`SqliteStore`] is the durable implementation, [`MemoryStore`] serves tests
//! and the simulator, and a networked database can take their place later.
//!
//! # Durability
//!
//! [`Store::append`] returns `Ok` only once the entry is durable. The SQLite
//! store runs in WAL mode with `synchronous=FULL`, so every committed append
//! has been fsync'd to the write-ahead log before `append` returns; a crash
//! or power loss afterwards cannot lose it. An append that returns an error
//! has not happened: it ran in a transaction that was rolled back.
//!
//! # Numbering
//!
//! The store assigns each entry a global `seq` (strictly increasing from 1
//! across all deployments, the order of [`Store::all`] and [`Store::since`])
//! and an `index` within its deployment (1, 2, 3, … per deployment).
//! Deployment 0 is allowed and holds daemon-wide entries.
//!
//! # Hash chain
//!
//! Each entry carries `prev_hash`, the `hash` of the previous entry of the same
//! deployment ([`GENESIS_HASH`], 64 `'0'`s, for index 1), and its own `hash`,
//! computed by [`entry_hash`] as the lowercase hex SHA-256 of this byte string:
//!
//! ```text
//! str(prev_hash) ‖ u64(deployment) ‖ u64(index) ‖ str(at) ‖ str(kind) ‖ str(body)
//!
//! u64(n) = n as 8 bytes, big-endian
//! str(s) = u64(byte length of s) ‖ the UTF-8 bytes of s
//! at     = the timestamp in RFC 3339 with nanoseconds and a `Z` suffix,
//!          e.g. `2024-05-01T12:00:00.000000000Z`
//! ```
//!
//! Every field is either fixed-width or length-prefixed, so two different
//! entries never encode to the same bytes. The timestamp is hashed in exactly
//! the form in which it is stored, so the hash survives a storage round trip.
//!
//! [`verify_chain`] recomputes every hash, checks every `prev_hash` link and
//! the continuity of the indexes. This detects an entry edited, deleted or
//! inserted in the middle of a chain, even by someone editing the SQLite file
//! directly. It cannot detect that the *last* entries of a chain were
//! removed, nor a chain rewritten wholesale with recomputed hashes; to catch
//! those, compare [`Verification::head`] with a head hash recorded elsewhere.

mod sqlite;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::PathBuf;

pub use sqlite::{disk_full_error, SqliteStore, SCHEMA_VERSION};

/// The `prev_hash` of the first entry of every chain: 64 `'0'`s.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// One appended entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Global position, strictly increasing from 1, assigned by the store.
    pub seq: u64,
    /// Deployment number (0 for daemon-wide entries).
    pub deployment: u64,
    /// Position within its deployment's chain, from 1, assigned by the store.
    pub index: u64,
    /// When it happened; stored as RFC 3339 with nanoseconds and round-trips exactly.
    pub at: DateTime<Utc>,
    /// What kind of entry this is, e.g. `"submitted"`, `"event"`, `"resumed"`.
    pub kind: String,
    /// JSON text, stored verbatim.
    pub body: String,
    /// Hex SHA-256 of the previous entry of the same deployment; [`GENESIS_HASH`] for index 1.
    pub prev_hash: String,
    /// Hex SHA-256 of this entry, see [`entry_hash`].
    pub hash: String,
}

/// An entry to append; the store assigns the rest of an [`Entry`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEntry {
    pub deployment: u64,
    pub at: DateTime<Utc>,
    pub kind: String,
    /// Must be valid JSON text; it is stored verbatim.
    pub body: String,
}

/// Result of checking one deployment's chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verification {
    pub deployment: u64,
    /// How many entries the deployment has.
    pub entries: u64,
    /// True when there are entries and no problems.
    pub intact: bool,
    /// Human-readable problems, first one first, e.g.
    /// `"entry 7 (seq 41): hash does not match its content (edited?)"`,
    /// `"entry 8 (seq 45): prev_hash does not match entry 7"`,
    /// `"entry 5 missing (entries 4 and 6 present)"`, `"no entries"`.
    pub problems: Vec<String>,
    /// Hash of the last entry, as stored.
    pub head: Option<String>,
}

/// Why the journal could not be opened, read or appended to.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create the journal directory {}: {source}; check its permissions or use another --state-dir", path.display())]
    CreateDir { path: PathBuf, source: std::io::Error },
    #[error("{} is not a Stagecoach journal ({detail}); move it aside or use another --state-dir", path.display())]
    NotAJournal { path: PathBuf, detail: String },
    #[error("{}: journal schema version {found} is newer than this stagecoach (knows {known}); upgrade stagecoach", path.display())]
    TooNew { path: PathBuf, found: i64, known: i64 },
    #[error("{} is in use by another stagecoach daemon; stop it or use another --state-dir", path.display())]
    InUse { path: PathBuf },
    #[error("journal {} holds an unreadable entry (seq {seq}): {detail}; the file is damaged, restore it from a backup", path.display())]
    Corrupt { path: PathBuf, seq: i64, detail: String },
    #[error("cannot append to the journal of deployment {deployment}: {reason}")]
    InvalidEntry { deployment: u64, reason: String },
    #[error("journal {}: {source}{}", path.display(), database_hint(source))]
    Database { path: PathBuf, source: rusqlite::Error },
}

/// What to do about a database error, where SQLite's code says.
fn database_hint(e: &rusqlite::Error) -> &'static str {
    match e.sqlite_error_code() {
        Some(rusqlite::ErrorCode::DatabaseCorrupt | rusqlite::ErrorCode::NotADatabase) => {
            "; the file is damaged and nothing in it can be trusted: move it aside (with its -wal and -shm files) \
             and restore it from a backup, or start with another --state-dir"
        }
        Some(rusqlite::ErrorCode::DiskFull) => "; free space on its file system: the daemon resumes by itself",
        Some(rusqlite::ErrorCode::ReadOnly | rusqlite::ErrorCode::PermissionDenied) => {
            "; make the state dir and the journal writable by the daemon's user"
        }
        _ => "",
    }
}

/// Durable storage of the journal.
pub trait Store: Send {
    /// Appends durably: when `Ok` returns, the entry is on disk (fsync'd).
    /// Assigns `seq`, `index`, `prev_hash` and `hash`. Fails with
    /// [`StoreError::InvalidEntry`] when the body is not JSON, the deployment
    /// number exceeds `i64::MAX` or the timestamp has no RFC 3339 form.
    fn append(&mut self, entry: NewEntry) -> Result<Entry, StoreError>;
    /// Appends several entries, of any deployments, atomically and durably:
    /// when `Ok` returns, all of them are on disk, in the order given; on an
    /// error none of them is. This is group commit: one fsync for the batch.
    /// The default appends one by one, which is atomic only for stores whose
    /// appends cannot fail after validation (like [`MemoryStore`]).
    fn append_batch(&mut self, entries: Vec<NewEntry>) -> Result<Vec<Entry>, StoreError> {
        entries.iter().try_for_each(validate)?;
        entries.into_iter().map(|e| self.append(e)).collect()
    }
    /// Every entry, in seq order.
    fn all(&self) -> Result<Vec<Entry>, StoreError>;
    /// Entries with seq > `after`, in seq order (for event streams catching up).
    fn since(&self, after: u64) -> Result<Vec<Entry>, StoreError>;
    /// One deployment's entries in index order.
    fn deployment(&self, deployment: u64) -> Result<Vec<Entry>, StoreError>;
    /// Checks one deployment's chain with [`verify_chain`].
    fn verify(&self, deployment: u64) -> Result<Verification, StoreError> {
        Ok(verify_chain(deployment, &self.deployment(deployment)?))
    }
    /// Highest deployment number present (0 when empty).
    fn max_deployment(&self) -> Result<u64, StoreError>;
}

/// The hex SHA-256 of an entry, over the encoding described in the [crate docs](crate#hash-chain).
pub fn entry_hash(prev_hash: &str, deployment: u64, index: u64, at: &DateTime<Utc>, kind: &str, body: &str) -> String {
    fn field(hasher: &mut Sha256, text: &str) {
        hasher.update((text.len() as u64).to_be_bytes());
        hasher.update(text.as_bytes());
    }
    let mut hasher = Sha256::new();
    field(&mut hasher, prev_hash);
    hasher.update(deployment.to_be_bytes());
    hasher.update(index.to_be_bytes());
    field(&mut hasher, &timestamp(at));
    field(&mut hasher, kind);
    field(&mut hasher, body);
    hex(&hasher.finalize().into())
}

/// Checks one deployment's chain, given its entries in index order: every
/// entry belongs to `deployment`, its hash matches its content, its
/// `prev_hash` matches the previous entry's hash (or [`GENESIS_HASH`] for
/// index 1), indexes run 1, 2, 3, … without gaps and seqs increase.
pub fn verify_chain<'a>(deployment: u64, entries: impl IntoIterator<Item = &'a Entry>) -> Verification {
    let mut problems = Vec::new();
    let mut count = 0;
    let mut previous: Option<&Entry> = None;
    for entry in entries {
        count += 1;
        // Named only in a problem: most chains have none.
        let at = || format!("entry {} (seq {})", entry.index, entry.seq);
        if entry.deployment != deployment {
            problems.push(format!("{}: belongs to deployment {}", at(), entry.deployment));
        }
        let expected_index = previous.map_or(1, |p| p.index + 1);
        if let Some(p) = previous.filter(|p| entry.index <= p.index) {
            problems.push(format!("{}: out of order (follows entry {})", at(), p.index));
        } else if entry.index > expected_index {
            problems.push(missing(expected_index, entry.index, previous));
        }
        if entry.hash
            != entry_hash(
                &entry.prev_hash,
                entry.deployment,
                entry.index,
                &entry.at,
                &entry.kind,
                &entry.body,
            )
        {
            problems.push(format!("{}: hash does not match its content (edited?)", at()));
        }
        match previous {
            // A gap was reported above; the link to the missing entry cannot be checked.
            _ if entry.index != expected_index => {}
            None if entry.prev_hash != GENESIS_HASH => {
                problems.push(format!("{}: prev_hash is not the genesis hash (64 zeros)", at()));
            }
            Some(p) if entry.prev_hash != p.hash => {
                problems.push(format!("{}: prev_hash does not match entry {}", at(), p.index));
            }
            _ => {}
        }
        if let Some(p) = previous.filter(|p| entry.seq <= p.seq) {
            problems.push(format!(
                "{}: seq is not after that of entry {} (seq {})",
                at(),
                p.index,
                p.seq
            ));
        }
        previous = Some(entry);
    }
    if count == 0 {
        problems.push("no entries".to_owned());
    }
    Verification {
        deployment,
        entries: count,
        intact: problems.is_empty(),
        problems,
        head: previous.map(|e| e.hash.clone()),
    }
}

/// Describes the missing indexes `from..to` (exclusive), with the present neighbours.
fn missing(from: u64, to: u64, previous: Option<&Entry>) -> String {
    let what = if to - from == 1 {
        format!("entry {from} missing")
    } else {
        format!("entries {from} to {} missing", to - 1)
    };
    match previous {
        Some(p) => format!("{what} (entries {} and {to} present)", p.index),
        None => format!("{what} (first present is entry {to})"),
    }
}

/// The stored (and hashed) form of a timestamp.
fn timestamp(at: &DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Nanos, true)
}

/// Parses the stored form of a timestamp.
fn parse_timestamp(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text).ok().map(|at| at.with_timezone(&Utc))
}

/// Rejects entries that could not be stored or read back faithfully.
fn validate(entry: &NewEntry) -> Result<(), StoreError> {
    let invalid = |reason: String| StoreError::InvalidEntry {
        deployment: entry.deployment,
        reason,
    };
    if i64::try_from(entry.deployment).is_err() {
        return Err(invalid(format!("deployment number exceeds {}", i64::MAX)));
    }
    if parse_timestamp(&timestamp(&entry.at)) != Some(entry.at) {
        return Err(invalid(format!("timestamp {} has no exact RFC 3339 form", entry.at)));
    }
    if let Err(err) = serde_json::from_str::<serde::de::IgnoredAny>(&entry.body) {
        return Err(invalid(format!(
            "body of the {:?} entry is not JSON: {err}",
            entry.kind
        )));
    }
    Ok(())
}

/// Builds the stored entry that follows `last` (the deployment's current last entry).
fn chain(seq: u64, last: Option<(u64, &str)>, entry: NewEntry) -> Entry {
    let (index, prev_hash) = last.map_or((1, GENESIS_HASH), |(index, hash)| (index + 1, hash));
    let hash = entry_hash(prev_hash, entry.deployment, index, &entry.at, &entry.kind, &entry.body);
    Entry {
        seq,
        deployment: entry.deployment,
        index,
        at: entry.at,
        kind: entry.kind,
        body: entry.body,
        prev_hash: prev_hash.to_owned(),
        hash,
    }
}

/// A journal held in memory, for tests and the simulator. Nothing survives a drop.
///
/// Entries are kept compactly (the hash as 32 bytes, the previous hash as a
/// link to the previous entry, the kind as a small number, the body without
/// spare capacity), because a simulation of thousands of deployments holds
/// hundreds of thousands of them; [`Entry`]s are built when read.
#[derive(Debug, Clone, Default)]
pub struct MemoryStore {
    entries: Vec<Stored>,
    /// Every kind seen, indexed by `Stored::kind`.
    kinds: Vec<Box<str>>,
    /// Position in `entries` of each deployment's last entry.
    last: std::collections::HashMap<u64, usize>,
}

/// One entry of a [`MemoryStore`]; its seq is its position + 1.
#[derive(Debug, Clone)]
struct Stored {
    deployment: u64,
    index: u64,
    at: DateTime<Utc>,
    kind: u16,
    body: Box<str>,
    hash: [u8; 32],
    /// Position of the previous entry of the same deployment.
    prev: Option<usize>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn entry(&self, position: usize) -> Entry {
        let s = &self.entries[position];
        Entry {
            seq: position as u64 + 1,
            deployment: s.deployment,
            index: s.index,
            at: s.at,
            kind: self.kinds[usize::from(s.kind)].to_string(),
            body: s.body.to_string(),
            prev_hash: s
                .prev
                .map_or_else(|| GENESIS_HASH.to_owned(), |p| hex(&self.entries[p].hash)),
            hash: hex(&s.hash),
        }
    }

    fn kind_number(&mut self, kind: &str) -> u16 {
        match self.kinds.iter().position(|k| &**k == kind) {
            Some(i) => i as u16,
            None => {
                self.kinds.push(kind.into());
                (self.kinds.len() - 1) as u16
            }
        }
    }
}

impl Store for MemoryStore {
    fn append(&mut self, entry: NewEntry) -> Result<Entry, StoreError> {
        validate(&entry)?;
        if self.kinds.len() >= usize::from(u16::MAX) && !self.kinds.iter().any(|k| **k == *entry.kind) {
            return Err(StoreError::InvalidEntry {
                deployment: entry.deployment,
                reason: format!("more than {} kinds of entries", u16::MAX),
            });
        }
        let prev = self.last.get(&entry.deployment).copied();
        let last_hash = prev.map(|p| hex(&self.entries[p].hash));
        let entry = chain(
            self.entries.len() as u64 + 1,
            prev.map(|p| self.entries[p].index).zip(last_hash.as_deref()),
            entry,
        );
        let kind = self.kind_number(&entry.kind);
        self.last.insert(entry.deployment, self.entries.len());
        self.entries.push(Stored {
            deployment: entry.deployment,
            index: entry.index,
            at: entry.at,
            kind,
            body: entry.body.as_str().into(),
            hash: unhex(&entry.hash).expect("entry_hash gives 64 hex digits"),
            prev,
        });
        Ok(entry)
    }

    fn all(&self) -> Result<Vec<Entry>, StoreError> {
        Ok((0..self.entries.len()).map(|i| self.entry(i)).collect())
    }

    fn since(&self, after: u64) -> Result<Vec<Entry>, StoreError> {
        let from = usize::try_from(after).unwrap_or(usize::MAX).min(self.entries.len());
        Ok((from..self.entries.len()).map(|i| self.entry(i)).collect())
    }

    fn deployment(&self, deployment: u64) -> Result<Vec<Entry>, StoreError> {
        let mut positions = vec![];
        let mut at = self.last.get(&deployment).copied();
        while let Some(p) = at {
            positions.push(p);
            at = self.entries[p].prev;
        }
        Ok(positions.into_iter().rev().map(|p| self.entry(p)).collect())
    }

    fn max_deployment(&self) -> Result<u64, StoreError> {
        Ok(self.last.keys().copied().max().unwrap_or(0))
    }
}

/// Lowercase hex of a SHA-256.
fn hex(bytes: &[u8; 32]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(64);
    for byte in bytes {
        out.push(HEX[usize::from(byte >> 4)] as char);
        out.push(HEX[usize::from(byte & 0xf)] as char);
    }
    out
}

/// The 32 bytes of a 64-digit hex SHA-256.
fn unhex(text: &str) -> Option<[u8; 32]> {
    let digits = text.as_bytes();
    if digits.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in digits.chunks(2).enumerate() {
        let value = |c: u8| (c as char).to_digit(16);
        out[i] = u8::try_from(value(pair[0])? * 16 + value(pair[1])?).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    /// Pins the documented encoding (value computed independently with Python's hashlib).
    #[test]
    fn entry_hash_known_answer() {
        let at = Utc.with_ymd_and_hms(2024, 5, 1, 12, 0, 0).unwrap() + chrono::Duration::nanoseconds(123_456_789);
        assert_eq!(
            entry_hash(GENESIS_HASH, 7, 1, &at, "submitted", r#"{"a":1}"#),
            "6ae8811227082844979309f9db24a5b575dc3eb247fe8847f2e18e2ae32bb0dd"
        );
    }

    /// Length prefixes keep shifted field boundaries apart.
    #[test]
    fn entry_hash_is_unambiguous() {
        let at = Utc.timestamp_opt(0, 0).unwrap();
        assert_ne!(
            entry_hash(GENESIS_HASH, 1, 1, &at, "ab", "c"),
            entry_hash(GENESIS_HASH, 1, 1, &at, "a", "bc")
        );
    }
}

/// A store shared between its users (clones see the same entries): the
/// Coordinator writes through one clone while a caller keeps another to read
/// the journal afterwards (the simulator replays it, the benchmarks measure it).
#[derive(Clone)]
pub struct SharedStore(std::sync::Arc<std::sync::Mutex<Box<dyn Store>>>);

impl SharedStore {
    pub fn new(store: Box<dyn Store>) -> SharedStore {
        SharedStore(std::sync::Arc::new(std::sync::Mutex::new(store)))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Box<dyn Store>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Store for SharedStore {
    fn append(&mut self, entry: NewEntry) -> Result<Entry, StoreError> {
        self.lock().append(entry)
    }
    fn append_batch(&mut self, entries: Vec<NewEntry>) -> Result<Vec<Entry>, StoreError> {
        self.lock().append_batch(entries)
    }
    fn all(&self) -> Result<Vec<Entry>, StoreError> {
        self.lock().all()
    }
    fn since(&self, after: u64) -> Result<Vec<Entry>, StoreError> {
        self.lock().since(after)
    }
    fn deployment(&self, deployment: u64) -> Result<Vec<Entry>, StoreError> {
        self.lock().deployment(deployment)
    }
    fn verify(&self, deployment: u64) -> Result<Verification, StoreError> {
        self.lock().verify(deployment)
    }
    fn max_deployment(&self) -> Result<u64, StoreError> {
        self.lock().max_deployment()
    }
}
