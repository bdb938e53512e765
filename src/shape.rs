//! `Shape`: the dimensions of a tensor, its row-major strides and the broadcasting rules.
//!
//! Shape errors are programmer errors: the helpers here panic with the op's name and the shapes,
//! and they are `#[track_caller]` so the panic points at the user's line, not at kiln.

use smallvec::SmallVec;
use std::fmt;

/// The dimensions of a tensor, outermost first. A scalar has no dimensions.
#[derive(Clone, PartialEq, Eq, Hash, Default)]
pub struct Shape(SmallVec<[usize; 6]>);

impl Shape {
    /// A shape from its dimensions.
    pub fn new(dims: impl Into<Vec<usize>>) -> Shape {
        Shape(SmallVec::from_vec(dims.into()))
    }

    /// The shape of a scalar (rank 0, one element).
    pub fn scalar() -> Shape {
        Shape(SmallVec::new())
    }

    /// The dimensions.
    pub fn dims(&self) -> &[usize] {
        &self.0
    }

    /// The number of dimensions.
    pub fn rank(&self) -> usize {
        self.0.len()
    }

    /// The number of elements (1 for a scalar).
    pub fn numel(&self) -> usize {
        self.0.iter().product()
    }

    /// Dimension `axis`.
    pub fn dim(&self, axis: usize) -> usize {
        self.0[axis]
    }

    /// Row-major (C-contiguous) strides, in elements.
    pub fn strides(&self) -> Vec<usize> {
        let mut strides = vec![1; self.rank()];
        for i in (0..self.rank().saturating_sub(1)).rev() {
            strides[i] = strides[i + 1] * self.0[i + 1];
        }
        strides
    }

    /// Resolves a possibly negative axis (`-1` is the last) against this rank.
    #[track_caller]
    pub fn axis(&self, op: &str, axis: isize) -> usize {
        let rank = self.rank() as isize;
        let a = if axis < 0 { axis + rank } else { axis };
        if a < 0 || a >= rank.max(1) || (rank == 0 && a != 0) {
            panic!("{op}: axis {axis} is out of range for a tensor of shape {self}");
        }
        a as usize
    }

    /// The shape both operands broadcast to, NumPy style: dimensions are aligned from the right,
    /// and each pair must be equal or contain a 1.
    #[track_caller]
    pub fn broadcast(op: &str, a: &Shape, b: &Shape) -> Shape {
        match Shape::try_broadcast(a, b) {
            Some(s) => s,
            None => panic!("{op}: shapes {a} and {b} cannot be broadcast together"),
        }
    }

    /// The broadcast shape, or `None` when the shapes are incompatible.
    pub fn try_broadcast(a: &Shape, b: &Shape) -> Option<Shape> {
        let rank = a.rank().max(b.rank());
        let mut dims: SmallVec<[usize; 6]> = smallvec::smallvec![0; rank];
        for (i, d) in dims.iter_mut().enumerate() {
            let da = a.dim_from_right(rank - 1 - i);
            let db = b.dim_from_right(rank - 1 - i);
            *d = match (da, db) {
                (x, y) if x == y => x,
                (1, y) => y,
                (x, 1) => x,
                _ => return None,
            };
        }
        Some(Shape(dims))
    }

    /// Dimension `k` counted from the right (0 is the last), or 1 past the rank.
    fn dim_from_right(&self, k: usize) -> usize {
        if k < self.rank() { self.0[self.rank() - 1 - k] } else { 1 }
    }

    /// The strides to read a tensor of this shape as if it had been broadcast to `target`:
    /// broadcast dimensions get stride 0. `target` must be a broadcast of `self`.
    pub fn broadcast_strides(&self, target: &Shape) -> Vec<usize> {
        let own = self.strides();
        let offset = target.rank() - self.rank();
        (0..target.rank())
            .map(|i| if i < offset || self.0[i - offset] == 1 { 0 } else { own[i - offset] })
            .collect()
    }

    /// This shape with `axes` set to 1 (`keepdim`) or removed.
    pub fn reduced(&self, axes: &[usize], keepdim: bool) -> Shape {
        let dims = self.0.iter().enumerate().filter_map(|(i, &d)| {
            if !axes.contains(&i) {
                Some(d)
            } else if keepdim {
                Some(1)
            } else {
                None
            }
        });
        Shape(dims.collect())
    }
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

impl fmt::Debug for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

impl From<Vec<usize>> for Shape {
    fn from(v: Vec<usize>) -> Shape {
        Shape(SmallVec::from_vec(v))
    }
}

impl From<&[usize]> for Shape {
    fn from(v: &[usize]) -> Shape {
        Shape(SmallVec::from_slice(v))
    }
}

impl<const N: usize> From<[usize; N]> for Shape {
    fn from(v: [usize; N]) -> Shape {
        Shape(SmallVec::from_slice(&v))
    }
}

impl From<&Shape> for Shape {
    fn from(s: &Shape) -> Shape {
        s.clone()
    }
}

impl From<usize> for Shape {
    fn from(n: usize) -> Shape {
        Shape(smallvec::smallvec![n])
    }
}

impl From<()> for Shape {
    fn from(_: ()) -> Shape {
        Shape::scalar()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broadcasting_follows_numpy() {
        let s = |d: &[usize]| Shape::from(d);
        assert_eq!(Shape::broadcast("t", &s(&[3, 1, 5]), &s(&[4, 1])), s(&[3, 4, 5]));
        assert_eq!(Shape::broadcast("t", &s(&[]), &s(&[2, 2])), s(&[2, 2]));
        assert!(Shape::try_broadcast(&s(&[3]), &s(&[4])).is_none());
        assert_eq!(s(&[3, 1]).broadcast_strides(&s(&[2, 3, 4])), vec![0, 1, 0]);
        assert_eq!(s(&[2, 3, 4]).strides(), vec![12, 4, 1]);
    }

    #[test]
    #[should_panic(expected = "add: shapes [3] and [4] cannot be broadcast together")]
    fn incompatible_shapes_panic_with_the_op_and_shapes() {
        Shape::broadcast("add", &Shape::from([3]), &Shape::from([4]));
    }

    #[test]
    fn negative_axes_count_from_the_end() {
        let s = Shape::from([2, 3, 4]);
        assert_eq!(s.axis("t", -1), 2);
        assert_eq!(s.axis("t", 0), 0);
        assert_eq!(Shape::scalar().axis("t", 0), 0);
    }
}
