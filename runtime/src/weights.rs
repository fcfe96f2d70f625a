//! Packed weight codes and the dot product every kernel uses.
//!
//! A weight of `bits` bits is stored as its code `k` in `[0, 2^bits - 1]` and stands for the odd integer
//! `w = 2k - (2^bits - 1)` (the zero-free grid of the training quantizer). Codes of 1, 2 and 4 bits are packed
//! `8 / bits` to a byte, first element in the lowest bits; codes of 3 and 5-8 bits take one byte each
//! (the packing of [`crate::codes`], which activations share).
//!
//! Because `w` is affine in `k`, a dot product splits as `sum(x * w) = 2 * sum(x * k) - (2^bits - 1) * sum(x)`,
//! and `sum(x)` is shared by every output channel reading the same inputs. Kernels therefore only need
//! [`PackedWeights::dot_codes`].

use serde::{Deserialize, Serialize};

/// Weight codes of one layer, borrowed from the model file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackedWeights<'a> {
    /// Bits per weight, 1-8.
    pub bits: u8,
    /// Packed codes.
    pub data: &'a [u8],
}

// The packing is the arena's too: one definition, in `codes`.
pub use crate::codes::{codes_per_byte, max_code, pack_codes, packed_len};

impl<'a> PackedWeights<'a> {
    /// Number of codes the data can hold.
    pub fn capacity(&self) -> usize {
        self.data.len() * codes_per_byte(self.bits)
    }

    /// Code of element `i`.
    #[inline]
    pub fn code(&self, i: usize) -> u8 {
        crate::codes::code_at(self.data, self.bits, i)
    }

    /// Integer weight `2k - (2^bits - 1)` of element `i`.
    #[inline]
    pub fn value(&self, i: usize) -> i32 {
        2 * self.code(i) as i32 - max_code(self.bits)
    }

    /// `sum(x[j] * k[start + j])` over `x`: the code half of a dot product (see the module docs).
    #[inline]
    pub fn dot_codes<X: Copy + Into<i32>>(&self, x: &[X], start: usize) -> i32 {
        match self.bits {
            1 => dot_packed::<X, 1>(x, self.data, start),
            2 => dot_packed::<X, 2>(x, self.data, start),
            4 => dot_packed::<X, 4>(x, self.data, start),
            _ => dot_bytes(x, &self.data[start..start + x.len()]),
        }
    }
}

/// Dot product against codes packed `8 / BITS` to a byte; `BITS` is a constant so the unpacking is shifts.
#[inline]
fn dot_packed<X: Copy + Into<i32>, const BITS: u32>(x: &[X], data: &[u8], start: usize) -> i32 {
    let per = (8 / BITS) as usize;
    let mask = (1i32 << BITS) - 1;
    x.iter()
        .enumerate()
        .map(|(j, &xj)| {
            let i = start + j;
            xj.into() * ((data[i / per] as i32 >> ((i % per) as u32 * BITS)) & mask)
        })
        .sum()
}

#[inline]
fn dot_bytes<X: Copy + Into<i32>>(x: &[X], k: &[u8]) -> i32 {
    x.iter().zip(k).map(|(&a, &b)| a.into() * b as i32).sum()
}
