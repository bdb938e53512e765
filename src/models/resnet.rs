//! Residual networks (He, Zhang, Ren and Sun, "Deep Residual Learning for Image Recognition",
//! 2016), built from one [`BasicBlock`]:
//!
//! - [`resnet20`] and [`resnet56`]: the paper's CIFAR-10 networks (§4.2): a 3×3 convolution to 16
//!   maps, three stages of n blocks on 32×32, 16×16 and 8×8 maps with 16, 32 and 64 channels,
//!   global average pooling and a 10-way linear layer; 6n + 2 layers. Where a stage halves the
//!   maps, the shortcut is the paper's option A: the input subsampled by 2 and padded with zero
//!   channels, so the shortcuts add no parameters (ResNet-20: 0.27M).
//! - [`resnet18`]: torchvision's ImageNet ResNet-18 (a 7×7 stride-2 stem and max pooling, four
//!   stages of two blocks with 64 … 512 channels, projection shortcuts of a 1×1 convolution and
//!   batch norm), with torchvision's state-dict names and shapes (`layer2.0.downsample.0.weight`),
//!   so its weights load from and into `torchvision.models.resnet18` with `strict=True`.
//!
//! Convolutions followed by batch norm have no bias, as in both references; weights start as
//! torchvision's: Kaiming-normal (fan-out) convolutions, batch-norm scale 1 and shift 0.

use crate::nn::{
    AdaptiveAvgPool2d, BatchNorm2d, Conv2d, Flatten, Linear, MaxPool2d, Module, Sequential, Visitor, init,
};
use crate::ops::conv::ConvOptions;
use crate::ops::pool::PoolOptions;
use crate::{Device, Tensor};

/// What a block adds its residual to.
enum Shortcut {
    /// The input itself (same shape).
    Identity,
    /// Option A: the input subsampled by `stride` and zero-padded to `pad` more channels on
    /// each side.
    PadChannels { stride: usize, pad: usize },
    /// Option B: a strided 1×1 convolution and batch norm (`downsample.0`, `downsample.1`).
    Projection(Sequential),
}

/// Two 3×3 convolutions with batch norm, and a shortcut around them:
/// `relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))`.
pub struct BasicBlock {
    conv1: Conv2d,
    bn1: BatchNorm2d,
    conv2: Conv2d,
    bn2: BatchNorm2d,
    shortcut: Shortcut,
}

/// Which shortcut a block uses where its shape changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShortcutKind {
    /// Subsample and pad with zero channels (no parameters; the paper's CIFAR networks).
    PadChannels,
    /// A 1×1 convolution and batch norm (torchvision's ImageNet networks).
    Projection,
}

/// A convolution without bias, initialized as torchvision's ResNets (Kaiming normal, fan-out, ReLU gain).
fn conv(in_channels: usize, out_channels: usize, kernel: usize, stride: usize, device: &Device) -> Conv2d {
    let opts = ConvOptions::default().stride(stride).padding(kernel / 2);
    let mut c = Conv2d::new(in_channels, out_channels, kernel, opts, device).without_bias();
    let fan_out = out_channels * kernel * kernel;
    c.weight = init::param(init::normal(c.weight.shape().clone(), (2.0 / fan_out as f64).sqrt(), device));
    c
}

impl BasicBlock {
    /// A block from `in_channels` to `out_channels` whose first convolution has `stride`; where
    /// the shape changes the shortcut is of `kind`.
    pub fn new(
        in_channels: usize,
        out_channels: usize,
        stride: usize,
        kind: ShortcutKind,
        device: &Device,
    ) -> Self {
        let shortcut = if stride == 1 && in_channels == out_channels {
            Shortcut::Identity
        } else {
            match kind {
                ShortcutKind::PadChannels => {
                    Shortcut::PadChannels { stride, pad: (out_channels - in_channels) / 2 }
                }
                ShortcutKind::Projection => Shortcut::Projection(
                    Sequential::new()
                        .add(conv(in_channels, out_channels, 1, stride, device))
                        .add(BatchNorm2d::new_2d(out_channels, device)),
                ),
            }
        };
        BasicBlock {
            conv1: conv(in_channels, out_channels, 3, stride, device),
            bn1: BatchNorm2d::new_2d(out_channels, device),
            conv2: conv(out_channels, out_channels, 3, 1, device),
            bn2: BatchNorm2d::new_2d(out_channels, device),
            shortcut,
        }
    }
}

impl Module for BasicBlock {
    fn forward(&self, x: &Tensor) -> Tensor {
        let h = self.bn1.forward(&self.conv1.forward(x)).relu(); // (N, out, H/s, W/s)
        let h = self.bn2.forward(&self.conv2.forward(&h));
        let skip = match &self.shortcut {
            Shortcut::Identity => x.clone(),
            Shortcut::PadChannels { stride, pad } => {
                // (N, C, H, W) → (N, C, H/s, W/s) → (N, C + 2·pad, H/s, W/s)
                let (h, w) = (x.dims()[2], x.dims()[3]);
                let sub = x.slice(2, 0, h, *stride).slice(3, 0, w, *stride);
                sub.pad(&[(0, 0), (*pad, *pad), (0, 0), (0, 0)], 0.0)
            }
            Shortcut::Projection(downsample) => downsample.forward(x),
        };
        (h + skip).relu()
    }

    fn visit(&self, v: &mut dyn Visitor) {
        v.child("conv1", &self.conv1);
        v.child("bn1", &self.bn1);
        v.child("conv2", &self.conv2);
        v.child("bn2", &self.bn2);
        if let Shortcut::Projection(downsample) = &self.shortcut {
            v.child("downsample", downsample);
        }
    }
}

/// The two families: their stems and their shortcuts where a stage changes shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Family {
    /// A 3×3 convolution on 32×32 images; option A shortcuts.
    Cifar,
    /// A 7×7 stride-2 convolution and 3×3 stride-2 max pooling; projection shortcuts.
    ImageNet,
}

/// A ResNet: a stem, stages of [`BasicBlock`]s (`layer1`, `layer2`, …), global average pooling
/// and a linear classifier `fc`.
pub struct ResNet {
    conv1: Conv2d,
    bn1: BatchNorm2d,
    /// torchvision's stem pools after its first convolution; the CIFAR networks do not.
    stem_pool: Option<MaxPool2d>,
    layers: Vec<Sequential>,
    /// The classifier: replace it to fine-tune on other classes ([`ResNet::replace_head`]).
    pub fc: Linear,
}

impl ResNet {
    /// Stages of `blocks[i]` blocks with `widths[i]` channels, each after the first halving the
    /// maps, after the stem of `family`.
    fn build(family: Family, widths: &[usize], blocks: &[usize], classes: usize, device: &Device) -> ResNet {
        let kind = match family {
            Family::Cifar => ShortcutKind::PadChannels,
            Family::ImageNet => ShortcutKind::Projection,
        };
        let mut layers = Vec::new();
        let mut channels = widths[0];
        for (stage, (&width, &n)) in widths.iter().zip(blocks).enumerate() {
            let mut layer = Sequential::new();
            for b in 0..n {
                let stride = if stage > 0 && b == 0 { 2 } else { 1 };
                layer = layer.add(BasicBlock::new(channels, width, stride, kind, device));
                channels = width;
            }
            layers.push(layer);
        }
        let (conv1, stem_pool) = match family {
            Family::Cifar => (conv(3, widths[0], 3, 1, device), None),
            Family::ImageNet => {
                (conv(3, widths[0], 7, 2, device), Some(MaxPool2d(PoolOptions::new(3).stride(2).padding(1))))
            }
        };
        ResNet {
            conv1,
            bn1: BatchNorm2d::new_2d(widths[0], device),
            stem_pool,
            layers,
            fc: Linear::new(channels, classes, device),
        }
    }

    /// The features before the classifier: (N, 3, H, W) → (N, channels of the last stage).
    pub fn features(&self, x: &Tensor) -> Tensor {
        let mut h = self.bn1.forward(&self.conv1.forward(x)).relu();
        if let Some(pool) = &self.stem_pool {
            h = pool.forward(&h);
        }
        for layer in &self.layers {
            h = layer.forward(&h);
        }
        Flatten.forward(&AdaptiveAvgPool2d((1, 1)).forward(&h)) // (N, C, h, w) → (N, C)
    }

    /// Replaces the classifier by a fresh one for `classes` classes (transfer learning).
    pub fn replace_head(&mut self, classes: usize, device: &Device) {
        self.fc = Linear::new(self.fc.weight.dims()[1], classes, device);
    }
}

impl Module for ResNet {
    fn forward(&self, x: &Tensor) -> Tensor {
        self.fc.forward(&self.features(x)) // (N, classes) logits
    }

    fn visit(&self, v: &mut dyn Visitor) {
        v.child("conv1", &self.conv1);
        v.child("bn1", &self.bn1);
        for (i, layer) in self.layers.iter().enumerate() {
            v.child(&format!("layer{}", i + 1), layer);
        }
        v.child("fc", &self.fc);
    }
}

/// The paper's CIFAR ResNet of 6n + 2 layers, for (N, 3, 32, 32) images.
fn cifar_resnet(n: usize, classes: usize, device: &Device) -> ResNet {
    ResNet::build(Family::Cifar, &[16, 32, 64], &[n; 3], classes, device)
}

/// ResNet-20 for CIFAR (n = 3): 269,722 parameters for 10 classes (He et al.: 0.27M).
///
/// ```
/// use kiln::nn::{self, Module};
/// use kiln::{Device, Tensor};
/// let model = kiln::models::resnet20(10, &Device::Cpu);
/// assert_eq!(nn::parameter_count(&model), 269_722);
/// assert_eq!(model.forward(&Tensor::zeros([2, 3, 32, 32], &Device::Cpu)).dims(), &[2, 10]);
/// ```
pub fn resnet20(classes: usize, device: &Device) -> ResNet {
    cifar_resnet(3, classes, device)
}

/// ResNet-56 for CIFAR (n = 9): 853,018 parameters for 10 classes (He et al.: 0.85M).
pub fn resnet56(classes: usize, device: &Device) -> ResNet {
    cifar_resnet(9, classes, device)
}

/// torchvision's ResNet-18 (11.7M parameters for 1000 classes), named as
/// `torchvision.models.resnet18`'s state dict.
pub fn resnet18(classes: usize, device: &Device) -> ResNet {
    ResNet::build(Family::ImageNet, &[64, 128, 256, 512], &[2; 4], classes, device)
}
