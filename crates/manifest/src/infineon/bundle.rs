//! The Infineon OPTIGA Trust M 7z bundle: a 7z archive of 7z archives.
//!
//! The bundle is held in memory up to `max_archive_bytes`. Its inner archives named
//! `<reel>_<guid>_<SLOT>_Certs.7z` for the chosen slot are extracted (`_keys.7z` is never opened,
//! README.txt is ignored); each file of an inner archive is one PEM certificate → one entry,
//! ordered by file name. deviceId = subject CN (else the certificate id); fields `slot`, `reel`,
//! `chipId` (file stem without the slot suffix) and `fileName`. Declared sizes and file counts are
//! summed and bounded before anything is extracted, and every read is bounded again (declared
//! sizes can lie). The 7z decoder runs inside `catch_unwind`, so a decoder bug on hostile input
//! is a [`ManifestError::Malformed`], not a crash.
//! When the inner archives store their files in name order (7-Zip does), a thread decodes them
//! while the certificates already decoded are validated; otherwise all files are extracted
//! (within the limits) and sorted first.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, Cursor, Read};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use sevenz_rust2::{Archive, ArchiveReader, EntryDecision, Password};
use x509_parser::prelude::{FromDer, X509Certificate};

use super::{accepted, malformed};
use crate::batch::validate_in_order;
use crate::cert::{Certificate, der_to_pem, pem_blocks};
use crate::{Entries, Entry, ErrorName, Limits, ManifestError, Options, Slot, Supplier};

/// The 7z signature `7z\xBC\xAF\x27\x1C`, which every bundle starts with.
pub(crate) const SEVEN_Z_MAGIC: [u8; 6] = [0x37, 0x7A, 0xBC, 0xAF, 0x27, 0x1C];

/// Memory the 7z decoder may use for header buffers and for one dictionary (KiB). Real bundles
/// use a few MiB; this stops a hostile header from asking for gigabytes.
const DECODER_MEMORY_KB: usize = 256 * 1024;

/// The most bytes reserved up front from a size an archive declares (it can lie).
const MAX_PREALLOC: u64 = 4 * 1024 * 1024;

/// An inner certificate archive of the bundle.
struct InnerName {
    /// Position among the slot's inner archives (sorted by name).
    number: usize,
    archive_name: String,
    reel: Option<String>,
}

/// One file of an inner archive, as extracted.
struct RawPem {
    archive: Arc<InnerName>,
    name: String,
    /// The file's bytes, or why it was not read.
    content: Result<Vec<u8>, String>,
}

/// Entry order: by file name, then full path, then inner archive.
fn file_order(a: (&str, usize), b: (&str, usize)) -> std::cmp::Ordering {
    base_name(a.0)
        .cmp(base_name(b.0))
        .then_with(|| a.0.cmp(b.0))
        .then_with(|| a.1.cmp(&b.1))
}

/// Files extracted per message from the decoding thread.
const PIPELINE_BATCH: usize = 256;

/// Messages in flight from the decoding thread (bounds memory to a few batches).
const PIPELINE_DEPTH: usize = 8;

/// Running totals over everything extracted, checked against [`Limits`].
struct Budget {
    files: u64,
    bytes: u64,
}

impl Budget {
    fn charge(
        &mut self,
        archive: &Archive,
        what: &str,
        limits: &Limits,
    ) -> Result<(), ManifestError> {
        let files = archive.files.len() as u64;
        let bytes = archive
            .files
            .iter()
            .fold(0u64, |sum, file| sum.saturating_add(file.size));
        self.files = self.files.saturating_add(files);
        self.bytes = self.bytes.saturating_add(bytes);
        if self.files > limits.max_archive_entries {
            return Err(ManifestError::LimitExceeded(format!(
                "infineon {what}: {} files declared, over max_archive_entries ({}) \
                 — archive bomb?",
                self.files, limits.max_archive_entries
            )));
        }
        if self.bytes > limits.max_archive_bytes {
            return Err(ManifestError::LimitExceeded(format!(
                "infineon {what}: {} bytes declared once unpacked, over max_archive_bytes ({}) \
                 — archive bomb?",
                self.bytes, limits.max_archive_bytes
            )));
        }
        Ok(())
    }
}

/// Runs the 7z decoder, turning its errors and any panic into [`ManifestError::Malformed`].
fn guarded<T>(
    what: &str,
    run: impl FnOnce() -> Result<T, sevenz_rust2::Error>,
) -> Result<T, ManifestError> {
    match catch_unwind(AssertUnwindSafe(run)) {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(malformed(None, format!("{what}: {e}"))),
        Err(_) => Err(malformed(
            None,
            format!("{what}: the 7z decoder failed on this input"),
        )),
    }
}

fn open_archive(
    bytes: Vec<u8>,
    what: &str,
) -> Result<ArchiveReader<Cursor<Vec<u8>>>, ManifestError> {
    let mut archive = guarded(what, || {
        ArchiveReader::new_with_memory_limit(
            Cursor::new(bytes),
            Password::empty(),
            DECODER_MEMORY_KB,
        )
    })?;
    // Multi-threaded LZMA2 decoding decodes far ahead of the reader; one thread streams, and
    // the cores are better spent validating certificates meanwhile.
    archive.set_thread_count(1);
    Ok(archive)
}

/// The last path component of an archive entry name.
fn base_name(name: &str) -> &str {
    name.rsplit(['/', '\\']).next().unwrap_or(name)
}

/// The slot of an inner certificate archive `<reel>_<guid>_<SLOT>_Certs.7z`, if `name` is one.
fn certs_archive_slot(name: &str) -> Option<&str> {
    let stem = base_name(name).strip_suffix("_Certs.7z")?;
    let (_, slot) = stem.rsplit_once('_')?;
    Some(slot)
}

/// Reads one archive entry, at most `declared` bytes (one more proves the size was a lie).
fn read_declared(
    reader: &mut dyn Read,
    declared: u64,
    into: &mut Vec<u8>,
    what: &dyn Fn() -> String,
) -> Result<(), ManifestError> {
    let start = into.len();
    reader
        .take(declared.saturating_add(1))
        .read_to_end(into)
        .map_err(|e| malformed(None, format!("{}: {e}", what())))?;
    if (into.len() - start) as u64 > declared {
        return Err(ManifestError::LimitExceeded(format!(
            "infineon {} holds more than the {declared} bytes it declares",
            what()
        )));
    }
    Ok(())
}

pub(super) fn entries<'a, R: BufRead>(
    mut reader: R,
    options: &Options,
) -> Result<Entries<'a>, ManifestError> {
    let limits = options.limits;
    let mut bundle = Vec::new();
    reader
        .by_ref()
        .take(limits.max_archive_bytes.saturating_add(1))
        .read_to_end(&mut bundle)?;
    if bundle.len() as u64 > limits.max_archive_bytes {
        return Err(ManifestError::LimitExceeded(format!(
            "infineon 7z bundle is over max_archive_bytes ({} bytes)",
            limits.max_archive_bytes
        )));
    }
    let inner = extract_slot_archives(bundle, options.slot, &limits)?;
    // Open every inner archive and bound what it declares before extracting anything.
    let mut budget = Budget { files: 0, bytes: 0 };
    let mut archives = Vec::with_capacity(inner.len());
    for (number, (archive_name, bytes)) in inner.into_iter().enumerate() {
        let what = format!("inner archive {archive_name}");
        let archive = open_archive(bytes, &what)?;
        budget.charge(archive.archive(), &what, &limits)?;
        let reel = base_name(&archive_name)
            .split_once('_')
            .map(|(reel, _)| reel.to_owned());
        let name = InnerName {
            number,
            archive_name,
            reel,
        };
        archives.push((Arc::new(name), archive));
    }
    let slot = options.slot;
    let validate = move |(index, file): (u64, RawPem)| validate_pem(index, file, slot);
    if in_name_order(&archives) {
        // The usual case (7-Zip stores files sorted): decode on a thread and validate while it
        // decodes, so decompression and certificate parsing use both cores.
        let raw = pipelined(archives, limits)?
            .zip(0u64..)
            .map(|(file, index)| file.map(|file| (index, file)));
        return Ok(Entries::new(
            Supplier::Infineon,
            validate_in_order(raw, validate),
        ));
    }
    let mut files = Vec::new();
    for (inner, archive) in archives {
        extract_files(archive, &inner, &limits, &mut |file| {
            files.push(file);
            true
        })?;
    }
    files.sort_by(|a, b| file_order((&a.name, a.archive.number), (&b.name, b.archive.number)));
    let raw = files
        .into_iter()
        .zip(0u64..)
        .map(|(file, index)| Ok((index, file)));
    Ok(Entries::new(
        Supplier::Infineon,
        validate_in_order(raw, validate),
    ))
}

type InnerArchive = (Arc<InnerName>, ArchiveReader<Cursor<Vec<u8>>>);

/// Whether extraction already yields files in entry order: streams come in file-list order,
/// then the empty files.
fn in_name_order(archives: &[InnerArchive]) -> bool {
    let mut previous: Option<(&str, usize)> = None;
    for (inner, archive) in archives {
        let files = &archive.archive().files;
        let extracted = files
            .iter()
            .filter(|f| f.has_stream())
            .chain(files.iter().filter(|f| !f.has_stream()))
            .filter(|f| !f.is_directory() && !f.is_anti_item());
        for file in extracted {
            let current = (file.name(), inner.number);
            if previous.is_some_and(|p| file_order(p, current).is_gt()) {
                return false;
            }
            previous = Some(current);
        }
    }
    true
}

/// What the decoding thread sends.
enum Extracted {
    Files(Vec<RawPem>),
    Failed(ManifestError),
    Done,
}

/// Extracts the inner archives on a thread, yielding their files in extraction order.
fn pipelined(
    archives: Vec<InnerArchive>,
    limits: Limits,
) -> Result<impl Iterator<Item = Result<RawPem, ManifestError>> + Send + 'static, ManifestError> {
    let (sender, receiver) = std::sync::mpsc::sync_channel::<Extracted>(PIPELINE_DEPTH);
    std::thread::Builder::new()
        .name("thingpress-7z".to_owned())
        .spawn(move || {
            let mut batch = Vec::with_capacity(PIPELINE_BATCH);
            for (inner, archive) in archives {
                let mut listening = true;
                let result = extract_files(archive, &inner, &limits, &mut |file| {
                    batch.push(file);
                    if batch.len() >= PIPELINE_BATCH {
                        let full =
                            std::mem::replace(&mut batch, Vec::with_capacity(PIPELINE_BATCH));
                        listening = sender.send(Extracted::Files(full)).is_ok();
                    }
                    listening
                });
                if !listening {
                    return;
                }
                if let Err(e) = result {
                    let _ = sender.send(Extracted::Files(std::mem::take(&mut batch)));
                    let _ = sender.send(Extracted::Failed(e));
                    return;
                }
            }
            let _ = sender.send(Extracted::Files(batch));
            let _ = sender.send(Extracted::Done);
        })?;
    let mut current = Vec::new().into_iter();
    let mut finished = false;
    Ok(std::iter::from_fn(move || {
        loop {
            if let Some(file) = current.next() {
                return Some(Ok(file));
            }
            if finished {
                return None;
            }
            match receiver.recv() {
                Ok(Extracted::Files(files)) => current = files.into_iter(),
                Ok(Extracted::Done) => finished = true,
                Ok(Extracted::Failed(e)) => {
                    finished = true;
                    return Some(Err(e));
                }
                // The thread ended without saying so: never pass that off as the end.
                Err(_) => {
                    finished = true;
                    return Some(Err(malformed(None, "7z extraction stopped unexpectedly")));
                }
            }
        }
    }))
}

/// Finds and extracts the bundle's inner archives for `slot`, never touching the others.
fn extract_slot_archives(
    bundle: Vec<u8>,
    slot: Slot,
    limits: &Limits,
) -> Result<Vec<(String, Vec<u8>)>, ManifestError> {
    let mut outer = open_archive(bundle, "7z bundle")?;
    Budget { files: 0, bytes: 0 }.charge(outer.archive(), "7z bundle", limits)?;
    let mut present = BTreeSet::new();
    let mut wanted = 0usize;
    for file in &outer.archive().files {
        if file.is_directory() {
            continue;
        }
        if let Some(found) = certs_archive_slot(file.name()) {
            present.insert(found.to_owned());
            if found.eq_ignore_ascii_case(slot.as_str()) {
                wanted += 1;
            }
        }
    }
    if wanted == 0 {
        let present = if present.is_empty() {
            "none (no *_<SLOT>_Certs.7z inner archive at all)".to_owned()
        } else {
            present.into_iter().collect::<Vec<_>>().join(", ")
        };
        return Err(malformed(
            None,
            format!(
                "the 7z bundle has no inner archive for slot {}; slots present: {present}",
                slot.as_str()
            ),
        ));
    }
    let mut found: Vec<(String, Vec<u8>)> = Vec::with_capacity(wanted);
    let mut failure = None;
    guarded("7z bundle", || {
        outer.for_each_entries_with_decision(|entry, data| {
            let is_wanted = !entry.is_directory()
                && certs_archive_slot(entry.name())
                    .is_some_and(|found| found.eq_ignore_ascii_case(slot.as_str()));
            if !is_wanted {
                // Other slots, `_keys.7z` and README.txt are never looked at.
                return Ok(EntryDecision::Continue);
            }
            let mut bytes = Vec::with_capacity(entry.size().min(MAX_PREALLOC) as usize);
            let what = || format!("inner archive {}", entry.name());
            if let Err(e) = read_declared(data, entry.size(), &mut bytes, &what) {
                failure = Some(e);
                return Ok(EntryDecision::Stop);
            }
            found.push((entry.name().to_owned(), bytes));
            if found.len() == wanted {
                return Ok(EntryDecision::Stop);
            }
            Ok(EntryDecision::Continue)
        })
    })?;
    if let Some(e) = failure {
        return Err(e);
    }
    if found.len() != wanted {
        return Err(malformed(
            None,
            format!(
                "the 7z bundle lists {wanted} inner archive(s) for slot {} but only {} could be \
                 read",
                slot.as_str(),
                found.len()
            ),
        ));
    }
    found.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(found)
}

/// Extracts every file of one inner archive, handing each to `emit` (which returns false to
/// stop).
fn extract_files(
    mut archive: ArchiveReader<Cursor<Vec<u8>>>,
    inner: &Arc<InnerName>,
    limits: &Limits,
    emit: &mut dyn FnMut(RawPem) -> bool,
) -> Result<(), ManifestError> {
    let what = format!("inner archive {}", inner.archive_name);
    let mut failure = None;
    guarded(&what, || {
        archive.for_each_entries_with_decision(|entry, data| {
            if entry.is_directory() || entry.is_anti_item() {
                return Ok(EntryDecision::Continue);
            }
            let name = entry.name().to_owned();
            let content = if entry.size() > limits.max_entry_bytes {
                Err(format!(
                    "{} bytes, over max_entry_bytes ({})",
                    entry.size(),
                    limits.max_entry_bytes
                ))
            } else {
                let mut bytes = Vec::with_capacity(entry.size().min(MAX_PREALLOC) as usize);
                let label = || format!("{what}, file {name}");
                if let Err(e) = read_declared(data, entry.size(), &mut bytes, &label) {
                    failure = Some(e);
                    return Ok(EntryDecision::Stop);
                }
                Ok(bytes)
            };
            let file = RawPem {
                archive: Arc::clone(inner),
                name,
                content,
            };
            Ok(if emit(file) {
                EntryDecision::Continue
            } else {
                EntryDecision::Stop
            })
        })
    })?;
    match failure {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

fn validate_pem(index: u64, file: RawPem, slot: Slot) -> Entry {
    let RawPem {
        archive,
        name,
        content,
    } = file;
    match file_certificates(content) {
        Ok((certificate, chain)) => {
            let fields = file_fields(&archive, &name, slot);
            accepted(index, certificate, None, chain, fields)
        }
        Err((error, reason, device_id)) => {
            let message = format!("{}, file {name}: {reason}", archive.archive_name);
            Entry::rejected(index, error, message, device_id)
        }
    }
}

/// Why a file gives no entry: the error, the reason, and the device id if one was read.
type Unusable = (ErrorName, String, Option<String>);

/// A file's device certificate (its first PEM block) and the issuers shipped after it, as PEM.
fn file_certificates(
    content: Result<Vec<u8>, String>,
) -> Result<(Certificate, Vec<String>), Unusable> {
    let invalid = |reason: String| (ErrorName::InvalidCertificate, reason, None);
    let bytes = content.map_err(invalid)?;
    let text = std::str::from_utf8(&bytes)
        .map_err(|_| invalid("not a PEM text (not UTF-8)".to_owned()))?;
    if text.trim().is_empty() {
        let reason = "the file is empty".to_owned();
        return Err((ErrorName::MissingCertificate, reason, None));
    }
    let mut ders = pem_blocks(text);
    let certificate = match ders.next() {
        Some(Ok(der)) => Certificate::from_der(der),
        Some(Err(reason)) => Err(reason),
        None => Err("no PEM CERTIFICATE block".to_owned()),
    }
    .map_err(invalid)?;
    let mut chain = Vec::new();
    for der in ders {
        // Parsed like every other chain certificate, so nothing unparseable is passed on.
        let parsed = der.and_then(|der| match X509Certificate::from_der(&der) {
            Ok(([], _)) => Ok(der),
            Ok(_) => Err("trailing bytes after the certificate".to_owned()),
            Err(e) => Err(format!("not an X.509 certificate: {e}")),
        });
        match parsed {
            Ok(der) => chain.push(der_to_pem(&der)),
            Err(reason) => {
                let reason = format!("a further certificate block: {reason}");
                return Err((ErrorName::InvalidCertificate, reason, certificate.cn));
            }
        }
    }
    Ok((certificate, chain))
}

/// The fields a bundle file gives its entry: `slot`, `chipId`, `fileName` and `reel`.
fn file_fields(archive: &InnerName, name: &str, slot: Slot) -> BTreeMap<String, String> {
    let file_name = base_name(name);
    let stem = file_name
        .rsplit_once('.')
        .map_or(file_name, |(stem, _)| stem);
    let mut fields = BTreeMap::new();
    fields.insert("slot".to_owned(), slot.as_str().to_owned());
    fields.insert("chipId".to_owned(), chip_id(stem, slot).to_owned());
    fields.insert("fileName".to_owned(), file_name.to_owned());
    if let Some(reel) = archive.reel.clone() {
        fields.insert("reel".to_owned(), reel);
    }
    fields
}

/// The chip id in a file stem `<chipId>_<SLOT>` (any case); the whole stem if it has no such
/// suffix.
fn chip_id(stem: &str, slot: Slot) -> &str {
    stem.len()
        .checked_sub(slot.as_str().len() + 1)
        .and_then(|cut| {
            let (chip, suffix) = (stem.get(..cut)?, stem.get(cut..)?);
            let tag = suffix.strip_prefix('_')?;
            tag.eq_ignore_ascii_case(slot.as_str()).then_some(chip)
        })
        .unwrap_or(stem)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inner_archive_names_give_their_slot() {
        assert_eq!(
            certs_archive_slot("78211223032C7EFA_b414-95c2_E0E1_Certs.7z"),
            Some("E0E1")
        );
        assert_eq!(certs_archive_slot("dir/R_G_E0E0_Certs.7z"), Some("E0E0"));
        assert_eq!(certs_archive_slot("R_G_keys.7z"), None);
        assert_eq!(certs_archive_slot("README.txt"), None);
    }

    #[test]
    fn file_stems_give_their_chip_id() {
        assert_eq!(chip_id("3A2B_E0E0", Slot::E0E0), "3A2B");
        assert_eq!(chip_id("3A2B_e0e1", Slot::E0E1), "3A2B");
        assert_eq!(chip_id("3A2B_E0E1", Slot::E0E0), "3A2B_E0E1");
        assert_eq!(chip_id("E0E0", Slot::E0E0), "E0E0");
        assert_eq!(chip_id("_E0E0", Slot::E0E0), "");
    }
}
