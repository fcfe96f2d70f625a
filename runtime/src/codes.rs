//! How codes are stored: weights in the model file and activations in the arena use one packing.
//!
//! Codes of 1, 2 and 4 bits are packed `8 / bits` to a byte, element `i` in bits `(i % per) * bits` of byte
//! `i / per` (first element lowest), so a little-endian 32-bit word holds `32 / bits` consecutive codes;
//! codes of 3 and 5-8 bits take one byte each. An activation tensor of 4-bit codes therefore takes half the
//! arena an 8-bit one does, and a 2-bit one a quarter.
//!
//! [`Codes`] and [`CodesMut`] are the kernels' view of a tensor: its bytes and its bit-width. At 8 bits
//! (and 3, 5-7) they are the bytes themselves.

/// Codes per byte for a bit-width: 8, 4 or 2 for packed widths, 1 otherwise.
pub const fn codes_per_byte(bits: u8) -> usize {
    match bits {
        1 => 8,
        2 => 4,
        4 => 2,
        _ => 1,
    }
}

/// Bits one code occupies in storage: `bits` for 1, 2 and 4, otherwise 8.
pub const fn storage_bits(bits: u8) -> u32 {
    8 / codes_per_byte(bits) as u32
}

/// Bytes needed to store `count` codes of `bits` bits.
pub const fn packed_len(count: usize, bits: u8) -> usize {
    count.div_ceil(codes_per_byte(bits))
}

/// `2^bits - 1`: the largest code.
pub const fn max_code(bits: u8) -> i32 {
    (1i32 << bits) - 1
}

/// Code `i` of `bytes` holding codes of `bits` bits: what [`Codes::get`] returns, for a single read where
/// working out a [`Codes`] layout first would cost more than the read.
#[inline]
pub fn code_at(bytes: &[u8], bits: u8, i: usize) -> u8 {
    let per = codes_per_byte(bits);
    if per == 1 {
        bytes[i]
    } else {
        (bytes[i / per] >> ((i % per) as u32 * bits as u32)) & (max_code(bits) as u8)
    }
}

/// Packs codes (each `< 2^bits`) into the storage layout; `out` must be `packed_len(codes.len(), bits)` long.
pub fn pack_codes(codes: &[u8], bits: u8, out: &mut [u8]) {
    out.fill(0);
    let mut packed = CodesMut::new(out, bits);
    for (i, &k) in codes.iter().enumerate() {
        packed.set(i, k & max_code(bits) as u8);
    }
}

/// Clears the bits of `bytes` after its first `elems` codes: the slots a packed tensor's last byte does not
/// use. Kernels write only their elements, so without this those bits would keep whatever the arena held,
/// and two runs of the same model could store different bytes (and per-layer checksums disagree).
#[inline]
pub fn clear_unused(bytes: &mut [u8], elems: usize, bits: u8) {
    let per = codes_per_byte(bits);
    let used = elems % per;
    if used != 0 {
        if let Some(last) = bytes.get_mut(elems / per) {
            *last &= (1u8 << (used as u32 * storage_bits(bits))) - 1;
        }
    }
}

/// Where element `i` lives: byte `i >> per_log2`, bit `(i & (per - 1)) << bits_log2`. Worked out once per
/// tensor, so reading or writing a code is a few shifts, whatever the width.
#[derive(Debug, Clone, Copy)]
struct Layout {
    /// log2 of the codes per byte: 0, 1, 2 or 3.
    per_log2: u32,
    /// log2 of the storage bits: 3, 2, 1 or 0.
    bits_log2: u32,
    /// The storage mask, `2^storage_bits - 1`.
    mask: u8,
    /// The code bits as given.
    bits: u8,
}

impl Layout {
    const fn of(bits: u8) -> Self {
        let per_log2 = codes_per_byte(bits).trailing_zeros();
        Layout { per_log2, bits_log2: 3 - per_log2, mask: (max_code(storage_bits(bits) as u8)) as u8, bits }
    }

    /// Byte index and bit shift of element `i`.
    #[inline(always)]
    const fn place(self, i: usize) -> (usize, u32) {
        (i >> self.per_log2, ((i as u32) & ((1 << self.per_log2) - 1)) << self.bits_log2)
    }
}

/// A tensor's codes, read-only.
#[derive(Debug, Clone, Copy)]
pub struct Codes<'a> {
    bytes: &'a [u8],
    layout: Layout,
}

impl<'a> Codes<'a> {
    /// Codes of `bits` bits stored in `bytes`.
    #[inline]
    pub const fn new(bytes: &'a [u8], bits: u8) -> Self {
        Codes { bytes, layout: Layout::of(bits) }
    }

    /// The stored bytes.
    #[inline]
    pub const fn bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// Bits of each code.
    #[inline]
    pub const fn bits(&self) -> u8 {
        self.layout.bits
    }

    /// Whether several codes share a byte.
    #[inline]
    pub const fn is_packed(&self) -> bool {
        self.layout.per_log2 > 0
    }

    /// Number of codes the bytes hold (a packed tensor's last byte may hold unused slots).
    #[inline]
    pub const fn capacity(&self) -> usize {
        self.bytes.len() << self.layout.per_log2
    }

    /// Code of element `i`.
    #[inline(always)]
    pub fn get(&self, i: usize) -> u8 {
        if self.layout.per_log2 == 0 {
            return self.bytes[i];
        }
        let (byte, shift) = self.layout.place(i);
        (self.bytes[byte] >> shift) & self.layout.mask
    }

    /// The codes from element `first` on, in order: one byte load per byte of codes, where [`get`](Self::get)
    /// would load and shift for each.
    #[inline]
    pub fn iter_from(&self, first: usize) -> CodeIter<'a> {
        let (byte, shift) = self.layout.place(first);
        let bytes = &self.bytes[byte.min(self.bytes.len())..];
        let per = 1u32 << self.layout.per_log2;
        let (cur, left) = match bytes.first() {
            Some(&b) if self.is_packed() => ((b >> shift) as u32, per - (shift >> self.layout.bits_log2)),
            _ => (0, 0),
        };
        let skip = if self.is_packed() && !bytes.is_empty() { 1 } else { 0 };
        CodeIter { bytes: bytes[skip..].iter(), cur, left, layout: self.layout }
    }

    /// Copies, for each `n`-byte chunk `p` of `out`, codes `first + p * stride ..` (`n` of them) into it, one
    /// per byte: a few channels of every pixel of a row. Whole bytes at a time when the runs start on byte
    /// boundaries.
    #[inline]
    pub fn unpack_strided(&self, first: usize, stride: usize, n: usize, out: &mut [u8]) {
        let per = 1usize << self.layout.per_log2;
        if per > 1 && first.is_multiple_of(per) && stride.is_multiple_of(per) && n.is_multiple_of(per) {
            let (at, step) = (first / per, stride / per);
            match self.layout.bits_log2 {
                2 => unpack_bytes::<4>(self.bytes, at, step, n, out),
                1 => unpack_bytes::<2>(self.bytes, at, step, n, out),
                _ => unpack_bytes::<1>(self.bytes, at, step, n, out),
            }
        } else {
            for (p, px) in out.chunks_exact_mut(n).enumerate() {
                self.unpack(first + p * stride, px);
            }
        }
    }

    /// Copies codes `first..first + out.len()` into `out`, one per byte.
    #[inline]
    pub fn unpack(&self, first: usize, out: &mut [u8]) {
        if !self.is_packed() {
            return out.copy_from_slice(&self.bytes[first..first + out.len()]);
        }
        let per = 1 << self.layout.per_log2;
        // A run starting on a byte boundary unpacks a byte at a time (one "pixel" of the strided form);
        // others code by code.
        if !out.is_empty() && first.is_multiple_of(per) && out.len().is_multiple_of(per) {
            let n = out.len();
            self.unpack_strided(first, n, n, out);
        } else {
            for (j, o) in out.iter_mut().enumerate() {
                *o = self.get(first + j);
            }
        }
    }
}

/// [`Codes::unpack_strided`] over whole bytes of `SB`-bit codes: chunk `p` of `out` gets the `n` codes of
/// the `n * SB / 8` bytes from byte `at + p * step`.
#[inline(always)]
fn unpack_bytes<const SB: u32>(bytes: &[u8], mut at: usize, step: usize, n: usize, out: &mut [u8]) {
    if SB == 4 && n == 4 {
        // Four 4-bit codes (the four channels of a DSP depthwise group): two bytes spread into four.
        for px in out.chunks_exact_mut(4) {
            let v = u16::from_le_bytes([bytes[at], bytes[at + 1]]) as u32;
            let spread = (v & 0xf) | (v & 0xf0) << 4 | (v & 0xf00) << 8 | (v & 0xf000) << 12;
            px.copy_from_slice(&spread.to_le_bytes());
            at += step;
        }
        return;
    }
    let per = (8 / SB) as usize;
    let mask = (1u8 << SB) - 1;
    for px in out.chunks_exact_mut(n) {
        for (codes, &b) in px.chunks_exact_mut(per).zip(&bytes[at..at + n / per]) {
            for (j, c) in codes.iter_mut().enumerate() {
                *c = (b >> (j as u32 * SB)) & mask;
            }
        }
        at += step;
    }
}

/// Packs `codes` (a whole number of bytes' worth) into `bytes` at `SB` bits a code.
#[inline(always)]
fn pack_bytes<const SB: u32>(codes: &[u8], bytes: &mut [u8]) {
    if SB == 4 && codes.len() == 4 {
        // Four 4-bit codes (a DSP depthwise group's outputs) into two bytes.
        let v = u32::from_le_bytes([codes[0], codes[1], codes[2], codes[3]]);
        let packed = (v & 0xf) | (v >> 4 & 0xf0) | (v >> 8 & 0xf00) | (v >> 12 & 0xf000);
        bytes[..2].copy_from_slice(&(packed as u16).to_le_bytes());
        return;
    }
    let per = (8 / SB) as usize;
    for (b, c) in bytes.iter_mut().zip(codes.chunks_exact(per)) {
        let mut v = 0;
        for (j, &c) in c.iter().enumerate() {
            v |= c << (j as u32 * SB);
        }
        *b = v;
    }
}

/// Codes in order, from [`Codes::iter_from`].
#[derive(Debug, Clone)]
pub struct CodeIter<'a> {
    bytes: core::slice::Iter<'a, u8>,
    /// The rest of the current byte, next code lowest.
    cur: u32,
    /// Codes left in `cur`.
    left: u32,
    layout: Layout,
}

impl Iterator for CodeIter<'_> {
    type Item = u8;

    #[inline(always)]
    fn next(&mut self) -> Option<u8> {
        if self.layout.per_log2 == 0 {
            return self.bytes.next().copied();
        }
        if self.left == 0 {
            self.cur = *self.bytes.next()? as u32;
            self.left = 1 << self.layout.per_log2;
        }
        let code = self.cur as u8 & self.layout.mask;
        self.cur >>= 1 << self.layout.bits_log2;
        self.left -= 1;
        Some(code)
    }
}

/// Writes codes in order from element `first` of a [`CodesMut`]: one byte store per byte of codes, where
/// [`CodesMut::set`] would read, mask and store for each. [`finish`](Self::finish) stores a last partial
/// byte; the slots before `first` and after the last code keep what they held.
#[derive(Debug)]
pub struct CodeWriter {
    byte: usize,
    /// Codes gathered for the byte at `byte`, and how many bits of it they (and the kept slots) fill.
    pending: u32,
    filled: u32,
    /// Bits of the byte at `byte` below `first`, kept as they were (only for a start inside a byte).
    keep: u32,
    layout: Layout,
}

impl CodeWriter {
    /// A writer of `out`'s codes from element `first` on.
    #[inline]
    pub fn new(out: &CodesMut<'_>, first: usize) -> Self {
        let (byte, shift) = out.layout.place(first);
        let keep = if shift > 0 { (1u32 << shift) - 1 } else { 0 };
        let pending = if shift > 0 { out.bytes[byte] as u32 & keep } else { 0 };
        CodeWriter { byte, pending, filled: shift, keep, layout: out.layout }
    }

    /// Stores `code` (which must be `< 2^bits`) as the next element.
    #[inline(always)]
    pub fn push(&mut self, out: &mut CodesMut<'_>, code: u8) {
        // A byte-per-code writer fills its byte with each code: the same steps, no special case.
        self.pending |= (code as u32) << self.filled;
        self.filled += 1 << self.layout.bits_log2;
        if self.filled == 8 {
            out.bytes[self.byte] = self.pending as u8;
            self.byte += 1;
            (self.pending, self.filled, self.keep) = (0, 0, 0);
        }
    }

    /// Stores the codes of a last, partly filled byte, keeping that byte's other slots.
    #[inline]
    pub fn finish(self, out: &mut CodesMut<'_>) {
        if self.filled > 0 {
            let written = ((1u32 << self.filled) - 1) & !self.keep;
            let b = &mut out.bytes[self.byte];
            *b = ((*b as u32 & !written) | (self.pending & written)) as u8;
        }
    }
}

/// A tensor's codes, writable.
#[derive(Debug)]
pub struct CodesMut<'a> {
    bytes: &'a mut [u8],
    layout: Layout,
}

impl<'a> CodesMut<'a> {
    /// Codes of `bits` bits stored in `bytes`.
    #[inline]
    pub fn new(bytes: &'a mut [u8], bits: u8) -> Self {
        CodesMut { bytes, layout: Layout::of(bits) }
    }

    /// Bits of each code.
    #[inline]
    pub const fn bits(&self) -> u8 {
        self.layout.bits
    }

    /// The stored bytes, for kernels that write codes stored a byte each directly.
    #[inline]
    pub(crate) fn bytes_mut(&mut self) -> &mut [u8] {
        self.bytes
    }

    /// Whether several codes share a byte.
    #[inline]
    pub const fn is_packed(&self) -> bool {
        self.layout.per_log2 > 0
    }

    /// A read-only view of the same codes.
    #[inline]
    pub fn as_codes(&self) -> Codes<'_> {
        Codes { bytes: self.bytes, layout: self.layout }
    }

    /// Stores `codes` (each `< 2^bits`) as elements `first..first + codes.len()`: one copy when codes take a
    /// byte each.
    #[inline(always)]
    pub fn set_run(&mut self, first: usize, codes: &[u8]) {
        let per = 1usize << self.layout.per_log2;
        if per == 1 {
            // A loop, not `copy_from_slice`: runs are a few bytes, too short for a call to memcpy.
            let bytes = &mut self.bytes[first..first + codes.len()];
            bytes.iter_mut().zip(codes).for_each(|(b, &c)| *b = c);
        } else if first.is_multiple_of(per) && codes.len().is_multiple_of(per) {
            // Whole bytes: each is written once, without reading it.
            let bytes = &mut self.bytes[first / per..(first + codes.len()) / per];
            match self.layout.bits_log2 {
                2 => pack_bytes::<4>(codes, bytes),
                1 => pack_bytes::<2>(codes, bytes),
                _ => pack_bytes::<1>(codes, bytes),
            }
        } else {
            codes.iter().enumerate().for_each(|(j, &c)| self.set(first + j, c));
        }
    }

    /// Stores `code` (which must be `< 2^bits`) as element `i`, leaving the other codes of its byte alone.
    #[inline(always)]
    pub fn set(&mut self, i: usize, code: u8) {
        if self.layout.per_log2 == 0 {
            // The common 8-bit case: a plain store.
            self.bytes[i] = code;
            return;
        }
        let (byte, shift) = self.layout.place(i);
        let b = &mut self.bytes[byte];
        *b = (*b & !(self.layout.mask << shift)) | (code << shift);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packing_round_trips_at_every_width() {
        let codes: [u8; 37] = core::array::from_fn(|i| (i * 7 + 3) as u8);
        for bits in 1..=8u8 {
            let codes = codes.map(|c| c & max_code(bits) as u8);
            let mut packed = [0xa5u8; 37];
            let packed = &mut packed[..packed_len(codes.len(), bits)];
            pack_codes(&codes, bits, packed);
            let view = Codes::new(packed, bits);
            let got: [u8; 37] = core::array::from_fn(|i| view.get(i));
            assert_eq!(got, codes, "{bits} bits");
            for first in [0, 1, 8, 16] {
                let mut run = [0u8; 16];
                view.unpack(first, &mut run);
                assert_eq!(run[..], codes[first..first + 16], "{bits} bits from {first}");
            }
        }
    }

    #[test]
    fn runs_read_and_write_what_get_and_set_do() {
        let codes: [u8; 29] = core::array::from_fn(|i| (i * 5 + 1) as u8);
        for bits in 1..=8u8 {
            let codes = codes.map(|c| c & max_code(bits) as u8);
            let mut packed = [0u8; 29];
            let packed = &mut packed[..packed_len(codes.len(), bits)];
            pack_codes(&codes, bits, packed);
            for first in [0, 1, 3, 8, 13] {
                let read: [u8; 16] = {
                    let mut it = Codes::new(packed, bits).iter_from(first);
                    core::array::from_fn(|_| it.next().unwrap())
                };
                assert_eq!(read[..], codes[first..first + 16], "{bits} bits from {first}");
                // Rewrite 11 codes from `first` with new values: exactly those change.
                let mut bytes = [0u8; 29];
                bytes[..packed.len()].copy_from_slice(packed);
                let bytes = &mut bytes[..packed.len()];
                let mut out = CodesMut::new(bytes, bits);
                let mut w = CodeWriter::new(&out, first);
                for j in 0..11 {
                    w.push(&mut out, (j as u8 * 3) & max_code(bits) as u8);
                }
                w.finish(&mut out);
                let view = out.as_codes();
                for (i, &old) in codes.iter().enumerate() {
                    let want = if (first..first + 11).contains(&i) {
                        ((i - first) as u8 * 3) & max_code(bits) as u8
                    } else {
                        old
                    };
                    assert_eq!(view.get(i), want, "{bits} bits, run from {first}, element {i}");
                }
            }
        }
    }

    #[test]
    fn strided_runs_and_whole_byte_runs_match_get_and_set() {
        // Rows of 6 pixels x 8 channels; read channels 4..8 of every pixel, write them back elsewhere.
        let codes: [u8; 48] = core::array::from_fn(|i| (i * 11 + 5) as u8);
        for bits in 1..=8u8 {
            let codes = codes.map(|c| c & max_code(bits) as u8);
            let mut packed = [0u8; 48];
            let packed = &mut packed[..packed_len(codes.len(), bits)];
            pack_codes(&codes, bits, packed);
            let view = Codes::new(packed, bits);
            for n in [1, 4] {
                let mut got = [0u8; 24];
                let got = &mut got[..6 * n];
                view.unpack_strided(4, 8, n, got);
                for (p, px) in got.chunks_exact(n).enumerate() {
                    assert_eq!(px, &codes[p * 8 + 4..p * 8 + 4 + n], "{bits} bits, {n} channels, pixel {p}");
                }
                let mut out = [0u8; 48];
                let out = &mut out[..packed_len(codes.len(), bits)];
                let mut w = CodesMut::new(out, bits);
                for (p, px) in got.chunks_exact(n).enumerate() {
                    w.set_run(p * 8 + 4, px);
                }
                for p in 0..6 {
                    for c in 4..4 + n {
                        assert_eq!(w.as_codes().get(p * 8 + c), codes[p * 8 + c], "{bits} bits, set_run");
                    }
                }
            }
        }
    }

    #[test]
    fn a_word_holds_consecutive_codes_lowest_first() {
        // The layout the lane format relies on: code i of a 4-bit word is bits 4i..4i+4.
        let codes = [1u8, 2, 3, 4, 5, 6, 7, 8];
        let mut packed = [0u8; 4];
        pack_codes(&codes, 4, &mut packed);
        assert_eq!(u32::from_le_bytes(packed), 0x8765_4321);
    }
}
