//! Where a run registers: the stack's own account in a Region, or another account through a
//! role Thingpress assumes there (Multi-Account Registration needs the certificate registered
//! "in each account and Region").

use serde::{Deserialize, Serialize};

use crate::names;

/// Most targets one profile may list: every target multiplies the run's chunks.
pub const MAX_TARGETS: usize = 20;

/// One account and Region a profile registers in.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Target {
    /// The AWS Region, e.g. `eu-west-1`.
    pub region: String,
    /// A role in another account (infra/target-role.yaml) to assume; absent means the stack's
    /// own account, with the stack's own roles.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role_arn: Option<String>,
    /// The external ID the role's trust policy requires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
}

impl Target {
    /// The stack's own account in `region`.
    pub fn home(region: impl Into<String>) -> Target {
        Target {
            region: region.into(),
            role_arn: None,
            external_id: None,
        }
    }

    /// The account of the role, if the target is another account's.
    pub fn account(&self) -> Option<&str> {
        let arn = self.role_arn.as_deref()?;
        arn.split(':').nth(4).filter(|a| !a.is_empty())
    }

    /// The name reports, `--target` and S3 keys use: the Region for the stack's own account,
    /// `<account>-<region>` for another's.
    pub fn id(&self) -> String {
        match self.account() {
            Some(account) => format!("{account}-{}", self.region),
            None => self.region.clone(),
        }
    }

    /// Whether this is the stack's own account and Region (`stack_region`): its calls and its
    /// budget are the stack's own.
    pub fn is_home(&self, stack_region: &str) -> bool {
        self.role_arn.is_none() && self.region == stack_region
    }

    /// Every problem with this target, as `targets[i]…: reason`.
    pub fn problems(&self, i: usize) -> Vec<String> {
        let mut problems = Vec::new();
        if !is_region(&self.region) {
            problems.push(format!(
                "targets[{i}].region {:?}: not a Region name such as eu-west-1",
                self.region
            ));
        }
        if let Some(arn) = &self.role_arn
            && !is_role_arn(arn)
        {
            problems.push(format!(
                "targets[{i}].roleArn {arn:?}: not an IAM role ARN (arn:aws:iam::<12-digit account>:role/<name>)"
            ));
        }
        match (&self.role_arn, &self.external_id) {
            (None, Some(_)) => problems.push(format!(
                "targets[{i}].externalId: only used with roleArn (the stack's own account needs no role)"
            )),
            (_, Some(id)) => {
                // STS's rules for ExternalId: 2-1224 of [\w+=,.@:/-].
                if let Err(e) = names::check(id, 2, 1224, |c| {
                    c.is_ascii_alphanumeric() || "_+=,.@:/-".contains(c)
                }) {
                    problems.push(format!("targets[{i}].externalId: {e}"));
                }
            }
            _ => {}
        }
        problems
    }
}

/// `eu-west-1`, `us-gov-west-1`, `ap-southeast-5`: lowercase words and a number.
fn is_region(region: &str) -> bool {
    let parts: Vec<&str> = region.split('-').collect();
    parts.len() >= 3
        && region.len() <= 32
        && parts[..parts.len() - 1]
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase()))
        && parts[parts.len() - 1].bytes().all(|b| b.is_ascii_digit())
        && !parts[parts.len() - 1].is_empty()
}

/// `arn:<partition>:iam::<account>:role/<path/name>`.
fn is_role_arn(arn: &str) -> bool {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    let [prefix, partition, service, region, account, resource] = parts[..] else {
        return false;
    };
    prefix == "arn"
        && partition.starts_with("aws")
        && service == "iam"
        && region.is_empty()
        && account.len() == 12
        && account.bytes().all(|b| b.is_ascii_digit())
        && resource
            .strip_prefix("role/")
            .is_some_and(|name| !name.is_empty() && name.len() <= 512 && !name.ends_with('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn role(account: &str, region: &str) -> Target {
        Target {
            region: region.into(),
            role_arn: Some(format!("arn:aws:iam::{account}:role/thingpress-target")),
            external_id: Some("ext-1234".into()),
        }
    }

    #[test]
    fn ids_name_the_account_only_when_it_is_another() {
        assert_eq!(Target::home("eu-west-1").id(), "eu-west-1");
        assert_eq!(
            role("222222222222", "us-east-1").id(),
            "222222222222-us-east-1"
        );
        assert_eq!(
            role("222222222222", "us-east-1").account(),
            Some("222222222222")
        );
        assert!(Target::home("us-east-1").is_home("us-east-1"));
        assert!(!Target::home("eu-west-1").is_home("us-east-1"));
        assert!(!role("123456789012", "us-east-1").is_home("us-east-1"));
    }

    #[test]
    fn good_targets_have_no_problems() {
        for t in [
            Target::home("eu-west-1"),
            Target::home("us-gov-west-1"),
            role("222222222222", "ap-southeast-2"),
            Target {
                external_id: None,
                ..role("222222222222", "us-east-1")
            },
        ] {
            assert_eq!(t.problems(0), Vec::<String>::new(), "{t:?}");
        }
    }

    #[test]
    fn each_bad_field_is_named() {
        let bad_region = Target::home("EU-west-1");
        assert!(bad_region.problems(3)[0].starts_with("targets[3].region"));
        for arn in [
            "arn:aws:iam::22222222222:role/x",
            "arn:aws:iam::222222222222:user/x",
            "arn:aws:iam:us-east-1:222222222222:role/x",
            "arn:aws:s3:::bucket",
            "role/x",
        ] {
            let t = Target {
                role_arn: Some(arn.into()),
                ..role("222222222222", "us-east-1")
            };
            assert!(t.problems(0)[0].contains("roleArn"), "{arn}");
        }
        let stray = Target {
            external_id: Some("abc".into()),
            ..Target::home("us-east-1")
        };
        assert!(stray.problems(0)[0].contains("only used with roleArn"));
        let short = Target {
            external_id: Some("x".into()),
            ..role("222222222222", "us-east-1")
        };
        assert!(short.problems(0)[0].contains("externalId"));
        let spaced = Target {
            external_id: Some("a b".into()),
            ..role("222222222222", "us-east-1")
        };
        assert!(spaced.problems(0)[0].contains("externalId"));
    }
}
