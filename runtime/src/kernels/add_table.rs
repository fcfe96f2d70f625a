//! The residual add of packed codes (1, 2 or 4 bits, all three tensors alike) by table: with at most 4 bits
//! a code there are at most 256 pairs of input codes, so the output code of every pair is worked out once
//! per call (exactly as [`super::reference::add`] does, by [`requantize_to_code`]) and each output code is
//! a lookup. On Helium, sixteen lookups are one gather load (`VLDRB.U8` at per-lane byte offsets)
//! ([`super::mve::add_table`]).

use crate::codes::{codes_per_byte, storage_bits, Codes, CodesMut};
use crate::format::Clamp;
use crate::requant::{requantize_to_code, RequantParams};

/// The add of `len` codes when `a`, `b` and `out` are packed alike; returns `false`, having written
/// nothing, for other tensors.
pub(super) fn add(
    a: Codes<'_>,
    b: Codes<'_>,
    len: usize,
    weights: [i32; 2],
    requant: RequantParams,
    clamp: Clamp,
    out: &mut CodesMut<'_>,
) -> bool {
    let bits = out.bits();
    let sb = storage_bits(bits);
    if sb > 4 || a.bits() != bits || b.bits() != bits {
        return false;
    }
    // The output code of codes `x` (low `sb` bits of the index) and `y` (the next `sb` bits).
    let mut table = [0u8; 256];
    let mask = (1usize << sb) - 1;
    for (i, code) in table[..1 << (2 * sb)].iter_mut().enumerate() {
        let (x, y) = ((i & mask) as i32, (i >> sb) as i32);
        *code = requantize_to_code(x * weights[0] + y * weights[1], requant, clamp.min, clamp.max);
    }
    let per = codes_per_byte(bits);
    let (a, b, out) = (a.bytes(), b.bytes(), out.bytes_mut());
    // Whole bytes of codes go to the vector loop where there is one.
    #[cfg(all(target_arch = "arm", qfd_mve))]
    let done = {
        let whole = len / per;
        super::mve::add_table::bytes(&a[..whole], &b[..whole], &table, sb, &mut out[..whole])
    };
    #[cfg(not(all(target_arch = "arm", qfd_mve)))]
    let done = 0;
    // The bytes left: the last, partly used one, or all of them.
    let left = done..len.div_ceil(per);
    let (a, b, out) = (&a[left.clone()], &b[left.clone()], &mut out[left]);
    match sb {
        4 => lookup::<4>(a, b, &table, len - done * per, out),
        2 => lookup::<2>(a, b, &table, len - done * per, out),
        _ => lookup::<1>(a, b, &table, len - done * per, out),
    }
    true
}

/// The table's codes for the `len` codes of `a` and `b` at `SB` bits a code into `out` (bytes of as many
/// codes); the unused bits of a partly used last byte are kept.
#[inline(always)]
fn lookup<const SB: u32>(a: &[u8], b: &[u8], table: &[u8; 256], len: usize, out: &mut [u8]) {
    let per = (8 / SB) as usize;
    let mask = (1usize << SB) - 1;
    let code = |x: u8, y: u8, j: usize| {
        let shift = j as u32 * SB;
        table[(x >> shift) as usize & mask | ((y >> shift) as usize & mask) << SB] << shift
    };
    let whole = len / per;
    for ((o, &x), &y) in out[..whole].iter_mut().zip(&a[..whole]).zip(&b[..whole]) {
        *o = (0..per).fold(0, |v, j| v | code(x, y, j));
    }
    // The last, partly used byte, if any (the slices end there).
    let used = len - whole * per;
    if let (true, Some(&x), Some(&y), Some(o)) = (used > 0, a.get(whole), b.get(whole), out.get_mut(whole)) {
        let keep = !((1u16 << (used as u32 * SB)) - 1) as u8;
        *o = (0..used).fold(*o & keep, |v, j| v | code(x, y, j));
    }
}
