//! Cortex-M helpers for firmware built on `cortex-m-rt` (feature `cortex-m`): a cycle-counter
//! [`Clock`](crate::Clock) and the stack's high-water mark.

use core::ptr::{addr_of, read_volatile, write_volatile};

#[cfg(not(qfd_no_cycle_counter))]
use cortex_m::peripheral::{DCB, DWT};
use qfd_link::StackUse;

#[cfg(not(qfd_no_cycle_counter))]
/// DWT's 32-bit cycle counter, extended to 64 bits by reading it often enough (every layer and every
/// inference is far shorter than 2^32 cycles). Cortex-M0/M0+/M23 have no such counter.
pub struct DwtClock {
    clock_hz: u32,
    high: u32,
    last: u32,
}

#[cfg(not(qfd_no_cycle_counter))]
impl DwtClock {
    /// Turns on trace and the cycle counter of a core clocked at `clock_hz`.
    pub fn new(dcb: &mut DCB, dwt: &mut DWT, clock_hz: u32) -> Self {
        dcb.enable_trace();
        DWT::unlock();
        dwt.set_cycle_count(0);
        dwt.enable_cycle_counter();
        DwtClock { clock_hz, high: 0, last: 0 }
    }
}

#[cfg(not(qfd_no_cycle_counter))]
impl crate::Clock for DwtClock {
    fn unit(&self) -> qfd_link::TimeUnit {
        qfd_link::TimeUnit::Cycles
    }

    fn now(&mut self) -> u64 {
        let low = DWT::cycle_count();
        if low < self.last {
            self.high += 1;
        }
        self.last = low;
        (u64::from(self.high) << 32) | u64::from(low)
    }

    fn ticks_per_second(&self) -> u64 {
        u64::from(self.clock_hz)
    }
}

const PAINT: u32 = 0xC0DE_C0DE;
/// Bytes below the current stack pointer left unpainted: the frame of `paint_stack` itself.
const MARGIN: usize = 64;

extern "C" {
    // From cortex-m-rt's link.x: the top of the stack (initial SP) and its lowest address (end of statics).
    static _stack_start: u32;
    static _stack_end: u32;
}

fn stack_bounds() -> (usize, usize) {
    // Only the symbols' addresses are taken, never their (meaningless) values.
    (addr_of!(_stack_end) as usize, addr_of!(_stack_start) as usize)
}

/// Paints the stack from its lowest address up to just below the current stack pointer, so that
/// [`stack_usage`] can find the deepest word written since. Call first thing in `main` (cortex-m-rt runs it
/// on the main stack, MSP). Interrupts are masked meanwhile, so no handler's frame is below the stack
/// pointer while it is painted over.
#[inline(never)]
pub fn paint_stack() {
    cortex_m::interrupt::free(|_| {
        let (bottom, _) = stack_bounds();
        let sp = cortex_m::register::msp::read() as usize - MARGIN;
        let mut addr = bottom;
        while addr + 4 <= sp {
            // SAFETY: [bottom, sp) is main-stack memory below every live frame (the margin covers this
            // closure's own), and with interrupts masked no handler is using it, so nothing reads it
            // before a deeper call writes it again.
            #[allow(unsafe_code)]
            unsafe {
                write_volatile(addr as *mut u32, PAINT)
            };
            addr += 4;
        }
    })
}

/// The deepest stack use since [`paint_stack`], and the stack's size.
pub fn stack_usage() -> StackUse {
    let (bottom, top) = stack_bounds();
    let mut addr = bottom;
    // SAFETY: reads words of the stack region below the current frame; they are plain memory.
    #[allow(unsafe_code)]
    while addr < top && unsafe { read_volatile(addr as *const u32) } == PAINT {
        addr += 4;
    }
    StackUse { peak_bytes: (top - addr) as u32, size_bytes: (top - bottom) as u32 }
}
