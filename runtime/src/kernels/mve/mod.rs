//! Helium (Armv8.1-M MVE, the Cortex-M55) kernels: the vector dot product of [`super::gemm`] ([`dot`]),
//! convolutions of those formats, pointwise ones read in place ([`conv`]), depthwise convolutions with
//! channels across lanes ([`depthwise`]), vector requantization ([`to_code`]), the residual add by table
//! ([`add_table`]), pools ([`pool`], [`sums`]), and here the small vector loops they share ([`code_sum`],
//! [`copy`]).
//!
//! Stable Rust has no MVE intrinsics, hence `asm!`; every block declares the vector registers it uses
//! (`q0`-`q7`, which are `d0`-`d15`) clobbered. Each kernel is tested against the reference on the
//! Cortex-M55 under QEMU (`qfd-host kernel-test`).
#![allow(unsafe_code)]

/// `asm!` with every vector register declared clobbered (`q0`-`q7`, as the `d0`-`d15` they alias, which is
/// how `asm!` names them): `asm_all_q!({ templates and operands, } options(...))`.
macro_rules! asm_all_q {
    ({ $($arg:tt)* } $($options:tt)*) => {
        core::arch::asm!(
            $($arg)*
            out("d0") _, out("d1") _, out("d2") _, out("d3") _, out("d4") _, out("d5") _, out("d6") _,
            out("d7") _, out("d8") _, out("d9") _, out("d10") _, out("d11") _, out("d12") _, out("d13") _,
            out("d14") _, out("d15") _,
            $($options)*
        )
    };
}

#[macro_use]
pub mod to_code;
pub mod add_table;
pub mod conv;
pub mod depthwise;
pub mod dot;
pub mod pool;
pub mod sums;

use core::arch::asm;

pub use dot::{dot_2px, dot_2xn};

/// The sum of the codes in `bytes`, stored `BITS` (8, 4 or 2) to a field of each byte: sixteen bytes an
/// instruction (`VADDVA.U8`) at 8 bits, each field shifted out first below that.
pub fn code_sum<const BITS: u32>(bytes: &[u8]) -> u32 {
    if bytes.is_empty() {
        return 0;
    }
    let mut sum = 0u32;
    // The loop over `bytes`, each pass adding sixteen loaded bytes' codes to `r0` with `$pass`.
    macro_rules! sum_loop {
        ($pass:expr) => {
            asm!(
                "dlstp.8 lr, {n}",
                "2:",
                "vldrb.u8 q0, [{p}], #16",
                $pass,
                "letp lr, 2b",
                n = in(reg) bytes.len(),
                p = inout(reg) bytes.as_ptr() => _,
                inout("r0") sum,
                out("lr") _,
                out("d0") _,
                out("d1") _,
                out("d2") _,
                out("d3") _,
                options(readonly, nostack),
            )
        };
    }
    // SAFETY: the tail-predicated loop reads exactly `bytes.len()` bytes (`VLDRB`) and writes only
    // registers: the sum, the pointer it advances (a copy), `lr` and `q0`-`q1`, all declared.
    unsafe {
        match BITS {
            4 => sum_loop!("vshl.i8 q1, q0, #4\nvshr.u8 q1, q1, #4\nvshr.u8 q0, q0, #4\nvaddva.u8 r0, q1\nvaddva.u8 r0, q0"),
            2 => sum_loop!(concat!(
                "vshl.i8 q1, q0, #6\nvshr.u8 q1, q1, #6\nvaddva.u8 r0, q1\n",
                "vshl.i8 q1, q0, #4\nvshr.u8 q1, q1, #6\nvaddva.u8 r0, q1\n",
                "vshl.i8 q1, q0, #2\nvshr.u8 q1, q1, #6\nvaddva.u8 r0, q1\n",
                "vshr.u8 q0, q0, #6\nvaddva.u8 r0, q0"
            )),
            _ => sum_loop!("vaddva.u8 r0, q0"),
        }
    }
    sum
}

/// Copies `src` into `dst` (of the same length), sixteen bytes an instruction pair: the runs of a patch
/// (`memcpy` handles short, misaligned runs a byte or a word at a time).
pub fn copy(src: &[u8], dst: &mut [u8]) {
    assert_eq!(src.len(), dst.len());
    if src.is_empty() {
        return;
    }
    // SAFETY: the tail-predicated loop reads exactly `src.len()` bytes from `src` (`VLDRB`) and writes as
    // many to `dst` (`VSTRB`), which the assert makes the same length; it also writes the pointers it
    // advances (copies), `lr` and `q0`, all declared.
    unsafe {
        asm!(
            "dlstp.8 lr, {n}",
            "2:",
            "vldrb.u8 q0, [{s}], #16",
            "vstrb.8 q0, [{d}], #16",
            "letp lr, 2b",
            n = in(reg) src.len(),
            s = inout(reg) src.as_ptr() => _,
            d = inout(reg) dst.as_mut_ptr() => _,
            out("lr") _,
            out("d0") _,
            out("d1") _,
            options(nostack),
        );
    }
}

/// Copies `rows` runs of `len` bytes, `stride` bytes apart in `src`, one after another into `dst`: a
/// window's rows into its patch, each run sixteen bytes an instruction pair; returns the sum of the bytes
/// (`VADDVA`, beside the copy).
pub fn copy_rows(src: &[u8], stride: usize, rows: usize, len: usize, dst: &mut [u8]) -> u32 {
    assert!(rows > 0 && len > 0 && dst.len() == rows * len && src.len() >= (rows - 1) * stride + len);
    let mut sum = 0u32;
    // SAFETY: run `r` reads `src[r * stride..r * stride + len]` and writes `dst[r * len..(r + 1) * len]`
    // (tail-predicated loops of `len` bytes, `VLDRB`/`VSTRB` at any alignment), inside both slices as
    // asserted. It writes the sum, the pointers and counter it advances (copies), `lr` and `q0`, all
    // declared.
    unsafe {
        asm!(
            "1:",
            "mov {s}, {src}",
            "mov {d}, {dst}",
            "dlstp.8 lr, {len}",
            "2:",
            "vldrb.u8 q0, [{s}], #16",
            "vaddva.u8 r0, q0",
            "vstrb.8 q0, [{d}], #16",
            "letp lr, 2b",
            "add {src}, {stride}",
            "add {dst}, {len}",
            "subs {rows}, #1",
            "bne 1b",
            src = inout(reg) src.as_ptr() => _,
            dst = inout(reg) dst.as_mut_ptr() => _,
            rows = inout(reg) rows => _,
            len = in(reg) len,
            stride = in(reg) stride,
            s = out(reg) _,
            d = out(reg) _,
            // (Across-vector sums go to even registers.)
            inout("r0") sum,
            out("lr") _,
            out("d0") _,
            out("d1") _,
            options(nostack),
        );
    }
    sum
}

/// Sets every byte of `dst` to 0, sixteen bytes an instruction (`memset` does short runs a word at a time
/// after a call).
pub fn zero(dst: &mut [u8]) {
    if dst.is_empty() {
        return;
    }
    // SAFETY: the tail-predicated loop writes exactly `dst.len()` bytes of `dst` (`VSTRB`, any alignment);
    // it also writes the pointer it advances (a copy), `lr` and `q0`, all declared.
    unsafe {
        asm!(
            "vmov.i8 q0, #0",
            "dlstp.8 lr, {n}",
            "2:",
            "vstrb.8 q0, [{d}], #16",
            "letp lr, 2b",
            n = in(reg) dst.len(),
            d = inout(reg) dst.as_mut_ptr() => _,
            out("lr") _,
            out("d0") _,
            out("d1") _,
            options(nostack),
        );
    }
}
