//! The d2l Kaggle house-price recipe: numeric features standardized with missing values set to
//! 0, categorical features one-hot encoded with a missing-value indicator (331 features), a
//! small MLP on log prices, and the log-RMSE estimated by 5-fold cross-validation.
//!
//!     cargo run --release --example house_prices
//!
//! Expected: 5-fold cross-validated log-RMSE ≤ 0.15.

mod common;

use clap::Parser;
use kiln::data::csv::{Table, prepare};
use kiln::data::{DataLoader, InMemory, Targets, k_fold};
use kiln::nn::{self, Dropout, Linear, Module, ReLU, Sequential};
use kiln::optim::{Optimizer, Rule};
use kiln::train::{Task, Trainer};
use kiln::{Device, no_grad};
use std::process::ExitCode;

/// Cross-validate an MLP on the Kaggle house prices and print its log-RMSE.
#[derive(Parser, Debug)]
struct Cli {
    #[command(flatten)]
    common: common::Common,
    /// Training epochs per fold
    #[arg(long, default_value_t = 100)]
    epochs: usize,
    /// Folds of cross-validation
    #[arg(long, default_value_t = 5)]
    folds: usize,
    /// Hidden units (0: the linear model of d2l)
    #[arg(long, default_value_t = 128)]
    hidden: usize,
    /// Adam learning rate
    #[arg(long, default_value_t = 1e-3)]
    lr: f64,
    /// Weight decay (AdamW)
    #[arg(long, default_value_t = 0.1)]
    weight_decay: f64,
    /// Samples per batch
    #[arg(long, default_value_t = 64)]
    batch_size: usize,
}

fn model(features: usize, hidden: usize, device: &Device) -> Sequential {
    if hidden == 0 {
        return Sequential::new().add(Linear::new(features, 1, device));
    }
    Sequential::new()
        .add(Linear::new(features, hidden, device))
        .add(ReLU)
        .add(Dropout::new(0.2))
        .add(Linear::new(hidden, 1, device))
}

/// The model's log-RMSE on `data` (targets are centered log prices).
fn log_rmse(model: &dyn Module, data: &InMemory, device: &Device) -> kiln::Result<f64> {
    nn::eval(model);
    let all: Vec<usize> = (0..kiln::data::Dataset::len(data)).collect();
    let batch = kiln::data::Dataset::batch(data, &all);
    let err = no_grad(|| {
        (model.forward(&batch.inputs.to(device)) - batch.targets.to(device)).square().mean_all().sqrt()
    });
    nn::train(model);
    Ok(err.item::<f32>()? as f64)
}

fn main() -> ExitCode {
    kiln::error::exit_code(run())
}

fn run() -> kiln::Result<()> {
    let cli = Cli::parse();
    let device = cli.common.device()?;
    let dir = cli.common.data.join("house_prices");
    let train = Table::read(dir.join("kaggle_house_pred_train.csv"))?;
    let test = Table::read(dir.join("kaggle_house_pred_test.csv"))?;
    let features = prepare(&[&train, &test], &["Id", "SalePrice"])?;
    let width = features.names.len();
    let n = train.rows.len();
    let log_price: Vec<f64> = train.numbers("SalePrice")?.into_iter().map(f64::ln).collect();
    println!("house prices: {n} training rows, {width} features after the d2l preprocessing, on {device}");

    let mut scores = Vec::new();
    let start = std::time::Instant::now();
    for fold in 0..cli.folds {
        kiln::manual_seed(cli.common.seed + fold as u64);
        let (train_idx, valid_idx) = k_fold(n, cli.folds, fold);
        // centre the targets on the training fold's mean log price
        let mean = train_idx.iter().map(|&i| log_price[i]).sum::<f64>() / train_idx.len() as f64;
        let subset = |idx: &[usize]| {
            let x: Vec<f32> = idx
                .iter()
                .flat_map(|&i| features.values[i * width..(i + 1) * width].iter().copied())
                .collect();
            let y: Vec<f32> = idx.iter().map(|&i| (log_price[i] - mean) as f32).collect();
            InMemory::new(x, &[width], Targets::Values { data: y, dims: vec![1] })
        };
        let (fold_train, fold_valid) = (subset(&train_idx), subset(&valid_idx));
        let net = model(width, cli.hidden, &device);
        let opt = Optimizer::new(nn::parameters(&net), Rule::adamw().weight_decay(cli.weight_decay), cli.lr);
        let mut config = cli.common.train_config(cli.epochs, Task::Regression);
        (config.progress, config.verbose) = (false, false);
        // each fold keeps its own checkpoints, log and plots
        config.out_dir = cli.common.out.as_ref().map(|d| d.join(format!("fold{}", fold + 1)));
        let mut trainer = Trainer::new(&net, opt, device, config);
        let loader =
            DataLoader::new(fold_train.clone(), cli.batch_size).shuffle(cli.common.seed + fold as u64);
        trainer.fit(&loader, None)?;
        let (train_err, valid_err) =
            (log_rmse(&net, &fold_train, &device)?, log_rmse(&net, &fold_valid, &device)?);
        println!("fold {}: train log-RMSE {train_err:.4}, validation log-RMSE {valid_err:.4}", fold + 1);
        scores.push(valid_err);
    }
    let mean = scores.iter().sum::<f64>() / scores.len() as f64;
    println!(
        "{}-fold cross-validated log-RMSE: {mean:.4} (expected ≤ 0.15) in {:.0} s",
        cli.folds,
        start.elapsed().as_secs_f64()
    );
    Ok(())
}
