//! The smoke test's throwaway resources: one name, `thingpress-smoke-<UTC time>-<pid>`, for the
//! thing group, the IoT policy and the profile (and the prefix of its runs and things), so two
//! smoke tests never share anything and whatever one leaves behind says where it came from.

use std::time::SystemTime;

use anyhow::{Result, anyhow};
use aws_sdk_s3::primitives::{DateTime, DateTimeFormat};
use serde_json::{Value, json};
use thingpress_run::layout::profile_key;
use thingpress_run::{S3Store, Store};

use crate::target::sdk_message;

/// What every smoke resource's name starts with; the stack's default allow-list
/// (`thingpress-*`) admits it.
pub const PREFIX: &str = "thingpress-smoke-";

/// The throwaway policy's document: it denies everything. The certificates it is attached to
/// are active for a minute and their keys are never kept, but a policy that grants nothing is
/// safe whatever happens to them.
const DENY_ALL: &str =
    r#"{"Version":"2012-10-17","Statement":[{"Effect":"Deny","Action":"iot:*","Resource":"*"}]}"#;

/// The names of one smoke test.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    tag: String,
}

impl Names {
    /// `thingpress-smoke-<YYYYMMDDTHHMMSSZ>-<pid>`: valid as a thing group, policy, profile and
    /// execution name.
    pub fn new(now: SystemTime, pid: u32) -> Names {
        // Whole seconds: the formatter would add a fraction.
        let seconds = DateTime::from_secs(DateTime::from(now).secs());
        let stamp: String = seconds
            .fmt(DateTimeFormat::DateTime)
            .unwrap_or_default()
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .collect();
        Names {
            tag: format!("{PREFIX}{stamp}-{pid}"),
        }
    }

    /// The thing group's, the policy's and the profile's name.
    pub fn tag(&self) -> &str {
        &self.tag
    }

    /// The id of one of the test's runs (`import`, `decommission`, `cleanup`).
    pub fn run(&self, what: &str) -> String {
        format!("{}-{what}", self.tag)
    }

    /// The profile's JSON: the `pem` supplier, every thing named after the tag and put in the
    /// group, every certificate ACTIVE with the policy.
    pub fn profile_json(&self) -> Value {
        let tag = &self.tag;
        json!({
            "name": tag,
            "supplier": "pem",
            "thingName": format!("{tag}-{{deviceId}}"),
            "thingGroups": [tag],
            "policies": [tag],
            "certificateStatus": "ACTIVE",
        })
    }
}

pub async fn create_thing_group(iot: &aws_sdk_iot::Client, name: &str) -> Result<()> {
    iot.create_thing_group()
        .thing_group_name(name)
        .send()
        .await
        .map_err(|e| anyhow!("creating thing group {name}: {}", sdk_message(&e)))?;
    Ok(())
}

pub async fn delete_thing_group(iot: &aws_sdk_iot::Client, name: &str) -> Result<()> {
    iot.delete_thing_group()
        .thing_group_name(name)
        .send()
        .await
        .map_err(|e| anyhow!("deleting thing group {name}: {}", sdk_message(&e)))?;
    Ok(())
}

pub async fn create_policy(iot: &aws_sdk_iot::Client, name: &str) -> Result<()> {
    iot.create_policy()
        .policy_name(name)
        .policy_document(DENY_ALL)
        .send()
        .await
        .map_err(|e| anyhow!("creating IoT policy {name}: {}", sdk_message(&e)))?;
    Ok(())
}

pub async fn delete_policy(iot: &aws_sdk_iot::Client, name: &str) -> Result<()> {
    iot.delete_policy()
        .policy_name(name)
        .send()
        .await
        .map_err(|e| anyhow!("deleting IoT policy {name}: {}", sdk_message(&e)))?;
    Ok(())
}

/// Deletes `profiles/<name>.json` (on the versioned bucket: a delete marker; the old version
/// expires with the bucket's noncurrent-version rule).
pub async fn delete_profile(store: &S3Store, bucket: &str, name: &str) -> Result<()> {
    let key = profile_key(name)?;
    store
        .delete(bucket, &key)
        .await
        .map_err(|e| anyhow!("deleting profile s3://{bucket}/{key}: {e}"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::time::Duration;

    use super::*;
    use thingpress_product::Profile;
    use thingpress_run::RunLayout;

    #[test]
    fn names_are_valid_everywhere_they_are_used() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_millis(1_795_000_000_123);
        let names = Names::new(now, 4242);
        assert_eq!(names.tag(), "thingpress-smoke-20261118T110640Z-4242");
        assert!(profile_key(names.tag()).is_ok());
        for what in ["import", "decommission", "cleanup"] {
            assert!(RunLayout::new(&names.run(what)).is_ok(), "{what}");
        }
        // IoT thing group and policy names: [a-zA-Z0-9:_-]+.
        assert!(
            names
                .tag()
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_:".contains(c))
        );
        let profile = Profile::from_json(names.profile_json().to_string().as_bytes()).unwrap();
        assert_eq!(profile.name, names.tag());
        assert_eq!(profile.policies, [names.tag()]);
        assert_eq!(profile.thing_groups, [names.tag()]);
        assert_eq!(profile.thing_name, format!("{}-{{deviceId}}", names.tag()));
    }
}
