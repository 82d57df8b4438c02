//! CVSS v3.x base scores.
//!
//! Implements the base score equations of the CVSS v3.1 specification (section 7.1, with the
//! `Roundup` of Appendix A). CVSS v3.0 vectors are scored with the same equations: the two
//! versions differ only in how `Roundup` treated floating-point noise, which v3.1 fixed.
//! Temporal and environmental metrics are accepted and ignored: only the base score is
//! computed. CVSS v2 and v4.0 vectors are rejected with [`CvssError::UnsupportedVersion`].

use std::fmt;

/// Why a CVSS vector could not be scored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CvssError {
    /// The vector is for a CVSS version other than 3.0 or 3.1 (or has no `CVSS:` prefix).
    #[error("unsupported CVSS version in `{0}` (only CVSS:3.0 and CVSS:3.1 are scored)")]
    UnsupportedVersion(String),
    /// A `metric:value` part is malformed, unknown, repeated or has an invalid value.
    #[error("invalid CVSS metric `{0}`")]
    InvalidMetric(String),
    /// A base metric is missing.
    #[error("CVSS base metric {0} is missing")]
    MissingMetric(&'static str),
}

/// The qualitative severity rating of a CVSS v3 score (specification section 5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// 0.0
    None,
    /// 0.1 – 3.9
    Low,
    /// 4.0 – 6.9
    Medium,
    /// 7.0 – 8.9
    High,
    /// 9.0 – 10.0
    Critical,
}

impl Severity {
    /// The rating of `score`.
    pub fn of(score: f64) -> Severity {
        if score >= 9.0 {
            Severity::Critical
        } else if score >= 7.0 {
            Severity::High
        } else if score >= 4.0 {
            Severity::Medium
        } else if score > 0.0 {
            Severity::Low
        } else {
            Severity::None
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::None => "none",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        })
    }
}

const BASE_METRICS: [&str; 8] = ["AV", "AC", "PR", "UI", "S", "C", "I", "A"];
const OTHER_METRICS: [&str; 14] = [
    "E", "RL", "RC", "CR", "IR", "AR", "MAV", "MAC", "MPR", "MUI", "MS", "MC", "MI", "MA",
];

/// The CVSS v3 base score (0.0 – 10.0, one decimal) of a vector string such as
/// `CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H` (9.8).
pub fn base_score(vector: &str) -> Result<f64, CvssError> {
    let vector = vector.trim();
    let mut parts = vector.split('/');
    let prefix = parts.next().unwrap_or_default();
    if prefix != "CVSS:3.0" && prefix != "CVSS:3.1" {
        return Err(CvssError::UnsupportedVersion(vector.to_owned()));
    }
    let mut base: [Option<&str>; 8] = [None; 8];
    let mut seen_other: Vec<&str> = Vec::new();
    for part in parts {
        let invalid = || CvssError::InvalidMetric(part.to_owned());
        let (metric, value) = part.split_once(':').ok_or_else(invalid)?;
        if value.is_empty() {
            return Err(invalid());
        }
        if let Some(slot) = BASE_METRICS.iter().position(|m| *m == metric) {
            if base[slot].replace(value).is_some() {
                return Err(invalid());
            }
        } else if OTHER_METRICS.contains(&metric) {
            if seen_other.contains(&metric) {
                return Err(invalid());
            }
            seen_other.push(metric);
        } else {
            return Err(invalid());
        }
    }
    let get = |slot: usize| base[slot].ok_or(CvssError::MissingMetric(BASE_METRICS[slot]));
    let bad = |slot: usize, value: &str| CvssError::InvalidMetric(format!("{}:{value}", BASE_METRICS[slot]));

    let scope_changed = match get(4)? {
        "U" => false,
        "C" => true,
        other => return Err(bad(4, other)),
    };
    let attack_vector = match get(0)? {
        "N" => 0.85,
        "A" => 0.62,
        "L" => 0.55,
        "P" => 0.2,
        other => return Err(bad(0, other)),
    };
    let attack_complexity = match get(1)? {
        "L" => 0.77,
        "H" => 0.44,
        other => return Err(bad(1, other)),
    };
    let privileges_required = match (get(2)?, scope_changed) {
        ("N", _) => 0.85,
        ("L", false) => 0.62,
        ("L", true) => 0.68,
        ("H", false) => 0.27,
        ("H", true) => 0.5,
        (other, _) => return Err(bad(2, other)),
    };
    let user_interaction = match get(3)? {
        "N" => 0.85,
        "R" => 0.62,
        other => return Err(bad(3, other)),
    };
    let cia = |slot: usize| -> Result<f64, CvssError> {
        match get(slot)? {
            "H" => Ok(0.56),
            "L" => Ok(0.22),
            "N" => Ok(0.0),
            other => Err(bad(slot, other)),
        }
    };
    let (confidentiality, integrity, availability) = (cia(5)?, cia(6)?, cia(7)?);

    let iss = 1.0 - (1.0 - confidentiality) * (1.0 - integrity) * (1.0 - availability);
    let impact = if scope_changed {
        7.52 * (iss - 0.029) - 3.25 * (iss - 0.02).powi(15)
    } else {
        6.42 * iss
    };
    let exploitability = 8.22 * attack_vector * attack_complexity * privileges_required * user_interaction;
    if impact <= 0.0 {
        return Ok(0.0);
    }
    let raw = if scope_changed {
        1.08 * (impact + exploitability)
    } else {
        impact + exploitability
    };
    Ok(roundup(raw.min(10.0)))
}

/// The smallest number, to one decimal place, that is equal to or higher than `value`
/// (CVSS v3.1 Appendix A, which avoids floating-point artefacts such as 4.000000000000001
/// rounding up to 4.1).
fn roundup(value: f64) -> f64 {
    // Scores are at most 10.0 here, so the conversion cannot overflow.
    let int_input = (value * 100_000.0).round() as i64;
    if int_input % 10_000 == 0 {
        int_input as f64 / 100_000.0
    } else {
        ((int_input / 10_000) + 1) as f64 / 10.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundup_follows_the_specification_examples() {
        assert_eq!(roundup(4.02), 4.1);
        assert_eq!(roundup(4.00), 4.0);
        assert_eq!(roundup(4.000_000_000_000_001), 4.0);
    }

    #[test]
    fn severity_boundaries() {
        assert_eq!(Severity::of(0.0), Severity::None);
        assert_eq!(Severity::of(0.1), Severity::Low);
        assert_eq!(Severity::of(6.9), Severity::Medium);
        assert_eq!(Severity::of(7.0), Severity::High);
        assert_eq!(Severity::of(9.0), Severity::Critical);
    }
}
