//! A second person in one command, against the real daemon binary:
//! `stagecoach principal add` prints a token that the running daemon accepts
//! without a restart (the command sends SIGHUP and waits for it), the new
//! manager approves what the admin submitted while the admin's own approval
//! is refused with a hint, a refused token names where it came from, a
//! broken principals file on reload keeps the principals in use, and a stale
//! `admin.token` ends in a message that says what to do.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use client::wire::ListQuery;
use common::{approvals, expect_error, ok, run_with_timeout, Config, Daemon, Harness};
use serde_json::json;

/// How the CLI finds its token in a call.
enum Token<'a> {
    /// None given: the state dir's admin.token.
    StateDir,
    Flag(&'a str),
    Env(&'a str),
}

/// Runs the CLI with the harness's configuration and state dir, against `d` when given.
fn cli(h: &Harness, d: Option<&Daemon>, token: Token<'_>, args: &[&str]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_stagecoach"));
    c.args(args)
        .arg("--state-dir")
        .arg(h.state())
        .current_dir(h.dir.path())
        .env("NO_COLOR", "1")
        .env_remove("STAGECOACH_TOKEN");
    for (key, _) in std::env::vars() {
        if key.starts_with("STAGECOACH__") {
            c.env_remove(key);
        }
    }
    if let Some(config) = &h.config {
        c.arg("--config").arg(config);
    }
    if let Some(d) = d {
        c.args(["--server", &d.url]);
    }
    match token {
        Token::StateDir => {}
        Token::Flag(t) => {
            c.args(["--token", t]);
        }
        Token::Env(t) => {
            c.env("STAGECOACH_TOKEN", t);
        }
    }
    run_with_timeout(c, &format!("stagecoach {}", args.join(" ")))
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).to_string()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

/// Checks the exit code, showing both streams when it differs.
fn expect_code(o: &Output, code: i32, what: &str) {
    assert_eq!(
        o.status.code(),
        Some(code),
        "{what}: exit status\nstdout:\n{}\nstderr:\n{}",
        stdout(o),
        stderr(o)
    );
}

/// `principal add`'s stdout: exactly the token, one line.
fn token_of(o: &Output) -> String {
    let out = stdout(o);
    let token = out.trim_end_matches('\n');
    assert!(
        token.len() == 64 && token.bytes().all(|b| b.is_ascii_hexdigit()) && out.ends_with('\n'),
        "stdout must hold only the token: {out:?}; stderr:\n{}",
        stderr(o)
    );
    token.to_string()
}

fn admin_token(state: &Path) -> String {
    std::fs::read_to_string(state.join("admin.token"))
        .expect("the daemon wrote admin.token")
        .trim()
        .to_string()
}

#[test]
fn a_second_manager_in_one_command_approves_without_a_restart() {
    use std::os::unix::fs::PermissionsExt;
    let mut h = Harness::new(&Config {
        manager_human: true,
        ..Config::default()
    });
    let d = h.start();
    let admin = admin_token(&h.state());

    // The admin submits; the admin's own approval is refused, and the refusal says what to do.
    let record = d.submit(
        &admin,
        &json!({"service": "web", "version": "1.2.0", "type": "standard", "strategy": "canary"}),
    );
    let id = record["id"].as_str().expect("id").to_string();
    let mut events = d.events(&id, &admin);
    events.wait_status("awaiting_approval");
    let own = cli(
        &h,
        Some(&d),
        Token::StateDir,
        &["approve", &id, "--role", "manager", "--reason", "release notes read"],
    );
    expect_code(&own, 1, "the admin approves its own deployment");
    let refusal = stderr(&own);
    assert!(
        refusal.contains("admin submitted this deployment and cannot approve it (separation of duties)"),
        "{refusal}"
    );
    assert!(
        refusal.contains("another principal with the manager role must decide")
            && refusal.contains("`stagecoach principal add NAME --role manager`"),
        "the refusal says how to get another approver: {refusal}"
    );

    // One command: the token on stdout, only its hash in the state dir, and the running daemon
    // accepts it before the command returns.
    let add = cli(
        &h,
        Some(&d),
        Token::StateDir,
        &["principal", "add", "mia", "--role", "manager"],
    );
    expect_code(&add, 0, "principal add mia");
    let mia = token_of(&add);
    let said = stderr(&add);
    assert!(said.contains("sent SIGHUP to the daemon"), "{said}");
    assert!(said.contains("accepts mia's token"), "{said}");
    d.logs.wait_for("principals reloaded: added mia (manager)", 1);
    let file = h.state().join("principals.toml");
    let mode = std::fs::metadata(&file).expect("principals.toml").permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "principals.toml is private");
    let stored = std::fs::read_to_string(&file).expect("read principals.toml");
    assert!(!stored.contains(&mia), "the token itself is never stored:\n{stored}");
    assert!(
        !d.logs.text().contains(&mia),
        "the token never reaches the daemon's log"
    );

    // A second `add` of the same name is refused; the list shows names and roles, never hashes.
    let again = cli(
        &h,
        Some(&d),
        Token::StateDir,
        &["principal", "add", "mia", "--role", "qa"],
    );
    expect_code(&again, 1, "principal add mia again");
    assert!(stdout(&again).is_empty(), "no token for a refused add");
    assert!(stderr(&again).contains("mia exists already"), "{}", stderr(&again));
    let list = cli(&h, None, Token::StateDir, &["principal", "list"]);
    expect_code(&list, 0, "principal list");
    let listed = stdout(&list);
    assert!(
        listed.contains("admin") && listed.contains("mia") && listed.contains("manager"),
        "{listed}"
    );
    let hash = stored
        .split("token_sha256 = \"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("a hash in principals.toml");
    assert!(
        !listed.contains(hash) && !listed.contains(&mia),
        "never a hash or a token: {listed}"
    );

    // The new manager approves what the admin submitted, with the token from the environment.
    let approve = cli(
        &h,
        Some(&d),
        Token::Env(&mia),
        &["approve", &id, "--role", "manager", "--reason", "release notes read"],
    );
    expect_code(&approve, 0, "mia approves");
    assert_eq!(events.wait_finished(), "succeeded");
    let record = d.record(&id, &admin);
    assert!(
        approvals(&record).contains(&("manager".into(), "granted".into(), "mia".into())),
        "{:?}",
        approvals(&record)
    );

    // A refused token names its source and what to do.
    let wrong = cli(&h, Some(&d), Token::Flag("not-a-token"), &["list"]);
    expect_code(&wrong, 1, "a wrong --token");
    assert!(
        stderr(&wrong).contains("did not accept the token from --token"),
        "{}",
        stderr(&wrong)
    );
    let wrong = cli(&h, Some(&d), Token::Env("not-a-token"), &["list"]);
    expect_code(&wrong, 1, "a wrong STAGECOACH_TOKEN");
    assert!(
        stderr(&wrong).contains("did not accept the token from STAGECOACH_TOKEN"),
        "{}",
        stderr(&wrong)
    );

    // A broken file on reload keeps the principals in use, and the log says why.
    std::fs::write(&file, format!("{stored}\nthis is not TOML [\n")).expect("break principals.toml");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(d.pid as i32),
        nix::sys::signal::Signal::SIGHUP,
    )
    .expect("SIGHUP the daemon");
    d.logs.wait_for("principals not reloaded, the ones in use stay", 1);
    assert!(
        d.logs.text().contains("principals.toml: TOML parse error"),
        "the log names the file"
    );
    let everything = ListQuery::default();
    ok(d.api(&mia).list_page(&everything), "mia's token after a broken reload");
    ok(
        d.api(&admin).list_page(&everything),
        "the admin's token after a broken reload",
    );

    // Once the file is whole again, `remove` takes mia out of the running daemon.
    std::fs::write(&file, &stored).expect("restore principals.toml");
    let remove = cli(&h, Some(&d), Token::StateDir, &["principal", "remove", "mia"]);
    expect_code(&remove, 0, "principal remove mia");
    d.logs.wait_for("principals reloaded: removed mia", 1);
    expect_error(
        d.api(&mia).list_page(&everything),
        401,
        "unauthorized",
        "mia's token after remove",
    );
    ok(d.api(&admin).list_page(&everything), "the admin keeps working");
}

#[test]
fn a_principal_added_before_the_start_works_and_a_stale_admin_token_says_what_to_do() {
    let mut h = Harness::new(&Config::default().principal("root", &["admin"]));
    std::fs::create_dir_all(h.state()).expect("state dir");
    std::fs::write(h.state().join("admin.token"), "left-from-a-start-without-principals\n").expect("stale token");

    // No daemon yet: the file is written and read at the start.
    let add = cli(
        &h,
        None,
        Token::StateDir,
        &["principal", "add", "dana", "--role", "deployer"],
    );
    expect_code(&add, 0, "principal add before the daemon starts");
    let dana = token_of(&add);
    assert!(stderr(&add).contains("no daemon is running"), "{}", stderr(&add));
    // A name of [[principals]] is taken.
    let taken = cli(&h, None, Token::StateDir, &["principal", "add", "root", "--role", "qa"]);
    expect_code(&taken, 1, "principal add of a configured name");
    assert!(
        stderr(&taken).contains("already configured in [[principals]]"),
        "{}",
        stderr(&taken)
    );

    let d = h.start();
    d.logs.wait_for("principals loaded: root, dana", 1);
    assert!(
        d.logs.text().contains("the admin token is not accepted"),
        "the daemon warns about the stale admin.token"
    );
    let submitted = cli(&h, Some(&d), Token::Flag(&dana), &["submit", "web", "1.2.0"]);
    expect_code(&submitted, 0, "dana submits");

    // The CLI falls back to the stale admin.token: the 401 names it and says what to do.
    let stale = cli(&h, Some(&d), Token::StateDir, &["list"]);
    expect_code(&stale, 1, "the stale admin.token");
    let said = stderr(&stale);
    let path = h.state().join("admin.token");
    assert!(
        said.contains(&format!("did not accept the token from {}", path.display())),
        "{said}"
    );
    assert!(
        said.contains("[[principals]]") && said.contains("--token") && said.contains("delete the stale"),
        "{said}"
    );
}
