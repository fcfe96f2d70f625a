//! The reference kernels: plain loops written straight from the arithmetic contract (`docs/arithmetic.md`).
//!
//! They define what every op computes. Faster variants (`gemm`, `dsp`, `mla`, `mve`, `depthwise`) must give
//! the same bytes for every input, and the randomized tests check them against these, on the host and on
//! the boards.
//! They also stay the production kernels for shapes no fast variant handles.

mod conv;
mod elementwise;
mod fully_connected;
mod pool;

pub use conv::{conv2d, conv2d_accumulate};
pub use elementwise::{add, add_accumulate};
#[cfg(all(target_arch = "arm", qfd_mve))]
pub(crate) use fully_connected::fully_connected_output;
pub use fully_connected::{fully_connected, fully_connected_accumulate};
pub use pool::{avg_pool, avg_pool_accumulate, global_sum_pool, max_pool};
