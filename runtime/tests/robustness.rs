//! Robustness: corrupted, truncated and hostile `.qfdm` files give a typed error or a valid run, never a panic.
//!
//! `mutated_models_never_panic` feeds more than 10,000 mutated files to [`Model::load`] and, when one loads,
//! to [`Model::run`]:
//! - byte-level mutations of the encoded file (truncations, 1-8 bit flips, bytes overwritten with
//!   `0x00`/`0xFF`/`0x80`, bytes inserted, deleted or appended); those inside the payload must be caught by the
//!   CRC;
//! - structure-aware mutations that survive the CRC: the [`FileHeader`] and [`ModelDesc`] are decoded, fields
//!   are changed (huge dimensions, offsets past the arena, bad op references, zero or huge kernels and strides,
//!   bad groups, weight bit-widths and data lengths, requantization tables, shifts, clamps, swapped, duplicated
//!   and removed ops), and the payload is re-encoded with a fresh CRC, so the validator itself is exercised.
//!
//! Every mutation is derived from its index with a seeded RNG: a failure names the seed model, the index and
//! what was changed, and is reproducible. `docs/fuzzing.md` explains how to run this and the fuzzer.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Once;
use std::time::Instant;

use qfd_codegen::encode_model;
use qfd_codegen::stats::total_macs;
use qfd_codegen::synth::{all_ops, synth, Arch, SynthConfig, VitShape};
use qfd_runtime::format::{
    AvgPoolDesc, Clamp, ElemType, FcOutput, FileHeader, GlobalSumPoolDesc, MaxPoolDesc, ModelDesc, OpDesc,
    Padding, Window, FORMAT_MAJOR,
};
use qfd_runtime::kernels::ProbCodes;
use qfd_runtime::requant::{
    ChannelRequant, RequantParams, CHANNEL_RECORD_BYTES, MAX_OFFSET, MAX_SHIFT, MIN_SHIFT,
};
use qfd_runtime::weights::{codes_per_byte, max_code, packed_len, PackedWeights};
use qfd_runtime::{LoadError, Model, RunError, PAYLOAD_CRC};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

/// Byte-level mutated files.
const BYTE_MUTATIONS: usize = 4_000;
/// Structure-aware mutated files.
const STRUCT_MUTATIONS: usize = 6_400;
/// The issue asks for at least this many mutated files.
const REQUIRED_FILES: usize = 10_000;
/// Loaded models with a larger arena are counted but not run (a mutation may validly ask for 4 GiB).
const MAX_RUN_ARENA: usize = 64 << 20;
/// Loaded models doing more work than this (MACs plus pooling taps) are counted but not run.
const MAX_RUN_WORK: u64 = 50_000_000;

// ---------------------------------------------------------------------------------------------------------
// Seed models
// ---------------------------------------------------------------------------------------------------------

/// Data that structure-aware mutations splice into a model (slices must outlive the decoded description, so
/// they are made once per seed).
struct Scratch {
    /// Random bytes: packed codes of any width, or out-of-range codes for byte-container widths.
    random: Vec<u8>,
    /// Random codes `0..=7`: valid for every byte-container width (3, 5-8 bits).
    low: Vec<u8>,
    /// Valid requantization records (shift in range, modest offset).
    records: Vec<u8>,
    /// Records of which every seventh has a shift out of range.
    bad_shift: Vec<u8>,
    /// Records whose offset is `2^62` or more in magnitude (out of range: `OffsetOutOfRange`).
    big_offset: Vec<u8>,
    /// Valid records whose offset is `+-MAX_OFFSET`: the extremes of the 64-bit arithmetic for requantizing
    /// layers, and beyond the accumulator proof for logits layers.
    edge_offset: Vec<u8>,
}

struct Seed {
    name: &'static str,
    bytes: Vec<u8>,
    /// Offset of the payload in `bytes` (the payload is the header's last field).
    payload_start: usize,
    scratch: Scratch,
}

fn synth_seed(name: &'static str, arch: Arch, input: [usize; 3], width: f32, bits: u8, seed: u64) -> Seed {
    let mut cfg = SynthConfig::new(arch, input);
    cfg.width = width;
    cfg.weight_bits = bits;
    cfg.act_bits = bits;
    cfg.seed = seed;
    make_seed(name, encode_model(&synth(&cfg).expect("synthetic seed builds")).expect("seed encodes"))
}

fn make_seed(name: &'static str, bytes: Vec<u8>) -> Seed {
    let header: FileHeader<'_> = postcard::from_bytes(&bytes).expect("seed header decodes");
    let payload_start = bytes.len() - header.payload.len();
    assert_eq!(&bytes[payload_start..], header.payload);
    let mut rng = SmallRng::seed_from_u64(bytes.len() as u64);
    let len = (2 * bytes.len()).max(64 * 1024);
    let random: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
    let low: Vec<u8> = (0..len).map(|_| rng.gen_range(0..=7)).collect();
    let record = |rng: &mut SmallRng, offset: i64, shift: i8| {
        RequantParams { offset, multiplier: rng.gen(), shift }.to_record()
    };
    let (mut records, mut bad_shift, mut big_offset, mut edge_offset) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for i in 0..4096 {
        let (offset, shift) = (rng.gen_range(-(1i64 << 40)..1 << 40), rng.gen_range(-31..=30));
        records.extend(record(&mut rng, offset, shift));
        let bad = if i % 7 == 3 { *pick(&mut rng, &[31, 32, 127, -32, -128]) } else { shift };
        bad_shift.extend(record(&mut rng, offset, bad));
        let beyond = rng.gen_range(0..1i64 << 62);
        let big = *pick(
            &mut rng,
            &[1 << 62, -(1 << 62), i64::MAX, i64::MIN, (1 << 62) + beyond, -(1 << 62) - beyond],
        );
        big_offset.extend(record(&mut rng, big, shift));
        let edge = *pick(&mut rng, &[MAX_OFFSET, -MAX_OFFSET]);
        let edge_shift = *pick(&mut rng, &[MIN_SHIFT, MAX_SHIFT, shift]);
        edge_offset.extend(record(&mut rng, edge, edge_shift));
    }
    let scratch = Scratch { random, low, records, bad_shift, big_offset, edge_offset };
    Seed { name, bytes, payload_start, scratch }
}

/// A small synthetic ViT: 16 tokens of 16 channels, two heads, one block.
fn vit_model() -> Vec<u8> {
    let mut cfg = SynthConfig::new(Arch::Vit, [8, 8, 1]);
    cfg.vit = VitShape { patch: 2, dim: 16, depth: 1, heads: 2, mlp_ratio: 2 };
    cfg.seed = 4;
    encode_model(&synth(&cfg).expect("the ViT seed builds")).expect("the ViT seed encodes")
}

/// The fixture of every op kind (see `qfd_codegen::synth::all_ops`).
fn all_ops_model() -> Vec<u8> {
    encode_model(&all_ops(7)).expect("all-ops model encodes")
}

fn seeds() -> Vec<Seed> {
    vec![
        synth_seed("resnet8 16x16x3 W4A4", Arch::ResNet8, [16, 16, 3], 1.0, 4, 1),
        synth_seed("mobilenetv1-0.25 24x24x1 W2A2", Arch::MobileNetV1, [24, 24, 1], 0.25, 2, 2),
        synth_seed("resnet20 8x8x1 W1A1", Arch::ResNet20, [8, 8, 1], 1.0, 1, 3),
        make_seed("all-ops 10x10x2", all_ops_model()),
        make_seed("vit 8x8x1", vit_model()),
    ]
}

// ---------------------------------------------------------------------------------------------------------
// Checking one file
// ---------------------------------------------------------------------------------------------------------

/// What happened to one file.
enum Outcome {
    /// `Model::load` refused it.
    Refused(LoadError),
    /// It loaded but was too large to run here.
    NotRun,
    /// It loaded and ran (or `run` refused the buffers, e.g. an input code above the input's bit-width).
    Ran(Result<usize, RunError>),
    /// Something broke a rule: a panic, or a run whose result depends on the arena's previous contents.
    Bug(String),
}

impl Outcome {
    fn key(&self) -> String {
        match self {
            Outcome::Refused(e) => format!("load: {}", variant(e)),
            Outcome::NotRun => "loaded, not run (too large)".into(),
            Outcome::Ran(Ok(_)) => "loaded, ran: ok".into(),
            Outcome::Ran(Err(e)) => format!("loaded, run: {}", variant(e)),
            Outcome::Bug(_) => "BUG".into(),
        }
    }
}

/// The variant name of an error (`ShapeMismatch { op: 3 }` -> `ShapeMismatch`).
fn variant(e: &impl std::fmt::Debug) -> String {
    let s = format!("{e:?}");
    s.split([' ', '{', '(']).next().unwrap_or_default().to_string()
}

thread_local! {
    static CAPTURING: Cell<bool> = const { Cell::new(false) };
    static LAST_PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Panics inside [`check_file`] are recorded (message, location and the runtime's frames of the backtrace)
/// instead of printed, so that a failure report can name the mutation that caused it.
fn install_panic_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let default = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if !CAPTURING.with(Cell::get) {
                return default(info);
            }
            let trace = std::backtrace::Backtrace::force_capture().to_string();
            let frames: Vec<&str> = trace
                .lines()
                .filter(|l| l.contains("qfd_runtime") || l.contains("runtime/src"))
                .take(12)
                .map(str::trim)
                .collect();
            let msg = format!("{info}\n      runtime frames:\n        {}", frames.join("\n        "));
            LAST_PANIC.with(|p| *p.borrow_mut() = Some(msg));
        }));
    });
}

/// Total work of a validated model: MACs plus the taps of pooling windows.
fn work(desc: &ModelDesc<'_>) -> u64 {
    let pool_taps: u64 = desc
        .ops
        .iter()
        .enumerate()
        .map(|(i, op)| {
            let out = desc.values[i + 1].elems() as u64;
            match op {
                OpDesc::MaxPool(MaxPoolDesc { window, .. }) | OpDesc::AvgPool(AvgPoolDesc { window, .. }) => {
                    out * window.kernel[0] as u64 * window.kernel[1] as u64
                }
                OpDesc::GlobalSumPool(GlobalSumPoolDesc { input }) => {
                    desc.values[*input as usize].elems() as u64
                }
                _ => out,
            }
        })
        .sum();
    total_macs(desc).saturating_add(pool_taps)
}

/// Loads `bytes`; if the model is valid, runs it twice on one input with differently filled arenas.
fn check_file(bytes: &[u8], input_seed: u64) -> Outcome {
    CAPTURING.with(|c| c.set(true));
    let result = panic::catch_unwind(AssertUnwindSafe(|| {
        let model = match Model::load(bytes) {
            Ok(m) => m,
            Err(e) => return Outcome::Refused(e),
        };
        if model.arena_size() > MAX_RUN_ARENA || work(model.desc()) > MAX_RUN_WORK {
            return Outcome::NotRun;
        }
        let mut rng = SmallRng::seed_from_u64(input_seed);
        let bits = match model.desc().values[0].elem {
            ElemType::Codes { bits } => bits,
            ElemType::I32 => 8,
        };
        // Mostly codes of the input's width; sometimes raw bytes, which a narrow input must refuse.
        let mask = if bits >= 8 || rng.gen_ratio(1, 8) { 0xFF } else { max_code(bits) as u8 };
        let input: Vec<u8> = (0..model.input_len()).map(|_| rng.gen::<u8>() & mask).collect();
        let mut logits = vec![0i32; model.num_classes()];
        let mut arena = vec![0u8; model.arena_size()];
        let first = model.run(&input, &mut arena, &mut logits);
        if let Ok(class) = first {
            if class >= logits.len() {
                return Outcome::Bug(format!("predicted class {class} of {} classes", logits.len()));
            }
            let mut again = vec![0i32; logits.len()];
            arena.fill(0xA5);
            let second = model.run(&input, &mut arena, &mut again);
            if second != first || again != logits {
                return Outcome::Bug("the result depends on the arena's previous contents".into());
            }
        }
        Outcome::Ran(first)
    }));
    CAPTURING.with(|c| c.set(false));
    result.unwrap_or_else(|_| {
        let msg = LAST_PANIC.with(|p| p.borrow_mut().take()).unwrap_or_else(|| "panic".into());
        Outcome::Bug(format!("panicked: {msg}"))
    })
}

// ---------------------------------------------------------------------------------------------------------
// Byte-level mutations
// ---------------------------------------------------------------------------------------------------------

fn pick<'a, T>(rng: &mut SmallRng, items: &'a [T]) -> &'a T {
    &items[rng.gen_range(0..items.len())]
}

/// A byte-level mutant; `in_payload` when it only changes payload bytes in place (the CRC must catch it).
fn mutate_bytes(seed: &Seed, rng: &mut SmallRng) -> (Vec<u8>, String) {
    let src = &seed.bytes;
    let mut b = src.clone();
    let flip = |b: &mut Vec<u8>, rng: &mut SmallRng, range: std::ops::Range<usize>| {
        let n = rng.gen_range(1..=8);
        let mut at = Vec::new();
        for _ in 0..n {
            let bit = rng.gen_range(range.start * 8..range.end * 8);
            b[bit / 8] ^= 1 << (bit % 8);
            at.push(bit);
        }
        format!("flip bits {at:?}")
    };
    let what = match rng.gen_range(0..8) {
        0 => {
            let n = rng.gen_range(0..src.len());
            b.truncate(n);
            format!("truncate to {n} of {} bytes", src.len())
        }
        1 => flip(&mut b, rng, 0..src.len()),
        2 => flip(&mut b, rng, seed.payload_start..src.len()),
        3 => flip(&mut b, rng, 0..seed.payload_start),
        4 => {
            let v = *pick(rng, &[0x00u8, 0xFF, 0x80]);
            let n = rng.gen_range(1..=4);
            let at: Vec<usize> = (0..n).map(|_| rng.gen_range(0..src.len())).collect();
            for &i in &at {
                b[i] = v;
            }
            format!("overwrite bytes {at:?} with {v:#04x}")
        }
        5 => {
            let at = rng.gen_range(0..=src.len());
            let n = rng.gen_range(1..=4);
            let ins: Vec<u8> = (0..n).map(|_| rng.gen()).collect();
            b.splice(at..at, ins.iter().copied());
            format!("insert {ins:?} at {at}")
        }
        6 => {
            let at = rng.gen_range(0..src.len());
            let n = rng.gen_range(1..=16).min(src.len() - at);
            b.drain(at..at + n);
            format!("delete {n} bytes at {at}")
        }
        _ => {
            let n = rng.gen_range(1..=16);
            b.extend((0..n).map(|_| rng.gen::<u8>()));
            format!("append {n} random bytes")
        }
    };
    (b, what)
}

/// Whether `b` differs from `src` only in payload bytes, in place.
fn payload_only_change(seed: &Seed, b: &[u8]) -> bool {
    b.len() == seed.bytes.len()
        && b != seed.bytes.as_slice()
        && b[..seed.payload_start] == seed.bytes[..seed.payload_start]
}

// ---------------------------------------------------------------------------------------------------------
// Structure-aware mutations
// ---------------------------------------------------------------------------------------------------------

/// Changes to the envelope, applied when the mutated description is re-encoded.
#[derive(Default)]
struct Envelope {
    magic: Option<[u8; 4]>,
    major: Option<u16>,
    minor: Option<u16>,
    producer: Option<&'static str>,
    /// Replace the encoded payload by these bytes (CRC recomputed).
    payload: Option<Vec<u8>>,
    /// Keep this fraction of the encoded payload (CRC recomputed).
    payload_keep: Option<f64>,
    /// Bytes appended to the payload (CRC recomputed).
    payload_tail: Vec<u8>,
    /// Added to the correct CRC.
    crc_delta: u32,
    /// Bytes appended to the file.
    file_tail: Vec<u8>,
}

fn encode(header: &FileHeader<'_>, desc: &ModelDesc<'_>, env: &Envelope) -> Vec<u8> {
    let mut payload = postcard::to_allocvec(desc).expect("a mutated description still encodes");
    if let Some(p) = &env.payload {
        payload.clone_from(p);
    }
    if let Some(keep) = env.payload_keep {
        payload.truncate((payload.len() as f64 * keep) as usize);
    }
    payload.extend_from_slice(&env.payload_tail);
    let header = FileHeader {
        magic: env.magic.unwrap_or(header.magic),
        format_major: env.major.unwrap_or(header.format_major),
        format_minor: env.minor.unwrap_or(header.format_minor),
        producer: env.producer.unwrap_or(header.producer),
        payload_crc32: PAYLOAD_CRC.checksum(&payload).wrapping_add(env.crc_delta),
        payload: &payload,
    };
    let mut bytes = postcard::to_allocvec(&header).expect("header encodes");
    bytes.extend_from_slice(&env.file_tail);
    bytes
}

/// Weight codes an op's weights should hold, from the (possibly mutated) description.
fn weight_count(desc: &ModelDesc<'_>, i: usize) -> Option<usize> {
    let out = desc.values.get(i + 1)?;
    match &desc.ops[i] {
        OpDesc::Conv2d(c) => {
            let cin = desc.values.get(c.input as usize)?.shape[2] as usize;
            let taps = c.window.kernel[0] as usize * c.window.kernel[1] as usize;
            Some(out.shape[2] as usize * taps * cin / (c.groups as usize).max(1))
        }
        OpDesc::FullyConnected(f) => Some(out.shape[2] as usize * desc.values.get(f.input as usize)?.elems()),
        _ => None,
    }
}

fn weights_of<'o, 's>(
    op: &'o mut OpDesc<'s>,
) -> Option<(&'o mut PackedWeights<'s>, &'o mut ChannelRequant<'s>)> {
    match op {
        OpDesc::Conv2d(c) => Some((&mut c.weights, &mut c.requant)),
        OpDesc::FullyConnected(f) => Some((&mut f.weights, &mut f.requant)),
        _ => None,
    }
}

fn window_of<'o>(op: &'o mut OpDesc<'_>) -> Option<&'o mut Window> {
    match op {
        OpDesc::Conv2d(c) => Some(&mut c.window),
        OpDesc::MaxPool(p) => Some(&mut p.window),
        OpDesc::AvgPool(p) => Some(&mut p.window),
        _ => None,
    }
}

fn clamp_of<'o>(op: &'o mut OpDesc<'_>) -> Option<&'o mut Clamp> {
    match op {
        OpDesc::Conv2d(c) => Some(&mut c.clamp),
        OpDesc::Add(a) => Some(&mut a.clamp),
        OpDesc::AvgPool(p) => Some(&mut p.clamp),
        OpDesc::LayerNorm(n) => Some(&mut n.clamp),
        OpDesc::ChannelAdd(a) => Some(&mut a.clamp),
        OpDesc::AttentionScores(a) => Some(&mut a.clamp),
        OpDesc::AttentionValues(a) => Some(&mut a.clamp),
        OpDesc::FullyConnected(f) => match &mut f.output {
            FcOutput::Codes(c) => Some(c),
            FcOutput::Logits => None,
        },
        _ => None,
    }
}

fn params_of<'o>(op: &'o mut OpDesc<'_>) -> Option<&'o mut RequantParams> {
    match op {
        OpDesc::Add(a) => Some(&mut a.requant),
        OpDesc::AvgPool(p) => Some(&mut p.requant),
        OpDesc::AttentionScores(a) => Some(&mut a.requant),
        OpDesc::AttentionValues(a) => Some(&mut a.requant),
        _ => None,
    }
}

fn inputs_of<'o>(op: &'o mut OpDesc<'_>) -> Vec<&'o mut u16> {
    match op {
        OpDesc::Conv2d(c) => vec![&mut c.input],
        OpDesc::FullyConnected(f) => vec![&mut f.input],
        OpDesc::Add(a) => a.inputs.iter_mut().collect(),
        OpDesc::MaxPool(p) => vec![&mut p.input],
        OpDesc::AvgPool(p) => vec![&mut p.input],
        OpDesc::GlobalSumPool(p) => vec![&mut p.input],
        OpDesc::LayerNorm(n) => vec![&mut n.input],
        OpDesc::ChannelAdd(a) => a.inputs.iter_mut().collect(),
        OpDesc::AttentionScores(a) => a.inputs.iter_mut().collect(),
        OpDesc::Softmax(p) => vec![&mut p.input],
        OpDesc::AttentionValues(a) => a.inputs.iter_mut().collect(),
        OpDesc::Lookup(l) => vec![&mut l.input],
    }
}

/// Whether an op is one of the transformer ops (format 3.1).
fn is_transformer_op(op: &OpDesc<'_>) -> bool {
    matches!(
        op,
        OpDesc::LayerNorm(_)
            | OpDesc::ChannelAdd(_)
            | OpDesc::AttentionScores(_)
            | OpDesc::Softmax(_)
            | OpDesc::AttentionValues(_)
            | OpDesc::Lookup(_)
    )
}

/// A random op index for which `has` holds, else any op; `None` when there are no ops.
fn pick_op(
    desc: &mut ModelDesc<'_>,
    rng: &mut SmallRng,
    has: impl Fn(&mut OpDesc<'_>) -> bool,
) -> Option<usize> {
    if desc.ops.is_empty() {
        return None;
    }
    let matching: Vec<usize> = (0..desc.ops.len()).filter(|&i| has(&mut desc.ops[i])).collect();
    if matching.is_empty() {
        Some(rng.gen_range(0..desc.ops.len()))
    } else {
        Some(*pick(rng, &matching))
    }
}

fn random_window_value(rng: &mut SmallRng, old: u8) -> u8 {
    let r = rng.gen();
    *pick(rng, &[0, 1, 2, 3, 7, 128, 254, 255, old.wrapping_add(1), old.wrapping_sub(1), r])
}

/// Recomputes every op's output shape from its inputs (keeping channel counts), then gives every value its
/// own arena bytes. Leaves the rest alone when a shape cannot be inferred: validation reports it.
fn reinfer_and_replan(desc: &mut ModelDesc<'_>) {
    for i in 0..desc.ops.len().min(desc.values.len().saturating_sub(1)) {
        let shape_of = |v: u16| desc.values.get(v as usize).map(|v| v.shape);
        let old = desc.values[i + 1].shape;
        let spatial = |input: u16, w: &Window| {
            let [h, wd, c] = shape_of(input)?;
            let [ho, wo] = w.output_hw(h as usize, wd as usize)?;
            Some([u16::try_from(ho).ok()?, u16::try_from(wo).ok()?, c])
        };
        let new = match &desc.ops[i] {
            OpDesc::Conv2d(c) => spatial(c.input, &c.window).map(|[h, w, _]| [h, w, old[2]]),
            OpDesc::MaxPool(p) => spatial(p.input, &p.window),
            OpDesc::AvgPool(p) => spatial(p.input, &p.window),
            OpDesc::Add(a) => shape_of(a.inputs[0]),
            OpDesc::GlobalSumPool(p) => shape_of(p.input).map(|[_, _, c]| [1, 1, c]),
            OpDesc::FullyConnected(_) => Some(old),
            OpDesc::LayerNorm(n) => shape_of(n.input),
            OpDesc::Lookup(l) => shape_of(l.input),
            OpDesc::Softmax(p) => shape_of(p.input),
            OpDesc::ChannelAdd(a) => shape_of(a.inputs[0]),
            OpDesc::AttentionValues(a) => shape_of(a.inputs[1]),
            OpDesc::AttentionScores(a) => shape_of(a.inputs[0]).and_then(|[h, w, _]| {
                let t = u16::try_from(h as u32 * w as u32).ok()?;
                Some([a.heads, t, t])
            }),
        };
        if let Some(shape) = new {
            desc.values[i + 1].shape = shape;
        }
    }
    let mut offset = 0u64;
    for v in desc.values.iter_mut() {
        v.arena_offset = u32::try_from(offset).unwrap_or(u32::MAX);
        let elems = v.shape.iter().map(|&d| d as u64).product::<u64>();
        offset += v.elem.bytes(usize::try_from(elems).unwrap_or(usize::MAX / 4)) as u64;
    }
    desc.arena_bytes = u32::try_from(offset).unwrap_or(u32::MAX);
}

/// Applies one random change to the description (or the envelope) and says what it did.
fn mutate_once<'s>(
    desc: &mut ModelDesc<'s>,
    env: &mut Envelope,
    scratch: &'s Scratch,
    rng: &mut SmallRng,
) -> String {
    let nv = desc.values.len();
    let arena = desc.arena_bytes;
    match rng.gen_range(0..38) {
        // Values: shapes, element types, offsets; the arena size; the table's length.
        0..=2 if nv > 0 => {
            let (v, d) = (rng.gen_range(0..nv), rng.gen_range(0..3));
            let old = desc.values[v].shape[d];
            let r = rng.gen();
            let new = *pick(
                rng,
                &[0, 1, 2, 255, 256, 4096, 32768, 65535, old.wrapping_add(1), old.wrapping_sub(1), r],
            );
            desc.values[v].shape[d] = new;
            format!("value {v} shape[{d}] {old} -> {new}")
        }
        3 if nv > 0 => {
            let v = rng.gen_range(0..nv);
            let r = rng.gen_range(1..=8);
            let bits = *pick(rng, &[0, 9, 16, 128, 255, r]);
            desc.values[v].elem = ElemType::Codes { bits };
            format!("value {v} elem -> Codes {{ bits: {bits} }}")
        }
        4 if nv > 0 => {
            let v = rng.gen_range(0..nv);
            let new = match desc.values[v].elem {
                ElemType::Codes { .. } => ElemType::I32,
                ElemType::I32 => ElemType::Codes { bits: rng.gen_range(1..=8) },
            };
            desc.values[v].elem = new;
            format!("value {v} elem -> {new:?}")
        }
        5 | 6 if nv > 0 => {
            let v = rng.gen_range(0..nv);
            let other = desc.values[rng.gen_range(0..nv)].arena_offset;
            let old = desc.values[v].arena_offset;
            let r = rng.gen_range(0..=arena);
            let new = *pick(
                rng,
                &[arena, arena.wrapping_sub(1), u32::MAX, u32::MAX - 3, 0, other, old.wrapping_add(1), r],
            );
            desc.values[v].arena_offset = new;
            format!("value {v} arena_offset {old} -> {new}")
        }
        7 => {
            let r = rng.gen();
            let new = *pick(
                rng,
                &[
                    0,
                    1,
                    arena.wrapping_sub(1),
                    arena / 2,
                    arena.wrapping_add(1),
                    arena.wrapping_mul(2),
                    u32::MAX,
                    r,
                ],
            );
            desc.arena_bytes = new;
            format!("arena_bytes {arena} -> {new}")
        }
        8 if nv > 0 => {
            let v = rng.gen_range(0..nv);
            if rng.gen() || desc.values.is_full() {
                desc.values.remove(v);
                format!("remove value {v}")
            } else {
                let copy = desc.values[v];
                let _ = desc.values.insert(v, copy);
                format!("duplicate value {v}")
            }
        }
        // Op references and the op list.
        9..=10 => {
            let Some(i) = pick_op(desc, rng, |_| true) else { return "no op to rewire".into() };
            let r = rng.gen_range(0..=i as u16);
            let new = *pick(rng, &[nv as u16, nv as u16 + 1, u16::MAX, i as u16 + 1, i as u16 + 2, 0, r, r]);
            let mut inputs = inputs_of(&mut desc.ops[i]);
            let k = rng.gen_range(0..inputs.len());
            let old = *inputs[k];
            *inputs[k] = new;
            format!("op {i} input[{k}] {old} -> {new}")
        }
        11 if desc.ops.len() >= 2 => {
            let (a, b) = (rng.gen_range(0..desc.ops.len()), rng.gen_range(0..desc.ops.len()));
            desc.ops.swap(a, b);
            if rng.gen() && b + 1 < nv && a + 1 < nv {
                desc.values.swap(a + 1, b + 1);
                format!("swap ops {a} and {b} with their values")
            } else {
                format!("swap ops {a} and {b}")
            }
        }
        12 if !desc.ops.is_empty() && !desc.ops.is_full() => {
            let i = rng.gen_range(0..desc.ops.len());
            let op = desc.ops[i].clone();
            let _ = desc.ops.insert(i + 1, op);
            if rng.gen() && i + 1 < nv && !desc.values.is_full() {
                let v = desc.values[i + 1];
                let _ = desc.values.insert(i + 2, v);
                format!("duplicate op {i} and its value")
            } else {
                format!("duplicate op {i}")
            }
        }
        13 if !desc.ops.is_empty() => {
            let i = rng.gen_range(0..desc.ops.len());
            desc.ops.remove(i);
            if rng.gen() && i + 1 < nv {
                desc.values.remove(i + 1);
                format!("remove op {i} and its value")
            } else {
                format!("remove op {i}")
            }
        }
        14 => {
            let keep = rng.gen_range(0..desc.ops.len().max(1));
            desc.ops.truncate(keep);
            if rng.gen() {
                desc.values.truncate(keep + 1);
                format!("keep the first {keep} ops and their values")
            } else {
                format!("keep the first {keep} ops")
            }
        }
        15 if desc.ops.len() >= 2 => {
            desc.ops.reverse();
            "reverse the ops".into()
        }
        16 => {
            // Replace an op by another kind; the last op and reading the previous value are favoured, so ops
            // also end up reading the i32 output of the global pool.
            let n = desc.ops.len();
            if n == 0 {
                return "no op to replace".into();
            }
            let i = if rng.gen_ratio(1, 3) { n - 1 } else { rng.gen_range(0..n) };
            let old_input = *inputs_of(&mut desc.ops[i])[0];
            let r = rng.gen_range(0..=i as u16);
            let input = if rng.gen() { i as u16 } else { *pick(rng, &[old_input, r]) };
            let window = Window {
                kernel: [rng.gen_range(1..=3), rng.gen_range(1..=3)],
                stride: [rng.gen_range(1..=2), rng.gen_range(1..=2)],
                padding: Padding {
                    top: rng.gen_range(0..=1),
                    left: 0,
                    bottom: rng.gen_range(0..=1),
                    right: 1,
                },
            };
            let requant = RequantParams { offset: 0, multiplier: 1 << 30, shift: -2 };
            let clamp = Clamp { min: 0, max: rng.gen_range(0..=15) };
            let new = match rng.gen_range(0..4) {
                0 => OpDesc::MaxPool(MaxPoolDesc { input, window }),
                1 => OpDesc::AvgPool(AvgPoolDesc { input, window, requant, clamp }),
                2 => OpDesc::GlobalSumPool(GlobalSumPoolDesc { input }),
                _ => OpDesc::Add(qfd_runtime::format::AddDesc {
                    inputs: [input, old_input],
                    input_weights: [1, -1],
                    requant,
                    clamp,
                }),
            };
            let what = format!("replace op {i} ({}) by {new:?}", desc.ops[i].kind());
            desc.ops[i] = new;
            what
        }
        // Windows and groups.
        17..=18 => {
            let Some(i) = pick_op(desc, rng, |op| window_of(op).is_some()) else { return "no op".into() };
            let field = rng.gen_range(0..8);
            let Some(w) = window_of(&mut desc.ops[i]) else { return format!("op {i} has no window") };
            let p = &mut w.padding;
            let slot = match field {
                0 | 1 => &mut w.kernel[field],
                2 | 3 => &mut w.stride[field - 2],
                4 => &mut p.top,
                5 => &mut p.left,
                6 => &mut p.bottom,
                _ => &mut p.right,
            };
            let old = *slot;
            *slot = random_window_value(rng, old);
            format!("op {i} window field {field}: {old} -> {}", *slot)
        }
        19 => {
            let Some(i) = pick_op(desc, rng, |op| matches!(op, OpDesc::Conv2d(_))) else {
                return "no op".into();
            };
            let cin = match &desc.ops[i] {
                OpDesc::Conv2d(c) => desc.values.get(c.input as usize).map_or(1, |v| v.shape[2]),
                _ => return format!("op {i} is not a conv"),
            };
            let cout = desc.values.get(i + 1).map_or(1, |v| v.shape[2]);
            let r = rng.gen();
            let new = *pick(rng, &[0, 2, 3, 5, 65535, cin, cout, r]);
            if let OpDesc::Conv2d(c) = &mut desc.ops[i] {
                c.groups = new;
            }
            format!("op {i} groups -> {new}")
        }
        // Weights.
        20..=21 => {
            let Some(i) = pick_op(desc, rng, |op| weights_of(op).is_some()) else { return "no op".into() };
            let count = weight_count(desc, i);
            let Some((w, _)) = weights_of(&mut desc.ops[i]) else { return format!("op {i} has no weights") };
            let old = w.bits;
            if rng.gen() {
                let r = rng.gen_range(1..=8);
                w.bits = *pick(rng, &[0, 9, 16, 255, r]);
                format!("op {i} weight bits {old} -> {} (data unchanged)", w.bits)
            } else {
                // A valid re-encoding at another width: data of the right length, codes in range.
                let bits = rng.gen_range(1..=8);
                let len = count.map_or(0, |c| packed_len(c, bits));
                let src = if codes_per_byte(bits) == 1 && bits < 8 { &scratch.low } else { &scratch.random };
                w.bits = bits;
                w.data = &src[..len.min(src.len())];
                format!("op {i} weights re-encoded at {bits} bits ({len} bytes)")
            }
        }
        22..=23 => {
            let Some(i) = pick_op(desc, rng, |op| weights_of(op).is_some()) else { return "no op".into() };
            let Some((w, _)) = weights_of(&mut desc.ops[i]) else { return format!("op {i} has no weights") };
            let len = w.data.len();
            let r = rng.gen_range(0..=len);
            let new_len = *pick(rng, &[0, len / 2, len.saturating_sub(1), len + 1, len + 64, r]);
            w.data = if new_len <= len { &w.data[..new_len] } else { &scratch.random[..new_len] };
            format!("op {i} weight data {len} -> {new_len} bytes")
        }
        24 => {
            let Some(i) = pick_op(desc, rng, |op| weights_of(op).is_some()) else { return "no op".into() };
            let Some((w, _)) = weights_of(&mut desc.ops[i]) else { return format!("op {i} has no weights") };
            // Random codes: out of range for byte-container widths below 8, valid otherwise.
            let start = rng.gen_range(0..scratch.random.len() / 2);
            w.data = &scratch.random[start..start + w.data.len()];
            format!("op {i} weight data replaced by random bytes ({} bits)", w.bits)
        }
        // Requantization.
        25..=26 => {
            let Some(i) = pick_op(desc, rng, |op| weights_of(op).is_some()) else { return "no op".into() };
            let Some((_, rq)) = weights_of(&mut desc.ops[i]) else { return format!("op {i} has no weights") };
            let len = rq.records.len();
            let rec = CHANNEL_RECORD_BYTES;
            let (table, what) = match rng.gen_range(0..8) {
                0 => (&scratch.bad_shift, "records with shifts out of range"),
                1 => (&scratch.big_offset, "records with offsets out of range"),
                2 => (&scratch.edge_offset, "records with offsets +-MAX_OFFSET"),
                3 => (&scratch.records, "valid random records"),
                _ => (&scratch.records, "valid records of another length"),
            };
            let new_len = if what.ends_with("length") {
                let r = rng.gen_range(0..=len + rec);
                *pick(rng, &[0, len.saturating_sub(1), len.saturating_sub(rec), len + 1, len + rec, r])
            } else {
                len
            };
            let start = rec * rng.gen_range(0..64);
            rq.records = &table[start..start + new_len];
            format!("op {i} requant {len} -> {new_len} bytes: {what}")
        }
        27 => {
            let Some(i) = pick_op(desc, rng, |op| params_of(op).is_some()) else { return "no op".into() };
            let Some(p) = params_of(&mut desc.ops[i]) else { return format!("op {i} has no single requant") };
            let (shift, r, r64) = (rng.gen_range(-31..=30), rng.gen(), rng.gen());
            match rng.gen_range(0..3) {
                0 => p.shift = *pick(rng, &[31, 32, 127, -32, -128, shift]),
                1 => {
                    let edges = [MAX_OFFSET, -MAX_OFFSET, 1 << 62, -(1 << 62), i64::MAX, i64::MIN, r64];
                    p.offset = *pick(rng, &edges)
                }
                _ => p.multiplier = *pick(rng, &[i32::MAX, i32::MIN, 0, r]),
            }
            format!("op {i} requant -> {p:?}")
        }
        28 => {
            let Some(i) = pick_op(desc, rng, |op| matches!(op, OpDesc::Add(_))) else {
                return "no op".into();
            };
            let OpDesc::Add(a) = &mut desc.ops[i] else { return format!("op {i} is not an add") };
            let k = rng.gen_range(0..2);
            let r = rng.gen();
            a.input_weights[k] = *pick(rng, &[i32::MAX, i32::MIN, i32::MAX / 255, -1, 0, r]);
            format!("op {i} add input_weights -> {:?}", a.input_weights)
        }
        29 => {
            let Some(i) = pick_op(desc, rng, |op| clamp_of(op).is_some()) else { return "no op".into() };
            if let OpDesc::FullyConnected(f) = &mut desc.ops[i] {
                if rng.gen() {
                    f.output = match f.output {
                        FcOutput::Logits => FcOutput::Codes(Clamp { min: 0, max: rng.gen_range(0..=255) }),
                        FcOutput::Codes(_) => FcOutput::Logits,
                    };
                    return format!("op {i} fc output -> {:?}", f.output);
                }
            }
            let Some(c) = clamp_of(&mut desc.ops[i]) else { return format!("op {i} has no clamp") };
            let old = *c;
            let (min, max) = match rng.gen_range(0..5) {
                0 => (old.max.saturating_add(1), old.max),
                1 => (old.min, 255),
                2 => (255, 0),
                3 => (old.max, old.max),
                _ => (rng.gen(), rng.gen()),
            };
            *c = Clamp { min, max };
            format!("op {i} clamp {old:?} -> {c:?}")
        }
        // The envelope.
        30 => match rng.gen_range(0..9) {
            0 => {
                env.major = Some(*pick(rng, &[0, FORMAT_MAJOR - 1, FORMAT_MAJOR + 1, 255, u16::MAX]));
                format!("format_major -> {:?}", env.major)
            }
            1 => {
                env.minor = Some(*pick(rng, &[1, 7, u16::MAX]));
                format!("format_minor -> {:?} (newer minors load)", env.minor)
            }
            2 => {
                let r = rng.gen();
                env.magic = Some(*pick(rng, &[*b"QFDm", *b"\0QFD", [0xFF; 4], r]));
                format!("magic -> {:?}", env.magic)
            }
            3 => {
                env.producer =
                    Some(*pick(rng, &["", "a producer name that is quite a bit longer than usual"]));
                format!("producer -> {:?}", env.producer)
            }
            4 => {
                env.payload_tail = (0..rng.gen_range(1..=9)).map(|_| rng.gen()).collect();
                format!("payload + {} trailing bytes", env.payload_tail.len())
            }
            5 => {
                env.payload_keep = Some(rng.gen_range(0.0..1.0));
                format!("payload cut to {:?} of its length", env.payload_keep)
            }
            6 => {
                let n = rng.gen_range(0..400);
                env.payload = Some((0..n).map(|_| rng.gen()).collect());
                format!("payload replaced by {n} random bytes")
            }
            7 => {
                env.crc_delta = rng.gen_range(1..=u32::MAX);
                "crc off".into()
            }
            _ => {
                env.file_tail = (0..rng.gen_range(1..=9)).map(|_| rng.gen()).collect();
                format!("file + {} trailing bytes", env.file_tail.len())
            }
        },
        // Consistent reshapes: a new input size or window, every later shape re-inferred and the arena
        // re-planned, so the model usually stays valid and the kernels run odd geometries.
        31 | 32 if nv > 0 => {
            let d = rng.gen_range(0..2);
            let old = desc.values[0].shape;
            let big = *pick(rng, &[1, 2, 3, 5, 7, 13, 31, 64, 255, 4096, 65535]);
            desc.values[0].shape[d] = big;
            desc.values[0].shape[1 - d] = *pick(rng, &[1, 2, 3, 4, 6, 9, 17]);
            reinfer_and_replan(desc);
            format!("input {old:?} -> {:?}, shapes re-inferred, arena re-planned", desc.values[0].shape)
        }
        33 => {
            let Some(i) = pick_op(desc, rng, |op| window_of(op).is_some()) else { return "no op".into() };
            let (k, s, p) = (rng.gen_range(1..=4), rng.gen_range(1..=4), rng.gen_range(0..=4));
            let field = rng.gen_range(0..8);
            let is_conv = matches!(desc.ops[i], OpDesc::Conv2d(_));
            let Some(w) = window_of(&mut desc.ops[i]) else { return format!("op {i} has no window") };
            match field {
                // A conv's kernel size fixes its weight count: only pools get new kernels.
                0 | 1 if !is_conv => w.kernel[field] = k,
                0..=3 => w.stride[field % 2] = s,
                4 => w.padding.top = p,
                5 => w.padding.left = p,
                6 => w.padding.bottom = p,
                _ => w.padding.right = p,
            }
            let w = *w;
            reinfer_and_replan(desc);
            format!("op {i} window -> {w:?}, shapes re-inferred, arena re-planned")
        }
        // Any op's byte table (weights, records, shifts, a lookup table): random bytes of the same length,
        // one more or less, or none.
        35 => {
            let Some(i) = pick_op(desc, rng, |op| !op.tables().is_empty()) else { return "no op".into() };
            let mut tables = desc.ops[i].tables_mut();
            if tables.is_empty() {
                return format!("op {i} has no tables");
            }
            let t = rng.gen_range(0..tables.len());
            let len = tables[t].len();
            let new_len = *pick(rng, &[len, len + 1, len.saturating_sub(1), 0]);
            let start = rng.gen_range(0..scratch.random.len() - new_len.min(scratch.random.len() - 1));
            let source = if rng.gen_bool(0.5) { &scratch.random } else { &scratch.low };
            *tables[t] = &source[start..start + new_len];
            format!(
                "op {i} table {t}: {len} -> {new_len} bytes of {}",
                if new_len == len { "new data" } else { "data" }
            )
        }
        // The transformer ops' own fields: heads, zero points, softmax constants, probability codes.
        36 | 37 => {
            let Some(i) = pick_op(desc, rng, |op| is_transformer_op(op)) else { return "no op".into() };
            let heads = *pick(rng, &[0u16, 1, 3, 7, 65535]);
            let zero = *pick(rng, &[0u8, 15, 16, 128, 255]);
            let probs = *pick(
                rng,
                &[
                    ProbCodes::Log2,
                    ProbCodes::Linear { bits: 0 },
                    ProbCodes::Linear { bits: 8 },
                    ProbCodes::Linear { bits: 9 },
                ],
            );
            match &mut desc.ops[i] {
                OpDesc::AttentionScores(a) => {
                    if rng.gen_bool(0.5) {
                        a.heads = heads
                    } else {
                        a.zeros[rng.gen_range(0..2)] = zero
                    }
                }
                OpDesc::AttentionValues(a) => match rng.gen_range(0..3) {
                    0 => a.heads = heads,
                    1 => a.zero = zero,
                    _ => a.probs = probs,
                },
                OpDesc::LayerNorm(n) => n.zero = zero,
                OpDesc::ChannelAdd(a) => {
                    a.input_weights[rng.gen_range(0..2)] = *pick(rng, &[i32::MAX, i32::MIN, 1 << 20, -1])
                }
                OpDesc::Softmax(p) => match rng.gen_range(0..6) {
                    0 => p.exp.x0 = *pick(rng, &[0, 1, -1, i32::MIN, i32::MAX]),
                    1 => p.exp.b = *pick(rng, &[-1, 0, i64::MAX, i64::MIN]),
                    2 => p.exp.c = *pick(rng, &[0, 1, -1, i64::MAX, 1 << 40]),
                    3 => p.exp.fraction = *pick(rng, &[0, 16, 17, 255]),
                    4 => p.exp.shift = *pick(rng, &[0, 62, 63, 64, 255]),
                    _ => p.probs = probs,
                },
                _ => {}
            }
            format!("op {i} ({}) fields -> {:?}", desc.ops[i].kind(), desc.ops[i])
        }
        // Fields that do not change how the model runs: still valid, or inconsistent with the model's
        // channels and classes.
        _ => match rng.gen_range(0..6) {
            0 => {
                desc.output.class_names = "";
                "no class names".into()
            }
            1 => {
                desc.output.logit_scale = *pick(rng, &[f32::NAN, f32::INFINITY, 0.0, -1.0]);
                format!("logit_scale -> {}", desc.output.logit_scale)
            }
            2 => {
                desc.meta.arch = "";
                desc.meta.integer_accuracy = Some(f32::NAN);
                "metadata changed".into()
            }
            3 => {
                desc.input.mean.clear();
                "no input mean".into()
            }
            4 => {
                desc.output.class_names = *pick(rng, &["one class", "a\nb", "a\n\n\n\n\n\n\n\n\n\n"]);
                format!("class names -> {:?}", desc.output.class_names)
            }
            _ => {
                let _ = desc.input.std.push(1.0);
                format!("input std -> {:?}", desc.input.std)
            }
        },
    }
}

/// A structure-aware mutant: 1 to 3 changes to the decoded seed, re-encoded with a valid CRC.
fn mutate_structure(seed: &Seed, rng: &mut SmallRng) -> (Vec<u8>, String) {
    let header: FileHeader<'_> = postcard::from_bytes(&seed.bytes).expect("seed header decodes");
    let mut desc: ModelDesc<'_> = postcard::from_bytes(header.payload).expect("seed payload decodes");
    let mut env = Envelope::default();
    let n = *pick(rng, &[1, 1, 1, 1, 1, 1, 1, 2, 2, 3]);
    let what: Vec<String> = (0..n).map(|_| mutate_once(&mut desc, &mut env, &seed.scratch, rng)).collect();
    (encode(&header, &desc, &env), what.join("; "))
}

// ---------------------------------------------------------------------------------------------------------
// The campaign
// ---------------------------------------------------------------------------------------------------------

#[derive(Default)]
struct Stats {
    files: usize,
    outcomes: BTreeMap<String, usize>,
    /// Byte-level mutants that only changed payload bytes in place, and how many of them gave `CrcMismatch`.
    payload_only: usize,
    payload_only_crc: usize,
    bugs: Vec<String>,
}

impl Stats {
    fn merge(&mut self, other: Stats) {
        self.files += other.files;
        for (k, n) in other.outcomes {
            *self.outcomes.entry(k).or_default() += n;
        }
        self.payload_only += other.payload_only;
        self.payload_only_crc += other.payload_only_crc;
        self.bugs.extend(other.bugs);
    }

    fn count(&self, prefix: &str) -> usize {
        self.outcomes.iter().filter(|(k, _)| k.starts_with(prefix)).map(|(_, n)| n).sum()
    }

    fn print(&self, title: &str) {
        println!("{title}: {} files", self.files);
        for (k, n) in &self.outcomes {
            println!("  {n:>6}  {k}");
        }
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Bytes,
    Structure,
}

/// Runs mutations `range` of one kind, every `step`-th from `first` (for splitting over threads).
fn campaign(seeds: &[Seed], kind: Kind, count: usize, first: usize, step: usize) -> Stats {
    let mut stats = Stats::default();
    for i in (first..count).step_by(step) {
        let seed = &seeds[i % seeds.len()];
        let tag = match kind {
            Kind::Bytes => 0xB17E_0000_0000u64,
            Kind::Structure => 0x57C7_0000_0000u64,
        };
        let mut rng = SmallRng::seed_from_u64(tag + i as u64);
        let (bytes, what) = match kind {
            Kind::Bytes => mutate_bytes(seed, &mut rng),
            Kind::Structure => mutate_structure(seed, &mut rng),
        };
        let outcome = check_file(&bytes, i as u64);
        if kind == Kind::Bytes && payload_only_change(seed, &bytes) {
            stats.payload_only += 1;
            stats.payload_only_crc += matches!(outcome, Outcome::Refused(LoadError::CrcMismatch)) as usize;
        }
        if let Outcome::Bug(msg) = &outcome {
            let kind = if kind == Kind::Bytes { "byte" } else { "structure" };
            stats.bugs.push(format!("{kind} mutation #{i} of seed '{}' ({what}): {msg}", seed.name));
        }
        stats.files += 1;
        *stats.outcomes.entry(outcome.key()).or_default() += 1;
    }
    stats
}

/// Splits one campaign over two threads (the CI machine has two cores).
fn parallel_campaign(seeds: &[Seed], kind: Kind, count: usize) -> Stats {
    let mut stats = Stats::default();
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..2).map(|t| s.spawn(move || campaign(seeds, kind, count, t, 2))).collect();
        for h in handles {
            stats.merge(h.join().expect("campaign thread"));
        }
    });
    stats
}

#[test]
fn mutated_models_never_panic() {
    install_panic_hook();
    let start = Instant::now();
    let seeds = seeds();
    for seed in &seeds {
        match check_file(&seed.bytes, 0) {
            Outcome::Ran(Ok(_)) => {}
            _ => panic!("seed '{}' does not load and run", seed.name),
        }
        println!("seed '{}': {} bytes", seed.name, seed.bytes.len());
    }

    let bytes = parallel_campaign(&seeds, Kind::Bytes, BYTE_MUTATIONS);
    let structure = parallel_campaign(&seeds, Kind::Structure, STRUCT_MUTATIONS);
    bytes.print("byte-level mutations");
    structure.print("structure-aware mutations");
    let total = bytes.files + structure.files;
    println!(
        "{total} mutated files in {:.1} s; {} of {} in-place payload changes gave CrcMismatch",
        start.elapsed().as_secs_f64(),
        bytes.payload_only_crc,
        bytes.payload_only
    );

    let bugs: Vec<&String> = bytes.bugs.iter().chain(&structure.bugs).collect();
    assert!(bugs.is_empty(), "{} files broke the contract; the first ones:\n{}", bugs.len(), {
        let first: Vec<&str> = bugs.iter().take(10).map(|s| s.as_str()).collect();
        first.join("\n")
    });
    assert!(total >= REQUIRED_FILES, "only {total} mutated files");

    // The CRC catches in-place corruption of the payload.
    assert!(
        bytes.payload_only >= BYTE_MUTATIONS / 8,
        "too few payload-only mutations: {}",
        bytes.payload_only
    );
    assert!(bytes.payload_only_crc * 100 >= bytes.payload_only * 99, "CRC missed payload corruption");
    let most = bytes.outcomes.iter().max_by_key(|(_, n)| **n).map(|(k, _)| k.as_str());
    assert_eq!(most, Some("load: CrcMismatch"), "byte-level mutations should mostly hit the CRC");

    // Not vacuous: structure mutations get past the CRC and reach many distinct checks of the validator, and
    // a fair share of them load and run.
    assert!(structure.count("load: CrcMismatch") * 10 < structure.files, "structure mutations hit the CRC");
    let validator_kinds: Vec<&String> = structure
        .outcomes
        .keys()
        .filter(|k| {
            k.starts_with("load: ")
                && ![
                    "CrcMismatch",
                    "BadMagic",
                    "UnsupportedVersion",
                    "Truncated",
                    "Malformed",
                    "TrailingBytes",
                ]
                .iter()
                .any(|e| k.ends_with(e))
        })
        .collect();
    assert!(
        validator_kinds.len() >= 12,
        "only {} validator errors reached: {validator_kinds:?}",
        validator_kinds.len()
    );
    let envelope_kinds =
        ["BadMagic", "UnsupportedVersion", "Truncated", "Malformed", "TrailingBytes", "CrcMismatch"];
    for kind in envelope_kinds {
        assert!(structure.count(&format!("load: {kind}")) > 0, "no structure mutation gave {kind}");
    }
    assert!(structure.count("loaded, ran: ok") >= 200, "too few mutated models ran");
    assert!(structure.count("loaded, not run") > 0, "the too-large path was not taken");
}

// ---------------------------------------------------------------------------------------------------------
// Exhaustive and targeted checks
// ---------------------------------------------------------------------------------------------------------

/// Every proper prefix of every seed is refused as `Truncated` (the payload is the header's last field, so
/// no prefix gets as far as the CRC).
#[test]
fn every_truncation_is_refused_as_truncated() {
    for seed in seeds() {
        for n in 0..seed.bytes.len() {
            assert_eq!(Model::load(&seed.bytes[..n]).err(), Some(LoadError::Truncated), "{}: {n}", seed.name);
        }
    }
}

/// Every single-bit flip of every header byte gives a typed error (or, in the producer string or minor
/// version, possibly a model that still loads).
#[test]
fn every_header_bit_flip_is_typed() {
    install_panic_hook();
    for seed in seeds() {
        for bit in 0..seed.payload_start * 8 {
            let mut b = seed.bytes.clone();
            b[bit / 8] ^= 1 << (bit % 8);
            if let Outcome::Bug(msg) = check_file(&b, bit as u64) {
                panic!("{}: flipping bit {bit}: {msg}", seed.name);
            }
        }
    }
}

/// `run` refuses buffers of the wrong size with the right typed error and accepts a larger arena.
#[test]
fn run_refuses_wrong_buffers_with_typed_errors() {
    for seed in seeds() {
        let model = Model::load(&seed.bytes).unwrap();
        let (n_in, n_arena, n_cls) = (model.input_len(), model.arena_size(), model.num_classes());
        let input = vec![1u8; n_in];
        let mut arena = vec![0u8; n_arena];
        let mut logits = vec![0i32; n_cls];
        let name = seed.name;

        for found in [0, n_arena / 2, n_arena - 1] {
            let err = model.run(&input, &mut arena[..found], &mut logits);
            assert_eq!(err, Err(RunError::ArenaTooSmall { needed: n_arena, found }), "{name}");
        }
        for found in [0, n_in - 1, n_in + 1] {
            let err = model.run(&vec![1u8; found], &mut arena, &mut logits);
            assert_eq!(err, Err(RunError::InputLength { expected: n_in, found }), "{name}");
        }
        for found in [0, n_cls - 1, n_cls + 1] {
            let err = model.run(&input, &mut arena, &mut vec![0i32; found]);
            assert_eq!(err, Err(RunError::LogitsLength { expected: n_cls, found }), "{name}");
        }

        let class = model.run(&input, &mut arena, &mut logits).expect("exact buffers run");
        let mut big = vec![0xFFu8; n_arena + 1000];
        let mut again = vec![0i32; n_cls];
        assert_eq!(model.run(&input, &mut big, &mut again), Ok(class), "{name}: larger arena");
        assert_eq!(again, logits, "{name}: larger arena changes the logits");

        if let ElemType::Codes { bits } = model.desc().values[0].elem {
            if bits < 8 {
                let mut bad = input.clone();
                bad[n_in / 2] = 1 << bits;
                let err = model.run(&bad, &mut arena, &mut logits);
                assert_eq!(err, Err(RunError::InputCodeOutOfRange { index: n_in / 2 }), "{name}");
            }
        }
    }
}

/// Representative hostile files, each with the one error it must give.
#[test]
fn hostile_fields_give_the_expected_error() {
    let seed = make_seed("all-ops", all_ops_model());
    let header: FileHeader<'_> = postcard::from_bytes(&seed.bytes).unwrap();
    let desc: ModelDesc<'_> = postcard::from_bytes(header.payload).unwrap();
    let load = |d: &ModelDesc<'_>| Model::load(&encode(&header, d, &Envelope::default())).err();
    let arena = desc.arena_bytes;
    assert_eq!(load(&desc), None);

    let mut d = desc.clone();
    d.values[0].shape = [65535, 65535, 3];
    assert_eq!(load(&d), Some(LoadError::ValueOutsideArena { value: 0 }));
    let mut d = desc.clone();
    d.values[2].arena_offset = u32::MAX;
    assert_eq!(load(&d), Some(LoadError::ValueOutsideArena { value: 2 }));
    let mut d = desc.clone();
    d.arena_bytes = 0;
    assert_eq!(load(&d), Some(LoadError::ValueOutsideArena { value: 0 }));
    let mut d = desc.clone();
    d.arena_bytes = u32::MAX;
    assert_eq!(load(&d), None, "a larger arena than needed is valid");
    let mut d = desc.clone();
    d.values[1].elem = ElemType::Codes { bits: 9 };
    assert_eq!(load(&d), Some(LoadError::BadValue { value: 1 }));
    let mut d = desc.clone();
    d.values[3].shape[2] = 0;
    assert_eq!(load(&d), Some(LoadError::BadValue { value: 3 }));
    let mut d = desc.clone();
    d.values.pop();
    assert_eq!(load(&d), Some(LoadError::ValueCount));
    let mut d = desc.clone();
    d.ops.clear();
    assert_eq!(load(&d), Some(LoadError::BadOutput));
    let mut d = desc.clone();
    d.values[2].arena_offset = d.values[1].arena_offset;
    assert_eq!(load(&d), Some(LoadError::ArenaOverlap { first: 1, second: 2 }));
    assert!(arena > 0);

    // Op 0 conv, 1 max pool, 2 avg pool, 3 add, 4 grouped conv, 5 depthwise, 6 pool, 7 fc codes, 8 fc logits.
    let mut d = desc.clone();
    *inputs_of(&mut d.ops[1])[0] = 2;
    assert_eq!(load(&d), Some(LoadError::BadInputRef { op: 1 }));
    let mut d = desc.clone();
    *inputs_of(&mut d.ops[3])[1] = u16::MAX;
    assert_eq!(load(&d), Some(LoadError::BadInputRef { op: 3 }));
    let mut d = desc.clone();
    let one = Window { kernel: [1, 1], stride: [1, 1], padding: Padding::default() };
    d.ops[8] = OpDesc::MaxPool(MaxPoolDesc { input: 8, window: one });
    assert_eq!(load(&d), Some(LoadError::ShapeMismatch { op: 8 }), "8 channels in, 5 out");
    let mut d = desc.clone();
    d.ops[7] = OpDesc::GlobalSumPool(GlobalSumPoolDesc { input: 7 });
    assert_eq!(load(&d), Some(LoadError::WrongInputType { op: 7 }));
    let (geometry, mismatch) = (LoadError::BadGeometry { op: 0 }, LoadError::ShapeMismatch { op: 0 });
    for (field, value, expected) in [
        ("kernel", 0, geometry),
        ("stride", 0, geometry),
        ("kernel", 255, geometry),
        ("padding", 255, mismatch),
    ] {
        let mut d = desc.clone();
        let w = window_of(&mut d.ops[0]).unwrap();
        match field {
            "kernel" => w.kernel[0] = value,
            "stride" => w.stride[0] = value,
            _ => w.padding.top = value,
        }
        assert_eq!(load(&d), Some(expected), "window {field} = {value}");
    }
    for groups in [0, 3, 65535] {
        let mut d = desc.clone();
        let OpDesc::Conv2d(c) = &mut d.ops[4] else { panic!("op 4 is a conv") };
        c.groups = groups;
        assert_eq!(load(&d), Some(LoadError::BadGeometry { op: 4 }), "groups {groups}");
    }
    for bits in [0, 9, 255] {
        let mut d = desc.clone();
        weights_of(&mut d.ops[0]).unwrap().0.bits = bits;
        assert_eq!(load(&d), Some(LoadError::WeightBits { op: 0 }), "weight bits {bits}");
    }
    let mut d = desc.clone();
    let w = weights_of(&mut d.ops[4]).unwrap().0;
    w.data = &w.data[..w.data.len() - 1];
    assert_eq!(load(&d), Some(LoadError::WeightData { op: 4 }));
    let mut d = desc.clone();
    weights_of(&mut d.ops[7]).unwrap().0.data = &seed.scratch.random[..13];
    assert_eq!(load(&d), Some(LoadError::WeightData { op: 7 }));
    let mut d = desc.clone();
    weights_of(&mut d.ops[0]).unwrap().0.data = &[0xFF; 72];
    assert_eq!(load(&d), Some(LoadError::WeightData { op: 0 }), "3-bit codes above 7");
    let mut d = desc.clone();
    let rq = weights_of(&mut d.ops[5]).unwrap().1;
    rq.records = &rq.records[..rq.records.len() - 1];
    assert_eq!(load(&d), Some(LoadError::RequantLength { op: 5 }));
    let mut d = desc.clone();
    let OpDesc::Add(a) = &mut d.ops[3] else { panic!("op 3 is an add") };
    a.requant.shift = 31;
    assert_eq!(load(&d), Some(LoadError::ShiftOutOfRange { op: 3 }));
    let mut d = desc.clone();
    let OpDesc::Add(a) = &mut d.ops[3] else { panic!("op 3 is an add") };
    a.input_weights = [i32::MAX, 1];
    assert_eq!(load(&d), Some(LoadError::AccumulatorOverflow { op: 3 }));
    let mut d = desc.clone();
    let OpDesc::Add(a) = &mut d.ops[3] else { panic!("op 3 is an add") };
    a.requant.offset = 1 << 62;
    assert_eq!(load(&d), Some(LoadError::OffsetOutOfRange { op: 3 }));
    let mut d = desc.clone();
    let OpDesc::AvgPool(p) = &mut d.ops[2] else { panic!("op 2 is an average pool") };
    p.requant.offset = -(1 << 62);
    assert_eq!(load(&d), Some(LoadError::OffsetOutOfRange { op: 2 }));
    let mut d = desc.clone();
    weights_of(&mut d.ops[4]).unwrap().1.records = &seed.scratch.big_offset[..6 * CHANNEL_RECORD_BYTES];
    assert_eq!(load(&d), Some(LoadError::OffsetOutOfRange { op: 4 }));
    // The largest offsets load for a requantizing layer (its accumulator bound leaves them out), and run...
    let mut d = desc.clone();
    weights_of(&mut d.ops[4]).unwrap().1.records = &seed.scratch.edge_offset[..6 * CHANNEL_RECORD_BYTES];
    weights_of(&mut d.ops[7]).unwrap().1.records = &seed.scratch.edge_offset[..8 * CHANNEL_RECORD_BYTES];
    let file = encode(&header, &d, &Envelope::default());
    let model = Model::load(&file).expect("offsets of +-MAX_OFFSET load");
    let mut arena = vec![0u8; model.arena_size()];
    let mut logits = vec![0i32; model.num_classes()];
    model.run(&[63u8; 200], &mut arena, &mut logits).expect("runs");
    // ... but not for a logits layer, whose logit is `acc + offset`.
    let mut d = desc.clone();
    weights_of(&mut d.ops[8]).unwrap().1.records = &seed.scratch.edge_offset[..5 * CHANNEL_RECORD_BYTES];
    assert_eq!(load(&d), Some(LoadError::AccumulatorOverflow { op: 8 }));
    let OpDesc::FullyConnected(fc2) = &desc.ops[8] else { panic!("op 8 is the classifier") };
    let mut records = fc2.requant.records.to_vec();
    let mut big = fc2.requant.get(0);
    big.offset = i32::MAX as i64;
    records[..CHANNEL_RECORD_BYTES].copy_from_slice(&big.to_record());
    let mut d = desc.clone();
    weights_of(&mut d.ops[8]).unwrap().1.records = &records;
    assert_eq!(load(&d), Some(LoadError::AccumulatorOverflow { op: 8 }));
    let mut d = desc.clone();
    *clamp_of(&mut d.ops[2]).unwrap() = Clamp { min: 9, max: 8 };
    assert_eq!(load(&d), Some(LoadError::BadClamp { op: 2 }));
    let mut d = desc.clone();
    *clamp_of(&mut d.ops[0]).unwrap() = Clamp { min: 0, max: 32 };
    assert_eq!(load(&d), Some(LoadError::BadClamp { op: 0 }), "5-bit output clamped at 32");
    let mut d = desc.clone();
    d.ops.swap(1, 2);
    assert!(load(&d).is_some(), "swapped ops load");
    let mut d = desc.clone();
    let op = d.ops[5].clone();
    d.ops.insert(6, op).unwrap();
    assert_eq!(load(&d), Some(LoadError::ValueCount));
}

/// The same layout as [`ModelDesc`] with unbounded tables, to write files the runtime's types cannot hold.
#[derive(serde::Serialize)]
struct UnboundedDesc<'a> {
    input: &'a qfd_runtime::format::InputSpec,
    output: &'a qfd_runtime::format::OutputSpec<'a>,
    meta: &'a qfd_runtime::format::Metadata<'a>,
    values: Vec<qfd_runtime::format::ValueDesc>,
    ops: Vec<OpDesc<'a>>,
    arena_bytes: u32,
}

/// Tables longer than `MAX_OPS` / `MAX_VALUES` are `Malformed`, not a panic or a silent cut.
#[test]
fn tables_past_capacity_are_malformed() {
    let seed = make_seed("all-ops", all_ops_model());
    let header: FileHeader<'_> = postcard::from_bytes(&seed.bytes).unwrap();
    let desc: ModelDesc<'_> = postcard::from_bytes(header.payload).unwrap();
    let file = |values: usize, ops: usize| {
        let d = UnboundedDesc {
            input: &desc.input,
            output: &desc.output,
            meta: &desc.meta,
            values: desc.values.iter().copied().cycle().take(values).collect(),
            ops: desc.ops.iter().cloned().cycle().take(ops).collect(),
            arena_bytes: desc.arena_bytes,
        };
        let env = Envelope { payload: Some(postcard::to_allocvec(&d).unwrap()), ..Envelope::default() };
        encode(&header, &desc, &env)
    };
    // The mirror writes exactly what the runtime's types write.
    assert_eq!(file(desc.values.len(), desc.ops.len()), seed.bytes);
    let (max_ops, max_values) = (qfd_runtime::format::MAX_OPS, qfd_runtime::format::MAX_VALUES);
    let at_capacity = Model::load(&file(max_values, max_ops)).err();
    assert!(at_capacity.is_some() && at_capacity != Some(LoadError::Malformed), "{at_capacity:?}");
    assert_eq!(Model::load(&file(max_values + 1, max_ops)).err(), Some(LoadError::Malformed));
    assert_eq!(Model::load(&file(max_values, max_ops + 1)).err(), Some(LoadError::Malformed));
    assert_eq!(Model::load(&file(10_000, 10_000)).err(), Some(LoadError::Malformed));
}

/// A tiny file can describe an enormous computation: a 4096x4096 input, a 255x255 max pool padded by 127,
/// about 10^12 window taps (hours on a Cortex-M). The loader bounds the work of one inference: the default
/// limit refuses it with a typed error, and a caller that lifts the limit sees the figure before running.
#[test]
fn tiny_file_demanding_unbounded_work_is_refused() {
    let seed = make_seed("all-ops", all_ops_model());
    let header: FileHeader<'_> = postcard::from_bytes(&seed.bytes).unwrap();
    let mut desc: ModelDesc<'_> = postcard::from_bytes(header.payload).unwrap();
    let side = 4096u16;
    let bytes = side as u32 * side as u32;
    desc.values.clear();
    desc.values
        .push(qfd_runtime::format::ValueDesc {
            shape: [side, side, 1],
            elem: ElemType::Codes { bits: 1 },
            arena_offset: 0,
        })
        .unwrap();
    desc.values
        .push(qfd_runtime::format::ValueDesc {
            shape: [side, side, 1],
            elem: ElemType::Codes { bits: 1 },
            arena_offset: bytes,
        })
        .unwrap();
    desc.values
        .push(qfd_runtime::format::ValueDesc { shape: [1, 1, 1], elem: ElemType::I32, arena_offset: 0 })
        .unwrap();
    let window = Window {
        kernel: [255, 255],
        stride: [1, 1],
        padding: Padding { top: 127, left: 127, bottom: 127, right: 127 },
    };
    desc.ops.clear();
    desc.ops.push(OpDesc::MaxPool(MaxPoolDesc { input: 0, window })).unwrap();
    desc.ops.push(OpDesc::GlobalSumPool(GlobalSumPoolDesc { input: 1 })).unwrap();
    desc.arena_bytes = 2 * bytes;
    desc.output.class_names = "";
    desc.input.mean.clear();
    desc.input.std.clear();
    let file = encode(&header, &desc, &Envelope::default());
    assert!(file.len() < 200, "{} bytes", file.len());
    assert_eq!(Model::load(&file).unwrap_err(), LoadError::TooMuchWork);
    let unbounded = Model::load_with_limit(&file, u64::MAX).expect("valid apart from its size");
    assert!(unbounded.work() >= work(unbounded.desc()), "{} < {}", unbounded.work(), work(unbounded.desc()));
    assert!(unbounded.work() > 1_000_000_000_000, "work {}", unbounded.work());
    assert_eq!(Model::load_with_limit(&file, unbounded.work() - 1).unwrap_err(), LoadError::TooMuchWork);
}

/// Representative hostile fields of the transformer ops, each with the one error it must give.
#[test]
fn hostile_transformer_fields_give_the_expected_error() {
    let seed = make_seed("vit", vit_model());
    let header: FileHeader<'_> = postcard::from_bytes(&seed.bytes).unwrap();
    let desc: ModelDesc<'_> = postcard::from_bytes(header.payload).unwrap();
    let load = |d: &ModelDesc<'_>| Model::load(&encode(&header, d, &Envelope::default())).err();
    assert_eq!(load(&desc), None);
    let first = |kind: &str| desc.ops.iter().position(|op| op.kind() == kind).unwrap();
    let op = |i: usize| Some(i as u16);
    let (norm, add, scores, softmax, values, gelu) = (
        first("layer_norm"),
        first("channel_add"),
        first("attention_scores"),
        first("softmax"),
        first("attention_values"),
        first("lookup"),
    );
    let error = |i: usize, change: &dyn Fn(&mut OpDesc<'_>)| {
        let mut d = desc.clone();
        change(&mut d.ops[i]);
        load(&d)
    };
    let bad_params = |i: usize| Some(LoadError::BadParams { op: op(i).unwrap() });
    static WIDE_SHIFTS: [u8; 16] = [8; 16];
    static SHORT: [u8; 15] = [0; 15];
    let (wide_shifts, short) = (&WIDE_SHIFTS, &SHORT);

    assert_eq!(
        error(norm, &|o| if let OpDesc::LayerNorm(n) = o {
            n.shifts = wide_shifts
        }),
        bad_params(norm),
        "a PTF shift of 8"
    );
    assert_eq!(
        error(norm, &|o| if let OpDesc::LayerNorm(n) = o {
            n.shifts = short
        }),
        bad_params(norm)
    );
    assert_eq!(
        error(add, &|o| if let OpDesc::ChannelAdd(a) = o {
            a.shifts_b = short
        }),
        bad_params(add),
        "a shift table of 15 entries for 16 channels"
    );
    assert_eq!(
        error(add, &|o| if let OpDesc::ChannelAdd(a) = o {
            a.input_weights = [1 << 24, 2]
        }),
        Some(LoadError::AccumulatorOverflow { op: add as u16 })
    );
    assert_eq!(
        error(scores, &|o| if let OpDesc::AttentionScores(a) = o {
            a.heads = 3
        }),
        Some(LoadError::BadGeometry { op: scores as u16 }),
        "3 heads of 16 channels"
    );
    assert_eq!(
        error(scores, &|o| if let OpDesc::AttentionScores(a) = o {
            a.heads = 4
        }),
        Some(LoadError::ShapeMismatch { op: scores as u16 }),
        "4 heads, but the logits recorded for 2"
    );
    for change in [
        |p: &mut qfd_runtime::format::SoftmaxDesc| p.exp.x0 = 0,
        |p: &mut qfd_runtime::format::SoftmaxDesc| p.exp.c = 0,
        |p: &mut qfd_runtime::format::SoftmaxDesc| p.exp.b = -1,
        |p: &mut qfd_runtime::format::SoftmaxDesc| p.exp.fraction = 17,
        // A row's sum could pass 2^62.
        |p: &mut qfd_runtime::format::SoftmaxDesc| p.exp.shift = 62,
    ] {
        assert_eq!(
            error(softmax, &|o| if let OpDesc::Softmax(p) = o {
                change(p)
            }),
            bad_params(softmax)
        );
    }
    assert_eq!(
        error(softmax, &|o| if let OpDesc::Softmax(p) = o {
            p.probs = ProbCodes::Linear { bits: 8 }
        }),
        Some(LoadError::ShapeMismatch { op: softmax as u16 }),
        "8-bit probabilities recorded as 4-bit codes"
    );
    assert_eq!(
        error(values, &|o| if let OpDesc::AttentionValues(a) = o {
            a.probs = ProbCodes::Linear { bits: 4 }
        }),
        None,
        "4-bit linear probabilities read the same 4-bit codes"
    );
    assert_eq!(
        error(values, &|o| if let OpDesc::AttentionValues(a) = o {
            a.probs = ProbCodes::Linear { bits: 9 }
        }),
        bad_params(values)
    );
    assert_eq!(
        error(gelu, &|o| if let OpDesc::Lookup(l) = o {
            l.table = short
        }),
        bad_params(gelu)
    );
}
