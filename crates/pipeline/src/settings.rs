//! The Lambdas' environment: the stack's bucket, defaults, and the account's IoT quotas.

use thingpress_importer::{Api, Quotas, safety_factor_from_env};

/// Settings read once per container from the environment the template sets.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// The stack's bucket: profiles, runs, claims.
    pub import_bucket: String,
    /// Map concurrency when the profile does not set one.
    pub default_max_concurrency: u32,
    /// Entries per chunk when the profile does not set one.
    pub default_chunk_size: u32,
    /// The account's IoT rate quotas per API.
    pub quotas: Quotas,
    /// The fraction of each quota Thingpress may use.
    pub safety_factor: f64,
    /// Register's Lambda timeout: chunks are sized to finish well inside it.
    pub register_timeout_seconds: u32,
}

impl Settings {
    /// From the process environment.
    pub fn from_env() -> Result<Settings, String> {
        Settings::from_lookup(|name| std::env::var(name).ok())
    }

    /// From any variable lookup (tests pass a map).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Settings, String> {
        let import_bucket = lookup("IMPORT_BUCKET")
            .filter(|b| !b.is_empty())
            .ok_or("IMPORT_BUCKET is not set")?;
        let number = |name: &str, default: u32| -> Result<u32, String> {
            match lookup(name) {
                None => Ok(default),
                Some(v) => v
                    .trim()
                    .parse::<u32>()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| format!("{name}={v:?} is not a positive whole number")),
            }
        };
        Ok(Settings {
            import_bucket,
            default_max_concurrency: number("DEFAULT_MAX_CONCURRENCY", 10)?,
            default_chunk_size: number("DEFAULT_CHUNK_SIZE", 500)?,
            quotas: Quotas::from_env(&lookup).map_err(|e| e.to_string())?,
            safety_factor: safety_factor_from_env(&lookup).map_err(|e| e.to_string())?,
            register_timeout_seconds: number("REGISTER_TIMEOUT_SECONDS", 900)?,
        })
    }

    /// The entries per chunk: the profile's (or the default) size, capped so that one child,
    /// paced at its share of the slowest quota, registers its chunk in half of Register's timeout.
    pub fn chunk_size(
        &self,
        requested: Option<u32>,
        max_concurrency: u32,
        policies: usize,
        groups: usize,
    ) -> u32 {
        let share = self.safety_factor / f64::from(max_concurrency.max(1));
        let per_entry = [
            (Api::RegisterCertificateWithoutCA, 1.0),
            (Api::CreateThing, 1.0),
            (Api::AttachThingPrincipal, 1.0),
            (Api::AttachPolicy, policies as f64),
            (Api::AddThingToThingGroup, groups as f64),
        ];
        let entries_per_second = per_entry
            .iter()
            .filter(|(_, calls)| *calls > 0.0)
            .map(|(api, calls)| self.quotas.get(*api) * share / calls)
            .fold(f64::INFINITY, f64::min);
        let cap = (entries_per_second * f64::from(self.register_timeout_seconds) / 2.0).floor();
        let requested = requested.unwrap_or(self.default_chunk_size);
        if cap.is_finite() && cap < f64::from(requested) {
            // `cap` is below a u32 here, so the cast cannot truncate.
            (cap as u32).max(1)
        } else {
            requested
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn settings(vars: &[(&str, &str)]) -> Result<Settings, String> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::from_lookup(|name| map.get(name).cloned())
    }

    #[test]
    fn reads_defaults_and_rejects_bad_numbers() {
        let s = settings(&[("IMPORT_BUCKET", "b")]).unwrap();
        assert_eq!(s.default_max_concurrency, 10);
        assert!(settings(&[]).unwrap_err().contains("IMPORT_BUCKET"));
        let err = settings(&[("IMPORT_BUCKET", "b"), ("DEFAULT_CHUNK_SIZE", "0")]).unwrap_err();
        assert!(err.contains("DEFAULT_CHUNK_SIZE"), "{err}");
    }

    #[test]
    fn chunks_are_capped_by_the_paced_rate() {
        // AWS defaults: RegisterCertificateWithoutCA 10/s × 0.8 ÷ 10 children = 0.8/s per child;
        // 900 s timeout ÷ 2 → at most 360 entries per chunk.
        let s = settings(&[("IMPORT_BUCKET", "b"), ("QUOTA_SAFETY_FACTOR", "0.8")]).unwrap();
        assert_eq!(s.chunk_size(Some(5000), 10, 1, 1), 360);
        assert_eq!(s.chunk_size(Some(100), 10, 1, 1), 100);
        // Four policies on AttachPolicy 15/s: 15 × 0.8 ÷ 10 ÷ 4 = 0.3/s → 135.
        assert_eq!(s.chunk_size(None, 10, 4, 0), 135);
    }
}
