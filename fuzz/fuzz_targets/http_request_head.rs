//! cargo-fuzz target `http_request_head`: the body is `portway::fuzzing::http_request_head`, shared with the stable
//! corpus replay in `tests/fuzz_replay.rs`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| portway::fuzzing::http_request_head(data));
