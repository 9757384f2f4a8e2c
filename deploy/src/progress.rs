//! Progress of a training run: a bar redrawn in place on a terminal, a line every few seconds
//! in a log file or pipe, or nothing.

use std::io::Write as _;
use std::time::{Duration, Instant};

use rosetta_coordinator::job::Progress;

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressStyle {
    /// A bar redrawn in place (stderr is a terminal).
    Bar,
    /// A line every few seconds (stderr is a file or pipe).
    Lines,
    /// Nothing.
    Quiet,
}

impl ProgressStyle {
    /// `Bar` on a terminal, `Lines` otherwise; `Quiet` when asked.
    pub fn detect(quiet: bool) -> Self {
        if quiet {
            Self::Quiet
        } else if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
            Self::Bar
        } else {
            Self::Lines
        }
    }
}

/// Draws progress as steps complete.
#[derive(Debug)]
pub struct ProgressDisplay {
    style: ProgressStyle,
    started: Instant,
    first_step: u64,
    last_line: Option<(u64, Instant)>,
}

impl ProgressDisplay {
    /// A display for a launch that starts at `first_step`.
    pub fn new(style: ProgressStyle, first_step: u64) -> Self {
        Self { style, started: Instant::now(), first_step, last_line: None }
    }

    fn render(&self, progress: &Progress) -> String {
        let done = progress.steps_done;
        let total = progress.total_steps.max(1);
        let width = 30;
        let filled = (done as usize * width / total as usize).min(width);
        let rate = done.saturating_sub(self.first_step) as f64 / self.started.elapsed().as_secs_f64().max(1e-9);
        let eta = if rate > 0.0 { format!("{:.0}s", (total - done.min(total)) as f64 / rate) } else { "?".into() };
        format!(
            "[{}{}] step {done}/{total}  loss {:.4}  {:.1} ex/s  eta {eta}",
            "#".repeat(filled),
            "-".repeat(width - filled),
            progress.loss,
            progress.examples_per_second
        )
    }

    /// Shows `progress` (only once training has advanced past the first step of this launch).
    pub fn update(&mut self, progress: &Progress) {
        if progress.steps_done <= self.first_step {
            return;
        }
        match self.style {
            ProgressStyle::Quiet => {}
            ProgressStyle::Bar => {
                eprint!("\r{}", self.render(progress));
                let _ = std::io::stderr().flush();
            }
            ProgressStyle::Lines => {
                let due = self
                    .last_line
                    .is_none_or(|(step, at)| step != progress.steps_done && at.elapsed() >= Duration::from_secs(5));
                if due {
                    eprintln!("{}", self.render(progress));
                    self.last_line = Some((progress.steps_done, Instant::now()));
                }
            }
        }
    }

    /// Ends the bar's line.
    pub fn finish(&self) {
        if self.style == ProgressStyle::Bar {
            eprintln!();
        }
    }
}
