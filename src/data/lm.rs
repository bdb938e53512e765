//! Language-model batchers over one long sequence of token ids: inputs `x` (B, T) i32 and
//! next-token targets `y` (B, T) i32, `y[b, t]` being the token after `x[b, t]` in the corpus.
//!
//! - [`RandomWindows`]: B windows at random offsets per step, as nanoGPT's `get_batch`; the
//!   offsets come from a Philox [`RandomKey`] and the step number, so a run is reproducible and a
//!   resumed run draws the same batches from the step it resumes at.
//! - [`BpttStreams`]: the corpus split into B parallel streams read T tokens at a time, so that
//!   row `b` of one batch continues row `b` of the previous one and a recurrent state can be
//!   carried across batches (truncated backpropagation through time).

use super::Batch;
use crate::rng::RandomKey;
use crate::{Device, Error, Result, Tensor};
use std::sync::Arc;

/// A number in `0..n` from words `2 × pair` and `2 × pair + 1` of `key`'s stream (64 random bits
/// scaled to the range, so the bias is below n / 2⁶⁴).
fn draw_below(key: RandomKey, pair: u64, n: usize) -> usize {
    let bits = (u64::from(key.bits(2 * pair)) << 32) | u64::from(key.bits(2 * pair + 1));
    ((u128::from(bits) * n as u128) >> 64) as usize
}

/// The (B, T) input and target tensors of windows starting at `starts`.
fn windows(ids: &[i32], starts: impl Iterator<Item = usize>, batch: usize, time: usize) -> Batch {
    let mut x = Vec::with_capacity(batch * time);
    let mut y = Vec::with_capacity(batch * time);
    for start in starts {
        x.extend_from_slice(&ids[start..start + time]);
        y.extend_from_slice(&ids[start + 1..start + time + 1]);
    }
    Batch::new(
        Tensor::from_vec(x, [batch, time], &Device::Cpu),
        Tensor::from_vec(y, [batch, time], &Device::Cpu),
    )
}

#[track_caller]
fn check_positive(what: &str, batch: usize, time: usize) {
    if batch == 0 || time == 0 {
        panic!("{what}: batch size {batch} and window {time} must be positive");
    }
}

/// Random windows of a corpus, as nanoGPT's `get_batch`: step `s` draws B offsets `i` uniformly
/// from `0..len - T` and yields `x = ids[i..i + T]`, `y = ids[i + 1..i + T + 1]`.
///
/// ```
/// use kiln::data::lm::RandomWindows;
/// use kiln::rng::RandomKey;
///
/// let ids: Vec<i32> = (0..100).collect();
/// let train = RandomWindows::new(ids, 4, 8, RandomKey { seed: 1337, stream: 0 })?;
/// let batch = train.batch(0);
/// let (x, y) = (batch.inputs.to_vec::<i32>()?, batch.targets.to_vec::<i32>()?);
/// assert_eq!(batch.inputs.dims(), [4, 8]);
/// assert_eq!(y[0], x[0] + 1); // the corpus counts up, so each target is its input plus one
/// assert_eq!(train.batch(0).inputs.to_vec::<i32>()?, x); // the same step, the same batch
/// # Ok::<(), kiln::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct RandomWindows {
    ids: Arc<[i32]>,
    batch: usize,
    window: usize,
    key: RandomKey,
}

impl RandomWindows {
    /// Windows of `window` tokens, `batch` per step, drawn from `key`. A corpus too short for one
    /// window and its target (`window + 1` tokens) is an error; a zero batch or window panics.
    #[track_caller]
    pub fn new(
        ids: impl Into<Arc<[i32]>>,
        batch: usize,
        window: usize,
        key: RandomKey,
    ) -> Result<RandomWindows> {
        check_positive("RandomWindows", batch, window);
        let ids = ids.into();
        if ids.len() <= window {
            return Err(Error::Invalid(format!(
                "RandomWindows: a corpus of {} tokens is too short for a window of {window} and its \
                 next-token target ({} tokens)",
                ids.len(),
                window + 1
            )));
        }
        Ok(RandomWindows { ids, batch, window, key })
    }

    /// The start offsets of step `step`'s windows.
    pub fn offsets(&self, step: u64) -> Vec<usize> {
        let range = self.ids.len() - self.window;
        (0..self.batch).map(|b| draw_below(self.key, step * self.batch as u64 + b as u64, range)).collect()
    }

    /// The batch of step `step`: inputs and next-token targets, both (B, T) i32.
    pub fn batch(&self, step: u64) -> Batch {
        windows(&self.ids, self.offsets(step).into_iter(), self.batch, self.window)
    }
}

/// The corpus as B parallel streams read in consecutive windows of T tokens (truncated BPTT), as
/// d2l's sequential partitioning and PyTorch's word-language-model example: stream `b` is the
/// `b`-th of B equal contiguous slices, and batch `w` holds tokens `w·T..(w + 1)·T` of every
/// stream. Only whole windows are used; the tail of each stream shorter than T is left out.
///
/// ```
/// use kiln::data::lm::BpttStreams;
///
/// let ids: Vec<i32> = (0..13).collect();
/// let streams = BpttStreams::new(ids, 2, 3)?; // two streams of 6 tokens: 0..6 and 6..12
/// let batches: Vec<_> = streams.epoch(0).collect();
/// assert_eq!(batches.len(), 2);
/// assert_eq!(batches[0].inputs.to_vec::<i32>()?, [0, 1, 2, 6, 7, 8]);
/// assert_eq!(batches[1].inputs.to_vec::<i32>()?, [3, 4, 5, 9, 10, 11]);
/// assert_eq!(batches[1].targets.to_vec::<i32>()?, [4, 5, 6, 10, 11, 12]);
/// # Ok::<(), kiln::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct BpttStreams {
    ids: Arc<[i32]>,
    batch: usize,
    window: usize,
    offset_key: Option<RandomKey>,
}

impl BpttStreams {
    /// `batch` streams read `window` tokens at a time. A corpus too short for one window of
    /// every stream and the last target (`batch × window + 1` tokens) is an error; a zero batch
    /// or window panics.
    #[track_caller]
    pub fn new(ids: impl Into<Arc<[i32]>>, batch: usize, window: usize) -> Result<BpttStreams> {
        check_positive("BpttStreams", batch, window);
        let ids = ids.into();
        let needed = batch.checked_mul(window).and_then(|n| n.checked_add(1)).unwrap_or(usize::MAX);
        if ids.len() < needed {
            return Err(Error::Invalid(format!(
                "BpttStreams: a corpus of {} tokens is too short for {batch} streams of a window of \
                 {window} ({needed} tokens)",
                ids.len()
            )));
        }
        Ok(BpttStreams { ids, batch, window, offset_key: None })
    }

    /// Starts each epoch at an offset drawn from `key` and the epoch number, below T (and never
    /// so far that no whole window is left), as d2l does, so that windows do not always cut the
    /// corpus at the same places.
    pub fn with_random_offset(mut self, key: RandomKey) -> BpttStreams {
        self.offset_key = Some(key);
        self
    }

    /// Where epoch `epoch` starts in the corpus.
    pub fn offset(&self, epoch: u64) -> usize {
        let slack = self.ids.len() - (self.batch * self.window + 1);
        self.offset_key.map_or(0, |key| draw_below(key, epoch, self.window.min(slack + 1)))
    }

    /// The batches of epoch `epoch`, in order.
    pub fn epoch(&self, epoch: u64) -> BpttEpoch {
        let offset = self.offset(epoch);
        let stream_len = (self.ids.len() - offset - 1) / self.batch;
        BpttEpoch { streams: self.clone(), offset, stream_len, next: 0, windows: stream_len / self.window }
    }
}

/// The batches of one epoch of [`BpttStreams`].
pub struct BpttEpoch {
    streams: BpttStreams,
    offset: usize,
    stream_len: usize,
    next: usize,
    windows: usize,
}

impl Iterator for BpttEpoch {
    type Item = Batch;

    fn next(&mut self) -> Option<Batch> {
        if self.next == self.windows {
            return None;
        }
        let s = &self.streams;
        let at = self.offset + self.next * s.window;
        self.next += 1;
        Some(windows(&s.ids, (0..s.batch).map(|b| at + b * self.stream_len), s.batch, s.window))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.windows - self.next;
        (left, Some(left))
    }
}

impl ExactSizeIterator for BpttEpoch {}
