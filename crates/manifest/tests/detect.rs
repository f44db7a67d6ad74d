//! Format recognition (`Supplier::Auto`) on the real samples and on inputs that are no manifest.

// Tests state their expectations with unwrap/expect/panic; the workspace lints are for library code.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::BufReader;

use proptest::prelude::*;
use thingpress_manifest::{Entry, ManifestError, Options, Supplier, read_entries};

const UPSTREAM: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../tests/fixtures/upstream/"
);

fn sample(name: &str) -> Vec<u8> {
    std::fs::read(format!("{UPSTREAM}{name}")).unwrap()
}

fn detected(bytes: &[u8]) -> Result<Supplier, ManifestError> {
    read_entries(bytes, &Options::default()).map(|entries| entries.supplier())
}

#[test]
fn real_samples_are_recognised() {
    for (name, supplier) in [
        ("ECC608C-TNGTLSU-B.json", Supplier::Microchip),
        ("ECC608-TMNGTLSS-B.json", Supplier::Microchip),
        ("certificates_test.txt", Supplier::Pem),
        ("single.pem", Supplier::Pem),
        ("manifest-espressif.csv", Supplier::Espressif),
        ("manifest-infineon.7z", Supplier::Infineon),
    ] {
        assert_eq!(detected(&sample(name)).unwrap(), supplier, "{name}");
    }
}

#[test]
fn detection_consumes_nothing_even_through_a_small_buffer() {
    let bytes = sample("ECC608C-TNGTLSU-B.json");
    let count = |options: &Options, capacity: usize| {
        read_entries(BufReader::with_capacity(capacity, &bytes[..]), options)
            .unwrap()
            .filter(|e| matches!(e, Ok(Entry::Accepted(_))))
            .count()
    };
    let explicit = Options {
        supplier: Supplier::Microchip,
        ..Options::default()
    };
    assert_eq!(count(&explicit, 8192), 10);
    assert_eq!(count(&Options::default(), 8192), 10);
    assert_eq!(count(&Options::default(), 1), 10);

    let lines = sample("certificates_test.txt");
    let auto = read_entries(BufReader::new(&lines[..]), &Options::default()).unwrap();
    assert_eq!(
        auto.filter(|e| matches!(e, Ok(Entry::Accepted(_)))).count(),
        100
    );
}

#[test]
fn byte_order_mark_and_leading_whitespace_are_skipped() {
    let mut bytes = b"\xEF\xBB\xBF\r\n  \t".to_vec();
    bytes.extend_from_slice(&sample("ECC608C-TNGTLSU-B.json"));
    assert_eq!(detected(&bytes).unwrap(), Supplier::Microchip);
    let mut pem = b"\n\n".to_vec();
    pem.extend_from_slice(&sample("single.pem"));
    assert_eq!(detected(&pem).unwrap(), Supplier::Pem);
}

#[test]
fn unknown_inputs_are_clear_errors() {
    let reason = |bytes: &[u8]| match detected(bytes) {
        Err(ManifestError::UnknownFormat(reason)) => reason,
        other => panic!("{other:?}"),
    };
    assert!(reason(b"").contains("empty"));
    assert!(reason(b" \r\n\t ").contains("whitespace"));
    assert!(reason(b"{\"a\": 1}").contains("JSON arrays"));
    assert!(reason(b"id,name\n1,x\n").contains("neither JSON, XML, 7z"));
    assert!(reason(b"PK\x03\x04 zip file").contains("neither JSON, XML, 7z"));
    assert!(reason(b"hello").contains("hello"));
}

fn drain(bytes: &[u8]) {
    if let Ok(entries) = read_entries(bytes, &Options::default()) {
        assert_ne!(entries.supplier(), Supplier::Auto);
        for item in entries {
            if let Ok(Entry::Accepted(a)) = item {
                assert_eq!(a.certificate_id.len(), 64);
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..1024)) {
        drain(&bytes);
    }

    #[test]
    fn arbitrary_bytes_after_each_marker_never_panic(
        marker in prop::sample::select(vec![
            &b"["[..], b"<", b"-----BEGIN CERTIFICATE-----\n", b"MAC,cert\n",
            b"MIIB", b"7z\xBC\xAF\x27\x1C", b"\xEF\xBB\xBF ["
        ]),
        bytes in proptest::collection::vec(any::<u8>(), 0..1024),
    ) {
        let mut input = marker.to_vec();
        input.extend_from_slice(&bytes);
        drain(&input);
    }
}
