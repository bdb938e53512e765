//! A word-level vocabulary: the four specials at fixed ids, then the corpus's tokens by count.
//!
//! ```
//! use kiln::data::tokenize::tokenize;
//! use kiln::data::vocab::Vocab;
//!
//! let corpus = ["Ein Mann fährt Fahrrad.", "Ein Hund läuft."];
//! let vocab = Vocab::build(corpus.iter().flat_map(|s| tokenize(s)), 1, None);
//! // specials first, then by count descending, then by token
//! assert_eq!(vocab.tokens()[..7], ["<pad>", "<unk>", "<bos>", "<eos>", ".", "ein", "fahrrad"]);
//! let ids = vocab.encode(&tokenize("Ein Hund schwimmt."));
//! assert_eq!(vocab.decode(&ids), ["ein", "hund", "<unk>", "."]);
//! ```

use super::vocab_file;
use crate::Result;
use std::collections::HashMap;
use std::path::Path;

/// Tokens with ids: `<pad>`, `<unk>`, `<bos>`, `<eos>` at 0..3, then the kept tokens of the
/// corpus by count descending, ties by token (so the same corpus gives the same ids anywhere).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vocab {
    tokens: Vec<String>,
    ids: HashMap<String, i32>,
}

impl Vocab {
    /// The padding id.
    pub const PAD: i32 = 0;
    /// The id of tokens not in the vocabulary.
    pub const UNK: i32 = 1;
    /// The beginning-of-sequence id.
    pub const BOS: i32 = 2;
    /// The end-of-sequence id.
    pub const EOS: i32 = 3;
    /// The special tokens, in id order.
    pub const SPECIALS: [&str; 4] = ["<pad>", "<unk>", "<bos>", "<eos>"];

    /// The vocabulary of a stream of tokens (see [`Vocab::from_counts`]).
    #[track_caller]
    pub fn build(
        tokens: impl IntoIterator<Item = impl AsRef<str>>,
        min_freq: usize,
        max_size: Option<usize>,
    ) -> Vocab {
        let mut counts: HashMap<String, usize> = HashMap::new();
        for token in tokens {
            let token = token.as_ref();
            match counts.get_mut(token) {
                Some(n) => *n += 1,
                None => {
                    counts.insert(token.to_string(), 1);
                }
            }
        }
        Vocab::from_counts(&counts, min_freq, max_size)
    }

    /// The specials, then the tokens counted at least `min_freq` times, by count descending and
    /// then by token, keeping at most `max_size` entries in all (specials included). A special's
    /// own count is ignored: it keeps its fixed id. Panics when `max_size` leaves no room for the
    /// four specials.
    #[track_caller]
    pub fn from_counts(counts: &HashMap<String, usize>, min_freq: usize, max_size: Option<usize>) -> Vocab {
        let room = match max_size {
            Some(m) if m < Self::SPECIALS.len() => {
                panic!("Vocab: max_size {m} leaves no room for the {} specials", Self::SPECIALS.len())
            }
            Some(m) => m - Self::SPECIALS.len(),
            None => usize::MAX,
        };
        let mut kept: Vec<(&String, usize)> = counts
            .iter()
            .filter(|(t, n)| **n >= min_freq && !Self::SPECIALS.contains(&t.as_str()))
            .map(|(t, &n)| (t, n))
            .collect();
        kept.sort_unstable_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
        kept.truncate(room);
        let tokens =
            Self::SPECIALS.iter().map(|s| s.to_string()).chain(kept.into_iter().map(|(t, _)| t.clone()));
        Vocab::from_tokens(tokens.collect())
    }

    /// Tokens in id order, the specials first and all distinct (checked by the callers).
    fn from_tokens(tokens: Vec<String>) -> Vocab {
        let ids = tokens.iter().enumerate().map(|(i, t)| (t.clone(), i as i32)).collect();
        Vocab { tokens, ids }
    }

    /// The number of tokens, specials included.
    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    /// Always false: the specials are always there.
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// The tokens in id order.
    pub fn tokens(&self) -> &[String] {
        &self.tokens
    }

    /// The id of `token`, [`Vocab::UNK`] when it is not in the vocabulary.
    pub fn id(&self, token: &str) -> i32 {
        self.ids.get(token).copied().unwrap_or(Self::UNK)
    }

    /// The token of `id`, `None` when out of range.
    pub fn token(&self, id: i32) -> Option<&str> {
        usize::try_from(id).ok().and_then(|i| self.tokens.get(i)).map(String::as_str)
    }

    /// The ids of `tokens`, [`Vocab::UNK`] for unknown ones.
    pub fn encode(&self, tokens: &[impl AsRef<str>]) -> Vec<i32> {
        tokens.iter().map(|t| self.id(t.as_ref())).collect()
    }

    /// The tokens of `ids`, `<unk>` for ids out of range.
    pub fn decode(&self, ids: &[i32]) -> Vec<&str> {
        ids.iter().map(|&i| self.token(i).unwrap_or(Self::SPECIALS[Self::UNK as usize])).collect()
    }

    /// Writes the vocabulary as JSON (atomically), e.g. beside a checkpoint.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        vocab_file::save(path.as_ref(), "word", &self.tokens)
    }

    /// Reads a vocabulary written by [`Vocab::save`]. A file that is not one (bad JSON, a
    /// character vocabulary, missing or misplaced specials, a repeated token) is an
    /// [`Error::Format`](crate::Error::Format) naming the file.
    pub fn load(path: impl AsRef<Path>) -> Result<Vocab> {
        let path = path.as_ref();
        let tokens = vocab_file::load(path, "word")?;
        if tokens.len() < Self::SPECIALS.len() || tokens[..Self::SPECIALS.len()] != Self::SPECIALS {
            let head = &tokens[..tokens.len().min(Self::SPECIALS.len())];
            return Err(vocab_file::invalid(
                path,
                format!("the first tokens must be the specials {:?}, found {head:?}", Self::SPECIALS),
            ));
        }
        Ok(Vocab::from_tokens(tokens))
    }
}
