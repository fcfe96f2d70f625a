//! Randomized checks of the selected kernel variants against the reference kernels, runnable anywhere:
//! the host's tests call it, and the `kernel-test` firmware runs it on each board (`qfd-host kernel-test`),
//! which is where the `asm!` variants execute. No allocation: every case fits fixed buffers.
//!
//! Each case draws a convolution (1-8 x 1-8 pixels, 1-32 input channels, multiples of 4 favoured, 1-9 output
//! channels, kernels 1x1 to 3x3, strides 1-2, any padding up to the kernel, weight and activation bits 1-8,
//! with one case in four at 2-bit weights against 1-2-bit activations and one in four at equal packed widths
//! (1, 2 or 4 bits) over whole words of channels, the forms that have kernels of their own; one case in four
//! a 3x3 depthwise convolution of 2-9 channels, a quarter of them byte-stored throughout and a quarter at
//! 4-bit codes against packed weights; one in sixteen a 3x3 convolution of 68-72 channels at 8-bit weights,
//! whose lanes are gathered in two chunks of taps) and a requantization per channel whose step is usually one
//! or a few accumulator units, so that an accumulator that is off by one changes the output code (some
//! channels take coarse steps and negative multipliers, some cases a narrowed clamp, so that every rounding
//! path runs). Inputs and outputs are stored as the arena stores them (packed at 1, 2 and 4 bits).
//! [`check_conv`] runs it through [`kernels::conv2d`] (what models run) and [`kernels::reference::conv2d`],
//! with the scratch starting at every alignment. One case in eight is a residual add instead
//! ([`kernels::add`] against [`kernels::reference::add`]), one in sixteen a global sum pool and a fully
//! connected layer over its sums, one in sixteen a max or an average pool.

use crate::codes::{Codes, CodesMut};
use crate::format::{Clamp, FcOutput, Padding, Window};
use crate::kernels::{self, select, ConvGeometry, FcInput, Hwc, PoolGeometry};
use crate::requant::{ChannelRequant, RequantParams, CHANNEL_RECORD_BYTES};
use crate::weights::{max_code, pack_codes, packed_len, PackedWeights};

const MAX_HW: usize = 8;
/// Input channels of most cases.
const NARROW_CIN: usize = 32;
/// Input channels of the wide cases.
const MAX_CIN: usize = 72;
const MAX_COUT: usize = 9;
const MAX_PATCH: usize = 9 * MAX_CIN;
// Padding can make the output larger than the input (8 + 2 + 2 - 1 = 11 at most).
const MAX_OUT: usize = 11 * 11 * MAX_COUT;
const MAX_SCRATCH: usize = 4 * 1024;

/// What a run of cases found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    /// Cases run.
    pub cases: u32,
    /// Cases that a variant other than the reference ran (the rest ran the reference twice).
    pub fast_cases: u32,
    /// Cases whose outputs differed.
    pub mismatches: u32,
    /// The first failing case's number, if any.
    pub first_failure: Option<u32>,
    /// CRC-32 of every case's outputs as the selected variants computed them, in order. A board reports
    /// it, and the host compares it with [`reference_digest`] of the same seed and count: the board's
    /// kernels then agree with the host's reference kernels on every output byte.
    pub digest: u32,
}

/// A small xorshift generator: the same cases on every machine for the same seed.
struct Rng(u32);

impl Rng {
    fn next(&mut self) -> u32 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.0 = x;
        x
    }
    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: u32, hi: u32) -> u32 {
        lo + self.next() % (hi - lo + 1)
    }
}

/// Runs `cases` random convolutions from `seed` and counts the ones whose selected variant differs from
/// the reference.
pub fn check_conv(seed: u32, cases: u32) -> Summary {
    run(seed, cases, true)
}

/// The [`Summary::digest`] that [`check_conv`] must report for the same seed and count, computed with the
/// reference kernels alone.
pub fn reference_digest(seed: u32, cases: u32) -> u32 {
    run(seed, cases, false).digest
}

fn run(seed: u32, cases: u32, selected: bool) -> Summary {
    let mut rng = Rng(seed | 1);
    let mut summary = Summary::default();
    let mut digest = crate::PAYLOAD_CRC.digest();
    for case in 0..cases {
        // One case in eight is a residual add, one in sixteen a network's head.
        let (same, fast) = match rng.next() % 16 {
            0 | 1 => add_case(&mut rng, selected, &mut digest),
            2 => head_case(&mut rng, selected, &mut digest),
            3 => pool_case(&mut rng, selected, &mut digest),
            _ => conv_case(&mut rng, case, selected, &mut digest),
        };
        summary.cases += 1;
        summary.fast_cases += fast as u32;
        if !same {
            summary.mismatches += 1;
            summary.first_failure.get_or_insert(case);
        }
    }
    summary.digest = digest.finalize();
    summary
}

/// One case: `(outputs equal, ran a fast variant)`. With `selected`, the case runs through both the selected
/// variant and the reference and the selected variant's outputs go into `digest`; without, only the
/// reference runs and its outputs go into `digest`.
fn conv_case(rng: &mut Rng, case: u32, selected: bool, digest: &mut crc::Digest<'_, u32>) -> (bool, bool) {
    // One case in four is a 3x3 depthwise convolution; one in sixteen a 3x3 one over a wide 8-bit input,
    // whose lanes take two chunks of taps (the sums of the second added to the first's).
    // One in six of the others, and one in four depthwise ones, is Helium's usual case (`form` 7, or 5 and
    // 6 with whole-range clamps and wide divisors); half of the former pointwise (1x1, stride 1: read in
    // place), half of the latter at stride 1 (two pixels a pass).
    let depthwise = rng.next().is_multiple_of(4);
    let wide = !depthwise && rng.next().is_multiple_of(12);
    let helium = !wide && rng.next().is_multiple_of(if depthwise { 4 } else { 6 });
    let pointwise = helium && !depthwise && rng.next().is_multiple_of(2);
    let unit_stride = pointwise || (helium && rng.next().is_multiple_of(2));
    let k = if depthwise || wide {
        [3, 3]
    } else if pointwise {
        [1, 1]
    } else {
        [rng.range(1, 3) as u8, rng.range(1, 3) as u8]
    };
    let stride = if unit_stride { [1, 1] } else { [rng.range(1, 2) as u8, rng.range(1, 2) as u8] };
    let mut pad = || rng.range(0, k[0].max(k[1]) as u32 - 1) as u8;
    let padding = Padding { top: pad(), left: pad(), bottom: pad(), right: pad() };
    let window = Window { kernel: k, stride, padding };
    // The bit-widths: 2-bit weights against activations of at most 2 bits (two codes per lane), equal
    // packed widths (activations read in place), or any.
    // A quarter of the depthwise cases store every tensor a byte per code, a quarter 4-bit codes
    // against packed weights (the forms Helium runs with vectors).
    // Helium's usual case (7): 8-bit weights and inputs, or equal packed widths, a whole-range clamp of
    // 1, 2, 4 or 8 bits and divisors above `2^32`.
    let form = if wide {
        4
    } else if helium && !depthwise {
        7
    } else if depthwise && (helium || rng.next().is_multiple_of(2)) {
        5 + rng.next() % 2
    } else {
        rng.next() % 4
    };
    let packed = [1u8, 2, 4][rng.range(0, 2) as usize];
    let (wbits, abits, obits) = match form {
        0 => (2, rng.range(1, 2) as u8, rng.range(1, 8) as u8),
        1 => (packed, packed, rng.range(1, 8) as u8),
        4 => (8, rng.range(5, 8) as u8, rng.range(1, 8) as u8),
        5 if helium => (8, 8, 8),
        5 => (rng.range(5, 8) as u8, rng.range(5, 8) as u8, rng.range(5, 8) as u8),
        6 => ([1, 2, 4][rng.range(0, 2) as usize], 4, 4),
        7 => match rng.next() % 4 {
            0 => (4, 4, 4),
            1 => (2, 2, 2),
            _ => (8, 8, [1, 2, 4, 8][rng.range(0, 3) as usize]),
        },
        _ => (rng.range(1, 8) as u8, rng.range(1, 8) as u8, rng.range(1, 8) as u8),
    };
    let cin = if form == 1 || (form == 7 && wbits < 8) {
        // Whole 32-bit words of codes per pixel.
        let per_word = 32 / packed as u32;
        (per_word * rng.range(1, NARROW_CIN as u32 / per_word)) as usize
    } else if wide {
        // Nine taps of more than 64 channels are more lanes than `select::BYTE_LANE_BUDGET`.
        4 * rng.range(17, MAX_CIN as u32 / 4) as usize
    } else if rng.next().is_multiple_of(2) {
        4 * rng.range(1, 6) as usize
    } else {
        rng.range(1, NARROW_CIN as u32) as usize
    };
    // (4-bit depthwise cases take an even number of channels, whole bytes per pixel.)
    let cin = if depthwise { cin.clamp(2, MAX_COUT) } else { cin };
    let cin = if form == 6 { cin & !1 } else { cin };
    // (Helium runs depthwise pixels a whole run at a time when their blocks are whole: 4 or 8 channels.)
    let cin = if helium && depthwise { [4, 8][rng.range(0, 1) as usize] } else { cin };
    let cout = if depthwise { cin } else { rng.range(1, MAX_COUT as u32) as usize };
    // (Helium's vector loop takes output channels in pairs.)
    let cout = if helium && !depthwise { (cout & !1).max(2) } else { cout };
    let groups = if depthwise { cin } else { 1 };
    let (h, w) =
        (rng.range(k[0] as u32, MAX_HW as u32) as usize, rng.range(k[1] as u32, MAX_HW as u32) as usize);
    let Some([ho, wo]) = window.output_hw(h, w) else { return (true, false) };
    let (input, output) = (Hwc::new(h, w, cin), Hwc::new(ho, wo, cout));
    let geo = ConvGeometry { input, output, window, groups, input_bits: abits };

    let mut input = [0u8; MAX_HW * MAX_HW * MAX_CIN];
    let input = &mut input[..h * w * cin];
    let extremes = rng.next().is_multiple_of(8);
    for x in input.iter_mut() {
        *x = if extremes {
            (rng.next() % 2) as u8 * max_code(abits) as u8
        } else {
            (rng.next() & max_code(abits) as u32) as u8
        };
    }
    let mut codes = [0u8; MAX_COUT * MAX_PATCH];
    let codes = &mut codes[..cout * geo.patch_len()];
    for c in codes.iter_mut() {
        *c = (rng.next() & max_code(wbits) as u32) as u8;
    }
    let mut packed = [0u8; MAX_COUT * MAX_PATCH];
    let packed = &mut packed[..packed_len(codes.len(), wbits)];
    pack_codes(codes, wbits, packed);

    // A step of about 2^s accumulator units per output code, centred at a random accumulator: usually s in
    // 0-3, one channel in four a coarse step (s up to 28, so that every rounding shift is tried), with
    // multipliers of either sign and magnitude.
    let mut records = [0u8; MAX_COUT * CHANNEL_RECORD_BYTES];
    let records = &mut records[..cout * CHANNEL_RECORD_BYTES];
    let bound = (geo.patch_len() as i64) * max_code(abits) as i64 * max_code(wbits) as i64;
    // One case in three with wide divisors in every channel.
    let wide_divisor = helium || rng.next().is_multiple_of(3);
    for r in records.chunks_exact_mut(CHANNEL_RECORD_BYTES) {
        r.copy_from_slice(&random_requant(rng, bound, obits, wide_divisor).to_record());
    }
    let requant = ChannelRequant { records };
    let clamp = if helium { Clamp { min: 0, max: max_code(obits) as u8 } } else { random_clamp(rng, obits) };
    let weights = PackedWeights { bits: wbits, data: packed };

    let mut stored = [0u8; MAX_HW * MAX_HW * MAX_CIN];
    let stored = &mut stored[..packed_len(input.len(), abits)];
    pack_codes(input, abits, stored);
    let input = Codes::new(stored, abits);

    // Outputs are compared and digested as codes, a byte each.
    let n = ho * wo * cout;
    let unpack = |bytes: &[u8], out: &mut [u8; MAX_OUT]| Codes::new(bytes, obits).unpack(0, &mut out[..n]);
    let mut want = [0u8; MAX_OUT];
    let mut want_stored = [0u8; MAX_OUT];
    let want_stored = &mut want_stored[..packed_len(n, obits)];
    kernels::reference::conv2d(input, &geo, weights, requant, clamp, CodesMut::new(want_stored, obits));
    unpack(want_stored, &mut want);
    let fast = select::conv_variant(&geo, wbits) != select::ConvVariant::Reference;
    if !selected {
        digest.update(&want[..n]);
        return (true, fast);
    }
    let mut got = [0u8; MAX_OUT];
    let mut got_stored = [0xa5u8; MAX_OUT];
    let got_stored = &mut got_stored[..packed_len(n, obits)];
    let mut scratch = [0x5au8; MAX_SCRATCH + 3];
    let need = kernels::conv_scratch_bytes(&geo, wbits);
    let start = case as usize % 4;
    let out = CodesMut::new(got_stored, obits);
    kernels::conv2d(input, &geo, weights, requant, clamp, out, &mut scratch[start..start + need]);
    unpack(got_stored, &mut got);
    digest.update(&got[..n]);
    (got[..n] == want[..n], fast)
}

/// A requantization for accumulators within `±bound`: a step of about `2^s` accumulator units per output
/// code, centred at a random accumulator; usually `s` in 0-3 (2-5 with `wide_divisor`: divisors above
/// `2^32`, the case that Helium requantizes four channels at a time when a whole layer has it), one in
/// four a coarse step (`s` up to 28, so that every rounding shift is tried), with multipliers of either
/// sign and magnitude. One in eight has a
/// multiplier of `±2^30` and an offset of whole `2^32`s, so that the sum's low word is often 0 (for
/// accumulators that are multiples of 4), which is where rounding ties away from zero borrows from the high
/// word.
fn random_requant(rng: &mut Rng, bound: i64, obits: u8, wide_divisor: bool) -> RequantParams {
    let low = if wide_divisor { 2 } else { 0 };
    let s = if rng.next().is_multiple_of(4) { rng.range(4, 28) } else { rng.range(low, low + 3) };
    let shift = -(s as i8);
    let centre = (rng.next() as i64 % (bound + 1)) - bound / 2;
    let n = 31 - shift as i32;
    let round_low_word = rng.next().is_multiple_of(8);
    let magnitude = if round_low_word { 1 << 30 } else { (1 << 30) + (rng.next() >> 2) as i32 };
    let multiplier = if rng.next().is_multiple_of(4) { -magnitude } else { magnitude };
    // acc * multiplier + offset over 2^n: offset = -centre * multiplier, plus half the code range in
    // product units where that stays within the offset's range.
    let half = if n <= 52 { (max_code(obits) as i64 / 2) << n } else { 0 };
    let offset = -centre * multiplier as i64 + half;
    let offset = if round_low_word { offset & !0xffff_ffff } else { offset };
    RequantParams { offset, multiplier, shift }
}

/// The whole code range of `obits` bits, or one time in four a narrower one.
fn random_clamp(rng: &mut Rng, obits: u8) -> Clamp {
    let top = max_code(obits) as u32;
    if rng.next().is_multiple_of(4) {
        let min = rng.range(0, top / 2);
        Clamp { min: min as u8, max: rng.range(min, top) as u8 }
    } else {
        Clamp { min: 0, max: top as u8 }
    }
}

/// One residual add case: `(outputs equal, ran a fast variant)`, as [`conv_case`]. Half of the cases
/// store all three tensors a byte per code (the form with a kernel of its own on Helium), a quarter packs
/// them alike (1, 2 or 4 bits: the table form), the others draw any widths; branch weights of either
/// sign, up to `2^20`.
fn add_case(rng: &mut Rng, selected: bool, digest: &mut crc::Digest<'_, u32>) -> (bool, bool) {
    let widths = match rng.next() % 4 {
        0 | 1 => [8; 3],
        2 => [[1, 2, 4][rng.range(0, 2) as usize]; 3],
        _ => [0; 3].map(|_| rng.range(1, 8) as u8),
    };
    let [abits, bbits, obits] = widths;
    let len = rng.range(1, MAX_OUT as u32) as usize;
    let mut weight = || rng.range(0, 1 << 21) as i32 - (1 << 20);
    let weights = [weight(), weight()];
    let bound = 255 * (1 << 21);
    let wide_divisor = rng.next().is_multiple_of(2);
    let (requant, clamp) = (random_requant(rng, bound, obits, wide_divisor), random_clamp(rng, obits));
    let mut tensors = [[0u8; MAX_OUT]; 2];
    for (t, bits) in tensors.iter_mut().zip([abits, bbits]) {
        let mut codes = [0u8; MAX_OUT];
        codes[..len].iter_mut().for_each(|c| *c = (rng.next() & max_code(bits) as u32) as u8);
        pack_codes(&codes[..len], bits, &mut t[..packed_len(len, bits)]);
    }
    let a = Codes::new(&tensors[0][..packed_len(len, abits)], abits);
    let b = Codes::new(&tensors[1][..packed_len(len, bbits)], bbits);
    let stored = packed_len(len, obits);
    let mut want = [0u8; MAX_OUT];
    kernels::reference::add(a, b, len, weights, requant, clamp, CodesMut::new(&mut want[..stored], obits));
    if !selected {
        digest.update(&want[..stored]);
        return (true, false);
    }
    let mut got = [0u8; MAX_OUT];
    kernels::add(a, b, len, weights, requant, clamp, CodesMut::new(&mut got[..stored], obits));
    digest.update(&got[..stored]);
    let packed_alike = widths[0] < 8 && widths.iter().all(|&w| w == widths[0]);
    (
        got[..stored] == want[..stored],
        packed_alike || cfg!(all(target_arch = "arm", qfd_mve)) && widths == [8; 3],
    )
}

/// One case of a network's head, `(outputs equal, ran a fast variant)` as [`conv_case`]: a global sum pool
/// (1-8 x 1-8 pixels, 1-72 channels, codes of 1-8 bits) and a fully connected layer over its sums (1-9
/// outputs, codes or logits, weights of 1-8 bits); half of the cases byte-stored throughout.
fn head_case(rng: &mut Rng, selected: bool, digest: &mut crc::Digest<'_, u32>) -> (bool, bool) {
    let bytes = rng.next().is_multiple_of(2);
    let mut bits = || if bytes { rng.range(5, 8) as u8 } else { rng.range(1, 8) as u8 };
    let (abits, wbits, obits) = (bits(), bits(), bits());
    let shape =
        Hwc::new(rng.range(1, 8) as usize, rng.range(1, 8) as usize, rng.range(1, MAX_CIN as u32) as usize);
    let mut codes = [0u8; MAX_HW * MAX_HW * MAX_CIN];
    let codes = &mut codes[..shape.elems()];
    codes.iter_mut().for_each(|c| *c = (rng.next() & max_code(abits) as u32) as u8);
    let mut stored = [0u8; MAX_HW * MAX_HW * MAX_CIN];
    let stored = &mut stored[..packed_len(codes.len(), abits)];
    pack_codes(codes, abits, stored);
    let input = Codes::new(stored, abits);
    let outputs = rng.range(1, MAX_COUT as u32) as usize;
    let mut weight_codes = [0u8; MAX_COUT * MAX_CIN];
    let weight_codes = &mut weight_codes[..outputs * shape.c];
    weight_codes.iter_mut().for_each(|c| *c = (rng.next() & max_code(wbits) as u32) as u8);
    let mut packed = [0u8; MAX_COUT * MAX_CIN];
    let packed = &mut packed[..packed_len(weight_codes.len(), wbits)];
    pack_codes(weight_codes, wbits, packed);
    let weights = PackedWeights { bits: wbits, data: packed };
    let bound = (shape.elems() as i64) * max_code(abits) as i64 * max_code(wbits) as i64;
    let mut records = [0u8; MAX_COUT * CHANNEL_RECORD_BYTES];
    let records = &mut records[..outputs * CHANNEL_RECORD_BYTES];
    let wide_divisor = rng.next().is_multiple_of(2);
    for r in records.chunks_exact_mut(CHANNEL_RECORD_BYTES) {
        r.copy_from_slice(&random_requant(rng, bound, obits, wide_divisor).to_record());
    }
    let requant = ChannelRequant { records };
    let kind = if rng.next().is_multiple_of(2) {
        FcOutput::Logits
    } else {
        FcOutput::Codes(random_clamp(rng, obits))
    };
    let out_len = match kind {
        FcOutput::Logits => 4 * outputs,
        FcOutput::Codes(_) => packed_len(outputs, obits),
    };

    // The pool's sums, then the layer's outputs, by the reference kernels and (with `selected`) by the
    // selected ones.
    let head = |pool: fn(Codes<'_>, Hwc, &mut [u8]), fc: FcFn, out: &mut [u8; MAX_HEAD]| {
        let (sums, logits) = out.split_at_mut(4 * MAX_CIN);
        pool(input, shape, &mut sums[..4 * shape.c]);
        let input = FcInput::SumsLe(&sums[..4 * shape.c]);
        fc(input, weights, requant, kind, outputs, obits, &mut logits[..out_len]);
    };
    let mut want = [0u8; MAX_HEAD];
    head(kernels::reference::global_sum_pool, kernels::reference::fully_connected, &mut want);
    let compared = 4 * MAX_CIN + out_len;
    let want = &want[..];
    if !selected {
        digest.update(&want[..4 * shape.c]);
        digest.update(&want[4 * MAX_CIN..compared]);
        return (true, false);
    }
    let mut got = [0u8; MAX_HEAD];
    head(kernels::global_sum_pool, kernels::fully_connected, &mut got);
    digest.update(&got[..4 * shape.c]);
    digest.update(&got[4 * MAX_CIN..compared]);
    let same = got[..4 * shape.c] == want[..4 * shape.c]
        && got[4 * MAX_CIN..compared] == want[4 * MAX_CIN..compared];
    (same, cfg!(all(target_arch = "arm", qfd_mve)) && bytes)
}

/// One pool case, max or average, `(outputs equal, ran a fast variant)` as [`conv_case`]: 1-8 x 1-8
/// pixels, 1-32 channels, windows 1x1 to 3x3, strides 1-2, any padding up to the window; half of the cases
/// byte-stored.
fn pool_case(rng: &mut Rng, selected: bool, digest: &mut crc::Digest<'_, u32>) -> (bool, bool) {
    // Half max pools, half average pools; half of each byte-stored, the form Helium runs with vectors.
    let average = rng.next().is_multiple_of(2);
    let bytes = rng.next().is_multiple_of(2);
    let bits = if bytes { rng.range(5, 8) as u8 } else { rng.range(1, 8) as u8 };
    // (An average pool's output may be narrower; byte-stored cases keep whole-range clamps of 8 bits.)
    let obits = match (average, bytes) {
        (false, _) => bits,
        (true, true) => 8,
        (true, false) => rng.range(1, 8) as u8,
    };
    let k = [rng.range(1, 3) as u8, rng.range(1, 3) as u8];
    let stride = [rng.range(1, 2) as u8, rng.range(1, 2) as u8];
    let mut pad = || rng.range(0, k[0].max(k[1]) as u32 - 1) as u8;
    let padding = Padding { top: pad(), left: pad(), bottom: pad(), right: pad() };
    let window = Window { kernel: k, stride, padding };
    let (h, w, c) =
        (rng.range(1, 8) as usize, rng.range(1, 8) as usize, rng.range(1, NARROW_CIN as u32) as usize);
    let Some([ho, wo]) = window.output_hw(h, w) else { return (true, false) };
    let geo = PoolGeometry { input: Hwc::new(h, w, c), output: Hwc::new(ho, wo, c), window };
    let mut codes = [0u8; MAX_HW * MAX_HW * MAX_CIN];
    let codes = &mut codes[..h * w * c];
    codes.iter_mut().for_each(|x| *x = (rng.next() & max_code(bits) as u32) as u8);
    let mut stored = [0u8; MAX_HW * MAX_HW * MAX_CIN];
    let stored = &mut stored[..packed_len(codes.len(), bits)];
    pack_codes(codes, bits, stored);
    let input = Codes::new(stored, bits);
    let n = packed_len(ho * wo * c, obits);
    // The average's requantization: divisors above `2^32` one time in two (Helium's usual case).
    let taps = (k[0] as i64) * (k[1] as i64);
    let wide_divisor = rng.next().is_multiple_of(2);
    let requant = random_requant(rng, taps * max_code(bits) as i64, obits, wide_divisor);
    let clamp = if bytes { Clamp { min: 0, max: 255 } } else { random_clamp(rng, obits) };
    let pool = |reference: bool, out: &mut [u8]| {
        let out = CodesMut::new(&mut out[..n], obits);
        match (average, reference) {
            (false, true) => kernels::reference::max_pool(input, &geo, out),
            (false, false) => kernels::max_pool(input, &geo, out),
            (true, true) => kernels::reference::avg_pool(input, &geo, requant, clamp, out),
            (true, false) => kernels::avg_pool(input, &geo, requant, clamp, out),
        }
    };
    let mut want = [0u8; MAX_POOL_OUT];
    pool(true, &mut want);
    if !selected {
        digest.update(&want[..n]);
        return (true, false);
    }
    let mut got = [0u8; MAX_POOL_OUT];
    pool(false, &mut got);
    digest.update(&got[..n]);
    (got[..n] == want[..n], cfg!(all(target_arch = "arm", qfd_mve)) && bytes)
}

/// Codes of a pool case's output: padding can make it larger than the input (11 x 11 at most).
const MAX_POOL_OUT: usize = 11 * 11 * NARROW_CIN;

/// Bytes of a head case's outputs: the pool's sums, then the layer's logits.
const MAX_HEAD: usize = 4 * MAX_CIN + 4 * MAX_COUT;

/// The signature of [`kernels::fully_connected`].
type FcFn = fn(FcInput<'_>, PackedWeights<'_>, ChannelRequant<'_>, FcOutput, usize, u8, &mut [u8]);

#[cfg(test)]
mod tests {
    #[test]
    fn every_selected_variant_matches_the_reference() {
        let summary = super::check_conv(0x5eed, 3000);
        assert_eq!(summary.mismatches, 0, "{summary:?}");
        assert_eq!(summary.digest, super::reference_digest(0x5eed, 3000));
        assert_ne!(
            summary.digest,
            super::reference_digest(0x5eee, 3000),
            "the digest must depend on the cases"
        );
        assert!(summary.fast_cases > 1000, "too few cases reached the fast variant: {summary:?}");
    }
}
