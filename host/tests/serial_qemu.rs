//! The UART link under QEMU, against real firmware: `run --port qemu` (the SDK's link in lockstep over
//! the emulated UART) and the MLPerf Tiny runner protocol (`qfd-host mlperf`) on qemu-m4 and qemu-m55,
//! every result equal to the host runtime's; and the ports that do not suit a board are refused.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use qfd_codegen::encode_model;
use qfd_codegen::synth::{synth, Arch, SynthConfig};
use qfd_host::device::mlperf::{self, MlperfOptions, Mode};
use qfd_host::device::serial::PortName;
use qfd_host::device::{run, Engine, RunOptions};

/// A small synthetic W4A4 ResNet-8 in `dir`.
fn model(dir: &tempfile::TempDir) -> PathBuf {
    let mut config = SynthConfig::new(Arch::ResNet8, [8, 8, 3]);
    (config.weight_bits, config.act_bits) = (4, 4);
    let path = dir.path().join("m.qfdm");
    std::fs::write(&path, encode_model(&synth(&config).unwrap()).unwrap()).unwrap();
    path
}

fn options(board: &str, model: PathBuf, samples: usize, port: Option<PortName>) -> RunOptions {
    RunOptions {
        board: board.into(),
        model,
        data: None,
        dataset: None,
        random_inputs: true,
        samples,
        timeout: Duration::from_secs(60),
        engine: Engine::Generated,
        trace: false,
        time_all_layers: false,
        build_only: false,
        port,
        save_elf: None,
    }
}

#[test]
fn run_over_the_qemu_uart_matches_the_host_runtime() {
    if !common::qemu_installed() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let report = run(&options("qemu-m4", model(&dir), 60, Some(PortName::Qemu)), |_, _| {}).unwrap();
    assert_eq!(report.samples, 60);
    assert!(report.parity(), "{}", report.to_text());
    assert_eq!(report.times.len(), 60, "every input answered");
    assert!(report.stack.is_some_and(|(peak, _)| peak > 0), "the Done frame carries the stack");
}

#[test]
fn the_mlperf_command_sequence_matches_the_host_runtime_on_m4_and_m55() {
    if !common::qemu_installed() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let model = model(&dir);
    for board in ["qemu-m4", "qemu-m55"] {
        for (mode, samples) in [(Mode::Accuracy, 12), (Mode::Performance, 3)] {
            let opts = MlperfOptions {
                run: options(board, model.clone(), samples, None),
                mode,
                iterations: 4,
                warmup: 1,
            };
            let report = mlperf::run(&opts, |_, _| {}).unwrap();
            let text = report.to_text();
            assert_eq!(report.inputs.len(), samples, "{text}");
            assert!(report.parity(), "{board} {mode:?}: {text}");
            assert!(report.device.iter().any(|l| *l == format!("m-name-dut-[{board}]")), "{text}");
            assert!(report.device.iter().any(|l| l.starts_with("m-model-[qfdm-")), "{text}");
            match mode {
                Mode::Performance => {
                    let median = report.median_latency_us.expect("a median in performance mode");
                    assert!(median > 10.0, "a real time, not zero: {median} us");
                    assert!(text.contains("Median throughput is"), "{text}");
                }
                Mode::Accuracy => {
                    assert_eq!(report.iterations, 1, "one inference per input");
                    assert!(!text.contains("Performance results"), "{text}");
                }
            }
        }
    }
}

#[test]
fn a_port_that_does_not_suit_the_board_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let model = model(&dir);
    let device = PortName::Device { path: "/dev/ttyACM0".into(), baud: 115_200 };
    let err = run(&options("qemu-m4", model.clone(), 1, Some(device)), |_, _| {}).unwrap_err().to_string();
    assert!(err.contains("say --port qemu"), "{err}");
    let err =
        run(&options("rp-pico", model.clone(), 1, Some(PortName::Qemu)), |_, _| {}).unwrap_err().to_string();
    assert!(err.contains("real board"), "{err}");
    // A real board whose file names no serial firmware.
    let device = PortName::Device { path: "/dev/ttyACM0".into(), baud: 115_200 };
    let mut opts = options("nucleo-l4r5zi", model, 1, Some(device));
    opts.build_only = true;
    let err = run(&opts, |_, _| {}).unwrap_err().to_string();
    assert!(err.contains("names no serial firmware"), "{err}");
}
