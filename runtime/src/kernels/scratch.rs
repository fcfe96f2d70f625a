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
