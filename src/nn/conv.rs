//! `Conv2d` and the pooling layers.

use super::{Module, Visitor, init};
use crate::ops::conv::ConvOptions;
use crate::ops::pool::PoolOptions;
use crate::{Device, Tensor};

/// A 2-D convolution over (N, C, H, W) with weight (out, in/groups, kh, kw) and a bias.
pub struct Conv2d {
    /// (out_channels, in_channels / groups, kh, kw).
    pub weight: Tensor,
    /// (out_channels), if the layer has one.
    pub bias: Option<Tensor>,
    /// Stride, padding, dilation and groups.
    pub opts: ConvOptions,
}

impl Conv2d {
    /// A convolution with a square `kernel`, initialized as PyTorch does.
    #[track_caller]
    pub fn new(
        in_channels: usize,
        out_channels: usize,
        kernel: usize,
        opts: ConvOptions,
        device: &Device,
    ) -> Conv2d {
        if opts.groups == 0
            || !in_channels.is_multiple_of(opts.groups)
            || !out_channels.is_multiple_of(opts.groups)
        {
            panic!(
                "Conv2d: {in_channels} → {out_channels} channels do not split into {} groups",
                opts.groups
            );
        }
        let fan_in = in_channels / opts.groups * kernel * kernel;
        let shape = [out_channels, in_channels / opts.groups, kernel, kernel];
        Conv2d {
            weight: init::param(init::kaiming_uniform(shape, fan_in, device)),
            bias: Some(init::param(init::bias_uniform([out_channels], fan_in, device))),
            opts,
        }
    }
}

impl Module for Conv2d {
    fn forward(&self, x: &Tensor) -> Tensor {
        let y = x.conv2d(&self.weight, self.opts);
        match &self.bias {
            Some(b) => y + b.reshape([b.numel(), 1, 1]),
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

/// 2-D max pooling.
#[derive(Clone, Copy, Debug)]
pub struct MaxPool2d(pub PoolOptions);

impl Module for MaxPool2d {
    fn forward(&self, x: &Tensor) -> Tensor {
        x.max_pool2d(self.0)
    }
    fn visit(&self, _: &mut dyn Visitor) {}
}

/// 2-D average pooling.
#[derive(Clone, Copy, Debug)]
pub struct AvgPool2d(pub PoolOptions);

impl Module for AvgPool2d {
    fn forward(&self, x: &Tensor) -> Tensor {
        x.avg_pool2d(self.0)
    }
    fn visit(&self, _: &mut dyn Visitor) {}
}
