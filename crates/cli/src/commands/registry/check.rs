//! `thingpress registry check`: does IoT hold, for each manifest entry, what the profile says?
//!
//! The manifest is read locally and decorated exactly as the pipeline does; each accepted entry
//! is then looked up in IoT (certificate and status, thing and type and attributes, the
//! certificate on the thing, policies on the certificate, the thing in its groups) and only the
//! differences are reported.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::fs::File;
use std::io::{BufReader, Write};
use std::path::Path;
use std::time::Instant;

use anyhow::{Context, anyhow};
use futures::StreamExt;
use serde::Serialize;
use thingpress_manifest::{Entry, Options, read_entries};
use thingpress_product::{Decorated, Decorator};

use super::pace::{ReadApi, ReadPacer};
use super::progress::Progress;
use crate::target::sdk_message;

/// Largest page the per-thing list APIs accept.
const PAGE: i32 = 250;

/// What IoT holds for one entry (`None`: not there).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Found {
    /// The certificate, by the entry's certificate id.
    pub certificate: Option<FoundCertificate>,
    /// The thing, by the rendered thing name.
    pub thing: Option<FoundThing>,
    /// Principals (certificate ARNs) attached to the thing.
    pub principals: Vec<String>,
    /// Policies attached to the certificate.
    pub policies: BTreeSet<String>,
    /// Thing groups the thing is a direct member of.
    pub groups: BTreeSet<String>,
}

/// A certificate as DescribeCertificate shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundCertificate {
    /// Its ARN.
    pub arn: String,
    /// Its status (ACTIVE, INACTIVE, REVOKED, …).
    pub status: String,
}

/// A thing as DescribeThing shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FoundThing {
    /// Its thing type.
    pub thing_type: Option<String>,
    /// Its attributes.
    pub attributes: BTreeMap<String, String>,
}

/// One way an entry's registry state differs from what the profile says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum Problem {
    /// IoT has no certificate of the entry's id.
    CertificateMissing,
    /// The certificate's status is not the profile's.
    CertificateStatus { expected: String, found: String },
    /// IoT has no thing of the rendered name.
    ThingMissing,
    /// The thing has another thing type (or none).
    ThingType {
        expected: Option<String>,
        found: Option<String>,
    },
    /// A profile attribute is missing on the thing or has another value.
    Attribute {
        name: String,
        expected: String,
        found: Option<String>,
    },
    /// The certificate is not attached to the thing.
    PrincipalNotAttached,
    /// A profile policy is not attached to the certificate.
    PolicyNotAttached { policy: String },
    /// The thing is not in a profile thing group.
    NotInGroup { group: String },
}

impl Problem {
    /// Every kind, in report order.
    pub const KINDS: [&'static str; 8] = [
        "certificateMissing",
        "certificateStatus",
        "thingMissing",
        "thingType",
        "attribute",
        "principalNotAttached",
        "policyNotAttached",
        "notInGroup",
    ];

    /// The kind's name, as in the JSON output.
    pub fn kind(&self) -> &'static str {
        match self {
            Problem::CertificateMissing => "certificateMissing",
            Problem::CertificateStatus { .. } => "certificateStatus",
            Problem::ThingMissing => "thingMissing",
            Problem::ThingType { .. } => "thingType",
            Problem::Attribute { .. } => "attribute",
            Problem::PrincipalNotAttached => "principalNotAttached",
            Problem::PolicyNotAttached { .. } => "policyNotAttached",
            Problem::NotInGroup { .. } => "notInGroup",
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let none = |v: &Option<String>| v.clone().unwrap_or_else(|| "none".to_owned());
        match self {
            Problem::CertificateMissing => write!(f, "certificate not registered"),
            Problem::CertificateStatus { expected, found } => {
                write!(f, "certificate is {found}, the profile says {expected}")
            }
            Problem::ThingMissing => write!(f, "thing does not exist"),
            Problem::ThingType { expected, found } => write!(
                f,
                "thing type is {}, the profile says {}",
                none(found),
                none(expected)
            ),
            Problem::Attribute {
                name,
                expected,
                found: Some(found),
            } => write!(f, "attribute {name} is {found:?}, expected {expected:?}"),
            Problem::Attribute {
                name,
                expected,
                found: None,
            } => write!(f, "attribute {name} missing, expected {expected:?}"),
            Problem::PrincipalNotAttached => {
                write!(f, "certificate not attached to the thing")
            }
            Problem::PolicyNotAttached { policy } => {
                write!(f, "policy {policy} not attached to the certificate")
            }
            Problem::NotInGroup { group } => write!(f, "thing not in group {group}"),
        }
    }
}

/// The differences between what the decorated entry says and what IoT holds. Checks that
/// depend on a missing certificate or thing are not made (its absence is the problem).
pub fn diff(expected: &Decorated, found: &Found) -> Vec<Problem> {
    let mut problems = Vec::new();
    match &found.certificate {
        None => problems.push(Problem::CertificateMissing),
        Some(certificate) => {
            let status = expected.certificate_status.as_str();
            if certificate.status != status {
                problems.push(Problem::CertificateStatus {
                    expected: status.to_owned(),
                    found: certificate.status.clone(),
                });
            }
        }
    }
    match &found.thing {
        None => problems.push(Problem::ThingMissing),
        Some(thing) => {
            if thing.thing_type != expected.thing_type {
                problems.push(Problem::ThingType {
                    expected: expected.thing_type.clone(),
                    found: thing.thing_type.clone(),
                });
            }
            for (name, value) in &expected.attributes {
                let actual = thing.attributes.get(name);
                if actual != Some(value) {
                    problems.push(Problem::Attribute {
                        name: name.clone(),
                        expected: value.clone(),
                        found: actual.cloned(),
                    });
                }
            }
        }
    }
    if let (Some(certificate), Some(_)) = (&found.certificate, &found.thing) {
        let suffix = format!("cert/{}", expected.certificate_id);
        let attached = found
            .principals
            .iter()
            .any(|p| *p == certificate.arn || p.ends_with(&suffix));
        if !attached {
            problems.push(Problem::PrincipalNotAttached);
        }
    }
    if found.certificate.is_some() {
        for policy in &expected.policies {
            if !found.policies.contains(policy) {
                problems.push(Problem::PolicyNotAttached {
                    policy: policy.clone(),
                });
            }
        }
    }
    if found.thing.is_some() {
        for group in &expected.thing_groups {
            if !found.groups.contains(group) {
                problems.push(Problem::NotInGroup {
                    group: group.clone(),
                });
            }
        }
    }
    problems
}

/// Looks up in IoT what [`diff`] compares: up to five paced calls (plus pages).
pub async fn look_up(
    iot: &aws_sdk_iot::Client,
    pacer: &ReadPacer,
    entry: &Decorated,
) -> anyhow::Result<Found> {
    let (certificate, thing) = tokio::join!(
        describe_certificate(iot, pacer, &entry.certificate_id),
        describe_thing(iot, pacer, &entry.thing_name)
    );
    let (certificate, thing) = (certificate?, thing?);
    let (principals, policies, groups) = tokio::join!(
        async {
            match &thing {
                Some(_) => thing_principals(iot, pacer, &entry.thing_name).await,
                None => Ok(Vec::new()),
            }
        },
        async {
            match &certificate {
                Some(c) => attached_policies(iot, pacer, &c.arn).await,
                None => Ok(BTreeSet::new()),
            }
        },
        async {
            match &thing {
                Some(_) => thing_groups(iot, pacer, &entry.thing_name).await,
                None => Ok(BTreeSet::new()),
            }
        }
    );
    Ok(Found {
        certificate,
        thing,
        principals: principals?,
        policies: policies?,
        groups: groups?,
    })
}

async fn describe_certificate(
    iot: &aws_sdk_iot::Client,
    pacer: &ReadPacer,
    id: &str,
) -> anyhow::Result<Option<FoundCertificate>> {
    let result = pacer
        .call(ReadApi::DescribeCertificate, || {
            iot.describe_certificate().certificate_id(id).send()
        })
        .await;
    let out = match result {
        Ok(out) => out,
        Err(e)
            if e.as_service_error()
                .is_some_and(|e| e.is_resource_not_found_exception()) =>
        {
            return Ok(None);
        }
        Err(e) => return Err(anyhow!("DescribeCertificate {id}: {}", sdk_message(&e))),
    };
    let description = out
        .certificate_description()
        .with_context(|| format!("DescribeCertificate {id}: no description in the answer"))?;
    Ok(Some(FoundCertificate {
        arn: description
            .certificate_arn()
            .with_context(|| format!("DescribeCertificate {id}: no ARN in the answer"))?
            .to_owned(),
        status: description
            .status()
            .map(|s| s.as_str().to_owned())
            .unwrap_or_else(|| "unknown".to_owned()),
    }))
}

async fn describe_thing(
    iot: &aws_sdk_iot::Client,
    pacer: &ReadPacer,
    name: &str,
) -> anyhow::Result<Option<FoundThing>> {
    let result = pacer
        .call(ReadApi::DescribeThing, || {
            iot.describe_thing().thing_name(name).send()
        })
        .await;
    match result {
        Ok(out) => Ok(Some(FoundThing {
            thing_type: out.thing_type_name().map(str::to_owned),
            attributes: out
                .attributes()
                .map(|a| a.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
                .unwrap_or_default(),
        })),
        Err(e)
            if e.as_service_error()
                .is_some_and(|e| e.is_resource_not_found_exception()) =>
        {
            Ok(None)
        }
        Err(e) => Err(anyhow!("DescribeThing {name}: {}", sdk_message(&e))),
    }
}

async fn thing_principals(
    iot: &aws_sdk_iot::Client,
    pacer: &ReadPacer,
    name: &str,
) -> anyhow::Result<Vec<String>> {
    let mut principals = Vec::new();
    let mut token = None;
    loop {
        let out = pacer
            .call(ReadApi::ListThingPrincipals, || {
                iot.list_thing_principals()
                    .thing_name(name)
                    .max_results(PAGE)
                    .set_next_token(token.clone())
                    .send()
            })
            .await
            .map_err(|e| anyhow!("ListThingPrincipals {name}: {}", sdk_message(&e)))?;
        principals.extend(out.principals().iter().cloned());
        token = out
            .next_token()
            .filter(|t| !t.is_empty())
            .map(str::to_owned);
        if token.is_none() {
            return Ok(principals);
        }
    }
}

async fn attached_policies(
    iot: &aws_sdk_iot::Client,
    pacer: &ReadPacer,
    arn: &str,
) -> anyhow::Result<BTreeSet<String>> {
    let mut policies = BTreeSet::new();
    let mut marker = None;
    loop {
        let out = pacer
            .call(ReadApi::ListAttachedPolicies, || {
                iot.list_attached_policies()
                    .target(arn)
                    .page_size(PAGE)
                    .set_marker(marker.clone())
                    .send()
            })
            .await
            .map_err(|e| anyhow!("ListAttachedPolicies {arn}: {}", sdk_message(&e)))?;
        policies.extend(
            out.policies()
                .iter()
                .filter_map(|p| p.policy_name().map(str::to_owned)),
        );
        marker = out
            .next_marker()
            .filter(|m| !m.is_empty())
            .map(str::to_owned);
        if marker.is_none() {
            return Ok(policies);
        }
    }
}

async fn thing_groups(
    iot: &aws_sdk_iot::Client,
    pacer: &ReadPacer,
    name: &str,
) -> anyhow::Result<BTreeSet<String>> {
    let mut groups = BTreeSet::new();
    let mut token = None;
    loop {
        let out = pacer
            .call(ReadApi::ListThingGroupsForThing, || {
                iot.list_thing_groups_for_thing()
                    .thing_name(name)
                    .max_results(PAGE)
                    .set_next_token(token.clone())
                    .send()
            })
            .await
            .map_err(|e| anyhow!("ListThingGroupsForThing {name}: {}", sdk_message(&e)))?;
        groups.extend(
            out.thing_groups()
                .iter()
                .filter_map(|g| g.group_name().map(str::to_owned)),
        );
        token = out
            .next_token()
            .filter(|t| !t.is_empty())
            .map(str::to_owned);
        if token.is_none() {
            return Ok(groups);
        }
    }
}

/// Counts of a check, for the summary.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Tally {
    /// Entries in the manifest (accepted and rejected).
    pub entries: u64,
    /// Entries looked up in IoT.
    pub checked: u64,
    /// Checked entries that match the profile.
    pub ok: u64,
    /// Checked entries with at least one problem.
    pub with_problems: u64,
    /// Problems per kind (an entry may have several).
    pub problems: BTreeMap<String, u64>,
    /// Entries the manifest reader rejected, per error name (not checked).
    pub rejected_by_manifest: BTreeMap<String, u64>,
    /// Entries the profile's templates rejected, per error name (not checked).
    pub rejected_by_profile: BTreeMap<String, u64>,
}

impl Tally {
    fn count_checked(&mut self, problems: &[Problem]) {
        self.checked += 1;
        if problems.is_empty() {
            self.ok += 1;
        } else {
            self.with_problems += 1;
        }
        for problem in problems {
            *self.problems.entry(problem.kind().to_owned()).or_insert(0) += 1;
        }
    }
}

/// How the results are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// One line per entry with problems, then the counts.
    Table,
    /// One JSON object per entry with problems (`"type": "entry"`), then one summary object
    /// (`"type": "summary"`).
    Jsonl,
}

/// What one manifest item became.
enum Item {
    Checked(Box<Decorated>, Vec<Problem>),
    RejectedByManifest(String),
    RejectedByProfile(String),
}

/// Bounded, so a fast reader never holds much more of the manifest than the checks in flight.
const CHANNEL: usize = 256;

/// Reads `file`, decorates and checks every accepted entry with `concurrency` in flight,
/// writes the problems and the counts to `out`, and returns the counts.
#[allow(clippy::too_many_arguments)]
pub async fn check(
    iot: &aws_sdk_iot::Client,
    pacer: &ReadPacer,
    decorator: &Decorator,
    file: &Path,
    options: Options,
    concurrency: usize,
    format: Format,
    out: &mut impl Write,
    progress: &Progress,
) -> anyhow::Result<Tally> {
    let name = file.display().to_string();
    let handle = File::open(file).with_context(|| format!("cannot open {name}"))?;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<anyhow::Result<Entry>>(CHANNEL);
    // Reading and verifying is CPU work on a blocking thread; the channel hands entries over.
    let reader_name = name.clone();
    let reader = tokio::task::spawn_blocking(move || {
        let entries = match read_entries(BufReader::with_capacity(256 * 1024, handle), &options) {
            Ok(entries) => entries,
            Err(e) => {
                let _ = tx.blocking_send(Err(anyhow!(e).context(reader_name)));
                return;
            }
        };
        for entry in entries {
            let item = entry.with_context(|| reader_name.clone());
            let last = item.is_err();
            if tx.blocking_send(item).is_err() || last {
                return;
            }
        }
    });

    // A `&str` is copied into each `async move` block below; the String stays here.
    let name = name.as_str();
    let items = futures::stream::poll_fn(|cx| rx.poll_recv(cx)).map(|item| async move {
        match item? {
            Entry::Rejected(rejected) => {
                Ok(Item::RejectedByManifest(rejected.error.as_str().to_owned()))
            }
            Entry::Accepted(accepted) => match decorator.decorate(&accepted) {
                Err(rejected) => Ok(Item::RejectedByProfile(rejected.error.as_str().to_owned())),
                Ok(decorated) => {
                    let found = look_up(iot, pacer, &decorated).await.with_context(|| {
                        format!(
                            "{name}: entry {} (deviceId {})",
                            decorated.index, decorated.device_id
                        )
                    })?;
                    let problems = diff(&decorated, &found);
                    Ok(Item::Checked(Box::new(decorated), problems))
                }
            },
        }
    });
    let mut items = items.buffered(concurrency.max(1));

    // Every existing entry costs one call of each of these.
    let limit = [
        ReadApi::DescribeCertificate,
        ReadApi::ListThingPrincipals,
        ReadApi::ListAttachedPolicies,
    ]
    .map(|api| pacer.rate(api))
    .into_iter()
    .fold(f64::INFINITY, f64::min);
    let started = Instant::now();
    let mut tally = Tally::default();
    while let Some(item) = items.next().await {
        let item: anyhow::Result<Item> = item;
        tally.entries += 1;
        match item? {
            Item::RejectedByManifest(error) => {
                *tally.rejected_by_manifest.entry(error).or_insert(0) += 1;
            }
            Item::RejectedByProfile(error) => {
                *tally.rejected_by_profile.entry(error).or_insert(0) += 1;
            }
            Item::Checked(entry, problems) => {
                tally.count_checked(&problems);
                if !problems.is_empty() {
                    // Flushed at once: a long check shows its problems as it finds them.
                    progress.suspend(|| {
                        write_problems(out, format, &entry, &problems)?;
                        out.flush().context("cannot write to stdout")
                    })?;
                }
            }
        }
        let rate = tally.checked as f64 / started.elapsed().as_secs_f64().max(0.001);
        progress.message(format!(
            "{} entries checked, {} with problems ({rate:.1}/s, paced at most {limit:.1}/s)",
            tally.checked, tally.with_problems
        ));
    }
    drop(items);
    reader
        .await
        .map_err(|e| anyhow!("{name}: the manifest reader stopped: {e}"))?;
    Ok(tally)
}

/// One JSONL line per entry with problems (a struct, so the fields keep this order).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct EntryLine<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    index: u64,
    device_id: &'a str,
    certificate_id: &'a str,
    thing_name: &'a str,
    problems: &'a [Problem],
}

/// The last JSONL line: what was checked and the counts.
#[derive(Serialize)]
struct SummaryLine<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    file: String,
    profile: &'a str,
    #[serde(flatten)]
    tally: &'a Tally,
}

fn write_problems(
    out: &mut impl Write,
    format: Format,
    entry: &Decorated,
    problems: &[Problem],
) -> anyhow::Result<()> {
    let line = match format {
        Format::Jsonl => serde_json::to_string(&EntryLine {
            kind: "entry",
            index: entry.index,
            device_id: &entry.device_id,
            certificate_id: &entry.certificate_id,
            thing_name: &entry.thing_name,
            problems,
        })
        .context("cannot serialise an entry's problems")?,
        Format::Table => format!(
            "entry {} deviceId {} thing {}: {}",
            entry.index,
            entry.device_id,
            entry.thing_name,
            problems
                .iter()
                .map(Problem::to_string)
                .collect::<Vec<_>>()
                .join("; ")
        ),
    };
    writeln!(out, "{line}").context("cannot write to stdout")
}

/// Writes the counts after the entries.
pub fn write_summary(
    out: &mut impl Write,
    format: Format,
    file: &Path,
    profile: &str,
    tally: &Tally,
) -> anyhow::Result<()> {
    let text = match format {
        Format::Jsonl => serde_json::to_string(&SummaryLine {
            kind: "summary",
            file: file.display().to_string(),
            profile,
            tally,
        })
        .context("cannot serialise the counts")?,
        Format::Table => table_summary(file, profile, tally),
    };
    writeln!(out, "{text}").context("cannot write to stdout")
}

fn table_summary(file: &Path, profile: &str, tally: &Tally) -> String {
    let mut lines = Vec::new();
    let mut row = |label: String, n: u64| lines.push((label, n));
    row("entries".into(), tally.entries);
    row("  checked".into(), tally.checked);
    row("    ok".into(), tally.ok);
    row("    with problems".into(), tally.with_problems);
    for kind in Problem::KINDS {
        if let Some(n) = tally.problems.get(kind) {
            row(format!("      {kind}"), *n);
        }
    }
    let rejected = |m: &BTreeMap<String, u64>| m.values().sum::<u64>();
    row(
        "  rejected by the manifest (not checked)".into(),
        rejected(&tally.rejected_by_manifest),
    );
    for (error, n) in &tally.rejected_by_manifest {
        row(format!("    {error}"), *n);
    }
    row(
        "  rejected by the profile (not checked)".into(),
        rejected(&tally.rejected_by_profile),
    );
    for (error, n) in &tally.rejected_by_profile {
        row(format!("    {error}"), *n);
    }
    let width = lines
        .iter()
        .map(|(l, _)| l.chars().count())
        .max()
        .unwrap_or(0);
    let title = format!("{} against profile {profile}", file.display());
    std::iter::once(title)
        .chain(
            lines
                .into_iter()
                .map(|(label, n)| format!("{label:<width$}  {n:>10}")),
        )
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_iot::Client;
    use aws_sdk_iot::operation::describe_certificate::{
        DescribeCertificateError, DescribeCertificateOutput,
    };
    use aws_sdk_iot::operation::describe_thing::DescribeThingOutput;
    use aws_sdk_iot::operation::list_attached_policies::ListAttachedPoliciesOutput;
    use aws_sdk_iot::operation::list_thing_groups_for_thing::ListThingGroupsForThingOutput;
    use aws_sdk_iot::operation::list_thing_principals::ListThingPrincipalsOutput;
    use aws_sdk_iot::types::error::ResourceNotFoundException;
    use aws_sdk_iot::types::{CertificateDescription, CertificateStatus, GroupNameAndArn, Policy};
    use aws_smithy_mocks::{RuleMode, mock, mock_client};
    use serde_json::json;
    use thingpress_product::{CertificateStatus as ProfileStatus, OnThingConflict};

    const ID: &str = "ab12";
    const ARN: &str = "arn:aws:iot:us-east-1:123456789012:cert/ab12";

    fn expected() -> Decorated {
        Decorated {
            index: 7,
            certificate_id: ID.into(),
            certificate_pem: String::new(),
            device_id: "dev-7".into(),
            thing_name: "w-dev-7".into(),
            thing_type: Some("Sensor".into()),
            attributes: BTreeMap::from([("batch".to_owned(), "b1".to_owned())]),
            policies: vec!["p0".into(), "p1".into()],
            thing_groups: vec!["g0".into(), "g1".into()],
            certificate_status: ProfileStatus::Active,
            on_thing_conflict: OnThingConflict::Reject,
        }
    }

    fn matching() -> Found {
        Found {
            certificate: Some(FoundCertificate {
                arn: ARN.into(),
                status: "ACTIVE".into(),
            }),
            thing: Some(FoundThing {
                thing_type: Some("Sensor".into()),
                attributes: BTreeMap::from([
                    ("batch".to_owned(), "b1".to_owned()),
                    ("extra".to_owned(), "kept".to_owned()),
                ]),
            }),
            principals: vec![ARN.into()],
            policies: ["p0", "p1", "other"].map(String::from).into(),
            groups: ["g0", "g1", "more"].map(String::from).into(),
        }
    }

    #[test]
    fn matching_registry_has_no_problems() {
        // Extra attributes, policies and groups are not problems: only the profile's are checked.
        assert_eq!(diff(&expected(), &matching()), []);
    }

    #[test]
    fn each_difference_is_named() {
        let mut found = matching();
        found.certificate = Some(FoundCertificate {
            arn: ARN.into(),
            status: "REVOKED".into(),
        });
        found.thing = Some(FoundThing {
            thing_type: None,
            attributes: BTreeMap::from([("batch".to_owned(), "b2".to_owned())]),
        });
        found.principals = vec!["arn:aws:iot:us-east-1:123456789012:cert/other".into()];
        found.policies = ["p1".to_owned()].into();
        found.groups = ["g0".to_owned()].into();
        let problems = diff(&expected(), &found);
        assert_eq!(
            problems,
            [
                Problem::CertificateStatus {
                    expected: "ACTIVE".into(),
                    found: "REVOKED".into()
                },
                Problem::ThingType {
                    expected: Some("Sensor".into()),
                    found: None
                },
                Problem::Attribute {
                    name: "batch".into(),
                    expected: "b1".into(),
                    found: Some("b2".into())
                },
                Problem::PrincipalNotAttached,
                Problem::PolicyNotAttached {
                    policy: "p0".into()
                },
                Problem::NotInGroup { group: "g1".into() },
            ]
        );
        let kinds: Vec<_> = problems.iter().map(Problem::kind).collect();
        for kind in &kinds {
            assert!(Problem::KINDS.contains(kind), "{kind}");
        }
        let json = serde_json::to_value(&problems).unwrap();
        assert_eq!(json[0]["kind"], "certificateStatus");
        assert_eq!(
            json[4],
            json!({"kind": "policyNotAttached", "policy": "p0"})
        );
        assert_eq!(
            problems[2].to_string(),
            "attribute batch is \"b2\", expected \"b1\""
        );
    }

    #[test]
    fn missing_certificate_or_thing_skips_what_depends_on_it() {
        let mut found = matching();
        found.certificate = None;
        found.policies.clear();
        assert_eq!(diff(&expected(), &found), [Problem::CertificateMissing]);

        let mut found = matching();
        found.thing = None;
        found.principals.clear();
        found.groups.clear();
        assert_eq!(diff(&expected(), &found), [Problem::ThingMissing]);

        assert_eq!(
            diff(&expected(), &Found::default()),
            [Problem::CertificateMissing, Problem::ThingMissing]
        );
    }

    #[test]
    fn inactive_profile_expects_inactive_certificates() {
        let mut entry = expected();
        entry.certificate_status = ProfileStatus::Inactive;
        assert_eq!(
            diff(&entry, &matching()),
            [Problem::CertificateStatus {
                expected: "INACTIVE".into(),
                found: "ACTIVE".into()
            }]
        );
    }

    #[test]
    fn tally_and_summaries() {
        let mut tally = Tally {
            entries: 4,
            ..Tally::default()
        };
        tally.count_checked(&[]);
        tally.count_checked(&[
            Problem::PrincipalNotAttached,
            Problem::NotInGroup { group: "g".into() },
        ]);
        tally
            .rejected_by_manifest
            .insert("Thingpress.InvalidCertificate".into(), 1);
        tally
            .rejected_by_profile
            .insert("Thingpress.InvalidThingName".into(), 1);
        assert_eq!((tally.checked, tally.ok, tally.with_problems), (2, 1, 1));
        assert_eq!(tally.problems["notInGroup"], 1);

        let mut out = Vec::new();
        write_summary(&mut out, Format::Jsonl, Path::new("m.pem"), "w", &tally).unwrap();
        assert!(out.starts_with(br#"{"type":"summary","file":"m.pem","profile":"w","entries":4,"#));
        let json: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(json["type"], "summary");
        assert_eq!(json["withProblems"], 1);
        assert_eq!(json["problems"]["principalNotAttached"], 1);
        assert_eq!(
            json["rejectedByManifest"]["Thingpress.InvalidCertificate"],
            1
        );

        let mut out = Vec::new();
        write_summary(&mut out, Format::Table, Path::new("m.pem"), "w", &tally).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("m.pem against profile w\n"), "{text}");
        assert!(text.contains("principalNotAttached"), "{text}");
        assert!(text.contains("Thingpress.InvalidThingName"), "{text}");

        let mut out = Vec::new();
        write_problems(
            &mut out,
            Format::Jsonl,
            &expected(),
            &[Problem::ThingMissing],
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "{\"type\":\"entry\",\"index\":7,\"deviceId\":\"dev-7\",\"certificateId\":\"ab12\",\
             \"thingName\":\"w-dev-7\",\"problems\":[{\"kind\":\"thingMissing\"}]}\n"
        );

        let mut out = Vec::new();
        write_problems(
            &mut out,
            Format::Table,
            &expected(),
            &[Problem::ThingMissing, Problem::CertificateMissing],
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "entry 7 deviceId dev-7 thing w-dev-7: thing does not exist; certificate not registered\n"
        );
    }

    fn pacer() -> ReadPacer {
        ReadPacer::new(1000.0).unwrap()
    }

    #[tokio::test]
    async fn look_up_reads_every_attachment() {
        let certificate = mock!(Client::describe_certificate)
            .match_requests(|r| r.certificate_id() == Some(ID))
            .then_output(|| {
                DescribeCertificateOutput::builder()
                    .certificate_description(
                        CertificateDescription::builder()
                            .certificate_arn(ARN)
                            .status(CertificateStatus::Inactive)
                            .build(),
                    )
                    .build()
            });
        let thing = mock!(Client::describe_thing)
            .match_requests(|r| r.thing_name() == Some("w-dev-7"))
            .then_output(|| {
                DescribeThingOutput::builder()
                    .thing_type_name("Sensor")
                    .attributes("batch", "b1")
                    .build()
            });
        // Two pages of principals: the certificate is on the second.
        let principals = mock!(Client::list_thing_principals)
            .match_requests(|r| r.next_token().is_none())
            .then_output(|| {
                ListThingPrincipalsOutput::builder()
                    .principals("arn:aws:iot:us-east-1:123456789012:cert/zz")
                    .next_token("page2")
                    .build()
            });
        let principals2 = mock!(Client::list_thing_principals)
            .match_requests(|r| r.next_token() == Some("page2"))
            .then_output(|| ListThingPrincipalsOutput::builder().principals(ARN).build());
        let policies = mock!(Client::list_attached_policies)
            .match_requests(|r| r.target() == Some(ARN))
            .then_output(|| {
                ListAttachedPoliciesOutput::builder()
                    .policies(Policy::builder().policy_name("p0").build())
                    .build()
            });
        let groups = mock!(Client::list_thing_groups_for_thing).then_output(|| {
            ListThingGroupsForThingOutput::builder()
                .thing_groups(GroupNameAndArn::builder().group_name("g0").build())
                .thing_groups(GroupNameAndArn::builder().group_name("g1").build())
                .build()
        });
        let client = mock_client!(
            aws_sdk_iot,
            RuleMode::MatchAny,
            [
                &certificate,
                &thing,
                &principals,
                &principals2,
                &policies,
                &groups
            ]
        );
        let found = look_up(&client, &pacer(), &expected()).await.unwrap();
        assert_eq!(found.principals.len(), 2);
        assert_eq!(principals2.num_calls(), 1);
        assert_eq!(
            diff(&expected(), &found),
            [
                Problem::CertificateStatus {
                    expected: "ACTIVE".into(),
                    found: "INACTIVE".into()
                },
                Problem::PolicyNotAttached {
                    policy: "p1".into()
                }
            ]
        );
    }

    #[tokio::test]
    async fn look_up_of_a_missing_certificate_makes_no_policy_call() {
        let certificate = mock!(Client::describe_certificate).then_error(|| {
            DescribeCertificateError::ResourceNotFoundException(
                ResourceNotFoundException::builder()
                    .message("no such certificate")
                    .build(),
            )
        });
        let thing = mock!(Client::describe_thing).then_output(|| {
            DescribeThingOutput::builder()
                .thing_type_name("Sensor")
                .attributes("batch", "b1")
                .build()
        });
        let principals = mock!(Client::list_thing_principals)
            .then_output(|| ListThingPrincipalsOutput::builder().build());
        let policies = mock!(Client::list_attached_policies)
            .then_output(|| ListAttachedPoliciesOutput::builder().build());
        let groups = mock!(Client::list_thing_groups_for_thing).then_output(|| {
            ListThingGroupsForThingOutput::builder()
                .thing_groups(GroupNameAndArn::builder().group_name("g0").build())
                .thing_groups(GroupNameAndArn::builder().group_name("g1").build())
                .build()
        });
        let client = mock_client!(
            aws_sdk_iot,
            RuleMode::MatchAny,
            [&certificate, &thing, &principals, &policies, &groups]
        );
        let found = look_up(&client, &pacer(), &expected()).await.unwrap();
        assert_eq!(policies.num_calls(), 0);
        assert_eq!(diff(&expected(), &found), [Problem::CertificateMissing]);
    }
}
