//! Runs the suite without the `stagecoach` binary's CLI:
//! `cargo run --release -p bench --example bench -- [--quick] [--json] [--daemon PATH] [--example-service PATH]`.
//! Rows 5 to 8 need `--daemon` (a built `stagecoach`) and, for row 8, `--example-service`.

/// With `--features mimalloc`, the allocator docs/PERFORMANCE.md recommends for the binary.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let mut opts = bench::BenchOptions::default();
    let mut json = false;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--quick" => opts.quick = true,
            "--json" => json = true,
            "--daemon" => opts.daemon_binary = args.next().map(Into::into),
            "--example-service" => opts.example_binary = args.next().map(Into::into),
            other => {
                eprintln!("unknown argument {other}");
                return std::process::ExitCode::from(2);
            }
        }
    }
    match bench::run(&opts) {
        Ok(report) => {
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&report).expect("a report serialises")
                );
            } else {
                print!("{}", report.render_text());
            }
            if report.gross_regressions().is_empty() {
                std::process::ExitCode::SUCCESS
            } else {
                std::process::ExitCode::from(1)
            }
        }
        Err(e) => {
            eprintln!("{e}");
            std::process::ExitCode::from(2)
        }
    }
}
