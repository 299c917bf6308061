//! Progress of a phase on stderr: an `indicatif` bar on a terminal, plain lines otherwise
//! (one at the start, one per tenth done, one at the end).

use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::stats::Tally;

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Display {
    /// Bars (stderr is a terminal).
    Bars,
    /// Plain lines (stderr is a file or pipe).
    Lines,
    /// Nothing.
    Quiet,
}

impl Display {
    /// Bars when stderr is a terminal, else plain lines.
    pub fn detect() -> Self {
        if std::io::stderr().is_terminal() {
            Display::Bars
        } else {
            Display::Lines
        }
    }
}

/// The progress of one phase.
#[derive(Debug)]
pub struct Progress {
    name: &'static str,
    total: u64,
    done: AtomicU64,
    started: Instant,
    bar: Option<ProgressBar>,
    display: Display,
}

impl Progress {
    /// Starts showing a phase of `total` steps.
    pub fn start(display: Display, name: &'static str, total: u64) -> Self {
        let bar = (display == Display::Bars).then(|| {
            let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
            if let Ok(style) = ProgressStyle::with_template(
                "{prefix:>12} [{elapsed_precise}] {wide_bar} {pos}/{len} {per_sec} {msg}",
            ) {
                bar.set_style(style);
            }
            bar.set_prefix(name);
            bar
        });
        if display == Display::Lines {
            eprintln!("loadtest: {name}: 0/{total}");
        }
        Progress {
            name,
            total,
            done: AtomicU64::new(0),
            started: Instant::now(),
            bar,
            display,
        }
    }

    /// One more step done.
    pub fn step(&self) {
        let done = self.done.fetch_add(1, Ordering::Relaxed) + 1;
        if let Some(bar) = &self.bar {
            bar.inc(1);
        } else if self.display == Display::Lines && crosses_tenth(done, self.total) {
            eprintln!(
                "loadtest: {}: {done}/{} ({:.1} s)",
                self.name,
                self.total,
                self.started.elapsed().as_secs_f64()
            );
        }
    }

    /// A note beside the bar (ignored for plain lines).
    pub fn note(&self, message: String) {
        if let Some(bar) = &self.bar {
            bar.set_message(message);
        }
    }

    /// Counts one failure under `code` in `tally` and notes the failures so far.
    pub fn failed(&self, tally: &mut Tally, code: impl Into<String>) {
        tally.failure(code, 1);
        self.note(format!("{} failed", tally.failed()));
    }

    /// Ends the phase with "<succeeded> <done>, <failed> failed".
    pub fn finish_tally(&self, tally: &Tally, done: &str) {
        self.finish(&format!(
            "{} {done}, {} failed",
            tally.succeeded(),
            tally.failed()
        ));
    }

    /// Ends the phase with a one-line summary.
    pub fn finish(&self, summary: &str) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
        if self.display != Display::Quiet {
            eprintln!(
                "loadtest: {}: {summary} ({:.1} s)",
                self.name,
                self.started.elapsed().as_secs_f64()
            );
        }
    }
}

/// Whether step `done` of `total` is the first at or past a multiple of a tenth.
fn crosses_tenth(done: u64, total: u64) -> bool {
    let total = total.max(1);
    done * 10 / total != (done - 1) * 10 / total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_lines_come_once_per_tenth() {
        let lines: Vec<u64> = (1..=1000).filter(|d| crosses_tenth(*d, 1000)).collect();
        assert_eq!(
            lines,
            vec![100, 200, 300, 400, 500, 600, 700, 800, 900, 1000]
        );
        let small: Vec<u64> = (1..=3).filter(|d| crosses_tenth(*d, 3)).collect();
        assert_eq!(small, vec![1, 2, 3]);
    }
}
