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
