//! Rows 5 to 8: the real daemon binary on a loopback port, with a temporary
//! state dir, driven over HTTP like a client would.
//!
//! One daemon serves rows 7 (idle RSS), 5 (the submission load) and 7 again
//! (RSS with every submitted deployment in flight); it is then killed with
//! SIGKILL and restarted on the same state dir for row 6.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

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

    /// Waits until `/healthz` answers 200.
    fn wait_healthy(&mut self, limit: Duration) -> Result<Duration, String> {
        let started = Instant::now();
        let client = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .map_err(|e| e.to_string())?;
        while started.elapsed() < limit {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("the daemon exited with {status}"));
            }
            if client
                .get(format!("{}/healthz", self.url))
                .send()
                .is_ok_and(|r| r.status().is_success())
            {
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

/// One keep-alive HTTP/1.1 connection, spoken by hand: the load generator
/// must cost little next to the daemon it measures on the same two cores.
struct Connection {
    stream: std::io::BufReader<std::net::TcpStream>,
}

impl Connection {
    fn open(addr: &str) -> std::io::Result<Connection> {
        let stream = std::net::TcpStream::connect(addr)?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        Ok(Connection {
            stream: std::io::BufReader::new(stream),
        })
    }

    /// Sends one POST and reads the answer: (status, body).
    fn post(&mut self, host: &str, path: &str, token: &str, body: &str) -> std::io::Result<(u16, String)> {
        use std::io::{BufRead as _, Write as _};
        let request = format!(
            "POST {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        self.stream.get_mut().write_all(request.as_bytes())?;
        let bad = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string());
        let mut line = String::new();
        self.stream.read_line(&mut line)?;
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad("no status line"))?;
        let mut length = None;
        let mut chunked = false;
        loop {
            line.clear();
            self.stream.read_line(&mut line)?;
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse::<usize>().ok();
                } else if name.eq_ignore_ascii_case("transfer-encoding") && value.contains("chunked") {
                    chunked = true;
                }
            }
        }
        let mut body = Vec::new();
        if chunked {
            loop {
                line.clear();
                self.stream.read_line(&mut line)?;
                let size = usize::from_str_radix(line.trim(), 16).map_err(|_| bad("bad chunk size"))?;
                let mut chunk = vec![0; size + 2];
                self.stream.read_exact(&mut chunk)?;
                if size == 0 {
                    break;
                }
                body.extend_from_slice(&chunk[..size]);
            }
        } else {
            body.resize(length.ok_or_else(|| bad("no content-length"))?, 0);
            self.stream.read_exact(&mut body)?;
        }
        Ok((status, String::from_utf8_lossy(&body).into_owned()))
    }
}

/// `total` submissions of distinct services from `clients` threads, each
/// with its own keep-alive connection.
fn submit_load(url: &str, token: &str, clients: usize, total: usize) -> Result<Load, String> {
    let host = url.trim_start_matches("http://").to_string();
    let started = Instant::now();
    let results: Vec<(Vec<Duration>, u64, Option<String>)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..clients)
            .map(|c| {
                let host = host.clone();
                scope.spawn(move || {
                    let mut latencies = vec![];
                    let mut errors = 0;
                    let mut first_error = None;
                    let mut connection = None;
                    for i in (c..total).step_by(clients) {
                        let body = format!(
                            r#"{{"service":"svc-{i:05}","version":"2.0.1","type":"standard","strategy":"canary","changes":["bench"]}}"#
                        );
                        let sent = Instant::now();
                        let conn = match connection.as_mut() {
                            Some(conn) => conn,
                            None => match Connection::open(&host) {
                                Ok(conn) => connection.insert(conn),
                                Err(e) => {
                                    errors += 1;
                                    first_error.get_or_insert_with(|| format!("connect: {e}"));
                                    continue;
                                }
                            },
                        };
                        match conn.post(&host, "/v1/deployments", token, &body) {
                            Ok((status, _)) if (200..300).contains(&status) => latencies.push(sent.elapsed()),
                            Ok((status, text)) => {
                                errors += 1;
                                first_error.get_or_insert_with(|| format!("{status}: {text}"));
                            }
                            Err(e) => {
                                errors += 1;
                                first_error.get_or_insert_with(|| e.to_string());
                                connection = None;
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
fn listed(url: &str, token: &str, service: &str) -> Result<usize, String> {
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| e.to_string())?;
    let mut r = client
        .get(format!("{url}/v1/deployments?service={service}"))
        .bearer_auth(token)
        .send()
        .map_err(|e| e.to_string())?;
    if !r.status().is_success() {
        return Err(format!("GET /v1/deployments: {}", r.status()));
    }
    let mut text = String::new();
    r.read_to_string(&mut text).map_err(|e| e.to_string())?;
    let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
    let list = v
        .get("deployments")
        .and_then(|d| d.as_array())
        .or_else(|| v.as_array())
        .ok_or("GET /v1/deployments: no list in the answer")?;
    Ok(list.len())
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

    let load = submit_load(&daemon.url, &token, 32, total)?;
    let rate = load.submitted as f64 / load.wall.as_secs_f64();
    let commit_rate = single_commit_us.map(|us| 1e6 / us);
    let scale = format!("{total} submissions, 32 keep-alive clients");
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
    let first = listed(&daemon.url, &token, "svc-00000")?;
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
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| e.to_string())?;
    let submitted: serde_json::Value = client
        .post(format!("{}/v1/deployments", daemon.url))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body(r#"{"service":"web","version":"2.0.1","type":"standard","strategy":"canary"}"#)
        .send()
        .and_then(|r| r.json())
        .map_err(|e| format!("submit: {e}"))?;
    let id = submitted["id"]
        .as_str()
        .ok_or_else(|| format!("submit answered {submitted}"))?
        .to_string();
    // Wait until the canary is being analysed on good metrics.
    let started = Instant::now();
    let samples = loop {
        let record: serde_json::Value = client
            .get(format!("{}/v1/deployments/{id}", daemon.url))
            .bearer_auth(&token)
            .send()
            .and_then(|r| r.json())
            .map_err(|e| format!("GET {id}: {e}"))?;
        let samples = record["monitoring"]["samples"].as_array().map_or(0, |s| s.len());
        if samples >= 3 {
            break samples;
        }
        if started.elapsed() > Duration::from_secs(60) {
            return Err(format!(
                "{id} did not reach canary analysis within 60 s: status {}",
                record["status"]
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let t0 = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|e| e.to_string())?
        .as_secs_f64();
    client
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
