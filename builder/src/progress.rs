//! Progress reporting: bars on a terminal, plain log lines otherwise.

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;

/// Creates progress bars for the stages of a build.
#[derive(Clone)]
pub struct Progress {
    bars: Option<MultiProgress>,
    quiet: bool,
}

/// One stage's progress: a bar, or a log line at start and end.
pub struct Stage {
    bar: Option<ProgressBar>,
    name: String,
}

impl Progress {
    /// Bars when stderr is a terminal and `quiet` is off.
    pub fn new(quiet: bool) -> Self {
        let interactive = !quiet && std::io::stderr().is_terminal();
        Progress {
            bars: interactive
                .then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr())),
            quiet,
        }
    }

    /// Whether only warnings and errors should be printed.
    pub fn is_quiet(&self) -> bool {
        self.quiet
    }

    /// Starts a stage counting `total` units (`bytes` picks the display).
    pub fn stage(&self, name: &str, total: u64, bytes: bool) -> Stage {
        let bar = self.bars.as_ref().map(|bars| {
            // Elapsed time, and an estimate of what is left from the rate so far.
            let template = if bytes {
                "{prefix:>10} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {elapsed} (~{eta} left) {msg}"
            } else {
                "{prefix:>10} [{bar:30}] {pos}/{len} {elapsed} (~{eta} left) {msg}"
            };
            let bar = bars.add(ProgressBar::new(total));
            bar.set_style(
                ProgressStyle::with_template(template)
                    .expect("valid template")
                    .progress_chars("=> "),
            );
            bar.set_prefix(name.to_string());
            bar
        });
        if bar.is_none() && total > 0 {
            tracing::info!("{name}: {total}{}", if bytes { " bytes" } else { " items" });
        }
        Stage {
            bar,
            name: name.to_string(),
        }
    }
}

impl Stage {
    /// Advances by `n` units.
    pub fn inc(&self, n: u64) {
        if let Some(bar) = &self.bar {
            bar.inc(n);
        }
    }

    /// Shows what is being worked on.
    pub fn message(&self, message: &str) {
        if let Some(bar) = &self.bar {
            bar.set_message(message.to_string());
        }
    }

    /// Ends the stage with a summary.
    pub fn finish(self, summary: &str) {
        match self.bar {
            Some(bar) => bar.finish_with_message(summary.to_string()),
            None => tracing::info!("{}: {summary}", self.name),
        }
    }
}
