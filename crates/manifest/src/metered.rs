//! A reader bounded per entry: the streaming parsers (Espressif CSV, Infineon XML) reset it at
//! each entry, so one runaway record or XML group cannot grow memory without bound.

use std::io::{BufRead, Read};

/// Fails once more than `limit` bytes were consumed since the last [`Metered::reset`].
pub(crate) struct Metered<R> {
    inner: R,
    used: u64,
    limit: u64,
    tripped: bool,
}

impl<R> Metered<R> {
    /// `inner`, allowed `limit` bytes per entry.
    pub(crate) fn new(inner: R, limit: u64) -> Self {
        Metered {
            inner,
            used: 0,
            limit,
            tripped: false,
        }
    }

    /// A new entry starts: its bytes are counted from zero.
    pub(crate) fn reset(&mut self) {
        self.used = 0;
    }

    /// Whether a read failed because the entry went over the limit (so the parser's error is a
    /// limit error, not a syntax error).
    pub(crate) fn tripped(&self) -> bool {
        self.tripped
    }
}

impl<R: BufRead> Read for Metered<R> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        let n = Read::read(&mut self.fill_buf()?, out)?;
        self.consume(n);
        Ok(n)
    }
}

impl<R: BufRead> BufRead for Metered<R> {
    fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
        if self.used > self.limit {
            self.tripped = true;
            return Err(std::io::Error::other("entry over max_entry_bytes"));
        }
        self.inner.fill_buf()
    }

    fn consume(&mut self, amount: usize) {
        self.used = self.used.saturating_add(amount as u64);
        self.inner.consume(amount);
    }
}
