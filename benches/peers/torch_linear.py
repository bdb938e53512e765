"""PyTorch's side of kiln's `linear` benchmark rows: a linear layer's three products on the CPU.

    python3 benches/peers/torch_linear.py [--threads 2] [--reps 10]

The shapes are `examples/bench.rs`'s: the char-GPT's MLP (768 tokens, 128 → 512) and an LSTM
layer's input projection (4096 steps × batch, 256 → 1024), f32, transposes as views (as
`F.linear` and its gradients read them). Prints markdown rows: | framework | device | op |
shape | ms | rate |, the median of the repetitions.
"""
import argparse
import statistics
import time

import torch

p = argparse.ArgumentParser()
p.add_argument("--threads", type=int, default=2)
p.add_argument("--reps", type=int, default=10)
a = p.parse_args()
torch.set_num_threads(a.threads)
torch.manual_seed(0)


def median_ms(f):
    for _ in range(3):
        f()
    ms = []
    for _ in range(a.reps):
        t = time.perf_counter()
        f()
        ms.append((time.perf_counter() - t) * 1e3)
    return statistics.median(ms)


for m, k, n in [(768, 128, 512), (4096, 256, 1024)]:
    x, w, dy = torch.randn(m, k), torch.randn(n, k), torch.randn(m, n)
    flop = 2 * m * k * n
    rows = [
        ("linear x·Wᵀ", f"{m}x{k} · ({n}x{k})ᵀ", lambda: x @ w.t()),
        ("linear dY·W", f"{m}x{n} · {n}x{k}", lambda: dy @ w),
        ("linear dYᵀ·X", f"({m}x{n})ᵀ · {m}x{k}", lambda: dy.t() @ x),
    ]
    for op, shape, f in rows:
        ms = median_ms(f)
        print(f"| PyTorch {torch.__version__} | cpu | {op} | {shape} | {ms:.3f} | {flop / ms / 1e6:.1f} GFLOP/s |")
