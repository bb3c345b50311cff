"""B2 peers: per-token log-probs (+ entropy, + full KL) from logits [B, T, V] in PyTorch.

  - TRL current: `selective_log_softmax` + `entropy_from_logits`, imported from the installed
    trl (trl.trainer.utils); on CPU they take their PyTorch path (gather minus a per-row loop of
    logsumexp; entropy in chunks of 128 rows).
  - TRL 0.11 `logprobs_from_logits` (log_softmax + gather) and `entropy_from_logits`
    (softmax, then logsumexp − Σ p·z), written in our own words.
  - DeepSpeed-Chat `gather_log_probs`: log_softmax + gather (own words).
  - OpenRLHF `log_probs_from_logits`, fp32 path without flash-attn: logit[label] − logsumexp
    computed over chunks of rows (own words), and `compute_entropy` (softmax-based, own words).
  - Full KL (TRL 0.11 kl_penalty="full"): log_softmax of both, F.kl_div(ref, logp,
    log_target=True).sum(-1), plus the TRL 0.11 log-prob and entropy.

Interface used by benchmarks/peers/harness.py: `describe()` and `cases()` (see gae_peer.py).
Inputs are generated once per shape and shared by that shape's cases.
"""

import importlib
from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F

SHAPES = [(8, 128, 32000), (8, 512, 50257), (16, 1024, 32000)]
THREADS = [1, 2]


@dataclass
class Case:
    variant: str
    shape: str
    threads: int
    peer: str
    fn: Callable[[], object] = field(repr=False)
    impl: str = ""


# --- TRL 0.11 (trl/core.py), own words ----------------------------------------------------------
def trl_old_logprobs(logits, labels):
    logp = F.log_softmax(logits, dim=2)
    return torch.gather(logp, 2, labels.unsqueeze(2)).squeeze(-1)


def trl_old_entropy(logits):
    pd = torch.nn.functional.softmax(logits, dim=-1)
    return torch.logsumexp(logits, axis=-1) - torch.sum(pd * logits, axis=-1)


def trl_old_full_kl(logits, ref_logits):
    logp = F.log_softmax(logits, dim=-1)
    ref = F.log_softmax(ref_logits, dim=-1)
    return F.kl_div(ref, logp, log_target=True, reduction="none").sum(-1)


# --- DeepSpeed-Chat (dschat/rlhf/ppo_trainer.py), own words --------------------------------------
def dschat_gather_log_probs(logits, labels):
    log_probs = F.log_softmax(logits, dim=-1)
    return log_probs.gather(dim=-1, index=labels.unsqueeze(-1)).squeeze(-1)


# --- OpenRLHF (openrlhf/models/utils.py) fp32 path, own words -----------------------------------
def openrlhf_logsumexp_by_chunk(logits, chunk_size=1024):
    flat = logits.reshape(-1, logits.shape[-1])
    out = torch.empty(flat.shape[0], dtype=logits.dtype)
    for i in range(0, flat.shape[0], chunk_size):
        out[i:i + chunk_size] = torch.logsumexp(flat[i:i + chunk_size], dim=-1)
    return out.view(*logits.shape[:-1])


def openrlhf_log_probs(logits, labels):
    picked = torch.gather(logits, dim=-1, index=labels.unsqueeze(-1)).squeeze(-1)
    return picked - openrlhf_logsumexp_by_chunk(logits)


def openrlhf_entropy(logits):
    pd = torch.nn.functional.softmax(logits, dim=-1)
    return torch.logsumexp(logits, dim=-1) - torch.sum(pd * logits, dim=-1)


_TRL = None


def _trl_current():
    global _TRL
    if _TRL is None:
        try:
            utils = importlib.import_module("trl.trainer.utils")
            _TRL = (utils.selective_log_softmax, utils.entropy_from_logits, "trl.trainer.utils")
        except Exception as e:  # noqa: BLE001
            _TRL = (None, None, f"not importable: {e}")
    return _TRL


def describe():
    try:
        trl_version = importlib.import_module("trl").__version__
    except Exception:  # noqa: BLE001
        trl_version = "not installed"
    return {"torch": torch.__version__, "trl": trl_version, "trl_current_from": _trl_current()[2],
            "note": "CPU: trl takes its PyTorch path (the Triton kernel needs a GPU)"}


def cases():
    sel, ent, where = _trl_current()
    out = []
    for b, t, v in SHAPES:
        gen = torch.Generator().manual_seed(b * 1000003 + t * 101 + v)
        logits = torch.randn(b, t, v, generator=gen) * 2.0
        labels = torch.randint(0, v, (b, t), generator=gen)
        shape = f"{b}x{t}x{v}"
        ref = None
        if b * t * v <= 8 * 512 * 50257:  # the 2.1 GB shape's reference would double the peak memory
            ref = torch.randn(b, t, v, generator=gen) * 2.0
        for threads in THREADS:
            if sel is not None:
                out.append(Case("logprob", shape, threads, "trl-current",
                                lambda x=logits, l=labels: sel(x, l), f"{where}.selective_log_softmax"))
                out.append(Case("logprob+entropy", shape, threads, "trl-current",
                                lambda x=logits, l=labels: (sel(x, l), ent(x)),
                                f"{where}.selective_log_softmax + entropy_from_logits"))
            out.append(Case("logprob", shape, threads, "dschat",
                            lambda x=logits, l=labels: dschat_gather_log_probs(x, l),
                            "DeepSpeed-Chat gather_log_probs (own words)"))
            out.append(Case("logprob", shape, threads, "openrlhf",
                            lambda x=logits, l=labels: openrlhf_log_probs(x, l),
                            "OpenRLHF log_probs_from_logits fp32 path, logsumexp by chunk (own words)"))
            out.append(Case("logprob+entropy", shape, threads, "openrlhf",
                            lambda x=logits, l=labels: (openrlhf_log_probs(x, l), openrlhf_entropy(x)),
                            "OpenRLHF log_probs_from_logits + compute_entropy (own words)"))
            out.append(Case("logprob+entropy", shape, threads, "trl-0.11",
                            lambda x=logits, l=labels: (trl_old_logprobs(x, l), trl_old_entropy(x)),
                            "TRL 0.11 logprobs_from_logits + entropy_from_logits (own words)"))
            if ref is not None:
                out.append(Case("logprob+entropy+kl", shape, threads, "trl-0.11",
                                lambda x=logits, r=ref, l=labels:
                                (trl_old_logprobs(x, l), trl_old_entropy(x), trl_old_full_kl(x, r)),
                                "TRL 0.11 logprobs + entropy + kl_penalty='full' (own words)"))
    return out
