//! One kernel call per op, with its constants.

use std::fmt::Write as _;

use qfd_runtime::codes::codes_per_byte;
use qfd_runtime::format::{Clamp, ElemType, FcOutput, OpDesc, ValueDesc, Window};
use qfd_runtime::requant::RequantParams;

use super::bytes::write_static;
use super::range;

/// The `static` weight and requantization tables of op `i`, if it has any.
pub fn emit_data(w: &mut String, i: usize, op: &OpDesc<'_>) {
    let (weights, requant) = match op {
        OpDesc::Conv2d(c) => (c.weights, c.requant),
        OpDesc::FullyConnected(f) => (f.weights, f.requant),
        OpDesc::Add(_) | OpDesc::MaxPool(_) | OpDesc::AvgPool(_) | OpDesc::GlobalSumPool(_) => return,
    };
    let doc = format!("Layer {i} ({}): {}-bit weight codes, packed.", op.kind(), weights.bits);
    write_static(w, &doc, &format!("W{i}"), weights.data);
    let doc = format!("Layer {i}: requantization records, one per output channel.");
    write_static(w, &doc, &format!("R{i}"), requant.records);
    w.push('\n');
}

/// The statements that run op `i`, reading and writing the arena at the planned offsets, then tracing.
pub fn emit_call(w: &mut String, i: usize, op: &OpDesc<'_>, values: &[ValueDesc]) {
    let out = &values[i + 1];
    let bytes = |v: u16| format!("reader.get({})", range(&values[v as usize]));
    let input = |v: u16| format!("qfd_runtime::Codes::new({}, {})", bytes(v), code_bits(&values[v as usize]));
    let out_codes = format!("qfd_runtime::CodesMut::new(out, {})", code_bits(out));
    let _ = writeln!(w, "    // Layer {i}: {} -> {}", op.kind(), shape(out));
    let _ =
        writeln!(w, "    {{\n        let (reader, out) = qfd_runtime::arena::split(arena, {});", range(out));
    let call = match op {
        OpDesc::Conv2d(c) => format!(
            "qfd_runtime::kernels::conv2d(\n            {},\n            &qfd_runtime::kernels::ConvGeometry {{ \
             input: {}, output: {}, window: {}, groups: {}, input_bits: {} }},\n            {},\n            {},\n            \
             {},\n            {out_codes},\n            scratch,\n        )",
            input(c.input),
            hwc(&values[c.input as usize]),
            hwc(out),
            window(&c.window),
            c.groups,
            code_bits(&values[c.input as usize]),
            weights(i, c.weights.bits),
            requant_table(i),
            clamp(c.clamp)
        ),
        OpDesc::FullyConnected(f) => {
            let source = match values[f.input as usize].elem {
                ElemType::Codes { .. } => {
                    format!("Codes {{ codes: {}, len: {} }}", input(f.input), values[f.input as usize].elems())
                }
                ElemType::I32 => format!("SumsLe({})", bytes(f.input)),
            };
            let kind = match f.output {
                FcOutput::Codes(c) => format!("qfd_runtime::format::FcOutput::Codes({})", clamp(c)),
                FcOutput::Logits => "qfd_runtime::format::FcOutput::Logits".into(),
            };
            format!(
                "qfd_runtime::kernels::fully_connected(\n            qfd_runtime::kernels::FcInput::{source},\n            \
                 {},\n            {},\n            {kind},\n            {},\n            {},\n            out,\n        )",
                weights(i, f.weights.bits),
                requant_table(i),
                out.shape[2],
                code_bits(out)
            )
        }
        OpDesc::Add(a) => format!(
            "qfd_runtime::kernels::add(\n            {},\n            {},\n            {},\n            [{}, {}],\n            \
             {},\n            {},\n            {out_codes},\n        )",
            input(a.inputs[0]),
            input(a.inputs[1]),
            out.elems(),
            a.input_weights[0],
            a.input_weights[1],
            requant(a.requant),
            clamp(a.clamp)
        ),
        OpDesc::MaxPool(p) => format!(
            "qfd_runtime::kernels::max_pool({}, &{}, {out_codes})",
            input(p.input),
            pool_geometry(&values[p.input as usize], out, &p.window)
        ),
        OpDesc::AvgPool(p) => format!(
            "qfd_runtime::kernels::avg_pool(\n            {},\n            &{},\n            {},\n            {},\n            \
             {out_codes},\n        )",
            input(p.input),
            pool_geometry(&values[p.input as usize], out, &p.window),
            requant(p.requant),
            clamp(p.clamp)
        ),
        OpDesc::GlobalSumPool(p) => format!(
            "qfd_runtime::kernels::global_sum_pool({}, {}, out)",
            input(p.input),
            hwc(&values[p.input as usize])
        ),
    };
    let traced = match out.elem {
        ElemType::Codes { bits } => format!("Codes(qfd_runtime::Codes::new(out, {bits}))"),
        ElemType::I32 => "I32Le(out)".into(),
    };
    if let ElemType::Codes { bits } = out.elem {
        // A packed tensor whose last byte is not full: clear its unused bits, as the interpreter does.
        if !out.elems().is_multiple_of(codes_per_byte(bits)) {
            let _ = writeln!(w, "        qfd_runtime::codes::clear_unused(out, {}, {bits});", out.elems());
        }
    }
    let _ = writeln!(w, "        {call};\n        trace({i}, qfd_runtime::LayerOutput::{traced});\n    }}");
}

fn shape(v: &ValueDesc) -> String {
    let [h, w, c] = v.shape;
    let elem = match v.elem {
        ElemType::Codes { bits } => format!("{bits}-bit codes"),
        ElemType::I32 => "i32".into(),
    };
    format!("{h}x{w}x{c} {elem}")
}

fn hwc(v: &ValueDesc) -> String {
    let [h, w, c] = v.shape;
    format!("qfd_runtime::kernels::Hwc::new({h}, {w}, {c})")
}

fn window(win: &Window) -> String {
    let p = win.padding;
    format!(
        "qfd_runtime::format::Window {{ kernel: {:?}, stride: {:?}, padding: qfd_runtime::format::Padding \
         {{ top: {}, left: {}, bottom: {}, right: {} }} }}",
        win.kernel, win.stride, p.top, p.left, p.bottom, p.right
    )
}

fn pool_geometry(input: &ValueDesc, out: &ValueDesc, win: &Window) -> String {
    format!(
        "qfd_runtime::kernels::PoolGeometry {{ input: {}, output: {}, window: {} }}",
        hwc(input),
        hwc(out),
        window(win)
    )
}

fn weights(i: usize, bits: u8) -> String {
    format!("qfd_runtime::weights::PackedWeights {{ bits: {bits}, data: &W{i} }}")
}

fn requant_table(i: usize) -> String {
    format!("qfd_runtime::requant::ChannelRequant {{ records: &R{i} }}")
}

fn requant(p: RequantParams) -> String {
    format!(
        "qfd_runtime::requant::RequantParams {{ offset: {}, multiplier: {}, shift: {} }}",
        p.offset, p.multiplier, p.shift
    )
}

fn clamp(c: Clamp) -> String {
    format!("qfd_runtime::format::Clamp {{ min: {}, max: {} }}", c.min, c.max)
}

/// Bit-width of a value's codes (8 for `i32` values, which no kernel reads as codes).
pub(super) fn code_bits(v: &ValueDesc) -> u8 {
    match v.elem {
        ElemType::Codes { bits } => bits,
        ElemType::I32 => 8,
    }
}
