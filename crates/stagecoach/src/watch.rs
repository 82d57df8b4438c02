//! `watch` (and `submit --watch`): follows a deployment's event stream
//! until it ends, printing a line per fact (a spinner with the live state
//! on a terminal, NDJSON with `--json`) and reconnecting to a daemon that
//! went away for up to 30 s. The exit code is 0 when the deployment
//! succeeded, 1 when it ended otherwise.

use std::io::IsTerminal;
use std::ops::ControlFlow;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use client::wire::{fact_time, EntryKind, EventsQuery};
use client::{Received, StreamError};
use workflow::record::{fmt_num, simulated, Decision, Fact, Record};
use workflow::thresholds::MetricSample;
use workflow::types::{Stage, Status};

use crate::commands::{emit, Api, Failure};
use crate::render::{describe_fact, request_title, time, title, traffic_from_step, whole_pct};

/// How long `watch` keeps trying to reconnect to a daemon that went away.
const RECONNECT_WINDOW: Duration = Duration::from_secs(30);
const RECONNECT_FIRST_DELAY: Duration = Duration::from_millis(250);
const RECONNECT_MAX_DELAY: Duration = Duration::from_secs(4);
/// A stream connection that lasted this long counts as working even without entries.
const HEALTHY_CONNECTION: Duration = Duration::from_secs(5);

/// What `watch` knows about the deployment so far.
#[derive(Debug)]
struct Watcher {
    deployment: String,
    title: String,
    stage: Option<Stage>,
    status: Option<Status>,
    traffic: Option<u8>,
    sample: Option<MetricSample>,
    /// When DEPLOY started, to date the samples.
    deploy_started: Option<DateTime<Utc>>,
    /// Roles whose approval is asked of a person and not decided yet.
    pending: Vec<workflow::types::Role>,
    last_seq: Option<u64>,
}

/// What one entry changed: lines to print, and the final status once it is there.
#[derive(Debug, Default, PartialEq)]
struct Handled {
    lines: Vec<String>,
    finished: Option<Status>,
}

impl Watcher {
    fn new(deployment: &str, title: &str) -> Watcher {
        Watcher {
            deployment: deployment.to_string(),
            title: title.to_string(),
            stage: None,
            status: None,
            traffic: None,
            sample: None,
            deploy_started: None,
            pending: vec![],
            last_seq: None,
        }
    }

    /// Takes one entry; `None` when it was seen before or belongs to another deployment.
    fn handle(&mut self, received: &Received) -> Option<Handled> {
        let entry = &received.entry;
        if self.last_seq.is_some_and(|last| entry.seq <= last) {
            return None;
        }
        self.last_seq = Some(entry.seq);
        if entry.deployment.to_string() != self.deployment {
            return None;
        }
        let mut out = Handled::default();
        if entry.kind == EntryKind::Resumed {
            out.lines
                .push(format!("{} {} resumed by the daemon", time(&entry.at), self.deployment));
        }
        for fact in entry.body.facts() {
            self.apply(fact);
            if let Fact::Status { status, .. } = fact {
                if status.is_terminal() {
                    out.finished = Some(*status);
                }
            }
            if let Some(text) = describe_fact(fact, self.deploy_started) {
                let at = fact_time(fact).unwrap_or(entry.at);
                out.lines.push(format!("{} {} {text}", time(&at), self.deployment));
            }
        }
        Some(out)
    }

    fn apply(&mut self, fact: &Fact) {
        match fact {
            Fact::Submitted { request, .. } => self.title = request_title(request),
            Fact::Status { status, .. } => {
                self.status = Some(*status);
                if status.is_terminal() {
                    self.pending.clear();
                }
            }
            Fact::StageStarted { stage, .. } => self.stage = Some(*stage),
            Fact::DeployStarted { at, .. } => self.deploy_started = Some(*at),
            Fact::ApprovalRequested { role, .. } => {
                self.pending.retain(|r| r != role);
                self.pending.push(*role);
            }
            Fact::Approval(a) if a.decision != Decision::Refused => self.pending.retain(|r| *r != a.role),
            Fact::DeployStep(s) if s.ok => {
                if let Some(t) = traffic_from_step(&s.step) {
                    self.traffic = Some(t);
                }
            }
            Fact::Sample(s) => {
                self.traffic = Some(s.traffic_percent);
                if let Some(m) = &s.sample {
                    self.sample = Some(*m);
                }
            }
            _ => {}
        }
    }

    /// The live line of the spinner.
    fn summary(&self) -> String {
        let mut parts = vec![self.deployment.clone()];
        if let Some(stage) = self.stage {
            parts.push(stage.to_string());
        }
        if let Some(status) = self.status {
            parts.push(status.to_string());
        }
        if !self.pending.is_empty() {
            let roles: Vec<&str> = self.pending.iter().map(|r| r.as_str()).collect();
            parts.push(format!("waiting for approval by {}", roles.join(", ")));
        }
        if let Some(t) = self.traffic {
            parts.push(format!("{t}% traffic"));
        }
        if let Some(m) = &self.sample {
            parts.push(format!(
                "err {:.2}% p99 {}ms cpu {} mem {}{}",
                m.error_rate * 100.0,
                fmt_num(m.latency_p99_ms.round()),
                whole_pct(m.cpu),
                whole_pct(m.memory),
                simulated(m.simulated)
            ));
        }
        parts.join(" · ")
    }
}

/// Where `watch` writes: plain lines, a spinner on a terminal, or NDJSON.
enum Display {
    Plain,
    Spinner(indicatif::ProgressBar),
    Json,
}

impl Display {
    fn new(json: bool, watcher: &Watcher) -> Display {
        if json {
            return Display::Json;
        }
        if !std::io::stderr().is_terminal() {
            return Display::Plain;
        }
        let bar = indicatif::ProgressBar::new_spinner();
        if let Ok(style) = indicatif::ProgressStyle::with_template("{spinner} {wide_msg}") {
            bar.set_style(style);
        }
        bar.set_message(watcher.summary());
        bar.enable_steady_tick(Duration::from_millis(120));
        Display::Spinner(bar)
    }

    fn entry(&self, received: &Received, handled: &Handled, watcher: &Watcher) {
        match self {
            Display::Json => emit(&received.json.to_string()),
            Display::Plain => handled.lines.iter().for_each(|l| emit(l)),
            Display::Spinner(bar) => {
                if !handled.lines.is_empty() {
                    bar.suspend(|| handled.lines.iter().for_each(|l| emit(l)));
                }
                bar.set_message(watcher.summary());
            }
        }
    }

    /// A message about the watching itself, on stderr.
    fn notice(&self, text: &str) {
        match self {
            Display::Spinner(bar) => bar.suspend(|| eprintln!("{text}")),
            Display::Plain | Display::Json => eprintln!("{text}"),
        }
    }

    fn finish(&self) {
        if let Display::Spinner(bar) = self {
            bar.finish_and_clear();
        }
    }
}

/// How one connection to the event stream ended.
enum StreamEnd {
    /// The deployment reached this terminal status.
    Finished(Status),
    /// The stream ended or broke.
    Dropped { why: String },
}

/// Hands the entries `next` reads to `on_entry` until it breaks or the stream ends.
/// Entries this client cannot read are skipped.
fn read_stream(
    mut next: impl FnMut() -> Result<Option<Received>, StreamError>,
    mut on_entry: impl FnMut(&Received) -> ControlFlow<Status>,
) -> StreamEnd {
    loop {
        let received = match next() {
            Ok(Some(received)) => received,
            Ok(None) => {
                return StreamEnd::Dropped {
                    why: "the daemon closed the event stream".into(),
                }
            }
            Err(StreamError::Undecodable { .. }) => continue,
            Err(e @ (StreamError::Broken(_) | StreamError::TimedOut)) => {
                return StreamEnd::Dropped {
                    why: format!("the event stream broke: {e}"),
                }
            }
        };
        if let ControlFlow::Break(status) = on_entry(&received) {
            return StreamEnd::Finished(status);
        }
    }
}

/// Exit code of a watched deployment that ended with `status`.
fn exit_code_for_final(status: Status) -> u8 {
    if status == Status::Succeeded {
        0
    } else {
        1
    }
}

/// Follows the deployment's event stream until a terminal status, reconnecting for up to 30 s.
pub(crate) fn watch(api: &Api, record: &Record, json: bool) -> Result<u8, Failure> {
    let id = record.id.to_string();
    let mut watcher = Watcher::new(&id, &title(record));
    watcher.status = Some(record.status);
    let display = Display::new(json, &watcher);
    if !json {
        display.notice(&format!(
            "watching {id} ({}); Ctrl-C stops watching, not the deployment",
            watcher.title
        ));
    }
    let mut outage: Option<Instant> = None;
    let mut delay = RECONNECT_FIRST_DELAY;
    let mut told = false;
    loop {
        let seen = watcher.last_seq;
        let opened = Instant::now();
        let query = EventsQuery {
            deployment: Some(id.clone()),
            after: watcher.last_seq,
        };
        let why = match api.call(|c| c.events(&query)) {
            Ok(mut stream) => {
                let end = read_stream(
                    || stream.next_entry(),
                    |received| {
                        let Some(handled) = watcher.handle(received) else {
                            return ControlFlow::Continue(());
                        };
                        display.entry(received, &handled, &watcher);
                        match handled.finished {
                            Some(status) => ControlFlow::Break(status),
                            None => ControlFlow::Continue(()),
                        }
                    },
                );
                match end {
                    StreamEnd::Finished(status) => {
                        display.finish();
                        if !json {
                            eprintln!("{id} ended: {status}");
                        }
                        return Ok(exit_code_for_final(status));
                    }
                    StreamEnd::Dropped { why } => {
                        // A connection that brought new entries, or stayed up, was no outage.
                        if watcher.last_seq != seen || opened.elapsed() >= HEALTHY_CONNECTION {
                            outage = None;
                            delay = RECONNECT_FIRST_DELAY;
                            told = false;
                        }
                        why
                    }
                }
            }
            Err(f) if f.retryable() => f.message(),
            Err(f) => {
                display.finish();
                return Err(f);
            }
        };
        let since = *outage.get_or_insert_with(Instant::now);
        if since.elapsed() >= RECONNECT_WINDOW {
            display.finish();
            return Err(Failure::unreachable(format!(
                "lost the event stream of {id} for {} s: {why}",
                RECONNECT_WINDOW.as_secs()
            )));
        }
        if !told {
            display.notice(&format!("{why}; reconnecting…"));
            told = true;
        }
        std::thread::sleep(delay);
        delay = (delay * 2).min(RECONNECT_MAX_DELAY);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::tests::{sample_record, ts};
    use crate::render::{describe_sample, render_status};
    use client::EntryDecoder;
    use serde_json::Value;
    use workflow::record::SampleEntry;

    fn entry_json(seq: u64, deployment: &str, facts: Value) -> String {
        serde_json::json!({
            "seq": seq,
            "deployment": deployment,
            "index": 3,
            "at": "2026-03-03T10:20:00.123Z",
            "kind": "event",
            "hash": "ab12",
            "prev_hash": "9f00",
            "body": {"kind": "event", "input": "Observed", "facts": facts},
        })
        .to_string()
    }

    fn stream_of(entries: &[String]) -> String {
        let mut s = String::from(": hello\n\n");
        for (i, e) in entries.iter().enumerate() {
            s.push_str(&format!("id: {i}\nevent: entry\ndata: {e}\n\n"));
        }
        s
    }

    /// The entries of a whole stream's text, one at a time, as the HTTP stream gives them.
    fn entries_of(text: &str) -> impl FnMut() -> Result<Option<Received>, StreamError> {
        let mut decoder = EntryDecoder::default();
        decoder.push(text.as_bytes());
        move || decoder.next_entry().transpose()
    }

    #[test]
    fn entries_are_read_from_a_stream_and_unknown_facts_skipped() {
        let facts = serde_json::json!([
            {"fact": "stage_started", "at": "2026-03-03T10:20:00Z", "stage": "deploy"},
            {"fact": "from_the_future", "at": "2026-03-03T10:20:00Z"},
            {"fact": "sample", "at": "2026-03-03T10:25:00Z", "stage": "deploy", "minute": 5,
             "traffic_percent": 25,
             "sample": {"error_rate": 0.001, "latency_p99_ms": 120.0, "cpu": 0.4, "memory": 0.55},
             "error": null},
            {"fact": "alert", "broken": 1},
        ]);
        let text = stream_of(&[
            entry_json(10, "d-000001", facts),
            entry_json(11, "d-000002", serde_json::json!([])),
            "not json".to_string(),
        ]);
        let mut seen = vec![];
        let end = read_stream(entries_of(&text), |e| {
            seen.push(e.clone());
            ControlFlow::Continue(())
        });
        assert!(matches!(end, StreamEnd::Dropped { .. }));
        assert_eq!(seen.iter().map(|e| e.entry.seq).collect::<Vec<_>>(), vec![10, 11]);
        assert_eq!(seen[0].json["hash"], "ab12");
        let facts = seen[0].entry.body.facts();
        assert_eq!(facts.len(), 2);

        let mut w = Watcher::new("d-000001", "web 1.2.3");
        let h = w.handle(&seen[0]).unwrap();
        assert_eq!(
            h.lines,
            vec![
                "2026-03-03T10:20:00Z d-000001 stage deploy started",
                "2026-03-03T10:25:00Z d-000001 sample 25% traffic: error 0.10% p99 120 ms cpu 40% memory 55% (minute 5)",
            ]
        );
        assert_eq!(h.finished, None);
        assert_eq!(
            w.summary(),
            "d-000001 · deploy · 25% traffic · err 0.10% p99 120ms cpu 40% mem 55%"
        );
        // Another deployment's entry and a replayed entry are skipped.
        assert_eq!(w.handle(&seen[1]), None);
        assert_eq!(w.handle(&seen[0]), None);
        assert_eq!(w.last_seq, Some(11));
    }

    #[test]
    fn a_terminal_status_ends_the_watch() {
        let facts = serde_json::json!([
            {"fact": "stage_finished", "at": "2026-03-03T11:00:00Z", "stage": "monitor", "outcome": "passed", "note": ""},
            {"fact": "status", "at": "2026-03-03T11:00:00Z", "status": "succeeded", "note": "all checks passed"},
        ]);
        let text = stream_of(&[
            entry_json(3, "d-000001", facts),
            entry_json(4, "d-000001", serde_json::json!([])),
        ]);
        let mut w = Watcher::new("d-000001", "web 1.2.3");
        let mut lines = vec![];
        let end = read_stream(entries_of(&text), |e| {
            let h = w.handle(e).unwrap();
            lines.extend(h.lines);
            match h.finished {
                Some(s) => ControlFlow::Break(s),
                None => ControlFlow::Continue(()),
            }
        });
        assert!(matches!(end, StreamEnd::Finished(Status::Succeeded)));
        assert_eq!(
            lines,
            vec![
                "2026-03-03T11:00:00Z d-000001 stage monitor passed",
                "2026-03-03T11:00:00Z d-000001 status succeeded: all checks passed",
            ]
        );
        assert_eq!(exit_code_for_final(Status::Succeeded), 0);
        assert_eq!(exit_code_for_final(Status::RolledBack), 1);
        assert_eq!(exit_code_for_final(Status::Cancelled), 1);
        // A non-terminal status does not end it.
        let mut w = Watcher::new("d-000001", "web");
        let e = Received::decode(&entry_json(
            1,
            "d-000001",
            serde_json::json!([{"fact": "status", "at": "2026-03-03T10:00:00Z", "status": "awaiting_approval", "note": ""}]),
        ))
        .unwrap();
        assert_eq!(w.handle(&e).unwrap().finished, None);
        assert_eq!(w.status, Some(Status::AwaitingApproval));
    }

    #[test]
    fn facts_read_as_lines() {
        let sample = SampleEntry {
            at: ts("2026-03-03T10:25:00Z"),
            stage: Stage::Monitor,
            minute: 12,
            traffic_percent: 100,
            sample: None,
            error: Some("metrics endpoint timed out".into()),
        };
        assert_eq!(
            describe_sample(&sample, None),
            "100% traffic: no metrics: metrics endpoint timed out (minute 12)"
        );
        assert_eq!(
            describe_sample(&sample, Some(ts("2026-03-03T10:24:18Z"))),
            "100% traffic: no metrics: metrics endpoint timed out (42 s into DEPLOY)"
        );
        let alert: Fact = serde_json::from_value(serde_json::json!({
            "fact": "alert", "at": "2026-03-03T10:26:00Z", "stage": "deploy", "metric": "error_rate",
            "value": 0.06, "threshold": 0.05, "action": "rollback"
        }))
        .unwrap();
        assert_eq!(
            describe_fact(&alert, None).unwrap(),
            "alert error rate 6% over 5% -> rollback"
        );
        let step: Fact = serde_json::from_value(serde_json::json!({
            "fact": "deploy_step", "at": "2026-03-03T10:26:00Z",
            "step": "Canary at 25% of traffic, health checks passed", "ok": true, "detail": ""
        }))
        .unwrap();
        assert_eq!(
            describe_fact(&step, None).unwrap(),
            "step Canary at 25% of traffic, health checks passed"
        );
        let mut w = Watcher::new("d-000001", "web");
        w.apply(&step);
        assert_eq!(w.traffic, Some(25));
        assert_eq!(traffic_from_step("Traffic switched to green"), Some(100));
        assert_eq!(
            traffic_from_step("Instances 3-4/10 drained, updated, health-checked and restored"),
            Some(40)
        );
        assert_eq!(traffic_from_step("Instance 1/4 drained"), Some(25));
        assert_eq!(traffic_from_step("Backup created"), None);
        let status: Fact = serde_json::from_value(serde_json::json!({
            "fact": "status", "at": "2026-03-03T10:26:00Z", "status": "rolled_back", "note": ""
        }))
        .unwrap();
        assert_eq!(describe_fact(&status, None).unwrap(), "status rolled_back");
    }

    #[test]
    fn status_names_the_pending_roles_and_lists_refused_attempts_under_them() {
        let mut r = sample_record();
        let facts = serde_json::json!([
            {"fact": "status", "at": "2026-03-03T10:25:00Z", "status": "awaiting_approval", "note": ""},
            {"fact": "approval_requested", "at": "2026-03-03T10:25:00Z", "role": "manager", "deadline": "2026-03-04T10:25:00Z"},
            {"fact": "approval_requested", "at": "2026-03-03T10:25:00Z", "role": "security", "deadline": "2026-03-04T10:25:00Z"},
            {"fact": "approval", "role": "manager", "decision": "refused", "by": "alice", "at": "2026-03-03T10:26:07Z",
             "reason": "alice submitted this deployment and cannot approve it (separation of duties)", "criteria": []},
        ]);
        for f in facts.as_array().unwrap() {
            r.apply(&serde_json::from_value(f.clone()).unwrap());
        }
        let text = render_status(&r);
        assert!(
            text.contains(
                "approvals:\n  manager   pending         since 2026-03-03T10:25:00Z, deadline 2026-03-04T10:25:00Z\n    refused: alice at 2026-03-03T10:26:07Z: alice submitted this deployment and cannot approve it (separation of duties)\n  security  pending         since 2026-03-03T10:25:00Z, deadline 2026-03-04T10:25:00Z\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("waiting for approval by manager, security: stagecoach approve d-000001 --role manager [--reason …], or stagecoach reject d-000001 --role manager --reason …\n"),
            "{text}"
        );
        assert!(!text.contains("refused  "), "{text}");

        // The watch summary names them too, until they are decided.
        let mut w = Watcher::new("d-000001", "web 1.2.3");
        for f in facts.as_array().unwrap() {
            w.apply(&serde_json::from_value(f.clone()).unwrap());
        }
        assert!(
            w.summary().contains("waiting for approval by manager, security"),
            "{}",
            w.summary()
        );
        let granted: Fact = serde_json::from_value(serde_json::json!({"fact": "approval", "role": "manager",
            "decision": "granted", "by": "bob", "at": "2026-03-03T10:30:00Z", "reason": "ok", "criteria": []}))
        .unwrap();
        w.apply(&granted);
        assert!(
            w.summary().contains("waiting for approval by security"),
            "{}",
            w.summary()
        );
        let requested: Fact = serde_json::from_value(facts[1].clone()).unwrap();
        assert_eq!(
            describe_fact(&requested, None).unwrap(),
            "approval manager pending: waiting for a person with the manager role until 2026-03-04T10:25:00Z"
        );

        // Samples are dated from the start of DEPLOY, in seconds under a minute.
        let mut r = sample_record();
        for f in [
            serde_json::json!({"fact": "deploy_started", "at": "2026-03-03T10:20:00Z", "strategy": "canary"}),
            serde_json::json!({"fact": "sample", "at": "2026-03-03T10:20:42Z", "stage": "deploy", "minute": 0,
                "traffic_percent": 10, "sample": {"error_rate": 0.0, "latency_p99_ms": 25.0, "cpu": 0.0, "memory": 0.0}, "error": null}),
        ] {
            r.apply(&serde_json::from_value(f).unwrap());
        }
        let text = render_status(&r);
        assert!(
            text.contains("last sample: 10% traffic: error 0.00% p99 25 ms cpu 0% memory 0% (42 s into DEPLOY) at 2026-03-03T10:20:42Z\n"),
            "{text}"
        );
    }
}
