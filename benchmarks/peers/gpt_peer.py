"""B5 peers: a nanoGPT-style GPT-2 in PyTorch with the shapes of benchmarks/gpt_bench.cpp.

Written in our own words: token + learned position embeddings, pre-LN blocks (causal
multi-head attention through torch.nn.functional.scaled_dot_product_attention, GELU tanh MLP),
final LN, tied unembedding; init N(0, 0.02). fp32, denormals flushed.

  train_<size>     forward to logits (B, T, V), F.cross_entropy of the next token, backward,
                   torch.optim.AdamW(lr 1e-4, betas (0.9, 0.95), eps 1e-8, weight decay 0.1)
                   step, zero_grad(set_to_none=False) — one training step, B = 4, T = 64.
  generate_<size>  B = 4 prompts of 64 tokens, 64 new tokens sampled at temperature 1 with the
                   model's own KV cache (prefill, then one token a step), under torch.no_grad().
Sizes: small (L4, C256, H4) and 124M (L12, C768, H12), V = 50257.

Interface used by benchmarks/peers/harness.py: `describe()` and `cases()`.
"""

import math
from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

torch.set_flush_denormal(True)

VOCAB = 50257
CONTEXT = 1024
BATCH = 4
TOKENS = 64
NEW_TOKENS = 64
SIZES = {"small": (4, 4, 256), "124M": (12, 12, 768)}
THREADS = [1, 2]


@dataclass
class Case:
    variant: str
    shape: str
    threads: int
    peer: str
    fn: Callable[[], object] = field(repr=False)
    impl: str = ""


class Block(nn.Module):
    def __init__(self, width, heads):
        super().__init__()
        self.heads = heads
        self.ln_1 = nn.LayerNorm(width)
        self.c_attn = nn.Linear(width, 3 * width)
        self.c_proj = nn.Linear(width, width)
        self.ln_2 = nn.LayerNorm(width)
        self.c_fc = nn.Linear(width, 4 * width)
        self.mlp_proj = nn.Linear(4 * width, width)

    def attention(self, x, cache=None):
        b, t, d = x.shape
        q, k, v = self.c_attn(x).split(d, dim=2)
        q, k, v = (z.view(b, t, self.heads, d // self.heads).transpose(1, 2) for z in (q, k, v))
        if cache is not None:
            if "k" in cache:
                k = torch.cat([cache["k"], k], dim=2)
                v = torch.cat([cache["v"], v], dim=2)
            cache["k"], cache["v"] = k, v
        causal = cache is None or t > 1
        y = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
        return self.c_proj(y.transpose(1, 2).contiguous().view(b, t, d))

    def forward(self, x, cache=None):
        x = x + self.attention(self.ln_1(x), cache)
        return x + self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x)), approximate="tanh"))


class GPT(nn.Module):
    def __init__(self, layers, heads, width):
        super().__init__()
        self.wte = nn.Embedding(VOCAB, width)
        self.wpe = nn.Embedding(CONTEXT, width)
        self.h = nn.ModuleList(Block(width, heads) for _ in range(layers))
        self.ln_f = nn.LayerNorm(width)
        for name, p in self.named_parameters():
            if p.dim() == 2:
                std = 0.02 / math.sqrt(2 * layers) if name.endswith("proj.weight") else 0.02
                nn.init.normal_(p, 0.0, std)
            elif name.endswith("bias"):
                nn.init.zeros_(p)

    def forward(self, idx, start=0, caches=None):
        t = idx.shape[1]
        pos = torch.arange(start, start + t)
        x = self.wte(idx) + self.wpe(pos)
        for i, block in enumerate(self.h):
            x = block(x, None if caches is None else caches[i])
        return F.linear(self.ln_f(x), self.wte.weight)


def _train_case(size):
    torch.manual_seed(1)
    model = GPT(*SIZES[size])
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)
    idx = torch.randint(0, VOCAB, (BATCH, TOKENS))

    def step():
        logits = model(idx)
        loss = F.cross_entropy(logits[:, :-1].reshape(-1, VOCAB), idx[:, 1:].reshape(-1))
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=False)
        return loss

    return step


def _generate_case(size):
    torch.manual_seed(2)
    model = GPT(*SIZES[size])
    model.eval()
    idx = torch.randint(0, VOCAB, (BATCH, TOKENS))
    gen = torch.Generator().manual_seed(3)

    @torch.no_grad()
    def run():
        caches = [dict() for _ in model.h]
        logits = model(idx, 0, caches)[:, -1]
        out = []
        for s in range(NEW_TOKENS):
            probs = torch.softmax(logits, dim=-1)
            tok = torch.multinomial(probs, 1, generator=gen)
            out.append(tok)
            if s + 1 < NEW_TOKENS:
                logits = model(tok, TOKENS + s, caches)[:, -1]
        return torch.cat(out, dim=1)

    return run


def describe():
    return {"torch": torch.__version__,
            "note": "nanoGPT-style model in our own words; SDPA attention; torch.optim.AdamW (default "
                    "foreach implementation); generation with its own KV cache (torch.cat per step)"}


def cases():
    out = []
    shape = f"{BATCH}x{TOKENS}"
    for size in SIZES:
        train = _train_case(size)
        generate = _generate_case(size)
        for threads in THREADS:
            out.append(Case(f"train_{size}", shape, threads, "nanogpt-torch", train,
                            "forward + F.cross_entropy + backward + torch.optim.AdamW step"))
            out.append(Case(f"generate_{size}", shape, threads, "nanogpt-torch", generate,
                            "prefill 64 + 64 single-token steps, KV cache, multinomial sampling"))
    return out
