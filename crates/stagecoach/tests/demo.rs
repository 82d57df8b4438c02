//! `stagecoach demo` from start to finish, as a new user runs it: three real
//! releases of the example service behind the proxy, the bad one rolled back
//! on its error rate, the records printed, the journal intact, and the
//! closing hint working as typed.
//!
//! A test binary of its own: cargo runs test binaries one after another, so
//! the demo's live traffic never shares the machine with the seed-scenario
//! run of `process_target.rs`.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{run_with_timeout, run_within};

#[test]
fn the_demo_runs_from_start_to_finish() {
    let dir = tempfile::tempdir().expect("temp dir");
    let state = dir.path().join("state");
    let mut demo = Command::new(env!("CARGO_BIN_EXE_stagecoach"));
    demo.arg("demo")
        .arg("--state-dir")
        .arg(&state)
        .env("NO_COLOR", "1")
        .env_remove("RUST_LOG");
    let started = Instant::now();
    // The demo promises under three minutes; a slower run fails here.
    let out = run_within(demo, "stagecoach demo", Duration::from_secs(180));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "stagecoach demo failed: {}\n{stdout}\n{stderr}",
        out.status
    );
    println!("the demo took {:.0} s", started.elapsed().as_secs_f64());
    for needle in [
        "d-000001 status succeeded",
        "d-000002 step Canary at 50% of traffic",
        "d-000002 status succeeded",
        "d-000003 alert error rate",
        "d-000003 rollback finished: restored 2.0.0",
        "d-000003 status rolled_back",
        "### Status: SUCCESS",
        "### Status: ROLLBACK",
        "shop 2.0.0 went out, shop 3.0.0 was rolled back",
    ] {
        assert!(stdout.contains(needle), "the demo's output lacks {needle:?}:\n{stdout}");
    }
    // The rollback came at the first canary step, before 3.0.0 had half the traffic.
    assert!(!stdout.contains("d-000003 step Canary at 50%"), "{stdout}");
    assert!(stdout.contains(&state.display().to_string()), "the state dir is named");
    assert!(!stdout.contains('\x1b'), "NO_COLOR is respected:\n{stdout}");

    // The daemon has stopped: the journal can be read offline, and it holds.
    for id in ["1", "2", "3"] {
        let mut verify = Command::new(env!("CARGO_BIN_EXE_stagecoach"));
        verify.args(["verify", id, "--offline", "--state-dir"]).arg(&state);
        let v = run_with_timeout(verify, "stagecoach verify --offline");
        assert!(
            v.status.success(),
            "verify {id}: {}",
            String::from_utf8_lossy(&v.stdout)
        );
    }
    // The closing hint works as typed, in the directory the demo ran in.
    let hint = stdout
        .lines()
        .find_map(|line| line.strip_prefix("Check a record's hash chain: "))
        .expect("the demo closes with a command to check a chain");
    let mut typed = Command::new("sh");
    typed.args(["-c", hint]).env_remove("STAGECOACH_TOKEN");
    let v = run_with_timeout(typed, "the demo's closing hint");
    assert!(
        v.status.success() && String::from_utf8_lossy(&v.stdout).contains("intact"),
        "`{hint}`: {}\n{}",
        String::from_utf8_lossy(&v.stdout),
        String::from_utf8_lossy(&v.stderr)
    );
}
