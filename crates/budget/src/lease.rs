//! What a lease is, the store of leases, and its in-memory form.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;

use thingpress_aws::Class;

/// One API's rate, calls per second, by IoT operation name ("RegisterCertificateWithoutCA").
pub type Rates = BTreeMap<String, f64>;

/// The largest rate a lease may carry: far above any IoT quota, and small enough that DynamoDB
/// stores it exactly as written.
pub const MAX_RATE: f64 = 1e6;

/// DynamoDB's limit on a sort key, in bytes.
const MAX_SORT_KEY_BYTES: usize = 1024;

/// Who holds a lease: the group (a run: its runId; a CLI command: "cli-<uuid>") and the holder
/// within it (a chunk: "chunk-00042"; the CLI: "cli").
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct HolderId {
    /// The run or command the holder belongs to; fairness is between groups first.
    pub group: String,
    /// The holder within its group.
    pub holder: String,
}

impl HolderId {
    /// The lease's sort key, `<group>#<holder>`. The group may not contain `#`, so no two ids
    /// share a key.
    pub fn sort_key(&self) -> Result<String, BudgetError> {
        if self.group.is_empty() || self.holder.is_empty() {
            return Err(BudgetError::InvalidLease(format!(
                "holder id needs a group and a holder, got {:?}/{:?}",
                self.group, self.holder
            )));
        }
        if self.group.contains('#') {
            return Err(BudgetError::InvalidLease(format!(
                "group {:?} contains '#', which separates group and holder in the key",
                self.group
            )));
        }
        let key = format!("{}#{}", self.group, self.holder);
        if key.len() > MAX_SORT_KEY_BYTES {
            return Err(BudgetError::InvalidLease(format!(
                "holder id {key:?} is longer than {MAX_SORT_KEY_BYTES} bytes"
            )));
        }
        Ok(key)
    }
}

impl std::fmt::Display for HolderId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}#{}", self.group, self.holder)
    }
}

/// One holder's lease as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Lease {
    /// Whose lease it is.
    pub id: HolderId,
    /// Calls per second the holder could use, per API.
    pub demand: Rates,
    /// Calls per second the holder may run at until its next heartbeat, per API (an upper bound).
    pub granted: Rates,
    /// When the lease lapses, epoch seconds; readers ignore it from then on.
    pub expires_at: u64,
}

impl Lease {
    /// Checks what a table would store: a valid id and rates that are finite, ≥ 0 and at most
    /// [`MAX_RATE`], under non-empty API names.
    pub fn check(&self) -> Result<(), BudgetError> {
        self.id.sort_key()?;
        for (field, rates) in [("demand", &self.demand), ("granted", &self.granted)] {
            for (api, rate) in rates {
                if api.is_empty() {
                    return Err(BudgetError::InvalidLease(format!(
                        "{}: {field} has an empty API name",
                        self.id
                    )));
                }
                if !(rate.is_finite() && (0.0..=MAX_RATE).contains(rate)) {
                    return Err(BudgetError::InvalidLease(format!(
                        "{}: {field} of {api} is {rate}, not a rate in 0..={MAX_RATE}",
                        self.id
                    )));
                }
            }
        }
        Ok(())
    }
}

/// Why the budget could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BudgetError {
    /// A call to the lease table failed.
    #[error("budget table {table}: {operation} failed ({class:?}): {detail}")]
    Table {
        /// The table's name.
        table: String,
        /// The DynamoDB operation.
        operation: &'static str,
        /// Throttled, transient or rejected, by the one classifier.
        class: Class,
        /// The service's words, or the SDK's.
        detail: String,
    },
    /// A lease that cannot be stored.
    #[error("invalid budget lease: {0}")]
    InvalidLease(String),
    /// The system clock is before 1970.
    #[error("budget clock: {0}")]
    Clock(String),
}

/// A boxed future of a [`LeaseTable`] call (boxed so the table can be a `dyn` object).
pub type LeaseFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, BudgetError>> + Send + 'a>>;

/// The lease store: [`crate::DynamoLeases`] on AWS and the local stack, [`MemLeases`] in tests
/// and when no table is configured.
pub trait LeaseTable: Send + Sync {
    /// Writes (or overwrites) the holder's lease.
    fn put<'a>(&'a self, lease: &'a Lease) -> LeaseFuture<'a, ()>;
    /// Every lease whose `expires_at` is after `now` (epoch seconds), in sort-key order.
    fn live(&self, now: u64) -> LeaseFuture<'_, Vec<Lease>>;
    /// Removes the holder's lease; removing one that is not there is not an error.
    fn delete<'a>(&'a self, id: &'a HolderId) -> LeaseFuture<'a, ()>;
}

/// Leases in memory, keyed as in DynamoDB.
#[derive(Debug, Default)]
pub struct MemLeases {
    state: Mutex<MemState>,
}

#[derive(Debug, Default)]
struct MemState {
    leases: BTreeMap<String, Lease>,
    unavailable: bool,
}

impl MemLeases {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes every call fail as a transient error (or work again): an unreachable table, to
    /// exercise a holder's fallback.
    pub fn set_unavailable(&self, unavailable: bool) {
        self.lock().unavailable = unavailable;
    }

    /// Every stored lease, expired or not, in sort-key order.
    pub fn all(&self) -> Vec<Lease> {
        self.lock().leases.values().cloned().collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MemState> {
        // A panic elsewhere while holding the lock leaves the map whole: keep using it.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn call<T>(
        &self,
        operation: &'static str,
        f: impl FnOnce(&mut BTreeMap<String, Lease>) -> Result<T, BudgetError>,
    ) -> Result<T, BudgetError> {
        let mut state = self.lock();
        if state.unavailable {
            return Err(BudgetError::Table {
                table: "memory".into(),
                operation,
                class: Class::Transient,
                detail: "the table is set unavailable".into(),
            });
        }
        f(&mut state.leases)
    }
}

impl LeaseTable for MemLeases {
    fn put<'a>(&'a self, lease: &'a Lease) -> LeaseFuture<'a, ()> {
        Box::pin(async move {
            lease.check()?;
            let key = lease.id.sort_key()?;
            self.call("UpdateItem", |leases| {
                leases.insert(key, lease.clone());
                Ok(())
            })
        })
    }

    fn live(&self, now: u64) -> LeaseFuture<'_, Vec<Lease>> {
        Box::pin(async move {
            self.call("Query", |leases| {
                Ok(leases
                    .values()
                    .filter(|l| l.expires_at > now)
                    .cloned()
                    .collect())
            })
        })
    }

    fn delete<'a>(&'a self, id: &'a HolderId) -> LeaseFuture<'a, ()> {
        Box::pin(async move {
            let key = id.sort_key()?;
            self.call("DeleteItem", |leases| {
                leases.remove(&key);
                Ok(())
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(group: &str, holder: &str, expires_at: u64) -> Lease {
        Lease {
            id: HolderId {
                group: group.into(),
                holder: holder.into(),
            },
            demand: [("RegisterCertificateWithoutCA".to_string(), 9.0)].into(),
            granted: Rates::new(),
            expires_at,
        }
    }

    #[test]
    fn ids_that_would_share_a_key_or_break_it_are_refused() {
        assert_eq!(
            lease("run-1", "chunk-00001", 0).id.sort_key(),
            Ok("run-1#chunk-00001".to_string())
        );
        for (group, holder) in [("a#b", "c"), ("", "c"), ("a", "")] {
            let err = lease(group, holder, 0).id.sort_key();
            assert!(
                matches!(err, Err(BudgetError::InvalidLease(_))),
                "{group:?}/{holder:?}: {err:?}"
            );
        }
        let long = "x".repeat(1100);
        assert!(lease("run", &long, 0).id.sort_key().is_err());
    }

    #[test]
    fn rates_must_be_storable() {
        for bad in [f64::NAN, f64::INFINITY, -1.0, 2e6] {
            let mut l = lease("run-1", "cli", 0);
            l.granted.insert("ListThings".into(), bad);
            let err = l.check().unwrap_err().to_string();
            assert!(err.contains("granted of ListThings"), "{err}");
        }
        let mut l = lease("run-1", "cli", 0);
        l.demand.insert(String::new(), 1.0);
        assert!(l.check().is_err());
        assert!(lease("run-1", "cli", 0).check().is_ok());
    }

    #[tokio::test]
    async fn mem_leases_keep_one_per_holder_and_drop_expired_ones_from_live() {
        let table = MemLeases::new();
        table.put(&lease("run-1", "chunk-00000", 10)).await.unwrap();
        table.put(&lease("run-1", "chunk-00001", 20)).await.unwrap();
        // Overwrites, as UpdateItem does.
        table.put(&lease("run-1", "chunk-00000", 30)).await.unwrap();
        let live = table.live(20).await.unwrap();
        assert_eq!(live, vec![lease("run-1", "chunk-00000", 30)]);
        assert_eq!(table.all().len(), 2);
        table
            .delete(&lease("run-1", "chunk-00000", 0).id)
            .await
            .unwrap();
        // Deleting what is gone is fine.
        table
            .delete(&lease("run-1", "chunk-00000", 0).id)
            .await
            .unwrap();
        assert!(table.live(0).await.unwrap().len() == 1);
    }

    #[tokio::test]
    async fn an_unavailable_table_fails_every_call_until_it_is_back() {
        let table = MemLeases::new();
        table.set_unavailable(true);
        let err = table.live(0).await.unwrap_err();
        assert!(matches!(
            err,
            BudgetError::Table {
                operation: "Query",
                class: Class::Transient,
                ..
            }
        ));
        table.set_unavailable(false);
        assert!(table.live(0).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_bad_lease_is_not_stored() {
        let table = MemLeases::new();
        let mut l = lease("run-1", "cli", 10);
        l.demand.insert("ListThings".into(), f64::NAN);
        assert!(table.put(&l).await.is_err());
        assert!(table.all().is_empty());
    }
}
