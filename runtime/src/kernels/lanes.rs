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
    // One range check and one 4-byte read (a single `LDR` where the core allows unaligned loads), where
    // four indexed bytes would be four checks and four loads.
    let word: [u8; 4] = bytes[i..i + 4].try_into().unwrap_or_default();
    u32::from_le_bytes(word)
}

// On DSP builds `dsp::dot_2xn` replaces `dot_2xn`; `dot_2x2` still serves an odd last channel.
/// The dot products of two weight rows with two im2col'd pixels over `words` weight words:
/// `[row0 . A, row0 . B, row1 . A, row1 . B]`, wrapping in `i32` (exact when the true sums fit, which
/// validation proves).
///
/// `x` holds the pixels' lanes interleaved (`A_0, B_0, A_1, B_1, ...`, one entry per lane pair);
/// `row0` and `row1` hold `4 * words` bytes of packed codes each.
#[inline]
pub fn dot_2x2(x: &[u32], row0: &[u8], row1: &[u8], format: LaneFormat, words: usize) -> [i32; 4] {
    match format.bits() {
        8 => dot_2x2_bits::<8>(x, row0, row1, words),
        4 => dot_2x2_bits::<4>(x, row0, row1, words),
        2 => dot_2x2_bits::<2>(x, row0, row1, words),
        _ => dot_2x2_bits::<1>(x, row0, row1, words),
    }
}

/// [`dot_2x2`] for `acc.len() / 4` consecutive pairs of rows: pair `q` is rows `2q` and `2q + 1`, which
/// start at bytes `2q * row_bytes` and `(2q + 1) * row_bytes` of `rows`; its four sums go to
/// `acc[4q..4q + 4]`.
#[cfg_attr(all(target_arch = "arm", qfd_dsp), allow(dead_code))]
pub fn dot_2xn(x: &[u32], rows: &[u8], row_bytes: usize, format: LaneFormat, words: usize, acc: &mut [i32]) {
    for (q, sums) in acc.chunks_exact_mut(4).enumerate() {
        let row = |r: usize| &rows[r * row_bytes..r * row_bytes + 4 * words];
        sums.copy_from_slice(&dot_2x2(x, row(2 * q), row(2 * q + 1), format, words));
    }
}

/// [`dot_2x2`] for one bit-width. The activation lanes are read as their 16-bit halves and each weight code
/// is extracted on its own, so every multiply-accumulate is one `MLA` with no lane arithmetic (cores
/// without `SMLAD` run this).
#[inline(always)]
fn dot_2x2_bits<const BITS: u32>(x: &[u32], row0: &[u8], row1: &[u8], words: usize) -> [i32; 4] {
    let pairs = (16 / BITS) as usize;
    let mask = (1u32 << BITS) - 1;
    let [mut a0, mut b0, mut a1, mut b1] = [0u32; 4];
    // Exact lengths first, so that the loop below has no bounds checks and no counter of its own.
    let (x, row0, row1) =
        (super::scratch::halves(&x[..2 * pairs * words]), &row0[..4 * words], &row1[..4 * words]);
    for ((x, w0), w1) in x.chunks_exact(4 * pairs).zip(row0.chunks_exact(4)).zip(row1.chunks_exact(4)) {
        let word = |w: &[u8]| u32::from_le_bytes([w[0], w[1], w[2], w[3]]);
        let (w0, w1) = (word(w0), word(w1));
        for j in 0..pairs {
            // Pair j: codes j (low lanes) and j + pairs (high lanes); x holds A_lo, A_hi, B_lo, B_hi.
            let (lo, hi) = (j as u32 * BITS, (j + pairs) as u32 * BITS);
            let (k0_lo, k0_hi) = ((w0 >> lo) & mask, (w0 >> hi) & mask);
            let (k1_lo, k1_hi) = ((w1 >> lo) & mask, (w1 >> hi) & mask);
            let [xa_lo, xa_hi, xb_lo, xb_hi] =
                [x[4 * j], x[4 * j + 1], x[4 * j + 2], x[4 * j + 3]].map(u32::from);
            a0 = a0.wrapping_add(xa_lo * k0_lo).wrapping_add(xa_hi * k0_hi);
            b0 = b0.wrapping_add(xb_lo * k0_lo).wrapping_add(xb_hi * k0_hi);
            a1 = a1.wrapping_add(xa_lo * k1_lo).wrapping_add(xa_hi * k1_hi);
            b1 = b1.wrapping_add(xb_lo * k1_lo).wrapping_add(xb_hi * k1_hi);
        }
    }
    [a0 as i32, b0 as i32, a1 as i32, b1 as i32]
}
