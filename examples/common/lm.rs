//! What the char-GPT examples share: the Shakespeare corpus, nanoGPT's optimizer groups and
//! learning-rate schedule, the training step, evaluation, and checkpoints that carry the model's
//! configuration.

// each example compiles this module on its own and uses some of its helpers
#![allow(dead_code)]

use kiln::data::lm::RandomWindows;
use kiln::data::text::{CharVocab, read_text};
use kiln::models::gpt::{Gpt, GptConfig};
use kiln::nn::{self, Module};
use kiln::optim::{GradScaler, Optimizer, Rule, clip_grad_norm};
use kiln::rng::RandomKey;
use kiln::train::checkpoint;
use kiln::{DType, Device, Error, Result, Tensor, no_grad};
use std::collections::HashMap;
use std::path::Path;

/// tiny-shakespeare as character ids: its vocabulary, the first 90% and the last 10%.
pub fn shakespeare(data: &Path) -> Result<(CharVocab, Vec<i32>, Vec<i32>)> {
    let text = read_text(data.join("tinyshakespeare").join("input.txt"))?;
    let vocab = CharVocab::of(&text);
    let ids = vocab.encode(&text)?;
    let split = ids.len() * 9 / 10;
    Ok((vocab, ids[..split].to_vec(), ids[split..].to_vec()))
}

/// nanoGPT's `get_lr`: linear warm-up over `warmup` steps, then a cosine from `max` down to
/// `min` at step `decay_steps`, and `min` after.
pub fn nanogpt_lr(step: usize, max: f64, min: f64, warmup: usize, decay_steps: usize) -> f64 {
    if step < warmup {
        return max * (step + 1) as f64 / (warmup + 1) as f64;
    }
    if step > decay_steps {
        return min;
    }
    let ratio = (step - warmup) as f64 / (decay_steps - warmup).max(1) as f64;
    min + 0.5 * (1.0 + (std::f64::consts::PI * ratio).cos()) * (max - min)
}

/// AdamW over two parameter groups, as nanoGPT's `configure_optimizers`: weight decay on the
/// matrices (linear weights and embeddings), none on vectors (biases, layer norms).
pub struct AdamWGroups {
    /// The parameters every step clips and updates.
    pub params: Vec<(String, Tensor)>,
    groups: Vec<(&'static str, Optimizer)>,
    /// Loss scaling, when the forward pass runs under f16 autocast (`--mixed-precision`).
    scaler: Option<GradScaler>,
}

impl AdamWGroups {
    /// AdamW (β1 0.9, β2 `beta2`) over `params` with decay `weight_decay` on the matrices.
    pub fn new(params: Vec<(String, Tensor)>, weight_decay: f64, beta2: f64) -> AdamWGroups {
        let rule = |wd| Rule::Adam { beta1: 0.9, beta2, eps: 1e-8, weight_decay: wd, decoupled: true };
        let (decay, no_decay): (Vec<_>, Vec<_>) = params.iter().cloned().partition(|(_, p)| p.rank() >= 2);
        let groups = vec![
            ("decay", Optimizer::new(decay, rule(weight_decay), 0.0)),
            ("no_decay", Optimizer::new(no_decay, rule(0.0), 0.0)),
        ];
        AdamWGroups { params, groups, scaler: None }
    }

    /// The same optimizer with loss scaling for losses computed under f16 autocast (steps whose
    /// gradients overflow are skipped), when `on`.
    pub fn mixed_precision(mut self, on: bool) -> AdamWGroups {
        self.scaler = on.then(GradScaler::new);
        self
    }

    /// Steps taken.
    pub fn steps(&self) -> u64 {
        self.groups[0].1.steps()
    }

    /// One training step at learning rate `lr`: gradients of `loss`, clipped to global norm
    /// `clip`, computed with the loss in one realize, then both groups' updates. Returns the loss.
    pub fn step(&mut self, loss: &Tensor, lr: f64, clip: f64) -> Result<f32> {
        let (mut grads, finite) = match &mut self.scaler {
            Some(scaler) => {
                let mut grads = scaler.scale(loss).backward();
                let finite = scaler.unscale(&mut grads, &self.params)?;
                (grads, finite)
            }
            None => (loss.backward(), true),
        };
        clip_grad_norm(&mut grads, &self.params, clip);
        let mut pending: Vec<Tensor> =
            self.params.iter().filter_map(|(_, p)| grads.get(p).cloned()).collect();
        pending.push(loss.clone());
        Tensor::realize_all(&pending)?;
        for (_, opt) in &mut self.groups {
            opt.set_lr(lr);
            if finite {
                opt.step(&grads)?;
            }
        }
        if let Some(scaler) = &mut self.scaler {
            scaler.update();
        }
        loss.cast(DType::F32).item::<f32>()
    }

    /// Both groups' state, names prefixed by the group.
    pub fn state_dict(&self) -> Vec<(String, Tensor)> {
        let mut out = Vec::new();
        for (group, opt) in &self.groups {
            out.extend(opt.state_dict().into_iter().map(|(n, t)| (format!("{group}.{n}"), t)));
        }
        out
    }

    /// Restores what [`AdamWGroups::state_dict`] saved.
    pub fn load_state_dict(&mut self, entries: &[(String, Tensor)]) -> Result<()> {
        for (group, opt) in &mut self.groups {
            let prefix = format!("{group}.");
            let mine: Vec<(String, Tensor)> = entries
                .iter()
                .filter_map(|(n, t)| n.strip_prefix(&prefix).map(|n| (n.to_string(), t.clone())))
                .collect();
            opt.load_state_dict(&mine)?;
        }
        Ok(())
    }
}

/// The mean loss of `model` over `batches` batches of `windows` (steps 0, 1, …), in evaluation
/// mode (its modes are put back after).
pub fn evaluate(model: &Gpt, windows: &RandomWindows, batches: usize, device: &Device) -> Result<f64> {
    let modes = nn::modes(model);
    nn::eval(model);
    let result = no_grad(|| {
        let mut total = 0.0;
        for step in 0..batches {
            let batch = windows.batch(step as u64);
            let loss = model.loss(&batch.inputs.to(device), &batch.targets.to(device));
            total += f64::from(loss.item::<f32>()?);
        }
        Ok(total / batches as f64)
    });
    nn::restore_modes(model, &modes);
    result
}

/// Validation windows for the GPT recipes: a fixed key, so every run scores the same batches.
pub fn validation_windows(ids: &[i32], batch: usize, block: usize) -> Result<RandomWindows> {
    RandomWindows::new(ids.to_vec(), batch, block, RandomKey { seed: 1, stream: 1 })
}

/// Saves `model` (its state dict, with its configuration and `step` as metadata) to `path`.
pub fn save_gpt(path: &Path, model: &Gpt, step: u64) -> Result<()> {
    let c = model.config();
    let meta: HashMap<String, String> = [
        ("vocab_size", c.vocab_size.to_string()),
        ("block_size", c.block_size.to_string()),
        ("n_layer", c.n_layer.to_string()),
        ("n_head", c.n_head.to_string()),
        ("n_embd", c.n_embd.to_string()),
        ("dropout", c.dropout.to_string()),
        ("bias", c.bias.to_string()),
        ("step", step.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    checkpoint::save(path, &nn::state_dict(model), &meta)
}

/// A model rebuilt from a checkpoint written by [`save_gpt`], on `device`, and its step.
pub fn load_gpt(path: &Path, device: &Device) -> Result<(Gpt, u64)> {
    let saved = checkpoint::load(path)?;
    let field = |name: &str| -> Result<&String> {
        saved
            .metadata
            .get(name)
            .ok_or_else(|| Error::format(path, "safetensors", format!("no {name} in the metadata")))
    };
    let number = |name: &str| -> Result<usize> {
        field(name)?
            .parse()
            .map_err(|_| Error::format(path, "safetensors", format!("{name} is not a number")))
    };
    let config = GptConfig {
        vocab_size: number("vocab_size")?,
        block_size: number("block_size")?,
        n_layer: number("n_layer")?,
        n_head: number("n_head")?,
        n_embd: number("n_embd")?,
        dropout: field("dropout")?.parse().unwrap_or(0.0),
        bias: field("bias")? == "true",
    };
    let model = Gpt::new(config, device);
    checkpoint::load_into(&model, &saved.tensors, path)?;
    Ok((model, number("step")? as u64))
}

/// Parameters of `model` in millions, counting the tied embedding once.
pub fn millions(model: &dyn Module) -> f64 {
    parameter_count(&nn::parameters(model)) as f64 / 1e6
}

/// Elements of `params`, counting a tensor listed twice (tied weights) once.
pub fn parameter_count(params: &[(String, Tensor)]) -> usize {
    let mut seen: Vec<&Tensor> = Vec::new();
    for (_, p) in params {
        if !seen.iter().any(|s| s.same(p)) {
            seen.push(p);
        }
    }
    seen.iter().map(|p| p.numel()).sum()
}
