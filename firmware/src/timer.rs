//! Instruction counting under QEMU with SysTick.
//!
//! QEMU runs with `-icount shift=0`: its virtual clock advances exactly 1 ns per guest instruction, and SysTick
//! on the core clock ticks at the board's `clock_hz` on that virtual clock. So `ticks * 1e9 / clock_hz` is the
//! number of instructions executed, not cycles: QEMU models no pipeline, wait states or multi-cycle
//! instructions. Real boards will count cycles with DWT CYCCNT instead (which reads 0 in QEMU).
//!
//! SysTick is a 24-bit down-counter; one inference is tens of millions of instructions, so its exception
//! counts the wraps and [`ticks`] combines both into a 64-bit count.

use core::sync::atomic::{AtomicU32, Ordering};

use cortex_m::peripheral::syst::SystClkSource;
use cortex_m::peripheral::{SCB, SYST};
use cortex_m_rt::exception;

use crate::config::CLOCK_HZ;

const RELOAD: u32 = 0x00FF_FFFF;
static WRAPS: AtomicU32 = AtomicU32::new(0);

/// Starts SysTick free-running on the core clock with its wrap exception enabled.
pub fn start(syst: &mut SYST) {
    syst.set_clock_source(SystClkSource::Core);
    syst.set_reload(RELOAD);
    syst.clear_current();
    syst.enable_interrupt();
    syst.enable_counter();
}

/// SysTick ticks since [`start`].
pub fn ticks() -> u64 {
    cortex_m::interrupt::free(|_| {
        let mut wraps = WRAPS.load(Ordering::Relaxed);
        let mut value = SYST::get_current();
        // A wrap whose exception is pending (masked right now) has not been counted yet: count it, and
        // re-read the counter so it belongs to the new period.
        if SCB::is_pendst_pending() {
            wraps += 1;
            value = SYST::get_current();
        }
        u64::from(wraps) * (u64::from(RELOAD) + 1) + u64::from(RELOAD - value)
    })
}

/// Guest instructions in `ticks` SysTick ticks (valid under `-icount shift=0` only).
pub fn instructions(ticks: u64) -> u64 {
    ticks * 1_000_000_000 / CLOCK_HZ
}

#[exception]
fn SysTick() {
    // Only this handler writes WRAPS, and `ticks` reads it with interrupts masked: no read-modify-write race
    // (and thumbv6m has no atomic add).
    WRAPS.store(WRAPS.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
}
