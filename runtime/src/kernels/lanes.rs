//! The lane format: how a 32-bit word of packed weight codes splits into pairs of 16-bit lanes, and the
//! portable `2 x 2` dot product over it.
//!
//! A word holds `n = 32 / bits` codes `c_0 .. c_{n-1}`, code `i` at bit `i * bits` (the `.qfdm` packing read
//! as a little-endian word; codes of 3 and 5-7 bits are stored a byte each and read as 8-bit). Lane pair `j`
//! (`j < n / 2`) is `(word >> (j * bits)) & mask`, with `mask` the code mask in both 16-bit halves: it holds
//! `c_j` low and `c_{j + n/2}` high. One `AND` (or `UXTB16` at 8 bits) per pair, and a dual 16-bit multiply
//! (`SMLAD`) then does two multiply-accumulates, whatever the bit-width. The im2col buffer stores the
//! activations in the same order, so no weight is ever moved.
//!
//! **Two codes per lane** (2-bit weights and activations of at most 2 bits, [`LaneFormat::dot2`]): products
//! are at most 9, so a 16-bit lane can hold two codes, 10 bits apart: activation lane `x_a + x_b * 2^10`
//! against weight lane `k_b + k_a * 2^10` multiplies to `x_a k_b + (x_a k_a + x_b k_b) * 2^10 + ...`, a
//! two-term dot product in bits 10-19, so one `SMLAD` does four multiply-accumulates. With
//! `mask = 0x0C03_0C03`, `word & mask` and `(word >> 2|4) & mask` give lanes of codes
//! `(j, j + 5 | j + 8, j + 13)` for `j` = 0, 1, 2, and `(word << 4|2) & mask` codes `(3 | 6, 11)` and
//! `(4 | 7, 12)`, where the codes in bits 0-1 (6 and 7) only meet activations of 0 in bits 10-11 and land
//! in the low field. Five lane entries per 16 codes; the low field (at most 90 per word) and the dot field
//! (at most 144 per word) stay below `2^10` for [`DOT2_WORDS`] words, after which the dot field is read
//! out (`(sum >> 10) & 0x3ff`).

/// Whether this build knows [`LaneFormat::vector`]: Helium builds, which run it, and the host, which sizes
/// the working memory of Helium boards with it. Other Cortex-M builds compile its checks away.
const VECTOR_FORMS: bool = cfg!(any(not(target_arch = "arm"), qfd_mve));

/// Words of two-codes-per-lane products one sum may hold before its dot field must be read out.
pub const DOT2_WORDS: usize = 7;

/// The weight mask of the two-codes-per-lane format: codes in bits 0-1 and 10-11 of each half.
pub const DOT2_MASK: u32 = 0x0c03_0c03;

/// How weight words unpack into lanes: `bits` per code (1, 2 or 4 for packed weights, 8 for byte-stored
/// ones), and whether lanes hold two codes each (2-bit only); on Helium builds also the vector forms
/// ([`LaneFormat::vector`]), marked by [`VECTOR`] in `bits`. Two fields, so that it travels in registers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LaneFormat {
    bits: u32,
    /// Two codes per lane (2 bits).
    dot: bool,
}

/// The mark of the vector forms in [`LaneFormat`]'s `bits`.
const VECTOR: u32 = 16;

impl LaneFormat {
    /// The format of weights stored with `weight_bits` bits, one code per lane.
    pub const fn for_weight_bits(weight_bits: u8) -> Self {
        // Words read as stored: the packing's storage width.
        LaneFormat { bits: crate::codes::storage_bits(weight_bits), dot: false }
    }

    /// 2-bit weights against activations of at most 2 bits, two codes per lane.
    pub const fn dot2() -> Self {
        LaneFormat { bits: 2, dot: true }
    }

    /// Codes read by a vector unit (Helium): weights and activations of the same storage width `bits`
    /// (8, 4 or 2), both packed as stored. No lanes: each pixel's patch is a run of whole words of codes
    /// in the order the weights are stored, pixel A's first, then pixel B's, and the kernel reads just the
    /// patch's codes of each (no tail codes).
    pub const fn vector(bits: u32) -> Self {
        LaneFormat { bits: bits | VECTOR, dot: false }
    }

    /// Whether lanes hold two codes each.
    pub const fn is_dot2(self) -> bool {
        self.dot
    }

    /// Whether this is [`LaneFormat::vector`] (never on Cortex-M builds without Helium, which lets them
    /// compile the checks away).
    pub const fn is_vector(self) -> bool {
        VECTOR_FORMS && self.bits & VECTOR != 0
    }

    /// Activation lane entries (`u32`) per weight word, for one pixel.
    pub const fn lanes_per_word(self) -> usize {
        if self.is_vector() {
            1
        } else if self.dot {
            5
        } else {
            16 / self.bits as usize
        }
    }

    /// Storage bits of one code.
    pub const fn bits(self) -> u32 {
        if VECTOR_FORMS {
            self.bits & !VECTOR
        } else {
            self.bits
        }
    }

    /// Codes in one 32-bit word.
    pub const fn codes_per_word(self) -> usize {
        32 / self.bits() as usize
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

// On Armv7-M and later `dsp::dot_2xn` or `mla::dot_2xn` replaces `dot_2xn` (the latter calls it for
// packed rows); `dot_2x2` still serves an odd last channel.
/// The dot products of two weight rows with two im2col'd pixels over `words` weight words:
/// `[row0 . A, row0 . B, row1 . A, row1 . B]`, wrapping in `i32` (exact when the true sums fit, which
/// validation proves).
///
/// `x` holds the pixels' lanes interleaved (`A_0, B_0, A_1, B_1, ...`, one entry per lane pair);
/// `row0` and `row1` hold `4 * words` bytes of packed codes each.
#[inline]
pub fn dot_2x2(x: &[u32], row0: &[u8], row1: &[u8], format: LaneFormat, words: usize) -> [i32; 4] {
    if format.is_dot2() {
        return dot_2x2_dot2(x, row0, row1, words);
    }
    if format.is_vector() {
        return match format.bits() {
            4 => dot_2x2_vector::<4>(x, row0, row1, words),
            2 => dot_2x2_vector::<2>(x, row0, row1, words),
            _ => dot_2x2_vector::<8>(x, row0, row1, words),
        };
    }
    match format.bits() {
        8 => dot_2x2_bits::<8>(x, row0, row1, words),
        4 => dot_2x2_bits::<4>(x, row0, row1, words),
        2 => dot_2x2_bits::<2>(x, row0, row1, words),
        _ => dot_2x2_bits::<1>(x, row0, row1, words),
    }
}

/// [`dot_2x2`] for `acc.len() / 4` consecutive pairs of rows: pair `q` is rows `2q` and `2q + 1`, which
/// start at bytes `2q * row_bytes` and `(2q + 1) * row_bytes` of `rows`; its four sums go to
/// `acc[4q..4q + 4]`, or with `accumulate` are added to them (wrapping), so that a patch can be taken a
/// chunk of taps at a time.
// Out of line: inlined into the convolution, its loop would share the registers with the caller's and spill.
#[cfg_attr(all(target_arch = "arm", qfd_dsp), allow(dead_code))]
#[inline(never)]
pub fn dot_2xn(
    x: &[u32],
    rows: &[u8],
    row_bytes: usize,
    format: LaneFormat,
    words: usize,
    acc: &mut [i32],
    accumulate: bool,
) {
    // The format and `accumulate` are decided once, outside the loop over row pairs.
    let job = RowPairs { x, rows, row_bytes, words };
    if format.is_vector() {
        return match (format.bits(), accumulate) {
            (4, false) => job.run::<false>(acc, dot_2x2_vector::<4>),
            (4, true) => job.run::<true>(acc, dot_2x2_vector::<4>),
            (2, false) => job.run::<false>(acc, dot_2x2_vector::<2>),
            (2, true) => job.run::<true>(acc, dot_2x2_vector::<2>),
            (_, false) => job.run::<false>(acc, dot_2x2_vector::<8>),
            (_, true) => job.run::<true>(acc, dot_2x2_vector::<8>),
        };
    }
    match (format.is_dot2(), format.bits(), accumulate) {
        (true, _, false) => job.run::<false>(acc, dot_2x2_dot2),
        (true, _, true) => job.run::<true>(acc, dot_2x2_dot2),
        (_, 8, false) => job.run::<false>(acc, dot_2x2_bits::<8>),
        (_, 8, true) => job.run::<true>(acc, dot_2x2_bits::<8>),
        (_, 4, false) => job.run::<false>(acc, dot_2x2_bits::<4>),
        (_, 4, true) => job.run::<true>(acc, dot_2x2_bits::<4>),
        (_, 2, false) => job.run::<false>(acc, dot_2x2_bits::<2>),
        (_, 2, true) => job.run::<true>(acc, dot_2x2_bits::<2>),
        (_, _, false) => job.run::<false>(acc, dot_2x2_bits::<1>),
        (_, _, true) => job.run::<true>(acc, dot_2x2_bits::<1>),
    }
}

/// The operands of [`dot_2xn`].
#[derive(Clone, Copy)]
struct RowPairs<'a> {
    x: &'a [u32],
    rows: &'a [u8],
    row_bytes: usize,
    words: usize,
}

impl RowPairs<'_> {
    /// Every row pair through `dot`, a concrete function (generic, so that it is inlined into the loop).
    #[inline(always)]
    fn run<const ACCUMULATE: bool>(
        self,
        acc: &mut [i32],
        dot: impl Fn(&[u32], &[u8], &[u8], usize) -> [i32; 4],
    ) {
        let (x, rows, row_bytes, words) = (self.x, self.rows, self.row_bytes, self.words);
        for (q, sums) in acc.chunks_exact_mut(4).enumerate() {
            // A row's words, or its codes when they end inside the last word (`LaneFormat::bytes`).
            let row = |r: usize| &rows[r * row_bytes..r * row_bytes + (4 * words).min(row_bytes)];
            let new = dot(x, row(2 * q), row(2 * q + 1), words);
            if ACCUMULATE {
                sums.iter_mut().zip(new).for_each(|(s, a)| *s = s.wrapping_add(a));
            } else {
                sums.copy_from_slice(&new);
            }
        }
    }
}

/// [`dot_2x2`] for one bit-width. The activation lanes are read as their 16-bit halves and each weight code
/// is extracted on its own, so every multiply-accumulate is one `MLA` with no lane arithmetic (cores
/// without `SMLAD` run this).
// Out of line: its loop gets the whole register file (inlined into the row-pair loop it spilled).
#[inline(never)]
fn dot_2x2_bits<const BITS: u32>(x: &[u32], row0: &[u8], row1: &[u8], words: usize) -> [i32; 4] {
    let pairs = (16 / BITS) as usize;
    let mut acc = [0u32; 4];
    // Exact lengths first, so that the loops below have no bounds checks and no counters of their own.
    let (x, row0, row1) =
        (super::scratch::halves(&x[..2 * pairs * words]), &row0[..4 * words], &row1[..4 * words]);
    // Measured on the Cortex-M3: 8-bit rows go fastest read through chunks (the compiler loads each code as
    // a byte), packed rows as indexed words (one load, then shifts).
    if BITS == 8 {
        for ((x, w0), w1) in x.chunks_exact(4 * pairs).zip(row0.chunks_exact(4)).zip(row1.chunks_exact(4)) {
            let word = |w: &[u8]| u32::from_le_bytes([w[0], w[1], w[2], w[3]]);
            word_2x2::<BITS>(&mut acc, x, word(w0), word(w1));
        }
    } else {
        for (k, x) in x.chunks_exact(4 * pairs).enumerate() {
            word_2x2::<BITS>(&mut acc, x, le_word(row0, 4 * k), le_word(row1, 4 * k));
        }
    }
    acc.map(|a| a as i32)
}

/// One word of each row against its lanes `x` (`A_lo, A_hi, B_lo, B_hi` per pair): adds to
/// `[row0 . A, row0 . B, row1 . A, row1 . B]`.
#[inline(always)]
fn word_2x2<const BITS: u32>(acc: &mut [u32; 4], x: &[u16], w0: u32, w1: u32) {
    let pairs = (16 / BITS) as usize;
    let mask = (1u32 << BITS) - 1;
    for j in 0..pairs {
        // Pair j: codes j (low lanes) and j + pairs (high lanes).
        let (lo, hi) = (j as u32 * BITS, (j + pairs) as u32 * BITS);
        let (k0_lo, k0_hi) = ((w0 >> lo) & mask, (w0 >> hi) & mask);
        let (k1_lo, k1_hi) = ((w1 >> lo) & mask, (w1 >> hi) & mask);
        let [xa_lo, xa_hi, xb_lo, xb_hi] =
            [x[4 * j], x[4 * j + 1], x[4 * j + 2], x[4 * j + 3]].map(u32::from);
        acc[0] = acc[0].wrapping_add(xa_lo * k0_lo).wrapping_add(xa_hi * k0_hi);
        acc[1] = acc[1].wrapping_add(xb_lo * k0_lo).wrapping_add(xb_hi * k0_hi);
        acc[2] = acc[2].wrapping_add(xa_lo * k1_lo).wrapping_add(xa_hi * k1_hi);
        acc[3] = acc[3].wrapping_add(xb_lo * k1_lo).wrapping_add(xb_hi * k1_hi);
    }
}

/// [`dot_2x2`] in the two-codes-per-lane format: lane products summed as `SMLAD` would, the dot field read
/// out every [`DOT2_WORDS`] words.
fn dot_2x2_dot2(x: &[u32], row0: &[u8], row1: &[u8], words: usize) -> [i32; 4] {
    let (x, row0, row1) = (&x[..10 * words], &row0[..4 * words], &row1[..4 * words]);
    let mut total = [0u32; 4];
    for ((x, r0), r1) in
        x.chunks(10 * DOT2_WORDS).zip(row0.chunks(4 * DOT2_WORDS)).zip(row1.chunks(4 * DOT2_WORDS))
    {
        let mut raw = [0u32; 4];
        for ((x, w0), w1) in x.chunks_exact(10).zip(r0.chunks_exact(4)).zip(r1.chunks_exact(4)) {
            let (w0, w1) = (le_word(w0, 0), le_word(w1, 0));
            for (e, k0, k1) in
                dot2_lanes(w0).into_iter().zip(dot2_lanes(w1)).enumerate().map(|(e, (a, b))| (e, a, b))
            {
                let (xa, xb) = (x[2 * e], x[2 * e + 1]);
                let dual = |x: u32, k: u32| (x & 0xffff) * (k & 0xffff) + (x >> 16) * (k >> 16);
                raw[0] = raw[0].wrapping_add(dual(xa, k0));
                raw[1] = raw[1].wrapping_add(dual(xb, k0));
                raw[2] = raw[2].wrapping_add(dual(xa, k1));
                raw[3] = raw[3].wrapping_add(dual(xb, k1));
            }
        }
        for (t, r) in total.iter_mut().zip(raw) {
            *t = t.wrapping_add((r >> 10) & 0x3ff);
        }
    }
    total.map(|t| t as i32)
}

/// [`dot_2x2`] for [`LaneFormat::vector`] with `BITS`-bit codes: `x` holds pixel A's `words` words of
/// packed codes, then pixel B's; the rows may end before `words` words (the patch's codes only), and the
/// pixels' codes past them are 0.
fn dot_2x2_vector<const BITS: usize>(x: &[u32], row0: &[u8], row1: &[u8], words: usize) -> [i32; 4] {
    let (a, b) = x[..2 * words].split_at(words);
    let (per_word, per_byte, mask) = (32 / BITS, 8 / BITS, (1u32 << BITS) - 1);
    let code = |x: &[u32], i: usize| (x[i / per_word] >> (BITS * (i % per_word))) & mask;
    let weight = |row: &[u8], i: usize| (row[i / per_byte] as u32 >> (BITS * (i % per_byte))) & mask;
    let mut acc = [0u32; 4];
    for i in 0..row0.len().min(row1.len()) * per_byte {
        let (xa, xb, k0, k1) = (code(a, i), code(b, i), weight(row0, i), weight(row1, i));
        acc[0] = acc[0].wrapping_add(xa * k0);
        acc[1] = acc[1].wrapping_add(xb * k0);
        acc[2] = acc[2].wrapping_add(xa * k1);
        acc[3] = acc[3].wrapping_add(xb * k1);
    }
    acc.map(|a| a as i32)
}

/// The five weight lanes of one word in the two-codes-per-lane format (see the module docs).
#[inline(always)]
pub fn dot2_lanes(w: u32) -> [u32; 5] {
    [w, w >> 2, w >> 4, w << 4, w << 2].map(|v| v & DOT2_MASK)
}
