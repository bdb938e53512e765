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
        let mut stacks = Stacks::default();
        for t in order.iter().rev() {
            let Some(g) = pending.remove(&t.id()) else {
                continue;
            };
            let g = g.finish(t.shape(), &mut stacks);
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

    /// The whole gradient, of `shape`; its concatenations through `stacks`.
    fn finish(self, shape: &Shape, stacks: &mut Stacks) -> Tensor {
        let placed = match self.placed.len() {
            0 => None,
            1 => self.placed.into_iter().next().map(|(g, ..)| g),
            _ => {
                let axis = self.placed[0].1;
                let mut parts: Vec<(usize, Tensor)> =
                    self.placed.into_iter().map(|(_, _, s, p)| (s, p)).collect();
                parts.sort_by_key(|(start, _)| *start);
                let covered =
                    parts.iter().try_fold(0, |end, (start, p)| (*start == end).then(|| end + p.dims()[axis]));
                Some(match covered == Some(shape.dim(axis)) && axis == 0 {
                    true => stacks.stack(&parts.into_iter().map(|(_, p)| p).collect::<Vec<_>>(), shape),
                    false => Tensor::assemble(shape, axis, &parts),
                })
            }
        };
        let products = match self.products.len() {
            0 => None,
            1 => self.products.into_iter().next().map(|(g, ..)| g),
            _ => {
                // in the order they were made in, backwards: a recurrence's steps in time order,
                // as the assembly of its input's gradient holds them
                let (mut xs, mut ys): (Vec<Tensor>, Vec<Tensor>) =
                    self.products.into_iter().rev().map(|(_, x, y)| (x, y)).unzip();
                if !stacks.follow(&mut xs, &mut ys) {
                    stacks.follow(&mut ys, &mut xs);
                }
                let (x, y) = (stacks.stack(&xs, &stacked_shape(&xs)), stacks.stack(&ys, &stacked_shape(&ys)));
                // Σ Xᵢᵀ·Yᵢ = [X₀; X₁; …]ᵀ · [Y₀; Y₁; …]
                Some(Tensor::matmul_flags(&x, &y, true, false))
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

/// The concatenations along the first axis that one backward pass has made, by the tensors
/// they hold in order, each seen through its reshapes: a concatenation of the same tensors in
/// the same order is the same values, and is made once. A recurrence's gate gradients are
/// assembled into its input projection's gradient, and stacked again for its recurrent
/// weight's (the products above): the second is the first, reshaped.
#[derive(Default)]
struct Stacks {
    made: HashMap<Vec<u64>, Tensor>,
}

impl Stacks {
    /// The concatenation of `parts` along their first axis, as `shape`.
    fn stack(&mut self, parts: &[Tensor], shape: &Shape) -> Tensor {
        let key: Vec<u64> = parts.iter().map(unreshaped_id).collect();
        if let Some(made) = self.made.get(&key) {
            return made.reshape(shape.clone());
        }
        debug_assert!(parts.iter().all(|p| p.dims()[1..] == shape.dims()[1..]), "stacked parts fit {shape}");
        let made = Tensor::concat(parts, 0);
        self.made.insert(key, made.clone());
        made.reshape(shape.clone())
    }

    /// Reorders the pairs (`xs`, `ys`) so that `xs` is in the order of a stack already made of
    /// the same tensors, if there is one (the sum of their products does not depend on the
    /// order); whether there was.
    fn follow(&self, xs: &mut Vec<Tensor>, ys: &mut Vec<Tensor>) -> bool {
        let ids: Vec<u64> = xs.iter().map(unreshaped_id).collect();
        let mut sorted = ids.clone();
        sorted.sort_unstable();
        if sorted.windows(2).any(|w| w[0] == w[1]) {
            return false;
        }
        let Some(order) = self.made.keys().find(|k| {
            k.len() == sorted.len() && {
                let mut k = (*k).clone();
                k.sort_unstable();
                k == sorted
            }
        }) else {
            return false;
        };
        let at: HashMap<u64, usize> = ids.iter().enumerate().map(|(i, &id)| (id, i)).collect();
        let (x0, y0) = (std::mem::take(xs), std::mem::take(ys));
        let mut pairs: Vec<Option<(Tensor, Tensor)>> = x0.into_iter().zip(y0).map(Some).collect();
        for id in order {
            let (x, y) = pairs[at[id]].take().expect("each id once");
            xs.push(x);
            ys.push(y);
        }
        true
    }
}

/// The shape of `parts` concatenated along their first axis.
fn stacked_shape(parts: &[Tensor]) -> Shape {
    let mut dims = parts[0].dims().to_vec();
    dims[0] = parts.iter().map(|p| p.dims()[0]).sum();
    Shape::new(dims)
}

/// The id of the tensor `t` reshapes, through any number of reshapes (a reshape of a tensor
/// holds its values in the same order); a computed reshape that has let go of its input is
/// its own.
fn unreshaped_id(t: &Tensor) -> u64 {
    let mut t = t.clone();
    while t.op_name() == "reshape" {
        let Some(input) = t.0.inputs().first().cloned() else { break };
        t = input;
    }
    t.id()
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

#[cfg(test)]
mod tests {
    use crate::ops::recurrent::{CellKind, Step};
    use crate::{Device, Tensor};

    /// A recurrence's gate gradients are stacked once: its recurrent weight's gradient product
    /// reads the assembly of its input projections' gradient, reshaped, and equals the product
    /// of a separate stack (the values of the sum do not depend on the order of its terms
    /// beyond rounding).
    #[test]
    fn a_recurrent_weights_product_reads_the_assembled_gate_gradients() {
        let (steps, batch, hidden) = (5, 3, 4);
        for stored in [false, true] {
            crate::manual_seed(3);
            let gx = Tensor::randn([steps, batch, 4 * hidden], &Device::Cpu).requires_grad_();
            let w_hh = Tensor::randn([4 * hidden, hidden], &Device::Cpu).requires_grad_();
            let w_t = if stored { w_hh.t_stored() } else { w_hh.t() };
            let mut state = Tensor::zeros([2, batch, hidden], &Device::Cpu);
            let mut hs = vec![state.select(0, 0)];
            for t in 0..steps {
                let gh = hs[t].matmul(&w_t);
                state = CellKind::Lstm.step(Step::new(&gx, t, &gh, &state));
                hs.push(state.select(0, 0));
            }
            let grads = state.sum_all().backward();
            let (d_gx, d_w) = (grads.get(&gx).unwrap(), grads.get(&w_hh).unwrap());
            assert_eq!((d_gx.op_name(), d_w.op_name()), ("concat", "matmul"), "stored transpose: {stored}");
            let reads_assembly =
                d_w.0.inputs().iter().any(|i| i.op_name() == "reshape" && i.0.inputs()[0].same(d_gx));
            assert!(reads_assembly, "stored transpose {stored}: dW_hh stacks the gate gradients again");
            // dW_hh = Σₜ d_gatesₜᵀ·hₜ₋₁, with the gate gradients from the assembly
            let rows = steps * batch;
            let want = d_gx.reshape([rows, 4 * hidden]).t().matmul(&Tensor::concat(&hs[..steps], 0));
            let (got, want) = (d_w.to_vec::<f32>().unwrap(), want.to_vec::<f32>().unwrap());
            for (g, w) in got.iter().zip(&want) {
                assert!((g - w).abs() <= 1e-5 * (1.0 + w.abs()), "stored transpose {stored}: {g} vs {w}");
            }
        }
    }
}
