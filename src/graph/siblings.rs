//! Sibling fusion: two nodes of a realize that read the same value, computed by one kernel.
//!
//! A linear layer's backward pass sums its output's gradient D over the rows for the bias and
//! multiplies D into the weight's gradient (Dᵀ·X, or Xᵀ·D for `x.matmul(&w)`). The GEMM computes
//! the sums too, from a line of ones appended to its other operand (`matmul.wgsl`'s `ONES`), as
//! cuBLASLt's bias-gradient epilogues do: the bias's reduction costs no dispatch and no pass over
//! D of its own. On a GPU, in f32, with fusion on (`KILN_FUSE=0` turns it off).

use crate::ops::Exec;
use crate::ops::matmul::{MatMul, SumsAlongK};
use crate::ops::reduce::Reduce;
use crate::{DType, Tensor};
use smallvec::SmallVec;
use std::any::Any;
use std::collections::HashMap;

/// A product that also computes a sum of one of its operands along K.
pub(crate) struct Pair {
    pub product: Tensor,
    pub sum: Tensor,
    pub sums: SumsAlongK,
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

/// The pairs of schedule `order`, by the position where each runs: each sum over all leading
/// axes of a value D with the product that reads D as the matrix it sums (op(A) = Dᵀ, or op(B)
/// = D), where neither node is `taken` by a chain. A pair runs at the earlier node's place when
/// everything it reads is computed by then (the sum reads only D, which the product reads
/// too), else at the product's place if nothing reads the sum before it.
pub(crate) fn pairs(
    order: &[Tensor],
    position: &HashMap<u64, usize>,
    consumers: &[SmallVec<[usize; 2]>],
    taken: &[bool],
) -> HashMap<usize, Pair> {
    let on_gpu = |p: usize| !taken[p] && order[p].device().is_gpu() && order[p].dtype() == DType::F32;
    // the products, by (the storage of the operand they could sum, which way, its shape)
    let mut products: HashMap<(u64, SumsAlongK, Vec<usize>), usize> = HashMap::new();
    for (q, t) in order.iter().enumerate().filter(|&(q, _)| on_gpu(q)) {
        let Some(op) = (&t.0.op as &dyn Any).downcast_ref::<MatMul>() else { continue };
        let inputs = t.0.inputs();
        let [a, b] = &inputs[..] else { continue };
        let shapes = (a.shape(), b.shape(), t.shape());
        if op.trans_a && op.takes_sums(shapes.0, shapes.1, shapes.2, t.dtype(), SumsAlongK::RowsOfA) {
            products.insert((storage_id(a), SumsAlongK::RowsOfA, a.dims().to_vec()), q);
        }
        if !op.trans_b && op.takes_sums(shapes.0, shapes.1, shapes.2, t.dtype(), SumsAlongK::ColumnsOfB) {
            products.insert((storage_id(b), SumsAlongK::ColumnsOfB, b.dims().to_vec()), q);
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
        if !reduce.sums_all_but_last(d.shape()) {
            continue;
        }
        // D as the (rows, width) matrix the product reads
        let width = d.dim(-1);
        let matrix = vec![d.numel() / width.max(1), width];
        for sums in [SumsAlongK::RowsOfA, SumsAlongK::ColumnsOfB] {
            let Some(&q) = products.get(&(storage_id(&d), sums, matrix.clone())) else { continue };
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
            pairs.insert(place, Pair { product: order[q].clone(), sum: t.clone(), sums });
            break;
        }
    }
    pairs
}
