//! Building the firmware for a board and a model, and measuring the image.

use std::path::{Path, PathBuf};
use std::process::Command;

use qfd_boards::Board;
use qfd_runtime::kernels::select::Core;
use qfd_runtime::Model;
use serde::Serialize;

use super::{elf, DeviceError, Engine};
use crate::fsutil::{self, FsError};
use crate::model_file::ModelFile;

/// Code and stack the firmware needs besides the model and its arena, used to say early that a model
/// cannot fit (measured on qemu-m4 with a trained ResNet-8: code ~26 KiB with generated code; the stack
/// peaks at a few KiB, the link buffers are statics sized from the input).
const FIRMWARE_CODE_BYTES: u64 = 32 * 1024;
const FIRMWARE_STACK_BYTES: u64 = 16 * 1024;

/// The repository's firmware crate.
pub fn firmware_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../firmware")
}

/// Memory the firmware image uses on the board.
#[derive(Debug, Clone, Serialize)]
pub struct MemoryUse {
    /// Bytes of flash: code, constants (the model) and the initial values of `.data`.
    pub flash_bytes: u64,
    /// Flash on the board.
    pub flash_total: u64,
    /// Bytes of RAM taken by statics (the arena and link buffers included), before the stack.
    pub ram_static_bytes: u64,
    /// RAM on the board.
    pub ram_total: u64,
    /// The model's arena.
    pub arena_bytes: u64,
}

/// A built firmware image.
#[derive(Debug, Clone)]
pub struct Firmware {
    /// The ELF file.
    pub elf: PathBuf,
    /// What it takes of the board's memories.
    pub memory: MemoryUse,
}

/// Which firmware to build: how it runs the model and what it speaks over which link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flavor {
    /// Generated code or the interpreter.
    pub engine: Engine,
    /// A UART link: QEMU's for emulated boards, the board's `serial_firmware` crate for real ones.
    pub serial: bool,
    /// The MLPerf Tiny runner protocol instead of the SDK's link.
    pub mlperf: bool,
}

/// Builds the firmware for `board` with the model file `model` (a path cargo can read), copies the image
/// to `elf`, and measures it.
///
/// All boards share one cargo target directory per firmware crate, so the host-side build dependencies
/// (proc macros, the code generator) compile once; cargo keeps each board's target artifacts apart
/// because their `RUSTFLAGS` differ. A lock file held from the build until the image is copied keeps
/// concurrent builds from handing each other's images out (the image cargo leaves is the last one built).
pub fn build(
    board: &Board,
    model: &Path,
    arena_bytes: u64,
    flavor: Flavor,
    elf: &Path,
) -> Result<Firmware, DeviceError> {
    let mut features = Vec::new();
    if flavor.engine == Engine::Interpreter {
        features.push("interpreter");
    }
    if flavor.mlperf {
        features.push("mlperf");
    }
    let (dir, env) = match (flavor.serial, board.is_emulated(), &board.serial_firmware) {
        (false, ..) => (firmware_dir(), vec![]),
        (true, true, _) => (firmware_dir(), vec![("QFD_LINK", "uart".to_string())]),
        (true, false, Some(dir)) => {
            if flavor.engine == Engine::Interpreter {
                return Err(DeviceError::Mismatch(format!(
                    "{dir} (the serial firmware of {}) runs generated code only: leave out --engine interpreter",
                    board.name
                )));
            }
            (repo_dir().join(dir), vec![])
        }
        (true, false, None) => {
            return Err(DeviceError::Mismatch(format!(
                "board {} names no serial firmware (serial_firmware in boards/{}.toml): reach it through a \
                 debug probe instead (no --port), or add a firmware crate for its UART (docs/own-firmware.md)",
                board.name, board.name
            )))
        }
    };
    build_crate(&dir, board, model, arena_bytes, &features, &env, elf)
}

/// The kernel-test firmware for `board` (`--features kernel-test`): `cases` random kernel checks from
/// `seed`. `model` is any valid model (the firmware links one, and does not run it).
pub fn build_kernel_test(
    board: &Board,
    model: &Path,
    seed: u32,
    cases: u32,
    elf: &Path,
) -> Result<Firmware, DeviceError> {
    let env = [("QFD_KERNEL_TEST_SEED", seed.to_string()), ("QFD_KERNEL_TEST_CASES", cases.to_string())];
    build_crate(&firmware_dir(), board, model, 0, &["kernel-test"], &env, elf)
}

/// The repository's root.
fn repo_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The binary a firmware crate builds: its package name.
fn binary_name(dir: &Path) -> Result<String, DeviceError> {
    let manifest = dir.join("Cargo.toml");
    let text = fsutil::read(&manifest)?;
    let table: toml::Table = String::from_utf8_lossy(&text)
        .parse()
        .map_err(|e| DeviceError::Mismatch(format!("{}: {e}", manifest.display())))?;
    table
        .get("package")
        .and_then(|p| p.get("name"))
        .and_then(|n| n.as_str())
        .map(str::to_string)
        .ok_or_else(|| DeviceError::Mismatch(format!("{}: no [package] name", manifest.display())))
}

/// Builds the firmware crate in `dir` with cargo `features` and extra environment for its build script.
fn build_crate(
    dir: &Path,
    board: &Board,
    model: &Path,
    arena_bytes: u64,
    features: &[&str],
    env: &[(&str, String)],
    elf: &Path,
) -> Result<Firmware, DeviceError> {
    let target_dir = dir.join("target");
    std::fs::create_dir_all(&target_dir)
        .map_err(|source| FsError::Write { path: target_dir.clone(), source })?;
    let lock_path = target_dir.join("qfd-build.lock");
    let lock = std::fs::File::create(&lock_path)
        .map_err(|source| FsError::Write { path: lock_path.clone(), source })?;
    lock.lock().map_err(|source| FsError::Write { path: lock_path.clone(), source })?;
    let mut cargo = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cargo
        .current_dir(dir)
        .args(["build", "--release", "--target", &board.target, "--target-dir"])
        .arg(&target_dir)
        .env("QFD_BOARD", &board.name)
        .env("QFD_MODEL", std::path::absolute(model).unwrap_or_else(|_| model.to_path_buf()))
        .env("RUSTFLAGS", board.rustflags());
    if !features.is_empty() {
        cargo.args(["--features", &features.join(",")]);
    }
    cargo.envs(env.iter().map(|(k, v)| (k, v)));
    let output = cargo.output().map_err(|source| DeviceError::Spawn { program: "cargo".into(), source })?;
    if !output.status.success() {
        let log = String::from_utf8_lossy(&output.stderr);
        let tail: Vec<&str> = log.lines().rev().take(25).collect();
        let log = tail.into_iter().rev().collect::<Vec<_>>().join("\n");
        return Err(DeviceError::Build { board: board.name.clone(), log });
    }
    let built = target_dir.join(&board.target).join("release").join(binary_name(dir)?);
    std::fs::copy(&built, elf).map_err(|source| FsError::Write { path: elf.into(), source })?;
    drop(lock);
    let memory = memory_use(board, elf, arena_bytes)?;
    Ok(Firmware { elf: elf.into(), memory })
}

/// Whether a model fits a board, estimated before building: the model file and the firmware's code in
/// flash, the arena and the firmware's stack in RAM.
#[derive(Debug, Clone, Serialize)]
pub struct Fit {
    /// The board.
    pub board: String,
    /// Flash needed.
    pub flash_needed: u64,
    /// Flash on the board.
    pub flash_total: u64,
    /// RAM needed.
    pub ram_needed: u64,
    /// RAM on the board.
    pub ram_total: u64,
}

impl Fit {
    /// The estimate for a model file of `model_bytes` bytes whose arena is `arena_bytes`.
    pub fn estimate(board: &Board, model_bytes: u64, arena_bytes: u64) -> Fit {
        Fit {
            board: board.name.clone(),
            flash_needed: model_bytes + FIRMWARE_CODE_BYTES,
            flash_total: board.flash.length as u64,
            ram_needed: arena_bytes + FIRMWARE_STACK_BYTES,
            ram_total: board.ram.length as u64,
        }
    }

    /// Whether both memories suffice.
    pub fn fits(&self) -> bool {
        self.flash_needed <= self.flash_total && self.ram_needed <= self.ram_total
    }

    /// One line per memory: needed, available and what is left (or missing).
    pub fn to_text(&self) -> String {
        let line = |what: &str, needed: u64, total: u64| {
            let (word, margin) =
                if needed <= total { ("left", total - needed) } else { ("MISSING", needed - total) };
            format!(
                "{what:<6} {needed} of {total} bytes ({:.1}%), {margin} bytes {word}\n",
                100.0 * needed as f64 / total as f64
            )
        };
        format!(
            "{}: {}\n{}{}",
            self.board,
            if self.fits() {
                "fits (estimate: model + ~32 KiB of code in flash, arena + ~40 KiB of stack in RAM)"
            } else {
                "DOES NOT FIT"
            },
            line("flash", self.flash_needed, self.flash_total),
            line("RAM", self.ram_needed, self.ram_total)
        )
    }
}

/// The instruction-set features of the board's core that decide which kernels its runtime runs.
pub fn core(board: &Board) -> Core {
    Core { dsp: board.dsp, mve: board.mve }
}

/// Bytes of arena the model needs on the board: its kernels' working memory depends on the core.
pub fn arena_bytes(board: &Board, model: &Model) -> u64 {
    model.arena_size_on(core(board)) as u64
}

/// Refuses a model that cannot fit the board, before anything is built.
pub fn check_fits(board: &Board, file: &ModelFile, model: &Model) -> Result<(), DeviceError> {
    let fit = Fit::estimate(board, file.len() as u64, arena_bytes(board, model));
    if fit.fits() {
        return Ok(());
    }
    Err(DeviceError::DoesNotFit {
        model: file.path().display().to_string(),
        board: board.name.clone(),
        what: fit.to_text(),
    })
}

/// Flash and static RAM of the image, from its ELF sections.
fn memory_use(board: &Board, elf: &Path, arena: u64) -> Result<MemoryUse, DeviceError> {
    let bytes = fsutil::read(elf)?;
    let sections = elf::sections(elf, &bytes)
        .map_err(|e| DeviceError::Device { board: board.name.clone(), message: e.to_string() })?;
    let in_region = |addr: u32, r: &qfd_boards::Region| {
        (r.origin as u64..r.origin as u64 + r.length as u64).contains(&(addr as u64))
    };
    let (mut flash, mut ram) = (0u64, 0u64);
    for s in &sections {
        if in_region(s.addr, &board.ram) {
            ram += s.size as u64;
            // `.data`'s initial values are stored in flash and copied at start-up.
            if s.has_data {
                flash += s.size as u64;
            }
        } else if in_region(s.addr, &board.flash) {
            flash += s.size as u64;
        }
    }
    Ok(MemoryUse {
        flash_bytes: flash,
        flash_total: board.flash.length as u64,
        ram_static_bytes: ram,
        ram_total: board.ram.length as u64,
        arena_bytes: arena,
    })
}
