//! Arbitrary bytes read as an Infineon XML manifest (inputs starting with the 7z magic are the
//! infineon_7z target's).
#![no_main]

use libfuzzer_sys::fuzz_target;
use thingpress_manifest::fuzz_check::Target;

fuzz_target!(|data: &[u8]| thingpress_fuzz::run(Target::InfineonXml, data));
