//! The `wrk` load generator (C, one thread), when installed (`apt-get install wrk`): it
//! costs the shared CPU far less per request than the Rust generator of [`super::load`], so
//! it shows more of what the server can do. Each run also reports this process's CPU per
//! request: with wrk as the client, that is the server alone, and it is steadier than the
//! rate on a shared machine.

use super::load::CONNECTIONS;
use super::{cpu_seconds, report};

/// Runs per figure, as the other benches.
const RUNS: usize = 3;

/// One `wrk` run: requests/s, latency p50 and p99 in ms, and the server's CPU per request
/// in µs (this process's CPU time over the run: with wrk as the client, that is the server
/// alone, and it is steadier than the rate on a shared machine).
pub struct WrkRun {
    pub rate: f64,
    pub p50: f64,
    pub p99: f64,
    pub cpu_us: f64,
}

/// Runs `wrk` (one thread, `CONNECTIONS` connections) against `url` if it is installed
/// (`apt-get install wrk`): a C load generator costs the shared CPU far less per request
/// than the Rust one above, so it shows more of what the server can do.
pub fn wrk(url: &str, body: Option<&str>, secs: f64) -> Option<WrkRun> {
    let lua = body.map(|body| {
        format!(
            "wrk.method = \"POST\"\nwrk.body = '{body}'\nwrk.headers[\"Content-Type\"] = \"application/json\"\n"
        )
    });
    wrk_script(url, lua, secs)
}

/// A `wrk` POST of `{"value": 42}` with a fresh 36-byte `Idempotency-Key` per request
/// (the run's start second, then a counter: unique across runs a second apart or more).
pub fn wrk_keyed_script() -> String {
    "wrk.method = \"POST\"\nwrk.body = '{\"value\": 42}'\nwrk.headers[\"Content-Type\"] = \"application/json\"\n\
     local n = 0\nlocal prefix = string.format(\"%010d\", os.time())\n\
     request = function()\n  n = n + 1\n  wrk.headers[\"Idempotency-Key\"] = string.format(\"%s-%025d\", prefix, n)\n  return wrk.format()\nend\n"
        .to_string()
}

/// Runs `wrk` with an optional Lua script.
pub fn wrk_script(url: &str, lua: Option<String>, secs: f64) -> Option<WrkRun> {
    let mut cmd = std::process::Command::new("wrk");
    cmd.args([
        "-t1",
        &format!("-c{CONNECTIONS}"),
        &format!("-d{}s", secs.max(1.0) as u64),
        "--latency",
    ]);
    let script = lua.map(|lua| {
        let path = std::env::temp_dir().join(format!("kappalog-wrk-{}.lua", std::process::id()));
        std::fs::write(&path, lua).unwrap();
        path
    });
    if let Some(path) = &script {
        cmd.arg("-s").arg(path);
    }
    let cpu = cpu_seconds();
    let out = cmd.arg(url).output().ok()?;
    let cpu = cpu_seconds() - cpu;
    if let Some(path) = script {
        let _ = std::fs::remove_file(path);
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let ms = |v: &str| -> Option<f64> {
        let v = v.trim();
        if let Some(x) = v.strip_suffix("ms") {
            x.parse().ok()
        } else if let Some(x) = v.strip_suffix("us") {
            x.parse::<f64>().ok().map(|x| x / 1000.0)
        } else {
            v.strip_suffix('s')?.parse::<f64>().ok().map(|x| x * 1000.0)
        }
    };
    let field = |prefix: &str| {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(prefix).map(str::to_owned))
    };
    let rate = field("Requests/sec:")?.trim().parse().ok()?;
    let requests: f64 = text
        .lines()
        .find_map(|l| l.trim().split_once(" requests in "))?
        .0
        .parse()
        .ok()?;
    Some(WrkRun {
        rate,
        p50: ms(&field("50%")?)?,
        p99: ms(&field("99%")?)?,
        cpu_us: cpu * 1e6 / requests.max(1.0),
    })
}

/// Three `wrk` runs, reported like the others; says so if wrk is missing.
pub fn report_wrk(name: &str, url: &str, body: Option<&str>, secs: f64) {
    let runs: Vec<WrkRun> = (0..RUNS).filter_map(|_| wrk(url, body, secs)).collect();
    report_wrk_runs(name, runs);
}

pub fn report_wrk_runs(name: &str, runs: Vec<WrkRun>) {
    if runs.len() < RUNS {
        println!("{name} with wrk: skipped (install wrk: apt-get install wrk)");
        return;
    }
    let figures: [super::Figure<WrkRun>; 4] = [
        ("requests/s", "req/s", |r| r.rate),
        ("latency p50", "ms", |r| r.p50),
        ("latency p99", "ms", |r| r.p99),
        ("server CPU per request", "µs", |r| r.cpu_us),
    ];
    for (figure, unit, of) in figures {
        report(
            &format!("{name} with wrk, {figure}"),
            unit,
            runs.iter().map(of).collect(),
        );
    }
}
