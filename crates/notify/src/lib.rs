//! Stagecoach's notification channels.
//!
//! The workflow renders every notification (subject and Markdown body from the seed's templates) into a
//! [`NotificationEntry`]; [`Notifier::send`] delivers it to the channels routed for its kind. Channels are
//! configured in the top-level `[notify]` table of `agents.toml` — a table of its own, apart from the
//! workflow's `[notifications]` (which holds `contact`):
//!
//! ```toml
//! [notify.channels.ops]                  # a named channel
//! kind = "webhook"                       # webhook | outbox | log
//! url = "http://127.0.0.1:9000/hook"     # http only: this build has no TLS
//! format = "json"                        # json (default) | slack
//! headers = { "X-Token" = "secret" }     # optional; values never appear in errors or logs
//! timeout_seconds = 5                    # per attempt (default 5)
//! retries = 3                            # attempts after the first (default 3), then the channel failed
//! backoff_seconds = 0.5                  # before the first retry, doubled per retry, capped at 10 s
//!
//! [notify.channels.files]
//! kind = "outbox"
//! dir = "outbox"                         # one Markdown file per notification
//!
//! [notify.routes]                        # default: every kind -> ["log"]; [] sends nowhere
//! pre_deployment = ["ops", "files"]
//! post_deployment = ["ops"]
//! rollback = ["ops", "files"]
//! escalation = ["ops"]
//! approval_requested = ["ops"]
//!
//! [notify.templates.rollback]            # optional minijinja overrides, per kind
//! subject = "[ROLLBACK] {{ service }} {{ version or '-' }} ({{ deployment_id }})"
//! body = "{{ body }}\n\nRunbook: http://wiki/rollback"
//! ```
//!
//! Delivery per channel kind:
//!
//! - `webhook`: `POST` with `Content-Type: application/json` and `Idempotency-Key: <id>`. Format `json` sends
//!   `{"id","kind","at","subject","body","deployment","service","version","simulated"}` (`at` RFC 3339 UTC,
//!   `version` null when absent, `simulated` true when the deployment rests on simulated evidence); receivers
//!   de-duplicate by `id`. Format `slack` sends `{"text": "*subject*\nbody"}`. Any 2xx
//!   is success. Connection errors, timeouts, 5xx, 408 and 429 are retried; other statuses (4xx, redirects,
//!   which are not followed) fail at once.
//! - `outbox`: `{dir}/{at:%Y%m%dT%H%M%S}-{id}-{kind}.md` with the subject as heading, the deployment's facts
//!   and the body, written to a temporary file in the same directory, synced, then renamed into place. The
//!   same notification always maps to the same file name, so a repeated delivery replaces it.
//! - `log`: one `tracing` INFO event (target `stagecoach::notify`) with the subject and body. A channel named
//!   `log` exists even when not configured.
//!
//! Template overrides see `subject` and `body` (the seed's texts), `kind`, `service`, `version` (none when
//! absent), `deployment_id`, `at` and `simulated`; undefined variables are errors, found by
//! [`NotifyConfig::validate`].
//!
//! A notification about a deployment that rests on simulated evidence (`NotificationEntry::simulated`) is
//! labelled on every channel, whatever the overrides say: its subject ends with "(simulated)" and its body
//! carries [`workflow::record::SIMULATED_NOTICE`].

mod config;
mod outbox;
mod template;
mod webhook;

use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::task::Poll;

use chrono::{DateTime, Utc};
use workflow::record::NotificationEntry;
use workflow::types::NotificationKind;

pub use config::{
    Channel, LogChannel, NotifyConfig, OutboxChannel, TemplateOverride, WebhookChannel, WebhookFormat,
    DEFAULT_BACKOFF_SECONDS, DEFAULT_RETRIES, DEFAULT_TIMEOUT_SECONDS, LOG_CHANNEL, MAX_BACKOFF_SECONDS, MAX_RETRIES,
    TABLE,
};

use template::{Field, TemplateContext, Templates};

/// The deployment a notification is about.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeliveryContext {
    /// E.g. `d-000042`.
    pub deployment_id: String,
    pub service: String,
    pub version: Option<String>,
}

/// A notification as delivered: the entry's texts after template overrides, with its deployment.
#[derive(Debug, Clone)]
pub(crate) struct Message<'a> {
    pub id: &'a str,
    pub kind: NotificationKind,
    pub at: String,
    pub at_time: DateTime<Utc>,
    pub subject: String,
    pub body: String,
    pub deployment_id: &'a str,
    pub service: &'a str,
    pub version: Option<&'a str>,
    /// The deployment rests on simulated evidence (see [`NotificationEntry::simulated`]).
    pub simulated: bool,
}

/// Delivers notifications to the channels configured for their kind.
pub struct Notifier {
    cfg: NotifyConfig,
    templates: Templates,
    client: reqwest::Client,
}

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notifier")
            .field("channels", &self.cfg.channels.keys().collect::<Vec<_>>())
            .field("routes", &self.cfg.routes)
            .finish_non_exhaustive()
    }
}

impl Notifier {
    /// Expects a configuration that passed [`NotifyConfig::validate`]. Should it not have, a route to an unknown
    /// channel fails that channel at delivery, and a template that does not compile is ignored with a warning.
    pub fn new(cfg: NotifyConfig) -> Self {
        let templates = Templates::new(&cfg.templates);
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("stagecoach-notify/", env!("CARGO_PKG_VERSION")))
            .build()
            .unwrap_or_else(|_| reqwest::Client::new());
        Notifier { cfg, templates, client }
    }

    /// The configuration in use.
    pub fn config(&self) -> &NotifyConfig {
        &self.cfg
    }

    /// Renders the override templates of the entry's kind (if any) and delivers the result to every channel
    /// routed for the kind, each with its own retries. Channels are delivered concurrently and one failing
    /// channel never stops the others. `Ok(())` when every channel delivered (or the kind is routed nowhere),
    /// else `Err` naming each failed channel in route order:
    /// `"ops: webhook http://…: 500 Internal Server Error after 4 attempts; files: outbox …: …"`.
    pub async fn send(&self, ctx: &DeliveryContext, entry: &NotificationEntry) -> Result<(), String> {
        let msg = self.message(ctx, entry);
        let route = self.cfg.route(entry.kind);
        let deliveries = route.iter().map(|name| self.deliver(name, &msg)).collect();
        let results = join_all(deliveries).await;
        let failures: Vec<String> = route
            .iter()
            .zip(results)
            .filter_map(|(name, result)| result.err().map(|e| format!("{name}: {e}")))
            .collect();
        if failures.is_empty() {
            Ok(())
        } else {
            for failure in &failures {
                tracing::warn!(
                    target: "stagecoach::notify",
                    id = %entry.id, kind = %entry.kind, deployment = %ctx.deployment_id,
                    "notification not delivered: {failure}"
                );
            }
            Err(failures.join("; "))
        }
    }

    fn message<'a>(&self, ctx: &'a DeliveryContext, entry: &'a NotificationEntry) -> Message<'a> {
        let at = entry.at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let tctx = TemplateContext {
            subject: &entry.subject,
            body: &entry.body,
            kind: entry.kind.as_str(),
            service: &ctx.service,
            version: ctx.version.as_deref(),
            deployment_id: &ctx.deployment_id,
            at: &at,
            simulated: entry.simulated,
        };
        let render = |field: Field, seed: &str| match self.templates.render(entry.kind, field, &tctx) {
            None => seed.to_string(),
            Some(Ok(text)) => text,
            Some(Err(e)) => {
                tracing::warn!(
                    target: "stagecoach::notify",
                    id = %entry.id,
                    "notify.templates.{}: {e}; the seed's text is used", entry.kind
                );
                seed.to_string()
            }
        };
        let subject = render(Field::Subject, &entry.subject);
        // A subject is one line.
        let mut subject = subject.split_whitespace().collect::<Vec<_>>().join(" ");
        let mut body = render(Field::Body, &entry.body);
        // No template override can drop the label of a simulated deployment.
        if entry.simulated {
            if !subject.contains("(simulated)") {
                subject.push_str(" (simulated)");
            }
            if !body.contains(workflow::record::SIMULATED_NOTICE) {
                body = format!("{}\n\n{}\n", body.trim_end(), workflow::record::SIMULATED_NOTICE);
            }
        }
        Message {
            id: &entry.id,
            kind: entry.kind,
            at,
            at_time: entry.at,
            subject,
            body,
            deployment_id: &ctx.deployment_id,
            service: &ctx.service,
            version: ctx.version.as_deref(),
            simulated: entry.simulated,
        }
    }

    async fn deliver(&self, name: &str, msg: &Message<'_>) -> Result<(), String> {
        let Some(channel) = self.cfg.channel(name) else {
            return Err("unknown channel (not configured in [notify.channels])".to_string());
        };
        match &channel {
            Channel::Webhook(w) => webhook::deliver(&self.client, name, w, msg).await,
            Channel::Outbox(o) => outbox::deliver(&o.dir, msg).await.map(|path| {
                tracing::debug!(target: "stagecoach::notify", channel = name, id = msg.id, "wrote {}", path.display());
            }),
            Channel::Log(_) => {
                tracing::info!(
                    target: "stagecoach::notify",
                    channel = name,
                    id = msg.id,
                    kind = msg.kind.as_str(),
                    at = %msg.at,
                    deployment = msg.deployment_id,
                    service = msg.service,
                    version = msg.version.unwrap_or("-"),
                    subject = %msg.subject,
                    body = %msg.body,
                    "notification: {}",
                    msg.subject
                );
                Ok(())
            }
        }
    }
}

/// Polls every future until all are done; outputs in input order. Dropping it drops them all.
async fn join_all<F: Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut futures: Vec<Pin<Box<F>>> = futures.into_iter().map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    poll_fn(|cx| {
        let mut pending = false;
        for (future, output) in futures.iter_mut().zip(outputs.iter_mut()) {
            if output.is_none() {
                match future.as_mut().poll(cx) {
                    Poll::Ready(value) => *output = Some(value),
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    })
    .await;
    outputs.into_iter().flatten().collect()
}
