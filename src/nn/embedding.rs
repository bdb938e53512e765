//! `Embedding`: a table of vectors looked up by integer ids, optionally with a padding id whose
//! vector is zero and never trained (PyTorch's `padding_idx`).

use super::{Module, Visitor, init};
use crate::{Device, Shape, Tensor};

/// A lookup table of `num` vectors of size `dim`, initialized N(0, 1) as in PyTorch.
pub struct Embedding {
    /// (num, dim).
    pub weight: Tensor,
    padding_idx: Option<usize>,
}

impl Embedding {
    /// A table of `num` vectors of size `dim`.
    #[track_caller]
    pub fn new(num: usize, dim: usize, device: &Device) -> Embedding {
        Embedding { weight: init::param(init::normal([num, dim], 1.0, device)), padding_idx: None }
    }

    /// A table holding `weight` (num, dim) as it is, e.g. initialized otherwise than N(0, 1).
    #[track_caller]
    pub fn from_weight(weight: Tensor) -> Embedding {
        if weight.rank() != 2 {
            panic!("Embedding: the weight must be (num, dim), got {:?}", weight.dims());
        }
        Embedding { weight, padding_idx: None }
    }

    /// A table whose row `padding_idx` starts at zero and receives no gradient, so it stays
    /// what it is while the others train (PyTorch's `padding_idx`): the vector of the padding
    /// in a padded batch.
    ///
    /// ```
    /// # use kiln::nn::{Embedding, Module};
    /// # use kiln::{Device, Tensor};
    /// let emb = Embedding::with_padding_idx(5, 3, 0, &Device::Cpu);
    /// let ids = Tensor::from_vec(vec![0i32, 4, 0], [3], &Device::Cpu);
    /// let grads = emb.forward(&ids).sum_all().backward();
    /// let g = grads.get(&emb.weight).unwrap().to_vec::<f32>().unwrap();
    /// assert_eq!(&g[..3], &[0.0, 0.0, 0.0]); // row 0: no gradient
    /// assert_eq!(&g[12..], &[1.0, 1.0, 1.0]); // row 4: used once
    /// ```
    #[track_caller]
    pub fn with_padding_idx(num: usize, dim: usize, padding_idx: usize, device: &Device) -> Embedding {
        if padding_idx >= num {
            panic!("Embedding: padding_idx {padding_idx} is not a row of a table of {num}");
        }
        let keep: Vec<f32> = (0..num).map(|row| if row == padding_idx { 0.0 } else { 1.0 }).collect();
        let keep = Tensor::from_vec(keep, [num, 1], device);
        let weight = init::param(init::normal([num, dim], 1.0, device) * keep);
        Embedding { weight, padding_idx: Some(padding_idx) }
    }

    /// The padding id, if any.
    pub fn padding_idx(&self) -> Option<usize> {
        self.padding_idx
    }
}

impl Module for Embedding {
    /// Ids of any shape (i32 or u32) → vectors of shape ids.shape + (dim).
    fn forward(&self, ids: &Tensor) -> Tensor {
        let dim = self.weight.dim(-1);
        let flat = ids.reshape([ids.numel()]);
        let mut rows = self.weight.index_select(0, &flat);
        if let Some(pad) = self.padding_idx {
            // the same values, but the padding rows' gradient stops here
            let is_pad = flat.eq_scalar(pad as f64).reshape([ids.numel(), 1]);
            rows = is_pad.where_(&rows.detach(), &rows);
        }
        let mut shape = ids.dims().to_vec();
        shape.push(dim);
        rows.reshape(Shape::new(shape))
    }

    fn visit(&self, v: &mut dyn Visitor) {
        v.param("weight", &self.weight);
    }
}
