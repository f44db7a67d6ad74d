//! Espressif (ESP32-S3) manifests: CSV with a header row holding at least `MAC` and `cert`.
//!
//! Decisions, so the behaviour is predictable:
//! - Header names are trimmed and matched case-insensitively, in any order; extra columns are
//!   allowed. A missing `MAC` or `cert` column fails the whole manifest
//!   ([`ManifestError::Malformed`] naming the missing columns). When a name repeats, the first
//!   column of that name wins.
//! - `cert` is one quoted (multi-line, CRLF or LF) PEM certificate. Empty → `MissingCertificate`;
//!   unparseable, or more than one certificate in the field (typically an unbalanced quote that
//!   swallowed the next records) → `InvalidCertificate`.
//! - deviceId = the MAC exactly as given (surrounding whitespace trimmed, case and separators kept,
//!   so it matches the supplier's paperwork). An empty MAC falls back to the subject CN, and a
//!   certificate without CN to the certificate id.
//! - Every column other than `cert` becomes a field under its header name (so `MAC` and `cn` are
//!   fields too), value trimmed; a value that is not UTF-8 rejects the entry.
//! - A record with another number of fields than the header cannot be mapped to columns; it is
//!   rejected on its own (`InvalidCertificate`, naming the line) and the rest of the file is read.
//!   The csv parser never fails on quoting, so an I/O error or a record over
//!   [`Limits::max_entry_bytes`](crate::Limits) is the only thing that ends the stream early.

use std::collections::BTreeMap;
use std::io::BufRead;
use std::sync::Arc;

use csv::{ByteRecord, ReaderBuilder, Trim};

use crate::batch::validate_in_order;
use crate::cert::{Certificate, pem_blocks};
use crate::metered::Metered;
use crate::{Accepted, Entries, Entry, ErrorName, ManifestError, Options, Supplier};

/// csv's internal read buffer; bytes it reads ahead count against an entry's budget.
const CSV_BUFFER: usize = 64 * 1024;

/// Streams the entries of an Espressif CSV manifest.
pub(crate) fn entries<'a, R: BufRead + Send + 'a>(
    reader: R,
    options: &Options,
) -> Result<Entries<'a>, ManifestError> {
    let max_entry = options.limits.max_entry_bytes;
    // csv reads ahead up to its buffer size past the end of the current record.
    let metered = Metered::new(reader, max_entry.saturating_add(CSV_BUFFER as u64));
    let mut csv = ReaderBuilder::new()
        .has_headers(true)
        .flexible(false)
        .trim(Trim::Headers)
        .buffer_capacity(CSV_BUFFER)
        .from_reader(metered);
    let columns = match csv.byte_headers() {
        Ok(headers) => Columns::from_headers(headers)?,
        Err(e) => return Err(read_error(&csv, e, 0, max_entry)),
    };
    let columns = Arc::new(columns);
    let mut record = ByteRecord::new();
    let mut index: u64 = 0;
    let mut done = false;
    let raw = std::iter::from_fn(move || {
        if done {
            return None;
        }
        csv.get_mut().reset();
        let this = index;
        let item = match csv.read_byte_record(&mut record) {
            Ok(true) => Ok(Row::Record {
                index: this,
                record: record.clone(),
            }),
            Ok(false) => {
                done = true;
                return None;
            }
            Err(e) => match e.kind() {
                csv::ErrorKind::UnequalLengths {
                    pos,
                    expected_len,
                    len,
                } => Ok(Row::Broken {
                    index: this,
                    reason: format!(
                        "record {this}{} has {len} fields where the header has {expected_len}, \
                         so its columns cannot be told apart",
                        pos.as_ref()
                            .map(|p| format!(" (line {})", p.line()))
                            .unwrap_or_default()
                    ),
                }),
                _ => {
                    done = true;
                    Err(read_error(&csv, e, this, max_entry))
                }
            },
        };
        index += 1;
        Some(item)
    });
    Ok(Entries::new(
        Supplier::Espressif,
        validate_in_order(raw, move |row| validate(&columns, row)),
    ))
}

/// Where the columns Thingpress needs are.
struct Columns {
    mac: usize,
    cert: usize,
    /// Field name and column of every other column, first occurrence of a name only.
    fields: Vec<(String, usize)>,
}

impl Columns {
    fn from_headers(headers: &ByteRecord) -> Result<Self, ManifestError> {
        if headers.is_empty() {
            return Err(ManifestError::malformed(
                Supplier::Espressif,
                None,
                "the file is empty: no header row",
            ));
        }
        let mut names = Vec::with_capacity(headers.len());
        for (column, raw) in headers.iter().enumerate() {
            let name = std::str::from_utf8(raw).map_err(|_| {
                ManifestError::malformed(
                    Supplier::Espressif,
                    None,
                    format!("header column {} is not UTF-8", column + 1),
                )
            })?;
            names.push(name.trim_start_matches('\u{feff}').to_owned());
        }
        let find = |wanted: &str| names.iter().position(|n| n.eq_ignore_ascii_case(wanted));
        let (mac, cert) = match (find("mac"), find("cert")) {
            (Some(mac), Some(cert)) => (mac, cert),
            (mac, cert) => {
                let missing: Vec<&str> = [("MAC", mac), ("cert", cert)]
                    .into_iter()
                    .filter(|(_, found)| found.is_none())
                    .map(|(name, _)| name)
                    .collect();
                return Err(ManifestError::malformed(
                    Supplier::Espressif,
                    None,
                    format!(
                        "the header row has no {} column{} (columns: {})",
                        missing.join(" and "),
                        if missing.len() > 1 { "s" } else { "" },
                        names.join(", ")
                    ),
                ));
            }
        };
        let mut fields: Vec<(String, usize)> = Vec::with_capacity(names.len());
        for (column, name) in names.into_iter().enumerate() {
            if column != cert && !name.is_empty() && !fields.iter().any(|(n, _)| *n == name) {
                fields.push((name, column));
            }
        }
        Ok(Columns { mac, cert, fields })
    }
}

/// One CSV record as read, before validation.
enum Row {
    Record { index: u64, record: ByteRecord },
    Broken { index: u64, reason: String },
}

/// The trimmed UTF-8 text of a column; `None` when the column is absent.
fn column(record: &ByteRecord, column: usize) -> Option<Result<&str, ()>> {
    record
        .get(column)
        .map(|raw| std::str::from_utf8(raw).map(str::trim).map_err(|_| ()))
}

fn validate(columns: &Columns, row: Row) -> Entry {
    let (index, record) = match row {
        Row::Record { index, record } => (index, record),
        Row::Broken { index, reason } => {
            return Entry::rejected(index, ErrorName::InvalidCertificate, reason, None);
        }
    };
    let mac = match column(&record, columns.mac) {
        Some(Ok(mac)) => mac,
        Some(Err(())) => {
            let message = format!("record {index}: the MAC column is not UTF-8");
            return Entry::rejected(index, ErrorName::InvalidCertificate, message, None);
        }
        None => "",
    };
    let named = (!mac.is_empty()).then(|| mac.to_owned());
    let pem = match column(&record, columns.cert) {
        Some(Ok(pem)) if !pem.is_empty() => pem,
        Some(Err(())) => {
            let message = format!("record {index} (MAC {mac:?}): the cert column is not UTF-8");
            return Entry::rejected(index, ErrorName::InvalidCertificate, message, named);
        }
        _ => {
            let message = format!("record {index} (MAC {mac:?}): the cert column is empty");
            return Entry::rejected(index, ErrorName::MissingCertificate, message, named);
        }
    };
    let mut blocks = pem_blocks(pem);
    let parsed = match blocks.next() {
        Some(Ok(der)) => Certificate::from_der(der),
        Some(Err(reason)) => Err(reason),
        None => Err("no PEM CERTIFICATE block".to_owned()),
    };
    if blocks.next().is_some() {
        let message = format!(
            "record {index} (MAC {mac:?}): the cert column holds more than one certificate \
             (an unbalanced quote?)"
        );
        return Entry::rejected(index, ErrorName::InvalidCertificate, message, named);
    }
    let certificate = match parsed {
        Ok(certificate) => certificate,
        Err(reason) => {
            let message = format!("record {index} (MAC {mac:?}): {reason}");
            return Entry::rejected(index, ErrorName::InvalidCertificate, message, named);
        }
    };
    let mut fields = BTreeMap::new();
    for (name, at) in &columns.fields {
        match column(&record, *at) {
            Some(Ok(value)) => {
                fields.insert(name.clone(), value.to_owned());
            }
            Some(Err(())) => {
                let message = format!("record {index} (MAC {mac:?}): column {name} is not UTF-8");
                return Entry::rejected(index, ErrorName::InvalidCertificate, message, named);
            }
            None => {}
        }
    }
    let certificate_pem = certificate.to_pem();
    let Certificate { id, cn, .. } = certificate;
    let device_id = named.or_else(|| cn.clone()).unwrap_or_else(|| id.clone());
    Entry::Accepted(Accepted {
        index,
        certificate_id: id,
        certificate_pem,
        chain: Vec::new(),
        device_id,
        cn,
        fields,
    })
}

fn read_error(
    csv: &csv::Reader<Metered<impl BufRead>>,
    error: csv::Error,
    index: u64,
    max_entry: u64,
) -> ManifestError {
    if csv.get_ref().tripped() {
        return ManifestError::LimitExceeded(format!(
            "espressif record {index} is over max_entry_bytes ({max_entry} bytes)"
        ));
    }
    let message = error.to_string();
    match error.into_kind() {
        csv::ErrorKind::Io(e) => ManifestError::Io(e),
        _ => ManifestError::malformed(Supplier::Espressif, Some(index), message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Options;

    fn read(text: &str) -> Result<Vec<Entry>, ManifestError> {
        entries(text.as_bytes(), &Options::default())?.collect()
    }

    #[test]
    fn header_without_required_columns_names_them() {
        let err = read("serial,cn\n1,2\n").err().unwrap().to_string();
        assert!(err.contains("MAC and cert"), "{err}");
        let err = read("Cert,x\n1,2\n").err().unwrap().to_string();
        assert!(err.contains("no MAC column"), "{err}");
        assert!(read("").err().unwrap().to_string().contains("empty"));
    }

    #[test]
    fn empty_cert_is_missing_and_wrong_field_count_is_rejected_alone() {
        let out = read("mac,CERT\nAA,\nBB,x,y\nCC,garbage\n").unwrap();
        let names: Vec<_> = out
            .iter()
            .map(|e| match e {
                Entry::Rejected(r) => r.error,
                Entry::Accepted(_) => panic!("nothing here is valid"),
            })
            .collect();
        assert_eq!(
            names,
            [
                ErrorName::MissingCertificate,
                ErrorName::InvalidCertificate,
                ErrorName::InvalidCertificate
            ]
        );
        assert_eq!(out.iter().map(Entry::index).collect::<Vec<_>>(), [0, 1, 2]);
    }

    #[test]
    fn a_runaway_record_hits_the_entry_limit() {
        let mut options = Options::default();
        options.limits.max_entry_bytes = 1000;
        let text = format!("MAC,cert\nAA,\"{}", "x".repeat(200_000));
        let result: Result<Vec<_>, _> = entries(text.as_bytes(), &options).unwrap().collect();
        let err = result.err().unwrap();
        assert!(matches!(err, ManifestError::LimitExceeded(_)), "{err}");
        assert!(err.to_string().contains("record 0"), "{err}");
    }
}
