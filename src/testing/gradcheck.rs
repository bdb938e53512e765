//! The f64 gradient check: a row's analytic gradients on the CPU reference against central
//! finite differences, with the row's step and tolerance.

use super::anatomy::build;
use super::cases::Case;
use super::compare;
use super::inputs::{make_inputs, projection};
use crate::{DType, Device, Result, Tensor};

/// The result of a gradient check: per checked input, the relative error of the analytic
/// gradient against central finite differences.
#[derive(Debug)]
pub struct GradcheckReport {
    /// (input index, relative error).
    pub errors: Vec<(usize, f64)>,
}

/// Checks a case's gradients in f64 on the CPU against central differences with the row's step
/// [`Case::fd_step`], at `shapes`.
pub fn gradcheck(case: &Case, shapes: &[Vec<usize>], seed: u64) -> Result<GradcheckReport> {
    let device = Device::Cpu;
    let eps = case.fd_step;
    let base = make_inputs(case, shapes, DType::F64, &device, seed);
    let values: Vec<Vec<f64>> = base.iter().map(|t| t.to_f64_vec()).collect::<Result<_>>()?;
    let rebuild = |k: usize, data: &[f64]| -> Tensor {
        let t = &base[k];
        if t.dtype() == DType::F64 { Tensor::from_slice(data, t.shape().clone(), &device) } else { t.clone() }
    };
    // analytic
    let leaves: Vec<Tensor> = (0..base.len())
        .map(|k| {
            let t = rebuild(k, &values[k]);
            if case.inputs[k].grad { t.requires_grad_() } else { t }
        })
        .collect();
    let out = build(case, &leaves, &device);
    let r = projection(&out, seed);
    let loss = (&out * &r).sum_all();
    let grads = loss.backward();
    let mut errors = Vec::new();
    for (k, input) in case.inputs.iter().enumerate() {
        if !input.grad {
            continue;
        }
        let analytic = match grads.get(&leaves[k]) {
            Some(g) => g.to_f64_vec()?,
            None => vec![0.0; values[k].len()],
        };
        let mut numeric = Vec::with_capacity(values[k].len());
        let mut data = values[k].clone();
        for e in 0..data.len() {
            let eval = |v: f64, data: &mut Vec<f64>| -> Result<f64> {
                data[e] = v;
                let inputs: Vec<Tensor> = (0..base.len())
                    .map(|j| if j == k { rebuild(k, data) } else { rebuild(j, &values[j]) })
                    .collect();
                let y = (case.build)(&inputs, &device);
                (&y * &r).sum_all().item::<f64>()
            };
            let x0 = values[k][e];
            let plus = eval(x0 + eps, &mut data)?;
            let minus = eval(x0 - eps, &mut data)?;
            data[e] = x0;
            numeric.push((plus - minus) / (2.0 * eps));
        }
        errors.push((k, compare(&numeric, &analytic).0));
    }
    Ok(GradcheckReport { errors })
}
