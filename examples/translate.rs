//! German → English translation on Multi30k, with a GRU encoder–decoder and Bahdanau attention
//! ([`kiln::models::GruAttention`]) or a Transformer ([`kiln::models::TransformerTranslator`]),
//! as the PyTorch seq2seq tutorials train them: batches of 128 sentence pairs of similar length,
//! Adam, gradient clipping at 1, 10 epochs, the best epoch by validation loss kept. Reports the
//! validation perplexity, test BLEU-4 (tokenized, lowercased, against the one reference) with
//! greedy decoding and with beam search, ten example translations, and writes the attention of
//! the first test sentence as a heat map.
//!
//!     cargo run --release --example translate -- --model transformer --out runs/mt-transformer
//!     cargo run --release --example translate -- --model transformer --out runs/mt-transformer \
//!         --translate "ein mann fährt fahrrad ."
//!
//! Anchors (bentrevett/pytorch-seq2seq, spaCy tokens): GRU with attention BLEU 28.3, Transformer
//! 36.5. Targets with beam 5: gru-attn ≥ 28, transformer ≥ 35.

mod common;

use clap::{Parser, ValueEnum};
use kiln::data::multi30k::{Multi30k, encode_sentence};
use kiln::data::tokenize::tokenize;
use kiln::data::vocab::Vocab;
use kiln::data::{Batch, DataLoader};
use kiln::models::seq2seq::{Decoding, Hypothesis, Seq2Seq, translate};
use kiln::models::{
    GruAttention, GruAttentionConfig, Positions, TransformerTranslator, TransformerTranslatorConfig,
};
use kiln::nn;
use kiln::optim::{Optimizer, Rule};
use kiln::train::metrics::corpus_bleu;
use kiln::train::{StepOutput, Task, Trainer, checkpoint, plot};
use kiln::{Device, Error, Result, Tensor};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

/// Train a translation model on Multi30k and report its BLEU, or translate with a trained one.
#[derive(Parser, Debug)]
struct Cli {
    #[command(flatten)]
    common: common::Common,
    /// The model
    #[arg(long, value_enum, default_value = "transformer")]
    model: ModelArg,
    /// Training epochs
    #[arg(long, default_value_t = 10)]
    epochs: usize,
    /// Sentence pairs per batch
    #[arg(long, default_value_t = 128)]
    batch_size: usize,
    /// Adam learning rate [default: 1e-3 for gru-attn, 5e-4 for transformer]
    #[arg(long)]
    lr: Option<f64>,
    /// Stop after this many epochs without a better validation loss
    #[arg(long, default_value_t = 3)]
    patience: usize,
    /// Beam width of the beam-search BLEU (greedy BLEU is reported too)
    #[arg(long, default_value_t = 5)]
    beam: usize,
    /// The GNMT length-penalty exponent α of beam search
    #[arg(long, default_value_t = 0.6)]
    length_penalty: f64,
    /// Transformer positions
    #[arg(long, value_enum, default_value = "learned")]
    positions: PositionsArg,
    /// Translate this German sentence with <out>/best.safetensors instead of training
    #[arg(long, requires = "out")]
    translate: Option<String>,
    /// Evaluate only: report the figures of <out>/best.safetensors without training
    #[arg(long, requires = "out")]
    evaluate: bool,
    /// Score the first N test sentences only (all by default)
    #[arg(long, value_name = "N")]
    test_sentences: Option<usize>,
    /// Validate on the first N batches only (all by default)
    #[arg(long, value_name = "N")]
    eval_batches: Option<usize>,
}

/// `--model`.
#[derive(Clone, Copy, Debug, ValueEnum)]
enum ModelArg {
    GruAttn,
    Transformer,
}

/// `--positions`.
#[derive(Clone, Copy, Debug, ValueEnum)]
enum PositionsArg {
    Learned,
    Sinusoidal,
}

/// The most tokens decoded for a sentence.
const MAX_OUTPUT: usize = 100;

fn main() -> ExitCode {
    kiln::error::exit_code(run())
}

fn run() -> Result<()> {
    let cli = Cli::parse();
    let device = cli.common.device()?;
    kiln::manual_seed(cli.common.seed);
    let data = Multi30k::load(cli.common.data.join("multi30k"))?;
    let (sources, targets) = (data.source_vocab.len(), data.target_vocab.len());
    match cli.model {
        ModelArg::GruAttn => {
            let model = GruAttention::new(GruAttentionConfig::tutorial(sources, targets), &device);
            go(&model, &cli, &data, device, 1e-3)
        }
        ModelArg::Transformer => {
            let positions = match cli.positions {
                PositionsArg::Learned => Positions::Learned,
                PositionsArg::Sinusoidal => Positions::Sinusoidal,
            };
            let config = TransformerTranslatorConfig {
                positions,
                ..TransformerTranslatorConfig::tutorial(sources, targets)
            };
            go(&TransformerTranslator::new(config, &device), &cli, &data, device, 5e-4)
        }
    }
}

/// Trains (or loads) `model` and reports; `lr` is the model's default learning rate.
fn go<M: Seq2Seq>(model: &M, cli: &Cli, data: &Multi30k, device: Device, lr: f64) -> Result<()> {
    let name = cli.model.to_possible_value().expect("every model has a name").get_name().to_string();
    println!(
        "translate: {name}, {} parameters on {device}; {} / {} / {} sentence pairs, vocabularies de {} en {}",
        nn::parameter_count(model),
        data.train.len(),
        data.val.len(),
        data.test.len(),
        data.source_vocab.len(),
        data.target_vocab.len()
    );
    let best = cli.common.out.as_ref().map(|out| out.join("best.safetensors"));
    if let Some(sentence) = &cli.translate {
        load(model, best.as_ref().expect("--translate requires --out"))?;
        let source = encode_sentence(&data.source_vocab, &tokenize(sentence));
        let decoding = Decoding::beam(cli.beam, cli.length_penalty, MAX_OUTPUT);
        let hypothesis = &translate(model, &[source], &decoding, 1)?[0];
        println!("{}", data.target_vocab.decode(&hypothesis.tokens).join(" "));
        return Ok(());
    }

    let train = DataLoader::new(data.dataset(&data.train), cli.batch_size)
        .shuffle(cli.common.seed)
        .bucket_by_length(100);
    let val = DataLoader::new(data.dataset(&data.val), cli.batch_size);
    let mut config = cli.common.train_config(cli.epochs, Task::LanguageModel);
    config.early_stopping = Some(cli.patience);
    config.clip_grad_norm = Some(1.0);
    config.eval_batches = cli.eval_batches;
    let optimizer = Optimizer::new(nn::parameters(model), Rule::adam(), cli.lr.unwrap_or(lr));
    let mut trainer = Trainer::new(model, optimizer, device, config).with_step(|batch, _| step(model, batch));
    if cli.evaluate {
        load(model, best.as_ref().expect("--evaluate requires --out"))?;
    } else {
        let history = trainer.fit(&train, Some(&val))?;
        let epochs = history.len().max(1) as f64;
        println!("trained: {:.0} s per epoch", history.iter().map(|r| r.seconds).sum::<f64>() / epochs);
        if let Some(best) = best.as_ref().filter(|b| b.exists()) {
            load(model, best)?;
        }
    }
    let validation = trainer.evaluate_first(&val, cli.eval_batches)?;
    println!("validation: loss {:.4}, perplexity {:.2}", validation.loss, validation.metrics["perplexity"]);

    let count = cli.test_sentences.unwrap_or(data.test.len()).min(data.test.len());
    let test = data.dataset(&data.test);
    let sources = &test.inputs()[..count];
    let references: Vec<&[String]> = data.test.targets[..count].iter().map(Vec::as_slice).collect();
    let decode_words = |h: &Hypothesis| -> Vec<String> {
        data.target_vocab.decode(&h.tokens).into_iter().map(str::to_string).collect()
    };
    let started = Instant::now();
    let greedy = translate(model, sources, &Decoding::greedy(MAX_OUTPUT), 128)?;
    let greedy_words: Vec<Vec<String>> = greedy.iter().map(decode_words).collect();
    println!(
        "test, greedy: {} ({:.0} s)",
        corpus_bleu(&greedy_words, &references),
        started.elapsed().as_secs_f64()
    );
    let started = Instant::now();
    let decoding = Decoding::beam(cli.beam, cli.length_penalty, MAX_OUTPUT);
    let beam = translate(model, sources, &decoding, 64)?;
    let beam_words: Vec<Vec<String>> = beam.iter().map(decode_words).collect();
    println!(
        "test, beam {} (α {}): {} ({:.0} s)",
        cli.beam,
        cli.length_penalty,
        corpus_bleu(&beam_words, &references),
        started.elapsed().as_secs_f64()
    );
    for i in 0..count.min(10) {
        println!(
            "\n  de:  {}\n  ref: {}\n  out: {}",
            data.test.sources[i].join(" "),
            references[i].join(" "),
            beam_words[i].join(" ")
        );
    }
    let heat_map = cli.common.out.clone().unwrap_or_else(|| PathBuf::from(".")).join("attention.png");
    attention_map(model, &data.source_vocab, &data.target_vocab, &sources[0], &beam[0], &heat_map)?;
    println!("\nattention of test sentence 0: {}", heat_map.display());
    Ok(())
}

/// The training step: teacher-forced logits of target tokens 0..T−1 against tokens 1..T, the
/// cross-entropy over the real tokens (the output layer computes those alone).
fn step<M: Seq2Seq>(model: &M, batch: &Batch) -> StepOutput {
    let (src, tgt) = (&batch.inputs, &batch.targets);
    let source = batch.input_padding.as_ref().expect("padded sources");
    let target = batch.target_padding.as_ref().expect("padded targets");
    let steps = tgt.dim(1) - 1;
    // the (b, t) with t + 1 < length b: every target token but the <bos> is predicted
    // (the lengths are still on the host)
    let lengths = target.lengths.to(&Device::Cpu).to_vec::<i32>().expect("the batch's lengths");
    let positions: Vec<i32> = lengths
        .iter()
        .enumerate()
        .flat_map(|(b, &n)| (0..n - 1).map(move |t| (b * steps) as i32 + t))
        .collect();
    let count = positions.len();
    let positions = Tensor::from_vec(positions, [count], &src.device());
    let logits = model.forward_teacher(src, source, &tgt.narrow(1, 0, steps), Some(&positions)); // (R, V)
    let predicted = tgt.narrow(1, 1, steps).reshape([tgt.dim(0) * steps]).index_select(0, &positions);
    StepOutput::new(logits.cross_entropy(&predicted)).with_weight(count as f64)
}

/// Loads a checkpoint written by training into `model`.
fn load(model: &dyn nn::Module, path: &Path) -> Result<()> {
    let saved = checkpoint::load(path)?;
    checkpoint::load_into(model, &saved.tensors, path)
        .map_err(|e| Error::Invalid(format!("{e} (was it trained with the same --model and --positions?)")))
}

/// Writes the heat map of the decoder's attention over `source` while it produced `output`.
fn attention_map<M: Seq2Seq>(
    model: &M,
    source_vocab: &Vocab,
    target_vocab: &Vocab,
    source: &[i32],
    output: &Hypothesis,
    path: &Path,
) -> Result<()> {
    let mut read = vec![Vocab::BOS];
    read.extend(&output.tokens);
    let weights = model.cross_attention(source, &read).to_vec::<f32>()?;
    let mut produced: Vec<String> =
        target_vocab.decode(&output.tokens).into_iter().map(str::to_string).collect();
    produced.push("<eos>".to_string());
    let columns: Vec<String> = source_vocab.decode(source).into_iter().map(str::to_string).collect();
    plot::attention_plot(path, &columns[1..columns.len() - 1].join(" "), &columns, &produced, &weights)
}
