//! CIFAR-10 with modern CNNs ([`kiln::models`]: ResNet-20/56 and ResNet-18, VGG-11 with batch
//! norm, MobileNetV2), read from the JPEG archive without extracting it, with random crops
//! (padding 4) and flips, SGD with Nesterov momentum 0.9 and weight decay 5e-4, a cosine or
//! one-cycle schedule, optional label smoothing. Reports test accuracy per class and overall,
//! and writes the confusion matrix as a PNG.
//!
//!     cargo run --release --example cifar10 -- --model resnet20 --out runs/cifar  # 50 epochs, expected ≥ 90%
//!     cargo run --release --example cifar10 -- --preset quick                     # 5 epochs, expected ≥ 80% (80.46%)
//!     cargo run --release --example cifar10 -- --transfer --epochs 5              # pretrain on 5 classes, fine-tune on 5
//!
//! `--transfer` pretrains the model on the first five classes, then trains on the other five
//! twice for the same steps: once with the pretrained backbone frozen and a fresh head, once
//! from scratch, and reports both test accuracies (checkpoints in `pretrain/`, `frozen/` and
//! `scratch/` under `--out`).

mod common;

use clap::{Parser, ValueEnum};
use kiln::data::{DataLoader, Dataset, ImageFolder, ImageTransform};
use kiln::nn::{self, Module};
use kiln::ops::loss::CrossEntropy;
use kiln::optim::schedule::{CosineLr, OneCycle};
use kiln::optim::{Optimizer, Rule};
use kiln::train::{Task, Trainer, checkpoint, plot};
use kiln::{Device, Result};
use std::process::ExitCode;

/// Train a CNN on CIFAR-10 and report its test accuracy.
#[derive(Parser, Debug)]
struct Cli {
    #[command(flatten)]
    common: common::Common,
    /// The network
    #[arg(long, value_enum, default_value = "resnet20")]
    model: Model,
    /// `quick`: ResNet-20, 5 epochs, one-cycle to lr 0.4, batch 256, label smoothing 0.1
    #[arg(long, value_enum)]
    preset: Option<Preset>,
    /// Training epochs
    #[arg(long, default_value_t = 50)]
    epochs: usize,
    /// Images per batch
    #[arg(long, default_value_t = 128)]
    batch_size: usize,
    /// The (peak) learning rate
    #[arg(long, default_value_t = 0.1)]
    lr: f64,
    /// How the learning rate moves: cosine to 0 by epoch, or one-cycle by step
    #[arg(long, value_enum, default_value = "cosine")]
    schedule: Schedule,
    /// Label smoothing of the cross-entropy
    #[arg(long, default_value_t = 0.0)]
    label_smoothing: f64,
    /// Background threads that decode and augment batches
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// Pretrain on classes 0–4, then fine-tune a frozen backbone on classes 5–9 beside training from scratch
    #[arg(long)]
    transfer: bool,
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq)]
enum Model {
    Resnet20,
    Resnet56,
    Resnet18,
    Vgg11,
    Mobilenetv2,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Preset {
    Quick,
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq)]
enum Schedule {
    Cosine,
    OneCycle,
}

/// The network of `model` for `classes` classes; the second value names its classifier's
/// parameters (the head a transfer keeps trainable).
fn build(model: Model, classes: usize, device: &Device) -> (Box<dyn Module>, &'static str) {
    match model {
        Model::Resnet20 => (Box::new(kiln::models::resnet20(classes, device)), "fc.*"),
        Model::Resnet56 => (Box::new(kiln::models::resnet56(classes, device)), "fc.*"),
        Model::Resnet18 => (Box::new(kiln::models::resnet18(classes, device)), "fc.*"),
        Model::Vgg11 => (Box::new(kiln::models::vgg11_bn(classes, device)), "classifier.*"),
        Model::Mobilenetv2 => (Box::new(kiln::models::mobilenet_v2_cifar(classes, device)), "classifier.*"),
    }
}

fn main() -> ExitCode {
    kiln::error::exit_code(run())
}

fn run() -> Result<()> {
    let mut cli = Cli::parse();
    if let Some(Preset::Quick) = cli.preset {
        (cli.model, cli.epochs, cli.batch_size, cli.lr, cli.schedule, cli.label_smoothing) =
            (Model::Resnet20, 5, 256, 0.4, Schedule::OneCycle, 0.1);
    }
    let device = cli.common.device()?;
    kiln::manual_seed(cli.common.seed);
    let archive = cli.common.data.join("cifar10/cifar10-jpeg.tar.gz");
    let train = ImageFolder::open(&archive, "cifar10/train")?;
    let test = ImageFolder::open(&archive, "cifar10/test")?;
    let (mean, std) = train.channel_stats();
    println!(
        "cifar10: {} / {} images of {} classes; channel means {mean:.3?}, deviations {std:.3?}",
        train.len(),
        test.len(),
        train.classes().len()
    );
    let augment = ImageTransform::new().random_crop(32, 4).horizontal_flip().normalize(mean, std);
    let plain = ImageTransform::new().normalize(mean, std);
    let (train, test) = (train.with_transform(augment, cli.common.seed), test.with_transform(plain, 0));
    if cli.transfer {
        return transfer(&cli, &train, &test, &device);
    }

    let (model, _) = build(cli.model, 10, &device);
    println!("{:?}: {} parameters on {device}", cli.model, nn::parameter_count(model.as_ref()));
    let start = std::time::Instant::now();
    let trainer = fit(&cli, None, model.as_ref(), nn::parameters(model.as_ref()), &train, &test, &device)?;
    let result = trainer.evaluate(&loader(&cli, test.clone(), false))?;
    let confusion = result.confusion.as_ref().expect("classification logits");
    for (c, class) in train.classes().iter().enumerate() {
        println!("{class:<12} {:>6.2}%", confusion.recall(c) * 100.0);
    }
    if let Some(out) = &cli.common.out {
        plot::confusion_plot(&out.join("confusion.png"), "CIFAR-10: test set", train.classes(), confusion)?;
        println!("confusion matrix: {}", out.join("confusion.png").display());
    }
    let expected = if cli.preset.is_some() { "≥ 80%" } else { "≥ 90% for ResNet-20 after 50 epochs" };
    let acc = result.metrics["accuracy"] * 100.0;
    println!("test accuracy: {acc:.2}% (expected {expected}) after {:.0} s", start.elapsed().as_secs_f64());
    Ok(())
}

/// Batches of `data`: shuffled (by the seed) with the worker threads when training.
fn loader(cli: &Cli, data: ImageFolder, training: bool) -> DataLoader {
    let loader = DataLoader::new(data, cli.batch_size).workers(cli.workers);
    if training { loader.shuffle(cli.common.seed).drop_last() } else { loader }
}

/// Trains `params` of `model` with the recipe of `cli`, validating on `test`; a transfer's
/// `stage` keeps its checkpoints in a subfolder of its own.
fn fit<'a>(
    cli: &Cli,
    stage: Option<&str>,
    model: &'a dyn Module,
    params: Vec<(String, kiln::Tensor)>,
    train: &ImageFolder,
    test: &ImageFolder,
    device: &Device,
) -> Result<Trainer<'a>> {
    let epochs = cli.epochs;
    let classes = train.classes().len();
    let rule = Rule::Sgd { momentum: 0.9, nesterov: true, weight_decay: 5e-4 };
    let optimizer = Optimizer::new(params, rule, cli.lr);
    let smoothing = CrossEntropy { label_smoothing: cli.label_smoothing, ..CrossEntropy::default() };
    let mut config = cli.common.train_config(epochs, Task::Classification { classes });
    if let Some(stage) = stage {
        config.out_dir = config.out_dir.map(|dir| dir.join(stage));
    }
    let train = loader(cli, train.clone(), true);
    let mut trainer = Trainer::new(model, optimizer, *device, config)
        .with_loss(move |logits, targets| logits.cross_entropy_with(targets, smoothing));
    trainer = match cli.schedule {
        Schedule::Cosine => trainer.with_scheduler(CosineLr::new(cli.lr, 0.0, epochs)),
        Schedule::OneCycle => trainer.with_batch_scheduler(OneCycle::new(cli.lr, epochs * train.batches())),
    };
    trainer.fit(&train, Some(&loader(cli, test.clone(), false)))?;
    Ok(trainer)
}

/// Trains `params` of `model` as transfer `stage` and returns its test accuracy in percent.
fn test_accuracy(
    cli: &Cli,
    stage: &str,
    model: &dyn Module,
    params: Vec<(String, kiln::Tensor)>,
    train: &ImageFolder,
    test: &ImageFolder,
    device: &Device,
) -> Result<f64> {
    let trainer = fit(cli, Some(stage), model, params, train, test, device)?;
    Ok(trainer.evaluate(&loader(cli, test.clone(), false))?.metrics["accuracy"] * 100.0)
}

/// Pretraining on classes 0–4, then classes 5–9 with the frozen backbone and from scratch.
fn transfer(cli: &Cli, train: &ImageFolder, test: &ImageFolder, device: &Device) -> Result<()> {
    let names: Vec<String> = train.classes().to_vec();
    let (first, second): (Vec<&str>, Vec<&str>) =
        (names[..5].iter().map(String::as_str).collect(), names[5..].iter().map(String::as_str).collect());
    let (pretrain, pretest) = (train.select_classes(&first)?, test.select_classes(&first)?);
    let (finetune, finetest) = (train.select_classes(&second)?, test.select_classes(&second)?);

    let (backbone, head) = build(cli.model, 5, device);
    let pretrained = test_accuracy(
        cli,
        "pretrain",
        backbone.as_ref(),
        nn::parameters(backbone.as_ref()),
        &pretrain,
        &pretest,
        device,
    )?;
    println!("pretrained on {}: test accuracy {pretrained:.2}%", first.join(", "));
    let saved = cli.common.out.clone().unwrap_or_else(std::env::temp_dir).join("pretrained.safetensors");
    checkpoint::save_module(&saved, backbone.as_ref())?;

    // a fresh network with the pretrained backbone loaded by name and frozen; only the head
    // trains (the backbone's batch norms still track statistics, as in PyTorch's feature extraction)
    let (model, _) = build(cli.model, 5, device);
    checkpoint::load_into_except(model.as_ref(), &checkpoint::load(&saved)?.tensors, &saved, head)?;
    nn::freeze(model.as_ref(), "*");
    nn::unfreeze(model.as_ref(), head);
    let frozen = test_accuracy(
        cli,
        "frozen",
        model.as_ref(),
        nn::trainable_parameters(model.as_ref()),
        &finetune,
        &finetest,
        device,
    )?;

    let (scratch, _) = build(cli.model, 5, device);
    let fresh = test_accuracy(
        cli,
        "scratch",
        scratch.as_ref(),
        nn::parameters(scratch.as_ref()),
        &finetune,
        &finetest,
        device,
    )?;
    println!(
        "on {}, {} epochs each: frozen pretrained backbone {frozen:.2}%, from scratch {fresh:.2}%",
        second.join(", "),
        cli.epochs,
    );
    Ok(())
}
