//! Integration tests of the probes against real processes on 127.0.0.1: the `stagecoach-example` service,
//! shell commands, and a Prometheus server.

mod command;
mod common;
mod health;
mod prometheus;
mod scrape;
