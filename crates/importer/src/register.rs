//! Registering one decorated entry: certificate, thing, attachments — each step idempotent.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use aws_sdk_iot::config::http::HttpResponse;
use aws_sdk_iot::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_iot::operation::add_thing_to_thing_group::AddThingToThingGroupError;
use aws_sdk_iot::operation::attach_policy::AttachPolicyError;
use aws_sdk_iot::operation::attach_thing_principal::AttachThingPrincipalError;
use aws_sdk_iot::operation::create_thing::CreateThingError;
use aws_sdk_iot::operation::describe_certificate::DescribeCertificateError;
use aws_sdk_iot::operation::register_certificate_without_ca::RegisterCertificateWithoutCAError;
use aws_sdk_iot::operation::update_thing::UpdateThingError;
use aws_sdk_iot::types::{
    AttributePayload, CertificateStatus as IotCertificateStatus,
    ThingPrincipalType as IotThingPrincipalType,
};
use serde::{Deserialize, Serialize};
use thingpress_aws::Class;
use thingpress_manifest::ErrorName;
use thingpress_product::{CertificateStatus, Decorated, OnThingConflict, ThingPrincipalType};
use tokio::time::Instant;

use crate::ImportError;
use crate::apis::Api;
use crate::classify::{classify, service_message};
use crate::decommission::Action;
use crate::pacer::Pacer;

/// What happened to one entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Outcome {
    /// The certificate was registered by this run and its thing set up.
    Registered,
    /// The certificate was already in IoT; its thing and attachments were ensured.
    AlreadyRegistered,
    /// The entry cannot be registered (or activated); `error` says why.
    Rejected,
    /// `thingpress activate` set the certificate ACTIVE.
    Activated,
    /// `thingpress activate` found the certificate ACTIVE already (its thing was still given
    /// the list's attributes and the activation groups).
    AlreadyActive,
    /// `thingpress decommission --execute` removed what the import made; `actions` says what.
    Removed,
    /// A decommission dry run would remove what `actions` lists.
    WouldRemove,
    /// A decommission found nothing left to remove.
    AlreadyRemoved,
}

/// One line of a results file: the outcome of one entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EntryResult {
    /// Position in the manifest, from 0.
    pub index: u64,
    /// The AWS IoT certificate id.
    pub certificate_id: String,
    /// The thing the entry maps to.
    pub thing_name: String,
    /// The supplier's device id.
    pub device_id: String,
    /// What happened.
    pub outcome: Outcome,
    /// The certificate's ARN, once IoT has it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_arn: Option<String>,
    /// A decommission's changes, made or (in a dry run) planned.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub actions: Vec<Action>,
    /// Why the entry was rejected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorName>,
    /// Details for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl EntryResult {
    fn new(entry: &Decorated, outcome: Outcome, certificate_arn: Option<String>) -> EntryResult {
        EntryResult {
            index: entry.index,
            certificate_id: entry.certificate_id.clone(),
            thing_name: entry.thing_name.clone(),
            device_id: entry.device_id.clone(),
            outcome,
            certificate_arn,
            actions: Vec::new(),
            error: None,
            message: None,
        }
    }

    /// A rejection of `entry`, with the certificate ARN if IoT already holds the certificate.
    pub fn rejected(
        entry: &Decorated,
        error: ErrorName,
        message: impl Into<String>,
        certificate_arn: Option<String>,
    ) -> EntryResult {
        EntryResult {
            error: Some(error),
            message: Some(message.into()),
            ..EntryResult::new(entry, Outcome::Rejected, certificate_arn)
        }
    }
}

/// A tally per API: calls (one per operation), attempts or throttles.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ApiCalls(pub BTreeMap<Api, u64>);

impl ApiCalls {
    /// Calls of one API.
    pub fn get(&self, api: Api) -> u64 {
        self.0.get(&api).copied().unwrap_or(0)
    }

    /// Calls of every API together.
    pub fn total(&self) -> u64 {
        self.0.values().sum()
    }

    /// Adds another tally (e.g. from another chunk) to this one.
    pub fn add(&mut self, other: &ApiCalls) {
        for (api, n) in &other.0 {
            *self.0.entry(*api).or_insert(0) += n;
        }
    }
}

/// What an importer's calls cost: operations, the attempts they took, the throttles among
/// those attempts, and the time spent waiting for tokens.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallStats {
    /// Operations, one per step (however many attempts each took).
    pub calls: ApiCalls,
    /// Requests sent: calls plus their retries.
    pub attempts: ApiCalls,
    /// Attempts IoT answered with a throttle.
    pub throttles: ApiCalls,
    /// Time callers waited for the pacer's tokens, summed over concurrent callers.
    pub token_wait: Duration,
}

/// Attempts per call at most: a call throttled this often in a row (each retry a paced token
/// later, at a rate AIMD lowers every second) meets a storm that a stop and continuation rides
/// out better, with progress saved and no Lambda time spent waiting.
pub const CALL_ATTEMPTS: u32 = 6;
/// Throttling time per call at most, whatever the attempts: past it, the chunk stops and is
/// continued.
pub const THROTTLE_PATIENCE: Duration = Duration::from_secs(10);
/// Attempts of a call that meets faults (5xx, timeouts), as the SDK's standard retry made.
pub const TRANSIENT_ATTEMPTS: u32 = 3;
/// The first backoff after a fault, doubling (the SDK's standard retry started at 50 ms).
const TRANSIENT_BACKOFF: Duration = Duration::from_millis(50);

/// The steps of one entry already done in IoT. Register keeps them in a chunk's progress when
/// the chunk stops mid-entry (throttled, deadline), so the retry resumes after the last step
/// done: no call repeated, and a certificate this run registered stays `registered` instead of
/// coming back as the 409 of a certificate IoT "already had".
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct EntrySteps {
    /// Position in the manifest, from 0.
    pub index: u64,
    /// The entry's certificate id: steps of another certificate are never resumed.
    pub certificate_id: String,
    /// The entry's thing: steps for another thing name are never resumed.
    pub thing_name: String,
    /// The certificate step, once done.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub certificate: Option<CertificateStep>,
    /// An already registered certificate was found attached to no other thing.
    pub conflict_checked: bool,
    /// CreateThing (or UpdateThing) done.
    pub thing: bool,
    /// AttachThingPrincipal done.
    pub principal: bool,
    /// Policies attached.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub policies: Vec<String>,
    /// Thing groups joined.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
}

/// What the certificate step found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CertificateStep {
    /// The certificate's ARN.
    pub arn: String,
    /// `registered` when this run registered it, `alreadyRegistered` when IoT had it.
    pub outcome: Outcome,
    /// IoT's status of a certificate it already had.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
}

impl EntrySteps {
    /// No step done yet for `entry`.
    pub fn new(entry: &Decorated) -> EntrySteps {
        EntrySteps {
            index: entry.index,
            certificate_id: entry.certificate_id.clone(),
            thing_name: entry.thing_name.clone(),
            ..EntrySteps::default()
        }
    }

    /// Whether these are steps of `entry` (same index, certificate and thing).
    pub fn belong_to(&self, entry: &Decorated) -> bool {
        self.index == entry.index
            && self.certificate_id == entry.certificate_id
            && self.thing_name == entry.thing_name
    }

    /// Whether any step is done (otherwise there is nothing worth keeping).
    pub fn started(&self) -> bool {
        self.certificate.is_some()
    }
}

/// How far the certificate step got.
enum Certificate {
    New {
        arn: String,
    },
    Existing {
        arn: String,
        status: String,
    },
    Rejected {
        message: String,
        arn: Option<String>,
    },
}

/// Registers decorated entries in AWS IoT, paced per API, counting its calls.
#[derive(Debug)]
pub struct Importer {
    pub(crate) client: aws_sdk_iot::Client,
    pacer: Pacer,
    calls: [AtomicU64; Api::ALL.len()],
    attempts: [AtomicU64; Api::ALL.len()],
    throttles: [AtomicU64; Api::ALL.len()],
    token_wait_nanos: AtomicU64,
}

/// The attachment type to send: none for AWS's default (the request stays as before the option
/// existed), EXCLUSIVE_THING when the profile asks for it.
fn principal_type(kind: ThingPrincipalType) -> Option<IotThingPrincipalType> {
    match kind {
        ThingPrincipalType::NonExclusiveThing => None,
        ThingPrincipalType::ExclusiveThing => Some(IotThingPrincipalType::ExclusiveThing),
    }
}

/// Adds one to an API's counter.
fn count(counters: &[AtomicU64; Api::ALL.len()], api: Api) {
    if let Some(n) = counters.get(api.slot()) {
        n.fetch_add(1, Ordering::Relaxed);
    }
}

/// The non-zero counters as a tally.
fn tally(counters: &[AtomicU64; Api::ALL.len()]) -> ApiCalls {
    ApiCalls(
        Api::ALL
            .iter()
            .zip(counters)
            .map(|(api, n)| (*api, n.load(Ordering::Relaxed)))
            .filter(|(_, n)| *n > 0)
            .collect(),
    )
}

impl Importer {
    /// An importer using `client` (build it with [`crate::sdk_retry_config`], which leaves
    /// retries to the importer) and `pacer`.
    pub fn new(client: aws_sdk_iot::Client, pacer: Pacer) -> Importer {
        Importer {
            client,
            pacer,
            calls: Default::default(),
            attempts: Default::default(),
            throttles: Default::default(),
            token_wait_nanos: AtomicU64::new(0),
        }
    }

    /// The pacer, e.g. to read the rates for logging.
    pub fn pacer(&self) -> &Pacer {
        &self.pacer
    }

    /// The calls made so far, per API (one per operation, not per attempt).
    pub fn api_calls(&self) -> ApiCalls {
        tally(&self.calls)
    }

    /// Calls, attempts, throttles and token waits so far.
    pub fn call_stats(&self) -> CallStats {
        CallStats {
            calls: tally(&self.calls),
            attempts: tally(&self.attempts),
            throttles: tally(&self.throttles),
            token_wait: Duration::from_nanos(self.token_wait_nanos.load(Ordering::Relaxed)),
        }
    }

    /// Sends one call of `api`, each attempt after a token of the pacer's: a throttle lowers
    /// the pacer's rate and is tried again (up to [`CALL_ATTEMPTS`] or [`THROTTLE_PATIENCE`]),
    /// a fault is tried again after a short backoff (up to [`TRANSIENT_ATTEMPTS`]); the last
    /// answer is returned as it is, for the caller to read or classify.
    pub(crate) async fn call<T, E, Fut>(
        &self,
        api: Api,
        send: impl Fn() -> Fut,
    ) -> Result<T, SdkError<E, HttpResponse>>
    where
        Fut: Future<Output = Result<T, SdkError<E, HttpResponse>>>,
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        count(&self.calls, api);
        let mut attempts = 0;
        let mut faults = 0;
        let mut throttled_since = None;
        loop {
            let waited = self.pacer.acquire(api).await;
            let nanos = u64::try_from(waited.as_nanos()).unwrap_or(u64::MAX);
            self.token_wait_nanos.fetch_add(nanos, Ordering::Relaxed);
            count(&self.attempts, api);
            attempts += 1;
            let result = send().await;
            let Err(err) = &result else {
                return result;
            };
            let again = match thingpress_aws::classify(err).class {
                Class::Throttled => {
                    count(&self.throttles, api);
                    self.pacer.throttled(api);
                    let since = *throttled_since.get_or_insert_with(Instant::now);
                    attempts < CALL_ATTEMPTS && since.elapsed() < THROTTLE_PATIENCE
                }
                Class::Transient => {
                    faults += 1;
                    let again = faults < TRANSIENT_ATTEMPTS && attempts < CALL_ATTEMPTS;
                    if again {
                        tokio::time::sleep(TRANSIENT_BACKOFF.saturating_mul(1 << (faults - 1)))
                            .await;
                    }
                    again
                }
                Class::Rejected => false,
            };
            if !again {
                return result;
            }
        }
    }

    /// Registers one entry: certificate, thing, principal, policies, groups (3 + policies +
    /// groups calls for a new certificate). Per-entry problems are an `Ok` rejected result;
    /// an `Err` ends the task (throttled, transient or refused by AWS).
    pub async fn register(&self, entry: &Decorated) -> Result<EntryResult, ImportError> {
        self.resume(entry, &mut EntrySteps::new(entry)).await
    }

    /// Registers one entry from the steps already done, recording each step in `steps` as it
    /// completes, so that after an `Err` they say exactly where to resume. Steps that belong
    /// to another entry are discarded and the entry starts over.
    pub async fn resume(
        &self,
        entry: &Decorated,
        steps: &mut EntrySteps,
    ) -> Result<EntryResult, ImportError> {
        if !steps.belong_to(entry) {
            *steps = EntrySteps::new(entry);
        }
        let done = match &steps.certificate {
            Some(done) => done.clone(),
            None => match self.certificate_step(entry).await? {
                Ok(done) => {
                    steps.certificate = Some(done.clone());
                    done
                }
                Err(rejection) => return Ok(rejection),
            },
        };
        let CertificateStep {
            arn,
            outcome,
            status,
        } = done;
        let note = status.map(|status| format!("certificate already registered (status {status})"));
        if outcome == Outcome::AlreadyRegistered && !steps.conflict_checked {
            if let Some(rejection) = self.attached_elsewhere(entry, &arn).await? {
                return Ok(rejection);
            }
            steps.conflict_checked = true;
        }
        if !steps.thing {
            if let Err(rejection) = self.thing(entry, &arn).await? {
                return Ok(rejection);
            }
            steps.thing = true;
        }
        if !steps.principal {
            if let Err(rejection) = self.attach_principal(entry, &arn).await? {
                return Ok(rejection);
            }
            steps.principal = true;
        }
        for policy in &entry.policies {
            if steps.policies.contains(policy) {
                continue;
            }
            if let Err(rejection) = self.attach_policy(entry, policy, &arn).await? {
                return Ok(rejection);
            }
            steps.policies.push(policy.clone());
        }
        for group in &entry.thing_groups {
            if steps.groups.contains(group) {
                continue;
            }
            if let Err(rejection) = self.add_to_group(entry, group, &arn).await? {
                return Ok(rejection);
            }
            steps.groups.push(group.clone());
        }
        tracing::debug!(index = entry.index, thing = %entry.thing_name, ?outcome, "entry registered");
        Ok(EntryResult {
            message: note,
            ..EntryResult::new(entry, outcome, Some(arn))
        })
    }

    /// The certificate step as it is recorded: registered now or found already registered;
    /// `Err` is the entry's rejection.
    async fn certificate_step(
        &self,
        entry: &Decorated,
    ) -> Result<Result<CertificateStep, EntryResult>, ImportError> {
        Ok(match self.certificate(entry).await? {
            Certificate::New { arn } => Ok(CertificateStep {
                arn,
                outcome: Outcome::Registered,
                status: None,
            }),
            Certificate::Existing { arn, status } => Ok(CertificateStep {
                arn,
                outcome: Outcome::AlreadyRegistered,
                status: Some(status),
            }),
            Certificate::Rejected { message, arn } => Err(EntryResult::rejected(
                entry,
                ErrorName::RejectedByIot,
                message,
                arn,
            )),
        })
    }

    /// AttachThingPrincipal: the certificate on the thing, exclusively when the profile says so
    /// (IoT then refuses a certificate attached to another thing: the entry's rejection).
    async fn attach_principal(
        &self,
        entry: &Decorated,
        arn: &str,
    ) -> Result<Result<(), EntryResult>, ImportError> {
        let attached = self
            .call(Api::AttachThingPrincipal, || {
                self.client
                    .attach_thing_principal()
                    .thing_name(&entry.thing_name)
                    .principal(arn)
                    .set_thing_principal_type(principal_type(entry.thing_principal_type))
                    .send()
            })
            .await;
        let Err(err) = attached else {
            return Ok(Ok(()));
        };
        match err.as_service_error() {
            Some(AttachThingPrincipalError::InvalidRequestException(e)) => {
                Ok(Err(EntryResult::rejected(
                    entry,
                    ErrorName::RejectedByIot,
                    format!(
                        "AttachThingPrincipal {}: {}",
                        entry.thing_name,
                        service_message(e)
                    ),
                    Some(arn.to_owned()),
                )))
            }
            _ => Err(classify(
                "AttachThingPrincipal",
                &format!("thing {}", entry.thing_name),
                &err,
            )),
        }
    }

    /// AttachPolicy: one profile policy on the certificate; `Err` is the entry's rejection.
    async fn attach_policy(
        &self,
        entry: &Decorated,
        policy: &str,
        arn: &str,
    ) -> Result<Result<(), EntryResult>, ImportError> {
        let result = self
            .call(Api::AttachPolicy, || {
                self.client
                    .attach_policy()
                    .policy_name(policy)
                    .target(arn)
                    .send()
            })
            .await;
        let Err(err) = result else {
            return Ok(Ok(()));
        };
        match err.as_service_error() {
            Some(AttachPolicyError::InvalidRequestException(e)) => Ok(Err(EntryResult::rejected(
                entry,
                ErrorName::RejectedByIot,
                format!("AttachPolicy {policy}: {}", service_message(e)),
                Some(arn.to_owned()),
            ))),
            _ => Err(classify("AttachPolicy", &format!("policy {policy}"), &err)),
        }
    }

    /// AddThingToThingGroup: the thing in one profile group; `Err` is the entry's rejection.
    async fn add_to_group(
        &self,
        entry: &Decorated,
        group: &str,
        arn: &str,
    ) -> Result<Result<(), EntryResult>, ImportError> {
        let result = self
            .call(Api::AddThingToThingGroup, || {
                self.client
                    .add_thing_to_thing_group()
                    .thing_group_name(group)
                    .thing_name(&entry.thing_name)
                    .send()
            })
            .await;
        let Err(err) = result else {
            return Ok(Ok(()));
        };
        match err.as_service_error() {
            Some(AddThingToThingGroupError::InvalidRequestException(e)) => {
                Ok(Err(EntryResult::rejected(
                    entry,
                    ErrorName::RejectedByIot,
                    format!("AddThingToThingGroup {group}: {}", service_message(e)),
                    Some(arn.to_owned()),
                )))
            }
            _ => Err(classify(
                "AddThingToThingGroup",
                &format!("thing group {group}"),
                &err,
            )),
        }
    }

    /// Step 1: RegisterCertificateWithoutCA, or find the certificate already there.
    async fn certificate(&self, entry: &Decorated) -> Result<Certificate, ImportError> {
        let status = match entry.certificate_status {
            CertificateStatus::Active => IotCertificateStatus::Active,
            CertificateStatus::Inactive => IotCertificateStatus::Inactive,
        };
        let result = self
            .call(Api::RegisterCertificateWithoutCA, || {
                self.client
                    .register_certificate_without_ca()
                    .certificate_pem(&entry.certificate_pem)
                    .status(status.clone())
                    .send()
            })
            .await;
        let resource = format!("certificate {}", entry.certificate_id);
        let err = match result {
            Ok(out) => {
                if out
                    .certificate_id()
                    .is_some_and(|id| id != entry.certificate_id)
                {
                    tracing::warn!(
                        index = entry.index,
                        ours = %entry.certificate_id,
                        theirs = ?out.certificate_id(),
                        "IoT gave the certificate another id than SHA-256 of its DER"
                    );
                }
                return match out.certificate_arn() {
                    Some(arn) => Ok(Certificate::New {
                        arn: arn.to_owned(),
                    }),
                    None => Err(ImportError::AwsRejected(format!(
                        "RegisterCertificateWithoutCA {resource}: IoT answered without a certificate ARN"
                    ))),
                };
            }
            Err(err) => err,
        };
        let rejected = |message: String| Ok(Certificate::Rejected { message, arn: None });
        match err.as_service_error() {
            Some(RegisterCertificateWithoutCAError::ResourceAlreadyExistsException(e)) => {
                match e.resource_id() {
                    Some(id) if id != entry.certificate_id => rejected(format!(
                        "RegisterCertificateWithoutCA: IoT says the certificate exists as {id}, not {}: {}",
                        entry.certificate_id,
                        service_message(e)
                    )),
                    // Ours (or unnamed): look it up by our id, which is also how we learn its ARN.
                    _ => self.existing_certificate(entry).await,
                }
            }
            Some(RegisterCertificateWithoutCAError::InvalidRequestException(e)) => rejected(
                format!("RegisterCertificateWithoutCA: {}", service_message(e)),
            ),
            Some(RegisterCertificateWithoutCAError::CertificateValidationException(e)) => rejected(
                format!("RegisterCertificateWithoutCA: {}", service_message(e)),
            ),
            Some(RegisterCertificateWithoutCAError::CertificateStateException(e)) => rejected(
                format!("RegisterCertificateWithoutCA: {}", service_message(e)),
            ),
            _ => Err(classify("RegisterCertificateWithoutCA", &resource, &err)),
        }
    }

    /// DescribeCertificate for a certificate IoT already holds. A REVOKED certificate is never
    /// re-activated, and one being transferred to another account is not ours to use; any
    /// other status is left as it is (Thingpress never calls UpdateCertificate).
    async fn existing_certificate(&self, entry: &Decorated) -> Result<Certificate, ImportError> {
        let result = self
            .call(Api::DescribeCertificate, || {
                self.client
                    .describe_certificate()
                    .certificate_id(&entry.certificate_id)
                    .send()
            })
            .await;
        let out = match result {
            Ok(out) => out,
            Err(err) => {
                return match err.as_service_error() {
                    Some(DescribeCertificateError::ResourceNotFoundException(e)) => {
                        Ok(Certificate::Rejected {
                            message: format!(
                                "IoT reported certificate {} as existing but cannot describe it: {}",
                                entry.certificate_id,
                                service_message(e)
                            ),
                            arn: None,
                        })
                    }
                    _ => Err(classify(
                        "DescribeCertificate",
                        &format!("certificate {}", entry.certificate_id),
                        &err,
                    )),
                };
            }
        };
        let description = out.certificate_description();
        let arn = description
            .and_then(|d| d.certificate_arn())
            .map(str::to_owned);
        let status = description.and_then(|d| d.status());
        let Some(arn) = arn else {
            return Err(ImportError::AwsRejected(format!(
                "DescribeCertificate certificate {}: IoT answered without a certificate ARN",
                entry.certificate_id
            )));
        };
        let status_name = status
            .map(|s| s.as_str().to_owned())
            .unwrap_or_else(|| "unknown".into());
        match status {
            Some(IotCertificateStatus::Revoked) => Ok(Certificate::Rejected {
                message: "certificate is REVOKED in IoT; Thingpress never re-activates a revoked certificate"
                    .into(),
                arn: Some(arn),
            }),
            Some(IotCertificateStatus::PendingTransfer) => Ok(Certificate::Rejected {
                message: "certificate is PENDING_TRANSFER to another account".into(),
                arn: Some(arn),
            }),
            _ => Ok(Certificate::Existing {
                arn,
                status: status_name,
            }),
        }
    }

    /// For a certificate that was already registered: a rejection if it is attached to a thing
    /// other than this entry's (the same certificate under another device id, e.g. in another
    /// manifest). Thingpress gives a certificate one thing; attaching it to a second would make
    /// two things one device.
    async fn attached_elsewhere(
        &self,
        entry: &Decorated,
        arn: &str,
    ) -> Result<Option<EntryResult>, ImportError> {
        let mut others = Vec::new();
        let mut token = None;
        loop {
            let out = self
                .call(Api::ListPrincipalThings, || {
                    self.client
                        .list_principal_things()
                        .principal(arn)
                        .set_next_token(token.clone())
                        .send()
                })
                .await
                .map_err(|err| {
                    classify(
                        "ListPrincipalThings",
                        &format!("certificate {}", entry.certificate_id),
                        &err,
                    )
                })?;
            others.extend(
                out.things()
                    .iter()
                    .filter(|thing| **thing != entry.thing_name)
                    .cloned(),
            );
            token = out.next_token.filter(|t| !t.is_empty());
            if token.is_none() {
                break;
            }
        }
        if others.is_empty() {
            return Ok(None);
        }
        Ok(Some(EntryResult::rejected(
            entry,
            ErrorName::ThingConflict,
            format!(
                "certificate {} is already attached to thing {}, not {}: a certificate belongs to one thing",
                entry.certificate_id,
                others.join(", "),
                entry.thing_name
            ),
            Some(arn.to_owned()),
        )))
    }

    /// Step 2: CreateThing (idempotent for identical configuration), and on a conflict either
    /// a ThingConflict rejection or UpdateThing, as the profile says.
    ///
    /// UpdateThing replaces the attributes (`merge: false`) and sets or removes the thing type,
    /// so the thing ends up exactly as the profile describes it and a re-run's CreateThing finds
    /// an identical thing (no second update). Attributes set by other systems are removed; that
    /// is what choosing `update` in a profile means.
    async fn thing(
        &self,
        entry: &Decorated,
        arn: &str,
    ) -> Result<Result<(), EntryResult>, ImportError> {
        let attributes: HashMap<String, String> = entry
            .attributes
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let create = || {
            let request = self
                .client
                .create_thing()
                .thing_name(&entry.thing_name)
                .set_thing_type_name(entry.thing_type.clone());
            if attributes.is_empty() {
                request
            } else {
                request.attribute_payload(
                    AttributePayload::builder()
                        .set_attributes(Some(attributes.clone()))
                        .build(),
                )
            }
            .send()
        };
        let resource = format!("thing {}", entry.thing_name);
        let err = match self.call(Api::CreateThing, create).await {
            Ok(_) => return Ok(Ok(())),
            Err(err) => err,
        };
        let reject = |error: ErrorName, message: String| {
            Ok(Err(EntryResult::rejected(
                entry,
                error,
                message,
                Some(arn.to_owned()),
            )))
        };
        match err.as_service_error() {
            Some(CreateThingError::ResourceAlreadyExistsException(e)) => {
                match entry.on_thing_conflict {
                    OnThingConflict::Reject => reject(
                        ErrorName::ThingConflict,
                        format!(
                            "thing {} exists with another thing type or attributes (onThingConflict is reject): {}",
                            entry.thing_name,
                            service_message(e)
                        ),
                    ),
                    OnThingConflict::Update => self.update_thing(entry, arn, attributes).await,
                }
            }
            Some(CreateThingError::InvalidRequestException(e)) => reject(
                ErrorName::RejectedByIot,
                format!("CreateThing {}: {}", entry.thing_name, service_message(e)),
            ),
            _ => Err(classify("CreateThing", &resource, &err)),
        }
    }

    async fn update_thing(
        &self,
        entry: &Decorated,
        arn: &str,
        attributes: HashMap<String, String>,
    ) -> Result<Result<(), EntryResult>, ImportError> {
        let update = || {
            let request = self
                .client
                .update_thing()
                .thing_name(&entry.thing_name)
                .attribute_payload(
                    AttributePayload::builder()
                        .set_attributes(Some(attributes.clone()))
                        .merge(false)
                        .build(),
                );
            match &entry.thing_type {
                Some(thing_type) => request.thing_type_name(thing_type),
                None => request.remove_thing_type(true),
            }
            .send()
        };
        match self.call(Api::UpdateThing, update).await {
            Ok(_) => Ok(Ok(())),
            Err(err) => match err.as_service_error() {
                Some(UpdateThingError::InvalidRequestException(e)) => {
                    Ok(Err(EntryResult::rejected(
                        entry,
                        ErrorName::RejectedByIot,
                        format!("UpdateThing {}: {}", entry.thing_name, service_message(e)),
                        Some(arn.to_owned()),
                    )))
                }
                _ => Err(classify(
                    "UpdateThing",
                    &format!("thing {}", entry.thing_name),
                    &err,
                )),
            },
        }
    }
}
