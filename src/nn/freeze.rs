//! Freezing parameters by name, for transfer learning: a frozen parameter gets no gradient, so
//! an optimizer built from [`trainable_parameters`] holds no state for it and never moves it.
//!
//! ```
//! use kiln::nn::{self, Linear, Module, Sequential};
//! use kiln::Device;
//! let dev = Device::Cpu;
//! let model = Sequential::new().add(Linear::new(4, 8, &dev)).add(Linear::new(8, 2, &dev));
//! assert_eq!(nn::freeze(&model, "0.*"), 2); // the backbone: 0.weight and 0.bias
//! let names: Vec<String> = nn::trainable_parameters(&model).into_iter().map(|(n, _)| n).collect();
//! assert_eq!(names, ["1.weight", "1.bias"]); // the head
//! nn::unfreeze(&model, "*");
//! assert_eq!(nn::trainable_parameters(&model).len(), 4);
//! ```

use super::pattern::glob;
use super::{Module, parameters};
use crate::Tensor;

/// Stops the gradient of every parameter of `m` whose state-dict name matches `pattern` (`*`
/// matches any run of characters: `layer1.*`, `*.bn*.weight`), as PyTorch's
/// `p.requires_grad_(False)`; returns how many it froze. Buffers (batch-norm statistics) are
/// not parameters: put the frozen layers in evaluation mode to stop those too.
pub fn freeze(m: &dyn Module, pattern: &str) -> usize {
    let matched = matching(m, pattern);
    matched.iter().for_each(Tensor::stop_requiring_grad);
    matched.len()
}

/// Makes every parameter of `m` whose name matches `pattern` trainable again; returns how many.
pub fn unfreeze(m: &dyn Module, pattern: &str) -> usize {
    let matched = matching(m, pattern);
    for p in &matched {
        p.clone().requires_grad_();
    }
    matched.len()
}

/// The parameters of `m` that are not frozen, with their names: what to give the optimizer.
pub fn trainable_parameters(m: &dyn Module) -> Vec<(String, Tensor)> {
    parameters(m).into_iter().filter(|(_, p)| p.requires_grad()).collect()
}

fn matching(m: &dyn Module, pattern: &str) -> Vec<Tensor> {
    parameters(m).into_iter().filter(|(name, _)| glob(pattern, name)).map(|(_, p)| p).collect()
}
