//! The metrics the Trainer and the examples report, against values worked out by hand:
//! classification (accuracy, precision, recall, F1, confusion counts, ROC-AUC) and corpus BLEU.

use kiln::train::metrics::{Confusion, corpus_bleu, roc_auc, roc_auc_ovr};

#[test]
fn metrics_have_their_textbook_values() {
    let mut c = Confusion::new(3);
    c.add(&[0, 0, 1, 1, 2, 2, 2], &[0, 1, 1, 1, 2, 0, 2]);
    assert!((c.accuracy() - 5.0 / 7.0).abs() < 1e-12);
    assert!((c.precision(0) - 0.5).abs() < 1e-12 && (c.recall(0) - 0.5).abs() < 1e-12);
    assert!((c.precision(1) - 2.0 / 3.0).abs() < 1e-12 && (c.recall(1) - 1.0).abs() < 1e-12);
    assert!((c.f1(1) - 0.8).abs() < 1e-12);
    assert_eq!(c.count(2, 0), 1);
    // AUC: positives score 0.35 and 0.8, negatives 0.1 and 0.4 → 3 of 4 pairs ordered
    assert_eq!(roc_auc(&[0.1, 0.4, 0.35, 0.8], &[false, false, true, true]), Some(0.75));
    assert_eq!(roc_auc(&[0.5, 0.5], &[false, true]), Some(0.5), "ties count half");
    assert_eq!(roc_auc(&[0.1, 0.2], &[true, true]), None);
    let probs = [0.9, 0.1, 0.2, 0.8, 0.6, 0.4];
    assert_eq!(roc_auc_ovr(&probs, &[0, 1, 0], 2), Some(1.0));
}

fn words(s: &str) -> Vec<&str> {
    s.split_whitespace().collect()
}

/// Corpus BLEU-4 of (hypothesis, reference) pairs.
fn bleu(pairs: &[(&str, &str)]) -> kiln::train::metrics::Bleu {
    let hyps: Vec<Vec<&str>> = pairs.iter().map(|(h, _)| words(h)).collect();
    let refs: Vec<Vec<&str>> = pairs.iter().map(|(_, r)| words(r)).collect();
    corpus_bleu(&hyps, &refs)
}

/// A BLEU case: its name, (hypothesis, reference) pairs, and the expected score.
type BleuCase = (&'static str, &'static [(&'static str, &'static str)], f64);

#[test]
fn bleu_has_its_hand_computed_values() {
    let close = |a: f64, b: f64| (a - b).abs() < 1e-9;
    // (hypothesis, reference) pairs → BLEU ×100, worked out by hand in the comments
    let cases: &[BleuCase] = &[
        ("identical", &[("a man rides a bike .", "a man rides a bike .")], 100.0),
        // c = 0: no n-grams and BP = 0
        ("empty hypothesis", &[("", "a man rides a bike .")], 0.0),
        // longer than its reference: BP = 1, p = 5/6, 4/5, 3/4, 2/3, so (1/3)^¼
        ("longer", &[("a b c d e f", "a b c d e")], 100.0 * (1.0f64 / 3.0).powf(0.25)),
        // shorter: every n-gram matches, BP = e^(1 − 6/4)
        ("shorter", &[("a b c d", "a b c d e f")], 100.0 * (-0.5f64).exp()),
        // "the" clipped to the reference's two, no bigram matches: 0
        ("clipped", &[("the the the the", "the cat the mat")], 0.0),
        // counts pool over the corpus: p = 7/8, 4/6, 2/4, 1/2 although sentence 2 alone scores 0
        (
            "pooled",
            &[("a b c d", "a b c d"), ("e f g h", "e f x h")],
            100.0 * (7.0f64 / 8.0 * 4.0 / 6.0 * 0.5 * 0.5).powf(0.25),
        ),
    ];
    for (what, pairs, expected) in cases {
        let b = bleu(pairs);
        assert!(close(b.score, *expected), "{what}: {b} (expected {expected:.4})");
    }
    let clipped = bleu(&[("the the the the", "the cat the mat")]);
    assert_eq!(clipped.precisions, [0.5, 0.0, 0.0, 0.0]);
    let short = bleu(&[("a b c d", "a b c d e f")]);
    assert!(close(short.brevity_penalty, (-0.5f64).exp()));
    assert_eq!((short.hypothesis_length, short.reference_length), (4, 6));
    assert_eq!(bleu(&[("", "a b")]).to_string(), "BLEU 0.00 (0.0/0.0/0.0/0.0, BP 0.000, 0/2)");
    // token ids work as well as words
    assert_eq!(corpus_bleu(&[vec![4, 8, 15, 16, 23]], &[vec![4, 8, 15, 16, 23]]).score, 100.0);
}

#[test]
#[should_panic(expected = "corpus_bleu: 1 hypotheses for 2 references")]
fn bleu_of_corpora_of_different_lengths_panics() {
    corpus_bleu(&[vec!["a"]], &[vec!["a"], vec!["b"]]);
}
