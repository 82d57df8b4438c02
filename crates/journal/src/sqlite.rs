//! The journal in a SQLite file.
//!
//! The file holds one table, `entries`, and marks itself as a Stagecoach
//! journal with `PRAGMA application_id` and its schema version with
//! `PRAGMA user_version`. It runs in WAL mode with `synchronous=FULL`, so a
//! committed append is fsync'd before [`Store::append`] returns.
//!
//! The daemon opens the journal with [`SqliteStore::open_exclusive`], which
//! holds an exclusive lock for as long as the store lives: a second daemon on
//! the same file fails at once with [`StoreError::InUse`] instead of
//! interleaving its appends. Offline tools (read, verify) use
//! [`SqliteStore::open`] while no daemon runs.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{params, Connection, ErrorCode, OptionalExtension, Row, TransactionBehavior};

use crate::{chain, parse_timestamp, timestamp, validate, Entry, NewEntry, Store, StoreError};

/// The schema version this build reads and writes.
pub const SCHEMA_VERSION: i64 = 1;

/// `PRAGMA application_id` of a Stagecoach journal: "SCjl".
const APPLICATION_ID: i64 = 0x5343_6a6c;

/// How long to wait for a lock held by another connection before reporting it as in use.
const BUSY_TIMEOUT: Duration = Duration::from_millis(100);

const SCHEMA: &str = "CREATE TABLE entries (
    seq INTEGER PRIMARY KEY,
    deployment INTEGER NOT NULL,
    idx INTEGER NOT NULL,
    at TEXT NOT NULL,
    kind TEXT NOT NULL,
    body TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL,
    UNIQUE(deployment, idx)
)";

const COLUMNS: &str = "seq, deployment, idx, at, kind, body, prev_hash, hash";

/// The journal in a SQLite file.
pub struct SqliteStore {
    conn: Connection,
    path: PathBuf,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens the journal at `path`, creating its parent directories and the
    /// file if needed. For offline tools: it takes no lock beyond SQLite's
    /// usual ones, and fails with [`StoreError::InUse`] if a daemon holds the
    /// file.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        Self::open_with(path, false)
    }

    /// Opens the journal like [`SqliteStore::open`] and locks it exclusively
    /// until the store is dropped, so that a second daemon opening the same
    /// file fails fast with [`StoreError::InUse`].
    pub fn open_exclusive(path: &Path) -> Result<Self, StoreError> {
        Self::open_with(path, true)
    }

    /// The journal file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn open_with(path: &Path, exclusive: bool) -> Result<Self, StoreError> {
        if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| StoreError::CreateDir {
                path: dir.to_owned(),
                source,
            })?;
        }
        let mut conn = Connection::open(path).map_err(|err| classify(path, err))?;
        setup(&mut conn, path, exclusive).map_err(|err| match err {
            Setup::Sqlite(err) => classify(path, err),
            Setup::Store(err) => err,
        })?;
        tracing::debug!(path = %path.display(), exclusive, "journal opened");
        Ok(Self {
            conn,
            path: path.to_owned(),
        })
    }

    fn query(&self, sql: &str, param: i64) -> Result<Vec<Entry>, StoreError> {
        let sqlite = |err| classify(&self.path, err);
        let mut statement = self.conn.prepare_cached(sql).map_err(sqlite)?;
        let rows = statement.query_map([param], Raw::from_row).map_err(sqlite)?;
        rows.map(|raw| raw.map_err(sqlite)?.into_entry(&self.path)).collect()
    }
}

impl Store for SqliteStore {
    fn append(&mut self, entry: NewEntry) -> Result<Entry, StoreError> {
        let mut written = self.append_batch(vec![entry])?;
        Ok(written.pop().expect("one entry in, one out"))
    }

    /// One transaction, so one fsync, for the whole batch.
    fn append_batch(&mut self, entries: Vec<NewEntry>) -> Result<Vec<Entry>, StoreError> {
        entries.iter().try_for_each(validate)?;
        if entries.is_empty() {
            return Ok(vec![]);
        }
        let path = self.path.clone();
        let sqlite = |err| classify(&path, err);
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sqlite)?;
        let mut next_seq: i64 = tx
            .query_row("SELECT coalesce(max(seq), 0) + 1 FROM entries", [], |row| row.get(0))
            .map_err(sqlite)?;
        // The last (index, hash) of each deployment, as this batch extends it.
        let mut heads: HashMap<u64, (u64, String)> = HashMap::new();
        let mut written = Vec::with_capacity(entries.len());
        {
            let mut last_of = tx
                .prepare_cached("SELECT seq, idx, hash FROM entries WHERE deployment = ?1 ORDER BY idx DESC LIMIT 1")
                .map_err(sqlite)?;
            let mut insert = tx
                .prepare_cached(
                    "INSERT INTO entries (seq, deployment, idx, at, kind, body, prev_hash, hash)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                )
                .map_err(sqlite)?;
            for entry in entries {
                let deployment = entry.deployment as i64; // validate() checked that it fits
                let last = match heads.remove(&entry.deployment) {
                    Some(head) => Some(head),
                    None => {
                        let row: Option<(i64, i64, String)> = last_of
                            .query_row([deployment], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
                            .optional()
                            .map_err(sqlite)?;
                        match row {
                            Some((seq, index, hash)) => Some((to_u64(&path, seq, "idx", index)?, hash)),
                            None => None,
                        }
                    }
                };
                let entry = chain(
                    to_u64(&path, next_seq, "seq", next_seq)?,
                    last.as_ref().map(|(i, h)| (*i, h.as_str())),
                    entry,
                );
                insert
                    .execute(params![
                        next_seq,
                        deployment,
                        entry.index as i64,
                        timestamp(&entry.at),
                        entry.kind,
                        entry.body,
                        entry.prev_hash,
                        entry.hash
                    ])
                    .map_err(sqlite)?;
                next_seq += 1;
                heads.insert(entry.deployment, (entry.index, entry.hash.clone()));
                written.push(entry);
            }
        }
        tx.commit().map_err(sqlite)?;
        Ok(written)
    }

    fn all(&self) -> Result<Vec<Entry>, StoreError> {
        self.since(0)
    }

    fn since(&self, after: u64) -> Result<Vec<Entry>, StoreError> {
        let after = i64::try_from(after).unwrap_or(i64::MAX);
        self.query(
            &format!("SELECT {COLUMNS} FROM entries WHERE seq > ?1 ORDER BY seq"),
            after,
        )
    }

    fn deployment(&self, deployment: u64) -> Result<Vec<Entry>, StoreError> {
        let Ok(deployment) = i64::try_from(deployment) else {
            return Ok(Vec::new());
        };
        self.query(
            &format!("SELECT {COLUMNS} FROM entries WHERE deployment = ?1 ORDER BY idx"),
            deployment,
        )
    }

    fn max_deployment(&self) -> Result<u64, StoreError> {
        let max: i64 = self
            .conn
            .query_row("SELECT coalesce(max(deployment), 0) FROM entries", [], |row| row.get(0))
            .map_err(|err| classify(&self.path, err))?;
        Ok(u64::try_from(max).unwrap_or(0))
    }
}

fn setup(conn: &mut Connection, path: &Path, exclusive: bool) -> Result<(), Setup> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    if exclusive {
        // Must precede the first access in WAL mode, so that SQLite locks the
        // file instead of sharing a memory-mapped index with other processes.
        conn.pragma_update(None, "locking_mode", "EXCLUSIVE")?;
    }
    // Only read until the file is known to be a journal or an empty database: never modify someone else's file.
    if !check_format(conn, path)? {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        // Another process may have initialised it since the check.
        if !check_format(&tx, path)? {
            tx.execute_batch(SCHEMA)?;
            tx.pragma_update(None, "application_id", APPLICATION_ID)?;
            tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
        }
        tx.commit()?;
    }
    let mode: String = conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        tracing::warn!(path = %path.display(), mode, "journal could not switch to WAL mode");
    }
    conn.pragma_update(None, "synchronous", "FULL")?;
    if exclusive {
        // A write takes the exclusive lock now rather than at the first append.
        conn.pragma_update(None, "user_version", SCHEMA_VERSION)?;
    }
    Ok(())
}

/// Whether the file is a journal this build can use; `false` when it is an
/// empty database still to initialise.
fn check_format(conn: &Connection, path: &Path) -> Result<bool, Setup> {
    let app_id: i64 = conn.pragma_query_value(None, "application_id", |row| row.get(0))?;
    let version: i64 = conn.pragma_query_value(None, "user_version", |row| row.get(0))?;
    let objects: i64 = conn.query_row("SELECT count(*) FROM sqlite_master", [], |row| row.get(0))?;
    let not_a_journal = |detail: String| {
        Setup::Store(StoreError::NotAJournal {
            path: path.to_owned(),
            detail,
        })
    };
    if app_id == 0 && version == 0 && objects == 0 {
        return Ok(false);
    }
    if app_id != APPLICATION_ID {
        return Err(not_a_journal(format!(
            "a SQLite database with application_id {app_id:#x}"
        )));
    }
    if version > SCHEMA_VERSION {
        return Err(Setup::Store(StoreError::TooNew {
            path: path.to_owned(),
            found: version,
            known: SCHEMA_VERSION,
        }));
    }
    if version < 1 {
        return Err(not_a_journal(format!("unknown schema version {version}")));
    }
    let has_table: bool = conn.query_row(
        "SELECT count(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = 'entries'",
        [],
        |row| row.get(0),
    )?;
    if !has_table {
        return Err(not_a_journal("its entries table is missing".to_owned()));
    }
    Ok(true)
}

/// An error while opening: either already a [`StoreError`] or a SQLite error still to classify.
enum Setup {
    Sqlite(rusqlite::Error),
    Store(StoreError),
}

impl From<rusqlite::Error> for Setup {
    fn from(err: rusqlite::Error) -> Self {
        Setup::Sqlite(err)
    }
}

/// Maps a SQLite error to what it means for the user.
fn classify(path: &Path, err: rusqlite::Error) -> StoreError {
    let path = path.to_owned();
    match err.sqlite_error_code() {
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => StoreError::InUse { path },
        Some(ErrorCode::NotADatabase) => StoreError::NotAJournal {
            path,
            detail: "not a SQLite database".to_owned(),
        },
        _ => StoreError::Database { path, source: err },
    }
}

fn to_u64(path: &Path, seq: i64, column: &str, value: i64) -> Result<u64, StoreError> {
    u64::try_from(value).map_err(|_| StoreError::Corrupt {
        path: path.to_owned(),
        seq,
        detail: format!("negative {column} {value}"),
    })
}

/// One row as stored, before its columns are checked.
struct Raw {
    seq: i64,
    deployment: i64,
    index: i64,
    at: String,
    kind: String,
    body: String,
    prev_hash: String,
    hash: String,
}

impl Raw {
    fn from_row(row: &Row<'_>) -> rusqlite::Result<Self> {
        Ok(Self {
            seq: row.get(0)?,
            deployment: row.get(1)?,
            index: row.get(2)?,
            at: row.get(3)?,
            kind: row.get(4)?,
            body: row.get(5)?,
            prev_hash: row.get(6)?,
            hash: row.get(7)?,
        })
    }

    fn into_entry(self, path: &Path) -> Result<Entry, StoreError> {
        let at = parse_timestamp(&self.at).ok_or_else(|| StoreError::Corrupt {
            path: path.to_owned(),
            seq: self.seq,
            detail: format!("invalid timestamp {:?}", self.at),
        })?;
        Ok(Entry {
            seq: to_u64(path, self.seq, "seq", self.seq)?,
            deployment: to_u64(path, self.seq, "deployment", self.deployment)?,
            index: to_u64(path, self.seq, "idx", self.index)?,
            at,
            kind: self.kind,
            body: self.body,
            prev_hash: self.prev_hash,
            hash: self.hash,
        })
    }
}

/// The error SQLite reports when the disk is full (`SQLITE_FULL`), for the
/// journal at `path`: what fault injection returns to imitate a full disk.
pub fn disk_full_error(path: &Path, detail: &str) -> StoreError {
    StoreError::Database {
        path: path.to_path_buf(),
        source: rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_FULL),
            Some(format!("database or disk is full ({detail})")),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durability_pragmas() {
        let dir = tempfile::tempdir().unwrap();
        for exclusive in [false, true] {
            let path = dir.path().join(format!("journal-{exclusive}.db"));
            let store = SqliteStore::open_with(&path, exclusive).unwrap();
            let pragma = |name: &str| -> String {
                store
                    .conn
                    .pragma_query_value(None, name, |row| row.get::<_, rusqlite::types::Value>(0))
                    .map(|v| format!("{v:?}"))
                    .unwrap()
            };
            assert_eq!(pragma("journal_mode"), r#"Text("wal")"#);
            assert_eq!(pragma("synchronous"), "Integer(2)"); // FULL
            assert_eq!(pragma("user_version"), format!("Integer({SCHEMA_VERSION})"));
            assert_eq!(pragma("application_id"), format!("Integer({APPLICATION_ID})"));
            assert_eq!(
                pragma("locking_mode"),
                if exclusive {
                    r#"Text("exclusive")"#
                } else {
                    r#"Text("normal")"#
                }
            );
        }
    }
}
