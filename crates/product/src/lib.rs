//! Product profiles and decoration: how accepted manifest entries become IoT things.
//!
//! Pure: no AWS, no async runtime. A [`Profile`] is validated as a whole when it is read (every
//! problem named with its field); [`Decorator::decorate`] then renders one entry's thing name and
//! attributes, rejecting that entry alone (`Thingpress.InvalidThingName` /
//! `Thingpress.InvalidAttribute`) when its fields do not give valid AWS IoT values.

mod decorate;
pub mod names;
mod profile;
mod target;
mod template;

pub use decorate::{Decorated, Decorator, decorate};
pub use profile::{
    CertificateStatus, MARK_ATTRIBUTE, MAX_ATTRIBUTES_WITH_TYPE, MAX_ATTRIBUTES_WITHOUT_TYPE,
    MAX_CHUNK_SIZE, MAX_CONCURRENCY, MAX_POLICIES, MAX_THING_GROUPS, OnThingConflict, Profile,
    ThingPrincipalType,
};
pub use target::{MAX_TARGETS, Target};
pub use template::Template;

/// Why a profile cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    /// Not JSON, an unknown field, or a field of the wrong type or value.
    #[error("profile is not valid: {0}")]
    Json(serde_json::Error),
    /// Well-formed JSON whose fields break the rules; every problem is listed.
    #[error("profile {profile:?} is not valid: {}", problems.join("; "))]
    Invalid {
        /// The profile's name as given (may be empty).
        profile: String,
        /// Each problem as `field: reason`.
        problems: Vec<String>,
    },
}

impl ProfileError {
    /// Shorthand for [`ProfileError::Invalid`].
    pub fn invalid(profile: &str, problems: Vec<String>) -> ProfileError {
        ProfileError::Invalid {
            profile: profile.to_owned(),
            problems,
        }
    }

    /// The error name a task reports for it: always `Thingpress.InvalidProfile`.
    pub fn name(&self) -> thingpress_manifest::ErrorName {
        thingpress_manifest::ErrorName::InvalidProfile
    }
}
