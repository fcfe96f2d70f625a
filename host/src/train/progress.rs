//! What the user sees while training: one progress bar per epoch (loss, accuracy, images/s, ETA) on a
//! terminal, and one summary line per epoch in any case.
//!
//! The bar goes to stderr and is hidden when stderr is not a terminal (CI logs, `2> file`), where redrawn
//! bars would only fill the log; the summary line is printed either way.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::metrics::EpochMetrics;

/// The progress of one epoch.
#[derive(Debug)]
pub struct EpochProgress {
    bar: ProgressBar,
    epochs: usize,
    start: Instant,
    images: u64,
}

impl EpochProgress {
    /// Starts the bar of epoch `epoch` (from 1) of `epochs`, which takes `steps` optimiser steps.
    pub fn new(epoch: usize, epochs: usize, steps: u64) -> EpochProgress {
        EpochProgress::with_bar(epoch, epochs, steps, std::io::stderr().is_terminal())
    }

    fn with_bar(epoch: usize, epochs: usize, steps: u64, visible: bool) -> EpochProgress {
        let target = if visible { ProgressDrawTarget::stderr() } else { ProgressDrawTarget::hidden() };
        let bar = ProgressBar::with_draw_target(Some(steps), target);
        let style =
            ProgressStyle::with_template("{prefix} [{bar:28.cyan/blue}] {pos:>5}/{len:5} {msg}  ETA {eta}")
                .expect("the template is valid")
                .progress_chars("=> ");
        bar.set_style(style);
        let width = epochs.to_string().len();
        bar.set_prefix(format!("epoch {epoch:>width$}/{epochs}"));
        EpochProgress { bar, epochs, start: Instant::now(), images: 0 }
    }

    /// Reports `step` steps done and `images` images seen in this epoch, with the running mean loss and
    /// accuracy (in `[0, 1]`) over those images.
    pub fn update(&mut self, step: u64, loss: f64, acc: f64, images: u64) {
        self.images = images;
        self.bar.set_position(step);
        self.bar.set_message(format!(
            "loss {loss:.4}  acc {:.2}%  {:.0} img/s",
            100.0 * acc,
            self.images_per_sec()
        ));
    }

    /// Shows that the test split is being evaluated after the last step.
    pub fn evaluating(&self) {
        self.bar.set_message(format!("{:.0} img/s  evaluating...", self.images_per_sec()));
    }

    /// Training throughput so far: images reported by [`update`](Self::update) per second since the start.
    pub fn images_per_sec(&self) -> f64 {
        self.images as f64 / self.elapsed().as_secs_f64().max(1e-9)
    }

    /// Time since the bar was started.
    pub fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }

    /// Removes the bar, prints the epoch's summary line ([`EpochMetrics::summary_line`]) to stderr and
    /// returns it.
    pub fn finish(self, metrics: &EpochMetrics) -> String {
        self.bar.finish_and_clear();
        let line = metrics.summary_line(self.epochs);
        eprintln!("{line}");
        line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hidden_bar_still_yields_the_summary_line() {
        let mut p = EpochProgress::with_bar(2, 12, 10, false);
        for step in 1..=10 {
            p.update(step, 1.0 / step as f64, 0.08 * step as f64, 32 * step);
        }
        p.evaluating();
        assert!(p.images_per_sec() > 0.0);
        let metrics = EpochMetrics {
            epoch: 2,
            train_loss: 0.1,
            train_task_loss: 0.1,
            train_distill_loss: None,
            train_path_loss: None,
            train_acc: 0.8,
            test_loss: 0.2,
            test_acc: 0.75,
            test_distill_loss: None,
            lr: 0.01,
            images_per_sec: p.images_per_sec(),
            seconds: p.elapsed().as_secs_f64(),
        };
        let line = p.finish(&metrics);
        assert!(line.starts_with("epoch  2/12  loss 0.1000  acc 80.00%"), "{line}");
    }

    #[test]
    fn a_visible_bar_renders_its_message() {
        let mut p = EpochProgress::with_bar(1, 1, 4, true);
        p.update(2, 0.5, 0.25, 64);
        assert_eq!(p.bar.position(), 2);
        assert!(p.bar.message().starts_with("loss 0.5000  acc 25.00%"), "{}", p.bar.message());
        p.bar.finish_and_clear();
    }
}
