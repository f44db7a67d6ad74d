//! The account-level rate quotas Register paces by: AWS's defaults from the API catalogue,
//! overridden by the `QUOTA_*` variables the template fills.

use crate::ImportError;
use crate::apis::Api;

/// The environment variable holding the share of each quota kept for the account's other
/// callers (0 ≤ r ≤ [`MAX_RESERVE`]); Thingpress paces at quota × (1 − r).
pub const RESERVE_ENV_VAR: &str = "QUOTA_RESERVE";
/// A tenth of every quota stays with the account's devices, tools and people; when they take
/// more, throttling tells Thingpress to back off.
pub const DEFAULT_RESERVE: f64 = 0.10;
/// More than half kept back would make an import crawl; Service Quotas is the way to share less.
pub const MAX_RESERVE: f64 = 0.5;

/// Account-level requests per second per API (all adjustable in Service Quotas).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Quotas {
    per_second: [f64; Api::ALL.len()],
}

impl Default for Quotas {
    /// AWS's default quotas ([`Api::default_quota`]).
    fn default() -> Self {
        Quotas {
            per_second: Api::ALL.map(Api::default_quota),
        }
    }
}

impl Quotas {
    /// The quota of one API, per second.
    pub fn get(&self, api: Api) -> f64 {
        self.per_second.get(api.slot()).copied().unwrap_or(0.0)
    }

    /// Sets the quota of one API, per second.
    pub fn set(&mut self, api: Api, per_second: f64) {
        if let Some(slot) = self.per_second.get_mut(api.slot()) {
            *slot = per_second;
        }
    }

    /// Every quota multiplied by `factor` (e.g. to run the local stack faster or slower).
    pub fn scaled(&self, factor: f64) -> Quotas {
        Quotas {
            per_second: self.per_second.map(|q| q * factor),
        }
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

/// `QUOTA_RESERVE` from `lookup`, or [`DEFAULT_RESERVE`]; must be in [0, [`MAX_RESERVE`]].
pub fn reserve_from_env(lookup: impl Fn(&str) -> Option<String>) -> Result<f64, ImportError> {
    let Some(value) = lookup(RESERVE_ENV_VAR) else {
        return Ok(DEFAULT_RESERVE);
    };
    match value.trim().parse::<f64>() {
        Ok(r) if (0.0..=MAX_RESERVE).contains(&r) => Ok(r),
        _ => Err(ImportError::InvalidConfig(format!(
            "{RESERVE_ENV_VAR}={value:?}: expected a share between 0 and {MAX_RESERVE}"
        ))),
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
        for api in Api::ALL {
            assert_eq!(q.get(api), api.default_quota());
        }
        assert!(q.validate().is_ok());
        assert_eq!(q.scaled(2.0).get(Api::AttachPolicy), 30.0);
    }

    #[test]
    fn env_overrides_and_errors_name_the_variable() {
        let env = HashMap::from([
            ("QUOTA_CREATE_THING", "250"),
            ("QUOTA_UPDATE_THING", "7"),
            ("QUOTA_RESERVE", "0.25"),
        ]);
        let lookup = |k: &str| env.get(k).map(|v| v.to_string());
        let q = Quotas::from_env(lookup).unwrap();
        assert_eq!(q.get(Api::CreateThing), 250.0);
        assert_eq!(q.get(Api::UpdateThing), 7.0);
        assert_eq!(q.get(Api::AttachPolicy), 15.0);
        assert_eq!(reserve_from_env(lookup).unwrap(), 0.25);
        assert_eq!(reserve_from_env(|_| None).unwrap(), DEFAULT_RESERVE);
        assert_eq!(reserve_from_env(|_| Some("0".into())).unwrap(), 0.0);

        for (var, value) in [("QUOTA_ATTACH_POLICY", "0"), ("QUOTA_ATTACH_POLICY", "ten")] {
            let err = Quotas::from_env(|k| (k == var).then(|| value.to_owned())).unwrap_err();
            assert!(err.to_string().contains(var), "{err}");
        }
        for bad in ["0.6", "-0.1", "a tenth"] {
            let err = reserve_from_env(|_| Some(bad.into())).unwrap_err();
            assert!(err.to_string().contains("QUOTA_RESERVE"), "{err}");
        }
    }
}
