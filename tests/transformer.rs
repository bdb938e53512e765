//! Attention and Transformer modules against PyTorch: `nn.MultiheadAttention`,
//! `nn.TransformerEncoderLayer`, `nn.TransformerDecoderLayer` and `nn.Transformer` fixtures
//! (written by `tests/fixtures/transformer/make_fixtures.py`), with and without masks,
//! batch-first or not, post- and pre-norm; incremental decoding against full decoding; positions;
//! and bad masks. Each runs on the CPU and, where there is one, the GPU.

mod common;

use kiln::nn::{
    self, Activation, DecoderMasks, EncoderMasks, LearnedPositionalEmbedding, MhaConfig, MhaOptions, Module,
    MultiheadAttention, RotaryEmbedding, SinusoidalPositionalEncoding, Transformer, TransformerConfig,
    TransformerDecoder, TransformerDecoderLayer, TransformerEncoderLayer, TransformerMasks,
};
use kiln::train::checkpoint;
use kiln::{Device, Tensor};
use std::path::PathBuf;

/// A module's state dict, inputs, PyTorch's outputs and arguments from one fixture file.
struct Fixture {
    path: PathBuf,
    tensors: Vec<(String, Tensor)>,
    args: serde_json::Value,
}

impl Fixture {
    fn load(case: &str) -> Fixture {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join(format!("tests/fixtures/transformer/{case}.safetensors"));
        let saved = checkpoint::load(&path).unwrap();
        let args = serde_json::from_str(&saved.metadata["args"]).unwrap();
        Fixture { path, tensors: saved.tensors, args }
    }

    fn with_prefix(&self, prefix: &str) -> Vec<(String, Tensor)> {
        self.tensors
            .iter()
            .filter_map(|(n, t)| n.strip_prefix(prefix).map(|n| (n.to_string(), t.clone())))
            .collect()
    }

    /// Loads the PyTorch state dict into `module` (every name must be there, with its shape).
    fn load_into(&self, module: &dyn Module) {
        let state = self.with_prefix("model.");
        assert_eq!(state.len(), nn::state_dict(module).len(), "{}: state dict sizes", self.path.display());
        checkpoint::load_into(module, &state, &self.path).unwrap();
    }

    fn input(&self, name: &str, device: &Device) -> Tensor {
        self.get(&format!("input.{name}")).to(device)
    }

    fn output(&self, name: &str) -> Tensor {
        self.get(&format!("output.{name}"))
    }

    fn get(&self, name: &str) -> Tensor {
        self.tensors.iter().find(|(n, _)| n == name).unwrap_or_else(|| panic!("no {name}")).1.clone()
    }

    fn usize(&self, key: &str) -> usize {
        self.args[key].as_u64().unwrap() as usize
    }

    fn flag(&self, key: &str) -> bool {
        self.args[key].as_bool().unwrap_or(false)
    }
}

/// The CPU, and the GPU where there is one.
fn devices() -> Vec<Device> {
    let mut out = vec![Device::Cpu];
    out.extend(common::gpu("transformer modules on the GPU"));
    out
}

/// Asserts ‖got − want‖ / ‖want‖ ≤ `tol`.
fn assert_close(got: &Tensor, want: &Tensor, tol: f64, what: &str) {
    assert_eq!(got.dims(), want.dims(), "{what}: shapes");
    let (got, want) = (got.to_f64_vec().unwrap(), want.to_f64_vec().unwrap());
    let (err, mismatch) = kiln::testing::compare(&want, &got);
    assert!(err <= tol && mismatch.is_none(), "{what}: relative error {err:.3e} > {tol:.0e} {mismatch:?}");
}

/// f32 rounding through a few layers of sums of tens of terms.
const TOL: f64 = 2e-5;

#[test]
fn multihead_attention_matches_pytorch() {
    for device in devices() {
        for case in ["mha_basic", "mha_masks", "mha_kvdim", "mha_causal"] {
            let f = Fixture::load(case);
            let config = MhaConfig {
                kdim: f.args.get("kdim").map(|v| v.as_u64().unwrap() as usize),
                vdim: f.args.get("vdim").map(|v| v.as_u64().unwrap() as usize),
                bias: f.args.get("bias").is_none_or(|b| b.as_bool().unwrap()),
                batch_first: f.flag("batch_first"),
                dropout: 0.0,
            };
            let mha =
                MultiheadAttention::with_options(f.usize("embed_dim"), f.usize("num_heads"), config, &device);
            f.load_into(&mha);
            let has = |name: &str| f.tensors.iter().any(|(n, _)| n == &format!("input.{name}"));
            let options = MhaOptions {
                key_padding_mask: has("key_padding_mask").then(|| f.input("key_padding_mask", &device)),
                attn_mask: has("attn_mask").then(|| f.input("attn_mask", &device)),
                is_causal: f.flag("causal"),
                need_weights: f.flag("need_weights"),
                average_attn_weights: f.flag("average"),
            };
            let what = format!("{case} on {device}");
            let (out, weights) = if has("key") {
                let (q, k, v) =
                    (f.input("query", &device), f.input("key", &device), f.input("value", &device));
                mha.forward_with(&q, &k, &v, &options)
            } else {
                let x = f.input("query", &device);
                mha.forward_with(&x, &x, &x, &options)
            };
            assert_close(&out, &f.output("out"), TOL, &what);
            if options.need_weights {
                assert_close(&weights.unwrap(), &f.output("weights"), TOL, &format!("{what}: weights"));
            } else {
                assert!(weights.is_none());
            }
        }
    }
}

fn layer_config(f: &Fixture) -> TransformerConfig {
    TransformerConfig {
        dim_feedforward: f.usize("dim_feedforward"),
        dropout: 0.0,
        activation: if f.args["activation"] == "gelu" { Activation::Gelu } else { Activation::Relu },
        batch_first: f.flag("batch_first"),
        norm_first: f.flag("norm_first"),
        ..TransformerConfig::new(f.usize("d_model"), f.usize("nhead"))
    }
}

#[test]
fn encoder_and_decoder_layers_match_pytorch() {
    for device in devices() {
        for case in ["encoder_post", "encoder_pre"] {
            let f = Fixture::load(case);
            let layer = TransformerEncoderLayer::new(layer_config(&f), &device);
            f.load_into(&layer);
            let masks = EncoderMasks {
                mask: (case == "encoder_pre").then(|| f.input("mask", &device)),
                key_padding_mask: (case == "encoder_post").then(|| f.input("key_padding_mask", &device)),
                is_causal: false,
            };
            let out = layer.forward_with(&f.input("src", &device), &masks);
            assert_close(&out, &f.output("out"), TOL, &format!("{case} on {device}"));
        }
        for case in ["decoder_post", "decoder_pre"] {
            let f = Fixture::load(case);
            let layer = TransformerDecoderLayer::new(layer_config(&f), &device);
            f.load_into(&layer);
            let post = case == "decoder_post";
            let masks = DecoderMasks {
                tgt_mask: post.then(|| f.input("tgt_mask", &device)),
                memory_mask: (!post).then(|| f.input("memory_mask", &device)),
                tgt_key_padding_mask: (!post).then(|| f.input("tgt_key_padding_mask", &device)),
                memory_key_padding_mask: post.then(|| f.input("memory_key_padding_mask", &device)),
                ..Default::default()
            };
            let out = layer.forward_with(&f.input("tgt", &device), &f.input("memory", &device), &masks);
            assert_close(&out, &f.output("out"), TOL, &format!("{case} on {device}"));
        }
    }
}

#[test]
fn transformer_matches_pytorch() {
    for device in devices() {
        let f = Fixture::load("transformer");
        let config = layer_config(&f);
        let layers = f.usize("layers");
        let model = Transformer::new(config, layers, layers, &device);
        f.load_into(&model);
        let padding = f.input("src_key_padding_mask", &device);
        let masks = TransformerMasks {
            src: EncoderMasks { key_padding_mask: Some(padding.clone()), ..Default::default() },
            tgt: DecoderMasks {
                tgt_mask: Some(f.input("tgt_mask", &device)),
                memory_key_padding_mask: Some(padding),
                ..Default::default()
            },
        };
        let out = model.forward_with(&f.input("src", &device), &f.input("tgt", &device), &masks);
        assert_close(&out, &f.output("out"), TOL, &format!("transformer on {device}"));
    }
}

#[test]
fn incremental_decoding_matches_full_decoding_and_reorders_by_beam() {
    for device in devices() {
        for (batch_first, norm_first) in [(true, false), (false, true)] {
            kiln::manual_seed(3);
            let config = TransformerConfig {
                dim_feedforward: 24,
                dropout: 0.0,
                batch_first,
                norm_first,
                ..TransformerConfig::new(16, 4)
            };
            let decoder = TransformerDecoder::new(config, 2, true, &device);
            let (n, s, t) = (3, 6, 5);
            let layout = |a: usize, b: usize| if batch_first { [a, b, 16] } else { [b, a, 16] };
            let memory = Tensor::randn(layout(n, s), &device);
            let tgt = Tensor::randn(layout(n, t), &device);
            let hidden: Vec<bool> = (0..n * s).map(|i| i % s >= s - i / s).collect();
            let padding = Tensor::from_vec(hidden.clone(), [n, s], &device);
            let full = decoder.forward_with(
                &tgt,
                &memory,
                &DecoderMasks {
                    tgt_is_causal: true,
                    memory_key_padding_mask: Some(padding.clone()),
                    ..Default::default()
                },
            );
            let time = if batch_first { 1 } else { 0 };
            let mut cache = decoder.start(&memory, Some(&padding));
            // the first two positions in one step, then one at a time
            let mut steps = vec![decoder.step(&tgt.narrow(time, 0, 2), &mut cache)];
            for i in 2..t {
                steps.push(decoder.step(&tgt.narrow(time, i, 1), &mut cache));
            }
            assert_eq!(cache.len(), t);
            let what = format!("batch_first {batch_first}, norm_first {norm_first} on {device}");
            assert_close(&Tensor::concat(&steps, time), &full, TOL, &what);

            // beam search keeps rows (2, 0, 0): the next step continues those hypotheses
            let beams = Tensor::from_vec(vec![2i32, 0, 0], [3], &device);
            cache.reorder(&beams);
            let next = Tensor::randn(layout(n, 1), &device);
            let stepped = decoder.step(&next, &mut cache);
            let batch = if batch_first { 0 } else { 1 };
            let reordered = |x: &Tensor| x.index_select(batch, &beams);
            let want = decoder.forward_with(
                &Tensor::concat(&[reordered(&tgt), next], time),
                &reordered(&memory),
                &DecoderMasks {
                    tgt_is_causal: true,
                    memory_key_padding_mask: Some(Tensor::from_vec(
                        [2, 0, 0].iter().flat_map(|&row| hidden[row * s..(row + 1) * s].to_vec()).collect(),
                        [n, s],
                        &device,
                    )),
                    ..Default::default()
                },
            );
            assert_close(&stepped, &want.narrow(time, t, 1), TOL, &format!("{what}, after reordering"));
        }
    }
}

thread_local! {
    /// Where the last panic on this thread was raised.
    static PANIC_SITE: std::cell::RefCell<Option<(String, u32)>> = const { std::cell::RefCell::new(None) };
}

/// The message of the panic `f` raises and the file and line it names.
fn panic_site(f: impl FnOnce() + std::panic::UnwindSafe) -> (String, String, u32) {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(|info| {
        let site = info.location().map(|l| (l.file().to_string(), l.line()));
        PANIC_SITE.with(|s| *s.borrow_mut() = site);
    }));
    let err = std::panic::catch_unwind(f).expect_err("should panic");
    std::panic::set_hook(previous);
    let message = err
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| err.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap();
    let (file, line) = PANIC_SITE.with(|s| s.borrow_mut().take()).unwrap();
    (message, file, line)
}

#[test]
fn masks_of_the_wrong_shape_panic_naming_the_op_the_shapes_and_the_line() {
    let dev = Device::Cpu;
    let config = MhaConfig { batch_first: true, ..Default::default() };
    let mha = MultiheadAttention::with_options(8, 2, config, &dev);
    let x = Tensor::randn([2, 5, 8], &dev);
    let padding = MhaOptions { key_padding_mask: Some(Tensor::zeros([2, 4], &dev)), ..Default::default() };
    let (message, file, line) = panic_site(|| drop(mha.forward_with(&x, &x, &x, &padding)));
    assert_eq!((file.as_str(), line), (file!(), line!() - 1), "{message}");
    assert!(message.contains("MultiheadAttention: key_padding_mask [2, 4]"), "{message}");
    assert!(message.contains("[2, 5]"), "the shape it must have: {message}");

    let attn = MhaOptions { attn_mask: Some(Tensor::zeros([5, 6], &dev)), ..Default::default() };
    let (message, _, line) = panic_site(|| drop(mha.forward_with(&x, &x, &x, &attn)));
    assert_eq!(line, line!() - 1);
    assert!(message.contains("attn_mask [5, 6]") && message.contains("[5, 5] or [4, 5, 5]"), "{message}");

    let (message, _, _) = panic_site(|| {
        drop(mha.forward_with(&Tensor::randn([2, 5, 6], &dev), &x, &x, &MhaOptions::default()))
    });
    assert!(message.contains("query [2, 5, 6]") && message.contains("embed_dim 8"), "{message}");

    // the same through a layer: the layer's caller is named
    let layer = TransformerEncoderLayer::new(
        TransformerConfig { batch_first: true, ..TransformerConfig::new(8, 2) },
        &dev,
    );
    let masks = EncoderMasks { mask: Some(Tensor::zeros([3, 3], &dev)), ..Default::default() };
    let (message, file, line) = panic_site(|| drop(layer.forward_with(&x, &masks)));
    assert_eq!((file.as_str(), line), (file!(), line!() - 1), "{message}");
}

#[test]
fn positions_follow_their_definitions() {
    let dev = Device::Cpu;
    // sinusoidal: PE[p, 2i] = sin(p / 10000^(2i/E)), PE[p, 2i + 1] = cos(…), at an offset
    let pe = SinusoidalPositionalEncoding::new(6, 20, 0.0, &dev);
    let y = pe.forward_at(&Tensor::zeros([1, 3, 6], &dev), 4).to_vec::<f32>().unwrap();
    for (t, row) in y.chunks(6).enumerate() {
        for (k, &v) in row.iter().enumerate() {
            let angle = (4 + t) as f64 / 10_000f64.powf((k - k % 2) as f64 / 6.0);
            let want = if k % 2 == 0 { angle.sin() } else { angle.cos() };
            assert!((f64::from(v) - want).abs() < 1e-6, "position {}, feature {k}", 4 + t);
        }
    }
    // learned: rows offset.. of the table
    let learned = LearnedPositionalEmbedding::new(10, 4, &dev);
    let got = learned.forward_at(&Tensor::zeros([2, 3, 4], &dev), 5);
    assert_close(&got.narrow(0, 1, 1).reshape([3, 4]), &learned.weight.narrow(0, 5, 3), 0.0, "learned");
    assert_eq!(nn::parameters(&learned).len(), 1);
}

/// RoPE as `rotate_half` composes it from tensor ops: x·cos + rotate_half(x)·sin, with the
/// angles p·base^(−2i/D) repeated over both halves.
fn rope_reference(x: &Tensor, offset: usize) -> Tensor {
    let (t, d) = (x.dim(-2), x.dim(-1));
    let half = d / 2;
    let angles: Vec<f64> = (0..t)
        .flat_map(|p| {
            (0..d).map(move |j| (offset + p) as f64 * 10_000f64.powf(-2.0 * (j % half) as f64 / d as f64))
        })
        .collect();
    let table = |f: fn(f64) -> f64| {
        Tensor::from_vec(angles.iter().map(|&a| f(a) as f32).collect::<Vec<_>>(), [t, d], &x.device())
    };
    let rotated = Tensor::concat(&[x.narrow(-1, half, half).neg(), x.narrow(-1, 0, half)], -1);
    x * table(f64::cos) + rotated * table(f64::sin)
}

#[test]
fn rotary_embeddings_match_rotate_half_and_depend_on_relative_position() {
    for device in devices() {
        let rope = RotaryEmbedding::new(8, 32, &device);
        let x = Tensor::randn([2, 3, 5, 8], &device);
        assert_close(&rope.apply(&x, 7), &rope_reference(&x, 7), 1e-6, &format!("rope on {device}"));
        // q at position p and k at position p′: the score depends on p − p′ only
        let (q, k) = (Tensor::randn([1, 1, 1, 8], &device), Tensor::randn([1, 1, 1, 8], &device));
        let score =
            |p: usize, pk: usize| (rope.apply(&q, p) * rope.apply(&k, pk)).sum_all().item::<f32>().unwrap();
        assert!((score(3, 1) - score(20, 18)).abs() < 1e-4);
        assert!((score(3, 1) - score(3, 2)).abs() > 1e-4, "a different distance scores differently");
    }
}

#[test]
fn multihead_attention_trains_through_every_path_on_both_backends() {
    // the fused and unfused paths give the same gradients
    let dev = Device::Cpu;
    kiln::manual_seed(5);
    let mha =
        MultiheadAttention::with_options(8, 2, MhaConfig { batch_first: true, ..Default::default() }, &dev);
    let x = Tensor::randn([2, 4, 8], &dev);
    let fused = mha.forward_with(&x, &x, &x, &MhaOptions { is_causal: true, ..Default::default() }).0;
    let (unfused, weights) = mha.forward_with(
        &x,
        &x,
        &x,
        &MhaOptions { is_causal: true, need_weights: true, ..Default::default() },
    );
    assert_close(&unfused, &fused, 1e-6, "fused and unfused");
    let w = weights.unwrap().to_vec::<f32>().unwrap();
    assert_eq!(w[1], 0.0, "query 0 does not see key 1");
    let grads = |out: &Tensor| {
        let g = out.square().sum_all().backward();
        g.get(mha.in_proj_weight.as_ref().unwrap()).unwrap().clone()
    };
    assert_close(&grads(&unfused), &grads(&fused), 1e-5, "gradients of the two paths");
}

#[test]
fn multihead_attention_drops_the_same_weights_on_every_path_and_backend() {
    let mut outputs = Vec::new();
    for device in devices() {
        kiln::manual_seed(5);
        let config = MhaConfig { batch_first: true, dropout: 0.3, ..Default::default() };
        let mha = MultiheadAttention::with_options(8, 2, config, &device);
        let x = Tensor::randn([2, 4, 8], &Device::Cpu).to(&device);
        let hidden = vec![false, false, false, true, false, false, false, false];
        let options = |need_weights| MhaOptions {
            key_padding_mask: Some(Tensor::from_vec(hidden.clone(), [2, 4], &device)),
            is_causal: true,
            need_weights,
            ..Default::default()
        };
        // the same stream for both calls: the fused kernel and the unfused path draw alike
        kiln::manual_seed(9);
        let fused = mha.forward_with(&x, &x, &x, &options(false)).0;
        kiln::manual_seed(9);
        let (unfused, weights) = mha.forward_with(&x, &x, &x, &options(true));
        assert_close(&unfused, &fused, 1e-6, &format!("fused and unfused with dropout on {device}"));
        let w = weights.unwrap().to_vec::<f32>().unwrap();
        assert_eq!(w[3 * 4 + 3], 0.0, "{device}: the padded key is hidden");

        nn::eval(&mha);
        let plain = mha.forward_with(&x, &x, &x, &options(false)).0.to_f64_vec().unwrap();
        let dropped = fused.to_f64_vec().unwrap();
        assert!(kiln::testing::compare(&plain, &dropped).0 > 1e-3, "{device}: dropout changed nothing");
        outputs.push(fused);
    }
    if let [cpu, gpu] = &outputs[..] {
        assert_close(&gpu.to(&Device::Cpu), cpu, TOL, "the GPU drops what the CPU drops");
    }
}
