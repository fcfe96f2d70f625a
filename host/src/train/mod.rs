//! `qfd-host train`: quantization-aware training with Quantized Feature Distillation, on `tch`.
//!
//! - [`quant`]: the EWGS quantizers and quantized conv / linear layers;
//! - [`models`]: the architectures, with one quantizer per stored tensor, mirroring the integer graph;
//! - [`method`]: fp, qat, logit-kd, feature-kd and qfd losses.

pub mod method;
pub mod models;
pub mod quant;
