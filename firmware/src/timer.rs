//! The firmware's clock (`qfd_device::Clock`): instructions under QEMU, cycles on real boards.
//!
//! - `qfd_timer = "systick"`: SysTick free-running on the core clock, its wrap exception counting the
//!   24-bit wraps into a 64-bit count. Under QEMU with `-icount shift=0` the virtual clock advances 1 ns
//!   per guest instruction and SysTick ticks at the board's `clock_hz` on it, so `ticks * 1e9 / clock_hz`
//!   is the number of instructions executed (not cycles: QEMU models no pipeline or wait states). On a
//!   real Cortex-M0+ (no DWT cycle counter) SysTick ticks are cycles.
//! - `qfd_timer = "dwt"`: DWT's cycle counter (`qfd_device::cortex_m::DwtClock`).

#[cfg(qfd_timer = "systick")]
pub use systick::{start, Timer};

#[cfg(qfd_timer = "dwt")]
pub use dwt::{start, Timer};

#[cfg(qfd_timer = "systick")]
mod systick {
    use core::sync::atomic::{AtomicU32, Ordering};

    use cortex_m::peripheral::syst::SystClkSource;
    use cortex_m::peripheral::{Peripherals, SCB, SYST};
    use cortex_m_rt::exception;
    use qfd_device::{Clock, TimeUnit};

    use crate::config::CLOCK_HZ;

    const RELOAD: u32 = 0x00FF_FFFF;
    static WRAPS: AtomicU32 = AtomicU32::new(0);

    /// SysTick, started.
    pub struct Timer;

    /// Starts SysTick free-running on the core clock with its wrap exception enabled.
    pub fn start(core: &mut Peripherals) -> Timer {
        let syst = &mut core.SYST;
        syst.set_clock_source(SystClkSource::Core);
        syst.set_reload(RELOAD);
        syst.clear_current();
        syst.enable_interrupt();
        syst.enable_counter();
        Timer
    }

    impl Clock for Timer {
        fn unit(&self) -> TimeUnit {
            if cfg!(qfd_emulated) {
                TimeUnit::Instructions
            } else {
                TimeUnit::Cycles
            }
        }

        /// Instructions (QEMU) or cycles (a board) since [`start`].
        fn now(&mut self) -> u64 {
            let ticks = cortex_m::interrupt::free(|_| {
                let mut wraps = WRAPS.load(Ordering::Relaxed);
                let mut value = SYST::get_current();
                // A wrap whose exception is pending (masked right now) has not been counted yet: count it,
                // and re-read the counter so it belongs to the new period.
                if SCB::is_pendst_pending() {
                    wraps += 1;
                    value = SYST::get_current();
                }
                u64::from(wraps) * (u64::from(RELOAD) + 1) + u64::from(RELOAD - value)
            });
            if cfg!(qfd_emulated) {
                ticks * 1_000_000_000 / u64::from(CLOCK_HZ)
            } else {
                ticks
            }
        }

        fn ticks_per_second(&self) -> u64 {
            // Under QEMU one instruction is one nanosecond of virtual time.
            if cfg!(qfd_emulated) {
                1_000_000_000
            } else {
                u64::from(CLOCK_HZ)
            }
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
    use cortex_m::peripheral::Peripherals;

    /// DWT's cycle counter.
    pub type Timer = qfd_device::cortex_m::DwtClock;

    /// Turns on the cycle counter.
    pub fn start(core: &mut Peripherals) -> Timer {
        Timer::new(&mut core.DCB, &mut core.DWT, crate::config::CLOCK_HZ)
    }
}
