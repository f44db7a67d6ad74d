//! Shipping lists for `thingpress activate`: the devices that passed end-of-line test and
//! shipped, as the factory's MES lists them. Two shapes are read:
//!
//! - upstream ThingPress's MES device-info JSON, `{"batchId": "…", "devices": [{"certFingerprint":
//!   "<64 hex>", "deviceId": "…", "attributes": {…}}]}` (a bare array of devices too);
//! - CSV with a header: `certificateId` (or `certFingerprint`), `deviceId`, and any other column
//!   an attribute of the thing (empty cells are skipped).
//!
//! An entry names its certificate (the SHA-256 of its DER, i.e. its AWS IoT certificate id), its
//! device (the thing), or both. Both shapes stream: memory holds one entry at a time, plus the ids
//! seen so far to name duplicates. Nothing panics: an unreadable list is a [`ShippingError`], a bad
//! entry a [`Rejected`] entry with its [`ErrorName`].

use std::cell::Cell;
use std::collections::{BTreeMap, HashSet};
use std::io::{BufRead, Read};
use std::rc::Rc;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::Value;
pub use thingpress_manifest::{ErrorName, Rejected};
use thingpress_product::names::{check_attribute_name, check_attribute_value};

/// The largest single entry (one device object or CSV record), in bytes.
pub const MAX_ENTRY_BYTES: u64 = 64 * 1024;
/// Device objects parsed ahead of the consumer.
const LOOKAHEAD: usize = 256;

/// One device the factory shipped, and the attributes to merge into its thing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Shipped {
    /// Position in the list, from 0.
    pub index: u64,
    /// The certificate's id (lowercase hex SHA-256 of its DER), when the list gives it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_id: Option<String>,
    /// The device id (the thing's name through the profile), when the list gives it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_id: Option<String>,
    /// Attributes to merge into the thing.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub attributes: BTreeMap<String, String>,
}

/// One shipping-list entry's outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "lowercase")]
pub enum ShippingEntry {
    /// To activate.
    Shipped(Shipped),
    /// Not usable, with why.
    Rejected(Rejected),
}

/// A shipping list that cannot be read on.
#[derive(Debug, thiserror::Error)]
pub enum ShippingError {
    /// Reading the bytes failed.
    #[error("read failed: {0}")]
    Io(#[from] std::io::Error),
    /// Not well-formed JSON or CSV, or missing what every entry needs.
    #[error("not a valid shipping list{}: {reason}", at.map(|i| format!(" at entry {i}")).unwrap_or_default())]
    Malformed {
        /// The entry being read when it failed, if known.
        at: Option<u64>,
        /// What is wrong.
        reason: String,
    },
}

fn malformed(at: Option<u64>, reason: impl Into<String>) -> ShippingError {
    ShippingError::Malformed {
        at,
        reason: reason.into(),
    }
}

/// The entries of a shipping list, in order.
pub struct ShippingList {
    /// The MES batch id, when the JSON gives one before its devices.
    pub batch_id: Option<String>,
    entries: Box<dyn Iterator<Item = Result<ShippingEntry, ShippingError>> + Send>,
}

impl std::fmt::Debug for ShippingList {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShippingList")
            .field("batch_id", &self.batch_id)
            .finish_non_exhaustive()
    }
}

impl Iterator for ShippingList {
    type Item = Result<ShippingEntry, ShippingError>;
    fn next(&mut self) -> Option<Self::Item> {
        self.entries.next()
    }
}

/// Reads a shipping list: JSON when it starts with `{` or `[`, CSV otherwise.
pub fn read<R: BufRead + Send + 'static>(mut reader: R) -> Result<ShippingList, ShippingError> {
    let first = loop {
        let buf = reader.fill_buf()?;
        match buf
            .iter()
            .position(|b| !b.is_ascii_whitespace() && *b != 0xEF && *b != 0xBB && *b != 0xBF)
        {
            Some(i) => {
                let b = buf[i];
                reader.consume(i);
                break Some(b);
            }
            None if buf.is_empty() => break None,
            None => {
                let n = buf.len();
                reader.consume(n);
            }
        }
    };
    match first {
        None => Err(malformed(None, "the file is empty")),
        Some(b'{' | b'[') => json(reader),
        Some(_) => csv(reader),
    }
}

/// Turns one device's fields into its entry, checking each and naming the first problem.
struct Checker {
    certificates: HashSet<String>,
    devices: HashSet<String>,
}

impl Checker {
    fn new() -> Checker {
        Checker {
            certificates: HashSet::new(),
            devices: HashSet::new(),
        }
    }

    fn entry(
        &mut self,
        index: u64,
        certificate: Option<&str>,
        device: Option<&str>,
        attributes: Result<BTreeMap<String, String>, String>,
    ) -> ShippingEntry {
        let device_id = device.map(str::trim).filter(|d| !d.is_empty());
        let reject = |error: ErrorName, message: String| {
            ShippingEntry::Rejected(Rejected {
                index,
                error,
                message,
                device_id: device_id.map(str::to_owned),
            })
        };
        let certificate_id = match certificate.map(str::trim).filter(|c| !c.is_empty()) {
            None => None,
            Some(c) if c.len() == 64 && c.bytes().all(|b| b.is_ascii_hexdigit()) => {
                Some(c.to_ascii_lowercase())
            }
            Some(c) => {
                return reject(
                    ErrorName::InvalidFingerprint,
                    format!(
                        "certificate {c:?} is not 64 hexadecimal digits (the SHA-256 of the \
                         certificate's DER, which is its AWS IoT certificate id)"
                    ),
                );
            }
        };
        if certificate_id.is_none() && device_id.is_none() {
            return reject(
                ErrorName::MissingIdentity,
                "neither a certificate (certificateId / certFingerprint) nor a deviceId".into(),
            );
        }
        let attributes = match attributes.and_then(checked_attributes) {
            Ok(attributes) => attributes,
            Err(message) => return reject(ErrorName::InvalidAttribute, message),
        };
        if let Some(c) = &certificate_id
            && !self.certificates.insert(c.clone())
        {
            return reject(
                ErrorName::DuplicateCertificate,
                format!("certificate {c} is listed earlier (only the first is activated)"),
            );
        }
        if let Some(d) = device_id
            && !self.devices.insert(d.to_owned())
        {
            return reject(
                ErrorName::DuplicateDevice,
                format!("device {d} is listed earlier (only the first is activated)"),
            );
        }
        ShippingEntry::Shipped(Shipped {
            index,
            certificate_id,
            device_id: device_id.map(str::to_owned),
            attributes,
        })
    }
}

/// Attribute names and values as AWS IoT allows them.
fn checked_attributes(
    attributes: BTreeMap<String, String>,
) -> Result<BTreeMap<String, String>, String> {
    for (name, value) in &attributes {
        check_attribute_name(name).map_err(|e| format!("attribute name {name:?}: {e}"))?;
        check_attribute_value(value).map_err(|e| format!("attribute {name} = {value:?}: {e}"))?;
    }
    Ok(attributes)
}

// ------------------------------------------------------------------------------------ CSV

/// Column names, compared without case or separators: `certificateId` = `certificate_id`.
fn column_key(name: &str) -> String {
    name.chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

fn csv<R: BufRead + Send + 'static>(reader: R) -> Result<ShippingList, ShippingError> {
    let mut csv = ::csv::ReaderBuilder::new()
        .trim(::csv::Trim::All)
        .flexible(false)
        .from_reader(reader);
    let headers = csv
        .headers()
        .map_err(|e| malformed(None, format!("header: {e}")))?
        .clone();
    let mut certificate = None;
    let mut device = None;
    let mut attributes = Vec::new();
    for (i, name) in headers.iter().enumerate() {
        match column_key(name).as_str() {
            "certificateid" | "certfingerprint" | "fingerprint" if certificate.is_none() => {
                certificate = Some(i);
            }
            "deviceid" if device.is_none() => device = Some(i),
            _ if name.is_empty() => {}
            _ => attributes.push((i, name.to_owned())),
        }
    }
    if certificate.is_none() && device.is_none() {
        return Err(malformed(
            None,
            format!(
                "the header names neither a certificateId (or certFingerprint) nor a deviceId \
                 column: {:?}",
                headers.iter().collect::<Vec<_>>()
            ),
        ));
    }
    let mut checker = Checker::new();
    let mut index = 0_u64;
    let mut record = ::csv::StringRecord::new();
    let mut failed = false;
    let entries = std::iter::from_fn(move || {
        if failed {
            return None;
        }
        match csv.read_record(&mut record) {
            Ok(false) => None,
            Ok(true) => {
                let this = index;
                index += 1;
                // Checked once csv has read the record: a bound on what one entry may be, not on
                // what reading it takes.
                let line = record.as_slice().len() as u64;
                if line > MAX_ENTRY_BYTES {
                    failed = true;
                    return Some(Err(malformed(
                        Some(this),
                        format!("a record of {line} bytes, over {MAX_ENTRY_BYTES}"),
                    )));
                }
                let cell = |i: Option<usize>| i.and_then(|i| record.get(i));
                let attrs = attributes
                    .iter()
                    .filter_map(|(i, name)| {
                        let value = record.get(*i)?;
                        (!value.is_empty()).then(|| (name.clone(), value.to_owned()))
                    })
                    .collect();
                Some(Ok(checker.entry(
                    this,
                    cell(certificate),
                    cell(device),
                    Ok(attrs),
                )))
            }
            Err(e) => {
                failed = true;
                Some(Err(malformed(Some(index), e.to_string())))
            }
        }
    });
    Ok(ShippingList {
        batch_id: None,
        entries: Box::new(entries),
    })
}

// ----------------------------------------------------------------------------------- JSON

/// What the JSON reader thread hands the consumer.
enum Event {
    Batch(String),
    Device(u64, Value),
    Failed(ShippingError),
}

fn json<R: BufRead + Send + 'static>(reader: R) -> Result<ShippingList, ShippingError> {
    let (tx, rx) = sync_channel(LOOKAHEAD);
    // serde_json pushes a document's elements through a visitor; a thread turns that into the
    // pull the caller wants, a bounded channel ahead.
    std::thread::Builder::new()
        .name("shipping-json".into())
        .spawn(move || parse_json(reader, &tx))
        .map_err(ShippingError::Io)?;
    let mut batch_id = None;
    let mut pending = None;
    // The batch id usually comes before the devices; wait for whichever comes first.
    match rx.recv() {
        Ok(Event::Batch(id)) => batch_id = Some(id),
        Ok(other) => pending = Some(other),
        Err(_) => return Err(malformed(None, "the JSON reader stopped")),
    }
    Ok(ShippingList {
        batch_id,
        entries: Box::new(JsonEntries {
            rx,
            pending,
            checker: Checker::new(),
            done: false,
        }),
    })
}

struct JsonEntries {
    rx: Receiver<Event>,
    pending: Option<Event>,
    checker: Checker,
    done: bool,
}

impl Iterator for JsonEntries {
    type Item = Result<ShippingEntry, ShippingError>;
    fn next(&mut self) -> Option<Self::Item> {
        while !self.done {
            let event = match self.pending.take() {
                Some(event) => event,
                None => match self.rx.recv() {
                    Ok(event) => event,
                    // The reader finished the document.
                    Err(_) => return None,
                },
            };
            match event {
                // A batch id after the devices is only metadata.
                Event::Batch(_) => {}
                Event::Device(index, value) => {
                    return Some(Ok(device(&mut self.checker, index, &value)));
                }
                Event::Failed(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            }
        }
        None
    }
}

/// One device object of the MES JSON.
fn device(checker: &mut Checker, index: u64, value: &Value) -> ShippingEntry {
    let Some(object) = value.as_object() else {
        return ShippingEntry::Rejected(Rejected {
            index,
            error: ErrorName::MissingIdentity,
            message: format!(
                "a device must be an object with a certFingerprint or a deviceId, got {}",
                kind(value)
            ),
            device_id: None,
        });
    };
    let text = |field: &str| object.get(field).and_then(Value::as_str);
    let certificate = text("certFingerprint").or_else(|| text("certificateId"));
    let attributes = match object.get("attributes") {
        None | Some(Value::Null) => Ok(BTreeMap::new()),
        Some(Value::Object(map)) => map
            .iter()
            .map(|(name, v)| match v {
                Value::String(s) => Ok((name.clone(), s.clone())),
                Value::Number(n) => Ok((name.clone(), n.to_string())),
                Value::Bool(b) => Ok((name.clone(), b.to_string())),
                other => Err(format!("attribute {name} is {}, not text", kind(other))),
            })
            .collect(),
        Some(other) => Err(format!("attributes must be an object, got {}", kind(other))),
    };
    checker.entry(index, certificate, text("deviceId"), attributes)
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Bytes read since the last device ended; more than [`MAX_ENTRY_BYTES`] is an error, so that
/// one huge device object cannot take the memory.
struct Budgeted<R> {
    inner: R,
    since_entry: Rc<Cell<u64>>,
}

impl<R: Read> Read for Budgeted<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        let total = self.since_entry.get() + n as u64;
        self.since_entry.set(total);
        if total > MAX_ENTRY_BYTES {
            return Err(std::io::Error::other(format!(
                "one device takes more than {MAX_ENTRY_BYTES} bytes"
            )));
        }
        Ok(n)
    }
}

fn parse_json<R: BufRead>(reader: R, tx: &SyncSender<Event>) {
    let since_entry = Rc::new(Cell::new(0));
    let reader = Budgeted {
        inner: reader,
        since_entry: Rc::clone(&since_entry),
    };
    let mut de = serde_json::Deserializer::from_reader(reader);
    let mut sink = Sink {
        tx,
        index: 0,
        since_entry,
    };
    let parsed = Document(&mut sink)
        .deserialize(&mut de)
        .and_then(|()| de.end());
    if let Err(e) = parsed {
        // A consumer that stopped reading is gone too: nothing to tell then.
        let at = (sink.index > 0).then_some(sink.index);
        let _ = tx.send(Event::Failed(malformed(at, e.to_string())));
    }
}

/// Where parsed devices go, numbered.
struct Sink<'a> {
    tx: &'a SyncSender<Event>,
    index: u64,
    since_entry: Rc<Cell<u64>>,
}

impl Sink<'_> {
    /// Sends; false when the consumer is gone (it stopped reading).
    fn send(&self, event: Event) -> bool {
        self.tx.send(event).is_ok()
    }
}

/// The whole document: `{"batchId", "devices": […], …}` or a bare array of devices.
struct Document<'s, 'a>(&'s mut Sink<'a>);

impl<'de> DeserializeSeed<'de> for Document<'_, '_> {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Document<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(r#"an object {"batchId": …, "devices": […]} or an array of devices"#)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut devices = false;
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "batchId" => {
                    let id: String = map.next_value()?;
                    if !self.0.send(Event::Batch(id)) {
                        return Err(serde::de::Error::custom("the reader stopped"));
                    }
                }
                "devices" => {
                    devices = true;
                    map.next_value_seed(Devices(&mut *self.0))?;
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        if devices {
            Ok(())
        } else {
            Err(serde::de::Error::missing_field("devices"))
        }
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<(), A::Error> {
        Devices(self.0).visit_seq(seq)
    }
}

/// The array of devices, each sent on as it is parsed.
struct Devices<'s, 'a>(&'s mut Sink<'a>);

impl<'de> DeserializeSeed<'de> for Devices<'_, '_> {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for Devices<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an array of devices")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some(value) = seq.next_element::<Value>()? {
            let index = self.0.index;
            self.0.index += 1;
            self.0.since_entry.set(0);
            if !self.0.send(Event::Device(index, value)) {
                return Err(serde::de::Error::custom("the reader stopped"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
