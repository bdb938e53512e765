//! A training run's checkpoint, and resuming from it.
//!
//! A checkpoint is a pair of safetensors files, each written atomically:
//!
//! - `last.safetensors`: the model's state dict and nothing else, so that PyTorch loads it as
//!   is: `model.load_state_dict(safetensors.torch.load_file(path), strict=True)`;
//! - `last.optim.safetensors` beside it: the optimizer's state (`{parameter}.{slot}` and
//!   `step`), with the logs of the run in its metadata (the epochs, the steps and the gradient
//!   norms).
//!
//! Both record, in their metadata, the epochs and optimizer steps done when they were written;
//! resume refuses a pair whose counts differ (a crash between the two writes, or files copied
//! from different runs) rather than continue from weights and state that do not belong
//! together.

use super::{BatchSource, Period, Trainer, log, step_log};
use crate::train::checkpoint::{self, Checkpoint};
use crate::{Error, Result, nn};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Metadata keys of the progress both files of a checkpoint record.
const EPOCHS: &str = "epochs_done";
const STEPS: &str = "steps_done";
/// Metadata keys of the logs, in the optimizer file: epochs, steps and gradient norms.
const HISTORY: &str = "history";
const STEPS_LOG: &str = "steps";
const GRAD_NORMS: &str = "grad_norms";

/// The optimizer file that goes with the weights file `weights`: `last.safetensors` →
/// `last.optim.safetensors`.
pub fn optimizer_path(weights: &Path) -> PathBuf {
    let name = weights.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let stem = name.strip_suffix(".safetensors").unwrap_or(&name);
    weights.with_file_name(format!("{stem}.optim.safetensors"))
}

/// Epochs and steps done, as a file's metadata records them.
fn progress(ck: &Checkpoint, path: &Path) -> Result<(String, String)> {
    let get = |key: &str| {
        ck.metadata.get(key).cloned().ok_or_else(|| {
            Error::format(
                path,
                "safetensors",
                format!("no {key} in the metadata: this is not a checkpoint the Trainer wrote"),
            )
        })
    };
    Ok((get(EPOCHS)?, get(STEPS)?))
}

impl Trainer<'_> {
    /// Saves a checkpoint: the model's state dict to `path` and the optimizer state with the
    /// history to its [`optimizer_path`] (`name.optim.safetensors`), each atomically.
    pub fn save_checkpoint(&self, path: &Path) -> Result<()> {
        let mut meta = HashMap::from([
            (EPOCHS.to_string(), self.history.len().to_string()),
            (STEPS.to_string(), self.optimizer.steps().to_string()),
        ]);
        checkpoint::save(path, &nn::state_dict(self.model), &meta)?;
        meta.insert(HISTORY.to_string(), log::to_json(&self.history));
        meta.insert(STEPS_LOG.to_string(), step_log::steps_to_json(&self.steps_log));
        meta.insert(GRAD_NORMS.to_string(), step_log::grad_norms_to_json(&self.grad_norms));
        checkpoint::save(optimizer_path(path), &self.optimizer.state_dict(), &meta)
    }

    /// Restores model, optimizer and logs from `out_dir/last.safetensors` and its optimizer
    /// file, if present, and brings the schedule to where it was (over the epochs of `train`).
    pub(super) fn resume(&mut self, train: &dyn BatchSource) -> Result<()> {
        let Some(dir) = &self.config.out_dir else {
            return Ok(());
        };
        let weights_path = dir.join("last.safetensors");
        let optim_path = optimizer_path(&weights_path);
        match (weights_path.exists(), optim_path.exists()) {
            (false, false) => return Ok(()),
            (true, true) => {}
            (has_weights, _) => {
                let (found, missing) =
                    if has_weights { (&weights_path, &optim_path) } else { (&optim_path, &weights_path) };
                return Err(Error::Invalid(format!(
                    "cannot resume: {} exists but {} does not; a checkpoint is the pair (delete {} to \
                     start over)",
                    found.display(),
                    missing.display(),
                    found.display()
                )));
            }
        }
        let weights = checkpoint::load(&weights_path)?;
        let state = checkpoint::load(&optim_path)?;
        let (saved, state_saved) = (progress(&weights, &weights_path)?, progress(&state, &optim_path)?);
        if saved != state_saved {
            return Err(Error::Invalid(format!(
                "cannot resume: {} was saved at step {} (epoch {}) but {} at step {} (epoch {}), so they \
                 are not one checkpoint (was the run stopped between the two writes?); delete both to \
                 start over",
                weights_path.display(),
                saved.1,
                saved.0,
                optim_path.display(),
                state_saved.1,
                state_saved.0
            )));
        }
        let history = state.metadata.get(HISTORY).map(|h| log::from_json(h, &optim_path)).transpose()?;
        let steps_log =
            state.metadata.get(STEPS_LOG).map(|s| step_log::steps_from_json(s, &optim_path)).transpose()?;
        let grad_norms = state
            .metadata
            .get(GRAD_NORMS)
            .map(|g| step_log::grad_norms_from_json(g, &optim_path))
            .transpose()?;
        checkpoint::load_into(self.model, &weights.tensors, &weights_path)?;
        self.optimizer.load_state_dict(&state.tensors).map_err(|e| match e {
            Error::Invalid(reason) => Error::format(&optim_path, "safetensors", reason),
            other => other,
        })?;
        self.history = history.unwrap_or_default();
        self.steps_log = steps_log.unwrap_or_default();
        // (a log of other parameters, from before the model changed, does not continue)
        if let Some(norms) = grad_norms.filter(|g| g.names == self.grad_norms.names) {
            self.grad_norms = norms;
        }
        let finished: Vec<bool> = self.history.iter().map(|r| self.finished(train, r)).collect();
        match &mut self.scheduler {
            // a schedule's state is a function of the periods it has seen (and the validation
            // losses, for reduce-on-plateau), so replaying them restores it exactly
            Some((s, Period::Epoch)) => {
                for (record, _) in self.history.iter().zip(finished).filter(|(_, finished)| *finished) {
                    s.step(record.val_loss);
                }
                self.optimizer.follow(s.as_ref());
            }
            Some((s, Period::Batch)) => {
                for _ in 0..self.optimizer.steps() {
                    s.step(None);
                }
                self.optimizer.follow(s.as_ref());
            }
            None => {
                if let Some(last) = self.history.last() {
                    self.optimizer.set_lr(last.lr);
                }
            }
        }
        println!(
            "resumed from {} at step {} (epoch {})",
            weights_path.display(),
            self.optimizer.steps(),
            self.history.len()
        );
        Ok(())
    }
}
