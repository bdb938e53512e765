//! Translation: greedy and beam search over a hand-built model whose probabilities are known,
//! beam width 1 against greedy decoding and batches against single sentences on both reference
//! models, padding invariance of their teacher-forced logits, bad input (an empty source, a
//! source past the position table, unknown words), the attention maps, and Multi30k from the
//! shared data.

mod common;

use kiln::data::Padding;
use kiln::data::multi30k::{Multi30k, encode_sentence};
use kiln::data::sequence::pad_sequences;
use kiln::data::vocab::Vocab;
use kiln::models::seq2seq::{Decoding, Seq2Seq, decode, length_penalty, translate};
use kiln::models::{
    GruAttention, GruAttentionConfig, Positions, TransformerTranslator, TransformerTranslatorConfig,
};
use kiln::nn::{self, Module, Visitor};
use kiln::{Device, Tensor};

const A: i32 = 4;
const B: i32 = 5;

/// A model whose next-token probabilities depend on the prefix alone, over the vocabulary
/// `<pad> <unk> <bos> <eos> A B`:
/// - after `<bos>`: A 0.6, B 0.4;
/// - after `A`: `<eos>` 0.3, A 0.35, B 0.35;
/// - after `B`: `<eos>` 0.9, A 0.05, B 0.05;
/// - after two tokens: `<eos>`.
///
/// Greedy decoding takes A, then A (the tie's lower id), then `<eos>`: p = 0.21. The best
/// sentence is `B <eos>`: p = 0.36.
struct Known;

impl Known {
    fn probabilities(prefix: &[i32]) -> [f64; 6] {
        match prefix {
            [] => [0.0, 0.0, 0.0, 0.0, 0.6, 0.4],
            [A] => [0.0, 0.0, 0.0, 0.3, 0.35, 0.35],
            [B] => [0.0, 0.0, 0.0, 0.9, 0.05, 0.05],
            _ => [0.0, 0.0, 0.0, 1.0, 0.0, 0.0],
        }
    }
}

impl Module for Known {
    fn forward(&self, x: &Tensor) -> Tensor {
        x.clone()
    }
    fn visit(&self, _: &mut dyn Visitor) {}
}

impl Seq2Seq for Known {
    /// Each row's tokens so far.
    type State = Vec<Vec<i32>>;

    fn forward_teacher(&self, _: &Tensor, _: &Padding, _: &Tensor, _: Option<&Tensor>) -> Tensor {
        unreachable!("decoding only")
    }

    fn encode(&self, src: &Tensor, _: &Padding) -> Vec<Vec<i32>> {
        vec![Vec::new(); src.dim(0)]
    }

    fn step(&self, state: &mut Vec<Vec<i32>>, tokens: &Tensor) -> Tensor {
        let tokens = tokens.to_vec::<i32>().unwrap();
        let mut log_probs = Vec::new();
        for (prefix, &token) in state.iter_mut().zip(&tokens) {
            if token != Vocab::BOS {
                prefix.push(token);
            }
            log_probs.extend(Known::probabilities(prefix).map(|p| p.max(1e-30).ln() as f32));
        }
        Tensor::from_vec(log_probs, [tokens.len(), 6], &Device::Cpu)
    }

    fn reorder(&self, state: &mut Vec<Vec<i32>>, index: &Tensor) {
        *state = index.to_vec::<i32>().unwrap().iter().map(|&i| state[i as usize].clone()).collect();
    }

    fn cross_attention(&self, _: &[i32], _: &[i32]) -> Tensor {
        unreachable!("decoding only")
    }

    fn device(&self) -> Device {
        Device::Cpu
    }
}

/// Decodes one dummy source with the [`Known`] model.
fn known(decoding: Decoding) -> kiln::models::seq2seq::Hypothesis {
    let sources = vec![vec![Vocab::BOS, Vocab::EOS]];
    translate(&Known, &sources, &decoding, 1).unwrap().remove(0)
}

#[test]
fn greedy_decoding_takes_the_likeliest_token_each_step() {
    let greedy = known(Decoding::greedy(10));
    assert_eq!(greedy.tokens, [A, A]);
    assert!(greedy.finished);
    assert!((greedy.log_prob - (0.6f64 * 0.35 * 1.0).ln()).abs() < 1e-6, "{greedy:?}");
}

#[test]
fn beam_search_finds_the_likeliest_sentence_that_greedy_misses() {
    let beam = known(Decoding::beam(2, 0.0, 10));
    assert_eq!(beam.tokens, [B]);
    assert!((beam.log_prob - (0.4f64 * 0.9).ln()).abs() < 1e-6, "{beam:?}");
    assert_eq!(beam.score, beam.log_prob, "no length penalty at α = 0");
    // width 1 is greedy
    assert_eq!(known(Decoding::beam(1, 0.0, 10)), known(Decoding::greedy(10)));
}

#[test]
fn the_length_penalty_favours_longer_sentences_as_alpha_grows() {
    // B <eos>: ln 0.36 over lp(2); A A <eos>: ln 0.21 over lp(3). At α = 2 the short one still
    // wins (−0.75 against −0.88), at α = 5 the long one (−0.47 against −0.37).
    for (alpha, want) in [(0.0, vec![B]), (2.0, vec![B]), (5.0, vec![A, A])] {
        let best = known(Decoding::beam(2, alpha, 10));
        assert_eq!(best.tokens, want, "α {alpha}");
        let length = best.tokens.len() + 1;
        assert!((best.score - best.log_prob / length_penalty(length, alpha)).abs() < 1e-9);
    }
}

#[test]
fn the_length_limit_ends_unfinished_hypotheses() {
    // one token allowed: no sentence can end, A (0.6) is the best unfinished one
    let cut = known(Decoding::beam(2, 0.0, 1));
    assert_eq!(cut.tokens, [A]);
    assert!(!cut.finished);
}

fn gru(device: &Device) -> GruAttention {
    let config = GruAttentionConfig {
        embedding: 8,
        encoder_hidden: 12,
        decoder_hidden: 10,
        dropout: 0.3,
        ..GruAttentionConfig::tutorial(23, 19)
    };
    GruAttention::new(config, device)
}

fn transformer(device: &Device, max_len: usize) -> TransformerTranslator {
    let config = TransformerTranslatorConfig {
        d_model: 16,
        nhead: 4,
        encoder_layers: 2,
        decoder_layers: 2,
        dim_feedforward: 24,
        max_len,
        ..TransformerTranslatorConfig::tutorial(23, 19)
    };
    TransformerTranslator::new(config, device)
}

/// Source sentences of different lengths (ids of a 23-token vocabulary), one of them empty.
fn sources() -> Vec<Vec<i32>> {
    let words: [&[i32]; 5] =
        [&[7, 8, 9, 10, 11, 12], &[13], &[], &[14, 15, 16], &[17, 18, 19, 20, 21, 22, 4, 5]];
    words.iter().map(|w| [&[Vocab::BOS][..], w, &[Vocab::EOS]].concat()).collect()
}

/// Random weights give flat distributions, whose greedy choices can flip on rounding; sharpen
/// the output layer so that every step has a clear winner.
fn sharpen(model: &dyn Module, output: &str) {
    kiln::no_grad(|| {
        for (name, p) in nn::parameters(model) {
            if name.starts_with(output) {
                p.assign(&(&p * 30.0)).unwrap();
            }
        }
    });
}

fn check_decoding<M: Seq2Seq>(model: &M, name: &str) {
    let sources = sources();
    let greedy = translate(model, &sources, &Decoding::greedy(12), 8).unwrap();
    let width_one = translate(model, &sources, &Decoding::beam(1, 0.6, 12), 8).unwrap();
    for (g, w) in greedy.iter().zip(&width_one) {
        assert_eq!(g.tokens, w.tokens, "{name}: beam width 1 against greedy");
    }
    // a batch decodes each sentence as it decodes alone, whatever the padding around it
    let beams = translate(model, &sources, &Decoding::beam(4, 0.6, 12), 8).unwrap();
    for (i, source) in sources.iter().enumerate() {
        let alone = translate(model, std::slice::from_ref(source), &Decoding::beam(4, 0.6, 12), 1).unwrap();
        assert_eq!(alone[0].tokens, beams[i].tokens, "{name}: sentence {i} alone and in a batch");
        assert!((alone[0].score - beams[i].score).abs() < 1e-4, "{name}: sentence {i}");
    }
}

#[test]
fn beam_width_one_is_greedy_and_batches_decode_as_single_sentences() {
    kiln::manual_seed(3);
    let gru = gru(&Device::Cpu);
    sharpen(&gru, "decoder.fc_out");
    check_decoding(&gru, "gru-attn");
    let transformer = transformer(&Device::Cpu, 32);
    sharpen(&transformer, "generator");
    check_decoding(&transformer, "transformer");
}

/// The teacher-forced logits of a short pair alone and padded in a batch beside a long one.
fn check_padding<M: Seq2Seq>(model: &M, name: &str) {
    nn::eval(model);
    let (short_src, long_src) = (vec![2, 7, 8, 3], vec![2, 9, 10, 11, 12, 13, 14, 3]);
    let (short_tgt, long_tgt) = (vec![2, 5, 3], vec![2, 6, 7, 8, 9, 3]);
    let (src, padding) = pad_sequences(&[&short_src[..], &long_src], Vocab::PAD);
    let (tgt, _) = pad_sequences(&[&short_tgt[..], &long_tgt], Vocab::PAD);
    let batched = model.forward_teacher(&src, &padding, &tgt, None); // (2, 6, V)
    let (src1, padding1) = pad_sequences(&[&short_src[..]], Vocab::PAD);
    let (tgt1, _) = pad_sequences(&[&short_tgt[..]], Vocab::PAD);
    let alone = model.forward_teacher(&src1, &padding1, &tgt1, None); // (1, 3, V)
    let got = batched.narrow(0, 0, 1).narrow(1, 0, 3).to_vec::<f32>().unwrap();
    let want = alone.to_vec::<f32>().unwrap();
    for (g, w) in got.iter().zip(&want) {
        assert!((g - w).abs() <= 1e-5 * (1.0 + w.abs()), "{name}: padded {g} alone {w}");
    }
    // positions select rows of the flattened (B·T) logits
    let positions = Tensor::from_vec(vec![1i32, 6, 11], [3], &Device::Cpu);
    let selected = model.forward_teacher(&src, &padding, &tgt, Some(&positions)).to_vec::<f32>().unwrap();
    let all = batched.to_vec::<f32>().unwrap();
    let v = batched.dim(2);
    for (r, p) in [1usize, 6, 11].iter().enumerate() {
        for c in 0..v {
            assert!((selected[r * v + c] - all[p * v + c]).abs() < 1e-5, "{name}: position {p}");
        }
    }
}

#[test]
fn padding_never_changes_a_shorter_sentence() {
    kiln::manual_seed(4);
    check_padding(&gru(&Device::Cpu), "gru-attn");
    check_padding(&transformer(&Device::Cpu, 32), "transformer");
}

#[test]
fn bad_input_gives_unk_an_error_or_a_translation_never_a_panic() {
    kiln::manual_seed(5);
    let vocab = Vocab::build(["ein", "mann", "ein"], 1, None);
    // unknown words are <unk>; an empty sentence is <bos> <eos>
    assert_eq!(
        encode_sentence(&vocab, &["ein", "fahrrad"]),
        [Vocab::BOS, vocab.id("ein"), Vocab::UNK, Vocab::EOS]
    );
    let empty: [&str; 0] = [];
    let empty = encode_sentence(&vocab, &empty);
    assert_eq!(empty, [Vocab::BOS, Vocab::EOS]);
    let gru = gru(&Device::Cpu);
    let out = translate(&gru, std::slice::from_ref(&empty), &Decoding::beam(3, 0.6, 5), 4).unwrap();
    assert!(out[0].tokens.len() <= 5);
    // a source longer than the position table is an error that says so; one that fits decodes
    // no further than the table either
    let transformer = transformer(&Device::Cpu, 6);
    let long: Vec<i32> = [2, 7, 8, 9, 10, 11, 3].to_vec();
    let err = translate(&transformer, &[empty.clone(), long], &Decoding::greedy(50), 4).unwrap_err();
    assert!(
        err.to_string().contains("source sentence 1 has 7 tokens") && err.to_string().contains("at most 6"),
        "{err}"
    );
    let fits = translate(&transformer, &[empty], &Decoding::greedy(50), 4).unwrap();
    assert!(fits[0].tokens.len() <= 6);
}

#[test]
fn attention_maps_are_distributions_over_the_source() {
    kiln::manual_seed(6);
    let source = [2, 7, 8, 9, 3];
    let output = [2, 5, 6];
    for (name, weights) in [
        ("gru-attn", gru(&Device::Cpu).cross_attention(&source, &output)),
        ("transformer", transformer(&Device::Cpu, 16).cross_attention(&source, &output)),
    ] {
        assert_eq!(weights.dims(), [3, 5], "{name}");
        for row in weights.to_vec::<f32>().unwrap().chunks(5) {
            assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-5, "{name}: {row:?}");
            assert!(row.iter().all(|&w| w >= 0.0), "{name}: {row:?}");
        }
    }
}

/// `on_gpu` given `on_cpu`'s weights decodes the same tokens with the same scores.
fn check_gpu_decoding<M: Seq2Seq>(on_cpu: &M, on_gpu: &M) {
    kiln::train::checkpoint::load_into(on_gpu, &nn::state_dict(on_cpu), "cpu model".as_ref()).unwrap();
    let decoding = Decoding::beam(3, 0.6, 10);
    let (cpu, gpu) = (
        translate(on_cpu, &sources(), &decoding, 8).unwrap(),
        translate(on_gpu, &sources(), &decoding, 8).unwrap(),
    );
    for (c, g) in cpu.iter().zip(&gpu) {
        assert_eq!(c.tokens, g.tokens);
        assert!((c.score - g.score).abs() < 1e-3, "{} vs {}", c.score, g.score);
    }
}

#[test]
fn the_models_translate_on_the_gpu_as_on_the_cpu() {
    let Some(gpu) = common::gpu("translation on the GPU") else {
        return;
    };
    kiln::manual_seed(7);
    let on_cpu = transformer(&Device::Cpu, 32);
    sharpen(&on_cpu, "generator");
    check_gpu_decoding(&on_cpu, &transformer(&gpu, 32));
    let on_cpu = gru(&Device::Cpu);
    sharpen(&on_cpu, "decoder.fc_out");
    check_gpu_decoding(&on_cpu, &gru(&gpu));
}

#[test]
fn multi30k_loads_with_its_vocabularies() {
    let Some(data) = common::data_dir("multi30k_loads_with_its_vocabularies") else {
        return;
    };
    let data = Multi30k::load(data.join("multi30k")).unwrap();
    assert_eq!((data.train.len(), data.val.len(), data.test.len()), (29_000, 1_014, 1_000));
    assert_eq!(data.train.sources[0][..3], ["zwei", "junge", "weiße"]);
    // words seen twice in training: several thousand per language, the specials first
    for vocab in [&data.source_vocab, &data.target_vocab] {
        assert!((5_000..10_000).contains(&vocab.len()), "{}", vocab.len());
        assert_eq!(vocab.tokens()[..4], Vocab::SPECIALS);
    }
    let pairs = data.dataset(&data.val);
    let first = &pairs.inputs()[0];
    assert_eq!((first[0], *first.last().unwrap()), (Vocab::BOS, Vocab::EOS));
    // a folder without the files names what is missing
    let err = Multi30k::load(std::env::temp_dir()).unwrap_err();
    assert!(err.to_string().contains("train.de"), "{err}");
}

#[test]
fn a_trained_checkpoint_of_either_model_has_the_tutorials_names() {
    let gru = nn::state_dict(&gru(&Device::Cpu)).into_iter().map(|(n, _)| n).collect::<Vec<_>>();
    for name in [
        "encoder.embedding.weight",
        "encoder.rnn.weight_ih_l0_reverse",
        "encoder.fc.bias",
        "decoder.attention.attn.weight",
        "decoder.attention.v.weight",
        "decoder.embedding.weight",
        "decoder.rnn.bias_hh_l0",
        "decoder.fc_out.weight",
    ] {
        assert!(gru.iter().any(|n| n == name), "{name} in {gru:?}");
    }
    let learned =
        nn::state_dict(&transformer(&Device::Cpu, 8)).into_iter().map(|(n, _)| n).collect::<Vec<_>>();
    for name in [
        "src_positions.weight",
        "transformer.decoder.layers.1.multihead_attn.in_proj_weight",
        "generator.bias",
    ] {
        assert!(learned.iter().any(|n| n == name), "{name}");
    }
    let config = TransformerTranslatorConfig {
        positions: Positions::Sinusoidal,
        d_model: 8,
        nhead: 2,
        ..TransformerTranslatorConfig::tutorial(5, 6)
    };
    let sinusoidal = nn::state_dict(&TransformerTranslator::new(config, &Device::Cpu));
    assert!(sinusoidal.iter().all(|(n, _)| !n.contains("positions")));
    // decode works on a padded batch directly, too
    let (src, padding) = pad_sequences(&[&[2, 4, 3][..]], Vocab::PAD);
    assert_eq!(decode(&Known, &src, &padding, &Decoding::greedy(4)).unwrap()[0].tokens, [A, A]);
}
