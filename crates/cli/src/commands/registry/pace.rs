//! Pacing of the registry's read APIs: each has its own account-level quota, which an import
//! running at the same time also uses, so `registry` stays at a conservative share of it. The
//! buckets are the importer's [`Pacer`]; this adds the registry's throttle retry and the one
//! paced pagination every list call goes through.

use std::time::Duration;

use anyhow::{anyhow, bail};
use aws_sdk_iot::error::{ProvideErrorMetadata, SdkError};
use thingpress_importer::{Api, DEFAULT_RESERVE, PacedApi, Pacer};

use crate::target::sdk_message;

/// An AWS IoT read API that `registry` calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadApi {
    DescribeCertificate,
    DescribeThing,
    ListThingPrincipals,
    ListAttachedPolicies,
    ListThingGroupsForThing,
    ListCertificates,
    ListThings,
    ListThingTypes,
    ListThingGroups,
    ListThingsInThingGroup,
    ListPolicies,
}

impl ReadApi {
    /// AWS's default requests per second per account and Region (Service Quotas "<Op> API TPS").
    /// ListCertificates, ListAttachedPolicies and ListPolicies have no published per-API figure:
    /// 10, the lowest of the registry's list quotas, is assumed for them.
    pub fn default_quota(self) -> f64 {
        match self {
            ReadApi::DescribeCertificate => Api::DescribeCertificate.default_quota(),
            ReadApi::DescribeThing => 350.0,
            ReadApi::ListThingGroupsForThing => 100.0,
            ReadApi::ListThingsInThingGroup => 25.0,
            ReadApi::ListThingPrincipals
            | ReadApi::ListAttachedPolicies
            | ReadApi::ListCertificates
            | ReadApi::ListThings
            | ReadApi::ListThingTypes
            | ReadApi::ListThingGroups
            | ReadApi::ListPolicies => 10.0,
        }
    }
}

impl PacedApi for ReadApi {
    const ALL: &'static [ReadApi] = &[
        ReadApi::DescribeCertificate,
        ReadApi::DescribeThing,
        ReadApi::ListThingPrincipals,
        ReadApi::ListAttachedPolicies,
        ReadApi::ListThingGroupsForThing,
        ReadApi::ListCertificates,
        ReadApi::ListThings,
        ReadApi::ListThingTypes,
        ReadApi::ListThingGroups,
        ReadApi::ListThingsInThingGroup,
        ReadApi::ListPolicies,
    ];

    fn slot(self) -> usize {
        self as usize
    }
}

/// A page of a list API's answer: where the next page starts.
pub trait Page {
    /// The next page's token or marker; absent or empty on the last page.
    fn next_page(&self) -> Option<&str>;
}

/// Pages that say where the next one starts with `next_token` or `next_marker`.
macro_rules! pages {
    ($($output:ty => $next:ident),+ $(,)?) => {
        $(impl Page for $output {
            fn next_page(&self) -> Option<&str> {
                self.$next()
            }
        })+
    };
}

pages! {
    aws_sdk_iot::operation::list_thing_principals::ListThingPrincipalsOutput => next_token,
    aws_sdk_iot::operation::list_attached_policies::ListAttachedPoliciesOutput => next_marker,
    aws_sdk_iot::operation::list_thing_groups_for_thing::ListThingGroupsForThingOutput => next_token,
    aws_sdk_iot::operation::list_certificates::ListCertificatesOutput => next_marker,
    aws_sdk_iot::operation::list_things::ListThingsOutput => next_token,
    aws_sdk_iot::operation::list_thing_types::ListThingTypesOutput => next_token,
    aws_sdk_iot::operation::list_thing_groups::ListThingGroupsOutput => next_token,
    aws_sdk_iot::operation::list_things_in_thing_group::ListThingsInThingGroupOutput => next_token,
    aws_sdk_iot::operation::list_policies::ListPoliciesOutput => next_marker,
}

/// The importer's token buckets (burst 1) over the read APIs, at `default quota × scale ×
/// (1 − reserve)`.
#[derive(Debug)]
pub struct ReadPacer {
    pacer: Pacer<ReadApi>,
}

impl ReadPacer {
    /// Paces every API at its default quota × `scale`, less the importer's default reserve.
    pub fn new(scale: f64) -> anyhow::Result<ReadPacer> {
        if !(scale.is_finite() && scale > 0.0) {
            bail!("--quota-scale must be a positive number, got {scale}");
        }
        let pacer = Pacer::with_rates(|api: ReadApi| {
            api.default_quota() * scale * (1.0 - DEFAULT_RESERVE)
        })?;
        Ok(ReadPacer { pacer })
    }

    /// The paced rate of one API, calls per second.
    pub fn rate(&self, api: ReadApi) -> f64 {
        self.pacer.rate(api)
    }

    /// Makes a paced call; a throttle that outlives the SDK's short retry is tried again after
    /// 1, 2, 4 and 8 s (an import may be using the same quota), then returned.
    pub async fn call<T, E, R, F, Fut>(
        &self,
        api: ReadApi,
        mut call: F,
    ) -> Result<T, SdkError<E, R>>
    where
        E: ProvideErrorMetadata,
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, SdkError<E, R>>>,
    {
        let mut backoff = Duration::from_secs(1);
        let mut attempts_left = 4;
        loop {
            self.pacer.acquire(api).await;
            match call().await {
                Err(err) if attempts_left > 0 && is_throttle(&err) => {
                    attempts_left -= 1;
                    tokio::time::sleep(backoff).await;
                    backoff *= 2;
                }
                other => return other,
            }
        }
    }

    /// Every page of a list call, each a paced [`ReadPacer::call`]: `request(token)` sends the
    /// call for the page that starts at `token` (`None`: the first), `on_page` sees each answer.
    /// A failure is an error that starts with `what` (the API and what it lists).
    pub async fn for_each_page<O, E, R, Fut>(
        &self,
        api: ReadApi,
        what: &str,
        mut request: impl FnMut(Option<String>) -> Fut,
        mut on_page: impl FnMut(&O),
    ) -> anyhow::Result<()>
    where
        O: Page,
        E: ProvideErrorMetadata + std::error::Error + 'static,
        R: std::fmt::Debug,
        Fut: Future<Output = Result<O, SdkError<E, R>>>,
    {
        let mut token: Option<String> = None;
        loop {
            let out = self
                .call(api, || request(token.clone()))
                .await
                .map_err(|e| anyhow!("{what}: {}", sdk_message(&e)))?;
            on_page(&out);
            token = out.next_page().filter(|t| !t.is_empty()).map(str::to_owned);
            if token.is_none() {
                return Ok(());
            }
        }
    }
}

fn is_throttle<E: ProvideErrorMetadata, R>(err: &SdkError<E, R>) -> bool {
    err.as_service_error()
        .and_then(|e| e.code())
        .is_some_and(thingpress_aws::is_throttling_code)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::time::Instant;

    #[test]
    fn rates_follow_the_quotas() {
        let pacer = ReadPacer::new(1.0).unwrap();
        assert!((pacer.rate(ReadApi::DescribeCertificate) - 9.0).abs() < 1e-9);
        assert!((pacer.rate(ReadApi::DescribeThing) - 315.0).abs() < 1e-9);
        assert!((pacer.rate(ReadApi::ListThingsInThingGroup) - 22.5).abs() < 1e-9);
        let fast = ReadPacer::new(10.0).unwrap();
        assert!((fast.rate(ReadApi::ListThings) - 90.0).abs() < 1e-9);
        assert!(ReadPacer::new(0.0).is_err());
        assert!(ReadPacer::new(f64::NAN).is_err());
    }

    #[tokio::test]
    async fn calls_are_spaced_by_the_rate() {
        let pacer = ReadPacer::new(1.0).unwrap();
        let start = Instant::now();
        for _ in 0..10 {
            pacer.pacer.acquire(ReadApi::ListThings).await;
        }
        // 9/s, burst 1: the tenth call waits a full second (real time: about one second).
        assert!(start.elapsed() >= Duration::from_secs(1));
        let other = Instant::now();
        pacer.pacer.acquire(ReadApi::DescribeThing).await;
        assert!(other.elapsed() < Duration::from_millis(5));
    }
}

#[cfg(test)]
mod retry_tests {
    use super::*;
    use aws_sdk_iot::Client;
    use aws_sdk_iot::error::ErrorMetadata;
    use aws_sdk_iot::operation::describe_thing::{DescribeThingError, DescribeThingOutput};
    use aws_sdk_iot::types::error::ThrottlingException;
    use aws_smithy_mocks::{RuleMode, mock, mock_client};
    use tokio::time::Instant;

    fn throttled() -> DescribeThingError {
        DescribeThingError::ThrottlingException(
            ThrottlingException::builder()
                .message("Rate exceeded")
                .meta(ErrorMetadata::builder().code("ThrottlingException").build())
                .build(),
        )
    }

    #[tokio::test]
    async fn a_lasting_throttle_is_retried_after_a_pause() {
        let rule = mock!(Client::describe_thing)
            .sequence()
            .error(throttled)
            .output(|| DescribeThingOutput::builder().thing_name("t").build())
            .build();
        // Without the SDK's own retry, so the second call can only be this retry's.
        let client = mock_client!(aws_sdk_iot, RuleMode::Sequential, [&rule], |c| c
            .retry_config(aws_sdk_iot::config::retry::RetryConfig::disabled()));
        let pacer = ReadPacer::new(1000.0).unwrap();
        let start = Instant::now();
        let out = pacer
            .call(ReadApi::DescribeThing, || {
                client.describe_thing().thing_name("t").send()
            })
            .await
            .unwrap();
        assert_eq!(out.thing_name(), Some("t"));
        assert_eq!(rule.num_calls(), 2);
        assert!(start.elapsed() >= Duration::from_secs(1));
    }

    #[tokio::test]
    async fn other_errors_are_returned_at_once() {
        let rule = mock!(Client::describe_thing).then_error(|| {
            DescribeThingError::ResourceNotFoundException(
                aws_sdk_iot::types::error::ResourceNotFoundException::builder().build(),
            )
        });
        let client = mock_client!(aws_sdk_iot, RuleMode::Sequential, [&rule]);
        let pacer = ReadPacer::new(1000.0).unwrap();
        let err = pacer
            .call(ReadApi::DescribeThing, || {
                client.describe_thing().thing_name("t").send()
            })
            .await
            .unwrap_err();
        assert!(
            err.as_service_error()
                .is_some_and(|e| e.is_resource_not_found_exception())
        );
        assert_eq!(rule.num_calls(), 1);
    }

    #[tokio::test]
    async fn pages_are_followed_to_the_last_and_failures_named() {
        use aws_sdk_iot::operation::list_things::{ListThingsError, ListThingsOutput};
        use aws_sdk_iot::types::ThingAttribute;
        let thing = |name: &str| ThingAttribute::builder().thing_name(name).build();
        let first = mock!(Client::list_things)
            .match_requests(|r| r.next_token().is_none())
            .then_output(move || {
                ListThingsOutput::builder()
                    .things(thing("a"))
                    .next_token("p2")
                    .build()
            });
        let last = mock!(Client::list_things)
            .match_requests(|r| r.next_token() == Some("p2"))
            .then_output(move || {
                ListThingsOutput::builder()
                    .things(thing("b"))
                    .things(thing("c"))
                    .next_token("")
                    .build()
            });
        let client = mock_client!(aws_sdk_iot, RuleMode::MatchAny, [&first, &last]);
        let pacer = ReadPacer::new(1000.0).unwrap();
        let mut names = Vec::new();
        pacer
            .for_each_page(
                ReadApi::ListThings,
                "ListThings",
                |token| client.list_things().set_next_token(token).send(),
                |page: &ListThingsOutput| {
                    names.extend(
                        page.things()
                            .iter()
                            .filter_map(|t| t.thing_name())
                            .map(str::to_owned),
                    );
                },
            )
            .await
            .unwrap();
        assert_eq!(names, ["a", "b", "c"]);
        assert_eq!((first.num_calls(), last.num_calls()), (1, 1));

        let denied = mock!(Client::list_things).then_error(|| {
            ListThingsError::UnauthorizedException(
                aws_sdk_iot::types::error::UnauthorizedException::builder()
                    .message("not you")
                    .meta(
                        ErrorMetadata::builder()
                            .code("UnauthorizedException")
                            .message("not you")
                            .build(),
                    )
                    .build(),
            )
        });
        let client = mock_client!(aws_sdk_iot, RuleMode::Sequential, [&denied]);
        let err = pacer
            .for_each_page(
                ReadApi::ListThings,
                "ListThings of type T",
                |token| client.list_things().set_next_token(token).send(),
                |_: &ListThingsOutput| {},
            )
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "ListThings of type T: UnauthorizedException: not you"
        );
    }
}
