//! `Dropout`: random zeroing in training, the identity in evaluation.

use super::{Module, Visitor};
use crate::Tensor;
use std::sync::atomic::{AtomicBool, Ordering};

/// Zeroes each element with probability `p` while training (scaling the rest by 1/(1 − p));
/// passes its input through unchanged in evaluation.
pub struct Dropout {
    p: f32,
    training: AtomicBool,
}

impl Dropout {
    /// Dropout with probability `p`, in training mode.
    #[track_caller]
    pub fn new(p: f32) -> Dropout {
        if !(0.0..1.0).contains(&p) {
            panic!("Dropout: p must be in [0, 1), got {p}");
        }
        Dropout { p, training: AtomicBool::new(true) }
    }
}

impl Module for Dropout {
    fn forward(&self, x: &Tensor) -> Tensor {
        if self.training.load(Ordering::Relaxed) { x.dropout(self.p) } else { x.clone() }
    }
    fn visit(&self, _: &mut dyn Visitor) {}
    fn set_training(&self, training: bool) {
        self.training.store(training, Ordering::Relaxed);
    }
    fn training(&self) -> Option<bool> {
        Some(self.training.load(Ordering::Relaxed))
    }
}
