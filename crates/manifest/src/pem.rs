//! PEM manifests from any source, read line by line:
//!
//! - a PEM bundle: one or many `CERTIFICATE` blocks, one entry each; CRLF and text between
//!   blocks (openssl's `subject=` / `Bag Attributes` lines) are fine. Blocks of any other type
//!   (`PRIVATE KEY`, `EC PARAMETERS`, …) are skipped without their contents ever being stored,
//!   decoded, logged or echoed: a private key in a manifest is not ours to look at.
//! - one base64(PEM) per line: each line is one entry; the first `CERTIFICATE` of the decoded PEM
//!   is the device certificate, any further ones are its chain.
//! - one base64(DER) per line: each line is one certificate.
//!
//! The layout is decided by the first non-blank line: a `-----BEGIN` line or a text line that is
//! not base64 means a bundle (text outside blocks is then ignored); a base64 line means one
//! entry per non-blank line. `deviceId` is the subject CN; a certificate without a CN gets its
//! certificate id (the hex SHA-256 of its DER) as `deviceId`, so it can still be registered.
//! A bad line or block rejects that entry as `InvalidCertificate`; the rest go on.

use std::io::BufRead;

use base64::Engine;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::batch::validate_in_order;
use crate::cert::{Certificate, der_to_pem};
use crate::microchip::BASE64;
use crate::{Accepted, Entries, Entry, ErrorName, ManifestError, Options, Rejected, Supplier};

/// Streams the entries of a PEM manifest.
pub(crate) fn entries<'a, R: BufRead + Send + 'a>(
    reader: R,
    options: &Options,
) -> Result<Entries<'a>, ManifestError> {
    let max = usize::try_from(options.limits.max_entry_bytes).unwrap_or(usize::MAX);
    let mut lines = PemReader::new(reader, max);
    // Reading the first entry now makes input without any certificate fail at open.
    let first = lines.next_raw()?;
    let raw = first
        .map(Ok)
        .into_iter()
        .chain(std::iter::from_fn(move || lines.next_raw().transpose()));
    Ok(Entries::new(
        Supplier::Pem,
        validate_in_order(raw, validate),
    ))
}

/// One entry as read: where it starts and its undecoded text.
struct Raw {
    index: u64,
    line: u64,
    kind: RawKind,
}

enum RawKind {
    /// A base64(PEM) or base64(DER) line.
    Line(Vec<u8>),
    /// The base64 body of a PEM `CERTIFICATE` block, whitespace removed.
    Block(Vec<u8>),
    /// Rejected while reading (too long, unterminated block).
    Invalid(String),
}

fn validate(raw: Raw) -> Entry {
    let Raw { index, line, kind } = raw;
    let decoded = match kind {
        RawKind::Invalid(reason) => Err(reason),
        RawKind::Block(body) => BASE64
            .decode(&body)
            .map_err(|e| format!("PEM block at line {line}: invalid base64: {e}"))
            .and_then(|der| {
                Certificate::from_der(der).map_err(|e| format!("PEM block at line {line}: {e}"))
            })
            .map(|cert| (cert, Vec::new())),
        RawKind::Line(text) => decode_line(&text).map_err(|e| format!("line {line}: {e}")),
    };
    match decoded {
        Ok((cert, chain)) => Entry::Accepted(Accepted {
            index,
            certificate_pem: cert.to_pem(),
            device_id: cert.cn.clone().unwrap_or_else(|| cert.id.clone()),
            certificate_id: cert.id,
            chain,
            cn: cert.cn,
            fields: Default::default(),
        }),
        Err(message) => Entry::Rejected(Rejected {
            index,
            error: ErrorName::InvalidCertificate,
            message,
            device_id: None,
        }),
    }
}

/// A base64 line holds either PEM text or DER.
fn decode_line(text: &[u8]) -> Result<(Certificate, Vec<String>), String> {
    let bytes = BASE64
        .decode(text)
        .map_err(|e| format!("invalid base64: {e}"))?;
    if !bytes.trim_ascii_start().starts_with(b"-----BEGIN") {
        return Certificate::from_der(bytes).map(|cert| (cert, Vec::new()));
    }
    let mut blocks = certificate_blocks(&bytes);
    let device = match blocks.next() {
        Some(der) => Certificate::from_der(der?)?,
        None => return Err("decoded PEM holds no CERTIFICATE block".to_owned()),
    };
    let chain = blocks
        .enumerate()
        .map(|(i, der)| {
            let der = der.map_err(|e| format!("chain certificate {}: {e}", i + 1))?;
            match X509Certificate::from_der(&der) {
                Ok(([], _)) => Ok(der_to_pem(&der)),
                Ok(_) => Err(format!("chain certificate {} has trailing bytes", i + 1)),
                Err(e) => Err(format!("chain certificate {}: {e}", i + 1)),
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok((device, chain))
}

/// The DER of every `CERTIFICATE` block of an in-memory PEM text, in order; other blocks are
/// skipped. Byte-based, so a decoded line need not be UTF-8 and is not copied as a string.
fn certificate_blocks(text: &[u8]) -> impl Iterator<Item = Result<Vec<u8>, String>> + '_ {
    const BEGIN_CERT: &[u8] = b"-----BEGIN CERTIFICATE-----";
    const END_CERT: &[u8] = b"-----END CERTIFICATE-----";
    let mut rest = text;
    std::iter::from_fn(move || {
        let start = find(rest, BEGIN_CERT)?;
        let after = rest.get(start + BEGIN_CERT.len()..).unwrap_or_default();
        let Some(end) = find(after, END_CERT) else {
            rest = &[];
            return Some(Err("PEM block has no END CERTIFICATE line".to_owned()));
        };
        let body = after.get(..end).unwrap_or_default();
        rest = after.get(end + END_CERT.len()..).unwrap_or_default();
        let compact: Vec<u8> = body
            .iter()
            .copied()
            .filter(|b| !b.is_ascii_whitespace())
            .collect();
        Some(
            BASE64
                .decode(&compact)
                .map_err(|e| format!("invalid base64: {e}")),
        )
    })
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Undecided,
    Bundle,
    Lines,
}

/// An open `-----BEGIN …-----` block.
struct Block {
    line: u64,
    certificate: bool,
    body: Vec<u8>,
    too_large: bool,
}

impl Block {
    /// A block opened at `line`; only a certificate block's body is kept.
    fn new(line: u64, certificate: bool) -> Self {
        Block {
            line,
            certificate,
            body: Vec::new(),
            too_large: false,
        }
    }
}

/// Reads lines (bounded by the entry limit) and yields raw entries in manifest order.
struct PemReader<R> {
    reader: R,
    max_entry_bytes: usize,
    line: Vec<u8>,
    line_no: u64,
    index: u64,
    mode: Mode,
    block: Option<Block>,
    skipped_blocks: u64,
    done: bool,
}

const BEGIN: &[u8] = b"-----BEGIN ";
/// The shortest line buffer, whatever the entry limit.
const MIN_LINE_BYTES: usize = 1024;
const END: &[u8] = b"-----END ";

/// Base64 characters, with `=` only as trailing padding (so `subject=CN=x` is text).
fn is_base64_text(line: &[u8]) -> bool {
    let data = line.trim_ascii_end();
    let unpadded = data.strip_suffix(b"==").or_else(|| data.strip_suffix(b"="));
    let data = unpadded.unwrap_or(data);
    !data.is_empty()
        && data
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/'))
}

/// Whether a `-----BEGIN <label>-----` line opens a certificate block.
fn is_certificate_label(begin_line: &[u8]) -> bool {
    let label = begin_line
        .strip_prefix(BEGIN)
        .unwrap_or_default()
        .trim_ascii_end();
    let label = label.strip_suffix(b"-----").unwrap_or(label);
    label == b"CERTIFICATE" || label == b"X509 CERTIFICATE"
}

impl<R: BufRead> PemReader<R> {
    fn new(reader: R, max_entry_bytes: usize) -> Self {
        PemReader {
            reader,
            max_entry_bytes,
            line: Vec::with_capacity(4096),
            line_no: 0,
            index: 0,
            mode: Mode::Undecided,
            block: None,
            skipped_blocks: 0,
            done: false,
        }
    }

    /// The next raw entry, `None` at the end; after an error or the end nothing more is read.
    fn next_raw(&mut self) -> Result<Option<Raw>, ManifestError> {
        if self.done {
            return Ok(None);
        }
        let result = self.advance();
        if !matches!(result, Ok(Some(_))) {
            self.done = true;
        }
        result
    }

    fn entry(&mut self, line: u64, kind: RawKind) -> Option<Raw> {
        let index = self.index;
        self.index += 1;
        Some(Raw { index, line, kind })
    }

    fn advance(&mut self) -> Result<Option<Raw>, ManifestError> {
        loop {
            let Some(overflow) = self.read_line()? else {
                return self.finish();
            };
            let raw = if self.block.is_some() {
                self.block_line(overflow)
            } else {
                self.free_line(overflow)
            };
            if raw.is_some() {
                return Ok(raw);
            }
        }
    }

    /// A line inside an open block: an END line closes it (a certificate block becomes an
    /// entry), a BEGIN line leaves it unclosed (an invalid entry), any other line is body.
    fn block_line(&mut self, overflow: bool) -> Option<Raw> {
        let line_no = self.line_no;
        let text = self.line.trim_ascii();
        let block = self.block.as_mut()?;
        if text.starts_with(END) {
            let block = self.block.take().filter(|b| b.certificate)?;
            let kind = if block.too_large {
                RawKind::Invalid(format!(
                    "PEM block at line {} is larger than the {}-byte entry limit",
                    block.line, self.max_entry_bytes
                ))
            } else {
                RawKind::Block(block.body)
            };
            return self.entry(block.line, kind);
        }
        if text.starts_with(BEGIN) {
            let opened = Block::new(line_no, is_certificate_label(text));
            let unclosed = self.block.replace(opened);
            self.note_block_start();
            let unclosed = unclosed.filter(|b| b.certificate)?;
            let reason = format!(
                "PEM block at line {} has no END line before the BEGIN at line {line_no}",
                unclosed.line
            );
            return self.entry(unclosed.line, RawKind::Invalid(reason));
        }
        // Contents of other block types are never kept.
        if block.certificate && !block.too_large {
            if overflow || block.body.len() + text.len() > self.max_entry_bytes {
                block.too_large = true;
                block.body = Vec::new();
            } else {
                block.body.extend_from_slice(text);
            }
        }
        None
    }

    /// A line outside any block: a BEGIN line opens one; otherwise the first non-empty line
    /// decides whether this is a PEM bundle (text between blocks is skipped) or one base64
    /// certificate per line.
    fn free_line(&mut self, overflow: bool) -> Option<Raw> {
        let line_no = self.line_no;
        let text = self.line.trim_ascii();
        if text.is_empty() {
            return None;
        }
        if text.starts_with(BEGIN) {
            self.block = Some(Block::new(line_no, is_certificate_label(text)));
            self.note_block_start();
            return None;
        }
        if self.mode == Mode::Undecided {
            self.mode = if is_base64_text(text) {
                Mode::Lines
            } else {
                Mode::Bundle
            };
        }
        if self.mode == Mode::Bundle {
            return None;
        }
        let kind = if overflow || text.len() > self.max_entry_bytes {
            RawKind::Invalid(format!(
                "line {line_no} is longer than the {}-byte entry limit",
                self.max_entry_bytes
            ))
        } else {
            RawKind::Line(text.to_vec())
        };
        self.entry(line_no, kind)
    }

    fn note_block_start(&mut self) {
        if self.mode == Mode::Undecided {
            self.mode = Mode::Bundle;
        }
        if self.block.as_ref().is_some_and(|block| !block.certificate) {
            self.skipped_blocks += 1;
        }
    }

    /// End of input: an unterminated certificate block is rejected; no entry at all is fatal.
    fn finish(&mut self) -> Result<Option<Raw>, ManifestError> {
        if let Some(block) = self.block.take().filter(|b| b.certificate) {
            let reason = format!(
                "PEM block at line {} has no END line (truncated?)",
                block.line
            );
            return Ok(self.entry(block.line, RawKind::Invalid(reason)));
        }
        if self.index > 0 {
            return Ok(None);
        }
        let reason = if self.line_no == 0 {
            "the manifest is empty".to_owned()
        } else if self.skipped_blocks > 0 {
            format!(
                "no CERTIFICATE block found ({} PEM block(s) of other types skipped unread)",
                self.skipped_blocks
            )
        } else {
            "no PEM CERTIFICATE block and no base64 certificate lines found".to_owned()
        };
        Err(ManifestError::malformed(Supplier::Pem, None, reason))
    }

    /// Reads one line into `self.line` without its line ending, keeping at most the entry limit
    /// (`Some(true)` when the line was longer); `None` at the end of input.
    fn read_line(&mut self) -> Result<Option<bool>, ManifestError> {
        self.line.clear();
        let mut overflow = false;
        let mut read_any = false;
        loop {
            let chunk = self.reader.fill_buf()?;
            if chunk.is_empty() {
                if !read_any {
                    return Ok(None);
                }
                break;
            }
            read_any = true;
            let newline = chunk.iter().position(|&b| b == b'\n');
            let part = newline.unwrap_or(chunk.len());
            // Marker lines must stay readable even under a tiny entry limit.
            let room = self
                .max_entry_bytes
                .max(MIN_LINE_BYTES)
                .saturating_sub(self.line.len());
            overflow |= part > room;
            self.line
                .extend_from_slice(chunk.get(..part.min(room)).unwrap_or_default());
            self.reader.consume(part + usize::from(newline.is_some()));
            if newline.is_some() {
                break;
            }
        }
        // A UTF-8 byte-order mark would hide a first `-----BEGIN` line (or make a first base64
        // line look like text) and lose that certificate.
        if self.line_no == 0 && self.line.starts_with(b"\xEF\xBB\xBF") {
            self.line.drain(..3);
        }
        self.line_no += 1;
        Ok(Some(overflow))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(input: &[u8], max: usize) -> Result<Vec<(u64, u64, String)>, String> {
        let mut reader = PemReader::new(input, max);
        let mut out = Vec::new();
        while let Some(raw) = reader.next_raw().map_err(|e| e.to_string())? {
            let kind = match raw.kind {
                RawKind::Line(t) => format!("line:{}", String::from_utf8(t).unwrap()),
                RawKind::Block(t) => format!("block:{}", String::from_utf8(t).unwrap()),
                RawKind::Invalid(r) => format!("invalid:{r}"),
            };
            out.push((raw.index, raw.line, kind));
        }
        Ok(out)
    }

    #[test]
    fn bundle_blocks_skip_text_and_other_block_types() {
        let input = b"subject=CN=x\r\n-----BEGIN CERTIFICATE-----\r\nAAAA\r\nBBBB\r\n-----END CERTIFICATE-----\r\n\
            -----BEGIN PRIVATE KEY-----\nSECRET\n-----END PRIVATE KEY-----\nsome text\n\
            -----BEGIN CERTIFICATE-----\nCCCC\n-----END CERTIFICATE-----\n";
        let out = kinds(input, 1 << 20).unwrap();
        assert_eq!(
            out,
            vec![
                (0, 2, "block:AAAABBBB".to_owned()),
                (1, 10, "block:CCCC".to_owned())
            ]
        );
        assert!(!format!("{out:?}").contains("SECRET"));
    }

    #[test]
    fn lines_mode_yields_one_entry_per_non_blank_line() {
        let out = kinds(b"QUJD\r\n\n  REVG  \nnot base64!\n", 1 << 20).unwrap();
        assert_eq!(
            out,
            vec![
                (0, 1, "line:QUJD".to_owned()),
                (1, 3, "line:REVG".to_owned()),
                (2, 4, "line:not base64!".to_owned())
            ]
        );
    }

    #[test]
    fn unterminated_blocks_and_long_entries_are_rejected_not_fatal() {
        let out = kinds(
            b"-----BEGIN CERTIFICATE-----\nAAAA\n-----BEGIN CERTIFICATE-----\nBBBB\n",
            1 << 20,
        )
        .unwrap();
        assert_eq!(out.len(), 2);
        assert!(
            out[0]
                .2
                .starts_with("invalid:PEM block at line 1 has no END")
        );
        assert!(
            out[1]
                .2
                .starts_with("invalid:PEM block at line 3 has no END")
        );

        let out = kinds(b"QUJDREVG\nQUJD\n", 5).unwrap();
        assert!(out[0].2.contains("longer than the 5-byte"));
        assert_eq!(out[1].2, "line:QUJD");

        let out = kinds(
            b"-----BEGIN CERTIFICATE-----\nAAAA\nAAAA\n-----END CERTIFICATE-----\n",
            6,
        )
        .unwrap();
        assert!(out[0].2.contains("larger than the 6-byte"));
    }

    #[test]
    fn no_certificate_at_all_is_fatal() {
        for input in [
            &b""[..],
            b"\n\n",
            b"hello world\n",
            b"-----BEGIN PRIVATE KEY-----\nSECRET\n-----END PRIVATE KEY-----\n",
        ] {
            let err = kinds(input, 1 << 20).unwrap_err();
            assert!(err.contains("not a valid pem manifest"), "{err}");
            assert!(!err.contains("SECRET"));
        }
    }
}
