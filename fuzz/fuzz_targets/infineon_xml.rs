//! Arbitrary bytes read as an Infineon XML manifest (inputs starting with the 7z magic are the
//! infineon_7z target's).
#![no_main]

use libfuzzer_sys::fuzz_target;
use thingpress_manifest::Supplier;

const SEVEN_Z_MAGIC: &[u8] = &[0x37, 0x7A, 0xBC, 0xAF, 0x27, 0x1C];

fuzz_target!(|data: &[u8]| {
    if !data.starts_with(SEVEN_Z_MAGIC) {
        thingpress_fuzz::drain(data, Supplier::Infineon);
    }
});
