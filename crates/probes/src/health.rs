//! HTTP health checks.
//!
//! Configured per service and environment in `agents.toml`:
//!
//! ```toml
//! [services.web.health.production]
//! url = "http://127.0.0.1:{port}/health"   # {instance}, {port}, {version}, {service}, {environment}
//! expect_status = 200                      # default 200
//! body_contains = "\"version\":\"{version}\""  # optional; placeholders too
//! timeout_seconds = 5.0                    # per try, default 5
//! retries = 3                              # tries after the first one, default 3
//! backoff_seconds = 0.5                    # wait after the first failed try, doubled each time, at most 10 s
//! ```
//!
//! [`check`] sends `GET url` until a try succeeds or `retries + 1` tries have failed. A try succeeds when
//! the answer has status `expect_status` and, if configured, a body containing `body_contains`. Redirects are
//! followed as the given [`reqwest::Client`] does.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::{http, vars};

/// The longest wait between two tries.
pub const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// The most `retries` a check may configure.
pub const MAX_RETRIES: u32 = 100;
/// Bodies longer than this fail the try when `body_contains` is set (1 MiB).
pub const MAX_BODY_BYTES: usize = 1 << 20;

fn default_expect_status() -> u16 {
    200
}
fn default_timeout() -> f64 {
    5.0
}
fn default_retries() -> u32 {
    3
}
fn default_backoff() -> f64 {
    0.5
}

/// One configured health check, as written under `[services.NAME.health.ENV]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthCheck {
    /// `http://` URL; may contain `{instance}`, `{port}`, `{version}`, `{service}` and `{environment}`.
    pub url: String,
    /// The status a healthy answer has. Default 200.
    #[serde(default = "default_expect_status")]
    pub expect_status: u16,
    /// Text a healthy answer's body contains, when set; may use the placeholders too (e.g.
    /// `"\"version\":\"{version}\""` to see that the new version answers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_contains: Option<String>,
    /// Seconds one try may take, body included. Default 5.
    #[serde(default = "default_timeout")]
    pub timeout_seconds: f64,
    /// Tries after the first failed one. Default 3.
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// Wait after the first failed try; doubled after each further one, at most [`MAX_BACKOFF`]. Default 0.5.
    #[serde(default = "default_backoff")]
    pub backoff_seconds: f64,
}

impl HealthCheck {
    /// A check of `url` with every other setting at its default.
    pub fn new(url: impl Into<String>) -> HealthCheck {
        HealthCheck {
            url: url.into(),
            expect_status: default_expect_status(),
            body_contains: None,
            timeout_seconds: default_timeout(),
            retries: default_retries(),
            backoff_seconds: default_backoff(),
        }
    }

    /// Checks the settings without sending anything. `path` is where the check lives in the configuration
    /// (e.g. `services.web.health.production`); every message starts with it.
    pub fn validate(&self, path: &str) -> Result<(), String> {
        http::check_url(&self.url, &format!("{path}.url"))?;
        if !(100..=599).contains(&self.expect_status) {
            return Err(format!(
                "{path}.expect_status must be an HTTP status from 100 to 599 (got {})",
                self.expect_status
            ));
        }
        if let Some(needle) = &self.body_contains {
            if needle.is_empty() {
                return Err(format!("{path}.body_contains is empty (omit it to accept any body)"));
            }
            vars::check_placeholders(needle, &format!("{path}.body_contains"))?;
        }
        http::check_seconds(self.timeout_seconds, false, &format!("{path}.timeout_seconds"))?;
        if self.retries > MAX_RETRIES {
            return Err(format!(
                "{path}.retries must be at most {MAX_RETRIES} (got {})",
                self.retries
            ));
        }
        if !(self.backoff_seconds.is_finite() && (0.0..=MAX_BACKOFF.as_secs_f64()).contains(&self.backoff_seconds)) {
            return Err(format!(
                "{path}.backoff_seconds must be a number of seconds from 0 to {} (got {})",
                MAX_BACKOFF.as_secs(),
                self.backoff_seconds
            ));
        }
        Ok(())
    }

    /// The wait after the `failed`-th failed try (1-based): `backoff_seconds × 2^(failed-1)`, at most
    /// [`MAX_BACKOFF`].
    pub fn backoff_after(&self, failed: u32) -> Duration {
        let factor = 2f64.powi(i32::try_from(failed.saturating_sub(1)).unwrap_or(i32::MAX).min(64));
        http::seconds(self.backoff_seconds * factor).min(MAX_BACKOFF)
    }
}

/// The result of a health check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthOutcome {
    pub ok: bool,
    /// Tries made (0 when the URL could not even be built).
    pub attempts: u32,
    /// One line for records and logs, e.g. `200 OK in 12 ms`, `GET http://…: connection refused (4 attempts)`,
    /// `GET http://…: expected 200, got 503 Service Unavailable (4 attempts)`.
    pub detail: String,
}

/// Runs `hc` with its placeholders filled in from `vars`. Never fails: a failed check is an outcome with
/// `ok: false` whose `detail` says why (the last try's reason).
pub async fn check(client: &reqwest::Client, hc: &HealthCheck, vars: &BTreeMap<String, String>) -> HealthOutcome {
    let filled = http::fill(&hc.url, vars, "health check url").and_then(|url| {
        let needle = match &hc.body_contains {
            Some(needle) => Some(http::fill(needle, vars, "health check body_contains")?),
            None => None,
        };
        Ok((url, needle))
    });
    let (url, needle) = match filled {
        Ok(filled) => filled,
        Err(detail) => {
            return HealthOutcome {
                ok: false,
                attempts: 0,
                detail,
            }
        }
    };
    let tries = hc.retries.min(MAX_RETRIES).saturating_add(1);
    let mut reason = String::new();
    for attempt in 1..=tries {
        match try_once(client, &url, needle.as_deref(), hc).await {
            Ok(detail) => {
                let detail = if attempt == 1 {
                    detail
                } else {
                    format!("{detail} (attempt {attempt})")
                };
                return HealthOutcome {
                    ok: true,
                    attempts: attempt,
                    detail,
                };
            }
            Err(why) => {
                tracing::debug!(%url, attempt, %why, "health check try failed");
                reason = why;
            }
        }
        if attempt < tries {
            tokio::time::sleep(hc.backoff_after(attempt)).await;
        }
    }
    let plural = if tries == 1 { "" } else { "s" };
    HealthOutcome {
        ok: false,
        attempts: tries,
        detail: format!("GET {url}: {reason} ({tries} attempt{plural})"),
    }
}

/// One try: `Ok("200 OK in 12 ms")` or the reason it failed.
async fn try_once(
    client: &reqwest::Client,
    url: &str,
    needle: Option<&str>,
    hc: &HealthCheck,
) -> Result<String, String> {
    let timeout = http::seconds(hc.timeout_seconds);
    let started = Instant::now();
    let response = client
        .get(url)
        .timeout(timeout)
        .send()
        .await
        .map_err(|e| http::describe(&e, timeout))?;
    let status = response.status();
    if status.as_u16() != hc.expect_status {
        return Err(format!("expected {}, got {status}", hc.expect_status));
    }
    if let Some(needle) = needle {
        let body = http::read_body(response, MAX_BODY_BYTES, timeout).await?;
        if !String::from_utf8_lossy(&body).contains(needle) {
            return Err(format!("body does not contain {needle:?}"));
        }
    }
    Ok(format!("{status} in {} ms", started.elapsed().as_millis()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_strict_parsing() {
        let hc: HealthCheck = toml::from_str("url = \"http://127.0.0.1:{port}/health\"").unwrap();
        assert_eq!(hc, HealthCheck::new("http://127.0.0.1:{port}/health"));
        assert_eq!(
            (hc.expect_status, hc.timeout_seconds, hc.retries, hc.backoff_seconds),
            (200, 5.0, 3, 0.5)
        );
        let err = toml::from_str::<HealthCheck>("url = \"http://x/\"\nretry = 2").unwrap_err();
        assert!(err.to_string().contains("unknown field `retry`"), "{err}");
    }

    #[test]
    fn validation_messages_start_with_the_path() {
        let p = "services.web.health.production";
        let cases: Vec<(HealthCheck, &str)> = vec![
            (
                HealthCheck::new("http://{host}/"),
                "services.web.health.production.url: unknown placeholder {host}",
            ),
            (
                HealthCheck {
                    expect_status: 42,
                    ..HealthCheck::new("http://x/")
                },
                "services.web.health.production.expect_status must be an HTTP status from 100 to 599 (got 42)",
            ),
            (
                HealthCheck {
                    body_contains: Some(String::new()),
                    ..HealthCheck::new("http://x/")
                },
                "services.web.health.production.body_contains is empty",
            ),
            (
                HealthCheck {
                    timeout_seconds: 0.0,
                    ..HealthCheck::new("http://x/")
                },
                "services.web.health.production.timeout_seconds must be",
            ),
            (
                HealthCheck {
                    retries: 101,
                    ..HealthCheck::new("http://x/")
                },
                "services.web.health.production.retries must be at most 100",
            ),
            (
                HealthCheck {
                    backoff_seconds: -1.0,
                    ..HealthCheck::new("http://x/")
                },
                "services.web.health.production.backoff_seconds must be",
            ),
        ];
        for (hc, message) in cases {
            let err = hc.validate(p).unwrap_err();
            assert!(err.starts_with(message), "{err}");
        }
        HealthCheck::new("http://127.0.0.1:{port}/{service}/{environment}?v={version}&i={instance}")
            .validate(p)
            .unwrap();
    }

    #[test]
    fn backoff_doubles_up_to_ten_seconds() {
        let hc = HealthCheck::new("http://x/");
        let waits: Vec<f64> = (1..=8).map(|n| hc.backoff_after(n).as_secs_f64()).collect();
        assert_eq!(waits, [0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0, 10.0]);
        assert_eq!(hc.backoff_after(u32::MAX), MAX_BACKOFF);
        let zero = HealthCheck {
            backoff_seconds: 0.0,
            ..hc
        };
        assert_eq!(zero.backoff_after(5), Duration::ZERO);
    }

    #[tokio::test]
    async fn a_missing_placeholder_value_makes_no_attempt() {
        let client = reqwest::Client::new();
        let outcome = check(&client, &HealthCheck::new("http://127.0.0.1:{port}/"), &BTreeMap::new()).await;
        assert_eq!(
            outcome,
            HealthOutcome {
                ok: false,
                attempts: 0,
                detail: "health check url: no value for placeholder {port} in `http://127.0.0.1:{port}/`".into(),
            }
        );
    }
}
