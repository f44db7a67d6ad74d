//! The account-wide budget of IoT calls. AWS IoT's quotas are per account and Region, so every
//! import run and CLI command that calls an API shares one cap, quota × (1 − reserve).
//!
//! - `lease`: a holder's lease ([`Lease`], [`HolderId`], [`Rates`]), the [`LeaseTable`] trait and
//!   [`MemLeases`].
//! - `dynamo`: [`DynamoLeases`], the table in DynamoDB (one item per holder, one Query reads all).
//! - `scope`: [`Scope`], whose quotas a holder's rates are (the stack's own account and Region,
//!   or a target's).
//! - `allocate`: [`allocate`], the pure max-min fair split every holder computes alike.
//! - `holder`: [`BudgetHolder`], one heartbeat every [`BudgetHolder::PERIOD`]: write the lease,
//!   read the live ones, run at the allocation; [`keep_heartbeating`], the loop every holder
//!   (a Register chunk, a CLI command) runs.

mod allocate;
mod dynamo;
mod holder;
mod lease;
mod scope;

pub use allocate::allocate;
pub use dynamo::{DynamoLeases, PARTITION, PARTITION_KEY, SORT_KEY, TTL_ATTRIBUTE};
pub use holder::{BudgetHolder, FAILURES_BEFORE_FALLBACK, keep_heartbeating};
pub use lease::{
    BudgetError, HolderId, Lease, LeaseFuture, LeaseTable, MAX_RATE, MemLeases, Rates,
};
pub use scope::Scope;

/// The DynamoDB SDK the table is used through, for callers that build the client themselves.
pub use aws_sdk_dynamodb;

/// The environment variable naming the lease table (the stack's `BudgetTableName` output).
pub const BUDGET_TABLE_ENV_VAR: &str = "BUDGET_TABLE";

/// The lease table's name from `BUDGET_TABLE`: unset or blank means no table (each holder keeps
/// its static share).
pub fn table_name_from_env(lookup: impl Fn(&str) -> Option<String>) -> Option<String> {
    lookup(BUDGET_TABLE_ENV_VAR)
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_blank_or_missing_table_name_is_no_table() {
        let env = |value: Option<&'static str>| {
            move |name: &str| {
                (name == BUDGET_TABLE_ENV_VAR)
                    .then_some(value)
                    .flatten()
                    .map(String::from)
            }
        };
        assert_eq!(table_name_from_env(env(None)), None);
        assert_eq!(table_name_from_env(env(Some(""))), None);
        assert_eq!(table_name_from_env(env(Some("  "))), None);
        assert_eq!(
            table_name_from_env(env(Some("thingpress-budget"))),
            Some("thingpress-budget".into())
        );
    }
}
