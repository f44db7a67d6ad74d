//! Order-preserving parallel validation: formats read raw entries sequentially (cheap), and the
//! expensive part (X.509 parsing, hashing, signature checks) runs on all cores in bounded batches.

use rayon::prelude::*;

use crate::{Entry, ManifestError};

/// How many raw entries are read ahead and validated together. Bounds memory: a batch of
/// 1024 entries of a few KiB each.
pub(crate) const BATCH: usize = 1024;

/// One batch of raw entries as read, and the read error that ended it, if any.
type Batch<Raw> = (Vec<Raw>, Option<ManifestError>);

/// Reads up to [`BATCH`] raw entries; stops early at the end or at a read error.
fn read_batch<Raw, I>(raw: &mut I) -> Batch<Raw>
where
    I: Iterator<Item = Result<Raw, ManifestError>>,
{
    let mut batch = Vec::with_capacity(BATCH);
    for item in raw.by_ref() {
        match item {
            Ok(r) => batch.push(r),
            Err(e) => return (batch, Some(e)),
        }
        if batch.len() == BATCH {
            break;
        }
    }
    (batch, None)
}

/// Maps `raw` through `validate` in parallel batches, yielding entries in input order. A read
/// error is yielded after the entries read before it, and ends the stream.
///
/// Reading is sequential, so the next batch is read while the current one is validated
/// (`rayon::join`): otherwise every core but one idles during each read. At most two batches
/// are held at once.
pub(crate) fn validate_in_order<'a, Raw, I, F>(
    raw: I,
    validate: F,
) -> impl Iterator<Item = Result<Entry, ManifestError>> + Send + 'a
where
    Raw: Send + 'a,
    I: Iterator<Item = Result<Raw, ManifestError>> + Send + 'a,
    F: Fn(Raw) -> Entry + Sync + Send + 'a,
{
    let mut raw = raw.fuse();
    let mut prefetched: Option<Batch<Raw>> = None;
    let mut pending_error: Option<ManifestError> = None;
    let mut done = false;
    let mut ready: std::vec::IntoIter<Entry> = Vec::new().into_iter();
    std::iter::from_fn(move || {
        loop {
            if let Some(entry) = ready.next() {
                return Some(Ok(entry));
            }
            if let Some(error) = pending_error.take() {
                done = true;
                return Some(Err(error));
            }
            if done {
                return None;
            }
            let (batch, error) = prefetched.take().unwrap_or_else(|| read_batch(&mut raw));
            if batch.is_empty() && error.is_none() {
                done = true;
                return None;
            }
            // A short batch means the input ended; after an error nothing more is read.
            let more = error.is_none() && batch.len() == BATCH;
            let validate_all = || -> Vec<Entry> { batch.into_par_iter().map(&validate).collect() };
            let validated = if more {
                let (validated, next) = rayon::join(validate_all, || read_batch(&mut raw));
                prefetched = Some(next);
                validated
            } else {
                validate_all()
            };
            ready = validated.into_iter();
            pending_error = error;
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ErrorName, Rejected, Supplier};

    fn reject(index: u64) -> Entry {
        Entry::Rejected(Rejected {
            index,
            error: ErrorName::InvalidCertificate,
            message: String::new(),
            device_id: None,
        })
    }

    #[test]
    fn keeps_order_across_batches_and_stops_after_an_error() {
        let n = (BATCH * 2 + 7) as u64;
        let raw = (0..n)
            .map(Ok)
            .chain(std::iter::once(Err(ManifestError::malformed(
                Supplier::Pem,
                Some(n),
                "boom",
            ))))
            .chain(std::iter::once(Ok(999_999)));
        let out: Vec<_> = validate_in_order(raw, reject).collect();
        assert_eq!(out.len() as u64, n + 1);
        for (i, item) in out.iter().take(n as usize).enumerate() {
            assert_eq!(item.as_ref().unwrap().index(), i as u64);
        }
        assert!(out.last().unwrap().is_err());
    }

    #[test]
    fn an_exact_multiple_of_the_batch_size_ends_cleanly() {
        for n in [0, BATCH as u64, 2 * BATCH as u64] {
            let out: Vec<_> = validate_in_order((0..n).map(Ok), reject).collect();
            assert_eq!(out.len() as u64, n);
            assert!(
                out.iter()
                    .enumerate()
                    .all(|(i, e)| e.as_ref().unwrap().index() == i as u64)
            );
        }
    }

    #[test]
    fn nothing_is_read_past_an_error() {
        let read = std::sync::atomic::AtomicU64::new(0);
        let raw = (0..BATCH as u64 + 3).map(|i| {
            read.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            if i == 5 {
                Err(ManifestError::malformed(Supplier::Pem, Some(i), "boom"))
            } else {
                Ok(i)
            }
        });
        let out: Vec<_> = validate_in_order(raw, reject).collect();
        assert_eq!(out.len(), 6);
        assert!(out[5].is_err());
        assert_eq!(read.load(std::sync::atomic::Ordering::Relaxed), 6);
    }
}
