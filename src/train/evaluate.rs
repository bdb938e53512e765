//! Validation: the mean loss over a loader's batches (all of them, or a fixed number of its first
//! ones, the same at every evaluation), with classification metrics or a language model's
//! perplexity, in evaluation mode and without gradients.

use super::step::{default_weight, on_device};
use super::{BatchSource, Task, Trainer};
use crate::nn;
use crate::train::metrics::{Confusion, roc_auc_ovr};
use crate::{DType, Result, Tensor, amp, no_grad};
use std::collections::BTreeMap;

/// A validation pass's results.
#[derive(Clone, Debug)]
pub struct Evaluation {
    /// Mean loss, weighted by each batch's items (samples, or tokens for a language model).
    pub loss: f64,
    /// Metrics by name: accuracy, precision, recall, f1 (macro), roc_auc (one-vs-rest) for a
    /// classification; perplexity (e^loss) for a language model.
    pub metrics: BTreeMap<String, f64>,
    /// The confusion matrix (classification).
    pub confusion: Option<Confusion>,
}

impl Trainer<'_> {
    /// Loss and metrics over the batches of `data`'s epoch 0, in evaluation mode and without
    /// gradients. Every module is left in the mode it was in. Panics for endless data (use
    /// [`Trainer::evaluate_first`]).
    #[track_caller]
    pub fn evaluate(&self, data: &dyn BatchSource) -> Result<Evaluation> {
        self.evaluate_first(data, None)
    }

    /// As [`Trainer::evaluate`], over the first `batches` batches of `data`'s epoch 0 (all of
    /// them for `None`, which endless data panics at): the same batches every time.
    #[track_caller]
    pub fn evaluate_first(&self, data: &dyn BatchSource, batches: Option<usize>) -> Result<Evaluation> {
        if batches.is_none() && data.batches_in(0).is_none() {
            panic!("Trainer::evaluate: the data is endless, so evaluate_first needs a number of batches");
        }
        let modes = nn::modes(self.model);
        nn::eval(self.model);
        let result = no_grad(|| self.evaluate_inner(data, batches));
        nn::restore_modes(self.model, &modes);
        result
    }

    fn evaluate_inner(&self, data: &dyn BatchSource, batches: Option<usize>) -> Result<Evaluation> {
        let task = self.config.task;
        let classes = match task {
            Task::Classification { classes } => Some(classes),
            Task::Regression | Task::LanguageModel => None,
        };
        let mut confusion = classes.map(Confusion::new);
        let (mut probs, mut labels) = (Vec::new(), Vec::new());
        // a classification step that yields no logits gets no metrics
        let mut scored = false;
        // the weighted loss sum stays on the device, realized batch by batch, and is read once
        let mut loss_sum = Tensor::zeros([], &self.device);
        let mut weight_sum = 0.0;
        for batch in data.batches_from(0, 0).take(batches.unwrap_or(usize::MAX)) {
            let out = {
                let _autocast = self.config.mixed_precision.then(|| amp::autocast(DType::F16));
                (self.step)(&on_device(&batch, &self.device), false)
            };
            let weight = match out.weight {
                Some(w) => w,
                None => default_weight(task, &batch)?,
            };
            loss_sum = &loss_sum + &(out.loss.cast(DType::F32) * weight);
            weight_sum += weight;
            match (&mut confusion, &out.logits) {
                (Some(conf), Some(logits)) => {
                    let p = logits.softmax(-1).cast(DType::F32);
                    let pred = logits.argmax(-1, false);
                    let truth = out.labels.as_ref().unwrap_or(&batch.targets).cast(DType::I32);
                    Tensor::realize_all(&[loss_sum.clone(), p.clone(), pred.clone(), truth.clone()])?;
                    let truth = truth.to_vec::<i32>()?;
                    conf.add(&truth, &pred.to_vec::<i32>()?);
                    probs.extend(p.to_vec::<f32>()?.into_iter().map(f64::from));
                    labels.extend(truth);
                    scored = true;
                }
                _ => loss_sum.realize()?,
            }
        }
        let loss = if weight_sum > 0.0 { loss_sum.item::<f32>()? as f64 / weight_sum } else { 0.0 };
        let mut metrics = BTreeMap::new();
        if !scored {
            confusion = None;
        }
        if let (Some(conf), Some(k)) = (&confusion, classes) {
            let (p, r, f1) = conf.macro_prf();
            metrics.insert("accuracy".into(), conf.accuracy());
            metrics.insert("precision".into(), p);
            metrics.insert("recall".into(), r);
            metrics.insert("f1".into(), f1);
            if let Some(auc) = roc_auc_ovr(&probs, &labels, k) {
                metrics.insert("roc_auc".into(), auc);
            }
        }
        if task == Task::LanguageModel {
            metrics.insert("perplexity".into(), loss.exp());
        }
        Ok(Evaluation { loss, metrics, confusion })
    }
}
