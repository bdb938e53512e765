//! `MultiheadAttention`, PyTorch's `nn.MultiheadAttention`: projections of queries, keys and
//! values into `num_heads` heads, scaled dot-product attention per head, and an output
//! projection — with key-padding and attention masks, causal masking, dropout on the attention
//! weights, and, on request, the weights themselves. Also the per-layer key/value cache that
//! incremental decoding keeps ([`KvCache`]).
//!
//! Attention runs on the fused kernel ([`Tensor::attention_with`]): masks are its additive mask,
//! dropout its in-kernel Philox draws. Only when the weights are asked for does it run unfused
//! ([`Tensor::attention_unfused_with`]), which forms them.

use super::projection::affine;
use super::{Linear, Module, Visitor, init};
use crate::ops::attention::AttentionOptions;
use crate::rng::next_key;
use crate::{DType, Device, Shape, Tensor};
use std::sync::atomic::{AtomicBool, Ordering};

/// What masks become before the softmax: far below any score, so that the weight is exactly 0
/// after it, yet finite, so that a row whose keys are all masked averages them uniformly instead
/// of turning into NaN (PyTorch gives NaN there).
pub const MASKED: f64 = -1.0e30;

/// How one attention call is masked and regularized (see [`scaled_dot_product`]).
#[derive(Clone, Default)]
pub(crate) struct Attend<'a> {
    /// Query i sees keys j ≤ i + `causal_offset` only.
    pub causal: bool,
    /// Where the queries start among the keys (a cache holding earlier positions): 0 aligns the
    /// causal mask top-left, as PyTorch's `is_causal`.
    pub causal_offset: usize,
    /// Additive mask, broadcast to (N, H, Tq, Tk); entries at or below [`MASKED`] hide a key.
    pub mask: Option<&'a Tensor>,
    /// Dropout probability on the attention weights (0: none).
    pub dropout: f32,
    /// Also return the attention weights (N, H, Tq, Tk).
    pub need_weights: bool,
}

/// Scaled dot-product attention of q (N, H, Tq, D) over k (N, H, Tk, D) and v (N, H, Tk, Dv) with
/// scale 1/√D, on the fused kernel: masks become its additive mask and dropout its in-kernel
/// Philox draws. With `need_weights` it runs unfused ([`Tensor::attention_unfused_with`], which
/// drops the same weights) to return the weights after masking and softmax, before dropout.
/// Returns the output (N, H, Tq, Dv) and the weights if asked for.
pub(crate) fn scaled_dot_product(q: &Tensor, k: &Tensor, v: &Tensor, a: &Attend) -> (Tensor, Option<Tensor>) {
    // the kernel's causal mask is aligned top-left; a query that sees every key needs none, and
    // any other alignment (a cache holding earlier positions) is an additive mask
    let (tq, tk) = (q.dim(-2), k.dim(-2));
    let (causal, shifted) = match (a.causal, a.causal_offset) {
        (false, _) => (false, None),
        (true, offset) if offset + 1 >= tk => (false, None),
        (true, 0) => (true, None),
        (true, offset) => (false, Some(causal_mask(tq, tk, offset, q.dtype(), &q.device()))),
    };
    let mask = match (a.mask, shifted) {
        (Some(m), Some(c)) => Some(m + c),
        (m, c) => m.cloned().or(c),
    };
    // sums of masks stay at MASKED where anything hid the key, so that a row whose keys are all
    // hidden is averaged uniformly, as one hidden by a single mask
    let floor = Tensor::full(Shape::scalar(), MASKED, q.dtype(), &q.device());
    let options = AttentionOptions {
        causal,
        mask: mask.map(|m| m.maximum(&floor)),
        dropout: (a.dropout > 0.0).then(|| (a.dropout, next_key())),
        ..Default::default()
    };
    if a.need_weights {
        let (out, weights) = q.attention_unfused_with(k, v, &options);
        return (out, Some(weights));
    }
    (q.attention_with(k, v, &options), None)
}

/// The additive causal mask (Tq, Tk): [`MASKED`] where key j comes after query i + `offset`.
pub fn causal_mask(tq: usize, tk: usize, offset: usize, dtype: DType, device: &Device) -> Tensor {
    let data: Vec<f64> =
        (0..tq).flat_map(|i| (0..tk).map(move |j| if j > i + offset { MASKED } else { 0.0 })).collect();
    Tensor::from_vec(data, [tq, tk], &Device::Cpu).cast(dtype).to(device)
}

/// A mask as PyTorch takes it — bool (true: hidden) or float (added to the scores) — as an
/// additive float mask of `dtype`.
pub(crate) fn additive(mask: &Tensor, dtype: DType) -> Tensor {
    if mask.dtype() == DType::Bool {
        let hidden = Tensor::full(Shape::scalar(), MASKED, dtype, &mask.device());
        let shown = Tensor::full(Shape::scalar(), 0.0, dtype, &mask.device());
        mask.where_(&hidden, &shown)
    } else {
        mask.cast(dtype)
    }
}

/// The keys and values of the positions seen so far, per layer of incremental decoding, already
/// projected and split into heads: (N, H, S, head_dim) each.
#[derive(Clone, Default)]
pub struct KvCache {
    /// Cached keys.
    pub k: Option<Tensor>,
    /// Cached values.
    pub v: Option<Tensor>,
}

impl KvCache {
    /// The number of cached positions.
    pub fn len(&self) -> usize {
        self.k.as_ref().map_or(0, |k| k.dim(-2))
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends the keys and values of new positions and returns all of them.
    pub fn append(&mut self, k: Tensor, v: Tensor) -> (Tensor, Tensor) {
        let join = |old: &Option<Tensor>, new: Tensor| match old {
            Some(old) => Tensor::concat(&[old.clone(), new], -2),
            None => new,
        };
        let (k, v) = (join(&self.k, k), join(&self.v, v));
        (self.k, self.v) = (Some(k.clone()), Some(v.clone()));
        (k, v)
    }

    /// Keeps batch rows `index` (i32, in the new order), as beam search does after each step:
    /// row r of the result is row `index[r]` of the cache.
    #[track_caller]
    pub fn reorder(&mut self, index: &Tensor) {
        for t in [&mut self.k, &mut self.v].into_iter().flatten() {
            *t = t.index_select(0, index);
        }
    }
}

/// Options of [`MultiheadAttention::with_options`], PyTorch's constructor arguments.
#[derive(Clone, Copy, Debug)]
pub struct MhaConfig {
    /// Key features (default: embed_dim).
    pub kdim: Option<usize>,
    /// Value features (default: embed_dim).
    pub vdim: Option<usize>,
    /// Biases on the input and output projections (default true).
    pub bias: bool,
    /// Inputs and outputs are (N, L, E) rather than (L, N, E) (default false, as PyTorch).
    pub batch_first: bool,
    /// Dropout on the attention weights in training (default 0).
    pub dropout: f32,
}

impl Default for MhaConfig {
    fn default() -> MhaConfig {
        MhaConfig { kdim: None, vdim: None, bias: true, batch_first: false, dropout: 0.0 }
    }
}

/// Masks and flags of one [`MultiheadAttention::forward_with`] call (PyTorch's `forward`
/// arguments).
#[derive(Clone)]
pub struct MhaOptions {
    /// (N, S) bool, true where a key is padding, or float, added to the scores.
    pub key_padding_mask: Option<Tensor>,
    /// (L, S) or (N·num_heads, L, S): bool, true where a query may not see a key, or float,
    /// added to the scores.
    pub attn_mask: Option<Tensor>,
    /// Query i sees keys j ≤ i only. Unlike PyTorch, where it is a hint that `attn_mask` is
    /// causal, this applies the causal mask itself, on the fused kernel.
    pub is_causal: bool,
    /// Return the attention weights, computed unfused (default false: the fused kernel, which
    /// never forms them). They are taken before dropout.
    pub need_weights: bool,
    /// Average the returned weights over heads, (N, L, S); else per head, (N, H, L, S)
    /// (default true).
    pub average_attn_weights: bool,
}

impl Default for MhaOptions {
    fn default() -> MhaOptions {
        MhaOptions {
            key_padding_mask: None,
            attn_mask: None,
            is_causal: false,
            need_weights: false,
            average_attn_weights: true,
        }
    }
}

/// Multi-head attention with PyTorch's semantics, parameters and state-dict names
/// (`in_proj_weight`, `in_proj_bias`, `out_proj.weight`, `out_proj.bias`; `q_proj_weight`,
/// `k_proj_weight`, `v_proj_weight` when `kdim` or `vdim` differ from `embed_dim`).
///
/// ```
/// use kiln::nn::{MhaConfig, MhaOptions, Module, MultiheadAttention};
/// use kiln::{Device, Tensor};
/// let dev = Device::Cpu;
/// let config = MhaConfig { batch_first: true, ..Default::default() };
/// let mha = MultiheadAttention::with_options(16, 4, config, &dev);
/// let x = Tensor::randn([2, 5, 16], &dev); // (N, L, E)
/// let padding = Tensor::from_vec(vec![false, false, false, true, true, false, false, false, false, false], [2, 5], &dev);
/// let options = MhaOptions { key_padding_mask: Some(padding), need_weights: true, ..Default::default() };
/// let (y, weights) = mha.forward_with(&x, &x, &x, &options);
/// assert_eq!(y.dims(), &[2, 5, 16]);
/// assert_eq!(weights.unwrap().dims(), &[2, 5, 5]); // averaged over heads
/// assert_eq!(mha.forward(&x).dims(), &[2, 5, 16]); // self-attention without masks
/// ```
pub struct MultiheadAttention {
    /// (3E, E) when keys and values have E features, else `None`.
    pub in_proj_weight: Option<Tensor>,
    /// (E, E), (E, kdim), (E, vdim) when kdim or vdim differ from E.
    pub qkv_proj_weights: Option<[Tensor; 3]>,
    /// (3E), if `bias`.
    pub in_proj_bias: Option<Tensor>,
    /// (E, E) output projection.
    pub out_proj: Linear,
    embed_dim: usize,
    num_heads: usize,
    config: MhaConfig,
    training: AtomicBool,
}

impl MultiheadAttention {
    /// Attention over `embed_dim` features in `num_heads` heads, with PyTorch's defaults.
    #[track_caller]
    pub fn new(embed_dim: usize, num_heads: usize, device: &Device) -> MultiheadAttention {
        MultiheadAttention::with_options(embed_dim, num_heads, MhaConfig::default(), device)
    }

    /// Attention with PyTorch's other constructor arguments, initialized as PyTorch does:
    /// Xavier-uniform projections, zero biases.
    #[track_caller]
    pub fn with_options(
        embed_dim: usize,
        num_heads: usize,
        config: MhaConfig,
        device: &Device,
    ) -> MultiheadAttention {
        if num_heads == 0 || !embed_dim.is_multiple_of(num_heads) {
            panic!("MultiheadAttention: embed_dim {embed_dim} must be divisible by num_heads {num_heads}");
        }
        let e = embed_dim;
        let (kdim, vdim) = (config.kdim.unwrap_or(e), config.vdim.unwrap_or(e));
        let (in_proj_weight, qkv_proj_weights) = if kdim == e && vdim == e {
            (Some(init::param(init::xavier_uniform([3 * e, e], e, 3 * e, device))), None)
        } else {
            let w = |fan_in: usize| init::param(init::xavier_uniform([e, fan_in], fan_in, e, device));
            (None, Some([w(e), w(kdim), w(vdim)]))
        };
        let zeros = |n: usize| init::param(Tensor::zeros([n], device));
        let out_proj = Linear::new(e, e, device);
        let out_proj = match config.bias {
            true => Linear { bias: Some(zeros(e)), ..out_proj },
            false => Linear { bias: None, ..out_proj },
        };
        MultiheadAttention {
            in_proj_weight,
            qkv_proj_weights,
            in_proj_bias: config.bias.then(|| zeros(3 * e)),
            out_proj,
            embed_dim,
            num_heads,
            config,
            training: AtomicBool::new(true),
        }
    }

    /// The number of heads.
    pub fn num_heads(&self) -> usize {
        self.num_heads
    }

    /// The projection weight and bias of part `i` (0 queries, 1 keys, 2 values).
    fn projection(&self, i: usize) -> (Tensor, Option<Tensor>) {
        let e = self.embed_dim;
        let w = match (&self.in_proj_weight, &self.qkv_proj_weights) {
            (Some(w), _) => w.narrow(0, i * e, e),
            (None, Some(ws)) => ws[i].clone(),
            (None, None) => unreachable!("one of the two forms is set at construction"),
        };
        (w, self.in_proj_bias.as_ref().map(|b| b.narrow(0, i * e, e)))
    }

    /// x (N, L, features) projected by part `i` and split into heads: (N, H, L, head_dim).
    fn project(&self, x: &Tensor, i: usize) -> Tensor {
        let (w, b) = self.projection(i);
        self.heads(&affine(x, &w, b.as_ref()))
    }

    /// (N, L, E) → (N, H, L, head_dim).
    fn heads(&self, y: &Tensor) -> Tensor {
        let (n, l) = (y.dim(0), y.dim(1));
        y.reshape([n, l, self.num_heads, self.embed_dim / self.num_heads]).transpose(1, 2)
    }

    /// Queries, keys and values projected into heads: one matmul for self-attention (the same
    /// tensor thrice), three otherwise.
    fn project_all(&self, q: &Tensor, k: &Tensor, v: &Tensor) -> (Tensor, Tensor, Tensor) {
        if let (Some(w), true) = (&self.in_proj_weight, q.same(k) && k.same(v)) {
            let y = affine(q, w, self.in_proj_bias.as_ref());
            let e = self.embed_dim;
            let part = |i: usize| self.heads(&y.narrow(-1, i * e, e));
            return (part(0), part(1), part(2));
        }
        (self.project(q, 0), self.project(k, 1), self.project(v, 2))
    }

    /// Attention of `query` over `key` and `value`, (L, N, E), (S, N, kdim), (S, N, vdim) — or
    /// (N, L, E), … with `batch_first`, or (L, E), … unbatched — with masks as `options` say.
    /// Returns the output, shaped as `query`, and, with `need_weights`, the attention weights
    /// (N, L, S), or (N, H, L, S) unaveraged; unbatched inputs drop the N.
    ///
    /// Panics (at the caller's line) on inputs or masks of the wrong shape.
    #[track_caller]
    pub fn forward_with(
        &self,
        query: &Tensor,
        key: &Tensor,
        value: &Tensor,
        options: &MhaOptions,
    ) -> (Tensor, Option<Tensor>) {
        let (q_in, k_in, v_in, unbatched) = self.batched(query, key, value);
        self.check_inputs(query, &q_in, &k_in, &v_in);
        let (q, k, v) = self.project_all(&q_in, &k_in, &v_in);
        let mask = self.combined_mask(options, &q_in, &k_in, unbatched);
        let (out, weights) =
            self.attend_heads(&q, &k, &v, mask.as_ref(), options.is_causal, 0, options.need_weights);
        let out = match (unbatched, self.config.batch_first) {
            (true, _) => out.squeeze(0),
            (false, true) => out,
            (false, false) => out.transpose(0, 1),
        };
        let weights = weights.map(|w| {
            let w = if options.average_attn_weights { w.mean(1, false) } else { w };
            if unbatched { w.squeeze(0) } else { w }
        });
        (out, weights)
    }

    /// Queries, keys and values batch-first, (N, L, E), and whether they came unbatched.
    fn batched(&self, query: &Tensor, key: &Tensor, value: &Tensor) -> (Tensor, Tensor, Tensor, bool) {
        let unbatched = query.rank() == 2;
        let batch = |x: &Tensor| match (unbatched, self.config.batch_first) {
            (true, _) => x.unsqueeze(0),
            (false, true) => x.clone(),
            (false, false) => x.transpose(0, 1),
        };
        if query.same(key) && key.same(value) {
            let x = batch(query);
            return (x.clone(), x.clone(), x, unbatched);
        }
        (batch(query), batch(key), batch(value), unbatched)
    }

    /// Attention of projected heads, then the output projection: (N, Tq, E).
    #[allow(clippy::too_many_arguments)]
    fn attend_heads(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        mask: Option<&Tensor>,
        causal: bool,
        causal_offset: usize,
        need_weights: bool,
    ) -> (Tensor, Option<Tensor>) {
        let training = self.training.load(Ordering::Relaxed);
        let attend = Attend {
            causal,
            causal_offset,
            mask,
            dropout: if training { self.config.dropout } else { 0.0 },
            need_weights,
        };
        let (out, weights) = scaled_dot_product(q, k, v, &attend);
        let (n, tq) = (q.dim(0), q.dim(2));
        let out = out.transpose(1, 2).reshape([n, tq, self.embed_dim]);
        (affine(&out, &self.out_proj.weight, self.out_proj.bias.as_ref()), weights)
    }

    /// Self-attention of new positions `x` (N, T, E) — batch-first whatever the module's layout
    /// — over the cached ones and themselves, appending their keys and values to `cache`: one
    /// step of incremental decoding. Causal: position i of `x` sees the cache and positions ≤ i.
    #[track_caller]
    pub fn forward_cached(&self, x: &Tensor, cache: &mut KvCache) -> Tensor {
        self.check_inputs(x, x, x, x);
        let offset = cache.len();
        let (q, k, v) = self.project_all(x, x, x);
        let (k, v) = cache.append(k, v);
        self.attend_heads(&q, &k, &v, None, true, offset, false).0
    }

    /// Keys and values of `memory` (N, S, E), batch-first, projected once for cross-attention
    /// over it at every decoding step ([`MultiheadAttention::forward_memory`]).
    pub fn project_memory(&self, memory: &Tensor) -> KvCache {
        KvCache { k: Some(self.project(memory, 1)), v: Some(self.project(memory, 2)) }
    }

    /// Cross-attention of `x` (N, T, E), batch-first, over keys and values projected by
    /// [`MultiheadAttention::project_memory`], with an optional (N, S) key-padding mask.
    #[track_caller]
    pub fn forward_memory(&self, x: &Tensor, memory: &KvCache, key_padding_mask: Option<&Tensor>) -> Tensor {
        let (k, v) =
            (memory.k.as_ref().expect("projected memory"), memory.v.as_ref().expect("projected memory"));
        let q = self.project(x, 0);
        let mut mask = None;
        if let Some(m) = key_padding_mask {
            self.check_mask("key_padding_mask", m, &[&[x.dim(0), k.dim(2)]]);
            mask = Some(additive(m, x.dtype()).reshape([x.dim(0), 1, 1, k.dim(2)]));
        }
        self.attend_heads(&q, k, v, mask.as_ref(), false, 0, false).0
    }

    #[track_caller]
    fn check_inputs(&self, query: &Tensor, q: &Tensor, k: &Tensor, v: &Tensor) {
        let (kdim, vdim) =
            (self.config.kdim.unwrap_or(self.embed_dim), self.config.vdim.unwrap_or(self.embed_dim));
        let ok = q.rank() == 3
            && k.rank() == 3
            && v.rank() == 3
            && q.dim(2) == self.embed_dim
            && k.dim(2) == kdim
            && v.dim(2) == vdim
            && q.dim(0) == k.dim(0)
            && k.dim(0) == v.dim(0)
            && k.dim(1) == v.dim(1);
        if !ok {
            panic!(
                "MultiheadAttention: query {}, key {}, value {} do not fit embed_dim {}, kdim {kdim}, vdim {vdim} \
                 ({}; batch_first {})",
                query.shape(),
                k.shape(),
                v.shape(),
                self.embed_dim,
                if query.rank() == 2 { "unbatched (L, E)" } else { "batched" },
                self.config.batch_first,
            );
        }
    }

    #[track_caller]
    fn check_mask(&self, name: &str, mask: &Tensor, allowed: &[&[usize]]) {
        if !allowed.contains(&mask.dims()) || !(mask.dtype() == DType::Bool || mask.dtype().is_float()) {
            let shapes: Vec<String> = allowed.iter().map(|s| Shape::new(s.to_vec()).to_string()).collect();
            panic!(
                "MultiheadAttention: {name} {} ({}) must be bool or float of shape {}",
                mask.shape(),
                mask.dtype(),
                shapes.join(" or ")
            );
        }
    }

    /// Panics at the caller's line if the masks of `options` do not fit queries (N, L, E) and
    /// keys (N, S, kdim), batch-first.
    #[track_caller]
    fn check_masks(&self, options: &MhaOptions, q: &Tensor, k: &Tensor, unbatched: bool) {
        let (n, l, s, h) = (q.dim(0), q.dim(1), k.dim(1), self.num_heads);
        if let Some(m) = &options.key_padding_mask {
            let allowed: &[&[usize]] = if unbatched { &[&[s]] } else { &[&[n, s]] };
            self.check_mask("key_padding_mask", m, allowed);
        }
        if let Some(m) = &options.attn_mask {
            self.check_mask("attn_mask", m, &[&[l, s], &[n * h, l, s]]);
        }
    }

    /// Panics at the caller's line if `query`, `key`, `value` or the masks of `options` do not
    /// fit this module, as [`MultiheadAttention::forward_with`] would: for layers that call it
    /// from closures, which would hide their caller's line.
    #[track_caller]
    pub(crate) fn check(&self, query: &Tensor, key: &Tensor, value: &Tensor, options: &MhaOptions) {
        let (q, k, v, unbatched) = self.batched(query, key, value);
        self.check_inputs(query, &q, &k, &v);
        self.check_masks(options, &q, &k, unbatched);
    }

    /// The key-padding and attention masks as one additive mask broadcasting to (N, H, L, S).
    #[track_caller]
    fn combined_mask(&self, options: &MhaOptions, q: &Tensor, k: &Tensor, unbatched: bool) -> Option<Tensor> {
        self.check_masks(options, q, k, unbatched);
        let (n, l, s, h) = (q.dim(0), q.dim(1), k.dim(1), self.num_heads);
        let dtype = q.dtype();
        let padding = options.key_padding_mask.as_ref().map(|m| additive(m, dtype).reshape([n, 1, 1, s]));
        let attn = options.attn_mask.as_ref().map(|m| {
            let m = additive(m, dtype);
            if m.rank() == 2 { m } else { m.reshape([n, h, l, s]) }
        });
        match (padding, attn) {
            (Some(p), Some(a)) => Some(p + a),
            (p, a) => p.or(a),
        }
    }
}

impl Module for MultiheadAttention {
    /// Self-attention of `x` without masks.
    fn forward(&self, x: &Tensor) -> Tensor {
        self.forward_with(x, x, x, &MhaOptions::default()).0
    }

    fn visit(&self, v: &mut dyn Visitor) {
        if let Some(w) = &self.in_proj_weight {
            v.param("in_proj_weight", w);
        }
        if let Some([q, k, w]) = &self.qkv_proj_weights {
            v.param("q_proj_weight", q);
            v.param("k_proj_weight", k);
            v.param("v_proj_weight", w);
        }
        if let Some(b) = &self.in_proj_bias {
            v.param("in_proj_bias", b);
        }
        v.child("out_proj", &self.out_proj);
    }

    fn set_training(&self, training: bool) {
        self.training.store(training, Ordering::Relaxed);
    }

    fn training(&self) -> Option<bool> {
        Some(self.training.load(Ordering::Relaxed))
    }
}
