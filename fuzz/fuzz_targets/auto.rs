//! Arbitrary bytes read as anything, the format recognised from the bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use thingpress_manifest::Supplier;

fuzz_target!(|data: &[u8]| thingpress_fuzz::drain(data, Supplier::Auto));
