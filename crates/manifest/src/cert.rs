//! X.509 device certificates: DER ↔ PEM, the AWS IoT certificate id, the subject CN.

use aws_lc_rs::digest::{SHA256, digest};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use x509_parser::prelude::{FromDer, X509Certificate};

/// A parsed device certificate, with what the rest of Thingpress needs from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Certificate {
    /// Lowercase hex SHA-256 of the DER: the id AWS IoT gives the certificate.
    pub id: String,
    /// The DER bytes.
    pub der: Vec<u8>,
    /// The subject's first common name, if it has one.
    pub cn: Option<String>,
    /// The raw subject public key (the BIT STRING contents of SubjectPublicKeyInfo).
    pub public_key: Vec<u8>,
}

impl Certificate {
    /// Parses DER; the error says why the bytes are not a certificate.
    pub fn from_der(der: Vec<u8>) -> Result<Self, String> {
        let (rest, cert) = X509Certificate::from_der(&der)
            .map_err(|e| format!("not an X.509 certificate: {e}"))?;
        if !rest.is_empty() {
            return Err(format!(
                "{} trailing bytes after the certificate",
                rest.len()
            ));
        }
        let cn = cert
            .subject()
            .iter_common_name()
            .next()
            .map(|attr| {
                attr.as_str()
                    .map(str::to_owned)
                    .map_err(|_| "subject CN is not a UTF-8 string".to_owned())
            })
            .transpose()?;
        let public_key = cert.public_key().subject_public_key.data.to_vec();
        Ok(Certificate {
            id: sha256_hex(&der),
            cn,
            public_key,
            der,
        })
    }

    /// Parses one PEM `CERTIFICATE` block (surrounding text and CRLF allowed).
    pub fn from_pem(text: &str) -> Result<Self, String> {
        let mut blocks = pem_blocks(text);
        match blocks.next() {
            Some(Ok(der)) => Certificate::from_der(der),
            Some(Err(e)) => Err(e),
            None => Err("no PEM CERTIFICATE block".to_owned()),
        }
    }

    /// The certificate as PEM with 64-column lines and LF endings, as AWS IoT returns it.
    pub fn to_pem(&self) -> String {
        der_to_pem(&self.der)
    }
}

/// Lowercase hex SHA-256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(digest(&SHA256, bytes).as_ref())
}

/// DER to PEM with 64-column lines and LF endings.
pub fn der_to_pem(der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let mut pem = String::with_capacity(b64.len() + b64.len() / 64 + 64);
    pem.push_str("-----BEGIN CERTIFICATE-----\n");
    for line in b64.as_bytes().chunks(64) {
        // base64 output is ASCII, so every chunk is valid UTF-8.
        pem.push_str(std::str::from_utf8(line).unwrap_or_default());
        pem.push('\n');
    }
    pem.push_str("-----END CERTIFICATE-----\n");
    pem
}

/// Decodes base64 that may be wrapped over lines (any ASCII whitespace is ignored).
pub fn decode_base64_lenient(text: &str) -> Result<Vec<u8>, String> {
    let compact: Vec<u8> = text.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    STANDARD
        .decode(&compact)
        .map_err(|e| format!("invalid base64: {e}"))
}

/// The DER of every `CERTIFICATE` block in a PEM text, in order; other block types are skipped.
pub fn pem_blocks(text: &str) -> impl Iterator<Item = Result<Vec<u8>, String>> + '_ {
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    const END: &str = "-----END CERTIFICATE-----";
    let mut rest = text;
    std::iter::from_fn(move || {
        let start = rest.find(BEGIN)?;
        let body_and_after = &rest[start + BEGIN.len()..];
        let Some(end) = body_and_after.find(END) else {
            rest = "";
            return Some(Err("PEM block has no END CERTIFICATE line".to_owned()));
        };
        let body = &body_and_after[..end];
        rest = &body_and_after[end + END.len()..];
        Some(decode_base64_lenient(body))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SINGLE: &str = include_str!("../../../tests/fixtures/upstream/single.pem");

    #[test]
    fn pem_round_trips_and_id_is_sha256_of_der() {
        let cert = Certificate::from_pem(SINGLE).unwrap();
        let again = Certificate::from_pem(&cert.to_pem()).unwrap();
        assert_eq!(cert, again);
        assert_eq!(cert.id.len(), 64);
        assert!(cert.cn.is_some());
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(Certificate::from_der(vec![0x30, 0x03, 1, 2]).is_err());
        assert!(Certificate::from_pem("nothing here").is_err());
        assert!(Certificate::from_pem("-----BEGIN CERTIFICATE-----\n!!!\n").is_err());
    }
}
