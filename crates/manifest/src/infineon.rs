//! TODO(helper): infineon format.

use std::io::BufRead;

use crate::{Entries, ManifestError, Options};

/// Streams the entries of a infineon manifest.
pub(crate) fn entries<'a, R: BufRead + Send + 'a>(
    _reader: R,
    _options: &Options,
) -> Result<Entries<'a>, ManifestError> {
    Err(ManifestError::UnknownFormat("infineon: not implemented yet".into()))
}
