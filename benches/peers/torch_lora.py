"""PyTorch peer of kiln's `lora_finetune` example: the same experiment, same data pipeline and
hyperparameters, starting from the same checkpoint (kiln's `char_gpt --preset cpu` output, loaded
into a nanoGPT-named PyTorch GPT with `load_state_dict(strict=True)`).

    python benches/peers/torch_lora.py DATA_DIR BASE_DIR [--alpha 64] [--lr 3e-3] [--also-train "*wte*"]

Fine-tunes on Multi30k's English captions (lower-cased, characters outside the vocabulary
dropped, one caption per line) for 500 steps of batch 12 × 64, once with rank-8 LoRA on every
`attn.c_attn` and `attn.c_proj` and once in full; AdamW (β2 0.99, no weight decay), 50 warm-up
steps then a cosine to a tenth of the rate, clipping at 1.0. Prints the validation loss (200
batches) before and after each and the fraction of full fine-tuning's gain LoRA recovers.
"""
import argparse
import fnmatch
import gzip
import json
import math
import os
import time

import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import load_file


class Attention(nn.Module):
    def __init__(self, d, heads):
        super().__init__()
        self.c_attn, self.c_proj, self.heads = nn.Linear(d, 3 * d, bias=False), nn.Linear(d, d, bias=False), heads

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, 2)
        q, k, v = (t.view(B, T, self.heads, C // self.heads).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.c_proj(y.transpose(1, 2).reshape(B, T, C))


class Mlp(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.c_fc, self.c_proj = nn.Linear(d, 4 * d, bias=False), nn.Linear(4 * d, d, bias=False)

    def forward(self, x):
        return self.c_proj(F.gelu(self.c_fc(x)))


class Block(nn.Module):
    def __init__(self, d, heads):
        super().__init__()
        self.ln_1, self.attn = nn.LayerNorm(d, bias=False), Attention(d, heads)
        self.ln_2, self.mlp = nn.LayerNorm(d, bias=False), Mlp(d)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    """nanoGPT's GPT without biases, with nanoGPT's state-dict names."""

    def __init__(self, vocab, block, d, heads, layers):
        super().__init__()
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(vocab, d), wpe=nn.Embedding(block, d),
            h=nn.ModuleList([Block(d, heads) for _ in range(layers)]), ln_f=nn.LayerNorm(d, bias=False)))
        self.lm_head = nn.Linear(d, vocab, bias=False)
        self.lm_head.weight = self.transformer.wte.weight

    def forward(self, idx):
        t = self.transformer
        x = t.wte(idx) + t.wpe(torch.arange(idx.shape[1]))
        for block in t.h:
            x = block(x)
        return self.lm_head(t.ln_f(x))


class LoraLinear(nn.Module):
    """y = x·Wᵀ + (α/r)·(x·Aᵀ)·Bᵀ with W frozen, A as a Linear weight, B zero (Hu et al. 2021)."""

    def __init__(self, base, rank, alpha):
        super().__init__()
        self.base, self.scaling = base, alpha / rank
        base.weight.requires_grad_(False)
        self.lora_A = nn.Linear(base.in_features, rank, bias=False)
        self.lora_B = nn.Linear(rank, base.out_features, bias=False)
        nn.init.zeros_(self.lora_B.weight)

    def forward(self, x):
        return self.base(x) + self.lora_B(self.lora_A(x)) * self.scaling


def captions(path, chars):
    known = set(chars)
    with gzip.open(path, "rt", encoding="utf-8") as f:
        text = "".join("".join(c for c in line.rstrip("\n").lower() if c in known) + "\n" for line in f)
    index = {c: i for i, c in enumerate(chars)}
    return torch.tensor([index[c] for c in text], dtype=torch.long)


def batch(ids, block, size, g):
    ix = torch.randint(len(ids) - block, (size,), generator=g)
    return torch.stack([ids[i:i + block] for i in ix]), torch.stack([ids[i + 1:i + block + 1] for i in ix])


@torch.no_grad()
def evaluate(model, ids, block, size):
    model.eval()
    g = torch.Generator().manual_seed(1)
    loss = sum(F.cross_entropy(model(x).flatten(0, 1), y.flatten()).item()
               for x, y in (batch(ids, block, size, g) for _ in range(200))) / 200
    model.train()
    return loss


def nanogpt_lr(step, top, bottom, warmup, steps):
    if step < warmup:
        return top * (step + 1) / (warmup + 1)
    ratio = (step - warmup) / max(1, steps - warmup)
    return bottom + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (top - bottom)


def load(base, chars):
    path = os.path.join(base, "last.safetensors")
    sd = load_file(path)
    with safe_open(path, "pt") as f:  # kiln writes the configuration as metadata
        meta = f.metadata()
    model = GPT(len(chars), int(meta["block_size"]), int(meta["n_embd"]), int(meta["n_head"]), int(meta["n_layer"]))
    model.load_state_dict(sd, strict=True)
    return model


def fine_tune(model, params, train, args):
    block = model.transformer.wpe.weight.shape[0]
    opt = torch.optim.AdamW(params, lr=args.lr, betas=(0.9, 0.99), weight_decay=0.0)
    g = torch.Generator().manual_seed(0)
    start = time.perf_counter()
    for step in range(args.steps):
        for group in opt.param_groups:
            group["lr"] = nanogpt_lr(step, args.lr, args.lr / 10, 50, args.steps)
        x, y = batch(train, block, 12, g)
        loss = F.cross_entropy(model(x).flatten(0, 1), y.flatten())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("data")
    parser.add_argument("base")
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--rank", type=int, default=8)
    parser.add_argument("--alpha", type=float, default=64.0)
    parser.add_argument("--also-train", action="append", default=[],
                        help="base parameters LoRA also trains in full, by name pattern (repeats), as kiln's option")
    args = parser.parse_args()
    torch.manual_seed(0)
    chars = json.load(open(os.path.join(args.base, "vocab.json")))["tokens"]
    corpus = os.path.join(args.data, "multi30k")
    train, val = captions(os.path.join(corpus, "train.en.gz"), chars), captions(os.path.join(corpus, "val.en.gz"), chars)
    base = load(args.base, chars)
    block = base.transformer.wpe.weight.shape[0]
    total = sum(p.numel() for p in base.parameters())
    before = evaluate(base, val, block, 12)
    print(f"torch {torch.__version__}: validation loss before fine-tuning {before:.4f}")

    lora = load(args.base, chars)
    for block_module in lora.transformer.h:
        block_module.attn.c_attn = LoraLinear(block_module.attn.c_attn, args.rank, args.alpha)
        block_module.attn.c_proj = LoraLinear(block_module.attn.c_proj, args.rank, args.alpha)
    adapters = [p for n, p in lora.named_parameters()
                if "lora_" in n or any(fnmatch.fnmatchcase(n, pattern) for pattern in args.also_train)]
    seconds = fine_tune(lora, adapters, train, args)
    after_lora = evaluate(lora, val, block, 12)
    trained = sum(p.numel() for p in adapters)
    print(f"LoRA: trained {trained} parameters ({100 * trained / total:.2f}%), {before:.4f} → {after_lora:.4f} in {seconds:.1f} s")

    full = load(args.base, chars)
    seconds = fine_tune(full, list(full.parameters()), train, args)
    after_full = evaluate(full, val, block, 12)
    print(f"Full: trained {total} parameters, {before:.4f} → {after_full:.4f} in {seconds:.1f} s")
    print(f"LoRA closes {100 * (before - after_lora) / (before - after_full):.1f}% of the gap full fine-tuning closes")


if __name__ == "__main__":
    main()
