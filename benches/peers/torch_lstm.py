"""PyTorch's side of kiln's LSTM benchmark row: forward + backward of `nn.LSTM` on the CPU.

    python3 benches/peers/torch_lstm.py [--threads 2] [--reps 10]

The shape is the issue's: 2 layers, batch 32, sequence 128, input and hidden 256, f32; the
loss is the sum of the output (so backward starts from ones, as kiln's row does). Prints a
markdown row: | framework | device | op | shape | ms | rate |, the median of the repetitions.
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
layers, batch, seq, size = 2, 32, 128, 256
lstm = torch.nn.LSTM(size, size, layers)
x = torch.randn(seq, batch, size, requires_grad=True)


def step():
    out, _ = lstm(x)
    out.sum().backward()


for _ in range(3):
    step()
ms = []
for _ in range(a.reps):
    t = time.perf_counter()
    step()
    ms.append((time.perf_counter() - t) * 1e3)
m = statistics.median(ms)
# per time step and layer: 4 gate GEMMs of (B×size)(size×4H) forward, twice that backward
flops = 3 * 2 * layers * seq * batch * (size + size) * 4 * size
print(f"| torch {torch.__version__} | cpu | lstm fwd+bwd | L{layers} B{batch} T{seq} H{size} | {m:.1f} | "
      f"{flops / m / 1e6:.1f} GFLOP/s |")
