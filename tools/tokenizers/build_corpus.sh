#!/usr/bin/env bash
# tools/tokenizers/build_corpus.sh OUT — builds the tokenizer benchmark corpora from Debian 12
# (bookworm) packages into OUT: en.txt (English prose), multi.txt (multilingual), code.txt
# (C++ and Python source) and MANIFEST (package versions, sha256 and sizes).
#
# Packages are fetched with `apt-get download` (not installed; needs a prior `apt-get update`) and
# unpacked with dpkg-deb; the extraction uses python3's standard library and zcat only. The
# corpora are never committed: benchmarks/run builds them into a git-ignored folder. Does nothing
# when OUT already holds all three files and a MANIFEST. Sources and licences:
# docs/components/tokenizer.md ("Benchmark corpora").
set -euo pipefail
OUT=$(realpath -m "${1:?usage: tools/tokenizers/build_corpus.sh OUT}")
if [[ -s "$OUT/en.txt" && -s "$OUT/multi.txt" && -s "$OUT/code.txt" && -s "$OUT/MANIFEST" ]]; then
  echo "build_corpus.sh: $OUT is already built" >&2
  exit 0
fi
WORK="$OUT/.debs"
rm -rf "$WORK"
mkdir -p "$WORK" && cd "$WORK"
PKGS="r-cran-janeaustenr sword-text-web dict-devil debian-reference-ja debian-reference-zh-cn
      debian-reference-zh-tw debian-reference-de debian-reference-fr debian-reference-es fortunes-zh
      unicode-cldr-core libstdc++-12-dev libpython3.11-stdlib"
apt-get download $PKGS
for f in *.deb; do d="x/${f%%_*}"; mkdir -p "$d"; dpkg-deb -x "$f" "$d"; done

# (a) English prose: Jane Austen's 6 novels + World English Bible + The Devil's Dictionary (all public domain)
python3 - x/r-cran-janeaustenr/usr/lib/R/site-library/janeaustenr/data/Rdata.rdb "$OUT/austen.part" <<'PY'
# R lazy-load DB: each object = 4-byte BE length + zlib stream of R XDR serialization; objects are STRSXP vectors.
import sys, zlib, struct
rdb = open(sys.argv[1], 'rb').read(); out = open(sys.argv[2], 'wb'); pos = 0
while pos < len(rdb):
    d = zlib.decompressobj(); p = d.decompress(rdb[pos + 4:])
    pos = len(rdb) - len(d.unused_data)
    assert p[:2] == b'X\n'; i = 14
    if struct.unpack('>i', p[2:6])[0] == 3: i += 4 + struct.unpack('>i', p[i:i + 4])[0]
    flags, n = struct.unpack('>ii', p[i:i + 8]); i += 8
    if flags & 0xFF != 16: continue
    lines = []
    for _ in range(n):
        _, ln = struct.unpack('>ii', p[i:i + 8]); i += 8
        if ln >= 0: lines.append(p[i:i + ln]); i += ln
    out.write(b'\n'.join(lines) + b'\n\n')
PY
python3 - x/sword-text-web/usr/share/sword/modules/texts/ztext/engWEB2015eb "$OUT/web.part" <<'PY'
# SWORD zText: {ot,nt}.bzz = zlib blocks indexed by {ot,nt}.bzs (LE u32 offset,size,usize); OSIS markup stripped.
import sys, zlib, re, struct
out = open(sys.argv[2], 'wb')
for part in ('ot', 'nt'):
    data = open(f"{sys.argv[1]}/{part}.bzz", 'rb').read(); idx = open(f"{sys.argv[1]}/{part}.bzs", 'rb').read()
    for k in range(0, len(idx), 12):
        off, size, _ = struct.unpack('<III', idx[k:k + 12])
        if not size: continue
        t = zlib.decompress(data[off:off + size]).replace(b'\x00', b'')
        t = re.sub(rb'<note\b.*?</note>', b'', t, flags=re.S)
        t = re.sub(rb'<(?:/p|lb|/l|/title|div[^>]*eID[^>]*|chapter[^>]*eID[^>]*)[^>]*>', b'\n', t)
        t = re.sub(rb'<[^>]+>', b'', t); t = re.sub(rb'[ \t]+', b' ', t); t = re.sub(rb'\n\s*\n+', b'\n\n', t)
        out.write(t)
PY
zcat x/dict-devil/usr/share/dictd/devil.dict.dz > "$OUT/devil.part"
cat "$OUT/austen.part" "$OUT/web.part" "$OUT/devil.part" > "$OUT/en.txt"

# (b) multilingual: Debian Reference (ja, zh-cn, zh-tw, de, fr, es; GPL-2+), Tang/Song poems (fortunes-zh, GPL-3+),
#     CLDR emoji annotations incl. ZWJ/skin-tone sequences in RTL/Indic/CJK/other scripts (Unicode licence)
: > "$OUT/multi.txt"
for l in ja zh-cn zh-tw de fr es; do zcat x/debian-reference-$l/usr/share/debian-reference/debian-reference.$l.txt.gz >> "$OUT/multi.txt"; done
cat x/fortunes-zh/usr/share/games/fortunes/tang300 x/fortunes-zh/usr/share/games/fortunes/song100 >> "$OUT/multi.txt"
python3 - x/unicode-cldr-core/usr/share/unicode/cldr/common >> "$OUT/multi.txt" <<'PY'
import sys, re, html
for lang in "ar he fa ur hi bn ta th ru uk el ka hy am ko ja zh zh_Hant vi tr".split():
    for sub in ("annotations", "annotationsDerived") if lang in ("ar", "hi", "ja", "zh") else ("annotations",):
        try: x = open(f"{sys.argv[1]}/{sub}/{lang}.xml", encoding="utf-8").read()
        except FileNotFoundError: continue
        for cp, typ, txt in re.findall(r'<annotation cp="([^"]*)"( type="tts")?>([^<]*)</annotation>', x):
            sys.stdout.write(f"{html.unescape(cp)} {html.unescape(txt)}{'.' if typ else ''}\n")
PY

# (c) source code: libstdc++ headers (C++, GPL-3 + runtime exception) + CPython stdlib (Python, PSF licence)
( cd x/libstdc++-12-dev/usr/include/c++/12 && find . -type f | LC_ALL=C sort | xargs cat ) > "$OUT/code.txt"
( cd x/libpython3.11-stdlib/usr/lib/python3.11 && find . -maxdepth 1 -type f -name '*.py' | LC_ALL=C sort | xargs cat ) >> "$OUT/code.txt"

rm -f "$OUT"/*.part
cd "$OUT"; { for p in $PKGS; do dpkg-deb -f .debs/${p}_*.deb Package Version | paste -sd' '; done; sha256sum en.txt multi.txt code.txt; wc -c en.txt multi.txt code.txt; } > MANIFEST
rm -rf "$WORK"
cat MANIFEST
