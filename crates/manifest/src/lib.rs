//! Supplier manifests to a stream of accepted entries and named rejections.
//!
//! Pure and synchronous: no AWS, no async runtime. Every format streams (memory does not grow
//! with the manifest), except the Infineon 7z bundle, which is held in memory within
//! [`Limits::max_archive_bytes`]. No input panics: an unreadable manifest is a
//! [`ManifestError`], a bad entry is a [`Rejected`] entry with its [`ErrorName`].

mod batch;
mod cert;
mod detect;
pub mod espressif;
// The fuzz targets' bodies, shared with the stable corpus replay (tests/corpus.rs).
#[doc(hidden)]
pub mod fuzz_check;
pub mod infineon;
mod metered;
pub mod microchip;
pub mod names;
pub mod pem;

use std::collections::{BTreeMap, HashSet};
use std::hash::{BuildHasherDefault, Hash, Hasher};
use std::io::BufRead;

use serde::{Deserialize, Serialize};

pub use cert::{Certificate, der_to_pem, sha256_hex};
pub use microchip::Verifiers;
pub use names::{ErrorKind, ErrorName};

/// A supplier format, or `Auto` to recognise it from the bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Supplier {
    /// Recognise the format from the first bytes.
    #[default]
    Auto,
    /// Microchip Trust&GO / TrustFLEX: JSON array of signed JWS entries.
    Microchip,
    /// Infineon: the XML manifest or the OPTIGA Trust M 7z bundle.
    Infineon,
    /// Espressif: CSV with `MAC` and `cert` columns.
    Espressif,
    /// Any PEM bundle, or one base64 PEM / DER per line.
    Pem,
}

impl Supplier {
    /// The lowercase name used on the command line and in profiles.
    pub fn as_str(self) -> &'static str {
        match self {
            Supplier::Auto => "auto",
            Supplier::Microchip => "microchip",
            Supplier::Infineon => "infineon",
            Supplier::Espressif => "espressif",
            Supplier::Pem => "pem",
        }
    }
}

impl std::fmt::Display for Supplier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Supplier {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [
            Supplier::Auto,
            Supplier::Microchip,
            Supplier::Infineon,
            Supplier::Espressif,
            Supplier::Pem,
        ]
        .into_iter()
        .find(|supplier| supplier.as_str().eq_ignore_ascii_case(s))
        .ok_or_else(|| {
            format!("unknown supplier {s:?} (expected auto, microchip, infineon, espressif or pem)")
        })
    }
}

/// The key slot of an Infineon OPTIGA Trust M bundle whose certificates are imported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Slot {
    /// Slot E0E0 (the default device certificate).
    #[default]
    E0E0,
    /// Slot E0E1.
    E0E1,
    /// Slot E0E2.
    E0E2,
}

impl Slot {
    /// The slot's name as it appears in bundle file names.
    pub fn as_str(self) -> &'static str {
        match self {
            Slot::E0E0 => "E0E0",
            Slot::E0E1 => "E0E1",
            Slot::E0E2 => "E0E2",
        }
    }
}

impl std::str::FromStr for Slot {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [Slot::E0E0, Slot::E0E1, Slot::E0E2]
            .into_iter()
            .find(|slot| slot.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| format!("unknown slot {s:?} (expected E0E0, E0E1 or E0E2)"))
    }
}

/// Bounds that keep hostile input from exhausting memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The largest 7z bundle held in memory, and the most its inner archives may unpack to.
    pub max_archive_bytes: u64,
    /// The most files one archive may declare.
    pub max_archive_entries: u64,
    /// The largest single manifest entry (one JWS object, CSV record, XML group or PEM file).
    pub max_entry_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_archive_bytes: 512 * 1024 * 1024,
            max_archive_entries: 2_000_000,
            max_entry_bytes: 1024 * 1024,
        }
    }
}

/// How to read a manifest.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// The format, or `Auto`.
    pub supplier: Supplier,
    /// Certificates whose keys may sign Microchip manifests.
    pub verifiers: Verifiers,
    /// The Infineon bundle slot to import.
    pub slot: Slot,
    /// Size bounds.
    pub limits: Limits,
}

/// A manifest entry that can be registered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Accepted {
    /// Position in the manifest, from 0.
    pub index: u64,
    /// Lowercase hex SHA-256 of the device certificate's DER (the AWS IoT certificate id).
    pub certificate_id: String,
    /// The device certificate, PEM.
    pub certificate_pem: String,
    /// Issuer certificates the manifest ships with it, PEM, nearest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub chain: Vec<String>,
    /// The supplier's device id (Microchip uniqueId, Infineon TpmMAC or CN, Espressif MAC, CN).
    pub device_id: String,
    /// The certificate subject's common name, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cn: Option<String>,
    /// Supplier fields (part number, MAC, …) by their manifest names, for templates.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub fields: BTreeMap<String, String>,
}

/// A manifest entry that cannot be registered, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Rejected {
    /// Position in the manifest, from 0.
    pub index: u64,
    /// Why, as a `Thingpress.*` name.
    pub error: ErrorName,
    /// Why, for people.
    pub message: String,
    /// The device id, when the entry got far enough to name one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_id: Option<String>,
}

/// One manifest entry's outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "lowercase")]
pub enum Entry {
    /// Ready to register.
    Accepted(Accepted),
    /// Not registrable.
    Rejected(Rejected),
}

impl Entry {
    /// A rejected entry.
    pub fn rejected(
        index: u64,
        error: ErrorName,
        message: String,
        device_id: Option<String>,
    ) -> Entry {
        Entry::Rejected(Rejected {
            index,
            error,
            message,
            device_id,
        })
    }

    /// The entry's position in the manifest.
    pub fn index(&self) -> u64 {
        match self {
            Entry::Accepted(a) => a.index,
            Entry::Rejected(r) => r.index,
        }
    }
}

/// Why a manifest cannot be read at all.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// Reading the bytes failed.
    #[error("read failed: {0}")]
    Io(#[from] std::io::Error),
    /// The bytes are not any supported format.
    #[error("unrecognised manifest format: {0}")]
    UnknownFormat(String),
    /// The manifest is not well-formed for its format (not JSON, truncated, missing columns, …).
    #[error("not a valid {supplier} manifest{}: {reason}", at.map(|i| format!(" at entry {i}")).unwrap_or_default())]
    Malformed {
        /// The format being read.
        supplier: Supplier,
        /// The entry being read when it failed, if known.
        at: Option<u64>,
        /// What is wrong.
        reason: String,
    },
    /// A size or count bound was exceeded (archive bomb, huge entry).
    #[error("{0}")]
    LimitExceeded(String),
    /// A verifier certificate cannot be used.
    #[error("invalid verifier certificate: {0}")]
    InvalidVerifier(String),
}

impl ManifestError {
    /// Shorthand for [`ManifestError::Malformed`].
    pub fn malformed(supplier: Supplier, at: Option<u64>, reason: impl Into<String>) -> Self {
        ManifestError::Malformed {
            supplier,
            at,
            reason: reason.into(),
        }
    }
}

/// The entries of a manifest in manifest order. After an `Err` the iterator ends.
pub struct Entries<'a> {
    supplier: Supplier,
    inner: Box<dyn Iterator<Item = Result<Entry, ManifestError>> + Send + 'a>,
}

impl<'a> Entries<'a> {
    /// Wraps a format's iterator.
    pub(crate) fn new(
        supplier: Supplier,
        inner: impl Iterator<Item = Result<Entry, ManifestError>> + Send + 'a,
    ) -> Self {
        let mut failed = false;
        let mut seen = Seen::default();
        let inner = inner
            .take_while(move |item| {
                let keep = !failed;
                failed |= item.is_err();
                keep
            })
            .map(move |item| item.map(|entry| seen.check(entry)));
        Entries {
            supplier,
            inner: Box::new(inner),
        }
    }

    /// The format being read (resolved, never `Auto`).
    pub fn supplier(&self) -> Supplier {
        self.supplier
    }
}

/// The certificates accepted so far in one manifest, by a 64-bit fingerprint of their id.
///
/// The one thing that grows with the manifest: a `HashSet<u64>` costs 8 bytes per entry plus the
/// table's slack, about 16 MiB per million accepted entries. The id is a SHA-256, so its first
/// 64 bits are already uniform: they need no further hashing, and two different certificates
/// share them with odds of about n²/2⁶⁵ (3·10⁻⁸ for a million entries). Such a collision would
/// show as a visible `DuplicateCertificate` rejection, never as a silent loss.
#[derive(Default)]
struct Seen(HashSet<u64, BuildHasherDefault<PrehashedU64>>);

impl Seen {
    /// Passes the first occurrence of a certificate through; rejects the later ones.
    fn check(&mut self, entry: Entry) -> Entry {
        let Entry::Accepted(accepted) = entry else {
            return entry;
        };
        if self.0.insert(fingerprint(&accepted.certificate_id)) {
            return Entry::Accepted(accepted);
        }
        Entry::Rejected(Rejected {
            index: accepted.index,
            error: ErrorName::DuplicateCertificate,
            message: format!(
                "certificate {} already appears earlier in this manifest; only its first \
                 occurrence is imported",
                accepted.certificate_id
            ),
            device_id: Some(accepted.device_id),
        })
    }
}

/// The first 64 bits of a hex certificate id (any other text is hashed whole).
fn fingerprint(certificate_id: &str) -> u64 {
    certificate_id
        .get(..16)
        .and_then(|prefix| u64::from_str_radix(prefix, 16).ok())
        .unwrap_or_else(|| {
            let mut hasher = std::collections::hash_map::DefaultHasher::new();
            certificate_id.hash(&mut hasher);
            hasher.finish()
        })
}

/// A hasher for keys that are already uniformly distributed 64-bit values.
#[derive(Default)]
struct PrehashedU64(u64);

impl Hasher for PrehashedU64 {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is used by `HashSet<u64>`; fold anything else in, just in case.
        for &byte in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(byte);
        }
    }

    fn write_u64(&mut self, value: u64) {
        self.0 = value;
    }
}

impl Iterator for Entries<'_> {
    type Item = Result<Entry, ManifestError>;
    fn next(&mut self) -> Option<Self::Item> {
        self.inner.next()
    }
}

/// Opens a manifest: recognises the format when `options.supplier` is `Auto`, then streams its
/// entries. Fails at once when the bytes cannot be a manifest of that format. A certificate
/// accepted once is rejected as [`ErrorName::DuplicateCertificate`] wherever it appears again.
pub fn read_entries<'a, R: BufRead + Send + 'a>(
    mut reader: R,
    options: &Options,
) -> Result<Entries<'a>, ManifestError> {
    let supplier = match options.supplier {
        Supplier::Auto => detect::detect(&mut reader)?,
        known => known,
    };
    match supplier {
        Supplier::Microchip => microchip::entries(reader, options),
        Supplier::Infineon => infineon::entries(reader, options),
        Supplier::Espressif => espressif::entries(reader, options),
        Supplier::Pem | Supplier::Auto => pem::entries(reader, options),
    }
}
