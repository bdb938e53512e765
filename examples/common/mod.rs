//! Command-line options and helpers shared by the examples.

use clap::Args;
use kiln::Device;
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
    /// Continue from <out>/last.safetensors
    #[arg(long, requires = "out")]
    pub resume: bool,
    /// Seed for initialization and shuffling
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Hide the progress bars
    #[arg(long)]
    pub quiet: bool,
}

impl Common {
    /// The device named by --device, else by KILN_DEVICE, else the best one.
    pub fn device(&self) -> kiln::Result<Device> {
        match &self.device {
            Some(name) => Device::parse(name),
            None => Device::from_env(),
        }
    }
}
