"""B7 peer: one PPO-ptx iteration of the tiny pipeline in PyTorch, with the structure of TRL's
PPOTrainer training loop, written in our own words, on the nanoGPT-style model of gpt_peer.py.

Shapes as benchmarks/ppo_iteration_bench.cpp: policy, reference, reward model and value model
are the small GPT (L4, C256, H4, V50257; reward and value = trunk + Linear(D, 1)); 16 prompts of
64 tokens; 64 new tokens sampled at temperature 1 with a KV cache (prefill, then one token a
step; no stop token); then, as TRL's PPOTrainer.train() does per batch:
  rollout    under no_grad: policy forward over query ‖ response → old log-probs of the
             response tokens (logits / temperature, selective log-softmax), reference forward →
             ref log-probs, value forward → values, reward model at the last token → score
  rewards    kl = logp − ref_logp, non-score reward −β·kl, score added at the last token
  GAE        the backwards lastgaelam loop (γ 1, λ 0.95), returns = A + V, whitened advantages
  train      1 epoch, 4 shuffled minibatches of 4: policy forward → new log-probs and entropy,
             value forward; clipped value loss ½·max(...)·mean, clipped policy loss; plus
             γ_ptx (27.8) · cross-entropy of a 4 × 64 pretraining batch through the policy;
             one backward, one AdamW step per model (lr 1e-5, betas (0.9, 0.95)).
Every mask is all ones (full prompts, no stop token), so masked means are plain means.

`python ppo_iteration_peer.py [threads]` runs a few iterations and prints the per-phase times.
Interface used by benchmarks/peers/harness.py: `describe()` and `cases()`.
"""

import sys
import time
from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from gpt_peer import GPT, SIZES, VOCAB

try:  # TRL's own selective log-softmax when the installed TRL has it
    from trl.trainer.utils import selective_log_softmax
    LOGPROB_IMPL = "trl.trainer.utils.selective_log_softmax"
except ImportError:  # pragma: no cover
    def selective_log_softmax(logits, index):
        return torch.gather(logits.log_softmax(-1), -1, index.unsqueeze(-1)).squeeze(-1)
    LOGPROB_IMPL = "log_softmax + gather (TRL's selective_log_softmax not installed)"

torch.set_flush_denormal(True)

PROMPTS, PROMPT_TOKENS, NEW_TOKENS = 16, 64, 64
MINIBATCHES, PTX_ROWS, PTX_TOKENS = 4, 4, 64
TEMPERATURE, KL_COEF, GAMMA, LAM, CLIP, VF_CLIP, VF_COEF, PTX_COEF = 1.0, 0.02, 1.0, 0.95, 0.2, 0.2, 0.1, 27.8
THREADS = [1, 2]


@dataclass
class Case:
    variant: str
    shape: str
    threads: int
    peer: str
    fn: Callable[[], object] = field(repr=False)
    impl: str = ""


def hidden(model, idx, start=0, caches=None):
    """The final hidden states (after ln_f) of gpt_peer.GPT."""
    pos = torch.arange(start, start + idx.shape[1])
    x = model.wte(idx) + model.wpe(pos)
    for i, block in enumerate(model.h):
        x = block(x, None if caches is None else caches[i])
    return model.ln_f(x)


class Scalar(nn.Module):
    """A GPT trunk with a scalar head: values at every position, or a score at the last token."""

    def __init__(self, trunk):
        super().__init__()
        self.trunk = trunk
        self.score = nn.Linear(trunk.wte.weight.shape[1], 1)

    def forward(self, idx):
        return self.score(hidden(self.trunk, idx)).squeeze(-1)


class Iteration:
    def __init__(self):
        torch.manual_seed(1)
        layers, heads, width = SIZES["small"]
        self.policy = GPT(layers, heads, width)
        self.ref = GPT(layers, heads, width)
        self.ref.load_state_dict(self.policy.state_dict())
        self.ref.requires_grad_(False)
        self.reward = Scalar(GPT(layers, heads, width))
        self.reward.requires_grad_(False)
        self.value = Scalar(GPT(layers, heads, width))
        self.value.load_state_dict(self.reward.state_dict())
        self.value.requires_grad_(True)
        self.policy_opt = torch.optim.AdamW(self.policy.parameters(), lr=1e-5, betas=(0.9, 0.95), eps=1e-8)
        self.value_opt = torch.optim.AdamW(self.value.parameters(), lr=1e-5, betas=(0.9, 0.95), eps=1e-8)
        self.prompts = torch.randint(0, VOCAB, (PROMPTS, PROMPT_TOKENS))
        self.ptx = torch.randint(0, VOCAB, (MINIBATCHES, PTX_ROWS, PTX_TOKENS))
        self.gen = torch.Generator().manual_seed(3)
        self.times = {}

    def _tick(self, name, start):
        now = time.perf_counter()
        self.times[name] = self.times.get(name, 0.0) + now - start
        return now

    @torch.no_grad()
    def generate(self):
        caches = [dict() for _ in self.policy.h]
        logits = self.policy(self.prompts, 0, caches)[:, -1]
        out = []
        for s in range(NEW_TOKENS):
            probs = torch.softmax(logits / TEMPERATURE, dim=-1)
            tok = torch.multinomial(probs, 1, generator=self.gen)
            out.append(tok)
            if s + 1 < NEW_TOKENS:
                logits = self.policy(tok, PROMPT_TOKENS + s, caches)[:, -1]
        return torch.cat(out, dim=1)

    def __call__(self):
        p = PROMPT_TOKENS
        t = time.perf_counter()
        response = self.generate()
        t = self._tick("generate", t)
        qr = torch.cat([self.prompts, response], dim=1)
        with torch.no_grad():
            logits = self.policy(qr)[:, p - 1:-1] / TEMPERATURE
            logprobs = selective_log_softmax(logits, response)
            del logits
            ref_logits = self.ref(qr)[:, p - 1:-1] / TEMPERATURE
            ref_logprobs = selective_log_softmax(ref_logits, response)
            del ref_logits
            t = self._tick("logprobs", t)
            values = self.value(qr)[:, p - 1:-1]
            scores = self.reward(qr)[:, -1]
            t = self._tick("score", t)
            kl = logprobs - ref_logprobs
            rewards = -KL_COEF * kl
            rewards[:, -1] += scores
            lastgaelam = 0
            advantages_reversed = []
            length = rewards.shape[1]
            for i in reversed(range(length)):
                nextvalues = values[:, i + 1] if i < length - 1 else 0.0
                delta = rewards[:, i] + GAMMA * nextvalues - values[:, i]
                lastgaelam = delta + GAMMA * LAM * lastgaelam
                advantages_reversed.append(lastgaelam)
            advantages = torch.stack(advantages_reversed[::-1], dim=1)
            returns = advantages + values
            advantages = (advantages - advantages.mean()) * torch.rsqrt(advantages.var(unbiased=False) + 1e-8)
            t = self._tick("gae", t)
        order = torch.randperm(PROMPTS, generator=self.gen)
        size = PROMPTS // MINIBATCHES
        for m in range(MINIBATCHES):
            idx = order[m * size:(m + 1) * size]
            mb_qr, mb_resp = qr[idx], response[idx]
            logits = self.policy(mb_qr)[:, p - 1:-1] / TEMPERATURE
            new_logprobs = selective_log_softmax(logits, mb_resp)
            with torch.no_grad():  # TRL logs the entropy; it is not in the loss
                prob = F.softmax(logits, dim=-1)
                entropy = torch.logsumexp(logits, dim=-1) - torch.sum(prob * logits, dim=-1)
                del prob
            vpred = self.value(mb_qr)[:, p - 1:-1]
            vpredclipped = values[idx] + (vpred - values[idx]).clamp(-VF_CLIP, VF_CLIP)
            vf_loss = 0.5 * torch.max((vpred - returns[idx]) ** 2, (vpredclipped - returns[idx]) ** 2).mean()
            ratio = torch.exp(new_logprobs - logprobs[idx])
            pg_losses = -advantages[idx] * ratio
            pg_losses2 = -advantages[idx] * ratio.clamp(1.0 - CLIP, 1.0 + CLIP)
            pg_loss = torch.max(pg_losses, pg_losses2).mean()
            ptx_batch = self.ptx[m]
            ptx_logits = self.policy(ptx_batch)
            ptx_loss = F.cross_entropy(ptx_logits[:, :-1].reshape(-1, VOCAB), ptx_batch[:, 1:].reshape(-1))
            loss = pg_loss + VF_COEF * vf_loss + PTX_COEF * ptx_loss
            loss.backward()
            self.policy_opt.step()
            self.value_opt.step()
            self.policy_opt.zero_grad(set_to_none=False)
            self.value_opt.zero_grad(set_to_none=False)
            del logits, ptx_logits, entropy
        self._tick("train", t)
        return loss


def describe():
    return {"torch": torch.__version__,
            "note": "TRL PPOTrainer loop structure in our own words on gpt_peer's nanoGPT model; KV-cache "
                    "generation; " + LOGPROB_IMPL + "; separate value model; ptx cross-entropy in the same "
                    "backward; torch.optim.AdamW"}


def cases():
    run = Iteration()
    return [Case("ppo_iteration_small", f"{PROMPTS}x{PROMPT_TOKENS}", threads, "trl-loop-torch", run,
                 "generate (KV cache) + old/ref logprobs + value/RM + GAE loop + 1 epoch x 4 minibatches "
                 "with ptx, AdamW") for threads in THREADS]


if __name__ == "__main__":
    threads = int(sys.argv[1]) if len(sys.argv) > 1 else 1
    iterations = int(sys.argv[2]) if len(sys.argv) > 2 else 2
    torch.set_num_threads(threads)
    run = Iteration()
    run()  # warm-up
    run.times.clear()
    start = time.perf_counter()
    for _ in range(iterations):
        run()
    total = (time.perf_counter() - start) / iterations
    print(f"threads {threads}: {total:.3f} s per iteration; " +
          ", ".join(f"{k} {v / iterations:.3f} s" for k, v in run.times.items()))
