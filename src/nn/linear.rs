//! `Linear`: y = x·Wᵀ + b.

use super::{Module, Visitor, init};
use crate::{Device, Tensor};

/// A fully connected layer, y = x·Wᵀ + b, with weight (out, in) as in PyTorch. The transpose is
/// read in place by the matmul kernel, not copied.
pub struct Linear {
    /// (out_features, in_features).
    pub weight: Tensor,
    /// (out_features), if the layer has one.
    pub bias: Option<Tensor>,
}

impl Linear {
    /// A layer with bias, initialized as PyTorch does.
    #[track_caller]
    pub fn new(in_features: usize, out_features: usize, device: &Device) -> Linear {
        Linear {
            weight: init::param(init::kaiming_uniform([out_features, in_features], in_features, device)),
            bias: Some(init::param(init::bias_uniform([out_features], in_features, device))),
        }
    }

    /// A layer without bias.
    #[track_caller]
    pub fn no_bias(in_features: usize, out_features: usize, device: &Device) -> Linear {
        Linear { bias: None, ..Linear::new(in_features, out_features, device) }
    }
}

impl Module for Linear {
    fn forward(&self, x: &Tensor) -> Tensor {
        let y = x.matmul(&self.weight.t());
        match &self.bias {
            // in the product's dtype: f16 in an autocast scope
            Some(b) => &y + &b.cast(y.dtype()),
            None => y,
        }
    }

    fn visit(&self, v: &mut dyn Visitor) {
        v.param("weight", &self.weight);
        if let Some(b) = &self.bias {
            v.param("bias", b);
        }
    }
}
