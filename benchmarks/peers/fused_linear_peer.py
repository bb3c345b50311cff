"""B2b peer: per-token log-probs through the LM head, forward + backward, in PyTorch.

The peer materialises the logits: logits = hidden @ W.T (float32, (B, T, V)), then TRL's
`selective_log_softmax(logits, labels)` (trl.trainer.utils; gather of the label's logit minus a
per-sequence loop of torch.logsumexp), then autograd of sum(grad_logp * logp) w.r.t. hidden and
W. Shapes and inputs are those of benchmarks/fused_linear_bench.cpp: N = B*T in {1024, 4096}
(B x 512), D in {256, 768}, V = 50,257, grad_logp = -1/N (the NLL's gradient). When the
installed trl has no selective_log_softmax, the same operations written in our own words run
instead and `impl` says so.

Interface used by benchmarks/peers/harness.py: `describe()` and `cases()`.
"""

import importlib
from dataclasses import dataclass, field
from typing import Callable

import torch

VOCAB = 50257
ROWS = [1024, 4096]
WIDTHS = [256, 768]
THREADS = [1, 2]
T = 512


@dataclass
class Case:
    variant: str
    shape: str
    threads: int
    peer: str
    fn: Callable[[], object] = field(repr=False)
    impl: str = ""


def own_selective_log_softmax(logits, index):
    selected = torch.gather(logits, dim=-1, index=index.unsqueeze(-1)).squeeze(-1)
    lse = torch.stack([torch.logsumexp(lg, dim=-1) for lg in logits])
    return selected - lse


def _selective_log_softmax():
    try:
        fn = importlib.import_module("trl.trainer.utils").selective_log_softmax
        return fn, "trl.trainer.utils.selective_log_softmax"
    except (ImportError, AttributeError):
        return own_selective_log_softmax, "selective_log_softmax in our own words (not in the installed trl)"


def _inputs(n, d, seed):
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(n // T, T, d, generator=g).requires_grad_(True)
    w = (0.05 * torch.randn(VOCAB, d, generator=g)).requires_grad_(True)
    labels = torch.randint(0, VOCAB, (n // T, T), generator=g)
    grad = torch.full((n // T, T), -1.0 / n)
    return hidden, w, labels, grad


def step(hidden, w, labels, grad, selective):
    hidden.grad = None
    w.grad = None
    logits = hidden @ w.T
    logp = selective(logits, labels)
    (logp * grad).sum().backward()
    return hidden.grad, w.grad


def describe():
    try:
        trl_version = importlib.import_module("trl").__version__
    except Exception:  # noqa: BLE001
        trl_version = "not installed"
    _, impl = _selective_log_softmax()
    return {"torch": torch.__version__, "trl": trl_version, "logprob": impl}


def cases():
    selective, impl = _selective_log_softmax()
    out = []
    for n in ROWS:
        for d in WIDTHS:
            x = _inputs(n, d, seed=n + d)
            for threads in THREADS:
                out.append(Case("fwd_bwd", f"{n}x{d}", threads, "torch-autograd",
                                lambda x=x: step(*x, selective),
                                f"hidden @ W.T, {impl}, autograd of sum(grad * logp) w.r.t. hidden and W (float32)"))
    return out
