//! The one list of `Thingpress.*` error names: Lambda error types matched by the state machine,
//! and per-entry rejection reasons written to reports. A test keeps the ASL in step with it.

use serde::{Deserialize, Serialize};

macro_rules! error_names {
    ($( $(#[$doc:meta])* $variant:ident => $kind:ident ),+ $(,)?) => {
        /// A named Thingpress error; `as_str` is what the ASL, the reports and the CLI show.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum ErrorName {
            $( $(#[$doc])* $variant, )+
        }

        impl ErrorName {
            /// Every name, in declaration order.
            pub const ALL: &'static [ErrorName] = &[$(ErrorName::$variant),+];

            /// The wire name, `Thingpress.<Variant>`.
            pub fn as_str(self) -> &'static str {
                match self { $(ErrorName::$variant => concat!("Thingpress.", stringify!($variant)),)+ }
            }

            /// Whether the name ends a task (retryable or terminal) or rejects one entry.
            pub fn kind(self) -> ErrorKind {
                match self { $(ErrorName::$variant => ErrorKind::$kind,)+ }
            }
        }
    };
}

/// What an error name means to the state machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The task failed but running it again can succeed (the ASL retries with backoff).
    Retryable,
    /// The run cannot succeed; the ASL catches it into a Fail state.
    Terminal,
    /// One manifest entry is rejected; the run goes on.
    Entry,
}

error_names! {
    /// IoT throttled beyond the SDK's short retry.
    Throttled => Retryable,
    /// A network or 5xx fault that is worth another try.
    Transient => Retryable,
    /// The Lambda deadline drew near before the chunk's end; its progress is kept.
    DeadlineReached => Retryable,
    /// The task's input is not what the state machine should send.
    InvalidInput => Terminal,
    /// The manifest cannot be read at all.
    InvalidManifest => Terminal,
    /// The product profile is invalid or names IoT resources that do not exist.
    InvalidProfile => Terminal,
    /// Some chunks have no results: the import did not finish.
    IncompleteImport => Terminal,
    /// AWS refused a call for a reason retrying cannot fix (access denied, quota, …).
    AwsRejected => Terminal,
    /// A profile's target cannot be reached: its role cannot be assumed (missing, not trusting
    /// the stack, another external ID) or its Region refuses the calls. Only its chunks fail.
    TargetUnavailable => Terminal,
    /// The manifest entry's signature does not verify.
    InvalidSignature => Entry,
    /// The manifest entry is signed by a key that no verifier certificate holds.
    UnknownSigner => Entry,
    /// The entry's header names another device than its payload.
    DeviceIdMismatch => Entry,
    /// The certificate's public key differs from the key the entry declares.
    KeyMismatch => Entry,
    /// The entry holds no device certificate.
    MissingCertificate => Entry,
    /// The device certificate is not a parseable X.509 certificate.
    InvalidCertificate => Entry,
    /// The certificate already appeared earlier in the same manifest (only the first is imported).
    DuplicateCertificate => Entry,
    /// The profile's thing-name template gives an invalid name for this entry.
    InvalidThingName => Entry,
    /// An attribute template gives an invalid attribute name or value for this entry.
    InvalidAttribute => Entry,
    /// A thing of that name exists with another configuration.
    ThingConflict => Entry,
    /// IoT refused the certificate or the thing for this entry.
    RejectedByIot => Entry,
    /// A shipping-list entry's certificate is not 64 hex digits (a SHA-256 fingerprint).
    InvalidFingerprint => Entry,
    /// A shipping-list entry names neither a certificate nor a device.
    MissingIdentity => Entry,
    /// The device already appeared earlier in the same shipping list (only the first counts).
    DuplicateDevice => Entry,
    /// IoT holds no such certificate, or no such thing with a certificate attached.
    UnknownDevice => Entry,
    /// The certificate is REVOKED, which is final: it is never activated.
    CertificateRevoked => Entry,
    /// The entry does not lead to one certificate and one thing (a certificate on several
    /// things, or a thing with several certificates): which one to activate is not known.
    AmbiguousDevice => Entry,
    /// Decommission: the thing does not carry the profile's Thingpress mark (another tool, or
    /// another profile, made it), so it is left alone.
    NotThingpress => Entry,
    /// Decommission: the certificate is attached to another thing, has a policy the profile
    /// does not attach, is being transferred to another account, or the thing has another
    /// certificate; the device is left alone.
    ForeignAttachment => Entry,
}

impl std::fmt::Display for ErrorName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for ErrorName {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ErrorName::ALL
            .iter()
            .copied()
            .find(|name| name.as_str() == s)
            .ok_or_else(|| format!("unknown error name {s:?}"))
    }
}

impl Serialize for ErrorName {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for ErrorName {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = std::borrow::Cow::<'de, str>::deserialize(deserializer)?;
        name.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_through_serde_and_from_str() {
        for name in ErrorName::ALL {
            let json = serde_json::to_string(name).unwrap();
            assert_eq!(json, format!("\"{}\"", name.as_str()));
            assert_eq!(serde_json::from_str::<ErrorName>(&json).unwrap(), *name);
            assert_eq!(name.as_str().parse::<ErrorName>().unwrap(), *name);
        }
        assert!("Thingpress.Nope".parse::<ErrorName>().is_err());
    }
}
