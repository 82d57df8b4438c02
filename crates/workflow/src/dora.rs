//! The four DORA figures (deployment frequency, lead time for changes, change
//! failure rate, time to restore) computed from Deployment Records.
//!
//! [`dora`] is the one place they are computed: `stagecoach report dora`
//! calls it on the records it lists through the API, and a web dashboard
//! must call the very same function rather than compute them again
//! (whichever of the two issues comes first writes it once; this is it).
//! It is pure: no clock, no I/O; the period is an argument.
//!
//! # Definitions
//!
//! Only deployments of type `standard`, `hotfix` and `scheduled` are
//! *changes*. Rollback-type deployments are restorations: they never count
//! as a change; they count only in time to restore, when they restore a
//! failed change (see below).
//!
//! A change *reached production* when its DEPLOY stage started, i.e. its
//! record has a `deploy_log` (production steps were run, whatever their
//! result). A change *belongs to the period* when `deploy_log.started_at`
//! lies in it, from `since` included to `until` excluded; the same rule
//! applies to all four figures, so a change is counted in one period only.
//!
//! - **Deployment frequency**: the changes of the period that reached
//!   production and whose status is `succeeded`; also per day, as that
//!   count divided by the period's length in days (fractional).
//! - **Lead time for changes**: for the changes of the period whose DEPLOY
//!   stage passed (the new version was completely deployed), the time from
//!   submission (`submitted_at`) to the end of that DEPLOY stage (its
//!   `finished_at`); the median and the 90th percentile. It is measured from
//!   submission to Stagecoach, not from the commit: Stagecoach does not know
//!   commit times. It includes the waits for approvals, windows and a
//!   scheduled time.
//! - **Change failure rate**: of the changes of the period that reached
//!   production and have ended, the share that are *failed changes*: status
//!   `rolled_back` (rolled back automatically, or by hand during or after
//!   the rollout), `failed` or `escalated` (held in production for a person,
//!   or unable to roll back), which are the only ends other than
//!   `succeeded` a deployment can reach once DEPLOY started. Changes still
//!   in progress are left out of the rate and counted apart.
//! - **Time to restore**: for each failed change, from the moment the
//!   failure was detected to the moment the previous version was restored:
//!   - detected: when the change's rollback started (`rollback.initiated_at`,
//!     the moment of its trigger); a failed change without a rollback (held
//!     in production) was detected when it ended (`finished_at`);
//!   - restored by its own rollback: status `rolled_back`, at
//!     `rollback.completed_at` (a rollback that ends `rolled_back` restored
//!     and verified the previous version);
//!   - otherwise (its rollback failed, or it was held) restored by a
//!     rollback-type deployment of the same service submitted at or after
//!     the detection that succeeded, at that deployment's
//!     `rollback.completed_at`, provided no other change of the service
//!     reached production before that rollback started (production then
//!     ran something else: the failure was fixed forward or superseded,
//!     and the change counts as not restored);
//!   - the median and the maximum over the restored failed changes; the
//!     failed changes not restored (yet) are counted apart.
//!
//! Percentiles: the median of an even number of durations is the mean of
//! the two middle ones; the 90th percentile is the nearest rank, the
//! `ceil(0.9 n)`-th smallest of `n`. With nothing to measure a figure is
//! absent (`None`, `null` in JSON), never NaN or a division by zero.

use chrono::{DateTime, Duration, NaiveDate, NaiveTime, Utc};
use serde::{Deserialize, Serialize};

use crate::record::Record;
use crate::types::{DeploymentId, DeploymentType, ServiceName, Stage, Status};

/// The time span the figures cover: from `since` (included) to `until`
/// (excluded); `since` is always before `until`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawPeriod")]
pub struct Period {
    since: DateTime<Utc>,
    until: DateTime<Utc>,
}

#[derive(Deserialize)]
struct RawPeriod {
    since: DateTime<Utc>,
    until: DateTime<Utc>,
}

impl TryFrom<RawPeriod> for Period {
    type Error = PeriodError;
    fn try_from(raw: RawPeriod) -> Result<Self, Self::Error> {
        Period::new(raw.since, raw.until)
    }
}

/// A period whose start is not before its end.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the period's start {} is not before its end {}", .since.to_rfc3339(), .until.to_rfc3339())]
pub struct PeriodError {
    pub since: DateTime<Utc>,
    pub until: DateTime<Utc>,
}

impl Period {
    /// The period from `since` (included) to `until` (excluded).
    pub fn new(since: DateTime<Utc>, until: DateTime<Utc>) -> Result<Period, PeriodError> {
        if since < until {
            Ok(Period { since, until })
        } else {
            Err(PeriodError { since, until })
        }
    }

    /// The `days` days up to `until` (the default of `report dora`: 30 days up to now).
    pub fn days_before(until: DateTime<Utc>, days: u32) -> Period {
        Period {
            since: until - Duration::days(i64::from(days.max(1))),
            until,
        }
    }

    pub fn since(&self) -> DateTime<Utc> {
        self.since
    }

    pub fn until(&self) -> DateTime<Utc> {
        self.until
    }

    pub fn contains(&self, at: DateTime<Utc>) -> bool {
        self.since <= at && at < self.until
    }

    /// The length in days, fractional (always more than zero).
    pub fn days(&self) -> f64 {
        seconds(self.until - self.since) / 86_400.0
    }
}

/// Which end of a period a date without a time names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bound {
    /// The start of the day: `2026-12-01` is 2026-12-01T00:00:00Z.
    Since,
    /// The end of the day, so that the day is included: `2026-12-01` is
    /// 2026-12-02T00:00:00Z (the period excludes its end).
    Until,
}

/// Reads a period bound: a date `YYYY-MM-DD` (a whole day in UTC, see
/// [`Bound`]) or an RFC 3339 time (`2026-12-01T10:00:00Z`, any offset).
/// The error says what was expected, for the flag's message.
pub fn parse_bound(raw: &str, bound: Bound) -> Result<DateTime<Utc>, String> {
    let t = raw.trim();
    if let Ok(date) = NaiveDate::parse_from_str(t, "%Y-%m-%d") {
        let start = date.and_time(NaiveTime::MIN).and_utc();
        return Ok(match bound {
            Bound::Since => start,
            Bound::Until => start + Duration::days(1),
        });
    }
    DateTime::parse_from_rfc3339(t)
        .map(|d| d.with_timezone(&Utc))
        .map_err(|_| format!("{raw:?} is neither a date YYYY-MM-DD nor an RFC 3339 time such as 2026-12-01T10:00:00Z"))
}

/// The four figures of a period, with what each is based on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Dora {
    pub period: Period,
    /// The one service counted, or `None` for all of them.
    pub service: Option<ServiceName>,
    pub deployment_frequency: DeploymentFrequency,
    pub lead_time: LeadTime,
    pub change_failure_rate: ChangeFailureRate,
    pub time_to_restore: TimeToRestore,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeploymentFrequency {
    /// Changes of the period that reached production and succeeded.
    pub deployments: usize,
    /// The period's length in days.
    pub days: f64,
    /// `deployments / days`.
    pub per_day: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LeadTime {
    /// Changes of the period whose DEPLOY stage passed: how many durations were measured.
    pub deployments: usize,
    /// From `submitted_at` to the end of DEPLOY, in seconds.
    pub median_seconds: Option<f64>,
    pub p90_seconds: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChangeFailureRate {
    /// Changes of the period that reached production (ended or not).
    pub reached_production: usize,
    pub succeeded: usize,
    /// Failed changes: rolled back, failed or escalated.
    pub failed: usize,
    /// Not ended yet: left out of the rate.
    pub in_progress: usize,
    /// `failed / (succeeded + failed)`, from 0 to 1.
    pub rate: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TimeToRestore {
    /// The failed changes of the period (as counted by the change failure rate).
    pub failed_changes: usize,
    /// Of those, the ones whose previous version was restored.
    pub restored: usize,
    pub not_restored: usize,
    /// From detection to restoration, in seconds, over the restored ones.
    pub median_seconds: Option<f64>,
    pub max_seconds: Option<f64>,
    /// Each failed change, in the order of the records given.
    pub changes: Vec<FailedChange>,
}

/// One failed change and how (and whether) it was restored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FailedChange {
    pub id: DeploymentId,
    pub service: ServiceName,
    pub status: Status,
    pub detected_at: DateTime<Utc>,
    /// When the previous version was restored; `None`: not restored.
    pub restored_at: Option<DateTime<Utc>>,
    /// The rollback-type deployment that restored it; `None` when its own
    /// rollback did (or nothing did).
    pub restored_by: Option<DeploymentId>,
    pub seconds: Option<f64>,
}

/// The four DORA figures of `period` over `records` (of `service` only, when
/// given). See the module documentation for the exact definitions. The
/// records may come in any order and may include any other deployments
/// (other services, other periods, rollback-type ones): they are needed to
/// find what restored a failed change.
pub fn dora(records: &[Record], period: Period, service: Option<&ServiceName>) -> Dora {
    // The changes of the period that reached production, with their index.
    let changes: Vec<(usize, &Record)> = records
        .iter()
        .enumerate()
        .filter(|(_, r)| is_change(r) && service.is_none_or(|s| &r.service == s))
        .filter(|(_, r)| r.deploy_log.as_ref().is_some_and(|d| period.contains(d.started_at)))
        .collect();

    let succeeded = changes.iter().filter(|(_, r)| r.status == Status::Succeeded).count();
    let in_progress = changes.iter().filter(|(_, r)| !r.status.is_terminal()).count();
    let failed: Vec<(usize, &Record)> = changes
        .iter()
        .filter(|(_, r)| r.status.is_terminal() && r.status != Status::Succeeded)
        .copied()
        .collect();

    let days = period.days();
    let deployment_frequency = DeploymentFrequency {
        deployments: succeeded,
        days,
        per_day: succeeded as f64 / days,
    };

    let mut leads: Vec<f64> = changes
        .iter()
        .filter_map(|(_, r)| deploy_passed_at(r).map(|end| seconds(end - r.submitted_at)))
        .collect();
    leads.sort_by(f64::total_cmp);
    let lead_time = LeadTime {
        deployments: leads.len(),
        median_seconds: median(&leads),
        p90_seconds: nearest_rank(&leads, 0.9),
    };

    let ended = succeeded + failed.len();
    let change_failure_rate = ChangeFailureRate {
        reached_production: changes.len(),
        succeeded,
        failed: failed.len(),
        in_progress,
        rate: (ended > 0).then(|| failed.len() as f64 / ended as f64),
    };

    let failed_changes: Vec<FailedChange> = failed.iter().map(|&(i, r)| restoration(records, i, r)).collect();
    let mut restores: Vec<f64> = failed_changes.iter().filter_map(|c| c.seconds).collect();
    restores.sort_by(f64::total_cmp);
    let time_to_restore = TimeToRestore {
        failed_changes: failed_changes.len(),
        restored: restores.len(),
        not_restored: failed_changes.len() - restores.len(),
        median_seconds: median(&restores),
        max_seconds: restores.last().copied(),
        changes: failed_changes,
    };

    Dora {
        period,
        service: service.cloned(),
        deployment_frequency,
        lead_time,
        change_failure_rate,
        time_to_restore,
    }
}

/// A standard, hotfix or scheduled deployment; a rollback-type one is a restoration.
fn is_change(r: &Record) -> bool {
    matches!(
        r.kind,
        DeploymentType::Standard | DeploymentType::Hotfix | DeploymentType::Scheduled
    )
}

/// When the record's DEPLOY stage passed (the new version completely deployed).
fn deploy_passed_at(r: &Record) -> Option<DateTime<Utc>> {
    r.stages
        .iter()
        .rev()
        .find(|e| e.stage == Stage::Deploy && e.outcome == Some(crate::types::Outcome::Passed))
        .and_then(|e| e.finished_at)
}

/// How the failed change `failed` (at `index` in `records`) was restored.
fn restoration(records: &[Record], index: usize, failed: &Record) -> FailedChange {
    let detected_at = failed
        .rollback
        .as_ref()
        .map(|rb| rb.initiated_at)
        .or(failed.finished_at)
        .or(failed.deploy_log.as_ref().map(|d| d.started_at))
        .unwrap_or(failed.submitted_at);
    let own = failed
        .rollback
        .as_ref()
        .and_then(|rb| rb.completed_at)
        .filter(|_| failed.status == Status::RolledBack);
    let (restored_at, restored_by) = match own {
        Some(at) => (Some(at), None),
        None => match restoring_rollback(records, index, failed, detected_at) {
            Some((id, at)) => (Some(at), Some(id)),
            None => (None, None),
        },
    };
    FailedChange {
        id: failed.id,
        service: failed.service.clone(),
        status: failed.status,
        detected_at,
        restored_at,
        restored_by,
        seconds: restored_at.map(|at| seconds(at - detected_at)),
    }
}

/// A rollback-type deployment that restored production, and when it finished.
type Restoration = (DeploymentId, DateTime<Utc>);

/// The rollback-type deployment of the failed change's service that
/// restored production after `detected_at`, with when it finished: the
/// first of the service's later production changes, in the order they
/// started, that is a rollback-type deployment submitted at or after the
/// detection that succeeded. A change of the service reaching production
/// first ends the search (fixed forward); a rollback-type deployment that
/// did not succeed is passed over.
fn restoring_rollback(
    records: &[Record],
    index: usize,
    failed: &Record,
    detected_at: DateTime<Utc>,
) -> Option<Restoration> {
    // When each started changing production, and the restoration of those that restored it.
    let mut later: Vec<(DateTime<Utc>, Option<Restoration>)> = records
        .iter()
        .enumerate()
        .filter(|&(i, r)| i != index && r.service == failed.service)
        .filter_map(|(_, r)| {
            if r.kind == DeploymentType::Rollback {
                let rb = r.rollback.as_ref()?;
                if r.submitted_at < detected_at {
                    return None;
                }
                let restored = rb.completed_at.filter(|_| r.status == Status::Succeeded);
                // A rollback-type deployment that did not restore changes nothing here.
                restored.map(|at| (rb.initiated_at, Some((r.id, at))))
            } else {
                let started = r.deploy_log.as_ref()?.started_at;
                (started >= detected_at).then_some((started, None))
            }
        })
        .collect();
    later.sort_by_key(|(at, restored)| (*at, restored.is_none()));
    later.first().and_then(|(_, restored)| *restored)
}

fn seconds(d: Duration) -> f64 {
    d.num_milliseconds() as f64 / 1000.0
}

/// The median of sorted values: the middle one, or the mean of the two middle ones.
fn median(sorted: &[f64]) -> Option<f64> {
    let n = sorted.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(sorted[n / 2]),
        _ => Some((sorted[n / 2 - 1] + sorted[n / 2]) / 2.0),
    }
}

/// The nearest-rank percentile `p` (0 < p ≤ 1) of sorted values: the
/// `ceil(p n)`-th smallest.
fn nearest_rank(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (p * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{Fact, Request};
    use crate::types::{Outcome, RollbackTrigger, Strategy, Version};

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().expect("an RFC 3339 time")
    }

    fn svc(s: &str) -> ServiceName {
        ServiceName::parse(s).unwrap()
    }

    /// December 2026: 31 days.
    fn december() -> Period {
        Period::new(t("2026-12-01T00:00:00Z"), t("2027-01-01T00:00:00Z")).unwrap()
    }

    /// A record told as the facts the state machine emits, built by
    /// [`Record::replay`]: the same way the journal rebuilds records.
    struct Story {
        facts: Vec<Fact>,
    }

    impl Story {
        fn submitted(id: u64, service: &str, kind: DeploymentType, at: &str) -> Story {
            let version = Version::parse(&format!("1.0.{id}")).unwrap();
            Story {
                facts: vec![Fact::Submitted {
                    id: DeploymentId(id),
                    at: t(at),
                    request: Request {
                        service: svc(service),
                        version: Some(version.clone()),
                        kind,
                        strategy: Some(Strategy::Canary),
                        submitted_by: "alice".into(),
                        changes: vec![],
                        scheduled_for: None,
                        attest: vec![],
                        window_override: None,
                    },
                    strategy: Strategy::Canary,
                    previous_version: Some(Version::parse("0.9").unwrap()),
                    production_version: Some(Version::parse("0.9").unwrap()),
                    target_version: Some(version),
                }],
            }
        }

        fn change(id: u64, service: &str, at: &str) -> Story {
            Story::submitted(id, service, DeploymentType::Standard, at)
        }

        fn stage(mut self, stage: Stage, from: &str, to: Option<(&str, Outcome)>) -> Story {
            self.facts.push(Fact::StageStarted { at: t(from), stage });
            if stage == Stage::Deploy {
                self.facts.push(Fact::DeployStarted {
                    at: t(from),
                    strategy: Strategy::Canary,
                });
            }
            if let Some((to, outcome)) = to {
                if stage == Stage::Deploy {
                    self.facts.push(Fact::DeployFinished { at: t(to) });
                }
                self.facts.push(Fact::StageFinished {
                    at: t(to),
                    stage,
                    outcome,
                    note: String::new(),
                });
            }
            self
        }

        /// DEPLOY from `from` to `to`, passed.
        fn deployed(self, from: &str, to: &str) -> Story {
            self.stage(Stage::Deploy, from, Some((to, Outcome::Passed)))
        }

        fn rollback(mut self, from: &str, to: &str, restored: bool) -> Story {
            self.facts.push(Fact::RollbackStarted {
                at: t(from),
                trigger: RollbackTrigger::ErrorRate,
                reason: "error rate".into(),
            });
            self.facts.push(Fact::RollbackFinished {
                at: t(to),
                restored_version: restored.then(|| Version::parse("0.9").unwrap()),
                migrations_reverted: false,
                caches_cleared: false,
                verified: restored,
                incident: String::new(),
            });
            self
        }

        fn ends(mut self, status: Status, at: &str) -> Record {
            self.facts.push(Fact::Status {
                at: t(at),
                status,
                note: String::new(),
            });
            self.record()
        }

        fn record(self) -> Record {
            Record::replay(&self.facts).expect("a story starts with its submission")
        }
    }

    /// Submitted at `submit`, DEPLOY from `from` to `to`, succeeded an hour later.
    fn succeeded(id: u64, service: &str, submit: &str, from: &str, to: &str) -> Record {
        let end = (t(to) + Duration::hours(1)).to_rfc3339();
        Story::change(id, service, submit)
            .deployed(from, to)
            .ends(Status::Succeeded, &end)
    }

    /// DEPLOY from 10:05, an error rate seen at 10:17 rolls it back until 10:25.
    fn rolled_back_during_deploy(id: u64, day: &str) -> Record {
        let at = |hm: &str| format!("{day}T{hm}:00Z");
        Story::change(id, "checkout", &at("10:00"))
            .stage(Stage::Deploy, &at("10:05"), Some((&at("10:17"), Outcome::Failed)))
            .stage(Stage::Rollback, &at("10:17"), Some((&at("10:25"), Outcome::Passed)))
            .rollback(&at("10:17"), &at("10:25"), true)
            .ends(Status::RolledBack, &at("10:25"))
    }

    const MIN: f64 = 60.0;

    #[test]
    fn a_succeeded_deployment() {
        let r = succeeded(
            1,
            "checkout",
            "2026-12-01T10:00:00Z",
            "2026-12-01T10:05:00Z",
            "2026-12-01T10:20:00Z",
        );
        let d = dora(&[r], december(), None);
        assert_eq!(
            d.deployment_frequency,
            DeploymentFrequency {
                deployments: 1,
                days: 31.0,
                per_day: 1.0 / 31.0
            }
        );
        assert_eq!(
            d.lead_time,
            LeadTime {
                deployments: 1,
                median_seconds: Some(20.0 * MIN),
                p90_seconds: Some(20.0 * MIN)
            }
        );
        assert_eq!(
            d.change_failure_rate,
            ChangeFailureRate {
                reached_production: 1,
                succeeded: 1,
                failed: 0,
                in_progress: 0,
                rate: Some(0.0)
            }
        );
        assert_eq!(d.time_to_restore.failed_changes, 0);
        assert_eq!(d.time_to_restore.median_seconds, None);
        assert_eq!(d.time_to_restore.max_seconds, None);
    }

    #[test]
    fn a_rolled_back_deployment() {
        let d = dora(&[rolled_back_during_deploy(1, "2026-12-01")], december(), None);
        assert_eq!(d.deployment_frequency.deployments, 0);
        assert_eq!(d.deployment_frequency.per_day, 0.0);
        // DEPLOY never passed: no lead time to measure.
        assert_eq!(d.lead_time.deployments, 0);
        assert_eq!(d.lead_time.median_seconds, None);
        assert_eq!(d.change_failure_rate.rate, Some(1.0));
        assert_eq!(d.change_failure_rate.failed, 1);
        let ttr = &d.time_to_restore;
        assert_eq!((ttr.failed_changes, ttr.restored, ttr.not_restored), (1, 1, 0));
        // From the trigger at 10:17 to the rollback's end at 10:25.
        assert_eq!(ttr.median_seconds, Some(8.0 * MIN));
        assert_eq!(ttr.max_seconds, Some(8.0 * MIN));
        assert_eq!(ttr.changes[0].detected_at, t("2026-12-01T10:17:00Z"));
        assert_eq!(ttr.changes[0].restored_by, None);
    }

    #[test]
    fn medians_percentiles_and_rates_of_several() {
        let day = "2026-12-02";
        let at = |hm: &str| format!("{day}T{hm}:00Z");
        let records = vec![
            // Lead times 10, 20 and 60 minutes.
            succeeded(1, "checkout", &at("09:00"), &at("09:05"), &at("09:10")),
            succeeded(2, "checkout", &at("11:00"), &at("11:05"), &at("11:20")),
            succeeded(3, "checkout", &at("13:00"), &at("13:30"), &at("14:00")),
            // Lead time 30 minutes, then rolled back by hand 2 hours after
            // DEPLOY ended; the rollback took 4 minutes.
            Story::change(4, "checkout", &at("15:00"))
                .deployed(&at("15:10"), &at("15:30"))
                .stage(Stage::Monitor, &at("15:30"), Some((&at("16:30"), Outcome::Passed)))
                .rollback(&at("17:30"), &at("17:34"), true)
                .ends(Status::RolledBack, &at("17:34")),
            // Rolled back after 8 minutes.
            rolled_back_during_deploy(5, "2026-12-03"),
            // Still in DEPLOY: reached production, no outcome yet.
            Story::change(6, "checkout", &at("18:00"))
                .stage(Stage::Deploy, &at("18:01"), None)
                .record(),
            // Failed before production: not a change that reached production.
            Story::change(7, "checkout", &at("19:00"))
                .stage(Stage::Prepare, &at("19:00"), Some((&at("19:01"), Outcome::Failed)))
                .ends(Status::Failed, &at("19:01")),
        ];
        let d = dora(&records, december(), None);
        assert_eq!(d.deployment_frequency.deployments, 3);
        // 10, 20, 30, 60: the median is between 20 and 30; the 90th
        // percentile is the 4th of 4 (ceil(3.6)).
        assert_eq!(d.lead_time.deployments, 4);
        assert_eq!(d.lead_time.median_seconds, Some(25.0 * MIN));
        assert_eq!(d.lead_time.p90_seconds, Some(60.0 * MIN));
        assert_eq!(
            d.change_failure_rate,
            ChangeFailureRate {
                reached_production: 6,
                succeeded: 3,
                failed: 2,
                in_progress: 1,
                rate: Some(0.4)
            }
        );
        // 4 and 8 minutes.
        assert_eq!(d.time_to_restore.median_seconds, Some(6.0 * MIN));
        assert_eq!(d.time_to_restore.max_seconds, Some(8.0 * MIN));
        let ids: Vec<u64> = d.time_to_restore.changes.iter().map(|c| c.id.0).collect();
        assert_eq!(ids, [4, 5]);
    }

    #[test]
    fn the_period_counts_what_reached_production_in_it() {
        let records = vec![
            // DEPLOY started on the last minute of November: not December's.
            succeeded(
                1,
                "checkout",
                "2026-11-30T23:00:00Z",
                "2026-11-30T23:59:00Z",
                "2026-12-01T00:10:00Z",
            ),
            // Exactly at the start: counted.
            succeeded(
                2,
                "checkout",
                "2026-11-30T23:30:00Z",
                "2026-12-01T00:00:00Z",
                "2026-12-01T00:15:00Z",
            ),
            // Exactly at the end: the next period's.
            succeeded(
                3,
                "checkout",
                "2026-12-31T23:00:00Z",
                "2027-01-01T00:00:00Z",
                "2027-01-01T00:05:00Z",
            ),
        ];
        let d = dora(&records, december(), None);
        assert_eq!(d.deployment_frequency.deployments, 1);
        assert_eq!(d.lead_time.median_seconds, Some(45.0 * MIN));
        let november = Period::new(t("2026-11-01T00:00:00Z"), t("2026-12-01T00:00:00Z")).unwrap();
        assert_eq!(november.days(), 30.0);
        let d = dora(&records, november, None);
        assert_eq!(d.deployment_frequency.deployments, 1);
        assert_eq!(d.deployment_frequency.per_day, 1.0 / 30.0);
        assert_eq!(d.lead_time.median_seconds, Some(70.0 * MIN));
    }

    #[test]
    fn the_service_filter_counts_one_service() {
        let records = vec![
            succeeded(
                1,
                "checkout",
                "2026-12-01T10:00:00Z",
                "2026-12-01T10:00:00Z",
                "2026-12-01T10:10:00Z",
            ),
            succeeded(
                2,
                "search",
                "2026-12-01T10:00:00Z",
                "2026-12-01T10:00:00Z",
                "2026-12-01T10:30:00Z",
            ),
            rolled_back_during_deploy(3, "2026-12-02"),
        ];
        let all = dora(&records, december(), None);
        assert_eq!(all.deployment_frequency.deployments, 2);
        assert_eq!(all.change_failure_rate.reached_production, 3);
        let search = dora(&records, december(), Some(&svc("search")));
        assert_eq!(search.service, Some(svc("search")));
        assert_eq!(search.deployment_frequency.deployments, 1);
        assert_eq!(search.lead_time.median_seconds, Some(30.0 * MIN));
        assert_eq!(search.change_failure_rate.rate, Some(0.0));
        assert_eq!(search.time_to_restore.failed_changes, 0);
        let checkout = dora(&records, december(), Some(&svc("checkout")));
        assert_eq!(checkout.change_failure_rate.rate, Some(0.5));
        assert_eq!(checkout.time_to_restore.max_seconds, Some(8.0 * MIN));
        let none = dora(&records, december(), Some(&svc("billing")));
        assert_eq!(none.change_failure_rate.reached_production, 0);
    }

    #[test]
    fn an_empty_period_has_no_figures_rather_than_nan() {
        let records = vec![rolled_back_during_deploy(1, "2026-12-01")];
        let january = Period::new(t("2027-01-01T00:00:00Z"), t("2027-01-02T00:00:00Z")).unwrap();
        for d in [dora(&records, january, None), dora(&[], december(), None)] {
            assert_eq!(d.deployment_frequency.deployments, 0);
            assert_eq!(d.deployment_frequency.per_day, 0.0);
            assert_eq!(d.lead_time.median_seconds, None);
            assert_eq!(d.lead_time.p90_seconds, None);
            assert_eq!(d.change_failure_rate.rate, None);
            assert_eq!(d.time_to_restore.median_seconds, None);
            assert_eq!(d.time_to_restore.max_seconds, None);
            let json = serde_json::to_value(&d).unwrap();
            assert_eq!(json["change_failure_rate"]["rate"], serde_json::Value::Null);
            assert_eq!(serde_json::from_value::<Dora>(json).unwrap(), d, "round trip");
        }
    }

    /// A change whose rollback failed (escalated): a person restores
    /// production with a rollback-type deployment.
    fn unable_to_roll_back(id: u64) -> Record {
        Story::change(id, "checkout", "2026-12-01T10:00:00Z")
            .stage(
                Stage::Deploy,
                "2026-12-01T10:05:00Z",
                Some(("2026-12-01T10:17:00Z", Outcome::Failed)),
            )
            .rollback("2026-12-01T10:17:00Z", "2026-12-01T10:20:00Z", false)
            .ends(Status::Escalated, "2026-12-01T10:20:00Z")
    }

    fn rollback_type(id: u64, submit: &str, from: &str, to: &str, status: Status) -> Record {
        Story::submitted(id, "checkout", DeploymentType::Rollback, submit)
            .stage(Stage::Rollback, from, Some((to, Outcome::Passed)))
            .rollback(from, to, status == Status::Succeeded)
            .ends(status, to)
    }

    #[test]
    fn a_rollback_type_deployment_restores_a_failed_change() {
        let records = vec![
            unable_to_roll_back(1),
            // A rollback-type deployment that failed restores nothing...
            rollback_type(
                2,
                "2026-12-01T10:25:00Z",
                "2026-12-01T10:26:00Z",
                "2026-12-01T10:28:00Z",
                Status::Escalated,
            ),
            // ... the next one does, 23 minutes after the trigger.
            rollback_type(
                3,
                "2026-12-01T10:30:00Z",
                "2026-12-01T10:35:00Z",
                "2026-12-01T10:40:00Z",
                Status::Succeeded,
            ),
        ];
        let d = dora(&records, december(), None);
        // Rollback-type deployments are no changes.
        assert_eq!(d.change_failure_rate.reached_production, 1);
        assert_eq!(d.deployment_frequency.deployments, 0);
        assert_eq!(d.change_failure_rate.rate, Some(1.0));
        let ttr = &d.time_to_restore;
        assert_eq!((ttr.restored, ttr.not_restored), (1, 0));
        assert_eq!(ttr.max_seconds, Some(23.0 * MIN));
        assert_eq!(ttr.changes[0].restored_by, Some(DeploymentId(3)));
        assert_eq!(ttr.changes[0].restored_at, Some(t("2026-12-01T10:40:00Z")));
    }

    #[test]
    fn a_failure_fixed_forward_or_never_restored_is_not_restored() {
        let hotfix = Story::submitted(2, "checkout", DeploymentType::Hotfix, "2026-12-01T10:21:00Z")
            .deployed("2026-12-01T10:30:00Z", "2026-12-01T10:32:00Z")
            .ends(Status::Succeeded, "2026-12-01T10:40:00Z");
        let later_rollback = rollback_type(
            3,
            "2026-12-01T11:00:00Z",
            "2026-12-01T11:00:00Z",
            "2026-12-01T11:05:00Z",
            Status::Succeeded,
        );
        let d = dora(&[unable_to_roll_back(1), hotfix, later_rollback], december(), None);
        // The hotfix is a change of its own, which succeeded.
        assert_eq!(d.change_failure_rate.rate, Some(0.5));
        let ttr = &d.time_to_restore;
        assert_eq!((ttr.failed_changes, ttr.restored, ttr.not_restored), (1, 0, 1));
        assert_eq!(ttr.median_seconds, None);
        assert_eq!(ttr.changes[0].restored_at, None);

        // Nothing after it at all.
        let d = dora(&[unable_to_roll_back(1)], december(), None);
        assert_eq!(d.time_to_restore.not_restored, 1);
        // A rollback submitted before the failure was detected does not answer it.
        let early = rollback_type(
            3,
            "2026-12-01T10:10:00Z",
            "2026-12-01T10:30:00Z",
            "2026-12-01T10:35:00Z",
            Status::Succeeded,
        );
        let d = dora(&[unable_to_roll_back(1), early], december(), None);
        assert_eq!(d.time_to_restore.not_restored, 1);
    }

    #[test]
    fn bounds_read_dates_and_times() {
        assert_eq!(
            parse_bound("2026-12-01", Bound::Since).unwrap(),
            t("2026-12-01T00:00:00Z")
        );
        assert_eq!(
            parse_bound("2026-12-01", Bound::Until).unwrap(),
            t("2026-12-02T00:00:00Z")
        );
        assert_eq!(
            parse_bound("2026-12-01T10:00:00+01:00", Bound::Until).unwrap(),
            t("2026-12-01T09:00:00Z")
        );
        for bad in ["2026-13-01", "yesterday", "", "2026-12-01 10:00"] {
            let e = parse_bound(bad, Bound::Since).unwrap_err();
            assert!(e.contains("YYYY-MM-DD") && e.contains("RFC 3339"), "{e}");
        }
        let p = t("2026-12-01T00:00:00Z");
        assert!(Period::new(p, p).is_err());
        assert_eq!(
            Period::new(p + Duration::days(1), p).unwrap_err().to_string(),
            "the period's start 2026-12-02T00:00:00+00:00 is not before its end 2026-12-01T00:00:00+00:00"
        );
        assert_eq!(Period::days_before(p, 30).days(), 30.0);
        let bad: Result<Period, _> =
            serde_json::from_str(r#"{"since":"2026-12-02T00:00:00Z","until":"2026-12-01T00:00:00Z"}"#);
        assert!(bad.is_err());
    }
}
