//! Arbitrary MESSAGE streams fed to a CurveDecoder after a real handshake.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| xbus_fuzz::fuzz_curve_messages(data));
