//! What every fuzz target does: read a manifest with one supplier setting, drain every entry,
//! and check the invariants the rest of Thingpress relies on. Any panic that escapes the
//! library, or a broken invariant, is a crash for libFuzzer.

use std::sync::Once;

use thingpress_manifest::{Entry, ErrorKind, Limits, Options, Supplier, read_entries};

/// Limits small enough that libFuzzer's 2 GB RSS limit is never the thing that stops a run.
const LIMITS: Limits = Limits {
    max_archive_bytes: 16 * 1024 * 1024,
    max_archive_entries: 10_000,
    max_entry_bytes: 1024 * 1024,
};

/// Reads `data` as a `supplier` manifest to the end, checking that entries come in index order,
/// that rejections carry entry-kind names and a reason, and that accepted entries have a
/// SHA-256 certificate id and a device id.
pub fn drain(data: &[u8], supplier: Supplier) {
    contain_decoder_panics();
    let options = Options {
        supplier,
        limits: LIMITS,
        ..Options::default()
    };
    let Ok(entries) = read_entries(data, &options) else {
        return;
    };
    let mut next = 0u64;
    for item in entries {
        let Ok(entry) = item else {
            // The stream ends after an error (Entries guarantees it).
            return;
        };
        assert_eq!(entry.index(), next, "entries out of order");
        next += 1;
        match entry {
            Entry::Accepted(a) => {
                assert_eq!(
                    a.certificate_id.len(),
                    64,
                    "certificate id is not SHA-256 hex"
                );
                assert!(
                    !a.device_id.is_empty(),
                    "accepted entry without a device id"
                );
            }
            Entry::Rejected(r) => {
                assert_eq!(
                    r.error.kind(),
                    ErrorKind::Entry,
                    "{:?} is not an entry name",
                    r.error
                );
                assert!(!r.message.is_empty(), "rejection without a reason");
            }
        }
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
