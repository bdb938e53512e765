//! A multilayer perceptron on MNIST: 784 → 512 → 256 → 10 with ReLU and dropout, Adam with a
//! cosine learning-rate schedule.
//!
//!     cargo run --release --example mnist_mlp -- --epochs 10
//!
//! Expected: ≥ 98.0% test accuracy.

mod common;

use clap::Parser;
use kiln::data::DataLoader;
use kiln::data::mnist::Mnist;
use kiln::nn;
use kiln::optim::schedule::CosineLr;
use kiln::optim::{Optimizer, Rule};
use kiln::train::{Task, Trainer};
use std::process::ExitCode;

/// Train an MLP on MNIST and report its test accuracy.
#[derive(Parser, Debug)]
struct Cli {
    #[command(flatten)]
    common: common::Common,
    /// Training epochs
    #[arg(long, default_value_t = 10)]
    epochs: usize,
    /// Samples per batch
    #[arg(long, default_value_t = 128)]
    batch_size: usize,
    /// Adam learning rate (annealed to 0 over the epochs with a cosine)
    #[arg(long, default_value_t = 1e-3)]
    lr: f64,
}

fn main() -> ExitCode {
    kiln::error::exit_code(run())
}

fn run() -> kiln::Result<()> {
    let cli = Cli::parse();
    let device = cli.common.device()?;
    kiln::manual_seed(cli.common.seed);
    let mnist = Mnist::load(cli.common.data.join("mnist"))?;
    let model = kiln::models::mnist_mlp(&device);
    println!("MNIST MLP: {} parameters on {device}", nn::parameter_count(&model));
    let optimizer = Optimizer::new(nn::parameters(&model), Rule::adam(), cli.lr);
    let config = cli.common.train_config(cli.epochs, Task::Classification { classes: 10 });
    let train = DataLoader::new(mnist.train, cli.batch_size).shuffle(cli.common.seed);
    let test = DataLoader::new(mnist.test, 1000);
    let mut trainer = Trainer::new(&model, optimizer, device, config)
        .with_scheduler(CosineLr::new(cli.lr, 0.0, cli.epochs));
    let start = std::time::Instant::now();
    trainer.fit(&train, Some(&test))?;
    let result = trainer.evaluate(&test)?;
    let acc = result.metrics["accuracy"] * 100.0;
    println!("test accuracy: {acc:.2}% (expected ≥ 98.0%) after {:.0} s", start.elapsed().as_secs_f64());
    if let Some(c) = &result.confusion {
        println!("confusion matrix (rows: true digit, columns: predicted):\n{c}");
    }
    Ok(())
}
