"""B3 peers: the PPO-ptx objective, forward + gradients, in PyTorch autograd.

Written in our own words with the loss expressions of
  - TRL 0.11 `PPOTrainer.loss` (ppo_trainer.py): ratio = exp(logp - old_logp), clipped
    surrogate max(-A r, -A clamp(r, 1 - eps, 1 + eps)) with masked_mean, clipped value loss
    0.5 * masked_mean(max((V - R)^2, (clip_by_value(V, V_old - c, V_old + c) - R)^2)),
    total = pg_loss + vf_coef * vf_loss;
  - OpenRLHF `compute_approx_kl` k3 (models/utils.py): l = (logp - ref_logp) * mask,
    kl = exp(-l) - 1 + l, masked mean, in the loss with kl_loss_coef (`use_kl_loss`);
  - the ptx term as OpenRLHF 0.5.9 GPTLMLoss / InstructGPT: mean of -logp over the pretraining
    mask, times ptx_coef, accumulated into the same backward (`openrlhf-torch`), or, as
    DeepSpeed-Chat `train_unsupervised` does it, a second backward of unsup_coef * loss after the
    PPO backward (`dschat-ptx-torch`; the optimizer steps are not part of either).
Inputs and options are those of benchmarks/ppo_ptx_bench.cpp (eps 0.2, value clip 0.2,
vf_coef 0.1, ptx_coef 27.8, kl_loss_coef 0.01, 10 % right padding, ptx batch 8 x 128).
TRL >= 0.12 and the installed trl have no PPO loss function to import, and OpenRLHF is not a
PyPI dependency here, so every expression is ours.
"""

import importlib
from dataclasses import dataclass, field
from typing import Callable

import torch

SHAPES = [(8, 128), (64, 1024)]
THREADS = [1, 2]
PTX_SHAPE = (8, 128)
CLIP, VALUE_CLIP, VF_COEF, PTX_COEF, KL_COEF = 0.2, 0.2, 0.1, 27.8, 0.01
PADDING = 0.10


@dataclass
class Case:
    variant: str
    shape: str
    threads: int
    peer: str
    fn: Callable[[], object] = field(repr=False)
    impl: str = ""


def masked_mean(values, mask):
    return (values * mask).sum() / mask.sum()


def clip_by_value(x, tensor_min, tensor_max):
    return torch.max(torch.min(x, tensor_max), tensor_min)


def ppo_terms(x):
    """Policy + value + k3 KL terms (TRL 0.11 / OpenRLHF expressions)."""
    mask = x["mask"]
    ratio = torch.exp(x["logp"] - x["old_logp"])
    pg_losses = -x["advantages"] * ratio
    pg_losses2 = -x["advantages"] * torch.clamp(ratio, 1.0 - CLIP, 1.0 + CLIP)
    pg_loss = masked_mean(torch.max(pg_losses, pg_losses2), mask)
    v_clipped = clip_by_value(x["values"], x["old_values"] - VALUE_CLIP, x["old_values"] + VALUE_CLIP)
    vf_losses1 = (x["values"] - x["returns"]) ** 2
    vf_losses2 = (v_clipped - x["returns"]) ** 2
    vf_loss = 0.5 * masked_mean(torch.max(vf_losses1, vf_losses2), mask)
    log_ratio = (x["logp"] - x["ref_logp"]) * mask
    log_ratio = -log_ratio
    kl = log_ratio.exp() - 1 - log_ratio
    kl_loss = masked_mean(kl, mask)
    return pg_loss + VF_COEF * vf_loss + KL_COEF * kl_loss


def ptx_loss(x):
    return -(x["ptx_logp"] * x["ptx_mask"]).sum() / x["ptx_mask"].sum()


def step_accumulate(x):
    for name in ("logp", "values", "ptx_logp"):
        x[name].grad = None
    total = ppo_terms(x) + PTX_COEF * ptx_loss(x)
    total.backward()
    return total


def step_dschat(x):
    for name in ("logp", "values", "ptx_logp"):
        x[name].grad = None
    loss = ppo_terms(x)
    loss.backward()
    unsup = ptx_loss(x)
    (PTX_COEF * unsup).backward()
    return loss, unsup


def _mask(b, t):
    m = torch.zeros(b, t)
    m[:, : t - round(PADDING * t)] = 1.0
    return m


def _inputs(b, t, seed):
    g = torch.Generator().manual_seed(seed)
    old = -torch.randn(b, t, generator=g).abs() - 0.1
    old_values = torch.randn(b, t, generator=g)
    x = {
        "old_logp": old,
        "logp": (old + 0.1 * torch.randn(b, t, generator=g)).requires_grad_(),
        "ref_logp": old + 0.05 * torch.randn(b, t, generator=g),
        "advantages": torch.randn(b, t, generator=g),
        "old_values": old_values,
        "values": (old_values + 0.2 * torch.randn(b, t, generator=g)).requires_grad_(),
        "returns": torch.randn(b, t, generator=g),
        "mask": _mask(b, t),
        "ptx_logp": (-2.0 * torch.randn(*PTX_SHAPE, generator=g).abs()).requires_grad_(),
        "ptx_mask": _mask(*PTX_SHAPE),
    }
    return x


def describe():
    try:
        trl_version = importlib.import_module("trl").__version__
    except Exception:  # noqa: BLE001
        trl_version = "not installed"
    return {"torch": torch.__version__, "trl": trl_version,
            "note": "loss expressions in our own words (no PPO loss function in the installed trl)"}


def cases():
    out = []
    for b, t in SHAPES:
        x = _inputs(b, t, seed=b * 7919 + t)
        shape = f"{b}x{t}"
        for threads in THREADS:
            out.append(Case("ppo_ptx", shape, threads, "openrlhf-torch", lambda x=x: step_accumulate(x),
                            "TRL 0.11 policy/value loss + OpenRLHF k3 KL loss + ptx NLL, one backward"))
            out.append(Case("ppo_ptx", shape, threads, "dschat-ptx-torch", lambda x=x: step_dschat(x),
                            "same PPO terms, then DeepSpeed-Chat train_unsupervised: a second backward"))
    return out
