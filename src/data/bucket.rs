//! Bucketing by length: batches of samples of similar length, so that padding each batch to its
//! longest sequence wastes little, while the order stays random from epoch to epoch.
//!
//! The scheme is torchtext's `BucketIterator` pool: the (shuffled) sample order is cut into
//! pools of several batches, each pool is sorted by length and cut into batches, and the batches
//! are shuffled. Sorting whole epochs would give every batch the same neighbours every epoch;
//! pools keep some randomness in which samples meet.

use super::permute;
use crate::rng::RandomKey;

/// Cuts `order` into batches of `batch_size`, each run of `pool_batches` batches sorted by
/// `length` first. The sort is stable, so samples of equal length keep their (random) order;
/// only the last batch can be short, since every pool but the last is whole batches.
pub(super) fn bucket(
    order: &[usize],
    length: impl Fn(usize) -> usize,
    batch_size: usize,
    pool_batches: usize,
) -> Vec<Vec<usize>> {
    let mut batches = Vec::with_capacity(order.len().div_ceil(batch_size));
    for pool in order.chunks(batch_size * pool_batches) {
        let mut sorted = pool.to_vec();
        sorted.sort_by_key(|&i| length(i));
        batches.extend(sorted.chunks(batch_size).map(<[usize]>::to_vec));
    }
    batches
}

/// `batches` in an order drawn from words `first_word..` of `key`'s stream.
pub(super) fn shuffle_batches(batches: Vec<Vec<usize>>, key: RandomKey, first_word: u64) -> Vec<Vec<usize>> {
    let order = permute(batches.len(), key, first_word);
    let mut slots: Vec<Option<Vec<usize>>> = batches.into_iter().map(Some).collect();
    order.into_iter().map(|i| slots[i].take().expect("a permutation visits each batch once")).collect()
}
