//! The Transformer of "Attention Is All You Need" (Vaswani et al. 2017) for translation, as the
//! PyTorch seq2seq tutorials train it on Multi30k (3 + 3 layers, d_model 256, 8 heads,
//! feed-forward 512, dropout 0.1), on [`nn::Transformer`](crate::nn::Transformer):
//!
//! ```text
//! src (B, S) ──Embedding·√d + positions, dropout──▶ (B, S, d) ──encoder, padding masked──▶ memory
//! tgt (B, T) ──Embedding·√d + positions, dropout──▶ (B, T, d)
//!            ──decoder: causal self-attention, cross-attention over memory (padding masked)──▶ (B, T, d)
//!            ──generator (Linear)──▶ logits (B, T, V)
//! ```
//!
//! Every matrix starts Xavier-uniform, as the tutorial initializes it. Positions are learned tables of `max_len` rows (the tutorial's) or sinusoidal encodings.
//! Decoding runs the decoder's KV cache: the memory's keys and values are projected once per
//! source, and each step reads one token. State-dict names: `src_embedding.weight`,
//! `tgt_embedding.weight`, `src_positions.weight`, `tgt_positions.weight` (learned only),
//! `transformer.encoder.layers.0.self_attn.in_proj_weight`, …, `generator.weight`, as the
//! PyTorch peer (`benches/peers/torch_translate.py`) names them.

use super::seq2seq::{Seq2Seq, evaluating, project_positions};
use crate::data::Padding;
use crate::data::sequence::pad_sequences;
use crate::data::vocab::Vocab;
use crate::nn::{
    self, DecoderCache, DecoderMasks, Dropout, Embedding, EncoderMasks, LearnedPositionalEmbedding, Linear,
    Module, SinusoidalPositionalEncoding, Transformer, TransformerConfig, Visitor, init,
};
use crate::{DType, Device, Shape, Tensor, no_grad};

/// How a [`TransformerTranslator`] encodes positions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Positions {
    /// A learned table per side (the tutorial's).
    Learned,
    /// The paper's fixed sine and cosine encodings.
    Sinusoidal,
}

/// The sizes of a [`TransformerTranslator`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TransformerTranslatorConfig {
    /// Source vocabulary size.
    pub source_vocab: usize,
    /// Target vocabulary size V.
    pub target_vocab: usize,
    /// Features per position d.
    pub d_model: usize,
    /// Attention heads.
    pub nhead: usize,
    /// Encoder layers.
    pub encoder_layers: usize,
    /// Decoder layers.
    pub decoder_layers: usize,
    /// Hidden features of the feed-forward blocks.
    pub dim_feedforward: usize,
    /// Dropout on the embeddings and inside the layers, in training.
    pub dropout: f32,
    /// The longest sentence (in tokens, `<bos>` and `<eos>` included) either side can read.
    pub max_len: usize,
    /// Learned or sinusoidal positions.
    pub positions: Positions,
}

impl TransformerTranslatorConfig {
    /// The tutorial's sizes for the given vocabularies: 3 + 3 layers, d 256, 8 heads,
    /// feed-forward 512, dropout 0.1, learned positions for 100 tokens.
    pub fn tutorial(source_vocab: usize, target_vocab: usize) -> TransformerTranslatorConfig {
        TransformerTranslatorConfig {
            source_vocab,
            target_vocab,
            d_model: 256,
            nhead: 8,
            encoder_layers: 3,
            decoder_layers: 3,
            dim_feedforward: 512,
            dropout: 0.1,
            max_len: 100,
            positions: Positions::Learned,
        }
    }
}

/// One side's position encoding.
enum PositionTable {
    Learned(LearnedPositionalEmbedding),
    Sinusoidal(SinusoidalPositionalEncoding),
}

impl PositionTable {
    fn new(config: &TransformerTranslatorConfig, device: &Device) -> PositionTable {
        match config.positions {
            Positions::Learned => PositionTable::Learned(LearnedPositionalEmbedding::new(
                config.max_len,
                config.d_model,
                device,
            )),
            // its own dropout off: the model's dropout follows the sum
            Positions::Sinusoidal => PositionTable::Sinusoidal(SinusoidalPositionalEncoding::new(
                config.d_model,
                config.max_len,
                0.0,
                device,
            )),
        }
    }

    /// `x` (N, L, d) plus the encodings of positions `offset..offset + L`.
    #[track_caller]
    fn add(&self, x: &Tensor, offset: usize) -> Tensor {
        match self {
            PositionTable::Learned(table) => table.forward_at(x, offset),
            PositionTable::Sinusoidal(table) => table.forward_at(x, offset),
        }
    }
}

/// The Transformer translation model; see the module docs.
///
/// ```
/// use kiln::data::sequence::pad_sequences;
/// use kiln::models::seq2seq::{Decoding, Seq2Seq, decode};
/// use kiln::models::{TransformerTranslator, TransformerTranslatorConfig};
/// let config = TransformerTranslatorConfig {
///     d_model: 16, nhead: 2, encoder_layers: 1, decoder_layers: 1, dim_feedforward: 32,
///     ..TransformerTranslatorConfig::tutorial(20, 30)
/// };
/// let model = TransformerTranslator::new(config, &kiln::Device::Cpu);
/// let (src, padding) = pad_sequences(&[&[2, 5, 6, 3][..], &[2, 7, 3]], 0);
/// let (tgt, _) = pad_sequences(&[&[2, 9, 3][..], &[2, 3]], 0);
/// assert_eq!(model.forward_teacher(&src, &padding, &tgt, None).dims(), &[2, 3, 30]); // (B, T, V)
/// assert_eq!(decode(&model, &src, &padding, &Decoding::beam(3, 0.6, 10))?.len(), 2);
/// # Ok::<(), kiln::Error>(())
/// ```
pub struct TransformerTranslator {
    config: TransformerTranslatorConfig,
    src_embedding: Embedding,
    tgt_embedding: Embedding,
    src_positions: PositionTable,
    tgt_positions: PositionTable,
    dropout: Dropout,
    transformer: Transformer,
    generator: Linear,
}

/// Decoding state of a [`TransformerTranslator`]: the decoder's caches, one row per hypothesis.
#[derive(Clone)]
pub struct TransformerTranslatorState {
    cache: DecoderCache,
}

impl TransformerTranslator {
    /// A model with PyTorch's initialization of each part (`nn.Transformer` Xavier-uniform).
    #[track_caller]
    pub fn new(config: TransformerTranslatorConfig, device: &Device) -> TransformerTranslator {
        let layers = TransformerConfig {
            dim_feedforward: config.dim_feedforward,
            dropout: config.dropout,
            batch_first: true,
            ..TransformerConfig::new(config.d_model, config.nhead)
        };
        let model = TransformerTranslator {
            config,
            src_embedding: Embedding::new(config.source_vocab, config.d_model, device),
            tgt_embedding: Embedding::new(config.target_vocab, config.d_model, device),
            src_positions: PositionTable::new(&config, device),
            tgt_positions: PositionTable::new(&config, device),
            dropout: Dropout::new(config.dropout),
            transformer: Transformer::new(layers, config.encoder_layers, config.decoder_layers, device),
            generator: Linear::new(config.d_model, config.target_vocab, device),
        };
        // the tutorial's initialization: every matrix (embeddings and tables too) Xavier-uniform
        no_grad(|| {
            for (_, p) in nn::parameters(&model).into_iter().filter(|(_, p)| p.rank() > 1) {
                let fresh = init::xavier_uniform(p.shape().clone(), p.dim(1), p.dim(0), device);
                p.assign(&fresh).expect("a fresh tensor of the parameter's shape realizes");
            }
        });
        model
    }

    /// Its sizes.
    pub fn config(&self) -> TransformerTranslatorConfig {
        self.config
    }

    /// Token ids (N, L) at positions `offset..` → dropout(Embedding·√d + positions) (N, L, d).
    #[track_caller]
    fn embed(&self, embedding: &Embedding, positions: &PositionTable, ids: &Tensor, offset: usize) -> Tensor {
        if ids.rank() != 2 || ids.dtype() != DType::I32 {
            panic!("TransformerTranslator: ids {} {} must be (batch, length) i32", ids.shape(), ids.dtype());
        }
        if offset + ids.dim(1) > self.config.max_len {
            panic!(
                "TransformerTranslator: {} tokens from position {offset} pass the position table of {}",
                ids.dim(1),
                self.config.max_len
            );
        }
        let x = embedding.forward(ids) * (self.config.d_model as f64).sqrt();
        self.dropout.forward(&positions.add(&x, offset))
    }

    /// The encoder's memory (N, S, d) of `src` padded as `padding` says, and the padding as an
    /// additive key mask (N, S): 0 at tokens, −∞ at padding.
    #[track_caller]
    fn encode_source(&self, src: &Tensor, padding: &Padding) -> (Tensor, Tensor) {
        let x = self.embed(&self.src_embedding, &self.src_positions, src, 0);
        let device = x.device();
        let scalar = |v: f64| Tensor::full(Shape::scalar(), v, DType::F32, &device);
        let key_padding = padding.mask.to(&device).where_(&scalar(0.0), &scalar(f64::NEG_INFINITY));
        let masks = EncoderMasks { key_padding_mask: Some(key_padding.clone()), ..Default::default() };
        (self.transformer.encoder.forward_with(&x, &masks), key_padding)
    }
}

impl Seq2Seq for TransformerTranslator {
    type State = TransformerTranslatorState;

    fn forward_teacher(
        &self,
        src: &Tensor,
        padding: &Padding,
        tgt: &Tensor,
        positions: Option<&Tensor>,
    ) -> Tensor {
        let (memory, key_padding) = self.encode_source(src, padding);
        let y = self.embed(&self.tgt_embedding, &self.tgt_positions, tgt, 0);
        let masks = DecoderMasks {
            tgt_is_causal: true,
            memory_key_padding_mask: Some(key_padding),
            ..Default::default()
        };
        project_positions(
            &self.generator,
            &self.transformer.decoder.forward_with(&y, &memory, &masks),
            positions,
        )
    }

    fn cross_attention(&self, source: &[i32], output: &[i32]) -> Tensor {
        let device = self.device();
        let (src, padding) = pad_sequences(&[source], Vocab::PAD);
        evaluating(self, || {
            let (memory, _) = self.encode_source(&src.to(&device), &padding);
            let tgt = Tensor::from_vec(output.to_vec(), [1, output.len()], &device);
            let y = self.embed(&self.tgt_embedding, &self.tgt_positions, &tgt, 0);
            let masks = DecoderMasks { tgt_is_causal: true, ..Default::default() };
            let (_, weights) = self.transformer.decoder.forward_with_weights(&y, &memory, &masks);
            weights.last().expect("a decoder has layers").squeeze(0)
        })
    }

    fn encode(&self, src: &Tensor, padding: &Padding) -> TransformerTranslatorState {
        let (memory, key_padding) = self.encode_source(src, padding);
        TransformerTranslatorState { cache: self.transformer.decoder.start(&memory, Some(&key_padding)) }
    }

    fn step(&self, state: &mut TransformerTranslatorState, tokens: &Tensor) -> Tensor {
        // (N) → (N, 1, d) at the next position → (N, 1, V) → (N, V)
        let y = self.embed(&self.tgt_embedding, &self.tgt_positions, &tokens.unsqueeze(1), state.cache.len());
        let out = self.transformer.decoder.step(&y, &mut state.cache);
        self.generator.forward(&out).squeeze(1).log_softmax(-1)
    }

    fn reorder(&self, state: &mut TransformerTranslatorState, index: &Tensor) {
        state.cache.reorder(index);
    }

    fn device(&self) -> Device {
        self.generator.weight.device()
    }

    fn max_len(&self) -> Option<usize> {
        Some(self.config.max_len)
    }
}

impl Module for TransformerTranslator {
    /// Panics: the model reads a source and a target; call
    /// [`TransformerTranslator::forward_teacher`].
    #[track_caller]
    fn forward(&self, _: &Tensor) -> Tensor {
        panic!(
            "TransformerTranslator: forward needs a source and a target; call forward_teacher(src, padding, tgt)"
        )
    }

    fn visit(&self, v: &mut dyn Visitor) {
        v.child("src_embedding", &self.src_embedding);
        v.child("tgt_embedding", &self.tgt_embedding);
        if let (PositionTable::Learned(src), PositionTable::Learned(tgt)) =
            (&self.src_positions, &self.tgt_positions)
        {
            v.child("src_positions", src);
            v.child("tgt_positions", tgt);
        }
        v.child("dropout", &self.dropout);
        v.child("transformer", &self.transformer);
        v.child("generator", &self.generator);
    }
}
