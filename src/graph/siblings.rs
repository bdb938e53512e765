//! Sibling fusion: two nodes of a realize that read the same value, computed by one kernel.
//!
//! A layer's backward pass sums its output's gradient D for the bias and multiplies D into the
//! weight's gradient. The GEMM computes the sums too, from a line of ones appended to its other
//! operand, as cuBLASLt's bias-gradient epilogues do: the bias's reduction costs no dispatch and
//! no pass over D of its own. A linear layer's D is (rows, out) and its weight's gradient Dᵀ·X
//! (or Xᵀ·D for `x.matmul(&w)`: `matmul.wgsl`'s `ONES`); a convolution's D is (N, O, OH, OW),
//! summed over all but O, and its weight's gradient the implicit GEMM of `conv.wgsl` (`ONES`
//! there). On a GPU, in f32, where the line of ones fits the padding of the GEMM's last tile,
//! with fusion on (`KILN_FUSE=0` turns it off).
//!
//! Layer norm's backward pass recomputes x̂ for its weight's gradient Σ dy·x̂, in a kernel of
//! its own. The input gradient's kernel has x̂ and dy in hand: it writes the terms dy·x̂ too,
//! and x̂ is never computed (its one reader, the product, has its value). This pair runs
//! whether or not the input gradient stores through a chain (the residual stream's gradient
//! added to it): [`NormTerms`] goes with the chain's host then.

use crate::backend::wgpu::{GpuBuffer, Recorder};
use crate::graph::fuse::Group;
use crate::ops::conv::Conv;
use crate::ops::epilogue::Epilogue;
use crate::ops::layernorm::LayerNormGrad;
use crate::ops::matmul::{MatMul, SumsAlongK};
use crate::ops::reduce::Reduce;
use crate::ops::{Exec, GpuArg, Meta};
use crate::{DType, Result, Tensor};
use smallvec::SmallVec;
use std::any::Any;
use std::collections::HashMap;
use std::sync::Arc;

/// Which sums a pair's product computes beside its own output.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Sums {
    /// A matmul's, along K.
    Product(SumsAlongK),
    /// A convolution's weight gradient's: its dy per output channel.
    Channels,
}

/// What a pair's sibling is.
pub(crate) enum Kind {
    /// Sums of one of the main node's operands, computed by its product.
    Sums(Sums),
    /// The weight's gradient terms of the layer norm whose input gradient the main node is.
    NormTerms(NormTerms),
}

/// Two nodes computed by the main one's kernel.
pub(crate) struct Pair {
    pub main: Tensor,
    pub sibling: Tensor,
    pub kind: Kind,
}

impl Pair {
    /// Records the main node of `args` (its inputs) and the sibling; returns both values.
    pub(crate) fn launch(&self, args: &[GpuArg], rec: &mut Recorder) -> Result<(GpuBuffer, GpuBuffer)> {
        let (op, shape) = (&self.main.0.op as &dyn Any, self.main.shape());
        let meta = Meta { shape, dtype: self.main.dtype() };
        match &self.kind {
            Kind::Sums(Sums::Product(along)) => {
                let matmul = op.downcast_ref::<MatMul>().expect("a matmul");
                matmul.launch_with_sums(args, shape, *along, rec)
            }
            Kind::Sums(Sums::Channels) => {
                let conv = op.downcast_ref::<Conv>().expect("a convolution");
                conv.launch_with_channel_sums(args, &meta, rec)
            }
            Kind::NormTerms(_) => {
                let (mut dx, terms) = launch_with_terms(&self.main, args, None, rec)?;
                Ok((dx.remove(0), terms))
            }
        }
    }
}

/// Layer norm's weight gradient terms dy·x̂, computed by the kernel of its input gradient; x̂
/// (layer norm without weight or bias, recomputed) stays uncomputed.
pub(crate) struct NormTerms {
    pub terms: Tensor,
    pub x_hat: Tensor,
}

/// Records layer norm's input gradient `grad` of `args` — stored through `epilogue`, if there
/// is one — and its sibling's terms dy·x̂. Returns what the store wrote, then the terms.
pub(crate) fn launch_with_terms(
    grad: &Tensor,
    args: &[GpuArg],
    epilogue: Option<&Epilogue>,
    rec: &mut Recorder,
) -> Result<(Vec<GpuBuffer>, GpuBuffer)> {
    let op = (&grad.0.op as &dyn Any).downcast_ref::<LayerNormGrad>().expect("a layer norm's gradient");
    op.launch_with_terms(args, &Meta { shape: grad.shape(), dtype: grad.dtype() }, epilogue, rec)
}

/// A layer norm's input gradient and its weight's gradient terms in schedule `order`, by
/// position.
pub(crate) struct NormPlan {
    pub grad: usize,
    pub terms: usize,
    pub x_hat: usize,
}

/// The pairs of a layer norm's input gradient and its weight's gradient terms in schedule
/// `order`: a product dy·x̂ on a GPU, in f32, of the same dy as a layer norm's input gradient
/// reads, and of x̂ recomputed from that gradient's x, which nothing but the product reads or
/// holds. Found before chains are: the product must not join one.
pub(crate) fn norm_plans(
    order: &[Tensor],
    position: &HashMap<u64, usize>,
    consumers: &[SmallVec<[usize; 2]>],
    slots: &[usize],
) -> Vec<NormPlan> {
    let gpu_f32 = |t: &Tensor| t.device().is_gpu() && t.dtype() == DType::F32;
    // each input gradient by the ids of its x and dy
    let mut grads: HashMap<(u64, u64), usize> = HashMap::new();
    for (q, t) in order.iter().enumerate().filter(|(_, t)| gpu_f32(t)) {
        if (&t.0.op as &dyn Any).is::<LayerNormGrad>() {
            let inputs = t.0.inputs();
            let (x, dy) = (&inputs[0], inputs.last().expect("x and dy"));
            grads.insert((x.id(), dy.id()), q);
        }
    }
    if grads.is_empty() {
        return Vec::new();
    }
    let mut plans = Vec::new();
    for (r, t) in order.iter().enumerate().filter(|(_, t)| gpu_f32(t)) {
        let Some((a, b)) = t.same_shape_product() else { continue };
        for (x_hat, dy) in [(a, b), (b, a)] {
            let Some(&h) = position.get(&x_hat) else { continue };
            let alone =
                consumers[h][..] == [r] && slots[h] == 1 && Arc::strong_count(&order[h].0) == 1 + slots[h];
            let Some(x) = order[h].0.inputs().first().cloned() else { continue };
            let Some(&q) = grads.get(&(x.id(), dy)) else { continue };
            let grad = (&order[q].0.op as &dyn Any).downcast_ref::<LayerNormGrad>().expect("a gradient");
            if alone && grad.normalizes(&x, &order[h]) {
                plans.push(NormPlan { grad: q, terms: r, x_hat: h });
                break;
            }
        }
    }
    plans
}

/// The id of the node whose storage `t` reads: `t`'s, or that of the node its views (reshapes,
/// which keep the order of the elements) start from.
fn storage_id(t: &Tensor) -> u64 {
    let mut t = t.clone();
    while t.0.op.exec() == Exec::View {
        let Some(input) = t.0.inputs().first().cloned() else { break };
        t = input;
    }
    t.id()
}

/// What a product can sum: (the storage of the operand, which sums, the operand's shape).
type Key = (u64, Sums, Vec<usize>);

/// The sums product `t` can compute, by the operand it would sum.
fn summable(t: &Tensor) -> SmallVec<[Key; 2]> {
    let mut keys = SmallVec::new();
    let (op, inputs) = (&t.0.op as &dyn Any, t.0.inputs());
    if let (Some(matmul), [a, b]) = (op.downcast_ref::<MatMul>(), &inputs[..]) {
        let takes = |along| matmul.takes_sums(a.shape(), b.shape(), t.shape(), t.dtype(), along);
        if matmul.trans_a && takes(SumsAlongK::RowsOfA) {
            keys.push((storage_id(a), Sums::Product(SumsAlongK::RowsOfA), a.dims().to_vec()));
        }
        if !matmul.trans_b && takes(SumsAlongK::ColumnsOfB) {
            keys.push((storage_id(b), Sums::Product(SumsAlongK::ColumnsOfB), b.dims().to_vec()));
        }
    }
    let conv = op.downcast_ref::<Conv>().filter(|c| c.takes_channel_sums(t.dtype()));
    if let Some(dy) = conv.and_then(|c| c.weight_grad_dy(&inputs)) {
        keys.push((storage_id(&dy), Sums::Channels, dy.dims().to_vec()));
    }
    keys
}

/// Places each layer norm pair of `plans` (see [`norm_plans`]): where the input gradient hosts
/// a chain, the chain's task computes the terms too (its host gets them); else a pair of its
/// own, returned by the place it runs at. A pair runs where the gradient would alone, or where
/// the terms are, if all it reads is computed by then (the terms are then ready before their
/// readers run); where neither holds, the product and x̂ are computed as nodes of their own.
/// Marks what each pair computes as `hosted`.
pub(crate) fn place_norm_terms(
    plans: Vec<NormPlan>,
    order: &[Tensor],
    position: &HashMap<u64, usize>,
    consumers: &[SmallVec<[usize; 2]>],
    chains: &mut HashMap<usize, Group>,
    hosted: &mut [bool],
) -> HashMap<usize, Pair> {
    let mut pairs = HashMap::new();
    for plan in plans {
        let (grad, terms, x_hat) = (&order[plan.grad], &order[plan.terms], &order[plan.x_hat]);
        let siblings = NormTerms { terms: terms.clone(), x_hat: x_hat.clone() };
        let ready_by = |place: usize, reads: &[Tensor]| {
            consumers[plan.terms].iter().all(|&c| c > place)
                && reads.iter().all(|i| position.get(&i.id()).is_none_or(|&q| q < place))
        };
        if hosted[plan.grad] {
            let Some(&at) = chains
                .iter()
                .find_map(|(at, g)| g.host.as_ref().filter(|h| h.node.id() == grad.id()).map(|_| at))
            else {
                continue;
            };
            let chain = &chains[&at];
            let host = chain.host.as_ref().expect("a host");
            let produced: Vec<u64> = host.views.iter().chain([&host.node]).map(|v| v.id()).collect();
            let mut reads = grad.0.inputs().to_vec();
            reads.extend(chain.inputs.iter().filter(|i| !produced.contains(&i.id())).cloned());
            let Some(place) = [at, plan.terms].into_iter().find(|&place| ready_by(place, &reads)) else {
                continue;
            };
            let mut chain = chains.remove(&at).expect("found");
            chain.host.as_mut().expect("a host").terms = Some(siblings);
            chains.insert(place, chain);
        } else {
            let place = plan.grad.min(plan.terms);
            if !ready_by(place, &grad.0.inputs()) || chains.contains_key(&place) {
                continue;
            }
            let kind = Kind::NormTerms(siblings);
            pairs.insert(place, Pair { main: grad.clone(), sibling: terms.clone(), kind });
            hosted[plan.grad] = true;
        }
        hosted[plan.terms] = true;
        hosted[plan.x_hat] = true;
    }
    pairs
}

/// The pairs of schedule `order`, by the position where each runs: each sum of a bias's
/// gradient D with the product that reads D as the operand it sums, where neither node is
/// `taken` by a chain. A pair runs at the earlier node's place when everything it reads is
/// computed by then (the sum reads only D, which the product reads too), else at the product's
/// place if nothing reads the sum before it.
pub(crate) fn pairs(
    order: &[Tensor],
    position: &HashMap<u64, usize>,
    consumers: &[SmallVec<[usize; 2]>],
    taken: &[bool],
) -> HashMap<usize, Pair> {
    let on_gpu = |p: usize| !taken[p] && order[p].device().is_gpu() && order[p].dtype() == DType::F32;
    let mut products: HashMap<Key, usize> = HashMap::new();
    for (q, t) in order.iter().enumerate().filter(|&(q, _)| on_gpu(q)) {
        for key in summable(t) {
            products.insert(key, q);
        }
    }
    let mut pairs = HashMap::new();
    let mut paired: Vec<usize> = Vec::new();
    if products.is_empty() {
        return pairs;
    }
    for (r, t) in order.iter().enumerate().filter(|&(r, _)| on_gpu(r)) {
        let Some(reduce) = (&t.0.op as &dyn Any).downcast_ref::<Reduce>() else { continue };
        let Some(d) = t.0.inputs().first().cloned() else { continue };
        // D as the operand a product reads: a (rows, width) matrix, or a convolution's dy
        let width = d.dim(-1);
        let keys: Vec<Key> = match d.rank() {
            _ if reduce.sums_all_but(d.rank() - 1, d.shape()) => {
                [SumsAlongK::RowsOfA, SumsAlongK::ColumnsOfB]
                    .into_iter()
                    .map(|along| {
                        (storage_id(&d), Sums::Product(along), vec![d.numel() / width.max(1), width])
                    })
                    .collect()
            }
            4 if reduce.sums_all_but(1, d.shape()) => {
                vec![(storage_id(&d), Sums::Channels, d.dims().to_vec())]
            }
            _ => continue,
        };
        for key in keys {
            let Some(&q) = products.get(&key) else { continue };
            if paired.contains(&q) {
                continue;
            }
            let operands_before =
                |r: usize| order[q].0.inputs().iter().all(|i| position.get(&i.id()).is_none_or(|&p| p < r));
            let place = match () {
                _ if q < r || operands_before(r) => q.min(r),
                _ if consumers[r].iter().all(|&c| c > q) => q,
                _ => continue,
            };
            paired.push(q);
            pairs.insert(place, Pair { main: order[q].clone(), sibling: t.clone(), kind: Kind::Sums(key.1) });
            break;
        }
    }
    pairs
}
