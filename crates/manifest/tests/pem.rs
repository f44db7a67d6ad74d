//! PEM manifests: the real base64(PEM)-per-line sample, generated bundles and base64(DER) lines,
//! per-entry rejections, fatal inputs and never-panic properties.

// Tests state their expectations with unwrap/expect/panic; the workspace lints are for library code.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;

use aws_lc_rs::digest::{SHA256, digest};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use proptest::prelude::*;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType, IsCa, KeyPair,
};
use thingpress_manifest::{
    Accepted, Entry, ErrorKind, ErrorName, Limits, ManifestError, Options, Rejected, Supplier,
    read_entries,
};

const LINES: &str = include_str!("../../../tests/fixtures/upstream/certificates_test.txt");
const SINGLE: &str = include_str!("../../../tests/fixtures/upstream/single.pem");

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(digest(&SHA256, bytes).as_ref())
}

fn pem_options() -> Options {
    Options {
        supplier: Supplier::Pem,
        ..Options::default()
    }
}

fn read(bytes: &[u8], options: &Options) -> Vec<Entry> {
    read_entries(bytes, options)
        .unwrap()
        .map(|item| item.unwrap())
        .collect()
}

fn accepted(entry: &Entry) -> &Accepted {
    match entry {
        Entry::Accepted(a) => a,
        Entry::Rejected(r) => panic!("entry {} rejected: {}", r.index, r.message),
    }
}

fn rejected(entry: &Entry) -> &Rejected {
    match entry {
        Entry::Rejected(r) => r,
        Entry::Accepted(a) => panic!("entry {} accepted", a.index),
    }
}

/// DER of the first CERTIFICATE block, decoded here without the crate's helpers.
fn der_of_pem(pem: &str) -> Vec<u8> {
    let body: String = pem
        .lines()
        .skip_while(|l| !l.starts_with("-----BEGIN CERTIFICATE-----"))
        .skip(1)
        .take_while(|l| !l.starts_with("-----END"))
        .map(str::trim)
        .collect();
    STANDARD.decode(body).unwrap()
}

#[test]
fn real_base64_pem_lines_give_one_hundred_devices() {
    let entries = read(LINES.as_bytes(), &pem_options());
    let lines: Vec<&str> = LINES.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(entries.len(), 100);
    assert_eq!(lines.len(), 100);
    let mut names = BTreeSet::new();
    for (i, (entry, line)) in entries.iter().zip(&lines).enumerate() {
        let a = accepted(entry);
        let pem = String::from_utf8(STANDARD.decode(line.trim()).unwrap()).unwrap();
        assert_eq!(a.index, i as u64);
        assert_eq!(a.certificate_id, sha256_hex(&der_of_pem(&pem)));
        assert_eq!(Some(a.device_id.as_str()), a.cn.as_deref());
        assert!(a.chain.is_empty());
        assert_eq!(der_of_pem(&a.certificate_pem), der_of_pem(&pem));
        names.insert(a.device_id.clone());
    }
    let expected: BTreeSet<String> = (0..100).map(|i| format!("Device-{i}")).collect();
    assert_eq!(names, expected);
}

#[test]
fn real_lines_are_recognised_automatically() {
    let entries = read_entries(LINES.as_bytes(), &Options::default()).unwrap();
    assert_eq!(entries.supplier(), Supplier::Pem);
    assert_eq!(
        entries
            .filter(|e| matches!(e, Ok(Entry::Accepted(_))))
            .count(),
        100
    );
}

#[test]
fn real_single_pem_is_one_device_named_by_cn() {
    let entries = read(SINGLE.as_bytes(), &pem_options());
    assert_eq!(entries.len(), 1);
    let a = accepted(&entries[0]);
    assert_eq!(a.certificate_id, sha256_hex(&der_of_pem(SINGLE)));
    assert_eq!(Some(a.device_id.as_str()), a.cn.as_deref());
}

struct Generated {
    der: Vec<u8>,
    pem: String,
    key_pem: String,
    ca_pem: String,
}

fn generate(rsa: bool, cn: Option<&str>) -> Generated {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.distinguished_name = DistinguishedName::new();
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "Test CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
    let key = if rsa {
        KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).unwrap()
    } else {
        KeyPair::generate().unwrap()
    };
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name = DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::OrganizationName, "Test Devices");
    if let Some(cn) = cn {
        params.distinguished_name.push(DnType::CommonName, cn);
    }
    let cert = params.signed_by(&key, &ca).unwrap();
    Generated {
        der: cert.der().to_vec(),
        pem: cert.pem(),
        key_pem: key.serialize_pem(),
        ca_pem: ca.pem(),
    }
}

#[test]
fn bundle_with_crlf_text_and_a_private_key_gives_each_certificate() {
    let ec = generate(false, Some("device-ec"));
    let rsa = generate(true, Some("device-rsa"));
    let no_cn = generate(false, None);
    let bundle = format!(
        "Bag Attributes\n    friendlyName: x\nsubject=O=Test Devices, CN=device-ec\n{}\n{}\nsome words between\n\n  {}\n{}",
        ec.pem,
        ec.key_pem,
        rsa.pem.replace('\n', "\r\n"),
        no_cn.pem
    );
    let key_body: String = ec.key_pem.lines().nth(1).unwrap().to_owned();
    let entries = read(bundle.as_bytes(), &pem_options());
    assert_eq!(entries.len(), 3);
    let (a, b, c) = (
        accepted(&entries[0]),
        accepted(&entries[1]),
        accepted(&entries[2]),
    );
    assert_eq!(a.certificate_id, sha256_hex(&ec.der));
    assert_eq!(a.device_id, "device-ec");
    assert_eq!(b.certificate_id, sha256_hex(&rsa.der));
    assert_eq!(b.device_id, "device-rsa");
    assert_eq!(c.certificate_id, sha256_hex(&no_cn.der));
    assert_eq!(c.cn, None);
    assert_eq!(
        c.device_id, c.certificate_id,
        "a certificate without CN is named by its id"
    );
    let everything = format!("{entries:?}");
    assert!(
        !everything.contains(&key_body),
        "private key content leaked"
    );
}

#[test]
fn base64_der_and_pem_lines_with_bad_lines_in_between() {
    let ec = generate(false, Some("d1"));
    let rsa = generate(true, Some("d2"));
    let with_chain = generate(false, Some("d3"));
    let lines = [
        format!("  {}  ", STANDARD.encode(&ec.der)),
        String::new(),
        "@@@ not base64 @@@".to_owned(),
        STANDARD.encode(b"valid base64 but no certificate"),
        STANDARD.encode(&rsa.der),
        STANDARD.encode(format!("{}{}", with_chain.pem, with_chain.ca_pem)),
        STANDARD.encode(format!("{}{}", ec.key_pem, "nothing else")),
        STANDARD.encode(&ec.der).trim_end_matches('=').to_owned(),
    ];
    let text = lines.join("\r\n");
    let entries = read(text.as_bytes(), &pem_options());
    assert_eq!(entries.len(), 7);
    assert_eq!(accepted(&entries[0]).certificate_id, sha256_hex(&ec.der));
    let bad = rejected(&entries[1]);
    assert_eq!(bad.error, ErrorName::InvalidCertificate);
    assert!(bad.message.contains("line 3"), "{}", bad.message);
    assert_eq!(rejected(&entries[2]).error, ErrorName::InvalidCertificate);
    assert!(rejected(&entries[2]).message.contains("line 4"));
    assert_eq!(accepted(&entries[3]).certificate_id, sha256_hex(&rsa.der));
    let chained = accepted(&entries[4]);
    assert_eq!(chained.certificate_id, sha256_hex(&with_chain.der));
    assert_eq!(chained.chain.len(), 1);
    assert_eq!(
        der_of_pem(&chained.chain[0]),
        der_of_pem(&with_chain.ca_pem)
    );
    let key_only = rejected(&entries[5]);
    assert!(
        key_only.message.contains("no CERTIFICATE"),
        "{}",
        key_only.message
    );
    // Unpadded base64 of the first line's certificate: decoded, then refused as its repeat.
    let repeat = rejected(&entries[6]);
    assert_eq!(repeat.error, ErrorName::DuplicateCertificate);
    assert!(repeat.message.contains(&sha256_hex(&ec.der)));
    for (i, entry) in entries.iter().enumerate() {
        assert_eq!(entry.index(), i as u64);
    }
}

#[test]
fn bad_blocks_are_rejected_and_the_rest_go_on() {
    let ec = generate(false, Some("d1"));
    let text = format!(
        "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n\
         -----BEGIN CERTIFICATE-----\nMAMCAQE=\n-----END CERTIFICATE-----\n{}\
         -----BEGIN CERTIFICATE-----\nMIIB\n",
        ec.pem
    );
    let entries = read(text.as_bytes(), &pem_options());
    assert_eq!(entries.len(), 4);
    assert!(rejected(&entries[0]).message.contains("base64"));
    assert!(rejected(&entries[1]).message.contains("line 4"));
    assert_eq!(accepted(&entries[2]).certificate_id, sha256_hex(&ec.der));
    assert!(rejected(&entries[3]).message.contains("no END line"));
}

#[test]
fn inputs_without_any_certificate_are_fatal() {
    let key = generate(false, None).key_pem;
    for input in ["", "\n \n", "just some words\n", key.as_str()] {
        match read_entries(input.as_bytes(), &pem_options()) {
            Err(ManifestError::Malformed {
                supplier, reason, ..
            }) => {
                assert_eq!(supplier, Supplier::Pem);
                assert!(!reason.contains("MII"), "{reason}");
            }
            Err(other) => panic!("{other}"),
            Ok(_) => panic!("{input:?} accepted"),
        }
    }
}

#[test]
fn oversized_lines_are_rejected_alone() {
    let ec = generate(false, Some("d1"));
    let line = STANDARD.encode(&ec.der);
    let options = Options {
        limits: Limits {
            max_entry_bytes: line.len() as u64,
            ..Limits::default()
        },
        ..pem_options()
    };
    let long = "A".repeat(5000);
    let text = format!("{line}\n{long}\n{line}\n");
    let entries = read(text.as_bytes(), &options);
    assert_eq!(entries.len(), 3);
    accepted(&entries[0]);
    assert!(rejected(&entries[1]).message.contains("entry limit"));
    // Read and decoded after the long line (then refused as a repeat of entry 0).
    assert_eq!(rejected(&entries[2]).error, ErrorName::DuplicateCertificate);
}

fn drain(bytes: &[u8], options: &Options) {
    if let Ok(entries) = read_entries(bytes, options) {
        for item in entries {
            match item {
                Ok(Entry::Accepted(a)) => assert_eq!(a.certificate_id.len(), 64),
                Ok(Entry::Rejected(r)) => assert_eq!(r.error.kind(), ErrorKind::Entry),
                Err(_) => {}
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        drain(&bytes, &pem_options());
        let mut bundle = b"-----BEGIN CERTIFICATE-----\n".to_vec();
        bundle.extend_from_slice(&bytes);
        drain(&bundle, &pem_options());
    }

    #[test]
    fn mutated_real_lines_never_panic(
        edits in proptest::collection::vec((0usize..6000, any::<u8>(), 0u8..3), 1..8)
    ) {
        let mut bytes = LINES.as_bytes()[..6000].to_vec();
        for (at, byte, op) in edits {
            let at = at.min(bytes.len().saturating_sub(1));
            match op {
                0 => bytes[at] ^= byte | 1,
                1 => bytes.insert(at, byte),
                _ => { bytes.remove(at); }
            }
        }
        drain(&bytes, &pem_options());
        drain(&bytes, &Options::default());
    }

    #[test]
    fn mutated_pem_bundle_never_panics(
        edits in proptest::collection::vec((0usize..1269, any::<u8>(), 0u8..3), 1..8)
    ) {
        let mut bytes = SINGLE.as_bytes().to_vec();
        for (at, byte, op) in edits {
            let at = at.min(bytes.len().saturating_sub(1));
            match op {
                0 => bytes[at] ^= byte | 1,
                1 => bytes.insert(at, byte),
                _ => { bytes.remove(at); }
            }
        }
        drain(&bytes, &pem_options());
    }
}
