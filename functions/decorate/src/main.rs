//! The decorate Lambda: wiring only; the work is in the library.

use lambda_runtime::{LambdaEvent, service_fn};
use serde_json::Value;
use thingpress_pipeline::{S3Store, Settings, aws};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    aws::init_tracing();
    let settings = Settings::from_env()?;
    let config = aws::load_config().await;
    let task =
        thingpress_decorate::Task::new(S3Store::new(aws::s3_client(&config)), &config, settings);
    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| task.handle(event))).await
}
