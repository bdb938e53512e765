//! Dynamic loss scaling for mixed-precision training, as PyTorch's `torch.amp.GradScaler`.
//!
//! f16 holds magnitudes down to 6·10⁻⁸ only: many gradients of an f16 forward pass would flush
//! to zero. The scaler multiplies the loss by a large factor before `backward`, so the f16
//! gradients stay representable, then divides the (f32, master-weight) gradients by it before
//! the optimizer step. When a gradient overflowed to ∞ or NaN the step is skipped and the factor
//! halved; after `growth_interval` good steps in a row it doubles.
//!
//! ```
//! use kiln::nn::{self, Linear, Module};
//! use kiln::optim::{GradScaler, Optimizer, Rule};
//! use kiln::{DType, Device, Tensor, amp};
//! let model = Linear::new(3, 1, &Device::Cpu);
//! let mut opt = Optimizer::new(nn::parameters(&model), Rule::adam(), 1e-2);
//! let mut scaler = GradScaler::new();
//! let x = Tensor::randn([8, 3], &Device::Cpu);
//! for _ in 0..5 {
//!     let loss = {
//!         let _autocast = amp::autocast(DType::F16);
//!         model.forward(&x).cast(DType::F32).square().mean_all()
//!     };
//!     let mut grads = scaler.scale(&loss).backward();
//!     scaler.step(&mut opt, &mut grads).unwrap(); // false: an overflow, the step skipped
//!     scaler.update(); // halves the scale after an overflow
//! }
//! assert_eq!(opt.steps() + scaler.skipped_steps(), 5);
//! ```

use super::Optimizer;
use crate::{DType, Gradients, Result, Tensor, no_grad};

/// Dynamic loss scaling (see the module doc).
#[derive(Clone, Debug)]
pub struct GradScaler {
    scale: f64,
    growth_factor: f64,
    backoff_factor: f64,
    growth_interval: u32,
    /// Good steps in a row since the scale last changed.
    good_steps: u32,
    /// What this iteration's unscale found: `Some(true)` when a gradient was not finite.
    found_inf: Option<bool>,
    skipped: u64,
}

impl Default for GradScaler {
    fn default() -> GradScaler {
        GradScaler::new()
    }
}

impl GradScaler {
    /// PyTorch's defaults: initial scale 2¹⁶, growth factor 2, backoff factor 0.5, growth
    /// interval 2000 steps.
    pub fn new() -> GradScaler {
        GradScaler {
            scale: 65536.0,
            growth_factor: 2.0,
            backoff_factor: 0.5,
            growth_interval: 2000,
            good_steps: 0,
            found_inf: None,
            skipped: 0,
        }
    }

    /// The same scaler starting from scale `scale`.
    #[track_caller]
    pub fn init_scale(mut self, scale: f64) -> GradScaler {
        if !(scale.is_finite() && scale > 0.0) {
            panic!("GradScaler::init_scale: the scale must be positive and finite, found {scale}");
        }
        self.scale = scale;
        self
    }

    /// The same scaler doubling (or multiplying by `factor`) after `interval` good steps.
    #[track_caller]
    pub fn growth(mut self, factor: f64, interval: u32) -> GradScaler {
        if factor <= 1.0 || interval == 0 {
            panic!("GradScaler::growth: need factor > 1 and interval ≥ 1, found {factor} and {interval}");
        }
        (self.growth_factor, self.growth_interval) = (factor, interval);
        self
    }

    /// The same scaler multiplying the scale by `factor` (in (0, 1)) after an overflow.
    #[track_caller]
    pub fn backoff(mut self, factor: f64) -> GradScaler {
        if !(factor > 0.0 && factor < 1.0) {
            panic!("GradScaler::backoff: the factor must be in (0, 1), found {factor}");
        }
        self.backoff_factor = factor;
        self
    }

    /// The current scale factor.
    pub fn scale_factor(&self) -> f64 {
        self.scale
    }

    /// Optimizer steps skipped so far because a gradient overflowed.
    pub fn skipped_steps(&self) -> u64 {
        self.skipped
    }

    /// The loss multiplied by the scale factor, in f32: call `backward` on this.
    pub fn scale(&self, loss: &Tensor) -> Tensor {
        loss.cast(DType::F32) * self.scale
    }

    /// Divides the gradients of `params` by the scale factor, in place, and finds whether any
    /// is not finite (one value per parameter read back from the device, where the gradients
    /// are computed in the same pass). Call it before clipping or reading the gradients; [`GradScaler::step`]
    /// calls it when it has not been. Returns whether every gradient is finite.
    ///
    /// Panics when called twice in one iteration (before [`GradScaler::update`]): the gradients
    /// would be divided twice.
    #[track_caller]
    pub fn unscale(&mut self, grads: &mut Gradients, params: &[(String, Tensor)]) -> Result<bool> {
        if self.found_inf.is_some() {
            panic!("GradScaler::unscale: already called this iteration (call update() after each step)");
        }
        let inverse = 1.0 / self.scale;
        let finite = no_grad(|| -> Result<bool> {
            let mut present: Vec<&Tensor> = Vec::new();
            for (_, p) in params {
                if grads.get(p).is_some() && !present.iter().any(|seen| seen.same(p)) {
                    present.push(p);
                }
            }
            if present.is_empty() {
                return Ok(true);
            }
            // per gradient, Σ|g|: ∞ or NaN when an element is (one pass after the unscaling,
            // where a count of finite elements would take three; a finite sum past f32's range,
            // > 3·10³⁸, counts as an overflow too)
            let mut pending = Vec::new();
            let mut sums = Vec::new();
            for p in &present {
                let g = grads.get(p).expect("filtered") * inverse;
                sums.push(g.abs().sum_all().cast(DType::F32).reshape([1]));
                pending.push(g.clone());
                grads.insert(p, g);
            }
            let sums = Tensor::concat(&sums, 0);
            pending.push(sums.clone());
            Tensor::realize_all(&pending)?;
            Ok(sums.to_vec::<f32>()?.iter().all(|s| s.is_finite()))
        })?;
        self.found_inf = Some(!finite);
        Ok(finite)
    }

    /// Unscales the gradients (unless [`GradScaler::unscale`] already did) and takes the
    /// optimizer step if they are all finite; returns whether it did. Then call
    /// [`GradScaler::update`].
    #[track_caller]
    pub fn step(&mut self, optimizer: &mut Optimizer, grads: &mut Gradients) -> Result<bool> {
        let finite = match self.found_inf {
            Some(found) => !found,
            None => self.unscale(grads, optimizer.params())?,
        };
        if finite {
            optimizer.step(grads)?;
        } else {
            self.skipped += 1;
        }
        Ok(finite)
    }

    /// Adjusts the scale after an iteration: backs off after an overflow, grows after
    /// `growth_interval` good steps in a row.
    #[track_caller]
    pub fn update(&mut self) {
        match self.found_inf.take() {
            None => panic!("GradScaler::update: no gradients were unscaled this iteration (call step first)"),
            Some(true) => {
                self.scale *= self.backoff_factor;
                self.good_steps = 0;
            }
            Some(false) => {
                self.good_steps += 1;
                if self.good_steps == self.growth_interval {
                    self.scale *= self.growth_factor;
                    self.good_steps = 0;
                }
            }
        }
    }
}
