#!/usr/bin/env bash
# Rebuilds examples/instructgpt/data/austen.txt, the demo's pretraining corpus, from Debian's
# r-cran-janeaustenr package (the six novels of Jane Austen; the text is in the public domain,
# the package is MIT). Not part of the build: the output is committed. Needs apt-get, dpkg-deb,
# python3. Usage: tools/build_demo_corpus.sh [OUT_FILE]
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
out="${1:-$root/examples/instructgpt/data/austen.txt}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
(cd "$work" && apt-get download r-cran-janeaustenr >/dev/null && dpkg-deb -x r-cran-janeaustenr_*.deb x)
python3 - "$work/x/usr/lib/R/site-library/janeaustenr/data/Rdata.rdb" "$out" <<'PY'
# An R lazy-load database is a sequence of records: a 4-byte big-endian length, then a zlib
# stream holding one R object in XDR serialisation. Each novel is a character vector (STRSXP,
# type 16) of lines. Two novels (about 1.1 MB) are enough for the demo's 2-core time budget.
import struct, sys, zlib

data = open(sys.argv[1], "rb").read()
books, pos = [], 0
while pos < len(data):
    z = zlib.decompressobj()
    obj = z.decompress(data[pos + 4:])
    pos = len(data) - len(z.unused_data)
    if obj[:2] != b"X\n":
        continue
    i = 14  # "X\n", format version, R version, minimal R version
    if struct.unpack(">i", obj[2:6])[0] == 3:  # version 3 adds the native encoding name
        i += 4 + struct.unpack(">i", obj[i:i + 4])[0]
    flags, n = struct.unpack(">ii", obj[i:i + 8])
    i += 8
    if flags & 0xFF != 16 or n < 1000:
        continue
    lines = []
    for _ in range(n):
        _, length = struct.unpack(">ii", obj[i:i + 8])
        i += 8
        if length >= 0:
            lines.append(obj[i:i + length].decode("utf-8", "replace"))
            i += length
    book = "\n".join(lines).strip() + "\n"
    if book.split("\n", 1)[0] in ("PRIDE AND PREJUDICE", "NORTHANGER ABBEY"):
        books.append(book)
text = "\n\n".join(books)
# Plain ASCII keeps the demo's vocabulary small: typographic quotes and dashes are folded.
for a, b in {"\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"', "\u2014": "--", "\u2013": "-",
             "\u00e9": "e", "\u00e8": "e", "\u00ea": "e", "\u00e0": "a", "\u00ef": "i", "\u00e7": "c"}.items():
    text = text.replace(a, b)
text = text.encode("ascii", "ignore").decode("ascii")
open(sys.argv[2], "w", encoding="ascii", newline="\n").write(text)
print(f"{sys.argv[2]}: {len(books)} books, {len(text)} bytes", file=sys.stderr)
PY
