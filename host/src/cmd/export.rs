use std::path::PathBuf;

use anyhow::Context;

use qfd_host::export::{export, run_dir_of};
use qfd_host::fsutil::write_atomic;
use qfd_host::model_file::ModelFile;
use qfd_host::report::ModelReport;

/// Export a trained quantized checkpoint as an integer-only .qfdm model.
///
/// Folds BatchNorm, alpha, ReLU, the residual adds and each next quantizer into per-channel requantization,
/// folds the input normalisation into the first layer (the device reads raw u8 pixels), packs the weights
/// at their bit-width and plans the arena. The runtime then loads the file, which proves that no layer's
/// i32 accumulator can overflow. Records the architecture, bits, data set, class names, normalisation and
/// the test accuracy of the fake-quantized and of the integer model. The same checkpoint always gives the same bytes; the file is written
/// atomically.
#[derive(Debug, clap::Parser)]
pub struct Cmd {
    /// Run directory printed by `qfd-host train` (or a checkpoint file in it).
    #[arg(value_name = "RUN_DIR|CHECKPOINT")]
    checkpoint: PathBuf,
    /// Output file [default: model.qfdm in the run directory].
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// Directory of the data set files, if not where training read them (used for the test accuracy).
    #[arg(long, value_name = "DIR")]
    data: Option<PathBuf>,
    /// Measure the accuracies on the first N test images only [default: all].
    #[arg(long, value_name = "N")]
    limit: Option<usize>,
}

impl Cmd {
    pub fn run(self) -> anyhow::Result<()> {
        let out = match self.out {
            Some(out) => out,
            None => run_dir_of(&self.checkpoint)?.join("model.qfdm"),
        };
        let exported = export(&self.checkpoint, self.data.as_deref(), self.limit)
            .with_context(|| format!("cannot export {}", self.checkpoint.display()))?;
        write_atomic(&out, &exported.bytes)?;
        let file = ModelFile::from_bytes(&out, exported.bytes);
        let report = ModelReport::from_file(&file)?;
        let cfg = &exported.config;
        super::print(&format!(
            "exported {} {} W{}A{} ({}) to {}: {} ops, {} MACs, {} bytes of weights, {} bytes of arena, \
             {} bytes in all\ntest accuracy on {} images: fake-quant {:.2}%, integer {:.2}% (same prediction on \
             {:.2}%)\n",
            cfg.arch,
            cfg.method,
            cfg.wbits,
            cfg.abits,
            cfg.dataset,
            out.display(),
            report.layers.len(),
            report.total_macs,
            report.total_weight_bytes,
            report.arena_bytes,
            file.len(),
            exported.images,
            100.0 * exported.fake_quant_accuracy,
            100.0 * exported.integer_accuracy,
            100.0 * exported.agreement,
        ))
    }
}
