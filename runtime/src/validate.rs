//! Load-time validation: every check the kernels rely on, done once.
//!
//! After [`validate`] succeeds, every index a kernel computes is in bounds, every accumulator fits `i32`, and
//! the arena plan never lets an op's output overwrite a value still needed.

use crate::error::LoadError;
use crate::format::{ElemType, FcOutput, ModelDesc, OpDesc, ValueDesc, Window, MAX_VALUES};
use crate::requant::{ChannelRequant, RequantParams, CHANNEL_RECORD_BYTES};
use crate::weights::{codes_per_byte, max_code, packed_len, PackedWeights};

const I32_MAX: u64 = i32::MAX as u64;

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
    max_abs[0] = value_max(&values[0], 0);
    for (i, op) in ops.iter().enumerate() {
        let at = i as u16;
        for input in op.inputs() {
            if input as usize > i {
                return Err(LoadError::BadInputRef { op: at });
            }
        }
        max_abs[i + 1] = check_op(at, op, values, &max_abs)?;
    }
    check_lifetimes(desc)?;
    let work = desc.ops.iter().enumerate().fold(0u64, |w, (i, op)| w.saturating_add(op_work(op, values, i)));
    if work > max_work {
        return Err(LoadError::TooMuchWork);
    }
    Ok(work)
}

/// Inner-loop steps of op `i`: every tap of every window (padding included, the kernels visit it), every
/// multiply-accumulate, every element. Shapes are validated, so each product fits `u64`.
fn op_work(op: &OpDesc<'_>, values: &[ValueDesc], i: usize) -> u64 {
    let out = &values[i + 1];
    let elems = |v: &ValueDesc| v.shape.iter().map(|&d| d as u64).product::<u64>();
    let taps = |w: &Window| w.kernel[0] as u64 * w.kernel[1] as u64;
    match op {
        OpDesc::Conv2d(c) => {
            let cin = values[c.input as usize].shape[2] as u64;
            // The patch sum visits each window once per group; the dot products once per output channel.
            let patch = taps(&c.window) * cin / c.groups as u64;
            elems(out) * patch + (elems(out) / out.shape[2] as u64) * taps(&c.window) * cin
        }
        OpDesc::FullyConnected(f) => elems(out) * elems(&values[f.input as usize]),
        OpDesc::Add(_) => elems(out),
        OpDesc::MaxPool(p) => elems(out) * taps(&p.window),
        OpDesc::AvgPool(p) => elems(out) * taps(&p.window),
        OpDesc::GlobalSumPool(p) => elems(&values[p.input as usize]),
    }
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

/// The largest code of a codes value, or the recorded bound of an i32 value.
fn value_max(v: &ValueDesc, i32_bound: u64) -> u64 {
    match v.elem {
        ElemType::Codes { bits } => max_code(bits) as u64,
        ElemType::I32 => i32_bound,
    }
}

/// Returns the bound on the magnitude of the op's output.
fn check_op(at: u16, op: &OpDesc<'_>, values: &[ValueDesc], max_abs: &[u64]) -> Result<u64, LoadError> {
    let out = &values[at as usize + 1];
    let mismatch = LoadError::ShapeMismatch { op: at };
    let overflow = LoadError::AccumulatorOverflow { op: at };
    let codes_in = |v: u16| -> Result<(&ValueDesc, u64), LoadError> {
        let value = &values[v as usize];
        match value.elem {
            ElemType::Codes { bits } => Ok((value, max_code(bits) as u64)),
            ElemType::I32 => Err(LoadError::WrongInputType { op: at }),
        }
    };
    let out_codes = || match out.elem {
        ElemType::Codes { bits } => Ok(bits),
        ElemType::I32 => Err(mismatch),
    };
    let [h, w, c] = out.shape.map(|d| d as usize);

    match op {
        OpDesc::Conv2d(conv) => {
            let (inp, in_max) = codes_in(conv.input)?;
            let [ih, iw, ic] = inp.shape.map(|d| d as usize);
            let groups = conv.groups as usize;
            if groups == 0 || ic % groups != 0 || c % groups != 0 {
                return Err(LoadError::BadGeometry { op: at });
            }
            let hw = conv.window.output_hw(ih, iw).ok_or(LoadError::BadGeometry { op: at })?;
            if hw != [h, w] {
                return Err(mismatch);
            }
            let bits = out_codes()?;
            check_clamp(at, conv.clamp.min, conv.clamp.max, bits)?;
            let taps = conv.window.kernel[0] as u64 * conv.window.kernel[1] as u64;
            let fan_in = taps * (ic / groups) as u64;
            check_weights(at, &conv.weights, c as u64 * fan_in)?;
            check_requant(at, &conv.requant, c)?;
            if fan_in * in_max * max_code(conv.weights.bits) as u64 > I32_MAX {
                return Err(overflow);
            }
            Ok(max_code(bits) as u64)
        }
        OpDesc::FullyConnected(fc) => {
            let inp = &values[fc.input as usize];
            let in_max = value_max(inp, max_abs[fc.input as usize]);
            if [h, w] != [1, 1] {
                return Err(mismatch);
            }
            let fan_in = inp.elems() as u64;
            check_weights(at, &fc.weights, c as u64 * fan_in)?;
            let max_offset = check_requant(at, &fc.requant, c)?;
            let acc_bound = fan_in * in_max * max_code(fc.weights.bits) as u64;
            match fc.output {
                FcOutput::Codes(clamp) => {
                    if acc_bound > I32_MAX {
                        return Err(overflow);
                    }
                    check_clamp(at, clamp.min, clamp.max, out_codes()?)?;
                    Ok(clamp.max as u64)
                }
                FcOutput::Logits if out.elem == ElemType::I32 => {
                    // The logit is `acc + offset`: the bound covers both, so no logit saturates.
                    let bound = acc_bound.saturating_add(max_offset);
                    if bound > I32_MAX {
                        return Err(overflow);
                    }
                    Ok(bound)
                }
                FcOutput::Logits => Err(mismatch),
            }
        }
        OpDesc::Add(add) => {
            let (a, a_max) = codes_in(add.inputs[0])?;
            let (b, b_max) = codes_in(add.inputs[1])?;
            if a.shape != out.shape || b.shape != out.shape {
                return Err(mismatch);
            }
            let bits = out_codes()?;
            check_clamp(at, add.clamp.min, add.clamp.max, bits)?;
            check_params(at, &add.requant)?;
            let [wa, wb] = add.input_weights.map(|x| x.unsigned_abs() as u64);
            if a_max * wa + b_max * wb > I32_MAX {
                return Err(overflow);
            }
            Ok(max_code(bits) as u64)
        }
        OpDesc::MaxPool(pool) => {
            let (inp, _) = codes_in(pool.input)?;
            check_pool_shape(at, &pool.window, inp, out)?;
            if inp.elem != out.elem {
                return Err(LoadError::BadGeometry { op: at });
            }
            Ok(value_max(out, 0))
        }
        OpDesc::AvgPool(pool) => {
            let (inp, in_max) = codes_in(pool.input)?;
            check_pool_shape(at, &pool.window, inp, out)?;
            let bits = out_codes()?;
            check_clamp(at, pool.clamp.min, pool.clamp.max, bits)?;
            check_params(at, &pool.requant)?;
            let taps = pool.window.kernel[0] as u64 * pool.window.kernel[1] as u64;
            if taps * in_max > I32_MAX {
                return Err(overflow);
            }
            Ok(max_code(bits) as u64)
        }
        OpDesc::GlobalSumPool(pool) => {
            let (inp, in_max) = codes_in(pool.input)?;
            if out.elem != ElemType::I32 || [h, w, c] != [1, 1, inp.shape[2] as usize] {
                return Err(mismatch);
            }
            let bound = (inp.shape[0] as u64 * inp.shape[1] as u64) * in_max;
            if bound > I32_MAX {
                return Err(overflow);
            }
            Ok(bound)
        }
    }
}

fn check_pool_shape(at: u16, window: &Window, inp: &ValueDesc, out: &ValueDesc) -> Result<(), LoadError> {
    let hw = window
        .output_hw(inp.shape[0] as usize, inp.shape[1] as usize)
        .ok_or(LoadError::BadGeometry { op: at })?;
    if hw != [out.shape[0] as usize, out.shape[1] as usize] || inp.shape[2] != out.shape[2] {
        return Err(LoadError::ShapeMismatch { op: at });
    }
    Ok(())
}

fn check_clamp(at: u16, min: u8, max: u8, bits: u8) -> Result<(), LoadError> {
    if min > max || max as i32 > max_code(bits) {
        return Err(LoadError::BadClamp { op: at });
    }
    Ok(())
}

fn check_weights(at: u16, weights: &PackedWeights<'_>, count: u64) -> Result<(), LoadError> {
    if !(1..=8).contains(&weights.bits) {
        return Err(LoadError::WeightBits { op: at });
    }
    if weights.data.len() as u64 != (count as u128).div_ceil(codes_per_byte(weights.bits) as u128) as u64 {
        return Err(LoadError::WeightData { op: at });
    }
    debug_assert_eq!(weights.data.len(), packed_len(count as usize, weights.bits));
    // Byte-container widths below 8 could hold codes past 2^bits - 1, which would break the overflow proof.
    if codes_per_byte(weights.bits) == 1 && weights.bits < 8 {
        let max = max_code(weights.bits) as u8;
        if weights.data.iter().any(|&k| k > max) {
            return Err(LoadError::WeightData { op: at });
        }
    }
    Ok(())
}

/// Checks length, shifts and offsets; returns the largest `|offset|` (at most `MAX_OFFSET`).
fn check_requant(at: u16, requant: &ChannelRequant<'_>, channels: usize) -> Result<u64, LoadError> {
    if requant.records.len() as u64 != channels as u64 * CHANNEL_RECORD_BYTES as u64 {
        return Err(LoadError::RequantLength { op: at });
    }
    let mut max_offset = 0u64;
    for p in requant.iter() {
        check_params(at, &p)?;
        max_offset = max_offset.max(p.offset.unsigned_abs());
    }
    Ok(max_offset)
}

/// The shift lies in `[MIN_SHIFT, MAX_SHIFT]` and `|offset| <= MAX_OFFSET`, so `requantize` cannot overflow.
fn check_params(at: u16, p: &RequantParams) -> Result<(), LoadError> {
    if !p.is_valid() {
        Err(LoadError::ShiftOutOfRange { op: at })
    } else if !p.offset_in_range() {
        Err(LoadError::OffsetOutOfRange { op: at })
    } else {
        Ok(())
    }
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
