//! `Sequential`: layers applied in order, named `0`, `1`, … as in PyTorch.

use super::{Module, Visitor};
use crate::Tensor;

/// Layers applied one after the other.
#[derive(Default)]
pub struct Sequential {
    layers: Vec<Box<dyn Module>>,
}

impl Sequential {
    /// An empty stack.
    pub fn new() -> Sequential {
        Sequential::default()
    }

    /// The stack with `layer` appended.
    #[allow(clippy::should_implement_trait)]
    pub fn add(mut self, layer: impl Module + 'static) -> Sequential {
        self.layers.push(Box::new(layer));
        self
    }

    /// The number of layers.
    pub fn len(&self) -> usize {
        self.layers.len()
    }

    /// Whether there are no layers.
    pub fn is_empty(&self) -> bool {
        self.layers.is_empty()
    }
}

impl Module for Sequential {
    fn forward(&self, x: &Tensor) -> Tensor {
        self.layers.iter().fold(x.clone(), |h, layer| layer.forward(&h))
    }

    fn visit(&self, v: &mut dyn Visitor) {
        for (i, layer) in self.layers.iter().enumerate() {
            v.child(&i.to_string(), layer.as_ref());
        }
    }
}
