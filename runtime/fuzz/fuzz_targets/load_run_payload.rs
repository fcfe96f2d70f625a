//! Fuzz target: arbitrary bytes as the payload (an encoded `ModelDesc`), wrapped in a valid header with the
//! right CRC, through `Model::load` and `Model::run`: the fuzzer's changes reach the decoder and validator.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| qfd_runtime_fuzz::load_and_run(&qfd_runtime_fuzz::wrap_payload(data)));
