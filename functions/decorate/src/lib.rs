//! Decorate: apply the run's product profile to every entry of one chunk.

use aws_config::SdkConfig;
use lambda_runtime::LambdaEvent;
use serde_json::Value;
use thingpress_manifest::{Accepted, Rejected};
use thingpress_run::records::{DecoratedLine, RunInfo, parse_chunk_input};
use thingpress_run::store::{get_json, get_jsonl, to_jsonl};
use thingpress_run::{Settings, Store, TaskError};
use thingpress_product::Decorator;

/// The decorate task.
pub struct Task<S> {
    store: S,
    settings: Settings,
}

impl<S: Store> Task<S> {
    /// Builds the task once per container.
    pub fn new(store: S, _config: &SdkConfig, settings: Settings) -> Self {
        Task::with_store(store, settings)
    }

    /// Builds the task without AWS configuration (it needs only the store).
    pub fn with_store(store: S, settings: Settings) -> Self {
        Task { store, settings }
    }

    /// Handles one chunk; the output is the input plus where the decorated entries are.
    pub async fn handle(&self, event: LambdaEvent<Value>) -> Result<Value, TaskError> {
        self.decorate(event.payload).await
    }

    /// Decorates the chunk the payload names.
    pub async fn decorate(&self, mut payload: Value) -> Result<Value, TaskError> {
        let (run, chunk) = parse_chunk_input(&payload)?;
        let bucket = &self.settings.import_bucket;
        let info: RunInfo = get_json(
            &self.store,
            bucket,
            &run.run_info(),
            TaskError::invalid_input,
        )
        .await?;
        let decorator = Decorator::new(&info.profile).map_err(|(name, message)| {
            TaskError::new(name, format!("profile {:?}: {message}", info.profile.name))
        })?;
        let entries: Vec<Accepted> = get_jsonl(&self.store, bucket, &chunk.key)
            .await?
            .ok_or_else(|| {
                TaskError::invalid_input(format!("chunk {} does not exist", chunk.key))
            })?;
        if entries.len() as u64 != chunk.entries {
            return Err(TaskError::invalid_input(format!(
                "chunk {} holds {} entries, the index says {}",
                chunk.key,
                entries.len(),
                chunk.entries
            )));
        }
        let lines: Vec<DecoratedLine> = entries
            .iter()
            .map(|entry| match decorator.decorate(entry) {
                Ok(decorated) => DecoratedLine::Decorated(decorated),
                Err(rejected) => DecoratedLine::Rejected(rejected),
            })
            .collect();
        let rejected = lines
            .iter()
            .filter(|l| matches!(l, DecoratedLine::Rejected(Rejected { .. })))
            .count();
        let key = run.decorated(chunk.chunk);
        self.store.put(bucket, &key, to_jsonl(&lines)?).await?;
        tracing::info!(
            run_id = run.run_id(),
            chunk = chunk.chunk,
            decorated = lines.len() - rejected,
            rejected,
            "chunk decorated"
        );
        if let Some(object) = payload.as_object_mut() {
            object.insert("decoratedKey".into(), key.into());
            object.insert("decorated".into(), (lines.len() - rejected).into());
            object.insert("rejected".into(), rejected.into());
        }
        Ok(payload)
    }
}
