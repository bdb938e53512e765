//! The training stack end to end: checkpoints (round trip, atomicity, corruption),
//! the Trainer's outputs and resume, and MNIST for one epoch on the CPU and on the GPU.

mod common;

use kiln::data::mnist::Mnist;
use kiln::data::{DataLoader, InMemory, Targets};
use kiln::nn::{self, BatchNorm, Embedding, Flatten, Linear, Module, ReLU, Sequential, Visitor};
use kiln::optim::schedule::StepLr;
use kiln::optim::{Optimizer, Rule};
use kiln::train::checkpoint::{self, load, load_into, save};
use kiln::train::plot::{Series, line_plot, series_color};
use kiln::train::{Task, TrainConfig, Trainer, optimizer_path};
use kiln::{Device, Error, Tensor};
use std::collections::HashMap;
use std::path::PathBuf;

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("kiln-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn small_model(device: &Device) -> Sequential {
    Sequential::new()
        .add(Linear::new(4, 8, device))
        .add(BatchNorm::new_1d(8, device))
        .add(ReLU)
        .add(Linear::new(8, 3, device))
}

fn toy_data(n: usize, seed: u64) -> InMemory {
    // three classes separated by the sign pattern of two coordinates
    let x = Tensor::normal([n, 4], 0.0, 1.0, kiln::rng::RandomKey { seed, stream: 0 }, &Device::Cpu)
        .to_vec::<f32>()
        .unwrap();
    let y: Vec<i32> = x
        .chunks(4)
        .map(|r| {
            if r[0] > 0.5 {
                0
            } else if r[1] > 0.0 {
                1
            } else {
                2
            }
        })
        .collect();
    InMemory::new(x, &[4], Targets::Classes(y))
}

fn step(model: &dyn Module, opt: &mut Optimizer, batch: &kiln::data::Batch) {
    let loss = model.forward(&batch.inputs).cross_entropy(&batch.targets);
    opt.step(&loss.backward()).unwrap();
}

/// The RGB pixels of a PNG and its width.
fn decode_png(path: &std::path::Path) -> (Vec<u8>, usize) {
    let file = std::io::BufReader::new(std::fs::File::open(path).unwrap());
    let mut reader = png::Decoder::new(file).read_info().unwrap();
    let mut pixels = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut pixels).unwrap();
    assert_eq!(info.color_type, png::ColorType::Rgb);
    (pixels, info.width as usize)
}

#[test]
fn a_plot_of_one_epoch_shows_its_point() {
    let dir = scratch("plot");
    let path = dir.join("loss.png");
    let one_point = [Series { label: "train", points: vec![(1.0, 0.7)] }];
    line_plot(&path, "Loss", "epoch", "loss", &one_point).unwrap();
    let (pixels, width) = decode_png(&path);
    // the point is in the middle of the plotting area; the legend, which also shows the
    // colour, is at its edge
    let colour = series_color(0);
    let (height, centre) = (pixels.len() / 3 / width, (width / 2, pixels.len() / 3 / width / 2));
    let near_centre =
        |x: usize, y: usize| x.abs_diff(centre.0) < width / 5 && y.abs_diff(centre.1) < height / 5;
    let marker_pixels = pixels
        .chunks_exact(3)
        .enumerate()
        .filter(|&(i, rgb)| rgb == colour && near_centre(i % width, i / width))
        .count();
    assert!(marker_pixels >= 20, "{marker_pixels} pixels of the series colour near the centre");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn checkpoints_restore_bit_identical_parameters_and_optimizer_state() {
    let dir = scratch("ckpt");
    kiln::manual_seed(4);
    let data = DataLoader::new(toy_data(64, 1), 16);
    let model = small_model(&Device::Cpu);
    let mut opt = Optimizer::new(nn::parameters(&model), Rule::adam(), 1e-2);
    let batches: Vec<_> = data.epoch(0).collect();
    for b in &batches[..2] {
        step(&model, &mut opt, b);
    }
    let path = dir.join("ck.safetensors");
    let mut tensors = nn::state_dict(&model);
    tensors.extend(opt.state_dict().into_iter().map(|(n, t)| (format!("optim.{n}"), t)));
    save(&path, &tensors, &HashMap::from([("note".to_string(), "two steps".to_string())])).unwrap();

    // a fresh model and optimizer, restored
    kiln::manual_seed(99);
    let restored = small_model(&Device::Cpu);
    let mut opt2 = Optimizer::new(nn::parameters(&restored), Rule::adam(), 1e-2);
    let ck = load(&path).unwrap();
    assert_eq!(ck.metadata["note"], "two steps");
    load_into(&restored, &ck.tensors, &path).unwrap();
    let optim: Vec<(String, Tensor)> = ck
        .tensors
        .iter()
        .filter_map(|(n, t)| n.strip_prefix("optim.").map(|n| (n.into(), t.clone())))
        .collect();
    opt2.load_state_dict(&optim).unwrap();
    // every entry (f32 parameters and statistics, the i32 batch count) widened exactly to f64
    let bits = |m: &dyn Module| -> Vec<Vec<u64>> {
        nn::state_dict(m)
            .iter()
            .map(|(_, t)| t.to_f64_vec().unwrap().iter().map(|v| v.to_bits()).collect())
            .collect()
    };
    assert_eq!(bits(&model), bits(&restored));
    let state_bits = |o: &Optimizer| -> Vec<Vec<u64>> {
        o.state_dict()
            .iter()
            .map(|(_, t)| t.to_f64_vec().unwrap().iter().map(|v| v.to_bits()).collect())
            .collect()
    };
    assert_eq!(state_bits(&opt), state_bits(&opt2));
    // and training continues identically
    for b in &batches[2..] {
        step(&model, &mut opt, b);
        step(&restored, &mut opt2, b);
    }
    assert_eq!(bits(&model), bits(&restored));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn an_interrupted_save_leaves_the_previous_checkpoint_intact() {
    let dir = scratch("atomic");
    let model = small_model(&Device::Cpu);
    let path = dir.join("last.safetensors");
    checkpoint::save_module(&path, &model).unwrap();
    let before = std::fs::read(&path).unwrap();
    // a crash after the new bytes are written and before they replace the old file leaves the
    // previous checkpoint as it was
    let changed = small_model(&Device::Cpu);
    checkpoint::crash_next_write_before_rename(&path);
    assert!(matches!(checkpoint::save_module(&path, &changed), Err(Error::Io { .. })));
    assert_eq!(std::fs::read(&path).unwrap(), before);
    // as does a partial temporary file that a crash left behind
    std::fs::write(dir.join(".last.safetensors.tmp"), &before[..before.len() / 2]).unwrap();
    assert_eq!(load(&path).unwrap().tensors.len(), nn::state_dict(&model).len());
    // a save that cannot complete reports the path and changes nothing
    let missing = dir.join("no-such-folder").join("last.safetensors");
    assert!(matches!(checkpoint::save_module(&missing, &model), Err(Error::Io { .. })));
    assert_eq!(std::fs::read(&path).unwrap(), before);
    // the next good save is not disturbed by the stale temporary file
    checkpoint::save_module(&path, &changed).unwrap();
    assert_ne!(std::fs::read(&path).unwrap(), before);
    // truncated or corrupt checkpoints are format errors naming the file
    for cut in [0, 7, 8, 50, before.len() - 3] {
        std::fs::write(dir.join("cut.safetensors"), &before[..cut]).unwrap();
        let e = load(dir.join("cut.safetensors")).err().expect("a truncated file is refused");
        assert!(e.to_string().contains("cut.safetensors"), "{e}");
    }
    // a checkpoint of another architecture names the mismatch
    let other = Sequential::new().add(Linear::new(4, 5, &Device::Cpu));
    let e = load_into(&other, &load(&path).unwrap().tensors, &path).unwrap_err().to_string();
    assert!(e.contains("0.weight") && e.contains("[8, 4]"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A tiny language model whose output layer shares the embedding's weight, as GPT ties them.
struct TiedLm {
    embed: Embedding,
    head: Linear,
}

impl TiedLm {
    fn new(device: &Device) -> TiedLm {
        let embed = Embedding::new(5, 3, device);
        let mut head = Linear::no_bias(3, 5, device);
        head.weight = embed.weight.clone();
        TiedLm { embed, head }
    }
}

impl Module for TiedLm {
    fn forward(&self, ids: &Tensor) -> Tensor {
        self.head.forward(&self.embed.forward(ids))
    }
    fn visit(&self, v: &mut dyn Visitor) {
        v.child("embed", &self.embed);
        v.child("head", &self.head);
    }
}

#[test]
fn a_tied_weight_is_saved_under_each_name_and_loaded_into_the_one_tensor() {
    let dir = scratch("tied");
    let path = dir.join("tied.safetensors");
    kiln::manual_seed(1);
    let model = TiedLm::new(&Device::Cpu);
    checkpoint::save_module(&path, &model).unwrap();
    let ck = load(&path).unwrap();
    let mut names: Vec<&str> = ck.tensors.iter().map(|(n, _)| n.as_str()).collect();
    names.sort();
    assert_eq!(names, ["embed.weight", "head.weight"], "every state-dict key, as PyTorch lists them");
    let saved = model.embed.weight.to_vec::<f32>().unwrap();
    assert_eq!(ck.get("head.weight").unwrap().to_vec::<f32>().unwrap(), saved);

    kiln::manual_seed(2);
    let restored = TiedLm::new(&Device::Cpu);
    load_into(&restored, &ck.tensors, &path).unwrap();
    assert!(restored.embed.weight.same(&restored.head.weight), "still one tensor");
    assert_eq!(restored.head.weight.to_vec::<f32>().unwrap(), saved);

    // a file whose two names disagree cannot be loaded into one tensor
    let mut edited = ck.tensors.clone();
    for (name, t) in &mut edited {
        if name == "head.weight" {
            *t = t.zeros_like();
        }
    }
    let e = load_into(&restored, &edited, &path).unwrap_err().to_string();
    assert!(e.contains("embed.weight") && e.contains("head.weight") && e.contains("tied"), "{e}");
    assert_eq!(restored.head.weight.to_vec::<f32>().unwrap(), saved, "nothing changed");
    // one name is enough (safetensors' `save_model` keeps one name of a shared tensor)
    kiln::manual_seed(3);
    let from_one_name = TiedLm::new(&Device::Cpu);
    let embed_only: Vec<_> = ck.tensors.iter().filter(|(n, _)| n == "embed.weight").cloned().collect();
    load_into(&from_one_name, &embed_only, &path).unwrap();
    assert_eq!(from_one_name.head.weight.to_vec::<f32>().unwrap(), saved);
    assert!(from_one_name.embed.weight.same(&from_one_name.head.weight));
    let e = load_into(&from_one_name, &[], &path).unwrap_err().to_string();
    assert!(e.contains("no tensor embed.weight nor head.weight"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_checkpoint_that_does_not_fit_changes_nothing() {
    let dir = scratch("partial");
    let path = dir.join("ck.safetensors");
    let two_layers = |out: usize| {
        Sequential::new().add(Linear::new(4, 8, &Device::Cpu)).add(Linear::new(8, out, &Device::Cpu))
    };
    checkpoint::save_module(&path, &two_layers(3)).unwrap();
    // the first layer fits, the second does not: the first must not be loaded either
    let model = two_layers(2);
    let before: Vec<Vec<f32>> = nn::state_dict(&model).iter().map(|(_, t)| t.to_vec().unwrap()).collect();
    let e = load_into(&model, &load(&path).unwrap().tensors, &path).unwrap_err().to_string();
    assert!(e.contains("1.weight has shape [3, 8], the model [2, 8]"), "{e}");
    let after: Vec<Vec<f32>> = nn::state_dict(&model).iter().map(|(_, t)| t.to_vec().unwrap()).collect();
    assert_eq!(before, after);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_trainer_logs_plots_checkpoints_and_resumes() {
    let dir = scratch("trainer");
    kiln::manual_seed(5);
    let (train, val) =
        (DataLoader::new(toy_data(256, 2), 32).shuffle(1), DataLoader::new(toy_data(128, 3), 64));
    let model = small_model(&Device::Cpu);
    let mut config = TrainConfig::new(3, Task::Classification { classes: 3 });
    config.out_dir = Some(dir.clone());
    config.progress = false;
    // the learning rate halves every two epochs: a resumed run must carry on with the schedule
    let schedule = || StepLr::new(2e-2, 2, 0.5);
    let mut trainer = Trainer::new(
        &model,
        Optimizer::new(nn::parameters(&model), Rule::adam(), 2e-2),
        Device::Cpu,
        config.clone(),
    )
    .with_scheduler(schedule());
    let history = trainer.fit(&train, Some(&val)).unwrap().to_vec();
    assert_eq!(history.len(), 3);
    assert!(history[2].train_loss < history[0].train_loss, "{history:?}");
    assert!(history[2].metrics["accuracy"] > 0.8, "{history:?}");
    for key in ["precision", "recall", "f1", "roc_auc"] {
        assert!(history[2].metrics.contains_key(key), "{key}");
    }
    let log = std::fs::read_to_string(dir.join("log.csv")).unwrap();
    assert_eq!(log.lines().count(), 4);
    assert!(log.starts_with("epoch,train_loss,val_loss,accuracy,f1,precision,recall,roc_auc,lr"));
    for png in ["loss.png", "accuracy.png"] {
        assert!(std::fs::read(dir.join(png)).unwrap().starts_with(b"\x89PNG\r\n\x1a\n"), "{png}");
    }
    // the weights file holds exactly the model's state dict, as PyTorch's strict loading wants;
    // the optimizer state is beside it
    for name in ["last", "best"] {
        let weights = dir.join(format!("{name}.safetensors"));
        let mut keys: Vec<String> = load(&weights).unwrap().tensors.into_iter().map(|(n, _)| n).collect();
        let mut state_dict: Vec<String> = nn::state_dict(&model).into_iter().map(|(n, _)| n).collect();
        keys.sort();
        state_dict.sort();
        assert_eq!(keys, state_dict, "{name}");
        let optim = load(optimizer_path(&weights)).unwrap();
        assert_eq!(optim.get("step").unwrap().to_vec::<i32>().unwrap(), [3 * 8], "{name}");
        assert!(optim.get("0.weight.exp_avg").is_some(), "{name}");
    }
    assert_eq!(optimizer_path(&dir.join("last.safetensors")), dir.join("last.optim.safetensors"));

    // resume: a new trainer picks up after epoch 3 and runs to 5 ...
    config.epochs = 5;
    config.resume = true;
    let model2 = small_model(&Device::Cpu);
    let mut resumed = Trainer::new(
        &model2,
        Optimizer::new(nn::parameters(&model2), Rule::adam(), 2e-2),
        Device::Cpu,
        config.clone(),
    )
    .with_scheduler(schedule());
    let h2 = resumed.fit(&train, Some(&val)).unwrap().to_vec();
    assert_eq!(h2.len(), 5);
    assert_eq!(h2[..3], history[..]);
    assert_eq!(resumed.optimizer().steps(), 5 * 8);
    // ... and ends exactly where an uninterrupted run of 5 epochs ends
    kiln::manual_seed(5);
    let model3 = small_model(&Device::Cpu);
    config.out_dir = None;
    let mut straight = Trainer::new(
        &model3,
        Optimizer::new(nn::parameters(&model3), Rule::adam(), 2e-2),
        Device::Cpu,
        config,
    )
    .with_scheduler(schedule());
    let h3 = straight.fit(&train, Some(&val)).unwrap();
    let rates = |h: &[kiln::train::log::EpochRecord]| h.iter().map(|r| r.lr).collect::<Vec<_>>();
    assert_eq!(rates(&h2), [2e-2, 2e-2, 1e-2, 1e-2, 5e-3]);
    assert_eq!(rates(&h2), rates(h3));
    for ((name, resumed), (_, straight)) in nn::state_dict(&model2).iter().zip(nn::state_dict(&model3).iter())
    {
        assert_eq!(resumed.to_f64_vec().unwrap(), straight.to_f64_vec().unwrap(), "{name}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn evaluation_leaves_every_module_in_the_mode_it_found() {
    let (train, val) = (DataLoader::new(toy_data(64, 2), 16), DataLoader::new(toy_data(64, 3), 64));
    let model = small_model(&Device::Cpu);
    let mut config = TrainConfig::new(1, Task::Classification { classes: 3 });
    (config.progress, config.verbose) = (false, false);
    let opt = Optimizer::new(nn::parameters(&model), Rule::sgd(), 0.1);
    let mut trainer = Trainer::new(&model, opt, Device::Cpu, config);
    // the whole model in evaluation mode stays there
    nn::eval(&model);
    trainer.evaluate(&val).unwrap();
    assert_eq!(nn::modes(&model), [("1".to_string(), false)]);
    // a batch norm frozen in evaluation mode while the rest trains: evaluation keeps it so, and
    // training does not unfreeze it (its running statistics stay as they were)
    nn::train(&model);
    nn::restore_modes(&model, &[("1".to_string(), false)]);
    let running = |m: &Sequential| -> Vec<f32> {
        let state = nn::state_dict(m);
        state
            .iter()
            .filter(|(n, _)| n.starts_with("1.running"))
            .flat_map(|(_, t)| t.to_vec::<f32>().unwrap())
            .collect()
    };
    let before = running(&model);
    trainer.fit(&train, Some(&val)).unwrap();
    assert_eq!(nn::modes(&model), [("1".to_string(), false)]);
    assert_eq!(running(&model), before);
    nn::train(&model);
    trainer.evaluate(&val).unwrap();
    assert_eq!(nn::modes(&model), [("1".to_string(), true)]);
}

#[test]
fn resume_refuses_weights_and_optimizer_state_that_do_not_belong_together() {
    let dir = scratch("pair");
    let (train, val) = (DataLoader::new(toy_data(64, 2), 16), DataLoader::new(toy_data(64, 3), 64));
    let run = |epochs: usize| {
        let model = small_model(&Device::Cpu);
        let mut config = TrainConfig::new(epochs, Task::Classification { classes: 3 });
        (config.progress, config.verbose, config.resume) = (false, false, true);
        config.out_dir = Some(dir.clone());
        let opt = Optimizer::new(nn::parameters(&model), Rule::adam(), 1e-2);
        Trainer::new(&model, opt, Device::Cpu, config).fit(&train, Some(&val)).map(|h| h.len())
    };
    let (weights, optim) = (dir.join("last.safetensors"), dir.join("last.optim.safetensors"));
    assert_eq!(run(1).unwrap(), 1);
    let after_one = std::fs::read(&optim).unwrap();
    assert_eq!(run(2).unwrap(), 2);
    let after_two = std::fs::read(&optim).unwrap();
    // the optimizer file of epoch 1 beside the weights of epoch 2: refused, naming both
    std::fs::write(&optim, &after_one).unwrap();
    let e = run(3).unwrap_err().to_string();
    assert!(e.contains("last.safetensors was saved at step 8 (epoch 2)"), "{e}");
    assert!(e.contains("last.optim.safetensors at step 4 (epoch 1)"), "{e}");
    // one file without the other: refused
    std::fs::remove_file(&optim).unwrap();
    let e = run(3).unwrap_err().to_string();
    assert!(e.contains("last.optim.safetensors does not"), "{e}");
    // the matching pair resumes
    std::fs::write(&optim, &after_two).unwrap();
    assert_eq!(run(3).unwrap(), 3);
    assert!(weights.exists());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn max_steps_stops_mid_epoch_writes_its_outputs_and_resumes_where_it_stopped() {
    let dir = scratch("max-steps");
    let (train, val) =
        (DataLoader::new(toy_data(128, 2), 16).shuffle(3), DataLoader::new(toy_data(64, 3), 64));
    // 8 steps per epoch; a rate that halves every 5 steps, so a resumed schedule must count steps
    fn trainer_for(model: &Sequential, max_steps: Option<usize>, out: Option<PathBuf>) -> Trainer<'_> {
        let mut config = TrainConfig::new(3, Task::Classification { classes: 3 });
        (config.progress, config.verbose, config.resume) = (false, false, true);
        (config.max_steps, config.out_dir) = (max_steps, out);
        let opt = Optimizer::new(nn::parameters(model), Rule::adam(), 1e-2);
        Trainer::new(model, opt, Device::Cpu, config).with_batch_scheduler(StepLr::new(1e-2, 5, 0.5))
    }
    kiln::manual_seed(8);
    let model = small_model(&Device::Cpu);
    let mut stopped = trainer_for(&model, Some(11), Some(dir.clone()));
    let history = stopped.fit(&train, Some(&val)).unwrap().to_vec();
    assert_eq!(stopped.optimizer().steps(), 11);
    assert_eq!(
        history.iter().map(|r| (r.epoch, r.steps, r.samples)).collect::<Vec<_>>(),
        [(1, 8, 128), (2, 3, 48)]
    );
    assert!(history[1].val_loss.is_some(), "the partial epoch is validated");
    let log = std::fs::read_to_string(dir.join("log.csv")).unwrap();
    assert_eq!(log.lines().count(), 3, "{log}");
    assert_eq!(load(dir.join("last.optim.safetensors")).unwrap().metadata["steps_done"], "11");

    // resumed without a limit, it finishes epoch 2 from step 4 and runs epoch 3 ...
    let model2 = small_model(&Device::Cpu);
    let mut resumed = trainer_for(&model2, None, Some(dir.clone()));
    let h2 = resumed.fit(&train, Some(&val)).unwrap().to_vec();
    assert_eq!(resumed.optimizer().steps(), 24);
    assert_eq!(
        h2.iter().map(|r| (r.epoch, r.steps, r.samples)).collect::<Vec<_>>(),
        [(1, 8, 128), (2, 8, 128), (3, 8, 128)]
    );
    // ... and ends where an uninterrupted run ends
    kiln::manual_seed(8);
    let model3 = small_model(&Device::Cpu);
    let mut straight = trainer_for(&model3, None, None);
    let h3 = straight.fit(&train, Some(&val)).unwrap().to_vec();
    assert_eq!(h2.iter().map(|r| r.lr).collect::<Vec<_>>(), h3.iter().map(|r| r.lr).collect::<Vec<_>>());
    assert!(
        (h2[1].train_loss - h3[1].train_loss).abs() < 1e-5,
        "{} vs {}",
        h2[1].train_loss,
        h3[1].train_loss
    );
    for ((name, a), (_, b)) in nn::state_dict(&model2).iter().zip(nn::state_dict(&model3).iter()) {
        assert_eq!(a.to_f64_vec().unwrap(), b.to_f64_vec().unwrap(), "{name}");
    }
    // a limit already reached trains nothing more
    let mut again = trainer_for(&model2, Some(24), Some(dir.clone()));
    assert_eq!(again.fit(&train, Some(&val)).unwrap().len(), 3);
    assert_eq!(again.optimizer().steps(), 24);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn an_unfinished_epochs_best_checkpoint_is_kept_when_its_continuation_is_no_better() {
    let dir = scratch("best-unfinished");
    let (train, val) = (DataLoader::new(toy_data(128, 2), 16), DataLoader::new(toy_data(64, 3), 64));
    let model =
        Sequential::new().add(Linear::new(4, 8, &Device::Cpu)).add(ReLU).add(Linear::new(8, 3, &Device::Cpu));
    let run = |max_steps: usize, rate: f64| {
        let mut config = TrainConfig::new(1, Task::Classification { classes: 3 });
        (config.progress, config.verbose, config.resume) = (false, false, true);
        (config.max_steps, config.out_dir) = (Some(max_steps), Some(dir.clone()));
        let opt = Optimizer::new(nn::parameters(&model), Rule::sgd(), rate);
        let mut trainer =
            Trainer::new(&model, opt, Device::Cpu, config).with_scheduler(StepLr::new(rate, 1, 1.0));
        trainer.fit(&train, Some(&val)).unwrap().to_vec()
    };
    let stopped = run(3, 0.1);
    // resumed at rate 0 the model does not change, so the finished epoch validates no better
    let finished = run(8, 0.0);
    assert_eq!(finished[0].val_loss, stopped[0].val_loss);
    let steps = |file: &str| load(dir.join(file)).unwrap().metadata["steps_done"].clone();
    assert_eq!((steps("last.optim.safetensors"), steps("best.optim.safetensors")), ("8".into(), "3".into()));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn early_stopping_ends_training_when_validation_stops_improving() {
    let (train, val) = (DataLoader::new(toy_data(64, 2), 32), DataLoader::new(toy_data(64, 3), 64));
    let fit = |lr: f64| {
        // no batch norm: its running statistics would move the validation loss at rate zero
        let model = Sequential::new().add(Linear::new(4, 8, &Device::Cpu)).add(ReLU).add(Linear::new(
            8,
            3,
            &Device::Cpu,
        ));
        let mut config = TrainConfig::new(20, Task::Classification { classes: 3 });
        (config.progress, config.verbose, config.early_stopping) = (false, false, Some(2));
        let opt = Optimizer::new(nn::parameters(&model), Rule::sgd(), lr);
        Trainer::new(&model, opt, Device::Cpu, config).fit(&train, Some(&val)).unwrap().len()
    };
    // with a zero learning rate the validation loss never improves after the first epoch:
    // two more epochs, then stop
    assert_eq!(fit(0.0), 3);
    // while it keeps improving, training runs on
    assert!(fit(0.1) > 3);
}

#[test]
fn a_batch_schedule_advances_every_step() {
    let train = DataLoader::new(toy_data(64, 2), 16); // 4 steps per epoch
    let model = small_model(&Device::Cpu);
    let mut config = TrainConfig::new(2, Task::Classification { classes: 3 });
    (config.progress, config.verbose) = (false, false);
    let opt = Optimizer::new(nn::parameters(&model), Rule::sgd(), 1.0);
    let mut trainer =
        Trainer::new(&model, opt, Device::Cpu, config).with_batch_scheduler(StepLr::new(1.0, 1, 0.5));
    let history = trainer.fit(&train, None).unwrap();
    // the rate recorded at each epoch's end: halved once per step
    assert_eq!(history.iter().map(|r| r.lr).collect::<Vec<_>>(), [0.5f64.powi(4), 0.5f64.powi(8)]);
}

fn mnist_one_epoch(device: &Device, hidden: usize, lr: f64) -> f64 {
    let dir = common::data_dir("MNIST one epoch").expect("checked by the caller");
    let mnist = Mnist::load(dir.join("mnist")).unwrap();
    kiln::manual_seed(0);
    let model = Sequential::new()
        .add(Flatten)
        .add(Linear::new(784, hidden, device))
        .add(ReLU)
        .add(Linear::new(hidden, 10, device));
    let mut config = TrainConfig::new(1, Task::Classification { classes: 10 });
    config.progress = false;
    let opt = Optimizer::new(nn::parameters(&model), Rule::adam(), lr);
    let mut trainer = Trainer::new(&model, opt, *device, config);
    let (train, test) = (DataLoader::new(mnist.train, 128).shuffle(0), DataLoader::new(mnist.test, 1000));
    trainer.fit(&train, None).unwrap();
    trainer.evaluate(&test).unwrap().metrics["accuracy"]
}

#[test]
fn mnist_mlp_reaches_95_percent_in_one_epoch_on_the_cpu() {
    if common::data_dir("MNIST one epoch (CPU)").is_none() {
        return;
    }
    let acc = mnist_one_epoch(&Device::Cpu, 256, 1e-3);
    assert!(acc >= 0.95, "test accuracy {acc}");
}

#[test]
fn mnist_mlp_reaches_95_percent_in_one_epoch_on_the_gpu() {
    if common::data_dir("MNIST one epoch (GPU)").is_none() {
        return;
    }
    let Some(gpu) = common::gpu("MNIST one epoch (GPU)") else {
        return;
    };
    let acc = mnist_one_epoch(&gpu, 128, 2e-3);
    assert!(acc >= 0.95, "test accuracy {acc}");
}
