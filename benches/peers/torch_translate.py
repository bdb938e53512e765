"""PyTorch peer of kiln's `translate` example: German → English on Multi30k with the same data
pipeline (kiln's tokenizer rules, vocabularies of training tokens seen twice with the specials
first and ties by token, `<bos> … <eos>` sentences, batches of 128 pairs bucketed by source
length), the same models with kiln's state-dict names, the same optimizer (Adam, clipping at 1)
and the same decoding (greedy, and beam search with the GNMT length penalty).

    python benches/peers/torch_translate.py DATA_DIR --model transformer|gru-attn [--epochs 1]
    python benches/peers/torch_translate.py DATA_DIR --model transformer --load runs/mt/best.safetensors

Prints seconds per epoch, the validation loss and perplexity, and test BLEU-4 with greedy
decoding and with beam 5. `--load` evaluates a checkpoint that kiln wrote, loaded with
`load_state_dict(strict=True)`: the same weights must give kiln's figures.
"""
import argparse
import gzip
import math
import os
import random
import time
import unicodedata
from collections import Counter

import torch
import torch.nn as nn
import torch.nn.functional as F

PAD, UNK, BOS, EOS = 0, 1, 2, 3
SPECIALS = ["<pad>", "<unk>", "<bos>", "<eos>"]


# ---------------------------------------------------------------- data, as kiln's data module


def is_word(c):
    return c.isalnum() or "\u0300" <= c <= "\u036f"


def tokenize(text):
    """kiln::data::tokenize: lowercase; runs of letters and digits (and combining marks) are words,
    an apostrophe between two word characters belongs to the word, every other non-space
    character is a token of its own."""
    chars, tokens, word = list(text.lower()), [], ""
    for i, c in enumerate(chars):
        if is_word(c):
            word += c
        elif c in "'\u2019" and word and i + 1 < len(chars) and is_word(chars[i + 1]):
            word += "'"
        else:
            if word:
                tokens.append(word)
                word = ""
            if not c.isspace():
                tokens.append(c)
    if word:
        tokens.append(word)
    return tokens


def read_split(data, name):
    lines = lambda lang: gzip.open(os.path.join(data, "multi30k", f"{name}.{lang}.gz"), "rt", encoding="utf-8").read().splitlines()
    return [tokenize(s) for s in lines("de")], [tokenize(s) for s in lines("en")]


def build_vocab(sentences, min_freq=2):
    counts = Counter(t for s in sentences for t in s)
    kept = sorted((t for t, n in counts.items() if n >= min_freq and t not in SPECIALS), key=lambda t: (-counts[t], t))
    itos = SPECIALS + kept
    return {t: i for i, t in enumerate(itos)}, itos


def encode(stoi, tokens):
    return [BOS] + [stoi.get(t, UNK) for t in tokens] + [EOS]


def pad(seqs):
    width = max(len(s) for s in seqs)
    return torch.tensor([s + [PAD] * (width - len(s)) for s in seqs]), torch.tensor([len(s) for s in seqs])


def batches(pairs, size, seed, pool=100):
    """torchtext's BucketIterator pools: shuffle, sort pools of `pool` batches by source length, cut,
    shuffle the batches."""
    rng = random.Random(seed)
    order = list(range(len(pairs)))
    rng.shuffle(order)
    out = []
    for p in range(0, len(order), size * pool):
        chunk = sorted(order[p : p + size * pool], key=lambda i: len(pairs[i][0]))
        out.extend(chunk[i : i + size] for i in range(0, len(chunk), size))
    rng.shuffle(out)
    return out


# ---------------------------------------------------------------- models, kiln's names


class GruAttention(nn.Module):
    """kiln::models::GruAttention: bidirectional GRU encoder, Bahdanau attention, GRU decoder."""

    def __init__(self, src_vocab, tgt_vocab, emb=256, enc=512, dec=512, dropout=0.5):
        super().__init__()
        self.encoder = nn.Module()
        self.encoder.embedding = nn.Embedding(src_vocab, emb)
        self.encoder.rnn = nn.GRU(emb, enc, bidirectional=True, batch_first=True)
        self.encoder.fc = nn.Linear(2 * enc, dec)
        self.decoder = nn.Module()
        self.decoder.attention = nn.Module()
        self.decoder.attention.attn = nn.Linear(dec + 2 * enc, dec)
        self.decoder.attention.v = nn.Linear(dec, 1, bias=False)
        self.decoder.embedding = nn.Embedding(tgt_vocab, emb)
        self.decoder.rnn = nn.GRU(emb + 2 * enc, dec, batch_first=True)
        self.decoder.fc_out = nn.Linear(dec + 2 * enc + emb, tgt_vocab)
        self.dropout, self.dec = nn.Dropout(dropout), dec
        for name, p in self.named_parameters():
            nn.init.normal_(p, 0, 0.01) if "weight" in name else nn.init.zeros_(p)

    def encode(self, src, lengths):
        x = self.dropout(self.encoder.embedding(src))
        packed = nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        out, h = self.encoder.rnn(packed)
        out, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=src.shape[1])
        hidden = torch.tanh(self.encoder.fc(torch.cat([h[0], h[1]], -1)))
        w = self.decoder.attention.attn.weight
        keys = F.linear(out, w[:, self.dec :], self.decoder.attention.attn.bias)
        mask = torch.where(src != PAD, 0.0, -1e10)
        return {"out": out, "keys": keys, "mask": mask, "hidden": hidden}

    def _step(self, s, emb):
        query = s["hidden"] @ self.decoder.attention.attn.weight[:, : self.dec].t()
        energy = torch.tanh(s["keys"] + query.unsqueeze(1))
        a = torch.softmax(self.decoder.attention.v(energy).squeeze(-1) + s["mask"], -1)
        context = torch.bmm(a.unsqueeze(1), s["out"]).squeeze(1)
        _, h = self.decoder.rnn(torch.cat([emb, context], -1).unsqueeze(1), s["hidden"].unsqueeze(0))
        s["hidden"] = h[0]
        return context

    def forward_teacher(self, src, lengths, tgt, positions):
        s = self.encode(src, lengths)
        emb = self.dropout(self.decoder.embedding(tgt))
        hiddens, contexts = [], []
        for t in range(tgt.shape[1]):
            contexts.append(self._step(s, emb[:, t]))
            hiddens.append(s["hidden"])
        feats = torch.cat([torch.stack(hiddens, 1), torch.stack(contexts, 1), emb], -1)
        return self.decoder.fc_out(feats.flatten(0, 1)[positions])

    def step(self, s, tokens):
        emb = self.decoder.embedding(tokens)
        context = self._step(s, emb)
        return F.log_softmax(self.decoder.fc_out(torch.cat([s["hidden"], context, emb], -1)), -1)

    def reorder(self, s, index):
        for k in s:
            s[k] = s[k][index]


class TransformerTranslator(nn.Module):
    """kiln::models::TransformerTranslator: nn.Transformer with learned positions."""

    def __init__(self, src_vocab, tgt_vocab, d=256, heads=8, layers=3, ff=512, dropout=0.1, max_len=100):
        super().__init__()
        self.src_embedding, self.tgt_embedding = nn.Embedding(src_vocab, d), nn.Embedding(tgt_vocab, d)
        self.src_positions, self.tgt_positions = nn.Embedding(max_len, d), nn.Embedding(max_len, d)
        self.dropout = nn.Dropout(dropout)
        self.transformer = nn.Transformer(d, heads, layers, layers, ff, dropout, batch_first=True)
        self.generator = nn.Linear(d, tgt_vocab)
        self.d = d
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)

    def embed(self, emb, pos, ids, offset=0):
        positions = torch.arange(offset, offset + ids.shape[1])
        return self.dropout(emb(ids) * math.sqrt(self.d) + pos(positions))

    def encode(self, src, lengths):
        padding = src == PAD
        memory = self.transformer.encoder(self.embed(self.src_embedding, self.src_positions, src), src_key_padding_mask=padding)
        return {"memory": memory, "padding": padding, "tokens": torch.full((src.shape[0], 0), BOS, dtype=torch.long)}

    def forward_teacher(self, src, lengths, tgt, positions):
        s = self.encode(src, lengths)
        mask = nn.Transformer.generate_square_subsequent_mask(tgt.shape[1])
        y = self.embed(self.tgt_embedding, self.tgt_positions, tgt)
        out = self.transformer.decoder(y, s["memory"], tgt_mask=mask, tgt_is_causal=True, memory_key_padding_mask=s["padding"])
        return self.generator(out.flatten(0, 1)[positions])

    def step(self, s, tokens):
        # no KV cache in nn.TransformerDecoder: the prefix is decoded again at every step
        s["tokens"] = torch.cat([s["tokens"], tokens.unsqueeze(1)], 1)
        mask = nn.Transformer.generate_square_subsequent_mask(s["tokens"].shape[1])
        y = self.embed(self.tgt_embedding, self.tgt_positions, s["tokens"])
        out = self.transformer.decoder(y, s["memory"], tgt_mask=mask, tgt_is_causal=True, memory_key_padding_mask=s["padding"])
        return F.log_softmax(self.generator(out[:, -1]), -1)

    def reorder(self, s, index):
        for k in s:
            s[k] = s[k][index]


# ---------------------------------------------------------------- decoding and BLEU


@torch.no_grad()
def decode(model, sources, beam, alpha, max_len=100, batch=64):
    """Beam search as kiln::models::seq2seq::decode (width 1 is greedy): each step keeps the best
    `beam` extensions; those ending in <eos> among the best `beam` are finished, scored
    log p / ((5 + |Y|) / 6)^α; a sentence is done with `beam` finished."""
    model.eval()
    out = [None] * len(sources)
    order = sorted(range(len(sources)), key=lambda i: len(sources[i]))
    for c in range(0, len(order), batch):
        ids = order[c : c + batch]
        src, lengths = pad([sources[i] for i in ids])
        state = model.encode(src, lengths)
        alive = [[([], 0.0)] for _ in ids]
        finished = [[] for _ in ids]
        for step in range(max_len):
            rows = [(s, b) for s, beams in enumerate(alive) for b in range(len(beams))]
            if not rows:
                break
            tokens = torch.tensor([alive[s][b][0][-1] if alive[s][b][0] else BOS for s, b in rows])
            logp = model.step(state, tokens)
            parents, row = [], 0
            for s, beams in enumerate(alive):
                if not beams:
                    continue
                scores = (torch.tensor([lp for _, lp in beams]).unsqueeze(1) + logp[row : row + len(beams)].double()).flatten()
                top = torch.topk(scores, min(2 * beam, scores.numel()))
                vocab = logp.shape[1]
                nxt = []
                for rank, (score, flat) in enumerate(zip(top.values.tolist(), top.indices.tolist())):
                    b, token = divmod(flat, vocab)
                    if token == EOS:
                        if rank < beam:
                            finished[s].append((beams[b][0], score / ((6 + len(beams[b][0])) / 6) ** alpha))
                    elif len(nxt) < beam:
                        nxt.append((beams[b][0] + [token], score))
                        parents.append(row + b)
                row += len(beams)
                last = step + 1 == max_len
                if len(finished[s]) >= beam or last:
                    if last:
                        finished[s].extend((t, lp / ((5 + len(t)) / 6) ** alpha) for t, lp in nxt)
                    del parents[len(parents) - len(nxt) :]
                    nxt = []
                alive[s] = nxt
            model.reorder(state, torch.tensor(parents, dtype=torch.long))
        for s, i in enumerate(ids):
            out[i] = max(finished[s], key=lambda h: h[1])[0]
    return out


def bleu(hyps, refs):
    """Corpus BLEU-4 with brevity penalty (Papineni et al. 2002), as kiln::train::metrics::corpus_bleu."""
    match, total, c, r = [0] * 4, [0] * 4, 0, 0
    for h, ref in zip(hyps, refs):
        c, r = c + len(h), r + len(ref)
        for n in range(1, 5):
            hc = Counter(tuple(h[i : i + n]) for i in range(len(h) - n + 1))
            rc = Counter(tuple(ref[i : i + n]) for i in range(len(ref) - n + 1))
            match[n - 1] += sum(min(k, rc[g]) for g, k in hc.items())
            total[n - 1] += max(len(h) - n + 1, 0)
    if min(match) == 0:
        return 0.0
    bp = 1.0 if c > r else math.exp(1 - r / c)
    return 100 * bp * math.exp(sum(math.log(m / t) for m, t in zip(match, total)) / 4)


# ---------------------------------------------------------------- training


def positions_of(lengths, steps):
    return torch.cat([b * steps + torch.arange(n - 1) for b, n in enumerate(lengths.tolist())])


def loss_of(model, src, lengths, tgt, tgt_lengths):
    steps = tgt.shape[1] - 1
    positions = positions_of(tgt_lengths, steps)
    logits = model.forward_teacher(src, lengths, tgt[:, :steps], positions)
    return F.cross_entropy(logits, tgt[:, 1:].flatten()[positions]), len(positions)


@torch.no_grad()
def evaluate(model, pairs, size=128):
    model.eval()
    total, tokens = 0.0, 0
    for i in range(0, len(pairs), size):
        src, lengths = pad([p[0] for p in pairs[i : i + size]])
        tgt, tgt_lengths = pad([p[1] for p in pairs[i : i + size]])
        loss, n = loss_of(model, src, lengths, tgt, tgt_lengths)
        total, tokens = total + loss.item() * n, tokens + n
    return total / tokens


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("data")
    ap.add_argument("--model", choices=["gru-attn", "transformer"], default="transformer")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--lr", type=float)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--beam", type=int, default=5)
    ap.add_argument("--length-penalty", type=float, default=0.6)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--load", help="evaluate this kiln checkpoint instead of training")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    (tr_de, tr_en), (va_de, va_en), (te_de, te_en) = (read_split(args.data, n) for n in ("train", "val", "test_2016_flickr"))
    (src_stoi, _), (tgt_stoi, tgt_itos) = build_vocab(tr_de), build_vocab(tr_en)
    pairs = lambda de, en: [(encode(src_stoi, s), encode(tgt_stoi, t)) for s, t in zip(de, en)]
    train, val = pairs(tr_de, tr_en), pairs(va_de, va_en)
    model = (GruAttention if args.model == "gru-attn" else TransformerTranslator)(len(src_stoi), len(tgt_stoi))
    print(f"torch {torch.__version__}, {args.threads} threads: {args.model}, {sum(p.numel() for p in model.parameters())} parameters, "
          f"vocabularies de {len(src_stoi)} en {len(tgt_stoi)}", flush=True)
    if args.load:
        from safetensors.torch import load_file
        model.load_state_dict(load_file(args.load), strict=True)
        print(f"loaded {args.load} with strict=True")
    else:
        opt = torch.optim.Adam(model.parameters(), lr=args.lr or (1e-3 if args.model == "gru-attn" else 5e-4))
        for epoch in range(args.epochs):
            model.train()
            start, total, tokens = time.time(), 0.0, 0
            for ids in batches(train, args.batch_size, epoch):
                src, lengths = pad([train[i][0] for i in ids])
                tgt, tgt_lengths = pad([train[i][1] for i in ids])
                loss, n = loss_of(model, src, lengths, tgt, tgt_lengths)
                opt.zero_grad()
                loss.backward()
                nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                opt.step()
                total, tokens = total + loss.item() * n, tokens + n
            seconds = time.time() - start
            val_loss = evaluate(model, val)
            print(f"epoch {epoch + 1}: train loss {total / tokens:.4f}, val loss {val_loss:.4f}, {seconds:.1f} s", flush=True)
    val_loss = evaluate(model, val)
    print(f"validation: loss {val_loss:.4f}, perplexity {math.exp(val_loss):.2f}")
    sources = [encode(src_stoi, s) for s in te_de]
    for name, width in (("greedy", 1), (f"beam {args.beam}", args.beam)):
        start = time.time()
        hyps = [[tgt_itos[t] for t in h] for h in decode(model, sources, width, args.length_penalty)]
        print(f"test, {name}: BLEU {bleu(hyps, te_en):.2f} ({time.time() - start:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
