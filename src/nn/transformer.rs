//! The Transformer of "Attention Is All You Need" (Vaswani et al., 2017) as PyTorch builds it:
//! `TransformerEncoderLayer`, `TransformerDecoderLayer`, their stacks `TransformerEncoder` and
//! `TransformerDecoder`, and `Transformer`, with PyTorch's arguments, semantics and state-dict
//! names (`layers.0.self_attn.in_proj_weight`, `layers.0.linear1.weight`, `layers.0.norm1.weight`,
//! …; `encoder.…`, `decoder.…`).
//!
//! Layers run post-norm (x = norm(x + block(x)), the paper's) or, with `norm_first`, pre-norm
//! (x = x + block(norm(x))). Inputs are (L, N, E), or (N, L, E) with `batch_first`.
//!
//! Incremental decoding ([`TransformerDecoder::start`], [`TransformerDecoder::step`]) keeps a
//! [`DecoderCache`]: per layer, the self-attention keys and values of the positions decoded so
//! far and the cross-attention keys and values of the source, projected once; beam search
//! reorders it by beam index ([`DecoderCache::reorder`]).

use super::attention::{KvCache, MhaConfig, MhaOptions, MultiheadAttention, additive};
use super::projection::affine;
use super::{Dropout, LayerNorm, Linear, Module, Visitor, init};
use crate::{Device, Tensor, no_grad};

/// The feed-forward block's activation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Activation {
    /// max(x, 0) (PyTorch's default).
    #[default]
    Relu,
    /// GELU with the exact Gaussian CDF.
    Gelu,
}

/// The arguments of PyTorch's Transformer layers.
#[derive(Clone, Copy, Debug)]
pub struct TransformerConfig {
    /// Features per position (E).
    pub d_model: usize,
    /// Attention heads.
    pub nhead: usize,
    /// Hidden features of the feed-forward block (default 2048).
    pub dim_feedforward: usize,
    /// Dropout after attention, in the feed-forward block and on the attention weights (0.1).
    pub dropout: f32,
    /// Relu (default) or Gelu.
    pub activation: Activation,
    /// (N, L, E) inputs rather than (L, N, E) (default false).
    pub batch_first: bool,
    /// Pre-norm layers (default false: post-norm, as the paper).
    pub norm_first: bool,
}

impl TransformerConfig {
    /// PyTorch's defaults for `d_model` features and `nhead` heads.
    pub fn new(d_model: usize, nhead: usize) -> TransformerConfig {
        TransformerConfig {
            d_model,
            nhead,
            dim_feedforward: 2048,
            dropout: 0.1,
            activation: Activation::Relu,
            batch_first: false,
            norm_first: false,
        }
    }

    fn attention(&self, device: &Device) -> MultiheadAttention {
        let config = MhaConfig { batch_first: self.batch_first, dropout: self.dropout, ..Default::default() };
        MultiheadAttention::with_options(self.d_model, self.nhead, config, device)
    }

    /// (L, N, E) → (N, L, E) unless already batch-first (and back: the swap is its own inverse).
    fn batch_major(&self, x: &Tensor) -> Tensor {
        if self.batch_first || x.rank() < 3 { x.clone() } else { x.transpose(0, 1) }
    }
}

/// Masks of an encoder (PyTorch's `src_mask`, `src_key_padding_mask`, `is_causal`), as in
/// [`MhaOptions`].
#[derive(Clone, Default)]
pub struct EncoderMasks {
    /// (L, L) or (N·nhead, L, L), bool (true: hidden) or float (added).
    pub mask: Option<Tensor>,
    /// (N, L), bool (true: padding) or float (added).
    pub key_padding_mask: Option<Tensor>,
    /// Position i attends to positions ≤ i only.
    pub is_causal: bool,
}

/// Masks of a decoder (PyTorch's `tgt_mask`, `memory_mask`, their key-padding masks and causal
/// flags), as in [`MhaOptions`].
#[derive(Clone, Default)]
pub struct DecoderMasks {
    /// Self-attention mask (T, T) or (N·nhead, T, T).
    pub tgt_mask: Option<Tensor>,
    /// Cross-attention mask (T, S) or (N·nhead, T, S).
    pub memory_mask: Option<Tensor>,
    /// (N, T): padding of the target.
    pub tgt_key_padding_mask: Option<Tensor>,
    /// (N, S): padding of the source.
    pub memory_key_padding_mask: Option<Tensor>,
    /// Target position i attends to target positions ≤ i only.
    pub tgt_is_causal: bool,
    /// Target position i attends to source positions ≤ i only.
    pub memory_is_causal: bool,
}

/// The feed-forward block shared by both layers: linear2(dropout(activation(linear1(x)))).
fn feed_forward(
    linear1: &Linear,
    linear2: &Linear,
    activation: Activation,
    dropout: &Dropout,
    x: &Tensor,
) -> Tensor {
    let h = affine(x, &linear1.weight, linear1.bias.as_ref());
    let h = match activation {
        Activation::Relu => h.relu(),
        Activation::Gelu => h.gelu(),
    };
    affine(&dropout.forward(&h), &linear2.weight, linear2.bias.as_ref())
}

/// The self-attention and cross-attention options of a decoder layer's `masks`; the
/// cross-attention returns its weights if `need_weights`.
fn attention_options(masks: &DecoderMasks, need_weights: bool) -> (MhaOptions, MhaOptions) {
    let self_options = MhaOptions {
        key_padding_mask: masks.tgt_key_padding_mask.clone(),
        attn_mask: masks.tgt_mask.clone(),
        is_causal: masks.tgt_is_causal,
        ..Default::default()
    };
    let memory_options = MhaOptions {
        key_padding_mask: masks.memory_key_padding_mask.clone(),
        attn_mask: masks.memory_mask.clone(),
        is_causal: masks.memory_is_causal,
        need_weights,
        ..Default::default()
    };
    (self_options, memory_options)
}

/// PyTorch's `TransformerEncoderLayer`: self-attention and a feed-forward block, each with a
/// residual connection, dropout and layer norm.
///
/// ```
/// use kiln::nn::{EncoderMasks, Module, TransformerConfig, TransformerEncoderLayer};
/// use kiln::{Device, Tensor};
/// let dev = Device::Cpu;
/// let config = TransformerConfig { batch_first: true, dim_feedforward: 32, ..TransformerConfig::new(16, 4) };
/// let layer = TransformerEncoderLayer::new(config, &dev);
/// let x = Tensor::randn([2, 7, 16], &dev);
/// let masks = EncoderMasks { is_causal: true, ..Default::default() };
/// assert_eq!(layer.forward_with(&x, &masks).dims(), &[2, 7, 16]);
/// assert_eq!(layer.forward(&x).dims(), &[2, 7, 16]);
/// ```
pub struct TransformerEncoderLayer {
    /// Self-attention.
    pub self_attn: MultiheadAttention,
    /// E → dim_feedforward.
    pub linear1: Linear,
    /// dim_feedforward → E.
    pub linear2: Linear,
    /// After (or, with `norm_first`, before) self-attention.
    pub norm1: LayerNorm,
    /// After (or before) the feed-forward block.
    pub norm2: LayerNorm,
    dropout: Dropout,
    dropout1: Dropout,
    dropout2: Dropout,
    config: TransformerConfig,
}

impl TransformerEncoderLayer {
    /// A layer initialized as PyTorch initializes one.
    #[track_caller]
    pub fn new(config: TransformerConfig, device: &Device) -> TransformerEncoderLayer {
        let e = config.d_model;
        TransformerEncoderLayer {
            self_attn: config.attention(device),
            linear1: Linear::new(e, config.dim_feedforward, device),
            linear2: Linear::new(config.dim_feedforward, e, device),
            norm1: LayerNorm::new(&[e], device),
            norm2: LayerNorm::new(&[e], device),
            dropout: Dropout::new(config.dropout),
            dropout1: Dropout::new(config.dropout),
            dropout2: Dropout::new(config.dropout),
            config,
        }
    }

    /// The layer applied to `src` with `masks`.
    #[track_caller]
    pub fn forward_with(&self, src: &Tensor, masks: &EncoderMasks) -> Tensor {
        let options = MhaOptions {
            key_padding_mask: masks.key_padding_mask.clone(),
            attn_mask: masks.mask.clone(),
            is_causal: masks.is_causal,
            ..Default::default()
        };
        self.self_attn.check(src, src, src, &options);
        let attend = |x: &Tensor| self.dropout1.forward(&self.self_attn.forward_with(x, x, x, &options).0);
        let ff = |x: &Tensor| {
            let y = feed_forward(&self.linear1, &self.linear2, self.config.activation, &self.dropout, x);
            self.dropout2.forward(&y)
        };
        if self.config.norm_first {
            let x = src + attend(&self.norm1.forward(src));
            &x + ff(&self.norm2.forward(&x))
        } else {
            let x = self.norm1.forward(&(src + attend(src)));
            self.norm2.forward(&(&x + ff(&x)))
        }
    }
}

impl Module for TransformerEncoderLayer {
    fn forward(&self, x: &Tensor) -> Tensor {
        self.forward_with(x, &EncoderMasks::default())
    }

    fn visit(&self, v: &mut dyn Visitor) {
        v.child("self_attn", &self.self_attn);
        v.child("linear1", &self.linear1);
        v.child("dropout", &self.dropout);
        v.child("linear2", &self.linear2);
        v.child("norm1", &self.norm1);
        v.child("norm2", &self.norm2);
        v.child("dropout1", &self.dropout1);
        v.child("dropout2", &self.dropout2);
    }
}

/// PyTorch's `TransformerDecoderLayer`: self-attention, cross-attention over the encoder's
/// output (`memory`) and a feed-forward block, each with a residual connection, dropout and
/// layer norm.
pub struct TransformerDecoderLayer {
    /// Self-attention over the target.
    pub self_attn: MultiheadAttention,
    /// Cross-attention over the memory.
    pub multihead_attn: MultiheadAttention,
    /// E → dim_feedforward.
    pub linear1: Linear,
    /// dim_feedforward → E.
    pub linear2: Linear,
    /// Around self-attention.
    pub norm1: LayerNorm,
    /// Around cross-attention.
    pub norm2: LayerNorm,
    /// Around the feed-forward block.
    pub norm3: LayerNorm,
    dropout: Dropout,
    dropout1: Dropout,
    dropout2: Dropout,
    dropout3: Dropout,
    config: TransformerConfig,
}

impl TransformerDecoderLayer {
    /// A layer initialized as PyTorch initializes one.
    #[track_caller]
    pub fn new(config: TransformerConfig, device: &Device) -> TransformerDecoderLayer {
        let e = config.d_model;
        TransformerDecoderLayer {
            self_attn: config.attention(device),
            multihead_attn: config.attention(device),
            linear1: Linear::new(e, config.dim_feedforward, device),
            linear2: Linear::new(config.dim_feedforward, e, device),
            norm1: LayerNorm::new(&[e], device),
            norm2: LayerNorm::new(&[e], device),
            norm3: LayerNorm::new(&[e], device),
            dropout: Dropout::new(config.dropout),
            dropout1: Dropout::new(config.dropout),
            dropout2: Dropout::new(config.dropout),
            dropout3: Dropout::new(config.dropout),
            config,
        }
    }

    /// The three blocks in order, each as `norm_first` says, given how self-attention and
    /// cross-attention are computed.
    fn blocks(
        &self,
        tgt: &Tensor,
        mut attend_self: impl FnMut(&Tensor) -> Tensor,
        attend_memory: impl Fn(&Tensor) -> Tensor,
    ) -> Tensor {
        let ff = |x: &Tensor| {
            let y = feed_forward(&self.linear1, &self.linear2, self.config.activation, &self.dropout, x);
            self.dropout3.forward(&y)
        };
        if self.config.norm_first {
            let x = tgt + self.dropout1.forward(&attend_self(&self.norm1.forward(tgt)));
            let x = &x + self.dropout2.forward(&attend_memory(&self.norm2.forward(&x)));
            &x + ff(&self.norm3.forward(&x))
        } else {
            let x = self.norm1.forward(&(tgt + self.dropout1.forward(&attend_self(tgt))));
            let x = self.norm2.forward(&(&x + self.dropout2.forward(&attend_memory(&x))));
            self.norm3.forward(&(&x + ff(&x)))
        }
    }

    /// The layer applied to `tgt` over `memory`, with `masks`.
    #[track_caller]
    pub fn forward_with(&self, tgt: &Tensor, memory: &Tensor, masks: &DecoderMasks) -> Tensor {
        let (self_options, memory_options) = attention_options(masks, false);
        self.self_attn.check(tgt, tgt, tgt, &self_options);
        self.multihead_attn.check(tgt, memory, memory, &memory_options);
        self.blocks(
            tgt,
            |x| self.self_attn.forward_with(x, x, x, &self_options).0,
            |x| self.multihead_attn.forward_with(x, memory, memory, &memory_options).0,
        )
    }

    /// [`TransformerDecoderLayer::forward_with`], and the cross-attention weights over the
    /// memory averaged over heads, (N, T, S), taken through the unfused path: for heat maps.
    #[track_caller]
    pub fn forward_with_weights(
        &self,
        tgt: &Tensor,
        memory: &Tensor,
        masks: &DecoderMasks,
    ) -> (Tensor, Tensor) {
        let (self_options, memory_options) = attention_options(masks, true);
        self.self_attn.check(tgt, tgt, tgt, &self_options);
        self.multihead_attn.check(tgt, memory, memory, &memory_options);
        let weights = std::cell::RefCell::new(None);
        let out = self.blocks(
            tgt,
            |x| self.self_attn.forward_with(x, x, x, &self_options).0,
            |x| {
                let (out, w) = self.multihead_attn.forward_with(x, memory, memory, &memory_options);
                *weights.borrow_mut() = w;
                out
            },
        );
        (out, weights.into_inner().expect("the cross-attention block ran with need_weights"))
    }

    /// One step of incremental decoding: new target positions `x` (N, T, E), batch-first
    /// whatever the layer's layout, attending causally to the positions in `cache` and to
    /// themselves, and to the memory projected in `memory` (see
    /// [`MultiheadAttention::project_memory`]) with its (N, S) key-padding mask.
    #[track_caller]
    pub fn forward_step(
        &self,
        x: &Tensor,
        cache: &mut KvCache,
        memory: &KvCache,
        memory_key_padding_mask: Option<&Tensor>,
    ) -> Tensor {
        self.blocks(
            x,
            |x| self.self_attn.forward_cached(x, cache),
            |x| self.multihead_attn.forward_memory(x, memory, memory_key_padding_mask),
        )
    }
}

impl Module for TransformerDecoderLayer {
    /// Panics: a decoder layer needs the memory too; call [`TransformerDecoderLayer::forward_with`].
    #[track_caller]
    fn forward(&self, _: &Tensor) -> Tensor {
        panic!("TransformerDecoderLayer: forward needs the memory; call forward_with(tgt, memory, masks)")
    }

    fn visit(&self, v: &mut dyn Visitor) {
        v.child("self_attn", &self.self_attn);
        v.child("multihead_attn", &self.multihead_attn);
        v.child("linear1", &self.linear1);
        v.child("dropout", &self.dropout);
        v.child("linear2", &self.linear2);
        v.child("norm1", &self.norm1);
        v.child("norm2", &self.norm2);
        v.child("norm3", &self.norm3);
        v.child("dropout1", &self.dropout1);
        v.child("dropout2", &self.dropout2);
        v.child("dropout3", &self.dropout3);
    }
}

/// Layers named `0`, `1`, … (PyTorch's `ModuleList`).
struct Layers<'a, L>(&'a [L]);

impl<L: Module> Module for Layers<'_, L> {
    fn forward(&self, x: &Tensor) -> Tensor {
        self.0.iter().fold(x.clone(), |h, layer| layer.forward(&h))
    }
    fn visit(&self, v: &mut dyn Visitor) {
        for (i, layer) in self.0.iter().enumerate() {
            v.child(&i.to_string(), layer);
        }
    }
}

/// PyTorch's `TransformerEncoder`: `num_layers` encoder layers and an optional final layer norm.
pub struct TransformerEncoder {
    /// The layers, `layers.0`, `layers.1`, ….
    pub layers: Vec<TransformerEncoderLayer>,
    /// The final norm, if any (`norm`).
    pub norm: Option<LayerNorm>,
}

impl TransformerEncoder {
    /// `num_layers` fresh layers of `config`, with a final layer norm if `norm`.
    #[track_caller]
    pub fn new(
        config: TransformerConfig,
        num_layers: usize,
        norm: bool,
        device: &Device,
    ) -> TransformerEncoder {
        TransformerEncoder {
            layers: (0..num_layers).map(|_| TransformerEncoderLayer::new(config, device)).collect(),
            norm: norm.then(|| LayerNorm::new(&[config.d_model], device)),
        }
    }

    /// Every layer applied to `src` with the same `masks`, then the norm.
    #[track_caller]
    pub fn forward_with(&self, src: &Tensor, masks: &EncoderMasks) -> Tensor {
        let x = self.layers.iter().fold(src.clone(), |x, layer| layer.forward_with(&x, masks));
        match &self.norm {
            Some(norm) => norm.forward(&x),
            None => x,
        }
    }
}

impl Module for TransformerEncoder {
    fn forward(&self, x: &Tensor) -> Tensor {
        self.forward_with(x, &EncoderMasks::default())
    }
    fn visit(&self, v: &mut dyn Visitor) {
        v.child("layers", &Layers(&self.layers));
        if let Some(norm) = &self.norm {
            v.child("norm", norm);
        }
    }
}

/// Per-layer caches of incremental decoding (see the module doc).
#[derive(Clone)]
pub struct DecoderCache {
    /// Per layer: self-attention keys and values of the positions decoded so far.
    pub self_attention: Vec<KvCache>,
    /// Per layer: the memory's keys and values for cross-attention.
    pub memory: Vec<KvCache>,
    /// The memory's (N, S) key-padding mask, if any, as an additive float mask (so that it can
    /// be reordered by beam index: bool tensors cannot be gathered).
    pub memory_key_padding_mask: Option<Tensor>,
}

impl DecoderCache {
    /// Positions decoded so far.
    pub fn len(&self) -> usize {
        self.self_attention.first().map_or(0, KvCache::len)
    }

    /// Whether nothing has been decoded yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Keeps batch rows `index` (i32, (N′)), in that order: after a beam-search step, row r
    /// continues hypothesis `index[r]`.
    #[track_caller]
    pub fn reorder(&mut self, index: &Tensor) {
        for cache in self.self_attention.iter_mut().chain(self.memory.iter_mut()) {
            cache.reorder(index);
        }
        if let Some(mask) = &mut self.memory_key_padding_mask {
            *mask = mask.index_select(0, index);
        }
    }
}

/// PyTorch's `TransformerDecoder`: `num_layers` decoder layers and an optional final layer norm,
/// with incremental decoding.
///
/// ```
/// use kiln::nn::{DecoderMasks, TransformerConfig, TransformerDecoder};
/// use kiln::{Device, Tensor};
/// let dev = Device::Cpu;
/// let config = TransformerConfig { batch_first: true, dim_feedforward: 32, dropout: 0.0, ..TransformerConfig::new(16, 4) };
/// let decoder = TransformerDecoder::new(config, 2, true, &dev);
/// let (memory, tgt) = (Tensor::randn([2, 9, 16], &dev), Tensor::randn([2, 5, 16], &dev));
/// let full = decoder.forward_with(&tgt, &memory, &DecoderMasks { tgt_is_causal: true, ..Default::default() });
/// // the same, one position at a time
/// let mut cache = decoder.start(&memory, None);
/// for t in 0..5 {
///     let step = decoder.step(&tgt.narrow(1, t, 1), &mut cache);
///     let want = full.narrow(1, t, 1);
///     assert!((step - want).abs().max_all().item::<f32>()? < 1e-4);
/// }
/// # Ok::<(), kiln::Error>(())
/// ```
pub struct TransformerDecoder {
    /// The layers, `layers.0`, `layers.1`, ….
    pub layers: Vec<TransformerDecoderLayer>,
    /// The final norm, if any (`norm`).
    pub norm: Option<LayerNorm>,
    config: TransformerConfig,
}

impl TransformerDecoder {
    /// `num_layers` fresh layers of `config`, with a final layer norm if `norm`.
    #[track_caller]
    pub fn new(
        config: TransformerConfig,
        num_layers: usize,
        norm: bool,
        device: &Device,
    ) -> TransformerDecoder {
        TransformerDecoder {
            layers: (0..num_layers).map(|_| TransformerDecoderLayer::new(config, device)).collect(),
            norm: norm.then(|| LayerNorm::new(&[config.d_model], device)),
            config,
        }
    }

    fn finish(&self, x: Tensor) -> Tensor {
        match &self.norm {
            Some(norm) => norm.forward(&x),
            None => x,
        }
    }

    /// Every layer applied to `tgt` over `memory` with the same `masks`, then the norm.
    #[track_caller]
    pub fn forward_with(&self, tgt: &Tensor, memory: &Tensor, masks: &DecoderMasks) -> Tensor {
        let x = self.layers.iter().fold(tgt.clone(), |x, layer| layer.forward_with(&x, memory, masks));
        self.finish(x)
    }

    /// [`TransformerDecoder::forward_with`], and each layer's cross-attention weights averaged
    /// over heads, (N, T, S), through the unfused path: for heat maps.
    #[track_caller]
    pub fn forward_with_weights(
        &self,
        tgt: &Tensor,
        memory: &Tensor,
        masks: &DecoderMasks,
    ) -> (Tensor, Vec<Tensor>) {
        let mut x = tgt.clone();
        let mut weights = Vec::with_capacity(self.layers.len());
        for layer in &self.layers {
            let (out, w) = layer.forward_with_weights(&x, memory, masks);
            x = out;
            weights.push(w);
        }
        (self.finish(x), weights)
    }

    /// Starts incremental decoding over `memory` (laid out as the decoder's inputs) with its
    /// (N, S) key-padding mask: the memory's keys and values are projected here, once per layer.
    #[track_caller]
    pub fn start(&self, memory: &Tensor, memory_key_padding_mask: Option<&Tensor>) -> DecoderCache {
        let memory = self.config.batch_major(memory);
        DecoderCache {
            self_attention: vec![KvCache::default(); self.layers.len()],
            memory: self.layers.iter().map(|l| l.multihead_attn.project_memory(&memory)).collect(),
            memory_key_padding_mask: memory_key_padding_mask.map(|m| additive(m, memory.dtype())),
        }
    }

    /// Decodes new target positions `tgt` ((T, N, E), or (N, T, E) batch-first), each attending
    /// causally to the positions decoded before and to the memory of `cache`, which is extended
    /// with them. Equals the rows of [`TransformerDecoder::forward_with`] with `tgt_is_causal`
    /// on the whole target.
    #[track_caller]
    pub fn step(&self, tgt: &Tensor, cache: &mut DecoderCache) -> Tensor {
        let mask = cache.memory_key_padding_mask.clone();
        let mut x = self.config.batch_major(tgt);
        for ((layer, own), memory) in self.layers.iter().zip(&mut cache.self_attention).zip(&cache.memory) {
            x = layer.forward_step(&x, own, memory, mask.as_ref());
        }
        self.config.batch_major(&self.finish(x))
    }
}

impl Module for TransformerDecoder {
    /// Panics: a decoder needs the memory too; call [`TransformerDecoder::forward_with`].
    #[track_caller]
    fn forward(&self, _: &Tensor) -> Tensor {
        panic!("TransformerDecoder: forward needs the memory; call forward_with(tgt, memory, masks)")
    }
    fn visit(&self, v: &mut dyn Visitor) {
        v.child("layers", &Layers(&self.layers));
        if let Some(norm) = &self.norm {
            v.child("norm", norm);
        }
    }
}

/// Masks of a whole [`Transformer`] (PyTorch's `forward` arguments).
#[derive(Clone, Default)]
pub struct TransformerMasks {
    /// The encoder's.
    pub src: EncoderMasks,
    /// The decoder's; its `memory_key_padding_mask` is usually the source's padding.
    pub tgt: DecoderMasks,
}

/// PyTorch's `Transformer`: an encoder and a decoder, each with a final layer norm, every
/// matrix Xavier-uniform initialized (`encoder.layers.0.…`, `decoder.norm.weight`, …).
pub struct Transformer {
    /// The encoder.
    pub encoder: TransformerEncoder,
    /// The decoder.
    pub decoder: TransformerDecoder,
}

impl Transformer {
    /// An encoder-decoder of `config` with the given numbers of layers (PyTorch: 6 and 6).
    #[track_caller]
    pub fn new(
        config: TransformerConfig,
        encoder_layers: usize,
        decoder_layers: usize,
        device: &Device,
    ) -> Transformer {
        let model = Transformer {
            encoder: TransformerEncoder::new(config, encoder_layers, true, device),
            decoder: TransformerDecoder::new(config, decoder_layers, true, device),
        };
        // PyTorch's _reset_parameters: every parameter with more than one dimension
        no_grad(|| {
            for (_, p) in super::parameters(&model).into_iter().filter(|(_, p)| p.rank() > 1) {
                let fresh = init::xavier_uniform(p.shape().clone(), p.dim(1), p.dim(0), &p.device());
                p.assign(&fresh).expect("a fresh tensor of the parameter's shape realizes");
            }
        });
        model
    }

    /// The output for source `src` and target `tgt`: the decoder over the encoder's memory.
    #[track_caller]
    pub fn forward_with(&self, src: &Tensor, tgt: &Tensor, masks: &TransformerMasks) -> Tensor {
        let memory = self.encoder.forward_with(src, &masks.src);
        self.decoder.forward_with(tgt, &memory, &masks.tgt)
    }

    /// A float (size, size) mask that is −∞ above the diagonal and 0 elsewhere, as PyTorch's
    /// `generate_square_subsequent_mask`.
    pub fn generate_square_subsequent_mask(size: usize, device: &Device) -> Tensor {
        let data: Vec<f32> = (0..size)
            .flat_map(|i| (0..size).map(move |j| if j > i { f32::NEG_INFINITY } else { 0.0 }))
            .collect();
        Tensor::from_vec(data, [size, size], device)
    }
}

impl Module for Transformer {
    /// Panics: a Transformer needs a source and a target; call [`Transformer::forward_with`].
    #[track_caller]
    fn forward(&self, _: &Tensor) -> Tensor {
        panic!("Transformer: forward needs a source and a target; call forward_with(src, tgt, masks)")
    }
    fn visit(&self, v: &mut dyn Visitor) {
        v.child("encoder", &self.encoder);
        v.child("decoder", &self.decoder);
    }
}
