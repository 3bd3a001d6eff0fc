//! cargo-fuzz target `meta`: the body is `portway::fuzzing::meta`, shared with the stable
//! corpus replay in `tests/fuzz_replay.rs`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| portway::fuzzing::meta(data));
