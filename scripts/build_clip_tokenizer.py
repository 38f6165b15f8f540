"""Build OpenAI CLIP's tokenizer offline and save it into the package.

OpenAI CLIP's vocabulary is fully determined by its BPE merge list, which `open_clip_torch` ships as
`open_clip/bpe_simple_vocab_16e6.txt.gz`. The vocabulary is: the 256 byte-to-unicode symbols, the same
256 with `</w>` appended, one token per merge (the first 48,894 merges, each pair joined), then
`<|startoftext|>` and `<|endoftext|>`: 49,408 ids. With it, prompts tokenize offline exactly as they
do with a hub checkpoint's tokenizer.

Usage:
    python scripts/build_clip_tokenizer.py [--bpe PATH] [--out dfer_pd/assets/clip_tokenizer]
"""

from __future__ import annotations

import argparse
import gzip
import importlib.util
import inspect
import json
import tempfile
from pathlib import Path

from transformers import CLIPTokenizer
from transformers.convert_slow_tokenizer import bytes_to_unicode

NUM_MERGES = 49408 - 256 - 256 - 2  # 48,894: what is left of CLIP's 49,408 ids after bytes and specials
START_OF_TEXT = "<|startoftext|>"
END_OF_TEXT = "<|endoftext|>"
CONTEXT_LENGTH = 77
DEFAULT_OUT = Path(__file__).resolve().parents[1] / "dfer_pd" / "assets" / "clip_tokenizer"


def find_open_clip_bpe() -> Path:
    """Path of open_clip's BPE merges, found without importing open_clip (which imports torchvision)."""
    spec = importlib.util.find_spec("open_clip")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("open_clip_torch is not installed: pip install open_clip_torch, or pass --bpe")
    path = Path(next(iter(spec.submodule_search_locations))) / "bpe_simple_vocab_16e6.txt.gz"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: open_clip_torch does not ship the BPE merges file here")
    return path


def read_merges(bpe_path: Path) -> list[tuple[str, str]]:
    """The first NUM_MERGES merge pairs after the header line."""
    with gzip.open(bpe_path, "rt", encoding="utf-8") as handle:
        lines = handle.read().split("\n")[1 : NUM_MERGES + 1]
    merges = [tuple(line.split()) for line in lines]
    bad = [i for i, pair in enumerate(merges) if len(pair) != 2]
    if len(merges) != NUM_MERGES or bad:
        raise ValueError(f"{bpe_path}: expected {NUM_MERGES} merge pairs, got {len(merges)} ({len(bad)} malformed)")
    return merges


def clip_vocabulary(merges: list[tuple[str, str]]) -> dict[str, int]:
    """Token -> id in OpenAI CLIP's order."""
    byte_symbols = list(bytes_to_unicode().values())
    tokens = byte_symbols + [symbol + "</w>" for symbol in byte_symbols]
    tokens += ["".join(pair) for pair in merges]
    tokens += [START_OF_TEXT, END_OF_TEXT]
    return {token: index for index, token in enumerate(tokens)}


def build_tokenizer(bpe_path: Path) -> CLIPTokenizer:
    """OpenAI CLIP's tokenizer from the merge list alone."""
    merges = read_merges(bpe_path)
    vocab = clip_vocabulary(merges)
    merge_lines = [" ".join(pair) for pair in merges]
    if "vocab_file" not in inspect.signature(CLIPTokenizer.__init__).parameters:  # transformers 5.x
        return CLIPTokenizer(vocab=vocab, merges=list(merges), model_max_length=CONTEXT_LENGTH)
    with tempfile.TemporaryDirectory() as scratch:  # transformers 4.x reads vocab.json and merges.txt
        vocab_file, merges_file = Path(scratch) / "vocab.json", Path(scratch) / "merges.txt"
        vocab_file.write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
        merges_file.write_text("\n".join(["#version: 0.2", *merge_lines]) + "\n", encoding="utf-8")
        return CLIPTokenizer(str(vocab_file), str(merges_file), model_max_length=CONTEXT_LENGTH)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bpe", type=Path, default=None, help="bpe_simple_vocab_16e6.txt.gz (default: open_clip's)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder")
    args = parser.parse_args()

    tokenizer = build_tokenizer(args.bpe or find_open_clip_bpe())
    ids = tokenizer("a smiling face")["input_ids"]
    expected = [49406, 320, 9200, 1710, 49407]
    if len(tokenizer) != 49408 or ids != expected:
        raise RuntimeError(f"tokenizer check failed: {len(tokenizer)} ids, 'a smiling face' -> {ids} != {expected}")
    args.out.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(args.out)
    print(f"saved CLIP tokenizer ({len(tokenizer)} ids) to {args.out}")


if __name__ == "__main__":
    main()
