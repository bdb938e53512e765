//! The affine map of a linear layer applied to inputs of any rank, as one 2-D matrix product.
//!
//! x (…, in) · Wᵀ as a batched matmul would broadcast W over the leading dimensions, and its
//! gradient would be one product per batch entry summed afterwards; flattening x to
//! (rows, in) first makes the weight's gradient one GEMM, xᵀ·dy, with no reduction.

use crate::{Shape, Tensor};

/// x (…, in) · Wᵀ (+ b), W (out, in), computed as one (rows, in) × (in, out) product.
pub(crate) fn affine(x: &Tensor, weight: &Tensor, bias: Option<&Tensor>) -> Tensor {
    let y = if x.rank() > 2 {
        let mut dims = x.dims().to_vec();
        let features = dims.pop().expect("rank > 2");
        let rows = dims.iter().product::<usize>();
        dims.push(weight.dim(0));
        x.reshape([rows, features]).matmul(&weight.t()).reshape(Shape::new(dims))
    } else {
        x.matmul(&weight.t())
    };
    match bias {
        Some(b) => y + b,
        None => y,
    }
}
