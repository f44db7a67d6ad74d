//! AWS SDK configuration shared by every Lambda and the CLI: built once, endpoint from
//! `AWS_ENDPOINT_URL`, a short SDK retry (Step Functions does the long backoff).

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

/// An S3 client; path-style addressing when a custom endpoint is set (the local stack has no
/// per-bucket host names).
pub fn s3_client(config: &aws_config::SdkConfig) -> aws_sdk_s3::Client {
    let builder =
        aws_sdk_s3::config::Builder::from(config).force_path_style(config.endpoint_url().is_some());
    aws_sdk_s3::Client::from_conf(builder.build())
}

/// Installs the tracing subscriber: JSON logs when Lambda's log format is JSON, text otherwise;
/// level from `RUST_LOG` (default info).
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let json = std::env::var("AWS_LAMBDA_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .without_time();
    // try_init: a second call (tests) keeps the first subscriber.
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}
