"""B1 peers: GAE (+ returns, masked) in PyTorch, as OpenRLHF and TRL 0.11 compute it.

Written in our own words with the same tensor operations in the same order as
  - OpenRLHF `get_advantages_and_returns` (experience_maker.py): mask rewards and values,
    reversed Python loop over t, `torch.stack(reversed list, dim=1)`, returns = A + V;
  - TRL 0.11 `PPOTrainer.compute_advantages` (ppo_trainer.py): `values * mask`,
    `rewards * mask`, the same reversed loop, `torch.stack(...).transpose(0, 1)`,
    returns = A + V, then `masked_whiten(advantages, mask)` (trl/core.py: masked mean,
    unbiased masked variance, (x - mean) * rsqrt(var + 1e-8)).
When the installed trl still ships its own `masked_whiten` (trl <= 0.11 `trl.core`, or an
experimental PPO module), that function is used instead of ours and the record says so.

Interface used by benchmarks/peers/harness.py: `describe()` -> dict of versions / notes and
`cases()` -> list of Case; each Case.fn() performs one timed call on preallocated inputs.
"""

import importlib
import os
from dataclasses import dataclass, field
from typing import Callable

import torch

GAMMA = 1.0
LAMBDA = 0.95
SHAPES = [(8, 128), (64, 128), (8, 1024), (64, 1024)]
THREADS = [1, 2]
PADDING = 0.10  # every row right-padded by round(0.1 * T) tokens, as benchmarks/gae_bench.cpp


@dataclass
class Case:
    variant: str  # matches the `variant=` of our benchmark's label
    shape: str  # "BxT"
    threads: int
    peer: str  # short peer name for the table
    fn: Callable[[], object] = field(repr=False)
    impl: str = ""  # what exactly runs


# --- OpenRLHF get_advantages_and_returns -----------------------------------------------------
def openrlhf_advantages_and_returns(values, rewards, action_mask, gamma, lambd):
    last_gae_lam = 0
    reversed_advantages = []
    length = rewards.size(1)
    if action_mask is not None:
        values = action_mask * values
        rewards = action_mask * rewards
    for t in reversed(range(length)):
        next_values = values[:, t + 1] if t < length - 1 else 0.0
        delta = rewards[:, t] + gamma * next_values - values[:, t]
        last_gae_lam = delta + gamma * lambd * last_gae_lam
        reversed_advantages.append(last_gae_lam)
    advantages = torch.stack(reversed_advantages[::-1], dim=1)
    returns = advantages + values
    return advantages.detach(), returns


# --- TRL 0.11 compute_advantages and masked_whiten -------------------------------------------
def _masked_mean(values, mask):
    return (values * mask).sum() / mask.sum()


def _masked_var(values, mask, unbiased=True):
    mean = _masked_mean(values, mask)
    centred = values - mean
    variance = _masked_mean(centred**2, mask)
    if unbiased:
        mask_sum = mask.sum()
        if mask_sum == 0:
            raise ValueError("mask sum is zero")
        variance = variance * (mask_sum / (mask_sum - 1))
    return variance


def own_masked_whiten(values, mask, shift_mean=True):
    mean, var = _masked_mean(values, mask), _masked_var(values, mask)
    whitened = (values - mean) * torch.rsqrt(var + 1e-8)
    if not shift_mean:
        whitened += mean
    return whitened


def find_trl_masked_whiten():
    """trl's own masked_whiten if this trl has one: (function, 'module.name') or (None, reason)."""
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    for module in ("trl.core", "trl.trainer.utils", "trl.trainer.ppo_trainer",
                   "trl.experimental.ppo.ppo_trainer", "trl.experimental.ppo"):
        try:
            fn = getattr(importlib.import_module(module), "masked_whiten", None)
        except Exception:  # noqa: BLE001 - any import failure means "not available"
            continue
        if fn is not None:
            return fn, f"{module}.masked_whiten"
    return None, "not in the installed trl (removed with the old PPOTrainer after 0.11)"


def trl_compute_advantages(values, rewards, mask, gamma, lam, whiten):
    last_gae_lam = 0
    reversed_advantages = []
    gen_len = rewards.shape[-1]
    values = values * mask
    rewards = rewards * mask
    for t in reversed(range(gen_len)):
        next_values = values[:, t + 1] if t < gen_len - 1 else 0.0
        delta = rewards[:, t] + gamma * next_values - values[:, t]
        last_gae_lam = delta + gamma * lam * last_gae_lam
        reversed_advantages.append(last_gae_lam)
    advantages = torch.stack(reversed_advantages[::-1]).transpose(0, 1)
    returns = advantages + values
    if whiten is not None:
        advantages = whiten(advantages, mask)
    return values, advantages.detach(), returns


# --- cases ------------------------------------------------------------------------------------
def _inputs(b, t, seed):
    gen = torch.Generator().manual_seed(seed)
    rewards = torch.randn(b, t, generator=gen)
    values = torch.randn(b, t, generator=gen)
    valid = t - round(PADDING * t)
    action_mask = torch.zeros(b, t, dtype=torch.bool)  # OpenRLHF: bool action mask
    action_mask[:, :valid] = True
    int_mask = action_mask.to(torch.int32)  # TRL 0.11: int mask from batched_forward_pass
    return rewards, values, action_mask, int_mask


_WHITEN = None


def describe():
    global _WHITEN
    fn, where = find_trl_masked_whiten()
    _WHITEN = (fn, where)
    try:
        trl_version = importlib.import_module("trl").__version__
    except Exception:  # noqa: BLE001
        trl_version = "not installed"
    return {"torch": torch.__version__, "trl": trl_version, "trl_masked_whiten": where}


def cases():
    if _WHITEN is None:
        describe()
    trl_whiten, where = _WHITEN
    whiten = trl_whiten or own_masked_whiten
    whiten_impl = f"TRL 0.11 compute_advantages (own words) + {where}" if trl_whiten else \
        "TRL 0.11 compute_advantages + masked_whiten (own words; trl has no masked_whiten)"
    out = []
    for b, t in SHAPES:
        rewards, values, action_mask, int_mask = _inputs(b, t, seed=b * 100003 + t)
        shape = f"{b}x{t}"
        for threads in THREADS:
            out.append(Case("gae", shape, threads, "openrlhf-torch",
                            lambda v=values, r=rewards, m=action_mask:
                            openrlhf_advantages_and_returns(v, r, m, GAMMA, LAMBDA),
                            "OpenRLHF get_advantages_and_returns (own words)"))
            out.append(Case("gae", shape, threads, "trl-0.11-torch",
                            lambda v=values, r=rewards, m=int_mask:
                            trl_compute_advantages(v, r, m, GAMMA, LAMBDA, None),
                            "TRL 0.11 compute_advantages without the whitening (own words)"))
            out.append(Case("gae+whiten", shape, threads, "trl-0.11-torch",
                            lambda v=values, r=rewards, m=int_mask:
                            trl_compute_advantages(v, r, m, GAMMA, LAMBDA, whiten),
                            whiten_impl))
    return out
