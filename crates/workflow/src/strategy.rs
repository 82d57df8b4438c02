//! Production deployment plans for the three strategies (seed: "Deployment
//! Strategy Options"), as lists of steps that DevOps carries out in order.

use serde::{Deserialize, Serialize};

use crate::settings::Strategies;
use crate::types::{MigrationKind, Strategy};

/// The two colours of a blue-green deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Colour {
    Blue,
    Green,
}

/// One production step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "step", rename_all = "snake_case")]
pub enum DeployStep {
    /// Back up the database and the current release.
    Backup,
    /// Run the release's database migrations.
    RunMigrations { kind: MigrationKind },
    /// Blue-green: install the new version on the inactive colour.
    DeployInactive { colour: Colour },
    /// Blue-green: health-check the inactive colour before switching.
    HealthCheckColour { colour: Colour },
    /// Blue-green: send all traffic to `colour`.
    SwitchTraffic { colour: Colour },
    /// Blue-green: remove the old colour once monitoring has passed.
    Decommission { colour: Colour },
    /// Canary: route `percent` of traffic to the new version (installing
    /// canary instances as needed), then health-check them.
    CanaryWeight { percent: u8 },
    /// Rolling: drain, update and restore instances `first..first+count`
    /// of `total`, then health-check them.
    UpdateInstances { first: u32, count: u32, total: u32 },
}

impl DeployStep {
    /// The step as written in the production deployment log.
    pub fn describe(&self) -> String {
        let colour = |c: &Colour| match c {
            Colour::Blue => "blue",
            Colour::Green => "green",
        };
        match self {
            DeployStep::Backup => "Backup created".into(),
            DeployStep::RunMigrations { kind } => format!("Database migrations run ({kind})"),
            DeployStep::DeployInactive { colour: c } => {
                format!("Deployment initiated on inactive environment ({})", colour(c))
            }
            DeployStep::HealthCheckColour { colour: c } => {
                format!("Health checks passed on {}", colour(c))
            }
            DeployStep::SwitchTraffic { colour: c } => format!("Traffic switched to {}", colour(c)),
            DeployStep::Decommission { colour: c } => {
                format!("Old environment ({}) decommissioned", colour(c))
            }
            DeployStep::CanaryWeight { percent } => {
                format!("Canary at {percent}% of traffic, health checks passed")
            }
            DeployStep::UpdateInstances { first, count, total } => {
                if *count == 1 {
                    format!(
                        "Instance {}/{total} drained, updated, health-checked and restored",
                        first + 1
                    )
                } else {
                    format!(
                        "Instances {}-{}/{total} drained, updated, health-checked and restored",
                        first + 1,
                        first + count
                    )
                }
            }
        }
    }

    /// The step as named before it is known to have succeeded.
    pub fn title(&self) -> String {
        match self {
            DeployStep::Backup => "Backup".into(),
            DeployStep::RunMigrations { kind } => format!("Database migrations ({kind})"),
            DeployStep::DeployInactive { colour } => {
                format!("Deploy to inactive environment ({colour:?})").to_lowercase()
            }
            DeployStep::HealthCheckColour { colour } => format!("Health check of {colour:?}").to_lowercase(),
            DeployStep::SwitchTraffic { colour } => format!("Switch traffic to {colour:?}").to_lowercase(),
            DeployStep::Decommission { colour } => format!("Decommission {colour:?}").to_lowercase(),
            DeployStep::CanaryWeight { percent } => format!("Canary at {percent}%"),
            DeployStep::UpdateInstances { first, count, total } => {
                if *count == 1 {
                    format!("Update of instance {}/{total}", first + 1)
                } else {
                    format!("Update of instances {}-{}/{total}", first + 1, first + count)
                }
            }
        }
    }

    /// Share of traffic on the new version once this step is done, if it changes.
    pub fn traffic_after(&self) -> Option<u8> {
        match self {
            DeployStep::SwitchTraffic { .. } => Some(100),
            DeployStep::CanaryWeight { percent } => Some(*percent),
            DeployStep::UpdateInstances { first, count, total } => {
                Some((((first + count) as u64 * 100) / (*total).max(1) as u64).min(100) as u8)
            }
            _ => None,
        }
    }
}

/// The steps of a production deployment, in order. `active` is the colour
/// serving traffic before a blue-green deployment.
pub fn plan(
    strategy: Strategy,
    settings: &Strategies,
    instances: u32,
    migrations: MigrationKind,
    active: Colour,
) -> Vec<DeployStep> {
    let mut steps = vec![DeployStep::Backup];
    if migrations != MigrationKind::None {
        steps.push(DeployStep::RunMigrations { kind: migrations });
    }
    match strategy {
        Strategy::BlueGreen => {
            let inactive = match active {
                Colour::Blue => Colour::Green,
                Colour::Green => Colour::Blue,
            };
            steps.push(DeployStep::DeployInactive { colour: inactive });
            for _ in 0..settings.blue_green.pre_switch_health_checks.max(1) {
                steps.push(DeployStep::HealthCheckColour { colour: inactive });
            }
            steps.push(DeployStep::SwitchTraffic { colour: inactive });
        }
        Strategy::Canary => {
            steps.extend(
                settings
                    .canary
                    .steps
                    .iter()
                    .map(|&percent| DeployStep::CanaryWeight { percent }),
            );
        }
        Strategy::Rolling => {
            let total = instances.max(1);
            let batch = settings.rolling.batch_size.max(1);
            let mut first = 0;
            while first < total {
                let count = batch.min(total - first);
                steps.push(DeployStep::UpdateInstances { first, count, total });
                first += count;
            }
        }
    }
    steps
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::Settings;

    #[test]
    fn canary_steps_follow_the_configured_percentages() {
        let s = Settings::builtin().strategies;
        let p = plan(Strategy::Canary, &s, 4, MigrationKind::None, Colour::Blue);
        let weights: Vec<u8> = p.iter().filter_map(|s| s.traffic_after()).collect();
        assert_eq!(weights, vec![5, 25, 50, 100]);
        assert_eq!(p[0], DeployStep::Backup);
    }

    #[test]
    fn blue_green_deploys_inactive_checks_then_switches() {
        let s = Settings::builtin().strategies;
        let p = plan(Strategy::BlueGreen, &s, 4, MigrationKind::Reversible, Colour::Blue);
        assert_eq!(
            p,
            vec![
                DeployStep::Backup,
                DeployStep::RunMigrations {
                    kind: MigrationKind::Reversible
                },
                DeployStep::DeployInactive { colour: Colour::Green },
                DeployStep::HealthCheckColour { colour: Colour::Green },
                DeployStep::SwitchTraffic { colour: Colour::Green },
            ]
        );
    }

    #[test]
    fn rolling_updates_one_instance_at_a_time() {
        let s = Settings::builtin().strategies;
        let p = plan(Strategy::Rolling, &s, 3, MigrationKind::None, Colour::Blue);
        assert_eq!(p.len(), 4);
        assert_eq!(
            p[3],
            DeployStep::UpdateInstances {
                first: 2,
                count: 1,
                total: 3
            }
        );
        assert_eq!(p[1].traffic_after(), Some(33));
        assert_eq!(p[3].traffic_after(), Some(100));
    }
}
