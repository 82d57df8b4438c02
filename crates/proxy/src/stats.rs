//! Per-version request counts, errors and latencies, and their Prometheus text rendering.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use serde::Serialize;

/// Upper bounds (seconds) of the latency histogram buckets; `+Inf` is implied.
pub const LATENCY_BUCKETS: [f64; 9] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5];

/// The `Content-Type` of the Prometheus text exposition format 0.0.4.
pub const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The status code counted when the backend could not be reached (the client gets a 502 too).
pub const UPSTREAM_FAILURE_CODE: u16 = 502;

/// What one version has served since the proxy started.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct VersionStats {
    /// Requests routed to the version and answered (by the backend, or with 502 when it could not be reached).
    pub requests: u64,
    /// Requests answered with a 5xx status, including backend connection failures.
    pub errors: u64,
    /// Requests by the status code the client got.
    pub codes: BTreeMap<u16, u64>,
    /// Time from routing a request to having the backend's response head (or its failure).
    pub latency: Histogram,
}

/// A latency histogram in Prometheus' shape.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct Histogram {
    /// Cumulative counts: `buckets[i]` is the number of observations `<= LATENCY_BUCKETS[i]`
    /// (the `+Inf` bucket is `count`).
    pub buckets: [u64; LATENCY_BUCKETS.len()],
    pub sum_seconds: f64,
    pub count: u64,
}

impl VersionStats {
    pub(crate) fn observe(&mut self, code: u16, seconds: f64) {
        self.requests += 1;
        if code >= 500 {
            self.errors += 1;
        }
        *self.codes.entry(code).or_default() += 1;
        for (bucket, &le) in self.latency.buckets.iter_mut().zip(LATENCY_BUCKETS.iter()) {
            if seconds <= le {
                *bucket += 1;
            }
        }
        self.latency.sum_seconds += seconds;
        self.latency.count += 1;
    }
}

/// Renders the proxy's metrics in the Prometheus text exposition format 0.0.4.
pub(crate) fn render(stats: &BTreeMap<String, VersionStats>, weights: &BTreeMap<String, u32>) -> String {
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = write(&mut out, stats, weights);
    out
}

fn write(
    out: &mut String,
    stats: &BTreeMap<String, VersionStats>,
    weights: &BTreeMap<String, u32>,
) -> std::fmt::Result {
    let name = "stagecoach_proxy_requests_total";
    writeln!(
        out,
        "# HELP {name} Requests answered through the proxy, by version and HTTP status code (502 when the backend \
         could not be reached)."
    )?;
    writeln!(out, "# TYPE {name} counter")?;
    for (version, s) in stats {
        let version = escape(version);
        for (code, n) in &s.codes {
            writeln!(out, "{name}{{version=\"{version}\",code=\"{code}\"}} {n}")?;
        }
    }

    let name = "stagecoach_proxy_request_duration_seconds";
    writeln!(
        out,
        "# HELP {name} Time from routing a request to the backend's response head, by version."
    )?;
    writeln!(out, "# TYPE {name} histogram")?;
    for (version, s) in stats {
        let version = escape(version);
        let h = &s.latency;
        for (le, n) in LATENCY_BUCKETS.iter().zip(h.buckets) {
            writeln!(out, "{name}_bucket{{version=\"{version}\",le=\"{le}\"}} {n}")?;
        }
        writeln!(out, "{name}_bucket{{version=\"{version}\",le=\"+Inf\"}} {}", h.count)?;
        writeln!(out, "{name}_sum{{version=\"{version}\"}} {}", h.sum_seconds)?;
        writeln!(out, "{name}_count{{version=\"{version}\"}} {}", h.count)?;
    }

    let name = "stagecoach_proxy_weight";
    writeln!(
        out,
        "# HELP {name} Share of new requests (percent) the proxy routes to each version; 0 for a version that \
         has served but is no longer in the split."
    )?;
    writeln!(out, "# TYPE {name} gauge")?;
    let versions: BTreeSet<&String> = weights.keys().chain(stats.keys()).collect();
    for version in versions {
        let weight = weights.get(version).copied().unwrap_or(0);
        writeln!(out, "{name}{{version=\"{}\"}} {weight}", escape(version))?;
    }
    Ok(())
}

/// Escapes a label value: backslash, double quote and line feed.
fn escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_the_text_exposition_format() {
        let mut stats = BTreeMap::new();
        let v1: &mut VersionStats = stats.entry("1.0.0".to_string()).or_default();
        v1.observe(200, 0.003);
        v1.observe(200, 0.2);
        v1.observe(502, 3.0);
        stats.insert("2.0.0".to_string(), VersionStats::default());
        let weights = BTreeMap::from([("1.0.0".to_string(), 90), ("2.0.0".to_string(), 10)]);
        assert_eq!(stats["1.0.0"].requests, 3);
        assert_eq!(stats["1.0.0"].errors, 1);

        let text = render(&stats, &weights);
        let d = "stagecoach_proxy_request_duration_seconds";
        let expected = format!(
            "# HELP stagecoach_proxy_requests_total Requests answered through the proxy, by version and HTTP status \
             code (502 when the backend could not be reached).
# TYPE stagecoach_proxy_requests_total counter
stagecoach_proxy_requests_total{{version=\"1.0.0\",code=\"200\"}} 2
stagecoach_proxy_requests_total{{version=\"1.0.0\",code=\"502\"}} 1
# HELP {d} Time from routing a request to the backend's response head, by version.
# TYPE {d} histogram
{d}_bucket{{version=\"1.0.0\",le=\"0.005\"}} 1
{d}_bucket{{version=\"1.0.0\",le=\"0.01\"}} 1
{d}_bucket{{version=\"1.0.0\",le=\"0.025\"}} 1
{d}_bucket{{version=\"1.0.0\",le=\"0.05\"}} 1
{d}_bucket{{version=\"1.0.0\",le=\"0.1\"}} 1
{d}_bucket{{version=\"1.0.0\",le=\"0.25\"}} 2
{d}_bucket{{version=\"1.0.0\",le=\"0.5\"}} 2
{d}_bucket{{version=\"1.0.0\",le=\"1\"}} 2
{d}_bucket{{version=\"1.0.0\",le=\"2.5\"}} 2
{d}_bucket{{version=\"1.0.0\",le=\"+Inf\"}} 3
{d}_sum{{version=\"1.0.0\"}} 3.203
{d}_count{{version=\"1.0.0\"}} 3
{d}_bucket{{version=\"2.0.0\",le=\"0.005\"}} 0
{d}_bucket{{version=\"2.0.0\",le=\"0.01\"}} 0
{d}_bucket{{version=\"2.0.0\",le=\"0.025\"}} 0
{d}_bucket{{version=\"2.0.0\",le=\"0.05\"}} 0
{d}_bucket{{version=\"2.0.0\",le=\"0.1\"}} 0
{d}_bucket{{version=\"2.0.0\",le=\"0.25\"}} 0
{d}_bucket{{version=\"2.0.0\",le=\"0.5\"}} 0
{d}_bucket{{version=\"2.0.0\",le=\"1\"}} 0
{d}_bucket{{version=\"2.0.0\",le=\"2.5\"}} 0
{d}_bucket{{version=\"2.0.0\",le=\"+Inf\"}} 0
{d}_sum{{version=\"2.0.0\"}} 0
{d}_count{{version=\"2.0.0\"}} 0
# HELP stagecoach_proxy_weight Share of new requests (percent) the proxy routes to each version; 0 for a \
             version that has served but is no longer in the split.
# TYPE stagecoach_proxy_weight gauge
stagecoach_proxy_weight{{version=\"1.0.0\"}} 90
stagecoach_proxy_weight{{version=\"2.0.0\"}} 10
"
        );
        assert_eq!(text, expected);
    }

    #[test]
    fn escapes_label_values() {
        let weights = BTreeMap::from([("a\"b\\c".to_string(), 100)]);
        let stats = BTreeMap::from([("old".to_string(), VersionStats::default())]);
        let text = render(&stats, &weights);
        assert!(
            text.contains("stagecoach_proxy_weight{version=\"a\\\"b\\\\c\"} 100\n"),
            "{text}"
        );
        assert!(text.contains("stagecoach_proxy_weight{version=\"old\"} 0\n"), "{text}");
    }
}
