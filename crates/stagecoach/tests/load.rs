//! Sustained load on the real daemon binary from this (separate) process
//! over loopback: 20 clients submit, approve (the manager is a person here),
//! watch and query while at least `IN_FLIGHT` deployments are in flight in
//! the simulated world, for `DURATION`. Every request must succeed; at the
//! end every deployment must reach a terminal status with a verified chain.
//!
//! Default: 15 s with 50 in flight. With `STAGECOACH_SLOW_TESTS=1` (set by
//! `.ci/run`): 60 s with 200 in flight, the figures of docs/RELIABILITY.md.

mod common;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use client::wire::{Decision, EventsQuery, ListPage, ListQuery, SubmitRequest};
use common::{approval, token, Config, Harness, TERMINAL};

const SUBMITTERS: usize = 8;
const APPROVERS: usize = 6;
const WATCHERS: usize = 3;
const QUERIERS: usize = 3;

fn slow() -> bool {
    std::env::var("STAGECOACH_SLOW_TESTS").is_ok_and(|v| v == "1")
}

#[derive(Default)]
struct Stats {
    latencies_us: Mutex<Vec<u64>>,
    errors: Mutex<Vec<String>>,
    submitted: AtomicU64,
    approved: AtomicU64,
    max_in_flight: AtomicU64,
}

impl Stats {
    fn record(&self, started: Instant, what: &str, status: u16, ok: &[u16]) {
        self.latencies_us
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(started.elapsed().as_micros() as u64);
        if !ok.contains(&status) {
            self.errors
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(format!("{what}: {status}"));
        }
    }
}

/// Times one call of the typed client and counts it: a success, an error
/// answer (acceptable when its status is in `allowed`), or no answer.
fn timed<T>(stats: &Stats, what: &str, allowed: &[u16], call: impl FnOnce() -> Result<T, client::Error>) -> Option<T> {
    let started = Instant::now();
    match call() {
        Ok(answer) => {
            stats.record(started, what, 200, &[200]);
            Some(answer)
        }
        Err(client::Error::Api(e)) => {
            stats.record(started, what, e.status, allowed);
            None
        }
        Err(e) => {
            stats.record(started, &format!("{what}: {e}"), 0, allowed);
            None
        }
    }
}

/// The clients of the load: dana submits, watches and queries, maria approves.
struct Client {
    dana: client::Client,
    maria: client::Client,
    anonymous: client::Client,
}

impl Client {
    fn new(base: &str) -> Client {
        let api = |who: &str| client::Client::new(base, &token(who)).expect("a client");
        Client {
            dana: api("dana"),
            maria: api("maria"),
            anonymous: client::Client::builder(base).and_then(|b| b.build()).expect("a client"),
        }
    }

    /// Deployments not in a terminal status, from `/metrics`.
    fn in_flight(&self, stats: &Stats) -> usize {
        let text = timed(stats, "GET /metrics", &[], || self.anonymous.metrics()).unwrap_or_default();
        text.lines()
            .filter_map(|l| l.strip_prefix("stagecoach_deployments{status=\""))
            .filter_map(|l| l.split_once("\"} "))
            .filter(|(status, _)| !TERMINAL.contains(status))
            .filter_map(|(_, n)| n.trim().parse::<usize>().ok())
            .sum()
    }

    /// A page of `GET /v1/deployments` as dana or maria.
    fn list(
        &self,
        stats: &Stats,
        api: &client::Client,
        service: Option<&str>,
        status: Option<&str>,
    ) -> Option<ListPage> {
        let query = ListQuery {
            service: service.map(str::to_string),
            status: status.map(str::to_string),
            ..ListQuery::default()
        };
        timed(stats, &format!("GET /v1/deployments {query:?}"), &[], || {
            api.list_page(&query)
        })
    }

    /// maria approves `id` as manager; `allowed`: error statuses that are no error here.
    fn approve(&self, stats: &Stats, id: &str, reason: Option<&str>, allowed: &[u16]) -> bool {
        let request = approval("manager", Decision::Approve, reason);
        let what = format!("POST /v1/deployments/{id}/approvals");
        timed(stats, &what, allowed, || self.maria.decide(id, &request)).is_some()
    }
}

fn in_flight(page: &ListPage) -> Vec<(String, String)> {
    page.deployments
        .iter()
        .map(|d| (d.id.to_string(), d.status.to_string()))
        .filter(|(_, s)| !TERMINAL.contains(&s.as_str()))
        .collect()
}

#[test]
fn sustained_load_from_twenty_clients() {
    let (mut duration, target) = if slow() {
        (Duration::from_secs(60), 200usize)
    } else {
        (Duration::from_secs(15), 50usize)
    };
    if let Some(s) = std::env::var("STAGECOACH_LOAD_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        duration = Duration::from_secs(s);
    }
    let config = Config {
        manager_human: true,
        analysis_minutes: 0.02,
        standard_monitoring_minutes: 0.1,
        ..Config::default()
    }
    .principal("dana", &["deployer"])
    .principal("maria", &["manager"]);
    let mut h = Harness::new(&config);
    let d = h.start();
    let base = d.url.clone();

    let stats = Stats::default();
    let stop = AtomicBool::new(false);
    let next_service = AtomicU64::new(0);
    let started = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..SUBMITTERS {
            s.spawn(|| {
                let c = Client::new(&base);
                while !stop.load(Ordering::Relaxed) {
                    let live = c.in_flight(&stats);
                    stats.max_in_flight.fetch_max(live as u64, Ordering::Relaxed);
                    if live >= target {
                        // Enough in flight: this client turns to reading for a while.
                        c.list(&stats, &c.dana, Some("svc-0"), Some("in_progress"));
                        continue;
                    }
                    // Each deployment its own service, so they run side by side.
                    let n = next_service.fetch_add(1, Ordering::Relaxed);
                    let strategy = ["canary", "blue-green", "rolling"][n as usize % 3];
                    let request = SubmitRequest {
                        service: format!("svc-{n}"),
                        version: Some("1.0.0".into()),
                        kind: Some("standard".into()),
                        strategy: Some(strategy.into()),
                        changes: vec![format!("change {n}")],
                        ..SubmitRequest::default()
                    };
                    if timed(&stats, "POST /v1/deployments", &[], || c.dana.submit(&request)).is_some() {
                        stats.submitted.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
        for k in 0..APPROVERS {
            let (stats, stop) = (&stats, &stop);
            let base = base.clone();
            s.spawn(move || {
                let c = Client::new(&base);
                while !stop.load(Ordering::Relaxed) {
                    let awaiting = c
                        .list(stats, &c.maria, None, Some("awaiting_approval"))
                        .map(|page| in_flight(&page))
                        .unwrap_or_default();
                    // Each approver takes its own share, so no two approve the same one.
                    for (id, _) in awaiting {
                        let n: usize = id.trim_start_matches("d-").parse().unwrap_or(0);
                        if n % APPROVERS != k {
                            continue;
                        }
                        if c.approve(stats, &id, Some("load test"), &[]) {
                            stats.approved.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    std::thread::yield_now();
                }
            });
        }
        for _ in 0..WATCHERS {
            s.spawn(|| {
                let c = Client::new(&base);
                let mut n = 1u64;
                while !stop.load(Ordering::Relaxed) {
                    if stats.submitted.load(Ordering::Relaxed) < n {
                        std::thread::yield_now();
                        continue;
                    }
                    // Follow a deployment's event stream for a few entries, then the next one.
                    let started = Instant::now();
                    let ok = watch_some(&c.dana, n, 5);
                    stats.record(
                        started,
                        &format!("GET /v1/events?deployment={n}"),
                        if ok { 200 } else { 0 },
                        &[200],
                    );
                    n = n % stats.submitted.load(Ordering::Relaxed).max(1) + 1;
                }
            });
        }
        for _ in 0..QUERIERS {
            s.spawn(|| {
                let c = Client::new(&base);
                let mut n = 1u64;
                while !stop.load(Ordering::Relaxed) {
                    if stats.submitted.load(Ordering::Relaxed) < n {
                        std::thread::yield_now();
                        continue;
                    }
                    let id = format!("d-{n:06}");
                    timed(&stats, &format!("GET /v1/deployments/{id}"), &[], || {
                        c.dana.deployment(&id)
                    });
                    timed(&stats, &format!("GET /v1/deployments/{id}/verify"), &[], || {
                        c.dana.verify(&id)
                    });
                    c.list(&stats, &c.dana, Some("svc-0"), None);
                    n = n % stats.submitted.load(Ordering::Relaxed).max(1) + 1;
                }
            });
        }
        std::thread::sleep(duration); // the length of the load, not a wait for an event
        stop.store(true, Ordering::Relaxed);
    });
    let loaded = started.elapsed();

    // Approve what is left as it comes to need it; every deployment must end, with an intact chain.
    let c = Client::new(&base);
    let submitted = stats.submitted.load(Ordering::Relaxed);
    let mut open: BTreeSet<String> = (1..=submitted).map(|n| format!("d-{n:06}")).collect();
    // A stream that falls too far behind is ended by the daemon; reconnect after the last entry seen.
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut last = 0u64;
    let mut reconnects = 0;
    while !open.is_empty() {
        assert!(
            Instant::now() < deadline,
            "{} deployments did not end: {:?}",
            open.len(),
            open.iter().take(5).collect::<Vec<_>>()
        );
        let mut events = d.all_events(last, &token("dana"));
        while let Some(e) = events.next_before(deadline) {
            last = e["seq"].as_u64().unwrap_or(last);
            let id = e["deployment"].as_str().unwrap_or_default().to_string();
            for status in common::statuses(&e) {
                if status == "awaiting_approval" && open.contains(&id) {
                    // An approver of the load may have been first (409).
                    c.approve(&stats, &id, None, &[409]);
                }
                if TERMINAL.contains(&status.as_str()) {
                    assert_eq!(status, "succeeded", "{id}");
                    open.remove(&id);
                }
            }
            if open.is_empty() {
                break;
            }
        }
        reconnects += 1;
    }
    println!("drained after {} stream connection(s)", reconnects);
    let ids: Vec<String> = (1..=submitted).map(|n| format!("d-{n:06}")).collect();
    std::thread::scope(|s| {
        for chunk in ids.chunks(ids.len().div_ceil(8).max(1)) {
            let d = &d;
            s.spawn(move || {
                for id in chunk {
                    let v = d.verify(id, &token("dana"));
                    assert_eq!(v["intact"], true, "{id}: {v}");
                }
            });
        }
    });
    let ended = ids;

    let mut lat = stats.latencies_us.into_inner().unwrap_or_else(|e| e.into_inner());
    lat.sort_unstable();
    let p = |q: f64| lat[((lat.len() as f64 * q) as usize).min(lat.len() - 1)] as f64 / 1000.0;
    let errors = stats.errors.into_inner().unwrap_or_else(|e| e.into_inner());
    println!(
        "load: {:.0} s, {} requests ({:.0}/s), {} errors, p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; \
         {} deployments submitted, {} approved during the load, at most {} in flight; all {} ended succeeded with intact chains",
        loaded.as_secs_f64(),
        lat.len(),
        lat.len() as f64 / loaded.as_secs_f64(),
        errors.len(),
        p(0.50),
        p(0.99),
        p(1.0),
        submitted,
        stats.approved.load(Ordering::Relaxed),
        stats.max_in_flight.load(Ordering::Relaxed),
        ended.len()
    );
    assert!(errors.is_empty(), "errors: {:?}", &errors[..errors.len().min(20)]);
    assert!(
        stats.max_in_flight.load(Ordering::Relaxed) as usize >= target,
        "at least {target} deployments in flight at once"
    );
}

/// Reads `count` entries of a deployment's event stream (or until it ends); true when it answered 200.
fn watch_some(api: &client::Client, deployment: u64, count: usize) -> bool {
    let query = EventsQuery {
        deployment: Some(deployment.to_string()),
        after: None,
    };
    let Ok(mut stream) = api.events(&query) else {
        return false;
    };
    for _ in 0..count {
        if !matches!(
            stream.next_entry_before(Instant::now() + Duration::from_secs(10)),
            Ok(Some(_))
        ) {
            break;
        }
    }
    true
}
