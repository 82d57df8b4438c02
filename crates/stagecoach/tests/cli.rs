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
    let out = run(&["report", "dora", "--help"]);
    let help = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "report dora --help");
    assert!(help.contains("Usage: stagecoach report dora [OPTIONS]\n"), "{help}");
    assert!(
        help.contains("--since <DATE>") && help.contains("[default: now]"),
        "{help}"
    );
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

/// Runs `program args` with `input` on stdin (or none); its output.
fn pipe(program: &str, args: &[&str], input: &[u8]) -> Output {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {program} ({e}); `cargo xtask test` installs it"));
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(input).expect("write to stdin");
    drop(stdin);
    child.wait_with_output().expect("wait")
}

/// The commands a user sees (not the hidden example-service).
const COMMANDS: &[&str] = &[
    "simulate",
    "config",
    "daemon",
    "demo",
    "bench",
    "completions",
    "man",
    "principal",
    "submit",
    "list",
    "status",
    "watch",
    "approve",
    "reject",
    "rollback",
    "cancel",
    "ack",
    "unblock",
    "record",
    "verify",
    "report",
];

#[test]
fn completion_scripts_name_every_command_and_parse_in_their_shell() {
    // Each shell's own syntax check: bash -n, zsh -n, fish --no-execute.
    for (shell, check) in [("bash", ["-n"]), ("zsh", ["-n"]), ("fish", ["--no-execute"])] {
        let out = run(&["completions", shell]);
        assert_eq!(out.status.code(), Some(0), "completions {shell}: {}", text(&out.stderr));
        let script = text(&out.stdout);
        for command in COMMANDS {
            assert!(script.contains(command), "the {shell} script lacks {command}");
        }
        assert!(script.contains("offline"), "the {shell} script completes flags");
        let parsed = pipe(shell, &check, script.as_bytes());
        assert!(
            parsed.status.success(),
            "{shell} {check:?} rejects the script: {}",
            text(&parsed.stderr)
        );
    }
    let out = run(&["completions", "tcsh"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn the_manual_pages_pass_mandoc_lint() {
    // stdout: the main page, clean even of mandoc's warnings.
    let out = run(&["man"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let page = text(&out.stdout);
    assert!(page.starts_with(".ie") || page.starts_with(".TH"), "{page}");
    for command in COMMANDS {
        assert!(
            page.contains(&format!("stagecoach\\-{}", command.replace('-', "\\-"))),
            "{command}"
        );
    }
    let lint = pipe("mandoc", &["-T", "lint", "-W", "warning"], page.as_bytes());
    assert!(lint.status.success(), "mandoc -T lint: {}", text(&lint.stdout));

    // --out-dir: one page per command, each free of mandoc errors, rendered by man.
    let dir = tempfile::tempdir().expect("temp dir");
    let man1 = dir.path().join("man1");
    let mut c = stagecoach(&["man", "--out-dir"]);
    c.arg(&man1);
    let out = run_with_timeout(c, "stagecoach man --out-dir");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    for name in std::iter::once("stagecoach".to_string()).chain(COMMANDS.iter().map(|c| format!("stagecoach-{c}"))) {
        let path = man1.join(format!("{name}.1"));
        let path = path.to_str().expect("a UTF-8 path");
        let lint = pipe("mandoc", &["-T", "lint", "-W", "error", path], b"");
        assert!(lint.status.success(), "mandoc -T lint {path}: {}", text(&lint.stdout));
    }
    let verify = std::fs::read_to_string(man1.join("stagecoach-verify.1")).expect("stagecoach-verify.1");
    assert!(verify.contains("\\-\\-offline"), "{verify}");
    let dora = std::fs::read_to_string(man1.join("stagecoach-report-dora.1")).expect("stagecoach-report-dora.1");
    assert!(dora.contains("\\-\\-since"), "{dora}");
}

#[test]
fn the_systemd_unit_passes_systemd_analyze_verify() {
    // The unit as shipped, with ExecStart pointing at this build and its man page installed.
    let dir = tempfile::tempdir().expect("temp dir");
    let shipped = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/stagecoach.service"
    ))
    .expect("examples/stagecoach.service");
    for needle in [
        "User=stagecoach",
        "StateDirectory=stagecoach",
        "ExecStart=/usr/local/bin/stagecoach daemon --config /etc/stagecoach/agents.toml --state-dir /var/lib/stagecoach",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ReadWritePaths=/var/lib/stagecoach",
    ] {
        assert!(shipped.contains(needle), "the unit lacks {needle}");
    }
    let unit = dir.path().join("stagecoach.service");
    std::fs::write(
        &unit,
        shipped.replace("/usr/local/bin/stagecoach", env!("CARGO_BIN_EXE_stagecoach")),
    )
    .expect("write the unit");
    let man = dir.path().join("man");
    let mut c = stagecoach(&["man", "--out-dir"]);
    c.arg(man.join("man1"));
    assert!(run_with_timeout(c, "stagecoach man --out-dir").status.success());
    let mut verify = Command::new("systemd-analyze");
    verify.arg("verify").arg(&unit).env("MANPATH", &man);
    let out = run_with_timeout(verify, "systemd-analyze verify");
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "systemd-analyze verify: {}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
}
