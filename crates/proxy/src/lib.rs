//! Stagecoach's weighted HTTP reverse proxy.
//!
//! A local process target runs several instances of a service on loopback ports and puts a [`Proxy`]
//! in front of them. The proxy splits requests between versions by weight (a canary), can send all
//! of them to one version at once (blue-green), and counts requests, errors and latencies per version
//! for the metrics provider.
//!
//! - Routing is deterministic: smooth weighted round-robin across versions (nginx's algorithm), so
//!   any 100 consecutive requests hold exactly each version's weight in percent; round-robin across
//!   the backends of a version.
//! - Method, path, query, headers (minus hop-by-hop ones) and body (buffered, up to
//!   [`MAX_REQUEST_BODY`]; larger requests get 413) are forwarded; the response is streamed back with
//!   the header `x-stagecoach-version`. A backend that cannot be reached gives the client a 502,
//!   counted as an error of its version. The `Host` header is kept; `x-forwarded-for` and
//!   `x-forwarded-proto` are added. Redirects are passed through, never followed; protocol upgrades
//!   (WebSocket) are not supported.
//! - `GET /__stagecoach/metrics` serves the metrics in the Prometheus text format and
//!   `GET /__stagecoach/split` the current [`Split`] as JSON; nothing under `/__stagecoach` is
//!   forwarded.

mod forward;
mod split;
mod stats;

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use actix_web::dev::ServerHandle;
use actix_web::{web, App, HttpServer};

pub use split::{Backend, Split};
pub use stats::{Histogram, VersionStats, LATENCY_BUCKETS, METRICS_CONTENT_TYPE, UPSTREAM_FAILURE_CODE};

use split::{Route, Router};

/// The largest request body forwarded, in bytes (10 MiB).
pub const MAX_REQUEST_BODY: usize = 10 * 1024 * 1024;

/// Prefix of the paths the proxy answers itself.
pub const RESERVED_PREFIX: &str = "/__stagecoach";

/// Worker threads of the proxy's HTTP server; each forwards any number of requests concurrently.
const WORKERS: usize = 2;

/// How long [`Proxy::stop`] lets requests in flight finish.
const SHUTDOWN_SECONDS: u64 = 10;

/// A running proxy. Clones share it; [`Proxy::stop`] on any clone stops it.
#[derive(Clone)]
pub struct Proxy {
    shared: Arc<Shared>,
    server: ServerHandle,
}

/// State shared by the handle and every worker.
pub(crate) struct Shared {
    router: Mutex<Router>,
    stats: Mutex<BTreeMap<String, VersionStats>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shared {
    fn new(router: Router) -> Shared {
        let shared = Shared {
            router: Mutex::new(router),
            stats: Mutex::new(BTreeMap::new()),
        };
        shared.track_weighted_versions();
        shared
    }

    /// Makes every version of the current split appear in the stats, with zeros until it serves.
    fn track_weighted_versions(&self) {
        let versions: Vec<String> = lock(&self.router).split().weights.keys().cloned().collect();
        let mut stats = lock(&self.stats);
        for version in versions {
            stats.entry(version).or_default();
        }
    }

    pub(crate) fn pick(&self) -> Route {
        lock(&self.router).pick()
    }

    pub(crate) fn split(&self) -> Split {
        lock(&self.router).split().clone()
    }

    pub(crate) fn observe(&self, version: &str, code: u16, seconds: f64) {
        let mut stats = lock(&self.stats);
        if let Some(s) = stats.get_mut(version) {
            s.observe(code, seconds);
        } else {
            stats.entry(version.to_string()).or_default().observe(code, seconds);
        }
    }

    pub(crate) fn stats(&self) -> BTreeMap<String, VersionStats> {
        lock(&self.stats).clone()
    }

    pub(crate) fn metrics(&self) -> String {
        let weights = lock(&self.router).split().weights.clone();
        stats::render(&lock(&self.stats), &weights)
    }
}

impl Proxy {
    /// Validates `split`, binds `listen` (port 0 picks a free port) and starts serving on the current
    /// tokio runtime (an actix system works too); returns once the socket is bound, with the bound
    /// address.
    pub async fn start(listen: SocketAddr, split: Split) -> Result<(Proxy, SocketAddr), String> {
        let router = Router::new(split)?;
        let shared = Arc::new(Shared::new(router));
        // Built here to report a failure; each worker builds its own so that its connections live on
        // its own runtime.
        let fallback_client = forward::upstream_client()?;
        let data = web::Data::from(shared.clone());
        let server = HttpServer::new(move || {
            let client = forward::upstream_client().unwrap_or_else(|_| fallback_client.clone());
            App::new()
                .app_data(data.clone())
                .app_data(web::Data::new(client))
                .app_data(web::PayloadConfig::new(MAX_REQUEST_BODY))
                .configure(forward::routes)
        })
        .workers(WORKERS)
        .disable_signals()
        .shutdown_timeout(SHUTDOWN_SECONDS)
        .bind(listen)
        .map_err(|e| format!("the proxy cannot listen on {listen}: {e}"))?;
        let bound = server
            .addrs()
            .first()
            .copied()
            .ok_or_else(|| format!("the proxy bound {listen} to no address"))?;
        let server = server.run();
        let handle = server.handle();
        tokio::spawn(async move {
            if let Err(e) = server.await {
                tracing::error!(%bound, error = %e, "the proxy's HTTP server stopped");
            }
        });
        tracing::info!(%bound, split = ?shared.split().weights, "proxy listening");
        Ok((Proxy { shared, server: handle }, bound))
    }

    /// Switches to `split` at once: requests that arrive from now on follow it, requests in flight
    /// finish on the backend they were sent to. An invalid split is refused and the current one stays.
    pub fn set_split(&self, split: Split) -> Result<(), String> {
        {
            let mut router = lock(&self.shared.router);
            let next = router.replace(split)?;
            tracing::info!(weights = ?next.split().weights, "proxy split changed");
            *router = next;
        }
        self.shared.track_weighted_versions();
        Ok(())
    }

    /// The current split.
    pub fn split(&self) -> Split {
        self.shared.split()
    }

    /// What each version has served since the proxy started: every version of the current split,
    /// and every version that has served a request.
    pub fn stats(&self) -> BTreeMap<String, VersionStats> {
        self.shared.stats()
    }

    /// The metrics in the Prometheus text format, as served at `/__stagecoach/metrics`.
    pub fn metrics_text(&self) -> String {
        self.shared.metrics()
    }

    /// Stops accepting connections, lets requests in flight finish (up to 10 seconds) and returns
    /// once the server has stopped.
    pub async fn stop(self) {
        self.server.stop(true).await;
    }
}

impl fmt::Debug for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Proxy")
            .field("split", &self.split())
            .finish_non_exhaustive()
    }
}
