//! Order-preserving parallel validation: formats read raw entries sequentially (cheap), and the
//! expensive part (X.509 parsing, hashing, signature checks) runs on all cores in bounded batches.
//!
//! Validation runs ahead of the consumer: while the consumer takes batch n, batches n+1 and n+2
//! are validated on the rayon pool, so no core idles at a batch boundary waiting for the
//! consumer to drain a batch or for the next one to be read. Reading stays on the consumer's
//! thread, which is what lets the reader borrow (`'a`); what goes to the pool is owned
//! (`'static`).

use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, sync_channel};

use rayon::prelude::*;

use crate::{Entry, ManifestError};

/// How many raw entries are read ahead and validated together. Bounds memory: a batch of
/// 1024 entries of a few KiB each.
pub(crate) const BATCH: usize = 1024;

/// How many batches are being validated while the consumer takes the current one. Two keep
/// the pool busy while the consumer reads the next batch; memory holds at most this many
/// batches plus the one being consumed.
pub(crate) const AHEAD: usize = 2;

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

/// A batch being validated, and the read error to yield after its entries.
struct InFlight {
    validated: Validation,
    error: Option<ManifestError>,
}

/// A batch's validation: running on the pool, or already done.
enum Validation {
    Running(Receiver<std::thread::Result<Vec<Entry>>>),
    Done(Vec<Entry>),
}

impl Validation {
    /// Starts validating `batch` on the rayon pool.
    fn start<Raw, F>(batch: Vec<Raw>, validate: &Arc<F>) -> Validation
    where
        Raw: Send + 'static,
        F: Fn(Raw) -> Entry + Sync + Send + 'static,
    {
        if batch.is_empty() {
            return Validation::Done(Vec::new());
        }
        // On a pool thread, waiting for a spawned job could wait for this very thread (a pool
        // of one): validate here instead, still on all the pool's threads.
        if rayon::current_thread_index().is_some() {
            return Validation::Done(batch.into_par_iter().map(&**validate).collect());
        }
        let (sender, receiver) = sync_channel(1);
        let validate = Arc::clone(validate);
        rayon::spawn(move || {
            // A panic is handed to the consumer, as if validation had run on its thread;
            // uncaught, rayon would abort the process.
            let validated = catch_unwind(AssertUnwindSafe(|| {
                batch.into_par_iter().map(&*validate).collect::<Vec<_>>()
            }));
            // The consumer may have stopped reading; then nobody wants this batch.
            let _ = sender.send(validated);
        });
        Validation::Running(receiver)
    }

    /// The batch's entries in input order, once validated.
    fn wait(self) -> Result<Vec<Entry>, ManifestError> {
        match self {
            Validation::Done(entries) => Ok(entries),
            Validation::Running(receiver) => match receiver.recv() {
                Ok(Ok(entries)) => Ok(entries),
                Ok(Err(panic)) => resume_unwind(panic),
                // The job always sends; should it ever be dropped unrun, say so, do not hang.
                Err(_) => Err(ManifestError::Io(std::io::Error::other(
                    "a validation job ended without a result",
                ))),
            },
        }
    }
}

/// Maps `raw` through `validate` in parallel batches, yielding entries in input order. A read
/// error is yielded after the entries read before it, and ends the stream; nothing is read
/// past it.
///
/// Up to [`AHEAD`] batches are validated on the rayon pool while the consumer takes the
/// current one, so no core waits for the consumer. Reading is sequential, on the consumer's
/// thread, and overlaps the validation of the batches ahead. At most `AHEAD + 1` batches are
/// held at once.
pub(crate) fn validate_in_order<'a, Raw, I, F>(
    raw: I,
    validate: F,
) -> impl Iterator<Item = Result<Entry, ManifestError>> + Send + 'a
where
    Raw: Send + 'static,
    I: Iterator<Item = Result<Raw, ManifestError>> + Send + 'a,
    F: Fn(Raw) -> Entry + Sync + Send + 'static,
{
    let validate = Arc::new(validate);
    let mut raw = raw.fuse();
    let mut in_flight: VecDeque<InFlight> = VecDeque::with_capacity(AHEAD + 1);
    // False once the input ended or failed: nothing more is read.
    let mut reading = true;
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
            // Start the batches ahead before waiting for the oldest: the pool validates them
            // while this thread waits, and while the consumer takes the oldest.
            while reading && in_flight.len() <= AHEAD {
                let (batch, error) = read_batch(&mut raw);
                // A short batch means the input ended; after an error nothing more is read.
                reading = error.is_none() && batch.len() == BATCH;
                if batch.is_empty() && error.is_none() {
                    break;
                }
                in_flight.push_back(InFlight {
                    validated: Validation::start(batch, &validate),
                    error,
                });
            }
            let Some(oldest) = in_flight.pop_front() else {
                done = true;
                return None;
            };
            match oldest.validated.wait() {
                Ok(entries) => {
                    ready = entries.into_iter();
                    pending_error = oldest.error;
                }
                Err(error) => {
                    in_flight.clear();
                    pending_error = Some(error);
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::{Duration, Instant};

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

    /// Reads `0..n` and counts what was read.
    fn counted(n: u64, read: &AtomicU64) -> impl Iterator<Item = Result<u64, ManifestError>> + '_ {
        (0..n).map(move |i| {
            read.fetch_add(1, Ordering::SeqCst);
            Ok(i)
        })
    }

    /// Waits up to 10 s for `done`; the pool runs ahead on its own threads.
    fn eventually(done: impl Fn() -> bool) -> bool {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !done() {
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        true
    }

    #[test]
    fn keeps_order_when_later_batches_finish_first() {
        // The first batches are slow, so the batches ahead finish before them.
        let n = (BATCH * (AHEAD + 3) + 5) as u64;
        let slow_start = |index: u64| {
            if index < (BATCH * AHEAD) as u64 && index.is_multiple_of(64) {
                std::thread::sleep(Duration::from_millis(2));
            }
            reject(index)
        };
        let out: Vec<_> = validate_in_order((0..n).map(Ok), slow_start).collect();
        assert_eq!(out.len() as u64, n);
        for (i, item) in out.iter().enumerate() {
            assert_eq!(item.as_ref().unwrap().index(), i as u64);
        }
    }

    #[test]
    fn an_error_batches_ahead_comes_after_every_entry_before_it() {
        // The error is read while earlier batches are still being validated.
        let at = (BATCH * (AHEAD + 1) + 3) as u64;
        let read = AtomicU64::new(0);
        let raw = (0..at + 10).map(|i| {
            read.fetch_add(1, Ordering::SeqCst);
            if i == at {
                Err(ManifestError::malformed(Supplier::Pem, Some(i), "boom"))
            } else {
                Ok(i)
            }
        });
        let mut out = validate_in_order(raw, reject);
        for i in 0..at {
            assert_eq!(out.next().unwrap().unwrap().index(), i);
        }
        assert!(out.next().unwrap().is_err());
        assert!(out.next().is_none());
        drop(out);
        assert_eq!(read.load(Ordering::SeqCst), at + 1);
    }

    #[test]
    fn validates_ahead_while_the_consumer_holds_a_batch_and_no_further() {
        let read = AtomicU64::new(0);
        let validated = Arc::new(AtomicU64::new(0));
        let count = Arc::clone(&validated);
        let n = (BATCH * (AHEAD + 4)) as u64;
        let mut out = validate_in_order(counted(n, &read), move |index| {
            count.fetch_add(1, Ordering::SeqCst);
            reject(index)
        });
        assert_eq!(out.next().unwrap().unwrap().index(), 0);
        // The consumer holds batch 0; the AHEAD batches after it are validated meanwhile.
        let held = (BATCH * (1 + AHEAD)) as u64;
        assert!(
            eventually(|| validated.load(Ordering::SeqCst) == held),
            "validated {} of the {held} entries of batch 0 and the batches ahead",
            validated.load(Ordering::SeqCst)
        );
        // And nothing beyond them is read: memory stays bounded.
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(read.load(Ordering::SeqCst), held);
        assert_eq!(validated.load(Ordering::SeqCst), held);
        // Taking the rest of batch 0 reads one batch more at its end, and no more.
        for i in 1..=BATCH as u64 {
            assert_eq!(out.next().unwrap().unwrap().index(), i);
        }
        assert_eq!(read.load(Ordering::SeqCst), held + BATCH as u64);
        // Stopping early leaves nothing waiting.
        drop(out);
    }

    #[test]
    fn a_panic_in_validation_reaches_the_consumer_after_the_batches_before_it() {
        let at = (BATCH + 1) as u64;
        let panics_at = move |index: u64| {
            assert_ne!(index, at, "validation panicked");
            reject(index)
        };
        let mut out = validate_in_order((0..4 * at).map(Ok), panics_at);
        for i in 0..BATCH as u64 {
            assert_eq!(out.next().unwrap().unwrap().index(), i);
        }
        let panicked = std::panic::catch_unwind(AssertUnwindSafe(|| out.next()));
        assert!(panicked.is_err());
    }

    #[test]
    fn on_a_pool_thread_validates_in_place() {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap();
        let n = (BATCH * (AHEAD + 2) + 1) as u64;
        let out: Vec<_> = pool.install(|| validate_in_order((0..n).map(Ok), reject).collect());
        assert_eq!(out.len() as u64, n);
        assert!(
            out.iter()
                .enumerate()
                .all(|(i, e)| e.as_ref().unwrap().index() == i as u64)
        );
    }
}
