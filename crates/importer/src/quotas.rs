//! The IoT APIs Thingpress calls per entry and their account-level rate quotas.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::ImportError;

/// An AWS IoT API called per entry; serialised with its AWS name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Api {
    /// Registers a device certificate without its CA (Multi-Account Registration).
    RegisterCertificateWithoutCA,
    /// Reads an already registered certificate's ARN and status.
    DescribeCertificate,
    /// Lists the things an already registered certificate is attached to.
    ListPrincipalThings,
    /// Creates the device's thing.
    CreateThing,
    /// Makes an existing thing match the profile (`onThingConflict: update`).
    UpdateThing,
    /// Attaches the certificate to the thing.
    AttachThingPrincipal,
    /// Attaches a policy to the certificate.
    AttachPolicy,
    /// Adds the thing to a static thing group.
    AddThingToThingGroup,
}

impl Api {
    /// Every paced API, in call order.
    pub const ALL: [Api; 8] = [
        Api::RegisterCertificateWithoutCA,
        Api::DescribeCertificate,
        Api::ListPrincipalThings,
        Api::CreateThing,
        Api::UpdateThing,
        Api::AttachThingPrincipal,
        Api::AttachPolicy,
        Api::AddThingToThingGroup,
    ];

    /// The AWS operation name.
    pub fn as_str(self) -> &'static str {
        match self {
            Api::RegisterCertificateWithoutCA => "RegisterCertificateWithoutCA",
            Api::DescribeCertificate => "DescribeCertificate",
            Api::ListPrincipalThings => "ListPrincipalThings",
            Api::CreateThing => "CreateThing",
            Api::UpdateThing => "UpdateThing",
            Api::AttachThingPrincipal => "AttachThingPrincipal",
            Api::AttachPolicy => "AttachPolicy",
            Api::AddThingToThingGroup => "AddThingToThingGroup",
        }
    }

    /// The Lambda environment variable that overrides this API's quota.
    pub fn quota_env_var(self) -> &'static str {
        match self {
            Api::RegisterCertificateWithoutCA => "QUOTA_REGISTER_CERTIFICATE_WITHOUT_CA",
            Api::DescribeCertificate => "QUOTA_DESCRIBE_CERTIFICATE",
            Api::ListPrincipalThings => "QUOTA_LIST_PRINCIPAL_THINGS",
            Api::CreateThing => "QUOTA_CREATE_THING",
            Api::UpdateThing => "QUOTA_UPDATE_THING",
            Api::AttachThingPrincipal => "QUOTA_ATTACH_THING_PRINCIPAL",
            Api::AttachPolicy => "QUOTA_ATTACH_POLICY",
            Api::AddThingToThingGroup => "QUOTA_ADD_THING_TO_THING_GROUP",
        }
    }

    pub(crate) fn slot(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Api {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The environment variable holding the share of each quota Thingpress may use (0 < f ≤ 1).
pub const SAFETY_FACTOR_ENV_VAR: &str = "QUOTA_SAFETY_FACTOR";
/// Leaves a fifth of every quota to the account's other users of the IoT control plane.
pub const DEFAULT_SAFETY_FACTOR: f64 = 0.8;

/// Account-level requests per second per API (all adjustable in Service Quotas).
///
/// Defaults are AWS's per account and Region, from the AWS IoT Core "API throttling limits"
/// (General Reference, iot-core.html#throttling-limits) and the Service Quotas codes:
/// RegisterCertificateWithoutCA 10 (L-4671C7C8), DescribeCertificate 10 (L-FC864907),
/// CreateThing 100 (L-64CBACAC), UpdateThing 100 (L-211F680E), AttachThingPrincipal 100
/// (L-F64D1AA6), AttachPolicy 15, AddThingToThingGroup 100 (L-2904683A). ListPrincipalThings:
/// 10, as DescribeCertificate (not checked against Service Quotas here; it is only called for
/// certificates that were already registered).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct Quotas {
    /// RegisterCertificateWithoutCA, per second.
    #[serde(rename = "registerCertificateWithoutCA")]
    pub register_certificate_without_ca: f64,
    /// DescribeCertificate, per second.
    pub describe_certificate: f64,
    /// ListPrincipalThings, per second.
    pub list_principal_things: f64,
    /// CreateThing, per second.
    pub create_thing: f64,
    /// UpdateThing, per second.
    pub update_thing: f64,
    /// AttachThingPrincipal, per second.
    pub attach_thing_principal: f64,
    /// AttachPolicy, per second.
    pub attach_policy: f64,
    /// AddThingToThingGroup, per second.
    pub add_thing_to_thing_group: f64,
}

impl Default for Quotas {
    fn default() -> Self {
        Quotas {
            register_certificate_without_ca: 10.0,
            describe_certificate: 10.0,
            list_principal_things: 10.0,
            create_thing: 100.0,
            update_thing: 100.0,
            attach_thing_principal: 100.0,
            attach_policy: 15.0,
            add_thing_to_thing_group: 100.0,
        }
    }
}

impl Quotas {
    /// The quota of one API, per second.
    pub fn get(&self, api: Api) -> f64 {
        match api {
            Api::RegisterCertificateWithoutCA => self.register_certificate_without_ca,
            Api::DescribeCertificate => self.describe_certificate,
            Api::ListPrincipalThings => self.list_principal_things,
            Api::CreateThing => self.create_thing,
            Api::UpdateThing => self.update_thing,
            Api::AttachThingPrincipal => self.attach_thing_principal,
            Api::AttachPolicy => self.attach_policy,
            Api::AddThingToThingGroup => self.add_thing_to_thing_group,
        }
    }

    /// Sets the quota of one API, per second.
    pub fn set(&mut self, api: Api, per_second: f64) {
        let field = match api {
            Api::RegisterCertificateWithoutCA => &mut self.register_certificate_without_ca,
            Api::DescribeCertificate => &mut self.describe_certificate,
            Api::ListPrincipalThings => &mut self.list_principal_things,
            Api::CreateThing => &mut self.create_thing,
            Api::UpdateThing => &mut self.update_thing,
            Api::AttachThingPrincipal => &mut self.attach_thing_principal,
            Api::AttachPolicy => &mut self.attach_policy,
            Api::AddThingToThingGroup => &mut self.add_thing_to_thing_group,
        };
        *field = per_second;
    }

    /// Every quota multiplied by `factor` (e.g. to run the local stack faster or slower).
    pub fn scaled(&self, factor: f64) -> Quotas {
        let mut out = *self;
        for api in Api::ALL {
            out.set(api, self.get(api) * factor);
        }
        out
    }

    /// Checks that every quota is a positive finite number.
    pub fn validate(&self) -> Result<(), ImportError> {
        for api in Api::ALL {
            let q = self.get(api);
            if !(q.is_finite() && q > 0.0) {
                return Err(ImportError::InvalidConfig(format!(
                    "quota for {api} must be a positive number, got {q}"
                )));
            }
        }
        Ok(())
    }

    /// The defaults overridden by the `QUOTA_*` variables that `lookup` finds (e.g.
    /// `|name| std::env::var(name).ok()`); the error names the variable and its value.
    pub fn from_env(lookup: impl Fn(&str) -> Option<String>) -> Result<Quotas, ImportError> {
        let mut quotas = Quotas::default();
        for api in Api::ALL {
            if let Some(value) = lookup(api.quota_env_var()) {
                quotas.set(api, parse_positive(api.quota_env_var(), &value)?);
            }
        }
        quotas.validate()?;
        Ok(quotas)
    }
}

/// `QUOTA_SAFETY_FACTOR` from `lookup`, or [`DEFAULT_SAFETY_FACTOR`]; must be in (0, 1].
pub fn safety_factor_from_env(lookup: impl Fn(&str) -> Option<String>) -> Result<f64, ImportError> {
    match lookup(SAFETY_FACTOR_ENV_VAR) {
        None => Ok(DEFAULT_SAFETY_FACTOR),
        Some(value) => {
            let factor = parse_positive(SAFETY_FACTOR_ENV_VAR, &value)?;
            if factor > 1.0 {
                return Err(ImportError::InvalidConfig(format!(
                    "{SAFETY_FACTOR_ENV_VAR}={value:?}: must be at most 1"
                )));
            }
            Ok(factor)
        }
    }
}

fn parse_positive(var: &str, value: &str) -> Result<f64, ImportError> {
    match value.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        _ => Err(ImportError::InvalidConfig(format!(
            "{var}={value:?}: expected a positive number"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn defaults_are_the_aws_quotas() {
        let q = Quotas::default();
        assert_eq!(q.get(Api::RegisterCertificateWithoutCA), 10.0);
        assert_eq!(q.get(Api::AttachPolicy), 15.0);
        assert_eq!(q.get(Api::CreateThing), 100.0);
        assert!(q.validate().is_ok());
    }

    #[test]
    fn serde_is_camel_case_with_defaults() {
        let q: Quotas =
            serde_json::from_str(r#"{"registerCertificateWithoutCA": 50, "attachPolicy": 20}"#)
                .unwrap();
        assert_eq!(q.register_certificate_without_ca, 50.0);
        assert_eq!(q.attach_policy, 20.0);
        assert_eq!(q.create_thing, 100.0);
        assert!(serde_json::from_str::<Quotas>(r#"{"creatething": 1}"#).is_err());
        let json = serde_json::to_value(Quotas::default()).unwrap();
        assert_eq!(json["addThingToThingGroup"], 100.0);
    }

    #[test]
    fn env_overrides_and_errors_name_the_variable() {
        let env = HashMap::from([
            ("QUOTA_CREATE_THING", "250"),
            ("QUOTA_SAFETY_FACTOR", "0.5"),
        ]);
        let lookup = |k: &str| env.get(k).map(|v| v.to_string());
        let q = Quotas::from_env(lookup).unwrap();
        assert_eq!(q.create_thing, 250.0);
        assert_eq!(q.attach_policy, 15.0);
        assert_eq!(safety_factor_from_env(lookup).unwrap(), 0.5);
        assert_eq!(
            safety_factor_from_env(|_| None).unwrap(),
            DEFAULT_SAFETY_FACTOR
        );

        for (var, value) in [("QUOTA_ATTACH_POLICY", "0"), ("QUOTA_ATTACH_POLICY", "ten")] {
            let err = Quotas::from_env(|k| (k == var).then(|| value.to_owned())).unwrap_err();
            assert!(err.to_string().contains(var), "{err}");
        }
        let err = safety_factor_from_env(|_| Some("1.5".into())).unwrap_err();
        assert!(err.to_string().contains("at most 1"), "{err}");
    }
}
