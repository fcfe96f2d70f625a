//! Armv6-M and Armv8-M Baseline cores (Cortex-M0/M0+/M23) have no DWT cycle counter: `DwtClock` is left
//! out there (cfg `qfd_no_cycle_counter`).

fn main() {
    println!("cargo::rustc-check-cfg=cfg(qfd_no_cycle_counter)");
    let target = std::env::var("TARGET").unwrap_or_default();
    if target.starts_with("thumbv6m") || target.starts_with("thumbv8m.base") {
        println!("cargo:rustc-cfg=qfd_no_cycle_counter");
    }
}
