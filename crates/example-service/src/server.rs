//! The example service's HTTP server: `GET /` says hello (or fails a configured share of requests,
//! after a configured latency), `GET /health` reports health, `GET /metrics` exposes Prometheus
//! metrics, and `POST /admin/{fail,latency,health}` change the behaviour while it runs.

use std::collections::HashMap;
use std::io::Write as _;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crate::{parse_health_ok, parse_latency_ms, FailRatio, FailureSchedule, Metrics, METRICS_CONTENT_TYPE};
use actix_web::http::StatusCode;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use serde::Serialize;

/// How an instance runs. It listens on loopback only: its admin endpoints have no authentication.
#[derive(clap::Args, Debug, Clone)]
pub struct Options {
    /// Address to listen on, e.g. 127.0.0.1:8080; port 0 picks a free port. Must be a loopback address.
    #[arg(long, env = "EXAMPLE_LISTEN", value_name = "ADDR")]
    pub listen: String,
    /// Version this instance reports, e.g. 1.2.0.
    #[arg(long, env = "EXAMPLE_VERSION")]
    pub version: String,
    /// Share of requests to / that answer 500, between 0 and 1 (deterministic, not random).
    #[arg(long, env = "EXAMPLE_FAIL_RATIO", value_name = "RATIO", default_value = "0", value_parser = FailRatio::parse)]
    pub fail_ratio: FailRatio,
    /// Delay added before answering each request to /, in milliseconds.
    #[arg(long, env = "EXAMPLE_LATENCY_MS", value_name = "MS", default_value = "0", value_parser = parse_latency_ms)]
    pub latency_ms: u64,
    /// Instance number reported in answers and metric labels.
    #[arg(long, env = "EXAMPLE_INSTANCE", value_name = "N", default_value_t = 1)]
    pub instance: u32,
    /// Exit when the process that started this one goes away (so that instances started by a
    /// daemon that was killed do not linger).
    #[arg(long)]
    pub stop_with_parent: bool,
}

struct Service {
    pub version: String,
    instance: String,
    state: Mutex<State>,
}

struct State {
    schedule: FailureSchedule,
    pub latency_ms: u64,
    healthy: bool,
    metrics: Metrics,
}

#[derive(Serialize)]
struct Settings<'a> {
    version: &'a str,
    instance: &'a str,
    fail_ratio: f64,
    pub latency_ms: u64,
    healthy: bool,
}

impl Service {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn settings(&self) -> HttpResponse {
        let state = self.state();
        HttpResponse::Ok().json(Settings {
            version: &self.version,
            instance: &self.instance,
            fail_ratio: state.schedule.ratio().as_f64(),
            latency_ms: state.latency_ms,
            healthy: state.healthy,
        })
    }
}

async fn hello(service: web::Data<Service>) -> HttpResponse {
    let started = Instant::now();
    let (fails, latency_ms) = {
        let mut state = service.state();
        (state.schedule.next_fails(), state.latency_ms)
    };
    if latency_ms > 0 {
        tokio::time::sleep(Duration::from_millis(latency_ms)).await;
    }
    let (status, text) = if fails {
        (StatusCode::INTERNAL_SERVER_ERROR, "simulated failure in")
    } else {
        (StatusCode::OK, "hello from")
    };
    let body = format!("{text} example {} (instance {})", service.version, service.instance);
    service.state().metrics.observe(fails, started.elapsed().as_secs_f64());
    HttpResponse::build(status)
        .content_type("text/plain; charset=utf-8")
        .body(body)
}

async fn health(service: web::Data<Service>) -> HttpResponse {
    let healthy = service.state().healthy;
    let (mut response, status) = if healthy {
        (HttpResponse::Ok(), "ok")
    } else {
        (HttpResponse::ServiceUnavailable(), "unhealthy")
    };
    response.json(serde_json::json!({
        "status": status,
        "version": service.version,
        "instance": service.instance,
    }))
}

async fn metrics(service: web::Data<Service>) -> HttpResponse {
    let text = service.state().metrics.render(&service.version, &service.instance);
    HttpResponse::Ok().content_type(METRICS_CONTENT_TYPE).body(text)
}

/// The value of query parameter `name`, or what is wrong with the query.
fn query_param(request: &HttpRequest, name: &str, example: &str) -> Result<String, String> {
    let query = web::Query::<HashMap<String, String>>::from_query(request.query_string())
        .map_err(|e| format!("cannot read the query string: {e}"))?;
    query
        .into_inner()
        .remove(name)
        .ok_or_else(|| format!("missing query parameter `{name}`, e.g. ?{name}={example}"))
}

fn bad_request(message: String) -> HttpResponse {
    HttpResponse::BadRequest()
        .content_type("text/plain; charset=utf-8")
        .body(message + "\n")
}

async fn admin_fail(service: web::Data<Service>, request: HttpRequest) -> HttpResponse {
    let ratio = match query_param(&request, "ratio", "0.08").and_then(|v| FailRatio::parse(&v)) {
        Ok(ratio) => ratio,
        Err(message) => return bad_request(message),
    };
    service.state().schedule.set_ratio(ratio);
    service.settings()
}

async fn admin_latency(service: web::Data<Service>, request: HttpRequest) -> HttpResponse {
    let ms = match query_param(&request, "ms", "200").and_then(|v| parse_latency_ms(&v)) {
        Ok(ms) => ms,
        Err(message) => return bad_request(message),
    };
    service.state().latency_ms = ms;
    service.settings()
}

async fn admin_health(service: web::Data<Service>, request: HttpRequest) -> HttpResponse {
    let ok = match query_param(&request, "ok", "false").and_then(|v| parse_health_ok(&v)) {
        Ok(ok) => ok,
        Err(message) => return bad_request(message),
    };
    service.state().healthy = ok;
    service.settings()
}

fn routes(config: &mut web::ServiceConfig) {
    config
        .service(web::resource("/").route(web::get().to(hello)))
        .service(web::resource("/health").route(web::get().to(health)))
        .service(web::resource("/metrics").route(web::get().to(metrics)))
        .service(web::resource("/admin/fail").route(web::post().to(admin_fail)))
        .service(web::resource("/admin/latency").route(web::post().to(admin_latency)))
        .service(web::resource("/admin/health").route(web::post().to(admin_health)));
}

/// Resolves `--listen`, refusing anything that is not loopback.
fn loopback_addrs(listen: &str) -> Result<Vec<SocketAddr>, String> {
    let addrs: Vec<SocketAddr> = listen
        .to_socket_addrs()
        .map_err(|e| format!("cannot use --listen {listen}: {e}; give an address such as 127.0.0.1:8080"))?
        .collect();
    if addrs.is_empty() {
        return Err(format!("--listen {listen} resolves to no address"));
    }
    if let Some(addr) = addrs.iter().find(|a| !a.ip().is_loopback()) {
        return Err(format!(
            "--listen {listen} includes {addr}, which is not a loopback address; the admin endpoints have no \
             authentication, so listen on 127.0.0.1 or ::1 only"
        ));
    }
    Ok(addrs)
}

async fn serve(cli: Options, addrs: Vec<SocketAddr>) -> Result<(), String> {
    use tokio::signal::unix::{signal, SignalKind};
    // Install the handlers before announcing the port, so that a signal sent right after it is never lost.
    let mut terminate = signal(SignalKind::terminate()).map_err(|e| format!("cannot handle SIGTERM: {e}"))?;
    let mut interrupt = signal(SignalKind::interrupt()).map_err(|e| format!("cannot handle SIGINT: {e}"))?;

    let service = web::Data::new(Service {
        version: cli.version,
        instance: cli.instance.to_string(),
        state: Mutex::new(State {
            schedule: FailureSchedule::new(cli.fail_ratio),
            latency_ms: cli.latency_ms,
            healthy: true,
            metrics: Metrics::default(),
        }),
    });
    let server = HttpServer::new(move || App::new().app_data(service.clone()).configure(routes))
        .workers(2)
        .disable_signals()
        .shutdown_timeout(5)
        .bind(addrs.as_slice())
        .map_err(|e| format!("cannot listen on {}: {e}", cli.listen))?;
    let bound = server.addrs().first().copied().ok_or("bound to no address")?;
    {
        // A parent reads this line to learn the port; if nobody reads it, serving goes on regardless.
        let mut stdout = std::io::stdout().lock();
        let _ = writeln!(stdout, "listening on http://{bound}");
        let _ = stdout.flush();
    }

    let server = server.run();
    let handle = server.handle();
    let parent = cli.stop_with_parent.then(std::os::unix::process::parent_id);
    actix_web::rt::spawn(async move {
        tokio::select! {
            _ = terminate.recv() => {}
            _ = interrupt.recv() => {}
            _ = parent_gone(parent) => {}
        }
        // Graceful: stop accepting, finish the requests in flight (up to the shutdown timeout).
        handle.stop(true).await;
    });
    server.await.map_err(|e| format!("the HTTP server stopped: {e}"))
}

/// Returns once the parent process is no longer `parent` (it exited and this process was
/// re-parented); never when `parent` is `None`.
async fn parent_gone(parent: Option<u32>) {
    let Some(parent) = parent else {
        return std::future::pending().await;
    };
    while std::os::unix::process::parent_id() == parent {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Serves until SIGTERM or SIGINT (or, with `--stop-with-parent`, until the parent exits).
pub fn run(options: Options) -> Result<(), String> {
    let addrs = loopback_addrs(&options.listen)?;
    actix_web::rt::System::new().block_on(serve(options, addrs))
}
