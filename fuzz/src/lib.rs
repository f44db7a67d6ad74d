//! What every fuzz target does: run that target's body from
//! `thingpress_manifest::fuzz_check` (the same code the stable corpus replay,
//! `crates/manifest/tests/corpus.rs`, runs) and turn a broken invariant into a crash. Any panic
//! that escapes the library is a crash for libFuzzer too.

use std::sync::Once;

use thingpress_manifest::fuzz_check::Target;

/// Runs `target` on `data`; a broken invariant panics, which libFuzzer reports as a crash.
pub fn run(target: Target, data: &[u8]) {
    contain_decoder_panics();
    if let Err(broken) = target.check(data) {
        panic!("{}: {broken}", target.name());
    }
}

/// libfuzzer-sys aborts on every panic, even one the library catches. The library runs the 7z
/// decoder (sevenz-rust2, lzma-rust2) inside `catch_unwind` and reports its panics as
/// `ManifestError::Malformed`, so those are not crashes; any other panic still aborts, and a
/// panic that escapes the library aborts in libfuzzer-sys's own `catch_unwind`.
fn contain_decoder_panics() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let abort_hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let contained = info.location().is_some_and(|at| {
                let file = at.file();
                file.contains("sevenz-rust2-") || file.contains("lzma-rust2-")
            });
            if contained {
                eprintln!("contained 7z decoder panic (reported as Malformed): {info}");
            } else {
                abort_hook(info);
            }
        }));
    });
}
