//! Stagecoach's daemon: keeps the agents running, serves the HTTP API and
//! resumes every in-flight deployment from the journal after a restart.
//!
//! Start-up order: load the configuration, open the journal in the state
//! dir (exclusively: one daemon per state dir), settle the principals,
//! rebuild every deployment by replaying the journal, tell the ports what
//! production runs (and ask each service's `current_version` command, when
//! it has one, whether it agrees), then start the agents (which re-run
//! interrupted work) and the HTTP server. SIGINT/SIGTERM stop the server; the journal write in
//! flight completes first because writes happen inside the coordinator's
//! message handling. SIGHUP reloads the principals (see [`auth`]); the
//! daemon then keeps its pid in `STATE_DIR/daemon.pid` ([`pidfile`]) so
//! `stagecoach principal add` can send it.

pub mod api;
pub mod auth;
pub mod config;
pub mod fault;
pub mod pidfile;
pub mod ports;
pub mod process;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use actix::Actor;
use workflow::types::{ServiceName, Version};
use workflow::Record;

pub use config::DaemonConfig;

/// File name of the journal inside the state dir.
pub const JOURNAL_FILE: &str = "journal.sqlite";

/// What `stagecoach daemon` was asked to do.
#[derive(Debug, Clone)]
pub struct Options {
    pub settings: workflow::Settings,
    pub config: DaemonConfig,
}

/// The journal of a state dir.
pub fn journal_path(state_dir: &Path) -> PathBuf {
    state_dir.join(JOURNAL_FILE)
}

/// What production runs for each service, as far as the journal knows:
/// replayed in the order deployments last changed production.
pub fn production_from(records: &[Record]) -> BTreeMap<ServiceName, (Option<Version>, Option<Version>)> {
    let mut changed: Vec<&Record> = records
        .iter()
        .filter(|r| r.deploy_log.is_some() || r.rollback.is_some())
        .collect();
    changed.sort_by_key(|r| (r.timeline.last().map(|t| t.at), r.id));
    let mut out: BTreeMap<ServiceName, (Option<Version>, Option<Version>)> = BTreeMap::new();
    for r in changed {
        let entry = out
            .entry(r.service.clone())
            .or_insert_with(|| (r.previous_version.clone(), None));
        if entry.0 != r.production_version {
            let before = entry.0.take();
            *entry = (r.production_version.clone(), before);
        }
    }
    out
}

/// The rustls configuration of `[server.tls]`.
fn tls_config(tls: &config::TlsConfig) -> Result<rustls::ServerConfig, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&tls.cert)
        .and_then(|i| i.collect::<Result<_, _>>())
        .map_err(|e| {
            format!(
                "server.tls.cert: cannot read certificates from {}: {e}",
                tls.cert.display()
            )
        })?;
    if certs.is_empty() {
        return Err(format!(
            "server.tls.cert: {} holds no PEM certificate",
            tls.cert.display()
        ));
    }
    let key = PrivateKeyDer::from_pem_file(&tls.key).map_err(|e| {
        format!(
            "server.tls.key: cannot read a private key from {}: {e}",
            tls.key.display()
        )
    })?;
    rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("server.tls: {e}"))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("server.tls: the certificate and key do not work together: {e}"))
}

/// The daemon is serving: where, and a handle that stops it (as SIGTERM does).
#[derive(Debug, Clone)]
pub struct Ready {
    pub addrs: Vec<std::net::SocketAddr>,
    pub server: actix_web::dev::ServerHandle,
    pub state_dir: PathBuf,
}

/// Runs the daemon until SIGINT/SIGTERM; SIGHUP reloads the principals,
/// and `STATE_DIR/daemon.pid` says where to send it.
pub fn run(opts: Options) -> Result<(), String> {
    serve(opts, true, |_| {})
}

/// Logs, one line per configured service, the actions the simulated world
/// answers (no command configured), and what happens to other services.
fn log_simulated(config: &config::DaemonConfig) {
    for (name, service) in &config.services {
        let simulated = service.simulated_actions();
        if simulated.is_empty() {
            tracing::info!(service = %name, "service {name}: no action simulated");
        } else {
            tracing::warn!(
                service = %name,
                actions = %simulated.join(","),
                "service {name}: simulated (no command configured): {}; the migration and environment findings of PREPARE are always simulated; the records mark each simulated result",
                simulated.join(", ")
            );
        }
    }
    match config.unknown_services() {
        config::UnknownServices::Simulate => tracing::warn!(
            "services without [services.NAME] are accepted and simulated end to end (server.unknown_services = \"simulate\"); the records mark each simulated result"
        ),
        config::UnknownServices::Refuse => tracing::info!(
            "submissions for services without [services.NAME] are refused (server.unknown_services = \"refuse\")"
        ),
    }
}

/// Asks every service with a `current_version` command what runs in its
/// production, in the background, and logs whether the journal agrees; a
/// disagreement holds the service's next deployment before DEPLOY (it is
/// asked again then).
fn check_current_versions(config: &config::DaemonConfig, adapters: &ports::Adapters) {
    for (name, service) in &config.services {
        if !service.actions.contains_key(ports::CURRENT_VERSION) {
            continue;
        }
        let Ok(service) = ServiceName::parse(name) else {
            continue;
        };
        let environments = adapters.environments.clone();
        actix_web::rt::spawn(async move {
            let mut production = environments.journaled(&service);
            production.observed = environments.current_version(&service).await.map(Box::new);
            match production.disagreement(&service) {
                None => tracing::info!(
                    %service,
                    "service {service}: `{}` says {} runs in production; the journal agrees",
                    ports::CURRENT_VERSION,
                    production
                        .current_version
                        .as_ref()
                        .map_or_else(|| "nothing".to_string(), |v| v.to_string())
                ),
                Some(why) => tracing::warn!(
                    %service,
                    "service {service}: at start, {why} (the next deployment is held before DEPLOY unless they agree by then)"
                ),
            }
        });
    }
}

/// Stops `server` on SIGTERM (gracefully: requests in progress finish) and on
/// SIGINT or SIGQUIT (at once), as actix-web does, with the handlers installed
/// now rather than when the server first runs.
fn stop_on_signals(server: actix_web::dev::ServerHandle) -> Result<(), String> {
    use tokio::signal::unix::{signal, SignalKind};
    let kinds = [
        (SignalKind::terminate(), "SIGTERM", true),
        (SignalKind::interrupt(), "SIGINT", false),
        (SignalKind::quit(), "SIGQUIT", false),
    ];
    for (kind, name, graceful) in kinds {
        let mut stream = signal(kind).map_err(|e| format!("cannot handle {name}: {e}"))?;
        let server = server.clone();
        actix_web::rt::spawn(async move {
            if stream.recv().await.is_some() {
                let how = if graceful { "gracefully" } else { "at once" };
                tracing::info!("{name} received; stopping {how}");
                server.stop(graceful).await;
            }
        });
    }
    Ok(())
}

/// Runs the daemon until SIGINT/SIGTERM or until [`Ready::server`] stops it;
/// `ready` is called once the API accepts connections. For a daemon inside
/// another program (`stagecoach demo`): SIGHUP keeps its default meaning and
/// no pid file is written.
pub fn run_with(opts: Options, ready: impl FnOnce(Ready)) -> Result<(), String> {
    serve(opts, false, ready)
}

/// Reads the principals again and puts them in place; a broken file keeps
/// the principals in use. Logs what changed, or why nothing did.
fn reload_principals(live: &auth::LivePrincipals, configured: &[config::Principal], state_dir: &Path) {
    let file = state_dir.join(auth::PRINCIPALS_FILE);
    match auth::principals(configured, state_dir) {
        Ok((new, created)) => {
            if let Some(path) = created {
                tracing::warn!(token_file = %path.display(), "the admin token file was missing: created a new admin token");
            }
            let count = new.len();
            let old = live.replace(new);
            let changes = live.current().changes_from(&old);
            if changes.is_empty() {
                tracing::info!(file = %file.display(), principals = count, "principals reloaded: no change");
            } else {
                tracing::info!(file = %file.display(), principals = count, "principals reloaded: {}", changes.join("; "));
            }
        }
        Err(e) => tracing::error!(
            principals = live.current().len(),
            "principals not reloaded, the ones in use stay: {e}"
        ),
    }
}

fn serve(opts: Options, hangup: bool, ready: impl FnOnce(Ready)) -> Result<(), String> {
    let Options { settings, config } = opts;
    let state_dir = config.storage.path.clone();
    std::fs::create_dir_all(&state_dir).map_err(|e| {
        format!(
            "cannot create the state dir {}: {e}; check its permissions or pass --state-dir",
            state_dir.display()
        )
    })?;
    let store = journal::SqliteStore::open_exclusive(&journal_path(&state_dir)).map_err(|e| e.to_string())?;
    let store = fault::inject(Box::new(store), &journal_path(&state_dir))?;
    let (principals, created) = auth::principals(&config.principals, &state_dir)?;
    if let Some(path) = &created {
        tracing::warn!(
            token_file = %path.display(),
            "no [[principals]] configured: created an admin principal; its token is in the token file (mode 0600), the CLI reads it from there"
        );
    } else if config.principals.is_empty() {
        tracing::info!(token_file = %state_dir.join(auth::ADMIN_TOKEN_FILE).display(), "no [[principals]] configured: using the admin token");
    } else {
        let stale = state_dir.join(auth::ADMIN_TOKEN_FILE);
        if stale.exists() {
            tracing::warn!(
                token_file = %stale.display(),
                "[[principals]] are configured, so the admin token is not accepted; delete the token file and use a configured principal's token (--token or STAGECOACH_TOKEN)"
            );
        }
    }
    tracing::info!(
        principals = principals.len(),
        file = %state_dir.join(auth::PRINCIPALS_FILE).display(),
        "principals loaded: {}",
        principals.iter().map(|p| p.name.as_str()).collect::<Vec<_>>().join(", ")
    );
    let configured = config.principals.clone();
    let settings = Arc::new(settings);
    log_simulated(&config);
    let accepted_services = config.accepted_services();
    let listen = config.server.listen.clone();
    let tls = config.server.tls.clone();
    let system = actix_web::rt::System::new();
    system.block_on(async move {
        let adapters = ports::Adapters::with_notifications(config.services.clone(), config.notify.clone());
        let coordinator = agents::replay(settings.clone(), adapters.ports(), store)?;
        for problem in coordinator.broken_chains() {
            tracing::error!("{problem}; the journal was changed outside stagecoach; restore it from a backup or investigate with `stagecoach verify`");
        }
        for (service, (current, previous)) in production_from(&coordinator.records()) {
            adapters.set_production(&service, current, previous);
        }
        check_current_versions(&config, &adapters);
        let coordinator = coordinator.start();
        let data = actix_web::web::Data::new(api::AppState {
            coordinator,
            principals: principals.into(),
            settings,
            accepted_services,
        });
        let reload_data = data.clone();
        let server = actix_web::HttpServer::new(move || {
            actix_web::App::new().app_data(data.clone()).configure(api::routes)
        })
        .workers(2)
        .shutdown_timeout(5);
        let server = match &tls {
            Some(t) => server.bind_rustls_0_23(&listen, tls_config(t)?),
            None => server.bind(&listen),
        }
        .map_err(|e| {
            format!("cannot listen on {listen}: {e}; is another daemon running? choose another address with --listen")
        })?;
        let addrs = server.addrs();
        // The stop signals are handled before the daemon says it listens: a SIGTERM right after
        // that line finds the handler (actix would install its own only once the server runs).
        let server = server.disable_signals().run();
        stop_on_signals(server.handle())?;
        let scheme = if tls.is_some() { "https" } else { "http" };
        for addr in &addrs {
            tracing::info!(state_dir = %state_dir.display(), "stagecoach daemon listening on {scheme}://{addr}");
        }
        // The handler first, then the pid file that tells `principal add` where to send SIGHUP.
        let _pid_file = if hangup {
            use tokio::signal::unix::{signal, SignalKind};
            let mut hup = signal(SignalKind::hangup()).map_err(|e| format!("cannot handle SIGHUP: {e}"))?;
            let dir = state_dir.clone();
            actix_web::rt::spawn(async move {
                while hup.recv().await.is_some() {
                    reload_principals(&reload_data.principals, &configured, &dir);
                }
            });
            Some(pidfile::PidFile::create(&state_dir)?)
        } else {
            None
        };
        ready(Ready {
            addrs,
            server: server.handle(),
            state_dir: state_dir.clone(),
        });
        let served = server.await.map_err(|e| format!("the HTTP server stopped: {e}"));
        tracing::info!("stopped accepting requests; shutting down");
        adapters.shutdown().await;
        served
    })?;
    Ok(())
}
