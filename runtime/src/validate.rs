//! Load-time validation: every check the kernels rely on, done once.
//!
//! After [`validate`] succeeds, every index a kernel computes is in bounds, every accumulator fits `i32`, and
//! the arena plan never lets an op's output overwrite a value still needed. The model-wide checks are here;
//! each op's own are in its module of [`crate::ops`] ([`crate::ops::Op::check`]).

use crate::error::LoadError;
use crate::format::{ElemType, ModelDesc, ValueDesc, MAX_VALUES};
use crate::ops::OpValues;
use crate::weights::{codes_per_byte, max_code};

/// Checks a decoded model (see the module docs) and returns the work of one inference: the number of
/// inner-loop steps (multiply-accumulates, window taps, element visits) the kernels will take, refusing a
/// model whose work exceeds `max_work`.
pub(crate) fn validate(desc: &ModelDesc<'_>, max_work: u64) -> Result<u64, LoadError> {
    let (values, ops) = (&desc.values, &desc.ops);
    if ops.is_empty() {
        return Err(LoadError::BadOutput);
    }
    if values.len() != ops.len() + 1 {
        return Err(LoadError::ValueCount);
    }
    for (i, v) in values.iter().enumerate() {
        check_value(i as u16, v, desc.arena_bytes)?;
    }
    if !matches!(values[0].elem, ElemType::Codes { .. }) {
        return Err(LoadError::BadOutput);
    }
    let last = values[values.len() - 1];
    if last.elem != ElemType::I32 || last.shape[0] != 1 || last.shape[1] != 1 {
        return Err(LoadError::BadOutput);
    }
    check_specs(desc)?;

    // Largest magnitude each value can hold: a code's maximum, or a proven bound for i32 values.
    let mut max_abs = [0u64; MAX_VALUES];
    if let ElemType::Codes { bits } = values[0].elem {
        max_abs[0] = max_code(bits) as u64;
    }
    for (i, op) in ops.iter().enumerate() {
        let at = i as u16;
        for input in op.inputs() {
            if input as usize > i {
                return Err(LoadError::BadInputRef { op: at });
            }
        }
        max_abs[i + 1] = op.check(at, OpValues { values, index: i }, &max_abs)?;
    }
    check_lifetimes(desc)?;
    let work = desc
        .ops
        .iter()
        .enumerate()
        .fold(0u64, |w, (i, op)| w.saturating_add(op.work(OpValues { values, index: i })));
    if work > max_work {
        return Err(LoadError::TooMuchWork);
    }
    Ok(work)
}

fn check_specs(desc: &ModelDesc<'_>) -> Result<(), LoadError> {
    let channels = desc.values[0].shape[2] as usize;
    let classes = desc.values[desc.values.len() - 1].shape[2] as usize;
    let norm_ok = |v: &[f32]| v.is_empty() || v.len() == channels;
    let names = desc.output.class_names;
    let names_ok = names.is_empty() || names.split('\n').count() == classes;
    if norm_ok(&desc.input.mean) && norm_ok(&desc.input.std) && names_ok {
        Ok(())
    } else {
        Err(LoadError::BadSpec)
    }
}

fn check_value(index: u16, v: &ValueDesc, arena_bytes: u32) -> Result<(), LoadError> {
    let bad = LoadError::BadValue { value: index };
    if v.shape.contains(&0) {
        return Err(bad);
    }
    if let ElemType::Codes { bits } = v.elem {
        if !(1..=8).contains(&bits) {
            return Err(bad);
        }
    }
    // In `u64`: three 16-bit dimensions can exceed a 32-bit `usize` (`ElemType::bytes` in wide integers).
    let elems = v.shape.iter().map(|&d| d as u64).product::<u64>();
    let bytes = match v.elem {
        ElemType::Codes { bits } => elems.div_ceil(codes_per_byte(bits) as u64),
        ElemType::I32 => 4 * elems,
    };
    if v.arena_offset as u64 + bytes > arena_bytes as u64 {
        return Err(LoadError::ValueOutsideArena { value: index });
    }
    Ok(())
}

/// Two values whose lifetimes overlap must not share arena bytes.
///
/// Time `t` is "before op `t`" for the input (`t = 0`) and "op `t - 1` runs" otherwise: value `v` is born at
/// time `v` and lives until the last op reading it runs; the output lives to the end.
fn check_lifetimes(desc: &ModelDesc<'_>) -> Result<(), LoadError> {
    let n = desc.values.len();
    let mut death = [0usize; MAX_VALUES];
    for (v, d) in death.iter_mut().enumerate().take(n) {
        *d = v;
    }
    for (i, op) in desc.ops.iter().enumerate() {
        for input in op.inputs() {
            death[input as usize] = death[input as usize].max(i + 1);
        }
    }
    death[n - 1] = n;
    for (a, &death_a) in death.iter().enumerate().take(n) {
        for b in a + 1..n {
            // b is born at time b > a, so they overlap in time when a is still alive then.
            if death_a < b {
                continue;
            }
            let (va, vb) = (&desc.values[a], &desc.values[b]);
            let (sa, sb) = (va.arena_offset as u64, vb.arena_offset as u64);
            if sa < sb + vb.bytes() as u64 && sb < sa + va.bytes() as u64 {
                return Err(LoadError::ArenaOverlap { first: a as u16, second: b as u16 });
            }
        }
    }
    Ok(())
}
