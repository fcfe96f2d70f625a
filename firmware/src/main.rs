//! Runs the model baked in at build time on N inputs and reports over semihosting, one line per inference:
//!
//! ```text
//! model ok arena=<bytes>
//! result <i> class=<c> logits=<l0>,<l1>,... instructions=<n>
//! done
//! ```
//!
//! then exits with success. A load or run error, a panic or a fault prints the reason and exits with failure,
//! so a runner only has to read the exit status. Inputs come from `$QFD_INPUTS` at build time, or are made
//! here by [`generate`] (the same generator `tools/` uses to compute the host's expected lines).
#![no_std]
#![no_main]

mod config {
    include!(concat!(env!("OUT_DIR"), "/config.rs"));
}
mod timer;

use core::fmt::Arguments;
use core::ptr::addr_of_mut;

use cortex_m_rt::{entry, exception, ExceptionFrame};
use cortex_m_semihosting::{debug, hprint, hprintln};
use qfd_runtime::format::ElemType;
use qfd_runtime::Model;

use config::{ARENA_SIZE, INPUTS_FROM_FILE, INPUT_LEN, NUM_CLASSES, NUM_INPUTS};

/// Keeps the model file word-aligned in flash, whatever the linker does with a plain byte array.
#[repr(C, align(4))]
struct Aligned<T: ?Sized>(T);

static MODEL: &Aligned<[u8]> = &Aligned(*include_bytes!(concat!(env!("OUT_DIR"), "/model.qfdm")));
/// `NUM_INPUTS` inputs of `INPUT_LEN` bytes, or empty when the firmware generates them.
static INPUTS: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/inputs.bin"));

/// All activations live here; the build script sized it from the model's memory plan. Static rather than
/// on the stack so the linker, not a stack overflow, says when a model does not fit the board.
static mut ARENA: [u8; ARENA_SIZE] = [0; ARENA_SIZE];
/// Buffer for generated inputs, empty when they come from a file.
const GENERATED_LEN: usize = if INPUTS_FROM_FILE { 0 } else { INPUT_LEN };
static mut GENERATED: [u8; GENERATED_LEN] = [0; GENERATED_LEN];

#[entry]
fn main() -> ! {
    let mut core = cortex_m::Peripherals::take().unwrap();
    timer::start(&mut core.SYST);
    // The `Model` (~8 KB of op table) lives on main's stack frame, which never returns.
    let model = Model::load(&MODEL.0).unwrap_or_else(|e| fail(format_args!("load error: {e}")));
    hprintln!("model ok arena={} board={}", model.arena_size(), config::BOARD);
    let input_bits = match model.desc().values[0].elem {
        ElemType::Codes { bits } => bits,
        ElemType::I32 => fail(format_args!("model input is not activation codes")),
    };

    // SAFETY: `main` runs once and never returns, so these are the only references to the two statics.
    let (arena, generated) = unsafe { (&mut *addr_of_mut!(ARENA), &mut *addr_of_mut!(GENERATED)) };
    let mut logits = [0i32; NUM_CLASSES];
    for i in 0..NUM_INPUTS {
        let input: &[u8] = if INPUTS_FROM_FILE {
            &INPUTS[i * INPUT_LEN..(i + 1) * INPUT_LEN]
        } else {
            generate(i as u32, input_bits, generated);
            generated
        };
        let start = timer::ticks();
        let class = model
            .run(input, arena, &mut logits)
            .unwrap_or_else(|e| fail(format_args!("run error on input {i}: {e}")));
        let instructions = timer::instructions(timer::ticks() - start);
        hprint!("result {} class={} logits=", i, class);
        for (k, l) in logits.iter().enumerate() {
            hprint!("{}{}", if k == 0 { "" } else { "," }, l);
        }
        hprintln!(" instructions={}", instructions);
    }
    hprintln!("done");
    exit(debug::EXIT_SUCCESS)
}

/// Input `index`: codes of `bits` bits from a 32-bit LCG (Numerical Recipes' constants). `tools/` has the
/// same function; change both or neither.
fn generate(index: u32, bits: u8, out: &mut [u8]) {
    let mut state = index.wrapping_mul(0x9E37_79B9) ^ 0x5EED;
    for byte in out {
        state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        *byte = (state >> 24) as u8 >> (8 - bits);
    }
}

/// Reports `why` and ends the run with a failing exit status.
fn fail(why: Arguments<'_>) -> ! {
    hprintln!("error: {}", why);
    exit(debug::EXIT_FAILURE)
}

/// Ends the run: QEMU stops here with `status` as its exit status. Without a debugger attached there is
/// nobody to tell, so the core sleeps.
fn exit(status: debug::ExitStatus) -> ! {
    debug::exit(status);
    loop {
        cortex_m::asm::wfi();
    }
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    // PanicInfo prints as "panicked at <file>:<line>:<col>:\n<message>".
    fail(format_args!("{info}"))
}

#[exception]
unsafe fn HardFault(frame: &ExceptionFrame) -> ! {
    fail(format_args!("hard fault at pc={:#010x}", frame.pc()))
}

#[exception]
unsafe fn DefaultHandler(irqn: i16) {
    fail(format_args!("unexpected exception {irqn}"))
}
