//! What the health checks and the metrics providers share: URL and duration checks, bounded bodies, and
//! readable transport errors.

use std::collections::BTreeMap;
use std::error::Error as _;
use std::time::Duration;

use crate::vars;

/// The HTTP client for probes (health checks, metrics reads): no proxy from the environment, and no idle
/// connection kept between probes. A probe every few seconds would otherwise send on a connection that the
/// server is closing at that moment (keep-alive timeouts of a few seconds are common: 5 s in actix-web and
/// Node.js, 2 s in gunicorn), and fail with "connection closed before message completed": a false failure
/// that can roll a healthy release back. One connection per probe costs a TCP handshake on loopback or the
/// local network, which probes every few seconds can afford.
pub fn probe_client(timeout: Option<Duration>) -> reqwest::Client {
    let builder = reqwest::Client::builder().no_proxy().pool_max_idle_per_host(0);
    let builder = match timeout {
        Some(t) => builder.timeout(t),
        None => builder,
    };
    builder.build().unwrap_or_default()
}

/// Largest number of seconds a timeout or interval may be configured to.
pub(crate) const MAX_SECONDS: f64 = 3600.0;

/// A validated number of seconds as a `Duration`; out-of-range values (which `validate` refuses) saturate.
pub(crate) fn seconds(value: f64) -> Duration {
    Duration::try_from_secs_f64(value.max(0.0)).unwrap_or(Duration::MAX)
}

/// Checks a configured number of seconds: finite, within `min..=MAX_SECONDS` (`min` itself excluded when
/// `allow_zero` is false).
pub(crate) fn check_seconds(value: f64, allow_zero: bool, what: &str) -> Result<(), String> {
    let ok = value.is_finite() && value <= MAX_SECONDS && if allow_zero { value >= 0.0 } else { value > 0.0 };
    if ok {
        Ok(())
    } else {
        let low = if allow_zero { "0" } else { "more than 0" };
        Err(format!(
            "{what} must be a number of seconds from {low} to {MAX_SECONDS} (got {value})"
        ))
    }
}

/// Checks a URL setting: known placeholders only, and once they are filled in, an `http://` URL with a host.
pub(crate) fn check_url(url: &str, what: &str) -> Result<(), String> {
    vars::check_placeholders(url, what)?;
    let filled = vars::substitute(url, &vars::sample_vars()).map_err(|e| format!("{what}: {e}"))?;
    let parsed = reqwest::Url::parse(&filled).map_err(|e| format!("{what}: {url:?} is not a valid URL ({e})"))?;
    match parsed.scheme() {
        "http" => {}
        "https" => {
            return Err(format!(
                "{what}: {url:?} uses https, which this build does not support (it has no TLS); use http:// \
                 (e.g. through a local TLS-terminating proxy)"
            ))
        }
        other => return Err(format!("{what}: {url:?} uses {other}:, expected an http:// URL")),
    }
    match parsed.host_str() {
        Some(host) if !host.is_empty() => {}
        _ => return Err(format!("{what}: {url:?} has no host")),
    }
    Ok(())
}

/// Reads a response body, refusing one longer than `limit` bytes.
pub(crate) async fn read_body(
    mut response: reqwest::Response,
    limit: usize,
    timeout: Duration,
) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| format!("reading the body: {}", describe(&e, timeout)))?
    {
        if chunk.len() > limit.saturating_sub(body.len()) {
            return Err(format!("the body is longer than {limit} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// A transport error in a few words: "connection refused", "timed out after 5 s", or the error's chain.
pub(crate) fn describe(err: &reqwest::Error, timeout: Duration) -> String {
    if err.is_timeout() {
        return format!("timed out after {}", format_duration(timeout));
    }
    let mut source = err.source();
    let mut chain = vec![err.to_string()];
    while let Some(cause) = source {
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            match io.kind() {
                std::io::ErrorKind::ConnectionRefused => return "connection refused".to_owned(),
                std::io::ErrorKind::ConnectionReset => return "connection reset by peer".to_owned(),
                std::io::ErrorKind::TimedOut => return format!("timed out after {}", format_duration(timeout)),
                _ => {}
            }
        }
        let text = cause.to_string();
        if !chain.last().is_some_and(|last| last.contains(&text)) {
            chain.push(text);
        }
        source = cause.source();
    }
    // The first link repeats the URL, which callers print already.
    if chain.len() > 1 {
        chain.remove(0);
    }
    chain.join(": ")
}

/// `250 ms`, `1.5 s`, `30 s`.
pub(crate) fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    let (whole_seconds, rest_ms) = (ms / 1000, ms % 1000);
    if ms < 1000 {
        format!("{ms} ms")
    } else if rest_ms == 0 {
        format!("{whole_seconds} s")
    } else {
        format!("{:.1} s", d.as_secs_f64())
    }
}

/// Fills in placeholders, prefixing the error with the setting's description.
pub(crate) fn fill(text: &str, vars: &BTreeMap<String, String>, what: &str) -> Result<String, String> {
    vars::substitute(text, vars).map_err(|e| format!("{what}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_checks() {
        assert!(check_url("http://127.0.0.1:{port}/health", "u").is_ok());
        assert!(check_url("http://{service}.internal/metrics", "u").is_ok());
        assert!(check_url("https://x/", "u").unwrap_err().contains("https"));
        assert_eq!(
            check_url("ftp://x/", "a.url").unwrap_err(),
            "a.url: \"ftp://x/\" uses ftp:, expected an http:// URL"
        );
        assert!(check_url("not a url", "u")
            .unwrap_err()
            .starts_with("u: \"not a url\" is not a valid URL"));
        assert!(check_url("http://{host}/", "u")
            .unwrap_err()
            .contains("unknown placeholder {host}"));
    }

    #[test]
    fn seconds_checks() {
        assert!(check_seconds(0.5, false, "t").is_ok());
        assert!(check_seconds(0.0, true, "t").is_ok());
        assert_eq!(
            check_seconds(0.0, false, "x.timeout_seconds").unwrap_err(),
            "x.timeout_seconds must be a number of seconds from more than 0 to 3600 (got 0)"
        );
        for bad in [f64::NAN, f64::INFINITY, -1.0, 3601.0] {
            assert!(check_seconds(bad, true, "t").is_err(), "{bad}");
        }
        assert_eq!(seconds(-1.0), Duration::ZERO);
        assert_eq!(format_duration(Duration::from_millis(250)), "250 ms");
        assert_eq!(format_duration(Duration::from_millis(1500)), "1.5 s");
        assert_eq!(format_duration(Duration::from_secs(5)), "5 s");
    }
}
