//! Run-time cross-checking (`KILN_CHECK=1`, `Device::gpu_checked`): every node computed on a
//! GPU is computed again by the CPU reference from the same input values, and the first output
//! that differs beyond the op's tolerance stops the computation with an error naming the op, the
//! shapes, the relative error, any NaN/Inf that appeared on one side only, and the line of user
//! code that created the node.

use crate::backend::Storage;
use crate::backend::cpu::CpuStorage;
use crate::ops::{CpuArg, Meta};
use crate::{Error, Result, Tensor};
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
    let meta = Meta { shape: &node.shape, dtype: node.dtype };
    let reference = node.op.cpu(&args, &meta).to_f64_vec();
    let mut gpu = out.gpu().download(node.dtype, t.numel())?.to_f64_vec();
    if let Some(first) = gpu.first_mut() {
        match INJECT_FAULT.swap(NO_FAULT, Ordering::SeqCst) {
            WRONG_VALUE => *first += 1.0 + first.abs(),
            NAN_VALUE => *first = f64::NAN,
            _ => {}
        }
    }
    let tolerance = node.op.tolerance();
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
    if let Some(n) = verdict.mismatch {
        msg.push_str(&format!("\n  {n}"));
    }
    msg.push_str(&format!("\n  created at {}", node.location));
    Err(Error::CheckFailed(msg))
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
