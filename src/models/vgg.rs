//! VGG with batch normalization (Simonyan and Zisserman, "Very Deep Convolutional Networks for
//! Large-Scale Image Recognition", 2015; batch norm after each convolution as torchvision's
//! `vgg11_bn`/`vgg16_bn`), in the form used for 32×32 CIFAR images: the same convolutional
//! `features` (3×3 convolutions with padding 1, batch norm and ReLU, 2×2 max pooling between
//! stages: five poolings take 32×32 to 1×1), then one linear `classifier` from the 512 features
//! (the ImageNet networks' three 4096-wide layers are sized for 7×7 maps).
//!
//! State-dict names are torchvision's for the features (`features.0.weight`, `features.1.running_mean`,
//! …): the convolutional weights of a torchvision `vgg11_bn` load into `features` unchanged.

use crate::Device;
use crate::Tensor;
use crate::nn::{BatchNorm2d, Conv2d, Flatten, Linear, MaxPool2d, Module, ReLU, Sequential, Visitor};
use crate::ops::conv::ConvOptions;
use crate::ops::pool::PoolOptions;

/// A stage entry: a 3×3 convolution to this many channels, or 2×2 max pooling.
#[derive(Clone, Copy)]
enum Layer {
    Conv(usize),
    Pool,
}
use Layer::{Conv, Pool};

/// Configuration "A" of the paper: 8 convolutions.
const VGG11: &[Layer] = &[
    Conv(64),
    Pool,
    Conv(128),
    Pool,
    Conv(256),
    Conv(256),
    Pool,
    Conv(512),
    Conv(512),
    Pool,
    Conv(512),
    Conv(512),
    Pool,
];
/// Configuration "D": 13 convolutions.
const VGG16: &[Layer] = &[
    Conv(64),
    Conv(64),
    Pool,
    Conv(128),
    Conv(128),
    Pool,
    Conv(256),
    Conv(256),
    Conv(256),
    Pool,
    Conv(512),
    Conv(512),
    Conv(512),
    Pool,
    Conv(512),
    Conv(512),
    Conv(512),
    Pool,
];

/// VGG: `features` then a linear `classifier`.
pub struct Vgg {
    features: Sequential,
    /// The classifier over the 512 pooled features.
    pub classifier: Linear,
}

impl Vgg {
    fn build(config: &[Layer], classes: usize, device: &Device) -> Vgg {
        let mut features = Sequential::new();
        let mut channels = 3;
        for layer in config {
            features = match *layer {
                Conv(out) => {
                    let conv = Conv2d::new(channels, out, 3, ConvOptions::default().padding(1), device);
                    channels = out;
                    features.add(conv).add(BatchNorm2d::new_2d(out, device)).add(ReLU)
                }
                Pool => features.add(MaxPool2d(PoolOptions::new(2))),
            };
        }
        Vgg { features, classifier: Linear::new(channels, classes, device) }
    }
}

impl Module for Vgg {
    fn forward(&self, x: &Tensor) -> Tensor {
        let h = self.features.forward(x); // (N, 3, 32, 32) → (N, 512, 1, 1)
        self.classifier.forward(&Flatten.forward(&h)) // (N, 512) → (N, classes)
    }

    fn visit(&self, v: &mut dyn Visitor) {
        v.child("features", &self.features);
        v.child("classifier", &self.classifier);
    }
}

/// VGG-11 with batch norm for 32×32 images: 9,231,114 parameters for 10 classes.
///
/// ```
/// use kiln::nn::{self, Module};
/// use kiln::{Device, Tensor};
/// let model = kiln::models::vgg11_bn(10, &Device::Cpu);
/// assert_eq!(nn::parameter_count(&model), 9_231_114);
/// assert_eq!(model.forward(&Tensor::zeros([2, 3, 32, 32], &Device::Cpu)).dims(), &[2, 10]);
/// ```
pub fn vgg11_bn(classes: usize, device: &Device) -> Vgg {
    Vgg::build(VGG11, classes, device)
}

/// VGG-16 with batch norm for 32×32 images: 14,728,266 parameters for 10 classes.
pub fn vgg16_bn(classes: usize, device: &Device) -> Vgg {
    Vgg::build(VGG16, classes, device)
}
