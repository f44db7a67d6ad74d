//! Decorate: apply the run's product profile to every entry of one chunk.

use lambda_runtime::LambdaEvent;
use thingpress_manifest::Rejected;
use thingpress_product::Decorator;
use thingpress_run::payload::{ChunkInput, DecoratedChunk};
use thingpress_run::records::DecoratedLine;
use thingpress_run::{RunStore, Settings, Store, TaskError};

/// The decorate task.
pub struct Task<S> {
    store: S,
    settings: Settings,
}

impl<S: Store + Clone> Task<S> {
    /// Builds the task once per container (it needs only the store).
    pub fn with_store(store: S, settings: Settings) -> Self {
        Task { store, settings }
    }

    /// Handles one chunk.
    pub async fn handle(
        &self,
        event: LambdaEvent<ChunkInput>,
    ) -> Result<DecoratedChunk, TaskError> {
        self.decorate(event.payload).await
    }

    /// Decorates the chunk the input names; the output is the input plus where the decorated
    /// entries are, for Register.
    pub async fn decorate(&self, input: ChunkInput) -> Result<DecoratedChunk, TaskError> {
        let run = RunStore::new(
            self.store.clone(),
            &self.settings.import_bucket,
            input.layout()?,
        );
        let n = input.chunk.chunk;
        let info = run.run_info().await?;
        let decorator = Decorator::new(&info.profile).map_err(|(name, message)| {
            TaskError::new(name, format!("profile {:?}: {message}", info.profile.name))
        })?;
        let entries = run.chunk(n).await?.ok_or_else(|| {
            TaskError::invalid_input(format!("chunk {} does not exist", input.chunk.key))
        })?;
        if entries.len() as u64 != input.chunk.entries {
            return Err(TaskError::invalid_input(format!(
                "chunk {} holds {} entries, the index says {}",
                input.chunk.key,
                entries.len(),
                input.chunk.entries
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
            .count() as u64;
        let decorated = lines.len() as u64 - rejected;
        let decorated_key = run.put_decorated(n, &lines).await?;
        tracing::info!(
            run_id = input.run_id,
            chunk = n,
            decorated,
            rejected,
            "chunk decorated"
        );
        Ok(DecoratedChunk {
            run_id: input.run_id,
            bucket: input.bucket,
            chunk: input.chunk,
            child_execution_type: input.child_execution_type,
            decorated_key,
            decorated,
            rejected,
            done: None,
            continuation: None,
        })
    }
}
