//! LoRA against full fine-tuning: adapts the Shakespeare character GPT of `char_gpt --preset cpu`
//! to the English captions of Multi30k (lower-cased, characters Shakespeare never uses dropped),
//! once with rank-r LoRA adapters on the attention projections (`c_attn`, `c_proj`) and once by
//! training every parameter, with the same steps, batch, learning rate and schedule. Reports the
//! validation loss on `val.en.gz` before and after each, the fraction of parameters each trained,
//! how much of full fine-tuning's gain LoRA recovers, and a sample of each.
//!
//!     cargo run --release --example char_gpt -- --preset cpu --out runs/gpt
//!     cargo run --release --example lora_finetune -- --base runs/gpt --out runs/lora
//!
//! Target: LoRA closes at least 80% of the gap full fine-tuning closes, training under 5% of the
//! parameters. Measured (2026-12-01, 200 validation batches): LoRA's loss levels off near 1.59
//! for α from 64 to 256 at lr 3e-3 (1.65 at lr 1e-3), while full fine-tuning reaches 1.38 from
//! 2.26, so rank-8 adapters on the attention alone recover 75.6% of the gain (PyTorch, given the
//! same checkpoint and recipe in `benches/peers/torch_lora.py`: 75.6%); the defaults (lr 3e-3,
//! α 64, no weight decay) are the best setting of that sweep. The captions' characters are
//! distributed unlike Shakespeare's, and the embedding (which the LM head shares) is frozen:
//! `--also-train '*wte*' --also-train '*ln_*'` trains it and the layer norms' gains beside the
//! adapters (9,472 parameters more, 4.23% in all) and recovers 81.2%, 80.1% and 80.1% for seeds
//! 0, 1, 2 (PyTorch, seed 0: 80.5%); the embedding alone 80.4%, 79.2% and 79.6%. `--out` receives the adapters alone
//! (`adapters.safetensors`), the `--also-train` parameters (`also_trained.safetensors`) and the
//! fully fine-tuned model (`full.safetensors`).

mod common;
#[path = "common/lm.rs"]
mod lm;

use clap::Parser;
use kiln::data::lm::RandomWindows;
use kiln::data::text::{CharVocab, read_lines};
use kiln::models::generate::Sampling;
use kiln::models::gpt::Gpt;
use kiln::nn::{self, LoraConfig, lora};
use kiln::rng::RandomKey;
use kiln::train::checkpoint;
use kiln::{DType, Device, Error, amp};
use lm::AdamWGroups;
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;

/// Fine-tune a Shakespeare char-GPT on Multi30k's English captions, with LoRA and in full.
#[derive(Parser, Debug)]
struct Cli {
    #[command(flatten)]
    common: common::Common,
    /// The folder `char_gpt --out` wrote: last.safetensors and vocab.json
    #[arg(long)]
    base: std::path::PathBuf,
    /// Optimizer steps of each fine-tuning run
    #[arg(long, default_value_t = 500)]
    steps: usize,
    /// Sequences per batch
    #[arg(long, default_value_t = 12)]
    batch: usize,
    /// Peak learning rate of both runs (50 warm-up steps, then a cosine to a tenth of it)
    #[arg(long, default_value_t = 3e-3)]
    lr: f64,
    /// AdamW's decoupled weight decay on matrices, both runs
    #[arg(long, default_value_t = 0.0)]
    weight_decay: f64,
    /// LoRA rank
    #[arg(long, default_value_t = 8)]
    rank: usize,
    /// LoRA alpha: the update is scaled by alpha / rank
    #[arg(long, default_value_t = 64.0)]
    alpha: f64,
    /// Layers that get adapters (state-dict paths, `*` matches anything)
    #[arg(long, default_value = "*.attn.c_*")]
    layers: String,
    /// Base parameters LoRA also trains in full, by state-dict name (`*` matches anything; the
    /// option repeats), as PEFT's `modules_to_save`: `*wte*` is the token embedding, which the
    /// LM head shares; `*ln_*` the layer norms' gains
    #[arg(long)]
    also_train: Vec<String>,
    /// Validation batches of each evaluation
    #[arg(long, default_value_t = 200)]
    eval_batches: usize,
    /// Characters of each sample
    #[arg(long, default_value_t = 200)]
    tokens: usize,
}

fn main() -> ExitCode {
    kiln::error::exit_code(run())
}

/// The two ways of fine-tuning compared.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Method {
    Lora,
    Full,
}

/// What one fine-tuning run reached.
struct Outcome {
    trained: usize,
    loss: f64,
    seconds: f64,
    sample: String,
}

fn run() -> kiln::Result<()> {
    let cli = Cli::parse();
    let device = cli.common.device()?;
    let checkpoint = cli.base.join("last.safetensors");
    if !checkpoint.exists() {
        return Err(Error::Invalid(format!(
            "no base model at {}: train one first with `cargo run --release --example char_gpt -- \
             --preset cpu --out {}`",
            checkpoint.display(),
            cli.base.display()
        )));
    }
    let vocab = CharVocab::load(cli.base.join("vocab.json"))?;
    let corpus = cli.common.data.join("multi30k");
    let train_ids = captions(&corpus.join("train.en.gz"), &vocab)?;
    let val_ids = captions(&corpus.join("val.en.gz"), &vocab)?;
    let (base, _) = lm::load_gpt(&checkpoint, &device)?;
    let block = base.config().block_size;
    let val = lm::validation_windows(&val_ids, cli.batch, block)?;
    let total = lm::parameter_count(&nn::parameters(&base));
    println!(
        "base: {} ({:.2}M parameters) on {device}; captions: {} training and {} validation characters",
        checkpoint.display(),
        total as f64 / 1e6,
        train_ids.len(),
        val_ids.len()
    );
    let before = lm::evaluate(&base, &val, cli.eval_batches, &device)?;
    println!("validation loss before fine-tuning: {before:.4}");
    println!("base model's caption: {}", sample(&base, &vocab, &cli)?);

    let train =
        RandomWindows::new(train_ids, cli.batch, block, RandomKey { seed: cli.common.seed, stream: 0 })?;
    let mut outcomes = Vec::new();
    for method in [Method::Lora, Method::Full] {
        let outcome = fine_tune(method, &cli, &checkpoint, &vocab, (&train, &val), &device)?;
        println!(
            "{method:?}: trained {} parameters ({:.2}% of {:.2}M), validation loss {before:.4} → {:.4} \
             in {:.1} s\n  sample: {}",
            outcome.trained,
            100.0 * outcome.trained as f64 / total as f64,
            total as f64 / 1e6,
            outcome.loss,
            outcome.seconds,
            outcome.sample
        );
        outcomes.push(outcome);
    }
    let (lora, full) = (&outcomes[0], &outcomes[1]);
    println!(
        "LoRA closes {:.1}% of the gap full fine-tuning closes ({:.4} of {:.4}), training {:.2}% of the \
         parameters (target: ≥ 80% with < 5%)",
        100.0 * (before - lora.loss) / (before - full.loss),
        before - lora.loss,
        before - full.loss,
        100.0 * lora.trained as f64 / total as f64
    );
    Ok(())
}

/// Fine-tunes a fresh copy of the base model by `method` and evaluates it; with --out, saves the
/// adapters (LoRA) or the model (full).
fn fine_tune(
    method: Method,
    cli: &Cli,
    checkpoint: &Path,
    vocab: &CharVocab,
    (train, val): (&RandomWindows, &RandomWindows),
    device: &Device,
) -> kiln::Result<Outcome> {
    let (model, _) = lm::load_gpt(checkpoint, device)?;
    let params = match method {
        Method::Lora => {
            // the base model learns nothing but the --also-train parameters; the adapters are
            // created trainable
            nn::freeze(&model, "*");
            for pattern in &cli.also_train {
                nn::unfreeze(&model, pattern);
            }
            let config = LoraConfig { rank: cli.rank, alpha: cli.alpha, dropout: 0.0 };
            let adapted = lora::apply(&model, &cli.layers, config)?;
            if adapted == 0 {
                return Err(Error::Invalid(format!(
                    "--layers {:?} matches no layer of the model",
                    cli.layers
                )));
            }
            nn::trainable_parameters(&model)
        }
        Method::Full => nn::parameters(&model),
    };
    let trained = lm::parameter_count(&params);
    let mixed_precision = cli.common.mixed_precision;
    let mut opt = AdamWGroups::new(params, cli.weight_decay, 0.99).mixed_precision(mixed_precision);
    let steps = cli.common.max_steps.map_or(cli.steps, |m| m.min(cli.steps));
    let clock = Instant::now();
    nn::train(&model);
    for step in 0..steps {
        let lr = lm::nanogpt_lr(step, cli.lr, cli.lr / 10.0, 50, cli.steps);
        let batch = train.batch(step as u64);
        let loss = {
            let _autocast = mixed_precision.then(|| amp::autocast(DType::F16));
            model.loss(&batch.inputs.to(device), &batch.targets.to(device))
        };
        let loss = opt.step(&loss, lr, 1.0)?;
        if (step + 1) % 100 == 0 {
            println!("  {method:?} step {:>4}: loss {loss:.4}", step + 1);
        }
    }
    let seconds = clock.elapsed().as_secs_f64();
    if method == Method::Lora {
        // inference runs on the merged weights: one matmul per projection again
        lora::merge(&model)?;
    }
    let loss = lm::evaluate(&model, val, cli.eval_batches, device)?;
    let text = sample(&model, vocab, cli)?;
    if let Some(dir) = &cli.common.out {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        match method {
            Method::Lora => {
                lora::unmerge(&model)?;
                lora::save_adapters(&model, dir.join("adapters.safetensors"))?;
                if !cli.also_train.is_empty() {
                    // the base parameters trained beside the adapters, which the adapters' file
                    // does not hold
                    let trained: Vec<_> = nn::trainable_parameters(&model)
                        .into_iter()
                        .filter(|(name, _)| !name.contains("lora_"))
                        .collect();
                    checkpoint::save(dir.join("also_trained.safetensors"), &trained, &HashMap::new())?;
                }
            }
            Method::Full => lm::save_gpt(&dir.join("full.safetensors"), &model, steps as u64)?,
        }
    }
    Ok(Outcome { trained, loss, seconds, sample: text })
}

/// The captions of `path` as one stream of character ids, a caption per line: lower-cased, with
/// the characters outside `vocab` dropped.
fn captions(path: &Path, vocab: &CharVocab) -> kiln::Result<Vec<i32>> {
    let known: HashSet<char> = vocab.chars().iter().copied().collect();
    let mut text = String::new();
    for line in read_lines(path)? {
        text.extend(line.to_lowercase().chars().filter(|c| known.contains(c)));
        text.push('\n');
    }
    vocab.encode(&text)
}

/// A caption sampled from `model` after a new line (temperature 0.8, the run's seed).
fn sample(model: &Gpt, vocab: &CharVocab, cli: &Cli) -> kiln::Result<String> {
    let modes = nn::modes(model);
    nn::eval(model);
    let ids = model.generate(&vocab.encode("\n")?, cli.tokens, &Sampling::sampled(0.8, cli.common.seed));
    nn::restore_modes(model, &modes);
    Ok(vocab.decode(&ids?).replace('\n', " / "))
}
