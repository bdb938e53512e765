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

use crate::backend::wgpu::{GpuBuffer, Recorder};
use crate::ops::conv::Conv;
use crate::ops::matmul::{MatMul, SumsAlongK};
use crate::ops::reduce::Reduce;
use crate::ops::{Exec, GpuArg, Meta};
use crate::{DType, Result, Tensor};
use smallvec::SmallVec;
use std::any::Any;
use std::collections::HashMap;

/// Which sums a pair's product computes beside its own output.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Sums {
    /// A matmul's, along K.
    Product(SumsAlongK),
    /// A convolution's weight gradient's: its dy per output channel.
    Channels,
}

/// A product that also computes a sum of one of its operands.
pub(crate) struct Pair {
    pub product: Tensor,
    pub sum: Tensor,
    pub sums: Sums,
}

impl Pair {
    /// Records the product of `args` and the sums; returns both.
    pub(crate) fn launch(&self, args: &[GpuArg], rec: &mut Recorder) -> Result<(GpuBuffer, GpuBuffer)> {
        let (op, shape) = (&self.product.0.op as &dyn Any, self.product.shape());
        match self.sums {
            Sums::Product(along) => {
                let matmul = op.downcast_ref::<MatMul>().expect("a matmul");
                matmul.launch_with_sums(args, shape, along, rec)
            }
            Sums::Channels => {
                let conv = op.downcast_ref::<Conv>().expect("a convolution");
                conv.launch_with_channel_sums(args, &Meta { shape, dtype: self.product.dtype() }, rec)
            }
        }
    }
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
            pairs.insert(place, Pair { product: order[q].clone(), sum: t.clone(), sums: key.1 });
            break;
        }
    }
    pairs
}
