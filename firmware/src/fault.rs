//! What ends a run badly: a panic, a hard fault, or a condition the firmware cannot go on from. Each sends
//! a `Panic` frame with its location to the host, logs it, and exits with a failing status.

use core::fmt::Write as _;

use cortex_m_rt::{exception, ExceptionFrame};
use qfd_link::{frame, PanicReport, Response, MAX_PANIC_FILE, MAX_PANIC_MESSAGE, MAX_RESPONSE_FRAME};

use crate::link;

/// Reports `file:line: message` and ends the run.
fn report(file: &str, line: u32, message: &str) -> ! {
    cortex_m::interrupt::disable();
    defmt::error!("panicked at {=str}:{=u32}: {=str}", file, line, message);
    let file = &file[..floor_char_boundary(file, MAX_PANIC_FILE)];
    let message = &message[..floor_char_boundary(message, MAX_PANIC_MESSAGE)];
    let mut buf = [0u8; MAX_RESPONSE_FRAME];
    if let Ok(bytes) = frame::encode(&Response::Panic(PanicReport { file, line, message }), &mut buf) {
        link::emergency_write(bytes);
    }
    link::exit(false)
}

/// Ends the run for a condition the firmware cannot go on from, naming the caller's location.
#[track_caller]
pub fn halt(why: &str) -> ! {
    let at = core::panic::Location::caller();
    report(at.file(), at.line(), why)
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    let mut message = heapless::String::<MAX_PANIC_MESSAGE>::new();
    // A message longer than the buffer is cut; what fits is still worth sending.
    let _ = write!(message, "{}", info.message());
    match info.location() {
        Some(at) => report(at.file(), at.line(), &message),
        None => report("<unknown>", 0, &message),
    }
}

#[exception]
unsafe fn HardFault(frame: &ExceptionFrame) -> ! {
    let mut message = heapless::String::<64>::new();
    let _ = write!(message, "hard fault at pc={:#010x}", frame.pc());
    report("<hard fault>", 0, &message)
}

#[exception]
unsafe fn DefaultHandler(irqn: i16) {
    let mut message = heapless::String::<64>::new();
    let _ = write!(message, "unexpected exception {irqn}");
    report("<exception>", 0, &message)
}

/// The largest index `<= max` that starts a character of `s` (`str::floor_char_boundary`, stable here).
fn floor_char_boundary(s: &str, max: usize) -> usize {
    if max >= s.len() {
        return s.len();
    }
    (0..=max).rev().find(|&i| s.is_char_boundary(i)).unwrap_or(0)
}
