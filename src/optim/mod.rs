//! Optimizers, gradient clipping and learning-rate schedules.
//!
//! An [`Optimizer`] holds named parameters, an update [`Rule`] (SGD, AdaGrad, RMSProp,
//! Adadelta, Adam, AdamW, with PyTorch's definitions and defaults) and per-parameter state.
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
pub mod schedule;

pub use clip::clip_grad_norm;
pub use fused::Rule;
pub use schedule::Scheduler;

use crate::{DType, Error, Gradients, Result, Tensor};
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

/// Updates a set of named parameters from their gradients.
pub struct Optimizer {
    rule: Rule,
    lr: f64,
    params: Vec<(String, Tensor)>,
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
        let mut unique: Vec<(String, Tensor)> = Vec::with_capacity(params.len());
        for (name, p) in params {
            if !unique.iter().any(|(_, seen)| seen.same(&p)) {
                unique.push((name, p));
            }
        }
        Optimizer { rule, lr, params: unique, state: Vec::new(), steps: 0 }
    }

    /// The parameters, each once, with the first name it was given.
    pub fn params(&self) -> &[(String, Tensor)] {
        &self.params
    }

    /// The learning rate.
    pub fn lr(&self) -> f64 {
        self.lr
    }

    /// Sets the learning rate (schedules call this).
    pub fn set_lr(&mut self, lr: f64) {
        self.lr = lr;
    }

    /// The update rule.
    pub fn rule(&self) -> Rule {
        self.rule
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
        for ((_, p), s) in self.params.iter().zip(&self.state) {
            if let Some(g) = grads.get(p) {
                pending.push(p.clone());
                pending.push(g.clone());
                pending.extend(s.iter().cloned());
            }
        }
        // every gradient (and any fresh state) in one realize: one GPU submission
        Tensor::realize_all(&pending)?;
        self.steps += 1;
        let updates: Vec<Update> = self
            .params
            .iter()
            .zip(&self.state)
            .filter_map(|((_, p), s)| grads.get(p).map(|g| Update { param: p, grad: g, state: s }))
            .collect();
        fused::apply_all(&self.rule, self.lr, self.steps, &updates)
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
                let t = saved.to(&p.device()).cast(p.dtype());
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
