//! Threshold evaluation of metric samples (seed: "Metrics to Watch").
//!
//! A sample is compared with the thresholds and the pre-deploy baseline and
//! yields, per metric, the action it calls for. A failed or empty read is
//! not a sample: it is *inconclusive* and is handled by the caller. A metric
//! the source does not measure (`None`) is not judged: its thresholds are
//! skipped, never compared with an invented value.

use serde::{Deserialize, Serialize};

use crate::settings::Thresholds;

/// One reading of a version's metrics.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MetricSample {
    /// Fraction of failed requests (0.01 = 1 %).
    pub error_rate: f64,
    pub latency_p99_ms: f64,
    /// Fractions of capacity; `None` when the source does not measure them
    /// (their thresholds are then not judged).
    #[serde(default)]
    pub cpu: Option<f64>,
    #[serde(default)]
    pub memory: Option<f64>,
    /// The reading came from the simulated world, not from a metrics source.
    #[serde(default)]
    pub simulated: bool,
}

impl MetricSample {
    /// The metrics this sample has no value for, whose thresholds are not judged.
    pub fn not_measured(&self) -> Vec<Metric> {
        let mut out = vec![];
        if self.cpu.is_none() {
            out.push(Metric::Cpu);
        }
        if self.memory.is_none() {
            out.push(Metric::Memory);
        }
        out
    }
}

/// The metric a finding is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    ErrorRate,
    LatencyP99,
    Cpu,
    Memory,
}

/// What a threshold breach calls for, mildest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertAction {
    Scale,
    Investigate,
    Rollback,
}

/// One metric over one threshold.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    pub metric: Metric,
    pub value: f64,
    pub threshold: f64,
    pub action: AlertAction,
}

/// Compares `sample` with the thresholds; latency thresholds are multiples
/// of `baseline.latency_p99_ms`. Returns at most one finding per metric, the
/// most severe.
pub fn evaluate(sample: &MetricSample, baseline: &MetricSample, t: &Thresholds) -> Vec<Finding> {
    let mut out = Vec::new();
    let mut check = |metric, value: f64, levels: &[(f64, AlertAction)]| {
        if let Some(&(threshold, action)) = levels.iter().find(|(limit, _)| value > *limit) {
            out.push(Finding {
                metric,
                value,
                threshold,
                action,
            });
        }
    };
    check(
        Metric::ErrorRate,
        sample.error_rate,
        &[
            (t.error_rate_rollback, AlertAction::Rollback),
            (t.error_rate_investigate, AlertAction::Investigate),
        ],
    );
    if baseline.latency_p99_ms > 0.0 {
        check(
            Metric::LatencyP99,
            sample.latency_p99_ms,
            &[
                (
                    baseline.latency_p99_ms * t.latency_p99_rollback_factor,
                    AlertAction::Rollback,
                ),
                (
                    baseline.latency_p99_ms * t.latency_p99_investigate_factor,
                    AlertAction::Investigate,
                ),
            ],
        );
    }
    if let Some(cpu) = sample.cpu {
        check(Metric::Cpu, cpu, &[(t.cpu_scale, AlertAction::Scale)]);
    }
    if let Some(memory) = sample.memory {
        check(Metric::Memory, memory, &[(t.memory_scale, AlertAction::Scale)]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::Settings;

    fn base() -> MetricSample {
        MetricSample {
            error_rate: 0.001,
            latency_p99_ms: 100.0,
            cpu: Some(0.4),
            memory: Some(0.5),
            simulated: false,
        }
    }

    fn check(sample: MetricSample, expected: &[(Metric, AlertAction)]) {
        let t = Settings::builtin().thresholds;
        let got: Vec<_> = evaluate(&sample, &base(), &t)
            .iter()
            .map(|f| (f.metric, f.action))
            .collect();
        assert_eq!(got, expected, "{sample:?}");
    }

    #[test]
    fn seed_thresholds() {
        check(base(), &[]);
        check(
            MetricSample {
                error_rate: 0.01,
                ..base()
            },
            &[],
        );
        check(
            MetricSample {
                error_rate: 0.011,
                ..base()
            },
            &[(Metric::ErrorRate, AlertAction::Investigate)],
        );
        check(
            MetricSample {
                error_rate: 0.051,
                ..base()
            },
            &[(Metric::ErrorRate, AlertAction::Rollback)],
        );
        check(
            MetricSample {
                latency_p99_ms: 200.0,
                ..base()
            },
            &[],
        );
        check(
            MetricSample {
                latency_p99_ms: 201.0,
                ..base()
            },
            &[(Metric::LatencyP99, AlertAction::Investigate)],
        );
        check(
            MetricSample {
                latency_p99_ms: 301.0,
                ..base()
            },
            &[(Metric::LatencyP99, AlertAction::Rollback)],
        );
        check(
            MetricSample {
                cpu: Some(0.81),
                ..base()
            },
            &[(Metric::Cpu, AlertAction::Scale)],
        );
        check(
            MetricSample {
                memory: Some(0.9),
                ..base()
            },
            &[(Metric::Memory, AlertAction::Scale)],
        );
    }

    #[test]
    fn a_metric_without_a_value_is_not_judged() {
        let unmeasured = MetricSample {
            cpu: None,
            memory: None,
            ..base()
        };
        check(unmeasured, &[]);
        assert_eq!(unmeasured.not_measured(), vec![Metric::Cpu, Metric::Memory]);
        assert!(base().not_measured().is_empty());
    }

    #[test]
    fn samples_journaled_before_optional_metrics_still_read() {
        let old = r#"{"error_rate":0.001,"latency_p99_ms":120.0,"cpu":0.4,"memory":0.5}"#;
        let s: MetricSample = serde_json::from_str(old).unwrap();
        assert_eq!((s.cpu, s.memory, s.simulated), (Some(0.4), Some(0.5), false));
    }

    #[test]
    fn the_finding_carries_the_value_and_threshold_seen() {
        let t = Settings::builtin().thresholds;
        let f = evaluate(
            &MetricSample {
                latency_p99_ms: 350.0,
                ..base()
            },
            &base(),
            &t,
        );
        assert_eq!(f[0].value, 350.0);
        assert_eq!(f[0].threshold, 300.0);
    }
}
