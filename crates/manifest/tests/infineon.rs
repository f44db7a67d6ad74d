//! Infineon: the real OPTIGA Trust M 7z bundle, generated bundles (nested archives, bombs),
//! generated XML manifests (layout variants, bad entries, entity bombs), and never-panic
//! properties over arbitrary and mutated input.

// Test code: a failed expectation should panic with its message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::io::Cursor;

use aws_lc_rs::digest::{SHA256, digest};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use proptest::prelude::*;
use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair};
use sevenz_rust2::{ArchiveEntry, ArchiveReader, ArchiveWriter, Password, SourceReader};
use thingpress_manifest::{
    Accepted, Entry, ErrorName, ManifestError, Options, Rejected, Slot, Supplier, read_entries,
};

const BUNDLE: &[u8] = include_bytes!("../../../tests/fixtures/upstream/manifest-infineon.7z");

// ---- helpers --------------------------------------------------------------------------------

fn options(slot: Slot) -> Options {
    Options {
        supplier: Supplier::Infineon,
        slot,
        ..Options::default()
    }
}

fn read_all(bytes: &[u8], options: &Options) -> Result<Vec<Entry>, ManifestError> {
    read_entries(bytes, options)?.collect()
}

fn split(entries: Vec<Entry>) -> (Vec<Accepted>, Vec<Rejected>) {
    let mut accepted = Vec::new();
    let mut rejected = Vec::new();
    for entry in entries {
        match entry {
            Entry::Accepted(a) => accepted.push(a),
            Entry::Rejected(r) => rejected.push(r),
        }
    }
    (accepted, rejected)
}

fn sha256_hex(bytes: &[u8]) -> String {
    digest(&SHA256, bytes)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The DER of the first PEM block of `text`, decoded here without the crate's helpers.
fn pem_body_der(text: &str) -> Vec<u8> {
    let begin = text.find("-----BEGIN CERTIFICATE-----").unwrap() + 27;
    let end = text.find("-----END CERTIFICATE-----").unwrap();
    let body: String = text[begin..end]
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    STANDARD.decode(body).unwrap()
}

/// A self-signed certificate: (DER, PEM with CRLF line ends as Infineon ships them).
fn certificate(cn: Option<&str>, rsa: bool) -> (Vec<u8>, String) {
    let key = if rsa {
        KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).unwrap()
    } else {
        KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap()
    };
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "Thingpress test");
    if let Some(cn) = cn {
        dn.push(DnType::CommonName, cn);
    }
    params.distinguished_name = dn;
    let cert = params.self_signed(&key).unwrap();
    (cert.der().to_vec(), cert.pem().replace('\n', "\r\n"))
}

/// A 7z archive, one block per file (`solid` = one block for all).
fn seven_z(files: &[(&str, Vec<u8>)], solid: bool) -> Vec<u8> {
    let mut writer = ArchiveWriter::new(Cursor::new(Vec::new())).unwrap();
    if solid {
        let entries = files
            .iter()
            .map(|(n, _)| ArchiveEntry::new_file(n))
            .collect();
        let readers = files
            .iter()
            .map(|(_, data)| SourceReader::new(Cursor::new(data.clone())))
            .collect();
        writer.push_archive_entries(entries, readers).unwrap();
    } else {
        for (name, data) in files {
            writer
                .push_archive_entry(
                    ArchiveEntry::new_file(name),
                    Some(Cursor::new(data.clone())),
                )
                .unwrap();
        }
    }
    writer.finish().unwrap().into_inner()
}

fn rejected_error(entries: &[Entry], index: u64) -> (ErrorName, String) {
    match entries.iter().find(|e| e.index() == index).unwrap() {
        Entry::Rejected(r) => (r.error, r.message.clone()),
        Entry::Accepted(a) => panic!("entry {index} was accepted: {a:?}"),
    }
}

// ---- the real bundle ------------------------------------------------------------------------

/// The PEM files of the real bundle's inner archive for `slot`, by name, extracted here with
/// sevenz-rust2 directly.
fn real_slot_files(slot: &str) -> Vec<(String, String)> {
    let mut outer = ArchiveReader::new(Cursor::new(BUNDLE.to_vec()), Password::empty()).unwrap();
    let name = outer
        .archive()
        .files
        .iter()
        .map(|f| f.name().to_owned())
        .find(|n| n.ends_with(&format!("_{slot}_Certs.7z")))
        .unwrap();
    let inner_bytes = outer.read_file(&name).unwrap();
    let mut inner = ArchiveReader::new(Cursor::new(inner_bytes), Password::empty()).unwrap();
    let mut files = Vec::new();
    inner
        .for_each_entries(|entry, reader| {
            let mut text = String::new();
            reader.read_to_string(&mut text)?;
            files.push((entry.name().to_owned(), text));
            Ok(true)
        })
        .unwrap();
    files.sort();
    files
}

fn check_real_slot(slot: Slot) -> Vec<Accepted> {
    let entries = read_all(BUNDLE, &options(slot)).unwrap();
    let (accepted, rejected) = split(entries);
    assert!(rejected.is_empty(), "{rejected:?}");
    let expected = real_slot_files(slot.as_str());
    assert_eq!(expected.len(), 200);
    assert_eq!(accepted.len(), 200);
    for (i, (entry, (name, text))) in accepted.iter().zip(&expected).enumerate() {
        assert_eq!(entry.index, i as u64);
        let der = pem_body_der(text);
        assert_eq!(entry.certificate_id, sha256_hex(&der), "{name}");
        assert_eq!(pem_body_der(&entry.certificate_pem), der);
        assert_eq!(entry.fields["fileName"], *name);
        assert_eq!(entry.fields["slot"], slot.as_str());
        assert_eq!(entry.fields["reel"], "78211223032C7EFA");
        let chip = name
            .strip_suffix(&format!("_{}.pem", slot.as_str()))
            .unwrap();
        assert_eq!(entry.fields["chipId"], chip);
        // deviceId = subject CN, 64 hex characters in this bundle.
        let cn = entry.cn.as_deref().unwrap();
        assert_eq!(entry.device_id, cn);
        assert_eq!(cn.len(), 64);
        assert!(cn.bytes().all(|b| b.is_ascii_hexdigit()));
    }
    accepted
}

#[test]
fn real_bundle_slot_e0e0_gives_200_certificates_in_file_name_order() {
    let accepted = check_real_slot(Slot::E0E0);
    assert_eq!(
        accepted[0].device_id,
        real_cn_of_first(Slot::E0E0),
        "first entry is the first file by name"
    );
}

fn real_cn_of_first(slot: Slot) -> String {
    let (_, text) = real_slot_files(slot.as_str()).remove(0);
    let der = pem_body_der(&text);
    let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
    let cn = cert.subject().iter_common_name().next().unwrap();
    cn.as_str().unwrap().to_owned()
}

#[test]
fn real_bundle_slot_e0e1_gives_200_certificates() {
    check_real_slot(Slot::E0E1);
}

#[test]
fn real_bundle_slot_e0e2_gives_200_rsa_certificates() {
    let accepted = check_real_slot(Slot::E0E2);
    for entry in &accepted {
        let der = pem_body_der(&entry.certificate_pem);
        let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
        assert_eq!(
            cert.public_key().algorithm.algorithm.to_id_string(),
            "1.2.840.113549.1.1.1",
            "E0E2 holds RSA keys"
        );
    }
}

#[test]
fn auto_detection_reads_the_real_bundle_as_infineon() {
    let entries = read_entries(BUNDLE, &Options::default()).unwrap();
    assert_eq!(entries.supplier(), Supplier::Infineon);
    assert_eq!(entries.count(), 200);
}

// ---- generated bundles ----------------------------------------------------------------------

/// A bundle like Infineon's, with the given files in the E0E0 archive and other slots.
fn bundle(e0e0: &[(&str, Vec<u8>)], keys: Vec<u8>) -> Vec<u8> {
    let (_, other) = certificate(Some("other-slot"), false);
    let e0e1 = seven_z(&[("X_E0E1.pem", other.into_bytes())], true);
    seven_z(
        &[
            ("REEL1_0000-guid_E0E0_Certs.7z", seven_z(e0e0, true)),
            ("REEL1_0000-guid_E0E1_Certs.7z", e0e1),
            ("REEL1_0000-guid_keys.7z", keys),
            ("README.txt", b"read me".to_vec()),
        ],
        true,
    )
}

#[test]
fn generated_bundle_covers_ec_rsa_no_cn_and_bad_files() {
    let (ec_der, ec_pem) = certificate(Some("device-ec"), false);
    let (rsa_der, rsa_pem) = certificate(Some("device-rsa"), true);
    let (anon_der, anon_pem) = certificate(None, false);
    let (issuer_der, issuer_pem) = certificate(Some("issuer"), false);
    let files = [
        // Deliberately out of name order: entries come out sorted by file name.
        (
            "D004_E0E0.pem",
            b"-----BEGIN CERTIFICATE-----\r\n!!!!\r\n-----END CERTIFICATE-----\r\n".to_vec(),
        ),
        ("A001_E0E0.pem", ec_pem.into_bytes()),
        ("C003_E0E0.pem", anon_pem.into_bytes()),
        ("B002_E0E0.pem", rsa_pem.into_bytes()),
        ("E005_E0E0.pem", Vec::new()),
        (
            "F006_E0E0.pem",
            format!("{}{}", certificate(Some("with-chain"), false).1, issuer_pem).into_bytes(),
        ),
    ];
    // The keys archive is garbage: opening it would fail the read, so success proves it is skipped.
    let bytes = bundle(&files, b"not a 7z archive, and never to be opened".to_vec());
    let entries = read_all(&bytes, &options(Slot::E0E0)).unwrap();
    assert_eq!(entries.len(), 6);
    let by_index: BTreeMap<u64, &Entry> = entries.iter().map(|e| (e.index(), e)).collect();
    let accepted = |i: u64| match by_index[&i] {
        Entry::Accepted(a) => a.clone(),
        Entry::Rejected(r) => panic!("entry {i} rejected: {r:?}"),
    };
    let ec = accepted(0);
    assert_eq!(ec.certificate_id, sha256_hex(&ec_der));
    assert_eq!(ec.device_id, "device-ec");
    assert_eq!(ec.fields["chipId"], "A001");
    assert_eq!(ec.fields["fileName"], "A001_E0E0.pem");
    assert_eq!(ec.fields["reel"], "REEL1");
    let rsa = accepted(1);
    assert_eq!(rsa.certificate_id, sha256_hex(&rsa_der));
    assert_eq!(rsa.device_id, "device-rsa");
    let anon = accepted(2);
    assert_eq!(anon.cn, None);
    assert_eq!(
        anon.device_id,
        sha256_hex(&anon_der),
        "no CN: deviceId = certificate id"
    );
    let (error, message) = rejected_error(&entries, 3);
    assert_eq!(error, ErrorName::InvalidCertificate);
    assert!(message.contains("D004_E0E0.pem"), "{message}");
    let (error, message) = rejected_error(&entries, 4);
    assert_eq!(error, ErrorName::MissingCertificate);
    assert!(message.contains("E005_E0E0.pem"), "{message}");
    let chained = accepted(5);
    assert_eq!(chained.device_id, "with-chain");
    assert_eq!(chained.chain.len(), 1);
    assert_eq!(pem_body_der(&chained.chain[0]), issuer_der);
}

#[test]
fn a_missing_slot_names_the_slots_present() {
    let (_, pem) = certificate(Some("d"), false);
    let bytes = bundle(&[("A_E0E0.pem", pem.into_bytes())], b"k".to_vec());
    let err = read_all(&bytes, &options(Slot::E0E2)).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, ManifestError::Malformed { .. }), "{text}");
    assert!(text.contains("slot E0E2"), "{text}");
    assert!(text.contains("E0E0, E0E1"), "{text}");
}

#[test]
fn a_bundle_without_certificate_archives_says_so() {
    let bytes = seven_z(&[("README.txt", b"hello".to_vec())], false);
    let text = read_all(&bytes, &options(Slot::E0E0))
        .unwrap_err()
        .to_string();
    assert!(text.contains("no inner archive for slot E0E0"), "{text}");
}

#[test]
fn garbage_after_the_7z_magic_is_malformed_not_a_panic() {
    let mut bytes = vec![0x37, 0x7A, 0xBC, 0xAF, 0x27, 0x1C];
    bytes.extend_from_slice(b"\x00\x04garbage garbage garbage garbage");
    let err = read_all(&bytes, &options(Slot::E0E0)).unwrap_err();
    assert!(matches!(err, ManifestError::Malformed { .. }), "{err}");
}

#[test]
fn bundle_bigger_than_max_archive_bytes_is_refused_before_opening() {
    let mut options = options(Slot::E0E0);
    options.limits.max_archive_bytes = 10_000;
    let err = read_all(BUNDLE, &options).unwrap_err();
    assert!(matches!(err, ManifestError::LimitExceeded(_)), "{err}");
    assert!(err.to_string().contains("max_archive_bytes"), "{err}");
}

#[test]
fn archive_bomb_declared_size_is_refused_before_extraction() {
    // 8 MiB of zeros compresses to a few KiB: the declared size gives it away.
    let zeros = vec![0u8; 8 * 1024 * 1024];
    let inner = seven_z(&[("Z_E0E0.pem", zeros)], false);
    let bytes = seven_z(&[("R_G_E0E0_Certs.7z", inner)], false);
    assert!(bytes.len() < 64 * 1024);
    let mut options = options(Slot::E0E0);
    options.limits.max_archive_bytes = 1024 * 1024;
    let err = read_all(&bytes, &options).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, ManifestError::LimitExceeded(_)), "{text}");
    assert!(text.contains("archive bomb"), "{text}");
    assert!(text.contains("inner archive R_G_E0E0_Certs.7z"), "{text}");
}

#[test]
fn archive_bomb_in_the_outer_bundle_is_refused() {
    let zeros = vec![0u8; 4 * 1024 * 1024];
    let bytes = seven_z(
        &[("R_G_E0E0_Certs.7z", zeros.clone()), ("R_G_keys.7z", zeros)],
        true,
    );
    let mut options = options(Slot::E0E0);
    options.limits.max_archive_bytes = 1024 * 1024;
    let err = read_all(&bytes, &options).unwrap_err();
    assert!(matches!(err, ManifestError::LimitExceeded(_)), "{err}");
    assert!(err.to_string().contains("7z bundle"), "{err}");
}

#[test]
fn too_many_files_is_refused_before_extraction() {
    // More files than one batch of the decoding thread, stored in name order.
    let files: Vec<(String, Vec<u8>)> = (0..600)
        .map(|i| (format!("{i:04}_E0E0.pem"), b"x".to_vec()))
        .collect();
    let refs: Vec<(&str, Vec<u8>)> = files.iter().map(|(n, d)| (n.as_str(), d.clone())).collect();
    let bytes = seven_z(&[("R_G_E0E0_Certs.7z", seven_z(&refs, true))], false);
    let mut options = options(Slot::E0E0);
    options.limits.max_archive_entries = 20;
    let err = read_all(&bytes, &options).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, ManifestError::LimitExceeded(_)), "{text}");
    assert!(text.contains("max_archive_entries"), "{text}");
    options.limits.max_archive_entries = 601;
    let entries = read_all(&bytes, &options).unwrap();
    assert_eq!(entries.len(), 600);
    for (i, entry) in entries.iter().enumerate() {
        assert_eq!(entry.index(), i as u64);
        let (error, message) = rejected_error(&entries, i as u64);
        assert_eq!(error, ErrorName::InvalidCertificate);
        assert!(message.contains(&format!("{i:04}_E0E0.pem")), "{message}");
    }
}

#[test]
fn a_file_over_max_entry_bytes_is_rejected_alone() {
    let (_, pem) = certificate(Some("small"), false);
    let big = vec![b'A'; 5000];
    let inner = seven_z(
        &[("A_E0E0.pem", pem.into_bytes()), ("B_E0E0.pem", big)],
        true,
    );
    let bytes = seven_z(&[("R_G_E0E0_Certs.7z", inner)], false);
    let mut options = options(Slot::E0E0);
    options.limits.max_entry_bytes = 4096;
    let entries = read_all(&bytes, &options).unwrap();
    assert!(matches!(entries[0], Entry::Accepted(_)));
    let (error, message) = rejected_error(&entries, 1);
    assert_eq!(error, ErrorName::InvalidCertificate);
    assert!(message.contains("max_entry_bytes"), "{message}");
}

// ---- XML manifests --------------------------------------------------------------------------

fn hex_lines(der: &[u8], upper: bool, width: usize) -> String {
    let hex: String = der
        .iter()
        .map(|b| {
            if upper {
                format!("{b:02X}")
            } else {
                format!("{b:02x}")
            }
        })
        .collect();
    hex.as_bytes()
        .chunks(width)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect::<Vec<_>>()
        .join("\r\n      ")
}

#[test]
fn xml_manifest_variants() {
    let (a_der, _) = certificate(Some("cn-a"), false);
    let (b_der, _) = certificate(Some("cn-b"), true);
    let (c_der, _) = certificate(Some("cn-c"), false);
    let (d_der, _) = certificate(None, false);
    let xml = format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<!-- Infineon manifest -->
<manifest version="1">
  <header><hex name="TpmMAC" value="not-a-group"/></header>
  <group id="1">
    <hex name="TpmMAC" value="00:11:22:33:44:55"/>
    <hex name="Serial" value="S&amp;1"/>
    <binaryhex name="cert">
      {a}
    </binaryhex>
    <binaryhex>{b}</binaryhex>
  </group>
  <group id="2">
    <hex name="Serial" value="S2"/>
    <certificates><binaryhex><![CDATA[{c}]]></binaryhex></certificates>
  </group>
  <group id="3"><hex name="TpmMAC" value="AA"/></group>
  <group id="4"><hex name="TpmMAC" value="BB"/><binaryhex>30 82 zz</binaryhex></group>
  <group id="5"><hex name="TpmMAC" value="CC"/><binaryhex>3003020101</binaryhex></group>
  <group/>
  <group id="7"><binaryhex>{d}</binaryhex></group>
</manifest>
"#,
        a = hex_lines(&a_der, true, 64),
        b = hex_lines(&b_der, false, 1000),
        c = hex_lines(&c_der, false, 32),
        d = hex_lines(&d_der, true, 10_000),
    );
    let entries = read_all(xml.as_bytes(), &options(Slot::E0E0)).unwrap();
    assert_eq!(entries.len(), 8);
    let indices: Vec<u64> = entries.iter().map(Entry::index).collect();
    assert_eq!(indices, (0..8).collect::<Vec<_>>());
    let accepted = |i: usize| match &entries[i] {
        Entry::Accepted(a) => a.clone(),
        Entry::Rejected(r) => panic!("entry {i} rejected: {r:?}"),
    };
    // Two certificates in one group: two entries sharing the group's deviceId and fields.
    let a = accepted(0);
    assert_eq!(a.certificate_id, sha256_hex(&a_der));
    assert_eq!(a.device_id, "00:11:22:33:44:55");
    assert_eq!(a.fields["Serial"], "S&1");
    assert_eq!(a.fields["TpmMAC"], "00:11:22:33:44:55");
    let b = accepted(1);
    assert_eq!(b.certificate_id, sha256_hex(&b_der));
    assert_eq!(b.device_id, "00:11:22:33:44:55");
    // No TpmMAC: deviceId falls back to the CN.
    let c = accepted(2);
    assert_eq!(c.certificate_id, sha256_hex(&c_der));
    assert_eq!(c.device_id, "cn-c");
    assert_eq!(c.fields["Serial"], "S2");
    let (error, message) = rejected_error(&entries, 3);
    assert_eq!(error, ErrorName::MissingCertificate);
    assert!(
        message.contains("group 2") && message.contains("AA"),
        "{message}"
    );
    let (error, message) = rejected_error(&entries, 4);
    assert_eq!(error, ErrorName::InvalidCertificate);
    assert!(message.contains("not hex"), "{message}");
    let (error, _) = rejected_error(&entries, 5);
    assert_eq!(
        error,
        ErrorName::InvalidCertificate,
        "valid hex, not a certificate"
    );
    let (error, _) = rejected_error(&entries, 6);
    assert_eq!(error, ErrorName::MissingCertificate);
    // Neither TpmMAC nor CN: the certificate id.
    let d = accepted(7);
    assert_eq!(d.device_id, sha256_hex(&d_der));
}

const LAUGHS: &str = r#"<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
"#;

#[test]
fn billion_laughs_in_a_certificate_stays_inert() {
    let (der, _) = certificate(Some("fine"), false);
    let xml = format!(
        "{LAUGHS}<m><group><hex name=\"TpmMAC\" value=\"M1\"/><binaryhex>&lol9;</binaryhex></group>\
         <group><hex name=\"TpmMAC\" value=\"M2\"/><binaryhex>{}</binaryhex></group></m>",
        hex_lines(&der, false, 80)
    );
    let entries = read_all(xml.as_bytes(), &options(Slot::E0E0)).unwrap();
    assert_eq!(entries.len(), 2);
    let (error, message) = rejected_error(&entries, 0);
    assert_eq!(error, ErrorName::InvalidCertificate);
    assert!(
        message.contains("&lol9;") && message.contains("not expanded"),
        "{message}"
    );
    assert!(message.len() < 300, "nothing was expanded into the message");
    assert!(matches!(&entries[1], Entry::Accepted(a) if a.device_id == "M2"));
}

#[test]
fn billion_laughs_in_an_attribute_is_malformed_not_expanded() {
    let xml = format!("{LAUGHS}<m><group><hex name=\"TpmMAC\" value=\"&lol9;\"/></group></m>");
    let err = read_all(xml.as_bytes(), &options(Slot::E0E0)).unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(err, ManifestError::Malformed { at: Some(0), .. }),
        "{text}"
    );
    assert!(text.contains("standard XML entities"), "{text}");
    assert!(text.len() < 500, "{text}");
}

#[test]
fn malformed_xml_names_the_entry_index() {
    let (der, _) = certificate(Some("x"), false);
    let good = format!(
        "<group><binaryhex>{}</binaryhex></group>",
        hex_lines(&der, true, 64)
    );
    let xml = format!("<m>{good}{good}<group><binaryhex>00</wrong></group></m>");
    let results: Vec<_> = read_entries(xml.as_bytes(), &options(Slot::E0E0))
        .unwrap()
        .collect();
    assert_eq!(results.len(), 3);
    assert!(results[0].is_ok() && results[1].is_ok());
    let err = results[2].as_ref().unwrap_err();
    assert!(
        matches!(
            err,
            ManifestError::Malformed {
                at: Some(2),
                supplier: Supplier::Infineon,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn truncated_or_groupless_xml_is_malformed() {
    let err = read_all(b"<m><group><binaryhex>30", &options(Slot::E0E0)).unwrap_err();
    assert!(err.to_string().contains("truncated"), "{err}");
    let err = read_all(b"<m><other/></m>", &options(Slot::E0E0)).unwrap_err();
    assert!(err.to_string().contains("no <group>"), "{err}");
    let err = read_all(b"", &options(Slot::E0E0)).unwrap_err();
    assert!(matches!(err, ManifestError::Malformed { .. }), "{err}");
}

#[test]
fn a_reader_that_hands_out_one_byte_at_a_time_still_finds_the_7z_magic() {
    let reader = std::io::BufReader::with_capacity(1, BUNDLE);
    let entries: Result<Vec<_>, _> = read_entries(reader, &options(Slot::E0E0))
        .unwrap()
        .collect();
    assert_eq!(entries.unwrap().len(), 200);
}

// ---- never panic ----------------------------------------------------------------------------

fn small_bundle() -> Vec<u8> {
    let (_, pem) = certificate(Some("p"), false);
    let inner = seven_z(&[("A_E0E0.pem", pem.into_bytes())], true);
    seven_z(
        &[("R_G_E0E0_Certs.7z", inner), ("README.txt", b"r".to_vec())],
        true,
    )
}

fn small_xml() -> Vec<u8> {
    let (der, _) = certificate(Some("p"), false);
    format!(
        "<m><group><hex name=\"TpmMAC\" value=\"1\"/><binaryhex>{}</binaryhex></group><group/></m>",
        hex_lines(&der, false, 64)
    )
    .into_bytes()
}

fn drain(bytes: &[u8]) {
    let mut options = options(Slot::E0E0);
    options.limits.max_archive_bytes = 1024 * 1024;
    options.limits.max_entry_bytes = 64 * 1024;
    if let Ok(entries) = read_entries(bytes, &options) {
        for item in entries {
            if item.is_err() {
                break;
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048), magic in any::<bool>()) {
        let mut input = if magic { vec![0x37, 0x7A, 0xBC, 0xAF, 0x27, 0x1C] } else { Vec::new() };
        input.extend(bytes);
        drain(&input);
    }

    #[test]
    fn mutated_bundles_never_panic(
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
        truncate in any::<bool>(),
    ) {
        let mut bytes = small_bundle_cached().to_vec();
        for (at, value) in edits {
            let i = at.index(bytes.len());
            bytes[i] = value;
        }
        if truncate {
            bytes.truncate(cut.index(bytes.len()));
        }
        drain(&bytes);
    }

    #[test]
    fn mutated_xml_never_panics(
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
        truncate in any::<bool>(),
    ) {
        let mut bytes = small_xml_cached().to_vec();
        for (at, value) in edits {
            let i = at.index(bytes.len());
            bytes[i] = value;
        }
        if truncate {
            bytes.truncate(cut.index(bytes.len()));
        }
        drain(&bytes);
    }
}

fn small_bundle_cached() -> &'static [u8] {
    static BYTES: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    BYTES.get_or_init(small_bundle)
}

fn small_xml_cached() -> &'static [u8] {
    static BYTES: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    BYTES.get_or_init(small_xml)
}
