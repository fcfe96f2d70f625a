//! The reference kernels: plain loops written straight from the arithmetic contract (`docs/arithmetic.md`).
//!
//! They define what every op computes. Faster variants (`gemm`, `dsp`, `mla`, `mve`, `depthwise`) must give
//! the same bytes for every input, and the randomized tests check them against these, on the host and on
//! the boards.
//! They also stay the production kernels for shapes no fast variant handles.

mod attention;
mod conv;
mod elementwise;
mod fully_connected;
mod layer_norm;
mod pool;
mod softmax;

pub use attention::{
    attention_scores, attention_scores_accumulate, attention_values, attention_values_accumulate,
    prob_weight, AttentionShape, LOG2_WEIGHT_SHIFT,
};
pub use conv::{conv2d, conv2d_accumulate};
pub use elementwise::{add, add_accumulate, channel_add, channel_add_accumulate, lookup};
#[cfg(all(target_arch = "arm", qfd_mve))]
pub(crate) use fully_connected::fully_connected_output;
pub use fully_connected::{fully_connected, fully_connected_accumulate};
pub use layer_norm::{
    inverse_sqrt, isqrt, layer_norm, layer_norm_accumulate, normalize_token, PtfInput, MAX_NORM_CHANNELS,
    MAX_PTF_SHIFT, NORM_FRACTION_BITS,
};
pub use pool::{avg_pool, avg_pool_accumulate, global_sum_pool, max_pool};
pub use softmax::{linear_code, log2_code, softmax, ExpParams, ProbCodes, LOG2_CODE_BITS, LOG2_ZERO_CODE};
