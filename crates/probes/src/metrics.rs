//! Metrics providers: where a [`MetricSample`] comes from.
//!
//! Configured per service in `agents.toml` under `[services.NAME.metrics]`, with `provider` choosing one
//! of three:
//!
//! ```toml
//! # A Prometheus server: one instant query per metric, each giving exactly one number.
//! [services.web.metrics]
//! provider = "prometheus"
//! url = "http://127.0.0.1:9090"
//! error_rate = 'sum(rate(http_requests_total{service="{service}",version="{version}",code=~"5.."}[5m])) / sum(rate(http_requests_total{service="{service}",version="{version}"}[5m]))'
//! latency_p99_ms = 'histogram_quantile(0.99, sum by (le) (rate(http_request_duration_seconds_bucket{version="{version}"}[5m]))) * 1000'
//! cpu = 'avg(rate(process_cpu_seconds_total{version="{version}"}[5m]))'
//! memory = 'avg(process_resident_memory_bytes{version="{version}"}) / 2^30'
//! timeout_seconds = 5.0          # per query, default 5
//!
//! # Or: scrape the instances' /metrics directly and compute the sample from two scrapes.
//! [services.web.metrics]
//! provider = "scrape"
//! targets = ["http://127.0.0.1:8081/metrics", "http://127.0.0.1:8082/metrics"]
//! match_labels = { version = "{version}" }               # optional filter
//! # requests_metric = "example_http_requests_total"      # counter, labelled with code_label
//! # code_label = "code"
//! # error_code_prefix = "5"                              # codes starting with it are errors
//! # latency_histogram = "example_http_request_duration_seconds"
//! # latency_unit = "seconds"                             # or "milliseconds"
//! # cpu_gauge = "process_cpu_fraction"                   # optional: cpu is 0.0 without it
//! # memory_gauge = "process_memory_fraction"             # optional: memory is 0.0 without it
//! # interval_seconds = 5.0                               # shortest window between the two scrapes
//! # timeout_seconds = 5.0                                # per scrape
//!
//! # Or: a command printing {"error_rate":…,"latency_p99_ms":…,"cpu":…,"memory":…} on stdout.
//! [services.web.metrics]
//! provider = "command"
//! argv = ["./scripts/metrics.sh"]   # gets STAGECOACH_VERSION, STAGECOACH_SERVICE, … (one per placeholder value)
//! # cwd, env as for actions; timeout_seconds defaults to 30
//! ```
//!
//! A read that cannot give a trustworthy number (no data, NaN, a counter that went backwards because a
//! process restarted, no request in the window, an error rate above 1…) is an `Err` saying why: the caller
//! treats it as *inconclusive*, never as a pass.
//!
//! # How `scrape` computes the sample
//!
//! Every target is scraped, then again at least `interval_seconds` later; the sample describes what happened
//! in between, summed over all targets and all label sets that match `match_labels`:
//!
//! - `error_rate` = Δ requests whose `code_label` starts with `error_code_prefix` / Δ all requests, from the
//!   counter `requests_metric`;
//! - `latency_p99_ms` = the 0.99 quantile of the Δ of the histogram `latency_histogram`'s buckets, linearly
//!   interpolated inside the bucket as Prometheus' `histogram_quantile` does (the highest finite bound when
//!   it falls in the `+Inf` bucket), × 1000 for `latency_unit = "seconds"`;
//! - `cpu`, `memory` = the mean of the gauges' current values over the matching series (one per instance,
//!   each a fraction of that instance's capacity), or 0.0 when no gauge is configured.
//!
//! A series that appears only in the second scrape counts from 0 (client libraries create labelled series
//! on first use). A [`MetricsReader`] remembers each target's last scrape for up to [`MAX_REMEMBERED_AGE`]:
//! when every target of a read has such a scrape, it is the read's first one, so periodic reads scrape once
//! each and together cover all the time between them (a read still waits until `interval_seconds` have
//! passed since the remembered scrape).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use hooks::CommandSpec;
use serde::{Deserialize, Serialize};
use tokio::task::JoinSet;
use tokio::time::Instant;
use workflow::thresholds::MetricSample;

use crate::exposition::{self, Sample};
use crate::{http, vars};

/// How long a target's last scrape may serve as the first scrape of the next read.
pub const MAX_REMEMBERED_AGE: Duration = Duration::from_secs(600);
/// The largest `/metrics` page read (16 MiB).
pub const MAX_SCRAPE_BYTES: usize = 16 << 20;
/// The largest Prometheus API answer read (16 MiB).
pub const MAX_API_BYTES: usize = 16 << 20;
/// Default `timeout_seconds` of the command provider.
pub const DEFAULT_COMMAND_TIMEOUT_SECONDS: f64 = 30.0;

fn default_timeout() -> f64 {
    5.0
}
fn default_interval() -> f64 {
    5.0
}
fn default_command_timeout() -> f64 {
    DEFAULT_COMMAND_TIMEOUT_SECONDS
}
fn default_requests_metric() -> String {
    "example_http_requests_total".to_owned()
}
fn default_code_label() -> String {
    "code".to_owned()
}
fn default_error_code_prefix() -> String {
    "5".to_owned()
}
fn default_latency_histogram() -> String {
    "example_http_request_duration_seconds".to_owned()
}

/// Where a service's metrics come from, as written under `[services.NAME.metrics]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "provider", rename_all = "snake_case")]
pub enum MetricsConfig {
    /// A Prometheus server's HTTP API.
    Prometheus(PrometheusConfig),
    /// The instances' own `/metrics` pages, scraped directly.
    Scrape(ScrapeConfig),
    /// A command that prints the sample as JSON.
    Command(CommandConfig),
}

impl MetricsConfig {
    /// Checks the settings without contacting anything. `path` is where the configuration lives (e.g.
    /// `services.web.metrics`); every message starts with it.
    pub fn validate(&self, path: &str) -> Result<(), String> {
        match self {
            MetricsConfig::Prometheus(cfg) => cfg.validate(path),
            MetricsConfig::Scrape(cfg) => cfg.validate(path),
            MetricsConfig::Command(cfg) => cfg.validate(path),
        }
    }
}

/// `provider = "prometheus"`: `GET {url}/api/v1/query?query=…` for each expression. Each must give a single
/// number (a one-sample instant vector, or a scalar). Expressions may use the placeholders.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrometheusConfig {
    /// The server, e.g. `http://127.0.0.1:9090`.
    pub url: String,
    /// Fraction of failed requests (0.01 = 1 %).
    pub error_rate: String,
    /// 99th percentile latency in milliseconds.
    pub latency_p99_ms: String,
    /// Fraction of CPU capacity.
    pub cpu: String,
    /// Fraction of memory capacity.
    pub memory: String,
    /// Seconds per query. Default 5.
    #[serde(default = "default_timeout")]
    pub timeout_seconds: f64,
}

impl PrometheusConfig {
    fn queries(&self) -> [(&'static str, &String); 4] {
        [
            ("error_rate", &self.error_rate),
            ("latency_p99_ms", &self.latency_p99_ms),
            ("cpu", &self.cpu),
            ("memory", &self.memory),
        ]
    }

    /// See [`MetricsConfig::validate`].
    pub fn validate(&self, path: &str) -> Result<(), String> {
        http::check_url(&self.url, &format!("{path}.url"))?;
        for (name, expr) in self.queries() {
            if expr.trim().is_empty() {
                return Err(format!("{path}.{name} is empty: give a PromQL expression"));
            }
            vars::check_placeholders(expr, &format!("{path}.{name}"))?;
        }
        http::check_seconds(self.timeout_seconds, false, &format!("{path}.timeout_seconds"))
    }
}

/// The unit of a latency histogram's bucket bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LatencyUnit {
    #[default]
    Seconds,
    Milliseconds,
}

/// `provider = "scrape"`: the instances' text exposition, scraped twice (see the [module docs](self)).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScrapeConfig {
    /// URLs of `/metrics` pages; may use the placeholders.
    pub targets: Vec<String>,
    /// Counter of requests, labelled with `code_label`. Default `example_http_requests_total`.
    #[serde(default = "default_requests_metric")]
    pub requests_metric: String,
    /// Label of `requests_metric` holding the status code. Default `code`.
    #[serde(default = "default_code_label")]
    pub code_label: String,
    /// Codes starting with this count as errors. Default `5`.
    #[serde(default = "default_error_code_prefix")]
    pub error_code_prefix: String,
    /// Histogram of request durations, named without `_bucket`. Default `example_http_request_duration_seconds`.
    #[serde(default = "default_latency_histogram")]
    pub latency_histogram: String,
    /// Unit of the histogram's bounds. Default `seconds`.
    #[serde(default)]
    pub latency_unit: LatencyUnit,
    /// Gauge holding the fraction of CPU capacity in use; cpu is 0.0 when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_gauge: Option<String>,
    /// Gauge holding the fraction of memory in use; memory is 0.0 when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_gauge: Option<String>,
    /// Only series with these label values count (values may use the placeholders).
    #[serde(default)]
    pub match_labels: BTreeMap<String, String>,
    /// Shortest time between the two scrapes of a read. Default 5.
    #[serde(default = "default_interval")]
    pub interval_seconds: f64,
    /// Seconds per scrape. Default 5.
    #[serde(default = "default_timeout")]
    pub timeout_seconds: f64,
}

impl ScrapeConfig {
    /// A configuration scraping `targets` with every other setting at its default.
    pub fn new<I, S>(targets: I) -> ScrapeConfig
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        ScrapeConfig {
            targets: targets.into_iter().map(Into::into).collect(),
            requests_metric: default_requests_metric(),
            code_label: default_code_label(),
            error_code_prefix: default_error_code_prefix(),
            latency_histogram: default_latency_histogram(),
            latency_unit: LatencyUnit::default(),
            cpu_gauge: None,
            memory_gauge: None,
            match_labels: BTreeMap::new(),
            interval_seconds: default_interval(),
            timeout_seconds: default_timeout(),
        }
    }

    /// See [`MetricsConfig::validate`].
    pub fn validate(&self, path: &str) -> Result<(), String> {
        if self.targets.is_empty() {
            return Err(format!(
                "{path}.targets is empty: give the URL of at least one /metrics page"
            ));
        }
        for (i, target) in self.targets.iter().enumerate() {
            http::check_url(target, &format!("{path}.targets[{i}]"))?;
        }
        let metric_names = [
            ("requests_metric", Some(&self.requests_metric)),
            ("latency_histogram", Some(&self.latency_histogram)),
            ("cpu_gauge", self.cpu_gauge.as_ref()),
            ("memory_gauge", self.memory_gauge.as_ref()),
        ];
        for (setting, name) in metric_names {
            if let Some(name) = name.filter(|n| !exposition::is_metric_name(n)) {
                return Err(format!("{path}.{setting}: {name:?} is not a valid metric name"));
            }
        }
        if self.latency_histogram.ends_with("_bucket") {
            return Err(format!(
                "{path}.latency_histogram: give the histogram's name without _bucket (got {:?})",
                self.latency_histogram
            ));
        }
        if !exposition::is_label_name(&self.code_label) {
            return Err(format!(
                "{path}.code_label: {:?} is not a valid label name",
                self.code_label
            ));
        }
        if self.error_code_prefix.is_empty() {
            return Err(format!(
                "{path}.error_code_prefix is empty: every request would count as an error"
            ));
        }
        for (label, value) in &self.match_labels {
            if !exposition::is_label_name(label) {
                return Err(format!("{path}.match_labels: {label:?} is not a valid label name"));
            }
            if label == "le" || *label == self.code_label {
                return Err(format!(
                    "{path}.match_labels: {label} cannot be matched (the computation needs all of its values)"
                ));
            }
            vars::check_placeholders(value, &format!("{path}.match_labels.{label}"))?;
        }
        http::check_seconds(self.interval_seconds, false, &format!("{path}.interval_seconds"))?;
        if self.interval_seconds > MAX_REMEMBERED_AGE.as_secs_f64() {
            return Err(format!(
                "{path}.interval_seconds must be at most {} (got {})",
                MAX_REMEMBERED_AGE.as_secs(),
                self.interval_seconds
            ));
        }
        http::check_seconds(self.timeout_seconds, false, &format!("{path}.timeout_seconds"))
    }
}

/// `provider = "command"`: the fields of a [`CommandSpec`] (mirrored here rather than flattened, because
/// `CommandSpec` denies unknown fields, which serde cannot combine with `flatten`), with a shorter default
/// timeout.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandConfig {
    /// Program and arguments, run without a shell. Placeholders are *not* substituted here (shell snippets
    /// use braces); the command gets their values as `STAGECOACH_VERSION`, `STAGECOACH_PORT`, … instead.
    pub argv: Vec<String>,
    #[serde(default)]
    pub cwd: Option<PathBuf>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Variables of the daemon's environment passed on (see [`CommandSpec::env_passthrough`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env_passthrough: Vec<String>,
    /// Default [`DEFAULT_COMMAND_TIMEOUT_SECONDS`].
    #[serde(default = "default_command_timeout")]
    pub timeout_seconds: f64,
}

impl CommandConfig {
    /// A command running `argv` with the default settings.
    pub fn new<I, S>(argv: I) -> CommandConfig
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        CommandConfig {
            argv: argv.into_iter().map(Into::into).collect(),
            cwd: None,
            env: BTreeMap::new(),
            env_passthrough: Vec::new(),
            timeout_seconds: DEFAULT_COMMAND_TIMEOUT_SECONDS,
        }
    }

    /// The command as the `hooks` crate runs it.
    pub fn spec(&self) -> CommandSpec {
        CommandSpec {
            argv: self.argv.clone(),
            cwd: self.cwd.clone(),
            env: self.env.clone(),
            env_passthrough: self.env_passthrough.clone(),
            timeout_seconds: self.timeout_seconds,
        }
    }

    /// See [`MetricsConfig::validate`].
    pub fn validate(&self, path: &str) -> Result<(), String> {
        self.spec().validate(path)
    }
}

/// One scrape of one target.
#[derive(Debug, Clone)]
struct Snapshot {
    at: Instant,
    samples: Arc<[Sample]>,
}

/// Reads metrics samples. Holds the HTTP client and each target's last scrape (see the [module
/// docs](self)); share one reader between reads rather than making one per read.
#[derive(Debug)]
pub struct MetricsReader {
    client: reqwest::Client,
    memory: Mutex<HashMap<String, Snapshot>>,
}

impl Default for MetricsReader {
    fn default() -> Self {
        MetricsReader::new()
    }
}

impl MetricsReader {
    /// A reader with its own HTTP client, which ignores the proxy environment variables (metrics endpoints
    /// are internal); use [`MetricsReader::with_client`] for anything else.
    pub fn new() -> MetricsReader {
        MetricsReader::with_client(crate::probe_client(None))
    }

    /// A reader using `client` (per-request timeouts come from the configuration).
    pub fn with_client(client: reqwest::Client) -> MetricsReader {
        MetricsReader {
            client,
            memory: Mutex::new(HashMap::new()),
        }
    }

    /// Reads one sample as `cfg` says, with placeholders filled in from `vars` (`version`, `service`,
    /// `environment`, `instance`, `port`). `Err` when no trustworthy sample can be had; the message says why.
    pub async fn read(&self, cfg: &MetricsConfig, vars: &BTreeMap<String, String>) -> Result<MetricSample, String> {
        cfg.validate("metrics")?;
        let sample = match cfg {
            MetricsConfig::Prometheus(cfg) => self.read_prometheus(cfg, vars).await?,
            MetricsConfig::Scrape(cfg) => self.read_scrape(cfg, vars).await?,
            MetricsConfig::Command(cfg) => read_command(cfg, vars).await?,
        };
        check_sample(sample)
    }

    async fn read_prometheus(
        &self,
        cfg: &PrometheusConfig,
        vars: &BTreeMap<String, String>,
    ) -> Result<MetricSample, String> {
        let base = http::fill(&cfg.url, vars, "prometheus url")?;
        let endpoint = format!("{}/api/v1/query", base.trim_end_matches('/'));
        let timeout = http::seconds(cfg.timeout_seconds);
        let mut exprs = Vec::with_capacity(4);
        for (name, expr) in cfg.queries() {
            exprs.push((name, http::fill(expr, vars, name)?));
        }
        let query = |i: usize| self.instant_query(&endpoint, exprs[i].0, &exprs[i].1, timeout);
        let (error_rate, latency_p99_ms, cpu, memory) = tokio::join!(query(0), query(1), query(2), query(3));
        Ok(MetricSample {
            error_rate: error_rate?,
            latency_p99_ms: latency_p99_ms?,
            cpu: cpu?,
            memory: memory?,
        })
    }

    async fn instant_query(&self, endpoint: &str, metric: &str, expr: &str, timeout: Duration) -> Result<f64, String> {
        let response = self
            .client
            .get(endpoint)
            .query(&[("query", expr)])
            .timeout(timeout)
            .send()
            .await
            .map_err(|e| format!("{metric}: GET {endpoint}: {}", http::describe(&e, timeout)))?;
        let status = response.status();
        let body = http::read_body(response, MAX_API_BYTES, timeout)
            .await
            .map_err(|e| format!("{metric}: GET {endpoint}: {e}"))?;
        parse_query_response(metric, expr, status, &body)
    }

    async fn read_scrape(&self, cfg: &ScrapeConfig, vars: &BTreeMap<String, String>) -> Result<MetricSample, String> {
        let mut targets = Vec::with_capacity(cfg.targets.len());
        for (i, target) in cfg.targets.iter().enumerate() {
            targets.push(http::fill(target, vars, &format!("targets[{i}]"))?);
        }
        let mut filter = BTreeMap::new();
        for (label, value) in &cfg.match_labels {
            filter.insert(
                label.clone(),
                http::fill(value, vars, &format!("match_labels.{label}"))?,
            );
        }
        let timeout = http::seconds(cfg.timeout_seconds);
        let interval = http::seconds(cfg.interval_seconds);

        let first = match self.remembered(&targets) {
            Some(first) => {
                let youngest = first.iter().map(|s| s.at).max().unwrap_or_else(Instant::now);
                tokio::time::sleep_until(youngest + interval).await;
                first
            }
            None => {
                let first = self.scrape_all(&targets, timeout).await?;
                self.remember(&targets, &first);
                tokio::time::sleep(interval).await;
                first
            }
        };
        let second = self.scrape_all(&targets, timeout).await?;
        self.remember(&targets, &second);
        compute(cfg, &filter, &targets, &first, &second)
    }

    fn memory(&self) -> std::sync::MutexGuard<'_, HashMap<String, Snapshot>> {
        self.memory.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The last scrape of every target, if each has one young enough.
    fn remembered(&self, targets: &[String]) -> Option<Vec<Snapshot>> {
        let memory = self.memory();
        targets
            .iter()
            .map(|t| memory.get(t).filter(|s| s.at.elapsed() <= MAX_REMEMBERED_AGE).cloned())
            .collect()
    }

    fn remember(&self, targets: &[String], snapshots: &[Snapshot]) {
        let mut memory = self.memory();
        memory.retain(|_, s| s.at.elapsed() <= MAX_REMEMBERED_AGE);
        for (target, snapshot) in targets.iter().zip(snapshots) {
            memory.insert(target.clone(), snapshot.clone());
        }
    }

    /// Scrapes every target concurrently; the first failure fails the whole read.
    async fn scrape_all(&self, targets: &[String], timeout: Duration) -> Result<Vec<Snapshot>, String> {
        let mut tasks = JoinSet::new();
        for (i, url) in targets.iter().enumerate() {
            let client = self.client.clone();
            let url = url.clone();
            tasks.spawn(async move { (i, scrape(&client, &url, timeout).await) });
        }
        let mut out: Vec<Option<Snapshot>> = vec![None; targets.len()];
        while let Some(joined) = tasks.join_next().await {
            let (i, result) = joined.map_err(|e| format!("a scrape task failed: {e}"))?;
            out[i] = Some(result?);
        }
        Ok(out.into_iter().flatten().collect())
    }
}

async fn scrape(client: &reqwest::Client, url: &str, timeout: Duration) -> Result<Snapshot, String> {
    let at = Instant::now();
    let response = client
        .get(url)
        .header(reqwest::header::ACCEPT, "text/plain;version=0.0.4;q=1,*/*;q=0.1")
        .timeout(timeout)
        .send()
        .await
        .map_err(|e| format!("GET {url}: {}", http::describe(&e, timeout)))?;
    let status = response.status();
    if !status.is_success() {
        return Err(format!("GET {url}: {status}"));
    }
    let body = http::read_body(response, MAX_SCRAPE_BYTES, timeout)
        .await
        .map_err(|e| format!("GET {url}: {e}"))?;
    let text = String::from_utf8(body).map_err(|_| format!("GET {url}: the metrics are not UTF-8 text"))?;
    let parsed = exposition::parse(&text).map_err(|e| format!("GET {url}: cannot parse the metrics: {e}"))?;
    Ok(Snapshot {
        at,
        samples: parsed.samples.into(),
    })
}

/// Label names to values.
type Labels = BTreeMap<String, String>;

fn matches(labels: &Labels, filter: &Labels) -> bool {
    filter.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// The increase of every series `name` (matching `filter`) from `first` to `second`, with its labels.
fn counter_deltas<'a>(
    first: &[Sample],
    second: &'a [Sample],
    name: &str,
    filter: &Labels,
    url: &str,
) -> Result<Vec<(&'a Labels, f64)>, String> {
    let selected = |s: &&Sample| s.name == name && matches(&s.labels, filter);
    let before: BTreeMap<&Labels, f64> = first.iter().filter(selected).map(|s| (&s.labels, s.value)).collect();
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for sample in second.iter().filter(selected) {
        let series = || exposition::series_name(name, &sample.labels);
        let previous = before.get(&sample.labels).copied().unwrap_or(0.0);
        for value in [previous, sample.value] {
            if !value.is_finite() {
                return Err(format!(
                    "{} on {url} is {}, not a counter value",
                    series(),
                    exposition::format_value(value)
                ));
            }
        }
        if sample.value < previous {
            return Err(format!(
                "{} on {url} went backwards ({} → {}): the process restarted, so this window cannot be \
                 measured; the next read measures from now",
                series(),
                exposition::format_value(previous),
                exposition::format_value(sample.value)
            ));
        }
        seen.insert(&sample.labels);
        out.push((&sample.labels, sample.value - previous));
    }
    if let Some(gone) = before.keys().find(|labels| !seen.contains(*labels)) {
        return Err(format!(
            "{} on {url} disappeared between two scrapes: the process restarted, so this window cannot be \
             measured; the next read measures from now",
            exposition::series_name(name, gone)
        ));
    }
    Ok(out)
}

/// The `q` quantile of a histogram given as (upper bound, cumulative count) buckets, like Prometheus'
/// `histogram_quantile`: linear interpolation inside the bucket the rank falls in (from 0 for the first
/// bucket), the highest finite bound when it falls in the `+Inf` bucket.
pub fn histogram_quantile(q: f64, buckets: &[(f64, f64)]) -> Result<f64, String> {
    let mut sorted: Vec<(f64, f64)> = Vec::with_capacity(buckets.len());
    let mut input = buckets.to_vec();
    input.sort_by(|a, b| a.0.total_cmp(&b.0));
    for (le, count) in input {
        if le.is_nan() || !count.is_finite() {
            return Err(format!("invalid bucket le={le} count={count}"));
        }
        match sorted.last_mut() {
            Some(last) if last.0 == le => last.1 += count,
            _ => sorted.push((le, count)),
        }
    }
    if sorted.last().map(|b| b.0) != Some(f64::INFINITY) {
        return Err("the histogram has no +Inf bucket".to_owned());
    }
    if sorted.len() < 2 {
        return Err("the histogram has only a +Inf bucket".to_owned());
    }
    // Cumulative counts never decrease; repair rounding noise as Prometheus does.
    let mut max = 0.0f64;
    for bucket in &mut sorted {
        max = max.max(bucket.1);
        bucket.1 = max;
    }
    let total = max;
    if total <= 0.0 {
        return Err("no observations in the window".to_owned());
    }
    let rank = q * total;
    let i = sorted[..sorted.len() - 1]
        .iter()
        .position(|b| b.1 >= rank)
        .unwrap_or(sorted.len() - 1);
    if i == sorted.len() - 1 {
        return Ok(sorted[sorted.len() - 2].0);
    }
    let (upper, count) = sorted[i];
    let (lower, below) = if i == 0 {
        if upper <= 0.0 {
            return Ok(upper);
        }
        (0.0, 0.0)
    } else {
        sorted[i - 1]
    };
    Ok(lower + (upper - lower) * (rank - below) / (count - below))
}

fn compute(
    cfg: &ScrapeConfig,
    filter: &BTreeMap<String, String>,
    targets: &[String],
    first: &[Snapshot],
    second: &[Snapshot],
) -> Result<MetricSample, String> {
    let on = targets.join(", ");
    let window = first
        .iter()
        .zip(second)
        .map(|(a, b)| b.at.saturating_duration_since(a.at))
        .min()
        .unwrap_or_default();
    let bucket_name = format!("{}_bucket", cfg.latency_histogram);
    let (mut requests, mut errors, mut request_series) = (0.0, 0.0, 0usize);
    let mut buckets = Vec::new();
    for ((url, a), b) in targets.iter().zip(first).zip(second) {
        for (labels, delta) in counter_deltas(&a.samples, &b.samples, &cfg.requests_metric, filter, url)? {
            request_series += 1;
            requests += delta;
            if labels
                .get(&cfg.code_label)
                .is_some_and(|code| code.starts_with(&cfg.error_code_prefix))
            {
                errors += delta;
            }
        }
        for (labels, delta) in counter_deltas(&a.samples, &b.samples, &bucket_name, filter, url)? {
            let le = labels
                .get("le")
                .and_then(|le| exposition::parse_value(le))
                .filter(|le| !le.is_nan())
                .ok_or_else(|| {
                    format!(
                        "{} on {url} has no valid le label",
                        exposition::series_name(&bucket_name, labels)
                    )
                })?;
            buckets.push((le, delta));
        }
    }
    if request_series == 0 {
        return Err(format!(
            "no data for error_rate: no series {} on {on}",
            exposition::series_name(&cfg.requests_metric, filter)
        ));
    }
    if requests <= 0.0 {
        return Err(format!(
            "no requests counted by {} on {on} in the last {}: no error rate can be computed",
            exposition::series_name(&cfg.requests_metric, filter),
            http::format_duration(window)
        ));
    }
    if buckets.is_empty() {
        return Err(format!(
            "no data for latency_p99_ms: no series {} on {on}",
            exposition::series_name(&bucket_name, filter)
        ));
    }
    let p99 = histogram_quantile(0.99, &buckets).map_err(|e| {
        format!(
            "latency_p99_ms: {} on {on}, last {}: {e}",
            exposition::series_name(&cfg.latency_histogram, filter),
            http::format_duration(window)
        )
    })?;
    let scale = match cfg.latency_unit {
        LatencyUnit::Seconds => 1000.0,
        LatencyUnit::Milliseconds => 1.0,
    };
    let gauge = |metric: &str, gauge: &Option<String>| match gauge {
        None => Ok(0.0),
        Some(name) => gauge_mean(second, targets, name, filter, metric),
    };
    Ok(MetricSample {
        error_rate: errors / requests,
        latency_p99_ms: p99 * scale,
        cpu: gauge("cpu", &cfg.cpu_gauge)?,
        memory: gauge("memory", &cfg.memory_gauge)?,
    })
}

/// The mean of the current values of gauge `name` over all targets and matching series.
fn gauge_mean(
    snapshots: &[Snapshot],
    targets: &[String],
    name: &str,
    filter: &BTreeMap<String, String>,
    metric: &str,
) -> Result<f64, String> {
    let mut values = Vec::new();
    for (url, snapshot) in targets.iter().zip(snapshots) {
        for sample in snapshot
            .samples
            .iter()
            .filter(|s| s.name == name && matches(&s.labels, filter))
        {
            if !sample.value.is_finite() {
                return Err(format!(
                    "{metric}: {} on {url} is {}",
                    exposition::series_name(name, &sample.labels),
                    exposition::format_value(sample.value)
                ));
            }
            values.push(sample.value);
        }
    }
    if values.is_empty() {
        return Err(format!(
            "no data for {metric}: no series {} on {}",
            exposition::series_name(name, filter),
            targets.join(", ")
        ));
    }
    Ok(values.iter().sum::<f64>() / values.len() as f64)
}

#[derive(Deserialize)]
struct ApiResponse {
    status: String,
    #[serde(default)]
    data: Option<ApiData>,
    #[serde(default, rename = "errorType")]
    error_type: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize)]
#[serde(tag = "resultType", content = "result", rename_all = "lowercase")]
enum ApiData {
    Vector(Vec<VectorSample>),
    Scalar((f64, String)),
    // Only the type matters for these: they are refused.
    Matrix(#[allow(dead_code)] serde::de::IgnoredAny),
    String(#[allow(dead_code)] serde::de::IgnoredAny),
}

#[derive(Deserialize)]
struct VectorSample {
    #[serde(default)]
    metric: BTreeMap<String, String>,
    value: (f64, String),
}

/// The single number of a Prometheus instant query's answer.
fn parse_query_response(metric: &str, expr: &str, status: reqwest::StatusCode, body: &[u8]) -> Result<f64, String> {
    let response: ApiResponse = serde_json::from_slice(body).map_err(|_| {
        let text = String::from_utf8_lossy(body);
        let start: String = text.trim().chars().take(200).collect();
        format!("{metric}: the server answered {status}, which is not a Prometheus API response: {start:?}")
    })?;
    if response.status != "success" {
        return Err(format!(
            "{metric}: Prometheus refused `{expr}`: {} ({}, {status})",
            response.error.as_deref().unwrap_or("no error message"),
            response.error_type.as_deref().unwrap_or("no error type"),
        ));
    }
    let value = match response.data {
        Some(ApiData::Scalar((_, value))) => value,
        Some(ApiData::Vector(mut samples)) => match samples.len() {
            0 => return Err(format!("no data for {metric}: {expr}")),
            1 => samples.remove(0).value.1,
            n => {
                let first: Vec<String> = samples
                    .iter()
                    .take(3)
                    .map(|s| exposition::series_name("", &s.metric))
                    .collect();
                return Err(format!(
                    "{metric}: `{expr}` gives {n} series ({}…), not one number; aggregate it, e.g. with sum(…)",
                    first.join(", ")
                ));
            }
        },
        Some(ApiData::Matrix(_)) => {
            return Err(format!(
                "{metric}: `{expr}` gives a range vector, not one number; wrap it, e.g. in rate(…) and sum(…)"
            ))
        }
        Some(ApiData::String(_)) => return Err(format!("{metric}: `{expr}` gives a string, not a number")),
        None => return Err(format!("{metric}: Prometheus answered `{expr}` without data")),
    };
    let number =
        exposition::parse_value(&value).ok_or_else(|| format!("{metric}: `{expr}` gives {value:?}, not a number"))?;
    if number.is_nan() {
        return Err(format!(
            "{metric}: `{expr}` is NaN (no data in its window, e.g. 0/0 without requests)"
        ));
    }
    if number.is_infinite() {
        return Err(format!("{metric}: `{expr}` is {value}"));
    }
    Ok(number)
}

/// The argv, shortened, for messages.
fn command_name(argv: &[String]) -> String {
    let text = argv.join(" ");
    match text.char_indices().nth(120) {
        Some((cut, _)) => format!("`{}…`", &text[..cut]),
        None => format!("`{text}`"),
    }
}

async fn read_command(cfg: &CommandConfig, vars: &BTreeMap<String, String>) -> Result<MetricSample, String> {
    let name = command_name(&cfg.argv);
    let env: Vec<(String, String)> = vars
        .iter()
        .map(|(k, v)| (format!("STAGECOACH_{}", k.to_ascii_uppercase()), v.clone()))
        .collect();
    let outcome = hooks::run(&cfg.spec(), &env)
        .await
        .map_err(|e| format!("metrics command {name}: {e}"))?;
    if !outcome.success {
        return Err(format!("metrics command {name} failed: {}", outcome.summary()));
    }
    parse_command_output(&outcome.output_tail).map_err(|e| format!("metrics command {name}: {e}"))
}

/// What a metrics command prints.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Printed {
    error_rate: f64,
    latency_p99_ms: f64,
    cpu: f64,
    memory: f64,
}

/// The sample in a command's output: the whole output as one JSON object, or else its last line that
/// starts with `{` (so log lines before it do no harm).
fn parse_command_output(output: &str) -> Result<MetricSample, String> {
    let output = output.trim();
    if output.is_empty() {
        return Err(
            "printed nothing; it must print one JSON object {\"error_rate\":…,\"latency_p99_ms\":…,\"cpu\":…,\"memory\":…}"
                .to_owned(),
        );
    }
    let candidate = if serde_json::from_str::<serde_json::Value>(output).is_ok() {
        output
    } else {
        output
            .lines()
            .rev()
            .map(str::trim)
            .find(|line| line.starts_with('{'))
            .unwrap_or(output)
    };
    let printed: Printed = serde_json::from_str(candidate).map_err(|e| {
        let last: String = output.lines().last().unwrap_or("").chars().take(200).collect();
        format!(
            "cannot read its output as {{\"error_rate\":…,\"latency_p99_ms\":…,\"cpu\":…,\"memory\":…}} ({e}); \
             its last line is {last:?}"
        )
    })?;
    Ok(MetricSample {
        error_rate: printed.error_rate,
        latency_p99_ms: printed.latency_p99_ms,
        cpu: printed.cpu,
        memory: printed.memory,
    })
}

/// Refuses a sample that cannot be true: non-finite or negative values, an error rate above 1.
fn check_sample(sample: MetricSample) -> Result<MetricSample, String> {
    let values = [
        ("error_rate", sample.error_rate),
        ("latency_p99_ms", sample.latency_p99_ms),
        ("cpu", sample.cpu),
        ("memory", sample.memory),
    ];
    for (name, value) in values {
        if !value.is_finite() {
            return Err(format!("{name} is {}", exposition::format_value(value)));
        }
        if value < 0.0 {
            return Err(format!("{name} is negative ({value})"));
        }
    }
    if sample.error_rate > 1.0 {
        return Err(format!(
            "error_rate is {}, above 1: it must be a fraction of requests (0.01 = 1 %)",
            sample.error_rate
        ));
    }
    Ok(sample)
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::StatusCode;

    fn sample(name: &str, labels: &[(&str, &str)], value: f64) -> Sample {
        Sample {
            name: name.into(),
            labels: labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            value,
            timestamp_ms: None,
        }
    }

    #[test]
    fn configurations_parse_strictly_with_defaults() {
        let cfg: MetricsConfig = toml::from_str(
            r#"
            provider = "scrape"
            targets = ["http://127.0.0.1:{port}/metrics"]
            match_labels = { version = "{version}" }
            "#,
        )
        .unwrap();
        let mut expected = ScrapeConfig::new(["http://127.0.0.1:{port}/metrics"]);
        expected.match_labels.insert("version".into(), "{version}".into());
        assert_eq!(cfg, MetricsConfig::Scrape(expected));
        cfg.validate("services.web.metrics").unwrap();

        let cfg: MetricsConfig = toml::from_str(
            r#"
            provider = "prometheus"
            url = "http://127.0.0.1:9090"
            error_rate = 'sum(rate(x{code=~"5..",version="{version}"}[1m]))'
            latency_p99_ms = "1"
            cpu = "2"
            memory = "3"
            "#,
        )
        .unwrap();
        let MetricsConfig::Prometheus(p) = &cfg else {
            panic!("{cfg:?}")
        };
        assert_eq!(p.timeout_seconds, 5.0);
        cfg.validate("m").unwrap();

        let cfg: MetricsConfig = toml::from_str("provider = \"command\"\nargv = [\"./m.sh\"]").unwrap();
        assert_eq!(cfg, MetricsConfig::Command(CommandConfig::new(["./m.sh"])));

        for (text, needle) in [
            (
                "provider = \"scrape\"\ntargets = []\nintervall = 1",
                "unknown field `intervall`",
            ),
            (
                "provider = \"command\"\nargv = [\"x\"]\ntimeout = 1",
                "unknown field `timeout`",
            ),
            ("provider = \"graphite\"", "unknown variant `graphite`"),
            ("url = \"http://x\"", "missing field `provider`"),
        ] {
            let err = toml::from_str::<MetricsConfig>(text).unwrap_err().to_string();
            assert!(err.contains(needle), "{text}: {err}");
        }
    }

    #[test]
    fn validation_messages_start_with_the_path() {
        let p = "services.web.metrics";
        let scrape = |f: fn(&mut ScrapeConfig)| {
            let mut cfg = ScrapeConfig::new(["http://127.0.0.1:{port}/metrics"]);
            f(&mut cfg);
            MetricsConfig::Scrape(cfg).validate(p).unwrap_err()
        };
        let cases = [
            (scrape(|c| c.targets.clear()), "services.web.metrics.targets is empty"),
            (
                scrape(|c| c.targets.push("http://{pod}/".into())),
                "services.web.metrics.targets[1]: unknown placeholder {pod}",
            ),
            (
                scrape(|c| c.requests_metric = "a-b".into()),
                "services.web.metrics.requests_metric: \"a-b\" is not a valid metric name",
            ),
            (
                scrape(|c| c.latency_histogram = "x_bucket".into()),
                "services.web.metrics.latency_histogram: give the histogram's name without _bucket",
            ),
            (
                scrape(|c| c.cpu_gauge = Some(String::new())),
                "services.web.metrics.cpu_gauge: \"\" is not a valid metric name",
            ),
            (
                scrape(|c| c.code_label = "1x".into()),
                "services.web.metrics.code_label",
            ),
            (
                scrape(|c| c.error_code_prefix.clear()),
                "services.web.metrics.error_code_prefix is empty",
            ),
            (
                scrape(|c| {
                    c.match_labels.insert("le".into(), "1".into());
                }),
                "services.web.metrics.match_labels: le cannot be matched",
            ),
            (
                scrape(|c| {
                    c.match_labels.insert("v".into(), "{ver}".into());
                }),
                "services.web.metrics.match_labels.v: unknown placeholder {ver}",
            ),
            (
                scrape(|c| c.interval_seconds = 0.0),
                "services.web.metrics.interval_seconds must be",
            ),
            (
                scrape(|c| c.interval_seconds = 601.0),
                "services.web.metrics.interval_seconds must be at most 600",
            ),
            (
                scrape(|c| c.timeout_seconds = f64::NAN),
                "services.web.metrics.timeout_seconds must be",
            ),
        ];
        for (err, prefix) in cases {
            assert!(err.starts_with(prefix), "{err}");
        }
        let prom = PrometheusConfig {
            url: "http://127.0.0.1:9090".into(),
            error_rate: " ".into(),
            latency_p99_ms: "1".into(),
            cpu: "1".into(),
            memory: "x{y=\"{zone}\"}".into(),
            timeout_seconds: 5.0,
        };
        assert_eq!(
            prom.validate(p).unwrap_err(),
            "services.web.metrics.error_rate is empty: give a PromQL expression"
        );
        let prom = PrometheusConfig {
            error_rate: "1".into(),
            ..prom
        };
        assert!(prom
            .validate(p)
            .unwrap_err()
            .starts_with("services.web.metrics.memory: unknown placeholder {zone}"));
        assert_eq!(
            CommandConfig::new(Vec::<String>::new()).validate(p).unwrap_err(),
            "services.web.metrics: argv must name a program (it is empty)"
        );
    }

    #[test]
    fn quantiles_follow_histogram_quantile() {
        let inf = f64::INFINITY;
        // 100 observations, all in (0.1, 0.25]: rank 99 → 0.1 + 0.15 × 99/100.
        let b = [(0.05, 0.0), (0.1, 0.0), (0.25, 100.0), (0.5, 100.0), (inf, 100.0)];
        assert!((histogram_quantile(0.99, &b).unwrap() - 0.2485).abs() < 1e-12);
        // First bucket interpolates from 0.
        assert_eq!(histogram_quantile(0.5, &[(1.0, 10.0), (inf, 10.0)]).unwrap(), 0.5);
        // Rank in +Inf → highest finite bound.
        assert_eq!(
            histogram_quantile(0.99, &[(1.0, 1.0), (2.0, 1.0), (inf, 10.0)]).unwrap(),
            2.0
        );
        // Unsorted, split over two series, and a non-monotonic glitch.
        let b = [(inf, 6.0), (1.0, 2.0), (2.0, 1.0), (inf, 4.0), (1.0, 3.0), (2.0, 3.0)];
        // Merged: 1→5, 2→4 (repaired to 5), inf→10; rank 5 → falls in the first bucket: 0 + 1 × 5/5.
        assert_eq!(histogram_quantile(0.5, &b).unwrap(), 1.0);
        assert!(histogram_quantile(0.99, &[(1.0, 0.0), (inf, 0.0)])
            .unwrap_err()
            .contains("no observations"));
        assert!(histogram_quantile(0.99, &[(1.0, 3.0)]).unwrap_err().contains("no +Inf"));
        assert!(histogram_quantile(0.99, &[(inf, 3.0)])
            .unwrap_err()
            .contains("only a +Inf"));
    }

    #[test]
    fn counter_deltas_detect_restarts() {
        let a = [
            sample("r", &[("code", "200")], 10.0),
            sample("r", &[("code", "500")], 1.0),
        ];
        let b = [
            sample("r", &[("code", "200")], 15.0),
            sample("r", &[("code", "500")], 1.0),
            sample("r", &[("code", "503")], 2.0),
        ];
        let none = BTreeMap::new();
        let deltas: Vec<f64> = counter_deltas(&a, &b, "r", &none, "u")
            .unwrap()
            .into_iter()
            .map(|d| d.1)
            .collect();
        assert_eq!(deltas, [5.0, 0.0, 2.0]);
        let err = counter_deltas(&b, &a, "r", &none, "http://x/metrics").unwrap_err();
        assert!(
            err.starts_with("r{code=\"200\"} on http://x/metrics went backwards (15 → 10)"),
            "{err}"
        );
        let err = counter_deltas(&b, &b[..2], "r", &none, "u").unwrap_err();
        assert!(err.contains("r{code=\"503\"} on u disappeared"), "{err}");
        let nan = [sample("r", &[("code", "200")], f64::NAN)];
        assert!(counter_deltas(&a[..1], &nan, "r", &none, "u")
            .unwrap_err()
            .contains("is NaN"));
        let filter = [("code".to_string(), "500".to_string())].into_iter().collect();
        assert_eq!(counter_deltas(&b, &a, "r", &filter, "u").unwrap().len(), 1);
    }

    #[test]
    fn prometheus_answers() {
        let ok = StatusCode::OK;
        let parse = |body: &str| parse_query_response("error_rate", "E", ok, body.as_bytes());
        assert_eq!(
            parse(
                r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1.5,"0.08"]}]}}"#
            ),
            Ok(0.08)
        );
        assert_eq!(
            parse(r#"{"status":"success","data":{"resultType":"scalar","result":[1.5,"2.5"]}}"#),
            Ok(2.5)
        );
        assert_eq!(
            parse(r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#),
            Err("no data for error_rate: E".into())
        );
        let err = parse(r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{"a":"1"},"value":[1,"1"]},{"metric":{"a":"2"},"value":[1,"1"]}]}}"#).unwrap_err();
        assert!(err.contains("gives 2 series ({a=\"1\"}, {a=\"2\"}…)"), "{err}");
        let err =
            parse(r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"NaN"]}]}}"#)
                .unwrap_err();
        assert!(err.contains("is NaN"), "{err}");
        let err = parse(r#"{"status":"success","data":{"resultType":"scalar","result":[1,"+Inf"]}}"#).unwrap_err();
        assert!(err.ends_with("is +Inf"), "{err}");
        let err = parse(r#"{"status":"success","data":{"resultType":"matrix","result":[]}}"#).unwrap_err();
        assert!(err.contains("range vector"), "{err}");
        let err = parse_query_response(
            "cpu",
            "rate(",
            StatusCode::BAD_REQUEST,
            br#"{"status":"error","errorType":"bad_data","error":"parse error"}"#,
        )
        .unwrap_err();
        assert_eq!(
            err,
            "cpu: Prometheus refused `rate(`: parse error (bad_data, 400 Bad Request)"
        );
        let err = parse_query_response("cpu", "x", StatusCode::NOT_FOUND, b"404 page not found").unwrap_err();
        assert!(
            err.contains("404 Not Found, which is not a Prometheus API response"),
            "{err}"
        );
    }

    #[test]
    fn command_output() {
        let json = r#"{"error_rate":0.01,"latency_p99_ms":120.5,"cpu":0.3,"memory":0.4}"#;
        let expected = MetricSample {
            error_rate: 0.01,
            latency_p99_ms: 120.5,
            cpu: 0.3,
            memory: 0.4,
        };
        assert_eq!(parse_command_output(json), Ok(expected));
        assert_eq!(parse_command_output(&format!("log line\n{json}\n")), Ok(expected));
        let pretty = serde_json::to_string_pretty(&serde_json::json!({
            "error_rate": 0.01, "latency_p99_ms": 120.5, "cpu": 0.3, "memory": 0.4
        }))
        .unwrap();
        assert_eq!(parse_command_output(&pretty), Ok(expected));
        assert!(parse_command_output("").unwrap_err().starts_with("printed nothing"));
        let err = parse_command_output(r#"{"error_rate":0.01}"#).unwrap_err();
        assert!(err.contains("missing field `latency_p99_ms`"), "{err}");
        let err = parse_command_output("oops").unwrap_err();
        assert!(err.ends_with("its last line is \"oops\""), "{err}");
    }

    #[test]
    fn impossible_samples_are_refused() {
        let good = MetricSample {
            error_rate: 0.0,
            latency_p99_ms: 1.0,
            cpu: 1.5,
            memory: 0.0,
        };
        assert_eq!(check_sample(good), Ok(good));
        let bad = |f: fn(&mut MetricSample)| {
            let mut s = good;
            f(&mut s);
            check_sample(s).unwrap_err()
        };
        assert!(bad(|s| s.error_rate = 8.0).contains("above 1"));
        assert_eq!(bad(|s| s.cpu = -0.1), "cpu is negative (-0.1)");
        assert_eq!(bad(|s| s.memory = f64::NAN), "memory is NaN");
    }
}
