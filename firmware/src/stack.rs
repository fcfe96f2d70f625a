//! Stack high-water mark by painting: fill the unused stack with a pattern at start-up, and later find
//! the deepest word that no longer holds it.

use core::ptr::{addr_of, read_volatile, write_volatile};

use qfd_link::StackUse;

const PAINT: u32 = 0xC0DE_C0DE;
/// Bytes below the current stack pointer left unpainted: the frame of `paint` itself.
const MARGIN: usize = 64;

extern "C" {
    // From cortex-m-rt's link.x: the top of the stack (initial SP) and its lowest address (end of statics).
    static _stack_start: u32;
    static _stack_end: u32;
}

fn bounds() -> (usize, usize) {
    // Only the symbols' addresses are taken, never their (meaningless) values.
    (addr_of!(_stack_end) as usize, addr_of!(_stack_start) as usize)
}

/// Paints the stack from its lowest address up to just below the current stack pointer. Call first thing
/// in `main`.
#[inline(never)]
pub fn paint() {
    let (bottom, _) = bounds();
    let sp = cortex_m::register::msp::read() as usize - MARGIN;
    let mut addr = bottom;
    while addr + 4 <= sp {
        // SAFETY: [bottom, sp) is stack memory below every live frame (the margin covers this function's
        // own), so nothing reads it before it is written again by a deeper call.
        #[allow(unsafe_code)]
        unsafe {
            write_volatile(addr as *mut u32, PAINT)
        };
        addr += 4;
    }
}

/// The deepest stack use since [`paint`], and the stack's size.
pub fn usage() -> StackUse {
    let (bottom, top) = bounds();
    let mut addr = bottom;
    // SAFETY: reads words of the stack region below the current frame; they are plain memory.
    #[allow(unsafe_code)]
    while addr < top && unsafe { read_volatile(addr as *const u32) } == PAINT {
        addr += 4;
    }
    StackUse { peak_bytes: (top - addr) as u32, size_bytes: (top - bottom) as u32 }
}
