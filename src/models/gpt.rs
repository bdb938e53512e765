//! A GPT as nanoGPT's `model.py` defines it (Karpathy, after Radford et al., "Language Models
//! are Unsupervised Multitask Learners", 2019), with its parameter names, so that a checkpoint
//! loads into nanoGPT's `GPT` with `load_state_dict(strict=True)`:
//!
//! ```text
//! ids (B, T)
//!   → transformer.wte (token embedding, V × C) + transformer.wpe (position embedding, block × C)
//!   → dropout
//!   → n_layer × Block: x = x + attn(ln_1(x));  x = x + mlp(ln_2(x))
//!        attn: c_attn (C → 3C) → q, k, v in n_head heads → causal attention (fused kernel,
//!              on the heads where the projection packed them: `Tensor::attention_packed`)
//!              → c_proj (C → C) → dropout
//!        mlp:  c_fc (C → 4C) → GELU → c_proj (4C → C) → dropout
//!   → transformer.ln_f → lm_head (C → V, the token embedding's weight: tied)
//!   → logits (B, T, V)
//! ```
//!
//! LayerNorms and linear layers have biases only with `bias` (nanoGPT's own `LayerNorm` class).
//! Initialization is nanoGPT's: every weight N(0, 0.02), biases 0, and the residual projections
//! (`c_proj.weight`) N(0, 0.02/√(2·n_layer)), so that the residual stream's variance does not
//! grow with depth. The LM head is the token embedding itself, one tensor reported under both
//! names (`transformer.wte.weight` and `lm_head.weight`): optimizers update it once, and
//! checkpoints carry both names, as PyTorch's state dict does.
//!
//! Generation ([`Gpt::generate`]) keeps a key/value cache per layer ([`GptCache`]): the prompt is
//! processed once, then each new token costs one position's worth of work.

use super::generate::Sampling;
use crate::nn::attention::{Attend, scaled_dot_product};
use crate::nn::projection::affine;
use crate::nn::{Dropout, Embedding, KvCache, Linear, LoraLinear, Module, Visitor, init};
use crate::ops::attention::AttentionOptions;
use crate::rng::next_key;
use crate::{DType, Device, Result, Tensor, no_grad};
use std::sync::atomic::{AtomicBool, Ordering};

/// nanoGPT's `GPTConfig`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GptConfig {
    /// Tokens in the vocabulary (V).
    pub vocab_size: usize,
    /// The longest context (positions of `wpe`).
    pub block_size: usize,
    /// Transformer blocks.
    pub n_layer: usize,
    /// Attention heads per block.
    pub n_head: usize,
    /// Features per position (C).
    pub n_embd: usize,
    /// Dropout on embeddings, attention weights and residual branches while training.
    pub dropout: f32,
    /// Biases in linear layers and layer norms.
    pub bias: bool,
}

impl GptConfig {
    /// nanoGPT's CPU recipe for characters (`train_shakespeare_char.py` on a laptop): 4 layers,
    /// 4 heads, 128 features, block 64, no dropout, no bias.
    pub fn shakespeare_cpu(vocab_size: usize) -> GptConfig {
        GptConfig {
            vocab_size,
            block_size: 64,
            n_layer: 4,
            n_head: 4,
            n_embd: 128,
            dropout: 0.0,
            bias: false,
        }
    }

    /// nanoGPT's "baby GPT" for characters (`train_shakespeare_char.py`): 6 layers, 6 heads, 384
    /// features, block 256, dropout 0.2, no bias.
    pub fn shakespeare_gpu(vocab_size: usize) -> GptConfig {
        GptConfig {
            vocab_size,
            block_size: 256,
            n_layer: 6,
            n_head: 6,
            n_embd: 384,
            dropout: 0.2,
            bias: false,
        }
    }
}

/// nanoGPT's `LayerNorm`: a layer norm over the features whose bias is optional.
struct LayerNorm {
    weight: Tensor,
    bias: Option<Tensor>,
}

impl LayerNorm {
    fn new(features: usize, bias: bool, device: &Device) -> LayerNorm {
        LayerNorm {
            weight: init::param(Tensor::ones([features], device)),
            bias: bias.then(|| init::param(Tensor::zeros([features], device))),
        }
    }
}

impl Module for LayerNorm {
    fn forward(&self, x: &Tensor) -> Tensor {
        x.layer_norm(&[self.weight.numel()], Some(&self.weight), self.bias.as_ref(), 1e-5)
    }
    fn visit(&self, v: &mut dyn Visitor) {
        v.param("weight", &self.weight);
        if let Some(b) = &self.bias {
            v.param("bias", b);
        }
    }
}

/// A linear layer with nanoGPT's initialization: weight N(0, std), bias 0. It can take a LoRA
/// adapter ([`crate::nn::lora`]).
fn linear(inputs: usize, outputs: usize, std: f64, bias: bool, device: &Device) -> LoraLinear {
    LoraLinear::new(Linear {
        weight: init::param(init::normal([outputs, inputs], std, device)),
        bias: bias.then(|| init::param(Tensor::zeros([outputs], device))),
    })
}

/// Causal self-attention over `n_head` heads, on the fused kernel.
struct CausalSelfAttention {
    c_attn: LoraLinear,
    c_proj: LoraLinear,
    resid_dropout: Dropout,
    n_head: usize,
    dropout: f32,
    training: AtomicBool,
}

impl CausalSelfAttention {
    /// x (B, T, C) at positions `cache.len()..` (0 without a cache) → (B, T, C).
    fn forward_at(&self, x: &Tensor, cache: Option<&mut KvCache>) -> Tensor {
        let (b, t, c) = (x.dim(0), x.dim(1), x.dim(2));
        let training = self.training.load(Ordering::Relaxed);
        let dropout = if training { self.dropout } else { 0.0 };
        let Some(cache) = cache else {
            // (B, T, 3C) → (B, T, C): the heads split, attended and joined again by one op,
            // which moves no head into memory of its own (on the CPU each is gathered as it is
            // computed); the same values and dropout draws as the split below
            let options = AttentionOptions {
                causal: true,
                dropout: (dropout > 0.0).then(|| (dropout, next_key())),
                ..Default::default()
            };
            let y = self.c_attn.forward(x).attention_packed(self.n_head, &options);
            return self.resid_dropout.forward(&self.c_proj.forward(&y));
        };
        // (B, T, 3C) → (B, T, 3, nh, hs) → (3, B, nh, T, hs): one copy splits the heads of q, k
        // and v at once, and each is then a contiguous block (its gradients are concatenated
        // back the same way)
        let heads =
            self.c_attn.forward(x).reshape([b, t, 3, self.n_head, c / self.n_head]).permute(&[2, 0, 3, 1, 4]);
        let (q, k, v) = (heads.select(0, 0), heads.select(0, 1), heads.select(0, 2));
        let (offset, (k, v)) = (cache.len(), cache.append(k, v));
        let attend = Attend { causal: true, causal_offset: offset, dropout, ..Default::default() };
        let y = scaled_dot_product(&q, &k, &v, &attend).0;
        // re-assemble the heads side by side
        let y = y.transpose(1, 2).reshape([b, t, c]);
        self.resid_dropout.forward(&self.c_proj.forward(&y))
    }
}

impl Module for CausalSelfAttention {
    fn forward(&self, x: &Tensor) -> Tensor {
        self.forward_at(x, None)
    }
    fn visit(&self, v: &mut dyn Visitor) {
        v.child("c_attn", &self.c_attn);
        v.child("c_proj", &self.c_proj);
        v.child("resid_dropout", &self.resid_dropout);
    }
    fn set_training(&self, training: bool) {
        self.training.store(training, Ordering::Relaxed);
    }
    fn training(&self) -> Option<bool> {
        Some(self.training.load(Ordering::Relaxed))
    }
}

/// The feed-forward block: C → 4C, GELU, 4C → C, dropout.
struct Mlp {
    c_fc: LoraLinear,
    c_proj: LoraLinear,
    dropout: Dropout,
}

impl Module for Mlp {
    fn forward(&self, x: &Tensor) -> Tensor {
        self.dropout.forward(&self.c_proj.forward(&self.c_fc.forward(x).gelu()))
    }
    fn visit(&self, v: &mut dyn Visitor) {
        v.child("c_fc", &self.c_fc);
        v.child("c_proj", &self.c_proj);
        v.child("dropout", &self.dropout);
    }
}

/// One pre-norm Transformer block.
struct Block {
    ln_1: LayerNorm,
    attn: CausalSelfAttention,
    ln_2: LayerNorm,
    mlp: Mlp,
}

impl Block {
    fn new(config: &GptConfig, device: &Device) -> Block {
        let (c, bias) = (config.n_embd, config.bias);
        // the residual projections: scaled so that n_layer blocks add up to unit variance
        let residual_std = 0.02 / ((2 * config.n_layer) as f64).sqrt();
        Block {
            ln_1: LayerNorm::new(c, bias, device),
            attn: CausalSelfAttention {
                c_attn: linear(c, 3 * c, 0.02, bias, device),
                c_proj: linear(c, c, residual_std, bias, device),
                resid_dropout: Dropout::new(config.dropout),
                n_head: config.n_head,
                dropout: config.dropout,
                training: AtomicBool::new(true),
            },
            ln_2: LayerNorm::new(c, bias, device),
            mlp: Mlp {
                c_fc: linear(c, 4 * c, 0.02, bias, device),
                c_proj: linear(4 * c, c, residual_std, bias, device),
                dropout: Dropout::new(config.dropout),
            },
        }
    }

    fn forward_at(&self, x: &Tensor, cache: Option<&mut KvCache>) -> Tensor {
        let x = x + self.attn.forward_at(&self.ln_1.forward(x), cache);
        &x + self.mlp.forward(&self.ln_2.forward(&x))
    }
}

impl Module for Block {
    fn forward(&self, x: &Tensor) -> Tensor {
        self.forward_at(x, None)
    }
    fn visit(&self, v: &mut dyn Visitor) {
        v.child("ln_1", &self.ln_1);
        v.child("attn", &self.attn);
        v.child("ln_2", &self.ln_2);
        v.child("mlp", &self.mlp);
    }
}

/// The blocks, named `0`, `1`, … (nanoGPT's `ModuleList` `h`).
struct Blocks(Vec<Block>);

impl Module for Blocks {
    fn forward(&self, x: &Tensor) -> Tensor {
        self.0.iter().fold(x.clone(), |x, block| block.forward(&x))
    }
    fn visit(&self, v: &mut dyn Visitor) {
        for (i, block) in self.0.iter().enumerate() {
            v.child(&i.to_string(), block);
        }
    }
}

/// nanoGPT's `transformer` `ModuleDict`: everything but the (tied) head.
struct Trunk {
    wte: Embedding,
    wpe: Embedding,
    drop: Dropout,
    h: Blocks,
    ln_f: LayerNorm,
}

impl Module for Trunk {
    fn forward(&self, ids: &Tensor) -> Tensor {
        let x = self.wte.forward(ids) + self.wpe.weight.narrow(0, 0, ids.dim(-1));
        self.ln_f.forward(&self.h.forward(&self.drop.forward(&x)))
    }
    fn visit(&self, v: &mut dyn Visitor) {
        v.child("wte", &self.wte);
        v.child("wpe", &self.wpe);
        v.child("drop", &self.drop);
        v.child("h", &self.h);
        v.child("ln_f", &self.ln_f);
    }
}

/// The key/value caches of a [`Gpt`]'s layers during generation.
#[derive(Clone, Default)]
pub struct GptCache {
    /// One per block.
    pub layers: Vec<KvCache>,
}

impl GptCache {
    /// Positions cached.
    pub fn len(&self) -> usize {
        self.layers.first().map_or(0, KvCache::len)
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// nanoGPT's `GPT` (see the module doc).
///
/// ```
/// use kiln::models::gpt::{Gpt, GptConfig};
/// use kiln::models::generate::Sampling;
/// use kiln::nn::{self, Module};
/// use kiln::{Device, Tensor};
/// let dev = Device::Cpu;
/// let config = GptConfig { vocab_size: 11, block_size: 8, n_layer: 2, n_head: 2, n_embd: 16, dropout: 0.0, bias: false };
/// let gpt = Gpt::new(config, &dev);
/// let ids = Tensor::from_vec(vec![1i32, 2, 3, 4, 5, 6], [2, 3], &dev);
/// assert_eq!(gpt.forward(&ids).dims(), &[2, 3, 11]); // logits
/// let targets = Tensor::from_vec(vec![2i32, 3, 4, 5, 6, 7], [2, 3], &dev);
/// let loss = gpt.loss(&ids, &targets); // next-token cross-entropy
/// assert!((loss.item::<f32>()? - 11f32.ln()).abs() < 0.5); // about ln V at initialization
/// let names: Vec<String> = nn::state_dict(&gpt).into_iter().map(|(n, _)| n).collect();
/// assert_eq!(names.first().unwrap(), "transformer.wte.weight");
/// assert_eq!(names.last().unwrap(), "lm_head.weight"); // the same tensor
/// let text = gpt.generate(&[1, 2], 5, &Sampling::greedy())?;
/// assert_eq!(text.len(), 5);
/// # Ok::<(), kiln::Error>(())
/// ```
pub struct Gpt {
    config: GptConfig,
    transformer: Trunk,
}

impl Gpt {
    /// A freshly initialized model on `device`.
    #[track_caller]
    pub fn new(config: GptConfig, device: &Device) -> Gpt {
        if config.n_head == 0 || !config.n_embd.is_multiple_of(config.n_head) {
            panic!("Gpt: n_embd {} must be divisible by n_head {}", config.n_embd, config.n_head);
        }
        let embedding =
            |n: usize| Embedding::from_weight(init::param(init::normal([n, config.n_embd], 0.02, device)));
        Gpt {
            config,
            transformer: Trunk {
                wte: embedding(config.vocab_size),
                wpe: embedding(config.block_size),
                drop: Dropout::new(config.dropout),
                h: Blocks((0..config.n_layer).map(|_| Block::new(&config, device)).collect()),
                ln_f: LayerNorm::new(config.n_embd, config.bias, device),
            },
        }
    }

    /// The configuration.
    pub fn config(&self) -> &GptConfig {
        &self.config
    }

    /// The final hidden states (B, T, C) of `ids` (B, T) at positions `cache.len()..` (0 without
    /// a cache), appending each layer's keys and values to `cache`.
    ///
    /// Panics (at the caller's line) when the positions run past `block_size` or `ids` is not a
    /// (B, T) integer tensor.
    #[track_caller]
    pub fn hidden(&self, ids: &Tensor, mut cache: Option<&mut GptCache>) -> Tensor {
        let offset = cache.as_ref().map_or(0, |c| c.len());
        let block = self.config.block_size;
        if ids.rank() != 2 || ids.dtype().is_float() || ids.dim(1) == 0 || offset + ids.dim(1) > block {
            panic!(
                "Gpt: ids {} ({}) at position {offset} must be (B, T) integers with 0 < T and {offset} + T ≤ \
                 block_size {block}",
                ids.shape(),
                ids.dtype()
            );
        }
        let t = &self.transformer;
        let x = t.wte.forward(ids) + t.wpe.weight.narrow(0, offset, ids.dim(1));
        let mut x = t.drop.forward(&x);
        if let Some(cache) = cache.as_deref_mut()
            && cache.layers.is_empty()
        {
            cache.layers = vec![KvCache::default(); t.h.0.len()];
        }
        for (i, block) in t.h.0.iter().enumerate() {
            x = block.forward_at(&x, cache.as_deref_mut().map(|c| &mut c.layers[i]));
        }
        t.ln_f.forward(&x)
    }

    /// The LM head: hidden states (…, C) → logits (…, V), with the token embedding's weight.
    pub fn head(&self, hidden: &Tensor) -> Tensor {
        affine(hidden, &self.transformer.wte.weight, None)
    }

    /// The mean next-token cross-entropy of `ids` (B, T) against `targets` (B, T).
    #[track_caller]
    pub fn loss(&self, ids: &Tensor, targets: &Tensor) -> Tensor {
        let logits = self.forward(ids);
        let (rows, v) = (ids.numel(), self.config.vocab_size);
        logits.reshape([rows, v]).cross_entropy(&targets.reshape([rows]))
    }

    /// Generates up to `max_new_tokens` tokens after `prompt`, with a key/value cache: the prompt
    /// (its last `block_size` tokens, as nanoGPT crops it) is processed once, then each token
    /// costs one position. Sampling as `sampling` says; stops after a stop token (which is
    /// returned). Returns the new tokens.
    ///
    /// When the context fills `block_size`, the window slides: the cache is rebuilt from the last
    /// `block_size` tokens, exactly what generation without a cache computes.
    ///
    /// A token outside the vocabulary is an [`crate::Error::OutOfRange`]; an empty prompt panics.
    #[track_caller]
    pub fn generate(&self, prompt: &[i32], max_new_tokens: usize, sampling: &Sampling) -> Result<Vec<i32>> {
        self.generate_with(prompt, max_new_tokens, sampling, true)
    }

    /// [`Gpt::generate`] without a cache, as nanoGPT: every step runs the whole context (up to
    /// `block_size` tokens) through the model again. For comparison.
    #[track_caller]
    pub fn generate_uncached(
        &self,
        prompt: &[i32],
        max_new_tokens: usize,
        sampling: &Sampling,
    ) -> Result<Vec<i32>> {
        self.generate_with(prompt, max_new_tokens, sampling, false)
    }

    #[track_caller]
    fn generate_with(
        &self,
        prompt: &[i32],
        max_new_tokens: usize,
        sampling: &Sampling,
        cached: bool,
    ) -> Result<Vec<i32>> {
        if prompt.is_empty() {
            panic!("Gpt::generate: the prompt is empty; give at least one token");
        }
        let device = self.transformer.wte.weight.device();
        let block = self.config.block_size;
        let window = |tokens: &[i32]| -> Tensor {
            let context = &tokens[tokens.len().saturating_sub(block)..];
            Tensor::from_slice(context, [1, context.len()], &device)
        };
        // logits of the last position only, as nanoGPT at inference
        let last_logits = |hidden: Tensor| -> Result<Vec<f32>> {
            let t = hidden.dim(1);
            self.head(&hidden.narrow(1, t - 1, 1)).cast(DType::F32).to_vec::<f32>()
        };
        no_grad(|| {
            let mut tokens = prompt.to_vec();
            let mut new = Vec::with_capacity(max_new_tokens);
            let mut cache = GptCache::default();
            let mut logits = match cached {
                true => last_logits(self.hidden(&window(&tokens), Some(&mut cache)))?,
                false => last_logits(self.hidden(&window(&tokens), None))?,
            };
            for step in 0..max_new_tokens {
                let next = sampling.pick(&logits, step as u64);
                tokens.push(next);
                new.push(next);
                if sampling.stop.contains(&next) || step + 1 == max_new_tokens {
                    break;
                }
                logits = if !cached {
                    last_logits(self.hidden(&window(&tokens), None))?
                } else if cache.len() == block {
                    // the window slides: every position changes, so the cache starts over
                    cache = GptCache::default();
                    last_logits(self.hidden(&window(&tokens), Some(&mut cache)))?
                } else {
                    last_logits(
                        self.hidden(&Tensor::from_vec(vec![next], [1, 1], &device), Some(&mut cache)),
                    )?
                };
            }
            Ok(new)
        })
    }
}

impl Module for Gpt {
    /// Logits (B, T, V) of ids (B, T).
    fn forward(&self, ids: &Tensor) -> Tensor {
        self.head(&self.hidden(ids, None))
    }

    fn visit(&self, v: &mut dyn Visitor) {
        v.child("transformer", &self.transformer);
        // tied: the head is the token embedding, one tensor under both names
        v.param("lm_head.weight", &self.transformer.wte.weight);
    }
}
