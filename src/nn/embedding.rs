//! `Embedding`: a table of vectors looked up by integer ids.

use super::{Module, Visitor, init};
use crate::{Device, Shape, Tensor};

/// A lookup table of `num` vectors of size `dim`, initialized N(0, 1) as in PyTorch.
pub struct Embedding {
    /// (num, dim).
    pub weight: Tensor,
}

impl Embedding {
    /// A table of `num` vectors of size `dim`.
    #[track_caller]
    pub fn new(num: usize, dim: usize, device: &Device) -> Embedding {
        Embedding { weight: init::param(init::normal([num, dim], 1.0, device)) }
    }
}

impl Module for Embedding {
    /// Ids of any shape (i32 or u32) → vectors of shape ids.shape + (dim).
    fn forward(&self, ids: &Tensor) -> Tensor {
        let dim = self.weight.dim(-1);
        let rows = self.weight.index_select(0, &ids.reshape([ids.numel()]));
        let mut shape = ids.dims().to_vec();
        shape.push(dim);
        rows.reshape(Shape::new(shape))
    }

    fn visit(&self, v: &mut dyn Visitor) {
        v.param("weight", &self.weight);
    }
}
