//! Pacing of the registry's read APIs: each has its own account-level quota, which an import
//! running at the same time also uses, so `registry` stays at a conservative share of it.

use std::sync::Mutex;
use std::time::Duration;

use anyhow::bail;
use aws_sdk_iot::error::{ProvideErrorMetadata, SdkError};
use thingpress_importer::{Api, DEFAULT_SAFETY_FACTOR, Quotas, TokenBucket};
use tokio::time::Instant;

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
    /// Every paced read API.
    pub const ALL: [ReadApi; 11] = [
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

    /// AWS's default requests per second per account and Region (Service Quotas "<Op> API TPS").
    /// ListCertificates, ListAttachedPolicies and ListPolicies have no published per-API figure:
    /// 10, the lowest of the registry's list quotas, is assumed for them.
    pub fn default_quota(self) -> f64 {
        match self {
            ReadApi::DescribeCertificate => Quotas::default().get(Api::DescribeCertificate),
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

    fn slot(self) -> usize {
        self as usize
    }
}

/// One token bucket (burst 1) per read API at `default quota × scale × safety factor`.
#[derive(Debug)]
pub struct ReadPacer {
    origin: Instant,
    rates: [f64; ReadApi::ALL.len()],
    buckets: [Mutex<TokenBucket>; ReadApi::ALL.len()],
}

impl ReadPacer {
    /// Paces every API at its default quota × `scale` × the importer's safety factor (0.8).
    pub fn new(scale: f64) -> anyhow::Result<ReadPacer> {
        if !(scale.is_finite() && scale > 0.0) {
            bail!("--quota-scale must be a positive number, got {scale}");
        }
        let rates = ReadApi::ALL.map(|api| api.default_quota() * scale * DEFAULT_SAFETY_FACTOR);
        let buckets = rates
            .iter()
            .map(|rate| TokenBucket::new(*rate, 1).map(Mutex::new))
            .collect::<Result<Vec<_>, _>>()?;
        let Ok(buckets) = buckets.try_into() else {
            bail!("internal: one token bucket per read API expected");
        };
        Ok(ReadPacer {
            origin: Instant::now(),
            rates,
            buckets,
        })
    }

    /// The paced rate of one API, calls per second.
    pub fn rate(&self, api: ReadApi) -> f64 {
        self.rates.get(api.slot()).copied().unwrap_or(0.0)
    }

    /// Waits until a call of `api` keeps within its rate.
    pub async fn acquire(&self, api: ReadApi) {
        let now = Instant::now();
        let Some(bucket) = self.buckets.get(api.slot()) else {
            return;
        };
        // A poisoned lock only means another caller panicked mid-reserve; the schedule is valid.
        let go = bucket
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .reserve(now.saturating_duration_since(self.origin));
        let at = self.origin + go;
        if at > now {
            tokio::time::sleep_until(at).await;
        }
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
            self.acquire(api).await;
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
}

fn is_throttle<E: ProvideErrorMetadata, R>(err: &SdkError<E, R>) -> bool {
    err.as_service_error()
        .and_then(|e| e.code())
        .is_some_and(thingpress_aws::is_throttling_code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_follow_the_quotas() {
        let pacer = ReadPacer::new(1.0).unwrap();
        assert!((pacer.rate(ReadApi::DescribeCertificate) - 8.0).abs() < 1e-9);
        assert!((pacer.rate(ReadApi::DescribeThing) - 280.0).abs() < 1e-9);
        assert!((pacer.rate(ReadApi::ListThingsInThingGroup) - 20.0).abs() < 1e-9);
        let fast = ReadPacer::new(10.0).unwrap();
        assert!((fast.rate(ReadApi::ListThings) - 80.0).abs() < 1e-9);
        assert!(ReadPacer::new(0.0).is_err());
        assert!(ReadPacer::new(f64::NAN).is_err());
    }

    #[tokio::test]
    async fn calls_are_spaced_by_the_rate() {
        let pacer = ReadPacer::new(1.0).unwrap();
        let start = Instant::now();
        for _ in 0..9 {
            pacer.acquire(ReadApi::ListThings).await;
        }
        // 8/s, burst 1: the ninth call waits a full second (real time: about one second).
        assert!(start.elapsed() >= Duration::from_secs(1));
        let other = Instant::now();
        pacer.acquire(ReadApi::DescribeThing).await;
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
}
