//! Runs one fleet of row 1 (in-memory journal) or row 2 (`--durable`), for profiling:
//! `cargo build --release -p bench --example fleet && perf record target/release/examples/fleet 2000`.

/// With `--features mimalloc`, the allocator docs/PERFORMANCE.md recommends for the binary.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let mut n = 2000;
    let mut durable = false;
    for a in std::env::args().skip(1) {
        match a.as_str() {
            "--durable" => durable = true,
            other => n = other.parse().expect("a number of deployments"),
        }
    }
    let dir = tempfile::tempdir().expect("a temporary directory");
    let keep = std::env::var_os("FLEET_KEEP").map(std::path::PathBuf::from);
    let store: Box<dyn journal::Store> = if durable {
        Box::new(
            journal::SqliteStore::open_exclusive(&keep.clone().unwrap_or_else(|| dir.path().join("fleet.sqlite")))
                .expect("a journal"),
        )
    } else {
        Box::new(journal::MemoryStore::default())
    };
    let run = bench::fleet::run(n, store).expect("the fleet runs");
    println!(
        "{n} deployments, {} events in {:.3} s ({:.2} µs/event); {:?}; VmHWM {} kB",
        run.events,
        run.wall.as_secs_f64(),
        run.wall.as_secs_f64() * 1e6 / run.events as f64,
        run.by_status,
        bench::vm_kb("VmHWM").unwrap_or(0)
    );
}
