//! A character-level LSTM language model (Karpathy's char-rnn, as the PyTorch peer
//! `torch_seq.py` builds it):
//!
//! ```text
//! ids (B, T) ──Embedding──▶ (B, T, E) ──LSTM × layers──▶ (B, T, H) ──Linear──▶ logits (B, T, V)
//! ```
//!
//! The state can be passed in and comes back out, so a run can carry it across batches
//! (truncated backpropagation through time) and generation can feed one character at a time.
//! State-dict names follow the peer (`emb.weight`, `lstm.weight_ih_l0`, …, `head.weight`).

use crate::nn::{Embedding, LSTM, Linear, LstmState, Module, RnnOptions, Visitor};
use crate::rng::RandomKey;
use crate::{Device, Result, Tensor, no_grad};

/// The sizes of a [`CharRnn`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CharRnnConfig {
    /// Characters in the vocabulary V.
    pub vocab_size: usize,
    /// Embedding width E.
    pub embedding: usize,
    /// Hidden width H of each LSTM layer.
    pub hidden: usize,
    /// Stacked LSTM layers.
    pub layers: usize,
    /// Dropout between LSTM layers, in training.
    pub dropout: f32,
}

/// Embedding → stacked LSTM → linear to next-character logits; see the module docs.
///
/// ```
/// use kiln::models::{CharRnn, CharRnnConfig};
/// use kiln::{Device, Tensor};
/// let dev = Device::Cpu;
/// let config = CharRnnConfig { vocab_size: 5, embedding: 8, hidden: 16, layers: 2, dropout: 0.0 };
/// let model = CharRnn::new(config, &dev);
/// let ids = Tensor::from_vec(vec![0i32, 1, 2, 3, 4, 0], [2, 3], &dev);
/// let (logits, state) = model.forward_with(&ids, None);
/// assert_eq!(logits.dims(), &[2, 3, 5]);
/// assert_eq!(state.h.dims(), &[2, 2, 16]); // (layers, batch, hidden)
/// ```
pub struct CharRnn {
    config: CharRnnConfig,
    emb: Embedding,
    lstm: LSTM,
    head: Linear,
}

impl CharRnn {
    /// A freshly initialized model (PyTorch's initialization of each layer).
    #[track_caller]
    pub fn new(config: CharRnnConfig, device: &Device) -> CharRnn {
        let options =
            RnnOptions::default().num_layers(config.layers).batch_first(true).dropout(config.dropout);
        CharRnn {
            config,
            emb: Embedding::new(config.vocab_size, config.embedding, device),
            lstm: LSTM::new(config.embedding, config.hidden, options, device),
            head: Linear::new(config.hidden, config.vocab_size, device),
        }
    }

    /// Its sizes.
    pub fn config(&self) -> CharRnnConfig {
        self.config
    }

    /// Next-character logits (B, T, V) of ids (B, T), from `state` (zeros if `None`), and the
    /// state after the last step.
    #[track_caller]
    pub fn forward_with(&self, ids: &Tensor, state: Option<&LstmState>) -> (Tensor, LstmState) {
        let (hidden, state) = self.lstm.forward_with(&self.emb.forward(ids), state, None);
        (self.head.forward(&hidden), state)
    }

    /// `prompt` followed by `count` characters sampled one at a time from the model's
    /// distribution at `temperature` (lower is more conservative), drawn from `key`'s stream.
    /// Runs without gradients, in whatever mode the model is in (use [`crate::nn::eval`] first).
    /// Panics on an empty prompt or a temperature that is not positive.
    #[track_caller]
    pub fn generate(
        &self,
        prompt: &[i32],
        count: usize,
        temperature: f64,
        key: RandomKey,
    ) -> Result<Vec<i32>> {
        if prompt.is_empty() || temperature.partial_cmp(&0.0) != Some(std::cmp::Ordering::Greater) {
            panic!(
                "CharRnn::generate: needs a prompt (got {} ids) and a positive temperature (got {temperature})",
                prompt.len()
            );
        }
        let device = self.head.weight.device();
        let mut ids = prompt.to_vec();
        no_grad(|| {
            let input = Tensor::from_vec(prompt.to_vec(), [1, prompt.len()], &device);
            let (mut logits, mut state) = self.forward_with(&input, None);
            for i in 0..count {
                let last = logits.select(1, logits.dim(1) - 1).reshape([self.config.vocab_size]);
                let probs = (last / temperature).softmax(-1).to_vec::<f32>()?;
                let next = draw(&probs, key.uniform(i as u64));
                ids.push(next);
                (logits, state) =
                    self.forward_with(&Tensor::from_vec(vec![next], [1, 1], &device), Some(&state));
            }
            Ok(ids)
        })
    }
}

/// The index whose cumulative probability first exceeds `u` in [0, 1) (the last one if rounding
/// leaves the sum short of `u`).
fn draw(probs: &[f32], u: f32) -> i32 {
    let mut cumulative = 0.0;
    for (i, &p) in probs.iter().enumerate() {
        cumulative += p;
        if u < cumulative {
            return i as i32;
        }
    }
    probs.len() as i32 - 1
}

impl Module for CharRnn {
    /// Next-character logits (B, T, V) of ids (B, T) from a zero state.
    #[track_caller]
    fn forward(&self, ids: &Tensor) -> Tensor {
        self.forward_with(ids, None).0
    }

    fn visit(&self, v: &mut dyn Visitor) {
        v.child("emb", &self.emb);
        v.child("lstm", &self.lstm);
        v.child("head", &self.head);
    }
}
