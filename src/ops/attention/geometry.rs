//! Sizes and index maps of an attention node, shared by the CPU reference and the GPU launch:
//! how a flattened batch reads the key lengths and the mask broadcast over it, and where the
//! dropout draws of a query row start in the Philox stream.

use super::{Attention, MIN_SCORE};
use crate::Shape;
use crate::dtype::Float;
use crate::rng::RandomKey;

/// How batch `b` (flattened over q's batch dimensions) finds its element of an input broadcast
/// over them: element `(b / inner) % run`.
///
/// This holds when the dimensions the input does not broadcast form one contiguous run of q's
/// batch dimensions; [`contiguous_batch_shape`] says how far to expand an input that is not so.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct BatchIndex {
    inner: usize,
    run: usize,
}

impl BatchIndex {
    /// The index map of an input whose batch dimensions `dims` (right-aligned against q's `batch`,
    /// as broadcasting aligns them) broadcast to `batch`, in the contiguous form.
    pub fn of(dims: &[usize], batch: &[usize]) -> BatchIndex {
        let padded = right_aligned(dims, batch.len());
        let kept: Vec<usize> = (0..batch.len()).filter(|&a| padded[a] != 1).collect();
        match (kept.first(), kept.last()) {
            (Some(&first), Some(&last)) => {
                debug_assert!(padded[first..=last] == batch[first..=last], "{dims:?} against {batch:?}");
                BatchIndex {
                    inner: batch[last + 1..].iter().product(),
                    run: batch[first..=last].iter().product(),
                }
            }
            _ => BatchIndex { inner: 1, run: 1 },
        }
    }

    /// The input's element for batch `b`.
    pub fn at(&self, b: usize) -> usize {
        (b / self.inner) % self.run
    }

    /// (inner, run) for the kernels.
    pub fn parts(&self) -> (usize, usize) {
        (self.inner, self.run)
    }
}

/// `dims` with 1s in front, to `rank` dimensions.
fn right_aligned(dims: &[usize], rank: usize) -> Vec<usize> {
    std::iter::repeat_n(1, rank - dims.len()).chain(dims.iter().copied()).collect()
}

/// The batch dimensions (right-aligned to q's `batch`) an input with batch dimensions `dims` must
/// be expanded to for [`BatchIndex`], or `None` when it already has the contiguous form: every
/// broadcast dimension between its first and last full one is filled in.
pub(super) fn contiguous_batch_shape(dims: &[usize], batch: &[usize]) -> Option<Vec<usize>> {
    let mut padded = right_aligned(dims, batch.len());
    let first = padded.iter().position(|&n| n != 1)?;
    let last = padded.iter().rposition(|&n| n != 1)?;
    if padded[first..=last] == batch[first..=last] {
        return None;
    }
    padded[first..=last].copy_from_slice(&batch[first..=last]);
    Some(padded)
}

/// Where the additive mask of batch `b` holds entry (i, j): its batch's block, and row and
/// column strides that are 0 where the mask broadcasts over queries or keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct MaskIndex {
    pub batch: BatchIndex,
    /// Elements per batch block: the mask's Tq·Tk (each of them possibly 1).
    pub batch_stride: usize,
    pub row_stride: usize,
    pub col_stride: usize,
}

impl MaskIndex {
    fn of(mask: &Shape, batch: &[usize]) -> MaskIndex {
        let r = mask.rank();
        let (rows, cols) = (mask.dim(r - 2), mask.dim(r - 1));
        MaskIndex {
            batch: BatchIndex::of(&mask.dims()[..r - 2], batch),
            batch_stride: rows * cols,
            row_stride: if rows == 1 { 0 } else { cols },
            col_stride: if cols == 1 { 0 } else { 1 },
        }
    }

    /// The offset of query row `i` of batch `b` (key j is at `+ j·col_stride`).
    pub fn row_start(&self, b: usize, i: usize) -> usize {
        self.batch.at(b) * self.batch_stride + i * self.row_stride
    }
}

/// Attention dropout: weights are kept with probability 1 − p and scaled by 1 / (1 − p).
///
/// The draw for weight (b, i, j) of a node (b the flattened batch, i the query, j the key) is
/// element (b, i, j) of `Tensor::uniform([…batch, Tq, 4·⌈Tk/4⌉], 0, 1, key)`, kept when ≥ p:
/// each query row starts on a Philox block, so a kernel walking a row's keys draws one block
/// per four keys.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct DropoutDraw {
    pub p: f32,
    pub key: RandomKey,
}

impl DropoutDraw {
    /// 1 / (1 − p), computed in f64 and rounded once to f32 (as `dropout`), on every backend.
    pub fn scale(&self) -> f32 {
        (1.0 / (1.0 - f64::from(self.p))) as f32
    }

    /// Draws per query row in the stream: Tk rounded up to a whole Philox block.
    pub fn row_stride(tk: usize) -> usize {
        tk.div_ceil(4) * 4
    }
}

/// Sizes of an attention node and how it reads its optional inputs.
#[derive(Clone, Copy, Debug)]
pub(super) struct Geom {
    /// Every leading dimension of q, flattened.
    pub batch: usize,
    pub tq: usize,
    pub tk: usize,
    pub d: usize,
    pub dv: usize,
    pub scale: f64,
    pub causal: bool,
    pub lengths: Option<BatchIndex>,
    pub mask: Option<MaskIndex>,
    pub dropout: Option<DropoutDraw>,
}

impl Geom {
    /// The geometry of `op` from its inputs' shapes (q, k, v, then the optional inputs).
    pub fn of(op: &Attention, shapes: &[&Shape]) -> Geom {
        if let Some(heads) = op.packed {
            return Geom::packed(op, shapes[0], heads);
        }
        let (q, k, v) = (shapes[0], shapes[1], shapes[2]);
        let r = q.rank();
        let batch_dims = &q.dims()[..r - 2];
        Geom {
            batch: batch_dims.iter().product(),
            tq: q.dim(r - 2),
            tk: k.dim(r - 2),
            d: q.dim(r - 1),
            dv: v.dim(r - 1),
            scale: op.scale,
            causal: op.causal,
            lengths: op.lengths.then(|| BatchIndex::of(shapes[3].dims(), batch_dims)),
            mask: op.mask.then(|| MaskIndex::of(shapes[op.mask_input()], batch_dims)),
            dropout: op.dropout,
        }
    }

    /// The geometry of packed heads, `qkv` (…, T, 3·C) with C = `heads`·D: the batch runs over
    /// (…, heads), as it would over the heads split out, (…, heads, T, D).
    fn packed(op: &Attention, qkv: &Shape, heads: usize) -> Geom {
        let r = qkv.rank();
        let (t, d) = (qkv.dim(r - 2), qkv.dim(r - 1) / (3 * heads));
        Geom {
            batch: qkv.dims()[..r - 2].iter().product::<usize>() * heads,
            tq: t,
            tk: t,
            d,
            dv: d,
            scale: op.scale,
            causal: op.causal,
            lengths: None,
            mask: None,
            dropout: op.dropout,
        }
    }

    /// The keys batch `b` sees (a prefix): its key length, clamped to 0..=Tk, or all of them.
    pub fn key_limit(&self, b: usize, lengths: Option<&[i32]>) -> usize {
        match (self.lengths, lengths) {
            (Some(index), Some(n)) => (n[index.at(b)].max(0) as usize).min(self.tk),
            _ => self.tk,
        }
    }

    /// How many keys (a prefix) the query rows before `end` may see within the first `limit`:
    /// all of them, or with the causal mask the first `end`.
    pub fn visible_keys(&self, end: usize, limit: usize) -> usize {
        if self.causal { end.min(limit) } else { limit }
    }
}

/// A score `s` with the additive mask value `a`: −∞ (hidden) when `a` is −∞, otherwise s + a
/// floored at [`MIN_SCORE`].
pub(super) fn with_mask<T: Float>(s: T, a: T) -> T {
    if a == T::NEG_INFINITY { a } else { (s + a).max(T::of(MIN_SCORE)) }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The element each batch reads, by the index map, against the broadcast written out.
    fn reads(dims: &[usize], batch: &[usize]) -> Vec<usize> {
        let index = BatchIndex::of(dims, batch);
        (0..batch.iter().product()).map(|b| index.at(b)).collect()
    }

    #[test]
    fn batch_index_follows_broadcasting() {
        // (B, H) = (2, 3): per sequence, per head, shared, and the full shape
        assert_eq!(reads(&[2, 1], &[2, 3]), [0, 0, 0, 1, 1, 1]);
        assert_eq!(reads(&[3], &[2, 3]), [0, 1, 2, 0, 1, 2]);
        assert_eq!(reads(&[1, 3], &[2, 3]), [0, 1, 2, 0, 1, 2]);
        assert_eq!(reads(&[], &[2, 3]), [0; 6]);
        assert_eq!(reads(&[2, 3], &[2, 3]), [0, 1, 2, 3, 4, 5]);
        // a dimension of 1 in q's batch is neither kept nor broadcast
        assert_eq!(reads(&[2, 1, 1], &[2, 1, 2]), [0, 0, 1, 1]);
    }

    #[test]
    fn a_gap_between_kept_dimensions_is_filled_in() {
        assert_eq!(contiguous_batch_shape(&[2, 1, 4], &[2, 3, 4]), Some(vec![2, 3, 4]));
        assert_eq!(contiguous_batch_shape(&[2, 1, 4, 1], &[2, 3, 4, 5]), Some(vec![2, 3, 4, 1]));
        assert_eq!(contiguous_batch_shape(&[2, 1], &[2, 3]), None);
        assert_eq!(contiguous_batch_shape(&[3, 1], &[2, 3, 4]), None);
        assert_eq!(contiguous_batch_shape(&[], &[2, 3]), None);
        // once filled in, the map reads (b / 5) as the flat index of (2, 3, 4)
        assert_eq!(reads(&[2, 3, 4, 1], &[2, 3, 4, 5]), (0..120).map(|b| b / 5).collect::<Vec<_>>());
    }
}
