#!/usr/bin/env python3
"""Write tests/data/golden/adamw.json: torch.optim.AdamW steps and torch.nn.utils.clip_grad_norm_
on fixed inputs, for tests/optim/adamw_test.cpp and tests/optim/clip_test.cpp.

Run with a Python that has PyTorch:  python3 tools/make_adamw_fixture.py > tests/data/golden/adamw.json
The inputs are drawn once from torch's own generator (seed 20240601) and written into the file,
so the C++ tests never need that generator.
"""
import json
import platform
import sys

import torch

SEED = 20240601


def flat(t):
    return [float(x) for x in t.detach().reshape(-1).tolist()]


def adamw_case(name, dtype, lr, betas, eps, weight_decay, steps, shapes, no_decay):
    gen = torch.Generator().manual_seed(SEED)
    params = [torch.randn(shape, generator=gen, dtype=torch.float64).to(dtype) for shape in shapes.values()]
    names = list(shapes)
    grads = [[(torch.randn(p.shape, generator=gen, dtype=torch.float64) * 0.5).to(dtype) for p in params]
             for _ in range(steps)]
    ps = [torch.nn.Parameter(p.clone()) for p in params]
    decay = [p for n, p in zip(names, ps) if n not in no_decay]
    keep = [p for n, p in zip(names, ps) if n in no_decay]
    groups = [{"params": decay, "weight_decay": weight_decay}]
    if keep:
        groups.append({"params": keep, "weight_decay": 0.0})
    opt = torch.optim.AdamW(groups, lr=lr, betas=betas, eps=eps, foreach=False, fused=False)
    out_steps = []
    for s in range(steps):
        for p, g in zip(ps, grads[s]):
            p.grad = g.clone()
        opt.step()
        out_steps.append({
            "params": {n: flat(p) for n, p in zip(names, ps)},
            "exp_avg": {n: flat(opt.state[p]["exp_avg"]) for n, p in zip(names, ps)},
            "exp_avg_sq": {n: flat(opt.state[p]["exp_avg_sq"]) for n, p in zip(names, ps)},
        })
    return {
        "name": name,
        "inputs": {
            "dtype": str(dtype).replace("torch.", ""),
            "names": names,
            "shapes": {n: list(s) for n, s in shapes.items()},
            "params": {n: flat(p) for n, p in zip(names, params)},
            "grads": [{n: flat(g) for n, g in zip(names, gs)} for gs in grads],
        },
        "params": {"lr": lr, "beta1": betas[0], "beta2": betas[1], "eps": eps,
                   "weight_decay": weight_decay, "no_decay": sorted(no_decay), "steps": steps},
        "outputs": {"steps": out_steps},
    }


def clip_case(name, dtype, max_norm, scale):
    gen = torch.Generator().manual_seed(SEED + 1)
    shapes = {"a": (3, 4), "b": (7,), "c": (2, 2, 3)}
    grads = {n: (torch.randn(s, generator=gen, dtype=torch.float64) * scale).to(dtype) for n, s in shapes.items()}
    ps = []
    for n, g in grads.items():
        p = torch.nn.Parameter(torch.zeros(g.shape, dtype=dtype))
        p.grad = g.clone()
        ps.append(p)
    norm = torch.nn.utils.clip_grad_norm_(ps, max_norm, foreach=False)
    return {
        "name": name,
        "inputs": {"dtype": str(dtype).replace("torch.", ""), "grads": {n: flat(g) for n, g in grads.items()}},
        "params": {"max_norm": max_norm},
        "outputs": {"norm": float(norm), "grads": {n: flat(p.grad) for n, p in zip(grads, ps)}},
    }


def main():
    shapes = {"h.0.mlp.c_fc.weight": (5, 9), "h.0.mlp.c_fc.bias": (9,), "ln_f.weight": (4,)}
    no_decay = {"h.0.mlp.c_fc.bias", "ln_f.weight"}
    cases = [
        adamw_case("adamw_f32_paper_betas_wd", torch.float32, 1e-2, (0.9, 0.95), 1e-8, 0.1, 6, shapes, no_decay),
        adamw_case("adamw_f64_paper_betas_wd", torch.float64, 1e-2, (0.9, 0.95), 1e-8, 0.1, 6, shapes, no_decay),
        adamw_case("adamw_f32_no_wd", torch.float32, 3e-4, (0.9, 0.95), 1e-8, 0.0, 4, shapes, set()),
        adamw_case("adamw_f32_large_lerp_weight", torch.float32, 5e-3, (0.3, 0.999), 1e-6, 0.01, 4, shapes, set()),
        clip_case("clip_f32_clipped", torch.float32, 1.0, 1.0),
        clip_case("clip_f64_clipped", torch.float64, 0.5, 1.0),
        clip_case("clip_f32_not_clipped", torch.float32, 100.0, 0.1),
    ]
    header = {
        "generator": "tools/make_adamw_fixture.py",
        "reference": "torch.optim.AdamW(foreach=False, fused=False) single-tensor path; "
                     "torch.nn.utils.clip_grad_norm_(foreach=False)",
        "torch": torch.__version__,
        "python": platform.python_version(),
        "seed": SEED,
        "encoding": "float32 values widened to float64 exactly; Python repr",
    }
    json.dump({"header": header, "cases": cases}, sys.stdout, separators=(",", ":"))
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
