//! Espressif: the real ESP32-S3 sample, generated CSVs (column order, CRLF, missing columns,
//! unbalanced quotes, RSA/EC/no-CN certificates) and never-panic properties.

// Test code: a failed expectation should panic with its message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use aws_lc_rs::digest::{SHA256, digest};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use proptest::prelude::*;
use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair};
use thingpress_manifest::{
    Accepted, Entry, ErrorName, ManifestError, Options, Supplier, read_entries,
};

const SAMPLE: &[u8] = include_bytes!("../../../tests/fixtures/upstream/manifest-espressif.csv");

fn options() -> Options {
    Options {
        supplier: Supplier::Espressif,
        ..Options::default()
    }
}

fn read_all(bytes: &[u8]) -> Result<Vec<Entry>, ManifestError> {
    read_entries(bytes, &options())?.collect()
}

fn sha256_hex(bytes: &[u8]) -> String {
    digest(&SHA256, bytes)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The DER of a PEM text, decoded here without the crate's helpers.
fn pem_der(text: &str) -> Vec<u8> {
    let body: String = text
        .lines()
        .filter(|line| !line.starts_with("-----"))
        .flat_map(|line| line.chars())
        .filter(|c| !c.is_whitespace())
        .collect();
    STANDARD.decode(body).unwrap()
}

fn certificate(cn: Option<&str>, rsa: bool) -> (Vec<u8>, String) {
    let key = if rsa {
        KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).unwrap()
    } else {
        KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap()
    };
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "Espressif test");
    if let Some(cn) = cn {
        dn.push(DnType::CommonName, cn);
    }
    params.distinguished_name = dn;
    let cert = params.self_signed(&key).unwrap();
    (cert.der().to_vec(), cert.pem())
}

fn accepted(entries: &[Entry], index: u64) -> Accepted {
    match entries.iter().find(|e| e.index() == index).unwrap() {
        Entry::Accepted(a) => a.clone(),
        Entry::Rejected(r) => panic!("entry {index} rejected: {r:?}"),
    }
}

fn rejected(entries: &[Entry], index: u64) -> (ErrorName, String, Option<String>) {
    match entries.iter().find(|e| e.index() == index).unwrap() {
        Entry::Rejected(r) => (r.error, r.message.clone(), r.device_id.clone()),
        Entry::Accepted(a) => panic!("entry {index} accepted: {a:?}"),
    }
}

#[test]
fn real_sample_gives_seven_certificates_keyed_by_mac() {
    // The expectation, computed here with the csv crate and our own base64 and SHA-256.
    let mut csv = csv::Reader::from_reader(SAMPLE);
    let headers = csv.headers().unwrap().clone();
    let mac_at = headers.iter().position(|h| h == "MAC").unwrap();
    let cn_at = headers.iter().position(|h| h == "cn").unwrap();
    let cert_at = headers.iter().position(|h| h == "cert").unwrap();
    let expected: Vec<(String, String, String)> = csv
        .records()
        .map(|r| {
            let r = r.unwrap();
            (
                r[mac_at].to_owned(),
                r[cn_at].to_owned(),
                sha256_hex(&pem_der(&r[cert_at])),
            )
        })
        .collect();
    assert_eq!(expected.len(), 7);

    let entries = read_all(SAMPLE).unwrap();
    assert_eq!(entries.len(), 7);
    for (i, (mac, cn, id)) in expected.iter().enumerate() {
        let entry = accepted(&entries, i as u64);
        assert_eq!(entry.device_id, *mac);
        assert_eq!(entry.certificate_id, *id);
        assert_eq!(entry.fields["MAC"], *mac);
        assert_eq!(entry.fields["cn"], *cn);
        assert!(!entry.fields.contains_key("cert"));
        // The sample's CN column matches the subject CN.
        assert_eq!(entry.cn.as_deref(), Some(cn.as_str()));
        assert_eq!(sha256_hex(&pem_der(&entry.certificate_pem)), *id);
    }
    assert_eq!(accepted(&entries, 0).device_id, "4BA2BB8764BD");
}

#[test]
fn auto_detection_reads_the_real_sample_as_espressif() {
    let entries = read_entries(SAMPLE, &Options::default()).unwrap();
    assert_eq!(entries.supplier(), Supplier::Espressif);
    assert_eq!(entries.count(), 7);
}

#[test]
fn reordered_and_extra_columns_with_crlf() {
    let (ec_der, ec_pem) = certificate(Some("ec-device"), false);
    let (rsa_der, rsa_pem) = certificate(Some("rsa-device"), true);
    let (anon_der, anon_pem) = certificate(None, false);
    let crlf = |pem: &str| pem.replace('\n', "\r\n");
    let csv = format!(
        "\u{feff}batch, Cert ,serial,mac\r\n\
         b1,\"{ec}\",s1,AA:BB:CC:00:11:22\r\n\
         b1,\"{rsa}\",\"s,2\",  aabbcc001123 \r\n\
         b2,\"{anon}\",s3,\r\n\
         b2,\"{anon}\",s4,\r\n",
        ec = crlf(&ec_pem),
        rsa = crlf(&rsa_pem),
        anon = crlf(&anon_pem),
    );
    let entries = read_all(csv.as_bytes()).unwrap();
    assert_eq!(entries.len(), 4);
    let ec = accepted(&entries, 0);
    assert_eq!(ec.certificate_id, sha256_hex(&ec_der));
    assert_eq!(ec.device_id, "AA:BB:CC:00:11:22", "MAC kept as given");
    assert_eq!(ec.fields["batch"], "b1");
    assert_eq!(ec.fields["serial"], "s1");
    assert_eq!(ec.fields["mac"], "AA:BB:CC:00:11:22");
    assert_eq!(ec.cn.as_deref(), Some("ec-device"));
    let rsa = accepted(&entries, 1);
    assert_eq!(rsa.certificate_id, sha256_hex(&rsa_der));
    assert_eq!(
        rsa.device_id, "aabbcc001123",
        "surrounding whitespace trimmed"
    );
    assert_eq!(rsa.fields["serial"], "s,2");
    // Empty MAC and no CN: the certificate id.
    let anon = accepted(&entries, 2);
    assert_eq!(anon.device_id, sha256_hex(&anon_der));
    assert_eq!(anon.cn, None);
    // The same certificate again: only its first occurrence is imported.
    let (error, message, device) = rejected(&entries, 3);
    assert_eq!(error, ErrorName::DuplicateCertificate);
    assert!(message.contains(&anon.certificate_id), "{message}");
    assert_eq!(device, Some(anon.device_id));
}

#[test]
fn empty_mac_falls_back_to_the_cn() {
    let (_, pem) = certificate(Some("by-cn"), false);
    let csv = format!("MAC,cert\n,\"{pem}\"\n");
    let entries = read_all(csv.as_bytes()).unwrap();
    assert_eq!(accepted(&entries, 0).device_id, "by-cn");
}

#[test]
fn missing_columns_fail_the_manifest_naming_them() {
    let err = read_all(b"serial,cert\n1,x\n").unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(
            err,
            ManifestError::Malformed {
                supplier: Supplier::Espressif,
                ..
            }
        ),
        "{text}"
    );
    assert!(text.contains("no MAC column"), "{text}");
    assert!(text.contains("serial, cert"), "{text}");
    let text = read_all(b"MAC,certificate\n1,x\n").unwrap_err().to_string();
    assert!(text.contains("no cert column"), "{text}");
    let text = read_all(b"id\n1\n").unwrap_err().to_string();
    assert!(text.contains("no MAC and cert columns"), "{text}");
}

#[test]
fn bad_rows_are_rejected_alone_and_the_rest_imports() {
    let (good_der, good_pem) = certificate(Some("good"), false);
    let (_, other_pem) = certificate(Some("other"), false);
    let csv = format!(
        "MAC,cert,note\n\
         M0,\"{good_pem}\",first\n\
         M1,,empty cert\n\
         M2,\"-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\",bad pem\n\
         M3,\"{good_pem}\"\n\
         M4,\"{good_pem}\",too,many\n\
         M5,\"{other_pem}\",last\n"
    );
    let entries = read_all(csv.as_bytes()).unwrap();
    assert_eq!(entries.len(), 6);
    assert_eq!(accepted(&entries, 0).certificate_id, sha256_hex(&good_der));
    let (error, message, device) = rejected(&entries, 1);
    assert_eq!(error, ErrorName::MissingCertificate);
    assert!(
        message.contains("record 1") && message.contains("M1"),
        "{message}"
    );
    assert_eq!(device.as_deref(), Some("M1"));
    let (error, message, _) = rejected(&entries, 2);
    assert_eq!(error, ErrorName::InvalidCertificate);
    assert!(message.contains("M2"), "{message}");
    for index in [3, 4] {
        let (error, message, _) = rejected(&entries, index);
        assert_eq!(error, ErrorName::InvalidCertificate);
        assert!(
            message.contains("fields where the header has 3"),
            "{message}"
        );
    }
    assert_eq!(accepted(&entries, 5).device_id, "M5");

    // An unbalanced quote swallows the following records into one field: that entry is
    // rejected, nothing is silently dropped or imported under the wrong MAC.
    let csv = format!("MAC,cert\nQ0,\"{good_pem}\nQ1,\"{other_pem}\"\nQ2,\"{other_pem}\"\n");
    let entries = read_all(csv.as_bytes()).unwrap();
    assert!(!entries.is_empty());
    let (error, _, _) = rejected(&entries, 0);
    assert_eq!(error, ErrorName::InvalidCertificate);
    for entry in &entries {
        if let Entry::Accepted(a) = entry {
            assert_ne!(a.device_id, "Q0");
        }
    }
}

#[test]
fn a_record_over_max_entry_bytes_ends_the_read_naming_it() {
    let (_, pem) = certificate(Some("x"), false);
    let csv = format!("MAC,cert\nM0,\"{pem}\"\nM1,\"{}\"\n", "A".repeat(300_000));
    let mut options = options();
    options.limits.max_entry_bytes = 16 * 1024;
    let results: Vec<_> = read_entries(csv.as_bytes(), &options).unwrap().collect();
    assert!(results[0].is_ok());
    let err = results.last().unwrap().as_ref().unwrap_err();
    assert!(matches!(err, ManifestError::LimitExceeded(_)), "{err}");
    assert!(err.to_string().contains("record 1"), "{err}");
}

#[test]
fn many_rows_keep_their_order_across_batches() {
    let mut csv = String::from("MAC,cert\n");
    for i in 0..2500 {
        let (_, pem) = certificate(Some(&format!("device-{i}")), false);
        csv.push_str(&format!("{i:012X},\"{pem}\"\n"));
    }
    let entries = read_all(csv.as_bytes()).unwrap();
    assert_eq!(entries.len(), 2500);
    for (i, entry) in entries.iter().enumerate() {
        assert_eq!(entry.index(), i as u64);
        assert!(matches!(entry, Entry::Accepted(a) if a.device_id == format!("{i:012X}")));
    }
}

fn drain(bytes: &[u8]) {
    let mut options = options();
    options.limits.max_entry_bytes = 16 * 1024;
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
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        drain(&bytes);
    }

    #[test]
    fn arbitrary_rows_under_a_valid_header_never_panic(body in "[A-Za-z0-9,\"\r\n -]{0,400}") {
        drain(format!("MAC,cert,cn\n{body}").as_bytes());
    }

    #[test]
    fn mutated_sample_never_panics(
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
        truncate in any::<bool>(),
    ) {
        let mut bytes = SAMPLE.to_vec();
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
