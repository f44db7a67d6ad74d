//! Synthetic, valid supplier manifests for benchmarks (shared by the `gen_manifest` example and
//! the criterion benches). Key pairs are generated once and reused: every certificate still
//! differs (serial, subject CN), so ids are distinct, and generation of 100,000 entries takes
//! seconds instead of the minutes 100,000 fresh (RSA) keys would.

#![allow(dead_code)]

use std::error::Error;
use std::io::{Cursor, Write};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use rayon::prelude::*;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType, IsCa, KeyPair,
    SerialNumber,
};
use serde_json::json;

/// Generator result.
pub type Result<T> = std::result::Result<T, Box<dyn Error + Send + Sync>>;

/// Entries generated in parallel and then written in order; bounds generator memory.
const CHUNK: usize = 8192;

/// A benchmark manifest kind (Infineon has two).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Microchip JSON array of ES256-signed JWS entries.
    Microchip,
    /// Infineon OPTIGA Trust M 7z bundle (E0E0 inner archive of PEM files).
    Infineon7z,
    /// Infineon XML manifest.
    InfineonXml,
    /// Espressif CSV (`MAC,cn,cert`, RSA-2048 device certificates).
    Espressif,
    /// One base64-encoded PEM per line.
    PemLines,
}

impl Kind {
    /// Every kind, in report order.
    pub const ALL: [Kind; 5] = [
        Kind::Microchip,
        Kind::Infineon7z,
        Kind::InfineonXml,
        Kind::Espressif,
        Kind::PemLines,
    ];

    /// Name on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Microchip => "microchip",
            Kind::Infineon7z => "infineon-7z",
            Kind::InfineonXml => "infineon-xml",
            Kind::Espressif => "espressif",
            Kind::PemLines => "pem-lines",
        }
    }

    /// File extension of the generated manifest.
    pub fn extension(self) -> &'static str {
        match self {
            Kind::Microchip => "json",
            Kind::Infineon7z => "7z",
            Kind::InfineonXml => "xml",
            Kind::Espressif => "csv",
            Kind::PemLines => "txt",
        }
    }

    /// Parses a name from [`Kind::name`].
    pub fn from_name(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.name() == name)
    }
}

/// A CA that issues the generated device certificates, and the device keys it certifies.
struct Factory {
    ca: CertifiedIssuer<'static, KeyPair>,
    device_keys: Vec<KeyPair>,
    org: &'static str,
}

impl Factory {
    fn new(ca_cn: &str, org: &'static str, rsa_devices: bool, keys: usize) -> Result<Factory> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::OrganizationName, org);
        params.distinguished_name.push(DnType::CommonName, ca_cn);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = CertifiedIssuer::self_signed(params, KeyPair::generate()?)?;
        let device_keys = (0..keys)
            .map(|_| {
                if rsa_devices {
                    KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256)
                } else {
                    KeyPair::generate()
                }
            })
            .collect::<std::result::Result<Vec<_>, _>>()?;
        Ok(Factory {
            ca,
            device_keys,
            org,
        })
    }

    fn key(&self, index: u64) -> &KeyPair {
        let n = self.device_keys.len() as u64;
        &self.device_keys[(index % n) as usize]
    }

    /// A device certificate (DER) with a distinct serial and the given CN.
    fn device(&self, index: u64, cn: &str) -> Result<Vec<u8>> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::OrganizationName, self.org);
        params.distinguished_name.push(DnType::CommonName, cn);
        // A positive 9-byte serial unique per entry.
        let mut serial = vec![0x01];
        serial.extend_from_slice(&index.to_be_bytes());
        params.serial_number = Some(SerialNumber::from(serial));
        let cert = params.signed_by(self.key(index), &self.ca)?;
        Ok(cert.der().to_vec())
    }
}

/// PEM text of a DER certificate with the given line ending.
fn pem(der: &[u8], eol: &str) -> String {
    let b64 = STANDARD.encode(der);
    let mut out = String::with_capacity(b64.len() + b64.len() / 64 * 2 + 64);
    out.push_str("-----BEGIN CERTIFICATE-----");
    out.push_str(eol);
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push_str(eol);
    }
    out.push_str("-----END CERTIFICATE-----");
    out.push_str(eol);
    out
}

/// Generates `count` entries in parallel chunks and writes each entry's bytes in order.
fn chunked<F>(count: u64, out: &mut dyn Write, separator: &[u8], make: F) -> Result<()>
where
    F: Fn(u64) -> Result<Vec<u8>> + Sync,
{
    let mut start = 0;
    while start < count {
        let end = (start + CHUNK as u64).min(count);
        let items: Vec<Vec<u8>> = (start..end)
            .into_par_iter()
            .map(&make)
            .collect::<Result<_>>()?;
        for (offset, item) in items.iter().enumerate() {
            if start + offset as u64 > 0 {
                out.write_all(separator)?;
            }
            out.write_all(item)?;
        }
        start = end;
    }
    Ok(())
}

/// Writes a `kind` manifest of `count` entries to `out`. For Microchip, returns the PEM of the
/// manifest signer certificate to pass as verifier.
pub fn generate(kind: Kind, count: u64, out: &mut dyn Write) -> Result<Option<String>> {
    match kind {
        Kind::Microchip => microchip(count, out).map(Some),
        Kind::Infineon7z => infineon_7z(count, out).map(|()| None),
        Kind::InfineonXml => infineon_xml(count, out).map(|()| None),
        Kind::Espressif => espressif(count, out).map(|()| None),
        Kind::PemLines => pem_lines(count, out).map(|()| None),
    }
}

fn microchip(count: u64, out: &mut dyn Write) -> Result<String> {
    // The manifest signer: self-signed P-256, as Microchip's "Manifest Signer 005".
    let signer_key = KeyPair::generate()?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name = DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::OrganizationName, "Bench Microchip");
    params
        .distinguished_name
        .push(DnType::CommonName, "Bench Manifest Signer");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let signer_cert = params.self_signed(&signer_key)?;
    let kid = URL_SAFE_NO_PAD.encode(params.key_identifier(&signer_key));
    let x5t = URL_SAFE_NO_PAD.encode(aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        signer_cert.der(),
    ));
    let signing = EcdsaKeyPair::from_pkcs8(
        &ECDSA_P256_SHA256_FIXED_SIGNING,
        signer_key.serialized_der(),
    )
    .map_err(|e| format!("signer key: {e}"))?;
    let rng = SystemRandom::new();
    let protected = URL_SAFE_NO_PAD
        .encode(json!({"alg": "ES256", "kid": kid, "typ": "JWT", "x5t#S256": x5t}).to_string());

    let factory = Factory::new("Bench Device CA", "Bench Microchip", false, 16)?;
    let ca_b64 = STANDARD.encode(factory.ca.der());
    // Each device key's JWK coordinates, computed once.
    let coords: Vec<(String, String)> = factory
        .device_keys
        .iter()
        .map(|k| {
            let raw = k.public_key_raw();
            (
                URL_SAFE_NO_PAD.encode(raw.get(1..33).unwrap_or_default()),
                URL_SAFE_NO_PAD.encode(raw.get(33..).unwrap_or_default()),
            )
        })
        .collect();
    let org = |unit: &str| json!({"organizationName": "Microchip Technology Inc", "organizationalUnitName": unit});

    out.write_all(b"[\n")?;
    chunked(count, out, b",\n", |i| {
        let unique_id = format!("0123{i:014x}");
        let der = factory.device(i, &format!("sn{unique_id}"))?;
        let (x, y) = &coords[(i % coords.len() as u64) as usize];
        let payload = json!({
            "version": 1,
            "model": "ATECC608C",
            "partNumber": "ATECC608C-TNGTLSU-B",
            "manufacturer": org("Secure Products Group"),
            "provisioner": org("Secure Products Group"),
            "distributor": org("Microchip Direct"),
            "groupId": "BENCHGROUP0001",
            "provisioningTimestamp": "2025-06-01T20:14:53.773Z",
            "uniqueId": unique_id,
            "publicKeySet": {"keys": [{
                "kid": "0", "kty": "EC", "crv": "P-256", "x": x, "y": y,
                "x5c": [STANDARD.encode(&der), ca_b64]
            }]}
        });
        let payload = URL_SAFE_NO_PAD.encode(payload.to_string());
        let message = format!("{protected}.{payload}");
        let signature = signing
            .sign(&rng, message.as_bytes())
            .map_err(|e| format!("sign: {e}"))?;
        let entry = json!({
            "payload": payload,
            "protected": protected,
            "header": {"uniqueId": unique_id},
            "signature": URL_SAFE_NO_PAD.encode(signature.as_ref()),
        });
        Ok(format!("  {entry}").into_bytes())
    })?;
    out.write_all(b"\n]\n")?;
    Ok(signer_cert.pem())
}

/// A 7z archive of `files`, one solid block (as 7-Zip writes bundles).
fn seven_z(files: Vec<(String, Vec<u8>)>) -> Result<Vec<u8>> {
    use sevenz_rust2::{ArchiveEntry, ArchiveWriter, SourceReader};
    let mut writer = ArchiveWriter::new(Cursor::new(Vec::new()))?;
    let entries = files
        .iter()
        .map(|(name, _)| ArchiveEntry::new_file(name))
        .collect();
    let readers = files
        .into_iter()
        .map(|(_, data)| SourceReader::new(Cursor::new(data)))
        .collect();
    writer.push_archive_entries(entries, readers)?;
    Ok(writer.finish()?.into_inner())
}

fn infineon_7z(count: u64, out: &mut dyn Write) -> Result<()> {
    let factory = Factory::new(
        "Infineon OPTIGA(TM) Trust M CA 306",
        "Infineon Technologies AG",
        false,
        16,
    )?;
    let files: Vec<(String, Vec<u8>)> = (0..count)
        .into_par_iter()
        .map(|i| {
            let chip = format!("{i:064x}");
            let der = factory.device(i, &chip)?;
            Ok((format!("{chip}_E0E0.pem"), pem(&der, "\r\n").into_bytes()))
        })
        .collect::<Result<_>>()?;
    let e0e0 = seven_z(files)?;
    let other_der = factory.device(u64::MAX, "other-slot")?;
    let e0e1 = seven_z(vec![(
        "other_E0E1.pem".to_string(),
        pem(&other_der, "\r\n").into_bytes(),
    )])?;
    let bundle = seven_z(vec![
        ("BENCHREEL_0000-guid_E0E0_Certs.7z".to_string(), e0e0),
        ("BENCHREEL_0000-guid_E0E1_Certs.7z".to_string(), e0e1),
        ("README.txt".to_string(), b"Bench bundle\r\n".to_vec()),
    ])?;
    out.write_all(&bundle)?;
    Ok(())
}

fn infineon_xml(count: u64, out: &mut dyn Write) -> Result<()> {
    let factory = Factory::new(
        "Infineon OPTIGA(TM) TPM CA",
        "Infineon Technologies AG",
        false,
        16,
    )?;
    out.write_all(b"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\r\n<manifest version=\"1\">\r\n")?;
    chunked(count, out, b"", |i| {
        let mac = format!("{i:012X}");
        let der = factory.device(i, &format!("TPM-{mac}"))?;
        let hex = hex::encode_upper(&der);
        let mut body = String::with_capacity(hex.len() + hex.len() / 64 * 10 + 200);
        for line in hex.as_bytes().chunks(64) {
            body.push_str("\r\n      ");
            body.push_str(std::str::from_utf8(line).unwrap_or_default());
        }
        Ok(format!(
            "  <group id=\"{i}\">\r\n    <hex name=\"TpmMAC\" value=\"{mac}\"/>\r\n    \
             <hex name=\"Serial\" value=\"S{i:010}\"/>\r\n    <binaryhex name=\"cert\">{body}\r\n    \
             </binaryhex>\r\n  </group>\r\n"
        )
        .into_bytes())
    })?;
    out.write_all(b"</manifest>\r\n")?;
    Ok(())
}

fn espressif(count: u64, out: &mut dyn Write) -> Result<()> {
    // RSA-2048 device keys (few, reused); an EC CA signs them so generation stays fast.
    let factory = Factory::new("esp-test-cn", "Espressif", true, 4)?;
    out.write_all(b"MAC,cn,cert\n")?;
    chunked(count, out, b"", |i| {
        let mac = format!("{:012X}", 0x4BA2_0000_0000u64 + i);
        let cn = format!(
            "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
            i as u32,
            (i >> 32) as u16,
            i & 0xfff,
            (i >> 12) & 0xfff,
            i
        );
        let der = factory.device(i, &cn)?;
        Ok(format!("{mac},{cn},\"{}\"\n", pem(&der, "\n")).into_bytes())
    })
}

fn pem_lines(count: u64, out: &mut dyn Write) -> Result<()> {
    let factory = Factory::new("Intermediate CA bench", "Bench Devices", false, 16)?;
    chunked(count, out, b"", |i| {
        let der = factory.device(i, &format!("Device-{i}"))?;
        let mut line = STANDARD.encode(pem(&der, "\n"));
        line.push('\n');
        Ok(line.into_bytes())
    })
}
