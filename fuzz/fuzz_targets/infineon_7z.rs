//! Arbitrary bytes after the 7z magic, read as an Infineon OPTIGA Trust M bundle (mutations that
//! break the magic are put back on it).
#![no_main]

use libfuzzer_sys::fuzz_target;
use thingpress_manifest::fuzz_check::Target;

fuzz_target!(|data: &[u8]| thingpress_fuzz::run(Target::Infineon7z, data));
