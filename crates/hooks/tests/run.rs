//! Runs real child processes through `hooks::run`.

use std::path::Path;
use std::time::{Duration, Instant};

use hooks::{run, CommandSpec, RunError, TAIL_LINES};
use nix::errno::Errno;
use nix::sys::signal::kill;
use nix::unistd::Pid;

fn sh(script: &str) -> CommandSpec {
    CommandSpec::new(["sh", "-c", script])
}

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// Waits (bounded) for a PID written by a script to appear in `file`.
async fn read_pid(file: &Path) -> Pid {
    for _ in 0..200 {
        if let Ok(text) = std::fs::read_to_string(file) {
            if let Ok(pid) = text.trim().parse::<i32>() {
                return Pid::from_raw(pid);
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("no pid written to {}", file.display());
}

/// True once `pid` no longer exists. A zombie counts as gone: it has exited, and in containers whose PID 1
/// does not reap orphans it would otherwise linger forever.
fn is_gone(pid: Pid) -> bool {
    if kill(pid, None) == Err(Errno::ESRCH) {
        return true;
    }
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // Format: "pid (comm) state ..."; comm may contain spaces, so look after the last ')'.
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        Err(_) => true,
    }
}

/// Polls (bounded, ~3 s) until `pid` is gone.
async fn assert_gone(pid: Pid) {
    for _ in 0..300 {
        if is_gone(pid) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("process {pid} is still running");
}

#[tokio::test]
async fn success_exit_zero() {
    let outcome = run(&sh("echo hello"), &[]).await.unwrap();
    assert_eq!(outcome.exit_code, Some(0));
    assert!(outcome.success);
    assert!(!outcome.timed_out);
    assert_eq!(outcome.signal, None);
    assert_eq!(outcome.output_tail, "hello");
    assert!(outcome.summary().starts_with("exit 0 in "), "{}", outcome.summary());
}

#[tokio::test]
async fn nonzero_exit_reported_with_output_tail() {
    let outcome = run(&sh("echo preparing >&2; echo 'database locked' >&2; exit 3"), &[])
        .await
        .unwrap();
    assert_eq!(outcome.exit_code, Some(3));
    assert!(!outcome.success);
    assert!(!outcome.timed_out);
    assert_eq!(outcome.output_tail, "preparing\ndatabase locked");
    let summary = outcome.summary();
    assert!(
        summary.starts_with("exit 3 in ") && summary.ends_with(": database locked"),
        "{summary}"
    );
}

#[tokio::test]
async fn output_tail_keeps_last_lines_of_long_output() {
    let outcome = run(
        &sh("i=1; while [ $i -le 1000 ]; do echo \"line $i\"; i=$((i+1)); done"),
        &[],
    )
    .await
    .unwrap();
    assert!(outcome.success);
    let expected: Vec<String> = (1001 - TAIL_LINES..=1000).map(|i| format!("line {i}")).collect();
    assert_eq!(outcome.output_tail, expected.join("\n"));
}

#[tokio::test]
async fn stdout_and_stderr_both_captured() {
    // The relative order of two pipes is best-effort, so only check that both streams are there.
    let outcome = run(&sh("echo out; echo err >&2; exit 1"), &[]).await.unwrap();
    let mut lines: Vec<&str> = outcome.output_tail.lines().collect();
    lines.sort_unstable();
    assert_eq!(lines, ["err", "out"]);
}

#[tokio::test]
async fn stdout_alone_is_kept_apart_from_stderr() {
    let outcome = run(&sh("echo 2.3.1; echo 'warning: cache cold' >&2; exit 0"), &[])
        .await
        .unwrap();
    assert_eq!(outcome.stdout_tail, "2.3.1");
    assert!(
        outcome.output_tail.contains("warning: cache cold"),
        "{}",
        outcome.output_tail
    );
}

#[tokio::test]
async fn killed_by_signal() {
    let outcome = run(&sh("kill -9 $$"), &[]).await.unwrap();
    assert_eq!(outcome.exit_code, None);
    assert_eq!(outcome.signal, Some(9));
    assert!(!outcome.success && !outcome.timed_out);
    assert_eq!(outcome.summary(), "killed by signal 9");
}

#[tokio::test]
async fn env_passed_and_extra_env_overrides_spec_env() {
    let mut spec = sh("echo \"$STAGECOACH_SERVICE $FROM_SPEC $SHARED\"");
    spec.env.insert("FROM_SPEC".into(), "spec".into());
    spec.env.insert("SHARED".into(), "from-spec".into());
    let extra = env(&[("STAGECOACH_SERVICE", "web"), ("SHARED", "from-daemon")]);
    let outcome = run(&spec, &extra).await.unwrap();
    assert!(outcome.success);
    assert_eq!(outcome.output_tail, "web spec from-daemon");
}

#[tokio::test]
async fn only_the_base_environment_and_named_variables_are_inherited() {
    // Set in this process (the daemon's environment): a secret no command asked for, and one that is
    // passed through by name. Names unique to this test, so other tests are unaffected.
    std::env::set_var("HOOKS_TEST_SECRET_TOKEN", "s3cret");
    std::env::set_var("HOOKS_TEST_KUBECONFIG", "/etc/kube/config");
    let script =
        "echo \"path=${PATH:+set} secret=${HOOKS_TEST_SECRET_TOKEN:-unset} kube=${HOOKS_TEST_KUBECONFIG:-unset}\"";
    let outcome = run(&sh(script), &[]).await.unwrap();
    assert_eq!(outcome.output_tail, "path=set secret=unset kube=unset");

    let mut spec = sh(script);
    spec.env_passthrough = vec!["HOOKS_TEST_KUBECONFIG".into(), "HOOKS_TEST_NOT_SET_ANYWHERE".into()];
    let outcome = run(&spec, &[]).await.unwrap();
    assert_eq!(outcome.output_tail, "path=set secret=unset kube=/etc/kube/config");

    // Everything the command sees: the base variables, the passthrough and the given ones, nothing else.
    let mut spec = CommandSpec::new(["env"]);
    spec.env_passthrough = vec!["HOOKS_TEST_KUBECONFIG".into()];
    let outcome = run(&spec, &env(&[("STAGECOACH_SERVICE", "web")])).await.unwrap();
    for line in outcome.output_tail.lines() {
        let name = line.split('=').next().unwrap_or_default();
        assert!(
            hooks::BASE_ENV.contains(&name) || name == "HOOKS_TEST_KUBECONFIG" || name == "STAGECOACH_SERVICE",
            "unexpected variable {name} in {}",
            outcome.output_tail
        );
    }
}

#[tokio::test]
async fn a_bad_passthrough_name_is_refused() {
    let mut spec = sh("true");
    spec.env_passthrough = vec!["A=B".into()];
    let err = spec.validate("services.web.actions.deploy").unwrap_err();
    assert!(
        err.starts_with("services.web.actions.deploy: env_passthrough name \"A=B\" is invalid"),
        "{err}"
    );
}

#[tokio::test]
async fn stdin_is_null() {
    let outcome = run(&sh("cat; echo done"), &[]).await.unwrap();
    assert!(outcome.success);
    assert_eq!(outcome.output_tail, "done");
}

#[tokio::test]
async fn cwd_honoured() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("marker.txt"), "here\n").unwrap();
    let mut spec = sh("cat marker.txt");
    spec.cwd = Some(dir.path().to_path_buf());
    let outcome = run(&spec, &[]).await.unwrap();
    assert!(outcome.success, "{}", outcome.summary());
    assert_eq!(outcome.output_tail, "here");
}

#[tokio::test]
async fn script_in_tempdir_runs_directly_without_shell() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("deploy.sh");
    std::fs::write(
        &script,
        "#!/bin/sh\necho \"deploying $1 $STAGECOACH_VERSION\"\nexit 0\n",
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    // `*` would be expanded by a shell; run must pass it verbatim.
    let spec = CommandSpec::new([script.to_str().unwrap(), "*"]);
    let outcome = run(&spec, &env(&[("STAGECOACH_VERSION", "1.2.3")])).await.unwrap();
    assert!(outcome.success, "{}", outcome.summary());
    assert_eq!(outcome.output_tail, "deploying * 1.2.3");
}

#[tokio::test]
async fn missing_program_names_it() {
    let spec = CommandSpec::new(["stagecoach-no-such-program-xyz", "--flag"]);
    let err = run(&spec, &[]).await.unwrap_err();
    assert!(matches!(err, RunError::ProgramNotFound { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("stagecoach-no-such-program-xyz") && msg.contains("PATH"),
        "{msg}"
    );
}

#[tokio::test]
async fn non_executable_program_reported() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("not-exec.sh");
    std::fs::write(&script, "#!/bin/sh\necho hi\n").unwrap();
    let err = run(&CommandSpec::new([script.to_str().unwrap()]), &[])
        .await
        .unwrap_err();
    assert!(matches!(err, RunError::NotExecutable { .. }), "{err:?}");
    assert!(
        err.to_string().contains("not-exec.sh") && err.to_string().contains("chmod"),
        "{err}"
    );
}

#[tokio::test]
async fn missing_cwd_reported() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("does-not-exist");
    let mut spec = sh("true");
    spec.cwd = Some(missing.clone());
    let err = run(&spec, &[]).await.unwrap_err();
    assert!(matches!(err, RunError::CwdMissing { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("does-not-exist") && msg.contains("`sh`"), "{msg}");
}

#[tokio::test]
async fn invalid_spec_rejected_by_run() {
    let err = run(&CommandSpec::new(Vec::<String>::new()), &[]).await.unwrap_err();
    assert!(matches!(err, RunError::InvalidSpec(_)), "{err:?}");
}

#[tokio::test]
async fn timeout_kills_whole_process_group() {
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("grandchild.pid");
    // The direct child (sh) starts a background grandchild that records its PID, then both sleep.
    let mut spec = sh("sh -c 'echo $$ > grandchild.pid; exec sleep 100' & echo started; sleep 100");
    spec.cwd = Some(dir.path().to_path_buf());
    spec.timeout_seconds = 0.5;

    let start = Instant::now();
    let outcome = run(&spec, &[]).await.unwrap();
    let elapsed = start.elapsed();

    assert!(outcome.timed_out);
    assert!(!outcome.success);
    assert_eq!(outcome.exit_code, None);
    assert_eq!(outcome.output_tail, "started");
    assert!(
        outcome.summary().starts_with("timed out after "),
        "{}",
        outcome.summary()
    );
    assert!(elapsed >= Duration::from_millis(500), "{elapsed:?}");
    assert!(elapsed < Duration::from_millis(500 + 3000), "{elapsed:?}");
    assert_gone(read_pid(&pid_file).await).await;
}

#[tokio::test]
async fn timeout_escalates_to_sigkill_for_processes_ignoring_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("grandchild.pid");
    // Ignored signals stay ignored across exec, so the grandchild `sleep` ignores SIGTERM.
    let mut spec = sh("trap '' TERM; sh -c 'echo $$ > grandchild.pid; exec sleep 100' & sleep 100");
    spec.cwd = Some(dir.path().to_path_buf());
    spec.timeout_seconds = 0.3;

    let start = Instant::now();
    let outcome = run(&spec, &[]).await.unwrap();
    let elapsed = start.elapsed();

    assert!(outcome.timed_out);
    assert_eq!(outcome.exit_code, None);
    assert_eq!(outcome.signal, Some(9), "{outcome:?}");
    assert!(elapsed < Duration::from_millis(300 + 2000 + 2000), "{elapsed:?}");
    assert_gone(read_pid(&pid_file).await).await;
}

#[tokio::test]
async fn dropping_the_future_kills_the_process_group() {
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("grandchild.pid");
    let mut spec = sh("sh -c 'echo $$ > grandchild.pid; exec sleep 100' & sleep 100");
    spec.cwd = Some(dir.path().to_path_buf());
    spec.timeout_seconds = 60.0;

    let pid_wait = read_pid(&pid_file);
    let cancelled = tokio::select! {
        r = run(&spec, &[]) => panic!("run finished unexpectedly: {r:?}"),
        pid = pid_wait => pid,
    };
    // The `run` future has been dropped by now.
    assert_gone(cancelled).await;
}

#[tokio::test]
async fn grandchild_holding_stdout_does_not_block() {
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("bg.pid");
    let mut spec = sh("sleep 100 & echo $! > bg.pid; echo hi");
    spec.cwd = Some(dir.path().to_path_buf());
    spec.timeout_seconds = 2.0;

    let start = Instant::now();
    let outcome = run(&spec, &[]).await.unwrap();
    let elapsed = start.elapsed();

    let bg = read_pid(&pid_file).await;
    let _ = kill(bg, nix::sys::signal::Signal::SIGKILL); // clean up the background process
    assert!(outcome.success, "{}", outcome.summary());
    assert!(!outcome.timed_out);
    assert_eq!(outcome.output_tail, "hi");
    assert!(elapsed < Duration::from_millis(1500), "{elapsed:?}");
}

#[test]
fn validate_errors() {
    let path = "services.web.actions.deploy";
    let ok = CommandSpec::new(["./deploy.sh"]);
    assert_eq!(ok.validate(path), Ok(()));

    let empty = CommandSpec::new(Vec::<String>::new());
    let err = empty.validate(path).unwrap_err();
    assert!(
        err.starts_with("services.web.actions.deploy: argv must name a program"),
        "{err}"
    );

    let blank = CommandSpec::new([""]);
    let err = blank.validate(path).unwrap_err();
    assert!(
        err.starts_with("services.web.actions.deploy: argv must name a program"),
        "{err}"
    );

    for bad in [0.0, -1.0, f64::NAN, f64::INFINITY] {
        let mut spec = ok.clone();
        spec.timeout_seconds = bad;
        let err = spec.validate(path).unwrap_err();
        assert!(
            err.starts_with("services.web.actions.deploy: timeout_seconds"),
            "{bad}: {err}"
        );
    }

    let mut bad_env = ok.clone();
    bad_env.env.insert("A=B".into(), "x".into());
    assert!(bad_env.validate(path).unwrap_err().starts_with(path));

    let mut nul = ok.clone();
    nul.argv.push("a\0b".into());
    assert!(nul.validate(path).unwrap_err().starts_with(path));
}

#[test]
fn deserializes_from_agents_toml() {
    #[derive(serde::Deserialize)]
    struct Actions {
        deploy: CommandSpec,
        health: CommandSpec,
    }
    let actions: Actions = toml::from_str(
        r#"
        [deploy]
        argv = ["./deploy.sh", "--env", "prod"]
        cwd = "/srv/web"
        env = { RUST_LOG = "info" }
        timeout_seconds = 120

        [health]
        argv = ["curl", "-fsS", "http://localhost/health"]
        "#,
    )
    .unwrap();
    assert_eq!(actions.deploy.argv, ["./deploy.sh", "--env", "prod"]);
    assert_eq!(actions.deploy.cwd.as_deref(), Some(Path::new("/srv/web")));
    assert_eq!(actions.deploy.env.get("RUST_LOG").map(String::as_str), Some("info"));
    assert_eq!(actions.deploy.timeout_seconds, 120.0);
    assert_eq!(actions.health.timeout_seconds, hooks::DEFAULT_TIMEOUT_SECONDS);
    assert!(actions.health.cwd.is_none() && actions.health.env.is_empty());

    let unknown = toml::from_str::<CommandSpec>("argv = [\"x\"]\ntimeout = 3\n");
    assert!(unknown.is_err());
}
