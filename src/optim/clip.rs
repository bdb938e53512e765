//! Gradient clipping by global norm.

use crate::{Gradients, Tensor, no_grad};

/// Scales the gradients of `params` so that their joint L2 norm is at most `max_norm`, as
/// PyTorch's `clip_grad_norm_`; returns the norm before clipping. Lazy: the norm and the
/// scaling stay on the device, nothing is read back.
///
/// A tensor listed more than once (a tied weight) counts once, as it is one parameter.
pub fn clip_grad_norm(grads: &mut Gradients, params: &[(String, Tensor)], max_norm: f64) -> Option<Tensor> {
    no_grad(|| {
        let mut present: Vec<&Tensor> = Vec::new();
        for (_, p) in params {
            if grads.get(p).is_some() && !present.iter().any(|seen| seen.same(p)) {
                present.push(p);
            }
        }
        let squares = present.iter().map(|p| grads.get(p).expect("filtered").square().sum_all());
        let total = squares.reduce(|a, b| a + b)?.sqrt();
        // scale = min(1, max_norm / (norm + 1e-6))
        let scale = (max_norm / (&total + 1e-6)).clamp(0.0, 1.0);
        for p in present {
            let clipped = grads.get(p).expect("filtered") * &scale;
            grads.insert(p, clipped);
        }
        Some(total)
    })
}
