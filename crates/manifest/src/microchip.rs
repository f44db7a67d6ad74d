//! Microchip Trust&GO / TrustFLEX manifests: a JSON array of flattened JWS objects
//! `{"payload","protected","header":{"uniqueId"},"signature"}`, each signed by a Microchip
//! manifest signer and carrying the device certificate in `publicKeySet.keys[kid "0"].x5c`.
//!
//! The array is read one object at a time (never held whole); the objects' signatures, payloads
//! and certificates are checked on all cores, in manifest order (`batch::validate_in_order`).

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::io::BufRead;
use std::sync::{Arc, OnceLock};

use aws_lc_rs::signature::{self, ParsedPublicKey, VerificationAlgorithm};
use base64::Engine;
use base64::alphabet;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use serde::Deserialize;
use serde_json::Value;
use x509_parser::extensions::ParsedExtension;
use x509_parser::prelude::{FromDer, X509Certificate};
use x509_parser::public_key::RSAPublicKey;

use crate::batch::validate_in_order;
use crate::cert::{Certificate, der_to_pem};
use crate::{Accepted, Entries, Entry, ErrorName, ManifestError, Options, Rejected, Supplier};

/// Padding is optional on input: JWS omits it, some tools add it.
const LENIENT: GeneralPurposeConfig =
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
/// base64url as JWS uses it (RFC 7515 §2), padding optional.
pub(crate) const BASE64URL: GeneralPurpose = GeneralPurpose::new(&alphabet::URL_SAFE, LENIENT);
/// Standard base64 as `x5c` uses it (RFC 7517 §4.7), padding optional.
pub(crate) const BASE64: GeneralPurpose = GeneralPurpose::new(&alphabet::STANDARD, LENIENT);

/// The JWS algorithms a verifier key may be used with (RFC 7518 §3.1 names).
const ALGORITHMS: [(&str, &'static dyn VerificationAlgorithm); 10] = [
    ("ES256", &signature::ECDSA_P256_SHA256_FIXED),
    ("ES384", &signature::ECDSA_P384_SHA384_FIXED),
    ("ES512", &signature::ECDSA_P521_SHA512_FIXED),
    ("RS256", &signature::RSA_PKCS1_2048_8192_SHA256),
    ("RS384", &signature::RSA_PKCS1_2048_8192_SHA384),
    ("RS512", &signature::RSA_PKCS1_2048_8192_SHA512),
    ("PS256", &signature::RSA_PSS_2048_8192_SHA256),
    ("PS384", &signature::RSA_PSS_2048_8192_SHA384),
    ("PS512", &signature::RSA_PSS_2048_8192_SHA512),
    ("EdDSA", &signature::ED25519),
];

/// Microchip's published manifest-signer certificates (Log Signer 001–004, Manifest Signer 005).
const BUILTIN: [(&str, &str); 5] = [
    (
        "MCHP_manifest_signer_1_Jan-21-2019_Jul2-21-2019.crt",
        include_str!("../verifiers/MCHP_manifest_signer_1_Jan-21-2019_Jul2-21-2019.crt"),
    ),
    (
        "MCHP_manifest_signer_2_Aug-15-2019_Aug-15-2020.crt",
        include_str!("../verifiers/MCHP_manifest_signer_2_Aug-15-2019_Aug-15-2020.crt"),
    ),
    (
        "MCHP_manifest_signer_3_Aug-13-2020_Aug-13-2023.crt",
        include_str!("../verifiers/MCHP_manifest_signer_3_Aug-13-2020_Aug-13-2023.crt"),
    ),
    (
        "MCHP_manifest_signer_4_Jul-18-2023_Jul-18-2026.crt",
        include_str!("../verifiers/MCHP_manifest_signer_4_Jul-18-2023_Jul-18-2026.crt"),
    ),
    (
        "MCHP_manifest_signer_5_Mar_6-2024_noExpiration.crt",
        include_str!("../verifiers/MCHP_manifest_signer_5_Mar_6-2024_noExpiration.crt"),
    ),
];

/// Certificates whose keys may sign Microchip manifests; the default holds Microchip's five
/// published manifest signers.
///
/// Signers are found by the JWS `kid` (base64url of the certificate's SubjectKeyIdentifier) or
/// `x5t#S256` (base64url of the SHA-256 of its DER). A signer certificate's validity period is
/// deliberately not enforced: a manifest signed while the signer was valid stays valid after the
/// signer expires (Log Signer 004 expires in July 2026, yet its manifests remain genuine).
#[derive(Clone)]
pub struct Verifiers {
    signers: Vec<Arc<Signer>>,
    by_kid: HashMap<String, usize>,
    by_x5t: HashMap<String, usize>,
}

/// One verifier certificate, its key parsed once for every JWS algorithm it can serve.
struct Signer {
    subject: String,
    kid: Option<String>,
    x5t: String,
    keys: Vec<(&'static str, ParsedPublicKey)>,
}

impl Signer {
    fn from_der(der: &[u8]) -> Result<Signer, String> {
        let (rest, cert) =
            X509Certificate::from_der(der).map_err(|e| format!("not an X.509 certificate: {e}"))?;
        if !rest.is_empty() {
            return Err(format!(
                "{} trailing bytes after the certificate",
                rest.len()
            ));
        }
        let subject = cert.subject().to_string();
        let kid = cert
            .extensions()
            .iter()
            .find_map(|ext| match ext.parsed_extension() {
                ParsedExtension::SubjectKeyIdentifier(ski) => Some(URL_SAFE_NO_PAD.encode(ski.0)),
                _ => None,
            });
        let x5t =
            URL_SAFE_NO_PAD.encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, der));
        let public_key = cert.public_key().subject_public_key.data.as_ref();
        let keys: Vec<_> = ALGORITHMS
            .iter()
            .filter_map(|&(name, algorithm)| {
                ParsedPublicKey::new(algorithm, public_key)
                    .ok()
                    .map(|key| (name, key))
            })
            .collect();
        if keys.is_empty() {
            return Err(format!(
                "{subject}: its public key fits none of the supported JWS algorithms"
            ));
        }
        Ok(Signer {
            subject,
            kid,
            x5t,
            keys,
        })
    }

    fn key(&self, alg: &str) -> Option<&ParsedPublicKey> {
        self.keys
            .iter()
            .find_map(|(name, key)| (*name == alg).then_some(key))
    }
}

impl Verifiers {
    /// No verifiers at all: every Microchip entry is then `UnknownSigner`.
    pub fn empty() -> Self {
        Verifiers {
            signers: Vec::new(),
            by_kid: HashMap::new(),
            by_x5t: HashMap::new(),
        }
    }

    /// Exactly the certificates of a PEM text (every `CERTIFICATE` block in it).
    pub fn from_pem(text: &str) -> Result<Self, ManifestError> {
        let mut verifiers = Verifiers::empty();
        verifiers.add_pem(text)?;
        Ok(verifiers)
    }

    /// These verifiers plus Microchip's built-in manifest signers.
    pub fn with_builtin(mut self) -> Self {
        self.extend(builtin());
        self
    }

    /// Adds every `CERTIFICATE` block of a PEM text; returns how many were new.
    pub fn add_pem(&mut self, text: &str) -> Result<usize, ManifestError> {
        let before = self.signers.len();
        let mut blocks = 0usize;
        for (i, block) in crate::cert::pem_blocks(text).enumerate() {
            let der =
                block.map_err(|e| ManifestError::InvalidVerifier(format!("PEM block {i}: {e}")))?;
            self.add_der(&der)
                .map_err(|e| ManifestError::InvalidVerifier(format!("PEM block {i}: {e}")))?;
            blocks += 1;
        }
        if blocks == 0 {
            return Err(ManifestError::InvalidVerifier(
                "the text holds no PEM CERTIFICATE block".to_owned(),
            ));
        }
        Ok(self.signers.len() - before)
    }

    /// Adds one DER certificate (a duplicate is ignored).
    pub fn add_der(&mut self, der: &[u8]) -> Result<(), ManifestError> {
        let signer = Signer::from_der(der).map_err(ManifestError::InvalidVerifier)?;
        self.insert(Arc::new(signer));
        Ok(())
    }

    /// Adds every verifier of `other` that is not already here.
    pub fn extend(&mut self, other: &Verifiers) {
        for signer in &other.signers {
            self.insert(Arc::clone(signer));
        }
    }

    /// How many verifier certificates there are.
    pub fn len(&self) -> usize {
        self.signers.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.signers.is_empty()
    }

    /// The `kid` values (base64url SubjectKeyIdentifier) of the verifiers that have one.
    pub fn kids(&self) -> impl Iterator<Item = &str> {
        self.signers.iter().filter_map(|s| s.kid.as_deref())
    }

    fn insert(&mut self, signer: Arc<Signer>) {
        if self.by_x5t.contains_key(&signer.x5t) {
            return;
        }
        let at = self.signers.len();
        self.by_x5t.insert(signer.x5t.clone(), at);
        if let Some(kid) = &signer.kid {
            self.by_kid.entry(kid.clone()).or_insert(at);
        }
        self.signers.push(signer);
    }

    /// The certificate thumbprint identifies a signer exactly, so it wins over the key id.
    fn find(&self, kid: Option<&str>, x5t: Option<&str>) -> Option<&Signer> {
        let by = |map: &HashMap<String, usize>, id: Option<&str>| {
            id.and_then(|id| map.get(id.trim_end_matches('=')))
                .and_then(|&at| self.signers.get(at))
        };
        by(&self.by_x5t, x5t)
            .or_else(|| by(&self.by_kid, kid))
            .map(Arc::as_ref)
    }
}

/// Parsed once per process; a unit test checks that all five load.
fn builtin() -> &'static Verifiers {
    static BUILTIN_VERIFIERS: OnceLock<Verifiers> = OnceLock::new();
    BUILTIN_VERIFIERS.get_or_init(|| {
        let mut verifiers = Verifiers::empty();
        for (_, pem) in BUILTIN {
            // Cannot fail for the shipped files (tested); a failure leaves that signer out.
            let _ = verifiers.add_pem(pem);
        }
        verifiers
    })
}

impl Default for Verifiers {
    fn default() -> Self {
        builtin().clone()
    }
}

impl fmt::Debug for Verifiers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.signers.iter().map(|s| {
                format!(
                    "{} (kid {}, x5t#S256 {})",
                    s.subject,
                    s.kid.as_deref().unwrap_or("-"),
                    s.x5t
                )
            }))
            .finish()
    }
}

/// One flattened JWS object of the array, as read (fields not yet decoded).
#[derive(Deserialize)]
struct JwsObject {
    payload: String,
    protected: String,
    signature: String,
    #[serde(default)]
    header: Option<UnprotectedHeader>,
}

#[derive(Deserialize)]
struct UnprotectedHeader {
    #[serde(rename = "uniqueId")]
    unique_id: Option<String>,
}

#[derive(Deserialize)]
struct ProtectedHeader {
    alg: Option<String>,
    kid: Option<String>,
    #[serde(rename = "x5t#S256")]
    x5t_s256: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Payload {
    version: Option<Value>,
    model: Option<Value>,
    part_number: Option<Value>,
    manufacturer: Option<Value>,
    provisioner: Option<Value>,
    distributor: Option<Value>,
    group_id: Option<Value>,
    provisioning_timestamp: Option<Value>,
    unique_id: Option<String>,
    public_key_set: Option<KeySet>,
}

#[derive(Deserialize)]
struct KeySet {
    #[serde(default)]
    keys: Vec<Jwk>,
}

#[derive(Deserialize)]
struct Jwk {
    kid: Option<Value>,
    kty: Option<String>,
    x: Option<String>,
    y: Option<String>,
    n: Option<String>,
    e: Option<String>,
    x5c: Option<Vec<String>>,
}

impl Jwk {
    fn is_device_key(&self) -> bool {
        match &self.kid {
            Some(Value::String(kid)) => kid == "0",
            Some(Value::Number(kid)) => kid.as_u64() == Some(0),
            _ => false,
        }
    }
}

/// A raw entry: its index and the JWS object, or why the object is not a flattened JWS.
type Raw = (u64, Result<JwsObject, String>);

/// Streams the entries of a Microchip manifest.
pub(crate) fn entries<'a, R: BufRead + Send + 'a>(
    reader: R,
    options: &Options,
) -> Result<Entries<'a>, ManifestError> {
    let max = usize::try_from(options.limits.max_entry_bytes).unwrap_or(usize::MAX);
    let mut array = JsonArray::new(reader, max);
    // Reading the first entry now makes a non-manifest fail at open, not mid-stream.
    let first = array.next_raw()?;
    let verifiers = options.verifiers.clone();
    let raw = first
        .map(Ok)
        .into_iter()
        .chain(std::iter::from_fn(move || array.next_raw().transpose()));
    let validated = validate_in_order(raw, move |(index, jws): Raw| {
        validate(&verifiers, index, jws)
    });
    Ok(Entries::new(Supplier::Microchip, validated))
}

fn validate(verifiers: &Verifiers, index: u64, jws: Result<JwsObject, String>) -> Entry {
    let jws = match jws {
        Ok(jws) => jws,
        Err(reason) => {
            return Entry::Rejected(Rejected {
                index,
                error: ErrorName::InvalidSignature,
                message: format!("not a flattened JWS object: {reason}"),
                device_id: None,
            });
        }
    };
    match verify(verifiers, &jws) {
        Ok(accepted) => Entry::Accepted(Accepted { index, ..accepted }),
        Err((error, message)) => Entry::Rejected(Rejected {
            index,
            error,
            message,
            device_id: jws.header.and_then(|h| h.unique_id),
        }),
    }
}

type Rejection = (ErrorName, String);

/// Checks one entry: signature, device id, certificate, key; `index` is filled in by the caller.
/// The first failed check names the rejection, so the checks run in this order.
fn verify(verifiers: &Verifiers, jws: &JwsObject) -> Result<Accepted, Rejection> {
    check_signature(verifiers, jws)?;
    let payload = decode_payload(&jws.payload)?;
    let device_id = signed_device_id(jws, &payload)?;
    let jwk = device_key(&payload)?;
    let (certificate, chain) = device_certificate(jwk)?;
    check_key(jwk, &certificate).map_err(|reason| (ErrorName::KeyMismatch, reason))?;
    Ok(Accepted {
        index: 0,
        certificate_pem: certificate.to_pem(),
        certificate_id: certificate.id,
        chain,
        device_id: device_id.to_owned(),
        cn: certificate.cn,
        fields: payload_fields(&payload, device_id),
    })
}

fn invalid_signature(reason: String) -> Rejection {
    (ErrorName::InvalidSignature, reason)
}

fn missing_certificate(reason: String) -> Rejection {
    (ErrorName::MissingCertificate, reason)
}

fn invalid_certificate(reason: String) -> Rejection {
    (ErrorName::InvalidCertificate, reason)
}

/// The signature over `protected.payload` must verify with a known signer's key for the
/// header's `alg`.
fn check_signature(verifiers: &Verifiers, jws: &JwsObject) -> Result<(), Rejection> {
    let header_json = BASE64URL
        .decode(&jws.protected)
        .map_err(|e| invalid_signature(format!("protected header is not base64url: {e}")))?;
    let header: ProtectedHeader = serde_json::from_slice(&header_json)
        .map_err(|e| invalid_signature(format!("protected header is not a JWS header: {e}")))?;
    let signer = verifiers
        .find(header.kid.as_deref(), header.x5t_s256.as_deref())
        .ok_or_else(|| {
            (
                ErrorName::UnknownSigner,
                format!(
                    "no verifier certificate has kid {} or x5t#S256 {}",
                    header.kid.as_deref().unwrap_or("(none)"),
                    header.x5t_s256.as_deref().unwrap_or("(none)")
                ),
            )
        })?;
    let alg = header
        .alg
        .as_deref()
        .ok_or_else(|| invalid_signature("protected header has no alg".to_owned()))?;
    if !ALGORITHMS.iter().any(|(name, _)| *name == alg) {
        return Err(invalid_signature(format!(
            "unsupported JWS algorithm {alg:?}"
        )));
    }
    let key = signer.key(alg).ok_or_else(|| {
        invalid_signature(format!(
            "signer {} has no key usable with {alg}",
            signer.subject
        ))
    })?;
    let signature = BASE64URL
        .decode(&jws.signature)
        .map_err(|e| invalid_signature(format!("signature is not base64url: {e}")))?;
    let mut signing_input = Vec::with_capacity(jws.protected.len() + 1 + jws.payload.len());
    signing_input.extend_from_slice(jws.protected.as_bytes());
    signing_input.push(b'.');
    signing_input.extend_from_slice(jws.payload.as_bytes());
    key.verify_sig(&signing_input, &signature).map_err(|_| {
        invalid_signature(format!(
            "{alg} signature does not verify with signer {}",
            signer.subject
        ))
    })
}

/// The signed payload, decoded (a payload that cannot be read carries no certificate).
fn decode_payload(payload: &str) -> Result<Payload, Rejection> {
    let payload_json = BASE64URL
        .decode(payload)
        .map_err(|e| missing_certificate(format!("payload is not base64url: {e}")))?;
    serde_json::from_slice(&payload_json).map_err(|e| {
        missing_certificate(format!("payload is not a Microchip manifest payload: {e}"))
    })
}

/// The device id: the unprotected header's `uniqueId` must be the one the payload signs.
fn signed_device_id<'p>(jws: &JwsObject, payload: &'p Payload) -> Result<&'p str, Rejection> {
    let mismatch = |reason: &str| (ErrorName::DeviceIdMismatch, reason.to_owned());
    let header_id = jws
        .header
        .as_ref()
        .and_then(|h| h.unique_id.as_deref())
        .ok_or_else(|| mismatch("the unprotected header has no uniqueId"))?;
    let device_id = payload
        .unique_id
        .as_deref()
        .ok_or_else(|| mismatch("the signed payload has no uniqueId"))?;
    if header_id != device_id {
        return Err((
            ErrorName::DeviceIdMismatch,
            format!(
                "header uniqueId {header_id:?} differs from the signed payload's {device_id:?}"
            ),
        ));
    }
    Ok(device_id)
}

/// The device's key: the `publicKeySet` key with kid "0".
fn device_key(payload: &Payload) -> Result<&Jwk, Rejection> {
    payload
        .public_key_set
        .as_ref()
        .ok_or_else(|| missing_certificate("payload has no publicKeySet".to_owned()))?
        .keys
        .iter()
        .find(|key| key.is_device_key())
        .ok_or_else(|| missing_certificate("publicKeySet has no key with kid \"0\"".to_owned()))
}

/// The device certificate (`x5c[0]`) and its issuers (the rest of `x5c`, as PEM).
fn device_certificate(jwk: &Jwk) -> Result<(Certificate, Vec<String>), Rejection> {
    let (device, chain) = jwk
        .x5c
        .as_deref()
        .and_then(<[String]>::split_first)
        .ok_or_else(|| missing_certificate("key \"0\" has no x5c certificate".to_owned()))?;
    let der = BASE64
        .decode(device)
        .map_err(|e| invalid_certificate(format!("x5c[0] is not base64: {e}")))?;
    let certificate =
        Certificate::from_der(der).map_err(|e| invalid_certificate(format!("x5c[0]: {e}")))?;
    let chain = chain
        .iter()
        .zip(1..)
        .map(|(b64, i)| {
            let der = BASE64
                .decode(b64)
                .map_err(|e| invalid_certificate(format!("x5c[{i}] is not base64: {e}")))?;
            match X509Certificate::from_der(&der) {
                Ok(([], _)) => Ok(der_to_pem(&der)),
                Ok(_) => Err(invalid_certificate(format!("x5c[{i}] has trailing bytes"))),
                Err(e) => Err(invalid_certificate(format!(
                    "x5c[{i}]: not an X.509 certificate: {e}"
                ))),
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok((certificate, chain))
}

/// The payload's supplier fields for templates, by their manifest names.
fn payload_fields(payload: &Payload, device_id: &str) -> BTreeMap<String, String> {
    let mut fields = BTreeMap::new();
    let named = [
        ("version", &payload.version),
        ("model", &payload.model),
        ("partNumber", &payload.part_number),
        ("manufacturer", &payload.manufacturer),
        ("provisioner", &payload.provisioner),
        ("distributor", &payload.distributor),
        ("groupId", &payload.group_id),
        ("provisioningTimestamp", &payload.provisioning_timestamp),
    ];
    for (name, value) in named {
        if let Some(text) = value.as_ref().and_then(field_text) {
            fields.insert(name.to_owned(), text);
        }
    }
    fields.insert("uniqueId".to_owned(), device_id.to_owned());
    fields
}

/// A payload field as template text; organisations are flattened to their `organizationName`.
fn field_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Object(map) => map
            .get("organizationName")
            .and_then(Value::as_str)
            .map(str::to_owned),
        Value::Null | Value::Array(_) => None,
    }
}

/// The JWK must declare the certificate's key: EC by its point, RSA by modulus and exponent.
fn check_key(jwk: &Jwk, certificate: &Certificate) -> Result<(), String> {
    let decode = |name: &str, value: &Option<String>| {
        let value = value
            .as_deref()
            .ok_or_else(|| format!("JWK has no {name}"))?;
        BASE64URL
            .decode(value)
            .map_err(|e| format!("JWK {name} is not base64url: {e}"))
    };
    match jwk.kty.as_deref() {
        Some("EC") => {
            let x = decode("x", &jwk.x)?;
            let y = decode("y", &jwk.y)?;
            let mut point = Vec::with_capacity(1 + x.len() + y.len());
            point.push(0x04);
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            if point == certificate.public_key {
                Ok(())
            } else {
                Err("x5c[0] public key differs from the JWK's EC point".to_owned())
            }
        }
        Some("RSA") => {
            let n = decode("n", &jwk.n)?;
            let e = decode("e", &jwk.e)?;
            let (_, key) = RSAPublicKey::from_der(&certificate.public_key)
                .map_err(|_| "x5c[0] has no RSA key but the JWK is RSA".to_owned())?;
            if unsigned(key.modulus) == unsigned(&n) && unsigned(key.exponent) == unsigned(&e) {
                Ok(())
            } else {
                Err("x5c[0] public key differs from the JWK's RSA modulus/exponent".to_owned())
            }
        }
        Some(other) => Err(format!("JWK kty {other:?} is not supported (EC or RSA)")),
        None => Err("JWK has no kty".to_owned()),
    }
}

/// Big-endian integer bytes without leading zeros (DER adds one for the sign bit, JWK does not).
fn unsigned(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len());
    bytes.get(start..).unwrap_or_default()
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    Start,
    AfterEntry,
    Done,
}

/// Reads a top-level JSON array one element at a time, holding at most one element in memory.
struct JsonArray<R> {
    reader: R,
    max_entry_bytes: usize,
    index: u64,
    state: State,
    buf: Vec<u8>,
}

fn describe(byte: u8) -> String {
    if byte.is_ascii_graphic() {
        format!("'{}'", char::from(byte))
    } else {
        format!("byte 0x{byte:02x}")
    }
}

impl<R: BufRead> JsonArray<R> {
    fn new(reader: R, max_entry_bytes: usize) -> Self {
        JsonArray {
            reader,
            max_entry_bytes,
            index: 0,
            state: State::Start,
            buf: Vec::with_capacity(8 * 1024),
        }
    }

    fn malformed(&self, reason: String) -> ManifestError {
        ManifestError::malformed(Supplier::Microchip, Some(self.index), reason)
    }

    /// The next raw entry, `None` after the closing `]`; after an error the array is done.
    fn next_raw(&mut self) -> Result<Option<Raw>, ManifestError> {
        let result = self.advance();
        if !matches!(result, Ok(Some(_))) {
            self.state = State::Done;
        }
        result
    }

    fn advance(&mut self) -> Result<Option<Raw>, ManifestError> {
        let entry_follows = match self.state {
            State::Done => false,
            State::Start => self.open_array()?,
            State::AfterEntry => self.after_entry()?,
        };
        if !entry_follows {
            return Ok(None);
        }
        self.read_object()?;
        let jws = match serde_json::from_slice::<JwsObject>(&self.buf) {
            Ok(jws) => Ok(jws),
            // Valid JSON of the wrong shape is this entry's problem, not the manifest's.
            Err(e) if e.classify() == serde_json::error::Category::Data => Err(e.to_string()),
            Err(e) => return Err(self.malformed(format!("entry is not valid JSON: {e}"))),
        };
        let index = self.index;
        self.index += 1;
        self.state = State::AfterEntry;
        Ok(Some((index, jws)))
    }

    /// Consumes a UTF-8 BOM if any and the opening `[`; whether an entry follows it (else the
    /// array was empty and is closed).
    fn open_array(&mut self) -> Result<bool, ManifestError> {
        if self.reader.fill_buf()?.starts_with(b"\xEF\xBB\xBF") {
            self.reader.consume(3);
        }
        match self.peek_non_whitespace()? {
            Some(b'[') => self.reader.consume(1),
            Some(other) => {
                return Err(self.malformed(format!(
                    "expected '[' opening the array of entries, found {}",
                    describe(other)
                )));
            }
            None => return Err(self.malformed("the manifest is empty".to_owned())),
        }
        if self.peek_non_whitespace()? == Some(b']') {
            self.reader.consume(1);
            self.expect_end()?;
            return Ok(false);
        }
        self.expect_object("truncated: the array is not closed")?;
        Ok(true)
    }

    /// After an entry: a `,` and the next entry, or the closing `]`; whether an entry follows.
    fn after_entry(&mut self) -> Result<bool, ManifestError> {
        match self.peek_non_whitespace()? {
            Some(b',') => {
                self.reader.consume(1);
                self.expect_object("truncated: the array ends after a ','")?;
                Ok(true)
            }
            Some(b']') => {
                self.reader.consume(1);
                self.expect_end()?;
                Ok(false)
            }
            Some(other) => Err(self.malformed(format!(
                "expected ',' or ']' after the previous entry, found {}",
                describe(other)
            ))),
            None => Err(self.malformed("truncated: the array is not closed".to_owned())),
        }
    }

    /// The next value must be an object (an entry); `at_end` says what is wrong if the input
    /// ends instead.
    fn expect_object(&mut self, at_end: &str) -> Result<(), ManifestError> {
        match self.peek_non_whitespace()? {
            Some(b'{') => Ok(()),
            Some(other) => Err(self.malformed(format!(
                "entry is not a JSON object: found {}",
                describe(other)
            ))),
            None => Err(self.malformed(at_end.to_owned())),
        }
    }

    /// Skips JSON whitespace; returns the next byte without consuming it, `None` at the end.
    fn peek_non_whitespace(&mut self) -> Result<Option<u8>, ManifestError> {
        loop {
            let chunk = self.reader.fill_buf()?;
            if chunk.is_empty() {
                return Ok(None);
            }
            let blanks = chunk
                .iter()
                .take_while(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
                .count();
            let next = chunk.get(blanks).copied();
            self.reader.consume(blanks);
            if next.is_some() {
                return Ok(next);
            }
        }
    }

    /// After the closing `]` only whitespace may follow.
    fn expect_end(&mut self) -> Result<(), ManifestError> {
        match self.peek_non_whitespace()? {
            None => Ok(()),
            Some(other) => Err(self.malformed(format!(
                "unexpected {} after the closing ']'",
                describe(other)
            ))),
        }
    }

    /// Copies one JSON object (the reader is at its `{`) into `buf`, consuming exactly its bytes.
    /// Only strings and nesting are tracked here; serde_json checks the syntax afterwards.
    fn read_object(&mut self) -> Result<(), ManifestError> {
        self.buf.clear();
        let mut depth = 0usize;
        let mut in_string = false;
        let mut escaped = false;
        loop {
            let chunk = self.reader.fill_buf()?;
            if chunk.is_empty() {
                return Err(self.malformed("truncated inside the entry".to_owned()));
            }
            let mut end = None;
            let mut i = 0;
            while let Some(&byte) = chunk.get(i) {
                if in_string {
                    if escaped {
                        escaped = false;
                    } else if byte == b'\\' {
                        escaped = true;
                    } else if byte == b'"' {
                        in_string = false;
                    } else {
                        // Plain string bytes are the bulk of an entry: jump to the next special one.
                        let rest = chunk.get(i..).unwrap_or_default();
                        i += rest
                            .iter()
                            .position(|&c| c == b'"' || c == b'\\')
                            .unwrap_or(rest.len());
                        continue;
                    }
                } else {
                    match byte {
                        b'"' => in_string = true,
                        b'{' | b'[' => depth += 1,
                        b'}' | b']' => {
                            depth = depth.saturating_sub(1);
                            if depth == 0 {
                                end = Some(i + 1);
                                break;
                            }
                        }
                        _ => {}
                    }
                }
                i += 1;
            }
            let take = end.unwrap_or(chunk.len());
            if self.buf.len().saturating_add(take) > self.max_entry_bytes {
                return Err(ManifestError::LimitExceeded(format!(
                    "microchip entry {} is larger than the {}-byte entry limit",
                    self.index, self.max_entry_bytes
                )));
            }
            self.buf
                .extend_from_slice(chunk.get(..take).unwrap_or_default());
            self.reader.consume(take);
            if end.is_some() {
                return Ok(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw_entries(input: &[u8]) -> Vec<Result<Option<u64>, String>> {
        let mut array = JsonArray::new(input, 1 << 20);
        let mut out = Vec::new();
        loop {
            match array.next_raw() {
                Ok(Some((index, _))) => out.push(Ok(Some(index))),
                Ok(None) => {
                    out.push(Ok(None));
                    return out;
                }
                Err(e) => {
                    out.push(Err(e.to_string()));
                    return out;
                }
            }
        }
    }

    #[test]
    fn builtin_verifiers_all_load_with_their_kids() {
        let verifiers = Verifiers::default();
        assert_eq!(verifiers.len(), 5);
        assert!(
            verifiers
                .kids()
                .any(|kid| kid == "TCnpnzYB8M3CO776ByPJ2yX3KYo")
        );
        let signer = verifiers
            .find(None, Some("Vx2ZhBEX46-zTyiIYEWQP6eFzCg90ugGjh5epGBM4OM"))
            .unwrap();
        assert_eq!(signer.kid.as_deref(), Some("TCnpnzYB8M3CO776ByPJ2yX3KYo"));
        assert!(signer.key("ES256").is_some());
        assert!(signer.key("RS256").is_none());
        assert_eq!(Verifiers::empty().with_builtin().len(), 5);
        let mut twice = Verifiers::default();
        twice.extend(&Verifiers::default());
        assert_eq!(twice.len(), 5);
    }

    #[test]
    fn from_pem_rejects_text_without_certificates() {
        assert!(matches!(
            Verifiers::from_pem("nothing"),
            Err(ManifestError::InvalidVerifier(_))
        ));
        assert!(matches!(
            Verifiers::from_pem("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"),
            Err(ManifestError::InvalidVerifier(_))
        ));
    }

    #[test]
    fn array_reader_handles_strings_nesting_and_separators() {
        let input = br#" [ {"payload":"a}]\"{","protected":"p","signature":"s","x":[{}]} ,
            {"payload":"b","protected":"p","signature":"s"}]  "#;
        assert_eq!(raw_entries(input), vec![Ok(Some(0)), Ok(Some(1)), Ok(None)]);
        assert_eq!(raw_entries(b"[]"), vec![Ok(None)]);
        assert_eq!(raw_entries(b"\xEF\xBB\xBF [ ]\n"), vec![Ok(None)]);
    }

    #[test]
    fn array_reader_fails_on_broken_arrays_with_the_entry_index() {
        for (input, at) in [
            (&b""[..], "entry 0"),
            (b"{}", "entry 0"),
            (b"[{\"payload\":", "entry 0"),
            (b"[{\"a\":1},", "entry 1"),
            (b"[{\"a\":1} {\"a\":1}]", "entry 1"),
            (b"[{\"a\":1},]", "entry 1"),
            (b"[{\"a\" 1}]", "entry 0"),
            (b"[{\"a\":1}] x", "entry 1"),
            (b"[1]", "entry 0"),
        ] {
            let out = raw_entries(input);
            let last = out.last().unwrap();
            let message = last.as_ref().unwrap_err();
            assert!(message.contains(at), "{input:?}: {message}");
        }
    }

    #[test]
    fn array_reader_enforces_the_entry_limit() {
        let input = format!("[{{\"payload\":\"{}\"}}]", "a".repeat(100));
        let mut array = JsonArray::new(input.as_bytes(), 50);
        assert!(matches!(
            array.next_raw(),
            Err(ManifestError::LimitExceeded(_))
        ));
    }

    #[test]
    fn unsigned_strips_leading_zeros() {
        assert_eq!(unsigned(&[0, 0, 1, 2]), &[1, 2]);
        assert_eq!(unsigned(&[0]), &[] as &[u8]);
    }
}
