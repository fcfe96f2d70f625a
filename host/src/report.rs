//! What `qfd-host inspect` says about a model: a header and one row per layer, as text or as JSON.

use std::fmt::Write as _;

use serde::Serialize;

use qfd_codegen::stats::op_stats;
use qfd_runtime::format::{ElemType, OpDesc, ValueDesc};
use qfd_runtime::Model;

use crate::model_file::{ModelFile, ModelFileError};
use crate::table::{Align, Table};

/// A model's description. Field names are stable: scripts and tests read the JSON form.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelReport {
    /// The file the model was read from.
    pub path: String,
    /// Size of the file in bytes.
    pub file_bytes: u64,
    /// Tool that wrote the file.
    pub producer: String,
    /// Format version `major.minor` from the header.
    pub format_version: String,
    /// Architecture name.
    pub arch: String,
    /// Dataset name.
    pub dataset: String,
    /// Weight bits of the inner layers.
    pub weight_bits: u8,
    /// Activation bits of the inner layers.
    pub act_bits: u8,
    /// The input tensor (value 0).
    pub input: ValueReport,
    /// Number of classes (length of the logits).
    pub classes: usize,
    /// Class names (may be empty).
    pub class_names: Vec<String>,
    /// Real logit per integer logit.
    pub logit_scale: f32,
    /// Per-channel mean of `pixel / 255` used in training.
    pub mean: Vec<f32>,
    /// Per-channel standard deviation of `pixel / 255` used in training.
    pub std: Vec<f32>,
    /// Top-1 accuracy of the fake-quantized model at export, if measured.
    pub fake_quant_accuracy: Option<f32>,
    /// Top-1 accuracy of the integer model at export, if measured.
    pub integer_accuracy: Option<f32>,
    /// Bytes of working memory an inference needs: `values_bytes + scratch_bytes`.
    pub arena_bytes: u64,
    /// Bytes of the arena that hold tensors (the memory plan).
    pub values_bytes: u64,
    /// Bytes of kernel working memory (im2col buffers) after the tensors: the most any op needs.
    pub scratch_bytes: u64,
    /// Multiply-accumulates per inference.
    pub total_macs: u64,
    /// Weight parameters.
    pub total_params: u64,
    /// Bytes of packed weights plus per-channel requantization tables.
    pub total_weight_bytes: u64,
    /// One entry per op, in execution order.
    pub layers: Vec<LayerReport>,
}

/// A tensor in the arena.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ValueReport {
    /// `[H, W, C]`.
    pub shape: [u16; 3],
    /// `codes` or `i32`.
    pub elem: &'static str,
    /// Bit-width of codes (`None` for `i32`).
    pub bits: Option<u8>,
    /// Bytes in the arena.
    pub bytes: u64,
    /// Byte offset in the arena.
    pub arena_offset: u32,
}

/// One op. Fields that do not apply to the op kind are `None` (`null` in JSON).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LayerReport {
    /// Position in execution order.
    pub index: usize,
    /// Op kind, e.g. `conv2d`.
    pub kind: &'static str,
    /// Values read.
    pub inputs: Vec<u16>,
    /// Value written (`index + 1`).
    pub output: usize,
    /// The output tensor.
    pub value: ValueReport,
    /// `[kh, kw]` of convolutions and pools.
    pub kernel: Option<[u8; 2]>,
    /// `[sh, sw]` of convolutions and pools.
    pub stride: Option<[u8; 2]>,
    /// `[top, left, bottom, right]` of convolutions and pools.
    pub padding: Option<[u8; 4]>,
    /// Channel groups of convolutions.
    pub groups: Option<u16>,
    /// Weight bits of convolutions and fully connected layers.
    pub weight_bits: Option<u8>,
    /// Multiply-accumulates per inference.
    pub macs: u64,
    /// Weight parameters.
    pub params: u64,
    /// Bytes of packed weights plus requantization table.
    pub weight_bytes: u64,
    /// The kernel variant the runtime selects for this shape (`reference`, `im2col` or `depthwise-3x3`;
    /// DSP cores run the im2col variant's inner product with `SMLAD`).
    pub variant: &'static str,
    /// Bytes of kernel scratch this op needs.
    pub scratch_bytes: u64,
}

fn value_report(v: &ValueDesc) -> ValueReport {
    let (elem, bits) = match v.elem {
        ElemType::Codes { bits } => ("codes", Some(bits)),
        ElemType::I32 => ("i32", None),
    };
    ValueReport { shape: v.shape, elem, bits, bytes: v.bytes() as u64, arena_offset: v.arena_offset }
}

/// Kernel, stride, padding, groups and weight bits of a layer.
type LayerGeometry = (Option<[u8; 2]>, Option<[u8; 2]>, Option<[u8; 4]>, Option<u16>, Option<u8>);

fn geometry(op: &OpDesc<'_>) -> LayerGeometry {
    let (kernel, stride, padding) = match op.window() {
        Some(w) => {
            let p = w.padding;
            (Some(w.kernel), Some(w.stride), Some([p.top, p.left, p.bottom, p.right]))
        }
        None => (None, None, None),
    };
    let groups = match op {
        OpDesc::Conv2d(c) => Some(c.groups),
        _ => None,
    };
    (kernel, stride, padding, groups, op.weight_bits())
}

impl ModelReport {
    /// Validates the file's model and describes it.
    pub fn from_file(file: &ModelFile) -> Result<Self, ModelFileError> {
        let model = file.model()?;
        let (major, minor) = model.format_version();
        Ok(Self::new(&model, file, format!("{major}.{minor}")))
    }

    fn new(model: &Model<'_>, file: &ModelFile, format_version: String) -> Self {
        let desc = model.desc();
        let stats = op_stats(desc);
        let layers: Vec<LayerReport> = desc
            .ops
            .iter()
            .zip(&stats)
            .enumerate()
            .map(|(index, (op, s))| {
                let (kernel, stride, padding, groups, weight_bits) = geometry(op);
                LayerReport {
                    index,
                    kind: op.kind(),
                    inputs: op.inputs().to_vec(),
                    output: index + 1,
                    value: value_report(&desc.values[index + 1]),
                    kernel,
                    stride,
                    padding,
                    groups,
                    weight_bits,
                    macs: s.macs,
                    params: s.params,
                    weight_bytes: s.weight_bytes,
                    variant: op.variant(model.op_values(index)),
                    scratch_bytes: model.op_scratch_size(index) as u64,
                }
            })
            .collect();
        let meta = &desc.meta;
        let class_names = desc.output.class_names;
        ModelReport {
            path: file.path().display().to_string(),
            file_bytes: file.len() as u64,
            producer: model.producer().to_string(),
            format_version,
            arch: meta.arch.to_string(),
            dataset: meta.dataset.to_string(),
            weight_bits: meta.weight_bits,
            act_bits: meta.act_bits,
            input: value_report(&desc.values[0]),
            classes: model.num_classes(),
            class_names: class_names.split_terminator('\n').map(Into::into).collect(),
            logit_scale: desc.output.logit_scale,
            mean: desc.input.mean.to_vec(),
            std: desc.input.std.to_vec(),
            fake_quant_accuracy: meta.fake_quant_accuracy,
            integer_accuracy: meta.integer_accuracy,
            arena_bytes: model.arena_size() as u64,
            values_bytes: model.values_size() as u64,
            scratch_bytes: model.scratch_size() as u64,
            total_macs: stats.iter().map(|s| s.macs).sum(),
            total_params: stats.iter().map(|s| s.params).sum(),
            total_weight_bytes: stats.iter().map(|s| s.weight_bytes).sum(),
            layers,
        }
    }

    /// The report as one pretty-printed JSON object.
    pub fn to_json(&self) -> Result<String, serde_json::Error> {
        serde_json::to_string_pretty(self)
    }

    /// The report as text: a header, then a table with one row per layer.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let accuracy = |a: Option<f32>| a.map_or("-".to_string(), |a| format!("{:.2}%", a * 100.0));
        let lines = [
            ("model", format!("{} ({} bytes)", self.path, self.file_bytes)),
            ("producer", format!("{} (format {})", self.producer, self.format_version)),
            ("arch", format!("{} (dataset: {})", self.arch, self.dataset)),
            ("bits", format!("W{}/A{} (inner layers)", self.weight_bits, self.act_bits)),
            ("input", format!("{}, {} codes", shape(self.input.shape), elem(&self.input))),
            ("classes", self.classes.to_string()),
            (
                "arena",
                format!(
                    "{} bytes ({} of tensors + {} of kernel scratch)",
                    self.arena_bytes, self.values_bytes, self.scratch_bytes
                ),
            ),
            ("MACs", format!("{} ({:.2} M)", self.total_macs, self.total_macs as f64 / 1e6)),
            (
                "weights",
                format!(
                    "{} bytes incl. requantization ({} params)",
                    self.total_weight_bytes, self.total_params
                ),
            ),
            (
                "accuracy",
                format!(
                    "fake-quant {}, integer {}",
                    accuracy(self.fake_quant_accuracy),
                    accuracy(self.integer_accuracy)
                ),
            ),
        ];
        for (key, value) in lines {
            // Writing to a String cannot fail.
            let _ = writeln!(out, "{key:<10} {value}");
        }
        out.push('\n');
        out.push_str(&self.layer_table().render(""));
        out
    }

    fn layer_table(&self) -> Table {
        use Align::{Left, Right};
        let mut t = Table::new(&[
            ("#", Right),
            ("op", Left),
            ("in -> out", Left),
            ("shape", Right),
            ("type", Left),
            ("kernel", Left),
            ("stride", Left),
            ("groups", Right),
            ("w-bits", Right),
            ("MACs", Right),
            ("weight B", Right),
            ("out B", Right),
            ("offset", Right),
            ("kernel variant", Left),
            ("scratch B", Right),
        ]);
        let dash = || "-".to_string();
        let pair = |p: Option<[u8; 2]>| p.map_or_else(dash, |[a, b]| format!("{a}x{b}"));
        let num = |n: Option<u64>| n.map_or_else(dash, |n| n.to_string());
        for l in &self.layers {
            let inputs: Vec<String> = l.inputs.iter().map(u16::to_string).collect();
            t.row(vec![
                l.index.to_string(),
                l.kind.to_string(),
                format!("{} -> {}", inputs.join(","), l.output),
                shape(l.value.shape),
                elem(&l.value),
                pair(l.kernel),
                pair(l.stride),
                num(l.groups.map(u64::from)),
                num(l.weight_bits.map(u64::from)),
                l.macs.to_string(),
                l.weight_bytes.to_string(),
                l.value.bytes.to_string(),
                l.value.arena_offset.to_string(),
                l.variant.to_string(),
                l.scratch_bytes.to_string(),
            ]);
        }
        t
    }
}

fn shape([h, w, c]: [u16; 3]) -> String {
    format!("{h}x{w}x{c}")
}

fn elem(v: &ValueReport) -> String {
    match v.bits {
        Some(bits) => format!("{bits}-bit"),
        None => v.elem.to_string(),
    }
}
