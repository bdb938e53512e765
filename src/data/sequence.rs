//! Variable-length token sequences: the padding collate and a dataset of sequences with a class
//! or a target sequence each (text classification, translation).
//!
//! A batch pads every sequence to the batch's longest with the pad id and carries a
//! [`Padding`]: the lengths (B) i32 and a (B, T) bool mask, true at real tokens.
//!
//! ```
//! use kiln::data::sequence::SequenceDataset;
//! use kiln::data::vocab::Vocab;
//! use kiln::data::{DataLoader, Dataset};
//!
//! let pairs = SequenceDataset::translation(vec![vec![5, 6, 7], vec![8]], vec![vec![2, 9, 3], vec![2, 3]]);
//! let batch = pairs.batch(&[0, 1]);
//! assert_eq!(batch.inputs.to_vec::<i32>()?, [5, 6, 7, 8, Vocab::PAD, Vocab::PAD]);
//! let source = batch.input_padding.unwrap();
//! assert_eq!(source.lengths.to_vec::<i32>()?, [3, 1]);
//! assert_eq!(source.mask.to_vec::<bool>()?, [true, true, true, true, false, false]);
//! assert_eq!(batch.target_padding.unwrap().lengths.to_vec::<i32>()?, [3, 2]);
//! // it works with the DataLoader's shuffling, bucketing and background prefetch
//! let loader = DataLoader::new(pairs, 32).shuffle(1).bucket_by_length(10);
//! assert_eq!(loader.epoch(0).count(), 1);
//! # Ok::<(), kiln::Error>(())
//! ```

use super::vocab::Vocab;
use super::{Batch, Dataset, Padding};
use crate::{Device, Tensor};
use std::sync::Arc;

/// Pads `sequences` to the longest with `pad`: the (B, T) i32 ids and their [`Padding`]. Empty
/// sequences are allowed (length 0, an all-false mask row); when every sequence is empty, T is 0.
///
/// ```
/// use kiln::data::sequence::pad_sequences;
///
/// let (ids, padding) = pad_sequences(&[&[7, 8][..], &[], &[9]], 0);
/// assert_eq!(ids.dims(), [3, 2]);
/// assert_eq!(ids.to_vec::<i32>()?, [7, 8, 0, 0, 9, 0]);
/// assert_eq!(padding.lengths.to_vec::<i32>()?, [2, 0, 1]);
/// assert_eq!(padding.mask.to_vec::<bool>()?, [true, true, false, false, true, false]);
/// # Ok::<(), kiln::Error>(())
/// ```
pub fn pad_sequences(sequences: &[&[i32]], pad: i32) -> (Tensor, Padding) {
    let batch = sequences.len();
    let time = sequences.iter().map(|s| s.len()).max().unwrap_or(0);
    let mut ids = Vec::with_capacity(batch * time);
    let mut mask = Vec::with_capacity(batch * time);
    for s in sequences {
        ids.extend_from_slice(s);
        ids.resize(ids.len() + time - s.len(), pad);
        mask.extend((0..time).map(|t| t < s.len()));
    }
    let lengths: Vec<i32> = sequences.iter().map(|s| to_i32_len(s.len())).collect();
    let padding = Padding {
        lengths: Tensor::from_vec(lengths, [batch], &Device::Cpu),
        mask: Tensor::from_vec(mask, [batch, time], &Device::Cpu),
    };
    (Tensor::from_vec(ids, [batch, time], &Device::Cpu), padding)
}

/// A length as the i32 the lengths tensor holds (sequences past 2³¹ tokens are not batched).
fn to_i32_len(len: usize) -> i32 {
    i32::try_from(len).unwrap_or_else(|_| panic!("pad_sequences: a sequence of {len} tokens is too long"))
}

/// What each sequence of a [`SequenceDataset`] is paired with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SequenceTargets {
    /// A class index (text classification).
    Classes(Vec<i32>),
    /// A token sequence (translation), padded like the inputs.
    Sequences(Vec<Vec<i32>>),
}

/// Token-id sequences, each with a class or a target sequence. Its batches are padded with
/// [`pad_sequences`]: `inputs` (B, T) i32 with `input_padding`, and `targets` either (B) i32
/// classes or (B, T') i32 sequences with `target_padding`. A sample's length for
/// [`DataLoader::bucket_by_length`](super::DataLoader::bucket_by_length) is its input's length.
#[derive(Clone)]
pub struct SequenceDataset {
    inputs: Arc<Vec<Vec<i32>>>,
    targets: Arc<SequenceTargets>,
    pad: i32,
}

impl SequenceDataset {
    /// Sequences and their targets, padded with [`Vocab::PAD`]. Panics when the counts differ.
    #[track_caller]
    pub fn new(inputs: Vec<Vec<i32>>, targets: SequenceTargets) -> SequenceDataset {
        let n = match &targets {
            SequenceTargets::Classes(c) => c.len(),
            SequenceTargets::Sequences(s) => s.len(),
        };
        if inputs.len() != n {
            panic!("SequenceDataset: {} input sequences for {n} targets", inputs.len());
        }
        SequenceDataset { inputs: Arc::new(inputs), targets: Arc::new(targets), pad: Vocab::PAD }
    }

    /// Sequences with a class each. Panics when the counts differ.
    #[track_caller]
    pub fn classification(inputs: Vec<Vec<i32>>, classes: Vec<i32>) -> SequenceDataset {
        SequenceDataset::new(inputs, SequenceTargets::Classes(classes))
    }

    /// Source sequences with their target sequences. Panics when the counts differ.
    #[track_caller]
    pub fn translation(sources: Vec<Vec<i32>>, targets: Vec<Vec<i32>>) -> SequenceDataset {
        SequenceDataset::new(sources, SequenceTargets::Sequences(targets))
    }

    /// Pads with `pad` instead of [`Vocab::PAD`] (for a vocabulary without a pad token, such as a
    /// [`CharVocab`](super::text::CharVocab); the mask still tells padding from real tokens).
    pub fn with_pad(mut self, pad: i32) -> SequenceDataset {
        self.pad = pad;
        self
    }

    /// The input sequences.
    pub fn inputs(&self) -> &[Vec<i32>] {
        &self.inputs
    }

    /// The targets.
    pub fn targets(&self) -> &SequenceTargets {
        &self.targets
    }
}

impl Dataset for SequenceDataset {
    fn len(&self) -> usize {
        self.inputs.len()
    }

    fn batch(&self, indices: &[usize]) -> Batch {
        let inputs: Vec<&[i32]> = indices.iter().map(|&i| self.inputs[i].as_slice()).collect();
        let (inputs, input_padding) = pad_sequences(&inputs, self.pad);
        let (targets, target_padding) = match &*self.targets {
            SequenceTargets::Classes(c) => {
                let classes: Vec<i32> = indices.iter().map(|&i| c[i]).collect();
                (Tensor::from_vec(classes, [indices.len()], &Device::Cpu), None)
            }
            SequenceTargets::Sequences(s) => {
                let targets: Vec<&[i32]> = indices.iter().map(|&i| s[i].as_slice()).collect();
                let (ids, padding) = pad_sequences(&targets, self.pad);
                (ids, Some(padding))
            }
        };
        Batch { inputs, targets, input_padding: Some(input_padding), target_padding }
    }

    fn sample_len(&self, index: usize) -> Option<usize> {
        Some(self.inputs[index].len())
    }
}
