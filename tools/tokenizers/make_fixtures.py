#!/usr/bin/env python3
"""Writes the expected-id fixtures of the BPE tokenizer tests (tests/data/tokenizer/*.json).

A development tool, not a build or test dependency. It needs PyPI's `tiktoken` (the Rust core
of OpenAI's tokenizer); run it with a virtual environment that has it, e.g.

    python3 -m venv .venv-tools && .venv-tools/bin/pip install tiktoken
    .venv-tools/bin/python tools/tokenizers/make_fixtures.py

Nothing is downloaded: each `tiktoken.Encoding` is built from the rank files in
tests/data/vocab/ with the pattern strings and special tokens of tiktoken 0.14.0
(`tiktoken_ext/openai_public.py`). Inputs are carried as base64 of their raw bytes. Invalid
UTF-8 inputs are encoded the way a Python user does it: `data.decode("utf-8",
errors="replace")` first. Real-text excerpts come from files of a Debian system
(/usr/share/common-licenses, the Python standard library).
"""

import base64
import json
import os
import sys

import tiktoken
from tiktoken.load import load_tiktoken_bpe

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
VOCAB = os.path.join(ROOT, "tests", "data", "vocab")
OUT = os.path.join(ROOT, "tests", "data", "tokenizer")

R50K = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s"""
CL100K = r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|\s*[\r\n]|\s+(?!\S)|\s"""
O200K = "|".join([
    r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
    r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
    r"""\p{N}{1,3}""",
    r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
    r"""\s*[\r\n]+""",
    r"""\s+(?!\S)""",
    r"""\s+""",
])

ENCODINGS = {
    "r50k_base": (R50K, {"<|endoftext|>": 50256}),
    "p50k_base": (R50K, {"<|endoftext|>": 50256}),
    "cl100k_base": (CL100K, {"<|endoftext|>": 100257, "<|fim_prefix|>": 100258, "<|fim_middle|>": 100259,
                             "<|fim_suffix|>": 100260, "<|endofprompt|>": 100276}),
    "o200k_base": (O200K, {"<|endoftext|>": 199999, "<|endofprompt|>": 200018}),
}


def encoding(name):
    pattern, specials = ENCODINGS[name]
    ranks = load_tiktoken_bpe(os.path.join(VOCAB, name + ".tiktoken"))
    return tiktoken.Encoding(name=name + "_local", pat_str=pattern, mergeable_ranks=ranks, special_tokens=specials)


def tricky_cases():
    """(category, name, bytes) of strings that stress the pattern and the merge."""
    s = lambda text: text.encode("utf-8")
    cases = [
        ("basic", "hello world", s("hello world")),
        ("basic", "sentence", s("The quick brown fox jumps over the lazy dog.")),
        ("basic", "empty", b""),
        ("basic", "one space", s(" ")),
        ("basic", "leading and trailing spaces", s("  hello  ")),
        ("whitespace", "space runs", s("a  b   c    d\t\te")),
        ("whitespace", "trailing spaces", s("end   ")),
        ("whitespace", "newline runs", s("line1\n\n\nline2\r\n\r\nline3")),
        ("whitespace", "spaces before newline", s("x   \n   y")),
        ("whitespace", "tabs and spaces mixed", s("\t \t  \tword")),
        ("whitespace", "only whitespace", s(" \n \t\r\n  ")),
        ("whitespace", "U+3000 ideographic space runs", s("\u3000\u3000a\u3000,\u3000")),
        ("whitespace", "U+0085 NEL after punctuation", s("!\u0085x.\u0085\u0085")),
        ("whitespace", "U+FEFF between spaces", s(" \ufeff \ufeff\ufeffa \ufeff")),
        ("whitespace", "U+00A0 and U+2000-200A", s("a\u00a0b\u2003c\u200a\u200a d")),
        ("whitespace", "U+2028 U+2029", s("a\u2028b\u2029 c")),
        ("whitespace", "U+200B zero width space", s("a\u200bb \u200b c")),
        ("contractions", "lower", s("I'm you're he's we've they'll she'd it't")),
        ("contractions", "upper", s("I'M YOU'RE HE'S WE'VE THEY'LL SHE'D IT'T")),
        ("contractions", "mixed case", s("You'Re He'S we'Ve They'lL")),
        ("contractions", "alone and doubled", s("'s 's's ''ll 'x 'S'")),
        ("contractions", "long s", s("it'\u017f fine")),
        ("contractions", "after numbers and symbols", s("1990's $'s :'re")),
        ("digits", "runs", s("1 12 123 1234 12345 123456 1234567")),
        ("digits", "with separators", s("3.14159 1,000,000 2024-01-01 0x1F")),
        ("digits", "unicode numbers", s("\u00bd \u00b2 \u2460\u2461 \u216b \u0663\u0664\u0665 \uff11\uff12")),
        ("digits", "letters and digits", s("abc123def 4u2 x86_64")),
        ("unicode", "accented latin", s("na\u00efve caf\u00e9 \u00c5ngstr\u00f6m stra\u00dfe")),
        ("unicode", "combining marks", s("e\u0301 a\u0308\u0304 \u0915\u094d\u0937")),
        ("unicode", "greek cyrillic", s("\u0391\u03b8\u03ae\u03bd\u03b1 \u041c\u043e\u0441\u043a\u0432\u0430")),
        ("unicode", "astral letters", s("\U00010400\U00010428 \U0001d400\U0001d41a \U00020000")),
        ("unicode", "camelCase and acronyms", s("HTMLParser getElementById XMLHttpRequest iOS")),
        ("unicode", "titlecase", s("\u01c5ungla \u01c8ubav")),
        ("emoji", "zwj family", s("\U0001f468\u200d\U0001f469\u200d\U0001f467\u200d\U0001f466")),
        ("emoji", "skin tones and flags", s("\U0001f44d\U0001f3fd \U0001f1fa\U0001f1f8 \u2764\ufe0f")),
        ("emoji", "emoji in text", s("I \u2764\ufe0f Paris\U0001f1eb\U0001f1f7!")),
        ("cjk", "chinese", s("\u4eca\u5929\u5929\u6c14\u5f88\u597d\uff0c\u6211\u4eec\u53bb\u516c\u56ed\u5427\u3002")),
        ("cjk", "japanese", s("\u3053\u3093\u306b\u3061\u306f\u4e16\u754c\u3001\u30ab\u30bf\u30ab\u30ca\u3002")),
        ("cjk", "korean", s("\ud55c\uad6d\uc5b4 \ud14d\uc2a4\ud2b8\uc785\ub2c8\ub2e4.")),
        ("rtl", "arabic", s("\u0645\u0631\u062d\u0628\u0627 \u0628\u0627\u0644\u0639\u0627\u0644\u0645\u061f")),
        ("rtl", "hebrew with marks", s("\u05e9\u05b8\u05c1\u05dc\u05d5\u05b9\u05dd \u200f(\u05e2\u05d1\u05e8\u05d9\u05ea)")),
        ("code", "c++", s("int main(int argc, char** argv) {\n    return argc > 1 ? 0 : -1;\n}\n")),
        ("code", "python", s("def f(x):\n\tif x:\n\t\treturn [i**2 for i in range(x)]  # squares\n")),
        ("code", "paths and urls", s("/usr/share/doc https://example.com/a/b?c=d&e=f#g C:\\dir\\file.txt")),
        ("code", "punctuation runs", s("!!!??? ... --- === <=> ::: ;;\n}}\n)]/\n")),
        ("special", "endoftext as text", s("<|endoftext|>")),
        ("special", "specials inside text", s("a<|endoftext|>b<|fim_prefix|>c<|endofprompt|>")),
        ("special", "broken specials", s("<|endoftext| <|endof <|endoftext|>|>")),
        ("long", "repeated a 300", s("a" * 300)),
        ("long", "repeated space 300", s(" " * 300)),
        ("long", "long word", s("pneumonoultramicroscopicsilicovolcanoconiosis" * 4)),
        ("long", "base64 1 KB", base64.b64encode(bytes(range(256)) * 3)),
        ("long", "no whitespace mixed 2 KB", (s("x=1;y=2;") + s("\u00e9\u4e2d") + s("ABCdef123")) * 90),
        ("long", "mojibake", s("\u00c3\u00c2" * 80)),
        ("long", "digits 500", s("9876543210" * 50)),
    ]
    return cases


def invalid_cases():
    return [
        ("invalid", "lone continuation", b"a\x80b"),
        ("invalid", "truncated 4-byte", b"x\xf0\x9f\x98y"),
        ("invalid", "truncated at end", b"hello \xe2\x82"),
        ("invalid", "overlong", b"\xc0\xaf slash"),
        ("invalid", "surrogate", b"\xed\xa0\x80 and \xed\xbf\xbf"),
        ("invalid", "ff fe", b"\xff\xfe text \xff"),
        ("invalid", "above U+10FFFF", b"\xf4\x90\x80\x80!"),
        ("invalid", "latin-1 text", "caf\u00e9 na\u00efve".encode("latin-1")),
        ("invalid", "mixed", b"\x80\x80 \xe2\x28\xa1 \xf0\x28\x8c\xbc ok"),
    ]


def corpus_cases():
    """A few KB of real text from files every Debian system has."""
    sources = [
        ("/usr/share/common-licenses/GPL-3", 0, 3000),
        ("/usr/share/common-licenses/Apache-2.0", 2000, 2000),
        ("/usr/share/common-licenses/Artistic", 0, 1500),
    ]
    stdlib = os.path.join(os.path.dirname(os.__file__), "textwrap.py")
    sources.append((stdlib, 0, 3000))
    out = []
    for path, start, length in sources:
        with open(path, "rb") as f:
            data = f.read()[start:start + length]
        # Cut at a line boundary so excerpts stay readable.
        cut = data.rfind(b"\n")
        data = data[:cut + 1] if cut > 0 else data
        out.append(("corpus", os.path.basename(path), data))
    return out


def main():
    os.makedirs(OUT, exist_ok=True)
    cases = tricky_cases() + invalid_cases() + corpus_cases()
    for name in ENCODINGS:
        enc = encoding(name)
        entries = []
        for category, label, data in cases:
            text = data.decode("utf-8", errors="replace")
            entry = {
                "category": category,
                "name": label,
                "input": base64.b64encode(data).decode("ascii"),
                "ordinary": enc.encode_ordinary(text),
            }
            if any(s in text for s in enc.special_tokens_set):
                entry["all_special"] = enc.encode(text, allowed_special="all")
            entries.append(entry)
        doc = {
            "encoding": name,
            "generator": "tools/tokenizers/make_fixtures.py with tiktoken " + tiktoken.__version__,
            "cases": entries,
        }
        path = os.path.join(OUT, name + ".json")
        with open(path, "w", encoding="utf-8") as f:
            json.dump(doc, f, indent=None, separators=(",", ":"))
            f.write("\n")
        print(f"{path}: {len(entries)} cases", file=sys.stderr)


if __name__ == "__main__":
    main()
