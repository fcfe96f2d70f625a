//! One description per board: `boards/<name>.toml`, read by the firmware's build script (memory layout,
//! clock) and by `qfd-host` (how to build for it and run it, what fits).
//!
//! ```toml
//! name = "qemu-m4"
//! target = "thumbv7em-none-eabihf"      # Rust target triple
//! cpu = "cortex-m4"                     # -C target-cpu
//! fpu = true
//! dsp = true                            # DSP extension (SMLAD and friends)
//! mve = false                           # Helium
//! clock_hz = 25_000_000
//! flash = { origin = 0x0000_0000, length = 0x0040_0000 }
//! ram = { origin = 0x2000_0000, length = 0x0040_0000 }
//! run = { qemu = { machine = "mps2-an386", cpu = "cortex-m4" } }   # or { probe = { chip = "STM32L4R5ZITx" } }
//! ```
//! Unknown keys are refused, so a typo cannot fall back to a default.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Bytes of the RP2040's second-stage bootloader at the start of flash.
const BOOT2_BYTES: u32 = 0x100;

/// The directory of the board files in this repository.
pub fn boards_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf()
}

/// Why a board description could not be used.
#[derive(Debug, thiserror::Error)]
pub enum BoardError {
    /// No file for that name.
    #[error("no board named '{name}' (boards: {})", known.join(", "))]
    Unknown {
        /// The name asked for.
        name: String,
        /// The boards that exist.
        known: Vec<String>,
    },
    /// The file cannot be read.
    #[error("{}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The file is not a valid description.
    #[error("{}: {message}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong, with the key and line.
        message: String,
    },
}

/// A memory region.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Region {
    /// Start address.
    pub origin: u32,
    /// Size in bytes.
    pub length: u32,
}

/// How firmware for the board is run.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub enum Runner {
    /// Emulated by `qemu-system-arm`.
    Qemu {
        /// `-machine`.
        machine: String,
        /// `-cpu`.
        cpu: String,
        /// Address of the machine's first UART (a CMSDK APB UART, which `-serial` connects), for the
        /// serial link; seen from the firmware's security state.
        #[serde(default)]
        uart: Option<u32>,
    },
    /// A real board, flashed and read through probe-rs.
    Probe {
        /// probe-rs chip name.
        chip: String,
    },
}

/// One board.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Board {
    /// The file's name without `.toml`.
    pub name: String,
    /// Rust target triple.
    pub target: String,
    /// LLVM CPU name (`-C target-cpu`).
    pub cpu: String,
    /// Hardware floating point.
    pub fpu: bool,
    /// DSP extension.
    pub dsp: bool,
    /// Helium (M-profile vector extension).
    pub mve: bool,
    /// Core clock.
    pub clock_hz: u32,
    /// Flash (code and constant data).
    pub flash: Region,
    /// RAM (stack, arena, statics).
    pub ram: Region,
    /// How to run it.
    pub run: Runner,
    /// The first 256 bytes of flash hold the RP2040's second-stage bootloader (`.boot2`), which sets up
    /// the external flash before the vector table is read. Only RP2040 boards set it.
    #[serde(default)]
    pub boot2: bool,
    /// A firmware crate, relative to the repository, that serves the SDK over this real board's UART
    /// through its HAL (`qfd-host run --port`, `qfd-host mlperf`); emulated boards use `firmware/`.
    #[serde(default)]
    pub serial_firmware: Option<String>,
}

impl Board {
    /// The `RUSTFLAGS` a build for this board needs: the CPU (which turns on its instructions in code
    /// generation) and one `--cfg` per core feature the runtime picks kernels by: `qfd_v7m` for the
    /// Armv7-M and Armv8-M Mainline instruction sets (every target but Armv6-M and Armv8-M Baseline),
    /// `qfd_dsp` for the DSP extension, `qfd_mve` for Helium.
    pub fn rustflags(&self) -> String {
        let mut flags = format!("-C target-cpu={}", self.cpu);
        if self.target.starts_with("thumbv7") || self.target.starts_with("thumbv8m.main") {
            flags += " --cfg qfd_v7m";
        }
        if self.dsp {
            flags += " --cfg qfd_dsp";
        }
        if self.mve {
            flags += " --cfg qfd_mve";
        }
        flags
    }

    /// Reads `dir/<name>.toml`.
    pub fn load(dir: &Path, name: &str) -> Result<Board, BoardError> {
        let path = dir.join(format!("{name}.toml"));
        if !path.is_file() {
            return Err(BoardError::Unknown { name: name.into(), known: Board::names(dir) });
        }
        Board::from_file(&path)
    }

    /// Reads one board file; its `name` must match the file name.
    pub fn from_file(path: &Path) -> Result<Board, BoardError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| BoardError::Read { path: path.into(), source })?;
        let board: Board = toml::from_str(&text)
            .map_err(|e| BoardError::Parse { path: path.into(), message: e.to_string() })?;
        board.validate().map_err(|message| BoardError::Parse { path: path.into(), message })?;
        let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or_default();
        if board.name != stem {
            return Err(BoardError::Parse {
                path: path.into(),
                message: format!("names itself '{}'; the file must be named after the board", board.name),
            });
        }
        Ok(board)
    }

    /// Every board in `dir`, sorted by name.
    pub fn all(dir: &Path) -> Result<Vec<Board>, BoardError> {
        Board::names(dir).iter().map(|n| Board::load(dir, n)).collect()
    }

    /// Names of the board files in `dir`, sorted.
    pub fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter_map(|n| n.strip_suffix(".toml").map(str::to_string))
            // The crate's own manifest lives beside the board files.
            .filter(|n| n != "Cargo")
            .collect();
        names.sort();
        names
    }

    /// Whether QEMU runs it.
    pub fn is_emulated(&self) -> bool {
        matches!(self.run, Runner::Qemu { .. })
    }

    /// The `memory.x` linker script of the board's real limits.
    pub fn memory_x(&self) -> String {
        if !self.boot2 {
            return format!(
                "MEMORY\n{{\n  FLASH : ORIGIN = {:#010x}, LENGTH = {:#x}\n  RAM : ORIGIN = {:#010x}, LENGTH = {:#x}\n}}\n",
                self.flash.origin, self.flash.length, self.ram.origin, self.ram.length
            );
        }
        // The bootloader takes the first 256 bytes of flash; the program (vector table first) follows.
        format!(
            "MEMORY\n{{\n  BOOT2 : ORIGIN = {:#010x}, LENGTH = 0x100\n  FLASH : ORIGIN = {:#010x}, LENGTH = {:#x}\n  \
             RAM : ORIGIN = {:#010x}, LENGTH = {:#x}\n}}\n\nSECTIONS {{\n  .boot2 ORIGIN(BOOT2) :\n  {{\n    \
             KEEP(*(.boot2));\n  }} > BOOT2\n}} INSERT BEFORE .text;\n",
            self.flash.origin,
            self.flash.origin + BOOT2_BYTES,
            self.flash.length - BOOT2_BYTES,
            self.ram.origin,
            self.ram.length
        )
    }

    /// Whether the core has DWT's cycle counter (Cortex-M0, M0+ and M23 do not).
    pub fn has_cycle_counter(&self) -> bool {
        !matches!(self.cpu.as_str(), "cortex-m0" | "cortex-m0plus" | "cortex-m23")
    }

    /// Checks what the format cannot: the target fits the core, memories are not empty and do not wrap,
    /// and only RP2040 boards ask for a second-stage bootloader.
    pub fn validate(&self) -> Result<(), String> {
        let expected = match self.cpu.as_str() {
            "cortex-m0" | "cortex-m0plus" => &["thumbv6m-none-eabi"][..],
            "cortex-m3" => &["thumbv7m-none-eabi"],
            "cortex-m4" | "cortex-m7" => &["thumbv7em-none-eabi", "thumbv7em-none-eabihf"],
            "cortex-m23" => &["thumbv8m.base-none-eabi"],
            "cortex-m33" | "cortex-m55" => &["thumbv8m.main-none-eabi", "thumbv8m.main-none-eabihf"],
            other => return Err(format!("unknown cpu '{other}'")),
        };
        if !expected.contains(&self.target.as_str()) {
            return Err(format!(
                "cpu {} does not run target {} (expected {})",
                self.cpu,
                self.target,
                expected.join(" or ")
            ));
        }
        if self.fpu != self.target.ends_with("hf") {
            return Err(format!(
                "fpu = {} but target {} is {}a hard-float target",
                self.fpu,
                self.target,
                if self.fpu { "not " } else { "" }
            ));
        }
        for (what, r) in [("flash", self.flash), ("ram", self.ram)] {
            if r.length == 0 || r.origin.checked_add(r.length - 1).is_none() {
                return Err(format!("{what} region {:#x}+{:#x} is empty or wraps", r.origin, r.length));
            }
        }
        if self.boot2 && (self.cpu != "cortex-m0plus" || self.flash.length <= BOOT2_BYTES) {
            return Err("boot2 is for the RP2040 (cortex-m0plus) only".into());
        }
        if self.clock_hz == 0 {
            return Err("clock_hz must not be 0".into());
        }
        Ok(())
    }
}

impl fmt::Display for Runner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Runner::Qemu { machine, .. } => write!(f, "qemu {machine}"),
            Runner::Probe { chip } => write!(f, "probe-rs {chip}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_board_file_parses_and_fits_its_target() {
        let boards = Board::all(&boards_dir()).unwrap();
        assert!(boards.len() >= 4, "{boards:?}");
        for b in &boards {
            assert!(b.target.starts_with("thumbv"), "{}: {}", b.name, b.target);
            assert!(b.flash.length > 0 && b.ram.length > 0, "{}", b.name);
            assert!(b.memory_x().contains("FLASH"));
        }
        assert!(boards.iter().any(|b| b.name == "qemu-m4" && b.is_emulated()));
    }

    #[test]
    fn unknown_names_and_bad_files_are_clear_errors() {
        let err = Board::load(&boards_dir(), "nope").unwrap_err();
        assert!(err.to_string().contains("qemu-m4"), "{err}");
        let dir = std::env::temp_dir().join(format!("qfd-boards-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let text = std::fs::read_to_string(boards_dir().join("qemu-m4.toml")).unwrap();
        std::fs::write(dir.join("typo.toml"), text.replace("clock_hz", "clock_hzz")).unwrap();
        let err = Board::load(&dir, "typo").unwrap_err();
        assert!(err.to_string().contains("clock_hzz"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
