"""B6 peers: encode throughput of PyPI's `tiktoken` and Hugging Face `tokenizers`.

Same corpus slices and chunks as benchmarks/tokenizer_bench.cpp: en.txt, multi.txt, code.txt in
$RLHF_CORPUS_DIR (tools/tokenizers/build_corpus.sh), the first $RLHF_CORPUS_BYTES bytes (default
4 MiB, whole chunks), cut into ~64 KiB chunks after a line end; chunks are decoded to Python str
before timing. A call encodes every chunk and returns the ids:
  - tiktoken: `Encoding.encode_ordinary(chunk)` per chunk (threads=1), or
    `encode_ordinary_batch(chunks, num_threads=2)` (threads=2); the Encoding is built from the
    repository's .tiktoken files with tiktoken's own patterns (nothing is downloaded);
  - tokenizers: `Tokenizer.encode(chunk, add_special_tokens=False)` per chunk (threads=1), or
    `encode_batch(chunks)` with RAYON_NUM_THREADS=2 (threads=2), on tokenizer.json files:
    tests/data/vocab/hf/{gpt2,cl100k_base}.tokenizer.json, and for o200k one converted here from
    o200k_base.tiktoken with the TikTokenConverter recipe (cached in $RLHF_CORPUS_DIR/.b6/).

Before anything is timed, tiktoken's ids of every chunk are hashed and written to
$RLHF_CORPUS_DIR/.b6/tiktoken_<corpus>_<encoding>.hashes; our binary compares its ids with them
and fails loudly on a mismatch (see tokenizer_bench.cpp for the hash). `tokenizers`' ids are
compared with tiktoken's here; a difference is reported in describe() (the Hugging Face cl100k
file carries an older form of the pattern), it does not fail the run.
"""

import base64
import json
import os
from dataclasses import dataclass, field
from typing import Callable

os.environ.setdefault("RAYON_NUM_THREADS", "2")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")

import numpy as np  # noqa: E402
import tiktoken  # noqa: E402
import tokenizers  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
VOCAB = os.environ.get("RLHF_VOCAB_DIR", os.path.join(ROOT, "tests", "data", "vocab"))
CORPORA = ["en", "multi", "code"]
ENCODINGS = ["r50k", "cl100k", "o200k"]
THREADS = [1, 2]

PATTERNS = {
    "r50k": r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s""",
    "cl100k": r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|\s*[\r\n]|\s+(?!\S)|\s""",
    "o200k": "|".join([
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""\p{N}{1,3}""",
        r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
        r"""\s*[\r\n]+""",
        r"""\s+(?!\S)""",
        r"""\s+""",
    ]),
}
O200K_HF_SPLIT = PATTERNS["o200k"]

_notes = {}


@dataclass
class Case:
    variant: str
    shape: str
    threads: int
    peer: str
    fn: Callable[[], object] = field(repr=False)
    impl: str = ""


def chunks_of(data, limit):
    """~64 KiB chunks ending after a newline (else at a UTF-8 boundary), as the C++ side cuts."""
    target = 65536
    out, start, total = [], 0, 0
    while start < len(data) and total < limit:
        end = min(start + target, len(data))
        if end < len(data):
            nl = data.rfind(b"\n", start, end)
            if nl >= start and nl != -1:
                end = nl + 1
            else:
                while end > start + 1 and (data[end] & 0xC0) == 0x80:
                    end -= 1
        out.append(data[start:end])
        total += end - start
        start = end
    return out


def ids_hash(ids):
    a = np.asarray(ids, dtype=np.uint64)
    with np.errstate(over="ignore"):
        w = (np.arange(1, len(a) + 1, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15))
        h = np.sum((a + np.uint64(1)) * w, dtype=np.uint64)
    return f"{int(h)} {len(a)}"


def load_ranks(name):
    ranks = {}
    with open(os.path.join(VOCAB, f"{name}_base.tiktoken"), "rb") as f:
        for line in f:
            if line.strip():
                tok, rank = line.split()
                ranks[base64.b64decode(tok)] = int(rank)
    return ranks


def tiktoken_encoding(name):
    return tiktoken.Encoding(f"{name}_base", pat_str=PATTERNS[name], mergeable_ranks=load_ranks(name), special_tokens={})


def bytes_to_unicode():
    bs = list(range(0x21, 0x7F)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


def o200k_tokenizer_json(cache_dir):
    """tokenizer.json for o200k_base: vocab = ranks in the byte-level alphabet, merges = every
    split of every token ordered by (rank, rank left, rank right), ignore_merges."""
    path = os.path.join(cache_dir, "o200k_base.tokenizer.json")
    if os.path.exists(path):
        return path
    ranks = load_ranks("o200k")
    m = bytes_to_unicode()
    enc = lambda b: "".join(m[x] for x in b)  # noqa: E731
    vocab = {enc(t): r for t, r in ranks.items()}
    merges = []
    for t, r in sorted(ranks.items(), key=lambda kv: kv[1]):
        splits = [(ranks[t[:k]], ranks[t[k:]], k) for k in range(1, len(t)) if t[:k] in ranks and t[k:] in ranks]
        for rl, rr, k in sorted(splits):
            merges.append([enc(t[:k]), enc(t[k:])])
    doc = {"version": "1.0", "truncation": None, "padding": None, "added_tokens": [], "normalizer": None,
           "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
               {"type": "Split", "pattern": {"Regex": O200K_HF_SPLIT}, "behavior": "Isolated", "invert": False},
               {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}]},
           "post_processor": None,
           "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
           "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                     "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False, "ignore_merges": True,
                     "vocab": vocab, "merges": merges}}
    with open(path + ".tmp", "w", encoding="utf-8") as f:
        json.dump(doc, f, ensure_ascii=False)
    os.replace(path + ".tmp", path)
    return path


def hf_tokenizer(name, cache_dir):
    if name == "r50k":
        path = os.path.join(VOCAB, "hf", "gpt2.tokenizer.json")
    elif name == "cl100k":
        path = os.path.join(VOCAB, "hf", "cl100k_base.tokenizer.json")
    else:
        path = o200k_tokenizer_json(cache_dir)
    return tokenizers.Tokenizer.from_file(path)


def describe():
    return {"tiktoken": tiktoken.__version__, "tokenizers": tokenizers.__version__,
            "corpus_dir": os.environ.get("RLHF_CORPUS_DIR", "(unset)"), **_notes}


def cases():
    corpus_dir = os.environ.get("RLHF_CORPUS_DIR")
    if not corpus_dir:
        raise RuntimeError("B6 needs RLHF_CORPUS_DIR (benchmarks/run builds the corpora with tools/tokenizers/build_corpus.sh)")
    limit = int(os.environ.get("RLHF_CORPUS_BYTES", str(4 << 20)))
    cache = os.path.join(corpus_dir, ".b6")
    os.makedirs(cache, exist_ok=True)
    out = []
    for enc_name in ENCODINGS:
        tik = tiktoken_encoding(enc_name)
        hf = hf_tokenizer(enc_name, cache)
        for corpus in CORPORA:
            with open(os.path.join(corpus_dir, f"{corpus}.txt"), "rb") as f:
                chunks = [c.decode("utf-8") for c in chunks_of(f.read(), limit)]
            expected = [tik.encode_ordinary(c) for c in chunks]
            with open(os.path.join(cache, f"tiktoken_{corpus}_{enc_name}.hashes"), "w") as f:
                f.write("".join(ids_hash(ids) + "\n" for ids in expected))
            hf_ids = [e.ids for e in hf.encode_batch(chunks, add_special_tokens=False)]
            bad = [i for i, (a, b) in enumerate(zip(hf_ids, expected)) if a != b]
            if bad:
                _notes[f"tokenizers_differs_{corpus}_{enc_name}"] = f"{len(bad)} of {len(chunks)} chunks differ from tiktoken"
            shape = f"{corpus}/{enc_name}"

            def tik1(t=tik, cs=chunks):
                return [t.encode_ordinary(c) for c in cs]

            def tik2(t=tik, cs=chunks):
                return t.encode_ordinary_batch(cs, num_threads=2)

            def hf1(t=hf, cs=chunks):
                return [t.encode(c, add_special_tokens=False).ids for c in cs]

            def hf2(t=hf, cs=chunks):
                return [e.ids for e in t.encode_batch(cs, add_special_tokens=False)]

            out += [
                Case("encode", shape, 1, "tiktoken", tik1, f"tiktoken {tiktoken.__version__} encode_ordinary per chunk"),
                Case("encode", shape, 2, "tiktoken", tik2, f"tiktoken {tiktoken.__version__} encode_ordinary_batch(num_threads=2)"),
                Case("encode", shape, 1, "tokenizers", hf1, f"tokenizers {tokenizers.__version__} Tokenizer.encode per chunk"),
                Case("encode", shape, 2, "tokenizers", hf2, f"tokenizers {tokenizers.__version__} encode_batch (RAYON_NUM_THREADS=2)"),
            ]
    return out
