//! Shared helpers for the workspace-level tests.

pub mod checks;
pub mod cost;
