//! Gradient norms: clipping by the global norm, and the norm of each parameter's gradient (for
//! watching gradients vanish or explode).

use crate::{DType, Gradients, Shape, Tensor, no_grad};

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

/// The L2 norm of each parameter's gradient, as one f32 tensor of shape (params): entry `i`
/// belongs to `params[i]`, NaN where that parameter has no gradient. Lazy, and on the
/// gradients' device: one small reduction per parameter, read back with one download.
///
/// ```
/// use kiln::optim::grad_norms;
/// use kiln::{Device, Tensor};
/// let w = Tensor::from_vec(vec![0.0f32; 2], [2], &Device::Cpu).requires_grad_();
/// let unused = Tensor::zeros([3], &Device::Cpu).requires_grad_();
/// let grads = (&w * &Tensor::from_vec(vec![3.0f32, 4.0], [2], &Device::Cpu)).sum_all().backward();
/// let params = [("w".to_string(), w), ("unused".to_string(), unused)];
/// let norms = grad_norms(&grads, &params).unwrap().to_vec::<f32>().unwrap();
/// assert_eq!(norms[0], 5.0);
/// assert!(norms[1].is_nan());
/// ```
pub fn grad_norms(grads: &Gradients, params: &[(String, Tensor)]) -> Option<Tensor> {
    let device = params.iter().find_map(|(_, p)| grads.get(p))?.device();
    no_grad(|| {
        let norms: Vec<Tensor> = params
            .iter()
            .map(|(_, p)| match grads.get(p) {
                Some(g) => g.square().sum_all().cast(DType::F32),
                None => Tensor::full(Shape::scalar(), f64::NAN, DType::F32, &device),
            })
            .collect();
        Some(Tensor::stack(&norms, 0).sqrt())
    })
}
