//! Product profiles: how the entries of a manifest become IoT things.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use thingpress_manifest::{Limits, Options, Slot, Supplier, Verifiers};

use crate::ProfileError;
use crate::names;
use crate::target::{MAX_TARGETS, Target};
use crate::template::Template;

/// Most attributes a thing with a thing type may have (AWS IoT quota, not adjustable).
pub const MAX_ATTRIBUTES_WITH_TYPE: usize = 50;
/// Most attributes a thing without a thing type may have (AWS IoT quota, not adjustable).
pub const MAX_ATTRIBUTES_WITHOUT_TYPE: usize = 3;
/// The thing attribute every import sets to the profile's name, so `thingpress decommission`
/// removes only things Thingpress made with that profile. It takes one of the thing's
/// attribute slots, and profiles may not set it themselves.
pub const MARK_ATTRIBUTE: &str = "thingpress";
/// Most thing groups one thing may belong to (AWS IoT quota, not adjustable).
pub const MAX_THING_GROUPS: usize = 10;
/// Most policies attached to one certificate (AWS IoT quota, not adjustable).
pub const MAX_POLICIES: usize = 10;
/// Largest chunk of entries one Register invocation handles.
pub const MAX_CHUNK_SIZE: u32 = 10_000;
/// Largest Distributed Map `MaxConcurrency` Step Functions accepts.
pub const MAX_CONCURRENCY: u32 = 10_000;

/// The status a newly registered certificate gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum CertificateStatus {
    /// Devices can connect at once.
    #[default]
    Active,
    /// Registered but unusable until activated (two-phase activation).
    Inactive,
}

impl CertificateStatus {
    /// The AWS IoT spelling, `ACTIVE` or `INACTIVE`.
    pub fn as_str(self) -> &'static str {
        match self {
            CertificateStatus::Active => "ACTIVE",
            CertificateStatus::Inactive => "INACTIVE",
        }
    }
}

/// What to do when a thing of the rendered name exists with another type or attributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnThingConflict {
    /// Leave the thing alone and reject the entry with `Thingpress.ThingConflict`.
    #[default]
    Reject,
    /// Make the thing match the profile (UpdateThing).
    Update,
}

/// How a certificate is attached to its thing (AttachThingPrincipal's `thingPrincipalType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ThingPrincipalType {
    /// AWS's default: the certificate may also be attached to other things.
    #[default]
    NonExclusiveThing,
    /// The thing is the only thing the certificate may be attached to, which IoT enforces (and
    /// then names the thing in the certificate's lifecycle events).
    ExclusiveThing,
}

impl ThingPrincipalType {
    /// Whether this is AWS's default, which profiles and decorated lines leave out.
    pub fn is_default(&self) -> bool {
        *self == ThingPrincipalType::default()
    }
}

/// A product profile, stored as `profiles/<name>.json` or given inline in the execution input.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Profile {
    /// The profile's name (also its S3 key segment).
    #[serde(default)]
    pub name: String,
    /// The manifest format, or `auto`.
    #[serde(default)]
    pub supplier: Supplier,
    /// PEM texts of the certificates allowed to sign Microchip manifests; empty = Microchip's own.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub verifiers: Vec<String>,
    /// The Infineon bundle slot to import.
    #[serde(default)]
    pub slot: Slot,
    /// Thing-name template.
    #[serde(default = "default_thing_name")]
    pub thing_name: String,
    /// The thing type every thing gets, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thing_type: Option<String>,
    /// Static thing groups every thing joins.
    #[serde(default)]
    pub thing_groups: Vec<String>,
    /// Policies attached to every certificate.
    #[serde(default)]
    pub policies: Vec<String>,
    /// Thing attributes; the values are templates.
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
    /// The status new certificates get.
    #[serde(default)]
    pub certificate_status: CertificateStatus,
    /// Entries per chunk (one Register invocation), 1..=10000; the stack default if absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chunk_size: Option<u32>,
    /// Chunks registered at once (Map MaxConcurrency), 1..=10000; the stack default if absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrency: Option<u32>,
    /// What to do with an existing thing of another configuration.
    #[serde(default)]
    pub on_thing_conflict: OnThingConflict,
    /// How each certificate is attached to its thing.
    #[serde(default, skip_serializing_if = "ThingPrincipalType::is_default")]
    pub thing_principal_type: ThingPrincipalType,
    /// Static thing groups `thingpress activate` adds each activated thing to (e.g. `shipped`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub activation_groups: Vec<String>,
    /// The accounts and Regions every entry is registered in; empty means the stack's own
    /// account and Region only.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub targets: Vec<Target>,
}

fn default_thing_name() -> String {
    "{deviceId}".to_owned()
}

impl Profile {
    /// A profile with every default and the given name.
    pub fn named(name: impl Into<String>) -> Profile {
        Profile {
            name: name.into(),
            supplier: Supplier::Auto,
            verifiers: Vec::new(),
            slot: Slot::E0E0,
            thing_name: default_thing_name(),
            thing_type: None,
            thing_groups: Vec::new(),
            policies: Vec::new(),
            attributes: BTreeMap::new(),
            certificate_status: CertificateStatus::Active,
            chunk_size: None,
            max_concurrency: None,
            on_thing_conflict: OnThingConflict::Reject,
            thing_principal_type: ThingPrincipalType::NonExclusiveThing,
            activation_groups: Vec::new(),
            targets: Vec::new(),
        }
    }

    /// Parses and validates a profile that must carry its own `name` (e.g. inline in the input).
    pub fn from_json(bytes: &[u8]) -> Result<Profile, ProfileError> {
        let profile: Profile = serde_json::from_slice(bytes).map_err(ProfileError::Json)?;
        profile.validate()?;
        Ok(profile)
    }

    /// Parses and validates a profile stored as `profiles/<name>.json`: a missing `name` is taken
    /// from the key; a different one is an error, so reports never name the wrong profile.
    pub fn from_stored_json(bytes: &[u8], name: &str) -> Result<Profile, ProfileError> {
        let mut profile: Profile = serde_json::from_slice(bytes).map_err(ProfileError::Json)?;
        if profile.name.is_empty() {
            profile.name = name.to_owned();
        } else if profile.name != name {
            return Err(ProfileError::invalid(
                name,
                vec![format!(
                    "name: the file says {:?} but is stored as profiles/{name}.json",
                    profile.name
                )],
            ));
        }
        profile.validate()?;
        Ok(profile)
    }

    /// Every thing group the profile names: imports join `thingGroups`, activation joins
    /// `activationGroups` (the stack's allow-list and IoT must accept both).
    pub fn all_thing_groups(&self) -> Vec<String> {
        let mut groups = self.thing_groups.clone();
        groups.extend(self.activation_groups.iter().cloned());
        groups
    }

    /// Checks every field; the error lists each problem with its field and reason.
    pub fn validate(&self) -> Result<(), ProfileError> {
        let mut problems = Vec::new();
        self.check_name(&mut problems);
        for (i, pem) in self.verifiers.iter().enumerate() {
            if let Err(e) = Verifiers::from_pem(pem) {
                problems.push(format!("verifiers[{i}]: {e}"));
            }
        }
        self.check_thing_name_template(&mut problems);
        if let Some(thing_type) = &self.thing_type
            && let Err(e) = names::check_thing_name(thing_type)
        {
            problems.push(format!("thingType {thing_type:?}: {e}"));
        }
        check_list(
            &mut problems,
            "thingGroups",
            &self.thing_groups,
            MAX_THING_GROUPS,
            names::check_thing_name,
        );
        check_list(
            &mut problems,
            "activationGroups",
            &self.activation_groups,
            MAX_THING_GROUPS,
            names::check_thing_name,
        );
        check_list(
            &mut problems,
            "policies",
            &self.policies,
            MAX_POLICIES,
            names::check_policy_name,
        );
        self.check_attributes(&mut problems);
        check_range(&mut problems, "chunkSize", self.chunk_size, MAX_CHUNK_SIZE);
        check_range(
            &mut problems,
            "maxConcurrency",
            self.max_concurrency,
            MAX_CONCURRENCY,
        );
        self.check_targets(&mut problems);
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ProfileError::invalid(&self.name, problems))
        }
    }

    /// The targets of a run with this profile: its `targets`, or the stack's own account in
    /// `stack_region`.
    pub fn targets_or_home(&self, stack_region: &str) -> Vec<Target> {
        if self.targets.is_empty() {
            vec![Target::home(stack_region)]
        } else {
            self.targets.clone()
        }
    }

    fn check_targets(&self, problems: &mut Vec<String>) {
        if self.targets.len() > MAX_TARGETS {
            problems.push(format!(
                "targets: {} given, at most {MAX_TARGETS} allowed",
                self.targets.len()
            ));
        }
        let mut seen = std::collections::BTreeSet::new();
        for (i, target) in self.targets.iter().enumerate() {
            problems.extend(target.problems(i));
            if !seen.insert(target.id()) {
                problems.push(format!(
                    "targets[{i}]: {} is listed twice (each account and Region once)",
                    target.id()
                ));
            }
        }
    }

    fn check_name(&self, problems: &mut Vec<String>) {
        if self.name.is_empty() {
            problems.push("name: required".to_owned());
        } else if let Err(e) = names::check(&self.name, 1, 128, names::is_profile_name_char) {
            problems.push(format!("name {:?}: {e}", self.name));
        } else if self.name.starts_with('.') {
            problems.push(format!("name {:?}: must not start with '.'", self.name));
        }
    }

    fn check_thing_name_template(&self, problems: &mut Vec<String>) {
        let template = match Template::parse(&self.thing_name) {
            Ok(template) => template,
            Err(e) => return problems.push(format!("thingName {:?}: {e}", self.thing_name)),
        };
        if !template.has_placeholders() {
            problems.push(format!(
                "thingName {:?}: has no placeholder, so every device would get the same thing",
                self.thing_name
            ));
        }
        // Literal text is the same for every entry: a bad character there fails them all.
        if let Some(bad) = template
            .literal_text()
            .chars()
            .find(|&c| !names::is_thing_name_char(c))
        {
            problems.push(format!(
                "thingName {:?}: character {bad:?} is not allowed in thing names",
                self.thing_name
            ));
        }
    }

    fn check_attributes(&self, problems: &mut Vec<String>) {
        let max_attributes = if self.thing_type.is_some() {
            MAX_ATTRIBUTES_WITH_TYPE
        } else {
            MAX_ATTRIBUTES_WITHOUT_TYPE
        };
        // Thingpress's mark takes one of the slots.
        if self.attributes.len() + 1 > max_attributes {
            problems.push(format!(
                "attributes: {} given, at most {} allowed (Thingpress's {MARK_ATTRIBUTE:?} mark takes one of {max_attributes}) {}",
                self.attributes.len(),
                max_attributes - 1,
                if self.thing_type.is_some() {
                    "on a thing with a thing type"
                } else {
                    "on a thing without a thing type (set thingType to allow 50)"
                }
            ));
        }
        if self.attributes.contains_key(MARK_ATTRIBUTE) {
            problems.push(format!(
                "attributes: {MARK_ATTRIBUTE:?} is Thingpress's mark (the profile's name), set on every thing it imports"
            ));
        }
        for (name, value) in &self.attributes {
            if let Err(e) = names::check_attribute_name(name) {
                problems.push(format!("attributes: name {name:?}: {e}"));
            }
            match Template::parse(value) {
                Err(e) => problems.push(format!("attributes.{name} {value:?}: {e}")),
                Ok(template) => {
                    if let Some(bad) = template
                        .literal_text()
                        .chars()
                        .find(|&c| !names::is_attribute_value_char(c))
                    {
                        problems.push(format!(
                            "attributes.{name} {value:?}: character {bad:?} is not allowed in attribute values"
                        ));
                    }
                }
            }
        }
    }

    /// The verifier certificates as given (PEM texts); empty means Microchip's built-in signers.
    pub fn verifier_pems(&self) -> &[String] {
        &self.verifiers
    }

    /// How to read manifests for this profile (format, verifiers, slot, default limits).
    pub fn manifest_options(&self) -> Result<Options, ProfileError> {
        let verifiers = if self.verifiers.is_empty() {
            Verifiers::default()
        } else {
            let mut all = Verifiers::empty();
            for (i, pem) in self.verifiers.iter().enumerate() {
                all.add_pem(pem).map_err(|e| {
                    ProfileError::invalid(&self.name, vec![format!("verifiers[{i}]: {e}")])
                })?;
            }
            all
        };
        Ok(Options {
            supplier: self.supplier,
            verifiers,
            slot: self.slot,
            limits: Limits::default(),
        })
    }
}

fn check_list(
    problems: &mut Vec<String>,
    field: &str,
    items: &[String],
    max: usize,
    check: fn(&str) -> Result<(), String>,
) {
    if items.len() > max {
        problems.push(format!(
            "{field}: {} given, at most {max} allowed",
            items.len()
        ));
    }
    for (i, item) in items.iter().enumerate() {
        if let Err(e) = check(item) {
            problems.push(format!("{field}[{i}] {item:?}: {e}"));
        }
        if items.iter().take(i).any(|earlier| earlier == item) {
            problems.push(format!("{field}[{i}] {item:?}: listed twice"));
        }
    }
}

fn check_range(problems: &mut Vec<String>, field: &str, value: Option<u32>, max: u32) {
    if let Some(v) = value
        && !(1..=max).contains(&v)
    {
        problems.push(format!("{field}: {v} is outside 1..={max}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_fill_a_minimal_profile() {
        let p = Profile::from_json(br#"{"name":"widget"}"#).unwrap();
        assert_eq!(p, Profile::named("widget"));
        assert_eq!(p.thing_name, "{deviceId}");
        assert_eq!(p.certificate_status, CertificateStatus::Active);
        assert_eq!(p.on_thing_conflict, OnThingConflict::Reject);
    }

    #[test]
    fn full_profile_round_trips() {
        let json = br#"{
            "name": "sensor-v2", "supplier": "microchip", "slot": "E0E1",
            "thingName": "{partNumber}_{deviceId}", "thingType": "Sensor",
            "thingGroups": ["fleet-a", "eu"], "policies": ["DevicePolicy"],
            "attributes": {"model": "{partNumber}", "batch": "b-7"},
            "certificateStatus": "INACTIVE", "chunkSize": 500, "maxConcurrency": 4,
            "onThingConflict": "update", "thingPrincipalType": "EXCLUSIVE_THING"
        }"#;
        let p = Profile::from_json(json).unwrap();
        assert_eq!(p.thing_principal_type, ThingPrincipalType::ExclusiveThing);
        assert_eq!(p.supplier, Supplier::Microchip);
        assert_eq!(p.slot, Slot::E0E1);
        assert_eq!(p.certificate_status, CertificateStatus::Inactive);
        assert_eq!(p.on_thing_conflict, OnThingConflict::Update);
        let again = Profile::from_json(&serde_json::to_vec(&p).unwrap()).unwrap();
        assert_eq!(again, p);
    }

    #[test]
    fn unknown_and_mistyped_fields_are_rejected() {
        let err = Profile::from_json(br#"{"name":"a","thingname":"{deviceId}"}"#).unwrap_err();
        assert!(err.to_string().contains("thingname"), "{err}");
        let err = Profile::from_json(br#"{"name":"a","certificateStatus":"REVOKED"}"#).unwrap_err();
        assert!(err.to_string().contains("REVOKED"), "{err}");
        let err =
            Profile::from_json(br#"{"name":"a","thingPrincipalType":"EXCLUSIVE"}"#).unwrap_err();
        assert!(err.to_string().contains("EXCLUSIVE_THING"), "{err}");
        assert!(Profile::from_json(b"not json").is_err());
    }

    #[test]
    fn targets_are_read_checked_and_default_to_the_stack() {
        let p = Profile::from_json(
            br#"{"name":"a","targets":[{"region":"eu-west-1"},
                {"region":"us-east-1","roleArn":"arn:aws:iam::222222222222:role/thingpress-target","externalId":"ext-1"}]}"#,
        )
        .unwrap();
        let ids: Vec<String> = p
            .targets_or_home("us-east-1")
            .iter()
            .map(Target::id)
            .collect();
        assert_eq!(ids, ["eu-west-1", "222222222222-us-east-1"]);
        assert_eq!(
            Profile::named("a").targets_or_home("us-east-1"),
            [Target::home("us-east-1")]
        );
        let err = Profile::from_json(
            br#"{"name":"a","targets":[{"region":"eu-west-1"},{"region":"eu-west-1"},{"region":"x"}]}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("targets[1]: eu-west-1 is listed twice"),
            "{err}"
        );
        assert!(err.contains("targets[2].region"), "{err}");
        let err =
            Profile::from_json(br#"{"name":"a","targets":[{"region":"eu-west-1","role":"x"}]}"#)
                .unwrap_err();
        assert!(err.to_string().contains("role"), "{err}");
    }

    #[test]
    fn name_rules() {
        let err = Profile::from_json(b"{}").unwrap_err().to_string();
        assert!(err.contains("name: required"), "{err}");
        assert!(Profile::from_json(br#"{"name":"a/b"}"#).is_err());
        assert!(Profile::from_json(br#"{"name":".hidden"}"#).is_err());
        let stored = Profile::from_stored_json(b"{}", "widget").unwrap();
        assert_eq!(stored.name, "widget");
        let err = Profile::from_stored_json(br#"{"name":"other"}"#, "widget").unwrap_err();
        assert!(err.to_string().contains("profiles/widget.json"), "{err}");
    }

    fn problems(json: &str) -> String {
        Profile::from_json(json.as_bytes()).unwrap_err().to_string()
    }

    #[test]
    fn every_problem_names_its_field() {
        let err = problems(
            r#"{"name":"p","thingName":"dev {deviceId}","thingType":"bad type",
                "thingGroups":["g","g","a/b"],"policies":["p p"],
                "attributes":{"a":"{x}","b=":"1","c":"{y","d":"x y"},
                "chunkSize":0,"maxConcurrency":10001}"#,
        );
        for needle in [
            "thingName \"dev {deviceId}\": character ' '",
            "thingType \"bad type\"",
            "thingGroups[1] \"g\": listed twice",
            "thingGroups[2] \"a/b\"",
            "policies[0] \"p p\"",
            "attributes: name \"b=\"",
            "attributes.c \"{y\"",
            "attributes.d \"x y\": character ' '",
            "chunkSize: 0",
            "maxConcurrency: 10001",
        ] {
            assert!(err.contains(needle), "missing {needle:?} in {err}");
        }
    }

    #[test]
    fn attribute_count_depends_on_thing_type() {
        // Thingpress's mark takes one of a thing's 3 (or 50) attributes.
        let three = r#""attributes":{"a":"1","b":"2","c":"3"}"#;
        let err = problems(&format!(r#"{{"name":"p",{three}}}"#));
        assert!(err.contains("at most 2"), "{err}");
        let four = r#""attributes":{"a":"1","b":"2","c":"3","d":"4"}"#;
        assert!(
            Profile::from_json(format!(r#"{{"name":"p","thingType":"T",{four}}}"#).as_bytes())
                .is_ok()
        );
        let many: Vec<String> = (0..50).map(|i| format!(r#""a{i}":"v""#)).collect();
        let err = problems(&format!(
            r#"{{"name":"p","thingType":"T","attributes":{{{}}}}}"#,
            many.join(",")
        ));
        assert!(err.contains("at most 49"), "{err}");
        let err = problems(r#"{"name":"p","attributes":{"thingpress":"x"}}"#);
        assert!(err.contains("Thingpress's mark"), "{err}");
    }

    #[test]
    fn constant_thing_name_is_rejected() {
        assert!(problems(r#"{"name":"p","thingName":"fixed"}"#).contains("no placeholder"));
    }

    #[test]
    fn list_limits() {
        let groups: Vec<String> = (0..11).map(|i| format!("\"g{i}\"")).collect();
        let err = problems(&format!(
            r#"{{"name":"p","thingGroups":[{}]}}"#,
            groups.join(",")
        ));
        assert!(err.contains("thingGroups: 11 given"), "{err}");
    }

    #[test]
    fn bad_verifier_is_a_profile_error() {
        let err = problems(
            r#"{"name":"p","verifiers":["-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"]}"#,
        );
        assert!(err.contains("verifiers[0]"), "{err}");
    }

    #[test]
    fn real_verifiers_become_the_only_verifiers() {
        let dir = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../tests/fixtures/upstream/mchp_verifiers"
        );
        let pem = |name: &str| std::fs::read_to_string(format!("{dir}/{name}")).unwrap();
        let mut p = Profile::named("mchp");
        p.verifiers = vec![
            pem("MCHP_manifest_signer_5_Mar_6-2024_noExpiration.crt"),
            pem("MCHP_manifest_signer_4_Jul-18-2023_Jul-18-2026.crt"),
        ];
        p.validate().unwrap();
        assert_eq!(p.manifest_options().unwrap().verifiers.len(), 2);
        // No verifiers in the profile: Microchip's built-in signers.
        let builtin = Profile::named("mchp").manifest_options().unwrap().verifiers;
        assert!(builtin.len() >= 5, "{}", builtin.len());
    }

    #[test]
    fn manifest_options_follow_the_profile() {
        let p = Profile::from_json(br#"{"name":"p","supplier":"infineon","slot":"E0E2"}"#).unwrap();
        let options = p.manifest_options().unwrap();
        assert_eq!(options.supplier, Supplier::Infineon);
        assert_eq!(options.slot, Slot::E0E2);
    }
}
