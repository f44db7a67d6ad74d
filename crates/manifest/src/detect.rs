//! Recognises a manifest's format from its first bytes.
//!
//! Only the reader's first buffer is looked at (`fill_buf`, nothing consumed): a `BufReader`'s
//! 8 KiB is plenty for the markers and the first line checked here.

use std::io::BufRead;

use base64::Engine;

use crate::infineon::SEVEN_Z_MAGIC;
use crate::microchip::BASE64;
use crate::{ManifestError, Supplier};

const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

/// Recognises the manifest format from its first bytes without consuming them.
pub(crate) fn detect<R: BufRead>(reader: &mut R) -> Result<Supplier, ManifestError> {
    detect_bytes(reader.fill_buf()?)
}

/// The format of a manifest that starts with `head`.
fn detect_bytes(head: &[u8]) -> Result<Supplier, ManifestError> {
    if head.is_empty() {
        return Err(ManifestError::UnknownFormat(
            "the manifest is empty".to_owned(),
        ));
    }
    if head.starts_with(&SEVEN_Z_MAGIC) {
        return Ok(Supplier::Infineon);
    }
    let text = head
        .strip_prefix(UTF8_BOM)
        .unwrap_or(head)
        .trim_ascii_start();
    match text.first() {
        None => {
            return Err(ManifestError::UnknownFormat(format!(
                "the first {} bytes are only whitespace",
                head.len()
            )));
        }
        Some(b'[') => return Ok(Supplier::Microchip),
        Some(b'<') => return Ok(Supplier::Infineon),
        Some(b'{') => {
            return Err(ManifestError::UnknownFormat(
                "a JSON object, but Microchip manifests are JSON arrays of entries".to_owned(),
            ));
        }
        Some(_) => {}
    }
    if text.starts_with(b"-----BEGIN") {
        return Ok(Supplier::Pem);
    }
    let first_line = text
        .split(|&b| b == b'\n')
        .next()
        .unwrap_or_default()
        .trim_ascii();
    if is_mac_and_cert_header(first_line) {
        return Ok(Supplier::Espressif);
    }
    if is_base64_certificate(first_line) {
        return Ok(Supplier::Pem);
    }
    Err(ManifestError::UnknownFormat(format!(
        "the first bytes ({}…) are neither JSON, XML, 7z, CSV with MAC and cert columns, \
         nor PEM or base64 certificates",
        text.iter()
            .take(8)
            .copied()
            .flat_map(std::ascii::escape_default)
            .map(char::from)
            .collect::<String>()
    )))
}

/// A CSV header with (case-insensitively) a `MAC` and a `cert` column, quoted or not.
fn is_mac_and_cert_header(line: &[u8]) -> bool {
    let columns = || {
        line.split(|&b| b == b',').map(|column| {
            let column = column.trim_ascii();
            column
                .strip_prefix(b"\"")
                .and_then(|c| c.strip_suffix(b"\""))
                .unwrap_or(column)
                .trim_ascii()
        })
    };
    columns().any(|c| c.eq_ignore_ascii_case(b"mac"))
        && columns().any(|c| c.eq_ignore_ascii_case(b"cert"))
}

/// A line of base64 whose start decodes to DER (a SEQUENCE) or to PEM text.
fn is_base64_certificate(line: &[u8]) -> bool {
    let is_base64 = line
        .iter()
        .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='));
    let Some(prefix) = line.get(..16) else {
        return false;
    };
    if !is_base64 {
        return false;
    }
    match BASE64.decode(prefix) {
        Ok(bytes) => bytes.first() == Some(&0x30) || bytes.starts_with(b"-----BEGIN"),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_every_format_marker() {
        assert_eq!(detect_bytes(b"[{").unwrap(), Supplier::Microchip);
        assert_eq!(
            detect_bytes(b"\xEF\xBB\xBF \r\n [").unwrap(),
            Supplier::Microchip
        );
        assert_eq!(detect_bytes(b"<?xml version").unwrap(), Supplier::Infineon);
        assert_eq!(
            detect_bytes(b"7z\xBC\xAF\x27\x1C\x00\x04").unwrap(),
            Supplier::Infineon
        );
        assert_eq!(
            detect_bytes(b"\n-----BEGIN CERTIFICATE-----").unwrap(),
            Supplier::Pem
        );
        assert_eq!(
            detect_bytes(b"MAC,cn,cert\r\n1,2,3").unwrap(),
            Supplier::Espressif
        );
        // Only comma-separated headers are Espressif's.
        assert!(detect_bytes(b"\"cert\";\"Mac\"\n").is_err());
        assert_eq!(
            detect_bytes(b"id,\"cert\", \"Mac\"\n").unwrap(),
            Supplier::Espressif
        );
        // base64("-----BEGIN CERT…") and base64(DER 30 82 …).
        assert_eq!(
            detect_bytes(b"LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0t\n").unwrap(),
            Supplier::Pem
        );
        assert_eq!(
            detect_bytes(b"MIICIDCCAcWgAwIBAgIQ\n").unwrap(),
            Supplier::Pem
        );
    }

    #[test]
    fn unknown_and_empty_inputs_say_why() {
        let message = |bytes: &[u8]| detect_bytes(bytes).unwrap_err().to_string();
        assert!(message(b"").contains("empty"));
        assert!(message(b"  \n\t ").contains("only whitespace"));
        assert!(message(b"{\"a\":1}").contains("JSON arrays"));
        assert!(message(b"hello world").contains("neither JSON, XML, 7z"));
        assert!(message(b"MAC,cn\n").contains("neither"));
        assert!(message(b"aGVsbG8gd29ybGQgaGVsbG8gd29ybGQ=\n").contains("neither"));
        assert!(message(b"\x00\x01\x02").contains("\\x00"));
    }

    #[test]
    fn detect_does_not_consume() {
        let mut reader = std::io::BufReader::new(&b"[{}]"[..]);
        assert_eq!(detect(&mut reader).unwrap(), Supplier::Microchip);
        assert_eq!(reader.fill_buf().unwrap(), b"[{}]");
    }
}
