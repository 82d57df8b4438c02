//! The stage transition table.
//!
//! A deployment moves through the stages its type runs, in order; DEPLOY
//! and MONITOR may also move to ROLLBACK when a trigger fires. Anything
//! else is an [`IllegalTransition`] and never happens.

use serde::{Deserialize, Serialize};

use crate::types::Stage;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[error("illegal stage transition from {from} to {to}", from = .from.map(|s| s.title()).unwrap_or("SUBMITTED"), to = .to.title())]
pub struct IllegalTransition {
    pub from: Option<Stage>,
    pub to: Stage,
}

/// Whether a deployment whose type runs `stages` may go from `from`
/// (`None`: just submitted) to `to`.
pub fn check(stages: &[Stage], from: Option<Stage>, to: Stage) -> Result<(), IllegalTransition> {
    let err = Err(IllegalTransition { from, to });
    match from {
        None => {
            if stages.first() == Some(&to) {
                Ok(())
            } else {
                err
            }
        }
        Some(from) => {
            let pos = stages.iter().position(|s| *s == from);
            let next = pos.and_then(|p| stages.get(p + 1));
            if next == Some(&to) {
                return Ok(());
            }
            if to == Stage::Rollback && matches!(from, Stage::Deploy | Stage::Monitor) && pos.is_some() {
                return Ok(());
            }
            err
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Stage::*;

    const STANDARD: &[Stage] = &[Prepare, Staging, Validate, Approve, Deploy, Monitor];
    const ROLLBACK: &[Stage] = &[Approve, Rollback];

    #[test]
    fn the_table() {
        assert!(check(STANDARD, None, Prepare).is_ok());
        assert!(check(STANDARD, None, Deploy).is_err());
        assert!(check(STANDARD, Some(Prepare), Staging).is_ok());
        assert!(check(STANDARD, Some(Prepare), Deploy).is_err());
        assert!(check(STANDARD, Some(Validate), Approve).is_ok());
        assert!(check(STANDARD, Some(Approve), Monitor).is_err());
        assert!(check(STANDARD, Some(Deploy), Rollback).is_ok());
        assert!(check(STANDARD, Some(Monitor), Rollback).is_ok());
        assert!(check(STANDARD, Some(Approve), Rollback).is_err());
        assert!(check(STANDARD, Some(Monitor), Prepare).is_err());
        assert!(check(STANDARD, Some(Rollback), Monitor).is_err());
        assert!(check(ROLLBACK, None, Approve).is_ok());
        assert!(check(ROLLBACK, Some(Approve), Rollback).is_ok());
        assert!(check(ROLLBACK, None, Prepare).is_err());
    }

    #[test]
    fn the_error_names_both_stages() {
        let e = check(STANDARD, Some(Prepare), Deploy).unwrap_err();
        assert_eq!(e.to_string(), "illegal stage transition from PREPARE to DEPLOY");
    }
}
