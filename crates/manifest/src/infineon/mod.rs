//! Infineon manifests, in one of two unrelated formats chosen by the first bytes: the 7z
//! signature `37 7A BC AF 27 1C` means the OPTIGA Trust M bundle ([`bundle`]), anything else is
//! the XML manifest ([`xml`]). Both give one entry per certificate; a certificate without a
//! device id of its own is named by its subject CN, else by its certificate id.

pub mod bundle;
pub mod xml;

use std::collections::BTreeMap;
use std::io::{BufRead, Cursor, Read};

use crate::cert::{Certificate, der_to_pem};
use crate::{Accepted, Entries, Entry, ManifestError, Options, Supplier};

pub(crate) use bundle::SEVEN_Z_MAGIC;

/// Streams the entries of an Infineon manifest (XML or 7z bundle).
pub(crate) fn entries<'a, R: BufRead + Send + 'a>(
    mut reader: R,
    options: &Options,
) -> Result<Entries<'a>, ManifestError> {
    // Peek enough bytes to tell 7z from XML even if the reader hands them out one at a time.
    let mut head = Vec::with_capacity(SEVEN_Z_MAGIC.len());
    while head.len() < SEVEN_Z_MAGIC.len() {
        let available = reader.fill_buf()?;
        if available.is_empty() {
            break;
        }
        let take = available.len().min(SEVEN_Z_MAGIC.len() - head.len());
        head.extend(available.iter().take(take));
        reader.consume(take);
    }
    let is_7z = head == SEVEN_Z_MAGIC;
    let reader = Cursor::new(head).chain(reader);
    if is_7z {
        bundle::entries(reader, options)
    } else {
        xml::entries(reader, options.limits)
    }
}

fn malformed(at: Option<u64>, reason: impl Into<String>) -> ManifestError {
    ManifestError::malformed(Supplier::Infineon, at, reason)
}

/// An accepted entry; `device_id` falls back to the subject CN, then to the certificate id.
fn accepted(
    index: u64,
    certificate: Certificate,
    device_id: Option<String>,
    chain: Vec<String>,
    fields: BTreeMap<String, String>,
) -> Entry {
    let certificate_pem = der_to_pem(&certificate.der);
    let Certificate { id, cn, .. } = certificate;
    let device_id = device_id
        .or_else(|| cn.clone())
        .unwrap_or_else(|| id.clone());
    Entry::Accepted(Accepted {
        index,
        certificate_id: id,
        certificate_pem,
        chain,
        device_id,
        cn,
        fields,
    })
}
