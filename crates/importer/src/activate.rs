//! Activating one shipped device (`thingpress activate`): find its certificate and its thing,
//! merge the shipping list's attributes into the thing, add it to the profile's activation
//! groups, and set the certificate ACTIVE — last, so a device never connects before its thing is
//! complete, and a stop before the end leaves the certificate as it was. Every step is
//! idempotent; a certificate already ACTIVE is reported as such, a REVOKED one is never touched.

use std::collections::BTreeMap;

use aws_sdk_iot::operation::add_thing_to_thing_group::AddThingToThingGroupError;
use aws_sdk_iot::operation::update_certificate::UpdateCertificateError;
use aws_sdk_iot::operation::update_thing::UpdateThingError;
use aws_sdk_iot::types::{AttributePayload, CertificateStatus as IotCertificateStatus};
use serde::{Deserialize, Serialize};
use thingpress_manifest::ErrorName;

use crate::ImportError;
use crate::apis::Api;
use crate::classify::{classify, service_message};
use crate::lookup::ListedDevice;
use crate::register::{EntryResult, Importer, Outcome};

/// One shipping-list entry as Decorate prepared it for activation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Activation {
    /// The device the list names.
    #[serde(flatten)]
    pub device: ListedDevice,
    /// Attributes to merge into the thing.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub attributes: BTreeMap<String, String>,
    /// The profile's activation groups.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
}

/// The device as IoT knows it.
struct Device {
    certificate_id: String,
    arn: String,
    status: Option<IotCertificateStatus>,
    thing_name: String,
}

/// The result line of an activation: what the entry names, completed by what IoT says.
fn result(entry: &Activation, device: Option<&Device>, outcome: Outcome) -> EntryResult {
    entry.device.result(
        device.map(|d| (d.certificate_id.as_str(), d.arn.as_str())),
        device.map(|d| d.thing_name.as_str()),
        outcome,
    )
}

fn rejected(
    entry: &Activation,
    device: Option<&Device>,
    error: ErrorName,
    message: String,
) -> EntryResult {
    EntryResult {
        error: Some(error),
        message: Some(message),
        ..result(entry, device, Outcome::Rejected)
    }
}

/// `Ok(Err(result))` is the entry's rejection; `Err` ends the task.
type Step<T> = Result<Result<T, EntryResult>, ImportError>;

impl Importer {
    /// Activates one shipped device; per-entry problems are an `Ok` rejected result.
    pub async fn activate(&self, entry: &Activation) -> Result<EntryResult, ImportError> {
        let device = match self.find_device(entry).await? {
            Ok(device) => device,
            Err(rejection) => return Ok(rejection),
        };
        let already = match device.status {
            Some(IotCertificateStatus::Active) => true,
            Some(IotCertificateStatus::Revoked) => {
                return Ok(rejected(
                    entry,
                    Some(&device),
                    ErrorName::CertificateRevoked,
                    format!(
                        "certificate {} is REVOKED; a revoked certificate is never activated",
                        device.certificate_id
                    ),
                ));
            }
            Some(IotCertificateStatus::PendingTransfer) => {
                return Ok(rejected(
                    entry,
                    Some(&device),
                    ErrorName::RejectedByIot,
                    format!(
                        "certificate {} is PENDING_TRANSFER to another account",
                        device.certificate_id
                    ),
                ));
            }
            _ => false,
        };
        if !entry.attributes.is_empty()
            && let Err(rejection) = self.merge_attributes(entry, &device).await?
        {
            return Ok(rejection);
        }
        for group in &entry.groups {
            if let Err(rejection) = self.join_group(entry, &device, group).await? {
                return Ok(rejection);
            }
        }
        if already {
            return Ok(result(entry, Some(&device), Outcome::AlreadyActive));
        }
        if let Err(rejection) = self.set_active(entry, &device).await? {
            return Ok(rejection);
        }
        tracing::debug!(index = entry.device.index, thing = %device.thing_name, "device activated");
        Ok(result(entry, Some(&device), Outcome::Activated))
    }

    /// The certificate and the thing: from the certificate id when the list gives it (its one
    /// thing through ListPrincipalThings, which must be the device's thing if the list names
    /// that too), else from the thing (its one certificate through ListThingPrincipals).
    async fn find_device(&self, entry: &Activation) -> Step<Device> {
        match (&entry.device.certificate_id, &entry.device.thing_name) {
            (Some(id), thing) => {
                let (arn, status) = match self.describe(entry, id).await? {
                    Ok(found) => found,
                    Err(rejection) => return Ok(Err(rejection)),
                };
                let things = self.things_holding(&arn).await?;
                let device = |thing_name: String| Device {
                    certificate_id: id.clone(),
                    arn: arn.clone(),
                    status: status.clone(),
                    thing_name,
                };
                match (things.as_slice(), thing) {
                    ([one], Some(named)) if one != named => Ok(Err(rejected(
                        entry,
                        Some(&device(one.clone())),
                        ErrorName::UnknownDevice,
                        format!("certificate {id} is attached to thing {one}, not to {named}"),
                    ))),
                    ([one], _) => Ok(Ok(device(one.clone()))),
                    ([], _) => Ok(Err(rejected(
                        entry,
                        Some(&device(String::new())),
                        ErrorName::UnknownDevice,
                        format!("certificate {id} is attached to no thing"),
                    ))),
                    (_, _) => Ok(Err(rejected(
                        entry,
                        Some(&device(String::new())),
                        ErrorName::AmbiguousDevice,
                        format!(
                            "certificate {id} is attached to several things: {}",
                            things.join(", ")
                        ),
                    ))),
                }
            }
            (None, Some(thing)) => {
                let id = match self.certificate_of(entry, thing).await? {
                    Ok(id) => id,
                    Err(rejection) => return Ok(Err(rejection)),
                };
                let (arn, status) = match self.describe(entry, &id).await? {
                    Ok(found) => found,
                    Err(rejection) => return Ok(Err(rejection)),
                };
                Ok(Ok(Device {
                    certificate_id: id,
                    arn,
                    status,
                    thing_name: thing.clone(),
                }))
            }
            (None, None) => Ok(Err(rejected(
                entry,
                None,
                ErrorName::MissingIdentity,
                "the entry names neither a certificate nor a thing".into(),
            ))),
        }
    }

    /// DescribeCertificate: the ARN and status, or UnknownDevice.
    async fn describe(
        &self,
        entry: &Activation,
        id: &str,
    ) -> Step<(String, Option<IotCertificateStatus>)> {
        Ok(match self.held_certificate(id).await? {
            Some(cert) => Ok((cert.arn, cert.status)),
            None => Err(rejected(
                entry,
                None,
                ErrorName::UnknownDevice,
                format!("IoT holds no certificate {id}"),
            )),
        })
    }

    /// ListThingPrincipals: the thing's one certificate id, or UnknownDevice / AmbiguousDevice.
    async fn certificate_of(&self, entry: &Activation, thing: &str) -> Step<String> {
        let certificates = self.certificates_on(thing).await?;
        match certificates.as_slice() {
            [one] => Ok(Ok(one.clone())),
            [] => Ok(Err(rejected(
                entry,
                None,
                ErrorName::UnknownDevice,
                format!("IoT holds no thing {thing} with a certificate attached"),
            ))),
            several => Ok(Err(rejected(
                entry,
                None,
                ErrorName::AmbiguousDevice,
                format!(
                    "thing {thing} has {} certificates attached ({}); name the certificate in the list",
                    several.len(),
                    several.join(", ")
                ),
            ))),
        }
    }

    /// UpdateThing with `merge`: the list's attributes added to (or replacing) the thing's.
    async fn merge_attributes(&self, entry: &Activation, device: &Device) -> Step<()> {
        let payload = AttributePayload::builder()
            .set_attributes(Some(entry.attributes.clone().into_iter().collect()))
            .merge(true)
            .build();
        let updated = self
            .call(Api::UpdateThing, || {
                self.client
                    .update_thing()
                    .thing_name(&device.thing_name)
                    .attribute_payload(payload.clone())
                    .send()
            })
            .await;
        let Err(err) = updated else {
            return Ok(Ok(()));
        };
        let rejection = |error: ErrorName, why: String| {
            Ok(Err(rejected(
                entry,
                Some(device),
                error,
                format!("UpdateThing {}: {why}", device.thing_name),
            )))
        };
        match err.as_service_error() {
            Some(UpdateThingError::ResourceNotFoundException(e)) => {
                rejection(ErrorName::UnknownDevice, service_message(e))
            }
            Some(UpdateThingError::InvalidRequestException(e)) => {
                rejection(ErrorName::RejectedByIot, service_message(e))
            }
            _ => Err(classify(
                "UpdateThing",
                &format!("thing {}", device.thing_name),
                &err,
            )),
        }
    }

    /// AddThingToThingGroup for one activation group.
    async fn join_group(&self, entry: &Activation, device: &Device, group: &str) -> Step<()> {
        let added = self
            .call(Api::AddThingToThingGroup, || {
                self.client
                    .add_thing_to_thing_group()
                    .thing_group_name(group)
                    .thing_name(&device.thing_name)
                    .send()
            })
            .await;
        let Err(err) = added else {
            return Ok(Ok(()));
        };
        match err.as_service_error() {
            Some(AddThingToThingGroupError::InvalidRequestException(e)) => Ok(Err(rejected(
                entry,
                Some(device),
                ErrorName::RejectedByIot,
                format!("AddThingToThingGroup {group}: {}", service_message(e)),
            ))),
            _ => Err(classify(
                "AddThingToThingGroup",
                &format!("thing group {group}"),
                &err,
            )),
        }
    }

    /// UpdateCertificate to ACTIVE.
    async fn set_active(&self, entry: &Activation, device: &Device) -> Step<()> {
        let id = &device.certificate_id;
        let updated = self
            .call(Api::UpdateCertificate, || {
                self.client
                    .update_certificate()
                    .certificate_id(id)
                    .new_status(IotCertificateStatus::Active)
                    .send()
            })
            .await;
        let Err(err) = updated else {
            return Ok(Ok(()));
        };
        let rejection = |error: ErrorName, why: String| {
            Ok(Err(rejected(
                entry,
                Some(device),
                error,
                format!("UpdateCertificate {id}: {why}"),
            )))
        };
        match err.as_service_error() {
            Some(UpdateCertificateError::ResourceNotFoundException(e)) => {
                rejection(ErrorName::UnknownDevice, service_message(e))
            }
            // Revoked between the describe and now, or a state IoT will not leave.
            Some(UpdateCertificateError::CertificateStateException(e)) => {
                rejection(ErrorName::RejectedByIot, service_message(e))
            }
            Some(UpdateCertificateError::InvalidRequestException(e)) => {
                rejection(ErrorName::RejectedByIot, service_message(e))
            }
            _ => Err(classify(
                "UpdateCertificate",
                &format!("certificate {id}"),
                &err,
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn activations_round_trip_and_leave_out_what_the_list_did_not_give() {
        let a = Activation {
            device: ListedDevice {
                index: 2,
                certificate_id: None,
                device_id: Some("d".into()),
                thing_name: Some("dev-d".into()),
            },
            attributes: BTreeMap::new(),
            groups: vec!["shipped".into()],
        };
        let json = serde_json::to_value(&a).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"index": 2, "deviceId": "d", "thingName": "dev-d", "groups": ["shipped"]})
        );
        assert_eq!(serde_json::from_value::<Activation>(json).unwrap(), a);
    }
}
