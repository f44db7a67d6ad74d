//! What IoT holds for one decorated entry, looked up with paced calls: the certificate and its
//! status, the thing with its type and attributes, the thing's principals, the certificate's
//! policies and the thing's groups.

use std::collections::BTreeSet;

use anyhow::{Context, anyhow};
use aws_sdk_iot::operation::list_attached_policies::ListAttachedPoliciesOutput;
use aws_sdk_iot::operation::list_thing_groups_for_thing::ListThingGroupsForThingOutput;
use aws_sdk_iot::operation::list_thing_principals::ListThingPrincipalsOutput;

use thingpress_product::Decorated;

use super::diff::{Found, FoundCertificate, FoundThing};
use crate::commands::registry::pace::{ReadApi, ReadPacer};
use crate::target::sdk_message;

/// Largest page the per-thing list APIs accept.
const PAGE: i32 = 250;

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
    pacer
        .for_each_page(
            ReadApi::ListThingPrincipals,
            &format!("ListThingPrincipals {name}"),
            |token| {
                iot.list_thing_principals()
                    .thing_name(name)
                    .max_results(PAGE)
                    .set_next_token(token)
                    .send()
            },
            |page: &ListThingPrincipalsOutput| {
                principals.extend(page.principals().iter().cloned());
            },
        )
        .await?;
    Ok(principals)
}

async fn attached_policies(
    iot: &aws_sdk_iot::Client,
    pacer: &ReadPacer,
    arn: &str,
) -> anyhow::Result<BTreeSet<String>> {
    let mut policies = BTreeSet::new();
    pacer
        .for_each_page(
            ReadApi::ListAttachedPolicies,
            &format!("ListAttachedPolicies {arn}"),
            |marker| {
                iot.list_attached_policies()
                    .target(arn)
                    .page_size(PAGE)
                    .set_marker(marker)
                    .send()
            },
            |page: &ListAttachedPoliciesOutput| {
                policies.extend(
                    page.policies()
                        .iter()
                        .filter_map(|p| p.policy_name().map(str::to_owned)),
                );
            },
        )
        .await?;
    Ok(policies)
}

async fn thing_groups(
    iot: &aws_sdk_iot::Client,
    pacer: &ReadPacer,
    name: &str,
) -> anyhow::Result<BTreeSet<String>> {
    let mut groups = BTreeSet::new();
    pacer
        .for_each_page(
            ReadApi::ListThingGroupsForThing,
            &format!("ListThingGroupsForThing {name}"),
            |token| {
                iot.list_thing_groups_for_thing()
                    .thing_name(name)
                    .max_results(PAGE)
                    .set_next_token(token)
                    .send()
            },
            |page: &ListThingGroupsForThingOutput| {
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

#[cfg(test)]
mod tests {
    use super::super::diff::fixtures::{ARN, ID, expected};
    use super::super::diff::{Problem, diff};
    use super::*;
    use aws_sdk_iot::Client;
    use aws_sdk_iot::operation::describe_certificate::{
        DescribeCertificateError, DescribeCertificateOutput,
    };
    use aws_sdk_iot::operation::describe_thing::DescribeThingOutput;
    use aws_sdk_iot::types::error::ResourceNotFoundException;
    use aws_sdk_iot::types::{CertificateDescription, CertificateStatus, GroupNameAndArn, Policy};
    use aws_smithy_mocks::{RuleMode, mock, mock_client};

    fn pacer() -> ReadPacer {
        ReadPacer::new(
            1000.0,
            &thingpress_importer::Quotas::default().scaled(1000.0),
            0.1,
        )
        .unwrap()
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
