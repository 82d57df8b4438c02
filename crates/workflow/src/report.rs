//! Rendering of the seed's artifacts and messages as Markdown and text.
//!
//! Templates are minijinja sources kept here; every function takes the
//! record and returns text, so rendering is deterministic.

use chrono::{DateTime, Utc};
use minijinja::{context, Environment, Value};

use crate::approval::role_title;
use crate::checklist::Source;
use crate::record::{fmt_num, pct, pct_or_not_measured, simulated, Decision, Recommendation, Record};
use crate::settings::{Settings, WindowRule};
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

### Checklist Verified
{% for c in a.criteria %}- [{{ "x" if c.met else " " }}] {{ c.criterion }}: {{ c.detail }}
{% endfor %}
### Approval: {{ a.decision }}

### Notes
{{ a.reason }}
{% endfor %}{% if deploy %}
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
{% for c in monitoring.checkpoints %}- [{{ "x" if c.passed else " " }}] {{ c.minute }} minutes: {{ c.title }} - {{ c.detail }}{% if c.simulated %} (simulated){% endif %}
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
{% for e in escalations %}- {{ e.at }} {{ e.reason }}: {{ e.detail }}{% if e.acknowledged_by %} (acknowledged by {{ e.acknowledged_by }} at {{ e.acknowledged_at }}){% endif %}
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
        Some(to) => {
            let m = (to - from).num_minutes();
            if m >= 60 {
                format!("{}h {:02}m ({} to {})", m / 60, m % 60, ts(from), ts(to))
            } else {
                format!("{m}m ({} to {})", ts(from), ts(to))
            }
        }
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
    let approvers: Vec<String> = r
        .approvals
        .iter()
        .filter(|a| a.decision == Decision::Granted)
        .map(|a| {
            if a.by.ends_with(" agent") {
                format!("{} Agent", role_title(a.role))
            } else {
                format!("{} ({})", a.by, a.role)
            }
        })
        .collect();
    let last = r.monitoring.samples.iter().rev().find_map(|s| s.sample);
    let error_rate = last.map(|s| pct(s.error_rate)).unwrap_or_else(|| "not measured".into());
    let latency_change = match (last, r.monitoring.baseline) {
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
        _ => "not measured".into(),
    };
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
    let checklist: Vec<Value> = sections
        .into_iter()
        .map(|(name, items)| context! { name, items })
        .collect();
    let security = r
        .security
        .as_ref()
        .map(|s| context! { critical => format!("{}{}", s.critical_vulnerabilities, simulated(s.simulated)), findings => Value::from_serialize(&s.findings) });
    let staging = r.staging.as_ref().map(|s| {
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
    });
    let validation = r.validation.as_ref().map(|v| {
        context! {
            suites => Value::from_serialize(&v.suites),
            features => Value::from_serialize(&v.features),
            issues => Value::from_serialize(&v.issues),
            ready => v.recommendation == Recommendation::Ready,
        }
    });
    let approvals: Vec<Value> = r
        .approvals
        .iter()
        .map(|a| {
            let decision = match a.decision {
                Decision::Granted => "GRANTED",
                Decision::Denied => "DENIED",
                Decision::Refused => "REFUSED",
                Decision::TimedOut => "TIMED OUT",
                Decision::WindowOverride => "WINDOW OVERRIDE",
            };
            let by = if a.by.ends_with(" agent") { format!("{} Agent", role_title(a.role)) } else { a.by.clone() };
            context! { by, role => a.role.as_str(), at => ts(a.at), decision, reason => a.reason.clone(), criteria => Value::from_serialize(&a.criteria) }
        })
        .collect();
    let first_watch = r
        .monitoring
        .samples
        .iter()
        .find(|s| s.stage == crate::types::Stage::Monitor);
    let deploy = r.deploy_log.as_ref().map(|d| {
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
    });
    let monitoring = (r.deploy_log.is_some()).then(|| {
        let b = r.monitoring.baseline;
        context! {
            baseline => b.map(|b| format!("error rate {}, p99 {} ms, CPU {}, memory {}{}", pct(b.error_rate), fmt_num(b.latency_p99_ms), pct_or_not_measured(b.cpu), pct_or_not_measured(b.memory), simulated(b.simulated))).unwrap_or_else(|| "unavailable".into()),
            samples => r.monitoring.samples.len(),
            inconclusive => r.monitoring.samples.iter().filter(|s| s.sample.is_none()).count(),
            simulated => r.monitoring.samples.iter().filter(|s| s.sample.is_some_and(|m| m.simulated)).count(),
            not_judged => not_judged(r),
            checkpoints => r.monitoring.checkpoints.iter().map(|c| context! { minute => c.minute, title => c.check.title(), passed => c.passed, detail => c.detail.clone(), simulated => c.simulated }).collect::<Vec<_>>(),
        }
    });
    let alerts: Vec<Value> = r
        .alerts
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
        .collect();
    let rollback = r.rollback.as_ref().map(|rb| {
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
    });
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
        approvers => if approvers.is_empty() { "none".to_string() } else { approvers.join(", ") },
        changes => Value::from_serialize(&r.changes),
        timeline => r.timeline.iter().map(|t| context! { at => ts(t.at), event => t.event.replace('|', "/") }).collect::<Vec<_>>(),
        issues => r.issues.iter().cloned().chain(r.escalations.iter().map(|e| format!("Escalation ({}): {}", e.reason, e.detail))).collect::<Vec<_>>(),
        error_rate,
        latency_change,
        metrics_simulated => last.is_some_and(|s| s.simulated),
        alert_count => r.alerts.len(),
        status => status_word(r.status),
        checklist,
        security,
        staging,
        validation,
        approvals,
        deploy,
        monitoring,
        alerts,
        rollback,
        escalations => r.escalations.iter().map(|e| context! { at => ts(e.at), reason => e.reason.as_str(), detail => e.detail.clone(), acknowledged_by => e.acknowledged_by.clone(), acknowledged_at => e.acknowledged_at.map(ts) }).collect::<Vec<_>>(),
        notifications => r.notifications.iter().map(|n| context! { at => ts(n.at), kind => n.kind.as_str(), subject => n.subject.clone(), delivered => n.delivered, error => n.error.clone().unwrap_or_default() }).collect::<Vec<_>>(),
    };
    render(DEPLOYMENT_RECORD, ctx)
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
    let time = local.format("%H:%M %Z").to_string();
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
            duration => format!("about {} minutes including monitoring", fmt_num(expected_minutes(r, settings))),
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
        .format("%Y-%m-%d %H:%M %Z")
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
        .format("%Y-%m-%d %H:%M %Z")
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
