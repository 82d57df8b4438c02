//! `cargo xtask`: the project's own tasks, written in Rust so they run the
//! same everywhere cargo does (the xtask pattern of rust-analyzer; the alias
//! lives in `.cargo/config.toml`).
//!
//! `cargo xtask test` sets up what the tests need on this machine and runs
//! every check CI runs: it looks for each system package of
//! [`SYSTEM_PACKAGES`], installs the missing ones with apt-get when it may
//! (as root, or through sudo without a password) and otherwise stops before
//! building anything, with the exact command to run; it adds the rustfmt and
//! clippy components when the toolchain lacks them, and installs the PyPI
//! tools of [`PYTHON_TOOLS`] into virtual environments under `target/tools/`;
//! then it runs
//! `cargo fmt --check`, `cargo clippy` and `cargo test --workspace
//! --no-fail-fast`, streaming their output, and ends with one line
//! `N passed, N failed`.
//!
//! Standard library only, so it builds in seconds on a fresh machine. The
//! decisions (what is missing, what to run about it, how the test results
//! add up) are plain functions, tested below; `main` only carries them out.

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};

/// A system package some test starts for real.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct SystemPackage {
    /// The Debian package.
    debian: &'static str,
    /// A program the package installs, proving it is there: a name looked up
    /// on `PATH` and in the sbin directories, or an absolute path.
    program: &'static str,
    /// Which tests need it, for the messages.
    needed_by: &'static str,
}

/// Every system package the tests use. A test that needs another one adds it
/// here, and `cargo xtask test` (so also `.ci/run`) installs it.
const SYSTEM_PACKAGES: &[SystemPackage] = &[
    SystemPackage {
        debian: "prometheus",
        program: "prometheus",
        needed_by: "the Prometheus metrics provider test (crates/probes/tests/it/prometheus.rs) and \
                    `promtool check metrics` of /metrics (crates/stagecoach/tests/metrics.rs)",
    },
    SystemPackage {
        debian: "mandoc",
        program: "mandoc",
        needed_by: "the manual page lint (crates/stagecoach/tests/cli.rs)",
    },
    SystemPackage {
        debian: "zsh",
        program: "zsh",
        needed_by: "the zsh completion script check (crates/stagecoach/tests/cli.rs)",
    },
    SystemPackage {
        debian: "fish",
        program: "fish",
        needed_by: "the fish completion script check (crates/stagecoach/tests/cli.rs)",
    },
    SystemPackage {
        debian: "systemd",
        program: "systemd-analyze",
        needed_by: "`systemd-analyze verify` of examples/stagecoach.service (crates/stagecoach/tests/cli.rs)",
    },
];

/// A tool from PyPI that a test runs, installed into a virtual environment of
/// its own under `target/tools/` (pinned: a new release may judge differently).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct PythonTool {
    /// The PyPI package, installed as `package==version`.
    package: &'static str,
    version: &'static str,
    /// The program it installs in the environment's `bin/`.
    program: &'static str,
    /// The environment variable naming that program for the tests.
    env: &'static str,
    /// Which tests need it, for the messages.
    needed_by: &'static str,
}

/// Every PyPI tool the tests use.
const PYTHON_TOOLS: &[PythonTool] = &[PythonTool {
    package: "schemathesis",
    version: "4.32.5",
    program: "schemathesis",
    env: "STAGECOACH_SCHEMATHESIS",
    needed_by: "the OpenAPI conformance test (crates/stagecoach/tests/openapi.rs)",
}];

/// Toolchain components the checks use: (rustup component, cargo subcommand).
const COMPONENTS: &[(&str, &str)] = &[("rustfmt", "fmt"), ("clippy", "clippy")];

/// Directories searched for a program besides `PATH` (a non-root `PATH` often lacks them).
const EXTRA_DIRS: &[&str] = &["/usr/local/sbin", "/usr/sbin", "/sbin"];

/// The environment the tests run with: the slow reliability tests too, as CI runs them.
const TEST_ENV: &[(&str, &str)] = &[("STAGECOACH_SLOW_TESTS", "1")];

const USAGE: &str = "\
Usage: cargo xtask <TASK>

Tasks:
  test    set up what the tests need on this machine, then run fmt, clippy and every test
  setup   only set up what the tests need (step 1 and 2 of `test`), then stop

Run `cargo xtask test --help` for details.
";

const TEST_HELP: &str = "\
Usage: cargo xtask test [CARGO TEST ARGS]...

Sets up what the tests need on this machine and runs every check CI runs:

  1. Looks for each system package the tests use (Debian's prometheus, ...;
     the list is SYSTEM_PACKAGES in crates/xtask/src/main.rs). Missing ones
     are installed with `apt-get update` and `apt-get install -y
     --no-install-recommends` when this user may (root, or sudo without a
     password); otherwise it stops before building anything and prints the
     exact command to run.
  2. Installs the PyPI tools the tests run (schemathesis 4.32.5; the list is
     PYTHON_TOOLS) into virtual environments under target/tools/, once,
     and adds the rustfmt and clippy components with rustup when missing.
  3. Runs `cargo fmt --all -- --check`,
     `cargo clippy --workspace --all-targets -- -D warnings` and
     `cargo test --workspace --no-fail-fast [CARGO TEST ARGS]` with
     STAGECOACH_SLOW_TESTS=1, showing their output as it comes.

It ends with one line `N passed, N failed` (the sum of every `test result:`
line; `, N skipped` follows when tests were ignored).

Arguments after `test` go to `cargo test`, e.g.
  cargo xtask test -- --nocapture
  cargo xtask test --release

Exit status: 0 when every check passed; 1 when a check or a test failed;
2 when the machine could not be set up (nothing was built).

`cargo test --workspace` still works on its own where the packages are installed.
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("test") => {
            let rest = &args[1..];
            if wants_help(rest) {
                print!("{TEST_HELP}");
                return ExitCode::SUCCESS;
            }
            ExitCode::from(test(rest))
        }
        Some("setup") => {
            if wants_help(&args[1..]) {
                print!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            match set_up() {
                Ok(()) => {
                    println!("the tests have every system package and toolchain component they need");
                    ExitCode::SUCCESS
                }
                Err(message) => {
                    eprintln!("cargo xtask setup: {message}");
                    ExitCode::from(2)
                }
            }
        }
        None | Some("help" | "--help" | "-h") => {
            print!("{USAGE}");
            ExitCode::SUCCESS
        }
        Some(other) => {
            eprint!("cargo xtask: unknown task {other:?}\n\n{USAGE}");
            ExitCode::from(2)
        }
    }
}

/// Whether `--help` or `-h` comes before any `--` (after it, it belongs to the test binaries).
fn wants_help(args: &[String]) -> bool {
    args.iter()
        .take_while(|a| *a != "--")
        .any(|a| a == "--help" || a == "-h")
}

/// `cargo xtask test`; returns the exit status.
fn test(extra: &[String]) -> u8 {
    let root = workspace_root();
    if let Err(message) = set_up() {
        eprintln!("cargo xtask test: {message}");
        return 2;
    }

    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut failed_steps = vec![];

    let fmt = ["fmt", "--all", "--", "--check"];
    announce(&fmt);
    if !run_inherited(Command::new(&cargo).args(fmt).current_dir(&root)) {
        failed_steps.push("cargo fmt --check");
    }

    let clippy = ["clippy", "--workspace", "--all-targets", "--", "-D", "warnings"];
    announce(&clippy);
    if !run_inherited(Command::new(&cargo).args(clippy).current_dir(&root)) {
        failed_steps.push("cargo clippy");
    }

    let mut test_args: Vec<String> = ["test", "--workspace", "--no-fail-fast"].map(String::from).to_vec();
    test_args.extend(extra.iter().cloned());
    announce(&test_args);
    let mut command = Command::new(&cargo);
    command.args(&test_args).current_dir(&root);
    for (key, value) in TEST_ENV {
        command.env(key, value);
    }
    for tool in PYTHON_TOOLS {
        command.env(tool.env, tool.program_path(&root));
    }
    let (ok, totals) = match run_counting(&mut command) {
        Ok(outcome) => outcome,
        Err(e) => {
            eprintln!("cargo xtask test: cannot run cargo test: {e}");
            (false, Totals::default())
        }
    };
    if !ok {
        failed_steps.push("cargo test");
    }

    println!();
    if !failed_steps.is_empty() {
        println!("failed: {}", failed_steps.join(", "));
    }
    println!("{}", totals.summary());
    if failed_steps.is_empty() && totals.failed == 0 {
        0
    } else {
        1
    }
}

/// Makes sure the system packages and toolchain components are there;
/// `Err` says what the user must do.
fn set_up() -> Result<(), String> {
    let missing = missing_packages(SYSTEM_PACKAGES, |program| find_program(program).is_some());
    if !missing.is_empty() {
        let privilege = privilege();
        let has_apt = find_program("apt-get").is_some();
        match plan(&missing, privilege, has_apt) {
            Plan::Install(commands) => {
                println!(
                    "== installing the system packages the tests need: {}",
                    names(&missing).join(" ")
                );
                for argv in commands {
                    announce_raw(&argv);
                    let ok = run_inherited(
                        Command::new(&argv[0])
                            .args(&argv[1..])
                            .env("DEBIAN_FRONTEND", "noninteractive")
                            .stdin(Stdio::null()),
                    );
                    if !ok {
                        return Err(format!("`{}` failed (see above)", argv.join(" ")));
                    }
                }
                if let Some(p) = missing.iter().find(|p| find_program(p.program).is_none()) {
                    return Err(format!(
                        "the package {} is installed but its program {} is still not found",
                        p.debian, p.program
                    ));
                }
            }
            Plan::Stop(message) => return Err(message),
        }
    }

    let root = workspace_root();
    for tool in PYTHON_TOOLS {
        tool.install(&root)?;
    }

    let missing = missing_components(cargo_has);
    if !missing.is_empty() {
        if find_program("rustup").is_none() {
            return Err(format!(
                "the toolchain lacks {}, and rustup is not there to add them; install them with your toolchain",
                missing.join(" and ")
            ));
        }
        let mut argv = vec!["rustup", "component", "add"];
        argv.extend(&missing);
        announce_raw(&argv);
        if !run_inherited(Command::new(argv[0]).args(&argv[1..]).stdin(Stdio::null())) {
            return Err(format!("`{}` failed (see above)", argv.join(" ")));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Decisions

/// What this user may do about missing packages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Privilege {
    Root,
    /// sudo works without a password (`sudo -n true`).
    Sudo,
    None,
}

/// What to do about missing packages.
#[derive(Debug, PartialEq, Eq)]
enum Plan {
    /// Run these commands in order.
    Install(Vec<Vec<String>>),
    /// Stop before building; the message says what to run.
    Stop(String),
}

/// The packages of `packages` whose program is not found.
fn missing_packages(packages: &[SystemPackage], found: impl Fn(&str) -> bool) -> Vec<&SystemPackage> {
    packages.iter().filter(|p| !found(p.program)).collect()
}

/// The toolchain components whose cargo subcommand does not answer.
fn missing_components(works: impl Fn(&str) -> bool) -> Vec<&'static str> {
    COMPONENTS
        .iter()
        .filter(|(_, subcommand)| !works(subcommand))
        .map(|(component, _)| *component)
        .collect()
}

fn names<'a>(packages: &[&'a SystemPackage]) -> Vec<&'a str> {
    packages.iter().map(|p| p.debian).collect()
}

/// Installs with apt-get when it can, else stops with the exact command.
fn plan(missing: &[&SystemPackage], privilege: Privilege, has_apt: bool) -> Plan {
    let names = names(missing);
    let needs: Vec<String> = missing
        .iter()
        .map(|p| format!("  {} (program `{}`): needed by {}", p.debian, p.program, p.needed_by))
        .collect();
    if !has_apt {
        return Plan::Stop(format!(
            "the tests need system packages that are not installed, and there is no apt-get here:\n{}\n\
             Install them with this system's package manager, then run `cargo xtask test` again.",
            needs.join("\n")
        ));
    }
    let prefix: &[&str] = match privilege {
        Privilege::Root => &[],
        Privilege::Sudo => &["sudo", "-n"],
        Privilege::None => {
            return Plan::Stop(format!(
                "the tests need system packages that are not installed:\n{}\n\
                 This user cannot install them (not root, and sudo asks for a password). Run:\n\n    \
                 sudo apt-get update && sudo apt-get install -y --no-install-recommends {}\n\n\
                 then `cargo xtask test` again.",
                needs.join("\n"),
                names.join(" ")
            ));
        }
    };
    let command = |words: &[&str]| -> Vec<String> { prefix.iter().chain(words).map(|w| w.to_string()).collect() };
    let mut install = vec!["apt-get", "install", "-y", "--no-install-recommends"];
    install.extend(&names);
    Plan::Install(vec![command(&["apt-get", "update"]), command(&install)])
}

impl PythonTool {
    /// The virtual environment, one per pinned version: `target/tools/PACKAGE-VERSION`.
    fn venv(&self, root: &Path) -> PathBuf {
        root.join("target")
            .join("tools")
            .join(format!("{}-{}", self.package, self.version))
    }

    fn program_path(&self, root: &Path) -> PathBuf {
        self.venv(root).join("bin").join(self.program)
    }

    /// The pip requirement.
    fn requirement(&self) -> String {
        format!("{}=={}", self.package, self.version)
    }

    /// Creates the environment and installs the pinned package unless its
    /// program is already there; `Err` says what went wrong and what to do.
    fn install(&self, root: &Path) -> Result<(), String> {
        if self.program_path(root).is_file() {
            return Ok(());
        }
        let venv = self.venv(root);
        let python = find_program("python3").ok_or_else(|| {
            format!(
                "{} is needed by {}, and it installs from PyPI with Python 3, which is not here: \
                 install python3 (Debian: `apt-get install python3 python3-venv`), then run `cargo xtask test` again",
                self.package, self.needed_by
            )
        })?;
        println!("== installing {} from PyPI into {}", self.requirement(), venv.display());
        let venv_text = venv.to_string_lossy().into_owned();
        let create = [
            python.to_string_lossy().into_owned(),
            "-m".into(),
            "venv".into(),
            venv_text,
        ];
        announce_raw(&create);
        if !run_inherited(Command::new(&create[0]).args(&create[1..]).stdin(Stdio::null())) {
            let _ = std::fs::remove_dir_all(&venv);
            return Err(format!(
                "`{}` failed (see above); on Debian the venv module is the package python3-venv",
                create.join(" ")
            ));
        }
        let pip = venv.join("bin").join("pip").to_string_lossy().into_owned();
        let install = [
            pip,
            "install".into(),
            "--quiet".into(),
            "--disable-pip-version-check".into(),
            self.requirement(),
        ];
        announce_raw(&install);
        if !run_inherited(Command::new(&install[0]).args(&install[1..]).stdin(Stdio::null())) {
            // Leave nothing half installed: the next run starts again.
            let _ = std::fs::remove_dir_all(&venv);
            return Err(format!(
                "`{}` failed (see above): {} needs {} from PyPI",
                install.join(" "),
                self.needed_by,
                self.requirement()
            ));
        }
        if !self.program_path(root).is_file() {
            return Err(format!(
                "{} is installed but {} is not there",
                self.requirement(),
                self.program_path(root).display()
            ));
        }
        Ok(())
    }
}

/// Passed, failed and ignored tests, summed over `test result:` lines.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Totals {
    passed: u64,
    failed: u64,
    ignored: u64,
}

impl Totals {
    /// Adds the counts of one line of output, if it is a `test result:` line.
    fn add_line(&mut self, line: &str) {
        if let Some(t) = parse_result_line(line) {
            self.passed += t.passed;
            self.failed += t.failed;
            self.ignored += t.ignored;
        }
    }

    /// The closing line: `N passed, N failed`, then `, N skipped` when tests were ignored.
    fn summary(&self) -> String {
        let mut line = format!("{} passed, {} failed", self.passed, self.failed);
        if self.ignored > 0 {
            line.push_str(&format!(", {} skipped", self.ignored));
        }
        line
    }
}

/// The counts of libtest's closing line of one test binary:
/// `test result: ok. 12 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; finished in 0.01s`.
fn parse_result_line(line: &str) -> Option<Totals> {
    let line = strip_ansi(line);
    let rest = line.trim().strip_prefix("test result:")?;
    // "ok. 12 passed; ..." or "FAILED. 3 passed; ..."
    let (_, counts) = rest.split_once(". ")?;
    let mut totals = Totals::default();
    let mut seen = false;
    for part in counts.split(';') {
        let Some((number, word)) = part.trim().split_once(' ') else {
            continue;
        };
        let Ok(n) = number.parse::<u64>() else { continue };
        match word.trim() {
            "passed" => totals.passed = n,
            "failed" => totals.failed = n,
            "ignored" => totals.ignored = n,
            _ => continue,
        }
        seen = true;
    }
    seen.then_some(totals)
}

/// `line` without ANSI escape sequences (`ESC [ ... letter`).
fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            if chars.next() == Some('[') {
                for c in chars.by_ref() {
                    if c.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Feeds output to [`Totals`] a line at a time, however it arrives.
#[derive(Debug, Default)]
struct LineCounter {
    partial: Vec<u8>,
    totals: Totals,
}

impl LineCounter {
    fn feed(&mut self, bytes: &[u8]) {
        for &b in bytes {
            if b == b'\n' {
                self.totals.add_line(&String::from_utf8_lossy(&self.partial));
                self.partial.clear();
            } else {
                self.partial.push(b);
            }
        }
    }

    fn finish(mut self) -> Totals {
        if !self.partial.is_empty() {
            self.totals.add_line(&String::from_utf8_lossy(&self.partial));
        }
        self.totals
    }
}

// ---------------------------------------------------------------------------
// The machine

fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.ancestors().nth(2).unwrap_or(manifest).to_path_buf()
}

/// Where `program` is: an absolute path as given, else the first match on `PATH` or in the sbin directories.
fn find_program(program: &str) -> Option<PathBuf> {
    if program.contains('/') {
        let path = PathBuf::from(program);
        return path.is_file().then_some(path);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(EXTRA_DIRS.iter().map(PathBuf::from))
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}

fn privilege() -> Privilege {
    let uid = Command::new("id").arg("-u").stderr(Stdio::null()).output();
    if uid.is_ok_and(|o| o.status.success() && String::from_utf8_lossy(&o.stdout).trim() == "0") {
        return Privilege::Root;
    }
    let sudo = find_program("sudo").is_some()
        && Command::new("sudo")
            .args(["-n", "true"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
    if sudo {
        Privilege::Sudo
    } else {
        Privilege::None
    }
}

/// Whether `cargo SUBCOMMAND --version` works.
fn cargo_has(subcommand: &str) -> bool {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    Command::new(cargo)
        .args([subcommand, "--version"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn announce(cargo_args: &[impl AsRef<str>]) {
    let words: Vec<&str> = cargo_args.iter().map(AsRef::as_ref).collect();
    println!("== cargo {}", words.join(" "));
}

fn announce_raw(argv: &[impl AsRef<str>]) {
    let words: Vec<&str> = argv.iter().map(AsRef::as_ref).collect();
    println!("== {}", words.join(" "));
}

/// Runs a command with this process's stdout and stderr; whether it succeeded.
fn run_inherited(command: &mut Command) -> bool {
    let _ = io::stdout().flush();
    match command.status() {
        Ok(status) => status.success(),
        Err(e) => {
            eprintln!("cargo xtask: cannot run {:?}: {e}", command.get_program());
            false
        }
    }
}

/// Runs a command, passing its stdout through as it comes while counting
/// `test result:` lines; its stderr is this process's.
fn run_counting(command: &mut Command) -> io::Result<(bool, Totals)> {
    let _ = io::stdout().flush();
    let mut child = command.stdout(Stdio::piped()).spawn()?;
    let mut from = child.stdout.take().expect("stdout is piped");
    let mut counter = LineCounter::default();
    let mut out = io::stdout().lock();
    let mut buffer = [0u8; 8192];
    loop {
        let n = match from.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        counter.feed(&buffer[..n]);
        // A closed stdout (e.g. `| head`) must not stop the tests.
        let _ = out.write_all(&buffer[..n]).and_then(|_| out.flush());
    }
    let status = child.wait()?;
    Ok((status.success(), counter.finish()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROMETHEUS: SystemPackage = SystemPackage {
        debian: "prometheus",
        program: "prometheus",
        needed_by: "a test",
    };
    const CHROMIUM: SystemPackage = SystemPackage {
        debian: "chromium",
        program: "chromium",
        needed_by: "another test",
    };

    fn strings(argv: &[&str]) -> Vec<String> {
        argv.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_python_tool_lives_in_an_environment_of_its_pinned_version() {
        let tool = PYTHON_TOOLS[0];
        let root = Path::new("/w");
        assert_eq!(tool.requirement(), "schemathesis==4.32.5");
        // crates/stagecoach/tests/openapi.rs looks there when STAGECOACH_SCHEMATHESIS is not set.
        assert_eq!(
            tool.program_path(root),
            Path::new("/w/target/tools/schemathesis-4.32.5/bin/schemathesis")
        );
        let fallback = include_str!("../../stagecoach/tests/openapi.rs");
        assert!(fallback.contains("target/tools/schemathesis-4.32.5/bin/schemathesis"));
        assert!(fallback.contains(tool.env));
    }

    #[test]
    fn a_result_line_gives_its_counts() {
        let check = |line: &str, expected: Option<(u64, u64, u64)>| {
            let got = parse_result_line(line).map(|t| (t.passed, t.failed, t.ignored));
            assert_eq!(got, expected, "{line:?}");
        };
        check(
            "test result: ok. 12 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.01s",
            Some((12, 0, 0)),
        );
        check(
            "test result: FAILED. 3 passed; 2 failed; 1 ignored; 0 measured; 4 filtered out; finished in 1.50s",
            Some((3, 2, 1)),
        );
        check(
            "test result: \u{1b}[32mok\u{1b}[0m. 7 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.00s",
            Some((7, 0, 0)),
        );
        check(
            "test result: ok. 0 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.00s",
            Some((0, 0, 0)),
        );
        check("test a_result_line ... ok", None);
        check("running 12 tests", None);
        check("test result: garbage", None);
        check("", None);
    }

    #[test]
    fn totals_add_up_every_binary_and_close_with_one_line() {
        let output = "\
running 2 tests
test a ... ok
test b ... ok

test result: ok. 2 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.00s

running 3 tests
test c ... FAILED
test result: FAILED. 2 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.20s
   Doc-tests workflow
test result: ok. 0 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.00s";
        let mut counter = LineCounter::default();
        // Output arrives in pieces that split lines anywhere.
        for chunk in output.as_bytes().chunks(7) {
            counter.feed(chunk);
        }
        let totals = counter.finish();
        assert_eq!(
            totals,
            Totals {
                passed: 4,
                failed: 1,
                ignored: 0
            }
        );
        assert_eq!(totals.summary(), "4 passed, 1 failed");
        let with_ignored = Totals {
            passed: 4,
            failed: 0,
            ignored: 2,
        };
        assert_eq!(with_ignored.summary(), "4 passed, 0 failed, 2 skipped");
    }

    #[test]
    fn missing_means_its_program_is_not_found() {
        let packages = [PROMETHEUS, CHROMIUM];
        assert_eq!(missing_packages(&packages, |_| true), Vec::<&SystemPackage>::new());
        assert_eq!(missing_packages(&packages, |p| p == "prometheus"), vec![&CHROMIUM]);
        assert_eq!(missing_packages(&packages, |_| false), vec![&PROMETHEUS, &CHROMIUM]);
        assert_eq!(missing_components(|_| true), Vec::<&str>::new());
        assert_eq!(missing_components(|s| s == "fmt"), vec!["clippy"]);
        assert_eq!(missing_components(|_| false), vec!["rustfmt", "clippy"]);
    }

    #[test]
    fn root_installs_with_apt_get() {
        assert_eq!(
            plan(&[&PROMETHEUS, &CHROMIUM], Privilege::Root, true),
            Plan::Install(vec![
                strings(&["apt-get", "update"]),
                strings(&[
                    "apt-get",
                    "install",
                    "-y",
                    "--no-install-recommends",
                    "prometheus",
                    "chromium"
                ]),
            ])
        );
    }

    #[test]
    fn passwordless_sudo_installs_through_sudo() {
        assert_eq!(
            plan(&[&PROMETHEUS], Privilege::Sudo, true),
            Plan::Install(vec![
                strings(&["sudo", "-n", "apt-get", "update"]),
                strings(&[
                    "sudo",
                    "-n",
                    "apt-get",
                    "install",
                    "-y",
                    "--no-install-recommends",
                    "prometheus"
                ]),
            ])
        );
    }

    #[test]
    fn otherwise_it_stops_with_the_exact_command() {
        let Plan::Stop(message) = plan(&[&PROMETHEUS, &CHROMIUM], Privilege::None, true) else {
            panic!("a user without root or sudo cannot install");
        };
        assert!(
            message
                .contains("sudo apt-get update && sudo apt-get install -y --no-install-recommends prometheus chromium"),
            "{message}"
        );
        assert!(message.contains("needed by a test"), "{message}");
        let Plan::Stop(message) = plan(&[&PROMETHEUS], Privilege::Root, false) else {
            panic!("without apt-get nothing can be installed");
        };
        assert!(message.contains("prometheus (program `prometheus`)"), "{message}");
    }

    #[test]
    fn help_belongs_to_xtask_only_before_the_separator() {
        assert!(wants_help(&strings(&["--help"])));
        assert!(wants_help(&strings(&["--release", "-h"])));
        assert!(!wants_help(&strings(&["--", "--help"])));
        assert!(!wants_help(&[]));
    }

    #[test]
    fn the_workspace_root_holds_the_workspace_manifest() {
        let manifest = std::fs::read_to_string(workspace_root().join("Cargo.toml")).expect("the root Cargo.toml");
        assert!(manifest.contains("[workspace]"));
    }
}
