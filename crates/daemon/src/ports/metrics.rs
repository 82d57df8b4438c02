//! Metrics of a service in production: its configured source (or, on the
//! local process target, its proxy's counters); the simulated world's
//! readings without one.

use std::sync::Arc;

use agents::ports::{self, Target};
use agents::simulated;
use async_trait::async_trait;
use workflow::thresholds::MetricSample;

use super::command::Environment;
use super::Context;

/// [`ports::Metrics`] by the service's metrics source.
pub struct MetricsAdapter {
    ctx: Arc<Context>,
    reader: probes::MetricsReader,
}

impl MetricsAdapter {
    pub(super) fn new(ctx: Arc<Context>) -> MetricsAdapter {
        MetricsAdapter {
            ctx,
            reader: probes::MetricsReader::new(),
        }
    }

    fn source(&self, target: &Target) -> Option<&probes::MetricsConfig> {
        self.ctx.service(&target.service)?.metrics.as_ref()
    }
}

#[async_trait]
impl ports::Metrics for MetricsAdapter {
    async fn baseline(&self, target: &Target) -> Result<MetricSample, String> {
        if let Some(p) = self.ctx.process(&target.service) {
            // The baseline is read from what production runs: start it if this daemon has not yet.
            p.ensure_running(target.previous_version.as_ref()).await?;
        }
        match self.source(target) {
            // What production runs before the new version: the previous one.
            Some(cfg) => {
                let vars = Context::probe_vars(target, Environment::Production, target.previous_version.as_ref(), None);
                self.reader.read(cfg, &vars).await
            }
            None => Ok(simulated::BASELINE.sample()),
        }
    }

    async fn sample(&self, target: &Target, _minute: u32, _traffic_percent: u8) -> Result<MetricSample, String> {
        match self.source(target) {
            Some(cfg) => {
                let vars = Context::probe_vars(target, Environment::Production, target.version.as_ref(), None);
                self.reader.read(cfg, &vars).await
            }
            None => Ok(simulated::BASELINE.sample()),
        }
    }
}
