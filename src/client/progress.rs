//! Transfer progress on stderr: an indicatif bar (bytes, rate, ETA) on a terminal, plain `NN%`
//! lines otherwise, so that logs and tests see every percent step up to 100.

use std::io::{IsTerminal, Write};

use indicatif::{ProgressBar, ProgressStyle};

/// Reports the progress of one transfer of `total` bytes.
pub enum Progress {
    /// A progress bar, on a terminal.
    Bar(ProgressBar),
    /// `NN%` lines; the last percentage printed.
    Lines {
        /// Bytes expected.
        total: u64,
        /// Bytes so far.
        done: u64,
        /// The last percentage printed, if any.
        printed: Option<u64>,
    },
}

impl Progress {
    /// Starts reporting a transfer of `total` bytes called `label`.
    pub fn start(label: &str, total: u64) -> Progress {
        if std::io::stderr().is_terminal() {
            let bar = ProgressBar::new(total);
            let style = ProgressStyle::with_template(
                "{msg} [{bar:30}] {percent:>3}% {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}",
            )
            .map(|style| style.progress_chars("=> "))
            .unwrap_or_else(|_| ProgressStyle::default_bar());
            bar.set_style(style);
            bar.set_message(label.to_string());
            Progress::Bar(bar)
        } else {
            let mut progress = Progress::Lines { total, done: 0, printed: None };
            progress.advance(0);
            progress
        }
    }

    /// Records `bytes` more bytes.
    pub fn advance(&mut self, bytes: u64) {
        match self {
            Progress::Bar(bar) => bar.inc(bytes),
            Progress::Lines { total, done, printed } => {
                *done += bytes;
                let percent = ((*done).min(*total) * 100).checked_div(*total).unwrap_or(0);
                if *printed != Some(percent) {
                    *printed = Some(percent);
                    let _ = writeln!(std::io::stderr(), "{percent}%");
                }
            }
        }
    }

    /// Marks the transfer as complete (prints 100% if not yet printed).
    pub fn finish(self) {
        match self {
            Progress::Bar(bar) => bar.finish(),
            Progress::Lines { printed, .. } => {
                if printed != Some(100) {
                    let _ = writeln!(std::io::stderr(), "100%");
                }
            }
        }
    }

    /// Removes the bar after a failed transfer (plain lines stay as printed).
    pub fn abandon(self) {
        if let Progress::Bar(bar) = self {
            bar.abandon();
        }
    }
}
