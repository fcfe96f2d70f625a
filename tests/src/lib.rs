//! Helpers shared by the SDK's cross-crate tests (`tests/tests/*.rs`): running a model file on the host
//! runtime the way a board does, and deterministic inputs.
//!
//! The tests themselves check what no single crate can: that what `qfd-codegen` writes, through the host's
//! file handling, is what `qfd-runtime` reads and runs, and that the bytes of the format do not drift.
#![warn(missing_docs)]

use qfd_runtime::{LoadError, Model, RunError};

/// Logits and predicted class of one inference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inference {
    /// One `i32` per class.
    pub logits: Vec<i32>,
    /// Index of the first largest logit.
    pub class: usize,
}

/// Why a model could not be run on the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostRunError {
    /// The file was refused.
    Load(LoadError),
    /// The inference was refused.
    Run(RunError),
}

/// Loads `bytes` and runs it once on `input` in an arena of exactly the size the model asks for.
pub fn run_on_host(bytes: &[u8], input: &[u8]) -> Result<Inference, HostRunError> {
    let model = Model::load(bytes).map_err(HostRunError::Load)?;
    let mut arena = vec![0u8; model.arena_size()];
    let mut logits = vec![0i32; model.num_classes()];
    let class = model.run(input, &mut arena, &mut logits).map_err(HostRunError::Run)?;
    Ok(Inference { logits, class })
}

/// `len` pseudo-random codes below `2^bits`, the same for the same `seed` on every platform.
pub fn test_input(len: usize, bits: u8, seed: u64) -> Vec<u8> {
    // SplitMix64: tiny, portable and good enough to spread codes over the range.
    let mut state = seed;
    (0..len)
        .map(|_| {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            ((z ^ (z >> 31)) >> (64 - bits as u32)) as u8
        })
        .collect()
}
