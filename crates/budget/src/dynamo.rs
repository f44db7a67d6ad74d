//! The lease table in DynamoDB: one item per holder under one partition, so one Query reads
//! every lease.
//!
//! Item: `pk` = "holders", `sk` = "<group>#<holder>", `group`, `holder`, `demand` and `granted`
//! (maps of numbers), `expiresAt` and `updatedAt` (epoch seconds). Writes are unconditional
//! (each holder writes only its own item). TTL deletes lapsed items only eventually, so the
//! reader drops `expiresAt <= now` itself.

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::timeout::TimeoutConfig;
use aws_sdk_dynamodb::types::AttributeValue;
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use tracing::warn;

use crate::lease::{BudgetError, HolderId, Lease, LeaseFuture, LeaseTable, Rates};

/// The partition every lease lives in.
pub const PARTITION: &str = "holders";
/// The table's partition key (a string attribute).
pub const PARTITION_KEY: &str = "pk";
/// The table's sort key (a string attribute): `<group>#<holder>`.
pub const SORT_KEY: &str = "sk";
/// How long one table call (retries included) may take: well under a heartbeat period, so a
/// table that hangs counts as failing instead of stalling the holder.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// The lease's expiry, epoch seconds: the table's TTL attribute.
pub const TTL_ATTRIBUTE: &str = "expiresAt";

/// Leases in a DynamoDB table (the stack's `BudgetTable`, or a table shared by several stacks).
#[derive(Debug, Clone)]
pub struct DynamoLeases {
    client: Client,
    table: String,
}

impl DynamoLeases {
    /// Leases in `table`, through a client the caller builds once.
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        DynamoLeases {
            client,
            table: table.into(),
        }
    }

    /// Leases in `table`, with a client from the shared SDK configuration whose calls give up
    /// after [`CALL_TIMEOUT`]: a holder waits for its last heartbeat before releasing, and a
    /// hung one must not hold a task to its own timeout.
    pub fn from_config(config: &aws_config::SdkConfig, table: impl Into<String>) -> Self {
        let timeouts = TimeoutConfig::builder()
            .operation_timeout(CALL_TIMEOUT)
            .build();
        let config = aws_sdk_dynamodb::config::Builder::from(config)
            .timeout_config(timeouts)
            .build();
        Self::new(Client::from_conf(config), table)
    }

    /// The table's name.
    pub fn table(&self) -> &str {
        &self.table
    }

    fn failed<E>(&self, operation: &'static str, err: SdkError<E, HttpResponse>) -> BudgetError
    where
        E: aws_sdk_dynamodb::error::ProvideErrorMetadata + std::error::Error + 'static,
    {
        let failure = thingpress_aws::classify(&err);
        BudgetError::Table {
            table: self.table.clone(),
            operation,
            class: failure.class,
            detail: failure.detail,
        }
    }

    async fn put_lease(&self, lease: &Lease, now: u64) -> Result<(), BudgetError> {
        lease.check()?;
        let sk = lease.id.sort_key()?;
        self.client
            .update_item()
            .table_name(&self.table)
            .key(PARTITION_KEY, AttributeValue::S(PARTITION.into()))
            .key(SORT_KEY, AttributeValue::S(sk))
            // `group` is a DynamoDB reserved word: every name goes through a placeholder.
            .update_expression(
                "SET #group = :group, #holder = :holder, #demand = :demand, \
                 #granted = :granted, #expiresAt = :expiresAt, #updatedAt = :updatedAt",
            )
            .expression_attribute_names("#group", "group")
            .expression_attribute_names("#holder", "holder")
            .expression_attribute_names("#demand", "demand")
            .expression_attribute_names("#granted", "granted")
            .expression_attribute_names("#expiresAt", TTL_ATTRIBUTE)
            .expression_attribute_names("#updatedAt", "updatedAt")
            .expression_attribute_values(":group", AttributeValue::S(lease.id.group.clone()))
            .expression_attribute_values(":holder", AttributeValue::S(lease.id.holder.clone()))
            .expression_attribute_values(":demand", rates_value(&lease.demand))
            .expression_attribute_values(":granted", rates_value(&lease.granted))
            .expression_attribute_values(":expiresAt", number(lease.expires_at))
            .expression_attribute_values(":updatedAt", number(now))
            .send()
            .await
            .map_err(|e| self.failed("UpdateItem", e))?;
        Ok(())
    }

    async fn live_leases(&self, now: u64) -> Result<Vec<Lease>, BudgetError> {
        let mut leases = Vec::new();
        let mut start: Option<HashMap<String, AttributeValue>> = None;
        loop {
            let page = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("#pk = :pk")
                .expression_attribute_names("#pk", PARTITION_KEY)
                .expression_attribute_values(":pk", AttributeValue::S(PARTITION.into()))
                // A holder must see the lease it has just written, and the others' latest.
                .consistent_read(true)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| self.failed("Query", e))?;
            for item in page.items() {
                match lease_from_item(item) {
                    Ok(lease) if lease.expires_at > now => leases.push(lease),
                    Ok(_) => {}
                    // A foreign or damaged item must not stop every holder's budget.
                    Err(reason) => warn!(
                        table = %self.table,
                        sk = ?item.get(SORT_KEY).and_then(|v| v.as_s().ok()),
                        %reason,
                        "budget: skipping an unreadable lease"
                    ),
                }
            }
            match page.last_evaluated_key() {
                Some(key) if !key.is_empty() => start = Some(key.clone()),
                _ => break,
            }
        }
        Ok(leases)
    }

    async fn delete_lease(&self, id: &HolderId) -> Result<(), BudgetError> {
        let sk = id.sort_key()?;
        self.client
            .delete_item()
            .table_name(&self.table)
            .key(PARTITION_KEY, AttributeValue::S(PARTITION.into()))
            .key(SORT_KEY, AttributeValue::S(sk))
            .send()
            .await
            .map_err(|e| self.failed("DeleteItem", e))?;
        Ok(())
    }
}

impl LeaseTable for DynamoLeases {
    fn put<'a>(&'a self, lease: &'a Lease) -> LeaseFuture<'a, ()> {
        Box::pin(async move {
            let now = crate::holder::epoch_seconds()?;
            self.put_lease(lease, now).await
        })
    }

    fn live(&self, now: u64) -> LeaseFuture<'_, Vec<Lease>> {
        Box::pin(self.live_leases(now))
    }

    fn delete<'a>(&'a self, id: &'a HolderId) -> LeaseFuture<'a, ()> {
        Box::pin(self.delete_lease(id))
    }
}

fn number(n: u64) -> AttributeValue {
    AttributeValue::N(n.to_string())
}

fn rates_value(rates: &Rates) -> AttributeValue {
    AttributeValue::M(
        rates
            .iter()
            // f64's Display is the shortest exact decimal, never an exponent: a DynamoDB number.
            .map(|(api, rate)| (api.clone(), AttributeValue::N(rate.to_string())))
            .collect(),
    )
}

/// A stored item as a lease, or why it is not one.
fn lease_from_item(item: &HashMap<String, AttributeValue>) -> Result<Lease, String> {
    let text = |name: &str| -> Result<String, String> {
        match item.get(name) {
            Some(AttributeValue::S(s)) => Ok(s.clone()),
            other => Err(format!("{name} is not a string: {other:?}")),
        }
    };
    let epoch = |name: &str| -> Result<u64, String> {
        match item.get(name) {
            Some(AttributeValue::N(n)) => n
                .parse::<u64>()
                .map_err(|e| format!("{name} {n:?} is not epoch seconds: {e}")),
            other => Err(format!("{name} is not a number: {other:?}")),
        }
    };
    let rates = |name: &str| -> Result<Rates, String> {
        match item.get(name) {
            Some(AttributeValue::M(map)) => map
                .iter()
                .map(|(api, value)| match value {
                    AttributeValue::N(n) => n
                        .parse::<f64>()
                        .map(|rate| (api.clone(), rate))
                        .map_err(|e| format!("{name}.{api} {n:?} is not a number: {e}")),
                    other => Err(format!("{name}.{api} is not a number: {other:?}")),
                })
                .collect(),
            other => Err(format!("{name} is not a map: {other:?}")),
        }
    };
    Ok(Lease {
        id: HolderId {
            group: text("group")?,
            holder: text("holder")?,
        },
        demand: rates("demand")?,
        granted: rates("granted")?,
        expires_at: epoch(TTL_ATTRIBUTE)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_dynamodb::operation::query::QueryOutput;
    use aws_sdk_dynamodb::operation::update_item::UpdateItemOutput;
    use aws_smithy_mocks::{RuleMode, mock, mock_client};

    fn item(
        group: &str,
        holder: &str,
        granted: &str,
        expires_at: u64,
    ) -> HashMap<String, AttributeValue> {
        HashMap::from([
            ("pk".into(), AttributeValue::S(PARTITION.into())),
            ("sk".into(), AttributeValue::S(format!("{group}#{holder}"))),
            ("group".into(), AttributeValue::S(group.into())),
            ("holder".into(), AttributeValue::S(holder.into())),
            (
                "demand".into(),
                AttributeValue::M(HashMap::from([(
                    "RegisterCertificateWithoutCA".into(),
                    AttributeValue::N("15".into()),
                )])),
            ),
            (
                "granted".into(),
                AttributeValue::M(HashMap::from([(
                    "RegisterCertificateWithoutCA".into(),
                    AttributeValue::N(granted.into()),
                )])),
            ),
            (
                "expiresAt".into(),
                AttributeValue::N(expires_at.to_string()),
            ),
            ("updatedAt".into(), AttributeValue::N("1000".into())),
        ])
    }

    #[tokio::test]
    async fn put_writes_the_whole_lease_under_its_key() {
        let update = mock!(Client::update_item)
            .match_requests(|r| {
                let key = r.key().cloned().unwrap_or_default();
                let values = r.expression_attribute_values().cloned().unwrap_or_default();
                let names = r.expression_attribute_names().cloned().unwrap_or_default();
                r.table_name() == Some("stack-budget")
                    && r.condition_expression().is_none()
                    && key.get("pk") == Some(&AttributeValue::S("holders".into()))
                    && key.get("sk") == Some(&AttributeValue::S("run-1#chunk-00003".into()))
                    && names.get("#group").map(String::as_str) == Some("group")
                    && values.get(":expiresAt") == Some(&AttributeValue::N("1015".into()))
                    && values.get(":granted")
                        == Some(&AttributeValue::M(HashMap::from([(
                            "RegisterCertificateWithoutCA".into(),
                            AttributeValue::N("4.5".into()),
                        )])))
                    && values.get(":demand")
                        == Some(&AttributeValue::M(HashMap::from([(
                            "RegisterCertificateWithoutCA".into(),
                            AttributeValue::N("13.5".into()),
                        )])))
            })
            .then_output(|| UpdateItemOutput::builder().build());
        let client = mock_client!(aws_sdk_dynamodb, RuleMode::Sequential, &[&update]);
        let table = DynamoLeases::new(client, "stack-budget");
        let lease = Lease {
            id: HolderId {
                group: "run-1".into(),
                holder: "chunk-00003".into(),
            },
            demand: [("RegisterCertificateWithoutCA".to_string(), 13.5)].into(),
            granted: [("RegisterCertificateWithoutCA".to_string(), 4.5)].into(),
            expires_at: 1015,
        };
        table.put_lease(&lease, 1000).await.unwrap();
        assert_eq!(update.num_calls(), 1);
    }

    #[tokio::test]
    async fn live_reads_every_page_consistently_and_drops_lapsed_and_unreadable_items() {
        let mut broken = item("run-9", "chunk-00000", "1", 2000);
        broken.remove("granted");
        let first = mock!(Client::query)
            .match_requests(|r| {
                r.consistent_read() == Some(true)
                    && r.exclusive_start_key().is_none()
                    && r.key_condition_expression() == Some("#pk = :pk")
            })
            .then_output(move || {
                QueryOutput::builder()
                    .items(item("run-1", "chunk-00000", "4.5", 2000))
                    .items(item("run-1", "chunk-00001", "4.5", 1000))
                    .last_evaluated_key("pk", AttributeValue::S(PARTITION.into()))
                    .last_evaluated_key("sk", AttributeValue::S("run-1#chunk-00001".into()))
                    .build()
            });
        let second = mock!(Client::query)
            .match_requests(|r| r.exclusive_start_key().is_some())
            .then_output(move || {
                QueryOutput::builder()
                    .items(broken.clone())
                    .items(item("cli-7", "cli", "2", 1001))
                    .build()
            });
        let client = mock_client!(aws_sdk_dynamodb, RuleMode::Sequential, &[&first, &second]);
        let live = DynamoLeases::new(client, "stack-budget")
            .live(1000)
            .await
            .unwrap();
        let ids: Vec<String> = live.iter().map(|l| l.id.to_string()).collect();
        assert_eq!(ids, ["run-1#chunk-00000", "cli-7#cli"]);
        assert_eq!(live[0].granted["RegisterCertificateWithoutCA"], 4.5);
        assert_eq!(live[1].expires_at, 1001);
    }

    #[tokio::test]
    async fn a_failed_call_names_the_table_and_operation() {
        let denied = mock!(Client::delete_item).then_error(|| {
            aws_sdk_dynamodb::operation::delete_item::DeleteItemError::generic(
                aws_sdk_dynamodb::error::ErrorMetadata::builder()
                    .code("AccessDeniedException")
                    .message("not authorized to perform: dynamodb:DeleteItem")
                    .build(),
            )
        });
        let client = mock_client!(aws_sdk_dynamodb, RuleMode::Sequential, &[&denied]);
        let table = DynamoLeases::new(client, "stack-budget");
        let err = table
            .delete(&HolderId {
                group: "run-1".into(),
                holder: "chunk-00000".into(),
            })
            .await
            .unwrap_err();
        assert!(matches!(
            &err,
            BudgetError::Table {
                operation: "DeleteItem",
                class: thingpress_aws::Class::Rejected,
                ..
            }
        ));
        let text = err.to_string();
        assert!(
            text.contains("stack-budget") && text.contains("AccessDeniedException"),
            "{text}"
        );
    }
}
