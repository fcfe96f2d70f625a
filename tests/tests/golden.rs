//! Golden bytes: pins the `.qfdm` encoding (docs/format.md) so a refactor cannot silently change files that
//! are already on users' boards. If this test fails, the format changed: either undo the change, or bump
//! `FORMAT_MAJOR` (incompatible) / `FORMAT_MINOR` (an addition old readers ignore), update docs/format.md,
//! and only then update the bytes below.

use qfd_codegen::encode::PRODUCER;
use qfd_codegen::encode_model;
use qfd_codegen::graph::{ConvSpec, FcSpec, Graph, GraphMeta};
use qfd_runtime::format::{Clamp, FcOutput, Padding, Window, FORMAT_MAJOR, FORMAT_MINOR};
use qfd_runtime::requant::RequantParams;
use qfd_runtime::PAYLOAD_CRC;
use qfd_tests::run_on_host;

/// Input 2x2x1 8-bit codes -> 1x1 conv, 2 channels, 4-bit weights, 4-bit outputs -> global sum pool ->
/// fully connected to 3 logits with 8-bit weights.
fn tiny_graph() -> Graph {
    let meta = GraphMeta {
        arch: "tiny".into(),
        dataset: "golden".into(),
        weight_bits: 4,
        act_bits: 4,
        mean: vec![0.5],
        std: vec![0.25],
        logit_scale: 0.5,
        class_names: vec!["a".into(), "b".into(), "c".into()],
        fake_quant_accuracy: Some(0.75),
        integer_accuracy: None,
    };
    let mut g = Graph::new([2, 2, 1], 8, meta);
    let conv = ConvSpec {
        out_channels: 2,
        window: Window { kernel: [1, 1], stride: [1, 1], padding: Padding::default() },
        groups: 1,
        weight_bits: 4,
        // Codes 12 and 5 stand for the weights 2 * 12 - 15 = 9 and 2 * 5 - 15 = -5.
        weight_codes: vec![12, 5],
        // (acc - 114) / 32 and (acc + 1299.5) / 64, rounded half away from zero. The multiplier is 2^30, so an
        // accumulator unit is 2^30 product units and the offsets are -114 * 2^30 and 1299.5 * 2^30: the second
        // has half a unit, which format 1's whole-unit `i32` bias could not hold.
        requant: vec![
            RequantParams { offset: -114 << 30, multiplier: 1 << 30, shift: -4 },
            RequantParams { offset: 2599 << 29, multiplier: 1 << 30, shift: -5 },
        ],
        clamp: Clamp { min: 0, max: 15 },
        out_bits: 4,
    };
    let x = g.conv2d("conv", g.input_id(), conv).unwrap();
    let pooled = g.global_sum_pool("pool", x).unwrap();
    let fc = FcSpec {
        outputs: 3,
        weight_bits: 8,
        // [class][channel]; code k stands for 2k - 255: (1, -1), (255, -255), (5, 25).
        weight_codes: vec![128, 127, 255, 0, 130, 140],
        // Logits: the offset is added to the accumulator, in accumulator units.
        requant: [7, -3, 0].map(|offset| RequantParams { offset, multiplier: 0, shift: 0 }).to_vec(),
        output: FcOutput::Logits,
        out_bits: 8,
    };
    g.fully_connected("fc", pooled, fc).unwrap();
    g
}

/// The file, field by field, as postcard writes it (docs/format.md): integers wider than a byte are varints
/// (LEB128, zigzag for signed), `f32` is 4 bytes little-endian, a slice or string is a varint length then its
/// bytes, an enum is a varint variant index then its fields, `Option` is `00` or `01` then the value.
///
/// The header's producer string carries the crate version, so the test splices in [`PRODUCER`] instead of
/// pinning it; every other byte is pinned. The first bytes of the file are:
///
/// ```text
/// 51 46 44 4d         magic "QFDM"
/// 03                  format_major = 3 (varint)
/// 01                  format_minor = 1 (varint)
/// 11                  producer length = 17 (varint)
/// 71 66 64 2d ...     producer "qfd-codegen 0.1.0" (17 bytes)
/// f0 af c7 bd 0f      payload_crc32 = 0xf7b1_d7f0 (varint: a u32 takes 1-5 bytes)
/// a1 01               payload length = 161 (varint)
/// 01 00 00 00 3f      payload: input.mean = [0.5] (length 1, then f32 LE)
/// ```
///
/// Format 2 changed the requantization record from 9 bytes (`bias: i32` in accumulator units, multiplier,
/// shift) to 13 (`offset: i64` in product units, multiplier, shift): the two tables below grew by 4 bytes per
/// record, and with them the payload length and CRC. Format 3 packs activations below 8 bits in the arena:
/// the 4-bit conv output takes 4 bytes instead of 8, and the memory plan (the value offsets) changed.
const HEADER_VERSION: &str = "5146444d 03 01";
const PAYLOAD_CRC32: u32 = 0xf7b1_d7f0;
const PAYLOAD: &[(&str, &str)] = &[
    ("input.mean = [0.5]", "01 0000003f"),
    ("input.std = [0.25]", "01 0000803e"),
    ("output.logit_scale = 0.5", "0000003f"),
    ("output.class_names = \"a\\nb\\nc\"", "05 610a620a63"),
    ("meta.arch = \"tiny\"", "04 74696e79"),
    ("meta.dataset = \"golden\"", "06 676f6c64656e"),
    ("meta.weight_bits, act_bits = 4, 4", "04 04"),
    ("meta.fake_quant_accuracy = Some(0.75)", "01 0000403f"),
    ("meta.integer_accuracy = None", "00"),
    ("values: 4 entries", "04"),
    ("value 0: 2x2x1, Codes { bits: 8 }, offset 0", "020201 00 08 00"),
    ("value 1: 2x2x2, Codes { bits: 4 } (4 bytes, packed), offset 4", "020202 00 04 04"),
    ("value 2: 1x1x2, I32, offset 12", "010102 01 0c"),
    ("value 3: 1x1x3, I32, offset 0", "010103 01 00"),
    ("ops: 3 entries", "03"),
    ("op 0: Conv2d, input value 0", "00 00"),
    ("  window: kernel 1x1, stride 1x1, padding 0,0,0,0", "0101 0101 00000000"),
    ("  groups = 1", "01"),
    ("  weights: 4 bits, 1 byte: codes 12 (low nibble) and 5 (high)", "04 01 5c"),
    ("  requant: 26 bytes, two 13-byte records", "1a"),
    ("    offset -114 * 2^30, multiplier 2^30, shift -4", "00000080e3ffffff 00000040 fc"),
    ("    offset 1299.5 * 2^30, multiplier 2^30, shift -5", "000000e044010000 00000040 fb"),
    ("  clamp 0..=15", "00 0f"),
    ("op 1: GlobalSumPool, input value 1", "05 01"),
    ("op 2: FullyConnected, input value 2", "01 02"),
    ("  weights: 8 bits, 6 bytes", "08 06 807fff00828c"),
    ("  requant: 39 bytes, three 13-byte records", "27"),
    ("    offset 7", "0700000000000000 00000000 00"),
    ("    offset -3", "fdffffffffffffff 00000000 00"),
    ("    offset 0", "0000000000000000 00000000 00"),
    ("  output = Logits", "01"),
    ("arena_bytes = 20", "14"),
];

fn unhex(s: &str) -> Vec<u8> {
    let digits: Vec<u8> = s.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    digits
        .chunks(2)
        .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).unwrap(), 16).expect("hex digits"))
        .collect()
}

/// postcard's unsigned varint: 7 bits per byte, least significant first, high bit set on all but the last.
fn varint(mut v: u64) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return out;
        }
        out.push(byte | 0x80);
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn golden_file() -> Vec<u8> {
    let payload: Vec<u8> = PAYLOAD.iter().flat_map(|(_, h)| unhex(h)).collect();
    let mut file = unhex(HEADER_VERSION);
    file.extend(varint(PRODUCER.len() as u64));
    file.extend(PRODUCER.as_bytes());
    file.extend(varint(PAYLOAD_CRC32 as u64));
    file.extend(varint(payload.len() as u64));
    file.extend(payload);
    file
}

#[test]
fn the_encoding_of_a_tiny_model_is_pinned() {
    let bytes = encode_model(&tiny_graph()).unwrap();
    let expected = golden_file();
    if bytes != expected {
        let at =
            bytes.iter().zip(&expected).position(|(a, b)| a != b).unwrap_or(bytes.len().min(expected.len()));
        panic!(
            "the .qfdm encoding changed (first difference at byte {at}; see this file's module docs)\n\
             encoded:  {}\nexpected: {}",
            hex(&bytes),
            hex(&expected)
        );
    }
}

#[test]
fn the_pinned_header_states_the_current_format() {
    assert_eq!((FORMAT_MAJOR, FORMAT_MINOR), (3, 1), "update HEADER_VERSION and docs/format.md");
    assert!(PRODUCER.starts_with("qfd-codegen "), "{PRODUCER}");
    let payload: Vec<u8> = PAYLOAD.iter().flat_map(|(_, h)| unhex(h)).collect();
    // The checksum is CRC-32/ISO-HDLC, the one zlib computes.
    assert_eq!(PAYLOAD_CRC.checksum(&payload), PAYLOAD_CRC32);
    assert_eq!(PAYLOAD_CRC.checksum(b"123456789"), 0xcbf4_3926);
    assert_eq!(varint(161), [0xa1, 0x01]);
}

#[test]
fn the_pinned_model_computes_the_hand_worked_logits() {
    // conv: channel 0 = clamp((9x - 114) / 32), channel 1 = clamp((-5x + 1299.5) / 64), to 0..=15:
    //   x = 0, 50, 100, 255 -> channel 0: 0 (-3.56), 11 (10.5, away from 0), 15, 15 (sum 41); channel 1: 15, 15,
    //   12 (12.49: with format 1's bias rounded to 1300 it was the tie 12.5 -> 13), 0 (sum 42).
    //   fc: 41 - 42 + 7 = 6; 255 * (41 - 42) - 3 = -258; 5 * 41 + 25 * 42 = 1255.
    let r = run_on_host(&golden_file(), &[0, 50, 100, 255]).unwrap();
    assert_eq!(r.logits, [6, -258, 1255]);
    assert_eq!(r.class, 2);
}
