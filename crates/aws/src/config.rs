//! The SDK configuration every Lambda and the CLI load: endpoint from `AWS_ENDPOINT_URL` (the
//! SDK reads it), a short SDK retry (Step Functions does the long backoff).

use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use std::time::Duration;

/// Loads the SDK configuration the usual AWS way (environment, profile, role), with a short retry.
pub async fn load_config() -> aws_config::SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .retry_config(short_retry())
        .load()
        .await
}

/// Three attempts with a short backoff: enough for a blip, short enough that persistent
/// throttling reaches Step Functions' backoff with jitter.
pub fn short_retry() -> RetryConfig {
    RetryConfig::standard()
        .with_max_attempts(3)
        .with_initial_backoff(Duration::from_millis(100))
        .with_max_backoff(Duration::from_secs(2))
}
