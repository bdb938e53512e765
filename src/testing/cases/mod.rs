//! The op case table: every op of the op set, at shapes that include 1, primes, sizes that are
//! not multiples of any tile, and for every kernel family a shape set past 65,535 workgroups.
//!
//! A row names the op it tests (its *target*: the op of the node its build returns, which the
//! harness checks), its inputs (domain, and whether gradients are checked for it), a list of
//! shape sets (the first, smallest, is the one the f64 gradient check uses), how to build the op
//! from its inputs, and its tolerances as relative errors ‖gpu − cpu‖ / ‖cpu‖:
//! - `tol`, forward: the op's own rounding — 0 for ops that only move or select values, ~1e-6
//!   for one f32 rounding per element, ~1e-5 for f32 transcendentals (a few ulps apart between
//!   GPU and CPU) and for sums (rounding grows like √n·ε and the GPU adds in another order).
//! - `grad_tol`, backward: a chain of several such ops, so one notch looser.
//!
//! A row builds the same graph on every device (the coverage test compares them), so the CPU
//! run is the reference for exactly what the GPU runs. Where the rows draw their inputs from
//! (the domains of the elementwise ops, their parameters) is decided here, not in `src/ops`.

mod elementwise;
mod gradients;
mod half;
mod layers;
mod recurrent;
mod transformer;

use super::Input;
use crate::{Device, Tensor};
use std::sync::Arc;

/// The default finite-difference step of the f64 gradient check. With step h = 1e-6 the central
/// difference has truncation error ~h²·f‴ = 1e-12 and rounding error ~ε₆₄/h = 1e-16/1e-6 = 1e-10
/// relative to the values, so a correct gradient agrees to ~1e-8.
pub const FD_STEP: f64 = 1e-6;

/// The default gradient-check tolerance (relative error): 1e-6 leaves room for badly scaled rows
/// above the ~1e-8 a correct gradient reaches, and still catches any wrong rule (those are off by
/// O(1)).
pub const FD_TOLERANCE: f64 = 1e-6;

/// How a case builds its output from its inputs on a device.
pub type Build = Arc<dyn Fn(&[Tensor], &Device) -> Tensor + Send + Sync>;

/// One row of the case table.
#[derive(Clone)]
pub struct Case {
    /// What the row tests, e.g. `"conv2d stride 2 groups 2"`.
    pub name: String,
    /// The op this row tests: the op of its output node (checked whenever the row is built).
    /// `None` for a row that tests a composition of ops (mean, var, stack) and so covers no op.
    pub target: Option<&'static str>,
    /// The inputs.
    pub inputs: Vec<Input>,
    /// Shape sets, one shape per input; the first is used by the gradient check.
    pub shapes: Vec<Vec<Vec<usize>>>,
    /// Shape sets past 65,535 workgroups along the folded grid axis, which the parity check
    /// compares forward only: lavapipe runs them slowly, and every gradient kernel has a row of
    /// its own with such a set.
    pub past_grid_limit: Vec<Vec<Vec<usize>>>,
    /// Builds the output.
    pub build: Build,
    /// Forward parity tolerance (relative error).
    pub tol: f64,
    /// Backward parity tolerance (relative error).
    pub grad_tol: f64,
    /// Whether the output is differentiable with respect to the inputs marked `grad`.
    pub differentiable: bool,
    /// Whether the f64 central-difference check applies (not for ops whose output is piecewise
    /// constant at the sampled points).
    pub gradcheck: bool,
    /// Whether the CPU-versus-GPU parity check runs the row (not for a row whose graph needs
    /// f64, which no GPU holds).
    pub parity: bool,
    /// The gradient check's central-difference step.
    pub fd_step: f64,
    /// The gradient check's tolerance (relative error).
    pub fd_tol: f64,
}

impl Case {
    /// A differentiable row testing op `target`, with default tolerances (1e-5 forward, 1e-4
    /// backward, [`FD_TOLERANCE`] for the gradient check).
    pub fn new(
        target: &'static str,
        name: impl Into<String>,
        inputs: Vec<Input>,
        shapes: Vec<Vec<Vec<usize>>>,
        build: impl Fn(&[Tensor], &Device) -> Tensor + Send + Sync + 'static,
    ) -> Case {
        Case::row(Some(target), name.into(), inputs, shapes, Arc::new(build))
    }

    /// A row testing a composition of ops (its output may be any op): checked like any row, but
    /// it counts as no op's case.
    pub fn composite(
        name: impl Into<String>,
        inputs: Vec<Input>,
        shapes: Vec<Vec<Vec<usize>>>,
        build: impl Fn(&[Tensor], &Device) -> Tensor + Send + Sync + 'static,
    ) -> Case {
        Case::row(None, name.into(), inputs, shapes, Arc::new(build))
    }

    fn row(
        target: Option<&'static str>,
        name: String,
        inputs: Vec<Input>,
        shapes: Vec<Vec<Vec<usize>>>,
        build: Build,
    ) -> Case {
        Case {
            name,
            target,
            inputs,
            shapes,
            past_grid_limit: Vec::new(),
            build,
            tol: 1e-5,
            grad_tol: 1e-4,
            differentiable: true,
            gradcheck: true,
            parity: true,
            fd_step: FD_STEP,
            fd_tol: FD_TOLERANCE,
        }
    }

    /// Sets the forward tolerance.
    pub fn tol(mut self, tol: f64) -> Case {
        self.tol = tol;
        self
    }

    /// Sets the backward tolerance.
    pub fn grad_tol(mut self, tol: f64) -> Case {
        self.grad_tol = tol;
        self
    }

    /// Marks the output as not differentiable (indices, booleans, random draws).
    pub fn no_grad(mut self) -> Case {
        self.differentiable = false;
        self.gradcheck = false;
        self
    }

    /// Keeps the parity checks but skips the finite-difference check.
    pub fn no_gradcheck(mut self) -> Case {
        self.gradcheck = false;
        self
    }

    /// Appends a shape set (one shape per input), compared forward and backward.
    pub fn with_shapes(mut self, shapes: Vec<Vec<usize>>) -> Case {
        self.shapes.push(shapes);
        self
    }

    /// Adds a shape set past 65,535 workgroups, compared forward only (see
    /// [`Case::past_grid_limit`]).
    pub fn past_grid_limit(mut self, shapes: Vec<Vec<usize>>) -> Case {
        self.past_grid_limit.push(shapes);
        self
    }

    /// Sets the gradient check's step and tolerance (for a row whose function is coarser than
    /// f64, so the default step would measure its rounding).
    pub fn finite_differences(mut self, step: f64, tol: f64) -> Case {
        self.fd_step = step;
        self.fd_tol = tol;
        self
    }

    /// Leaves the row to the gradient check only (its graph needs f64).
    pub fn gradcheck_only(mut self) -> Case {
        self.parity = false;
        self
    }
}

/// Shape sets from nested slices: `shapes(&[&[&[2, 3], &[3]], ...])`.
pub(crate) fn shapes(sets: &[&[&[usize]]]) -> Vec<Vec<Vec<usize>>> {
    sets.iter().map(|set| set.iter().map(|s| s.to_vec()).collect()).collect()
}

/// Every row.
pub fn cases() -> Vec<Case> {
    let mut all = elementwise::cases();
    all.extend(layers::cases());
    all.extend(recurrent::cases());
    all.extend(gradients::cases());
    all.extend(transformer::cases());
    all.extend(half::cases());
    all
}
