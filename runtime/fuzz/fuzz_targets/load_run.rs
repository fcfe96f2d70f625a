//! Fuzz target: arbitrary bytes as a whole `.qfdm` file through `Model::load` and, when they load,
//! `Model::run` (see `src/lib.rs` for the contract). Most changes inside the payload stop at the CRC check;
//! `load_run_payload` fuzzes behind it.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| qfd_runtime_fuzz::load_and_run(data));
