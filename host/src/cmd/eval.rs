use std::io::IsTerminal;
use std::num::NonZeroUsize;
use std::path::PathBuf;

use clap::builder::RangedU64ValueParser;
use indicatif::{ProgressBar, ProgressState, ProgressStyle};

use anyhow::Context;
use qfd_host::args::EngineArgs;
use qfd_host::data::{Dataset, DatasetKind, Split};
use qfd_host::eval::{dataset_kind, evaluate, EvalEngine, EvalReport};
use qfd_host::export::fake_quant_predictions;
use qfd_host::model_file::ModelFile;
use qfd_runtime::Model;

/// Measure a model's accuracy on the test split with the integer runtime, as a board computes it.
///
/// Reports top-1 accuracy, per-class accuracy, the confusion matrix (rows: true class, columns: predicted
/// class) and images/s. The images must have the model's input shape and the data set one class per logit.
/// The results depend neither on --threads nor on --engine: the burn engine computes the runtime's logits
/// bit for bit, in batches, on the CPU or a GPU.
#[derive(Debug, clap::Parser)]
pub struct Cmd {
    /// The model file.
    model: PathBuf,
    #[command(flatten)]
    data: DataArgs,
    /// Evaluate only the first N test images.
    #[arg(long, value_name = "N", value_parser = RangedU64ValueParser::<usize>::new().range(1..))]
    limit: Option<usize>,
    /// Worker threads of the runtime engine [default: all cores].
    #[arg(long, value_name = "N", value_parser = RangedU64ValueParser::<usize>::new().range(1..))]
    threads: Option<usize>,
    #[command(flatten)]
    engine: EngineArgs,
    /// With --engine burn: run the runtime on the same images too and check that every logit is equal
    /// (the command fails naming the first image that differs); reports both engines' speed.
    #[arg(long)]
    verify: bool,
    /// Also run the fake-quantized model of this training checkpoint (a run directory) on the same images:
    /// report its accuracy, the difference, and how often the two predict the same class.
    #[arg(long, value_name = "RUN_DIR")]
    compare: Option<PathBuf>,
    /// Print one JSON object instead of text, with the prediction of every image (field names are stable).
    #[arg(long)]
    json: bool,
}

/// Where the test images come from; shared with `trace`.
#[derive(Debug, clap::Args)]
pub struct DataArgs {
    /// Data set: fashion-mnist, cifar10 or cifar100 [default: the one named in the model's metadata].
    #[arg(long)]
    dataset: Option<DatasetKind>,
    /// Directory of the data set files [default: where the Debian package puts Fashion-MNIST].
    #[arg(long, value_name = "DIR")]
    data: Option<PathBuf>,
}

impl DataArgs {
    /// Loads the test split of the data set chosen for `model`.
    pub fn load_test(&self, model: &Model<'_>) -> anyhow::Result<Dataset> {
        let kind = dataset_kind(model, self.dataset)?;
        Ok(Dataset::load(kind, Split::Test, self.data.as_deref())?)
    }
}

impl Cmd {
    pub fn run(self) -> anyhow::Result<()> {
        let file = ModelFile::read(&self.model)?;
        let model = file.model()?;
        let mut data = self.data.load_test(&model)?;
        if let Some(n) = self.limit {
            data.truncate(n);
        }
        let threads =
            self.threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, NonZeroUsize::get));
        let engine = self.engine.engine(threads)?;
        if self.threads.is_some() && !matches!(engine, EvalEngine::Runtime { .. }) {
            anyhow::bail!(
                "--threads applies to the runtime engine only; the burn engine uses its backend's threads"
            );
        }
        if self.verify && matches!(engine, EvalEngine::Runtime { .. }) {
            anyhow::bail!("--verify checks the burn engine against the runtime; add --engine burn");
        }
        let bar = progress_bar(data.len() as u64);
        let report = evaluate(&model, &data, engine, &|n| bar.inc(n as u64))?;
        bar.finish_and_clear();
        let verified = match self.verify {
            true => {
                let bar = progress_bar(data.len() as u64);
                let runtime =
                    evaluate(&model, &data, EvalEngine::Runtime { threads }, &|n| bar.inc(n as u64))?;
                bar.finish_and_clear();
                Some(Verified::check(&report, &runtime)?)
            }
            false => None,
        };
        let name = self.model.display().to_string();
        let comparison = match &self.compare {
            Some(dir) => {
                let fake = fake_quant_predictions(dir, self.data.data.as_deref(), Some(data.len()))
                    .with_context(|| format!("cannot run the fake-quantized model of {}", dir.display()))?;
                Some(Comparison::new(dir, &fake, &report.predictions, &data.labels))
            }
            None => None,
        };
        if self.json {
            let mut json: serde_json::Value = serde_json::from_str(&report.to_json(&name)?)?;
            if let Some(c) = &comparison {
                json["compare"] = serde_json::to_value(c)?;
            }
            if let Some(v) = &verified {
                json["verify"] = serde_json::to_value(v)?;
            }
            super::print(&(serde_json::to_string(&json)? + "\n"))
        } else {
            let mut text = report.to_text(&name);
            if let Some(c) = &comparison {
                text += &c.to_text(report.accuracy());
            }
            if let Some(v) = &verified {
                text += &v.to_text();
            }
            super::print(&text)
        }
    }
}

/// The burn engine's logits checked against the runtime's, image by image.
#[derive(Debug, serde::Serialize)]
struct Verified {
    images: u64,
    /// Logits compared (all equal, or the check failed).
    logits: usize,
    runtime: String,
    runtime_images_per_sec: f64,
}

impl Verified {
    fn check(burn: &EvalReport, runtime: &EvalReport) -> anyhow::Result<Verified> {
        let classes = burn.class_names.len().max(1);
        let differs =
            burn.logits.chunks(classes).zip(runtime.logits.chunks(classes)).position(|(a, b)| a != b);
        if let Some(image) = differs.or((burn.logits.len() != runtime.logits.len()).then_some(0)) {
            anyhow::bail!(
                "the burn engine's logits differ from the runtime's at image {image}: {:?} against {:?}; \
                 please report this with the model file",
                burn.logits.chunks(classes).nth(image).unwrap_or_default(),
                runtime.logits.chunks(classes).nth(image).unwrap_or_default()
            );
        }
        Ok(Verified {
            images: runtime.total,
            logits: runtime.logits.len(),
            runtime: runtime.engine.clone(),
            runtime_images_per_sec: runtime.images_per_sec(),
        })
    }

    fn to_text(&self) -> String {
        format!(
            "\nverified: all {} logits of the {} images equal the runtime's ({}: {:.0} images/s)\n",
            self.logits, self.images, self.runtime, self.runtime_images_per_sec
        )
    }
}

/// The integer model against the fake-quantized model it was exported from, on the same images.
#[derive(Debug, serde::Serialize)]
struct Comparison {
    checkpoint: String,
    fake_quant_accuracy: f64,
    /// Fraction of images where both predict the same class.
    agreement: f64,
    /// Integer minus fake-quant accuracy.
    accuracy_difference: f64,
}

impl Comparison {
    fn new(dir: &std::path::Path, fake: &[usize], integer: &[usize], labels: &[u8]) -> Comparison {
        let n = labels.len().max(1) as f64;
        let fake_correct = fake.iter().zip(labels).filter(|(&p, &l)| p == l as usize).count();
        let int_correct = integer.iter().zip(labels).filter(|(&p, &l)| p == l as usize).count();
        let agree = fake.iter().zip(integer).filter(|(a, b)| a == b).count();
        Comparison {
            checkpoint: dir.display().to_string(),
            fake_quant_accuracy: fake_correct as f64 / n,
            agreement: agree as f64 / n,
            accuracy_difference: (int_correct as f64 - fake_correct as f64) / n,
        }
    }

    fn to_text(&self, integer_accuracy: f64) -> String {
        format!(
            "\ncompared with the fake-quantized model of {}:\n  fake-quant accuracy {:.2}%, integer {:.2}% \
             (difference {:+.2} points); same prediction on {:.2}% of images\n",
            self.checkpoint,
            100.0 * self.fake_quant_accuracy,
            100.0 * integer_accuracy,
            100.0 * self.accuracy_difference,
            100.0 * self.agreement
        )
    }
}

/// A bar on stderr when it is a terminal; hidden otherwise (logs, `2> file`).
fn progress_bar(images: u64) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(images);
    let style =
        ProgressStyle::with_template("evaluating [{bar:28.cyan/blue}] {pos:>6}/{len:6} {rate}  ETA {eta}")
            .expect("the template is valid")
            .with_key("rate", |state: &ProgressState, w: &mut dyn std::fmt::Write| {
                // Writing to the bar's buffer cannot fail.
                let _ = write!(w, "{:.0} images/s", state.per_sec());
            })
            .progress_chars("=> ");
    bar.set_style(style);
    bar
}
