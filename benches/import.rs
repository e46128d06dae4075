//! Import benchmark: the real `kappalog import` binary, timed, with its peak resident memory
//! (`VmHWM`). Prints figures, asserts nothing. `cargo bench --bench import`.
//!
//! - a CSV of `KAPPALOG_BENCH_IMPORT_ENTRIES` valid entries over 100 feeds (default
//!   1,000,000, about 300 MiB; 3,600,000 make about 1 GiB), imported into a fresh data
//!   directory: entries/s and peak RSS;
//! - `KAPPALOG_BENCH_GARBAGE_MIB` MiB of garbage rows (default 1024): rows/s and peak RSS;
//! - for scale: the peak RSS of importing an empty CSV (the process itself) and of
//!   `kappalog summary` on the imported store (what holding its index costs).
//!
//! Three runs each, medians.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::{build_big_store, env_usize, median, report};

const RUNS: usize = 3;

/// The kB value of a field of `/proc/PID/status`, if the process is still there.
fn status_kb(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

/// Runs the binary in `dir` with `args`; returns its wall time (s) and peak RSS (MiB).
///
/// The peak is the child's `VmHWM` (its own address space's high-water mark), polled every
/// 2 ms until it exits. `wait4`'s `ru_maxrss` would be simpler but Linux carries the parent's
/// size at fork into it, which here is larger than the import's.
fn measure(dir: &Path, args: &[&str]) -> (f64, f64) {
    let start = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_kappalog"))
        .current_dir(dir)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn kappalog");
    let mut peak_kb = 0;
    let status = loop {
        if let Some(kb) = status_kb(child.id(), "VmHWM:") {
            peak_kb = peak_kb.max(kb);
        }
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    let seconds = start.elapsed().as_secs_f64();
    assert!(status.success(), "kappalog {args:?}: {status}");
    (seconds, peak_kb as f64 / 1024.0)
}

fn write_garbage(path: &Path, mib: usize) -> u64 {
    use std::io::Write;
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut rows = 0u64;
    let mut written = 0usize;
    while written < mib << 20 {
        let row = format!("not,an,entry,{rows:>20}\n");
        out.write_all(row.as_bytes()).unwrap();
        written += row.len();
        rows += 1;
    }
    out.flush().unwrap();
    rows
}

fn main() {
    let entries = env_usize("KAPPALOG_BENCH_IMPORT_ENTRIES", 1_000_000);
    let garbage_mib = env_usize("KAPPALOG_BENCH_GARBAGE_MIB", 1024);
    let work = tempfile::tempdir().unwrap();
    let w = work.path();

    // The input: a store built directly, exported by the binary.
    let source = w.join("source");
    std::fs::create_dir_all(source.join("data")).unwrap();
    build_big_store(&source.join("data"), entries);
    let csv = w.join("entries.csv");
    measure(&source, &["export", "--out", csv.to_str().unwrap()]);
    let csv_mib = std::fs::metadata(&csv).unwrap().len() as f64 / f64::from(1 << 20);
    std::fs::remove_dir_all(&source).unwrap();
    let empty = w.join("empty.csv");
    std::fs::write(
        &empty,
        "author,seq,timestamp,prev,value,data,hash,signature\n",
    )
    .unwrap();
    let garbage = w.join("garbage.csv");
    let garbage_rows = write_garbage(&garbage, garbage_mib);

    let fresh = |name: &str| {
        let dir = w.join(name);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    };
    let (mut rate, mut peak) = (Vec::new(), Vec::new());
    let (mut base, mut held) = (Vec::new(), Vec::new());
    let (mut garbage_rate, mut garbage_peak) = (Vec::new(), Vec::new());
    for _ in 0..RUNS {
        let dir = fresh("empty");
        base.push(measure(&dir, &["import", empty.to_str().unwrap()]).1);

        let dir = fresh("valid");
        let (secs, rss) = measure(&dir, &["import", csv.to_str().unwrap()]);
        rate.push(entries as f64 / secs);
        peak.push(rss);
        held.push(measure(&dir, &["summary"]).1);

        let dir = fresh("garbage");
        let (secs, rss) = measure(&dir, &["import", garbage.to_str().unwrap()]);
        garbage_rate.push(garbage_rows as f64 / secs);
        garbage_peak.push(rss);
    }
    println!(
        "import of {entries} valid entries ({csv_mib:.0} MiB of CSV), {garbage_mib} MiB of \
         garbage ({garbage_rows} rows); peak RSS = the child's VmHWM"
    );
    report("import, valid entries", "entries/s", rate);
    report("  peak RSS of that import", "MiB", peak.clone());
    report(
        "  peak RSS of an empty import (the process)",
        "MiB",
        base.clone(),
    );
    report(
        "  peak RSS of `summary` on the imported store (holding its index)",
        "MiB",
        held.clone(),
    );
    println!(
        "  import overhead over holding the index: {:.1} MiB",
        median(peak) - median(held)
    );
    report("import, garbage rows", "rows/s", garbage_rate);
    report("  peak RSS of that import", "MiB", garbage_peak.clone());
    println!(
        "  growth over an empty import: {:.1} MiB",
        median(garbage_peak) - median(base)
    );
}
