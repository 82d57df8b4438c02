//! `STATE_DIR/daemon.pid`: how `stagecoach principal add` finds the daemon
//! of a state dir to tell it to reload its principals (SIGHUP).
//!
//! The daemon writes its pid there once it handles SIGHUP and holds an
//! exclusive lock on the file while it runs; the lock goes away with the
//! process, however it ends. A reader trusts the pid only while the lock is
//! held, so a file left behind by a killed daemon never sends a signal to an
//! unrelated process that got the same pid.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// The pid file in the state dir.
pub const PID_FILE: &str = "daemon.pid";

/// The running daemon's pid file; removed when dropped.
#[derive(Debug)]
pub struct PidFile {
    file: File,
    path: PathBuf,
}

impl PidFile {
    /// Locks `state_dir/daemon.pid` and writes this process's id into it.
    pub fn create(state_dir: &Path) -> Result<PidFile, String> {
        let path = state_dir.join(PID_FILE);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| {
                format!(
                    "cannot create {}: {e}; check the state dir's permissions",
                    path.display()
                )
            })?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                return Err(format!(
                    "{} is locked: another daemon uses this state dir; stop it or pass another --state-dir",
                    path.display()
                ))
            }
            Err(TryLockError::Error(e)) => return Err(format!("cannot lock {}: {e}", path.display())),
        }
        file.set_len(0)
            .and_then(|_| file.write_all(format!("{}\n", std::process::id()).as_bytes()))
            .and_then(|_| file.sync_all())
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        Ok(PidFile { file, path })
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        // Removed while still locked, so no reader sees it unlocked with our pid.
        let _ = std::fs::remove_file(&self.path);
        let _ = self.file.unlock();
    }
}

/// The pid of the daemon running on `state_dir`, if one runs and handles
/// SIGHUP; `Err` when the pid file cannot be read.
pub fn running(state_dir: &Path) -> Result<Option<i32>, String> {
    let path = state_dir.join(PID_FILE);
    let mut file = match File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot open {}: {e}", path.display())),
    };
    match file.try_lock_shared() {
        // Nobody holds it: the daemon that wrote it is gone.
        Ok(()) => return Ok(None),
        Err(TryLockError::WouldBlock) => {}
        Err(TryLockError::Error(e)) => return Err(format!("cannot check the lock of {}: {e}", path.display())),
    }
    let mut text = String::new();
    file.read_to_string(&mut text)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    text.trim()
        .parse::<i32>()
        .ok()
        .filter(|pid| *pid > 0)
        .map(Some)
        .ok_or_else(|| format!("{} does not hold a process id: {:?}", path.display(), text.trim()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pid_counts_only_while_the_file_is_locked() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(running(dir.path()).unwrap(), None, "no file");
        let pid = PidFile::create(dir.path()).unwrap();
        assert_eq!(running(dir.path()).unwrap(), Some(std::process::id() as i32));
        assert!(PidFile::create(dir.path()).is_err(), "a second daemon is refused");
        drop(pid);
        assert!(!dir.path().join(PID_FILE).exists());
        std::fs::write(dir.path().join(PID_FILE), "12345\n").unwrap();
        assert_eq!(running(dir.path()).unwrap(), None, "a stale file is ignored");
    }
}
