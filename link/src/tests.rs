extern crate std;

use std::vec::Vec as StdVec;

use proptest::prelude::*;

use super::*;
use crate::frame::{decode, encode, Pushed};

fn result(id: u32, classes: usize, layers: usize) -> InferResult {
    InferResult {
        id,
        class: (id % 7) as u16,
        logits: (0..classes).map(|i| i32::MIN + i as i32 * 99_991).collect(),
        time: u64::MAX - u64::from(id),
        layer_time: (0..layers).map(|i| u64::MAX >> (i % 64)).collect(),
        layer_crc: (0..layers).map(|i| u32::MAX - i as u32).collect(),
    }
}

fn round_trip<'b, T: Serialize + Deserialize<'b>>(message: &T, buf: &'b mut [u8]) -> Result<T, FrameError> {
    let len = encode(message, buf)?.len();
    assert_eq!(buf[len - 1], 0, "a frame ends with its terminator");
    assert!(!buf[..len - 1].contains(&0), "and holds no other zero");
    decode(&mut buf[..len - 1])
}

#[test]
fn the_largest_messages_fit_the_documented_buffers() {
    let mut buf = [0u8; MAX_RESPONSE_FRAME];
    let big = Response::Result(result(u32::MAX, MAX_CLASSES, MAX_LAYERS));
    assert_eq!(round_trip(&big, &mut buf).unwrap(), big);

    let file: std::string::String = "f".repeat(MAX_PANIC_FILE);
    let message: std::string::String = "\u{7f}".repeat(MAX_PANIC_MESSAGE);
    let panic = Response::Panic(PanicReport { file: &file, line: u32::MAX, message: &message });
    let mut buf = [0u8; MAX_RESPONSE_FRAME];
    assert_eq!(round_trip(&panic, &mut buf).unwrap(), panic);

    let input = std::vec![0xFFu8; 27_648];
    let request =
        Request::Infer { id: u32::MAX, detail: Detail { layer_time: true, layer_crc: true }, input: &input };
    let mut buf = std::vec![0u8; max_request_frame(input.len())];
    assert_eq!(round_trip(&request, &mut buf).unwrap(), request);
}

#[test]
fn a_buffer_one_byte_short_is_refused_not_overrun() {
    let request = Request::Infer { id: 1, detail: Detail::default(), input: &[0u8; 600] };
    let mut big = [0u8; 1024];
    let needed = encode(&request, &mut big).unwrap().len();
    let mut small = std::vec![0u8; needed - 1];
    assert_eq!(encode(&request, &mut small), Err(FrameError::BufferTooSmall));
}

#[test]
fn corruption_is_detected() {
    let hello = Response::Hello(Hello {
        protocol: PROTOCOL_VERSION,
        board: "qemu-m4",
        engine: Engine::Generated,
        model_crc: 0xDEAD_BEEF,
        time_unit: TimeUnit::Instructions,
        clock_hz: 25_000_000,
        input_len: 784,
        num_classes: 10,
        num_layers: 14,
        arena_bytes: 37_632,
    });
    let mut buf = [0u8; 128];
    let frame = encode(&hello, &mut buf).unwrap().to_vec();
    let body = frame.len() - 1;
    // Every single-bit flip of the body is caught (by COBS or by the CRC), never decoded as a message.
    for byte in 0..body {
        for bit in 0..8 {
            let mut bad = frame[..body].to_vec();
            bad[byte] ^= 1 << bit;
            if bad[byte] == 0 {
                // A flip that makes a zero splits the frame: the reader sees two shorter frames.
                continue;
            }
            assert!(decode::<Response>(&mut bad).is_err(), "flip of bit {bit} in byte {byte} went unnoticed");
        }
    }
    let mut truncated = frame[..body - 3].to_vec();
    assert!(decode::<Response>(&mut truncated).is_err());
    assert_eq!(decode::<Response>(&mut []), Err(FrameError::Cobs));
}

#[test]
fn a_message_of_the_wrong_kind_is_a_protocol_error() {
    let mut buf = [0u8; 64];
    let len = encode(&Request::Finish, &mut buf).unwrap().len();
    // `Finish` is variant 1; as a `Response` variant 1 is a `Result`, whose fields are missing.
    assert_eq!(decode::<Response>(&mut buf[..len - 1]), Err(FrameError::Message));
}

#[test]
fn the_reader_splits_a_stream_into_frames_and_skips_what_is_too_long() {
    let mut stream = StdVec::new();
    let mut buf = [0u8; 4096];
    let small = Request::Infer { id: 1, detail: Detail::default(), input: &[1, 2, 3] };
    stream.extend_from_slice(encode(&small, &mut buf).unwrap());
    stream.push(0); // a stray terminator is ignored
    let long = Request::Infer { id: 2, detail: Detail::default(), input: &[9; 300] };
    stream.extend_from_slice(encode(&long, &mut buf).unwrap());
    stream.extend_from_slice(encode(&Request::Finish, &mut buf).unwrap());

    let mut reader = FrameReader::<64>::new();
    let mut got = StdVec::new();
    // Feed in awkward pieces, as a transport would.
    for chunk in stream.chunks(7) {
        let mut rest = chunk;
        while !rest.is_empty() {
            let (used, pushed) = reader.push(rest);
            rest = &rest[used..];
            match pushed {
                Some(Pushed::Frame(f)) => got.push(match decode::<Request>(f).unwrap() {
                    Request::Infer { id, .. } => std::format!("infer {id}"),
                    Request::Finish => "finish".into(),
                    Request::Hello => "hello".into(),
                }),
                Some(Pushed::TooLong) => got.push("too long".into()),
                None => {}
            }
        }
    }
    assert_eq!(got, ["infer 1", "too long", "finish"]);
}

#[test]
fn layer_crc_is_crc32_iso_hdlc() {
    // The check value of CRC-32/ISO-HDLC, from the CRC catalogue.
    assert_eq!(layer_crc(b"123456789"), 0xCBF4_3926);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// The in-place encoder produces standard COBS: the `cobs` crate's decoder reads it back.
    #[test]
    fn frames_are_standard_cobs(input in proptest::collection::vec(any::<u8>(), 0..1200), id in any::<u32>()) {
        let request = Request::Infer { id, detail: Detail { layer_time: id % 2 == 0, layer_crc: id % 3 == 0 }, input: &input };
        let mut buf = std::vec![0u8; max_request_frame(input.len())];
        let frame = encode(&request, &mut buf).unwrap().to_vec();
        let mut decoded = std::vec![0u8; frame.len()];
        let n = cobs::decode(&frame, &mut decoded).unwrap().frame_size();
        let mut expected = postcard::to_slice(&request, &mut std::vec![0u8; input.len() + 64]).unwrap().to_vec();
        let crc = CRC.checksum(&expected);
        expected.extend_from_slice(&crc.to_le_bytes());
        prop_assert_eq!(&decoded[..n], &expected[..]);
        let mut body = frame[..frame.len() - 1].to_vec();
        prop_assert_eq!(decode::<Request>(&mut body).unwrap(), request);
    }
}
