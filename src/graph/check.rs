//! Run-time cross-checking (`KILN_CHECK=1`, `Device::gpu_checked`): every node computed on a
//! GPU is computed again by the CPU reference from the same input values, and the first output
//! that differs beyond the op's tolerance stops the computation with an error naming the op, the
//! shapes, the relative error, any NaN/Inf that appeared on one side only, and the line of user
//! code that created the node.

use crate::backend::Storage;
use crate::backend::cpu::CpuStorage;
use crate::ops::{CpuArg, Meta, Op, ROUNDING_MARGIN, Tolerance, ULP};
use crate::rng::RandomKey;
use crate::{DType, Error, Result, Tensor};
use std::sync::atomic::{AtomicU8, Ordering};

/// Test-only fault injection: when set, the next checked GPU result is spoiled before the
/// comparison, to prove that the check catches a wrong kernel.
static INJECT_FAULT: AtomicU8 = AtomicU8::new(NO_FAULT);
const NO_FAULT: u8 = 0;
const WRONG_VALUE: u8 = 1;
const NAN_VALUE: u8 = 2;

/// Makes the next cross-checked GPU node's first element wrong (for testing the checker).
#[doc(hidden)]
pub fn inject_fault_once() {
    INJECT_FAULT.store(WRONG_VALUE, Ordering::SeqCst);
}

/// Makes the next cross-checked GPU node's first element NaN (for testing the checker).
#[doc(hidden)]
pub fn inject_nan_once() {
    INJECT_FAULT.store(NAN_VALUE, Ordering::SeqCst);
}

/// Compares the GPU result `out` of node `t` with the CPU reference on the same inputs.
pub(crate) fn compare(t: &Tensor, inputs: &[Tensor], storages: &[Storage], out: &Storage) -> Result<()> {
    let host: Vec<CpuStorage> = storages
        .iter()
        .zip(inputs)
        .map(|(s, i)| match s {
            Storage::Gpu(b) => b.download(i.dtype(), i.numel()),
            Storage::Cpu(c) => Ok((**c).clone()),
        })
        .collect::<Result<_>>()?;
    let args: Vec<CpuArg> =
        host.iter().zip(inputs).map(|(data, i)| CpuArg { data, shape: i.shape() }).collect();
    let node = &t.0;
    if let Some(fault) = node.op.validate(&args) {
        return Err(fault.error(t));
    }
    let meta = Meta { shape: &node.shape, dtype: node.dtype };
    let reference = node.op.cpu(&args, &meta).to_f64_vec();
    let (tolerance, measured) = match node.op.tolerance(&args, &meta) {
        Tolerance::Exact => (0.0, None),
        Tolerance::Rounding { floor, terms } => {
            let kappa = condition(&node.op, &host, inputs, &meta);
            let summing = ROUNDING_MARGIN * (terms as f64).sqrt() * ULP * kappa;
            (floor + summing, Some((floor, terms, kappa)))
        }
    };
    let mut gpu = out.gpu().download(node.dtype, t.numel())?.to_f64_vec();
    if let Some(first) = gpu.first_mut() {
        match INJECT_FAULT.swap(NO_FAULT, Ordering::SeqCst) {
            WRONG_VALUE => *first += 1.0 + first.abs(),
            NAN_VALUE => *first = f64::NAN,
            _ => {}
        }
    }
    let verdict = Verdict::of(&reference, &gpu);
    if verdict.rel_err <= tolerance && verdict.mismatch.is_none() {
        return Ok(());
    }
    let shapes: Vec<String> = inputs.iter().map(|i| format!("{} {}", i.shape(), i.dtype())).collect();
    let mut msg = format!(
        "cross-check failed: {} on {} disagrees with the CPU reference\n  inputs: {}\n  output: {} {}\n  relative error {:.3e} (tolerance {:.1e})",
        node.op.describe(),
        node.device,
        if shapes.is_empty() { "none".into() } else { shapes.join(", ") },
        node.shape,
        node.dtype,
        verdict.rel_err,
        tolerance,
    );
    if let Some((floor, terms, kappa)) = measured {
        msg.push_str(&format!(
            ": {floor:.1e} for the op's own rounding, and {ROUNDING_MARGIN}·√{terms} ulps of sums at the measured condition κ = {kappa:.2}"
        ));
    }
    if let Some(n) = verdict.mismatch {
        msg.push_str(&format!("\n  {n}"));
    }
    msg.push_str(&format!("\n  {}", node.site()));
    Err(Error::CheckFailed(msg))
}

/// The measured condition κ of `op` at these inputs (see [`Tolerance`]): how far its output
/// moves, in ulps of ‖output‖, when every float input moves by one ulp of random sign — both
/// runs in f64, so only the data's conditioning shows. 0 for ops without float inputs.
fn condition(op: &dyn Op, host: &[CpuStorage], inputs: &[Tensor], meta: &Meta) -> f64 {
    if !host.iter().any(|h| h.dtype().is_float()) {
        return 0.0;
    }
    let run = |perturb: bool| -> Vec<f64> {
        let wide: Vec<CpuStorage> = host
            .iter()
            .enumerate()
            .map(|(k, h)| {
                if !h.dtype().is_float() {
                    return h.clone();
                }
                let key = RandomKey { seed: 0xc0d, stream: k as u64 };
                let moved = |(i, x): (usize, f64)| match perturb {
                    true if key.uniform(i as u64) < 0.5 => x * (1.0 - ULP),
                    true => x * (1.0 + ULP),
                    false => x,
                };
                CpuStorage::from_vec(h.to_f64_vec().into_iter().enumerate().map(moved).collect::<Vec<f64>>())
            })
            .collect();
        let args: Vec<CpuArg> =
            wide.iter().zip(inputs).map(|(data, i)| CpuArg { data, shape: i.shape() }).collect();
        op.cpu(&args, &Meta { shape: meta.shape, dtype: DType::F64 }).to_f64_vec()
    };
    let (y, moved) = (run(false), run(true));
    // infinities (a −∞ mask entry passing through) are compared exactly by `Verdict`; here
    // ∞ − ∞ would make κ NaN
    let finite: Vec<(f64, f64)> =
        y.iter().zip(&moved).filter(|(a, b)| a.is_finite() && b.is_finite()).map(|(&a, &b)| (a, b)).collect();
    let norm = finite.iter().map(|(v, _)| v * v).sum::<f64>().sqrt();
    let shift = finite.iter().map(|(a, b)| (a - b) * (a - b)).sum::<f64>().sqrt();
    if norm > 0.0 { shift / (ULP * norm) } else { shift / ULP }
}

/// How two results compare.
pub(crate) struct Verdict {
    /// ‖a − b‖ / ‖a‖ (‖a − b‖ when ‖a‖ is 0); infinite when the results cannot agree (see
    /// `mismatch`), so no tolerance accepts them.
    pub rel_err: f64,
    /// What makes the results disagree outright: the first NaN/Inf present on one side only,
    /// or different lengths.
    pub mismatch: Option<String>,
}

impl Verdict {
    /// Compares `got` against `reference`.
    pub fn of(reference: &[f64], got: &[f64]) -> Verdict {
        let mut diff = 0.0;
        let mut norm = 0.0;
        if reference.len() != got.len() {
            let lengths = format!("{} elements against {} in the reference", got.len(), reference.len());
            return Verdict { rel_err: f64::INFINITY, mismatch: Some(lengths) };
        }
        let mut nonfinite = None;
        for (i, (&r, &g)) in reference.iter().zip(got).enumerate() {
            if r.is_finite() && g.is_finite() {
                diff += (r - g) * (r - g);
                norm += r * r;
            } else if !(r.is_nan() && g.is_nan() || r == g) && nonfinite.is_none() {
                nonfinite = Some(format!("element {i}: reference {r}, got {g} (NaN/Inf on one side only)"));
            }
        }
        let rel_err = match nonfinite {
            Some(_) => f64::INFINITY,
            None if norm > 0.0 => (diff / norm).sqrt(),
            None => diff.sqrt(),
        };
        Verdict { rel_err, mismatch: nonfinite }
    }
}
