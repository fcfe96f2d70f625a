//! `qfd-host train`: quantization-aware training with Quantized Feature Distillation, on `tch`.
//!
//! The training graph:
//! - [`quant`]: the EWGS quantizers and quantized conv / linear layers; [`ewgs`]: their optional gradient
//!   scaling;
//! - [`models`]: the architectures, with one quantizer per stored tensor, mirroring the integer graph;
//! - [`method`]: fp, qat, logit-kd, feature-kd and qfd losses; [`bwrf`]: the mixed paths of block-wise
//!   replacement training (bwrf, bwrf-qfd);
//! - [`ptq`]: post-training quantization of a vision transformer (MinMax, PTF, FQ-ViT).
//!
//! Around it:
//! - [`config`]: every option of a run, as flags or a TOML file;
//! - [`batches`]: the data on the device once, shuffled and augmented in batches;
//! - [`optim`]: SGD with momentum, Adam and AdamW, with their buffers saved in checkpoints;
//! - [`schedule`]: cosine learning rate with warm-up;
//! - [`checkpoint`]: atomic checkpoints in the run directory;
//! - [`run`]: the pipeline of stages (full-precision model, QFD teacher, student) and the epoch loop;
//! - [`metrics`], [`plot`], [`progress`]: what the user sees (JSON lines, PNG, progress bars).

pub mod batches;
pub mod bwrf;
pub mod checkpoint;
pub mod config;
pub mod ewgs;
pub mod method;
pub mod metrics;
pub mod models;
pub mod optim;
pub mod plot;
pub mod progress;
pub mod ptq;
pub mod quant;
pub mod run;
pub mod schedule;
pub mod stages;
