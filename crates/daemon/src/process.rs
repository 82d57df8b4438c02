//! The local process target (`[services.NAME.process]`): a release goes
//! out on this machine, with nothing else installed. Each version of the
//! service runs as `instances` processes on loopback ports, and a weighted
//! proxy ([`proxy::Proxy`]) at `listen` splits the traffic between the
//! versions: canary steps change the weights, a blue-green switch moves all
//! traffic at once, a rolling update moves it in proportion to the
//! instances replaced, and a rollback sends everything back.
//!
//! The proxy counts requests, errors and latency per version on
//! `http://LISTEN/__stagecoach/metrics`, which the `scrape` metrics provider
//! reads (see docs/configuration.md).
//!
//! Processes belong to the daemon: they stop with it. After a crash the
//! next daemon starts the versions it needs again on new ports.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;
use workflow::strategy::DeployStep;
use workflow::types::Version;

/// How a service runs locally.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProcessConfig {
    /// The command of one instance; `{port}`, `{version}` and `{instance}`
    /// are replaced. Never run through a shell.
    pub argv: Vec<String>,
    /// Instances per version.
    #[serde(default = "default_instances")]
    pub instances: u32,
    /// Where the proxy listens: the service's address.
    pub listen: String,
    /// Health endpoint of an instance; it must answer 200.
    #[serde(default = "default_health_path")]
    pub health_path: String,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Variables of the daemon's environment passed on (see `hooks::CommandSpec`).
    #[serde(default)]
    pub env_passthrough: Vec<String>,
    /// Extra arguments for particular versions (e.g. to make a demo release misbehave).
    #[serde(default)]
    pub version_args: BTreeMap<String, Vec<String>>,
    /// How long an instance may take to answer its health endpoint after starting.
    #[serde(default = "default_start_timeout")]
    pub start_timeout_seconds: f64,
}

fn default_instances() -> u32 {
    2
}
fn default_health_path() -> String {
    "/health".into()
}
fn default_start_timeout() -> f64 {
    10.0
}

impl ProcessConfig {
    pub fn validate(&self, path: &str) -> Result<(), String> {
        if self.argv.first().is_none_or(|p| p.trim().is_empty()) {
            return Err(format!("{path}.argv: must name a program"));
        }
        if !self.argv.iter().any(|a| a.contains("{port}")) {
            return Err(format!(
                "{path}.argv: must contain {{port}}, the loopback port each instance listens on"
            ));
        }
        if self.instances == 0 || self.instances > 32 {
            return Err(format!("{path}.instances: {} must be between 1 and 32", self.instances));
        }
        let listen: SocketAddr = self.listen.parse().map_err(|_| {
            format!(
                "{path}.listen: {:?} is not an address such as \"127.0.0.1:8080\"",
                self.listen
            )
        })?;
        if !listen.ip().is_loopback() {
            return Err(format!(
                "{path}.listen: the local process target listens on loopback only"
            ));
        }
        hooks::validate_passthrough(&self.env_passthrough, path)?;
        if !self.health_path.starts_with('/') {
            return Err(format!("{path}.health_path: must start with /"));
        }
        if !(self.start_timeout_seconds.is_finite() && self.start_timeout_seconds > 0.0) {
            return Err(format!("{path}.start_timeout_seconds: must be a positive number"));
        }
        Ok(())
    }
}

/// The metrics source of a local service without `[services.NAME.metrics]`: the proxy's own
/// per-version counters, scraped at `http://LISTEN/__stagecoach/metrics`.
pub fn proxy_metrics(listen: &str) -> probes::MetricsConfig {
    let mut scrape = probes::ScrapeConfig::new([format!("http://{listen}{}/metrics", proxy::RESERVED_PREFIX)]);
    scrape.requests_metric = "stagecoach_proxy_requests_total".into();
    scrape.latency_histogram = "stagecoach_proxy_request_duration_seconds".into();
    scrape.match_labels = BTreeMap::from([("version".to_string(), "{version}".to_string())]);
    // The proxy's counters are cheap to read: a 2 s window is enough for a first read.
    scrape.interval_seconds = 2.0;
    probes::MetricsConfig::Scrape(scrape)
}

struct Instance {
    child: tokio::process::Child,
    url: String,
    /// Keeps the instance's port from being handed to another instance while it runs.
    _port: PortLease,
}

#[derive(Default)]
struct State {
    proxy: Option<proxy::Proxy>,
    running: BTreeMap<String, Vec<Instance>>,
    weights: BTreeMap<String, u32>,
}

/// How long a stopped instance gets to finish its requests after `SIGTERM`.
const STOP_GRACE: Duration = Duration::from_secs(5);

async fn stop(instance: &mut Instance) {
    if let Err(e) = hooks::terminate(&mut instance.child, STOP_GRACE).await {
        tracing::warn!(url = %instance.url, error = %e, "could not stop an instance");
    }
}

/// Every running instance as a backend of the proxy.
fn backends(running: &BTreeMap<String, Vec<Instance>>) -> Vec<proxy::Backend> {
    running
        .iter()
        .flat_map(|(v, list)| list.iter().map(move |i| proxy::Backend::new(v.clone(), i.url.clone())))
        .collect()
}

/// Why an instance did not start.
enum Start {
    /// It exited before it was healthy: possibly its port was taken, so another port may work.
    Exited(String),
    /// Anything else (no program, no health within the timeout): another try would fail alike.
    Failed(String),
}

/// The processes and the proxy of one service.
pub struct ProcessTarget {
    service: String,
    config: ProcessConfig,
    http: reqwest::Client,
    state: Mutex<State>,
}

/// Ports this daemon has handed out or will listen on: the instances still running and every
/// configured proxy (reserved at start, before the proxy binds it). A port is free for the system
/// between our probe and the instance's own bind, so without this two instances (or an instance and
/// a proxy not yet started) could be given the same port, and the second instance's health check
/// would be answered by the first.
static PORTS: std::sync::Mutex<std::collections::BTreeSet<u16>> =
    std::sync::Mutex::new(std::collections::BTreeSet::new());

fn ports() -> std::sync::MutexGuard<'static, std::collections::BTreeSet<u16>> {
    PORTS.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A port taken from [`PORTS`]; given back when dropped.
struct PortLease(u16);

impl Drop for PortLease {
    fn drop(&mut self) {
        ports().remove(&self.0);
    }
}

/// A loopback port that nothing listens on now and that this daemon has not handed out.
fn free_port() -> Result<PortLease, String> {
    // The system hands out ports in a wide range: a few tries find one we have not taken.
    for _ in 0..64 {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .map_err(|e| format!("no free loopback port: {e}"))?;
        if ports().insert(port) {
            return Ok(PortLease(port));
        }
    }
    Err("no free loopback port: every port offered is already in use by this daemon's instances".into())
}

/// A free loopback port for a proxy's `listen` that nothing of this machine
/// can take before the proxy binds it. The proxy binds only at its service's
/// first deployment; a port from the system's ephemeral range (what binding
/// port 0 gives) may meanwhile become the local port of some outgoing
/// connection, and the proxy then cannot listen. Ports below the range
/// (`/proc/sys/net/ipv4/ip_local_port_range`, 32768 by default) are never
/// handed out by the system; this returns one of them that is free now,
/// starting at a place that differs between processes.
pub fn free_listen_port() -> Result<u16, String> {
    let low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|t| t.split_whitespace().next().and_then(|p| p.parse::<u16>().ok()))
        .unwrap_or(32768);
    // Above the well-known and common service ports.
    let first = 10_000u16;
    if low <= first {
        return Err(format!(
            "no port below the ephemeral range (it starts at {low}); set the proxy's listen address yourself"
        ));
    }
    let span = u32::from(low - first);
    let start = std::process::id().wrapping_mul(7919) % span;
    for i in 0..span {
        let port = first + ((start + i) % span) as u16;
        if ports().contains(&port) {
            continue;
        }
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            ports().insert(port);
            return Ok(port);
        }
    }
    Err(format!("no free loopback port from {first} to {low}"))
}

/// How often an instance is started again on another port when it exits at start: another program
/// may have bound its port between our probe and the instance's own bind.
const START_TRIES: u32 = 3;

impl ProcessTarget {
    pub fn new(service: &str, config: ProcessConfig) -> ProcessTarget {
        // The proxy binds its port at the first deployment; no instance may take it before then.
        if let Ok(listen) = config.listen.parse::<SocketAddr>() {
            ports().insert(listen.port());
        }
        ProcessTarget {
            service: service.to_string(),
            config,
            http: probes::probe_client(Some(Duration::from_secs(2))),
            state: Mutex::new(State::default()),
        }
    }

    /// Starts one instance of `version` and waits until it is healthy, on another port when it
    /// exits at start (see [`START_TRIES`]).
    async fn start_instance(&self, version: &str, number: u32) -> Result<Instance, String> {
        let mut tries = 1;
        loop {
            match self.try_start_instance(version, number).await {
                Err(Start::Exited(message)) if tries < START_TRIES => {
                    tracing::warn!(service = %self.service, version, instance = number, "{message}; starting it on another port");
                    tries += 1;
                }
                Err(Start::Exited(message) | Start::Failed(message)) => return Err(message),
                Ok(instance) => return Ok(instance),
            }
        }
    }

    async fn try_start_instance(&self, version: &str, number: u32) -> Result<Instance, Start> {
        let lease = free_port().map_err(Start::Failed)?;
        let port = lease.0;
        let fill = |a: &String| {
            a.replace("{port}", &port.to_string())
                .replace("{version}", version)
                .replace("{instance}", &number.to_string())
        };
        let mut argv: Vec<String> = self.config.argv.iter().map(fill).collect();
        argv.extend(self.config.version_args.get(version).cloned().unwrap_or_default());
        let mut cmd = tokio::process::Command::new(&argv[0]);
        cmd.args(&argv[1..])
            .env_clear()
            .envs(hooks::inherited_env(&self.config.env_passthrough))
            .envs(&self.config.env)
            .env("STAGECOACH_SERVICE", &self.service)
            .env("STAGECOACH_VERSION", version)
            .env("STAGECOACH_INSTANCE", number.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .process_group(0);
        let mut child = cmd
            .spawn()
            .map_err(|e| Start::Failed(format!("cannot start {} for {} {version}: {e}", argv[0], self.service)))?;
        let url = format!("http://127.0.0.1:{port}");
        let health = format!("{url}{}", self.config.health_path);
        let deadline = tokio::time::Instant::now() + Duration::from_secs_f64(self.config.start_timeout_seconds);
        let mut wait = Duration::from_millis(20);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(Start::Exited(format!(
                    "{} {version} instance {number} exited at start ({status})",
                    self.service
                )));
            }
            if let Ok(r) = self.http.get(&health).send().await {
                // Healthy, and still running: the answer came from this instance, not from a program
                // that took its port first (and made it exit).
                if r.status().is_success() && matches!(child.try_wait(), Ok(None)) {
                    break;
                }
            }
            if tokio::time::Instant::now() >= deadline {
                let _ = child.kill().await;
                return Err(Start::Failed(format!(
                    "{} {version} instance {number} did not answer {health} within {} s",
                    self.service, self.config.start_timeout_seconds
                )));
            }
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_millis(500));
        }
        tracing::info!(service = %self.service, version, instance = number, url = %url, "instance started");
        Ok(Instance {
            child,
            url,
            _port: lease,
        })
    }

    /// Makes `count` instances of `version` run.
    async fn scale(&self, state: &mut State, version: &str, count: u32) -> Result<(), String> {
        let have = state.running.get(version).map(|v| v.len() as u32).unwrap_or(0);
        for number in have + 1..=count {
            let instance = self.start_instance(version, number).await?;
            state.running.entry(version.to_string()).or_default().push(instance);
        }
        let mut gone = vec![];
        if let Some(list) = state.running.get_mut(version) {
            while list.len() as u32 > count {
                gone.extend(list.pop());
            }
            if list.is_empty() {
                state.running.remove(version);
            }
        }
        if gone.is_empty() {
            return Ok(());
        }
        // Drain: the proxy stops sending to the instances first, then they get SIGTERM and finish
        // the requests they have (SIGKILL after STOP_GRACE). Killed while still routed to, they
        // would fail requests that count against their version.
        if let Some(proxy) = &state.proxy {
            let split = proxy::Split {
                weights: state.weights.clone(),
                backends: backends(&state.running),
            };
            if let Err(e) = proxy.set_split(split) {
                tracing::warn!(service = %self.service, version, error = %e, "instances stopped while still routed to");
            }
        }
        for mut instance in gone {
            stop(&mut instance).await;
        }
        Ok(())
    }

    /// Points the proxy at `weights` (percent per version).
    async fn route(&self, state: &mut State, weights: BTreeMap<String, u32>) -> Result<(), String> {
        let split = proxy::Split {
            weights: weights.clone(),
            backends: backends(&state.running),
        };
        match &state.proxy {
            Some(p) => p.set_split(split)?,
            None => {
                let listen: SocketAddr = self
                    .config
                    .listen
                    .parse()
                    .map_err(|_| format!("invalid listen address {}", self.config.listen))?;
                let (p, addr) = proxy::Proxy::start(listen, split).await?;
                tracing::info!(service = %self.service, %addr, "proxy started");
                state.proxy = Some(p);
            }
        }
        tracing::info!(service = %self.service, weights = ?weights, "traffic split");
        state.weights = weights;
        Ok(())
    }

    /// The version before this deployment runs with all its instances,
    /// serving everything, before the new one gets traffic.
    async fn ensure_previous(&self, state: &mut State, previous: Option<&Version>) -> Result<(), String> {
        let Some(previous) = previous.map(|v| v.to_string()) else {
            return Ok(());
        };
        if state.running.contains_key(&previous) {
            return Ok(());
        }
        self.scale(state, &previous, self.config.instances).await?;
        if state.weights.is_empty() {
            self.route(state, BTreeMap::from([(previous, 100)])).await?;
        }
        Ok(())
    }

    /// Health of every running instance of `version`, each checked as a configured health check is
    /// (`probes::check` with its default tries and backoff): one lost answer on a busy machine is not an
    /// unhealthy instance.
    async fn healthy(&self, state: &State, version: &str) -> Result<(), String> {
        let list = state
            .running
            .get(version)
            .ok_or_else(|| format!("no instance of {} {version} runs", self.service))?;
        for (i, instance) in list.iter().enumerate() {
            let check = probes::HealthCheck::new(format!("{}{}", instance.url, self.config.health_path));
            let outcome = probes::check(&self.http, &check, &BTreeMap::new()).await;
            if !outcome.ok {
                return Err(format!("instance {} of {version}: {}", i + 1, outcome.detail));
            }
        }
        Ok(())
    }

    /// Staging: one instance of the new version, checked and stopped.
    pub async fn staging(&self, version: &Version) -> Result<(), String> {
        let mut instance = self.start_instance(&version.to_string(), 1).await?;
        stop(&mut instance).await;
        Ok(())
    }

    /// One production step of `version` replacing `previous`.
    pub async fn step(&self, version: &Version, previous: Option<&Version>, step: &DeployStep) -> Result<(), String> {
        let new = version.to_string();
        let old = previous.map(|v| v.to_string());
        let mut state = self.state.lock().await;
        self.ensure_previous(&mut state, previous).await?;
        // Only the new version and the one it replaces keep running.
        let others: Vec<String> = state
            .running
            .keys()
            .filter(|v| **v != new && Some(*v) != old.as_ref())
            .cloned()
            .collect();
        for v in others {
            self.scale(&mut state, &v, 0).await?;
        }
        let n = self.config.instances;
        let split = |new_share: u32| -> BTreeMap<String, u32> {
            match &old {
                Some(o) if new_share < 100 && o != &new => {
                    BTreeMap::from([(new.clone(), new_share), (o.clone(), 100 - new_share)])
                }
                _ => BTreeMap::from([(new.clone(), 100)]),
            }
        };
        match step {
            DeployStep::Backup | DeployStep::RunMigrations { .. } => Ok(()),
            DeployStep::DeployInactive { .. } => self.scale(&mut state, &new, n).await,
            DeployStep::HealthCheckColour { .. } => self.healthy(&state, &new).await,
            DeployStep::SwitchTraffic { .. } => self.route(&mut state, split(100)).await,
            DeployStep::Decommission { .. } => match &old {
                Some(o) if o != &new => self.scale(&mut state, o, 0).await,
                _ => Ok(()),
            },
            DeployStep::CanaryWeight { percent } => {
                self.scale(&mut state, &new, n).await?;
                self.healthy(&state, &new).await?;
                self.route(&mut state, split(u32::from(*percent))).await
            }
            DeployStep::UpdateInstances { first, count, total } => {
                // The workflow counts `total` production instances; this target runs `n` per version,
                // so a batch moves the same share of instances and of traffic.
                let done = (first + count).min(*total);
                let share = if *total == 0 { 100 } else { done * 100 / total };
                let new_count = (share * n).div_ceil(100).max(1);
                self.scale(&mut state, &new, new_count).await?;
                self.healthy(&state, &new).await?;
                self.route(&mut state, split(share)).await?;
                if let Some(o) = old.as_ref().filter(|o| *o != &new) {
                    let left = if share >= 100 { 0 } else { n - new_count.min(n) };
                    self.scale(&mut state, o, left.max(u32::from(share < 100))).await?;
                }
                Ok(())
            }
        }
    }

    /// Makes the version production runs (`current`) serve, starting it when this daemon has not
    /// yet (after a restart, or before the baseline of the first deployment it runs).
    pub async fn ensure_running(&self, current: Option<&Version>) -> Result<(), String> {
        let mut state = self.state.lock().await;
        self.ensure_previous(&mut state, current).await
    }

    /// Stops every instance and the proxy.
    pub async fn shutdown(&self) {
        let mut state = self.state.lock().await;
        // The proxy first: it lets the requests in flight finish, then the instances have none left.
        if let Some(p) = state.proxy.take() {
            p.stop().await;
        }
        let versions: Vec<String> = state.running.keys().cloned().collect();
        for v in versions {
            let _ = self.scale(&mut state, &v, 0).await;
        }
    }

    /// The address the proxy listens on, once it runs.
    pub fn listen(&self) -> &str {
        &self.config.listen
    }

    /// The new version's health during MONITOR.
    pub async fn health(&self, version: &Version) -> Result<(), String> {
        let state = self.state.lock().await;
        self.healthy(&state, &version.to_string()).await
    }

    /// Sends all traffic back to `restore` and stops `from`.
    pub async fn rollback(&self, restore: Option<&Version>, from: Option<&Version>) -> Result<(), String> {
        let mut state = self.state.lock().await;
        let Some(restore) = restore.map(|v| v.to_string()) else {
            return Err("no previous version to restore".into());
        };
        self.scale(&mut state, &restore, self.config.instances).await?;
        self.healthy(&state, &restore).await?;
        self.route(&mut state, BTreeMap::from([(restore.clone(), 100)])).await?;
        if let Some(from) = from.map(|v| v.to_string()).filter(|f| *f != restore) {
            self.scale(&mut state, &from, 0).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> ProcessConfig {
        toml::from_str(text).expect("a process table")
    }

    const GOOD: &str = r#"
argv = ["stagecoach", "example-service", "--listen", "127.0.0.1:{port}"]
listen = "127.0.0.1:7480"
"#;

    #[test]
    fn defaults_and_a_valid_table() {
        let c = config(GOOD);
        assert_eq!(c.instances, 2);
        assert_eq!(c.health_path, "/health");
        assert_eq!(c.start_timeout_seconds, 10.0);
        c.validate("services.shop.process").expect("valid");
    }

    #[test]
    fn each_mistake_is_named() {
        let cases = [
            (r#"argv = ["app"]"#, "services.shop.process.argv: must contain {port}"),
            (r#"argv = [" "]"#, "services.shop.process.argv: must name a program"),
            (
                "instances = 0",
                "services.shop.process.instances: 0 must be between 1 and 32",
            ),
            (
                r#"listen = "0.0.0.0:80""#,
                "services.shop.process.listen: the local process target listens on loopback only",
            ),
            (
                r#"listen = "localhost""#,
                "services.shop.process.listen: \"localhost\" is not an address",
            ),
            (
                r#"health_path = "health""#,
                "services.shop.process.health_path: must start with /",
            ),
            (
                "start_timeout_seconds = 0",
                "services.shop.process.start_timeout_seconds: must be a positive number",
            ),
        ];
        for (change, expected) in cases {
            let mut table: toml::Table = toml::from_str(GOOD).expect("toml");
            let patch: toml::Table = toml::from_str(change).expect("toml");
            table.extend(patch);
            let c: ProcessConfig = table.try_into().expect("deserializes");
            let error = c.validate("services.shop.process").expect_err(change);
            assert!(error.starts_with(expected), "{change}: got {error:?}");
        }
    }

    #[test]
    fn unknown_keys_are_refused() {
        let error = toml::from_str::<ProcessConfig>(&format!("{GOOD}\nport = 3")).expect_err("unknown key");
        assert!(error.to_string().contains("unknown field `port`"), "{error}");
    }

    #[test]
    fn the_default_metrics_read_the_proxy() {
        let m = proxy_metrics("127.0.0.1:7480");
        m.validate("services.shop.metrics").expect("valid");
        let probes::MetricsConfig::Scrape(s) = m else {
            panic!("a scrape provider");
        };
        assert_eq!(s.targets, ["http://127.0.0.1:7480/__stagecoach/metrics"]);
        assert_eq!(s.match_labels["version"], "{version}");
    }
}
