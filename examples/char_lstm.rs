//! A character-level LSTM language model on tiny-shakespeare ([`kiln::models::CharRnn`]:
//! embedding 256, two LSTM layers of 256, a linear layer to the 65 characters), trained as the
//! PyTorch peer does: random windows of 128 characters from a zero state, batch 32, Adam 2e-3
//! with a cosine to 2e-4, gradient clipping at 1.0, 1000 iterations; first 90% of the text to
//! train, last 10% to validate (as nanoGPT). `--bptt` reads the text as 32 parallel streams
//! instead, carrying the (detached) state from one window to the next.
//!
//!     cargo run --release --example char_lstm -- --out runs/char_lstm
//!     cargo run --release --example char_lstm -- --out runs/char_lstm --sample --prompt "ROMEO:"
//!
//! Expected: validation loss ≤ 1.62 nats per character (PyTorch's same recipe: 1.60).

mod common;

use clap::Parser;
use kiln::Error;
use kiln::data::Batch;
use kiln::data::lm::{BpttStreams, RandomWindows};
use kiln::data::text::{CharVocab, read_text};
use kiln::models::{CharRnn, CharRnnConfig};
use kiln::nn::loss::sequence_cross_entropy;
use kiln::nn::{self, LstmState, Module};
use kiln::optim::schedule::WarmupCosine;
use kiln::optim::{Optimizer, Rule};
use kiln::rng::RandomKey;
use kiln::train::{BatchSource, StepOutput, Task, Trainer, checkpoint};
use std::cell::RefCell;
use std::process::ExitCode;

/// Train a character-level LSTM language model on tiny-shakespeare, or sample from one.
#[derive(Parser, Debug)]
struct Cli {
    #[command(flatten)]
    common: common::Common,
    /// Optimizer steps
    #[arg(long, default_value_t = 1000)]
    iters: usize,
    /// Windows per batch
    #[arg(long, default_value_t = 32)]
    batch_size: usize,
    /// Characters per window
    #[arg(long, default_value_t = 128)]
    window: usize,
    /// Adam learning rate at the start (annealed to --min-lr with a cosine)
    #[arg(long, default_value_t = 2e-3)]
    lr: f64,
    /// The learning rate at the last step
    #[arg(long, default_value_t = 2e-4)]
    min_lr: f64,
    /// Clip the gradients' joint norm to this
    #[arg(long, default_value_t = 1.0)]
    clip: f64,
    /// Embedding width
    #[arg(long, default_value_t = 256)]
    embedding: usize,
    /// Hidden width of each LSTM layer
    #[arg(long, default_value_t = 256)]
    hidden: usize,
    /// LSTM layers
    #[arg(long, default_value_t = 2)]
    layers: usize,
    /// Validate every this many steps (and after the last)
    #[arg(long, default_value_t = 1000)]
    eval_every: usize,
    /// Validation batches (random windows of the last 10%, the same ones every time)
    #[arg(long, default_value_t = 200)]
    eval_batches: usize,
    /// Truncated backpropagation through time: read the text as parallel streams and carry the
    /// state from one window to the next
    #[arg(long)]
    bptt: bool,
    /// Generate from <out>/best.safetensors instead of training
    #[arg(long, requires = "out")]
    sample: bool,
    /// The text the sample starts from
    #[arg(long, default_value = "ROMEO:")]
    prompt: String,
    /// Characters to sample
    #[arg(long, default_value_t = 500)]
    sample_len: usize,
    /// Sampling temperature: below 1 sharper, above 1 flatter than the model's distribution
    #[arg(long, default_value_t = 0.8)]
    temperature: f64,
}

fn main() -> ExitCode {
    kiln::error::exit_code(run())
}

fn run() -> kiln::Result<()> {
    let cli = Cli::parse();
    let device = cli.common.device()?;
    kiln::manual_seed(cli.common.seed);
    let text = read_text(cli.common.data.join("tinyshakespeare/input.txt"))?;
    let vocab = CharVocab::of(&text);
    let ids = vocab.encode(&text)?;
    let config = CharRnnConfig {
        vocab_size: vocab.len(),
        embedding: cli.embedding,
        hidden: cli.hidden,
        layers: cli.layers,
        dropout: 0.0,
    };
    let model = CharRnn::new(config, &device);
    if cli.sample {
        let out = cli.common.out.as_deref().expect("clap requires --out with --sample");
        let path = out.join("best.safetensors");
        let saved = checkpoint::load(&path)?;
        checkpoint::load_into(&model, &saved.tensors, &path)
            .map_err(|e| Error::Invalid(format!("{e} (train it with the same sizes)")))?;
        return print_sample(&model, &vocab, &cli);
    }

    let split = ids.len() * 9 / 10;
    let (train_ids, val_ids) = (&ids[..split], &ids[split..]);
    // the validation windows do not depend on --seed, so runs compare on the same ones
    let val = RandomWindows::new(val_ids, cli.batch_size, cli.window, RandomKey { seed: 0, stream: 1 })?;
    let train_key = RandomKey { seed: cli.common.seed, stream: 0 };
    let windows = RandomWindows::new(train_ids, cli.batch_size, cli.window, train_key)?;
    let streams = BpttStreams::new(train_ids, cli.batch_size, cli.window)?;
    let train: &dyn BatchSource = if cli.bptt { &streams } else { &windows };
    println!(
        "char LSTM: {} parameters on {device}; {} / {} characters, vocabulary {}{}",
        nn::parameter_count(&model),
        train_ids.len(),
        val_ids.len(),
        vocab.len(),
        if cli.bptt { ", truncated BPTT with carried state" } else { "" }
    );

    let mut config = cli.common.steps_config(cli.iters, cli.eval_every, Task::LanguageModel);
    config.eval_batches = Some(cli.eval_batches);
    config.clip_grad_norm = Some(cli.clip);
    // with --bptt the state of one training window starts the next one; each pass over the
    // streams starts from zeros (validation always does)
    let windows_per_pass = streams.epoch(0).len();
    let carried: RefCell<(usize, Option<LstmState>)> = RefCell::new((0, None));
    let optimizer = Optimizer::new(nn::parameters(&model), Rule::adam(), cli.lr);
    let schedule = WarmupCosine::new(cli.lr, cli.min_lr, 0, cli.iters);
    let mut trainer = Trainer::new(&model, optimizer, device, config).with_batch_scheduler(schedule);
    if cli.bptt {
        trainer = trainer.with_step(|batch: &Batch, training| {
            if !training {
                return StepOutput::new(sequence_cross_entropy(
                    &model.forward(&batch.inputs),
                    &batch.targets,
                    None,
                ));
            }
            let mut carried = carried.borrow_mut();
            let (steps, state) = &mut *carried;
            if *steps % windows_per_pass == 0 {
                *state = None;
            }
            *steps += 1;
            let (logits, last) = model.forward_with(&batch.inputs, state.as_ref());
            *state = Some(last.detach());
            StepOutput::new(sequence_cross_entropy(&logits, &batch.targets, None))
        });
    }
    let history = trainer.fit(train, Some(&val))?;
    let training_seconds: f64 = history.iter().map(|r| r.seconds).sum();
    let val_loss = history.last().and_then(|r| r.val_loss).unwrap_or(f64::NAN);
    println!(
        "validation loss: {val_loss:.4} nats/char over {} batches (expected ≤ 1.62) after {training_seconds:.0} s \
         of training",
        cli.eval_batches
    );
    print_sample(&model, &vocab, &cli)
}

/// Prints --sample-len characters generated from --prompt at --temperature.
fn print_sample(model: &CharRnn, vocab: &CharVocab, cli: &Cli) -> kiln::Result<()> {
    if cli.prompt.is_empty() || cli.temperature <= 0.0 {
        return Err(Error::Invalid("--prompt must not be empty and --temperature must be positive".into()));
    }
    let prompt = vocab.encode(&cli.prompt).map_err(|e| Error::Invalid(format!("--prompt: {e}")))?;
    nn::eval(model);
    let key = RandomKey { seed: cli.common.seed, stream: 2 };
    let ids = model.generate(&prompt, cli.sample_len, cli.temperature, key)?;
    println!("\nsample at temperature {}:\n{}", cli.temperature, vocab.decode(&ids));
    Ok(())
}
