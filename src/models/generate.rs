//! Choosing the next token from a language model's logits: greedy, or sampled with temperature,
//! top-k and top-p (nucleus) filtering, from a seeded Philox stream.
//!
//! The choice is made on the host, in f64, from the logits of the last position: the same seed
//! draws the same uniform numbers on every device, so CPU and GPU runs pick the same tokens
//! (unless two candidates' probabilities straddle a draw within the backends' f32 difference).

use crate::rng::RandomKey;

/// How [`Sampling::pick`] chooses a token, and when generation stops.
///
/// ```
/// use kiln::models::generate::Sampling;
/// let logits = [0.0f32, 3.0, 1.0, 2.0];
/// assert_eq!(Sampling::greedy().pick(&logits, 0), 1);
/// let top2 = Sampling { temperature: 1.0, top_k: Some(2), ..Sampling::greedy() };
/// for step in 0..20 {
///     assert!([1, 3].contains(&top2.pick(&logits, step))); // only the two most likely
/// }
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Sampling {
    /// Logits are divided by it before the softmax; 0 picks the most likely token (greedy).
    pub temperature: f64,
    /// Keep only the k most likely tokens (ties with the k-th are kept).
    pub top_k: Option<usize>,
    /// Keep the fewest most likely tokens whose probabilities sum to at least p.
    pub top_p: Option<f64>,
    /// The Philox seed of the draws: step s draws element s of stream 0.
    pub seed: u64,
    /// Tokens after which generation stops (the stop token is returned).
    pub stop: Vec<i32>,
}

impl Sampling {
    /// The most likely token every time, no stop tokens.
    pub fn greedy() -> Sampling {
        Sampling { temperature: 0.0, top_k: None, top_p: None, seed: 0, stop: Vec::new() }
    }

    /// Sampling at `temperature` with `seed`, no filtering.
    pub fn sampled(temperature: f64, seed: u64) -> Sampling {
        Sampling { temperature, seed, ..Sampling::greedy() }
    }

    /// The token for generation step `step` from `logits` (V): the first largest logit when
    /// greedy, else a draw from the filtered softmax.
    ///
    /// Panics on empty logits or a negative temperature.
    #[track_caller]
    pub fn pick(&self, logits: &[f32], step: u64) -> i32 {
        if logits.is_empty() || self.temperature < 0.0 || self.temperature.is_nan() {
            panic!("Sampling::pick: {} logits at temperature {}", logits.len(), self.temperature);
        }
        if self.temperature == 0.0 {
            let best =
                logits.iter().enumerate().fold(0, |best, (i, &x)| if x > logits[best] { i } else { best });
            return best as i32;
        }
        // candidates by decreasing logit (stable: ties keep the lower id first)
        let mut order: Vec<usize> = (0..logits.len()).collect();
        order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]));
        if let Some(k) = self.top_k {
            let k = k.clamp(1, order.len());
            let kth = logits[order[k - 1]];
            order.retain(|&i| logits[i] >= kth);
        }
        let max = f64::from(logits[order[0]]);
        let weights: Vec<f64> =
            order.iter().map(|&i| ((f64::from(logits[i]) - max) / self.temperature).exp()).collect();
        let total: f64 = weights.iter().sum();
        let mut probs: Vec<f64> = weights.iter().map(|w| w / total).collect();
        if let Some(p) = self.top_p {
            // the smallest prefix whose mass reaches p (at least one token)
            let mut mass = 0.0;
            let keep = probs.iter().position(|q| {
                mass += q;
                mass >= p
            });
            let keep = keep.map_or(probs.len(), |i| i + 1);
            probs.truncate(keep);
            order.truncate(keep);
            let kept: f64 = probs.iter().sum();
            probs.iter_mut().for_each(|q| *q /= kept);
        }
        let u = f64::from(RandomKey { seed: self.seed, stream: 0 }.uniform(step));
        let mut cumulative = 0.0;
        for (&i, q) in order.iter().zip(&probs) {
            cumulative += q;
            if u < cumulative {
                return i as i32;
            }
        }
        order[order.len() - 1] as i32
    }
}

#[cfg(test)]
mod tests {
    use super::Sampling;

    /// How often each token is drawn in `n` steps.
    fn counts(s: &Sampling, logits: &[f32], n: u64) -> Vec<usize> {
        let mut c = vec![0; logits.len()];
        (0..n).for_each(|step| c[s.pick(logits, step) as usize] += 1);
        c
    }

    #[test]
    fn draws_follow_the_softmax() {
        let logits = [0.0f32, 1.0, 2.0];
        let c = counts(&Sampling::sampled(1.0, 7), &logits, 20_000);
        let z: f64 = logits.iter().map(|&x| f64::from(x).exp()).sum();
        for (i, &x) in logits.iter().enumerate() {
            let want = f64::from(x).exp() / z;
            let got = c[i] as f64 / 20_000.0;
            assert!((got - want).abs() < 0.015, "token {i}: {got} vs {want}");
        }
    }

    #[test]
    fn top_p_keeps_the_smallest_nucleus() {
        // probabilities ≈ 0.665, 0.245, 0.090: p = 0.7 keeps the first two
        let logits = [2.0f32, 1.0, 0.0];
        let s = Sampling { top_p: Some(0.7), ..Sampling::sampled(1.0, 3) };
        let c = counts(&s, &logits, 5_000);
        assert_eq!(c[2], 0);
        assert!(c[1] > 1_000, "{c:?}");
        let s = Sampling { top_p: Some(0.5), ..Sampling::sampled(1.0, 3) };
        assert_eq!(counts(&s, &logits, 1_000), [1_000, 0, 0]);
    }

    #[test]
    fn low_temperature_approaches_greedy_and_seeds_repeat() {
        let logits = [0.5f32, 0.6, 0.4];
        assert_eq!(counts(&Sampling::sampled(1e-3, 1), &logits, 500), [0, 500, 0]);
        let s = Sampling::sampled(1.0, 42);
        let a: Vec<i32> = (0..50).map(|i| s.pick(&logits, i)).collect();
        let b: Vec<i32> = (0..50).map(|i| s.pick(&logits, i)).collect();
        assert_eq!(a, b);
        let other: Vec<i32> = (0..50).map(|i| Sampling::sampled(1.0, 43).pick(&logits, i)).collect();
        assert_ne!(a, other);
    }
}
