//! The approval policy: which criteria gate approval, how an agent decides
//! from them, and who may give a human decision.

use serde::{Deserialize, Serialize};

use crate::checklist;
use crate::record::{CriterionCheck, Decision, Recommendation, Record};
use crate::settings::ApprovalMode;
use crate::types::{DeploymentType, NotificationKind, Role};

/// What an approving agent concluded from the criteria.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Advice {
    Grant {
        by: String,
        reason: String,
    },
    Deny {
        by: String,
        reason: String,
    },
    /// The criteria hold; a person must decide.
    AskHuman,
}

/// The approval criteria of the seed, evaluated on the record so far.
pub fn criteria(record: &Record, approvers: &[Role]) -> Vec<CriterionCheck> {
    let c = |criterion: &str, met: bool, detail: String| CriterionCheck {
        criterion: criterion.to_string(),
        met,
        detail,
    };
    if record.kind == DeploymentType::Rollback {
        return vec![
            c(
                "Rollback target known",
                record.version.is_some(),
                match &record.version {
                    Some(v) => format!("restore v{v}"),
                    None => "no previous version is known".to_string(),
                },
            ),
            c(
                "Rollback plan verified",
                record.version.is_some(),
                "restore the target version, clear caches, verify health".to_string(),
            ),
        ];
    }
    let prepare_tests = record.prepare.as_ref().map(|p| p.tests_passed).unwrap_or(false);
    let failed_suites: u32 = record
        .validation
        .iter()
        .flat_map(|v| v.suites.iter())
        .map(|s| s.failed)
        .sum();
    let validated = record
        .validation
        .as_ref()
        .map(|v| v.recommendation == Recommendation::Ready)
        .unwrap_or(false);
    let critical = record.security.as_ref().map(|s| s.critical_vulnerabilities);
    let blocking = checklist::blocking(&record.checklist);
    let notified = record
        .notifications
        .iter()
        .any(|n| n.kind == NotificationKind::PreDeployment && n.delivered);
    let mut out = vec![
        c(
            "All tests passing",
            prepare_tests && record.validation.is_some() && failed_suites == 0,
            format!(
                "build tests {}, {failed_suites} failed in staging suites",
                if prepare_tests { "passed" } else { "failed" }
            ),
        ),
        c(
            "QA validation complete",
            validated,
            if validated {
                "recommendation: ready for production".into()
            } else {
                "QA has not recommended the release".into()
            },
        ),
        c("No blocking issues", blocking.is_empty() && critical == Some(0), {
            let mut parts: Vec<String> = blocking
                .iter()
                .map(|k| format!("required checklist item unticked: {}", k.section_and_title().1))
                .collect();
            match critical {
                Some(0) => {}
                Some(n) => parts.push(format!("{n} critical vulnerabilities")),
                None => parts.push("security scan missing".into()),
            }
            if parts.is_empty() {
                "none".into()
            } else {
                parts.join("; ")
            }
        }),
        c(
            "Stakeholder notification sent",
            notified,
            if notified {
                "pre-deployment notification delivered".into()
            } else {
                "pre-deployment notification not delivered".into()
            },
        ),
        c(
            "Rollback plan verified",
            true,
            match &record.previous_version {
                Some(v) => format!("restore v{v} on failure"),
                None => "first deployment: remove the new version on failure".into(),
            },
        ),
    ];
    if approvers.contains(&Role::Security) {
        out.push(c(
            "Security review passed",
            critical == Some(0),
            match critical {
                Some(n) => format!("{n} critical vulnerabilities"),
                None => "no security scan".into(),
            },
        ));
    }
    out
}

/// How an agent in `mode` advises on `checks`.
pub fn advise(role: Role, mode: ApprovalMode, checks: &[CriterionCheck]) -> Advice {
    let unmet: Vec<&str> = checks.iter().filter(|c| !c.met).map(|c| c.criterion.as_str()).collect();
    let agent = format!("{} agent", role_title(role));
    if !unmet.is_empty() {
        return Advice::Deny {
            by: agent,
            reason: format!("criteria not met: {}", unmet.join(", ")),
        };
    }
    match mode {
        ApprovalMode::Auto => Advice::Grant {
            by: agent,
            reason: "all criteria met".into(),
        },
        ApprovalMode::Human => Advice::AskHuman,
    }
}

pub fn role_title(role: Role) -> &'static str {
    match role {
        Role::Manager => "Manager",
        Role::Security => "Security",
        Role::Devops => "DevOps",
        Role::Qa => "QA",
    }
}

/// Whether `by` may decide for `role` on `record`; `Err` says why not.
/// The submitter never approves their own deployment, and one person
/// cannot grant two roles of the same deployment.
pub fn may_decide(record: &Record, role: Role, by: &str) -> Result<(), String> {
    if by.trim().is_empty() {
        return Err("the decision names no person".into());
    }
    // What to do instead: someone else decides. The daemon's CLI creates that someone.
    let next = format!(
        "another principal with the {role} role must decide; create one with \
         `stagecoach principal add NAME --role {role}` and use the token it prints"
    );
    if by == record.submitted_by {
        return Err(format!(
            "{by} submitted this deployment and cannot approve it (separation of duties): {next}"
        ));
    }
    if let Some(other) = record
        .approvals
        .iter()
        .find(|a| a.decision == Decision::Granted && a.by == by && a.role != role)
    {
        return Err(format!(
            "{by} already approved as {}; each role needs a different person: {next}",
            other.role
        ));
    }
    Ok(())
}
