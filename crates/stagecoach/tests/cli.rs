//! The command line itself, through the real binary: suggestions for typos,
//! usage lines, the exit-code rule of the client commands against a real
//! daemon on 127.0.0.1, and the messages a new user meets first.

mod common;

use std::process::{Command, Output};

use common::*;

fn stagecoach(args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_stagecoach"));
    c.args(args)
        .env("NO_COLOR", "1")
        .env_remove("STAGECOACH_TOKEN")
        .env_remove("RUST_LOG");
    c
}

fn run(args: &[&str]) -> Output {
    run_with_timeout(stagecoach(args), &format!("stagecoach {}", args.join(" ")))
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).to_string()
}

#[test]
fn mistyped_commands_and_flags_get_a_suggestion() {
    for (args, suggestion) in [
        (&["sumbit", "web"][..], "'submit'"),
        (&["submit", "web", "--wacth"][..], "'--watch'"),
        (&["aprove", "1"][..], "'approve'"),
        (&["verify", "1", "--ofline"][..], "'--offline'"),
    ] {
        let out = run(args);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.contains(suggestion),
            "{args:?} should suggest {suggestion}: {stderr}"
        );
    }
}

#[test]
fn usage_lines_show_optional_arguments_as_optional() {
    for (command, usage) in [
        ("submit", "stagecoach submit [OPTIONS] <SERVICE> [VERSION]"),
        ("list", "stagecoach list [OPTIONS]"),
        ("status", "stagecoach status [OPTIONS] <ID>"),
        ("watch", "stagecoach watch [OPTIONS] <ID>"),
        ("approve", "stagecoach approve [OPTIONS] <ID>"),
        ("reject", "stagecoach reject [OPTIONS] --reason <TEXT> <ID>"),
        ("rollback", "stagecoach rollback [OPTIONS] --reason <TEXT> <ID>"),
        ("cancel", "stagecoach cancel [OPTIONS] <ID>"),
        ("ack", "stagecoach ack [OPTIONS] <ESCALATION_ID>"),
        ("record", "stagecoach record [OPTIONS] <ID>"),
        ("verify", "stagecoach verify [OPTIONS] <ID>"),
    ] {
        let out = run(&[command, "--help"]);
        let help = text(&out.stdout);
        assert_eq!(out.status.code(), Some(0), "{command} --help");
        assert!(help.contains(&format!("Usage: {usage}\n")), "{command} --help:\n{help}");
    }
    let help = text(&run(&["approve", "--help"]).stdout);
    assert!(help.contains("[default: manager]"), "{help}");
}

/// Runs a client command against `d` with `token`.
fn client(d: &Daemon, token: &str, args: &[&str]) -> Output {
    let mut c = stagecoach(args);
    c.args(["--server", &d.url, "--token", token]);
    run_with_timeout(c, &format!("stagecoach {}", args.join(" ")))
}

#[test]
fn client_exit_codes_follow_one_rule() {
    let mut h = Harness::new(&Config::default().principal("alice", &["deployer"]));
    let d = h.start();
    let alice = token("alice");

    // 0: the request was done.
    let out = client(&d, &alice, &["list"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));

    // 1: the daemon answered and refused (every 4xx).
    for (args, token, answer) in [
        (&["list"][..], "not-a-known-token", "(401 "),
        (&["status", "d-000099"][..], alice.as_str(), "(404 "),
        (&["submit", "web", "not a version!"][..], alice.as_str(), "(422 "),
    ] {
        let out = client(&d, token, args);
        let stderr = text(&out.stderr);
        assert!(stderr.contains(answer), "{args:?}: {stderr}");
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
    }

    // 2: no answer to act on (usage, no token, no daemon).
    let out = client(&d, &alice, &["status", "not/an/id"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let empty = h.path("empty-state");
    let out = run_with_timeout(
        {
            let mut c = stagecoach(&["list", "--server", &d.url, "--state-dir"]);
            c.arg(&empty);
            c
        },
        "stagecoach list without a token",
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("no API token"), "{}", text(&out.stderr));
    // Nothing listens on port 1 of the loopback address.
    let mut c = stagecoach(&["list", "--server", "http://127.0.0.1:1", "--token", &alice]);
    c.current_dir(h.dir.path());
    let out = run_with_timeout(c, "stagecoach list against no daemon");
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
}

#[test]
fn verify_offline_while_the_daemon_runs_says_to_drop_offline() {
    let mut h = Harness::new(&Config::default().principal("alice", &["deployer"]));
    let _d = h.start();
    let state = h.state().display().to_string();
    let out = run(&["verify", "1", "--offline", "--state-dir", &state]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("drop --offline"), "{stderr}");
    assert!(stderr.contains("stagecoach verify d-000001"), "{stderr}");
}

#[test]
fn logs_carry_no_colour_when_stderr_is_not_a_terminal() {
    let mut h = Harness::new(&Config::default());
    let mut cmd = h.command();
    cmd.env_remove("NO_COLOR");
    let mut d = h.start_command(cmd);
    assert!(d.terminate().success());
    let logs = h.logs.text();
    assert!(logs.contains("INFO"), "the daemon logs at info level:\n{logs}");
    assert!(!logs.contains('\x1b'), "colour escapes in piped logs:\n{logs}");
}
