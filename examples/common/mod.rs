//! Command-line options and helpers shared by the examples.

// each example compiles this module on its own and uses some of its helpers
#![allow(dead_code)]

use clap::Args;
use kiln::Device;
use kiln::train::{Task, TrainConfig};
use std::path::PathBuf;

/// Options every training example takes.
#[derive(Args, Debug)]
pub struct Common {
    /// Where to run: cpu, gpu or gpu:N [default: $KILN_DEVICE, else the best device]
    #[arg(long)]
    pub device: Option<String>,
    /// The shared datasets folder
    #[arg(long, env = "KILN_DATA", default_value = "../shared/data")]
    pub data: PathBuf,
    /// Write checkpoints, log.csv and plots here
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Continue from <out>/last.safetensors (with last.optim.safetensors beside it)
    #[arg(long, requires = "out")]
    pub resume: bool,
    /// Stop after N optimizer steps in total, mid-epoch if need be (outputs are still written)
    #[arg(long, value_name = "N")]
    pub max_steps: Option<usize>,
    /// Seed for initialization and shuffling
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Hide the progress bars
    #[arg(long)]
    pub quiet: bool,
    /// Train in mixed precision: f16 products under autocast, f32 master weights, loss scaling
    #[arg(long)]
    pub mixed_precision: bool,
}

impl Common {
    /// A Trainer configuration for `epochs` of `task` with these options: --out, --resume,
    /// --max-steps, --quiet and --mixed-precision.
    #[allow(dead_code)] // the char-GPT examples train by steps, without the epoch Trainer
    pub fn train_config(&self, epochs: usize, task: Task) -> TrainConfig {
        let mut config = TrainConfig::new(epochs, task);
        config.out_dir = self.out.clone();
        config.resume = self.resume;
        config.max_steps = self.max_steps;
        config.progress = !self.quiet;
        config.mixed_precision = self.mixed_precision;
        config
    }

    /// A Trainer configuration for a run of `steps` optimizer steps of `task` with an evaluation
    /// every `eval_every` steps, with these options; --max-steps stops it earlier.
    pub fn steps_config(&self, steps: usize, eval_every: usize, task: Task) -> TrainConfig {
        let mut config = TrainConfig::by_steps(steps, eval_every, task);
        config.out_dir = self.out.clone();
        config.resume = self.resume;
        config.max_steps = Some(self.max_steps.map_or(steps, |n| n.min(steps)));
        config.progress = !self.quiet;
        config.mixed_precision = self.mixed_precision;
        config
    }

    /// The device named by --device, else by KILN_DEVICE, else the best one.
    pub fn device(&self) -> kiln::Result<Device> {
        match &self.device {
            Some(name) => Device::parse(name),
            None => Device::from_env(),
        }
    }
}
