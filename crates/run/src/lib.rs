//! The run contract: what the state machine, the Lambdas and the CLI agree on about one import:
//! the run layout in S3, every stored record and its typed reads and writes ([`RunStore`]), the
//! state-machine payloads, settings, the cost model, and the task error (`Thingpress.*`).

pub mod cost;
mod error;
pub mod layout;
pub mod payload;
pub mod records;
pub mod report;
pub mod resolve;
pub mod run_store;
pub mod settings;
pub mod store;

/// The object bytes a [`Store`] returns (so another crate can implement the trait).
pub use bytes::Bytes;
pub use error::TaskError;
pub use layout::RunLayout;
pub use run_store::RunStore;
pub use settings::{AllowList, NamePatterns, Settings};
pub use store::{MemStore, S3Store, Store};
