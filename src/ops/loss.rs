//! Cross-entropy from logits, fused: per-row losses from one pass over each row (log-sum-exp,
//! the target's logit and, for label smoothing, the row's sum), and a fused gradient
//! softmax − target distribution. The mean over the rows that are not ignored is tensor ops.

use super::{CpuArg, Fault, GpuArg, Grad, Meta, Op, Tolerance, cancellation, ulps_summing};
use crate::backend::cpu::{CpuStorage, max_of, sum_f64, with_float};
use crate::backend::cpu_pool;
use crate::backend::wgpu::{GpuBuffer, Grid, Kernel, Recorder, Shader, shader};
use crate::dtype::{Element, Float};
use crate::ops::layout::u32_of;
use crate::ops::wgsl::wgsl_type;
use crate::{DType, Result, Shape, Tensor};
use rayon::prelude::*;

static SHADER: Shader = shader!("loss.wgsl");

/// Options of [`Tensor::cross_entropy_with`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CrossEntropy {
    /// Rows whose target equals this contribute neither loss nor gradient, and are not counted
    /// in the mean (PyTorch's `ignore_index`).
    pub ignore_index: Option<i64>,
    /// The target distribution puts 1 − s on the label and s/C on every class (PyTorch's
    /// `label_smoothing`).
    pub label_smoothing: f64,
}

impl Default for CrossEntropy {
    fn default() -> Self {
        CrossEntropy { ignore_index: None, label_smoothing: 0.0 }
    }
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    rows: u32,
    classes: u32,
    /// 1 when `ignore` is in use.
    has_ignore: u32,
    ignore: i32,
    smoothing: f32,
    /// 1 − smoothing, computed in f64 and rounded once.
    keep: f32,
    /// Where the kernel reports out-of-range targets (see `Recorder::fault_word`).
    fault_word: u32,
    _pad: u32,
}

impl CrossEntropy {
    /// The kernel parameters; registers the targets (input 1) for fault reports.
    fn params(&self, rows: usize, classes: usize, rec: &mut Recorder) -> Result<Params> {
        Ok(Params {
            rows: u32_of("cross_entropy", rows)?,
            classes: u32_of("cross_entropy", classes)?,
            has_ignore: self.ignore_index.is_some() as u32,
            ignore: self.ignore_index.unwrap_or(0).clamp(i32::MIN as i64, i32::MAX as i64) as i32,
            smoothing: self.label_smoothing as f32,
            keep: (1.0 - self.label_smoothing) as f32,
            fault_word: rec.fault_word(1, "target", classes)?,
            _pad: 0,
        })
    }

    fn ignored(&self, target: i64) -> bool {
        self.ignore_index == Some(target)
    }

    /// The first target (input 1 of the loss and its gradient) that is neither a class nor
    /// ignored.
    fn validate(&self, args: &[CpuArg]) -> Option<Fault> {
        Fault::first("target", args[1].data, args[0].shape.dim(1), self.ignore_index)
    }

    /// Reads the targets (already validated).
    fn targets(&self, data: &CpuStorage) -> Vec<i64> {
        data.to_f64_vec().into_iter().map(|v| v as i64).collect()
    }

    /// Each row of (logits, targets) worked out in f64, for the cross-check's tolerances.
    fn rows(&self, args: &[CpuArg]) -> Vec<Row> {
        let (x, classes) = (args[0].data.to_f64_vec(), args[0].shape.dim(1));
        let targets = self.targets(args[1].data);
        x.chunks(classes.max(1))
            .zip(targets)
            .map(|(row, target)| {
                let m = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let sum: f64 = row.iter().map(|v| (v - m).exp()).sum();
                let lse = m + sum.ln();
                let ignored = self.ignored(target);
                let target_logit = if ignored { 0.0 } else { row[target as usize] };
                let mean = row.iter().sum::<f64>() / classes as f64;
                let s = self.label_smoothing;
                let loss = if ignored { 0.0 } else { (1.0 - s) * (lse - target_logit) + s * (lse - mean) };
                let probs = row.iter().map(|v| (v - m).exp() / sum).collect();
                Row { lse, target_logit, target, ignored, loss, probs }
            })
            .collect()
    }
}

/// The maximum of `row` and the sum of e^(x − max) over it (in f64), with the exps computed in
/// `scratch` by the vectorizable [`Float::exp_fast`] (each pass its own loop, so each
/// vectorizes).
fn exp_row<T: Float>(row: &[T], scratch: &mut Vec<T>) -> (T, f64) {
    let m = max_of(row);
    scratch.clear();
    scratch.extend(row.iter().map(|&v| (v - m).exp_fast()));
    (m, sum_f64(scratch))
}

/// One row of a cross-entropy, in f64 (see [`CrossEntropy::rows`]).
struct Row {
    lse: f64,
    target_logit: f64,
    target: i64,
    ignored: bool,
    loss: f64,
    probs: Vec<f64>,
}

/// The forward or backward kernel for targets of type `labels`.
fn kernel(entry: &'static str, labels: DType) -> Kernel<'static> {
    let reads = if entry == "forward" { 2 } else { 3 };
    Kernel::new(&SHADER, entry, reads, 1)
        .with_fault_reports()
        .with("alias I = i32; // @I", format!("alias I = {};", wgsl_type(labels)))
}

/// Every specialization this family can compile (for the shader validation test).
pub(crate) fn variants() -> Vec<Kernel<'static>> {
    ["forward", "backward"].into_iter().flat_map(|e| [kernel(e, DType::I32), kernel(e, DType::U32)]).collect()
}

/// Per-row losses of logits (N, C) against class targets (N).
pub(crate) struct CrossEntropyLoss {
    opts: CrossEntropy,
}

impl Op for CrossEntropyLoss {
    fn name(&self) -> &'static str {
        "cross_entropy"
    }

    fn describe(&self) -> String {
        format!("cross_entropy({:?})", self.opts)
    }

    fn validate(&self, args: &[CpuArg]) -> Option<Fault> {
        self.opts.validate(args)
    }

    fn cpu(&self, args: &[CpuArg], _: &Meta) -> CpuStorage {
        let (rows, classes) = (args[0].shape.dim(0), args[0].shape.dim(1));
        let targets = self.opts.targets(args[1].data);
        let s = self.opts.label_smoothing;
        with_float!(args[0].data, T, x => {
            let loss: Vec<T> = (0..rows)
                .into_par_iter()
                .map_init(Vec::new, |exps, r| {
                    if self.opts.ignored(targets[r]) {
                        return T::ZERO;
                    }
                    let row = &x[r * classes..(r + 1) * classes];
                    let (m, sum) = exp_row(row, exps);
                    let lse = m.to_f64() + sum.ln();
                    let mean = sum_f64(row) / classes as f64;
                    // −log p_t = lse − x_t; the smoothed part is the mean of −log p_c
                    T::of((1.0 - s) * (lse - row[targets[r] as usize].to_f64()) + s * (lse - mean))
                })
                .collect();
            CpuStorage::from_vec(loss)
        })
    }

    fn gpu(&self, args: &[GpuArg], out: &Meta, rec: &mut Recorder) -> Result<GpuBuffer> {
        let (rows, classes) = (args[0].shape.dim(0), args[0].shape.dim(1));
        let y = rec.alloc_elems(out.shape.numel())?;
        let params = self.opts.params(rows, classes, rec)?;
        let kernel = kernel("forward", args[1].dtype);
        rec.dispatch(&kernel, &params, &[args[0].buf, args[1].buf], &[&y], Grid::Linear(params.rows))?;
        Ok(y)
    }

    fn backward(&self, g: &Grad) -> Vec<Option<Tensor>> {
        let (logits, target) = (&g.inputs[0], &g.inputs[1]);
        let op = CrossEntropyGrad { opts: self.opts };
        let dx = Tensor::from_op(
            op,
            [logits.clone(), target.clone(), g.grad.clone()],
            logits.shape().clone(),
            logits.dtype(),
        );
        vec![Some(dx), None]
    }

    fn tolerance(&self, args: &[CpuArg], _: &Meta) -> Tolerance {
        // log-sum-exp of the row (the GPU's exp and log a few ulps each), then lse − x_t: that
        // subtraction of rounded values cancels as the loss goes to 0, so the few ulps are of
        // |lse| + |x_t|, not of the loss
        let rows = self.opts.rows(args);
        let magnitude = rows.iter().map(|r| r.lse.abs() + r.target_logit.abs());
        let loss = rows.iter().map(|r| r.loss);
        ulps_summing(16.0 * cancellation(magnitude, loss), args[0].shape.dim(1))
    }
}

/// d(row loss)/d(logits) · upstream: (softmax − q) · g per row, q the smoothed one-hot target;
/// zero on ignored rows.
pub(crate) struct CrossEntropyGrad {
    opts: CrossEntropy,
}

impl Op for CrossEntropyGrad {
    fn name(&self) -> &'static str {
        "cross_entropy_grad"
    }

    fn describe(&self) -> String {
        format!("cross_entropy_grad({:?})", self.opts)
    }

    fn validate(&self, args: &[CpuArg]) -> Option<Fault> {
        self.opts.validate(args)
    }

    fn cpu(&self, args: &[CpuArg], _: &Meta) -> CpuStorage {
        let (rows, classes) = (args[0].shape.dim(0), args[0].shape.dim(1));
        let targets = self.opts.targets(args[1].data);
        let g = args[2].data.to_f64_vec();
        let s = self.opts.label_smoothing;
        with_float!(args[0].data, T, x => {
            let mut dx = cpu_pool::zeroed::<T>(x.len());
            dx.par_chunks_mut(classes.max(1)).enumerate().for_each(|(r, out)| {
                if rows == 0 || self.opts.ignored(targets[r]) {
                    return;
                }
                let row = &x[r * classes..(r + 1) * classes];
                // the row's exps straight into the output, then (p − q)·g in place
                let m = max_of(row);
                for (o, &v) in out.iter_mut().zip(row) {
                    *o = (v - m).exp_fast();
                }
                let scale = T::of(g[r] / sum_f64(out));
                let off_target = T::of(s / classes as f64 * g[r]);
                for o in out.iter_mut() {
                    *o = *o * scale - off_target;
                }
                out[targets[r] as usize] -= T::of((1.0 - s) * g[r]);
            });
            CpuStorage::from_vec(dx)
        })
    }

    fn gpu(&self, args: &[GpuArg], out: &Meta, rec: &mut Recorder) -> Result<GpuBuffer> {
        let (rows, classes) = (args[0].shape.dim(0), args[0].shape.dim(1));
        let dx = rec.alloc_elems(out.shape.numel())?;
        let params = self.opts.params(rows, classes, rec)?;
        let kernel = kernel("backward", args[1].dtype);
        let reads = [args[0].buf, args[1].buf, args[2].buf];
        rec.dispatch(&kernel, &params, &reads, &[&dx], Grid::Linear(params.rows))?;
        Ok(dx)
    }

    fn tolerance(&self, args: &[CpuArg], _: &Meta) -> Tolerance {
        // softmax of the row (exp a few ulps on the GPU, a sum, a division) minus the target
        // distribution: p_t − 1 cancels as p_t goes to 1, so the few ulps are of p + q
        let (classes, g) = (args[0].shape.dim(1), args[2].data.to_f64_vec());
        let rows = self.opts.rows(args);
        let s = self.opts.label_smoothing;
        let (mut magnitude, mut value) = (Vec::new(), Vec::new());
        for (row, g) in rows.iter().zip(&g) {
            for (c, p) in row.probs.iter().enumerate() {
                let on_target = if c as i64 == row.target { 1.0 - s } else { 0.0 };
                let q = s / classes as f64 + on_target;
                let g = if row.ignored { 0.0 } else { *g };
                magnitude.push((p + q) * g.abs());
                value.push((p - q) * g);
            }
        }
        ulps_summing(16.0 * cancellation(magnitude.into_iter(), value.into_iter()), classes)
    }
}

impl Tensor {
    /// Mean cross-entropy of logits (N, C) against class indices (N, i32 or u32).
    ///
    /// ```
    /// # use kiln::{Device, Tensor};
    /// let logits = Tensor::zeros([2, 4], &Device::Cpu);
    /// let target = Tensor::from_vec(vec![1i32, 3], [2], &Device::Cpu);
    /// let loss = logits.cross_entropy(&target).item::<f32>().unwrap();
    /// assert!((loss - 4f32.ln()).abs() < 1e-6);
    /// ```
    #[track_caller]
    pub fn cross_entropy(&self, target: &Tensor) -> Tensor {
        self.cross_entropy_with(target, CrossEntropy::default())
    }

    /// Mean cross-entropy with options (ignored rows are left out of the mean).
    #[track_caller]
    pub fn cross_entropy_with(&self, target: &Tensor, opts: CrossEntropy) -> Tensor {
        if crate::amp::widens(self) {
            return crate::amp::widen(self).cross_entropy_with(target, opts);
        }
        let per_row = self.cross_entropy_per_row(target, opts);
        match opts.ignore_index {
            None => per_row.mean_all(),
            Some(i) => {
                let kept =
                    target.ne(&Tensor::full(Shape::scalar(), i as f64, target.dtype(), &target.device()));
                per_row.sum_all() / kept.cast(self.dtype()).sum_all()
            }
        }
    }

    /// Per-row cross-entropy of logits (N, C) against class indices (N): shape (N), 0 on
    /// ignored rows.
    #[track_caller]
    pub fn cross_entropy_per_row(&self, target: &Tensor, opts: CrossEntropy) -> Tensor {
        if crate::amp::widens(self) {
            return crate::amp::widen(self).cross_entropy_per_row(target, opts);
        }
        if self.rank() != 2 || !self.dtype().is_float() {
            panic!(
                "cross_entropy: logits must be a float (N, C) tensor, found {} {}",
                self.shape(),
                self.dtype()
            );
        }
        if target.rank() != 1 || target.dims()[0] != self.dims()[0] || !target.dtype().is_index() {
            panic!(
                "cross_entropy: targets must be i32/u32 of shape [{}], found {} {}",
                self.dims()[0],
                target.shape(),
                target.dtype()
            );
        }
        if !(0.0..=1.0).contains(&opts.label_smoothing) {
            panic!("cross_entropy: label smoothing must be in [0, 1], got {}", opts.label_smoothing);
        }
        let op = CrossEntropyLoss { opts };
        Tensor::from_op(op, [self.clone(), target.clone()], Shape::from([self.dims()[0]]), self.dtype())
    }
}
