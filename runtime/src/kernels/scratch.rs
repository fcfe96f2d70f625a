//! Working memory of the fast kernels: a byte slice from the arena, seen as aligned `u32` words.
#![allow(unsafe_code)]

/// Slack to add to a scratch size so that [`words`] always finds `n` aligned words in it.
pub const ALIGN_SLACK: usize = 3;

/// The first `n` aligned `u32` words inside `bytes`, which must hold `4 * n + ALIGN_SLACK` bytes.
pub fn words(bytes: &mut [u8], n: usize) -> &mut [u32] {
    // SAFETY: every bit pattern is a valid `u32`, and `align_to_mut` only returns the aligned, in-bounds
    // middle part of `bytes`, which stays borrowed as long as the result.
    let (_, body, _) = unsafe { bytes.align_to_mut::<u32>() };
    &mut body[..n]
}

/// `u32` words seen as `i32` (same size and alignment, every bit pattern valid in both).
pub fn as_i32(words: &mut [u32]) -> &mut [i32] {
    // SAFETY: `i32` and `u32` have the same size and alignment and no invalid values, so the same memory
    // is a valid `[i32]` of the same length, borrowed as long as `words`.
    unsafe { core::slice::from_raw_parts_mut(words.as_mut_ptr().cast::<i32>(), words.len()) }
}

/// Lane words seen as their 16-bit halves, low half first (the targets are little-endian).
pub fn halves(words: &[u32]) -> &[u16] {
    const { assert!(cfg!(target_endian = "little"), "lane words are read as little-endian halves") };
    // SAFETY: `[u32; n]` and `[u16; 2n]` have the same size, `u16` needs less alignment than `u32`, and
    // every bit pattern is a valid `u16`; the result borrows `words` immutably for as long as it lives.
    unsafe { core::slice::from_raw_parts(words.as_ptr().cast::<u16>(), 2 * words.len()) }
}

/// Words seen as their bytes, in memory order.
#[cfg_attr(not(all(target_arch = "arm", qfd_mve)), allow(dead_code))]
pub fn bytes(words: &[u32]) -> &[u8] {
    // SAFETY: `[u32; n]` and `[u8; 4n]` have the same size, `u8` needs no alignment, and every bit pattern
    // is a valid `u8`; the result borrows `words` immutably for as long as it lives.
    unsafe { core::slice::from_raw_parts(words.as_ptr().cast::<u8>(), 4 * words.len()) }
}

/// Words seen as their bytes, in memory order, to write.
pub fn bytes_mut(words: &mut [u32]) -> &mut [u8] {
    // SAFETY: `[u32; n]` and `[u8; 4n]` have the same size, `u8` needs no alignment, and every bit pattern
    // is valid in both; the result borrows `words` mutably for as long as it lives.
    unsafe { core::slice::from_raw_parts_mut(words.as_mut_ptr().cast::<u8>(), 4 * words.len()) }
}

/// Words seen as their 16-bit halves, low half first, to write.
#[cfg_attr(not(all(target_arch = "arm", qfd_mve)), allow(dead_code))]
pub fn halves_mut(words: &mut [u32]) -> &mut [u16] {
    const { assert!(cfg!(target_endian = "little"), "lane words are read as little-endian halves") };
    // SAFETY: `[u32; n]` and `[u16; 2n]` have the same size, `u16` needs less alignment than `u32`, and
    // every bit pattern is valid in both; the result borrows `words` mutably for as long as it lives.
    unsafe { core::slice::from_raw_parts_mut(words.as_mut_ptr().cast::<u16>(), 2 * words.len()) }
}
