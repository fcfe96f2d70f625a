//! The kernel-test firmware (`--features kernel-test`): runs the runtime's randomized check of the kernel
//! variants selected for this core against the reference kernels, logs the result and exits with it.
//! `qfd-host kernel-test` builds, runs and reads it; this is where the `asm!` kernels are tested.

use crate::{config, link};

mod consts {
    include!(concat!(env!("OUT_DIR"), "/kernel_test.rs"));
}

/// Runs the check; never returns.
pub fn run() -> ! {
    let variant = if qfd_runtime::kernels::select::Core::COMPILED.dsp { "dsp" } else { "portable" };
    defmt::info!(
        "kernel-test on {=str}: conv2d ({=str} kernels), seed {=u32}, {=u32} cases",
        config::BOARD,
        variant,
        consts::KERNEL_TEST_SEED,
        consts::KERNEL_TEST_CASES
    );
    let s = qfd_runtime::selftest::check_conv(consts::KERNEL_TEST_SEED, consts::KERNEL_TEST_CASES);
    defmt::info!(
        "kernel-test result: {=u32} cases, {=u32} through a fast variant, {=u32} mismatches (first: {})",
        s.cases,
        s.fast_cases,
        s.mismatches,
        s.first_failure
    );
    // The host recomputes this from its own reference kernels: `qfd-host kernel-test` compares them.
    defmt::info!("kernel-test digest: {=u32:#010x}", s.digest);
    link::exit(s.mismatches == 0)
}
