//! LoRA, low-rank adaptation (Hu et al., "LoRA: Low-Rank Adaptation of Large Language Models",
//! 2021): a frozen linear layer y = x·Wᵀ + b learns only a low-rank update,
//!   y = x·Wᵀ + b + (α/r)·(dropout(x)·Aᵀ)·Bᵀ,  A (r, in), B (out, r),
//! with A initialized as a `Linear` weight and B at zero, so training starts from the base model.
//!
//! A model opts in by building its projections as [`LoraLinear`] (a `Linear` that can take an
//! adapter); [`apply`] then adapts every such layer whose path matches a pattern, and
//! [`trainable_parameters`] lists the adapters alone for the optimizer. An adapted layer reports
//! its base `weight` and `bias` as buffers, not parameters, and uses them detached: the base gets
//! no gradient and no optimizer state, yet stays in the state dict under its usual names.
//! [`merge`] folds the update into the base weight for inference (and [`unmerge`] takes it out);
//! [`save_adapters`] and [`load_adapters`] move the adapters alone (`<layer>.lora_A.weight`,
//! `<layer>.lora_B.weight`) as safetensors.
//!
//! ```
//! use kiln::nn::{self, Linear, LoraConfig, LoraLinear, Module, lora};
//! use kiln::{Device, Tensor};
//! let dev = Device::Cpu;
//! let layer = LoraLinear::new(Linear::new(16, 8, &dev));
//! assert_eq!(lora::apply(&layer, "*", LoraConfig { rank: 2, alpha: 4.0, dropout: 0.0 })?, 1);
//! let names: Vec<String> = lora::trainable_parameters(&layer).into_iter().map(|(n, _)| n).collect();
//! assert_eq!(names, ["lora_A.weight", "lora_B.weight"]);
//! assert_eq!(nn::state_dict(&layer).len(), 4); // weight, bias, lora_A.weight, lora_B.weight
//! # Ok::<(), kiln::Error>(())
//! ```

use super::pattern::glob;
use super::projection::affine;
use super::{Dropout, Linear, Module, Visitor, for_each_module, init};
use crate::train::checkpoint;
use crate::{Error, Result, Tensor, no_grad};
use std::collections::HashMap;
use std::path::Path;
use std::sync::{PoisonError, RwLock, RwLockReadGuard};

/// The shape of the adapters: rank r, scale α (the update is multiplied by α/r) and dropout on
/// the adapter's input.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LoraConfig {
    /// The rank r of the update.
    pub rank: usize,
    /// The update is scaled by alpha / rank.
    pub alpha: f64,
    /// Dropout on the adapter's input while training.
    pub dropout: f32,
}

/// The trained half of an adapted layer.
struct Adapter {
    a: Linear,
    b: Linear,
    dropout: Dropout,
    scaling: f64,
    merged: bool,
}

/// A `Linear` that can be adapted with LoRA: without an adapter it is the layer it wraps, with
/// the same state-dict names (`weight`, `bias`); with one, see the module doc.
pub struct LoraLinear {
    linear: Linear,
    adapter: RwLock<Option<Adapter>>,
}

impl LoraLinear {
    /// Wraps `linear`, not yet adapted.
    pub fn new(linear: Linear) -> LoraLinear {
        LoraLinear { linear, adapter: RwLock::new(None) }
    }

    /// The wrapped layer (its weight holds the merged update while [`LoraLinear::is_merged`]).
    pub fn base(&self) -> &Linear {
        &self.linear
    }

    fn adapter(&self) -> RwLockReadGuard<'_, Option<Adapter>> {
        self.adapter.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether the layer has an adapter.
    pub fn is_adapted(&self) -> bool {
        self.adapter().is_some()
    }

    /// Whether the adapter is merged into the base weight.
    pub fn is_merged(&self) -> bool {
        self.adapter().as_ref().is_some_and(|a| a.merged)
    }

    /// Adds a fresh adapter (replacing any, unmerged first), which freezes the base layer.
    #[track_caller]
    pub fn adapt(&self, config: LoraConfig) -> Result<()> {
        if config.rank == 0 {
            panic!("LoRA: the rank must be positive");
        }
        let w = &self.linear.weight;
        let (out, inp, device) = (w.dim(0), w.dim(1), w.device());
        let adapter = Adapter {
            a: Linear {
                weight: init::param(init::kaiming_uniform([config.rank, inp], inp, &device)),
                bias: None,
            },
            b: Linear { weight: init::param(Tensor::zeros([out, config.rank], &device)), bias: None },
            dropout: Dropout::new(config.dropout),
            scaling: config.alpha / config.rank as f64,
            merged: false,
        };
        self.unmerge()?;
        *self.adapter.write().unwrap_or_else(PoisonError::into_inner) = Some(adapter);
        Ok(())
    }

    /// The update scaling·B·A (out, in), without gradient.
    fn delta(adapter: &Adapter) -> Tensor {
        no_grad(|| adapter.b.weight.matmul(&adapter.a.weight) * adapter.scaling)
    }

    /// Folds the update into the base weight, so that the layer costs one matmul. Does nothing
    /// without an adapter or when already merged.
    pub fn merge(&self) -> Result<()> {
        self.set_merged(true)
    }

    /// Takes a merged update back out of the base weight.
    pub fn unmerge(&self) -> Result<()> {
        self.set_merged(false)
    }

    fn set_merged(&self, merged: bool) -> Result<()> {
        let mut guard = self.adapter.write().unwrap_or_else(PoisonError::into_inner);
        let Some(adapter) = guard.as_mut().filter(|a| a.merged != merged) else {
            return Ok(());
        };
        let w = &self.linear.weight;
        let delta = Self::delta(adapter);
        let updated = no_grad(|| if merged { w.detach() + delta } else { w.detach() - delta });
        w.assign(&updated)?;
        adapter.merged = merged;
        Ok(())
    }
}

impl Module for LoraLinear {
    fn forward(&self, x: &Tensor) -> Tensor {
        let guard = self.adapter();
        let (w, b) = (&self.linear.weight, self.linear.bias.as_ref());
        let Some(adapter) = guard.as_ref() else {
            return affine(x, w, b);
        };
        // the base is frozen: used detached, it gets no gradient
        let y = affine(x, &w.detach(), b.map(Tensor::detach).as_ref());
        if adapter.merged {
            return y;
        }
        let h = affine(&adapter.dropout.forward(x), &adapter.a.weight, None);
        y + affine(&h, &adapter.b.weight, None) * adapter.scaling
    }

    fn visit(&self, v: &mut dyn Visitor) {
        let guard = self.adapter();
        match guard.as_ref() {
            None => self.linear.visit(v),
            Some(adapter) => {
                v.buffer("weight", &self.linear.weight);
                if let Some(b) = &self.linear.bias {
                    v.buffer("bias", b);
                }
                v.child("lora_dropout", &adapter.dropout);
                v.child("lora_A", &adapter.a);
                v.child("lora_B", &adapter.b);
            }
        }
    }

    fn as_any(&self) -> Option<&dyn std::any::Any> {
        Some(self)
    }
}

/// Calls `f` with every [`LoraLinear`] in `m` and its path, up to the first error.
fn for_each_layer(m: &dyn Module, mut f: impl FnMut(&str, &LoraLinear) -> Result<()>) -> Result<()> {
    let mut result = Ok(());
    for_each_module(m, &mut |path, module| {
        if let (Ok(()), Some(layer)) = (&result, module.as_any().and_then(|a| a.downcast_ref::<LoraLinear>()))
        {
            result = f(path, layer);
        }
    });
    result
}

/// Adapts every [`LoraLinear`] of `m` whose path (as in the state dict: `transformer.h.0.attn.c_attn`)
/// matches `pattern` (`*` matches anything), and returns how many it adapted.
pub fn apply(m: &dyn Module, pattern: &str, config: LoraConfig) -> Result<usize> {
    let mut count = 0;
    for_each_layer(m, |path, layer| {
        if !glob(pattern, path) {
            return Ok(());
        }
        count += 1;
        layer.adapt(config)
    })?;
    Ok(count)
}

/// The adapters' parameters (`<layer>.lora_A.weight`, `<layer>.lora_B.weight`): what LoRA
/// training gives its optimizer.
pub fn trainable_parameters(m: &dyn Module) -> Vec<(String, Tensor)> {
    super::parameters(m).into_iter().filter(|(name, _)| is_adapter(name)).collect()
}

fn is_adapter(name: &str) -> bool {
    name.ends_with("lora_A.weight") || name.ends_with("lora_B.weight")
}

/// Merges every adapter of `m` into its base weight.
pub fn merge(m: &dyn Module) -> Result<()> {
    for_each_layer(m, |_, layer| layer.merge())
}

/// Takes every merged adapter of `m` back out of its base weight.
pub fn unmerge(m: &dyn Module) -> Result<()> {
    for_each_layer(m, |_, layer| layer.unmerge())
}

/// Writes the adapters of `m` alone to `path` as safetensors, atomically.
pub fn save_adapters(m: &dyn Module, path: impl AsRef<Path>) -> Result<()> {
    checkpoint::save(path, &trainable_parameters(m), &HashMap::new())
}

/// Loads adapters saved by [`save_adapters`] into the adapted layers of `m`: the file must hold
/// exactly their tensors, with their shapes; nothing is changed otherwise.
pub fn load_adapters(m: &dyn Module, path: impl AsRef<Path>) -> Result<()> {
    let path = path.as_ref();
    let saved = checkpoint::load(path)?;
    let wanted = trainable_parameters(m);
    let bad = |reason: String| Error::format(path, "safetensors", reason);
    if let Some((name, _)) = saved.tensors.iter().find(|(n, _)| !wanted.iter().any(|(w, _)| w == n)) {
        return Err(bad(format!("{name} is not an adapter of this model (adapt its layers first)")));
    }
    let mut values = Vec::with_capacity(wanted.len());
    for (name, target) in &wanted {
        let value = saved.get(name).ok_or_else(|| bad(format!("the file has no tensor {name}")))?;
        if value.shape() != target.shape() {
            return Err(bad(format!(
                "{name} has shape {}, the model's adapter {}",
                value.shape(),
                target.shape()
            )));
        }
        values.push(value.cast(target.dtype()).to(&target.device()));
    }
    Tensor::realize_all(&values)?;
    for ((_, target), value) in wanted.iter().zip(&values) {
        target.assign(value)?;
    }
    Ok(())
}
