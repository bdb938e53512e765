//! Classification metrics: accuracy, per-class and macro precision/recall/F1, the confusion
//! matrix, and ROC-AUC (binary, and one-vs-rest macro-averaged for several classes); and, for
//! translation, corpus BLEU ([`bleu`]).

pub mod bleu;

pub use bleu::{Bleu, corpus_bleu};

use std::fmt;

/// Counts of (true class, predicted class) pairs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Confusion {
    classes: usize,
    counts: Vec<u64>,
}

impl Confusion {
    /// An empty matrix for `classes` classes.
    pub fn new(classes: usize) -> Confusion {
        Confusion { classes, counts: vec![0; classes * classes] }
    }

    /// Adds predictions; labels outside `0..classes` are ignored.
    pub fn add(&mut self, truth: &[i32], predicted: &[i32]) {
        for (&t, &p) in truth.iter().zip(predicted) {
            if (0..self.classes as i32).contains(&t) && (0..self.classes as i32).contains(&p) {
                self.counts[t as usize * self.classes + p as usize] += 1;
            }
        }
    }

    /// How many samples of class `truth` were predicted as `predicted`.
    pub fn count(&self, truth: usize, predicted: usize) -> u64 {
        self.counts[truth * self.classes + predicted]
    }

    /// The number of classes.
    pub fn classes(&self) -> usize {
        self.classes
    }

    fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// The fraction predicted correctly.
    pub fn accuracy(&self) -> f64 {
        let hits: u64 = (0..self.classes).map(|c| self.count(c, c)).sum();
        hits as f64 / self.total().max(1) as f64
    }

    /// Precision of class `c`: of the samples predicted `c`, the fraction that are `c`.
    pub fn precision(&self, c: usize) -> f64 {
        let predicted: u64 = (0..self.classes).map(|t| self.count(t, c)).sum();
        if predicted == 0 { 0.0 } else { self.count(c, c) as f64 / predicted as f64 }
    }

    /// Recall of class `c`: of the samples of class `c`, the fraction predicted `c`.
    pub fn recall(&self, c: usize) -> f64 {
        let actual: u64 = (0..self.classes).map(|p| self.count(c, p)).sum();
        if actual == 0 { 0.0 } else { self.count(c, c) as f64 / actual as f64 }
    }

    /// F1 of class `c`: the harmonic mean of its precision and recall.
    pub fn f1(&self, c: usize) -> f64 {
        let (p, r) = (self.precision(c), self.recall(c));
        if p + r == 0.0 { 0.0 } else { 2.0 * p * r / (p + r) }
    }

    /// Macro averages (unweighted mean over classes) of precision, recall and F1.
    pub fn macro_prf(&self) -> (f64, f64, f64) {
        let k = self.classes.max(1) as f64;
        let sum = |f: &dyn Fn(usize) -> f64| (0..self.classes).map(f).sum::<f64>() / k;
        (sum(&|c| self.precision(c)), sum(&|c| self.recall(c)), sum(&|c| self.f1(c)))
    }
}

impl fmt::Display for Confusion {
    /// Rows are true classes, columns predictions.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let width = self.counts.iter().max().map_or(1, |m| m.to_string().len()).max(3);
        write!(f, "{:>5} ", "t\\p")?;
        for p in 0..self.classes {
            write!(f, "{p:>width$} ")?;
        }
        writeln!(f)?;
        for t in 0..self.classes {
            write!(f, "{t:>5} ")?;
            for p in 0..self.classes {
                write!(f, "{:>width$} ", self.count(t, p))?;
            }
            writeln!(f)?;
        }
        Ok(())
    }
}

/// The area under the ROC curve of `scores` against `positive` labels: the probability that a
/// random positive scores above a random negative (ties count half). `None` when one of the two
/// groups is empty.
pub fn roc_auc(scores: &[f64], positive: &[bool]) -> Option<f64> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    // Mann–Whitney U from average ranks
    let mut rank_sum = 0.0;
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && scores[order[j + 1]] == scores[order[i]] {
            j += 1;
        }
        let avg_rank = (i + j) as f64 / 2.0 + 1.0;
        rank_sum += (i..=j).filter(|&k| positive[order[k]]).count() as f64 * avg_rank;
        i = j + 1;
    }
    let pos = positive.iter().filter(|&&p| p).count() as f64;
    let neg = positive.len() as f64 - pos;
    if pos == 0.0 || neg == 0.0 {
        return None;
    }
    Some((rank_sum - pos * (pos + 1.0) / 2.0) / (pos * neg))
}

/// One-vs-rest ROC-AUC averaged over the classes that have both positives and negatives;
/// `probs` is row-major (N, classes).
pub fn roc_auc_ovr(probs: &[f64], labels: &[i32], classes: usize) -> Option<f64> {
    let aucs: Vec<f64> = (0..classes)
        .filter_map(|c| {
            let scores: Vec<f64> = probs.chunks(classes).map(|row| row[c]).collect();
            let positive: Vec<bool> = labels.iter().map(|&l| l as usize == c).collect();
            roc_auc(&scores, &positive)
        })
        .collect();
    (!aucs.is_empty()).then(|| aucs.iter().sum::<f64>() / aucs.len() as f64)
}
