//! Multi30k German → English (WMT16 multimodal task 1, Elliott et al. 2016): the raw gzipped
//! sentence files `train`, `val` and `test_2016_flickr` (`.de`, `.en`), lowercased and tokenized
//! with [`tokenize`], with one [`Vocab`] per language built from the training split (tokens seen
//! at least twice, as the classic seq2seq tutorials). Sentences are encoded as
//! `<bos> tokens… <eos>`, words outside the vocabulary as `<unk>`.
//!
//! ```no_run
//! use kiln::data::DataLoader;
//! use kiln::data::multi30k::Multi30k;
//!
//! let data = Multi30k::load("../shared/data/multi30k")?;
//! println!("{} training pairs, vocabularies {} / {}", data.train.len(), data.source_vocab.len(), data.target_vocab.len());
//! // batches of sentences of similar lengths, padded, with lengths and masks
//! let train = DataLoader::new(data.dataset(&data.train), 128).shuffle(0).bucket_by_length(100);
//! # Ok::<(), kiln::Error>(())
//! ```

use super::sequence::SequenceDataset;
use super::text::read_parallel;
use super::tokenize::tokenize;
use super::vocab::Vocab;
use crate::{Error, Result};
use std::path::Path;

/// Tokenized sentence pairs of one split.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ParallelSplit {
    /// The German sentences' tokens.
    pub sources: Vec<Vec<String>>,
    /// The English sentences' tokens, line by line with `sources`.
    pub targets: Vec<Vec<String>>,
}

impl ParallelSplit {
    /// Reads `<dir>/<name>.de(.gz)` and `<dir>/<name>.en(.gz)` and tokenizes every line.
    pub fn read(dir: &Path, name: &str) -> Result<ParallelSplit> {
        let file = |language: &str| {
            let gzipped = dir.join(format!("{name}.{language}.gz"));
            if gzipped.exists() { gzipped } else { dir.join(format!("{name}.{language}")) }
        };
        let pairs = read_parallel(file("de"), file("en"))?;
        if pairs.is_empty() {
            return Err(Error::Invalid(format!(
                "{}: the {name} split has no sentences; point --data or KILN_DATA at the shared datasets",
                dir.display()
            )));
        }
        let (sources, targets) = pairs.iter().map(|(de, en)| (tokenize(de), tokenize(en))).unzip();
        Ok(ParallelSplit { sources, targets })
    }

    /// The number of sentence pairs.
    pub fn len(&self) -> usize {
        self.sources.len()
    }

    /// Whether the split is empty.
    pub fn is_empty(&self) -> bool {
        self.sources.is_empty()
    }
}

/// The three splits and the two vocabularies.
#[derive(Debug, Clone)]
pub struct Multi30k {
    /// 29,000 training pairs.
    pub train: ParallelSplit,
    /// 1,014 validation pairs.
    pub val: ParallelSplit,
    /// 1,000 test pairs (`test_2016_flickr`).
    pub test: ParallelSplit,
    /// German tokens of the training split seen at least [`Multi30k::MIN_FREQ`] times.
    pub source_vocab: Vocab,
    /// English tokens of the training split seen at least [`Multi30k::MIN_FREQ`] times.
    pub target_vocab: Vocab,
}

impl Multi30k {
    /// The fewest occurrences in the training split that keep a token in a vocabulary.
    pub const MIN_FREQ: usize = 2;

    /// Reads the folder `dir` (`multi30k/` of the shared datasets) and builds the vocabularies.
    /// A missing, corrupt or misaligned file is an error naming it.
    pub fn load(dir: impl AsRef<Path>) -> Result<Multi30k> {
        let dir = dir.as_ref();
        let train = ParallelSplit::read(dir, "train")?;
        let val = ParallelSplit::read(dir, "val")?;
        let test = ParallelSplit::read(dir, "test_2016_flickr")?;
        let source_vocab = Vocab::build(train.sources.iter().flatten(), Multi30k::MIN_FREQ, None);
        let target_vocab = Vocab::build(train.targets.iter().flatten(), Multi30k::MIN_FREQ, None);
        Ok(Multi30k { train, val, test, source_vocab, target_vocab })
    }

    /// `split` encoded with the vocabularies, each sentence `<bos> … <eos>`, as a dataset whose
    /// batches carry both sides padded with [`Vocab::PAD`], their lengths and masks.
    pub fn dataset(&self, split: &ParallelSplit) -> SequenceDataset {
        let sources = split.sources.iter().map(|s| encode_sentence(&self.source_vocab, s)).collect();
        let targets = split.targets.iter().map(|t| encode_sentence(&self.target_vocab, t)).collect();
        SequenceDataset::translation(sources, targets)
    }
}

/// `tokens` as ids framed by `<bos>` and `<eos>`; tokens outside `vocab` are `<unk>`.
///
/// ```
/// use kiln::data::multi30k::encode_sentence;
/// use kiln::data::vocab::Vocab;
/// let vocab = Vocab::build(["ein", "mann", "ein"], 1, None);
/// assert_eq!(encode_sentence(&vocab, &["ein", "hund"]), [Vocab::BOS, vocab.id("ein"), Vocab::UNK, Vocab::EOS]);
/// ```
pub fn encode_sentence(vocab: &Vocab, tokens: &[impl AsRef<str>]) -> Vec<i32> {
    let mut ids = Vec::with_capacity(tokens.len() + 2);
    ids.push(Vocab::BOS);
    ids.extend(vocab.encode(tokens));
    ids.push(Vocab::EOS);
    ids
}
