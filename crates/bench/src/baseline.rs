//! The physical limits each figure is compared with, measured in the same
//! run: a raw actix round trip, raw SQLite inserts in large transactions and
//! one raw durable SQLite commit.

use std::path::Path;
use std::time::{Duration, Instant};

use actix::prelude::*;
use rusqlite::{params, Connection};

struct Echo;

impl Actor for Echo {
    type Context = Context<Self>;
}

#[derive(Message)]
#[rtype(result = "u64")]
struct Ping(u64);

impl Handler<Ping> for Echo {
    type Result = u64;
    fn handle(&mut self, msg: Ping, _: &mut Context<Self>) -> u64 {
        msg.0 + 1
    }
}

/// Mean time of one `send(...).await` to an actor on the same arbiter and
/// back, over `n` sequential round trips (after a warm-up).
pub fn actix_round_trip(n: u64) -> Duration {
    let system = actix::System::new();
    let elapsed = system.block_on(async move {
        let echo = Echo.start();
        for i in 0..1000 {
            let _ = echo.send(Ping(i)).await;
        }
        let started = Instant::now();
        let mut sum = 0;
        for i in 0..n {
            sum += echo.send(Ping(i)).await.unwrap_or(0);
        }
        std::hint::black_box(sum);
        started.elapsed()
    });
    actix::System::current().stop();
    elapsed / n as u32
}

/// A database like the journal's: WAL, `synchronous=FULL`, the same table.
fn open(path: &Path) -> Result<Connection, String> {
    let conn = Connection::open(path).map_err(|e| e.to_string())?;
    conn.pragma_update_and_check(None, "journal_mode", "WAL", |_| Ok(()))
        .map_err(|e| e.to_string())?;
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(|e| e.to_string())?;
    conn.execute_batch(
        "CREATE TABLE entries (seq INTEGER PRIMARY KEY, deployment INTEGER NOT NULL, idx INTEGER NOT NULL,
         at TEXT NOT NULL, kind TEXT NOT NULL, body TEXT NOT NULL, prev_hash TEXT NOT NULL, hash TEXT NOT NULL,
         UNIQUE(deployment, idx))",
    )
    .map_err(|e| e.to_string())?;
    Ok(conn)
}

fn insert(conn: &Connection, seq: i64, body: &str) -> rusqlite::Result<usize> {
    let hash = "ab".repeat(32);
    conn.prepare_cached(
        "INSERT INTO entries (seq, deployment, idx, at, kind, body, prev_hash, hash) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?
    .execute(params![
        seq,
        seq % 10_000,
        seq,
        "2026-12-01T10:05:00.000000000Z",
        "event",
        body,
        hash,
        hash
    ])
}

/// Raw rusqlite rows per second: `total` inserts of `row_bytes`-byte bodies,
/// 1000 per transaction, in a fresh file in `dir`.
pub fn sqlite_batched_rate(dir: &Path, total: u64, row_bytes: usize) -> Result<f64, String> {
    let conn = open(&dir.join("baseline-batched.sqlite"))?;
    let body = format!("\"{}\"", "x".repeat(row_bytes.saturating_sub(2)));
    let started = Instant::now();
    let mut seq = 0i64;
    while (seq as u64) < total {
        let tx = conn.unchecked_transaction().map_err(|e| e.to_string())?;
        for _ in 0..1000 {
            seq += 1;
            insert(&tx, seq, &body).map_err(|e| e.to_string())?;
        }
        tx.commit().map_err(|e| e.to_string())?;
    }
    Ok(seq as f64 / started.elapsed().as_secs_f64())
}

/// Mean latency of one durable commit of one row, over `n` commits.
pub fn sqlite_single_commit(dir: &Path, n: u64, row_bytes: usize) -> Result<Duration, String> {
    let conn = open(&dir.join("baseline-single.sqlite"))?;
    let body = format!("\"{}\"", "x".repeat(row_bytes.saturating_sub(2)));
    for seq in 1..=10 {
        insert(&conn, seq, &body).map_err(|e| e.to_string())?;
    }
    let started = Instant::now();
    for seq in 11..11 + n as i64 {
        // Autocommit: one transaction, fsync'd, per row.
        insert(&conn, seq, &body).map_err(|e| e.to_string())?;
    }
    Ok(started.elapsed() / n as u32)
}
