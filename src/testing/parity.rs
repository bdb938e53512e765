//! The CPU-versus-GPU parity check: a row built on both devices from the same f32 inputs, the
//! outputs and (optionally) the gradients compared by relative error.

use super::anatomy::build;
use super::cases::Case;
use super::compare;
use super::inputs::{draw, projection};
use crate::{DType, Device, Result};

/// The result of a parity check: relative errors of the GPU against the CPU reference.
#[derive(Debug)]
pub struct ParityReport {
    /// Forward output.
    pub forward: f64,
    /// NaN/Inf on one side only, forward.
    pub forward_nonfinite: Option<String>,
    /// (input index, relative error of its gradient); empty when gradients were not compared.
    pub grads: Vec<(usize, f64)>,
}

impl ParityReport {
    /// One line per error past `case`'s tolerances (forward `tol`, gradients `grad_tol`; NaN and
    /// one-sided non-finite values always fail), each starting with `what`.
    pub fn failures(&self, case: &Case, what: &str) -> Vec<String> {
        let mut lines = Vec::new();
        if self.forward.is_nan() || self.forward > case.tol || self.forward_nonfinite.is_some() {
            lines.push(format!(
                "{what}: forward relative error {:.3e} > {:.1e} {}",
                self.forward,
                case.tol,
                self.forward_nonfinite.as_deref().unwrap_or_default()
            ));
        }
        for &(input, err) in &self.grads {
            if err.is_nan() || err > case.grad_tol {
                lines.push(format!(
                    "{what}: gradient of input {input}: relative error {err:.3e} > {:.1e}",
                    case.grad_tol
                ));
            }
        }
        lines
    }
}

/// Runs a case on the CPU and on `gpu` from the same f32 inputs and compares the outputs and,
/// when `gradients` is set and the row is differentiable, the gradients of Σ r·y.
pub fn parity(
    case: &Case,
    shapes: &[Vec<usize>],
    gpu: &Device,
    seed: u64,
    gradients: bool,
) -> Result<ParityReport> {
    let gradients = gradients && case.differentiable;
    // drawn once: the GPU run gets the very values the CPU run had
    let drawn = draw(case, shapes, seed);
    // (forward values, gradient values per input)
    type Run = (Vec<f64>, Vec<Option<Vec<f64>>>);
    let run = |device: &Device| -> Result<Run> {
        let mut inputs = Vec::with_capacity(drawn.len());
        for ((d, shape), input) in drawn.iter().zip(shapes).zip(&case.inputs) {
            let t = d.tensor(shape, DType::F32, device)?;
            inputs.push(if input.grad && gradients { t.requires_grad_() } else { t });
        }
        let out = build(case, &inputs, device);
        let forward = out.to_f64_vec()?;
        let mut grads = vec![None; inputs.len()];
        if gradients && out.requires_grad() {
            let loss = (&out * &projection(&out, seed)).sum_all();
            let g = loss.backward();
            for (k, t) in inputs.iter().enumerate() {
                if let Some(gk) = g.get(t) {
                    grads[k] = Some(gk.to_f64_vec()?);
                }
            }
        }
        Ok((forward, grads))
    };
    let (cpu_out, cpu_grads) = run(&Device::Cpu)?;
    let (gpu_out, gpu_grads) = run(gpu)?;
    let (forward, forward_nonfinite) = compare(&cpu_out, &gpu_out);
    let grads = cpu_grads
        .iter()
        .zip(&gpu_grads)
        .enumerate()
        .filter_map(|(k, (c, g))| match (c, g) {
            (Some(c), Some(g)) => Some((k, compare(c, g).0)),
            (None, None) => None,
            _ => Some((k, f64::INFINITY)),
        })
        .collect();
    Ok(ParityReport { forward, forward_nonfinite, grads })
}
