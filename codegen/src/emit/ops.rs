//! One kernel call per op, with its constants: the frame around it (arena ranges, tracing) is here, the
//! call itself comes from the op's module in `qfd_runtime::ops`.

use std::fmt::Write as _;

use qfd_runtime::codes::codes_per_byte;
use qfd_runtime::format::{ElemType, OpDesc, ValueDesc};
use qfd_runtime::ops::emit::{range, EmitCx};

use super::bytes::write_static;

/// The `static` tables of op `i` (weights, requantization records, ...), if it has any.
pub fn emit_data(w: &mut String, i: usize, op: &OpDesc<'_>) {
    let tables = op.tables();
    for table in &tables {
        let bits =
            op.weight_bits().filter(|_| table.tag == "W").map(|b| format!(", {b}-bit")).unwrap_or_default();
        let doc = format!("Layer {i} ({}): {}{bits}.", op.kind(), table.what);
        write_static(w, &doc, &format!("{}{i}", table.tag), table.bytes);
    }
    if !tables.is_empty() {
        w.push('\n');
    }
}

/// The statements that run op `i`, reading and writing the arena at the planned offsets, then tracing.
/// The kernel call itself is the op's own ([`OpDesc::emit_call`]).
pub fn emit_call(w: &mut String, i: usize, op: &OpDesc<'_>, values: &[ValueDesc]) {
    let out = &values[i + 1];
    let _ = writeln!(w, "    // Layer {i}: {} -> {}", op.kind(), shape(out));
    let _ =
        writeln!(w, "    {{\n        let (reader, out) = qfd_runtime::arena::split(arena, {});", range(out));
    let call = op.emit_call(&EmitCx { index: i, values });
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
