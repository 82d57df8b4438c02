//! The CLI's text: the table of `list`, the summary of `status`, a fact as
//! a line of `watch`, the verdict of `verify`, the figures of `report dora`.
//! Pure functions of the typed answers, tested directly.

use chrono::{DateTime, Utc};
use client::wire::Verification;
use workflow::dora::Dora;
use workflow::record::{
    fmt_duration, fmt_minutes, fmt_num, pct, simulated, Decision, Fact, Record, Request, SampleEntry,
};
use workflow::thresholds::{AlertAction, Metric, MetricSample};
use workflow::types::{NotificationKind, Status};

pub(crate) fn submitted_line(r: &Record) -> String {
    format!(
        "submitted {}: {} ({}, {}) — status {}",
        r.id,
        title(r),
        r.kind,
        r.strategy,
        r.status
    )
}

/// `web 1.2.3`, or `web (previous version)` for a rollback without a target.
pub(crate) fn title(r: &Record) -> String {
    match &r.version {
        Some(v) => format!("{} {v}", r.service),
        None => format!("{} (previous version)", r.service),
    }
}

pub(crate) fn render_verification(id: &str, v: &Verification) -> String {
    if v.intact {
        format!(
            "chain of {id} intact ({} entries, head {})",
            v.entries,
            v.head.as_deref().unwrap_or("-")
        )
    } else {
        let mut out = format!("chain of {id} BROKEN:\n");
        for p in &v.problems {
            out.push_str(&format!("  - {p}\n"));
        }
        out
    }
}

pub(crate) fn time(t: &DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// A fraction as a whole percentage, or "not measured".
pub(crate) fn whole_pct(v: Option<f64>) -> String {
    v.map(|v| format!("{:.0}%", v * 100.0))
        .unwrap_or_else(|| "not measured".into())
}

/// `error 0.10% p99 120 ms cpu 40% memory 55%`, with " (simulated)" when the simulated world gave it.
fn describe_metrics(s: &MetricSample) -> String {
    format!(
        "error {:.2}% p99 {} ms cpu {} memory {}{}",
        s.error_rate * 100.0,
        fmt_num(s.latency_p99_ms.round()),
        whole_pct(s.cpu),
        whole_pct(s.memory),
        simulated(s.simulated)
    )
}

/// `25% traffic: error 0.10% p99 120 ms cpu 40% memory 55% (12 min 30 s into DEPLOY)`;
/// without the start of DEPLOY, the whole minute the sample carries.
pub(crate) fn describe_sample(s: &SampleEntry, deploy_started: Option<DateTime<Utc>>) -> String {
    let metrics = match (&s.sample, &s.error) {
        (Some(m), _) => describe_metrics(m),
        (None, Some(e)) => format!("no metrics: {e}"),
        (None, None) => "no metrics".to_string(),
    };
    let when = match deploy_started {
        Some(start) => format!("{} into DEPLOY", fmt_duration(s.at - start)),
        None => format!("minute {}", s.minute),
    };
    format!("{}% traffic: {metrics} ({when})", s.traffic_percent)
}

fn metric_values(metric: Metric, value: f64, threshold: f64) -> (&'static str, String, String) {
    match metric {
        Metric::ErrorRate => ("error rate", pct(value), pct(threshold)),
        Metric::LatencyP99 => (
            "p99 latency",
            format!("{} ms", fmt_num(value)),
            format!("{} ms", fmt_num(threshold)),
        ),
        Metric::Cpu => ("cpu", pct(value), pct(threshold)),
        Metric::Memory => ("memory", pct(value), pct(threshold)),
    }
}

fn action_name(a: AlertAction) -> &'static str {
    match a {
        AlertAction::Scale => "scale",
        AlertAction::Investigate => "investigate",
        AlertAction::Rollback => "rollback",
    }
}

fn decision_name(d: Decision) -> &'static str {
    match d {
        Decision::Granted => "granted",
        Decision::Denied => "denied",
        Decision::Refused => "refused",
        Decision::TimedOut => "timed out",
        Decision::WindowOverride => "window override",
    }
}

/// One fact as a line of `watch` output (without time and id); `None` for facts not worth a line.
/// `deploy_started` (when DEPLOY started, if it has) dates the samples.
pub(crate) fn describe_fact(fact: &Fact, deploy_started: Option<DateTime<Utc>>) -> Option<String> {
    let with_note = |head: String, note: &str| {
        if note.is_empty() {
            head
        } else {
            format!("{head}: {note}")
        }
    };
    let step = |prefix: &str, s: &workflow::record::StepEntry| {
        let head = format!("{prefix}{}{}", s.step, if s.ok { "" } else { " FAILED" });
        let line = if s.detail.is_empty() || s.detail == s.step {
            head
        } else {
            format!("{head}: {}", s.detail)
        };
        format!("{line}{}", simulated(s.simulated))
    };
    Some(match fact {
        Fact::Submitted { request, strategy, .. } => {
            format!("submitted {} ({}, {strategy})", request_title(request), request.kind)
        }
        Fact::Status { status, note, .. } => with_note(format!("status {status}"), note),
        Fact::StageStarted { stage, .. } => format!("stage {stage} started"),
        Fact::StageFinished {
            stage, outcome, note, ..
        } => with_note(format!("stage {stage} {outcome}"), note),
        Fact::Prepared { report, .. } => format!(
            "prepared {}: tests {}, build {}{}",
            report.artifact,
            if report.tests_passed { "passed" } else { "FAILED" },
            if report.build_succeeded { "ok" } else { "FAILED" },
            if report.simulated.is_empty() {
                String::new()
            } else {
                format!(" (simulated: {})", report.simulated.join(", "))
            }
        ),
        Fact::Scanned { report, .. } => {
            format!(
                "security scan: {} critical vulnerabilities{}",
                report.critical_vulnerabilities,
                simulated(report.simulated)
            )
        }
        Fact::Checklist { .. } => return None,
        Fact::Staged { report, .. } => format!(
            "staging {}{}",
            if report.ok() { "healthy" } else { "NOT healthy" },
            if report.simulated.is_empty() {
                String::new()
            } else {
                format!(" (simulated: {})", report.simulated.join(", "))
            }
        ),
        Fact::Validated { report, .. } => {
            let verdict = match report.recommendation {
                workflow::record::Recommendation::Ready => "ready".to_string(),
                workflow::record::Recommendation::NeedsFixes => format!("needs fixes: {}", report.issues.join("; ")),
            };
            let simulated: Vec<&str> = report
                .suites
                .iter()
                .filter(|s| s.simulated)
                .map(|s| s.name.as_str())
                .collect();
            if simulated.is_empty() {
                format!("validation {verdict}")
            } else {
                format!("validation {verdict} (simulated suites: {})", simulated.join(", "))
            }
        }
        Fact::Approval(a) => with_note(
            format!("approval {} {} by {}", a.role, decision_name(a.decision), a.by),
            &a.reason,
        ),
        Fact::Notification(n) => format!(
            "notification {}: {}{}",
            if n.delivered { "sent" } else { "FAILED" },
            n.subject,
            simulated(n.simulated)
        ),
        Fact::DeployStarted { strategy, .. } => format!("deploy started ({strategy})"),
        Fact::DeployStep(s) => step("step ", s),
        Fact::DeployFinished { .. } => "deploy finished".to_string(),
        Fact::Baseline { sample, error, .. } => match (sample, error) {
            (Some(m), _) => format!("baseline: {}", describe_metrics(m)),
            (None, Some(e)) => format!("baseline unavailable: {e}"),
            (None, None) => "baseline unavailable".to_string(),
        },
        Fact::Sample(s) => format!("sample {}", describe_sample(s, deploy_started)),
        Fact::Checkpoint(c) => format!(
            "{}{}",
            with_note(
                format!(
                    "checkpoint {} ({}) {}",
                    fmt_minutes(c.minute),
                    c.check.title(),
                    if c.passed { "ok" } else { "NOT OK" }
                ),
                &c.detail,
            ),
            simulated(c.simulated)
        ),
        Fact::Alert(a) => {
            let (metric, value, threshold) = metric_values(a.metric, a.value, a.threshold);
            format!("alert {metric} {value} over {threshold} -> {}", action_name(a.action))
        }
        Fact::Escalation(e) => with_note(format!("escalation ({})", e.reason), &e.detail),
        Fact::RollbackStarted { trigger, reason, .. } => with_note(format!("rollback started ({trigger})"), reason),
        Fact::RollbackStep(s) => step("rollback step ", s),
        Fact::RollbackFinished {
            restored_version,
            verified,
            ..
        } => format!(
            "rollback finished: restored {}, {}",
            restored_version.as_ref().map(|v| v.as_str()).unwrap_or("nothing"),
            if *verified { "verified" } else { "NOT verified" }
        ),
        Fact::ProductionVersion { version, .. } => format!(
            "production now runs {}",
            version.as_ref().map(|v| v.as_str()).unwrap_or("no known version")
        ),
        Fact::Acknowledged { index, by, note, .. } => match note {
            Some(note) => format!("escalation e{index} acknowledged by {by}: {note}"),
            None => format!("escalation e{index} acknowledged by {by}"),
        },
        Fact::Unblocked { by, reason, .. } => format!("its rolled-back version unblocked by {by}: {reason}"),
        Fact::ProductionSeen { note, .. } => note.clone(),
        Fact::Issue { issue, .. } => format!("issue: {issue}"),
        Fact::Note { event, .. } => event.clone(),
        Fact::ApprovalRequested { role, deadline, .. } => format!(
            "approval {role} pending: waiting for a person with the {role} role until {}",
            time(deadline)
        ),
    })
}

pub(crate) fn request_title(r: &Request) -> String {
    match &r.version {
        Some(v) => format!("{} {v}", r.service),
        None => format!("{} (previous version)", r.service),
    }
}

/// Share of traffic on the new version after a successful deploy step, from its text.
pub(crate) fn traffic_from_step(step: &str) -> Option<u8> {
    let lower = step.to_ascii_lowercase();
    if lower.starts_with("traffic switched") {
        return Some(100);
    }
    if let Some(rest) = lower.strip_prefix("canary at ") {
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        return digits.parse::<u8>().ok().filter(|p| *p <= 100);
    }
    // "Instances 3-4/10 drained, …" or "Instance 1/10 drained, …"
    let rest = lower
        .strip_prefix("instances ")
        .or_else(|| lower.strip_prefix("instance "))?;
    let range = rest.split_whitespace().next()?;
    let (span, total) = range.split_once('/')?;
    let last = span.rsplit('-').next()?;
    let (last, total): (u64, u64) = (last.parse().ok()?, total.parse().ok()?);
    (total > 0).then(|| ((last * 100) / total).min(100) as u8)
}

fn cell(v: Option<&str>) -> String {
    v.filter(|s| !s.is_empty()).unwrap_or("-").to_string()
}

/// The table of `list`.
pub(crate) fn render_table(records: &[Record]) -> String {
    if records.is_empty() {
        return "no deployments\n".to_string();
    }
    let header = [
        "ID",
        "SERVICE",
        "VERSION",
        "TYPE",
        "STRATEGY",
        "STATUS",
        "STAGE",
        "SUBMITTED BY",
        "SUBMITTED AT",
    ];
    let rows: Vec<Vec<String>> = records
        .iter()
        .map(|r| {
            vec![
                r.id.to_string(),
                r.service.to_string(),
                cell(r.version.as_ref().map(|v| v.as_str())),
                r.kind.to_string(),
                r.strategy.to_string(),
                r.status.to_string(),
                cell(r.stages.last().map(|s| s.stage.as_str())),
                cell(Some(&r.submitted_by)),
                time(&r.submitted_at),
            ]
        })
        .collect();
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let mut s = String::new();
        for (i, (c, w)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<w$}  "));
            }
        }
        s.trim_end().to_string() + "\n"
    };
    let mut out = line(header.iter().map(|h| h.to_string()).collect());
    for row in rows {
        out.push_str(&line(row));
    }
    out
}

/// Columns padded to their widest cell, two spaces apart; the last one not padded.
fn columns(rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = vec![];
    for row in rows {
        widths.resize(widths.len().max(row.len()), 0);
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (i, (c, w)) in row.iter().zip(&widths).enumerate() {
            if i + 1 == row.len() {
                line.push_str(c);
            } else {
                line.push_str(&format!("{c:<w$}  "));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// A number of seconds as [`fmt_duration`] writes it.
fn seconds(s: f64) -> String {
    fmt_duration(chrono::Duration::milliseconds((s * 1000.0).round() as i64))
}

/// `1 change`, `2 changes`.
fn changes(n: usize) -> String {
    format!("{n} change{}", if n == 1 { "" } else { "s" })
}

/// The figures of `report dora`: one line per figure, with what it is based on.
pub(crate) fn render_dora(d: &Dora) -> String {
    let service = match &d.service {
        Some(s) => format!("service {s}"),
        None => "all services".to_string(),
    };
    let mut out = format!(
        "DORA figures of {service} from {} to {} ({} days)\n",
        time(&d.period.since()),
        time(&d.period.until()),
        fmt_num(d.period.days())
    );
    let f = &d.deployment_frequency;
    let l = &d.lead_time;
    let c = &d.change_failure_rate;
    let r = &d.time_to_restore;
    let lead = match (l.median_seconds, l.p90_seconds) {
        (Some(m), Some(p)) => format!("median {}, p90 {}", seconds(m), seconds(p)),
        _ => "no deployments".to_string(),
    };
    let rate = match c.rate {
        Some(rate) => format!("{} ({} of {})", pct(rate), c.failed, c.succeeded + c.failed),
        None => "no deployments".to_string(),
    };
    let mut ended = format!("{} that reached production and ended", changes(c.succeeded + c.failed));
    if c.in_progress > 0 {
        ended.push_str(&format!(" ({} in progress left out)", c.in_progress));
    }
    let restore = match (r.median_seconds, r.max_seconds) {
        (Some(m), Some(x)) => format!("median {}, max {}", seconds(m), seconds(x)),
        _ if r.failed_changes == 0 => "no failed changes".to_string(),
        _ => "none restored".to_string(),
    };
    let rows = vec![
        vec!["FIGURE".into(), "VALUE".into(), "BASED ON".into()],
        vec![
            "deployment frequency".into(),
            format!("{} ({} per day)", f.deployments, fmt_num(f.per_day)),
            format!("{} that reached production and succeeded", changes(f.deployments)),
        ],
        vec![
            "lead time for changes".into(),
            lead,
            format!(
                "{} whose DEPLOY passed, from submission (not commit) to the end of DEPLOY",
                changes(l.deployments)
            ),
        ],
        vec!["change failure rate".into(), rate, ended],
        vec![
            "time to restore".into(),
            restore,
            format!(
                "{} of {} failed {} restored ({} not restored)",
                r.restored,
                r.failed_changes,
                if r.failed_changes == 1 { "change" } else { "changes" },
                r.not_restored
            ),
        ],
    ];
    out.push_str(&columns(&rows));
    out
}

/// The summary of `status`.
pub(crate) fn render_status(r: &Record) -> String {
    let mut out = String::new();
    let mut put = |s: String| {
        out.push_str(&s);
        out.push('\n');
    };
    put(format!("{}  {}  ({}, {})", r.id, title(r), r.kind, r.strategy));
    put(format!("status:     {}", r.status));
    put(format!("submitted:  {} by {}", time(&r.submitted_at), r.submitted_by));
    if let Some(t) = &r.scheduled_for {
        put(format!("scheduled:  {}", time(t)));
    }
    put(format!(
        "production: {}",
        r.production_version.as_ref().map(|v| v.as_str()).unwrap_or("-")
    ));
    if let Some(t) = &r.finished_at {
        put(format!("finished:   {}", time(t)));
    }
    if r.rests_on_simulation() {
        put(
            "evidence:   partly simulated (no command configured); the record marks each such result \"(simulated)\""
                .into(),
        );
    }
    if !r.stages.is_empty() {
        put("stages:".into());
        for s in &r.stages {
            let outcome = s.outcome.map(|o| o.as_str()).unwrap_or("running");
            let when = match &s.finished_at {
                Some(f) => format!("{} → {}", time(&s.started_at), time(f)),
                None => format!("since {}", time(&s.started_at)),
            };
            put(format!("  {:<9} {outcome:<8} {when}", s.stage.as_str()));
        }
    }
    let sections = r.approval_sections();
    if !sections.is_empty() {
        put("approvals:".into());
        for section in &sections {
            let role = section.role.as_str();
            let mut line = match (section.decision, section.pending) {
                (Some(a), _) => format!(
                    "  {role:<9} {:<15} by {} at {}",
                    decision_name(a.decision),
                    a.by,
                    time(&a.at)
                ),
                (None, Some(p)) => format!(
                    "  {role:<9} {:<15} since {}, deadline {}",
                    "pending",
                    time(&p.requested_at),
                    time(&p.deadline)
                ),
                (None, None) => format!("  {role:<9} {:<15}", "not decided"),
            };
            if let Some(a) = section.decision.filter(|a| !a.reason.is_empty()) {
                line.push_str(&format!(": {}", a.reason));
            }
            put(line);
            for a in &section.refused {
                put(format!("    refused: {} at {}: {}", a.by, time(&a.at), a.reason));
            }
        }
    }
    if r.status == Status::AwaitingApproval {
        let asked: Vec<&str> = r
            .notifications
            .iter()
            .filter(|n| n.kind == NotificationKind::ApprovalRequested)
            .map(|n| n.subject.as_str())
            .collect();
        let pending: Vec<&str> = r.pending_approvals.iter().map(|p| p.role.as_str()).collect();
        let role = pending.first().copied().unwrap_or("ROLE");
        let waiting = if pending.is_empty() {
            "waiting for approval".to_string()
        } else {
            format!("waiting for approval by {}", pending.join(", "))
        };
        put(format!(
            "{waiting}: stagecoach approve {} --role {role} [--reason …], or stagecoach reject {} --role {role} --reason …",
            r.id, r.id
        ));
        for s in asked {
            put(format!("  requested: {s}"));
        }
    }
    if let Some(log) = &r.deploy_log {
        if let Some(traffic) = log
            .steps
            .iter()
            .filter(|s| s.ok)
            .filter_map(|s| traffic_from_step(&s.step))
            .next_back()
        {
            put(format!("traffic:    {traffic}% on the new version"));
        }
    }
    if let Some(s) = r.monitoring.samples.last() {
        let started = r.deploy_log.as_ref().map(|d| d.started_at);
        put(format!(
            "last sample: {} at {}",
            describe_sample(s, started),
            time(&s.at)
        ));
    }
    if !r.alerts.is_empty() {
        put("alerts:".into());
        for a in &r.alerts {
            let (metric, value, threshold) = metric_values(a.metric, a.value, a.threshold);
            put(format!(
                "  {} {} {metric} {value} over {threshold} -> {}",
                time(&a.at),
                a.stage,
                action_name(a.action)
            ));
        }
    }
    if let Some(rb) = &r.rollback {
        let state = match (&rb.completed_at, rb.verified) {
            (None, _) => "in progress".to_string(),
            (Some(_), true) => format!(
                "done, restored {}",
                rb.restored_version.as_ref().map(|v| v.as_str()).unwrap_or("-")
            ),
            (Some(_), false) => "finished but NOT verified".to_string(),
        };
        put(format!(
            "rollback:   {} ({}): {} — {state}",
            time(&rb.initiated_at),
            rb.trigger,
            rb.reason
        ));
    }
    if !r.issues.is_empty() {
        put("issues:".into());
        for i in &r.issues {
            put(format!("  - {i}"));
        }
    }
    if !r.escalations.is_empty() {
        put("escalations:".into());
        for (i, e) in r.escalations.iter().enumerate() {
            let ack = match (&e.acknowledged_by, &e.acknowledged_at) {
                (Some(by), Some(at)) => match &e.acknowledgement_note {
                    Some(note) => format!("acknowledged by {by} at {}: {note}", time(at)),
                    None => format!("acknowledged by {by} at {}", time(at)),
                },
                (Some(by), None) => format!("acknowledged by {by}"),
                _ => format!("NOT acknowledged: `stagecoach ack {}-e{}`", r.id, i + 1),
            };
            put(format!(
                "  {}-e{}  {}  {}: {} ({ack})",
                r.id,
                i + 1,
                time(&e.at),
                e.reason,
                e.detail
            ));
        }
    }
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use workflow::types::DeploymentId;

    pub(crate) fn ts(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    pub(crate) fn sample_record() -> Record {
        let request: Request = serde_json::from_value(serde_json::json!({
            "service": "web", "version": "1.2.3", "type": "standard", "strategy": "canary",
            "submitted_by": "alice", "changes": ["login page"], "scheduled_for": null, "attest": []
        }))
        .unwrap();
        let submitted = Fact::Submitted {
            id: DeploymentId(1),
            at: ts("2026-03-03T10:00:00Z"),
            request,
            strategy: workflow::types::Strategy::Canary,
            previous_version: None,
            production_version: None,
            target_version: Some(workflow::types::Version::parse("1.2.3").unwrap()),
        };
        let mut r = Record::open(&submitted).unwrap();
        let facts = serde_json::json!([
            {"fact": "stage_started", "at": "2026-03-03T10:00:01Z", "stage": "prepare"},
            {"fact": "stage_finished", "at": "2026-03-03T10:02:00Z", "stage": "prepare", "outcome": "passed", "note": ""},
            {"fact": "stage_started", "at": "2026-03-03T10:20:00Z", "stage": "deploy"},
            {"fact": "status", "at": "2026-03-03T10:20:00Z", "status": "escalated", "note": ""},
            {"fact": "escalation", "at": "2026-03-03T10:30:00Z", "reason": "unable_to_rollback", "detail": "restore failed"},
            {"fact": "issue", "at": "2026-03-03T10:30:00Z", "issue": "cache not cleared"},
        ]);
        for f in facts.as_array().unwrap() {
            r.apply(&serde_json::from_value(f.clone()).unwrap());
        }
        r
    }

    #[test]
    fn simulated_and_unmeasured_values_are_shown_as_such() {
        let sample: SampleEntry = serde_json::from_value(serde_json::json!({
            "at": "2026-03-03T10:25:00Z", "stage": "monitor", "minute": 5, "traffic_percent": 100,
            "sample": {"error_rate": 0.001, "latency_p99_ms": 120.0, "cpu": null, "memory": 0.5, "simulated": true},
            "error": null,
        }))
        .unwrap();
        assert_eq!(
            describe_sample(&sample, None),
            "100% traffic: error 0.10% p99 120 ms cpu not measured memory 50% (simulated) (minute 5)"
        );
        let step: Fact = serde_json::from_value(serde_json::json!({
            "fact": "deploy_step", "at": "2026-03-03T10:25:00Z", "step": "Backup created", "ok": true,
            "detail": "", "simulated": true,
        }))
        .unwrap();
        assert_eq!(describe_fact(&step, None).unwrap(), "step Backup created (simulated)");
        let observed: Fact = serde_json::from_value(serde_json::json!({
            "fact": "deploy_step", "at": "2026-03-03T10:25:00Z", "step": "Backup created", "ok": true, "detail": "",
        }))
        .unwrap();
        assert_eq!(describe_fact(&observed, None).unwrap(), "step Backup created");
    }

    #[test]
    fn status_and_list_render() {
        let r = sample_record();
        let text = render_status(&r);
        assert!(
            text.starts_with("d-000001  web 1.2.3  (standard, canary)\nstatus:     escalated\n"),
            "{text}"
        );
        assert!(
            text.contains("  prepare   passed   2026-03-03T10:00:01Z → 2026-03-03T10:02:00Z\n"),
            "{text}"
        );
        assert!(
            text.contains("  deploy    running  since 2026-03-03T10:20:00Z\n"),
            "{text}"
        );
        assert!(text.contains("  - cache not cleared\n"), "{text}");
        assert!(
            text.contains("  d-000001-e1  2026-03-03T10:30:00Z  unable_to_rollback: restore failed (NOT acknowledged: `stagecoach ack d-000001-e1`)"),
            "{text}"
        );
        let table = render_table(std::slice::from_ref(&r));
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(lines[0].starts_with("ID        SERVICE  VERSION  TYPE      STRATEGY  STATUS     STAGE   SUBMITTED BY"));
        assert_eq!(
            lines[1],
            "d-000001  web      1.2.3    standard  canary    escalated  deploy  alice         2026-03-03T10:00:00Z"
        );
        assert_eq!(render_table(&[]), "no deployments\n");
        assert_eq!(
            submitted_line(&r),
            "submitted d-000001: web 1.2.3 (standard, canary) — status escalated"
        );
        // The record survives a JSON round trip, as the daemon sends it.
        let back: Record = serde_json::from_value(serde_json::to_value(&r).unwrap()).unwrap();
        assert_eq!(back, r);
    }

    #[test]
    fn verification_renders() {
        let ok: Verification = serde_json::from_value(serde_json::json!({
            "deployment": "d-000001", "entries": 12, "intact": true, "problems": [], "head": "9f2c"
        }))
        .unwrap();
        assert_eq!(
            render_verification("d-000001", &ok),
            "chain of d-000001 intact (12 entries, head 9f2c)"
        );
        let bad: Verification = serde_json::from_value(serde_json::json!({
            "deployment": "d-000001", "entries": 12, "intact": false,
            "problems": ["entry 3: hash mismatch"], "head": "9f2c"
        }))
        .unwrap();
        assert_eq!(
            render_verification("d-000001", &bad),
            "chain of d-000001 BROKEN:\n  - entry 3: hash mismatch\n"
        );
    }

    #[test]
    fn dora_figures_as_a_table() {
        use workflow::dora::{dora, Period};
        let period = Period::new(ts("2026-03-01T00:00:00Z"), ts("2026-03-31T00:00:00Z")).unwrap();
        let empty = render_dora(&dora(&[], period, None));
        assert_eq!(
            empty,
            "DORA figures of all services from 2026-03-01T00:00:00Z to 2026-03-31T00:00:00Z (30 days)\n\
             FIGURE                 VALUE              BASED ON\n\
             deployment frequency   0 (0 per day)      0 changes that reached production and succeeded\n\
             lead time for changes  no deployments     0 changes whose DEPLOY passed, from submission (not commit) to the end of DEPLOY\n\
             change failure rate    no deployments     0 changes that reached production and ended\n\
             time to restore        no failed changes  0 of 0 failed changes restored (0 not restored)\n"
        );
        // The sample record with its DEPLOY started: it reached production
        // and escalated, a failed change never restored.
        let mut r = sample_record();
        r.apply(&Fact::DeployStarted {
            at: ts("2026-03-03T10:20:00Z"),
            strategy: workflow::types::Strategy::Canary,
        });
        let web = workflow::types::ServiceName::parse("web").unwrap();
        let text = render_dora(&dora(&[r], period, Some(&web)));
        assert!(text.starts_with("DORA figures of service web from"), "{text}");
        assert!(text.contains("change failure rate    100% (1 of 1)"), "{text}");
        assert!(text.contains("time to restore        none restored"), "{text}");
        assert!(
            text.contains("0 of 1 failed change restored (1 not restored)"),
            "{text}"
        );
    }
}
