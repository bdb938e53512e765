//! Predicts whether a clothing review recommends the item (`Review Text` → `Recommended IND` of
//! the Women's E-Commerce Clothing Reviews, empty texts dropped) with a word-level bidirectional
//! LSTM over each review's own length ([`kiln::models::RnnClassifier`]), on a seeded 80/10/10
//! split. The vocabulary is the training split's words seen at least twice.
//!
//!     cargo run --release --example sentiment
//!
//! Expected: test ROC-AUC ≥ 0.950 (TF-IDF 1–2 grams with logistic regression: 0.955, accuracy
//! 90.6%, minority-class F1 0.71).

mod common;

use clap::Parser;
use kiln::data::csv::Table;
use kiln::data::sequence::SequenceDataset;
use kiln::data::tokenize::tokenize;
use kiln::data::vocab::Vocab;
use kiln::data::{Batch, DataLoader, permutation};
use kiln::models::{CellType, Pooling, RnnClassifier, RnnClassifierConfig};
use kiln::nn;
use kiln::optim::{Optimizer, Rule};
use kiln::train::{StepOutput, Task, Trainer};
use kiln::{Error, Result};
use std::process::ExitCode;

/// Train a bidirectional LSTM to tell recommending reviews from the others.
#[derive(Parser, Debug)]
struct Cli {
    #[command(flatten)]
    common: common::Common,
    /// Training epochs
    #[arg(long, default_value_t = 4)]
    epochs: usize,
    /// Reviews per batch
    #[arg(long, default_value_t = 64)]
    batch_size: usize,
    /// Adam learning rate
    #[arg(long, default_value_t = 2e-3)]
    lr: f64,
    /// Embedding width
    #[arg(long, default_value_t = 100)]
    embedding: usize,
    /// Hidden width of each direction
    #[arg(long, default_value_t = 128)]
    hidden: usize,
    /// Dropout before the output layer
    #[arg(long, default_value_t = 0.3)]
    dropout: f32,
    /// Classify from the mean or the maximum of the LSTM's outputs over the review (or both), or from its final states
    #[arg(long, value_enum, default_value = "mean")]
    pooling: PoolingArg,
    /// Keep the first this many tokens of a review
    #[arg(long, default_value_t = 200)]
    max_tokens: usize,
    /// Seed of the 80/10/10 split (kept apart from --seed, so that seeds compare on one test set)
    #[arg(long, default_value_t = 0)]
    split_seed: u64,
    /// Also write the split as TSV lines `split<TAB>label<TAB>tokens` to this file, for
    /// `benches/peers/tfidf_sentiment.py` (the TF-IDF anchor on the same test set)
    #[arg(long)]
    write_split: Option<std::path::PathBuf>,
}

/// `--pooling`.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum PoolingArg {
    Mean,
    Last,
    Max,
    MeanMax,
}

fn main() -> ExitCode {
    kiln::error::exit_code(run())
}

fn run() -> Result<()> {
    let cli = Cli::parse();
    let device = cli.common.device()?;
    kiln::manual_seed(cli.common.seed);
    let (texts, labels) = reviews(&cli.common.data.join("womens_reviews/reviews.csv"), cli.max_tokens)?;
    let order = permutation(texts.len(), cli.split_seed, 0);
    let (train_end, val_end) = (texts.len() * 8 / 10, texts.len() * 9 / 10);
    if let Some(path) = &cli.write_split {
        write_split(path, &texts, &labels, &order, (train_end, val_end))?;
    }
    let vocab = Vocab::build(order[..train_end].iter().flat_map(|&i| texts[i].iter()), 2, None);
    let subset = |indices: &[usize]| {
        let inputs = indices.iter().map(|&i| vocab.encode(&texts[i])).collect();
        SequenceDataset::classification(inputs, indices.iter().map(|&i| labels[i]).collect())
    };
    // batches of reviews of similar lengths pad little
    let train = DataLoader::new(subset(&order[..train_end]), cli.batch_size)
        .shuffle(cli.common.seed)
        .bucket_by_length(50);
    let val = DataLoader::new(subset(&order[train_end..val_end]), 256);
    let test = DataLoader::new(subset(&order[val_end..]), 256);
    let config = RnnClassifierConfig {
        vocab_size: vocab.len(),
        embedding: cli.embedding,
        hidden: cli.hidden,
        classes: 2,
        cell: CellType::Lstm,
        layers: 1,
        bidirectional: true,
        dropout: cli.dropout,
        pooling: match cli.pooling {
            PoolingArg::Mean => Pooling::Mean,
            PoolingArg::Last => Pooling::Last,
            PoolingArg::Max => Pooling::Max,
            PoolingArg::MeanMax => Pooling::MeanMax,
        },
    };
    let model = RnnClassifier::new(config, &device);
    let recommended = labels.iter().filter(|&&l| l == 1).count();
    println!(
        "sentiment: bidirectional LSTM, {} parameters on {device}; {} reviews ({:.1}% recommend), \
         {} / {} / {} split, vocabulary {}",
        nn::parameter_count(&model),
        texts.len(),
        100.0 * recommended as f64 / texts.len() as f64,
        train.samples(),
        val.samples(),
        test.samples(),
        vocab.len()
    );

    let optimizer = Optimizer::new(nn::parameters(&model), Rule::adam(), cli.lr);
    let task = Task::Classification { classes: 2 };
    let mut trainer = Trainer::new(&model, optimizer, device, cli.common.train_config(cli.epochs, task))
        .with_step(|batch: &Batch, _| {
            let lengths = &batch.input_padding.as_ref().expect("padded sequences").lengths;
            let logits = model.classify(&batch.inputs, Some(lengths));
            StepOutput::new(logits.cross_entropy(&batch.targets)).with_logits(logits)
        });
    let history = trainer.fit(&train, Some(&val))?;
    let training_seconds: f64 = history.iter().map(|r| r.seconds).sum();
    let result = trainer.evaluate(&test)?;
    let confusion = result.confusion.as_ref().expect("a classification step with logits");
    println!(
        "test: ROC-AUC {:.4} (expected ≥ 0.950), accuracy {:.2}%, minority-class (not recommended) F1 {:.3} \
         after {training_seconds:.0} s of training",
        result.metrics["roc_auc"],
        result.metrics["accuracy"] * 100.0,
        confusion.f1(0)
    );
    Ok(())
}

/// Writes review `order[i]` as a line `train|val|test<TAB>label<TAB>space-separated tokens`,
/// by its position i against the split's ends.
fn write_split(
    path: &std::path::Path,
    texts: &[Vec<String>],
    labels: &[i32],
    order: &[usize],
    (train_end, val_end): (usize, usize),
) -> Result<()> {
    let mut out = String::new();
    for (position, &i) in order.iter().enumerate() {
        let split = match position {
            p if p < train_end => "train",
            p if p < val_end => "val",
            _ => "test",
        };
        out += &format!("{split}\t{}\t{}\n", labels[i], texts[i].join(" "));
    }
    std::fs::write(path, out).map_err(|e| Error::io(path, e))
}

/// The tokens of every non-empty review (at most `max_tokens` each) and whether it recommends
/// the item (1) or not (0).
fn reviews(path: &std::path::Path, max_tokens: usize) -> Result<(Vec<Vec<String>>, Vec<i32>)> {
    let table = Table::read(path)?;
    let (text, label) = (table.column("Review Text")?, table.column("Recommended IND")?);
    let mut texts = Vec::new();
    let mut labels = Vec::new();
    for (r, row) in table.rows.iter().enumerate() {
        let Some(review) = &row[text] else { continue };
        let mut tokens = tokenize(review);
        if tokens.is_empty() {
            continue;
        }
        tokens.truncate(max_tokens);
        let recommends = match row[label].as_deref().map(str::trim) {
            Some("1") => 1,
            Some("0") => 0,
            other => {
                return Err(Error::Invalid(format!(
                    "{}: row {}: Recommended IND is {other:?}, not 0 or 1",
                    path.display(),
                    r + 1
                )));
            }
        };
        texts.push(tokens);
        labels.push(recommends);
    }
    Ok((texts, labels))
}
