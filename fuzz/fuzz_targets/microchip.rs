//! Arbitrary bytes read as a Microchip JSON array of JWS entries.
#![no_main]

use libfuzzer_sys::fuzz_target;
use thingpress_manifest::Supplier;

fuzz_target!(|data: &[u8]| thingpress_fuzz::drain(data, Supplier::Microchip));
