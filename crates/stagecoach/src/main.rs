//! The `stagecoach` binary: parses arguments, builds the parts, runs them.
//!
//! Exit codes: 0 success; 1 the run worked but an expectation or check
//! failed; 2 bad input (arguments, configuration, scenario).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "stagecoach",
    version,
    about = "Deployment orchestrator: takes every release through PREPARE, STAGING, VALIDATE, APPROVE, DEPLOY, MONITOR and ROLLBACK"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
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
    /// Check a configuration file and print the effective configuration as TOML.
    Config {
        /// Configuration file layered over the bundled defaults.
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

fn read(path: &Path) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("{}: cannot read: {e}", path.display()))
}

fn env_map() -> BTreeMap<String, String> {
    std::env::vars().collect()
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Logs go to stderr; RUST_LOG selects the level (default: warnings).
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    match cli.command {
        Command::Simulate { scenario, config, json } => simulate(&scenario, config.as_deref(), json),
        Command::Config { config } => show_config(config.as_deref()),
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
    match workflow::Settings::load(&layers, &env_map()) {
        Ok(s) => {
            match serde_json::to_string_pretty(&s) {
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
