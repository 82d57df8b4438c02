//! `stagecoach principal add|list|remove`: the people and CI jobs who may
//! call the daemon, kept in the state dir's principals file
//! (`STATE_DIR/principals.toml`, only SHA-256 hashes of tokens, mode 0600).
//!
//! `add` prints the new token once, on stdout and nothing else there, so
//! `export STAGECOACH_TOKEN=$(stagecoach principal add mia --role manager)`
//! works; everything else goes to stderr. After a change the command sends
//! SIGHUP to the daemon running on the state dir (found through
//! `STATE_DIR/daemon.pid`), and `add` waits until the daemon accepts the new
//! token. The rules of how the file, `[[principals]]` and the generated
//! admin combine live in `daemon::auth`.
//!
//! Exit codes: 0 done; 1 refused (the name exists) or the running daemon did
//! not take the change; 2 bad input or an unreadable state dir.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use daemon::auth::{self, ADMIN};
use daemon::config::{DaemonConfig, Principal, PrincipalRole};

/// How long `add` waits for the running daemon to accept the new token.
const RELOAD_WAIT: Duration = Duration::from_secs(10);
const POLL_EVERY: Duration = Duration::from_millis(50);

const ROLE_NAMES: [&str; 6] = ["deployer", "manager", "security", "devops", "qa", "admin"];

/// The principal commands.
#[derive(clap::Subcommand, Debug, Clone)]
pub enum PrincipalCommand {
    /// Create a principal: prints its new token once (on stdout, nothing else), keeps only the
    /// token's SHA-256 in STATE_DIR/principals.toml, and makes a running daemon accept it.
    Add {
        /// The name recorded as submitter and approver (letters, digits, '.', '_', '-', '@').
        name: String,
        /// What the principal may do (repeat for several): deployer (submit, cancel, roll back),
        /// manager, security, devops, qa (approve for that role), admin (everything).
        #[arg(long = "role", value_name = "ROLE", required = true, value_parser = ROLE_NAMES)]
        roles: Vec<String>,
    },
    /// List the principals the daemon accepts with this configuration and state dir: names, roles
    /// and where each comes from (never tokens or hashes).
    List,
    /// Remove a principal from STATE_DIR/principals.toml; a running daemon stops accepting its token.
    Remove {
        /// The principal's name.
        name: String,
    },
}

/// Why a principal command did not succeed, and its exit code.
enum Failure {
    Usage(String),
    Refused(String),
}

/// Runs a principal command. `opts` gives `--state-dir`, `--server` and
/// `--json`; `config` the configuration the daemon uses.
pub fn run(cmd: PrincipalCommand, opts: &crate::commands::ClientOpts, config: &DaemonConfig) -> ExitCode {
    let state_dir = opts.state_dir.clone().unwrap_or_else(|| config.storage.path.clone());
    let server = opts.server.clone().unwrap_or_else(|| config.server.client_url());
    let result = match cmd {
        PrincipalCommand::Add { name, roles } => add(&name, &roles, &state_dir, &server, config),
        PrincipalCommand::List => list(&state_dir, config, opts.json),
        PrincipalCommand::Remove { name } => remove(&name, &state_dir, config),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Usage(m)) => {
            eprintln!("error: {m}");
            ExitCode::from(2)
        }
        Err(Failure::Refused(m)) => {
            eprintln!("error: {m}");
            ExitCode::from(1)
        }
    }
}

fn roles_text(roles: &[PrincipalRole]) -> String {
    roles.iter().map(|r| r.as_str()).collect::<Vec<_>>().join(", ")
}

fn add(name: &str, roles: &[String], state_dir: &Path, server: &str, config: &DaemonConfig) -> Result<(), Failure> {
    auth::validate_name(name).map_err(Failure::Usage)?;
    let mut parsed: Vec<PrincipalRole> = vec![];
    for r in roles {
        let role = PrincipalRole::parse(r)
            .ok_or_else(|| Failure::Usage(format!("--role {r:?}: use one of {}", ROLE_NAMES.join(", "))))?;
        if !parsed.contains(&role) {
            parsed.push(role);
        }
    }
    if config.principals.iter().any(|p| p.name == name) {
        return Err(Failure::Refused(format!(
            "{name} is already configured in [[principals]] of the configuration; choose another name"
        )));
    }
    if name == ADMIN && auth::admin_is_generated(&config.principals) {
        return Err(Failure::Refused(format!(
            "\"{ADMIN}\" is the generated admin principal (its token is in {}); choose another name",
            state_dir.join(auth::ADMIN_TOKEN_FILE).display()
        )));
    }
    let lock = auth::lock_file(state_dir).map_err(Failure::Usage)?;
    let mut list = auth::read_file(state_dir).map_err(Failure::Usage)?;
    let file = state_dir.join(auth::PRINCIPALS_FILE);
    if list.iter().any(|p| p.name == name) {
        return Err(Failure::Refused(format!(
            "{name} exists already in {}; to give {name} a new token, run `stagecoach principal remove {name}` \
             and add it again",
            file.display()
        )));
    }
    let token = auth::new_token().map_err(Failure::Usage)?;
    let principal = Principal {
        name: name.to_string(),
        roles: parsed.clone(),
        token_sha256: auth::token_sha256(&token),
    };
    list.push(principal);
    auth::write_file(state_dir, &list, &lock).map_err(Failure::Usage)?;
    drop(lock);
    println!("{token}");
    eprintln!(
        "added principal {name} ({}) to {}; the token above is shown only this once and only its SHA-256 is kept: \
         hand it to {name}, who passes it with --token or STAGECOACH_TOKEN",
        roles_text(&parsed),
        file.display()
    );
    let Some(pid) = signal_daemon(state_dir)? else {
        return Ok(());
    };
    match wait_accepted(server, &token) {
        Ok(()) => {
            eprintln!("the daemon (pid {pid}) reloaded its principals and accepts {name}'s token");
            Ok(())
        }
        Err(why) => Err(Failure::Refused(format!(
            "sent SIGHUP to the daemon (pid {pid}) on {}, but {why}; its log says why it did not take the \
             principals file (for example a name that is also in [[principals]])",
            state_dir.display()
        ))),
    }
}

fn remove(name: &str, state_dir: &Path, config: &DaemonConfig) -> Result<(), Failure> {
    let lock = auth::lock_file(state_dir).map_err(Failure::Usage)?;
    let mut list = auth::read_file(state_dir).map_err(Failure::Usage)?;
    let file = state_dir.join(auth::PRINCIPALS_FILE);
    let before = list.len();
    list.retain(|p| p.name != name);
    if list.len() == before {
        let why = if config.principals.iter().any(|p| p.name == name) {
            format!(
                "{name} is configured in [[principals]] of the configuration, not in {}: remove it there and \
                 restart the daemon",
                file.display()
            )
        } else if name == ADMIN && auth::admin_is_generated(&config.principals) {
            format!(
                "\"{ADMIN}\" is the generated admin principal, which exists while no [[principals]] are configured; \
                 it cannot be removed here"
            )
        } else {
            format!(
                "there is no principal {name} in {}; `stagecoach principal list` shows them",
                file.display()
            )
        };
        return Err(Failure::Refused(why));
    }
    auth::write_file(state_dir, &list, &lock).map_err(Failure::Usage)?;
    drop(lock);
    eprintln!("removed principal {name} from {}", file.display());
    if let Some(pid) = signal_daemon(state_dir)? {
        eprintln!("the daemon stops accepting {name}'s token as soon as it has reloaded (pid {pid}; its log says `principals reloaded`)");
    }
    Ok(())
}

/// Sends SIGHUP to the daemon running on `state_dir`, if any, and says so.
fn signal_daemon(state_dir: &Path) -> Result<Option<i32>, Failure> {
    use nix::sys::signal::{kill, Signal};
    match daemon::pidfile::running(state_dir) {
        Ok(Some(pid)) => match kill(nix::unistd::Pid::from_raw(pid), Signal::SIGHUP) {
            Ok(()) => {
                eprintln!("sent SIGHUP to the daemon (pid {pid}) so it reloads its principals");
                Ok(Some(pid))
            }
            Err(e) => Err(Failure::Refused(format!(
                "the file is written, but SIGHUP to the daemon (pid {pid}) failed: {e}; run `kill -HUP {pid}` as \
                 the daemon's user, or restart the daemon"
            ))),
        },
        Ok(None) => {
            eprintln!(
                "no daemon is running on {}; it reads the principals file when it starts",
                state_dir.display()
            );
            Ok(None)
        }
        Err(e) => Err(Failure::Refused(format!(
            "the file is written, but the running daemon cannot be told: {e}; send it SIGHUP yourself or restart it"
        ))),
    }
}

/// Waits (at most [`RELOAD_WAIT`]) until the daemon at `server` accepts `token`; `Err` says what
/// it answered last.
fn wait_accepted(server: &str, token: &str) -> Result<(), String> {
    let api = client::Client::builder(server)
        .and_then(|b| {
            b.token(token)
                .request_timeout(Some(Duration::from_secs(5)))
                .no_proxy()
                .build()
        })
        .map_err(|e| format!("cannot set up an HTTP client: {e}"))?;
    // Any authenticated route would do; the OpenAPI description changes nothing and needs no id.
    let url = format!("{}/v1/openapi.json", api.base_url());
    let deadline = Instant::now() + RELOAD_WAIT;
    loop {
        let last = match api.openapi() {
            Ok(_) => return Ok(()),
            Err(client::Error::Api(refusal)) => format!("{url} answered {}", refusal.status_line()),
            Err(e) => format!("{url} did not answer: {e}"),
        };
        if Instant::now() >= deadline {
            return Err(format!(
                "it did not accept the new token within {} s ({last})",
                RELOAD_WAIT.as_secs()
            ));
        }
        std::thread::sleep(POLL_EVERY);
    }
}

/// One row of `principal list`.
#[derive(serde::Serialize)]
struct Row {
    name: String,
    roles: Vec<&'static str>,
    source: String,
}

fn list(state_dir: &Path, config: &DaemonConfig, json: bool) -> Result<(), Failure> {
    let row = |p: &Principal, source: String| Row {
        name: p.name.clone(),
        roles: p.roles.iter().map(|r| r.as_str()).collect(),
        source,
    };
    let mut rows: Vec<Row> = config
        .principals
        .iter()
        .map(|p| row(p, "[[principals]]".into()))
        .collect();
    if auth::admin_is_generated(&config.principals) {
        let token: PathBuf = state_dir.join(auth::ADMIN_TOKEN_FILE);
        let source = if token.exists() {
            token.display().to_string()
        } else {
            format!("{} (written at the daemon's first start)", token.display())
        };
        rows.push(Row {
            name: ADMIN.into(),
            roles: vec![PrincipalRole::Admin.as_str()],
            source,
        });
    }
    let file = state_dir.join(auth::PRINCIPALS_FILE);
    for p in auth::read_file(state_dir).map_err(Failure::Usage)? {
        rows.push(row(&p, file.display().to_string()));
    }
    if json {
        let text = serde_json::to_string_pretty(&rows).map_err(|e| Failure::Usage(e.to_string()))?;
        println!("{text}");
        return Ok(());
    }
    let width = rows.iter().map(|r| r.name.len()).max().unwrap_or(0).max(4);
    let roles_width = rows.iter().map(|r| r.roles.join(",").len()).max().unwrap_or(0).max(5);
    println!("{:width$}  {:roles_width$}  FROM", "NAME", "ROLES");
    for r in &rows {
        println!("{:width$}  {:roles_width$}  {}", r.name, r.roles.join(","), r.source);
    }
    Ok(())
}
