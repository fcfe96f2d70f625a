use std::path::PathBuf;

use anyhow::Context;

use qfd_codegen::encode_model_as;
use qfd_codegen::synth::{synth, Arch, SynthConfig};
use qfd_host::args::{arch_parser, BitWidths, InputShape, VitArgs};
use qfd_host::fsutil::write_atomic;
use qfd_host::model_file::ModelFile;
use qfd_host::report::ModelReport;

/// Build a reference architecture with random weights and write it as a .qfdm model.
///
/// The weights are random but the requantization is plausible, so every kernel does representative work:
/// use it to measure speed and memory and to test the runtime and the firmware before a trained model exists.
/// The first conv and the classifier always have 8-bit weights. `vit` is a vision transformer of the integer
/// transformer ops (LayerNorm on a power-of-two-factor residual stream, log2 softmax, a GELU table).
#[derive(Debug, clap::Parser)]
pub struct Cmd {
    /// Architecture.
    #[arg(long, value_parser = arch_parser())]
    arch: Arch,
    /// Input shape HxWxC (1-4 channels of 8-bit pixels).
    #[arg(long, value_name = "HxWxC", default_value = "32x32x3")]
    input: InputShape,
    /// Bit-widths of the inner layers: W/A (weights/activations), or one number for both.
    #[arg(long, value_name = "W/A", default_value = "8/8")]
    bits: BitWidths,
    /// Width multiplier of the MobileNets' channels (ResNets ignore it).
    #[arg(long, default_value = "1.0")]
    width: f32,
    #[command(flatten)]
    vit: VitArgs,
    /// Number of classes.
    #[arg(long, default_value_t = 10)]
    classes: usize,
    /// Random seed: the same seed and settings give the same bytes.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Output file (replaced atomically if it exists).
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
}

impl Cmd {
    pub fn run(self) -> anyhow::Result<()> {
        let config = SynthConfig {
            arch: self.arch,
            input: self.input.0,
            weight_bits: self.bits.weight,
            act_bits: self.bits.act,
            width: self.width,
            vit: self.vit.shape(),
            classes: self.classes,
            seed: self.seed,
        };
        let what = format!("{} {} W{}/A{}", self.arch, self.input, self.bits.weight, self.bits.act);
        let graph = synth(&config).with_context(|| format!("cannot build {what}"))?;
        let bytes =
            encode_model_as(&graph, qfd_host::PRODUCER).with_context(|| format!("cannot encode {what}"))?;
        write_atomic(&self.out, &bytes)?;
        let report = ModelReport::from_file(&ModelFile::from_bytes(&self.out, bytes))?;
        super::print(&format!(
            "{what}: {} MACs, {} weight bytes, {} arena bytes -> {}\n",
            report.total_macs,
            report.total_weight_bytes,
            report.arena_bytes,
            self.out.display()
        ))
    }
}
