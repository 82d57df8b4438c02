//! The daemon's part of `agents.toml`: `[server]`, `[storage]`,
//! `[[principals]]` and `[services.NAME]`. These tables are read from the
//! same layers and `STAGECOACH__…` environment as the workflow settings.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use workflow::settings::{Layer, Settings, SettingsError};

/// Top-level tables of `agents.toml` that belong to the daemon.
pub const TABLES: &[&str] = workflow::settings::DAEMON_TABLES;

/// Default address of the API: loopback only.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7400";
/// Default state directory, relative to the working directory.
pub const DEFAULT_STATE_DIR: &str = ".stagecoach";

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DaemonConfig {
    #[serde(default)]
    pub server: ServerConfig,
    #[serde(default)]
    pub storage: StorageConfig,
    #[serde(default)]
    pub principals: Vec<Principal>,
    #[serde(default)]
    pub services: BTreeMap<String, ServiceConfig>,
    /// Notification channels, routes and template overrides (`[notify]`).
    #[serde(default)]
    pub notify: notify::NotifyConfig,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Address the daemon listens on.
    #[serde(default = "default_listen")]
    pub listen: String,
    /// Where clients reach the daemon; defaults to `http://` + `listen` (`https://` with TLS).
    #[serde(default)]
    pub url: Option<String>,
    /// Serve HTTPS with this certificate and key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsConfig>,
    /// Listen on a non-loopback address without TLS (e.g. behind a proxy
    /// that terminates TLS). Refused unless set.
    #[serde(default)]
    pub allow_insecure_remote: bool,
    /// What a submission for a service without `[services.NAME]` gets;
    /// unset: see [`DaemonConfig::unknown_services`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unknown_services: Option<UnknownServices>,
}

/// `[server] unknown_services`: what the daemon does with a submission for
/// a service that no `[services.NAME]` configures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnknownServices {
    /// Accept it and run every action of it in the simulated world.
    Simulate,
    /// Refuse it (422), naming the configured services.
    Refuse,
}

/// `[server.tls]`: PEM files.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// Certificate chain, leaf first.
    pub cert: PathBuf,
    /// Private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: default_listen(),
            url: None,
            tls: None,
            allow_insecure_remote: false,
            unknown_services: None,
        }
    }
}

fn default_listen() -> String {
    DEFAULT_LISTEN.to_string()
}

impl ServerConfig {
    /// The URL clients use.
    pub fn client_url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        self.url
            .clone()
            .unwrap_or_else(|| format!("{scheme}://{}", self.listen))
    }

    /// Refuses to expose the API to other machines in clear text.
    pub fn validate(&self) -> Result<(), String> {
        use std::net::ToSocketAddrs;
        if self.tls.is_some() || self.allow_insecure_remote {
            return Ok(());
        }
        // An address that does not resolve is reported when binding.
        let Ok(addrs) = self.listen.to_socket_addrs() else {
            return Ok(());
        };
        if let Some(remote) = addrs.into_iter().find(|a| !a.ip().is_loopback()) {
            return Err(format!(
                "server.listen: {} ({remote}) is reachable from other machines, and without TLS tokens would cross \
                 the network in clear text; configure [server.tls] cert and key, or set [server] \
                 allow_insecure_remote = true (for example behind a proxy that terminates TLS)",
                self.listen
            ));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageConfig {
    /// State directory: the journal (`journal.sqlite`) and `admin.token`.
    #[serde(default = "default_state_dir")]
    pub path: PathBuf,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            path: default_state_dir(),
        }
    }
}

fn default_state_dir() -> PathBuf {
    PathBuf::from(DEFAULT_STATE_DIR)
}

/// What a principal may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PrincipalRole {
    /// Submit deployments, cancel and roll back.
    Deployer,
    Manager,
    Security,
    Devops,
    Qa,
    /// Everything.
    Admin,
}

impl PrincipalRole {
    /// Every role, in the order the documentation lists them.
    pub const ALL: &'static [PrincipalRole] = &[
        PrincipalRole::Deployer,
        PrincipalRole::Manager,
        PrincipalRole::Security,
        PrincipalRole::Devops,
        PrincipalRole::Qa,
        PrincipalRole::Admin,
    ];

    /// The role named `name` (as in `roles = [...]`).
    pub fn parse(name: &str) -> Option<PrincipalRole> {
        Self::ALL.iter().copied().find(|r| r.as_str() == name)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            PrincipalRole::Deployer => "deployer",
            PrincipalRole::Manager => "manager",
            PrincipalRole::Security => "security",
            PrincipalRole::Devops => "devops",
            PrincipalRole::Qa => "qa",
            PrincipalRole::Admin => "admin",
        }
    }

    /// The principal role that gives a workflow approval role.
    pub fn for_approval(role: workflow::types::Role) -> PrincipalRole {
        match role {
            workflow::types::Role::Manager => PrincipalRole::Manager,
            workflow::types::Role::Security => PrincipalRole::Security,
            workflow::types::Role::Devops => PrincipalRole::Devops,
            workflow::types::Role::Qa => PrincipalRole::Qa,
        }
    }
}

/// Someone (or some CI job) allowed to call the API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Principal {
    pub name: String,
    pub roles: Vec<PrincipalRole>,
    /// Hex SHA-256 of the bearer token. The token itself is never stored.
    pub token_sha256: String,
}

impl Principal {
    pub fn has(&self, role: PrincipalRole) -> bool {
        self.roles.contains(&role) || self.roles.contains(&PrincipalRole::Admin)
    }
}

/// How one service's agent actions are carried out.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceConfig {
    /// Commands by action name (`tests`, `build`, `backup`, `migrate`,
    /// `deploy`, `health`, `smoke`, `set_traffic`, `decommission`,
    /// `rollback`, `clear_cache`, `scan`, `validate`). An action without a
    /// command is simulated. `current_version` prints the version that runs
    /// in production; without it, the journal is taken at its word.
    #[serde(default)]
    pub actions: BTreeMap<String, hooks::CommandSpec>,
    /// QA's test suites: commands that leave a JUnit XML report. When any
    /// is configured, VALIDATE runs them instead of the `validate` action.
    #[serde(default)]
    pub suites: BTreeMap<String, SuiteCommand>,
    /// Run the service locally behind a weighted proxy (the local process
    /// target) instead of through deploy commands.
    #[serde(default)]
    pub process: Option<crate::process::ProcessConfig>,
    /// HTTP health checks by environment (`staging`, `production`), used
    /// where no `health` command is configured.
    #[serde(default)]
    pub health: BTreeMap<String, probes::HealthCheck>,
    /// Where the new version's metrics come from; without it they are simulated.
    #[serde(default)]
    pub metrics: Option<probes::MetricsConfig>,
    /// Security's scanner: a command that writes SARIF 2.1.0 or
    /// `cargo audit --json` to `report`. Replaces the `scan` action.
    #[serde(default)]
    pub scanner: Option<ScannerCommand>,
}

impl ServiceConfig {
    /// What this service leaves to the simulated world: every action of
    /// [`ACTIONS`] with no command (and nothing else in its place: suites,
    /// a scanner, HTTP health checks, the local process target), and
    /// `metrics` when no metrics source is configured.
    pub fn simulated_actions(&self) -> Vec<String> {
        let process = self.process.is_some();
        let mut out = vec![];
        for &action in ACTIONS {
            if self.actions.contains_key(action) {
                continue;
            }
            let simulated = match action {
                // Nothing is simulated in its place: without it, the journal is taken at its word.
                "current_version" => false,
                "validate" => self.suites.is_empty(),
                "scan" => self.scanner.is_none(),
                "health" if !process => {
                    for env in ["staging", "production"] {
                        if !self.health.contains_key(env) && self.health.len() == 1 {
                            out.push(format!("health ({env})"));
                        }
                    }
                    self.health.is_empty()
                }
                // No target does these without a command, the local process target included.
                "tests" | "build" | "backup" | "migrate" => true,
                _ => !process,
            };
            if simulated {
                out.push(action.to_string());
            }
        }
        if self.metrics.is_none() && !process {
            out.push("metrics".into());
        }
        out
    }
}

/// The optimal string alignment distance of `a` and `b`: insertions,
/// deletions, substitutions and transpositions of neighbours count one each.
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            d[i][j] = (d[i - 1][j] + 1).min(d[i][j - 1] + 1).min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                d[i][j] = d[i][j].min(d[i - 2][j - 2] + 1);
            }
        }
    }
    d[a.len()][b.len()]
}

/// The name in `names` closest to `name`, when it is close enough to be a typo of it.
pub fn closest<'a>(name: &str, names: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    names
        .into_iter()
        .map(|n| (edit_distance(name, n), n))
        .filter(|(d, n)| *d > 0 && d * 2 <= name.chars().count().max(n.chars().count()))
        .min_by_key(|(d, _)| *d)
        .map(|(_, n)| n)
}

/// A test suite run as a command that writes JUnit XML.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SuiteCommand {
    pub argv: Vec<String>,
    #[serde(default)]
    pub cwd: Option<PathBuf>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Variables of the daemon's environment passed on (see `hooks::CommandSpec`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env_passthrough: Vec<String>,
    #[serde(default = "default_timeout")]
    pub timeout_seconds: f64,
    /// The JUnit XML file the command writes (relative to `cwd`).
    pub junit: PathBuf,
    /// Run for types that run only critical suites (hotfix).
    #[serde(default)]
    pub critical: bool,
}

/// A security scanner run as a command that writes a report file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScannerCommand {
    pub argv: Vec<String>,
    #[serde(default)]
    pub cwd: Option<PathBuf>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Variables of the daemon's environment passed on (see `hooks::CommandSpec`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env_passthrough: Vec<String>,
    #[serde(default = "default_timeout")]
    pub timeout_seconds: f64,
    /// The SARIF 2.1.0 or `cargo audit --json` file the command writes (relative to `cwd`).
    pub report: PathBuf,
}

fn default_timeout() -> f64 {
    hooks::DEFAULT_TIMEOUT_SECONDS
}

/// What a suite or scanner command runs, and where its report lands.
pub trait ReportCommand {
    fn spec(&self) -> hooks::CommandSpec;
    fn report_path(&self) -> PathBuf;
}

macro_rules! report_command {
    ($t:ty, $field:ident) => {
        impl ReportCommand for $t {
            fn spec(&self) -> hooks::CommandSpec {
                let mut spec = hooks::CommandSpec::new(self.argv.clone());
                spec.cwd = self.cwd.clone();
                spec.env = self.env.clone();
                spec.env_passthrough = self.env_passthrough.clone();
                spec.timeout_seconds = self.timeout_seconds;
                spec
            }
            fn report_path(&self) -> PathBuf {
                match &self.cwd {
                    Some(dir) if self.$field.is_relative() => dir.join(&self.$field),
                    _ => self.$field.clone(),
                }
            }
        }
    };
}
report_command!(SuiteCommand, junit);
report_command!(ScannerCommand, report);

/// Action names a service may configure.
pub const ACTIONS: &[&str] = &[
    "tests",
    "build",
    "backup",
    "migrate",
    "deploy",
    "health",
    "smoke",
    "set_traffic",
    "decommission",
    "rollback",
    "clear_cache",
    "scan",
    "validate",
    "current_version",
];

impl DaemonConfig {
    /// Checks what serde cannot: names, hashes, actions.
    pub fn validate(&self) -> Result<(), String> {
        self.server.validate()?;
        validate_principals(&self.principals)?;
        for (name, service) in &self.services {
            workflow::types::ServiceName::parse(name).map_err(|e| format!("services.{name}: {e}"))?;
            for (action, spec) in &service.actions {
                if !ACTIONS.contains(&action.as_str()) {
                    return Err(format!(
                        "services.{name}.actions.{action}: unknown action; use one of {}",
                        ACTIONS.join(", ")
                    ));
                }
                spec.validate(&format!("services.{name}.actions.{action}"))?;
            }
            for (suite, s) in &service.suites {
                s.spec().validate(&format!("services.{name}.suites.{suite}"))?;
            }
            if let Some(p) = &service.process {
                p.validate(&format!("services.{name}.process"))?;
            }
            for (env, hc) in &service.health {
                if env != "staging" && env != "production" {
                    return Err(format!(
                        "services.{name}.health.{env}: use \"staging\" or \"production\""
                    ));
                }
                hc.validate(&format!("services.{name}.health.{env}"))?;
            }
            if let Some(m) = &service.metrics {
                m.validate(&format!("services.{name}.metrics"))?;
            }
            if let Some(s) = &service.scanner {
                s.spec().validate(&format!("services.{name}.scanner"))?;
            }
        }
        self.notify.validate("notify")?;
        if self.server.listen.parse::<std::net::SocketAddr>().is_err() {
            return Err(format!(
                "server.listen: {:?} is not an address such as \"127.0.0.1:7400\"",
                self.server.listen
            ));
        }
        Ok(())
    }

    pub fn service(&self, name: &str) -> Option<&ServiceConfig> {
        self.services.get(name)
    }

    /// The effective `[server] unknown_services`: as configured, else
    /// `refuse` when any `[services.NAME]` is configured and `simulate` when none is.
    pub fn unknown_services(&self) -> UnknownServices {
        self.server.unknown_services.unwrap_or(if self.services.is_empty() {
            UnknownServices::Simulate
        } else {
            UnknownServices::Refuse
        })
    }

    /// The services a submission may name: `None` when any is accepted.
    pub fn accepted_services(&self) -> Option<Vec<String>> {
        match self.unknown_services() {
            UnknownServices::Simulate => None,
            UnknownServices::Refuse => Some(self.services.keys().cloned().collect()),
        }
    }
}

/// Why a submission for `name` is refused when only `known` services are
/// accepted: names them, and suggests the closest one; `None` when `name` is known.
pub fn unknown_service(name: &str, known: &[String]) -> Option<String> {
    if known.iter().any(|k| k == name) {
        return None;
    }
    let mut message = if known.is_empty() {
        format!("unknown service {name:?}: no service is configured ([services.NAME]) and server.unknown_services is \"refuse\"")
    } else {
        format!("unknown service {name:?}: configured services are {}", known.join(", "))
    };
    if let Some(suggestion) = closest(name, known.iter().map(String::as_str)) {
        message.push_str(&format!("; did you mean {suggestion:?}?"));
    }
    Some(message)
}

/// Checks a list of principals (of `[[principals]]` or of the principals
/// file): names present and distinct, roles given, hashes that look like
/// SHA-256.
pub fn validate_principals(principals: &[Principal]) -> Result<(), String> {
    let mut names = std::collections::BTreeSet::new();
    for (i, p) in principals.iter().enumerate() {
        if p.name.trim().is_empty() {
            return Err(format!("principals[{i}].name: must not be empty"));
        }
        if !names.insert(p.name.as_str()) {
            return Err(format!("principals[{i}].name: {:?} appears twice", p.name));
        }
        if p.roles.is_empty() {
            return Err(format!(
                "principals[{i}] ({}): roles must name at least one of deployer, manager, security, devops, qa, admin",
                p.name
            ));
        }
        let h = &p.token_sha256;
        if h.len() != 64 || !h.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!(
                "principals[{i}] ({}).token_sha256: must be 64 hex digits, the SHA-256 of the token (e.g. `printf %s \"$TOKEN\" | sha256sum`), never the token itself",
                p.name
            ));
        }
    }
    Ok(())
}

/// Loads the workflow settings and the daemon's tables from the bundled
/// defaults, an optional `--config` file and the environment.
pub fn load(
    config_file: Option<(&str, &str)>,
    env: &BTreeMap<String, String>,
) -> Result<(Settings, DaemonConfig), SettingsError> {
    let layers: Vec<Layer<'_>> = config_file
        .map(|(name, toml)| Layer { name, toml })
        .into_iter()
        .collect();
    let (settings, daemon): (Settings, DaemonConfig) = Settings::load_with(&layers, env, TABLES)?;
    daemon.validate().map_err(SettingsError::Invalid)?;
    Ok((settings, daemon))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(toml: &str) -> DaemonConfig {
        load(Some(("test.toml", toml)), &BTreeMap::new()).unwrap().1
    }

    #[test]
    fn unknown_services_are_simulated_without_services_and_refused_with_them() {
        assert_eq!(config("").unknown_services(), UnknownServices::Simulate);
        assert_eq!(config("").accepted_services(), None);
        let with = config("[services.web]\n[services.shop]\n");
        assert_eq!(with.unknown_services(), UnknownServices::Refuse);
        assert_eq!(with.accepted_services(), Some(vec!["shop".into(), "web".into()]));
        let simulate = config("[server]\nunknown_services = \"simulate\"\n[services.web]\n");
        assert_eq!(simulate.accepted_services(), None);
        let refuse = config("[server]\nunknown_services = \"refuse\"\n");
        assert_eq!(refuse.accepted_services(), Some(vec![]));
        let err = load(
            Some(("test.toml", "[server]\nunknown_services = \"ignore\"\n")),
            &BTreeMap::new(),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("ignore") && err.contains("server.unknown_services"),
            "{err}"
        );
    }

    #[test]
    fn a_refused_service_names_the_configured_ones_and_the_closest() {
        let known = vec!["shop".to_string(), "web".to_string()];
        assert_eq!(unknown_service("web", &known), None);
        assert_eq!(
            unknown_service("wbe", &known).unwrap(),
            "unknown service \"wbe\": configured services are shop, web; did you mean \"web\"?"
        );
        assert_eq!(
            unknown_service("billing", &known).unwrap(),
            "unknown service \"billing\": configured services are shop, web"
        );
        assert_eq!(closest("shpo", ["shop", "web"]), Some("shop"));
        assert_eq!(closest("ab", ["cd"]), None);
    }

    #[test]
    fn current_version_is_an_action_that_nothing_simulates() {
        let c = config("[services.web.actions.current_version]\nargv = [\"./current-version.sh\"]\n");
        assert!(c.services["web"].actions.contains_key("current_version"));
        assert!(!c.services["web"]
            .simulated_actions()
            .contains(&"current_version".to_string()));
        let shop = config("[services.shop]\n");
        assert!(!shop.services["shop"]
            .simulated_actions()
            .contains(&"current_version".to_string()));
        let e = load(
            Some((
                "test.toml",
                "[services.web.actions.current_versoin]\nargv = [\"true\"]\n",
            )),
            &BTreeMap::new(),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("services.web.actions.current_versoin: unknown action"),
            "{e}"
        );
        assert!(e.contains("current_version"), "{e}");
    }

    #[test]
    fn simulated_actions_are_those_without_a_command() {
        let c = config(
            "[services.web.actions.deploy]\nargv = [\"true\"]\n[services.web.actions.backup]\nargv = [\"true\"]\n\
             [services.web.health.production]\nurl = \"http://127.0.0.1:1/health\"\n",
        );
        assert_eq!(
            c.services["web"].simulated_actions(),
            vec![
                "tests",
                "build",
                "migrate",
                "health (staging)",
                "smoke",
                "set_traffic",
                "decommission",
                "rollback",
                "clear_cache",
                "scan",
                "validate",
                "metrics"
            ]
        );
        // The local process target deploys, checks, routes, rolls back and measures;
        // it does not test, build, back up, migrate, scan or validate.
        let c = config("[services.shop.process]\nargv = [\"shop\", \"{port}\"]\nlisten = \"127.0.0.1:7480\"\n");
        assert_eq!(
            c.services["shop"].simulated_actions(),
            vec!["tests", "build", "backup", "migrate", "scan", "validate"]
        );
    }
}
