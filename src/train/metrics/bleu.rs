//! Corpus BLEU-4 (Papineni et al., "BLEU: a Method for Automatic Evaluation of Machine
//! Translation", 2002) against one reference per sentence, as translation papers report it:
//! clipped n-gram matches and hypothesis n-grams are summed over the whole corpus before the
//! precisions are taken (not averaged per sentence), the geometric mean of the four precisions
//! is scaled by the brevity penalty BP = min(1, e^(1 − r/c)) of the corpus's reference length r
//! and hypothesis length c, and the score is reported ×100. No smoothing: a corpus without a
//! single matching 4-gram scores 0, as in the paper, torchtext's `bleu_score` and sacreBLEU's
//! `smooth_method="none"`.
//!
//! Tokens are whatever the caller compares (words, ids); tokenize and lowercase first.
//!
//! ```
//! use kiln::train::metrics::corpus_bleu;
//! let hypotheses = [vec!["a", "man", "rides", "a", "bike", "."]];
//! let references = [vec!["a", "man", "rides", "a", "bike", "."]];
//! assert_eq!(corpus_bleu(&hypotheses, &references).score, 100.0);
//! ```

use std::collections::HashMap;
use std::fmt;
use std::hash::Hash;

/// The longest n-grams counted.
const MAX_N: usize = 4;

/// A corpus BLEU score and the figures it is made of.
#[derive(Clone, Debug, PartialEq)]
pub struct Bleu {
    /// BLEU-4 ×100, in [0, 100].
    pub score: f64,
    /// Clipped n-gram precision for n = 1, 2, 3, 4 (0 where the hypotheses have no n-grams).
    pub precisions: [f64; MAX_N],
    /// min(1, e^(1 − r/c)); 0 when the hypotheses are all empty.
    pub brevity_penalty: f64,
    /// Tokens in all hypotheses (c).
    pub hypothesis_length: usize,
    /// Tokens in all references (r).
    pub reference_length: usize,
}

impl fmt::Display for Bleu {
    /// sacreBLEU's layout: `BLEU 28.31 (62.5/35.1/21.8/13.9, BP 0.975, 12034/12345)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = self.precisions.map(|p| 100.0 * p);
        write!(
            f,
            "BLEU {:.2} ({:.1}/{:.1}/{:.1}/{:.1}, BP {:.3}, {}/{})",
            self.score,
            p[0],
            p[1],
            p[2],
            p[3],
            self.brevity_penalty,
            self.hypothesis_length,
            self.reference_length
        )
    }
}

/// Corpus BLEU-4 of `hypotheses` against `references`, sentence `i` against reference `i`.
/// Corpora of different lengths panic.
#[track_caller]
pub fn corpus_bleu<T: Eq + Hash>(hypotheses: &[impl AsRef<[T]>], references: &[impl AsRef<[T]>]) -> Bleu {
    assert_eq!(
        hypotheses.len(),
        references.len(),
        "corpus_bleu: {} hypotheses for {} references",
        hypotheses.len(),
        references.len()
    );
    let mut matches = [0usize; MAX_N];
    let mut totals = [0usize; MAX_N];
    let (mut c, mut r) = (0, 0);
    for (hyp, reference) in hypotheses.iter().zip(references) {
        let (hyp, reference) = (hyp.as_ref(), reference.as_ref());
        c += hyp.len();
        r += reference.len();
        for n in 1..=MAX_N {
            let available = ngram_counts(reference, n);
            let mut used: HashMap<&[T], usize> = HashMap::new();
            for gram in hyp.windows(n) {
                totals[n - 1] += 1;
                // a hypothesis n-gram matches at most as often as the reference holds it
                let seen = used.entry(gram).or_insert(0);
                if *seen < available.get(gram).copied().unwrap_or(0) {
                    *seen += 1;
                    matches[n - 1] += 1;
                }
            }
        }
    }
    let precisions: [f64; MAX_N] =
        std::array::from_fn(|i| if totals[i] == 0 { 0.0 } else { matches[i] as f64 / totals[i] as f64 });
    let brevity_penalty = match c {
        0 => 0.0,
        _ if c > r => 1.0,
        _ => (1.0 - r as f64 / c as f64).exp(),
    };
    let score = if precisions.contains(&0.0) {
        0.0
    } else {
        let log_mean = precisions.iter().map(|p| p.ln()).sum::<f64>() / MAX_N as f64;
        100.0 * brevity_penalty * log_mean.exp()
    };
    Bleu { score, precisions, brevity_penalty, hypothesis_length: c, reference_length: r }
}

/// How often each n-gram of length `n` occurs in `tokens`.
fn ngram_counts<T: Eq + Hash>(tokens: &[T], n: usize) -> HashMap<&[T], usize> {
    let mut counts = HashMap::new();
    for gram in tokens.windows(n) {
        *counts.entry(gram).or_insert(0) += 1;
    }
    counts
}
