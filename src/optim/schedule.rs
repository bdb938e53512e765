//! Learning-rate schedules, with PyTorch's definitions (and nanoGPT's warm-up and cosine,
//! [`WarmupCosine`]). A scheduler is stepped once per period (an epoch, or an optimizer step for
//! warm-up, one-cycle and the schedules of runs by steps) and returns the learning rate for the
//! next period.

use std::f64::consts::PI;

/// A learning-rate schedule.
pub trait Scheduler: Send {
    /// The learning rate of the current period.
    fn lr(&self) -> f64;
    /// The momentum of the current period, for schedules that cycle it as well (one-cycle):
    /// SGD's and RMSProp's momentum, Adam's β1. `None` (the default) leaves the rule's.
    fn momentum(&self) -> Option<f64> {
        None
    }
    /// Ends a period; `metric` is the validation metric for [`ReduceOnPlateau`] (others ignore
    /// it). Returns the learning rate for the next period.
    fn step(&mut self, metric: Option<f64>) -> f64;
}

/// Multiplies the rate by `gamma` every `step_size` periods.
pub struct StepLr {
    base: f64,
    step_size: usize,
    gamma: f64,
    t: usize,
}

impl StepLr {
    /// From a base rate.
    pub fn new(base: f64, step_size: usize, gamma: f64) -> StepLr {
        StepLr { base, step_size: step_size.max(1), gamma, t: 0 }
    }
}

impl Scheduler for StepLr {
    fn lr(&self) -> f64 {
        self.base * self.gamma.powi((self.t / self.step_size) as i32)
    }
    fn step(&mut self, _: Option<f64>) -> f64 {
        self.t += 1;
        self.lr()
    }
}

/// Multiplies the rate by `gamma` every period.
pub struct ExponentialLr {
    base: f64,
    gamma: f64,
    t: usize,
}

impl ExponentialLr {
    /// From a base rate.
    pub fn new(base: f64, gamma: f64) -> ExponentialLr {
        ExponentialLr { base, gamma, t: 0 }
    }
}

impl Scheduler for ExponentialLr {
    fn lr(&self) -> f64 {
        self.base * self.gamma.powi(self.t as i32)
    }
    fn step(&mut self, _: Option<f64>) -> f64 {
        self.t += 1;
        self.lr()
    }
}

/// Cosine annealing from `base` to `min` over `periods`, then flat at `min`.
pub struct CosineLr {
    base: f64,
    min: f64,
    periods: usize,
    t: usize,
}

impl CosineLr {
    /// From `base` down to `min` over `periods`.
    pub fn new(base: f64, min: f64, periods: usize) -> CosineLr {
        CosineLr { base, min, periods: periods.max(1), t: 0 }
    }
}

impl Scheduler for CosineLr {
    fn lr(&self) -> f64 {
        let t = self.t.min(self.periods) as f64;
        self.min + (self.base - self.min) * (1.0 + (PI * t / self.periods as f64).cos()) / 2.0
    }
    fn step(&mut self, _: Option<f64>) -> f64 {
        self.t += 1;
        self.lr()
    }
}

/// Linear warm-up: the rate of `inner` scaled from `start_factor` up to 1 over `warmup`
/// periods; `inner` starts stepping once the warm-up is over.
pub struct LinearWarmup {
    inner: Box<dyn Scheduler>,
    start_factor: f64,
    warmup: usize,
    t: usize,
}

impl LinearWarmup {
    /// Warm up into `inner`.
    pub fn new(inner: impl Scheduler + 'static, start_factor: f64, warmup: usize) -> LinearWarmup {
        LinearWarmup { inner: Box::new(inner), start_factor, warmup, t: 0 }
    }
}

impl Scheduler for LinearWarmup {
    fn lr(&self) -> f64 {
        if self.t >= self.warmup {
            return self.inner.lr();
        }
        let f = self.start_factor + (1.0 - self.start_factor) * self.t as f64 / self.warmup as f64;
        self.inner.lr() * f
    }
    fn step(&mut self, metric: Option<f64>) -> f64 {
        if self.t >= self.warmup {
            self.inner.step(metric);
        }
        self.t += 1;
        self.lr()
    }
}

/// nanoGPT's `get_lr`: a linear warm-up to `max` over `warmup` steps, then a cosine decay to
/// `min` at step `decay_steps` (nanoGPT's `lr_decay_iters`, usually the run's `max_steps`), then
/// flat at `min`. Step `it` (0-based) trains at
///
/// - `max · (it + 1) / (warmup + 1)` while `it < warmup`,
/// - `min` once `it > decay_steps`,
/// - `min + (1 + cos(π · (it − warmup) / (decay_steps − warmup))) / 2 · (max − min)` between.
///
/// Advance it once per optimizer step ([`Trainer::with_batch_scheduler`]).
///
/// ```
/// use kiln::optim::Scheduler;
/// use kiln::optim::schedule::WarmupCosine;
/// let mut s = WarmupCosine::new(1e-3, 1e-4, 100, 2000);
/// assert_eq!(s.lr(), 1e-3 / 101.0); // step 0
/// for _ in 0..100 {
///     s.step(None);
/// }
/// assert!((s.lr() - 1e-3).abs() < 1e-15); // step 100: the top of the cosine
/// ```
///
/// [`Trainer::with_batch_scheduler`]: crate::train::Trainer::with_batch_scheduler
pub struct WarmupCosine {
    max: f64,
    min: f64,
    warmup: usize,
    decay_steps: usize,
    t: usize,
}

impl WarmupCosine {
    /// Warm up to `max` over `warmup` steps, then decay to `min` by step `decay_steps`. Panics
    /// when `decay_steps < warmup`.
    #[track_caller]
    pub fn new(max: f64, min: f64, warmup: usize, decay_steps: usize) -> WarmupCosine {
        if decay_steps < warmup {
            panic!("WarmupCosine: the decay ends at step {decay_steps}, before the warm-up ({warmup} steps)");
        }
        WarmupCosine { max, min, warmup, decay_steps, t: 0 }
    }
}

impl Scheduler for WarmupCosine {
    fn lr(&self) -> f64 {
        let it = self.t;
        if it < self.warmup {
            return self.max * (it + 1) as f64 / (self.warmup + 1) as f64;
        }
        if it > self.decay_steps {
            return self.min;
        }
        // decay_steps == warmup leaves no span to decay over: the one step there is the top
        let span = (self.decay_steps - self.warmup).max(1) as f64;
        let ratio = (it - self.warmup) as f64 / span;
        self.min + 0.5 * (1.0 + (PI * ratio).cos()) * (self.max - self.min)
    }
    fn step(&mut self, _: Option<f64>) -> f64 {
        self.t += 1;
        self.lr()
    }
}

/// The one-cycle policy (Smith & Topin), as PyTorch's `OneCycleLR` with cosine annealing: the
/// rate goes from max/`div` up to `max` over the first `pct_start` of `total` steps, then down
/// to max/(`div`·`final_div`); the momentum goes the other way, from 0.95 down to 0.85 while
/// the rate rises and back to 0.95 (PyTorch's `cycle_momentum`, on by default there and here;
/// the optimizer's rule must then have a momentum or, for Adam, a β1).
///
/// ```
/// use kiln::optim::schedule::{OneCycle, Scheduler};
/// let mut s = OneCycle::new(0.4, 100);
/// assert!((s.lr() - 0.4 / 25.0).abs() < 1e-12 && s.momentum() == Some(0.95));
/// for _ in 0..29 {
///     s.step(None);
/// }
/// // the peak rate, with the lowest momentum
/// assert!((s.lr() - 0.4).abs() < 1e-12 && s.momentum() == Some(0.85));
/// ```
pub struct OneCycle {
    max: f64,
    total: usize,
    pct_start: f64,
    div: f64,
    final_div: f64,
    /// (lowest, highest) momentum, if it cycles.
    momentum: Option<(f64, f64)>,
    t: usize,
}

impl OneCycle {
    /// PyTorch's defaults: pct_start 0.3, div 25, final_div 1e4, momentum cycled between 0.85
    /// and 0.95.
    pub fn new(max: f64, total: usize) -> OneCycle {
        let total = total.max(2);
        OneCycle { max, total, pct_start: 0.3, div: 25.0, final_div: 1e4, momentum: Some((0.85, 0.95)), t: 0 }
    }

    /// The momentum cycled between `base` (at the peak rate) and `max` (PyTorch's
    /// `base_momentum` and `max_momentum`).
    pub fn momentum_range(mut self, base: f64, max: f64) -> OneCycle {
        self.momentum = Some((base, max));
        self
    }

    /// Leaves the optimizer's momentum alone (PyTorch's `cycle_momentum=False`).
    pub fn without_momentum_cycle(mut self) -> OneCycle {
        self.momentum = None;
        self
    }

    /// The phase of the current step: (rising, fraction of the phase done).
    fn phase(&self) -> (bool, f64) {
        let end_up = self.pct_start * self.total as f64 - 1.0;
        let t = self.t.min(self.total - 1) as f64;
        if t <= end_up {
            (true, t / end_up.max(1.0))
        } else {
            (false, (t - end_up) / (self.total as f64 - 1.0 - end_up).max(1.0))
        }
    }
}

/// Cosine annealing from `from` to `to`, `frac` of the way.
fn cosine(from: f64, to: f64, frac: f64) -> f64 {
    to + (from - to) * (1.0 + (PI * frac).cos()) / 2.0
}

impl Scheduler for OneCycle {
    fn lr(&self) -> f64 {
        let initial = self.max / self.div;
        match self.phase() {
            (true, frac) => cosine(initial, self.max, frac),
            (false, frac) => cosine(self.max, initial / self.final_div, frac),
        }
    }
    fn momentum(&self) -> Option<f64> {
        let (base, max) = self.momentum?;
        Some(match self.phase() {
            (true, frac) => cosine(max, base, frac),
            (false, frac) => cosine(base, max, frac),
        })
    }
    fn step(&mut self, _: Option<f64>) -> f64 {
        self.t += 1;
        self.lr()
    }
}

/// Multiplies the rate by `factor` when the metric (lower is better) has not improved by more
/// than a relative `threshold` for `patience` periods; never below `min`.
pub struct ReduceOnPlateau {
    lr: f64,
    factor: f64,
    patience: usize,
    threshold: f64,
    min: f64,
    best: f64,
    bad: usize,
}

impl ReduceOnPlateau {
    /// PyTorch's defaults: factor 0.1, patience 10, threshold 1e-4, min 0.
    pub fn new(lr: f64) -> ReduceOnPlateau {
        ReduceOnPlateau {
            lr,
            factor: 0.1,
            patience: 10,
            threshold: 1e-4,
            min: 0.0,
            best: f64::INFINITY,
            bad: 0,
        }
    }

    /// With another factor and patience.
    pub fn with(mut self, factor: f64, patience: usize) -> ReduceOnPlateau {
        self.factor = factor;
        self.patience = patience;
        self
    }
}

impl Scheduler for ReduceOnPlateau {
    fn lr(&self) -> f64 {
        self.lr
    }
    fn step(&mut self, metric: Option<f64>) -> f64 {
        let Some(m) = metric else { return self.lr };
        if m < self.best * (1.0 - self.threshold) {
            self.best = m;
            self.bad = 0;
        } else {
            self.bad += 1;
            if self.bad > self.patience {
                self.lr = (self.lr * self.factor).max(self.min);
                self.bad = 0;
            }
        }
        self.lr
    }
}
