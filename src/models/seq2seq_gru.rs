//! A recurrent encoder–decoder with additive attention, "Neural Machine Translation by Jointly
//! Learning to Align and Translate" (Bahdanau et al. 2015), as the PyTorch seq2seq tutorials
//! (bentrevett/pytorch-seq2seq, "packed padded sequences, masking") build it:
//!
//! ```text
//! encoder  src (B, S) ──Embedding, dropout──▶ (B, S, E)
//!          ──bidirectional GRU over each row's own length──▶ outputs (B, S, 2He), h_n (2, B, He)
//!          hidden₀ = tanh(fc([h_n forward; h_n backward]))                          (B, Hd)
//! decoder  for each target step t, from the previous token y_{t−1}:
//!          e = dropout(Embedding(y_{t−1}))                                           (B, E)
//!          a = softmax_s(v · tanh(attn([hidden; outputs_s])))  masked at padding    (B, S)
//!          w = Σ_s a_s · outputs_s                                                  (B, 2He)
//!          hidden = GRU cell([e; w], hidden)                                        (B, Hd)
//!          logits = fc_out([hidden; w; e])                                          (B, V)
//! ```
//!
//! Training feeds the reference's previous token (teacher forcing). Two rewrites keep the
//! arithmetic and save work: `attn`'s source half `W_s · outputs_s + b` is computed once per
//! source rather than once per step, and the embedding's share of the GRU input projection and
//! `fc_out` run as one matmul over all steps. State-dict names follow the tutorial
//! (`encoder.embedding.weight`, `encoder.rnn.weight_ih_l0_reverse`, `encoder.fc.weight`,
//! `decoder.attention.attn.weight`, `decoder.attention.v.weight`, `decoder.rnn.weight_hh_l0`,
//! `decoder.fc_out.bias`, …), so a checkpoint loads into its `Seq2Seq` with `strict=True`.

use super::seq2seq::{Seq2Seq, evaluating, project_positions};
use crate::data::Padding;
use crate::data::sequence::pad_sequences;
use crate::data::vocab::Vocab;
use crate::nn::projection::affine;
use crate::nn::{self, Dropout, Embedding, GRU, Linear, Module, RnnOptions, Visitor, init};
use crate::ops::recurrent::{CellKind, Step};
use crate::{DType, Device, Shape, Tensor, no_grad};

/// The sizes of a [`GruAttention`] model.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GruAttentionConfig {
    /// Source vocabulary size.
    pub source_vocab: usize,
    /// Target vocabulary size V.
    pub target_vocab: usize,
    /// Embedding width E of both sides.
    pub embedding: usize,
    /// Hidden width He of each encoder direction.
    pub encoder_hidden: usize,
    /// Hidden width Hd of the decoder.
    pub decoder_hidden: usize,
    /// Dropout on the embeddings, in training.
    pub dropout: f32,
}

impl GruAttentionConfig {
    /// The tutorial's sizes (E 256, He = Hd = 512, dropout 0.5) for the given vocabularies.
    pub fn tutorial(source_vocab: usize, target_vocab: usize) -> GruAttentionConfig {
        GruAttentionConfig {
            source_vocab,
            target_vocab,
            embedding: 256,
            encoder_hidden: 512,
            decoder_hidden: 512,
            dropout: 0.5,
        }
    }
}

/// The GRU encoder–decoder with Bahdanau attention; see the module docs.
///
/// ```
/// use kiln::data::sequence::pad_sequences;
/// use kiln::models::{GruAttention, GruAttentionConfig};
/// use kiln::models::seq2seq::{Decoding, Seq2Seq, decode};
/// use kiln::{Device, Tensor};
/// let config = GruAttentionConfig { embedding: 8, encoder_hidden: 16, decoder_hidden: 12, ..GruAttentionConfig::tutorial(20, 30) };
/// let model = GruAttention::new(config, &Device::Cpu);
/// let (src, padding) = pad_sequences(&[&[2, 5, 6, 3][..], &[2, 7, 3]], 0);
/// let (tgt, _) = pad_sequences(&[&[2, 9, 3][..], &[2, 3]], 0);
/// assert_eq!(model.forward_teacher(&src, &padding, &tgt, None).dims(), &[2, 3, 30]); // (B, T, V)
/// let hypotheses = decode(&model, &src, &padding, &Decoding::beam(3, 0.6, 10))?;
/// assert_eq!(hypotheses.len(), 2);
/// # Ok::<(), kiln::Error>(())
/// ```
pub struct GruAttention {
    config: GruAttentionConfig,
    encoder_embedding: Embedding,
    encoder_rnn: GRU,
    encoder_fc: Linear,
    attn: Linear,
    attn_v: Linear,
    decoder_embedding: Embedding,
    decoder_rnn: GRU,
    fc_out: Linear,
    dropout: Dropout,
}

/// Decoding state of a [`GruAttention`]: the encoded sources and the decoder's hidden state,
/// one row per hypothesis.
#[derive(Clone)]
pub struct GruAttentionState {
    /// The encoder's outputs (N, S, 2He).
    outputs: Tensor,
    /// Their share of the attention energies, `W_s · outputs + b` (N, S, Hd).
    keys: Tensor,
    /// 0 at source tokens and −10¹⁰ at padding, added to the attention scores (N, S).
    mask: Tensor,
    /// The decoder's hidden state (N, Hd).
    hidden: Tensor,
    /// `attn`'s hidden-state half (Hd, Hd) and the GRU input projection's context part
    /// (3Hd, 2He): sliced once per source, not once per step.
    query_weight: Tensor,
    context_weight: Tensor,
    /// The attention weights of the last step (N, S).
    pub attention: Option<Tensor>,
}

impl GruAttention {
    /// A model initialized as the tutorial initializes it: every weight N(0, 0.01), every bias 0.
    #[track_caller]
    pub fn new(config: GruAttentionConfig, device: &Device) -> GruAttention {
        let (e, he, hd) = (config.embedding, config.encoder_hidden, config.decoder_hidden);
        let one_way = RnnOptions::default().batch_first(true);
        let model = GruAttention {
            config,
            encoder_embedding: Embedding::new(config.source_vocab, e, device),
            encoder_rnn: GRU::new(e, he, one_way.bidirectional(true), device),
            encoder_fc: Linear::new(2 * he, hd, device),
            attn: Linear::new(hd + 2 * he, hd, device),
            attn_v: Linear::no_bias(hd, 1, device),
            decoder_embedding: Embedding::new(config.target_vocab, e, device),
            decoder_rnn: GRU::new(e + 2 * he, hd, one_way, device),
            fc_out: Linear::new(hd + 2 * he + e, config.target_vocab, device),
            dropout: Dropout::new(config.dropout),
        };
        no_grad(|| {
            for (name, p) in nn::parameters(&model) {
                let fresh = match name.contains("weight") {
                    true => init::normal(p.shape().clone(), 0.01, device),
                    false => Tensor::zeros(p.shape().clone(), device),
                };
                p.assign(&fresh).expect("a fresh tensor of the parameter's shape realizes");
            }
        });
        model
    }

    /// Its sizes.
    pub fn config(&self) -> GruAttentionConfig {
        self.config
    }

    /// The encoder: the outputs (B, S, 2He), the attention keys and mask, and the decoder's first
    /// hidden state.
    #[track_caller]
    fn encode_source(&self, src: &Tensor, padding: &Padding) -> GruAttentionState {
        self.check_ids("source", src);
        let lengths = padding.lengths.to(&Device::Cpu);
        let x = self.dropout.forward(&self.encoder_embedding.forward(src)); // (B, S, E)
        let (outputs, h_n) = self.encoder_rnn.forward_with(&x, None, Some(&lengths)); // (B, S, 2He), (2, B, He)
        let last = Tensor::concat(&[h_n.select(0, 0), h_n.select(0, 1)], -1); // (B, 2He)
        let hidden = self.encoder_fc.forward(&last).tanh(); // (B, Hd)
        let hd = self.config.decoder_hidden;
        // attn([hidden; outputs]) = W_h·hidden + (W_s·outputs + b): the second term once here
        let source_weight = self.attn.weight.narrow(1, hd, 2 * self.config.encoder_hidden);
        let keys = affine(&outputs, &source_weight, self.attn.bias.as_ref()); // (B, S, Hd)
        let device = outputs.device();
        let scalar = |v: f64| Tensor::full(Shape::scalar(), v, DType::F32, &device);
        let mask = padding.mask.to(&device).where_(&scalar(0.0), &scalar(-1e10));
        let w_ih = &self.decoder_rnn.weights(0, false).weight_ih;
        GruAttentionState {
            query_weight: self.attn.weight.narrow(1, 0, hd),
            context_weight: w_ih.narrow(1, self.config.embedding, outputs.dim(2)),
            outputs,
            keys,
            mask,
            hidden,
            attention: None,
        }
    }

    /// The embeddings' share of the decoder GRU's input projection, with its input bias:
    /// e·W_eᵀ + b (…, 3Hd).
    fn embedded_gates(&self, embedded: &Tensor) -> Tensor {
        let w = self.decoder_rnn.weights(0, false);
        let e_weight = w.weight_ih.narrow(1, 0, self.config.embedding);
        affine(embedded, &e_weight, w.input_bias(CellKind::Gru).as_ref())
    }

    /// One decoder step from the embedded gates (N, 3Hd) of the previous tokens: attends,
    /// advances the hidden state and returns the attention context (N, 2He).
    fn decoder_step(&self, state: &mut GruAttentionState, embedded_gates: &Tensor) -> Tensor {
        // energies tanh(W_h·hidden + keys) (N, S, Hd) → scores (N, S) → weights over the source
        let query = state.hidden.matmul(&state.query_weight.t()).unsqueeze(1);
        let energy = (&state.keys + query).tanh();
        let scores = energy.matmul(&self.attn_v.weight.t()).squeeze(-1) + &state.mask;
        let attention = scores.softmax(-1);
        let context = attention.unsqueeze(1).matmul(&state.outputs).squeeze(1); // (N, 2He)
        // the GRU cell on [e; context]: the context's share of the input projection added here
        let w = self.decoder_rnn.weights(0, false);
        let gx = embedded_gates + context.matmul(&state.context_weight.t());
        let gh = state.hidden.matmul(&w.weight_hh.t());
        let rows = state.hidden.dim(0);
        let hidden_bias = w.hidden_bias(CellKind::Gru, 1, rows);
        let gx = gx.unsqueeze(0); // (1, N, 3Hd): the cell op reads step 0 of a sequence
        let step = Step { hidden_bias: hidden_bias.as_ref(), ..Step::new(&gx, 0, &gh, &state.hidden) };
        state.hidden = CellKind::Gru.step(step);
        state.attention = Some(attention);
        context
    }

    /// Panics unless `ids` are (B, L) i32 token ids.
    #[track_caller]
    fn check_ids(&self, side: &str, ids: &Tensor) {
        if ids.rank() != 2 || ids.dtype() != DType::I32 {
            panic!("GruAttention: {side} ids {} {} must be (batch, length) i32", ids.shape(), ids.dtype());
        }
    }
}

impl Seq2Seq for GruAttention {
    type State = GruAttentionState;

    fn forward_teacher(
        &self,
        src: &Tensor,
        padding: &Padding,
        tgt: &Tensor,
        positions: Option<&Tensor>,
    ) -> Tensor {
        self.check_ids("target", tgt);
        let mut state = self.encode_source(src, padding);
        let embedded = self.dropout.forward(&self.decoder_embedding.forward(tgt)); // (B, T, E)
        let embedded_gates = self.embedded_gates(&embedded); // (B, T, 3Hd)
        let (mut hiddens, mut contexts) = (Vec::new(), Vec::new());
        for t in 0..tgt.dim(1) {
            let context = self.decoder_step(&mut state, &embedded_gates.select(1, t));
            hiddens.push(state.hidden.clone());
            contexts.push(context);
        }
        // (B, T, Hd), (B, T, 2He), (B, T, E) → (B, T, V), one matmul for every step
        let features =
            Tensor::concat(&[Tensor::stack(&hiddens, 1), Tensor::stack(&contexts, 1), embedded], -1);
        project_positions(&self.fc_out, &features, positions)
    }

    fn cross_attention(&self, source: &[i32], output: &[i32]) -> Tensor {
        let device = self.device();
        let (src, padding) = pad_sequences(&[source], Vocab::PAD);
        evaluating(self, || {
            let mut state = self.encode(&src.to(&device), &padding);
            let mut rows = Vec::new();
            for &token in output {
                self.step(&mut state, &Tensor::from_vec(vec![token], [1], &device));
                rows.push(state.attention.clone().expect("a step attends"));
            }
            Tensor::concat(&rows, 0)
        })
    }

    fn encode(&self, src: &Tensor, padding: &Padding) -> GruAttentionState {
        self.encode_source(src, padding)
    }

    fn step(&self, state: &mut GruAttentionState, tokens: &Tensor) -> Tensor {
        let embedded = self.decoder_embedding.forward(tokens); // (N, E)
        let context = self.decoder_step(state, &self.embedded_gates(&embedded));
        let features = Tensor::concat(&[state.hidden.clone(), context, embedded], -1);
        self.fc_out.forward(&features).log_softmax(-1)
    }

    fn reorder(&self, state: &mut GruAttentionState, index: &Tensor) {
        for t in [&mut state.outputs, &mut state.keys, &mut state.mask, &mut state.hidden] {
            *t = t.index_select(0, index);
        }
        state.attention = None;
    }

    fn device(&self) -> Device {
        self.fc_out.weight.device()
    }
}

impl Module for GruAttention {
    /// Panics: the model reads a source and a target; call [`GruAttention::forward_teacher`].
    #[track_caller]
    fn forward(&self, _: &Tensor) -> Tensor {
        panic!("GruAttention: forward needs a source and a target; call forward_teacher(src, padding, tgt)")
    }

    fn visit(&self, v: &mut dyn Visitor) {
        v.child("encoder.embedding", &self.encoder_embedding);
        v.child("encoder.rnn", &self.encoder_rnn);
        v.child("encoder.fc", &self.encoder_fc);
        v.child("decoder.attention.attn", &self.attn);
        v.child("decoder.attention.v", &self.attn_v);
        v.child("decoder.embedding", &self.decoder_embedding);
        v.child("decoder.rnn", &self.decoder_rnn);
        v.child("decoder.fc_out", &self.fc_out);
        v.child("dropout", &self.dropout);
    }
}
