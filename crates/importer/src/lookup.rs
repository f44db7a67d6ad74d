//! Reads of what IoT holds of a device, shared by activation and decommission: a missing
//! certificate or thing is `None` or empty, not an error.

use aws_sdk_iot::operation::describe_certificate::DescribeCertificateError;
use aws_sdk_iot::operation::list_principal_things::ListPrincipalThingsError;
use aws_sdk_iot::operation::list_thing_principals::ListThingPrincipalsError;
use aws_sdk_iot::types::CertificateStatus as IotCertificateStatus;

use serde::{Deserialize, Serialize};

use crate::ImportError;
use crate::apis::Api;
use crate::classify::classify;
use crate::register::{EntryResult, Importer, Outcome};

/// Listings read at most this many items: more things on one certificate, or certificates on
/// one thing, than this is not a device an import made.
pub(crate) const LIST_LIMIT: i32 = 50;

/// A device as a list (`activate`, `decommission`) names it, once Decorate prepared it: by its
/// certificate, its device id (and the thing the profile names from it), or both.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListedDevice {
    /// Position in the list, from 0.
    pub index: u64,
    /// The certificate's id, when the list gives it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_id: Option<String>,
    /// The device id, when the list gives it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_id: Option<String>,
    /// The thing's name from the profile's template, when the device id gives it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thing_name: Option<String>,
}

impl ListedDevice {
    /// The device's result line: what the list names, completed by what IoT holds (the
    /// certificate's id and ARN, the thing).
    pub(crate) fn result(
        &self,
        certificate: Option<(&str, &str)>,
        thing: Option<&str>,
        outcome: Outcome,
    ) -> EntryResult {
        let thing_name = thing
            .map(str::to_owned)
            .or_else(|| self.thing_name.clone())
            .unwrap_or_default();
        EntryResult {
            index: self.index,
            certificate_id: certificate
                .map(|(id, _)| id.to_owned())
                .or_else(|| self.certificate_id.clone())
                .unwrap_or_default(),
            device_id: self.device_id.clone().unwrap_or_else(|| thing_name.clone()),
            thing_name,
            outcome,
            certificate_arn: certificate.map(|(_, arn)| arn.to_owned()),
            actions: Vec::new(),
            error: None,
            message: None,
        }
    }
}

/// A certificate as IoT holds it.
pub(crate) struct HeldCertificate {
    pub(crate) id: String,
    pub(crate) arn: String,
    pub(crate) status: Option<IotCertificateStatus>,
}

impl HeldCertificate {
    /// Whether decommissioning sets it INACTIVE first: not if it is already, nor if it is
    /// REVOKED (final; AWS refuses to change it, and deletes it as it is).
    pub(crate) fn needs_deactivating(&self) -> bool {
        !matches!(
            self.status,
            Some(IotCertificateStatus::Inactive | IotCertificateStatus::Revoked)
        )
    }
}

/// The certificate id at the end of a certificate ARN (`arn:…:cert/<id>`).
pub(crate) fn certificate_id_of(arn: &str) -> Option<&str> {
    arn.rsplit_once(":cert/").map(|(_, id)| id)
}

impl Importer {
    /// DescribeCertificate: the certificate, or `None` if IoT holds none by that id.
    pub(crate) async fn held_certificate(
        &self,
        id: &str,
    ) -> Result<Option<HeldCertificate>, ImportError> {
        let described = self
            .call(Api::DescribeCertificate, || {
                self.client.describe_certificate().certificate_id(id).send()
            })
            .await;
        let out = match described {
            Ok(out) => out,
            Err(err) => {
                return match err.as_service_error() {
                    Some(DescribeCertificateError::ResourceNotFoundException(_)) => Ok(None),
                    _ => Err(classify(
                        "DescribeCertificate",
                        &format!("certificate {id}"),
                        &err,
                    )),
                };
            }
        };
        let description = out.certificate_description();
        let Some(arn) = description.and_then(|d| d.certificate_arn()) else {
            return Err(ImportError::AwsRejected(format!(
                "DescribeCertificate certificate {id}: IoT answered without a certificate ARN"
            )));
        };
        Ok(Some(HeldCertificate {
            id: id.to_owned(),
            arn: arn.to_owned(),
            status: description.and_then(|d| d.status()).cloned(),
        }))
    }

    /// ListThingPrincipals: the ids of the certificates attached to the thing (none if the
    /// thing is gone).
    pub(crate) async fn certificates_on(&self, thing: &str) -> Result<Vec<String>, ImportError> {
        let listed = self
            .call(Api::ListThingPrincipals, || {
                self.client
                    .list_thing_principals()
                    .thing_name(thing)
                    .max_results(LIST_LIMIT)
                    .send()
            })
            .await;
        match listed {
            Ok(out) => Ok(out
                .principals()
                .iter()
                .filter_map(|p| certificate_id_of(p).map(str::to_owned))
                .collect()),
            Err(err) => match err.as_service_error() {
                Some(ListThingPrincipalsError::ResourceNotFoundException(_)) => Ok(Vec::new()),
                _ => Err(classify(
                    "ListThingPrincipals",
                    &format!("thing {thing}"),
                    &err,
                )),
            },
        }
    }

    /// ListPrincipalThings: the things the certificate is attached to.
    pub(crate) async fn things_holding(&self, arn: &str) -> Result<Vec<String>, ImportError> {
        let listed = self
            .call(Api::ListPrincipalThings, || {
                self.client
                    .list_principal_things()
                    .principal(arn)
                    .max_results(LIST_LIMIT)
                    .send()
            })
            .await;
        match listed {
            Ok(out) => Ok(out.things().to_vec()),
            Err(err) => match err.as_service_error() {
                Some(ListPrincipalThingsError::ResourceNotFoundException(_)) => Ok(Vec::new()),
                _ => Err(classify(
                    "ListPrincipalThings",
                    &format!("certificate {arn}"),
                    &err,
                )),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_certificate_id_ends_a_certificate_arn() {
        let id = "ab".repeat(32);
        assert_eq!(
            certificate_id_of(&format!("arn:aws:iot:eu-west-1:123456789012:cert/{id}")),
            Some(id.as_str())
        );
        assert_eq!(
            certificate_id_of("arn:aws:iot:eu-west-1:123456789012:thing/x"),
            None
        );
    }
}
