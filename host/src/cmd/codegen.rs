use std::path::PathBuf;

use anyhow::Context;

use qfd_codegen::emit_rust;
use qfd_host::fsutil::write_atomic;
use qfd_host::model_file::ModelFile;

/// Generate no_std Rust for one model: the code firmware compiles in instead of interpreting the file.
///
/// The module holds the packed weights and requantization tables as static data, calls one qfd-runtime
/// kernel per layer with every shape and constant written out, keeps the activations in a static arena of
/// exactly the planned size, and exposes `infer(input, logits) -> class` (plus `infer_traced` and
/// `infer_in`). Include it with `include!` in a crate that depends on qfd-runtime; it computes what the
/// interpreter computes, bit for bit. The firmware's build script does this for you (docs/codegen.md).
#[derive(Debug, clap::Parser)]
pub struct Cmd {
    /// The .qfdm model.
    model: PathBuf,
    /// Output file (replaced atomically if it exists).
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
}

impl Cmd {
    pub fn run(self) -> anyhow::Result<()> {
        let file = ModelFile::read(&self.model)?;
        let code = emit_rust(file.bytes())
            .with_context(|| format!("cannot generate code for {}", self.model.display()))?;
        write_atomic(&self.out, code.as_bytes())?;
        super::print(&format!(
            "{} -> {} ({} lines of Rust)\n",
            self.model.display(),
            self.out.display(),
            code.lines().count()
        ))
    }
}
