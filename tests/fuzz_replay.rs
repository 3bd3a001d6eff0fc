//! The fuzz corpora replayed on stable: every file of `fuzz/corpus/<target>/` (inputs
//! libFuzzer kept for new coverage, minimized with `cargo fuzz cmin`) and of
//! `fuzz/regressions/<target>/` (inputs that once crashed a target, kept after the fix) goes
//! through the same check function the fuzz target runs (`portway::fuzzing`). A failure names
//! the file; `cargo +nightly fuzz run <target> <file>` replays it under the fuzzer.

use std::path::{Path, PathBuf};

fn inputs(target: &str) -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut files = Vec::new();
    for dir in ["corpus", "regressions"] {
        let Ok(entries) = std::fs::read_dir(root.join(dir).join(target)) else {
            continue;
        };
        files.extend(entries.map(|e| e.unwrap().path()).filter(|p| p.is_file()));
    }
    files.sort();
    files
}

fn replay(target: &str) {
    let (_, check) = portway::fuzzing::TARGETS
        .iter()
        .find(|(name, _)| *name == target)
        .expect("a fuzz target of that name");
    let files = inputs(target);
    assert!(!files.is_empty(), "no corpus for {target} under fuzz/");
    for file in &files {
        let data = std::fs::read(file).unwrap();
        let outcome = std::panic::catch_unwind(|| check(&data));
        assert!(outcome.is_ok(), "{target} fails on {}", file.display());
    }
}

#[test]
fn every_target_has_a_replay_test() {
    let names: Vec<&str> = portway::fuzzing::TARGETS.iter().map(|(n, _)| *n).collect();
    let source = include_str!("fuzz_replay.rs");
    for name in names {
        assert!(
            source.contains(&format!("fn {name}()")),
            "tests/fuzz_replay.rs has no test for {name}"
        );
        let bin = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fuzz/fuzz_targets")
            .join(format!("{name}.rs"));
        assert!(bin.is_file(), "no cargo-fuzz binary {}", bin.display());
    }
}

#[test]
fn http_request_head() {
    replay("http_request_head");
}

#[test]
fn http_response() {
    replay("http_response");
}

#[test]
fn meta() {
    replay("meta");
}

#[test]
fn sleep_payload() {
    replay("sleep_payload");
}

#[test]
fn api_sequence() {
    replay("api_sequence");
}
