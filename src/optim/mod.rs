//! Optimizers, gradient clipping and learning-rate schedules.
//!
//! An [`Optimizer`] holds named parameters, an update [`Rule`] (SGD, AdaGrad, RMSProp,
//! Adadelta, Adam, AdamW, with PyTorch's definitions and defaults) and per-parameter state.
//! Parameters may come in groups ([`ParamGroup`]) with their own weight decay and
//! learning-rate scale; [`decay_groups`] is nanoGPT's split (no decay for 1-D parameters).
//! `step` realizes every gradient in one pass, then applies one fused update per parameter
//! tensor — on a GPU, one kernel dispatch each, all in one submission.
//!
//! ```
//! use kiln::nn::{self, Linear, Module};
//! use kiln::optim::{Optimizer, Rule};
//! use kiln::{Device, Tensor};
//! let model = Linear::new(3, 1, &Device::Cpu);
//! let mut opt = Optimizer::new(nn::parameters(&model), Rule::adam(), 1e-2);
//! let x = Tensor::randn([8, 3], &Device::Cpu);
//! let loss = model.forward(&x).square().mean_all();
//! opt.step(&loss.backward()).unwrap();
//! ```

mod clip;
pub(crate) mod fused;
mod grad_scaler;
pub mod schedule;

pub use clip::{clip_grad_norm, grad_norms};
pub use fused::Rule;
pub use grad_scaler::GradScaler;
pub use schedule::Scheduler;

use crate::{DType, Error, Gradients, Result, Tensor, no_grad};
use fused::Update;

impl Rule {
    /// Plain SGD.
    pub fn sgd() -> Rule {
        Rule::Sgd { momentum: 0.0, nesterov: false, weight_decay: 0.0 }
    }
    /// SGD with momentum.
    pub fn sgd_momentum(momentum: f64) -> Rule {
        Rule::Sgd { momentum, nesterov: false, weight_decay: 0.0 }
    }
    /// AdaGrad with PyTorch's eps (1e-10).
    pub fn adagrad() -> Rule {
        Rule::AdaGrad { eps: 1e-10, weight_decay: 0.0 }
    }
    /// RMSProp with PyTorch's defaults (alpha 0.99, eps 1e-8).
    pub fn rmsprop() -> Rule {
        Rule::RmsProp { alpha: 0.99, eps: 1e-8, momentum: 0.0, centered: false, weight_decay: 0.0 }
    }
    /// Adadelta with PyTorch's defaults (rho 0.9, eps 1e-6; PyTorch's lr default is 1.0).
    pub fn adadelta() -> Rule {
        Rule::Adadelta { rho: 0.9, eps: 1e-6, weight_decay: 0.0 }
    }
    /// Adam with PyTorch's defaults (betas 0.9, 0.999, eps 1e-8).
    pub fn adam() -> Rule {
        Rule::Adam { beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.0, decoupled: false }
    }
    /// AdamW with PyTorch's defaults (weight decay 0.01, decoupled).
    pub fn adamw() -> Rule {
        Rule::Adam { beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.01, decoupled: true }
    }
    /// The same Adam or AdamW rule with moment decay rates `beta1` and `beta2` (nanoGPT trains
    /// its character model with β2 = 0.99). Panics for other rules, which have no betas.
    #[track_caller]
    pub fn betas(self, beta1: f64, beta2: f64) -> Rule {
        match self {
            Rule::Adam { eps, weight_decay, decoupled, .. } => {
                Rule::Adam { beta1, beta2, eps, weight_decay, decoupled }
            }
            other => panic!("Rule::betas: {other:?} has no betas (only Adam and AdamW)"),
        }
    }

    /// The same rule with momentum `m`: SGD's and RMSProp's momentum, Adam's β1 (what a
    /// one-cycle schedule cycles). Panics for AdaGrad and Adadelta, which have none.
    #[track_caller]
    pub fn momentum(self, m: f64) -> Rule {
        match self {
            Rule::Sgd { nesterov, weight_decay, .. } => Rule::Sgd { momentum: m, nesterov, weight_decay },
            Rule::RmsProp { alpha, eps, centered, weight_decay, .. } => {
                Rule::RmsProp { alpha, eps, momentum: m, centered, weight_decay }
            }
            Rule::Adam { beta2, eps, weight_decay, decoupled, .. } => {
                Rule::Adam { beta1: m, beta2, eps, weight_decay, decoupled }
            }
            other => panic!(
                "Rule::momentum: {other:?} has no momentum to cycle (for one-cycle, use \
                 OneCycle::without_momentum_cycle)"
            ),
        }
    }

    /// The same rule with weight decay `wd`.
    pub fn weight_decay(self, wd: f64) -> Rule {
        match self {
            Rule::Sgd { momentum, nesterov, .. } => Rule::Sgd { momentum, nesterov, weight_decay: wd },
            Rule::AdaGrad { eps, .. } => Rule::AdaGrad { eps, weight_decay: wd },
            Rule::RmsProp { alpha, eps, momentum, centered, .. } => {
                Rule::RmsProp { alpha, eps, momentum, centered, weight_decay: wd }
            }
            Rule::Adadelta { rho, eps, .. } => Rule::Adadelta { rho, eps, weight_decay: wd },
            Rule::Adam { beta1, beta2, eps, decoupled, .. } => {
                Rule::Adam { beta1, beta2, eps, weight_decay: wd, decoupled }
            }
        }
    }
}

/// A set of parameters trained with their own settings, as a PyTorch parameter group: a
/// weight decay that replaces the rule's, and a factor on the optimizer's learning rate.
///
/// ```
/// use kiln::nn::{self, Linear};
/// use kiln::optim::{Optimizer, ParamGroup, Rule};
/// use kiln::Device;
/// let layer = Linear::new(4, 2, &Device::Cpu);
/// let (weights, biases): (Vec<_>, Vec<_>) =
///     nn::parameters(&layer).into_iter().partition(|(_, p)| p.rank() >= 2);
/// let groups = vec![ParamGroup::new(weights).weight_decay(0.1), ParamGroup::new(biases).weight_decay(0.0)];
/// let opt = Optimizer::with_groups(groups, Rule::adamw(), 1e-3);
/// assert_eq!(opt.rule_of("bias"), Some(Rule::adamw().weight_decay(0.0)));
/// ```
#[derive(Clone)]
pub struct ParamGroup {
    /// The parameters, with their state-dict names.
    pub params: Vec<(String, Tensor)>,
    /// The group's weight decay, in place of the rule's; `None` keeps the rule's.
    pub weight_decay: Option<f64>,
    /// The group's learning rate is the optimizer's times this (and follows its schedule).
    pub lr_scale: f64,
}

impl ParamGroup {
    /// A group with the rule's weight decay and the optimizer's learning rate.
    pub fn new(params: Vec<(String, Tensor)>) -> ParamGroup {
        ParamGroup { params, weight_decay: None, lr_scale: 1.0 }
    }

    /// The same group with weight decay `wd`.
    pub fn weight_decay(mut self, wd: f64) -> ParamGroup {
        self.weight_decay = Some(wd);
        self
    }

    /// The same group with its learning rate scaled by `scale`.
    pub fn lr_scale(mut self, scale: f64) -> ParamGroup {
        self.lr_scale = scale;
        self
    }

    /// The settings alone, to compare two groups.
    fn settings(&self) -> (Option<f64>, f64) {
        (self.weight_decay, self.lr_scale)
    }
}

/// nanoGPT's `configure_optimizers` split of `params`: weight decay `weight_decay` for the
/// parameters of two or more dimensions (the weights of matmuls and embeddings), none for the
/// rest (biases, norm weights and other 1-D parameters). Each tensor appears once, under its
/// first name (a tied weight is one parameter), and tensors that do not require a gradient
/// (frozen) are left out, so they get no optimizer state.
///
/// ```
/// use kiln::nn::{self, LayerNorm, Linear, Module, Sequential};
/// use kiln::optim::{Optimizer, Rule, decay_groups};
/// use kiln::Device;
/// let dev = Device::Cpu;
/// let model = Sequential::new().add(Linear::new(8, 8, &dev)).add(LayerNorm::new(&[8], &dev));
/// let groups = decay_groups(nn::parameters(&model), 0.1);
/// let names = |g: usize| groups[g].params.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>();
/// assert_eq!(names(0), ["0.weight"]);
/// assert_eq!(names(1), ["0.bias", "1.weight", "1.bias"]);
/// let opt = Optimizer::with_groups(groups, Rule::adamw().betas(0.9, 0.99), 1e-3);
/// ```
pub fn decay_groups(params: Vec<(String, Tensor)>, weight_decay: f64) -> Vec<ParamGroup> {
    let (decay, no_decay): (Vec<_>, Vec<_>) =
        unique(params).into_iter().filter(|(_, p)| p.requires_grad()).partition(|(_, p)| p.rank() >= 2);
    vec![ParamGroup::new(decay).weight_decay(weight_decay), ParamGroup::new(no_decay).weight_decay(0.0)]
}

/// Each tensor once, under the first name it was listed with.
fn unique(params: Vec<(String, Tensor)>) -> Vec<(String, Tensor)> {
    let mut out: Vec<(String, Tensor)> = Vec::with_capacity(params.len());
    for (name, p) in params {
        if !out.iter().any(|(_, seen)| seen.same(&p)) {
            out.push((name, p));
        }
    }
    out
}

/// Updates a set of named parameters from their gradients.
pub struct Optimizer {
    rule: Rule,
    lr: f64,
    params: Vec<(String, Tensor)>,
    /// Per parameter, the index of its group in `groups`.
    group_of: Vec<usize>,
    /// The groups' settings: weight decay (replacing the rule's) and learning-rate scale.
    groups: Vec<(Option<f64>, f64)>,
    /// Per parameter, one tensor per state slot of the rule (created at the first step).
    state: Vec<Vec<Tensor>>,
    steps: u64,
}

impl Optimizer {
    /// An optimizer over `params` (usually [`crate::nn::parameters`]) with rule and learning rate.
    ///
    /// A tensor listed more than once (a tied weight, which a model reports under each of its
    /// names) is one parameter: it keeps its first name, is updated once per step, and has one
    /// set of state.
    pub fn new(params: Vec<(String, Tensor)>, rule: Rule, lr: f64) -> Optimizer {
        Optimizer::with_groups(vec![ParamGroup::new(params)], rule, lr)
    }

    /// An optimizer over parameter groups, each with its own weight decay and learning-rate
    /// scale (see [`ParamGroup`] and [`decay_groups`]).
    ///
    /// A tensor is one parameter however often it is listed (a tied weight, under each of its
    /// names): it keeps its first name and is updated once per step. Listing it in two groups
    /// whose settings differ is a programmer error and panics, as PyTorch refuses a parameter
    /// in two groups. Panics for a parameter that is not f32 or f64: mixed precision keeps f32
    /// master weights ([`crate::amp`]).
    #[track_caller]
    pub fn with_groups(groups: Vec<ParamGroup>, rule: Rule, lr: f64) -> Optimizer {
        let mut params: Vec<(String, Tensor)> = Vec::new();
        let mut group_of = Vec::new();
        let settings: Vec<(Option<f64>, f64)> = groups.iter().map(ParamGroup::settings).collect();
        for (g, group) in groups.into_iter().enumerate() {
            for (name, p) in group.params {
                if !matches!(p.dtype(), DType::F32 | DType::F64) {
                    panic!(
                        "Optimizer: parameter {name} is {}; parameters (the master weights) must be f32 or f64 \
                         — for f16 training keep them f32 and run the forward pass under amp::autocast",
                        p.dtype()
                    );
                }
                match params.iter().position(|(_, seen)| seen.same(&p)) {
                    None => {
                        params.push((name, p));
                        group_of.push(g);
                    }
                    Some(i) if settings[group_of[i]] != settings[g] => panic!(
                        "Optimizer::with_groups: {name} is {} (one tied tensor), listed in groups {} and \
                         {g}, whose settings differ ({:?} and {:?})",
                        params[i].0, group_of[i], settings[group_of[i]], settings[g]
                    ),
                    Some(_) => {}
                }
            }
        }
        Optimizer { rule, lr, params, group_of, groups: settings, state: Vec::new(), steps: 0 }
    }

    /// The parameters, each once, with the first name it was given.
    pub fn params(&self) -> &[(String, Tensor)] {
        &self.params
    }

    /// The learning rate (each group's is this times its scale).
    pub fn lr(&self) -> f64 {
        self.lr
    }

    /// Sets the learning rate (schedules call this).
    pub fn set_lr(&mut self, lr: f64) {
        self.lr = lr;
    }

    /// Applies `scheduler`'s current learning rate, and its momentum if it cycles one.
    #[track_caller]
    pub fn follow(&mut self, scheduler: &dyn Scheduler) {
        self.lr = scheduler.lr();
        if let Some(m) = scheduler.momentum() {
            self.rule = self.rule.momentum(m);
        }
    }

    /// The update rule.
    pub fn rule(&self) -> Rule {
        self.rule
    }

    /// The rule the parameter named `name` is updated with (its group's weight decay in place of
    /// the rule's), if the optimizer holds it under that name.
    pub fn rule_of(&self, name: &str) -> Option<Rule> {
        let i = self.params.iter().position(|(n, _)| n == name)?;
        Some(self.group_rule(self.group_of[i]))
    }

    /// The learning rate the parameter named `name` is updated at now.
    pub fn lr_of(&self, name: &str) -> Option<f64> {
        let i = self.params.iter().position(|(n, _)| n == name)?;
        Some(self.lr * self.groups[self.group_of[i]].1)
    }

    fn group_rule(&self, group: usize) -> Rule {
        match self.groups[group].0 {
            Some(wd) => self.rule.weight_decay(wd),
            None => self.rule,
        }
    }

    /// Steps taken so far.
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// Applies one update to every parameter that has a gradient in `grads`.
    pub fn step(&mut self, grads: &Gradients) -> Result<()> {
        self.step_with(grads, &[])
    }

    /// As [`Optimizer::step`], also computing `also` in the same realize as the gradients (a
    /// running loss, say), so the whole training step is one GPU submission.
    pub fn step_with(&mut self, grads: &Gradients, also: &[Tensor]) -> Result<()> {
        if self.state.is_empty() {
            self.state = self
                .params
                .iter()
                .map(|(_, p)| self.rule.slots().iter().map(|_| p.zeros_like()).collect())
                .collect();
        }
        let mut pending: Vec<Tensor> = also.to_vec();
        // last parameters first: the realize then computes each layer's weight gradient as soon
        // as its output gradient exists and frees that gradient, in backprop's order, instead of
        // running the chain down to the first layer first and keeping every layer's output
        // gradient for the weight gradients after it (LeNet-5's step: 1.46× → 1.40× its floor)
        for ((_, p), s) in self.params.iter().zip(&self.state).rev() {
            if let Some(g) = grads.get(p) {
                pending.push(p.clone());
                pending.push(g.clone());
                pending.extend(s.iter().cloned());
            }
        }
        // every gradient (and any fresh state) in one realize: one GPU submission
        Tensor::realize_all(&pending)?;
        self.steps += 1;
        let rules: Vec<(Rule, f64)> =
            (0..self.groups.len()).map(|g| (self.group_rule(g), self.lr * self.groups[g].1)).collect();
        let updates: Vec<Update> = self
            .params
            .iter()
            .zip(&self.state)
            .zip(&self.group_of)
            .filter_map(|(((_, p), s), &g)| {
                let (rule, lr) = rules[g];
                grads.get(p).map(|grad| Update { param: p, grad, state: s, rule, lr })
            })
            .collect();
        let _flushed = crate::backend::cpu_denormals::for_cpu_work();
        fused::apply_all(self.steps, &updates)
    }

    /// The optimizer's state with names: `{param}.{slot}` for every state tensor, and `step`.
    pub fn state_dict(&self) -> Vec<(String, Tensor)> {
        let mut out = Vec::new();
        for ((name, _), slots) in self.params.iter().zip(&self.state) {
            for (slot, t) in self.rule.slots().iter().zip(slots) {
                out.push((format!("{name}.{slot}"), t.clone()));
            }
        }
        let device = crate::Device::Cpu;
        out.push(("step".to_string(), Tensor::from_vec(vec![self.steps as i32], [1], &device)));
        out
    }

    /// Restores state saved by [`Optimizer::state_dict`]: every entry must be present, with its
    /// shape.
    pub fn load_state_dict(&mut self, entries: &[(String, Tensor)]) -> Result<()> {
        let find = |name: &str| {
            entries
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, t)| t)
                .ok_or_else(|| Error::Invalid(format!("optimizer state: {name} is missing")))
        };
        let steps = find("step")?.to(&crate::Device::Cpu).cast(DType::I32).to_vec::<i32>()?[0];
        let mut state = Vec::new();
        for (name, p) in &self.params {
            let mut slots = Vec::new();
            for slot in self.rule.slots() {
                let saved = find(&format!("{name}.{slot}"))?;
                if saved.shape() != p.shape() {
                    return Err(Error::Invalid(format!(
                        "optimizer state: {name}.{slot} has shape {}, the parameter {}",
                        saved.shape(),
                        p.shape()
                    )));
                }
                // a copy: `saved` may be the live state of another optimizer, whose steps would
                // otherwise change this one's state too (on the GPU, state is updated in place)
                let t = no_grad(|| saved.to(&p.device()).cast(p.dtype()) * 1.0);
                t.realize()?;
                slots.push(t.detach());
            }
            state.push(slots);
        }
        self.state = state;
        self.steps = steps.max(0) as u64;
        Ok(())
    }
}
