//! cargo-fuzz target `sleep_payload`: the body is `portway::fuzzing::sleep_payload`, shared with the stable
//! corpus replay in `tests/fuzz_replay.rs`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| portway::fuzzing::sleep_payload(data));
