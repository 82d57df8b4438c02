//! The `[notify]` table of `agents.toml`: named channels, routes per notification kind, and optional template
//! overrides.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use workflow::types::NotificationKind;

use crate::template;

/// Name of the top-level table of `agents.toml` this crate reads.
pub const TABLE: &str = "notify";
/// The channel every kind without a route goes to. It exists even when not configured (as a `log` channel).
pub const LOG_CHANNEL: &str = "log";
/// Default of `timeout_seconds` for a webhook.
pub const DEFAULT_TIMEOUT_SECONDS: f64 = 5.0;
/// Default of `retries` for a webhook: attempts after the first one.
pub const DEFAULT_RETRIES: u32 = 3;
/// Default of `backoff_seconds` for a webhook: the pause before the first retry, doubled per retry.
pub const DEFAULT_BACKOFF_SECONDS: f64 = 0.5;
/// The pause between two attempts never exceeds this many seconds.
pub const MAX_BACKOFF_SECONDS: f64 = 10.0;
/// Largest accepted `retries`.
pub const MAX_RETRIES: u32 = 20;

/// The `[notify]` table.
///
/// ```toml
/// [notify.channels.ops]
/// kind = "webhook"
/// url = "http://127.0.0.1:9000/hook"
/// format = "json"                  # json (default) | slack
/// headers = { "X-Token" = "secret" }
/// timeout_seconds = 5
/// retries = 3
/// backoff_seconds = 0.5
///
/// [notify.channels.files]
/// kind = "outbox"
/// dir = "outbox"
///
/// [notify.routes]
/// rollback = ["ops", "files"]
///
/// [notify.templates.rollback]
/// subject = "[ROLLBACK] {{ service }} {{ version or '-' }}"
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifyConfig {
    /// Named channels. A channel named `log` replaces the built-in log channel.
    #[serde(default)]
    pub channels: BTreeMap<String, Channel>,
    /// Which channels get which kind. A kind without a route goes to `["log"]`; an empty list sends nowhere.
    #[serde(default)]
    pub routes: BTreeMap<NotificationKind, Vec<String>>,
    /// Replacements of the seed's subject and/or body per kind (minijinja).
    #[serde(default)]
    pub templates: BTreeMap<NotificationKind, TemplateOverride>,
}

/// One channel, `kind = "webhook" | "outbox" | "log"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Channel {
    Webhook(WebhookChannel),
    Outbox(OutboxChannel),
    Log(LogChannel),
}

/// An HTTP POST per notification.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookChannel {
    /// `http://host[:port]/path`. This build has no TLS support, so `https` is refused by `validate`.
    pub url: String,
    #[serde(default)]
    pub format: WebhookFormat,
    /// Extra request headers (e.g. a token). Their values never appear in errors or logs.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Seconds one attempt may take, connecting included.
    #[serde(default = "default_timeout")]
    pub timeout_seconds: f64,
    /// Attempts after the first failed one; then the channel is reported failed.
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// Pause before the first retry, doubled for every further retry, capped at [`MAX_BACKOFF_SECONDS`].
    #[serde(default = "default_backoff")]
    pub backoff_seconds: f64,
}

/// The shape of a webhook's request body.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WebhookFormat {
    /// `{"id","kind","at","subject","body","deployment","service","version"}`.
    #[default]
    Json,
    /// Slack-compatible `{"text": "*subject*\nbody"}`.
    Slack,
}

/// One Markdown file per notification in a directory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutboxChannel {
    /// Created when missing; relative paths are relative to the daemon's working directory.
    pub dir: PathBuf,
}

/// Writes the notification to the daemon's log (`tracing`, level INFO, target `stagecoach::notify`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogChannel {}

/// Replacement templates for one kind. Each one that is set replaces the seed's text.
///
/// Context: `subject`, `body` (the seed's rendered texts), `kind`, `service`, `version` (none when the
/// deployment has no version), `deployment_id`, `at` (RFC 3339, UTC). Undefined variables are errors.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemplateOverride {
    #[serde(default)]
    pub subject: Option<String>,
    #[serde(default)]
    pub body: Option<String>,
}

fn default_timeout() -> f64 {
    DEFAULT_TIMEOUT_SECONDS
}
fn default_retries() -> u32 {
    DEFAULT_RETRIES
}
fn default_backoff() -> f64 {
    DEFAULT_BACKOFF_SECONDS
}

impl Default for WebhookChannel {
    fn default() -> Self {
        WebhookChannel {
            url: String::new(),
            format: WebhookFormat::Json,
            headers: BTreeMap::new(),
            timeout_seconds: DEFAULT_TIMEOUT_SECONDS,
            retries: DEFAULT_RETRIES,
            backoff_seconds: DEFAULT_BACKOFF_SECONDS,
        }
    }
}

impl WebhookChannel {
    /// A JSON webhook to `url` with the default timeout, retries and backoff.
    pub fn new(url: impl Into<String>) -> Self {
        WebhookChannel {
            url: url.into(),
            ..WebhookChannel::default()
        }
    }

    /// `path` is where the channel lives (e.g. `notify.channels.ops`); every message starts with it.
    pub fn validate(&self, path: &str) -> Result<(), String> {
        let url = reqwest::Url::parse(&self.url).map_err(|e| format!("{path}: url {:?} is invalid: {e}", self.url))?;
        match url.scheme() {
            "http" => {}
            "https" => {
                let shown = crate::webhook::display_url(&url);
                return Err(format!(
                    "{path}: url {shown}: https is not supported by this build (no TLS); use http (e.g. a local relay)"
                ));
            }
            other => return Err(format!("{path}: url scheme {other:?} is not supported (use http)")),
        }
        if matches!(url.host_str(), None | Some("")) {
            return Err(format!("{path}: url {:?} has no host", self.url));
        }
        for (name, value) in &self.headers {
            reqwest::header::HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| format!("{path}: header name {name:?} is invalid"))?;
            // The value may be a secret: never quote it.
            reqwest::header::HeaderValue::from_str(value)
                .map_err(|_| format!("{path}: the value of header {name} is invalid (control characters?)"))?;
        }
        if !self.timeout_seconds.is_finite() || self.timeout_seconds <= 0.0 || self.timeout_seconds > 3600.0 {
            return Err(format!(
                "{path}: timeout_seconds must be a positive number of seconds up to 3600 (got {})",
                self.timeout_seconds
            ));
        }
        if self.retries > MAX_RETRIES {
            return Err(format!(
                "{path}: retries must be at most {MAX_RETRIES} (got {})",
                self.retries
            ));
        }
        if !self.backoff_seconds.is_finite() || self.backoff_seconds < 0.0 {
            return Err(format!(
                "{path}: backoff_seconds must be a number of seconds >= 0 (got {})",
                self.backoff_seconds
            ));
        }
        Ok(())
    }
}

impl OutboxChannel {
    /// `path` is where the channel lives (e.g. `notify.channels.files`); every message starts with it.
    pub fn validate(&self, path: &str) -> Result<(), String> {
        if self.dir.as_os_str().is_empty() {
            return Err(format!("{path}: dir is empty"));
        }
        if self.dir.to_string_lossy().contains('\0') {
            return Err(format!("{path}: dir contains a NUL byte"));
        }
        Ok(())
    }
}

impl Channel {
    /// `path` is where the channel lives (e.g. `notify.channels.ops`); every message starts with it.
    pub fn validate(&self, path: &str) -> Result<(), String> {
        match self {
            Channel::Webhook(w) => w.validate(path),
            Channel::Outbox(o) => o.validate(path),
            Channel::Log(_) => Ok(()),
        }
    }

    /// `webhook`, `outbox` or `log`.
    pub fn kind(&self) -> &'static str {
        match self {
            Channel::Webhook(_) => "webhook",
            Channel::Outbox(_) => "outbox",
            Channel::Log(_) => "log",
        }
    }
}

impl TemplateOverride {
    /// Compiles both templates and renders them once with a sample context, so that syntax errors and unknown
    /// variables are found now. `path` is e.g. `notify.templates.rollback`.
    pub fn validate(&self, path: &str) -> Result<(), String> {
        for (field, source) in [("subject", &self.subject), ("body", &self.body)] {
            if let Some(source) = source {
                template::check(source).map_err(|e| format!("{path}.{field}: {e}"))?;
            }
        }
        Ok(())
    }
}

fn valid_channel_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

impl NotifyConfig {
    /// Reads the `[notify]` table of a whole `agents.toml` (other tables are ignored; a missing table gives the
    /// default configuration) and validates it. Errors name the offending key, e.g.
    /// `notify.channels.ops.retries: invalid type: …`.
    pub fn from_agents_toml(text: &str) -> Result<NotifyConfig, String> {
        let doc: toml::Table = toml::from_str(text).map_err(|e| format!("agents.toml: {e}"))?;
        let cfg = match doc.get(TABLE) {
            None => NotifyConfig::default(),
            Some(value) => NotifyConfig::from_value(value.clone(), TABLE)?,
        };
        cfg.validate(TABLE)?;
        Ok(cfg)
    }

    /// Deserializes the content of the `[notify]` table (not validated). `path` prefixes every error.
    pub fn from_value(value: toml::Value, path: &str) -> Result<NotifyConfig, String> {
        serde_path_to_error::deserialize(value).map_err(|e| {
            let at = e.path().to_string();
            if at.is_empty() || at == "." {
                format!("{path}: {}", e.inner())
            } else {
                format!("{path}.{at}: {}", e.inner())
            }
        })
    }

    /// Checks every channel, that routes name existing channels (or the built-in `log`) at most once each, and
    /// that the template overrides compile and render. `path` is where the table lives (normally `notify`);
    /// every message starts with it.
    pub fn validate(&self, path: &str) -> Result<(), String> {
        for (name, channel) in &self.channels {
            let at = format!("{path}.channels.{name}");
            if !valid_channel_name(name) {
                return Err(format!(
                    "{at}: channel names use 1 to 64 ASCII letters, digits, '-', '_' or '.'"
                ));
            }
            channel.validate(&at)?;
        }
        for (kind, names) in &self.routes {
            let at = format!("{path}.routes.{kind}");
            let mut seen = BTreeSet::new();
            for name in names {
                if self.channel(name).is_none() {
                    let mut known: Vec<&str> = self.channels.keys().map(String::as_str).collect();
                    if !self.channels.contains_key(LOG_CHANNEL) {
                        known.push(LOG_CHANNEL);
                        known.sort_unstable();
                    }
                    return Err(format!(
                        "{at}: unknown channel {name:?} (channels: {})",
                        known.join(", ")
                    ));
                }
                if !seen.insert(name) {
                    return Err(format!("{at}: channel {name:?} is listed twice"));
                }
            }
        }
        for (kind, template) in &self.templates {
            template.validate(&format!("{path}.templates.{kind}"))?;
        }
        Ok(())
    }

    /// The channels a kind is routed to, in the configured order (default `["log"]`).
    pub fn route(&self, kind: NotificationKind) -> Vec<String> {
        match self.routes.get(&kind) {
            Some(names) => names.clone(),
            None => vec![LOG_CHANNEL.to_string()],
        }
    }

    /// The channel called `name`; `log` is the built-in log channel unless configured otherwise.
    pub fn channel(&self, name: &str) -> Option<Channel> {
        match self.channels.get(name) {
            Some(channel) => Some(channel.clone()),
            None if name == LOG_CHANNEL => Some(Channel::Log(LogChannel {})),
            None => None,
        }
    }
}
