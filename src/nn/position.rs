//! Positions for attention, which by itself is blind to order: the sinusoidal encoding of
//! "Attention Is All You Need" (Vaswani et al., 2017), learned position embeddings (GPT), and
//! rotary embeddings (RoFormer, Su et al., 2021; [`crate::ops::rope`]).
//!
//! Each takes inputs (…, L, E) — positions along the second-to-last axis, as batch-first
//! sequences (N, L, E) — and an `offset`, the position of the first row, for incremental
//! decoding.

use super::{Dropout, Module, Visitor, init};
use crate::ops::rope::{RopePairs, rope_tables};
use crate::{Device, Tensor};

#[track_caller]
fn check_positions(module: &str, x: &Tensor, offset: usize, max_len: usize, dim: usize) {
    if x.rank() < 2 || x.dim(-1) != dim || offset + x.dim(-2) > max_len {
        panic!(
            "{module}: input {} at offset {offset} needs (…, L, {dim}) with offset + L ≤ {max_len} positions",
            x.shape()
        );
    }
}

/// The fixed sinusoidal encoding added to the input, then dropout, as PyTorch's tutorial
/// `PositionalEncoding`: PE[p, 2i] = sin(p / 10000^(2i/E)), PE[p, 2i + 1] = cos(p / 10000^(2i/E)).
///
/// ```
/// use kiln::nn::{Module, SinusoidalPositionalEncoding};
/// use kiln::{Device, Tensor};
/// let pe = SinusoidalPositionalEncoding::new(8, 100, 0.0, &Device::Cpu);
/// let y = pe.forward(&Tensor::zeros([2, 5, 8], &Device::Cpu));
/// assert_eq!(y.to_vec::<f32>()?[..2], [0.0, 1.0]); // position 0: sin 0, cos 0
/// # Ok::<(), kiln::Error>(())
/// ```
pub struct SinusoidalPositionalEncoding {
    /// (max_len, E), computed in f64; not a parameter.
    pub pe: Tensor,
    dropout: Dropout,
}

impl SinusoidalPositionalEncoding {
    /// The encoding of `max_len` positions of `d_model` features, with dropout `p`.
    #[track_caller]
    pub fn new(d_model: usize, max_len: usize, p: f32, device: &Device) -> SinusoidalPositionalEncoding {
        let value = |pos: usize, k: usize| {
            let angle = pos as f64 / 10_000f64.powf((k - k % 2) as f64 / d_model as f64);
            if k.is_multiple_of(2) { angle.sin() } else { angle.cos() }
        };
        let pe: Vec<f32> = (0..max_len).flat_map(|p| (0..d_model).map(move |k| value(p, k) as f32)).collect();
        SinusoidalPositionalEncoding {
            pe: Tensor::from_vec(pe, [max_len, d_model], device),
            dropout: Dropout::new(p),
        }
    }

    /// `x` (…, L, E) plus the encodings of positions `offset..offset + L`, then dropout.
    #[track_caller]
    pub fn forward_at(&self, x: &Tensor, offset: usize) -> Tensor {
        check_positions("SinusoidalPositionalEncoding", x, offset, self.pe.dim(0), self.pe.dim(1));
        self.dropout.forward(&(x + self.pe.narrow(0, offset, x.dim(-2))))
    }
}

impl Module for SinusoidalPositionalEncoding {
    fn forward(&self, x: &Tensor) -> Tensor {
        self.forward_at(x, 0)
    }
    fn visit(&self, v: &mut dyn Visitor) {
        v.child("dropout", &self.dropout);
    }
}

/// Learned position embeddings added to the input, as GPT's `wpe`: a table of `max_len` vectors
/// (N(0, 1) at first, as `nn.Embedding`), state-dict name `weight`.
pub struct LearnedPositionalEmbedding {
    /// (max_len, E).
    pub weight: Tensor,
}

impl LearnedPositionalEmbedding {
    /// A table for `max_len` positions of `dim` features.
    #[track_caller]
    pub fn new(max_len: usize, dim: usize, device: &Device) -> LearnedPositionalEmbedding {
        LearnedPositionalEmbedding { weight: init::param(init::normal([max_len, dim], 1.0, device)) }
    }

    /// `x` (…, L, E) plus the embeddings of positions `offset..offset + L`.
    #[track_caller]
    pub fn forward_at(&self, x: &Tensor, offset: usize) -> Tensor {
        check_positions("LearnedPositionalEmbedding", x, offset, self.weight.dim(0), self.weight.dim(1));
        x + self.weight.narrow(0, offset, x.dim(-2))
    }
}

impl Module for LearnedPositionalEmbedding {
    fn forward(&self, x: &Tensor) -> Tensor {
        self.forward_at(x, 0)
    }
    fn visit(&self, v: &mut dyn Visitor) {
        v.param("weight", &self.weight);
    }
}

/// Rotary position embeddings for queries and keys (…, L, D) of head dimension D: the tables of
/// [`rope_tables`] for `max_len` positions, applied by the fused [`Tensor::rope`] op. It has no
/// parameters.
///
/// ```
/// use kiln::nn::RotaryEmbedding;
/// use kiln::{Device, Tensor};
/// let rope = RotaryEmbedding::new(16, 64, &Device::Cpu);
/// let q = Tensor::randn([2, 4, 10, 16], &Device::Cpu); // (N, H, L, D)
/// assert_eq!(rope.apply(&q, 3).dims(), q.dims()); // positions 3..13
/// ```
pub struct RotaryEmbedding {
    cos: Tensor,
    sin: Tensor,
    pairs: RopePairs,
}

impl RotaryEmbedding {
    /// Rotations of head dimension `dim` (even) for `max_len` positions, base 10,000, pairing
    /// halves (GPT-NeoX, Hugging Face).
    #[track_caller]
    pub fn new(dim: usize, max_len: usize, device: &Device) -> RotaryEmbedding {
        RotaryEmbedding::with_base(dim, max_len, 10_000.0, RopePairs::Halves, device)
    }

    /// Rotations with frequency base `base` and the given pairing.
    #[track_caller]
    pub fn with_base(
        dim: usize,
        max_len: usize,
        base: f64,
        pairs: RopePairs,
        device: &Device,
    ) -> RotaryEmbedding {
        let (cos, sin) = rope_tables(max_len, dim, base, device);
        RotaryEmbedding { cos, sin, pairs }
    }

    /// `x` (…, L, D) with row t rotated for position `offset + t`.
    #[track_caller]
    pub fn apply(&self, x: &Tensor, offset: usize) -> Tensor {
        x.rope(&self.cos, &self.sin, offset, self.pairs)
    }
}

impl Module for RotaryEmbedding {
    fn forward(&self, x: &Tensor) -> Tensor {
        self.apply(x, 0)
    }
    fn visit(&self, _: &mut dyn Visitor) {}
}
