//! cargo-fuzz target `http_response`: the body is `portway::fuzzing::http_response`, shared with the stable
//! corpus replay in `tests/fuzz_replay.rs`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| portway::fuzzing::http_response(data));
