//! The Trainer for sequence models: the loss over (B, T, V) logits with padding left out
//! (against PyTorch), batch-to-loss steps for models whose forward takes more than the inputs,
//! runs by steps as nanoGPT's (evaluation every N steps on the same batches, the best checkpoint
//! and early stopping by evaluations, resume), per-step logs, gradient norms and gradient
//! accumulation.

mod common;

use kiln::data::lm::RandomWindows;
use kiln::data::sequence::SequenceDataset;
use kiln::data::{Batch, DataLoader, InMemory, Targets};
use kiln::nn::loss::{masked_sequence_cross_entropy, sequence_cross_entropy};
use kiln::nn::{self, Embedding, Linear, Module, ReLU, Sequential, Tanh, Visitor};
use kiln::optim::schedule::WarmupCosine;
use kiln::optim::{Optimizer, Rule, decay_groups};
use kiln::rng::RandomKey;
use kiln::train::checkpoint::load;
use kiln::train::metrics::Confusion;
use kiln::train::{StepOutput, Task, TrainConfig, Trainer};
use kiln::{DType, Device, Tensor};
use std::path::PathBuf;

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("kiln-seq-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn quiet(mut config: TrainConfig) -> TrainConfig {
    (config.progress, config.verbose) = (false, false);
    config
}

/// PyTorch's loss and gradient for one padded batch (`tests/fixtures/sequence_cross_entropy.py`).
struct Fixture {
    dims: [usize; 3],
    pad: i32,
    lengths: Vec<usize>,
    logits: Vec<f64>,
    targets: Vec<i32>,
    loss: f64,
    grad: Vec<f64>,
}

fn fixture() -> Fixture {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/sequence_cross_entropy.json");
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let floats = |k: &str| v[k].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect::<Vec<_>>();
    let ints = |k: &str| v[k].as_array().unwrap().iter().map(|x| x.as_i64().unwrap()).collect::<Vec<_>>();
    let dims = ints("shape");
    Fixture {
        dims: [dims[0] as usize, dims[1] as usize, dims[2] as usize],
        pad: v["pad"].as_i64().unwrap() as i32,
        lengths: ints("lengths").into_iter().map(|n| n as usize).collect(),
        logits: floats("logits"),
        targets: ints("targets").into_iter().map(|t| t as i32).collect(),
        loss: v["loss"].as_f64().unwrap(),
        grad: floats("grad"),
    }
}

fn assert_close(got: &[f64], want: &[f64], tolerance: f64, what: &str) {
    let err = got.iter().zip(want).map(|(g, w)| (g - w).powi(2)).sum::<f64>().sqrt();
    let norm = want.iter().map(|w| w * w).sum::<f64>().sqrt();
    assert!(err <= tolerance * norm.max(1e-300), "{what}: relative error {:e}", err / norm);
}

#[test]
fn sequence_cross_entropy_matches_pytorch_with_the_padding_ignored() {
    let f = fixture();
    let [b, t, _] = f.dims;
    let logits = Tensor::from_vec(f.logits.clone(), f.dims, &Device::Cpu).requires_grad_();
    let targets = Tensor::from_vec(f.targets.clone(), [b, t], &Device::Cpu);
    let loss = sequence_cross_entropy(&logits, &targets, Some(f.pad as i64));
    assert!((loss.item::<f64>().unwrap() - f.loss).abs() < 1e-12 * f.loss, "{} vs {}", loss, f.loss);
    let grad = loss.backward().get(&logits).unwrap().to_vec::<f64>().unwrap();
    assert_close(&grad, &f.grad, 1e-12, "gradient");

    // the same by the padding mask, whatever ids the padding holds (here none that exist)
    let mask: Vec<bool> = (0..b * t).map(|i| i % t < f.lengths[i / t]).collect();
    let garbage: Vec<i32> =
        f.targets.iter().zip(&mask).map(|(&id, &real)| if real { id } else { 1000 }).collect();
    let mask = Tensor::from_vec(mask, [b, t], &Device::Cpu);
    let garbage = Tensor::from_vec(garbage, [b, t], &Device::Cpu);
    let masked = masked_sequence_cross_entropy(&logits, &garbage, &mask);
    assert!((masked.item::<f64>().unwrap() - f.loss).abs() < 1e-12 * f.loss);
    let grad = masked.backward().get(&logits).unwrap().to_vec::<f64>().unwrap();
    assert_close(&grad, &f.grad, 1e-12, "gradient by the mask");

    // and on the GPU, in f32
    let Some(gpu) = common::gpu("sequence cross-entropy") else {
        return;
    };
    let logits = Tensor::from_vec(f.logits.clone(), f.dims, &Device::Cpu).cast(DType::F32).to(&gpu).detach();
    let logits = logits.requires_grad_();
    for loss in [
        sequence_cross_entropy(&logits, &targets.to(&gpu), Some(f.pad as i64)),
        masked_sequence_cross_entropy(&logits, &garbage.to(&gpu), &mask.to(&gpu)),
    ] {
        assert!((loss.item::<f32>().unwrap() as f64 - f.loss).abs() < 1e-5 * f.loss);
        let grad = loss.backward().get(&logits).unwrap().to_f64_vec().unwrap();
        assert_close(&grad, &f.grad, 1e-5, "GPU gradient");
    }
}

#[test]
#[should_panic(
    expected = "sequence_cross_entropy: expected float logits (B, T, V) and i32/u32 targets (B, T), \
                           found logits [2, 3, 4] f32 and targets [2, 4] i32"
)]
fn sequence_cross_entropy_names_shapes_that_do_not_fit() {
    let logits = Tensor::zeros([2, 3, 4], &Device::Cpu);
    sequence_cross_entropy(&logits, &Tensor::from_vec(vec![0i32; 8], [2, 4], &Device::Cpu), None);
}

/// A bigram language model: each token's embedding through a hidden layer to logits for the
/// next token.
fn bigram(vocab: usize, device: &Device) -> Sequential {
    Sequential::new()
        .add(Embedding::new(vocab, 8, device))
        .add(Linear::new(8, 8, device))
        .add(Tanh)
        .add(Linear::new(8, vocab, device))
}

const VOCAB: usize = 11;

/// A corpus whose next token is the current one plus 1, 2 or 3 (mod VOCAB), drawn at random: a
/// bigram model learns it down to a loss of ln 3.
fn corpus(len: usize, seed: u64) -> Vec<i32> {
    let key = RandomKey { seed, stream: 9 };
    let mut ids = vec![0i32];
    for i in 0..len as u64 - 1 {
        let last = *ids.last().unwrap();
        ids.push((last + 1 + (key.bits(i) % 3) as i32) % VOCAB as i32);
    }
    ids
}

fn windows(seed: u64, stream: u64) -> RandomWindows {
    RandomWindows::new(corpus(600, seed), 4, 8, RandomKey { seed: 7, stream }).unwrap()
}

#[test]
fn a_run_by_steps_evaluates_every_n_steps_on_the_same_batches() {
    let dir = scratch("by-steps");
    kiln::manual_seed(3);
    let model = bigram(VOCAB, &Device::Cpu);
    let (train, val) = (windows(1, 0), windows(2, 1));
    let mut config = quiet(TrainConfig::by_steps(30, 10, Task::LanguageModel));
    (config.eval_batches, config.out_dir, config.log_every) = (Some(4), Some(dir.clone()), 7);
    let opt = Optimizer::new(nn::parameters(&model), Rule::adam(), 0.05);
    let mut trainer = Trainer::new(&model, opt, Device::Cpu, config);
    let history = trainer.fit(&train, Some(&val)).unwrap().to_vec();

    let log = trainer.steps_log();
    assert_eq!(log.iter().map(|r| r.step).collect::<Vec<_>>(), (1..=30).collect::<Vec<_>>());
    let evaluated: Vec<usize> = log.iter().filter(|r| r.val_loss.is_some()).map(|r| r.step).collect();
    assert_eq!(evaluated, [10, 20, 30]);
    let val_losses: Vec<f64> = log.iter().filter_map(|r| r.val_loss).collect();
    assert!(val_losses[2] < val_losses[0], "{val_losses:?}");
    // the evaluation reads the same first 4 batches every time: with the final weights it gives
    // the last logged validation loss exactly
    assert_eq!(trainer.evaluate_first(&val, Some(4)).unwrap().loss, val_losses[2]);
    // and they are what training did not see: another 4 give another loss
    assert_ne!(trainer.evaluate_first(&val, Some(8)).unwrap().loss, val_losses[2]);

    // one epoch of endless data, stopped at max_steps, with the perplexity of its last evaluation
    assert_eq!(history.len(), 1);
    assert_eq!((history[0].steps, history[0].samples), (30, 120));
    assert_eq!(history[0].val_loss, Some(val_losses[2]));
    assert_eq!(history[0].metrics["perplexity"], val_losses[2].exp());

    let steps_csv = std::fs::read_to_string(dir.join("steps.csv")).unwrap();
    let lines: Vec<&str> = steps_csv.lines().collect();
    assert_eq!(lines.len(), 31);
    assert_eq!(lines[0], "step,loss,lr,val_loss");
    assert_eq!(lines[10], format!("10,{},0.05,{}", log[9].loss, val_losses[0]));
    assert_eq!(lines[11], format!("11,{},0.05,", log[10].loss));
    for png in ["loss_by_step.png", "loss.png"] {
        assert!(std::fs::read(dir.join(png)).unwrap().starts_with(b"\x89PNG\r\n\x1a\n"), "{png}");
    }
    // the best checkpoint is the evaluation with the lowest loss
    let best_step = evaluated[(0..3).min_by(|&a, &b| val_losses[a].total_cmp(&val_losses[b])).unwrap()];
    let steps_done = |file: &str| load(dir.join(file)).unwrap().metadata["steps_done"].clone();
    assert_eq!(steps_done("best.optim.safetensors"), best_step.to_string());
    assert_eq!(steps_done("last.optim.safetensors"), "30");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn early_stopping_by_steps_counts_evaluations() {
    kiln::manual_seed(3);
    let model = bigram(VOCAB, &Device::Cpu);
    let (train, val) = (windows(1, 0), windows(2, 1));
    let mut config = quiet(TrainConfig::by_steps(100, 5, Task::LanguageModel));
    (config.eval_batches, config.early_stopping) = (Some(2), Some(2));
    // at rate 0 the validation loss never improves on the first evaluation's
    let opt = Optimizer::new(nn::parameters(&model), Rule::sgd(), 0.0);
    let mut trainer = Trainer::new(&model, opt, Device::Cpu, config);
    trainer.fit(&train, Some(&val)).unwrap();
    assert_eq!(trainer.optimizer().steps(), 15, "evaluations at 5 (the best), 10 and 15, then stop");
}

/// nanoGPT's recipe in miniature: AdamW with decay groups, warm-up and cosine by step, clipping,
/// two micro-batches per step, gradient norms every 5 steps.
fn nanogpt_like(model: &Sequential, max_steps: usize, out: Option<PathBuf>) -> Trainer<'_> {
    let mut config = quiet(TrainConfig::by_steps(max_steps, 10, Task::LanguageModel));
    (config.eval_batches, config.clip_grad_norm, config.accumulate) = (Some(3), Some(1.0), 2);
    (config.grad_norms_every, config.out_dir, config.resume) = (Some(5), out, true);
    let groups = decay_groups(nn::parameters(model), 0.1);
    let opt = Optimizer::with_groups(groups, Rule::adamw().betas(0.9, 0.99), 1e-2);
    Trainer::new(model, opt, Device::Cpu, config).with_batch_scheduler(WarmupCosine::new(1e-2, 1e-3, 4, 40))
}

#[test]
fn a_run_by_steps_resumes_where_it_stopped() {
    let dir = scratch("resume-steps");
    let (train, val) = (windows(1, 0), windows(2, 1));
    kiln::manual_seed(5);
    let model = bigram(VOCAB, &Device::Cpu);
    nanogpt_like(&model, 20, Some(dir.clone())).fit(&train, Some(&val)).unwrap();
    let model2 = bigram(VOCAB, &Device::Cpu);
    let mut resumed = nanogpt_like(&model2, 40, Some(dir.clone()));
    resumed.fit(&train, Some(&val)).unwrap();
    kiln::manual_seed(5);
    let model3 = bigram(VOCAB, &Device::Cpu);
    let mut straight = nanogpt_like(&model3, 40, None);
    straight.fit(&train, Some(&val)).unwrap();

    assert_eq!(resumed.steps_log(), straight.steps_log());
    assert_eq!(resumed.grad_norms_log(), straight.grad_norms_log());
    // the epoch's record, but for its timing and its loss summed in another order
    let (a, b) = (&resumed.history()[0], &straight.history()[0]);
    assert_eq!(
        (a.steps, a.samples, a.val_loss, &a.metrics, a.lr),
        (b.steps, b.samples, b.val_loss, &b.metrics, b.lr)
    );
    assert!(
        (a.train_loss - b.train_loss).abs() < 1e-6 * b.train_loss,
        "{} vs {}",
        a.train_loss,
        b.train_loss
    );
    for ((name, a), (_, b)) in nn::state_dict(&model2).iter().zip(nn::state_dict(&model3).iter()) {
        assert_eq!(a.to_vec::<f32>().unwrap(), b.to_vec::<f32>().unwrap(), "{name}");
    }
    // the rate of each optimizer step (not micro-batch) is nanoGPT's get_lr of the step
    let lr = |it: usize| {
        let mut s = WarmupCosine::new(1e-2, 1e-3, 4, 40);
        (0..it).for_each(|_| {
            kiln::optim::Scheduler::step(&mut s, None);
        });
        kiln::optim::Scheduler::lr(&s)
    };
    for r in straight.steps_log() {
        assert_eq!(r.lr, lr(r.step - 1), "step {}", r.step);
    }
    // a limit already reached trains nothing more, and keeps the run's record
    let model4 = bigram(VOCAB, &Device::Cpu);
    let mut again = nanogpt_like(&model4, 40, Some(dir.clone()));
    let history = again.fit(&train, Some(&val)).unwrap().to_vec();
    assert_eq!((history.len(), history[0].steps, again.optimizer().steps()), (1, 40, 40));
    assert_eq!(again.steps_log(), straight.steps_log());
    let norms = straight.grad_norms_log();
    assert_eq!(norms.records.iter().map(|r| r.step).collect::<Vec<_>>(), [5, 10, 15, 20, 25, 30, 35, 40]);
    let csv = std::fs::read_to_string(dir.join("grad_norms.csv")).unwrap();
    // by state-dict name in the model's order, not the optimizer's groups (weights, then biases)
    assert_eq!(csv.lines().next().unwrap(), "step,0.weight,1.weight,1.bias,3.weight,3.bias");
    assert_eq!(csv.lines().count(), 1 + 8);
    assert!(std::fs::read(dir.join("grad_norms.png")).unwrap().starts_with(b"\x89PNG"));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The gradient norms the trainer logs at its first step, and the loss, on `device`.
fn first_step_norms(device: &Device) -> (Vec<String>, Vec<f64>, f64) {
    kiln::manual_seed(11);
    let model = bigram(VOCAB, device);
    let mut config = quiet(TrainConfig::by_steps(1, 1, Task::LanguageModel));
    // clipping far below the norms: the logged norms must be those before it
    (config.grad_norms_every, config.clip_grad_norm) = (Some(1), Some(1e-3));
    let opt = Optimizer::new(nn::parameters(&model), Rule::sgd(), 0.1);
    let mut trainer = Trainer::new(&model, opt, *device, config);
    trainer.fit(&windows(1, 0), None).unwrap();
    let log = trainer.grad_norms_log();
    (log.names.clone(), log.records[0].norms.clone(), trainer.steps_log()[0].loss)
}

#[test]
fn gradient_norms_are_logged_by_name_before_clipping() {
    let (names, norms, loss) = first_step_norms(&Device::Cpu);
    assert_eq!(names, ["0.weight", "1.weight", "1.bias", "3.weight", "3.bias"]);
    // the same step by hand, on the same first batch from the same initial weights
    kiln::manual_seed(11);
    let model = bigram(VOCAB, &Device::Cpu);
    let batch = windows(1, 0).batch(0);
    let by_hand = sequence_cross_entropy(&model.forward(&batch.inputs), &batch.targets, None);
    let grads = by_hand.backward();
    let want: Vec<f64> = nn::parameters(&model)
        .iter()
        .map(|(_, p)| grads.get(p).unwrap().to_f64_vec().unwrap().iter().map(|g| g * g).sum::<f64>().sqrt())
        .collect();
    assert_close(&norms, &want, 1e-6, "gradient norms");
    assert!(want.iter().all(|&n| n > 1e-2), "clipping to 1e-3 would have changed them: {want:?}");
    assert_eq!(loss, by_hand.item::<f32>().unwrap() as f64);

    let Some(gpu) = common::gpu("gradient norms on the GPU") else {
        return;
    };
    let (_, on_gpu, gpu_loss) = first_step_norms(&gpu);
    assert_close(&on_gpu, &norms, 1e-5, "GPU gradient norms");
    assert!((gpu_loss - loss).abs() < 1e-5 * loss);
}

fn toy_data(n: usize) -> InMemory {
    let x = Tensor::normal([n, 4], 0.0, 1.0, RandomKey { seed: 2, stream: 0 }, &Device::Cpu)
        .to_vec::<f32>()
        .unwrap();
    let y: Vec<i32> = x.chunks(4).map(|r| (r[0] > 0.0) as i32 + (r[1] > 0.5) as i32).collect();
    InMemory::new(x, &[4], Targets::Classes(y))
}

fn mlp() -> Sequential {
    Sequential::new().add(Linear::new(4, 8, &Device::Cpu)).add(ReLU).add(Linear::new(8, 3, &Device::Cpu))
}

/// One epoch of 48 samples in batches of `batch` with `accumulate` micro-batches per step: the
/// final weights and the step losses.
fn accumulated(batch: usize, accumulate: usize) -> (Vec<Vec<f32>>, Vec<f64>, u64) {
    kiln::manual_seed(21);
    let model = mlp();
    let mut config = quiet(TrainConfig::new(1, Task::Classification { classes: 3 }));
    config.accumulate = accumulate;
    let opt = Optimizer::new(nn::parameters(&model), Rule::sgd_momentum(0.9), 0.1);
    let mut trainer = Trainer::new(&model, opt, Device::Cpu, config);
    trainer.fit(&DataLoader::new(toy_data(48), batch), None).unwrap();
    let weights = nn::state_dict(&model).iter().map(|(_, t)| t.to_vec::<f32>().unwrap()).collect();
    let losses = trainer.steps_log().iter().map(|r| r.loss).collect();
    (weights, losses, trainer.optimizer().steps())
}

#[test]
fn accumulated_micro_batches_equal_one_step_on_the_concatenated_batch() {
    // batches of 32 and 16, against micro-batches of 16: two of them, then the short last one
    let (whole, whole_losses, whole_steps) = accumulated(32, 1);
    let (micro, micro_losses, micro_steps) = accumulated(16, 2);
    assert_eq!((whole_steps, micro_steps), (2, 2));
    for (a, b) in whole.iter().zip(&micro) {
        assert_close(
            &b.iter().map(|&v| v as f64).collect::<Vec<_>>(),
            &a.iter().map(|&v| v as f64).collect::<Vec<_>>(),
            1e-6,
            "weights",
        );
    }
    assert_close(&micro_losses, &whole_losses, 1e-6, "step losses");
    // without the 1/2 scaling each step would move twice as far
    let (unaccumulated, _, _) = accumulated(16, 1);
    assert_ne!(unaccumulated, whole);
}

/// Classifies the mean embedding of a sequence's real tokens: its forward needs the mask.
struct MeanPool {
    embed: Embedding,
    head: Linear,
}

impl MeanPool {
    fn new() -> MeanPool {
        MeanPool { embed: Embedding::new(VOCAB, 6, &Device::Cpu), head: Linear::new(6, 3, &Device::Cpu) }
    }

    fn forward_masked(&self, ids: &Tensor, mask: &Tensor) -> Tensor {
        let mask = mask.cast(DType::F32).unsqueeze(-1);
        let sum = (self.embed.forward(ids) * &mask).sum(1, false);
        self.head.forward(&(sum / mask.sum(1, false)))
    }
}

impl Module for MeanPool {
    fn forward(&self, ids: &Tensor) -> Tensor {
        self.forward_masked(ids, &ids.ge_scalar(0.0))
    }
    fn visit(&self, v: &mut dyn Visitor) {
        v.child("embed", &self.embed);
        v.child("head", &self.head);
    }
}

/// Sequences of 1 to 6 tokens whose class is their first token mod 3.
fn sequences(n: usize, seed: u64) -> SequenceDataset {
    let key = RandomKey { seed, stream: 4 };
    let mut inputs = Vec::new();
    for i in 0..n as u64 {
        let len = 1 + key.bits(100 * i) as usize % 6;
        inputs.push((0..len as u64).map(|t| 1 + (key.bits(100 * i + 1 + t) % 10) as i32).collect::<Vec<_>>());
    }
    let classes = inputs.iter().map(|s: &Vec<i32>| s[0] % 3).collect();
    SequenceDataset::classification(inputs, classes)
}

fn masked_step(model: &MeanPool) -> impl Fn(&Batch, bool) -> StepOutput + '_ {
    |batch: &Batch, _| {
        let mask = &batch.input_padding.as_ref().expect("padded").mask;
        let logits = model.forward_masked(&batch.inputs, mask);
        StepOutput::new(logits.cross_entropy(&batch.targets)).with_logits(logits)
    }
}

#[test]
fn a_classifier_whose_forward_takes_the_padding_gets_its_metrics() {
    kiln::manual_seed(2);
    let model = MeanPool::new();
    let (train, val) =
        (DataLoader::new(sequences(96, 1), 16).shuffle(3), DataLoader::new(sequences(40, 2), 16));
    let config = quiet(TrainConfig::new(3, Task::Classification { classes: 3 }));
    let opt = Optimizer::new(nn::parameters(&model), Rule::adam(), 0.05);
    let mut trainer = Trainer::new(&model, opt, Device::Cpu, config).with_step(masked_step(&model));
    let history = trainer.fit(&train, Some(&val)).unwrap().to_vec();
    assert!(history[2].train_loss < history[0].train_loss, "{history:?}");
    let evaluation = trainer.evaluate(&val).unwrap();
    for key in ["accuracy", "precision", "recall", "f1", "roc_auc"] {
        assert!(evaluation.metrics.contains_key(key), "{key}");
    }
    // the metrics are those of the step's logits, the padding left out
    let mut confusion = Confusion::new(3);
    for batch in val.epoch(0) {
        let mask = &batch.input_padding.as_ref().unwrap().mask;
        let predicted = model.forward_masked(&batch.inputs, mask).argmax(-1, false);
        confusion.add(&batch.targets.to_vec::<i32>().unwrap(), &predicted.to_vec::<i32>().unwrap());
    }
    assert_eq!(evaluation.confusion, Some(confusion.clone()));
    assert_eq!(evaluation.metrics["accuracy"], confusion.accuracy());
    // the default forward sees the padding as tokens: other predictions
    let unmasked = Trainer::new(
        &model,
        Optimizer::new(vec![], Rule::sgd(), 0.0),
        Device::Cpu,
        quiet(TrainConfig::new(1, Task::Classification { classes: 3 })),
    );
    assert_ne!(unmasked.evaluate(&val).unwrap().confusion, Some(confusion));
}

#[test]
fn the_default_classification_step_is_a_step_closure() {
    let run = |custom: bool| {
        kiln::manual_seed(6);
        let model = mlp();
        let config = quiet(TrainConfig::new(2, Task::Classification { classes: 3 }));
        let opt = Optimizer::new(nn::parameters(&model), Rule::adam(), 1e-2);
        let mut trainer = Trainer::new(&model, opt, Device::Cpu, config);
        if custom {
            trainer = trainer.with_step(|batch: &Batch, _| {
                let logits = model.forward(&batch.inputs);
                StepOutput::new(logits.cross_entropy(&batch.targets)).with_logits(logits)
            });
        }
        let data = DataLoader::new(toy_data(64), 16);
        let history = trainer.fit(&data, Some(&data)).unwrap().to_vec();
        (history, nn::state_dict(&model).iter().map(|(_, t)| t.to_vec::<f32>().unwrap()).collect::<Vec<_>>())
    };
    let (default, custom) = (run(false), run(true));
    let strip = |h: &[kiln::train::log::EpochRecord]| {
        h.iter().map(|r| (r.train_loss, r.val_loss, r.metrics.clone())).collect::<Vec<_>>()
    };
    assert_eq!(strip(&default.0), strip(&custom.0));
    assert_eq!(default.1, custom.1);
}

#[test]
fn a_language_models_validation_loss_is_the_mean_over_real_tokens() {
    // next-token pairs of different lengths: the mean over tokens, not over sequences
    let sources: Vec<Vec<i32>> = vec![vec![1, 2, 3, 4, 5, 6], vec![7], vec![8, 9], vec![1, 3, 5]];
    let targets: Vec<Vec<i32>> =
        sources.iter().map(|s| s.iter().map(|t| (t + 1) % VOCAB as i32).collect()).collect();
    let data =
        DataLoader::new(SequenceDataset::translation(sources.clone(), targets.clone()).with_pad(10), 2);
    kiln::manual_seed(8);
    let model = bigram(VOCAB, &Device::Cpu);
    let trainer = Trainer::new(
        &model,
        Optimizer::new(vec![], Rule::sgd(), 0.0),
        Device::Cpu,
        quiet(TrainConfig::new(1, Task::LanguageModel)),
    );
    let evaluation = trainer.evaluate(&data).unwrap();
    let mut sum = 0.0;
    for (s, t) in sources.iter().zip(&targets) {
        let ids = Tensor::from_vec(s.clone(), [1, s.len()], &Device::Cpu);
        let y = Tensor::from_vec(t.clone(), [1, t.len()], &Device::Cpu);
        sum += sequence_cross_entropy(&model.forward(&ids), &y, None).item::<f32>().unwrap() as f64
            * s.len() as f64;
    }
    let want = sum / 12.0;
    assert!((evaluation.loss - want).abs() < 1e-6 * want, "{} vs {want}", evaluation.loss);
    assert!((evaluation.metrics["perplexity"] - want.exp()).abs() < 1e-5 * want.exp());
}
