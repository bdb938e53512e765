//! Strided layouts shared by the ops: walking a tensor through strides on the CPU, collapsing
//! dimensions, and packing shapes and strides into GPU parameter blocks.
//!
//! Storage is always contiguous; broadcasting, permuting and slicing are expressed as strides
//! over it (stride 0 repeats an element). Before a launch, adjacent dimensions that are laid out
//! contiguously in every operand are merged, so most kernels see rank 1–3.

/// The highest rank a GPU kernel's parameter block holds (after collapsing).
pub const MAX_RANK: usize = 8;

/// The element offsets, in row-major order of `shape`, of a layout with `strides` starting at
/// `start`. An odometer: no division per element.
pub fn offsets(shape: &[usize], strides: &[usize], start: usize) -> Offsets {
    Offsets {
        shape: shape.to_vec(),
        strides: strides.to_vec(),
        index: vec![0; shape.len()],
        offset: start,
        remaining: shape.iter().product(),
    }
}

/// Iterator returned by [`offsets`].
pub struct Offsets {
    shape: Vec<usize>,
    strides: Vec<usize>,
    index: Vec<usize>,
    offset: usize,
    remaining: usize,
}

impl Iterator for Offsets {
    type Item = usize;

    fn next(&mut self) -> Option<usize> {
        if self.remaining == 0 {
            return None;
        }
        self.remaining -= 1;
        let current = self.offset;
        for d in (0..self.shape.len()).rev() {
            self.index[d] += 1;
            self.offset += self.strides[d];
            if self.index[d] < self.shape[d] {
                break;
            }
            self.offset -= self.strides[d] * self.shape[d];
            self.index[d] = 0;
        }
        Some(current)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.remaining, Some(self.remaining))
    }
}

/// Merges adjacent dimensions of `shape` that are contiguous with each other in every one of
/// `strides` (dimension `d` folds into `d+1` when `stride[d] == stride[d+1] * shape[d+1]` for
/// all operands), and drops dimensions of size 1. Returns the new shape and strides.
pub fn collapse(shape: &[usize], strides: &[Vec<usize>]) -> (Vec<usize>, Vec<Vec<usize>>) {
    let mut out_shape: Vec<usize> = Vec::new();
    let mut out_strides: Vec<Vec<usize>> = vec![Vec::new(); strides.len()];
    for d in 0..shape.len() {
        if shape[d] == 1 {
            continue;
        }
        let mergeable = !out_shape.is_empty()
            && strides
                .iter()
                .zip(&out_strides)
                .all(|(s, o)| *o.last().expect("same length as out_shape") == s[d] * shape[d]);
        if mergeable {
            *out_shape.last_mut().expect("non-empty") *= shape[d];
            for (s, o) in strides.iter().zip(out_strides.iter_mut()) {
                *o.last_mut().expect("non-empty") = s[d];
            }
        } else {
            out_shape.push(shape[d]);
            for (s, o) in strides.iter().zip(out_strides.iter_mut()) {
                o.push(s[d]);
            }
        }
    }
    (out_shape, out_strides)
}

/// `v` as a fixed-size `[u32; MAX_RANK]` for a GPU parameter block, padded with `fill`.
/// Panics when the rank is over [`MAX_RANK`] or a value does not fit 32 bits.
#[track_caller]
pub fn pack(op: &str, v: &[usize], fill: u32) -> [u32; MAX_RANK] {
    if v.len() > MAX_RANK {
        panic!("{op}: rank {} after collapsing exceeds the GPU limit of {MAX_RANK}", v.len());
    }
    let mut out = [fill; MAX_RANK];
    for (o, &x) in out.iter_mut().zip(v) {
        *o = u32::try_from(x).unwrap_or_else(|_| panic!("{op}: {x} does not fit in 32 bits"));
    }
    out
}

/// A value as u32 for a GPU parameter block; panics if it does not fit.
#[track_caller]
pub fn u32_of(op: &str, x: usize) -> u32 {
    u32::try_from(x).unwrap_or_else(|_| panic!("{op}: {x} does not fit in 32 bits"))
}

/// Splits `shape` around `axis` into (outer, size, inner) element counts.
pub fn around(shape: &[usize], axis: usize) -> (usize, usize, usize) {
    let outer = shape[..axis].iter().product();
    let inner = shape[axis + 1..].iter().product();
    (outer, shape[axis], inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_walk_strides_in_row_major_order() {
        // a transposed 2x3 view of a 3x2 buffer
        let got: Vec<usize> = offsets(&[2, 3], &[1, 2], 0).collect();
        assert_eq!(got, vec![0, 2, 4, 1, 3, 5]);
        let bcast: Vec<usize> = offsets(&[2, 2], &[0, 1], 5).collect();
        assert_eq!(bcast, vec![5, 6, 5, 6]);
        assert_eq!(offsets(&[], &[], 3).collect::<Vec<_>>(), vec![3]);
        assert_eq!(offsets(&[0, 4], &[4, 1], 0).count(), 0);
    }

    #[test]
    fn collapse_merges_contiguous_dims_only() {
        let (s, st) = collapse(&[2, 3, 4], &[vec![12, 4, 1], vec![0, 4, 1]]);
        assert_eq!(s, vec![2, 12]);
        assert_eq!(st, vec![vec![12, 1], vec![0, 1]]);
        let (s, _) = collapse(&[1, 5, 1], &[vec![5, 1, 1]]);
        assert_eq!(s, vec![5]);
    }
}
