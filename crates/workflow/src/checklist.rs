//! The pre-deployment checklist: every item and where its tick comes from.
//!
//! An item is ticked only from a source: an agent action that verified it,
//! an attestation (in the request or in configuration), or an agent finding
//! that it does not apply. An item with no source stays unticked and says so.

use serde::{Deserialize, Serialize};

use crate::types::MigrationKind;

/// The items of the seed's pre-deployment checklist.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ItemKey {
    AllTestsPassing,
    CodeReviewApproved,
    SecurityReviewApproved,
    NoCriticalVulnerabilities,
    EnvironmentVariablesUpdated,
    FeatureFlagsConfigured,
    SecretsRotated,
    MigrationsTested,
    RollbackMigrationReady,
    BackupVerified,
    NoBreakingDependencyChanges,
    ApiContractsVerified,
    ChangelogUpdated,
    ReleaseNotesPrepared,
    RunbookUpdated,
}

impl ItemKey {
    pub const ALL: [ItemKey; 15] = [
        ItemKey::AllTestsPassing,
        ItemKey::CodeReviewApproved,
        ItemKey::SecurityReviewApproved,
        ItemKey::NoCriticalVulnerabilities,
        ItemKey::EnvironmentVariablesUpdated,
        ItemKey::FeatureFlagsConfigured,
        ItemKey::SecretsRotated,
        ItemKey::MigrationsTested,
        ItemKey::RollbackMigrationReady,
        ItemKey::BackupVerified,
        ItemKey::NoBreakingDependencyChanges,
        ItemKey::ApiContractsVerified,
        ItemKey::ChangelogUpdated,
        ItemKey::ReleaseNotesPrepared,
        ItemKey::RunbookUpdated,
    ];

    /// The seed's section and wording of the item.
    pub fn section_and_title(self) -> (&'static str, &'static str) {
        match self {
            ItemKey::AllTestsPassing => ("Code", "All tests passing"),
            ItemKey::CodeReviewApproved => ("Code", "Code review approved"),
            ItemKey::SecurityReviewApproved => ("Code", "Security review approved"),
            ItemKey::NoCriticalVulnerabilities => ("Code", "No critical vulnerabilities"),
            ItemKey::EnvironmentVariablesUpdated => ("Configuration", "Environment variables updated"),
            ItemKey::FeatureFlagsConfigured => ("Configuration", "Feature flags configured"),
            ItemKey::SecretsRotated => ("Configuration", "Secrets rotated (if needed)"),
            ItemKey::MigrationsTested => ("Database", "Migrations tested"),
            ItemKey::RollbackMigrationReady => ("Database", "Rollback migration ready"),
            ItemKey::BackupVerified => ("Database", "Backup verified"),
            ItemKey::NoBreakingDependencyChanges => ("Dependencies", "No breaking changes in dependencies"),
            ItemKey::ApiContractsVerified => ("Dependencies", "API contracts verified"),
            ItemKey::ChangelogUpdated => ("Documentation", "Changelog updated"),
            ItemKey::ReleaseNotesPrepared => ("Documentation", "Release notes prepared"),
            ItemKey::RunbookUpdated => ("Documentation", "Runbook updated"),
        }
    }
}

/// Where an item's state comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Source {
    /// An agent action checked it and it holds.
    Verified { by: String },
    /// An agent action checked it and it does not hold.
    Failed { by: String, detail: String },
    /// A person attested it, in the request or in configuration.
    Attested { by: String },
    /// An agent found it does not apply to this release.
    NotApplicable { why: String },
    /// Nothing verified or attested it.
    Missing,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Item {
    pub key: ItemKey,
    pub ticked: bool,
    pub required: bool,
    pub source: Source,
    /// The agent action that ticked (or failed) it was answered by the
    /// simulated world, not by a command.
    #[serde(default)]
    pub simulated: bool,
}

/// What DevOps found while preparing a release.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrepareReport {
    pub tests_passed: bool,
    pub build_succeeded: bool,
    pub artifact: String,
    pub migrations: MigrationKind,
    pub migrations_tested: bool,
    pub environment_updated: bool,
    pub backup_verified: bool,
    /// Production instances of the service, from its deployment configuration.
    pub instances: u32,
    /// The findings (named by their field, e.g. `"backup_verified"`) that
    /// came from the simulated world, not from a command.
    #[serde(default)]
    pub simulated: Vec<String>,
}

impl PrepareReport {
    /// Whether the finding named by its field came from the simulated world.
    pub fn is_simulated(&self, field: &str) -> bool {
        self.simulated.iter().any(|f| f == field)
    }

    pub fn ok(&self) -> bool {
        self.tests_passed && self.build_succeeded && (self.migrations == MigrationKind::None || self.migrations_tested)
    }
}

/// What Security found while reviewing a release.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScanReport {
    pub critical_vulnerabilities: u32,
    pub findings: Vec<String>,
    /// The scan came from the simulated world, not from a scanner.
    #[serde(default)]
    pub simulated: bool,
}

/// Builds the checklist from the agents' reports and the attestations.
pub fn build(
    prepare: Option<&PrepareReport>,
    scan: Option<&ScanReport>,
    attested_in_request: &[ItemKey],
    attested_in_config: &[ItemKey],
    required: &[ItemKey],
) -> Vec<Item> {
    ItemKey::ALL
        .iter()
        .map(|&key| {
            let verified = |ok: bool, by: &str, detail: &str| {
                if ok {
                    Source::Verified { by: by.to_string() }
                } else {
                    Source::Failed {
                        by: by.to_string(),
                        detail: detail.to_string(),
                    }
                }
            };
            let from_agents = match (key, prepare, scan) {
                (ItemKey::AllTestsPassing, Some(p), _) => Some((
                    verified(p.tests_passed, "DevOps: test run", "tests failed"),
                    p.is_simulated("tests_passed"),
                )),
                (ItemKey::EnvironmentVariablesUpdated, Some(p), _) => Some((
                    verified(p.environment_updated, "DevOps: configuration update", "not updated"),
                    p.is_simulated("environment_updated"),
                )),
                (ItemKey::MigrationsTested, Some(p), _) => Some((
                    match p.migrations {
                        MigrationKind::None => Source::NotApplicable {
                            why: "no migrations".into(),
                        },
                        _ => verified(
                            p.migrations_tested,
                            "DevOps: migration dry run",
                            "migration dry run failed",
                        ),
                    },
                    p.is_simulated("migrations") || p.is_simulated("migrations_tested"),
                )),
                (ItemKey::RollbackMigrationReady, Some(p), _) => Some((
                    match p.migrations {
                        MigrationKind::None => Source::NotApplicable {
                            why: "no migrations".into(),
                        },
                        MigrationKind::Reversible => Source::Verified {
                            by: "DevOps: down migration present".into(),
                        },
                        MigrationKind::Irreversible => Source::Failed {
                            by: "DevOps: migration analysis".into(),
                            detail: "migration is irreversible".into(),
                        },
                    },
                    p.is_simulated("migrations"),
                )),
                (ItemKey::BackupVerified, Some(p), _) => Some((
                    verified(
                        p.backup_verified,
                        "DevOps: backup restore test",
                        "backup could not be verified",
                    ),
                    p.is_simulated("backup_verified"),
                )),
                (ItemKey::NoCriticalVulnerabilities, _, Some(s)) => Some((
                    verified(
                        s.critical_vulnerabilities == 0,
                        "Security: vulnerability scan",
                        &format!("{} critical vulnerabilities", s.critical_vulnerabilities),
                    ),
                    s.simulated,
                )),
                (ItemKey::SecurityReviewApproved, _, Some(s)) => Some((
                    verified(
                        s.critical_vulnerabilities == 0,
                        "Security: review of scan results",
                        "review found blocking findings",
                    ),
                    s.simulated,
                )),
                _ => None,
            };
            let (source, simulated) = match from_agents {
                Some(found) => found,
                None if attested_in_request.contains(&key) => (Source::Attested { by: "request".into() }, false),
                None if attested_in_config.contains(&key) => (
                    Source::Attested {
                        by: "configuration".into(),
                    },
                    false,
                ),
                None => (Source::Missing, false),
            };
            let ticked = matches!(
                source,
                Source::Verified { .. } | Source::Attested { .. } | Source::NotApplicable { .. }
            );
            Item {
                key,
                ticked,
                required: required.contains(&key),
                source,
                simulated,
            }
        })
        .collect()
}

/// The required items that are not ticked.
pub fn blocking(items: &[Item]) -> Vec<ItemKey> {
    items
        .iter()
        .filter(|i| i.required && !i.ticked)
        .map(|i| i.key)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> PrepareReport {
        PrepareReport {
            tests_passed: true,
            build_succeeded: true,
            artifact: "checkout-2.4.1.tar".into(),
            migrations: MigrationKind::Reversible,
            migrations_tested: true,
            environment_updated: true,
            backup_verified: true,
            instances: 4,
            simulated: vec![],
        }
    }

    #[test]
    fn nothing_is_ticked_without_a_source() {
        let items = build(None, None, &[], &[], &[ItemKey::AllTestsPassing]);
        assert!(items.iter().all(|i| !i.ticked && i.source == Source::Missing));
        assert_eq!(blocking(&items), vec![ItemKey::AllTestsPassing]);
    }

    #[test]
    fn agent_results_and_attestations_tick_items() {
        let scan = ScanReport {
            critical_vulnerabilities: 0,
            findings: vec![],
            simulated: false,
        };
        let items = build(
            Some(&report()),
            Some(&scan),
            &[ItemKey::CodeReviewApproved],
            &[ItemKey::RunbookUpdated],
            &[ItemKey::AllTestsPassing],
        );
        let get = |k| items.iter().find(|i| i.key == k).unwrap().clone();
        assert!(matches!(get(ItemKey::AllTestsPassing).source, Source::Verified { .. }));
        assert_eq!(
            get(ItemKey::CodeReviewApproved).source,
            Source::Attested { by: "request".into() }
        );
        assert_eq!(
            get(ItemKey::RunbookUpdated).source,
            Source::Attested {
                by: "configuration".into()
            }
        );
        assert!(!get(ItemKey::ChangelogUpdated).ticked);
        assert!(get(ItemKey::RollbackMigrationReady).ticked);
        assert!(blocking(&items).is_empty());
    }

    #[test]
    fn items_ticked_from_simulated_findings_say_so() {
        let mut r = report();
        r.simulated = vec!["backup_verified".into(), "environment_updated".into()];
        let scan = ScanReport {
            critical_vulnerabilities: 0,
            findings: vec![],
            simulated: true,
        };
        let items = build(Some(&r), Some(&scan), &[ItemKey::RunbookUpdated], &[], &[]);
        let simulated: Vec<ItemKey> = items.iter().filter(|i| i.simulated).map(|i| i.key).collect();
        assert_eq!(
            simulated,
            vec![
                ItemKey::SecurityReviewApproved,
                ItemKey::NoCriticalVulnerabilities,
                ItemKey::EnvironmentVariablesUpdated,
                ItemKey::BackupVerified,
            ]
        );
        // Observed and attested items are not labelled.
        let get = |k| items.iter().find(|i| i.key == k).unwrap().clone();
        assert!(!get(ItemKey::AllTestsPassing).simulated);
        assert!(!get(ItemKey::RunbookUpdated).simulated);
        // A report journaled before the flag existed reads as observed.
        let old = r#"{"critical_vulnerabilities":0,"findings":[]}"#;
        assert!(!serde_json::from_str::<ScanReport>(old).unwrap().simulated);
    }

    #[test]
    fn a_failed_verification_cannot_be_attested_away() {
        let mut r = report();
        r.tests_passed = false;
        r.migrations = MigrationKind::Irreversible;
        let items = build(
            Some(&r),
            None,
            &[ItemKey::AllTestsPassing],
            &[],
            &[ItemKey::AllTestsPassing],
        );
        let get = |k| items.iter().find(|i| i.key == k).unwrap().clone();
        assert!(!get(ItemKey::AllTestsPassing).ticked);
        assert!(!get(ItemKey::RollbackMigrationReady).ticked);
        assert_eq!(blocking(&items), vec![ItemKey::AllTestsPassing]);
    }
}
