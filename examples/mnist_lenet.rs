//! A LeNet-5 style CNN on MNIST: two 5×5 convolutions with ReLU and 2×2 max pooling, then three
//! fully connected layers (LeCun et al. 1998, with ReLU and max pooling), Adam.
//!
//!     cargo run --release --example mnist_lenet -- --epochs 10
//!
//! Expected: ≥ 99.0% test accuracy.

mod common;

use clap::Parser;
use kiln::data::DataLoader;
use kiln::data::mnist::Mnist;
use kiln::nn::{self, Conv2d, Flatten, Linear, MaxPool2d, ReLU, Sequential};
use kiln::ops::conv::ConvOptions;
use kiln::ops::pool::PoolOptions;
use kiln::optim::schedule::CosineLr;
use kiln::optim::{Optimizer, Rule};
use kiln::train::{Task, TrainConfig, Trainer};
use std::process::ExitCode;

/// Train a LeNet-5 style CNN on MNIST and report its test accuracy.
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
    #[arg(long, default_value_t = 2e-3)]
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
    let pool = MaxPool2d(PoolOptions::new(2));
    let model = Sequential::new()
        .add(Conv2d::new(1, 6, 5, ConvOptions::default().padding(2), &device)) // (N, 6, 28, 28)
        .add(ReLU)
        .add(pool) // (N, 6, 14, 14)
        .add(Conv2d::new(6, 16, 5, ConvOptions::default(), &device)) // (N, 16, 10, 10)
        .add(ReLU)
        .add(pool) // (N, 16, 5, 5)
        .add(Flatten)
        .add(Linear::new(16 * 5 * 5, 120, &device))
        .add(ReLU)
        .add(Linear::new(120, 84, &device))
        .add(ReLU)
        .add(Linear::new(84, 10, &device));
    println!("LeNet-5: {} parameters on {device}", nn::parameter_count(&model));
    let optimizer = Optimizer::new(nn::parameters(&model), Rule::adam(), cli.lr);
    let mut config = TrainConfig::new(cli.epochs, Task::Classification { classes: 10 });
    config.out_dir = cli.common.out.clone();
    config.resume = cli.common.resume;
    config.progress = !cli.common.quiet;
    let train = DataLoader::new(mnist.train, cli.batch_size).shuffle(cli.common.seed);
    let test = DataLoader::new(mnist.test, 1000);
    let mut trainer = Trainer::new(&model, optimizer, device, config)
        .with_scheduler(CosineLr::new(cli.lr, 0.0, cli.epochs));
    let start = std::time::Instant::now();
    trainer.fit(&train, Some(&test))?;
    let result = trainer.evaluate(&test)?;
    let acc = result.metrics["accuracy"] * 100.0;
    println!("test accuracy: {acc:.2}% (expected ≥ 99.0%) after {:.0} s", start.elapsed().as_secs_f64());
    Ok(())
}
