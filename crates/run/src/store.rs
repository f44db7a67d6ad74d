//! Object storage as the Lambdas use it: S3 in production and on the local stack, memory in tests.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;

use aws_sdk_s3::primitives::ByteStream;
use bytes::Bytes;
use tokio::io::AsyncBufRead;

use crate::TaskError;

/// A readable object's identity: what a claim is made on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMeta {
    /// The ETag (quotes removed).
    pub etag: String,
    /// The version id, on a versioned bucket.
    pub version_id: Option<String>,
    /// The size in bytes.
    pub size: u64,
}

/// A streaming reader over an object's bytes.
pub type ObjectReader = Pin<Box<dyn AsyncBufRead + Send>>;

/// The object operations the Lambdas need.
pub trait Store: Send + Sync {
    /// The object's bytes, or `None` when it does not exist.
    fn get(
        &self,
        bucket: &str,
        key: &str,
    ) -> impl Future<Output = Result<Option<Bytes>, TaskError>> + Send;

    /// Writes (or overwrites) an object.
    fn put(
        &self,
        bucket: &str,
        key: &str,
        body: Vec<u8>,
    ) -> impl Future<Output = Result<(), TaskError>> + Send;

    /// Writes an object only if none exists (`If-None-Match: *`); `false` when one did.
    fn put_if_absent(
        &self,
        bucket: &str,
        key: &str,
        body: Vec<u8>,
    ) -> impl Future<Output = Result<bool, TaskError>> + Send;

    /// The object's identity, or `None` when it does not exist.
    fn head(
        &self,
        bucket: &str,
        key: &str,
    ) -> impl Future<Output = Result<Option<ObjectMeta>, TaskError>> + Send;

    /// Streams the object (a specific version when given).
    fn reader(
        &self,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
    ) -> impl Future<Output = Result<ObjectReader, TaskError>> + Send;

    /// Streams the object's current version, or `None` when it does not exist.
    fn reader_if_exists(
        &self,
        bucket: &str,
        key: &str,
    ) -> impl Future<Output = Result<Option<ObjectReader>, TaskError>> + Send;

    /// Every key in the bucket under `prefix`, in S3's order (ascending UTF-8), across all pages.
    fn list(
        &self,
        bucket: &str,
        prefix: &str,
    ) -> impl Future<Output = Result<Vec<String>, TaskError>> + Send;

    /// Removes an object; removing one that does not exist is not an error (as in S3).
    fn delete(&self, bucket: &str, key: &str)
    -> impl Future<Output = Result<(), TaskError>> + Send;
}

impl<T: Store> Store for std::sync::Arc<T> {
    fn get(
        &self,
        bucket: &str,
        key: &str,
    ) -> impl Future<Output = Result<Option<Bytes>, TaskError>> + Send {
        (**self).get(bucket, key)
    }

    fn put(
        &self,
        bucket: &str,
        key: &str,
        body: Vec<u8>,
    ) -> impl Future<Output = Result<(), TaskError>> + Send {
        (**self).put(bucket, key, body)
    }

    fn put_if_absent(
        &self,
        bucket: &str,
        key: &str,
        body: Vec<u8>,
    ) -> impl Future<Output = Result<bool, TaskError>> + Send {
        (**self).put_if_absent(bucket, key, body)
    }

    fn head(
        &self,
        bucket: &str,
        key: &str,
    ) -> impl Future<Output = Result<Option<ObjectMeta>, TaskError>> + Send {
        (**self).head(bucket, key)
    }

    fn reader(
        &self,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
    ) -> impl Future<Output = Result<ObjectReader, TaskError>> + Send {
        (**self).reader(bucket, key, version_id)
    }

    fn reader_if_exists(
        &self,
        bucket: &str,
        key: &str,
    ) -> impl Future<Output = Result<Option<ObjectReader>, TaskError>> + Send {
        (**self).reader_if_exists(bucket, key)
    }

    fn list(
        &self,
        bucket: &str,
        prefix: &str,
    ) -> impl Future<Output = Result<Vec<String>, TaskError>> + Send {
        (**self).list(bucket, prefix)
    }

    fn delete(
        &self,
        bucket: &str,
        key: &str,
    ) -> impl Future<Output = Result<(), TaskError>> + Send {
        (**self).delete(bucket, key)
    }
}

/// An S3 client; path-style addressing when a custom endpoint is set (the local stack has no
/// per-bucket host names).
pub fn s3_client(config: &aws_config::SdkConfig) -> aws_sdk_s3::Client {
    let builder =
        aws_sdk_s3::config::Builder::from(config).force_path_style(config.endpoint_url().is_some());
    aws_sdk_s3::Client::from_conf(builder.build())
}

/// S3, with the client built once per Lambda container.
#[derive(Debug, Clone)]
pub struct S3Store {
    client: aws_sdk_s3::Client,
}

impl S3Store {
    /// Wraps a client.
    pub fn new(client: aws_sdk_s3::Client) -> Self {
        S3Store { client }
    }
}

fn s3_target(bucket: &str, key: &str) -> String {
    format!("s3://{bucket}/{key}")
}

impl Store for S3Store {
    async fn get(&self, bucket: &str, key: &str) -> Result<Option<Bytes>, TaskError> {
        let output = match self
            .client
            .get_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
        {
            Ok(output) => output,
            Err(err) if err.as_service_error().is_some_and(|e| e.is_no_such_key()) => {
                return Ok(None);
            }
            Err(err) => {
                return Err(TaskError::from_sdk(
                    "GetObject",
                    &s3_target(bucket, key),
                    err,
                ));
            }
        };
        let body = output.body.collect().await.map_err(|e| {
            TaskError::new(
                thingpress_manifest::ErrorName::Transient,
                format!("reading {} failed: {e}", s3_target(bucket, key)),
            )
        })?;
        Ok(Some(body.into_bytes()))
    }

    async fn put(&self, bucket: &str, key: &str, body: Vec<u8>) -> Result<(), TaskError> {
        self.client
            .put_object()
            .bucket(bucket)
            .key(key)
            .body(ByteStream::from(body))
            .send()
            .await
            .map_err(|err| TaskError::from_sdk("PutObject", &s3_target(bucket, key), err))?;
        Ok(())
    }

    async fn put_if_absent(
        &self,
        bucket: &str,
        key: &str,
        body: Vec<u8>,
    ) -> Result<bool, TaskError> {
        let result = self
            .client
            .put_object()
            .bucket(bucket)
            .key(key)
            .if_none_match("*")
            .body(ByteStream::from(body))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(err) => {
                use aws_smithy_types::error::metadata::ProvideErrorMetadata;
                let code = err.as_service_error().and_then(|e| e.code());
                // 412 PreconditionFailed: another writer got there first. 409
                // ConditionalRequestConflict: a concurrent conditional write is in flight.
                if matches!(
                    code,
                    Some("PreconditionFailed" | "ConditionalRequestConflict")
                ) {
                    Ok(false)
                } else {
                    Err(TaskError::from_sdk(
                        "PutObject",
                        &s3_target(bucket, key),
                        err,
                    ))
                }
            }
        }
    }

    async fn head(&self, bucket: &str, key: &str) -> Result<Option<ObjectMeta>, TaskError> {
        match self
            .client
            .head_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
        {
            Ok(output) => Ok(Some(ObjectMeta {
                etag: output
                    .e_tag()
                    .unwrap_or_default()
                    .trim_matches('"')
                    .to_owned(),
                version_id: output.version_id().map(str::to_owned),
                size: output
                    .content_length()
                    .unwrap_or_default()
                    .max(0)
                    .unsigned_abs(),
            })),
            Err(err) if err.as_service_error().is_some_and(|e| e.is_not_found()) => Ok(None),
            Err(err) => Err(TaskError::from_sdk(
                "HeadObject",
                &s3_target(bucket, key),
                err,
            )),
        }
    }

    async fn reader(
        &self,
        bucket: &str,
        key: &str,
        version_id: Option<&str>,
    ) -> Result<ObjectReader, TaskError> {
        let output = self
            .client
            .get_object()
            .bucket(bucket)
            .key(key)
            .set_version_id(version_id.map(str::to_owned))
            .send()
            .await
            .map_err(|err| TaskError::from_sdk("GetObject", &s3_target(bucket, key), err))?;
        Ok(Box::pin(output.body.into_async_read()))
    }

    async fn reader_if_exists(
        &self,
        bucket: &str,
        key: &str,
    ) -> Result<Option<ObjectReader>, TaskError> {
        match self
            .client
            .get_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
        {
            Ok(output) => Ok(Some(Box::pin(output.body.into_async_read()))),
            Err(err) if err.as_service_error().is_some_and(|e| e.is_no_such_key()) => Ok(None),
            Err(err) => Err(TaskError::from_sdk(
                "GetObject",
                &s3_target(bucket, key),
                err,
            )),
        }
    }

    async fn list(&self, bucket: &str, prefix: &str) -> Result<Vec<String>, TaskError> {
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(bucket)
            .prefix(prefix)
            .into_paginator()
            .send();
        let mut keys = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|err| {
                TaskError::from_sdk("ListObjectsV2", &s3_target(bucket, prefix), err)
            })?;
            keys.extend(
                page.contents()
                    .iter()
                    .filter_map(|o| o.key().map(str::to_owned)),
            );
        }
        Ok(keys)
    }

    async fn delete(&self, bucket: &str, key: &str) -> Result<(), TaskError> {
        self.client
            .delete_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .map_err(|err| TaskError::from_sdk("DeleteObject", &s3_target(bucket, key), err))?;
        Ok(())
    }
}

/// An in-memory store for tests and tools; the bucket is part of the key.
#[derive(Debug, Default)]
pub struct MemStore {
    objects: Mutex<BTreeMap<(String, String), Bytes>>,
}

impl MemStore {
    /// An empty store.
    pub fn new() -> Self {
        MemStore::default()
    }

    /// Every key in a bucket under a prefix, sorted.
    pub fn keys(&self, bucket: &str, prefix: &str) -> Vec<String> {
        self.lock()
            .keys()
            .filter(|(b, k)| b == bucket && k.starts_with(prefix))
            .map(|(_, k)| k.clone())
            .collect()
    }

    /// Removes an object (tests use it to simulate lost work).
    pub fn remove(&self, bucket: &str, key: &str) -> bool {
        self.lock()
            .remove(&(bucket.to_owned(), key.to_owned()))
            .is_some()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<(String, String), Bytes>> {
        // A poisoned lock only means another test thread panicked; the map is still usable.
        self.objects.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn get_now(&self, bucket: &str, key: &str) -> Option<Bytes> {
        self.lock()
            .get(&(bucket.to_owned(), key.to_owned()))
            .cloned()
    }
}

impl Store for MemStore {
    async fn get(&self, bucket: &str, key: &str) -> Result<Option<Bytes>, TaskError> {
        Ok(self.get_now(bucket, key))
    }

    async fn put(&self, bucket: &str, key: &str, body: Vec<u8>) -> Result<(), TaskError> {
        self.lock()
            .insert((bucket.to_owned(), key.to_owned()), Bytes::from(body));
        Ok(())
    }

    async fn put_if_absent(
        &self,
        bucket: &str,
        key: &str,
        body: Vec<u8>,
    ) -> Result<bool, TaskError> {
        let mut objects = self.lock();
        let slot = (bucket.to_owned(), key.to_owned());
        if objects.contains_key(&slot) {
            return Ok(false);
        }
        objects.insert(slot, Bytes::from(body));
        Ok(true)
    }

    async fn head(&self, bucket: &str, key: &str) -> Result<Option<ObjectMeta>, TaskError> {
        Ok(self.get_now(bucket, key).map(|body| ObjectMeta {
            etag: thingpress_manifest::sha256_hex(&body),
            version_id: None,
            size: body.len() as u64,
        }))
    }

    async fn reader(
        &self,
        bucket: &str,
        key: &str,
        _version_id: Option<&str>,
    ) -> Result<ObjectReader, TaskError> {
        let body = self.get_now(bucket, key).ok_or_else(|| {
            TaskError::invalid_input(format!("{} does not exist", s3_target(bucket, key)))
        })?;
        Ok(Box::pin(std::io::Cursor::new(body)))
    }

    async fn reader_if_exists(
        &self,
        bucket: &str,
        key: &str,
    ) -> Result<Option<ObjectReader>, TaskError> {
        Ok(self
            .get_now(bucket, key)
            .map(|body| -> ObjectReader { Box::pin(std::io::Cursor::new(body)) }))
    }

    async fn list(&self, bucket: &str, prefix: &str) -> Result<Vec<String>, TaskError> {
        Ok(self.keys(bucket, prefix))
    }

    async fn delete(&self, bucket: &str, key: &str) -> Result<(), TaskError> {
        self.remove(bucket, key);
        Ok(())
    }
}

/// Reads a JSON object, failing with `missing` when it does not exist.
pub async fn get_json<T: serde::de::DeserializeOwned>(
    store: &impl Store,
    bucket: &str,
    key: &str,
    missing: impl FnOnce(String) -> TaskError,
) -> Result<T, TaskError> {
    let body = store
        .get(bucket, key)
        .await?
        .ok_or_else(|| missing(format!("{} does not exist", s3_target(bucket, key))))?;
    serde_json::from_slice(&body).map_err(|e| {
        TaskError::invalid_input(format!(
            "{} is not valid JSON for its kind: {e}",
            s3_target(bucket, key)
        ))
    })
}

/// Writes a value as JSON.
pub async fn put_json<T: serde::Serialize>(
    store: &impl Store,
    bucket: &str,
    key: &str,
    value: &T,
) -> Result<(), TaskError> {
    let body = serde_json::to_vec(value)
        .map_err(|e| TaskError::invalid_input(format!("cannot serialise {key}: {e}")))?;
    store.put(bucket, key, body).await
}

/// Reads a JSON-lines object into values, naming the line that does not parse.
pub async fn get_jsonl<T: serde::de::DeserializeOwned>(
    store: &impl Store,
    bucket: &str,
    key: &str,
) -> Result<Option<Vec<T>>, TaskError> {
    let Some(body) = store.get(bucket, key).await? else {
        return Ok(None);
    };
    parse_jsonl(&body)
        .map(Some)
        .map_err(|e| TaskError::invalid_input(format!("{}: {e}", s3_target(bucket, key))))
}

/// Streams a JSON-lines object, handing each value to `each` as it is read, so memory holds one
/// line at a time however large the object. `false` when the object does not exist.
pub async fn for_each_jsonl<T: serde::de::DeserializeOwned>(
    store: &impl Store,
    bucket: &str,
    key: &str,
    mut each: impl FnMut(T),
) -> Result<bool, TaskError> {
    use tokio::io::AsyncBufReadExt;
    let Some(mut reader) = store.reader_if_exists(bucket, key).await? else {
        return Ok(false);
    };
    let mut line = Vec::new();
    let mut n = 0usize;
    loop {
        line.clear();
        let read = reader.read_until(b'\n', &mut line).await.map_err(|e| {
            TaskError::new(
                thingpress_manifest::ErrorName::Transient,
                format!("reading {} failed: {e}", s3_target(bucket, key)),
            )
        })?;
        if read == 0 {
            return Ok(true);
        }
        n += 1;
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let value = serde_json::from_slice(&line).map_err(|e| {
            TaskError::invalid_input(format!("{}: line {n}: {e}", s3_target(bucket, key)))
        })?;
        each(value);
    }
}

/// Parses JSON lines (blank lines skipped), naming the line that does not parse.
pub fn parse_jsonl<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<Vec<T>, String> {
    body.split(|b| *b == b'\n')
        .enumerate()
        .filter(|(_, line)| !line.iter().all(u8::is_ascii_whitespace))
        .map(|(n, line)| serde_json::from_slice(line).map_err(|e| format!("line {}: {e}", n + 1)))
        .collect()
}

/// Serialises values as JSON lines.
pub fn to_jsonl<'a, T: serde::Serialize + 'a>(
    values: impl IntoIterator<Item = &'a T>,
) -> Result<Vec<u8>, TaskError> {
    let mut out = Vec::new();
    for value in values {
        serde_json::to_writer(&mut out, value)
            .map_err(|e| TaskError::invalid_input(format!("cannot serialise a line: {e}")))?;
        out.push(b'\n');
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn put_if_absent_claims_once() {
        let store = MemStore::new();
        assert!(
            store
                .put_if_absent("b", "claims/x", b"1".to_vec())
                .await
                .unwrap()
        );
        assert!(
            !store
                .put_if_absent("b", "claims/x", b"2".to_vec())
                .await
                .unwrap()
        );
        assert_eq!(
            store.get("b", "claims/x").await.unwrap().unwrap(),
            Bytes::from("1")
        );
    }

    #[tokio::test]
    async fn jsonl_streams_line_by_line_and_names_the_bad_line() {
        let store = MemStore::new();
        store.put("b", "ok", b"1\n\n2\n3".to_vec()).await.unwrap();
        let mut seen = Vec::new();
        assert!(
            for_each_jsonl(&store, "b", "ok", |v: u32| seen.push(v))
                .await
                .unwrap()
        );
        assert_eq!(seen, vec![1, 2, 3]);
        assert!(
            !for_each_jsonl(&store, "b", "missing", |_: u32| ())
                .await
                .unwrap()
        );
        store
            .put("b", "bad", b"1\n{nope}\n".to_vec())
            .await
            .unwrap();
        let err = for_each_jsonl(&store, "b", "bad", |_: u32| ())
            .await
            .unwrap_err();
        assert!(err.message.contains("s3://b/bad: line 2"), "{err}");
    }

    #[test]
    fn jsonl_names_the_bad_line() {
        let err = parse_jsonl::<serde_json::Value>(b"{}\n\n{nope}\n").unwrap_err();
        assert!(err.starts_with("line 3"), "{err}");
        let values: Vec<u32> = parse_jsonl(b"1\n2\n").unwrap();
        assert_eq!(values, vec![1, 2]);
    }

    #[tokio::test]
    async fn mem_store_lists_under_a_prefix_and_deletes() {
        let store = MemStore::new();
        for key in [
            "runs/a/2.json",
            "runs/a/1.json",
            "runs/ab/1.json",
            "runs/b/1.json",
        ] {
            store.put("b", key, b"{}".to_vec()).await.unwrap();
        }
        store
            .put("other", "runs/a/3.json", b"{}".to_vec())
            .await
            .unwrap();
        assert_eq!(
            store.list("b", "runs/a/").await.unwrap(),
            vec!["runs/a/1.json", "runs/a/2.json"]
        );
        assert_eq!(store.list("b", "runs/a").await.unwrap().len(), 3);
        assert!(store.list("b", "none/").await.unwrap().is_empty());

        store.delete("b", "runs/a/1.json").await.unwrap();
        assert_eq!(store.get("b", "runs/a/1.json").await.unwrap(), None);
        assert_eq!(
            store.list("b", "runs/a/").await.unwrap(),
            vec!["runs/a/2.json"]
        );
        // As S3: deleting what is not there succeeds.
        store.delete("b", "runs/a/1.json").await.unwrap();
    }

    mod s3 {
        use super::super::*;
        use aws_sdk_s3::operation::delete_object::DeleteObjectOutput;
        use aws_sdk_s3::operation::list_objects_v2::{ListObjectsV2Error, ListObjectsV2Output};
        use aws_sdk_s3::types::Object;
        use aws_sdk_s3::types::error::NoSuchBucket;
        use aws_smithy_mocks::{RuleMode, mock, mock_client};

        fn page(keys: &[&str], next: Option<&str>) -> ListObjectsV2Output {
            ListObjectsV2Output::builder()
                .set_contents(Some(
                    keys.iter()
                        .map(|k| Object::builder().key(*k).build())
                        .collect(),
                ))
                .is_truncated(next.is_some())
                .set_next_continuation_token(next.map(str::to_owned))
                .build()
        }

        #[tokio::test]
        async fn list_follows_every_page() {
            let first = mock!(aws_sdk_s3::Client::list_objects_v2)
                .match_requests(|r| {
                    r.bucket() == Some("b")
                        && r.prefix() == Some("runs/x/")
                        && r.continuation_token().is_none()
                })
                .then_output(|| page(&["runs/x/1", "runs/x/2"], Some("t1")));
            let second = mock!(aws_sdk_s3::Client::list_objects_v2)
                .match_requests(|r| r.continuation_token() == Some("t1"))
                .then_output(|| page(&["runs/x/3"], None));
            let client = mock_client!(aws_sdk_s3, RuleMode::Sequential, [&first, &second]);
            let store = S3Store::new(client);
            assert_eq!(
                store.list("b", "runs/x/").await.unwrap(),
                vec!["runs/x/1", "runs/x/2", "runs/x/3"]
            );
            assert_eq!(first.num_calls(), 1);
            assert_eq!(second.num_calls(), 1);
        }

        #[tokio::test]
        async fn list_names_the_prefix_when_s3_refuses() {
            let refuse = mock!(aws_sdk_s3::Client::list_objects_v2)
                .then_error(|| ListObjectsV2Error::NoSuchBucket(NoSuchBucket::builder().build()));
            let client = mock_client!(aws_sdk_s3, [&refuse]);
            let err = S3Store::new(client)
                .list("gone", "runs/")
                .await
                .unwrap_err();
            assert!(
                err.message
                    .starts_with("ListObjectsV2 s3://gone/runs/ failed"),
                "{err}"
            );
        }

        #[tokio::test]
        async fn delete_sends_bucket_and_key() {
            let delete = mock!(aws_sdk_s3::Client::delete_object)
                .match_requests(|r| r.bucket() == Some("b") && r.key() == Some("runs/x/1"))
                .then_output(|| DeleteObjectOutput::builder().build());
            let client = mock_client!(aws_sdk_s3, [&delete]);
            S3Store::new(client).delete("b", "runs/x/1").await.unwrap();
            assert_eq!(delete.num_calls(), 1);
        }
    }
}
