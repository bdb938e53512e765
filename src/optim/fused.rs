//! The fused update of one parameter tensor: new parameter and new optimizer state from the
//! old ones and the gradient, in one pass — on the GPU, one dispatch of `shaders/optim.wgsl`
//! per parameter tensor; on the CPU, the reference written here.
//!
//! Updates are not graph nodes: they replace the storage of the parameter and state tensors
//! (which every handle on them sees), as `Tensor::assign` does.

use crate::backend::Storage;
use crate::backend::cpu::CpuStorage;
use crate::backend::wgpu::{GpuBuffer, Grid, Kernel, Recorder, Shader, shader};
use crate::dtype::Float;
use crate::graph::check::Verdict;
use crate::ops::layout::u32_of;
use crate::{DType, Device, Error, Result, Tensor};
use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::Arc;

static SHADER: Shader = shader!("optim.wgsl");

/// An update rule with its hyperparameters (PyTorch's definitions).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Rule {
    /// SGD with optional momentum (dampening 0), Nesterov momentum and L2 weight decay.
    Sgd { momentum: f64, nesterov: bool, weight_decay: f64 },
    /// AdaGrad.
    AdaGrad { eps: f64, weight_decay: f64 },
    /// RMSProp, optionally centered and with momentum.
    RmsProp { alpha: f64, eps: f64, momentum: f64, centered: bool, weight_decay: f64 },
    /// Adadelta.
    Adadelta { rho: f64, eps: f64, weight_decay: f64 },
    /// Adam (L2 weight decay) or, with `decoupled`, AdamW.
    Adam { beta1: f64, beta2: f64, eps: f64, weight_decay: f64, decoupled: bool },
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

    /// The GPU parameter block for step `t` (1-based) at learning rate `lr`.
    fn params(&self, n: usize, lr: f64, t: u64) -> Result<Params> {
        let h = self.hyper::<f32>(lr, t);
        let flag = match *self {
            Rule::Sgd { nesterov, .. } => nesterov,
            Rule::RmsProp { centered, .. } => centered,
            Rule::Adam { decoupled, .. } => decoupled,
            Rule::AdaGrad { .. } | Rule::Adadelta { .. } => false,
        };
        Ok(Params {
            n: u32_of("optimizer step", n)?,
            first: h.first as u32,
            flag: flag as u32,
            _pad: 0,
            lr: h.lr,
            a: h.a,
            b: h.b,
            eps: h.eps,
            weight_decay: h.weight_decay,
            bias1: h.bias1,
            bias2_sqrt: h.bias2_sqrt,
            _pad2: 0.0,
        })
    }

    /// The constants of step `t` (1-based) at learning rate `lr`, in the parameter's type.
    fn hyper<T: Float>(&self, lr: f64, t: u64) -> Hyper<T> {
        let (a, b, eps, weight_decay) = match *self {
            Rule::Sgd { momentum, weight_decay, .. } => (momentum, 0.0, 0.0, weight_decay),
            Rule::AdaGrad { eps, weight_decay } => (0.0, 0.0, eps, weight_decay),
            Rule::RmsProp { alpha, eps, momentum, weight_decay, .. } => (alpha, momentum, eps, weight_decay),
            Rule::Adadelta { rho, eps, weight_decay } => (rho, 0.0, eps, weight_decay),
            Rule::Adam { beta1, beta2, eps, weight_decay, .. } => (beta1, beta2, eps, weight_decay),
        };
        let (bias1, bias2) = (1.0 - a.powi(t as i32), 1.0 - b.powi(t as i32));
        Hyper {
            lr: T::of(lr),
            a: T::of(a),
            b: T::of(b),
            eps: T::of(eps),
            weight_decay: T::of(weight_decay),
            bias1: T::of(bias1),
            bias2_sqrt: T::of(bias2.sqrt()),
            first: t == 1,
        }
    }
}

// The rules, one element at a time (PyTorch's formulas): (parameter, gradient, state) → new
// parameter, with the state updated in place. Small and inlined into one loop per rule.

#[inline(always)]
fn sgd<T: Float>(h: &Hyper<T>, momentum: bool, nesterov: bool, p: T, g: T, s: &mut [T; 3]) -> T {
    let mut g = g + h.weight_decay * p;
    if momentum {
        s[0] = if h.first { g } else { h.a * s[0] + g };
        g = if nesterov { g + h.a * s[0] } else { s[0] };
    }
    p - h.lr * g
}

#[inline(always)]
fn adagrad<T: Float>(h: &Hyper<T>, p: T, g: T, s: &mut [T; 3]) -> T {
    let g = g + h.weight_decay * p;
    s[0] += g * g;
    p - h.lr * g / (s[0].sqrt() + h.eps)
}

#[inline(always)]
fn rmsprop<T: Float>(h: &Hyper<T>, momentum: bool, centered: bool, p: T, g: T, s: &mut [T; 3]) -> T {
    let one = T::ONE;
    let g = g + h.weight_decay * p;
    s[0] = h.a * s[0] + (one - h.a) * g * g;
    let avg = if centered {
        s[2] = h.a * s[2] + (one - h.a) * g;
        (s[0] - s[2] * s[2]).sqrt() + h.eps
    } else {
        s[0].sqrt() + h.eps
    };
    if momentum {
        s[1] = h.b * s[1] + g / avg;
        p - h.lr * s[1]
    } else {
        p - h.lr * g / avg
    }
}

#[inline(always)]
fn adadelta<T: Float>(h: &Hyper<T>, p: T, g: T, s: &mut [T; 3]) -> T {
    let one = T::ONE;
    let g = g + h.weight_decay * p;
    s[0] = h.a * s[0] + (one - h.a) * g * g;
    let delta = (s[1] + h.eps).sqrt() / (s[0] + h.eps).sqrt() * g;
    s[1] = h.a * s[1] + (one - h.a) * delta * delta;
    p - h.lr * delta
}

#[inline(always)]
fn adam<T: Float>(h: &Hyper<T>, decoupled: bool, p: T, g: T, s: &mut [T; 3]) -> T {
    let one = T::ONE;
    let (p, g) = if decoupled { (p * (one - h.lr * h.weight_decay), g) } else { (p, g + h.weight_decay * p) };
    s[0] = h.a * s[0] + (one - h.a) * g;
    s[1] = h.b * s[1] + (one - h.b) * g * g;
    p - h.lr / h.bias1 * s[0] / (s[1].sqrt() / h.bias2_sqrt + h.eps)
}

/// The constants of one step (see [`Rule::hyper`]).
struct Hyper<T> {
    lr: T,
    a: T,
    b: T,
    eps: T,
    weight_decay: T,
    bias1: T,
    bias2_sqrt: T,
    first: bool,
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
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
                let before = if rec.context().checked() { Some(Before::of(u)?) } else { None };
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

/// The CPU reference over whole tensors, in the parameter's float type.
fn apply_cpu(rule: &Rule, lr: f64, t: u64, u: &Update) {
    let storage = |x: &Tensor| x.storage().expect("realized");
    let (p, g) = (storage(u.param), storage(u.grad));
    let state: Vec<_> = u.state.iter().map(storage).collect();
    fn run<T: Float + Wrapped>(
        rule: &Rule,
        lr: f64,
        t: u64,
        p: &Storage,
        g: &Storage,
        state: &[Storage],
    ) -> (CpuStorage, Vec<CpuStorage>) {
        let slices: Vec<&[T]> = state.iter().map(|s| s.cpu().as_slice::<T>()).collect();
        let (new_p, new_state) =
            update(rule, &rule.hyper::<T>(lr, t), p.cpu().as_slice::<T>(), g.cpu().as_slice::<T>(), &slices);
        (CpuStorage::from_vec(new_p), new_state.into_iter().map(CpuStorage::from_vec).collect())
    }
    let (new_p, new_state) = match u.param.dtype() {
        DType::F32 => run::<f32>(rule, lr, t, &p, &g, &state),
        DType::F64 => run::<f64>(rule, lr, t, &p, &g, &state),
        other => panic!("optimizer: {other} parameters cannot be trained"),
    };
    u.param.0.set_storage(Storage::Cpu(Arc::new(new_p)));
    for (s, v) in u.state.iter().zip(new_state) {
        s.0.set_storage(Storage::Cpu(Arc::new(v)));
    }
}

/// Float types the CPU update runs in.
trait Wrapped: crate::Element {}
impl Wrapped for f32 {}
impl Wrapped for f64 {}

/// The updated parameter and state, elementwise. The rule is matched once, outside the loop,
/// so each loop is one rule's straight-line arithmetic.
fn update<T: Float>(rule: &Rule, h: &Hyper<T>, p: &[T], g: &[T], state: &[&[T]]) -> (Vec<T>, Vec<Vec<T>>) {
    #[inline(always)]
    fn run<T: Float>(
        step: impl Fn(T, T, &mut [T; 3]) -> T,
        p: &[T],
        g: &[T],
        state: &[&[T]],
    ) -> (Vec<T>, Vec<Vec<T>>) {
        let mut new_p = vec![T::ZERO; p.len()];
        let mut new_state: Vec<Vec<T>> = state.iter().map(|s| s.to_vec()).collect();
        let inputs = new_p.iter_mut().zip(p).zip(g);
        // one loop per slot count, zipped so that it compiles to straight-line code
        match new_state.as_mut_slice() {
            [s0] => inputs.zip(s0.iter_mut()).for_each(|(((o, &p), &g), s0)| {
                let mut slot = [*s0, T::ZERO, T::ZERO];
                *o = step(p, g, &mut slot);
                *s0 = slot[0];
            }),
            [s0, s1] => inputs.zip(s0.iter_mut().zip(s1.iter_mut())).for_each(|(((o, &p), &g), (s0, s1))| {
                let mut slot = [*s0, *s1, T::ZERO];
                *o = step(p, g, &mut slot);
                (*s0, *s1) = (slot[0], slot[1]);
            }),
            [s0, s1, s2] => inputs.zip(s0.iter_mut().zip(s1.iter_mut().zip(s2.iter_mut()))).for_each(
                |(((o, &p), &g), (s0, (s1, s2)))| {
                    let mut slot = [*s0, *s1, *s2];
                    *o = step(p, g, &mut slot);
                    (*s0, *s1, *s2) = (slot[0], slot[1], slot[2]);
                },
            ),
            _ => unreachable!("rules have one to three state slots"),
        }
        (new_p, new_state)
    }
    match *rule {
        Rule::Sgd { momentum, nesterov, .. } => {
            let m = momentum != 0.0;
            run(|p, g, s| sgd(h, m, nesterov, p, g, s), p, g, state)
        }
        Rule::AdaGrad { .. } => run(|p, g, s| adagrad(h, p, g, s), p, g, state),
        Rule::RmsProp { momentum, centered, .. } => {
            let m = momentum > 0.0;
            run(|p, g, s| rmsprop(h, m, centered, p, g, s), p, g, state)
        }
        Rule::Adadelta { .. } => run(|p, g, s| adadelta(h, p, g, s), p, g, state),
        Rule::Adam { decoupled, .. } => run(|p, g, s| adam(h, decoupled, p, g, s), p, g, state),
    }
}

/// Records the fused kernel: reads the parameter and gradient, writes a new parameter buffer
/// (returned) and updates the state buffers in place.
fn record_gpu(rule: &Rule, lr: f64, t: u64, u: &Update, rec: &mut Recorder) -> Result<GpuBuffer> {
    let n = u.param.numel();
    let gpu = |x: &Tensor| match x.storage().expect("realized") {
        Storage::Gpu(b) => Ok(b),
        Storage::Cpu(_) => Err(Error::Invalid(format!("an optimizer tensor is not on {}", u.param.device()))),
    };
    let (param, grad) = (gpu(u.param)?, gpu(u.grad)?);
    let state: Vec<Arc<GpuBuffer>> = u.state.iter().map(gpu).collect::<Result<_>>()?;
    let new_param = rec.alloc_elems(n)?;
    let writes: Vec<&GpuBuffer> =
        std::iter::once(&new_param).chain(state.iter().map(|b| b.as_ref())).collect();
    let kernel = Kernel::new(&SHADER, rule.entry(), 2, writes.len() as u32);
    let params = rule.params(n, lr, t)?;
    rec.dispatch(&kernel, &params, &[&param, &grad], &writes, Grid::Linear(params.n.div_ceil(256)))?;
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
        let state: Vec<&[f64]> = self.state.iter().map(Vec::as_slice).collect();
        let (p, s) = update(rule, &rule.hyper::<f64>(lr, t), &self.param, &self.grad, &state);
        let mut got = vec![new_param.download(u.param.dtype(), u.param.numel())?.to_f64_vec()];
        got.extend(u.state.iter().map(download).collect::<Result<Vec<_>>>()?);
        for (want, got) in std::iter::once(p).chain(s).zip(got) {
            let v = Verdict::of(&want, &got);
            if v.rel_err > 1e-5 || v.mismatch.is_some() {
                return Err(Error::CheckFailed(format!(
                    "cross-check failed: {rule:?} update of a {} parameter disagrees with the CPU reference: relative error {:.3e} {}",
                    u.param.shape(),
                    v.rel_err,
                    v.mismatch.unwrap_or_default()
                )));
            }
        }
        Ok(())
    }
}

fn download(x: &Tensor) -> Result<Vec<f64>> {
    Ok(x.storage().expect("realized").gpu().download(x.dtype(), x.numel())?.to_f64_vec())
}
