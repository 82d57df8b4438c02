//! The command provider, running real shell commands.

use probes::{CommandConfig, MetricsConfig, MetricsReader};
use workflow::thresholds::MetricSample;

use crate::common::vars;

fn sh(script: &str) -> MetricsConfig {
    MetricsConfig::Command(CommandConfig::new(["sh", "-c", script]))
}

#[tokio::test]
async fn a_command_printing_json_gives_a_sample() {
    let reader = MetricsReader::new();
    let cfg = sh(r#"echo "reading metrics of $STAGECOACH_SERVICE $STAGECOACH_VERSION" >&2
echo '{"error_rate":0.01,"latency_p99_ms":120.5,"cpu":0.3,"memory":0.45}'"#);
    cfg.validate("services.web.metrics").unwrap();
    let sample = reader
        .read(&cfg, &vars(&[("version", "2.0.0"), ("service", "web")]))
        .await
        .unwrap();
    assert_eq!(
        sample,
        MetricSample {
            error_rate: 0.01,
            latency_p99_ms: 120.5,
            cpu: Some(0.3),
            memory: Some(0.45),
            simulated: false,
        }
    );
}

#[tokio::test]
async fn the_placeholder_values_reach_the_command_as_environment() {
    let reader = MetricsReader::new();
    let cfg = sh(
        r#"printf '{"error_rate":0,"latency_p99_ms":%s,"cpu":0.%s,"memory":0}\n' "$STAGECOACH_PORT" "$STAGECOACH_INSTANCE""#,
    );
    let sample = reader
        .read(&cfg, &vars(&[("port", "250"), ("instance", "7")]))
        .await
        .unwrap();
    assert_eq!((sample.latency_p99_ms, sample.cpu), (250.0, Some(0.7)));
}

#[tokio::test]
async fn bad_output_and_failures_name_the_command() {
    let reader = MetricsReader::new();
    let none = vars(&[]);
    let err = reader.read(&sh("echo not json"), &none).await.unwrap_err();
    assert!(
        err.starts_with("metrics command `sh -c echo not json`: cannot read its output as {\"error_rate\":…")
            && err.ends_with("its last line is \"not json\""),
        "{err}"
    );

    let err = reader
        .read(
            &sh(r#"echo '{"error_rate":null,"latency_p99_ms":1,"cpu":0,"memory":0}'"#),
            &none,
        )
        .await
        .unwrap_err();
    assert!(err.contains("invalid type: null, expected f64"), "{err}");

    let err = reader
        .read(
            &sh(r#"echo '{"error_rate":12,"latency_p99_ms":1,"cpu":0,"memory":0}'"#),
            &none,
        )
        .await
        .unwrap_err();
    assert!(err.contains("error_rate is 12, above 1"), "{err}");

    let err = reader.read(&sh("echo boom >&2; exit 3"), &none).await.unwrap_err();
    assert!(
        err.starts_with("metrics command `sh -c echo boom >&2; exit 3` failed: exit 3 in ") && err.ends_with(": boom"),
        "{err}"
    );

    let missing = MetricsConfig::Command(CommandConfig::new(["/nonexistent/metrics.sh"]));
    let err = reader.read(&missing, &none).await.unwrap_err();
    assert!(
        err.starts_with("metrics command `/nonexistent/metrics.sh`: cannot run `/nonexistent/metrics.sh`")
            && err.contains("program not found"),
        "{err}"
    );

    let slow = MetricsConfig::Command(CommandConfig {
        timeout_seconds: 0.3,
        ..CommandConfig::new(["sleep", "5"])
    });
    let err = reader.read(&slow, &none).await.unwrap_err();
    assert!(err.contains("timed out after"), "{err}");
}
