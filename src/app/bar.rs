//! The progress bar of the long one-shot commands (import, verify, export to a file): the
//! CLI's [`Progress`] sink. It draws on stderr only when stderr is a terminal; otherwise it
//! holds no bar at all, so a redirected or piped stderr carries exactly what it would
//! without it, and a report costs one branch. (On a terminal that cannot move its cursor,
//! `TERM` unset or `dumb`, indicatif draws nothing either.)
//!
//! A report with a bar is an atomic add and a clock read: indicatif redraws at most 20
//! times a second (its stderr target's rate limit), and the library reports in steps of
//! many units (see [`kappalog::progress`]), so the bar's cost does not show.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressFinish, ProgressStyle};

use kappalog::progress::{Progress, Stage};

/// How often the bar redraws by itself, so the elapsed time moves while a stage reports
/// nothing (a sort's merge before the first batch is stored).
const STEADY_TICK_MS: u64 = 200;

/// What a bar of known length shows after the stage's name: the bar, done and total, the
/// rate and the time left. `{per_sec:0}`: the rate with no decimals.
const ENTRIES_BAR: &str =
    "{msg:9} {elapsed_precise} [{wide_bar}] {human_pos}/{human_len} entries, {per_sec:0}, {eta} left";
const BYTES_BAR: &str =
    "{msg:9} {elapsed_precise} [{wide_bar}] {bytes}/{total_bytes}, {bytes_per_sec}, {eta} left";
/// With no total (an import from stdin) there is nothing to fill or run out: a spinner
/// with the count and the rate.
const ENTRIES_SPINNER: &str =
    "{spinner} {msg:9} {elapsed_precise} {human_pos} entries, {per_sec:0}";
const BYTES_SPINNER: &str = "{spinner} {msg:9} {elapsed_precise} {bytes}, {bytes_per_sec}";

/// The progress of one command on stderr, when stderr is a terminal.
pub(crate) struct StderrBar {
    bar: Option<ProgressBar>,
    /// The input's size, when the command knows it (the sizes of the files it opened): the
    /// total of [`Stage::Read`], which the library cannot know.
    input_bytes: Option<u64>,
}

impl StderrBar {
    /// A bar if stderr is a terminal and `wanted` (a command may know the terminal is busy
    /// with its output); otherwise a sink that shows nothing.
    pub(crate) fn new(wanted: bool, input_bytes: Option<u64>) -> StderrBar {
        let bar = (wanted && std::io::stderr().is_terminal()).then(|| {
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr())
                // A command that fails drops its bar before the error is printed: leave no
                // half-full bar above the message.
                .with_finish(ProgressFinish::AndClear);
            bar.enable_steady_tick(Duration::from_millis(STEADY_TICK_MS));
            bar
        });
        StderrBar { bar, input_bytes }
    }

    /// Takes the bar off the terminal, before the command prints its report.
    pub(crate) fn clear(self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

impl Progress for StderrBar {
    fn begin(&self, stage: Stage, total: Option<u64>) {
        let Some(bar) = &self.bar else {
            return;
        };
        let (name, in_bytes, total) = match stage {
            Stage::Read => ("reading", true, total.or(self.input_bytes)),
            Stage::Store => ("storing", false, total),
            Stage::Verify => ("verifying", false, total),
            Stage::Export => ("exporting", false, total),
            Stage::Index => ("indexing", false, total),
        };
        let template = match (total.is_some(), in_bytes) {
            (true, true) => BYTES_BAR,
            (true, false) => ENTRIES_BAR,
            (false, true) => BYTES_SPINNER,
            (false, false) => ENTRIES_SPINNER,
        };
        // The templates are constants, each parsed by a test below; the default style is
        // a sound fallback all the same.
        let style = ProgressStyle::with_template(template)
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
        // The style first: each of the calls after it may draw, and the first draw of a
        // new bar is immediate.
        bar.set_style(style);
        bar.set_message(name);
        bar.reset();
        match total {
            Some(total) => bar.set_length(total),
            None => bar.unset_length(),
        }
    }

    fn advance(&self, units: u64) {
        if let Some(bar) = &self.bar {
            bar.inc(units);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_parses() {
        for template in [ENTRIES_BAR, BYTES_BAR, ENTRIES_SPINNER, BYTES_SPINNER] {
            assert!(ProgressStyle::with_template(template).is_ok(), "{template}");
        }
    }
}
