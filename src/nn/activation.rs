//! Activation functions as modules, and `Flatten`.

use super::{Module, Visitor};
use crate::Tensor;

macro_rules! activation {
    ($name:ident, $doc:literal, |$x:ident| $body:expr) => {
        #[doc = $doc]
        #[derive(Clone, Copy, Debug, Default)]
        pub struct $name;

        impl Module for $name {
            fn forward(&self, $x: &Tensor) -> Tensor {
                $body
            }
            fn visit(&self, _: &mut dyn Visitor) {}
        }
    };
}

activation!(ReLU, "max(x, 0).", |x| x.relu());
activation!(ReLU6, "min(max(x, 0), 6) (MobileNet's activation).", |x| x.clamp(0.0, 6.0));
activation!(GELU, "GELU with the exact Gaussian CDF (PyTorch's default).", |x| x.gelu());
activation!(Tanh, "tanh x.", |x| x.tanh());
activation!(Sigmoid, "1 / (1 + e⁻ˣ).", |x| x.sigmoid());
activation!(SiLU, "x·σ(x).", |x| x.silu());

/// x where x > 0, slope·x elsewhere.
#[derive(Clone, Copy, Debug)]
pub struct LeakyReLU(pub f64);

impl Module for LeakyReLU {
    fn forward(&self, x: &Tensor) -> Tensor {
        x.leaky_relu(self.0)
    }
    fn visit(&self, _: &mut dyn Visitor) {}
}

/// Flattens every dimension after the first: (N, …) → (N, ∏…).
#[derive(Clone, Copy, Debug, Default)]
pub struct Flatten;

impl Module for Flatten {
    fn forward(&self, x: &Tensor) -> Tensor {
        x.flatten_from(1)
    }
    fn visit(&self, _: &mut dyn Visitor) {}
}
