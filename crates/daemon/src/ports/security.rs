//! Security's scanner: the service's scanner (a command that leaves SARIF or
//! `cargo audit --json`), or its `scan` command; the simulated world's scan
//! without either. No incident feed is configured: none is reported.

use std::sync::Arc;

use agents::ports::{self, Target};
use agents::simulated;
use async_trait::async_trait;
use workflow::checklist::ScanReport;
use workflow::machine::Incident;

use super::command::{failure_line, last_line, Call, Environment, Ran};
use super::Context;
use crate::config::{ReportCommand, ScannerCommand};

/// [`ports::Security`] by the service's scanner or `scan` command.
pub struct SecurityAdapter {
    ctx: Arc<Context>,
}

impl SecurityAdapter {
    pub(super) fn new(ctx: Arc<Context>) -> SecurityAdapter {
        SecurityAdapter { ctx }
    }

    /// Security's scanner: its command, then its SARIF or cargo-audit report.
    async fn run_scanner(&self, target: &Target, scanner: &ScannerCommand) -> Result<ScanReport, String> {
        let call = Call::new("scan", Environment::Staging, target);
        let path = scanner.report_path();
        // Scanners exit non-zero when they find something; the report decides.
        let (text, outcome) = self
            .ctx
            .run_for_report(target, "scanner", &scanner.spec(), &path, call.env(target))
            .await?;
        let text = text.ok_or_else(|| {
            format!(
                "the scanner wrote no report at {} ({})",
                path.display(),
                outcome.summary()
            )
        })?;
        let scan = reports::parse_scan(&path.display().to_string(), &text).map_err(|e| e.to_string())?;
        let findings = scan
            .findings
            .iter()
            .filter(|f| f.critical)
            .map(|f| {
                let at = f.location.as_deref().map(|l| format!(" ({l})")).unwrap_or_default();
                format!("{}: {}{at} [{}]", f.rule_id, f.message, scan.tool)
            })
            .collect();
        Ok(ScanReport {
            critical_vulnerabilities: scan.critical() as u32,
            findings,
            simulated: false,
        })
    }
}

#[async_trait]
impl ports::Security for SecurityAdapter {
    async fn scan(&self, target: &Target) -> Result<ScanReport, String> {
        if let Some(scanner) = self.ctx.service(&target.service).and_then(|s| s.scanner.as_ref()) {
            return self.run_scanner(target, scanner).await;
        }
        let call = Call::new("scan", Environment::Staging, target);
        match self.ctx.invoke(target, &call).await {
            None => Ok(simulated::scan(0, &[])),
            Some(Ran::Succeeded(_)) => Ok(ScanReport {
                critical_vulnerabilities: 0,
                findings: vec![],
                simulated: false,
            }),
            Some(Ran::Failed(outcome, _)) => {
                // A scanner that exited with a code reports its finding last; one
                // that was killed or timed out reports nothing useful.
                let finding = outcome
                    .exit_code
                    .and_then(|_| last_line(&outcome.output_tail))
                    .unwrap_or_else(|| failure_line(&call, &outcome));
                Ok(ScanReport {
                    critical_vulnerabilities: 1,
                    findings: vec![finding],
                    simulated: false,
                })
            }
            Some(Ran::Error(message)) => Err(message),
        }
    }

    async fn incidents(&self, _target: &Target, _minute: u32) -> Vec<Incident> {
        vec![]
    }
}
