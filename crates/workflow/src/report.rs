//! Rendering of the seed's artifacts and messages as Markdown and text.
//!
//! Templates are minijinja sources kept here; every function takes the
//! record and returns text, so rendering is deterministic.

use chrono::{DateTime, Utc};
use minijinja::{context, Environment, Value};

use crate::approval::role_title;
use crate::checklist::Source;
use crate::record::{
    fmt_duration, fmt_minutes, fmt_num, pct, pct_or_not_measured, simulated, Approval, Decision, Recommendation, Record,
};
use crate::settings::{Settings, WindowRule};
use crate::thresholds::MetricSample;
use crate::types::{EscalationReason, MigrationKind, RollbackTrigger, Status, Strategy};

const DEPLOYMENT_RECORD: &str = r#"## Deployment Record

### Summary
- Deployment: {{ id }}
- Service: {{ service }}
- Version: {{ version }}
- Previous Version: {{ previous_version }}
- Date: {{ date }}
- Type: {{ kind }}
- Strategy: {{ strategy }}
- Duration: {{ duration }}

### Team
- Submitted By: {{ submitted_by }}
- Deployer: DevOps Agent
- Approver: {{ approvers }}
- QA: QA Agent

### Changes
{% for c in changes %}- {{ c }}
{% else %}- None listed
{% endfor %}
### Timeline
| Time | Event |
|------|-------|
{% for t in timeline %}| {{ t.at }} | {{ t.event }} |
{% endfor %}
### Issues
{% for i in issues %}- {{ i }}
{% else %}- None
{% endfor %}
### Metrics
- Error rate: {{ error_rate }}{% if metrics_simulated %} (simulated){% endif %}
- Latency change: {{ latency_change }}{% if metrics_simulated %} (simulated){% endif %}
- Alerts: {{ alert_count }}

### Status: {{ status }}
{% if checklist %}
---

## Deployment Checklist
{% for section in checklist %}
### {{ section.name }}
{% for item in section.items %}- [{{ "x" if item.ticked else " " }}] {{ item.title }}{% if item.required %} (required){% endif %} - {{ item.source }}
{% endfor %}{% endfor %}{% endif %}{% if security %}
## Security Review

- Critical vulnerabilities: {{ security.critical }}
{% for f in security.findings %}- Finding: {{ f }}
{% endfor %}{% endif %}{% if staging %}
## Staging Deployment

### Deployment Info
- Version: {{ version }}
- Timestamp: {{ staging.at }}
- Deployed By: DevOps Agent

### Verification
{% for c in staging.checks %}- [{{ "x" if c.ok else " " }}] {{ c.name }}
{% endfor %}{% endif %}{% if validation %}
## Staging Validation Report

### Test Results
| Suite | Passed | Failed | Skipped |
|-------|--------|--------|---------|
{% for s in validation.suites %}| {{ s.name }}{% if s.simulated %} (simulated){% endif %} | {{ s.passed }} | {{ s.failed }} | {{ s.skipped }} |
{% endfor %}
### New Features Validated
{% for f in validation.features %}- [{{ "x" if f.validated else " " }}] {{ f.feature }}: {{ "Validated" if f.validated else "Not validated" }}
{% else %}- None listed
{% endfor %}
### Issues Found
{% for i in validation.issues %}- {{ i }}
{% else %}- None
{% endfor %}
### Recommendation
- [{{ "x" if validation.ready else " " }}] Ready for production
- [{{ " " if validation.ready else "x" }}] Needs fixes before production
{% endif %}{% for a in approvals %}
## Deployment Approval

### Version: {{ version }}
### Approver: {{ a.by }} ({{ a.role }})
### Timestamp: {{ a.at }}
{% if a.criteria %}
### Checklist Verified
{% for c in a.criteria %}- [{{ "x" if c.met else " " }}] {{ c.criterion }}: {{ c.detail }}
{% endfor %}{% endif %}
### Approval: {{ a.decision }}

### Notes
{{ a.reason }}
{% if a.refused %}
### Refused Attempts
{% for r in a.refused %}- {{ r.at }} {{ r.by }}: {{ r.reason }}
{% endfor %}{% endif %}{% endfor %}{% if deploy %}
## Production Deployment

### Deployment Info
- Version: {{ version }}
- Strategy: {{ strategy }}
- Start Time: {{ deploy.started_at }}
- End Time: {{ deploy.finished_at }}

### Steps Completed
{% for s in deploy.steps %}- [{{ "x" if s.ok else " " }}] {{ s.at }} {{ s.step }}{% if s.detail %}: {{ s.detail }}{% endif %}{% if s.simulated %} (simulated){% endif %}
{% endfor %}
### Verification
{% for v in deploy.verification %}- [{{ "x" if v.ok else " " }}] {{ v.name }}
{% endfor %}{% endif %}{% if monitoring %}
## Post-deployment Monitoring

- Baseline: {{ monitoring.baseline }}
- Samples read: {{ monitoring.samples }} ({{ monitoring.inconclusive }} inconclusive{% if monitoring.simulated %}, {{ monitoring.simulated }} simulated{% endif %})
{% for m in monitoring.not_judged %}- {{ m }}: not measured — threshold not judged
{% endfor %}
### Monitoring Checkpoints
{% for c in monitoring.checkpoints %}- [{{ "x" if c.passed else " " }}] {{ c.when }}: {{ c.title }} - {{ c.detail }}{% if c.simulated %} (simulated){% endif %}
{% else %}- None reached
{% endfor %}{% if alerts %}
### Alerts
| Time | Metric | Value | Threshold | Action |
|------|--------|-------|-----------|--------|
{% for a in alerts %}| {{ a.at }} | {{ a.metric }} | {{ a.value }} | {{ a.threshold }} | {{ a.action }} |
{% endfor %}{% endif %}{% endif %}{% if rollback %}
## Rollback Procedure

### Immediate Actions
{% for s in rollback.steps %}- [{{ "x" if s.ok else " " }}] {{ s.step }}{% if s.detail %}: {{ s.detail }}{% endif %}{% if s.simulated %} (simulated){% endif %}
{% endfor %}
### Rollback Log
- Initiated: {{ rollback.initiated_at }}
- Trigger: {{ rollback.trigger }}
- Reason: {{ rollback.reason }}
- Completed: {{ rollback.completed_at }}
- Previous Version: {{ rollback.restored_version }}
- Migrations reverted: {{ rollback.migrations_reverted }}

### Incident
{{ rollback.incident }}
{% endif %}{% if escalations %}
## Escalations
{% for e in escalations %}- {{ e.at }} {{ e.reason }}: {{ e.detail }}{% if e.acknowledged_by %} (acknowledged by {{ e.acknowledged_by }} at {{ e.acknowledged_at }}{% if e.note %}: {{ e.note }}{% endif %}){% endif %}
{% endfor %}{% endif %}{% if notifications %}
## Notifications
{% for n in notifications %}- {{ n.at }} [{{ n.kind }}] {{ n.subject }}{% if not n.delivered %} (NOT DELIVERED: {{ n.error }}){% endif %}
{% endfor %}{% endif %}"#;

const PRE_DEPLOYMENT: &str = r#"Deployment of {{ service }} v{{ version }} is scheduled for {{ date }} at {{ time }}.

Changes included:
{% for c in changes %}- {{ c }}
{% else %}- None listed
{% endfor %}
Expected duration: {{ duration }}
Impact: {{ impact }}

Contact: {{ contact }}
"#;

const POST_DEPLOYMENT: &str = r#"Deployment of {{ service }} v{{ version }} completed successfully at {{ time }}.

Status: {{ status }}
Changes deployed:
{% for c in changes %}- {{ c }}
{% else %}- None listed
{% endfor %}
Any issues: Contact {{ contact }}
"#;

const ROLLBACK: &str = r#"Deployment of {{ service }} v{{ version }} was rolled back at {{ time }}.

Trigger: {{ trigger }}
Reason: {{ reason }}
Production version: v{{ restored }}

Next: investigate root cause, document incident, plan fix.

Contact: {{ contact }}
"#;

const ESCALATION: &str = r#"Escalation for {{ service }} v{{ version }} ({{ id }}) at {{ time }}.

Reason: {{ reason }}
Detail: {{ detail }}
Status: {{ status }}

A person is needed. Contact: {{ contact }}
"#;

fn env() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_trim_blocks(false);
    env.set_keep_trailing_newline(true);
    env
}

fn render(template: &str, ctx: Value) -> String {
    env()
        .render_str(template, ctx)
        .unwrap_or_else(|e| format!("(template error: {e})"))
}

fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn opt_ts(t: Option<DateTime<Utc>>) -> String {
    t.map(ts).unwrap_or_else(|| "-".into())
}

fn version_of(r: &Record) -> String {
    r.version.as_ref().map(|v| v.to_string()).unwrap_or_else(|| "-".into())
}

fn duration(from: DateTime<Utc>, to: Option<DateTime<Utc>>) -> String {
    match to {
        None => "in progress".into(),
        Some(to) => format!("{} ({} to {})", fmt_duration(to - from), ts(from), ts(to)),
    }
}

/// The words the seed's Deployment Record uses for a status.
pub fn status_word(s: Status) -> &'static str {
    match s {
        Status::Succeeded => "SUCCESS",
        Status::RolledBack => "ROLLBACK",
        Status::Failed => "FAILED",
        Status::Rejected => "REJECTED",
        Status::Escalated => "ESCALATED",
        Status::Cancelled => "CANCELLED",
        Status::Queued => "QUEUED",
        Status::InProgress => "IN PROGRESS",
        Status::AwaitingApproval => "AWAITING APPROVAL",
        Status::WaitingForWindow => "WAITING FOR WINDOW",
    }
}

/// The final Deployment Record, with every artifact the stages produced.
pub fn deployment_record(r: &Record, _settings: &Settings) -> String {
    let last = r.monitoring.samples.iter().rev().find_map(|s| s.sample);
    let ctx = context! {
        id => r.id.to_string(),
        service => r.service.to_string(),
        version => version_of(r),
        previous_version => r.previous_version.as_ref().map(|v| v.to_string()).unwrap_or_else(|| "none".into()),
        date => r.submitted_at.format("%Y-%m-%d").to_string(),
        kind => r.kind.title(),
        strategy => if r.kind == crate::types::DeploymentType::Rollback { "-" } else { r.strategy.title() },
        duration => duration(r.submitted_at, r.finished_at),
        submitted_by => r.submitted_by.clone(),
        approvers => team_approvers(r),
        changes => Value::from_serialize(&r.changes),
        timeline => r.timeline.iter().map(|t| context! { at => ts(t.at), event => t.event.replace('|', "/") }).collect::<Vec<_>>(),
        issues => r.issues.iter().cloned().chain(r.escalations.iter().map(|e| format!("Escalation ({}): {}", e.reason, e.detail))).collect::<Vec<_>>(),
        error_rate => last.map(|s| pct(s.error_rate)).unwrap_or_else(|| "not measured".into()),
        latency_change => latency_change(last, r.monitoring.baseline),
        metrics_simulated => last.is_some_and(|s| s.simulated),
        alert_count => r.alerts.len(),
        status => status_word(r.status),
        checklist => checklist_section(r),
        security => security_section(r),
        staging => staging_section(r),
        validation => validation_section(r),
        approvals => approval_section(r),
        deploy => deploy_section(r),
        monitoring => monitoring_section(r),
        alerts => alerts_section(r),
        rollback => rollback_section(r),
        escalations => r.escalations.iter().map(|e| context! { at => ts(e.at), reason => e.reason.as_str(), detail => e.detail.clone(), acknowledged_by => e.acknowledged_by.clone(), acknowledged_at => e.acknowledged_at.map(ts), note => e.acknowledgement_note.clone() }).collect::<Vec<_>>(),
        notifications => r.notifications.iter().map(|n| context! { at => ts(n.at), kind => n.kind.as_str(), subject => n.subject.clone(), delivered => n.delivered, error => n.error.clone().unwrap_or_default() }).collect::<Vec<_>>(),
    };
    render(DEPLOYMENT_RECORD, ctx)
}

/// Who decided an approval: the agent ("Manager Agent") or the person.
fn approver(a: &Approval) -> String {
    if a.by.ends_with(" agent") {
        format!("{} Agent", role_title(a.role))
    } else {
        a.by.clone()
    }
}

/// The Team section's approvers: who granted (a person with the role),
/// then the roles still waiting for a person.
fn team_approvers(r: &Record) -> String {
    let mut names: Vec<String> = r
        .approvals
        .iter()
        .filter(|a| a.decision == Decision::Granted)
        .map(|a| {
            if a.by.ends_with(" agent") {
                approver(a)
            } else {
                format!("{} ({})", a.by, a.role)
            }
        })
        .collect();
    if !r.pending_approvals.is_empty() {
        let roles: Vec<&str> = r.pending_approvals.iter().map(|p| p.role.as_str()).collect();
        names.push(format!("pending ({})", roles.join(", ")));
    }
    if names.is_empty() {
        "none".to_string()
    } else {
        names.join(", ")
    }
}

/// The Metrics section's latency line: the last sample's p99 against the baseline.
fn latency_change(last: Option<MetricSample>, baseline: Option<MetricSample>) -> String {
    match (last, baseline) {
        (Some(s), Some(b)) if b.latency_p99_ms > 0.0 => {
            let change = (s.latency_p99_ms - b.latency_p99_ms) / b.latency_p99_ms * 100.0;
            format!(
                "{}{}% (p99 {} ms vs baseline {} ms)",
                if change >= 0.0 { "+" } else { "" },
                fmt_num(change),
                fmt_num(s.latency_p99_ms),
                fmt_num(b.latency_p99_ms)
            )
        }
        (Some(s), None) => format!("not compared: no baseline (p99 {} ms)", fmt_num(s.latency_p99_ms)),
        _ => "not measured".into(),
    }
}

/// The Deployment Checklist: its items under their sections, in the order
/// the sections first appear, each with where its tick came from.
fn checklist_section(r: &Record) -> Vec<Value> {
    let mut sections: Vec<(String, Vec<Value>)> = vec![];
    for item in &r.checklist {
        let (section, title) = item.key.section_and_title();
        let source = match &item.source {
            Source::Verified { by } => format!("verified by {by}"),
            Source::Failed { by, detail } => format!("FAILED ({by}: {detail})"),
            Source::Attested { by } => format!("attested in {by}"),
            Source::NotApplicable { why } => format!("not applicable ({why})"),
            Source::Missing => "not verified or attested".into(),
        };
        let source = format!("{source}{}", simulated(item.simulated));
        let v = context! { title, ticked => item.ticked, required => item.required, source };
        match sections.iter_mut().find(|(n, _)| n == section) {
            Some((_, items)) => items.push(v),
            None => sections.push((section.to_string(), vec![v])),
        }
    }
    sections
        .into_iter()
        .map(|(name, items)| context! { name, items })
        .collect()
}

/// The Security Review, once the scan ran.
fn security_section(r: &Record) -> Option<Value> {
    r.security
        .as_ref()
        .map(|s| context! { critical => format!("{}{}", s.critical_vulnerabilities, simulated(s.simulated)), findings => Value::from_serialize(&s.findings) })
}

/// The Staging Deployment: when STAGING finished and each verification.
fn staging_section(r: &Record) -> Option<Value> {
    r.staging.as_ref().map(|s| {
        let at = r
            .stages
            .iter()
            .find(|e| e.stage == crate::types::Stage::Staging)
            .map(|e| opt_ts(e.finished_at))
            .unwrap_or_default();
        let checks = vec![
            context! { name => format!("Application starts successfully{}", simulated(s.is_simulated("application_started"))), ok => s.application_started },
            context! { name => format!("Health endpoints responding{}", simulated(s.is_simulated("health_endpoints"))), ok => s.health_endpoints },
            context! { name => format!("Database migrations complete{}", simulated(s.is_simulated("migrations_complete"))), ok => s.migrations_complete },
            context! { name => format!("External services connected{}", simulated(s.is_simulated("external_services"))), ok => s.external_services },
            context! { name => format!("Smoke tests pass{}", simulated(s.is_simulated("smoke_tests"))), ok => s.smoke_tests },
        ];
        context! { at, checks }
    })
}

/// The Staging Validation Report, once QA's suites ran.
fn validation_section(r: &Record) -> Option<Value> {
    r.validation.as_ref().map(|v| {
        context! {
            suites => Value::from_serialize(&v.suites),
            features => Value::from_serialize(&v.features),
            issues => Value::from_serialize(&v.issues),
            ready => v.recommendation == Recommendation::Ready,
        }
    })
}

/// One Deployment Approval per section of [`Record::approval_sections`]:
/// a decision, a person still awaited, or a role nobody decided for; each
/// with the refused attempts of its role.
fn approval_section(r: &Record) -> Vec<Value> {
    r.approval_sections()
        .into_iter()
        .map(|section| {
            let refused: Vec<Value> = section
                .refused
                .iter()
                .map(|a| context! { at => ts(a.at), by => approver(a), reason => a.reason.clone() })
                .collect();
            let role = section.role.as_str();
            match (section.decision, section.pending) {
                (Some(a), _) => {
                    let decision = match a.decision {
                        Decision::Granted => "GRANTED",
                        Decision::Denied => "DENIED",
                        Decision::Refused => "REFUSED",
                        Decision::TimedOut => "TIMED OUT",
                        Decision::WindowOverride => "WINDOW OVERRIDE",
                    };
                    context! { by => approver(a), role, at => ts(a.at), decision, reason => a.reason.clone(), criteria => Value::from_serialize(&a.criteria), refused }
                }
                (None, Some(p)) => {
                    let reason = format!(
                        "Waiting for a person with the {role} role; without a decision by {} the deployment is rejected.",
                        ts(p.deadline)
                    );
                    context! { by => "pending", role, at => ts(p.requested_at), decision => "PENDING", reason, refused }
                }
                (None, None) => {
                    let reason = "Nobody with the role decided before the deployment ended.";
                    context! { by => "nobody", role, at => "-", decision => "NOT DECIDED", reason, refused }
                }
            }
        })
        .collect()
}

/// The Production Deployment: its steps, and the verification read from
/// the first MONITOR sample and checkpoint.
fn deploy_section(r: &Record) -> Option<Value> {
    let first_watch = r
        .monitoring
        .samples
        .iter()
        .find(|s| s.stage == crate::types::Stage::Monitor);
    r.deploy_log.as_ref().map(|d| {
        let steps: Vec<Value> = d
            .steps
            .iter()
            .map(|s| context! { at => ts(s.at), step => s.step.clone(), ok => s.ok, detail => s.detail.clone(), simulated => s.simulated })
            .collect();
        let responding = first_watch.is_some() && r.monitoring.checkpoints.first().map(|c| c.passed).unwrap_or(false);
        let no_spikes = first_watch
            .and_then(|s| s.sample)
            .map(|s| s.error_rate <= 0.01)
            .unwrap_or(false);
        let perf = match (first_watch.and_then(|s| s.sample), r.monitoring.baseline) {
            (Some(s), Some(b)) => s.latency_p99_ms <= b.latency_p99_ms * 2.0,
            _ => false,
        };
        let verification = vec![
            context! { name => "Application responding", ok => responding },
            context! { name => "No error spikes", ok => no_spikes },
            context! { name => "Performance normal", ok => perf },
            context! { name => "Monitoring active", ok => first_watch.is_some() },
        ];
        context! { started_at => ts(d.started_at), finished_at => opt_ts(d.finished_at), steps, verification }
    })
}

/// The Post-deployment Monitoring, once DEPLOY started: the baseline, the
/// samples read, the metrics not judged and the checkpoints.
fn monitoring_section(r: &Record) -> Option<Value> {
    (r.deploy_log.is_some()).then(|| {
        let b = r.monitoring.baseline;
        context! {
            baseline => b.map(|b| format!("error rate {}, p99 {} ms, CPU {}, memory {}{}", pct(b.error_rate), fmt_num(b.latency_p99_ms), pct_or_not_measured(b.cpu), pct_or_not_measured(b.memory), simulated(b.simulated))).unwrap_or_else(|| "unavailable".into()),
            samples => r.monitoring.samples.len(),
            inconclusive => r.monitoring.samples.iter().filter(|s| s.sample.is_none()).count(),
            simulated => r.monitoring.samples.iter().filter(|s| s.sample.is_some_and(|m| m.simulated)).count(),
            not_judged => not_judged(r),
            checkpoints => r.monitoring.checkpoints.iter().map(|c| context! { when => fmt_minutes(c.minute), title => c.check.title(), passed => c.passed, detail => c.detail.clone(), simulated => c.simulated }).collect::<Vec<_>>(),
        }
    })
}

/// The Alerts table of the monitoring section.
fn alerts_section(r: &Record) -> Vec<Value> {
    r.alerts
        .iter()
        .map(|a| {
            let metric = serde_json::to_value(a.metric)
                .ok()
                .and_then(|v| v.as_str().map(String::from))
                .unwrap_or_default();
            let action = serde_json::to_value(a.action)
                .ok()
                .and_then(|v| v.as_str().map(String::from))
                .unwrap_or_default();
            context! { at => ts(a.at), metric, value => fmt_num(a.value), threshold => fmt_num(a.threshold), action }
        })
        .collect()
}

/// The Rollback Procedure, once a rollback started.
fn rollback_section(r: &Record) -> Option<Value> {
    r.rollback.as_ref().map(|rb| {
        context! {
            steps => rb.steps.iter().map(|s| context! { step => s.step.clone(), ok => s.ok, detail => s.detail.clone(), simulated => s.simulated }).collect::<Vec<_>>(),
            initiated_at => ts(rb.initiated_at),
            trigger => rb.trigger.as_str(),
            reason => rb.reason.clone(),
            completed_at => opt_ts(rb.completed_at),
            restored_version => rb.restored_version.as_ref().map(|v| v.to_string()).unwrap_or_else(|| "not restored".into()),
            migrations_reverted => if rb.migrations_reverted { "yes" } else { "no" },
            incident => rb.incident.clone(),
        }
    })
}

/// The metrics (by their record name) that some sample or the baseline had
/// no value for: their thresholds were not judged on those readings.
fn not_judged(r: &Record) -> Vec<&'static str> {
    let readings = r
        .monitoring
        .baseline
        .iter()
        .chain(r.monitoring.samples.iter().filter_map(|s| s.sample.as_ref()));
    let mut missing: Vec<crate::thresholds::Metric> = readings.flat_map(|m| m.not_measured()).collect();
    missing.sort();
    missing.dedup();
    missing
        .into_iter()
        .map(|m| match m {
            crate::thresholds::Metric::ErrorRate => "Error rate",
            crate::thresholds::Metric::LatencyP99 => "p99 latency",
            crate::thresholds::Metric::Cpu => "CPU",
            crate::thresholds::Metric::Memory => "Memory",
        })
        .collect()
}

/// Estimated minutes from the start of DEPLOY to the end of MONITOR.
pub fn expected_minutes(r: &Record, settings: &Settings) -> f64 {
    let policy = settings.types.get(r.kind);
    let analysis = match r.strategy {
        Strategy::Canary => {
            settings.strategies.canary.steps.len().saturating_sub(1) as f64
                * settings.strategies.canary.analysis_minutes
        }
        _ => 0.0,
    };
    analysis + policy.monitoring_minutes
}

/// The seed's pre-deployment message: (subject, body).
pub fn pre_deployment_message(r: &Record, planned: DateTime<Utc>, settings: &Settings) -> (String, String) {
    let tz = settings.time_zone();
    let local = planned.with_timezone(&tz);
    let date = local.format("%Y-%m-%d").to_string();
    let time = local.format("%H:%M:%S %Z").to_string();
    let tag = match settings.types.get(r.kind).windows {
        WindowRule::Bypass => r.kind.title(),
        _ => "Scheduled",
    };
    let subject = format!("[{tag}] Deployment {} v{} - {date} {time}", r.service, version_of(r));
    let migrations = r.prepare.as_ref().map(|p| p.migrations).unwrap_or(MigrationKind::None);
    let impact = match (r.strategy, migrations) {
        (Strategy::BlueGreen, MigrationKind::None) => "None".to_string(),
        (_, MigrationKind::None) => "Minimal".to_string(),
        (_, m) => format!("Minimal (includes {m} database migration)"),
    };
    let body = render(
        PRE_DEPLOYMENT,
        context! {
            service => r.service.to_string(), version => version_of(r), date, time,
            changes => Value::from_serialize(&r.changes),
            duration => format!("about {} including monitoring", fmt_minutes(expected_minutes(r, settings))),
            impact, contact => settings.notifications.contact.clone(),
        },
    );
    (subject, body)
}

/// The seed's post-deployment message: (subject, body).
pub fn post_deployment_message(r: &Record, now: DateTime<Utc>, settings: &Settings) -> (String, String) {
    let subject = format!("[Complete] Deployment {} v{}", r.service, version_of(r));
    let status = if r.alerts.is_empty() {
        "All systems operational".to_string()
    } else {
        format!(
            "Operational; {} alerts during monitoring (see the Deployment Record)",
            r.alerts.len()
        )
    };
    let time = now
        .with_timezone(&settings.time_zone())
        .format("%Y-%m-%d %H:%M:%S %Z")
        .to_string();
    let body = render(
        POST_DEPLOYMENT,
        context! { service => r.service.to_string(), version => version_of(r), time, status, changes => Value::from_serialize(&r.changes), contact => settings.notifications.contact.clone() },
    );
    (subject, body)
}

/// The stakeholder notice after a rollback: (subject, body).
pub fn rollback_message(r: &Record, now: DateTime<Utc>, settings: &Settings) -> (String, String) {
    let rb = r.rollback.as_ref();
    let restored = rb
        .and_then(|x| x.restored_version.as_ref())
        .map(|v| v.to_string())
        .unwrap_or_else(|| "-".into());
    // For a rollback-type deployment the version replaced is the one that
    // was in production when it was submitted.
    let replaced = if r.kind == crate::types::DeploymentType::Rollback {
        r.previous_version
            .as_ref()
            .map(|v| v.to_string())
            .unwrap_or_else(|| "-".into())
    } else {
        version_of(r)
    };
    let subject = format!(
        "[Rollback] Deployment {} v{replaced} rolled back to v{restored}",
        r.service
    );
    let time = now
        .with_timezone(&settings.time_zone())
        .format("%Y-%m-%d %H:%M:%S %Z")
        .to_string();
    let body = render(
        ROLLBACK,
        context! {
            service => r.service.to_string(), version => replaced, time, restored,
            trigger => rb.map(|x| x.trigger.as_str()).unwrap_or("-"),
            reason => rb.map(|x| x.reason.clone()).unwrap_or_default(),
            contact => settings.notifications.contact.clone(),
        },
    );
    (subject, body)
}

/// The escalation notice: (subject, body).
pub fn escalation_message(
    r: &Record,
    reason: EscalationReason,
    detail: &str,
    now: DateTime<Utc>,
    settings: &Settings,
) -> (String, String) {
    let subject = format!(
        "[Escalation] {} v{}: {}",
        r.service,
        version_of(r),
        reason.as_str().replace('_', " ")
    );
    let body = render(
        ESCALATION,
        context! {
            service => r.service.to_string(), version => version_of(r), id => r.id.to_string(),
            time => ts(now), reason => reason.as_str(), detail, status => status_word(r.status),
            contact => settings.notifications.contact.clone(),
        },
    );
    (subject, body)
}

/// The incident note written with every rollback log.
pub fn incident_note(r: &Record, trigger: RollbackTrigger, reason: &str, success: bool, now: DateTime<Utc>) -> String {
    format!(
        "Incident for {} v{} at {}: {} ({}). Rollback {}. Post-rollback: stakeholders notified; investigate root cause; document incident; plan fix.",
        r.service,
        version_of(r),
        ts(now),
        reason,
        trigger.as_str(),
        if success { "completed and verified" } else { "FAILED, escalated" },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{fmt_duration, Fact, Request};
    use crate::types::{DeploymentId, DeploymentType, ServiceName, Version};

    fn at(t: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(t).unwrap().with_timezone(&Utc)
    }

    /// A standard deployment of web 2.0.0 submitted by dana, with `facts` applied.
    fn record(facts: serde_json::Value) -> Record {
        let request = Request {
            service: ServiceName::parse("web").unwrap(),
            version: Some(Version::parse("2.0.0").unwrap()),
            kind: DeploymentType::Standard,
            strategy: Some(Strategy::Canary),
            submitted_by: "dana".into(),
            changes: vec![],
            scheduled_for: None,
            attest: vec![],
            window_override: None,
        };
        let mut r = Record::open(&Fact::Submitted {
            id: DeploymentId(2),
            at: at("2026-12-01T10:00:00Z"),
            request,
            strategy: Strategy::Canary,
            previous_version: Some(Version::parse("1.0.0").unwrap()),
            production_version: Some(Version::parse("1.0.0").unwrap()),
            target_version: Some(Version::parse("2.0.0").unwrap()),
        })
        .unwrap();
        for f in facts.as_array().unwrap() {
            r.apply(&serde_json::from_value(f.clone()).unwrap());
        }
        r
    }

    fn approval(role: &str, decision: &str, by: &str, at: &str, reason: &str) -> serde_json::Value {
        serde_json::json!({"fact": "approval", "role": role, "decision": decision, "by": by, "at": at,
                           "reason": reason, "criteria": [{"criterion": "All tests passing", "met": true, "detail": "ok"}]})
    }

    fn requested(role: &str, at: &str, deadline: &str) -> serde_json::Value {
        serde_json::json!({"fact": "approval_requested", "at": at, "role": role, "deadline": deadline})
    }

    fn self_approval(at: &str) -> serde_json::Value {
        approval(
            "manager",
            "refused",
            "dana",
            at,
            "dana submitted this deployment and cannot approve it (separation of duties)",
        )
    }

    fn markdown(r: &Record) -> String {
        deployment_record(r, &Settings::builtin())
    }

    #[test]
    fn a_pending_approval_shows_pending_with_its_refused_attempts() {
        let r = record(serde_json::json!([
            {"fact": "status", "at": "2026-12-01T10:25:00Z", "status": "awaiting_approval", "note": ""},
            requested("manager", "2026-12-01T10:25:00Z", "2026-12-01T11:25:00Z"),
            requested("security", "2026-12-01T10:25:00Z", "2026-12-01T11:25:00Z"),
            self_approval("2026-12-01T10:30:42Z"),
        ]));
        assert_eq!(r.pending_approvals.len(), 2);
        let md = markdown(&r);
        assert!(!md.contains("REFUSED"), "{md}");
        assert!(md.contains("- Approver: pending (manager, security)\n"), "{md}");
        let manager = "## Deployment Approval

### Version: 2.0.0
### Approver: pending (manager)
### Timestamp: 2026-12-01T10:25:00Z

### Approval: PENDING

### Notes
Waiting for a person with the manager role; without a decision by 2026-12-01T11:25:00Z the deployment is rejected.

### Refused Attempts
- 2026-12-01T10:30:42Z dana: dana submitted this deployment and cannot approve it (separation of duties)
";
        assert!(md.contains(manager), "{md}");
        assert!(md.contains("### Approver: pending (security)\n"), "{md}");
        assert_eq!(md.matches("### Refused Attempts").count(), 1, "{md}");
        // The timeline still says when each was asked for.
        assert!(
            md.contains("| 2026-12-01T10:25:00Z | Approval (manager) requested from a person; deadline 2026-12-01T11:25:00+00:00 |"),
            "{md}"
        );
    }

    #[test]
    fn a_decision_ends_the_pending_state_and_keeps_the_refused_attempts_under_it() {
        let r = record(serde_json::json!([
            requested("manager", "2026-12-01T10:25:00Z", "2026-12-01T11:25:00Z"),
            self_approval("2026-12-01T10:30:00Z"),
            approval(
                "manager",
                "granted",
                "erin",
                "2026-12-01T10:40:00Z",
                "release notes read"
            ),
        ]));
        assert!(r.pending_approvals.is_empty());
        let md = markdown(&r);
        assert!(!md.contains("PENDING") && !md.contains("REFUSED"), "{md}");
        assert_eq!(md.matches("## Deployment Approval").count(), 1, "{md}");
        assert!(md.contains("- Approver: erin (manager)\n"), "{md}");
        assert!(
            md.contains("### Approval: GRANTED\n\n### Notes\nrelease notes read\n\n### Refused Attempts\n- 2026-12-01T10:30:00Z dana: dana submitted"),
            "{md}"
        );
        assert!(
            md.contains("### Checklist Verified\n- [x] All tests passing: ok\n"),
            "{md}"
        );
    }

    #[test]
    fn an_ended_deployment_has_nothing_pending() {
        let r = record(serde_json::json!([
            requested("manager", "2026-12-01T10:25:00Z", "2026-12-01T11:25:00Z"),
            self_approval("2026-12-01T10:30:00Z"),
            {"fact": "status", "at": "2026-12-01T10:35:00Z", "status": "cancelled", "note": "cancelled by dana"},
        ]));
        assert!(r.pending_approvals.is_empty());
        let md = markdown(&r);
        assert!(!md.contains("PENDING"), "{md}");
        assert!(md.contains("### Approver: nobody (manager)\n"), "{md}");
        assert!(md.contains("### Approval: NOT DECIDED\n"), "{md}");
        assert!(
            md.contains("### Refused Attempts\n- 2026-12-01T10:30:00Z dana: "),
            "{md}"
        );
        assert!(
            md.contains("- Duration: 35 min (2026-12-01T10:00:00Z to 2026-12-01T10:35:00Z)\n"),
            "{md}"
        );
    }

    #[test]
    fn durations_under_a_minute_are_in_seconds() {
        let d = chrono::Duration::seconds;
        assert_eq!(fmt_duration(d(0)), "0 s");
        assert_eq!(fmt_duration(d(42)), "42 s");
        assert_eq!(fmt_duration(chrono::Duration::milliseconds(1500)), "1.5 s");
        assert_eq!(fmt_duration(d(60)), "1 min");
        assert_eq!(fmt_duration(d(330)), "5 min 30 s");
        assert_eq!(fmt_duration(d(3600)), "60 min");
        assert_eq!(fmt_duration(d(3660)), "1 h 1 min");
        assert_eq!(fmt_duration(d(7200)), "2 h");
        assert_eq!(fmt_duration(d(6060)), "1 h 41 min");
        assert_eq!(fmt_minutes(0.05), "3 s");
        assert_eq!(fmt_minutes(0.25), "15 s");
        assert_eq!(fmt_minutes(15.0), "15 min");
        let r = record(serde_json::json!([
            {"fact": "status", "at": "2026-12-01T10:00:29Z", "status": "succeeded", "note": ""},
            {"fact": "deploy_started", "at": "2026-12-01T10:00:05Z", "strategy": "canary"},
            {"fact": "checkpoint", "minute": 0.05, "check": "initial_health", "at": "2026-12-01T10:00:08Z",
             "passed": true, "detail": "health checks passing"},
        ]));
        let md = markdown(&r);
        assert!(
            md.contains("- Duration: 29 s (2026-12-01T10:00:00Z to 2026-12-01T10:00:29Z)\n"),
            "{md}"
        );
        assert!(
            md.contains("- [x] 3 s: Initial health check - health checks passing\n"),
            "{md}"
        );
        assert!(md.contains("| Checkpoint 3 s (Initial health check): ok |"), "{md}");
        assert!(!md.contains(" min"), "{md}");
    }

    #[test]
    fn message_times_carry_seconds() {
        let r = record(serde_json::json!([]));
        let settings = Settings::builtin();
        let (subject, body) = pre_deployment_message(&r, at("2026-12-01T10:25:07Z"), &settings);
        assert_eq!(subject, "[Scheduled] Deployment web v2.0.0 - 2026-12-01 10:25:07 UTC");
        assert!(body.contains("is scheduled for 2026-12-01 at 10:25:07 UTC."), "{body}");
        assert!(
            body.contains("Expected duration: about 1 h 15 min including monitoring\n"),
            "{body}"
        );
        let (_, body) = post_deployment_message(&r, at("2026-12-01T11:46:42Z"), &settings);
        assert!(
            body.contains("completed successfully at 2026-12-01 11:46:42 UTC."),
            "{body}"
        );
        let (_, body) = rollback_message(&r, at("2026-12-01T11:46:42Z"), &settings);
        assert!(body.contains("was rolled back at 2026-12-01 11:46:42 UTC."), "{body}");
    }

    #[test]
    fn without_a_baseline_no_baseline_value_is_shown() {
        let r = record(serde_json::json!([
            {"fact": "deploy_started", "at": "2026-12-01T10:00:05Z", "strategy": "canary"},
            {"fact": "baseline", "at": "2026-12-01T10:00:05Z", "sample": null,
             "error": "first deployment of web: no version in production to measure a baseline from; latency is not compared"},
            {"fact": "sample", "at": "2026-12-01T10:01:05Z", "stage": "monitor", "minute": 1, "traffic_percent": 100,
             "sample": {"error_rate": 0.001, "latency_p99_ms": 44.35, "cpu": 0.4, "memory": 0.5}, "error": null},
        ]));
        let md = markdown(&r);
        assert!(
            md.contains("- Latency change: not compared: no baseline (p99 44.35 ms)\n"),
            "{md}"
        );
        assert!(md.contains("- Baseline: unavailable\n"), "{md}");
        assert!(!md.contains("vs baseline"), "{md}");
    }
}
