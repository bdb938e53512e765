//! Classifies surnames into their 18 languages, character by character, with a recurrent network
//! ([`kiln::models::RnnClassifier`]: embedding 64 with padding id 0, one GRU layer of 128, a
//! linear layer on the final state), on PyTorch's "classifying names" data: a seeded, shuffled
//! 80/10/10 split, variable-length batches with lengths (as `pack_padded_sequence`).
//!
//!     cargo run --release --example names
//!     cargo run --release --example names -- --cell lstm --bidirectional --out runs/names
//!     cargo run --release --example names -- --out runs/names --predict Dostoevsky Nakamura
//!
//! Expected: ≥ 83.3% test accuracy (PyTorch's same recipe: 84.1%).

mod common;

use clap::{Parser, ValueEnum};
use kiln::data::names::Names;
use kiln::data::sequence::{SequenceDataset, pad_sequences};
use kiln::data::text::CharVocab;
use kiln::data::{Batch, DataLoader, permutation};
use kiln::models::{CellType, Pooling, RnnClassifier, RnnClassifierConfig};
use kiln::nn::{self, Module};
use kiln::optim::{Optimizer, Rule};
use kiln::train::{StepOutput, Task, Trainer, checkpoint, plot};
use kiln::{Device, Error};
use std::path::Path;
use std::process::ExitCode;

/// Train a character-level recurrent classifier of surnames by language, or predict with one.
#[derive(Parser, Debug)]
struct Cli {
    #[command(flatten)]
    common: common::Common,
    /// Training epochs
    #[arg(long, default_value_t = 10)]
    epochs: usize,
    /// Names per batch
    #[arg(long, default_value_t = 64)]
    batch_size: usize,
    /// Adam learning rate
    #[arg(long, default_value_t = 3e-3)]
    lr: f64,
    /// The recurrent layer
    #[arg(long, value_enum, default_value_t = Cell::Gru)]
    cell: Cell,
    /// Run the recurrent layer in both directions
    #[arg(long)]
    bidirectional: bool,
    /// Embedding width
    #[arg(long, default_value_t = 64)]
    embedding: usize,
    /// Hidden width of the recurrent layer
    #[arg(long, default_value_t = 128)]
    hidden: usize,
    /// Seed of the 80/10/10 split (kept apart from --seed, so that seeds compare on one test set)
    #[arg(long, default_value_t = 0)]
    split_seed: u64,
    /// Print the three likeliest languages of these names, from <out>/best.safetensors
    #[arg(long, num_args = 1.., value_name = "NAME", requires = "out")]
    predict: Vec<String>,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Cell {
    Rnn,
    Gru,
    Lstm,
}

fn main() -> ExitCode {
    kiln::error::exit_code(run())
}

fn run() -> kiln::Result<()> {
    let cli = Cli::parse();
    let device = cli.common.device()?;
    kiln::manual_seed(cli.common.seed);
    let names = Names::load(cli.common.data.join("names"))?;
    // ids 1.. are the characters of the data set, sorted; 0 pads
    let vocab = CharVocab::of(&names.samples.iter().map(|(n, _)| n.as_str()).collect::<String>());
    let encode = |name: &str| -> kiln::Result<Vec<i32>> {
        Ok(vocab.encode(name)?.into_iter().map(|id| id + 1).collect())
    };
    let cell = match cli.cell {
        Cell::Rnn => CellType::Rnn,
        Cell::Gru => CellType::Gru,
        Cell::Lstm => CellType::Lstm,
    };
    let config = RnnClassifierConfig {
        vocab_size: vocab.len() + 1,
        embedding: cli.embedding,
        hidden: cli.hidden,
        classes: names.languages.len(),
        cell,
        layers: 1,
        bidirectional: cli.bidirectional,
        dropout: 0.0,
        pooling: Pooling::Last,
    };
    let model = RnnClassifier::new(config, &device);
    if !cli.predict.is_empty() {
        let out = cli.common.out.as_deref().expect("clap requires --out with --predict");
        return predict(&model, &out.join("best.safetensors"), &cli.predict, &encode, &names.languages);
    }

    let order = permutation(names.samples.len(), cli.split_seed, 0);
    let (train_end, val_end) = (names.samples.len() * 8 / 10, names.samples.len() * 9 / 10);
    let subset = |indices: &[usize]| -> kiln::Result<SequenceDataset> {
        let mut inputs = Vec::with_capacity(indices.len());
        let mut classes = Vec::with_capacity(indices.len());
        for &i in indices {
            let (name, language) = &names.samples[i];
            inputs.push(encode(name)?);
            classes.push(*language);
        }
        Ok(SequenceDataset::classification(inputs, classes).with_pad(0))
    };
    let train = DataLoader::new(subset(&order[..train_end])?, cli.batch_size).shuffle(cli.common.seed);
    let val = DataLoader::new(subset(&order[train_end..val_end])?, 500);
    let test = DataLoader::new(subset(&order[val_end..])?, 500);
    println!(
        "names: {}{} classifier, {} parameters on {device}; {} / {} / {} names, {} languages",
        if cli.bidirectional { "bidirectional " } else { "" },
        cell.name(),
        nn::parameter_count(&model),
        train.samples(),
        val.samples(),
        test.samples(),
        names.languages.len()
    );

    let optimizer = Optimizer::new(nn::parameters(&model), Rule::adam(), cli.lr);
    let task = Task::Classification { classes: names.languages.len() };
    let mut trainer = Trainer::new(&model, optimizer, device, cli.common.train_config(cli.epochs, task))
        .with_step(|batch: &Batch, _| {
            let lengths = &batch.input_padding.as_ref().expect("padded sequences").lengths;
            let logits = model.classify(&batch.inputs, Some(lengths));
            StepOutput::new(logits.cross_entropy(&batch.targets)).with_logits(logits)
        });
    let start = std::time::Instant::now();
    let history = trainer.fit(&train, Some(&val))?;
    let training_seconds: f64 = history.iter().map(|r| r.seconds).sum();
    let total_seconds = start.elapsed().as_secs_f64();
    let result = trainer.evaluate(&test)?;
    let confusion = result.confusion.as_ref().expect("a classification step with logits");
    println!("\n{:<12} {:>9} {:>7} {:>6} {:>7}", "language", "precision", "recall", "F1", "names");
    for (c, language) in names.languages.iter().enumerate() {
        let support: u64 = (0..confusion.classes()).map(|p| confusion.count(c, p)).sum();
        let (p, r, f1) = (confusion.precision(c), confusion.recall(c), confusion.f1(c));
        println!("{language:<12} {p:>9.3} {r:>7.3} {f1:>6.3} {support:>7}");
    }
    println!("{:<12} {:>24.3}", "macro F1", result.metrics["f1"]);
    if let Some(out) = &cli.common.out {
        let path = out.join("confusion.png");
        plot::confusion_plot(&path, "names: test set", &names.languages, confusion)?;
        println!("confusion matrix: {}", path.display());
    }
    println!(
        "test accuracy: {:.2}% (expected ≥ 83.3%) after {training_seconds:.1} s of training ({total_seconds:.1} s \
         with validation)",
        result.metrics["accuracy"] * 100.0
    );
    Ok(())
}

/// Prints the three likeliest languages of each of `names` by the model in `checkpoint_path`.
fn predict(
    model: &RnnClassifier,
    checkpoint_path: &Path,
    names: &[String],
    encode: &dyn Fn(&str) -> kiln::Result<Vec<i32>>,
    languages: &[String],
) -> kiln::Result<()> {
    let saved = checkpoint::load(checkpoint_path)?;
    checkpoint::load_into(model, &saved.tensors, checkpoint_path).map_err(|e| {
        Error::Invalid(format!("{e} (train it with the same --cell, --bidirectional and sizes)"))
    })?;
    nn::eval(model);
    let ids = names
        .iter()
        .map(|n| encode(n).map_err(|e| Error::Invalid(format!("{n:?}: {e}"))))
        .collect::<kiln::Result<Vec<_>>>()?;
    if let Some(empty) = names.iter().zip(&ids).find(|(_, ids)| ids.is_empty()) {
        return Err(Error::Invalid(format!("cannot classify the empty name {:?}", empty.0)));
    }
    let (batch, padding) = pad_sequences(&ids.iter().map(Vec::as_slice).collect::<Vec<_>>(), 0);
    let device = model_device(model);
    let probs = kiln::no_grad(|| model.classify(&batch.to(&device), Some(&padding.lengths)).softmax(-1));
    let probs = probs.to_vec::<f32>()?;
    for (name, row) in names.iter().zip(probs.chunks(languages.len())) {
        let mut ranked: Vec<(usize, f32)> = row.iter().copied().enumerate().collect();
        ranked.sort_by(|a, b| b.1.total_cmp(&a.1));
        let top: Vec<String> =
            ranked.iter().take(3).map(|&(c, p)| format!("{} {:.1}%", languages[c], p * 100.0)).collect();
        println!("{name:<16} {}", top.join(", "));
    }
    Ok(())
}

/// The device the model's parameters live on.
fn model_device(model: &dyn Module) -> Device {
    nn::parameters(model).first().map_or(Device::Cpu, |(_, p)| p.device())
}
