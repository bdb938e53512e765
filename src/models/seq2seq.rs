//! Decoding for encoder–decoder models: the [`Seq2Seq`] trait a translation model implements
//! (encode a batch of sources once, then one token per hypothesis per step, and reorder the
//! decoder's state by hypothesis), and greedy and beam search over it, a batch of sentences at
//! once.
//!
//! Beam search keeps the `beam` best hypotheses of each sentence by their summed
//! log-probability. Each step extends them with every token and keeps the best `beam`
//! extensions; an extension that ends in `<eos>` among the best `beam` is finished and scored
//! with the GNMT length penalty (Wu et al. 2016): score / lp, lp = ((5 + |Y|) / 6)^α, where |Y|
//! counts the generated tokens with the `<eos>`. α = 0 ranks by log-probability alone, which
//! favours short outputs; a larger α favours longer ones. A sentence is done when it has `beam`
//! finished hypotheses (or at the length limit, when its unfinished ones compete too), and its
//! rows leave the batch, so the batch shrinks as sentences finish. Width 1 is greedy decoding.

use crate::data::Padding;
use crate::data::sequence::pad_sequences;
use crate::data::vocab::Vocab;
use crate::nn::{self, Linear, Module};
use crate::{Device, Error, Result, Tensor, no_grad};

/// A model that translates: its decoder's state for a batch of sources, one token at a time.
pub trait Seq2Seq: Module {
    /// What decoding carries from step to step, one row per hypothesis: the encoded source and
    /// the decoder's state or caches.
    type State;

    /// The next-token logits (B, T, V) of target ids `tgt` (B, T) (`<bos>` first, padded) read
    /// with teacher forcing over source ids `src` (B, S), padded with [`Vocab::PAD`] as
    /// `padding` says: position t predicts target token t + 1. What training runs.
    ///
    /// With `positions`, i32 (R) flat indices b·T + t, only those positions' logits are
    /// computed, (R, V): the real tokens of a padded batch, so that the output layer, the
    /// largest matmul of a translation model, skips the padding.
    fn forward_teacher(
        &self,
        src: &Tensor,
        padding: &Padding,
        tgt: &Tensor,
        positions: Option<&Tensor>,
    ) -> Tensor;

    /// Encodes source ids `src` (B, S) i32, padded as `padding` says, and returns the state
    /// before the first decoding step.
    fn encode(&self, src: &Tensor, padding: &Padding) -> Self::State;

    /// Feeds one token per row, `tokens` (N) i32, and returns the log-probabilities (N, V) of
    /// each row's next token.
    fn step(&self, state: &mut Self::State, tokens: &Tensor) -> Tensor;

    /// Keeps rows `index` (N′) i32 of the state, in that order: row r continues row `index[r]`.
    fn reorder(&self, state: &mut Self::State, index: &Tensor);

    /// The device of the model's parameters.
    fn device(&self) -> Device;

    /// The attention (T, S) of the decoder over `source` (`<bos> … <eos>` ids) while it reads
    /// `output` (`<bos>` first) with teacher forcing: row t is the attention that predicts the
    /// token after `output[t]`, in evaluation mode. For heat maps.
    fn cross_attention(&self, source: &[i32], output: &[i32]) -> Tensor;

    /// The longest sentence, in tokens with `<bos>` and `<eos>`, that either side can read (its
    /// position tables), if there is a limit.
    fn max_len(&self) -> Option<usize> {
        None
    }
}

/// The output layer on decoder features (B, T, F): logits (B, T, V), or with `positions` (R)
/// i32 those rows of the flattened (B·T, F) only, (R, V) (see [`Seq2Seq::forward_teacher`]).
pub(crate) fn project_positions(output: &Linear, features: &Tensor, positions: Option<&Tensor>) -> Tensor {
    match positions {
        Some(p) => {
            let (b, t, f) = (features.dim(0), features.dim(1), features.dim(2));
            output.forward(&features.reshape([b * t, f]).index_select(0, p))
        }
        None => output.forward(features),
    }
}

/// How to decode.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Decoding {
    /// Hypotheses kept per sentence; 1 is greedy decoding.
    pub beam: usize,
    /// The GNMT length-penalty exponent α (0: none).
    pub length_penalty: f64,
    /// The most tokens generated per sentence, `<eos>` included; a hypothesis that reaches it
    /// unfinished competes as it is.
    pub max_len: usize,
}

impl Decoding {
    /// Greedy decoding of at most `max_len` tokens.
    pub fn greedy(max_len: usize) -> Decoding {
        Decoding { beam: 1, length_penalty: 0.0, max_len }
    }

    /// Beam search of width `beam` with length penalty α = `length_penalty`.
    pub fn beam(beam: usize, length_penalty: f64, max_len: usize) -> Decoding {
        Decoding { beam, length_penalty, max_len }
    }
}

/// A decoded sentence.
#[derive(Clone, Debug, PartialEq)]
pub struct Hypothesis {
    /// The generated tokens, without `<bos>` and `<eos>`.
    pub tokens: Vec<i32>,
    /// The summed log-probability of the tokens (and of the `<eos>`, if finished).
    pub log_prob: f64,
    /// `log_prob` divided by the length penalty: what the beam ranks by.
    pub score: f64,
    /// Whether it ended with `<eos>` (rather than at the length limit).
    pub finished: bool,
}

/// The GNMT length penalty ((5 + length) / 6)^α.
///
/// ```
/// use kiln::models::seq2seq::length_penalty;
/// assert_eq!(length_penalty(7, 0.0), 1.0);
/// assert!((length_penalty(7, 1.0) - 2.0).abs() < 1e-12);
/// ```
pub fn length_penalty(length: usize, alpha: f64) -> f64 {
    ((5.0 + length as f64) / 6.0).powf(alpha)
}

/// Decodes `sources` (each `<bos> … <eos>` ids) in batches of at most `batch_size` sentences of
/// similar lengths, in evaluation mode and without gradients, and returns one hypothesis per
/// source, in order. A source longer than the model can read is an error naming it.
///
/// Panics when `decoding.beam`, `decoding.max_len` or `batch_size` is 0.
#[track_caller]
pub fn translate<M: Seq2Seq>(
    model: &M,
    sources: &[Vec<i32>],
    decoding: &Decoding,
    batch_size: usize,
) -> Result<Vec<Hypothesis>> {
    if batch_size == 0 {
        panic!("translate: the batch size must be positive");
    }
    if let (Some(limit), Some((i, long))) =
        (model.max_len(), sources.iter().enumerate().find(|(_, s)| Some(s.len()) > model.max_len()))
    {
        return Err(Error::Invalid(format!(
            "source sentence {i} has {} tokens with <bos> and <eos>; the model reads at most {limit}",
            long.len()
        )));
    }
    let mut order: Vec<usize> = (0..sources.len()).collect();
    order.sort_by_key(|&i| sources[i].len());
    let mut out = vec![None; sources.len()];
    for chunk in order.chunks(batch_size) {
        let batch: Vec<&[i32]> = chunk.iter().map(|&i| sources[i].as_slice()).collect();
        let (src, padding) = pad_sequences(&batch, Vocab::PAD);
        for (&i, hypothesis) in chunk.iter().zip(decode(model, &src, &padding, decoding)?) {
            out[i] = Some(hypothesis);
        }
    }
    Ok(out.into_iter().map(|h| h.expect("every source is decoded")).collect())
}

/// Decodes a padded batch of sources `src` (B, S) with `padding`, in evaluation mode and
/// without gradients: one hypothesis per row. At most `decoding.max_len` tokens are generated,
/// and no more than the model's [`Seq2Seq::max_len`].
///
/// Panics when `decoding.beam` or `decoding.max_len` is 0.
#[track_caller]
pub fn decode<M: Seq2Seq>(
    model: &M,
    src: &Tensor,
    padding: &Padding,
    decoding: &Decoding,
) -> Result<Vec<Hypothesis>> {
    if decoding.beam == 0 || decoding.max_len == 0 {
        panic!("decode: beam {} and max_len {} must be positive", decoding.beam, decoding.max_len);
    }
    let device = model.device();
    // the decoder reads <bos> and every generated token but the last
    let max_len = model.max_len().map_or(decoding.max_len, |limit| decoding.max_len.min(limit));
    evaluating(model, || {
        let mut state = model.encode(&src.to(&device), padding);
        let mut search = Search::new(src.dim(0), decoding.beam, decoding.length_penalty);
        for step in 0..max_len {
            let tokens = Tensor::from_vec(search.last_tokens(), [search.rows()], &device);
            let log_probs = model.step(&mut state, &tokens);
            let vocab = log_probs.dim(1);
            let keep = search.advance(&log_probs.to_vec::<f32>()?, vocab, step + 1 == max_len);
            if search.rows() == 0 {
                break;
            }
            if let Some(index) = keep {
                model.reorder(&mut state, &Tensor::from_vec(index, [search.rows()], &device));
            }
        }
        Ok(search.finish())
    })
}

/// `f` run with `model` in evaluation mode and without gradients; every module is left in the
/// mode it was in.
pub(crate) fn evaluating<R>(model: &dyn Module, f: impl FnOnce() -> R) -> R {
    let modes = nn::modes(model);
    nn::eval(model);
    let result = no_grad(f);
    nn::restore_modes(model, &modes);
    result
}

/// A hypothesis still being extended.
#[derive(Clone)]
struct Beam {
    tokens: Vec<i32>,
    log_prob: f64,
}

/// The beams of every sentence; the alive ones of unfinished sentences are the model's rows, in
/// sentence order.
struct Search {
    width: usize,
    alpha: f64,
    /// Per sentence: its alive beams (empty once done) and its finished hypotheses.
    alive: Vec<Vec<Beam>>,
    finished: Vec<Vec<Hypothesis>>,
}

impl Search {
    /// Each of `sentences` starts with one empty beam.
    fn new(sentences: usize, width: usize, alpha: f64) -> Search {
        Search {
            width,
            alpha,
            alive: vec![vec![Beam { tokens: Vec::new(), log_prob: 0.0 }]; sentences],
            finished: vec![Vec::new(); sentences],
        }
    }

    /// The model's rows: every alive beam.
    fn rows(&self) -> usize {
        self.alive.iter().map(Vec::len).sum()
    }

    /// Each row's last token (`<bos>` at the start).
    fn last_tokens(&self) -> Vec<i32> {
        self.alive.iter().flatten().map(|b| b.tokens.last().copied().unwrap_or(Vocab::BOS)).collect()
    }

    /// Extends every alive beam with the rows' log-probabilities `log_probs` (rows × `vocab`),
    /// keeps the best extensions, and returns the parent row of each new row (`None` when the
    /// rows are unchanged). At the `last` step, unfinished beams are finished as they are.
    fn advance(&mut self, log_probs: &[f32], vocab: usize, last: bool) -> Option<Vec<i32>> {
        let mut parents = Vec::new();
        let mut row = 0;
        for s in 0..self.alive.len() {
            let beams = std::mem::take(&mut self.alive[s]);
            if beams.is_empty() {
                continue;
            }
            // candidates (score, parent beam, token), best first; 2·width of them always hold
            // `width` that do not end the sentence
            let mut candidates: Vec<(f64, usize, i32)> = Vec::with_capacity(beams.len() * vocab);
            for (b, beam) in beams.iter().enumerate() {
                let lp = &log_probs[(row + b) * vocab..(row + b + 1) * vocab];
                candidates
                    .extend(lp.iter().enumerate().map(|(t, &p)| (beam.log_prob + p as f64, b, t as i32)));
            }
            let take = (2 * self.width).min(candidates.len());
            let by_score =
                |a: &(f64, usize, i32), b: &(f64, usize, i32)| b.0.total_cmp(&a.0).then(a.2.cmp(&b.2));
            if take < candidates.len() {
                candidates.select_nth_unstable_by(take - 1, by_score);
                candidates.truncate(take);
            }
            candidates.sort_by(by_score);
            let mut next = Vec::with_capacity(self.width);
            for (rank, &(log_prob, b, token)) in candidates.iter().enumerate() {
                if token == Vocab::EOS {
                    if rank < self.width {
                        self.finish_beam(s, &beams[b].tokens, log_prob, true);
                    }
                } else if next.len() < self.width {
                    let mut tokens = beams[b].tokens.clone();
                    tokens.push(token);
                    parents.push((row + b) as i32);
                    next.push(Beam { tokens, log_prob });
                }
            }
            row += beams.len();
            if self.finished[s].len() >= self.width || last {
                if last {
                    for beam in &next {
                        self.finish_beam(s, &beam.tokens, beam.log_prob, false);
                    }
                }
                parents.truncate(parents.len() - next.len());
                next.clear();
            }
            self.alive[s] = next;
        }
        let unchanged = parents.len() == row && parents.iter().enumerate().all(|(r, &p)| p == r as i32);
        (!unchanged).then_some(parents)
    }

    /// Records a hypothesis of sentence `s` with its length-penalized score.
    fn finish_beam(&mut self, s: usize, tokens: &[i32], log_prob: f64, finished: bool) {
        let length = tokens.len() + usize::from(finished);
        let score = log_prob / length_penalty(length, self.alpha);
        self.finished[s].push(Hypothesis { tokens: tokens.to_vec(), log_prob, score, finished });
    }

    /// The best hypothesis of each sentence (the first of equals).
    fn finish(self) -> Vec<Hypothesis> {
        self.finished
            .into_iter()
            .map(|hypotheses| {
                hypotheses
                    .into_iter()
                    .reduce(|best, h| if h.score > best.score { h } else { best })
                    .expect("every sentence finishes with at least one hypothesis")
            })
            .collect()
    }
}
