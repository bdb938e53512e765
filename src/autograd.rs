//! Reverse-mode automatic differentiation.
//!
//! `loss.backward()` walks the graph from the loss back to the variables in reverse topological
//! order. Each op's gradient rule (`Op::backward`, next to the op in `src/ops/`) is written in
//! tensor ops, so the backward graph is lazy, runs on the loss's device and is cross-checked like
//! any forward op. Gradients of a tensor used several times are summed.

use crate::{Shape, Tensor};
use std::cell::Cell;
use std::collections::{HashMap, HashSet};
use std::panic::Location;

thread_local! {
    static NO_GRAD_DEPTH: Cell<usize> = const { Cell::new(0) };
    /// While a gradient rule runs: the line that recorded the op being differentiated.
    static GRADIENT_OF: Cell<Option<&'static Location<'static>>> = const { Cell::new(None) };
}

/// While `backward` runs an op's gradient rule, the line of user code that recorded that op:
/// the nodes the rule creates are reported at that line (not inside kiln), as its gradient.
pub(crate) fn gradient_of() -> Option<&'static Location<'static>> {
    GRADIENT_OF.with(Cell::get)
}

/// Whether a `no_grad` scope is active on this thread.
pub fn is_no_grad() -> bool {
    NO_GRAD_DEPTH.with(|d| d.get() > 0)
}

/// Runs `f` without recording gradient history: tensors it creates do not require grad.
/// For inference, evaluation and optimizer updates.
///
/// ```
/// use kiln::{no_grad, Device, Tensor};
/// let w = Tensor::ones([2], &Device::Cpu).requires_grad_();
/// let y = no_grad(|| &w * 2.0);
/// assert!(!y.requires_grad());
/// ```
pub fn no_grad<R>(f: impl FnOnce() -> R) -> R {
    let _guard = NoGradGuard::new();
    f()
}

/// Keeps gradient recording off on this thread until dropped.
pub struct NoGradGuard(());

impl NoGradGuard {
    /// Turns gradient recording off until the guard is dropped.
    #[allow(clippy::new_without_default)]
    pub fn new() -> NoGradGuard {
        NO_GRAD_DEPTH.with(|d| d.set(d.get() + 1));
        NoGradGuard(())
    }
}

impl Drop for NoGradGuard {
    fn drop(&mut self) {
        NO_GRAD_DEPTH.with(|d| d.set(d.get() - 1));
    }
}

/// The gradients computed by [`Tensor::backward`], one per variable the loss depends on.
#[derive(Default, Clone)]
pub struct Gradients {
    grads: HashMap<u64, Tensor>,
}

impl Gradients {
    /// The gradient of the loss with respect to `t`, if `t` is a variable the loss depends on.
    pub fn get(&self, t: &Tensor) -> Option<&Tensor> {
        self.grads.get(&t.id())
    }

    /// Removes and returns the gradient of `t`.
    pub fn remove(&mut self, t: &Tensor) -> Option<Tensor> {
        self.grads.remove(&t.id())
    }

    /// Sets the gradient of `t` (gradient clipping and accumulation use this).
    pub fn insert(&mut self, t: &Tensor, grad: Tensor) {
        self.grads.insert(t.id(), grad);
    }

    /// The number of gradients held.
    pub fn len(&self) -> usize {
        self.grads.len()
    }

    /// Whether no gradient is held.
    pub fn is_empty(&self) -> bool {
        self.grads.is_empty()
    }

    /// Adds the gradients of `other` into these (for accumulating over several batches).
    pub fn accumulate(&mut self, other: Gradients) {
        for (id, g) in other.grads {
            let sum = match self.grads.remove(&id) {
                Some(prev) => crate::no_grad(|| &prev + &g),
                None => g,
            };
            self.grads.insert(id, sum);
        }
    }
}

impl Tensor {
    /// The gradients of this one-element tensor with respect to every variable it depends on
    /// (tensors marked with [`Tensor::requires_grad_`]). Lazy: nothing is computed until the
    /// gradients are read or an optimizer step realizes them.
    #[track_caller]
    pub fn backward(&self) -> Gradients {
        if self.numel() != 1 {
            panic!("backward: the loss must have one element, found shape {}", self.shape());
        }
        if !self.requires_grad() {
            panic!("backward: the tensor does not depend on any variable that requires grad");
        }
        let seed = crate::no_grad(|| Tensor::ones_like(self));
        self.backward_with(seed)
    }

    /// Backpropagates `grad` (the gradient of some scalar with respect to this tensor).
    #[track_caller]
    pub fn backward_with(&self, grad: Tensor) -> Gradients {
        let _guard = NoGradGuard::new();
        let order = grad_order(self);
        let mut pending: HashMap<u64, Accumulator> = HashMap::new();
        pending.entry(self.id()).or_default().add(grad);
        let mut out = Gradients::default();
        for t in order.iter().rev() {
            let Some(g) = pending.remove(&t.id()) else {
                continue;
            };
            let g = g.finish(t.shape());
            let inputs = t.0.inputs().clone();
            if !inputs.iter().any(|i| i.requires_grad()) {
                out.grads.insert(t.id(), g);
                continue;
            }
            let outer = GRADIENT_OF.with(|s| s.replace(Some(t.0.location)));
            let grads = t.0.op.backward(&crate::ops::Grad { inputs: &inputs, output: t, grad: &g });
            for (input, gi) in inputs.iter().zip(grads) {
                let Some(gi) = gi else { continue };
                if !input.requires_grad() {
                    continue;
                }
                debug_assert_eq!(gi.shape(), input.shape(), "{} gradient shape", t.0.op.name());
                pending.entry(input.id()).or_default().add(gi);
            }
            GRADIENT_OF.with(|s| s.set(outer));
        }
        out
    }

    /// Sums this gradient down to `shape`, undoing a broadcast: leading dimensions are summed
    /// away and dimensions that were 1 are summed with keepdim.
    #[track_caller]
    pub fn sum_to(&self, shape: &Shape) -> Tensor {
        if self.shape() == shape {
            return self.clone();
        }
        let extra = self.rank() - shape.rank();
        let mut axes: Vec<usize> = (0..extra).collect();
        axes.extend(
            (0..shape.rank())
                .filter(|&i| shape.dim(i) == 1 && self.dims()[extra + i] != 1)
                .map(|i| extra + i),
        );
        let summed = self.sum_axes(&axes, true);
        summed.reshape(shape.clone())
    }
}

/// The gradient of one tensor as its contributions arrive, kept in parts that combine more
/// cheaply than by adding them one at a time:
/// - slices placed in zeros along one axis (the gradient of `narrow`/`select`, as each step of a
///   recurrence reads its step of a sequence): assembled into one tensor, instead of adding T
///   full-size padded tensors (O(T²) work for a sequence of T steps);
/// - products Xᵢᵀ·Yᵢ (a weight's gradient from every time step that used it): one matmul of
///   the stacked Xᵢ and Yᵢ, instead of T matmuls and T additions of the weight's size;
/// - additions at indices into zeros (the gradient of `index_select`, as an embedding's lookup
///   is, or of `gather`): made into the rest of the sum, instead of filling a tensor of zeros
///   and adding it (a tied embedding's gradient is its lookup's and its output layer's);
/// - everything else, summed.
#[derive(Default)]
struct Accumulator {
    sum: Option<Tensor>,
    /// The padded gradients as they came, and (axis, start, slice) of each.
    placed: Vec<(Tensor, usize, usize, Tensor)>,
    /// The product gradients as they came, and (X, Y) of each.
    products: Vec<(Tensor, Tensor, Tensor)>,
    /// The additions at indices into zeros, as they came.
    scattered: Vec<Tensor>,
}

impl Accumulator {
    fn add(&mut self, g: Tensor) {
        if let Some((axis, start, slice)) = g.placement() {
            let end = start + slice.dims()[axis];
            let fits = self.placed.iter().all(|(_, a, s, p)| {
                *a == axis && (end <= *s || start >= s + p.dims()[axis]) && p.dtype() == slice.dtype()
            });
            if fits {
                self.placed.push((g, axis, start, slice));
                return;
            }
        }
        if let Some((x, y)) = g.outer_product() {
            let fits = self.products.iter().all(|(_, px, py)| {
                px.dims()[1..] == x.dims()[1..] && py.dims()[1..] == y.dims()[1..] && px.dtype() == x.dtype()
            });
            if fits {
                self.products.push((g, x, y));
                return;
            }
        }
        if g.scatters_into_zeros() {
            self.scattered.push(g);
            return;
        }
        self.sum = Some(match self.sum.take() {
            Some(prev) => &prev + &g,
            None => g,
        });
    }

    /// The whole gradient, of `shape`.
    fn finish(self, shape: &Shape) -> Tensor {
        let placed = match self.placed.len() {
            0 => None,
            1 => self.placed.into_iter().next().map(|(g, ..)| g),
            _ => {
                let axis = self.placed[0].1;
                let parts: Vec<(usize, Tensor)> =
                    self.placed.into_iter().map(|(_, _, s, p)| (s, p)).collect();
                Some(Tensor::assemble(shape, axis, &parts))
            }
        };
        let products = match self.products.len() {
            0 => None,
            1 => self.products.into_iter().next().map(|(g, ..)| g),
            _ => {
                let (xs, ys): (Vec<Tensor>, Vec<Tensor>) =
                    self.products.into_iter().map(|(_, x, y)| (x, y)).unzip();
                // Σ Xᵢᵀ·Yᵢ = [X₀; X₁; …]ᵀ · [Y₀; Y₁; …]
                Some(Tensor::matmul_flags(&Tensor::concat(&xs, 0), &Tensor::concat(&ys, 0), true, false))
            }
        };
        let sum = [self.sum, placed, products].into_iter().flatten().reduce(|a, b| &a + &b);
        let mut scattered = self.scattered.into_iter();
        let mut sum = match sum {
            Some(sum) => sum,
            None => scattered.next().expect("an accumulator holds at least one gradient"),
        };
        for g in scattered {
            sum = g.scattered_onto(&sum);
        }
        sum
    }
}

/// The nodes that require grad and lead to `root`, inputs first.
fn grad_order(root: &Tensor) -> Vec<Tensor> {
    let mut order = Vec::new();
    let mut seen = HashSet::new();
    let mut stack = vec![(root.clone(), false)];
    while let Some((t, inputs_done)) = stack.pop() {
        if inputs_done {
            order.push(t);
            continue;
        }
        if !seen.insert(t.id()) {
            continue;
        }
        let inputs = t.0.inputs().clone();
        stack.push((t, true));
        for i in inputs {
            if i.requires_grad() && !seen.contains(&i.id()) {
                stack.push((i, false));
            }
        }
    }
    order
}
