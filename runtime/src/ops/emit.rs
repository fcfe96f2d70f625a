//! Rust source for the kernel calls of generated code (the `emit` feature, which `qfd-codegen` turns on):
//! the pieces each op's [`Op::emit_call`](super::Op::emit_call) is written with. Generated code names the
//! arena bytes of value `v` `reader.get(range)`, its output bytes `out`, its scratch `scratch`, and op
//! `i`'s tables `W{i}` and `R{i}`.

use std::format;
use std::string::String;

use crate::format::{Clamp, ValueDesc, Window};
use crate::requant::RequantParams;

use super::code_bits;

/// Op `index` of a model with these values, as generated code sees it.
#[derive(Debug, Clone, Copy)]
pub struct EmitCx<'v> {
    /// The op's index.
    pub index: usize,
    /// Every value of the model.
    pub values: &'v [ValueDesc],
}

impl EmitCx<'_> {
    /// Value `v`.
    pub fn value(&self, v: u16) -> &ValueDesc {
        &self.values[v as usize]
    }

    /// The op's output value.
    pub fn out(&self) -> &ValueDesc {
        &self.values[self.index + 1]
    }

    /// Value `v`'s bytes.
    pub fn bytes(&self, v: u16) -> String {
        format!("reader.get({})", range(self.value(v)))
    }

    /// Value `v`'s codes.
    pub fn input(&self, v: u16) -> String {
        format!("qfd_runtime::Codes::new({}, {})", self.bytes(v), code_bits(self.value(v)))
    }

    /// The output's codes.
    pub fn out_codes(&self) -> String {
        format!("qfd_runtime::CodesMut::new(out, {})", code_bits(self.out()))
    }

    /// The op's packed weights (`W{i}`).
    pub fn weights(&self, bits: u8) -> String {
        format!("qfd_runtime::weights::PackedWeights {{ bits: {bits}, data: &W{} }}", self.index)
    }

    /// The op's requantization table (`R{i}`).
    pub fn requant_table(&self) -> String {
        format!("qfd_runtime::requant::ChannelRequant {{ records: &R{} }}", self.index)
    }

    /// The op's table tagged `tag` (`S` gives `&S{i}`), as a byte slice.
    pub fn table(&self, tag: &str) -> String {
        format!("&{tag}{}", self.index)
    }
}

/// An attention's layout.
pub fn attention_shape(s: crate::kernels::AttentionShape) -> String {
    format!(
        "qfd_runtime::kernels::AttentionShape {{ tokens: {}, heads: {}, head_dim: {} }}",
        s.tokens, s.heads, s.head_dim
    )
}

/// A probability coding.
pub fn prob_codes(p: crate::kernels::ProbCodes) -> String {
    match p {
        crate::kernels::ProbCodes::Log2 => "qfd_runtime::kernels::ProbCodes::Log2".into(),
        crate::kernels::ProbCodes::Linear { bits } => {
            format!("qfd_runtime::kernels::ProbCodes::Linear {{ bits: {bits} }}")
        }
    }
}

/// A value's arena range, `start..end`.
pub fn range(v: &ValueDesc) -> String {
    let r = v.arena_range();
    format!("{}..{}", r.start, r.end)
}

/// A value's shape as a `Hwc`.
pub fn hwc(v: &ValueDesc) -> String {
    let [h, w, c] = v.shape;
    format!("qfd_runtime::kernels::Hwc::new({h}, {w}, {c})")
}

/// A window.
pub fn window(win: &Window) -> String {
    let p = win.padding;
    format!(
        "qfd_runtime::format::Window {{ kernel: {:?}, stride: {:?}, padding: qfd_runtime::format::Padding \
         {{ top: {}, left: {}, bottom: {}, right: {} }} }}",
        win.kernel, win.stride, p.top, p.left, p.bottom, p.right
    )
}

/// The shapes of a pool.
pub fn pool_geometry(input: &ValueDesc, out: &ValueDesc, win: &Window) -> String {
    format!(
        "qfd_runtime::kernels::PoolGeometry {{ input: {}, output: {}, window: {} }}",
        hwc(input),
        hwc(out),
        window(win)
    )
}

/// One set of requantization params.
pub fn requant(p: RequantParams) -> String {
    format!(
        "qfd_runtime::requant::RequantParams {{ offset: {}, multiplier: {}, shift: {} }}",
        p.offset, p.multiplier, p.shift
    )
}

/// A clamp.
pub fn clamp(c: Clamp) -> String {
    format!("qfd_runtime::format::Clamp {{ min: {}, max: {} }}", c.min, c.max)
}

/// A call: `path(\n args,\n ...)` laid out as generated code is.
pub fn call(path: &str, args: &[String]) -> String {
    let mut s = format!("{path}(\n");
    for a in args {
        s += &format!("            {a},\n");
    }
    s + "        )"
}
