//! What the Coordinator needs of the journal: reading it back into a
//! [`Fleet`] (with every chain checked), encoding entries for a batch, and
//! counting how long writes take.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Utc};
use workflow::fleet::{Fleet, JournalEntry, Staged, Work};
use workflow::types::DeploymentId;
use workflow::{Fact, Settings};

use crate::messages::{CommandError, Stats, Streamed};

/// Journal write latency, for /metrics.
#[derive(Debug)]
pub(crate) struct WriteStats {
    count: u64,
    sum: f64,
    max: f64,
    buckets: [u64; WRITE_BUCKETS.len()],
}

/// Upper bounds, in seconds, of the write latency histogram.
const WRITE_BUCKETS: [f64; 8] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5];

impl WriteStats {
    pub(crate) fn new() -> WriteStats {
        WriteStats {
            count: 0,
            sum: 0.0,
            max: 0.0,
            buckets: [0; WRITE_BUCKETS.len()],
        }
    }

    /// `n` entries were written in one commit of `secs` seconds.
    pub(crate) fn count(&mut self, n: usize, secs: f64) {
        self.count += n as u64;
        self.sum += secs * n as f64;
        self.max = self.max.max(secs);
        for (i, bound) in WRITE_BUCKETS.iter().enumerate() {
            if secs <= *bound {
                self.buckets[i] += n as u64;
            }
        }
    }
}

/// The daemon's counters: deployments by status and stage durations from
/// the fleet, journal writes from `writes`.
pub(crate) fn stats(fleet: &Fleet, writes: &WriteStats) -> Stats {
    let mut s = Stats::default();
    for m in fleet.machines() {
        *s.by_status.entry(m.status().as_str().to_string()).or_insert(0) += 1;
        for st in &m.record().stages {
            if let Some(end) = st.finished_at {
                let secs = (end - st.started_at).num_milliseconds() as f64 / 1000.0;
                s.stage_seconds.push((st.stage.as_str().to_string(), secs));
            }
        }
    }
    s.queue_depth = fleet.queue_depth();
    s.journal_writes = writes.count;
    s.journal_write_seconds_sum = writes.sum;
    s.journal_write_seconds_max = writes.max;
    s.journal_write_buckets = WRITE_BUCKETS.iter().copied().zip(writes.buckets).collect();
    s
}

/// The entries of a batch as the journal stores them, each with the facts
/// it produced (moved out of the entry, for the event stream).
pub(crate) fn encode(staged: Vec<Staged>) -> Result<Vec<(journal::NewEntry, Vec<Fact>)>, String> {
    staged
        .into_iter()
        .map(|s| {
            let entry = journal::NewEntry {
                deployment: s.id.0,
                at: s.at,
                kind: s.entry.kind().to_string(),
                body: s
                    .entry
                    .encode()
                    .map_err(|e| format!("cannot encode a journal entry: {e}"))?,
            };
            let facts = match s.entry {
                JournalEntry::Submitted { facts, .. } | JournalEntry::Event { facts, .. } => facts,
                JournalEntry::Resumed { .. } => vec![],
            };
            Ok((entry, facts))
        })
        .collect()
}

/// Stored entries with every fact each produced: read from its body, or
/// derived by replaying its deployment where the body stores the input
/// alone (an observation).
pub(crate) fn with_facts(journal: &dyn journal::Store, entries: Vec<journal::Entry>) -> Result<Vec<Streamed>, String> {
    let mut decoded = Vec::with_capacity(entries.len());
    let mut derive: BTreeMap<u64, BTreeMap<u64, Vec<Fact>>> = BTreeMap::new();
    for e in &entries {
        let id = DeploymentId(e.deployment);
        let facts = match decode(id, e.index, Some(e.seq), &e.body)? {
            JournalEntry::Event { event, facts } if facts.is_empty() && event.facts_derived() => {
                derive.insert(e.deployment, BTreeMap::new());
                None
            }
            JournalEntry::Submitted { facts, .. } | JournalEntry::Event { facts, .. } => Some(facts),
            JournalEntry::Resumed { .. } => Some(vec![]),
        };
        decoded.push(facts);
    }
    for (deployment, by_index) in derive.iter_mut() {
        let id = DeploymentId(*deployment);
        let chain = journal.deployment(*deployment).map_err(|e| e.to_string())?;
        let inputs = chain
            .iter()
            .map(|e| Ok((e.at, decode(id, e.index, Some(e.seq), &e.body)?)))
            .collect::<Result<Vec<_>, String>>()?;
        let facts = Fleet::facts_by_entry(id, inputs)?;
        *by_index = chain.iter().map(|e| e.index).zip(facts).collect();
    }
    Ok(entries
        .into_iter()
        .zip(decoded)
        .map(|(entry, facts)| {
            let facts = facts
                .or_else(|| derive.get_mut(&entry.deployment)?.remove(&entry.index))
                .unwrap_or_default();
            Streamed { entry, facts }
        })
        .collect())
}

/// One stored body, read; the error names the entry.
pub(crate) fn decode(id: DeploymentId, index: u64, seq: Option<u64>, body: &str) -> Result<JournalEntry, String> {
    JournalEntry::decode(body).map_err(|err| {
        let seq = seq.map(|s| format!(" (seq {s})")).unwrap_or_default();
        format!("journal entry {index}{seq} of {id} cannot be read: {err}")
    })
}

/// The fleet the journal holds, and one line per deployment whose chain is broken.
pub(crate) fn replay(settings: Arc<Settings>, journal: &dyn journal::Store) -> Result<(Fleet, Vec<String>), String> {
    let entries = journal.all().map_err(|e| e.to_string())?;
    // Check every chain on the entries already read.
    let mut chains: BTreeMap<u64, Vec<&journal::Entry>> = BTreeMap::new();
    for e in &entries {
        chains.entry(e.deployment).or_default().push(e);
    }
    let mut broken = vec![];
    for (d, mut chain) in chains {
        chain.sort_by_key(|e| e.index);
        let v = journal::verify_chain(d, chain);
        if !v.intact {
            broken.push(format!(
                "journal chain of {} is broken: {}",
                DeploymentId(d),
                v.problems.join("; ")
            ));
        }
    }
    let mut inputs = Vec::with_capacity(entries.len());
    for e in entries {
        let id = DeploymentId(e.deployment);
        inputs.push((id, e.at, decode(id, e.index, Some(e.seq), &e.body)?));
    }
    let (fleet, warnings) = Fleet::replay(settings, inputs)?;
    for w in warnings {
        tracing::warn!("replay: {w}");
    }
    let live = fleet.machines().filter(|m| !m.is_finished()).count();
    if fleet.machines().next().is_some() {
        tracing::info!(
            deployments = fleet.machines().count(),
            in_flight = live,
            "journal replayed"
        );
    }
    Ok((fleet, broken))
}

/// Group commit: the journal, the batch of entries not yet durable, and
/// everything waiting for that batch (work to carry out, callers to answer).
pub(crate) struct GroupCommit {
    journal: Box<dyn journal::Store>,
    /// Every durable entry, for the event stream.
    entries: tokio::sync::broadcast::Sender<Streamed>,
    writes: WriteStats,
    pending: Vec<journal::NewEntry>,
    /// The facts of each pending entry, for the event stream.
    pending_facts: Vec<Vec<Fact>>,
    deferred: Vec<Work>,
    waiters: Vec<tokio::sync::oneshot::Sender<Result<(), String>>>,
    flush_scheduled: bool,
}

impl GroupCommit {
    pub(crate) fn new(journal: Box<dyn journal::Store>) -> GroupCommit {
        GroupCommit {
            journal,
            entries: tokio::sync::broadcast::channel(1024).0,
            writes: WriteStats::new(),
            pending: vec![],
            pending_facts: vec![],
            deferred: vec![],
            waiters: vec![],
            flush_scheduled: false,
        }
    }

    pub(crate) fn journal(&self) -> &dyn journal::Store {
        self.journal.as_ref()
    }

    pub(crate) fn writes(&self) -> &WriteStats {
        &self.writes
    }

    /// A receiver of every entry made durable from now on.
    pub(crate) fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Streamed> {
        self.entries.subscribe()
    }

    /// Adds `staged` to the batch. True when a flush must be scheduled (the
    /// first entries of a batch).
    pub(crate) fn stage(&mut self, staged: Vec<Staged>) -> Result<bool, String> {
        let encoded = encode(staged)?;
        if encoded.is_empty() {
            return Ok(false);
        }
        for (entry, facts) in encoded {
            self.pending.push(entry);
            self.pending_facts.push(facts);
        }
        Ok(!std::mem::replace(&mut self.flush_scheduled, true))
    }

    /// `work` back when nothing is waiting to be written (it may run now);
    /// otherwise it waits for the batch.
    pub(crate) fn defer(&mut self, work: Work) -> Option<Work> {
        if self.pending.is_empty() {
            return Some(work);
        }
        self.deferred.push(work);
        None
    }

    /// Answers `result` once everything staged so far is durable, or
    /// `Unavailable` if it could not be written.
    pub(crate) fn durably<T: 'static>(
        &mut self,
        result: Result<T, CommandError>,
    ) -> Pin<Box<dyn Future<Output = Result<T, CommandError>>>> {
        if self.pending.is_empty() {
            return Box::pin(std::future::ready(result));
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.waiters.push(tx);
        Box::pin(async move {
            match rx.await {
                Ok(Ok(())) => result,
                Ok(Err(e)) => Err(CommandError::Unavailable(format!(
                    "journal write failed, nothing was changed: {e}"
                ))),
                Err(_) => Err(CommandError::Unavailable(
                    "the coordinator stopped before the journal write".into(),
                )),
            }
        })
    }

    /// Writes the batch in one durable transaction and answers its callers.
    /// `Ok`: the work it implied, to carry out now. `Err`: nothing of it was
    /// written, and nothing of it may be carried out.
    pub(crate) fn flush(&mut self) -> Result<Vec<Work>, String> {
        self.flush_scheduled = false;
        let entries = std::mem::take(&mut self.pending);
        let facts = std::mem::take(&mut self.pending_facts);
        let deferred = std::mem::take(&mut self.deferred);
        let waiters = std::mem::take(&mut self.waiters);
        if entries.is_empty() {
            return Ok(deferred);
        }
        let n = entries.len();
        let started = Instant::now();
        match self.journal.append_batch(entries) {
            Ok(written) => {
                self.writes.count(n, started.elapsed().as_secs_f64());
                for (entry, facts) in written.into_iter().zip(facts) {
                    // Nobody listening is fine.
                    let _ = self.entries.send(Streamed { entry, facts });
                }
                for w in waiters {
                    let _ = w.send(Ok(()));
                }
            }
            Err(e) => {
                tracing::error!(entries = n, error = %e, "journal write failed; nothing of it was carried out, rebuilding the state from the journal");
                for w in waiters {
                    let _ = w.send(Err(e.to_string()));
                }
                return Err(e.to_string());
            }
        }
        Ok(deferred)
    }

    /// The inputs of deployment `id`, durable and staged, in order.
    pub(crate) fn inputs(&self, id: DeploymentId) -> Result<Vec<(DateTime<Utc>, JournalEntry)>, String> {
        let durable = self.journal.deployment(id.0).map_err(|e| e.to_string())?;
        let staged = self.pending.iter().filter(|e| e.deployment == id.0);
        let staged = staged.map(|e| (e.at, &e.body));
        let all = durable.iter().map(|e| (e.at, &e.body)).chain(staged);
        all.enumerate()
            .map(|(index, (at, body))| Ok((at, decode(id, index as u64 + 1, None, body)?)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use journal::Store;

    #[test]
    fn a_journal_of_a_newer_format_is_not_replayed() {
        let mut store = journal::MemoryStore::new();
        store
            .append(journal::NewEntry {
                deployment: 1,
                at: "2026-03-03T10:00:00Z".parse().expect("time"),
                kind: "resumed".into(),
                body: r#"{"format":9,"kind":"resumed","effects":[]}"#.into(),
            })
            .expect("append");
        let Err(err) = replay(Arc::new(Settings::builtin()), &store) else {
            panic!("a journal entry of format 9 was replayed");
        };
        assert!(
            err.contains("journal entry 1 (seq 1) of d-000001")
                && err.contains("journal format 9")
                && err.contains("upgrade Stagecoach"),
            "{err}"
        );
    }
}
