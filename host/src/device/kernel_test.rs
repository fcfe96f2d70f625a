//! The kernels tested where they run: the kernel-test firmware checks, on the board, every kernel variant
//! the runtime selects for that core against the reference kernels on random cases
//! (`qfd_runtime::selftest`). The `asm!` kernels never run on the host, so this is their test.

use std::time::Duration;

use qfd_boards::Board;
use qfd_codegen::synth::{synth, Arch, SynthConfig};

use super::target::{self, Progress};
use super::{firmware, logs, DeviceError};
use crate::fsutil::{self, FsError};

/// What the board said.
#[derive(Debug, Clone, serde::Serialize)]
pub struct KernelTestReport {
    /// The board.
    pub board: String,
    /// Cases asked for.
    pub cases: u32,
    /// Seed of the cases.
    pub seed: u32,
    /// Whether the board reported no mismatch, its digest equals the host's, and (under QEMU) it exited
    /// with success.
    pub passed: bool,
    /// The digest of the outputs the board's kernels computed, as it reported it.
    pub device_digest: Option<u32>,
    /// The same digest computed on the host with the reference kernels.
    pub host_digest: u32,
    /// The device's log, decoded.
    pub log: Vec<String>,
}

/// Builds the kernel-test firmware for `board`, runs it, and reads the verdict.
pub fn kernel_test(
    board: &str,
    seed: u32,
    cases: u32,
    timeout: Duration,
) -> Result<KernelTestReport, DeviceError> {
    let board = Board::load(&qfd_boards::boards_dir(), board)?;
    if !board.is_emulated() && !cfg!(feature = "probe") {
        return Err(DeviceError::NeedsProbe { board: board.name.clone(), runner: board.run.to_string() });
    }
    let work = firmware::firmware_dir().join("target").join("kernel-test").join(&board.name);
    std::fs::create_dir_all(&work).map_err(|source| FsError::Write { path: work.clone(), source })?;
    // The firmware links a model; a small synthetic one keeps the image small. It is never run.
    let model = work.join("model.qfdm");
    let graph = synth(&SynthConfig::new(Arch::ResNet8, [8, 8, 3]))
        .map_err(|e| DeviceError::Mismatch(format!("cannot build the placeholder model: {e}")))?;
    let bytes = qfd_codegen::encode_model(&graph)
        .map_err(|e| DeviceError::Mismatch(format!("cannot encode the placeholder model: {e}")))?;
    fsutil::write_atomic(&model, &bytes)?;
    let elf = work.join("kernel-test.elf");
    firmware::build_kernel_test(&board, &model, seed, cases, &elf)?;
    let mut target = target::for_board(&board, &work)?;
    let finished = target.run(&elf, &[], timeout, &mut |_: &[u8]| Progress::More).map_err(|e| match e {
        target::TargetError::Silent { seconds } => DeviceError::Device {
            board: board.name.clone(),
            message: format!("the kernel test said nothing for {seconds} s (raise --timeout for more cases)"),
        },
        target::TargetError::Other(e) => e,
    })?;
    let log = logs::decode(&elf, &finished.log);
    let clean = log.iter().any(|l| l.contains("kernel-test result:") && l.contains(" 0 mismatches"));
    let device_digest = log.iter().find_map(|l| {
        let hex = l.split("kernel-test digest: 0x").nth(1)?;
        u32::from_str_radix(hex.trim(), 16).ok()
    });
    // The board compared its kernels with the reference compiled for it; this compares them with the
    // host's reference kernels, case by case through the digest of every output byte.
    let host_digest = qfd_runtime::selftest::reference_digest(seed, cases);
    let passed = clean && device_digest == Some(host_digest) && finished.exit != Some(false);
    Ok(KernelTestReport { board: board.name.clone(), cases, seed, passed, device_digest, host_digest, log })
}
