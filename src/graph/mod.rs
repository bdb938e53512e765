//! The lazy op graph: nodes (`node.rs`), computing them (`realize.rs`), the elementwise chains
//! computed as one fused kernel (`fuse.rs`), products that compute a sibling's sums too
//! (`siblings.rs`) or store in a permute's order (`permuted.rs`), assignments deferred to the next realize (`deferred.rs`) and run-time
//! cross-checking of the GPU against the CPU reference (`check.rs`).

pub(crate) mod check;
pub(crate) mod deferred;
pub(crate) mod fuse;
pub(crate) mod node;
pub(crate) mod permuted;
pub(crate) mod realize;
pub(crate) mod siblings;
