//! What runs in production, per service: the current and the previous
//! version and the active blue-green colour, as the deployments left them.
//!
//! An implementation of [`crate::ports::Environments`] keeps one
//! [`ProductionState`] and tells it what its production steps and rollbacks
//! did; [`ProductionState::production`] is then its answer to "what runs
//! now". The daemon seeds it from the journal at start; the simulator from
//! its scenario.

use std::collections::BTreeMap;
use std::sync::Mutex;

use workflow::machine::Production;
use workflow::strategy::{Colour, DeployStep};
use workflow::types::{ServiceName, Version};

use crate::ports::Target;

#[derive(Debug, Clone, PartialEq, Eq)]
struct Service {
    current: Option<Version>,
    previous: Option<Version>,
    colour: Colour,
}

/// Which version runs where, per service.
#[derive(Debug)]
pub struct ProductionState {
    /// What a service nobody has told us about runs.
    initial: Service,
    services: Mutex<BTreeMap<ServiceName, Service>>,
}

impl Default for ProductionState {
    /// Nothing runs anywhere yet.
    fn default() -> Self {
        ProductionState::new(None, None)
    }
}

impl ProductionState {
    /// Every service runs `current` (after `previous`) on blue until told otherwise.
    pub fn new(current: Option<Version>, previous: Option<Version>) -> ProductionState {
        ProductionState {
            initial: Service {
                current,
                previous,
                colour: Colour::Blue,
            },
            services: Mutex::new(BTreeMap::new()),
        }
    }

    /// What runs in `service`'s production now.
    pub fn production(&self, service: &ServiceName) -> Production {
        let s = self
            .services
            .lock()
            .expect("production lock")
            .get(service)
            .cloned()
            .unwrap_or_else(|| self.initial.clone());
        Production {
            current_version: s.current,
            previous_version: s.previous,
            active_colour: s.colour,
            observed: None,
        }
    }

    /// Sets `service`'s current and previous versions (its colour stays).
    pub fn set(&self, service: &ServiceName, current: Option<Version>, previous: Option<Version>) {
        self.update(service, |s| {
            s.current = current;
            s.previous = previous;
        });
    }

    /// A production step of `target` succeeded. The step that puts the new
    /// version in front of all traffic (canary at 100 %, the blue-green
    /// switch, the last batch of a rolling update) makes it current; the
    /// switch also makes its colour the active one.
    pub fn step_succeeded(&self, target: &Target, step: &DeployStep) {
        let promoted = match step {
            DeployStep::UpdateInstances { first, count, total } => first + count >= *total,
            DeployStep::SwitchTraffic { colour } => {
                let colour = *colour;
                self.update(&target.service, |s| s.colour = colour);
                true
            }
            DeployStep::CanaryWeight { percent: 100 } => true,
            _ => false,
        };
        if promoted {
            let version = target.version.clone();
            self.update(&target.service, |s| {
                s.previous = s.current.take();
                s.current = version;
            });
        }
    }

    /// A rollback of `service` restored `restore` (`None`: the new version was removed).
    pub fn rolled_back(&self, service: &ServiceName, restore: Option<Version>) {
        self.update(service, |s| s.current = restore);
    }

    fn update(&self, service: &ServiceName, f: impl FnOnce(&mut Service)) {
        let mut all = self.services.lock().expect("production lock");
        f(all.entry(service.clone()).or_insert_with(|| self.initial.clone()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use workflow::types::{DeploymentId, DeploymentType, Strategy};

    fn v(s: &str) -> Version {
        Version::parse(s).unwrap()
    }

    fn target(version: &str) -> Target {
        Target {
            id: DeploymentId(1),
            service: ServiceName::parse("web").unwrap(),
            version: Some(v(version)),
            previous_version: Some(v("1.0.0")),
            kind: DeploymentType::Standard,
            strategy: Strategy::Canary,
            submitted_by: "dana".into(),
            attempt: 1,
        }
    }

    #[test]
    fn only_the_step_that_takes_all_traffic_promotes() {
        let state = ProductionState::new(Some(v("1.0.0")), None);
        let t = target("2.0.0");
        for step in [
            DeployStep::Backup,
            DeployStep::CanaryWeight { percent: 50 },
            DeployStep::UpdateInstances {
                first: 0,
                count: 2,
                total: 4,
            },
            DeployStep::DeployInactive { colour: Colour::Green },
        ] {
            state.step_succeeded(&t, &step);
            assert_eq!(
                state.production(&t.service).current_version,
                Some(v("1.0.0")),
                "{step:?}"
            );
        }
        state.step_succeeded(&t, &DeployStep::CanaryWeight { percent: 100 });
        let p = state.production(&t.service);
        assert_eq!(
            (p.current_version, p.previous_version),
            (Some(v("2.0.0")), Some(v("1.0.0")))
        );
    }

    #[test]
    fn the_blue_green_switch_promotes_and_changes_the_colour() {
        let state = ProductionState::default();
        let t = target("2.0.0");
        state.step_succeeded(&t, &DeployStep::SwitchTraffic { colour: Colour::Green });
        let p = state.production(&t.service);
        assert_eq!(p.active_colour, Colour::Green);
        assert_eq!((p.current_version, p.previous_version), (Some(v("2.0.0")), None));
        state.step_succeeded(
            &target("3.0.0"),
            &DeployStep::UpdateInstances {
                first: 2,
                count: 2,
                total: 4,
            },
        );
        assert_eq!(state.production(&t.service).current_version, Some(v("3.0.0")));
    }

    #[test]
    fn a_rollback_restores_the_current_version_and_seeding_keeps_the_colour() {
        let state = ProductionState::default();
        let web = ServiceName::parse("web").unwrap();
        state.step_succeeded(&target("2.0.0"), &DeployStep::SwitchTraffic { colour: Colour::Green });
        state.set(&web, Some(v("2.0.0")), Some(v("1.9.0")));
        state.rolled_back(&web, Some(v("1.9.0")));
        let p = state.production(&web);
        assert_eq!(p.current_version, Some(v("1.9.0")));
        assert_eq!(p.previous_version, Some(v("1.9.0")));
        assert_eq!(p.active_colour, Colour::Green);
        // Another service is untouched.
        assert_eq!(
            state.production(&ServiceName::parse("api").unwrap()).current_version,
            None
        );
    }
}
