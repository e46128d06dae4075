//! The `kappalog` binary: parse the command line, start logging, run, map errors to an exit
//! code with a one-line reason on stderr.
//!
//! The application layer ([`app`]: one function per subcommand) is the binary's, not the
//! library's: it is where `anyhow` gathers the library's typed errors into one line for
//! the operator, and no test or bench calls it other than through the binary.

use std::process::ExitCode;

use clap::Parser;
use kappalog::cli::Cli;

mod app;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing();
    give_back_freed_memory();
    match app::run(cli) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {}", one_line(&error));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes on one line, outermost first, each said once: many errors
/// already show their source in their own message (`open ...: Is a directory`), and the
/// plain chain would repeat it.
fn one_line(error: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

/// Logs go to stderr so stdout stays clean for JSON and CSV. `RUST_LOG` overrides the
/// default level (info).
fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .init();
}

/// How often the process hands freed heap memory back to the system.
const TRIM_EVERY: std::time::Duration = std::time::Duration::from_secs(2);

/// A thread that asks glibc's allocator, every [`TRIM_EVERY`], to return the free pages of
/// all its arenas to the system. glibc does that by itself only for the top of the main
/// heap: what a burst of peer sessions freed on the runtime's worker threads (a trusted peer
/// stating a million feeds is ~250 MB of maps) stayed resident for good. A trim with nothing
/// to return walks the arenas' free lists and costs microseconds
/// (docs/BENCHMARKS.md, "Hostile peers").
fn give_back_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let spawned = std::thread::Builder::new()
            .name("malloc-trim".into())
            .spawn(|| loop {
                std::thread::sleep(TRIM_EVERY);
                // SAFETY: malloc_trim takes a pad size and touches only the allocator's own
                // state, under its locks; glibc documents it as thread-safe.
                unsafe {
                    libc::malloc_trim(0);
                }
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "could not start the memory trim thread");
        }
    }
}
