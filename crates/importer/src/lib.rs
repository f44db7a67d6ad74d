//! IoT registration of decorated entries: per-API pacing at a granted rate that throttles lower
//! (AIMD), paced retries of throttles and faults, idempotent steps, and error classes the state
//! machine can act on.
//!
//! [`Importer::register`] returns `Ok` with a per-entry [`EntryResult`] (registered, already
//! registered, or rejected with a `Thingpress.*` name) or `Err` with an [`ImportError`] that ends
//! the task: `Throttled`/`Transient` once the importer's own retries are spent (Register saves
//! progress and the chunk continues), `AwsRejected` is terminal.

mod activate;
mod apis;
mod classify;
mod decommission;
mod lookup;
mod pacer;
mod quotas;
mod register;
mod resources;
mod targets;

use aws_sdk_iot::config::retry::RetryConfig;
use thingpress_manifest::ErrorName;

pub use activate::Activation;
pub use apis::{
    ACTIVATION_APIS, Api, DECOMMISSION_APIS, IMPORT_APIS, PerNewCertificate,
    new_certificates_per_second,
};
pub use decommission::{Action, DETACH_PROPAGATION_PATIENCE, Removal, count_actions};
pub use lookup::ListedDevice;
pub use pacer::{
    AIMD_DECREASE, AIMD_DECREASE_SPACING, AIMD_FLOOR, AIMD_INCREASE, AIMD_INCREASE_EVERY, Aimd,
    PacedApi, Pacer, TokenBucket,
};
pub use quotas::{DEFAULT_RESERVE, MAX_RESERVE, Quotas, RESERVE_ENV_VAR, reserve_from_env};
pub use register::{
    ApiCalls, CALL_ATTEMPTS, CallStats, CertificateStep, EntryResult, EntrySteps, Importer,
    Outcome, THROTTLE_PATIENCE, TRANSIENT_ATTEMPTS,
};
pub use resources::check_profile_resources;
pub use targets::{RENEW_BEFORE, TargetClients};

/// Why a registration task cannot go on.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// IoT still throttles after the importer's paced retries; the chunk stops and continues.
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
    /// A target's role cannot be assumed, or its Region refuses Thingpress: only that
    /// target's chunks fail.
    #[error("target unavailable: {0}")]
    TargetUnavailable(String),
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
            ImportError::TargetUnavailable(_) => ErrorName::TargetUnavailable,
            ImportError::ProfileProblems { .. } => ErrorName::InvalidProfile,
            ImportError::InvalidConfig(_) => ErrorName::InvalidInput,
        }
    }
}

/// The SDK retry for IoT clients: none (one attempt). The importer retries throttles and
/// faults itself, each retry after a paced token, so every throttle reaches the pacer's AIMD and
/// no retry goes out unpaced; the profile check retries its few calls itself too.
pub fn sdk_retry_config() -> RetryConfig {
    RetryConfig::standard().with_max_attempts(1)
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
    fn the_sdk_leaves_retries_to_the_importer() {
        assert_eq!(sdk_retry_config().max_attempts(), 1);
    }
}
