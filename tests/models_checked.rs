//! Training steps of the quickstart model and of every reference model in `kiln::models`, on the
//! GPU under `KILN_CHECK=1`: every node and every fused optimizer update is recomputed on the CPU
//! and must agree within its tolerance. A model added to `src/models/` gets a row here (the
//! translation models, whose forward reads two sequences, a loss of their own; VGG, whose layers
//! ResNet's rows already cover, none: its 9M parameters cost CI a minute under the check).
//!
//! The test re-runs itself in a child process with the variable set before any device exists.

mod common;

use kiln::data::Padding;
use kiln::data::sequence::pad_sequences;
use kiln::data::vocab::Vocab;
use kiln::models::gpt::{Gpt, GptConfig};
use kiln::models::seq2seq::Seq2Seq;
use kiln::models::{
    CellType, CharRnn, CharRnnConfig, GruAttention, GruAttentionConfig, Pooling, RnnClassifier,
    RnnClassifierConfig, TransformerTranslator, TransformerTranslatorConfig,
};
use kiln::nn::{self, Linear, Module, ReLU, Sequential};
use kiln::optim::{Optimizer, Rule};
use kiln::rng::RandomKey;
use kiln::{DType, Device, Tensor};

/// A model to train, its input batch and its loss.
struct Row {
    name: &'static str,
    model: Box<dyn Module>,
    input: Tensor,
    /// (model output, device) → scalar loss
    loss: fn(&Tensor, &Device) -> Tensor,
}

/// Three training steps of a translation model on [`translation_loss`].
fn train_translator<M: Seq2Seq>(name: &str, model: &M, device: &Device) {
    let mut opt = Optimizer::new(nn::parameters(model), Rule::adam(), 1e-3);
    for step in 0..3 {
        let loss = translation_loss(model, device);
        opt.step(&loss.backward()).unwrap_or_else(|e| panic!("{name} step {step}: {e}"));
        let value = loss.item::<f32>().unwrap();
        assert!(value.is_finite(), "{name} step {step}: loss {value}");
    }
}

/// A translation model's teacher-forced loss on a small padded batch of sentence pairs.
fn translation_loss<M: Seq2Seq>(model: &M, device: &Device) -> Tensor {
    let (src, padding) = pad_sequences(&[&[2, 5, 6, 7, 3][..], &[2, 8, 3], &[2, 9, 10, 3]], Vocab::PAD);
    let (tgt, _) = pad_sequences(&[&[2, 4, 5][..], &[2, 6, 7, 8], &[2, 9]], Vocab::PAD);
    let on = |t: &Tensor| t.to(device);
    let padding = Padding { lengths: padding.lengths, mask: on(&padding.mask) };
    // every position but the padding: flat indices into the (3, 4) targets
    let positions = Tensor::from_vec(vec![0i32, 1, 2, 4, 5, 6, 7, 8, 9], [9], device);
    let logits = model.forward_teacher(&on(&src), &padding, &on(&tgt), Some(&positions));
    logits.cross_entropy(&labels(9, logits.dim(1), device))
}

/// Class labels 0..classes for the batch of `n`, drawn with a fixed key.
fn labels(n: usize, classes: usize, device: &Device) -> Tensor {
    let bits =
        Tensor::random_bits([n], RandomKey { seed: 9, stream: 0 }, &Device::Cpu).to_vec::<u32>().unwrap();
    let ids: Vec<i32> = bits.iter().map(|b| (b % classes as u32) as i32).collect();
    Tensor::from_vec(ids, [n], device)
}

fn rows(device: &Device) -> Vec<Row> {
    let normal =
        |shape: &[usize], stream| Tensor::normal(shape, 0.0, 1.0, RandomKey { seed: 4, stream }, device);
    vec![
        Row {
            name: "quickstart MLP",
            model: Box::new(
                Sequential::new()
                    .add(Linear::new(2, 64, device))
                    .add(ReLU)
                    .add(Linear::new(64, 64, device))
                    .add(ReLU)
                    .add(Linear::new(64, 3, device)),
            ),
            input: normal(&[100, 2], 0),
            loss: |out, device| out.cross_entropy(&labels(100, 3, device)),
        },
        Row {
            name: "models::lenet5",
            model: Box::new(kiln::models::lenet5(device)),
            input: normal(&[16, 1, 28, 28], 1),
            loss: |out, device| out.cross_entropy(&labels(16, 10, device)),
        },
        Row {
            name: "models::resnet20 (batch norm, option-A shortcuts)",
            model: Box::new(kiln::models::resnet20(10, device)),
            input: normal(&[4, 3, 32, 32], 5),
            loss: |out, device| out.cross_entropy(&labels(4, 10, device)),
        },
        Row {
            name: "models::resnet18 (projection shortcuts, max-pooled stem)",
            model: Box::new(kiln::models::resnet18(10, device)),
            input: normal(&[2, 3, 32, 32], 6),
            loss: |out, device| out.cross_entropy(&labels(2, 10, device)),
        },
        Row {
            name: "models::mobilenet_v2_cifar (depthwise convolutions, ReLU6, dropout)",
            model: Box::new(kiln::models::mobilenet_v2_cifar(10, device)),
            input: normal(&[2, 3, 32, 32], 7),
            loss: |out, device| out.cross_entropy(&labels(2, 10, device)),
        },
        Row {
            name: "models::gpt (dropout in the attention kernel, tied head)",
            model: Box::new(Gpt::new(
                GptConfig {
                    vocab_size: 11,
                    block_size: 8,
                    n_layer: 2,
                    n_head: 2,
                    n_embd: 16,
                    dropout: 0.1,
                    bias: true,
                },
                device,
            )),
            input: Tensor::from_vec((0..16).map(|i| i * 7 % 11).collect::<Vec<i32>>(), [2, 8], device),
            loss: |out, device| out.reshape([16, 11]).cross_entropy(&labels(16, 11, device)),
        },
        Row {
            name: "models::RnnClassifier (bidirectional GRU, 2 layers, dropout, mean pooling)",
            model: Box::new(RnnClassifier::new(
                RnnClassifierConfig {
                    vocab_size: 13,
                    embedding: 8,
                    hidden: 12,
                    classes: 5,
                    cell: CellType::Gru,
                    layers: 2,
                    bidirectional: true,
                    dropout: 0.2,
                    pooling: Pooling::Mean,
                },
                device,
            )),
            input: Tensor::from_vec((0..21).map(|i| 1 + i * 5 % 12).collect::<Vec<i32>>(), [3, 7], device),
            loss: |out, device| out.cross_entropy(&labels(3, 5, device)),
        },
        Row {
            name: "models::CharRnn (2-layer LSTM)",
            model: Box::new(CharRnn::new(
                CharRnnConfig { vocab_size: 11, embedding: 8, hidden: 16, layers: 2, dropout: 0.0 },
                device,
            )),
            input: Tensor::from_vec((0..18).map(|i| i * 7 % 11).collect::<Vec<i32>>(), [2, 9], device),
            loss: |out, device| out.reshape([18, 11]).cross_entropy(&labels(18, 11, device)),
        },
    ]
}

#[test]
fn every_reference_model_trains_on_the_gpu_under_kiln_check() {
    const TEST: &str = "every_reference_model_trains_on_the_gpu_under_kiln_check";
    // run this test again in a child process, with the variable set before any device exists
    if common::ran_in_child(TEST, "KILN_CHECK", "1") {
        return;
    }
    let Some(gpu) = common::gpu("reference models under KILN_CHECK=1") else {
        return;
    };
    kiln::manual_seed(2);
    let gru = GruAttention::new(
        GruAttentionConfig {
            embedding: 8,
            encoder_hidden: 12,
            decoder_hidden: 10,
            dropout: 0.3,
            ..GruAttentionConfig::tutorial(13, 11)
        },
        &gpu,
    );
    let transformer = TransformerTranslator::new(
        TransformerTranslatorConfig {
            d_model: 16,
            nhead: 2,
            encoder_layers: 2,
            decoder_layers: 2,
            dim_feedforward: 24,
            ..TransformerTranslatorConfig::tutorial(13, 11)
        },
        &gpu,
    );
    train_translator("models::GruAttention (bidirectional encoder, masked attention)", &gru, &gpu);
    train_translator("models::TransformerTranslator (padding masks, dropout)", &transformer, &gpu);
    for row in rows(&gpu) {
        let mut opt = Optimizer::new(nn::parameters(row.model.as_ref()), Rule::adamw(), 1e-3);
        for step in 0..3 {
            let loss = (row.loss)(&row.model.forward(&row.input), &gpu);
            opt.step(&loss.backward()).unwrap_or_else(|e| panic!("{} step {step}: {e}", row.name));
            let value = loss.cast(DType::F32).item::<f32>().unwrap();
            assert!(value.is_finite(), "{} step {step}: loss {value}", row.name);
        }
    }
}
