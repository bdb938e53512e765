//! Permuted stores: a permute of a GEMM's product — through reshapes, as splitting a
//! projection into attention heads is, `(B·T, 3C) → (B, T, 3, nh, hs) → (3, B, nh, T, hs)` — that
//! nothing else reads, computed by the GEMM writing each element where the permute's copy
//! would put it. The copy's dispatch and its pass over memory go away. On a GPU, in f32, with
//! fusion on (`KILN_FUSE=0` turns it off).
//!
//! The product and the reshapes between it and the permute are left uncomputed: their only
//! reader has its value, and neither a permute's nor a reshape's gradient reads its input.

use crate::backend::wgpu::{GpuBuffer, Recorder};
use crate::ops::epilogue::EpilogueHost;
use crate::ops::layout::MAX_RANK;
use crate::ops::matmul::MatMul;
use crate::ops::movement::Movement;
use crate::ops::{Exec, GpuArg};
use crate::{DType, Result, Shape, Tensor};
use smallvec::SmallVec;
use std::any::Any;
use std::collections::HashMap;
use std::sync::Arc;

/// A permute computed by the product it reads.
pub(crate) struct PermutedStore {
    pub product: Tensor,
    /// The reshapes from the product to the permute's input, in order.
    pub views: Vec<Tensor>,
    pub permute: Tensor,
}

impl PermutedStore {
    /// Records the product of `args` (the product's inputs) written in the permute's order;
    /// returns the permute's value.
    pub(crate) fn launch(&self, args: &[GpuArg], rec: &mut Recorder) -> Result<GpuBuffer> {
        let matmul = (&self.product.0.op as &dyn Any).downcast_ref::<MatMul>().expect("a matmul");
        let perm = permutation(&self.permute).expect("a permute");
        // element i of the product is element i of the permute's input: walked as that input's
        // shape, its axis perm[j] lands at the output's stride j
        let input = self.views.last().unwrap_or(&self.product).shape().clone();
        let out_strides = self.permute.shape().strides();
        let mut strides = vec![0; perm.len()];
        for (j, &axis) in perm.iter().enumerate() {
            strides[axis] = out_strides[j];
        }
        matmul.launch_permuted(args, self.product.shape(), (input.dims(), &strides), rec)
    }
}

/// The axes of `t`'s permute, if it is one.
pub(crate) fn permutation(t: &Tensor) -> Option<&[usize]> {
    match (&t.0.op as &dyn Any).downcast_ref::<Movement>()? {
        Movement::Permute(perm) => Some(perm),
        _ => None,
    }
}

/// The permuted stores of schedule `order`, by the permute's position (where each runs): a
/// permute whose input — through reshapes — is a GPU f32 matmul's product whose kernel takes
/// an epilogue, where the product and every reshape are read by the next node alone, are held
/// by no one else, and are not `taken` by a chain.
pub(crate) fn permuted_stores(
    order: &[Tensor],
    position: &HashMap<u64, usize>,
    consumers: &[SmallVec<[usize; 2]>],
    slots: &[usize],
    taken: &[bool],
) -> HashMap<usize, PermutedStore> {
    let mut stores = HashMap::new();
    for (p, permute) in order.iter().enumerate() {
        let gpu_f32 = permute.device().is_gpu() && permute.dtype() == DType::F32;
        if taken[p] || !gpu_f32 || permutation(permute).is_none_or(|perm| perm.len() > MAX_RANK) {
            continue;
        }
        // back from the permute's input through reshapes to the node that computes it
        let (mut next, mut path) = (p, Vec::new());
        let found = loop {
            // (by id: a handle held here would count as one more reader)
            let Some(input) = order[next].0.inputs().first().map(|i| i.id()) else { break None };
            let Some(&q) = position.get(&input) else { break None };
            let alone = !taken[q]
                && consumers[q][..] == [next]
                && slots[q] == 1
                && Arc::strong_count(&order[q].0) == 1 + slots[q];
            if !alone {
                break None;
            }
            path.push(q);
            match order[q].0.op.exec() {
                Exec::View => next = q,
                _ => break Some(q),
            }
        };
        let Some(q) = found else { continue };
        let product = &order[q];
        let Some(matmul) = (&product.0.op as &dyn Any).downcast_ref::<MatMul>() else { continue };
        let inputs = product.0.inputs();
        let shapes: SmallVec<[&Shape; 2]> = inputs.iter().map(|i| i.shape()).collect();
        let takes = EpilogueHost::takes_epilogue(matmul, &shapes, product.shape(), DType::F32);
        if !takes || product.dtype() != DType::F32 {
            continue;
        }
        path.pop();
        let views = path.iter().rev().map(|&v| order[v].clone()).collect();
        stores.insert(p, PermutedStore { product: product.clone(), views, permute: permute.clone() });
    }
    stores
}
