//! Fused scaled dot-product attention, softmax(q·kᵀ·scale + masks)·v with dropout on the
//! weights, and its backward, without ever holding the T×T score matrix in memory: scores are
//! recomputed per block with an online softmax (the FlashAttention recipe, Dao et al. 2022).
//!
//! Masking, PyTorch's semantics: query i sees key j unless j ≥ the sequence's key length (key
//! padding), j > i with the causal mask (`is_causal`, aligned top-left), or the additive mask
//! holds −∞ at (i, j); a visible score is s = scale·qᵢ·kⱼ + maskᵢⱼ, floored at [`MIN_SCORE`]
//! (so a row of huge negative mask values, as `finfo.min` in PyTorch code, is averaged
//! uniformly, not hidden: only −∞ hides). A row that sees no key — where PyTorch returns NaN —
//! gets output 0 and passes no gradient, on every backend.
//!
//! Dropout keeps weight Pᵢⱼ with probability 1 − p and scales it by 1/(1 − p): with the fixed
//! draw Mᵢⱼ ∈ {0, 1/(1 − p)}, O = P̃·V where P̃ = P∘M. The draws come from Philox (see
//! `geometry::DropoutDraw` for the layout), so the CPU, the GPU, the backward passes and
//! [`Tensor::attention_unfused_with`] all drop the same weights without storing a mask.
//!
//! Backward is one node, `attention_grad`, whose output holds dk, dv and dq one after the
//! other. It computes each query row's statistics (its largest visible score mᵢ, the log-sum
//! ℓᵢ = ln Σⱼ exp(sᵢⱼ − mᵢ) and δᵢ = dOᵢ·Oᵢ), then the gradients for q and for k and v:
//!   Pᵢⱼ = exp((sᵢⱼ − mᵢ) − ℓᵢ),  dSᵢⱼ = Pᵢⱼ·(Mᵢⱼ·dOᵢ·vⱼ − δᵢ)
//!   dq = scale·dS·k,  dk = scale·dSᵀ·q,  dv = P̃ᵀ·dO
//! On the GPU that is three kernels — the statistics, dk and dv by key rows (into the node's
//! output), dq by query rows (copied in after them); on the CPU each head computes P and dS
//! once and all three gradients from them.
//! Why δ is still rowsum(dO∘O) with dropout: the loss sees P only through O, so
//! ∂L/∂Pᵢⱼ = Mᵢⱼ·dOᵢ·vⱼ, and the softmax gradient is dSᵢⱼ = Pᵢⱼ·(∂L/∂Pᵢⱼ − Σₗ Pᵢₗ·∂L/∂Pᵢₗ),
//! where Σₗ Pᵢₗ·Mᵢₗ·dOᵢ·vₗ = dOᵢ·(Σₗ P̃ᵢₗ·vₗ) = dOᵢ·Oᵢ. (m and ℓ are kept apart rather than
//! as one log-sum-exp m + ℓ: where the mask makes m huge, −10⁹ say, m + ℓ would round ℓ away.)
//! The mask is added to the scores, so it changes neither ∂s/∂q nor ∂s/∂k; it gets no gradient
//! itself (the rule returns `None` for it, as for the key lengths).
//!
//! Packed heads ([`Tensor::attention_packed`]): the same passes over the heads of one (…, T, 3·C)
//! projection, read and written where they lie — the output (…, T, C) with the heads side by
//! side, the gradient [dq | dk | dv] in the input's layout — so that a transformer's split into
//! heads and join back are not ops of their own (in the char-GPT's CPU step they took 8%
//! of the time, by the node timer: a permute and three slices forward, three slices, a concat
//! and a permute backward).

mod cpu;
mod geometry;
mod gpu;

use super::{
    CpuArg, Fault, GpuArg, Grad, Meta, Op, Tolerance, f16_rounding_summing, f16_via_f32, ulps_summing,
};
use crate::backend::cpu::{CpuStorage, with_float};
use crate::backend::wgpu::{GpuBuffer, Recorder};
use crate::rng::RandomKey;
use crate::{DType, Result, Shape, Tensor};
use geometry::{DropoutDraw, Geom, contiguous_batch_shape};
pub(crate) use gpu::variants;

/// The floor of a visible score with an additive mask: far below any real score, above the
/// kernels' marker for a hidden one (−3·10³⁸), so a visible key is never taken for hidden.
pub const MIN_SCORE: f64 = -1.0e38;

/// Statistics per query row that the backward passes read: (max, log-sum, δ).
const STATS: usize = 3;

/// Options of [`Tensor::attention_with`]: PyTorch's `scaled_dot_product_attention`, with key
/// padding given as per-sequence lengths.
///
/// ```
/// use kiln::{Device, Tensor, ops::attention::AttentionOptions, rng::RandomKey};
/// let dev = Device::Cpu;
/// let q = Tensor::randn([2, 4, 5, 8], &dev); // (B, H, T, D)
/// let lengths = Tensor::from_vec(vec![5i32, 3], [2, 1], &dev); // sequence 1 is padded after 3
/// let opts = AttentionOptions {
///     causal: true,
///     key_lengths: Some(lengths),
///     dropout: Some((0.1, RandomKey { seed: 1, stream: 0 })),
///     ..Default::default()
/// };
/// let y = q.attention_with(&q, &q, &opts);
/// assert_eq!(y.dims(), &[2, 4, 5, 8]);
/// ```
#[derive(Clone, Debug, Default)]
pub struct AttentionOptions {
    /// Query i sees keys j ≤ i only (PyTorch's `is_causal`, aligned top-left).
    pub causal: bool,
    /// The factor of q·kᵀ; `None` for 1/√D.
    pub scale: Option<f64>,
    /// Key padding: i32 lengths with q's batch shape (…), or one that broadcasts to it (as
    /// (B, 1) for q of (B, H, Tq, D)); keys j ≥ a sequence's length are hidden from it. A
    /// length outside 0..=Tk is an [`crate::Error::OutOfRange`] when the output is computed.
    pub key_lengths: Option<Tensor>,
    /// An additive mask (…, Tq, Tk) of q's dtype, added to the scaled scores, broadcast over
    /// q's batch dimensions (and over queries or keys where its dimension is 1): PyTorch's float
    /// `attn_mask`. −∞ hides a key; other entries must be finite. A bool mask `hide` becomes
    /// `hide.where_(&neg_inf, &zero)`. No gradient flows to the mask.
    pub mask: Option<Tensor>,
    /// Dropout on the attention weights: the probability p in [0, 1) and the Philox key of the
    /// draws (a module takes a fresh [`crate::rng::next_key`] per training step).
    pub dropout: Option<(f32, RandomKey)>,
}

/// Which attention pass a node runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Pass {
    /// (q, k, v, options…) → o
    Forward,
    /// (q, k, v, options…, dO, o) → [dk | dv | dq], each whole (flat: dk's elements, then dv's,
    /// then dq's), so that each is one contiguous block
    Grad,
}

/// An attention node. Its inputs are q, k, v, then the key lengths and the mask if present,
/// then the pass's own.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Attention {
    pass: Pass,
    scale: f64,
    causal: bool,
    /// Input 3 is the key lengths.
    lengths: bool,
    /// The input after the key lengths (if any) is the additive mask.
    mask: bool,
    dropout: Option<DropoutDraw>,
    /// Heads packed side by side ([`Tensor::attention_packed`]): the one input is (…, T, 3·C),
    /// [q | k | v] of this many heads each, the output (…, T, C), and the gradient pass's
    /// output the gradient of that input.
    packed: Option<usize>,
}

impl Attention {
    /// The position of the mask among the inputs.
    fn mask_input(&self) -> usize {
        3 + self.lengths as usize
    }

    /// The position of the first of the pass's own inputs.
    fn rest_input(&self) -> usize {
        3 + self.lengths as usize + self.mask as usize
    }

    fn geom(&self, args: &[CpuArg]) -> Geom {
        Geom::of(self, &args.iter().map(|a| a.shape).collect::<Vec<_>>())
    }
}

impl Op for Attention {
    fn name(&self) -> &'static str {
        match self.pass {
            Pass::Forward => "attention",
            Pass::Grad => "attention_grad",
        }
    }

    fn describe(&self) -> String {
        let mut options = format!("scale {}, causal {}", self.scale, self.causal);
        if self.lengths {
            options.push_str(", key lengths");
        }
        if self.mask {
            options.push_str(", mask");
        }
        if let Some(d) = self.dropout {
            options.push_str(&format!(", dropout {} {:?}", d.p, d.key));
        }
        if let Some(heads) = self.packed {
            options.push_str(&format!(", {heads} heads packed"));
        }
        format!("{}({:?}, {options})", self.name(), self.pass)
    }

    fn validate(&self, args: &[CpuArg]) -> Option<Fault> {
        // the passes of the backward take the forward's lengths, already checked
        if self.pass != Pass::Forward || !self.lengths {
            return None;
        }
        let tk = self.geom(args).tk;
        Fault::first("key length", args[3].data, tk + 1, None)
    }

    fn computes_f16(&self) -> bool {
        // the forward pass reads f16 into f32, computes in f32 and rounds its output once; the
        // backward passes compute f16 in f32 between casts, from f32 statistics, and so do both
        // passes of packed heads (whose GPU launch moves the heads with 4-byte copies)
        self.pass == Pass::Forward && self.packed.is_none()
    }

    fn cpu(&self, args: &[CpuArg], out: &Meta) -> CpuStorage {
        if out.dtype == DType::F16 {
            return f16_via_f32(args, |wide| self.cpu(wide, &Meta { dtype: DType::F32, ..*out }));
        }
        let g = self.geom(args);
        let lengths = self.lengths.then(|| args[3].data.as_slice::<i32>());
        with_float!(args[0].data, T, _q => {
            let f = |k: usize| args[k].data.as_slice::<T>();
            if let Some(heads) = self.packed {
                let rest: Vec<&[T]> = (1..args.len()).map(f).collect();
                return CpuStorage::from_vec(self.run_packed(&g, heads, f(0), &rest));
            }
            let inputs = cpu::Inputs {
                q: f(0),
                k: f(1),
                v: f(2),
                lengths,
                mask: self.mask.then(|| f(self.mask_input())),
                rest: (self.rest_input()..args.len()).map(f).collect(),
            };
            CpuStorage::from_vec(self.run(&g, &inputs))
        })
    }

    fn gpu(&self, args: &[GpuArg], out: &Meta, rec: &mut Recorder) -> Result<GpuBuffer> {
        gpu::launch(self, args, out, rec)
    }

    fn backward(&self, g: &Grad) -> Vec<Option<Tensor>> {
        let mut inputs = g.inputs.to_vec();
        inputs.extend([g.grad.clone(), g.output.clone()]);
        if self.packed.is_some() {
            // [dq | dk | dv] in the packed input's own layout
            let qkv = &g.inputs[0];
            let grad = Tensor::from_op(
                Attention { pass: Pass::Grad, ..*self },
                inputs,
                qkv.shape().clone(),
                qkv.dtype(),
            );
            return vec![Some(grad)];
        }
        let (q, k, v) = (&g.inputs[0], &g.inputs[1], &g.inputs[2]);
        let (q_len, k_len, v_len) = (q.numel(), k.numel(), v.numel());
        let grads = Tensor::from_op(
            Attention { pass: Pass::Grad, ..*self },
            inputs,
            Shape::from([q_len + k_len + v_len]),
            q.dtype(),
        );
        let dk = grads.narrow(0, 0, k_len).reshape(k.shape().clone());
        let dv = grads.narrow(0, k_len, v_len).reshape(v.shape().clone());
        let dq = grads.narrow(0, k_len + v_len, q_len).reshape(q.shape().clone());
        let mut grads = vec![Some(dq), Some(dk), Some(dv)];
        // none for the key lengths and the mask
        grads.resize(g.inputs.len(), None);
        grads
    }

    fn tolerance(&self, args: &[CpuArg], out: &Meta) -> Tolerance {
        // scores are dot products of length D (plus a mask value), outputs sums over the keys
        // (and, backward, over the queries) of products with them, and δ a dot product of
        // length Dv; exp on the GPU is a few ulps off per score. Dropout only scales kept terms
        // by one rounded factor, the same on both sides.
        let g = self.geom(args);
        match self.pass {
            // f16: then one rounding to f16
            Pass::Forward if out.dtype == DType::F16 => f16_rounding_summing(g.d + g.tk),
            Pass::Forward => ulps_summing(16.0, g.d + g.tk),
            Pass::Grad => ulps_summing(32.0, g.d + g.dv + g.tk.max(g.tq)),
        }
    }
}

/// An attention call's inputs, checked, with the optional ones in the form the kernels index.
struct Call {
    q: Tensor,
    k: Tensor,
    v: Tensor,
    scale: f64,
    causal: bool,
    lengths: Option<Tensor>,
    mask: Option<Tensor>,
    dropout: Option<DropoutDraw>,
}

/// The dropout of `opts`, checked (panicking at the caller's line); none for p = 0.
#[track_caller]
fn dropout_draw(op: &str, opts: &AttentionOptions) -> Option<DropoutDraw> {
    let (p, key) = opts.dropout?;
    if !(0.0..1.0).contains(&p) {
        panic!("{op}: dropout p must be in [0, 1), got {p}");
    }
    (p > 0.0).then_some(DropoutDraw { p, key })
}

/// Whether `dims` broadcasts to `to` (right-aligned, each dimension 1 or equal).
fn broadcasts(dims: &[usize], to: &[usize]) -> bool {
    dims.len() <= to.len() && dims.iter().rev().zip(to.iter().rev()).all(|(&a, &b)| a == b || a == 1)
}

impl Call {
    /// Checks the shapes and dtypes of a call of `op` (panicking at the caller's line).
    #[track_caller]
    fn new(op: &str, q: &Tensor, k: &Tensor, v: &Tensor, opts: &AttentionOptions) -> Call {
        let r = q.rank();
        let ok = r >= 2
            && k.rank() == r
            && v.rank() == r
            && q.dims()[..r - 2] == k.dims()[..r - 2]
            && q.dims()[..r - 2] == v.dims()[..r - 2]
            && q.dim(-1) == k.dim(-1)
            && k.dim(-2) == v.dim(-2)
            && q.dtype() == k.dtype()
            && q.dtype() == v.dtype()
            && q.dtype().is_float();
        if !ok {
            panic!(
                "{op}: q {}, k {}, v {} ({}) must be float (…, Tq, D), (…, Tk, D), (…, Tk, Dv)",
                q.shape(),
                k.shape(),
                v.shape(),
                q.dtype()
            );
        }
        let batch = &q.dims()[..r - 2];
        let (tq, tk) = (q.dim(-2), k.dim(-2));
        // (panics stay out of closures, which would hide the caller's line)
        let mut lengths = None;
        if let Some(n) = &opts.key_lengths {
            if n.dtype() != DType::I32 || !broadcasts(n.dims(), batch) {
                panic!(
                    "{op}: key_lengths {} ({}) must be i32 with q's batch shape {batch:?} or one that broadcasts to it (q {}, k {})",
                    n.shape(),
                    n.dtype(),
                    q.shape(),
                    k.shape()
                );
            }
            lengths = Some(match contiguous_batch_shape(n.dims(), batch) {
                Some(dims) => n.expand(dims),
                None => n.clone(),
            });
        }
        let mut mask = None;
        if let Some(m) = &opts.mask {
            let mr = m.rank();
            let fits = |n: usize, t: usize| n == 1 || n == t;
            if m.dtype() != q.dtype()
                || mr < 2
                || !fits(m.dims()[mr - 2], tq)
                || !fits(m.dims()[mr - 1], tk)
                || !broadcasts(&m.dims()[..mr - 2], batch)
            {
                panic!(
                    "{op}: mask {} ({}) must be {} of shape (…, Tq, Tk) = (…, {tq}, {tk}), each dimension 1 or q's, broadcast over q's batch shape {batch:?} (q {}, k {})",
                    m.shape(),
                    m.dtype(),
                    q.dtype(),
                    q.shape(),
                    k.shape()
                );
            }
            mask = Some(match contiguous_batch_shape(&m.dims()[..mr - 2], batch) {
                Some(mut dims) => {
                    dims.extend_from_slice(&m.dims()[mr - 2..]);
                    m.expand(dims)
                }
                None => m.clone(),
            });
        }
        let dropout = dropout_draw(op, opts);
        Call {
            q: q.clone(),
            k: k.clone(),
            v: v.clone(),
            scale: opts.scale.unwrap_or(1.0 / (q.dim(-1) as f64).sqrt()),
            causal: opts.causal,
            lengths,
            mask,
            dropout,
        }
    }
}

impl Tensor {
    /// Scaled dot-product attention of queries `self` (…, Tq, D) over keys `k` (…, Tk, D) and
    /// values `v` (…, Tk, Dv): softmax(q·kᵀ·scale)·v, with scale 1/√D by default and, if
    /// `causal`, query i attending to keys j ≤ i only. Fused: no Tq×Tk matrix is stored.
    /// [`Tensor::attention_with`] adds key padding, an additive mask and dropout.
    #[track_caller]
    pub fn attention(&self, k: &Tensor, v: &Tensor, causal: bool, scale: Option<f64>) -> Tensor {
        self.attention_with(k, v, &AttentionOptions { causal, scale, ..Default::default() })
    }

    /// Fused attention with [`AttentionOptions`]: key lengths, an additive mask, the causal
    /// mask and dropout on the weights, combined (see the module doc for the semantics). A
    /// query that sees no key gets output 0 and no gradient (PyTorch gives NaN).
    #[track_caller]
    pub fn attention_with(&self, k: &Tensor, v: &Tensor, opts: &AttentionOptions) -> Tensor {
        let call = Call::new("attention", self, k, v, opts);
        let op = Attention {
            pass: Pass::Forward,
            scale: call.scale,
            causal: call.causal,
            lengths: call.lengths.is_some(),
            mask: call.mask.is_some(),
            dropout: call.dropout,
            packed: None,
        };
        let mut dims = self.dims().to_vec();
        *dims.last_mut().expect("rank ≥ 2") = v.dim(-1);
        let inputs = [call.q, call.k, call.v].into_iter().chain(call.lengths).chain(call.mask);
        Tensor::from_op(op, inputs, Shape::new(dims), self.dtype())
    }

    /// Multi-head self-attention over heads packed side by side: `self` is (…, T, 3·C), the
    /// queries, keys and values of `heads` heads of C / `heads` features each, as one
    /// projection to 3·C makes them (nanoGPT's `c_attn`, the in-projection of
    /// `nn.MultiheadAttention`); the output is (…, T, C), the heads side by side again. The
    /// same values as splitting the heads, [`Tensor::attention_with`] and joining them —
    /// dropout draws included — without moving the heads in and out of memory of their own:
    /// the CPU gathers each head's rows as it computes it, and the gradient comes back in
    /// `self`'s layout. Causal masking, the scale and dropout are taken from `opts`; key
    /// lengths and masks are not (split the heads and use [`Tensor::attention_with`]).
    ///
    /// ```
    /// use kiln::{Device, Tensor, ops::attention::AttentionOptions};
    /// let qkv = Tensor::randn([2, 5, 3 * 8], &Device::Cpu); // (B, T, 3C), C = 2 heads × 4
    /// let y = qkv.attention_packed(2, &AttentionOptions { causal: true, ..Default::default() });
    /// assert_eq!(y.dims(), &[2, 5, 8]);
    /// ```
    #[track_caller]
    pub fn attention_packed(&self, heads: usize, opts: &AttentionOptions) -> Tensor {
        let r = self.rank();
        let width = if r >= 2 { self.dim(-1) } else { 0 };
        if r < 2 || heads == 0 || !width.is_multiple_of(3 * heads) || !self.dtype().is_float() {
            panic!(
                "attention_packed: qkv {} ({}) must be float (…, T, 3·C) with C a multiple of {heads} heads",
                self.shape(),
                self.dtype()
            );
        }
        if opts.key_lengths.is_some() || opts.mask.is_some() {
            panic!(
                "attention_packed: key lengths and masks are not taken here (qkv {}): split the heads and use attention_with",
                self.shape()
            );
        }
        let head_dim = width / (3 * heads);
        let op = Attention {
            pass: Pass::Forward,
            scale: opts.scale.unwrap_or(1.0 / (head_dim as f64).sqrt()),
            causal: opts.causal,
            lengths: false,
            mask: false,
            dropout: dropout_draw("attention_packed", opts),
            packed: Some(heads),
        };
        let mut dims = self.dims().to_vec();
        dims[r - 1] = width / 3;
        Tensor::from_op(op, [self.clone()], Shape::new(dims), self.dtype())
    }

    /// The same attention computed unfused, as matmul → masked softmax → matmul: it stores the
    /// Tq×Tk scores. For checking the fused kernel and for measuring what fusion saves.
    #[track_caller]
    pub fn attention_unfused(&self, k: &Tensor, v: &Tensor, causal: bool, scale: Option<f64>) -> Tensor {
        self.attention_unfused_with(k, v, &AttentionOptions { causal, scale, ..Default::default() }).0
    }

    /// [`Tensor::attention_with`] computed unfused, returning the output and the attention
    /// weights (…, Tq, Tk) — after masking and softmax, before dropout — for heat maps
    /// (PyTorch's `need_weights`; averaging over heads is the module's choice). Dropout draws
    /// the same weights as the fused op for the same key, so the two outputs agree. Key lengths
    /// are not range-checked here: one past Tk hides nothing, a negative one everything.
    #[track_caller]
    pub fn attention_unfused_with(
        &self,
        k: &Tensor,
        v: &Tensor,
        opts: &AttentionOptions,
    ) -> (Tensor, Tensor) {
        let call = Call::new("attention_unfused", self, k, v, opts);
        let (tq, tk, dtype, device) = (self.dim(-2), k.dim(-2), self.dtype(), self.device());
        let scalar = |x: f64| Tensor::full(Shape::scalar(), x, dtype, &device);
        let neg_inf = scalar(f64::NEG_INFINITY);
        let mut scores = self.matmul(&k.t()) * call.scale;
        if let Some(mask) = &call.mask {
            let shown = (&scores + mask).maximum(&scalar(MIN_SCORE));
            scores = mask.eq_scalar(f64::NEG_INFINITY).where_(&neg_inf, &shown);
        }
        let keys = Tensor::arange_typed(0.0, tk as f64, 1.0, DType::I32, &device);
        if call.causal {
            let queries = Tensor::arange_typed(0.0, tq as f64, 1.0, DType::I32, &device).reshape([tq, 1]);
            scores = keys.reshape([1, tk]).gt(&queries).where_(&neg_inf, &scores);
        }
        if let Some(lengths) = &call.lengths {
            let mut dims = lengths.dims().to_vec();
            dims.extend([1, 1]);
            scores = keys.ge(&lengths.reshape(dims)).where_(&neg_inf, &scores);
        }
        // a row that sees no key (only key lengths or a mask can hide a whole row) gets
        // weights 0, where softmax would give NaN
        let zero = scalar(0.0);
        let weights = if call.lengths.is_some() || call.mask.is_some() {
            let empty = scores.max(-1, true).eq_scalar(f64::NEG_INFINITY);
            empty.where_(&zero, &empty.where_(&zero, &scores).softmax(-1))
        } else {
            scores.softmax(-1)
        };
        let dropped = match call.dropout {
            Some(draw) => {
                let mut dims = self.dims()[..self.rank() - 2].to_vec();
                dims.extend([tq, DropoutDraw::row_stride(tk)]);
                let uniform = Tensor::uniform(dims, 0.0, 1.0, draw.key, &device).narrow(-1, 0, tk);
                let kept = &weights * f64::from(draw.scale());
                uniform.ge_scalar(f64::from(draw.p)).where_(&kept, &zero)
            }
            None => weights.clone(),
        };
        (dropped.matmul(v), weights)
    }
}
