//! The lane format: how a 32-bit word of packed weight codes splits into pairs of 16-bit lanes, and the
//! portable `2 x 2` dot product over it.
//!
//! A word holds `n = 32 / bits` codes `c_0 .. c_{n-1}`, code `i` at bit `i * bits` (the `.qfdm` packing read
//! as a little-endian word; codes of 3 and 5-7 bits are stored a byte each and read as 8-bit). Lane pair `j`
//! (`j < n / 2`) is `(word >> (j * bits)) & mask`, with `mask` the code mask in both 16-bit halves: it holds
//! `c_j` low and `c_{j + n/2}` high. One `AND` (or `UXTB16` at 8 bits) per pair, and a dual 16-bit multiply
//! (`SMLAD`) then does two multiply-accumulates, whatever the bit-width. The im2col buffer stores the
//! activations in the same order, so no weight is ever moved.

/// Bits per code as the kernels read them: 1, 2 or 4 for packed weights, 8 for byte-stored ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LaneFormat {
    bits: u32,
}

impl LaneFormat {
    /// The format of weights stored with `weight_bits` bits.
    pub const fn for_weight_bits(weight_bits: u8) -> Self {
        match weight_bits {
            1 | 2 | 4 => LaneFormat { bits: weight_bits as u32 },
            _ => LaneFormat { bits: 8 },
        }
    }

    /// Storage bits of one code.
    pub const fn bits(self) -> u32 {
        self.bits
    }

    /// Codes in one 32-bit word.
    pub const fn codes_per_word(self) -> usize {
        32 / self.bits as usize
    }

    /// Lane pairs in one word (half its codes).
    pub const fn pairs_per_word(self) -> usize {
        16 / self.bits as usize
    }

    /// The code mask in both 16-bit halves.
    pub const fn mask(self) -> u32 {
        ((1u32 << self.bits) - 1) * 0x0001_0001
    }

    /// Lane pair `j` of `word`.
    #[inline(always)]
    pub fn pair(self, word: u32, j: usize) -> u32 {
        (word >> (j as u32 * self.bits)) & self.mask()
    }
}

/// Reads the little-endian word at byte `i` (any alignment).
#[inline(always)]
pub fn le_word(bytes: &[u8], i: usize) -> u32 {
    u32::from_le_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]])
}

// On DSP builds `dsp::dot_2x2` replaces the two functions below.
/// `x.lo * k.lo + x.hi * k.hi` on two pairs of 16-bit lanes holding codes (what `SMLAD` adds).
#[cfg_attr(all(target_arch = "arm", qfd_dsp), allow(dead_code))]
#[inline(always)]
pub fn dual_mul(x: u32, k: u32) -> i32 {
    ((x & 0xffff) * (k & 0xffff) + (x >> 16) * (k >> 16)) as i32
}

/// The dot products of two weight rows with two im2col'd pixels over `words` weight words:
/// `[row0 . A, row0 . B, row1 . A, row1 . B]`, wrapping in `i32` (exact when the true sums fit, which
/// validation proves).
///
/// `x` holds the pixels' lanes interleaved (`A_0, B_0, A_1, B_1, ...`, one entry per lane pair);
/// `row0` and `row1` hold `4 * words` bytes of packed codes each.
#[cfg_attr(all(target_arch = "arm", qfd_dsp), allow(dead_code))]
#[inline]
pub fn dot_2x2(x: &[u32], row0: &[u8], row1: &[u8], format: LaneFormat, words: usize) -> [i32; 4] {
    let pairs = format.pairs_per_word();
    let mut acc = [0i32; 4];
    for m in 0..words {
        let (w0, w1) = (le_word(row0, 4 * m), le_word(row1, 4 * m));
        let x = &x[2 * m * pairs..2 * (m + 1) * pairs];
        for j in 0..pairs {
            let (k0, k1) = (format.pair(w0, j), format.pair(w1, j));
            let (xa, xb) = (x[2 * j], x[2 * j + 1]);
            acc[0] = acc[0].wrapping_add(dual_mul(xa, k0));
            acc[1] = acc[1].wrapping_add(dual_mul(xb, k0));
            acc[2] = acc[2].wrapping_add(dual_mul(xa, k1));
            acc[3] = acc[3].wrapping_add(dual_mul(xb, k1));
        }
    }
    acc
}
