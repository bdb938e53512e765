//! The op case table: every op of the op set, at shapes that include 1, primes, sizes that are
//! not multiples of any tile, and (for a few ops) more than 65,535 workgroups.
//!
//! A row names its inputs (domain, and whether gradients are checked for it), a list of shape
//! sets (the first, smallest, is the one the f64 gradient check uses), how to build the op from
//! its inputs, and its tolerances as relative errors ‖gpu − cpu‖ / ‖cpu‖:
//! - `tol`, forward: the op's own rounding — 0 for ops that only move or select values, ~1e-6
//!   for one f32 rounding per element, ~1e-5 for f32 transcendentals (a few ulps apart between
//!   GPU and CPU) and for sums (rounding grows like √n·ε and the GPU adds in another order).
//! - `grad_tol`, backward: a chain of several such ops, so one notch looser.

mod elementwise;
mod layers;
mod transformer;

use super::Input;
use crate::{Device, Tensor};
use std::sync::Arc;

/// How a case builds its output from its inputs on a device.
pub type Build = Arc<dyn Fn(&[Tensor], &Device) -> Tensor + Send + Sync>;

/// One row of the case table.
#[derive(Clone)]
pub struct Case {
    /// What the row tests, e.g. `"conv2d stride 2 groups 2"`.
    pub name: String,
    /// The inputs.
    pub inputs: Vec<Input>,
    /// Shape sets, one shape per input; the first is used by the gradient check.
    pub shapes: Vec<Vec<Vec<usize>>>,
    /// Builds the output.
    pub build: Build,
    /// Forward parity tolerance (relative error).
    pub tol: f64,
    /// Backward parity tolerance (relative error).
    pub grad_tol: f64,
    /// Whether the output is differentiable with respect to the inputs marked `grad`.
    pub differentiable: bool,
    /// Whether the f64 central-difference check applies (not for ops whose output is piecewise
    /// constant at the sampled points, or that round through f32).
    pub gradcheck: bool,
}

impl Case {
    /// A differentiable row with default tolerances (1e-5 forward, 1e-4 backward).
    pub fn new(
        name: impl Into<String>,
        inputs: Vec<Input>,
        shapes: Vec<Vec<Vec<usize>>>,
        build: impl Fn(&[Tensor], &Device) -> Tensor + Send + Sync + 'static,
    ) -> Case {
        Case {
            name: name.into(),
            inputs,
            shapes,
            build: Arc::new(build),
            tol: 1e-5,
            grad_tol: 1e-4,
            differentiable: true,
            gradcheck: true,
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

    /// Appends a shape set (used for large shapes that only the parity check runs).
    pub fn with_shapes(mut self, shapes: Vec<Vec<usize>>) -> Case {
        self.shapes.push(shapes);
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
    all.extend(transformer::cases());
    all
}
