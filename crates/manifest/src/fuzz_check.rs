//! The body of every fuzz target, shared by `fuzz/` (cargo-fuzz, nightly) and the stable corpus
//! replay (`tests/corpus.rs`), so both check the same invariants on the same inputs: read a
//! manifest with one supplier setting, drain every entry, and check what the rest of Thingpress
//! relies on. Not part of the API.

use crate::infineon::SEVEN_Z_MAGIC;
use crate::{Entry, ErrorKind, Limits, Options, Supplier, read_entries};

/// Limits small enough that libFuzzer's 2 GB RSS limit is never the thing that stops a run.
const LIMITS: Limits = Limits {
    max_archive_bytes: 16 * 1024 * 1024,
    max_archive_entries: 10_000,
    max_entry_bytes: 1024 * 1024,
};

/// One fuzz target: a supplier setting and what it does to the input first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// A Microchip JSON array of JWS entries.
    Microchip,
    /// An Infineon XML manifest (inputs with the 7z magic belong to `Infineon7z`).
    InfineonXml,
    /// An Infineon OPTIGA Trust M bundle; inputs without the 7z magic get it in front, so
    /// mutations explore what follows it.
    Infineon7z,
    /// An Espressif CSV.
    Espressif,
    /// A PEM bundle or base64 lines.
    Pem,
    /// Anything, the format recognised from the bytes.
    Auto,
}

impl Target {
    /// Every target, in `script/fuzz --list` order.
    pub const ALL: [Target; 6] = [
        Target::Microchip,
        Target::InfineonXml,
        Target::Infineon7z,
        Target::Espressif,
        Target::Pem,
        Target::Auto,
    ];

    /// The cargo-fuzz target's name.
    pub fn name(self) -> &'static str {
        match self {
            Target::Microchip => "microchip",
            Target::InfineonXml => "infineon_xml",
            Target::Infineon7z => "infineon_7z",
            Target::Espressif => "espressif",
            Target::Pem => "pem",
            Target::Auto => "auto",
        }
    }

    /// Runs the target on `data`: what was read, or the first invariant it broke.
    pub fn check(self, data: &[u8]) -> Result<Drained, String> {
        match self {
            Target::Microchip => drain(data, Supplier::Microchip),
            Target::InfineonXml if data.starts_with(&SEVEN_Z_MAGIC) => Ok(Drained::default()),
            Target::InfineonXml => drain(data, Supplier::Infineon),
            Target::Infineon7z => {
                let rest = data.strip_prefix(&SEVEN_Z_MAGIC).unwrap_or(data);
                let mut bundle = Vec::with_capacity(SEVEN_Z_MAGIC.len() + rest.len());
                bundle.extend_from_slice(&SEVEN_Z_MAGIC);
                bundle.extend_from_slice(rest);
                drain(&bundle, Supplier::Infineon)
            }
            Target::Espressif => drain(data, Supplier::Espressif),
            Target::Pem => drain(data, Supplier::Pem),
            Target::Auto => drain(data, Supplier::Auto),
        }
    }
}

/// What one input produced.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Drained {
    /// Entries accepted.
    pub accepted: u64,
    /// Entries rejected, each with an entry-kind name and a reason.
    pub rejected: u64,
    /// The manifest could not be read (at the start, or mid-stream, which ends the stream).
    pub unreadable: bool,
}

/// Reads `data` as a `supplier` manifest to the end, checking that entries come in index order,
/// that rejections carry entry-kind names and a reason, and that accepted entries have a SHA-256
/// certificate id and a device id.
pub fn drain(data: &[u8], supplier: Supplier) -> Result<Drained, String> {
    let options = Options {
        supplier,
        limits: LIMITS,
        ..Options::default()
    };
    let mut drained = Drained::default();
    let Ok(entries) = read_entries(data, &options) else {
        drained.unreadable = true;
        return Ok(drained);
    };
    for (next, item) in (0u64..).zip(entries) {
        let Ok(entry) = item else {
            // The stream ends after an error (Entries guarantees it).
            drained.unreadable = true;
            return Ok(drained);
        };
        if entry.index() != next {
            return Err(format!("entry {} came where {next} was due", entry.index()));
        }
        match entry {
            Entry::Accepted(a) => {
                let sha256_hex = a.certificate_id.len() == 64
                    && a.certificate_id.bytes().all(|b| b.is_ascii_hexdigit());
                if !sha256_hex {
                    return Err(format!(
                        "entry {}: certificate id {:?} is not SHA-256 hex",
                        a.index, a.certificate_id
                    ));
                }
                if a.device_id.is_empty() {
                    return Err(format!("entry {}: accepted without a device id", a.index));
                }
                drained.accepted += 1;
            }
            Entry::Rejected(r) => {
                if r.error.kind() != ErrorKind::Entry {
                    return Err(format!(
                        "entry {}: {:?} is not an entry name",
                        r.index, r.error
                    ));
                }
                if r.message.is_empty() {
                    return Err(format!("entry {}: rejected without a reason", r.index));
                }
                drained.rejected += 1;
            }
        }
    }
    Ok(drained)
}
