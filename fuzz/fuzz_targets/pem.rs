//! Arbitrary bytes read as a PEM bundle or base64 lines.
#![no_main]

use libfuzzer_sys::fuzz_target;
use thingpress_manifest::fuzz_check::Target;

fuzz_target!(|data: &[u8]| thingpress_fuzz::run(Target::Pem, data));
