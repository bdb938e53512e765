//! How to train: the [`Task`] (what the model predicts, which picks the default loss and
//! metrics) and the [`TrainConfig`] a [`super::Trainer`] runs.

use std::path::PathBuf;

/// What the model predicts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Task {
    /// Class logits (N, classes) against class indices; cross-entropy loss by default.
    Classification { classes: usize },
    /// Values against values; mean-squared-error loss by default.
    Regression,
    /// Next-token logits (B, T, V) against token ids (B, T); by default the cross-entropy over
    /// the real target tokens (the targets' padding mask, where the batch has one), and the
    /// perplexity e^loss among the validation metrics.
    LanguageModel,
}

/// How to train.
#[derive(Clone, Debug)]
pub struct TrainConfig {
    /// Epochs to run (in total, counting resumed ones); `usize::MAX` for a run bounded by
    /// `max_steps` alone ([`TrainConfig::by_steps`]).
    pub epochs: usize,
    /// The task (sets the default loss and the metrics).
    pub task: Task,
    /// Stop after this many validations without a better validation loss: epochs, or
    /// evaluations when the run evaluates by steps (`eval_every`).
    pub early_stopping: Option<usize>,
    /// Stop after this many optimizer steps in total (counting resumed ones), mid-epoch if
    /// need be; that epoch is validated, logged and checkpointed like any other, and a resumed
    /// run continues it where it stopped. The progress bar then counts steps up to this.
    pub max_steps: Option<usize>,
    /// Evaluate every this many optimizer steps (and after step `max_steps`) instead of after
    /// each epoch, as nanoGPT's `eval_interval`: the best checkpoint and early stopping follow
    /// these evaluations, and each is logged in `steps.csv`.
    pub eval_every: Option<usize>,
    /// Validate on the first this many batches of the validation loader (the same batches every
    /// time, as nanoGPT's `eval_iters` but deterministic); all of them for `None`.
    pub eval_batches: Option<usize>,
    /// Micro-batches per optimizer step: their gradients are summed, each loss scaled by 1 /
    /// their number, so that a step equals one on the concatenated batch (an epoch's last step
    /// may have fewer). 1 for none.
    pub accumulate: usize,
    /// Log the L2 norm of every parameter's gradient (before clipping) every this many steps,
    /// to `grad_norms.csv` and `grad_norms.png`.
    pub grad_norms_every: Option<usize>,
    /// Where to write the checkpoints (`last.safetensors` and `best.safetensors`, each the
    /// model's state dict alone, with `last.optim.safetensors` and `best.optim.safetensors`
    /// beside them: the optimizer state and the logs), `log.csv`, `steps.csv`, the plots and
    /// `grad_norms.csv`.
    pub out_dir: Option<PathBuf>,
    /// Continue from the checkpoint `out_dir/last.safetensors` (with its
    /// `last.optim.safetensors`) if it exists.
    pub resume: bool,
    /// Clip the gradients' joint norm to this.
    pub clip_grad_norm: Option<f64>,
    /// Train in mixed precision: every forward pass (training and evaluation) in an f16
    /// [`crate::amp::autocast`] scope, the loss scaled by a [`crate::optim::GradScaler`] (whose
    /// finite check reads one value back per step), steps whose gradients overflow skipped.
    pub mixed_precision: bool,
    /// Show progress bars (on a terminal).
    pub progress: bool,
    /// Print a line per epoch and per evaluation.
    pub verbose: bool,
    /// Steps between reads of the losses for the step log and the progress bar.
    pub log_every: usize,
}

impl TrainConfig {
    /// `epochs` of `task`, no output folder, progress bars on.
    pub fn new(epochs: usize, task: Task) -> TrainConfig {
        TrainConfig {
            epochs,
            task,
            early_stopping: None,
            max_steps: None,
            eval_every: None,
            eval_batches: None,
            accumulate: 1,
            grad_norms_every: None,
            out_dir: None,
            resume: false,
            clip_grad_norm: None,
            mixed_precision: false,
            progress: true,
            verbose: true,
            log_every: 20,
        }
    }

    /// A run of `max_steps` optimizer steps with an evaluation every `eval_every` steps, as
    /// nanoGPT's (`max_iters`, `eval_interval`): epochs unbounded.
    pub fn by_steps(max_steps: usize, eval_every: usize, task: Task) -> TrainConfig {
        TrainConfig {
            max_steps: Some(max_steps),
            eval_every: Some(eval_every),
            ..TrainConfig::new(usize::MAX, task)
        }
    }
}
