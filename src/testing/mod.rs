//! The op case table and the tools that read it: random inputs, the f64 gradient check, and the
//! CPU-versus-GPU parity check. kiln's tests, benchmarks and the benchmark program all use
//! these, so an op is covered everywhere by adding its rows to [`cases::cases`].

pub mod cases;

use crate::graph::check::Verdict;
use crate::rng::RandomKey;
use crate::{DType, Device, Result, Tensor};
pub use cases::{Case, cases};

/// Where a case draws an input's values from.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Domain {
    /// Standard normal.
    Normal,
    /// Uniform on [lo, hi).
    Range(f64, f64),
    /// Uniform magnitude in [0.5, 2) with a random sign: safe to divide by.
    AwayFromZero,
    /// Integers in [-3, 3] as floats: makes comparisons and ties happen.
    SmallInts,
    /// A bool mask, true with probability ½.
    Bool,
    /// i32 indices in [0, size of dimension `axis` of input `of`).
    Index { of: usize, axis: usize },
}

/// How the case table samples a unary op: input domain and parameters.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sample {
    /// The input domain.
    pub domain: Domain,
    /// The op's first parameter.
    pub a: f64,
    /// The op's second parameter.
    pub b: f64,
}

/// One input of a case.
#[derive(Clone, Copy, Debug)]
pub struct Input {
    /// Where its values come from.
    pub domain: Domain,
    /// Whether gradients are checked with respect to it.
    pub grad: bool,
}

impl Input {
    /// A float input that gradients are checked for.
    pub const fn float(domain: Domain) -> Input {
        Input { domain, grad: true }
    }
    /// An input without gradient (indices, masks, constants).
    pub const fn fixed(domain: Domain) -> Input {
        Input { domain, grad: false }
    }
}

/// The relative error ‖got − want‖ / ‖want‖ — infinite when NaN/Inf appears on one side only or
/// the lengths differ — and a description of such a mismatch.
pub fn compare(want: &[f64], got: &[f64]) -> (f64, Option<String>) {
    let v = Verdict::of(want, got);
    (v.rel_err, v.mismatch)
}

/// Draws a case's inputs for one shape set: floats in `float`, on `device`. The same seed gives
/// the same values whatever the device or float type.
pub fn make_inputs(
    case: &Case,
    shapes: &[Vec<usize>],
    float: DType,
    device: &Device,
    seed: u64,
) -> Vec<Tensor> {
    case.inputs
        .iter()
        .zip(shapes)
        .enumerate()
        .map(|(k, (input, shape))| {
            let key = RandomKey { seed, stream: k as u64 };
            let n: usize = shape.iter().product();
            let u = |i: usize| key.uniform(i as u64) as f64;
            let host = match input.domain {
                Domain::Index { of, axis } => {
                    let bound = shapes[of][axis].max(1);
                    let v: Vec<i32> = (0..n).map(|i| (u(i) * bound as f64) as i32).collect();
                    Tensor::from_vec(v, shape.clone(), &Device::Cpu)
                }
                Domain::Bool => {
                    let v: Vec<bool> = (0..n).map(|i| u(i) < 0.5).collect();
                    Tensor::from_vec(v, shape.clone(), &Device::Cpu)
                }
                domain => {
                    let v: Vec<f64> = (0..n)
                        .map(|i| match domain {
                            Domain::Normal => key.normal(i as u64) as f64,
                            Domain::Range(lo, hi) => lo + (hi - lo) * u(i),
                            Domain::AwayFromZero => {
                                let m = 0.5 + 1.5 * u(2 * i);
                                if u(2 * i + 1) < 0.5 { -m } else { m }
                            }
                            Domain::SmallInts => (u(i) * 7.0).floor() - 3.0,
                            _ => unreachable!("handled above"),
                        })
                        .collect();
                    // round through f32 so that f64 and f32 inputs hold the same values
                    let v: Vec<f64> = v.into_iter().map(|x| x as f32 as f64).collect();
                    Tensor::from_vec(v, shape.clone(), &Device::Cpu).cast(float)
                }
            };
            let t = host.to(device);
            t.realize().expect("inputs realize");
            t
        })
        .collect()
}

/// Fixed random weights for reducing an output to a scalar loss Σ r·y, so that every output
/// element's gradient matters.
fn projection(out: &Tensor, seed: u64) -> Tensor {
    let key = RandomKey { seed, stream: 1_000 };
    let r: Vec<f64> = (0..out.numel()).map(|i| 0.5 + key.uniform(i as u64) as f64).collect();
    Tensor::from_vec(r, out.shape().clone(), &Device::Cpu).cast(out.dtype()).to(&out.device())
}

/// The result of a gradient check: per checked input, the relative error of the analytic
/// gradient against central finite differences.
#[derive(Debug)]
pub struct GradcheckReport {
    /// (input index, relative error).
    pub errors: Vec<(usize, f64)>,
}

/// Checks a case's gradients in f64 on the CPU against central differences with step `eps`.
pub fn gradcheck(case: &Case, shapes: &[Vec<usize>], seed: u64, eps: f64) -> Result<GradcheckReport> {
    let device = Device::Cpu;
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
    let out = (case.build)(&leaves, &device);
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

/// The result of a parity check: relative errors of the GPU against the CPU reference.
#[derive(Debug)]
pub struct ParityReport {
    /// Forward output.
    pub forward: f64,
    /// NaN/Inf on one side only, forward.
    pub forward_nonfinite: Option<String>,
    /// (input index, relative error of its gradient).
    pub grads: Vec<(usize, f64)>,
}

/// Runs a case on the CPU and on `gpu` from the same f32 inputs and compares the outputs and
/// the gradients of Σ r·y.
pub fn parity(case: &Case, shapes: &[Vec<usize>], gpu: &Device, seed: u64) -> Result<ParityReport> {
    // (forward values, gradient values per input)
    type Run = (Vec<f64>, Vec<Option<Vec<f64>>>);
    let run = |device: &Device| -> Result<Run> {
        let inputs: Vec<Tensor> = make_inputs(case, shapes, DType::F32, device, seed)
            .into_iter()
            .zip(&case.inputs)
            .map(|(t, i)| if i.grad && case.differentiable { t.requires_grad_() } else { t })
            .collect();
        let out = (case.build)(&inputs, device);
        let forward = out.to_f64_vec()?;
        let mut grads = vec![None; inputs.len()];
        if case.differentiable && out.requires_grad() {
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

/// The full WGSL source (prelude included) of every file in `shaders/` as written, keyed by file
/// name, and of every specialization the ops compile, keyed by kernel: for validating them all
/// without a GPU.
pub fn shader_sources() -> Vec<(String, String)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("shaders");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("shaders/ exists")
        .map(|e| e.expect("readable").path())
        .filter(|p| p.extension().is_some_and(|e| e == "wgsl") && !p.ends_with("common.wgsl"))
        .collect();
    files.sort();
    let read = |p: &std::path::Path| std::fs::read_to_string(p).expect("readable shader");
    // a library (`// @library`) is validated inside the shaders that `// @requires` it
    let mut out: Vec<(String, String)> = files
        .iter()
        .filter_map(|p| {
            let text = read(p);
            if text.starts_with("// @library") {
                return None;
            }
            let name = p.file_name().expect("a file").to_string_lossy().into_owned();
            let library = text
                .lines()
                .next()
                .and_then(|l| l.strip_prefix("// @requires "))
                .map(|lib| read(&dir.join(lib.trim())))
                .unwrap_or_default();
            Some((name, format!("{}\n{library}\n{text}", crate::backend::wgpu::PRELUDE)))
        })
        .collect();
    out.extend(crate::ops::kernel_variants().iter().map(|k| (k.key(), k.source())));
    out
}

/// The op names (see [`crate::ops::op_set`]) appearing in the forward and backward graphs of a
/// case, recorded for `device` (nothing is computed).
pub fn ops_used(case: &Case, shapes: &[Vec<usize>], device: &Device) -> Vec<&'static str> {
    let inputs: Vec<Tensor> = make_inputs(case, shapes, DType::F32, &Device::Cpu, 0)
        .into_iter()
        .zip(&case.inputs)
        .map(|(t, i)| {
            let t = t.to(device);
            if i.grad && case.differentiable && t.dtype().is_float() {
                t.detach().requires_grad_()
            } else {
                t
            }
        })
        .collect();
    let out = (case.build)(&inputs, device);
    let mut roots = vec![out.clone()];
    if case.differentiable && out.requires_grad() {
        let grads = out.sum_all().backward();
        roots.extend(inputs.iter().filter_map(|t| grads.get(t).cloned()));
    }
    let mut names = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let mut stack = roots;
    while let Some(t) = stack.pop() {
        if !seen.insert(t.id()) {
            continue;
        }
        names.push(t.0.op.name());
        stack.extend(t.0.inputs().iter().cloned());
    }
    names
}
