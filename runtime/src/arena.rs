//! The activation arena: one byte buffer that holds every tensor at the offset the memory plan gave it.
//!
//! An op reads its inputs from the arena and writes its output into it; the plan guarantees the output
//! never overlaps a tensor the op reads. [`split`] turns that guarantee into two borrows the compiler
//! accepts, without `unsafe`. The interpreter ([`Model::run`](crate::Model::run)) and the code that
//! `qfd-codegen` generates both go through it, so there is one way to address the arena.
//!
//! [`StaticArena`] is the arena of generated code: a `static` of exactly the planned size.

use core::cell::UnsafeCell;
use core::ops::Range;

/// Read access to the arena outside the range being written.
#[derive(Debug)]
pub struct ArenaReader<'b> {
    before: &'b [u8],
    after: &'b [u8],
    after_start: usize,
}

impl ArenaReader<'_> {
    /// The bytes in `range` of the arena. Panics if `range` overlaps the output being written or lies
    /// outside the arena: a validated model (or generated code) never asks for that.
    #[inline]
    pub fn get(&self, range: Range<usize>) -> &[u8] {
        if range.end <= self.before.len() {
            &self.before[range]
        } else {
            &self.after[range.start - self.after_start..range.end - self.after_start]
        }
    }
}

/// Splits `arena` into the output range `out` (writable) and everything else (readable).
#[inline]
pub fn split(arena: &mut [u8], out: Range<usize>) -> (ArenaReader<'_>, &mut [u8]) {
    let (before, rest) = arena.split_at_mut(out.start);
    let (out_bytes, after) = rest.split_at_mut(out.end - out.start);
    (ArenaReader { before, after, after_start: out.end }, out_bytes)
}

/// Copies the model's final output (`i32` little-endian logits) into `logits` and returns the predicted
/// class: the first largest logit.
pub fn read_logits(bytes: &[u8], logits: &mut [i32]) -> usize {
    for (l, b) in logits.iter_mut().zip(bytes.chunks_exact(4)) {
        *l = i32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    }
    predicted_class(logits)
}

/// The predicted class: the index of the first largest logit (0 for no logits).
pub fn predicted_class(logits: &[i32]) -> usize {
    let mut best = 0;
    for (i, &l) in logits.iter().enumerate() {
        if l > logits[best] {
            best = i;
        }
    }
    best
}

/// A zero-initialised arena of `N` bytes in a `static`, lent out to one user at a time.
///
/// Generated model code keeps its arena in one of these so that `infer` needs no arguments beyond the
/// input and the logits, and the linker (not a stack overflow) says when a model does not fit the board.
/// Exclusive access is checked at run time with a flag taken inside a critical section (which also works
/// on Cortex-M0+, where there is no atomic compare-and-swap); the application provides the
/// `critical-section` implementation, e.g. cortex-m's `critical-section-single-core` feature.
pub struct StaticArena<const N: usize> {
    busy: UnsafeCell<bool>,
    bytes: UnsafeCell<[u8; N]>,
}

// SAFETY: `busy` is only read and written inside `critical_section::with`, which excludes every other
// context; `bytes` is only reached through `with`, which hands it to one caller at a time (the one that
// set `busy`). So sharing a `StaticArena` between threads or interrupt handlers cannot create two live
// references to its bytes.
#[allow(unsafe_code)]
unsafe impl<const N: usize> Sync for StaticArena<N> {}

impl<const N: usize> Default for StaticArena<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> StaticArena<N> {
    /// A zeroed arena (placed in `.bss`, so it costs no flash).
    pub const fn new() -> Self {
        StaticArena { busy: UnsafeCell::new(false), bytes: UnsafeCell::new([0; N]) }
    }

    /// Runs `f` with the arena's bytes; `None` if the arena is already lent out (a re-entrant call, e.g.
    /// from an interrupt handler while `f` runs).
    #[allow(unsafe_code)]
    pub fn with<R>(&self, f: impl FnOnce(&mut [u8; N]) -> R) -> Option<R> {
        // SAFETY: `busy` is only touched inside critical sections, so this read-modify-write is atomic.
        let taken = critical_section::with(|_| unsafe {
            let busy = &mut *self.busy.get();
            !core::mem::replace(busy, true)
        });
        if !taken {
            return None;
        }
        // SAFETY: we set `busy`, so no other caller can be inside this block until we clear it below; this
        // is the only reference to the bytes.
        let result = f(unsafe { &mut *self.bytes.get() });
        // SAFETY: as above; only the holder of the flag clears it.
        critical_section::with(|_| unsafe { *self.busy.get() = false });
        Some(result)
    }
}
