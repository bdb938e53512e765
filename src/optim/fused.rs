//! The fused update of parameter tensors: new parameter and new optimizer state from the old
//! ones and the gradient, in one pass — on the GPU, one dispatch of `shaders/optim.wgsl` for up
//! to [`MAX_TENSORS`] tensors of one parameter group (as many as the adapter lets one kernel
//! bind); on the CPU, the reference written here.
//!
//! Updates are not graph nodes: they replace the storage of the parameter and state tensors
//! (which every handle on them sees), as `Tensor::assign` does.

use crate::backend::Storage;
use crate::backend::cpu::{CpuData, CpuStorage};
use crate::backend::wgpu::{GpuBuffer, Grid, Kernel, Recorder, Shader, shader};
use crate::dtype::Float;
use crate::graph::check::Verdict;
use crate::ops::layout::u32_of;
use crate::{DType, Device, Error, Result, Tensor};
use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

static SHADER: Shader = shader!("optim.wgsl");

/// Test-only fault injection: the next GPU update computes 1 − β from β rounded to f32 (a bug
/// kiln once had), to prove that the cross-check's tolerance is tight enough to catch it.
static INJECT_F32_CONSTANTS: AtomicBool = AtomicBool::new(false);

/// Makes the next fused GPU update compute its 1 − β in f32 (for testing the cross-check).
#[doc(hidden)]
pub fn inject_f32_constants_once() {
    INJECT_F32_CONSTANTS.store(true, Ordering::SeqCst);
}

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

    /// The rule's function in `optim.wgsl`.
    fn function(&self) -> &'static str {
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
        let mut h = self.hyper::<f32>(lr, t);
        if INJECT_F32_CONSTANTS.swap(false, Ordering::SeqCst) {
            // the old bug, for the cross-check's test: 1 − β computed from β rounded to f32
            (h.one_minus_a, h.one_minus_b) = (1.0 - h.a, 1.0 - h.b);
        }
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
            one_minus_a: h.one_minus_a,
            one_minus_b: h.one_minus_b,
            eps: h.eps,
            weight_decay: h.weight_decay,
            step_size: h.step_size,
            bias2_sqrt: h.bias2_sqrt,
            decay: h.decay,
            _pad2: [0.0; 2],
            ends: [0; MAX_TENSORS],
        })
    }

    /// The constants of step `t` (1-based) at learning rate `lr`, in the parameter's type.
    ///
    /// Every constant is computed in f64 and rounded once, as PyTorch computes them in Python
    /// floats: 1 − β from a β already rounded to f32 is off by up to 1.3e-5 relative for β = 0.999
    /// (0.999 rounds to 0.99900001), which would scale every step's second moment by that much.
    fn hyper<T: Float>(&self, lr: f64, t: u64) -> Hyper<T> {
        let (a, b, eps, weight_decay) = match *self {
            Rule::Sgd { momentum, weight_decay, .. } => (momentum, 0.0, 0.0, weight_decay),
            Rule::AdaGrad { eps, weight_decay } => (0.0, 0.0, eps, weight_decay),
            Rule::RmsProp { alpha, eps, momentum, weight_decay, .. } => (alpha, momentum, eps, weight_decay),
            Rule::Adadelta { rho, eps, weight_decay } => (rho, 0.0, eps, weight_decay),
            Rule::Adam { beta1, beta2, eps, weight_decay, .. } => (beta1, beta2, eps, weight_decay),
        };
        let steps = i32::try_from(t).unwrap_or(i32::MAX);
        let (bias1, bias2) = (1.0 - a.powi(steps), 1.0 - b.powi(steps));
        Hyper {
            lr: T::of(lr),
            a: T::of(a),
            b: T::of(b),
            one_minus_a: T::of(1.0 - a),
            one_minus_b: T::of(1.0 - b),
            eps: T::of(eps),
            weight_decay: T::of(weight_decay),
            step_size: T::of(lr / bias1),
            bias2_sqrt: T::of(bias2.sqrt()),
            decay: T::of(1.0 - lr * weight_decay),
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
    let g = g + h.weight_decay * p;
    s[0] = h.a * s[0] + h.one_minus_a * g * g;
    let avg = if centered {
        s[2] = s[2] + h.one_minus_a * (g - s[2]);
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
    let g = g + h.weight_decay * p;
    s[0] = h.a * s[0] + h.one_minus_a * g * g;
    let delta = (s[1] + h.eps).sqrt() / (s[0] + h.eps).sqrt() * g;
    s[1] = h.a * s[1] + h.one_minus_a * delta * delta;
    p - h.lr * delta
}

#[inline(always)]
fn adam<T: Float>(h: &Hyper<T>, decoupled: bool, p: T, g: T, s: &mut [T; 3]) -> T {
    let (p, g) = if decoupled { (p * h.decay, g) } else { (p, g + h.weight_decay * p) };
    // PyTorch: exp_avg.lerp_(g, 1 − β1); exp_avg_sq.mul_(β2).addcmul_(g, g, 1 − β2)
    s[0] = s[0] + h.one_minus_a * (g - s[0]);
    s[1] = h.b * s[1] + h.one_minus_b * g * g;
    p - h.step_size * s[0] / (s[1].sqrt() / h.bias2_sqrt + h.eps)
}

/// The constants of one step (see [`Rule::hyper`]).
struct Hyper<T> {
    lr: T,
    /// SGD momentum, RMSProp alpha, Adadelta rho, Adam β1.
    a: T,
    /// RMSProp momentum, Adam β2.
    b: T,
    one_minus_a: T,
    one_minus_b: T,
    eps: T,
    weight_decay: T,
    /// Adam: lr / (1 − β1ᵗ).
    step_size: T,
    /// Adam: √(1 − β2ᵗ).
    bias2_sqrt: T,
    /// AdamW: 1 − lr·weight_decay.
    decay: T,
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
    one_minus_a: f32,
    one_minus_b: f32,
    eps: f32,
    weight_decay: f32,
    step_size: f32,
    bias2_sqrt: f32,
    decay: f32,
    _pad2: [f32; 2],
    /// Where each tensor's elements end in the range the dispatch covers.
    ends: [u32; MAX_TENSORS],
}

/// The most parameter tensors one dispatch updates (their ends fill the parameter block's last
/// 64 bytes).
pub(crate) const MAX_TENSORS: usize = 16;

/// The template's binding and body lines, which the generated ones replace.
const TEMPLATE_BINDINGS: &str = "@group(0) @binding(1) var<storage, read> grad0: array<f32>; @group(0) @binding(2) var<storage, read_write> param0: array<f32>; @group(0) @binding(3) var<storage, read_write> s0_0: array<f32>; // @BINDINGS";
const TEMPLATE_BODY: &str = "    if i < end(0u) { let j = i; s.x = s0_0[j]; param0[j] = sgd(param0[j], grad0[j], &s); s0_0[j] = s.x; } // @BODY";

/// The kernel that updates `tensors` parameter tensors by `rule`: the gradients are read
/// (bindings 1..=tensors), then each tensor's parameter and state slots are written.
fn kernel(rule: &Rule, tensors: usize) -> Kernel<'static> {
    use std::fmt::Write;
    let slots = rule.slots().len();
    let mut bindings = String::new();
    for k in 0..tensors {
        writeln!(bindings, "@group(0) @binding({}) var<storage, read> grad{k}: array<f32>;", 1 + k).unwrap();
    }
    for k in 0..tensors {
        let first = 1 + tensors + k * (1 + slots);
        writeln!(bindings, "@group(0) @binding({first}) var<storage, read_write> param{k}: array<f32>;")
            .unwrap();
        for j in 0..slots {
            let binding = first + 1 + j;
            writeln!(
                bindings,
                "@group(0) @binding({binding}) var<storage, read_write> s{j}_{k}: array<f32>;"
            )
            .unwrap();
        }
    }
    let lanes = ["x", "y", "z"];
    let mut body = String::from("    ");
    for k in 0..tensors {
        match k {
            0 => body.push_str("if i < end(0u) {\n        let j = i;\n"),
            _ => write!(body, " else if i < end({k}u) {{\n        let j = i - end({}u);\n", k - 1).unwrap(),
        }
        for (j, lane) in lanes.iter().take(slots).enumerate() {
            writeln!(body, "        s.{lane} = s{j}_{k}[j];").unwrap();
        }
        writeln!(body, "        param{k}[j] = {}(param{k}[j], grad{k}[j], &s);", rule.function()).unwrap();
        for (j, lane) in lanes.iter().take(slots).enumerate() {
            writeln!(body, "        s{j}_{k}[j] = s.{lane};").unwrap();
        }
        body.push_str("    }");
    }
    Kernel::new(&SHADER, "main", tensors as u32, (tensors * (1 + slots)) as u32)
        .with(TEMPLATE_BINDINGS, bindings)
        .with(TEMPLATE_BODY, body)
}

/// The kernels of every rule for one and for three tensors (for the shader validation test).
pub(crate) fn variants() -> Vec<Kernel<'static>> {
    let rules = [
        Rule::Sgd { momentum: 0.9, nesterov: true, weight_decay: 0.0 },
        Rule::AdaGrad { eps: 1e-10, weight_decay: 0.0 },
        Rule::RmsProp { alpha: 0.99, eps: 1e-8, momentum: 0.0, centered: false, weight_decay: 0.0 },
        Rule::Adadelta { rho: 0.9, eps: 1e-6, weight_decay: 0.0 },
        Rule::adam(),
    ];
    rules.iter().flat_map(|r| [kernel(r, 1), kernel(r, 3)]).collect()
}

/// How many tensors one dispatch of `rule` may update on GPU `n`: each binds its gradient, its
/// parameter and its state slots, within the adapter's storage buffers per shader stage.
fn tensors_per_dispatch(n: usize, rule: &Rule) -> Result<usize> {
    let buffers = crate::backend::wgpu::context(n)?.limits.max_storage_buffers_per_shader_stage as usize;
    Ok((buffers / (2 + rule.slots().len())).clamp(1, MAX_TENSORS))
}

/// One parameter's update: its tensor, gradient and state tensors (realized, same device), with
/// the rule and learning rate of its parameter group.
pub(crate) struct Update<'a> {
    pub param: &'a Tensor,
    pub grad: &'a Tensor,
    pub state: &'a [Tensor],
    pub rule: Rule,
    pub lr: f64,
}

/// Applies every update at step `t`, replacing parameter storages and updating the state. GPU
/// updates of one device, rule and learning rate share dispatches, as many tensors to one as it
/// can bind; all of one device are recorded together and submitted once.
pub(crate) fn apply_all(t: u64, updates: &[Update]) -> Result<()> {
    let mut batches: Vec<(usize, Vec<&Update>)> = Vec::new();
    for u in updates {
        match u.param.device() {
            Device::Cpu => apply_cpu(&u.rule, u.lr, t, u),
            Device::Gpu(n) => {
                // `KILN_FUSE=0` (`set_fusion(false)`) updates one tensor per dispatch
                let limit = if crate::fusion_enabled() { tensors_per_dispatch(n, &u.rule)? } else { 1 };
                let joins = |(m, b): &&mut (usize, Vec<&Update>)| {
                    *m == n && b[0].rule == u.rule && b[0].lr == u.lr && b.len() < limit
                };
                match batches.iter_mut().find(joins) {
                    Some((_, batch)) => batch.push(u),
                    None => batches.push((n, vec![u])),
                }
            }
        }
    }
    let mut recorders: HashMap<usize, Recorder> = HashMap::new();
    let mut pending: Vec<(&Update, Arc<GpuBuffer>, Option<Before>)> = Vec::new();
    for (n, batch) in batches {
        let rec = match recorders.entry(n) {
            Entry::Occupied(e) => e.into_mut(),
            Entry::Vacant(e) => e.insert(Recorder::new(crate::backend::wgpu::context(n)?)),
        };
        // the parameters and states are updated in place: keep their old values for the
        // cross-check
        let befores: Vec<Option<Before>> = match rec.context().checked() {
            true => batch.iter().map(|u| Before::of(u).map(Some)).collect::<Result<_>>()?,
            false => batch.iter().map(|_| None).collect(),
        };
        let params = record_gpu(t, &batch, rec)?;
        pending.extend(batch.into_iter().zip(params).zip(befores).map(|((u, p), b)| (u, p, b)));
    }
    for (_, rec) in recorders {
        rec.submit()?;
    }
    for (u, new_param, before) in pending {
        if let Some(before) = before {
            before.check(&u.rule, u.lr, t, u, &new_param)?;
        }
        u.param.0.set_storage(Storage::Gpu(new_param));
    }
    Ok(())
}

/// The CPU reference over whole tensors, in the parameter's float type, in place: the parameter
/// and state buffers are updated where they are (copied first only if another tensor shares
/// one), so a step needs no second copy of them.
fn apply_cpu(rule: &Rule, lr: f64, t: u64, u: &Update) {
    let g = u.grad.storage().expect("realized");
    let mut p = take_owned(u.param);
    let mut state: Vec<CpuStorage> = u.state.iter().map(take_owned).collect();
    fn run<T: Float + Wrapped>(
        rule: &Rule,
        lr: f64,
        t: u64,
        p: &mut CpuStorage,
        g: &Storage,
        state: &mut [CpuStorage],
    ) {
        let mut slots: Vec<&mut [T]> = state.iter_mut().map(T::slice_mut).collect();
        update(rule, &rule.hyper::<T>(lr, t), T::slice_mut(p), g.cpu().as_slice::<T>(), &mut slots);
    }
    match u.param.dtype() {
        DType::F32 => run::<f32>(rule, lr, t, &mut p, &g, &mut state),
        DType::F64 => run::<f64>(rule, lr, t, &mut p, &g, &mut state),
        other => panic!("optimizer: {other} parameters cannot be trained"),
    }
    u.param.0.set_storage(Storage::Cpu(Arc::new(p)));
    for (s, v) in u.state.iter().zip(state) {
        s.0.set_storage(Storage::Cpu(Arc::new(v)));
    }
}

/// The CPU storage of realized tensor `x`, taken out of it: moved when no other tensor shares
/// it, else copied.
fn take_owned(x: &Tensor) -> CpuStorage {
    match x.0.take_storage().expect("realized") {
        Storage::Cpu(data) => Arc::try_unwrap(data).unwrap_or_else(|shared| (*shared).clone()),
        Storage::Gpu(_) => unreachable!("CPU updates take CPU tensors"),
    }
}

/// Float types the CPU update runs in.
trait Wrapped: crate::Element {
    /// The elements of `storage`, which holds this type.
    fn slice_mut(storage: &mut CpuStorage) -> &mut [Self];
}

impl Wrapped for f32 {
    fn slice_mut(storage: &mut CpuStorage) -> &mut [f32] {
        match storage.data_mut() {
            CpuData::F32(v) => v,
            other => panic!("optimizer: expected f32 storage, found {}", other.dtype()),
        }
    }
}

impl Wrapped for f64 {
    fn slice_mut(storage: &mut CpuStorage) -> &mut [f64] {
        match storage.data_mut() {
            CpuData::F64(v) => v,
            other => panic!("optimizer: expected f64 storage, found {}", other.dtype()),
        }
    }
}

/// Updates the parameter and state in place, elementwise. The rule is matched once, outside
/// the loop, so each loop is one rule's straight-line arithmetic.
fn update<T: Float>(rule: &Rule, h: &Hyper<T>, p: &mut [T], g: &[T], state: &mut [&mut [T]]) {
    #[inline(always)]
    fn run<T: Float>(step: impl Fn(T, T, &mut [T; 3]) -> T, p: &mut [T], g: &[T], state: &mut [&mut [T]]) {
        let inputs = p.iter_mut().zip(g);
        // one loop per slot count, zipped so that it compiles to straight-line code
        match state {
            [s0] => inputs.zip(s0.iter_mut()).for_each(|((p, &g), s0)| {
                let mut slot = [*s0, T::ZERO, T::ZERO];
                *p = step(*p, g, &mut slot);
                *s0 = slot[0];
            }),
            [s0, s1] => inputs.zip(s0.iter_mut().zip(s1.iter_mut())).for_each(|((p, &g), (s0, s1))| {
                let mut slot = [*s0, *s1, T::ZERO];
                *p = step(*p, g, &mut slot);
                (*s0, *s1) = (slot[0], slot[1]);
            }),
            [s0, s1, s2] => inputs.zip(s0.iter_mut().zip(s1.iter_mut().zip(s2.iter_mut()))).for_each(
                |((p, &g), (s0, (s1, s2)))| {
                    let mut slot = [*s0, *s1, *s2];
                    *p = step(*p, g, &mut slot);
                    (*s0, *s1, *s2) = (slot[0], slot[1], slot[2]);
                },
            ),
            _ => unreachable!("rules have one to three state slots"),
        }
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

/// Records one dispatch that updates the parameter and state buffers of `batch` (one rule and
/// learning rate, at most [`MAX_TENSORS`]) in place, and returns the parameters' buffers. A
/// parameter buffer that another tensor shares (a `detach`ed handle on it) is copied first and
/// the copy updated, so that tensor keeps the old values.
fn record_gpu(t: u64, batch: &[&Update], rec: &mut Recorder) -> Result<Vec<Arc<GpuBuffer>>> {
    let (rule, lr) = (batch[0].rule, batch[0].lr);
    let gpu = |x: &Tensor| match x.storage().expect("realized") {
        Storage::Gpu(b) => Ok(b),
        Storage::Cpu(_) => Err(Error::Invalid(format!("an optimizer tensor is not on {}", x.device()))),
    };
    let (mut params, mut grads, mut states) = (Vec::new(), Vec::new(), Vec::new());
    let mut ends = [0u32; MAX_TENSORS];
    let mut total = 0;
    for (k, u) in batch.iter().enumerate() {
        let mut param = gpu(u.param)?;
        // two references: the parameter's node and `param` here
        if Arc::strong_count(&param) > 2 {
            let copy = rec.alloc_elems(u.param.numel())?;
            rec.copy(&param, 0, &copy, 0, param.binding_size());
            param = Arc::new(copy);
        }
        params.push(param);
        grads.push(gpu(u.grad)?);
        states.push(u.state.iter().map(gpu).collect::<Result<Vec<_>>>()?);
        total += u.param.numel();
        ends[k] = u32_of("optimizer step", total)?;
    }
    let reads: Vec<&GpuBuffer> = grads.iter().map(|b| b.as_ref()).collect();
    let writes: Vec<&GpuBuffer> = params
        .iter()
        .zip(&states)
        .flat_map(|(p, s)| std::iter::once(p).chain(s))
        .map(|b| b.as_ref())
        .collect();
    let block = Params { ends, ..rule.params(total, lr, t)? };
    rec.dispatch(&kernel(&rule, batch.len()), &block, &reads, &writes, Grid::Linear(block.n.div_ceil(256)))?;
    Ok(params)
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

    /// Compares the GPU's new parameter and state with the f64 reference of the same update.
    fn check(&self, rule: &Rule, lr: f64, t: u64, u: &Update, new_param: &GpuBuffer) -> Result<()> {
        let (mut p, mut s) = (self.param.clone(), self.state.clone());
        let mut slots: Vec<&mut [f64]> = s.iter_mut().map(Vec::as_mut_slice).collect();
        update(rule, &rule.hyper::<f64>(lr, t), &mut p, &self.grad, &mut slots);
        let mut got = vec![new_param.download(u.param.dtype(), u.param.numel())?.to_f64_vec()];
        got.extend(u.state.iter().map(download).collect::<Result<Vec<_>>>()?);
        let old = std::iter::once(&self.param).chain(&self.state);
        let names = std::iter::once("parameter").chain(rule.slots().iter().copied());
        for (((want, got), old), name) in std::iter::once(p).chain(s).zip(got).zip(old).zip(names) {
            let v = Verdict::of(&want, &got);
            let tolerance = update_tolerance(old, &want);
            if v.rel_err > tolerance || v.mismatch.is_some() {
                return Err(Error::CheckFailed(format!(
                    "cross-check failed: {rule:?} update of a {} parameter disagrees with the CPU reference in its {name}: relative error {:.3e} (tolerance {tolerance:.1e}) {}",
                    u.param.shape(),
                    v.rel_err,
                    v.mismatch.unwrap_or_default()
                )));
            }
        }
        Ok(())
    }
}

/// The relative error an f32 update of `old` into `new` (the f64 reference) may carry.
///
/// Every rule computes `new = old·c + δ` (c a decay near 1, δ the step) in a handful of f32
/// operations: the part carried over from `old` is rounded a few times, at most 2 ulps of
/// |old| + |new| (a multiply and an add, 1 ulp = 2u with u = 2⁻²⁴); the step δ passes through
/// up to 8 operations (the moment's own update, square root — 3 ulps on Vulkan —, divisions —
/// 2.5 ulps each —, scaling), at most 16 ulps of |δ|. Norm-wise over the tensor, relative to ‖new‖. For Adam at
/// β2 = 0.999 this is about 3e-7, so a 1 − β computed in f32 (1.3e-5 off) fails it by 40×.
fn update_tolerance(old: &[f64], new: &[f64]) -> f64 {
    const ULP: f64 = 2.0 / (1u64 << 24) as f64;
    let (mut bound, mut norm) = (0.0, 0.0);
    for (&o, &n) in old.iter().zip(new) {
        let e = ULP * (2.0 * (o.abs() + n.abs()) + 16.0 * (n - o).abs());
        bound += e * e;
        norm += n * n;
    }
    if norm > 0.0 { (bound / norm).sqrt() } else { bound.sqrt() }
}

fn download(x: &Tensor) -> Result<Vec<f64>> {
    Ok(x.storage().expect("realized").gpu().download(x.dtype(), x.numel())?.to_f64_vec())
}
