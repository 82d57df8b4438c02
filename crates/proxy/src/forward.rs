//! The proxy's HTTP handlers: its own endpoints, and forwarding everything else to a backend.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use actix_web::body::{BodySize, MessageBody};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::web::{self, Bytes};
use actix_web::{HttpRequest, HttpResponse};

use crate::split::Route;
use crate::stats::{METRICS_CONTENT_TYPE, UPSTREAM_FAILURE_CODE};
use crate::{Shared, RESERVED_PREFIX};

/// The response header naming the version that answered.
pub(crate) const VERSION_HEADER: &str = "x-stagecoach-version";

/// How long to wait for a connection to a backend.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Headers that belong to one connection and are never forwarded (RFC 9110, section 7.6.1), plus
/// those the proxy sets itself on the way to the backend.
const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// How long an idle connection to a backend is kept for the next request. Shorter than the keep-alive
/// timeout of common servers (5 s in actix-web and Node.js, 2 s in gunicorn), so the proxy closes an idle
/// connection before the backend does: a request sent on a connection the backend is closing at that moment
/// fails ("connection closed before message completed") and would count as the version's error.
const IDLE_CONNECTION: Duration = Duration::from_secs(1);

/// The HTTP client for backends: plain HTTP, no proxy from the environment, no redirects followed.
pub(crate) fn upstream_client() -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(CONNECT_TIMEOUT)
        .pool_idle_timeout(IDLE_CONNECTION)
        .build()
        .map_err(|e| format!("cannot build the proxy's HTTP client: {e}"))
}

pub(crate) fn routes(config: &mut web::ServiceConfig) {
    config
        .service(web::resource("/__stagecoach/metrics").route(web::get().to(metrics)))
        .service(web::resource("/__stagecoach/split").route(web::get().to(split)))
        .default_service(web::to(forward));
}

async fn metrics(shared: web::Data<Shared>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(METRICS_CONTENT_TYPE)
        .body(shared.metrics())
}

async fn split(shared: web::Data<Shared>) -> HttpResponse {
    HttpResponse::Ok().json(shared.split())
}

fn is_reserved(path: &str) -> bool {
    path.strip_prefix(RESERVED_PREFIX)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

async fn forward(
    request: HttpRequest,
    body: Bytes,
    shared: web::Data<Shared>,
    client: web::Data<reqwest::Client>,
) -> HttpResponse {
    // The router's (percent-decoded) path, so that no spelling of a reserved path gets forwarded.
    if is_reserved(request.match_info().as_str()) {
        return HttpResponse::NotFound()
            .content_type("text/plain; charset=utf-8")
            .body(format!(
            "no such proxy endpoint; the proxy serves GET {RESERVED_PREFIX}/metrics and GET {RESERVED_PREFIX}/split\n"
        ));
    }
    let route = shared.pick();
    let started = Instant::now();
    let result = match upstream_request(&client, &request, &route, body) {
        Ok(upstream) => upstream.send().await.map_err(|e| error_chain(&e)),
        Err(e) => Err(e),
    };
    let seconds = started.elapsed().as_secs_f64();
    match result {
        Ok(response) => {
            shared.observe(&route.version, response.status().as_u16(), seconds);
            respond(&request, response, &route)
        }
        Err(error) => {
            tracing::warn!(version = %route.version, backend = %route.base, %error, "backend failed");
            shared.observe(&route.version, UPSTREAM_FAILURE_CODE, seconds);
            HttpResponse::BadGateway()
                .insert_header((VERSION_HEADER, &*route.version))
                .content_type("text/plain; charset=utf-8")
                .body(format!(
                    "bad gateway: version {} at {}: {error}\n",
                    route.version, route.base
                ))
        }
    }
}

/// An error with its sources, e.g. "error sending request …: client error (Connect): … refused".
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    text
}

/// Header names listed in the `Connection` headers: hop-by-hop for this message.
fn connection_options<'a>(values: impl Iterator<Item = &'a [u8]>) -> Vec<String> {
    values
        .filter_map(|v| std::str::from_utf8(v).ok())
        .flat_map(|v| v.split(','))
        .map(|token| token.trim().to_ascii_lowercase())
        .filter(|token| !token.is_empty())
        .collect()
}

fn is_hop_by_hop(name: &str, options: &[String]) -> bool {
    HOP_BY_HOP.contains(&name) || options.iter().any(|o| o == name)
}

fn upstream_request(
    client: &reqwest::Client,
    request: &HttpRequest,
    route: &Route,
    body: Bytes,
) -> Result<reqwest::RequestBuilder, String> {
    use reqwest::header::{HeaderName as UpName, HeaderValue as UpValue};

    let method = reqwest::Method::from_bytes(request.method().as_str().as_bytes())
        .map_err(|e| format!("method {}: {e}", request.method()))?;
    let path = request
        .uri()
        .path_and_query()
        .map(|p| p.as_str())
        .filter(|p| p.starts_with('/'))
        .unwrap_or("/");
    let url = format!("{}{path}", route.base);

    let incoming = request.headers();
    let options = connection_options(incoming.get_all("connection").map(|v| v.as_bytes()));
    let mut headers = reqwest::header::HeaderMap::with_capacity(incoming.len() + 2);
    let mut forwarded_for = Vec::new();
    for (name, value) in incoming.iter() {
        let name = name.as_str();
        if is_hop_by_hop(name, &options) || name == "content-length" || name == "expect" {
            continue;
        }
        if name == "x-forwarded-for" {
            forwarded_for.extend(value.to_str().ok().map(str::to_string));
            continue;
        }
        if let (Ok(name), Ok(value)) = (
            UpName::from_bytes(name.as_bytes()),
            UpValue::from_bytes(value.as_bytes()),
        ) {
            headers.append(name, value);
        }
    }
    if let Some(peer) = request.peer_addr() {
        forwarded_for.push(peer.ip().to_string());
    }
    if !forwarded_for.is_empty() {
        if let Ok(value) = UpValue::from_str(&forwarded_for.join(", ")) {
            headers.insert("x-forwarded-for", value);
        }
    }
    if !headers.contains_key("x-forwarded-proto") {
        headers.insert("x-forwarded-proto", UpValue::from_static("http"));
    }

    let mut upstream = client.request(method, url).headers(headers);
    // A request without a body stays without one; an explicit empty body keeps its `content-length: 0`.
    if !body.is_empty() || incoming.contains_key("content-length") || incoming.contains_key("transfer-encoding") {
        upstream = upstream.body(body);
    }
    Ok(upstream)
}

fn respond(request: &HttpRequest, upstream: reqwest::Response, route: &Route) -> HttpResponse {
    let status = match StatusCode::from_u16(upstream.status().as_u16()) {
        Ok(status) => status,
        Err(_) => StatusCode::BAD_GATEWAY,
    };
    let mut response = HttpResponse::build(status);
    let options = connection_options(upstream.headers().get_all("connection").iter().map(|v| v.as_bytes()));
    for (name, value) in upstream.headers() {
        // `content-length` is kept: actix writes the body's size instead, except on a 304, where it
        // keeps this one.
        if is_hop_by_hop(name.as_str(), &options) {
            continue;
        }
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_str().as_bytes()),
            HeaderValue::from_bytes(value.as_bytes()),
        ) {
            response.append_header((name, value));
        }
    }
    response.insert_header((VERSION_HEADER, &*route.version));

    let length = upstream
        .headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let size = match length {
        Some(n) => BodySize::Sized(n),
        None => BodySize::Stream,
    };
    let head_only = request.method() == actix_web::http::Method::HEAD;
    response.body(UpstreamBody {
        size,
        next: (!head_only).then(|| next_chunk(upstream)),
        route: route.clone(),
    })
}

type Chunk = Pin<Box<dyn Future<Output = (reqwest::Response, reqwest::Result<Option<Bytes>>)>>>;

fn next_chunk(mut response: reqwest::Response) -> Chunk {
    Box::pin(async move {
        let chunk = response.chunk().await;
        (response, chunk)
    })
}

/// The backend's response body, passed on chunk by chunk as it arrives.
struct UpstreamBody {
    size: BodySize,
    next: Option<Chunk>,
    route: Route,
}

impl MessageBody for UpstreamBody {
    type Error = reqwest::Error;

    fn size(&self) -> BodySize {
        self.size
    }

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, Self::Error>>> {
        let Some(next) = self.next.as_mut() else {
            return Poll::Ready(None);
        };
        let (response, chunk) = match next.as_mut().poll(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(ready) => ready,
        };
        match chunk {
            Ok(Some(bytes)) => {
                self.next = Some(next_chunk(response));
                Poll::Ready(Some(Ok(bytes)))
            }
            Ok(None) => {
                self.next = None;
                Poll::Ready(None)
            }
            Err(e) => {
                self.next = None;
                tracing::warn!(
                    version = %self.route.version,
                    backend = %self.route.base,
                    error = %error_chain(&e),
                    "backend failed while sending its response body"
                );
                Poll::Ready(Some(Err(e)))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserved_paths() {
        for path in [
            "/__stagecoach",
            "/__stagecoach/",
            "/__stagecoach/metrics",
            "/__stagecoach/x/y",
        ] {
            assert!(is_reserved(path), "{path}");
        }
        for path in ["/", "/__stagecoachx", "/api/__stagecoach", "/__stage"] {
            assert!(!is_reserved(path), "{path}");
        }
    }

    #[test]
    fn connection_options_are_hop_by_hop() {
        let options = connection_options([&b"keep-alive, X-Secret"[..], b" x-other ,"].into_iter());
        assert_eq!(options, ["keep-alive", "x-secret", "x-other"]);
        assert!(is_hop_by_hop("x-secret", &options));
        assert!(is_hop_by_hop("transfer-encoding", &[]));
        assert!(!is_hop_by_hop("x-custom", &options));
    }
}
