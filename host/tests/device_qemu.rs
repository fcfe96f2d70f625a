//! The link against real firmware under QEMU: a corrupted request frame is detected, reported and
//! skipped, every other input still gets the host runtime's answer, and the run ends promptly; a stream
//! cut short makes the firmware fail cleanly with its reason in the log, not hang.

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use qfd_boards::Board;
use qfd_codegen::encode_model;
use qfd_codegen::synth::{synth, Arch, SynthConfig};
use qfd_host::device::session::{execute, request_frame, Expect};
use qfd_host::device::{firmware, target, DeviceError, Engine};
use qfd_link::{Detail, ErrorKind, FrameError, Request};
use qfd_runtime::Model;

/// Builds the qemu-m4 firmware for a small synthetic model; returns the board, model bytes, ELF and a
/// fresh work directory.
fn firmware_for_tests(dir: &tempfile::TempDir) -> (Board, Vec<u8>, PathBuf) {
    let mut config = SynthConfig::new(Arch::ResNet8, [8, 8, 3]);
    (config.weight_bits, config.act_bits) = (4, 4);
    let bytes = encode_model(&synth(&config).unwrap()).unwrap();
    let model_path = dir.path().join("m.qfdm");
    std::fs::write(&model_path, &bytes).unwrap();
    let board = Board::load(&qfd_boards::boards_dir(), "qemu-m4").unwrap();
    let arena = Model::load(&bytes).unwrap().arena_size() as u64;
    let elf = dir.path().join("qfd-firmware.elf");
    let flavor = firmware::Flavor { engine: Engine::Generated, serial: false, mlperf: false };
    let built = firmware::build(&board, &model_path, arena, flavor, &elf).unwrap();
    (board, bytes, built.elf)
}

fn inputs(model: &Model<'_>, n: usize) -> Vec<Vec<u8>> {
    (0..n).map(|i| (0..model.input_len()).map(|j| (i * 37 + j * 11) as u8).collect()).collect()
}

#[test]
fn corrupted_frames_are_reported_and_skipped_and_a_cut_stream_fails_cleanly() {
    if !common::qemu_installed() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (board, bytes, elf) = firmware_for_tests(&dir);
    let model = Model::load(&bytes).unwrap();
    let crc = qfd_codegen::emit::model_crc(&bytes).unwrap();
    let inputs = inputs(&model, 6);

    // Input 2's frame has one bit flipped (CRC); input 4's is cut short and runs into input 5's (COBS or
    // CRC, and input 5 is lost with it).
    let mut stream = Vec::new();
    for (i, input) in inputs.iter().enumerate() {
        let mut frame = request_frame(&Request::Infer { id: i as u32, detail: Detail::default(), input });
        match i {
            2 => {
                let mid = frame.len() / 2;
                frame[mid] ^= if frame[mid] == 0x10 { 0x20 } else { 0x10 };
            }
            4 => frame.truncate(frame.len() / 2),
            _ => {}
        }
        stream.extend(frame);
    }
    stream.extend(request_frame(&Request::Finish));

    let mut qemu = target::for_board(&board, &dir.path().join("work")).unwrap();
    let expect = Expect { board: "qemu-m4", model_crc: crc, requests: 5 };
    let start = Instant::now();
    let outcome = execute(qemu.as_mut(), &elf, &stream, expect, Duration::from_secs(60), |_| {}).unwrap();
    assert!(start.elapsed() < Duration::from_secs(60), "no hang");
    let ids: Vec<u32> = outcome.results.iter().map(|r| r.id).collect();
    assert_eq!(ids, [0, 1, 3], "every intact request is answered");
    assert_eq!(outcome.errors.len(), 2, "{:?}", outcome.errors);
    assert_eq!(outcome.errors[0], (None, ErrorKind::BadFrame(FrameError::Crc)));
    assert!(matches!(outcome.errors[1], (None, ErrorKind::BadFrame(_))));
    assert_eq!(outcome.done.inferences, 3);
    for r in &outcome.results {
        let mut arena = vec![0u8; model.arena_size()];
        let mut logits = vec![0i32; model.num_classes()];
        let class = model.run(&inputs[r.id as usize], &mut arena, &mut logits).unwrap();
        assert_eq!((r.class as usize, r.logits.to_vec()), (class, logits), "input {}", r.id);
    }

    // Without `Finish` the firmware reaches the end of its input: it exits with failure, and says why.
    let mut cut = Vec::new();
    cut.extend(request_frame(&Request::Infer { id: 0, detail: Detail::default(), input: &inputs[0] }));
    let expect = Expect { board: "qemu-m4", model_crc: crc, requests: 1 };
    let err = execute(qemu.as_mut(), &elf, &cut, expect, Duration::from_secs(60), |_| {}).unwrap_err();
    let message = err.to_string();
    assert!(matches!(err, DeviceError::Device { .. }), "{message}");
    assert!(message.contains("exited with failure after 1 of 1 answers"), "{message}");
    assert!(
        message.contains("the port ended before the host said Finish"),
        "the device's log is decoded: {message}"
    );
}
