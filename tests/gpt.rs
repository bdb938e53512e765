//! nanoGPT's model (`kiln::models::gpt`): its state-dict names and shapes are nanoGPT's, the tied
//! head is one parameter updated once per step, generation with the key/value cache yields the
//! tokens of generation without it and seeded sampling the same text on the CPU and the GPU,
//! LoRA adapters train with the base frozen and merge exactly, and token ids outside the
//! vocabulary are an `Error::OutOfRange` on every backend.

mod common;

use kiln::models::generate::Sampling;
use kiln::models::gpt::{Gpt, GptConfig};
use kiln::nn::{self, LoraConfig, Module, lora};
use kiln::optim::{Optimizer, Rule};
use kiln::rng::RandomKey;
use kiln::train::checkpoint;
use kiln::{Device, Error, Tensor};
use std::path::Path;

/// The CPU, and the GPU where there is one.
fn devices() -> Vec<Device> {
    let mut out = vec![Device::Cpu];
    out.extend(common::gpu("GPT on the GPU"));
    out
}

fn small(bias: bool) -> GptConfig {
    GptConfig { vocab_size: 11, block_size: 8, n_layer: 2, n_head: 2, n_embd: 16, dropout: 0.0, bias }
}

/// A small GPT on `device` whose weights are those of seed 5 scaled by 25: N(0, 0.5) rather than
/// N(0, 0.02), so that its logits are far apart and a choice between two tokens never hangs on
/// rounding. The same weights on every device.
fn decisive(config: GptConfig, device: &Device) -> Gpt {
    scaled(config, 25.0, device)
}

/// A small GPT on `device` with weights N(0, 0.02) times `scale` drawn from seed 5, the same on
/// every device and in every call. They come from keys of their own, not from the global
/// generator, which tests on other threads draw from at the same time; the tensors that
/// initialization fills with a constant (LayerNorm weights, biases) keep it, and a tied tensor
/// gets one draw under both its names.
fn scaled(config: GptConfig, scale: f64, device: &Device) -> Gpt {
    let reference = Gpt::new(config, &Device::Cpu);
    let mut drawn: Vec<(u64, Tensor)> = Vec::new();
    let mut scaled: Vec<(String, Tensor)> = Vec::new();
    for (stream, (name, t)) in nn::state_dict(&reference).into_iter().enumerate() {
        let values = t.to_vec::<f32>().unwrap();
        let weights = if let Some((_, same)) = drawn.iter().find(|(id, _)| *id == t.id()) {
            same.clone()
        } else if values.iter().all(|&v| v == values[0]) {
            t.clone()
        } else {
            let key = RandomKey { seed: 5, stream: stream as u64 };
            let w = Tensor::normal(t.dims(), 0.0, 0.02, key, &Device::Cpu);
            drawn.push((t.id(), w.clone()));
            w
        };
        scaled.push((name, weights * scale));
    }
    let model = Gpt::new(config, device);
    checkpoint::load_into(&model, &scaled, Path::new("scaled weights")).unwrap();
    nn::eval(&model);
    model
}

fn ids(values: &[i32], dims: [usize; 2], device: &Device) -> Tensor {
    Tensor::from_vec(values.to_vec(), dims, device)
}

#[test]
fn state_dict_names_and_shapes_are_nanogpts() {
    // written by tests/fixtures/transformer/make_fixtures.py from nanoGPT's module tree
    let listed: serde_json::Value =
        serde_json::from_str(include_str!("fixtures/transformer/gpt_names.json")).unwrap();
    let configs = [
        (
            "vocab 65, block 64, 2 layers, 32 features, no bias",
            GptConfig {
                vocab_size: 65,
                block_size: 64,
                n_layer: 2,
                n_head: 4,
                n_embd: 32,
                dropout: 0.0,
                bias: false,
            },
        ),
        ("vocab 11, block 8, 1 layer, 16 features, bias", GptConfig { n_layer: 1, ..small(true) }),
    ];
    for (key, config) in configs {
        let want: Vec<(String, Vec<usize>)> = listed[key]
            .as_array()
            .unwrap_or_else(|| panic!("{key} is not in gpt_names.json"))
            .iter()
            .map(|entry| {
                let name = entry[0].as_str().unwrap().to_string();
                let shape =
                    entry[1].as_array().unwrap().iter().map(|d| d.as_u64().unwrap() as usize).collect();
                (name, shape)
            })
            .collect();
        let got: Vec<(String, Vec<usize>)> = nn::state_dict(&Gpt::new(config, &Device::Cpu))
            .into_iter()
            .map(|(name, t)| (name, t.dims().to_vec()))
            .collect();
        assert_eq!(got, want, "{key}");
    }
}

#[test]
fn the_tied_head_is_one_parameter_updated_once_per_step() {
    let mut updated = Vec::new();
    for device in devices() {
        kiln::manual_seed(6);
        let model = Gpt::new(small(false), &device);
        let params = nn::parameters(&model);
        let find = |name: &str| params.iter().find(|(n, _)| n == name).unwrap().1.clone();
        let (wte, head) = (find("transformer.wte.weight"), find("lm_head.weight"));
        assert!(wte.same(&head), "the head and the token embedding are one tensor");
        let before = wte.to_vec::<f32>().unwrap();

        let lr = 0.5;
        let mut opt = Optimizer::new(params.clone(), Rule::sgd(), lr);
        assert_eq!(opt.params().len(), params.len() - 1, "the tied tensor is one parameter of the optimizer");
        let x = ids(&[1, 2, 3, 4, 5, 6, 7, 8], [2, 4], &device);
        let y = ids(&[2, 3, 4, 5, 6, 7, 8, 9], [2, 4], &device);
        let grads = model.loss(&x, &y).backward();
        let g = grads.get(&wte).unwrap().to_vec::<f32>().unwrap();
        // rows 9 and 10 are targets only: the head alone gives them a gradient
        assert!(g[9 * 16..].iter().any(|&v| v != 0.0), "the head's gradient reaches the shared tensor");
        opt.step(&grads).unwrap();

        let after = wte.to_vec::<f32>().unwrap();
        for (i, ((b, a), g)) in before.iter().zip(&after).zip(&g).enumerate() {
            let once = b - lr as f32 * g;
            assert!(
                (a - once).abs() <= 1e-6 + 1e-5 * once.abs(),
                "{device}: entry {i} is {a}, one step gives {once}"
            );
        }
        assert!(model.head(&Tensor::ones([1, 16], &device)).to_vec::<f32>().is_ok());
        updated.push(after);
    }
    if let [cpu, gpu] = &updated[..] {
        let (err, mismatch) = kiln::testing::compare(
            &cpu.iter().map(|&v| f64::from(v)).collect::<Vec<_>>(),
            &gpu.iter().map(|&v| f64::from(v)).collect::<Vec<_>>(),
        );
        assert!(err <= 1e-5 && mismatch.is_none(), "CPU and GPU updates differ: {err:.3e} {mismatch:?}");
    }
}

#[test]
fn greedy_generation_with_the_cache_yields_the_tokens_without_it() {
    for device in devices() {
        let model = decisive(small(true), &device);
        // 3 + 12 tokens: the window slides past block_size 8
        let cached = model.generate(&[1, 2, 3], 12, &Sampling::greedy()).unwrap();
        let uncached = model.generate_uncached(&[1, 2, 3], 12, &Sampling::greedy()).unwrap();
        assert_eq!(cached.len(), 12);
        assert_eq!(cached, uncached, "on {device}");
        assert!(cached.iter().collect::<std::collections::HashSet<_>>().len() > 1, "{cached:?}");

        // a prompt longer than block_size is cropped to its last block_size tokens, as nanoGPT
        let long: Vec<i32> = (0..20).map(|i| i % 11).collect();
        let cropped = model.generate(&long[12..], 4, &Sampling::greedy()).unwrap();
        assert_eq!(model.generate(&long, 4, &Sampling::greedy()).unwrap(), cropped, "on {device}");

        // generation stops after a stop token, which it returns
        let stop = Sampling { stop: vec![cached[2]], ..Sampling::greedy() };
        let stopped = model.generate(&[1, 2, 3], 12, &stop).unwrap();
        let first = cached.iter().position(|&t| t == cached[2]).unwrap();
        assert_eq!(stopped, cached[..=first], "on {device}");
    }
}

#[test]
fn seeded_sampling_gives_the_same_text_on_every_device_with_and_without_the_cache() {
    let sampling =
        Sampling { temperature: 1.0, top_k: Some(6), top_p: Some(0.95), seed: 7, stop: Vec::new() };
    let mut texts = Vec::new();
    for device in devices() {
        // logits a few units apart: sampled tokens vary, and no draw falls within rounding of a
        // boundary between two of them
        let model = scaled(small(false), 4.0, &device);
        let text = model.generate(&[4, 5], 10, &sampling).unwrap();
        assert_eq!(text, model.generate_uncached(&[4, 5], 10, &sampling).unwrap(), "on {device}");
        let other_seed = model.generate(&[4, 5], 10, &Sampling { seed: 8, ..sampling.clone() }).unwrap();
        assert_ne!(text, other_seed, "on {device}: another seed, another text");
        texts.push(text);
    }
    assert!(texts.windows(2).all(|w| w[0] == w[1]), "{texts:?}");
}

#[test]
fn token_ids_outside_the_vocabulary_are_out_of_range_on_every_device() {
    for device in devices() {
        let model = decisive(small(false), &device);
        for bad in [11, -1] {
            let err = model.generate(&[1, bad], 3, &Sampling::greedy()).unwrap_err();
            assert!(matches!(err, Error::OutOfRange(_)), "{device}, id {bad}: {err}");
            let logits = model.forward(&ids(&[1, 2, bad], [1, 3], &device));
            let err = logits.to_vec::<f32>().unwrap_err();
            assert!(matches!(err, Error::OutOfRange(_)), "{device}, id {bad}: {err}");
        }
        // the model still works afterwards
        assert_eq!(model.generate(&[1, 2], 3, &Sampling::greedy()).unwrap().len(), 3);
    }
}

#[test]
fn lora_trains_the_adapters_alone_and_merges_exactly() {
    for device in devices() {
        let model = decisive(small(true), &device);
        let config = LoraConfig { rank: 2, alpha: 4.0, dropout: 0.0 };
        assert_eq!(lora::apply(&model, "*.attn.c_attn", config).unwrap(), 2);
        let adapters = lora::trainable_parameters(&model);
        assert_eq!(adapters.len(), 4, "lora_A and lora_B of two layers");
        let base: Vec<(String, Vec<f32>)> = nn::state_dict(&model)
            .into_iter()
            .filter(|(n, _)| !n.contains("lora_"))
            .map(|(n, t)| (n, t.to_vec::<f32>().unwrap()))
            .collect();

        nn::train(&model);
        let mut opt = Optimizer::new(adapters.clone(), Rule::adam(), 1e-2);
        let x = ids(&[1, 2, 3, 4, 5, 6, 7, 8], [2, 4], &device);
        let y = ids(&[2, 3, 4, 5, 6, 7, 8, 9], [2, 4], &device);
        for _ in 0..3 {
            let grads = model.loss(&x, &y).backward();
            // an adapted layer's base weight is a buffer: no parameter, no gradient
            let c_attn = "transformer.h.0.attn.c_attn.weight";
            assert!(nn::parameters(&model).iter().all(|(n, _)| n != c_attn));
            let base_weight = nn::state_dict(&model).into_iter().find(|(n, _)| n == c_attn).unwrap().1;
            assert!(grads.get(&base_weight).is_none(), "the base weight gets no gradient");
            opt.step(&grads).unwrap();
        }
        nn::eval(&model);
        for (name, values) in &base {
            let now = nn::state_dict(&model).into_iter().find(|(n, _)| n == name).unwrap().1;
            assert_eq!(&now.to_vec::<f32>().unwrap(), values, "{device}: {name} moved");
        }

        let probe = ids(&[3, 1, 4, 1, 5, 9, 2, 6], [1, 8], &device);
        let unmerged = model.forward(&probe).to_f64_vec().unwrap();
        let untrained = decisive(small(true), &device).forward(&probe).to_f64_vec().unwrap();
        // the adapters moved the output by 0.2–0.5 (relative); a merge that lost or misscaled
        // them would be off by about as much
        let effect = kiln::testing::compare(&untrained, &unmerged).0;
        assert!(effect > 1e-2, "{device}: the adapters changed little ({effect:.1e})");
        lora::merge(&model).unwrap();
        let merged = model.forward(&probe).to_f64_vec().unwrap();
        let (err, mismatch) = kiln::testing::compare(&unmerged, &merged);
        // W + (α/r)·B·A rounds once per weight (6e-8), and weights 25× nanoGPT's amplify that
        // through two blocks: up to 6e-5 seen on lavapipe, far below the adapters' effect
        const MERGE_TOL: f64 = 2e-4;
        assert!(err <= MERGE_TOL && mismatch.is_none(), "{device}: merged differs by {err:.3e} {mismatch:?}");
        lora::unmerge(&model).unwrap();
        let again = model.forward(&probe).to_f64_vec().unwrap();
        assert!(kiln::testing::compare(&unmerged, &again).0 <= MERGE_TOL, "{device}: unmerged again");

        // the adapters alone round-trip into a freshly adapted copy of the base
        let path =
            std::env::temp_dir().join(format!("kiln-gpt-lora-{}-{device}.safetensors", std::process::id()));
        lora::save_adapters(&model, &path).unwrap();
        let copy = decisive(small(true), &device);
        lora::apply(&copy, "*.attn.c_attn", config).unwrap();
        lora::load_adapters(&copy, &path).unwrap();
        std::fs::remove_file(&path).unwrap();
        let loaded = copy.forward(&probe).to_f64_vec().unwrap();
        assert!(kiln::testing::compare(&unmerged, &loaded).0 <= 1e-6, "{device}: adapters round trip");
    }
}
