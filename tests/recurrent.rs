//! Recurrent modules: RNN, GRU, LSTM and their cells against PyTorch's (fixtures made by
//! `tests/fixtures/recurrent/make_fixtures.py`), on the CPU and the GPU; state-dict names and
//! round trip; padding that never changes a shorter sequence's result; dropout between layers;
//! bad input; the dispatches of a step on the GPU; `Embedding`'s padding index.

mod common;

use kiln::nn::{
    self, Embedding, GRU, GRUCell, LSTM, LSTMCell, Linear, LstmState, Module, Nonlinearity, RNN, RNNCell,
    RnnOptions, Sequential,
};
use kiln::ops::recurrent::{CellKind, Step};
use kiln::optim::{Optimizer, Rule};
use kiln::train::checkpoint::{self, Checkpoint};
use kiln::{Device, Tensor};
use std::panic;
use std::path::{Path, PathBuf};

const CPU: Device = Device::Cpu;

/// A module built from a fixture's config.
enum Built {
    Lstm(LSTM),
    Gru(GRU),
    Rnn(RNN),
    LstmCell(LSTMCell),
    GruCell(GRUCell),
    RnnCell(RNNCell),
}

impl Built {
    fn module(&self) -> &dyn Module {
        match self {
            Built::Lstm(m) => m,
            Built::Gru(m) => m,
            Built::Rnn(m) => m,
            Built::LstmCell(m) => m,
            Built::GruCell(m) => m,
            Built::RnnCell(m) => m,
        }
    }
}

/// One fixture: its file, tensors and config.
struct Fixture {
    path: PathBuf,
    data: Checkpoint,
    config: serde_json::Value,
}

impl Fixture {
    fn all() -> Vec<Fixture> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/recurrent");
        let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "safetensors"))
            .collect();
        paths.sort();
        assert!(paths.len() >= 12, "fixtures missing from {}", dir.display());
        paths
            .into_iter()
            .map(|path| {
                let data = checkpoint::load(&path).unwrap();
                let config = serde_json::from_str(&data.metadata["config"]).unwrap();
                Fixture { path, data, config }
            })
            .collect()
    }

    fn name(&self) -> String {
        self.path.file_stem().unwrap().to_string_lossy().into_owned()
    }

    fn get(&self, name: &str) -> Option<&Tensor> {
        self.data.get(name)
    }

    fn tensor(&self, name: &str) -> &Tensor {
        self.get(name).unwrap_or_else(|| panic!("{}: no {name}", self.name()))
    }

    fn flag(&self, key: &str) -> bool {
        self.config[key].as_bool().unwrap_or(false)
    }

    fn size(&self, key: &str) -> usize {
        self.config[key].as_u64().unwrap_or(1) as usize
    }

    /// The module of the config on `device`, with the fixture's parameters loaded by name.
    fn build(&self, device: &Device) -> Built {
        let (input, hidden) = (self.size("input_size"), self.size("hidden_size"));
        let options = RnnOptions::default()
            .num_layers(self.size("num_layers"))
            .bias(self.flag("bias"))
            .batch_first(self.flag("batch_first"))
            .bidirectional(self.flag("bidirectional"));
        let nonlinearity = match self.config["nonlinearity"].as_str() {
            Some("relu") => Nonlinearity::Relu,
            _ => Nonlinearity::Tanh,
        };
        let bias = self.flag("bias");
        let built = match self.config["module"].as_str().unwrap() {
            "LSTM" => Built::Lstm(LSTM::new(input, hidden, options, device)),
            "GRU" => Built::Gru(GRU::new(input, hidden, options, device)),
            "RNN" => Built::Rnn(RNN::with_nonlinearity(input, hidden, nonlinearity, options, device)),
            "LSTMCell" => Built::LstmCell(LSTMCell::new(input, hidden, device)),
            "GRUCell" => Built::GruCell(GRUCell::new(input, hidden, device)),
            "RNNCell" => {
                let cell = RNNCell::with_nonlinearity(input, hidden, nonlinearity, device);
                Built::RnnCell(if bias { cell } else { cell.without_bias() })
            }
            other => panic!("unknown module {other}"),
        };
        checkpoint::load_into(built.module(), &self.data.tensors, &self.path).unwrap();
        built
    }

    /// The fixture's input (and initial state) on `device`, marked for gradients.
    fn leaf(&self, name: &str, device: &Device) -> Option<Tensor> {
        self.get(name).map(|t| t.to(device).detach().requires_grad_())
    }
}

/// What a run of a fixture gives: outputs and the leaves whose gradients are checked.
struct Run {
    outputs: Vec<(&'static str, Tensor)>,
    leaves: Vec<(String, Tensor)>,
}

/// Runs fixture `f` on `device` as its generating script ran PyTorch.
fn run(f: &Fixture, device: &Device) -> Run {
    let built = f.build(device);
    let x = f.leaf("input", device).unwrap();
    let (h0, c0) = (f.leaf("h0", device), f.leaf("c0", device));
    let lengths = f.get("lengths");
    let (out, h_n, c_n) = match &built {
        Built::Lstm(m) => {
            let state = h0.clone().map(|h| LstmState { h, c: c0.clone().unwrap() });
            let (out, s) = m.forward_with(&x, state.as_ref(), lengths);
            (out, s.h, Some(s.c))
        }
        Built::Gru(m) => {
            let (out, h) = m.forward_with(&x, h0.as_ref(), lengths);
            (out, h, None)
        }
        Built::Rnn(m) => {
            let (out, h) = m.forward_with(&x, h0.as_ref(), lengths);
            (out, h, None)
        }
        // the cells: a hand-written loop over the sequence
        Built::LstmCell(cell) => {
            let mut state = LstmState { h: h0.clone().unwrap(), c: c0.clone().unwrap() };
            let mut hs = Vec::new();
            for t in 0..x.dim(0) {
                state = cell.forward(&x.select(0, t), &state);
                hs.push(state.h.clone());
            }
            (Tensor::stack(&hs, 0), state.h, Some(state.c))
        }
        Built::GruCell(cell) => loop_h(&x, h0.clone().unwrap(), |x, h| cell.forward(x, h)),
        Built::RnnCell(cell) => loop_h(&x, h0.clone().unwrap(), |x, h| cell.forward(x, h)),
    };
    let mut outputs = vec![("out", out), ("h_n", h_n)];
    outputs.extend(c_n.map(|c| ("c_n", c)));
    let mut leaves = vec![("input".to_string(), x)];
    leaves.extend(h0.map(|h| ("h0".to_string(), h)));
    leaves.extend(c0.map(|c| ("c0".to_string(), c)));
    leaves.extend(nn::parameters(built.module()));
    Run { outputs, leaves }
}

fn loop_h(
    x: &Tensor,
    mut h: Tensor,
    step: impl Fn(&Tensor, &Tensor) -> Tensor,
) -> (Tensor, Tensor, Option<Tensor>) {
    let mut hs = Vec::new();
    for t in 0..x.dim(0) {
        h = step(&x.select(0, t), &h);
        hs.push(h.clone());
    }
    (Tensor::stack(&hs, 0), h, None)
}

/// The relative error ‖got − want‖ / ‖want‖.
fn rel_err(got: &Tensor, want: &Tensor) -> f64 {
    assert_eq!(got.dims(), want.dims());
    kiln::testing::compare(&want.to_f64_vec().unwrap(), &got.to_f64_vec().unwrap()).0
}

/// Every fixture on `device`: outputs, final states and the gradients of the fixture's loss
/// with respect to the input, the initial state and every parameter, against PyTorch's.
fn check_against_pytorch(device: &Device) {
    let mut failures = Vec::new();
    for f in Fixture::all() {
        let run = run(&f, device);
        let mut loss = Tensor::scalar(0.0, device);
        for (name, out) in &run.outputs {
            let r = f.tensor(&format!("r_{name}")).to(device);
            loss = loss + (out * &r).sum_all();
            // f32 arithmetic against f64 references: a few roundings per step
            let err = rel_err(out, f.tensor(name));
            if err > 2e-6 {
                failures.push(format!("{} {name}: relative error {err:.2e}", f.name()));
            }
        }
        let grads = loss.backward();
        for (name, leaf) in &run.leaves {
            let want = f.tensor(&format!("grad.{name}"));
            let err = match grads.get(leaf) {
                Some(g) => rel_err(g, want),
                None => f64::INFINITY,
            };
            // sums over the steps of products of such values
            if err > 1e-5 {
                failures.push(format!("{} gradient of {name}: relative error {err:.2e}", f.name()));
            }
        }
    }
    assert!(failures.is_empty(), "on {device}:\n{}", failures.join("\n"));
}

#[test]
fn every_module_matches_pytorch_on_the_cpu() {
    check_against_pytorch(&CPU);
}

#[test]
fn every_module_matches_pytorch_on_the_gpu() {
    let Some(gpu) = common::gpu("recurrent modules on the GPU") else {
        return;
    };
    check_against_pytorch(&gpu);
}

#[test]
fn state_dict_names_are_pytorchs_in_order() {
    for f in Fixture::all() {
        let built = f.build(&CPU);
        let names: Vec<String> = nn::state_dict(built.module()).into_iter().map(|(n, _)| n).collect();
        let torch: Vec<String> = serde_json::from_value(f.config["keys"].clone()).unwrap();
        assert_eq!(names, torch, "{}", f.name());
    }
}

#[test]
fn a_state_dict_round_trip_restores_the_model() {
    let dir = std::env::temp_dir().join(format!("kiln-recurrent-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("lstm.safetensors");
    let options = RnnOptions::default().num_layers(2).bidirectional(true);
    kiln::manual_seed(5);
    let saved = LSTM::new(3, 4, options, &CPU);
    checkpoint::save_module(&path, &saved).unwrap();
    kiln::manual_seed(6);
    let restored = LSTM::new(3, 4, options, &CPU);
    let x = Tensor::randn([6, 2, 3], &CPU);
    assert!(rel_err(&restored.forward(&x), &saved.forward(&x)) > 1e-3, "different seeds, different models");
    checkpoint::load_into(&restored, &checkpoint::load(&path).unwrap().tensors, &path).unwrap();
    assert_eq!(restored.forward(&x).to_vec::<f32>().unwrap(), saved.forward(&x).to_vec::<f32>().unwrap());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn padding_never_changes_the_result_of_a_shorter_sequence() {
    kiln::manual_seed(7);
    let options = RnnOptions::default().num_layers(2).bidirectional(true);
    let (short, long) = (3, 7);
    // row 0 is the short sequence, padded with values that must not matter; row 1 is long
    let seq = Tensor::randn([short, 1, 4], &CPU);
    let padding = Tensor::full([long - short, 1, 4], 100.0, kiln::DType::F32, &CPU);
    let batch =
        Tensor::concat(&[Tensor::concat(&[seq.clone(), padding], 0), Tensor::randn([long, 1, 4], &CPU)], 1);
    let lengths = Tensor::from_vec(vec![short as i32, long as i32], [2], &CPU);
    let alone = Tensor::from_vec(vec![short as i32], [1], &CPU);
    let row0 = |t: &Tensor, axis: isize| t.narrow(axis, 0, 1);

    let lstm = LSTM::new(4, 5, options, &CPU);
    let (out, state) = lstm.forward_with(&batch, None, Some(&lengths));
    let (out_alone, state_alone) = lstm.forward_with(&seq, None, Some(&alone));
    assert!(rel_err(&row0(&out, 1).narrow(0, 0, short), &out_alone) < 1e-6);
    assert!(
        v(&row0(&out, 1).narrow(0, short, long - short)).iter().all(|&x| x == 0.0),
        "zero past the length"
    );
    assert!(rel_err(&row0(&state.h, 1), &state_alone.h) < 1e-6);
    assert!(rel_err(&row0(&state.c, 1), &state_alone.c) < 1e-6);

    let gru = GRU::new(4, 5, options.batch_first(true), &CPU);
    let (out, h) = gru.forward_with(&batch.transpose(0, 1), None, Some(&lengths));
    let (out_alone, h_alone) = gru.forward_with(&seq.transpose(0, 1), None, Some(&alone));
    assert!(rel_err(&row0(&out, 0).narrow(1, 0, short), &out_alone) < 1e-6);
    assert!(rel_err(&row0(&h, 1), &h_alone) < 1e-6);

    // the gradients of the short sequence too: the padding adds nothing
    let x = batch.detach().requires_grad_();
    let grads = lstm.forward_with(&x, None, Some(&lengths)).0.narrow(1, 0, 1).sum_all().backward();
    let alone_x = seq.detach().requires_grad_();
    let grads_alone = lstm.forward_with(&alone_x, None, Some(&alone)).0.sum_all().backward();
    let g = grads.get(&x).unwrap();
    assert!(rel_err(&row0(g, 1).narrow(0, 0, short), grads_alone.get(&alone_x).unwrap()) < 1e-6);
    assert!(
        v(&row0(g, 1).narrow(0, short, long - short)).iter().all(|&x| x == 0.0),
        "no gradient to padding"
    );
}

fn v(t: &Tensor) -> Vec<f64> {
    t.to_f64_vec().unwrap()
}

#[test]
fn dropout_applies_between_layers_in_training_only() {
    kiln::manual_seed(8);
    let x = Tensor::randn([5, 3, 4], &CPU);
    let two = LSTM::new(4, 6, RnnOptions::default().num_layers(2).dropout(0.5), &CPU);
    let eval = || {
        nn::eval(&two);
        let y = two.forward(&x);
        nn::train(&two);
        y
    };
    let (a, b) = (eval(), eval());
    assert_eq!(v(&a), v(&b), "no dropout in evaluation");
    assert!(rel_err(&two.forward(&x), &a) > 1e-3, "dropout between the layers in training");
    // after the last layer there is none (PyTorch's rule): one layer trains as it evaluates
    let one = GRU::new(4, 6, RnnOptions::default().dropout(0.5), &CPU);
    let trained = one.forward(&x);
    nn::eval(&one);
    assert_eq!(v(&trained), v(&one.forward(&x)));
}

#[test]
fn sequential_runs_a_recurrent_layer() {
    kiln::manual_seed(9);
    let model = Sequential::new()
        .add(RNN::new(4, 8, RnnOptions::default().batch_first(true), &CPU))
        .add(Linear::new(8, 2, &CPU));
    assert_eq!(model.forward(&Tensor::randn([3, 5, 4], &CPU)).dims(), &[3, 5, 2]);
    let names: Vec<String> = nn::parameters(&model).into_iter().map(|(n, _)| n).collect();
    assert_eq!(names[..2], ["0.weight_ih_l0", "0.weight_hh_l0"]);
}

#[test]
fn a_cell_as_a_module_steps_from_the_zero_state() {
    kiln::manual_seed(10);
    let x = Tensor::randn([2, 3], &CPU);
    let lstm = LSTMCell::new(3, 4, &CPU);
    assert_eq!(v(&Module::forward(&lstm, &x)), v(&lstm.forward(&x, &lstm.zero_state(2)).h));
    let gru = GRUCell::new(3, 4, &CPU);
    assert_eq!(v(&Module::forward(&gru, &x)), v(&gru.forward(&x, &gru.zero_state(2))));
    let names: Vec<String> = nn::parameters(&gru).into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["weight_ih", "weight_hh", "bias_ih", "bias_hh"]);
}

#[test]
fn bad_input_panics_with_the_module_the_shapes_and_the_callers_line() {
    let lstm = LSTM::new(4, 3, RnnOptions::default(), &CPU);
    let x = Tensor::zeros([5, 2, 4], &CPU);
    let here = |line: u32| format!("tests/recurrent.rs:{line}");

    let (msg, at) = common::panic_of(|| {
        lstm.forward(&Tensor::zeros([5, 2, 7], &CPU));
    });
    assert!(msg.contains("LSTM") && msg.contains("[5, 2, 7]") && msg.contains("(seq, batch, 4)"), "{msg}");
    assert_eq!(at, here(line!() - 3));

    for bad in [0, 6] {
        let lengths = Tensor::from_vec(vec![3, bad], [2], &CPU);
        let (msg, at) = common::panic_of(|| {
            lstm.forward_with(&x, None, Some(&lengths));
        });
        assert!(msg.contains("LSTM") && msg.contains("[5, 2, 4]") && msg.contains("1..=5"), "{msg}");
        assert!(msg.contains(&format!("row 1 has {bad}")), "{msg}");
        assert_eq!(at, here(line!() - 4));
    }

    let gru = GRU::new(4, 3, RnnOptions::default(), &CPU);
    let (msg, at) = common::panic_of(|| {
        gru.forward_with(&x, Some(&Tensor::zeros([1, 3, 3], &CPU)), None);
    });
    assert!(msg.contains("GRU") && msg.contains("h0 [1, 3, 3]") && msg.contains("[1, 2, 3]"), "{msg}");
    assert_eq!(at, here(line!() - 3));

    let cell = RNNCell::new(4, 3, &CPU);
    let (msg, at) = common::panic_of(|| {
        cell.forward(&Tensor::zeros([2, 5], &CPU), &cell.zero_state(2));
    });
    assert!(msg.contains("RNNCell") && msg.contains("[2, 5]"), "{msg}");
    assert_eq!(at, here(line!() - 3));

    let (msg, _) = common::panic_of(|| {
        let gx = Tensor::zeros([3, 2, 8], &CPU);
        let state = Tensor::zeros([2, 2, 2], &CPU);
        CellKind::Lstm.step(Step::new(&gx, 3, &Tensor::zeros([2, 8], &CPU), &state));
    });
    assert!(msg.contains("lstm_cell") && msg.contains("gx [3, 2, 8]") && msg.contains("step 3"), "{msg}");
}

#[test]
fn backpropagation_through_time_assembles_the_steps_into_one_concat_and_one_matmul() {
    kiln::manual_seed(11);
    let (steps, batch, hidden) = (6, 2, 3);
    let gx = Tensor::randn([steps, batch, 4 * hidden], &CPU).requires_grad_();
    let w_hh = Tensor::randn([4 * hidden, hidden], &CPU).requires_grad_();
    let mut state = Tensor::zeros([2, batch, hidden], &CPU);
    for t in 0..steps {
        let gh = state.select(0, 0).matmul(&w_hh.t());
        state = CellKind::Lstm.step(Step::new(&gx, t, &gh, &state));
    }
    let grads = state.sum_all().backward();
    assert_eq!(grads.get(&gx).unwrap().op_name(), "concat");
    assert_eq!(grads.get(&w_hh).unwrap().op_name(), "matmul");
}

/// Dispatches of one realize of `t` on the GPU.
fn dispatches_of(t: &Tensor) -> u64 {
    let before = kiln::debug::gpu_dispatches();
    t.realize().unwrap();
    kiln::debug::gpu_dispatches() - before
}

/// The dispatches of a forward and of a backward pass of a 1-layer module over `steps` steps.
fn dispatches(kind: &str, steps: usize, lengths: bool, gpu: &Device) -> (u64, u64) {
    kiln::manual_seed(12);
    let x = Tensor::randn([steps, 4, 8], gpu);
    x.realize().unwrap();
    let lengths = lengths.then(|| Tensor::from_vec(vec![steps as i32, 1, 2, steps as i32], [4], &CPU));
    let lengths = lengths.as_ref();
    let (out, params) = match kind {
        "LSTM" => {
            let m = LSTM::new(8, 16, RnnOptions::default(), gpu);
            (m.forward_with(&x, None, lengths).0, nn::parameters(&m))
        }
        "GRU" => {
            let m = GRU::new(8, 16, RnnOptions::default(), gpu);
            (m.forward_with(&x, None, lengths).0, nn::parameters(&m))
        }
        _ => {
            let m = RNN::new(8, 16, RnnOptions::default(), gpu);
            (m.forward_with(&x, None, lengths).0, nn::parameters(&m))
        }
    };
    let forward = dispatches_of(&out);
    let grads = out.sum_all().backward();
    let all: Vec<Tensor> = params.iter().map(|(_, p)| grads.get(p).unwrap().clone()).collect();
    let before = kiln::debug::gpu_dispatches();
    Tensor::realize_all(&all).unwrap();
    (forward, kiln::debug::gpu_dispatches() - before)
}

#[test]
fn a_gpu_step_is_two_dispatches_forward_and_at_most_five_backward() {
    let Some(gpu) = common::gpu("dispatches per step") else {
        return;
    };
    // per step: what 9 steps take more than 5, over 4; with fusion of elementwise chains on or
    // off
    let per_step = |kind: &str, lengths: bool, fused: bool| {
        kiln::set_fusion(fused);
        let (short, long) = (dispatches(kind, 5, lengths, &gpu), dispatches(kind, 9, lengths, &gpu));
        kiln::set_fusion(true);
        ((long.0 - short.0) as f64 / 4.0, (long.1 - short.1) as f64 / 4.0)
    };
    // unfused: forward, the recurrent matmul and the cell; backward, the cell's gradient, the
    // matmul for h, and the sums of h's gradients (from the output, the next cell and the next
    // matmul: the LSTM's last two join as one assembly of [dh; dc]); fused, the sums of h's
    // gradients that are elementwise become one chain, spliced into the matmul for h (its
    // epilogue): the LSTM's output reads each step's h itself, so the sum of h's gradient from
    // the output and from the next matmul is such a chain too
    let table = [
        ("LSTM", [(2.0, 3.0), (2.0, 5.0)], [(2.0, 2.0), (2.0, 4.0)]),
        ("GRU", [(2.0, 4.0), (2.0, 4.0)], [(2.0, 2.0), (2.0, 2.0)]),
        ("RNN", [(2.0, 3.0), (2.0, 4.0)], [(2.0, 2.0), (2.0, 2.0)]),
    ];
    for (kind, unfused, fused) in table {
        let measured = [false, true].map(|fuse| [false, true].map(|lengths| per_step(kind, lengths, fuse)));
        assert_eq!([unfused, fused], measured, "{kind}: [full, with lengths] per step, unfused then fused");
    }
}

#[test]
fn training_steps_pass_the_run_time_cross_check() {
    const TEST: &str = "training_steps_pass_the_run_time_cross_check";
    // run this test again in a child process, with the variable set before any device exists
    if common::ran_in_child(TEST, "KILN_CHECK", "1") {
        return;
    }
    let Some(gpu) = common::gpu("recurrent training under KILN_CHECK=1") else {
        return;
    };
    kiln::manual_seed(13);
    let options = RnnOptions::default().num_layers(2).bidirectional(true).batch_first(true).dropout(0.2);
    let lstm = LSTM::new(5, 8, options, &gpu);
    let gru = GRU::new(16, 8, RnnOptions::default(), &gpu);
    let rnn = RNN::with_nonlinearity(8, 8, Nonlinearity::Relu, RnnOptions::default(), &gpu);
    let mut params = nn::parameters(&lstm);
    params.extend(nn::parameters(&gru));
    params.extend(nn::parameters(&rnn));
    let mut opt = Optimizer::new(params, Rule::adam(), 1e-2);
    let x = Tensor::randn([4, 6, 5], &gpu);
    let lengths = Tensor::from_vec(vec![6, 2, 5, 1], [4], &CPU);
    let target = Tensor::randn([6, 4, 8], &gpu);
    for step in 0..3 {
        let (out, state) = lstm.forward_with(&x, None, Some(&lengths));
        let (out, h) = gru.forward_with(&out.transpose(0, 1), Some(&state.h.narrow(0, 0, 1)), None);
        let (out, _) = rnn.forward_with(&out, Some(&h), None);
        let loss = (out - &target).square().mean_all();
        opt.step(&loss.backward()).unwrap_or_else(|e| panic!("step {step}: {e}"));
    }
}

#[test]
fn an_embeddings_padding_row_is_zero_and_never_trained() {
    kiln::manual_seed(14);
    let emb = Embedding::with_padding_idx(6, 4, 2, &CPU);
    assert_eq!(emb.padding_idx(), Some(2));
    let rows =
        |t: &Tensor| -> Vec<Vec<f32>> { t.to_vec::<f32>().unwrap().chunks(4).map(|r| r.to_vec()).collect() };
    assert_eq!(rows(&emb.weight)[2], vec![0.0; 4]);
    let ids = Tensor::from_vec(vec![2i32, 0, 2, 5, 1, 2], [2, 3], &CPU);
    let mut opt = Optimizer::new(nn::parameters(&emb), Rule::sgd(), 0.5);
    for _ in 0..3 {
        let out = emb.forward(&ids);
        assert_eq!(out.dims(), &[2, 3, 4]);
        let loss = (out - 1.0).square().sum_all();
        let grads = loss.backward();
        assert_eq!(
            rows(grads.get(&emb.weight).unwrap())[2],
            vec![0.0; 4],
            "the padding row gets no gradient"
        );
        opt.step(&grads).unwrap();
    }
    let after = rows(&emb.weight);
    assert_eq!(after[2], vec![0.0; 4]);
    assert!(after[5].iter().all(|&x| (x - 1.0).abs() < 0.5), "the other rows trained: {after:?}");
    // an out-of-range id is an error, as without padding
    let bad = Tensor::from_vec(vec![6i32], [1], &CPU);
    assert!(emb.forward(&bad).realize().is_err());
}
