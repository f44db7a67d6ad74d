//! The one catalogue of the AWS IoT APIs an import calls: per API its SDK operation, the Lambda
//! environment variable and template parameter that set its quota, AWS's default quota and how
//! often a new certificate calls it. `tests/template.rs` holds infra/template.yaml against it,
//! and local/test_edge.py holds the local edge against the template, so the next API cannot
//! drift between them.
//!
//! Default quotas are AWS's per account and Region, from the AWS IoT Core "API throttling limits"
//! (General Reference, iot-core.html#throttling-limits); each row names its Service Quotas code
//! ("<Operation> API TPS"), where the quota can be raised.

use std::fmt;

use serde::{Deserialize, Serialize};

/// How many calls of an API registering one new certificate makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PerNewCertificate {
    /// Not called for a new certificate (only for one IoT already holds, or a thing conflict).
    Never,
    /// Once.
    Once,
    /// Once per profile policy.
    PerPolicy,
    /// Once per profile thing group.
    PerGroup,
}

macro_rules! iot_apis {
    ($( $(#[$doc:meta])* $variant:ident {
        env: $env:literal,
        quota: $quota:literal,
        quota_code: $code:literal,
        per_new_certificate: $calls:ident $(,)?
    } ),+ $(,)?) => {
        /// An AWS IoT API called per entry; serialised with its AWS operation name.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        pub enum Api {
            $( $(#[$doc])* $variant, )+
        }

        impl Api {
            /// Every paced API, in call order (the order of the stats' `apiCalls`).
            pub const ALL: [Api; [$(stringify!($variant)),+].len()] = [$(Api::$variant),+];

            /// The AWS operation name.
            pub fn as_str(self) -> &'static str {
                match self { $(Api::$variant => stringify!($variant),)+ }
            }

            /// The Lambda environment variable that sets this API's quota.
            pub fn quota_env_var(self) -> &'static str {
                match self { $(Api::$variant => $env,)+ }
            }

            /// The template parameter (infra/template.yaml) that fills [`Api::quota_env_var`].
            pub fn template_parameter(self) -> &'static str {
                match self { $(Api::$variant => concat!("Quota", stringify!($variant)),)+ }
            }

            /// AWS's default quota, requests per second per account and Region.
            pub fn default_quota(self) -> f64 {
                match self { $(Api::$variant => $quota,)+ }
            }

            /// The Service Quotas code of this API's rate quota.
            pub fn quota_code(self) -> &'static str {
                match self { $(Api::$variant => $code,)+ }
            }

            /// How often registering a new certificate calls this API.
            pub fn per_new_certificate(self) -> PerNewCertificate {
                match self { $(Api::$variant => PerNewCertificate::$calls,)+ }
            }
        }
    };
}

iot_apis! {
    /// Registers a device certificate without its CA (Multi-Account Registration).
    RegisterCertificateWithoutCA {
        env: "QUOTA_REGISTER_CERTIFICATE_WITHOUT_CA",
        quota: 10.0,
        quota_code: "L-4671C7C8",
        per_new_certificate: Once,
    },
    /// Reads an already registered certificate's ARN and status.
    DescribeCertificate {
        env: "QUOTA_DESCRIBE_CERTIFICATE",
        quota: 10.0,
        quota_code: "L-FC864907",
        per_new_certificate: Never,
    },
    /// Lists the things an already registered certificate is attached to.
    ListPrincipalThings {
        env: "QUOTA_LIST_PRINCIPAL_THINGS",
        quota: 10.0,
        quota_code: "L-C481616A",
        per_new_certificate: Never,
    },
    /// Creates the device's thing.
    CreateThing {
        env: "QUOTA_CREATE_THING",
        quota: 100.0,
        quota_code: "L-64CBACAC",
        per_new_certificate: Once,
    },
    /// Makes an existing thing match the profile (`onThingConflict: update`).
    UpdateThing {
        env: "QUOTA_UPDATE_THING",
        quota: 100.0,
        quota_code: "L-211F680E",
        per_new_certificate: Never,
    },
    /// Attaches the certificate to the thing.
    AttachThingPrincipal {
        env: "QUOTA_ATTACH_THING_PRINCIPAL",
        quota: 100.0,
        quota_code: "L-F64D1AA6",
        per_new_certificate: Once,
    },
    /// Attaches a policy to the certificate.
    AttachPolicy {
        env: "QUOTA_ATTACH_POLICY",
        quota: 15.0,
        quota_code: "L-CA7D4E3E",
        per_new_certificate: PerPolicy,
    },
    /// Adds the thing to a static thing group.
    AddThingToThingGroup {
        env: "QUOTA_ADD_THING_TO_THING_GROUP",
        quota: 100.0,
        quota_code: "L-2904683A",
        per_new_certificate: PerGroup,
    },
    /// Sets a certificate's status (`thingpress activate`: INACTIVE to ACTIVE).
    UpdateCertificate {
        env: "QUOTA_UPDATE_CERTIFICATE",
        quota: 10.0,
        quota_code: "L-77B523DC",
        per_new_certificate: Never,
    },
    /// Lists the certificates attached to a thing (`activate` by device id).
    ListThingPrincipals {
        env: "QUOTA_LIST_THING_PRINCIPALS",
        quota: 10.0,
        quota_code: "L-FC3EF4D9",
        per_new_certificate: Never,
    },
    /// Reads a thing's attributes (`decommission` checks Thingpress's mark).
    DescribeThing {
        env: "QUOTA_DESCRIBE_THING",
        quota: 350.0,
        quota_code: "L-0EF0F5EE",
        per_new_certificate: Never,
    },
    /// Lists the policies attached to a certificate (`decommission`).
    ListAttachedPolicies {
        env: "QUOTA_LIST_ATTACHED_POLICIES",
        quota: 10.0,
        quota_code: "L-B2DA2A45",
        per_new_certificate: Never,
    },
    /// Lists a thing's groups (`decommission`).
    ListThingGroupsForThing {
        env: "QUOTA_LIST_THING_GROUPS_FOR_THING",
        quota: 100.0,
        quota_code: "L-75F129AD",
        per_new_certificate: Never,
    },
    /// Detaches a profile policy from a certificate (`decommission`).
    DetachPolicy {
        env: "QUOTA_DETACH_POLICY",
        quota: 15.0,
        quota_code: "L-EC88D510",
        per_new_certificate: Never,
    },
    /// Removes a thing from a profile group (`decommission`).
    RemoveThingFromThingGroup {
        env: "QUOTA_REMOVE_THING_FROM_THING_GROUP",
        quota: 100.0,
        quota_code: "L-2A81A394",
        per_new_certificate: Never,
    },
    /// Detaches the certificate from its thing (`decommission`).
    DetachThingPrincipal {
        env: "QUOTA_DETACH_THING_PRINCIPAL",
        quota: 100.0,
        quota_code: "L-B5EE4A16",
        per_new_certificate: Never,
    },
    /// Deletes an INACTIVE, detached certificate (`decommission`).
    DeleteCertificate {
        env: "QUOTA_DELETE_CERTIFICATE",
        quota: 10.0,
        quota_code: "L-EEB8F0B1",
        per_new_certificate: Never,
    },
    /// Deletes a detached thing (`decommission`).
    DeleteThing {
        env: "QUOTA_DELETE_THING",
        quota: 100.0,
        quota_code: "L-889800F7",
        per_new_certificate: Never,
    },
}

/// The APIs registering an entry may call (which of them depends on what IoT already holds).
pub const IMPORT_APIS: &[Api] = &[
    Api::RegisterCertificateWithoutCA,
    Api::DescribeCertificate,
    Api::ListPrincipalThings,
    Api::CreateThing,
    Api::UpdateThing,
    Api::AttachThingPrincipal,
    Api::AttachPolicy,
    Api::AddThingToThingGroup,
];

/// The APIs activating a shipped device may call.
pub const ACTIVATION_APIS: &[Api] = &[
    Api::DescribeCertificate,
    Api::ListPrincipalThings,
    Api::ListThingPrincipals,
    Api::UpdateThing,
    Api::AddThingToThingGroup,
    Api::UpdateCertificate,
];

/// The APIs decommissioning a device may call (a dry run only the reads).
pub const DECOMMISSION_APIS: &[Api] = &[
    Api::DescribeCertificate,
    Api::ListPrincipalThings,
    Api::ListThingPrincipals,
    Api::DescribeThing,
    Api::ListAttachedPolicies,
    Api::ListThingGroupsForThing,
    Api::DetachPolicy,
    Api::RemoveThingFromThingGroup,
    Api::DetachThingPrincipal,
    Api::UpdateCertificate,
    Api::DeleteCertificate,
    Api::DeleteThing,
];

impl Api {
    /// Calls of this API per new certificate, for a profile of `policies` policies and `groups`
    /// thing groups.
    pub fn calls_per_new_certificate(self, policies: usize, groups: usize) -> usize {
        match self.per_new_certificate() {
            PerNewCertificate::Never => 0,
            PerNewCertificate::Once => 1,
            PerNewCertificate::PerPolicy => policies,
            PerNewCertificate::PerGroup => groups,
        }
    }

    /// The position in [`Api::ALL`].
    pub(crate) fn slot(self) -> usize {
        self as usize
    }
}

/// New certificates a second that APIs running at `rate(api)` calls a second allow, for a
/// profile of `policies` policies and `groups` thing groups: the slowest API bounds it (each
/// API's rate over its calls per new certificate).
pub fn new_certificates_per_second(
    rate: impl Fn(Api) -> f64,
    policies: usize,
    groups: usize,
) -> f64 {
    Api::ALL
        .iter()
        .map(|api| (*api, api.calls_per_new_certificate(policies, groups)))
        .filter(|(_, calls)| *calls > 0)
        .map(|(api, calls)| rate(api) / calls as f64)
        .fold(f64::INFINITY, f64::min)
}

impl fmt::Display for Api {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `RegisterCertificateWithoutCA` → `REGISTER_CERTIFICATE_WITHOUT_CA` (a run of capitals is
    /// one word, as in `CA`).
    fn screaming_snake(name: &str) -> String {
        let chars: Vec<char> = name.chars().collect();
        let mut out = String::new();
        for (i, c) in chars.iter().enumerate() {
            let prev_lower = i > 0 && chars[i - 1].is_ascii_lowercase();
            let next_lower = chars.get(i + 1).is_some_and(char::is_ascii_lowercase);
            let prev_upper = i > 0 && chars[i - 1].is_ascii_uppercase();
            if c.is_ascii_uppercase() && (prev_lower || (prev_upper && next_lower)) {
                out.push('_');
            }
            out.push(c.to_ascii_uppercase());
        }
        out
    }

    #[test]
    fn names_follow_the_operation() {
        for api in Api::ALL {
            assert_eq!(
                api.quota_env_var(),
                format!("QUOTA_{}", screaming_snake(api.as_str()))
            );
            assert_eq!(api.template_parameter(), format!("Quota{api}"));
            assert_eq!(Api::ALL[api.slot()], api);
            let json = serde_json::to_string(&api).unwrap();
            assert_eq!(json, format!("\"{api}\""));
            assert_eq!(serde_json::from_str::<Api>(&json).unwrap(), api);
            assert!(api.default_quota() > 0.0);
            assert!(api.quota_code().starts_with("L-"));
        }
    }

    #[test]
    fn calls_per_new_certificate_follow_the_profile() {
        let calls: Vec<usize> = Api::ALL
            .iter()
            .map(|api| api.calls_per_new_certificate(2, 3))
            .collect();
        // Register, Describe, ListPrincipalThings, Create, Update, Attach, policies, groups,
        // then activation's and decommission's APIs.
        assert_eq!(
            calls,
            [1, 0, 0, 1, 0, 1, 2, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]
        );
    }

    #[test]
    fn the_operations_together_call_every_api() {
        let mut called: Vec<Api> = IMPORT_APIS
            .iter()
            .chain(ACTIVATION_APIS)
            .chain(DECOMMISSION_APIS)
            .copied()
            .collect();
        called.sort();
        called.dedup();
        assert_eq!(called, Api::ALL);
        // Only an activation changes a certificate's status or lists a thing's certificates.
        for api in [Api::UpdateCertificate, Api::ListThingPrincipals] {
            assert!(!IMPORT_APIS.contains(&api) && ACTIVATION_APIS.contains(&api));
        }
    }

    #[test]
    fn the_slowest_api_bounds_new_certificates() {
        let default = |api: Api| api.default_quota();
        // RegisterCertificateWithoutCA at 10/s bounds a profile of one policy (AttachPolicy 15/s).
        assert_eq!(new_certificates_per_second(default, 1, 1), 10.0);
        // Two policies: AttachPolicy 15/s ÷ 2 = 7.5/s.
        assert_eq!(new_certificates_per_second(default, 2, 0), 7.5);
        // APIs a new certificate never calls do not bound it, however slow.
        let slow_describe = |api: Api| match api {
            Api::DescribeCertificate | Api::UpdateThing => 0.001,
            other => other.default_quota(),
        };
        assert_eq!(new_certificates_per_second(slow_describe, 0, 0), 10.0);
    }
}
