//! The pure domain of Stagecoach.
//!
//! Types, the stage transition table, the approval policy, the window
//! calendar, threshold evaluation, deployment plans, the deployment state
//! machine, report rendering and the DORA figures of the records. Nothing
//! here spawns, sleeps, reads a clock or touches a file or socket: time comes
//! in as an argument, effects go out as values.

pub mod approval;
pub mod checklist;
pub mod dora;
pub mod fleet;
pub mod machine;
pub mod record;
pub mod report;
pub mod settings;
pub mod strategy;
pub mod thresholds;
pub mod transitions;
pub mod types;
pub mod windows;

pub use machine::{Effect, Event, Machine, Output};
pub use record::{Fact, Record, Request};
pub use settings::Settings;
