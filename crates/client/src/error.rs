//! The one error type of the client, by how a caller reacts: no answer
//! ([`Error::Unreachable`]), a refusal or failure the daemon answered
//! ([`Error::Api`], with the status and the API's error body), an answer
//! this client does not understand ([`Error::Protocol`]), or a client that
//! could not be set up ([`Error::Setup`]). An error answer keeps what the
//! API said: `{"error": {"code", "message"}}` (see [`crate::wire::ErrorBody`]).

use std::fmt;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The client could not be set up (a bad server URL, an unusable certificate).
    #[error("{0}")]
    Setup(String),
    /// No answer: the daemon could not be reached, the connection broke, or
    /// it did not answer in time. The message says which, and what to do.
    #[error("{0}")]
    Unreachable(String),
    /// The daemon answered with an error status.
    #[error("{0}")]
    Api(ApiError),
    /// The daemon's answer was not what this client understands.
    #[error("unexpected answer from the daemon: {0}")]
    Protocol(String),
}

impl Error {
    /// The HTTP status of an error answer; `None` when there was no answer.
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::Api(e) => Some(e.status),
            _ => None,
        }
    }

    /// Whether trying again may help: the daemon is unreachable, or a proxy
    /// in front of it says it is (502, 503, 504), as while it restarts.
    pub fn retryable(&self) -> bool {
        match self {
            Error::Unreachable(_) => true,
            Error::Api(e) => (502..=504).contains(&e.status),
            Error::Setup(_) | Error::Protocol(_) => false,
        }
    }
}

/// An error answer of the daemon.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: u16,
    /// `error.code` of the API's error body, when it had one.
    pub code: Option<String>,
    /// `error.message` of the body, else the body's text, else the status's reason phrase.
    pub message: String,
    /// The body, when it was JSON.
    pub body: Option<serde_json::Value>,
}

impl ApiError {
    /// The error of an answer with `status` and `body`: the message of the
    /// API's `{"error": {"code", "message"}}`, else the body's text (its
    /// first 500 characters), else the reason phrase of the status.
    pub fn from_answer(status: u16, body: &str) -> ApiError {
        let value: Option<serde_json::Value> = serde_json::from_str(body).ok();
        let error = value.as_ref().and_then(|v| v.get("error"));
        let text = |key: &str| {
            error
                .and_then(|e| e.get(key))
                .and_then(|v| v.as_str())
                .map(str::to_string)
        };
        let code = text("code");
        let message = text("message").unwrap_or_else(|| {
            let text = body.trim();
            if text.is_empty() || value.is_some() {
                reason_phrase(status).to_string()
            } else {
                text.chars().take(500).collect()
            }
        });
        ApiError {
            status,
            code,
            message,
            body: value,
        }
    }

    /// `401 Unauthorized`: the status with its reason phrase.
    pub fn status_line(&self) -> String {
        match reqwest::StatusCode::from_u16(self.status) {
            Ok(status) => status.to_string(),
            Err(_) => self.status.to_string(),
        }
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.code {
            Some(code) => write!(f, "{} ({} {code})", self.message, self.status),
            None => write!(f, "{} ({})", self.message, self.status),
        }
    }
}

/// The reason phrase of a status, `request failed` for one without.
fn reason_phrase(status: u16) -> &'static str {
    reqwest::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("request failed")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_answer_keeps_status_code_and_message() {
        let e = ApiError::from_answer(
            409,
            r#"{"error": {"code": "not_awaiting_approval", "message": "d-000001 is not awaiting approval"}}"#,
        );
        assert_eq!(
            e.to_string(),
            "d-000001 is not awaiting approval (409 not_awaiting_approval)"
        );
        assert_eq!(e.body.as_ref().unwrap()["error"]["code"], "not_awaiting_approval");
        assert!(!Error::Api(e).retryable());
        let e = ApiError::from_answer(503, "");
        assert_eq!(e.to_string(), "Service Unavailable (503)");
        assert!(Error::Api(e).retryable());
        assert_eq!(
            ApiError::from_answer(502, "bad gateway from proxy").to_string(),
            "bad gateway from proxy (502)"
        );
        // JSON that is not the API's error body: the reason phrase.
        assert_eq!(ApiError::from_answer(404, r#"{"x": 1}"#).to_string(), "Not Found (404)");
        assert_eq!(ApiError::from_answer(401, "").status_line(), "401 Unauthorized");
        assert!(Error::Unreachable("x".into()).retryable());
        assert_eq!(
            Error::Protocol("not JSON".into()).to_string(),
            "unexpected answer from the daemon: not JSON"
        );
    }
}
