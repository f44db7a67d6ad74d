//! Arbitrary bytes read as anything, the format recognised from the bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use thingpress_manifest::fuzz_check::Target;

fuzz_target!(|data: &[u8]| thingpress_fuzz::run(Target::Auto, data));
