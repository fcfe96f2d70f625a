//! [`super::super::to_code`] on Helium: the accumulators of a pixel pair to codes, four channels an
//! instruction, bit for bit as [`ToCode::apply`](crate::requant::ToCode::apply) computes them.
//!
//! Per four channels of one pixel: the odd-grid combine `2 * sum(x * k) - c * sum(x)` (`VSHL`, `VSUB`);
//! the 64-bit `acc * multiplier + offset` as two words, the low one from `VMUL` plus the offset's low word,
//! the high one from `VMULH` plus the offset's high word and the carry out of the low one (a predicated
//! `VADD`); the rounding shift (`VRSHL` by the channel's negated shift, which rounds half up exactly as
//! the scalar form's "last bit shifted out" does); the clamp to `0..2^b` as a saturating shift up by
//! `32 - b` and a plain shift back down; a narrowing byte store. Ten instructions per four outputs, where
//! the scalar form takes about twice as many per output with its loads and loop. There is no ties-away
//! bias: it only moves negative sums, which round to 0 or below and so clamp to code 0 either way.
//!
//! The residual add ([`add`]) requantizes the same way, with one set of parameters for the tensor.
//!
//! The usual case only: every channel's divisor above `2^32` (scales below `2^-1`) and a clamp that is a
//! whole code range. [`channel_vectors`] says when a layer is not, and the caller then takes the scalar
//! form.
#![allow(unsafe_code)]

use crate::codes::{Codes, CodesMut};
use crate::format::Clamp;
use crate::requant::{ChannelRequant, RequantParams};

/// Lays out the requantization of channels `0..channels` for [`codes_2px`] in `params` (at least
/// `16 * channels.div_ceil(4)` words): per block of four channels, their multipliers, the low and the high
/// words of their offsets, and their negated rounding shifts `32 - n` for the divisor `2^n`, four words
/// each. Returns whether every channel is the usual case (a divisor above `2^32`); when not, `params`
/// means nothing.
pub fn channel_vectors(requant: ChannelRequant<'_>, channels: usize, params: &mut [u32]) -> bool {
    channel_vectors_by(requant, channels, 4 * channels.div_ceil(4), params, |slot| slot)
}

/// [`channel_vectors`] with the channels in another order: lane `j` of block `v` holds channel
/// `channel_of(4 * v + j)`, for `slots` lanes in all (those whose channel is `channels` or more are left
/// as they are).
pub fn channel_vectors_by(
    requant: ChannelRequant<'_>,
    channels: usize,
    slots: usize,
    params: &mut [u32],
    channel_of: impl Fn(usize) -> usize,
) -> bool {
    for slot in 0..slots {
        let c = channel_of(slot);
        if c >= channels {
            continue;
        }
        let p = requant.get(c);
        // `n - 32` for the divisor `2^n = 2^(31 - shift)`: at least 1 in the usual case, at most 30.
        let shift1 = -1 - p.shift as i32;
        if shift1 < 1 {
            return false;
        }
        let (block, lane) = (16 * (slot / 4), slot % 4);
        params[block + lane] = p.multiplier as u32;
        params[block + 4 + lane] = p.offset as u32;
        params[block + 8 + lane] = (p.offset >> 32) as u32;
        params[block + 12 + lane] = -shift1 as u32;
    }
    true
}

/// The width `b` of a clamp that is a whole code range `0..=2^b - 1` with `b` in 1, 2, 4 or 8 (the code
/// widths [`codes_2px`] clamps to), or `None`.
pub fn whole_range_bits(clamp: Clamp) -> Option<u32> {
    let bits = (clamp.max as u32 + 1).trailing_zeros();
    let whole = clamp.min == 0 && clamp.max as u32 + 1 == 1 << bits;
    (whole && matches!(bits, 1 | 2 | 4 | 8)).then_some(bits)
}

/// Codes of the channels whose sums are in `sums` (each channel's at pixel A, then each at pixel B: `2 * n`
/// sums for `n` channels) into `out_a` and `out_b` (`n` bytes each), with `params` from
/// [`channel_vectors`] and the clamp `0..=2^bits - 1` ([`whole_range_bits`]). `grid[p]` is the odd-grid
/// term `c * sum(x)` of pixel `p`: accumulators are `2 * sum - grid[p]`.
pub fn codes_2px(
    sums: &[i32],
    params: &[u32],
    grid: [i32; 2],
    bits: u32,
    out_a: &mut [u8],
    out_b: &mut [u8],
) {
    let n = sums.len() / 2;
    assert!(out_a.len() == n && out_b.len() == n && params.len() >= 16 * n.div_ceil(4));
    if n == 0 {
        return;
    }
    match bits {
        1 => codes_loop::<31>(sums, params, grid, out_a, out_b),
        2 => codes_loop::<30>(sums, params, grid, out_a, out_b),
        4 => codes_loop::<28>(sums, params, grid, out_a, out_b),
        _ => codes_loop::<24>(sums, params, grid, out_a, out_b),
    }
}

/// Codes per output byte when the vector loop packs them ([`codes_2px_stored`]) for a clamp
/// `0..2^clamp_bits`, outputs of `output_bits` and `channels` channels: 4-bit codes of an even number of
/// channels, 2-bit ones of a multiple of four, so that every pixel starts on a byte; else `None`.
pub fn packing(clamp_bits: u32, output_bits: u8, channels: usize) -> Option<usize> {
    match (clamp_bits, crate::codes::storage_bits(output_bits)) {
        (4, 4) if channels % 2 == 0 => Some(2),
        (2, 2) if channels % 4 == 0 => Some(4),
        _ => None,
    }
}

/// [`codes_2px`] into outputs that store `per` codes a byte: 1 (a byte each), 2 (4-bit codes,
/// [`codes_2px_nibbles`]) or 4 (2-bit codes, [`codes_2px_crumbs`]).
pub fn codes_2px_stored(
    per: usize,
    sums: &[i32],
    params: &[u32],
    grid: [i32; 2],
    bits: u32,
    out_a: &mut [u8],
    out_b: &mut [u8],
) {
    match per {
        2 => codes_2px_nibbles(sums, params, grid, out_a, out_b),
        4 => codes_2px_crumbs(sums, params, grid, out_a, out_b),
        _ => codes_2px(sums, params, grid, bits, out_a, out_b),
    }
}

/// Loads the next block's requantization from `{p}` (laid out by [`channel_vectors`]) into `q2`-`q5`, where
/// [`requant_vector!`] reads it, advancing `{p}`.
macro_rules! requant_params {
    () => {
        concat!(
            "vldrw.u32 q2, [{p}], #16\n",
            "vldrw.u32 q3, [{p}], #16\n",
            "vldrw.u32 q4, [{p}], #16\n",
            "vldrw.u32 q5, [{p}], #16\n",
        )
    };
}

/// The requantization of the accumulators in `$q` (with `q2`-`q5` holding the block's multipliers, offset
/// words and shifts, `q6`, `q7` free, `{one}` holding 1) to codes in `$q`, then, given `$out`, stored
/// there a byte each: see the module documentation. `{sat}` is `32 - b`.
macro_rules! requant_vector {
    ($q:literal, $out:literal) => {
        concat!(requant_vector!($q), "vstrb.32 ", $q, ", [", $out, "], #4\n")
    };
    ($q:literal) => {
        concat!(
            "vmul.i32 q6, ",
            $q,
            ", q2\n",
            "vmulh.s32 ",
            $q,
            ", ",
            $q,
            ", q2\n",
            // Low word of the sum; it carried out where it came out below the offset's low word.
            "vadd.i32 q7, q6, q3\n",
            "vpt.u32 hi, q3, q7\n",
            "vaddt.i32 ",
            $q,
            ", ",
            $q,
            ", {one}\n",
            "vadd.i32 ",
            $q,
            ", ",
            $q,
            ", q4\n",
            "vrshl.s32 ",
            $q,
            ", ",
            $q,
            ", q5\n",
            "vqshlu.s32 ",
            $q,
            ", ",
            $q,
            ", #{sat}\n",
            "vshr.u32 ",
            $q,
            ", ",
            $q,
            ", #{sat}\n",
        )
    };
}

/// The loop of [`codes_2px`] and its packing forms: per four channels, both pixels' sums (`{sa}`,
/// `{sb}`) and the block's parameters (`{p}`) loaded, the odd-grid combine, both vectors requantized into
/// `q0` (pixel A) and `q1` (pixel B), then `$store` (templates) writes them through `r0` (pixel A's output)
/// and `r1` (pixel B's). `$sat` is `32 - b`; `$($extra)*` adds the operands `$store` uses.
macro_rules! pixel_pair_codes {
    ($sums:expr, $params:expr, $grid:expr, $out_a:expr, $out_b:expr, $sat:expr, [$($store:expr),*] $($extra:tt)*) => {{
        let n = $sums.len() / 2;
        asm_all_q!({
            "dlstp.32 lr, {n}",
            "2:",
            "vldrw.u32 q0, [{sa}], #16",
            "vldrw.u32 q1, [{sb}], #16",
            requant_params!(),
            "vshl.i32 q0, q0, #1",
            "vsub.i32 q0, q0, {ga}",
            "vshl.i32 q1, q1, #1",
            "vsub.i32 q1, q1, {gb}",
            requant_vector!("q0"),
            requant_vector!("q1"),
            $($store,)*
            "letp lr, 2b",
            n = in(reg) n,
            sa = inout(reg) $sums.as_ptr() => _,
            sb = inout(reg) $sums[n..].as_ptr() => _,
            p = inout(reg) $params.as_ptr() => _,
            // (Narrowing stores take a low register as their base.)
            inout("r0") $out_a.as_mut_ptr() => _,
            inout("r1") $out_b.as_mut_ptr() => _,
            ga = in(reg) $grid[0],
            gb = in(reg) $grid[1],
            one = in(reg) 1u32,
            sat = const $sat,
            $($extra)*
            out("lr") _,
        } options(nostack))
    }};
}

/// [`codes_2px`] with the clamp as `SAT = 32 - b`.
fn codes_loop<const SAT: u32>(
    sums: &[i32],
    params: &[u32],
    grid: [i32; 2],
    out_a: &mut [u8],
    out_b: &mut [u8],
) {
    // SAFETY: the tail-predicated loop runs over `n = out_a.len()` lanes: it reads `n` sums from each half
    // of `sums` (`VLDRW`, word-aligned as `i32`s are) and four words of `params` per block of four channels
    // (the caller's assert bounds both), and writes `n` bytes to each of `out_a` and `out_b` (`VSTRB.32`);
    // it also writes the pointers it advances (copies), `lr` and `q0`-`q7`, all declared.
    unsafe {
        pixel_pair_codes!(
            sums,
            params,
            grid,
            out_a,
            out_b,
            SAT,
            ["vstrb.32 q0, [r0], #4", "vstrb.32 q1, [r1], #4"]
        )
    }
}

/// [`codes_2px`] at 4 bits into packed outputs: `out_a` and `out_b` hold `n / 2` bytes each, channel `2j`'s
/// code low in byte `j`, channel `2j + 1`'s high (`n` even). Each vector's four codes are shifted into
/// place (`VSHL` by 0, 4, 0, 4), or-ed with their neighbours (`VREV64`), and stored two bytes by a scatter
/// that writes each byte twice.
pub fn codes_2px_nibbles(sums: &[i32], params: &[u32], grid: [i32; 2], out_a: &mut [u8], out_b: &mut [u8]) {
    let n = sums.len() / 2;
    assert!(n % 2 == 0 && out_a.len() == n / 2 && out_b.len() == n / 2 && params.len() >= 16 * n.div_ceil(4));
    if n == 0 {
        return;
    }
    // The shifts, then the scatter's byte offsets.
    static PACKING: [u32; 8] = [0, 4, 0, 4, 0, 0, 1, 1];
    // SAFETY: as in `codes_loop`, except the stores: per pass a scatter to bytes 0 and 1 after each output
    // pointer (a predicated lane writes only where its channel `< n`, so only the `n / 2` bytes of each
    // output), which then advances by 2; `PACKING` is read whole.
    unsafe {
        pixel_pair_codes!(
            sums,
            params,
            grid,
            out_a,
            out_b,
            28,
            [
                "vldrw.u32 q6, [{k}]",
                "vshl.u32 q0, q0, q6",
                "vshl.u32 q1, q1, q6",
                "vrev64.32 q6, q0",
                "vorr q0, q0, q6",
                "vrev64.32 q6, q1",
                "vorr q1, q1, q6",
                "vldrw.u32 q7, [{k}, #16]",
                "vstrb.32 q0, [r0, q7]",
                "vstrb.32 q1, [r1, q7]",
                "adds r0, #2",
                "adds r1, #2"
            ]
            k = in(reg) PACKING.as_ptr(),
        )
    }
}

/// [`codes_2px`] at 2 bits into packed outputs: `out_a` and `out_b` hold `n / 4` bytes each, channel `4j +
/// i`'s code at bits `2i` of byte `j` (`n` a multiple of 4). Each vector's four codes are shifted into place
/// (`VSHL` by 0, 2, 4, 6) and added across the vector (`VADDV`: the fields do not overlap) into one byte.
pub fn codes_2px_crumbs(sums: &[i32], params: &[u32], grid: [i32; 2], out_a: &mut [u8], out_b: &mut [u8]) {
    let n = sums.len() / 2;
    assert!(n % 4 == 0 && out_a.len() == n / 4 && out_b.len() == n / 4 && params.len() >= 16 * n.div_ceil(4));
    if n == 0 {
        return;
    }
    static SHIFTS: [u32; 4] = [0, 2, 4, 6];
    // SAFETY: as in `codes_loop`, except the stores: one byte a pass after each output pointer (`n / 4`
    // passes, so `n / 4` bytes of each output); `SHIFTS` is read whole.
    unsafe {
        pixel_pair_codes!(
            sums,
            params,
            grid,
            out_a,
            out_b,
            30,
            [
                "vldrw.u32 q6, [{k}]",
                "vshl.u32 q0, q0, q6",
                "vshl.u32 q1, q1, q6",
                "vaddv.u32 r2, q0",
                "strb r2, [r0], #1",
                "vaddv.u32 r2, q1",
                "strb r2, [r1], #1"
            ]
            k = in(reg) SHIFTS.as_ptr(),
            // (Across-vector sums go to even registers.)
            out("r2") _,
        )
    }
}

/// [`crate::kernels::add`] on Helium for three tensors stored a byte per code: per four codes, two
/// widening loads, `VMUL` and `VMLA` by the branch weights, then the requantization above. Returns `false`,
/// having written nothing, for other tensors and for requantizations of the scalar form only.
pub fn add(
    a: Codes<'_>,
    b: Codes<'_>,
    len: usize,
    weights: [i32; 2],
    requant: RequantParams,
    clamp: Clamp,
    out: &mut CodesMut<'_>,
) -> bool {
    let shift1 = -1 - requant.shift as i32;
    let bytes = [a.bits(), b.bits(), out.bits()].iter().all(|&b| crate::codes::storage_bits(b) == 8);
    let Some(bits) = whole_range_bits(clamp).filter(|_| bytes && shift1 >= 1) else {
        return false;
    };
    let (a, b, out) = (&a.bytes()[..len], &b.bytes()[..len], &mut out.bytes_mut()[..len]);
    let params =
        [requant.multiplier as u32, requant.offset as u32, (requant.offset >> 32) as u32, -shift1 as u32];
    match bits {
        1 => add_loop::<31>(a, b, weights, params, out),
        2 => add_loop::<30>(a, b, weights, params, out),
        4 => add_loop::<28>(a, b, weights, params, out),
        _ => add_loop::<24>(a, b, weights, params, out),
    }
    true
}

/// [`add`] with the clamp as `SAT = 32 - b`; `params` as one channel's in [`channel_vectors`].
fn add_loop<const SAT: u32>(a: &[u8], b: &[u8], weights: [i32; 2], params: [u32; 4], out: &mut [u8]) {
    assert!(a.len() == out.len() && b.len() == out.len());
    if out.is_empty() {
        return;
    }
    // Each parameter in all four lanes, loaded as four vectors.
    let lanes: [u32; 16] = core::array::from_fn(|i| params[i / 4]);
    // SAFETY: reads the 64 bytes of `lanes`, then the tail-predicated loop runs over `out.len()` lanes: it
    // reads that many bytes from each of `a` and `b` (`VLDRB.U32`, any alignment; the assert makes them as
    // long) and writes as many to `out` (`VSTRB.32`); it also writes the pointers it advances (copies),
    // `lr` and `q0`-`q7`, all declared.
    unsafe {
        asm_all_q!({
            "vldrw.u32 q2, [{p}]",
            "vldrw.u32 q3, [{p}, #16]",
            "vldrw.u32 q4, [{p}, #32]",
            "vldrw.u32 q5, [{p}, #48]",
            "dlstp.32 lr, {n}",
            "2:",
            "vldrb.u32 q0, [r0], #4",
            "vldrb.u32 q1, [r1], #4",
            "vmul.i32 q0, q0, {wa}",
            "vmla.i32 q0, q1, {wb}",
            requant_vector!("q0", "r2"),
            "letp lr, 2b",
            n = in(reg) out.len(),
            // (Widening loads and narrowing stores take a low register as their base.)
            inout("r0") a.as_ptr() => _,
            inout("r1") b.as_ptr() => _,
            inout("r2") out.as_mut_ptr() => _,
            wa = in(reg) weights[0],
            wb = in(reg) weights[1],
            p = in(reg) lanes.as_ptr(),
            one = in(reg) 1u32,
            sat = const SAT,
            out("lr") _,
        } options(nostack));
    }
}
