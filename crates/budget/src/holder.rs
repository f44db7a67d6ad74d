//! A holder's side of the protocol: heartbeat the lease, read the others', take the allocation.

use std::future::Future;
use std::pin::pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::allocate::allocate;
use crate::lease::{BudgetError, HolderId, Lease, LeaseTable, Rates};

/// A holder: heartbeats its lease and returns the grant to run at.
///
/// Each heartbeat reads the live leases, allocates, and then writes this holder's lease with
/// the new grant as `granted`, before returning it. So what the table says a holder may run at
/// always covers what it runs at (the caller applies the grant at once, and AIMD only lowers
/// it): a newcomer, which only takes room the others' published grants leave, never overshoots,
/// and a holder that shrinks publishes its smaller grant in the same heartbeat, so a newcomer
/// reaches its fair share on its second heartbeat.
pub struct BudgetHolder {
    table: Arc<dyn LeaseTable>,
    id: HolderId,
    caps: Rates,
    /// The last grant handed to the caller (empty before the first heartbeat).
    last: Mutex<Rates>,
}

impl BudgetHolder {
    /// Heartbeat period: how often a holder rewrites its lease and reads the others'.
    pub const PERIOD: Duration = Duration::from_secs(3);
    /// How long a lease lives without a heartbeat: five periods, so a few slow or failed writes
    /// do not drop a live holder, while a crashed one frees its share within seconds.
    pub const TTL: Duration = Duration::from_secs(15);

    /// A holder `id` sharing `caps` (calls per second per API, quota × (1 − reserve)).
    pub fn new(table: Arc<dyn LeaseTable>, id: HolderId, caps: Rates) -> Self {
        BudgetHolder {
            table,
            id,
            caps,
            last: Mutex::new(Rates::new()),
        }
    }

    /// Who this holder is.
    pub fn id(&self) -> &HolderId {
        &self.id
    }

    /// The caps it shares.
    pub fn caps(&self) -> &Rates {
        &self.caps
    }

    /// Writes {demand, granted} with expiresAt = now + TTL, reads the live leases, returns the
    /// allocation for this holder. On a table error returns Err: the caller falls back.
    ///
    /// `granted` is the rate the caller runs at now; the lease stores the returned allocation
    /// (the rate it will run at), written after the read so that it is published before use.
    pub async fn heartbeat(&self, demand: &Rates, granted: &Rates) -> Result<Rates, BudgetError> {
        self.heartbeat_at(epoch_seconds()?, demand, granted).await
    }

    /// [`BudgetHolder::heartbeat`] at `now` (epoch seconds).
    pub async fn heartbeat_at(
        &self,
        now: u64,
        demand: &Rates,
        granted: &Rates,
    ) -> Result<Rates, BudgetError> {
        let mut lease = Lease {
            id: self.id.clone(),
            demand: demand.clone(),
            // In force now: a raise is measured from here.
            granted: upper(granted, &self.last_grant()),
            expires_at: now.saturating_add(Self::TTL.as_secs()),
        };
        // Refuse a bad demand before reading, as the write would.
        lease.check()?;
        let mut live = self.table.live(now).await?;
        match live.iter_mut().find(|l| l.id == self.id) {
            Some(mine) => *mine = lease.clone(),
            None => live.push(lease.clone()),
        }
        let grant = allocate(&self.caps, &live, &self.id);
        lease.granted = grant.clone();
        self.table.put(&lease).await?;
        *self.lock_last() = grant.clone();
        Ok(grant)
    }

    /// Deletes the lease (chunk done or failed). Best-effort; errors are returned for logging.
    pub async fn release(&self) -> Result<(), BudgetError> {
        self.lock_last().clear();
        self.table.delete(&self.id).await
    }

    fn last_grant(&self) -> Rates {
        self.lock_last().clone()
    }

    fn lock_last(&self) -> std::sync::MutexGuard<'_, Rates> {
        // Only plain maps are written under this lock: a poisoned one is still whole.
        self.last.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Heartbeats failing in a row after which a holder drops its grant for its fallback rates:
/// one or two failures keep the last grant (the lease outlives them), three mean the table is
/// gone.
pub const FAILURES_BEFORE_FALLBACK: u32 = 3;

/// Heartbeats `holder` every [`BudgetHolder::PERIOD`] until `stop` completes, publishing
/// `demand` and the rates `in_force` gives (by operation name), and handing each grant to
/// `apply` (APIs a grant does not name keep their rate). After [`FAILURES_BEFORE_FALLBACK`]
/// failures in a row it applies `fallback` and calls `lost` once (the caller says so in its own
/// way).
///
/// `stop` is only heeded between heartbeats: a write dropped in flight could still land after
/// the holder's release and leave a stale lease taking a share for a whole TTL.
pub async fn keep_heartbeating(
    holder: &BudgetHolder,
    demand: &Rates,
    fallback: &Rates,
    in_force: impl Fn() -> Rates,
    apply: impl Fn(&Rates),
    lost: impl FnOnce(&BudgetError),
    stop: impl Future<Output = ()>,
) {
    let mut failures = 0;
    let mut lost = Some(lost);
    let mut stop = pin!(stop);
    loop {
        match holder.heartbeat(demand, &in_force()).await {
            Ok(grant) => {
                failures = 0;
                apply(&grant);
            }
            Err(error) => {
                failures += 1;
                if failures >= FAILURES_BEFORE_FALLBACK {
                    apply(fallback);
                    if let Some(lost) = lost.take() {
                        lost(&error);
                    }
                }
            }
        }
        tokio::select! {
            () = tokio::time::sleep(BudgetHolder::PERIOD) => {}
            () = &mut stop => return,
        }
    }
}

/// Per API, the larger of the two rates.
fn upper(a: &Rates, b: &Rates) -> Rates {
    let mut out = a.clone();
    for (api, rate) in b {
        let entry = out.entry(api.clone()).or_insert(0.0);
        if *rate > *entry {
            *entry = *rate;
        }
    }
    out
}

/// Now, in epoch seconds.
pub(crate) fn epoch_seconds() -> Result<u64, BudgetError> {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .map_err(|e| BudgetError::Clock(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemLeases;

    const REGISTER: &str = "RegisterCertificateWithoutCA";

    fn rates(rate: f64) -> Rates {
        [(REGISTER.to_string(), rate)].into()
    }

    fn holder(table: &Arc<MemLeases>, group: &str, cap: f64) -> BudgetHolder {
        let table: Arc<dyn LeaseTable> = table.clone();
        BudgetHolder::new(
            table,
            HolderId {
                group: group.into(),
                holder: "chunk-00000".into(),
            },
            rates(cap),
        )
    }

    /// One heartbeat at `now` with the demand of the whole cap, running at its last grant.
    async fn beat(h: &BudgetHolder, now: u64, running: &mut f64) -> f64 {
        let grant = h
            .heartbeat_at(now, &rates(100.0), &rates(*running))
            .await
            .unwrap();
        *running = grant[REGISTER];
        *running
    }

    /// Σ granted in the table's live leases.
    fn published(table: &MemLeases, now: u64) -> f64 {
        table
            .all()
            .iter()
            .filter(|l| l.expires_at > now)
            .map(|l| l.granted[REGISTER])
            .sum()
    }

    #[tokio::test]
    async fn alone_a_holder_takes_the_cap_on_its_first_heartbeat() {
        let table = Arc::new(MemLeases::new());
        let a = holder(&table, "run-a", 10.0);
        let mut ra = 0.0;
        assert_eq!(beat(&a, 1000, &mut ra).await, 10.0);
        // The grant is published before it is used.
        assert_eq!(table.all()[0].granted[REGISTER], 10.0);
        assert_eq!(table.all()[0].demand[REGISTER], 100.0);
        assert_eq!(
            table.all()[0].expires_at,
            1000 + BudgetHolder::TTL.as_secs()
        );
    }

    #[tokio::test]
    async fn two_holders_converge_to_half_each_within_two_heartbeats_and_never_overshoot() {
        let table = Arc::new(MemLeases::new());
        let a = holder(&table, "run-a", 10.0);
        let b = holder(&table, "run-b", 10.0);
        let (mut ra, mut rb) = (0.0, 0.0);
        beat(&a, 1000, &mut ra).await;
        // b joins while a runs at the whole cap: nothing free yet.
        assert_eq!(beat(&b, 1001, &mut rb).await, 0.0);
        assert!(ra + rb <= 10.0);
        assert_eq!(beat(&a, 1003, &mut ra).await, 5.0);
        assert!(ra + rb <= 10.0);
        assert_eq!(beat(&b, 1004, &mut rb).await, 5.0);
        assert!(ra + rb <= 10.0);
        // Steady from then on.
        assert_eq!(beat(&a, 1006, &mut ra).await, 5.0);
        assert_eq!(beat(&b, 1007, &mut rb).await, 5.0);
    }

    #[tokio::test]
    async fn a_released_holders_share_goes_back() {
        let table = Arc::new(MemLeases::new());
        let a = holder(&table, "run-a", 10.0);
        let b = holder(&table, "run-b", 10.0);
        let (mut ra, mut rb) = (0.0, 0.0);
        for now in [1000, 1003, 1006] {
            beat(&a, now, &mut ra).await;
            beat(&b, now + 1, &mut rb).await;
        }
        assert_eq!((ra, rb), (5.0, 5.0));
        b.release().await.unwrap();
        assert_eq!(table.all().len(), 1);
        assert_eq!(beat(&a, 1009, &mut ra).await, 10.0);
    }

    #[tokio::test]
    async fn an_expired_holders_share_goes_back() {
        let table = Arc::new(MemLeases::new());
        let a = holder(&table, "run-a", 10.0);
        let b = holder(&table, "run-b", 10.0);
        let (mut ra, mut rb) = (0.0, 0.0);
        for now in [1000, 1003, 1006] {
            beat(&a, now, &mut ra).await;
            beat(&b, now + 1, &mut rb).await;
        }
        // b crashed after its heartbeat at 1007: its lease lapses at 1007 + TTL.
        let lapse = 1007 + BudgetHolder::TTL.as_secs();
        assert_eq!(beat(&a, lapse - 1, &mut ra).await, 5.0);
        assert_eq!(beat(&a, lapse, &mut ra).await, 10.0);
    }

    #[tokio::test]
    async fn a_table_error_is_returned_and_the_next_heartbeat_recovers() {
        let table = Arc::new(MemLeases::new());
        let a = holder(&table, "run-a", 10.0);
        let mut ra = 0.0;
        table.set_unavailable(true);
        let err = a
            .heartbeat_at(1000, &rates(100.0), &rates(ra))
            .await
            .unwrap_err();
        assert!(matches!(
            err,
            BudgetError::Table {
                operation: "Query",
                ..
            }
        ));
        table.set_unavailable(false);
        assert_eq!(beat(&a, 1003, &mut ra).await, 10.0);
    }

    #[tokio::test]
    async fn a_bad_demand_is_an_error_not_a_lease() {
        let table = Arc::new(MemLeases::new());
        let a = holder(&table, "run-a", 10.0);
        let err = a
            .heartbeat_at(1000, &rates(f64::NAN), &rates(0.0))
            .await
            .unwrap_err();
        assert!(matches!(err, BudgetError::InvalidLease(_)), "{err}");
        assert!(table.all().is_empty());
    }

    #[tokio::test]
    async fn what_is_published_covers_the_rate_in_force() {
        let table = Arc::new(MemLeases::new());
        let holders: Vec<BudgetHolder> = ["run-a", "run-b", "run-c"]
            .iter()
            .map(|g| holder(&table, g, 12.0))
            .collect();
        let mut running = [0.0; 3];
        // Joins and steady state, staggered: at every step the rates in force fit the cap and
        // are covered by what the table says.
        for step in 0..12u64 {
            let i = (step % 3) as usize;
            let mut r = running[i];
            beat(&holders[i], 1000 + step, &mut r).await;
            running[i] = r;
            let total: f64 = running.iter().sum();
            assert!(total <= 12.0 + 1e-9, "step {step}: {running:?}");
            assert!(
                published(&table, 1000 + step) + 1e-9 >= total,
                "step {step}"
            );
        }
        assert!(
            running.iter().all(|r| (r - 4.0).abs() < 1e-9),
            "{running:?}"
        );
    }
}
