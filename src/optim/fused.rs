//! The fused update of one parameter tensor: new parameter and new optimizer state from the
//! old ones and the gradient, in one pass — on the GPU, one dispatch of `shaders/optim.wgsl`
//! per parameter tensor; on the CPU, the reference written here.
//!
//! Updates are not graph nodes: they replace the storage of the parameter and state tensors
//! (which every handle on them sees), as `Tensor::assign` does.

use crate::backend::Storage;
use crate::backend::cpu::CpuStorage;
use crate::backend::wgpu::{GpuBuffer, Grid, Kernel, Recorder, Shader, shader};
use crate::graph::check::Verdict;
use crate::ops::layout::u32_of;
use crate::{Device, Error, Result, Tensor};
use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::Arc;

static SHADER: Shader = shader!("optim.wgsl");

/// An update rule with its hyperparameters (PyTorch's definitions).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Rule {
    /// SGD with optional momentum (dampening 0), Nesterov momentum and L2 weight decay.
    Sgd {
        momentum: f64,
        nesterov: bool,
        weight_decay: f64,
    },
    /// AdaGrad.
    AdaGrad { eps: f64, weight_decay: f64 },
    /// RMSProp, optionally centered and with momentum.
    RmsProp {
        alpha: f64,
        eps: f64,
        momentum: f64,
        centered: bool,
        weight_decay: f64,
    },
    /// Adadelta.
    Adadelta {
        rho: f64,
        eps: f64,
        weight_decay: f64,
    },
    /// Adam (L2 weight decay) or, with `decoupled`, AdamW.
    Adam {
        beta1: f64,
        beta2: f64,
        eps: f64,
        weight_decay: f64,
        decoupled: bool,
    },
}

impl Rule {
    /// State tensors per parameter, with their names.
    pub fn slots(&self) -> &'static [&'static str] {
        match self {
            Rule::Sgd { .. } => &["momentum_buffer"],
            Rule::AdaGrad { .. } => &["sum"],
            Rule::RmsProp { .. } => &["square_avg", "momentum_buffer", "grad_avg"],
            Rule::Adadelta { .. } => &["square_avg", "acc_delta"],
            Rule::Adam { .. } => &["exp_avg", "exp_avg_sq"],
        }
    }

    fn entry(&self) -> &'static str {
        match self {
            Rule::Sgd { .. } => "sgd",
            Rule::AdaGrad { .. } => "adagrad",
            Rule::RmsProp { .. } => "rmsprop",
            Rule::Adadelta { .. } => "adadelta",
            Rule::Adam { .. } => "adam",
        }
    }

    /// The parameter block for step `t` (1-based) at learning rate `lr`.
    fn params(&self, n: usize, lr: f64, t: u64) -> Params {
        let mut p = Params {
            n: u32_of("optimizer step", n),
            first: (t == 1) as u32,
            lr: lr as f32,
            ..Params::default()
        };
        match *self {
            Rule::Sgd {
                momentum,
                nesterov,
                weight_decay,
            } => {
                p.a = momentum as f32;
                p.flag = nesterov as u32;
                p.weight_decay = weight_decay as f32;
            }
            Rule::AdaGrad { eps, weight_decay } => {
                p.eps = eps as f32;
                p.weight_decay = weight_decay as f32;
            }
            Rule::RmsProp {
                alpha,
                eps,
                momentum,
                centered,
                weight_decay,
            } => {
                p.a = alpha as f32;
                p.b = momentum as f32;
                p.eps = eps as f32;
                p.flag = centered as u32;
                p.weight_decay = weight_decay as f32;
            }
            Rule::Adadelta {
                rho,
                eps,
                weight_decay,
            } => {
                p.a = rho as f32;
                p.eps = eps as f32;
                p.weight_decay = weight_decay as f32;
            }
            Rule::Adam {
                beta1,
                beta2,
                eps,
                weight_decay,
                decoupled,
            } => {
                p.a = beta1 as f32;
                p.b = beta2 as f32;
                p.eps = eps as f32;
                p.flag = decoupled as u32;
                p.weight_decay = weight_decay as f32;
                p.bias1 = (1.0 - beta1.powi(t as i32)) as f32;
                p.bias2_sqrt = (1.0 - beta2.powi(t as i32)).sqrt() as f32;
            }
        }
        p
    }

    /// The reference update of one element: (parameter, gradient, state) → new values, in f64.
    pub fn apply(&self, lr: f64, t: u64, p: f64, g: f64, s: &mut [f64]) -> f64 {
        let first = t == 1;
        match *self {
            Rule::Sgd {
                momentum,
                nesterov,
                weight_decay,
            } => {
                let mut g = g + weight_decay * p;
                if momentum != 0.0 {
                    s[0] = if first { g } else { momentum * s[0] + g };
                    g = if nesterov { g + momentum * s[0] } else { s[0] };
                }
                p - lr * g
            }
            Rule::AdaGrad { eps, weight_decay } => {
                let g = g + weight_decay * p;
                s[0] += g * g;
                p - lr * g / (s[0].sqrt() + eps)
            }
            Rule::RmsProp {
                alpha,
                eps,
                momentum,
                centered,
                weight_decay,
            } => {
                let g = g + weight_decay * p;
                s[0] = alpha * s[0] + (1.0 - alpha) * g * g;
                let avg = if centered {
                    s[2] = alpha * s[2] + (1.0 - alpha) * g;
                    (s[0] - s[2] * s[2]).sqrt() + eps
                } else {
                    s[0].sqrt() + eps
                };
                if momentum > 0.0 {
                    s[1] = momentum * s[1] + g / avg;
                    p - lr * s[1]
                } else {
                    p - lr * g / avg
                }
            }
            Rule::Adadelta {
                rho,
                eps,
                weight_decay,
            } => {
                let g = g + weight_decay * p;
                s[0] = rho * s[0] + (1.0 - rho) * g * g;
                let delta = (s[1] + eps).sqrt() / (s[0] + eps).sqrt() * g;
                s[1] = rho * s[1] + (1.0 - rho) * delta * delta;
                p - lr * delta
            }
            Rule::Adam {
                beta1,
                beta2,
                eps,
                weight_decay,
                decoupled,
            } => {
                let (p, g) = if decoupled {
                    (p * (1.0 - lr * weight_decay), g)
                } else {
                    (p, g + weight_decay * p)
                };
                s[0] = beta1 * s[0] + (1.0 - beta1) * g;
                s[1] = beta2 * s[1] + (1.0 - beta2) * g * g;
                let bias1 = 1.0 - beta1.powi(t as i32);
                let bias2 = 1.0 - beta2.powi(t as i32);
                let denom = s[1].sqrt() / bias2.sqrt() + eps;
                p - lr / bias1 * s[0] / denom
            }
        }
    }
}

#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n: u32,
    first: u32,
    flag: u32,
    _pad: u32,
    lr: f32,
    a: f32,
    b: f32,
    eps: f32,
    weight_decay: f32,
    bias1: f32,
    bias2_sqrt: f32,
    _pad2: f32,
}

/// One parameter's update: its tensor, gradient and state tensors (realized, same device).
pub(crate) struct Update<'a> {
    pub param: &'a Tensor,
    pub grad: &'a Tensor,
    pub state: &'a [Tensor],
}

/// Applies `rule` at step `t` to every update, replacing parameter storages and updating the
/// state. GPU updates of one device are recorded together and submitted once.
pub(crate) fn apply_all(rule: &Rule, lr: f64, t: u64, updates: &[Update]) -> Result<()> {
    let mut recorders: HashMap<usize, Recorder> = HashMap::new();
    let mut pending: Vec<(&Update, GpuBuffer, Option<Before>)> = Vec::new();
    for u in updates {
        match u.param.device() {
            Device::Cpu => apply_cpu(rule, lr, t, u),
            Device::Gpu(n) => {
                let rec = match recorders.entry(n) {
                    Entry::Occupied(e) => e.into_mut(),
                    Entry::Vacant(e) => e.insert(Recorder::new(crate::backend::wgpu::context(n)?)),
                };
                // the state is updated in place: keep its old values for the cross-check
                let before = if rec.context().checked() {
                    Some(Before::of(u)?)
                } else {
                    None
                };
                pending.push((u, record_gpu(rule, lr, t, u, rec)?, before));
            }
        }
    }
    for (_, rec) in recorders {
        rec.submit()?;
    }
    for (u, new_param, before) in pending {
        if let Some(before) = before {
            before.check(rule, lr, t, u, &new_param)?;
        }
        u.param.0.set_storage(Storage::Gpu(Arc::new(new_param)));
    }
    Ok(())
}

/// The CPU reference over whole tensors.
fn apply_cpu(rule: &Rule, lr: f64, t: u64, u: &Update) {
    let host = |x: &Tensor| x.storage().expect("realized").cpu().to_f64_vec();
    let (new_p, new_state) = reference(
        rule,
        lr,
        t,
        &host(u.param),
        &host(u.grad),
        &u.state.iter().map(host).collect::<Vec<_>>(),
    );
    let store = |x: &Tensor, v: Vec<f64>| {
        let data = CpuStorage::from_f64(v, x.dtype());
        x.0.set_storage(Storage::Cpu(Arc::new(data)));
    };
    store(u.param, new_p);
    for (s, v) in u.state.iter().zip(new_state) {
        store(s, v);
    }
}

/// The updated parameter and state values, elementwise through [`Rule::apply`].
fn reference(
    rule: &Rule,
    lr: f64,
    t: u64,
    p: &[f64],
    g: &[f64],
    state: &[Vec<f64>],
) -> (Vec<f64>, Vec<Vec<f64>>) {
    let mut new_state: Vec<Vec<f64>> = state.to_vec();
    let mut slot = vec![0.0; state.len()];
    let new_p = (0..p.len())
        .map(|i| {
            for (k, s) in state.iter().enumerate() {
                slot[k] = s[i];
            }
            let v = rule.apply(lr, t, p[i], g[i], &mut slot);
            for (k, s) in new_state.iter_mut().enumerate() {
                s[i] = slot[k];
            }
            v
        })
        .collect();
    (new_p, new_state)
}

/// Records the fused kernel: reads the parameter and gradient, writes a new parameter buffer
/// (returned) and updates the state buffers in place.
fn record_gpu(rule: &Rule, lr: f64, t: u64, u: &Update, rec: &mut Recorder) -> Result<GpuBuffer> {
    let n = u.param.numel();
    let gpu = |x: &Tensor| match x.storage().expect("realized") {
        Storage::Gpu(b) => Ok(b),
        Storage::Cpu(_) => Err(Error::Invalid(format!(
            "an optimizer tensor is not on {}",
            u.param.device()
        ))),
    };
    let (param, grad) = (gpu(u.param)?, gpu(u.grad)?);
    let state: Vec<Arc<GpuBuffer>> = u.state.iter().map(gpu).collect::<Result<_>>()?;
    let new_param = rec.alloc_elems(n)?;
    let writes: Vec<&GpuBuffer> = std::iter::once(&new_param)
        .chain(state.iter().map(|b| b.as_ref()))
        .collect();
    let kernel = Kernel::new(&SHADER, rule.entry(), 2, writes.len() as u32);
    let params = rule.params(n, lr, t);
    rec.dispatch(
        &kernel,
        &params,
        &[&param, &grad],
        &writes,
        Grid::Linear(params.n.div_ceil(256)),
    )?;
    Ok(new_param)
}

/// The inputs of a GPU update, kept for the cross-check (`KILN_CHECK=1`).
struct Before {
    param: Vec<f64>,
    grad: Vec<f64>,
    state: Vec<Vec<f64>>,
}

impl Before {
    fn of(u: &Update) -> Result<Before> {
        Ok(Before {
            param: download(u.param)?,
            grad: download(u.grad)?,
            state: u.state.iter().map(download).collect::<Result<_>>()?,
        })
    }

    fn check(&self, rule: &Rule, lr: f64, t: u64, u: &Update, new_param: &GpuBuffer) -> Result<()> {
        let (p, s) = reference(rule, lr, t, &self.param, &self.grad, &self.state);
        let mut got = vec![
            new_param
                .download(u.param.dtype(), u.param.numel())?
                .to_f64_vec(),
        ];
        got.extend(u.state.iter().map(download).collect::<Result<Vec<_>>>()?);
        for (want, got) in std::iter::once(p).chain(s).zip(got) {
            let v = Verdict::of(&want, &got);
            if v.rel_err > 1e-5 || v.nonfinite.is_some() {
                return Err(Error::CheckFailed(format!(
                    "cross-check failed: {rule:?} update of a {} parameter disagrees with the CPU reference: relative error {:.3e} {}",
                    u.param.shape(),
                    v.rel_err,
                    v.nonfinite.unwrap_or_default()
                )));
            }
        }
        Ok(())
    }
}

fn download(x: &Tensor) -> Result<Vec<f64>> {
    Ok(x.storage()
        .expect("realized")
        .gpu()
        .download(x.dtype(), x.numel())?
        .to_f64_vec())
}
