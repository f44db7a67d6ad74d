//! `thingpress registry summary`: what the IoT registry holds, counted page by page.

use std::collections::BTreeMap;
use std::io::Write;

use anyhow::Context;
use aws_sdk_iot::operation::list_certificates::ListCertificatesOutput;
use aws_sdk_iot::operation::list_policies::ListPoliciesOutput;
use aws_sdk_iot::operation::list_thing_groups::ListThingGroupsOutput;
use aws_sdk_iot::operation::list_thing_types::ListThingTypesOutput;
use aws_sdk_iot::operation::list_things::ListThingsOutput;
use aws_sdk_iot::operation::list_things_in_thing_group::ListThingsInThingGroupOutput;
use serde::Serialize;

use super::pace::{ReadApi, ReadPacer};
use crate::progress::Progress;

/// Largest page every list API accepts.
const PAGE: i32 = 250;

/// What to count: everything, or one thing type's / one thing group's things.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Count only things of this type (ListThings filtered by type); other types are not listed.
    pub thing_type: Option<String>,
    /// Count only this group's things; other groups are not listed.
    pub group: Option<String>,
}

/// Counts of things and certificates.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    /// Things counted (all, or those of `--thing-type`).
    pub things: u64,
    /// Things without a thing type (0 with `--thing-type`).
    pub things_without_type: u64,
    /// Things per thing type; every listed type appears, with 0 when it has none.
    pub things_per_type: BTreeMap<String, u64>,
    /// Direct members per thing group; every listed group appears.
    pub things_per_group: BTreeMap<String, u64>,
    /// Certificates in the account and Region.
    pub certificates: u64,
    /// Certificates per status (ACTIVE, INACTIVE, REVOKED, PENDING_TRANSFER, …).
    pub certificates_by_status: BTreeMap<String, u64>,
    /// IoT policies in the account and Region.
    pub policies: u64,
}

/// Counts things per type and group, and certificates per status, one paced page at a time
/// (memory holds counts and names of types and groups, never the things themselves).
pub async fn summarize(
    iot: &aws_sdk_iot::Client,
    pacer: &ReadPacer,
    filter: &Filter,
    progress: &Progress,
) -> anyhow::Result<Summary> {
    // Thing types first, so types without things show as 0.
    let mut summary = Summary {
        things_per_type: match &filter.thing_type {
            Some(thing_type) => BTreeMap::from([(thing_type.clone(), 0)]),
            None => thing_types(iot, pacer).await?,
        },
        ..Summary::default()
    };
    count_things(iot, pacer, filter, progress, &mut summary).await?;
    let groups = match &filter.group {
        Some(group) => vec![group.clone()],
        None => thing_groups(iot, pacer).await?,
    };
    for (n, group) in groups.iter().enumerate() {
        let members = group_members(iot, pacer, group).await?;
        summary.things_per_group.insert(group.clone(), members);
        progress.message(format!("thing groups: {} of {}", n + 1, groups.len()));
    }
    count_certificates(iot, pacer, progress, &mut summary).await?;
    summary.policies = count_policies(iot, pacer).await?;
    Ok(summary)
}

/// Every thing type, each with 0 things.
async fn thing_types(
    iot: &aws_sdk_iot::Client,
    pacer: &ReadPacer,
) -> anyhow::Result<BTreeMap<String, u64>> {
    let mut types = BTreeMap::new();
    pacer
        .for_each_page(
            ReadApi::ListThingTypes,
            "ListThingTypes",
            |token| {
                iot.list_thing_types()
                    .max_results(PAGE)
                    .set_next_token(token)
                    .send()
            },
            |page: &ListThingTypesOutput| {
                for name in page
                    .thing_types()
                    .iter()
                    .filter_map(|t| t.thing_type_name())
                {
                    types.entry(name.to_owned()).or_insert(0);
                }
            },
        )
        .await?;
    Ok(types)
}

/// Counts the things (of the filter's type) in all and per thing type.
async fn count_things(
    iot: &aws_sdk_iot::Client,
    pacer: &ReadPacer,
    filter: &Filter,
    progress: &Progress,
    summary: &mut Summary,
) -> anyhow::Result<()> {
    pacer
        .for_each_page(
            ReadApi::ListThings,
            "ListThings",
            |token| {
                iot.list_things()
                    .max_results(PAGE)
                    .set_thing_type_name(filter.thing_type.clone())
                    .set_next_token(token)
                    .send()
            },
            |page: &ListThingsOutput| {
                for thing in page.things() {
                    summary.things += 1;
                    match thing.thing_type_name() {
                        Some(name) => {
                            *summary.things_per_type.entry(name.to_owned()).or_insert(0) += 1;
                        }
                        None => summary.things_without_type += 1,
                    }
                }
                progress.message(format!("{} things", summary.things));
            },
        )
        .await
}

/// The names of every thing group.
async fn thing_groups(iot: &aws_sdk_iot::Client, pacer: &ReadPacer) -> anyhow::Result<Vec<String>> {
    let mut groups = Vec::new();
    pacer
        .for_each_page(
            ReadApi::ListThingGroups,
            "ListThingGroups",
            |token| {
                iot.list_thing_groups()
                    .max_results(PAGE)
                    .set_next_token(token)
                    .send()
            },
            |page: &ListThingGroupsOutput| {
                groups.extend(
                    page.thing_groups()
                        .iter()
                        .filter_map(|g| g.group_name().map(str::to_owned)),
                );
            },
        )
        .await?;
    Ok(groups)
}

/// The number of direct members of one thing group.
async fn group_members(
    iot: &aws_sdk_iot::Client,
    pacer: &ReadPacer,
    group: &str,
) -> anyhow::Result<u64> {
    let mut members = 0;
    pacer
        .for_each_page(
            ReadApi::ListThingsInThingGroup,
            &format!("ListThingsInThingGroup {group}"),
            |token| {
                iot.list_things_in_thing_group()
                    .thing_group_name(group)
                    .max_results(PAGE)
                    .set_next_token(token)
                    .send()
            },
            |page: &ListThingsInThingGroupOutput| members += page.things().len() as u64,
        )
        .await?;
    Ok(members)
}

/// Counts the certificates in all and per status.
async fn count_certificates(
    iot: &aws_sdk_iot::Client,
    pacer: &ReadPacer,
    progress: &Progress,
    summary: &mut Summary,
) -> anyhow::Result<()> {
    pacer
        .for_each_page(
            ReadApi::ListCertificates,
            "ListCertificates",
            |marker| {
                iot.list_certificates()
                    .page_size(PAGE)
                    .set_marker(marker)
                    .send()
            },
            |page: &ListCertificatesOutput| {
                for certificate in page.certificates() {
                    summary.certificates += 1;
                    let status = certificate
                        .status()
                        .map(|s| s.as_str().to_owned())
                        .unwrap_or_else(|| "unknown".to_owned());
                    *summary.certificates_by_status.entry(status).or_insert(0) += 1;
                }
                progress.message(format!("{} certificates", summary.certificates));
            },
        )
        .await
}

/// The number of IoT policies.
async fn count_policies(iot: &aws_sdk_iot::Client, pacer: &ReadPacer) -> anyhow::Result<u64> {
    let mut policies = 0;
    pacer
        .for_each_page(
            ReadApi::ListPolicies,
            "ListPolicies",
            |marker| {
                iot.list_policies()
                    .page_size(PAGE)
                    .set_marker(marker)
                    .send()
            },
            |page: &ListPoliciesOutput| policies += page.policies().len() as u64,
        )
        .await?;
    Ok(policies)
}

/// Writes the summary as aligned text.
pub fn write_table(out: &mut impl Write, summary: &Summary, filter: &Filter) -> anyhow::Result<()> {
    let mut lines: Vec<(String, Option<u64>)> = Vec::new();
    let things = match &filter.thing_type {
        Some(t) => format!("things of type {t}"),
        None => "things".to_owned(),
    };
    lines.push((things, Some(summary.things)));
    if filter.thing_type.is_none() {
        lines.push((
            "  without a thing type".to_owned(),
            Some(summary.things_without_type),
        ));
    }
    lines.push(("certificates".to_owned(), Some(summary.certificates)));
    for (status, n) in &summary.certificates_by_status {
        lines.push((format!("  {status}"), Some(*n)));
    }
    lines.push(("policies".to_owned(), Some(summary.policies)));
    lines.push((
        format!("things per thing type ({})", summary.things_per_type.len()),
        None,
    ));
    for (name, n) in &summary.things_per_type {
        lines.push((format!("  {name}"), Some(*n)));
    }
    lines.push((
        format!(
            "things per thing group ({})",
            summary.things_per_group.len()
        ),
        None,
    ));
    for (name, n) in &summary.things_per_group {
        lines.push((format!("  {name}"), Some(*n)));
    }
    let width = lines
        .iter()
        .map(|(l, _)| l.chars().count())
        .max()
        .unwrap_or(0);
    for (label, n) in lines {
        let line = match n {
            Some(n) => format!("{label:<width$}  {n:>10}"),
            None => label,
        };
        writeln!(out, "{line}").context("cannot write to stdout")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_iot::Client;
    use aws_sdk_iot::types::{
        Certificate, CertificateStatus, GroupNameAndArn, Policy, ThingAttribute,
        ThingTypeDefinition,
    };
    use aws_smithy_mocks::{RuleMode, mock, mock_client};

    fn thing(name: &str, thing_type: Option<&str>) -> ThingAttribute {
        ThingAttribute::builder()
            .thing_name(name)
            .set_thing_type_name(thing_type.map(str::to_owned))
            .build()
    }

    /// Every list API's answer is mocked (two pages where paging matters), hence the length.
    #[tokio::test]
    async fn counts_every_page() {
        let types = mock!(Client::list_thing_types).then_output(|| {
            ListThingTypesOutput::builder()
                .thing_types(ThingTypeDefinition::builder().thing_type_name("A").build())
                .thing_types(
                    ThingTypeDefinition::builder()
                        .thing_type_name("Idle")
                        .build(),
                )
                .build()
        });
        let things1 = mock!(Client::list_things)
            .match_requests(|r| r.next_token().is_none())
            .then_output(|| {
                ListThingsOutput::builder()
                    .things(thing("t1", Some("A")))
                    .things(thing("t2", None))
                    .next_token("p2")
                    .build()
            });
        let things2 = mock!(Client::list_things)
            .match_requests(|r| r.next_token() == Some("p2"))
            .then_output(|| {
                ListThingsOutput::builder()
                    .things(thing("t3", Some("A")))
                    .things(thing("t4", Some("B")))
                    .next_token("")
                    .build()
            });
        let groups = mock!(Client::list_thing_groups).then_output(|| {
            ListThingGroupsOutput::builder()
                .thing_groups(GroupNameAndArn::builder().group_name("g").build())
                .build()
        });
        let members = mock!(Client::list_things_in_thing_group)
            .match_requests(|r| r.thing_group_name() == Some("g"))
            .then_output(|| {
                ListThingsInThingGroupOutput::builder()
                    .things("t1")
                    .things("t3")
                    .build()
            });
        let certs = mock!(Client::list_certificates).then_output(|| {
            ListCertificatesOutput::builder()
                .certificates(
                    Certificate::builder()
                        .status(CertificateStatus::Active)
                        .build(),
                )
                .certificates(
                    Certificate::builder()
                        .status(CertificateStatus::Revoked)
                        .build(),
                )
                .certificates(
                    Certificate::builder()
                        .status(CertificateStatus::Active)
                        .build(),
                )
                .build()
        });
        let policies1 = mock!(Client::list_policies)
            .match_requests(|r| r.marker().is_none())
            .then_output(|| {
                ListPoliciesOutput::builder()
                    .policies(Policy::builder().policy_name("p1").build())
                    .next_marker("m2")
                    .build()
            });
        let policies2 = mock!(Client::list_policies)
            .match_requests(|r| r.marker() == Some("m2"))
            .then_output(|| {
                ListPoliciesOutput::builder()
                    .policies(Policy::builder().policy_name("p2").build())
                    .build()
            });
        let client = mock_client!(
            aws_sdk_iot,
            RuleMode::MatchAny,
            [
                &types, &things1, &things2, &groups, &members, &certs, &policies1, &policies2
            ]
        );
        let pacer = ReadPacer::new(
            1000.0,
            &thingpress_importer::Quotas::default().scaled(1000.0),
            0.1,
        )
        .unwrap();
        let summary = summarize(&client, &pacer, &Filter::default(), &Progress::spinner())
            .await
            .unwrap();
        assert_eq!(things2.num_calls(), 1);
        assert_eq!(
            summary,
            Summary {
                things: 4,
                things_without_type: 1,
                things_per_type: BTreeMap::from([
                    ("A".to_owned(), 2),
                    ("B".to_owned(), 1),
                    ("Idle".to_owned(), 0)
                ]),
                things_per_group: BTreeMap::from([("g".to_owned(), 2)]),
                certificates: 3,
                certificates_by_status: BTreeMap::from([
                    ("ACTIVE".to_owned(), 2),
                    ("REVOKED".to_owned(), 1)
                ]),
                policies: 2,
            }
        );
        let mut out = Vec::new();
        write_table(&mut out, &summary, &Filter::default()).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("things per thing type (3)\n"), "{text}");
        assert!(
            text.lines()
                .any(|l| l.starts_with("  REVOKED") && l.ends_with(" 1")),
            "{text}"
        );
    }

    #[tokio::test]
    async fn filters_list_only_what_they_name() {
        let things = mock!(Client::list_things)
            .match_requests(|r| r.thing_type_name() == Some("A"))
            .then_output(|| {
                ListThingsOutput::builder()
                    .things(thing("t1", Some("A")))
                    .build()
            });
        let members = mock!(Client::list_things_in_thing_group)
            .match_requests(|r| r.thing_group_name() == Some("g"))
            .then_output(|| ListThingsInThingGroupOutput::builder().things("t1").build());
        let certs = mock!(Client::list_certificates)
            .then_output(|| ListCertificatesOutput::builder().build());
        let policies =
            mock!(Client::list_policies).then_output(|| ListPoliciesOutput::builder().build());
        // No ListThingTypes or ListThingGroups rule: calling them would fail the test.
        let client = mock_client!(
            aws_sdk_iot,
            RuleMode::MatchAny,
            [&things, &members, &certs, &policies]
        );
        let filter = Filter {
            thing_type: Some("A".into()),
            group: Some("g".into()),
        };
        let pacer = ReadPacer::new(
            1000.0,
            &thingpress_importer::Quotas::default().scaled(1000.0),
            0.1,
        )
        .unwrap();
        let summary = summarize(&client, &pacer, &filter, &Progress::spinner())
            .await
            .unwrap();
        assert_eq!(summary.things, 1);
        assert_eq!(
            summary.things_per_type,
            BTreeMap::from([("A".to_owned(), 1)])
        );
        assert_eq!(
            summary.things_per_group,
            BTreeMap::from([("g".to_owned(), 1)])
        );
        assert_eq!(summary.certificates, 0);
    }
}
