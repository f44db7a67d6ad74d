//! Register's lease on the account-wide budget: while a chunk registers, a heartbeat every
//! [`BudgetHolder::PERIOD`] publishes what the child could use and what it runs at, and applies
//! the grant it gets back to the pacer. Until the first grant comes, the pacer runs at its
//! static share (cap ÷ MaxConcurrency); AIMD works on top of either.
//!
//! The lease outlives an invocation that hands the chunk back (`done:false`): the next one
//! heartbeats it again well within its TTL. It is released when the chunk is done or fails.
//! A table that keeps failing is logged once, and the child goes on at its static share.

use std::future::Future;
use std::sync::Arc;

use tokio::sync::Notify;

pub use thingpress_budget::Scope;
use thingpress_budget::{
    BudgetError, BudgetHolder, HolderId, LeaseTable, Rates, keep_heartbeating,
};
#[cfg(test)]
use thingpress_importer::{ACTIVATION_APIS, IMPORT_APIS};
use thingpress_importer::{Api, ImportError, Pacer, Quotas};

/// The rates of a chunk's holder: the caps it shares with every other holder, what it asks
/// for, and the share it runs at without a grant.
#[derive(Debug, Clone, PartialEq)]
pub struct Shares {
    /// Whose quotas these are.
    pub scope: Scope,
    /// quota × (1 − reserve) per API, by operation name.
    pub caps: Rates,
    /// The cap of each API the run's operation calls, and 0 for the others, so an activation
    /// takes none of an import's RegisterCertificateWithoutCA, nor an import of an
    /// activation's UpdateCertificate.
    pub demand: Rates,
    /// caps ÷ MaxConcurrency per API.
    pub fallback: Rates,
}

impl Shares {
    /// The caps of `quotas` with `reserve` kept back, the demand for the APIs `calls`, and
    /// the pacer a chunk starts with: each cap divided over `children` (the Map's
    /// MaxConcurrency), its static share.
    pub fn new(
        quotas: &Quotas,
        reserve: f64,
        children: u32,
        calls: &[Api],
        scope: Scope,
    ) -> Result<(Shares, Pacer), ImportError> {
        let pacer = Pacer::new(quotas, reserve, children)?;
        let cap = |api: Api| quotas.get(api) * (1.0 - reserve);
        let shares = Shares {
            caps: scope.scoped(by_name(cap)),
            demand: scope.scoped(by_name(
                |api| {
                    if calls.contains(&api) { cap(api) } else { 0.0 }
                },
            )),
            fallback: scope.scoped(pacer.rates_by_name()),
            scope,
        };
        Ok((shares, pacer))
    }
}

/// One rate per API, by operation name.
fn by_name(rate: impl Fn(Api) -> f64) -> Rates {
    Api::ALL
        .iter()
        .map(|api| (api.as_str().to_owned(), rate(*api)))
        .collect()
}

/// The holder of chunk `chunk` of run `run_id`: one per chunk, so a continuation of the chunk
/// heartbeats the lease the previous invocation held.
pub fn holder_id(run_id: &str, chunk: u32) -> HolderId {
    HolderId {
        group: run_id.to_owned(),
        holder: format!("chunk-{chunk:05}"),
    }
}

/// Applies granted rates to the pacer (APIs the grant does not name keep their rate).
fn apply(pacer: &Pacer, rates: &Rates) {
    if let Err(e) = pacer.set_rates_by_name(rates) {
        // The budget checks rates before handing them out; a bad one keeps the old rates.
        tracing::warn!(error = %e, "budget grant not applied");
    }
}

/// Runs `work` while heartbeating `holder` (when there is a table), and returns its output.
/// The lease is not released here: the caller knows whether the chunk goes on. A heartbeat in
/// flight when `work` ends is let finish, so that none lands after the release.
pub async fn holding<T>(
    holder: Option<&BudgetHolder>,
    shares: &Shares,
    pacer: &Pacer,
    work: impl Future<Output = T>,
) -> T {
    let Some(holder) = holder else {
        return work.await;
    };
    let done = Notify::new();
    let heartbeats = keep_heartbeating(
        holder,
        &shares.demand,
        &shares.fallback,
        || shares.scope.scoped(pacer.rates_by_name()),
        |grant| apply(pacer, &shares.scope.unscoped(grant)),
        |error| tracing::warn!(%error, "budget table unreachable: pacing at the static share"),
        done.notified(),
    );
    let work = async {
        let output = work.await;
        done.notify_one();
        output
    };
    tokio::join!(work, heartbeats).0
}

/// Gives the lease back (chunk done or failed); a failure only delays others by the TTL.
pub async fn release(holder: Option<&BudgetHolder>) {
    if let Some(holder) = holder
        && let Err(error) = holder.release().await
    {
        log_release_failure(&error);
    }
}

fn log_release_failure(error: &BudgetError) {
    tracing::warn!(%error, "budget lease not released; it expires with its TTL");
}

/// A holder for the chunk, when the container has a table.
pub fn holder(
    table: Option<&Arc<dyn LeaseTable>>,
    id: HolderId,
    shares: &Shares,
) -> Option<BudgetHolder> {
    table.map(|table| BudgetHolder::new(Arc::clone(table), id, shares.caps.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use thingpress_budget::{Lease, LeaseFuture, MemLeases};

    /// The shares and a fresh static-share pacer of `children` at the default quotas less 0.1.
    fn shares(children: u32) -> (Shares, Pacer) {
        Shares::new(
            &Quotas::default(),
            0.1,
            children,
            IMPORT_APIS,
            Scope::home(),
        )
        .unwrap()
    }

    const REGISTER: Api = Api::RegisterCertificateWithoutCA;

    #[test]
    fn caps_keep_the_reserve_and_the_static_share_divides_them() {
        let (shares, _) = shares(4);
        assert!((shares.caps[REGISTER.as_str()] - 9.0).abs() < 1e-9);
        assert!((shares.fallback[REGISTER.as_str()] - 2.25).abs() < 1e-9);
        assert_eq!(shares.caps.len(), Api::ALL.len());
        let id = holder_id("run-1", 7);
        assert_eq!(
            (id.group.as_str(), id.holder.as_str()),
            ("run-1", "chunk-00007")
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_lone_holder_gets_the_cap_and_releases_its_lease() {
        let table = Arc::new(MemLeases::new());
        let dyn_table: Arc<dyn LeaseTable> = table.clone();
        let (shares, pacer) = shares(4);
        let holder = holder(Some(&dyn_table), holder_id("r", 0), &shares);
        assert_eq!(pacer.rate(REGISTER), 2.25, "the static share until a grant");
        let seen = holding(holder.as_ref(), &shares, &pacer, async {
            tokio::time::sleep(Duration::from_secs(1)).await;
            pacer.rate(REGISTER)
        })
        .await;
        assert!((seen - 9.0).abs() < 1e-9, "alone, the whole cap: {seen}");
        let leases = table.all();
        assert_eq!(leases.len(), 1);
        assert_eq!(leases[0].id, holder_id("r", 0));
        assert!((leases[0].demand[REGISTER.as_str()] - 9.0).abs() < 1e-9);
        release(holder.as_ref()).await;
        assert!(table.all().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn an_activation_beside_an_import_shares_only_the_apis_both_call() {
        let table: Arc<dyn LeaseTable> = Arc::new(MemLeases::new());
        let (import, import_pacer) = shares(1);
        let (activation, activation_pacer) =
            Shares::new(&Quotas::default(), 0.1, 1, ACTIVATION_APIS, Scope::home()).unwrap();
        assert_eq!(activation.demand[REGISTER.as_str()], 0.0);
        let a = holder(Some(&table), holder_id("import", 0), &import);
        let b = holder(Some(&table), holder_id("activation", 0), &activation);
        let rates = |pacer: &Pacer| {
            [
                pacer.rate(REGISTER),
                pacer.rate(Api::UpdateCertificate),
                pacer.rate(Api::DescribeCertificate),
            ]
        };
        let (ra, rb) = tokio::join!(
            holding(a.as_ref(), &import, &import_pacer, async {
                tokio::time::sleep(Duration::from_secs(10)).await;
                rates(&import_pacer)
            }),
            holding(b.as_ref(), &activation, &activation_pacer, async {
                tokio::time::sleep(Duration::from_secs(10)).await;
                rates(&activation_pacer)
            }),
        );
        // Each has the whole of the API only it calls, and half of the one both call.
        assert!((ra[0] - 9.0).abs() < 1e-9, "{ra:?}");
        assert!((rb[1] - 9.0).abs() < 1e-9, "{rb:?}");
        assert!(
            (ra[2] - 4.5).abs() < 1e-9 && (rb[2] - 4.5).abs() < 1e-9,
            "{ra:?} {rb:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn two_runs_share_the_cap_after_a_heartbeat() {
        let table: Arc<dyn LeaseTable> = Arc::new(MemLeases::new());
        let ((shares, first), (_, second)) = (shares(1), shares(1));
        let a = holder(Some(&table), holder_id("a", 0), &shares);
        let b = holder(Some(&table), holder_id("b", 0), &shares);
        let (ra, rb) = tokio::join!(
            holding(a.as_ref(), &shares, &first, async {
                tokio::time::sleep(Duration::from_secs(10)).await;
                first.rate(REGISTER)
            }),
            holding(b.as_ref(), &shares, &second, async {
                tokio::time::sleep(Duration::from_secs(10)).await;
                second.rate(REGISTER)
            }),
        );
        assert!(
            (ra - 4.5).abs() < 1e-9 && (rb - 4.5).abs() < 1e-9,
            "{ra} {rb}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_unreachable_table_falls_back_to_the_static_share() {
        let table = Arc::new(MemLeases::new());
        let dyn_table: Arc<dyn LeaseTable> = table.clone();
        let (shares, pacer) = shares(3);
        let holder = holder(Some(&dyn_table), holder_id("r", 1), &shares);
        let (granted, fell_back) = holding(holder.as_ref(), &shares, &pacer, async {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let granted = pacer.rate(REGISTER);
            table.set_unavailable(true);
            // Two failures keep the grant; the third drops to the static share.
            tokio::time::sleep(BudgetHolder::PERIOD * 2).await;
            assert_eq!(pacer.rate(REGISTER), granted);
            tokio::time::sleep(BudgetHolder::PERIOD).await;
            (granted, pacer.rate(REGISTER))
        })
        .await;
        assert!((granted - 9.0).abs() < 1e-9, "{granted}");
        assert!((fell_back - 3.0).abs() < 1e-9, "{fell_back}");
    }

    /// A table whose writes land `delay` after they are sent, even if the sender stops waiting
    /// (as a request already on the wire does).
    struct SlowWrites {
        inner: Arc<MemLeases>,
        delay: Duration,
    }

    impl LeaseTable for SlowWrites {
        fn put<'a>(&'a self, lease: &'a Lease) -> LeaseFuture<'a, ()> {
            let (inner, lease, delay) = (Arc::clone(&self.inner), lease.clone(), self.delay);
            let landing = tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                inner.put(&lease).await
            });
            Box::pin(async move { landing.await.expect("the write task panicked") })
        }
        fn live(&self, now: u64) -> LeaseFuture<'_, Vec<Lease>> {
            self.inner.live(now)
        }
        fn delete<'a>(&'a self, id: &'a HolderId) -> LeaseFuture<'a, ()> {
            self.inner.delete(id)
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_heartbeat_in_flight_when_the_chunk_ends_lands_before_the_release() {
        let inner = Arc::new(MemLeases::new());
        let table: Arc<dyn LeaseTable> = Arc::new(SlowWrites {
            inner: Arc::clone(&inner),
            delay: Duration::from_secs(2),
        });
        let (shares, pacer) = shares(1);
        let holder = holder(Some(&table), holder_id("r", 0), &shares);
        // The work ends while the first heartbeat's write is still on its way.
        holding(holder.as_ref(), &shares, &pacer, async {
            tokio::time::sleep(Duration::from_millis(500)).await;
        })
        .await;
        release(holder.as_ref()).await;
        tokio::time::sleep(BudgetHolder::TTL / 2).await;
        assert!(
            inner.all().is_empty(),
            "a lease outlived its release: {:?}",
            inner.all()
        );
    }

    #[tokio::test]
    async fn no_table_is_the_static_share() {
        let (shares, pacer) = shares(2);
        let rate = holding(None, &shares, &pacer, async { pacer.rate(REGISTER) }).await;
        assert!((rate - 4.5).abs() < 1e-9);
        release(None).await;
    }

    #[tokio::test(start_paused = true)]
    async fn holders_in_two_targets_each_get_their_own_targets_cap() {
        let table: Arc<dyn LeaseTable> = Arc::new(MemLeases::new());
        let mk = |scope| Shares::new(&Quotas::default(), 0.1, 1, IMPORT_APIS, scope).unwrap();
        let (home, home_pacer) = mk(Scope::home());
        let (eu, eu_pacer) = mk(Scope::target("eu-west-1"));
        assert!(
            eu.caps
                .contains_key("eu-west-1/RegisterCertificateWithoutCA")
        );
        assert!(!eu.caps.contains_key(REGISTER.as_str()));
        let a = holder(Some(&table), holder_id("run", 0), &home);
        let b = holder(Some(&table), holder_id("run", 1), &eu);
        let (ra, rb) = tokio::join!(
            holding(a.as_ref(), &home, &home_pacer, async {
                tokio::time::sleep(Duration::from_secs(10)).await;
                home_pacer.rate(REGISTER)
            }),
            holding(b.as_ref(), &eu, &eu_pacer, async {
                tokio::time::sleep(Duration::from_secs(10)).await;
                eu_pacer.rate(REGISTER)
            }),
        );
        // One run, two accounts or Regions: neither halves the other's quota.
        assert!((ra - 9.0).abs() < 1e-9, "home: {ra}");
        assert!((rb - 9.0).abs() < 1e-9, "eu-west-1: {rb}");
    }
}
