//! Rows 5 to 8: the real daemon binary on a loopback port, with a temporary
//! state dir, driven over HTTP through the API's client crate, like any client.
//!
//! One daemon serves rows 7 (idle RSS), 5 (the submission load) and 7 again
//! (RSS with every submitted deployment in flight); it is then killed with
//! SIGKILL and restarted on the same state dir for row 6.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use client::wire::{ListQuery, SubmitRequest};

use crate::{BenchOptions, Row, RowBuilder};

/// A daemon child process, killed when dropped.
struct Daemon {
    child: Child,
    url: String,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Daemon {
    fn start(binary: &Path, state_dir: &Path, config: &Path, log: &Path) -> Result<Daemon, String> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("no free loopback port: {e}"))?
            .port();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .map_err(|e| format!("cannot open {}: {e}", log.display()))?;
        let child = Command::new(binary)
            .arg("--state-dir")
            .arg(state_dir)
            .arg("--config")
            .arg(config)
            .args([
                "daemon",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--log-format",
                "json",
            ])
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", binary.display()))?;
        Ok(Daemon {
            child,
            url: format!("http://127.0.0.1:{port}"),
        })
    }

    /// A client of this daemon's API with `token`, or without one for `/healthz`.
    fn api(&self, token: Option<&str>, timeout: Duration) -> Result<client::Client, String> {
        let builder = client::Client::builder(&self.url).map_err(|e| e.to_string())?;
        let builder = match token {
            Some(t) => builder.token(t),
            None => builder,
        };
        builder
            .request_timeout(Some(timeout))
            .build()
            .map_err(|e| e.to_string())
    }

    /// Waits until `/healthz` answers 200.
    fn wait_healthy(&mut self, limit: Duration) -> Result<Duration, String> {
        let started = Instant::now();
        let api = self.api(None, Duration::from_secs(2))?;
        while started.elapsed() < limit {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("the daemon exited with {status}"));
            }
            if api.healthz().is_ok() {
                return Ok(started.elapsed());
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        Err(format!("the daemon did not answer /healthz within {limit:?}"))
    }

    fn rss_kb(&self) -> Option<u64> {
        crate::proc_status_kb(&format!("/proc/{}/status", self.child.id()), "VmRSS")
    }
}

/// What the submission load measured.
struct Load {
    submitted: u64,
    errors: u64,
    wall: Duration,
    p99: Duration,
    first_error: Option<String>,
}

/// `total` submissions of distinct services from `clients` threads
/// sharing one client (its connections are kept alive).
fn submit_load(api: &client::Client, clients: usize, total: usize) -> Result<Load, String> {
    let started = Instant::now();
    let results: Vec<(Vec<Duration>, u64, Option<String>)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..clients)
            .map(|c| {
                scope.spawn(move || {
                    let mut latencies = vec![];
                    let mut errors = 0;
                    let mut first_error = None;
                    for i in (c..total).step_by(clients) {
                        let request = SubmitRequest {
                            service: format!("svc-{i:05}"),
                            version: Some("2.0.1".into()),
                            kind: Some("standard".into()),
                            strategy: Some("canary".into()),
                            changes: vec!["bench".into()],
                            ..SubmitRequest::default()
                        };
                        let sent = Instant::now();
                        match api.submit(&request) {
                            Ok(_) => latencies.push(sent.elapsed()),
                            Err(e) => {
                                errors += 1;
                                first_error.get_or_insert_with(|| e.to_string());
                            }
                        }
                    }
                    (latencies, errors, first_error)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| (vec![], 1, Some("a client thread panicked".into())))
            })
            .collect()
    });
    let wall = started.elapsed();
    let mut latencies: Vec<Duration> = results.iter().flat_map(|r| r.0.iter().copied()).collect();
    latencies.sort();
    let p99 = latencies
        .get((latencies.len() * 99 / 100).min(latencies.len().saturating_sub(1)))
        .copied()
        .unwrap_or_default();
    Ok(Load {
        submitted: latencies.len() as u64,
        errors: results.iter().map(|r| r.1).sum(),
        wall,
        p99,
        first_error: results.into_iter().find_map(|r| r.2),
    })
}

/// Counts the deployments of `service` the daemon lists. The coordinator
/// answers, so only after it replayed the journal and resumed (in
/// `Actor::started`, before any message) what was in flight.
fn listed(api: &client::Client, service: &str) -> Result<usize, String> {
    let query = ListQuery {
        service: Some(service.into()),
        ..ListQuery::default()
    };
    let page = api.list_page(&query).map_err(|e| format!("GET /v1/deployments: {e}"))?;
    Ok(page.deployments.len())
}

/// Rows 5 to 8.
pub fn rows(opts: &BenchOptions, dir: &Path, single_commit_us: Option<f64>) -> Vec<Row> {
    let mut rows = vec![];
    let row5 = |id: &str, figure: &str, unit: &str, target: &str| RowBuilder::new(id, figure, unit, target);
    let Some(binary) = opts.daemon_binary.clone() else {
        let why = "needs the stagecoach binary: run `stagecoach bench`, or pass --daemon";
        rows.push(row5("5a", "API submissions/s", "req/s", "≥ 5,000/s").not_measured(why));
        rows.push(row5("6", "restart until resumed", "s", "≤ 2 s").not_measured(why));
        rows.push(row5("7a", "daemon idle RSS", "MB", "≤ 20 MB").not_measured(why));
        rows.push(row8(opts, dir));
        return rows;
    };
    let total = if opts.quick { 500 } else { 10_000 };
    match daemon_rows(&binary, dir, total, single_commit_us) {
        Ok(mut r) => rows.append(&mut r),
        Err(e) => rows.push(row5("5a", "API submissions/s", "req/s", "≥ 5,000/s").failed(e)),
    }
    rows.push(row8(opts, dir));
    rows
}

fn daemon_rows(binary: &Path, dir: &Path, total: usize, single_commit_us: Option<f64>) -> Result<Vec<Row>, String> {
    let mut rows = vec![];
    let state: PathBuf = dir.join("daemon-state");
    let config = dir.join("daemon.toml");
    std::fs::write(&config, "# the bundled defaults; every service simulated\n").map_err(|e| e.to_string())?;
    let log = dir.join("daemon.log");
    let mut daemon = Daemon::start(binary, &state, &config, &log)?;
    daemon.wait_healthy(Duration::from_secs(30))?;
    std::thread::sleep(Duration::from_millis(300));
    let idle = daemon.rss_kb();
    let token = std::fs::read_to_string(state.join("admin.token"))
        .map_err(|e| format!("cannot read the admin token: {e}"))?
        .trim()
        .to_string();

    let load = submit_load(&daemon.api(Some(&token), Duration::from_secs(30))?, 32, total)?;
    let rate = load.submitted as f64 / load.wall.as_secs_f64();
    let commit_rate = single_commit_us.map(|us| 1e6 / us);
    let scale = format!("{total} submissions, 32 clients on keep-alive connections");
    rows.push(
        RowBuilder::new(
            "5a",
            &format!("API POST /v1/deployments, {scale}: rate"),
            "req/s",
            "≥ 5,000/s",
        )
        .baseline("raw single-commit rate", commit_rate)
        .note(format!(
            "{} accepted in {:.2} s; daemon: bundled defaults, simulated world, durable journal",
            load.submitted,
            load.wall.as_secs_f64()
        ))
        .value(rate, rate >= 5000.0),
    );
    let p99 = crate::ms(load.p99);
    rows.push(
        RowBuilder::new("5b", "API POST /v1/deployments: p99 latency", "ms", "≤ 20 ms")
            .baseline("one raw rusqlite commit", single_commit_us.map(|us| us / 1000.0))
            .value(p99, p99 <= 20.0),
    );
    let mut errors = RowBuilder::new("5c", "API POST /v1/deployments: errors", "", "0");
    if let Some(e) = &load.first_error {
        errors = errors.note(format!("first: {e}"));
    }
    rows.push(errors.value(load.errors as f64, load.errors == 0));

    // Let the accepted deployments settle where they wait (a window, the
    // service slot, monitoring), then read the memory they hold.
    std::thread::sleep(Duration::from_secs(1));
    let busy = daemon.rss_kb();
    match idle {
        Some(kb) => {
            let mb = kb as f64 / 1024.0;
            rows.push(
                RowBuilder::new("7a", "daemon idle RSS", "MB", "≤ 20 MB")
                    .note("VmRSS of the daemon process after start-up, empty journal")
                    .value(mb, mb <= 20.0),
            );
        }
        None => rows.push(RowBuilder::new("7a", "daemon idle RSS", "MB", "≤ 20 MB").not_measured("no /proc")),
    }
    match (idle, busy) {
        (Some(i), Some(b)) if load.submitted > 0 => {
            let per = b.saturating_sub(i) as f64 / load.submitted as f64;
            rows.push(
                RowBuilder::new("7b", "extra daemon RSS per in-flight deployment", "KB", "≤ 10 KB")
                    .note(format!(
                        "(VmRSS with {} deployments in flight − idle VmRSS) / deployments",
                        load.submitted
                    ))
                    .value(per, per <= 10.0),
            );
        }
        _ => rows.push(RowBuilder::new("7b", "RSS per deployment", "KB", "≤ 10 KB").not_measured("no /proc")),
    }

    // Row 6: kill -9, restart on the same journal, wait for the API and the coordinator.
    drop(daemon);
    let started = Instant::now();
    let mut daemon = Daemon::start(binary, &state, &config, &log)?;
    daemon.wait_healthy(Duration::from_secs(120))?;
    let first = listed(&daemon.api(Some(&token), Duration::from_secs(30))?, "svc-00000")?;
    let restart = started.elapsed().as_secs_f64();
    rows.push(
        RowBuilder::new("6", &format!("restart with {} in-flight deployments until resumed", load.submitted), "s", "≤ 2 s")
            .note(format!(
                "SIGKILL, start the binary, until /healthz answers and the coordinator, which resumes every deployment before it handles a message, answers a query ({first} found)"
            ))
            .value(restart, restart <= 2.0 && first == 1),
    );
    drop(daemon);
    Ok(rows)
}

/// Row 8: the real daemon watching `stagecoach-example` through the scrape
/// metrics provider with a 1 s sample interval; the service starts failing
/// 10 % of its requests in the middle of the canary analysis, and the
/// configured rollback command writes the time it started.
fn row8(opts: &BenchOptions, dir: &Path) -> Row {
    let row = RowBuilder::new(
        "8",
        "reaction: metrics endpoint at 10 % errors → rollback hook starts",
        "s",
        "≤ interval × breaches + 100 ms",
    )
    .baseline("the metrics interval × breaches (1 s × 1)", Some(1.0));
    let (Some(daemon), Some(example)) = (&opts.daemon_binary, &opts.example_binary) else {
        return row.not_measured(
            "needs the stagecoach and stagecoach-example binaries (run `stagecoach bench` from a build that has both)",
        );
    };
    match reaction(daemon, example, dir) {
        Ok((secs, samples)) => row
            .note(format!(
                "from POST /admin/fail?ratio=0.1 to the rollback command's first instruction; {samples} samples recorded before"
            ))
            .ratio(secs, |r| r <= 1.1),
        Err(e) => row.failed(e),
    }
}

/// A running `stagecoach-example` with a client thread sending it requests.
struct Example {
    child: Child,
    base: String,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Drop for Example {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_example(binary: &Path) -> Result<Example, String> {
    use std::io::BufRead as _;
    let mut child = Command::new(binary)
        .args(["--listen", "127.0.0.1:0", "--version", "2.0.1"])
        .env_remove("EXAMPLE_FAIL_RATIO")
        .env_remove("EXAMPLE_LATENCY_MS")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", binary.display()))?;
    let mut line = String::new();
    let stdout = child.stdout.take().ok_or("no stdout")?;
    std::io::BufReader::new(stdout)
        .read_line(&mut line)
        .map_err(|e| e.to_string())?;
    let base = line
        .trim_end()
        .strip_prefix("listening on ")
        .ok_or_else(|| format!("stagecoach-example did not start: {line:?}"))?
        .to_string();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (url, flag) = (format!("{base}/"), stop.clone());
    std::thread::spawn(move || {
        let Ok(client) = reqwest::blocking::Client::builder().build() else {
            return;
        };
        while !flag.load(std::sync::atomic::Ordering::Relaxed) {
            let _ = client.get(&url).send();
            std::thread::sleep(Duration::from_millis(1));
        }
    });
    Ok(Example { child, base, stop })
}

fn reaction(daemon_binary: &Path, example_binary: &Path, dir: &Path) -> Result<(f64, usize), String> {
    let example = start_example(example_binary)?;
    let state = dir.join("reaction-state");
    let marker = dir.join("rollback-started");
    let config = dir.join("reaction.toml");
    let text = format!(
        "[windows]\nnever_days = []\n[[windows.allowed]]\ndays = [\"mon\", \"tue\", \"wed\", \"thu\", \"fri\", \"sat\", \"sun\"]\n\
         start = \"00:00\"\nend = \"24:00\"\n\n\
         [types.standard]\nmonitoring_minutes = 1\n\n\
         [strategies.canary]\nsteps = [10, 50, 100]\nanalysis_minutes = 1\n\n\
         [monitoring]\nsample_interval_minutes = {}\nbreaches_to_rollback = 1\n\n\
         [services.web.metrics]\nprovider = \"scrape\"\ntargets = [\"{}/metrics\"]\ninterval_seconds = 1.0\ntimeout_seconds = 2\n\n\
         [services.web.actions.rollback]\nargv = [\"sh\", \"-c\", \"date +%s.%N > {}\"]\ntimeout_seconds = 30\n",
        1.0 / 60.0,
        example.base,
        marker.display()
    );
    std::fs::write(&config, text).map_err(|e| e.to_string())?;
    let mut daemon = Daemon::start(daemon_binary, &state, &config, &dir.join("reaction.log"))?;
    daemon.wait_healthy(Duration::from_secs(30))?;
    let token = std::fs::read_to_string(state.join("admin.token"))
        .map_err(|e| format!("cannot read the admin token: {e}"))?
        .trim()
        .to_string();
    let api = daemon.api(Some(&token), Duration::from_secs(10))?;
    let request = SubmitRequest {
        service: "web".into(),
        version: Some("2.0.1".into()),
        kind: Some("standard".into()),
        strategy: Some("canary".into()),
        ..SubmitRequest::default()
    };
    let id = api.submit(&request).map_err(|e| format!("submit: {e}"))?.id.to_string();
    // Wait until the canary is being analysed on good metrics.
    let started = Instant::now();
    let samples = loop {
        let record = api.deployment(&id).map_err(|e| format!("GET {id}: {e}"))?;
        let samples = record.monitoring.samples.len();
        if samples >= 3 {
            break samples;
        }
        if started.elapsed() > Duration::from_secs(60) {
            return Err(format!(
                "{id} did not reach canary analysis within 60 s: status {}",
                record.status
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let t0 = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|e| e.to_string())?
        .as_secs_f64();
    // The example service is no daemon: plain HTTP.
    reqwest::blocking::Client::new()
        .post(format!("{}/admin/fail?ratio=0.1", example.base))
        .send()
        .map_err(|e| format!("POST /admin/fail: {e}"))?;
    let waited = Instant::now();
    loop {
        if let Ok(text) = std::fs::read_to_string(&marker) {
            if let Ok(t1) = text.trim().parse::<f64>() {
                drop(daemon);
                return Ok((t1 - t0, samples));
            }
        }
        if waited.elapsed() > Duration::from_secs(30) {
            return Err("no rollback within 30 s of the error rate rising".into());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}
