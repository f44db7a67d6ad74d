//! The Lambdas' environment: the stack's bucket, defaults, the account's IoT quotas, and the
//! policies and thing groups a profile may name.

use thingpress_importer::{Quotas, new_certificates_per_second, reserve_from_env};

use crate::records::Rates;

/// The environment variable holding the stack parameter `AllowedPolicies`.
pub const ALLOWED_POLICIES_ENV_VAR: &str = "ALLOWED_POLICIES";
/// The environment variable holding the stack parameter `AllowedThingGroups`.
pub const ALLOWED_THING_GROUPS_ENV_VAR: &str = "ALLOWED_THING_GROUPS";
/// The environment variable holding Register's timeout (seconds), which sizes chunks.
pub const REGISTER_TIMEOUT_ENV_VAR: &str = "REGISTER_TIMEOUT_SECONDS";

/// The environment variable holding the stack parameter `MaxConcurrency` (0 = size the Map).
pub const MAX_CONCURRENCY_ENV_VAR: &str = "DEFAULT_MAX_CONCURRENCY";
/// The environment variable holding the stack parameter `ChildCapacity`.
pub const CHILD_CAPACITY_ENV_VAR: &str = "CHILD_CAPACITY";
/// A Register child keeps 8 entries in flight through ~5 sequential IoT calls of tens of
/// milliseconds each on AWS, so it can do well over 20 certificates/s; 20 errs on the side of
/// one child too many (billed, mostly waiting) rather than one too few (quota unused).
pub const DEFAULT_CHILD_CAPACITY: f64 = 20.0;
/// The most children sizing asks for on its own; the profile or `MaxConcurrency` may set more.
pub const AUTO_MAX_CONCURRENCY: u32 = 100;

/// Settings read once per container from the environment the template sets.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// The stack's bucket: profiles, runs, claims.
    pub import_bucket: String,
    /// Map concurrency when the profile does not set one; `None` sizes the Map from the quotas
    /// and [`Settings::child_capacity`].
    pub default_max_concurrency: Option<u32>,
    /// Certificates per second one Register child reaches when it never waits for tokens.
    pub child_capacity: f64,
    /// Entries per chunk when the profile does not set one.
    pub default_chunk_size: u32,
    /// The account's IoT rate quotas per API.
    pub quotas: Quotas,
    /// The share of each quota kept for the account's other callers.
    pub quota_reserve: f64,
    /// Register's Lambda timeout: chunks are sized to finish well inside it.
    pub register_timeout_seconds: u32,
    /// The policies and thing groups a profile may name.
    pub allow_list: AllowList,
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
            default_max_concurrency: match number_or_auto(&lookup, MAX_CONCURRENCY_ENV_VAR)? {
                0 => None,
                n => Some(n),
            },
            child_capacity: positive(&lookup, CHILD_CAPACITY_ENV_VAR, DEFAULT_CHILD_CAPACITY)?,
            default_chunk_size: number("DEFAULT_CHUNK_SIZE", 2000)?,
            quotas: Quotas::from_env(&lookup).map_err(|e| e.to_string())?,
            quota_reserve: reserve_from_env(&lookup).map_err(|e| e.to_string())?,
            register_timeout_seconds: number(REGISTER_TIMEOUT_ENV_VAR, 900)?,
            allow_list: AllowList::from_lookup(&lookup)?,
        })
    }

    /// Certificates per second the quotas allow all of Thingpress: the slowest API's quota less
    /// the reserve, over its calls per new certificate.
    pub fn budget_per_second(&self, policies: usize, groups: usize) -> f64 {
        let usable = 1.0 - self.quota_reserve;
        new_certificates_per_second(|api| self.quotas.get(api) * usable, policies, groups)
    }

    /// Certificates per second one target's quotas allow, paced (less the reserve) and in full.
    pub fn rates(&self, policies: usize, groups: usize) -> Rates {
        Rates {
            paced_per_second: self.budget_per_second(policies, groups),
            quota_per_second: new_certificates_per_second(
                |api| self.quotas.get(api),
                policies,
                groups,
            ),
        }
    }

    /// The Map's concurrency: the profile's, else the stack's `MaxConcurrency`, else (0, the
    /// default) as many children as it takes to use the budget when each runs at its capacity.
    /// More children than that would only wait for tokens while Lambda bills them.
    pub fn max_concurrency(&self, requested: Option<u32>, policies: usize, groups: usize) -> u32 {
        if let Some(n) = requested.or(self.default_max_concurrency) {
            return n.max(1);
        }
        let children = (self.budget_per_second(policies, groups) / self.child_capacity).ceil();
        if children.is_finite() && children < f64::from(AUTO_MAX_CONCURRENCY) {
            // Below AUTO_MAX_CONCURRENCY here, so the cast cannot truncate.
            (children as u32).max(1)
        } else {
            AUTO_MAX_CONCURRENCY
        }
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
        let entries_per_second =
            self.budget_per_second(policies, groups) / f64::from(max_concurrency.max(1));
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

/// A whole number where 0 is allowed (it means "automatic"); unset is 0.
fn number_or_auto(lookup: impl Fn(&str) -> Option<String>, name: &str) -> Result<u32, String> {
    match lookup(name) {
        None => Ok(0),
        Some(v) => v
            .trim()
            .parse::<u32>()
            .map_err(|_| format!("{name}={v:?} is not a whole number (0 = automatic)")),
    }
}

/// A positive finite number, or `default` when unset.
fn positive(
    lookup: impl Fn(&str) -> Option<String>,
    name: &str,
    default: f64,
) -> Result<f64, String> {
    match lookup(name) {
        None => Ok(default),
        Some(v) => v
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|n| n.is_finite() && *n > 0.0)
            .ok_or_else(|| format!("{name}={v:?} is not a positive number")),
    }
}

/// Names a profile may use: comma-separated exact names or `*` patterns (`*` matches any run of
/// characters, so `thingpress-*` allows every name with that prefix and `*` allows every name).
/// An empty list allows nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamePatterns {
    patterns: Vec<String>,
}

impl NamePatterns {
    /// Every name allowed: what an unset variable means (only the template's Split sets them).
    pub fn any() -> NamePatterns {
        NamePatterns {
            patterns: vec!["*".to_owned()],
        }
    }

    /// Parses `a, b-*, *-x`; `what` names the setting in errors. IoT names hold
    /// `[A-Za-z0-9_+=.@:-]`, so anything else is a typo, not a pattern.
    pub fn parse(what: &str, list: &str) -> Result<NamePatterns, String> {
        let mut patterns = Vec::new();
        for item in list.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            if let Some(bad) = item
                .chars()
                .find(|c| !(c.is_ascii_alphanumeric() || "_+=.@:-*".contains(*c)))
            {
                return Err(format!(
                    "{what}: {item:?} holds {bad:?}; use names of [A-Za-z0-9_+=.@:-] and * only"
                ));
            }
            patterns.push(item.to_owned());
        }
        Ok(NamePatterns { patterns })
    }

    /// Whether `name` matches one of the patterns.
    pub fn allows(&self, name: &str) -> bool {
        self.patterns.iter().any(|p| glob_matches(p, name))
    }
}

impl std::fmt::Display for NamePatterns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.patterns.is_empty() {
            f.write_str("(empty: nothing allowed)")
        } else {
            f.write_str(&self.patterns.join(","))
        }
    }
}

/// `*` matches any run of characters (none included); everything else matches itself.
fn glob_matches(pattern: &str, name: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or_default();
    let Some(mut rest) = name.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        // No `*` at all: an exact name.
        return rest.is_empty();
    };
    for part in middle {
        match rest.find(part) {
            Some(at) => rest = rest.get(at + part.len()..).unwrap_or_default(),
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

/// The stack's allow-list (parameters `AllowedPolicies`, `AllowedThingGroups`). IoT cannot scope
/// `iot:AttachPolicy` by policy name, so without it whoever writes `profiles/` could have any
/// IoT policy attached to the imported certificates, or their things added to any group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowList {
    /// Policies a profile may attach.
    pub policies: NamePatterns,
    /// Thing groups a profile may add things to.
    pub thing_groups: NamePatterns,
}

impl AllowList {
    /// From `ALLOWED_POLICIES` and `ALLOWED_THING_GROUPS`; an unset variable allows every name.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<AllowList, String> {
        let read = |name: &str| match lookup(name) {
            None => Ok(NamePatterns::any()),
            Some(list) => NamePatterns::parse(name, &list),
        };
        Ok(AllowList {
            policies: read(ALLOWED_POLICIES_ENV_VAR)?,
            thing_groups: read(ALLOWED_THING_GROUPS_ENV_VAR)?,
        })
    }

    /// One line per policy or group the profile names outside the list.
    pub fn problems(&self, policies: &[String], thing_groups: &[String]) -> Vec<String> {
        let outside = |kind: &str, parameter: &str, list: &NamePatterns, names: &[String]| {
            names
                .iter()
                .filter(|name| !list.allows(name))
                .map(|name| {
                    format!(
                        "{kind}: {name:?} is not allowed by the stack parameter {parameter} ({list})"
                    )
                })
                .collect::<Vec<_>>()
        };
        let mut problems = outside("policies", "AllowedPolicies", &self.policies, policies);
        problems.extend(outside(
            "thingGroups",
            "AllowedThingGroups",
            &self.thing_groups,
            thing_groups,
        ));
        problems
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
    fn rates_are_the_slowest_apis_with_and_without_the_reserve() {
        let s = settings(&[("IMPORT_BUCKET", "b"), ("QUOTA_RESERVE", "0.1")]).unwrap();
        // Default quotas: AttachPolicy's 15/s over 2 policies bounds the profile.
        let rates = s.rates(2, 0);
        assert_eq!(rates.paced_per_second, 6.75);
        assert_eq!(rates.quota_per_second, 7.5);
    }

    #[test]
    fn reads_defaults_and_rejects_bad_numbers() {
        let s = settings(&[("IMPORT_BUCKET", "b")]).unwrap();
        assert_eq!(s.default_max_concurrency, None);
        assert_eq!(s.child_capacity, DEFAULT_CHILD_CAPACITY);
        let s = settings(&[("IMPORT_BUCKET", "b"), (MAX_CONCURRENCY_ENV_VAR, "0")]).unwrap();
        assert_eq!(s.default_max_concurrency, None);
        let s = settings(&[("IMPORT_BUCKET", "b"), (MAX_CONCURRENCY_ENV_VAR, "4")]).unwrap();
        assert_eq!(s.default_max_concurrency, Some(4));
        for (var, bad) in [
            (MAX_CONCURRENCY_ENV_VAR, "-1"),
            (CHILD_CAPACITY_ENV_VAR, "0"),
        ] {
            let err = settings(&[("IMPORT_BUCKET", "b"), (var, bad)]).unwrap_err();
            assert!(err.contains(var), "{err}");
        }
        assert!(settings(&[]).unwrap_err().contains("IMPORT_BUCKET"));
        let err = settings(&[("IMPORT_BUCKET", "b"), ("DEFAULT_CHUNK_SIZE", "0")]).unwrap_err();
        assert!(err.contains("DEFAULT_CHUNK_SIZE"), "{err}");
    }

    #[test]
    fn the_map_is_sized_so_children_run_near_their_capacity() {
        // AWS defaults, reserve 0.1: RegisterCertificateWithoutCA 9/s ÷ 20/s per child → 1.
        let s = settings(&[("IMPORT_BUCKET", "b")]).unwrap();
        assert_eq!(s.max_concurrency(None, 1, 1), 1);
        // Quotas ×10 (90/s of RegisterCertificateWithoutCA; AttachPolicy 150/s × 0.9 = 135/s)
        // → 90 ÷ 20 → 5 children.
        let raised: Vec<(String, String)> = thingpress_importer::Api::ALL
            .iter()
            .map(|api| {
                (
                    api.quota_env_var().to_owned(),
                    (api.default_quota() * 10.0).to_string(),
                )
            })
            .chain([("IMPORT_BUCKET".to_owned(), "b".to_owned())])
            .collect();
        let s =
            Settings::from_lookup(|n| raised.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone()))
                .unwrap();
        assert_eq!(s.max_concurrency(None, 1, 1), 5);
        // A slower child needs more of them; the profile and the stack's value win.
        let s = settings(&[("IMPORT_BUCKET", "b"), (CHILD_CAPACITY_ENV_VAR, "2")]).unwrap();
        assert_eq!(s.max_concurrency(None, 1, 1), 5);
        assert_eq!(s.max_concurrency(Some(3), 1, 1), 3);
        let s = settings(&[("IMPORT_BUCKET", "b"), (MAX_CONCURRENCY_ENV_VAR, "10")]).unwrap();
        assert_eq!(s.max_concurrency(None, 1, 1), 10);
        // Never more than AUTO_MAX_CONCURRENCY on its own.
        let s = settings(&[("IMPORT_BUCKET", "b"), (CHILD_CAPACITY_ENV_VAR, "0.001")]).unwrap();
        assert_eq!(s.max_concurrency(None, 1, 1), AUTO_MAX_CONCURRENCY);
    }

    #[test]
    fn chunks_are_capped_by_the_paced_rate() {
        // AWS defaults: RegisterCertificateWithoutCA 10/s × (1 − 0.2) ÷ 10 children = 0.8/s per
        // child; 900 s timeout ÷ 2 → at most 360 entries per chunk.
        let s = settings(&[("IMPORT_BUCKET", "b"), ("QUOTA_RESERVE", "0.2")]).unwrap();
        assert_eq!(s.chunk_size(Some(5000), 10, 1, 1), 360);
        assert_eq!(s.chunk_size(Some(100), 10, 1, 1), 100);
        // Four policies on AttachPolicy 15/s: 15 × 0.8 ÷ 10 ÷ 4 = 0.3/s → 135.
        assert_eq!(s.chunk_size(None, 10, 4, 0), 135);
        // The default reserve (a tenth): 10 × 0.9 ÷ 10 = 0.9/s → 405.
        let s = settings(&[("IMPORT_BUCKET", "b")]).unwrap();
        assert_eq!(s.chunk_size(Some(5000), 10, 1, 1), 405);
        // EXPRESS children: Register's timeout is shorter, so are the chunks.
        let s = settings(&[
            ("IMPORT_BUCKET", "b"),
            ("QUOTA_RESERVE", "0.2"),
            (REGISTER_TIMEOUT_ENV_VAR, "100"),
        ])
        .unwrap();
        assert_eq!(s.chunk_size(Some(5000), 10, 1, 1), 40);
    }

    #[test]
    fn patterns_match_names_and_prefixes() {
        let p = NamePatterns::parse("P", " thingpress-* , Fleet,*-eu,a*b*c ").unwrap();
        for yes in [
            "thingpress-",
            "thingpress-device",
            "Fleet",
            "x-eu",
            "-eu",
            "abc",
            "a1b2c",
        ] {
            assert!(p.allows(yes), "{yes}");
        }
        for no in [
            "thingpress",
            "fleet",
            "Fleet2",
            "x-eu2",
            "ab",
            "acb",
            "Admin",
            "",
        ] {
            assert!(!p.allows(no), "{no}");
        }
        assert!(NamePatterns::any().allows("anything"));
        let empty = NamePatterns::parse("P", " , ").unwrap();
        assert!(!empty.allows("x"));
        assert_eq!(empty.to_string(), "(empty: nothing allowed)");
        let err = NamePatterns::parse("ALLOWED_POLICIES", "ok,bad name").unwrap_err();
        assert!(
            err.contains("ALLOWED_POLICIES") && err.contains("bad name"),
            "{err}"
        );
        // `a*a` needs two a's, not one shared between prefix and suffix.
        assert!(!NamePatterns::parse("P", "a*a").unwrap().allows("a"));
    }

    #[test]
    fn the_allow_list_names_what_it_refuses() {
        let s = settings(&[
            ("IMPORT_BUCKET", "b"),
            (ALLOWED_POLICIES_ENV_VAR, "thingpress-*"),
            (ALLOWED_THING_GROUPS_ENV_VAR, "fleet"),
        ])
        .unwrap();
        let problems = s.allow_list.problems(
            &["thingpress-device".into(), "AdminPolicy".into()],
            &["fleet".into(), "operators".into()],
        );
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].contains("\"AdminPolicy\"") && problems[0].contains("AllowedPolicies"));
        assert!(
            problems[1].contains("\"operators\"") && problems[1].contains("AllowedThingGroups")
        );
        // Unset: the functions other than Split have no list and allow every name.
        let s = settings(&[("IMPORT_BUCKET", "b")]).unwrap();
        assert!(
            s.allow_list
                .problems(&["any".into()], &["any".into()])
                .is_empty()
        );
        let err = settings(&[
            ("IMPORT_BUCKET", "b"),
            (ALLOWED_THING_GROUPS_ENV_VAR, "a b"),
        ])
        .unwrap_err();
        assert!(err.contains(ALLOWED_THING_GROUPS_ENV_VAR), "{err}");
    }
}
