//! Both protocols served by `qfd-device` on the host, over an in-memory port: what the firmware does on a
//! board, checked against the runtime's own answers for the same model and inputs.

use qfd_codegen::encode_model;
use qfd_codegen::synth::{synth, Arch, SynthConfig};
use qfd_device::host::{MemoryPort, StepClock};
use qfd_device::link::{self, Greeting, LinkBuffers};
use qfd_device::mlperf::{self, MlperfBuffers, NoPin, TimestampMode};
use qfd_device::{Board, Interpreter, Model as _, ServeError, TimeUnit};
use qfd_link::frame::{self, Pushed};
use qfd_link::{Detail, ErrorKind, FrameReader, Request, Response, MAX_RESPONSE_FRAME};
use qfd_runtime::Model;

/// A clock that advances 1,000 ticks at every reading (1 ms at 1 MHz).
fn step_clock() -> StepClock {
    StepClock::new(TimeUnit::Microseconds, 1_000_000, 1_000)
}

const BOARD: Board = Board { name: "host", clock_hz: 1_000_000, stack_usage: None };

fn model_bytes() -> Vec<u8> {
    let mut config = SynthConfig::new(Arch::ResNet8, [8, 8, 3]);
    (config.weight_bits, config.act_bits) = (4, 4);
    encode_model(&synth(&config).unwrap()).unwrap()
}

fn inputs(model: &Model<'_>, n: usize) -> Vec<Vec<u8>> {
    (0..n).map(|i| (0..model.input_len()).map(|j| ((i * 37 + j * 11) % 16) as u8).collect()).collect()
}

fn runtime_logits(model: &Model<'_>, input: &[u8]) -> Vec<i32> {
    let mut arena = vec![0u8; model.arena_size()];
    let mut logits = vec![0i32; model.num_classes()];
    model.run(input, &mut arena, &mut logits).unwrap();
    logits
}

fn frame(request: &Request<'_>) -> Vec<u8> {
    let mut buf = vec![0u8; 4096];
    frame::encode(request, &mut buf).unwrap().to_vec()
}

#[test]
fn the_link_answers_hello_every_input_and_finish() {
    let bytes = model_bytes();
    let model = Model::load(&bytes).unwrap();
    let mut arena = vec![0u8; model.arena_size()];
    let mut device_model = Interpreter::new(&model, &mut arena, 0xABCD).unwrap();
    let inputs = inputs(&model, 3);
    let mut stream = frame(&Request::Hello);
    for (i, input) in inputs.iter().enumerate() {
        stream.extend(frame(&Request::Infer { id: i as u32, detail: Detail::default(), input }));
    }
    stream.extend(frame(&Request::Infer { id: 9, detail: Detail::default(), input: &[1, 2, 3] }));
    stream.extend(frame(&Request::Finish));
    let mut port = MemoryPort::new(&stream, 5);
    let mut buffers = Box::new(LinkBuffers::<4096>::new());
    let served = link::serve(
        &mut port,
        &mut device_model,
        &mut step_clock(),
        &BOARD,
        Greeting::OnRequest,
        &mut buffers,
    );
    assert_eq!(served, Ok(4), "four Infer requests, one refused");

    let mut reader = Box::new(FrameReader::<MAX_RESPONSE_FRAME>::new());
    let mut responses = Vec::new();
    let mut rest = &port.output[..];
    while !rest.is_empty() {
        let (used, pushed) = reader.push(rest);
        rest = &rest[used..];
        if let Some(Pushed::Frame(f)) = pushed {
            responses.push(format!("{:?}", frame::decode::<Response>(f).unwrap()));
            let Ok(Response::Result(r)) = frame::decode::<Response>(f) else { continue };
            assert_eq!(r.logits.to_vec(), runtime_logits(&model, &inputs[r.id as usize]), "input {}", r.id);
            assert_eq!(r.time, 1_000, "one clock step between the start and the end");
        }
    }
    assert_eq!(responses.len(), 6, "{responses:#?}");
    assert!(responses[0].starts_with("Hello(Hello { protocol: 2, board: \"host\""), "{}", responses[0]);
    assert!(responses[0].contains("model_crc: 43981"), "{}", responses[0]);
    let refused = format!("{:?}", ErrorKind::InputLength { expected: model.input_len() as u32, found: 3 });
    assert!(responses[4].contains(&refused), "{}", responses[4]);
    assert!(responses[5].starts_with("Done(Done { inferences: 4"), "{}", responses[5]);
}

#[test]
fn a_link_that_ends_before_finish_is_an_error() {
    let bytes = model_bytes();
    let model = Model::load(&bytes).unwrap();
    let mut arena = vec![0u8; model.arena_size()];
    let mut device_model = Interpreter::new(&model, &mut arena, 0).unwrap();
    let hello = frame(&Request::Hello);
    let mut port = MemoryPort::new(&hello, 5);
    let mut buffers = Box::new(LinkBuffers::<4096>::new());
    let served = link::serve(
        &mut port,
        &mut device_model,
        &mut step_clock(),
        &BOARD,
        Greeting::Announce,
        &mut buffers,
    );
    assert_eq!(served, Err(ServeError::Ended));
    let mut small = Box::new(LinkBuffers::<64>::new());
    let served =
        link::serve(&mut port, &mut device_model, &mut step_clock(), &BOARD, Greeting::Announce, &mut small);
    assert_eq!(
        served,
        Err(ServeError::BufferTooSmall),
        "a receive buffer too small for the input is refused"
    );
}

/// Runs the MLPerf protocol over `commands` and returns the device's lines.
fn mlperf_session(model: &Model<'_>, commands: &str) -> Vec<String> {
    let mut arena = vec![0u8; model.arena_size()];
    let mut device_model = Interpreter::new(model, &mut arena, 0x1234_5678).unwrap();
    assert_eq!(device_model.info().input_len, 192);
    let mut port = MemoryPort::new(commands.as_bytes(), 5);
    let mut buffers = Box::new(MlperfBuffers::<192>::new());
    let mode = TimestampMode::Performance;
    mlperf::serve(&mut port, &mut device_model, &mut step_clock(), &mut NoPin, mode, &BOARD, &mut buffers)
        .unwrap();
    String::from_utf8(port.output).unwrap().lines().map(str::to_string).collect()
}

#[test]
fn the_mlperf_sequence_loads_infers_and_reports_the_runtimes_logits() {
    let bytes = model_bytes();
    let model = Model::load(&bytes).unwrap();
    let input = &inputs(&model, 1)[0];
    let hex: String = input.iter().map(|b| format!("{b:02x}")).collect();
    // The input in three `db` commands of uneven length, as a runner might split it.
    let (a, rest) = hex.split_at(64);
    let (b, c) = rest.split_at(200);
    let commands = format!("name%profile%db load 192%db {a}%db {b}%db {c}%infer 3 2%results%");
    let lines = mlperf_session(&model, &commands);
    let logits = runtime_logits(&model, input);
    let results = format!("m-results-[{}]", logits.iter().map(i32::to_string).collect::<Vec<_>>().join(","));
    let expected_start =
        ["m-timestamp-mode-performance", "m-init-done", "m-ready", "m-name-dut-[host]", "m-ready"];
    assert_eq!(lines[..5], expected_start);
    assert!(lines.contains(&"m-model-[qfdm-12345678]".to_string()), "{lines:#?}");
    assert!(lines.contains(&"m-[Expecting 192 bytes]".to_string()), "{lines:#?}");
    assert_eq!(lines.iter().filter(|l| *l == "m-load-done").count(), 1, "{lines:#?}");
    let infer_at = lines.iter().position(|l| l == "m-warmup-start-2").unwrap();
    assert_eq!(lines[infer_at + 1..infer_at + 3], ["m-warmup-done", "m-infer-start-3"]);
    let laps: Vec<u64> = lines.iter().filter_map(|l| l.strip_prefix("m-lap-us-")?.parse().ok()).collect();
    assert_eq!(laps.len(), 2, "{lines:#?}");
    assert!(laps[1] > laps[0], "time runs between the timestamps");
    assert_eq!(
        lines.iter().filter(|l| **l == results).count(),
        2,
        "after infer, and for results: {lines:#?}"
    );
    assert_eq!(lines.last().unwrap(), "m-ready");
}

#[test]
fn bad_mlperf_commands_get_e_lines_and_the_device_stays_ready() {
    let bytes = model_bytes();
    let model = Model::load(&bytes).unwrap();
    let too_big = "f".repeat(384);
    let commands = format!(
        "infer 1 0%results%db load 10%db load 192%db 0g%db 123%db {too_big}%frobnicate%infer 0%db print%"
    );
    let lines = mlperf_session(&model, &commands);
    let errors: Vec<&String> = lines.iter().filter(|l| l.starts_with("e-")).collect();
    let expected = [
        "e-[Load the input first: 0 of 192 bytes loaded]",
        "e-[No results yet: run 'infer' first]",
        "e-[The model reads 192 bytes, not 10]",
        "e-[Invalid hex digits in '0g']",
        "e-[Odd number of hex digits]",
        "e-[Command longer than 256 characters]",
        "e-[Unknown command: frobnicate]",
        "e-[Inference iterations must be >0]",
    ];
    assert_eq!(errors, expected, "{lines:#?}");
    assert_eq!(
        lines.iter().filter(|l| *l == "m-ready").count(),
        11,
        "a ready after the banner and each command"
    );
}
