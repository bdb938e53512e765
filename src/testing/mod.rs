//! The op case table and the tools that read it: random inputs, the f64 gradient check, the
//! CPU-versus-GPU parity check, and the anatomy of a row's graph that the coverage test reads.
//! kiln's tests, benchmarks and the benchmark program all use these, so an op is covered
//! everywhere by adding its rows to [`cases::cases`].
//!
//! Every row names the op it tests (its *target*), and the harness checks that the row's output
//! node is that op each time it builds the row: a row cannot claim an op that only appears
//! somewhere inside its graph.

pub mod anatomy;
pub mod cases;
mod gradcheck;
mod inputs;
mod parity;
mod shaders;

use crate::graph::check::Verdict;
pub use anatomy::{Anatomy, GradientRule, gradient_op, gradient_rule, inspect, op_name};
pub use cases::{Case, cases};
pub use gradcheck::{GradcheckReport, gradcheck};
pub use inputs::make_inputs;
pub use parity::{ParityReport, parity};
pub use shaders::shader_sources;

/// Where a case draws an input's values from.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Domain {
    /// Standard normal.
    Normal,
    /// Uniform on [lo, hi).
    Range(f64, f64),
    /// Uniform magnitude in [0.5, 2) with a random sign: safe to divide by.
    AwayFromZero,
    /// Integers in [-3, 3] as floats: makes comparisons and ties happen.
    SmallInts,
    /// A bool mask, true with probability ½.
    Bool,
    /// i32 indices in [0, size of dimension `axis` of input `of`).
    Index { of: usize, axis: usize },
}

/// One input of a case.
#[derive(Clone, Copy, Debug)]
pub struct Input {
    /// Where its values come from.
    pub domain: Domain,
    /// Whether gradients are checked with respect to it.
    pub grad: bool,
}

impl Input {
    /// A float input that gradients are checked for.
    pub const fn float(domain: Domain) -> Input {
        Input { domain, grad: true }
    }
    /// An input without gradient (indices, masks, constants).
    pub const fn fixed(domain: Domain) -> Input {
        Input { domain, grad: false }
    }
}

/// The relative error ‖got − want‖ / ‖want‖ — infinite when NaN/Inf appears on one side only or
/// the lengths differ — and a description of such a mismatch.
pub fn compare(want: &[f64], got: &[f64]) -> (f64, Option<String>) {
    let v = Verdict::of(want, got);
    (v.rel_err, v.mismatch)
}
