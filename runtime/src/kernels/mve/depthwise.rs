//! 3x3 depthwise convolution on Helium, channels across the lanes of a vector. Per block of channels and
//! tap, a gather load brings the tap's codes (`VLDRB.U32` at per-lane offsets from the window row), a
//! widening load the channels' signed odd-grid weights (`2k - (2^bits - 1)`, laid out once per layer in
//! scratch as 16-bit lanes), and `VMUL`/`VADD` add the products; the block's accumulators are then
//! requantized as [`super::to_code`] does, four codes an instruction, and stored with a narrowing store.
//! The loop over blocks is tail-predicated (`DLSTP`), so any channel count works.
//!
//! One `asm!` pass runs a whole run of output pixels: the windows of an output row that lie inside the
//! input, read in place, each pixel's state (weights, requantization, lane count) reloaded from a per-layer
//! [`Layer`] record through one register. At stride 1 the pass takes two pixels at a time, each weight load
//! serving both. A window that overhangs the border is first built, a row at a time, into a zero-padded
//! `3 x 3 x Cin` window in scratch, and run alone.
//!
//! Two forms ([`Form`]): byte-stored codes (four channels a block), and 4-bit codes (eight a block, in
//! 16-bit lanes); both with a whole-range clamp and the usual requantization
//! ([`super::to_code::channel_vectors`]). [`depthwise3x3`] returns `false` for other layers, which take the
//! DSP form.
#![allow(unsafe_code)]

use super::to_code::{channel_vectors, channel_vectors_by, whole_range_bits};
use crate::codes::{packed_len, storage_bits, Codes, CodesMut};
use crate::format::Clamp;
use crate::kernels::{scratch, ConvGeometry};
use crate::requant::ChannelRequant;
use crate::weights::{max_code, PackedWeights};

/// How a layer's codes are stored, as this module runs them.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Form {
    /// A byte per code throughout: four channels a block, 32-bit lanes.
    Bytes,
    /// 4-bit inputs and outputs, weights of at most 4 bits: eight channels a block in 16-bit lanes,
    /// where nine products of at most `15 * 15` (the odd channels' at 16 times that, see
    /// [`run_nibbles`]) cannot overflow.
    Nibbles,
}

/// The layer in `scratch` (at least [`crate::kernels::depthwise::helium_scratch_bytes`] bytes); returns
/// whether it ran (see the module documentation).
#[allow(clippy::too_many_arguments)]
pub fn depthwise3x3(
    input: Codes<'_>,
    geo: &ConvGeometry,
    weights: PackedWeights<'_>,
    requant: ChannelRequant<'_>,
    clamp: Clamp,
    output: &mut CodesMut<'_>,
    scratch: &mut [u8],
) -> bool {
    let ch = geo.input.c;
    let form = match [input.bits(), weights.bits, output.bits()].map(storage_bits) {
        [8, 8, 8] => Form::Bytes,
        [4, w, 4] if w <= 4 && ch % 2 == 0 => Form::Nibbles,
        _ => return false,
    };
    // (A model file's weights always have this length: loading checks it.)
    let Some(clamp_bits) =
        whole_range_bits(clamp).filter(|_| weights.data.len() == packed_len(9 * ch, weights.bits))
    else {
        return false;
    };
    let (words, window) = scratch.split_at_mut(scratch.len() - 9 * ch);
    let blocks = ch.div_ceil(8);
    let words = scratch::words(words, crate::kernels::depthwise::helium_scratch_words(geo));
    let (params, signed) = words.split_at_mut(32 * blocks);
    let signed = scratch::halves_mut(signed);
    let (inp, out, win) = (geo.input, geo.output, &geo.window);
    // Per form: the requantization and the signed weights laid out for the lanes, the gather offsets (and
    // mask); the bytes of a pixel's codes.
    let mut offsets = [0u32; 16];
    let pixel_bytes = match form {
        Form::Bytes => {
            if !channel_vectors(requant, ch, params) {
                return false;
            }
            lay_out_weights(weights, ch, 4, &mut signed[..36 * ch.div_ceil(4)]);
            // Window column `kx`, lane `j`: byte `kx * Cin + j` (column 3: the next pixel's last column).
            for (i, o) in offsets.iter_mut().enumerate() {
                *o = ((i / 4) * ch + i % 4) as u32;
            }
            ch
        }
        Form::Nibbles => {
            // Block `b`'s even channels in one vector, its odd ones in the next.
            let order = |slot: usize| 8 * (slot / 8) + 2 * (slot % 4) + slot / 4 % 2;
            if clamp_bits != 4 || !channel_vectors_by(requant, ch, 8 * blocks, params, order) {
                return false;
            }
            lay_out_weights(weights, ch, 8, &mut signed[..72 * blocks]);
            // Window column `kx`, 16-bit lane `j`: byte `kx * Cin / 2 + j / 2`; then the mask of lane `j`'s
            // code in its byte.
            let halves = scratch::halves_mut(&mut offsets);
            for (i, o) in halves[..24].iter_mut().enumerate() {
                *o = ((i / 8) * ch / 2 + i % 8 / 2) as u16;
            }
            for (j, m) in halves[24..].iter_mut().enumerate() {
                *m = if j % 2 == 0 { 0x0f } else { 0xf0 };
            }
            ch / 2
        }
    };
    let [sy, sx] = win.stride.map(usize::from);
    let step = sx * pixel_bytes;
    let layer = Layer::new(form, ch, step, signed, params, offsets);
    // The columns whose windows lie inside the input's width: `lo..hi`.
    let pad_left = win.padding.left as usize;
    let lo = pad_left.div_ceil(sx).min(out.w);
    let hi = ((inp.w + pad_left).saturating_sub(3) / sx + 1).clamp(lo, out.w);
    let row_len = inp.w * pixel_bytes;
    let codes = input.bytes();
    let out_bytes = output.bytes_mut();
    let window = &mut window[..9 * pixel_bytes];
    for oy in 0..out.h {
        let iy0 = (oy * sy) as isize - win.padding.top as isize;
        let out_row = &mut out_bytes[oy * out.w * pixel_bytes..(oy + 1) * out.w * pixel_bytes];
        let row_inside = iy0 >= 0 && iy0 as usize + 3 <= inp.h;
        let (lo, hi) = if row_inside { (lo, hi) } else { (out.w, out.w) };
        // Windows over the border, one at a time, each copied with its padding into `window` first.
        for ox in (0..lo).chain(hi..out.w) {
            let ix0 = (ox * sx) as isize - pad_left as isize;
            // Per window row: the columns inside the input copied as one run, the others zeroed.
            let (first, last) = (ix0.max(0), (ix0 + 3).min(inp.w as isize));
            let (before, inside) = ((first - ix0) as usize, (last - first).max(0) as usize);
            for (ky, dst) in window.chunks_exact_mut(3 * pixel_bytes).enumerate() {
                let iy = iy0 + ky as isize;
                if iy < 0 || iy >= inp.h as isize || inside == 0 {
                    super::zero(dst);
                    continue;
                }
                let (left, rest) = dst.split_at_mut(before * pixel_bytes);
                let (middle, right) = rest.split_at_mut(inside * pixel_bytes);
                let at = (iy as usize * inp.w + first as usize) * pixel_bytes;
                super::zero(left);
                super::copy(&codes[at..at + middle.len()], middle);
                super::zero(right);
            }
            let window = &*window;
            let rows = core::array::from_fn(|ky| &window[3 * ky * pixel_bytes..3 * (ky + 1) * pixel_bytes]);
            let pixel = &mut out_row[ox * pixel_bytes..(ox + 1) * pixel_bytes];
            run(&layer, clamp_bits, rows, 1, pixel);
        }
        // The windows inside the input, read in place: runs of pixels.
        let mut ox = lo;
        while ox < hi {
            let pixels = if layer.whole_blocks() { hi - ox } else { 1 };
            let start = iy0 as usize * row_len + (ox * sx - pad_left) * pixel_bytes;
            let len = (pixels - 1) * step + 3 * pixel_bytes;
            let rows = core::array::from_fn(|ky| &codes[start + ky * row_len..start + ky * row_len + len]);
            run(
                &layer,
                clamp_bits,
                rows,
                pixels,
                &mut out_row[ox * pixel_bytes..(ox + pixels) * pixel_bytes],
            );
            ox += pixels;
        }
    }
    true
}

/// What a pass over a run of output pixels reads besides their windows, laid out once per layer, so that
/// the pass can reload it for each pixel from one register: see [`Layer::new`].
#[repr(C)]
struct Layer<'a> {
    /// Word 0: the signed weights, laid out for the form's blocks.
    signed: *const u16,
    /// Word 1: the requantization, laid out for the form's blocks.
    params: *const u32,
    /// Word 2: the lanes of one pixel (its channels).
    lanes: u32,
    /// Word 3: bytes from the end of one pixel's codes to the start of the next pixel's window (the
    /// stride, less one pixel).
    skip: u32,
    /// Words 4-19: the gather offsets of window columns 0, 1 and 2 (and, for [`Form::Nibbles`], the
    /// mask of each lane's code in its byte).
    offsets: [u32; 16],
    /// (Not read by the passes.) The form.
    form: Form,
    /// (Not read by the passes.) Bytes of one pixel's codes.
    pixel_bytes: usize,
    /// The slices behind `signed` and `params`, borrowed for as long as the pointers are used.
    _borrow: core::marker::PhantomData<&'a [u32]>,
}

impl<'a> Layer<'a> {
    /// The layer's weights (`signed`) and requantization (`params`) for `ch` channels in `form`, whose
    /// windows are `step` bytes apart; checks that both hold every block's entries.
    fn new(
        form: Form,
        ch: usize,
        step: usize,
        signed: &'a [u16],
        params: &'a [u32],
        offsets: [u32; 16],
    ) -> Self {
        let (pixel_bytes, lanes_per_block) = match form {
            Form::Bytes => (ch, 4),
            Form::Nibbles => (ch / 2, 8),
        };
        let blocks = ch.div_ceil(lanes_per_block);
        assert!(signed.len() >= 9 * lanes_per_block * blocks && params.len() >= 4 * lanes_per_block * blocks);
        assert!(step >= pixel_bytes);
        Layer {
            signed: signed.as_ptr(),
            params: params.as_ptr(),
            lanes: ch as u32,
            skip: (step - pixel_bytes) as u32,
            offsets,
            form,
            pixel_bytes,
            _borrow: core::marker::PhantomData,
        }
    }

    /// Whether a pixel's blocks are whole bytes of codes (4 bytes each: four byte-stored channels, eight
    /// 4-bit ones), so that they end where the next pixel's codes start and one pass can run many pixels.
    fn whole_blocks(&self) -> bool {
        self.pixel_bytes % 4 == 0
    }
}

/// One pass of the layer over `pixels` output pixels whose windows' rows start at `rows` (each window
/// `3 * pixel_bytes` bytes a row, the next window `step` bytes further on), into `out`, with the clamp
/// `0..2^clamp_bits`.
fn run(layer: &Layer<'_>, clamp_bits: u32, rows: [&[u8]; 3], pixels: usize, out: &mut [u8]) {
    let pixel_bytes = layer.pixel_bytes;
    let step = pixel_bytes + layer.skip as usize;
    // Every lane a pass reads lies inside its window row, and the blocks of a pixel end where the next
    // one's codes start unless the run is one pixel.
    assert!(pixels > 0 && out.len() == pixels * pixel_bytes);
    assert!(rows.iter().all(|r| r.len() >= (pixels - 1) * step + 3 * pixel_bytes));
    assert!(pixels == 1 || layer.whole_blocks());
    // Stride 1: pixels two at a time, the second's window one pixel further on.
    if layer.form == Form::Bytes && pixels >= 2 && layer.skip == 0 {
        let pairs = pixels / 2;
        let (out_pairs, out_rest) = out.split_at_mut(2 * pairs * pixel_bytes);
        match clamp_bits {
            1 => run_byte_pairs::<31>(layer, rows, pairs, out_pairs),
            2 => run_byte_pairs::<30>(layer, rows, pairs, out_pairs),
            4 => run_byte_pairs::<28>(layer, rows, pairs, out_pairs),
            _ => run_byte_pairs::<24>(layer, rows, pairs, out_pairs),
        }
        if out_rest.is_empty() {
            return;
        }
        let rows = rows.map(|r| &r[2 * pairs * step..]);
        return run(layer, clamp_bits, rows, 1, out_rest);
    }
    match (layer.form, clamp_bits) {
        (Form::Nibbles, _) => run_nibbles(layer, rows, pixels, out),
        (_, 1) => run_bytes::<31>(layer, rows, pixels, out),
        (_, 2) => run_bytes::<30>(layer, rows, pixels, out),
        (_, 4) => run_bytes::<28>(layer, rows, pixels, out),
        _ => run_bytes::<24>(layer, rows, pixels, out),
    }
}

/// Lays out the signed odd-grid weights (`2k - (2^bits - 1)`) of the layer's `ch` channels for blocks of
/// `lanes` channels: block `b`, tap `t`, lane `j` at `(b * 9 + t) * lanes + j` of `signed` (whole blocks;
/// 0 past the last channel). Byte-stored weights are read as bytes, a channel's nine a row, without
/// unpacking.
fn lay_out_weights(weights: PackedWeights<'_>, ch: usize, lanes: usize, signed: &mut [u16]) {
    let top = max_code(weights.bits);
    let odd_grid = |k: u8| (2 * k as i32 - top) as i16 as u16;
    signed.fill(0);
    // Block by block: lane `j`'s tap `t` at `t * lanes + j` of the block's entries.
    let blocks = signed.chunks_exact_mut(9 * lanes);
    if storage_bits(weights.bits) == 8 {
        // The block's channels' rows, nine bytes each, one after another.
        for (block, rows) in blocks.zip(weights.data.chunks(9 * lanes)) {
            for (j, row) in rows.chunks_exact(9).enumerate() {
                for (t, &k) in row.iter().enumerate() {
                    if let Some(slot) = block.get_mut(t * lanes + j) {
                        *slot = odd_grid(k);
                    }
                }
            }
        }
    } else {
        for (b, block) in blocks.enumerate() {
            for j in 0..lanes.min(ch.saturating_sub(b * lanes)) {
                for t in 0..9 {
                    if let Some(slot) = block.get_mut(t * lanes + j) {
                        *slot = odd_grid(weights.code((b * lanes + j) * 9 + t));
                    }
                }
            }
        }
    }
}

/// One window row's three taps for a block: each tap's codes gathered from `$x` at the offsets in `q5`,
/// `q6`, `q7`, times the next weights of `r1`, added to `q0` (set by the first tap when `$first`).
macro_rules! window_row {
    ($x:literal, $first:literal) => {
        concat!(
            "vldrb.u32 q1, [",
            $x,
            ", q5]\n",
            "vldrh.s32 q2, [r1], #8\n",
            $first,
            "vldrb.u32 q1, [",
            $x,
            ", q6]\n",
            "vldrh.s32 q2, [r1], #8\n",
            "vmul.i32 q1, q1, q2\n",
            "vadd.i32 q0, q0, q1\n",
            "vldrb.u32 q1, [",
            $x,
            ", q7]\n",
            "vldrh.s32 q2, [r1], #8\n",
            "vmul.i32 q1, q1, q2\n",
            "vadd.i32 q0, q0, q1\n",
            "adds ",
            $x,
            ", #4\n",
        )
    };
}

/// Runs of the pixel loop, as [`run_bytes`] and [`run_nibbles`] share them: per pixel, the weights
/// (`r1`), requantization (`{p}`) and lane count reloaded from the [`Layer`] at `{st}`, then `$pass`, a
/// tail-predicated loop over the pixel's blocks (`2:`) that advances the row pointers by a block's
/// bytes; then the rows advanced to the next window. Outputs go through `r0`, which the passes advance.
macro_rules! pixel_runs {
    ($dlstp:literal, $pass:expr, $layer:expr, $rows:expr, $pixels:expr, $out:expr, $sat:expr) => {
        asm_all_q!({
            "1:",
            "ldr r1, [{st}]",
            "ldr {p}, [{st}, #4]",
            "ldr {n}, [{st}, #8]",
            concat!($dlstp, " lr, {n}"),
            "2:",
            $pass,
            "letp lr, 2b",
            "ldr {n}, [{st}, #12]",
            "add {x0}, {n}",
            "add {x1}, {n}",
            "add {x2}, {n}",
            "subs {count}, #1",
            "bne 1b",
            st = in(reg) $layer as *const Layer<'_>,
            n = out(reg) _,
            p = out(reg) _,
            count = inout(reg) $pixels => _,
            x0 = inout(reg) $rows[0].as_ptr() => _,
            x1 = inout(reg) $rows[1].as_ptr() => _,
            x2 = inout(reg) $rows[2].as_ptr() => _,
            // (Widening loads and narrowing stores take a low register as their base.)
            inout("r0") $out.as_mut_ptr() => _,
            out("r1") _,
            one = in(reg) 1u32,
            sat = const $sat,
            out("lr") _,
        } options(nostack))
    };
}

/// [`run`] for [`Form::Bytes`], with the clamp as `SAT = 32 - b`: per block of four channels, nine gathered
/// taps times their weights, the requantization, a narrowing store.
fn run_bytes<const SAT: u32>(layer: &Layer<'_>, rows: [&[u8]; 3], pixels: usize, out: &mut [u8]) {
    // SAFETY: per pixel, the tail-predicated loop runs over its `ch` lanes, four channels a pass: the
    // gathers read codes `kx * ch + c` (`c < ch`, `kx < 3`) of each window row, inside the rows as `run`
    // asserts (the rows then advance by `skip` past the pixel's `ch` codes, to the next window); the weight
    // and parameter loads read a block's 36 halfwords and 16 words, inside the slices `Layer::new` checked
    // (and borrows); the `Layer` itself is read at words 0-15. The stores write the pixel's `ch` bytes,
    // `pixels * ch` in all (the pixel's blocks are whole unless the run is one pixel): `out`. It also
    // writes the pointers it advances (copies), `n`, `p`, `r1`, `lr` and `q0`-`q7`, all declared.
    unsafe {
        pixel_runs!(
            "dlstp.32",
            concat!(
                "vldrw.u32 q5, [{st}, #16]\n",
                "vldrw.u32 q6, [{st}, #32]\n",
                "vldrw.u32 q7, [{st}, #48]\n",
                window_row!("{x0}", "vmul.i32 q0, q1, q2\n"),
                window_row!("{x1}", "vmul.i32 q1, q1, q2\nvadd.i32 q0, q0, q1\n"),
                window_row!("{x2}", "vmul.i32 q1, q1, q2\nvadd.i32 q0, q0, q1\n"),
                requant_params!(),
                requant_vector!("q0", "r0"),
            ),
            layer,
            rows,
            pixels,
            out,
            SAT
        );
    }
}

/// One window row's three taps for a block, at two pixels a column apart: each tap's weights (the next of
/// `r1`) loaded once, pixel A's codes gathered from `$x` at the offsets in `q5`, `q6`, `q7` and pixel B's
/// at those in `q6`, `q7`, `q4`; the products added to `q0` (A) and `q1` (B), or setting them when
/// `$first` (the first row).
macro_rules! window_row_pair {
    ($x:literal, $first:tt) => {
        concat!(
            "vldrh.s32 q2, [r1], #8\n",
            "vldrb.u32 q3, [", $x, ", q5]\n",
            window_row_pair!(@acc $first, "q0"),
            "vldrb.u32 q3, [", $x, ", q6]\n",
            window_row_pair!(@acc $first, "q1"),
            "vldrh.s32 q2, [r1], #8\n",
            "vldrb.u32 q3, [", $x, ", q6]\n",
            window_row_pair!(@acc false, "q0"),
            "vldrb.u32 q3, [", $x, ", q7]\n",
            window_row_pair!(@acc false, "q1"),
            "vldrh.s32 q2, [r1], #8\n",
            "vldrb.u32 q3, [", $x, ", q7]\n",
            window_row_pair!(@acc false, "q0"),
            "vldrb.u32 q3, [", $x, ", q4]\n",
            window_row_pair!(@acc false, "q1"),
            "adds ", $x, ", #4\n",
        )
    };
    (@acc true, $q:literal) => {
        concat!("vmul.i32 ", $q, ", q3, q2\n")
    };
    (@acc false, $q:literal) => {
        concat!("vmul.i32 q3, q3, q2\nvadd.i32 ", $q, ", ", $q, ", q3\n")
    };
}

/// [`run`] for [`Form::Bytes`] at stride 1, two pixels a pass (`pairs` pairs into `out`), with the clamp
/// as `SAT = 32 - b`: each weight load serves both pixels, whose windows share two columns.
fn run_byte_pairs<const SAT: u32>(layer: &Layer<'_>, rows: [&[u8]; 3], pairs: usize, out: &mut [u8]) {
    let ch = layer.lanes as usize;
    assert!(pairs > 0 && out.len() == 2 * pairs * ch && ch % 4 == 0 && layer.skip == 0);
    assert!(rows.iter().all(|r| r.len() >= (2 * pairs + 2) * ch));
    // SAFETY: per pair, the tail-predicated loop runs over its `ch` lanes, four channels a pass: the
    // gathers read codes `kx * ch + c` (`c < ch`, `kx < 4`: both windows) of each row, inside the rows as
    // asserted (pair `q`'s windows start at `2q * ch`; the rows advance by `ch` in the loop and `ch` after
    // it); the weight and parameter loads read a block's 36 halfwords and 16 words, inside the slices
    // `Layer::new` checked (and borrows); the `Layer` itself is read at words 0-15. The stores write the
    // pair's `2 * ch` bytes (A's through `r0`, B's through `r2`, each then moved past the other's),
    // `out`. It also writes the pointers it advances (copies), `n`, `p`, `r1`, `lr` and `q0`-`q7`, all
    // declared.
    unsafe {
        asm_all_q!({
            "1:",
            "ldr r1, [{st}]",
            "ldr {p}, [{st}, #4]",
            "ldr {n}, [{st}, #8]",
            "dlstp.32 lr, {n}",
            "2:",
            "vldrw.u32 q4, [{st}, #64]",
            "vldrw.u32 q5, [{st}, #16]",
            "vldrw.u32 q6, [{st}, #32]",
            "vldrw.u32 q7, [{st}, #48]",
            window_row_pair!("{x0}", true),
            window_row_pair!("{x1}", false),
            window_row_pair!("{x2}", false),
            requant_params!(),
            requant_vector!("q0", "r0"),
            requant_vector!("q1", "r2"),
            "letp lr, 2b",
            "ldr {n}, [{st}, #8]",
            "add {x0}, {n}",
            "add {x1}, {n}",
            "add {x2}, {n}",
            "add r0, {n}",
            "add r2, {n}",
            "subs {count}, #1",
            "bne 1b",
            st = in(reg) layer as *const Layer<'_>,
            n = out(reg) _,
            p = out(reg) _,
            count = inout(reg) pairs => _,
            x0 = inout(reg) rows[0].as_ptr() => _,
            x1 = inout(reg) rows[1].as_ptr() => _,
            x2 = inout(reg) rows[2].as_ptr() => _,
            // (Widening loads and narrowing stores take a low register as their base.)
            inout("r0") out.as_mut_ptr() => _,
            inout("r2") out.as_mut_ptr().wrapping_add(ch) => _,
            out("r1") _,
            one = in(reg) 1u32,
            sat = const SAT,
            out("lr") _,
        } options(nostack));
    }
}

/// One window row's three taps for a block of eight 4-bit channels: each tap's bytes gathered from `$x` at
/// the 16-bit offsets in `q5`, `q6`, `q7`, each lane's code masked out of its byte by `q3` (even channels
/// low, odd channels high, so at 16 times their value), times the next weights of `r1`, added to `q0`
/// (set by the first tap when `$first`).
macro_rules! window_row_nibbles {
    ($x:literal, $first:literal) => {
        concat!(
            "vldrb.u16 q1, [",
            $x,
            ", q5]\n",
            "vand q1, q1, q3\n",
            "vldrh.u16 q2, [r1], #16\n",
            $first,
            "vldrb.u16 q1, [",
            $x,
            ", q6]\n",
            "vand q1, q1, q3\n",
            "vldrh.u16 q2, [r1], #16\n",
            "vmul.i16 q1, q1, q2\n",
            "vadd.i16 q0, q0, q1\n",
            "vldrb.u16 q1, [",
            $x,
            ", q7]\n",
            "vand q1, q1, q3\n",
            "vldrh.u16 q2, [r1], #16\n",
            "vmul.i16 q1, q1, q2\n",
            "vadd.i16 q0, q0, q1\n",
            "adds ",
            $x,
            ", #4\n",
        )
    };
}

/// [`run`] for [`Form::Nibbles`]: sums in 16-bit lanes (an odd channel's at 16 times its value: its code
/// is masked in place, high in its byte, and shifted down once, after the nine taps), then widened into
/// the even channels' and the odd channels' 32-bit lanes, requantized, and packed back into bytes.
fn run_nibbles(layer: &Layer<'_>, rows: [&[u8]; 3], pixels: usize, out: &mut [u8]) {
    // SAFETY: per pixel, the tail-predicated loop runs over its `ch` 16-bit lanes, eight channels a pass:
    // the gathers read bytes `kx * ch / 2 + j / 2` (`j < ch` active lanes, `kx < 3`) of each window row,
    // inside the rows as `run` asserts (the rows then advance by `skip` past the pixel's `ch / 2` bytes, to
    // the next window); the weight and parameter loads read a block's 72 halfwords and 32 words, inside
    // the slices `Layer::new` checked (and borrows); the `Layer` itself is read at words 0-19. The stores
    // write the pixel's `ch / 2` bytes, `pixels * ch / 2` in all (the pixel's blocks are whole unless the
    // run is one pixel): `out`. It also writes the pointers it advances (copies), `n`, `p`, `r1`, `lr` and
    // `q0`-`q7`, all declared.
    unsafe {
        pixel_runs!(
            "dlstp.16",
            concat!(
                "vldrw.u32 q3, [{st}, #64]\n",
                "vldrw.u32 q5, [{st}, #16]\n",
                "vldrw.u32 q6, [{st}, #32]\n",
                "vldrw.u32 q7, [{st}, #48]\n",
                window_row_nibbles!("{x0}", "vmul.i16 q0, q1, q2\n"),
                window_row_nibbles!("{x1}", "vmul.i16 q1, q1, q2\nvadd.i16 q0, q0, q1\n"),
                window_row_nibbles!("{x2}", "vmul.i16 q1, q1, q2\nvadd.i16 q0, q0, q1\n"),
                "vmovlt.s16 q1, q0\n",
                "vmovlb.s16 q0, q0\n",
                "vshr.s32 q1, q1, #4\n",
                requant_params!(),
                requant_vector!("q0"),
                requant_params!(),
                requant_vector!("q1"),
                "vshl.i32 q1, q1, #4\n",
                "vorr q0, q0, q1\n",
                "vstrb.32 q0, [r0], #4\n",
            ),
            layer,
            rows,
            pixels,
            out,
            28
        );
    }
}
