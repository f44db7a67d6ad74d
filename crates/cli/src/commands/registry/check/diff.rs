//! What the profile says an entry should be in IoT against what IoT holds: the differences,
//! named, as `registry check` reports them.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::Serialize;
use thingpress_product::Decorated;

/// What IoT holds for one entry (`None`: not there).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Found {
    /// The certificate, by the entry's certificate id.
    pub certificate: Option<FoundCertificate>,
    /// The thing, by the rendered thing name.
    pub thing: Option<FoundThing>,
    /// Principals (certificate ARNs) attached to the thing.
    pub principals: Vec<String>,
    /// Policies attached to the certificate.
    pub policies: BTreeSet<String>,
    /// Thing groups the thing is a direct member of.
    pub groups: BTreeSet<String>,
}

/// A certificate as DescribeCertificate shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundCertificate {
    /// Its ARN.
    pub arn: String,
    /// Its status (ACTIVE, INACTIVE, REVOKED, …).
    pub status: String,
}

/// A thing as DescribeThing shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FoundThing {
    /// Its thing type.
    pub thing_type: Option<String>,
    /// Its attributes.
    pub attributes: BTreeMap<String, String>,
}

/// One way an entry's registry state differs from what the profile says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum Problem {
    /// IoT has no certificate of the entry's id.
    CertificateMissing,
    /// The certificate's status is not the profile's.
    CertificateStatus { expected: String, found: String },
    /// IoT has no thing of the rendered name.
    ThingMissing,
    /// The thing has another thing type (or none).
    ThingType {
        expected: Option<String>,
        found: Option<String>,
    },
    /// A profile attribute is missing on the thing or has another value.
    Attribute {
        name: String,
        expected: String,
        found: Option<String>,
    },
    /// The certificate is not attached to the thing.
    PrincipalNotAttached,
    /// A profile policy is not attached to the certificate.
    PolicyNotAttached { policy: String },
    /// The thing is not in a profile thing group.
    NotInGroup { group: String },
}

impl Problem {
    /// Every kind, in report order.
    pub const KINDS: [&'static str; 8] = [
        "certificateMissing",
        "certificateStatus",
        "thingMissing",
        "thingType",
        "attribute",
        "principalNotAttached",
        "policyNotAttached",
        "notInGroup",
    ];

    /// The kind's name, as in the JSON output.
    pub fn kind(&self) -> &'static str {
        match self {
            Problem::CertificateMissing => "certificateMissing",
            Problem::CertificateStatus { .. } => "certificateStatus",
            Problem::ThingMissing => "thingMissing",
            Problem::ThingType { .. } => "thingType",
            Problem::Attribute { .. } => "attribute",
            Problem::PrincipalNotAttached => "principalNotAttached",
            Problem::PolicyNotAttached { .. } => "policyNotAttached",
            Problem::NotInGroup { .. } => "notInGroup",
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let none = |v: &Option<String>| v.clone().unwrap_or_else(|| "none".to_owned());
        match self {
            Problem::CertificateMissing => write!(f, "certificate not registered"),
            Problem::CertificateStatus { expected, found } => {
                write!(f, "certificate is {found}, the profile says {expected}")
            }
            Problem::ThingMissing => write!(f, "thing does not exist"),
            Problem::ThingType { expected, found } => write!(
                f,
                "thing type is {}, the profile says {}",
                none(found),
                none(expected)
            ),
            Problem::Attribute {
                name,
                expected,
                found: Some(found),
            } => write!(f, "attribute {name} is {found:?}, expected {expected:?}"),
            Problem::Attribute {
                name,
                expected,
                found: None,
            } => write!(f, "attribute {name} missing, expected {expected:?}"),
            Problem::PrincipalNotAttached => {
                write!(f, "certificate not attached to the thing")
            }
            Problem::PolicyNotAttached { policy } => {
                write!(f, "policy {policy} not attached to the certificate")
            }
            Problem::NotInGroup { group } => write!(f, "thing not in group {group}"),
        }
    }
}

/// The differences between what the decorated entry says and what IoT holds. Checks that
/// depend on a missing certificate or thing are not made (its absence is the problem).
pub fn diff(expected: &Decorated, found: &Found) -> Vec<Problem> {
    let mut problems = Vec::new();
    match &found.certificate {
        None => problems.push(Problem::CertificateMissing),
        Some(certificate) => {
            let status = expected.certificate_status.as_str();
            if certificate.status != status {
                problems.push(Problem::CertificateStatus {
                    expected: status.to_owned(),
                    found: certificate.status.clone(),
                });
            }
        }
    }
    match &found.thing {
        None => problems.push(Problem::ThingMissing),
        Some(thing) => {
            if thing.thing_type != expected.thing_type {
                problems.push(Problem::ThingType {
                    expected: expected.thing_type.clone(),
                    found: thing.thing_type.clone(),
                });
            }
            for (name, value) in &expected.attributes {
                let actual = thing.attributes.get(name);
                if actual != Some(value) {
                    problems.push(Problem::Attribute {
                        name: name.clone(),
                        expected: value.clone(),
                        found: actual.cloned(),
                    });
                }
            }
        }
    }
    if let (Some(certificate), Some(_)) = (&found.certificate, &found.thing) {
        let suffix = format!("cert/{}", expected.certificate_id);
        let attached = found
            .principals
            .iter()
            .any(|p| *p == certificate.arn || p.ends_with(&suffix));
        if !attached {
            problems.push(Problem::PrincipalNotAttached);
        }
    }
    if found.certificate.is_some() {
        for policy in &expected.policies {
            if !found.policies.contains(policy) {
                problems.push(Problem::PolicyNotAttached {
                    policy: policy.clone(),
                });
            }
        }
    }
    if found.thing.is_some() {
        for group in &expected.thing_groups {
            if !found.groups.contains(group) {
                problems.push(Problem::NotInGroup {
                    group: group.clone(),
                });
            }
        }
    }
    problems
}

#[cfg(test)]
pub(super) mod fixtures {
    //! One decorated entry and a registry that matches it, for every test of the check.

    use super::*;
    use thingpress_product::{
        CertificateStatus as ProfileStatus, OnThingConflict, ThingPrincipalType,
    };

    pub const ID: &str = "ab12";
    pub const ARN: &str = "arn:aws:iot:us-east-1:123456789012:cert/ab12";

    pub fn expected() -> Decorated {
        Decorated {
            index: 7,
            certificate_id: ID.into(),
            certificate_pem: String::new(),
            device_id: "dev-7".into(),
            thing_name: "w-dev-7".into(),
            thing_type: Some("Sensor".into()),
            attributes: BTreeMap::from([("batch".to_owned(), "b1".to_owned())]),
            policies: vec!["p0".into(), "p1".into()],
            thing_groups: vec!["g0".into(), "g1".into()],
            certificate_status: ProfileStatus::Active,
            on_thing_conflict: OnThingConflict::Reject,
            thing_principal_type: ThingPrincipalType::NonExclusiveThing,
        }
    }

    pub fn matching() -> Found {
        Found {
            certificate: Some(FoundCertificate {
                arn: ARN.into(),
                status: "ACTIVE".into(),
            }),
            thing: Some(FoundThing {
                thing_type: Some("Sensor".into()),
                attributes: BTreeMap::from([
                    ("batch".to_owned(), "b1".to_owned()),
                    ("extra".to_owned(), "kept".to_owned()),
                ]),
            }),
            principals: vec![ARN.into()],
            policies: ["p0", "p1", "other"].map(String::from).into(),
            groups: ["g0", "g1", "more"].map(String::from).into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::{ARN, expected, matching};
    use super::*;
    use serde_json::json;
    use thingpress_product::CertificateStatus as ProfileStatus;

    #[test]
    fn matching_registry_has_no_problems() {
        // Extra attributes, policies and groups are not problems: only the profile's are checked.
        assert_eq!(diff(&expected(), &matching()), []);
    }

    #[test]
    fn each_difference_is_named() {
        let mut found = matching();
        found.certificate = Some(FoundCertificate {
            arn: ARN.into(),
            status: "REVOKED".into(),
        });
        found.thing = Some(FoundThing {
            thing_type: None,
            attributes: BTreeMap::from([("batch".to_owned(), "b2".to_owned())]),
        });
        found.principals = vec!["arn:aws:iot:us-east-1:123456789012:cert/other".into()];
        found.policies = ["p1".to_owned()].into();
        found.groups = ["g0".to_owned()].into();
        let problems = diff(&expected(), &found);
        assert_eq!(
            problems,
            [
                Problem::CertificateStatus {
                    expected: "ACTIVE".into(),
                    found: "REVOKED".into()
                },
                Problem::ThingType {
                    expected: Some("Sensor".into()),
                    found: None
                },
                Problem::Attribute {
                    name: "batch".into(),
                    expected: "b1".into(),
                    found: Some("b2".into())
                },
                Problem::PrincipalNotAttached,
                Problem::PolicyNotAttached {
                    policy: "p0".into()
                },
                Problem::NotInGroup { group: "g1".into() },
            ]
        );
        let kinds: Vec<_> = problems.iter().map(Problem::kind).collect();
        for kind in &kinds {
            assert!(Problem::KINDS.contains(kind), "{kind}");
        }
        let json = serde_json::to_value(&problems).unwrap();
        assert_eq!(json[0]["kind"], "certificateStatus");
        assert_eq!(
            json[4],
            json!({"kind": "policyNotAttached", "policy": "p0"})
        );
        assert_eq!(
            problems[2].to_string(),
            "attribute batch is \"b2\", expected \"b1\""
        );
    }

    #[test]
    fn missing_certificate_or_thing_skips_what_depends_on_it() {
        let mut found = matching();
        found.certificate = None;
        found.policies.clear();
        assert_eq!(diff(&expected(), &found), [Problem::CertificateMissing]);

        let mut found = matching();
        found.thing = None;
        found.principals.clear();
        found.groups.clear();
        assert_eq!(diff(&expected(), &found), [Problem::ThingMissing]);

        assert_eq!(
            diff(&expected(), &Found::default()),
            [Problem::CertificateMissing, Problem::ThingMissing]
        );
    }

    #[test]
    fn inactive_profile_expects_inactive_certificates() {
        let mut entry = expected();
        entry.certificate_status = ProfileStatus::Inactive;
        assert_eq!(
            diff(&entry, &matching()),
            [Problem::CertificateStatus {
                expected: "INACTIVE".into(),
                found: "ACTIVE".into()
            }]
        );
    }
}
