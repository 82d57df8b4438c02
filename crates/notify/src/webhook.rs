//! Webhook delivery: one HTTP POST per notification, retried with exponential backoff.

use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE};
use reqwest::{StatusCode, Url};
use serde_json::json;

use crate::config::{WebhookChannel, WebhookFormat, MAX_BACKOFF_SECONDS};
use crate::Message;

/// `scheme://host[:port]/path` with user, password and query left out: those often carry secrets.
pub(crate) fn display_url(url: &Url) -> String {
    let host = url.host_str().unwrap_or("");
    let port = url.port().map(|p| format!(":{p}")).unwrap_or_default();
    let query = if url.query().is_some() { "?…" } else { "" };
    format!("{}://{host}{port}{}{query}", url.scheme(), url.path())
}

/// The request body of a notification.
pub(crate) fn body(format: WebhookFormat, msg: &Message<'_>) -> serde_json::Value {
    match format {
        WebhookFormat::Json => json!({
            "id": msg.id,
            "kind": msg.kind.as_str(),
            "at": msg.at,
            "subject": msg.subject,
            "body": msg.body,
            "deployment": msg.deployment_id,
            "service": msg.service,
            "version": msg.version,
            "simulated": msg.simulated,
        }),
        WebhookFormat::Slack => json!({ "text": format!("*{}*\n{}", msg.subject, msg.body) }),
    }
}

/// Why one attempt failed, and whether another attempt may help.
struct Failure {
    text: String,
    retry: bool,
}

fn backoff(channel: &WebhookChannel, retry: u32) -> Duration {
    let factor = 2f64.powi(retry.min(30) as i32);
    let seconds = (channel.backoff_seconds * factor).min(MAX_BACKOFF_SECONDS);
    Duration::try_from_secs_f64(seconds).unwrap_or(Duration::ZERO)
}

fn plural(n: u32) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// Posts `msg` until it is accepted (2xx), a permanent failure (a 4xx other than 408/429, a redirect) or the
/// last retry. The error reads `webhook http://host/path: <last failure> after N attempts`.
pub(crate) async fn deliver(
    client: &reqwest::Client,
    name: &str,
    channel: &WebhookChannel,
    msg: &Message<'_>,
) -> Result<(), String> {
    let url = match Url::parse(&channel.url) {
        Ok(url) => url,
        Err(e) => return Err(format!("webhook {:?}: invalid url: {e}", channel.url)),
    };
    let shown = display_url(&url);
    let mut headers = HeaderMap::new();
    for (key, value) in &channel.headers {
        let key = HeaderName::from_bytes(key.as_bytes()).map_err(|_| format!("webhook {shown}: bad header {key:?}"))?;
        let value = HeaderValue::from_str(value).map_err(|_| format!("webhook {shown}: bad value of header {key}"))?;
        headers.insert(key, value);
    }
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if let Ok(id) = HeaderValue::from_str(msg.id) {
        headers.insert(HeaderName::from_static("idempotency-key"), id);
    }
    let payload = serde_json::to_vec(&body(channel.format, msg)).map_err(|e| format!("webhook {shown}: {e}"))?;
    let timeout = Duration::try_from_secs_f64(channel.timeout_seconds).unwrap_or(Duration::from_secs(5));
    let attempts = channel.retries.saturating_add(1);

    let mut attempt = 0;
    loop {
        attempt += 1;
        let sent = client
            .post(url.clone())
            .headers(headers.clone())
            .timeout(timeout)
            .body(payload.clone())
            .send()
            .await;
        let failure = match sent {
            Ok(response) if response.status().is_success() => {
                tracing::debug!(
                    target: "stagecoach::notify",
                    channel = name, id = msg.id, attempt, "webhook {shown}: {}", response.status()
                );
                return Ok(());
            }
            Ok(response) => status_failure(response.status()),
            Err(e) => request_failure(e, channel.timeout_seconds),
        };
        if !failure.retry || attempt >= attempts {
            let mut text = format!(
                "webhook {shown}: {} after {attempt} attempt{}",
                failure.text,
                plural(attempt)
            );
            if !failure.retry && attempt < attempts {
                text.push_str(" (not retried)");
            }
            return Err(text);
        }
        let pause = backoff(channel, attempt - 1);
        tracing::debug!(
            target: "stagecoach::notify",
            channel = name, id = msg.id, attempt,
            "webhook {shown}: {}; retrying in {:.1} s", failure.text, pause.as_secs_f64()
        );
        tokio::time::sleep(pause).await;
    }
}

fn status_failure(status: StatusCode) -> Failure {
    let retry =
        status.is_server_error() || status == StatusCode::REQUEST_TIMEOUT || status == StatusCode::TOO_MANY_REQUESTS;
    let text = if status.is_redirection() {
        format!("{status} (redirects are not followed)")
    } else {
        status.to_string()
    };
    Failure { text, retry }
}

fn request_failure(e: reqwest::Error, timeout_seconds: f64) -> Failure {
    let e = e.without_url();
    if e.is_timeout() {
        return Failure {
            text: format!("no answer within {timeout_seconds} s"),
            retry: true,
        };
    }
    // The innermost I/O error says what happened (refused, reset, unreachable, …).
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
    let mut deepest = String::new();
    while let Some(err) = source {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            let what = match io.kind() {
                std::io::ErrorKind::ConnectionRefused => "connection refused".to_string(),
                std::io::ErrorKind::ConnectionReset => "connection reset".to_string(),
                std::io::ErrorKind::TimedOut => "connection timed out".to_string(),
                _ => io.to_string(),
            };
            let prefix = if e.is_connect() && io.kind() != std::io::ErrorKind::ConnectionRefused {
                "cannot connect: "
            } else {
                ""
            };
            return Failure {
                text: format!("{prefix}{what}"),
                retry: true,
            };
        }
        deepest = err.to_string();
        source = err.source();
    }
    let text = if e.is_connect() {
        format!("cannot connect: {deepest}")
    } else {
        deepest
    };
    Failure { text, retry: true }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_shown_without_secrets() {
        let url = Url::parse("http://user:pw@example.com:8080/hook?token=abc").unwrap();
        assert_eq!(display_url(&url), "http://example.com:8080/hook?…");
        let url = Url::parse("http://127.0.0.1/h").unwrap();
        assert_eq!(display_url(&url), "http://127.0.0.1/h");
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        let channel = WebhookChannel {
            backoff_seconds: 0.5,
            ..WebhookChannel::new("http://x/")
        };
        assert_eq!(backoff(&channel, 0), Duration::from_millis(500));
        assert_eq!(backoff(&channel, 1), Duration::from_secs(1));
        assert_eq!(backoff(&channel, 2), Duration::from_secs(2));
        assert_eq!(backoff(&channel, 6), Duration::from_secs(10));
        assert_eq!(backoff(&channel, 40), Duration::from_secs(10));
    }

    #[test]
    fn statuses() {
        assert!(status_failure(StatusCode::INTERNAL_SERVER_ERROR).retry);
        assert!(status_failure(StatusCode::TOO_MANY_REQUESTS).retry);
        assert!(!status_failure(StatusCode::NOT_FOUND).retry);
        assert_eq!(status_failure(StatusCode::BAD_GATEWAY).text, "502 Bad Gateway");
    }
}
