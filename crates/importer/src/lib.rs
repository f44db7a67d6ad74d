//! IoT registration of decorated entries: per-API pacing below the account quota share,
//! idempotent steps, and error classes the state machine can act on.
//!
//! [`Importer::register`] returns `Ok` with a per-entry [`EntryResult`] (registered, already
//! registered, or rejected with a `Thingpress.*` name) or `Err` with an [`ImportError`] that ends
//! the task: `Throttled`/`Transient` are retried by the ASL, `AwsRejected` is terminal.

mod apis;
mod classify;
mod pacer;
mod quotas;
mod register;
mod resources;

use std::time::Duration;

use aws_sdk_iot::config::retry::RetryConfig;
use thingpress_manifest::ErrorName;

pub use apis::{Api, PerNewCertificate, new_certificates_per_second};
pub use pacer::{PacedApi, Pacer, TokenBucket};
pub use quotas::{DEFAULT_RESERVE, MAX_RESERVE, Quotas, RESERVE_ENV_VAR, reserve_from_env};
pub use register::{ApiCalls, CertificateStep, EntryResult, EntrySteps, Importer, Outcome};
pub use resources::check_profile_resources;

/// Why a registration task cannot go on.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// IoT still throttles after the SDK's short retry; the ASL retries the task with backoff.
    #[error("throttled: {0}")]
    Throttled(String),
    /// A network fault, timeout or 5xx; worth another try.
    #[error("transient failure: {0}")]
    Transient(String),
    /// AWS refused for a reason retrying cannot fix (access denied, resource quota, missing
    /// thing type / group / policy, …); the message names the API and the resource.
    #[error("refused by AWS: {0}")]
    AwsRejected(String),
    /// The profile names IoT resources that do not exist or cannot be used.
    #[error("profile {profile:?} cannot be used: {}", problems.join("; "))]
    ProfileProblems {
        /// The profile's name.
        profile: String,
        /// Each missing or unusable resource.
        problems: Vec<String>,
    },
    /// Quotas, reserve or share are not usable numbers.
    #[error("invalid pacing configuration: {0}")]
    InvalidConfig(String),
}

impl ImportError {
    /// The `Thingpress.*` name a Lambda reports for this error.
    pub fn name(&self) -> ErrorName {
        match self {
            ImportError::Throttled(_) => ErrorName::Throttled,
            ImportError::Transient(_) => ErrorName::Transient,
            ImportError::AwsRejected(_) => ErrorName::AwsRejected,
            ImportError::ProfileProblems { .. } => ErrorName::InvalidProfile,
            ImportError::InvalidConfig(_) => ErrorName::InvalidInput,
        }
    }
}

/// The SDK retry for IoT clients: standard mode, 3 attempts, 50 ms initial and 1 s maximum
/// backoff. It absorbs brief throttles and blips; the state machine's retry does the long,
/// jittered backoff, so a long SDK retry would only burn Lambda time.
pub fn sdk_retry_config() -> RetryConfig {
    RetryConfig::standard()
        .with_max_attempts(3)
        .with_initial_backoff(Duration::from_millis(50))
        .with_max_backoff(Duration::from_secs(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_names() {
        assert_eq!(
            ImportError::Throttled("x".into()).name(),
            ErrorName::Throttled
        );
        assert_eq!(
            ImportError::Transient("x".into()).name(),
            ErrorName::Transient
        );
        assert_eq!(
            ImportError::AwsRejected("x".into()).name(),
            ErrorName::AwsRejected
        );
        let problems = ImportError::ProfileProblems {
            profile: "p".into(),
            problems: vec!["a".into(), "b".into()],
        };
        assert_eq!(problems.name(), ErrorName::InvalidProfile);
        assert_eq!(problems.to_string(), "profile \"p\" cannot be used: a; b");
    }

    #[test]
    fn retry_config_is_short() {
        let c = sdk_retry_config();
        assert_eq!(c.max_attempts(), 3);
        assert!(c.max_backoff() <= Duration::from_secs(1));
    }
}
