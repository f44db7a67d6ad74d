//! What the Thingpress Lambdas share: the run layout in S3, chunk and record I/O, settings,
//! SDK configuration, and the task error that becomes a `Thingpress.*` Lambda error.

pub mod aws;
mod error;
pub mod layout;
pub mod records;
pub mod report;
pub mod settings;
pub mod store;

/// The object bytes a [`Store`] returns (so another crate can implement the trait).
pub use bytes::Bytes;
pub use error::{TaskError, is_throttling_code};
pub use layout::RunLayout;
pub use settings::{AllowList, NamePatterns, Settings};
pub use store::{MemStore, S3Store, Store};
