//! Time per inference: instructions under QEMU, cycles on real boards.
//!
//! - `qfd_timer = "systick"`: SysTick free-running on the core clock, its wrap exception counting the
//!   24-bit wraps into a 64-bit count. Under QEMU with `-icount shift=0` the virtual clock advances 1 ns
//!   per guest instruction and SysTick ticks at the board's `clock_hz` on it, so `ticks * 1e9 / clock_hz`
//!   is the number of instructions executed (not cycles: QEMU models no pipeline or wait states). On a
//!   real Cortex-M0+ (no DWT cycle counter) SysTick ticks are cycles.
//! - `qfd_timer = "dwt"`: DWT's 32-bit cycle counter, extended to 64 bits by reading it often enough
//!   (every layer and every inference; one layer takes far less than 2^32 cycles).

use qfd_link::TimeUnit;

/// What [`now`] counts.
pub const UNIT: TimeUnit =
    if cfg!(qfd_link = "semihosting") { TimeUnit::Instructions } else { TimeUnit::Cycles };

#[cfg(qfd_timer = "systick")]
pub use systick::{now, start};

#[cfg(qfd_timer = "dwt")]
pub use dwt::{now, start};

#[cfg(qfd_timer = "systick")]
mod systick {
    use core::sync::atomic::{AtomicU32, Ordering};

    use cortex_m::peripheral::syst::SystClkSource;
    use cortex_m::peripheral::{Peripherals, SCB, SYST};
    use cortex_m_rt::exception;

    const RELOAD: u32 = 0x00FF_FFFF;
    static WRAPS: AtomicU32 = AtomicU32::new(0);

    /// Starts SysTick free-running on the core clock with its wrap exception enabled.
    pub fn start(core: &mut Peripherals) {
        let syst = &mut core.SYST;
        syst.set_clock_source(SystClkSource::Core);
        syst.set_reload(RELOAD);
        syst.clear_current();
        syst.enable_interrupt();
        syst.enable_counter();
    }

    /// Instructions (QEMU) or cycles (a board) since [`start`].
    pub fn now() -> u64 {
        let ticks = cortex_m::interrupt::free(|_| {
            let mut wraps = WRAPS.load(Ordering::Relaxed);
            let mut value = SYST::get_current();
            // A wrap whose exception is pending (masked right now) has not been counted yet: count it, and
            // re-read the counter so it belongs to the new period.
            if SCB::is_pendst_pending() {
                wraps += 1;
                value = SYST::get_current();
            }
            u64::from(wraps) * (u64::from(RELOAD) + 1) + u64::from(RELOAD - value)
        });
        if cfg!(qfd_link = "semihosting") {
            ticks * 1_000_000_000 / u64::from(crate::config::CLOCK_HZ)
        } else {
            ticks
        }
    }

    #[exception]
    fn SysTick() {
        // Only this handler writes WRAPS, and `now` reads it with interrupts masked: no read-modify-write
        // race (and thumbv6m has no atomic add).
        WRAPS.store(WRAPS.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
    }
}

#[cfg(qfd_timer = "dwt")]
mod dwt {
    use core::sync::atomic::{AtomicU32, Ordering};

    use cortex_m::peripheral::{Peripherals, DWT};

    static HIGH: AtomicU32 = AtomicU32::new(0);
    static LAST: AtomicU32 = AtomicU32::new(0);

    /// Turns on trace and DWT's cycle counter.
    pub fn start(core: &mut Peripherals) {
        core.DCB.enable_trace();
        DWT::unlock();
        core.DWT.set_cycle_count(0);
        core.DWT.enable_cycle_counter();
    }

    /// Cycles since [`start`]; the 32-bit counter's wraps are counted as long as calls are less than
    /// 2^32 cycles apart.
    pub fn now() -> u64 {
        cortex_m::interrupt::free(|_| {
            let low = DWT::cycle_count();
            let mut high = HIGH.load(Ordering::Relaxed);
            if low < LAST.load(Ordering::Relaxed) {
                high += 1;
                HIGH.store(high, Ordering::Relaxed);
            }
            LAST.store(low, Ordering::Relaxed);
            (u64::from(high) << 32) | u64::from(low)
        })
    }
}
