//! The summarize Lambda: wiring only; the work is in the library.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    let container = thingpress_lambda::Container::load().await?;
    let task = thingpress_summarize::Task::with_store(container.store, container.settings);
    thingpress_lambda::serve(|event| task.handle(event)).await
}
