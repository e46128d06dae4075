//! The `kappalog` binary: parse the command line, start logging, run, map errors to an exit
//! code with a one-line reason on stderr.

use std::process::ExitCode;

use clap::Parser;
use kappalog::app;
use kappalog::cli::Cli;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing();
    match app::run(cli) {
        Ok(code) => code,
        Err(error) => {
            // One line: the error and its causes, outermost first.
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
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
