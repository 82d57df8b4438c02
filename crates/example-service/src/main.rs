//! `stagecoach-example`: a tiny HTTP service for Stagecoach demos and integration tests (see the
//! library's `server` module). `stagecoach example-service` runs the same server.

use std::process::ExitCode;

use clap::Parser;

/// A tiny HTTP service that Stagecoach deploys in demos and tests. It listens on loopback only: its
/// admin endpoints have no authentication.
#[derive(Parser, Debug)]
#[command(name = "stagecoach-example")]
struct Cli {
    #[command(flatten)]
    options: example_service::server::Options,
}

fn main() -> ExitCode {
    match example_service::server::run(Cli::parse().options) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("stagecoach-example: {message}");
            ExitCode::FAILURE
        }
    }
}
