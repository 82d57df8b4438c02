//! `stagecoach demo`: a real release on this machine, watched and rolled back.
//!
//! Starts the daemon in this process on a free loopback port with the bundled
//! demo configuration (`examples/demo.toml`), sends steady traffic to the
//! service's proxy, and deploys three releases of the example service through
//! the daemon's API: 1.0.0 (the first, so production has something), 2.0.0
//! with a canary (succeeds) and 3.0.0, which fails 8 % of its requests (rolled
//! back when a canary step sees it). Every instance is a real process; the
//! metrics are the proxy's real counters. Then it prints both Deployment
//! Records and where the state dir is.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use crate::commands::{self, ClientCommand, ClientDefaults, ClientOpts};

/// The demo's configuration, bundled into the binary.
pub const DEMO_CONFIG: &str = include_str!("../../../examples/demo.toml");

/// The service the demo deploys.
const SERVICE: &str = "shop";

/// Requests per second the traffic generator sends (spread over its threads).
const REQUESTS_PER_SECOND: u32 = 200;
const TRAFFIC_THREADS: u32 = 4;

/// What to run; `state_dir` defaults to a new directory under the system's temporary directory.
#[derive(Debug, Default)]
pub struct DemoOptions {
    pub state_dir: Option<PathBuf>,
}

/// Requests sent through the proxy, by the version that answered and by outcome.
#[derive(Default)]
struct Traffic {
    by_version: BTreeMap<String, (u64, u64)>,
    unanswered: u64,
}

fn new_state_dir() -> Result<PathBuf, String> {
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%S");
    let base = std::env::temp_dir();
    for n in 0..100 {
        let dir = base.join(format!("stagecoach-demo-{stamp}-{n}"));
        if std::fs::create_dir(&dir).is_ok() {
            return Ok(dir);
        }
    }
    Err(format!(
        "cannot create a state dir under {}; pass --state-dir",
        base.display()
    ))
}

/// The demo configuration, made to run here: this binary serves the
/// instances, and the proxy listens on a free port.
fn configuration(state_dir: &Path) -> Result<(workflow::Settings, daemon::DaemonConfig, String), String> {
    let env = BTreeMap::new();
    let (settings, mut config) =
        daemon::config::load(Some(("examples/demo.toml", DEMO_CONFIG)), &env).map_err(|e| e.to_string())?;
    let exe = std::env::current_exe()
        .map_err(|e| format!("cannot find this program's path to start the example service: {e}"))?;
    let service = config
        .services
        .get_mut(SERVICE)
        .ok_or("the demo configuration has no service shop")?;
    let process = service
        .process
        .as_mut()
        .ok_or("the demo configuration does not run shop locally")?;
    if process.argv.first().map(String::as_str) == Some("stagecoach") {
        process.argv[0] = exe.display().to_string();
    }
    process.listen = format!("127.0.0.1:{}", daemon::process::free_listen_port()?);
    let proxy = process.listen.clone();
    config.server.listen = "127.0.0.1:0".into();
    config.server.url = None;
    config.storage.path = state_dir.to_path_buf();
    config.validate()?;
    Ok((settings, config, proxy))
}

/// Sends steady traffic to `proxy` until `stop` is set.
fn traffic(proxy: &str, stop: Arc<AtomicBool>, seen: Arc<Mutex<Traffic>>) -> Vec<std::thread::JoinHandle<()>> {
    let period = Duration::from_secs_f64(f64::from(TRAFFIC_THREADS) / f64::from(REQUESTS_PER_SECOND));
    (0..TRAFFIC_THREADS)
        .map(|_| {
            let url = format!("http://{proxy}/");
            let stop = stop.clone();
            let seen = seen.clone();
            std::thread::spawn(move || {
                let Ok(http) = reqwest::blocking::Client::builder()
                    .no_proxy()
                    .timeout(Duration::from_secs(2))
                    .build()
                else {
                    return;
                };
                let mut next = Instant::now();
                while !stop.load(Ordering::Relaxed) {
                    let answer = http.get(&url).send();
                    let mut t = seen.lock().unwrap_or_else(|e| e.into_inner());
                    match answer {
                        Ok(r) => {
                            let version = r
                                .headers()
                                .get("x-stagecoach-version")
                                .and_then(|v| v.to_str().ok())
                                .unwrap_or("?")
                                .to_string();
                            let entry = t.by_version.entry(version).or_default();
                            entry.0 += 1;
                            if r.status().is_server_error() {
                                entry.1 += 1;
                            }
                        }
                        Err(_) => t.unanswered += 1,
                    }
                    drop(t);
                    // Pacing: the generator's own rate, not a wait for something to happen.
                    next += period;
                    let now = Instant::now();
                    if next > now {
                        std::thread::sleep(next - now);
                    } else {
                        next = now;
                    }
                }
            })
        })
        .collect()
}

/// Bold on a terminal, unless NO_COLOR is set.
fn bold(text: &str) -> String {
    use std::io::IsTerminal;
    if std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none() {
        format!("\x1b[1m{text}\x1b[0m")
    } else {
        text.to_string()
    }
}

fn heading(text: &str) {
    println!("\n{}", bold(text));
}

/// Runs the demo; the exit code is 0 when 2.0.0 went out and 3.0.0 was rolled back.
pub fn run(options: DemoOptions) -> Result<u8, String> {
    let started = Instant::now();
    let state_dir = match options.state_dir {
        Some(d) => {
            std::fs::create_dir_all(&d).map_err(|e| format!("cannot create the state dir {}: {e}", d.display()))?;
            d
        }
        None => new_state_dir()?,
    };
    let (settings, config, proxy) = configuration(&state_dir)?;

    println!(
        "{}: three releases of the example service `{SERVICE}`, run on this machine.",
        bold("Stagecoach demo")
    );
    println!(
        "Every wait is cut to seconds (canary analysis 6 s, a sample every 3 s, monitoring 15 s; see examples/demo.toml)."
    );

    let (ready_tx, ready_rx) = mpsc::channel();
    let daemon = std::thread::spawn(move || {
        daemon::run_with(daemon::Options { settings, config }, move |ready| {
            let _ = ready_tx.send(ready);
        })
    });
    let ready = match ready_rx.recv() {
        Ok(r) => r,
        Err(_) => {
            return Err(match daemon.join() {
                Ok(Err(e)) => e,
                _ => "the daemon stopped before it served".into(),
            })
        }
    };
    let addr = ready.addrs.first().copied().ok_or("the daemon listens on no address")?;
    let server = format!("http://{addr}");
    println!("daemon:    {server} (in this process)");
    println!("state dir: {}", state_dir.display());
    println!(
        "service:   http://{proxy}/ (Stagecoach's proxy; 2 instances per version), {REQUESTS_PER_SECOND} requests/s of traffic"
    );

    let opts = ClientOpts {
        server: Some(server.clone()),
        state_dir: Some(state_dir.clone()),
        ..ClientOpts::default()
    };
    let defaults = ClientDefaults {
        server_url: server,
        state_dir: state_dir.clone(),
    };
    let client = |cmd: ClientCommand| commands::run_code(cmd, &opts, defaults.clone());
    let submit = |version: &str, change: &str| {
        client(ClientCommand::Submit {
            service: SERVICE.into(),
            version: Some(version.into()),
            kind: "standard".into(),
            strategy: Some("canary".into()),
            changes: vec![change.into()],
            scheduled_for: None,
            target_version: None,
            override_window: None,
            attest: vec!["code_review_approved".into(), "changelog_updated".into()],
            watch: true,
        })
    };

    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(Mutex::new(Traffic::default()));
    let generators = traffic(&proxy, stop.clone(), seen.clone());

    heading("1/3  shop 1.0.0 goes into production (the first release: nothing to compare it with)");
    let first = submit("1.0.0", "First release of the shop");
    let mut outcome = Err("1.0.0 did not reach production".to_string());
    if first == 0 {
        heading("2/3  shop 2.0.0, a good release: canary 10 % → 50 % → 100 %, then monitoring");
        let second = submit("2.0.0", "Faster product search");
        heading("3/3  shop 3.0.0, a bad release: 8 % of its requests fail");
        let third = submit("3.0.0", "New checkout flow");
        outcome = Ok((second, third));
    }
    stop.store(true, Ordering::Relaxed);
    for g in generators {
        let _ = g.join();
    }

    if let Ok((second, third)) = &outcome {
        heading("Deployment Record of shop 2.0.0 (d-000002)");
        client(ClientCommand::Record { id: "2".into() });
        heading("Deployment Record of shop 3.0.0 (d-000003)");
        client(ClientCommand::Record { id: "3".into() });
        let t = seen.lock().unwrap_or_else(|e| e.into_inner());
        heading("Traffic seen by the demo's clients");
        for (version, (n, errors)) in &t.by_version {
            let share = if *n == 0 {
                0.0
            } else {
                *errors as f64 * 100.0 / *n as f64
            };
            println!("  {version:>6}: {n:>6} requests, {errors:>4} errors ({share:.1} %)");
        }
        if t.unanswered > 0 {
            println!(
                "  {:>6} requests got no answer (sent before 1.0.0 was up: until the first release, nothing listens)",
                t.unanswered
            );
        }
        let expected = *second == 0 && *third == 1;
        println!(
            "\nshop 2.0.0 {}, shop 3.0.0 {} — {:.0} s in all.",
            if *second == 0 { "went out" } else { "did NOT go out" },
            if *third == 1 {
                "was rolled back"
            } else {
                "did not end as expected"
            },
            started.elapsed().as_secs_f64()
        );
        println!(
            "The journal and the records stay in {}.\nCheck a record's hash chain: {} verify 3 --offline --state-dir {}",
            state_dir.display(),
            this_binary(),
            shell_word(&state_dir.display().to_string())
        );
        if !expected {
            outcome = Err("the demo did not end as expected (see above)".into());
        }
    }

    // Stop the daemon (it stops the instances and the proxy) and wait for it.
    drop(ready.server.stop(true));
    match daemon.join() {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(e),
        Err(_) => return Err("the daemon thread panicked".into()),
    }
    outcome.map(|_| 0)
}

/// How to run this binary again from the current directory, as a shell
/// word: `stagecoach` when that name on `PATH` is this binary (installed),
/// else its path, relative when it is below the current directory (after
/// `cargo run`: `./target/debug/stagecoach`).
fn this_binary() -> String {
    let Ok(exe) = std::env::current_exe() else {
        return "stagecoach".into();
    };
    let same = |candidate: &Path| {
        candidate.is_file() && std::fs::canonicalize(candidate).ok() == std::fs::canonicalize(&exe).ok()
    };
    let path = std::env::var_os("PATH").unwrap_or_default();
    if std::env::split_paths(&path).any(|dir| same(&dir.join("stagecoach"))) {
        return "stagecoach".into();
    }
    let shown = std::env::current_dir()
        .ok()
        .and_then(|cwd| exe.strip_prefix(cwd).ok().map(|rest| Path::new(".").join(rest)))
        .unwrap_or_else(|| exe.clone());
    shell_word(&shown.display().to_string())
}

/// `text` as one word for a POSIX shell: as it is when it holds only safe
/// characters, else in single quotes.
fn shell_word(text: &str) -> String {
    let safe = |c: char| c.is_ascii_alphanumeric() || "/._-+:=@,%".contains(c);
    if !text.is_empty() && text.chars().all(safe) {
        text.to_string()
    } else {
        format!("'{}'", text.replace('\'', "'\\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::shell_word;

    #[test]
    fn shell_words_are_quoted_only_when_needed() {
        assert_eq!(
            shell_word("/tmp/stagecoach-demo.1/state"),
            "/tmp/stagecoach-demo.1/state"
        );
        assert_eq!(shell_word("./target/debug/stagecoach"), "./target/debug/stagecoach");
        assert_eq!(shell_word("/home/a b/state"), "'/home/a b/state'");
        assert_eq!(shell_word("it's"), "'it'\\''s'");
        assert_eq!(shell_word(""), "''");
    }
}
