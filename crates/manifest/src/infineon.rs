//! Infineon manifests: the XML manifest, or the OPTIGA Trust M 7z bundle (chosen by the first
//! bytes: the 7z signature `37 7A BC AF 27 1C`, else XML).
//!
//! **XML**: every `<group>` child of the root is one device: `<hex name="TpmMAC" value="…"/>`
//! gives the deviceId, and each `<binaryhex>` (anywhere inside the group) holds one certificate
//! as hex DER (any case, whitespace anywhere) — one entry per certificate, so a group may give
//! several entries and `index` counts certificates. Every `<hex name=X value=Y/>` of the group,
//! `TpmMAC` included, becomes field X=Y. A group without `TpmMAC` falls back to the subject CN as
//! deviceId, then to the certificate id. Bad hex or DER → `InvalidCertificate`; a group without
//! any certificate → one `MissingCertificate` entry. The document streams: a DTD is one event that
//! is never expanded, and only the five standard entities and character references are resolved
//! (an entity bomb stays inert: an unknown entity in a certificate makes that entry invalid, in an
//! attribute it makes the document malformed). A group over `max_entry_bytes` ends the read with
//! [`ManifestError::LimitExceeded`].
//!
//! **7z bundle**: held in memory up to `max_archive_bytes`. Its inner archives named
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

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::io::{BufRead, Cursor, Read};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use quick_xml::Reader;
use quick_xml::escape::resolve_predefined_entity;
use quick_xml::events::{BytesStart, Event};
use sevenz_rust2::{Archive, ArchiveReader, EntryDecision, Password};
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::batch::validate_in_order;
use crate::cert::{Certificate, der_to_pem, pem_blocks};
use crate::{
    Accepted, Entries, Entry, ErrorName, Limits, ManifestError, Options, Rejected, Slot, Supplier,
};

/// The 7z signature.
const SEVEN_Z_MAGIC: [u8; 6] = [0x37, 0x7A, 0xBC, 0xAF, 0x27, 0x1C];

/// Memory the 7z decoder may use for header buffers and for one dictionary (KiB). Real bundles
/// use a few MiB; this stops a hostile header from asking for gigabytes.
const DECODER_MEMORY_KB: usize = 256 * 1024;

/// The most bytes reserved up front from a size an archive declares (it can lie).
const MAX_PREALLOC: u64 = 4 * 1024 * 1024;

/// Streams the entries of an Infineon manifest (XML or 7z bundle).
pub(crate) fn entries<'a, R: BufRead + Send + 'a>(
    mut reader: R,
    options: &Options,
) -> Result<Entries<'a>, ManifestError> {
    // Peek enough bytes to tell 7z from XML even if the reader hands them out one at a time.
    let mut head = Vec::with_capacity(SEVEN_Z_MAGIC.len());
    while head.len() < SEVEN_Z_MAGIC.len() {
        let available = reader.fill_buf()?;
        if available.is_empty() {
            break;
        }
        let take = available.len().min(SEVEN_Z_MAGIC.len() - head.len());
        head.extend(available.iter().take(take));
        reader.consume(take);
    }
    let is_7z = head == SEVEN_Z_MAGIC;
    let reader = Cursor::new(head).chain(reader);
    if is_7z {
        bundle_entries(reader, options)
    } else {
        xml_entries(reader, options.limits)
    }
}

fn reject(index: u64, error: ErrorName, message: String, device_id: Option<String>) -> Entry {
    Entry::Rejected(Rejected {
        index,
        error,
        message,
        device_id,
    })
}

fn malformed(at: Option<u64>, reason: impl Into<String>) -> ManifestError {
    ManifestError::malformed(Supplier::Infineon, at, reason)
}

// ---------------------------------------------------------------------------------------------
// XML manifest

/// One certificate (or the lack of one) of a group, as read.
struct RawXml {
    index: u64,
    /// Position of the group among the root's `<group>` children, from 0.
    group: u64,
    /// Hex digits as found (whitespace removed), or why the text cannot be a certificate.
    hex: Result<Vec<u8>, String>,
    /// False when the group has no certificate at all.
    present: bool,
    tpm_mac: Option<String>,
    fields: BTreeMap<String, String>,
}

/// A `<group>` being read.
#[derive(Default)]
struct Group {
    tpm_mac: Option<String>,
    fields: BTreeMap<String, String>,
    certs: Vec<Result<Vec<u8>, String>>,
    /// Depth of the open `<binaryhex>` element, if one is open.
    in_binaryhex: Option<usize>,
}

struct XmlGroups<R> {
    reader: Reader<Metered<R>>,
    buf: Vec<u8>,
    depth: usize,
    group: Option<Group>,
    groups_seen: u64,
    next_index: u64,
    pending: VecDeque<RawXml>,
    done: bool,
    max_entry: u64,
}

fn xml_entries<'a, R: BufRead + Send + 'a>(
    reader: R,
    limits: Limits,
) -> Result<Entries<'a>, ManifestError> {
    let metered = Metered {
        inner: reader,
        used: 0,
        limit: limits.max_entry_bytes,
        tripped: false,
    };
    let mut reader = Reader::from_reader(metered);
    let config = reader.config_mut();
    config.trim_text(false);
    config.check_end_names = true;
    config.expand_empty_elements = false;
    let groups = XmlGroups {
        reader,
        buf: Vec::with_capacity(16 * 1024),
        depth: 0,
        group: None,
        groups_seen: 0,
        next_index: 0,
        pending: VecDeque::new(),
        done: false,
        max_entry: limits.max_entry_bytes,
    };
    Ok(Entries::new(
        Supplier::Infineon,
        validate_in_order(groups, validate_xml),
    ))
}

impl<R: BufRead> Iterator for XmlGroups<R> {
    type Item = Result<RawXml, ManifestError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(raw) = self.pending.pop_front() {
                return Some(Ok(raw));
            }
            if self.done {
                return None;
            }
            if let Err(e) = self.step() {
                self.done = true;
                return Some(Err(e));
            }
        }
    }
}

impl<R: BufRead> XmlGroups<R> {
    /// Reads one event, updating the group being read; a finished group lands in `pending`.
    fn step(&mut self) -> Result<(), ManifestError> {
        if self.group.is_none() {
            // Outside a group every event is bounded on its own; inside, the whole group is.
            self.reader.get_mut().used = 0;
        }
        self.buf.clear();
        let event = match self.reader.read_event_into(&mut self.buf) {
            Ok(event) => event,
            Err(e) => {
                let at = self.next_index;
                if self.reader.get_ref().tripped {
                    return Err(ManifestError::LimitExceeded(format!(
                        "infineon entry {at}: an XML group or element is over max_entry_bytes \
                         ({} bytes)",
                        self.max_entry
                    )));
                }
                return Err(malformed(
                    Some(at),
                    format!("XML error near byte {}: {e}", self.reader.error_position()),
                ));
            }
        };
        match event {
            Event::Start(start) => {
                self.depth += 1;
                let depth = self.depth;
                if depth == 2 && start.local_name().as_ref() == "group" {
                    self.group = Some(Group::default());
                } else if let Some(group) = self.group.as_mut() {
                    let at = self.next_index;
                    group.open(&start, depth, at)?;
                }
            }
            Event::Empty(start) => {
                if self.depth == 1 && start.local_name().as_ref() == "group" {
                    self.groups_seen += 1;
                    self.finish_group(Group::default());
                } else if let Some(group) = self.group.as_mut() {
                    let at = self.next_index;
                    group.open(&start, self.depth + 1, at)?;
                    group.close(self.depth + 1);
                }
            }
            Event::End(_) => {
                if self.depth == 2
                    && let Some(group) = self.group.take()
                {
                    self.groups_seen += 1;
                    self.finish_group(group);
                } else if let Some(group) = self.group.as_mut() {
                    group.close(self.depth);
                }
                self.depth = self.depth.saturating_sub(1);
            }
            Event::Text(text) => push_text(&mut self.group, &text),
            Event::CData(data) => push_text(&mut self.group, &data),
            Event::GeneralRef(reference) => {
                if let Some(cert) = open_cert(&mut self.group) {
                    let resolved = match reference.resolve_char_ref() {
                        Ok(Some(c)) => Some(c.to_string()),
                        Ok(None) => resolve_predefined_entity(&reference).map(str::to_owned),
                        Err(_) => None,
                    };
                    match (resolved, cert.as_mut()) {
                        (Some(text), Ok(hex)) => push_hex(hex, &text),
                        (None, Ok(_)) => {
                            *cert = Err(format!(
                                "entity reference &{}; is not expanded (only the five standard \
                                 XML entities are)",
                                &*reference
                            ));
                        }
                        (_, Err(_)) => {}
                    }
                }
            }
            Event::Eof => {
                self.done = true;
                if self.depth > 0 || self.group.is_some() {
                    return Err(malformed(
                        Some(self.next_index),
                        "the XML document ends inside an element (truncated?)",
                    ));
                }
                if self.groups_seen == 0 {
                    return Err(malformed(None, "no <group> element under the XML root"));
                }
            }
            // A DTD is one inert event: its entities are never expanded.
            Event::DocType(_) | Event::Decl(_) | Event::PI(_) | Event::Comment(_) => {}
        }
        Ok(())
    }

    fn finish_group(&mut self, group: Group) {
        let number = self.groups_seen.saturating_sub(1);
        let Group {
            tpm_mac,
            fields,
            certs,
            ..
        } = group;
        if certs.is_empty() {
            self.pending.push_back(RawXml {
                index: self.next_index,
                group: number,
                hex: Ok(Vec::new()),
                present: false,
                tpm_mac,
                fields,
            });
            self.next_index += 1;
            return;
        }
        for hex in certs {
            self.pending.push_back(RawXml {
                index: self.next_index,
                group: number,
                hex,
                present: true,
                tpm_mac: tpm_mac.clone(),
                fields: fields.clone(),
            });
            self.next_index += 1;
        }
    }
}

/// The certificate text being collected, if a `<binaryhex>` is open.
fn open_cert(group: &mut Option<Group>) -> Option<&mut Result<Vec<u8>, String>> {
    let group = group.as_mut()?;
    group.in_binaryhex?;
    group.certs.last_mut()
}

fn push_text(group: &mut Option<Group>, text: &str) {
    if let Some(Ok(hex)) = open_cert(group) {
        push_hex(hex, text);
    }
}

/// Appends the non-whitespace characters of `text`; anything that is not a hex digit stays in,
/// so decoding reports it.
fn push_hex(hex: &mut Vec<u8>, text: &str) {
    hex.extend(text.bytes().filter(|b| !b.is_ascii_whitespace()));
}

impl Group {
    /// An element opened inside the group at `depth`.
    fn open(&mut self, start: &BytesStart<'_>, depth: usize, at: u64) -> Result<(), ManifestError> {
        match start.local_name().as_ref() {
            "binaryhex" if self.in_binaryhex.is_none() => {
                self.in_binaryhex = Some(depth);
                self.certs.push(Ok(Vec::new()));
            }
            "hex" => {
                let (name, value) = hex_attributes(start, at)?;
                if let Some(name) = name {
                    let value = value.unwrap_or_default();
                    if name == "TpmMAC" && self.tpm_mac.is_none() && !value.trim().is_empty() {
                        self.tpm_mac = Some(value.trim().to_owned());
                    }
                    self.fields.entry(name).or_insert(value);
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// The element at `depth` closed.
    fn close(&mut self, depth: usize) {
        if self.in_binaryhex == Some(depth) {
            self.in_binaryhex = None;
        }
    }
}

/// The `name` and `value` attributes of a `<hex>` element, standard entities resolved.
fn hex_attributes(
    start: &BytesStart<'_>,
    at: u64,
) -> Result<(Option<String>, Option<String>), ManifestError> {
    let mut name = None;
    let mut value = None;
    for attribute in start.attributes() {
        let attribute =
            attribute.map_err(|e| malformed(Some(at), format!("bad attribute in <hex>: {e}")))?;
        let key = attribute.key.local_name();
        let slot = match key.as_ref() {
            "name" => &mut name,
            "value" => &mut value,
            _ => continue,
        };
        let text = attribute
            .normalized_value(quick_xml::XmlVersion::Implicit1_0)
            .map_err(|e| {
                malformed(
                    Some(at),
                    format!(
                        "<hex> attribute value {:?} cannot be read ({e}); only the five standard \
                         XML entities are expanded",
                        attribute.value
                    ),
                )
            })?;
        *slot = Some(text.into_owned());
    }
    Ok((name, value))
}

fn validate_xml(raw: RawXml) -> Entry {
    let RawXml {
        index,
        group,
        hex,
        present,
        tpm_mac,
        fields,
    } = raw;
    let label = match &tpm_mac {
        Some(mac) => format!("group {group} (TpmMAC {mac})"),
        None => format!("group {group}"),
    };
    let hex = match hex {
        Ok(hex) if present && !hex.is_empty() => hex,
        Ok(_) => {
            let message = if present {
                format!("{label}: a <binaryhex> element is empty")
            } else {
                format!("{label} holds no <binaryhex> certificate")
            };
            return reject(index, ErrorName::MissingCertificate, message, tpm_mac);
        }
        Err(reason) => {
            let message = format!("{label}: {reason}");
            return reject(index, ErrorName::InvalidCertificate, message, tpm_mac);
        }
    };
    let der = match hex::decode(&hex) {
        Ok(der) => der,
        Err(e) => {
            let message = format!("{label}: <binaryhex> is not hex: {e}");
            return reject(index, ErrorName::InvalidCertificate, message, tpm_mac);
        }
    };
    let certificate = match Certificate::from_der(der) {
        Ok(certificate) => certificate,
        Err(reason) => {
            let message = format!("{label}: {reason}");
            return reject(index, ErrorName::InvalidCertificate, message, tpm_mac);
        }
    };
    accepted(index, certificate, tpm_mac, Vec::new(), fields)
}

fn accepted(
    index: u64,
    certificate: Certificate,
    device_id: Option<String>,
    chain: Vec<String>,
    fields: BTreeMap<String, String>,
) -> Entry {
    let certificate_pem = der_to_pem(&certificate.der);
    let Certificate { id, cn, .. } = certificate;
    let device_id = device_id
        .or_else(|| cn.clone())
        .unwrap_or_else(|| id.clone());
    Entry::Accepted(Accepted {
        index,
        certificate_id: id,
        certificate_pem,
        chain,
        device_id,
        cn,
        fields,
    })
}

/// A reader that fails once more than `limit` bytes were consumed since the last reset, so one
/// XML group or event cannot grow memory without bound.
struct Metered<R> {
    inner: R,
    used: u64,
    limit: u64,
    tripped: bool,
}

impl<R: BufRead> Read for Metered<R> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        let n = Read::read(&mut self.fill_buf()?, out)?;
        self.consume(n);
        Ok(n)
    }
}

impl<R: BufRead> BufRead for Metered<R> {
    fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
        if self.used > self.limit {
            self.tripped = true;
            return Err(std::io::Error::other("entry over max_entry_bytes"));
        }
        self.inner.fill_buf()
    }

    fn consume(&mut self, amount: usize) {
        self.used = self.used.saturating_add(amount as u64);
        self.inner.consume(amount);
    }
}

// ---------------------------------------------------------------------------------------------
// 7z bundle

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

fn bundle_entries<'a, R: BufRead>(
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
    let label = format!("{}, file {name}", archive.archive_name);
    let bytes = match content {
        Ok(bytes) => bytes,
        Err(reason) => {
            let message = format!("{label}: {reason}");
            return reject(index, ErrorName::InvalidCertificate, message, None);
        }
    };
    let Ok(text) = std::str::from_utf8(&bytes) else {
        let message = format!("{label}: not a PEM text (not UTF-8)");
        return reject(index, ErrorName::InvalidCertificate, message, None);
    };
    if text.trim().is_empty() {
        let message = format!("{label}: the file is empty");
        return reject(index, ErrorName::MissingCertificate, message, None);
    }
    let mut ders = pem_blocks(text);
    let certificate = match ders.next() {
        Some(Ok(der)) => Certificate::from_der(der),
        Some(Err(reason)) => Err(reason),
        None => Err("no PEM CERTIFICATE block".to_owned()),
    };
    let certificate = match certificate {
        Ok(certificate) => certificate,
        Err(reason) => {
            let message = format!("{label}: {reason}");
            return reject(index, ErrorName::InvalidCertificate, message, None);
        }
    };
    // Further blocks in the same file are the issuers the supplier ships with it.
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
                let message = format!("{label}: a further certificate block: {reason}");
                return reject(
                    index,
                    ErrorName::InvalidCertificate,
                    message,
                    certificate.cn,
                );
            }
        }
    }
    let file_name = base_name(&name);
    let stem = file_name
        .rsplit_once('.')
        .map_or(file_name, |(stem, _)| stem);
    let chip_id = stem
        .len()
        .checked_sub(slot.as_str().len() + 1)
        .and_then(|cut| {
            let (chip, suffix) = (stem.get(..cut)?, stem.get(cut..)?);
            let tag = suffix.strip_prefix('_')?;
            tag.eq_ignore_ascii_case(slot.as_str()).then_some(chip)
        })
        .unwrap_or(stem);
    let mut fields = BTreeMap::new();
    fields.insert("slot".to_owned(), slot.as_str().to_owned());
    fields.insert("chipId".to_owned(), chip_id.to_owned());
    fields.insert("fileName".to_owned(), file_name.to_owned());
    if let Some(reel) = archive.reel.clone() {
        fields.insert("reel".to_owned(), reel);
    }
    accepted(index, certificate, None, chain, fields)
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
    fn hex_text_keeps_only_non_whitespace() {
        let mut hex = Vec::new();
        push_hex(&mut hex, " 30 8\r\n2\tab ");
        assert_eq!(hex, b"3082ab");
    }

    #[test]
    fn a_huge_xml_event_hits_the_entry_limit() {
        let mut options = Options::default();
        options.limits.max_entry_bytes = 4096;
        let xml = format!(
            "<m><group><binaryhex>{}</binaryhex></group></m>",
            "a".repeat(100_000)
        );
        let result: Result<Vec<_>, _> = entries(xml.as_bytes(), &options).unwrap().collect();
        assert!(matches!(result, Err(ManifestError::LimitExceeded(_))));
    }
}
