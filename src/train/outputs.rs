//! What a run shows and writes: progress bars, a line per epoch and per evaluation, and in the
//! output folder the logs (`log.csv` by epoch, `steps.csv` by step, `grad_norms.csv`), their
//! plots and the checkpoints.

use super::log::{self, EpochRecord};
use super::plot::{Series, line_plot};
use super::step_log::{StepRecord, write_grad_norms_csv, write_steps_csv};
use super::{EpochTally, Evaluation, Run, Trainer};
use crate::Result;
use indicatif::{ProgressBar, ProgressStyle};

impl Trainer<'_> {
    /// A bar of `len` steps (hidden unless progress is on).
    pub(super) fn progress_bar(&self, len: u64) -> ProgressBar {
        if !self.config.progress {
            return ProgressBar::hidden();
        }
        let bar = ProgressBar::new(len);
        let style = ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {msg} ({elapsed})")
            .expect("a valid template")
            .progress_chars("=> ");
        bar.set_style(style);
        bar.set_prefix("step");
        bar
    }

    /// The mean loss of the last `log_every` steps and the epoch's throughput, on the bar.
    pub(super) fn show_progress(&self, bar: &ProgressBar, tally: &EpochTally) {
        let recent = &self.steps_log[self.steps_log.len().saturating_sub(self.config.log_every.max(1))..];
        let mean = recent.iter().map(|r| r.loss).sum::<f64>() / recent.len().max(1) as f64;
        let rate = tally.seen as f64 / tally.start.elapsed().as_secs_f64().max(1e-9);
        bar.set_message(format!("loss {mean:.4} · {rate:.0} samples/s"));
    }

    /// Prints a line above the progress bar, if the run is verbose.
    pub(super) fn say(&self, run: &Run, line: String) {
        if !self.config.verbose {
            return;
        }
        match &run.bar {
            Some(bar) if !bar.is_hidden() => bar.suspend(|| println!("{line}")),
            _ => println!("{line}"),
        }
    }

    /// The line of a finished (or stopped) epoch of `steps` steps (`None`: endless data).
    pub(super) fn report(&self, r: &EpochRecord, steps: Option<usize>, run: &Run) {
        let stopped = match steps {
            Some(steps) if r.steps < steps => format!(" (stopped after {} of {steps} steps)", r.steps),
            None => format!(" ({} steps)", r.steps),
            Some(_) => String::new(),
        };
        let mut line = format!("epoch {:>3}{stopped}  train loss {:.4}", r.epoch, r.train_loss);
        if let Some(v) = r.val_loss {
            line.push_str(&format!("  val loss {v:.4}"));
        }
        if let Some(a) = r.metrics.get("accuracy") {
            line.push_str(&format!("  val accuracy {:.2}%", a * 100.0));
        }
        if let Some(p) = r.metrics.get("perplexity") {
            line.push_str(&format!("  val perplexity {p:.2}"));
        }
        line.push_str(&format!("  ({:.1} s, {:.0} samples/s)", r.seconds, r.samples_per_sec));
        self.say(run, line);
    }

    /// The line of an evaluation by steps: the mean training loss since the previous one, and
    /// the validation loss and metrics.
    pub(super) fn report_evaluation(&self, e: &Evaluation, run: &Run) {
        let Some(last) = self.steps_log.last() else {
            return;
        };
        let previous = self.steps_log[..self.steps_log.len() - 1].iter().rposition(|r| r.val_loss.is_some());
        let since = &self.steps_log[previous.map_or(0, |i| i + 1)..];
        let train = since.iter().map(|r| r.loss).sum::<f64>() / since.len().max(1) as f64;
        let of = self.config.max_steps.map_or(String::new(), |max| format!("/{max}"));
        let mut line = format!("step {}{of}  train loss {train:.4}  val loss {:.4}", last.step, e.loss);
        if let Some(a) = e.metrics.get("accuracy") {
            line.push_str(&format!("  val accuracy {:.2}%", a * 100.0));
        }
        if let Some(p) = e.metrics.get("perplexity") {
            line.push_str(&format!("  val perplexity {p:.2}"));
        }
        line.push_str(&format!("  lr {:.3e}", last.lr));
        self.say(run, line);
    }

    /// The logs, the plots and the checkpoints (`best` too when `improved`).
    pub(super) fn write_outputs(&self, improved: bool) -> Result<()> {
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
        self.write_step_outputs()?;
        self.save_checkpoint(&dir.join("last.safetensors"))?;
        if improved {
            self.save_checkpoint(&dir.join("best.safetensors"))?;
        }
        Ok(())
    }

    /// `steps.csv` with its plot `loss_by_step.png`, and `grad_norms.csv` with
    /// `grad_norms.png` (log10 of each norm, as they span orders of magnitude).
    fn write_step_outputs(&self) -> Result<()> {
        let Some(dir) = &self.config.out_dir else {
            return Ok(());
        };
        if !self.steps_log.is_empty() {
            write_steps_csv(&dir.join("steps.csv"), &self.steps_log)?;
            let step = |r: &StepRecord| r.step as f64;
            let mut losses = vec![Series {
                label: "train",
                points: self.steps_log.iter().map(|r| (step(r), r.loss)).collect(),
            }];
            let val: Vec<(f64, f64)> =
                self.steps_log.iter().filter_map(|r| r.val_loss.map(|v| (step(r), v))).collect();
            if !val.is_empty() {
                losses.push(Series { label: "validation", points: val });
            }
            line_plot(&dir.join("loss_by_step.png"), "Loss by step", "step", "loss", &losses)?;
        }
        let norms = &self.grad_norms;
        if !norms.records.is_empty() {
            write_grad_norms_csv(&dir.join("grad_norms.csv"), norms)?;
            let series: Vec<Series> = norms
                .names
                .iter()
                .enumerate()
                .map(|(i, name)| Series {
                    label: name,
                    points: norms
                        .records
                        .iter()
                        .map(|r| (r.step as f64, r.norms[i].log10()))
                        .filter(|(_, v)| v.is_finite())
                        .collect(),
                })
                .collect();
            let title = "Gradient norm per parameter (before clipping)";
            line_plot(
                &dir.join("grad_norms.png"),
                title,
                "step",
                "log10 of the gradient's L2 norm",
                &series,
            )?;
        }
        Ok(())
    }
}
