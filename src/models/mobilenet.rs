//! MobileNetV2 (Sandler, Howard, Zhu, Zhmoginov and Chen, "MobileNetV2: Inverted Residuals and
//! Linear Bottlenecks", 2018), as torchvision's `mobilenet_v2` with its state-dict names
//! (`features.3.conv.1.0.weight`): a 3×3 convolution to 32 channels, seventeen inverted-residual
//! blocks — a 1×1 expansion by t with ReLU6, a 3×3 depthwise convolution (`groups` = channels)
//! with ReLU6, a linear 1×1 projection, and a shortcut where the shape allows — a 1×1
//! convolution to 1280 channels, global average pooling, dropout 0.2 and a linear classifier.
//!
//! [`mobilenet_v2_cifar`] is the same network for 32×32 images: the stem and the first stride-2
//! stage keep stride 1 (as is usual for CIFAR), so the last maps are 4×4 instead of 1×1.

use crate::nn::{
    AdaptiveAvgPool2d, BatchNorm2d, Conv2d, Dropout, Flatten, Linear, Module, ReLU6, Sequential, Visitor,
    init,
};
use crate::ops::conv::ConvOptions;
use crate::{Device, Tensor};

/// (expansion t, output channels c, blocks n, stride s of the first block), the paper's Table 2.
const STAGES: [(usize, usize, usize, usize); 7] = [
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
];

/// A convolution without bias, initialized as torchvision's (Kaiming normal, fan-out).
fn conv(inp: usize, out: usize, kernel: usize, stride: usize, groups: usize, device: &Device) -> Conv2d {
    let opts = ConvOptions::default().stride(stride).padding(kernel / 2).groups(groups);
    let mut conv = Conv2d::new(inp, out, kernel, opts, device).without_bias();
    let fan_out = out / groups * kernel * kernel;
    conv.weight =
        init::param(init::normal(conv.weight.shape().clone(), (2.0 / fan_out as f64).sqrt(), device));
    conv
}

/// Convolution, batch norm and ReLU6: torchvision's `Conv2dNormActivation` (`0`, `1`, `2`).
fn conv_bn_relu6(
    inp: usize,
    out: usize,
    kernel: usize,
    stride: usize,
    groups: usize,
    device: &Device,
) -> Sequential {
    Sequential::new()
        .add(conv(inp, out, kernel, stride, groups, device))
        .add(BatchNorm2d::new_2d(out, device))
        .add(ReLU6)
}

/// An inverted residual block: expand (1×1), depthwise (3×3), project (1×1, linear), and the
/// input added back when the stride is 1 and the channels agree.
pub struct InvertedResidual {
    conv: Sequential,
    residual: bool,
}

impl InvertedResidual {
    /// From `inp` to `out` channels with `stride` and expansion ratio `t`.
    pub fn new(inp: usize, out: usize, stride: usize, t: usize, device: &Device) -> InvertedResidual {
        let hidden = inp * t;
        let mut conv = Sequential::new();
        if t != 1 {
            conv = conv.add(conv_bn_relu6(inp, hidden, 1, 1, 1, device)); // (N, inp, H, W) → (N, hidden, H, W)
        }
        conv = conv.add(conv_bn_relu6(hidden, hidden, 3, stride, hidden, device)); // depthwise: → (N, hidden, H/s, W/s)
        // the linear projection: a bare convolution and batch norm (`conv.k`, `conv.k+1`)
        conv = conv.add(self::conv(hidden, out, 1, 1, 1, device)).add(BatchNorm2d::new_2d(out, device)); // → (N, out, H/s, W/s)
        InvertedResidual { conv, residual: stride == 1 && inp == out }
    }
}

impl Module for InvertedResidual {
    fn forward(&self, x: &Tensor) -> Tensor {
        let y = self.conv.forward(x);
        if self.residual { x + y } else { y }
    }

    fn visit(&self, v: &mut dyn Visitor) {
        v.child("conv", &self.conv);
    }
}

/// MobileNetV2: `features`, global average pooling, `classifier` (dropout, linear).
pub struct MobileNetV2 {
    features: Sequential,
    /// Dropout 0.2 (`classifier.0`) and the linear layer (`classifier.1`).
    pub classifier: Sequential,
}

impl MobileNetV2 {
    fn build(classes: usize, cifar: bool, device: &Device) -> MobileNetV2 {
        let mut features =
            Sequential::new().add(conv_bn_relu6(3, 32, 3, if cifar { 1 } else { 2 }, 1, device));
        let mut channels = 32;
        for (stage, &(t, c, n, s)) in STAGES.iter().enumerate() {
            for b in 0..n {
                let stride = if b > 0 || (cifar && stage == 1) { 1 } else { s };
                features = features.add(InvertedResidual::new(channels, c, stride, t, device));
                channels = c;
            }
        }
        features = features.add(conv_bn_relu6(channels, 1280, 1, 1, 1, device));
        let mut fc = Linear::new(1280, classes, device);
        fc.weight = init::param(init::normal([classes, 1280], 0.01, device));
        fc.bias = fc.bias.map(|b| init::param(Tensor::zeros(b.shape().clone(), device)));
        MobileNetV2 { features, classifier: Sequential::new().add(Dropout::new(0.2)).add(fc) }
    }
}

impl Module for MobileNetV2 {
    fn forward(&self, x: &Tensor) -> Tensor {
        let h = self.features.forward(x); // (N, 3, H, W) → (N, 1280, H/32, W/32)
        let pooled = Flatten.forward(&AdaptiveAvgPool2d((1, 1)).forward(&h)); // → (N, 1280)
        self.classifier.forward(&pooled) // → (N, classes)
    }

    fn visit(&self, v: &mut dyn Visitor) {
        v.child("features", &self.features);
        v.child("classifier", &self.classifier);
    }
}

/// torchvision's MobileNetV2 (3,504,872 parameters for 1000 classes).
pub fn mobilenet_v2(classes: usize, device: &Device) -> MobileNetV2 {
    MobileNetV2::build(classes, false, device)
}

/// MobileNetV2 for 32×32 images (stride 1 in the stem and the second stage): 2,236,682
/// parameters for 10 classes, named as torchvision's.
///
/// ```
/// use kiln::nn::{self, Module};
/// use kiln::{Device, Tensor};
/// let model = kiln::models::mobilenet_v2_cifar(10, &Device::Cpu);
/// assert_eq!(nn::parameter_count(&model), 2_236_682);
/// assert_eq!(model.forward(&Tensor::zeros([2, 3, 32, 32], &Device::Cpu)).dims(), &[2, 10]);
/// ```
pub fn mobilenet_v2_cifar(classes: usize, device: &Device) -> MobileNetV2 {
    MobileNetV2::build(classes, true, device)
}
