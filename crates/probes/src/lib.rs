//! Real integrations of Stagecoach's agents: HTTP health checks and metrics providers.
//!
//! The daemon embeds these configurations in `agents.toml`: a [`HealthCheck`] under
//! `[services.NAME.health.ENV]` and a [`MetricsConfig`] under `[services.NAME.metrics]`. Every configuration
//! struct denies unknown fields and has `validate(path)`, whose messages start with the configuration path.
//!
//! - [`health`]: [`check`] sends `GET` to a URL until it answers as expected, with retries and doubling
//!   backoff, and reports a [`HealthOutcome`].
//! - [`metrics`]: [`MetricsReader::read`] gets a [`workflow::thresholds::MetricSample`] from a Prometheus
//!   server, from the instances' own `/metrics` pages, or from a command. A read that cannot be trusted is an
//!   `Err` (inconclusive), never a made-up sample.
//! - [`exposition`]: the parser of the Prometheus text format that the scrape provider uses (and why it is
//!   not a crates.io one).
//!
//! URLs, PromQL expressions and label filters may contain the placeholders `{instance}`, `{port}`,
//! `{version}`, `{service}` and `{environment}`, filled in from the `vars` map each call takes (see
//! [`substitute`]). Only plain `http://` is supported: the workspace builds `reqwest` without TLS.

pub mod exposition;
pub mod health;
mod http;
pub mod metrics;
mod vars;

pub use health::{check, HealthCheck, HealthOutcome};
pub use http::probe_client;
pub use metrics::{CommandConfig, LatencyUnit, MetricsConfig, MetricsReader, PrometheusConfig, ScrapeConfig};
pub use vars::{substitute, PLACEHOLDERS};
