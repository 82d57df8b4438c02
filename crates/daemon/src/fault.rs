//! Fault injection for the reliability tests (docs/RELIABILITY.md).
//!
//! With `STAGECOACH_FAULT_JOURNAL_FULL_FILE=PATH`, every journal write fails
//! with SQLite's "database or disk is full" error while the file PATH exists:
//! a full disk that a test can fill and empty at will.
//!
//! With `STAGECOACH_FAULT_ABORT_AFTER_APPENDS=N`
//! in its environment, the daemon aborts (SIGABRT: no destructor runs, nothing
//! is flushed, as with `kill -9`) right after its N-th durable journal append.
//! That puts a crash at an exact journal position, which a `kill -9` from
//! outside can only approximate. The wrapper commits a group of entries one
//! entry at a time (the store's default `append_batch`), so a crash can land
//! between any two entries, as if the group had been cut there. Never set it
//! outside tests; the daemon logs a warning when it is.

use journal::{Entry, NewEntry, Store, StoreError, Verification};

/// The environment variable.
pub const ABORT_AFTER_APPENDS: &str = "STAGECOACH_FAULT_ABORT_AFTER_APPENDS";
/// The environment variable.
pub const JOURNAL_FULL_FILE: &str = "STAGECOACH_FAULT_JOURNAL_FULL_FILE";

/// Wraps `store` in the fault injections the environment asks for.
pub fn inject(store: Box<dyn Store>, journal: &std::path::Path) -> Result<Box<dyn Store>, String> {
    let mut store = store;
    if let Some(flag) = std::env::var_os(JOURNAL_FULL_FILE) {
        let flag = std::path::PathBuf::from(flag);
        tracing::warn!(flag = %flag.display(), "{JOURNAL_FULL_FILE} is set: journal writes fail while this file exists (fault testing)");
        store = Box::new(FullWhile {
            inner: store,
            flag,
            journal: journal.to_path_buf(),
        });
    }
    if let Some(n) = abort_after_appends()? {
        tracing::warn!(
            appends = n,
            "{ABORT_AFTER_APPENDS} is set: this daemon aborts right after that many journal appends (crash testing)"
        );
        store = Box::new(AbortAfter::new(store, n));
    }
    Ok(store)
}

/// A store whose writes fail as on a full disk while `flag` exists.
struct FullWhile {
    inner: Box<dyn Store>,
    flag: std::path::PathBuf,
    journal: std::path::PathBuf,
}

impl FullWhile {
    fn check(&self) -> Result<(), StoreError> {
        if self.flag.exists() {
            return Err(journal::disk_full_error(
                &self.journal,
                &format!("injected while {} exists", self.flag.display()),
            ));
        }
        Ok(())
    }
}

impl Store for FullWhile {
    fn append(&mut self, entry: NewEntry) -> Result<Entry, StoreError> {
        self.check()?;
        self.inner.append(entry)
    }
    fn append_batch(&mut self, entries: Vec<NewEntry>) -> Result<Vec<Entry>, StoreError> {
        self.check()?;
        self.inner.append_batch(entries)
    }
    fn all(&self) -> Result<Vec<Entry>, StoreError> {
        self.inner.all()
    }
    fn since(&self, after: u64) -> Result<Vec<Entry>, StoreError> {
        self.inner.since(after)
    }
    fn deployment(&self, deployment: u64) -> Result<Vec<Entry>, StoreError> {
        self.inner.deployment(deployment)
    }
    fn verify(&self, deployment: u64) -> Result<Verification, StoreError> {
        self.inner.verify(deployment)
    }
    fn max_deployment(&self) -> Result<u64, StoreError> {
        self.inner.max_deployment()
    }
}

/// The configured count, if any; a value that is not a positive integer is an error.
pub fn abort_after_appends() -> Result<Option<u64>, String> {
    match std::env::var(ABORT_AFTER_APPENDS) {
        Err(_) => Ok(None),
        Ok(v) => match v.trim().parse::<u64>() {
            Ok(n) if n > 0 => Ok(Some(n)),
            _ => Err(format!(
                "{ABORT_AFTER_APPENDS}={v:?}: give a positive number of appends, or unset it"
            )),
        },
    }
}

/// A store that aborts the process right after its `n`-th successful append.
pub struct AbortAfter {
    inner: Box<dyn Store>,
    left: u64,
}

impl AbortAfter {
    pub fn new(inner: Box<dyn Store>, n: u64) -> AbortAfter {
        AbortAfter { inner, left: n }
    }
}

impl Store for AbortAfter {
    fn append(&mut self, entry: NewEntry) -> Result<Entry, StoreError> {
        let appended = self.inner.append(entry)?;
        self.left -= 1;
        if self.left == 0 {
            eprintln!(
                "{ABORT_AFTER_APPENDS}: aborting after journal entry seq {} ({} #{} of deployment {})",
                appended.seq, appended.kind, appended.index, appended.deployment
            );
            std::process::abort();
        }
        Ok(appended)
    }
    fn all(&self) -> Result<Vec<Entry>, StoreError> {
        self.inner.all()
    }
    fn since(&self, after: u64) -> Result<Vec<Entry>, StoreError> {
        self.inner.since(after)
    }
    fn deployment(&self, deployment: u64) -> Result<Vec<Entry>, StoreError> {
        self.inner.deployment(deployment)
    }
    fn verify(&self, deployment: u64) -> Result<Verification, StoreError> {
        self.inner.verify(deployment)
    }
    fn max_deployment(&self) -> Result<u64, StoreError> {
        self.inner.max_deployment()
    }
}
