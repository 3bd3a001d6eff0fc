//! The layout of every `#[repr(C)]` record in `include/portway.h`, field by field: the C
//! compiler's `offsetof`/`sizeof` must equal Rust's `offset_of!`/`size_of` for every field of
//! every struct the header defines (generated or spelled out by hand in cbindgen.toml). The
//! fields are read from the header itself, so a struct or field added to the header without a
//! row here fails too.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use portway::engine::portway_meta;
use portway::ffi::*;

/// `(offset, size)` of each field, and the struct's size under the field name `sizeof`.
type Layout = BTreeMap<(String, String), (usize, usize)>;

fn size_of_field<T, F>(_: fn(&T) -> &F) -> usize {
    std::mem::size_of::<F>()
}

/// Rows `(C struct name, field) -> (offset, size)` from Rust, one macro call per struct.
macro_rules! rust_rows {
    ($rows:ident, $c_name:literal, $ty:ty, [$($field:ident),* $(,)?]) => {
        $rows.insert(($c_name.to_owned(), "sizeof".to_owned()), (0, std::mem::size_of::<$ty>()));
        $(
            $rows.insert(
                ($c_name.to_owned(), stringify!($field).to_owned()),
                (std::mem::offset_of!($ty, $field), size_of_field(|s: &$ty| &s.$field)),
            );
        )*
    };
}

fn rust_layout() -> Layout {
    let mut rows = Layout::new();
    rust_rows!(rows, "portway_meta", portway_meta, [key, value]);
    rust_rows!(
        rows,
        "portway_completion",
        portway_completion,
        [
            id, user_data, status, code, data, len, meta, meta_len, queued_ns, run_ns
        ]
    );
    rust_rows!(
        rows,
        "portway_batch_view",
        portway_batch_view,
        [n, statuses, codes, offsets, data, meta_offsets, meta]
    );
    rust_rows!(
        rows,
        "portway_request",
        portway_request,
        [handler, timeout_ms, user_data, payload, payload_len]
    );
    rust_rows!(
        rows,
        "portway_http_options",
        portway_http_options,
        [
            max_connections_per_host,
            max_header_bytes,
            max_body_bytes,
            connect_timeout_ms,
            pool_idle_timeout_ms,
            follow_redirects,
            max_redirects,
            retries,
            retry_base_backoff_ms,
            user_agent,
            http2_prior_knowledge,
            extra_ca_pem_path,
            danger_accept_invalid_certs,
            read_timeout_ms,
            decompress,
            bundled_roots_only,
            http1_only,
            proxy,
        ]
    );
    rust_rows!(
        rows,
        "portway_policy",
        portway_policy,
        [
            max_concurrency,
            adaptive,
            min_concurrency,
            rate_per_s,
            burst,
            hedge_after_ms,
            hedge_after_p95,
            hedge_budget_percent,
            breaker_failures,
            breaker_cooldown_ms,
        ]
    );
    rust_rows!(
        rows,
        "portway_policy_state",
        portway_policy_state,
        [
            concurrency_limit,
            running,
            waiting,
            breaker_state,
            tokens,
            breaker_failures,
            breaker_open,
            breaker_trips,
            breaker_rejected,
            rate_timeouts,
            hedges_started,
            hedges_won,
            hedges_cancelled,
            hedges_skipped,
        ]
    );
    rust_rows!(
        rows,
        "portway_latency",
        portway_latency,
        [p50_ns, p90_ns, p99_ns, max_ns, sum_ns, count]
    );
    rust_rows!(
        rows,
        "portway_stats",
        portway_stats_record,
        [
            submitted,
            accepted,
            rejected_busy,
            rejected_shutdown,
            rejected_invalid,
            completed,
            in_flight,
            queued,
            running,
            ready,
            unreleased,
            pool_workers,
        ]
    );
    rust_rows!(
        rows,
        "portway_handler_stats",
        portway_handler_stats_record,
        [id, submitted, completed, queue_wait, run]
    );
    rows
}

/// Every `struct NAME { ... }` body in the header, with its field names in order.
fn header_structs(header: &str) -> Vec<(String, Vec<String>)> {
    let text = strip_comments(header);
    let mut out = Vec::new();
    let mut rest = text.as_str();
    while let Some(at) = rest.find("struct ") {
        rest = &rest[at + "struct ".len()..];
        let name: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        let after = rest[name.len()..].trim_start();
        if !after.starts_with('{') {
            continue; // a use of the struct, not its definition
        }
        let body_end = after.find('}').expect("unterminated struct in the header");
        let fields = after[1..body_end]
            .split(';')
            .map(str::trim)
            .filter(|d| !d.is_empty())
            .map(|decl| {
                let decl = decl.split('[').next().unwrap_or(decl);
                decl.rsplit(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .next()
                    .unwrap_or_default()
                    .to_owned()
            })
            .collect();
        out.push((name, fields));
        rest = &after[body_end..];
    }
    out
}

fn strip_comments(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    loop {
        let block = rest.find("/*");
        let line = rest.find("//");
        match (block, line) {
            (Some(b), l) if l.is_none_or(|l| b < l) => {
                out.push_str(&rest[..b]);
                let end = rest[b..].find("*/").expect("unterminated comment") + b + 2;
                rest = &rest[end..];
            }
            (_, Some(l)) => {
                out.push_str(&rest[..l]);
                rest = rest[l..].find('\n').map_or("", |e| &rest[l + e..]);
            }
            (None, None) => {
                out.push_str(rest);
                return out;
            }
            (Some(_), None) => unreachable!(),
        }
    }
}

/// Compiles and runs a C program that prints the C layout of `structs`.
fn c_layout(root: &Path, structs: &[(String, Vec<String>)]) -> Layout {
    let mut src = String::from("#include <stdio.h>\n#include <stddef.h>\n#include \"portway.h\"\n");
    src.push_str("#define ROW(S, F) printf(\"%s %s %zu %zu\\n\", #S, #F, offsetof(struct S, F), sizeof(((struct S *)0)->F))\n");
    src.push_str("int main(void) {\n");
    for (name, fields) in structs {
        src.push_str(&format!(
            "    printf(\"{name} sizeof 0 %zu\\n\", sizeof(struct {name}));\n"
        ));
        for f in fields {
            src.push_str(&format!("    ROW({name}, {f});\n"));
        }
    }
    src.push_str("    return 0;\n}\n");
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let c_file = dir.join("ffi_layout.c");
    let exe = dir.join("ffi_layout");
    std::fs::write(&c_file, src).unwrap();
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".to_owned());
    let status = Command::new(cc)
        .args(["-std=c11", "-Wall", "-Werror", "-I"])
        .arg(root.join("include"))
        .arg(&c_file)
        .arg("-o")
        .arg(&exe)
        .status()
        .expect("a C compiler (cc or $CC) is needed for this test");
    assert!(status.success(), "the layout program did not compile");
    let out = Command::new(&exe).output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let p: Vec<&str> = l.split(' ').collect();
            (
                (p[0].to_owned(), p[1].to_owned()),
                (p[2].parse().unwrap(), p[3].parse().unwrap()),
            )
        })
        .collect()
}

#[test]
fn every_field_of_every_header_struct_has_the_rust_offset_and_size() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let header = std::fs::read_to_string(root.join("include/portway.h")).unwrap();
    let structs = header_structs(&header);
    assert!(structs.len() >= 7, "found only {structs:?} in the header");
    let c = c_layout(root, &structs);
    let rust = rust_layout();
    let mut problems = Vec::new();
    for (key, c_row) in &c {
        match rust.get(key) {
            None => problems.push(format!(
                "{}.{} is in the header but has no Rust row here",
                key.0, key.1
            )),
            Some(r) if r != c_row => problems.push(format!(
                "{}.{}: C (offset, size) {c_row:?}, Rust {r:?}",
                key.0, key.1
            )),
            Some(_) => {}
        }
    }
    for key in rust.keys().filter(|k| !c.contains_key(*k)) {
        problems.push(format!(
            "{}.{} is in Rust but not in the header",
            key.0, key.1
        ));
    }
    assert!(
        problems.is_empty(),
        "layout mismatches:\n{}",
        problems.join("\n")
    );
}

#[test]
fn the_header_parser_sees_hand_written_and_generated_structs() {
    let structs = header_structs(
        "/* struct no { int x; }; */ struct a { uint64_t x; /* c; */ uint64_t y[N]; };\n\
         typedef struct b { const uint8_t *p; // q;\n struct a inner; } b;\n\
         portway_status f(struct a *out);",
    );
    assert_eq!(
        structs,
        vec![
            ("a".to_owned(), vec!["x".to_owned(), "y".to_owned()]),
            ("b".to_owned(), vec!["p".to_owned(), "inner".to_owned()]),
        ]
    );
}
