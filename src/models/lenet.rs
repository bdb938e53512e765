//! LeNet-5 (LeCun, Bottou, Bengio and Haffner, "Gradient-based learning applied to document
//! recognition", 1998), as it is trained today: ReLU instead of scaled tanh, max pooling instead
//! of trainable subsampling, and a second convolution that sees all six maps of the first (the
//! paper's C3 saw subsets of them, through a connection table).
//!
//! For 28×28 MNIST digits the first convolution pads by 2, so that, as in the paper's 32×32
//! inputs, the second convolution sees 14×14 maps and leaves 16 maps of 5×5.

use crate::Device;
use crate::nn::{Conv2d, Flatten, Linear, MaxPool2d, ReLU, Sequential};
use crate::ops::conv::ConvOptions;
use crate::ops::pool::PoolOptions;

/// LeNet-5 for (N, 1, 28, 28) images and 10 classes: 61,706 parameters, named as PyTorch's
/// `nn.Sequential` of the same layers names them (`0.weight`, …, `11.bias`).
///
/// ```
/// use kiln::nn::{self, Module};
/// use kiln::{Device, Tensor};
/// let model = kiln::models::lenet5(&Device::Cpu);
/// assert_eq!(nn::parameter_count(&model), 61_706);
/// assert_eq!(model.forward(&Tensor::zeros([2, 1, 28, 28], &Device::Cpu)).dims(), &[2, 10]);
/// ```
pub fn lenet5(device: &Device) -> Sequential {
    let pool = MaxPool2d(PoolOptions::new(2));
    Sequential::new()
        .add(Conv2d::new(1, 6, 5, ConvOptions::default().padding(2), device)) // (N, 6, 28, 28)
        .add(ReLU)
        .add(pool) // (N, 6, 14, 14)
        .add(Conv2d::new(6, 16, 5, ConvOptions::default(), device)) // (N, 16, 10, 10)
        .add(ReLU)
        .add(pool) // (N, 16, 5, 5)
        .add(Flatten) // (N, 400)
        .add(Linear::new(16 * 5 * 5, 120, device))
        .add(ReLU)
        .add(Linear::new(120, 84, device))
        .add(ReLU)
        .add(Linear::new(84, 10, device)) // (N, 10) logits
}
