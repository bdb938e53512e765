//! The `Trainer`: epochs of training with a progress bar (loss and samples/s), validation with
//! metrics after each epoch, a learning-rate schedule, early stopping, a limit on the steps,
//! atomic checkpoints with resume (`resume.rs`), a CSV log of every epoch and PNG plots of the
//! curves.
//!
//! Each training step is one realize: forward, backward, the running loss and the fused
//! optimizer updates go to the device together; the loss is read back only every
//! `log_every` steps, for the progress bar.

pub mod checkpoint;
pub mod log;
pub mod metrics;
pub mod plot;
mod resume;

pub use resume::optimizer_path;

use crate::data::DataLoader;
use crate::nn::{self, Module};
use crate::optim::{Optimizer, Scheduler, clip_grad_norm};
use crate::{DType, Device, Error, Result, Tensor, no_grad};
use indicatif::{ProgressBar, ProgressStyle};
use log::EpochRecord;
use metrics::{Confusion, roc_auc_ovr};
use plot::{Series, line_plot};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

/// What the model predicts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Task {
    /// Class logits (N, classes) against class indices; cross-entropy loss by default.
    Classification { classes: usize },
    /// Values against values; mean-squared-error loss by default.
    Regression,
}

/// How to train.
#[derive(Clone, Debug)]
pub struct TrainConfig {
    /// Epochs to run (in total, counting resumed ones).
    pub epochs: usize,
    /// The task (sets the default loss and the metrics).
    pub task: Task,
    /// Stop after this many epochs without a better validation loss.
    pub early_stopping: Option<usize>,
    /// Stop after this many optimizer steps in total (counting resumed ones), mid-epoch if
    /// need be; that epoch is validated, logged and checkpointed like any other, and a resumed
    /// run continues it where it stopped.
    pub max_steps: Option<usize>,
    /// Where to write the checkpoints (`last.safetensors` and `best.safetensors`, each the
    /// model's state dict alone, with `last.optim.safetensors` and `best.optim.safetensors`
    /// beside them: the optimizer state and the history), `log.csv` and the plots.
    pub out_dir: Option<PathBuf>,
    /// Continue from the checkpoint `out_dir/last.safetensors` (with its
    /// `last.optim.safetensors`) if it exists.
    pub resume: bool,
    /// Clip the gradients' joint norm to this.
    pub clip_grad_norm: Option<f64>,
    /// Show progress bars (on a terminal).
    pub progress: bool,
    /// Print a line per epoch.
    pub verbose: bool,
    /// Steps between reads of the loss for the progress bar.
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
            out_dir: None,
            resume: false,
            clip_grad_norm: None,
            progress: true,
            verbose: true,
            log_every: 20,
        }
    }
}

/// A validation pass's results.
#[derive(Clone, Debug)]
pub struct Evaluation {
    /// Mean loss.
    pub loss: f64,
    /// Metrics by name: accuracy, precision, recall, f1 (macro), roc_auc (one-vs-rest).
    pub metrics: BTreeMap<String, f64>,
    /// The confusion matrix (classification).
    pub confusion: Option<Confusion>,
}

type LossFn<'a> = Box<dyn Fn(&Tensor, &Tensor) -> Tensor + 'a>;

/// When a learning-rate schedule advances.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Period {
    /// After every epoch, with the validation loss.
    Epoch,
    /// After every optimizer step (warm-up, one-cycle).
    Batch,
}

/// Trains a model. See the module doc.
pub struct Trainer<'a> {
    model: &'a dyn Module,
    optimizer: Optimizer,
    loss: LossFn<'a>,
    scheduler: Option<(Box<dyn Scheduler + 'a>, Period)>,
    device: Device,
    config: TrainConfig,
    history: Vec<EpochRecord>,
}

impl<'a> Trainer<'a> {
    /// A trainer for `model` (whose parameters live on `device`).
    pub fn new(
        model: &'a dyn Module,
        optimizer: Optimizer,
        device: Device,
        config: TrainConfig,
    ) -> Trainer<'a> {
        let loss: LossFn = match config.task {
            Task::Classification { .. } => Box::new(|out, y| out.cross_entropy(y)),
            Task::Regression => Box::new(|out, y| crate::nn::loss::mse(out, y)),
        };
        Trainer { model, optimizer, loss, scheduler: None, device, config, history: Vec::new() }
    }

    /// Replaces the loss function (output, target) → scalar.
    pub fn with_loss(mut self, loss: impl Fn(&Tensor, &Tensor) -> Tensor + 'a) -> Trainer<'a> {
        self.loss = Box::new(loss);
        self
    }

    /// Steps `scheduler` after every epoch (with the validation loss) and applies its rate.
    pub fn with_scheduler(mut self, scheduler: impl Scheduler + 'a) -> Trainer<'a> {
        self.optimizer.set_lr(scheduler.lr());
        self.scheduler = Some((Box::new(scheduler), Period::Epoch));
        self
    }

    /// Steps `scheduler` after every optimizer step, for schedules counted in steps (linear
    /// warm-up, one-cycle), and applies its rate.
    pub fn with_batch_scheduler(mut self, scheduler: impl Scheduler + 'a) -> Trainer<'a> {
        self.optimizer.set_lr(scheduler.lr());
        self.scheduler = Some((Box::new(scheduler), Period::Batch));
        self
    }

    /// The epochs run so far.
    pub fn history(&self) -> &[EpochRecord] {
        &self.history
    }

    /// The optimizer.
    pub fn optimizer(&self) -> &Optimizer {
        &self.optimizer
    }

    /// Trains for the configured epochs (or until early stopping, or `max_steps`), validating
    /// on `val` after each epoch. Returns the history.
    ///
    /// Each module trains in the mode it is in: modules are built in training mode, and one
    /// the caller put in evaluation mode (a frozen batch norm) stays there.
    pub fn fit(&mut self, train: &DataLoader, val: Option<&DataLoader>) -> Result<&[EpochRecord]> {
        if let Some(dir) = &self.config.out_dir {
            std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        }
        if self.config.resume {
            self.resume(train.batches())?;
        }
        // (an unfinished epoch's validation counts: `best.safetensors` may hold its weights)
        let mut best = self.history.iter().filter_map(|r| r.val_loss).fold(f64::INFINITY, f64::min);
        // an epoch that `max_steps` ended early goes on where it stopped
        let mut unfinished = self.history.pop_if(|r| r.steps < train.batches());
        let mut since_best = 0;
        for epoch in self.history.len() + 1..=self.config.epochs {
            if self.steps_left() == Some(0) {
                break;
            }
            let trained = self.train_epoch(train, epoch, unfinished.take())?;
            let finished = trained.steps == train.batches();
            let evaluation = val.map(|v| self.evaluate(v)).transpose()?;
            let record = EpochRecord {
                val_loss: evaluation.as_ref().map(|e| e.loss),
                metrics: evaluation.as_ref().map(|e| e.metrics.clone()).unwrap_or_default(),
                ..trained
            };
            self.report(&record, train.batches());
            self.history.push(record);
            if let (Some((s, Period::Epoch)), true) = (&mut self.scheduler, finished) {
                let lr = s.step(evaluation.as_ref().map(|e| e.loss));
                self.optimizer.set_lr(lr);
            }
            let improved = evaluation.as_ref().is_some_and(|e| e.loss < best);
            if let Some(e) = &evaluation {
                best = best.min(e.loss);
            }
            self.write_outputs(improved)?;
            if !finished {
                break;
            }
            since_best = if improved { 0 } else { since_best + 1 };
            if self.config.early_stopping.is_some_and(|patience| val.is_some() && since_best >= patience) {
                println!("early stopping: no better validation loss for {since_best} epochs");
                break;
            }
        }
        Ok(&self.history)
    }

    /// Optimizer steps left before `max_steps`, if there is a limit.
    fn steps_left(&self) -> Option<usize> {
        self.config.max_steps.map(|max| max.saturating_sub(self.optimizer.steps() as usize))
    }

    /// Trains epoch `epoch` (from where `unfinished`, its record so far, stopped) until its last
    /// batch or `max_steps`. Returns its record, without validation.
    fn train_epoch(
        &mut self,
        train: &DataLoader,
        epoch: usize,
        unfinished: Option<EpochRecord>,
    ) -> Result<EpochRecord> {
        let params = nn::parameters(self.model);
        let bar = self.progress_bar(train.batches() as u64, format!("epoch {epoch}/{}", self.config.epochs));
        let (done_steps, done_samples, done_seconds, done_loss) = unfinished
            .map(|r| (r.steps, r.samples, r.seconds, r.train_loss * r.samples as f64))
            .unwrap_or_default();
        bar.set_position(done_steps as u64);
        let start = Instant::now();
        let mut running = Tensor::zeros([], &self.device);
        let (mut seen, mut steps) = (0usize, done_steps);
        for batch in train.epoch(epoch as u64).skip(done_steps) {
            if self.steps_left() == Some(0) {
                break;
            }
            let n = batch.len();
            let (x, y) = (batch.inputs.to(&self.device), batch.targets.to(&self.device));
            let loss = (self.loss)(&self.model.forward(&x), &y);
            let mut grads = loss.backward();
            if let Some(max) = self.config.clip_grad_norm {
                clip_grad_norm(&mut grads, &params, max);
            }
            running = no_grad(|| &running + &(loss.detach().cast(DType::F32) * n as f64));
            self.optimizer.step_with(&grads, std::slice::from_ref(&running))?;
            if let Some((s, Period::Batch)) = &mut self.scheduler {
                let lr = s.step(None);
                self.optimizer.set_lr(lr);
            }
            seen += n;
            steps += 1;
            bar.inc(1);
            if steps % self.config.log_every.max(1) == 0 {
                let mean = running.item::<f32>()? as f64 / seen as f64;
                let rate = seen as f64 / start.elapsed().as_secs_f64();
                bar.set_message(format!("loss {mean:.4} · {rate:.0} samples/s"));
            }
        }
        let loss = done_loss + running.item::<f32>()? as f64;
        let (samples, seconds) = (done_samples + seen, done_seconds + start.elapsed().as_secs_f64());
        bar.finish_and_clear();
        Ok(EpochRecord {
            epoch,
            train_loss: loss / samples.max(1) as f64,
            val_loss: None,
            metrics: BTreeMap::new(),
            lr: self.optimizer.lr(),
            seconds,
            samples_per_sec: samples as f64 / seconds.max(1e-9),
            steps,
            samples,
        })
    }

    /// Loss and metrics over a dataset, in evaluation mode and without gradients. Every module
    /// is left in the mode it was in.
    pub fn evaluate(&self, loader: &DataLoader) -> Result<Evaluation> {
        let modes = nn::modes(self.model);
        nn::eval(self.model);
        let result = no_grad(|| self.evaluate_inner(loader));
        nn::restore_modes(self.model, &modes);
        result
    }

    fn evaluate_inner(&self, loader: &DataLoader) -> Result<Evaluation> {
        let mut loss_sum = 0.0;
        let mut count = 0usize;
        let classes = match self.config.task {
            Task::Classification { classes } => Some(classes),
            Task::Regression => None,
        };
        let mut confusion = classes.map(Confusion::new);
        let (mut probs, mut labels) = (Vec::new(), Vec::new());
        for batch in loader.epoch(0) {
            let n = batch.len();
            let (x, y) = (batch.inputs.to(&self.device), batch.targets.to(&self.device));
            let out = self.model.forward(&x);
            let loss = (self.loss)(&out, &y).cast(DType::F32);
            if let Some(conf) = &mut confusion {
                let p = out.softmax(-1).cast(DType::F32);
                let pred = out.argmax(-1, false);
                Tensor::realize_all(&[loss.clone(), p.clone(), pred.clone()])?;
                let truth = batch.targets.cast(DType::I32).to_vec::<i32>()?;
                conf.add(&truth, &pred.to_vec::<i32>()?);
                probs.extend(p.to_vec::<f32>()?.into_iter().map(f64::from));
                labels.extend(truth);
            }
            loss_sum += loss.item::<f32>()? as f64 * n as f64;
            count += n;
        }
        let mut metrics = BTreeMap::new();
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
        Ok(Evaluation { loss: loss_sum / count.max(1) as f64, metrics, confusion })
    }

    fn progress_bar(&self, len: u64, prefix: String) -> ProgressBar {
        if !self.config.progress {
            return ProgressBar::hidden();
        }
        let bar = ProgressBar::new(len);
        let style = ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {msg} ({elapsed})")
            .expect("a valid template")
            .progress_chars("=> ");
        bar.set_style(style);
        bar.set_prefix(prefix);
        bar
    }

    fn report(&self, r: &EpochRecord, batches: usize) {
        if !self.config.verbose {
            return;
        }
        let stopped = if r.steps < batches {
            format!(" (stopped after {} of {batches} steps)", r.steps)
        } else {
            String::new()
        };
        let mut line = format!("epoch {:>3}{stopped}  train loss {:.4}", r.epoch, r.train_loss);
        if let Some(v) = r.val_loss {
            line.push_str(&format!("  val loss {v:.4}"));
        }
        if let Some(a) = r.metrics.get("accuracy") {
            line.push_str(&format!("  val accuracy {:.2}%", a * 100.0));
        }
        line.push_str(&format!("  ({:.1} s, {:.0} samples/s)", r.seconds, r.samples_per_sec));
        println!("{line}");
    }

    /// The log, the plots and the checkpoints, after an epoch.
    fn write_outputs(&self, improved: bool) -> Result<()> {
        let Some(dir) = &self.config.out_dir else {
            return Ok(());
        };
        log::write_csv(&dir.join("log.csv"), &self.history)?;
        let curve = |f: &dyn Fn(&EpochRecord) -> Option<f64>| -> Vec<(f64, f64)> {
            self.history.iter().filter_map(|r| f(r).map(|v| (r.epoch as f64, v))).collect()
        };
        let mut losses = vec![Series { label: "train", points: curve(&|r| Some(r.train_loss)) }];
        if self.history.iter().any(|r| r.val_loss.is_some()) {
            losses.push(Series { label: "validation", points: curve(&|r| r.val_loss) });
        }
        line_plot(&dir.join("loss.png"), "Loss", "epoch", "loss", &losses)?;
        if self.history.iter().any(|r| r.metrics.contains_key("accuracy")) {
            let acc = [Series {
                label: "validation",
                points: curve(&|r| r.metrics.get("accuracy").map(|a| a * 100.0)),
            }];
            line_plot(&dir.join("accuracy.png"), "Accuracy", "epoch", "accuracy (%)", &acc)?;
        }
        self.save_checkpoint(&dir.join("last.safetensors"))?;
        if improved {
            self.save_checkpoint(&dir.join("best.safetensors"))?;
        }
        Ok(())
    }
}
