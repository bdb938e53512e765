//! Strided layouts shared by the ops: walking a tensor through strides on the CPU, collapsing
//! dimensions, and packing shapes and strides into GPU parameter blocks.
//!
//! Storage is always contiguous; broadcasting, permuting and slicing are expressed as strides
//! over it (stride 0 repeats an element). Before a launch, adjacent dimensions that are laid out
//! contiguously in every operand are merged, so most kernels see rank 1–3.

use crate::{Error, Result};

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
/// A rank over [`MAX_RANK`] or a value over 32 bits is an [`Error::TooLarge`] naming `op`.
pub fn pack(op: &str, v: &[usize], fill: u32) -> Result<[u32; MAX_RANK]> {
    if v.len() > MAX_RANK {
        return Err(too_large(
            op,
            format!("rank {} after collapsing exceeds the limit of {MAX_RANK}", v.len()),
        ));
    }
    let mut out = [fill; MAX_RANK];
    for (o, &x) in out.iter_mut().zip(v) {
        *o = u32_of(op, x)?;
    }
    Ok(out)
}

/// `x` as a u32 for a GPU parameter block. GPU kernels size and index with 32-bit integers, so
/// a value over `u32::MAX` is an [`Error::TooLarge`] naming `op` and the value.
pub fn u32_of(op: &str, x: usize) -> Result<u32> {
    u32::try_from(x)
        .map_err(|_| too_large(op, format!("{x} does not fit the GPU kernels' 32-bit sizes and indices")))
}

/// The error of a launch whose sizes exceed what the GPU kernels take.
fn too_large(op: &str, what: String) -> Error {
    Error::TooLarge { device: "the GPU".into(), detail: format!("{op}: {what}") }
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
    fn sizes_over_32_bits_are_errors_naming_the_op_and_the_size() {
        assert_eq!(u32_of("sum", u32::MAX as usize).unwrap(), u32::MAX);
        let big = u32::MAX as usize + 1;
        match u32_of("sum", big) {
            Err(Error::TooLarge { detail, .. }) => {
                assert!(detail.starts_with(&format!("sum: {big} ")), "{detail}")
            }
            other => panic!("expected TooLarge, got {other:?}"),
        }
        assert_eq!(pack("add", &[2, 3], 1).unwrap(), [2, 3, 1, 1, 1, 1, 1, 1]);
        match pack("add", &[2, big], 0) {
            Err(Error::TooLarge { detail, .. }) => {
                assert!(detail.starts_with(&format!("add: {big} ")), "{detail}")
            }
            other => panic!("expected TooLarge, got {other:?}"),
        }
        match pack("permute", &[2; MAX_RANK + 1], 0) {
            Err(Error::TooLarge { detail, .. }) => assert!(detail.contains("permute: rank 9"), "{detail}"),
            other => panic!("expected TooLarge, got {other:?}"),
        }
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
