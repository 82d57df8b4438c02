//! The blocking client: one method per route, typed bodies and answers,
//! and the event stream.
//!
//! Requests use reqwest's blocking client. The event stream is read
//! through reqwest's async API on a small runtime of the stream's own,
//! driven only while the caller waits for the next entry: that is what lets
//! a caller wait with a deadline and keep the stream, and closes the
//! connection the moment the [`EventStream`] is dropped. Both are built from
//! one configuration (the server, the token, the trusted certificates, the
//! proxy rule), so they cannot differ.

use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::{ApiError, Error};
use crate::stream::{EntryDecoder, Received, StreamError};
use crate::wire::{
    AckRequest, ApprovalRequest, EventsQuery, ListPage, ListQuery, ReasonRequest, Record, SubmitRequest, Verification,
};

/// How long an ordinary request may take unless the builder says otherwise (the event stream has no limit).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How long connecting may take unless the builder says otherwise.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Sets up a [`Client`]: the daemon's URL, then the token and options.
#[derive(Clone)]
pub struct Builder {
    base: String,
    token: Option<String>,
    certificates: Vec<Vec<u8>>,
    request_timeout: Option<Duration>,
    connect_timeout: Duration,
    direct: bool,
}

impl std::fmt::Debug for Builder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Builder")
            .field("base", &self.base)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("certificates", &self.certificates.len())
            .field("request_timeout", &self.request_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("direct", &self.direct)
            .finish()
    }
}

impl Builder {
    /// The bearer token sent with every request.
    pub fn token(mut self, token: impl Into<String>) -> Builder {
        self.token = Some(token.into());
        self
    }

    /// Trusts the CA certificates of this PEM text besides the system's, e.g. a daemon's self-signed one.
    pub fn root_certificate_pem(mut self, pem: impl Into<Vec<u8>>) -> Builder {
        self.certificates.push(pem.into());
        self
    }

    /// How long an ordinary request may take (default [`REQUEST_TIMEOUT`]); `None`: no limit.
    pub fn request_timeout(mut self, timeout: Option<Duration>) -> Builder {
        self.request_timeout = timeout;
        self
    }

    /// How long connecting may take (default [`CONNECT_TIMEOUT`]).
    pub fn connect_timeout(mut self, timeout: Duration) -> Builder {
        self.connect_timeout = timeout;
        self
    }

    /// Never use a proxy (by default only a daemon on this machine is reached directly).
    pub fn no_proxy(mut self) -> Builder {
        self.direct = true;
        self
    }

    /// The HTTP settings both front ends share.
    fn configured(&self) -> Result<reqwest::ClientBuilder, Error> {
        let mut b = reqwest::Client::builder()
            .connect_timeout(self.connect_timeout)
            .user_agent(concat!("stagecoach/", env!("CARGO_PKG_VERSION")));
        // Never hand the token to a proxy for a daemon on this machine.
        if self.direct || is_loopback(&self.base) {
            b = b.no_proxy();
        }
        for pem in &self.certificates {
            let certs = reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|e| Error::Setup(format!("cannot read the CA certificate: {}", chain(&e))))?;
            if certs.is_empty() {
                return Err(Error::Setup(
                    "the CA certificate holds no certificate: give PEM text with a -----BEGIN CERTIFICATE----- block"
                        .into(),
                ));
            }
            b = certs.into_iter().fold(b, |b, cert| b.add_root_certificate(cert));
        }
        Ok(b)
    }

    pub fn build(self) -> Result<Client, Error> {
        let setup = |e: reqwest::Error| Error::Setup(format!("cannot set up the HTTP client: {}", chain(&e)));
        let http = reqwest::blocking::ClientBuilder::from(self.configured()?)
            .timeout(self.request_timeout)
            .build()
            .map_err(setup)?;
        // Each stream runs on a runtime of its own: no connection may outlive it in a pool.
        let stream = self.configured()?.pool_max_idle_per_host(0).build().map_err(setup)?;
        Ok(Client {
            base: self.base,
            token: self.token,
            request_timeout: self.request_timeout,
            http,
            stream,
        })
    }
}

/// A client of one daemon's API. Cheap to share between threads by reference.
#[derive(Clone)]
pub struct Client {
    base: String,
    token: Option<String>,
    request_timeout: Option<Duration>,
    http: reqwest::blocking::Client,
    stream: reqwest::Client,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("base", &self.base)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// The daemon's base URL without a trailing slash; `host:port` gets `http://`.
pub fn base_url(raw: &str) -> Result<String, Error> {
    let t = raw.trim().trim_end_matches('/');
    let url = if t.contains("://") {
        t.to_string()
    } else {
        format!("http://{t}")
    };
    match reqwest::Url::parse(&url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => Ok(url),
        _ => Err(Error::Setup(format!(
            "server URL {raw:?} is invalid: expected http://HOST:PORT"
        ))),
    }
}

/// Whether `url` names this machine (`localhost`, `127.0.0.1`, `[::1]`, …).
pub fn is_loopback(url: &str) -> bool {
    let Some(host) = reqwest::Url::parse(url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_string))
    else {
        return false;
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost") || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

impl Client {
    /// A builder for the daemon at `server` (`http://HOST:PORT`, `https://…`, or `HOST:PORT`).
    pub fn builder(server: &str) -> Result<Builder, Error> {
        Ok(Builder {
            base: base_url(server)?,
            token: None,
            certificates: vec![],
            request_timeout: Some(REQUEST_TIMEOUT),
            connect_timeout: CONNECT_TIMEOUT,
            direct: false,
        })
    }

    /// A client of the daemon at `server` with `token` and the default options.
    pub fn new(server: &str, token: &str) -> Result<Client, Error> {
        Client::builder(server)?.token(token).build()
    }

    /// The daemon's base URL, e.g. `http://127.0.0.1:7400`.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    // ---- routes -----------------------------------------------------------------

    /// `POST /v1/deployments`: the new deployment's record.
    pub fn submit(&self, request: &SubmitRequest) -> Result<Record, Error> {
        self.post("/v1/deployments", request, "a deployment record")
    }

    /// `GET /v1/deployments`: one page.
    pub fn list_page(&self, query: &ListQuery) -> Result<ListPage, Error> {
        let req = self.http.get(self.url("/v1/deployments")).query(query);
        self.json(req, "a list of deployment records")
    }

    /// Every deployment matching `service` and `status`, following the pages.
    pub fn list_all(&self, service: Option<&str>, status: Option<&str>) -> Result<Vec<Record>, Error> {
        let mut query = ListQuery {
            service: service.map(str::to_string),
            status: status.map(str::to_string),
            ..ListQuery::default()
        };
        // Pages never shift: new deployments only ever come after the last one listed.
        let mut all = vec![];
        loop {
            let page = self.list_page(&query)?;
            all.extend(page.deployments);
            match page.next_cursor {
                Some(next) if query.cursor.as_deref() != Some(next.as_str()) => query.cursor = Some(next),
                _ => return Ok(all),
            }
        }
    }

    /// `GET /v1/deployments/{id}`.
    pub fn deployment(&self, id: &str) -> Result<Record, Error> {
        self.get(&format!("/v1/deployments/{id}"), "a deployment record")
    }

    /// `GET /v1/deployments/{id}/record.md`: the Deployment Record in Markdown.
    pub fn record_markdown(&self, id: &str) -> Result<String, Error> {
        let req = self
            .http
            .get(self.url(&format!("/v1/deployments/{id}/record.md")))
            .header(reqwest::header::ACCEPT, "text/markdown");
        let resp = self.send(req)?;
        resp.text().map_err(|e| self.unreachable(&e))
    }

    /// `GET /v1/deployments/{id}/verify`: the check of the deployment's journal chain.
    pub fn verify(&self, id: &str) -> Result<Verification, Error> {
        self.get(&format!("/v1/deployments/{id}/verify"), "a verification report")
    }

    /// `POST /v1/deployments/{id}/approvals`: approve or reject.
    pub fn decide(&self, id: &str, request: &ApprovalRequest) -> Result<Record, Error> {
        self.post(
            &format!("/v1/deployments/{id}/approvals"),
            request,
            "a deployment record",
        )
    }

    /// `POST /v1/deployments/{id}/rollback`.
    pub fn rollback(&self, id: &str, request: &ReasonRequest) -> Result<Record, Error> {
        self.post(
            &format!("/v1/deployments/{id}/rollback"),
            request,
            "a deployment record",
        )
    }

    /// `POST /v1/deployments/{id}/cancel`.
    pub fn cancel(&self, id: &str, request: &ReasonRequest) -> Result<Record, Error> {
        self.post(&format!("/v1/deployments/{id}/cancel"), request, "a deployment record")
    }

    /// `POST /v1/services/{service}/versions/{version}/unblock`: lifts the block a
    /// rollback put on `version` of `service`; the record of the deployment that blocked it.
    pub fn unblock(&self, service: &str, version: &str, request: &ReasonRequest) -> Result<Record, Error> {
        self.post(
            &format!("/v1/services/{service}/versions/{version}/unblock"),
            request,
            "a deployment record",
        )
    }

    /// `POST /v1/escalations/{id}/ack` (`d-000001-e1`).
    pub fn acknowledge(&self, escalation: &str, request: &AckRequest) -> Result<Record, Error> {
        self.post(
            &format!("/v1/escalations/{escalation}/ack"),
            request,
            "a deployment record",
        )
    }

    /// `GET /v1/openapi.json`: the API's description (any valid token may read it).
    pub fn openapi(&self) -> Result<serde_json::Value, Error> {
        self.get("/v1/openapi.json", "JSON")
    }

    /// `GET /healthz` (no token needed): `Ok` once the daemon serves.
    pub fn healthz(&self) -> Result<(), Error> {
        let resp = self.send(self.http.get(self.url("/healthz")))?;
        resp.bytes().map(drop).map_err(|e| self.unreachable(&e))
    }

    /// `GET /metrics` (no token needed): the Prometheus text.
    pub fn metrics(&self) -> Result<String, Error> {
        let resp = self.send(self.http.get(self.url("/metrics")))?;
        resp.text().map_err(|e| self.unreachable(&e))
    }

    /// `GET /v1/events`: follows the journal as it is written.
    pub fn events(&self, query: &EventsQuery) -> Result<EventStream, Error> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::Setup(format!("cannot start the event stream's runtime: {e}")))?;
        let mut req = self
            .stream
            .get(self.url("/v1/events"))
            .query(query)
            .header(reqwest::header::ACCEPT, "text/event-stream");
        if let Some(seq) = query.after {
            req = req.header("Last-Event-ID", seq.to_string());
        }
        if let Some(token) = &self.token {
            req = req.bearer_auth(token);
        }
        let resp = runtime.block_on(req.send()).map_err(|e| self.unreachable(&e))?;
        let status = resp.status();
        if !status.is_success() {
            let body = runtime.block_on(resp.text()).unwrap_or_default();
            return Err(Error::Api(ApiError::from_answer(status.as_u16(), &body)));
        }
        Ok(EventStream {
            runtime,
            response: resp,
            decoder: EntryDecoder::default(),
        })
    }

    // ---- plumbing ---------------------------------------------------------------

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn unreachable(&self, e: &reqwest::Error) -> Error {
        if e.is_timeout() {
            let limit = self.request_timeout.map(|t| t.as_secs()).unwrap_or_default();
            return Error::Unreachable(format!(
                "the daemon at {} did not answer within {limit} s: {}",
                self.base,
                chain(e)
            ));
        }
        Error::Unreachable(format!(
            "cannot reach the daemon at {}: {}; is `stagecoach daemon` running? (start it with `stagecoach daemon`)",
            self.base,
            root_cause(e)
        ))
    }

    /// Sends a request with the token; an error status becomes [`Error::Api`].
    fn send(&self, req: reqwest::blocking::RequestBuilder) -> Result<reqwest::blocking::Response, Error> {
        let req = match &self.token {
            Some(token) => req.bearer_auth(token),
            None => req,
        };
        let resp = req.send().map_err(|e| self.unreachable(&e))?;
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let body = resp.text().unwrap_or_default();
        Err(Error::Api(ApiError::from_answer(status.as_u16(), &body)))
    }

    /// Sends a request and reads its JSON answer as `T` (`what` names `T` in errors).
    fn json<T: DeserializeOwned>(&self, req: reqwest::blocking::RequestBuilder, what: &str) -> Result<T, Error> {
        let resp = self.send(req.header(reqwest::header::ACCEPT, "application/json"))?;
        let text = resp.text().map_err(|e| self.unreachable(&e))?;
        serde_json::from_str(&text).map_err(|e| match serde_json::from_str::<serde::de::IgnoredAny>(&text) {
            Err(e) => Error::Protocol(format!("not JSON: {e}")),
            Ok(_) => Error::Protocol(format!("not {what}: {e}")),
        })
    }

    fn get<T: DeserializeOwned>(&self, path: &str, what: &str) -> Result<T, Error> {
        self.json(self.http.get(self.url(path)), what)
    }

    fn post<B: Serialize, T: DeserializeOwned>(&self, path: &str, body: &B, what: &str) -> Result<T, Error> {
        self.json(self.http.post(self.url(path)).json(body), what)
    }
}

/// The innermost source of an error: "Connection refused (os error 111)" rather than the request it failed.
fn root_cause(e: &dyn std::error::Error) -> String {
    let mut cause = e;
    while let Some(s) = cause.source() {
        cause = s;
    }
    cause.to_string()
}

/// An error and its sources, joined with ": ".
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

// ---- the event stream ---------------------------------------------------------------

/// An open `GET /v1/events`. Dropping it closes the connection.
pub struct EventStream {
    runtime: tokio::runtime::Runtime,
    response: reqwest::Response,
    decoder: EntryDecoder,
}

impl std::fmt::Debug for EventStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventStream").field("url", self.response.url()).finish()
    }
}

impl EventStream {
    /// The next entry, waiting as long as it takes; `Ok(None)` once the daemon closed the stream.
    pub fn next_entry(&mut self) -> Result<Option<Received>, StreamError> {
        self.next(None)
    }

    /// [`EventStream::next_entry`], giving up at `deadline` with [`StreamError::TimedOut`].
    pub fn next_entry_before(&mut self, deadline: Instant) -> Result<Option<Received>, StreamError> {
        self.next(Some(deadline))
    }

    fn next(&mut self, deadline: Option<Instant>) -> Result<Option<Received>, StreamError> {
        loop {
            if let Some(entry) = self.decoder.next_entry() {
                return entry.map(Some);
            }
            let chunk = self.response.chunk();
            let read = match deadline {
                None => self.runtime.block_on(chunk),
                // The timer is made inside the runtime, which drives it.
                Some(at) => self
                    .runtime
                    .block_on(async { tokio::time::timeout_at(tokio::time::Instant::from_std(at), chunk).await })
                    .map_err(|_| StreamError::TimedOut)?,
            };
            match read {
                Ok(Some(bytes)) => self.decoder.push(&bytes),
                Ok(None) => return Ok(None),
                Err(e) => return Err(StreamError::Broken(chain(&e))),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked_and_loopback_goes_direct() {
        assert_eq!(base_url("127.0.0.1:7400").unwrap(), "http://127.0.0.1:7400");
        assert_eq!(base_url("http://h:1/").unwrap(), "http://h:1");
        assert!(base_url("ftp://h").is_err());
        assert!(is_loopback("http://127.0.0.1:7400"));
        assert!(is_loopback("http://localhost:7400"));
        assert!(is_loopback("http://[::1]:7400"));
        assert!(!is_loopback("http://deploy.example:7400"));
        let builder = Client::builder("127.0.0.1:1").unwrap().token("secret");
        assert!(!format!("{builder:?}").contains("secret"));
        let bad = builder.root_certificate_pem("not a certificate").build().unwrap_err();
        assert!(bad.to_string().contains("CA certificate"), "{bad}");
    }
}
