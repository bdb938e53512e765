//! What a row's graph is made of. The harness builds every row through `build`, which checks
//! that the output node is the op the row targets. For the coverage test, [`inspect`] records a
//! row (computing nothing, so a GPU device needs no adapter): its output op and its nodes on
//! each device; and [`gradient_rule`] applies the output op's own gradient rule once.

use super::Domain;
use super::cases::Case;
use crate::ops::Grad;
use crate::{DType, Device, Tensor};
use std::collections::HashSet;

/// Builds a case's output from `inputs` on `device`.
///
/// Panics, naming the row, when the output node is not the row's target op: a row must test its
/// op itself, not merely contain it.
pub(crate) fn build(case: &Case, inputs: &[Tensor], device: &Device) -> Tensor {
    let out = (case.build)(inputs, device);
    if let Some(target) = case.target {
        let root = out.0.op.name();
        assert_eq!(
            root, target,
            "case `{}` targets {target}, but its output node is {root} (on {device})",
            case.name
        );
    }
    out
}

/// One row at one shape set, as recorded by [`inspect`].
#[derive(Debug)]
pub struct Anatomy {
    /// The op of the output node.
    pub root: &'static str,
    /// The nodes from the output down to the row's inputs, depth first, each as
    /// "op(attributes) shape dtype": the same list on every device when the row builds the same
    /// graph everywhere.
    pub nodes: Vec<String>,
}

/// Records a case at `shapes` with float inputs in `float` on `device`.
pub fn inspect(case: &Case, shapes: &[Vec<usize>], float: DType, device: &Device) -> Anatomy {
    let (inputs, out) = record(case, shapes, float, device);
    Anatomy { root: out.0.op.name(), nodes: describe_down_to(&out, &inputs) }
}

/// What the gradient rule of a row's output op does, as the gradient check runs the row (in f64
/// on the CPU), for an upstream gradient of ones.
#[derive(Debug)]
pub struct GradientRule {
    /// How many of the output op's inputs the rule gives a gradient (0 for an output that is not
    /// float: it passes no gradient on).
    pub gradients: usize,
    /// The ops of the nodes the rule creates, oldest first: the rule alone, not the gradients of
    /// the ops below it.
    pub ops: Vec<&'static str>,
}

/// Records a case at `shapes` and applies its output op's gradient rule once.
pub fn gradient_rule(case: &Case, shapes: &[Vec<usize>]) -> GradientRule {
    let (_, out) = record(case, shapes, DType::F64, &Device::Cpu);
    if !out.dtype().is_float() {
        return GradientRule { gradients: 0, ops: Vec::new() };
    }
    let seed = Tensor::full(out.shape().clone(), 1.0, out.dtype(), &out.device());
    let op_inputs: Vec<Tensor> = out.0.inputs().iter().cloned().collect();
    let rule = out.0.op.backward(&Grad { inputs: &op_inputs, output: &out, grad: &seed });
    let gradients = rule.iter().flatten().count();
    let ops = created_after(&seed, rule.into_iter().flatten()).iter().map(|t| t.0.op.name()).collect();
    GradientRule { gradients, ops }
}

/// A case's inputs and output, recorded (nothing is drawn or computed: the inputs are
/// unrealized placeholders, so large shape sets cost nothing and a GPU device needs no adapter).
fn record(case: &Case, shapes: &[Vec<usize>], float: DType, device: &Device) -> (Vec<Tensor>, Tensor) {
    let inputs: Vec<Tensor> = case
        .inputs
        .iter()
        .zip(shapes)
        .map(|(input, shape)| {
            let dtype = match input.domain {
                Domain::Index { .. } => DType::I32,
                Domain::Bool => DType::Bool,
                _ => float,
            };
            let t = Tensor::full(shape.clone(), 0.0, dtype, device);
            if input.grad && case.differentiable && dtype.is_float() { t.requires_grad_() } else { t }
        })
        .collect();
    let out = (case.build)(&inputs, device);
    (inputs, out)
}

/// The op of a tensor's node, e.g. `"matmul"` (for tests that check what they built).
pub fn op_name(t: &Tensor) -> &'static str {
    t.0.op.name()
}

/// The `nth` node (oldest first) of op `op` among those that the gradient rule of `y`'s op
/// creates for the upstream gradient `dy`. This is how a test reaches an op that only gradient
/// rules make (`layer_norm_grad`, `conv2d_input_grad`, ...) and runs it on inputs of its own.
///
/// Panics when the rule makes no such node.
pub fn gradient_op(y: &Tensor, dy: &Tensor, op: &str, nth: usize) -> Tensor {
    let op_inputs: Vec<Tensor> = y.0.inputs().iter().cloned().collect();
    let rule = y.0.op.backward(&Grad { inputs: &op_inputs, output: y, grad: dy });
    let newest = if y.id() > dy.id() { y } else { dy };
    created_after(newest, rule.into_iter().flatten())
        .into_iter()
        .filter(|t| t.0.op.name() == op)
        .nth(nth)
        .unwrap_or_else(|| panic!("the gradient rule of {} makes no node {op} number {nth}", y.0.op.name()))
}

/// The nodes reachable from `roots` that were created after `marker` (ids grow with creation),
/// oldest first. Everything the graph held before — inputs, the output, the upstream gradient —
/// is older, so this is exactly what was built since `marker`.
fn created_after(marker: &Tensor, roots: impl IntoIterator<Item = Tensor>) -> Vec<Tensor> {
    let mut seen = HashSet::new();
    let mut found = Vec::new();
    let mut stack: Vec<Tensor> = roots.into_iter().collect();
    while let Some(t) = stack.pop() {
        if t.id() <= marker.id() || !seen.insert(t.id()) {
            continue;
        }
        stack.extend(t.0.inputs().iter().cloned());
        found.push(t);
    }
    found.sort_by_key(|t| t.id());
    found
}

/// "op(attributes) shape dtype" for every node from `out` down to (not including) `inputs`,
/// depth first in input order.
fn describe_down_to(out: &Tensor, inputs: &[Tensor]) -> Vec<String> {
    let stop: HashSet<u64> = inputs.iter().map(|t| t.id()).collect();
    let mut seen = HashSet::new();
    let mut nodes = Vec::new();
    let mut stack = vec![out.clone()];
    while let Some(t) = stack.pop() {
        if stop.contains(&t.id()) || !seen.insert(t.id()) {
            continue;
        }
        nodes.push(format!("{} {} {}", t.0.op.describe(), t.shape(), t.dtype()));
        stack.extend(t.0.inputs().iter().rev().cloned());
    }
    nodes
}
