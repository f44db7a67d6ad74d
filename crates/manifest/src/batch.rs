//! Order-preserving parallel validation: formats read raw entries sequentially (cheap), and the
//! expensive part (X.509 parsing, hashing, signature checks) runs on all cores in bounded batches.

use rayon::prelude::*;

use crate::{Entry, ManifestError};

/// How many raw entries are read ahead and validated together. Bounds memory: a batch of
/// 1024 entries of a few KiB each.
pub(crate) const BATCH: usize = 1024;

/// Maps `raw` through `validate` in parallel batches, yielding entries in input order. A read
/// error is yielded after the entries read before it, and ends the stream.
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
            let mut batch = Vec::with_capacity(BATCH);
            for item in raw.by_ref() {
                match item {
                    Ok(r) => batch.push(r),
                    Err(e) => {
                        pending_error = Some(e);
                        break;
                    }
                }
                if batch.len() == BATCH {
                    break;
                }
            }
            if batch.is_empty() && pending_error.is_none() {
                done = true;
                return None;
            }
            let validated: Vec<Entry> = batch.into_par_iter().map(&validate).collect();
            ready = validated.into_iter();
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
}
