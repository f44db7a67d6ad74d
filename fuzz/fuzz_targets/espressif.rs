//! Arbitrary bytes read as an Espressif CSV.
#![no_main]

use libfuzzer_sys::fuzz_target;
use thingpress_manifest::fuzz_check::Target;

fuzz_target!(|data: &[u8]| thingpress_fuzz::run(Target::Espressif, data));
