//! What the fuzz targets share: checking one model file against the robustness contract.
//!
//! Contract (`docs/format.md`, and `docs/fuzzing.md`): a truncated, corrupted or hostile file gives a typed
//! `LoadError`, never a panic; a model that loads runs without panicking and returns `Ok` or a typed
//! `RunError`. Models whose arena or work is too large for one fuzzing iteration are loaded but not run.

use qfd_runtime::format::{ElemType, FileHeader, ModelDesc, OpDesc, FORMAT_MAJOR, FORMAT_MINOR, MAGIC};
use qfd_runtime::ops::OpValues;
use qfd_runtime::{Model, PAYLOAD_CRC};

/// Loaded models needing a larger arena are not run.
pub const MAX_ARENA: usize = 16 << 20;
/// Loaded models doing more work than this (roughly, inner-loop iterations) are not run.
pub const MAX_WORK: u64 = 20_000_000;

/// Inner-loop iterations of one inference of a validated model (MACs plus window taps visited).
pub fn work(desc: &ModelDesc<'_>) -> u64 {
    let mut total = 0u64;
    for (i, op) in desc.ops.iter().enumerate() {
        let out = &desc.values[i + 1];
        let out_elems = out.elems() as u64;
        let out_px = out.shape[0] as u64 * out.shape[1] as u64;
        let taps = |k: [u8; 2]| k[0] as u64 * k[1] as u64;
        let w = match op {
            OpDesc::Conv2d(c) => {
                let cin_g = (desc.values[c.input as usize].shape[2] / c.groups.max(1)) as u64;
                let t = taps(c.window.kernel);
                out_elems * t * cin_g + out_px * c.groups as u64 * t * (cin_g + 1)
            }
            OpDesc::FullyConnected(f) => {
                (out.shape[2] as u64 + 1) * desc.values[f.input as usize].elems() as u64
            }
            OpDesc::MaxPool(p) => out_elems * taps(p.window.kernel),
            OpDesc::AvgPool(p) => out_elems * taps(p.window.kernel),
            OpDesc::GlobalSumPool(p) => desc.values[p.input as usize].elems() as u64,
            OpDesc::Add(_) => out_elems,
            // The transformer ops: the runtime's own estimate.
            _ => op.work(OpValues { values: &desc.values, index: i }),
        };
        total = total.saturating_add(w);
    }
    total
}

/// Loads `file`; if it loads and is small enough, runs it on a deterministic input. Panics only on a
/// contract violation (which is what the fuzzer looks for).
pub fn load_and_run(file: &[u8]) {
    let model = match Model::load(file) {
        Ok(model) => model,
        Err(e) => {
            // Formatting the error must not panic either.
            let _ = format!("{e} {e:?}");
            return;
        }
    };
    if model.arena_size() > MAX_ARENA || work(model.desc()) > MAX_WORK {
        return;
    }
    let bits = match model.desc().values[0].elem {
        ElemType::Codes { bits } => bits.min(8),
        ElemType::I32 => 8,
    };
    let mask = (((1u16 << bits) - 1) & 0xFF) as u8;
    // Deterministic: the same file always runs the same way, as libFuzzer needs to reproduce a finding.
    let seed = file.len() as u8;
    let input: Vec<u8> =
        (0..model.input_len()).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) & mask).collect();
    let mut arena = vec![0u8; model.arena_size()];
    let mut logits = vec![0i32; model.num_classes()];
    match model.run(&input, &mut arena, &mut logits) {
        Ok(class) => assert!(class < logits.len(), "class {class} of {} classes", logits.len()),
        Err(e) => {
            let _ = format!("{e} {e:?}");
        }
    }
}

/// Wraps `payload` (an encoded `ModelDesc`, or anything) in a valid header with the right CRC, so that the
/// fuzzer's changes reach the decoder and the validator instead of stopping at the CRC.
pub fn wrap_payload(payload: &[u8]) -> Vec<u8> {
    let header = FileHeader {
        magic: MAGIC,
        format_major: FORMAT_MAJOR,
        format_minor: FORMAT_MINOR,
        producer: "fuzz",
        payload_crc32: PAYLOAD_CRC.checksum(payload),
        payload,
    };
    postcard::to_allocvec(&header).expect("a header always encodes")
}
