//! The pure parts of `stagecoach-example`: the deterministic failure schedule, the validation of the
//! settings that can be changed at run time, and the Prometheus text rendering of its metrics.

use std::fmt::Write as _;

pub mod server;

/// Upper bounds (seconds) of the request duration histogram; `+Inf` is implied.
pub const DURATION_BUCKETS: [f64; 9] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5];

/// The largest latency that can be configured: ten minutes.
pub const MAX_LATENCY_MS: u64 = 600_000;

/// The `Content-Type` of the Prometheus text exposition format 0.0.4.
pub const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

const PARTS: u64 = 1_000_000_000;

/// A share of requests to fail, between 0 and 1, held exactly in parts per billion so that the
/// schedule never drifts through floating-point rounding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FailRatio {
    ppb: u64,
}

impl FailRatio {
    pub const NONE: FailRatio = FailRatio { ppb: 0 };
    pub const ALL: FailRatio = FailRatio { ppb: PARTS };

    /// Parses a share such as `0.08`; anything that is not a number between 0 and 1 is refused.
    /// Precision beyond nine decimals is rounded away.
    pub fn parse(text: &str) -> Result<FailRatio, String> {
        let value: f64 = text
            .trim()
            .parse()
            .map_err(|_| format!("fail ratio `{text}` is not a number; give a share between 0 and 1, e.g. 0.08"))?;
        if !value.is_finite() || !(0.0..=1.0).contains(&value) {
            return Err(format!(
                "fail ratio `{text}` is out of range; give a share between 0 and 1, e.g. 0.08"
            ));
        }
        Ok(FailRatio {
            ppb: (value * PARTS as f64).round() as u64,
        })
    }

    pub fn as_f64(self) -> f64 {
        self.ppb as f64 / PARTS as f64
    }

    /// Whether request number `n` (counting from 1) is one of the failing ones: it is when the
    /// number of failures owed after `n` requests, floor(n × ratio), exceeds the number owed after
    /// `n - 1`. Any `n` consecutive requests from the start therefore fail exactly floor(n × ratio).
    pub fn fails(self, n: u64) -> bool {
        if n == 0 {
            return false;
        }
        let owed = |k: u64| u128::from(k) * u128::from(self.ppb) / u128::from(PARTS);
        owed(n) > owed(n - 1)
    }
}

/// Decides, request by request, which requests fail. Changing the ratio restarts the count, so the
/// new share holds exactly from that moment on.
#[derive(Debug, Clone)]
pub struct FailureSchedule {
    ratio: FailRatio,
    seen: u64,
}

impl FailureSchedule {
    pub fn new(ratio: FailRatio) -> FailureSchedule {
        FailureSchedule { ratio, seen: 0 }
    }

    pub fn ratio(&self) -> FailRatio {
        self.ratio
    }

    pub fn set_ratio(&mut self, ratio: FailRatio) {
        self.ratio = ratio;
        self.seen = 0;
    }

    /// Counts one more request and tells whether it must fail.
    pub fn next_fails(&mut self) -> bool {
        // Restarting the count on overflow keeps the schedule exact; it takes 2^64 requests.
        self.seen = self.seen.checked_add(1).unwrap_or(1);
        self.ratio.fails(self.seen)
    }
}

/// Parses a latency in whole milliseconds, 0 to [`MAX_LATENCY_MS`].
pub fn parse_latency_ms(text: &str) -> Result<u64, String> {
    let ms: u64 = text.trim().parse().map_err(|_| {
        format!("latency `{text}` is not a whole number of milliseconds; give e.g. 200 (0 to {MAX_LATENCY_MS})")
    })?;
    if ms > MAX_LATENCY_MS {
        return Err(format!(
            "latency `{text}` ms is too long; the most is {MAX_LATENCY_MS} ms"
        ));
    }
    Ok(ms)
}

/// Parses the health switch: `true` or `false`.
pub fn parse_health_ok(text: &str) -> Result<bool, String> {
    match text.trim() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(format!("health `{text}` is neither `true` nor `false`")),
    }
}

/// Counters and histogram of the requests to `/`.
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    ok: u64,
    failed: u64,
    /// Non-cumulative counts, one per bucket of [`DURATION_BUCKETS`]; slower requests only count in `+Inf`.
    buckets: [u64; DURATION_BUCKETS.len()],
    sum_seconds: f64,
    count: u64,
}

impl Metrics {
    /// Records one answered request to `/`.
    pub fn observe(&mut self, failed: bool, seconds: f64) {
        if failed {
            self.failed += 1;
        } else {
            self.ok += 1;
        }
        if let Some(i) = DURATION_BUCKETS.iter().position(|&le| seconds <= le) {
            self.buckets[i] += 1;
        }
        self.sum_seconds += seconds;
        self.count += 1;
    }

    /// Renders every metric in the Prometheus text exposition format 0.0.4.
    pub fn render(&self, version: &str, instance: &str) -> String {
        let labels = format!("version=\"{}\",replica=\"{}\"", escape(version), escape(instance));
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = self.write(&mut out, &labels, version);
        out
    }

    fn write(&self, out: &mut String, labels: &str, version: &str) -> std::fmt::Result {
        writeln!(
            out,
            "# HELP example_http_requests_total Requests to / answered, by HTTP status code."
        )?;
        writeln!(out, "# TYPE example_http_requests_total counter")?;
        writeln!(out, "example_http_requests_total{{{labels},code=\"200\"}} {}", self.ok)?;
        writeln!(
            out,
            "example_http_requests_total{{{labels},code=\"500\"}} {}",
            self.failed
        )?;

        let name = "example_http_request_duration_seconds";
        writeln!(
            out,
            "# HELP {name} Time taken to answer requests to /, configured latency included."
        )?;
        writeln!(out, "# TYPE {name} histogram")?;
        let mut cumulative = 0;
        for (le, n) in DURATION_BUCKETS.iter().zip(self.buckets) {
            cumulative += n;
            writeln!(out, "{name}_bucket{{{labels},le=\"{le}\"}} {cumulative}")?;
        }
        writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {}", self.count)?;
        writeln!(out, "{name}_sum{{{labels}}} {}", self.sum_seconds)?;
        writeln!(out, "{name}_count{{{labels}}} {}", self.count)?;

        writeln!(
            out,
            "# HELP example_up Whether the example service is up (always 1 while it answers)."
        )?;
        writeln!(out, "# TYPE example_up gauge")?;
        writeln!(out, "example_up 1")?;

        writeln!(
            out,
            "# HELP example_build_info The version of the example service that is running."
        )?;
        writeln!(out, "# TYPE example_build_info gauge")?;
        writeln!(out, "example_build_info{{version=\"{}\"}} 1", escape(version))
    }
}

/// Escapes a label value: backslash, double quote and line feed.
fn escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// The `stagecoach-example` binary, for other packages' tests: built once per
/// test binary by a nested `cargo build` into the calling test's own target
/// directory and profile (a no-op after `cargo test --workspace`, which builds
/// it). Binaries of another package are not exposed through
/// `CARGO_BIN_EXE_*`, hence the nested build.
pub fn built_binary() -> &'static std::path::Path {
    use std::path::{Path, PathBuf};
    use std::sync::OnceLock;
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| {
        // A test binary is <target>/<profile>/deps/<name>-<hash>.
        let exe = std::env::current_exe().expect("the test binary's path");
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("<target>/<profile>/deps")
            .to_path_buf();
        let target_dir = profile_dir.parent().expect("<target>");
        let mut build = std::process::Command::new(env!("CARGO"));
        build
            .args(["build", "-q", "-p", "example-service", "--bin", "stagecoach-example"])
            .env("CARGO_TARGET_DIR", target_dir)
            .current_dir(env!("CARGO_MANIFEST_DIR"));
        match profile_dir.file_name().and_then(|n| n.to_str()).unwrap_or("debug") {
            "debug" => {}
            "release" => {
                build.arg("--release");
            }
            other => {
                build.args(["--profile", other]);
            }
        }
        let status = build.status().expect("run cargo build for stagecoach-example");
        assert!(status.success(), "cargo build -p example-service failed: {status}");
        let binary = profile_dir.join("stagecoach-example");
        assert!(binary.is_file(), "{} was not built", binary.display());
        binary
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failures(ratio: FailRatio, from: u64, to: u64) -> usize {
        (from..=to).filter(|&n| ratio.fails(n)).count()
    }

    #[test]
    fn eight_percent_fails_exactly_eight_of_a_hundred() {
        let ratio = FailRatio::parse("0.08").unwrap();
        let failing: Vec<u64> = (1..=100).filter(|&n| ratio.fails(n)).collect();
        assert_eq!(failing, [13, 25, 38, 50, 63, 75, 88, 100]);
        assert_eq!(failures(ratio, 1, 1000), 80);
    }

    #[test]
    fn prefix_counts_are_exact_for_awkward_ratios() {
        for text in ["0.1", "0.3", "0.333333333", "0.07", "0.5", "0.99", "0.000000001"] {
            let ratio = FailRatio::parse(text).unwrap();
            for n in [1u64, 7, 10, 99, 100, 1000, 12345] {
                let expected = u128::from(n) * u128::from(ratio.ppb) / u128::from(PARTS);
                assert_eq!(failures(ratio, 1, n) as u128, expected, "ratio {text}, n {n}");
            }
        }
    }

    #[test]
    fn any_window_is_within_one_of_its_share() {
        let ratio = FailRatio::parse("0.3").unwrap();
        for start in 1..50 {
            // 0.3 × 10 is a whole number, so every window of ten holds exactly three failures.
            assert_eq!(failures(ratio, start, start + 9), 3, "window from {start}");
        }
    }

    #[test]
    fn none_and_all() {
        assert!((1..=1000).all(|n| !FailRatio::NONE.fails(n)));
        assert!((1..=1000).all(|n| FailRatio::ALL.fails(n)));
        assert_eq!(FailRatio::parse("1").unwrap(), FailRatio::ALL);
        assert_eq!(FailRatio::parse("0").unwrap(), FailRatio::NONE);
        assert!(!FailRatio::ALL.fails(0));
    }

    #[test]
    fn schedule_restarts_when_the_ratio_changes() {
        let mut schedule = FailureSchedule::new(FailRatio::parse("0.5").unwrap());
        assert!(!schedule.next_fails());
        schedule.set_ratio(FailRatio::parse("0.25").unwrap());
        let run: Vec<bool> = (0..8).map(|_| schedule.next_fails()).collect();
        assert_eq!(run, [false, false, false, true, false, false, false, true]);
        assert_eq!(schedule.ratio().as_f64(), 0.25);
    }

    #[test]
    fn bad_values_are_refused() {
        for text in ["", "abc", "-0.1", "1.5", "NaN", "inf", "0,08"] {
            assert!(FailRatio::parse(text).is_err(), "{text:?}");
        }
        assert_eq!(FailRatio::parse("0.08").unwrap().as_f64(), 0.08);
        assert_eq!(parse_latency_ms("200"), Ok(200));
        for text in ["", "-5", "1.5", "abc", "600001"] {
            assert!(parse_latency_ms(text).is_err(), "{text:?}");
        }
        assert_eq!(parse_health_ok("false"), Ok(false));
        assert_eq!(parse_health_ok("true"), Ok(true));
        assert!(parse_health_ok("maybe").is_err());
    }

    #[test]
    fn renders_the_text_exposition_format() {
        let mut metrics = Metrics::default();
        metrics.observe(false, 0.003);
        metrics.observe(false, 0.2);
        metrics.observe(true, 3.0);
        let text = metrics.render("1.2.0", "1");
        let l = "version=\"1.2.0\",replica=\"1\"";
        let expected = format!(
            "# HELP example_http_requests_total Requests to / answered, by HTTP status code.
# TYPE example_http_requests_total counter
example_http_requests_total{{{l},code=\"200\"}} 2
example_http_requests_total{{{l},code=\"500\"}} 1
# HELP example_http_request_duration_seconds Time taken to answer requests to /, configured latency included.
# TYPE example_http_request_duration_seconds histogram
example_http_request_duration_seconds_bucket{{{l},le=\"0.005\"}} 1
example_http_request_duration_seconds_bucket{{{l},le=\"0.01\"}} 1
example_http_request_duration_seconds_bucket{{{l},le=\"0.025\"}} 1
example_http_request_duration_seconds_bucket{{{l},le=\"0.05\"}} 1
example_http_request_duration_seconds_bucket{{{l},le=\"0.1\"}} 1
example_http_request_duration_seconds_bucket{{{l},le=\"0.25\"}} 2
example_http_request_duration_seconds_bucket{{{l},le=\"0.5\"}} 2
example_http_request_duration_seconds_bucket{{{l},le=\"1\"}} 2
example_http_request_duration_seconds_bucket{{{l},le=\"2.5\"}} 2
example_http_request_duration_seconds_bucket{{{l},le=\"+Inf\"}} 3
example_http_request_duration_seconds_sum{{{l}}} 3.203
example_http_request_duration_seconds_count{{{l}}} 3
# HELP example_up Whether the example service is up (always 1 while it answers).
# TYPE example_up gauge
example_up 1
# HELP example_build_info The version of the example service that is running.
# TYPE example_build_info gauge
example_build_info{{version=\"1.2.0\"}} 1
"
        );
        assert_eq!(text, expected);
    }

    #[test]
    fn escapes_label_values() {
        let text = Metrics::default().render("a\"b\\c\nd", "1");
        assert!(
            text.contains("example_build_info{version=\"a\\\"b\\\\c\\nd\"} 1\n"),
            "{text}"
        );
    }
}
