//! The batch-to-loss step the Trainer runs for every batch: what a model does with a batch (its
//! forward may take lengths, masks or a state besides the inputs) and the loss it yields, with
//! the logits that classification metrics are computed from. The Trainer's tasks are built-in
//! steps; [`Trainer::with_step`](super::Trainer::with_step) replaces them.

use super::Task;
use crate::data::{Batch, Padding};
use crate::nn::Module;
use crate::nn::loss::{masked_sequence_cross_entropy, mse, sequence_cross_entropy};
use crate::{Device, Tensor};

/// What one step on a batch yields.
///
/// ```
/// use kiln::train::StepOutput;
/// use kiln::{Device, Tensor};
/// let logits = Tensor::zeros([2, 3], &Device::Cpu);
/// let labels = Tensor::from_vec(vec![0i32, 2], [2], &Device::Cpu);
/// let out = StepOutput::new(logits.cross_entropy(&labels)).with_logits(logits);
/// assert!(out.logits.is_some() && out.weight.is_none());
/// ```
pub struct StepOutput {
    /// The scalar loss: the mean over the batch's items (samples, or real tokens).
    pub loss: Tensor,
    /// Class logits (N, classes), for the metrics of a [`Task::Classification`]: accuracy,
    /// precision, recall, F1, ROC-AUC and the confusion matrix. Read only in evaluation.
    pub logits: Option<Tensor>,
    /// The classes (N) the logits are scored against, where they are not the batch's targets.
    pub labels: Option<Tensor>,
    /// How many items `loss` is the mean over, which weighs the batch in a validation mean.
    /// `None`: the batch's samples, or for a [`Task::LanguageModel`] its real target tokens.
    pub weight: Option<f64>,
}

impl StepOutput {
    /// A step that yields `loss` alone.
    pub fn new(loss: Tensor) -> StepOutput {
        StepOutput { loss, logits: None, labels: None, weight: None }
    }

    /// With the class logits (N, classes) that classification metrics score.
    pub fn with_logits(mut self, logits: Tensor) -> StepOutput {
        self.logits = Some(logits);
        self
    }

    /// With the classes (N) the logits are scored against, in place of the batch's targets.
    pub fn with_labels(mut self, labels: Tensor) -> StepOutput {
        self.labels = Some(labels);
        self
    }

    /// With the number of items the loss is a mean over.
    pub fn with_weight(mut self, weight: f64) -> StepOutput {
        self.weight = Some(weight);
        self
    }
}

/// A batch (on the trainer's device) and whether this is training (`false` in evaluation) to the
/// step's output.
pub(super) type StepFn<'a> = Box<dyn Fn(&Batch, bool) -> StepOutput + 'a>;

/// The step of `task` with its default loss: cross-entropy of the logits for a classification,
/// mean squared error for a regression, and for a language model the cross-entropy of (B, T, V)
/// logits over the real target tokens (all of them, or those the targets' padding mask marks).
pub(super) fn default_step<'a>(model: &'a dyn Module, task: Task) -> StepFn<'a> {
    match task {
        Task::Classification { .. } => loss_step(model, task, |out, y| out.cross_entropy(y)),
        Task::Regression => loss_step(model, task, mse),
        Task::LanguageModel => Box::new(move |batch: &Batch, _| {
            let logits = model.forward(&batch.inputs);
            StepOutput::new(match &batch.target_padding {
                Some(padding) => masked_sequence_cross_entropy(&logits, &batch.targets, &padding.mask),
                None => sequence_cross_entropy(&logits, &batch.targets, None),
            })
        }),
    }
}

/// The step `model.forward(inputs)` then `loss(output, targets)`; a classification's output is
/// its logits.
pub(super) fn loss_step<'a>(
    model: &'a dyn Module,
    task: Task,
    loss: impl Fn(&Tensor, &Tensor) -> Tensor + 'a,
) -> StepFn<'a> {
    Box::new(move |batch: &Batch, _| {
        let out = model.forward(&batch.inputs);
        let step = StepOutput::new(loss(&out, &batch.targets));
        match task {
            Task::Classification { .. } => step.with_logits(out),
            Task::Regression | Task::LanguageModel => step,
        }
    })
}

/// The batch on `device`: inputs, targets and their padding. Lazy, so an upload the step does
/// not use is never made, and those it uses ride in the step's one submission.
pub(super) fn on_device(batch: &Batch, device: &Device) -> Batch {
    let padding = |p: &Padding| Padding { lengths: p.lengths.to(device), mask: p.mask.to(device) };
    Batch {
        inputs: batch.inputs.to(device),
        targets: batch.targets.to(device),
        input_padding: batch.input_padding.as_ref().map(padding),
        target_padding: batch.target_padding.as_ref().map(padding),
    }
}

/// The items a batch's loss is a mean over, unless the step says otherwise: for a language
/// model its real target tokens (read from the host batch, no device read), else its samples.
pub(super) fn default_weight(task: Task, batch: &Batch) -> crate::Result<f64> {
    Ok(match (task, &batch.target_padding) {
        (Task::LanguageModel, Some(p)) => p.lengths.to_vec::<i32>()?.iter().map(|&n| n as f64).sum(),
        (Task::LanguageModel, None) => batch.targets.numel() as f64,
        _ => batch.len() as f64,
    })
}
