//! Decommissioning one device (`thingpress decommission`): undo what an import made, and only
//! that. Every attempt reads IoT first and plans from what it finds, so a replay after a crash
//! plans only what is left and nothing is done twice. Before anything changes the device must be
//! Thingpress's: its thing carries the profile's mark, its certificate is attached to that thing
//! alone, and no policy but the profile's is attached to the certificate; otherwise the entry is
//! reported and left as it is. A dry run stops after the plan.
//!
//! The order: the profile's policies, the profile's groups, the attachment, the certificate
//! (INACTIVE, then deleted), the thing. After DetachThingPrincipal, AWS refuses DeleteCertificate
//! and DeleteThing for a few seconds ("it might take several seconds for the detachment to
//! propagate"); those two are retried until it has.

use std::collections::BTreeMap;
use std::time::Duration;

use aws_sdk_iot::config::http::HttpResponse;
use aws_sdk_iot::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_iot::operation::delete_certificate::DeleteCertificateError;
use aws_sdk_iot::operation::delete_thing::DeleteThingError;
use aws_sdk_iot::operation::describe_thing::DescribeThingError;
use aws_sdk_iot::operation::list_attached_policies::ListAttachedPoliciesError;
use aws_sdk_iot::operation::list_thing_groups_for_thing::ListThingGroupsForThingError;
use aws_sdk_iot::types::CertificateStatus as IotCertificateStatus;
use serde::{Deserialize, Serialize};
use thingpress_manifest::ErrorName;
use thingpress_product::MARK_ATTRIBUTE;

use crate::ImportError;
use crate::apis::Api;
use crate::classify::classify;
use crate::lookup::{HeldCertificate, LIST_LIMIT, ListedDevice};
use crate::register::{EntryResult, Importer, Outcome};

/// How long DeleteCertificate and DeleteThing are retried while a detachment propagates.
pub const DETACH_PROPAGATION_PATIENCE: Duration = Duration::from_secs(30);

/// One list entry as Decorate prepared it for decommissioning.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Removal {
    /// The device the list names.
    #[serde(flatten)]
    pub device: ListedDevice,
    /// The profile's name: the value of the mark the thing must carry.
    pub mark: String,
    /// The profile's policies (the only ones detached).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub policies: Vec<String>,
    /// The profile's thing groups and activation groups (the only ones left).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    /// Change IoT; without it, plan only (the dry run).
    #[serde(default)]
    pub execute: bool,
}

/// One change decommissioning makes, as results and reports count them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Action {
    /// DetachPolicy of one profile policy from the certificate.
    DetachPolicy,
    /// RemoveThingFromThingGroup of one profile group.
    RemoveFromGroup,
    /// DetachThingPrincipal of the certificate from the thing.
    DetachCertificate,
    /// UpdateCertificate to INACTIVE.
    DeactivateCertificate,
    /// DeleteCertificate.
    DeleteCertificate,
    /// DeleteThing.
    DeleteThing,
}

impl Action {
    /// Every action, in the order they are made.
    pub const ALL: [Action; 6] = [
        Action::DetachPolicy,
        Action::RemoveFromGroup,
        Action::DetachCertificate,
        Action::DeactivateCertificate,
        Action::DeleteCertificate,
        Action::DeleteThing,
    ];

    /// How people read it in counts.
    pub fn describe(self) -> &'static str {
        match self {
            Action::DetachPolicy => "policies detached",
            Action::RemoveFromGroup => "thing-group memberships removed",
            Action::DetachCertificate => "certificates detached from things",
            Action::DeactivateCertificate => "certificates set INACTIVE",
            Action::DeleteCertificate => "certificates deleted",
            Action::DeleteThing => "things deleted",
        }
    }
}

/// What IoT holds of the device, and what removing it takes.
#[derive(Default)]
struct Plan {
    certificate: Option<HeldCertificate>,
    thing: Option<String>,
    policies: Vec<String>,
    groups: Vec<String>,
    attached: bool,
}

impl Plan {
    fn actions(&self) -> Vec<Action> {
        let mut actions = vec![Action::DetachPolicy; self.policies.len()];
        actions.extend(vec![Action::RemoveFromGroup; self.groups.len()]);
        if self.attached {
            actions.push(Action::DetachCertificate);
        }
        if let Some(cert) = &self.certificate {
            if cert.needs_deactivating() {
                actions.push(Action::DeactivateCertificate);
            }
            actions.push(Action::DeleteCertificate);
        }
        if self.thing.is_some() {
            actions.push(Action::DeleteThing);
        }
        actions
    }
}

/// `Ok(Err(why))` leaves the device alone and says why; `Err` ends the task.
type Check<T> = Result<Result<T, (ErrorName, String)>, ImportError>;

impl Importer {
    /// Decommissions one device (or plans it, for a dry run); per-entry refusals are an `Ok`
    /// rejected result.
    pub async fn decommission(&self, entry: &Removal) -> Result<EntryResult, ImportError> {
        let mut plan = Plan::default();
        if let Err((error, message)) = self.plan_removal(entry, &mut plan).await? {
            let mut result = removal_result(entry, &plan, Outcome::Rejected, Vec::new());
            result.error = Some(error);
            result.message = Some(message);
            return Ok(result);
        }
        let actions = plan.actions();
        let outcome = match (actions.is_empty(), entry.execute) {
            (true, _) => Outcome::AlreadyRemoved,
            (false, false) => Outcome::WouldRemove,
            (false, true) => {
                self.remove(&plan).await?;
                tracing::debug!(index = entry.device.index, "device decommissioned");
                Outcome::Removed
            }
        };
        Ok(removal_result(entry, &plan, outcome, actions))
    }

    /// Reads what IoT holds of the device into `plan`, and checks that it is Thingpress's.
    async fn plan_removal(&self, entry: &Removal, plan: &mut Plan) -> Check<()> {
        let mut thing_certificates = match &entry.device.thing_name {
            Some(thing) => Some(self.certificates_on(thing).await?),
            None => None,
        };
        let certificate_id = match (&entry.device.certificate_id, &thing_certificates) {
            (Some(id), _) => Some(id.clone()),
            (None, Some(ids)) => match ids.as_slice() {
                [] => None,
                [one] => Some(one.clone()),
                several => {
                    return Ok(Err((
                        ErrorName::AmbiguousDevice,
                        format!(
                            "thing {} has {} certificates attached ({}); name the certificate in the list",
                            entry.device.thing_name.as_deref().unwrap_or_default(),
                            several.len(),
                            join(several)
                        ),
                    )));
                }
            },
            (None, None) => {
                return Ok(Err((
                    ErrorName::MissingIdentity,
                    "the entry names neither a certificate nor a thing".into(),
                )));
            }
        };
        if let Some(id) = &certificate_id {
            plan.certificate = self.held_certificate(id).await?;
        }
        plan.thing = entry.device.thing_name.clone();
        if let Some(cert) = &plan.certificate {
            if cert.status == Some(IotCertificateStatus::PendingTransfer) {
                return Ok(Err((
                    ErrorName::ForeignAttachment,
                    format!(
                        "certificate {} is PENDING_TRANSFER to another account; left alone",
                        cert.id
                    ),
                )));
            }
            let things = self.things_holding(&cert.arn).await?;
            match (things.as_slice(), &plan.thing) {
                ([], _) => {}
                ([one], None) => plan.thing = Some(one.clone()),
                ([one], Some(named)) if one == named => {}
                (others, named) => {
                    return Ok(Err((
                        ErrorName::ForeignAttachment,
                        format!(
                            "certificate {} is attached to {}; left alone",
                            cert.id,
                            match named {
                                Some(named) => format!("{} (the list names {named})", join(others)),
                                None => format!("several things: {}", join(others)),
                            }
                        ),
                    )));
                }
            }
            plan.attached = !things.is_empty();
            let attached = self.policies_of(&cert.arn).await?;
            let foreign: Vec<&String> = attached
                .iter()
                .filter(|p| !entry.policies.contains(p))
                .collect();
            if !foreign.is_empty() {
                return Ok(Err((
                    ErrorName::ForeignAttachment,
                    format!(
                        "certificate {} has policies the profile does not attach ({}); left alone",
                        cert.id,
                        join(&foreign)
                    ),
                )));
            }
            plan.policies = attached;
        }
        let Some(thing) = plan.thing.clone() else {
            return Ok(Ok(()));
        };
        let mark = match self.mark_of(&thing).await? {
            None => {
                // Gone already (a crash after its deletion, or never made).
                plan.thing = None;
                return Ok(Ok(()));
            }
            Some(mark) => mark,
        };
        if mark.as_deref() != Some(entry.mark.as_str()) {
            return Ok(Err((
                ErrorName::NotThingpress,
                match mark {
                    None => format!(
                        "thing {thing} has no {MARK_ATTRIBUTE} attribute: Thingpress did not import it; left alone"
                    ),
                    Some(other) => format!(
                        "thing {thing} was imported with profile {other}, not {}; left alone",
                        entry.mark
                    ),
                },
            )));
        }
        // Another certificate on the thing would make DeleteThing fail after the rest is gone.
        let on_thing = match thing_certificates.take() {
            Some(ids) => ids,
            None => self.certificates_on(&thing).await?,
        };
        let ours = plan.certificate.as_ref().map(|c| c.id.as_str());
        let others: Vec<&String> = on_thing
            .iter()
            .filter(|id| Some(id.as_str()) != ours)
            .collect();
        if !others.is_empty() {
            return Ok(Err((
                ErrorName::ForeignAttachment,
                format!(
                    "thing {thing} has other certificates attached ({}); left alone",
                    join(&others)
                ),
            )));
        }
        plan.groups = self
            .groups_of(&thing)
            .await?
            .into_iter()
            .filter(|g| entry.groups.contains(g))
            .collect();
        Ok(Ok(()))
    }

    /// Makes the plan's changes, in order. Each is idempotent: a replay re-plans first.
    async fn remove(&self, plan: &Plan) -> Result<(), ImportError> {
        let thing = plan.thing.as_deref();
        if let Some(cert) = &plan.certificate {
            for policy in &plan.policies {
                let done = self
                    .call(Api::DetachPolicy, || {
                        self.client
                            .detach_policy()
                            .policy_name(policy)
                            .target(&cert.arn)
                            .send()
                    })
                    .await;
                detached(done, "DetachPolicy", &format!("policy {policy}"))?;
            }
        }
        if let Some(thing) = thing {
            for group in &plan.groups {
                let done = self
                    .call(Api::RemoveThingFromThingGroup, || {
                        self.client
                            .remove_thing_from_thing_group()
                            .thing_group_name(group)
                            .thing_name(thing)
                            .send()
                    })
                    .await;
                detached(
                    done,
                    "RemoveThingFromThingGroup",
                    &format!("thing {thing} from group {group}"),
                )?;
            }
        }
        if let (Some(cert), Some(thing), true) = (&plan.certificate, thing, plan.attached) {
            let done = self
                .call(Api::DetachThingPrincipal, || {
                    self.client
                        .detach_thing_principal()
                        .thing_name(thing)
                        .principal(&cert.arn)
                        .send()
                })
                .await;
            detached(done, "DetachThingPrincipal", &format!("thing {thing}"))?;
        }
        if let Some(cert) = &plan.certificate {
            if cert.needs_deactivating() {
                self.call(Api::UpdateCertificate, || {
                    self.client
                        .update_certificate()
                        .certificate_id(&cert.id)
                        .new_status(IotCertificateStatus::Inactive)
                        .send()
                })
                .await
                .map_err(|e| {
                    classify("UpdateCertificate", &format!("certificate {}", cert.id), &e)
                })?;
            }
            self.delete_certificate(&cert.id).await?;
        }
        if let Some(thing) = thing {
            self.delete_thing(thing).await?;
        }
        Ok(())
    }

    /// DeleteCertificate, waiting out the detachment's propagation; gone already is done.
    async fn delete_certificate(&self, id: &str) -> Result<(), ImportError> {
        let started = tokio::time::Instant::now();
        loop {
            let deleted = self
                .call(Api::DeleteCertificate, || {
                    self.client.delete_certificate().certificate_id(id).send()
                })
                .await;
            let Err(err) = deleted else { return Ok(()) };
            match err.as_service_error() {
                Some(DeleteCertificateError::ResourceNotFoundException(_)) => return Ok(()),
                Some(DeleteCertificateError::DeleteConflictException(_))
                    if started.elapsed() < DETACH_PROPAGATION_PATIENCE =>
                {
                    tokio::time::sleep(PROPAGATION_POLL).await;
                }
                _ => {
                    return Err(classify(
                        "DeleteCertificate",
                        &format!("certificate {id}"),
                        &err,
                    ));
                }
            }
        }
    }

    /// DeleteThing, waiting out the detachment's propagation (a missing thing is a success).
    async fn delete_thing(&self, thing: &str) -> Result<(), ImportError> {
        let started = tokio::time::Instant::now();
        loop {
            let deleted = self
                .call(Api::DeleteThing, || {
                    self.client.delete_thing().thing_name(thing).send()
                })
                .await;
            let Err(err) = deleted else { return Ok(()) };
            match err.as_service_error() {
                Some(DeleteThingError::ResourceNotFoundException(_)) => return Ok(()),
                Some(DeleteThingError::InvalidRequestException(_))
                    if started.elapsed() < DETACH_PROPAGATION_PATIENCE =>
                {
                    tokio::time::sleep(PROPAGATION_POLL).await;
                }
                _ => return Err(classify("DeleteThing", &format!("thing {thing}"), &err)),
            }
        }
    }

    /// ListAttachedPolicies: the names of the policies attached to the certificate itself.
    async fn policies_of(&self, arn: &str) -> Result<Vec<String>, ImportError> {
        let listed = self
            .call(Api::ListAttachedPolicies, || {
                self.client
                    .list_attached_policies()
                    .target(arn)
                    .recursive(false)
                    .page_size(LIST_LIMIT)
                    .send()
            })
            .await;
        match listed {
            Ok(out) => Ok(out
                .policies()
                .iter()
                .filter_map(|p| p.policy_name().map(str::to_owned))
                .collect()),
            Err(err) => match err.as_service_error() {
                Some(ListAttachedPoliciesError::ResourceNotFoundException(_)) => Ok(Vec::new()),
                _ => Err(classify(
                    "ListAttachedPolicies",
                    &format!("certificate {arn}"),
                    &err,
                )),
            },
        }
    }

    /// DescribeThing: `None` if the thing is gone, else the value of its mark (if any).
    async fn mark_of(&self, thing: &str) -> Result<Option<Option<String>>, ImportError> {
        let described = self
            .call(Api::DescribeThing, || {
                self.client.describe_thing().thing_name(thing).send()
            })
            .await;
        match described {
            Ok(out) => Ok(Some(
                out.attributes()
                    .and_then(|a| a.get(MARK_ATTRIBUTE))
                    .cloned(),
            )),
            Err(err) => match err.as_service_error() {
                Some(DescribeThingError::ResourceNotFoundException(_)) => Ok(None),
                _ => Err(classify("DescribeThing", &format!("thing {thing}"), &err)),
            },
        }
    }

    /// ListThingGroupsForThing: the names of the thing's groups.
    async fn groups_of(&self, thing: &str) -> Result<Vec<String>, ImportError> {
        let listed = self
            .call(Api::ListThingGroupsForThing, || {
                self.client
                    .list_thing_groups_for_thing()
                    .thing_name(thing)
                    .max_results(LIST_LIMIT)
                    .send()
            })
            .await;
        match listed {
            Ok(out) => Ok(out
                .thing_groups()
                .iter()
                .filter_map(|g| g.group_name().map(str::to_owned))
                .collect()),
            Err(err) => match err.as_service_error() {
                Some(ListThingGroupsForThingError::ResourceNotFoundException(_)) => Ok(Vec::new()),
                _ => Err(classify(
                    "ListThingGroupsForThing",
                    &format!("thing {thing}"),
                    &err,
                )),
            },
        }
    }
}

/// A detachment's answer: a policy, group, thing or attachment gone already (a replay, or
/// another hand) is done, as IoT answers it ResourceNotFoundException (for DetachPolicy outside
/// its model); any other failure ends the task.
fn detached<T, E>(
    done: Result<T, SdkError<E, HttpResponse>>,
    operation: &str,
    resource: &str,
) -> Result<(), ImportError>
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    match done {
        Ok(_) => Ok(()),
        Err(err) if err.code() == Some("ResourceNotFoundException") => Ok(()),
        Err(err) => Err(classify(operation, resource, &err)),
    }
}

/// Between DeleteCertificate or DeleteThing attempts while a detachment propagates.
const PROPAGATION_POLL: Duration = Duration::from_millis(500);

fn removal_result(
    entry: &Removal,
    plan: &Plan,
    outcome: Outcome,
    actions: Vec<Action>,
) -> EntryResult {
    EntryResult {
        actions,
        ..entry.device.result(
            plan.certificate
                .as_ref()
                .map(|c| (c.id.as_str(), c.arn.as_str())),
            plan.thing.as_deref(),
            outcome,
        )
    }
}

fn join<T: AsRef<str>>(items: &[T]) -> String {
    items
        .iter()
        .map(AsRef::as_ref)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Counts of actions, per action, in [`Action::ALL`] order (absent ones left out).
pub fn count_actions<'a>(actions: impl IntoIterator<Item = &'a Action>) -> BTreeMap<Action, u64> {
    let mut counts = BTreeMap::new();
    for action in actions {
        *counts.entry(*action).or_default() += 1;
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(status: Option<IotCertificateStatus>, thing: bool, attached: bool) -> Plan {
        Plan {
            certificate: status.map(|status| HeldCertificate {
                id: "c".into(),
                arn: "arn:aws:iot:eu-west-1:123456789012:cert/c".into(),
                status: Some(status),
            }),
            thing: thing.then(|| "dev-1".to_owned()),
            policies: vec!["p1".into(), "p2".into()],
            groups: vec!["g".into()],
            attached,
        }
    }

    #[test]
    fn a_full_device_takes_every_action_in_order() {
        let actions = plan(Some(IotCertificateStatus::Active), true, true).actions();
        assert_eq!(
            actions,
            [
                Action::DetachPolicy,
                Action::DetachPolicy,
                Action::RemoveFromGroup,
                Action::DetachCertificate,
                Action::DeactivateCertificate,
                Action::DeleteCertificate,
                Action::DeleteThing,
            ]
        );
        assert_eq!(count_actions(&actions)[&Action::DetachPolicy], 2);
    }

    #[test]
    fn what_a_crash_left_is_all_a_replay_plans() {
        // The certificate went (and its attachments with it); the thing stayed.
        let mut rest = plan(None, true, false);
        rest.policies.clear();
        rest.groups.clear();
        assert_eq!(rest.actions(), [Action::DeleteThing]);
        // An INACTIVE certificate is not set INACTIVE again.
        let mut inactive = plan(Some(IotCertificateStatus::Inactive), false, false);
        inactive.policies.clear();
        assert_eq!(
            inactive.actions(),
            [Action::RemoveFromGroup, Action::DeleteCertificate]
        );
        assert!(Plan::default().actions().is_empty());
    }

    #[test]
    fn removals_round_trip_and_a_dry_run_is_the_default() {
        let json =
            serde_json::json!({"index": 1, "deviceId": "d", "thingName": "dev-d", "mark": "p"});
        let removal: Removal = serde_json::from_value(json.clone()).unwrap();
        assert!(!removal.execute && removal.policies.is_empty());
        let back = serde_json::to_value(&removal).unwrap();
        assert_eq!(back["execute"], false);
        assert_eq!(serde_json::from_value::<Removal>(back).unwrap(), removal);
    }
}
