//! The Infineon XML manifest.
//!
//! Every `<group>` child of the root is one device: `<hex name="TpmMAC" value="…"/>`
//! gives the deviceId, and each `<binaryhex>` (anywhere inside the group) holds one certificate
//! as hex DER (any case, whitespace anywhere) — one entry per certificate, so a group may give
//! several entries and `index` counts certificates. Every `<hex name=X value=Y/>` of the group,
//! `TpmMAC` included, becomes field X=Y. A group without `TpmMAC` falls back to the subject CN as
//! deviceId, then to the certificate id. Bad hex or DER → `InvalidCertificate`; a group without
//! any certificate → one `MissingCertificate` entry. The document streams: a DTD is one event that
//! is never expanded, and only the five standard entities and character references are resolved
//! (an entity bomb stays inert: an unknown entity in a certificate makes that entry invalid, in an
//! attribute it makes the document malformed). A group over `max_entry_bytes` ends the read with
//! [`ManifestError::LimitExceeded`].

use std::collections::{BTreeMap, VecDeque};
use std::io::BufRead;

use quick_xml::Reader;
use quick_xml::escape::resolve_predefined_entity;
use quick_xml::events::{BytesRef, BytesStart, Event};

use super::{accepted, malformed};
use crate::batch::validate_in_order;
use crate::cert::Certificate;
use crate::metered::Metered;
use crate::{Entries, Entry, ErrorName, Limits, ManifestError, Supplier};

/// One certificate (or the lack of one) of a group, as read.
struct RawXml {
    index: u64,
    /// Position of the group among the root's `<group>` children, from 0.
    group: u64,
    /// Hex digits as found (whitespace removed), or why the text cannot be a certificate.
    hex: Result<Vec<u8>, String>,
    /// False when the group has no certificate at all.
    present: bool,
    tpm_mac: Option<String>,
    fields: BTreeMap<String, String>,
}

/// A `<group>` being read.
#[derive(Default)]
struct Group {
    tpm_mac: Option<String>,
    fields: BTreeMap<String, String>,
    certs: Vec<Result<Vec<u8>, String>>,
    /// Depth of the open `<binaryhex>` element, if one is open.
    in_binaryhex: Option<usize>,
}

/// The root's `<group>` children, read one XML event at a time, as raw certificates.
struct XmlGroups<R> {
    reader: Reader<Metered<R>>,
    buf: Vec<u8>,
    depth: usize,
    group: Option<Group>,
    groups_seen: u64,
    next_index: u64,
    pending: VecDeque<RawXml>,
    done: bool,
    max_entry: u64,
}

pub(super) fn entries<'a, R: BufRead + Send + 'a>(
    reader: R,
    limits: Limits,
) -> Result<Entries<'a>, ManifestError> {
    let metered = Metered::new(reader, limits.max_entry_bytes);
    let mut reader = Reader::from_reader(metered);
    let config = reader.config_mut();
    config.trim_text(false);
    config.check_end_names = true;
    config.expand_empty_elements = false;
    let groups = XmlGroups {
        reader,
        buf: Vec::with_capacity(16 * 1024),
        depth: 0,
        group: None,
        groups_seen: 0,
        next_index: 0,
        pending: VecDeque::new(),
        done: false,
        max_entry: limits.max_entry_bytes,
    };
    Ok(Entries::new(
        Supplier::Infineon,
        validate_in_order(groups, validate_xml),
    ))
}

impl<R: BufRead> Iterator for XmlGroups<R> {
    type Item = Result<RawXml, ManifestError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(raw) = self.pending.pop_front() {
                return Some(Ok(raw));
            }
            if self.done {
                return None;
            }
            if let Err(e) = self.step() {
                self.done = true;
                return Some(Err(e));
            }
        }
    }
}

impl<R: BufRead> XmlGroups<R> {
    /// Reads one event, updating the group being read; a finished group lands in `pending`.
    fn step(&mut self) -> Result<(), ManifestError> {
        if self.group.is_none() {
            // Outside a group every event is bounded on its own; inside, the whole group is.
            self.reader.get_mut().reset();
        }
        // The event borrows the buffer, so it is taken out while the event is handled.
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        let result = match self.reader.read_event_into(&mut buf) {
            Ok(event) => self.handle(event),
            Err(e) => Err(self.read_error(&e)),
        };
        self.buf = buf;
        result
    }

    /// Why the XML cannot be read on: a group over the entry limit, or bad XML.
    fn read_error(&self, e: &quick_xml::Error) -> ManifestError {
        let at = self.next_index;
        if self.reader.get_ref().tripped() {
            return ManifestError::LimitExceeded(format!(
                "infineon entry {at}: an XML group or element is over max_entry_bytes ({} bytes)",
                self.max_entry
            ));
        }
        malformed(
            Some(at),
            format!("XML error near byte {}: {e}", self.reader.error_position()),
        )
    }

    /// Applies one event to the group being read.
    fn handle(&mut self, event: Event<'_>) -> Result<(), ManifestError> {
        match event {
            Event::Start(start) => self.start(&start)?,
            Event::Empty(start) => self.empty(&start)?,
            Event::End(_) => self.end(),
            Event::Text(text) => push_text(&mut self.group, &text),
            Event::CData(data) => push_text(&mut self.group, &data),
            Event::GeneralRef(reference) => {
                if let Some(cert) = open_cert(&mut self.group) {
                    push_reference(cert, &reference);
                }
            }
            Event::Eof => self.eof()?,
            // A DTD is one inert event: its entities are never expanded.
            Event::DocType(_) | Event::Decl(_) | Event::PI(_) | Event::Comment(_) => {}
        }
        Ok(())
    }

    /// An element opens: a `<group>` under the root starts one, anything else belongs to it.
    fn start(&mut self, start: &BytesStart<'_>) -> Result<(), ManifestError> {
        self.depth += 1;
        let depth = self.depth;
        if depth == 2 && start.local_name().as_ref() == "group" {
            self.group = Some(Group::default());
        } else if let Some(group) = self.group.as_mut() {
            group.open(start, depth, self.next_index)?;
        }
        Ok(())
    }

    /// An empty element: `<group/>` is a group without certificates.
    fn empty(&mut self, start: &BytesStart<'_>) -> Result<(), ManifestError> {
        if self.depth == 1 && start.local_name().as_ref() == "group" {
            self.groups_seen += 1;
            self.finish_group(Group::default());
        } else if let Some(group) = self.group.as_mut() {
            group.open(start, self.depth + 1, self.next_index)?;
            group.close(self.depth + 1);
        }
        Ok(())
    }

    /// An element closes; closing the `<group>` finishes it.
    fn end(&mut self) {
        if self.depth == 2
            && let Some(group) = self.group.take()
        {
            self.groups_seen += 1;
            self.finish_group(group);
        } else if let Some(group) = self.group.as_mut() {
            group.close(self.depth);
        }
        self.depth = self.depth.saturating_sub(1);
    }

    /// The end of the document, which must be complete and hold at least one group.
    fn eof(&mut self) -> Result<(), ManifestError> {
        self.done = true;
        if self.depth > 0 || self.group.is_some() {
            return Err(malformed(
                Some(self.next_index),
                "the XML document ends inside an element (truncated?)",
            ));
        }
        if self.groups_seen == 0 {
            return Err(malformed(None, "no <group> element under the XML root"));
        }
        Ok(())
    }

    fn finish_group(&mut self, group: Group) {
        let number = self.groups_seen.saturating_sub(1);
        let Group {
            tpm_mac,
            fields,
            certs,
            ..
        } = group;
        if certs.is_empty() {
            self.pending.push_back(RawXml {
                index: self.next_index,
                group: number,
                hex: Ok(Vec::new()),
                present: false,
                tpm_mac,
                fields,
            });
            self.next_index += 1;
            return;
        }
        for hex in certs {
            self.pending.push_back(RawXml {
                index: self.next_index,
                group: number,
                hex,
                present: true,
                tpm_mac: tpm_mac.clone(),
                fields: fields.clone(),
            });
            self.next_index += 1;
        }
    }
}

/// The certificate text being collected, if a `<binaryhex>` is open.
fn open_cert(group: &mut Option<Group>) -> Option<&mut Result<Vec<u8>, String>> {
    let group = group.as_mut()?;
    group.in_binaryhex?;
    group.certs.last_mut()
}

fn push_text(group: &mut Option<Group>, text: &str) {
    if let Some(Ok(hex)) = open_cert(group) {
        push_hex(hex, text);
    }
}

/// Appends the non-whitespace characters of `text`; anything that is not a hex digit stays in,
/// so decoding reports it.
fn push_hex(hex: &mut Vec<u8>, text: &str) {
    hex.extend(text.bytes().filter(|b| !b.is_ascii_whitespace()));
}

/// A character or standard entity reference inside a certificate adds its text; any other
/// entity makes the certificate invalid (it is never expanded).
fn push_reference(cert: &mut Result<Vec<u8>, String>, reference: &BytesRef<'_>) {
    let resolved = match reference.resolve_char_ref() {
        Ok(Some(c)) => Some(c.to_string()),
        Ok(None) => resolve_predefined_entity(reference).map(str::to_owned),
        Err(_) => None,
    };
    match (resolved, cert.as_mut()) {
        (Some(text), Ok(hex)) => push_hex(hex, &text),
        (None, Ok(_)) => {
            *cert = Err(format!(
                "entity reference &{}; is not expanded (only the five standard XML entities are)",
                &**reference
            ));
        }
        (_, Err(_)) => {}
    }
}

impl Group {
    /// An element opened inside the group at `depth`.
    fn open(&mut self, start: &BytesStart<'_>, depth: usize, at: u64) -> Result<(), ManifestError> {
        match start.local_name().as_ref() {
            "binaryhex" if self.in_binaryhex.is_none() => {
                self.in_binaryhex = Some(depth);
                self.certs.push(Ok(Vec::new()));
            }
            "hex" => {
                let (name, value) = hex_attributes(start, at)?;
                if let Some(name) = name {
                    let value = value.unwrap_or_default();
                    if name == "TpmMAC" && self.tpm_mac.is_none() && !value.trim().is_empty() {
                        self.tpm_mac = Some(value.trim().to_owned());
                    }
                    self.fields.entry(name).or_insert(value);
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// The element at `depth` closed.
    fn close(&mut self, depth: usize) {
        if self.in_binaryhex == Some(depth) {
            self.in_binaryhex = None;
        }
    }
}

/// The `name` and `value` attributes of a `<hex>` element, standard entities resolved.
fn hex_attributes(
    start: &BytesStart<'_>,
    at: u64,
) -> Result<(Option<String>, Option<String>), ManifestError> {
    let mut name = None;
    let mut value = None;
    for attribute in start.attributes() {
        let attribute =
            attribute.map_err(|e| malformed(Some(at), format!("bad attribute in <hex>: {e}")))?;
        let key = attribute.key.local_name();
        let slot = match key.as_ref() {
            "name" => &mut name,
            "value" => &mut value,
            _ => continue,
        };
        let text = attribute
            .normalized_value(quick_xml::XmlVersion::Implicit1_0)
            .map_err(|e| {
                malformed(
                    Some(at),
                    format!(
                        "<hex> attribute value {:?} cannot be read ({e}); only the five standard \
                         XML entities are expanded",
                        attribute.value
                    ),
                )
            })?;
        *slot = Some(text.into_owned());
    }
    Ok((name, value))
}

fn validate_xml(raw: RawXml) -> Entry {
    let RawXml {
        index,
        group,
        hex,
        present,
        tpm_mac,
        fields,
    } = raw;
    let label = match &tpm_mac {
        Some(mac) => format!("group {group} (TpmMAC {mac})"),
        None => format!("group {group}"),
    };
    let hex = match hex {
        Ok(hex) if present && !hex.is_empty() => hex,
        Ok(_) => {
            let message = if present {
                format!("{label}: a <binaryhex> element is empty")
            } else {
                format!("{label} holds no <binaryhex> certificate")
            };
            return Entry::rejected(index, ErrorName::MissingCertificate, message, tpm_mac);
        }
        Err(reason) => {
            let message = format!("{label}: {reason}");
            return Entry::rejected(index, ErrorName::InvalidCertificate, message, tpm_mac);
        }
    };
    let der = match hex::decode(&hex) {
        Ok(der) => der,
        Err(e) => {
            let message = format!("{label}: <binaryhex> is not hex: {e}");
            return Entry::rejected(index, ErrorName::InvalidCertificate, message, tpm_mac);
        }
    };
    let certificate = match Certificate::from_der(der) {
        Ok(certificate) => certificate,
        Err(reason) => {
            let message = format!("{label}: {reason}");
            return Entry::rejected(index, ErrorName::InvalidCertificate, message, tpm_mac);
        }
    };
    accepted(index, certificate, tpm_mac, Vec::new(), fields)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Options;

    #[test]
    fn hex_text_keeps_only_non_whitespace() {
        let mut hex = Vec::new();
        push_hex(&mut hex, " 30 8\r\n2\tab ");
        assert_eq!(hex, b"3082ab");
    }

    #[test]
    fn a_huge_xml_event_hits_the_entry_limit() {
        let mut limits = Options::default().limits;
        limits.max_entry_bytes = 4096;
        let xml = format!(
            "<m><group><binaryhex>{}</binaryhex></group></m>",
            "a".repeat(100_000)
        );
        let result: Result<Vec<_>, _> = entries(xml.as_bytes(), limits).unwrap().collect();
        assert!(matches!(result, Err(ManifestError::LimitExceeded(_))));
    }
}
