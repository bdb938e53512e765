//! Where a [`Trainer`](super::Trainer)'s batches come from: a [`DataLoader`] (epochs of a
//! dataset), [`BpttStreams`] (epochs of a corpus read in order), or nanoGPT's [`RandomWindows`],
//! an endless stream for runs counted in steps. Validation reads a source's epoch 0 (the same
//! batches every time), or its first [`TrainConfig::eval_batches`](super::TrainConfig) of them.

use crate::data::lm::{BpttStreams, RandomWindows};
use crate::data::{Batch, DataLoader};

/// A source of batches, read one epoch at a time.
pub trait BatchSource {
    /// The number of batches in epoch `epoch`; `None` for an endless stream, which a run must
    /// bound with [`TrainConfig::max_steps`](super::TrainConfig::max_steps).
    fn batches_in(&self, epoch: u64) -> Option<usize>;

    /// The batches of epoch `epoch` from batch `skip` on (a resumed epoch skips those it trained
    /// on). An endless stream has one epoch.
    fn batches_from(&self, epoch: u64, skip: usize) -> Box<dyn Iterator<Item = Batch> + '_>;
}

impl BatchSource for DataLoader {
    fn batches_in(&self, _epoch: u64) -> Option<usize> {
        Some(self.batches())
    }

    fn batches_from(&self, epoch: u64, skip: usize) -> Box<dyn Iterator<Item = Batch> + '_> {
        Box::new(self.epoch(epoch).skip(skip))
    }
}

/// Endless: batch `i` of the run is [`RandomWindows::batch`]`(i)` (with gradient accumulation,
/// `i` counts micro-batches), so a resumed run draws the windows an uninterrupted one would, and
/// validation on the first N batches draws the same N windows every time.
impl BatchSource for RandomWindows {
    fn batches_in(&self, _epoch: u64) -> Option<usize> {
        None
    }

    fn batches_from(&self, _epoch: u64, skip: usize) -> Box<dyn Iterator<Item = Batch> + '_> {
        Box::new((skip as u64..).map(|i| self.batch(i)))
    }
}

impl BatchSource for BpttStreams {
    fn batches_in(&self, epoch: u64) -> Option<usize> {
        Some(self.epoch(epoch).len())
    }

    fn batches_from(&self, epoch: u64, skip: usize) -> Box<dyn Iterator<Item = Batch> + '_> {
        Box::new(self.epoch(epoch).skip(skip))
    }
}
