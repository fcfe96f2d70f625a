//! Per-epoch training metrics, kept as JSON lines (`metrics.jsonl`) in the run directory.
//!
//! Each finished epoch appends one line and flushes it, so a killed run keeps every epoch it finished; a last
//! line cut short by the kill is ignored when reading back.

use std::fs::OpenOptions;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::fsutil::{self, FsError};

/// The file name of the metrics in a run directory.
pub const METRICS_FILE: &str = "metrics.jsonl";

/// Why metrics could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// Appending to the file failed.
    #[error("cannot append to {}", path.display())]
    Append {
        /// The metrics file.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: io::Error,
    },
    /// Reading or replacing the file failed.
    #[error(transparent)]
    File(#[from] FsError),
    /// A line is not a metrics record.
    #[error("{}:{line}: not an epoch record: {message}", path.display())]
    BadLine {
        /// The metrics file.
        path: PathBuf,
        /// Line number, from 1.
        line: usize,
        /// What is wrong.
        message: String,
    },
}

/// How a model does on the test split (e.g. before its first epoch).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    /// Mean cross-entropy.
    pub loss: f64,
    /// Top-1 accuracy in `[0, 1]`.
    pub acc: f64,
    /// Mean distillation term of the stage's method, when it has a teacher.
    pub distill: Option<f64>,
}

impl Evaluation {
    /// One line, e.g. `test loss 0.4102  test acc 85.31%  (kd 0.0312)`.
    pub fn summary(&self) -> String {
        let distill = self.distill.map(|d| format!("  (kd {d:.4})")).unwrap_or_default();
        format!("test loss {:.4}  test acc {:.2}%{distill}", self.loss, 100.0 * self.acc)
    }
}

/// What one epoch achieved. Losses and accuracies are means over the epoch's images; accuracies in `[0, 1]`.
///
/// JSON has no NaN or infinity: such a value (a diverged epoch) is written as `null` and read back as NaN.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochMetrics {
    /// The epoch, counted from 1.
    pub epoch: usize,
    /// Mean training loss (task + lambda * distillation).
    #[serde(deserialize_with = "nan_if_null")]
    pub train_loss: f64,
    /// Mean training cross-entropy.
    #[serde(deserialize_with = "nan_if_null")]
    pub train_task_loss: f64,
    /// Mean distillation term, for methods that have one.
    pub train_distill_loss: Option<f64>,
    /// Mean loss of the mixed paths of block-wise replacement (bwrf, bwrf-qfd), before its weight.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub train_path_loss: Option<f64>,
    /// Training accuracy (on augmented images, in training mode).
    #[serde(deserialize_with = "nan_if_null")]
    pub train_acc: f64,
    /// Mean test cross-entropy.
    #[serde(deserialize_with = "nan_if_null")]
    pub test_loss: f64,
    /// Test accuracy.
    #[serde(deserialize_with = "nan_if_null")]
    pub test_acc: f64,
    /// Mean distillation term on the test split, for methods that have one.
    #[serde(default)]
    pub test_distill_loss: Option<f64>,
    /// Learning rate at the epoch's last step.
    #[serde(deserialize_with = "nan_if_null")]
    pub lr: f64,
    /// Training throughput.
    #[serde(deserialize_with = "nan_if_null")]
    pub images_per_sec: f64,
    /// Wall time of the epoch, training and test.
    #[serde(deserialize_with = "nan_if_null")]
    pub seconds: f64,
}

impl EpochMetrics {
    /// The one line printed per epoch, e.g. (the part in parentheses for distillation and block
    /// replacement methods only) `epoch  3/10  loss 0.4123 (ce 0.3900, kd 0.0446)  acc 85.12%  test loss
    /// 0.3811  test acc 86.40%  lr 4.500e-2  1234 img/s  48.6 s`.
    pub fn summary_line(&self, epochs: usize) -> String {
        let width = epochs.to_string().len();
        let terms: Vec<String> = [("kd", self.train_distill_loss), ("paths", self.train_path_loss)]
            .into_iter()
            .filter_map(|(name, v)| v.map(|v| format!(", {name} {v:.4}")))
            .collect();
        let distill = match terms.is_empty() {
            true => String::new(),
            false => format!(" (ce {:.4}{})", self.train_task_loss, terms.concat()),
        };
        let test_distill = self.test_distill_loss.map(|d| format!(" (kd {d:.4})")).unwrap_or_default();
        format!(
            "epoch {:>width$}/{epochs}  loss {:.4}{distill}  acc {:.2}%  test loss {:.4}{test_distill}  \
             test acc {:.2}%  lr {:.3e}  {:.0} img/s  {:.1} s",
            self.epoch,
            self.train_loss,
            100.0 * self.train_acc,
            self.test_loss,
            100.0 * self.test_acc,
            self.lr,
            self.images_per_sec,
            self.seconds,
        )
    }
}

fn nan_if_null<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

/// Appends one epoch as a JSON line to `path` (created if missing) and flushes it to disk.
pub fn append_metrics(path: &Path, metrics: &EpochMetrics) -> Result<(), MetricsError> {
    let mut line = serde_json::to_string(metrics).expect("metrics are always representable in JSON");
    line.push('\n');
    let err = |source| MetricsError::Append { path: path.to_path_buf(), source };
    let mut file = OpenOptions::new().create(true).append(true).open(path).map_err(err)?;
    file.write_all(line.as_bytes()).and_then(|()| file.sync_data()).map_err(err)
}

/// Replaces `path` atomically with exactly these epochs; on `--resume` this drops epochs logged after the
/// checkpoint being resumed from.
pub fn write_metrics(path: &Path, metrics: &[EpochMetrics]) -> Result<(), MetricsError> {
    let mut text = String::new();
    for m in metrics {
        text += &serde_json::to_string(m).expect("metrics are always representable in JSON");
        text.push('\n');
    }
    Ok(fsutil::write_atomic(path, text.as_bytes())?)
}

/// Reads every epoch of a metrics file. A last line without its newline that does not parse (a write cut
/// short) is skipped; any other bad line is an error naming the line.
pub fn read_metrics(path: &Path) -> Result<Vec<EpochMetrics>, MetricsError> {
    let bytes = fsutil::read(path)?;
    let text = String::from_utf8_lossy(&bytes);
    let complete = text.ends_with('\n');
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::with_capacity(lines.len());
    for (i, line) in lines.iter().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str(line) {
            Ok(m) => out.push(m),
            Err(_) if i + 1 == lines.len() && !complete => break,
            Err(e) => {
                return Err(MetricsError::BadLine {
                    path: path.to_path_buf(),
                    line: i + 1,
                    message: e.to_string(),
                })
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(epoch: usize) -> EpochMetrics {
        EpochMetrics {
            epoch,
            train_loss: 2.0 / epoch as f64,
            train_task_loss: 1.5 / epoch as f64,
            train_distill_loss: epoch.is_multiple_of(2).then_some(0.1),
            train_path_loss: epoch.is_multiple_of(3).then_some(0.7),
            train_acc: 0.5 + 0.01 * epoch as f64,
            test_loss: 1.9 / epoch as f64,
            test_acc: 0.55 + 0.01 * epoch as f64,
            test_distill_loss: None,
            lr: 0.05,
            images_per_sec: 1234.5,
            seconds: 12.34,
        }
    }

    #[test]
    fn appended_epochs_read_back_equal() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(METRICS_FILE);
        let all: Vec<_> = (1..=3).map(sample).collect();
        for m in &all {
            append_metrics(&path, m).unwrap();
        }
        assert_eq!(read_metrics(&path).unwrap(), all);
        write_metrics(&path, &all[..1]).unwrap();
        assert_eq!(read_metrics(&path).unwrap(), all[..1]);
    }

    #[test]
    fn a_line_cut_short_at_the_end_is_skipped_but_bad_lines_elsewhere_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(METRICS_FILE);
        append_metrics(&path, &sample(1)).unwrap();
        let mut text = std::fs::read_to_string(&path).unwrap();
        text += "{\"epoch\": 2, \"train_lo";
        std::fs::write(&path, &text).unwrap();
        assert_eq!(read_metrics(&path).unwrap(), [sample(1)]);
        text += "\n";
        std::fs::write(&path, &text).unwrap();
        let e = read_metrics(&path).unwrap_err().to_string();
        assert!(e.contains("metrics.jsonl:2"), "{e}");
    }

    #[test]
    fn summary_line_shows_every_figure() {
        let line = sample(2).summary_line(10);
        assert!(line.starts_with("epoch  2/10  loss 1.0000 (ce 0.7500, kd 0.1000)  acc 52.00%"), "{line}");
        assert!(line.contains("test acc 57.00%") && line.contains("1234 img/s") && line.contains("12.3 s"));
        assert!(!sample(1).summary_line(1).contains("kd"));
    }

    #[test]
    fn a_diverged_epoch_reads_back_as_nan() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(METRICS_FILE);
        let diverged = EpochMetrics { train_loss: f64::NAN, test_loss: f64::INFINITY, ..sample(1) };
        append_metrics(&path, &diverged).unwrap();
        let back = read_metrics(&path).unwrap();
        assert!(back[0].train_loss.is_nan() && back[0].test_loss.is_nan());
        assert_eq!(back[0].test_acc, diverged.test_acc);
    }

    #[test]
    fn missing_file_names_the_path() {
        let e = read_metrics(Path::new("/nonexistent/metrics.jsonl")).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/metrics.jsonl"), "{e}");
    }
}
