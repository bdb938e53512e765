//! Datasets and the `DataLoader`, and readers for MNIST (IDX), CSV tables, class-per-folder
//! images (from a directory or a tar archive), plain and gzipped text and the names data; vocabularies, a tokenizer, padded sequence batches and
//! language-model batchers for the recurrent and Transformer models.
//!
//! A [`Dataset`] hands out batches by index; [`InMemory`] holds features and targets in host
//! memory, [`sequence::SequenceDataset`] variable-length token sequences. A [`DataLoader`]
//! shuffles with a seeded Philox permutation (the same order on every run and machine),
//! optionally groups samples of similar length into batches ([`DataLoader::bucket_by_length`]),
//! and assembles the next batches on background workers while the current one trains. Batches
//! are CPU tensors; the trainer moves them to its device lazily, so the upload rides in the
//! step's one GPU submission.

mod bucket;
pub mod csv;
mod gzip;
mod image_decode;
pub mod image_folder;
pub mod image_transform;
pub mod lm;
pub mod mnist;
pub mod multi30k;
pub mod names;
pub mod sequence;
pub mod text;
pub mod tokenize;
pub mod vocab;
mod vocab_file;

pub use image_folder::ImageFolder;
pub use image_transform::ImageTransform;

use crate::rng::RandomKey;
use crate::{Device, Shape, Tensor};
use std::sync::Arc;
use std::sync::mpsc;
use std::thread;

/// Inputs and targets of a batch, on the CPU.
#[derive(Clone)]
pub struct Batch {
    /// (batch, …) inputs.
    pub inputs: Tensor,
    /// (batch) class indices or (batch, …) values.
    pub targets: Tensor,
    /// Where `inputs` are padded token sequences: their lengths and mask.
    pub input_padding: Option<Padding>,
    /// Where `targets` are padded token sequences (sequence to sequence): their lengths and mask.
    pub target_padding: Option<Padding>,
}

/// The real extent of a (batch, time) tensor of padded sequences.
#[derive(Clone)]
pub struct Padding {
    /// (batch) i32: the number of real tokens in each row.
    pub lengths: Tensor,
    /// (batch, time) bool: true at real tokens, false at padding.
    pub mask: Tensor,
}

impl Batch {
    /// A batch of fixed-size inputs and targets, without padding.
    pub fn new(inputs: Tensor, targets: Tensor) -> Batch {
        Batch { inputs, targets, input_padding: None, target_padding: None }
    }

    /// The number of samples.
    pub fn len(&self) -> usize {
        self.inputs.dims().first().copied().unwrap_or(0)
    }

    /// Whether the batch is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A dataset that can assemble a batch from sample indices.
pub trait Dataset: Send + Sync {
    /// The number of samples.
    fn len(&self) -> usize;

    /// Whether there are no samples.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The samples at `indices`, stacked.
    fn batch(&self, indices: &[usize]) -> Batch;

    /// The samples at `indices` as assembled in epoch `epoch`: datasets with random
    /// augmentation draw from the epoch here (the [`DataLoader`] calls this); the default is
    /// [`Dataset::batch`].
    fn batch_in_epoch(&self, indices: &[usize], _epoch: u64) -> Batch {
        self.batch(indices)
    }

    /// The length of sample `index`, for [`DataLoader::bucket_by_length`]; `None` (the default)
    /// for datasets whose samples have no length.
    fn sample_len(&self, _index: usize) -> Option<usize> {
        None
    }
}

/// Targets of an [`InMemory`] dataset.
#[derive(Clone, Debug)]
pub enum Targets {
    /// One class index per sample.
    Classes(Vec<i32>),
    /// One value vector of shape `dims` per sample (regression).
    Values { data: Vec<f32>, dims: Vec<usize> },
}

/// Features (f32, each sample of shape `sample_dims`) and targets held in memory.
#[derive(Clone)]
pub struct InMemory {
    features: Arc<Vec<f32>>,
    sample_dims: Vec<usize>,
    targets: Arc<Targets>,
}

impl InMemory {
    /// A dataset from row-major features and their targets. Panics when the sizes disagree.
    #[track_caller]
    pub fn new(features: Vec<f32>, sample_dims: &[usize], targets: Targets) -> InMemory {
        let per: usize = sample_dims.iter().product();
        let n = match &targets {
            Targets::Classes(c) => c.len(),
            Targets::Values { data, dims } => data.len() / dims.iter().product::<usize>().max(1),
        };
        if features.len() != n * per {
            panic!("InMemory: {} feature values for {n} samples of shape {sample_dims:?}", features.len());
        }
        InMemory {
            features: Arc::new(features),
            sample_dims: sample_dims.to_vec(),
            targets: Arc::new(targets),
        }
    }

    /// The samples at `indices` as a new dataset (for splits and folds).
    pub fn subset(&self, indices: &[usize]) -> InMemory {
        let b = self.batch(indices);
        let features = b.inputs.to_vec::<f32>().expect("CPU tensors read back");
        let targets = match &*self.targets {
            Targets::Classes(_) => Targets::Classes(b.targets.to_vec::<i32>().expect("CPU tensor")),
            Targets::Values { dims, .. } => {
                Targets::Values { data: b.targets.to_vec::<f32>().expect("CPU tensor"), dims: dims.clone() }
            }
        };
        InMemory::new(features, &self.sample_dims, targets)
    }

    /// The shape of one sample.
    pub fn sample_dims(&self) -> &[usize] {
        &self.sample_dims
    }
}

impl Dataset for InMemory {
    fn len(&self) -> usize {
        match &*self.targets {
            Targets::Classes(c) => c.len(),
            Targets::Values { data, dims } => data.len() / dims.iter().product::<usize>().max(1),
        }
    }

    fn batch(&self, indices: &[usize]) -> Batch {
        let per: usize = self.sample_dims.iter().product();
        let mut x = Vec::with_capacity(indices.len() * per);
        for &i in indices {
            x.extend_from_slice(&self.features[i * per..(i + 1) * per]);
        }
        let mut dims = vec![indices.len()];
        dims.extend(&self.sample_dims);
        let inputs = Tensor::from_vec(x, Shape::new(dims), &Device::Cpu);
        let targets = match &*self.targets {
            Targets::Classes(c) => Tensor::from_vec(
                indices.iter().map(|&i| c[i]).collect::<Vec<i32>>(),
                [indices.len()],
                &Device::Cpu,
            ),
            Targets::Values { data, dims } => {
                let per: usize = dims.iter().product();
                let mut y = Vec::with_capacity(indices.len() * per);
                for &i in indices {
                    y.extend_from_slice(&data[i * per..(i + 1) * per]);
                }
                let mut shape = vec![indices.len()];
                shape.extend(dims);
                Tensor::from_vec(y, Shape::new(shape), &Device::Cpu)
            }
        };
        Batch::new(inputs, targets)
    }
}

/// A seeded permutation of `0..n`: the same for the same (seed, epoch) everywhere.
pub fn permutation(n: usize, seed: u64, epoch: u64) -> Vec<usize> {
    permute(n, RandomKey { seed, stream: epoch }, 0)
}

/// A permutation of `0..n` drawn from words `first_word..first_word + n` of `key`'s stream.
fn permute(n: usize, key: RandomKey, first_word: u64) -> Vec<usize> {
    let mut order: Vec<(u32, usize)> = (0..n).map(|i| (key.bits(first_word + i as u64), i)).collect();
    order.sort_unstable();
    order.into_iter().map(|(_, i)| i).collect()
}

/// Batches of a dataset, one epoch at a time.
#[derive(Clone)]
pub struct DataLoader {
    dataset: Arc<dyn Dataset>,
    batch_size: usize,
    shuffle: Option<u64>,
    drop_last: bool,
    bucket_pool: Option<usize>,
    workers: usize,
}

impl DataLoader {
    /// Batches of `batch_size` in order, keeping a short last batch.
    #[track_caller]
    pub fn new(dataset: impl Dataset + 'static, batch_size: usize) -> DataLoader {
        if batch_size == 0 {
            panic!("DataLoader: batch size must be positive");
        }
        DataLoader {
            dataset: Arc::new(dataset),
            batch_size,
            shuffle: None,
            drop_last: false,
            bucket_pool: None,
            workers: 1,
        }
    }

    /// Shuffles every epoch with a permutation drawn from `seed` and the epoch number.
    pub fn shuffle(mut self, seed: u64) -> DataLoader {
        self.shuffle = Some(seed);
        self
    }

    /// Drops a last batch shorter than the batch size.
    pub fn drop_last(mut self) -> DataLoader {
        self.drop_last = true;
        self
    }

    /// Batches samples of similar length together, to pad less: each run of
    /// `pool_batches × batch_size` samples of the (shuffled) order is sorted by length and cut
    /// into batches, and with [`DataLoader::shuffle`] the batches of the epoch are then shuffled,
    /// all from the seed and the epoch number. The number of batches does not change. Panics when
    /// the dataset's samples have no length ([`Dataset::sample_len`]) or `pool_batches` is 0.
    ///
    /// ```
    /// use kiln::data::DataLoader;
    /// use kiln::data::sequence::SequenceDataset;
    ///
    /// let lengths = [5, 1, 6, 2, 8, 3, 7, 4];
    /// let inputs: Vec<Vec<i32>> = lengths.iter().map(|&n| vec![4; n]).collect();
    /// let data = SequenceDataset::classification(inputs, vec![0; 8]);
    /// let loader = DataLoader::new(data, 2).shuffle(7).bucket_by_length(4);
    /// for batch in loader.epoch(0) {
    ///     let lengths = batch.input_padding.unwrap().lengths.to_vec::<i32>().unwrap();
    ///     // one pool of all 8 samples, sorted: the batches are lengths 1–2, 3–4, 5–6 and 7–8
    ///     assert_eq!(lengths[1] - lengths[0], 1, "neighbours in length: {lengths:?}");
    /// }
    /// ```
    #[track_caller]
    pub fn bucket_by_length(mut self, pool_batches: usize) -> DataLoader {
        if pool_batches == 0 {
            panic!("DataLoader::bucket_by_length: the pool must hold at least one batch");
        }
        if !self.dataset.is_empty() && self.dataset.sample_len(0).is_none() {
            panic!(
                "DataLoader::bucket_by_length: the dataset's samples have no length (Dataset::sample_len)"
            );
        }
        self.bucket_pool = Some(pool_batches);
        self
    }

    /// Assembles batches on `workers` background threads (1 by default): batch `i` of an epoch
    /// on worker `i mod workers`, delivered in order, so the batches are the same for any number
    /// of workers. More workers pay where assembling a batch (decoding, augmenting) is slow.
    #[track_caller]
    pub fn workers(mut self, workers: usize) -> DataLoader {
        if workers == 0 {
            panic!("DataLoader::workers: at least one worker is needed");
        }
        self.workers = workers;
        self
    }

    /// The dataset.
    pub fn dataset(&self) -> &Arc<dyn Dataset> {
        &self.dataset
    }

    /// The number of samples in the dataset.
    pub fn samples(&self) -> usize {
        self.dataset.len()
    }

    /// Batches per epoch.
    pub fn batches(&self) -> usize {
        let n = self.dataset.len();
        if self.drop_last { n / self.batch_size } else { n.div_ceil(self.batch_size) }
    }

    /// The batches of epoch `epoch`, each assembled on a background worker while the previous
    /// ones are in use.
    pub fn epoch(&self, epoch: u64) -> Batches {
        let chunks = self.plan(epoch);
        let total = chunks.len();
        let mut queues = Vec::with_capacity(self.workers);
        let mut workers = Vec::with_capacity(self.workers);
        for w in 0..self.workers {
            let mine: Vec<Vec<usize>> = chunks.iter().skip(w).step_by(self.workers).cloned().collect();
            let (tx, rx) = mpsc::sync_channel(1);
            let dataset = self.dataset.clone();
            workers.push(thread::spawn(move || {
                for chunk in mine {
                    if tx.send(dataset.batch_in_epoch(&chunk, epoch)).is_err() {
                        break; // the consumer stopped early
                    }
                }
            }));
            queues.push(rx);
        }
        Batches { queues, workers, next: 0, total }
    }

    /// The sample indices of each batch of epoch `epoch`.
    fn plan(&self, epoch: u64) -> Vec<Vec<usize>> {
        let n = self.dataset.len();
        let order = match self.shuffle {
            Some(seed) => permutation(n, seed, epoch),
            None => (0..n).collect(),
        };
        let keep = |c: &Vec<usize>| !self.drop_last || c.len() == self.batch_size;
        let Some(pool_batches) = self.bucket_pool else {
            return order.chunks(self.batch_size).map(<[usize]>::to_vec).filter(keep).collect();
        };
        let length = |i: usize| {
            self.dataset.sample_len(i).unwrap_or_else(|| panic!("bucket_by_length: sample {i} has no length"))
        };
        let batches: Vec<Vec<usize>> =
            bucket::bucket(&order, length, self.batch_size, pool_batches).into_iter().filter(keep).collect();
        match self.shuffle {
            // words past the sample permutation's, so the two draws are independent
            Some(seed) => bucket::shuffle_batches(batches, RandomKey { seed, stream: epoch }, n as u64),
            None => batches,
        }
    }
}

/// The batches of one epoch (see [`DataLoader::epoch`]).
pub struct Batches {
    /// One queue per worker; batch `i` arrives on queue `i mod workers`.
    queues: Vec<mpsc::Receiver<Batch>>,
    workers: Vec<thread::JoinHandle<()>>,
    next: usize,
    total: usize,
}

impl Iterator for Batches {
    type Item = Batch;

    fn next(&mut self) -> Option<Batch> {
        if self.next == self.total {
            return None;
        }
        let w = self.next % self.queues.len();
        match self.queues[w].recv() {
            Ok(b) => {
                self.next += 1;
                Some(b)
            }
            Err(_) => {
                // the worker ended early: it panicked; surface the panic instead of ending silently
                self.next = self.total;
                if let Err(p) = self.workers.swap_remove(w).join() {
                    std::panic::resume_unwind(p);
                }
                None
            }
        }
    }
}

/// The `k`-fold split of `0..n` for fold `i`: (training indices, validation indices), with
/// contiguous validation slices as in d2l's `get_k_fold_data`.
#[track_caller]
pub fn k_fold(n: usize, k: usize, i: usize) -> (Vec<usize>, Vec<usize>) {
    if k < 2 || i >= k || n < k {
        panic!("k_fold: cannot take fold {i} of {k} over {n} samples");
    }
    let size = n / k;
    let valid: Vec<usize> = (i * size..(i + 1) * size).collect();
    let train: Vec<usize> = (0..n).filter(|j| !(i * size..(i + 1) * size).contains(j)).collect();
    (train, valid)
}
