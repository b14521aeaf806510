//! The bodies of the fuzz targets. They live in `zmtp/tests/curve_fuzz.rs`, included here as
//! is, so `cargo test -p xbus-zmtp --test curve_fuzz` (stable, CI) runs the very same code over
//! proptest inputs.

#[path = "../../zmtp/tests/curve_fuzz.rs"]
mod harness;

pub use harness::{
    curve_handshake_case, curve_messages_case, fuzz_curve_handshake, fuzz_curve_messages,
};
