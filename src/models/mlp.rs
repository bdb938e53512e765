//! The MNIST MLP: 784 → 512 → 256 → 10 with ReLU and dropout 0.2, the `mnist_mlp` example's
//! model (and the benchmarks').

use crate::Device;
use crate::nn::{Dropout, Flatten, Linear, ReLU, Sequential};

/// The MNIST MLP for (N, 1, 28, 28) images: 535,818 parameters, state-dict names `1.weight`,
/// `1.bias`, `4.*`, `7.*` as the same `nn.Sequential` in PyTorch.
pub fn mnist_mlp(device: &Device) -> Sequential {
    Sequential::new()
        .add(Flatten)
        .add(Linear::new(784, 512, device))
        .add(ReLU)
        .add(Dropout::new(0.2))
        .add(Linear::new(512, 256, device))
        .add(ReLU)
        .add(Dropout::new(0.2))
        .add(Linear::new(256, 10, device))
}
