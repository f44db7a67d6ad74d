//! Pacing of the registry's read APIs. Each has its own account-level quota, which imports
//! running at the same time may also use: DescribeCertificate is one of an import's APIs, and
//! the others are shared with any other `registry` command. So a command holds a lease on the
//! account-wide budget (thingpress_budget) under the same operation names as Register's, and
//! runs at the share it is granted; without a budget table it runs at the cap, quota × (1 −
//! reserve). Either way AIMD slows an API that IoT throttles. The buckets are the importer's
//! [`Pacer`]; this adds the registry's throttle retry and the one paced pagination every list
//! call goes through.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail};
use aws_sdk_iot::error::{ProvideErrorMetadata, SdkError};
use thingpress_budget::{
    BudgetError, BudgetHolder, HolderId, LeaseTable, Rates, Scope, keep_heartbeating,
};
use thingpress_importer::{Api, MAX_RESERVE, PacedApi, Pacer, Quotas};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

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
    /// Register's own API when runs call this one too (an import looks up certificates it
    /// finds already registered, an activation lists a thing's certificates): its quota is then
    /// the stack's, shared under one name.
    pub fn import_api(self) -> Option<Api> {
        match self {
            ReadApi::DescribeCertificate => Some(Api::DescribeCertificate),
            ReadApi::DescribeThing => Some(Api::DescribeThing),
            ReadApi::ListThingPrincipals => Some(Api::ListThingPrincipals),
            ReadApi::ListAttachedPolicies => Some(Api::ListAttachedPolicies),
            ReadApi::ListThingGroupsForThing => Some(Api::ListThingGroupsForThing),
            _ => None,
        }
    }

    /// The AWS operation name, under which the budget shares the API. The APIs an import calls
    /// too take the importer catalogue's name, so their leases and Register's are one budget.
    pub fn as_str(self) -> &'static str {
        match self {
            ReadApi::DescribeCertificate => Api::DescribeCertificate.as_str(),
            ReadApi::DescribeThing => Api::DescribeThing.as_str(),
            ReadApi::ListThingPrincipals => Api::ListThingPrincipals.as_str(),
            ReadApi::ListAttachedPolicies => Api::ListAttachedPolicies.as_str(),
            ReadApi::ListThingGroupsForThing => Api::ListThingGroupsForThing.as_str(),
            ReadApi::ListCertificates => "ListCertificates",
            ReadApi::ListThings => "ListThings",
            ReadApi::ListThingTypes => "ListThingTypes",
            ReadApi::ListThingGroups => "ListThingGroups",
            ReadApi::ListThingsInThingGroup => "ListThingsInThingGroup",
            ReadApi::ListPolicies => "ListPolicies",
        }
    }

    /// AWS's default requests per second per account and Region (Service Quotas "<Op> API TPS").
    /// ListCertificates, ListAttachedPolicies and ListPolicies have no published per-API figure:
    /// 10, the lowest of the registry's list quotas, is assumed for them.
    pub fn default_quota(self) -> f64 {
        if let Some(api) = self.import_api() {
            return api.default_quota();
        }
        match self {
            ReadApi::ListThingsInThingGroup => 25.0,
            ReadApi::DescribeCertificate
            | ReadApi::DescribeThing
            | ReadApi::ListThingPrincipals
            | ReadApi::ListAttachedPolicies
            | ReadApi::ListThingGroupsForThing
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
    fn name(self) -> &'static str {
        self.as_str()
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

/// The importer's token buckets (burst 1) over the read APIs, each at its cap (its quota × (1 −
/// reserve)), or at its share of the account-wide budget once [`ReadPacer::share`] holds a
/// lease.
#[derive(Debug)]
pub struct ReadPacer {
    pacer: Arc<Pacer<ReadApi>>,
    caps: Rates,
    lease: Option<Held>,
}

/// A lease on the budget and the task that heartbeats it until `stop` is sent or dropped.
struct Held {
    holder: Arc<BudgetHolder>,
    task: JoinHandle<()>,
    stop: oneshot::Sender<()>,
}

impl Held {
    /// Stops the heartbeats once any write in flight is done, so none lands after a release.
    async fn stop(self) -> Arc<BudgetHolder> {
        drop(self.stop);
        // The task only ends by being stopped; a panic in it has nothing left to release.
        let _ = self.task.await;
        self.holder
    }
}

impl std::fmt::Debug for Held {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Held")
            .field("holder", self.holder.id())
            .finish_non_exhaustive()
    }
}

impl ReadPacer {
    /// Paces every API at its cap, its quota less `reserve` (the stack's QuotaReserve). An API
    /// an import calls too takes its quota from `stack` (what Register paces by), so that both
    /// share one cap; the others take their default quota × `scale`.
    pub fn new(scale: f64, stack: &Quotas, reserve: f64) -> anyhow::Result<ReadPacer> {
        check_scale(scale)?;
        if !(0.0..=MAX_RESERVE).contains(&reserve) {
            bail!("the quota reserve must be in [0, {MAX_RESERVE}], got {reserve}");
        }
        let quota = |api: ReadApi| match api.import_api() {
            Some(shared) => stack.get(shared),
            None => api.default_quota() * scale,
        };
        let cap = |api: ReadApi| quota(api) * (1.0 - reserve);
        let pacer = Pacer::with_rates(cap)?;
        let caps = ReadApi::ALL
            .iter()
            .map(|api| (api.as_str().to_owned(), cap(*api)))
            .collect();
        Ok(ReadPacer {
            pacer: Arc::new(pacer),
            caps,
            lease: None,
        })
    }

    /// Joins the account-wide budget as `id` for the APIs in `uses` (the others keep their
    /// cap): one heartbeat now, whose grant applies before any call, then one every
    /// [`BudgetHolder::PERIOD`] in the background. If the first heartbeat fails (no such
    /// table, AccessDenied, unreachable), the error is returned and the pacing stays static.
    /// Later failures keep the last grant until
    /// [`thingpress_budget::FAILURES_BEFORE_FALLBACK`] in a row, then pace at the caps again and
    /// call `warn` once.
    pub async fn share(
        &mut self,
        table: Arc<dyn LeaseTable>,
        id: HolderId,
        uses: &[ReadApi],
        scope: Scope,
        warn: impl Fn(&BudgetError) + Send + 'static,
    ) -> Result<(), BudgetError> {
        let caps: Rates = scope.scoped(
            uses.iter()
                .filter_map(|api| {
                    let name = api.as_str();
                    Some((name.to_owned(), *self.caps.get(name)?))
                })
                .collect(),
        );
        let holder = Arc::new(BudgetHolder::new(table, id, caps.clone()));
        // Nothing was called yet: claiming the caps as in force would overshoot beside holders
        // that already use them.
        let grant = holder.heartbeat(&caps, &Rates::new()).await?;
        apply(&self.pacer, &scope.unscoped(&grant));
        let (held, pacer) = (Arc::clone(&holder), Arc::clone(&self.pacer));
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let mut stopped = std::pin::pin!(async {
                // Sent or dropped: either way, stop.
                let _ = stopped.await;
            });
            tokio::select! {
                () = tokio::time::sleep(BudgetHolder::PERIOD) => {}
                () = &mut stopped => return,
            }
            keep_heartbeating(
                &held,
                &caps,
                &caps,
                || scope.scoped(pacer.rates_by_name()),
                |grant| apply(&pacer, &scope.unscoped(grant)),
                warn,
                stopped,
            )
            .await;
        });
        if let Some(old) = self.lease.replace(Held { holder, task, stop }) {
            old.stop().await;
        }
        Ok(())
    }

    /// Gives the lease back (the command is done, failed or interrupted): the heartbeats stop
    /// and the share goes back to the others at once instead of when the lease lapses.
    pub async fn release(&mut self) -> Result<(), BudgetError> {
        let Some(held) = self.lease.take() else {
            return Ok(());
        };
        held.stop().await.release().await
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
                    // Someone outside the budget takes more than its reserve: slow down.
                    self.pacer.throttled(api);
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

impl Drop for ReadPacer {
    fn drop(&mut self) {
        // Not released (that needs a call): the lease lapses after its TTL. Stop heartbeating
        // it, though, or it would live on with the runtime.
        if let Some(held) = &self.lease {
            held.task.abort();
        }
    }
}

/// `--quota-scale` must be a positive number.
pub fn check_scale(scale: f64) -> anyhow::Result<()> {
    if !(scale.is_finite() && scale > 0.0) {
        bail!("--quota-scale must be a positive number, got {scale}");
    }
    Ok(())
}

/// Applies granted rates to the pacer (APIs the grant does not name keep their rate).
fn apply(pacer: &Pacer<ReadApi>, rates: &Rates) {
    // The budget checks rates before handing them out; a bad one keeps the old rates.
    let _ = pacer.set_rates_by_name(rates);
}

fn is_throttle<E: ProvideErrorMetadata, R>(err: &SdkError<E, R>) -> bool {
    err.as_service_error()
        .and_then(|e| e.code())
        .is_some_and(thingpress_aws::is_throttling_code)
}

/// What the test modules below share.
#[cfg(test)]
mod testing {
    use super::Quotas;

    /// The import's quotas at `factor` × AWS's defaults.
    pub fn scaled(factor: f64) -> Quotas {
        Quotas::default().scaled(factor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::time::Instant;

    use super::testing::scaled;

    #[test]
    fn rates_follow_the_quotas() {
        let pacer = ReadPacer::new(1.0, &scaled(1.0), 0.1).unwrap();
        assert!((pacer.rate(ReadApi::DescribeCertificate) - 9.0).abs() < 1e-9);
        assert!((pacer.rate(ReadApi::DescribeThing) - 315.0).abs() < 1e-9);
        assert!((pacer.rate(ReadApi::ListThingsInThingGroup) - 22.5).abs() < 1e-9);
        let fast = ReadPacer::new(10.0, &scaled(10.0), 0.1).unwrap();
        assert!((fast.rate(ReadApi::ListThings) - 90.0).abs() < 1e-9);
        assert!(ReadPacer::new(0.0, &scaled(0.0), 0.1).is_err());
        assert!(ReadPacer::new(f64::NAN, &scaled(f64::NAN), 0.1).is_err());
    }

    #[tokio::test]
    async fn calls_are_spaced_by_the_rate() {
        let pacer = ReadPacer::new(1.0, &scaled(1.0), 0.1).unwrap();
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
    use super::testing::scaled;
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
        let pacer = ReadPacer::new(1000.0, &scaled(1000.0), 0.1).unwrap();
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
        let pacer = ReadPacer::new(1000.0, &scaled(1000.0), 0.1).unwrap();
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
        let pacer = ReadPacer::new(1000.0, &scaled(1000.0), 0.1).unwrap();
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

#[cfg(test)]
mod budget_tests {
    use super::testing::scaled;
    use super::*;
    use std::sync::Mutex;
    use thingpress_budget::MemLeases;

    const DESCRIBE: &str = "DescribeCertificate";
    const CHECK: [ReadApi; 2] = [ReadApi::DescribeCertificate, ReadApi::DescribeThing];

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    /// A chunk of an import as Register holds it: every API an import calls at quota × 0.9.
    fn import_holder(table: &Arc<MemLeases>) -> BudgetHolder {
        let caps = thingpress_importer::IMPORT_APIS
            .iter()
            .map(|api| (api.as_str().to_owned(), api.default_quota() * 0.9))
            .collect();
        let table: Arc<dyn LeaseTable> = table.clone();
        let id = HolderId {
            group: "run-1".into(),
            holder: "chunk-00000".into(),
        };
        BudgetHolder::new(table, id, caps)
    }

    /// One of the import's heartbeats (demand = its caps), running at what it gets.
    async fn import_beat(import: &BudgetHolder, running: &mut Rates) -> f64 {
        *running = import.heartbeat(import.caps(), running).await.unwrap();
        running[DESCRIBE]
    }

    fn cli_id() -> HolderId {
        HolderId {
            group: "cli-test".into(),
            holder: "cli".into(),
        }
    }

    fn no_warning(error: &BudgetError) {
        panic!("unexpected fallback: {error}");
    }

    #[test]
    fn names_are_the_operations_and_the_shared_ones_the_importers() {
        let names: Vec<&str> = ReadApi::ALL.iter().map(|api| api.as_str()).collect();
        for (api, name) in ReadApi::ALL.iter().zip(&names) {
            assert_eq!(format!("{api:?}"), *name);
        }
        let mut unique = names.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), names.len());
        let shared: Vec<&str> = names
            .iter()
            .copied()
            .filter(|name| Api::ALL.iter().any(|api| api.as_str() == *name))
            .collect();
        assert_eq!(
            shared,
            [
                DESCRIBE,
                "DescribeThing",
                "ListThingPrincipals",
                "ListAttachedPolicies",
                "ListThingGroupsForThing"
            ]
        );
        for api in ReadApi::ALL {
            let shared = shared.contains(&api.as_str());
            assert_eq!(api.import_api().is_some(), shared, "{api:?}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_check_beside_an_import_gets_half_of_describe_certificate_and_release_frees_it() {
        let table = Arc::new(MemLeases::new());
        let import = import_holder(&table);
        let mut running = Rates::new();
        assert_eq!(import_beat(&import, &mut running).await, 9.0);

        let mut pacer = ReadPacer::new(1.0, &scaled(1.0), 0.1).unwrap();
        pacer
            .share(table.clone(), cli_id(), &CHECK, Scope::home(), no_warning)
            .await
            .unwrap();
        // The import runs at the whole cap: nothing is free until it shrinks, so the check
        // waits instead of pushing the sum over the quota.
        assert_eq!(pacer.rate(ReadApi::DescribeCertificate), 0.0);
        // An import does not call DescribeThing: all of it at once. Unused APIs keep their cap.
        assert!(close(pacer.rate(ReadApi::DescribeThing), 315.0));
        assert!(close(pacer.rate(ReadApi::ListThings), 9.0));

        // The import's next heartbeat halves it, the check's takes the other half.
        assert!(close(import_beat(&import, &mut running).await, 4.5));
        tokio::time::sleep(BudgetHolder::PERIOD + Duration::from_millis(100)).await;
        assert!(close(pacer.rate(ReadApi::DescribeCertificate), 4.5));
        let lease = table.all().into_iter().find(|l| l.id == cli_id()).unwrap();
        assert!(close(lease.granted[DESCRIBE], 4.5), "{lease:?}");
        assert!(!lease.demand.contains_key("ListThings"), "{lease:?}");
        // Steady: the next heartbeats keep the halves.
        tokio::time::sleep(BudgetHolder::PERIOD).await;
        assert!(close(import_beat(&import, &mut running).await, 4.5));
        assert!(close(pacer.rate(ReadApi::DescribeCertificate), 4.5));

        pacer.release().await.unwrap();
        let left: Vec<HolderId> = table.all().into_iter().map(|l| l.id).collect();
        assert_eq!(left, [import.id().clone()]);
        assert!(close(import_beat(&import, &mut running).await, 9.0));
        // Released means no more heartbeats either.
        tokio::time::sleep(BudgetHolder::PERIOD * 2).await;
        assert_eq!(table.all().len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn an_unreachable_table_leaves_the_static_caps() {
        let table = Arc::new(MemLeases::new());
        table.set_unavailable(true);
        let mut pacer = ReadPacer::new(1.0, &scaled(1.0), 0.1).unwrap();
        let err = pacer
            .share(table.clone(), cli_id(), &CHECK, Scope::home(), no_warning)
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                BudgetError::Table {
                    operation: "Query",
                    ..
                }
            ),
            "{err}"
        );
        assert!(close(pacer.rate(ReadApi::DescribeCertificate), 9.0));
        table.set_unavailable(false);
        assert!(table.all().is_empty());
        // Nothing is held, so releasing is a no-op.
        pacer.release().await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_table_lost_after_joining_falls_back_to_the_caps_and_warns_once() {
        let table = Arc::new(MemLeases::new());
        let import = import_holder(&table);
        let mut running = Rates::new();
        import_beat(&import, &mut running).await;
        let warnings = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&warnings);
        let mut pacer = ReadPacer::new(1.0, &scaled(1.0), 0.1).unwrap();
        pacer
            .share(table.clone(), cli_id(), &CHECK, Scope::home(), move |e| {
                seen.lock().unwrap().push(e.to_string());
            })
            .await
            .unwrap();
        import_beat(&import, &mut running).await;
        tokio::time::sleep(BudgetHolder::PERIOD + Duration::from_millis(100)).await;
        assert!(close(pacer.rate(ReadApi::DescribeCertificate), 4.5));

        table.set_unavailable(true);
        // Two failures keep the grant; the third paces at the cap.
        tokio::time::sleep(BudgetHolder::PERIOD * 2).await;
        assert!(close(pacer.rate(ReadApi::DescribeCertificate), 4.5));
        assert!(warnings.lock().unwrap().is_empty());
        tokio::time::sleep(BudgetHolder::PERIOD).await;
        assert!(close(pacer.rate(ReadApi::DescribeCertificate), 9.0));
        tokio::time::sleep(BudgetHolder::PERIOD * 3).await;
        let warnings = warnings.lock().unwrap().clone();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].contains("Query"), "{warnings:?}");
    }

    #[test]
    fn the_reserve_is_checked() {
        assert!(ReadPacer::new(1.0, &scaled(1.0), -0.1).is_err());
        assert!(ReadPacer::new(1.0, &scaled(1.0), MAX_RESERVE + 0.1).is_err());
        let pacer = ReadPacer::new(2.0, &scaled(2.0), 0.5).unwrap();
        assert!(close(pacer.rate(ReadApi::ListThings), 10.0));
    }

    #[test]
    fn an_api_the_import_calls_too_takes_the_stacks_quota() {
        // The stack paces DescribeCertificate by its own quota (raised to 20/s here); at
        // --quota-scale 3 the registry-only APIs follow the scale, the shared one the stack.
        let mut stack = Quotas::default();
        stack.set(Api::DescribeCertificate, 20.0);
        let pacer = ReadPacer::new(3.0, &stack, 0.1).unwrap();
        assert!(close(pacer.rate(ReadApi::DescribeCertificate), 18.0));
        assert!(close(pacer.rate(ReadApi::ListThings), 27.0));
    }
}
