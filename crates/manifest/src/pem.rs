//! TODO(helper): pem format.

use std::io::BufRead;

use crate::{Entries, ManifestError, Options};

/// Streams the entries of a pem manifest.
pub(crate) fn entries<'a, R: BufRead + Send + 'a>(
    _reader: R,
    _options: &Options,
) -> Result<Entries<'a>, ManifestError> {
    Err(ManifestError::UnknownFormat("pem: not implemented yet".into()))
}
