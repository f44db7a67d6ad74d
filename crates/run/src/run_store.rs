//! One run's objects, typed: every read and write of a run goes through here, so no task builds
//! a run key or chooses a record's type for a key itself.

use thingpress_importer::EntryResult;

use crate::records::{ChunkDescriptor, ChunkStats, DecoratedLine, ProgressLine, RunInfo};
use crate::report::{Report, ResultLine};
use crate::store::{for_each_jsonl, get_json, get_jsonl, put_json, to_jsonl};
use crate::{RunLayout, Store, TaskError};

/// A run in its bucket.
#[derive(Debug, Clone)]
pub struct RunStore<S> {
    store: S,
    bucket: String,
    run: RunLayout,
}

impl<S: Store> RunStore<S> {
    /// The run `run` in `bucket`.
    pub fn new(store: S, bucket: &str, run: RunLayout) -> Self {
        RunStore {
            store,
            bucket: bucket.to_owned(),
            run,
        }
    }

    /// The run's keys.
    pub fn layout(&self) -> &RunLayout {
        &self.run
    }

    /// The run bucket.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The store it reads and writes.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// `run.json`; a run without one is not a run (`Thingpress.InvalidInput`).
    pub async fn run_info(&self) -> Result<RunInfo, TaskError> {
        get_json(
            &self.store,
            &self.bucket,
            &self.run.run_info(),
            TaskError::invalid_input,
        )
        .await
    }

    /// Writes `run.json`.
    pub async fn put_run_info(&self, info: &RunInfo) -> Result<(), TaskError> {
        put_json(&self.store, &self.bucket, &self.run.run_info(), info).await
    }

    /// `chunks.json`, the index the Map reads.
    pub async fn chunk_index(&self) -> Result<Vec<ChunkDescriptor>, TaskError> {
        get_json(
            &self.store,
            &self.bucket,
            &self.run.chunk_index(),
            TaskError::invalid_input,
        )
        .await
    }

    /// Writes `chunks.json`.
    pub async fn put_chunk_index(&self, index: &[ChunkDescriptor]) -> Result<(), TaskError> {
        put_json(&self.store, &self.bucket, &self.run.chunk_index(), &index).await
    }

    /// The entries of chunk `n` (an import's accepted manifest entries, an activation's
    /// shipped devices), `None` when it does not exist.
    pub async fn chunk<T: serde::de::DeserializeOwned>(
        &self,
        n: u32,
    ) -> Result<Option<Vec<T>>, TaskError> {
        get_jsonl(&self.store, &self.bucket, &self.run.chunk(n)).await
    }

    /// Writes chunk `n` (JSON lines, serialised by Split as it streams).
    pub async fn put_chunk(&self, n: u32, body: Vec<u8>) -> Result<(), TaskError> {
        self.store.put(&self.bucket, &self.run.chunk(n), body).await
    }

    /// Writes part `part` of Split's rejections (JSON lines).
    pub async fn put_rejected(&self, part: u32, body: Vec<u8>) -> Result<(), TaskError> {
        self.store
            .put(&self.bucket, &self.run.rejected(part), body)
            .await
    }

    /// Streams part `part` of Split's rejections; `false` when it does not exist.
    pub async fn for_each_rejected<T: serde::de::DeserializeOwned>(
        &self,
        part: u32,
        each: impl FnMut(T),
    ) -> Result<bool, TaskError> {
        for_each_jsonl(&self.store, &self.bucket, &self.run.rejected(part), each).await
    }

    /// The decorated entries of chunk `n`, `None` when it was not decorated.
    pub async fn decorated(&self, n: u32) -> Result<Option<Vec<DecoratedLine>>, TaskError> {
        get_jsonl(&self.store, &self.bucket, &self.run.decorated(n)).await
    }

    /// Writes the decorated entries of chunk `n`; returns their key.
    pub async fn put_decorated(
        &self,
        n: u32,
        lines: &[DecoratedLine],
    ) -> Result<String, TaskError> {
        let key = self.run.decorated(n);
        self.store.put(&self.bucket, &key, to_jsonl(lines)?).await?;
        Ok(key)
    }

    /// The results of chunk `n`, `None` until the chunk finished.
    pub async fn results(&self, n: u32) -> Result<Option<Vec<EntryResult>>, TaskError> {
        get_jsonl(&self.store, &self.bucket, &self.run.results(n)).await
    }

    /// Streams the results of chunk `n` as the report counts them; `false` when it has none.
    pub async fn for_each_result(
        &self,
        n: u32,
        each: impl FnMut(ResultLine),
    ) -> Result<bool, TaskError> {
        for_each_jsonl(&self.store, &self.bucket, &self.run.results(n), each).await
    }

    /// Writes the results of chunk `n`, which marks it finished.
    pub async fn put_results(&self, n: u32, results: &[EntryResult]) -> Result<(), TaskError> {
        self.store
            .put(&self.bucket, &self.run.results(n), to_jsonl(results)?)
            .await
    }

    /// What a stopped attempt at chunk `n` kept (empty when none did).
    pub async fn progress(&self, n: u32) -> Result<Vec<ProgressLine>, TaskError> {
        Ok(get_jsonl(&self.store, &self.bucket, &self.run.progress(n))
            .await?
            .unwrap_or_default())
    }

    /// Keeps the progress of a stopped attempt at chunk `n`.
    pub async fn put_progress(&self, n: u32, lines: &[ProgressLine]) -> Result<(), TaskError> {
        self.store
            .put(&self.bucket, &self.run.progress(n), to_jsonl(lines)?)
            .await
    }

    /// The stats of chunk `n`; `None` when there are none or they do not parse (stats are
    /// informational: a damaged file must not stop a chunk or its report).
    pub async fn stats(&self, n: u32) -> Result<Option<ChunkStats>, TaskError> {
        Ok(self
            .store
            .get(&self.bucket, &self.run.stats(n))
            .await?
            .and_then(|body| serde_json::from_slice(&body).ok()))
    }

    /// Writes the stats of chunk `n`.
    pub async fn put_stats(&self, n: u32, stats: &ChunkStats) -> Result<(), TaskError> {
        put_json(&self.store, &self.bucket, &self.run.stats(n), stats).await
    }

    /// The run report, `None` until Summarize wrote it.
    pub async fn report(&self) -> Result<Option<Report>, TaskError> {
        match self.store.get(&self.bucket, &self.run.report()).await? {
            None => Ok(None),
            Some(body) => serde_json::from_slice(&body).map(Some).map_err(|e| {
                TaskError::invalid_input(format!(
                    "s3://{}/{} is not a report: {e}",
                    self.bucket,
                    self.run.report()
                ))
            }),
        }
    }

    /// Writes the run report; returns its key.
    pub async fn put_report(&self, report: &Report) -> Result<String, TaskError> {
        let key = self.run.report();
        put_json(&self.store, &self.bucket, &key, report).await?;
        Ok(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemStore;
    use crate::records::ProgressLine;
    use thingpress_importer::Outcome;

    fn result(index: u64) -> EntryResult {
        EntryResult {
            index,
            certificate_id: format!("c{index}"),
            thing_name: format!("t{index}"),
            device_id: format!("d{index}"),
            outcome: Outcome::Registered,
            certificate_arn: None,
            actions: Vec::new(),
            error: None,
            message: None,
        }
    }

    #[tokio::test]
    async fn records_go_to_the_layout_keys_and_read_back() {
        let store = std::sync::Arc::new(MemStore::new());
        let run = RunStore::new(
            std::sync::Arc::clone(&store),
            "b",
            RunLayout::new("r").unwrap(),
        );
        let index = vec![ChunkDescriptor {
            chunk: 0,
            key: run.layout().chunk(0),
            entries: 2,
            first_index: 0,
            target: None,
        }];
        run.put_chunk_index(&index).await.unwrap();
        assert_eq!(run.chunk_index().await.unwrap(), index);
        assert!(
            store
                .get("b", "runs/r/chunks.json")
                .await
                .unwrap()
                .is_some()
        );

        assert_eq!(run.results(0).await.unwrap(), None);
        run.put_results(0, &[result(0), result(1)]).await.unwrap();
        assert_eq!(run.results(0).await.unwrap().unwrap().len(), 2);
        let mut counted = 0;
        assert!(run.for_each_result(0, |_| counted += 1).await.unwrap());
        assert_eq!(counted, 2);
        assert!(
            store
                .get("b", "runs/r/results/00000.jsonl")
                .await
                .unwrap()
                .is_some()
        );

        assert!(run.progress(0).await.unwrap().is_empty());
        run.put_progress(0, &[ProgressLine::Done(result(0))])
            .await
            .unwrap();
        assert_eq!(run.progress(0).await.unwrap().len(), 1);

        assert_eq!(run.stats(0).await.unwrap(), None);
        store
            .put("b", "runs/r/stats/00000.json", b"{damaged".to_vec())
            .await
            .unwrap();
        assert_eq!(run.stats(0).await.unwrap(), None, "damaged stats are none");
        let stats = ChunkStats {
            attempts: 2,
            ..ChunkStats::default()
        };
        run.put_stats(0, &stats).await.unwrap();
        assert_eq!(run.stats(0).await.unwrap(), Some(stats));

        let err = run.run_info().await.unwrap_err();
        assert!(
            err.message.contains("runs/r/run.json does not exist"),
            "{err}"
        );
        assert_eq!(run.report().await.unwrap(), None);
        store
            .put("b", "runs/r/report.json", b"[]".to_vec())
            .await
            .unwrap();
        assert!(run.report().await.is_err());
    }
}
