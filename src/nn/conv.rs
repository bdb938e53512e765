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

    /// The same convolution without its bias (for one followed by batch normalization, whose
    /// shift replaces it, as torchvision's ResNets have).
    pub fn without_bias(mut self) -> Conv2d {
        self.bias = None;
        self
    }
}

impl Module for Conv2d {
    fn forward(&self, x: &Tensor) -> Tensor {
        let y = x.conv2d(&self.weight, self.opts);
        match &self.bias {
            // in the convolution's dtype: f16 in an autocast scope
            Some(b) => &y + &b.cast(y.dtype()).reshape([b.numel(), 1, 1]),
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

/// Average pooling to a fixed output size (PyTorch's `AdaptiveAvgPool2d`): output cell (i, j)
/// averages input rows ⌊i·H/oh⌋ … ⌈(i+1)·H/oh⌉ − 1 and the columns likewise, so any input size
/// gives (N, C, oh, ow). (1, 1) is global average pooling.
#[derive(Clone, Copy, Debug)]
pub struct AdaptiveAvgPool2d(pub (usize, usize));

impl Module for AdaptiveAvgPool2d {
    #[track_caller]
    fn forward(&self, x: &Tensor) -> Tensor {
        let (oh, ow) = self.0;
        if x.rank() != 4 || oh == 0 || ow == 0 {
            panic!(
                "AdaptiveAvgPool2d: expected (N, C, H, W) input and a positive output size, got {} to {oh}×{ow}",
                x.shape()
            );
        }
        let (h, w) = (x.dims()[2], x.dims()[3]);
        if (oh, ow) == (1, 1) {
            return x.mean_axes(&[2, 3], true); // (N, C, H, W) → (N, C, 1, 1)
        }
        // a weighted sum over each window as two matmuls with averaging matrices
        let rows = averaging_matrix(w, ow, x); // (W, ow)
        let cols = averaging_matrix(h, oh, x); // (H, oh)
        let y = x.matmul(&rows); // (N, C, H, W) → (N, C, H, ow)
        y.transpose(2, 3).matmul(&cols).transpose(2, 3) // (N, C, ow, H) → (N, C, oh, ow)
    }
    fn visit(&self, _: &mut dyn Visitor) {}
}

/// (n, out) in `like`'s dtype and on its device: column i averages inputs ⌊i·n/out⌋ …
/// ⌈(i+1)·n/out⌉ − 1.
fn averaging_matrix(n: usize, out: usize, like: &Tensor) -> Tensor {
    let mut m = vec![0f64; n * out];
    for i in 0..out {
        let (start, end) = (i * n / out, ((i + 1) * n).div_ceil(out));
        for k in start..end {
            m[k * out + i] = 1.0 / (end - start) as f64;
        }
    }
    Tensor::from_vec(m, [n, out], &Device::Cpu).cast(like.dtype()).to(&like.device())
}
