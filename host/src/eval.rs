//! Accuracy of a model on a data set as the integer runtime computes it: what `qfd-host eval` reports.
//!
//! Two engines compute the same bits ([`EvalEngine`]). The runtime splits the images into contiguous chunks, one
//! per thread, each thread with its own arena; it is deterministic, so the predictions and every count are
//! the same whatever the number of threads. The burn engine (`qfd-accel`) runs batches of images on a CPU
//! or GPU backend, with logits equal to the runtime's.
//!
//! ```no_run
//! use qfd_host::data::{Dataset, Split};
//! use qfd_host::eval::{check_compatible, dataset_kind, evaluate_model};
//! use qfd_host::model_file::ModelFile;
//!
//! let file = ModelFile::read("resnet8.qfdm".as_ref())?;
//! let model = file.model()?;
//! let data = Dataset::load(dataset_kind(&model, None)?, Split::Test, None)?;
//! check_compatible(&model, &data)?;
//! let report = evaluate_model(&model, &data, 4)?;
//! println!("{:.2}% of {} images", 100.0 * report.accuracy(), report.total);
//! # Ok::<(), anyhow::Error>(())
//! ```

use std::fmt::Write as _;
use std::time::Instant;

use serde::Serialize;

use qfd_accel::{AccelError, Backend};
use qfd_runtime::arena::predicted_class;
use qfd_runtime::{Model, RunError};

use crate::data::{Dataset, DatasetKind};
use crate::table::{Align, Table};

/// Widest confusion matrix [`EvalReport::to_text`] prints; larger ones are in the JSON form only.
pub const MAX_TEXT_CONFUSION_CLASSES: usize = 20;

/// Which code computes the integer model's outputs. Both give the same logits, bit for bit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EvalEngine {
    /// The `no_std` runtime, the code the boards run, one image at a time on each of `threads` threads.
    Runtime {
        /// Worker threads (at least 1).
        threads: usize,
    },
    /// The burn engine (`qfd-accel`): `batch` images at a time on `backend`.
    Burn {
        /// The burn backend.
        backend: Backend,
        /// Images per batch (at least 1).
        batch: usize,
    },
}

impl Default for EvalEngine {
    /// The runtime on every core.
    fn default() -> Self {
        EvalEngine::Runtime { threads: std::thread::available_parallelism().map_or(1, |n| n.get()) }
    }
}

impl EvalEngine {
    /// Threads of the runtime engine; 0 for the burn engine (its backend has its own).
    pub fn threads(&self) -> usize {
        match *self {
            EvalEngine::Runtime { threads } => threads,
            EvalEngine::Burn { .. } => 0,
        }
    }

    /// The engine in words, e.g. `the runtime on 2 threads` or `burn (flex), batches of 256`.
    pub fn describe(&self) -> String {
        match *self {
            EvalEngine::Runtime { threads } => {
                format!("the runtime on {threads} thread{}", if threads == 1 { "" } else { "s" })
            }
            EvalEngine::Burn { backend, batch } => format!("burn ({backend}), batches of {batch}"),
        }
    }
}

/// Why a model could not be evaluated on a data set.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum EvalError {
    /// No data set was asked for and the model's metadata names none that is known.
    #[error(
        "the model was not trained on a known data set (metadata says '{name}'); pass --dataset \
         (fashion-mnist, cifar10 or cifar100)"
    )]
    UnknownModelDataset {
        /// The metadata's data set name.
        name: String,
    },
    /// The images do not have the model's input shape.
    #[error(
        "the model reads {}x{}x{} inputs but {dataset} images are {}x{}x{}",
        model[0], model[1], model[2], data[0], data[1], data[2]
    )]
    ShapeMismatch {
        /// The data set.
        dataset: DatasetKind,
        /// Input shape `[H, W, C]` of the model.
        model: [usize; 3],
        /// Image shape `[H, W, C]` of the data set.
        data: [usize; 3],
    },
    /// The data set does not have one class per logit.
    #[error("the model has {model} classes but {dataset} has {data}")]
    ClassCountMismatch {
        /// The data set.
        dataset: DatasetKind,
        /// Logits of the model.
        model: usize,
        /// Classes of the data set.
        data: usize,
    },
    /// The data set's image buffer does not hold one image per label.
    #[error("the data set holds {bytes} bytes of images for {labels} labels of {image_len} bytes each")]
    InconsistentDataset {
        /// Bytes of images.
        bytes: usize,
        /// Number of labels.
        labels: usize,
        /// Bytes per image.
        image_len: usize,
    },
    /// A label is not a class of the model.
    #[error("label {label} of image {index} is not one of the model's {classes} classes")]
    LabelOutOfRange {
        /// The image.
        index: usize,
        /// Its label.
        label: u8,
        /// Logits of the model.
        classes: usize,
    },
    /// The burn engine cannot run the model or failed.
    #[error("the burn engine: {0}")]
    Accel(#[from] AccelError),
    /// The runtime refused an image.
    #[error("image {index}")]
    Run {
        /// The first image refused.
        index: usize,
        /// Why.
        #[source]
        source: RunError,
    },
}

/// The data set to evaluate on: `requested` if given, else the one the model's metadata names.
pub fn dataset_kind(model: &Model<'_>, requested: Option<DatasetKind>) -> Result<DatasetKind, EvalError> {
    if let Some(kind) = requested {
        return Ok(kind);
    }
    let name = model.desc().meta.dataset;
    name.parse().map_err(|_| EvalError::UnknownModelDataset { name: name.to_string() })
}

/// The model's input shape `[H, W, C]`.
pub fn input_shape(model: &Model<'_>) -> [usize; 3] {
    model.input_shape().map(usize::from)
}

/// Checks that the data set's images have the model's input shape.
pub fn check_input_shape(model: &Model<'_>, data: &Dataset) -> Result<(), EvalError> {
    let model_shape = input_shape(model);
    if data.shape != model_shape {
        return Err(EvalError::ShapeMismatch { dataset: data.kind, model: model_shape, data: data.shape });
    }
    Ok(())
}

/// Checks that the data set fits the model: the input shape, and one class per logit.
pub fn check_compatible(model: &Model<'_>, data: &Dataset) -> Result<(), EvalError> {
    check_input_shape(model, data)?;
    if data.num_classes() != model.num_classes() {
        return Err(EvalError::ClassCountMismatch {
            dataset: data.kind,
            model: model.num_classes(),
            data: data.num_classes(),
        });
    }
    Ok(())
}

/// The outcome of an evaluation. Field names are stable: scripts and tests read the JSON form.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EvalReport {
    /// The data set's name, e.g. `fashion-mnist`.
    pub dataset: String,
    /// `train` or `test`.
    pub split: String,
    /// Name of each class, indexed by label (the data set's names).
    pub class_names: Vec<String>,
    /// Images evaluated.
    pub total: u64,
    /// Images whose predicted class is their label.
    pub correct: u64,
    /// `confusion[true][predicted]`: images of each true class by predicted class.
    pub confusion: Vec<Vec<u64>>,
    /// The predicted class of each image, in data set order (to compare two models image by image).
    pub predictions: Vec<usize>,
    /// The logits of every image, `classes` per image in data set order (not in the JSON form).
    #[serde(skip)]
    pub logits: Vec<i32>,
    /// What computed the outputs, in words ([`EvalEngine::describe`]).
    pub engine: String,
    /// Worker threads of the runtime engine (at most one per image); 0 for the burn engine.
    pub threads: usize,
    /// Wall-clock seconds of the inferences.
    pub seconds: f64,
}

impl EvalReport {
    /// Top-1 accuracy in `[0, 1]`; 0 when no image was evaluated.
    pub fn accuracy(&self) -> f64 {
        ratio(self.correct, self.total)
    }

    /// Images of each class, indexed by label.
    pub fn class_totals(&self) -> Vec<u64> {
        self.confusion.iter().map(|row| row.iter().sum()).collect()
    }

    /// Accuracy of each class (recall), indexed by label; `None` for a class without images.
    pub fn per_class_accuracy(&self) -> Vec<Option<f64>> {
        self.confusion
            .iter()
            .enumerate()
            .map(|(class, row)| {
                let total: u64 = row.iter().sum();
                (total > 0).then(|| ratio(row[class], total))
            })
            .collect()
    }

    /// Inferences per second over all threads.
    pub fn images_per_sec(&self) -> f64 {
        self.total as f64 / self.seconds.max(1e-9)
    }

    /// The report and its derived figures as one pretty-printed JSON object, with `model` naming the model
    /// file: the summary first, then the per-class figures, the confusion matrix and the predictions.
    pub fn to_json(&self, model: &str) -> Result<String, serde_json::Error> {
        #[derive(Serialize)]
        struct Json<'r> {
            model: &'r str,
            dataset: &'r str,
            split: &'r str,
            total: u64,
            correct: u64,
            accuracy: f64,
            images_per_sec: f64,
            engine: &'r str,
            threads: usize,
            seconds: f64,
            class_names: &'r [String],
            class_totals: Vec<u64>,
            per_class_accuracy: Vec<Option<f64>>,
            confusion: &'r [Vec<u64>],
            predictions: &'r [usize],
        }
        serde_json::to_string_pretty(&Json {
            model,
            dataset: &self.dataset,
            split: &self.split,
            total: self.total,
            correct: self.correct,
            accuracy: self.accuracy(),
            images_per_sec: self.images_per_sec(),
            engine: &self.engine,
            threads: self.threads,
            seconds: self.seconds,
            class_names: &self.class_names,
            class_totals: self.class_totals(),
            per_class_accuracy: self.per_class_accuracy(),
            confusion: &self.confusion,
            predictions: &self.predictions,
        })
    }

    /// The report as text: a summary, a per-class table and, for up to [`MAX_TEXT_CONFUSION_CLASSES`]
    /// classes, the confusion matrix; `model` names the model file.
    pub fn to_text(&self, model: &str) -> String {
        let mut out = String::new();
        let lines = [
            ("model", model.to_string()),
            ("data", format!("{} {} split, {} images", self.dataset, self.split, self.total)),
            ("accuracy", format!("{} top-1 ({}/{})", percent(self.accuracy()), self.correct, self.total)),
            (
                "speed",
                format!("{:.0} images/s with {} ({:.2} s)", self.images_per_sec(), self.engine, self.seconds),
            ),
        ];
        for (key, value) in lines {
            // Writing to a String cannot fail.
            let _ = writeln!(out, "{key:<9} {value}");
        }

        out.push('\n');
        let mut classes = Table::new(&[
            ("#", Align::Right),
            ("class", Align::Left),
            ("images", Align::Right),
            ("accuracy", Align::Right),
        ]);
        for (class, (total, acc)) in self.class_totals().iter().zip(self.per_class_accuracy()).enumerate() {
            let acc = acc.map_or_else(|| "-".to_string(), percent);
            classes.row(vec![class.to_string(), self.class_name(class), total.to_string(), acc]);
        }
        out.push_str(&classes.render(""));

        out.push('\n');
        if self.confusion.len() > MAX_TEXT_CONFUSION_CLASSES {
            let _ =
                writeln!(out, "confusion matrix: {} classes, printed by --json only", self.confusion.len());
            return out;
        }
        out.push_str("confusion matrix (rows: true class, columns: predicted class)\n");
        let headers: Vec<String> = (0..self.confusion.len()).map(|c| c.to_string()).collect();
        let mut columns = vec![("true", Align::Left)];
        columns.extend(headers.iter().map(|h| (h.as_str(), Align::Right)));
        let mut matrix = Table::new(&columns);
        for (class, row) in self.confusion.iter().enumerate() {
            let mut cells = vec![format!("{class} {}", self.class_name(class))];
            cells.extend(row.iter().map(u64::to_string));
            matrix.row(cells);
        }
        out.push_str(&matrix.render(""));
        out
    }

    fn class_name(&self, class: usize) -> String {
        self.class_names.get(class).cloned().unwrap_or_default()
    }
}

fn ratio(n: u64, d: u64) -> f64 {
    if d == 0 {
        0.0
    } else {
        n as f64 / d as f64
    }
}

fn percent(x: f64) -> String {
    format!("{:.2}%", 100.0 * x)
}

/// Runs the model on every image of `data` with the runtime on `threads` threads (at least 1, at most one per
/// image) and counts the outcomes. Checks the shapes first ([`check_compatible`]).
pub fn evaluate_model(model: &Model<'_>, data: &Dataset, threads: usize) -> Result<EvalReport, EvalError> {
    evaluate(model, data, EvalEngine::Runtime { threads }, &|_| {})
}

/// Runs the model on every image of `data` with `engine` and counts the outcomes, calling `progress(n)`
/// (from any thread) each time `n` more images are done. Checks the shapes first ([`check_compatible`]).
pub fn evaluate(
    model: &Model<'_>,
    data: &Dataset,
    engine: EvalEngine,
    progress: &(dyn Fn(usize) + Sync),
) -> Result<EvalReport, EvalError> {
    check_compatible(model, data)?;
    let (total, image_len, classes) = (data.len(), data.image_len(), model.num_classes());
    if data.images.len() != total * image_len {
        return Err(EvalError::InconsistentDataset { bytes: data.images.len(), labels: total, image_len });
    }
    if let Some(index) = data.labels.iter().position(|&l| usize::from(l) >= classes) {
        return Err(EvalError::LabelOutOfRange { index, label: data.labels[index], classes });
    }

    let start = Instant::now();
    let (logits, threads) = match engine {
        EvalEngine::Runtime { threads } => logits_on_threads(model, data, threads, progress)?,
        EvalEngine::Burn { backend, batch } => {
            let accel = qfd_accel::Engine::new(model, backend)?;
            let mut logits = Vec::with_capacity(total * classes);
            for images in data.images.chunks(batch.max(1) * image_len) {
                logits.extend(accel.logits(images)?);
                progress(images.len() / image_len);
            }
            (logits, 0)
        }
    };
    let seconds = start.elapsed().as_secs_f64();
    let engine = match engine {
        EvalEngine::Runtime { .. } => EvalEngine::Runtime { threads },
        burn => burn,
    };
    let predictions: Vec<usize> = logits.chunks_exact(classes).map(predicted_class).collect();

    let mut confusion = vec![vec![0u64; classes]; classes];
    for (&label, &predicted) in data.labels.iter().zip(&predictions) {
        confusion[usize::from(label)][predicted] += 1;
    }
    let correct = (0..classes).map(|c| confusion[c][c]).sum();
    Ok(EvalReport {
        dataset: data.kind.name().to_string(),
        split: data.split.to_string(),
        class_names: data.class_names.clone(),
        total: total as u64,
        correct,
        confusion,
        predictions,
        logits,
        engine: engine.describe(),
        threads,
        seconds,
    })
}

/// The runtime's logits of every image, on `threads` threads; returns them and the threads used.
fn logits_on_threads(
    model: &Model<'_>,
    data: &Dataset,
    threads: usize,
    progress: &(dyn Fn(usize) + Sync),
) -> Result<(Vec<i32>, usize), EvalError> {
    let (total, classes) = (data.len(), model.num_classes());
    let chunk = total.div_ceil(threads.clamp(1, total.max(1))).max(1);
    // Equal chunks can leave a thread without work (10 images on 6 threads: 5 chunks of 2); count workers.
    let threads = total.div_ceil(chunk);
    let mut logits = vec![0i32; total * classes];
    let outcomes: Vec<Result<(), EvalError>> = std::thread::scope(|scope| {
        let workers: Vec<_> = logits
            .chunks_mut(chunk * classes)
            .enumerate()
            .map(|(i, out)| {
                let first = i * chunk;
                scope.spawn(move || run_range(model, data, first, out, progress))
            })
            .collect();
        // A worker only panics on a bug; pass the panic on rather than hide it.
        workers.into_iter().map(|w| w.join().unwrap_or_else(|p| std::panic::resume_unwind(p))).collect()
    });
    // Chunks are in image order, so the first error is the one of the lowest image index.
    outcomes.into_iter().collect::<Result<(), _>>()?;
    Ok((logits, threads))
}

/// Images between progress reports: often enough for a smooth bar, rarely enough to cost nothing.
const PROGRESS_EVERY: usize = 16;

/// Runs images `first..` into `out` (their logits, one image after the other), with one arena for them all.
fn run_range(
    model: &Model<'_>,
    data: &Dataset,
    first: usize,
    out: &mut [i32],
    progress: &(dyn Fn(usize) + Sync),
) -> Result<(), EvalError> {
    let mut arena = vec![0u8; model.arena_size()];
    let mut unreported = 0;
    for (offset, logits) in out.chunks_exact_mut(model.num_classes()).enumerate() {
        let index = first + offset;
        model
            .run(data.image(index), &mut arena, logits)
            .map_err(|source| EvalError::Run { index, source })?;
        unreported += 1;
        if unreported == PROGRESS_EVERY {
            progress(unreported);
            unreported = 0;
        }
    }
    if unreported > 0 {
        progress(unreported);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(confusion: Vec<Vec<u64>>) -> EvalReport {
        let total = confusion.iter().flatten().sum();
        let correct = (0..confusion.len()).map(|c| confusion[c][c]).sum();
        EvalReport {
            dataset: "fashion-mnist".into(),
            split: "test".into(),
            class_names: (0..confusion.len()).map(|c| format!("c{c}")).collect(),
            total,
            correct,
            confusion,
            predictions: Vec::new(),
            logits: Vec::new(),
            engine: EvalEngine::Runtime { threads: 2 }.describe(),
            threads: 2,
            seconds: 0.5,
        }
    }

    #[test]
    fn derived_figures_follow_the_confusion_matrix() {
        let r = report(vec![vec![3, 1, 0], vec![0, 0, 0], vec![2, 0, 4]]);
        assert_eq!(r.accuracy(), 0.7);
        assert_eq!(r.class_totals(), [4, 0, 6]);
        assert_eq!(r.per_class_accuracy(), [Some(0.75), None, Some(4.0 / 6.0)]);
        assert_eq!(r.images_per_sec(), 20.0);
        assert_eq!(report(vec![vec![0]]).accuracy(), 0.0);
    }

    #[test]
    fn text_shows_the_summary_the_classes_and_the_matrix() {
        let text = report(vec![vec![3, 1], vec![2, 4]]).to_text("m.qfdm");
        for needle in
            ["model     m.qfdm", "70.00% top-1 (7/10)", "20 images/s with the runtime on 2 threads", "1  c1"]
        {
            assert!(text.contains(needle), "lacks {needle:?}:\n{text}");
        }
        assert!(text.contains("true  0  1\n0 c0  3  1\n1 c1  2  4\n"), "{text}");
        let wide = report(vec![vec![1; 21]; 21]).to_text("m.qfdm");
        assert!(wide.contains("21 classes, printed by --json only"), "{wide}");
    }

    #[test]
    fn json_has_the_report_and_the_derived_figures() {
        let json: serde_json::Value =
            serde_json::from_str(&report(vec![vec![3, 1], vec![0, 0]]).to_json("m.qfdm").unwrap()).unwrap();
        assert_eq!(json["model"], "m.qfdm");
        assert_eq!(json["total"], 4);
        assert_eq!(json["accuracy"], 0.75);
        assert_eq!(json["per_class_accuracy"], serde_json::json!([0.75, null]));
        assert_eq!(json["confusion"], serde_json::json!([[3, 1], [0, 0]]));
    }
}
