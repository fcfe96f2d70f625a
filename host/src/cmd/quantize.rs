use std::path::PathBuf;

use anyhow::Context;

use qfd_host::export::run_dir_of;
use qfd_host::train::ptq::{quantize, Observer, PtqMethod, PtqOptions};

/// Quantize a trained full-precision vision transformer after training (FQ-ViT's post-training
/// quantization).
///
/// Weights become 8-bit per output channel; activations 8-bit per tensor with whole zero points, their
/// ranges calibrated on the first training images. `fq-vit` adds power-of-two factors per channel to the
/// residual stream that feeds every LayerNorm (PTF, K = 3) and 4-bit log2 attention probabilities
/// (Log-Int-Softmax); `ptf` only the first; `minmax` neither (the baseline). Writes a run directory (method
/// `ptq`) that `qfd-host export` turns into an integer model, and prints the test accuracy of the float and
/// the fake-quantized model.
#[derive(Debug, clap::Parser)]
pub struct Cmd {
    /// Run directory of the full-precision vit (`qfd-host train --arch vit --method fp`).
    #[arg(value_name = "RUN_DIR")]
    run_dir: PathBuf,
    /// minmax, ptf or fq-vit.
    #[arg(long, default_value = "fq-vit")]
    method: PtqMethod,
    /// How activation ranges are chosen: minmax, or omse (the least squared error on the last
    /// calibration batch).
    #[arg(long, default_value = "minmax")]
    observer: Observer,
    /// Activation bits (FQ-ViT's are 8; fewer show what PTF and the observers buy). The attention logits
    /// stay 8-bit.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u8).range(2..=8))]
    abits: u8,
    /// Calibration images, the first of the training split.
    #[arg(long, default_value_t = 1000, value_name = "N")]
    calibration_images: usize,
    /// Output run directory [default: RUN_DIR-ptq-<method>-<observer>].
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Directory of the data set files, if not where training read them.
    #[arg(long, value_name = "DIR")]
    data: Option<PathBuf>,
}

impl Cmd {
    pub fn run(self) -> anyhow::Result<()> {
        let dir = run_dir_of(&self.run_dir)?;
        let out = self.out.unwrap_or_else(|| {
            PathBuf::from(format!("{}-ptq-{}-{}-a{}", dir.display(), self.method, self.observer, self.abits))
        });
        let options = PtqOptions {
            method: self.method,
            observer: self.observer,
            images: self.calibration_images,
            act_bits: self.abits,
            out,
            data: self.data,
        };
        let q = quantize(&dir, &options).with_context(|| format!("cannot quantize {}", dir.display()))?;
        super::print(&format!(
            "quantized ({} with {} ranges, {} calibration images) into {}\ntest accuracy: float {:.2}%, \
             fake-quant {:.2}%\nnext: qfd-host export {}\n",
            options.method,
            options.observer,
            options.images,
            q.dir.display(),
            100.0 * q.float.acc,
            100.0 * q.quantized.acc,
            q.dir.display(),
        ))
    }
}
