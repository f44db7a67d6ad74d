//! How Thingpress talks to AWS, written once for the Lambdas and the CLI: the SDK configuration
//! (built once, endpoint from `AWS_ENDPOINT_URL`, a short SDK retry) and the one classifier that
//! sorts a failed call into throttled, transient or rejected.

mod classify;
mod config;

pub use classify::{Class, Failure, class_of, classify, is_throttling_code, service_message};
pub use config::{load_config, short_retry};
