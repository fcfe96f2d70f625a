//! `qfd-codegen`: the translate-time side of the SDK.
//!
//! Only this crate (and the host CLI built on it) writes models; `qfd-runtime` only reads and runs them.
//! - [`arch`]: the published architecture tables shared with the trainer.
//! - [`graph`]: an owned model graph with a builder that infers shapes and packs weights.
//! - [`plan`]: the arena memory planner (greedy by size over tensor lifetimes, as TFLM's).
//! - [`encode`]: writing a `.qfdm` file from a graph (plan, encode, load it back to prove it valid).
//! - [`synth`]: the reference architectures with random weights and plausible requantization.
//! - [`fixed_point`]: turning real scales into the runtime's Q31 multiplier and shift.
//! - [`emit`]: a model as `no_std` Rust (static weights, one kernel call per layer, a static arena).

pub mod arch;
pub mod build_script;
pub mod emit;
pub mod encode;
pub mod fixed_point;
pub mod graph;
pub mod plan;
pub mod stats;
pub mod synth;

pub use emit::{emit_rust, emit_rust_on, EmitError};
pub use encode::{encode_model, encode_model_as, EncodeError};
pub use graph::{Graph, ValueId};
