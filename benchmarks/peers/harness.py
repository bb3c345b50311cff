"""Side-by-side runner behind `benchmarks/run` (not a peer itself; it lives here because it runs
in the peers' virtual environment). See benchmarks/README.md.

For each registry entry NAME|binary|filter|peer-script it
  1. warms up (one short run of our Google Benchmark binary, two calls of every peer case;
     nothing of the warm-up is kept),
  2. runs ROUNDS interleaved rounds: ours (the binary, filtered, JSON output), the peer
     (every case of the peer script, in this process), the machine-limit probes
     (stream_bench at the working-set sizes of this entry's cases, 1 and 2 threads; and
     sgemm_bench's SGEMM / FMA-peak probes when a case is labelled limit=sgemm / limit=fma),
  3. takes medians over the rounds and writes bench-results/NAME.json (a list of records,
     one per (our case, peer) pair) and bench-results/NAME.raw.json (everything, git-ignored),
  4. prints a table.
A round's value is the mean time per call in that round (Google Benchmark's real_time; for the
peer, total time / calls over >= MIN_TIME seconds and >= 3 calls). Nothing is asserted on times.
"""

import argparse
import datetime
import importlib.util
import json
import math
import os
import platform
import re
import statistics
import subprocess
import sys
import time

UNIT = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0}
KIB, MIB = 1024, 1024 * 1024
PROBE_SIZES = [16 * KIB * 2**k for k in range(11)]  # 16 KiB … 16 MiB (stream_bench's cache sizes)
PROBE_DRAM = 768 * MIB
LIMIT_KIND = {"read_bw": "read", "copy_bw": "copy", "triad_bw": "triad"}
# Compute limits: label `limit=sgemm` / `limit=fma` compares the case's `flops` counter (FLOPs a
# call) per second with sgemm_bench's probes of the same thread count (the fastest probe shape).
FLOP_LIMIT = {"sgemm": "^BM_sgemm/", "fma": "^BM_fma_peak/"}


def run_gbench(binary, pattern, min_time):
    cmd = [binary, f"--benchmark_filter={pattern}", "--benchmark_format=json",
           f"--benchmark_min_time={min_time}"]
    proc = subprocess.run(cmd, check=True, capture_output=True, text=True)
    data = json.loads(proc.stdout)
    out = {}
    for b in data["benchmarks"]:
        if b.get("run_type") == "aggregate" or b.get("error_occurred"):
            continue
        label = dict(kv.split("=", 1) for kv in b.get("label", "").split() if "=" in kv)
        out[b["name"]] = {"s": b["real_time"] * UNIT[b["time_unit"]], "label": label,
                          "counters": {k: b[k] for k in ("tokens", "bytes", "ws_bytes", "flops") if k in b}}
    return out, data.get("context", {})


def time_peer(fn, min_time, min_calls=3):
    calls, start = 0, time.perf_counter()
    while True:
        fn()
        calls += 1
        elapsed = time.perf_counter() - start
        if calls >= min_calls and elapsed >= min_time:
            return elapsed / calls


def probe_size(ws_bytes):
    k = round(math.log2(max(ws_bytes, 1) / PROBE_SIZES[0]))
    return PROBE_SIZES[min(max(k, 0), len(PROBE_SIZES) - 1)]


def load_module(path):
    spec = importlib.util.spec_from_file_location(os.path.splitext(os.path.basename(path))[0], path)
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, os.path.dirname(path))
    spec.loader.exec_module(module)
    return module


def fmt_time(s):
    if s is None:
        return "-"
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if s >= scale:
            return f"{s / scale:.3g} {unit}"
    return f"{s / 1e-9:.3g} ns"


def median(xs):
    return statistics.median(xs) if xs else None


def machine_meta(root, context):
    def sh(*cmd):
        try:
            return subprocess.run(cmd, capture_output=True, text=True, cwd=root).stdout.strip()
        except OSError:
            return ""
    lscpu = dict(line.split(":", 1) for line in sh("lscpu").splitlines() if ":" in line)
    compiler = ""
    cache_file = os.path.join(root, "build", "bench", "CMakeCache.txt")
    if os.path.exists(cache_file):
        m = re.search(r"^CMAKE_CXX_COMPILER:\w+=(.*)$", open(cache_file).read(), re.M)
        if m:
            compiler = sh(m.group(1), "--version").splitlines()[0] if m.group(1) else ""
    return {
        "cpu_model": lscpu.get("Model name", "").strip(),
        "cpus": lscpu.get("CPU(s)", "").strip(),
        "threads_per_core": lscpu.get("Thread(s) per core", "").strip(),
        "l1d": lscpu.get("L1d cache", "").strip(), "l2": lscpu.get("L2 cache", "").strip(),
        "l3": lscpu.get("L3 cache", "").strip(),
        "hypervisor": lscpu.get("Hypervisor vendor", "").strip(),
        "gbench_mhz_per_cpu": context.get("mhz_per_cpu"),
        "compiler": compiler, "flags": "-O3 -march=native (preset bench, Release)",
        "python": platform.python_version(),
        "git": sh("git", "rev-parse", "--short", "HEAD") + ("+dirty" if sh("git", "status", "--porcelain", "--untracked-files=no") else ""),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def run_entry(name, binary, pattern, peer_path, args, root):
    print(f"\n=== {name}: {os.path.basename(binary)} [{pattern}] vs {os.path.basename(peer_path)} ===", flush=True)
    import torch  # the peers' framework; imported here so `--help` works without it

    peer = load_module(peer_path)
    peer_info = peer.describe() if hasattr(peer, "describe") else {}
    cases = peer.cases()
    probe_bin = os.path.join(os.path.dirname(binary), "stream_bench")
    flop_probe_bin = os.path.join(os.path.dirname(binary), "sgemm_bench")
    load_before = os.getloadavg()

    # Warm-up: excluded from every statistic.
    ours_warm, context = run_gbench(binary, pattern, 0.01)
    for c in cases:
        torch.set_num_threads(c.threads)
        c.fn()
        c.fn()
    keyed = {}
    for bench_name, r in ours_warm.items():
        lab = r["label"]
        keyed[(lab.get("variant"), lab.get("shape"), int(lab.get("threads", 1)))] = bench_name
    sizes = sorted({probe_size(r["counters"].get("ws_bytes", r["counters"].get("bytes", 0))) for r in ours_warm.values()})
    probe_pattern = "^BM_(read|copy|triad)/bytes:(" + "|".join(str(s) for s in sizes + [PROBE_DRAM]) + ")/"
    flop_kinds = sorted({r["label"].get("limit") for r in ours_warm.values()} & FLOP_LIMIT.keys())
    flop_pattern = "|".join(FLOP_LIMIT[k] for k in flop_kinds)

    ours_rounds = {n: [] for n in ours_warm}
    peer_rounds = [[] for _ in cases]
    probe_rounds = {}
    flop_rounds = {}
    for rnd in range(args.rounds):
        t0 = time.time()
        ours, _ = run_gbench(binary, pattern, args.min_time)
        for n, r in ours.items():
            ours_rounds.setdefault(n, []).append(r["s"])
        for i, c in enumerate(cases):
            torch.set_num_threads(c.threads)
            peer_rounds[i].append(time_peer(c.fn, args.min_time))
        if not args.no_probe:
            probes, _ = run_gbench(probe_bin, probe_pattern, args.probe_min_time)
            for n, r in probes.items():
                m = re.match(r"BM_(\w+)/bytes:(\d+)/real_time/threads:(\d+)", n)
                probe_rounds.setdefault((m.group(1), int(m.group(2)), int(m.group(3))), []).append(r["counters"]["bytes"] / r["s"])
            if flop_pattern:
                probes, _ = run_gbench(flop_probe_bin, flop_pattern, args.probe_min_time)
                for n, r in probes.items():
                    kind = "sgemm" if n.startswith("BM_sgemm/") else "fma"
                    threads = int(re.search(r"threads:(\d+)", n).group(1))
                    flop_rounds.setdefault((kind, n, threads), []).append(r["counters"]["flops"] / r["s"])
        print(f"  round {rnd + 1}/{args.rounds} done in {time.time() - t0:.1f} s", flush=True)

    load_after = os.getloadavg()
    meta = machine_meta(root, context)
    meta.update({"load_average_before": load_before, "load_average_after": load_after,
                 "rounds": args.rounds, "min_time_s": args.min_time, "peer_versions": peer_info})

    probe_median = {k: median(v) for k, v in probe_rounds.items()}
    flop_median = {k: median(v) for k, v in flop_rounds.items()}
    records = []
    for i, c in enumerate(cases):
        bench_name = keyed.get((c.variant, c.shape, c.threads))
        if bench_name is None:
            print(f"  warning: no benchmark of ours matches peer case {c.variant} {c.shape} threads={c.threads}")
            continue
        info = ours_warm[bench_name]
        ours_s, peer_s = median(ours_rounds[bench_name]), median(peer_rounds[i])
        tokens = info["counters"].get("tokens")
        bytes_moved = info["counters"].get("bytes")
        ws = info["counters"].get("ws_bytes", bytes_moved)
        limit = info["label"].get("limit", "triad_bw")
        rec = {
            "benchmark": f"{name}-{c.variant}", "shape": c.shape, "threads": c.threads,
            "ours": bench_name, "ours_s": ours_s, "peer": c.peer, "peer_impl": c.impl, "peer_s": peer_s,
            "ratio": peer_s / ours_s if ours_s and peer_s else None,
            "ratio_of_mins": min(peer_rounds[i]) / min(ours_rounds[bench_name]),
            "ours_min_s": min(ours_rounds[bench_name]), "peer_min_s": min(peer_rounds[i]),
            "tokens": tokens, "tokens_per_s": tokens / ours_s if tokens else None,
            "bytes": bytes_moved, "working_set_bytes": ws,
            "ours_GBps": bytes_moved / ours_s / 1e9 if bytes_moved else None,
            "limit": limit,
        }
        kind = LIMIT_KIND.get(limit)
        if kind and not args.no_probe and bytes_moved:
            size = probe_size(ws)
            lim = probe_median.get((kind, size, c.threads))
            dram = probe_median.get((kind, PROBE_DRAM, c.threads))
            rec.update({
                "limit_probe": f"BM_{kind} {size} B working set, {c.threads} thread(s)",
                "limit_GBps": lim / 1e9 if lim else None,
                "limit_fraction": bytes_moved / ours_s / lim if lim else None,
                "limit_dram_GBps": dram / 1e9 if dram else None,
                "limit_fraction_dram": bytes_moved / ours_s / dram if dram else None,
                "probes_GBps": {f"{k}_{'dram' if s == PROBE_DRAM else s}": probe_median[(k, s, c.threads)] / 1e9
                                for (k, s, t) in probe_median if t == c.threads and s in (size, PROBE_DRAM)},
            })
        elif limit in FLOP_LIMIT and not args.no_probe and info["counters"].get("flops"):
            flops = info["counters"]["flops"]
            probes = {n: v for (k, n, t), v in flop_median.items() if k == limit and t == c.threads}
            best = max(probes, key=probes.get) if probes else None
            rec.update({
                "flops": flops, "ours_GFLOPs": flops / ours_s / 1e9, "limit_GBps": None,
                "limit_probe": f"{best} (fastest {limit} probe, {c.threads} thread(s))" if best else None,
                "limit_GFLOPs": probes[best] / 1e9 if best else None,
                "limit_fraction": flops / ours_s / probes[best] if best else None,
                "probes_GFLOPs": {n: v / 1e9 for n, v in probes.items()},
            })
        else:
            rec.update({"limit_GBps": None, "limit_fraction": None,
                        "limit_note": "no probe for this limit yet" if kind is None and limit not in FLOP_LIMIT
                        else "probes skipped (or no flops counter)"})
        rec.update({"rounds": args.rounds, "ours_rounds_s": ours_rounds[bench_name],
                    "peer_rounds_s": peer_rounds[i], "meta": meta})
        records.append(rec)

    os.makedirs(os.path.join(root, "bench-results"), exist_ok=True)
    with open(os.path.join(root, "bench-results", f"{name}.json"), "w") as f:
        json.dump(records, f, indent=1)
    with open(os.path.join(root, "bench-results", f"{name}.raw.json"), "w") as f:
        json.dump({"ours_rounds_s": ours_rounds, "peer_rounds_s": {f"{c.variant}|{c.shape}|{c.threads}|{c.peer}": peer_rounds[i] for i, c in enumerate(cases)},
                   "probe_rounds_Bps": {f"{k}|{s}|{t}": v for (k, s, t), v in probe_rounds.items()},
                   "probe_rounds_FLOPs": {f"{k}|{n}|{t}": v for (k, n, t), v in flop_rounds.items()}, "meta": meta}, f, indent=1)
    print_table(name, records, meta)
    return records


def print_table(name, records, meta):
    print(f"\n{name}: medians of {meta['rounds']} interleaved rounds; {meta['cpu_model']}, {meta['cpus']} CPUs; "
          f"load average {meta['load_average_before'][0]:.2f} -> {meta['load_average_after'][0]:.2f}; "
          f"peers: {meta['peer_versions']}")
    head = f"{'benchmark':<16} {'shape':>8} {'thr':>3} {'ours':>9} {'peer':<15} {'peer time':>9} {'ratio':>8} {'Mtok/s':>8} {'GB/s':>6} {'limit GB/s':>10} {'frac':>5} {'DRAM frac':>9}"
    print(head)
    print("-" * len(head))
    for r in records:
        def f2(x, fmt):
            return fmt.format(x) if x is not None else "-"
        print(f"{r['benchmark']:<16} {r['shape']:>8} {r['threads']:>3} {fmt_time(r['ours_s']):>9} {r['peer']:<15} "
              f"{fmt_time(r['peer_s']):>9} {f2(r['ratio'], '{:.0f}x' if (r['ratio'] or 0) >= 10 else '{:.2f}x'):>8} {f2(r['tokens_per_s'] and r['tokens_per_s'] / 1e6, '{:.0f}'):>8} "
              f"{f2(r['ours_GBps'], '{:.1f}') if 'ours_GFLOPs' not in r else f2(r['ours_GFLOPs'], '{:.0f}GF'):>6} "
              f"{f2(r.get('limit_GBps'), '{:.1f}') if 'limit_GFLOPs' not in r else f2(r.get('limit_GFLOPs'), '{:.0f}GF'):>10} {f2(r.get('limit_fraction'), '{:.0%}'):>5} "
              f"{f2(r.get('limit_fraction_dram'), '{:.0%}'):>9}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", required=True)
    ap.add_argument("--entry", action="append", default=[], help="NAME|binary|gbench filter|peer script")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--min-time", type=float, default=0.2, help="seconds per case per round (ours and peer)")
    ap.add_argument("--probe-min-time", type=float, default=0.05)
    ap.add_argument("--no-probe", action="store_true")
    ap.add_argument("names", nargs="*")
    args = ap.parse_args()
    if args.rounds < 5:
        print(f"note: {args.rounds} rounds requested; the project's rule is >= 5 for recorded numbers")
    entries = [e.split("|") for e in args.entry]
    known = [e[0] for e in entries]
    selected = args.names or known
    for n in selected:
        if n not in known:
            sys.exit(f"benchmarks/run: unknown benchmark {n!r}; known: {' '.join(known)}")
    for name, binary, pattern, peer in entries:
        if name not in selected:
            continue
        binary_path = os.path.join(args.root, "build", "bench", "benchmarks", binary)
        if not os.path.exists(binary_path):
            sys.exit(f"benchmarks/run: {binary_path} was not built")
        run_entry(name, binary_path, pattern, os.path.join(args.root, "benchmarks", "peers", peer), args, args.root)


if __name__ == "__main__":
    main()
