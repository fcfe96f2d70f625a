//! Pools on Helium for codes stored a byte each.
//!
//! - [`max_pool`]: each output pixel's channels start as the first window tap's codes and meet each
//!   further tap's with `VMAX.U8`, sixteen channels an instruction, in a tail-predicated loop. Padding taps
//!   are skipped (codes are at least 0, so they never win); a window with no tap inside the input gives 0,
//!   as the reference does.
//! - [`avg_pool`]: four channels a vector, each tap inside the input one widening load and one `VADD`
//!   (padding adds 0), then the requantization of [`super::to_code`] with the pool's one set of parameters.
#![allow(unsafe_code)]

use core::arch::asm;

use super::to_code::whole_range_bits;
use crate::codes::{storage_bits, Codes, CodesMut};
use crate::format::Clamp;
use crate::kernels::{for_each_tap, PoolGeometry};
use crate::requant::RequantParams;

/// [`crate::kernels::max_pool`] for byte-stored input and output; returns `false` for others.
pub fn max_pool(input: Codes<'_>, geo: &PoolGeometry, output: &mut CodesMut<'_>) -> bool {
    if storage_bits(input.bits()) != 8 || storage_bits(output.bits()) != 8 {
        return false;
    }
    let (inp, out, ch) = (geo.input, geo.output, geo.output.c);
    let (codes, out_bytes) = (&input.bytes()[..inp.elems()], &mut output.bytes_mut()[..out.elems()]);
    for oy in 0..out.h {
        for ox in 0..out.w {
            let dst = &mut out_bytes[(oy * out.w + ox) * ch..][..ch];
            let mut first = true;
            for_each_tap(&geo.window, inp, oy, ox, |iy, ix, _| {
                let src = &codes[(iy * inp.w + ix) * ch..][..ch];
                if first {
                    super::copy(src, dst);
                    first = false;
                } else {
                    max_into(src, dst);
                }
            });
            if first {
                dst.fill(0);
            }
        }
    }
    true
}

/// `dst[i] = max(dst[i], src[i])`, sixteen codes a pass.
fn max_into(src: &[u8], dst: &mut [u8]) {
    assert_eq!(src.len(), dst.len());
    if dst.is_empty() {
        return;
    }
    // SAFETY: the tail-predicated loop reads `dst.len()` bytes of `src` and of `dst` (the assert makes them
    // as long) and writes as many to `dst`; it also writes the pointers it advances (copies), `lr` and
    // `q0`-`q1`, all declared.
    unsafe {
        asm!(
            "dlstp.8 lr, {n}",
            "2:",
            "vldrb.u8 q0, [{s}], #16",
            "vldrb.u8 q1, [{d}]",
            "vmax.u8 q0, q0, q1",
            "vstrb.8 q0, [{d}], #16",
            "letp lr, 2b",
            n = in(reg) dst.len(),
            s = inout(reg) src.as_ptr() => _,
            d = inout(reg) dst.as_mut_ptr() => _,
            out("lr") _,
            out("d0") _,
            out("d1") _,
            out("d2") _,
            out("d3") _,
            options(nostack),
        );
    }
}

/// Taps of the largest window [`avg_pool`] takes (others run the reference).
const MAX_TAPS: usize = 64;

/// [`crate::kernels::avg_pool`] for byte-stored input and output, a requantization of the usual case
/// (divisor above `2^32`) and a whole-range clamp; returns `false`, having written nothing, for others.
pub fn avg_pool(
    input: Codes<'_>,
    geo: &PoolGeometry,
    requant: RequantParams,
    clamp: Clamp,
    output: &mut CodesMut<'_>,
) -> bool {
    let shift1 = -1 - requant.shift as i32;
    let bytes = storage_bits(input.bits()) == 8 && storage_bits(output.bits()) == 8;
    let window = geo.window.kernel[0] as usize * geo.window.kernel[1] as usize;
    let Some(bits) = whole_range_bits(clamp).filter(|_| bytes && shift1 >= 1 && window <= MAX_TAPS) else {
        return false;
    };
    let (inp, out, ch) = (geo.input, geo.output, geo.output.c);
    let (codes, out_bytes) = (&input.bytes()[..inp.elems()], &mut output.bytes_mut()[..out.elems()]);
    // Each parameter in all four lanes, as `to_code::channel_vectors` lays out a block.
    let params =
        [requant.multiplier as u32, requant.offset as u32, (requant.offset >> 32) as u32, -shift1 as u32];
    let lanes: [u32; 16] = core::array::from_fn(|i| params[i / 4]);
    let mut taps = [0u32; MAX_TAPS];
    for oy in 0..out.h {
        for ox in 0..out.w {
            // Where each tap inside the input starts.
            let mut n = 0;
            for_each_tap(&geo.window, inp, oy, ox, |iy, ix, _| {
                // (At most `kh * kw <= MAX_TAPS` taps: every one has a slot.)
                if let Some(slot) = taps.get_mut(n) {
                    *slot = ((iy * inp.w + ix) * ch) as u32;
                    n += 1;
                }
            });
            let dst = &mut out_bytes[(oy * out.w + ox) * ch..][..ch];
            match bits {
                1 => window_average::<31>(codes, &taps[..n], &lanes, dst),
                2 => window_average::<30>(codes, &taps[..n], &lanes, dst),
                4 => window_average::<28>(codes, &taps[..n], &lanes, dst),
                _ => window_average::<24>(codes, &taps[..n], &lanes, dst),
            }
        }
    }
    true
}

/// One output pixel of [`avg_pool`], with the clamp as `SAT = 32 - b`: the sum of each channel's codes at
/// `taps` (pixel starts in `codes`), requantized with `lanes` (each parameter in all four lanes), into
/// `dst`.
fn window_average<const SAT: u32>(codes: &[u8], taps: &[u32], lanes: &[u32; 16], dst: &mut [u8]) {
    let ch = dst.len();
    assert!(taps.iter().all(|&t| t as usize + ch <= codes.len()));
    if ch == 0 {
        return;
    }
    // SAFETY: reads the 64 bytes of `lanes`; the tail-predicated loop runs over `ch` lanes, four channels a
    // pass: for each of the `taps` it reads the block's codes of that pixel (`tap + c`, `c < ch`: inside
    // `codes`, as asserted) and each pass writes its four codes to `dst` (`ch` bytes in all). It also writes
    // the pointers and counts it advances (copies), `r0`, `r1`, `lr` and `q0`-`q7`, all declared.
    unsafe {
        asm_all_q!({
            "vldrw.u32 q2, [{p}]",
            "vldrw.u32 q3, [{p}, #16]",
            "vldrw.u32 q4, [{p}, #32]",
            "vldrw.u32 q5, [{p}, #48]",
            "dlstp.32 lr, {ch}",
            "2:",
            "vmov.i32 q0, #0",
            "mov {t}, {taps}",
            "movs {k}, {n}",
            "beq 4f",
            "3:",
            "ldr r0, [{t}], #4",
            "add r0, {block}",
            "vldrb.u32 q1, [r0]",
            "vadd.i32 q0, q0, q1",
            "subs {k}, #1",
            "bne 3b",
            "4:",
            requant_vector!("q0", "r1"),
            "adds {block}, #4",
            "letp lr, 2b",
            p = in(reg) lanes.as_ptr(),
            ch = in(reg) ch,
            taps = in(reg) taps.as_ptr(),
            n = in(reg) taps.len(),
            t = out(reg) _,
            k = out(reg) _,
            block = inout(reg) codes.as_ptr() => _,
            // (Widening loads and narrowing stores take a low register as their base.)
            out("r0") _,
            inout("r1") dst.as_mut_ptr() => _,
            one = in(reg) 1u32,
            sat = const SAT,
            out("lr") _,
        } options(nostack));
    }
}
