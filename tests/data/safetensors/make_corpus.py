#!/usr/bin/env python3
"""Write the safetensors test corpus: good/*.safetensors (valid) and bad/<Rule>.<case>.safetensors
(one file per validation rule and case; <Rule> is the reference's error name). With
--check, also run every file through the reference implementation (the `safetensors` Python
package, whose parser is the Rust crate) and print what it says; the result is recorded in
README.md next to this script.

    python3 tests/data/safetensors/make_corpus.py            # (re)write the files
    python3 tests/data/safetensors/make_corpus.py --check    # compare with the reference
    python3 tests/data/safetensors/make_corpus.py --reference-writer   # good/reference_writer
"""
import json
import os
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def raw(header: bytes, data: bytes = b"", n=None) -> bytes:
    return struct.pack("<Q", len(header) if n is None else n) + header + data


def st(header: dict, data: bytes = b"", lead: bytes = b"", pad: bytes = b"") -> bytes:
    h = lead + json.dumps(header, separators=(",", ":")).encode() + pad
    return raw(h, data)


def t(dtype, shape, begin, end):
    return {"dtype": dtype, "shape": shape, "data_offsets": [begin, end]}


F32_2 = struct.pack("<2f", 1.5, -2.0)

GOOD = {
    # GPT-2 names as Hugging Face writes them, F32, sorted as the reference writer sorts them.
    "gpt2_names": st({"__metadata__": {"format": "pt"},
                      "h.0.attn.c_attn.bias": t("F32", [3], 0, 12),
                      "h.0.attn.c_attn.weight": t("F32", [2, 3], 12, 36),
                      "wte.weight": t("F32", [2, 2], 36, 52)},
                     struct.pack("<3f", 0.1, 0.2, 0.3) + struct.pack("<6f", *range(6)) + struct.pack("<4f", 9, 8, 7, 6),
                     pad=b"   "),
    "scalar_and_empty": st({"s": t("F64", [], 0, 8), "e": t("F32", [0, 4], 8, 8)}, struct.pack("<d", 3.25)),
    "leading_whitespace": st({"a": t("F32", [2], 0, 8)}, F32_2, lead=b" \n\t", pad=b"  \r\n "),
    "unknown_field_ignored": st({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8], "x": {"y": [1, None]}}}, F32_2),
    "half_types": st({"h": t("F16", [2], 0, 4), "b": t("BF16", [2], 4, 8)},
                     struct.pack("<2H", 0x3C00, 0x0001) + struct.pack("<2H", 0x3FC0, 0xC000)),
    "every_dtype": st({
        "bool": t("BOOL", [2], 0, 2), "u8": t("U8", [1], 2, 3), "i8": t("I8", [1], 3, 4),
        "f8": t("F8_E4M3", [1], 4, 5), "f4": t("F4", [2], 5, 6), "i16": t("I16", [1], 6, 8),
        "i32": t("I32", [1], 8, 12), "i64": t("I64", [1], 12, 20), "c64": t("C64", [1], 20, 28),
        "f6": t("F6_E2M3", [4], 28, 31)}, bytes(range(31))),
    "empty_file_no_tensors": raw(b"{}      "),
    "metadata_null": st({"__metadata__": None, "a": t("F32", [2], 0, 8)}, F32_2),
}

BAD = {
    "HeaderTooSmall.five_bytes": b"\x08\x00\x00\x00\x00",
    "HeaderTooLarge.over_100MB": raw(b"{}", n=100_000_001),
    "InvalidHeaderLength.past_end": raw(b'{"a":1}', n=64),
    "InvalidHeaderLength.just_under_the_cap": raw(b"{}", n=99_999_999),
    "InvalidHeader.not_utf8": raw(b'{"\xff\xfe":{"dtype":"F32","shape":[0],"data_offsets":[0,0]}}'),
    "InvalidHeader.surrogate": raw(b'{"\xed\xa0\x80":{"dtype":"F32","shape":[0],"data_offsets":[0,0]}}'),
    "InvalidHeaderDeserialization.empty_header": raw(b""),
    "InvalidHeaderDeserialization.not_json": raw(b"{not json}"),
    "InvalidHeaderDeserialization.top_level_array": raw(b"[]"),
    "InvalidHeaderDeserialization.trailing_garbage": raw(b"{}x"),
    "InvalidHeaderDeserialization.byte_order_mark": raw(b"\xef\xbb\xbf{}"),
    "InvalidHeaderDeserialization.duplicate_tensor": raw(
        b'{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}',
        b"\0" * 4),
    "InvalidHeaderDeserialization.duplicate_metadata": raw(b'{"__metadata__":{},"__metadata__":{}}'),
    "InvalidHeaderDeserialization.duplicate_metadata_key": raw(b'{"__metadata__":{"k":"1","k":"2"}}'),
    "InvalidHeaderDeserialization.duplicate_field": raw(
        b'{"a":{"dtype":"F32","dtype":"F32","shape":[1],"data_offsets":[0,4]}}', b"\0" * 4),
    "InvalidHeaderDeserialization.unknown_dtype": st({"a": t("F128", [1], 0, 16)}, b"\0" * 16),
    "InvalidHeaderDeserialization.lowercase_dtype": st({"a": t("f32", [1], 0, 4)}, b"\0" * 4),
    "InvalidHeaderDeserialization.negative_dim": st({"a": t("F32", [-1], 0, 4)}, b"\0" * 4),
    "InvalidHeaderDeserialization.fractional_offset": raw(b'{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4.0]}}', b"\0" * 4),
    "InvalidHeaderDeserialization.integer_above_u64": raw(
        b'{"a":{"dtype":"F32","shape":[18446744073709551616],"data_offsets":[0,4]}}', b"\0" * 4),
    "InvalidHeaderDeserialization.metadata_not_string": st({"__metadata__": {"step": 3}}),
    "InvalidHeaderDeserialization.metadata_not_object": st({"__metadata__": "x"}),
    "InvalidHeaderDeserialization.tensor_not_object": st({"a": [1, 2]}),
    "InvalidHeaderDeserialization.missing_dtype": st({"a": {"shape": [1], "data_offsets": [0, 4]}}, b"\0" * 4),
    "InvalidHeaderDeserialization.missing_offsets": st({"a": {"dtype": "F32", "shape": [1]}}, b"\0" * 4),
    "InvalidHeaderDeserialization.three_offsets": st({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4, 4]}}, b"\0" * 4),
    "InvalidHeaderDeserialization.shape_not_array": st({"a": {"dtype": "F32", "shape": 1, "data_offsets": [0, 4]}}, b"\0" * 4),
    "InvalidHeaderDeserialization.too_deep": raw(b'{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4],"x":' +
                                                  b"[" * 200 + b"]" * 200 + b"}}", b"\0" * 4),
    "InvalidHeaderDeserialization.comment": raw(b'{/* c */}'),
    "InvalidOffset.not_from_zero": st({"a": t("F32", [1], 4, 8)}, b"\0" * 8),
    "InvalidOffset.gap": st({"a": t("F32", [1], 0, 4), "b": t("F32", [1], 8, 12)}, b"\0" * 12),
    "InvalidOffset.overlap": st({"a": t("F32", [2], 0, 8), "b": t("F32", [1], 4, 8)}, b"\0" * 8),
    "InvalidOffset.end_before_begin": st({"a": t("F32", [1], 0, 4), "b": t("F32", [0], 4, 0)}, b"\0" * 4),
    "ValidationOverflow.element_count": st({"a": t("F32", [2**32, 2**32], 0, 4)}, b"\0" * 4),
    "ValidationOverflow.bit_count": st({"a": t("F64", [2**60], 0, 8)}, b"\0" * 8),
    "MisalignedSlice.odd_f4": st({"a": t("F4", [3], 0, 1)}, b"\0"),
    "TensorInvalidInfo.size_mismatch": st({"a": t("F32", [3], 0, 8)}, b"\0" * 8),
    "MetadataIncompleteBuffer.trailing_bytes": st({"a": t("F32", [2], 0, 8)}, F32_2 + b"\0"),
    "MetadataIncompleteBuffer.truncated": st({"a": t("F32", [4], 0, 16)}, F32_2),
}


def write():
    for folder, files in (("good", GOOD), ("bad", BAD)):
        os.makedirs(os.path.join(HERE, folder), exist_ok=True)
        for name, data in files.items():
            with open(os.path.join(HERE, folder, name + ".safetensors"), "wb") as f:
                f.write(data)


def reference_writer():
    """good/reference_writer.safetensors: written by the reference's own serializer, so that the
    C++ writer can be compared byte for byte (mixed dtypes exercise its sort order)."""
    import ctypes
    from safetensors import TensorSpec, serialize
    raw_tensors = {
        "wte.weight": ("float32", [2, 3], struct.pack("<6f", 1, 2, 3, 4, 5, 6)),
        "h.0.attn.c_attn.bias": ("float32", [3], struct.pack("<3f", -1, 0.5, 7)),
        "step": ("int64", [], struct.pack("<q", 42)),
        "mask": ("uint8", [3], bytes([1, 0, 1])),
        "half": ("bfloat16", [2], struct.pack("<2H", 0x3F80, 0xC000)),
        "d": ("float64", [1], struct.pack("<d", 0.1)),
    }
    buffers = {k: ctypes.create_string_buffer(v[2], len(v[2])) for k, v in raw_tensors.items()}
    tensors = {k: TensorSpec(dtype=v[0], shape=v[1], data_ptr=ctypes.addressof(buffers[k]), data_len=len(v[2])) for k, v in raw_tensors.items()}
    data = serialize(tensors, {"format": "pt", "note": "quote \" and \\ and \u00e9"})
    with open(os.path.join(HERE, "good", "reference_writer.safetensors"), "wb") as f:
        f.write(bytes(data))


def check():
    from safetensors import deserialize  # the reference parser (Rust), Python binding
    for folder, files in (("good", GOOD), ("bad", BAD)):
        for name, data in files.items():
            try:
                deserialize(data)
                verdict = "accepted"
            except Exception as e:  # noqa: BLE001 - we print whatever the reference says
                verdict = "rejected: " + str(e).replace("\n", " ")[:120]
            print(f"{folder}/{name}: {verdict}")


if __name__ == "__main__":
    if "--check" in sys.argv:
        check()
    elif "--reference-writer" in sys.argv:
        reference_writer()
    else:
        write()
