//! Element-wise ops.

use crate::codes::{storage_bits, CodeWriter, Codes, CodesMut};
use crate::format::Clamp;
use crate::requant::{requantize_to_code, ChannelRequant, RequantParams};

/// Residual add: `out[i] = clamp(requant(a[i] * weights[0] + b[i] * weights[1]))`.
///
/// Each branch keeps its own scale through its integer weight; both constant terms live in `requant.offset`.
/// `a`, `b` and `out` hold `len` codes each (of their own bit-widths).
pub fn add(
    a: Codes<'_>,
    b: Codes<'_>,
    len: usize,
    weights: [i32; 2],
    requant: RequantParams,
    clamp: Clamp,
    mut out: CodesMut<'_>,
) {
    let code = AddCode { weights, requant, clamp };
    // The usual cases, a byte at a time: all three tensors stored alike.
    let sb = storage_bits(out.bits());
    if storage_bits(a.bits()) == sb && storage_bits(b.bits()) == sb {
        let (a, b) = (a.bytes(), b.bytes());
        let out = out.bytes_mut();
        match sb {
            8 => {
                let (a, b, out) = (&a[..len], &b[..len], &mut out[..len]);
                for (i, (&x, &y)) in a.iter().zip(b).enumerate() {
                    out[i] = code.of(x, y);
                }
            }
            4 => add_bytes::<4>(a, b, len, out, &code),
            2 => add_bytes::<2>(a, b, len, out, &code),
            _ => add_bytes::<1>(a, b, len, out, &code),
        }
        return;
    }
    let mut w = CodeWriter::new(&out, 0);
    add_accumulate(a, b, len, weights, |_, acc| {
        w.push(&mut out, requantize_to_code(acc, requant, clamp.min, clamp.max))
    });
    w.finish(&mut out);
}

/// One output code of [`add`].
struct AddCode {
    weights: [i32; 2],
    requant: RequantParams,
    clamp: Clamp,
}

impl AddCode {
    #[inline(always)]
    fn of(&self, x: u8, y: u8) -> u8 {
        let acc = x as i32 * self.weights[0] + y as i32 * self.weights[1];
        requantize_to_code(acc, self.requant, self.clamp.min, self.clamp.max)
    }
}

/// [`add`] of three tensors packed at `SB` bits a code: each byte of `a` and `b` gives one byte of `out`.
/// The last byte keeps its unused bits.
#[inline(always)]
fn add_bytes<const SB: u32>(a: &[u8], b: &[u8], len: usize, out: &mut [u8], code: &AddCode) {
    let (per, mask) = ((8 / SB) as usize, (1u8 << SB) - 1);
    let bytes = len.div_ceil(per);
    for (i, ((o, &x), &y)) in out[..bytes].iter_mut().zip(&a[..bytes]).zip(&b[..bytes]).enumerate() {
        let mut v = 0u8;
        for j in 0..per {
            let shift = j as u32 * SB;
            v |= code.of((x >> shift) & mask, (y >> shift) & mask) << shift;
        }
        let used = len - i * per;
        if used < per {
            // The last, partly used byte: only its first `used` codes are the op's.
            let keep = !((1u8 << (used as u32 * SB)) - 1);
            v = (*o & keep) | (v & !keep);
        }
        *o = v;
    }
}

/// The accumulators of [`add`] before requantization: calls `emit(i, a[i] * weights[0] + b[i] * weights[1])`.
#[inline]
pub fn add_accumulate(
    a: Codes<'_>,
    b: Codes<'_>,
    len: usize,
    weights: [i32; 2],
    mut emit: impl FnMut(usize, i32),
) {
    // Packed codes are read in order, a byte load per byte of codes.
    let (mut xs, mut ys) = (a.iter_from(0), b.iter_from(0));
    for i in 0..len {
        let (Some(x), Some(y)) = (xs.next(), ys.next()) else { return };
        emit(i, x as i32 * weights[0] + y as i32 * weights[1]);
    }
}

/// Residual add with a scale per channel: `out = clamp(requant_c((a << shifts[0][c]) * weights[0] +
/// (b << shifts[1][c]) * weights[1]))` over `len` codes of `channels` channels. A transformer's residual
/// stream is coded with power-of-two factors per channel, which the shifts apply; an empty shift table
/// means no shift. Each channel's constant terms are in its own record.
#[allow(clippy::too_many_arguments)]
pub fn channel_add(
    a: Codes<'_>,
    b: Codes<'_>,
    len: usize,
    channels: usize,
    weights: [i32; 2],
    shifts: [&[u8]; 2],
    requant: ChannelRequant<'_>,
    clamp: Clamp,
    mut out: CodesMut<'_>,
) {
    channel_add_accumulate(a, b, len, channels, weights, shifts, |i, acc| {
        out.set(i, requantize_to_code(acc, requant.get(i % channels), clamp.min, clamp.max));
    });
}

/// The accumulators of [`channel_add`] before requantization.
pub fn channel_add_accumulate(
    a: Codes<'_>,
    b: Codes<'_>,
    len: usize,
    channels: usize,
    weights: [i32; 2],
    shifts: [&[u8]; 2],
    mut emit: impl FnMut(usize, i32),
) {
    let shift = |table: &[u8], c: usize| table.get(c).copied().unwrap_or(0);
    for i in 0..len {
        let c = i % channels;
        let x = (a.get(i) as i32) << shift(shifts[0], c);
        let y = (b.get(i) as i32) << shift(shifts[1], c);
        emit(i, x * weights[0] + y * weights[1]);
    }
}

/// Element-wise table lookup: `out[i] = table[x[i]]` (a GELU, or any function of one code). `table` has
/// one entry per input code (validation checks it); a code past a shorter table reads 0.
pub fn lookup(x: Codes<'_>, len: usize, table: &[u8], mut out: CodesMut<'_>) {
    for i in 0..len {
        out.set(i, table.get(x.get(i) as usize).copied().unwrap_or(0));
    }
}
