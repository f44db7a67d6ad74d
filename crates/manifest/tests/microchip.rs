//! Microchip manifests: the real samples, generated manifests covering every rule, broken arrays,
//! and never-panic properties.

// Tests state their expectations with unwrap/expect/panic; the workspace lints are for library code.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use aws_lc_rs::digest::{SHA256, digest};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{self as sig, EcdsaKeyPair, Ed25519KeyPair, RsaKeyPair};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use proptest::prelude::*;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType, IsCa, KeyPair,
    SignatureAlgorithm,
};
use serde_json::{Value, json};
use thingpress_manifest::{
    Accepted, Entry, ErrorName, Limits, ManifestError, Options, Rejected, Supplier, Verifiers,
    read_entries,
};
use x509_parser::prelude::FromDer;

const TNGTLSU: &str = include_str!("../../../tests/fixtures/upstream/ECC608C-TNGTLSU-B.json");
const TMNGTLSS: &str = include_str!("../../../tests/fixtures/upstream/ECC608-TMNGTLSS-B.json");

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(digest(&SHA256, bytes).as_ref())
}

fn options(verifiers: Verifiers) -> Options {
    Options {
        supplier: Supplier::Microchip,
        verifiers,
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
        Entry::Rejected(r) => panic!("entry {} rejected: {} {}", r.index, r.error, r.message),
    }
}

fn rejected(entry: &Entry) -> &Rejected {
    match entry {
        Entry::Rejected(r) => r,
        Entry::Accepted(a) => panic!("entry {} accepted", a.index),
    }
}

fn payload_of(jws: &Value) -> Value {
    let b64 = jws["payload"].as_str().unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(b64).unwrap()).unwrap()
}

#[test]
fn real_trust_and_go_sample_gives_ten_verified_certificates() {
    let raw: Vec<Value> = serde_json::from_str(TNGTLSU).unwrap();
    let entries = read(TNGTLSU.as_bytes(), &options(Verifiers::default()));
    assert_eq!(entries.len(), 10);
    assert_eq!(raw.len(), 10);
    for (i, (entry, jws)) in entries.iter().zip(&raw).enumerate() {
        let a = accepted(entry);
        let payload = payload_of(jws);
        let x5c = payload["publicKeySet"]["keys"][0]["x5c"]
            .as_array()
            .unwrap();
        let der = STANDARD.decode(x5c[0].as_str().unwrap()).unwrap();
        assert_eq!(a.index, i as u64);
        assert_eq!(a.certificate_id, sha256_hex(&der));
        assert_eq!(a.device_id, jws["header"]["uniqueId"].as_str().unwrap());
        assert_eq!(a.chain.len(), 1);
        assert!(a.chain[0].starts_with("-----BEGIN CERTIFICATE-----\n"));
        assert!(
            a.certificate_pem
                .starts_with("-----BEGIN CERTIFICATE-----\n")
        );
        assert_eq!(a.fields["partNumber"], "ATECC608C-TNGTLSU-B");
        assert_eq!(a.fields["manufacturer"], "Microchip Technology Inc");
        assert_eq!(a.fields["version"], "1");
        assert_eq!(a.fields["uniqueId"], a.device_id);
        assert_eq!(a.fields["groupId"], payload["groupId"].as_str().unwrap());
        assert_eq!(a.cn.as_deref().map(|cn| cn.starts_with("sn")), Some(true));
    }
}

#[test]
fn real_sample_is_recognised_automatically() {
    let entries = read(TNGTLSU.as_bytes(), &Options::default());
    assert_eq!(entries.len(), 10);
    assert!(entries.iter().all(|e| matches!(e, Entry::Accepted(_))));
    let stream = read_entries(TNGTLSU.as_bytes(), &Options::default()).unwrap();
    assert_eq!(stream.supplier(), Supplier::Microchip);
}

#[test]
fn real_sample_without_public_key_set_is_all_missing_certificate() {
    let raw: Vec<Value> = serde_json::from_str(TMNGTLSS).unwrap();
    let entries = read(TMNGTLSS.as_bytes(), &options(Verifiers::default()));
    assert_eq!(entries.len(), raw.len());
    assert!(!entries.is_empty());
    for (entry, jws) in entries.iter().zip(&raw) {
        let r = rejected(entry);
        assert_eq!(r.error, ErrorName::MissingCertificate, "{}", r.message);
        assert_eq!(r.device_id.as_deref(), jws["header"]["uniqueId"].as_str());
    }
}

#[test]
fn real_sample_without_verifiers_is_all_unknown_signer() {
    let entries = read(TNGTLSU.as_bytes(), &options(Verifiers::empty()));
    assert_eq!(entries.len(), 10);
    for entry in &entries {
        let r = rejected(entry);
        assert_eq!(r.error, ErrorName::UnknownSigner);
        assert!(
            r.message.contains("TCnpnzYB8M3CO776ByPJ2yX3KYo"),
            "{}",
            r.message
        );
    }
}

#[test]
fn tampered_real_entry_fails_its_signature_only() {
    let mut raw: Vec<Value> = serde_json::from_str(TNGTLSU).unwrap();
    // Re-encode entry 3's payload with another groupId: same shape, different signed bytes.
    let mut payload = payload_of(&raw[3]);
    payload["groupId"] = json!("ATTACKER");
    raw[3]["payload"] = json!(URL_SAFE_NO_PAD.encode(payload.to_string()));
    let bytes = serde_json::to_vec(&raw).unwrap();
    let entries = read(&bytes, &options(Verifiers::default()));
    assert_eq!(entries.len(), 10);
    for (i, entry) in entries.iter().enumerate() {
        if i == 3 {
            assert_eq!(rejected(entry).error, ErrorName::InvalidSignature);
        } else {
            accepted(entry);
        }
    }
}

// ---- generated manifests ----

/// A manifest signer: certificate, key id, thumbprint and a JWS signing function.
struct TestSigner {
    pem: String,
    kid: String,
    x5t: String,
    alg: &'static str,
    key: KeyPair,
}

impl TestSigner {
    fn new(alg: &'static str) -> TestSigner {
        let rcgen_alg: &'static SignatureAlgorithm = match alg {
            "ES256" => &rcgen::PKCS_ECDSA_P256_SHA256,
            "ES384" => &rcgen::PKCS_ECDSA_P384_SHA384,
            "RS256" | "PS256" => &rcgen::PKCS_RSA_SHA256,
            "EdDSA" => &rcgen::PKCS_ED25519,
            other => panic!("no test signer for {other}"),
        };
        let key = KeyPair::generate_for(rcgen_alg).unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, format!("Test Manifest Signer {alg}"));
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let cert = params.self_signed(&key).unwrap();
        TestSigner {
            pem: cert.pem(),
            kid: URL_SAFE_NO_PAD.encode(params.key_identifier(&key)),
            x5t: URL_SAFE_NO_PAD.encode(digest(&SHA256, cert.der()).as_ref()),
            alg,
            key,
        }
    }

    fn sign(&self, message: &[u8]) -> Vec<u8> {
        let rng = SystemRandom::new();
        let pkcs8 = self.key.serialized_der();
        match self.alg {
            "ES256" | "ES384" => {
                let fixed = if self.alg == "ES256" {
                    &sig::ECDSA_P256_SHA256_FIXED_SIGNING
                } else {
                    &sig::ECDSA_P384_SHA384_FIXED_SIGNING
                };
                let key = EcdsaKeyPair::from_pkcs8(fixed, pkcs8).unwrap();
                key.sign(&rng, message).unwrap().as_ref().to_vec()
            }
            "RS256" | "PS256" => {
                let key = RsaKeyPair::from_pkcs8(pkcs8).unwrap();
                let mut out = vec![0; key.public_modulus_len()];
                let padding: &dyn sig::RsaEncoding = if self.alg == "RS256" {
                    &sig::RSA_PKCS1_SHA256
                } else {
                    &sig::RSA_PSS_SHA256
                };
                key.sign(padding, &rng, message, &mut out).unwrap();
                out
            }
            "EdDSA" => {
                let key = Ed25519KeyPair::from_pkcs8(pkcs8).unwrap();
                key.sign(message).as_ref().to_vec()
            }
            other => panic!("cannot sign {other}"),
        }
    }

    fn verifiers(&self) -> Verifiers {
        Verifiers::from_pem(&self.pem).unwrap()
    }
}

/// A device: its certificate (issued by a device CA) and its JWK.
struct Device {
    der: Vec<u8>,
    ca_der: Vec<u8>,
    jwk: Value,
}

fn device(rsa: bool, cn: Option<&str>) -> Device {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.distinguished_name = DistinguishedName::new();
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "Test Device CA");
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
        .push(DnType::OrganizationName, "Test Devices Inc");
    if let Some(cn) = cn {
        params.distinguished_name.push(DnType::CommonName, cn);
    }
    let cert = params.signed_by(&key, &ca).unwrap();
    Device {
        der: cert.der().to_vec(),
        ca_der: ca.der().to_vec(),
        jwk: jwk_of(&key, rsa),
    }
}

fn jwk_of(key: &KeyPair, rsa: bool) -> Value {
    let raw = key.public_key_raw();
    if rsa {
        let (_, rsa_key) = x509_parser::public_key::RSAPublicKey::from_der(raw).unwrap();
        let strip = |b: &[u8]| {
            b.iter()
                .skip_while(|&&x| x == 0)
                .copied()
                .collect::<Vec<_>>()
        };
        json!({"kty": "RSA",
               "n": URL_SAFE_NO_PAD.encode(strip(rsa_key.modulus)),
               "e": URL_SAFE_NO_PAD.encode(strip(rsa_key.exponent))})
    } else {
        assert_eq!(raw.len(), 65);
        json!({"kty": "EC", "crv": "P-256",
               "x": URL_SAFE_NO_PAD.encode(&raw[1..33]),
               "y": URL_SAFE_NO_PAD.encode(&raw[33..])})
    }
}

fn payload(unique_id: &str, device: &Device) -> Value {
    let mut jwk = device.jwk.clone();
    jwk["kid"] = json!("0");
    jwk["x5c"] = json!([
        STANDARD.encode(&device.der),
        STANDARD.encode(&device.ca_der)
    ]);
    let org = |unit: &str| json!({"organizationName": "Test Devices Inc", "organizationalUnitName": unit});
    json!({
        "version": 1,
        "model": "ATECC608C",
        "partNumber": "ATECC608C-TEST",
        "manufacturer": org("Secure Products"),
        "provisioner": org("Provisioning"),
        "distributor": org("Direct"),
        "groupId": "GROUP1",
        "provisioningTimestamp": "2025-06-01T20:14:53.773Z",
        "uniqueId": unique_id,
        "publicKeySet": {"keys": [
            {"kid": "1", "kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"},
            jwk
        ]}
    })
}

/// A flattened JWS entry with the given protected header fields.
fn jws_with(signer: &TestSigner, protected: Value, header_id: &str, payload: &Value) -> Value {
    let protected = URL_SAFE_NO_PAD.encode(protected.to_string());
    let payload = URL_SAFE_NO_PAD.encode(payload.to_string());
    let signature = signer.sign(format!("{protected}.{payload}").as_bytes());
    json!({
        "payload": payload,
        "protected": protected,
        "header": {"uniqueId": header_id},
        "signature": URL_SAFE_NO_PAD.encode(signature)
    })
}

fn jws(signer: &TestSigner, header_id: &str, payload: &Value) -> Value {
    let protected =
        json!({"alg": signer.alg, "kid": signer.kid, "typ": "JWT", "x5t#S256": signer.x5t});
    jws_with(signer, protected, header_id, payload)
}

fn manifest(entries: &[Value]) -> Vec<u8> {
    serde_json::to_vec_pretty(&Value::Array(entries.to_vec())).unwrap()
}

#[test]
fn ec_rsa_and_cn_less_device_certificates_are_accepted() {
    let signer = TestSigner::new("ES256");
    let ec = device(false, Some("sn0123EC"));
    let rsa = device(true, Some("sn0123RSA"));
    let no_cn = device(false, None);
    let bytes = manifest(&[
        jws(&signer, "0123ec", &payload("0123ec", &ec)),
        jws(&signer, "0123rsa", &payload("0123rsa", &rsa)),
        jws(&signer, "0123nocn", &payload("0123nocn", &no_cn)),
    ]);
    let entries = read(&bytes, &options(signer.verifiers()));
    assert_eq!(entries.len(), 3);
    let (a, b, c) = (
        accepted(&entries[0]),
        accepted(&entries[1]),
        accepted(&entries[2]),
    );
    assert_eq!(a.certificate_id, sha256_hex(&ec.der));
    assert_eq!(a.device_id, "0123ec");
    assert_eq!(a.cn.as_deref(), Some("sn0123EC"));
    assert_eq!(a.chain.len(), 1);
    assert_eq!(a.fields["provisioner"], "Test Devices Inc");
    assert_eq!(
        a.fields["provisioningTimestamp"],
        "2025-06-01T20:14:53.773Z"
    );
    assert_eq!(b.certificate_id, sha256_hex(&rsa.der));
    assert_eq!(b.cn.as_deref(), Some("sn0123RSA"));
    assert_eq!(c.certificate_id, sha256_hex(&no_cn.der));
    assert_eq!(c.cn, None);
    assert_eq!(c.device_id, "0123nocn");
    // The PEM is the same certificate.
    let pem_der = x509_parser::pem::parse_x509_pem(a.certificate_pem.as_bytes())
        .unwrap()
        .1
        .contents;
    assert_eq!(pem_der, ec.der);
}

#[test]
fn other_jws_algorithms_verify() {
    let ec = device(false, Some("dev"));
    for alg in ["ES384", "RS256", "PS256", "EdDSA"] {
        let signer = TestSigner::new(alg);
        let bytes = manifest(&[jws(&signer, "01", &payload("01", &ec))]);
        let entries = read(&bytes, &options(signer.verifiers()));
        assert_eq!(accepted(&entries[0]).device_id, "01", "{alg}");
    }
}

#[test]
fn signer_is_found_by_kid_or_by_thumbprint_and_builtins_can_be_added() {
    let signer = TestSigner::new("ES256");
    let ec = device(false, Some("dev"));
    let p = payload("01", &ec);
    let by_kid = jws_with(
        &signer,
        json!({"alg": "ES256", "kid": signer.kid}),
        "01",
        &p,
    );
    let by_x5t = jws_with(
        &signer,
        json!({"alg": "ES256", "x5t#S256": signer.x5t}),
        "02",
        &payload("02", &device(false, Some("dev2"))),
    );
    let neither = jws_with(&signer, json!({"alg": "ES256"}), "01", &p);
    let bytes = manifest(&[by_kid, by_x5t, neither]);
    let verifiers = signer.verifiers().with_builtin();
    assert_eq!(verifiers.len(), 6);
    let entries = read(&bytes, &options(verifiers));
    accepted(&entries[0]);
    accepted(&entries[1]);
    assert_eq!(rejected(&entries[2]).error, ErrorName::UnknownSigner);
    // The real sample still verifies with the extended set.
    let real = read(
        TNGTLSU.as_bytes(),
        &options(signer.verifiers().with_builtin()),
    );
    assert!(real.iter().all(|e| matches!(e, Entry::Accepted(_))));
}

/// One broken copy of the entry `signer` signed over `good` (uniqueId "01") per rejection rule,
/// each with the error it must get and a text its message must hold.
fn rejection_cases(signer: &TestSigner, good: &Value) -> Vec<(Value, ErrorName, &'static str)> {
    let stranger = TestSigner::new("ES256");
    let other = device(false, Some("other"));

    let mut bad_signature = jws(signer, "01", good);
    let mut forged = good.clone();
    forged["groupId"] = json!("FORGED");
    bad_signature["payload"] = json!(URL_SAFE_NO_PAD.encode(forged.to_string()));

    let unknown_signer = jws(&stranger, "01", good);
    let id_mismatch = jws(signer, "02", good);

    let device_key = |edit: fn(&mut Value, &Value)| {
        let mut edited = good.clone();
        edit(&mut edited["publicKeySet"]["keys"][1], &other.jwk);
        jws(signer, "01", &edited)
    };
    let key_mismatch = device_key(|key, other| key["x"] = other["x"].clone());
    let missing_x5c = device_key(|key, _| {
        key.as_object_mut().unwrap().remove("x5c");
    });
    let invalid_der =
        device_key(|key, _| key["x5c"][0] = json!(STANDARD.encode(b"\x30\x03\x02\x01\x01")));
    let invalid_b64 = device_key(|key, _| key["x5c"][0] = json!("not base64!"));
    let invalid_chain = device_key(|key, _| key["x5c"][1] = json!(STANDARD.encode(b"junk")));

    let mut no_set = good.clone();
    no_set.as_object_mut().unwrap().remove("publicKeySet");
    let missing_set = jws(signer, "01", &no_set);

    let hs256 = jws_with(
        signer,
        json!({"alg": "HS256", "kid": signer.kid}),
        "01",
        good,
    );
    let wrong_alg = jws_with(
        signer,
        json!({"alg": "RS256", "kid": signer.kid}),
        "01",
        good,
    );
    let no_header_id = {
        let mut entry = jws(signer, "01", good);
        entry.as_object_mut().unwrap().remove("header");
        entry
    };
    let not_jws = json!({"payload": 5, "protected": "x", "signature": "y"});

    vec![
        (
            bad_signature,
            ErrorName::InvalidSignature,
            "does not verify",
        ),
        (unknown_signer, ErrorName::UnknownSigner, "no verifier"),
        (id_mismatch, ErrorName::DeviceIdMismatch, "differs"),
        (key_mismatch, ErrorName::KeyMismatch, "differs from the JWK"),
        (missing_x5c, ErrorName::MissingCertificate, "x5c"),
        (missing_set, ErrorName::MissingCertificate, "publicKeySet"),
        (invalid_der, ErrorName::InvalidCertificate, "x5c[0]"),
        (invalid_b64, ErrorName::InvalidCertificate, "base64"),
        (invalid_chain, ErrorName::InvalidCertificate, "x5c[1]"),
        (hs256, ErrorName::InvalidSignature, "HS256"),
        (wrong_alg, ErrorName::InvalidSignature, "RS256"),
        (
            no_header_id,
            ErrorName::DeviceIdMismatch,
            "header has no uniqueId",
        ),
        (not_jws, ErrorName::InvalidSignature, "not a flattened JWS"),
    ]
}

#[test]
fn every_rejection_rule_names_its_error() {
    let signer = TestSigner::new("ES256");
    let good = payload("01", &device(false, Some("dev")));
    let cases = rejection_cases(&signer, &good);
    let mut all: Vec<Value> = vec![jws(&signer, "01", &good)];
    all.extend(cases.iter().map(|(entry, _, _)| entry.clone()));
    // A different certificate: the first one's again would be a DuplicateCertificate.
    all.push(jws(
        &signer,
        "03",
        &payload("03", &device(false, Some("last"))),
    ));
    let entries = read(&manifest(&all), &options(signer.verifiers()));
    assert_eq!(entries.len(), cases.len() + 2);
    accepted(&entries[0]);
    accepted(entries.last().unwrap());
    for (i, (_, error, text)) in cases.iter().enumerate() {
        let r = rejected(&entries[i + 1]);
        assert_eq!(r.index, (i + 1) as u64);
        assert_eq!(r.error, *error, "case {i}: {}", r.message);
        assert!(
            r.message.contains(text),
            "case {i}: {:?} lacks {text:?}",
            r.message
        );
    }
    assert_eq!(rejected(&entries[3]).device_id.as_deref(), Some("02"));
}

#[test]
fn whitespace_crlf_and_many_batches_keep_order() {
    let signer = TestSigner::new("ES256");
    let ec = device(false, Some("dev"));
    let good = jws(&signer, "01", &payload("01", &ec));
    let bad = jws(&signer, "02", &payload("01", &ec));
    let n = 2500;
    let items: Vec<String> = (0..n)
        .map(|i| {
            let entry = if i % 7 == 3 { &bad } else { &good };
            serde_json::to_string_pretty(entry)
                .unwrap()
                .replace('\n', "\r\n")
        })
        .collect();
    let text = format!(
        "\u{feff}\r\n [\r\n\t{}\r\n ]\r\n\r\n",
        items.join(" ,\r\n\t")
    );
    let entries = read(text.as_bytes(), &options(signer.verifiers()));
    assert_eq!(entries.len(), n);
    for (i, entry) in entries.iter().enumerate() {
        assert_eq!(entry.index(), i as u64);
        // Every good entry after the first repeats its certificate.
        let expected = match i {
            _ if i % 7 == 3 => Some(ErrorName::DeviceIdMismatch),
            0 => None,
            _ => Some(ErrorName::DuplicateCertificate),
        };
        let error = match entry {
            Entry::Rejected(r) => Some(r.error),
            Entry::Accepted(_) => None,
        };
        assert_eq!(error, expected, "entry {i}");
    }
}

#[test]
fn parallel_validation_matches_serial_in_file_order_with_bad_signatures_mixed_in() {
    let signer = TestSigner::new("ES256");
    let stranger = TestSigner::new("ES256");
    let devices: Vec<Device> = (0..16)
        .map(|i| device(false, Some(&format!("dev{i}"))))
        .collect();
    // Four batches and a short one, so several are validated ahead of the consumer at once.
    let n = 4 * 1024 + 100;
    let entries: Vec<Value> = (0..n)
        .map(|i| {
            let id = format!("{i:06x}");
            let body = payload(&id, &devices[i % devices.len()]);
            match i % 11 {
                // Signed over another payload: the signature does not verify.
                2 | 9 => {
                    let mut entry = jws(&signer, &id, &body);
                    entry["signature"] =
                        jws(&signer, &id, &payload("other", &devices[0]))["signature"].clone();
                    entry
                }
                5 => jws(&stranger, &id, &body),
                _ => jws(&signer, &id, &body),
            }
        })
        .collect();
    let bytes = manifest(&entries);
    let options = options(signer.verifiers());
    // On a one-thread pool batches are validated in place, one entry after another.
    let serial_pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    let serial = serial_pool.install(|| read(&bytes, &options));
    // From a thread outside the pool, batches are validated ahead on every core.
    let parallel = read(&bytes, &options);
    assert_eq!(parallel.len(), n);
    let mut seen = std::collections::HashSet::new();
    for (i, entry) in parallel.iter().enumerate() {
        assert_eq!(entry.index(), i as u64);
        let expected = match i % 11 {
            2 | 9 => Some(ErrorName::InvalidSignature),
            5 => Some(ErrorName::UnknownSigner),
            // Each device's certificate is accepted once, at its first good entry.
            _ if seen.insert(i % devices.len()) => None,
            _ => Some(ErrorName::DuplicateCertificate),
        };
        let error = match entry {
            Entry::Rejected(r) => Some(r.error),
            Entry::Accepted(_) => None,
        };
        assert_eq!(error, expected, "entry {i}");
    }
    assert!(parallel == serial, "parallel and serial validation differ");
}

fn fatal(bytes: &[u8], options: &Options) -> ManifestError {
    match read_entries(bytes, options) {
        Err(e) => e,
        Ok(entries) => entries
            .filter_map(Result::err)
            .next()
            .expect("a fatal error"),
    }
}

#[test]
fn broken_arrays_are_malformed_with_the_entry_index() {
    let signer = TestSigner::new("ES256");
    let ec = device(false, Some("dev"));
    let one = serde_json::to_string(&jws(&signer, "01", &payload("01", &ec))).unwrap();
    let opts = options(signer.verifiers());
    let cases = [
        ("not json at all".to_owned(), Some(0)),
        (one.clone(), Some(0)),
        (format!("[{one},{one}"), Some(2)),
        (format!("[{one},{}", &one[..one.len() / 2]), Some(1)),
        (format!("[{one},{one},]"), Some(2)),
        (format!("[{one}] trailing"), Some(1)),
        (format!("[{one},{{\"payload\" \"x\"}}]"), Some(1)),
        (format!("[{one}, 42]"), Some(1)),
    ];
    for (text, at) in cases {
        match fatal(text.as_bytes(), &opts) {
            ManifestError::Malformed {
                supplier,
                at: got,
                reason,
            } => {
                assert_eq!(supplier, Supplier::Microchip);
                assert_eq!(got, at, "{reason}");
            }
            other => panic!("{other}"),
        }
    }
    // Entries before the break are still delivered, in order.
    let text = format!("[{one},{one}");
    let items: Vec<_> = read_entries(text.as_bytes(), &opts).unwrap().collect();
    assert_eq!(items.len(), 3);
    assert!(items[0].is_ok() && items[1].is_ok() && items[2].is_err());
}

#[test]
fn an_entry_over_the_size_limit_is_a_limit_error() {
    let limited = Options {
        limits: Limits {
            max_entry_bytes: 1000,
            ..Limits::default()
        },
        ..options(Verifiers::default())
    };
    assert!(matches!(
        fatal(TNGTLSU.as_bytes(), &limited),
        ManifestError::LimitExceeded(_)
    ));
}

#[test]
fn empty_array_has_no_entries() {
    assert!(read(b" [ ] ", &options(Verifiers::default())).is_empty());
}

fn drain(bytes: &[u8], options: &Options) {
    if let Ok(entries) = read_entries(bytes, options) {
        for item in entries {
            match item {
                Ok(Entry::Accepted(a)) => assert_eq!(a.certificate_id.len(), 64),
                Ok(Entry::Rejected(r)) => {
                    assert_eq!(r.error.kind(), thingpress_manifest::ErrorKind::Entry)
                }
                Err(_) => {}
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        drain(&bytes, &options(Verifiers::default()));
        let mut with_bracket = b"[".to_vec();
        with_bracket.extend_from_slice(&bytes);
        drain(&with_bracket, &options(Verifiers::default()));
    }

    #[test]
    fn mutated_real_manifest_never_panics(
        edits in proptest::collection::vec((0usize..TNGTLSU.len(), any::<u8>(), 0u8..3), 1..8)
    ) {
        let mut bytes = TNGTLSU.as_bytes().to_vec();
        for (at, byte, op) in edits {
            let at = at.min(bytes.len().saturating_sub(1));
            match op {
                0 => bytes[at] ^= byte | 1,
                1 => bytes.insert(at, byte),
                _ => { bytes.remove(at); }
            }
        }
        drain(&bytes, &options(Verifiers::default()));
    }
}
