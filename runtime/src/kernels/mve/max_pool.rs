//! Max pool on Helium for codes stored a byte each: each output pixel's channels start as the first
//! window tap's codes and meet each further tap's with `VMAX.U8`, sixteen channels an instruction, in a
//! tail-predicated loop. Padding taps are skipped (codes are at least 0, so they never win); a window with
//! no tap inside the input gives 0, as the reference does.
#![allow(unsafe_code)]

use core::arch::asm;

use crate::codes::{storage_bits, Codes, CodesMut};
use crate::kernels::{for_each_tap, PoolGeometry};

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
