//! The plain f64 loop of the recurrent cells' fused step (forward and backward), written from
//! the cells' equations as `loops` writes the other ops: no kiln code, no fast paths.

use crate::loops::Host;

/// A recurrent cell, as `kiln::ops::recurrent::CellKind` names them.
#[derive(Clone, Copy, PartialEq, Debug)]
pub enum Cell {
    Lstm,
    Gru,
    RnnTanh,
    RnnRelu,
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// One step `t` of a cell: gx (T, B, G·H) the input projections, gh (B, G·H) the recurrent
/// term, the state ([h; c] (2, B, H) for the LSTM, h (B, H) otherwise), the GRU's b_hn
/// (T, B, H) and lengths (B), when given. A row whose length is ≤ t passes its state through.
pub struct CellStep<'a> {
    pub cell: Cell,
    pub t: usize,
    pub gx: &'a Host,
    pub gh: &'a Host,
    pub state: &'a Host,
    pub b_hn: Option<&'a Host>,
    pub lengths: Option<&'a Host>,
}

/// A row's gate pre-activations gx + gh and what the cell computes from them, for unit j.
struct Unit {
    pre: Vec<f64>,
    h: f64,
    c: f64,
    b_hn: f64,
}

impl CellStep<'_> {
    fn gates(&self) -> usize {
        match self.cell {
            Cell::Lstm => 4,
            Cell::Gru => 3,
            Cell::RnnTanh | Cell::RnnRelu => 1,
        }
    }

    fn batch_hidden(&self) -> (usize, usize) {
        let b = self.gh.shape[0];
        (b, self.gh.shape[1] / self.gates())
    }

    fn active(&self, b: usize) -> bool {
        self.lengths.is_none_or(|l| (self.t as f64) < l.v[b])
    }

    fn unit(&self, b: usize, j: usize) -> Unit {
        let (_, hidden) = self.batch_hidden();
        let pre = (0..self.gates())
            .map(|k| self.gx.at(&[self.t, b, k * hidden + j]) + self.gh.at(&[b, k * hidden + j]))
            .collect();
        let (h, c) = match self.cell {
            Cell::Lstm => (self.state.at(&[0, b, j]), self.state.at(&[1, b, j])),
            _ => (self.state.at(&[b, j]), 0.0),
        };
        let b_hn = self.b_hn.map_or(0.0, |bias| bias.at(&[self.t, b, j]));
        Unit { pre, h, c, b_hn }
    }

    /// The new state, shaped as the old.
    pub fn forward(&self) -> Vec<f64> {
        let (batch, hidden) = self.batch_hidden();
        let n = batch * hidden;
        let mut out = vec![0.0; self.state.v.len()];
        for b in 0..batch {
            for j in 0..hidden {
                let u = self.unit(b, j);
                let at = b * hidden + j;
                if !self.active(b) {
                    out[at] = u.h;
                    if self.cell == Cell::Lstm {
                        out[n + at] = u.c;
                    }
                    continue;
                }
                match self.cell {
                    Cell::Lstm => {
                        let (i, f, g, o) =
                            (sigmoid(u.pre[0]), sigmoid(u.pre[1]), u.pre[2].tanh(), sigmoid(u.pre[3]));
                        let c = f * u.c + i * g;
                        out[at] = o * c.tanh();
                        out[n + at] = c;
                    }
                    Cell::Gru => {
                        // gx − the hidden part of the candidate: gh's third block is W_hn·h
                        let (_, hidden) = self.batch_hidden();
                        let x_n = self.gx.at(&[self.t, b, 2 * hidden + j]);
                        let h_n = self.gh.at(&[b, 2 * hidden + j]) + u.b_hn;
                        let (r, z) = (sigmoid(u.pre[0]), sigmoid(u.pre[1]));
                        let cand = (x_n + r * h_n).tanh();
                        out[at] = (1.0 - z) * cand + z * u.h;
                    }
                    Cell::RnnTanh => out[at] = u.pre[0].tanh(),
                    Cell::RnnRelu => out[at] = u.pre[0].max(0.0),
                }
            }
        }
        out
    }

    /// The gradients for upstream `dy` (shaped as the state), packed as the cell's backward op
    /// writes them, in blocks of (B, ·):
    /// - LSTM: d gates (4H) | dh_prev (H) | dc_prev (H);
    /// - GRU: d gx (3H) | d gh (3H) | dh_prev (H) | d b_hn (H);
    /// - RNN: d gates (H) | dh_prev (H).
    ///
    /// dh_prev is what reaches the old h other than through gh: all of dh for a row that has
    /// ended (its state passed through), and for a running row z·dh in a GRU, 0 otherwise.
    pub fn backward(&self, dy: &Host) -> Vec<f64> {
        let (batch, hidden) = self.batch_hidden();
        let (n, g) = (batch * hidden, self.gates() * hidden);
        let blocks = match self.cell {
            Cell::Lstm => 6,
            Cell::Gru => 8,
            Cell::RnnTanh | Cell::RnnRelu => 2,
        };
        let mut out = vec![0.0; blocks * n];
        // where the blocks after d gates (and the GRU's d gh) begin
        let dh_prev = batch * g * if self.cell == Cell::Gru { 2 } else { 1 };
        let last = dh_prev + n;
        for b in 0..batch {
            for j in 0..hidden {
                let u = self.unit(b, j);
                let at = b * hidden + j;
                let dh = match self.cell {
                    Cell::Lstm => dy.at(&[0, b, j]),
                    _ => dy.at(&[b, j]),
                };
                if !self.active(b) {
                    out[dh_prev + at] = dh;
                    if self.cell == Cell::Lstm {
                        out[last + at] = dy.at(&[1, b, j]);
                    }
                    continue;
                }
                let gate = |k: usize| b * g + k * hidden + j;
                match self.cell {
                    Cell::Lstm => {
                        let (i, f, gg, o) =
                            (sigmoid(u.pre[0]), sigmoid(u.pre[1]), u.pre[2].tanh(), sigmoid(u.pre[3]));
                        let c = f * u.c + i * gg;
                        // c reaches the loss directly (dc) and through h = o·tanh c
                        let dc = dy.at(&[1, b, j]) + dh * o * (1.0 - c.tanh().powi(2));
                        // d/dx σ = σ(1 − σ), d/dx tanh = 1 − tanh²
                        out[gate(0)] = dc * gg * i * (1.0 - i);
                        out[gate(1)] = dc * u.c * f * (1.0 - f);
                        out[gate(2)] = dc * i * (1.0 - gg * gg);
                        out[gate(3)] = dh * c.tanh() * o * (1.0 - o);
                        out[last + at] = dc * f;
                    }
                    Cell::Gru => {
                        let x_n = self.gx.at(&[self.t, b, 2 * hidden + j]);
                        let h_n = self.gh.at(&[b, 2 * hidden + j]) + u.b_hn;
                        let (r, z) = (sigmoid(u.pre[0]), sigmoid(u.pre[1]));
                        let cand = (x_n + r * h_n).tanh();
                        let d_cand = dh * (1.0 - z) * (1.0 - cand * cand);
                        let d_r = d_cand * h_n * r * (1.0 - r);
                        let d_z = dh * (u.h - cand) * z * (1.0 - z);
                        let gh = batch * g;
                        for (k, (dx, dhh)) in
                            [(d_r, d_r), (d_z, d_z), (d_cand, d_cand * r)].into_iter().enumerate()
                        {
                            out[gate(k)] = dx;
                            out[gh + gate(k)] = dhh;
                        }
                        out[dh_prev + at] = dh * z;
                        out[last + at] = d_cand * r;
                    }
                    Cell::RnnTanh => out[gate(0)] = dh * (1.0 - u.pre[0].tanh().powi(2)),
                    Cell::RnnRelu => out[gate(0)] = if u.pre[0] > 0.0 { dh } else { 0.0 },
                }
            }
        }
        out
    }
}
