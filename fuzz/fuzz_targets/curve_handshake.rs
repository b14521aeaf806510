//! Arbitrary bytes as the peer's side of a CURVE handshake, against our server and our client.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| xbus_fuzz::fuzz_curve_handshake(data));
