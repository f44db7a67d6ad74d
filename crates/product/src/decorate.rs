//! Applying a profile to accepted manifest entries.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use thingpress_manifest::{Accepted, ErrorName, Rejected};

use crate::names;
use crate::profile::{
    CertificateStatus, MARK_ATTRIBUTE, OnThingConflict, Profile, ThingPrincipalType,
};
use crate::template::Template;

/// An entry ready for registration: the certificate and everything IoT should know about its thing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Decorated {
    /// Position in the manifest, from 0.
    pub index: u64,
    /// Lowercase hex SHA-256 of the certificate DER (the AWS IoT certificate id).
    pub certificate_id: String,
    /// The device certificate, PEM.
    pub certificate_pem: String,
    /// The supplier's device id.
    pub device_id: String,
    /// The rendered thing name.
    pub thing_name: String,
    /// The thing type, if the profile sets one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thing_type: Option<String>,
    /// Rendered thing attributes.
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
    /// Policies to attach to the certificate.
    #[serde(default)]
    pub policies: Vec<String>,
    /// Thing groups the thing joins.
    #[serde(default)]
    pub thing_groups: Vec<String>,
    /// The status a newly registered certificate gets.
    pub certificate_status: CertificateStatus,
    /// What to do when the thing exists with another configuration.
    pub on_thing_conflict: OnThingConflict,
    /// How the certificate is attached to the thing.
    #[serde(default, skip_serializing_if = "ThingPrincipalType::is_default")]
    pub thing_principal_type: ThingPrincipalType,
}

/// A profile with its templates parsed once, for decorating many entries.
#[derive(Debug, Clone)]
pub struct Decorator {
    profile: Profile,
    thing_name: Template,
    attributes: Vec<(String, Template)>,
}

impl Decorator {
    /// Parses the profile's templates; the error names the template and the syntax problem.
    pub fn new(profile: &Profile) -> Result<Decorator, (ErrorName, String)> {
        let thing_name = Template::parse(&profile.thing_name).map_err(|e| {
            (
                ErrorName::InvalidThingName,
                format!(
                    "profile {:?}: thingName {:?}: {e}",
                    profile.name, profile.thing_name
                ),
            )
        })?;
        let attributes = profile
            .attributes
            .iter()
            .map(|(name, value)| {
                Template::parse(value)
                    .map(|template| (name.clone(), template))
                    .map_err(|e| {
                        (
                            ErrorName::InvalidAttribute,
                            format!(
                                "profile {:?}: attributes.{name} {value:?}: {e}",
                                profile.name
                            ),
                        )
                    })
            })
            .collect::<Result<_, _>>()?;
        Ok(Decorator {
            profile: profile.clone(),
            thing_name,
            attributes,
        })
    }

    /// The profile this decorator applies.
    pub fn profile(&self) -> &Profile {
        &self.profile
    }

    /// Renders the thing name and attributes for one entry; a missing field or an invalid
    /// result rejects the entry, naming the template and the field.
    pub fn decorate(&self, entry: &Accepted) -> Result<Decorated, Rejected> {
        let reject = |error: ErrorName, message: String| Rejected {
            index: entry.index,
            error,
            message,
            device_id: Some(entry.device_id.clone()),
        };
        let thing_name = self
            .thing_name
            .render(entry)
            .map_err(|e| reject(ErrorName::InvalidThingName, format!("thingName: {e}")))?;
        names::check_thing_name(&thing_name).map_err(|e| {
            reject(
                ErrorName::InvalidThingName,
                format!(
                    "thingName template {:?} gives {:?}: {e}",
                    self.thing_name.source(),
                    thing_name
                ),
            )
        })?;
        let mut attributes = BTreeMap::new();
        for (name, template) in &self.attributes {
            let value = template.render(entry).map_err(|e| {
                reject(
                    ErrorName::InvalidAttribute,
                    format!("attributes.{name}: {e}"),
                )
            })?;
            names::check_attribute_value(&value).map_err(|e| {
                reject(
                    ErrorName::InvalidAttribute,
                    format!(
                        "attributes.{name} template {:?} gives {value:?}: {e}",
                        template.source()
                    ),
                )
            })?;
            attributes.insert(name.clone(), value);
        }
        attributes.insert(MARK_ATTRIBUTE.to_owned(), self.profile.name.clone());
        Ok(Decorated {
            index: entry.index,
            certificate_id: entry.certificate_id.clone(),
            certificate_pem: entry.certificate_pem.clone(),
            device_id: entry.device_id.clone(),
            thing_name,
            thing_type: self.profile.thing_type.clone(),
            attributes,
            policies: self.profile.policies.clone(),
            thing_groups: self.profile.thing_groups.clone(),
            certificate_status: self.profile.certificate_status,
            on_thing_conflict: self.profile.on_thing_conflict,
            thing_principal_type: self.profile.thing_principal_type,
        })
    }
}

impl Decorator {
    /// The thing name of a device a shipping list names by id (and perhaps by certificate):
    /// the thing-name template rendered from those alone. `Err` says why it cannot be: the
    /// template needs a manifest field the list does not carry, or gives an invalid name.
    pub fn thing_name_of_device(
        &self,
        device_id: &str,
        certificate_id: Option<&str>,
    ) -> Result<String, String> {
        let template = self.thing_name.source();
        if let Some(field) = self.thing_name.fields().find(|field| match *field {
            "deviceId" => false,
            "certificateId" => certificate_id.is_none(),
            _ => true,
        }) {
            return Err(format!(
                "thingName template {template:?} needs {{{field}}}, which a shipping list does not give"
            ));
        }
        let entry = Accepted {
            index: 0,
            certificate_id: certificate_id.unwrap_or_default().to_owned(),
            certificate_pem: String::new(),
            chain: Vec::new(),
            device_id: device_id.to_owned(),
            cn: None,
            fields: BTreeMap::new(),
        };
        let name = self.thing_name.render(&entry)?;
        names::check_thing_name(&name)
            .map_err(|e| format!("thingName template {template:?} gives {name:?}: {e}"))?;
        Ok(name)
    }
}

/// Decorates one entry (parses the templates each time; use [`Decorator`] for many entries).
pub fn decorate(profile: &Profile, entry: &Accepted) -> Result<Decorated, Rejected> {
    let decorator = Decorator::new(profile).map_err(|(error, message)| Rejected {
        index: entry.index,
        error,
        message,
        device_id: Some(entry.device_id.clone()),
    })?;
    decorator.decorate(entry)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn entry(device_id: &str) -> Accepted {
        Accepted {
            index: 3,
            certificate_id: "cd".repeat(32),
            certificate_pem: "-----BEGIN CERTIFICATE-----\n...".into(),
            chain: vec!["issuer".into()],
            device_id: device_id.into(),
            cn: Some("sn-1".into()),
            fields: BTreeMap::from([
                ("partNumber".to_owned(), "ATECC608C-TNGTLSU".to_owned()),
                ("groupId".to_owned(), "xyz 1".to_owned()),
            ]),
        }
    }

    fn profile() -> Profile {
        let mut p = Profile::named("widget");
        p.thing_name = "{partNumber}_{deviceId}".into();
        p.thing_type = Some("Sensor".into());
        p.thing_groups = vec!["fleet".into()];
        p.policies = vec!["DevicePolicy".into(), "Telemetry".into()];
        p.attributes = BTreeMap::from([("part".to_owned(), "{partNumber}".to_owned())]);
        p.certificate_status = CertificateStatus::Inactive;
        p.on_thing_conflict = OnThingConflict::Update;
        p.thing_principal_type = ThingPrincipalType::ExclusiveThing;
        p
    }

    #[test]
    fn a_device_id_alone_names_its_thing_only_when_the_template_needs_nothing_else() {
        let mut p = Profile::named("widget");
        p.thing_name = "dev-{deviceId}".into();
        let d = Decorator::new(&p).unwrap();
        assert_eq!(d.thing_name_of_device("0123", None).unwrap(), "dev-0123");
        assert!(
            d.thing_name_of_device("a b", None)
                .unwrap_err()
                .contains("gives \"dev-a b\"")
        );

        p.thing_name = "{deviceId}-{certificateId}".into();
        let d = Decorator::new(&p).unwrap();
        let id = "ab".repeat(32);
        assert_eq!(
            d.thing_name_of_device("x", Some(&id)).unwrap(),
            format!("x-{id}")
        );
        assert!(
            d.thing_name_of_device("x", None)
                .unwrap_err()
                .contains("needs {certificateId}")
        );

        let d = Decorator::new(&profile()).unwrap();
        assert!(
            d.thing_name_of_device("x", Some(&id))
                .unwrap_err()
                .contains("needs {partNumber}")
        );
    }

    #[test]
    fn decorates_an_entry() {
        let d = decorate(&profile(), &entry("0123ab")).unwrap();
        assert_eq!(d.index, 3);
        assert_eq!(d.thing_name, "ATECC608C-TNGTLSU_0123ab");
        assert_eq!(d.thing_type.as_deref(), Some("Sensor"));
        assert_eq!(d.attributes["part"], "ATECC608C-TNGTLSU");
        assert_eq!(d.policies, ["DevicePolicy", "Telemetry"]);
        assert_eq!(d.thing_groups, ["fleet"]);
        assert_eq!(d.certificate_status, CertificateStatus::Inactive);
        assert_eq!(d.on_thing_conflict, OnThingConflict::Update);
        let json = serde_json::to_value(&d).unwrap();
        assert_eq!(json["thingName"], "ATECC608C-TNGTLSU_0123ab");
        assert_eq!(json["certificateStatus"], "INACTIVE");
        assert_eq!(json["onThingConflict"], "update");
        assert_eq!(json["thingPrincipalType"], "EXCLUSIVE_THING");
        let back: Decorated = serde_json::from_value(json).unwrap();
        assert_eq!(back, d);
    }

    #[test]
    fn a_non_exclusive_attachment_is_left_out_and_read_back_as_the_default() {
        let mut p = profile();
        p.thing_principal_type = ThingPrincipalType::NonExclusiveThing;
        let d = decorate(&p, &entry("0123ab")).unwrap();
        let mut json = serde_json::to_value(&d).unwrap();
        assert!(json.get("thingPrincipalType").is_none(), "{json}");
        // Lines decorated before the option existed read as AWS's default.
        json.as_object_mut().unwrap().remove("thingPrincipalType");
        let back: Decorated = serde_json::from_value(json).unwrap();
        assert_eq!(
            back.thing_principal_type,
            ThingPrincipalType::NonExclusiveThing
        );
    }

    #[test]
    fn invalid_thing_name_rejects_the_entry() {
        let r = decorate(&profile(), &entry("dev id")).unwrap_err();
        assert_eq!(r.error, ErrorName::InvalidThingName);
        assert_eq!(r.index, 3);
        assert_eq!(r.device_id.as_deref(), Some("dev id"));
        assert!(
            r.message.contains("{partNumber}_{deviceId}") && r.message.contains("' '"),
            "{}",
            r.message
        );

        let long = "a".repeat(120);
        let r = decorate(&profile(), &entry(&long)).unwrap_err();
        assert_eq!(r.error, ErrorName::InvalidThingName);
    }

    #[test]
    fn missing_field_rejects_the_entry() {
        let mut p = profile();
        p.thing_name = "{model}-{deviceId}".into();
        let r = decorate(&p, &entry("abc")).unwrap_err();
        assert_eq!(r.error, ErrorName::InvalidThingName);
        assert!(r.message.contains("\"model\""), "{}", r.message);
    }

    #[test]
    fn invalid_attribute_value_rejects_the_entry() {
        let mut p = profile();
        p.attributes.insert("group".into(), "{groupId}".into());
        let r = decorate(&p, &entry("abc")).unwrap_err();
        assert_eq!(r.error, ErrorName::InvalidAttribute);
        assert!(
            r.message.contains("attributes.group") && r.message.contains("xyz 1"),
            "{}",
            r.message
        );

        p.attributes.insert("group".into(), "{nope}".into());
        let r = decorate(&p, &entry("abc")).unwrap_err();
        assert_eq!(r.error, ErrorName::InvalidAttribute);
    }

    #[test]
    fn broken_template_in_an_unvalidated_profile_rejects_not_panics() {
        let mut p = profile();
        p.thing_name = "{deviceId".into();
        assert_eq!(
            decorate(&p, &entry("a")).unwrap_err().error,
            ErrorName::InvalidThingName
        );
    }

    proptest! {
        #[test]
        fn render_never_panics(template in ".{0,40}", device in ".{0,40}", key in ".{0,10}", value in ".{0,40}") {
            let mut e = entry(&device);
            e.fields.insert(key, value);
            if let Ok(t) = Template::parse(&template) {
                let _ = t.render(&e);
            }
        }

        #[test]
        fn decorate_never_panics_and_accepts_only_valid_names(
            device in ".{0,140}", part in ".{0,40}", group in "\\PC{0,40}"
        ) {
            let mut e = entry(&device);
            e.fields.insert("partNumber".into(), part);
            e.fields.insert("groupId".into(), group);
            let mut p = profile();
            p.attributes.insert("group".into(), "{groupId}".into());
            match decorate(&p, &e) {
                Ok(d) => {
                    prop_assert!(names::check_thing_name(&d.thing_name).is_ok());
                    for v in d.attributes.values() {
                        prop_assert!(names::check_attribute_value(v).is_ok());
                    }
                }
                Err(r) => prop_assert!(matches!(r.error, ErrorName::InvalidThingName | ErrorName::InvalidAttribute)),
            }
        }
    }
}
