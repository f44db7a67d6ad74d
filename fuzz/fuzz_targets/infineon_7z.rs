//! Arbitrary bytes after the 7z magic, read as an Infineon OPTIGA Trust M bundle.
#![no_main]

use libfuzzer_sys::fuzz_target;
use thingpress_manifest::Supplier;

const SEVEN_Z_MAGIC: &[u8] = &[0x37, 0x7A, 0xBC, 0xAF, 0x27, 0x1C];

fuzz_target!(|data: &[u8]| {
    // Seeds are whole bundles; mutations that break the magic are put back on it.
    let rest = data.strip_prefix(SEVEN_Z_MAGIC).unwrap_or(data);
    let mut bundle = Vec::with_capacity(SEVEN_Z_MAGIC.len() + rest.len());
    bundle.extend_from_slice(SEVEN_Z_MAGIC);
    bundle.extend_from_slice(rest);
    thingpress_fuzz::drain(&bundle, Supplier::Infineon);
});
