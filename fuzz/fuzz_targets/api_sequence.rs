//! cargo-fuzz target `api_sequence`: the body is `portway::fuzzing::api_sequence`, shared with the stable
//! corpus replay in `tests/fuzz_replay.rs`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| portway::fuzzing::api_sequence(data));
