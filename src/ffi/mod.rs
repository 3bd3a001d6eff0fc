//! The C ABI (`include/portway.h`): thin wrappers over [`crate::engine`]. Each function checks
//! its pointers, catches panics and maps errors to `portway_status` through the private `guard`
//! module.
//!
//! Conventions: outputs go through trailing pointers and are written only on success;
//! every `*_free(NULL)` is a no-op; all functions are thread-safe on one engine except
//! `portway_engine_free`.

#![allow(non_camel_case_types)]
#![allow(clippy::missing_safety_doc)]

mod batch;
mod completion;
mod config;
mod engine;
mod guard;
mod handler;
mod http;
mod metrics;
mod policy;
mod stats;
mod submit;
mod version;

pub use batch::*;
pub use completion::*;
pub use config::*;
pub use engine::*;
pub(crate) use guard::BorrowedPtr;
pub use guard::PORTWAY_MAX_BUFFER;
pub use handler::*;
pub use http::*;
pub use metrics::*;
pub use policy::*;
pub use stats::*;
pub use submit::*;
pub use version::*;

#[cfg(test)]
mod header_tests {
    /// The records spelled out by hand in cbindgen.toml must keep the Rust layout; the C side
    /// asserts the same sizes in `make test-header-alone`.
    #[test]
    fn hand_written_records_match_their_rust_layout() {
        assert_eq!(std::mem::size_of::<super::portway_stats_record>(), 344);
        assert_eq!(std::mem::size_of::<super::portway_latency>(), 48);
        assert_eq!(
            std::mem::size_of::<super::portway_handler_stats_record>(),
            368
        );
        assert_eq!(
            std::mem::offset_of!(super::portway_handler_stats_record, submitted),
            8
        );
    }

    /// The committed header must be exactly what build.rs generates from these sources.
    #[test]
    fn committed_header_is_up_to_date() {
        let generated = include_str!(concat!(env!("OUT_DIR"), "/portway.h"));
        let committed = include_str!("../../include/portway.h");
        assert!(
            generated == committed,
            "include/portway.h is stale: run `make header` and commit the result"
        );
    }
}
