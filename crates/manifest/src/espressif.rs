//! TODO(helper): espressif format.

use std::io::BufRead;

use crate::{Entries, ManifestError, Options};

/// Streams the entries of a espressif manifest.
pub(crate) fn entries<'a, R: BufRead + Send + 'a>(
    _reader: R,
    _options: &Options,
) -> Result<Entries<'a>, ManifestError> {
    Err(ManifestError::UnknownFormat("espressif: not implemented yet".into()))
}
