//! The lazy op graph: nodes (`node.rs`), computing them (`realize.rs`), assignments deferred to
//! the next realize (`deferred.rs`) and run-time cross-checking of the GPU against the CPU
//! reference (`check.rs`).

pub(crate) mod check;
pub(crate) mod deferred;
pub(crate) mod node;
pub(crate) mod realize;
