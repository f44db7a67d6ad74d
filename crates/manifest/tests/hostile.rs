//! Hostile input for every supplier: truncation at many offsets, 100 MB fields streamed from a
//! lazy reader (never in memory here), deep JSON nesting, XML entity tricks, unbalanced CSV
//! quotes, 7z bombs and nesting, non-UTF-8 bytes, empty files, byte-order marks, CRLF, and the
//! same certificate twice in one manifest. Every case asserts the named outcome (a
//! [`ManifestError`] variant or an entry's [`ErrorName`]); none may panic.
//!
//! The 100 MB cases also measure the process's peak RSS (`/proc/self/clear_refs`, Linux): they
//! take [`MEMORY`] exclusively, every other test here takes it shared, so the peak is theirs.

// Test code: a failed expectation should panic with its message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufReader, Cursor, Read};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard};

use aws_lc_rs::digest::{SHA256, digest};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair};
use serde_json::{Value, json};
use sevenz_rust2::{ArchiveEntry, ArchiveWriter, SourceReader};
use thingpress_manifest::{
    Entry, ErrorKind, ErrorName, Limits, ManifestError, Options, Supplier, Verifiers, read_entries,
};

const MICROCHIP: &[u8] = include_bytes!("../../../tests/fixtures/upstream/ECC608C-TNGTLSU-B.json");
const BUNDLE: &[u8] = include_bytes!("../../../tests/fixtures/upstream/manifest-infineon.7z");
const ESPRESSIF: &[u8] = include_bytes!("../../../tests/fixtures/upstream/manifest-espressif.csv");
const PEM_LINES: &[u8] = include_bytes!("../../../tests/fixtures/upstream/certificates_test.txt");
const SINGLE_PEM: &[u8] = include_bytes!("../../../tests/fixtures/upstream/single.pem");

const MB: u64 = 1024 * 1024;
/// The size of the "huge field" cases.
const HUGE: u64 = 100 * MB;
/// Peak RSS growth allowed while a huge case streams (far below the 100 MB it streams).
const MAX_PEAK_GROWTH: u64 = 48 * MB;

/// Huge cases hold it exclusively while they measure peak RSS; every other test holds it shared.
static MEMORY: RwLock<()> = RwLock::new(());

fn shared() -> RwLockReadGuard<'static, ()> {
    MEMORY.read().unwrap_or_else(PoisonError::into_inner)
}

// ---- running a manifest ---------------------------------------------------------------------

/// How reading a manifest ended.
#[derive(Debug)]
enum Outcome {
    /// `read_entries` refused it at once.
    Refused(ManifestError),
    /// The entries read, and the error that ended the stream early, if any.
    Read {
        entries: Vec<Entry>,
        error: Option<ManifestError>,
    },
}

impl Outcome {
    fn entries(&self) -> &[Entry] {
        match self {
            Outcome::Refused(_) => &[],
            Outcome::Read { entries, .. } => entries,
        }
    }

    fn error(&self) -> Option<&ManifestError> {
        match self {
            Outcome::Refused(e) => Some(e),
            Outcome::Read { error, .. } => error.as_ref(),
        }
    }

    /// The accepted entries as (index, certificate id).
    fn accepted(&self) -> Vec<(u64, String)> {
        self.entries()
            .iter()
            .filter_map(|e| match e {
                Entry::Accepted(a) => Some((a.index, a.certificate_id.clone())),
                Entry::Rejected(_) => None,
            })
            .collect()
    }

    /// The rejection names, in order.
    fn rejected(&self) -> Vec<ErrorName> {
        self.entries()
            .iter()
            .filter_map(|e| match e {
                Entry::Rejected(r) => Some(r.error),
                Entry::Accepted(_) => None,
            })
            .collect()
    }

    /// The whole manifest read cleanly.
    fn clean(&self) -> &[Entry] {
        match self {
            Outcome::Read {
                entries,
                error: None,
            } => entries,
            other => panic!("expected a clean read, got {other:?}"),
        }
    }
}

/// Reads a whole manifest, checking the invariants every outcome must keep: entries come in
/// index order, rejections carry entry-kind names and a message, accepted ids are SHA-256 hex.
/// A panic is caught and re-raised naming the case.
fn read_with(reader: impl std::io::BufRead + Send, options: &Options, case: &str) -> Outcome {
    let outcome = catch_unwind(AssertUnwindSafe(|| match read_entries(reader, options) {
        Err(e) => Outcome::Refused(e),
        Ok(stream) => {
            let mut entries = Vec::new();
            let mut error = None;
            for item in stream {
                match item {
                    Ok(entry) => entries.push(entry),
                    Err(e) => {
                        error = Some(e);
                        break;
                    }
                }
            }
            Outcome::Read { entries, error }
        }
    }))
    .unwrap_or_else(|_| panic!("{case}: the parser panicked"));
    for (i, entry) in outcome.entries().iter().enumerate() {
        assert_eq!(entry.index(), i as u64, "{case}: entries out of order");
        match entry {
            Entry::Accepted(a) => {
                assert_eq!(a.certificate_id.len(), 64, "{case}");
                assert!(a.certificate_pem.starts_with("-----BEGIN CERTIFICATE-----"));
            }
            Entry::Rejected(r) => {
                assert_eq!(r.error.kind(), ErrorKind::Entry, "{case}: {r:?}");
                assert!(!r.message.is_empty(), "{case}: {r:?}");
            }
        }
    }
    if let Some(error) = outcome.error() {
        assert!(!error.to_string().is_empty(), "{case}");
    }
    outcome
}

fn read(bytes: &[u8], supplier: Supplier, case: &str) -> Outcome {
    read_with(bytes, &options(supplier), case)
}

fn options(supplier: Supplier) -> Options {
    Options {
        supplier,
        ..Options::default()
    }
}

fn is_malformed(error: Option<&ManifestError>) -> bool {
    matches!(error, Some(ManifestError::Malformed { .. }))
}

fn is_limit(error: Option<&ManifestError>) -> bool {
    matches!(error, Some(ManifestError::LimitExceeded(_)))
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(digest(&SHA256, bytes).as_ref())
}

/// LF line endings (the samples mix them).
fn lf(bytes: &[u8]) -> Vec<u8> {
    String::from_utf8(bytes.to_vec())
        .unwrap()
        .replace("\r\n", "\n")
        .into_bytes()
}

fn crlf(bytes: &[u8]) -> Vec<u8> {
    String::from_utf8(lf(bytes))
        .unwrap()
        .replace('\n', "\r\n")
        .into_bytes()
}

fn with_bom(bytes: &[u8]) -> Vec<u8> {
    let mut out = b"\xEF\xBB\xBF".to_vec();
    out.extend_from_slice(bytes);
    out
}

// ---- generated manifests --------------------------------------------------------------------

/// A self-signed EC device certificate: (DER, PEM, key).
fn certificate(cn: &str) -> (Vec<u8>, String, KeyPair) {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    params.distinguished_name = dn;
    let cert = params.self_signed(&key).unwrap();
    (cert.der().to_vec(), cert.pem(), key)
}

/// An Infineon XML manifest: one group per (TpmMAC, certificate DER).
fn infineon_xml(groups: &[(&str, &[u8])]) -> Vec<u8> {
    let mut xml = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<manifest>\n");
    for (mac, der) in groups {
        xml.push_str(&format!(
            "  <group>\n    <hex name=\"TpmMAC\" value=\"{mac}\"/>\n    <binaryhex name=\"cert\">\n      {}\n    </binaryhex>\n  </group>\n",
            hex::encode_upper(der)
        ));
    }
    xml.push_str("</manifest>\n");
    xml.into_bytes()
}

fn small_xml() -> (Vec<u8>, Vec<String>) {
    let certs: Vec<_> = (0..3).map(|i| certificate(&format!("xml-{i}"))).collect();
    let macs = ["0A0B0C0D", "0A0B0C0E", "0A0B0C0F"];
    let groups: Vec<(&str, &[u8])> = macs
        .iter()
        .zip(&certs)
        .map(|(mac, (der, _, _))| (*mac, der.as_slice()))
        .collect();
    let ids = certs.iter().map(|(der, _, _)| sha256_hex(der)).collect();
    (infineon_xml(&groups), ids)
}

/// A solid 7z archive of the given files.
fn seven_z(files: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let mut writer = ArchiveWriter::new(Cursor::new(Vec::new())).unwrap();
    let entries = files
        .iter()
        .map(|(n, _)| ArchiveEntry::new_file(n))
        .collect();
    let readers = files
        .iter()
        .map(|(_, data)| SourceReader::new(Cursor::new(data.clone())))
        .collect();
    writer.push_archive_entries(entries, readers).unwrap();
    writer.finish().unwrap().into_inner()
}

/// An OPTIGA Trust M bundle whose E0E0 inner archive holds `files`.
fn bundle(files: &[(&str, Vec<u8>)]) -> Vec<u8> {
    seven_z(&[
        ("REEL_0000-guid_E0E0_Certs.7z", seven_z(files)),
        ("README.txt", b"read me".to_vec()),
    ])
}

/// A Microchip JWS signer for generated entries (ES256), with its verifier set.
struct Signer {
    key: EcdsaKeyPair,
    x5t: String,
    verifiers: Verifiers,
}

impl Signer {
    fn new() -> Signer {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "Hostile Test Signer");
        let cert = params.self_signed(&key).unwrap();
        Signer {
            key: EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, key.serialized_der())
                .unwrap(),
            x5t: URL_SAFE_NO_PAD.encode(digest(&SHA256, cert.der()).as_ref()),
            verifiers: Verifiers::from_pem(&cert.pem()).unwrap(),
        }
    }

    /// A flattened JWS entry whose payload is exactly `payload` (any bytes).
    fn entry(&self, unique_id: &str, payload: &[u8]) -> Value {
        let protected =
            URL_SAFE_NO_PAD.encode(json!({"alg": "ES256", "x5t#S256": self.x5t}).to_string());
        let payload = URL_SAFE_NO_PAD.encode(payload);
        let signature = self
            .key
            .sign(
                &SystemRandom::new(),
                format!("{protected}.{payload}").as_bytes(),
            )
            .unwrap();
        json!({
            "protected": protected,
            "payload": payload,
            "header": {"uniqueId": unique_id},
            "signature": URL_SAFE_NO_PAD.encode(signature.as_ref()),
        })
    }

    /// A good payload for a device certificate.
    fn payload(unique_id: &str, der: &[u8], key: &KeyPair) -> Vec<u8> {
        let raw = key.public_key_raw();
        json!({
            "uniqueId": unique_id,
            "publicKeySet": {"keys": [{
                "kid": "0", "kty": "EC", "crv": "P-256",
                "x": URL_SAFE_NO_PAD.encode(&raw[1..33]),
                "y": URL_SAFE_NO_PAD.encode(&raw[33..]),
                "x5c": [STANDARD.encode(der)],
            }]}
        })
        .to_string()
        .into_bytes()
    }

    fn options(&self) -> Options {
        Options {
            supplier: Supplier::Microchip,
            verifiers: self.verifiers.clone(),
            ..Options::default()
        }
    }
}

// ---- truncation -----------------------------------------------------------------------------

/// Offsets to cut at: every one of the first and last 64 bytes, and about `spread` in between.
fn cut_points(len: usize, spread: usize) -> Vec<usize> {
    let step = (len / spread.max(1)).max(1);
    let mut points: Vec<usize> = (0..len.min(64))
        .chain((0..len).step_by(step))
        .chain(len.saturating_sub(64)..len)
        .collect();
    points.sort_unstable();
    points.dedup();
    points
}

/// Cuts `full` at many offsets: every cut reads to a named outcome, whatever it accepts was
/// accepted at the same index from the whole file, and `expect_error` says whether a cut must
/// end in [`ManifestError::Malformed`] (formats with a closing delimiter) or may end cleanly.
fn truncate_everywhere(full: &[u8], supplier: Supplier, spread: usize, expect_error: bool) {
    let whole = read(full, supplier, "the whole file");
    let whole_accepted = whole.accepted();
    assert!(!whole_accepted.is_empty(), "{supplier}: the sample imports");
    for cut in cut_points(full.len(), spread) {
        let case = format!("{supplier} cut at {cut} of {}", full.len());
        let outcome = read(&full[..cut], supplier, &case);
        for accepted in outcome.accepted() {
            assert!(
                whole_accepted.contains(&accepted),
                "{case}: accepted {accepted:?}, which the whole file does not"
            );
        }
        match outcome.error() {
            Some(ManifestError::Malformed { supplier: s, .. }) => assert_eq!(*s, supplier),
            Some(other) => panic!("{case}: {other:?} instead of Malformed"),
            None => assert!(!expect_error, "{case}: a truncated file read cleanly"),
        }
    }
}

#[test]
fn truncated_microchip_manifests_are_malformed() {
    let _memory = shared();
    // Trailing whitespace after `]` may go without the array losing its end.
    let full = MICROCHIP.trim_ascii_end();
    truncate_everywhere(full, Supplier::Microchip, 300, true);
}

#[test]
fn truncated_infineon_xml_is_malformed() {
    let _memory = shared();
    let (xml, _) = small_xml();
    // The end tag closes the document; only the newline after it may go.
    truncate_everywhere(xml.trim_ascii_end(), Supplier::Infineon, 400, true);
}

#[test]
fn truncated_infineon_bundles_are_malformed() {
    let _memory = shared();
    truncate_everywhere(BUNDLE, Supplier::Infineon, 120, true);
}

#[test]
fn truncated_espressif_and_pem_manifests_keep_every_entry_named() {
    let _memory = shared();
    truncate_everywhere(ESPRESSIF, Supplier::Espressif, 1000, false);
    truncate_everywhere(SINGLE_PEM, Supplier::Pem, 1300, false);
    truncate_everywhere(PEM_LINES, Supplier::Pem, 200, false);
    // Cut inside a certificate, the last entry is rejected by name, never dropped.
    let cut = read(&SINGLE_PEM[..SINGLE_PEM.len() / 2], Supplier::Pem, "half");
    assert_eq!(cut.rejected(), vec![ErrorName::InvalidCertificate]);
    let line = PEM_LINES.iter().position(|&b| b == b'\n').unwrap();
    let cut = read(
        &PEM_LINES[..line * 3 / 2],
        Supplier::Pem,
        "a line and a half",
    );
    assert_eq!(cut.accepted().len(), 1);
    assert_eq!(cut.rejected(), vec![ErrorName::InvalidCertificate]);
}

#[test]
fn truncation_with_auto_detection_is_named_too() {
    let _memory = shared();
    for sample in [MICROCHIP, BUNDLE, ESPRESSIF, PEM_LINES] {
        for cut in cut_points(sample.len(), 40) {
            let outcome = read(
                &sample[..cut],
                Supplier::Auto,
                &format!("auto cut at {cut}"),
            );
            assert!(
                matches!(
                    outcome.error(),
                    None | Some(ManifestError::Malformed { .. } | ManifestError::UnknownFormat(_))
                ),
                "cut at {cut}: {outcome:?}"
            );
        }
    }
}

// ---- 100 MB fields --------------------------------------------------------------------------

/// `prefix`, then `unit` `count` times, then `suffix`, made up as it is read (never held whole);
/// counts the bytes handed out.
struct Lazy {
    prefix: Vec<u8>,
    block: Vec<u8>,
    body: u64,
    suffix: Vec<u8>,
    position: u64,
    served: Arc<AtomicU64>,
}

impl Lazy {
    fn new(prefix: &[u8], unit: &[u8], count: u64, suffix: &[u8]) -> (Lazy, Arc<AtomicU64>) {
        let repeat = (64 * 1024 / unit.len()).max(1);
        let served = Arc::new(AtomicU64::new(0));
        let lazy = Lazy {
            prefix: prefix.to_vec(),
            block: unit.repeat(repeat),
            body: unit.len() as u64 * count,
            suffix: suffix.to_vec(),
            position: 0,
            served: Arc::clone(&served),
        };
        (lazy, served)
    }

    fn len(&self) -> u64 {
        self.prefix.len() as u64 + self.body + self.suffix.len() as u64
    }
}

impl Read for Lazy {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        let prefix = self.prefix.len() as u64;
        let source: &[u8] = if self.position < prefix {
            &self.prefix[self.position as usize..]
        } else if self.position < prefix + self.body {
            let offset = self.position - prefix;
            let within = (offset % self.block.len() as u64) as usize;
            let left = (self.body - offset).min((self.block.len() - within) as u64) as usize;
            &self.block[within..within + left]
        } else {
            let at = (self.position - prefix - self.body) as usize;
            self.suffix.get(at..).unwrap_or_default()
        };
        let n = source.len().min(out.len());
        out[..n].copy_from_slice(&source[..n]);
        self.position += n as u64;
        self.served.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// Peak RSS (VmHWM, bytes) growth while `run` runs, if this kernel can reset the peak.
fn peak_growth<T>(run: impl FnOnce() -> T) -> (T, Option<u64>) {
    let _exclusive = MEMORY.write().unwrap_or_else(PoisonError::into_inner);
    let status = |field: &str| -> Option<u64> {
        let text = std::fs::read_to_string("/proc/self/status").ok()?;
        let line = text.lines().find(|l| l.starts_with(field))?;
        let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kb * 1024)
    };
    let before = status("VmRSS:");
    let reset = std::fs::write("/proc/self/clear_refs", "5").is_ok();
    let out = run();
    let growth = match (reset, before, status("VmHWM:")) {
        (true, Some(before), Some(peak)) => Some(peak.saturating_sub(before)),
        _ => None,
    };
    (out, growth)
}

/// Streams a 100 MB manifest; returns the outcome and how many bytes were read. Peak memory
/// must stay far below the manifest's size.
fn huge(
    supplier: Supplier,
    limits: Limits,
    prefix: &str,
    unit: &[u8],
    suffix: &str,
    case: &str,
) -> (Outcome, u64) {
    let count = HUGE / unit.len() as u64;
    let (lazy, served) = Lazy::new(prefix.as_bytes(), unit, count, suffix.as_bytes());
    assert!(lazy.len() >= HUGE);
    let options = Options {
        supplier,
        limits,
        ..Options::default()
    };
    let (outcome, growth) =
        peak_growth(|| read_with(BufReader::with_capacity(64 * 1024, lazy), &options, case));
    if let Some(growth) = growth {
        assert!(
            growth < MAX_PEAK_GROWTH,
            "{case}: peak RSS grew by {} MiB while streaming 100 MiB",
            growth / MB
        );
    } else {
        eprintln!("{case}: peak RSS not measurable here (no /proc/self/clear_refs)");
    }
    (outcome, served.load(Ordering::Relaxed))
}

/// Bytes a bounded read may pull: the entry limit plus a few reader buffers.
const BOUNDED_READ: u64 = 1024 * 1024 + 512 * 1024;

#[test]
fn a_100_mb_json_field_stops_at_the_entry_limit() {
    let limits = Limits::default();
    let (outcome, served) = huge(
        Supplier::Microchip,
        limits,
        r#"[{"protected":"e30","signature":"","payload":""#,
        b"A",
        r#""}]"#,
        "microchip payload",
    );
    assert!(is_limit(outcome.error()), "{outcome:?}");
    assert!(outcome.entries().is_empty());
    assert!(served <= BOUNDED_READ, "read {served} bytes");
    // The same after a good first entry: the limit names the second.
    let first = String::from_utf8(MICROCHIP.to_vec()).unwrap();
    let body = first.trim_ascii_end().strip_suffix(']').unwrap();
    let (outcome, served) = huge(
        Supplier::Microchip,
        limits,
        &format!("{body},{{\"header\":{{\"uniqueId\":\""),
        b"\\u0041",
        "\"}}]",
        "microchip header after ten entries",
    );
    let error = outcome.error().unwrap().to_string();
    assert!(error.contains("entry 10"), "{error}");
    assert!(is_limit(outcome.error()));
    assert_eq!(outcome.accepted().len(), 10);
    assert!(served <= MICROCHIP.len() as u64 + BOUNDED_READ);
}

#[test]
fn a_100_mb_xml_text_attribute_or_doctype_stops_at_the_entry_limit() {
    let limits = Limits::default();
    for (prefix, unit, suffix, case) in [
        (
            "<m><group><hex name=\"TpmMAC\" value=\"01\"/><binaryhex>",
            &b"0"[..],
            "</binaryhex></group></m>",
            "xml certificate text",
        ),
        (
            "<m><group><hex name=\"TpmMAC\" value=\"",
            b"a",
            "\"/></group></m>",
            "xml attribute",
        ),
        (
            "<!DOCTYPE m [",
            b"<!ENTITY a \"b\">",
            "]><m><group/></m>",
            "xml doctype",
        ),
        ("<m><!--", b"x", "--><group/></m>", "xml comment"),
        (
            "<m><group><binaryhex><![CDATA[",
            b"30",
            "]]></binaryhex></group></m>",
            "xml cdata",
        ),
    ] {
        let (outcome, served) = huge(Supplier::Infineon, limits, prefix, unit, suffix, case);
        assert!(is_limit(outcome.error()), "{case}: {outcome:?}");
        assert!(served <= BOUNDED_READ, "{case}: read {served} bytes");
    }
}

#[test]
fn a_100_mb_csv_field_stops_at_the_entry_limit() {
    let limits = Limits::default();
    for (prefix, suffix, case) in [
        ("MAC,cert\nAA,\"", "\"\n", "quoted csv field"),
        ("MAC,cert\nAA,", "\n", "unquoted csv field"),
        ("MAC,cert\nAA,\"unbalanced\n", "\n", "unbalanced quote"),
    ] {
        let (outcome, served) = huge(Supplier::Espressif, limits, prefix, b"A", suffix, case);
        assert!(is_limit(outcome.error()), "{case}: {outcome:?}");
        assert!(served <= BOUNDED_READ, "{case}: read {served} bytes");
    }
    // A 100 MB header row.
    let (outcome, served) = huge(
        Supplier::Espressif,
        limits,
        "MAC,",
        b"x",
        ",cert\n",
        "csv header",
    );
    assert!(is_limit(outcome.error()), "{outcome:?}");
    assert!(served <= BOUNDED_READ);
}

#[test]
fn a_100_mb_pem_line_or_block_is_one_rejected_entry_in_bounded_memory() {
    let limits = Limits::default();
    let (der, pem, _) = certificate("after-the-flood");
    let (before, _, _) = certificate("before-the-flood");
    let line_64 = &b"QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFB\n"[..];
    // PEM streams past a bad entry (the next one may be good), so it reads everything, but
    // keeps at most the entry limit of it.
    let cases = [
        (
            format!("{}\n", STANDARD.encode(&before)),
            &b"A"[..],
            format!("\n{}\n", STANDARD.encode(&der)),
            3,
            "one 100 MB base64 line",
        ),
        (
            "-----BEGIN CERTIFICATE-----\n".to_owned(),
            line_64,
            format!("-----END CERTIFICATE-----\n{pem}"),
            2,
            "a 100 MB certificate block of 64-column lines",
        ),
        (
            format!("{pem}-----BEGIN PRIVATE KEY-----\n"),
            line_64,
            "-----END PRIVATE KEY-----\n".to_owned(),
            1,
            "a 100 MB private key block (skipped unread)",
        ),
    ];
    for (prefix, unit, suffix, count, case) in &cases {
        let (outcome, served) = huge(Supplier::Pem, limits, prefix, unit, suffix, case);
        assert!(outcome.error().is_none(), "{case}: {outcome:?}");
        assert!(
            served >= HUGE,
            "{case}: the stream goes on after the bad entry"
        );
        let entries = outcome.entries();
        assert_eq!(entries.len(), *count, "{case}");
        if case.contains("private key") {
            assert_eq!(outcome.accepted().len(), 1, "{case}");
            continue;
        }
        assert_eq!(outcome.rejected(), vec![ErrorName::InvalidCertificate]);
        let message = entries
            .iter()
            .find_map(|e| match e {
                Entry::Rejected(r) => Some(r.message.clone()),
                Entry::Accepted(_) => None,
            })
            .unwrap();
        assert!(message.contains("entry limit"), "{case}: {message}");
        assert!(message.len() < 300, "{case}: nothing of it echoed");
        assert!(
            outcome
                .accepted()
                .iter()
                .any(|(_, id)| *id == sha256_hex(&der)),
            "{case}: the certificate after it is read"
        );
    }
}

#[test]
fn a_100_mb_7z_bundle_over_the_archive_limit_is_refused_after_the_limit() {
    let limits = Limits {
        max_archive_bytes: 8 * MB,
        ..Limits::default()
    };
    let mut magic = vec![0x37, 0x7A, 0xBC, 0xAF, 0x27, 0x1C];
    magic.extend_from_slice(&[0, 4]);
    let count = HUGE;
    let (lazy, served) = Lazy::new(&magic, b"\0", count, b"");
    let options = Options {
        supplier: Supplier::Auto,
        limits,
        ..Options::default()
    };
    let (outcome, growth) = peak_growth(|| {
        read_with(
            BufReader::new(lazy),
            &options,
            "7z bundle of 100 MB, 8 MB limit",
        )
    });
    assert!(is_limit(outcome.error()), "{outcome:?}");
    assert!(
        outcome
            .error()
            .unwrap()
            .to_string()
            .contains("max_archive_bytes")
    );
    assert!(served.load(Ordering::Relaxed) <= 8 * MB + 64 * 1024);
    if let Some(growth) = growth {
        assert!(growth < MAX_PEAK_GROWTH, "grew {} MiB", growth / MB);
    }
}

// ---- deep nesting ---------------------------------------------------------------------------

#[test]
fn deeply_nested_json_is_an_error_not_a_stack_overflow() {
    let _memory = shared();
    let depth = 100_000;
    let nested = |open: &str, close: &str| format!("{}{}", open.repeat(depth), close.repeat(depth));
    let only_message = |outcome: &Outcome| -> String {
        let entries = outcome.clean();
        assert_eq!(entries.len(), 1, "{outcome:?}");
        match &entries[0] {
            Entry::Rejected(r) => {
                assert_eq!(r.error, ErrorName::InvalidSignature);
                r.message.clone()
            }
            Entry::Accepted(a) => panic!("accepted {a:?}"),
        }
    };

    // Where the entry wants a string, or in a field it ignores: serde_json skips nesting
    // without recursing, and the entry is rejected for its shape.
    let manifest = format!(r#"[{{"payload":{}}}]"#, nested("[", "]"));
    let outcome = read(manifest.as_bytes(), Supplier::Microchip, "nested payload");
    assert!(only_message(&outcome).contains("invalid type: sequence"));
    let manifest = format!(
        r#"[{{"a":{}null{}}}]"#,
        r#"{"a":"#.repeat(depth),
        "}".repeat(depth)
    );
    let outcome = read(manifest.as_bytes(), Supplier::Microchip, "nested objects");
    assert!(only_message(&outcome).contains("missing field `payload`"));

    // Nesting past the entry limit ends at the limit, before any parsing.
    let manifest = format!(r#"[{{"payload":{}}}]"#, nested("[", "]").repeat(8));
    let outcome = read(
        manifest.as_bytes(),
        Supplier::Microchip,
        "nested past the limit",
    );
    assert!(is_limit(outcome.error()), "{outcome:?}");

    // Arrays instead of entry objects: the manifest is malformed at entry 0.
    for supplier in [Supplier::Microchip, Supplier::Auto] {
        let outcome = read(nested("[", "]").as_bytes(), supplier, "nested arrays");
        assert!(is_malformed(outcome.error()), "{outcome:?}");
        assert!(outcome.error().unwrap().to_string().contains("entry 0"));
    }

    // Inside the base64url protected header: that entry's problem alone.
    let signer = Signer::new();
    let (der, _, key) = certificate("nested-neighbour");
    let good = signer.entry("01", &Signer::payload("01", &der, &key));
    let header = URL_SAFE_NO_PAD.encode(format!(r#"{{"alg":{}}}"#, nested("[", "]")));
    let bad_header = json!({"protected": header, "payload": "", "signature": "",
                            "header": {"uniqueId": "02"}});
    // Inside a free-form field of the signed payload: verified first, then serde_json's
    // recursion limit (128) refuses it by name instead of overflowing the stack.
    let deep_payload = format!(r#"{{"uniqueId":"03","version":{}}}"#, nested("[", "]"));
    let bad_payload = signer.entry("03", deep_payload.as_bytes());
    let manifest = serde_json::to_vec(&json!([bad_header, bad_payload, good])).unwrap();
    let outcome = read_with(manifest.as_slice(), &signer.options(), "nested in the JWS");
    let entries = outcome.clean();
    assert_eq!(
        outcome.rejected(),
        vec![ErrorName::InvalidSignature, ErrorName::MissingCertificate]
    );
    let messages: Vec<&str> = entries
        .iter()
        .filter_map(|e| match e {
            Entry::Rejected(r) => Some(r.message.as_str()),
            Entry::Accepted(_) => None,
        })
        .collect();
    assert!(
        messages[0].contains("protected header is not a JWS header"),
        "{}",
        messages[0]
    );
    assert!(messages[1].contains("recursion limit"), "{}", messages[1]);
    assert_eq!(outcome.accepted(), vec![(2, sha256_hex(&der))]);
}

// ---- XML entity tricks ----------------------------------------------------------------------

#[test]
fn xml_entities_are_never_expanded_or_fetched() {
    let _memory = shared();
    let (der, _, _) = certificate("entity-neighbour");
    let good = format!(
        "<group><hex name=\"TpmMAC\" value=\"AA\"/><binaryhex>{}</binaryhex></group>",
        hex::encode(&der)
    );
    let laughs = (1..10)
        .map(|i| {
            format!(
                "<!ENTITY lol{i} \"{}\">",
                format!("&lol{};", i - 1).repeat(10)
            )
        })
        .collect::<String>();
    let dtd = format!(
        "<!DOCTYPE m [<!ENTITY lol0 \"lol\">{laughs}\
         <!ENTITY passwd SYSTEM \"file:///etc/passwd\">\
         <!ENTITY remote SYSTEM \"http://169.254.169.254/latest/meta-data/\">\
         <!ENTITY % param SYSTEM \"http://example.invalid/evil.dtd\"> %param;]>"
    );
    // In certificate text: that entry is invalid, the rest imports.
    for entity in ["lol9", "passwd", "remote", "undeclared"] {
        let xml = format!(
            "{dtd}<m><group><hex name=\"TpmMAC\" value=\"BAD\"/><binaryhex>30&{entity};</binaryhex></group>{good}</m>"
        );
        let outcome = read(xml.as_bytes(), Supplier::Infineon, entity);
        let entries = outcome.clean();
        assert_eq!(
            outcome.rejected(),
            vec![ErrorName::InvalidCertificate],
            "{entity}"
        );
        let Entry::Rejected(r) = &entries[0] else {
            unreachable!()
        };
        assert!(
            r.message.contains("not expanded"),
            "{entity}: {}",
            r.message
        );
        assert!(!r.message.contains("root:"), "{entity}: a file was read");
        assert!(r.message.len() < 300, "{entity}: {}", r.message);
        assert_eq!(r.device_id.as_deref(), Some("BAD"));
        assert_eq!(outcome.accepted(), vec![(1, sha256_hex(&der))]);
    }
    // In an attribute: the document cannot be read as written; malformed, nothing expanded.
    for entity in ["lol9", "passwd", "undeclared"] {
        let xml =
            format!("{dtd}<m>{good}<group><hex name=\"TpmMAC\" value=\"&{entity};\"/></group></m>");
        let outcome = read(xml.as_bytes(), Supplier::Infineon, entity);
        let error = outcome.error().map(ToString::to_string).unwrap_or_default();
        assert!(is_malformed(outcome.error()), "{entity}: {outcome:?}");
        assert!(error.len() < 600 && !error.contains("root:"), "{error}");
    }
    // Character references and the five standard entities are fine where text is expected.
    let xml = format!(
        "<m><group><hex name=\"TpmMAC\" value=\"&#65;&amp;B\"/><binaryhex>&#x33;{}</binaryhex></group></m>",
        hex::encode(&der).get(1..).unwrap()
    );
    let outcome = read(xml.as_bytes(), Supplier::Infineon, "char refs");
    outcome.clean();
    assert_eq!(outcome.accepted(), vec![(0, sha256_hex(&der))]);
    assert!(matches!(&outcome.entries()[0], Entry::Accepted(a) if a.device_id == "A&B"));
}

// ---- CSV quoting ----------------------------------------------------------------------------

#[test]
fn unbalanced_csv_quotes_reject_by_name_and_never_import_under_the_wrong_mac() {
    let _memory = shared();
    let certs: Vec<_> = (0..3).map(|i| certificate(&format!("csv-{i}"))).collect();
    let pem = |i: usize| certs[i].1.clone();
    let id = |i: usize| sha256_hex(&certs[i].0);
    // A quote opened and never closed swallows the rest of the file into one field.
    let csv = format!(
        "MAC,cert\nM0,\"{}\"\nM1,\"{}\nM2,\"{}\"\n",
        pem(0),
        pem(1),
        pem(2)
    );
    let outcome = read(csv.as_bytes(), Supplier::Espressif, "unclosed quote");
    outcome.clean();
    assert_eq!(outcome.accepted(), vec![(0, id(0))]);
    assert!(!outcome.rejected().is_empty());
    for entry in outcome.entries() {
        if let Entry::Accepted(a) = entry {
            assert_eq!(a.device_id, "M0");
        }
    }
    // A stray quote inside an unquoted field is kept as text (csv's lenient RFC 4180), and
    // text after a closing quote joins the field: no column shifts, every row keeps its MAC.
    let csv = format!(
        "MAC,cert\nM\"0,\"{}\"\nM1,\"{}\"x\"\nM2,\"{}\"\n",
        pem(0),
        pem(1),
        pem(2)
    );
    let outcome = read(csv.as_bytes(), Supplier::Espressif, "stray quotes");
    outcome.clean();
    assert_eq!(outcome.accepted(), vec![(0, id(0)), (1, id(1)), (2, id(2))]);
    let macs: Vec<&str> = outcome
        .entries()
        .iter()
        .filter_map(|e| match e {
            Entry::Accepted(a) => Some(a.device_id.as_str()),
            Entry::Rejected(_) => None,
        })
        .collect();
    assert_eq!(macs, ["M\"0", "M1", "M2"]);
    // A quote in the header row.
    let outcome = read(b"\"MAC,cert\nAA,x\n", Supplier::Espressif, "quoted header");
    assert!(is_malformed(outcome.error()), "{outcome:?}");
}

// ---- 7z bombs and nesting -------------------------------------------------------------------

/// Infineon options with 7z bounds small enough to hit: 100 files, 16 MiB, 64 KiB entries.
fn tight_7z() -> Options {
    Options {
        supplier: Supplier::Infineon,
        limits: Limits {
            max_archive_bytes: 16 * MB,
            max_archive_entries: 100,
            max_entry_bytes: 64 * 1024,
        },
        ..Options::default()
    }
}

#[test]
fn seven_z_bombs_and_nesting_are_bounded_and_named() {
    let _memory = shared();
    let (_, pem, _) = certificate("7z-device");

    // Declared sizes: 64 MiB of zeros packs into a few KiB; refused before extraction.
    let zeros = vec![0u8; 64 * MB as usize];
    let bomb = bundle(&[
        ("A_E0E0.pem", pem.clone().into_bytes()),
        ("Z_E0E0.pem", zeros),
    ]);
    assert!(bomb.len() < 256 * 1024, "{}", bomb.len());
    let outcome = read_with(bomb.as_slice(), &tight_7z(), "declared size");
    assert!(is_limit(outcome.error()), "{outcome:?}");
    assert!(outcome.entries().is_empty(), "nothing extracted first");

    // Many entries: refused by count before any is extracted.
    let names: Vec<String> = (0..500).map(|i| format!("{i:04}_E0E0.pem")).collect();
    let many: Vec<(&str, Vec<u8>)> = names.iter().map(|n| (n.as_str(), Vec::new())).collect();
    let outcome = read_with(bundle(&many).as_slice(), &tight_7z(), "many entries");
    assert!(is_limit(outcome.error()), "{outcome:?}");
    assert!(
        outcome
            .error()
            .unwrap()
            .to_string()
            .contains("max_archive_entries")
    );
}

#[test]
fn seven_z_nested_archives_and_bad_files_are_named_entries() {
    let _memory = shared();
    let (der, pem, _) = certificate("7z-device");

    // Archives in archives: a nested 7z where a PEM belongs is one invalid entry, never opened.
    let nested = seven_z(&[(
        "deeper.7z",
        seven_z(&[("x_E0E0.pem", pem.clone().into_bytes())]),
    )]);
    let files = [
        ("A_E0E0.pem", pem.clone().into_bytes()),
        ("B_E0E0.pem", nested),
        ("C_E0E0.pem", b"\xFF\xFE not UTF-8 \x80".to_vec()),
        ("D_E0E0.pem", Vec::new()),
        // A device certificate followed by a "chain" block that is base64 but no certificate.
        (
            "E_E0E0.pem",
            format!(
                "{}-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
                certificate("7z-chained").1
            )
            .into_bytes(),
        ),
    ];
    let outcome = read_with(bundle(&files).as_slice(), &tight_7z(), "nested");
    outcome.clean();
    assert_eq!(outcome.accepted(), vec![(0, sha256_hex(&der))]);
    assert_eq!(
        outcome.rejected(),
        vec![
            ErrorName::InvalidCertificate,
            ErrorName::InvalidCertificate,
            ErrorName::MissingCertificate,
            ErrorName::InvalidCertificate
        ]
    );
    let Entry::Rejected(chained) = &outcome.entries()[4] else {
        unreachable!()
    };
    assert!(
        chained.message.contains("further certificate block") && chained.message.contains("X.509"),
        "{}",
        chained.message
    );
}

#[test]
fn seven_z_that_is_not_a_bundle_is_malformed() {
    let _memory = shared();

    // An inner certificate archive that is not a 7z at all.
    let fake = seven_z(&[("REEL_G_E0E0_Certs.7z", b"not a 7z archive".to_vec())]);
    let outcome = read(&fake, Supplier::Infineon, "fake inner archive");
    assert!(is_malformed(outcome.error()), "{outcome:?}");

    // Only the 7z magic, and the magic followed by garbage or a huge declared header.
    for bytes in [
        &b"7z\xBC\xAF\x27\x1C"[..],
        b"7z\xBC\xAF\x27\x1C\x00\x04\xFF\xFF\xFF\xFF\xFF\xFF\xFF\xFF\xFF\xFF\xFF\xFF\xFF\xFF\xFF\xFF\xFF\xFF\xFF\xFF\xFF\xFF\xFF\xFF",
    ] {
        let outcome = read(bytes, Supplier::Infineon, "7z header garbage");
        assert!(is_malformed(outcome.error()), "{outcome:?}");
    }
}

// ---- non-UTF-8, empty files, byte-order marks, CRLF -----------------------------------------

#[test]
fn non_utf8_bytes_are_named_in_every_format() {
    let _memory = shared();
    let (der, pem, _) = certificate("utf8-neighbour");
    let good_id = sha256_hex(&der);

    // Microchip: JSON must be UTF-8; a bad byte in an entry makes the manifest malformed there.
    let mut json =
        br#"[{"payload":"a","protected":"b","signature":"c","header":{"uniqueId":""#.to_vec();
    json.extend_from_slice(b"\xFF\xFE\"}}]");
    let outcome = read(&json, Supplier::Microchip, "microchip");
    assert!(is_malformed(outcome.error()), "{outcome:?}");

    // Infineon XML: in the certificate text → that entry; in an attribute → malformed.
    let good_group = format!(
        "<group><hex name=\"TpmMAC\" value=\"AA\"/><binaryhex>{}</binaryhex></group>",
        hex::encode(&der)
    );
    let mut xml =
        b"<m><group><hex name=\"TpmMAC\" value=\"BB\"/><binaryhex>30\xFF\xFE</binaryhex></group>"
            .to_vec();
    xml.extend_from_slice(good_group.as_bytes());
    xml.extend_from_slice(b"</m>");
    let outcome = read(&xml, Supplier::Infineon, "xml text");
    match outcome.error() {
        None => {
            assert_eq!(outcome.rejected(), vec![ErrorName::InvalidCertificate]);
            assert_eq!(outcome.accepted(), vec![(1, good_id.clone())]);
        }
        Some(_) => assert!(is_malformed(outcome.error()), "{outcome:?}"),
    }
    let xml =
        b"<m><group><hex name=\"TpmMAC\" value=\"\xFF\"/><binaryhex>30</binaryhex></group></m>";
    let outcome = read(xml, Supplier::Infineon, "xml attribute");
    assert!(
        is_malformed(outcome.error()) || outcome.rejected() == vec![ErrorName::InvalidCertificate],
        "{outcome:?}"
    );

    // Espressif: a bad MAC or cert rejects that row; a bad header fails the manifest.
    let mut csv = b"MAC,cert,note\n\xFF\xFE,\"".to_vec();
    csv.extend_from_slice(pem.as_bytes());
    csv.extend_from_slice(b"\",x\nM1,\"\xFF\",x\nM2,\"");
    csv.extend_from_slice(pem.as_bytes());
    csv.extend_from_slice(b"\",\xC0\x80\n");
    let outcome = read(&csv, Supplier::Espressif, "csv");
    outcome.clean();
    assert_eq!(outcome.rejected(), vec![ErrorName::InvalidCertificate; 3]);
    let outcome = read(b"MAC,\xFFcert\nAA,x\n", Supplier::Espressif, "csv header");
    assert!(is_malformed(outcome.error()), "{outcome:?}");

    // PEM: a bad byte in a block rejects it; text outside blocks is ignored; a bad line in
    // line mode rejects that line.
    let mut bundle =
        b"\xFF\xFE garbage\n-----BEGIN CERTIFICATE-----\nMII\xFF\n-----END CERTIFICATE-----\n"
            .to_vec();
    bundle.extend_from_slice(pem.as_bytes());
    let outcome = read(&bundle, Supplier::Pem, "pem bundle");
    outcome.clean();
    assert_eq!(outcome.rejected(), vec![ErrorName::InvalidCertificate]);
    assert_eq!(outcome.accepted(), vec![(1, good_id.clone())]);
    let mut lines = format!("{}\n", STANDARD.encode(&der)).into_bytes();
    lines.extend_from_slice(b"MIIB\xFF\xFEAAAA\n");
    let outcome = read(&lines, Supplier::Pem, "pem lines");
    outcome.clean();
    assert_eq!(outcome.accepted(), vec![(0, good_id)]);
    assert_eq!(outcome.rejected(), vec![ErrorName::InvalidCertificate]);

    // Auto-detection: UTF-16 (with its BOM) is no supported format.
    let utf16: Vec<u8> = "\u{feff}MAC,cert\n"
        .encode_utf16()
        .flat_map(u16::to_le_bytes)
        .collect();
    let outcome = read(&utf16, Supplier::Auto, "utf-16");
    assert!(
        matches!(outcome.error(), Some(ManifestError::UnknownFormat(_))),
        "{outcome:?}"
    );
}

#[test]
fn empty_blank_and_bom_only_files_are_named_errors() {
    let _memory = shared();
    for bytes in [
        &b""[..],
        b"   \r\n\t\n",
        b"\xEF\xBB\xBF",
        b"\xEF\xBB\xBF\r\n",
    ] {
        for supplier in [
            Supplier::Microchip,
            Supplier::Infineon,
            Supplier::Espressif,
            Supplier::Pem,
        ] {
            let case = format!("{supplier} {bytes:?}");
            let outcome = read(bytes, supplier, &case);
            assert!(is_malformed(outcome.error()), "{case}: {outcome:?}");
        }
        let outcome = read(bytes, Supplier::Auto, "auto");
        assert!(
            matches!(outcome.error(), Some(ManifestError::UnknownFormat(_))),
            "auto {bytes:?}: {outcome:?}"
        );
    }
    // Structurally empty manifests: an empty array is a manifest of nothing; the others say
    // what is missing.
    let outcome = read(b"[]", Supplier::Microchip, "[]");
    assert!(outcome.clean().is_empty());
    let outcome = read(b"<m/>", Supplier::Infineon, "<m/>");
    assert!(is_malformed(outcome.error()), "{outcome:?}");
    let outcome = read(b"MAC,cert\n", Supplier::Espressif, "header only");
    assert!(outcome.clean().is_empty());
}

#[test]
fn byte_order_marks_and_crlf_change_nothing() {
    let _memory = shared();
    let (xml, _) = small_xml();
    let mut pem_bundle = SINGLE_PEM.to_vec();
    let (_, second, _) = certificate("second-in-bundle");
    pem_bundle.extend_from_slice(second.as_bytes());
    let samples: [(&str, Vec<u8>, Supplier); 5] = [
        ("microchip", MICROCHIP.to_vec(), Supplier::Microchip),
        ("infineon xml", xml, Supplier::Infineon),
        ("espressif", ESPRESSIF.to_vec(), Supplier::Espressif),
        ("pem bundle", pem_bundle, Supplier::Pem),
        ("pem lines", PEM_LINES.to_vec(), Supplier::Pem),
    ];
    for (name, bytes, supplier) in samples {
        let expected = read(&lf(&bytes), supplier, name).accepted();
        assert!(!expected.is_empty(), "{name}");
        for (variant, bytes) in [
            ("CRLF", crlf(&bytes)),
            ("BOM", with_bom(&lf(&bytes))),
            ("BOM+CRLF", with_bom(&crlf(&bytes))),
        ] {
            for supplier in [supplier, Supplier::Auto] {
                let case = format!("{name} with {variant} as {supplier}");
                let outcome = read(&bytes, supplier, &case);
                assert!(outcome.error().is_none(), "{case}: {outcome:?}");
                assert_eq!(outcome.accepted(), expected, "{case}");
            }
        }
    }
}

// ---- the same certificate twice -------------------------------------------------------------

fn only_rejection(outcome: &Outcome, index: u64) -> (ErrorName, String, Option<String>) {
    let rejected: Vec<_> = outcome
        .entries()
        .iter()
        .filter_map(|e| match e {
            Entry::Rejected(r) => Some(r),
            Entry::Accepted(_) => None,
        })
        .collect();
    assert_eq!(rejected.len(), 1, "{outcome:?}");
    assert_eq!(rejected[0].index, index);
    (
        rejected[0].error,
        rejected[0].message.clone(),
        rejected[0].device_id.clone(),
    )
}

#[test]
fn a_certificate_repeated_in_one_manifest_is_imported_once() {
    let _memory = shared();
    // Microchip: the real sample with its first entry appended again.
    let entries: Vec<Value> = serde_json::from_slice(MICROCHIP).unwrap();
    let mut repeated = entries.clone();
    repeated.push(entries[0].clone());
    let bytes = serde_json::to_vec(&repeated).unwrap();
    let outcome = read(&bytes, Supplier::Microchip, "microchip");
    outcome.clean();
    let (error, message, device) = only_rejection(&outcome, 10);
    assert_eq!(error, ErrorName::DuplicateCertificate);
    let first = &outcome.accepted()[0].1;
    assert!(message.contains(first.as_str()), "{message}");
    assert_eq!(device.as_deref(), entries[0]["header"]["uniqueId"].as_str());

    // Infineon XML: two groups, another TpmMAC, the same certificate.
    let (der, pem, _) = certificate("twice");
    let xml = infineon_xml(&[("AA01", &der), ("AA02", &der)]);
    let outcome = read(&xml, Supplier::Infineon, "xml");
    outcome.clean();
    let (error, _, device) = only_rejection(&outcome, 1);
    assert_eq!(error, ErrorName::DuplicateCertificate);
    assert_eq!(device.as_deref(), Some("AA02"));

    // Infineon bundle: one certificate under two file names.
    let bytes = bundle(&[
        ("A_E0E0.pem", pem.clone().into_bytes()),
        ("B_E0E0.pem", pem.clone().into_bytes()),
    ]);
    let outcome = read(&bytes, Supplier::Infineon, "bundle");
    outcome.clean();
    assert_eq!(
        only_rejection(&outcome, 1).0,
        ErrorName::DuplicateCertificate
    );

    // Espressif: the sample's first row again under another MAC.
    let text = String::from_utf8(lf(ESPRESSIF)).unwrap();
    let first_row_end = text.find("-----END CERTIFICATE-----\n\"\n").unwrap() + 28;
    let first_row = &text[text.find('\n').unwrap() + 1..first_row_end];
    let (_, rest) = first_row.split_once(',').unwrap();
    let csv = format!("{}\nFFFFFFFFFFFF,{rest}", text.trim_end());
    let outcome = read(csv.as_bytes(), Supplier::Espressif, "espressif");
    outcome.clean();
    let (error, _, device) = only_rejection(&outcome, 7);
    assert_eq!(error, ErrorName::DuplicateCertificate);
    assert_eq!(device.as_deref(), Some("FFFFFFFFFFFF"));

    // PEM: twelve copies of 100 certificates, across batch boundaries: 100 imported.
    let copies = PEM_LINES.repeat(12);
    let outcome = read(&copies, Supplier::Pem, "pem x12");
    outcome.clean();
    assert_eq!(outcome.entries().len(), 1200);
    assert_eq!(outcome.accepted().len(), 100);
    assert!(outcome.accepted().iter().all(|(index, _)| *index < 100));
    assert_eq!(
        outcome.rejected(),
        vec![ErrorName::DuplicateCertificate; 1100]
    );

    // A rejected entry does not count as the first occurrence.
    let mut broken = pem.replace("-----END CERTIFICATE-----", "");
    broken.push_str(&pem);
    let outcome = read(broken.as_bytes(), Supplier::Pem, "broken then good");
    outcome.clean();
    assert_eq!(outcome.accepted().len(), 1, "{outcome:?}");

    // Across manifests nothing is remembered: the next read imports it again (Register then
    // finds it already registered, which is success).
    for _ in 0..2 {
        let outcome = read(SINGLE_PEM, Supplier::Pem, "single");
        assert_eq!(outcome.accepted().len(), 1);
    }
}
