//! The `Trainer`: training by epochs or, as nanoGPT, by steps; a progress bar (loss and
//! samples/s, or step/max_steps); validation with metrics after each epoch or every N steps over
//! a fixed number of batches; a learning-rate schedule by epoch or by step; gradient
//! accumulation and clipping; early stopping; atomic checkpoints of the last and the best model
//! with resume (`resume.rs`); CSV logs of every epoch and every step, the gradient norm of every
//! parameter on request, and PNG plots of the curves (`outputs.rs`).
//!
//! What the model does with a batch is a step ([`StepOutput`], `step.rs`): the task's default
//! (forward the inputs, then the task's loss), a loss closure over (output, target), or any
//! batch-to-loss closure ([`Trainer::with_step`]) for models whose forward takes lengths, masks or
//! a second sequence.
//!
//! Each optimizer step is one realize: forward, backward, the step's loss (and gradient norms,
//! where asked for) and the fused optimizer updates go to the device together (with gradient
//! accumulation, one realize per micro-batch). Losses stay on the device and are read back
//! together every `log_every` steps, at evaluations and at the end of each epoch.
//!
//! ```no_run
//! # use kiln::{Device, Tensor, data::lm::RandomWindows, nn::{self, Module}, rng::RandomKey};
//! # use kiln::optim::{Optimizer, Rule, decay_groups, schedule::WarmupCosine};
//! # use kiln::train::{Task, TrainConfig, Trainer};
//! # fn gpt(train_ids: Vec<i32>, val_ids: Vec<i32>, model: &dyn Module) -> kiln::Result<()> {
//! // nanoGPT's loop: 2000 steps on random windows, validation every 250 steps on 20 batches
//! // of windows of the validation text (the same 20 each time)
//! let train = RandomWindows::new(train_ids, 12, 64, RandomKey { seed: 1337, stream: 0 })?;
//! let val = RandomWindows::new(val_ids, 12, 64, RandomKey { seed: 1337, stream: 1 })?;
//! let mut config = TrainConfig::by_steps(2000, 250, Task::LanguageModel);
//! config.eval_batches = Some(20);
//! config.clip_grad_norm = Some(1.0);
//! let rule = Rule::adamw().betas(0.9, 0.99);
//! let optimizer = Optimizer::with_groups(decay_groups(nn::parameters(model), 0.1), rule, 1e-3);
//! let mut trainer = Trainer::new(model, optimizer, Device::Cpu, config)
//!     .with_batch_scheduler(WarmupCosine::new(1e-3, 1e-4, 100, 2000));
//! trainer.fit(&train, Some(&val))?;
//! # Ok(()) }
//! ```

pub mod checkpoint;
mod config;
mod evaluate;
pub mod log;
pub mod metrics;
mod outputs;
pub mod plot;
mod resume;
mod source;
mod step;
pub mod step_log;

pub use config::{Task, TrainConfig};
pub use evaluate::Evaluation;
pub use resume::optimizer_path;
pub use source::BatchSource;
pub use step::StepOutput;

use crate::data::Batch;
use crate::nn::{self, Module};
use crate::optim::{GradScaler, Optimizer, Scheduler, clip_grad_norm, grad_norms};
use crate::{DType, Device, Error, Gradients, Result, Tensor, amp, no_grad};
use indicatif::ProgressBar;
use log::EpochRecord;
use std::collections::BTreeMap;
use std::time::Instant;
use step::{StepFn, default_step, loss_step, on_device};
use step_log::{GradNormLog, GradNormRecord, StepRecord};

/// When a learning-rate schedule advances.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Period {
    /// After every epoch, with the validation loss.
    Epoch,
    /// After every optimizer step (warm-up, one-cycle, nanoGPT's cosine).
    Batch,
}

/// A step computed on the device whose loss (and gradient norms) are not read back yet.
struct UnreadStep {
    step: usize,
    lr: f64,
    /// The loss, f32 scalar.
    loss: Tensor,
    /// The gradient norms, f32 (parameters), at the steps they are logged.
    norms: Option<Tensor>,
}

/// How a run stands between steps.
struct Run {
    /// The best validation loss so far.
    best: f64,
    /// Evaluations by steps since the best one, for early stopping counted in evaluations.
    since_best: usize,
    /// The last evaluation by steps in the current epoch.
    last_evaluation: Option<Evaluation>,
    /// Early stopping ended the run.
    stopped: bool,
    /// The run's progress bar, when it counts steps (`max_steps`); else each epoch has its own.
    bar: Option<ProgressBar>,
}

/// An epoch's training so far: what the resumed part of it brought, and what this run added.
struct EpochTally {
    epoch: usize,
    steps: usize,
    resumed_samples: usize,
    resumed_seconds: f64,
    resumed_loss_sum: f64,
    /// Samples trained on in this run.
    seen: usize,
    /// The sum of batch losses × samples in this run, on the device.
    running: Tensor,
    start: Instant,
}

impl EpochTally {
    fn new(epoch: usize, resumed: Option<EpochRecord>, device: &Device) -> EpochTally {
        let (steps, samples, seconds, loss_sum) = resumed
            .map(|r| (r.steps, r.samples, r.seconds, r.train_loss * r.samples as f64))
            .unwrap_or_default();
        EpochTally {
            epoch,
            steps,
            resumed_samples: samples,
            resumed_seconds: seconds,
            resumed_loss_sum: loss_sum,
            seen: 0,
            running: Tensor::zeros([], device),
            start: Instant::now(),
        }
    }

    /// The epoch's record so far, without validation (reads the running loss back).
    fn record(&self, lr: f64) -> Result<EpochRecord> {
        let loss = self.resumed_loss_sum + self.running.item::<f32>()? as f64;
        let samples = self.resumed_samples + self.seen;
        let seconds = self.resumed_seconds + self.start.elapsed().as_secs_f64();
        Ok(EpochRecord {
            epoch: self.epoch,
            train_loss: loss / samples.max(1) as f64,
            val_loss: None,
            metrics: BTreeMap::new(),
            lr,
            seconds,
            samples_per_sec: samples as f64 / seconds.max(1e-9),
            steps: self.steps,
            samples,
        })
    }
}

/// Trains a model. See the module doc.
pub struct Trainer<'a> {
    model: &'a dyn Module,
    optimizer: Optimizer,
    step: StepFn<'a>,
    scheduler: Option<(Box<dyn Scheduler + 'a>, Period)>,
    device: Device,
    config: TrainConfig,
    history: Vec<EpochRecord>,
    steps_log: Vec<StepRecord>,
    /// The parameters whose gradient norms are logged, in the model's order (the optimizer's
    /// may be grouped), and their log.
    norm_params: Vec<(String, Tensor)>,
    grad_norms: GradNormLog,
    unread: Vec<UnreadStep>,
    /// The loss scaling of mixed-precision training (`TrainConfig::mixed_precision`).
    scaler: Option<GradScaler>,
}

impl<'a> Trainer<'a> {
    /// A trainer for `model` (whose parameters live on `device`), with the task's default step.
    pub fn new(
        model: &'a dyn Module,
        optimizer: Optimizer,
        device: Device,
        config: TrainConfig,
    ) -> Trainer<'a> {
        let held = optimizer.params();
        let mut norm_params: Vec<(String, Tensor)> = Vec::new();
        for (name, p) in nn::parameters(model).into_iter().chain(held.iter().cloned()) {
            let trained = held.iter().any(|(_, h)| h.same(&p));
            if trained && !norm_params.iter().any(|(_, seen)| seen.same(&p)) {
                norm_params.push((name, p));
            }
        }
        let names = norm_params.iter().map(|(n, _)| n.clone()).collect();
        Trainer {
            model,
            optimizer,
            step: default_step(model, config.task),
            scheduler: None,
            device,
            history: Vec::new(),
            steps_log: Vec::new(),
            norm_params,
            grad_norms: GradNormLog { names, records: Vec::new() },
            unread: Vec::new(),
            scaler: config.mixed_precision.then(GradScaler::new),
            config,
        }
    }

    /// Replaces the loss function (output, target) → scalar of the default step, which forwards
    /// the batch's inputs through the model.
    pub fn with_loss(mut self, loss: impl Fn(&Tensor, &Tensor) -> Tensor + 'a) -> Trainer<'a> {
        self.step = loss_step(self.model, self.config.task, loss);
        self
    }

    /// Replaces the whole step: `step(batch, training)` runs the model on a batch (on the
    /// trainer's device, padding included) and returns the loss, with the class logits for a
    /// classification's metrics; `training` is false in evaluation. For models whose forward
    /// needs more than the inputs: lengths, masks, a target sequence.
    ///
    /// ```
    /// use kiln::data::{Batch, DataLoader};
    /// use kiln::data::sequence::SequenceDataset;
    /// use kiln::nn::{self, Embedding, Linear, Module, Visitor};
    /// use kiln::optim::{Optimizer, Rule};
    /// use kiln::train::{StepOutput, Task, TrainConfig, Trainer};
    /// use kiln::{DType, Device, Tensor};
    ///
    /// /// Classifies the mean embedding of a sequence's real tokens: its forward needs the mask.
    /// struct MeanPool {
    ///     embed: Embedding,
    ///     head: Linear,
    /// }
    /// impl MeanPool {
    ///     fn forward_masked(&self, ids: &Tensor, mask: &Tensor) -> Tensor {
    ///         let mask = mask.cast(DType::F32).unsqueeze(-1);
    ///         let sum = (self.embed.forward(ids) * &mask).sum(1, false);
    ///         self.head.forward(&(sum / mask.sum(1, false)))
    ///     }
    /// }
    /// impl Module for MeanPool {
    ///     fn forward(&self, ids: &Tensor) -> Tensor {
    ///         self.forward_masked(ids, &ids.ge_scalar(0.0))
    ///     }
    ///     fn visit(&self, v: &mut dyn Visitor) {
    ///         v.child("embed", &self.embed);
    ///         v.child("head", &self.head);
    ///     }
    /// }
    ///
    /// let dev = Device::Cpu;
    /// let model = MeanPool { embed: Embedding::new(10, 8, &dev), head: Linear::new(8, 2, &dev) };
    /// let data = SequenceDataset::classification(vec![vec![1, 2, 3], vec![4, 5], vec![6]], vec![0, 1, 0]);
    /// let loader = DataLoader::new(data, 2);
    /// let mut config = TrainConfig::new(2, Task::Classification { classes: 2 });
    /// (config.progress, config.verbose) = (false, false);
    /// let optimizer = Optimizer::new(nn::parameters(&model), Rule::adam(), 1e-2);
    /// let mut trainer = Trainer::new(&model, optimizer, dev, config).with_step(|batch: &Batch, _| {
    ///     let mask = &batch.input_padding.as_ref().expect("padded sequences").mask;
    ///     let logits = model.forward_masked(&batch.inputs, mask);
    ///     StepOutput::new(logits.cross_entropy(&batch.targets)).with_logits(logits)
    /// });
    /// trainer.fit(&loader, Some(&loader))?;
    /// assert!(trainer.history()[1].metrics.contains_key("accuracy"));
    /// # Ok::<(), kiln::Error>(())
    /// ```
    pub fn with_step(mut self, step: impl Fn(&Batch, bool) -> StepOutput + 'a) -> Trainer<'a> {
        self.step = Box::new(step);
        self
    }

    /// Steps `scheduler` after every epoch (with the validation loss) and applies its rate.
    pub fn with_scheduler(mut self, scheduler: impl Scheduler + 'a) -> Trainer<'a> {
        self.optimizer.follow(&scheduler);
        self.scheduler = Some((Box::new(scheduler), Period::Epoch));
        self
    }

    /// Steps `scheduler` after every optimizer step, for schedules counted in steps (linear
    /// warm-up, one-cycle, [`WarmupCosine`](crate::optim::schedule::WarmupCosine)), and applies
    /// its rate.
    pub fn with_batch_scheduler(mut self, scheduler: impl Scheduler + 'a) -> Trainer<'a> {
        self.optimizer.follow(&scheduler);
        self.scheduler = Some((Box::new(scheduler), Period::Batch));
        self
    }

    /// The epochs run so far.
    pub fn history(&self) -> &[EpochRecord] {
        &self.history
    }

    /// The steps run so far (those whose losses have been read back: all of them once `fit`
    /// returns).
    pub fn steps_log(&self) -> &[StepRecord] {
        &self.steps_log
    }

    /// The gradient norms logged so far ([`TrainConfig::grad_norms_every`]).
    pub fn grad_norms_log(&self) -> &GradNormLog {
        &self.grad_norms
    }

    /// The optimizer.
    pub fn optimizer(&self) -> &Optimizer {
        &self.optimizer
    }

    /// Trains for the configured epochs or steps (or until early stopping), validating on `val`
    /// after each epoch, or every `eval_every` steps. Returns the history of epochs; the steps
    /// are in [`Trainer::steps_log`].
    ///
    /// Each module trains in the mode it is in: modules are built in training mode, and one
    /// the caller put in evaluation mode (a frozen batch norm) stays there.
    ///
    /// Panics when `train` is endless ([`RandomWindows`](crate::data::lm::RandomWindows)) and
    /// the configuration sets no `max_steps`, when `val` is endless and it sets no
    /// `eval_batches`, or when `accumulate` is 0.
    #[track_caller]
    pub fn fit(&mut self, train: &dyn BatchSource, val: Option<&dyn BatchSource>) -> Result<&[EpochRecord]> {
        if train.batches_in(1).is_none() && self.config.max_steps.is_none() {
            panic!("Trainer::fit: the training data is endless, so the run needs TrainConfig::max_steps");
        }
        if val.is_some_and(|v| v.batches_in(0).is_none()) && self.config.eval_batches.is_none() {
            panic!(
                "Trainer::fit: the validation data is endless, so the run needs TrainConfig::eval_batches"
            );
        }
        if self.config.accumulate == 0 {
            panic!("Trainer::fit: TrainConfig::accumulate must be at least 1 micro-batch per step");
        }
        if let Some(dir) = &self.config.out_dir {
            std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        }
        if self.config.resume {
            self.resume(train)?;
        }
        let by_evaluations = self.config.eval_every.is_some() && val.is_some();
        let mut run = self.run_so_far(by_evaluations);
        // an epoch that `max_steps` (or early stopping) ended early goes on where it stopped
        let unfinished_last = self.history.last().is_some_and(|r| !self.finished(train, r));
        let mut unfinished = if unfinished_last { self.history.pop() } else { None };
        let mut since_best_epoch = 0;
        for epoch in self.history.len() + 1..=self.config.epochs {
            if self.steps_left() == Some(0) || run.stopped {
                break;
            }
            let trained = self.train_epoch(train, val, epoch, unfinished.take(), &mut run)?;
            let finished = self.finished(train, &trained);
            let evaluation = if by_evaluations {
                run.last_evaluation.take()
            } else {
                val.map(|v| self.evaluate_first(v, self.config.eval_batches)).transpose()?
            };
            let record = EpochRecord {
                val_loss: evaluation.as_ref().map(|e| e.loss),
                metrics: evaluation.as_ref().map(|e| e.metrics.clone()).unwrap_or_default(),
                ..trained
            };
            self.report(&record, self.epoch_steps(train, epoch), &run);
            self.history.push(record);
            if let (Some((s, Period::Epoch)), true) = (&mut self.scheduler, finished) {
                s.step(evaluation.as_ref().map(|e| e.loss));
                self.optimizer.follow(s.as_ref());
            }
            // by evaluations, the best checkpoint was written at the evaluation that made it
            let improved = !by_evaluations && evaluation.as_ref().is_some_and(|e| e.loss < run.best);
            if let (false, Some(e)) = (by_evaluations, &evaluation) {
                run.best = run.best.min(e.loss);
            }
            self.write_outputs(improved)?;
            if !finished {
                break;
            }
            since_best_epoch = if improved { 0 } else { since_best_epoch + 1 };
            let patience = self.config.early_stopping.filter(|_| !by_evaluations && val.is_some());
            if patience.is_some_and(|patience| since_best_epoch >= patience) {
                self.say(
                    &run,
                    format!("early stopping: no better validation loss for {since_best_epoch} epochs"),
                );
                break;
            }
        }
        // a resumed run with nothing left to train keeps the epoch it would have continued
        if let Some(record) = unfinished {
            self.history.push(record);
        }
        if let Some(bar) = &run.bar {
            bar.finish_and_clear();
        }
        Ok(&self.history)
    }

    /// The best validation loss in the logs so far, and for a run that evaluates by steps, the
    /// evaluations since it (so that a resumed run keeps counting toward early stopping).
    fn run_so_far(&self, by_evaluations: bool) -> Run {
        // (an unfinished epoch's validation counts: `best.safetensors` may hold its weights)
        let best_epoch = self.history.iter().filter_map(|r| r.val_loss).fold(f64::INFINITY, f64::min);
        // the evaluations by steps, counted as `evaluate_by_steps` counts them
        let (mut best_evaluation, mut since_best) = (f64::INFINITY, 0);
        for v in self.steps_log.iter().filter_map(|r| r.val_loss) {
            if v < best_evaluation {
                (best_evaluation, since_best) = (v, 0);
            } else {
                since_best += 1;
            }
        }
        let best = best_epoch.min(best_evaluation);
        let stopped = by_evaluations && self.config.early_stopping.is_some_and(|p| since_best >= p);
        let bar = self.config.max_steps.map(|max| {
            let bar = self.progress_bar(max as u64);
            bar.set_position(self.optimizer.steps());
            bar
        });
        Run { best, since_best, last_evaluation: None, stopped, bar }
    }

    /// Optimizer steps in epoch `epoch`, if the data has epochs.
    fn epoch_steps(&self, train: &dyn BatchSource, epoch: usize) -> Option<usize> {
        train.batches_in(epoch as u64).map(|n| n.div_ceil(self.config.accumulate))
    }

    /// Whether the epoch of `record` ran all its steps.
    fn finished(&self, train: &dyn BatchSource, record: &EpochRecord) -> bool {
        self.epoch_steps(train, record.epoch) == Some(record.steps)
    }

    /// Optimizer steps left before `max_steps`, if there is a limit.
    fn steps_left(&self) -> Option<usize> {
        self.config.max_steps.map(|max| max.saturating_sub(self.optimizer.steps() as usize))
    }

    /// Trains epoch `epoch` (from where `resumed`, its record so far, stopped) until its last
    /// batch, `max_steps` or early stopping, evaluating by steps if the run does. Returns its
    /// record, without validation.
    fn train_epoch(
        &mut self,
        train: &dyn BatchSource,
        val: Option<&dyn BatchSource>,
        epoch: usize,
        resumed: Option<EpochRecord>,
        run: &mut Run,
    ) -> Result<EpochRecord> {
        let params = nn::parameters(self.model);
        let accumulate = self.config.accumulate;
        let epoch_batches = train.batches_in(epoch as u64);
        let mut tally = EpochTally::new(epoch, resumed, &self.device);
        // the run's bar when it counts steps, else one for this epoch
        let bar = match &run.bar {
            Some(bar) => {
                if epoch_batches.is_some() {
                    bar.set_prefix(format!("epoch {epoch} · step"));
                }
                bar.clone()
            }
            None => {
                let bar = self.progress_bar(self.epoch_steps(train, epoch).unwrap_or(0) as u64);
                bar.set_prefix(format!("epoch {epoch}/{}", self.config.epochs));
                bar.set_position(tally.steps as u64);
                bar
            }
        };
        let mut consumed = tally.steps * accumulate;
        let mut batches = train.batches_from(epoch as u64, consumed);
        run.last_evaluation = None;
        while self.steps_left() != Some(0) && !run.stopped {
            let micro = epoch_batches.map_or(accumulate, |n| accumulate.min(n - consumed));
            if micro == 0 {
                break;
            }
            let mut grads = Gradients::default();
            let mut loss_sum = Tensor::zeros([], &self.device);
            for i in 0..micro {
                let batch = batches.next().expect("the training data yields the batches it announces");
                let n = batch.len();
                let out = {
                    let _autocast = self.scaler.is_some().then(|| amp::autocast(DType::F16));
                    (self.step)(&on_device(&batch, &self.device), true)
                };
                let scaled = if micro == 1 { out.loss.clone() } else { &out.loss * (1.0 / micro as f64) };
                let scaled = match &self.scaler {
                    Some(scaler) => scaler.scale(&scaled),
                    None => scaled,
                };
                grads.accumulate(scaled.backward());
                let loss = out.loss.detach().cast(DType::F32);
                (tally.running, loss_sum) =
                    no_grad(|| (&tally.running + &(&loss * n as f64), &loss_sum + &loss));
                tally.seen += n;
                if i + 1 < micro {
                    // this micro-batch's gradients now, so that its activations are freed
                    // before the next one's are built
                    let mut sums: Vec<Tensor> =
                        params.iter().filter_map(|(_, p)| grads.get(p).cloned()).collect();
                    sums.extend([tally.running.clone(), loss_sum.clone()]);
                    Tensor::realize_all(&sums)?;
                }
            }
            // mixed precision: the true gradients, and whether they are all finite
            let finite = match &mut self.scaler {
                Some(scaler) => scaler.unscale(&mut grads, &params)?,
                None => true,
            };
            let step = self.optimizer.steps() as usize + 1;
            let norms = match self.config.grad_norms_every {
                Some(every) if step.is_multiple_of(every.max(1)) => grad_norms(&grads, &self.norm_params),
                _ => None,
            };
            if let Some(max) = self.config.clip_grad_norm {
                clip_grad_norm(&mut grads, &params, max);
            }
            let loss = no_grad(|| loss_sum / micro as f64);
            let mut also = vec![tally.running.clone(), loss.clone()];
            also.extend(norms.clone());
            let lr = self.optimizer.lr();
            if finite {
                self.optimizer.step_with(&grads, &also)?;
            } else {
                // an overflow: no update, the scale backs off (`GradScaler`)
                Tensor::realize_all(&also)?;
            }
            if let Some(scaler) = &mut self.scaler {
                scaler.update();
            }
            self.unread.push(UnreadStep { step, lr, loss, norms });
            if let Some((s, Period::Batch)) = &mut self.scheduler {
                s.step(None);
                self.optimizer.follow(s.as_ref());
            }
            consumed += micro;
            tally.steps += 1;
            bar.inc(1);
            if tally.steps.is_multiple_of(self.config.log_every.max(1)) {
                self.read_steps()?;
                self.show_progress(&bar, &tally);
            }
            let evaluate_now = self.config.eval_every.is_some_and(|every| step.is_multiple_of(every.max(1)))
                || self.steps_left() == Some(0);
            if let (Some(val), true, Some(_)) = (val, evaluate_now, self.config.eval_every) {
                self.evaluate_by_steps(val, &tally, run)?;
            }
        }
        self.read_steps()?;
        if run.bar.is_none() {
            bar.finish_and_clear();
        }
        tally.record(self.optimizer.lr())
    }

    /// An evaluation of a run that evaluates by steps, after its latest step: logged with the step,
    /// reported, checkpointed (`last`, and `best` if it is the best so far, each with the epoch's
    /// record so far), and counted toward early stopping.
    fn evaluate_by_steps(&mut self, val: &dyn BatchSource, tally: &EpochTally, run: &mut Run) -> Result<()> {
        self.read_steps()?;
        let evaluation = self.evaluate_first(val, self.config.eval_batches)?;
        let improved = evaluation.loss < run.best;
        if improved {
            (run.best, run.since_best) = (evaluation.loss, 0);
        } else {
            run.since_best += 1;
        }
        if let Some(last) = self.steps_log.last_mut() {
            last.val_loss = Some(evaluation.loss);
        }
        self.report_evaluation(&evaluation, run);
        let record = EpochRecord {
            val_loss: Some(evaluation.loss),
            metrics: evaluation.metrics.clone(),
            ..tally.record(self.optimizer.lr())?
        };
        self.history.push(record);
        let written = self.write_outputs(improved);
        self.history.pop();
        written?;
        run.last_evaluation = Some(evaluation);
        if let Some(patience) = self.config.early_stopping
            && run.since_best >= patience
        {
            run.stopped = true;
            let since = run.since_best;
            self.say(run, format!("early stopping: no better validation loss for {since} evaluations"));
        }
        Ok(())
    }

    /// Reads back the losses (and gradient norms) of the steps computed since the last read,
    /// with one download, into the step logs.
    fn read_steps(&mut self) -> Result<()> {
        if self.unread.is_empty() {
            return Ok(());
        }
        let unread = std::mem::take(&mut self.unread);
        let parts: Vec<Tensor> =
            unread.iter().flat_map(|u| std::iter::once(u.loss.reshape([1])).chain(u.norms.clone())).collect();
        let values = no_grad(|| Tensor::concat(&parts, 0)).to_f64_vec()?;
        let mut values = values.into_iter();
        for u in unread {
            let loss = values.next().expect("one loss per step");
            self.steps_log.push(StepRecord { step: u.step, loss, lr: u.lr, val_loss: None });
            if u.norms.is_some() {
                let norms = values.by_ref().take(self.grad_norms.names.len()).collect();
                self.grad_norms.records.push(GradNormRecord { step: u.step, norms });
            }
        }
        Ok(())
    }
}
