//! The `stagecoach` binary: parses arguments, builds the parts, runs them.
//!
//! Exit codes: 0 success; 1 the run worked but an expectation or check
//! failed, or the daemon refused a client request (any 4xx); 2 bad input
//! (arguments, configuration, scenario), or no daemon to answer (see
//! `commands.rs`).

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

mod commands;
mod demo;
mod principal;
mod render;
mod watch;

#[derive(Parser)]
#[command(
    name = "stagecoach",
    version,
    about = "Deployment orchestrator: takes every release through PREPARE, STAGING, VALIDATE, APPROVE, DEPLOY, MONITOR and ROLLBACK"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    client: commands::ClientOpts,
}

#[derive(Subcommand)]
enum Command {
    /// Run a scenario against the real agents in virtual time and print the Deployment Records.
    Simulate {
        /// The scenario file (TOML; see docs/simulation.md).
        scenario: PathBuf,
        /// Configuration file layered over the bundled defaults (agents.toml).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Print {"records": [...]} as JSON instead of Markdown.
        #[arg(long)]
        json: bool,
    },
    /// Check a configuration file and print the effective configuration as JSON.
    Config {
        /// Configuration file layered over the bundled defaults.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Run the daemon: the agents, the journal and the HTTP API, until SIGINT/SIGTERM.
    Daemon {
        /// Address to listen on (overrides [server] listen; default 127.0.0.1:7400).
        #[arg(long)]
        listen: Option<String>,
        /// Log format on stderr.
        #[arg(long, value_enum, default_value = "human")]
        log_format: LogFormat,
    },
    /// See a real release go out, get watched and get rolled back on this machine: runs the
    /// daemon in this process with examples/demo.toml and deploys three releases of the bundled
    /// example service (about 70 seconds).
    Demo,
    /// Measure Stagecoach against baselines taken in the same run (docs/PERFORMANCE.md).
    Bench {
        /// Small sizes, for CI; fails only on gross regressions.
        #[arg(long)]
        quick: bool,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print a shell completion script (e.g. `stagecoach completions bash > /etc/bash_completion.d/stagecoach`).
    Completions {
        /// The shell: bash, zsh or fish (also elvish, powershell).
        #[arg(value_name = "SHELL")]
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff), generated from these command definitions: `stagecoach man | man -l -`.
    Man {
        /// Write stagecoach.1 and one page per command (stagecoach-submit.1, ...) into this directory instead.
        #[arg(long, value_name = "DIR")]
        out_dir: Option<PathBuf>,
    },
    /// Run the bundled example service (what `demo` deploys; see examples/demo.toml).
    #[command(hide = true)]
    ExampleService(example_service::server::Options),
    /// Add, list or remove the people and CI jobs who may call the daemon (STATE_DIR/principals.toml).
    #[command(subcommand)]
    Principal(principal::PrincipalCommand),
    #[command(flatten)]
    Client(commands::ClientCommand),
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Human,
    Json,
}

fn read(path: &Path) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("{}: cannot read: {e}", path.display()))
}

fn env_map() -> BTreeMap<String, String> {
    std::env::vars().collect()
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Logs go to stderr; RUST_LOG selects the level (default: warnings, and
    // information for the daemon).
    let (default_level, format) = match &cli.command {
        Command::Daemon { log_format, .. } => ("info", *log_format),
        // The demo's daemon runs in this process: only its errors would interrupt the live view.
        Command::Demo => ("error", LogFormat::Human),
        _ => ("warn", LogFormat::Human),
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    // Colour only on a terminal, and never with NO_COLOR set: logs in files and journald stay plain.
    let ansi = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Human => logs.init(),
        LogFormat::Json => logs.json().init(),
    }
    match cli.command {
        Command::Simulate { scenario, config, json } => simulate(&scenario, config.as_deref(), json),
        Command::Config { config } => show_config(config.as_deref()),
        Command::Daemon { listen, .. } => {
            run_daemon(cli.client.config.as_deref(), listen, cli.client.state_dir.clone())
        }
        Command::Demo => match demo::run(demo::DemoOptions {
            state_dir: cli.client.state_dir.clone(),
        }) {
            Ok(code) => ExitCode::from(code),
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(1)
            }
        },
        Command::Bench { quick, json } => run_bench(quick, json),
        Command::Completions { shell } => {
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "stagecoach", &mut script);
            print_all(&script, "the completion script")
        }
        Command::Man { out_dir } => man(out_dir.as_deref()),
        Command::ExampleService(options) => match example_service::server::run(options) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("stagecoach example-service: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Principal(cmd) => match load_config(cli.client.config.as_deref()) {
            Ok((_, config)) => principal::run(cmd, &cli.client, &config),
            Err(e) => usage_error(e),
        },
        Command::Client(cmd) => {
            let (_, config) = match load_config(cli.client.config.as_deref()) {
                Ok(c) => c,
                Err(e) => return usage_error(e),
            };
            let defaults = commands::ClientDefaults {
                server_url: config.server.client_url(),
                state_dir: config.storage.path.clone(),
            };
            commands::run(cmd, &cli.client, defaults)
        }
    }
}

/// Loads the configuration the daemon and the CLI client share.
fn load_config(config: Option<&Path>) -> Result<(workflow::Settings, daemon::DaemonConfig), String> {
    let text = config.map(read).transpose()?;
    let name = config.map(|p| p.display().to_string()).unwrap_or_default();
    daemon::config::load(text.as_deref().map(|t| (name.as_str(), t)), &env_map()).map_err(|e| e.to_string())
}

fn run_daemon(config: Option<&Path>, listen: Option<String>, state_dir: Option<PathBuf>) -> ExitCode {
    let (settings, mut daemon_config) = match load_config(config) {
        Ok(c) => c,
        Err(e) => return usage_error(e),
    };
    if let Some(l) = listen {
        daemon_config.server.listen = l;
    }
    if let Some(d) = state_dir {
        daemon_config.storage.path = d;
    }
    if let Err(e) = daemon_config.validate() {
        return usage_error(e);
    }
    match daemon::run(daemon::Options {
        settings,
        config: daemon_config,
    }) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

fn run_bench(quick: bool, json: bool) -> ExitCode {
    let opts = bench::BenchOptions {
        quick,
        // Rows 5–8 start this binary as `daemon` on 127.0.0.1.
        daemon_binary: std::env::current_exe().ok(),
        // Row 8's metrics endpoint: the example service, served by this binary too.
        example_binary: bench::sibling_binary("stagecoach-example"),
    };
    match bench::run(&opts) {
        Ok(report) => {
            if json {
                match serde_json::to_string_pretty(&report) {
                    Ok(j) => println!("{j}"),
                    Err(e) => return usage_error(e),
                }
            } else {
                print!("{}", report.render_text());
            }
            if report.gross_regressions().is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(e) => {
            eprintln!("stagecoach bench: {e}");
            ExitCode::from(2)
        }
    }
}

/// `stagecoach man`: the manual page on stdout, or every page into a directory.
fn man(out_dir: Option<&Path>) -> ExitCode {
    let pages = man_pages();
    let written = match out_dir {
        None => pages[0].render(&mut std::io::stdout().lock()),
        Some(dir) => std::fs::create_dir_all(dir).and_then(|()| {
            pages
                .iter()
                .try_for_each(|page| page.generate_to(dir).map(|path| println!("{}", path.display())))
        }),
    };
    match written {
        Ok(()) => ExitCode::SUCCESS,
        // `stagecoach man | head` is not an error.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => usage_error(format!("cannot write the manual page: {e}")),
    }
}

/// The manual pages generated from the command definitions: `stagecoach.1`
/// first, then one per visible command (`stagecoach-submit.1`, ...).
fn man_pages() -> Vec<clap_mangen::Man> {
    fn collect(command: &clap::Command, date: &str, pages: &mut Vec<clap_mangen::Man>) {
        pages.push(clap_mangen::Man::new(command.clone()).date(date));
        for sub in command.get_subcommands().filter(|s| !s.is_hide_set()) {
            collect(sub, date, pages);
        }
    }
    let mut top = Cli::command().disable_help_subcommand(true);
    // Building names each command's page after its path: stagecoach-submit.
    top.build();
    let mut pages = vec![];
    collect(&top, &man_date(), &mut pages);
    pages
}

/// The date on the manual pages: `$SOURCE_DATE_EPOCH` when set (reproducible
/// builds), else the day this binary was built (its file's modification time).
fn man_date() -> String {
    let seconds = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.trim().parse::<i64>().ok())
        .or_else(|| {
            let modified = std::fs::metadata(std::env::current_exe().ok()?).ok()?.modified().ok()?;
            let since = modified.duration_since(std::time::UNIX_EPOCH).ok()?;
            i64::try_from(since.as_secs()).ok()
        });
    seconds
        .and_then(|s| chrono::DateTime::from_timestamp(s, 0))
        .map(|t| t.format("%Y-%m-%d").to_string())
        .unwrap_or_else(|| env!("CARGO_PKG_VERSION").to_string())
}

/// Writes `bytes` to stdout; a closed pipe (`| head`) is not an error.
fn print_all(bytes: &[u8], what: &str) -> ExitCode {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => usage_error(format!("cannot write {what}: {e}")),
    }
}

fn usage_error(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::from(2)
}

fn show_config(config: Option<&Path>) -> ExitCode {
    let text = match config.map(read).transpose() {
        Ok(t) => t,
        Err(e) => return usage_error(e),
    };
    let name = config.map(|p| p.display().to_string()).unwrap_or_default();
    let layers: Vec<workflow::settings::Layer> = text
        .as_deref()
        .map(|t| workflow::settings::Layer { name: &name, toml: t })
        .into_iter()
        .collect();
    match daemon::config::load(layers.first().map(|l| (l.name, l.toml)), &env_map()) {
        Ok((s, d)) => {
            let mut doc = serde_json::to_value(&s).unwrap_or_default();
            if let (Some(map), Ok(serde_json::Value::Object(extra))) = (doc.as_object_mut(), serde_json::to_value(&d)) {
                map.extend(extra);
            }
            match serde_json::to_string_pretty(&doc) {
                Ok(j) => println!("{j}"),
                Err(e) => return usage_error(e),
            }
            ExitCode::SUCCESS
        }
        Err(e) => usage_error(e),
    }
}

fn simulate(path: &Path, config: Option<&Path>, json: bool) -> ExitCode {
    let file = path.display().to_string();
    let text = match read(path) {
        Ok(t) => t,
        Err(e) => return usage_error(e),
    };
    let scenario = match sim::Scenario::parse(&file, &text) {
        Ok(s) => s,
        Err(e) => return usage_error(e),
    };
    let config_text = match config.map(read).transpose() {
        Ok(t) => t,
        Err(e) => return usage_error(e),
    };
    let config_name = config.map(|p| p.display().to_string()).unwrap_or_default();
    let settings = match sim::settings_for(
        config_text.as_deref().map(|t| (config_name.as_str(), t)),
        &file,
        &scenario,
        &env_map(),
    ) {
        Ok(s) => s,
        Err(e) => return usage_error(e),
    };
    let outcome = match sim::simulate(&file, &scenario, settings) {
        Ok(o) => o,
        Err(e) => return usage_error(e),
    };
    if json {
        let doc = serde_json::json!({ "records": outcome.records });
        match serde_json::to_string_pretty(&doc) {
            Ok(j) => println!("{j}"),
            Err(e) => return usage_error(e),
        }
    } else {
        for r in &outcome.records {
            println!("{}", r.markdown);
        }
        for r in &outcome.records {
            eprintln!(
                "{} {} {} {}: {}",
                r.id,
                r.service,
                r.version.as_ref().map(|v| v.as_str()).unwrap_or("-"),
                r.kind,
                r.status
            );
        }
    }
    if outcome.failed_expectations.is_empty() {
        ExitCode::SUCCESS
    } else {
        for f in &outcome.failed_expectations {
            eprintln!("expectation failed: {f}");
        }
        ExitCode::from(1)
    }
}
